"""Tests of the HTML report (harmonize.report): content, determinism, self-containment, browser.

The report is built from a small synthetic results dataset written with the schema's own
writer: six patients, cycles 1 and 2, a truth and three workflows whose lesion doses are
the truth times a known factor and a seeded log-normal error, so every number the report
shows can be recomputed here with harmonize.compare.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import re
import shutil
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harmonize import compare, indices, report, schema
from harmonize.nuclides import MEV_TO_J, get_nuclide
from harmonize.pipeline import DEFAULT_N_BOOT, DEFAULT_SEED

#: Workflow → (multiplicative bias, SD of the log error, imaging times h, voxel indices).
WORKFLOWS = {
    "montpellier": (1.08, 0.06, (4.0, 24.0, 72.0, 192.0), True),
    "bordet": (0.93, 0.08, (24.0, 72.0, 168.0), True),
    "milan": (1.00, 0.12, (24.0, 168.0), False),
}
RULES = {"montpellier": "sum", "bordet": "sum", "milan": "milan_interpolated", "truth": "sum"}
PATIENTS = tuple(f"P{i:03d}" for i in range(1, 7))
CYCLES = (1, 2)


def _dose_per_tia_gy(mass_g: np.ndarray) -> np.ndarray:
    """Local-deposition dose per MBq·h (electron energy of Lu-177, ICRP-107)."""
    energy_j = get_nuclide("Lu-177").electron_energy_mev * MEV_TO_J
    return 3.6e9 * energy_j / (np.asarray(mass_g) * 1e-3)


def synthetic_results(seed: int = 7) -> dict[str, pd.DataFrame]:
    """A schema-valid results dataset with a truth and three workflows (not clinical)."""
    rng = np.random.default_rng(seed)
    lam_h = math.log(2) / 70.0  # effective half-life 70 h [illustrative]
    voi_rows, tac_rows, run_rows = [], [], []
    for pid in PATIENTS:
        n_les = int(rng.integers(2, 5))
        lesion_vol = np.exp(rng.uniform(np.log(1.5), np.log(150.0), n_les))
        lesion_dose = np.exp(rng.normal(np.log(25.0), 0.6, n_les))
        for cycle in CYCLES:
            injected = 7400.0 * (1 + 0.02 * rng.standard_normal())
            names = ["body", "liver", "kidney_left"] + [f"lesion_{k + 1}" for k in range(n_les)]
            kinds = ["body", "organ", "organ"] + ["lesion"] * n_les
            ids = [1, 2, 3] + [10 + k for k in range(n_les)]
            parents = [None, None, None] + [2 if k % 2 == 0 else None for k in range(n_les)]
            volume = np.concatenate([[60000.0, 1600.0, 160.0], lesion_vol])
            mass = volume * np.array([1.03, 1.06, 1.05] + [1.04] * n_les)
            true_dose = np.concatenate([[0.2, 2.0, 4.5], lesion_dose * 0.9 ** (cycle - 1)])
            true_tia = true_dose / _dose_per_tia_gy(mass)
            study_hash = hashlib.sha256(f"{pid}-{cycle}".encode()).hexdigest()
            for wf, (factor, sd, times, voxel) in {
                "truth": (1.0, 0.0, (), False),
                **WORKFLOWS,
            }.items():
                err = factor * np.exp(sd * rng.standard_normal(len(ids)))
                if wf == "milan":  # recovery-corrected: small lesions still a little low
                    err = err * np.where(volume < 5.0, 0.85, 1.0)
                dose = true_dose * err
                tia = true_tia * err
                spread = np.exp(rng.normal(0.0, 0.05, len(ids)))
                voi_rows.append(
                    pd.DataFrame(
                        {
                            "patient_id": pid,
                            "cycle": cycle,
                            "center": "SYN",
                            "workflow": wf,
                            "workflow_version": "1.0.0",
                            "voi_id": ids,
                            "voi_name": names,
                            "voi_kind": kinds,
                            "parent_voi_id": pd.array(parents, dtype="Int32"),
                            "volume_ml": volume,
                            "mass_g": mass,
                            "tia_mbq_h": tia,
                            "tia_coefficient_h": tia / injected,
                            "tac_model": "truth" if wf == "truth" else f"{wf}_model",
                            "n_time_points": max(len(times), 1),
                            "dose_mean_gy": dose,
                            "dose_min_gy": dose * 0.35 * spread if voxel else np.nan,
                            "dose_median_gy": dose * 1.02 if voxel else np.nan,
                            "dose_max_gy": dose * 1.9 * spread if voxel else np.nan,
                            "dose_d2_gy": dose * 1.6 * spread if voxel else np.nan,
                            "dose_d50_gy": dose * 1.02 if voxel else np.nan,
                            "dose_d98_gy": dose * 0.5 * spread if voxel else np.nan,
                            "fit_r2": np.nan
                            if wf == "truth"
                            else 0.99 - 0.01 * rng.random(len(ids)),
                            "fit_aicc": np.nan,
                            "recovery_coefficient": np.where(
                                np.array(kinds) == "lesion", 0.8, np.nan
                            )
                            if wf == "milan"
                            else np.nan,
                            "flags": "",
                        }
                    )
                )
                if wf == "truth":
                    continue
                t = np.asarray(times)
                a0 = tia * lam_h
                measured = a0[:, None] * np.exp(-lam_h * t[None, :])
                tac_rows.append(
                    pd.DataFrame(
                        {
                            "patient_id": pid,
                            "cycle": cycle,
                            "workflow": wf,
                            "voi_id": np.repeat(ids, t.size),
                            "time_h": np.tile(t, len(ids)),
                            "activity_measured_mbq": (
                                measured * np.exp(rng.normal(0, 0.03, measured.shape))
                            ).ravel(),
                            "activity_fitted_mbq": measured.ravel(),
                            "recovery_corrected": wf == "milan",
                        }
                    )
                )
                params = {"time_points_h": list(times), "weighting": "none", "dose_engine": wf}
                run_rows.append(
                    {
                        "patient_id": pid,
                        "cycle": cycle,
                        "workflow": wf,
                        "workflow_version": "1.0.0",
                        "schema_version": schema.SCHEMA_VERSION,
                        "parameters_json": json.dumps(params, sort_keys=True),
                        "overrides_json": "{}",
                        "input_sha256": study_hash,
                        "software_json": json.dumps(
                            {"harmonize-dosimetry": "0.1.0", "numpy": "2.x"}
                        ),
                        "center": "SYN",
                    }
                )
    voi = pd.concat(voi_rows, ignore_index=True)
    voi, dvh = _with_voxel_doses(voi, seed)
    patient = pd.concat(
        [
            # a 2-cycle treatment plan: cycles 1 and 2 are the whole treatment
            indices.patient_index(
                voi.loc[voi["workflow"] == w], cumulative_rule=RULES[w], planned_cycles=2
            )
            for w in sorted(RULES)
        ],
        ignore_index=True,
    )
    return {
        "voi_dose": voi,
        "patient_index": patient,
        "tac": pd.concat(tac_rows, ignore_index=True),
        "run": pd.DataFrame(run_rows),
        "dvh": dvh,
    }


def _with_voxel_doses(voi: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Voxel doses for the VOIs of the voxel workflows: their indices and their DVH tables.

    Each VOI gets 10-400 voxels (one per 0.1 mL) of log-normal doses scaled to its mean
    dose; the voi_dose min/median/max/D2/D50/D98 and the dvh rows are read from them by
    harmonize.indices, so the two tables agree as the schema requires.
    """
    rng = np.random.default_rng(seed + 1000)
    voxel = voi["workflow"].map({w: v[3] for w, v in WORKFLOWS.items()}).fillna(False)
    rows = voi.index[voxel.to_numpy(bool)]
    n = np.clip(np.round(voi.loc[rows, "volume_ml"].to_numpy() / 0.1), 10, 400).astype(int)
    labels = np.repeat(np.arange(1, rows.size + 1), n)
    z = rng.lognormal(0.0, 0.35, labels.size)
    scale = voi.loc[rows, "dose_mean_gy"].to_numpy() / (np.bincount(labels, weights=z)[1:] / n)
    dose = z * scale[labels - 1]
    table = indices.voi_dose_indices(dose, labels)
    voi = voi.copy()
    for column in ("min", "median", "max", "d2", "d50", "d98"):
        voi.loc[rows, f"dose_{column}_gy"] = table[f"dose_{column}_gy"].to_numpy()
    curve = indices.dvh_table(dose, labels)
    keys = ["patient_id", "cycle", "center", "workflow", "workflow_version", "voi_id"]
    dvh = voi.loc[rows, keys].iloc[curve["voi_id"].to_numpy() - 1].reset_index(drop=True)
    dvh["volume_pct"] = curve["volume_pct"].to_numpy()
    dvh["dose_gy"] = curve["dose_gy"].to_numpy()
    return voi, dvh


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return synthetic_results()


@pytest.fixture(scope="module")
def results_dir(frames: dict[str, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("results")
    schema.write_results(frames, out, basename="synthetic")
    return out


@pytest.fixture(scope="module")
def read_back(results_dir: Path) -> dict[str, pd.DataFrame]:
    return schema.read_results(results_dir)


@pytest.fixture(scope="module")
def built(results_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report.html"
    return report.write_report(results_dir, out)


@pytest.fixture(scope="module")
def html_text(built: Path) -> str:
    return built.read_text(encoding="utf-8")


def _without_images(text: str) -> str:
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)


# ------------------------------------------------------------------------------------------
# Determinism and self-containment
# ------------------------------------------------------------------------------------------


def test_same_inputs_same_bytes_wherever_the_results_live(
    built: Path, results_dir: Path, tmp_path: Path
) -> None:
    # a second build, from a copy of the dataset at another absolute path: identical bytes
    # (no clock, host, path or unsorted iteration may leak into the file)
    moved = tmp_path / "elsewhere" / "results"
    shutil.copytree(results_dir, moved)
    again = report.write_report(moved, tmp_path / "again.html")
    assert again.read_bytes() == built.read_bytes()


def test_report_is_self_contained(html_text: str) -> None:
    assert html_text.startswith("<!DOCTYPE html>")
    assert 'src="http' not in html_text
    assert '<link href="http' not in html_text and "<link" not in html_text
    assert "<script" not in html_text  # no JavaScript at all, hence no CDN
    assert "@import" not in html_text and "url(" not in html_text
    # every src/href is an embedded image or an in-page anchor
    targets = re.findall(r'(?:src|href)="([^"]*)"', html_text)
    assert targets and all(t.startswith(("data:image/png;base64,", "#")) for t in targets)


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = [], 8
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        crc = int.from_bytes(data[pos + 8 + length : pos + 12 + length], "big")
        assert zlib.crc32(kind + body) == crc  # an intact chunk
        chunks.append((kind, body))
        pos += 12 + length
    return chunks


def test_images_are_valid_pngs_without_software_or_time_chunks(html_text: str) -> None:
    images = re.findall(
        r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" width="(\d+)" height="(\d+)"',
        html_text,
    )
    # 6 dose indices + truth ratio plot + DVH summaries + one lesion TAC
    assert len(images) == len(report.DOSE_INDICES) + 3
    assert len(images) == html_text.count("<img ")
    for encoded, width, height in images:
        chunks = _png_chunks(base64.b64decode(encoded))
        kinds = [k for k, _ in chunks]
        assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND"
        assert b"tIME" not in kinds  # no timestamp
        texts = b"".join(body for kind, body in chunks if kind in (b"tEXt", b"iTXt", b"zTXt"))
        assert b"Software" not in texts and b"matplotlib" not in texts.lower()
        ihdr = chunks[0][1]
        assert (int.from_bytes(ihdr[:4], "big"), int.from_bytes(ihdr[4:8], "big")) == (
            int(width),
            int(height),
        )


def test_no_dates_paths_or_other_identifiers(html_text: str, results_dir: Path) -> None:
    text = _without_images(html_text)
    assert re.search(r"(?:19|20)\d\d-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])", text) is None
    assert str(results_dir) not in text and str(results_dir.parent) not in text
    # every patient appears by its pseudonym; no other "P"-number-like id is invented
    assert set(re.findall(r"\bP\d{3}\b", text)) == set(PATIENTS)


# ------------------------------------------------------------------------------------------
# Content: the numbers are the comparison engine's
# ------------------------------------------------------------------------------------------


def _cell(est: float, lo: float, hi: float) -> str:
    return report._ci(est, lo, hi)


def test_agreement_tables_show_the_engine_values(
    html_text: str, read_back: dict[str, pd.DataFrame]
) -> None:
    compared = sorted(WORKFLOWS)
    agr = compare.agreement(read_back, "dose_mean_gy", "lesion", workflows=compared)
    for (wa, wb), sub in agr.loc[agr["workflow_b"] != ""].groupby(["workflow_a", "workflow_b"]):
        row = sub.set_index("statistic").loc["ratio_bias"]
        expected = (
            f"{wa} reads {report._num(row['estimate'])}× {wb} on lesion mean dose "
            f"(95 % CI {report._num(row['ci_low'])} to {report._num(row['ci_high'])};"
        )
        assert expected in html_text


def test_accuracy_against_truth_is_the_geometric_mean_ratio(
    html_text: str, frames: dict[str, pd.DataFrame]
) -> None:
    # BA1999 §3.1: the ratio bias is exp(mean(ln a − ln b)); computed here independently of
    # harmonize.compare from the lesion rows, it must be what the truth table shows
    voi = frames["voi_dose"]
    lesions = voi.loc[voi["voi_kind"] == "lesion"].set_index(["patient_id", "cycle", "voi_id"])
    truth = lesions.loc[lesions["workflow"] == "truth", "dose_mean_gy"]
    for w in WORKFLOWS:
        dose = lesions.loc[lesions["workflow"] == w, "dose_mean_gy"]
        log_ratio = np.log(dose / truth.reindex(dose.index)).to_numpy()
        geometric = math.exp(float(log_ratio.mean()))
        pattern = rf"<td>{w} vs truth</td><td class=\"num\">40</td><td class=\"num\">([^<]*)</td>"
        shown = re.findall(pattern, html_text)
        assert shown, w
        assert shown[0].split(" [")[0] == report._num(geometric)
    assert "Each workflow against the phantom truth" in html_text


def test_cutoff_translation_matches_the_engine(
    html_text: str, read_back: dict[str, pd.DataFrame]
) -> None:
    tr = compare.translate_cutoff(
        read_back["patient_index"],
        "bordet",
        "montpellier",
        35.0,
        "lesion_dose_min_gy",
        n_boot=DEFAULT_N_BOOT,  # the report renders compare's tables, made with its defaults
        seed=DEFAULT_SEED,
        cycle=1,
    )
    assert html.escape(tr.sentence) in html_text
    assert tr.sentence.startswith("35 Gy in bordet is ")


def test_cutoff_agreement_lists_every_discordant_patient(
    html_text: str, read_back: dict[str, pd.DataFrame]
) -> None:
    res = compare.cutoff_agreement(read_back["patient_index"], workflows=sorted(WORKFLOWS))
    for key in report.compare.load_cutoffs()["key"]:
        assert f"<td>{key}</td>" in html_text
    for r in res.discordant.itertuples():
        cells = f"<td>{r.cutoff_key}</td><td>{r.patient_id}</td>"
        assert cells in html_text


def test_checklist_covers_every_item_for_every_workflow(
    html_text: str, frames: dict[str, pd.DataFrame]
) -> None:
    n_items = len(report.CHECKLIST_ITEMS)
    for w in WORKFLOWS:
        assert re.search(rf"{w}: \d+ of {n_items} items reported", html_text)
    for item in report.CHECKLIST_ITEMS:
        assert html_text.count(f"<td>{html.escape(item.label)}</td>") == len(WORKFLOWS)
    # the synthetic runs record no registration, calibration or uncertainty parameter
    for label in (
        "Registration of time points",
        "Quantitative calibration",
        "Uncertainty analysis",
    ):
        rows = re.findall(rf"<td>{label}</td><td[^>]*>[^<]*</td><td>([^<]*)</td>", html_text)
        assert len(rows) == len(WORKFLOWS)
        assert all(r.startswith(report.NOT_REPORTED) for r in rows)
    # administered activity: the median of TIA / TIA coefficient per patient-cycle
    voi = frames["voi_dose"]
    bordet = voi.loc[voi["workflow"] == "bordet"]
    per_study = (
        (bordet["tia_mbq_h"] / bordet["tia_coefficient_h"])
        .groupby([bordet["patient_id"], bordet["cycle"]])
        .median()
    )
    assert f"median {report._num(float(np.median(per_study)), 4)} MBq" in html_text
    # imaging times of the tac table, hours after injection (no clock time)
    assert "4 distinct times: 4.00, 24.0, 72.0, 192 h p.i." in html_text


def test_dvh_section_draws_the_dvh_table(
    html_text: str, read_back: dict[str, pd.DataFrame]
) -> None:
    # the smallest and the largest lesion of the first patient at cycle 1, named with
    # their volumes; the pseudo-curve fallback is not used when a dvh table exists
    voi = read_back["voi_dose"]
    first = voi[
        (voi["patient_id"] == PATIENTS[0])
        & (voi["cycle"] == 1)
        & (voi["workflow"] == "bordet")  # first workflow (by name) with a DVH
        & (voi["voi_kind"] == "lesion")
    ].sort_values(["volume_ml", "voi_id"])
    small, large = first.iloc[0], first.iloc[-1]
    picks = report._dvh_lesions(report._prepare(read_back))
    assert picks["voi_id"].tolist() == [small["voi_id"], large["voi_id"]]
    names = " and ".join(
        f"{r['voi_name']} ({report._num(r['volume_ml'])} mL)" for r in (small, large)
    )
    text = html.unescape(_without_images(html_text))
    assert (
        f"Cumulative dose–volume histograms of the smallest and the largest lesion of "
        f"patient {PATIENTS[0]} at cycle 1: {names}, read from the results' dvh table" in text
    )
    assert "therefore not DVHs" not in text
    assert text.count("cumulative DVH of every VOI (dvh table)") == 2  # bordet, montpellier


def test_dvh_fallback_without_a_dvh_table(frames: dict[str, pd.DataFrame]) -> None:
    # results without a dvh table (schema 1.0.0): the summary through the dose indices,
    # labelled as not a DVH; with the dvh table the same results draw real DVHs instead
    # (two workflows keep the two builds quick)
    keep = ["bordet", "milan"]
    small = {
        name: frames[name].loc[frames[name]["workflow"].isin(keep)]
        for name in ("voi_dose", "patient_index", "dvh")
    }
    text = report.build_report({k: v for k, v in small.items() if k != "dvh"})
    assert "The results hold no dvh table" in text
    assert "The curves below are therefore not DVHs" in text
    assert "cumulative DVH of every VOI" not in text
    with_dvh = html.unescape(report.build_report(small))
    assert "therefore not DVHs" not in with_dvh and "read from the results' dvh table" in with_dvh
    assert text.count("<img ") == with_dvh.count("<img ")  # one DVH figure either way


def test_key_findings_agree_with_the_report(
    html_text: str, read_back: dict[str, pd.DataFrame]
) -> None:
    lines = report.key_findings(read_back)
    assert lines and all(html.escape(line) in html_text for line in lines)
    assert any(line.startswith("35.0 Gy in bordet (mileva2024_min_c1) ≈ ") for line in lines)


# ------------------------------------------------------------------------------------------
# Inputs, outputs and errors
# ------------------------------------------------------------------------------------------


def test_report_without_truth_tac_or_run(frames: dict[str, pd.DataFrame]) -> None:
    keep = ["bordet", "milan"]
    small = {
        "voi_dose": frames["voi_dose"].loc[frames["voi_dose"]["workflow"].isin(keep)],
        "patient_index": frames["patient_index"].loc[
            frames["patient_index"]["workflow"].isin(keep)
        ],
    }
    text = report.build_report(small, title="two workflows & no truth")
    assert "<title>two workflows &amp; no truth</title>" in text
    assert "no workflow named &#x27;truth&#x27;" in text
    assert "The results hold no run table" in text
    rows = re.findall(
        r"<td>Activity at each imaging time point</td><td[^>]*>[^<]*</td><td>([^<]*)</td>", text
    )
    assert rows == [report.NOT_REPORTED] * 2


def test_write_report_is_atomic_and_refuses_to_overwrite(tmp_path: Path) -> None:
    # the schema's one-workflow example dataset: a quick report (nothing to compare)
    results = tmp_path / "results"
    schema.write_results(schema.example_frames(), results)
    out = tmp_path / "out"
    dest = out / "r.html"
    out.mkdir()
    dest.write_text("something else", encoding="utf-8")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        report.write_report(results, dest)
    assert dest.read_text(encoding="utf-8") == "something else"
    report.write_report(results, dest, overwrite=True)
    first = dest.read_bytes()
    assert first.decode("utf-8").startswith("<!DOCTYPE html>")
    # an identical file is left as it is, whatever the flag
    report.write_report(results, dest)
    assert dest.read_bytes() == first
    assert sorted(p.name for p in out.iterdir()) == ["r.html"]  # no temporary file left


def test_bad_inputs_are_refused(tmp_path: Path, frames: dict[str, pd.DataFrame]) -> None:
    with pytest.raises(report.ReportError, match="voi_dose"):
        report.build_report({})
    with pytest.raises(report.ReportError, match="mapping"):
        report.build_report(frames["voi_dose"])  # type: ignore[arg-type]
    with pytest.raises(report.ReportError, match="dose_mean_gy"):
        report.build_report({"voi_dose": frames["voi_dose"].drop(columns="dose_mean_gy")})
    with pytest.raises(report.ReportError, match="not a directory"):
        report.write_report(tmp_path / "missing", tmp_path / "x.html")


# ------------------------------------------------------------------------------------------
# truth_error_by_size: exact values on constructed data
# ------------------------------------------------------------------------------------------


def _lesions(volumes: list[float], truth: list[float], other: list[float]) -> pd.DataFrame:
    n = len(volumes)
    base = {"patient_id": "P1", "cycle": 1, "voi_id": list(range(1, n + 1)), "voi_kind": "lesion"}
    return pd.concat(
        [
            pd.DataFrame(base | {"workflow": "truth", "volume_ml": volumes, "dose_mean_gy": truth}),
            pd.DataFrame(base | {"workflow": "w", "volume_ml": volumes, "dose_mean_gy": other}),
        ],
        ignore_index=True,
    )


def test_truth_error_by_size_exact_bands() -> None:
    volumes = [1.0, 4.99, 5.0, 19.0, 20.0, 150.0]
    truth = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
    factor = [0.8, 0.9, 1.1, 1.1, 1.0, 1.05]
    table = report.truth_error_by_size(_lesions(volumes, truth, list(np.multiply(truth, factor))))
    assert table["band"].tolist() == ["0–5 mL", "5–20 mL", "20–100 mL", "≥ 100 mL"]
    assert table["n_lesions"].tolist() == [2, 2, 1, 1]  # 5.0 mL belongs to [5, 20)
    # errors are 100·(factor − 1); medians of two values are their mean (exact to rounding)
    np.testing.assert_allclose(table["median_error_pct"], [-15.0, 10.0, 0.0, 5.0], atol=1e-9)
    np.testing.assert_allclose(table["max_abs_error_pct"], [20.0, 10.0, 0.0, 5.0], atol=1e-9)


def test_truth_error_by_size_refuses_bad_input() -> None:
    good = _lesions([1.0, 2.0], [1.0, 2.0], [1.0, 2.0])
    with pytest.raises(report.ReportError, match="increasing"):
        report.truth_error_by_size(good, bands_ml=(0.0, 5.0, 5.0))
    with pytest.raises(report.ReportError, match="no lesion rows"):
        report.truth_error_by_size(good, reference="absent")
    with pytest.raises(report.ReportError, match="non-positive"):
        report.truth_error_by_size(_lesions([1.0, 2.0], [0.0, 2.0], [1.0, 2.0]))
    with pytest.raises(report.ReportError, match="volume_ml"):
        report.truth_error_by_size(good.drop(columns="volume_ml"))


# ------------------------------------------------------------------------------------------
# A real browser
# ------------------------------------------------------------------------------------------

_CHROMIUM = next(
    (
        p
        for p in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium")
        if p and Path(p).exists()
    ),
    None,
)

#: Injected into a copy of the report (the report itself has no script): records every
#: error event (scripts and failed resource loads, capture phase), console.error calls and
#: how many images decoded, as attributes of <html> that --dump-dom prints.
_PROBE = """<script>
(function () {
  var root = document.documentElement, errors = 0;
  function bump() { errors += 1; root.setAttribute("data-errors", String(errors)); }
  root.setAttribute("data-errors", "0");
  window.addEventListener("error", bump, true);
  var original = console.error;
  console.error = function () { bump(); return original.apply(console, arguments); };
  window.addEventListener("load", function () {
    var imgs = Array.prototype.slice.call(document.images);
    var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
    root.setAttribute("data-images", ok + "/" + imgs.length);
  });
})();
</script>"""


@pytest.mark.browser
@pytest.mark.skipif(
    _CHROMIUM is None,
    reason="no chromium on PATH or at /usr/bin/chromium (apt-get install chromium)",
)
def test_report_renders_in_headless_chromium(html_text: str, tmp_path: Path) -> None:
    page = tmp_path / "probe.html"
    page.write_text(html_text.replace("<head>", "<head>" + _PROBE, 1), encoding="utf-8")
    cmd = [
        str(_CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # any network fetch would fail visibly
        f"--user-data-dir={tmp_path / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=10000",
        "--dump-dom",
        page.as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    root = re.search(r"<html[^>]*>", proc.stdout)
    assert root is not None, proc.stdout[:500]
    n_images = html_text.count("<img ")
    assert f'data-images="{n_images}/{n_images}"' in root.group(0)
    assert 'data-errors="0"' in root.group(0)
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []

"""The end-to-end jobs behind ``harmonize compare`` and ``harmonize demo``.

``compare_results`` reads one or more results datasets (tables only, never images), merges
them, and computes the agreement tables the report shows:

* lesion level: every dose index of every lesion, for every workflow pair (truth included
  when present), cycles pooled;
* patient level: the lesion min/median/max, global mean and cumulative indices;
* cutoff agreement at the published cutoffs (``harmonize/data/cutoffs.csv``);
* cutoff translation of each published cutoff from its centre's workflow to the others;
* with two or more workflows besides the truth, each workflow's ISO 13528 proficiency
  summary (share of satisfactory z-scores, z RMS, En) against the truth or the consensus
  (:mod:`harmonize.intercomparison.proficiency`), as rows of the agreement table.

``run_demo`` is the README's main job: the embedded synthetic cohort → every installed
workflow (+ truth) → Parquet → comparison → ``report.html``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harmonize import compare, schema
from harmonize._warnings import HarmonizeWarning

__all__ = [
    "LESION_INDICES",
    "PATIENT_INDICES",
    "ComparisonTables",
    "compare_results",
    "read_merged",
    "write_comparison",
]

#: Lesion-level dose indices compared (voi_dose columns).
LESION_INDICES = (
    "dose_mean_gy",
    "dose_median_gy",
    "dose_min_gy",
    "dose_max_gy",
    "dose_d2_gy",
    "dose_d98_gy",
)
#: Patient-level indices compared (patient_index columns).
PATIENT_INDICES = (
    "lesion_dose_min_gy",
    "lesion_dose_median_gy",
    "lesion_dose_max_gy",
    "global_mean_dose_gy",
    "cum_lesion_dose_min_gy",
    "cum_lesion_dose_mean_gy",
    "cum_global_mean_dose_gy",
)


@dataclass
class ComparisonTables:
    """All tables of a comparison (tidy DataFrames)."""

    agreement: pd.DataFrame
    cutoff_classifications: pd.DataFrame
    cutoff_summary: pd.DataFrame
    cutoff_discordant: pd.DataFrame
    cutoff_translation: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, pd.DataFrame]:
        """Tables by file stem."""
        return {
            "agreement": self.agreement,
            "cutoff_classifications": self.cutoff_classifications,
            "cutoff_summary": self.cutoff_summary,
            "cutoff_discordant": self.cutoff_discordant,
            "cutoff_translation": self.cutoff_translation,
        }


def read_merged(results_dirs: Sequence[str | os.PathLike[str]]) -> dict[str, pd.DataFrame]:
    """Read and concatenate the tables of several results datasets."""
    if not results_dirs:
        raise ValueError("at least one results folder is required")
    merged: dict[str, list[pd.DataFrame]] = {}
    for path in results_dirs:
        for name, frame in schema.read_results(path).items():
            merged.setdefault(name, []).append(frame)
    out = {name: pd.concat(frames, ignore_index=True) for name, frames in merged.items()}
    for name, keys in (
        ("voi_dose", ["patient_id", "cycle", "workflow", "voi_id"]),
        ("patient_index", ["patient_id", "cycle", "workflow"]),
    ):
        if name in out:
            dup = out[name].duplicated(keys)
            if dup.any():
                raise ValueError(
                    f"the results folders hold {int(dup.sum())} duplicate {name} rows "
                    f"(same {', '.join(keys)}): the same run was given twice?"
                )
            out[name] = out[name].sort_values(keys, kind="stable").reset_index(drop=True)
    return out


def _quiet(func: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``func``; unpaired-row warnings are expected here (truth has no voxel indices)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HarmonizeWarning)
        out = func(*args, **kwargs)
    if isinstance(out, pd.DataFrame):
        out.attrs = {}  # the unpaired rows are not carried into the merged table
    return out


def compare_results(
    results: dict[str, pd.DataFrame],
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> ComparisonTables:
    """Agreement, cutoff agreement and cutoff translation on merged results tables."""
    notes: list[str] = []
    voi = results.get("voi_dose")
    pindex = results.get("patient_index")
    if voi is None or pindex is None:
        raise ValueError("results need both voi_dose and patient_index tables")
    parts = []
    lesions = voi.loc[voi["voi_kind"] == "lesion"]
    jobs = [(lesions, i, "lesion") for i in LESION_INDICES]
    jobs += [(pindex, i, "patient") for i in PATIENT_INDICES]
    for table, index, level in jobs:
        data = table.dropna(subset=[index])
        names = sorted(data["workflow"].unique())
        if len(names) < 2:
            notes.append(f"{index}: fewer than two workflows report it; skipped")
            continue
        try:
            parts.append(_quiet(compare.agreement, data, index=index, level=level, workflows=names))
        except compare.CompareError as exc:
            notes.append(f"{index}: {exc}")
    agreement = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame(columns=compare.AGREEMENT_COLUMNS)
    )

    agreement = _with_proficiency(agreement, voi, notes)

    cut = _quiet(compare.cutoff_agreement, pindex)
    cutoffs = compare.load_cutoffs()
    rows = []
    workflows = sorted(set(pindex["workflow"]) - {"truth"})
    for spec in cutoffs.itertuples(index=False):
        # a cutoff was derived with its centre's workflow (cutoffs.csv column "centre")
        home = str(spec.centre).strip().lower()
        if home not in workflows:
            continue
        for target in [w for w in workflows if w != home]:
            try:
                tr = _quiet(
                    compare.translate_cutoff,
                    {"patient_index": pindex},
                    home,
                    target,
                    float(spec.cutoff_gy),
                    spec.index,
                    n_boot=n_boot,
                    seed=seed,
                    cycle=_cycle_of(pindex, spec),
                )
            except (compare.CompareError, TypeError) as exc:
                notes.append(f"translate {spec.key} {home}→{target}: {exc}")
                continue
            rows.append(
                {
                    "cutoff_key": spec.key,
                    "index": spec.index,
                    "from_workflow": home,
                    "to_workflow": target,
                    "cutoff_gy": float(spec.cutoff_gy),
                    "estimate_gy": tr.estimate_gy,
                    "ci_low_gy": tr.ci_low_gy,
                    "ci_high_gy": tr.ci_high_gy,
                    "method": tr.method,
                    "n_pairs": tr.n_pairs,
                    "sentence": tr.sentence,
                }
            )
    translation = pd.DataFrame(rows)
    return ComparisonTables(
        agreement=agreement,
        cutoff_classifications=cut.classifications,
        cutoff_summary=cut.summary,
        cutoff_discordant=cut.discordant,
        cutoff_translation=translation,
        notes=notes,
    )


def _with_proficiency(agreement: pd.DataFrame, voi: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """Append each workflow's ISO 13528 summary (z and En classes) to the agreement rows.

    Rows of :func:`harmonize.intercomparison.proficiency.proficiency_summary`:
    ``workflow_a`` the workflow, ``workflow_b`` "truth" (phantom truth as assigned value) or
    "assigned" (Algorithm A consensus), lesion ``dose_mean_gy``; only with two or more
    workflows besides the truth.
    """
    from harmonize.intercomparison.proficiency import proficiency_scores, proficiency_summary

    lesions = voi[voi["voi_kind"] == "lesion"]
    if len(set(lesions["workflow"]) - {"truth"}) < 2:
        return agreement
    try:
        summary = proficiency_summary(proficiency_scores(voi))
    except ValueError as exc:
        notes.append(f"ISO 13528 proficiency: {exc}")
        return agreement
    if agreement.empty:
        return summary.reindex(columns=agreement.columns)
    return pd.concat([agreement, summary[list(agreement.columns)]], ignore_index=True)


def _cycle_of(pindex: pd.DataFrame, spec: Any) -> int | None:
    if str(spec.cycle) == "1":
        return 1
    return int(pindex["cycle"].max())


def write_comparison(
    tables: ComparisonTables, out_dir: str | os.PathLike[str], *, overwrite: bool = False
) -> list[Path]:
    """Write each comparison table as ``OUT/<name>.parquet`` (atomic) and the notes."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in tables.as_dict().items():
        path = out / f"{name}.parquet"
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} already exists; pass --overwrite to replace it")
        if name == "agreement":
            written.append(compare.write_agreement(frame, path))
        else:
            written.append(_write_plain(frame, path, name))
    return written


def _write_plain(frame: pd.DataFrame, path: Path, name: str) -> Path:
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from harmonize.bundle import atomic_path

    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    table = table.replace_schema_metadata(
        {
            "harmonize": json.dumps(
                {"schema_version": schema.SCHEMA_VERSION, "table": name}, sort_keys=True
            )
        }
    )
    with atomic_path(path, overwrite=True) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return path

"""The end-to-end jobs behind ``harmonize compare`` and ``harmonize demo``.

``compare_results`` reads one or more results datasets (tables only, never images), merges
them, and computes the agreement tables the report shows:

* lesion level: every dose index of every lesion, for every workflow pair and each
  workflow against the phantom truth when present, cycles pooled;
* patient level: the lesion min/median/max and global mean per cycle, and the cumulative
  indices once per patient (treatment totals on a common planned treatment);
* cutoff agreement at the published cutoffs (``harmonize/data/cutoffs.csv`` or
  ``--cutoffs FILE.csv``), truth reported beside the workflows, not as a rater;
* cutoff translation of each published cutoff from its centre's workflow to the others,
  flagged ``extrapolated`` when the cutoff lies outside the source's observed range;
* when the results hold a ``clinical`` table, the dose–response tables of
  :mod:`harmonize.outcomes.dose_response` (``outcome_*``: each published cutoff on each
  workflow's doses raw and translated, Cox per 10 Gy, optimal cutoffs, Kaplan–Meier,
  Table 1);
* with two or more workflows besides the truth, each workflow's ISO 13528 proficiency
  summary (share of satisfactory z-scores, z RMS, En) against the truth or the consensus
  (:mod:`harmonize.intercomparison.proficiency`), as rows of the agreement table.

The report (:mod:`harmonize.report`) renders exactly these tables.

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
from harmonize.compare import cutoffs as _cutoffs
from harmonize.indices import fill_cumulative_basis

#: The phantom's ground truth in the results (see harmonize.runner).
TRUTH = "truth"

__all__ = [
    "DEFAULT_N_BOOT",
    "DEFAULT_SEED",
    "LESION_INDICES",
    "PATIENT_INDICES",
    "TRANSLATION_COLUMNS",
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
    #: Probability above each cutoff and class (above/below/uncertain), per patient × workflow.
    cutoff_probabilities: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: Discordant patients per cutoff × workflow pair, and those discordant beyond uncertainty.
    cutoff_uncertain_discordance: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: En numbers (ISO 13528, U = 2u) per lesion and workflow pair, and their summary.
    en_pairs: pd.DataFrame = field(default_factory=pd.DataFrame)
    en_summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: Dose–response tables (``outcome_*``) when the results hold a ``clinical`` table.
    outcomes: dict[str, pd.DataFrame] = field(default_factory=dict)

    def as_dict(self) -> dict[str, pd.DataFrame]:
        """Tables by file stem."""
        return {
            "agreement": self.agreement,
            "cutoff_classifications": self.cutoff_classifications,
            "cutoff_summary": self.cutoff_summary,
            "cutoff_discordant": self.cutoff_discordant,
            "cutoff_translation": self.cutoff_translation,
            **{
                name: frame
                for name, frame in (
                    ("cutoff_probabilities", self.cutoff_probabilities),
                    ("cutoff_uncertain_discordance", self.cutoff_uncertain_discordance),
                    ("en_pairs", self.en_pairs),
                    ("en_summary", self.en_summary),
                )
                if len(frame)
            },
            **self.outcomes,
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


#: Bootstrap replicates and seed of the cutoff translations written by ``harmonize compare``
#: (the report renders these tables; it draws no bootstrap of its own).
DEFAULT_N_BOOT = 1000
DEFAULT_SEED = 0
#: Columns of the ``cutoff_classifications`` and ``cutoff_summary`` tables (defined once,
#: by the engine that fills them).
CLASSIFICATION_COLUMNS = _cutoffs.CLASSIFICATION_COLUMNS
SUMMARY_COLUMNS = _cutoffs.SUMMARY_COLUMNS
#: Columns of the ``cutoff_translation`` table.
TRANSLATION_COLUMNS = (
    "cutoff_key",
    "label",
    "index",
    "from_workflow",
    "to_workflow",
    "cutoff_gy",
    "estimate_gy",
    "ci_low_gy",
    "ci_high_gy",
    "ci_level",
    "observed_min_gy",
    "observed_max_gy",
    "extrapolated",
    "slope",
    "intercept",
    "method",
    "n_pairs",
    "n_patients",
    "n_boot",
    "seed",
    "sentence",
)


def _index_agreement(
    table: pd.DataFrame, index: str, level: str, names: list[str], notes: list[str]
) -> list[pd.DataFrame]:
    """Agreement of one index: between the workflows (truth excluded), and each vs truth."""
    if index not in table.columns:
        notes.append(f"{index}: not in the results; skipped")
        return []
    data = table.dropna(subset=[index])
    present = set(data["workflow"])
    compared = [w for w in names if w in present and w != TRUTH]
    parts = []
    if len(compared) >= 2:
        try:
            parts.append(
                _quiet(compare.agreement, data, index=index, level=level, workflows=compared)
            )
        except compare.CompareError as exc:
            notes.append(f"{index}: {exc}")
    else:
        notes.append(f"{index}: fewer than two workflows report it; no agreement between workflows")
    if TRUTH in present and compared:
        try:
            vs = _quiet(
                compare.agreement,
                data,
                index=index,
                level=level,
                workflows=[*compared, TRUTH],
                reference=TRUTH,
            )
            parts.append(vs.loc[vs["workflow_b"] == TRUTH])
        except compare.CompareError as exc:
            notes.append(f"{index} against truth: {exc}")
    return parts


def compare_results(
    results: dict[str, pd.DataFrame],
    *,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
    cutoffs: pd.DataFrame | None = None,
) -> ComparisonTables:
    """Agreement, cutoff agreement and cutoff translation on merged results tables.

    Lesion indices are compared pooled over cycles; per-cycle patient indices pooled over
    cycles; cumulative indices once per patient, on the treatment totals of
    :func:`harmonize.compare.treatment_end` (a common planned treatment is required: a
    mismatch is refused and noted, never compared). Agreement between workflows excludes
    the phantom truth; each workflow is also compared with the truth (``workflow_b =
    "truth"``). Every published cutoff (``cutoffs``, default the packaged table) is
    translated from its centre's workflow to every other workflow with ``n_boot`` bootstrap
    replicates seeded by ``seed``.
    """
    notes: list[str] = []
    voi = results.get("voi_dose")
    pindex = results.get("patient_index")
    if voi is None or pindex is None:
        raise ValueError("results need both voi_dose and patient_index tables")
    pindex = fill_cumulative_basis(pindex)
    names = sorted(set(voi["workflow"]) | set(pindex["workflow"]))
    parts = []
    lesions = voi.loc[voi["voi_kind"] == "lesion"]
    for index in LESION_INDICES:
        parts += _index_agreement(lesions, index, "lesion", names, notes)
    try:
        end: pd.DataFrame | None = compare.treatment_end(pindex)
    except compare.CompareError as exc:
        end = None
        notes.append(f"cumulative indices not compared: {exc}")
    for index in PATIENT_INDICES:
        if index.startswith("cum_"):
            if end is not None:
                parts += _index_agreement(end, index, "patient", names, notes)
        else:
            parts += _index_agreement(pindex, index, "patient", names, notes)
    agreement = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame(columns=compare.AGREEMENT_COLUMNS)
    )
    agreement = _with_proficiency(agreement, voi, notes)
    cuts = compare.load_cutoffs() if cutoffs is None else cutoffs
    try:
        cut = _quiet(compare.cutoff_agreement, pindex, cuts)
    except compare.CompareError as exc:
        notes.append(f"cutoff agreement: {exc}")
        cut = compare.CutoffAgreement(
            pd.DataFrame(columns=list(CLASSIFICATION_COLUMNS)),
            pd.DataFrame(columns=list(SUMMARY_COLUMNS)),
            pd.DataFrame(columns=["cutoff_key", "patient_id", "above", "below"]),
        )
    refused = cut.summary.loc[cut.summary["statistic"] == "not_compared"]
    notes += [f"cutoff {r.cutoff_key}: {r.note}" for r in refused.itertuples(index=False)]
    translation = _translations(pindex, cuts, n_boot, seed, notes)
    outcome_tables = _outcomes(results, pindex, translation, n_boot, seed, notes)
    tables = ComparisonTables(
        agreement=agreement,
        cutoff_classifications=cut.classifications,
        cutoff_summary=cut.summary,
        cutoff_discordant=cut.discordant,
        cutoff_translation=translation,
        notes=notes,
        outcomes=outcome_tables,
    )
    if "dose_mean_u_gy" in voi.columns and voi["dose_mean_u_gy"].notna().any():
        _with_uncertainty(tables, voi, pindex)
    return tables


def _with_uncertainty(tables: ComparisonTables, voi: pd.DataFrame, pindex: pd.DataFrame) -> None:
    """The comparisons that read the uncertainty columns (schema 1.2.0)."""
    from harmonize.compare import uncertain

    probabilities = uncertain.cutoff_probabilities(pindex)
    tables.cutoff_probabilities = probabilities
    tables.cutoff_uncertain_discordance = uncertain.uncertain_discordance(probabilities)
    pairs, summaries = [], []
    for index, level, table in (
        ("dose_mean_gy", "lesion", voi),
        *((i, "patient", pindex) for i in PATIENT_INDICES),
    ):
        if uncertain.uncertainty_column(index) not in table.columns:
            continue
        if table["workflow"].nunique() < 2:
            continue
        nd = _quiet(uncertain.normalised_differences, table, index, level)
        if level == "lesion":  # per VOI; the patient level is summarised only
            pairs.append(nd.pairs.assign(index=index))
        summaries.append(nd.summary)
    if pairs:
        tables.en_pairs = pd.concat(pairs, ignore_index=True)
    if summaries:
        tables.en_summary = pd.concat(summaries, ignore_index=True)


def _translations(
    pindex: pd.DataFrame, cutoffs: pd.DataFrame, n_boot: int, seed: int, notes: list[str]
) -> pd.DataFrame:
    """Each cutoff translated from its centre's workflow to every other workflow."""
    rows = []
    workflows = sorted(set(pindex["workflow"]) - {TRUTH})
    for spec in cutoffs.itertuples(index=False):
        # a cutoff was derived with its centre's workflow (cutoffs.csv column "centre")
        home = str(spec.centre).strip().lower()
        if home not in workflows:
            continue
        try:
            if str(spec.cycle) == compare.END_OF_TREATMENT:
                table, cycle = compare.treatment_end(pindex, f"cutoff {spec.key}"), None
            else:
                table, cycle = pindex, int(spec.cycle)
        except compare.CompareError as exc:
            notes.append(f"translate {spec.key}: {exc}")
            continue
        for target in [w for w in workflows if w != home]:
            try:
                tr = _quiet(
                    compare.translate_cutoff,
                    {"patient_index": table},
                    home,
                    target,
                    float(spec.cutoff_gy),
                    spec.index,
                    n_boot=n_boot,
                    seed=seed,
                    cycle=cycle,
                )
            except compare.CompareError as exc:
                notes.append(f"translate {spec.key} {home}→{target}: {exc}")
                continue
            rows.append(
                {
                    "cutoff_key": spec.key,
                    "label": spec.label,
                    "index": spec.index,
                    "from_workflow": home,
                    "to_workflow": target,
                    "cutoff_gy": float(spec.cutoff_gy),
                    "estimate_gy": tr.estimate_gy,
                    "ci_low_gy": tr.ci_low_gy,
                    "ci_high_gy": tr.ci_high_gy,
                    "ci_level": tr.ci_level,
                    "observed_min_gy": tr.observed_min_gy,
                    "observed_max_gy": tr.observed_max_gy,
                    "extrapolated": tr.extrapolated,
                    "slope": tr.slope,
                    "intercept": tr.intercept,
                    "method": tr.method + (" on ln doses" if tr.log else ""),
                    "n_pairs": tr.n_pairs,
                    "n_patients": tr.n_patients,
                    "n_boot": tr.n_boot,
                    "seed": seed,
                    "sentence": tr.sentence,
                }
            )
    return pd.DataFrame(rows, columns=list(TRANSLATION_COLUMNS))


def _outcomes(
    results: dict[str, pd.DataFrame],
    pindex: pd.DataFrame,
    translation: pd.DataFrame,
    n_boot: int,
    seed: int,
    notes: list[str],
) -> dict[str, pd.DataFrame]:
    """Dose–response tables when a ``clinical`` table is present (harmonize.outcomes)."""
    clinical = results.get("clinical")
    if clinical is None or clinical.empty:
        return {}
    from harmonize.outcomes import OutcomesError
    from harmonize.outcomes.dose_response import dose_response_tables

    clinical = clinical.drop_duplicates()  # the same table read from several results folders
    if clinical["patient_id"].duplicated().any():
        notes.append(
            "clinical: the results folders hold different rows for the same patient; skipped"
        )
        return {}
    matched = set(clinical["patient_id"]) & set(pindex["patient_id"])
    if not matched:
        notes.append("clinical: no patient of the clinical table has dosimetry; skipped")
        return {}
    try:
        return dose_response_tables(
            pindex, clinical, translations=translation, n_boot=n_boot, seed=seed
        )
    except OutcomesError as exc:
        notes.append(f"clinical: {exc}")
        return {}


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

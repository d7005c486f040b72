"""Published dose cutoffs as data: classification agreement and cutoff translation.

The packaged table is ``harmonize/data/cutoffs.csv``; its provenance (and the one assumed
interpretation, ``hebert2024_cum``) is documented in ``harmonize/data/CUTOFFS.md``.
"""

from __future__ import annotations

import itertools
import math
import operator
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from harmonize.compare._common import MIN_PAIRS, CompareError, check_ci_level
from harmonize.compare.agreement import LESION_KEYS, PATIENT_KEYS
from harmonize.compare.kappa import cohen_kappa, fleiss_kappa
from harmonize.compare.regression import deming_from_moments, passing_bablok

__all__ = [
    "CLASSIFICATION_COLUMNS",
    "CUTOFF_COLUMNS",
    "END_OF_TREATMENT",
    "SUMMARY_COLUMNS",
    "CutoffAgreement",
    "CutoffTranslation",
    "cutoff_agreement",
    "load_cutoffs",
    "translate_cutoff",
    "treatment_end",
]

#: Required columns of a cutoff table (documented in ``harmonize/data/CUTOFFS.md``).
CUTOFF_COLUMNS = (
    "key",
    "label",
    "study",
    "centre",
    "source",
    "source_doi",
    "index",
    "level",
    "cycle",
    "eligibility",
    "eligibility_source",
    "direction",
    "value",
    "unit",
    "interpretation",
    "note",
)
#: Columns of the cutoff tables of harmonize < 0.x (read, renamed): old name -> new name.
_OLD_NAMES = {"operator": "direction", "cutoff_gy": "value"}
#: The value of ``cycle`` meaning "end of treatment" (the total over the planned cycles).
END_OF_TREATMENT = "end"
_OPS: dict[str, Callable[[NDArray[np.float64], float], NDArray[np.bool_]]] = {
    ">=": operator.ge,
    ">": operator.gt,
}
_LEVELS = ("patient",)
_UNITS = ("Gy",)


def load_cutoffs(path: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Read and validate a cutoff table (default: the packaged ``cutoffs.csv``).

    Parameters
    ----------
    path : path-like, optional
        A CSV with the columns ``CUTOFF_COLUMNS`` (see ``harmonize/data/CUTOFFS.md``).
        Tables in the older layout (``operator``, ``cutoff_gy``, cycle ``last``, no
        ``label``/``level``/``eligibility``/``unit``) are read too.

    Returns
    -------
    pandas.DataFrame
        One row per cutoff, columns ``CUTOFF_COLUMNS`` plus ``operator`` (= ``direction``)
        and ``cutoff_gy`` (= ``value``, float); ``cycle`` is ``"1"``, ``"2"``, ... or
        ``"end"``.

    Raises
    ------
    CompareError
        Naming the file, the column and the offending values.

    Examples
    --------
    >>> load_cutoffs().set_index("key").loc["mileva2024_min_c1", "cutoff_gy"]
    np.float64(35.0)
    """
    if path is None:
        src = resources.files("harmonize.data").joinpath("cutoffs.csv")
        name = "harmonize/data/cutoffs.csv"
        with resources.as_file(src) as p:
            df = pd.read_csv(p, dtype=str, keep_default_na=False)
    else:
        name = os.fspath(path)
        try:
            df = pd.read_csv(name, dtype=str, keep_default_na=False)
        except FileNotFoundError as exc:
            raise CompareError(f"cutoff file {name} not found") from exc
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise CompareError(f"cutoff file {name} is not a readable CSV: {exc}") from exc
    df = df.rename(columns={k: v for k, v in _OLD_NAMES.items() if v not in df.columns})
    if "cycle" in df.columns:
        df["cycle"] = df["cycle"].replace({"last": END_OF_TREATMENT})
    defaults = {"level": "patient", "unit": "Gy", "eligibility": "all lesions"}
    defaults |= {"eligibility_source": "assumed", "label": ""}
    for col, value in defaults.items():
        if col not in df.columns:
            df[col] = value
    missing = [c for c in CUTOFF_COLUMNS if c not in df.columns]
    if missing:
        raise CompareError(f"{name}: missing column(s) {missing}; expected {list(CUTOFF_COLUMNS)}")
    if df["key"].duplicated().any() or (df["key"] == "").any():
        raise CompareError(f"{name}: column 'key' must be unique and non-empty")
    _check_values(df, name, "direction", tuple(_OPS))
    _check_values(df, name, "level", _LEVELS)
    _check_values(df, name, "unit", _UNITS)
    _check_values(df, name, "interpretation", ("pub", "assumed"))
    _check_values(df, name, "eligibility_source", ("pub", "assumed"))
    cyc_ok = df["cycle"].str.fullmatch(rf"{END_OF_TREATMENT}|[1-9][0-9]*")
    if not cyc_ok.all():
        raise CompareError(
            f"{name}: column 'cycle' must be a positive integer or '{END_OF_TREATMENT}' (end of "
            f"treatment), got {df.loc[~cyc_ok, 'cycle'].tolist()}"
        )
    end_not_cum = (df["cycle"] == END_OF_TREATMENT) & ~df["index"].str.startswith("cum_")
    if end_not_cum.any():
        raise CompareError(
            f"{name}: cutoff(s) {df.loc[end_not_cum, 'key'].tolist()} have cycle "
            f"'{END_OF_TREATMENT}' but a per-cycle index; the end of treatment needs a "
            "cumulative index (cum_...)"
        )
    cut = pd.to_numeric(df["value"], errors="coerce")
    if cut.isna().any() or not np.all(np.isfinite(cut)):
        bad = df.loc[cut.isna(), "value"].tolist()
        raise CompareError(f"{name}: column 'value' must be finite numbers, got {bad}")
    df["value"] = cut.astype(np.float64)
    df["cutoff_gy"] = df["value"]
    df["operator"] = df["direction"]
    no_label = df["label"].str.strip() == ""
    df.loc[no_label, "label"] = [
        f"{r.study} — {r.index} {_OPERATOR_TEXT[r.direction]} {r.value:g} {r.unit}"
        for r in df.loc[no_label].itertuples(index=False)
    ]
    return df[[*CUTOFF_COLUMNS, "operator", "cutoff_gy"]].reset_index(drop=True)


_OPERATOR_TEXT = {">=": "≥", ">": ">"}


def _check_values(df: pd.DataFrame, name: str, column: str, allowed: tuple[str, ...]) -> None:
    bad = sorted(set(df[column]) - set(allowed))
    if bad:
        raise CompareError(f"{name}: column {column!r} has {bad}; allowed: {list(allowed)}")


def treatment_end(patient_index: pd.DataFrame, what: str = "cumulative indices") -> pd.DataFrame:
    """One row per patient x workflow carrying the treatment totals, on a common basis.

    Cumulative indices are totals over the planned treatment (``cum_cycles_planned``
    cycles, :func:`harmonize.indices.patient_index`); this takes each patient x workflow's
    last row (files older than schema 1.2.0 are derived by
    :func:`harmonize.indices.fill_cumulative_basis`), drops the totals whose
    ``cum_basis`` is ``incomplete`` (their values are null) and refuses workflows whose
    totals cover different planned treatments.

    Parameters
    ----------
    patient_index : pandas.DataFrame
        A ``patient_index`` table.
    what : str
        What is being compared, for the error message.

    Returns
    -------
    pandas.DataFrame
        The selected rows, with ``cycle`` set to ``cum_cycles_planned`` (the totals are
        over the planned treatment, whatever cycle a workflow measured last), so that the
        workflows' totals pair on (patient_id, cycle).

    Raises
    ------
    CompareError
        When the workflows' totals cover different numbers of planned cycles, naming them.
    """
    from harmonize.indices import fill_cumulative_basis

    pi = fill_cumulative_basis(patient_index)
    last = pi.groupby(["patient_id", "workflow"])["cycle"].transform("max")
    end = pi.loc[pi["cycle"] == last]
    usable = end.loc[end["cum_basis"] != "incomplete"]
    planned = usable.groupby("workflow")["cum_cycles_planned"].agg(lambda s: sorted(set(s)))
    if len({v for values in planned for v in values}) > 1:
        detail = "; ".join(
            f"{w}: {', '.join(str(v) for v in values)} cycle(s)" for w, values in planned.items()
        )
        raise CompareError(
            f"{what} are totals over different planned treatments ({detail}); compare them "
            "only on a common basis: re-run every workflow with the same --planned-cycles"
        )
    return end.assign(cycle=end["cum_cycles_planned"].astype(np.int64)).reset_index(drop=True)


#: Name of the phantom's ground truth in the results: reported beside the workflows'
#: agreement (pairs "workflow vs truth"), never counted as a rater in Fleiss' kappa.
TRUTH = "truth"

#: Columns of :attr:`CutoffAgreement.classifications` (table ``cutoff_classifications``).
CLASSIFICATION_COLUMNS = (
    "cutoff_key",
    "index",
    "cutoff_gy",
    "operator",
    "patient_id",
    "cycle",
    "workflow",
    "value_gy",
    "above",
)
#: Columns of :attr:`CutoffAgreement.summary` (table ``cutoff_summary``).
SUMMARY_COLUMNS = (
    "cutoff_key",
    "workflow_a",
    "workflow_b",
    "statistic",
    "estimate",
    "ci_low",
    "ci_high",
    "n_patients",
    "note",
)


@dataclass(frozen=True)
class CutoffAgreement:
    """Classification agreement at published cutoffs.

    Attributes
    ----------
    classifications : pandas.DataFrame
        ``cutoff_key, index, cutoff_gy, operator, patient_id, cycle, workflow, value_gy,
        above`` — every workflow's (and the truth's) class of every patient.
    summary : pandas.DataFrame
        ``cutoff_key, workflow_a, workflow_b, statistic, estimate, ci_low, ci_high,
        n_patients, note``. Per workflow pair (truth included as ``workflow_b = "truth"``):
        statistics ``cohen_kappa``, ``raw_agreement``, ``fraction_above_a``,
        ``fraction_above_b``; over the workflows, truth excluded (``workflow_a = "all"``,
        ``workflow_b = ""``): ``fleiss_kappa``; a cutoff that could not be compared has one
        row ``not_compared`` with the reason in ``note``. A kappa that cannot be
        estimated has a NaN estimate, a CI that cannot be estimated NaN limits; ``note``
        says why. Kappa CIs are clipped to [-1, 1].
    discordant : pandas.DataFrame
        ``cutoff_key, patient_id, above, below`` — patients classified differently by
        the workflows (comma-separated workflow names; truth excluded).
    """

    classifications: pd.DataFrame
    summary: pd.DataFrame
    discordant: pd.DataFrame


def _select(pi: pd.DataFrame, cut: Any) -> pd.DataFrame:
    if str(cut.cycle) == END_OF_TREATMENT:
        return treatment_end(pi, f"cutoff {cut.key} ({cut.index})")
    return pi.loc[pi["cycle"] == int(cut.cycle)]


def _cohen_rows(
    a: NDArray[np.bool_], b: NDArray[np.bool_], wa: str, wb: str, level: float
) -> list[dict[str, Any]]:
    n = int(a.size)
    rows = [
        dict(
            statistic="raw_agreement",
            estimate=float(np.mean(a == b)) if n else math.nan,
            note="proportion classified alike",
        ),
        dict(
            statistic="fraction_above_a",
            estimate=float(a.mean()) if n else math.nan,
            note=f"fraction above in {wa}",
        ),
        dict(
            statistic="fraction_above_b",
            estimate=float(b.mean()) if n else math.nan,
            note=f"fraction above in {wb}",
        ),
    ]
    if n and (a.all() or not a.any()) and (b.all() or not b.any()):
        side = "above" if a.any() else "below"
        why = f"Cohen 1960; not estimable: all {n} patients are {side} the cutoff in both workflows"
        if a.any() != b.any():
            why = (
                f"Cohen 1960; not estimable: each workflow puts all {n} patients on one side "
                "(opposite sides)"
            )
        rows.append(dict(statistic="cohen_kappa", estimate=math.nan, note=why))
        return rows
    try:
        k = cohen_kappa(a, b, ci_level=level)
    except CompareError as exc:
        rows.append(
            dict(
                statistic="cohen_kappa", estimate=math.nan, note=f"Cohen 1960; not estimable: {exc}"
            )
        )
        return rows
    lo, hi = max(k.ci[0], -1.0), min(k.ci[1], 1.0)
    note = "Cohen 1960, Wald CI clipped to [-1, 1]"
    if not hi > lo:
        lo = hi = math.nan
        why = (
            f"all {n} patients classified alike"
            if np.all(a == b)
            else f"one workflow puts all {n} patients on the same side"
        )
        note = f"Cohen 1960; CI not estimable: zero standard error ({why})"
    rows.append(dict(statistic="cohen_kappa", estimate=k.kappa, ci_low=lo, ci_high=hi, note=note))
    return rows


def _fleiss_row(complete: pd.DataFrame) -> dict[str, Any]:
    try:
        fk = fleiss_kappa(complete.astype(bool).to_numpy())
    except CompareError as exc:
        return dict(
            statistic="fleiss_kappa", estimate=math.nan, note=f"Fleiss 1971; not estimable: {exc}"
        )
    return dict(
        statistic="fleiss_kappa",
        estimate=fk.kappa,
        note="Fleiss 1971 over the workflows (truth excluded); no CI",
    )


def cutoff_agreement(
    patient_index: pd.DataFrame,
    cutoffs: pd.DataFrame | None = None,
    workflows: Sequence[str] | None = None,
    *,
    ci_level: float = 0.95,
) -> CutoffAgreement:
    """Classify every patient at every cutoff by every workflow and measure agreement.

    A patient is "above" when ``value <direction> cutoff`` on the cutoff's index, at cycle
    1 (or the cutoff's cycle) or, for cycle ``"end"``, on the treatment totals of
    :func:`treatment_end` (the same planned treatment for every workflow, incomplete
    totals left out — a mismatch of planned cycles is not compared: the cutoff gets one
    ``not_compared`` row saying what differs). For each workflow pair, Cohen's kappa
    (Wald CI, clipped to [-1, 1]) and raw agreement on the patients both classified; the
    phantom truth (workflow ``"truth"``) is paired with each workflow but is not a rater of
    Fleiss' kappa, which is over the workflows on the patients every one classified.

    Parameters
    ----------
    patient_index : pandas.DataFrame
        The ``patient_index`` table (columns patient_id, cycle, workflow and the indices).
    cutoffs : pandas.DataFrame, optional
        From :func:`load_cutoffs` (default: the packaged table).
    workflows : sequence of str, optional
        Default: all workflows in ``patient_index`` (truth included when present).
    ci_level : float, default 0.95

    Returns
    -------
    CutoffAgreement
    """
    level = check_ci_level(ci_level)
    cuts = load_cutoffs() if cutoffs is None else cutoffs
    for col in ("patient_id", "cycle", "workflow"):
        if col not in patient_index.columns:
            raise CompareError(f"patient_index lacks column {col!r}")
    pi = patient_index
    if workflows is not None:
        pi = pi.loc[pi["workflow"].isin(list(workflows))]
    names = list(workflows) if workflows is not None else sorted(pi["workflow"].unique())
    raters = [w for w in names if w != TRUTH]
    if len(raters) < 2 and not (raters and TRUTH in names):
        raise CompareError(f"need at least 2 workflows, found {names}")
    cls_parts, summ, disc_parts = [], [], []
    for cut in cuts.itertuples(index=False):
        if cut.index not in pi.columns:
            raise CompareError(
                f"cutoff {cut.key!r}: index column {cut.index!r} not in patient_index"
            )
        try:
            chosen = _select(pi, cut)
        except CompareError as exc:
            summ.append(
                dict(cutoff_key=cut.key, workflow_a="all", workflow_b="", n_patients=0)
                | dict(statistic="not_compared", estimate=math.nan, note=str(exc))
            )
            continue
        sel = chosen[["patient_id", "cycle", "workflow", cut.index]]
        sel = sel.rename(columns={cut.index: "value_gy"}).dropna(subset=["value_gy"])
        sel = sel.assign(
            cutoff_key=cut.key,
            index=cut.index,
            cutoff_gy=cut.cutoff_gy,
            operator=cut.operator,
            above=_OPS[cut.operator](sel["value_gy"].to_numpy(np.float64), cut.cutoff_gy),
        )
        cls_parts.append(sel)
        wide = sel.pivot(index="patient_id", columns="workflow", values="above").reindex(
            columns=names
        )
        pairs = list(itertools.combinations(raters, 2))
        pairs += [(w, TRUTH) for w in raters if TRUTH in names]
        for wa, wb in pairs:
            both = wide[[wa, wb]].dropna()
            a, b = both[wa].astype(bool).to_numpy(), both[wb].astype(bool).to_numpy()
            base = dict(cutoff_key=cut.key, workflow_a=wa, workflow_b=wb, n_patients=int(a.size))
            summ += [base | row for row in _cohen_rows(a, b, wa, wb, level)]
        complete = wide[raters].dropna()
        if len(raters) >= 3:
            base = dict(
                cutoff_key=cut.key, workflow_a="all", workflow_b="", n_patients=len(complete)
            )
            summ.append(base | _fleiss_row(complete))
        arr = complete.astype(bool).to_numpy()
        split = arr.any(axis=1) & ~arr.all(axis=1)
        if split.any():
            cols = np.array(raters, dtype=object)
            disc_parts.append(
                pd.DataFrame(
                    {
                        "cutoff_key": cut.key,
                        "patient_id": complete.index[split],
                        "above": [",".join(cols[r]) for r in arr[split]],
                        "below": [",".join(cols[~r]) for r in arr[split]],
                    }
                )
            )
    cls_columns = list(CLASSIFICATION_COLUMNS)
    classifications = (
        pd.concat(cls_parts, ignore_index=True)[cls_columns]
        if cls_parts
        else pd.DataFrame(columns=cls_columns)
    )
    summary = pd.DataFrame(summ, columns=list(SUMMARY_COLUMNS))
    discordant = (
        pd.concat(disc_parts, ignore_index=True)
        if disc_parts
        else pd.DataFrame(columns=["cutoff_key", "patient_id", "above", "below"])
    )
    return CutoffAgreement(classifications, summary, discordant)


@dataclass(frozen=True)
class CutoffTranslation:
    """A cutoff of one workflow expressed in another's dose scale.

    Attributes
    ----------
    estimate_gy, ci_low_gy, ci_high_gy : float
        Translated cutoff and its percentile bootstrap CI.
    sentence : str
        E.g. "35 Gy in bordet is 41.2 Gy [36.0, 47.9] in montpellier", followed by
        "(extrapolated: bordet observed 5.1–15.7 Gy)" when the cutoff lies outside the
        source workflow's observed range.
    observed_min_gy, observed_max_gy : float
        Range of the source workflow's paired values of the index.
    extrapolated : bool
        True when ``cutoff_gy`` lies outside ``[observed_min_gy, observed_max_gy]``: the
        translation then rests on the fitted line beyond the data.
    slope, intercept : float
        Fitted ``to = intercept + slope · from`` (on ln doses when ``log``).
    n_pairs, n_patients, n_boot : int
    method : str
    log : bool
    """

    estimate_gy: float
    ci_low_gy: float
    ci_high_gy: float
    sentence: str
    from_workflow: str
    to_workflow: str
    cutoff_gy: float
    index: str
    slope: float
    intercept: float
    n_pairs: int
    n_patients: int
    n_boot: int
    method: str
    log: bool
    ci_level: float
    observed_min_gy: float = math.nan
    observed_max_gy: float = math.nan
    extrapolated: bool = False


def translate_cutoff(
    results: pd.DataFrame | Mapping[str, pd.DataFrame],
    from_workflow: str,
    to_workflow: str,
    cutoff_gy: float,
    index: str,
    method: Literal["deming", "passing_bablok"] = "deming",
    n_boot: int = 2000,
    seed: int = 0,
    *,
    log: bool = True,
    cycle: int | None = None,
    ci_level: float = 0.95,
) -> CutoffTranslation:
    """Dose in ``to_workflow`` that corresponds to ``cutoff_gy`` in ``from_workflow``.

    The paired index values are fitted as ``to = intercept + slope · from`` by Deming
    regression (error ratio 1) or Passing–Bablok; the cutoff is mapped through the line.
    With ``log=True`` (default) the fit is on ln doses, i.e. ``to = e^a · from^b``:
    dosimetry errors are multiplicative (a workflow off by x % at 10 Gy is off by about
    x % at 100 Gy), the residual scatter is then homogeneous, and the result is
    invariant to the dose unit; it needs positive doses. CI: percentile bootstrap with
    ``n_boot`` replicates resampling **patients** (with all their lesions/cycles), seeded
    (``numpy.random.default_rng(seed)``). Deming replicates are computed at once from
    per-patient sums (no loop); Passing–Bablok loops over replicates.

    Parameters
    ----------
    results : DataFrame or mapping
        ``patient_index`` (patient-level index such as ``lesion_dose_min_gy``) or
        ``voi_dose`` (lesion-level index such as ``dose_mean_gy``), or a mapping.
    from_workflow, to_workflow : str
    cutoff_gy : float
        Cutoff in ``from_workflow``'s scale (> 0 when ``log``).
    index : str
        Column holding the dose index.
    method : {"deming", "passing_bablok"}
    n_boot : int, default 2000
    seed : int, default 0
    log : bool, default True
    cycle : int, optional
        Use one cycle only (default: all cycles' pairs).
    ci_level : float, default 0.95

    Returns
    -------
    CutoffTranslation
    """
    level = check_ci_level(ci_level)
    if method not in ("deming", "passing_bablok"):
        raise CompareError(f"method must be 'deming' or 'passing_bablok', got {method!r}")
    if int(n_boot) < 100:
        raise CompareError(f"n_boot must be ≥ 100, got {n_boot}")
    cutoff = float(cutoff_gy)
    if log and not cutoff > 0:
        raise CompareError(f"cutoff_gy must be > 0 with log=True, got {cutoff_gy}")
    if isinstance(results, Mapping):
        pi = results.get("patient_index")
        table = pi if pi is not None and index in pi.columns else results.get("voi_dose")
        if table is None:
            raise CompareError(f"no table in results has column {index!r}")
    else:
        table = results
    if index not in table.columns:
        raise CompareError(f"column {index!r} not in results (columns: {list(table.columns)})")
    lesion = "voi_id" in table.columns and "voi_kind" in table.columns
    keys = list(LESION_KEYS if lesion else PATIENT_KEYS)
    df = table.loc[table["voi_kind"] == "lesion"] if lesion else table
    if cycle is not None:
        df = df.loc[df["cycle"] == cycle]
    for w in (from_workflow, to_workflow):
        if w not in set(df["workflow"]):
            raise CompareError(
                f"workflow {w!r} not in results (present: {sorted(set(df['workflow']))})"
            )
    df = df.loc[df["workflow"].isin([from_workflow, to_workflow]), [*keys, "workflow", index]]
    if df.duplicated([*keys, "workflow"]).any():
        raise CompareError(f"duplicate rows for the same {tuple(keys)} and workflow")
    wide = df.pivot(index=keys, columns="workflow", values=index).dropna()
    x = wide[from_workflow].to_numpy(np.float64)
    y = wide[to_workflow].to_numpy(np.float64)
    if x.size < MIN_PAIRS:
        raise CompareError(f"only {x.size} paired values of {index!r} (need ≥ {MIN_PAIRS})")
    observed = (float(x.min()), float(x.max()))
    extrapolated = not observed[0] <= cutoff <= observed[1]
    if log:
        if np.any(x <= 0) or np.any(y <= 0):
            raise CompareError(f"log=True needs positive {index!r} values in both workflows")
        x, y, c = np.log(x), np.log(y), math.log(cutoff)
    else:
        c = cutoff
    pat = pd.factorize(wide.index.get_level_values("patient_id"))[0]
    n_pat = int(pat.max()) + 1
    if n_pat < 3:
        raise CompareError(f"bootstrap over patients needs ≥ 3 patients, got {n_pat}")
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n_pat, np.full(n_pat, 1.0 / n_pat), size=int(n_boot)).astype(
        np.float64
    )
    if method == "deming":
        cx, cy = float(x.mean()), float(y.mean())
        u, v = x - cx, y - cy
        per = np.column_stack([np.ones_like(u), u, v, u * u, v * v, u * v])
        sums = np.zeros((n_pat, 6))
        np.add.at(sums, pat, per)
        # Moments passed one by one: ``*moments, 1.0`` hides from a type checker that the
        # six sums fill the first six parameters and 1.0 is ``delta``.
        w0, wx, wy, wxx, wyy, wxy = sums.sum(axis=0)
        s_full, i_full = deming_from_moments(w0, wx, wy, wxx, wyy, wxy, 1.0)
        w0, wx, wy, wxx, wyy, wxy = (counts @ sums).T
        # a replicate that draws one patient only has no spread: its fit is NaN (counted
        # as degenerate below), not a warning
        with np.errstate(divide="ignore", invalid="ignore"):
            bs, bi = deming_from_moments(w0, wx, wy, wxx, wyy, wxy, 1.0)
            boot = np.asarray(bi + cy - bs * cx + bs * c, dtype=np.float64)
        slope, icpt = float(s_full), float(i_full) + cy - float(s_full) * cx
    else:
        pb = passing_bablok(x, y)
        slope, icpt = pb.slope, pb.intercept
        members = [np.flatnonzero(pat == p) for p in range(n_pat)]
        boot = np.empty(int(n_boot))
        for i, row in enumerate(counts.astype(np.int64)):
            idx = np.concatenate([np.repeat(members[p], k) for p, k in enumerate(row) if k])
            try:
                r = passing_bablok(x[idx], y[idx])
                boot[i] = r.intercept + r.slope * c
            except CompareError:
                boot[i] = np.nan
    est = icpt + slope * c
    ok = np.isfinite(boot)
    if np.count_nonzero(ok) < 0.9 * boot.size:
        raise CompareError("more than 10 % of bootstrap fits were degenerate; too few patients")
    lo, hi = np.quantile(boot[ok], [(1 - level) / 2, (1 + level) / 2])
    if log:
        est, lo, hi = math.exp(est), math.exp(lo), math.exp(hi)
    sentence = (
        f"{cutoff:g} Gy in {from_workflow} is {est:.1f} Gy [{lo:.1f}, {hi:.1f}] in {to_workflow}"
    )
    if extrapolated:
        sentence += (
            f" (extrapolated: {from_workflow} observed {observed[0]:.1f}–{observed[1]:.1f} Gy)"
        )
    return CutoffTranslation(
        estimate_gy=float(est),
        ci_low_gy=float(lo),
        ci_high_gy=float(hi),
        sentence=sentence,
        from_workflow=from_workflow,
        to_workflow=to_workflow,
        cutoff_gy=cutoff,
        index=index,
        slope=slope,
        intercept=icpt,
        n_pairs=int(x.size),
        n_patients=n_pat,
        n_boot=int(n_boot),
        method=method,
        log=bool(log),
        ci_level=level,
        observed_min_gy=observed[0],
        observed_max_gy=observed[1],
        extrapolated=extrapolated,
    )

"""The workflow-adapter contract: a small base class, a frozen config, a result.

A workflow adapter reproduces one centre's dosimetry method. It declares

* class-level metadata — ``name``, ``center``, ``version``, ``description``, ``references``;
* capability tags (:class:`WorkflowTags`) — voxel-level or not, whether it needs CT, how many
  time points it needs, the tolerance it claims against noise-free phantom truth;
* a frozen dataclass config (:class:`WorkflowConfig`) whose every field carries its source
  (a publication key from METHODS.md) or the word "assumed"/"inferred";
* one method, ``run(study) -> WorkflowResult``.

Parameters can be overridden from Python (``Adapter(time_points_h=(24, 168))``) or from
strings (``Adapter.from_overrides({"time_points_h": "24,168"})``, the CLI's ``--set``); the
overrides are recorded in provenance.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from harmonize import plausibility
from harmonize.errors import HarmonizeError
from harmonize.study import StudyError, validate_study

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr
else:
    from harmonize._lazy import lazy_module

    pd = lazy_module("pandas")
    xr = lazy_module("xarray")

__all__ = [
    "WorkflowAdapter",
    "WorkflowConfig",
    "WorkflowError",
    "WorkflowResult",
    "WorkflowTags",
    "param",
    "select_time_points",
    "study_content_hash",
]


class WorkflowError(HarmonizeError, ValueError):
    """A workflow cannot process a study (missing time points, bad parameter, ...)."""


def param(default: Any, *, source: str, doc: str, choices: tuple[str, ...] | None = None) -> Any:
    """A config field with its source ("Hebert2024", "assumed", ...) and a description.

    ``choices``, when given, lists the accepted values: an override outside them is
    refused when the config is built (before any study is processed).
    """
    if not source:
        raise ValueError("every workflow parameter needs a source or 'assumed'")
    metadata: dict[str, Any] = {"source": source, "doc": doc}
    if choices is not None:
        metadata["choices"] = tuple(choices)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class WorkflowConfig:
    """Base of adapter configs: frozen, serialisable, every field with a source."""

    def to_dict(self) -> dict[str, Any]:
        """Parameters as JSON-ready values (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def describe(cls) -> pd.DataFrame:
        """One row per parameter: name, default, source, description."""
        rows = [
            {
                "parameter": f.name,
                "default": f.default,
                "source": f.metadata.get("source", ""),
                "description": f.metadata.get("doc", ""),
            }
            for f in dataclasses.fields(cls)
        ]
        return pd.DataFrame(rows)

    def sources(self) -> dict[str, str]:
        """Parameter name → source key."""
        return {f.name: f.metadata.get("source", "") for f in dataclasses.fields(self)}

    def replace(self, **changes: Any) -> WorkflowConfig:
        """A copy with some parameters changed (validated by type)."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise WorkflowError(
                f"unknown parameter(s) {unknown} for {type(self).__name__}; known: {sorted(names)}"
            )
        hints = typing.get_type_hints(type(self))
        coerced = {k: _coerce(k, v, hints[k]) for k, v in changes.items()}
        choices = {f.name: f.metadata.get("choices") for f in dataclasses.fields(self)}
        for key, value in coerced.items():
            allowed = choices.get(key)
            if allowed is not None and value not in allowed:
                raise WorkflowError(
                    f"parameter {key!r} must be one of {list(allowed)}, got {value!r}"
                )
        return dataclasses.replace(self, **coerced)

    def with_overrides(self, overrides: Mapping[str, str]) -> WorkflowConfig:
        """A copy with parameters parsed from strings (the CLI's ``--set key=value``)."""
        return self.replace(**dict(overrides))


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Coerce ``value`` (possibly a string from the CLI) to the field's annotated type."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    try:
        if origin in (types.UnionType, typing.Union):
            if value is None or (isinstance(value, str) and value.lower() in ("none", "")):
                return None
            inner = [a for a in args if a is not type(None)]
            return _coerce(name, value, inner[0])
        if origin is tuple:
            items = value.split(",") if isinstance(value, str) else list(value)
            item_type = args[0] if args else str
            return tuple(
                _coerce(name, v.strip() if isinstance(v, str) else v, item_type) for v in items
            )
        if hint is bool:
            if isinstance(value, str):
                lowered = value.strip().lower()
                if lowered not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return lowered in ("true", "1", "yes")
            return bool(value)
        if hint is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if hint is float:
            out = float(value)
            if not np.isfinite(out):
                raise ValueError(value)
            return out
        if hint is str:
            return str(value)
    except (TypeError, ValueError):
        kind = getattr(hint, "__name__", str(hint))
        raise WorkflowError(f"parameter {name!r}: cannot read {value!r} as {kind}") from None
    return value


@dataclass(frozen=True)
class WorkflowTags:
    """Capabilities an adapter declares (the conformance suite picks checks by them).

    Attributes
    ----------
    voxel_level : bool
        Kinetics are fitted per voxel (else per VOI).
    needs_ct : bool
        The study must have a CT (e.g. for CT-based mass).
    min_time_points : int
        Fewest time points the method needs.
    voxel_dose_indices : bool
        The method yields a voxel dose map, so min/median/max/D2/D98 are defined.
    truth_tolerance : float
        Largest relative error of lesion mean dose vs noise-free phantom truth that the
        adapter claims, for lesions of at least ``truth_min_volume_ml``.
    truth_min_volume_ml : float
        Smallest lesion volume the tolerance applies to.
    """

    voxel_level: bool = False
    needs_ct: bool = False
    min_time_points: int = 2
    voxel_dose_indices: bool = True
    truth_tolerance: float = 0.25
    truth_min_volume_ml: float = 20.0


def _empty_frame() -> pd.DataFrame:
    """An empty DataFrame (a default factory that imports pandas only when called)."""
    return pd.DataFrame()


@dataclass
class WorkflowResult:
    """What one adapter run on one study returns.

    Attributes
    ----------
    voi_dose : DataFrame
        One row per VOI, columns of the ``voi_dose`` table of the results schema.
    tac : DataFrame
        One row per VOI and time point used (``tac`` table).
    provenance : dict
        Workflow name, version, parameters, overrides, sources, input hash, software.
    dose_map_gy : ndarray (z, y, x) or None
        The absorbed-dose map when the method makes one (for ``--save-maps``).
    dvh : DataFrame
        Cumulative DVH of every VOI (``dvh`` table: ``voi_id``, ``volume_pct``, ``dose_gy``;
        :func:`harmonize.indices.dvh_table`) when the method has voxel doses
        (``tags.voxel_dose_indices``); empty otherwise, and then no ``dvh`` file is written.
    uncertainty : DataFrame
        The uncertainty budget (``uncertainty`` table: one row per VOI × component,
        :mod:`harmonize.uncertainty`); empty when the adapter computes none.
    uncertainty_chain : harmonize.uncertainty.VoiChain or None
        The inputs of that budget (for a Monte Carlo cross-check); not written.
    """

    voi_dose: pd.DataFrame
    tac: pd.DataFrame
    provenance: dict[str, Any]
    dose_map_gy: np.ndarray | None = None
    dvh: pd.DataFrame = field(default_factory=_empty_frame)
    uncertainty: pd.DataFrame = field(default_factory=_empty_frame)
    uncertainty_chain: Any = None


class WorkflowAdapter:
    """Base class of workflow adapters (subclass it; register it as an entry point).

    Subclasses set the class attributes and implement :meth:`_run`; :meth:`run` validates
    the study, checks tags, calls ``_run`` and fills the common columns and provenance.

    Parameters
    ----------
    config : WorkflowConfig, optional
        Full parameter set; the default config of the adapter when omitted.
        Positional-only, so that an override named ``config`` (e.g. from the CLI's
        ``--set``) is reported as an unknown parameter instead of replacing the config.
    **overrides
        Parameters to change (recorded as overrides in provenance).
    """

    #: Registered name (lower case, used on the CLI and in the results' ``workflow`` column).
    name: ClassVar[str] = ""
    #: The centre whose method this reproduces.
    center: ClassVar[str] = ""
    #: Version of the adapter's method (bump when results change).
    version: ClassVar[str] = "0"
    #: One-line description.
    description: ClassVar[str] = ""
    #: Publication keys (METHODS.md) the method follows.
    references: ClassVar[tuple[str, ...]] = ()
    #: Where to read about the method.
    url: ClassVar[str] = ""
    #: Capability tags.
    tags: ClassVar[WorkflowTags] = WorkflowTags()
    #: Rule for cumulative indices: how the total over the planned treatment is formed from
    #: the cycles measured (one of harmonize.indices.CUMULATIVE_RULES; see
    #: harmonize.indices.patient_index).
    cumulative_rule: ClassVar[str] = "sum"
    #: The config class.
    Config: ClassVar[type[WorkflowConfig]] = WorkflowConfig

    def __init__(self, config: WorkflowConfig | None = None, /, **overrides: Any) -> None:
        base = config if config is not None else self.Config()
        if not isinstance(base, self.Config):
            raise WorkflowError(
                f"{type(self).__name__} expects a {self.Config.__name__}, got {type(base).__name__}"
            )
        self.overrides: dict[str, Any] = {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in overrides.items()
        }
        self.config = base.replace(**overrides) if overrides else base

    @classmethod
    def from_overrides(cls, overrides: Mapping[str, str]) -> WorkflowAdapter:
        """Build with string overrides (CLI ``--set key=value``)."""
        return cls(**dict(overrides))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} v{self.version} {self.config}>"

    # -- the contract ---------------------------------------------------------------
    def run(self, study: xr.Dataset) -> WorkflowResult:
        """Process one Study; return its tables and provenance.

        The study is validated first; the rows are then checked and flagged by
        :mod:`harmonize.plausibility` (a TIA, mass or mean dose that is not a physical number
        raises :class:`WorkflowError` naming the VOI).

        A study read from DICOM that is not de-identified (attribute ``identified``, set by
        the reader: no ``PatientIdentityRemoved = YES`` with a method, :mod:`harmonize.io.phi`)
        is refused before any computation, as ``harmonize run`` refuses it without a key: its
        ``patient_id`` is the original one and would end up in every table. Pseudonymise it
        first with :func:`harmonize.deid.deidentify_study` (what the runner does with
        ``--key``). Phantom, NIfTI, bundle and de-identified DICOM studies are not concerned.

        Raises
        ------
        harmonize.io.phi.IdentifiedStudyError
            The study still carries patient identifiers (a :class:`StudyError`; the message
            names the attribute and the cycle, never the identifier).
        StudyError
            The study is not a valid Study (the message names the field).
        WorkflowError
            The adapter cannot process it; refusals of the physics blocks
            (:class:`~harmonize.errors.HarmonizeError` subclasses) are re-raised as
            ``WorkflowError`` naming the workflow and study. Any other exception type is a
            bug (the conformance fuzz check looks for them).
        """
        validate_study(study)
        _refuse_identified(study, self.name)
        if self.tags.needs_ct and "ct" not in study.data_vars:
            raise WorkflowError(
                f"workflow {self.name!r} needs a CT (study {study.attrs['patient_id']} "
                f"cycle {study.attrs['cycle']} has none)"
            )
        where = f"workflow {self.name!r}, study {study.attrs['patient_id']} cycle {study.attrs['cycle']}"
        try:
            result = self._run(study)
        except (StudyError, WorkflowError):
            raise
        except HarmonizeError as exc:  # a physics block's refusal, in the contract's type
            raise WorkflowError(f"{where}: {type(exc).__name__}: {exc}") from exc
        plausibility.check_voi_results(result.voi_dose, where)
        result.voi_dose = plausibility.flag_voi_results(
            result.voi_dose,
            float(study.attrs["injected_activity_MBq"]),
            str(study.attrs["radionuclide"]),
        )
        result.voi_dose = self._common_columns(result.voi_dose, study)
        result.tac = self._common_columns(
            result.tac, study, keep=("patient_id", "cycle", "workflow")
        )
        if len(result.dvh):
            result.dvh = self._common_columns(result.dvh, study)
        if len(result.uncertainty):
            result.uncertainty = self._common_columns(result.uncertainty, study)
        result.provenance = {**self.provenance(study), **result.provenance}
        return result

    def _run(self, study: xr.Dataset) -> WorkflowResult:
        raise NotImplementedError(f"{type(self).__name__} must implement _run(study)")

    # -- helpers ----------------------------------------------------------------------
    def _common_columns(
        self,
        df: pd.DataFrame,
        study: xr.Dataset,
        keep: Sequence[str] = ("patient_id", "cycle", "center", "workflow", "workflow_version"),
    ) -> pd.DataFrame:
        values = {
            "patient_id": str(study.attrs["patient_id"]),
            "cycle": int(study.attrs["cycle"]),
            "center": str(study.attrs["center"]),
            "workflow": self.name,
            "workflow_version": self.version,
        }
        out = df.copy()
        for column in reversed(keep):
            if column in out.columns:
                out = out.drop(columns=column)
            out.insert(0, column, values[column])
        return out.reset_index(drop=True)

    def provenance(self, study: xr.Dataset) -> dict[str, Any]:
        """The run's provenance: workflow, parameters and sources, input hash, software."""
        return {
            "workflow": {
                "name": self.name,
                "center": self.center,
                "version": self.version,
                "references": list(self.references),
                "parameters": self.config.to_dict(),
                "parameter_sources": self.config.sources(),
                "overrides": self.overrides,
                "cumulative_rule": self.cumulative_rule,
            },
            "input_sha256": study_content_hash(study),
            "software": software_versions(),
        }


def _refuse_identified(study: xr.Dataset, workflow: str) -> None:
    """Raise :class:`~harmonize.io.phi.IdentifiedStudyError` for a study not de-identified.

    The message names the attribute and the cycle only: the study's ``patient_id`` is then
    the original PatientID (or a sidecar label, which does not open the gate either).
    """
    if not study.attrs.get("identified"):
        return
    from harmonize.io.phi import IdentifiedStudyError

    raise IdentifiedStudyError(
        f"workflow {workflow!r}: the study (cycle {study.attrs.get('cycle')}) still carries "
        "patient identifiers (attribute 'identified': its DICOM has no PatientIdentityRemoved "
        "= YES with a de-identification method), so its results would hold the original "
        "patient ID; nothing was computed. Pseudonymise it first: "
        "study = harmonize.deid.deidentify_study(study, key), or de-identify the files with "
        "'harmonize deidentify', or run 'harmonize run --key KEYFILE'"
    )


def software_versions() -> dict[str, str]:
    """Versions of harmonize and the libraries that shape its numbers.

    Looked up once per process (a few ms of package metadata reading, which every
    adapter run of every study paid): the libraries a process has imported do not change
    while it runs.
    """
    return dict(_installed_versions())


@functools.cache
def _installed_versions() -> tuple[tuple[str, str], ...]:
    out = {}
    for dist in (
        "harmonize-dosimetry",
        "numpy",
        "scipy",
        "pandas",
        "xarray",
        "pyarrow",
        "statsmodels",
        "radioactivedecay",
        "icrp107-database",
        "SimpleITK",
    ):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return tuple(out.items())


def study_content_hash(study: xr.Dataset) -> str:
    """SHA-256 of a Study's numbers (images, labels, times, grid, VOI table, dose-relevant attrs).

    Identifying attributes (patient id, dates) are not hashed, so a de-identified copy of a
    study hashes like the original.
    """
    digest = hashlib.sha256()
    for name in ("activity", "labels", "ct"):
        if name in study.data_vars:
            values = np.ascontiguousarray(study[name].values)
            digest.update(name.encode())
            digest.update(str(values.dtype).encode())
            digest.update(str(values.shape).encode())
            digest.update(values.tobytes())
    for name in ("time", "z", "y", "x", "voi", "voi_parent"):
        digest.update(np.ascontiguousarray(study[name].values.astype(np.float64)).tobytes())
    for name in ("voi_name", "voi_kind"):
        digest.update("|".join(str(v) for v in study[name].values).encode())
    for key in ("radionuclide", "injected_activity_MBq"):
        digest.update(f"{key}={study.attrs[key]!r}".encode())
    return digest.hexdigest()


def select_time_points(
    study: xr.Dataset, wanted_h: Sequence[float], tolerance_h: float
) -> np.ndarray:
    """Indices of the study's time points nearest to ``wanted_h``, each within ``tolerance_h``.

    Raises
    ------
    WorkflowError
        Naming the wanted time points that the study lacks.
    """
    times = np.asarray(study["time"].values, dtype=np.float64)
    wanted = np.asarray(wanted_h, dtype=np.float64)
    nearest = np.abs(times[None, :] - wanted[:, None]).argmin(axis=1)
    off = np.abs(times[nearest] - wanted) > tolerance_h
    if off.any() or len(set(nearest.tolist())) != nearest.size:
        missing = wanted[off].tolist() if off.any() else wanted.tolist()
        raise WorkflowError(
            f"study {study.attrs['patient_id']} cycle {study.attrs['cycle']} lacks time point(s) "
            f"{missing} h (±{tolerance_h} h); it has {times.tolist()} h"
        )
    return nearest

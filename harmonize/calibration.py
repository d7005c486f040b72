"""Each centre's calibration phantom as a table the run writes beside its results.

A centre measures its recovery curve and calibration factor on its own camera with a NEMA
IEC body phantom (:func:`harmonize.imaging.nema.measure_calibration`). A run records which
centre profiles it used — the profile that imaged the studies (study attribute
``imaging_profile``) and the calibration phantom a workflow took its RC curve from
(an adapter's ``calibration_phantom(study)``, e.g. Milan's) — and writes, at the studies'
voxel size, every shipped profile's calibration in fast mode plus any other mode a
workflow used, so that the report shows each centre's RC curve and renders these numbers
instead of recomputing them:

* ``OUT/calibration/<profile>_<mode>_<voxel>mm.parquet`` — :data:`CALIBRATION_COLUMNS`:
  one ``kind="sphere"`` row per NEMA sphere (measured RC and the fitted curve at its
  volume) and ``kind="curve"`` rows of the fitted curve on :data:`CURVE_VOLUMES_ML`; the
  profile's calibration factor, nominal sensitivity and sources on every row. A pure
  function of (profile, mode, voxel size): the same bytes in every run.
* ``OUT/calibration/used_by.parquet`` — who used which: columns ``profile``, ``mode``,
  ``voxel_size_mm``, ``used_by`` (a workflow name, or ``"studies"`` for the camera that
  imaged them).

The calibration is measured with the seed and noise that :func:`harmonize.imaging.nema.
recovery_curve` uses, so the table holds exactly the curve the workflows applied.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "CALIBRATION_COLUMNS",
    "CALIBRATION_DIR",
    "CURVE_VOLUMES_ML",
    "calibration_table",
    "read_calibration",
    "write_calibration",
]

#: Folder of the calibration tables inside a results folder.
CALIBRATION_DIR = "calibration"
#: Volumes (mL) at which the fitted curve is tabulated for the report's figure.
CURVE_VOLUMES_ML = tuple(float(v) for v in np.geomspace(0.3, 1000.0, 41))
#: Columns of a calibration table, in order.
CALIBRATION_COLUMNS = (
    "profile",
    "centre",
    "mode",
    "voxel_size_mm",
    "kind",
    "diameter_mm",
    "volume_ml",
    "rc",
    "rc_fit",
    "fit_v_half_ml",
    "fit_n",
    "fit_rc_max",
    "calibration_cps_per_mbq",
    "nominal_sensitivity_cps_per_mbq",
    "sensitivity_source",
    "fast_mode_source",
    "curve_source",
)
_USAGE_FILE = "used_by.parquet"


def calibration_table(profile: str, voxel_size_mm: float, mode: str = "fast") -> pd.DataFrame:
    """One profile's calibration phantom (seed 0, with noise), as :data:`CALIBRATION_COLUMNS`."""
    from harmonize.imaging import load_profile
    from harmonize.imaging.nema import measure_calibration

    prof = load_profile(profile)
    result = measure_calibration(prof, voxel_size_mm, mode=mode)
    curve = result.curve
    spheres = result.table
    grid = np.asarray(CURVE_VOLUMES_ML)
    n_s, n_c = len(spheres), grid.size
    frame = pd.DataFrame(
        {
            "kind": ["sphere"] * n_s + ["curve"] * n_c,
            "diameter_mm": np.concatenate(
                [spheres["diameter_mm"].to_numpy(float), [math.nan] * n_c]
            ),
            "volume_ml": np.concatenate([spheres["volume_ml"].to_numpy(float), grid]),
            "rc": np.concatenate([spheres["rc"].to_numpy(float), [math.nan] * n_c]),
        }
    )
    frame["rc_fit"] = np.asarray(curve(frame["volume_ml"].to_numpy()), dtype=float)
    constants = {
        "profile": prof.name,
        "centre": prof.centre,
        "mode": result.mode,
        "voxel_size_mm": float(voxel_size_mm),
        "fit_v_half_ml": float(curve.params.get("v_half_ml", math.nan)),
        "fit_n": float(curve.params.get("n", math.nan)),
        "fit_rc_max": float(curve.params.get("rc_max", math.nan)),
        "calibration_cps_per_mbq": float(result.calibration_cps_per_mbq),
        "nominal_sensitivity_cps_per_mbq": float(prof.system_sensitivity_cps_per_mbq),
        "sensitivity_source": prof.sources.get("system_sensitivity_cps_per_mbq", "assumed"),
        "fast_mode_source": prof.fast.source if prof.fast is not None else "",
        "curve_source": curve.source,
    }
    for name, value in constants.items():
        frame[name] = value
    return frame[list(CALIBRATION_COLUMNS)]


def _parquet_bytes(frame: pd.DataFrame, name: str) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from harmonize import schema

    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    table = table.replace_schema_metadata(
        {
            "harmonize": json.dumps(
                {"schema_version": schema.SCHEMA_VERSION, "table": name}, sort_keys=True
            )
        }
    )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return bytes(sink.getvalue().to_pybytes())


def _voxel_tag(voxel_size_mm: float) -> str:
    return f"{voxel_size_mm:g}".replace(".", "p")


def write_calibration(
    out_dir: str | Path,
    used: Iterable[tuple[str, str, float, str]],
    *,
    overwrite: bool = False,
    tables: Mapping[tuple[str, str, float], pd.DataFrame] | None = None,
) -> list[Path]:
    """Measure and write the calibration tables of a run (see the module docstring).

    Parameters
    ----------
    out_dir : path
        The results folder.
    used : iterable of (profile, mode, voxel_size_mm, used_by)
        What the run used. Every shipped profile is measured in fast mode at each voxel
        size found here, and each (profile, mode) used at its voxel size.
    overwrite : bool
        Replace the usage file and calibration files of different content; else the usage
        of earlier runs in this folder is kept (``--append`` of another cohort) and a
        calibration file of different content (another harmonize version) is refused.
    tables : mapping (profile, mode, voxel_size_mm) → DataFrame, optional
        Tables already measured by :func:`calibration_table` (the cohort runner measures
        them while the studies run); the others are measured here.

    Returns
    -------
    list of pathlib.Path
        The files written (or left unchanged because identical).
    """
    from harmonize._fs import write_bytes_atomic
    from harmonize.imaging import available_profiles

    usage = pd.DataFrame(
        sorted({(str(p), str(m), round(float(v), 4), str(u)) for p, m, v, u in used}),
        columns=["profile", "mode", "voxel_size_mm", "used_by"],
    )
    if usage.empty:
        return []
    folder = Path(out_dir) / CALIBRATION_DIR
    usage_path = folder / _USAGE_FILE
    if usage_path.is_file() and not overwrite:
        usage = pd.concat([pd.read_parquet(usage_path), usage], ignore_index=True)
        usage = usage.drop_duplicates().sort_values(list(usage.columns), ignore_index=True)
    wanted = {(p, "fast", v) for p in available_profiles() for v in usage["voxel_size_mm"]}
    wanted |= {(r.profile, r.mode, r.voxel_size_mm) for r in usage.itertuples(index=False)}
    files = []
    for profile, mode, voxel in sorted(wanted):  # a few profiles × sizes, 0.1 s each (fast)
        known = (tables or {}).get((profile, mode, voxel))
        table = known if known is not None else calibration_table(profile, voxel, mode)
        path = folder / f"{profile}_{mode}_{_voxel_tag(voxel)}mm.parquet"
        files.append(write_bytes_atomic(path, _parquet_bytes(table, "calibration"), overwrite))
    # the usage file is merged with the earlier runs' above, hence replaced
    files.append(write_bytes_atomic(usage_path, _parquet_bytes(usage, "calibration_usage"), True))
    return files


def read_calibration(results_dir: str | Path) -> pd.DataFrame:
    """The calibration tables of a results folder with a ``used_by`` column (empty if none).

    ``used_by`` joins, per (profile, mode, voxel size), the users recorded by the run
    (workflows, ``"studies"``), or is empty for a profile measured for comparison only.
    """
    folder = Path(results_dir) / CALIBRATION_DIR
    files = sorted(p for p in folder.glob("*.parquet") if p.name != _USAGE_FILE)
    if not files:
        return pd.DataFrame(columns=[*CALIBRATION_COLUMNS, "used_by"])
    table = pd.concat([pd.read_parquet(p) for p in files], ignore_index=True)
    missing = [c for c in CALIBRATION_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{folder}: calibration tables lack the columns {missing}")
    usage_path = folder / _USAGE_FILE
    usage = (
        pd.read_parquet(usage_path)
        if usage_path.is_file()
        else pd.DataFrame(columns=["profile", "mode", "voxel_size_mm", "used_by"])
    )
    joined = (
        usage.groupby(["profile", "mode", "voxel_size_mm"], sort=True)["used_by"]
        .agg(lambda s: ", ".join(sorted(set(s))))
        .reset_index()
    )
    table["voxel_size_mm"] = table["voxel_size_mm"].astype(float).round(4)
    joined["voxel_size_mm"] = joined["voxel_size_mm"].astype(float).round(4)
    table = table.merge(joined, on=["profile", "mode", "voxel_size_mm"], how="left")
    table["used_by"] = table["used_by"].fillna("")
    return table.sort_values(
        ["profile", "mode", "voxel_size_mm", "kind", "volume_ml"], ignore_index=True
    )

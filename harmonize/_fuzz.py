"""Seeded mutations of a valid Study, for the conformance fuzz check (private).

:func:`fuzz_study` is a small valid Study (8³ voxels of 4 mm: body, liver, one lesion;
the phantom's protocol of seven time points, so every built-in adapter finds the time points
it needs). :func:`mutated_studies` derives ``n`` studies from it, each with one mutation
drawn by a seeded generator: the faults of the issue-12 campaign (empty VOI, empty grid,
empty VOI table, a parent cycle, a bad direction, a huge cycle, an all-zero or NaN frame,
times in minutes or seconds, air in a lesion, …) and plain perturbations that must still be
processed (scaled activities, fewer VOIs, noise). A mutated object may not be a valid Study
at all; that is the point.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import xarray as xr

__all__ = ["MUTATIONS", "fuzz_study", "mutated_studies"]

_TIMES_H = (4.0, 24.0, 48.0, 72.0, 96.0, 168.0, 192.0)


def fuzz_study() -> xr.Dataset:
    """A small valid Study (deterministic)."""
    from harmonize.study import make_study

    labels = np.ones((8, 8, 8), dtype=np.int32)
    labels[1:7, 1:7, 1:7] = 2
    labels[3:6, 3:6, 3:6] = 3
    t = np.asarray(_TIMES_H)
    lam = np.log(2) / np.where(labels == 3, 70.0, 45.0)
    conc = np.where(labels == 3, 3e5, 3e4)[None] * np.exp(-lam[None] * t[:, None, None, None])
    return make_study(
        activity_bq_ml=conc,
        times_h=t,
        voxel_size_mm=(4.0, 4.0, 4.0),
        labels=labels,
        vois=[
            {"voi_id": 1, "name": "body", "kind": "body"},
            {"voi_id": 2, "name": "liver", "kind": "organ", "parent_id": 1},
            {"voi_id": 3, "name": "lesion_01", "kind": "lesion", "parent_id": 2},
        ],
        patient_id="FUZZ01",
        cycle=1,
        center="fuzz",
        injected_activity_mbq=7400.0,
        injection_time="2000-01-03T09:00:00",
        ct_hu=np.full(labels.shape, 40.0),
    )


def _set_activity(ds: xr.Dataset, values: np.ndarray) -> xr.Dataset:
    out = ds.copy(deep=True)
    out["activity"] = (out["activity"].dims, values.astype(np.float32), out["activity"].attrs)
    return out


def _with_labels(ds: xr.Dataset, labels: np.ndarray) -> xr.Dataset:
    out = ds.copy(deep=True)
    out["labels"] = (out["labels"].dims, labels, out["labels"].attrs)
    return out


def _coord(ds: xr.Dataset, name: str, values: np.ndarray) -> xr.Dataset:
    return ds.assign_coords({name: (ds[name].dims, values, ds[name].attrs)})


def _attr(key: str, value: object) -> Callable[[xr.Dataset, np.random.Generator], xr.Dataset]:
    def mutate(ds: xr.Dataset, rng: np.random.Generator) -> xr.Dataset:
        out = ds.copy(deep=True)
        out.attrs[key] = value
        return out

    return mutate


def _empty_voi(ds: xr.Dataset, rng: np.random.Generator) -> xr.Dataset:
    labels = ds["labels"].values.copy()
    victim = int(rng.choice([2, 3]))
    labels[labels == victim] = 1
    return _with_labels(ds, labels)


def _empty_grid(ds: xr.Dataset, rng: np.random.Generator) -> xr.Dataset:
    return ds.isel({str(rng.choice(["z", "y", "x"])): slice(0, 0)})


def _empty_voi_table(ds: xr.Dataset, rng: np.random.Generator) -> xr.Dataset:
    out = ds.isel(voi=slice(0, 0))
    return _with_labels(out, np.zeros_like(ds["labels"].values))


def _parent_cycle(ds: xr.Dataset, rng: np.random.Generator) -> xr.Dataset:
    return _coord(ds, "voi_parent", np.array([2, 1, 2], dtype=np.int32))


def _frame(kind: str) -> Callable[[xr.Dataset, np.random.Generator], xr.Dataset]:
    def mutate(ds: xr.Dataset, rng: np.random.Generator) -> xr.Dataset:
        a = ds["activity"].values.copy()
        k = int(rng.integers(a.shape[0]))
        if kind == "zero":
            a[k] = 0.0
        elif kind == "nan":
            a[k, 0, 0, 0] = np.nan
        elif kind == "negative":
            a[k, 4, 4, 4] = -1.0
        elif kind == "zero_voi":  # one VOI's activity zero at every time point
            a[:, ds["labels"].values == int(rng.choice([2, 3]))] = 0.0
        elif kind == "hot_voxel":
            a[k, 4, 4, 4] = float(10.0 ** rng.uniform(6, 30))
        return _set_activity(ds, a)

    return mutate


def _scale_activity(ds: xr.Dataset, rng: np.random.Generator) -> xr.Dataset:
    return _set_activity(ds, ds["activity"].values * 10.0 ** rng.uniform(-30, 30))


def _noise(ds: xr.Dataset, rng: np.random.Generator) -> xr.Dataset:
    a = ds["activity"].values
    return _set_activity(ds, np.maximum(a * rng.normal(1.0, rng.uniform(0, 2), a.shape), 0.0))


def _times(
    factor_choices: tuple[float, ...],
) -> Callable[[xr.Dataset, np.random.Generator], xr.Dataset]:
    def mutate(ds: xr.Dataset, rng: np.random.Generator) -> xr.Dataset:
        return _coord(ds, "time", ds["time"].values * float(rng.choice(factor_choices)))

    return mutate


def _shuffle_times(ds: xr.Dataset, rng: np.random.Generator) -> xr.Dataset:
    return _coord(ds, "time", rng.permutation(ds["time"].values))


def _drop_times(ds: xr.Dataset, rng: np.random.Generator) -> xr.Dataset:
    n = int(rng.integers(1, ds.sizes["time"]))
    keep = np.sort(rng.choice(ds.sizes["time"], size=n, replace=False))
    return ds.isel(time=keep)


def _shift_times(ds: xr.Dataset, rng: np.random.Generator) -> xr.Dataset:
    return _coord(ds, "time", ds["time"].values + rng.uniform(-10, 10, ds.sizes["time"]))


def _ct(kind: str) -> Callable[[xr.Dataset, np.random.Generator], xr.Dataset]:
    def mutate(ds: xr.Dataset, rng: np.random.Generator) -> xr.Dataset:
        out = ds.copy(deep=True)
        if kind == "drop":
            return out.drop_vars("ct")
        ct = out["ct"].values.copy()
        mask = out["labels"].values == int(rng.choice([1, 2, 3]))
        ct[mask] = {"air": -1000.0, "metal": 3000.0, "nan": np.nan}[kind]
        out["ct"] = (out["ct"].dims, ct, out["ct"].attrs)
        return out

    return mutate


def _unknown_label(ds: xr.Dataset, rng: np.random.Generator) -> xr.Dataset:
    labels = ds["labels"].values.copy()
    labels[0, 0, 0] = int(rng.choice([4, 99, -1]))
    return _with_labels(ds, labels)


def _float_labels(ds: xr.Dataset, rng: np.random.Generator) -> xr.Dataset:
    return _with_labels(ds, ds["labels"].values.astype(np.float64))


def _drop_voi(ds: xr.Dataset, rng: np.random.Generator) -> xr.Dataset:
    """Remove the lesion (VOI and voxels): a smaller but valid study."""
    labels = ds["labels"].values.copy()
    labels[labels == 3] = 2
    return _with_labels(ds.isel(voi=slice(0, 2)), labels)


def _voxel_size(ds: xr.Dataset, rng: np.random.Generator) -> xr.Dataset:
    out = ds.copy(deep=True)
    out.attrs["voxel_size_mm"] = np.asarray(out.attrs["voxel_size_mm"]) * float(
        rng.choice([0.0, -1.0, 1e-9, 1e9])
    )
    return out


def _drop_attr(ds: xr.Dataset, rng: np.random.Generator) -> xr.Dataset:
    out = ds.copy(deep=True)
    del out.attrs[str(rng.choice(["patient_id", "cycle", "radionuclide", "injection_time"]))]
    return out


#: name → mutation(ds, rng) -> object (not necessarily a Study).
MUTATIONS: dict[str, Callable[[xr.Dataset, np.random.Generator], xr.Dataset]] = {
    "empty_voi": _empty_voi,
    "empty_grid": _empty_grid,
    "empty_voi_table": _empty_voi_table,
    "parent_cycle": _parent_cycle,
    "direction_text": _attr("direction", "abc"),
    "direction_skew": _attr("direction", np.arange(9.0)),
    "huge_cycle": _attr("cycle", 10**12),
    "cycle_text": _attr("cycle", "1"),
    "zero_frame": _frame("zero"),
    "nan_voxel": _frame("nan"),
    "negative_voxel": _frame("negative"),
    "zero_voi": _frame("zero_voi"),
    "hot_voxel": _frame("hot_voxel"),
    "scaled_activity": _scale_activity,
    "noise": _noise,
    "times_in_minutes_or_seconds": _times((60.0, 3600.0)),
    "times_scaled": _times((0.5, 2.0, 1e-3)),
    "shuffled_times": _shuffle_times,
    "fewer_times": _drop_times,
    "shifted_times": _shift_times,
    "ct_air": _ct("air"),
    "ct_metal": _ct("metal"),
    "ct_nan": _ct("nan"),
    "ct_dropped": _ct("drop"),
    "unknown_label": _unknown_label,
    "float_labels": _float_labels,
    "fewer_vois": _drop_voi,
    "voxel_size": _voxel_size,
    "missing_attr": _drop_attr,
    "injected_zero": _attr("injected_activity_MBq", 0.0),
    "injected_tiny": _attr("injected_activity_MBq", 1e-12),
    "nuclide_unknown": _attr("radionuclide", "Xx-999"),
    "nuclide_other": _attr("radionuclide", "Y-90"),
    "patient_blank": _attr("patient_id", " "),
}


def mutated_studies(
    n: int, seed: int = 0, base: xr.Dataset | None = None
) -> Iterator[tuple[str, xr.Dataset]]:
    """``n`` seeded (mutation name, mutated study) pairs; every mutation appears in turn."""
    rng = np.random.default_rng(seed)
    start = fuzz_study() if base is None else base
    names = list(MUTATIONS)
    for i in range(n):
        name = names[i % len(names)]
        yield name, MUTATIONS[name](start, rng)

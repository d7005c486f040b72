"""Shared fixtures: a tiny valid Study built from plain arrays."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import harmonize as hz


def tiny_study(**overrides: object) -> xr.Dataset:
    """A 3-time-point, 6×7×8 Study with a body, an organ and a lesion inside it."""
    rng = np.random.default_rng(42)
    labels = np.zeros((6, 7, 8), dtype=np.int32)
    labels[1:5, 1:6, 1:7] = 1
    labels[2:4, 2:5, 2:6] = 2
    labels[2:3, 3:4, 3:5] = 3
    kwargs: dict[str, object] = {
        "activity_bq_ml": rng.uniform(0.0, 1e5, size=(3, 6, 7, 8)),
        "times_h": [4.0, 24.0, 72.0],
        "voxel_size_mm": (4.0, 4.5, 5.0),
        "labels": labels,
        "vois": [
            {"voi_id": 1, "name": "body", "kind": "body"},
            {"voi_id": 2, "name": "liver", "kind": "organ", "parent_id": 1},
            {"voi_id": 3, "name": "lesion_01", "kind": "lesion", "parent_id": 2},
        ],
        "patient_id": "P001",
        "cycle": 1,
        "center": "test",
        "injected_activity_mbq": 7400.0,
        "injection_time": "2000-01-03T09:00:00",
        "ct_hu": rng.normal(40.0, 10.0, size=(6, 7, 8)),
    }
    kwargs.update(overrides)
    return hz.make_study(**kwargs)  # type: ignore[arg-type]


@pytest.fixture
def study() -> xr.Dataset:
    return tiny_study()


@pytest.fixture
def make_tiny_study():
    """Factory: ``make_tiny_study(**overrides)`` builds the tiny Study with changes."""
    return tiny_study

"""Shared fixtures: a tiny valid Study built from plain arrays; DICOM file variants."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import xarray as xr
from pydicom.uid import generate_uid

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


def dicom_variant(source: Path, target: Path, **changes: object) -> Path:
    """A copy of the DICOM file ``source`` at ``target``, with new SOP Instance and Series
    UIDs and the given attributes changed (keyword=value)."""
    ds = pydicom.dcmread(source)
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesInstanceUID = generate_uid()
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    target.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(target, enforce_file_format=True)
    return target


@pytest.fixture
def make_dicom_variant():
    """Factory: ``make_dicom_variant(source, target, **changes)`` (:func:`dicom_variant`)."""
    return dicom_variant

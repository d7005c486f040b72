"""Exchange bundle: exact round trip, atomic writes, clear errors on bad files."""

from __future__ import annotations

import hashlib

import pytest
import xarray as xr

import harmonize as hz


def test_round_trip_is_exact(study, tmp_path):
    path = hz.save_study(study, tmp_path / "s.nc")
    back = hz.open_study(path)
    xr.testing.assert_identical(study, back)
    assert hz.voi_table(back).equals(hz.voi_table(study))


def test_same_study_same_bytes(study, tmp_path):
    a = hz.save_study(study, tmp_path / "a.nc")
    b = hz.save_study(study, tmp_path / "b.nc")
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()


def test_no_silent_overwrite(study, tmp_path):
    path = hz.save_study(study, tmp_path / "s.nc")
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        hz.save_study(study, path)
    assert path.read_bytes() == before
    changed = study.copy(deep=True)
    changed.attrs["cycle"] = 2
    hz.save_study(changed, path, overwrite=True)
    assert hz.open_study(path).attrs["cycle"] == 2


def test_invalid_study_leaves_no_file(study, tmp_path):
    bad = study.copy(deep=True)
    bad["activity"].values[0, 0, 0, 0] = float("nan")
    with pytest.raises(hz.StudyError):
        hz.save_study(bad, tmp_path / "bad.nc")
    assert list(tmp_path.iterdir()) == []


def test_truncated_and_foreign_files(study, tmp_path):
    good = hz.save_study(study, tmp_path / "s.nc").read_bytes()
    truncated = tmp_path / "truncated.nc"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(
        hz.StudyError, match="truncated.nc: cannot be read as a harmonize exchange bundle"
    ):
        hz.open_study(truncated)
    text = tmp_path / "notes.nc"
    text.write_text("hello")
    with pytest.raises(hz.StudyError, match="notes.nc: cannot be read"):
        hz.open_study(text)
    foreign = tmp_path / "foreign.nc"
    xr.Dataset({"a": ("t", [1.0, 2.0])}).to_netcdf(foreign, engine="h5netcdf")
    with pytest.raises(hz.StudyError, match="foreign.nc: not a harmonize exchange bundle"):
        hz.open_study(foreign)
    with pytest.raises(hz.StudyError, match="no such file"):
        hz.open_study(tmp_path / "missing.nc")

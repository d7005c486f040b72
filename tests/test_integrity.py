"""Integrity: bit flips in bundles and results files are detected; validate never raises.

Reproducers of issue 12: a flipped bit silently changed patient_id P001→P000, the injection
time or a time point in a bundle, and a TIA 5481.4 → 21.41 in a results page; a corrupt page
made ``validate_path`` raise; NaN, negative or 1e300 doses, ``dose_min > dose_max``, zero-row
files and identifying ``patient_id`` strings passed ``validate``.
"""

from __future__ import annotations

import random
import re

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import xarray as xr

import harmonize as hz
from harmonize import schema
from harmonize.bundle import CONTENT_HASH_ATTR


def _flip(path, position: int, bit: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 1 << bit
    path.write_bytes(bytes(data))


# -- bundles -------------------------------------------------------------------------------------
@pytest.fixture
def bundle(tmp_path, study):
    path = tmp_path / "p.nc"
    hz.save_study(study, path)
    return path


def test_bundle_carries_fletcher32_and_a_content_hash(bundle):
    import h5py

    with h5py.File(bundle) as f:
        assert f["activity"].fletcher32 and f["labels"].fletcher32 and f["time"].fletcher32
        assert len(f.attrs[CONTENT_HASH_ATTR]) == 64


def _content_hash_as_defined(ds):
    """content_hash written out as its definition: one hex string per value, then encoded."""
    import hashlib

    def text(value):
        array = np.asarray(value)
        if array.dtype.kind in "fc":
            return "f:" + np.ascontiguousarray(array, dtype="<f8").tobytes().hex()
        if array.dtype.kind in "iub":
            return "i:" + np.ascontiguousarray(array, dtype="<i8").tobytes().hex()
        return "s:" + "\x1f".join(str(v) for v in array.reshape(-1).tolist())

    digest = hashlib.sha256()
    for name in sorted(str(k) for k in ds.variables):
        var = ds.variables[name]
        digest.update(f"{name}|{var.dims}|{var.shape}|".encode())
        digest.update(text(var.values).encode())
        for key in sorted(str(k) for k in var.attrs):
            digest.update(f"|{key}={text(var.attrs[key])}".encode())
    for key in sorted(str(k) for k in ds.attrs):
        if key not in (CONTENT_HASH_ATTR, "harmonize_bundle"):
            digest.update(f"attr|{key}={text(ds.attrs[key])}".encode())
    return digest.hexdigest()


def test_content_hash_of_large_arrays_is_the_defined_one():
    # content_hash hashes large numeric arrays block by block (never one hex string of the
    # whole array): the digest must be the definition's, for every numeric kind, a
    # transposed (non-contiguous) array and a length that is not a multiple of the block
    from harmonize.bundle import _HASH_BLOCK, content_hash

    rng = np.random.default_rng(5)
    n = 2 * _HASH_BLOCK + 7
    ds = xr.Dataset(
        {
            "f32": ("a", rng.random(n).astype(np.float32)),
            "f64t": (("b", "c"), rng.random((301, 1000)).T),
            "i16": ("a", rng.integers(-300, 300, n).astype(np.int16)),
            "u64": ("a", rng.integers(0, 2**63, n, dtype=np.uint64)),
            "flag": ("a", rng.random(n) > 0.5),
            "small": ("d", [1.5, 2.5]),
        },
        coords={"name": ("d", ["x", "y"])},
        attrs={"cycle": 2, "patient_id": "P001"},
    )
    assert content_hash(ds) == _content_hash_as_defined(ds)
    changed = ds.copy(deep=True)
    changed["f32"].values[-1] += 1.0  # the last element, in the short last block
    assert content_hash(changed) == _content_hash_as_defined(changed) != content_hash(ds)


@pytest.mark.parametrize(
    ("needle", "replacement"),
    [(b"P001", b"P000"), (b"2000-01-03T09:00:00", b"2000-01-03T09:00:01")],
)
def test_bit_flip_in_an_attribute_is_detected(bundle, needle, replacement):
    data = bundle.read_bytes()
    assert data.count(needle) == 1
    bundle.write_bytes(data.replace(needle, replacement))  # one bit: '1'→'0' is 0x31→0x30
    with pytest.raises(hz.StudyError, match=r"p\.nc: content hash mismatch"):
        hz.open_study(bundle)


def test_time_point_changed_is_detected(bundle, study):
    data = bundle.read_bytes()
    needle = np.asarray(study["time"].values, dtype="<f8").tobytes()
    assert data.count(needle) == 1  # the time coordinate, stored uncompressed
    at = data.index(needle) + 8 * 2 + 6  # exponent byte of the third time point (72 h)
    _flip(bundle, at, 0)
    with pytest.raises(hz.StudyError, match=r"p\.nc"):
        hz.open_study(bundle)


def test_random_bit_flips_never_change_a_bundle_silently(bundle, study, recwarn):
    """40 seeded single-bit flips anywhere in the file: an error naming the file, or the
    same Study (a flip in padding or unused header space changes nothing)."""
    original = bundle.read_bytes()
    reference = hz.open_study(bundle)
    rng = random.Random(12)
    detected = 0
    for _ in range(40):
        data = bytearray(original)
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        bundle.write_bytes(bytes(data))
        try:
            got = hz.open_study(bundle)
        except hz.StudyError as exc:
            assert str(bundle) in str(exc)
            detected += 1
            continue
        xr.testing.assert_identical(got, reference)
    assert detected > 0


def test_old_bundle_without_hash_still_opens(tmp_path, study):
    path = tmp_path / "old.nc"
    out = study.copy()
    out.attrs = {**study.attrs, "harmonize_bundle": "1"}
    out.to_netcdf(path, engine="h5netcdf")
    xr.testing.assert_identical(hz.open_study(path), study)


# -- results files -------------------------------------------------------------------------------
@pytest.fixture
def frames():
    return schema.example_frames()


def _voi(tmp_path, frames, **changes):
    df = frames["voi_dose"].copy()
    for column, value in changes.items():
        df[column] = value
    return schema.write_table(df, tmp_path / "voi.parquet", "voi_dose", schema.EXAMPLE_METADATA)


def _foreign(tmp_path, frames, **changes):
    """A file written by another tool (plain pyarrow, harmonize's metadata and field units)
    with values harmonize's writer refuses."""
    import pyarrow as pa

    good = pq.read_table(_voi(tmp_path, frames))
    for column, value in changes.items():
        i = good.schema.get_field_index(column)
        field = good.schema.field(i)
        good = good.set_column(i, field, pa.array([value] * good.num_rows, type=field.type))
    path = tmp_path / "foreign.parquet"
    pq.write_table(good, path)
    return path


def test_results_are_written_with_page_checksums(tmp_path, frames):
    path = _voi(tmp_path, frames)
    meta = pq.ParquetFile(path).metadata
    assert schema.PARQUET_WRITE_OPTIONS["write_page_checksum"] is True
    assert meta.num_rows == len(frames["voi_dose"])


def test_bit_flip_in_a_results_page_is_detected(tmp_path, frames):
    """Flip one bit in the data pages (zstd frames): reported as corrupt, never raised."""
    path = _voi(tmp_path, frames)
    original = path.read_bytes()
    pf = pq.ParquetFile(path)
    col = pf.metadata.row_group(0).column(pf.schema_arrow.get_field_index("tia_mbq_h"))
    start = col.data_page_offset
    end = start + col.total_compressed_size
    flagged = 0
    for position in range(start + 20, end, 13):  # skip the page header
        data = bytearray(original)
        data[position] ^= 1
        path.write_bytes(bytes(data))
        problems = schema.validate_path(path)  # must not raise
        if problems:
            assert str(path) in problems[0]
            flagged += 1
        else:  # undetected must mean unchanged values
            back = schema.read_results(path)["voi_dose"]
            np.testing.assert_array_equal(back["tia_mbq_h"], frames["voi_dose"]["tia_mbq_h"])
    assert flagged > 0


def test_corrupt_file_is_a_problem_not_an_exception(tmp_path, frames):
    path = _voi(tmp_path, frames)
    path.write_bytes(path.read_bytes()[:-40])  # truncated footer
    problems = schema.validate_path(path)
    assert len(problems) == 1 and "not a readable Parquet file" in problems[0]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"dose_mean_gy": np.nan}, "dose_mean_gy' has 4 NaN value"),
        ({"dose_max_gy": -1.0}, "dose_max_gy' has 4 value.s. below the minimum 0"),
        ({"dose_mean_gy": 1e300, "dose_max_gy": 1e300}, "above the sanity bound 1000 Gy"),
        (
            {
                "dose_min_gy": 1e4,
                "dose_max_gy": 1e4,
                "dose_median_gy": 1e4,
                "dose_mean_gy": 1e4,
                "flags": "bogus",
            },
            r"token\(s\) \['bogus'\]",
        ),
        ({"patient_id": "DOE^JOHN"}, "patient_id' has 1 value.s. that look identifying"),
        ({"patient_id": "Smith, John"}, "look identifying"),
        ({"patient_id": "12345678"}, "look identifying"),
    ],
)
def test_value_constraints(tmp_path, frames, changes, message):
    path = _foreign(tmp_path, frames, **changes)
    problems = schema.validate_path(path)
    assert any(pd.Series([p]).str.contains(message).iloc[0] for p in problems), problems


def test_min_greater_than_max_is_reported(tmp_path, frames):
    path = _foreign(tmp_path, frames, dose_min_gy=1e3 - 1)
    problems = schema.validate_path(path)
    assert any("dose_min_gy > dose_median_gy" in p for p in problems)


def test_zero_row_file_warns(tmp_path, frames):
    path = schema.write_table(
        frames["voi_dose"].iloc[:0], tmp_path / "empty.parquet", "voi_dose", schema.EXAMPLE_METADATA
    )
    with pytest.warns(schema.ZeroRowWarning, match="no rows"):
        assert schema.validate_path(path) == []


def test_pseudonyms_pass(tmp_path, frames):
    # including harmonize's own keyed pseudonyms, whose 12 hex digits may hold a run of six
    # or more decimal digits (harmonize.deid.pseudonym)
    from harmonize.deid import pseudonym

    ours = next(p for i in range(1000) if re.search(r"\d{6}", p := pseudonym(f"MRN{i}", b"k")))
    for pid in ("PX001", "P-17", "a1b2c3d4", "CHU_12345", ours):
        path = _voi(tmp_path / pid, frames, patient_id=pid)
        assert schema.validate_path(path) == [], pid

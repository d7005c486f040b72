"""The exchange bundle: one Study in one portable NetCDF-4 file.

Why NetCDF-4 (through xarray's ``h5netcdf`` engine) rather than Zarr: a bundle is what one
centre e-mails or uploads to another, so it should be a *single file* that any scientific
stack opens (netCDF-C, MATLAB ``ncread``, R ``ncdf4``, Panoply, h5py) with a format that has
been stable for over a decade; Zarr stores a folder of many chunk files and its v2 → v3 format
change is recent. Arrays are stored losslessly (zlib), so a round trip is exact.

Integrity: every numeric array is stored with HDF5's Fletcher-32 checksum (a flipped bit in
a chunk makes HDF5 refuse to read it), and the global attribute ``harmonize_content_sha256``
holds :func:`content_hash` of everything else too (attributes such as the patient id and
injection time, the VOI table); :func:`open_study` verifies both and names the file.

Writes are atomic: the file is written under a temporary name in the target folder and
renamed into place, so a crash never leaves a half-written bundle, and an existing bundle
is never replaced unless ``overwrite=True``.
"""

from __future__ import annotations

import binascii
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Final

import numpy as np
import xarray as xr

from harmonize.study import StudyError, validate_study

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_SUFFIX",
    "CONTENT_HASH_ATTR",
    "atomic_path",
    "content_hash",
    "open_study",
    "save_study",
]

#: Value of the ``harmonize_bundle`` global attribute (bumped on incompatible changes).
BUNDLE_FORMAT = "1"
#: File-name suffix of exchange bundles.
BUNDLE_SUFFIX = ".nc"
_ENGINE: Final = "h5netcdf"


class atomic_path:
    """Context manager yielding a temporary path that is renamed to ``path`` on success.

    The temporary file lives in the destination folder (so the rename is atomic on POSIX)
    and is removed if the block raises. With ``overwrite=False`` an existing destination is
    refused before anything is written.
    """

    def __init__(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.overwrite = overwrite
        self._tmp: Path | None = None

    def __enter__(self) -> Path:
        if self.path.exists() and not self.overwrite:
            raise FileExistsError(
                f"{self.path} already exists; pass --overwrite (overwrite=True in Python) to "
                "replace it"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
        )
        os.close(fd)
        self._tmp = Path(name)
        return self._tmp

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        assert self._tmp is not None
        if exc_type is None:
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)


#: Global attribute holding the SHA-256 of the bundle's content (:func:`content_hash`).
CONTENT_HASH_ATTR = "harmonize_content_sha256"


def _canonical_value(value: object) -> str:
    array = np.asarray(value)
    if array.dtype.kind in "fc":
        return "f:" + np.ascontiguousarray(array, dtype="<f8").tobytes().hex()
    if array.dtype.kind in "iub":
        return "i:" + np.ascontiguousarray(array, dtype="<i8").tobytes().hex()
    return "s:" + "\x1f".join(str(v) for v in array.reshape(-1).tolist())


#: Elements per block when a large numeric array is hashed (1 MiB as float64).
_HASH_BLOCK = 1 << 17


def _update_canonical(digest: hashlib._Hash, value: object) -> None:
    """``digest.update(_canonical_value(value).encode())``, large numeric arrays by blocks.

    The hex text of an array's little-endian bytes is the concatenation of the hex texts of
    consecutive blocks of its elements (C order), so the digest is the same while the
    array is never held as one hex string (four times its float64 size, twice encoded).
    """
    array = np.asarray(value)
    kind = array.dtype.kind
    if kind not in "fiub" or array.size <= _HASH_BLOCK:
        digest.update(_canonical_value(array).encode())
        return
    dtype, prefix = ("<f8", b"f:") if kind == "f" else ("<i8", b"i:")
    flat = np.ravel(array, order="C")
    digest.update(prefix)
    for start in range(0, flat.size, _HASH_BLOCK):
        block = np.ascontiguousarray(flat[start : start + _HASH_BLOCK], dtype=dtype)
        digest.update(binascii.hexlify(block.data))


def content_hash(ds: xr.Dataset) -> str:
    """SHA-256 of everything a bundle holds: every variable, coordinate and attribute.

    Computed on a canonical form (numbers as little-endian float64/int64, text as UTF-8),
    so the value written by :func:`save_study` and the value of the file read back agree
    exactly; HDF5's Fletcher-32 covers the array chunks, this hash also covers the
    attributes (patient id, injection time, cycle) and the small coordinates.
    """
    digest = hashlib.sha256()
    for name in sorted(str(k) for k in ds.variables):
        var = ds.variables[name]
        digest.update(f"{name}|{var.dims}|{var.shape}|".encode())
        _update_canonical(digest, var.values)
        for key in sorted(str(k) for k in var.attrs):
            digest.update(f"|{key}={_canonical_value(var.attrs[key])}".encode())
    for key in sorted(str(k) for k in ds.attrs):
        if key in (CONTENT_HASH_ATTR, "harmonize_bundle"):
            continue
        digest.update(f"attr|{key}={_canonical_value(ds.attrs[key])}".encode())
    return digest.hexdigest()


def _encoding(ds: xr.Dataset) -> dict[str, dict[str, object]]:
    encoding: dict[str, dict[str, object]] = {}
    for name, variable in ds.variables.items():
        if variable.dtype.kind in "fiub":  # HDF5 Fletcher-32 checksum on every numeric array
            encoding[str(name)] = {"fletcher32": True}
    for name, var in ds.data_vars.items():
        if var.ndim >= 3:
            chunks = tuple(
                1 if d == "time" else n for d, n in zip(var.dims, var.shape, strict=True)
            )
            encoding[str(name)] = {
                "fletcher32": True,
                "zlib": True,
                "complevel": 4,
                "shuffle": True,
                "chunksizes": chunks,
            }
    return encoding


def _normalised(ds: xr.Dataset) -> xr.Dataset:
    """The Study as :func:`open_study` returns it (types of attributes and VOI names)."""
    ds = ds.copy()
    ds.attrs = dict(ds.attrs)
    ds.attrs["cycle"] = int(ds.attrs.get("cycle", 0))
    for key in ("direction", "voxel_size_mm"):
        if key in ds.attrs:
            ds.attrs[key] = np.asarray(ds.attrs[key], dtype=np.float64).reshape(-1)
    for name in ("voi_name", "voi_kind"):
        if name in ds.coords:
            ds = ds.assign_coords({name: ("voi", ds[name].values.astype(str).astype(object))})
    return ds


def save_study(
    ds: xr.Dataset,
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    allow_identified: bool = False,
) -> Path:
    """Write a Study to an exchange bundle (one NetCDF-4 file).

    Parameters
    ----------
    ds : xarray.Dataset
        A Study; it is validated first.
    path : path-like
        Destination file, conventionally ending in ``.nc``.
    overwrite : bool, default False
        Replace an existing file. Without it an existing file raises ``FileExistsError``.
    allow_identified : bool, default False
        Write a Study that still carries patient identifiers (read from DICOM that was not
        de-identified, attribute ``identified``). Without it such a Study is refused: a
        bundle is what a centre sends another (de-identify with
        :func:`harmonize.deid.deidentify_study` first).

    Returns
    -------
    pathlib.Path
        The path written.
    """
    validate_study(ds)
    if ds.attrs.get("identified") and not allow_identified:
        from harmonize.io.phi import IdentifiedStudyError

        raise IdentifiedStudyError(
            f"{path}: the Study still carries patient identifiers (read from DICOM that was not "
            "de-identified); de-identify it (harmonize.deid.deidentify_study) or pass "
            "allow_identified=True to keep it for local use"
        )
    out = ds.copy()
    out.attrs = dict(ds.attrs)
    out.attrs["harmonize_bundle"] = BUNDLE_FORMAT
    out.attrs[CONTENT_HASH_ATTR] = content_hash(_normalised(out))
    path = Path(path)
    with atomic_path(path, overwrite=overwrite) as tmp:
        out.to_netcdf(tmp, engine=_ENGINE, encoding=_encoding(out), invalid_netcdf=False)
    return path


def open_study(path: str | os.PathLike[str]) -> xr.Dataset:
    """Open a Study from an exchange bundle, a DICOM folder or a NIfTI folder.

    The data are loaded into memory and validated; the file is closed on return.

    Raises
    ------
    StudyError
        If the path does not exist, is not a harmonize bundle, is truncated or corrupt, or
        holds an invalid Study; the message names the file.
    """
    path = Path(path)
    if not path.exists():
        raise StudyError(f"{path}: no such file or folder")
    if path.is_dir():
        from harmonize.io import open_study_folder

        return open_study_folder(path)
    try:
        with xr.open_dataset(path, engine=_ENGINE) as handle:
            ds = handle.load()
    except Exception as exc:  # h5py/h5netcdf raise OSError, ValueError, KeyError... on bad files
        raise StudyError(
            f"{path}: cannot be read as a harmonize exchange bundle (NetCDF-4/HDF5): "
            f"{type(exc).__name__}: {exc}"
        ) from None
    if ds.attrs.get("harmonize_bundle") != BUNDLE_FORMAT:
        raise StudyError(
            f"{path}: not a harmonize exchange bundle (global attribute 'harmonize_bundle' is "
            f"{ds.attrs.get('harmonize_bundle')!r}, expected {BUNDLE_FORMAT!r})"
        )
    stored_hash = ds.attrs.get(CONTENT_HASH_ATTR)
    ds.attrs = {
        k: v for k, v in ds.attrs.items() if k not in ("harmonize_bundle", CONTENT_HASH_ATTR)
    }
    try:
        ds = _normalised(ds)
    except (TypeError, ValueError) as exc:
        raise StudyError(f"{path}: corrupt attributes ({exc})") from None
    # bundles written before the hash existed have none: read as before
    if stored_hash is not None and content_hash(ds) != str(stored_hash):
        raise StudyError(
            f"{path}: content hash mismatch — the file was changed or corrupted after it was "
            f"written (attribute {CONTENT_HASH_ATTR!r} {str(stored_hash)[:12]}…, content "
            f"{content_hash(ds)[:12]}…); ask the sender for a fresh copy"
        )
    try:
        return validate_study(ds)
    except StudyError as exc:
        raise StudyError(f"{path}: {exc}") from None

"""The exchange bundle: one Study in one portable NetCDF-4 file.

Why NetCDF-4 (through xarray's ``h5netcdf`` engine) rather than Zarr: a bundle is what one
centre e-mails or uploads to another, so it should be a *single file* that any scientific
stack opens (netCDF-C, MATLAB ``ncread``, R ``ncdf4``, Panoply, h5py) with a format that has
been stable for over a decade; Zarr stores a folder of many chunk files and its v2 → v3 format
change is recent. Arrays are stored losslessly (zlib), so a round trip is exact.

Writes are atomic: the file is written under a temporary name in the target folder and
renamed into place, so a crash never leaves a half-written bundle, and an existing bundle
is never replaced unless ``overwrite=True``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Final

import numpy as np
import xarray as xr

from harmonize.study import StudyError, validate_study

__all__ = ["BUNDLE_FORMAT", "BUNDLE_SUFFIX", "atomic_path", "open_study", "save_study"]

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
            raise FileExistsError(f"{self.path} already exists; pass overwrite=True to replace it")
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


def _encoding(ds: xr.Dataset) -> dict[str, dict[str, object]]:
    encoding: dict[str, dict[str, object]] = {}
    for name, var in ds.data_vars.items():
        if var.ndim >= 3:
            chunks = tuple(
                1 if d == "time" else n for d, n in zip(var.dims, var.shape, strict=True)
            )
            encoding[str(name)] = {
                "zlib": True,
                "complevel": 4,
                "shuffle": True,
                "chunksizes": chunks,
            }
    return encoding


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
    ds.attrs = {k: v for k, v in ds.attrs.items() if k != "harmonize_bundle"}
    ds.attrs["cycle"] = int(ds.attrs.get("cycle", 0))
    for key in ("direction", "voxel_size_mm"):
        if key in ds.attrs:
            ds.attrs[key] = np.asarray(ds.attrs[key], dtype=np.float64).reshape(-1)
    for name in ("voi_name", "voi_kind"):
        if name in ds.coords:
            ds = ds.assign_coords({name: ("voi", ds[name].values.astype(str).astype(object))})
    try:
        return validate_study(ds)
    except StudyError as exc:
        raise StudyError(f"{path}: {exc}") from None

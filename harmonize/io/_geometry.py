"""Image grids in patient (LPS) coordinates, shared by the DICOM, NIfTI and registration code.

A :class:`Grid` follows the SimpleITK convention used by the Study: the physical position
of voxel index ``(i, j, k)`` along ``(x, y, z)`` is ``origin + D @ (i·dx, j·dy, k·dz)`` with
``D`` the 3×3 direction matrix (row-major ``direction``) whose columns are the directions
of the x (row), y (column) and z (slice) axes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
import xarray as xr

__all__ = [
    "Grid",
    "array_to_image",
    "grid_of_image",
    "grid_of_study",
    "image_to_array",
    "resample_onto",
]

#: Tolerance (mm) under which two grid origins or spacings are considered identical.
GRID_TOL_MM = 1e-3


@dataclass(frozen=True)
class Grid:
    """A regular 3-D grid: shape (nz, ny, nx), spacing (dz, dy, dx) mm, origin (x, y, z) mm."""

    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]
    direction: tuple[float, ...]

    @property
    def matrix(self) -> np.ndarray:
        """Direction cosines as a 3×3 array (columns = x, y, z axes)."""
        return np.asarray(self.direction, dtype=np.float64).reshape(3, 3)

    def index_to_physical(self, ijk: np.ndarray) -> np.ndarray:
        """LPS positions (mm) of continuous indices ``ijk`` (..., 3) ordered (i, j, k)."""
        dz, dy, dx = self.spacing_mm
        scaled = np.asarray(ijk, dtype=np.float64) * np.array([dx, dy, dz])
        return np.asarray(self.origin_mm) + scaled @ self.matrix.T

    def physical_to_index(self, xyz: np.ndarray) -> np.ndarray:
        """Continuous indices (i, j, k) of LPS positions ``xyz`` (..., 3) in mm."""
        dz, dy, dx = self.spacing_mm
        rel = np.asarray(xyz, dtype=np.float64) - np.asarray(self.origin_mm)
        return (rel @ self.matrix) / np.array([dx, dy, dz])

    def same_as(self, other: Grid, tol_mm: float = GRID_TOL_MM) -> bool:
        """True if both grids have the same shape and geometry within ``tol_mm``."""
        return (
            self.shape == other.shape
            and np.allclose(self.spacing_mm, other.spacing_mm, atol=tol_mm)
            and np.allclose(self.origin_mm, other.origin_mm, atol=tol_mm)
            and np.allclose(self.direction, other.direction, atol=1e-6)
        )

    def empty_image(self) -> sitk.Image:
        """A float32 SimpleITK image with this geometry (all zeros)."""
        image = sitk.Image([self.shape[2], self.shape[1], self.shape[0]], sitk.sitkFloat32)
        _set_geometry(image, self)
        return image


def _set_geometry(image: sitk.Image, grid: Grid) -> None:
    dz, dy, dx = grid.spacing_mm
    image.SetSpacing((float(dx), float(dy), float(dz)))
    image.SetOrigin(tuple(float(v) for v in grid.origin_mm))
    image.SetDirection(tuple(float(v) for v in grid.direction))


def grid_of_study(study: xr.Dataset) -> Grid:
    """The grid of a Study (origin = first voxel centre, from the x, y, z coordinates)."""
    dz, dy, dx = (float(v) for v in np.asarray(study.attrs["voxel_size_mm"]).reshape(-1))
    origin = tuple(float(study[d].values[0]) for d in ("x", "y", "z"))
    direction = np.asarray(
        study.attrs.get("direction", np.eye(3).ravel()), dtype=np.float64
    ).reshape(-1)
    shape = (study.sizes["z"], study.sizes["y"], study.sizes["x"])
    return Grid(
        shape=(int(shape[0]), int(shape[1]), int(shape[2])),
        spacing_mm=(dz, dy, dx),
        origin_mm=(origin[0], origin[1], origin[2]),
        direction=tuple(float(v) for v in direction),
    )


def grid_of_image(image: sitk.Image) -> Grid:
    """The grid of a SimpleITK image."""
    nx, ny, nz = image.GetSize()
    dx, dy, dz = image.GetSpacing()
    return Grid(
        shape=(int(nz), int(ny), int(nx)),
        spacing_mm=(float(dz), float(dy), float(dx)),
        origin_mm=tuple(float(v) for v in image.GetOrigin()),  # type: ignore[arg-type]
        direction=tuple(float(v) for v in image.GetDirection()),
    )


def array_to_image(array: np.ndarray, grid: Grid) -> sitk.Image:
    """A SimpleITK image holding ``array`` (z, y, x) on ``grid``."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    _set_geometry(image, grid)
    return image


def image_to_array(image: sitk.Image) -> np.ndarray:
    """The voxel array (z, y, x) of a SimpleITK image (a copy)."""
    return sitk.GetArrayFromImage(image)


def resample_onto(
    image: sitk.Image,
    grid: Grid,
    *,
    interpolator: int = sitk.sitkLinear,
    default_value: float = 0.0,
    transform: sitk.Transform | None = None,
) -> np.ndarray:
    """Resample ``image`` onto ``grid`` in physical (LPS) space; return the (z, y, x) array.

    When the image already lies on ``grid`` and no transform is given, its voxels are
    returned unchanged (no interpolation error).
    """
    if transform is None and grid_of_image(image).same_as(grid):
        return image_to_array(image)
    out = sitk.Resample(
        image,
        grid.empty_image(),
        transform if transform is not None else sitk.Transform(),
        interpolator,
        float(default_value),
        image.GetPixelID(),
    )
    return image_to_array(out)

"""How a VOI's sums change when its boundary moves: the volume (segmentation) component.

Segmentation uncertainty is declared as a standard uncertainty ``u_b`` (mm) of the position
of a VOI's boundary [assumed per workflow]. Its effect is measured on the images, not
modelled: each VOI is dilated and eroded by one voxel layer (6-connected), and for any
voxel map ``q`` the logarithmic slope of the VOI sum with respect to the volume is

.. math:: c_q = \\frac{\\ln Q_{out} - \\ln Q_{in}}{\\ln V_{out} - \\ln V_{in}},

(one-sided with the VOI itself when erosion leaves nothing). The relative standard
uncertainty of the volume is ``u(V)/V = (V_out − V_in)/(2V) · u_b / (κ h)`` with ``h`` the
geometric-mean voxel size: a 6-connected dilation adds the points whose distance to a
surface of unit normal ``n`` is at most ``h·max|nᵢ|`` (a neighbour along the axis of the
largest ``|nᵢ|`` is inside), so each layer is ``κ·h·surface`` thick with
``κ = E[max|nᵢ|] = 0.831`` averaged over the normals of a sphere (uniform directions;
evaluated numerically, 2·10⁶ directions), and the expression is ``surface · u_b / V``.
A sum of activity grows with the VOI (it gathers the activity spilled across the boundary);
a sum of mass grows like the volume (``c ≈ 1``); their difference is the slope of a mean.
These are the sensitivity coefficients ``∂ln Q/∂ln V`` of GUM §5.1.3, evaluated by finite
differences of the image itself. Python loops run over VOIs only, each on its bounding box.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from scipy import ndimage
else:
    from harmonize._lazy import lazy_module

    ndimage = lazy_module("scipy.ndimage")

__all__ = ["BoundarySlopes", "boundary_slopes"]

#: 6-connectivity: the centre and its face neighbours (``|dz| + |dy| + |dx| <= 1``), the array
#: ``scipy.ndimage.generate_binary_structure(3, 1)`` returns, written out so that importing this
#: module does not import scipy.ndimage (tests/test_startup.py checks the two are equal).
_STRUCTURE = np.abs(np.indices((3, 3, 3)) - 1).sum(axis=0) <= 1
#: E[max(|n_x|, |n_y|, |n_z|)] over uniform directions: a 6-connected layer's mean thickness / h.
_LAYER = 0.831


class BoundarySlopes:
    """Result of :func:`boundary_slopes`.

    Attributes
    ----------
    volume_u_rel : numpy.ndarray
        Relative standard uncertainty of each VOI's volume, shape (n_voi,).
    slopes : dict of str to numpy.ndarray
        ``∂ln(Σ map)/∂ln V`` per map name, each shape (n_voi,).
    """

    def __init__(self, volume_u_rel: np.ndarray, slopes: dict[str, np.ndarray]) -> None:
        self.volume_u_rel = volume_u_rel
        self.slopes = slopes


def boundary_slopes(
    labels: np.ndarray,
    voi_ids: np.ndarray,
    maps: Mapping[str, np.ndarray],
    voxel_size_mm: tuple[float, float, float],
    boundary_u_mm: float,
) -> BoundarySlopes:
    """Volume uncertainty and logarithmic slopes of VOI sums (module docstring).

    Parameters
    ----------
    labels : ndarray (z, y, x) of int
        The label map.
    voi_ids : ndarray of int
        The VOIs, in output order.
    maps : mapping of str to ndarray (z, y, x)
        Non-negative voxel maps whose VOI sums are differentiated.
    voxel_size_mm : (dz, dy, dx)
        Voxel size.
    boundary_u_mm : float
        Standard uncertainty of the boundary position, mm (>= 0).
    """
    if not boundary_u_mm >= 0:
        raise ValueError(f"boundary_u_mm must be >= 0, got {boundary_u_mm!r}")
    h = float(np.prod(voxel_size_mm)) ** (1.0 / 3.0)
    objects = ndimage.find_objects(labels)
    n = len(voi_ids)
    volume_u_rel = np.zeros(n)
    slopes = {name: np.zeros(n) for name in maps}
    for k, voi in enumerate(np.asarray(voi_ids, dtype=int)):
        box = objects[voi - 1] if 0 < voi <= len(objects) else None
        if box is None:
            continue
        grown = tuple(
            slice(max(s.start - 2, 0), min(s.stop + 2, dim))
            for s, dim in zip(box, labels.shape, strict=True)
        )
        mask = labels[grown] == voi
        outer = ndimage.binary_dilation(mask, _STRUCTURE)
        inner = ndimage.binary_erosion(mask, _STRUCTURE, border_value=0)
        n_mid, n_out, n_in = int(mask.sum()), int(outer.sum()), int(inner.sum())
        layers = 2.0
        if n_in == 0:  # one-sided: the VOI and its dilation
            inner, n_in, layers = mask, n_mid, 1.0
        volume_u_rel[k] = (n_out - n_in) / (layers * n_mid) * boundary_u_mm / (_LAYER * h)
        dlnv = np.log(n_out / n_in)
        for name, values in maps.items():
            box_values = values[grown]
            q_out = float(box_values[outer].sum())
            q_in = float(box_values[inner].sum())
            if q_out > 0 and q_in > 0 and dlnv > 0:
                slopes[name][k] = np.log(q_out / q_in) / dlnv
    return BoundarySlopes(volume_u_rel, slopes)

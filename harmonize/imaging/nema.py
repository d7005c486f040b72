"""NEMA IEC body phantom through a centre's imaging chain → its RC curve and calibration.

Geometry: the IEC 61675-1 / NEMA NU 2-2012 body ("image quality") phantom, interior
dimensions (the water and the spheres; the 3 mm PMMA shell is not modelled). The standards'
texts are not in our hands: the dimensions are those of the OpenGATE collaboration's
analytic model of the phantom (``opengate/contrib/phantoms/nemaiec.py``, read 2026-11-29),
with the figures commonly quoted from NEMA NU 2-2012 beside them where they differ:

* cross-section: a half-disc of radius 147 mm (the curved, upper side) joined along its
  diameter to a 77 mm deep lower part, 140 mm wide flat with quarter-circle corners of
  radius 77 mm centred 70 mm either side of the mid-line — 294 mm wide, 224 mm high
  (outer 300 × 230 mm with 3 mm walls; as modelled in OpenGATE's
  ``opengate/contrib/phantoms/nemaiec.py``, ``add_iec_body``);
* interior length 194 mm (outer 214 mm less two 10 mm end plates, OpenGATE ``nemaiec.py``;
  NEMA NU 2-2012 asks for at least 180 mm);
* lung insert: a cylinder of 50 mm outer diameter (OpenGATE; NEMA NU 2-2012 is quoted as
  50 ± 2 mm) along the
  whole length, its axis 35 mm above the half-disc's centre (OpenGATE ``nemaiec.py``,
  ``add_iec_central_cylinder``): a 4 mm PMMA wall (1.18 g/mL, OpenGATE ``IEC_PLASTIC``)
  around low-density lung material (0.3 g/mL [assumed], polystyrene beads and water);
  no activity;
* six spheres of inner diameter 10, 13, 17, 22, 28 and 37 mm (NEMA NU 2-2012) whose
  centres lie on a circle of 114.4 mm diameter concentric with the lung insert (NEMA NU
  2-2012 as quoted; OpenGATE 114.5 mm), 60° apart in the order 37, 28, 22, 17, 13, 10 mm starting on the left of the
  insert (OpenGATE ``add_iec_all_spheres``), in one transverse plane 70 mm from the inner
  face of the lid (OpenGATE: 27 mm from the middle of the 194 mm interior). Their 1 mm
  walls are not modelled (thinner than a fifth of a voxel at the sizes used here
  [assumed negligible]); ``reverse_spheres=True`` puts the spheres in the opposite order
  (OpenGATE's ``toggle_sphere_order``), a held-out geometry for the fast-mode check.

The phantom lies on its flat side [assumed, the usual set-up], centred on the rotation
axis by its bounding box, which puts the axis on the lung insert (the box spans 224 mm
vertically, from 77 mm below to 147 mm above the half-disc's centre: its middle is 35 mm
above that centre). The spheres hold ``sphere_to_background`` times the background
concentration (declared contrast, default 10:1 [assumed]).

A centre measures on its own camera: the phantom goes through the same chain as the
patients (:func:`harmonize.imaging.image_activity`, full or fast mode), and

* the recovery coefficient of each sphere is the mean of the image over the voxels of the
  sphere (its physical size, voxelised) divided by the true sphere concentration; the
  curve is the parametric form of :meth:`harmonize.pvc.RecoveryCurve.fit` (plateau 1)
  through the six points at their physical volumes (so volumes outside 0.52–26.5 mL are extrapolated by
  that form, as a centre's curve would be);
* the calibration factor is the image/true ratio in a large background region (beyond
  30 mm of any sphere or the insert and 40 mm inside the phantom wall, within 60 mm of the
  central plane), times the profile's nominal sensitivity, in cps/MBq.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage

from harmonize import pvc
from harmonize.imaging.profile import CentreProfile, load_profile

__all__ = [
    "NEMA_SPHERE_DIAMETERS_MM",
    "CalibrationResult",
    "calibration_phantom",
    "measure_calibration",
    "recovery_curve",
]

#: Inner sphere diameters of the IEC body phantom, mm (NEMA NU 2-2012).
NEMA_SPHERE_DIAMETERS_MM = (10.0, 13.0, 17.0, 22.0, 28.0, 37.0)
#: Diameter of the circle carrying the sphere centres, mm (NEMA NU 2-2012).
SPHERE_RING_DIAMETER_MM = 114.4
#: Interior length, mm (OpenGATE ``nemaiec.py``: 214 mm outer, 10 mm end plates).
INTERIOR_LENGTH_MM = 194.0
#: Distance of the sphere centres' plane from the inner face of the lid, mm (OpenGATE).
SPHERE_PLANE_FROM_LID_MM = 70.0
#: Height of the lung insert's axis above the centre of the half-disc, mm (OpenGATE).
INSERT_ABOVE_DISC_CENTRE_MM = 35.0
#: Background concentration of the calibration phantom, Bq/mL [assumed: ≈ 1 GBq in 10 L].
BACKGROUND_BQ_ML = 1.0e5
#: Default sphere-to-background ratio [assumed].
DEFAULT_CONTRAST = 10.0


@dataclass(frozen=True)
class CalibrationResult:
    """What a centre learns from its calibration phantom."""

    profile: str
    mode: str
    table: pd.DataFrame  # diameter_mm, volume_ml, rc
    curve: pvc.RecoveryCurve
    calibration_cps_per_mbq: float


def calibration_phantom(
    voxel_size_mm: float, contrast: float = DEFAULT_CONTRAST, *, reverse_spheres: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxelised phantom: concentration (Bq/mL), density (g/mL), labels.

    Labels: 1–6 the spheres in the order of :data:`NEMA_SPHERE_DIAMETERS_MM`, 0 the
    background water, −1 outside the phantom (air), −2 the lung insert (wall included).
    The grid covers 340 × 340 × 230 mm (x, y, z), square in (y, x) so that the whole
    phantom (at most 155.3 mm from the axis) lies inside the circle every view sees.
    """
    v = float(voxel_size_mm)
    shape = tuple(math.ceil(f / v) for f in (230.0, 340.0, 340.0))
    z, y, x = ((np.arange(n) - (n - 1) / 2.0) * v for n in shape)
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij", sparse=True)
    # y_disc: height above the half-disc's centre, which lies 35 mm below the axis
    y_disc = yy + INSERT_ABOVE_DISC_CENTRE_MM
    upper = (y_disc >= 0) & (xx**2 + y_disc**2 <= 147.0**2)
    lower = (
        (y_disc < 0)
        & (y_disc >= -77.0)
        & ((np.abs(xx) <= 70.0) | ((np.abs(xx) - 70.0) ** 2 + y_disc**2 <= 77.0**2))
    )
    half_length = INTERIOR_LENGTH_MM / 2.0
    body = (upper | lower) & (np.abs(zz) <= half_length)
    insert_r2 = xx**2 + yy**2  # the insert's axis is the rotation axis
    insert = (insert_r2 <= 25.0**2) & (np.abs(zz) <= half_length)
    lung = (insert_r2 <= 21.0**2) & (np.abs(zz) <= half_length)
    labels = np.zeros(shape, dtype=np.int32)
    ring = SPHERE_RING_DIAMETER_MM / 2.0
    z_spheres = half_length - SPHERE_PLANE_FROM_LID_MM
    order = sorted(NEMA_SPHERE_DIAMETERS_MM, reverse=not reverse_spheres)
    for k, d in enumerate(order):
        phi = math.radians(180.0 + 60.0 * k)
        cx, cy = ring * math.cos(phi), ring * math.sin(phi)
        sphere = (xx - cx) ** 2 + (yy - cy) ** 2 + (zz - z_spheres) ** 2 <= (d / 2.0) ** 2
        labels[sphere] = NEMA_SPHERE_DIAMETERS_MM.index(d) + 1
    conc = np.where(body & ~insert, BACKGROUND_BQ_ML, 0.0)
    conc[labels > 0] = BACKGROUND_BQ_ML * contrast
    density = np.where(body, 1.0, 0.0012)
    density[insert] = 1.18  # PMMA wall (OpenGATE IEC_PLASTIC)
    density[lung] = 0.3
    labels[~body] = -1  # outside the phantom (air)
    labels[insert] = -2
    return conc, density, labels


def measure_calibration(
    profile: CentreProfile | str,
    voxel_size_mm: float,
    *,
    mode: str = "fast",
    contrast: float = DEFAULT_CONTRAST,
    seed: int = 0,
    noise: bool = True,
    reverse_spheres: bool = False,
) -> CalibrationResult:
    """Image the calibration phantom with a profile; return its RC table, curve and CF.

    ``reverse_spheres`` images the phantom with its spheres in the opposite order
    (see :func:`calibration_phantom`).
    """
    from harmonize.imaging.chain import image_activity

    prof = load_profile(profile) if isinstance(profile, str) else profile
    conc, density, labels = calibration_phantom(
        voxel_size_mm, contrast, reverse_spheres=reverse_spheres
    )
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 13, 1])) if noise else None
    image = image_activity(conc[None], density, voxel_size_mm, prof, mode, rng)[0]
    true_sphere = BACKGROUND_BQ_ML * contrast
    ids = np.arange(1, 7)
    rc = ndimage.mean(image, labels, ids) / true_sphere
    volumes = np.array([math.pi / 6.0 * d**3 / 1000.0 for d in NEMA_SPHERE_DIAMETERS_MM])
    hot = (labels > 0) | (labels == -2)
    far = ndimage.distance_transform_edt(~hot, sampling=voxel_size_mm) > 30.0
    far &= ndimage.distance_transform_edt(labels != -1, sampling=voxel_size_mm) > 40.0
    zc = (np.arange(labels.shape[0]) - (labels.shape[0] - 1) / 2.0) * voxel_size_mm
    background = (labels == 0) & far & (np.abs(zc) < 60.0)[:, None, None]
    ratio = float(image[background].mean()) / BACKGROUND_BQ_ML
    table = pd.DataFrame({"diameter_mm": NEMA_SPHERE_DIAMETERS_MM, "volume_ml": volumes, "rc": rc})
    # the plateau is fixed at 1 (a calibrated camera recovers a large object): six spheres
    # of at most 37 mm do not reach it, and a free plateau extrapolates wildly. RCs at or
    # above 1 (edge overshoot of resolution modelling) are taken as 0.99 for the fit.
    curve = pvc.RecoveryCurve.fit(
        volumes,
        np.clip(rc, 1e-3, 0.99),
        fit_rc_max=False,
        source=(
            f"NEMA IEC phantom ({contrast:g}:1) imaged with profile {prof.name!r} "
            f"({mode} mode, voxel {voxel_size_mm:g} mm, seed {seed})"
        ),
    )
    return CalibrationResult(
        prof.name, mode, table, curve, ratio * prof.system_sensitivity_cps_per_mbq
    )


@functools.lru_cache(maxsize=32)
def recovery_curve(
    profile: str, voxel_size_mm: float, mode: str = "fast", seed: int = 0
) -> pvc.RecoveryCurve:
    """A centre's RC(volume) curve from its calibration phantom (cached)."""
    return measure_calibration(profile, voxel_size_mm, mode=mode, seed=seed).curve

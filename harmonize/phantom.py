"""Synthetic [177Lu]Lu-DOTATATE patients with known ground truth.

Each patient has an elliptical body outline, a liver, two kidneys, a spleen, a spine (CT
only) and 2–8 lesions (spheres or rotated ellipsoids of 1–200 mL, some inside the liver).
Every VOI has uniform activity concentration with its own uptake–washout kinetics

.. math:: C(t) = C_0\\,(e^{-\\lambda_w t} - e^{-\\lambda_u t}), \\qquad \\lambda_u > \\lambda_w,

whose time integral :math:`C_0 (1/\\lambda_w - 1/\\lambda_u)` is the exact TIA per mL. The
scanner model adds, per time point, Poisson counting noise (sensitivity × acquisition time,
before the point-spread function so the noise is spatially correlated as in reconstructed
SPECT) and a Gaussian PSF of configurable FWHM — the *ideal scanner*, whose noise is about
ten times below clinical images — or, with ``imaging_profile``, a centre's camera through
:mod:`harmonize.imaging` (projection, noise on projections, OSEM, or its calibrated fast
mode). Images are sampled at a superset of the centres' schedules (4, 24, 48, 72, 96, 168,
192 h).

Where the numbers come from
---------------------------
Kinetic parameters are drawn per patient and VOI. Amplitudes are set through a target
specific absorbed dose (Gy/GBq, local-deposition estimate), drawn from a normal
distribution with the published mean ± SD:

* kidneys 0.57 ± 0.09, liver 0.27 ± 0.05, spleen 1.17 ± 0.14 and tumours 3.41 ± 0.68 mGy/MBq
  — [Clin Nucl Med 2013;38(3), "Dosimetric analyses of kidneys, liver, spleen, pituitary gland,
  and neuroendocrine tumors of patients treated with 177Lu-DOTATATE", 61 patients, OLINDA;
  Ovid accession 00003072-201303000-00005] (``CNM2013``). Tumour doses vary far
  more between patients than that SD; the tumour spread is widened to a log-normal with
  geometric SD 1.6 [assumed] so that the cohort straddles the published cutoffs.
* effective half-lives (washout) [assumed, typical of the 177Lu-DOTATATE literature]:
  kidneys 40–60 h, liver 60–90 h, spleen 60–90 h, tumours 60–110 h, remainder of body 20–40 h;
  uptake half-lives 0.5–3 h. With ``kinetics="clinical"`` they are log-normal per tissue:
  the *form* follows Hou2021 (Hou X, Brosch J, Uribe C, et al. Feasibility of
  single-time-point dosimetry for radiopharmaceutical therapies. J Nucl Med
  2021;62(7):1006–1011, PMC8882881 — abstract: "A lognormal distribution was more
  appropriate for capturing effective half-life distributions"); the medians and
  geometric SDs are [assumed] (we could read no per-tissue table: only that abstract).
  A fraction of tumours whose uptake peaks at 24–48 h: fraction and times [assumed]
  (no source read that gives the fraction).
* per-cycle fall of tumour uptake, × 0.9 per cycle [assumed; tumour absorbed dose tends to
  decrease over cycles as reported by Garske-Román 2018, EJNMMI 45:970].
* injected activity 7.4 GBq ± 3 % per cycle (the Lutathera SmPC activity, 7.4 GBq × 4 cycles).
* SPECT sensitivity 9.87 cps/MBq (Marin 2017, EJNMMI Phys, doi:10.1186/s40658-017-0174-7, Bordet's camera) with a
  20-min acquisition for the noise level; PSF FWHM 11 mm by default [assumed, typical of
  resolution-recovered 177Lu SPECT at 4.8 mm voxels].
* CT numbers and mass densities of tissues: ICRU Report 46 densities (liver 1.06, kidney 1.05,
  spleen 1.06, soft tissue 1.03, cortical bone 1.92 g/cm³) [pub]; CT numbers
  HU ≈ 1000·(ρ − 1) for soft tissues (a simplification, [assumed]) and 700 HU for the spine.

The ground truth (TIA, mass, mean absorbed dose per VOI) is defined in
:mod:`harmonize.truth`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from scipy import ndimage

from harmonize.bundle import atomic_path, save_study
from harmonize.cohort import TRUTH_FILE
from harmonize.nuclides import get_nuclide
from harmonize.study import make_study
from harmonize.truth import REFERENCE_DOSE_METHOD, reference_dose_gy

__all__ = [
    "DEFAULT_TIMES_H",
    "PhantomConfig",
    "PhantomPatient",
    "make_patient",
    "simulate_study",
    "truth_table",
    "write_cohort",
]

#: Superset of the centres' imaging time points, hours after injection.
DEFAULT_TIMES_H = (4.0, 24.0, 48.0, 72.0, 96.0, 168.0, 192.0)

#: Specific absorbed dose, mean and SD in Gy/GBq (CNM2013: Clin Nucl Med 2013;38(3), 61 patients).
SPECIFIC_DOSE_GY_PER_GBQ = {
    "kidney": (0.57, 0.09),
    "liver": (0.27, 0.05),
    "spleen": (1.17, 0.14),
    "lesion": (3.41, 0.68),
}
#: Remainder-of-body specific dose [assumed: low background uptake], Gy/GBq.
BODY_DOSE_GY_PER_GBQ = (0.03, 0.005)
#: Effective (washout) half-life ranges in hours [assumed].
WASHOUT_HALF_LIFE_H = {
    "kidney": (40.0, 60.0),
    "liver": (60.0, 90.0),
    "spleen": (60.0, 90.0),
    "lesion": (60.0, 110.0),
    "body": (20.0, 40.0),
}
#: Uptake half-life range in hours [assumed].
UPTAKE_HALF_LIFE_H = (0.5, 3.0)
#: ``kinetics="clinical"``: effective (washout) half-life per tissue, log-normal (median h,
#: geometric SD). Log-normal rather than normal: Hou2021 (J Nucl Med 2021;62:1006–1011,
#: abstract). The values are [assumed: medians at the centres of the ranges above, spreads
#: chosen so that the central 95 % spans about ×0.5–×2 for tumours; no per-tissue table
#: could be read].
CLINICAL_WASHOUT_HALF_LIFE_H = {
    "kidney": (50.0, 1.25),
    "liver": (75.0, 1.25),
    "spleen": (75.0, 1.25),
    "lesion": (85.0, 1.4),
    "body": (30.0, 1.3),
}
#: ``kinetics="clinical"``: fraction of tumours whose uptake peaks late [assumed].
LATE_PEAK_FRACTION = 0.4
#: Time of that late peak, uniform in this range, h (the issue's 24–48 h) [assumed].
LATE_PEAK_TIME_H = (24.0, 48.0)
#: ``kinetics="clinical"``: probability that a lesion of at least ``NECROSIS_MIN_ML`` has a
#: necrotic core, the core's share of the lesion depth and its relative uptake [assumed].
NECROSIS_PROBABILITY = 0.3
NECROSIS_MIN_ML = 10.0
NECROSIS_DEPTH_FRACTION = 0.5
NECROSIS_UPTAKE = 0.2
#: Tissue mass densities, g/mL (ICRU Report 46).
DENSITY_G_ML = {
    "soft": 1.03,
    "liver": 1.06,
    "kidney": 1.05,
    "spleen": 1.06,
    "lesion": 1.04,
    "bone": 1.92,
    "air": 0.0012,
}
#: SPECT system sensitivity, cps/MBq (Marin 2017, EJNMMI Phys, doi:10.1186/s40658-017-0174-7).
SENSITIVITY_CPS_PER_MBQ = 9.87
_TISSUES = ("air", "soft", "liver", "kidney", "spleen", "lesion", "bone")


@dataclass(frozen=True)
class PhantomConfig:
    """Parameters of the synthetic cohort (all have defaults).

    Attributes
    ----------
    voxel_size_mm : float
        Isotropic voxel size (4.8 mm is a tabulated Lanconelli size).
    fov_mm : (z, y, x)
        Field of view; the grid shape is ``ceil(fov / voxel)``. The body outline is an
        elliptic cylinder of 230 mm (AP) × 340 mm (LR) ending 1.5 voxels inside the field
        of view in z; a smaller field of view clips it (the organs and lesions too).
    times_h : tuple of float
        Acquisition times after injection.
    psf_fwhm_mm : float
        FWHM of the Gaussian point-spread function; 0 disables blurring.
    noise : bool
        Add Poisson counting noise.
    acquisition_s : float
        Acquisition duration that sets the noise level (seconds per time point).
    n_lesions : (min, max)
        Number of lesions per patient (inclusive range).
    lesion_volume_ml : (min, max)
        Lesion volume range (log-uniform).
    liver_lesion_fraction : float
        Probability that a lesion is placed inside the liver.
    cycles : tuple of int
        Therapy cycles imaged per patient (one study each).
    planned_cycles : int, optional
        Cycles of the planned treatment (default: 4, the Lutathera SmPC's 4 x 7.4 GBq, or
        the highest imaged cycle if larger). The truth table holds the true doses of every
        planned cycle, imaged or not (column ``imaged``), so that the true cumulative dose is
        the total over the planned treatment whatever cycles were imaged.
    tumour_cycle_factor : float
        Multiplier of tumour uptake per cycle after the first [assumed].
    lesion_dose_scale : tuple of float
        Cohort design: patient ``i`` has its lesions' specific dose multiplied by
        ``lesion_dose_scale[i % len]`` (empty: 1 for everyone). The demo uses it to give the
        cohort patients on both sides of every published cutoff (:mod:`harmonize.demo`).
    nuclide : str
        Radionuclide.
    injected_activity_mbq : float
        Nominal injected activity per cycle (± 3 % is drawn per cycle).
    motion_mm : float
        Largest rigid patient shift (per axis, uniform) between the first and each later
        time point; 0 (default) keeps the patient still. With motion, each time point gets
        its own CT (``ct_by_time``) and the labels and truth refer to the first time point.
    imaging_profile : str
        Centre imaging profile (:func:`harmonize.imaging.load_profile`: a shipped name such
        as ``"bordet"`` or a profile .json path) whose camera images the cohort: projection
        with attenuation and collimator response, noise on the projections, OSEM, post-filter
        (``imaging_mode="full"``) or the fast parametric mode calibrated on it. Empty (the
        default, for backward compatibility) keeps the *ideal scanner*: Poisson noise per
        voxel then the Gaussian ``psf_fwhm_mm`` — about ten times less noise than clinical
        images (liver voxel CoV 1–2 %); ``psf_fwhm_mm`` and ``acquisition_s`` apply only to it.
    imaging_mode : {"fast", "full"}
        How a profile images (ignored without ``imaging_profile``).
    kinetics : {"gentle", "clinical"}
        ``"gentle"`` (default, backward compatible): uniform VOIs, uptake half-lives
        0.5–3 h, uniform washout ranges. ``"clinical"``: log-normal effective half-lives
        (:data:`CLINICAL_WASHOUT_HALF_LIFE_H`), a fraction of tumours peaking at 24–48 h
        (:data:`LATE_PEAK_FRACTION`) and necrotic cores in some large lesions — so the
        centres' schedules and early-time integration rules matter. Drawn from their own
        random streams: the anatomy is the same as with ``"gentle"``.
    observer_segmentation : bool
        Also write ``labels_observer``, an observer's segmentation
        (:func:`harmonize.segmentation.observer_labels`: CT organ contours with boundary
        error, lesions by a 40 % SPECT threshold on the first time point).
    """

    voxel_size_mm: float = 4.8
    fov_mm: tuple[float, float, float] = (307.2, 345.6, 460.8)
    times_h: tuple[float, ...] = DEFAULT_TIMES_H
    psf_fwhm_mm: float = 11.0
    noise: bool = True
    acquisition_s: float = 1200.0
    n_lesions: tuple[int, int] = (2, 8)
    lesion_volume_ml: tuple[float, float] = (1.0, 200.0)
    liver_lesion_fraction: float = 0.5
    cycles: tuple[int, ...] = (1, 2, 3, 4)
    planned_cycles: int | None = None
    tumour_cycle_factor: float = 0.9
    lesion_dose_scale: tuple[float, ...] = ()
    nuclide: str = "Lu-177"
    injected_activity_mbq: float = 7400.0
    motion_mm: float = 0.0
    imaging_profile: str = ""
    imaging_mode: str = "fast"
    kinetics: str = "gentle"
    observer_segmentation: bool = False

    def __post_init__(self) -> None:
        if self.imaging_mode not in ("fast", "full"):
            raise ValueError(
                f"PhantomConfig.imaging_mode must be 'fast' or 'full', got {self.imaging_mode!r}"
            )
        if self.kinetics not in ("gentle", "clinical"):
            raise ValueError(
                f"PhantomConfig.kinetics must be 'gentle' or 'clinical', got {self.kinetics!r}"
            )
        if self.imaging_profile:
            from harmonize.imaging import load_profile

            load_profile(self.imaging_profile)  # a clear error now rather than mid-cohort

    @property
    def all_cycles(self) -> tuple[int, ...]:
        """Every cycle with kinetics and truth: the planned cycles 1..N and the imaged ones."""
        planned = self.planned_cycles or max(4, *self.cycles)
        return tuple(sorted(set(range(1, int(planned) + 1)) | set(self.cycles)))

    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid shape (z, y, x)."""
        nz, ny, nx = (math.ceil(f / self.voxel_size_mm - 1e-9) for f in self.fov_mm)
        return (nz, ny, nx)


@dataclass
class PhantomPatient:
    """Anatomy and per-VOI kinetics of one synthetic patient (all cycles)."""

    patient_id: str
    index: int
    seed: int
    labels: np.ndarray
    ct_hu: np.ndarray
    density_g_ml: np.ndarray
    vois: pd.DataFrame
    kinetics: dict[int, pd.DataFrame] = field(default_factory=dict)
    injected_activity_mbq: dict[int, float] = field(default_factory=dict)
    uptake_scale: np.ndarray | None = None  # relative uptake per voxel (necrotic cores)


def _grid_mm(config: PhantomConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    nz, ny, nx = config.shape
    v = config.voxel_size_mm
    # centred coordinates of voxel centres (mm)
    z = (np.arange(nz) - (nz - 1) / 2) * v
    y = (np.arange(ny) - (ny - 1) / 2) * v
    x = (np.arange(nx) - (nx - 1) / 2) * v
    return np.meshgrid(z, y, x, indexing="ij", sparse=True)


def _ellipsoid(
    grids: tuple[np.ndarray, np.ndarray, np.ndarray],
    centre_zyx: Sequence[float] | np.ndarray,
    semi_axes_zyx: Sequence[float] | np.ndarray,
    rotation: np.ndarray | None = None,
) -> np.ndarray:
    z, y, x = (g - c for g, c in zip(grids, centre_zyx, strict=True))
    if rotation is not None:
        zz = rotation[0, 0] * z + rotation[0, 1] * y + rotation[0, 2] * x
        yy = rotation[1, 0] * z + rotation[1, 1] * y + rotation[1, 2] * x
        xx = rotation[2, 0] * z + rotation[2, 1] * y + rotation[2, 2] * x
        z, y, x = zz, yy, xx
    a, b, c = semi_axes_zyx
    return (z / a) ** 2 + (y / b) ** 2 + (x / c) ** 2 <= 1.0


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def make_patient(index: int, seed: int, config: PhantomConfig | None = None) -> PhantomPatient:
    """Draw the anatomy and kinetics of patient number ``index`` of a seeded cohort.

    The same ``(seed, index)`` always gives the same patient; its anatomy is shared by all
    its cycles.
    """
    config = config or PhantomConfig()
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index), 0]))
    grids = _grid_mm(config)
    shape = config.shape
    fov_z = shape[0] * config.voxel_size_mm
    labels = np.zeros(shape, dtype=np.int32)
    tissue = np.zeros(shape, dtype=np.int8)  # index into _TISSUES
    code = {name: i for i, name in enumerate(_TISSUES)}

    body_half_z = 0.5 * fov_z - 1.5 * config.voxel_size_mm
    body = _ellipsoid(grids, (0.0, 0.0, 0.0), (1e9, 115.0, 170.0)) & (
        np.abs(grids[0]) <= body_half_z
    )
    jitter = rng.uniform(-8.0, 8.0, size=(4, 3))
    organ_specs = [
        # name, centre (z, y, x) mm, semi-axes (z, y, x) mm — LPS: +x is the patient's left
        ("liver", (40.0, 0.0, -70.0), (55.0, 70.0, 90.0)),
        ("spleen", (50.0, 30.0, 95.0), (45.0, 30.0, 35.0)),
        ("kidney_left", (-10.0, 55.0, 70.0), (50.0, 25.0, 30.0)),
        ("kidney_right", (-20.0, 55.0, -70.0), (50.0, 25.0, 30.0)),
    ]
    spine = _ellipsoid(grids, (0.0, 75.0, 0.0), (1e9, 15.0, 15.0)) & body
    vois = [{"voi_id": 1, "name": "body", "kind": "body", "parent_id": 0}]
    labels[body] = 1
    tissue[body] = code["soft"]
    tissue[spine] = code["bone"]
    for k, (name, centre, axes) in enumerate(organ_specs):
        c = np.asarray(centre) + jitter[k]
        scale = rng.uniform(0.9, 1.1)
        # organs do not overlap: a voxel already given to an organ keeps it
        mask = _ellipsoid(grids, c, np.asarray(axes) * scale) & (labels == 1) & ~spine
        voi_id = 2 + k
        labels[mask] = voi_id
        tissue[mask] = code["kidney" if name.startswith("kidney") else name]
        vois.append({"voi_id": voi_id, "name": name, "kind": "organ", "parent_id": 1})

    n_lesions = int(rng.integers(config.n_lesions[0], config.n_lesions[1] + 1))
    liver = labels == 2
    # soft-tissue lesions keep at least one voxel away from organs and the spine
    free_soft = (labels == 1) & ~ndimage.binary_dilation((labels > 1) | spine, iterations=1)
    occupied = np.zeros(shape, dtype=bool)  # lesions placed so far, dilated by one voxel
    zc, yc, xc = (np.broadcast_to(g, shape) for g in grids)
    for n in range(n_lesions):
        volume_ml = math.exp(rng.uniform(*np.log(config.lesion_volume_ml)))
        in_liver = bool(rng.random() < config.liver_lesion_fraction)
        ellipsoid = bool(rng.random() < 0.5)
        radius_mm = (3.0 * volume_ml * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
        ratios = rng.uniform(0.75, 1.3, size=3) if ellipsoid else np.ones(3)
        ratios = ratios / np.prod(ratios) ** (1.0 / 3.0)
        axes = radius_mm * ratios
        rotation = _random_rotation(rng) if ellipsoid else None
        allowed = (liver if in_liver else free_soft) & ~occupied
        # the lesion centre must lie deep enough inside the allowed region
        depth = ndimage.distance_transform_edt(allowed, sampling=config.voxel_size_mm)
        candidates = np.flatnonzero(depth.ravel() > axes.max() + config.voxel_size_mm)
        if candidates.size == 0 and in_liver:
            allowed = free_soft & ~occupied
            depth = ndimage.distance_transform_edt(allowed, sampling=config.voxel_size_mm)
            candidates = np.flatnonzero(depth.ravel() > axes.max() + config.voxel_size_mm)
            in_liver = False
        if candidates.size == 0:
            continue
        pick = int(candidates[rng.integers(candidates.size)])
        centre = (zc.ravel()[pick], yc.ravel()[pick], xc.ravel()[pick])
        mask = _ellipsoid(grids, centre, axes, rotation) & allowed
        if not mask.any():
            continue
        voi_id = 10 + n
        labels[mask] = voi_id
        tissue[mask] = code["lesion"]
        occupied |= ndimage.binary_dilation(mask, iterations=1)
        parent = 2 if in_liver else 1
        vois.append(
            {"voi_id": voi_id, "name": f"lesion_{n + 1:02d}", "kind": "lesion", "parent_id": parent}
        )

    density = np.array([DENSITY_G_ML[t] for t in _TISSUES])[tissue]
    hu = np.array([1000.0 * (DENSITY_G_ML[t] - 1.0) for t in _TISSUES])
    hu[code["bone"]] = 700.0
    hu[code["air"]] = -1000.0
    ct_hu = hu[tissue] + rng.normal(0.0, 10.0, size=shape)
    table = pd.DataFrame(vois)
    patient = PhantomPatient(
        patient_id=_pid(index),
        index=int(index),
        seed=int(seed),
        labels=labels,
        ct_hu=ct_hu.astype(np.float32),
        density_g_ml=density,
        vois=table,
    )
    _draw_kinetics(patient, rng, config)
    if config.kinetics == "clinical":
        patient.uptake_scale = _necrotic_cores(patient, config)
    return patient


def _kinetic_class(row: pd.Series) -> str:
    if row["kind"] == "lesion":
        return "lesion"
    if row["kind"] == "body":
        return "body"
    return "kidney" if str(row["name"]).startswith("kidney") else str(row["name"])


def _draw_kinetics(
    patient: PhantomPatient, rng: np.random.Generator, config: PhantomConfig
) -> None:
    nuclide = get_nuclide(config.nuclide)
    lam_phys = nuclide.decay_constant_per_h
    # Gy per (MBq·h/g) under local deposition of the electron energy
    ldm = nuclide.electron_energy_mev * 1.602176634e-13 * 3.6e9 / 1e-3
    table = patient.vois
    classes = [_kinetic_class(r) for _, r in table.iterrows()]
    n = len(table)
    base_dose = np.empty(n)
    for i, cls in enumerate(classes):
        if cls == "lesion":
            mean, _ = SPECIFIC_DOSE_GY_PER_GBQ["lesion"]
            base_dose[i] = mean * math.exp(rng.normal(0.0, math.log(1.6)))
        elif cls == "body":
            base_dose[i] = max(rng.normal(*BODY_DOSE_GY_PER_GBQ), 0.005)
        else:
            mean, sd = SPECIFIC_DOSE_GY_PER_GBQ[cls]
            base_dose[i] = max(rng.normal(mean, sd), 0.2 * mean)
    if config.lesion_dose_scale:
        scale = float(config.lesion_dose_scale[patient.index % len(config.lesion_dose_scale)])
        base_dose = np.where([c == "lesion" for c in classes], base_dose * scale, base_dose)
    t_wash = np.array([rng.uniform(*WASHOUT_HALF_LIFE_H[c]) for c in classes])
    t_up = rng.uniform(*UPTAKE_HALF_LIFE_H, size=n)
    late = np.zeros(n, dtype=bool)
    peak_h = np.full(n, np.nan)
    if config.kinetics == "clinical":
        # own stream: the anatomy and the gentle draws above are unchanged
        krng = np.random.default_rng(np.random.SeedSequence([patient.seed, patient.index, 4]))
        median = np.array([CLINICAL_WASHOUT_HALF_LIFE_H[c][0] for c in classes])
        gsd = np.array([CLINICAL_WASHOUT_HALF_LIFE_H[c][1] for c in classes])
        t_wash = median * np.exp(krng.normal(0.0, np.log(gsd)))
        is_tumour = np.array([c == "lesion" for c in classes])
        late = is_tumour & (krng.random(n) < LATE_PEAK_FRACTION)
        peak_h = krng.uniform(*LATE_PEAK_TIME_H, size=n)
    for cycle in config.all_cycles:
        # each cycle has its own stream, so a cycle's kinetics do not depend on which
        # other cycles are simulated
        crng = np.random.default_rng(
            np.random.SeedSequence([patient.seed, patient.index, 2, cycle])
        )
        injected = config.injected_activity_mbq * (1.0 + crng.uniform(-0.03, 0.03))
        is_lesion = np.array([c == "lesion" for c in classes])
        factor = np.where(is_lesion, config.tumour_cycle_factor ** (cycle - 1), 1.0)
        spec_dose = base_dose * factor * crng.uniform(0.92, 1.08, size=n)
        lam_w = np.maximum(np.log(2.0) / (t_wash * crng.uniform(0.95, 1.05, size=n)), lam_phys)
        lam_u = np.maximum(np.log(2.0) / t_up, 4.0 * lam_w)
        for k in np.flatnonzero(late):  # a handful of lesions
            lam_u[k] = _uptake_for_peak(float(lam_w[k]), float(peak_h[k]))
        dose_gy = spec_dose * injected / 1000.0
        # dose = ldm · TIA_per_g ; TIA per mL = C0 (1/λw − 1/λu) with C0 in MBq/mL
        tia_per_ml = dose_gy / ldm * np.array([DENSITY_G_ML[_tissue_of(c)] for c in classes])
        c0 = tia_per_ml / (1.0 / lam_w - 1.0 / lam_u)
        patient.kinetics[cycle] = pd.DataFrame(
            {
                "voi_id": table["voi_id"].to_numpy(),
                "c0_mbq_ml": c0,
                "lambda_washout_per_h": lam_w,
                "lambda_uptake_per_h": lam_u,
                "tia_per_ml_mbq_h": tia_per_ml,
            }
        )
        patient.injected_activity_mbq[cycle] = float(injected)


def _uptake_for_peak(lam_w: float, peak_h: float) -> float:
    """λ_u (1/h) such that ``e^{−λw t} − e^{−λu t}`` peaks at ``peak_h`` (capped at 0.9/λw)."""
    from scipy.optimize import brentq

    target = min(peak_h, 0.9 / lam_w)  # the peak time tends to 1/λw as λu → λw

    def peak_time(lam_u: float) -> float:
        return math.log(lam_u / lam_w) / (lam_u - lam_w) - target

    return float(brentq(peak_time, lam_w * (1.0 + 1e-9), 50.0, xtol=1e-12))


def _necrotic_cores(patient: PhantomPatient, config: PhantomConfig) -> np.ndarray:
    """Relative uptake per voxel: :data:`NECROSIS_UPTAKE` in the core of some lesions."""
    scale = np.ones(patient.labels.shape)
    hrng = np.random.default_rng(np.random.SeedSequence([patient.seed, patient.index, 5]))
    voxel_ml = config.voxel_size_mm**3 / 1000.0
    lesions = patient.vois.loc[patient.vois["kind"] == "lesion", "voi_id"].to_numpy()
    draws = hrng.random(lesions.size)
    for voi_id, u in zip(lesions, draws, strict=True):  # 2-8 lesions
        mask = patient.labels == voi_id
        if mask.sum() * voxel_ml < NECROSIS_MIN_ML or u >= NECROSIS_PROBABILITY:
            continue
        depth = ndimage.distance_transform_edt(mask)
        scale[depth > NECROSIS_DEPTH_FRACTION * depth.max()] = NECROSIS_UPTAKE
    return scale


def _tissue_of(cls: str) -> str:
    return {"body": "soft"}.get(cls, cls)


def _concentration_mbq_ml(kin: pd.DataFrame, times_h: np.ndarray) -> np.ndarray:
    """C(t) for each VOI: array (n_voi, n_times), MBq/mL."""
    c0 = kin["c0_mbq_ml"].to_numpy()[:, None]
    lw = kin["lambda_washout_per_h"].to_numpy()[:, None]
    lu = kin["lambda_uptake_per_h"].to_numpy()[:, None]
    return c0 * (np.exp(-lw * times_h[None, :]) - np.exp(-lu * times_h[None, :]))


def _voi_lookup(patient: PhantomPatient, values: np.ndarray) -> np.ndarray:
    """Map per-VOI values (n_voi, ...) onto the label grid (0 outside every VOI)."""
    ids = patient.vois["voi_id"].to_numpy()
    lut = np.zeros((int(ids.max()) + 1, *values.shape[1:]), dtype=np.float64)
    lut[ids] = values
    return lut[patient.labels]


def truth_table(
    patient: PhantomPatient, cycle: int, config: PhantomConfig | None = None
) -> pd.DataFrame:
    """True VOI doses of one cycle of a phantom patient (no imaging).

    One row per VOI: patient_id, cycle, voi_id, voi_name, voi_kind, parent_voi_id,
    volume_ml, mass_g, tia_mbq_h, dose_mean_gy (see :mod:`harmonize.truth`), the kinetic
    parameters, injected_activity_mbq and n_time_points.
    """
    config = config or PhantomConfig()
    times = np.asarray(config.times_h, dtype=np.float64)
    kin = patient.kinetics[cycle]
    voxel_ml = config.voxel_size_mm**3 / 1000.0
    tia_map = _voi_lookup(patient, kin["tia_per_ml_mbq_h"].to_numpy()) * voxel_ml  # MBq·h per voxel
    if patient.uptake_scale is not None:
        tia_map = tia_map * patient.uptake_scale
    dose_map = reference_dose_gy(
        tia_map, (config.voxel_size_mm,) * 3, patient.density_g_ml, config.nuclide
    )
    mass_map = patient.density_g_ml * voxel_ml
    labels = patient.labels.ravel()
    ids = patient.vois["voi_id"].to_numpy()
    size = int(ids.max()) + 1
    n_vox = np.bincount(labels, minlength=size)[ids]
    tia = np.bincount(labels, weights=tia_map.ravel(), minlength=size)[ids]
    mass = np.bincount(labels, weights=mass_map.ravel(), minlength=size)[ids]
    dose_mass = np.bincount(labels, weights=(dose_map * mass_map).ravel(), minlength=size)[ids]
    truth = pd.DataFrame(
        {
            "patient_id": patient.patient_id,
            "cycle": np.int32(cycle),
            "voi_id": ids.astype(np.int32),
            "voi_name": patient.vois["name"].to_numpy(),
            "voi_kind": patient.vois["kind"].to_numpy(),
            "parent_voi_id": patient.vois["parent_id"].to_numpy().astype(np.int32),
            "volume_ml": n_vox * voxel_ml,
            "mass_g": mass,
            "tia_mbq_h": tia,
            "dose_mean_gy": dose_mass / mass,
            "c0_mbq_ml": kin["c0_mbq_ml"].to_numpy(),
            "lambda_washout_per_h": kin["lambda_washout_per_h"].to_numpy(),
            "lambda_uptake_per_h": kin["lambda_uptake_per_h"].to_numpy(),
            "injected_activity_mbq": patient.injected_activity_mbq[cycle],
            "n_time_points": np.int32(times.size),
        }
    )
    return truth


def simulate_study(
    patient: PhantomPatient, cycle: int, seed: int, config: PhantomConfig | None = None
) -> tuple[xr.Dataset, pd.DataFrame]:
    """Image one cycle of a phantom patient; return the Study and its truth table.

    The truth table has one row per VOI: patient_id, cycle, voi_id, voi_name, voi_kind,
    tia_mbq_h, mass_g, volume_ml, dose_mean_gy and the kinetic parameters.
    """
    config = config or PhantomConfig()
    times = np.asarray(config.times_h, dtype=np.float64)
    kin = patient.kinetics[cycle]
    voxel_ml = config.voxel_size_mm**3 / 1000.0
    conc = _concentration_mbq_ml(kin, times)  # (n_voi, n_t) MBq/mL
    true_maps = np.moveaxis(_voi_lookup(patient, conc), -1, 0)  # (t, z, y, x) MBq/mL
    if patient.uptake_scale is not None:
        true_maps = true_maps * patient.uptake_scale
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), patient.index, 3, cycle]))
    images = np.empty(true_maps.shape, dtype=np.float32)
    sigma_vox = config.psf_fwhm_mm / (2.0 * math.sqrt(2.0 * math.log(2.0))) / config.voxel_size_mm
    counts_per_mbq = SENSITIVITY_CPS_PER_MBQ * config.acquisition_s
    ideal = not config.imaging_profile
    from harmonize.imaging import image_activity, load_profile

    if not ideal:
        images[:] = image_activity(
            true_maps * 1e6,
            patient.density_g_ml,
            config.voxel_size_mm,
            load_profile(config.imaging_profile),
            config.imaging_mode,
            rng if config.noise else None,
        )
    for i in range(times.size if ideal else 0):
        img = true_maps[i]
        if config.noise:
            expected = img * voxel_ml * counts_per_mbq
            img = rng.poisson(expected) / (voxel_ml * counts_per_mbq)
        if config.psf_fwhm_mm > 0:
            img = ndimage.gaussian_filter(img, sigma_vox, mode="constant", truncate=4.0)
        images[i] = np.clip(img, 0.0, None) * 1e6  # MBq/mL -> Bq/mL
    truth = truth_table(patient, cycle, config)
    # a synthetic injection date: cycles 8 weeks apart from an arbitrary epoch
    injection = np.datetime64("2000-01-03T09:00:00") + np.timedelta64(56 * (cycle - 1), "D")
    study = make_study(
        images,
        times,
        (config.voxel_size_mm,) * 3,
        patient.labels,
        patient.vois,
        patient_id=patient.patient_id,
        cycle=cycle,
        center="phantom",
        injected_activity_mbq=patient.injected_activity_mbq[cycle],
        injection_time=str(injection),
        radionuclide=config.nuclide,
        ct_hu=patient.ct_hu,
        origin_mm=(
            -(config.shape[2] - 1) / 2 * config.voxel_size_mm,
            -(config.shape[1] - 1) / 2 * config.voxel_size_mm,
            -(config.shape[0] - 1) / 2 * config.voxel_size_mm,
        ),
        extra_attrs={
            "source": "harmonize.phantom",
            "noise": int(config.noise),
            "imaging_profile": load_profile(config.imaging_profile).name if not ideal else "ideal",
            "imaging_mode": config.imaging_mode if not ideal else "ideal",
            # the Gaussian PSF is a property of the ideal scanner only
            **({"psf_fwhm_mm": float(config.psf_fwhm_mm)} if ideal else {}),
        },
    )
    if config.observer_segmentation:
        from harmonize.segmentation import observer_labels

        srng = np.random.default_rng(np.random.SeedSequence([int(seed), patient.index, 6, cycle]))
        observed = observer_labels(
            patient.labels, patient.vois, images[0], config.voxel_size_mm, srng
        )
        study["labels_observer"] = (("z", "y", "x"), observed, {"units": "1"})
    if config.motion_mm > 0:
        from harmonize.registration import move_study

        shifts = rng.uniform(-config.motion_mm, config.motion_mm, size=(times.size, 3))
        shifts[0] = 0.0  # the VOIs are drawn on the first time point
        study = move_study(study, shifts)
        study.attrs["phantom_motion_mm"] = float(config.motion_mm)
    return study, truth


def write_cohort(
    out_dir: str | os.PathLike[str],
    n_patients: int = 5,
    seed: int = 0,
    config: PhantomConfig | None = None,
    *,
    overwrite: bool = False,
    progress: bool = False,
    format: str = "bundle",
    workers: int = 1,
) -> Path:
    """Write a synthetic cohort: one study per patient-cycle plus ``truth.parquet``.

    Parameters
    ----------
    out_dir : path-like
        Destination folder (created). Existing bundles are not replaced unless ``overwrite``.
    n_patients : int
        Number of patients (≥ 1).
    seed : int
        Seed; the same seed and config always give identical files.
    config : PhantomConfig, optional
        Phantom parameters.
    overwrite : bool
        Replace existing files.
    progress : bool
        Show a progress bar (rich).
    format : {"bundle", "dicom"}
        One exchange bundle (``P001_C1.nc``) or one DICOM folder (``P001_C1/``: NM in
        BQML, CT, RTSTRUCT, SEG) per patient-cycle.
    workers : int
        Processes over patients (each patient's studies and truth are seeded by the patient
        and cycle alone, so the files do not depend on it). The processes are spawned: a
        script of your own that passes ``workers > 1`` must guard its top level with
        ``if __name__ == "__main__":`` (the CLI and notebooks need nothing).

    Returns
    -------
    pathlib.Path
        The cohort folder, readable with :func:`harmonize.open_cohort`.
    """
    if int(n_patients) < 1:
        raise ValueError(f"n_patients must be ≥ 1, got {n_patients}")
    if format not in ("bundle", "dicom"):
        raise ValueError(f"format must be 'bundle' or 'dicom', got {format!r}")
    suffix = ".nc" if format == "bundle" else ""
    config = config or PhantomConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    truth_path = out / TRUTH_FILE
    targets = [out / f"{_pid(i)}_C{c}{suffix}" for i in range(n_patients) for c in config.cycles]
    if not overwrite:
        existing = [p for p in [*targets, truth_path] if p.exists()]
        if existing:
            raise FileExistsError(
                f"{existing[0]} already exists ({len(existing)} cohort files in {out}); "
                "pass overwrite=True (CLI: --overwrite) to replace them"
            )
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    from harmonize._progress import progress_iter

    args = [(i, seed, config, out, format, overwrite) for i in range(n_patients)]
    per_patient: list[list[pd.DataFrame]]
    if workers == 1 or n_patients == 1:
        per_patient = [_write_patient(*a) for a in progress_iter(args, "phantom", enabled=progress)]
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn: a fresh interpreter per worker (no fork of a process holding threads)
        with ProcessPoolExecutor(
            max_workers=min(workers, n_patients), mp_context=multiprocessing.get_context("spawn")
        ) as pool:
            futures = [pool.submit(_write_patient, *a) for a in args]
            per_patient = [f.result() for f in progress_iter(futures, "phantom", enabled=progress)]
    truths = [t for tables in per_patient for t in tables]  # patient order, then cycle order
    table = pd.concat(truths, ignore_index=True)
    table.attrs = {}
    with atomic_path(truth_path, overwrite=overwrite) as tmp:
        meta = {
            "truth_definition": REFERENCE_DOSE_METHOD,
            "phantom_config": repr(asdict(config)),
            "seed": str(seed),
        }
        _write_truth(table, tmp, meta)
    return out


def _write_patient(
    index: int, seed: int, config: PhantomConfig, out: Path, format: str, overwrite: bool
) -> list[pd.DataFrame]:
    """Write one patient's imaged studies; return its truth tables in cycle order."""
    patient = make_patient(index, seed, config)
    truths = []
    for cycle in config.all_cycles:
        if cycle not in config.cycles:  # planned but not imaged: truth only
            truths.append(truth_table(patient, cycle, config).assign(imaged=False))
            continue
        study, truth = simulate_study(patient, cycle, seed, config)
        study.attrs["phantom_seed"] = int(seed)
        if format == "bundle":
            save_study(study, out / f"{patient.patient_id}_C{cycle}.nc", overwrite=overwrite)
        else:
            from harmonize.io import write_study_dicom

            write_study_dicom(study, out / f"{patient.patient_id}_C{cycle}", overwrite=overwrite)
        truths.append(truth.assign(imaged=True))
    return truths


def _pid(index: int) -> str:
    return f"P{index + 1:03d}"


def _write_truth(table: pd.DataFrame, path: Path, meta: dict[str, str]) -> None:
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    arrow = pa.Table.from_pandas(table, preserve_index=False)
    arrow = arrow.replace_schema_metadata(
        {"harmonize": json.dumps({"table": "truth", **meta}, sort_keys=True)}
    )
    pq.write_table(arrow, path, compression="zstd")

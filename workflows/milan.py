"""Milan-style workflow: two time points, sphere model, recovery-coefficient correction.

After LUTADOSE (Maccauro2024) and the Milan group's practice:

* two SPECT/CT scans, day 1 and day 7 (≈ 24 h and ≈ 168 h) after cycles 1 and 4 [pub];
* per VOI: mono-exponential through the two points, integrated from t = 0 with no uptake
  phase [inferred: the only option with two points]; physical decay when the VOI does not
  wash out;
* lesion activity corrected by a recovery coefficient RC(volume) [assumed: group practice];
  the curve comes from the centre's **calibration phantom** (NEMA IEC spheres imaged on the
  camera that imaged the patient):

  - ``rc_table="rc.csv"`` — the curve the centre **measured** on its own camera, a CSV file
    with the header ``volume_ml,rc`` and one sphere per line (volume in mL, RC
    dimensionless; ``#`` comment lines allowed; :func:`harmonize.pvc.read_rc_table`).
    Between the spheres RC is interpolated monotonically in log volume (PCHIP), outside
    them the smallest / largest sphere's RC is kept (:meth:`harmonize.pvc.RecoveryCurve.
    from_table`): give spheres that span the lesions' volumes (lesions outside them are
    warned about, :class:`~harmonize._warnings.RecoveryCurveRangeWarning`, and counted in
    the provenance). A non-empty ``rc_table`` means ``rc_source="table"`` (the default
    ``"calibration_phantom"`` then refers to the measured phantom; ``"table"`` may be
    written explicitly and needs a table; ``"gaussian_psf"`` with a table is refused). The
    file is read and validated when the adapter is built; the parameters record its name
    and SHA-256 (never its folder), the provenance also its points;
  - without a table, the curve of a **simulated** calibration phantom
    (:mod:`harmonize.imaging.nema`) imaged by a simulated camera profile: ``rc_profile``,
    by default the study's imaging profile when it records a shipped one, else the
    ``milan`` profile. It never sees the patient phantom's own resolution. A study that
    records no ``imaging_profile`` (real DICOM/NIfTI data) was acquired by no simulated
    camera: its lesion rows get the flag ``rc_simulated_camera`` and a
    :class:`~harmonize._warnings.SimulatedCalibrationWarning` is issued;
  - ``rc_source="gaussian_psf"`` restores the former curve simulated with a Gaussian PSF of
    ``rc_psf_fwhm_mm`` (an oracle on the ideal-scanner phantom, kept for comparison);
* dose by the sphere model: unit-density-sphere S-values as a function of mass, with the
  lesion mass from CT [assumed: group practice]; organs use the same model [assumed];
* patient index: global mean dose GTD = Σ Dᵢ mᵢ / Σ mᵢ over lesions [pub], cumulative
  GTD_TOT = 4 × (GTD₁ + GTD₄)/2 with cycles 2–3 interpolated [inferred].
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from harmonize import dose, kinetics, plausibility, pvc
from harmonize._warnings import RecoveryCurveRangeWarning, SimulatedCalibrationWarning
from harmonize.nuclides import MEV_TO_J, get_nuclide
from harmonize.study import voxel_size_mm, voxel_volume_ml
from harmonize.uncertainty import COMPONENTS, TiaRule, UncertaintyConfig
from harmonize.workflow import (
    WorkflowAdapter,
    WorkflowError,
    WorkflowResult,
    WorkflowTags,
    param,
    select_time_points,
)
from workflows import _common

if TYPE_CHECKING:
    import xarray as xr
else:
    from harmonize._lazy import lazy_module

    xr = lazy_module("xarray")

__all__ = ["RC_SIMULATED_CAMERA_FLAG", "MilanConfig", "MilanWorkflow"]


@dataclass(frozen=True)
class MilanConfig(UncertaintyConfig):
    """Parameters of the Milan-style workflow (each with its source)."""

    time_points_h: tuple[float, ...] = param(
        (24.0, 168.0), source="Maccauro2024", doc="imaging time points (day 1, day 7), h p.i."
    )
    time_tolerance_h: float = param(
        6.0,
        source="assumed",
        doc="largest distance between a wanted and an available time point, h",
    )
    imaged_cycles: tuple[int, ...] = param(
        (1, 4),
        source="Maccauro2024",
        doc="cycles with dosimetry; patient indices and GTD_TOT use only these (2-3 interpolated)",
    )
    recovery_correction: bool = param(
        True, source="assumed", doc="correct lesion activity by RC(volume)"
    )
    rc_source: str = param(
        "calibration_phantom",
        source="assumed",
        doc="'calibration_phantom' (NEMA IEC spheres on the centre's camera: the measured "
        "rc_table when given, else simulated), 'table' (rc_table, required) or 'gaussian_psf'",
        choices=("calibration_phantom", "table", "gaussian_psf"),
    )
    rc_table: str = param(
        "",
        source="assumed",
        doc="CSV file of the RC curve the centre measured on its camera (header volume_ml,rc; "
        "volume in mL, RC dimensionless); '' for none",
    )
    rc_profile: str = param(
        "study",
        source="assumed",
        doc="imaging profile of the calibration phantom; 'study': the one that imaged the study "
        "(the 'milan' profile when the study records none)",
    )
    rc_imaging_mode: str = param(
        "fast",
        source="assumed",
        doc="'fast' or 'full' simulation of the calibration phantom",
        choices=("fast", "full"),
    )
    rc_psf_fwhm_mm: float = param(
        11.0, source="assumed", doc="FWHM of the PSF of the 'gaussian_psf' RC curve, mm"
    )
    rc_min: float = param(
        0.2, source="assumed", doc="smallest recovery coefficient applied (bounds the correction)"
    )
    mass_from_ct: bool = param(True, source="assumed", doc="VOI mass from CT; else 1.04 g/mL")
    organ_includes_lesions: bool = param(
        False, source="assumed", doc="count lesion voxels inside an organ as organ"
    )
    sensitivity_cps_per_mbq: float = param(
        9.87,
        source="assumed",
        doc="camera sensitivity for the counting statistics, cps/MBq (Milan's is not in our "
        "sources; Bordet's value, Marin2017)",
    )
    segmentation: str = param(
        "given",
        source="assumed",
        doc="VOIs from the study's labels ('given') or its observer segmentation ('observer')",
        choices=tuple(_common.SEGMENTATION_SOURCES),
    )

    def __post_init__(self) -> None:
        """Read and validate ``rc_table`` now, so a bad file fails before any study."""
        measured: pvc.MeasuredRcTable | None = None
        if self.rc_table:
            if self.rc_source == "gaussian_psf":
                raise WorkflowError(
                    f"parameters 'rc_source' and 'rc_table': rc_source='gaussian_psf' takes no "
                    f"table, got rc_table={self.rc_table!r}; drop one of them"
                )
            try:
                measured = pvc.read_rc_table(self.rc_table)
            except pvc.RcTableError as exc:
                raise WorkflowError(f"parameter 'rc_table': {exc}") from None
        elif self.rc_source == "table":
            raise WorkflowError(
                "parameter 'rc_source': 'table' needs rc_table=FILE.csv (columns volume_ml,rc)"
            )
        # not a field (so not in ==, hash or asdict): recorded by to_dict() as file name and
        # SHA-256; it travels with the config when pickled to worker processes (its __dict__)
        object.__setattr__(self, "_measured_rc", measured)

    @property
    def measured_rc(self) -> pvc.MeasuredRcTable | None:
        """The measured RC table read from ``rc_table`` (None without one)."""
        measured: pvc.MeasuredRcTable | None = self.__dict__.get("_measured_rc")
        return measured

    @property
    def rc_curve_source(self) -> str:
        """The RC curve actually applied: 'table' whenever ``rc_table`` is given."""
        return "table" if self.rc_table else self.rc_source

    def to_dict(self) -> dict[str, Any]:
        """Parameters as recorded: ``rc_source`` as applied, ``rc_table`` as file name and hash.

        The recorded ``rc_table`` is ``{"file": name, "sha256": hex}`` — never the path,
        which may name a person — so a run folder's parameter check
        (:func:`harmonize.runfolder.check_folder`) sees a changed table even at the same path.
        Without a table ``rc_table`` is not recorded at all: such results are byte-identical
        to those written before the parameter existed, and their run folders stay valid.
        """
        out = super().to_dict()
        out["rc_source"] = self.rc_curve_source
        measured = self.measured_rc
        if measured is not None:
            out["rc_table"] = {"file": measured.file_name, "sha256": measured.sha256}
        else:
            del out["rc_table"]
        return out

    def sources(self) -> dict[str, str]:
        """Parameter name → source key, for the parameters :meth:`to_dict` records."""
        out = super().sources()
        if not self.rc_table:
            del out["rc_table"]
        return out


#: Mass range of the sphere model (harmonize.dose.sphere_s_value), g.
SPHERE_MASS_RANGE_G = (0.1, 1000.0)
#: Flag of lesion rows corrected with a simulated camera's RC curve on real data.
RC_SIMULATED_CAMERA_FLAG = "rc_simulated_camera"


@functools.lru_cache(maxsize=16)
def _rc_curve(fwhm_mm: float, voxel_size: tuple[float, float, float]) -> pvc.RecoveryCurve:
    """RC(volume) simulated for spheres of 0.3–1000 mL (cached per PSF and grid)."""
    return pvc.recovery_curve_from_psf(fwhm_mm, voxel_size, np.geomspace(0.3, 1000.0, 14))


class MilanWorkflow(WorkflowAdapter):
    """Two-point mono-exponential, RC-corrected lesion activity, sphere-model dose."""

    name = "milan"
    center = "Fondazione IRCCS Istituto Nazionale dei Tumori, Milan"
    version = "1.0.0"
    description = (
        "2 time points (24 h, 168 h), mono-exponential from t=0, RC correction, sphere model"
    )
    references = ("Maccauro2024",)
    url = ""  # Maccauro2024: Eur J Nucl Med Mol Imaging 2024;52:291-304 (DOI not in our sources)
    tags = WorkflowTags(
        voxel_level=False,
        needs_ct=False,
        min_time_points=2,
        voxel_dose_indices=False,
        truth_tolerance=0.30,
        truth_min_volume_ml=20.0,
    )
    cumulative_rule = "milan_interpolated"
    #: Uncertainty components of the method (all of the chain: RC-corrected, sphere model).
    uncertainty_components = COMPONENTS
    Config = MilanConfig
    config: MilanConfig

    def __init__(self, config: MilanConfig | None = None, /, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        measured = self.config.measured_rc
        if "rc_table" in self.overrides and measured is not None:
            # recorded like the parameter: file name and hash, not the path
            self.overrides["rc_table"] = {"file": measured.file_name, "sha256": measured.sha256}

    def _curve(self, study: xr.Dataset) -> pvc.RecoveryCurve:
        cfg = self.config
        source = cfg.rc_curve_source
        if source == "table":
            assert cfg.measured_rc is not None  # MilanConfig reads it whenever rc_table is set
            return cfg.measured_rc.curve
        if source == "gaussian_psf":
            return _rc_curve(cfg.rc_psf_fwhm_mm, voxel_size_mm(study))
        from harmonize.imaging.nema import recovery_curve

        profile, mode, side = self._calibration(study)
        return recovery_curve(profile, side, mode)

    def calibration_phantom(self, study: xr.Dataset) -> tuple[str, str, float] | None:
        """(profile, mode, voxel side mm) of the simulated calibration phantom whose RC curve
        this study gets, or None when none is applied (no correction, a measured
        ``rc_table`` or the Gaussian PSF; the runner records it: :mod:`harmonize.calibration`)."""
        cfg = self.config
        if not cfg.recovery_correction or cfg.rc_curve_source != "calibration_phantom":
            return None
        return self._calibration(study)

    @staticmethod
    def _outside_table(measured: pvc.MeasuredRcTable, lesion_volume_ml: np.ndarray) -> int:
        """Lesions outside the table's sphere volumes (warned: they get an end value's RC)."""
        lo, hi = float(measured.curve.volumes_ml[0]), float(measured.curve.volumes_ml[-1])
        outside = int(np.count_nonzero((lesion_volume_ml < lo) | (lesion_volume_ml > hi)))
        if outside:
            warnings.warn(
                f"milan: lesions outside the spheres of the RC table {measured.file_name} "
                f"({lo:g}-{hi:g} mL) get the smallest or largest sphere's RC; one larger than "
                "the largest sphere is over-corrected where the camera's curve still rises. "
                "Measure spheres that span the lesions' volumes (the count per study is in "
                "the provenance, rc_table.lesions_outside_range)",
                RecoveryCurveRangeWarning,
                stacklevel=4,
            )
        return outside

    def _simulated_camera_on_real_data(self, study: xr.Dataset) -> bool:
        """True when a simulated calibration phantom's curve meets a study no simulated camera
        imaged: the study records no ``imaging_profile`` (real DICOM/NIfTI data)."""
        return self.calibration_phantom(study) is not None and not study.attrs.get(
            "imaging_profile"
        )

    def _calibration(self, study: xr.Dataset) -> tuple[str, str, float]:
        cfg = self.config
        from harmonize.imaging import available_profiles

        profile = cfg.rc_profile
        if profile == "study":
            recorded = str(study.attrs.get("imaging_profile", ""))
            profile = recorded if recorded in available_profiles() else "milan"
        # the calibration phantom is imaged at the study's (mean) voxel size
        side = float(np.prod(voxel_size_mm(study)) ** (1.0 / 3.0))
        return profile, cfg.rc_imaging_mode, round(side, 4)

    def _run(self, study: xr.Dataset) -> WorkflowResult:
        cfg = self.config
        index = select_time_points(study, cfg.time_points_h, cfg.time_tolerance_h)
        times = np.asarray(study["time"].values[index], dtype=np.float64)
        nuclide = str(study.attrs["radionuclide"])
        regions = _common.regions(study, cfg.organ_includes_lesions, cfg.segmentation)
        frames = _common.frames_mbq(study, index)
        measured = regions.sums(frames).T  # (n_voi, t) MBq
        volume_ml = regions.voxel_counts() * voxel_volume_ml(study)
        is_lesion = (regions.table["kind"] == "lesion").to_numpy()

        rc = np.ones(regions.ids.size)
        curve = None
        provenance: dict[str, Any] = {}
        simulated_on_real = False
        if cfg.recovery_correction and is_lesion.any():
            curve = self._curve(study)
            provenance["rc_curve"] = curve.source + (
                f"; fitted {curve.params}" if curve.params else ""
            )
            if cfg.measured_rc is not None:
                provenance["rc_table"] = cfg.measured_rc.record()
                outside = self._outside_table(cfg.measured_rc, volume_ml[is_lesion])
                provenance["rc_table"]["lesions_outside_range"] = outside
            simulated_on_real = self._simulated_camera_on_real_data(study)
            if simulated_on_real:
                profile = self._calibration(study)[0]
                provenance["rc_curve"] += (
                    f"; simulated camera {profile!r}, not the camera that acquired the study "
                    "(it records no imaging profile)"
                )
                warnings.warn(
                    f"milan: a study that records no imaging profile (real data) is corrected "
                    f"with the recovery curve of the simulated {profile!r} camera's calibration "
                    "phantom, not one measured on the camera that acquired it; its lesion rows "
                    f"are flagged {RC_SIMULATED_CAMERA_FLAG!r}. Give the centre's measured curve: "
                    "--set milan.rc_table=FILE.csv (columns volume_ml,rc)",
                    SimulatedCalibrationWarning,
                    stacklevel=3,
                )
            rc[is_lesion] = np.maximum(curve(volume_ml[is_lesion]), cfg.rc_min)
        corrected = measured / rc[:, None]

        n = regions.ids.size
        tia = np.empty(n)
        fitted = np.empty_like(corrected)
        flags: list[str] = []
        for i in range(n):
            try:
                fit = kinetics.fit_tac(times, corrected[i], model="monoexp", nuclide=nuclide)
            except kinetics.KineticsError as exc:
                raise _common.fit_error(regions, i, exc) from None
            tia[i] = fit.tia
            fitted[i] = fit.predict(times)
            flags.append(";".join(fit.flags))

        density = _common.density_map_g_ml(study, cfg.mass_from_ct)
        flags = [
            plausibility.join_flags(f, g)
            for f, g in zip(flags, _common.density_flags(study, cfg.mass_from_ct), strict=True)
        ]
        mass = regions.sums(density * voxel_volume_ml(study))
        # the sphere model is validated for 0.1 g – 1 kg; heavier VOIs (body, a large liver)
        # get the large-sphere limit, local deposition of the electron energy [assumed]
        in_range = (mass >= SPHERE_MASS_RANGE_G[0]) & (mass <= SPHERE_MASS_RANGE_G[1])
        dose_gy = np.empty(n)
        dose_gy[in_range] = dose.sphere_dose(tia[in_range], mass[in_range], nuclide=nuclide)
        electron_j = get_nuclide(nuclide).electron_energy_mev * MEV_TO_J
        dose_gy[~in_range] = tia[~in_range] * 3.6e9 * electron_j / (mass[~in_range] * 1e-3)
        for k in np.flatnonzero(~in_range):
            flags[k] = ";".join(f for f in (flags[k], "ldm_outside_sphere_model_range") if f)
        if simulated_on_real:
            for k in np.flatnonzero(is_lesion):
                flags[k] = plausibility.join_flags(flags[k], RC_SIMULATED_CAMERA_FLAG)
        # ∂ln S/∂ln m: the sphere model's own slope; -1 for the local-deposition limit
        s_slope = np.full(n, -1.0)
        if in_range.any():
            step = 1e-3
            m_in = mass[in_range]
            hi = dose.sphere_s_value(m_in * (1 + step), nuclide=nuclide)
            lo = dose.sphere_s_value(m_in * (1 - step), nuclide=nuclide)
            s_slope[in_range] = np.log(hi / lo) / (np.log1p(step) - np.log1p(-step))
        dose_u, tia_u, budget, chain = _common.voi_uncertainty(
            study,
            regions,
            cfg,
            times_h=times,
            measured_mbq=measured,
            rule=TiaRule("monoexp_from_zero"),
            tia_mbq_h=tia,
            dose_gy=dose_gy,
            activity_map=frames[0],
            dose_mass_slope=s_slope,
            components=self.uncertainty_components,
            recovery_curve=curve,
            rc_min=cfg.rc_min,
            rc_applied=is_lesion & cfg.recovery_correction,
        )
        voi_dose = _common.voi_dose_frame(
            study,
            regions,
            tia_mbq_h=tia,
            mass_g=mass,
            dose_mean_gy=dose_gy,
            tac_model="monoexp_2pt_from_0",
            n_time_points=times.size,
            recovery_coefficient=rc,
            flags=flags,
            dose_mean_u_gy=dose_u,
            tia_u_mbq_h=tia_u,
        )
        tac = _common.tac_rows(
            regions,
            times,
            corrected,
            fitted,
            recovery_corrected=is_lesion & cfg.recovery_correction,
        )
        return WorkflowResult(
            voi_dose=voi_dose,
            tac=tac,
            provenance=provenance,
            dose_map_gy=None,
            uncertainty=budget,
            uncertainty_chain=chain,
        )

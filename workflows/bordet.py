"""Bordet-style workflow: VOI-level mono-exponential kinetics and kernel convolution.

After the LUMEN study (Mileva2024) and the Bordet quantification work (Marin2017); the
imaging schedule and the kinetic model were not found in our sources and are "assumed":

* lesion-by-lesion analysis, dosimetry after every cycle [pub: Mileva2024 trial design;
  inferred];
* SPECT/CT at 24, 72 and 168 h p.i. [assumed];
* per VOI: mono-exponential least-squares fit over all time points; from 0 to the first
  point a trapezoid (linear from zero) [assumed];
* a TIA map: each voxel's activity at the reference (first) time point scaled by its VOI's
  TIA / activity ratio (voxels outside every VOI use the body's ratio) [assumed];
* dose by convolution of the TIA map with the Lanconelli 2012 Lu-177 soft-tissue voxel
  S-value kernel, density-scaled with CT [assumed];
* lesion dose = mean of the dose map over the lesion VOI, with its voxel dose indices and
  cumulative DVH (``dvh`` table); the patient index is the
  minimum over target lesions after cycle 1 (the 35 Gy rule, Mileva2024).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from harmonize import dose, kinetics, plausibility
from harmonize.kinetics import HEAD_RULES, WEIGHTINGS
from harmonize.study import voxel_size_mm, voxel_volume_ml
from harmonize.uncertainty import COMPONENTS, TiaRule, UncertaintyConfig
from harmonize.workflow import (
    WorkflowAdapter,
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

__all__ = ["BordetConfig", "BordetWorkflow"]


@dataclass(frozen=True)
class BordetConfig(UncertaintyConfig):
    """Parameters of the Bordet-style workflow (each with its source)."""

    time_points_h: tuple[float, ...] = param(
        (24.0, 72.0, 168.0), source="assumed", doc="imaging time points, h p.i."
    )
    time_tolerance_h: float = param(
        6.0,
        source="assumed",
        doc="largest distance between a wanted and an available time point, h",
    )
    weighting: str = param(
        "none",
        source="assumed",
        doc="least-squares weighting of the VOI fit",
        choices=WEIGHTINGS,
    )
    head: str = param(
        "linear_from_zero",
        source="assumed",
        doc="integration rule from t=0 to the first point",
        choices=HEAD_RULES,
    )
    density_from_ct: bool = param(
        True, source="assumed", doc="density scaling of the kernel dose from CT; else 1.04 g/mL"
    )
    organ_includes_lesions: bool = param(
        False, source="assumed", doc="count lesion voxels inside an organ as organ"
    )
    segmentation: str = param(
        "given",
        source="assumed",
        doc="VOIs from the study's labels ('given') or its observer segmentation ('observer')",
        choices=tuple(_common.SEGMENTATION_SOURCES),
    )
    medium: str = param(
        "soft_tissue", source="Lanconelli2012", doc="kernel medium", choices=("soft_tissue", "bone")
    )


class BordetWorkflow(WorkflowAdapter):
    """VOI-level mono-exponential fit, voxel S-value kernel convolution."""

    name = "bordet"
    center = "Institut Jules Bordet"
    version = "1.0.0"
    description = "VOI-level mono-exponential (3 time points), dose-voxel-kernel convolution"
    references = ("Mileva2024", "Marin2017", "Lanconelli2012")
    url = ""  # Mileva2024: J Nucl Med 2024;65:236-244 (DOI not in our sources)
    tags = WorkflowTags(
        voxel_level=False,
        needs_ct=False,
        min_time_points=3,
        voxel_dose_indices=True,
        truth_tolerance=0.25,
        truth_min_volume_ml=20.0,
    )
    # Bordet (LUMEN) performed dosimetry after every cycle; a cycle missing from
    # the data is linearly interpolated between its measured neighbours, a missing first or
    # last cycle leaves the total incomplete [assumed] (harmonize.indices.patient_index)
    cumulative_rule = "sum_interpolated"
    #: Uncertainty components of the method (no recovery correction).
    uncertainty_components = tuple(c for c in COMPONENTS if c != "recovery")
    Config = BordetConfig
    config: BordetConfig

    def _run(self, study: xr.Dataset) -> WorkflowResult:
        cfg = self.config
        index = select_time_points(study, cfg.time_points_h, cfg.time_tolerance_h)
        times = np.asarray(study["time"].values[index], dtype=np.float64)
        nuclide = str(study.attrs["radionuclide"])
        regions = _common.regions(study, cfg.organ_includes_lesions, cfg.segmentation)
        frames = _common.frames_mbq(study, index)
        tac = regions.sums(frames).T  # (n_voi, t) MBq

        n = regions.ids.size
        tia = np.empty(n)
        fitted = np.empty_like(tac)
        r2 = np.full(n, np.nan)
        aicc = np.full(n, np.nan)
        flags: list[str] = []
        for i in range(n):
            try:
                fit = kinetics.fit_tac(
                    times, tac[i], model="monoexp", weighting=cfg.weighting, nuclide=nuclide
                )
            except kinetics.KineticsError as exc:
                raise _common.fit_error(regions, i, exc) from None
            head = _head_area(times[0], tac[i, 0], cfg.head)
            tia[i] = head + fit.integrate(times[0], np.inf)
            fitted[i] = fit.predict(times)
            r2[i], aicc[i] = fit.r2, fit.aicc
            flags.append(";".join(fit.flags))

        # TIA map: the reference frame scaled VOI by VOI (outside every VOI: the body's ratio)
        reference = frames[0]
        ratio = tia / np.where(tac[:, 0] > 0, tac[:, 0], np.inf)
        lut = np.zeros(regions.size)
        lut[regions.ids] = ratio
        body_ids = regions.table.loc[regions.table["kind"] == "body", "voi_id"].to_numpy()
        lut[0] = lut[body_ids[0]] if body_ids.size else 0.0
        tia_map = reference * lut[regions.labels]

        density = _common.density_map_g_ml(study, cfg.density_from_ct)
        flags = [
            plausibility.join_flags(f, g)
            for f, g in zip(flags, _common.density_flags(study, cfg.density_from_ct), strict=True)
        ]
        dose_map = dose.convolve_kernel(
            tia_map,
            voxel_size_mm(study),
            nuclide=nuclide,
            medium=cfg.medium,
            density_g_ml=density,
        )
        mass_map = density * voxel_volume_ml(study)
        voxel_indices = regions.dose_indices(dose_map, mass_map)
        dose_mean = voxel_indices.reindex(regions.ids)["dose_mean_gy"].to_numpy()
        dose_u, tia_u, budget, chain = _common.voi_uncertainty(
            study,
            regions,
            cfg,
            times_h=times,
            measured_mbq=tac,
            rule=TiaRule("monoexp_head", head=cfg.head),
            tia_mbq_h=tia,
            dose_gy=dose_mean,
            activity_map=reference,
            # electron kernel dose scales as 1/density (photons, ≈ 1/5 of the lesion
            # dose for the largest lesions, scale less: an approximation)
            dose_mass_slope=np.full(n, -1.0),
            components=self.uncertainty_components,
        )
        voi_dose = _common.voi_dose_frame(
            study,
            regions,
            tia_mbq_h=tia,
            mass_g=regions.sums(mass_map),
            dose_mean_gy=dose_mean,
            tac_model="monoexp+trapezoid_head",
            n_time_points=times.size,
            voxel_indices=voxel_indices,
            fit_r2=r2,
            fit_aicc=aicc,
            flags=flags,
            dose_mean_u_gy=dose_u,
            tia_u_mbq_h=tia_u,
        )
        tac_table = _common.tac_rows(regions, times, tac, fitted)
        return WorkflowResult(
            voi_dose=voi_dose,
            tac=tac_table,
            provenance={},
            dose_map_gy=dose_map,
            dvh=regions.dvh(dose_map),
            uncertainty=budget,
            uncertainty_chain=chain,
        )


def _head_area(t0_h: float, a0: float, rule: str) -> float:
    """Area from 0 to the first time point (MBq·h)."""
    if rule == "linear_from_zero":
        return 0.5 * a0 * t0_h
    if rule == "constant":
        return a0 * t0_h
    if rule == "none":
        return 0.0
    raise ValueError(f"head: expected 'linear_from_zero', 'constant' or 'none', got {rule!r}")

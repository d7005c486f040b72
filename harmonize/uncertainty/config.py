"""The parameters every adapter declares for its uncertainty budget (a config base class).

Adapter configs subclass :class:`UncertaintyConfig` (instead of
:class:`~harmonize.workflow.WorkflowConfig`) and redefine the fields whose value or source
differs for their method. Every value not taken from a publication is marked "assumed";
the EANM guidance (Gear2018: Gear JD et al., EANM practical guidance on uncertainty analysis
for molecular radiotherapy absorbed dose calculations, Eur J Nucl Med Mol Imaging
2018;45:2456–2474) gives the method, not numbers that transfer to another centre's camera.
"""

from __future__ import annotations

from dataclasses import dataclass

from harmonize.uncertainty.chain import ComponentValues
from harmonize.workflow import WorkflowConfig, param

__all__ = ["UncertaintyConfig"]


@dataclass(frozen=True)
class UncertaintyConfig(WorkflowConfig):
    """Uncertainty inputs of a workflow (each with its source)."""

    uncertainty: bool = param(
        True,
        source="Gear2018",
        doc="compute the per-VOI uncertainty budget (analytic GUM propagation, k = 1)",
    )
    sensitivity_cps_per_mbq: float = param(
        9.87,
        source="Marin2017",
        doc="camera sensitivity that sets the Poisson counts of a VOI, cps/MBq",
    )
    acquisition_s: float = param(
        1200.0, source="assumed", doc="acquisition time per time point (counting statistics), s"
    )
    calibration_u_rel: float = param(
        0.03, source="assumed", doc="relative standard uncertainty of the calibration factor Q"
    )
    boundary_u_mm: float = param(
        2.4,
        source="assumed",
        doc="standard uncertainty of a VOI boundary position (segmentation), mm",
    )
    density_u_rel: float = param(
        0.02, source="assumed", doc="relative standard uncertainty of the mass density"
    )
    dose_factor_u_rel: float = param(
        0.03,
        source="assumed",
        doc="relative standard uncertainty of the dose factor (S-value, kernel or LDM)",
    )
    rc_curve_u_rel: float = param(
        0.05,
        source="assumed",
        doc="relative standard uncertainty of the recovery curve at a given volume",
    )

    def component_values(self) -> ComponentValues:
        """The declared Type B values."""
        return ComponentValues(
            calibration_u_rel=self.calibration_u_rel,
            rc_curve_u_rel=self.rc_curve_u_rel,
            density_u_rel=self.density_u_rel,
            dose_factor_u_rel=self.dose_factor_u_rel,
        )

    @property
    def counts_per_mbq(self) -> float:
        """Detected counts per MBq during one acquisition."""
        return self.sensitivity_cps_per_mbq * self.acquisition_s

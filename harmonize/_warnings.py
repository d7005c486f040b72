"""Warning classes of harmonize (our own warnings are errors in the test suite)."""

__all__ = ["HarmonizeWarning", "RecoveryCurveRangeWarning", "SimulatedCalibrationWarning"]


class HarmonizeWarning(UserWarning):
    """Base class of every warning harmonize emits."""


class SimulatedCalibrationWarning(HarmonizeWarning):
    """A correction used a simulated camera's calibration on a study that camera did not image.

    E.g. the Milan-style adapter's recovery curve from a simulated calibration phantom
    applied to real data (a study that records no ``imaging_profile``); the rows carry the
    flag ``rc_simulated_camera``.
    """


class RecoveryCurveRangeWarning(HarmonizeWarning):
    """Lesions lie outside the volumes of a measured recovery-curve table.

    Outside its spheres a table keeps the end values
    (:meth:`harmonize.pvc.RecoveryCurve.from_table`): a lesion larger than the largest
    sphere gets that sphere's RC, an over-correction where the true curve still rises.
    """

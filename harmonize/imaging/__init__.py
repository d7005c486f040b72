"""SPECT imaging chains per centre profile, the NEMA calibration phantom, the fast mode.

* :mod:`~harmonize.imaging.profile` — a centre's camera, acquisition and reconstruction as
  data (``profiles/*.json``, each value with its source or "assumed");
* :mod:`~harmonize.imaging.projector`, :mod:`~harmonize.imaging.osem` — the full
  simulation: rotation-based projection with attenuation and distance-dependent
  collimator–detector response, scatter, Poisson noise on projections, OSEM;
* :mod:`~harmonize.imaging.fast` — the fast parametric mode calibrated on the full one;
* :mod:`~harmonize.imaging.nema` — the NEMA IEC body phantom through a chain → RC curve
  and calibration factor of that centre.
"""

from harmonize.imaging.chain import IMAGING_MODES, image_activity
from harmonize.imaging.profile import (
    CentreProfile,
    FastModeParameters,
    ProfileError,
    available_profiles,
    load_profile,
)

__all__ = [
    "IMAGING_MODES",
    "CentreProfile",
    "FastModeParameters",
    "ProfileError",
    "available_profiles",
    "image_activity",
    "load_profile",
]

"""One entry point for imaging: true activity frames → a centre profile's images."""

from __future__ import annotations

import numpy as np

from harmonize.imaging.fast import fast_image
from harmonize.imaging.osem import full_chain_image
from harmonize.imaging.profile import CentreProfile
from harmonize.imaging.projector import SpectSystem, attenuation_map_per_mm

__all__ = ["IMAGING_MODES", "image_activity"]

#: ``"full"``: projection, Poisson noise, OSEM; ``"fast"``: the calibrated parametric mode.
IMAGING_MODES = ("fast", "full")


def image_activity(
    concentration_bq_ml: np.ndarray,
    density_g_ml: np.ndarray,
    voxel_size_mm: float,
    profile: CentreProfile,
    mode: str,
    rng: np.random.Generator | None,
) -> np.ndarray:
    """Image each frame ``(t, z, y, x)`` of true concentration (Bq/mL) → Bq/mL, float32.

    ``rng=None`` gives noise-free images. The frames are independent acquisitions (each
    draws its own noise from ``rng`` in order).
    """
    frames = np.asarray(concentration_bq_ml)
    if frames.ndim != 4:
        raise ValueError(f"concentration must be (t, z, y, x), got shape {frames.shape}")
    out = np.empty(frames.shape, dtype=np.float32)
    if mode == "fast":
        for i, frame in enumerate(frames):
            out[i] = fast_image(frame, voxel_size_mm, profile, rng)
        return out
    if mode != "full":
        raise ValueError(f"imaging mode must be one of {IMAGING_MODES}, got {mode!r}")
    mu = attenuation_map_per_mm(density_g_ml, profile.photopeak_kev)
    system = SpectSystem(profile, mu, voxel_size_mm, resolution=True)
    for i, frame in enumerate(frames):
        out[i] = full_chain_image(frame, density_g_ml, voxel_size_mm, profile, rng, system=system)
    return out

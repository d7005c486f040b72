"""Centre imaging profiles: a camera, its acquisition and its reconstruction, as data.

A profile is a JSON file (``harmonize/imaging/profiles/<name>.json`` or any path) whose
``fields`` each hold ``{"value": ..., "source": ...}`` — the source is a publication key or
the word "assumed". The optional ``fast`` block holds the parameters of the fast parametric
mode (effective resolution, noise gain, noise correlation) *measured* by running the full
simulation (``benchmarks/bench_imaging.py``); it is written by that benchmark, never by hand.
"""

from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = [
    "CentreProfile",
    "FastModeParameters",
    "ProfileError",
    "available_profiles",
    "load_profile",
]

_REQUIRED = {
    "camera": str,
    "collimator": str,
    "photopeak_kev": float,
    "system_sensitivity_cps_per_mbq": float,
    "n_views": int,
    "s_per_view": float,
    "orbit_radius_mm": float,
    "intrinsic_fwhm_mm": float,
    "collimator_fwhm_at_0_mm": float,
    "collimator_fwhm_per_mm": float,
    "scatter_fraction": float,
    "scatter_fwhm_mm": float,
    "iterations": int,
    "subsets": int,
    "resolution_modelling": bool,
    "post_filter_fwhm_mm": float,
}


class ProfileError(ValueError):
    """A centre profile file is missing, malformed or holds an invalid value."""


@dataclass(frozen=True)
class FastModeParameters:
    """Fast parametric mode of one profile, measured on the full simulation.

    Attributes
    ----------
    effective_fwhm_mm : float
        FWHM of the core of the effective point-spread function (isotropic Gaussian).
    tail_fwhm_mm, tail_fraction : float
        A second, wider Gaussian carrying ``tail_fraction`` of the counts (a halo); 0 for
        a single Gaussian.
    rl_iterations : int
        Richardson–Lucy iterations that deconvolve the core Gaussian (profiles with
        resolution modelling; 0: none). See :mod:`harmonize.imaging.fast`; the resolution
        parameters are fitted to the full chain's six NEMA sphere RCs.
    noise_gain : float
        ``g`` in ``CoV² = g / N``, N = expected counts per voxel from that voxel's
        activity over the whole acquisition.
    noise_correlation_fwhm_mm : float
        FWHM of the Gaussian autocorrelation of the reconstructed noise.
    voxel_size_mm : float
        Voxel size the calibration was measured at.
    source : str
        How and when it was measured.
    """

    effective_fwhm_mm: float
    noise_gain: float
    noise_correlation_fwhm_mm: float
    voxel_size_mm: float
    source: str
    tail_fwhm_mm: float = 0.0
    tail_fraction: float = 0.0
    rl_iterations: int = 0
    radius_dependent: bool = False


@dataclass(frozen=True)
class CentreProfile:
    """One centre's SPECT camera, acquisition and reconstruction (see module docstring)."""

    name: str
    centre: str
    camera: str
    collimator: str
    photopeak_kev: float
    system_sensitivity_cps_per_mbq: float
    n_views: int
    s_per_view: float
    orbit_radius_mm: float
    intrinsic_fwhm_mm: float
    collimator_fwhm_at_0_mm: float
    collimator_fwhm_per_mm: float
    scatter_fraction: float
    scatter_fwhm_mm: float
    iterations: int
    subsets: int
    resolution_modelling: bool
    post_filter_fwhm_mm: float
    sources: dict[str, str] = field(default_factory=dict)
    fast: FastModeParameters | None = None

    @property
    def acquisition_s(self) -> float:
        """Total time the camera looks at the patient (all views), s."""
        return self.n_views * self.s_per_view

    def system_fwhm_mm(self, distance_mm: Any) -> Any:
        """Collimator–detector FWHM at ``distance_mm`` from the collimator face, mm."""
        geometric = self.collimator_fwhm_at_0_mm + self.collimator_fwhm_per_mm * distance_mm
        return (self.intrinsic_fwhm_mm**2 + geometric**2) ** 0.5

    def require_fast(self) -> FastModeParameters:
        """The fast-mode parameters, or a clear error if the profile was never calibrated."""
        if self.fast is None:
            raise ProfileError(
                f"profile {self.name!r} has no 'fast' block: run benchmarks/bench_imaging.py "
                "--calibrate to measure it with the full simulation, or use mode='full'"
            )
        return self.fast


def available_profiles() -> list[str]:
    """Names of the profiles shipped with harmonize."""
    folder = resources.files("harmonize.imaging.profiles")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def _convert(path: str, key: str, value: Any, kind: type) -> Any:
    if kind is bool:
        if not isinstance(value, bool):
            raise ProfileError(f"{path}: field {key!r} must be true or false, got {value!r}")
        return value
    if kind is str:
        if not isinstance(value, str) or not value:
            raise ProfileError(f"{path}: field {key!r} must be a non-empty string")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProfileError(f"{path}: field {key!r} must be a number, got {value!r}")
    if kind is int and int(value) != value:
        raise ProfileError(f"{path}: field {key!r} must be an integer, got {value!r}")
    number = kind(value)
    if not math.isfinite(number) or number < 0:
        raise ProfileError(f"{path}: field {key!r} must be finite and ≥ 0, got {value!r}")
    return number


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"rl_iterations must be an integer, got {value!r}")
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"radius_dependent must be true or false, got {value!r}")
    return value


def _parse(text: str, where: str) -> CentreProfile:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProfileError(f"{where}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("fields"), dict):
        raise ProfileError(f"{where}: expected an object with 'name', 'centre' and 'fields'")
    fields = data["fields"]
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key, kind in _REQUIRED.items():
        entry = fields.get(key)
        if not isinstance(entry, dict) or "value" not in entry or "source" not in entry:
            raise ProfileError(f"{where}: field {key!r} missing or without 'value' and 'source'")
        if not str(entry["source"]).strip():
            raise ProfileError(f"{where}: field {key!r} has an empty source (use 'assumed')")
        values[key] = _convert(where, key, entry["value"], kind)
        sources[key] = str(entry["source"])
    unknown = set(fields) - set(_REQUIRED)
    if unknown:
        raise ProfileError(f"{where}: unknown field(s) {sorted(unknown)}")
    for key in ("n_views", "subsets", "iterations", "system_sensitivity_cps_per_mbq"):
        if values[key] <= 0:
            raise ProfileError(f"{where}: field {key!r} must be > 0")
    if values["n_views"] % values["subsets"]:
        raise ProfileError(
            f"{where}: n_views ({values['n_views']}) must be a multiple of subsets "
            f"({values['subsets']})"
        )
    if values["scatter_fraction"] >= 1:
        raise ProfileError(f"{where}: scatter_fraction must be < 1")
    fast = None
    if "fast" in data:
        f = data["fast"]
        try:
            fast = FastModeParameters(
                effective_fwhm_mm=float(f["effective_fwhm_mm"]),
                noise_gain=float(f["noise_gain"]),
                noise_correlation_fwhm_mm=float(f["noise_correlation_fwhm_mm"]),
                voxel_size_mm=float(f["voxel_size_mm"]),
                source=str(f["source"]),
                tail_fwhm_mm=float(f.get("tail_fwhm_mm", 0.0)),
                tail_fraction=float(f.get("tail_fraction", 0.0)),
                rl_iterations=_count(f.get("rl_iterations", 0)),
                radius_dependent=_flag(f.get("radius_dependent", False)),
            )
            if not 0.0 <= fast.tail_fraction < 1.0:
                raise ValueError("tail_fraction must lie in [0, 1)")
            if fast.rl_iterations < 0:
                raise ValueError("rl_iterations must be ≥ 0")
            if fast.radius_dependent and fast.tail_fraction != 0:
                raise ValueError("a radius-dependent fast mode has no tail (tail_fraction 0)")
        except (KeyError, TypeError, ValueError) as exc:
            raise ProfileError(f"{where}: malformed 'fast' block ({exc})") from exc
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ProfileError(f"{where}: 'name' must be a non-empty string")
    return CentreProfile(
        name=name, centre=str(data.get("centre", "")), sources=sources, fast=fast, **values
    )


@functools.cache
def _shipped(name: str) -> CentreProfile:
    res = resources.files("harmonize.imaging.profiles").joinpath(f"{name}.json")
    return _parse(res.read_text(encoding="utf-8"), f"profile {name!r} ({name}.json)")


def load_profile(name_or_path: str | os.PathLike[str]) -> CentreProfile:
    """A shipped profile by name (``"bordet"``) or a profile JSON file by path."""
    text = str(name_or_path)
    if text in available_profiles():
        return _shipped(text)
    path = Path(text)
    if path.suffix == ".json" and path.is_file():
        return _parse(path.read_text(encoding="utf-8"), str(path))
    raise ProfileError(
        f"unknown imaging profile {text!r}: shipped profiles are {available_profiles()}, "
        "or give the path of a profile .json file"
    )

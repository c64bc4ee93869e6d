"""Observation-noise models: white Gaussian and AR(1).

``sigma`` is always the *marginal* (stationary) standard deviation of the added noise in the signal's
unit (mV for voltage), so "1 mV noise" means the same under both models. For AR(1),
``η_i = ρ η_{i−1} + ε_i`` with innovation standard deviation ``sigma·sqrt(1 − ρ²)``, started from the
stationary distribution.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

from .errors import ConfigurationError
from .units import parse_quantity

__all__ = ["NoiseModel", "WhiteNoise", "AR1Noise", "parse_noise", "assumed_noise", "ar1_negloglik", "fit_ar1"]


@dataclass(frozen=True)
class NoiseModel:
    """Base of observation-noise models."""

    sigma: float = 0.0

    def sample(self, shape, rng: np.random.Generator) -> np.ndarray:
        """Draw noise of ``shape`` (time on the last axis), in the signal's unit."""
        raise NotImplementedError

    def add_to(self, x: np.ndarray, rng: np.random.Generator | int | None = None) -> np.ndarray:
        """Return ``x`` plus a noise draw (``x`` itself is not changed)."""
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        return np.asarray(x, dtype=float) + self.sample(np.shape(x), rng)

    def to_dict(self) -> dict:
        raise NotImplementedError

    def to_string(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class WhiteNoise(NoiseModel):
    """Independent Gaussian noise of standard deviation ``sigma``."""

    def __post_init__(self) -> None:
        if not self.sigma >= 0:
            raise ConfigurationError("Noise sigma must be ≥ 0.")

    def sample(self, shape, rng):
        return self.sigma * rng.standard_normal(shape)

    def to_dict(self) -> dict:
        return {"kind": "white", "sigma": self.sigma}

    def to_string(self) -> str:
        return f"white:sigma={self.sigma:g}mV"


@dataclass(frozen=True)
class AR1Noise(NoiseModel):
    """Autocorrelated AR(1) noise with marginal st.dev. ``sigma`` and lag-one correlation ``rho``."""

    rho: float = 0.0

    def __post_init__(self) -> None:
        if not self.sigma >= 0:
            raise ConfigurationError("Noise sigma must be ≥ 0.")
        if not -1.0 < self.rho < 1.0:
            raise ConfigurationError("AR(1) rho must lie strictly between −1 and 1.")

    @property
    def innovation_std(self) -> float:
        """Standard deviation of the innovations ε_i."""
        return self.sigma * float(np.sqrt(1.0 - self.rho**2))

    def sample(self, shape, rng):
        shape = tuple(shape)
        eps = rng.standard_normal(shape) * self.innovation_std
        eps[..., 0] = rng.standard_normal(shape[:-1]) * self.sigma  # stationary start
        return lfilter([1.0], [1.0, -self.rho], eps, axis=-1)

    def to_dict(self) -> dict:
        return {"kind": "ar1", "sigma": self.sigma, "rho": self.rho}

    def to_string(self) -> str:
        return f"ar1:sigma={self.sigma:g}mV,rho={self.rho:g}"


def parse_noise(spec: str | None, unit_kind: str = "voltage") -> NoiseModel | None:
    """Parse ``"white:sigma=1mV"`` or ``"ar1:sigma=0.5mV,rho=0.8"`` (``"none"`` → None).

    Parameters
    ----------
    spec : str or None
        The specification.
    unit_kind : str
        Dimension of sigma (``"voltage"``; ``"dimensionless"`` for FitzHugh–Nagumo).

    Returns
    -------
    NoiseModel or None
    """
    if spec is None or str(spec).strip().lower() in ("", "none", "0"):
        return None
    m = re.match(r"^\s*(white|ar1)\s*:(.*)$", str(spec), re.IGNORECASE)
    if not m:
        raise ConfigurationError(f"Cannot read noise {spec!r}; write 'white:sigma=1mV' or 'ar1:sigma=1mV,rho=0.8'.")
    kind = m.group(1).lower()
    fields = {}
    for part in filter(None, (x.strip() for x in m.group(2).split(","))):
        if "=" not in part:
            raise ConfigurationError(f"Noise field {part!r} needs name=value.")
        k, v = (x.strip() for x in part.split("=", 1))
        fields[k.lower()] = v
    if "sigma" not in fields:
        raise ConfigurationError("Noise needs sigma, e.g. 'white:sigma=1mV'.")
    sigma = parse_quantity(fields.pop("sigma"), None if unit_kind == "dimensionless" else unit_kind,
                           default_unit="dimensionless" if unit_kind == "dimensionless" else "mV")
    if kind == "white":
        if fields:
            raise ConfigurationError(f"White noise takes only sigma; got also {', '.join(fields)}.")
        return WhiteNoise(sigma)
    rho = float(fields.pop("rho", "0"))
    if fields:
        raise ConfigurationError(f"AR(1) noise takes sigma and rho; got also {', '.join(fields)}.")
    return AR1Noise(sigma, rho)


def assumed_noise(spec: "NoiseModel | str | None") -> NoiseModel | None:
    """The noise model a fit assumes: a model, a full spec, or a bare kind to estimate.

    ``"white"`` and ``"ar1"`` name the kind only (the fit estimates sigma, and rho); the values are
    starting points (sigma 1 mV, rho 0.5). Anything else is read by :func:`parse_noise`.
    """
    if spec is None or isinstance(spec, NoiseModel):
        return spec
    kind = str(spec).strip().lower()
    if kind == "white":
        return WhiteNoise(1.0)
    if kind == "ar1":
        return AR1Noise(1.0, 0.5)
    return parse_noise(spec)


def fit_ar1(residual: np.ndarray) -> AR1Noise:
    """Moment estimate of AR(1) noise (marginal sigma, lag-one rho) from a residual trace."""
    r = np.asarray(residual, dtype=float).reshape(-1)
    r = r - r.mean()
    var = float(np.mean(r * r))
    if var == 0.0 or r.size < 3:
        return AR1Noise(0.0, 0.0)
    rho = float(np.clip(np.mean(r[1:] * r[:-1]) / var, -0.999, 0.999))
    return AR1Noise(float(np.sqrt(var)), rho)


def ar1_negloglik(residual: np.ndarray, sigma: float, rho: float) -> float:
    """Exact Gaussian negative log-likelihood of a residual under AR(1)(sigma, rho)."""
    r = np.asarray(residual, dtype=float).reshape(-1)
    s_innov2 = sigma**2 * (1 - rho**2)
    e = r[1:] - rho * r[:-1]
    nll = 0.5 * (np.log(2 * np.pi * sigma**2) + r[0] ** 2 / sigma**2)
    nll += 0.5 * (e.size * np.log(2 * np.pi * s_innov2) + np.sum(e * e) / s_innov2)
    return float(nll)

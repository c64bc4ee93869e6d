"""Priors of the amortized estimator: one frozen, validated distribution per parameter.

A prior does three things for the amortized inverse map: it draws the parameters of the training
simulations (:meth:`Prior.sample`), it fixes the coordinate in which the network predicts (:meth:`Prior.scale`
maps the support onto [0, 1] — min–max scaling of the value, or of its logarithm for :class:`LogUniform`, as
Rudi, Bessac & Lenzi (2022) scale their targets) and it is written to and read back from an estimator's
manifest as plain JSON (:meth:`Prior.to_dict`, :func:`prior_from_dict`; only the kinds of :data:`PRIORS` are
read, nothing is executed).

Every value is in the parameter's own canonical unit (ms, mV, pA, pF, nS, or dimensionless); the
priors know no units themselves.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Mapping

import numpy as np
from scipy.special import ndtr, ndtri

from neo_pinn.errors import ConfigurationError

__all__ = ["Prior", "Uniform", "LogUniform", "TruncatedNormal", "Draws", "draws_from_file", "PRIORS", "prior_from_dict", "priors_to_dict",
           "priors_from_dict", "RUDI2022_PRIORS", "RUDI2022_AR1_PRIORS"]


def _finite(*values: Any) -> bool:
    return all(isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool)
               and math.isfinite(float(v)) for v in values)


@dataclass(frozen=True)
class Prior:
    """Base of the priors: a distribution on the interval [``low``, ``high``] (canonical units).

    Subclasses implement :meth:`sample`, :meth:`mean` and :meth:`std`; the scaled coordinate is
    linear in the value unless :attr:`log_scaled`.
    """

    kind: ClassVar[str] = ""
    #: whether the network's coordinate is linear in log(value) (else in the value)
    log_scaled: ClassVar[bool] = False

    low: float
    high: float

    def __post_init__(self) -> None:
        if not _finite(self.low, self.high) or not float(self.low) < float(self.high):
            raise ConfigurationError(f"{self.kind} prior needs finite low < high; got low={self.low!r}, "
                                     f"high={self.high!r}. Give the support of the parameter in its canonical unit.")
        object.__setattr__(self, "low", float(self.low))
        object.__setattr__(self, "high", float(self.high))

    # ------------------------------------------------------------------ distribution
    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Draw ``n`` values (float64, canonical units) with the generator ``rng``."""
        raise NotImplementedError

    def mean(self) -> float:
        """The prior mean (canonical units)."""
        raise NotImplementedError

    def std(self) -> float:
        """The prior standard deviation (canonical units)."""
        raise NotImplementedError

    def contains(self, x: Any) -> np.ndarray:
        """Whether each value lies in the support [low, high]."""
        x = np.asarray(x, dtype=float)
        return (x >= self.low) & (x <= self.high)

    # ------------------------------------------------------------------ network coordinate
    def scale(self, x: Any) -> np.ndarray:
        """Values → the network's coordinate: [low, high] ↦ [0, 1] (log-linear when :attr:`log_scaled`)."""
        x = np.asarray(x, dtype=float)
        if self.log_scaled:
            return (np.log(x) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return (x - self.low) / (self.high - self.low)

    def unscale(self, z: Any) -> np.ndarray:
        """The network's coordinate → values (the inverse of :meth:`scale`)."""
        z = np.asarray(z, dtype=float)
        if self.log_scaled:
            return np.exp(math.log(self.low) + z * (math.log(self.high) - math.log(self.low)))
        return self.low + z * (self.high - self.low)

    @property
    def width(self) -> float:
        """Length of the support in the scaled coordinate's units: high − low, or log(high/low)."""
        return math.log(self.high / self.low) if self.log_scaled else self.high - self.low

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict ``{"kind": ..., fields...}`` read back by :func:`prior_from_dict`."""
        return {"kind": self.kind, **asdict(self)}

    def describe(self) -> str:
        """One line, e.g. ``uniform[0.66, 0.92]``."""
        fields = ", ".join(f"{k}={v:g}" for k, v in asdict(self).items())
        return f"{self.kind}({fields})"


@dataclass(frozen=True)
class Uniform(Prior):
    """Uniform on [low, high]."""

    kind: ClassVar[str] = "uniform"

    def sample(self, n, rng):
        return rng.uniform(self.low, self.high, int(n))

    def mean(self):
        return 0.5 * (self.low + self.high)

    def std(self):
        return (self.high - self.low) / math.sqrt(12.0)


@dataclass(frozen=True)
class LogUniform(Prior):
    """Log-uniform on [low, high] (0 < low): uniform in log(value); the network predicts in log(value)."""

    kind: ClassVar[str] = "log_uniform"
    log_scaled: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.low <= 0:
            raise ConfigurationError(f"log_uniform prior needs 0 < low; got low={self.low!r}. Use a uniform prior "
                                     "for a parameter that can be zero or negative.")

    def sample(self, n, rng):
        return np.exp(rng.uniform(math.log(self.low), math.log(self.high), int(n)))

    def mean(self):
        return (self.high - self.low) / math.log(self.high / self.low)

    def std(self):
        second = (self.high**2 - self.low**2) / (2.0 * math.log(self.high / self.low))
        return math.sqrt(max(second - self.mean() ** 2, 0.0))


@dataclass(frozen=True)
class TruncatedNormal(Prior):
    """A normal N(``mu``, ``sigma``²) truncated to [low, high]: the bell-shaped prior of a bounded parameter.

    ``mu`` and ``sigma`` are the parent normal's mean and standard deviation (not the truncated
    distribution's, which :meth:`mean` and :meth:`std` return). Samples are drawn by inverting the CDF,
    so every draw lies in [low, high].
    """

    kind: ClassVar[str] = "truncated_normal"

    mu: float = 0.0
    sigma: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not _finite(self.mu, self.sigma) or not float(self.sigma) > 0:
            raise ConfigurationError(f"truncated_normal prior needs a finite mu and a positive sigma; got "
                                     f"mu={self.mu!r}, sigma={self.sigma!r}.")
        object.__setattr__(self, "mu", float(self.mu))
        object.__setattr__(self, "sigma", float(self.sigma))
        if not ndtr(self._b) - ndtr(self._a) > 1e-12:
            raise ConfigurationError(f"truncated_normal prior: [{self.low:g}, {self.high:g}] holds no mass of "
                                     f"N({self.mu:g}, {self.sigma:g}²); move mu inside the bounds or widen sigma.")

    @property
    def _a(self) -> float:
        return (self.low - self.mu) / self.sigma

    @property
    def _b(self) -> float:
        return (self.high - self.mu) / self.sigma

    def sample(self, n, rng):
        pa, pb = ndtr(self._a), ndtr(self._b)
        z = ndtri(pa + (pb - pa) * rng.uniform(0.0, 1.0, int(n)))
        return np.clip(self.mu + self.sigma * z, self.low, self.high)

    def _moments(self) -> tuple[float, float]:
        a, b = self._a, self._b
        mass = ndtr(b) - ndtr(a)
        pdf_a, pdf_b = math.exp(-0.5 * a * a) / math.sqrt(2 * math.pi), math.exp(-0.5 * b * b) / math.sqrt(2 * math.pi)
        d1 = (pdf_a - pdf_b) / mass
        d2 = (a * pdf_a - b * pdf_b) / mass
        return self.mu + self.sigma * d1, self.sigma * math.sqrt(max(1.0 + d2 - d1 * d1, 0.0))

    def mean(self):
        return self._moments()[0]

    def std(self):
        return self._moments()[1]


@dataclass(frozen=True)
class Draws(Prior):
    """Given draws of a parameter (e.g. the posterior of earlier fits, read from a file), resampled with replacement.

    ``low`` and ``high`` are the smallest and largest draw; the network's coordinate is min–max scaled, or log
    min–max scaled when ``log`` (all draws positive). The draws are kept in the manifest, so an estimator trained
    on them is one folder as any other.

    Parameters
    ----------
    low, high : float
        Support (set from the draws by :meth:`of`).
    values : tuple of float
        At least 2 distinct finite draws, canonical units.
    log : bool
        Scale the network's coordinate in log(value).
    """

    kind: ClassVar[str] = "draws"

    values: tuple[float, ...] = ()
    log: bool = False

    def __post_init__(self) -> None:
        vals = np.asarray(self.values, dtype=float).reshape(-1) if len(self.values) else np.empty(0)
        if vals.size < 2 or not np.isfinite(vals).all() or vals.min() == vals.max():
            raise ConfigurationError("A draws prior needs at least 2 distinct finite values (canonical units); give a "
                                     "file with one value per line (or a column named after the parameter).")
        if self.log and vals.min() <= 0:
            raise ConfigurationError("A log-scaled draws prior needs positive values; drop log or the non-positive "
                                     "draws.")
        object.__setattr__(self, "values", tuple(float(v) for v in vals))
        object.__setattr__(self, "log", bool(self.log))
        super().__post_init__()
        if not (self.low <= vals.min() and vals.max() <= self.high):
            raise ConfigurationError(f"The draws span {vals.min():g}–{vals.max():g}, outside low={self.low:g}, "
                                     f"high={self.high:g}; make the prior with Draws.of(values).")

    @classmethod
    def of(cls, values: Any, log: bool = False) -> "Draws":
        """The prior of these draws (support: their range)."""
        vals = np.asarray(values, dtype=float).reshape(-1)
        if vals.size == 0:
            raise ConfigurationError("A draws prior needs at least 2 distinct finite values; got none.")
        return cls(float(np.nanmin(vals)), float(np.nanmax(vals)), values=tuple(vals), log=log)

    @property
    def log_scaled(self) -> bool:  # type: ignore[override]
        return self.log

    def sample(self, n, rng):
        return rng.choice(np.asarray(self.values), int(n), replace=True)

    def mean(self):
        return float(np.mean(self.values))

    def std(self):
        return float(np.std(self.values))

    def describe(self) -> str:
        return (f"draws(n={len(self.values)}, {self.low:g}–{self.high:g}, mean={self.mean():g}"
                f"{', log' if self.log else ''})")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "low": self.low, "high": self.high, "values": list(self.values), "log": self.log}


def draws_from_file(path: Any, name: str | None = None, log: bool = False) -> Draws:
    """A :class:`Draws` prior from a text file: one number per line, or a CSV whose header names the parameter.

    Raises
    ------
    ConfigurationError
        No such column, non-numeric values, fewer than two distinct draws.
    InputPathError
        The file does not exist.
    """
    import csv
    from pathlib import Path

    from neo_pinn.errors import InputPathError

    p = Path(path)
    if not p.is_file():
        raise InputPathError(f"No draws file at {p}; give a text file with one value per line or a CSV with a "
                             f"column {name or 'named after the parameter'}.")
    rows = [r for r in csv.reader(p.read_text().splitlines()) if r and any(c.strip() for c in r)]
    if not rows:
        raise ConfigurationError(f"The draws file {p.name} is empty.")
    col = 0
    try:
        float(rows[0][0])
    except ValueError:  # a header: the column named after the parameter (or the only one)
        header = [c.strip() for c in rows[0]]
        rows = rows[1:]
        if name in header:
            col = header.index(name)
        elif len(header) != 1:
            raise ConfigurationError(f"The draws file {p.name} has columns {', '.join(header)} but none named "
                                     f"{name!r}.") from None
    try:
        values = [float(r[col]) for r in rows]
    except (ValueError, IndexError):
        raise ConfigurationError(f"The draws file {p.name} holds a value that is not a number in column "
                                 f"{col + 1}.") from None
    return Draws.of(values, log=log)


#: the prior kinds a manifest may name (nothing else is ever constructed from a file)
PRIORS: dict[str, type[Prior]] = {cls.kind: cls for cls in (Uniform, LogUniform, TruncatedNormal, Draws)}


def prior_from_dict(data: Mapping[str, Any]) -> Prior:
    """The prior a :meth:`Prior.to_dict` dict describes (only the kinds of :data:`PRIORS`).

    Raises
    ------
    ConfigurationError
        An unknown kind, missing or extra fields, or values the prior refuses.
    """
    if not isinstance(data, Mapping) or "kind" not in data:
        raise ConfigurationError(f"A prior is a mapping with a 'kind' ({', '.join(PRIORS)}); got {data!r}.")
    cls = PRIORS.get(data["kind"])
    if cls is None:
        raise ConfigurationError(f"Unknown prior kind {data['kind']!r}; known: {', '.join(PRIORS)}.")
    fields = {k: v for k, v in data.items() if k != "kind"}
    try:
        return cls(**fields)
    except TypeError:
        names = [f for f in cls.__dataclass_fields__]
        raise ConfigurationError(f"A {cls.kind} prior takes the fields {', '.join(names)}; got "
                                 f"{', '.join(map(str, fields))}.") from None


def priors_to_dict(priors: Mapping[str, Prior]) -> dict[str, dict[str, Any]]:
    """Name → prior as JSON-ready dicts."""
    return {name: p.to_dict() for name, p in priors.items()}


def priors_from_dict(data: Mapping[str, Any]) -> dict[str, Prior]:
    """Name → prior from :func:`priors_to_dict`'s output."""
    if not isinstance(data, Mapping):
        raise ConfigurationError(f"Priors are a mapping of parameter name to prior; got {type(data).__name__}.")
    return {str(name): prior_from_dict(d) for name, d in data.items()}


#: FitzHugh–Nagumo priors of Rudi, Bessac & Lenzi (2022) as far as models.md §5 knows them: supports read in the
#: authors' data files; both bell-shaped with the peak near 0.4. The family and its spread are NOT verified: a
#: normal centred at the support's midpoint (0.4 for both) with the bounds at ±2 standard deviations.
RUDI2022_PRIORS: dict[str, Prior] = {
    "theta0": TruncatedNormal(-0.2, 1.0, mu=0.4, sigma=0.3),
    "theta1": TruncatedNormal(-0.4, 1.2, mu=0.4, sigma=0.4),
}
#: AR(1) noise priors of the same work: the ranges of ρ and s in the authors' noise file, drawn uniformly here
#: (their file holds 100 (ρ, s) pairs). ``s`` is the innovation standard deviation (ε_i ~ N(0, s²)).
RUDI2022_AR1_PRIORS: dict[str, Prior] = {
    "rho": Uniform(0.66, 0.92),
    "s": Uniform(0.0377, 0.096),
}

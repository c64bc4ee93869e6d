"""Estimation results: parameters with uncertainty, reconstructed states, noise, metrics, provenance.

:class:`EstimationResult` is frozen; backends build it, :func:`neo_pinn.io.attach.attach` puts it back
into a Neo tree, :mod:`neo_pinn.report` draws it and :meth:`EstimationResult.to_json` stores it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .errors import ConfigurationError, UnknownNameError

__all__ = ["ParameterEstimate", "SweepFit", "EstimationResult"]

SCHEMA_VERSION = 1


def _num(x):
    if x is None:
        return None
    x = float(x)
    return None if not math.isfinite(x) else x


@dataclass(frozen=True)
class ParameterEstimate:
    """One model parameter after a fit.

    Parameters
    ----------
    name : str
        Parameter name as declared by the model.
    value : float
        Estimate in ``unit``.
    unit : str
        Canonical unit (see :mod:`neo_pinn.units`).
    std : float or None
        One standard deviation of the estimate, in ``unit``; None when the backend gives none or the
        parameter was fixed.
    free : bool
        Whether the parameter was estimated (True) or held fixed (False).
    init : float or None
        Initial guess of a free parameter (best start for multi-start backends).
    true_value : float or None
        Ground truth, when known (synthetic data).
    """

    name: str
    value: float
    unit: str
    std: float | None = None
    free: bool = True
    init: float | None = None
    true_value: float | None = None

    @property
    def relative_error(self) -> float | None:
        """|value − truth| / |truth|, or None without ground truth."""
        if self.true_value in (None, 0):
            return None
        return abs(self.value - self.true_value) / abs(self.true_value)


@dataclass(frozen=True)
class SweepFit:
    """Reconstruction of one fitted sweep.

    Parameters
    ----------
    sweep : int
        Sweep index in the source recording.
    t : numpy.ndarray
        Times in ms, shape (T,).
    v_observed : numpy.ndarray
        The recorded voltage that was fitted, mV, shape (T,).
    i_ext : numpy.ndarray
        The injected current used, pA, shape (T,).
    states : numpy.ndarray
        Reconstructed states, shape (T, S); column 0 is the membrane voltage.
    stimulus_source : str
        Where the stimulus came from (see :class:`~neo_pinn.trace.Trace`).
    source : dict
        Provenance of the sweep (file, sha256, segment, signal).
    """

    sweep: int
    t: np.ndarray
    v_observed: np.ndarray
    i_ext: np.ndarray
    states: np.ndarray
    stimulus_source: str = "none"
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def v_fit(self) -> np.ndarray:
        """Reconstructed voltage (mV)."""
        return self.states[:, 0]

    @property
    def rmse(self) -> float:
        """Root-mean-square difference between recorded and reconstructed voltage (mV)."""
        return float(np.sqrt(np.mean((self.v_observed - self.v_fit) ** 2)))


@dataclass(frozen=True)
class EstimationResult:
    """Everything a backend found for one estimation problem.

    Parameters
    ----------
    model : str
        Registered model name.
    backend : str
        Registered backend name.
    parameters : Mapping[str, ParameterEstimate]
        Every model parameter, free and fixed, in model order.
    state_names, state_units : tuple of str
        Names and units of the reconstructed states (state 0 is the voltage).
    fits : tuple of SweepFit
        One reconstruction per fitted sweep.
    noise : dict
        Noise estimates, e.g. ``{"sigma": 0.98}`` (mV) or ``{"sigma": ..., "rho": ...}``.
    metrics : dict
        Scalar figures of merit (``rmse_mV``, ``loss``, ``n_starts``, ``success_fraction`` ...).
    history : dict
        Optional trajectories (``loss``: list of floats, per-parameter traces ...).
    samples : dict
        Optional samples of the free parameters (name → list), e.g. multi-start optima or a Pareto front.
    provenance : dict
        Versions, seed, device, wall time, input hashes, run id.
    config : dict
        The backend configuration actually used.
    """

    model: str
    backend: str
    parameters: Mapping[str, ParameterEstimate]
    state_names: tuple[str, ...]
    state_units: tuple[str, ...]
    fits: tuple[SweepFit, ...]
    noise: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    history: dict[str, Any] = field(default_factory=dict)
    samples: dict[str, list] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ access
    @property
    def run_id(self) -> str:
        """Short identifier of this run (from provenance)."""
        return str(self.provenance.get("run_id", "run"))

    @property
    def values(self) -> dict[str, float]:
        """Parameter name → estimate (canonical units)."""
        return {k: p.value for k, p in self.parameters.items()}

    @property
    def free_parameters(self) -> dict[str, ParameterEstimate]:
        """Only the estimated parameters."""
        return {k: p for k, p in self.parameters.items() if p.free}

    def __getitem__(self, name: str) -> ParameterEstimate:
        try:
            return self.parameters[name]
        except KeyError as exc:
            raise UnknownNameError(f"No parameter {name!r}; this result has {', '.join(self.parameters)}.") from exc

    def summary(self) -> str:
        """A human-readable table of the free parameters and the main metrics."""
        lines = [f"{self.model} fitted with {self.backend} (run {self.run_id})"]
        lines.append(f"{'parameter':>12} {'value':>12} {'± std':>10} {'unit':>6} {'truth':>10} {'rel.err':>8}")
        for p in self.parameters.values():
            if not p.free:
                continue
            std = "" if p.std is None else f"{p.std:.3g}"
            tru = "" if p.true_value is None else f"{p.true_value:.4g}"
            rel = "" if p.relative_error is None else f"{100 * p.relative_error:.2f}%"
            lines.append(f"{p.name:>12} {p.value:>12.5g} {std:>10} {p.unit:>6} {tru:>10} {rel:>8}")
        for k, v in self.metrics.items():
            lines.append(f"  {k}: {v:.5g}" if isinstance(v, float) else f"  {k}: {v}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ JSON
    def to_dict(self, include_arrays: bool = True) -> dict[str, Any]:
        """JSON-ready dictionary (arrays as lists when ``include_arrays``)."""
        out: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "model": self.model,
            "backend": self.backend,
            "parameters": {
                k: {"value": _num(p.value), "unit": p.unit, "std": _num(p.std), "free": p.free,
                    "init": _num(p.init), "true_value": _num(p.true_value)}
                for k, p in self.parameters.items()
            },
            "state_names": list(self.state_names),
            "state_units": list(self.state_units),
            "noise": {k: _num(v) for k, v in self.noise.items()},
            "metrics": {k: (_num(v) if isinstance(v, float) else v.item() if isinstance(v, np.generic) else v)
                        for k, v in self.metrics.items()},
            "history": self.history,
            "samples": self.samples,
            "provenance": self.provenance,
            "config": self.config,
        }
        if include_arrays:
            out["fits"] = [
                {"sweep": f.sweep, "stimulus_source": f.stimulus_source, "source": f.source,
                 "t": f.t.tolist(), "v_observed": f.v_observed.tolist(), "i_ext": f.i_ext.tolist(),
                 "states": f.states.tolist()}
                for f in self.fits
            ]
        else:
            out["fits"] = [{"sweep": f.sweep, "stimulus_source": f.stimulus_source, "source": f.source,
                            "rmse_mV": f.rmse} for f in self.fits]
        return out

    def to_json(self, path: str | Path | None = None, include_arrays: bool = True) -> str:
        """Serialise to JSON; with ``path`` the file is written atomically (temp file + rename).

        Returns
        -------
        str
            The JSON text.
        """
        from .io.files import dumps

        text = dumps(self.to_dict(include_arrays=include_arrays), indent=1)
        if path is not None:
            from .io.files import atomic_write_text

            atomic_write_text(Path(path), text)
        return text

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "EstimationResult":
        """Inverse of :meth:`to_dict` (needs the arrays)."""
        try:
            params = {
                k: ParameterEstimate(name=k, value=float("nan") if v["value"] is None else float(v["value"]), unit=v["unit"], std=v.get("std"),
                                     free=bool(v.get("free", True)), init=v.get("init"),
                                     true_value=v.get("true_value"))
                for k, v in d["parameters"].items()
            }
            fits = tuple(
                SweepFit(sweep=int(f["sweep"]), t=np.asarray(f["t"], float), v_observed=np.asarray(f["v_observed"], float),
                         i_ext=np.asarray(f["i_ext"], float), states=np.asarray(f["states"], float).reshape(len(f["t"]), -1),
                         stimulus_source=f.get("stimulus_source", "none"), source=dict(f.get("source", {})))
                for f in d["fits"]
            )
        except KeyError as exc:
            raise ConfigurationError(f"Result JSON lacks {exc}; was it written with include_arrays=True?") from exc
        return cls(model=d["model"], backend=d["backend"], parameters=params,
                   state_names=tuple(d["state_names"]), state_units=tuple(d["state_units"]), fits=fits,
                   noise=dict(d.get("noise", {})), metrics=dict(d.get("metrics", {})),
                   history=dict(d.get("history", {})), samples=dict(d.get("samples", {})),
                   provenance=dict(d.get("provenance", {})), config=dict(d.get("config", {})))

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> "EstimationResult":
        """Read a result from JSON text or a file path."""
        text = _text_or_file(text_or_path)
        return cls.from_dict(json.loads(text))


def _text_or_file(text_or_path) -> str:
    """JSON text as given, or the contents of the file it names (JSON text starts with '{' or '[')."""
    if isinstance(text_or_path, Path):
        return text_or_path.read_text()
    text = str(text_or_path)
    if text.lstrip()[:1] in ("{", "["):
        return text
    return Path(text).read_text()

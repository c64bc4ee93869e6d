"""EstimationProblem: what to estimate, from which data, under which model and noise.

A PEtab-like specification for electrophysiology: the model, one or several sweeps, the free
parameters (initial guess, bounds, log-scale), the fixed ones, the assumed observation-noise model, the
time window and the handling of the unknown initial hidden states. It round-trips through JSON.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .errors import ConfigurationError, EmptySignalError
from .models.base import NeuronModel
from .noise import AR1Noise, NoiseModel, WhiteNoise
from .plugins import get_state
from .storage import atomic_write_text, dumps, read_text_or_file
from .trace import Trace, check_window, require_finite

__all__ = ["FreeParameter", "EstimationProblem", "check_fit_arguments", "check_fit_length", "MIN_FIT_SAMPLES"]

#: fewest samples a fitted sweep may hold: fewer cannot tell a model's dynamics from its noise and initial state
MIN_FIT_SAMPLES = 20


def check_fit_length(traces: Sequence[Trace], window: tuple | None = None) -> None:
    """Refuse sweeps too short to fit (fewer than :data:`MIN_FIT_SAMPLES` samples in the fitted window).

    Parameters
    ----------
    traces : sequence of Trace
        The sweeps as fitted (cut to the window).
    window : (float, float), optional
        The window asked for (ms), for the message.

    Raises
    ------
    EmptySignalError
        Naming the sweep, its samples and span, and what to do.
    """
    for tr in traces:
        if tr.t.size < MIN_FIT_SAMPLES:
            ends = ["…" if x is None else f"{x:g}" for x in window or ()]
            asked = f" of the {ends[0]}–{ends[1]} ms asked for" if ends else ""
            raise EmptySignalError(
                f"Sweep {tr.sweep} holds only {tr.t.size} samples ({tr.t[0]:.6g}–{tr.t[-1]:.6g} ms{asked}); a fit "
                f"needs at least {MIN_FIT_SAMPLES} per sweep to tell the model's dynamics from noise: fit a longer "
                "recording or window, or leave the sweep out.")


def check_fit_arguments(model: NeuronModel, free: Iterable[str], values: Mapping[str, Any] | None = None,
                        init: Mapping[str, Any] | None = None, bounds: Mapping[str, Any] | None = None
                        ) -> tuple[dict[str, float], dict[str, float], dict[str, tuple[float, float]]]:
    """Check what a fit is asked before any work — names, roles, units, finiteness and the parameters' domains — and
    return it in canonical units.

    Parameters
    ----------
    model : NeuronModel
    free : iterable of str
        Parameters to estimate.
    values, init, bounds : mapping, optional
        Fixed values (``--set``), initial guesses and (low, high) bounds: numbers in canonical units, or
        quantities (rescaled to each parameter's unit).

    Returns
    -------
    values, init, bounds : dict
        Plain floats in canonical units.

    Raises
    ------
    ConfigurationError
        A value given for a free parameter (use ``init`` or remove it from ``free``), an initial guess or bounds
        for a parameter that is not free, bounds that are not a finite pair with low < high.
    ParameterDomainError
        A value, guess or bound outside the parameter's domain or not finite
        (:meth:`NeuronModel.check_parameter_values`).
    UnitsError
        A quantity of the wrong dimension.
    UnknownNameError
        A name the model does not have.
    """
    free = list(free)
    for n in list(free) + list(values or {}) + list(init or {}) + list(bounds or {}):
        model.param_spec(n)  # raises UnknownNameError with the list of valid names
    values = model.canonical_values(values, "--set/values:")
    init = model.canonical_values(init, "initial guess")
    pairs = {}
    for k, b in dict(bounds or {}).items():
        is_pair = not isinstance(b, (str, bytes)) and hasattr(b, "__len__") and len(b) == 2
        b = tuple(model.canonical_values({k: x}, "bound of")[k] for x in b) if is_pair else b
        pairs[k] = FreeParameter(k, None, b, False).bounds  # a finite pair with low < high
    both = [k for k in values if k in free]
    if both:
        raise ConfigurationError(f"{', '.join(both)} {'is' if len(both) == 1 else 'are'} both given a value "
                                 f"(--set/values) and free: to start the search there use init (--init "
                                 f"{both[0]}=...), or remove "
                                 f"{'it' if len(both) == 1 else 'them'} from free to hold the value.")
    for k in list(init) + list(pairs):
        if k not in free:
            raise ConfigurationError(f"{k} has an initial guess or bounds but is not free; add it to free.")
    model.check_parameter_values(values, "--set/values:")
    model.check_parameter_values(init, "initial guess")
    for k, (lo, hi) in pairs.items():
        model.check_parameter_values({k: lo}, "lower bound of")
        model.check_parameter_values({k: hi}, "upper bound of")
        if k in init:
            FreeParameter(k, float(init[k]), (lo, hi), False)  # the guess must lie inside the given bounds
    return ({k: float(v) for k, v in values.items()}, {k: float(v) for k, v in init.items()}, pairs)


@dataclass(frozen=True)
class FreeParameter:
    """A parameter to estimate.

    Parameters
    ----------
    name : str
        Model parameter name.
    init : float or None
        Initial guess in canonical units (None: backend's choice, e.g. random in bounds).
    bounds : tuple of float
        (low, high) in canonical units.
    log_scale : bool
        Search on a log scale (positive parameters).
    """

    name: str
    init: float | None
    bounds: tuple[float, float]
    log_scale: bool = True

    def __post_init__(self) -> None:
        try:
            lo, hi = (float(b) for b in self.bounds)
        except (TypeError, ValueError):
            raise ConfigurationError(f"Bounds of {self.name} must be a (low, high) pair of numbers; got "
                                     f"{self.bounds!r}.") from None
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ConfigurationError(f"Bounds of {self.name} must be finite numbers; got {self.bounds}. Give a finite "
                                     "range to search (e.g. the model's own bounds, widened).")
        if self.init is not None and not math.isfinite(float(self.init)):
            raise ConfigurationError(f"Initial guess {self.name}={self.init} is not a finite number.")
        if not lo < hi:
            raise ConfigurationError(f"Bounds of {self.name} must satisfy low < high; got {self.bounds}.")
        if self.log_scale and lo <= 0:
            raise ConfigurationError(f"{self.name} is searched on a log scale, so its bounds must be positive.")
        if self.init is not None and not lo <= float(self.init) <= hi:
            raise ConfigurationError(f"Initial guess {self.name}={self.init} lies outside its bounds {self.bounds}.")
        object.__setattr__(self, "bounds", (lo, hi))


@dataclass(frozen=True)
class EstimationProblem:
    """Model + data + what is free.

    Parameters
    ----------
    model : NeuronModel
    traces : tuple of Trace
        One or several sweeps, fitted jointly with shared parameters.
    free : tuple of FreeParameter
        Parameters to estimate, in this order.
    fixed : dict
        Values (canonical units) of every other model parameter.
    noise : NoiseModel or None
        Assumed observation-noise model: its kind tells backends which noise parameters to estimate
        (``WhiteNoise`` → sigma; ``AR1Noise`` → sigma and rho); values are starting points.
    window : tuple of float or None
        (t0, t1) in ms, applied to every trace.
    initial_state : str or sequence
        ``"fit"`` (estimate hidden initial states, V0 from the data), ``"preset"`` or an explicit (S,) vector.
    preset : str or None
        Preset the fixed values came from (provenance).
    truth : dict
        Ground-truth parameter values when known (synthetic data), for reporting errors.
    holdout : tuple of Trace
        Sweeps held out of the fit (backends never see them): the fitted model is simulated on them
        afterwards, and its errors there are the generalisation table of the verdict.
    spike_threshold, spike_rearm : float or None
        Threshold and re-arm level (mV) of spike detection on this recording and on the model fitted to it
        (see :attr:`spike_levels`); None: the model's own. A real cell's levels come from its noise and its
        subthreshold voltage (:func:`neo_pinn.cell.recording_spike_levels`).
    """

    model: NeuronModel
    traces: tuple[Trace, ...]
    free: tuple[FreeParameter, ...]
    fixed: Mapping[str, float]
    noise: NoiseModel | None = None
    window: tuple[float, float] | None = None
    initial_state: Any = "fit"
    preset: str | None = None
    truth: Mapping[str, float] = field(default_factory=dict)
    holdout: tuple[Trace, ...] = ()
    spike_threshold: float | None = None
    spike_rearm: float | None = None

    def __post_init__(self) -> None:
        if not self.traces:
            raise ConfigurationError("An estimation problem needs at least one trace (sweep).")
        object.__setattr__(self, "traces", tuple(self.traces))
        object.__setattr__(self, "holdout", tuple(self.holdout))
        fitted = {tr.sweep for tr in self.traces}
        both = sorted(fitted & {tr.sweep for tr in self.holdout})
        if both:
            raise ConfigurationError(f"Sweep(s) {both} are both fitted and held out; validate on other sweeps.")
        object.__setattr__(self, "free", tuple(self.free))
        names = [f.name for f in self.free]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"A free parameter is listed twice: {names}.")
        for n in names:
            self.model.param_spec(n)  # raises UnknownNameError with the list of valid names
        missing = [n for n in self.model.param_names if n not in names and n not in self.fixed]
        if missing:
            raise ConfigurationError(f"Parameters neither free nor fixed: {', '.join(missing)}.")
        both = [n for n in names if n in self.fixed]
        if both:
            raise ConfigurationError(f"{', '.join(both)} {'is' if len(both) == 1 else 'are'} both free and fixed; give "
                                     "a starting value as the initial guess instead.")
        self.model.check_parameter_values(self.fixed, "fixed value")
        for f in self.free:
            self.model.check_parameter_values({f.name: f.bounds[0]}, "lower bound of")
            self.model.check_parameter_values({f.name: f.bounds[1]}, "upper bound of")
        require_finite(self.traces + self.holdout)  # the samples as fitted: a gap outside the window is no matter
        check_fit_length(self.traces, self.window)
        if isinstance(self.initial_state, str) and self.initial_state not in ("fit", "preset"):
            raise ConfigurationError("initial_state must be 'fit', 'preset' or a vector of initial states.")

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(
        cls,
        model: NeuronModel,
        traces: Trace | Sequence[Trace],
        free: Iterable[str] | None = None,
        *,
        preset: str | None = None,
        values: Mapping[str, float] | None = None,
        init: Mapping[str, float] | None = None,
        bounds: Mapping[str, tuple[float, float]] | None = None,
        noise: NoiseModel | None = None,
        window: tuple[float, float] | None = None,
        initial_state: Any = "fit",
        truth: Mapping[str, float] | None = None,
        holdout: Sequence[Trace] = (),
        spike_threshold: float | None = None,
        spike_rearm: float | None = None,
    ) -> "EstimationProblem":
        """Convenience constructor from names.

        Parameters
        ----------
        model : NeuronModel
        traces : Trace or sequence of Trace
        free : iterable of str, optional
            Names of the parameters to estimate; None: the model's ``default_free`` set (the parameters that
            differ from cell to cell); a model without one raises :class:`ConfigurationError`.
        preset : str, optional
            Preset for the fixed values (model default when None).
        values : mapping, optional
            Overrides of fixed values (``--set``).
        init : mapping, optional
            Initial guesses of free parameters (default: the fixed/preset value, i.e. None → backend choice
            only when the name is absent and ``init`` was given as "random").
        bounds : mapping, optional
            Bounds overrides; default the model's.
        noise : NoiseModel, optional
        window : (t0, t1), optional
        initial_state : "fit", "preset" or vector
        truth : mapping, optional
        holdout : sequence of Trace
            Sweeps to validate on, not to fit (the window applies to them too).
        spike_threshold, spike_rearm : float, optional
            Threshold and re-arm level of spike detection, mV (None: the model's).
        """
        traces = (traces,) if isinstance(traces, Trace) else tuple(traces)
        preset_name = preset or model.default_preset or None
        if free is None:
            if not model.default_free:
                raise ConfigurationError(f"Name the parameters to estimate, e.g. free=['gCa', 'gK'] (CLI --free); "
                                         f"{model.name} has {', '.join(model.param_names)}.")
            free = model.default_free
        free = list(free)
        values, init, bounds = check_fit_arguments(model, free, values, init, bounds)
        window = check_window(window)
        allv = model.param_values(preset_name, **values)
        fps = []
        for n in free:
            spec = model.param_spec(n)
            b = tuple(bounds.get(n, spec.bounds))
            log_scale = spec.log_scale and b[0] > 0
            fps.append(FreeParameter(n, init.get(n), b, log_scale))
        fixed = {k: v for k, v in allv.items() if k not in free}
        holdout = tuple(holdout)
        if window is not None:
            traces = tuple(t.window(*window) for t in traces)
            holdout = tuple(t.window(*window) for t in holdout)
        return cls(model=model, traces=traces, free=tuple(fps), fixed=fixed, noise=noise, window=window,
                   initial_state=initial_state, preset=preset_name, truth=dict(truth or {}), holdout=holdout,
                   spike_threshold=spike_threshold, spike_rearm=spike_rearm)

    # ------------------------------------------------------------------ helpers for backends
    @property
    def spike_levels(self) -> tuple[float, float]:
        """(threshold, re-arm level) of spike detection in mV, for the recording and the model alike."""
        threshold = self.model.spike_threshold if self.spike_threshold is None else self.spike_threshold
        rearm = self.model.spike_rearm if self.spike_rearm is None else self.spike_rearm
        return float(threshold), float(rearm)

    @property
    def free_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.free)

    def theta_full(self, free_values: Mapping[str, float] | Sequence[float] | np.ndarray) -> np.ndarray:
        """Full parameter vector (P,) from values of the free parameters (by name or in order)."""
        if not isinstance(free_values, Mapping):
            arr = np.asarray(free_values, dtype=float).reshape(-1)
            if arr.size != len(self.free):
                raise ConfigurationError(f"Expected {len(self.free)} free values, got {arr.size}.")
            free_values = dict(zip(self.free_names, arr))
        vals = dict(self.fixed) | {k: float(v) for k, v in free_values.items()}
        return np.array([vals[n] for n in self.model.param_names], dtype=float)

    def initial_guess(self) -> dict[str, float | None]:
        """Initial guesses of the free parameters (None where the backend must choose)."""
        return {f.name: f.init for f in self.free}

    def sample_starts(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Draw ``n`` starting points (n, F), log-uniform (log-scale) or uniform within the bounds."""
        out = np.empty((n, len(self.free)))
        for j, f in enumerate(self.free):
            lo, hi = f.bounds
            if f.log_scale:
                out[:, j] = np.exp(rng.uniform(np.log(lo), np.log(hi), n))
            else:
                out[:, j] = rng.uniform(lo, hi, n)
        return out

    def starting_points(self, n: int, rng: np.random.Generator, mode: str = "bounds",
                        jitter: float = 0.5) -> np.ndarray:
        """``n`` starting points (n, F) for multi-start backends.

        Row 0 is the initial guess (free parameters without one are drawn within their bounds). The
        others are drawn within the bounds (``mode="bounds"``, see :meth:`sample_starts`) or around row 0
        (``mode="jitter"``: log-normal with standard deviation ``jitter`` of log θ for log-scale
        parameters, normal with ``jitter`` × |θ| otherwise), clipped to the bounds.
        """
        first = self.sample_starts(1, rng)[0]
        for j, f in enumerate(self.free):
            if f.init is not None:
                first[j] = float(f.init)
        out = np.empty((n, len(self.free)))
        out[0] = first
        if n > 1:
            if mode == "bounds":
                out[1:] = self.sample_starts(n - 1, rng)
            elif mode == "jitter":
                lo = np.array([f.bounds[0] for f in self.free])
                hi = np.array([f.bounds[1] for f in self.free])
                logs = np.array([f.log_scale for f in self.free])
                eps = rng.standard_normal((n - 1, len(self.free))) * float(jitter)
                jit = np.where(logs, first * np.exp(eps), first + eps * np.abs(first).clip(min=1e-3 * (hi - lo)))
                out[1:] = np.clip(jit, lo, hi)
            else:
                raise ConfigurationError(f"Starting points mode must be 'bounds' or 'jitter', got {mode!r}.")
        return out

    def with_traces(self, traces: Sequence[Trace]) -> "EstimationProblem":
        """A copy with other traces (e.g. a decimated version)."""
        return replace(self, traces=tuple(traces))

    # ------------------------------------------------------------------ JSON
    def to_dict(self, include_data: bool = True) -> dict[str, Any]:
        """JSON-ready dictionary; with ``include_data`` the trace arrays are inlined."""
        d: dict[str, Any] = {
            "schema": 1,
            "model": self.model.name,
            "preset": self.preset,
            "free": [{"name": f.name, "init": f.init, "bounds": list(f.bounds), "log_scale": f.log_scale}
                     for f in self.free],
            "fixed": dict(self.fixed),
            "noise": None if self.noise is None else self.noise.to_dict(),
            "window": None if self.window is None else list(self.window),
            "initial_state": self.initial_state if isinstance(self.initial_state, str) else list(map(float, self.initial_state)),
            "truth": dict(self.truth),
            "spike_threshold": self.spike_threshold,
            "spike_rearm": self.spike_rearm,
            "traces": [],
            "holdout": [],
        }
        for key, group in (("traces", self.traces), ("holdout", self.holdout)):
            for tr in group:
                item: dict[str, Any] = {"sweep": tr.sweep, "stimulus_source": tr.stimulus_source, "source": tr.source}
                if include_data:
                    item.update(t=tr.t.tolist(), v=tr.v.tolist(), i_ext=tr.i_ext.tolist())
                d[key].append(item)
        return d

    def to_json(self, path: str | Path | None = None, include_data: bool = True) -> str:
        """Serialise to JSON (written atomically when ``path`` is given)."""
        text = dumps(self.to_dict(include_data), indent=1)
        if path is not None:
            atomic_write_text(path, text)
        return text

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], model: NeuronModel | None = None) -> "EstimationProblem":
        """Inverse of :meth:`to_dict` (needs inlined data); the model is looked up in the registry by name."""
        if model is None:
            model = get_state().models.get(d["model"])
        try:
            traces, holdout = (
                tuple(Trace(t=np.asarray(x["t"]), v=np.asarray(x["v"]), i_ext=np.asarray(x["i_ext"]),
                            stimulus_source=x.get("stimulus_source", "none"), sweep=int(x.get("sweep", 0)),
                            source=dict(x.get("source", {}))) for x in d.get(key, ()))
                for key in ("traces", "holdout"))
        except KeyError as exc:
            raise ConfigurationError("This problem JSON has no inlined trace data (written with include_data=False).") from exc
        noise = None
        if d.get("noise"):
            nd = d["noise"]
            noise = WhiteNoise(nd["sigma"]) if nd["kind"] == "white" else AR1Noise(nd["sigma"], nd["rho"])
        init_state = d.get("initial_state", "fit")
        return cls(model=model, traces=traces,
                   free=tuple(FreeParameter(f["name"], f.get("init"), tuple(f["bounds"]), f.get("log_scale", True))
                              for f in d["free"]),
                   fixed=dict(d["fixed"]), noise=noise, window=tuple(d["window"]) if d.get("window") else None,
                   initial_state=init_state if isinstance(init_state, str) else tuple(init_state),
                   preset=d.get("preset"), truth=dict(d.get("truth", {})), holdout=holdout,
                   spike_threshold=d.get("spike_threshold"), spike_rearm=d.get("spike_rearm"))

    @classmethod
    def from_json(cls, text_or_path: str | Path, model: NeuronModel | None = None) -> "EstimationProblem":
        """Read a problem from JSON text or a file."""
        return cls.from_dict(json.loads(read_text_or_file(text_or_path)), model=model)

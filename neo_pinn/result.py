"""Estimation results: parameters with uncertainty, reconstructed states, noise, metrics, provenance.

:class:`EstimationResult` is frozen; backends build it, :func:`neo_pinn.io.attach.attach` puts it back
into a Neo tree, :mod:`neo_pinn.report` draws it and :meth:`EstimationResult.to_json` stores it.
"""

from __future__ import annotations

import json
import math
import numbers
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from .derived import DERIVED_ROLES, DerivedSignal, signal_from_dict, signal_summary, signal_to_dict
from .errors import ConfigurationError, InputFormatError, NeoPinnError, UnknownNameError
from .residuals import rms, voltage_rmse
from .storage import atomic_write_text, dumps, read_json_object

if TYPE_CHECKING:  # pragma: no cover - for annotations only
    import quantities as pq

    from .problem import EstimationProblem

__all__ = ["STATUSES", "ParameterEstimate", "SweepFit", "EstimationResult", "DerivedSignal", "DERIVED_ROLES",
           "build_result", "is_metric_value", "split_outputs"]

#: values of :attr:`EstimationResult.status`
STATUSES = ("passed", "warning", "failed", "unchecked")

#: 2: ``metrics`` holds numbers only and ``samples`` parameter draws only; everything else is in ``diagnostics``
SCHEMA_VERSION = 2


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

    @property
    def quantity(self) -> pq.Quantity:
        """The estimate as a :class:`quantities.Quantity` in ``unit`` (rescale it to any unit of its dimension)."""
        from .units import as_quantity  # quantities only where results leave

        return as_quantity(self.value, self.unit)

    @property
    def std_quantity(self) -> pq.Quantity | None:
        """One standard deviation as a Quantity in ``unit``, or None."""
        from .units import as_quantity

        return None if self.std is None else as_quantity(self.std, self.unit)

    def interval(self, level: float = 0.95) -> tuple[pq.Quantity, pq.Quantity] | None:
        """The normal-approximation interval ``value ± z·std`` at ``level`` (e.g. 0.95), as Quantities; None without std.

        Parameters
        ----------
        level : float
            Coverage probability in (0, 1).
        """
        if not 0.0 < float(level) < 1.0:
            raise ConfigurationError(f"level={level!r} must lie strictly between 0 and 1 (e.g. 0.95).")
        if self.std is None or not math.isfinite(self.std):
            return None
        from scipy.stats import norm

        from .units import as_quantity

        half = float(norm.ppf(0.5 + 0.5 * float(level))) * float(self.std)
        return as_quantity(self.value - half, self.unit), as_quantity(self.value + half, self.unit)


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
        return rms(self.v_observed - self.v_fit)


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
        Figures of merit, each one number (``rmse_mV``, ``loss``, ``n_starts``, ``success_fraction`` ...;
        a flag is a bool, a missing value NaN).
    history : dict
        Optional trajectories over the fit's iterations (``loss``: list of floats, per-parameter traces ...).
    samples : dict
        Optional draws of the free parameters (free parameter name → list, every list as long), e.g.
        multi-start optima, ensemble members or a Pareto front.
    provenance : dict
        Versions, seed, device, wall time, input hashes, run id, and ``initial_guess`` (free parameter → the
        value the search started from, None where the backend chose one).
    config : dict
        The backend configuration actually used.
    diagnostics : dict
        Anything else a backend reports (JSON-ready): per-member losses and flags, per-sweep figures, the
        reason a search stopped, loss curves of sub-stages ...
    status : str
        The verdict on the fit: ``"passed"``, ``"warning"``, ``"failed"`` (the fitted model does not behave
        like the cell, or an estimate sits on a bound), or ``"unchecked"`` (no verdict was made).
    verdict : dict
        The checks behind ``status`` (see :class:`neo_pinn.verdict.Verdict`): each check's outcome and
        message, and per sweep (fitted and held out) the spike counts, rates and RMSE of model and cell.
    cell : dict
        What was measured on the recording before the fit: sweep quality control (``qc``), passive and
        active properties (``properties``), the cell-scaled search ranges (``scaling``) and the result of
        each stage of a staged fit (``stages``).
    signals : tuple of DerivedSignal
        Signals the backend derived from the fitted sweeps beyond the reconstructed states: a ``"forecast"``
        (the states simulated past the fitted window) or a ``"correction"`` current (pA), at most one of each
        role per sweep; see :mod:`neo_pinn.derived` and :meth:`signals_of`.
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
    diagnostics: dict[str, Any] = field(default_factory=dict)
    status: str = "unchecked"
    verdict: dict[str, Any] = field(default_factory=dict)
    cell: dict[str, Any] = field(default_factory=dict)
    signals: tuple[DerivedSignal, ...] = ()

    def __post_init__(self) -> None:
        self._check_signals()
        if self.status not in STATUSES:
            raise ConfigurationError(f"status must be one of {', '.join(STATUSES)}; got {self.status!r}.")
        for key, value in self.metrics.items():
            if not is_metric_value(value):
                raise ConfigurationError(
                    f"Metric {key!r} of a {self.backend} result is {type(value).__name__} {value!r}; metrics hold one "
                    "number each (bool, int or float; NaN when missing). Put lists, strings and per-sweep values "
                    "into diagnostics.")
        free = [k for k, p in self.parameters.items() if p.free]
        lengths = set()
        for key, draws in self.samples.items():
            if key not in free:
                raise ConfigurationError(
                    f"samples[{key!r}] of a {self.backend} result is not a free parameter ({', '.join(free)}); "
                    "samples hold parameter draws only, put other per-draw values into diagnostics.")
            if isinstance(draws, (str, bytes)) or not all(isinstance(x, numbers.Real) for x in draws):
                raise ConfigurationError(f"samples[{key!r}] must be a list of numbers (draws of {key}).")
            lengths.add(len(draws))
        if len(lengths) > 1:
            raise ConfigurationError(f"Every parameter needs the same number of samples; got {sorted(lengths)}.")

    def _check_signals(self) -> None:
        if isinstance(self.signals, DerivedSignal) or not isinstance(self.signals, (tuple, list)):
            raise ConfigurationError(f"signals of a {self.backend} result must be a tuple of DerivedSignal; got "
                                     f"{type(self.signals).__name__}.")
        fitted = {f.sweep for f in self.fits}
        seen = set()
        for s in self.signals:
            if not isinstance(s, DerivedSignal):
                raise ConfigurationError(f"signals of a {self.backend} result hold a {type(s).__name__}; give "
                                         "DerivedSignal objects (neo_pinn.DerivedSignal).")
            if s.sweep not in fitted:
                raise ConfigurationError(f"The {s.role} signal is of sweep {s.sweep}, which this result did not fit "
                                         f"(fitted sweeps: {sorted(fitted)}); give each signal a fitted sweep's index.")
            if (s.sweep, s.role) in seen:
                raise ConfigurationError(f"Two {s.role} signals of sweep {s.sweep}: give at most one signal of each "
                                         "role per sweep (put several channels into one signal).")
            seen.add((s.sweep, s.role))
        object.__setattr__(self, "signals", tuple(self.signals))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_fit(
        cls,
        problem: "EstimationProblem",
        backend: str,
        free_values: Mapping[str, float],
        states: Sequence[np.ndarray],
        *,
        std: Mapping[str, float | None] | None = None,
        init: Mapping[str, float | None] | None = None,
        noise: Mapping[str, float] | None = None,
        metrics: Mapping[str, Any] | None = None,
        history: Mapping[str, Any] | None = None,
        samples: Mapping[str, Sequence[float]] | None = None,
        diagnostics: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
        signals: Sequence[DerivedSignal] = (),
    ) -> "EstimationResult":
        """Assemble a result from a backend's raw output (what every backend's ``_fit`` returns).

        Parameters
        ----------
        problem : EstimationProblem
        backend : str
            Backend name.
        free_values : mapping
            Estimates of the free parameters (canonical units).
        states : sequence of numpy.ndarray
            Reconstructed states per trace, each (T, S) on the trace's sample times.
        std, init : mappings, optional
            One standard deviation and the starting value of each free parameter (canonical units).
        noise : mapping, optional
            Noise estimates (``sigma`` in mV, ``rho``).
        metrics : mapping, optional
            Figures of merit, one number each; ``rmse_mV`` (and ``max_relative_error`` with ground truth)
            are added when absent.
        history, samples, diagnostics, config : mappings, optional
            Trajectories, parameter draws (free name → list), other backend output, options.
        signals : sequence of DerivedSignal, optional
            Forecasts and correction currents of the fitted sweeps (see :class:`~neo_pinn.derived.DerivedSignal`).
        """
        model = problem.model
        std = dict(std or {})
        init = dict(init or {})
        theta = problem.theta_full(free_values)
        params = {}
        for k, name in enumerate(model.param_names):
            spec = model.param_spec(name)
            is_free = name in problem.free_names
            params[name] = ParameterEstimate(
                name=name, value=float(theta[k]), unit=spec.unit,
                std=(None if std.get(name) is None else float(std[name])) if is_free else None,
                free=is_free, init=init.get(name) if is_free else None,
                true_value=problem.truth.get(name))
        if len(states) != len(problem.traces):
            raise ConfigurationError(f"{len(states)} state arrays for {len(problem.traces)} traces.")
        fits = []
        for tr, st in zip(problem.traces, states):
            st = np.asarray(st, dtype=float)
            if st.shape != (tr.t.size, model.n_states):
                raise ConfigurationError(f"States of sweep {tr.sweep} have shape {st.shape}, expected "
                                         f"{(tr.t.size, model.n_states)} (one row per sample, one column per state).")
            fits.append(SweepFit(sweep=tr.sweep, t=tr.t, v_observed=tr.v, i_ext=tr.i_ext, states=st,
                                 stimulus_source=tr.stimulus_source, source=dict(tr.source)))
        m = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in dict(metrics or {}).items()}
        m.setdefault("rmse_mV", voltage_rmse(problem.traces, [f.states for f in fits]))
        errs = [p.relative_error for p in params.values() if p.free and p.relative_error is not None]
        if errs:
            m.setdefault("max_relative_error", float(max(errs)))
        draws = {k: [float(x) for x in v] for k, v in dict(samples or {}).items()}
        # where the search started (the user's init where given): ParameterEstimate.init holds the best start
        guess = {k: _num(v) for k, v in problem.initial_guess().items()}
        return cls(model=model.name, backend=backend, parameters=params, state_names=model.state_names,
                   state_units=model.state_units, fits=tuple(fits), noise=dict(noise or {}), metrics=m,
                   history=dict(history or {}), samples=draws, config=dict(config or {}),
                   diagnostics=dict(diagnostics or {}), provenance={"initial_guess": guess},
                   signals=tuple(signals))

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

    @property
    def quantities(self) -> dict[str, "pq.Quantity"]:
        """Every parameter's estimate as a Quantity with its unit (name → Quantity), in model order."""
        return {name: p.quantity for name, p in self.parameters.items()}

    def __getitem__(self, name: str) -> ParameterEstimate:
        try:
            return self.parameters[name]
        except KeyError as exc:
            raise UnknownNameError(f"No parameter {name!r}; this result has {', '.join(self.parameters)}.") from exc

    def signals_of(self, role: str, sweep: int | None = None) -> tuple[DerivedSignal, ...]:
        """The derived signals of ``role`` (``"forecast"`` or ``"correction"``), of one sweep or of all.

        Parameters
        ----------
        role : str
            One of :data:`~neo_pinn.derived.DERIVED_ROLES`.
        sweep : int, optional
            A fitted sweep's index (``SweepFit.sweep``); None: every sweep.

        Returns
        -------
        tuple of DerivedSignal
            In the order of ``signals`` (empty when there are none).
        """
        if role not in DERIVED_ROLES:
            raise ConfigurationError(f"No signal role {role!r}; derived signals are {', '.join(DERIVED_ROLES)}.")
        return tuple(s for s in self.signals if s.role == role and (sweep is None or s.sweep == sweep))

    @property
    def failed(self) -> bool:
        """Whether the verdict says the fit failed (the model does not behave like the cell)."""
        return self.status == "failed"

    def summary(self) -> str:
        """A human-readable table of the free parameters, the main metrics and the verdict."""
        lines = [f"{self.model} fitted with {self.backend} (run {self.run_id})"]
        if self.status == "failed":
            lines.append("FIT FAILED — the fitted model does not explain this cell; see the verdict below.")
        lines.append(f"{'parameter':>12} {'value':>12} {'± std':>10} {'unit':>6} {'truth':>10} {'rel.err':>8}")
        on_bound = set((self.verdict.get("withheld_std") or {}))  # estimates the search left on a bound
        for p in self.parameters.values():
            if not p.free:
                continue
            std = "on bound" if p.name in on_bound else "" if p.std is None else f"{p.std:.3g}"
            tru = "" if p.true_value is None else f"{p.true_value:.4g}"
            rel = "" if p.relative_error is None else f"{100 * p.relative_error:.2f}%"
            lines.append(f"{p.name:>12} {p.value:>12.5g} {std:>10} {p.unit:>6} {tru:>10} {rel:>8}")
        for k, v in self.metrics.items():
            lines.append(f"  {k}: {v:.5g}" if isinstance(v, float) else f"  {k}: {v}")
        qc = self.cell.get("qc") or {}
        excluded = [s for s in qc.get("sweeps", []) if not s.get("kept", True)]
        if excluded:
            lines.append("sweeps excluded by quality control:")
            lines.extend(f"  sweep {s['sweep']}: {'; '.join(s.get('details') or s.get('reasons') or [])}"
                         for s in excluded)
        lines.append(f"verdict: {self.status}")
        lines.extend(f"  {line}" for line in self.verdict.get("lines", []))
        return "\n".join(lines)

    # ------------------------------------------------------------------ JSON
    def to_dict(self, include_arrays: bool = True) -> dict[str, Any]:
        """JSON-ready dictionary (arrays as lists when ``include_arrays``).

        A result with derived signals adds ``"signals"``: with the arrays, one
        :func:`~neo_pinn.derived.signal_to_dict` each (NaN as null); without, a small summary each (sweep, role,
        names, units, t0, t1 in ms).
        """
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
            "diagnostics": self.diagnostics,
            "status": self.status,
            "verdict": self.verdict,
            "cell": self.cell,
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
        if self.signals:  # a result without derived signals writes exactly what it wrote before
            out["signals"] = [(signal_to_dict if include_arrays else signal_summary)(s) for s in self.signals]
        return out

    def to_json(self, path: str | Path | None = None, include_arrays: bool = True) -> str:
        """Serialise to JSON; with ``path`` the file is written atomically (temp file + rename).

        Returns
        -------
        str
            The JSON text.
        """
        text = dumps(self.to_dict(include_arrays=include_arrays), indent=1)
        if path is not None:
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
        metrics, samples, diagnostics = split_outputs(d.get("metrics", {}), d.get("samples", {}),
                                                      [k for k, p in params.items() if p.free])
        diagnostics.update(d.get("diagnostics", {}))
        return cls(model=d["model"], backend=d["backend"], parameters=params,
                   state_names=tuple(d["state_names"]), state_units=tuple(d["state_units"]), fits=fits,
                   noise=dict(d.get("noise", {})), metrics=metrics,
                   history=dict(d.get("history", {})), samples=samples,
                   provenance=dict(d.get("provenance", {})), config=dict(d.get("config", {})),
                   diagnostics=diagnostics, status=str(d.get("status", "unchecked")),
                   verdict=dict(d.get("verdict", {})), cell=dict(d.get("cell", {})),
                   signals=tuple(signal_from_dict(s) for s in d.get("signals") or ()))

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> "EstimationResult":
        """Read a result from JSON text or a file path (``neo-pinn fit --json``).

        Raises
        ------
        InputPathError
            The file is missing, not a regular file or unreadable.
        InputFormatError
            Not JSON, JSON that is not an object, or an object that is not a complete fit result.
        """
        hint = "; give the file written by `neo-pinn fit --json` (or EstimationResult.to_json)"
        text = None if isinstance(text_or_path, Path) else str(text_or_path)
        if text is not None and text.lstrip()[:1] in ("{", "["):
            try:
                d = json.loads(text)
            except ValueError as exc:
                raise InputFormatError(f"Result JSON text is not readable JSON ({_one_line(exc)}){hint}.") from None
            where = "Result JSON text"
        else:
            d = read_json_object(text_or_path, "Result file", hint)
            where = f"Result file {text_or_path}"
        if not isinstance(d, dict) or not {"model", "backend", "parameters", "fits"} <= set(d):
            raise InputFormatError(f"{where} is JSON but no fit result (it lacks model, backend, parameters or "
                                   f"fits){hint}.")
        try:
            return cls.from_dict(d)
        except NeoPinnError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:  # a damaged or edited file
            raise InputFormatError(f"{where} is not a complete fit result ({type(exc).__name__}: "
                                   f"{_one_line(exc)}){hint}.") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:100]


def is_metric_value(value: Any) -> bool:
    """Whether ``value`` can be a metric: one real number (bool, int, float or a numpy scalar of those)."""
    return isinstance(value, (numbers.Real, np.bool_)) and not isinstance(value, np.ndarray)


def split_outputs(metrics: Mapping[str, Any], samples: Mapping[str, Any], free: Sequence[str]
                  ) -> tuple[dict, dict, dict]:
    """Sort loosely typed outputs into (metrics, samples, diagnostics).

    Numbers stay metrics (None becomes NaN: JSON has no NaN), lists of numbers under free-parameter names
    stay samples, everything else goes to diagnostics. Reads results written before schema 2 and results of
    backends still built with :func:`build_result`.
    """
    m, s, diag = {}, {}, {}
    for k, v in metrics.items():
        if v is None:
            m[k] = math.nan
        elif is_metric_value(v):
            m[k] = v
        else:
            diag[k] = v
    lengths = {len(v) for k, v in samples.items() if k in free and isinstance(v, (list, tuple))}
    for k, v in samples.items():
        draws = k in free and isinstance(v, (list, tuple)) and len(lengths) == 1 \
            and all(isinstance(x, numbers.Real) for x in v)
        (s if draws else diag)[k] = list(v) if draws else v
    return m, s, diag


def build_result(problem: "EstimationProblem", backend: str, free_values: Mapping[str, float],
                 states: Sequence[np.ndarray], *, std=None, init=None, noise=None, metrics=None, history=None,
                 samples=None, config=None) -> EstimationResult:
    """Deprecated: use :meth:`EstimationResult.from_fit`.

    Kept for plugins written against the first plugin contract: metrics that are not numbers and samples
    that are not parameter draws are moved to ``diagnostics`` instead of being refused.
    """
    warnings.warn("neo_pinn.build_result is deprecated; return EstimationResult.from_fit(...) from _fit.",
                  DeprecationWarning, stacklevel=2)
    m, s, diag = split_outputs(dict(metrics or {}), dict(samples or {}), problem.free_names)
    return EstimationResult.from_fit(problem, backend, free_values, states, std=std, init=init, noise=noise,
                                     metrics=m, history=history, samples=s, diagnostics=diag, config=config)

"""The public, high-level API: models, backends, simulation, loading and estimation in a few calls."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import quantities as pq

from .config import is_number
from .errors import ConfigurationError
from .models.base import NeuronModel
from .noise import NoiseModel, assumed_noise, parse_noise
from .plugins import get_state, stimulus_finder
from .problem import check_fit_arguments, check_fit_length
from .result import EstimationResult
from .simulation import choose_dt
from .simulation import simulate as simulate_batch
from .trace import Trace, check_window
from .units import magnitude_in

__all__ = ["get_model", "get_backend", "list_models", "list_backends", "simulate", "load_recording",
           "estimate", "synthetic_trace"]


def get_model(name: str | NeuronModel) -> NeuronModel:
    """Return the registered model ``name`` (a model instance is passed through)."""
    if isinstance(name, NeuronModel):
        return name
    return get_state().models.get(name)


def get_backend(name: str):
    """Return the registered Estimator subclass ``name``."""
    return get_state().backends.get(name)


def list_models() -> dict[str, str]:
    """Registered model names → the plugin that registered each."""
    reg = get_state().models
    return {n: reg.origin(n) for n in reg.names()}


def list_backends() -> dict[str, str]:
    """Registered backend names → the plugin that registered each."""
    reg = get_state().backends
    return {n: reg.origin(n) for n in reg.names()}


def simulate(model: str | NeuronModel, theta: Any = None, **kwargs: Any):
    """Batched simulation of a model given by name or instance; see :func:`neo_pinn.simulation.simulate`.

    The parameters (a mapping of overrides on the preset's values — numbers in canonical units or quantities —, a
    vector or a batch) must lie in the model's domains: a negative capacitance is refused here, as in a fit,
    instead of diverging. ``i_ext`` may also be a stimulus spec string (``"step:amp=48pA,start=10ms,stop=90ms"``).

    Raises
    ------
    ParameterDomainError
        A parameter outside its domain or not finite (:meth:`NeuronModel.check_parameter_values`).
    """
    m = get_model(model)
    for name, unit in (("duration", "ms"), ("dt", "ms"), ("t0", "ms")):  # units at the door
        if name in kwargs:
            kwargs[name] = magnitude_in(kwargs[name], unit, name)
    if isinstance(kwargs.get("i_ext"), pq.Quantity):
        kwargs["i_ext"] = magnitude_in(kwargs["i_ext"], "pA", "i_ext")
    if isinstance(kwargs.get("i_ext"), str):  # a spec, as for synthetic_trace (times from the simulation's t0)
        from .io.stimulus_specs import parse_stimulus

        kwargs["i_ext"] = parse_stimulus(kwargs["i_ext"])
    if isinstance(theta, Mapping):
        theta = m.canonical_values(theta, "simulated parameter")
    m.check_parameter_values(_full_theta(m, theta, kwargs.get("preset")), "simulated parameter")
    return simulate_batch(m, theta, **kwargs)


def _full_theta(m: NeuronModel, theta: Any, preset: str | None):
    """Full parameter vectors of a simulation's ``theta`` (None or a mapping: on the preset's values)."""
    if theta is None or isinstance(theta, Mapping):
        return m.theta(dict(theta or {}), preset=preset)
    return theta


def load_recording(source: Any, **kwargs: Any):
    """Load a recording (file path or Neo object) with every plugin's stimulus finder.

    See :func:`neo_pinn.io.load_recording`; the installed plugins' ``neo_pinn_find_stimulus`` hooks are
    asked first unless ``stimulus_finder`` is given.
    """
    from .io import load_recording as load

    kwargs.setdefault("stimulus_finder", stimulus_finder())
    return load(source, **kwargs)


def synthetic_trace(
    model: str | NeuronModel,
    *,
    preset: str | None = None,
    values: Mapping[str, float] | None = None,
    stimulus: Any = None,
    duration: float,
    rate_hz: float = 20000.0,
    dt: float | None = None,
    noise: NoiseModel | str | None = None,
    seed: int = 0,
    y0: Any = None,
    t0: float = 0.0,
) -> tuple[Trace, np.ndarray]:
    """Simulate one sweep as a recording would see it (sampled, with observation noise).

    Parameters
    ----------
    model : str or NeuronModel
    preset : str, optional
    values : mapping, optional
        Parameter overrides (numbers in canonical units, or quantities).
    stimulus : float, quantities.Quantity, str, callable or None
        Constant pA (or a current quantity), a stimulus spec string (``"step:amp=48pA,start=100ms,stop=900ms"``), a
        callable of t (ms), or None for the preset's constant current.
    duration : float or quantities.Quantity
        ms (a quantity is rescaled: ``duration=1 * pq.s``).
    rate_hz : float or quantities.Quantity
        Sampling rate of the output in Hz (or a frequency quantity, e.g. ``20 * pq.kHz``).
    dt : float or quantities.Quantity, optional
        Integration step in ms (default: the sampling interval, halved until ≤ 0.025 ms).
    noise : NoiseModel or str, optional
        Observation noise added to the voltage.
    seed : int
        Noise seed.
    y0 : array_like, optional
        Initial state.
    t0 : float or quantities.Quantity
        Time of the first sample, ms.

    Returns
    -------
    trace : Trace
        Noisy voltage (mV) and stimulus (pA) at the sampling times.
    states : numpy.ndarray
        Noise-free states (T, S) at the same times (ground truth of hidden states).
    """
    m = get_model(model)
    duration, dt, t0 = (magnitude_in(x, "ms", name) for name, x in (("duration", duration), ("dt", dt), ("t0", t0)))
    rate_hz = magnitude_in(rate_hz, "Hz", "rate_hz")
    if isinstance(stimulus, pq.Quantity):
        stimulus = magnitude_in(stimulus, "pA", "stimulus")
    for name, x in (("rate_hz", rate_hz), ("duration", duration)):
        if not (is_number(x) and x > 0):
            unit = "Hz" if name == "rate_hz" else "ms"
            raise ConfigurationError(f"{name}={x!r}: give a positive, finite number ({unit}).")
    sample_dt = 1000.0 / float(rate_hz)
    dt, factor = choose_dt(sample_dt, dt, 0.025)
    if isinstance(stimulus, str):
        from .io.stimulus_specs import parse_stimulus

        stimulus = parse_stimulus(stimulus)
        stimulus.check_span(float(t0), float(t0) + float(duration), "the simulated sweep")
    values = m.canonical_values(values, "--set/values:")
    m.check_parameter_values(values, "--set/values:")
    theta = m.theta(values, preset=preset)
    sim = simulate_batch(m, theta, duration=duration, dt=dt, i_ext=stimulus, y0=y0, preset=preset,
                    record_every=factor, t0=t0, device="cpu", dtype=__import__("torch").float64)
    t, y = sim.numpy()
    states = y[0]
    n_model = parse_noise(noise) if isinstance(noise, str) else noise
    v = states[:, 0] if n_model is None else n_model.add_to(states[:, 0], np.random.default_rng(seed))
    if stimulus is None:
        i = np.full_like(t, m.preset(preset).i_ext)
    elif callable(stimulus):
        i = np.asarray(stimulus(t), dtype=float) * np.ones_like(t)
    else:
        i = np.full_like(t, float(stimulus))
    src = "simulation"
    return Trace(t=t, v=v, i_ext=i, stimulus_source=src, sweep=0, source={"kind": "synthetic", "model": m.name}), states


def _sweeps_to_fit(data: Any, sweeps: Any, window, stimulus: Any) -> tuple[list[Trace], tuple | None, list[Trace]]:
    """The sweeps ``estimate`` fits, the window to apply to them (ms from each sweep's start) and the whole sweeps
    (before any window cut: what a forecast is compared with)."""
    from .io.convert import select_sweeps

    if isinstance(data, Trace) or (isinstance(data, (list, tuple)) and data
                                   and all(isinstance(x, Trace) for x in data)):
        traces = [data] if isinstance(data, Trace) else list(data)
        numbers = [tr.sweep for tr in traces]
        chosen = select_sweeps(sweeps, numbers)  # checked even where sweep numbers repeat (then all are fitted)
        traces = [tr for tr in traces if tr.sweep in chosen] if len(set(numbers)) == len(numbers) else traces
        if window is None:
            return traces, None, traces
        # traces given directly: the window is in their own (absolute) time
        whole, traces = traces, [tr.window(*window) for tr in traces]
        check_fit_length(traces, window)
        return traces, (0.0, float("inf")), whole
    rec = data if callable(getattr(data, "traces", None)) else load_recording(data, stimulus=stimulus)
    traces = rec.traces(sweeps=sweeps)
    return traces, window, traces


def estimate(
    data: Any,
    model: str | NeuronModel,
    backend: str = "lsq",
    free: Iterable[str] | None = None,
    *,
    preset: str | None = None,
    values: Mapping[str, float] | None = None,
    init: Mapping[str, float] | str | None = None,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    sweeps: Any = "all",
    window: tuple[float, float] | None = None,
    stimulus: Any = "auto",
    noise: NoiseModel | str | None = None,
    truth: Mapping[str, float] | None = None,
    seed: int | None = 0,
    device: str = "auto",
    dtype: Any = None,
    progress: bool = False,
    backend_options: Mapping[str, Any] | None = None,
    qc: bool = True,
    keep_sweeps: Sequence[int] = (),
    exclude_sweeps: Sequence[int] = (),
    scale_to_cell: bool = True,
    staged: bool | str = "auto",
    validate_on: Any = None,
    allow_unphysiological: bool = False,
) -> EstimationResult:
    """Fit a model to a recording in one call (what ``neo-pinn fit`` runs).

    Before the backend runs, the sweeps are checked (quality control), the cell's passive and active
    properties are measured, and — for a step protocol — the search is scaled to the cell and staged
    (passive parameters first); afterwards the fitted model is simulated on every sweep and judged
    (``result.status``). See :mod:`neo_pinn.cellfit`.

    Parameters
    ----------
    data : path, neo.Block/Segment/AnalogSignal, Recording, Trace or sequence of Trace
        The recording.
    model : str or NeuronModel
    backend : str
        Registered backend name (``neo-pinn plugins`` lists them).
    free : iterable of str, optional
        Parameters to estimate; None: the model's ``default_free`` set (an error for a model without one).
    preset, values, init, bounds
        See :meth:`EstimationProblem.build`; given values win over the cell-scaled ones. Numbers are canonical,
        quantities rescaled (``{"C": 0.1 * pq.nF}`` is 100 pF); a wrong dimension is a ``UnitsError``. ``init`` may
        also be ``"SCHEME:ARGUMENT"``: a plugin's initializer run on the fitted sweeps (e.g. ``"amortized:DIR"``;
        ``neo-pinn plugins`` lists them), recorded in ``result.provenance["initializer"]``.
    sweeps : "all", int or list of int
        Sweeps of a recording to fit jointly (whole numbers, each once); for traces given directly, their
        ``sweep`` numbers.
    window : (float, float) or pair of time quantities, optional
        Time window in ms (quantities rescaled: ``(0.1 * pq.s, 0.4 * pq.s)``), measured from each sweep's start for
        recordings (absolute for traces); None: the step of a step protocol with 100 ms either side, else everything.
        NaN/inf samples inside it are an error naming them.
    stimulus : "auto", spec string, array, current quantity, neo.AnalogSignal or None
        Injected-current source for recordings.
    noise : NoiseModel or str, optional
        Assumed observation noise: a model, a spec (``"ar1:sigma=1mV,rho=0.5"``) or a kind
        (``"white"``, ``"ar1"``) whose parameters the backend estimates.
    truth : mapping, optional
        Ground truth (synthetic data, numbers or quantities), for relative errors.
    seed, device, dtype, progress
        See :meth:`Estimator.fit` (dtype default float64).
    backend_options : mapping, optional
        Backend configuration (``forecast_ms``: a forecast past the window is scored, see ``compare_forecast``).
    qc : bool
        Leave out the sweeps that sweep quality control rejects (see :func:`neo_pinn.cell.check_sweeps`).
    keep_sweeps, exclude_sweeps : sequence of int
        Sweeps forced in or out whatever quality control says.
    scale_to_cell : bool
        Starting values and bounds from the measured cell (False: the model's textbook ranges).
    staged : bool or "auto"
        Passive parameters first, on the subthreshold sweeps ("auto": for multi-sweep step protocols).
    validate_on : sequence of int, float or "alternate", optional
        Sweeps held out of the fit, on which the verdict reports the model's errors.
    allow_unphysiological : bool
        Fit a voltage outside −200 … +150 mV, or within ±1 mV of 0 throughout (most often volts or µV labelled
        mV), as it is instead of refusing it (:func:`neo_pinn.units.check_physiological_voltage`).

    Returns
    -------
    EstimationResult
        With ``status`` (``"failed"``: the fitted model does not behave like the cell), ``verdict``, ``cell``.

    Raises
    ------
    ConfigurationError
        A malformed window, sweeps, bounds, values or init, or an unknown initializer (checked before any file is
        read): ``ParameterDomainError`` for a value outside its domain, ``UnitsError`` for a wrong dimension.
    UnphysiologicalVoltageError
        The fitted voltage is outside the physiological range (unless ``allow_unphysiological``).
    NonFiniteDataError, EmptySignalError
        NaN/inf in the fitted window, or a window too short to fit.
    """
    import torch

    from .cellfit import fit_cell, plan_cell_fit
    from .estimator import check_seed

    m = get_model(model)
    # the backend's, the preparation's and the problem's arguments are checked before any file is read
    est = get_backend(backend)(**dict(backend_options or {}))
    options = _cell_options(est, qc=qc, keep_sweeps=tuple(keep_sweeps), exclude_sweeps=tuple(exclude_sweeps),
                            scale_to_cell=scale_to_cell, staged=staged, validate_on=validate_on,
                            allow_unphysiological=allow_unphysiological)
    window = check_window(window)
    check_seed(seed)
    free = _free_names(m, free)
    init_text = _initializer_text(init)
    values, init, bounds = check_fit_arguments(m, free, values, None if init_text else init, bounds)
    truth = m.canonical_values(truth, "truth") if truth else truth
    traces, window, whole = _sweeps_to_fit(data, sweeps, window, stimulus)
    plan = plan_cell_fit(m, traces, free, options=options, window=window, preset=preset, values=values)
    init, record = _initial_values(m, init_text, plan, free, bounds, device) if init_text else (init, None)
    result = fit_cell(est, m, plan, free, preset=preset, values=values, init=init, bounds=bounds,
                      noise=assumed_noise(noise), truth=truth, fit_kwargs={"seed": seed, "device": device, "dtype":
                      torch.float64 if dtype is None else dtype, "progress": progress})
    return _finish(result, record, whole)


def _finish(result: EstimationResult, record: dict | None, whole: Sequence[Trace]) -> EstimationResult:
    """The result of :func:`estimate`: with the initializer's ``record`` in its provenance, and its forecasts (a
    backend's ``forecast_ms``) compared with the recording (:func:`neo_pinn.forecast.compare_forecast`: ``observed``,
    ``forecast_*`` metrics) when the fit used a window of longer sweeps, so that the recording goes on past it."""
    result = result if record is None else replace(result, provenance=result.provenance | {"initializer": record})
    if not result.signals_of("forecast"):
        return result
    from .forecast import compare_forecast

    by_sweep = {tr.sweep: tr for tr in whole}
    cut = [f.sweep for f in result.fits if f.sweep in by_sweep and f.t.size
           and by_sweep[f.sweep].t[-1] > f.t[-1] + 0.5 * by_sweep[f.sweep].dt]
    return compare_forecast(result, [by_sweep[k] for k in cut]) if cut else result


def _cell_options(est: Any, **options: Any) -> Any:
    """The cell pipeline's options; a backend with a :attr:`~neo_pinn.estimator.Estimator.fixed_protocol` gets no
    automatic step window and no stages (``staged=True`` is refused)."""
    from .cellfit import CellFitOptions

    if est.fixed_protocol and options["staged"] is True:
        raise ConfigurationError(f"The {est.name} backend reads its sweeps as it was trained (one free set, one "
                                 "protocol): fit without stages (staged=False or 'auto').")
    if est.fixed_protocol:
        options |= {"staged": False, "auto_window": False}
    return CellFitOptions(**options)


def _free_names(m: NeuronModel, free: Iterable[str] | None) -> list[str]:
    """The parameters to estimate: ``free``, or the model's ``default_free`` set (an error for a model without one)."""
    if free is None and not m.default_free:
        raise ConfigurationError(f"Name the parameters to estimate, e.g. free=['gCa', 'gK'] (CLI --free); "
                                 f"{m.name} has {', '.join(m.param_names)}.")
    return list(m.default_free if free is None else free)


def _initializer_text(init: Any) -> str | None:
    """``init`` when it is text naming a registered initializer ("SCHEME:ARGUMENT"), None for a mapping.

    Raises
    ------
    ConfigurationError
        Text that is not ``SCHEME:ARGUMENT`` or names no registered initializer (the message lists them).
    """
    if not isinstance(init, str):
        return None
    get_state().initializers.split(init)
    return init


def _initial_values(m: NeuronModel, text: str, plan: Any, free: Sequence[str],
                    bounds: Mapping[str, tuple[float, float]], device: str) -> tuple[dict[str, float], dict[str, Any]]:
    """Run the initializer ``text`` (``estimate(init="SCHEME:ARGUMENT")``) on the sweeps the backend fits.

    The plugin's initializer (``neo-pinn plugins`` lists them) sees the sweeps after sweep selection, quality
    control and the window; its values of the free parameters (canonical units) start the backend. A value outside
    the bounds the fit would hold it to (the user's, or the model's where the search is not scaled to the cell) is
    clipped into them. Returns (values, record); ``result.provenance["initializer"]`` is the record: scheme,
    argument, plugin, the initializer's ``values``, the ``used`` ones and those ``clipped`` (name → its value).
    """
    from .simulation import resolve_device

    values, record = get_state().initializers.initial_values(text, plan.windowed(), m, free,
                                                              str(resolve_device(device)))
    scaled = {} if plan.ranges is None else plan.ranges.bounds
    clipped = {}
    for k, x in values.items():
        if k in bounds or k not in scaled:
            lo, hi = bounds.get(k, m.param_spec(k).bounds)
            if not lo <= x <= hi:
                clipped[k], values[k] = x, min(max(x, lo), hi)
    m.check_parameter_values(values, f"initial guess of the initializer {record['scheme']!r}:")
    return values, record | {"used": dict(values), "clipped": clipped}

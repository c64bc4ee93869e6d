"""The public, high-level API: models, backends, simulation, loading and estimation in a few calls."""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .models.base import NeuronModel
from .noise import NoiseModel, assumed_noise, parse_noise
from .plugins import get_state, stimulus_finder
from .problem import EstimationProblem
from .result import EstimationResult
from .simulation import choose_dt
from .simulation import simulate as simulate_batch
from .trace import Trace

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
    """Batched simulation of a model given by name or instance; see :func:`neo_pinn.simulation.simulate`."""
    return simulate_batch(get_model(model), theta, **kwargs)


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
        Parameter overrides (canonical units).
    stimulus : float, str, callable or None
        Constant pA, a stimulus spec string (``"step:amp=48pA,start=100ms,stop=900ms"``), a callable of
        t (ms), or None for the preset's constant current.
    duration : float
        ms.
    rate_hz : float
        Sampling rate of the output in Hz.
    dt : float, optional
        Integration step in ms (default: the sampling interval, halved until ≤ 0.025 ms).
    noise : NoiseModel or str, optional
        Observation noise added to the voltage.
    seed : int
        Noise seed.
    y0 : array_like, optional
        Initial state.
    t0 : float
        Time of the first sample, ms.

    Returns
    -------
    trace : Trace
        Noisy voltage (mV) and stimulus (pA) at the sampling times.
    states : numpy.ndarray
        Noise-free states (T, S) at the same times (ground truth of hidden states).
    """
    m = get_model(model)
    sample_dt = 1000.0 / float(rate_hz)
    dt, factor = choose_dt(sample_dt, dt, 0.025)
    if isinstance(stimulus, str):
        from .io.stimulus_specs import parse_stimulus

        stimulus = parse_stimulus(stimulus)
    theta = m.theta(dict(values or {}), preset=preset)
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


def estimate(
    data: Any,
    model: str | NeuronModel,
    backend: str = "lsq",
    free: Iterable[str] | None = None,
    *,
    preset: str | None = None,
    values: Mapping[str, float] | None = None,
    init: Mapping[str, float] | None = None,
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
        See :meth:`EstimationProblem.build`; given values win over the cell-scaled ones.
    sweeps : "all", int or list of int
        Sweeps of a recording to fit jointly.
    window : (float, float), optional
        Time window in ms, measured from each sweep's start for recordings (absolute for traces); None: the
        step of a step protocol with 100 ms either side, else everything.
    stimulus : "auto", spec string, array or None
        Injected-current source for recordings.
    noise : NoiseModel or str, optional
        Assumed observation noise: a model, a spec (``"ar1:sigma=1mV,rho=0.5"``) or a kind
        (``"white"``, ``"ar1"``) whose parameters the backend estimates.
    truth : mapping, optional
        Ground truth (synthetic data), for relative errors.
    seed, device, dtype, progress
        See :meth:`Estimator.fit` (dtype default float64).
    backend_options : mapping, optional
        Backend configuration.
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

    Returns
    -------
    EstimationResult
        With ``status`` (``"failed"`` when the fitted model does not behave like the cell), ``verdict``
        and ``cell``.
    """
    import torch

    from .cellfit import CellFitOptions, fit_cell, plan_cell_fit

    m = get_model(model)
    # the backend's and the preparation's options are checked before any file is read: a typo fails at once
    est = get_backend(backend)(**dict(backend_options or {}))
    options = CellFitOptions(qc=qc, keep_sweeps=tuple(keep_sweeps), exclude_sweeps=tuple(exclude_sweeps),
                             scale_to_cell=scale_to_cell, staged=staged, validate_on=validate_on)
    if isinstance(data, Trace):
        traces: Sequence[Trace] = [data]
    elif isinstance(data, (list, tuple)) and data and all(isinstance(x, Trace) for x in data):
        traces = list(data)
    else:
        rec = data if callable(getattr(data, "traces", None)) else load_recording(data, stimulus=stimulus)
        traces = rec.traces(sweeps=sweeps)
    if window is not None and isinstance(data, (Trace, list, tuple)):
        # traces given directly: the window is in their own (absolute) time
        traces = [tr.window(*window) for tr in traces]
        window = (0.0, float("inf"))
    if free is None:
        if not m.default_free:
            EstimationProblem.build(m, traces, None)  # raises, naming the model's parameters
        free = m.default_free
    free = list(free)
    plan = plan_cell_fit(m, traces, free, options=options, window=window, preset=preset, values=values)
    return fit_cell(est, m, plan, free, preset=preset, values=values, init=init, bounds=bounds,
                    noise=assumed_noise(noise), truth=truth,
                    fit_kwargs={"seed": seed, "device": device,
                                "dtype": torch.float64 if dtype is None else dtype, "progress": progress})

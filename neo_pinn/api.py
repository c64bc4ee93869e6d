"""The public, high-level API: models, backends, simulation, loading and estimation in a few calls."""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .errors import ConfigurationError
from .models.base import NeuronModel
from .noise import NoiseModel, parse_noise
from .problem import EstimationProblem
from .result import EstimationResult
from .trace import Trace

__all__ = ["get_model", "get_backend", "list_models", "list_backends", "simulate", "load_recording",
           "estimate", "synthetic_trace"]


def get_model(name: str | NeuronModel) -> NeuronModel:
    """Return the registered model ``name`` (a model instance is passed through)."""
    if isinstance(name, NeuronModel):
        return name
    from .plugins import get_state

    return get_state().models.get(name)


def get_backend(name: str):
    """Return the registered Estimator subclass ``name``."""
    from .plugins import get_state

    return get_state().backends.get(name)


def list_models() -> dict[str, str]:
    """Registered model names → the plugin that registered each."""
    from .plugins import get_state

    reg = get_state().models
    return {n: reg.origin(n) for n in reg.names()}


def list_backends() -> dict[str, str]:
    """Registered backend names → the plugin that registered each."""
    from .plugins import get_state

    reg = get_state().backends
    return {n: reg.origin(n) for n in reg.names()}


def simulate(model: str | NeuronModel, theta: Any = None, **kwargs: Any):
    """Batched simulation of a model given by name or instance; see :func:`neo_pinn.simulate.simulate`."""
    from .simulate import simulate as _simulate

    return _simulate(get_model(model), theta, **kwargs)


def load_recording(source: Any, **kwargs: Any):
    """Load a recording (file path or Neo object); see :func:`neo_pinn.io.load_recording`."""
    from .io import load_recording as _load

    return _load(source, **kwargs)


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
    from .simulate import simulate as _simulate

    m = get_model(model)
    sample_dt = 1000.0 / float(rate_hz)
    if dt is None:
        factor = 1
        while sample_dt / factor > 0.025:
            factor += 1
        dt = sample_dt / factor
    factor = int(round(sample_dt / dt))
    if abs(factor * dt - sample_dt) > 1e-9 * sample_dt:
        raise ConfigurationError(f"The sampling interval {sample_dt} ms must be a whole multiple of dt = {dt} ms.")
    if isinstance(stimulus, str):
        from .io.stimulus import parse_stimulus

        stimulus = parse_stimulus(stimulus)
    theta = m.theta(dict(values or {}), preset=preset)
    sim = _simulate(m, theta, duration=duration, dt=dt, i_ext=stimulus, y0=y0, preset=preset,
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
    progress: bool = False,
    backend_options: Mapping[str, Any] | None = None,
) -> EstimationResult:
    """Fit a model to a recording in one call.

    Parameters
    ----------
    data : path, neo.Block/Segment/AnalogSignal, Trace or sequence of Trace
        The recording.
    model : str or NeuronModel
    backend : str
        Registered backend name (``neo-pinn plugins`` lists them).
    free : iterable of str
        Parameters to estimate; required (None raises ConfigurationError listing the model's parameters).
    preset, values, init, bounds
        See :meth:`EstimationProblem.build`.
    sweeps : "all", int or list of int
        Sweeps of a recording to fit jointly.
    stimulus : "auto", spec string, array or None
        Injected-current source for recordings.
    seed, device, progress
        See :meth:`Estimator.fit`.
    backend_options : mapping, optional
        Backend configuration.

    Returns
    -------
    EstimationResult
    """
    m = get_model(model)
    if free is None:
        raise ConfigurationError(f"Name the parameters to estimate, e.g. free=['gCa', 'gK']; {m.name} has "
                                 f"{', '.join(m.param_names)}.")
    if isinstance(data, Trace):
        traces: Sequence[Trace] = [data]
    elif isinstance(data, (list, tuple)) and data and all(isinstance(x, Trace) for x in data):
        traces = list(data)
    else:
        # A recording's window is measured from each sweep's start, so it is applied while converting.
        rec = load_recording(data, stimulus=stimulus)
        traces = rec.traces(sweeps=sweeps, window=window)
        window = None
    nm = parse_noise(noise) if isinstance(noise, str) else noise
    problem = EstimationProblem.build(m, traces, free, preset=preset, values=values, init=init, bounds=bounds,
                                      noise=nm, window=window, truth=truth)
    est = get_backend(backend)(**dict(backend_options or {}))
    return est.fit(problem, seed=seed, device=device, progress=progress)



"""Benchmark recordings made by an independent solver, never by the simulator the fits use.

A fit tested on data from its own simulator shares that simulator's step, its stimulus convention and its
rounding with the data (the "inverse crime") and looks better than it is. These recordings are solved by
scipy's stiff adaptive solvers at tight tolerance (:func:`neo_pinn.reference.reference_solution`), with the
stimulus as a continuous-time function whose steps restart the solver at their edges, then sampled like
an amplifier samples (the command held over each sample interval), given observation noise and written to
NWB, so a benchmark reads them back through the same door as a user's file.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import ConfigurationError
from ..io.stimulus_specs import StimulusSpec, parse_stimulus
from ..models.base import NeuronModel
from ..noise import parse_noise
from ..reference import reference_solution
from ..api import get_model
from ..trace import Trace

__all__ = ["stimulus_edges", "reference_sweeps", "write_reference_recording"]

SOLVER = {"method": "Radau", "rtol": 1e-10, "atol": 1e-12}


def stimulus_edges(spec: StimulusSpec, duration: float) -> list[float]:
    """Times (ms) in ``(0, duration)`` where a stimulus spec jumps or bends (its protocol edges)."""
    p = dict(spec.params)
    if spec.kind in ("step", "ramp"):
        edges = [p.get("start", 0.0), p.get("stop", math.inf)]
    elif spec.kind == "pulses":
        n = p.get("n", math.inf)
        k_max = int(min(n, math.ceil((duration - p["start"]) / p["period"]) + 1))
        edges = [p["start"] + k * p["period"] + w for k in range(max(k_max, 0)) for w in (0.0, p["width"])]
    else:
        edges = []
    return sorted(e for e in edges if 0.0 < e < duration)


def _as_spec(stimulus: Any) -> StimulusSpec:
    if isinstance(stimulus, StimulusSpec):
        return stimulus
    if isinstance(stimulus, (int, float)):
        return parse_stimulus(f"const:amp={float(stimulus)!r}pA")
    return parse_stimulus(str(stimulus))


def reference_sweeps(model: str | NeuronModel, stimuli: Sequence[Any], *, duration: float, rate_hz: float,
                     values: Mapping[str, float] | None = None, preset: str | None = None,
                     noise: str | None = "white:sigma=1mV", seed: int = 0, settle_ms: float = 500.0,
                     solver: Mapping[str, Any] | None = None) -> tuple[list[Trace], list[np.ndarray]]:
    """Solve one sweep per stimulus with scipy and sample it as a recording.

    Parameters
    ----------
    model : str or NeuronModel
    stimuli : sequence
        One stimulus per sweep: a spec string (``"step:amp=10pA,start=20ms,stop=180ms"``), a
        :class:`StimulusSpec` or a constant in pA. Times are ms since the sweep's start.
    duration : float
        Sweep length, ms.
    rate_hz : float
        Sampling rate, Hz.
    values : mapping, optional
        Parameter values overriding the preset's (canonical units): the ground truth.
    preset : str, optional
    noise : str or None
        Observation noise added to the voltage (``"white:sigma=1mV"``, ``"ar1:..."``, None).
    seed : int
        Seed of the noise.
    settle_ms : float
        Each sweep starts from the state reached after this long at the sweep's initial current, so it
        starts at rest like a cell held before the protocol.
    solver : mapping, optional
        ``solve_ivp`` settings (default Radau, rtol 1e-10, atol 1e-12).

    Returns
    -------
    traces : list of Trace
        Noisy voltage (mV) and the command (pA) held over each sample interval, one per sweep.
    states : list of numpy.ndarray
        The noise-free states (T, S) at the samples.
    """
    m = get_model(model) if isinstance(model, str) else model
    if not (rate_hz > 0 and duration > 0 and math.isfinite(rate_hz * duration)):
        raise ConfigurationError("duration (ms) and rate_hz must be positive and finite.")
    settings = {**SOLVER, **dict(solver or {})}
    theta = m.theta(dict(values or {}), preset=preset)
    sample_dt = 1000.0 / float(rate_hz)
    n = int(round(duration / sample_dt))
    t = sample_dt * np.arange(n + 1)
    noise_model = parse_noise(noise) if noise else None
    rng = np.random.default_rng(seed)
    traces, states = [], []
    for k, stim in enumerate(stimuli):
        spec = _as_spec(stim)
        i0 = float(spec.sample(np.array([0.5 * sample_dt]))[0])
        y0 = m.initial_state(preset)
        if settle_ms > 0:
            _, ys = reference_solution(m, theta, duration=settle_ms, t_eval=np.array([settle_ms]), i_ext=i0, y0=y0,
                                       **settings)
            y0 = ys[-1]
        tt, y = reference_solution(m, theta, duration=t[-1], t_eval=t, y0=y0, breakpoints=stimulus_edges(spec, t[-1]),
                                   i_ext=lambda s, spec=spec: float(spec.sample(np.array([s]))[0]), **settings)
        # the command as an amplifier samples it: the value held over [t_k, t_k+1), read at the interval's middle
        i_held = spec.sample(t + 0.5 * sample_dt)
        v = y[:, 0] if noise_model is None else noise_model.add_to(y[:, 0], rng)
        traces.append(Trace(t=tt, v=v, i_ext=i_held, stimulus_source="simulation", sweep=k,
                            source={"kind": "reference", "model": m.name}))
        states.append(y)
    return traces, states


def write_reference_recording(path: str | os.PathLike, model: str | NeuronModel, stimuli: Sequence[Any], *,
                              overwrite: bool = False, **kwargs: Any) -> tuple[Path, list[Trace]]:
    """Write :func:`reference_sweeps` to an NWB file with its ground truth; returns the path and the sweeps.

    Parameters
    ----------
    path : str or os.PathLike
        Target ``.nwb`` file (written atomically).
    model, stimuli, **kwargs
        As for :func:`reference_sweeps`.
    overwrite : bool
        Replace an existing file.
    """
    from ..io.synthetic_nwb import write_icephys_nwb

    m = get_model(model) if isinstance(model, str) else model
    traces, _ = reference_sweeps(m, stimuli, **kwargs)
    preset = kwargs.get("preset")
    truth = m.param_values(preset) if preset or m.default_preset else {}
    truth = {**truth, **dict(kwargs.get("values") or {})}
    # "parameters": the ground truth, under the key `neo-pinn fit` reads from the files of `neo-pinn simulate`
    meta = {"model": m.name, "preset": preset, "parameters": truth, "stimuli": [str(_as_spec(s)) for s in stimuli],
            "noise": kwargs.get("noise", "white:sigma=1mV"), "seed": kwargs.get("seed", 0),
            "rate_hz": kwargs.get("rate_hz"), "duration_ms": kwargs.get("duration"),
            "generator": "scipy solve_ivp " + ", ".join(f"{k}={v}" for k, v in
                                                        {**SOLVER, **dict(kwargs.get("solver") or {})}.items())}
    out = write_icephys_nwb(path, traces, metadata=meta, overwrite=overwrite,
                            session_description="Recording solved by scipy (independent reference solver) "
                                                "with known ground truth")
    return Path(out), traces

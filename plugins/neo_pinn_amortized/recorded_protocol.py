"""The protocol of a recording: what an estimator must be trained for to read one of its sweeps.

:func:`protocol_of_recording` takes one sweep of a recording (optionally cut by a window measured from the sweep's
start, as ``neo-pinn fit --window`` cuts it), and gives the :class:`~.training_set.Protocol` of its sampling
interval, its length and its injected current written as one stimulus spec (:func:`spec_of_current`). A current
that one spec cannot reproduce — several different steps, a ramp, a noisy monitor channel — is refused with what
was found: the amortized backend compares every sweep's current with its estimator's protocol sample by sample
(:func:`.backend.check_sweeps`), with the same tolerance used here.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from neo_pinn.errors import ConfigurationError, StimulusError
from neo_pinn.io import load_recording
from neo_pinn.io.stimulus_specs import parse_stimulus
from neo_pinn.io.stimulus_steps import describe_steps, summarize_steps
from neo_pinn.plugins import stimulus_finder
from neo_pinn.storage import check_input_file
from neo_pinn.trace import Trace, check_window

from .backend import STIMULUS_SLACK
from .training_set import Protocol

__all__ = ["protocol_of_recording", "spec_of_current", "sweep_of_recording"]


def _num(x: float) -> str:
    """A time of a spec (ms): rounded to a millionth of a ms, no trailing zeros."""
    value = round(float(x), 6)
    return format(0.0 if value == 0 else value, ".12g")


def _amp(x: float) -> str:
    """A current of a spec (pA): six significant digits (a float32 recording's 1399.999991 is 1400)."""
    value = float(f"{float(x):.6g}")
    return format(0.0 if value == 0 else value, ".12g")


def _mismatch(spec: str, t_ms: np.ndarray, i_pA: np.ndarray) -> float | None:
    """The largest difference (pA) when ``spec`` does not reproduce the current as the backend checks it, else None."""
    expected = parse_stimulus(spec).sample(t_ms)
    diff = np.abs(i_pA - expected)
    tol = 1e-3 + 1e-2 * float(np.max(np.abs(expected)))
    return float(diff.max()) if np.mean(diff > tol) > STIMULUS_SLACK else None


def _candidate(epochs: list[dict], tol: float) -> str | None:
    """One spec for the epochs of :func:`summarize_steps`: zero, constant, one step, or a pulse train; else None."""
    kinds = [e.get("kind", "step") for e in epochs]
    lv = [e["amplitude_pA"] for e in epochs]
    if kinds == ["step"]:
        return "zero" if abs(lv[0]) <= tol else f"const:amp={_amp(lv[0])}pA"
    if kinds == ["step", "step"]:
        return f"step:amp={_amp(lv[1] - lv[0])}pA,start={_num(epochs[1]['start_ms'])}ms,base={_amp(lv[0])}pA"
    if kinds == ["step", "step", "step"] and abs(lv[2] - lv[0]) <= tol:
        return (f"step:amp={_amp(lv[1] - lv[0])}pA,start={_num(epochs[1]['start_ms'])}ms,"
                f"stop={_num(epochs[1]['stop_ms'])}ms,base={_amp(lv[0])}pA")
    if "pulses" in kinds and kinds.count("pulses") == 1 and set(kinds) <= {"step", "pulses"} and len(epochs) <= 3:
        k = kinds.index("pulses")
        p = epochs[k]
        around = [e["amplitude_pA"] for e in epochs if e is not p]
        if k > 1 or not all(abs(b - p["base_pA"]) <= tol for b in around):
            return None
        return (f"pulses:amp={_amp(p['amplitude_pA'] - p['base_pA'])}pA,start={_num(p['start_ms'])}ms,"
                f"width={_num(p['width_ms'])}ms,period={_num(p['period_ms'])}ms,n={int(p['n'])},"
                f"base={_amp(p['base_pA'])}pA")
    return None


def spec_of_current(t_ms: Any, i_pA: Any, what: str = "the sweep") -> str:
    """The stimulus spec of a sampled current: ``zero``, ``const``, one ``step`` (with its base) or ``pulses``.

    Parameters
    ----------
    t_ms : array_like
        Sample times, ms **from the start of the sweep (or window)**: the spec's times count from there.
    i_pA : array_like
        The injected current, pA.
    what : str
        The sweep, for the message.

    Returns
    -------
    str
        A spec that reproduces the current sample by sample within the amortized backend's tolerance
        (1e-3 pA + 1 % of the largest current, on all but 1 % of the samples), e.g.
        ``"step:amp=48pA,start=10ms,stop=90ms"``.

    Raises
    ------
    StimulusError
        The current is not zero, a constant, one step or a regular pulse train on a constant base (the message
        describes what it is and what to do).
    """
    t = np.asarray(t_ms, dtype=float).reshape(-1)
    i = np.asarray(i_pA, dtype=float).reshape(-1)
    if t.size != i.size or t.size < 2:
        raise StimulusError(f"The current of {what} needs as many samples as its times (at least 2).")
    if not np.all(np.isfinite(i)):
        raise StimulusError(f"The injected current of {what} holds NaN or infinite samples; it has no protocol.")
    epochs = summarize_steps(t, i)
    tol = max(1e-3, 1e-2 * float(np.max(np.abs(i))))
    spec = _candidate(epochs, tol)
    worst = None if spec is None else _mismatch(spec, t, i)
    if spec is None or worst is not None:
        seen = describe_steps(epochs)
        why = (f"its closest spec {spec!r} differs from it by up to {worst:.4g} pA (a noisy or drifting current)"
               if spec is not None else "that is not zero, a constant, one step or a regular pulse train")
        raise StimulusError(f"The injected current of {what} is not a sum of steps one stimulus spec reproduces "
                            f"(found: {seen}; {why}). An amortized estimator is trained for one spec (zero, const, "
                            "step or pulses): choose a window holding one step (--window T0:T1, ms from the sweep "
                            "start), or give the protocol as a spec, e.g. --protocol step:amp=48pA,start=10ms,"
                            "stop=90ms with --duration and --rate.")
    return parse_stimulus(spec).to_string()  # defaults (base 0, stop ∞) left out


def sweep_of_recording(recording: Any, sweep: int = 0, window: tuple[float, float] | None = None) -> Trace:
    """One sweep of a recording, cut to ``window`` (ms from the sweep's start) as a fit cuts it.

    Parameters
    ----------
    recording : path, Recording, neo object or Trace
        A file (read with :func:`neo_pinn.io.load_recording` and every plugin's stimulus finder), a loaded
        recording, a Neo Block/Segment/AnalogSignal, or one :class:`~neo_pinn.trace.Trace` (then ``sweep`` is
        ignored).
    sweep : int
        Sweep number (negative: from the end).
    window : (float, float), optional
        ``(t0, t1)`` in ms from the sweep's first sample, both ends included (quantities rescaled).

    Returns
    -------
    Trace
    """
    window = check_window(window)
    if isinstance(recording, Trace):
        trace = recording
    else:
        if isinstance(recording, (str, os.PathLike)):
            recording = load_recording(check_input_file(recording, "Recording file"),
                                       stimulus_finder=stimulus_finder())
        elif not callable(getattr(recording, "traces", None)):
            recording = load_recording(recording, stimulus_finder=stimulus_finder())
        if isinstance(sweep, bool) or not isinstance(sweep, (int, np.integer)):
            raise ConfigurationError(f"sweep={sweep!r}: give one sweep number (a whole number).")
        trace = recording.traces(sweeps=[int(sweep)])[0]
    if window is None:
        return trace
    t0 = float(trace.t[0])
    return trace.window(None if window[0] is None else t0 + window[0], None if window[1] is None else t0 + window[1])


def protocol_of_recording(recording: Any, sweep: int = 0, window: tuple[float, float] | None = None) -> Protocol:
    """The :class:`~.training_set.Protocol` of one sweep of a recording: train an estimator that reads it.

    Parameters
    ----------
    recording : path, Recording, neo object or Trace
        See :func:`sweep_of_recording`.
    sweep : int
        Sweep number (default 0; negative: from the end).
    window : (float, float), optional
        ``(t0, t1)`` in ms from the sweep's start. Fit with the same window (``neo-pinn fit --window T0:T1``,
        ``estimate(window=...)``): the estimator reads exactly the samples the window holds, its stimulus times
        count from the window's first sample, and its training simulations start there from the preset's initial
        state (so start the window where the cell rests).

    Returns
    -------
    Protocol
        Sampling interval (ms, rounded to 9 significant digits), length (samples × interval, ms) and the current
        as one stimulus spec (:func:`spec_of_current`).

    Raises
    ------
    StimulusError
        The current is not one spec (several steps, a ramp, a noisy channel); the message says what it is.
    NeoPinnError
        The file is not a recording (:class:`~neo_pinn.errors.RecordingFormatError`), it has no stimulus, the
        sweep does not exist, the window holds fewer than two samples, ...

    Examples
    --------
    >>> protocol_of_recording("cell.nwb", sweep=3, window=(0, 400))   # doctest: +SKIP
    Protocol(duration_ms=400.2, sample_dt_ms=0.2, stimulus='step:amp=60pA,start=20ms')
    """
    window = check_window(window)
    trace = sweep_of_recording(recording, sweep, window)
    n = trace.t.size
    dt = float(f"{trace.dt:.9g}")
    t_rel = trace.t - trace.t[0]
    ends = ["…" if w is None else f"{w:g}" for w in window or ()]
    label = f"sweep {trace.sweep}" + (f" in the window {ends[0]}–{ends[1]} ms" if ends else "")
    spec = spec_of_current(t_rel, trace.i_ext, label)
    return Protocol(float(f"{n * dt:.12g}"), dt, spec)

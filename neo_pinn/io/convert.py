"""The one boundary between Neo objects (with units) and plain float arrays in canonical units.

* :func:`block_to_traces` turns an annotated Neo tree (as built by :func:`neo_pinn.io.load_recording`,
  or one a user annotated or edited the same way) into :class:`~neo_pinn.trace.Trace` objects: the
  signal with ``neo_pinn_role="voltage"`` and ``neo_pinn_sweep=k`` is sweep k's membrane voltage, the
  signal of the same segment with ``neo_pinn_role="stimulus"`` and the same sweep is its injected
  current. A user may replace either before fitting.
* :func:`trace_to_signals` and :func:`array_to_signal` go the other way, for results and simulations.

Times in a :class:`Trace` are **absolute**: the Neo signal's own times converted to ms (``t_start`` is
kept), so results attach back at the right place. Sampling rates within 1e-9 (relative) of a round value
are snapped to it (ABF1 files store e.g. 25000.000000000004 Hz), so equal recordings give equal times.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import quantities as pq

from ..errors import (
    ConfigurationError,
    NoVoltageChannelError,
    StimulusNotFoundError,
    UnitsError,
    VoltageClampError,
)
from ..trace import Trace, check_window, zero_order_hold
from ..units import dimension_of, to_canonical

__all__ = [
    "ROLE_VOLTAGE",
    "ROLE_STIMULUS",
    "ROLE_CLAMP_CURRENT",
    "clean_rate",
    "signal_times_ms",
    "signal_to_canonical",
    "signal_to_trace",
    "block_to_traces",
    "array_to_signal",
    "trace_to_signals",
    "STIMULUS_HINT",
    "format_ranges",
    "select_sweeps",
]

ROLE_VOLTAGE = "voltage"
ROLE_STIMULUS = "stimulus"
ROLE_CLAMP_CURRENT = "clamp_current"

STIMULUS_HINT = (
    'pass the injected current yourself, e.g. load_recording(..., stimulus="step:amp=50pA,start=100ms,'
    'stop=900ms") (CLI: --stimulus "step:amp=50pA,start=100ms,stop=900ms"), a CSV file (t_ms,i_pA) or an '
    'array in pA; or stimulus="zero" if no current was injected'
)


def clean_rate(rate_hz: float) -> float:
    """Snap a sampling rate (Hz) to 6 decimals when it is within 1e-9 (relative) of that value."""
    r = float(rate_hz)
    snapped = round(r, 6)
    return snapped if abs(r - snapped) <= 1e-9 * abs(r) else r


def _rate_hz(sig) -> float:
    return clean_rate(float(sig.sampling_rate.rescale("Hz").magnitude))


def signal_times_ms(sig) -> np.ndarray:
    """Absolute sample times of a (regularly sampled) Neo signal in ms, shape (T,)."""
    t0 = float(sig.t_start.rescale("ms").magnitude)
    return t0 + np.arange(sig.shape[0], dtype=float) * (1000.0 / _rate_hz(sig))


def signal_to_canonical(sig, kind: str, channel: int = 0) -> np.ndarray:
    """One channel of a Neo signal as floats in the canonical unit of ``kind`` (mV, pA, ...).

    Parameters
    ----------
    sig : neo.AnalogSignal or quantities.Quantity
        The signal, shape (T,) or (T, C).
    kind : str
        Expected dimension (``"voltage"``, ``"current"``); other units raise ``UnitsError``.
    channel : int
        Column to take from a 2-D signal.

    Returns
    -------
    numpy.ndarray
        Float64 values, shape (T,).
    """
    if not isinstance(sig, pq.Quantity):
        raise UnitsError(f"Expected a Neo signal or a quantities array with units, got {type(sig).__name__}.")
    col = sig[:, channel] if sig.ndim > 1 else sig
    found = dimension_of(sig.units)
    if found != kind:
        raise UnitsError(f"Signal {getattr(sig, 'name', None)!r} is in {sig.units.dimensionality.string}, "
                         f"not a {kind}; choose another channel.")
    return np.asarray(to_canonical(col, kind=kind), dtype=float).reshape(-1)


def signal_to_trace(voltage, stimulus=None, *, sweep: int = 0, stimulus_source: str = "none",
                    source: dict | None = None) -> Trace:
    """Build one :class:`Trace` from a voltage signal and an optional current signal.

    Parameters
    ----------
    voltage : neo.AnalogSignal
        Membrane voltage (any voltage unit), one channel.
    stimulus : neo.AnalogSignal or numpy.ndarray, optional
        Injected current: a Neo signal (any current unit; resampled by linear interpolation when its
        times differ) or an array in pA at the voltage's samples. None means zero current.
    sweep : int
        Sweep index stored in the trace.
    stimulus_source : str
        Source name stored in the trace.
    source : dict, optional
        Provenance stored in the trace.

    Returns
    -------
    Trace
        t in ms (absolute), v in mV, i_ext in pA.
    """
    v = signal_to_canonical(voltage, "voltage")
    t = signal_times_ms(voltage)
    if stimulus is None:
        i = np.zeros_like(v)
    elif isinstance(stimulus, pq.Quantity) and hasattr(stimulus, "sampling_rate"):
        i = signal_to_canonical(stimulus, "current")
        ts = signal_times_ms(stimulus)
        if i.size != v.size or not np.allclose(ts, t, rtol=0, atol=0.25 * 1000.0 / _rate_hz(voltage)):
            if ts[0] > t[0] + 1e-9 or ts[-1] < t[-1] - 1e-9:
                raise ConfigurationError(
                    f"The stimulus of sweep {sweep} covers {ts[0]:.3f}–{ts[-1]:.3f} ms but the voltage "
                    f"{t[0]:.3f}–{t[-1]:.3f} ms; give a stimulus spanning the whole sweep.")
            i = zero_order_hold(ts, i, t)
    else:
        i = np.asarray(stimulus, dtype=float).reshape(-1)
        if i.size != v.size:
            raise ConfigurationError(f"The stimulus of sweep {sweep} has {i.size} samples, the voltage {v.size}.")
    return Trace(t=t, v=v, i_ext=i, stimulus_source=stimulus_source, sweep=sweep, source=dict(source or {}))


def select_sweeps(sweeps, available: list[int]) -> list[int]:
    """The sweeps ``sweeps`` names among ``available`` (sweep numbers 0..n-1), each once.

    Parameters
    ----------
    sweeps : "all", None, int or sequence of int
        Whole numbers (negative ones count from the end); a bool, a fraction or a repeated sweep is refused.
    available : list of int
        The sweep numbers there are.

    Returns
    -------
    list of int

    Raises
    ------
    ConfigurationError
        A value that is not a whole number, a missing sweep or one listed twice.
    """
    if sweeps is None or (isinstance(sweeps, str) and sweeps == "all"):
        return list(available)
    def index(x):
        # True is not sweep 1 and 1.5 is not sweep 1: only whole numbers name sweeps
        if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)):
            raise ConfigurationError(f"sweeps={sweeps!r}: give 'all', a sweep index or a list of indices "
                                     f"(whole numbers); {x!r} is not one.")
        return int(x)

    if isinstance(sweeps, str):
        raise ConfigurationError(f"sweeps={sweeps!r}: give 'all', an index or a list of indices.")
    wanted = [index(s) for s in sweeps] if isinstance(sweeps, (list, tuple, np.ndarray, range)) else [index(sweeps)]
    n = len(available)
    out = []
    for s in wanted:
        k = s + n if s < 0 else s
        if k not in available:
            raise ConfigurationError(f"No sweep {s}; this recording has sweeps 0–{n - 1}.")
        if k in out:
            raise ConfigurationError(f"Sweep {k} is listed twice in sweeps={sweeps!r}; a sweep counted twice would "
                                     "weigh double and shrink the reported uncertainty. List each sweep once.")
        out.append(k)
    return out


def block_to_traces(block, sweeps="all", window=None, provenance: dict | None = None) -> list[Trace]:
    """Traces of the role-annotated sweeps of a Neo tree.

    Parameters
    ----------
    block : neo.Block
        A tree whose voltage signals carry ``neo_pinn_role="voltage"`` and ``neo_pinn_sweep``, and whose
        stimulus signals carry ``neo_pinn_role="stimulus"`` and the same ``neo_pinn_sweep`` in the same
        segment (see :func:`neo_pinn.io.load_recording`).
    sweeps : "all", int or list of int
        Which sweeps (negative indices count from the end).
    window : (float, float), optional
        Keep ``t0 <= t - t_sweep_start <= t1``: ms **since each sweep's start**; either end may be None.
    provenance : dict, optional
        Extra entries for every trace's ``source`` (file, sha256, format).

    Returns
    -------
    list of Trace
        In sweep order.

    Raises
    ------
    VoltageClampError
        The tree holds clamp currents but no membrane voltage.
    StimulusNotFoundError
        A sweep has no stimulus and was not declared stimulus-free.
    """
    found: dict[int, tuple[Any, Any]] = {}
    clamp = False
    for seg in block.segments:
        for sig in seg.analogsignals:
            role = sig.annotations.get("neo_pinn_role")
            if role == ROLE_CLAMP_CURRENT:
                clamp = True
            if role != ROLE_VOLTAGE:
                continue
            k = int(sig.annotations.get("neo_pinn_sweep", len(found)))
            if k in found:
                raise ConfigurationError(f"Two voltage signals are marked as sweep {k}; give each its own "
                                         "neo_pinn_sweep.")
            found[k] = (seg, sig)
    if not found:
        if clamp:
            raise VoltageClampError(
                "This looks like a voltage-clamp recording (its channels are currents, no membrane voltage); "
                "parameter estimation needs a current-clamp recording of the membrane voltage.")
        raise NoVoltageChannelError("No signal is marked neo_pinn_role='voltage'; load the data with "
                                    "neo_pinn.io.load_recording(), or annotate the membrane voltage yourself.")
    available = sorted(found)
    chosen = select_sweeps(sweeps, available)
    missing = []
    out = []
    for k in chosen:
        seg, vsig = found[k]
        source_name = str(vsig.annotations.get("neo_pinn_stimulus_source", "not-found"))
        stim = None
        for sig in seg.analogsignals:
            ann = sig.annotations
            if ann.get("neo_pinn_role") == ROLE_STIMULUS and int(ann.get("neo_pinn_sweep", -1)) == k:
                stim = sig
                break
        if stim is None and source_name != "none":
            missing.append(k)
            continue
        info = {
            "signal": str(vsig.name),
            "channel": str(vsig.annotations.get("neo_pinn_channel", vsig.name)),
            "segment": int(vsig.annotations.get("neo_pinn_segment_index", 0)),
            "stimulus_signal": None if stim is None else str(stim.name),
            "stimulus_detail": vsig.annotations.get("neo_pinn_stimulus_detail"),
        }
        info.update(provenance or {})
        if stim is not None:
            source_name = str(stim.annotations.get("neo_pinn_stimulus_source", source_name))
        trace = signal_to_trace(vsig, stim, sweep=k, stimulus_source=source_name, source=info)
        if window is not None:
            t0, t1 = check_window(window)
            start = trace.t[0]
            trace = trace.window(None if t0 is None else start + float(t0), None if t1 is None else start + float(t1))
        out.append(trace)
    if missing:
        detached = any(found[k][1].annotations.get("neo_pinn_detached") for k in missing)
        lone = (" The voltage signal was given without its Segment (Neo's time_slice drops it), so a current recorded "
                "beside it cannot be found: pass stimulus=<the current AnalogSignal> (matched by time, it may span the "
                "whole sweep), or slice the whole Segment (segment.time_slice(t0, t1)).") if detached else ""
        raise StimulusNotFoundError(
            f"No injected current was found for sweep(s) {format_ranges(missing)} of this recording; {STIMULUS_HINT}."
            f"{lone}")
    return out


def format_ranges(ks: Iterable[int]) -> str:
    """Sweep numbers as short text for messages: ``"0, 2, 3"``, or ``"0–15 (16 sweeps)"`` beyond six."""
    ks = sorted(ks)
    if len(ks) > 6:
        return f"{ks[0]}–{ks[-1]} ({len(ks)} sweeps)"
    return ", ".join(str(k) for k in ks)


def array_to_signal(values, units: str, t_start_ms: float, sampling_rate_hz: float, name: str | None = None,
                    **annotations):
    """Wrap a float array as a ``neo.AnalogSignal``.

    Parameters
    ----------
    values : array_like
        Shape (T,) or (T, C), in ``units``.
    units : str
        Unit symbol (``"mV"``, ``"pA"``).
    t_start_ms : float
        Time of the first sample in ms.
    sampling_rate_hz : float
        Sampling rate in Hz.
    name : str, optional
        Signal name.
    **annotations
        Annotations for the signal.

    Returns
    -------
    neo.AnalogSignal
    """
    import neo

    return neo.AnalogSignal(np.asarray(values, dtype=float), units=units, t_start=float(t_start_ms) * pq.ms,
                            sampling_rate=float(sampling_rate_hz) * pq.Hz, name=name, **annotations)


def trace_to_signals(trace: Trace, name: str | None = None):
    """A :class:`Trace` as two Neo signals.

    Parameters
    ----------
    trace : Trace
        Uniformly sampled trace (t in ms, v in mV, i_ext in pA).
    name : str, optional
        Base name; the signals are named ``name`` and ``name + ".stimulus"`` (default ``"sweep<k>"``).

    Returns
    -------
    (neo.AnalogSignal, neo.AnalogSignal)
        Voltage in mV and injected current in pA, both starting at ``trace.t[0]`` ms, annotated with
        ``neo_pinn_role`` (``"voltage"`` / ``"stimulus"``), ``neo_pinn_sweep`` and
        ``neo_pinn_stimulus_source``.
    """
    base = name or f"sweep{trace.sweep}"
    rate = clean_rate(1000.0 / trace.dt)
    common = {"neo_pinn_sweep": int(trace.sweep), "neo_pinn_stimulus_source": str(trace.stimulus_source)}
    v = array_to_signal(trace.v, "mV", trace.t[0], rate, name=base, neo_pinn_role=ROLE_VOLTAGE, **common)
    i = array_to_signal(trace.i_ext, "pA", trace.t[0], rate, name=f"{base}.stimulus", neo_pinn_role=ROLE_STIMULUS,
                        **common)
    return v, i

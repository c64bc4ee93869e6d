"""Summaries of sampled step protocols: epochs, their text, the step of a family of sweeps, and whether two
current waveforms agree.

:func:`summarize_steps` turns a sampled current (a protocol or a recorded channel) into piecewise-constant epochs;
:func:`describe_steps` writes them as compact text; :func:`step_amplitudes` finds the step that changes from sweep to
sweep in a family of sweeps (the "steps -50 to +100 pA" of an I–V or F–I protocol); :func:`describe_step_family`
writes that family; :func:`compare_stimuli` is the tolerance test used to warn when two sources disagree. (Moved
out of :mod:`neo_pinn.io.stimulus_specs`, which still exports them.)
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import StimulusError

__all__ = ["summarize_steps", "describe_steps", "step_amplitudes", "describe_step_family", "compare_stimuli"]


def _noise_sigma(x: np.ndarray) -> float:
    """Robust sample-to-sample noise level (0 for noise-free commands)."""
    if x.size < 3:
        return 0.0
    d = np.diff(x)
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / math.sqrt(2.0))


def _odd_window(n: int, cap: int = 201) -> int:
    n = int(max(1, min(n, cap)))
    return n if n % 2 else n + 1


def _median_filter(x: np.ndarray, size: int) -> np.ndarray:
    if size <= 1 or x.size < size:
        return x
    from scipy.ndimage import median_filter

    return median_filter(x, size=size, mode="nearest")


def _tolerance(x: np.ndarray, tol_pA: float | None) -> float:
    if tol_pA is not None:
        return float(tol_pA)
    lo, hi = np.percentile(x, [0.1, 99.9]) if x.size > 1000 else (x.min(), x.max())
    return float(max(5.0 * _noise_sigma(x), 0.005 * (hi - lo), 0.1))


def summarize_steps(t_ms, i_pA, min_duration_ms: float = 1.0, tol_pA: float | None = None) -> list[dict]:
    """Split a current into piecewise-constant epochs.

    Parameters
    ----------
    t_ms : array_like
        Sample times in ms, shape (T,), uniformly spaced.
    i_pA : array_like
        Current in pA, shape (T,): a protocol waveform or a (noisy) recorded current channel.
    min_duration_ms : float
        Epochs shorter than this (ms) are glitches and are merged into their neighbour.
    tol_pA : float, optional
        Two levels closer than this (pA) are the same epoch. Default: the larger of five times the
        sample-to-sample noise, 0.5 % of the (0.1–99.9 percentile) range and 0.1 pA.

    Returns
    -------
    list of dict
        ``{"start_ms", "stop_ms", "amplitude_pA", "kind"}`` per epoch, in time order; ``stop_ms`` is the
        time of the first sample after the epoch (or the last time + dt), amplitude the epoch's median,
        ``kind`` ``"step"``; ``"ramp"`` (then also ``from_pA`` and ``to_pA``) for a run of at least
        four small same-direction changes; ``"pulses"`` (then also ``n``, ``base_pA``, ``width_ms`` and
        ``period_ms``; amplitude is the pulses' level) for a regular train of at least three pulses.
    """
    t = np.asarray(t_ms, dtype=float).reshape(-1)
    x = np.asarray(i_pA, dtype=float).reshape(-1)
    if t.size != x.size:
        raise StimulusError(f"summarize_steps: t ({t.size}) and current ({x.size}) differ in length.")
    if t.size == 0:
        return []
    if t.size == 1:
        return [{"start_ms": float(t[0]), "stop_ms": float(t[0]), "amplitude_pA": float(x[0])}]
    dt = float((t[-1] - t[0]) / (t.size - 1))
    tol = _tolerance(x, tol_pA)
    min_n = max(1, int(round(min_duration_ms / dt))) if dt > 0 else 1
    f = _median_filter(x, _odd_window(min_n))
    # Greedy segmentation on the filtered signal: an epoch lasts while it stays within tol of its start.
    bounds = [0]
    s = 0
    n = f.size
    while s < n:
        away = np.flatnonzero(np.abs(f[s:] - f[s]) > tol)
        if away.size == 0:
            break
        s = s + int(away[0])
        bounds.append(s)
    bounds.append(n)
    # Merge epochs shorter than the minimum duration into the previous one (the first into the next).
    edges = list(bounds)
    changed = True
    while changed and len(edges) > 2:
        changed = False
        for k in range(len(edges) - 1):
            if edges[k + 1] - edges[k] < min_n:
                del edges[k + 1 if k == 0 else k]
                changed = True
                break
    levels = [float(np.median(x[a:b])) for a, b in zip(edges[:-1], edges[1:])]
    # Merge neighbours whose levels now agree.
    merged_edges, merged_levels = [edges[0]], []
    for k, level in enumerate(levels):
        if merged_levels and abs(level - merged_levels[-1]) <= tol:
            a = merged_edges[-2]
            merged_levels[-1] = float(np.median(x[a:edges[k + 1]]))
            merged_edges[-1] = edges[k + 1]
        else:
            merged_levels.append(level)
            merged_edges.append(edges[k + 1])
    out = []
    for k, level in enumerate(merged_levels):
        a, b = merged_edges[k], merged_edges[k + 1]
        stop = float(t[b]) if b < n else float(t[-1] + dt)
        out.append({"start_ms": float(t[a]), "stop_ms": stop, "amplitude_pA": level, "kind": "step",
                    "_a": a, "_b": b})
    out = _join_ramps(out, x, tol)
    out = _join_pulses(out, tol, dt)
    for e in out:
        e.pop("_a"), e.pop("_b")
    return out


def _join_pulses(epochs: list[dict], tol: float, dt: float, min_pulses: int = 3) -> list[dict]:
    """Collapse a regular train (on, off, on, off, ..., on) of at least ``min_pulses`` pulses into one epoch."""
    def dur(e):
        return e["stop_ms"] - e["start_ms"]

    def like(a, b):
        return (a.get("kind") == b.get("kind") == "step" and abs(a["amplitude_pA"] - b["amplitude_pA"]) <= tol
                and abs(dur(a) - dur(b)) <= max(2.5 * dt, 0.1 * dur(b)))

    out: list[dict] = []
    k = 0
    while k < len(epochs):
        n, j = 1, k
        while j + 2 < len(epochs) and like(epochs[j + 2], epochs[k]) and like(epochs[j + 1], epochs[k + 1]):
            j += 2
            n += 1
        if n >= min_pulses:
            on, off = epochs[k], epochs[k + 1]
            out.append({"start_ms": on["start_ms"], "stop_ms": epochs[j]["stop_ms"],
                        "amplitude_pA": on["amplitude_pA"], "kind": "pulses", "n": n,
                        "base_pA": off["amplitude_pA"], "width_ms": dur(on), "period_ms": dur(on) + dur(off),
                        "_a": on["_a"], "_b": epochs[j]["_b"]})
            k = j + 1
        else:
            out.append(epochs[k])
            k += 1
    return out


def _join_ramps(epochs: list[dict], x: np.ndarray, tol: float, min_run: int = 4) -> list[dict]:
    """Collapse runs of small same-direction level changes (a ramp drawn as many steps) into one epoch."""
    if len(epochs) < min_run:
        return epochs
    levels = np.array([e["amplitude_pA"] for e in epochs])
    d = np.diff(levels)
    small = np.abs(d) <= 3.0 * tol
    out: list[dict] = []
    k = 0
    while k < len(epochs):
        j = k
        while j < len(d) and small[j] and (j == k or np.sign(d[j]) == np.sign(d[k])):
            j += 1
        if j - k + 1 >= min_run:
            first, last = epochs[k], epochs[j]
            a, b = first["_a"], last["_b"]
            out.append({"start_ms": first["start_ms"], "stop_ms": last["stop_ms"],
                        "amplitude_pA": float(np.median(x[a:b])), "kind": "ramp",
                        "from_pA": float(x[a]), "to_pA": float(x[b - 1]), "_a": a, "_b": b})
            k = j + 1
        else:
            out.append(epochs[k])
            k += 1
    return out


def _fmt_pA(x: float) -> str:
    if abs(x) >= 1000:
        return f"{round(x / 1000, 4):g} nA"
    return f"{round(x, 2):g} pA"


def _fmt_time(ms: float) -> str:
    text = f"{ms / 1000:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def describe_steps(t_ms, i_pA=None, min_duration_ms: float = 1.0, tol_pA: float | None = None,
                   max_epochs: int = 12) -> str:
    """Compact text of a step protocol, e.g. ``"0 pA; 0.147–0.647 s: -50 pA; 0.647–1.147 s: 0 pA"``.

    Parameters
    ----------
    t_ms : array_like or list of dict
        Times in ms (then ``i_pA`` is required), or the epochs returned by :func:`summarize_steps`.
    i_pA : array_like, optional
        Current in pA.
    min_duration_ms, tol_pA : float
        As in :func:`summarize_steps`.
    max_epochs : int
        Longer descriptions are cut with "… (N epochs)".

    Returns
    -------
    str
        The first epoch's level, then ``start–stop s: level`` for every later epoch. Times are those of
        ``t_ms`` (pass times since sweep start for per-sweep descriptions).
    """
    if i_pA is None:
        epochs = list(t_ms)
    else:
        epochs = summarize_steps(t_ms, i_pA, min_duration_ms=min_duration_ms, tol_pA=tol_pA)
    if not epochs:
        return "empty"
    def level(e: dict) -> str:
        if e.get("kind") == "ramp":
            return f"ramp {_fmt_pA(e['from_pA'])} → {_fmt_pA(e['to_pA'])}"
        if e.get("kind") == "pulses":
            return (f"{e['n']} pulses of {_fmt_pA(e['amplitude_pA'])} ({e['width_ms']:.3g} ms every "
                    f"{e['period_ms']:.3g} ms)")
        return _fmt_pA(e["amplitude_pA"])

    parts = [level(epochs[0])]
    for e in epochs[1:max_epochs]:
        parts.append(f"{_fmt_time(e['start_ms'])}–{_fmt_time(e['stop_ms'])} s: {level(e)}")
    if len(epochs) > max_epochs:
        parts.append(f"… ({len(epochs)} epochs)")
    return "; ".join(parts)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    if not mask.any():
        return []
    m = np.concatenate([[False], mask, [False]]).astype(np.int8)
    d = np.diff(m)
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)))


def step_amplitudes(sweeps: Sequence[tuple[Any, Any]], min_duration_ms: float = 1.0,
                    tol_pA: float | None = None) -> dict:
    """The main step amplitude of every sweep of a protocol family.

    Parameters
    ----------
    sweeps : sequence of (t_ms, i_pA)
        Per sweep: times in ms **since the sweep's start** and the current in pA. None for a sweep
        without a stimulus.
    min_duration_ms : float
        Shortest epoch (ms) that counts as a step.
    tol_pA : float, optional
        Level tolerance in pA (default as in :func:`summarize_steps`).

    Returns
    -------
    dict
        ``amplitudes_pA`` (list, one float or None per sweep), ``window_ms`` ([start, stop] of the step
        or None) and ``method``. When two or more sweeps share one time base, the main step is the first
        epoch (at least ``min_duration_ms`` long) where the current differs between sweeps, and each
        sweep's amplitude is its median current there — so a sweep whose step is 0 pA reads 0. Otherwise
        each sweep's amplitude is its first epoch that departs from its starting level (its starting
        level when none does).
    """
    n = len(sweeps)
    present = [k for k, s in enumerate(sweeps) if s is not None]
    result: dict = {"amplitudes_pA": [None] * n, "window_ms": None, "method": "none"}
    if not present:
        return result
    arrays = {k: (np.asarray(sweeps[k][0], dtype=float).reshape(-1), np.asarray(sweeps[k][1], dtype=float).reshape(-1))
              for k in present}
    lengths = {arrays[k][1].size for k in present}
    if len(present) >= 2 and len(lengths) == 1:
        t0 = arrays[present[0]][0]
        same_time = all(np.allclose(arrays[k][0], t0, rtol=0, atol=1e-6 * max(1.0, abs(t0[-1])))
                        for k in present)
        if same_time and t0.size > 1:
            stack = np.stack([arrays[k][1] for k in present])
            dt = float((t0[-1] - t0[0]) / (t0.size - 1))
            min_n = max(1, int(round(min_duration_ms / dt))) if dt > 0 else 1
            win = _odd_window(min_n)
            filt = np.stack([_median_filter(row, win) for row in stack])
            tol = tol_pA if tol_pA is not None else max(_tolerance(row, None) for row in stack)
            spread = filt.max(axis=0) - filt.min(axis=0)
            runs = [(a, b) for a, b in _runs(spread > tol) if b - a >= min_n]
            if runs:
                a, b = runs[0]
                amps = [None] * n
                for row, k in zip(stack, present):
                    amps[k] = float(np.median(row[a:b]))
                stop = float(t0[b]) if b < t0.size else float(t0[-1] + dt)
                return {"amplitudes_pA": amps, "window_ms": [float(t0[a]), stop], "method": "varying-epoch"}
    amps = [None] * n
    for k in present:
        t, x = arrays[k]
        epochs = summarize_steps(t, x, min_duration_ms=min_duration_ms, tol_pA=tol_pA)
        if not epochs:
            continue
        base = epochs[0]["amplitude_pA"]
        tol = _tolerance(x, tol_pA)
        main = next((e for e in epochs[1:] if abs(e["amplitude_pA"] - base) > tol), epochs[0])
        amps[k] = float(main["amplitude_pA"])
    result.update(amplitudes_pA=amps, method="first-departure")
    return result


def describe_step_family(amplitudes_pA: Iterable[float | None]) -> str:
    """Text such as ``"steps -50 to +100 pA (+10 pA per sweep)"`` from per-sweep step amplitudes.

    Parameters
    ----------
    amplitudes_pA : iterable of float or None
        The main step amplitude of each sweep in pA (see :func:`step_amplitudes`).

    Returns
    -------
    str
        ``"no stimulus"``, ``"constant X pA"``, ``"step X pA"`` for one sweep, or the family's range and,
        when regular, its increment.
    """
    amps = [a for a in amplitudes_pA if a is not None]
    if not amps:
        return "no stimulus"
    if len(amps) == 1:
        return f"step {_fmt_pA(amps[0])}"
    arr = np.asarray(amps, dtype=float)
    if np.ptp(arr) < 1e-6 * max(1.0, np.abs(arr).max()):
        return f"constant step {_fmt_pA(arr[0])} in every sweep"
    nano = np.abs(arr).max() >= 1000

    def f(x: float) -> str:
        value = round(x / 1000, 4) if nano else round(x, 2)
        return "0" if value == 0 else f"{value:+g}"

    unit = "nA" if nano else "pA"
    inc = np.diff(arr)
    text = f"steps {f(arr[0])} to {f(arr[-1])} {unit}"
    if np.allclose(inc, inc[0], rtol=0.01, atol=0.5):
        text += f" ({f(float(np.mean(inc)))} {unit} per sweep)"
    return text


def compare_stimuli(a_pA, b_pA, rel_tol: float = 0.05, abs_tol_pA: float = 1.0, dt_ms: float | None = None,
                    jitter_ms: float = 0.5) -> dict:
    """Decide whether two current waveforms of one sweep agree.

    Parameters
    ----------
    a_pA, b_pA : array_like
        Two currents in pA at the same sample times, shape (T,).
    rel_tol : float
        Allowed difference as a fraction of the larger of the two ranges.
    abs_tol_pA : float
        Allowed difference added in pA (plus five times the sample-to-sample noise of each waveform).
    dt_ms : float, optional
        Sampling interval in ms; with it, edges may be off by ``jitter_ms`` (a recorded current monitor
        is filtered and lags the command). Without it, 3 samples.
    jitter_ms : float
        Timing tolerance of edges in ms.

    Returns
    -------
    dict
        ``agree`` (bool), ``max_abs_diff_pA`` (the largest distance of either waveform from the other's
        local min–max envelope, median-filtered over 3 samples to ignore single-sample spikes) and
        ``tolerance_pA``.
    """
    from scipy.ndimage import maximum_filter1d, minimum_filter1d

    a = np.asarray(a_pA, dtype=float).reshape(-1)
    b = np.asarray(b_pA, dtype=float).reshape(-1)
    if a.size != b.size:
        return {"agree": False, "max_abs_diff_pA": float("inf"), "tolerance_pA": 0.0}
    if a.size == 0:
        return {"agree": True, "max_abs_diff_pA": 0.0, "tolerance_pA": 0.0}
    m = 3 if not dt_ms else max(1, int(round(jitter_ms / dt_ms)))
    size = 2 * m + 1

    def excess(x, y):
        hi = maximum_filter1d(y, size, mode="nearest")
        lo = minimum_filter1d(y, size, mode="nearest")
        return np.maximum(np.maximum(x - hi, lo - x), 0.0)

    worst_series = np.maximum(excess(a, b), excess(b, a))
    worst = float(np.max(_median_filter(worst_series, 3)))
    rng = max(float(np.ptp(_median_filter(a, 7))), float(np.ptp(_median_filter(b, 7))))
    tol = rel_tol * rng + abs_tol_pA + 5.0 * (_noise_sigma(a) + _noise_sigma(b))
    return {"agree": bool(worst <= tol), "max_abs_diff_pA": worst, "tolerance_pA": float(tol)}

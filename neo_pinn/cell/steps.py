"""The current step of each sweep of a step protocol (the epoch whose amplitude changes from sweep to sweep).

Patch-clamp step protocols (I–V, f–I, "AP gain") hold the cell at a holding current, then inject one
square step per sweep, its amplitude growing from sweep to sweep; some protocols add fixed test pulses
before or after. :func:`protocol_steps` finds the step window shared by the sweeps (the epoch where the
current differs from holding in most sweeps, the first of the longest when several) and measures every
sweep's amplitude in that window, so a sweep whose step is 0 pA still gets a (zero) step instead of
picking up a test pulse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..trace import Trace

__all__ = ["StepEpoch", "current_epochs", "protocol_steps", "MIN_STEP_MS"]

#: shortest epoch taken for a step, ms (shorter ones are test pulses or capacitive artefacts)
MIN_STEP_MS = 20.0


@dataclass(frozen=True)
class StepEpoch:
    """The square current step of one sweep.

    Parameters
    ----------
    sweep : int
        Sweep index in the recording.
    onset_ms, offset_ms : float
        Start and end of the step, in the trace's own time (ms).
    holding_pA : float
        Current before the step, pA.
    amplitude_pA : float
        Step current minus holding current, pA (0 for a sweep with no step).
    """

    sweep: int
    onset_ms: float
    offset_ms: float
    holding_pA: float
    amplitude_pA: float

    @property
    def duration_ms(self) -> float:
        """Length of the step, ms."""
        return self.offset_ms - self.onset_ms

    def to_dict(self) -> dict:
        """JSON-ready dictionary."""
        return {"sweep": self.sweep, "onset_ms": self.onset_ms, "offset_ms": self.offset_ms,
                "holding_pA": self.holding_pA, "amplitude_pA": self.amplitude_pA}


def _tolerance(i_ext: np.ndarray) -> float:
    """Smallest change of current (pA) taken for a change of command: above digitisation and noise."""
    span = float(np.ptp(i_ext)) if i_ext.size else 0.0
    return max(0.5, 0.02 * span)


def current_epochs(trace: Trace) -> list[tuple[float, float, float]]:
    """Constant-current epochs of a sweep: (start, end, level) with times relative to the sweep's start (ms).

    Levels are medians over each epoch (pA); changes smaller than the tolerance (0.5 pA or 2 % of the
    sweep's current range) do not split an epoch, so a recorded, noisy command still gives clean epochs.
    """
    i = trace.i_ext
    tol = _tolerance(i)
    t = trace.t - trace.t[0]
    edges = [0]
    level = i[0]
    for k in np.flatnonzero(np.abs(np.diff(i)) > tol) + 1:
        if abs(i[k] - level) > tol and k - edges[-1] >= 1:
            edges.append(int(k))
            level = i[k]
    edges.append(i.size)
    out = []
    for a, b in zip(edges[:-1], edges[1:]):
        if b - a < 1:
            continue
        end = t[b] if b < t.size else t[-1] + trace.dt
        out.append((float(t[a]), float(end), float(np.median(i[a:b]))))
    return out


def protocol_steps(traces: Sequence[Trace]) -> list[StepEpoch] | None:
    """The step of every sweep of a step protocol, or None when the sweeps hold no common step.

    Parameters
    ----------
    traces : sequence of Trace
        The sweeps (their stimulus in pA).

    Returns
    -------
    list of StepEpoch or None
        One per trace, in order: the shared step window (in each trace's own time) and the amplitude
        measured in it. None when no sweep has an epoch of at least :data:`MIN_STEP_MS` away from its
        holding current.
    """
    windows = []
    for tr in traces:
        ep = current_epochs(tr)
        if len(ep) < 2:
            continue
        hold = ep[0][2]
        tol = _tolerance(tr.i_ext)
        cand = [e for e in ep[1:] if e[1] - e[0] >= MIN_STEP_MS and abs(e[2] - hold) > tol]
        if not cand:
            continue
        longest = max(e[1] - e[0] for e in cand)
        first = next(e for e in cand if e[1] - e[0] >= 0.8 * longest)
        windows.append((first[0], first[1]))
    if not windows:
        return None
    # the most common window (sweeps whose own step is zero picked a test pulse instead)
    rounded = [(round(a, 1), round(b, 1)) for a, b in windows]
    counts = {w: rounded.count(w) for w in set(rounded)}
    best = max(counts, key=lambda w: (counts[w], -w[0]))
    onset, offset = windows[rounded.index(best)]
    out = []
    for tr in traces:
        t = tr.t - tr.t[0]
        before = t < onset
        hold = float(np.median(tr.i_ext[before])) if before.any() else float(tr.i_ext[0])
        # the middle of the window: edges may hold one sample of the neighbouring level
        inner = (t >= onset + 0.1 * (offset - onset)) & (t <= offset - 0.1 * (offset - onset))
        level = float(np.median(tr.i_ext[inner])) if inner.any() else hold
        amp = level - hold
        if abs(amp) <= _tolerance(tr.i_ext) and abs(amp) < 0.5:
            amp = 0.0
        out.append(StepEpoch(sweep=tr.sweep, onset_ms=float(tr.t[0] + onset), offset_ms=float(tr.t[0] + offset),
                             holding_pA=hold, amplitude_pA=amp))
    return out

"""How the PINN lays out the data: all sweeps concatenated, and each sweep cut into segments.

Every member trains one network per segment (batched); a small network represents a couple of spikes far
more accurately than a long train, and continuity ties consecutive segments together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neo_pinn.features import spike_times
from neo_pinn.problem import EstimationProblem

__all__ = ["Flat", "Segments", "flatten_traces", "make_segments"]


@dataclass(frozen=True)


class Flat:
    """All sweeps concatenated: time from each sweep's start (ms), voltage (mV), current (pA)."""

    t: np.ndarray
    v: np.ndarray
    i_ext: np.ndarray
    offsets: np.ndarray  # (n_traces + 1,) start index of each sweep in the flat arrays


@dataclass(frozen=True)


class Segments:
    """Equal time segments of every sweep, as index ranges into :class:`Flat` arrays.

    ``lo[k]:hi[k]`` are the samples of segment ``k``; it spans ``[t_left[k], t_right[k]]`` (the right end is
    the next segment's first sample, where continuity is imposed); ``linked[k]`` says segment ``k + 1``
    continues it in the same sweep.
    """

    lo: np.ndarray
    hi: np.ndarray
    t_left: np.ndarray
    t_right: np.ndarray
    trace: np.ndarray
    linked: np.ndarray

    @property
    def n(self) -> int:
        """Number of segments."""
        return int(self.lo.size)

    @property
    def centre(self) -> np.ndarray:
        """(K,) middle time of every segment, ms."""
        return 0.5 * (self.t_left + self.t_right)

    @property
    def half(self) -> np.ndarray:
        """(K,) half length of every segment, ms."""
        return 0.5 * (self.t_right - self.t_left)


def flatten_traces(problem: EstimationProblem) -> Flat:
    """Concatenate the problem's sweeps; times restart at 0 ms in each sweep."""
    ts, vs, is_, offs = [], [], [], [0]
    for tr in problem.traces:
        ts.append(tr.t - tr.t[0])
        vs.append(tr.v)
        is_.append(tr.i_ext)
        offs.append(offs[-1] + tr.t.size)
    return Flat(np.concatenate(ts), np.concatenate(vs), np.concatenate(is_), np.array(offs))


def make_segments(problem: EstimationProblem, flat: Flat, spikes_per_segment: float,
                  segment_ms: float | None, min_samples: int = 16) -> Segments:
    """Cut every sweep into equal segments, enough that each holds about ``spikes_per_segment`` spikes
    (or lasts ``segment_ms`` ms), each at least ``min_samples`` samples long."""
    model = problem.model
    lo, hi, tl, tr_, owner, linked = [], [], [], [], [], []
    for k, trace in enumerate(problem.traces):
        a, b = int(flat.offsets[k]), int(flat.offsets[k + 1])
        n_samples = b - a
        dur = float(flat.t[b - 1] - flat.t[a])
        if segment_ms is not None:
            n_seg = int(np.ceil(dur / float(segment_ms)))
        else:
            n_spikes = spike_times(trace.v, trace.t, threshold=model.spike_threshold, rearm=model.spike_rearm).size
            n_seg = int(np.ceil(n_spikes / float(spikes_per_segment))) if spikes_per_segment > 0 else 1
        n_seg = int(np.clip(n_seg, 1, max(1, n_samples // min_samples)))
        edges = np.round(np.linspace(0, n_samples, n_seg + 1)).astype(int) + a
        for j in range(n_seg):
            lo.append(edges[j])
            hi.append(edges[j + 1])
            tl.append(flat.t[edges[j]])
            tr_.append(flat.t[edges[j + 1]] if j < n_seg - 1 else flat.t[b - 1])
            owner.append(k)
            linked.append(j < n_seg - 1)
    return Segments(np.array(lo), np.array(hi), np.array(tl, float), np.array(tr_, float), np.array(owner),
                    np.array(linked, bool))

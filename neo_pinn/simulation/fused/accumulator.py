"""The fused kernel's online spike accumulators, computed vectorised over whole trace segments (torch).

:class:`SpikeAccumulator` consumes a voltage batch segment by segment and keeps exactly what the
generated kernel keeps per neuron — spike count, first and last spike position, ISI sums, peak and
trough sums — so the torch reference engine and recorded traces are reduced by the kernel's own rules.
"""

from __future__ import annotations

import math

import torch

__all__ = ["SpikeAccumulator"]


class SpikeAccumulator:
    """The kernel's online accumulators, computed vectorised over whole trace segments (float64).

    Equivalence with the sample-by-sample state machine (and with :func:`neo_pinn.features.spike_times`):
    a candidate crossing counts iff the voltage went below ``rearm`` since the previous *candidate*
    crossing (or, for the first candidate, the window opened armed or went below since): if the previous
    candidate counted that is the rule itself, and if it did not, no re-arm happened since the last
    counted one either. Peaks and troughs are the max/min over the samples from one counted crossing to
    the next: after the re-arm every sample up to the next counted crossing is below threshold, so
    neither changes.

    Parameters
    ----------
    B : int
        Neurons (rows).
    thr, rearm : float
        Spike threshold and re-arm level in mV.
    device : str or torch.device
        Where the accumulators live.
    """

    def __init__(self, B: int, thr: float, rearm: float, device):
        f = dict(dtype=torch.float64, device=device)
        self.thr, self.rearm = thr, rearm
        self.armed = torch.zeros(B, dtype=torch.bool, device=device)
        self.n = torch.zeros(B, dtype=torch.int64, device=device)
        self.first = torch.full((B,), math.inf, **f)      # position in steps (index + fraction)
        self.last = torch.full((B,), -math.inf, **f)
        self.isi_sum = torch.zeros(B, **f)
        self.isi_sumsq = torch.zeros(B, **f)
        self.peak_sum = torch.zeros(B, **f)
        self.trough_sum = torch.zeros(B, **f)
        self.cur_max = torch.full((B,), -math.inf, **f)
        self.cur_min = torch.full((B,), math.inf, **f)

    def start(self, v0: torch.Tensor) -> None:
        """The window's first sample: armed iff below threshold (or below re-arm)."""
        self.armed = (v0 < self.thr) | (v0 < self.rearm)

    def update(self, v: torch.Tensor, g0: int, dt: float) -> None:
        """Consume the pairs of ``v`` (B, L), whose column 0 is sample ``g0`` (already consumed).

        Crossings are rare (a few per thousand samples), so after the few dense passes every sample
        needs (two compares, a cumulative count of re-arm samples, a segmented max and min) the work is
        done on the list of candidate crossings only.
        """
        B, L = v.shape
        if L < 2:
            return
        dev = v.device
        vp, vn = v[:, :-1], v[:, 1:]
        rows, cols = ((vp < self.thr) & (vn >= self.thr)).nonzero(as_tuple=True)  # row-major order
        cd = (vp < self.rearm).cumsum(1, dtype=torch.int32)   # re-arm samples among the pairs' first samples
        cd_end = cd[:, -1]
        cd_c = cd[rows, cols]
        new_row = torch.ones_like(rows, dtype=torch.bool)
        new_row[1:] = rows[1:] != rows[:-1]
        last_of_row = torch.ones_like(new_row)
        last_of_row[:-1] = new_row[1:]
        prev_cd = torch.zeros_like(cd_c)
        prev_cd[1:] = cd_c[:-1]
        # a candidate counts iff a re-arm sample lies after the previous candidate of its row (or, for the
        # row's first candidate, the row was armed or re-arms before it)
        counted = torch.where(new_row, self.armed[rows] | (cd_c > 0), cd_c - prev_cd > 0)
        armed = self.armed | (cd_end > 0)
        armed[rows[last_of_row]] = (cd_end[rows[last_of_row]] - cd_c[last_of_row]) > 0
        self.armed = armed

        rs, js = rows[counted], cols[counted]
        n_seg = torch.bincount(rs, minlength=B)
        n_before = self.n
        a, b = vp[rs, js].double(), vn[rs, js].double()
        pos = (g0 + js).double() + (self.thr - a) / (b - a)     # spike position in steps
        first_c = torch.ones_like(rs, dtype=torch.bool)
        first_c[1:] = rs[1:] != rs[:-1]
        prev = torch.empty_like(pos)
        prev[1:] = pos[:-1]
        prev[first_c] = self.last[rs[first_c]]
        has_prev = torch.isfinite(prev)
        isi = (pos[has_prev] - prev[has_prev]) * dt
        self.isi_sum.index_add_(0, rs[has_prev], isi)
        self.isi_sumsq.index_add_(0, rs[has_prev], isi * isi)
        firsts = first_c & (n_before[rs] == 0)
        self.first[rs[firsts]] = pos[firsts]
        last_c = torch.ones_like(first_c)
        last_c[:-1] = first_c[1:]
        self.last[rs[last_c]] = pos[last_c]

        # Peaks/troughs: max/min over regions of the row-major flattened vn, cut at each row start and at
        # each counted crossing (its second sample); region 0 of a row continues the carried one.
        K = L - 1
        starts = torch.cat([torch.arange(B, device=dev) * K, rs * K + js])
        kind = torch.cat([torch.zeros(B, dtype=torch.long, device=dev), torch.ones_like(rs)])  # 0: row start
        order = torch.argsort(starts * 2 + kind)                 # a row start precedes a crossing at column 0
        starts, kind = starts[order], kind[order]
        lengths = torch.diff(starts, append=torch.tensor([B * K], device=dev))
        flat = vn.reshape(-1)
        smax = torch.segment_reduce(flat, "max", lengths=lengths, initial=-math.inf).double()
        smin = torch.segment_reduce(flat, "min", lengths=lengths, initial=math.inf).double()
        seg_row = torch.div(starts, K, rounding_mode="floor")
        is_start = kind == 0
        smax[is_start] = torch.maximum(smax[is_start], self.cur_max)
        smin[is_start] = torch.minimum(smin[is_start], self.cur_min)
        is_last = torch.ones_like(is_start)
        is_last[:-1] = is_start[1:]
        done = ~is_last & (~is_start | (n_before[seg_row] > 0))
        self.peak_sum.index_add_(0, seg_row[done], smax[done])
        self.trough_sum.index_add_(0, seg_row[done], smin[done])
        self.cur_max = smax[is_last]                              # one per row, rows in order
        self.cur_min = smin[is_last]
        self.n = n_before + n_seg

    def result(self, t0: float, dt: float) -> dict[str, torch.Tensor]:
        """The accumulators so far: spike times in ms on the clock of ``t0`` (step ``dt`` ms), float64 sums."""
        has = self.n > 0
        nan = torch.tensor(float("nan"), dtype=torch.float64, device=self.n.device)
        return {
            "spike_count": self.n,
            "first_spike_ms": torch.where(has, t0 + self.first * dt, nan),
            "last_spike_ms": torch.where(has, t0 + self.last * dt, nan),
            "isi_sum_ms": self.isi_sum,
            "isi_sumsq_ms2": self.isi_sumsq,
            "peak_sum_mv": self.peak_sum + torch.where(has, self.cur_max, 0.0),
            "trough_sum_mv": self.trough_sum,
        }

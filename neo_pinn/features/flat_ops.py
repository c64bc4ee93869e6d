"""Building blocks of the batched features: operations on flat, row-sorted per-event lists.

Every row of a voltage batch is handled at once: the batch is scanned densely only to find threshold
crossings; everything after that works on flat per-spike lists (row, sample) sorted by row then time —
searchsorted against other event lists, gathers of short windows, and segment reductions over the
samples of each spike. No Python loop runs over rows or spikes; the few loops here run over
search-window sizes or memory chunks (a handful of passes).
"""

from __future__ import annotations

import torch

__all__ = ["run_starts", "same_row_neighbours", "count_at_or_before", "scan", "segment_first_arg", "to_rows",
           "nan_mean", "nan_median"]


def run_starts(mask: torch.Tensor) -> torch.Tensor:
    """Flat (row·T + j) positions, sorted, where a run of True begins in each row (j = 0 included)."""
    starts = mask.clone()
    starts[:, 1:] &= ~mask[:, :-1]
    return torch.nonzero(starts.reshape(-1)).squeeze(1)


def same_row_neighbours(row: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For a row-sorted flat list: does the previous / next entry belong to the same row?"""
    same = row[1:] == row[:-1]
    no = torch.zeros(1, dtype=torch.bool, device=row.device)
    return torch.cat([no, same]), torch.cat([same, no])


def count_at_or_before(sorted_pos: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """How many entries of the sorted flat positions are ≤ each of ``pos``."""
    return torch.searchsorted(sorted_pos, pos, right=True)


def scan(lo: torch.Tensor, hi: torch.Tensor, predicate, forward: bool, first_width: int = 64,
         budget: int = 1 << 22) -> torch.Tensor:
    """First (``forward``) or last sample q in [lo, hi] (per item, inclusive) where ``predicate`` holds.

    Windows of 64, 1024, 16384… samples are tried in turn, so items resolved near their start (the
    usual case: a spike's own rise and fall) cost one short gather.

    Parameters
    ----------
    lo, hi : torch.Tensor
        (U,) int64 sample bounds per item.
    predicate : callable
        ``predicate(items, q)`` gets the item indices (U',) and candidate samples (U', w) and returns a
        bool (U', w).
    forward : bool
        Search from ``lo`` upwards (True) or from ``hi`` downwards.
    first_width : int
        Samples tried in the first pass.
    budget : int
        Cap on U' × w per pass, so that memory stays bounded.

    Returns
    -------
    torch.Tensor
        (U,) int64 sample index, −1 where none.
    """
    n = lo.numel()
    out = torch.full((n,), -1, dtype=torch.int64, device=lo.device)
    pending = torch.nonzero(lo <= hi).squeeze(1)
    cur = (lo if forward else hi)[pending]
    width = first_width
    while pending.numel():
        span = (hi[pending] - cur + 1) if forward else (cur - lo[pending] + 1)
        w = min(width, int(span.max()), max(first_width, budget // pending.numel()))
        steps = torch.arange(w, device=lo.device)
        q = cur[:, None] + steps if forward else cur[:, None] - steps
        ok = predicate(pending, q) & (steps < span[:, None])
        hit = ok.any(dim=1)
        first = torch.argmax(ok.to(torch.uint8), dim=1)
        out[pending[hit]] = q[hit, first[hit]]
        more = ~hit & (span > w)
        pending, cur = pending[more], (cur + w if forward else cur - w)[more]
        width *= 16
    return out


def segment_first_arg(xf: torch.Tensor, f_lo: torch.Tensor, f_hi: torch.Tensor, largest: bool,
                      chunk: int = 1 << 23) -> torch.Tensor:
    """Flat position of the first maximum (``largest``) or minimum of xf over each [f_lo, f_hi) (f_hi > f_lo).

    The samples of all segments are gathered into one flat list and reduced with scatter_reduce; items
    are processed in groups of about ``chunk`` samples so that memory stays bounded.

    Parameters
    ----------
    xf : torch.Tensor
        The flattened (B·T,) voltage batch.
    f_lo, f_hi : torch.Tensor
        (n,) int64 flat bounds of each segment, end exclusive.
    largest : bool
        Maximum (True) or minimum.
    chunk : int
        Samples gathered per pass.

    Returns
    -------
    torch.Tensor
        (n,) int64 flat positions.
    """
    n = f_lo.numel()
    if n == 0:
        return f_lo.clone()
    length = f_hi - f_lo
    out = torch.empty_like(f_lo)
    ends = torch.cumsum(length, 0)
    cuts = torch.searchsorted(ends, torch.arange(chunk, int(ends[-1]) + chunk, chunk, device=xf.device))
    start = 0
    for stop in [*torch.unique_consecutive(cuts.clamp(max=n - 1) + 1).tolist()]:
        if stop <= start:
            continue
        lo, ln = f_lo[start:stop], length[start:stop]
        m = stop - start
        seg = torch.repeat_interleave(torch.arange(m, device=xf.device), ln)
        offset = torch.arange(seg.numel(), device=xf.device) - (torch.cumsum(ln, 0) - ln)[seg]
        vals = xf[lo[seg] + offset]
        extreme = torch.full((m,), float("-inf") if largest else float("inf"), dtype=xf.dtype, device=xf.device)
        extreme.scatter_reduce_(0, seg, vals, reduce="amax" if largest else "amin", include_self=True)
        big = torch.iinfo(torch.int64).max
        first = torch.full((m,), big, dtype=torch.int64, device=xf.device)
        first.scatter_reduce_(0, seg, torch.where(vals == extreme[seg], offset, big), reduce="amin",
                              include_self=True)
        out[start:stop] = lo + first
        start = stop
    return out


def to_rows(row: torch.Tensor, values: torch.Tensor, B: int, fill, width: int | None = None) -> torch.Tensor:
    """Scatter a row-sorted flat list into a (B, K) tensor, each row left-aligned and padded with ``fill``."""
    counts = torch.bincount(row, minlength=B) if row.numel() else torch.zeros(B, dtype=torch.int64,
                                                                              device=values.device)
    K = int(counts.max()) if width is None else width
    out = torch.full((B, K), fill, dtype=values.dtype, device=values.device)
    if row.numel() and K:
        rank = torch.arange(row.numel(), device=row.device) - (torch.cumsum(counts, 0) - counts)[row]
        keep = rank < K
        out[row[keep], rank[keep]] = values[keep]
    return out


def nan_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of each row of (B, K) ``values`` over its ``valid`` entries; NaN for a row without any."""
    n = valid.sum(dim=1)
    s = torch.where(valid, values, torch.zeros_like(values)).sum(dim=1)
    return torch.where(n > 0, s / n.clamp(min=1), torch.full_like(s, float("nan")))


def nan_median(x: torch.Tensor) -> torch.Tensor:
    """numpy's median of each row ignoring NaN (the mean of the two middle values for an even count).

    ``torch.nanmedian`` returns the lower middle value; the upper one is −nanmedian(−x).
    """
    return 0.5 * (torch.nanmedian(x, dim=1).values - torch.nanmedian(-x, dim=1).values)


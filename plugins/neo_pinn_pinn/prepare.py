"""Everything the PINN derives from the data before training: spectrum, segments, warm-start states.

* :func:`dominant_frequencies` — the FFT dominant frequencies of the voltage (the fixed Fourier
  features).
* :func:`make_segments` — cuts each sweep into equal segments (one network per segment and member),
  enough that each holds about ``spikes_per_segment`` spikes: a small network represents two spikes far
  more accurately than thirty.
* :func:`driven_hidden_states` — the hidden states obtained by integrating their own equations with the
  recorded voltage in place of V (what the gates would do if the starting parameters were right); they
  give the hidden outputs a physically plausible starting shape in stage 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neo_pinn.features import spike_times
from neo_pinn.models.base import NeuronModel
from neo_pinn.problem import EstimationProblem

__all__ = ["Segments", "dominant_frequencies", "make_segments", "driven_hidden_states", "flatten_traces"]


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
        return int(self.lo.size)

    @property
    def centre(self) -> np.ndarray:
        return 0.5 * (self.t_left + self.t_right)

    @property
    def half(self) -> np.ndarray:
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


def dominant_frequencies(problem: EstimationProblem, n: int, max_hz: float) -> np.ndarray:
    """The ``n`` dominant frequencies (1/ms) of the recorded voltage, strongest first.

    Peaks (local maxima) of the Hann-windowed amplitude spectrum of the longest sweep, between two
    frequency bins and ``max_hz``. The strongest is the fundamental (spike rate or burst rate); the
    others are its harmonics and the faster content of the spikes. (Weighting the spectrum by frequency,
    as for dV/dt, was tried: it ranks white-noise peaks near ``max_hz`` above real harmonics.)
    """
    if n <= 0:
        return np.zeros(0)
    tr = max(problem.traces, key=lambda x: x.t.size)
    dt = float(np.median(np.diff(tr.t)))
    v = tr.v - tr.v.mean()
    spec = np.abs(np.fft.rfft(v * np.hanning(v.size)))
    freqs = np.fft.rfftfreq(v.size, dt)  # 1/ms
    amp = spec
    keep = (np.arange(freqs.size) >= 2) & (freqs <= max_hz / 1000.0)
    peak = np.zeros_like(keep)
    peak[1:-1] = (amp[1:-1] >= amp[:-2]) & (amp[1:-1] > amp[2:])
    cand = np.flatnonzero(keep & peak)
    if cand.size == 0:
        return np.array([1.0 / (tr.t[-1] - tr.t[0])]) if n else np.zeros(0)
    order = cand[np.argsort(amp[cand])[::-1]][:n]
    return freqs[order]


def make_segments(problem: EstimationProblem, flat: Flat, spikes_per_segment: float,
                  segment_ms: float | None, min_samples: int = 16) -> Segments:
    """Cut every sweep into equal segments (see the module docstring)."""
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


def quasi_steady_hidden(model: NeuronModel, theta: np.ndarray, v0: float, i0: float, gates: np.ndarray,
                        iterations: int = 12) -> np.ndarray:
    """Hidden states (E, S−1) where their own equations are at rest with V clamped at ``v0``.

    Newton iterations on the diagonal (each hidden state's equation against itself, by finite
    differences); gates are kept inside (0, 1).
    """
    E = theta.shape[0]
    S = model.n_states
    x = np.tile(np.array([0.5 if g else s.scale for g, s in zip(gates[1:], model.states[1:])]), (E, 1))
    for _ in range(iterations):
        y = np.concatenate([np.full((E, 1), v0), x], 1)
        f = model.rhs(0.0, y, theta, i0)[:, 1:]
        dfdx = np.empty_like(x)
        for j in range(S - 1):
            h = 1e-6 * max(1.0, abs(model.states[j + 1].scale))
            yp = y.copy()
            yp[:, j + 1] += h
            dfdx[:, j] = (model.rhs(0.0, yp, theta, i0)[:, 1 + j] - f[:, j]) / h
        step = np.where(np.abs(dfdx) > 1e-12, f / np.where(np.abs(dfdx) > 1e-12, dfdx, 1.0), 0.0)
        x = x - step
        x = np.where(gates[1:], np.clip(x, 1e-4, 1 - 1e-4), x)
    return x


def driven_hidden_states(model: NeuronModel, theta: np.ndarray, t: np.ndarray, v: np.ndarray, i_ext: np.ndarray,
                         gates: np.ndarray, max_dt: float = 0.1, spinup: bool = False) -> np.ndarray:
    """Hidden states (E, T, S−1) integrated (RK4) with the recorded voltage in place of V.

    Parameters
    ----------
    model : NeuronModel
    theta : numpy.ndarray
        (E, P) parameter vectors, one per ensemble member.
    t, v, i_ext : numpy.ndarray
        One sweep: time (ms), voltage (mV) and current (pA), (T,).
    gates : numpy.ndarray
        (S,) bool, states kept in [0, 1].
    max_dt : float
        Largest integration step, ms (the sampling grid is strided down to it; values between steps are
        interpolated linearly).
    spinup : bool
        Integrate the window twice, the second time from where the first ended (for periodic activity).

    Returns
    -------
    numpy.ndarray
        Starting from the quasi-steady state at ``v[0]``; non-finite results are replaced by that state.
    """
    dt_s = float(np.median(np.diff(t))) if t.size > 1 else max_dt
    stride = max(1, int(np.floor(max_dt / dt_s + 1e-9)))
    idx = np.arange(0, t.size, stride)
    if idx[-1] != t.size - 1:
        idx = np.append(idx, t.size - 1)
    x0 = quasi_steady_hidden(model, theta, float(v[0]), float(i_ext[0]), gates)
    E = theta.shape[0]

    def f(tt, vv, ii, xx):
        y = np.concatenate([np.full((E, 1), vv), xx], 1)
        return model.rhs(tt, y, theta, ii)[:, 1:]

    def integrate(x):
        out = np.empty((E, idx.size, model.n_states - 1))
        out[:, 0] = x
        with np.errstate(all="ignore"):
            for k in range(idx.size - 1):
                a, b = idx[k], idx[k + 1]
                h = t[b] - t[a]
                vm = 0.5 * (v[a] + v[b])
                k1 = f(t[a], v[a], i_ext[a], x)
                k2 = f(t[a] + h / 2, vm, i_ext[a], x + h / 2 * k1)
                k3 = f(t[a] + h / 2, vm, i_ext[a], x + h / 2 * k2)
                k4 = f(t[b], v[b], i_ext[a], x + h * k3)
                x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
                x = np.where(gates[1:], np.clip(x, 0.0, 1.0), x)
                out[:, k + 1] = x
        return out

    out = integrate(x0)
    if spinup:
        # the start of the window is the hidden states' least known point; for the (near) periodic
        # windows of oscillating cells the end of a first pass is a far better guess of it than rest
        end = out[:, -1]
        x1 = np.where(np.isfinite(end), end, x0)
        second = integrate(x1)
        first_ok = np.isfinite(out).all(axis=(1, 2))
        second_ok = np.isfinite(second).all(axis=(1, 2))
        out = np.where((second_ok | ~first_ok)[:, None, None], second, out)
    bad = ~np.isfinite(out)
    if bad.any():
        out = np.where(bad, x0[:, None, :], out)
    full = np.empty((theta.shape[0], t.size, model.n_states - 1))
    for j in range(model.n_states - 1):
        for e in range(theta.shape[0]):
            full[e, :, j] = np.interp(t, t[idx], out[e, :, j])
    return full

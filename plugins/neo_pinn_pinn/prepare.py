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

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from neo_pinn.errors import ConfigurationError
from neo_pinn.features import spike_times
from neo_pinn.models.base import NeuronModel
from neo_pinn.problem import EstimationProblem

__all__ = ["Segments", "dominant_frequencies", "make_segments", "driven_hidden_states", "driven_voltage_misfit",
           "fast_share", "flatten_traces", "median_isi", "acting_on_slow_states", "misfit_intervals", "periodic_pairs",
           "repeat_lag", "sampling_weights", "scaling_slow_states", "screen_parameters", "slow_states"]


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


class SearchSpace:
    """Free parameters ↔ search coordinates: ``z = log θ`` (log-scale parameters) or ``z = θ / width``
    (others, ``width`` a quarter of the bounds' span), with the bounds in those coordinates."""

    def __init__(self, problem: EstimationProblem) -> None:
        self.log = np.array([f.log_scale for f in problem.free])
        lo = np.array([f.bounds[0] for f in problem.free], float)
        hi = np.array([f.bounds[1] for f in problem.free], float)
        self.width = np.where(self.log, 1.0, (hi - lo) / 4.0)
        self.zlo = np.where(self.log, np.log(np.maximum(lo, 1e-300)), lo / self.width)
        self.zhi = np.where(self.log, np.log(np.maximum(hi, 1e-300)), hi / self.width)

    def to_z(self, theta: np.ndarray) -> np.ndarray:
        z = np.where(self.log, np.log(np.maximum(theta, 1e-300)), theta / self.width)
        return np.clip(z, self.zlo, self.zhi)

    def to_theta(self, z: np.ndarray) -> np.ndarray:
        return np.where(self.log, np.exp(z), z * self.width)


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


def median_isi(problem: EstimationProblem) -> float | None:
    """Median inter-spike interval of all sweeps, ms (None with fewer than two spikes in every sweep)."""
    model = problem.model
    isis = np.concatenate([np.diff(spike_times(tr.v, tr.t, threshold=model.spike_threshold, rearm=model.spike_rearm))
                           for tr in problem.traces])
    return float(np.median(isis)) if isis.size else None


def slow_states(model: NeuronModel, problem: EstimationProblem, warm: np.ndarray, share: float = 0.9) -> np.ndarray:
    """Which states are slow: (S,) bool, V never.

    A hidden state is slow when at least ``share`` of its warm-start variance (median over members) lies
    below half the median firing rate of the recording (1/(2·median ISI)): it follows the bursts, not the
    spikes (Ca in a Ca-activated K burster, NaP inactivation h). No state is slow in a recording with
    fewer than 3 spikes.

    Parameters
    ----------
    model : NeuronModel
    problem : EstimationProblem
    warm : numpy.ndarray
        (E, T, S−1) warm-start hidden states of the flattened sweeps (the longest sweep is analysed).
    share : float
        Variance share below the cut.
    """
    tr = max(problem.traces, key=lambda x: x.t.size)
    a = int(sum(x.t.size for x in problem.traces[:problem.traces.index(tr)]))
    out = np.zeros(model.n_states, bool)
    st = spike_times(tr.v, tr.t, threshold=model.spike_threshold, rearm=model.spike_rearm)
    if st.size < 3:
        return out
    f_cut = 0.5 / median_isi(problem.with_traces([tr]))  # 1/ms
    dt = float(np.median(np.diff(tr.t)))
    freqs = np.fft.rfftfreq(tr.t.size, dt)
    for j in range(1, model.n_states):
        x = warm[:, a:a + tr.t.size, j - 1]
        x = x - x.mean(1, keepdims=True)
        power = np.abs(np.fft.rfft(x, axis=1)) ** 2
        frac = power[:, freqs < f_cut].sum(1) / np.maximum(power.sum(1), 1e-300)
        out[j] = bool(np.median(frac) >= share)
    return out


def acting_on_slow_states(model: NeuronModel, theta: np.ndarray, free_idx: list[int], slow: np.ndarray,
                          y: np.ndarray, i_ext: np.ndarray) -> list[int]:
    """Positions (into ``free_idx``) of the free parameters that change the right-hand side of a slow
    state (tested numerically at the states ``y`` (N, S)): they set the slow state's pace or drive, which
    shows only over intervals long enough for the slow state to move (:func:`misfit_intervals`)."""
    if not np.any(slow):
        return []
    base = model.rhs(0.0, y, theta[None, :], i_ext)
    out = []
    for j, p in enumerate(free_idx):
        th = theta.copy()
        th[p] += 0.1 * max(abs(th[p]), 1e-3)
        diff = model.rhs(0.0, y, th[None, :], i_ext) - base
        if np.any(np.abs(diff[:, slow]) > 1e-9 * (np.abs(base[:, slow]).max() + 1e-30)):
            out.append(j)
    return out


def fast_share(weights: np.ndarray, mass: float = 0.9) -> float:
    """Share of the samples that carry ``mass`` of the fast-voltage weights (:func:`sampling_weights`):
    how much of the recording its spikes fill (measured: 1.5 % for Butera's brief burst spikes, 6–9 % for
    Morris–Lecar's broad ones)."""
    w = np.sort(np.asarray(weights, float))[::-1]
    total = w.sum()
    if w.size == 0 or total <= 0:
        return 1.0
    return float(np.searchsorted(np.cumsum(w) / total, mass) + 1) / w.size


def scaling_slow_states(model: NeuronModel, theta: np.ndarray, free_idx: list[int], slow: np.ndarray,
                        y: np.ndarray, i_ext: np.ndarray, rtol: float = 1e-6) -> list[int]:
    """Positions (into ``free_idx``) of the free parameters whose effect on the equations of the fast states
    is exactly that of rescaling a slow state (tested numerically at the states ``y`` (N, S)).

    A maximal conductance multiplying a slow gate (Butera's ``gNaP·m∞(V)·h``) is such a parameter: a
    network can trade a larger conductance for a proportionally smaller slow state and satisfy every fast
    equation exactly; only the slow state's own equation, which acts over seconds, tells the two apart.
    The voltage-driven screen has no such freedom (its slow state obeys its equation by construction), so
    these parameters are best held at their screened values.
    """
    if not np.any(slow):
        return []
    fast = ~np.asarray(slow, bool)
    base = model.rhs(0.0, y, theta[None, :], i_ext)
    out = []
    for j, p in enumerate(free_idx):
        th = theta.copy()
        th[p] *= 1.1
        d_par = (model.rhs(0.0, y, th[None, :], i_ext) - base)[:, fast]
        size = np.abs(d_par).max()
        if not np.isfinite(size) or size <= 1e-12 * (np.abs(base[:, fast]).max() + 1e-30):
            continue
        for s in np.flatnonzero(slow):
            ys = y.copy()
            ys[:, s] *= 1.1
            d_state = (model.rhs(0.0, ys, theta[None, :], i_ext) - base)[:, fast]
            if np.abs(d_par - d_state).max() <= rtol * size:
                out.append(j)
                break
    return out


def _driven_on_grid(model: NeuronModel, theta: np.ndarray, t: np.ndarray, v: np.ndarray, i_ext: np.ndarray,
                    gates: np.ndarray, idx: np.ndarray, spinup: bool) -> np.ndarray:
    """Hidden states (E, len(idx), S−1) integrated (RK4) over the sample indices ``idx`` with ``v`` in place
    of V (see :func:`driven_hidden_states`); non-finite rows are left non-finite."""
    x0 = quasi_steady_hidden(model, theta, float(v[0]), float(i_ext[0]), gates)
    E = theta.shape[0]

    def f(tt, vv, ii, xx):
        y = np.concatenate([np.full((E, 1), vv), xx], 1)
        return model.rhs(tt, y, theta, ii)[:, 1:]

    def integrate(x, upto=None):
        n_out = idx.size if upto is None else upto + 1
        out = np.empty((E, n_out, model.n_states - 1))
        out[:, 0] = x
        with np.errstate(all="ignore"):
            for k in range(n_out - 1):
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
        # the start of the window is the hidden states' least known point. For the (near) periodic windows
        # of oscillating cells the state one period later should equal it: x0 is the fixed point of
        # x0 ↦ x(L; x0), L the lag at which the recording repeats its start. A slow state (Ca, τ of
        # hundreds of ms) forgets a wrong x0 only slowly, and the error biases its rate; the map is
        # (near) affine in x0, so two passes and an Aitken step find the fixed point.
        lag = repeat_lag(t, v, idx)
        ok0 = np.isfinite(out).all(axis=(1, 2))
        if lag is None:
            end = out[:, -1]
            x_fix = np.where(np.isfinite(end), end, x0)
        else:
            a1 = out[:, lag]
            a2 = integrate(np.where(np.isfinite(a1), a1, x0), upto=lag)[:, -1]
            d1, d2 = a1 - x0, a2 - a1
            with np.errstate(all="ignore"):
                s = np.clip(np.where(np.abs(d1) > 1e-12, d2 / d1, 0.0), 0.0, 0.95)
                x_fix = a1 + d2 / (1.0 - s)
            x_fix = np.where(gates[1:], np.clip(x_fix, 0.0, 1.0), x_fix)
            x_fix = np.where(np.isfinite(x_fix), x_fix, np.where(np.isfinite(a2), a2, x0))
        second = integrate(x_fix)
        second_ok = np.isfinite(second).all(axis=(1, 2))
        out = np.where((second_ok | ~ok0)[:, None, None], second, out)
    return out


def repeat_lag(t: np.ndarray, v: np.ndarray, idx: np.ndarray, match: float = 0.1,
                tolerance: float = 0.25) -> int | None:
    """Grid position at which the voltage repeats the window's start best: the lag (between a third of
    the window and its end less the matched stretch) minimising the mean squared difference between the
    first ``match`` of the window and the stretch starting there; ``None`` when even the best match
    leaves more than ``tolerance`` of the voltage's variance (no periodicity to rely on)."""
    vg = v[idx]
    n = vg.size
    w = max(4, int(match * n))
    first = int(n / 3)
    if n - w <= first + 1:
        return None
    from numpy.lib.stride_tricks import sliding_window_view

    windows = sliding_window_view(vg, w)[first:n - w + 1]  # (n_lags, w)
    mse = ((windows - vg[:w][None, :]) ** 2).mean(1)
    best = int(np.argmin(mse))
    if mse[best] > tolerance * max(float(vg.var()), 1e-12):
        return None
    return first + best


def periodic_pairs(flat: Flat, seg: Segments, n_pairs: int = 64, max_grid: int = 2000
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of times one period apart in every sweep whose voltage repeats (:func:`repeat_lag`), as
    (segment, time) of both ends: ``(seg_a, t_a, seg_b, t_b)``, each (P,), times in ms from the sweep's
    start. Empty when no sweep repeats.

    A slow state (NaP inactivation, τ of seconds) forgets its start more slowly than a window of two
    bursts lasts, so its own equation leaves that start free: a trajectory started 20 % low is still a
    solution, and the conductances trade against it. On a periodic recording the slow state must repeat
    with the voltage, which pins it.
    """
    sa, ta, sb, tb = [], [], [], []
    for k in range(flat.offsets.size - 1):
        a, b = int(flat.offsets[k]), int(flat.offsets[k + 1])
        t = flat.t[a:b]
        grid = np.unique(np.linspace(0, t.size - 1, min(t.size, max_grid)).astype(int))
        pos = repeat_lag(t, flat.v[a:b], grid)
        mine = np.flatnonzero(seg.trace == k)
        if pos is None or mine.size == 0:
            continue
        period = float(t[grid[pos]] - t[grid[0]])
        starts = np.linspace(t[0], t[-1] - period, n_pairs)
        edges = np.append(seg.t_left[mine], np.inf)
        for t0 in starts:
            t1 = t0 + period
            sa.append(mine[np.searchsorted(edges, t0, side="right") - 1])
            sb.append(mine[min(np.searchsorted(edges, t1, side="right") - 1, mine.size - 1)])
            ta.append(t0)
            tb.append(t1)
    return np.array(sa, int), np.array(ta, float), np.array(sb, int), np.array(tb, float)


def _grid(t: np.ndarray, max_dt: float) -> np.ndarray:
    """Sample indices strided down to steps of at most ``max_dt`` (ms), last sample included."""
    dt_s = float(np.median(np.diff(t))) if t.size > 1 else max_dt
    stride = max(1, int(np.floor(max_dt / dt_s + 1e-9)))
    idx = np.arange(0, t.size, stride)
    if idx[-1] != t.size - 1:
        idx = np.append(idx, t.size - 1)
    return idx


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
    idx = _grid(t, max_dt)
    out = _driven_on_grid(model, theta, t, v, i_ext, gates, idx, spinup)
    bad = ~np.isfinite(out)
    if bad.any():
        x0 = quasi_steady_hidden(model, theta, float(v[0]), float(i_ext[0]), gates)
        out = np.where(bad, x0[:, None, :], out)
    full = np.empty((theta.shape[0], t.size, model.n_states - 1))
    for j in range(model.n_states - 1):
        for e in range(theta.shape[0]):
            full[e, :, j] = np.interp(t, t[idx], out[e, :, j])
    return full


def _smoothed(tr, smooth_ms: float) -> np.ndarray:
    """The trace's voltage (mV) through a Savitzky–Golay filter (cubic, ``smooth_ms`` wide); unchanged when
    that is under 5 samples."""
    from scipy.signal import savgol_filter

    dt = float(np.median(np.diff(tr.t)))
    win = int(round(smooth_ms / dt)) | 1
    if win < 5 or tr.t.size < 5:
        return tr.v
    return savgol_filter(tr.v, min(win, tr.t.size if tr.t.size % 2 else tr.t.size - 1), 3)


def sampling_weights(flat: Flat, spread_ms: float = 2.0, floor: float = 4.0) -> np.ndarray:
    """Per-sample weight of the fast-moving voltage (spikes), mean 1 in every sweep.

    ``|dV/dt|`` from a cubic Savitzky–Golay differentiator (0.5 ms, at least 5 samples) less ``floor``
    times its median — in a recording that mostly moves slowly the median is the noise's level, so
    noise alone gets no weight — then spread by a moving average ``spread_ms`` wide, so that the whole
    spike with its repolarisation (where the fast gates move) is covered, not only the upstroke.

    Spikes fill a few % of a bursting recording but carry the fast gates' whole excursion; sampled
    uniformly, a network sees them once or twice a step and represents those gates poorly.

    Parameters
    ----------
    flat : Flat
        The problem's sweeps, concatenated.
    spread_ms : float
        Width of the moving average around fast samples, ms.
    floor : float
        Multiple of the median ``|dV/dt|`` subtracted first.

    Returns
    -------
    numpy.ndarray
        (T,) non-negative weights, mean 1 in every sweep (uniform where nothing in a sweep moves fast or
        it is too short to differentiate).
    """
    from scipy.ndimage import uniform_filter1d
    from scipy.signal import savgol_filter

    w = np.ones(flat.t.size)
    for a, b in zip(flat.offsets[:-1], flat.offsets[1:]):
        t, v = flat.t[a:b], flat.v[a:b]
        if t.size < 7:
            continue
        dt = float(np.median(np.diff(t)))
        win = min(max(5, int(round(0.5 / dt)) | 1), t.size if t.size % 2 else t.size - 1)
        d = np.abs(savgol_filter(v, win, 3, deriv=1, delta=dt))
        d = np.maximum(d - floor * np.median(d), 0.0)
        d = uniform_filter1d(d, max(1, int(round(spread_ms / dt))), mode="nearest")
        d[d < 1e-9 * d.max(initial=0.0)] = 0.0  # the running sum's rounding
        if np.isfinite(d).all() and d.mean() > 0:
            w[a:b] = d / d.mean()
    return w


def linear_parameters(model: NeuronModel, theta: np.ndarray, free_idx: list[int], y: np.ndarray,
                      i_ext: np.ndarray, rtol: float = 1e-6) -> list[int]:
    """Positions (into ``free_idx``) of free parameters that enter the voltage equation jointly linearly and
    no hidden-state equation (typically the maximal conductances).

    Tested numerically at the states ``y`` (N, S): changing such a parameter leaves every hidden state's
    right-hand side unchanged, and the voltage's right-hand side responds additively and proportionally
    to changes of the whole group. Parameters are added greedily in order.
    """
    base = model.rhs(0.0, y, theta[None, :], i_ext)
    scale = np.abs(base[:, 0]).max() + 1e-12
    rng = np.random.default_rng(0)
    group: list[int] = []

    def f_at(delta: dict[int, float]) -> np.ndarray:
        th = theta.copy()
        for j, d in delta.items():
            th[free_idx[j]] += d
        return model.rhs(0.0, y, th[None, :], i_ext)

    for j in range(len(free_idx)):
        step = 0.1 * max(abs(theta[free_idx[j]]), 1e-3)
        one = f_at({j: step})
        if not np.allclose(one[:, 1:], base[:, 1:], rtol=rtol, atol=1e-12):
            continue
        trial = group + [j]
        d = {k: float(rng.uniform(0.05, 0.2)) * max(abs(theta[free_idx[k]]), 1e-3) for k in trial}
        sum_single = sum(f_at({k: d[k]})[:, 0] - base[:, 0] for k in trial)
        joint = f_at(d)[:, 0] - base[:, 0]
        double = f_at({k: 2 * v for k, v in d.items()})[:, 0] - base[:, 0]
        if (np.abs(joint - sum_single).max() <= 1e-6 * scale and np.abs(double - 2 * joint).max() <= 1e-6 * scale
                and np.abs(joint).max() > 1e-9 * scale):
            group = trial
    return group


def driven_voltage_misfit(problem: EstimationProblem, theta: np.ndarray, gates: np.ndarray,
                          interval_ms: float | Sequence[float], smooth_ms: float = 0.0,
                          linear: list[int] | None = None, max_dt: float = 0.1,
                          spinup: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """How badly each parameter vector explains the recorded voltage, in integral form.

    The hidden states are integrated with the recorded voltage in place of V
    (:func:`driven_hidden_states`); then, over intervals of ``interval_ms``, the change of the
    recorded voltage is compared with the integral (trapezoidal, on the integration grid) of the voltage
    equation's right-hand side ``f_V(V, hidden, θ, I)`` (intervals overlap: one starts at every point of the
    integration grid). The misfit of one interval length is the sum of squared differences divided by the
    sum of squared deviations of the changes (so 1 means "explains nothing"), pooled over the sweeps;
    with several interval lengths it is the mean over them. The integral form needs no derivative of the
    noisy voltage, so no smoothing that would blunt fast spikes.

    Short intervals weigh the fast currents; a slow current (I_KCa through Ca, whose rate is ε) changes
    each millisecond's change of V by far less than the recording noise does, so its rate is nearly
    unidentifiable there. Over intervals of tens to hundreds of ms its effect accumulates while the
    noise averages out: slow rates need the long intervals (see :func:`misfit_intervals`).

    Parameters
    ----------
    problem : EstimationProblem
    theta : numpy.ndarray
        (N, P) full parameter vectors, canonical units.
    gates : numpy.ndarray
        (S,) bool, states kept in [0, 1].
    interval_ms : float or sequence of float
        Length(s) of the intervals, ms.
    smooth_ms : float
        Optional Savitzky–Golay smoothing of the voltage that drives the hidden states and enters f_V (0:
        the recorded samples).
    linear : list of int, optional
        Positions into ``problem.free`` of parameters found by :func:`linear_parameters`: they are not
        taken from ``theta`` but solved for (least squares over every interval length, each weighted as
        in the misfit, clipped to their bounds) — the variable projection that leaves only the other
        parameters to search.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        The misfits (N,) (``inf`` where the integration diverged) and ``theta`` with the linear
        parameters replaced by their solutions (N, P).
    """
    model = problem.model
    theta = np.array(np.atleast_2d(theta), float)
    lengths = [float(x) for x in np.atleast_1d(np.asarray(interval_ms, float))]
    lin = [problem.model.param_index(problem.free[j].name) for j in (linear or [])]
    parts = []
    for tr in problem.traces:
        t = tr.t - tr.t[0]
        v_d = _smoothed(tr, smooth_ms) if smooth_ms > 0 else tr.v
        idx = _grid(t, max_dt)
        hidden = _driven_on_grid(model, theta, t, v_d, tr.i_ext, gates, idx, spinup)
        y = np.concatenate([np.broadcast_to(v_d[idx][None, :, None], hidden.shape[:2] + (1,)), hidden], -1)
        h_grid = float(np.median(np.diff(t[idx]))) if idx.size > 1 else 1.0
        ms = [max(1, int(round(x / h_grid))) for x in lengths]
        if idx.size < min(ms) + 3:
            raise ConfigurationError("The sweep is too short for the parameter screen; set pinn option "
                                     "screen_candidates=0 or a shorter screen_interval_ms.")
        ms = [m for m in ms if idx.size >= m + 3]  # a long interval that does not fit this sweep: skipped
        v_g = tr.v[idx]
        # overlapping intervals, one starting at every grid point: every sample is an end point
        parts.append((t[idx][None, :], y, tr.i_ext[idx][None, :], np.diff(t[idx]),
                      {m: v_g[m:] - v_g[:-m] for m in ms}))
    # every interval length counts equally: its rows are divided by the spread of its changes
    scales: dict[int, float] = {}
    for *_, targets in parts:
        for m, d in targets.items():
            scales[m] = scales.get(m, 0.0) + float(((d - d.mean()) ** 2).sum())
    weight = {m: 1.0 / np.sqrt(max(v, 1e-30) * len(scales)) for m, v in scales.items()}

    def changes(th):
        """Weighted integrals of f_V over every interval of every length and sweep, (N, n_rows)."""
        out = []
        with np.errstate(all="ignore"):
            for tt, y, ii, w, targets in parts:
                f = model.rhs(tt, y, th[:, None, :], ii)[..., 0]
                cum = np.concatenate([np.zeros((f.shape[0], 1)), np.cumsum(0.5 * (f[:, 1:] + f[:, :-1]) * w, 1)], 1)
                out += [weight[m] * (cum[:, m:] - cum[:, :-m]) for m in targets]
        return np.concatenate(out, 1)

    observed = np.concatenate([weight[m] * d for *_, targets in parts for m, d in targets.items()])
    if lin:
        # ∫f_V = a + Σ_j B_j θ_j over the linear parameters: a at θ_lin = 0, B_j from unit vectors
        th0 = theta.copy()
        th0[:, lin] = 0.0
        a = changes(th0)
        cols = []
        for p in lin:
            th1 = th0.copy()
            th1[:, p] = 1.0
            cols.append(changes(th1) - a)
        Bm = np.stack(cols, -1)  # (N, K, L)
        target = observed[None, :] - a
        ok = np.isfinite(Bm).all((1, 2)) & np.isfinite(target).all(1)
        Bm = np.where(ok[:, None, None], Bm, 0.0)
        target = np.where(ok[:, None], target, 0.0)
        gram = np.einsum("nkl,nkm->nlm", Bm, Bm)
        eye = np.eye(len(lin))
        ridge = (1e-9 * np.trace(gram, axis1=1, axis2=2)[:, None, None] + 1e-30) * eye
        sol = np.linalg.solve(gram + ridge, np.einsum("nkl,nk->nl", Bm, target)[..., None])[..., 0]
        lo = np.array([problem.free[j].bounds[0] for j in linear])
        hi = np.array([problem.free[j].bounds[1] for j in linear])
        theta[:, lin] = np.where(ok[:, None], np.clip(sol, lo, hi), theta[:, lin])
    out = ((observed[None, :] - changes(theta)) ** 2).sum(1)
    return np.where(np.isfinite(out), out, np.inf), theta


def misfit_intervals(problem: EstimationProblem, short_ms: float, slow: bool, longest_fraction: float = 0.125,
                     n_long: int = 2, held: bool = False, isi_fraction: float = 1.0 / 3.0) -> list[float]:
    """Interval lengths for :func:`driven_voltage_misfit`, ms.

    Always ``short_ms``; when a free parameter acts on a slow state (``slow``) also ``n_long`` lengths
    spaced geometrically up to ``longest_fraction`` of the period of the recording's strongest rhythm
    slower than half its firing rate (the burst period of a burster): there the slow current's effect
    has accumulated well above the noise, yet the interval is short against the slow cycle.

    Otherwise, when some parameters will be held at their screened values (``held``), also
    ``isi_fraction`` of the median inter-spike interval: over one sample interval the driven states carry
    the discretisation error of a spike sampled every 0.1 ms (a few % bias of the conductances at 10 kHz);
    over a fraction of an inter-spike interval the spike's effect is summed whole.
    """
    out = [float(short_ms)]
    isi = median_isi(problem)
    if isi is None:
        return out
    if not slow:
        mid = isi_fraction * isi
        return out + [float(mid)] if held and mid > 2.0 * short_ms else out
    # the strongest rhythm slower than half the firing rate: the burst rate of a burster
    f = dominant_frequencies(problem, 1, 500.0 / isi)  # 1/ms
    if not f.size or f[0] <= 0:
        return out
    period = 1.0 / float(f[0])
    longest = longest_fraction * period
    if longest <= 2.0 * short_ms:
        return out
    ratio = (longest / short_ms) ** (1.0 / n_long)
    return out + [float(short_ms * ratio ** k) for k in range(1, n_long + 1)]


def screen_parameters(problem: EstimationProblem, inits: np.ndarray, gates: np.ndarray, n_candidates: int,
                      rounds: int, spread: float, interval_ms: float, rng: np.random.Generator,
                      smooth_ms: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Better starting parameters for each member, by a search on the driven voltage misfit.

    From a poor initial guess a PINN's parameters descend into whatever valley is nearest (e.g. for
    Morris–Lecar: the K conductance at its bound while phi → 0 and n goes flat). Before training, each
    member's start is therefore replaced by the best parameter vector found for
    :func:`driven_voltage_misfit`, which needs no network. Free parameters that enter only the voltage
    equation, linearly (:func:`linear_parameters`, usually the maximal conductances), are solved for by
    least squares for every candidate; the others are searched by a cross-entropy method: round 0 draws
    half of ``n_candidates`` around the member's start (normal in search coordinates with standard
    deviation ``spread``) and half uniformly within the bounds; each later round draws around the elite
    (best eighth) of the round before, with the elite's spread, keeping the elite.

    Parameters
    ----------
    problem : EstimationProblem
    inits : numpy.ndarray
        (E, F) starting values of the free parameters, canonical units.
    gates : numpy.ndarray
        (S,) bool, states kept in [0, 1].
    n_candidates, rounds : int
        Candidates per member and round; number of rounds.
    spread : float
        Standard deviation of round 0's candidates around the start, in log units for log-scale
        parameters and in quarters of the bounds' width otherwise.
    interval_ms : float
        Interval of the integral-form misfit, ms.
    rng : numpy.random.Generator
    smooth_ms : float
        Optional smoothing of the driving voltage (see :func:`driven_voltage_misfit`), ms.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        The screened starts (E, F) and their misfits (E,).
    """
    inits = np.atleast_2d(np.asarray(inits, float))
    E, F = inits.shape
    model = problem.model
    free_idx = [model.param_index(n) for n in problem.free_names]
    theta_base = problem.theta_full(inits[0])
    # the linear group, tested at states along the recording (hidden states at their scales' mid-range)
    tr0 = problem.traces[0]
    pick = np.linspace(0, tr0.t.size - 1, 64).astype(int)
    y_test = np.empty((pick.size, model.n_states))
    y_test[:, 0] = tr0.v[pick]
    y_test[:, 1:] = rng.uniform(0.1, 0.9, (pick.size, model.n_states - 1)) * np.array(
        [1.0 if g else st.scale for g, st in zip(gates[1:], model.states[1:])])
    linear = linear_parameters(model, theta_base, free_idx, y_test, tr0.i_ext[pick])
    search = [j for j in range(F) if j not in linear]

    space = SearchSpace(problem)
    zlo, zhi, to_z, to_theta = space.zlo, space.zhi, space.to_z, space.to_theta

    def score(z):  # (E, n, F) → misfits (E, n), candidates with the linear parameters solved (E, n, F)
        th = np.tile(theta_base, (z.shape[0] * z.shape[1], 1))
        th[:, free_idx] = to_theta(z.reshape(-1, F))
        m, th = driven_voltage_misfit(problem, th, gates, interval_ms, smooth_ms, linear)
        return m.reshape(z.shape[:2]), to_z(th[:, free_idx]).reshape(z.shape)

    z0 = to_z(inits)
    if not search:  # every free parameter is linear: one least-squares solve
        s, zc = score(z0[:, None, :])
        return to_theta(zc[:, 0]), s[:, 0]
    C = max(2, int(n_candidates))
    n_local = C // 2
    cand = np.repeat(z0[:, None, :], C, 1)
    ns = len(search)
    cand[:, 1:n_local, search] += float(spread) * rng.standard_normal((E, n_local - 1, ns))
    cand[:, n_local:, search] = zlo[search] + (zhi - zlo)[search] * rng.random((E, C - n_local, ns))
    cand = np.clip(cand, zlo, zhi)
    s, cand = score(cand)
    n_elite = max(2, C // 8)
    for _ in range(max(0, int(rounds) - 1)):
        order = np.argsort(s, 1)[:, :n_elite]
        elite = np.take_along_axis(cand, order[..., None], 1)
        s_elite = np.take_along_axis(s, order, 1)
        mu = elite.mean(1, keepdims=True)
        sd = np.maximum(elite.std(1, keepdims=True), 0.01)
        new = np.repeat(elite[:, :1], C - n_elite, 1)
        new[..., search] = np.clip(mu[..., search] + sd[..., search] * rng.standard_normal((E, C - n_elite, ns)),
                                   zlo[search], zhi[search])
        s_new, new = score(new)
        cand = np.concatenate([elite, new], 1)
        s = np.concatenate([s_elite, s_new], 1)
    best = np.argmin(s, 1)
    return to_theta(cand[np.arange(E), best]), s[np.arange(E), best]

"""The parameter screen: better starts for every member, found without a network.

From a poor initial guess a PINN's parameters descend into the nearest valley. Before training, each
member's start is replaced by the best parameters for the misfit of the voltage equation when the hidden
states are driven by the recorded voltage (:func:`driven_voltage_misfit`): conductances that enter the
voltage equation linearly are solved by least squares for each candidate (variable projection), the rest
searched by a short cross-entropy method (:func:`screen_parameters`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from neo_pinn.errors import ConfigurationError
from neo_pinn.models.base import NeuronModel
from neo_pinn.problem import EstimationProblem
from neo_pinn.transforms import LogLinear

from .config import PINNConfig
from .driven import driven_on_grid, integration_grid, smoothed_voltage
from .layout import Flat
from .rhythm import dominant_frequencies, median_isi
from .slow_analysis import parameters_of_slow_states, slow_state_mask

__all__ = ["linear_parameters", "driven_voltage_misfit", "misfit_intervals", "screen_parameters", "Screened",
           "screen_starts"]


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
        v_d = smoothed_voltage(tr, smooth_ms) if smooth_ms > 0 else tr.v
        idx = integration_grid(t, max_dt)
        hidden = driven_on_grid(model, theta, t, v_d, tr.i_ext, gates, idx, spinup)
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
    the discretisation error of a spike sampled every 0.1 ms, which biases the conductances; over a
    fraction of an inter-spike interval the spike's effect is summed whole.
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
                      rounds: int, spread: float, interval_ms: float | Sequence[float], rng: np.random.Generator,
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
    interval_ms : float or sequence of float
        Interval length(s) of the integral-form misfit, ms (see :func:`misfit_intervals`).
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

    space = LogLinear(problem)
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


@dataclass(frozen=True)


class Screened:
    """What :func:`screen_starts` found.

    Attributes
    ----------
    starts : numpy.ndarray or None
        (E, F) screened starts (canonical units); None when the screen is off.
    misfit : numpy.ndarray or None
        (E,) their misfits.
    slow_params : list of int
        Positions into ``problem.free`` of parameters acting on, or rescaling, a slow state.
    intervals : list of float
        Interval lengths of the misfit, ms.
    """

    starts: np.ndarray | None
    misfit: np.ndarray | None
    slow_params: list[int]
    intervals: list[float]


def screen_starts(problem: EstimationProblem, inits: np.ndarray, cfg: PINNConfig, flat: Flat, gates: np.ndarray,
                  seed: int) -> Screened:
    """Run the screen of the ``screen`` options from the starts ``inits`` (E, F), or nothing when
    ``screen_candidates`` is 0.

    When a free parameter sets the pace of a slow state (found in the hidden states driven at the initial
    guesses) the misfit gets long intervals; parameters acting on or rescaling a slow state are reported
    (stage 2 may hold them).
    """
    scr = cfg.screen
    if int(scr.screen_candidates) <= 0:
        return Screened(None, None, [], [float(scr.screen_interval_ms)])
    slow = slow_state_mask(problem, cfg.slow.slow_states, inits, flat, gates, bool(cfg.stages.warm_spinup))
    acting, scaling = parameters_of_slow_states(problem, problem.theta_full(inits[0]), slow, gates)
    slow_params = sorted(set(acting) | set(scaling))
    intervals = misfit_intervals(problem, float(scr.screen_interval_ms), bool(acting),
                                 held=bool(slow_params) and cfg.slow.hold_slow_parameters is not False)
    screened, misfit = screen_parameters(problem, inits, gates, int(scr.screen_candidates), int(scr.screen_rounds),
                                         float(scr.screen_spread), intervals, np.random.default_rng(seed),
                                         smooth_ms=float(scr.screen_smooth_ms))
    return Screened(screened, misfit, slow_params, intervals)

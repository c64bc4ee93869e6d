"""Slow hidden states and the parameters that act on them.

A slow state (Ca of a Ca-activated K burster, NaP inactivation) follows the bursts, not the spikes. Its
residual is taken in integral form over long intervals, the screen's misfit needs long intervals to see
the parameters that set its pace, and parameters a network could trade against a rescaled slow state are
held at their screened values.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from neo_pinn.errors import ConfigurationError
from neo_pinn.features import spike_times
from neo_pinn.models.base import NeuronModel
from neo_pinn.problem import EstimationProblem
from neo_pinn.transforms import LogLinear

from .driven import driven_hidden_states, quasi_steady_hidden
from .layout import Flat
from .rhythm import median_isi

__all__ = ["slow_states", "slow_state_mask", "acting_on_slow_states", "scaling_slow_states",
           "parameters_of_slow_states"]


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
    shows only over intervals long enough for the slow state to move
    (:func:`~neo_pinn_pinn.screen.misfit_intervals`)."""
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


def slow_state_mask(problem: EstimationProblem, option: str | Sequence[str], inits: np.ndarray, flat: Flat,
                    gates: np.ndarray, spinup: bool) -> np.ndarray:
    """(S,) bool: the slow states named by the ``slow_states`` option, or with ``"auto"`` those
    :func:`slow_states` finds in the hidden states driven at the centre of the initial guesses ``inits``
    (E, F) (their mean in search coordinates).

    Raises
    ------
    ConfigurationError
        A name that is not a hidden state of the model.
    """
    model = problem.model
    if option != "auto":
        names = list(option or [])
        unknown = [n for n in names if n not in model.state_names[1:]]
        if unknown:
            raise ConfigurationError(f"pinn option slow_states: {unknown} are not hidden states of {model.name} "
                                     f"({', '.join(model.state_names[1:])}).")
        return np.array([n in names for n in model.state_names])
    space = LogLinear(problem)  # the centre in search coordinates (log for positive, linear for e.g. EL)
    centre = problem.theta_full(space.to_theta(space.to_z(inits).mean(0, keepdims=True))[0])[None, :]
    warm = np.empty((1, flat.t.size, model.n_states - 1))
    for k in range(len(problem.traces)):
        a, b = flat.offsets[k], flat.offsets[k + 1]
        warm[:, a:b] = driven_hidden_states(model, centre, flat.t[a:b], flat.v[a:b], flat.i_ext[a:b], gates,
                                            spinup=spinup)
    return slow_states(model, problem, warm)


def parameters_of_slow_states(problem: EstimationProblem, theta: np.ndarray, slow: np.ndarray,
                              gates: np.ndarray) -> tuple[list[int], list[int]]:
    """Free parameters (positions into ``problem.free``) that act on a slow state
    (:func:`acting_on_slow_states`) and those equivalent to rescaling one (:func:`scaling_slow_states`),
    tested at full parameters ``theta`` (P,) on 64 samples of the first sweep, hidden states at rest."""
    model = problem.model
    free_idx = [model.param_index(n) for n in problem.free_names]
    tr0 = problem.traces[0]
    pick = np.linspace(0, tr0.t.size - 1, 64).astype(int)
    y_test = np.concatenate([tr0.v[pick, None], np.tile(quasi_steady_hidden(
        model, theta[None], float(tr0.v[0]), float(tr0.i_ext[0]), gates), (64, 1))], 1)
    acting = acting_on_slow_states(model, theta, free_idx, slow, y_test, tr0.i_ext[pick])
    scaling = scaling_slow_states(model, theta, free_idx, slow, y_test, tr0.i_ext[pick])
    return acting, scaling

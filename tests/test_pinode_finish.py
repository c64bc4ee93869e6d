"""The single-shooting finish of the ``pinode`` backend: its Levenberg–Marquardt solver reaches the least-squares
optimum scipy finds, with the Gauss–Newton covariance, member by member, and keeps to the feasible set."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import least_squares

from neo_pinn_pinode.finish import levenberg_marquardt

T = np.linspace(0.0, 50.0, 200)


def _decay_data(seed: int) -> np.ndarray:
    """A two-exponential decay (amplitudes, time constants in ms) with 2 % noise."""
    clean = 3.0 * np.exp(-T / 4.0) + 1.5 * np.exp(-T / 25.0)
    return clean + 0.02 * np.random.default_rng(seed).standard_normal(T.size)


def _model(x: np.ndarray) -> np.ndarray:
    a1, log_tau1, a2, log_tau2 = x
    return a1 * np.exp(-T / np.exp(log_tau1)) + a2 * np.exp(-T / np.exp(log_tau2))


def test_levenberg_marquardt_matches_scipy_per_member():
    data = np.stack([_decay_data(0), _decay_data(1)])  # two members, each with its own recording
    t = torch.tensor(T)
    y = torch.tensor(data)

    def residuals(x: torch.Tensor) -> torch.Tensor:
        rows = x.shape[0] // 2  # member-major rows: the first half member 0, the second member 1
        pred = x[:, :1] * torch.exp(-t / torch.exp(x[:, 1:2])) + x[:, 2:3] * torch.exp(-t / torch.exp(x[:, 3:4]))
        return pred - y.repeat_interleave(rows, 0)

    x0 = torch.tensor([[1.0, np.log(2.0), 1.0, np.log(40.0)], [5.0, np.log(8.0), 0.5, np.log(15.0)]],
                      dtype=torch.float64)
    fit = levenberg_marquardt(residuals, x0, lambda x: x, max_iter=200)
    for e in range(2):
        # scipy from the true values finds the global optimum; ours must reach it from the far start
        truth = np.array([3.0, np.log(4.0), 1.5, np.log(25.0)])
        ref = least_squares(lambda x: _model(x) - data[e], truth, method="lm", xtol=1e-14, ftol=1e-14)
        assert fit.x[e].numpy() == pytest.approx(ref.x, rel=1e-5, abs=1e-7)
        assert fit.cost[e] == pytest.approx(2.0 * ref.cost, rel=1e-8)
        jac = ref.jac
        s2 = 2.0 * ref.cost / (T.size - 4)
        assert np.sqrt(np.diag(fit.covariance[e])) == pytest.approx(np.sqrt(np.diag(s2 * np.linalg.inv(jac.T @ jac))),
                                                                    rel=1e-3)
    assert fit.costs[-1] <= fit.costs[0]


def test_levenberg_marquardt_stays_feasible():
    data = torch.tensor(_decay_data(2))[None]
    t = torch.tensor(T)

    def residuals(x):
        return x[:, :1] * torch.exp(-t / 10.0) - data

    def project(x):  # the amplitude may not exceed 1 (the unconstrained optimum is about 3.6)
        return x.clamp(max=1.0)

    fit = levenberg_marquardt(residuals, torch.tensor([[0.2]], dtype=torch.float64), project, max_iter=50)
    assert float(fit.x[0, 0]) == pytest.approx(1.0)

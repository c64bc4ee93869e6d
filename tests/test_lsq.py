"""The ``lsq`` backend: recovery, uncertainty, hidden states, joint sweeps, AR(1) noise, options, JSON.

Short (≤ 300 ms), seeded Morris–Lecar SNLC recordings at 10 kHz with 1 mV white noise, integrated at
dt = 0.1 ms (coarser than the backend's default, for speed; the checks allow for it).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from neo_pinn import EstimationProblem, EstimationResult
from neo_pinn.api import get_backend, get_model, list_backends, synthetic_trace
from neo_pinn.errors import ConfigurationError, EstimationError
from neo_pinn.noise import AR1Noise

FREE = ("gCa", "gK", "phi")
FAST = {"dt": 0.1}


@pytest.fixture(scope="module")
def model():
    return get_model("morris_lecar")


@pytest.fixture(scope="module")
def truth(model):
    values = model.param_values("snlc")
    return {k: values[k] for k in FREE}


@pytest.fixture(scope="module")
def recording():
    return synthetic_trace("morris_lecar", preset="snlc", duration=300.0, rate_hz=10000.0,
                           noise="white:sigma=1mV", seed=7)


def _fit(model, traces, truth, factor, **options):
    problem = EstimationProblem.build(model, traces, FREE, preset="snlc", truth=truth,
                                      init={k: factor * v for k, v in truth.items()},
                                      noise=options.pop("noise", None),
                                      initial_state=options.pop("initial_state", "fit"))
    backend = get_backend("lsq")(**(FAST | {"n_starts": 1} | options))
    return backend.fit(problem, seed=0, device="cpu")


@pytest.fixture(scope="module")
def fits(model, recording, truth):
    trace, _ = recording
    return {factor: _fit(model, trace, truth, factor) for factor in (0.5, 2.0)}


def test_registered_through_the_entry_point():
    from neo_pinn_lsq import LeastSquares

    assert "lsq" in list_backends()
    assert get_backend("lsq") is LeastSquares


@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_recovers_gca_gk_phi_from_half_and_double(fits, truth, factor):
    res = fits[factor]
    for name in FREE:
        p = res[name]
        assert p.free and p.init == pytest.approx(factor * truth[name])
        assert p.relative_error < 0.02, (name, p.value)
    assert res.metrics["rmse_mV"] == pytest.approx(1.0, abs=0.05)      # the noise, nothing more
    assert res.noise["sigma"] == pytest.approx(1.0, abs=0.05)
    assert res.metrics["max_defect"] < 1e-6                              # the final fit is continuous


@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_reported_std_is_of_the_right_order(fits, truth, factor):
    res = fits[factor]
    for name in FREE:
        p = res[name]
        assert p.std is not None and 0 < p.std < 0.01 * p.value        # positive, informative
        assert abs(p.value - truth[name]) < 5 * p.std, (name, p.value, p.std)
    # both starts end at the same optimum, far closer than the reported uncertainty
    a, b = fits[0.5], fits[2.0]
    for name in FREE:
        assert abs(a[name].value - b[name].value) < 0.1 * a[name].std


def test_hidden_gate_is_reconstructed(fits, recording):
    _, states = recording
    for res in fits.values():
        fit = res.fits[0]
        assert fit.states.shape == states.shape
        n_fit, n_true = fit.states[:, 1], states[:, 1]
        assert np.linalg.norm(n_fit - n_true) / np.linalg.norm(n_true) < 0.02


def test_metrics_history_and_samples(fits):
    res = fits[2.0]
    m = res.metrics
    assert m["n_starts"] == 1 and m["n_success"] == 1 and m["iterations"] >= 5
    assert m["cost"] > 0 and m["dt_ms"] == pytest.approx(0.1) and m["n_segments"] > 1
    assert len(res.history["cost"]) == m["iterations"] == len(res.history["stage"])
    assert all(np.isfinite(res.history["cost"]))
    # the last multiple-shooting cost is that of the continuous reconstruction: the fit is a single-shooting one
    assert res.history["cost"][-1] == pytest.approx(m["cost"], rel=1e-6)
    assert res.history["start_cost"][0] == pytest.approx(m["cost"], rel=1e-6)
    assert set(res.samples) == set(FREE) and all(len(v) == 1 for v in res.samples.values())


def test_result_round_trips_through_json(fits):
    res = fits[0.5]
    back = EstimationResult.from_json(res.to_json())
    assert back.backend == "lsq" and back.metrics["n_success"] == res.metrics["n_success"]
    for name in FREE:
        assert back[name].value == pytest.approx(res[name].value, rel=1e-12)
        assert back[name].std == pytest.approx(res[name].std, rel=1e-12)
    np.testing.assert_allclose(back.fits[0].states, res.fits[0].states)
    assert back.samples == res.samples and back.config["continuity"] == list(res.config["continuity"])


def test_two_sweeps_fitted_jointly(model, truth):
    tr1, st1 = synthetic_trace("morris_lecar", preset="snlc", duration=200.0, rate_hz=10000.0,
                               noise="white:sigma=1mV", seed=11)
    tr2, st2 = synthetic_trace("morris_lecar", preset="snlc", stimulus=48.0, duration=200.0, rate_hz=10000.0,
                               noise="white:sigma=1mV", seed=12)
    tr2 = dataclasses.replace(tr2, sweep=1)
    res = _fit(model, [tr1, tr2], truth, 2.0)
    assert [f.sweep for f in res.fits] == [0, 1]
    for name in FREE:
        assert res[name].relative_error < 0.02
        assert abs(res[name].value - truth[name]) < 5 * res[name].std
    for fit, st in zip(res.fits, (st1, st2), strict=True):              # each sweep its own initial state
        assert np.linalg.norm(fit.states[:, 1] - st[:, 1]) / np.linalg.norm(st[:, 1]) < 0.02
        assert fit.rmse == pytest.approx(1.0, abs=0.1)


def test_ar1_noise_is_whitened_and_estimated(model, truth):
    trace, _ = synthetic_trace("morris_lecar", preset="snlc", duration=300.0, rate_hz=10000.0,
                               noise="ar1:sigma=1mV,rho=0.8", seed=5)
    res = _fit(model, trace, truth, 2.0, noise=AR1Noise(1.0, 0.5))
    assert res.noise["rho"] == pytest.approx(0.8, abs=0.05)
    assert res.noise["sigma"] == pytest.approx(1.0, abs=0.1)
    for name in FREE:
        assert res[name].relative_error < 0.02
        assert abs(res[name].value - truth[name]) < 5 * res[name].std


def test_random_starts_run_as_one_batch(model, recording, truth):
    trace, _ = recording
    problem = EstimationProblem.build(model, trace, FREE, preset="snlc", truth=truth,
                                      initial_state="preset", window=(0.0, 150.0))
    res = get_backend("lsq")(n_starts=4, **FAST).fit(problem, seed=3, device="cpu")
    assert res.metrics["n_starts"] == 4 and all(len(v) == 4 for v in res.samples.values())
    assert 1 <= res.metrics["n_success"] <= 4 and len(res.history["start_cost"]) == 4
    best = np.nanargmin([np.inf if c is None else c for c in res.history["start_cost"]])
    assert res["gCa"].value == pytest.approx(res.samples["gCa"][best])
    for name in FREE:
        lo, hi = model.param_spec(name).bounds
        assert all(lo <= v <= hi for v in res.samples[name])           # estimates stay inside the bounds
        assert res[name].relative_error < 0.02


@pytest.mark.parametrize("options", [{"n_starts": 0}, {"method": "leapfrog"}, {"continuity": ()},
                                     {"segment_ms": -1.0}, {"random_starts": "sobol"}, {"tol": "small"},
                                     {"subsample": 1.5}, {"no_such_option": 1}])
def test_bad_options_raise(options):
    with pytest.raises(ConfigurationError):
        get_backend("lsq")(**options)


def test_options_are_a_frozen_typed_config():
    from neo_pinn_lsq import LsqConfig

    est = get_backend("lsq")(continuity=100, gate_states=["n"])
    assert isinstance(est.config, LsqConfig) and est.config.continuity == 100
    assert est.config.continuity_weights == (100.0,)                   # one number: one homotopy stage
    assert est.config.gate_states == ("n",)
    assert get_backend("lsq")().config.continuity_weights == (1.0, 10.0, 100.0, 1000.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        est.config.n_starts = 3
    with pytest.raises(ConfigurationError, match="continuity"):
        get_backend("lsq")(continuity=(1.0, -1.0))


def test_every_start_diverging_is_an_estimation_error(model, recording):
    trace, _ = recording
    trace = dataclasses.replace(trace, i_ext=np.full_like(trace.i_ext, 1e300))
    problem = EstimationProblem.build(model, trace, FREE, preset="snlc", window=(0.0, 20.0))
    with pytest.raises(EstimationError, match="diverged"):
        get_backend("lsq")(n_starts=2, max_iter=5, **FAST).fit(problem, device="cpu")


def test_moved_names_still_work_with_a_warning():
    from neo_pinn.simulation import choose_dt
    from neo_pinn.transforms import LogLogit
    from neo_pinn_lsq import shooting, transforms

    with pytest.warns(DeprecationWarning, match="LogLogit"):
        assert transforms.ParamTransform is LogLogit
    with pytest.warns(DeprecationWarning, match="neo_pinn.simulation.choose_dt"):
        assert shooting.choose_dt is choose_dt


def test_dt_must_divide_the_sampling_interval(model, recording, truth):
    trace, _ = recording
    problem = EstimationProblem.build(model, trace, FREE, preset="snlc")
    with pytest.raises(ConfigurationError, match="does not divide"):
        get_backend("lsq")(dt=0.03).fit(problem, device="cpu")


def test_forward_and_reverse_mode_jacobians_agree(model):
    import torch

    from neo_pinn_lsq.forward import integrate_segments, integrate_segments_reverse

    gen = torch.Generator().manual_seed(0)
    B, K, S, F = 6, 40, 2, 3
    free = [model.param_index(n) for n in FREE]
    theta = torch.tensor(model.theta(preset="snlc"), dtype=torch.float64).repeat(B, 1)
    x0 = torch.tensor([-40.0, 0.1], dtype=torch.float64) + torch.rand(B, S, generator=gen, dtype=torch.float64) * \
        torch.tensor([60.0, 0.3], dtype=torch.float64)
    i_half = torch.full((2 * K + 1, B), 60.0, dtype=torch.float64)
    dth = theta[:, free].clone()                                         # d theta / d log theta
    dx0 = torch.zeros(S + F, B, S, dtype=torch.float64)
    dx0[0, :, 0] = dx0[1, :, 1] = 1.0
    dtheta = torch.zeros(S + F, B, F, dtype=torch.float64)
    for j in range(F):
        dtheta[S + j, :, j] = dth[:, j]
    fwd = integrate_segments(model, "rk4", 0.05, K, 4, x0, dx0, theta, dtheta, free, i_half)
    rev = integrate_segments_reverse(model, "rk4", 0.05, K, 4, x0, theta, dth, free, i_half)
    for a, b in zip(fwd, rev, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    # and both match a finite difference in log gK
    eps = 1e-6
    th2 = theta.clone()
    th2[:, free[1]] *= np.exp(eps)
    v2 = integrate_segments(model, "rk4", 0.05, K, 4, x0, dx0, th2, dtheta, free, i_half)[0]
    torch.testing.assert_close((v2 - fwd[0]) / eps, fwd[1][S + 1], rtol=1e-4, atol=1e-5)

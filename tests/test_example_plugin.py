"""The example plugin (the third-party template): typed options, an integration step finer than the sampling
interval, and its initial states."""

from __future__ import annotations

import numpy as np
import pytest

import neo_pinn
from neo_pinn import plugins
from neo_pinn.errors import ConfigurationError
from neo_pinn.problem import EstimationProblem

@pytest.fixture()
def example(example_module):
    plugins.reset()
    plugins.register_plugin(example_module, name="example")
    yield example_module
    plugins.reset()


@pytest.fixture()
def recording(example):
    # 50 pA into 5 nS: a 10 mV step with a 20 ms time constant, sampled at 10 kHz (every 0.1 ms)
    return neo_pinn.synthetic_trace("passive_membrane", values={"C": 100.0, "gL": 5.0}, stimulus=50.0,
                                    duration=100.0, rate_hz=10000, noise="white:sigma=0.2mV", seed=1)


def test_fits_with_a_step_a_quarter_of_the_sampling_interval(example, recording):
    tr, _ = recording
    res = neo_pinn.estimate(tr, "passive_membrane", backend="random_search", free=["gL"], values={"C": 100.0},
                            backend_options={"n_samples": 512, "dt": tr.dt / 4}, seed=3)
    assert res.fits[0].states.shape == (tr.t.size, 1)
    np.testing.assert_array_equal(res.fits[0].t, tr.t)
    assert abs(res["gL"].value - 5.0) / 5.0 < 0.1
    assert res.metrics["rmse_mV"] < 0.5 and res.noise["sigma"] == pytest.approx(res.metrics["rmse_mV"])
    assert res.config["dt"] == pytest.approx(tr.dt / 4)


def test_finer_step_gives_the_same_trajectory_on_the_samples(example, recording):
    tr, _ = recording
    model = neo_pinn.get_model("passive_membrane")
    problem = EstimationProblem.build(model, tr, ["gL"], values={"C": 100.0})
    coarse = neo_pinn.get_backend("random_search")(n_samples=16).fit(problem, seed=0, device="cpu")
    fine = neo_pinn.get_backend("random_search")(n_samples=16, dt=tr.dt / 4).fit(problem, seed=0, device="cpu")
    assert coarse["gL"].value == fine["gL"].value                          # same draws, same choice
    np.testing.assert_allclose(fine.fits[0].states, coarse.fits[0].states, atol=1e-3)


def test_initial_state_vector_preset_and_fit(example, recording):
    tr, _ = recording
    model = neo_pinn.get_model("passive_membrane")
    backend = neo_pinn.get_backend("random_search")(n_samples=8)
    for initial, v0 in (("fit", tr.v[0]), ("preset", -70.0), ([-60.0], -60.0)):
        problem = EstimationProblem.build(model, tr, ["gL"], values={"C": 100.0}, initial_state=initial)
        res = backend.fit(problem, seed=0, device="cpu")
        assert res.fits[0].states[0, 0] == pytest.approx(v0)
    bad = EstimationProblem.build(model, tr, ["gL"], initial_state=[-60.0, 0.0])
    with pytest.raises(ConfigurationError, match="initial_state"):
        backend.fit(bad, device="cpu")


@pytest.mark.parametrize("options", [{"n_samples": 0}, {"n_samples": 2.5}, {"dt": -0.1}, {"dt": "fine"}])
def test_options_are_typed(example, options):
    cls = neo_pinn.get_backend("random_search")
    assert cls.config_class.__name__ == "RandomSearchConfig"
    with pytest.raises(ConfigurationError, match=next(iter(options))):
        cls(**options)


def test_step_must_divide_the_sampling_interval(example, recording):
    tr, _ = recording
    problem = EstimationProblem.build(neo_pinn.get_model("passive_membrane"), tr, ["gL"])
    with pytest.raises(ConfigurationError, match="does not divide"):
        neo_pinn.get_backend("random_search")(n_samples=4, dt=0.03).fit(problem, device="cpu")

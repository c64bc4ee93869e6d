"""The verdict on a fit (neo_pinn.verdict): the fitted model simulated freely on every sweep against the cell.

Recordings are Morris–Lecar (SNLC) step protocols solved with the independent scipy reference solver, plus
noise; results are assembled with ``EstimationResult.from_fit`` from chosen parameter values (no backend runs).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from neo_pinn.api import get_model
from neo_pinn.errors import ConfigurationError
from neo_pinn.problem import EstimationProblem
from neo_pinn.reference import reference_solution
from neo_pinn.result import EstimationResult
from neo_pinn.trace import Trace
from neo_pinn.verdict import CHECKS, Verdict, VerdictConfig, assess

MODEL = get_model("morris_lecar")
FREE = ("C", "gL", "gCa", "gK", "phi")
TRUTH = {n: MODEL.param_values("snlc")[n] for n in FREE}
AMPS = (0.0, 25.0, 50.0, 75.0, 100.0)     # rheobase of the SNLC preset ≈ 40 pA
HOLDOUT_AMP = 125.0
SIGMA = 0.5                                 # mV
ONSET, OFFSET, DURATION, RATE_KHZ = 100.0, 400.0, 500.0, 10.0
CONFIG = VerdictConfig(max_dt_ms=0.1)      # one RK4 step per 0.1 ms sample keeps the tests fast


def _sweep(amp: float, sweep: int, rest: np.ndarray, rng: np.random.Generator) -> tuple[Trace, np.ndarray]:
    t = np.arange(int(DURATION * RATE_KHZ) + 1) / RATE_KHZ
    _, y = reference_solution(MODEL, MODEL.theta(preset="snlc"), duration=DURATION, t_eval=t, y0=rest,
                              i_ext=lambda tt: amp if ONSET <= tt < OFFSET else 0.0, max_step=0.5,
                              rtol=1e-7, atol=1e-9)
    i = np.where((t >= ONSET) & (t < OFFSET), amp, 0.0)
    v = y[:, 0] + SIGMA * rng.standard_normal(t.size)
    return Trace(t=t, v=v, i_ext=i, stimulus_source="user", sweep=sweep), y


@pytest.fixture(scope="module")
def recording():
    """Five fitted step sweeps with their true states, and one held-out sweep."""
    rng = np.random.default_rng(7)
    _, y = reference_solution(MODEL, MODEL.theta(preset="snlc"), duration=1000.0, dt_out=1.0, i_ext=0.0)
    rest = y[-1]
    sweeps = [_sweep(a, k, rest, rng) for k, a in enumerate(AMPS)]
    holdout, _ = _sweep(HOLDOUT_AMP, len(AMPS), rest, rng)
    return [s[0] for s in sweeps], [s[1] for s in sweeps], holdout


@pytest.fixture(scope="module")
def problem(recording):
    traces, _, holdout = recording
    return EstimationProblem.build(MODEL, traces, FREE, preset="snlc", holdout=[holdout])


def _result(problem, states, values=None, **kw):
    return EstimationResult.from_fit(problem, "test", TRUTH | dict(values or {}), states, noise={"sigma": SIGMA}, **kw)


@pytest.fixture(scope="module")
def true_verdict(problem, recording):
    return assess(problem, _result(problem, recording[1]), config=CONFIG)


@pytest.fixture(scope="module")
def silent_verdict(problem, recording):
    return assess(problem, _result(problem, recording[1], {"gCa": 0.5}), config=CONFIG)


def test_the_true_parameters_pass(true_verdict):
    v = true_verdict
    assert v.status == "passed" and not v.failed
    assert tuple(c.name for c in v.checks) == CHECKS and all(c.passed for c in v.checks)
    assert v.rheobase_cell_pA == v.rheobase_model_pA == 50.0 and v.step_spacing_pA == 25.0
    for s in v.sweeps:
        assert s.n_spikes_model == s.n_spikes_cell and s.rmse_mV < 3 * SIGMA and not s.diverged
    assert [s.n_spikes_cell > 0 for s in v.sweeps] == [False, False, True, True, True, True]
    assert v.lines()[0].startswith("PASSED")


def test_a_silent_model_fails_spiking_and_rheobase(silent_verdict):
    v = silent_verdict
    assert v.status == "failed" and v.failed
    assert not v.check("spiking").passed and not v.check("rheobase").passed
    assert v.rheobase_cell_pA == 50.0 and v.rheobase_model_pA is None
    assert "silent where the cell fires" in v.check("spiking").message
    assert "never fires" in v.check("rheobase").message
    assert v.check("bounds").passed
    assert any(line.startswith("FAIL spiking") for line in v.lines())


def test_a_rate_off_by_40_percent_fails_firing_rate(problem, recording):
    # C / 1.4 and φ × 1.4 run the same dynamics 1.4 times faster: same rheobase, rates × 1.4
    v = assess(problem, _result(problem, recording[1], {"C": TRUTH["C"] / 1.4, "phi": TRUTH["phi"] * 1.4}),
               config=CONFIG)
    assert v.status == "failed"
    assert not v.check("firing_rate").passed
    assert v.check("spiking").passed and v.check("rheobase").passed
    assert "Hz" in v.check("firing_rate").message
    errors = [s.rate_error for s in v.sweeps if s.rate_error is not None]
    assert max(errors) > 0.25


def test_an_estimate_pinned_on_its_bound_fails(recording):
    traces, states, _ = recording
    pinned = EstimationProblem.build(MODEL, traces, FREE, preset="snlc", bounds={"gK": (1.0, TRUTH["gK"])})
    v = assess(pinned, _result(pinned, states), config=CONFIG)
    assert v.status == "failed"
    bounds = v.check("bounds")
    assert not bounds.passed and bounds.severity == "fail"
    assert "gK = 8 nS sits on its upper bound 8 nS" in bounds.message and "--bounds" in bounds.message
    assert all(c.passed for c in v.checks if c.name != "bounds")


def test_a_huge_std_warns_that_the_data_do_not_constrain_it(problem, recording):
    res = _result(problem, recording[1], std={"phi": 0.1, "gK": 0.1})
    v = assess(problem, res, holdout=(), config=CONFIG)
    assert v.status == "warning" and not v.failed
    c = v.check("constrained")
    assert not c.passed and c.severity == "warn"
    assert "do not constrain phi" in c.message and "gK" not in c.message
    assert [s.role for s in v.sweeps] == ["fit"] * len(AMPS)        # holdout=() leaves the held-out sweep out


def test_the_held_out_sweep_is_assessed(true_verdict):
    held = [s for s in true_verdict.sweeps if s.role == "holdout"]
    assert len(held) == 1 and held[0].amplitude_pA == HOLDOUT_AMP and held[0].n_spikes_cell > 0
    assert held[0].n_spikes_model == held[0].n_spikes_cell
    gen = true_verdict.generalisation()
    assert gen["fit"]["n_sweeps"] == len(AMPS) and gen["holdout"]["n_sweeps"] == 1
    assert gen["holdout"]["spike_count_error"] == 0 and gen["holdout"]["rmse_mV"] < 3 * SIGMA
    assert any(line.startswith("held-out sweeps") for line in true_verdict.lines())


def test_to_dict_from_dict_round_trip(silent_verdict):
    d = json.loads(json.dumps(silent_verdict.to_dict()))
    back = Verdict.from_dict(d | {"lines": silent_verdict.lines()})
    assert back == silent_verdict
    assert back.lines() == silent_verdict.lines() and d["generalisation"]["holdout"]["n_sweeps"] == 1


def test_a_flat_trace_with_estimates_on_bounds_fails():
    t = np.arange(2001) / RATE_KHZ
    flat = Trace(t=t, v=np.full_like(t, -65.0), i_ext=np.zeros_like(t), sweep=0)
    prob = EstimationProblem.build(MODEL, [flat], FREE, preset="snlc")
    upper = {f.name: f.bounds[1] for f in prob.free}
    res = EstimationResult.from_fit(prob, "test", upper, [np.tile([-65.0, 0.01], (t.size, 1))])
    v = assess(prob, res, config=CONFIG)
    assert v.status == "failed" and not v.check("bounds").passed
    assert v.check("rheobase").passed and "did not apply" in v.check("rheobase").message
    assert v.sweeps[0].amplitude_pA is None and v.noise_mV == 0.0


def test_a_diverging_simulation_fails():
    t = np.arange(501) / RATE_KHZ
    flat = Trace(t=t, v=np.full_like(t, -60.0), i_ext=np.full_like(t, 50.0), sweep=0)
    prob = EstimationProblem.build(MODEL, [flat], FREE, preset="snlc", bounds={"C": (1e-4, 200.0)})
    res = EstimationResult.from_fit(prob, "test", TRUTH | {"C": 1e-4}, [np.tile([-60.0, 0.01], (t.size, 1))])
    v = assess(prob, res, config=VerdictConfig(max_dt_ms=0.1, method="euler"))
    assert v.sweeps[0].diverged and not v.check("simulation").passed and v.status == "failed"
    assert np.isnan(v.sweeps[0].rmse_mV) and v.to_dict()["sweeps"][0]["rmse_mV"] is None


@pytest.mark.parametrize("bad", [{"rate_tolerance": 0.0}, {"rheobase_steps": -1}, {"bound_fraction": 0.6},
                                 {"method": "leapfrog"}, {"rmse_floor_mV": -1.0}])
def test_config_is_validated(bad):
    with pytest.raises(ConfigurationError):
        VerdictConfig(**bad)

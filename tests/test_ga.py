"""The ``ga`` backend: options, one simulation per generation, recovery, joint sweeps, refinement, CLI.

Short seeded Morris–Lecar SNLC recordings (≤ 300 ms at 5 kHz, 1 mV white noise) integrated at dt = 0.2 ms
keep every fit to seconds on one CPU core; the accuracy runs of the issue are in benchmarks/bench_ga.py
(and the ``slow`` test at the end).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from neo_pinn import EstimationProblem
from neo_pinn.api import get_backend, get_model, list_backends, synthetic_trace
from neo_pinn.cli import main
from neo_pinn.errors import ConfigurationError
from neo_pinn.testing import BackendCompliance

FREE = ("gCa", "gK", "phi")
FAST = {"dt": 0.2, "pop_size": 8, "n_gen": 2, "screen": 0}


class TestGaCompliance(BackendCompliance):
    backend = "ga"
    options = FAST
    step_options = {"dt": 0.1}     # 5 steps per sample of the kit's 2 kHz recording (FAST's 0.2 ms does not divide it)


@pytest.fixture(scope="module")
def model():
    return get_model("morris_lecar")


@pytest.fixture(scope="module")
def truth(model):
    values = model.param_values("snlc")
    return {k: values[k] for k in FREE}


def _problem(model, traces, truth, free=FREE, init_factor=None, **kw):
    bounds = {k: (0.25 * truth[k], 4.0 * truth[k]) for k in free}
    init = {k: init_factor * truth[k] for k in free} if init_factor else None
    return EstimationProblem.build(model, traces, list(free), preset="snlc", bounds=bounds, init=init,
                                   truth={k: truth[k] for k in free}, **kw)


@pytest.fixture(scope="module")
def snlc_fit(model, truth):
    """A small search on 250 ms from a start at twice the truth."""
    trace, states = synthetic_trace(model, preset="snlc", duration=250.0, rate_hz=5000.0, noise="white:sigma=1mV",
                                    seed=4)
    problem = _problem(model, trace, truth, init_factor=2.0)
    result = get_backend("ga")(dt=0.2, pop_size=32, n_gen=10, patience=10, refine="none").fit(problem, seed=0,
                                                                                                device="cpu")
    return problem, result, states


def test_registered_through_the_entry_point():
    from neo_pinn_ga import GeneticAlgorithm

    assert "ga" in list_backends()
    assert get_backend("ga") is GeneticAlgorithm


@pytest.mark.parametrize("options, fragment", [
    ({"pop_size": 2}, "pop_size"),
    ({"n_gen": 0}, "n_gen"),
    ({"trace": "dtw"}, "trace"),
    ({"objectives": "all"}, "objectives"),
    ({"rel_tol": -1.0}, "rel_tol"),
    ({"refine": "bfgs"}, "refine"),
    ({"refine_gens": 0}, "refine_gens"),
    ({"refine_sigma": -0.1}, "refine_sigma"),
    ({"engine": "cuda"}, "engine"),
    ({"dtype": "half"}, "dtype"),
    ({"features": ["spike_count", "no_such_feature"]}, "no_such_feature"),
    ({"max_evals": 0}, "max_evals"),
    ({"crossover_prob": 1.5}, "crossover_prob"),
    ({"smooth_ms": -0.1}, "smooth_ms"),
    ({"screen": -1}, "screen"),
    ({"screen": 2.5}, "screen"),
    ({"saturate": "yes"}, "saturate"),
])
def test_invalid_options_are_rejected(options, fragment):
    with pytest.raises(ConfigurationError, match=fragment):
        get_backend("ga")(**options)


def test_config_is_typed_frozen_and_reads_like_the_old_flat_options():
    import dataclasses

    from neo_pinn_ga import GAConfig, GeneticAlgorithm

    est = GeneticAlgorithm(pop_size=8, features="spike_count, isi_cv", refine_options={"max_iter": 3})
    c = est.config
    assert isinstance(c, GAConfig) and c.search.pop_size == c["pop_size"] == 8
    assert c["features"] == ("spike_count", "isi_cv")          # a command-line string becomes a list of names
    assert dict(c["refine_options"]) == {"max_iter": 3} and c["refine"] == "cmaes+lsq"  # the best measured default
    assert set(GeneticAlgorithm.default_config) == set(c.to_dict()) and len(c.to_dict()) == 32
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.search.pop_size = 16
    assert c.replace(pop_size=16).search.pop_size == 16 and c.search.pop_size == 8


def test_moved_names_still_work_with_a_deprecation_warning():
    import neo_pinn_ga.backend as backend
    import neo_pinn_ga.evaluate as evaluate
    from neo_pinn.simulation import choose_dt
    from neo_pinn.transforms import UnitCube
    from neo_pinn_ga.search import run_nsga2

    with pytest.warns(DeprecationWarning, match="UnitCube"):
        assert backend.SearchSpace is UnitCube
    with pytest.warns(DeprecationWarning, match="neo_pinn_ga.search"):
        assert backend.run_nsga2 is run_nsga2
    with pytest.warns(DeprecationWarning, match="neo_pinn.simulation.choose_dt"):
        assert evaluate.choose_dt is choose_dt


def test_a_search_where_every_simulation_diverged_raises_an_estimation_error(model, truth, monkeypatch):
    from neo_pinn.errors import EstimationError
    from neo_pinn_ga.evaluate import DIVERGED, PopulationEvaluator

    monkeypatch.setattr(PopulationEvaluator, "evaluate_population",
                        lambda self, free: np.full((len(free), len(self.objective_names)), DIVERGED))
    trace, _ = synthetic_trace(model, preset="snlc", duration=50.0, rate_hz=5000.0, seed=0)
    with pytest.raises(EstimationError, match="diverged"):
        get_backend("ga")(dt=0.2, pop_size=4, n_gen=1, screen=0).fit(_problem(model, trace, truth), device="cpu")


def test_dt_must_divide_the_sampling_interval(model, truth):
    trace, _ = synthetic_trace(model, preset="snlc", duration=50.0, rate_hz=5000.0, seed=0)
    with pytest.raises(ConfigurationError, match="divide"):
        get_backend("ga")(dt=0.15, pop_size=4, n_gen=1).fit(_problem(model, trace, truth), device="cpu")


def test_fused_engine_says_what_to_do(model, truth):
    trace, _ = synthetic_trace(model, preset="snlc", duration=50.0, rate_hz=5000.0, seed=0)
    with pytest.raises(ConfigurationError, match="engine='torch'"):
        get_backend("ga")(engine="fused", dt=0.2, pop_size=4, n_gen=1).fit(_problem(model, trace, truth), device="cpu")


def test_one_simulation_scores_the_whole_population(model, truth, monkeypatch):
    import neo_pinn_ga.evaluate as ev

    calls = []
    real = ev.simulate

    def counting(model_, theta, **kw):
        calls.append(tuple(theta.shape))
        return real(model_, theta, **kw)

    monkeypatch.setattr(ev, "simulate", counting)
    traces = [synthetic_trace(model, preset="snlc", stimulus=amp, duration=dur, rate_hz=5000.0, seed=k)[0]
              for k, (amp, dur) in enumerate(((60.0, 120.0), (45.0, 80.0)))]
    problem = _problem(model, traces, truth)
    evaluator = ev.PopulationEvaluator(problem, get_backend("ga")(dt=0.2).config, __import__("torch").device("cpu"),
                                       __import__("torch").float32)
    pop = problem.sample_starts(10, np.random.default_rng(0))
    obj = evaluator.evaluate_population(pop)
    assert calls == [(10 * 2, model.n_params)]          # ONE call: 10 individuals × 2 sweeps
    assert obj.shape == (10, len(evaluator.objective_names)) and np.all(np.isfinite(obj))
    assert evaluator.objective_names[-1] == "trace" and "spiking" in evaluator.objective_names
    # the truth scores better than a random population on every feature group
    best = evaluator.evaluate_population(np.array([[truth[k] for k in FREE]]))[0]
    assert np.all(best[:-1] <= np.median(obj[:, :-1], 0))


def test_silent_model_gets_a_large_finite_penalty(model, truth):
    import torch

    import neo_pinn_ga.evaluate as ev

    trace, _ = synthetic_trace(model, preset="snlc", duration=200.0, rate_hz=5000.0, seed=1)
    problem = _problem(model, trace, truth)
    evaluator = ev.PopulationEvaluator(problem, get_backend("ga")(dt=0.2).config, torch.device("cpu"), torch.float32)
    silent = [0.25 * truth["gCa"], 4.0 * truth["gK"], truth["phi"]]   # far too little inward current to spike
    obj = evaluator.evaluate_population(np.array([silent, [truth[k] for k in FREE]]))
    k = evaluator.objective_names.index("spiking")
    assert np.all(np.isfinite(obj)) and obj[0, k] > 5.0 and obj[1, k] < 1.0


def test_saturated_errors_rank_a_defined_feature_above_an_undefined_one(model, truth):
    import torch

    import neo_pinn_ga.evaluate as ev

    trace, _ = synthetic_trace(model, preset="snlc", duration=200.0, rate_hz=5000.0, noise="white:sigma=1mV",
                               seed=2)
    problem = _problem(model, trace, truth)
    pop = problem.sample_starts(24, np.random.default_rng(3))
    seen_large = False
    for saturate in (True, False):
        config = get_backend("ga")(dt=0.2, saturate=saturate).config
        evaluator = ev.PopulationEvaluator(problem, config, torch.device("cpu"), torch.float32)
        theta = evaluator.theta(pop)
        _, per = evaluator.objectives_from_voltage(evaluator.simulate_population(theta)[..., 0])
        pen = config["penalty"]
        for name, err in per[0]["errors"].items():
            one_sided = np.isfinite(per[0]["values"][name]) != np.isfinite(evaluator.sweeps[0].features[name])
            if saturate:
                assert np.all(err[one_sided] == pen)
                assert np.all(err[~one_sided] < pen), name    # defined in both: always better than one-sided
            else:
                seen_large |= bool(np.any(err[~one_sided] > pen))
    assert seen_large                    # without saturation some wrong-but-defined features score above it


def test_screen_keeps_the_best_ranked_individuals(model, truth, monkeypatch):
    import torch

    import neo_pinn_ga.evaluate as ev
    from neo_pinn.transforms import UnitCube
    from neo_pinn_ga.backend import GeneticAlgorithm
    from neo_pinn_ga.search import screen_population

    trace, _ = synthetic_trace(model, preset="snlc", duration=150.0, rate_hz=5000.0, noise="white:sigma=1mV",
                               seed=3)
    problem = _problem(model, trace, truth)
    est = GeneticAlgorithm(dt=0.2, pop_size=8, screen=64)
    evaluator = ev.PopulationEvaluator(problem, est.config, torch.device("cpu"), torch.float32)
    evaluator.batch_size, evaluator.compile = 8, "auto"
    calls = []
    real = evaluator.evaluate_population

    def recording(free):
        calls.append((len(free), evaluator.compile, evaluator.batch_size))
        return real(free)

    monkeypatch.setattr(evaluator, "evaluate_population", recording)
    space = UnitCube(problem)
    first = np.random.default_rng(0).random((8, 3))
    first[0] = space.to_x(np.array([truth[k] for k in FREE]))   # row 0 = the initial guess, here the truth
    chosen = screen_population(evaluator, space, first, 64, np.random.default_rng(1), progress=True)
    assert calls == [(64, False, None)]                 # one eager, unpadded call for the whole screen
    assert (evaluator.compile, evaluator.batch_size) == ("auto", 8)     # restored for the search
    assert chosen.shape == (8, 3) and np.any(np.all(np.isclose(chosen, first[0]), 1))  # the guess is screened,
    #                                                                          and the truth survives it
    # rank-and-crowding: no discarded individual dominates a chosen one
    f_chosen = real(space.to_theta(chosen))
    rng = np.random.default_rng(1)
    xs = (rng.permuted(np.tile(np.arange(64), (3, 1)), axis=1).T + rng.random((64, 3))) / 64
    xs[0] = first[0]
    f_screen = real(space.to_theta(xs))
    kept = np.array([np.any(np.all(np.isclose(x, chosen), 1)) for x in xs])
    assert kept.sum() == 8
    for fd in f_screen[~kept]:
        assert not np.any(np.all(fd <= f_chosen + 1e-6, 1) & np.any(fd < f_chosen - 1e-6, 1))


def test_screen_reuses_a_compiled_search_kernel_in_pop_size_chunks(model, truth, monkeypatch):
    import torch

    import neo_pinn_ga.evaluate as ev
    from neo_pinn.transforms import UnitCube
    from neo_pinn_ga.backend import GeneticAlgorithm
    from neo_pinn_ga.search import screen_population

    trace, _ = synthetic_trace(model, preset="snlc", duration=50.0, rate_hz=5000.0, seed=3)
    problem = _problem(model, trace, truth)
    est = GeneticAlgorithm(dt=0.2, pop_size=8, screen=64)
    evaluator = ev.PopulationEvaluator(problem, est.config, torch.device("cpu"), torch.float32)
    evaluator.batch_size, evaluator.compile = 8, True
    calls, rng = [], np.random.default_rng(0)

    def fake(free):  # chunking only: the objectives need not be real here
        calls.append((len(free), evaluator.compile, evaluator.batch_size))
        return rng.random((len(free), len(evaluator.objective_names)))

    monkeypatch.setattr(evaluator, "evaluate_population", fake)
    chosen = screen_population(evaluator, UnitCube(problem), rng.random((8, 3)), 64, np.random.default_rng(1))
    assert calls == [(8, True, 8)] * 8          # the search's own compiled batch shape, no second kernel
    assert chosen.shape == (8, 3)


def test_search_moves_far_closer_to_the_truth(snlc_fit, truth):
    _, res, _ = snlc_fit
    start = {k: 2.0 * v for k, v in truth.items()}
    err0 = max(abs(np.log(start[k] / truth[k])) for k in FREE)
    err = max(abs(np.log(res[k].value / truth[k])) for k in FREE)
    # measured over three noise/search seeds with this budget: 0.04–0.32 of the starting log error
    assert err < 0.5 * err0, {k: res[k].value for k in FREE}
    hist = res.history["best_score"]
    assert hist[-1] < hist[0] and all(b <= a + 1e-9 for a, b in zip(hist, hist[1:]))  # elitist: never worse


def test_result_carries_front_std_states_history(snlc_fit, model):
    problem, res, states_true = snlc_fit
    assert res.backend == "ga"
    front = res.samples
    assert set(front) == set(FREE) and len(front["gCa"]) == res.metrics["front_size"] >= 1
    assert front["gCa"][0] == pytest.approx(res["gCa"].value)        # samples sorted by score: best first
    for k in FREE:
        assert res[k].std is not None and 0 < res[k].std < res[k].value
    fit = res.fits[0]
    assert fit.states.shape == (problem.traces[0].t.size, model.n_states) and np.all(np.isfinite(fit.states))
    assert np.all((fit.states[:, 1] >= 0) & (fit.states[:, 1] <= 1))  # the hidden gate stays a probability
    h = res.history
    n = res.metrics["generations"]
    assert len(h["best_score"]) == n and len(h["throughput"]["evals_per_s"]) == n
    assert set(h["best_objectives"]) == set(h["objective_names"]) and set(h["best_params"]) == set(FREE)
    assert h["throughput"]["evaluations"][-1] == res.metrics["evaluations"]
    # one per generation (the first is the initial population) + the chosen solution's states + the screen
    # (one call: 1024 rows × 1250 samples is below SCREEN_CHUNK_VALUES)
    assert res.metrics["screened"] == 1024
    assert res.metrics["simulations"] == n + 2
    # metrics are single numbers; why the search stopped is a diagnostic
    assert all(isinstance(v, (bool, int, float)) for v in res.metrics.values()), res.metrics
    assert res.diagnostics["stopped"] in ("n_gen", "stagnation", "max_evals", "no new individuals")
    feats = h["sweep_features"][0]["features"]
    assert feats["spike_count"]["recorded"] >= 3 and feats["spike_count"]["fitted"] is not None


def test_joint_fit_of_sweeps_with_different_stimuli_and_lengths(model, truth):
    traces = []
    for k, (amp, dur) in enumerate(((45.0, 150.0), (80.0, 100.0))):
        tr, _ = synthetic_trace(model, preset="snlc", stimulus=amp, duration=dur, rate_hz=5000.0,
                                noise="white:sigma=1mV", seed=10 + k)
        traces.append(tr)
    problem = _problem(model, traces, truth, free=("gCa", "gK"), init_factor=0.5)
    res = get_backend("ga")(dt=0.2, pop_size=16, n_gen=5).fit(problem, seed=1, device="cpu")
    assert [f.t.size for f in res.fits] == [tr.t.size for tr in traces]
    rates = [d["features"]["mean_rate_hz"] for d in res.history["sweep_features"]]
    assert rates[1]["recorded"] > rates[0]["recorded"]          # the stronger step fires faster ...
    assert rates[1]["fitted"] > rates[0]["fitted"]              # ... in the fitted model too
    for k in ("gCa", "gK"):
        assert abs(np.log(res[k].value / truth[k])) < abs(np.log(0.5)), (k, res[k].value)   # closer than the start


def test_refine_lsq_keeps_or_improves_the_fit(model, truth):
    trace, _ = synthetic_trace(model, preset="snlc", duration=120.0, rate_hz=5000.0, noise="white:sigma=1mV", seed=5)
    problem = _problem(model, trace, truth, init_factor=1.5)
    res = get_backend("ga")(dt=0.2, pop_size=12, n_gen=3, refine="lsq", refine_starts=2,
                            refine_options={"dt": 0.2, "max_iter": 20}).fit(problem, seed=0, device="cpu")
    ref = res.history["refine"]
    assert len(ref["starts"]) == 2 and set(ref["ga"]) == set(FREE) == set(ref["lsq"])
    assert res.metrics["rmse_mV"] <= res.metrics["rmse_ga_mV"] + 1e-6
    assert res.metrics["rmse_mV"] < 1.5                          # at the noise level (1 mV) after refinement
    assert res.metrics["refine_taken"] and res.values["gCa"] == pytest.approx(ref["lsq"]["gCa"])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # lsq with 3 iterations need not converge here
def test_refine_lsq_runs_inside_the_fit_and_fires_after_fit_once(model, truth):
    import types

    from neo_pinn import plugins
    from neo_pinn.hookspecs import hookimpl

    seen = []

    def after_fit(problem, result):
        seen.append(result.backend)

    trace, _ = synthetic_trace(model, preset="snlc", duration=60.0, rate_hz=5000.0, seed=6)
    problem = _problem(model, trace, truth, init_factor=1.2)
    plugins.register_plugin(types.SimpleNamespace(neo_pinn_after_fit=hookimpl(after_fit)), name="spy")
    try:
        res = get_backend("ga")(dt=0.2, pop_size=4, n_gen=1, screen=0, refine="lsq", refine_starts=1,
                                refine_options={"dt": 0.2, "max_iter": 3}).fit(problem, seed=0, device="cpu")
    finally:
        plugins.reset()
    assert seen == ["ga"]                       # once, for the ga fit: the nested lsq fit fires nothing
    assert set(res.history["refine"]["lsq"]) == set(FREE) and len(res.history["refine"]["starts"]) == 1


def test_refinement_is_judged_by_a_free_running_simulation(model, truth, monkeypatch):
    from neo_pinn_ga.backend import GeneticAlgorithm

    trace, _ = synthetic_trace(model, preset="snlc", duration=120.0, rate_hz=5000.0, noise="white:sigma=1mV", seed=5)
    problem = _problem(model, trace, truth, init_factor=1.5)

    def stalled(self, problem, ctx, starts):
        # an lsq that did not close its multiple-shooting defects: its segment states sit on the recording
        # (RMSE ~0 by construction), its parameters are far off
        states = [np.column_stack([tr.v, np.full_like(tr.v, 0.1)]) for tr in problem.traces]
        far = {k: 3.0 * truth[k] for k in problem.free_names}
        return {"free_values": far, "std": {k: None for k in far}, "states": states, "cost": 1.0, "costs": [1.0],
                "starts": [list(map(float, starts[0]))]}

    monkeypatch.setattr(GeneticAlgorithm, "_refine", stalled)
    res = GeneticAlgorithm(dt=0.2, pop_size=12, n_gen=3, refine="lsq").fit(problem, seed=0, device="cpu")
    assert res.metrics["rmse_lsq_segments_mV"] < 0.5 < res.metrics["rmse_lsq_mV"]
    assert not res.metrics["refine_taken"]                     # the GA's own, better-simulating estimate is kept
    assert res.values["gCa"] == pytest.approx(res.history["refine"]["ga"]["gCa"])
    assert res.metrics["rmse_mV"] == pytest.approx(res.metrics["rmse_ga_mV"])


def test_run_cmaes_finds_a_minimum_and_never_returns_worse_than_its_start():
    from neo_pinn_ga.search import run_cmaes

    target = np.array([0.7, 0.3, 0.55])
    calls = []

    def bowl(x):
        calls.append(len(x))
        return ((x - target) ** 2 * np.array([1.0, 10.0, 100.0])).sum(1)

    out = run_cmaes(bowl, np.full(3, 0.2), sigma0=0.1, pop_size=16, n_gen=60, patience=60, ftol=1e-9, seed=3)
    np.testing.assert_allclose(out["x"], target, atol=1e-3)
    assert out["score"] < 1e-5 < out["score0"]
    assert calls[0] == 1 and set(calls[1:]) == {16}            # the start, then whole generations in one call
    best = [h["best_score"] for h in out["history"]]
    assert all(b <= a for a, b in zip(best, best[1:]))
    # a start at the minimum is returned as it is
    out = run_cmaes(bowl, target, sigma0=0.1, pop_size=8, n_gen=5, patience=5, ftol=1e-3, seed=0)
    assert np.array_equal(out["x"], target) and out["score"] == 0.0


def test_refine_cmaes_lowers_the_compromise_score_and_moves_towards_the_truth(model, truth):
    from neo_pinn_ga.evaluate import PopulationEvaluator

    trace, _ = synthetic_trace(model, preset="snlc", duration=200.0, rate_hz=5000.0, noise="white:sigma=1mV", seed=7)
    problem = _problem(model, trace, truth, init_factor=1.3)
    opts = dict(dt=0.2, pop_size=12, n_gen=3, screen=0)
    ga = get_backend("ga")(**opts, refine="none").fit(problem, seed=2, device="cpu")
    res = get_backend("ga")(**opts, refine="cmaes", refine_gens=20).fit(problem, seed=2, device="cpu")
    ref, m = res.history["refine"], res.metrics
    ga_values, values = ({k: r.values[k] for k in FREE} for r in (ga, res))
    assert ref["ga"] == pytest.approx(ga_values)                 # the same search, then the polish
    assert m["cmaes_taken"] and m["refine_taken"]
    assert m["cmaes_score"] < m["ga_score"] == pytest.approx(ga.metrics["score"])
    assert m["score"] == m["cmaes_score"] and values == pytest.approx(ref["cmaes"])
    best = ref["cmaes_best_score"]
    assert len(best) == m["cmaes_generations"] and all(b <= a for a, b in zip(best, best[1:]))

    def log_err(values):
        return max(abs(np.log(values[k] / truth[k])) for k in FREE)

    # measured with this search seed on noise seeds 7–9: the 3-generation GA stage 34 % off (log error
    # 0.30), the polish 0.8–3.4 %, RMSE 19–20 → 1.0–1.2 mV
    assert log_err(values) < 0.5 * log_err(ga_values), (values, ga_values)
    assert m["rmse_mV"] < m["rmse_ga_mV"]
    # the reported score is the evaluator's score of the returned parameters
    ev = PopulationEvaluator(problem, get_backend("ga")(**opts).config, __import__("torch").device("cpu"),
                             __import__("torch").float32)
    theta = np.array([[res.values[k] for k in problem.free_names]])
    assert ev.evaluate_population(theta).sum() == pytest.approx(m["cmaes_score"], rel=1e-4)


def test_refine_cmaes_then_lsq_starts_lsq_from_the_cmaes_estimate(model, truth, monkeypatch):
    from neo_pinn_ga.backend import GeneticAlgorithm

    trace, _ = synthetic_trace(model, preset="snlc", duration=200.0, rate_hz=5000.0, noise="white:sigma=1mV", seed=7)
    problem = _problem(model, trace, truth, init_factor=1.3)
    seen = []
    real_refine = GeneticAlgorithm._refine

    def spy(self, problem, ctx, starts):
        seen.append(np.array(starts))
        return real_refine(self, problem, ctx, starts)

    monkeypatch.setattr(GeneticAlgorithm, "_refine", spy)
    res = GeneticAlgorithm(dt=0.2, pop_size=12, n_gen=3, screen=0, refine="cmaes+lsq", refine_gens=20, refine_starts=1,
                           refine_options={"dt": 0.2, "max_iter": 20}).fit(problem, seed=2, device="cpu")
    ref, m = res.history["refine"], res.metrics
    assert m["cmaes_taken"] and len(seen) == 1
    np.testing.assert_allclose(seen[0][0], [ref["cmaes"][k] for k in problem.free_names])
    assert set(ref) >= {"ga", "cmaes", "lsq", "starts"}
    # lsq from the polished point reaches the noise level (1 mV) and is judged against the polished fit
    assert m["lsq_taken"] and m["rmse_mV"] == pytest.approx(m["rmse_lsq_mV"])
    assert m["rmse_lsq_mV"] <= m["rmse_cmaes_mV"] < m["rmse_ga_mV"]
    assert m["rmse_mV"] < 1.2


SAMPLES = __import__("pathlib").Path(__file__).resolve().parents[1] / "sample_data"


def test_cli_fit_with_ga_and_refine_writes_a_report_with_feature_sections(tmp_path, capsys):
    js, html = tmp_path / "r.json", tmp_path / "r.html"
    rc = main(["fit", str(SAMPLES / "ml_snlc.nwb"), "--model", "morris_lecar", "--backend", "ga",
               "--free", "gCa,gK", "--window", "0:150", "--option", "pop_size=6", "--option", "n_gen=1",
               "--option", "dt=0.1", "--option", 'refine_options={"max_iter":8}', "--refine", "lsq",
               "--json", str(js), "--report", str(html), "--quiet"])
    out = capsys.readouterr()
    d = json.loads(js.read_text())
    # one generation of six is not a fit: its verdict may fail it (exit 3); the outputs are written either way
    assert rc == (3 if d["status"] == "failed" else 0), out.err
    assert d["backend"] == "ga" and d["config"]["refine"] == "lsq" and "refine" in d["history"]
    assert d["parameters"]["gCa"]["true_value"] == 4.0
    text = html.read_text()
    assert "Features per sweep" in text and "Feature errors used by the backend" in text
    assert "f–I curve" not in text                               # one sweep: one step amplitude, no curve


def test_cli_fit_of_a_steps_file_shows_the_fi_curve(tmp_path, capsys):
    html = tmp_path / "r.html"
    rc = main(["fit", str(SAMPLES / "hh_steps.nwb"), "--model", "hodgkin_huxley", "--backend", "ga", "--free", "gNa",
               "--sweep", "all", "--window", "0:100", "--option", "pop_size=4", "--option", "n_gen=1",
               "--refine", "none", "--report", str(html), "--quiet"])
    assert rc in (0, 3), capsys.readouterr().err  # one generation of four may fail its verdict; the report is written
    text = html.read_text()
    assert "f–I curve" in text and "recorded rate (Hz)" in text
    assert re.search(r'<td class="num">20</td>', text)          # the 20 pA step is a point of the f–I table


def test_cli_refine_needs_a_backend_with_a_refine_stage(tmp_path, capsys):
    rc = main(["fit", str(SAMPLES / "ml_snlc.nwb"), "--model", "morris_lecar", "--backend", "lsq", "--free", "gCa",
               "--refine", "lsq", "--quiet"])
    assert rc == 4 and "--refine" in capsys.readouterr().err


@pytest.mark.slow
def test_recovers_snlc_within_5_percent_on_1s(model, truth):
    trace, _ = synthetic_trace(model, preset="snlc", duration=1000.0, rate_hz=20000.0, noise="white:sigma=1mV",
                               seed=0)
    res = get_backend("ga")().fit(_problem(model, trace, truth), seed=0, device="cpu")
    for k in FREE:
        assert res[k].relative_error < 0.05, (k, res[k].value)


def test_stagnation_waits_while_any_objective_still_improves():
    from neo_pinn_ga.search import run_nsga2

    def flat(x):        # nothing can improve: stops after `patience` stale generations
        return np.ones((len(x), 2))

    def traded(x):      # the sum (best compromise) is 1 everywhere, but each objective's best keeps falling
        return np.stack([x[:, 0], 1.0 - x[:, 0]], 1)

    kw = dict(pop_size=16, n_gen=40, max_evals=None, patience=3, ftol=1e-3, seed=0)
    out = run_nsga2(flat, 2, 2, **kw)
    assert out["stopped"] == "stagnation" and out["n_gen"] == 4
    out = run_nsga2(traded, 2, 2, **kw)
    assert out["n_gen"] > 8                       # the compromise alone would have stopped it at 4
    best0 = [h["best_objectives"][0] for h in out["history"]]
    assert best0[-1] < best0[3]                   # and the front's extreme did move after generation 4

"""The GA's ``engine="fused"``: objectives from the fused kernel's online features (neo_pinn_ga.fused_engine).

The oracle is the same evaluator run on the torch reference engine (``kernel_engine="torch"``,
:func:`neo_pinn.simulation.fused.online_features_torch`): same definitions, so the objectives must agree.
Without a GPU the kernel runs in Triton's CPU interpreter; as in tests/test_fused.py, TRITON_INTERPRET must
be set before triton is imported, so those checks run once in a subprocess executing this file as a script
(``python tests/test_ga_fused.py <out.pt>``) and the tests assert on what it saved. Sizes are tiny
(Morris–Lecar SNLC, 8 individuals, 60 ms at 5 kHz, dt = 0.2 ms) to stay well under a minute.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from neo_pinn import EstimationProblem
from neo_pinn.api import get_backend, get_model, synthetic_trace
from neo_pinn.errors import ConfigurationError

HAS_TRITON = importlib.util.find_spec("triton") is not None
ROOT = Path(__file__).resolve().parents[1]
FREE = ("gCa", "gK", "phi")


def _problem(durations=(60.0, 60.0, 40.0), amps=(60.0, 80.0, 70.0), rate_hz=5000.0, stim_delay_ms=0.0):
    """Morris–Lecar SNLC sweeps (1 mV noise); two of equal length share a launch, the third has its own."""
    m = get_model("morris_lecar")
    vals = m.param_values("snlc")
    truth = {k: vals[k] for k in FREE}
    traces = []
    for k, (amp, dur) in enumerate(zip(amps, durations)):
        stim = amp if not stim_delay_ms else f"step:amp={amp}pA,start={stim_delay_ms}ms"
        traces.append(synthetic_trace(m, preset="snlc", stimulus=stim, duration=dur, rate_hz=rate_hz,
                                      noise="white:sigma=1mV", seed=20 + k)[0])
    bounds = {k: (0.25 * truth[k], 4.0 * truth[k]) for k in FREE}
    return m, truth, EstimationProblem.build(m, traces, list(FREE), preset="snlc", bounds=bounds,
                                             truth=truth)


def _population(problem, truth, n, seed=0):
    pop = problem.sample_starts(n - 1, np.random.default_rng(seed))
    return np.concatenate([[[truth[k] for k in FREE]], pop])


def _evaluator(problem, kernel_engine, device="cpu", **options):
    from neo_pinn_ga.fused_engine import FusedPopulationEvaluator

    cfg = get_backend("ga")(**{"dt": 0.2, **options}).config
    return FusedPopulationEvaluator(problem, cfg, torch.device(device), torch.float32, kernel_engine=kernel_engine)


# ============================================================================ the interpreter worker

def _worker(out_path: str) -> None:
    """Run with TRITON_INTERPRET=1: fused kernel (interpreted) vs torch reference, and a short GA fit."""
    res: dict = {"timing": {}}
    _, truth, problem = _problem()
    pop = _population(problem, truth, 8)
    fused = _evaluator(problem, "fused")
    t = time.perf_counter()
    res["fused"] = fused.evaluate_population(pop)
    res["timing"]["fused_eval_s"] = time.perf_counter() - t
    res["launches"] = fused.n_launches
    res["launch_groups"] = fused.launch_groups
    res["torch"] = _evaluator(problem, "torch").evaluate_population(pop)
    res["names"] = fused.objective_names
    # a GA run on the fused engine: two generations of four (one sweep length: one launch each)
    _, truth1, problem1 = _problem(durations=(50.0, 50.0), amps=(60.0, 80.0))
    t = time.perf_counter()
    fit = get_backend("ga")(engine="fused", dt=0.2, pop_size=4, n_gen=2, screen=0, refine="none").fit(
        problem1, seed=0, device="cpu")
    res["timing"]["fit_s"] = time.perf_counter() - t
    res["fit"] = {"metrics": dict(fit.metrics), "values": dict(fit.values),
                  "objective_names": fit.history["objective_names"],
                  "sweep_features": fit.history["sweep_features"]}
    torch.save(res, out_path)


@pytest.fixture(scope="module")
def interp(tmp_path_factory):
    """Results of the interpreter worker (one subprocess for the module)."""
    if not HAS_TRITON:
        pytest.skip("triton is not installed (pip install neo-pinn[fused]); the interpreter checks need it")
    d = tmp_path_factory.mktemp("ga_fused_interp")
    out = d / "res.pt"
    path = [str(ROOT), str(ROOT / "plugins")] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = dict(os.environ, TRITON_INTERPRET="1", NEO_PINN_CACHE_DIR=str(d / "cache"),
               PYTHONPATH=os.pathsep.join(path), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), str(out)], env=env, capture_output=True,
                          text=True, timeout=600)
    if proc.returncode != 0:
        raise AssertionError(f"interpreter worker failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return torch.load(out, weights_only=False)


# ============================================================================ CPU: definitions and wiring

def test_voltage_features_equal_the_torch_engine_on_its_own_trace():
    """The recording side runs the torch engine's accumulators: on a simulated trace sampled at every step
    it reproduces online_features_torch (same spikes, times, ISIs, peaks, troughs, baseline)."""
    from neo_pinn.simulation import fused, simulate

    m = get_model("morris_lecar")
    B, N, dt = 6, 1500, 0.1
    th = torch.tensor(m.theta(preset="snlc"), dtype=torch.float64)[None].repeat(B, 1)
    th[:, m.param_index("gCa")] *= torch.linspace(0.7, 1.2, B, dtype=torch.float64)
    i_table = torch.full((1, N + 1), 70.0, dtype=torch.float64)
    kw = dict(i_table=i_table, dt=dt, n_steps=N, y0=m.initial_state("snlc"), window=(200, N + 1),
              baseline=(0, 300), dtype=torch.float64, device="cpu")
    ref = fused.online_features_torch(m, th, compile=False, **kw)
    v = simulate(m, th, duration=N * dt, dt=dt, i_ext=i_table.expand(B, -1), y0=kw["y0"], dtype=torch.float64,
                 device="cpu", compile=False).y[:, :, 0]
    got = fused.voltage_features(v, dt, window=(200, N + 1), baseline=(0, 300), threshold_mv=m.spike_threshold,
                                 rearm_mv=m.spike_rearm)
    assert (ref["spike_count"] >= 3).any()
    for k in ("spike_count", "first_spike_ms", "isi_mean_ms", "isi_cv", "peak_mean_mv", "trough_mean_mv",
              "rest_mv", "mean_rate_hz", "first_spike_latency_ms"):
        torch.testing.assert_close(got[k], ref[k], atol=1e-9, rtol=1e-9, equal_nan=True, msg=k)


def test_online_objectives_on_the_torch_reference(monkeypatch):
    """Engine-independent parts on CPU: groups, launch grouping by sweep length, the truth scoring best,
    and the per-generation path (accumulators) agreeing with the trace path (objectives_from_voltage)
    when dt equals the sampling interval (both then see the same samples)."""
    _, truth, problem = _problem()
    ev = _evaluator(problem, "torch")
    assert ev.objective_names == ("spiking", "shape", "trace")
    assert ev.launch_groups == [(0, 1), (2,)]
    pop = _population(problem, truth, 6)
    obj = ev.evaluate_population(pop)
    assert ev.n_launches == 2 and ev.n_simulations == 1
    assert obj.shape == (6, 3) and np.all(np.isfinite(obj))
    assert obj[0, 0] < 0.5 and obj[0, 1] < 1.0 and obj[0, 2] < 1.6        # truth: features match, RMSE ~ noise
    assert np.all(obj[0] <= np.median(obj[1:], 0))
    y = ev.simulate_population(ev.theta(pop))[..., 0]
    obj_v, per = ev.objectives_from_voltage(y)
    np.testing.assert_allclose(obj_v, obj, rtol=2e-3, atol=2e-3)
    assert set(per[0]["values"]) == {n for g in ev.groups.values() for n in g}


def test_rest_uses_the_pre_stimulus_samples():
    _, _, problem = _problem(durations=(60.0, 60.0), amps=(60.0, 80.0), stim_delay_ms=10.0)
    ev = _evaluator(problem, "torch")
    b = ev._baseline(problem.traces[0].t.size)
    assert b is not None and abs(b[1] * ev.sample_dt - 10.0) <= ev.sample_dt
    rest = [sw.features["rest_mv"] for sw in ev.sweeps]
    assert all(-80.0 < r < -20.0 for r in rest) and abs(rest[0] - rest[1]) < 1.5   # same holding current


def test_fused_engine_errors_say_what_to_do():
    _, _, problem = _problem(durations=(40.0,), amps=(60.0,))
    if os.environ.get("TRITON_INTERPRET", "0") != "1":
        with pytest.raises(ConfigurationError, match="engine='torch'"):
            _evaluator(problem, "fused")
        with pytest.raises(ConfigurationError, match="engine='torch'"):
            get_backend("ga")(engine="fused", dt=0.2, pop_size=4, n_gen=1).fit(problem, device="cpu")
    with pytest.raises(ConfigurationError, match="phase"):
        _evaluator(problem, "torch", trace="phase_plane")
    with pytest.raises(ConfigurationError, match="ap_width_ms"):
        _evaluator(problem, "torch", features=["spike_count", "ap_width_ms"])
    ev = _evaluator(problem, "torch", features=["spike_count", "mean_rate_hz"], objectives="features")
    assert ev.objective_names == ("spike_count", "mean_rate_hz", "trace")


# ============================================================================ interpreter: the kernel itself

def test_interpreter_fused_objectives_equal_the_torch_reference(interp):
    """Same definitions on both engines: float32 kernel vs float32 torch simulation differ by rounding
    only: measured max |Δ| 7e-6 on this population (identical counts), asserted to 1e-4 absolute / relative
    (objectives are in units of σ ≥ the feature floors, so that is < 1e-4 of a tolerance)."""
    a, b = interp["fused"], interp["torch"]
    assert interp["names"] == ("spiking", "shape", "trace")
    assert interp["launches"] == 2 and interp["launch_groups"] == [(0, 1), (2,)]
    assert a.shape == b.shape == (8, 3) and np.all(np.isfinite(a))
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    assert a[0, 0] < 0.5 and a[0, 2] < 1.6                                  # the truth (row 0) fits


def test_interpreter_ga_runs_on_the_fused_engine(interp):
    fit = interp["fit"]
    m = fit["metrics"]
    assert m["generations"] == 2 and m["evaluations"] >= 8
    assert m["simulations"] == m["generations"] + 1   # one launch per generation + the chosen solution's states
    assert fit["objective_names"] == ["spiking", "shape", "trace"]
    assert all(np.isfinite(fit["values"][k]) for k in FREE)
    feats = fit["sweep_features"][0]["features"]
    assert "peak_mean_mv" in feats and feats["spike_count"]["recorded"] >= 1


# ============================================================================ CUDA (skipped without it)

@pytest.mark.gpu
def test_cuda_fused_objectives_match_reference_and_run_a_ga():
    """Realistic size on the GPU: 1024 individuals × 2 sweeps of 500 ms at 20 kHz, dt = 0.05 ms (10,000
    RK4 steps). The compiled kernel (approximate ex2/rcp, FMA) differs from torch's CUDA ops by a few ulp
    per step, which near spiking onset can move a spike: ≥ 99 % of rows agree to 1e-2, and a GA
    generation is one launch."""
    from neo_pinn.simulation.fused import fused_available

    if not fused_available("cuda"):
        pytest.skip("triton is not importable")
    _, truth, problem = _problem(durations=(500.0, 500.0), amps=(60.0, 80.0), rate_hz=20000.0)
    pop = _population(problem, truth, 1024)
    fused = _evaluator(problem, "fused", device="cuda", dt=0.05)
    fused.evaluate_population(pop[:8])                                     # compiles the kernel
    torch.cuda.synchronize()
    t = time.perf_counter()
    a = fused.evaluate_population(pop)
    torch.cuda.synchronize()
    dt_fused = time.perf_counter() - t
    assert fused.n_launches == 2                                           # one launch per evaluation
    ref = _evaluator(problem, "torch", device="cuda", dt=0.05)
    ref.compile = False                                                    # eager: no minute-long compile
    b = ref.evaluate_population(pop)
    close = np.isclose(a, b, rtol=1e-2, atol=1e-2).all(1)
    assert close.mean() >= 0.99, f"{int((~close).sum())} rows differ"
    assert a[0, 0] < 0.5
    print(f"fused: {len(pop)} × 2 sweeps × 10000 steps in {dt_fused:.3f} s")
    fit = get_backend("ga")(engine="fused", dt=0.05, pop_size=256, n_gen=3, screen=0).fit(problem, seed=0, device="cuda")
    assert fit.metrics["simulations"] == fit.metrics["generations"] + 1


if __name__ == "__main__":  # the interpreter worker (see the module docstring)
    if os.environ.get("TRITON_INTERPRET") != "1":
        sys.exit("run with TRITON_INTERPRET=1")
    torch.set_num_threads(1)
    _worker(sys.argv[1])

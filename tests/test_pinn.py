"""The ``pinn`` backend: exact network derivatives, spectral features, warm start, a small CPU fit, ablations."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from neo_pinn_pinn import ABLATIONS, PINN
from neo_pinn_pinn.driven import driven_hidden_states
from neo_pinn_pinn.layout import flatten_traces, make_segments
from neo_pinn_pinn.network import EnsembleNet
from neo_pinn_pinn.rhythm import dominant_frequencies
from neo_pinn_pinn.screen import driven_voltage_misfit, linear_parameters, screen_parameters
from neo_pinn_pinn.slow_analysis import slow_states
from neo_pinn_pinn.spike_weights import sampling_weights
from neo_pinn_pinn.training import train_members

from neo_pinn.api import get_backend, get_model, synthetic_trace
from neo_pinn.errors import ConfigurationError, EstimationError
from neo_pinn.estimator import FitContext
from neo_pinn.models.base import gate_mask
from neo_pinn.problem import EstimationProblem
from neo_pinn.testing import BackendCompliance

FAST = {"n_members": 2, "stage1_steps": 30, "stage2_steps": 30, "width": 16, "depth": 2, "batch_points": 64,
        "warmup_steps": 5, "param_delay": 5, "n_fourier": 6, "log_every": 10}


class TestPinnCompliance(BackendCompliance):
    backend = "pinn"
    options = FAST


@functools.lru_cache(maxsize=None)
def _trace(preset="snlc", t0=500.0, t1=620.0, noise="white:sigma=1mV", model="morris_lecar", rate=10000.0):
    m = get_model(model)
    tr, st = synthetic_trace(m, preset=preset, duration=t1, rate_hz=rate, noise=noise, seed=1)
    keep = tr.t >= t0
    return m, tr.window(t0, t1 + 1.0), st[keep]


def test_registered_and_options_checked():
    assert get_backend("pinn") is PINN
    with pytest.raises(ConfigurationError, match="balance_eps"):
        PINN(balance_eps=0.0)
    with pytest.raises(ConfigurationError, match="random_starts"):
        PINN(random_starts="everywhere")
    with pytest.raises(ConfigurationError, match="stage2_steps"):
        PINN(stage2_steps=0)
    with pytest.raises(ConfigurationError, match="spike_sampling"):
        PINN(spike_sampling=1.0)
    with pytest.raises(ConfigurationError, match="rate_scaled_residuals"):
        PINN(rate_scaled_residuals="sometimes")
    with pytest.raises(ConfigurationError, match="periodic_slow_states"):
        PINN(periodic_slow_states="auto")
    assert set(ABLATIONS) == {"fourier_features", "random_weight_factorization", "two_stage_training",
                              "adaptive_loss_balancing", "separate_optimizers", "parameter_screen"}
    for switch in ABLATIONS.values():
        PINN(**switch)  # every ablation is a valid configuration


def test_options_are_typed_grouped_and_frozen():
    """Every option keeps its flat name and default, lives in a named group, is documented, is checked
    when the backend is made, and a configuration is never changed."""
    import dataclasses

    from neo_pinn_pinn.config import PINNConfig

    cfg = PINN(width=32, rwf=False).config
    assert isinstance(cfg, PINNConfig)
    assert cfg.network.width == cfg["width"] == 32 and cfg.network.rwf is False
    assert PINN.default_config["n_members"] == cfg.ensemble.n_members == 6
    assert len(PINN.default_config) == 63 and set(PINN.default_config) == set(PINNConfig.option_docs())
    assert all(PINNConfig.option_docs().values())
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.network.width = 8
    assert cfg.replace(width=16).network.width == 16 and cfg.network.width == 32
    with pytest.raises(ConfigurationError, match="residual_form.*'strong', 'weak', 'both'"):
        PINN(residual_form="pointwise")
    with pytest.raises(ConfigurationError, match="random_starts"):
        PINN(random_starts=True)  # not rewritten to "bounds" any more (the CLI passes "bounds" itself)


def test_importing_the_plugin_package_stays_light():
    """``import neo_pinn_pinn`` and its plugin module load neither the backend nor the training."""
    import subprocess
    import sys

    code = "import sys, neo_pinn_pinn.plugin; print(sorted(m for m in sys.modules if m.startswith('neo_pinn_pinn')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['neo_pinn_pinn', 'neo_pinn_pinn.plugin']"


@pytest.mark.parametrize("model,preset", [("morris_lecar", "snlc"), ("morris_lecar_burster", "bursting_fast"),
                                          ("butera_pbc", "bursting_fast")])
def test_hidden_states_start_at_rest(model, preset):
    """The driven hidden states start where their own equations are at rest with V clamped (the core's
    quasi-steady-state solver), for every member's parameters."""
    from neo_pinn_pinn.driven import quasi_steady_hidden

    m = get_model(model)
    theta = np.stack([m.theta(preset=preset), 1.5 * m.theta(preset=preset)])
    for v0 in (-60.0, -20.0):
        x = quasi_steady_hidden(m, theta, v0, 0.0, gate_mask(m))
        assert x.shape == (2, m.n_states - 1)
        f = m.rhs(0.0, np.concatenate([np.full((2, 1), v0), x], 1), theta, 0.0)[:, 1:]
        np.testing.assert_allclose(f, 0.0, atol=1e-12)


@pytest.mark.parametrize("rwf", [True, False])
def test_network_time_derivative_is_exact(rwf):
    """The hand-propagated dû/dt equals the derivative autograd takes of the same network."""
    gen = torch.Generator().manual_seed(0)
    net = EnsembleNet(2, 3, 2, torch.tensor([0.02, 0.05]), torch.tensor([0.004]), 8, 2, rwf, 0.5, 0.1, gen,
                      torch.float64, torch.device("cpu"))
    t = torch.linspace(-20, 20, 11, dtype=torch.float64).repeat(6, 1).requires_grad_(True)
    half = torch.full((6, 1), 25.0, dtype=torch.float64)
    u, du = net(t, t / half, 1.0 / half)
    for k in range(u.shape[-1]):
        (g,) = torch.autograd.grad(u[..., k].sum(), t, retain_graph=True)
        torch.testing.assert_close(du[..., k], g, rtol=1e-10, atol=1e-12)


def test_groups_are_independent():
    """Changing one member's weights changes only that member's outputs (members are separate fits)."""
    gen = torch.Generator().manual_seed(1)
    net = EnsembleNet(3, 2, 1, torch.tensor([0.01]), torch.zeros(0), 8, 2, True, 0.5, 0.1, gen, torch.float64,
                      torch.device("cpu"))
    t = torch.linspace(-5, 5, 7, dtype=torch.float64).repeat(6, 1)
    half = torch.full((6, 1), 5.0, dtype=torch.float64)
    before, _ = net(t, t / half, 1.0 / half)
    with torch.no_grad():
        net.V[0][2:4] += 1.0  # groups 2, 3 = member 1
    after, _ = net(t, t / half, 1.0 / half)
    changed = (after - before).abs().amax(dim=(1, 2)) > 0
    assert changed.tolist() == [False, False, True, True, False, False]


def test_dominant_frequency_of_a_spike_train():
    m, tr, _ = _trace(t0=0.0, t1=1000.0, noise=None)
    prob = EstimationProblem.build(m, [tr], ["gCa"], preset="snlc")
    f = dominant_frequencies(prob, 4, 500.0)
    # models.md: 17.1 Hz for the SNLC preset; the FFT bin is 1 Hz wide
    assert abs(f[0] * 1000.0 - 17.1) < 1.0
    assert np.all(f <= 0.5)


def test_segments_follow_the_spike_count():
    m, tr, _ = _trace(t0=0.0, t1=600.0, noise=None)
    prob = EstimationProblem.build(m, [tr], ["gCa"], preset="snlc")
    flat = flatten_traces(prob)
    seg = make_segments(prob, flat, spikes_per_segment=2, segment_ms=None)
    n_spikes = 10  # 17.1 Hz for 0.6 s
    assert abs(seg.n - math.ceil(n_spikes / 2)) <= 1
    assert seg.lo[0] == 0 and seg.hi[-1] == tr.t.size
    np.testing.assert_array_equal(seg.hi[:-1], seg.lo[1:])
    assert seg.linked[:-1].all() and not seg.linked[-1]
    one = make_segments(prob, flat, spikes_per_segment=0, segment_ms=None)
    assert one.n == 1


def test_driven_hidden_state_reproduces_the_true_gate():
    """The K+ gate integrated with the recorded voltage in place of V is the true n after a transient."""
    m, tr, st = _trace(t0=500.0, t1=700.0, noise="white:sigma=1mV")
    theta = m.theta(preset="snlc")[None]
    n = driven_hidden_states(m, theta, tr.t - tr.t[0], tr.v, tr.i_ext, gate_mask(m))[0, :, 0]
    late = tr.t - tr.t[0] > 60.0  # a few τn after the start
    assert np.max(np.abs(n[late] - st[late, 1])) < 0.01
    wrong = driven_hidden_states(m, m.theta({"phi": 0.02}, preset="snlc")[None], tr.t - tr.t[0], tr.v, tr.i_ext,
                                 gate_mask(m))[0, :, 0]
    assert np.max(np.abs(wrong[late] - st[late, 1])) > 0.05  # the test can fail: a wrong rate gives a wrong gate


def test_linear_parameters_are_the_conductances():
    """The variable projection of the screen solves exactly the maximal conductances of the V equation."""
    m = get_model("morris_lecar")
    free = ["C", "gL", "gCa", "gK", "phi", "EL"]
    rng = np.random.default_rng(0)
    y = np.stack([rng.uniform(-70, 30, 32), rng.uniform(0.05, 0.95, 32)], 1)
    found = linear_parameters(m, m.theta(preset="snlc"), [m.param_index(f) for f in free], y, np.full(32, 60.0))
    assert [free[j] for j in found] == ["gL", "gCa", "gK"]  # not C (1/C), not phi (n's rate), not EL (× gL)
    b = get_model("morris_lecar_burster")
    free_b = ["gCa", "gK", "gKCa", "epsilon"]
    yb = np.concatenate([y, rng.uniform(0.01, 1.0, (32, 1))], 1)
    found_b = linear_parameters(b, b.theta(preset="bursting_fast"), [b.param_index(f) for f in free_b], yb,
                                np.zeros(32))
    assert [free_b[j] for j in found_b] == ["gK", "gKCa"]  # gCa also drives the Ca equation


def test_screen_finds_the_parameters_from_poor_starts():
    """From starts 0.3× and 3× the truth, the screen lands within 10 % of all four ML parameters (a start
    for the training, on a 5 kHz, 2-spike window), and its misfit is far lower than at the starts."""
    m, tr, _ = _trace(t0=500.0, t1=620.0, rate=5000.0)
    truth = m.param_values("snlc")
    free = ["gCa", "gK", "phi", "gL"]
    prob = EstimationProblem.build(m, [tr], free, preset="snlc")
    t_true = np.array([truth[k] for k in free])
    inits = np.stack([0.3 * t_true, 3.0 * t_true])
    found, misfit = screen_parameters(prob, inits, gate_mask(m), 32, 5, 1.0, 1.0, np.random.default_rng(0))
    assert np.all(np.abs(found / t_true - 1) < 0.10), found / t_true
    th = np.tile(m.theta(preset="snlc"), (2, 1))
    th[:, [m.param_index(k) for k in free]] = inits
    at_starts, _ = driven_voltage_misfit(prob, th, gate_mask(m), 1.0)
    assert np.all(misfit < 0.5 * at_starts)


def test_slow_states_are_those_on_the_burst_time_scale():
    """A hidden state that follows the spikes is fast; one varying over several ISIs is slow."""
    _, tr, st = _trace(t0=500.0, t1=900.0, rate=5000.0)  # ML SNLC: 17 Hz spiking, V and the true n
    burster = get_model("morris_lecar_burster")  # V, n, Ca
    prob = EstimationProblem.build(burster, [tr], ["gKCa"], preset="bursting_fast")
    t = tr.t - tr.t[0]
    slow_wave = 0.3 + 0.1 * np.sin(2 * np.pi * t / 250.0)  # period ≈ 4 ISIs
    warm = np.stack([st[:, 1], slow_wave], -1)[None]
    assert slow_states(burster, prob, warm).tolist() == [False, False, True]
    spiky = np.stack([st[:, 1], st[:, 1] ** 2], -1)[None]
    assert slow_states(burster, prob, spiky).tolist() == [False, False, False]


def test_small_cpu_fit_recovers_two_conductances():
    """A short ML SNLC window, 1 mV noise: gCa and gK from 0.6× and 1.6×, hidden n reconstructed."""
    m, tr, st = _trace(t0=500.0, t1=620.0, rate=5000.0)
    truth = m.param_values("snlc")
    prob = EstimationProblem.build(m, [tr], ["gCa", "gK"], preset="snlc",
                                   init={"gCa": 0.6 * truth["gCa"], "gK": 1.6 * truth["gK"]},
                                   truth={k: truth[k] for k in ("gCa", "gK")})
    # without the screen: the physics-informed training itself must move the parameters to the truth
    opts = {"n_members": 2, "stage1_steps": 400, "stage2_steps": 3000, "width": 32, "batch_points": 128,
            "random_starts": "jitter", "jitter": 0.2, "screen_candidates": 0}
    res = PINN(**opts).fit(prob, seed=0, device="cpu", dtype=torch.float32)
    for name in ("gCa", "gK"):
        assert abs(res[name].value / truth[name] - 1) < 0.03, (name, res[name].value)
    n_err = np.linalg.norm(res.fits[0].states[:, 1] - st[:, 1]) / np.linalg.norm(st[:, 1])
    assert n_err < 0.05
    assert res.metrics["n_members"] == 2 and res.metrics["n_accepted"] >= 1
    assert set(res.history) >= {"loss_data", "loss_physics", "params"}
    assert res.noise["sigma"] == pytest.approx(1.0, rel=0.3)
    # the fitted model itself, simulated from the reconstructed start, spikes like the recording
    assert res.diagnostics["forward_rmse_mV"][0] < 10.0
    assert res.diagnostics["forward_spikes"][0][0] == res.diagnostics["forward_spikes"][0][1] >= 2


def test_result_holds_numbers_in_metrics_and_draws_in_samples():
    """Metrics are single numbers, samples the members' parameter draws; per-member losses, acceptance,
    starts, the screen and the per-sweep forward check are diagnostics."""
    m, tr, _ = _trace(t0=500.0, t1=560.0, rate=5000.0)
    prob = EstimationProblem.build(m, [tr], ["gCa", "gK"], preset="snlc", init={"gCa": 3.0, "gK": 9.0})
    res = PINN(**(FAST | {"screen_candidates": 8, "screen_rounds": 1})).fit(prob, seed=0, device="cpu")
    assert all(isinstance(v, (bool, int, float)) for v in res.metrics.values())
    assert set(res.samples) == {"gCa", "gK"} and all(len(v) == 2 for v in res.samples.values())
    d = res.diagnostics
    assert len(d["loss"]) == len(d["accepted"]) == 2 and sum(d["accepted"]) == res.metrics["n_accepted"]
    for p in ("gCa", "gK"):
        assert len(d[f"init_{p}"]) == len(d[f"screened_{p}"]) == 2
    assert len(d["screen_misfit"]) == 2 and len(d["trainable_frequencies_hz"]) == 2
    assert len(d["forward_rmse_mV"]) == len(d["forward_spikes"]) == 1
    assert res.metrics["forward_rmse_max_mV"] == max(d["forward_rmse_mV"])
    assert res.metrics["forward_spikes_match"] == (d["forward_spikes"][0][0] == d["forward_spikes"][0][1])


def test_a_diverging_training_raises_estimation_error(monkeypatch):
    """A loss that becomes non-finite is a failed estimation, not a configuration error."""
    from neo_pinn_pinn.objective import EnsembleObjective

    m, tr, _ = _trace(t0=500.0, t1=560.0, rate=5000.0)
    prob = EstimationProblem.build(m, [tr], ["gCa"], preset="snlc", init={"gCa": 3.0})
    monkeypatch.setattr(EnsembleObjective, "physics_term",
                        lambda self, u, du, idx, z: torch.full((self.E, self.S), math.nan, **self.kw))
    with pytest.raises(EstimationError, match="non-finite"):
        PINN(**(FAST | {"screen_candidates": 0})).fit(prob, seed=0, device="cpu")


def test_forward_check_tells_a_wrong_model_from_the_right_one():
    """The forward simulation (not the network) judges an estimate: the truth reproduces the recording,
    a wrong K conductance does not."""
    m, tr, st = _trace(t0=500.0, t1=620.0, rate=5000.0)
    prob = EstimationProblem.build(m, [tr], ["gK"], preset="snlc")
    right = PINN.forward_check(prob, {"gK": m.param_values("snlc")["gK"]}, [st])
    wrong = PINN.forward_check(prob, {"gK": 3.0 * m.param_values("snlc")["gK"]}, [st])
    assert right["forward_rmse_mV"][0] < 3.0  # 1 mV noise
    assert right["forward_spikes"][0][0] == right["forward_spikes"][0][1]
    assert wrong["forward_rmse_mV"][0] > 3 * right["forward_rmse_mV"][0]


def test_members_match_separate_fits():
    """Training two members together gives what each gives alone (no coupling through the batch)."""
    m, tr, _ = _trace(t0=500.0, t1=560.0, rate=5000.0, noise=None)
    prob = EstimationProblem.build(m, [tr], ["gCa", "gK"], preset="snlc")
    cfg = dict(PINN.default_config) | FAST | {"stage1_steps": 20, "stage2_steps": 20}
    inits = np.array([[3.0, 9.0], [5.0, 6.0]])

    def ctx():
        return FitContext(seed=0, device=torch.device("cpu"), dtype=torch.float64, progress=False,
                          rng=np.random.default_rng(0))

    both = train_members(prob, inits, cfg, ctx())
    # member-wise quantities that do not depend on the other member: the initial data loss and the
    # physics residual scale are per member; the parameter path of member 0 with member 1 replaced by a
    # copy of member 0 must be identical to member 0's path in the pair
    twin = train_members(prob, inits[[0, 0]], cfg, ctx())
    np.testing.assert_allclose(both.history["theta"][:, 0], twin.history["theta"][:, 0], rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(ABLATIONS))
def test_each_ablation_runs_and_changes_the_training(name):
    m, tr, _ = _trace(t0=500.0, t1=560.0, rate=5000.0)
    prob = EstimationProblem.build(m, [tr], ["gCa"], preset="snlc", init={"gCa": 3.0})
    full = PINN(**FAST).fit(prob, seed=0, device="cpu")
    ablated = PINN(**(FAST | ABLATIONS[name])).fit(prob, seed=0, device="cpu")
    assert np.isfinite(ablated["gCa"].value)
    assert ablated.history["params"]["gCa"] != full.history["params"]["gCa"] or \
        ablated.history["loss_data"] != full.history["loss_data"]


def test_cli_fit_with_every_output(tmp_path, capsys):
    """`neo-pinn fit --backend pinn` with the contract's flags: JSON, HTML report, attached NWB."""
    import json
    from pathlib import Path

    import pynwb

    from neo_pinn.cli import main

    sample = Path(__file__).resolve().parents[1] / "sample_data" / "ml_snlc.nwb"
    js, html, nwb = tmp_path / "r.json", tmp_path / "r.html", tmp_path / "fitted.nwb"
    rc = main(["fit", str(sample), "--model", "morris_lecar", "--preset", "snlc", "--backend", "pinn",
               "--free", "gCa,gK", "--init", "gCa=3,gK=10", "--bounds", "gCa=0.5:20", "--sweep", "0",
               "--window", "100:200", "--noise", "ar1", "--seed", "2", "--float32", "--device", "cpu",
               "--option", "n_members=2", "--option", "stage1_steps=20", "--option", "stage2_steps=20",
               "--option", "width=16", "--json", str(js), "--report", str(html), "--out", str(nwb), "--quiet"])
    out = capsys.readouterr().out
    d = json.loads(js.read_text())
    # 40 training steps are not a fit: its verdict may fail it (exit 3); every output is written either way
    assert rc == (3 if d["status"] == "failed" else 0)
    assert "gCa" in out and "n_accepted" in out
    assert d["backend"] == "pinn" and d["config"]["n_members"] == 2 and set(d["noise"]) == {"sigma", "rho"}
    assert d["parameters"]["gCa"]["init"] == 3.0 and 0.5 <= d["parameters"]["gCa"]["value"] <= 20
    assert "Optimisation history" in html.read_text()
    res = json.loads(js.read_text())
    with pynwb.NWBHDF5IO(str(nwb), "r") as io:  # --out .nwb: one series per state in processing/icephys
        module = io.read().processing["icephys"]
        base = f"morris_lecar_pinn_{res['provenance']['run_id']}_sweep0"
        assert {f"{base}_V", f"{base}_n"} <= set(module.data_interfaces)
        np.testing.assert_allclose(module[f"{base}_n"].data[:], np.array(res["fits"][0]["states"])[:, 1], rtol=1e-6)


@pytest.mark.parametrize("option", [{"local_weights": True}, {"residual_form": "weak"}, {"residual_form": "both"},
                                    {"residual_norm": "fixed"}, {"warm_spinup": False},
                                    {"spike_sampling": 0.5}, {"rate_scaled_residuals": True}])
def test_optional_residual_forms_run_and_differ(option):
    m, tr, _ = _trace(t0=500.0, t1=560.0, rate=5000.0)
    prob = EstimationProblem.build(m, [tr], ["gCa"], preset="snlc", init={"gCa": 3.0})
    full = PINN(**FAST).fit(prob, seed=0, device="cpu")
    other = PINN(**(FAST | option)).fit(prob, seed=0, device="cpu")
    assert np.isfinite(other["gCa"].value) and np.all(np.isfinite(other.fits[0].states))
    assert other.history["params"]["gCa"] != full.history["params"]["gCa"]


def test_forced_slow_state_uses_the_integral_residual():
    """``slow_states`` names a hidden state whose residual is taken in integral form; the training runs,
    records it, and differs from the pointwise form; an unknown name is refused."""
    m, tr, _ = _trace(t0=500.0, t1=620.0, rate=5000.0)
    prob = EstimationProblem.build(m, [tr], ["gCa", "phi"], preset="snlc", init={"gCa": 3.0, "phi": 0.05})
    opts = FAST | {"screen_candidates": 0}
    pointwise = PINN(**opts).fit(prob, seed=0, device="cpu")
    integral = PINN(**(opts | {"slow_states": ["n"]})).fit(prob, seed=0, device="cpu")
    assert pointwise.diagnostics["slow_states"] == [] and integral.diagnostics["slow_states"] == ["n"]
    assert pointwise.metrics["periodic_pairs"] == 0 and integral.metrics["periodic_pairs"] > 0
    aperiodic = PINN(**(opts | {"slow_states": ["n"], "periodic_slow_states": False})).fit(prob, seed=0, device="cpu")
    assert aperiodic.metrics["periodic_pairs"] == 0
    assert aperiodic.history["params"]["phi"] != integral.history["params"]["phi"]
    assert np.isfinite(integral["phi"].value)
    assert integral.history["params"]["phi"] != pointwise.history["params"]["phi"]
    with pytest.raises(ConfigurationError, match="slow_states"):
        PINN(**(opts | {"slow_states": ["Ca"]})).fit(prob, seed=0, device="cpu")


def _burst_voltage(t_ms: np.ndarray, period_ms: float = 200.0) -> np.ndarray:
    """A periodic burst pattern, mV: 4 spikes (1 ms Gaussians to +20 mV) every 20 ms in the first 80 ms of
    every period, −60 mV between."""
    phase = np.mod(t_ms, period_ms)
    v = np.full_like(t_ms, -60.0)
    for k in range(4):
        v += 80.0 * np.exp(-0.5 * ((phase - 10.0 - 20.0 * k) / 0.5) ** 2)
    return v


def test_spinup_finds_the_periodic_start_of_a_slow_state():
    """Ca of the ML burster (τ = 1/ε = 200 ms) driven by a periodic burst pattern: over a window of 2.3
    periods, starting Ca at the fixed point of one period's map reproduces the periodic solution (reached
    after 10 periods of spin-up) within 1 % of its range; starting from rest does not."""
    from neo_pinn_pinn.rhythm import repeat_lag

    b = get_model("morris_lecar_burster")
    theta = b.theta(preset="bursting_fast")[None]
    dt, period = 0.1, 200.0
    t_long = np.arange(0.0, 12.3 * period, dt)
    v_long = _burst_voltage(t_long, period)
    gates = gate_mask(b)
    ca_long = driven_hidden_states(b, theta, t_long, v_long, np.zeros_like(t_long), gates)[0, :, 1]
    start = int(round(10.0 * period / dt))
    t, v = t_long[start:] - t_long[start], v_long[start:]
    reference = ca_long[start:]
    span = float(np.ptp(reference))
    assert repeat_lag(t, v, np.arange(t.size)) == int(round(period / dt))
    fixed = driven_hidden_states(b, theta, t, v, np.zeros_like(t), gates, spinup=True)[0, :, 1]
    rest = driven_hidden_states(b, theta, t, v, np.zeros_like(t), gates, spinup=False)[0, :, 1]
    assert np.max(np.abs(fixed - reference)) < 0.01 * span
    assert np.max(np.abs(rest - reference)) > 0.1 * span  # the test can fail: a wrong start shows


def test_slow_parameters_and_long_intervals():
    """In the ML burster, gCa (Ca influx) and epsilon (Ca's rate) act on the slow Ca, gK and gKCa do not;
    with such parameters the misfit adds intervals up to an eighth of the burst period."""
    from neo_pinn_pinn.screen import misfit_intervals
    from neo_pinn_pinn.slow_analysis import acting_on_slow_states

    b = get_model("morris_lecar_burster")
    free = ["gCa", "gK", "gKCa", "epsilon"]
    rng = np.random.default_rng(0)
    y = np.stack([rng.uniform(-70, 30, 16), rng.uniform(0.05, 0.95, 16), rng.uniform(0.1, 1.0, 16)], 1)
    found = acting_on_slow_states(b, b.theta(preset="bursting_fast"), [b.param_index(f) for f in free],
                                  np.array([False, False, True]), y, np.zeros(16))
    assert [free[j] for j in found] == ["gCa", "epsilon"]
    assert acting_on_slow_states(b, b.theta(preset="bursting_fast"), [b.param_index(f) for f in free],
                                 np.array([False, False, False]), y, np.zeros(16)) == []
    t = np.arange(0.0, 800.0, 0.1)
    from neo_pinn.trace import Trace

    tr = Trace(t=t, v=_burst_voltage(t), i_ext=np.zeros_like(t))
    prob = EstimationProblem.build(b, [tr], free, preset="bursting_fast")
    assert misfit_intervals(prob, 1.0, False) == [1.0]
    lengths = misfit_intervals(prob, 1.0, True)
    assert len(lengths) == 3 and lengths[0] == 1.0 and abs(lengths[-1] - 200.0 / 8) < 2.0
    # parameters held without acting on a slow state: one extra length, a third of the 20 ms ISI
    held = misfit_intervals(prob, 1.0, False, held=True)
    assert len(held) == 2 and abs(held[1] - 20.0 / 3) < 0.5


def test_a_slow_gates_conductance_is_found_as_a_rescaling():
    """Butera's gNaP multiplies the slow NaP inactivation h: raising gNaP is, for the V and n equations,
    exactly raising h — so it is held after the screen. gK and gL are not; nor is any ML-burster parameter
    (gKCa acts through Ca/(Ca + K), not in proportion to Ca); without a slow state nothing is found."""
    from neo_pinn_pinn.slow_analysis import scaling_slow_states

    bu = get_model("butera_pbc")
    free = ["gNaP", "gK", "gL"]
    rng = np.random.default_rng(0)
    y = np.stack([rng.uniform(-70, 0, 16), rng.uniform(0.0, 0.9, 16), rng.uniform(0.2, 0.8, 16)], 1)
    slow = np.array([False, False, True])
    th = bu.theta(preset="bursting_fast")
    found = scaling_slow_states(bu, th, [bu.param_index(f) for f in free], slow, y, np.zeros(16))
    assert [free[j] for j in found] == ["gNaP"]
    assert scaling_slow_states(bu, th, [bu.param_index(f) for f in free], np.zeros(3, bool), y, np.zeros(16)) == []
    b = get_model("morris_lecar_burster")
    free_b = ["gCa", "gK", "gKCa", "epsilon"]
    yb = np.stack([rng.uniform(-70, 30, 16), rng.uniform(0.05, 0.95, 16), rng.uniform(0.1, 1.0, 16)], 1)
    assert scaling_slow_states(b, b.theta(preset="bursting_fast"), [b.param_index(f) for f in free_b], slow, yb,
                               np.zeros(16)) == []


def test_parameters_of_slow_states_are_held_after_the_screen():
    """With n declared slow, phi (n's rate) acts on it and is held at its screened value through stage 2,
    while gCa trains; with hold_slow_parameters=false phi moves too; the misfit got the long intervals."""
    m, tr, _ = _trace(t0=500.0, t1=620.0, rate=5000.0)
    prob = EstimationProblem.build(m, [tr], ["gCa", "phi"], preset="snlc", init={"gCa": 3.0, "phi": 0.05})
    opts = FAST | {"screen_candidates": 8, "screen_rounds": 1, "slow_states": ["n"]}
    held = PINN(**opts).fit(prob, seed=0, device="cpu")
    assert held.diagnostics["held_parameters"] == ["phi"]
    assert len(held.diagnostics["screen_intervals_ms"]) == 3
    screened = np.exp(np.median(np.log(held.diagnostics["screened_phi"])))
    assert held["phi"].value == pytest.approx(screened, rel=1e-5)
    assert np.ptp(held.history["params"]["gCa"][3:]) > 0  # the other parameter trains
    free = PINN(**(opts | {"hold_slow_parameters": False})).fit(prob, seed=0, device="cpu")
    assert free.diagnostics["held_parameters"] == []
    assert free["phi"].value != pytest.approx(screened, rel=1e-5)


def test_sampling_weights_put_the_points_on_the_spikes():
    """On a noisy burst pattern whose spikes fill 6 % of the samples, the fast-voltage weights put
    most of their mass on the spikes and their repolarisation; noise alone gets none, and a flat sweep
    stays uniform."""
    from neo_pinn_pinn.layout import Flat

    t = np.arange(0.0, 800.0, 0.1)
    v_clean = _burst_voltage(t)
    v = v_clean + np.random.default_rng(0).normal(0.0, 0.6, t.size)  # 1 % of the 80 mV spikes
    flat_v = np.full(3000, -65.0) + np.random.default_rng(1).normal(0.0, 0.6, 3000)
    flat = Flat(np.concatenate([t, t[:3000]]), np.concatenate([v, flat_v]), np.zeros(t.size + 3000),
                np.array([0, t.size, t.size + 3000]))
    w = sampling_weights(flat, spread_ms=2.0)
    w_burst = w[:t.size]
    near = np.abs(v_clean - (-60.0)) > 1.0  # within about ±1.5 ms of a spike's peak
    assert near.mean() < 0.07
    assert w_burst[near].sum() / w_burst.sum() > 0.8
    assert np.mean(w_burst == 0) > 0.8  # noise between the spikes gets no weight
    np.testing.assert_allclose(w_burst.mean(), 1.0)
    np.testing.assert_allclose(w[t.size:].mean(), 1.0)


def test_fast_share_tells_brief_spikes_from_broad_ones():
    """"auto" spike sampling switches on below 3 %: the brief spikes of sparse bursts (4 per second) fill
    under 3 % of the samples, Morris–Lecar's broad SNLC spikes more."""
    from neo_pinn_pinn.layout import Flat
    from neo_pinn_pinn.spike_weights import fast_share

    t = np.arange(0.0, 2000.0, 0.1)
    v = _burst_voltage(t, period_ms=1000.0) + np.random.default_rng(0).normal(0.0, 0.6, t.size)
    brief = fast_share(sampling_weights(Flat(t, v, np.zeros_like(t), np.array([0, t.size]))))
    _, tr, _ = _trace(t0=500.0, t1=700.0, rate=10000.0)
    broad = fast_share(sampling_weights(Flat(tr.t, tr.v, tr.i_ext, np.array([0, tr.t.size]))))
    assert 0.0 < brief < 0.03 < broad
    assert PINN().config["spike_sampling_below"] == 0.03
    assert fast_share(np.ones(100)) == pytest.approx(0.9, abs=0.011)


def test_periodic_pairs_are_one_period_apart_in_their_segments():
    """On a 200 ms burst pattern, pairs of times lie whole periods apart (to the lag search's grid), inside
    the segments named for them; a sweep that does not repeat gives none."""
    from neo_pinn_pinn.rhythm import periodic_pairs

    b = get_model("morris_lecar_burster")
    t = np.arange(0.0, 600.0, 0.1)
    from neo_pinn.trace import Trace

    tr = Trace(t=t, v=_burst_voltage(t), i_ext=np.zeros_like(t))
    prob = EstimationProblem.build(b, [tr], ["gKCa"], preset="bursting_fast")
    flat = flatten_traces(prob)
    seg = make_segments(prob, flat, spikes_per_segment=2, segment_ms=None)
    sa, ta, sb, tb = periodic_pairs(flat, seg, 32)
    assert sa.size == 32
    lag = tb - ta  # one period, or a whole number of them (this pattern repeats exactly)
    assert lag.min() > 150.0
    np.testing.assert_allclose(lag / 200.0, np.round(lag / 200.0), atol=0.5 / 200.0)
    for s_, t_ in ((sa, ta), (sb, tb)):
        assert np.all((seg.t_left[s_] <= t_ + 1e-9) & (t_ <= seg.t_right[s_] + 1e-9))
    ramp = Trace(t=t, v=-70.0 + 0.1 * t, i_ext=np.zeros_like(t))
    prob_r = EstimationProblem.build(b, [ramp], ["gKCa"], preset="bursting_fast")
    flat_r = flatten_traces(prob_r)
    assert periodic_pairs(flat_r, make_segments(prob_r, flat_r, 0, 100.0), 32)[0].size == 0

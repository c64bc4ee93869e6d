"""The ``pinn`` backend: exact network derivatives, spectral features, warm start, a small CPU fit, ablations."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

from neo_pinn.api import get_backend, get_model, synthetic_trace
from neo_pinn.errors import ConfigurationError
from neo_pinn.estimator import FitContext
from neo_pinn.models.base import gate_mask
from neo_pinn.problem import EstimationProblem
from neo_pinn.testing import BackendCompliance
from neo_pinn_pinn import ABLATIONS, PINN
from neo_pinn_pinn.network import EnsembleNet
from neo_pinn_pinn.prepare import dominant_frequencies, driven_hidden_states, flatten_traces, make_segments
from neo_pinn_pinn.training import train_members

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
    assert set(ABLATIONS) == {"fourier_features", "random_weight_factorization", "two_stage_training",
                              "adaptive_loss_balancing", "separate_optimizers"}
    for switch in ABLATIONS.values():
        PINN(**switch)  # every ablation is a valid configuration


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


def test_small_cpu_fit_recovers_two_conductances():
    """A short ML SNLC window, 1 mV noise: gCa and gK from 0.6× and 1.6×, hidden n reconstructed."""
    m, tr, st = _trace(t0=500.0, t1=620.0, rate=5000.0)
    truth = m.param_values("snlc")
    prob = EstimationProblem.build(m, [tr], ["gCa", "gK"], preset="snlc",
                                   init={"gCa": 0.6 * truth["gCa"], "gK": 1.6 * truth["gK"]},
                                   truth={k: truth[k] for k in ("gCa", "gK")})
    opts = {"n_members": 2, "stage1_steps": 400, "stage2_steps": 3000, "width": 32, "batch_points": 128,
            "random_starts": "jitter", "jitter": 0.2}
    res = PINN(**opts).fit(prob, seed=0, device="cpu", dtype=torch.float32)
    for name in ("gCa", "gK"):
        assert abs(res[name].value / truth[name] - 1) < 0.03, (name, res[name].value)
    n_err = np.linalg.norm(res.fits[0].states[:, 1] - st[:, 1]) / np.linalg.norm(st[:, 1])
    assert n_err < 0.05
    assert res.metrics["n_members"] == 2 and res.metrics["n_accepted"] >= 1
    assert set(res.history) >= {"loss_data", "loss_physics", "params"}
    assert res.noise["sigma"] == pytest.approx(1.0, rel=0.3)


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

    from neo_pinn.cli import main
    from neo_pinn.io.attach import read_attached
    from neo_pinn.io.neo_files import read_block

    sample = Path(__file__).resolve().parents[1] / "sample_data" / "ml_snlc.nwb"
    js, html, nwb = tmp_path / "r.json", tmp_path / "r.html", tmp_path / "fitted.nwb"
    rc = main(["fit", str(sample), "--model", "morris_lecar", "--preset", "snlc", "--backend", "pinn",
               "--free", "gCa,gK", "--init", "gCa=3,gK=10", "--bounds", "gCa=0.5:20", "--sweep", "0",
               "--window", "100:200", "--noise", "ar1", "--seed", "2", "--float32", "--device", "cpu",
               "--option", "n_members=2", "--option", "stage1_steps=20", "--option", "stage2_steps=20",
               "--option", "width=16", "--json", str(js), "--report", str(html), "--out", str(nwb), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "gCa" in out and "n_accepted" in out
    d = json.loads(js.read_text())
    assert d["backend"] == "pinn" and d["config"]["n_members"] == 2 and set(d["noise"]) == {"sigma", "rho"}
    assert d["parameters"]["gCa"]["init"] == 3.0 and 0.5 <= d["parameters"]["gCa"]["value"] <= 20
    assert "Optimisation history" in html.read_text()
    runs = read_attached(read_block(nwb))
    assert runs and runs[0]["backend"] == "pinn"
    res = json.loads(js.read_text())
    sweep = runs[0]["sweeps"][0]
    assert set(sweep["states"]) == {"V", "n"}
    np.testing.assert_allclose(sweep["states"]["n"], np.array(res["fits"][0]["states"])[:, 1], rtol=1e-6)


@pytest.mark.parametrize("option", [{"local_weights": True}, {"residual_form": "weak"}, {"residual_form": "both"},
                                    {"residual_norm": "fixed"}, {"warm_spinup": False}])
def test_optional_residual_forms_run_and_differ(option):
    m, tr, _ = _trace(t0=500.0, t1=560.0, rate=5000.0)
    prob = EstimationProblem.build(m, [tr], ["gCa"], preset="snlc", init={"gCa": 3.0})
    full = PINN(**FAST).fit(prob, seed=0, device="cpu")
    other = PINN(**(FAST | option)).fit(prob, seed=0, device="cpu")
    assert np.isfinite(other["gCa"].value) and np.all(np.isfinite(other.fits[0].states))
    assert other.history["params"]["gCa"] != full.history["params"]["gCa"]

"""Recordings from the independent reference solver, and the zero-order hold that makes fits agree with them.

The accuracy benchmarks fit recordings solved by scipy (``neo_pinn.testing.reference_recordings``), never by the
simulator the fits use. These tests prove the two agree when the stimulus is applied as an amplifier applies
it (each sample held until the next) — and that the old convention (linear interpolation between samples,
the current ramping one sample early) does not.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neo_pinn.api import get_model, load_recording
from neo_pinn.features import spike_times
from neo_pinn.testing.reference_recordings import reference_sweeps, stimulus_edges, write_reference_recording
from neo_pinn.io.stimulus_specs import parse_stimulus
from neo_pinn.io.synthetic_nwb import read_icephys_metadata
from neo_pinn.simulation import simulate
from neo_pinn.simulation import simulate_traces

STEP = "step:amp=10pA,start=10ms,stop=50ms"
FAST = {"rtol": 1e-9, "atol": 1e-11}  # tight enough for 1e-3 mV here, a few seconds on one core


@pytest.fixture(scope="module")
def hh_step():
    """Hodgkin–Huxley, 60 ms at 20 kHz, a 10 pA step from 10 to 50 ms, noise-free, solved by scipy (Radau)."""
    m = get_model("hodgkin_huxley")
    traces, states = reference_sweeps(m, [STEP], duration=60.0, rate_hz=20000.0, preset="rest", noise=None,
                                      settle_ms=0.0, solver=FAST)
    return m, traces[0], states[0]


def test_stimulus_edges_are_the_protocol_edges():
    assert stimulus_edges(parse_stimulus(STEP), 60.0) == [10.0, 50.0]
    assert stimulus_edges(parse_stimulus(STEP), 30.0) == [10.0]  # an edge after the end is not one
    pulses = parse_stimulus("pulses:amp=5pA,start=2ms,width=1ms,period=4ms,n=2")
    assert stimulus_edges(pulses, 100.0) == [2.0, 3.0, 6.0, 7.0]


def test_reference_sweep_holds_the_command_over_each_sample(hh_step):
    _, tr, states = hh_step
    k = int(round(10.0 / tr.dt))  # the sample at which the step starts
    assert tr.i_ext[k - 1] == 0.0 and tr.i_ext[k] == 10.0 and tr.i_ext[int(round(50.0 / tr.dt))] == 0.0
    assert np.array_equal(tr.v, states[:, 0])  # noise=None: the voltage is the solution itself
    assert spike_times(tr.v, tr.t).size >= 2  # the step makes the cell fire


def test_simulator_with_zero_order_hold_reproduces_the_reference_solver(hh_step):
    m, tr, states = hh_step
    theta = m.theta({}, preset="rest")
    held = simulate_traces(m, theta, [tr], states[:1])[0]
    ref_spikes, sim_spikes = spike_times(states[:, 0], tr.t), spike_times(held[:, 0], tr.t)
    assert ref_spikes.size == sim_spikes.size >= 2
    assert np.max(np.abs(ref_spikes - sim_spikes)) < 2e-3  # ms: RK4 at 0.05 ms, the same step
    assert np.sqrt(np.mean((held[:, 0] - states[:, 0]) ** 2)) < 0.05  # mV

    # the old convention: the current ramps over the sample before each edge (linear interpolation)
    t_half = np.arange(2 * (tr.t.size - 1) + 1) * tr.dt / 2
    ramped = np.interp(t_half, tr.t, tr.i_ext)
    sim = simulate(m, theta, duration=tr.t[-1], dt=tr.dt / 2, i_ext=ramped, y0=states[0], dtype=torch.float64,
                   record_every=2, compile=False)
    old = sim.y[0, :, 0].detach().numpy().astype(float)
    old_spikes = spike_times(old, tr.t)
    assert np.max(np.abs(old_spikes - ref_spikes)) > max(2e-3, 5 * np.max(np.abs(ref_spikes - sim_spikes)))


def test_reference_recording_is_an_nwb_file_with_its_truth(tmp_path):
    path, traces = write_reference_recording(tmp_path / "ref.nwb", "morris_lecar", ["step:amp=60pA,start=5ms",
                                                                                     "const:amp=0pA"],
                                             duration=30.0, rate_hz=10000.0, preset="snlc", values={"gK": 7.5},
                                             noise="white:sigma=1mV", seed=3, settle_ms=50.0, solver=FAST)
    rec = load_recording(path)
    back = rec.traces()
    assert len(back) == 2
    for a, b in zip(traces, back):
        assert np.allclose(a.v, b.v, atol=1e-6) and np.allclose(a.i_ext, b.i_ext, atol=1e-9)
    assert np.std(traces[1].v - np.mean(traces[1].v)) == pytest.approx(1.0, rel=0.15)  # the noise, at rest
    meta = read_icephys_metadata(path)  # where `neo-pinn fit` finds the ground truth, as in simulate's files
    truth = meta["parameters"]
    assert meta["model"] == "morris_lecar" and "scipy" in meta["generator"]
    assert len(meta["stimuli"]) == 2 and meta["stimuli"][0].startswith("step")
    assert truth["gK"] == 7.5 and truth["gCa"] == get_model("morris_lecar").param_values("snlc")["gCa"]
    with pytest.raises(Exception, match="exists"):
        write_reference_recording(path, "morris_lecar", ["const:amp=0pA"], duration=5.0, rate_hz=10000.0,
                                  preset="snlc", settle_ms=0.0, solver=FAST)


def test_lsq_recovers_hodgkin_huxley_from_twice_the_conductances():
    """A far start on a recording the fit's simulator did not make: every conductance within 2 %, within 3 std."""
    from neo_pinn import EstimationProblem
    from neo_pinn.api import get_backend

    m = get_model("hodgkin_huxley")
    traces, _ = reference_sweeps(m, [STEP], duration=60.0, rate_hz=20000.0, preset="rest",
                                 noise="white:sigma=1mV", seed=2, settle_ms=0.0, solver=FAST)
    truth = {"gNa": 120.0, "gK": 36.0, "gL": 0.3}
    problem = EstimationProblem.build(m, traces[0], list(truth), preset="rest", truth=truth,
                                      init={k: 2.0 * v for k, v in truth.items()})
    res = get_backend("lsq")(n_starts=1).fit(problem, seed=0, device="cpu")
    for k, v in truth.items():
        assert abs(res[k].value / v - 1) < 0.02, (k, res[k].value)
        assert abs(res[k].value - v) < 3 * res[k].std, (k, res[k].value, res[k].std)
    assert res.metrics["rmse_mV"] < 1.1  # at the noise level

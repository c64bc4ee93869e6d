"""Fitting real cells: search ranges scaled to the measured cell, held-out sweeps, the result's verdict fields."""

from __future__ import annotations

import math

import numpy as np
import pytest

from neo_pinn import EstimationProblem, EstimationResult
from neo_pinn.api import get_model
from neo_pinn.cell.scaling import PASSIVE_SPAN, REVERSAL_SPAN_MV, cell_scaled_ranges
from neo_pinn.cellfit import CellFitOptions, held_out_sweeps
from neo_pinn.errors import ConfigurationError
from neo_pinn.trace import Trace


def test_ranges_scale_every_conductance_with_the_measured_area():
    ml = get_model("morris_lecar")
    r = cell_scaled_ranges(ml, ["C", "gL", "gCa", "gK", "phi", "EL"], capacitance_pF=200.0,
                           input_resistance_MOhm=100.0, rest_mV=-70.0, preset="snlc")
    assert r.area_scale == pytest.approx(10.0)  # 200 pF / the preset's 20 pF
    assert r.init["C"] == pytest.approx(200.0)
    assert r.bounds["C"] == pytest.approx((200.0 / PASSIVE_SPAN, 200.0 * PASSIVE_SPAN))
    assert r.init["gL"] == pytest.approx(10.0)  # 1 / 100 MΩ = 10 nS
    assert r.init["EL"] == -70.0 and r.bounds["EL"] == (-70.0 - REVERSAL_SPAN_MV, -70.0 + REVERSAL_SPAN_MV)
    spec = ml.param_spec("gCa")
    assert r.init["gCa"] == pytest.approx(40.0)  # the SNLC set's 4 nS × 10
    assert r.bounds["gCa"] == pytest.approx((spec.bounds[0] * 10, spec.bounds[1] * 10))
    assert "phi" not in r.init and "phi" not in r.bounds  # a rate does not scale with area


def test_fixed_conductances_are_scaled_and_user_values_are_not():
    ml = get_model("morris_lecar")
    r = cell_scaled_ranges(ml, ["gCa"], capacitance_pF=60.0, input_resistance_MOhm=250.0, rest_mV=-65.0,
                           preset="snlc", values={"gK": 5.0})
    assert r.fixed["C"] == pytest.approx(60.0) and r.fixed["gL"] == pytest.approx(4.0)
    assert "gK" not in r.fixed  # the user's value stands
    assert r.init["gCa"] == pytest.approx(12.0)


def test_a_model_without_passive_parameters_cannot_be_scaled():
    with pytest.raises(ConfigurationError, match="capacitance"):
        cell_scaled_ranges(get_model("fitzhugh_nagumo"), ["theta0"], capacitance_pF=50.0,
                           input_resistance_MOhm=100.0, rest_mV=-70.0)
    with pytest.raises(ConfigurationError, match="positive"):
        cell_scaled_ranges(get_model("morris_lecar"), ["gCa"], capacitance_pF=-5.0,
                           input_resistance_MOhm=100.0, rest_mV=-70.0)


def test_held_out_sweeps():
    assert held_out_sweeps([0, 1, 2, 3, 4, 5], "alternate") == [1, 3, 5]
    assert held_out_sweeps([0, 2, 4, 6], (2, 6)) == [2, 6]
    assert held_out_sweeps([0, 1, 2, 3], None) == []
    assert len(held_out_sweeps(list(range(10)), 0.3)) == 3
    with pytest.raises(ConfigurationError, match="not among"):
        held_out_sweeps([0, 1, 2], (7,))
    with pytest.raises(ConfigurationError, match="at least one"):
        held_out_sweeps([3], (3,))


def test_cell_fit_options_are_checked():
    with pytest.raises(ConfigurationError, match="both kept and excluded"):
        CellFitOptions(keep_sweeps=(1,), exclude_sweeps=(1,))
    with pytest.raises(ConfigurationError, match="fraction"):
        CellFitOptions(validate_on=1.5)
    with pytest.raises(ConfigurationError, match="alternate"):
        CellFitOptions(validate_on="odd")
    with pytest.raises(ConfigurationError, match="staged"):
        CellFitOptions(staged="sometimes")


def _trace(sweep: int, n: int = 50) -> Trace:
    t = np.arange(n) * 0.1
    return Trace(t=t, v=-65.0 + np.sin(t), i_ext=np.zeros(n), sweep=sweep)


def test_a_problem_holds_out_sweeps_it_does_not_fit_and_keeps_them_in_json():
    ml = get_model("morris_lecar")
    p = EstimationProblem.build(ml, [_trace(0), _trace(2)], ["gCa"], holdout=[_trace(1)])
    assert [tr.sweep for tr in p.holdout] == [1]
    back = EstimationProblem.from_json(p.to_json())
    assert [tr.sweep for tr in back.holdout] == [1] and np.allclose(back.holdout[0].v, p.holdout[0].v)
    with pytest.raises(ConfigurationError, match="both fitted and held out"):
        EstimationProblem.build(ml, [_trace(0)], ["gCa"], holdout=[_trace(0)])


def test_the_result_carries_its_status_through_json():
    ml = get_model("morris_lecar")
    p = EstimationProblem.build(ml, [_trace(0)], ["gCa"])
    states = np.zeros((50, 2))
    r = EstimationResult.from_fit(p, "test", {"gCa": 4.0}, [states])
    assert r.status == "unchecked" and not r.failed
    from dataclasses import replace

    bad = replace(r, status="failed", verdict={"lines": ["bounds: gCa sits on its upper bound"]},
                  cell={"qc": {"sweeps": [{"sweep": 3, "kept": False, "reasons": ["clipped"],
                                           "details": ["sweep 3 is clipped at 200 mV"]}]}})
    back = EstimationResult.from_json(bad.to_json())
    assert back.failed and back.verdict == bad.verdict and back.cell == bad.cell
    text = back.summary()
    assert "FIT FAILED" in text and "clipped at 200 mV" in text and "upper bound" in text
    with pytest.raises(ConfigurationError, match="status"):
        replace(r, status="fine")
    assert math.isfinite(back.metrics["rmse_mV"])


def _spiky(plateau: float, noise: float, seed: int) -> Trace:
    """10 kHz, 1 s: a noisy plateau with 20 narrow spikes to +40 mV riding on it (troughs at the plateau)."""
    rng = np.random.default_rng(seed)
    t = np.arange(10000) * 0.1
    v = plateau + noise * rng.standard_normal(t.size)
    for c in np.linspace(50.0, 950.0, 20):
        v += (40.0 - plateau) * np.exp(-0.5 * ((t - c) / 0.3) ** 2)
    return Trace(t=t, v=v, i_ext=np.zeros(t.size))


def test_a_recording_s_spike_levels_keep_every_spike_and_count_no_noise():
    from neo_pinn.cell import recording_spike_levels
    from neo_pinn.features import spike_count

    ml = get_model("morris_lecar")
    # spikes from a plateau at -5 mV: the model's re-arm level (-10 mV) merges them all into one
    deep = _spiky(-5.0, 0.3, 1)
    th, rearm = recording_spike_levels([deep], ml.spike_threshold, ml.spike_rearm)
    assert th == ml.spike_threshold and -5.0 < rearm < 0.0
    assert spike_count(deep.v, deep.t, ml.spike_threshold, ml.spike_rearm) == 1
    assert spike_count(deep.v, deep.t, th, rearm) == 20
    # a plateau at +5 mV (an offset cell): spikes ride above 0 mV and merge, so the threshold rises above it
    offset = _spiky(5.0, 1.0, 2)
    assert spike_count(offset.v, offset.t, 0.0, -4.0) <= 1  # never re-armed: one "spike"
    th, rearm = recording_spike_levels([offset], ml.spike_threshold, ml.spike_rearm)
    assert th >= 5.0 and spike_count(offset.v, offset.t, th, rearm) == 20 == spike_count(offset.v, offset.t, th, th)

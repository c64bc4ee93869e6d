"""Units, traces, problems, the Estimator template: the contracts every backend relies on."""

from __future__ import annotations

import numpy as np
import pytest
import quantities as pq

import neo_pinn
from neo_pinn import EstimationProblem, Estimator, Trace, build_result
from neo_pinn.errors import (ConfigurationError, EmptySignalError, NonFiniteDataError, UnitsError,
                             UnknownNameError)
from neo_pinn.units import dimension_of, parse_quantity, to_canonical
from neo_pinn.trace import require_finite


def test_units_convert_to_canonical():
    assert parse_quantity("48pA", "current") == 48.0
    assert parse_quantity("0.1 nA", "current") == pytest.approx(100.0)
    assert parse_quantity("0.9s", "time") == pytest.approx(900.0)
    assert to_canonical(pq.Quantity([1.0, 2.0], "V"), kind="voltage") == pytest.approx([1000.0, 2000.0])
    assert to_canonical(3.0, "uS") == pytest.approx(3000.0)  # conductance → nS
    assert dimension_of("nA") == "current" and dimension_of("mV") == "voltage" and dimension_of("pF") == "capacitance"
    with pytest.raises(UnitsError, match="Expected a voltage"):
        to_canonical(pq.Quantity(1.0, "pA"), kind="voltage")
    with pytest.raises(UnitsError):
        parse_quantity("forty pA")


def test_trace_validates_and_windows():
    t = np.arange(0, 10, 0.1)
    tr = Trace(t=t, v=np.sin(t), i_ext=np.zeros_like(t))
    assert tr.dt == pytest.approx(0.1)
    w = tr.window(2.0, 5.0)
    assert w.t[0] >= 2.0 and w.t[-1] <= 5.0 and w.v.size == w.t.size
    with pytest.raises(EmptySignalError):
        tr.window(20, 30)
    # a gap in the voltage is allowed in a trace; a fit refuses it only inside the window it reads
    gappy = Trace(t=t, v=np.where(t > 5, np.nan, 0.0), i_ext=np.zeros_like(t))
    require_finite(gappy.window(0.0, 5.0))
    with pytest.raises(NonFiniteDataError, match="voltage of sweep 0"):
        require_finite(gappy)
    with pytest.raises(NonFiniteDataError):
        Trace(t=np.where(t > 5, np.nan, t), v=np.zeros_like(t), i_ext=np.zeros_like(t))
    with pytest.raises(ConfigurationError):
        Trace(t=t, v=t[:-1], i_ext=np.zeros_like(t))
    d = tr.decimate(4)
    assert d.t.size == t.size // 4


def _trace():
    tr, _ = neo_pinn.synthetic_trace("morris_lecar", preset="snlc", duration=50, rate_hz=5000)
    return tr


def test_problem_build_and_json_round_trip():
    m = neo_pinn.get_model("morris_lecar")
    prob = EstimationProblem.build(m, _trace(), ["gCa", "phi"], preset="snlc", values={"gL": 2.5},
                                   init={"gCa": 3.0}, bounds={"phi": (0.01, 0.5)}, truth={"gCa": 4.0})
    assert prob.fixed["gL"] == 2.5 and "gCa" not in prob.fixed
    theta = prob.theta_full({"gCa": 5.0, "phi": 0.1})
    assert theta[m.param_index("gCa")] == 5.0 and theta[m.param_index("gL")] == 2.5
    back = EstimationProblem.from_json(prob.to_json())
    assert back.free == prob.free and back.fixed == prob.fixed and back.truth == prob.truth
    np.testing.assert_array_equal(back.traces[0].v, prob.traces[0].v)
    starts = prob.sample_starts(500, np.random.default_rng(0))
    assert starts.shape == (500, 2)
    assert np.all((starts[:, 1] >= 0.01) & (starts[:, 1] <= 0.5))
    # log-uniform: the median of the draws sits near the geometric mean of the bounds
    assert np.median(starts[:, 1]) == pytest.approx(np.sqrt(0.01 * 0.5), rel=0.2)


def test_problem_rejects_inconsistencies():
    m = neo_pinn.get_model("morris_lecar")
    with pytest.raises(UnknownNameError, match="gCa"):
        EstimationProblem.build(m, _trace(), ["gCaa"])
    with pytest.raises(ConfigurationError, match="outside"):
        EstimationProblem.build(m, _trace(), ["gCa"], init={"gCa": 1e6})
    with pytest.raises(ConfigurationError, match="not free"):
        EstimationProblem.build(m, _trace(), ["gCa"], init={"gK": 3.0})


class _Constant(Estimator):
    """A backend of the first plugin contract (a ``default_config`` dict, ``build_result``): still works."""

    name = "constant"
    default_config = {"value": 1.0}

    def _fit(self, problem, ctx):
        states = [np.zeros((tr.t.size, problem.model.n_states)) for tr in problem.traces]
        return build_result(problem, self.name, {n: self.config["value"] for n in problem.free_names}, states,
                            metrics={"rng_draw": float(ctx.rng.random())})


def test_estimator_template_validates_seeds_and_records_provenance():
    m = neo_pinn.get_model("morris_lecar")
    prob = EstimationProblem.build(m, _trace(), ["gCa"], truth={"gCa": 4.0})
    with pytest.raises(ConfigurationError, match="valid: value"):
        _Constant(nonsense=3)
    with pytest.warns(DeprecationWarning, match="build_result is deprecated"):
        r1 = _Constant(value=3.0).fit(prob, seed=5, device="cpu")
        r2 = _Constant(value=3.0).fit(prob, seed=5, device="cpu")
    assert r1.metrics["rng_draw"] == r2.metrics["rng_draw"]  # seeded
    assert r1["gCa"].value == 3.0 and r1["gCa"].relative_error == pytest.approx(0.25)
    assert r1.provenance["seed"] == 5 and r1.provenance["device"] == "cpu"
    assert r1.provenance["versions"]["torch"] and r1.provenance["wall_time_s"] >= 0
    assert r1.config["value"] == 3.0
    with pytest.raises(ConfigurationError, match="cuda"):
        _Constant().fit(prob, device="cuda") if not __import__("torch").cuda.is_available() else (_ for _ in ()).throw(
            ConfigurationError("cuda present"))

"""Nothing silently wrong (issue 16): bad input is a typed error before any work, and a fit that learned nothing
ends with the failed verdict.

Every recording here is made in the test (seeded); the fits that run use short traces and few starts.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from neo_pinn.api import estimate, get_model, load_recording, simulate, synthetic_trace
from neo_pinn.cellfit import CellFitOptions, plan_cell_fit
from neo_pinn.estimator import judge
from neo_pinn.errors import (
    ConfigurationError,
    EmptySignalError,
    NeoPinnError,
    NonFiniteDataError,
    ParameterDomainError,
    StimulusError,
    UnitsError,
    UnphysiologicalVoltageError,
)
from neo_pinn.models.base import POSITIVE, Domain, ParameterSpec
from neo_pinn.problem import MIN_FIT_SAMPLES, EstimationProblem
from neo_pinn.reference import reference_solution
from neo_pinn.result import EstimationResult
from neo_pinn.trace import Trace, check_window
from neo_pinn.units import check_physiological_voltage
from neo_pinn.verdict import VerdictConfig

ML = get_model("morris_lecar")
DT = 0.1                                  # ms
FAST = {"n_starts": 2, "max_iter": 30}    # lsq options that keep a fit to a second or two
CONFIG = VerdictConfig(max_dt_ms=0.1)


def _trace(v, *, i=None, sweep=0, dt=DT) -> Trace:
    v = np.asarray(v, dtype=float)
    t = np.arange(v.size) * dt
    return Trace(t=t, v=v, i_ext=np.zeros_like(t) if i is None else i, stimulus_source="user", sweep=sweep)


def _noisy(level: float = -65.0, n: int = 1000, seed: int = 0, sigma: float = 0.5) -> np.ndarray:
    return level + sigma * np.random.default_rng(seed).standard_normal(n)


def _block(v_per_sweep, units="mV", rate_hz=10000.0):
    """An in-memory Neo block, one segment and one voltage signal per sweep."""
    import neo
    import quantities as pq

    block = neo.Block()
    for k, v in enumerate(v_per_sweep):
        seg = neo.Segment(index=k)
        seg.analogsignals.append(neo.AnalogSignal(np.asarray(v, dtype=float)[:, None], units=units,
                                                  sampling_rate=rate_hz * pq.Hz, name="Vm"))
        block.segments.append(seg)
    return block


# ---------------------------------------------------------------------- 1. physiological range
def test_volts_labelled_mV_are_refused_naming_the_mistake_and_the_override():
    tr = _trace(np.linspace(-0.065, 0.02, 1000))        # volts, written as mV
    with pytest.raises(UnphysiologicalVoltageError, match="volts") as err:
        estimate(tr, "morris_lecar", free=["gCa", "gK"], device="cpu")
    text = str(err.value)
    assert "allow_unphysiological=True" in text and "--allow-unphysiological" in text
    assert isinstance(err.value, UnitsError) and isinstance(err.value, NeoPinnError)


def test_microvolts_labelled_mV_are_refused():
    with pytest.raises(UnphysiologicalVoltageError, match="µV"):
        estimate(_trace(_noisy(-65000.0, sigma=50.0)), "morris_lecar", free=["gCa", "gK"], device="cpu")


@pytest.mark.parametrize("v, ok", [(_noisy(-65.0), True), (np.r_[_noisy(-65.0), 40.0], True),
                                   (np.r_[_noisy(-65.0), 400.0], False), (np.r_[_noisy(-65.0), -250.0], False),
                                   (np.full(100, 0.5), False), (np.r_[np.full(100, 0.5), np.nan], False)])
def test_the_range_is_defined_once(v, ok):
    if ok:
        check_physiological_voltage(v)
    else:
        with pytest.raises(UnphysiologicalVoltageError):
            check_physiological_voltage(v, what="sweep 0")
        check_physiological_voltage(v, allow=True)  # the override


def test_the_override_reaches_the_plan_and_an_artefact_outside_the_window_is_no_matter():
    v = _noisy(-65.0, n=3000)
    v[2500] = 900.0                                      # an artefact at 250 ms
    traces = [_trace(v)]
    with pytest.raises(UnphysiologicalVoltageError, match="900"):
        plan_cell_fit(ML, traces, ["gCa", "gK"])
    forced = CellFitOptions(allow_unphysiological=True, qc=False)   # (quality control would call it clipped)
    plan = plan_cell_fit(ML, traces, ["gCa", "gK"], options=forced)
    assert plan.fit_traces[0] is traces[0]
    plan = plan_cell_fit(ML, traces, ["gCa", "gK"], window=(0.0, 200.0), options=CellFitOptions(qc=False))
    assert plan.window == (0.0, 200.0)


def test_a_file_in_volts_loads_without_a_warning_and_its_fit_is_refused():
    block = _block([np.linspace(-0.07, -0.06, 2000)])    # a Vm channel labelled mV, holding volts
    with warnings.catch_warnings():
        warnings.simplefilter("error")                   # no warning to scroll by: the fit refuses it instead
        rec = load_recording(block, stimulus="zero")
    assert any("allow_unphysiological" in w for w in rec.warnings)
    with pytest.raises(UnphysiologicalVoltageError, match="sweep 0"):
        estimate(rec, "morris_lecar", free=["gCa", "gK"], device="cpu")


def test_the_shared_recordings_are_physiological(recordings_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rec = load_recording(recordings_dir / "17o05028_ic_steps.abf")
    for tr in rec.traces():
        check_physiological_voltage(tr.v, what=f"sweep {tr.sweep}")


# ---------------------------------------------------------------------- 2. parameter domains
def test_every_parameter_has_a_domain_by_role():
    dom = {p.name: p.domain.describe() for p in ML.parameters}
    assert dom["C"] == "> 0" and dom["phi"] == "> 0" and dom["V2"] == "> 0"
    assert dom["gK"] == dom["gCa"] == dom["gL"] == "≥ 0"
    assert dom["EL"] == dom["V1"] == "any finite value"
    assert get_model("butera_pbc").param_spec("sigma_m").domain.describe() == "< 0"
    # a third-party parameter declaring nothing gets one from its unit / log scale
    assert ParameterSpec("tau", "ms", 5.0, (1.0, 50.0), False).domain == POSITIVE
    assert ParameterSpec("k", "mV", 5.0, (1.0, 50.0), True).domain == POSITIVE
    assert ParameterSpec("x", "pA", 5.0, (1.0, 50.0), False).domain.contains(-1e6)
    assert not Domain(0.0, math.inf, lo_open=True).contains(0.0) and Domain(0.0).contains(0.0)
    with pytest.raises(ConfigurationError, match="outside its domain"):
        ParameterSpec("C", "pF", 10.0, (-5.0, 50.0), False)


@pytest.mark.parametrize("kw, match", [
    ({"values": {"C": -20.0}}, "C = -20 pF lies outside its domain.*> 0"),
    ({"values": {"gL": -1.0}}, "gL = -1 nS.*≥ 0"),
    ({"values": {"EL": float("nan")}}, "EL = nan mV is not finite"),
    ({"values": {"V1": float("inf")}}, "not finite"),
    ({"init": {"gK": float("nan")}}, "initial guess gK"),
    ({"init": {"gK": -3.0}}, "initial guess gK = -3"),
    ({"bounds": {"C": (0.0, 100.0)}}, "lower bound of C = 0 pF"),
    ({"bounds": {"phi": (-1.0, 1.0)}}, "lower bound of phi"),
])
def test_fixed_values_guesses_and_bounds_outside_the_domain_are_refused(kw, match):
    tr = _trace(_noisy())
    with pytest.raises(ParameterDomainError, match=match):
        EstimationProblem.build(ML, tr, ["gK", "C", "phi"] if "bounds" in kw else ["gK"], **kw)
    with pytest.raises(ParameterDomainError, match=match):  # estimate says so before any work
        estimate(tr, ML, "lsq", ["gK", "C", "phi"] if "bounds" in kw else ["gK"], device="cpu", **kw)


def test_simulation_refuses_what_a_fit_refuses_with_the_same_check():
    with pytest.raises(ParameterDomainError, match="C = -20 pF lies outside its domain") as fit_err:
        EstimationProblem.build(ML, _trace(_noisy()), ["gK"], values={"C": -20.0})
    with pytest.raises(ParameterDomainError, match="C = -20 pF lies outside its domain") as sim_err:
        simulate("morris_lecar", {"C": -20.0}, duration=5.0, dt=0.05)
    with pytest.raises(ParameterDomainError, match="C = -20 pF lies outside its domain"):
        synthetic_trace("morris_lecar", values={"C": -20.0}, duration=5.0)
    assert str(fit_err.value).split(" C = ")[1] == str(sim_err.value).split(" C = ")[1]
    batch = np.tile(ML.theta(), (3, 1))
    batch[2, ML.param_index("phi")] = 0.0
    with pytest.raises(ParameterDomainError, match="phi = 0 1/ms"):
        simulate("morris_lecar", batch, duration=5.0, dt=0.05)
    assert simulate("morris_lecar", ML.theta(), duration=1.0, dt=0.05).y.shape[0] == 1  # a valid vector runs


# ---------------------------------------------------------------------- 3. errors instead of silent choices
def test_a_value_for_a_free_parameter_says_to_use_init():
    with pytest.raises(ConfigurationError, match="both given a value.*init") as err:
        estimate(_trace(_noisy()), "morris_lecar", "lsq", ["gCa", "gK"], values={"gK": 5.0}, device="cpu")
    assert "remove it from free" in str(err.value)
    with pytest.raises(ConfigurationError, match="both given a value"):
        EstimationProblem.build(ML, _trace(_noisy()), ["gK"], values={"gK": 5.0})


def test_a_step_without_edges_or_outside_the_sweep_is_refused():
    block = _block([_noisy(n=5000)])                     # 0–499.9 ms
    with pytest.raises(StimulusError, match="neither start nor stop.*const:amp=60pA"):
        load_recording(block, stimulus="step:amp=60pA")
    with pytest.raises(StimulusError, match=r"outside sweep 0, which spans 0–499\.9 ms"):
        load_recording(block, stimulus="step:amp=60pA,start=1000ms,stop=2000ms")
    with pytest.raises(StimulusError, match="outside"):
        load_recording(block, stimulus="pulses:amp=60pA,start=600ms,width=1ms,period=10ms")
    with pytest.raises(StimulusError, match="outside the simulated sweep"):
        synthetic_trace("morris_lecar", stimulus="step:amp=60pA,start=0.5s,stop=0.9s", duration=100.0)
    rec = load_recording(block, stimulus="step:amp=60pA,start=400ms")   # open-ended, inside: fine
    assert rec.traces()[0].i_ext[-1] == pytest.approx(60.0)


def test_a_gap_outside_the_window_is_no_matter_inside_it_the_error_names_the_samples():
    v = _noisy(n=3000)
    v[2500:2510] = np.nan                                # 250.0–250.9 ms
    tr = _trace(v)                                       # a Trace may hold a gap
    problem = EstimationProblem.build(ML, tr, ["gK"], window=(0.0, 200.0))
    assert problem.traces[0].t[-1] <= 200.0
    with pytest.raises(NonFiniteDataError, match=r"voltage of sweep 0 holds NaN/inf at 10 of .*\(t = 250–250\.9 ms"):
        EstimationProblem.build(ML, tr, ["gK"], window=(0.0, 300.0))
    with pytest.raises(NonFiniteDataError, match="window"):
        plan_cell_fit(ML, [tr], ["gK"])                  # no window: the whole sweep is fitted
    plan = plan_cell_fit(ML, [tr], ["gK"], window=(0.0, 200.0))
    assert plan.fit_traces[0] is tr                      # the fit cuts the whole sweep to the window itself


@pytest.mark.filterwarnings("ignore:lsq:RuntimeWarning")  # few iterations: the fit need not converge here
def test_a_gap_outside_the_window_does_not_block_the_fit():
    v = _noisy(n=1500)
    v[1200:] = np.nan
    result = estimate(_trace(v), "morris_lecar", "lsq", ["gL"], window=(0.0, 100.0), device="cpu",
                      backend_options=FAST)
    assert result.fits[0].t[-1] <= 100.0 and math.isfinite(result.parameters["gL"].value)


@pytest.mark.parametrize("window, match", [(300, "not a .start, stop. pair"), ((300, 100), "before the stop"),
                                           ((float("nan"), 5), "NaN"), (("0", 5), "not a number"),
                                           ((1, 2, 3), "pair")])
def test_malformed_windows_are_refused_before_any_work(window, match):
    with pytest.raises(ConfigurationError, match=match):
        check_window(window)
    with pytest.raises(ConfigurationError, match=match):
        estimate("no-such-file.abf", "morris_lecar", free=["gK"], window=window)


@pytest.mark.parametrize("bounds, match", [({"gK": (0.1, float("inf"))}, "finite"), ({"gK": (5.0, 5.0)}, "low < high"),
                                           ({"gK": (9.0, 2.0)}, "low < high"), ({"gK": 3.0}, "pair")])
def test_bad_bounds_are_refused_before_any_work(bounds, match):
    with pytest.raises(ConfigurationError, match=match):
        estimate("no-such-file.abf", "morris_lecar", free=["gK"], bounds=bounds)


@pytest.mark.parametrize("sweeps, match", [(1.5, "whole numbers"), (True, "whole numbers"), ([0, 0], "twice"),
                                           (7, "No sweep 7")])
def test_bad_sweeps_are_refused(sweeps, match):
    block = _block([_noisy(n=500, seed=k) for k in range(2)])
    rec = load_recording(block, stimulus="zero")
    with pytest.raises(ConfigurationError, match=match):
        estimate(rec, "morris_lecar", free=["gK"], sweeps=sweeps, device="cpu")
    traces = [_trace(_noisy(n=500, seed=k), sweep=k) for k in range(2)]
    with pytest.raises(ConfigurationError, match=match):     # traces given directly: not ignored
        estimate(traces, "morris_lecar", free=["gK"], sweeps=sweeps, device="cpu")


# ---------------------------------------------------------------------- 4. quality flags
def test_a_recording_too_short_to_fit_is_refused():
    tr3 = Trace(t=np.array([0.0, 0.1, 0.2]), v=np.array([-65.0, -64.0, -65.0]), i_ext=np.zeros(3))
    with pytest.raises(EmptySignalError, match=f"only 3 samples .*0–300 ms asked for.*at least {MIN_FIT_SAMPLES}"):
        estimate(tr3, "morris_lecar", "lsq", ["gCa", "gK"], window=(0.0, 300.0), device="cpu")


@pytest.fixture(scope="module")
def rest():
    """The Morris–Lecar (SNLC) resting state without current."""
    _, y = reference_solution(ML, ML.theta(preset="snlc"), duration=1000.0, dt_out=1.0, i_ext=0.0)
    return y[-1]


def test_a_flat_recording_fails_the_verdict_even_when_the_model_fits_it_exactly(rest):
    n = 2000
    tr = _trace(np.full(n, rest[0]))
    problem = EstimationProblem.build(ML, tr, ["gCa", "gK"], preset="snlc")
    states = [np.tile(rest, (n, 1))]
    result = judge(problem, EstimationResult.from_fit(problem, "test", {"gCa": 4.0, "gK": 8.0}, states),
                   config=CONFIG)
    assert result.status == "failed"
    check = next(c for c in result.verdict["checks"] if c["name"] == "response")
    assert not check["passed"] and "flat" in check["message"] and "gCa, gK" in check["message"]
    assert "FIT FAILED" in result.summary()


@pytest.mark.filterwarnings("ignore:lsq:RuntimeWarning")
def test_a_flat_trace_fitted_by_lsq_ends_failed(rest):
    tr = _trace(np.full(500, rest[0]))
    result = estimate(tr, "morris_lecar", "lsq", ["gCa", "gK"], device="cpu", backend_options=FAST)
    assert result.status == "failed"
    assert any(line.startswith("FAIL response") for line in result.verdict["lines"])


def test_an_estimate_on_its_bound_fails_and_its_std_is_withheld(rest):
    t = np.arange(3001) * DT
    i = np.where((t >= 50.0) & (t < 250.0), 50.0, 0.0)
    _, y = reference_solution(ML, ML.theta(preset="snlc"), duration=t[-1], t_eval=t, y0=rest,
                              i_ext=lambda tt: 50.0 if 50.0 <= tt < 250.0 else 0.0, max_step=0.5, rtol=1e-7,
                              atol=1e-9)
    tr = Trace(t=t, v=y[:, 0] + 0.3 * np.random.default_rng(3).standard_normal(t.size), i_ext=i)
    gk = ML.param_values("snlc")["gK"]
    problem = EstimationProblem.build(ML, tr, ["gCa", "gK"], preset="snlc", bounds={"gK": (0.05, gk)})
    raw = EstimationResult.from_fit(problem, "test", {"gCa": 4.0, "gK": gk * (1 + 4e-16)}, [y],
                                    std={"gCa": 0.2, "gK": 1.09})
    result = judge(problem, raw, config=CONFIG)
    bounds = next(c for c in result.verdict["checks"] if c["name"] == "bounds")
    assert result.status == "failed" and not bounds["passed"]
    assert "gK = 8 nS sits on its upper bound" in bounds["message"] and "1.09 is withheld" in bounds["message"]
    assert result.parameters["gK"].std is None and result.parameters["gCa"].std == pytest.approx(0.2)
    assert result.verdict["withheld_std"] == {"gK": 1.09}
    assert "1.09" not in next(line for line in result.summary().splitlines() if line.strip().startswith("gK"))
    # the other checks pass: the bound alone fails the fit
    assert [c["name"] for c in result.verdict["checks"] if not c["passed"]] == ["bounds"]

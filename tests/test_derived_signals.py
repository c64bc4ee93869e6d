"""Derived signals (forecasts, correction currents): the contract, JSON, Neo (attach / read back, NIX), NWB, the
report, the forecast compared with the recording (compare_forecast, automatically in estimate) and `fit --forecast`.

Everything is built by hand on analytic waveforms (no simulation), so the file runs in seconds.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

import neo
import numpy as np
import pytest
import quantities as pq

import neo_pinn
from neo_pinn.cli import EXIT_BAD_INPUT, main
from neo_pinn.derived import DERIVED_ROLES, DerivedSignal, sample_nearest
from neo_pinn.errors import ConfigurationError
from neo_pinn.forecast import FORECAST_METRICS, compare_forecast
from neo_pinn.io.attach import attach, read_attached, result_from_block
from neo_pinn.report_signals import CORRECTION_TITLE, FORECAST_TITLE
from neo_pinn.result import EstimationResult, ParameterEstimate, SweepFit
from neo_pinn.toolkit import POSITIVE, option
from neo_pinn.trace import Trace

DT = 0.1  # ms
N_REC = 400  # samples of each recorded sweep: 0 .. 39.9 ms
FIT = slice(50, 250)  # the fitted window: 5.0 .. 24.9 ms
N_FORECAST = 250  # forecast samples after the window: 25.0 .. 49.9 ms (the recording ends at 39.9 ms)
PERIOD = 8.0  # ms between spikes of the analytic waveform


def wave(t: np.ndarray, shift: float = 0.0) -> np.ndarray:
    """A spiking voltage (mV): rest at −65 mV, narrow spikes up to +30 mV every PERIOD ms."""
    phase = 2 * np.pi * (np.asarray(t, dtype=float) - shift - 3.0) / PERIOD
    return -65.0 + 95.0 * (0.5 + 0.5 * np.cos(phase)) ** 40


def recorded(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = np.arange(N_REC) * DT
    return t, wave(t, shift=0.5 * k), np.where(t >= 2.0, 30.0 + 10.0 * k, 0.0)


def forecast_of(k: int, shift: float = 0.0, observed: bool = False) -> DerivedSignal:
    t = (FIT.stop + np.arange(N_FORECAST)) * DT
    v = wave(t, shift=0.5 * k + shift)
    obs = None
    if observed:
        t_rec, v_rec, _ = recorded(k)
        obs = sample_nearest(t_rec, v_rec, t)
    return DerivedSignal(sweep=k, role="forecast", t=t, values=np.column_stack([v, 0.3 + 0.01 * np.sin(t)]),
                         names=("V", "n"), units=("mV", "dimensionless"), observed=obs,
                         description=f"States simulated 25 ms past the fitted window of sweep {k}.")


def correction_of(k: int) -> DerivedSignal:
    t = recorded(k)[0][FIT]
    return DerivedSignal(sweep=k, role="correction", t=t, values=(5.0 * np.sin(t / 3.0) + k).reshape(-1, 1),
                         names=("I_correction",), units=("pA",))


def make_result(signals=(), sweeps=(0, 1)) -> EstimationResult:
    fits = []
    for k in sweeps:
        t, v, i = recorded(k)
        states = np.column_stack([v[FIT] + 0.05 * np.sin(t[FIT]), 0.3 + 0.01 * np.sin(t[FIT])])
        fits.append(SweepFit(sweep=k, t=t[FIT], v_observed=v[FIT].copy(), i_ext=i[FIT].copy(), states=states,
                             stimulus_source="recorded-channel", source={"file": "cell.abf", "segment": k,
                                                                         "signal": "Vm"}))
    params = {"gCa": ParameterEstimate("gCa", 4.1, "nS", std=0.2, free=True, init=3.0),
              "C": ParameterEstimate("C", 20.0, "pF", free=False)}
    return EstimationResult(model="morris_lecar", backend="pinode", parameters=params, state_names=("V", "n"),
                            state_units=("mV", "dimensionless"), fits=tuple(fits), metrics={"rmse_mV": 0.05},
                            provenance={"run_id": "r7", "seed": 1, "device": "cpu"}, config={"forecast_ms": 25.0},
                            signals=tuple(signals))


def full_result() -> EstimationResult:
    return make_result([forecast_of(0, observed=True), correction_of(0), forecast_of(1), correction_of(1)])


def make_block() -> neo.Block:
    blk = neo.Block(name="cell")
    for k in range(2):
        t, v, i = recorded(k)
        seg = neo.Segment(name=f"sweep {k}")
        seg.analogsignals.append(neo.AnalogSignal(v.reshape(-1, 1), units="mV", sampling_rate=10 * pq.kHz,
                                                  t_start=0 * pq.s, name="Vm", neo_pinn_role="voltage",
                                                  neo_pinn_sweep=k))
        seg.analogsignals.append(neo.AnalogSignal(i.reshape(-1, 1), units="pA", sampling_rate=10 * pq.kHz,
                                                  t_start=0 * pq.s, name="Im", neo_pinn_role="stimulus",
                                                  neo_pinn_sweep=k))
        blk.segments.append(seg)
    return blk


def assert_same_signals(a: tuple[DerivedSignal, ...], b: tuple[DerivedSignal, ...], atol: float = 1e-9) -> None:
    assert [(s.sweep, s.role, s.names, s.units, s.description) for s in a] == \
        [(s.sweep, s.role, s.names, s.units, s.description) for s in b]
    for x, y in zip(a, b):
        np.testing.assert_allclose(y.t, x.t, rtol=0, atol=atol)
        np.testing.assert_allclose(y.values, x.values, rtol=0, atol=atol)
        assert (x.observed is None) == (y.observed is None)
        if x.observed is not None:
            np.testing.assert_array_equal(np.isnan(y.observed), np.isnan(x.observed))
            np.testing.assert_allclose(y.observed, x.observed, rtol=0, atol=atol)


# ---------------------------------------------------------------------------------------- the contract
def test_a_derived_signal_is_checked_and_normalised():
    s = forecast_of(0)
    assert s.values.shape == (N_FORECAST, 2) and s.dt == pytest.approx(DT) and s.duration == pytest.approx(24.9)
    np.testing.assert_array_equal(s.channel("n"), s.values[:, 1])
    one = DerivedSignal(sweep=np.int64(1), role="correction", t=[0.0, 0.1, 0.2], values=[1.0, 2.0, 3.0],
                        names=["I_correction"], units=["pA"])
    assert one.sweep == 1 and type(one.sweep) is int and one.values.shape == (3, 1) and one.names == ("I_correction",)
    assert DERIVED_ROLES == ("forecast", "correction")
    t = np.arange(5) * 0.1
    bad = [
        (dict(role="prediction"), "role 'prediction' is unknown"),
        (dict(values=np.zeros((4, 1))), r"values have shape \(4, 1\); give \(5, C\)"),
        (dict(names=("I", "J")), "1 channel\\(s\\) but 2 name\\(s\\) and 1 unit"),
        (dict(units=()), "1 channel\\(s\\) but 1 name\\(s\\) and 0 unit"),
        (dict(t=np.array([0.0, np.nan, 0.2, 0.3, 0.4])), "NaN or inf"),
        (dict(t=np.array([0.0, 0.1, 0.3, 0.4, 0.5])), "regular steps"),
        (dict(t=np.array([0.0])), "at least two times"),
        (dict(observed=np.zeros(4)), r"observed has shape \(4,\)"),
        (dict(sweep=1.5), "whole number"),
        (dict(names="I_correction"), "tuple of text"),
    ]
    for change, match in bad:
        kwargs = dict(sweep=0, role="correction", t=t, values=np.zeros((5, 1)), names=("I_correction",),
                      units=("pA",)) | change
        with pytest.raises(ConfigurationError, match=match):
            DerivedSignal(**kwargs)


def test_a_result_holds_at_most_one_signal_of_each_role_per_fitted_sweep():
    res = full_result()
    assert [s.role for s in res.signals_of("forecast")] == ["forecast", "forecast"]
    (corr,) = res.signals_of("correction", sweep=1)
    assert corr is res.signals[3]
    assert res.signals_of("forecast", sweep=5) == ()
    with pytest.raises(ConfigurationError, match="No signal role 'states'"):
        res.signals_of("states")
    with pytest.raises(ConfigurationError, match="sweep 3, which this result did not fit"):
        make_result([dataclasses.replace(correction_of(1), sweep=3)])
    with pytest.raises(ConfigurationError, match="Two forecast signals of sweep 0"):
        make_result([forecast_of(0), forecast_of(0)])
    with pytest.raises(ConfigurationError, match="DerivedSignal"):
        make_result([{"role": "forecast"}])
    assert isinstance(make_result(list(full_result().signals)).signals, tuple)
    assert make_result().signals == ()


def test_from_fit_passes_the_signals_through():
    m = neo_pinn.get_model("morris_lecar")
    t, v, i = recorded(0)
    problem = neo_pinn.EstimationProblem.build(m, [Trace(t=t[FIT], v=v[FIT], i_ext=i[FIT], sweep=0)], ["gCa"],
                                               preset="snlc", init={"gCa": 4.0})
    states = [np.column_stack([v[FIT], np.full(t[FIT].size, 0.3)])]
    res = EstimationResult.from_fit(problem, "pinode", {"gCa": 4.2}, states, signals=[forecast_of(0)])
    assert len(res.signals) == 1 and res.signals[0].role == "forecast"
    assert EstimationResult.from_fit(problem, "pinode", {"gCa": 4.2}, states).signals == ()
    from neo_pinn.toolkit import DerivedSignal as FromToolkit

    assert FromToolkit is DerivedSignal is neo_pinn.DerivedSignal


# ---------------------------------------------------------------------------------------- JSON
def test_json_round_trip_keeps_the_arrays_and_the_missing_observations():
    res = full_result()
    assert np.isnan(res.signals[0].observed).sum() == 100  # the forecast runs 10 ms past the recording
    text = res.to_json()
    d = json.loads(text)  # strict JSON: no NaN literal
    assert "NaN" not in text and d["signals"][0]["observed"][-1] is None and d["signals"][1]["observed"] is None
    back = EstimationResult.from_json(text)
    assert_same_signals(res.signals, back.signals, atol=0)
    summary = res.to_dict(include_arrays=False)["signals"]
    assert summary[0] == {"sweep": 0, "role": "forecast", "names": ["V", "n"], "units": ["mV", "dimensionless"],
                          "t0": 25.0, "t1": pytest.approx(49.9)}
    assert "signals" not in make_result().to_dict()  # a result without signals writes what it always wrote
    old = make_result().to_dict()
    assert EstimationResult.from_dict(old).signals == ()


# ---------------------------------------------------------------------------------------- Neo
def test_attach_appends_one_signal_per_channel_and_reads_them_back(tmp_path):
    res, blk = full_result(), make_block()
    attach(res, blk)
    for k, seg in enumerate(blk.segments):
        new = [s for s in seg.analogsignals if ".neo_pinn." in s.name]
        roles = [s.annotations["neo_pinn_role"] for s in new]
        assert roles == ["reconstruction", "hidden_states", "forecast", "forecast", "correction"]
        fc = [s for s in new if s.annotations["neo_pinn_role"] == "forecast"]
        assert [s.annotations["neo_pinn_state"] for s in fc] == ["V", "n"]
        assert fc[0].units == pq.mV and fc[1].units == pq.dimensionless and fc[0].shape == (N_FORECAST, 1)
        assert float(fc[0].t_start.rescale("ms")) == pytest.approx(25.0)
        assert float(fc[0].sampling_rate.rescale("Hz")) == pytest.approx(10000.0)
        corr = next(s for s in new if s.annotations["neo_pinn_role"] == "correction")
        assert corr.units == pq.pA and corr.name.endswith(".correction.I_correction")
        assert float(corr.t_start.rescale("ms")) == pytest.approx(5.0)
        for s in fc + [corr]:
            assert s.annotations["neo_pinn_run_id"] == "r7" and s.annotations["neo_pinn_sweep"] == k
            assert s.annotations["neo_pinn_backend"] == "pinode" and "neo_pinn_parameters" in s.annotations
    run = read_attached(blk)[0]
    assert len(run["sweeps"]) == 2 and len(run["derived"]) == 6
    assert all(sw["t"].size == FIT.stop - FIT.start for sw in run["sweeps"])  # a forecast is no reconstruction
    back = result_from_block(blk)
    np.testing.assert_allclose(back.fits[0].states, res.fits[0].states)
    assert_same_signals(res.signals, back.signals)
    assert neo_pinn.parameters_of(blk)["gCa"].value == 4.1

    path = tmp_path / "fit.nix"
    with neo.io.NixIO(str(path), mode="ow") as io:
        io.write_block(blk)
    with neo.io.NixIO(str(path), mode="ro") as io:
        nix_back = result_from_block(io.read_block())
    assert_same_signals(res.signals, nix_back.signals)


@pytest.mark.parametrize("suffix", [".nix", ".nwb"])
def test_derived_signals_survive_the_neo_writers(tmp_path, suffix):
    from neo_pinn.io.neo_files_reader import read_block
    from neo_pinn.io.neo_writers import write_block

    res, blk = full_result(), make_block()
    attach(res, blk)
    back = result_from_block(read_block(write_block(blk, tmp_path / f"out{suffix}")))
    assert_same_signals(res.signals, back.signals)
    np.testing.assert_allclose(back.fits[1].states, res.fits[1].states)


def test_a_result_without_signals_attaches_as_before():
    blk = make_block()
    attach(make_result(), blk)
    for seg in blk.segments:
        new = [s for s in seg.analogsignals if ".neo_pinn." in s.name]
        assert len(new) == 2 and all(s.shape[0] == FIT.stop - FIT.start for s in new)
    assert result_from_block(blk).signals == ()


def test_nwb_output_holds_a_series_per_channel_and_reads_back(tmp_path):
    pynwb = pytest.importorskip("pynwb")
    res = full_result()
    path = neo_pinn.write_result_nwb(res, tmp_path / "fit.nwb")
    back = neo_pinn.read_result_nwb(path)
    assert_same_signals(res.signals, back.signals, atol=0)
    with pynwb.NWBHDF5IO(str(path), mode="r") as io:
        module = io.read().processing["icephys"]
        ts = module["morris_lecar_pinode_r7_sweep0_forecast_V"]
        assert ts.unit == "volts" and ts.starting_time == pytest.approx(0.025) and "fitted window" in ts.description
        np.testing.assert_allclose(ts.data[:], res.signals[0].values[:, 0])
        corr = module["morris_lecar_pinode_r7_sweep1_correction_I_correction"]
        assert corr.unit == "amperes" and corr.conversion == pytest.approx(1e-12)


# ---------------------------------------------------------------------------------------- report
def test_the_report_shows_forecast_and_correction(tmp_path):
    res = compare_forecast(full_result(), [Trace(*recorded(k), sweep=k) for k in (0, 1)])
    from neo_pinn.report import write_report

    text = write_report(res, tmp_path / "r.html").read_text()
    assert FORECAST_TITLE in text and CORRECTION_TITLE in text
    assert "spike-time error (ms)" in text and "Sweep 1: forecast past the fitted window" in text
    plain = write_report(make_result(), tmp_path / "plain.html").read_text()
    assert FORECAST_TITLE not in plain and CORRECTION_TITLE not in plain


def test_forecast_figure_draws_window_forecast_and_recording():
    from neo_pinn.report_signals import figure_correction, figure_forecast

    res = full_result()
    fig = figure_forecast(res, 0)
    labels = [line.get_label() for line in fig.axes[0].lines]
    assert labels == ["recorded (fitted)", "reconstructed", "end of the fitted window", "recorded (not fitted)",
                      "forecast"]
    assert "forecast" in fig.axes[0].get_title() and fig.axes[0].get_ylabel() == "V (mV)"
    assert "recorded (not fitted)" not in [ln.get_label() for ln in figure_forecast(res, 1).axes[0].lines]
    assert "pA" in figure_correction(res, 1).axes[0].get_ylabel()
    assert figure_forecast(make_result(), 0) is None and figure_correction(make_result(), 0) is None


# ---------------------------------------------------------------------------------------- compare_forecast
def test_a_true_continuation_forecasts_the_spikes_exactly():
    traces = [Trace(*recorded(k), sweep=k) for k in (0, 1)]
    res = compare_forecast(make_result([forecast_of(0), forecast_of(1)]), traces)
    m = res.metrics
    assert set(FORECAST_METRICS) <= set(m)
    assert m["forecast_rmse_mV"] == pytest.approx(0.0, abs=1e-9)
    assert m["forecast_spikes_recorded"] == m["forecast_spikes_predicted"] >= 2
    assert m["forecast_spike_time_error_ms"] == pytest.approx(0.0, abs=1e-9) and m["forecast_rate_error"] == 0.0
    rows = res.diagnostics["forecast"]["sweeps"]
    assert [r["sweep"] for r in rows] == [0, 1] and rows[0]["compared_ms"] == pytest.approx(15.0)
    assert res.diagnostics["forecast"]["threshold_mV"] == 0.0  # the model's level (morris_lecar)
    obs = res.signals[0].observed
    assert np.isfinite(obs[:150]).all() and np.isnan(obs[150:]).all()
    np.testing.assert_allclose(obs[:150], recorded(0)[1][250:])
    json.loads(res.to_json())  # the diagnostics are strict JSON too


def test_a_shifted_forecast_has_a_measurable_spike_time_error():
    traces = [Trace(*recorded(0), sweep=0)]
    res = compare_forecast(make_result([forecast_of(0, shift=1.5)], sweeps=(0,)), traces)
    assert res.metrics["forecast_spike_time_error_ms"] == pytest.approx(1.5, abs=0.05)
    assert res.metrics["forecast_rmse_mV"] > 5.0
    # another threshold (a quantity), and forecasts of sweeps not given are left alone
    res2 = compare_forecast(make_result([forecast_of(0), forecast_of(1)]), traces, threshold=-20 * pq.mV)
    levels = res2.diagnostics["forecast"]
    assert (levels["threshold_mV"], levels["rearm_mV"]) == (-20.0, -30.0)
    assert res2.signals[1].observed is None and [r["sweep"] for r in res2.diagnostics["forecast"]["sweeps"]] == [0]
    silent = compare_forecast(make_result([forecast_of(0)]), [Trace(*recorded(1), sweep=1)])
    assert silent.metrics == make_result().metrics and "forecast" not in silent.diagnostics
    with pytest.raises(ConfigurationError, match="Trace objects"):
        compare_forecast(make_result([forecast_of(0)]), [recorded(0)])
    with pytest.raises(neo_pinn.NeoPinnError):
        compare_forecast(make_result([forecast_of(0)]), traces, threshold=1 * pq.s)


def test_a_diverged_forecast_still_counts_the_recorded_spikes():
    good = forecast_of(0)
    values = good.values.copy()
    values[40:, 0] = np.nan  # diverged 4 ms into the forecast, before the recording's next spikes
    res = compare_forecast(make_result([dataclasses.replace(good, values=values)], sweeps=(0,)),
                           [Trace(*recorded(0), sweep=0)])
    truth = compare_forecast(make_result([good], sweeps=(0,)), [Trace(*recorded(0), sweep=0)])
    m = res.metrics
    assert m["forecast_spikes_recorded"] == truth.metrics["forecast_spikes_recorded"] >= 2
    assert m["forecast_spikes_predicted"] < m["forecast_spikes_recorded"]
    assert m["forecast_rmse_mV"] == math.inf and m["forecast_rate_error"] > 0
    assert res.diagnostics["forecast"]["sweeps"][0]["forecast_diverged"] is True


def test_a_forecast_past_the_recording_only_has_no_metrics():
    late = dataclasses.replace(forecast_of(0), t=forecast_of(0).t + 20.0)  # 45 .. 69.9 ms: nothing recorded
    res = compare_forecast(make_result([late]), [Trace(*recorded(0), sweep=0)])
    assert not set(FORECAST_METRICS) & set(res.metrics) and np.isnan(res.signals[0].observed).all()
    row = res.diagnostics["forecast"]["sweeps"][0]
    assert row["samples_compared"] == 0 and row["rmse_mV"] is None and row["spikes_in_forecast"] >= 2


# ---------------------------------------------------------------------------------------- estimate
@dataclass(frozen=True)
class _ForecasterConfig(neo_pinn.BackendConfig):
    forecast_ms: float = option(10.0, POSITIVE, "ms simulated past the fitted window")


class _Forecaster(neo_pinn.Estimator):
    """A stand-in for a forecasting backend: the recording as its reconstruction, the true wave as its forecast."""

    name = "test_forecaster"
    config_class = _ForecasterConfig

    def _fit(self, problem, ctx):
        states, signals = [], []
        for tr in problem.traces:
            states.append(np.column_stack([tr.v, np.full(tr.t.size, 0.3)]))
            n = int(round(self.config.forecast_ms / tr.dt))
            t = tr.t[-1] + tr.dt * np.arange(1, n + 1)
            signals.append(DerivedSignal(sweep=tr.sweep, role="forecast", t=t, values=np.column_stack(
                [wave(t), np.full(n, 0.3)]), names=problem.model.state_names, units=problem.model.state_units))
        free = {f.name: f.init if f.init is not None else float(np.mean(f.bounds)) for f in problem.free}
        return EstimationResult.from_fit(problem, self.name, free, states, signals=signals)


def test_estimate_compares_the_forecast_with_the_recording_past_its_window(monkeypatch):
    import neo_pinn.api as api

    real = api.get_backend
    monkeypatch.setattr(api, "get_backend", lambda name: _Forecaster if name == _Forecaster.name else real(name))
    t = np.arange(1000) * DT  # 0 .. 99.9 ms
    tr = Trace(t=t, v=wave(t), i_ext=np.full(t.size, 40.0), sweep=0)
    kw = dict(free=["gCa"], preset="snlc", qc=False, scale_to_cell=False, staged=False,
              backend_options={"forecast_ms": 30.0})
    res = neo_pinn.estimate(tr, "morris_lecar", _Forecaster.name, window=(0.0, 49.95), **kw)
    fc = res.signals_of("forecast", 0)[0]
    assert fc.t[0] == pytest.approx(res.fits[0].t[-1] + DT) and np.isfinite(fc.observed).all()
    assert res.metrics["forecast_spike_time_error_ms"] == pytest.approx(0.0, abs=1e-9)
    assert res.metrics["forecast_spikes_recorded"] == 4 and res.metrics["forecast_rmse_mV"] < 1e-9
    # without a window nothing was cut: no recording past the fit, so nothing to compare
    whole = neo_pinn.estimate(tr, "morris_lecar", _Forecaster.name, **kw)
    assert whole.signals_of("forecast")[0].observed is None and "forecast_rmse_mV" not in whole.metrics


# ---------------------------------------------------------------------------------------- CLI
def test_fit_forecast_needs_a_backend_that_forecasts(tmp_path, capsys):
    data = tmp_path / "cell.abf"
    data.write_bytes(b"not read: the flag is checked first")
    rc = main(["fit", str(data), "--model", "morris_lecar", "--free", "gCa", "--backend", "lsq", "--forecast", "50"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == EXIT_BAD_INPUT and len(err) == 1
    assert err[0] == ("error: backend lsq does not forecast; --forecast needs a backend with a forecast_ms option "
                      "(e.g. --backend pinode).")
    rc = main(["fit", str(data), "--model", "morris_lecar", "--free", "gCa", "--backend", "lsq", "--forecast", "-5"])
    err = capsys.readouterr().err
    assert rc == EXIT_BAD_INPUT and "--forecast -5: give a positive, finite number of ms" in err


def test_the_forecast_option_reaches_a_backend_that_has_it():
    from neo_pinn.cli_args import forecast_option

    assert forecast_option(None, "lsq", {}) == {}
    assert forecast_option(50, "test_forecaster", _Forecaster.default_config) == {"forecast_ms": 50.0}
    with pytest.raises(ConfigurationError, match="positive"):
        forecast_option(math.inf, "test_forecaster", _Forecaster.default_config)

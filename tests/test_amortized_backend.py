"""The ``amortized`` backend (plugins/neo_pinn_amortized/backend.py): estimate() with a trained estimator, the
protocol checks, the out-of-distribution flag, the array entry point and the warm start.

One tiny FitzHugh–Nagumo estimator (Rudi et al. 2022 set-up, 384 traces, 15 epochs of the paper's CNN, a few
seconds on one CPU thread) is trained once per module and saved; the test traces come from the independent scipy
reference solver, never from the torch simulator it was trained on. The backend also passes the core's
compliance contract (:class:`neo_pinn.testing.BackendCompliance`) with two tiny Morris–Lecar estimators trained for
the contract's problems (marked slow: run them with ``-m slow``).
"""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pytest

import neo_pinn
from neo_pinn.errors import ConfigurationError, InputPathError
from neo_pinn.problem import EstimationProblem
from neo_pinn.result import EstimationResult
from neo_pinn.testing import BackendCompliance
from neo_pinn.testing.compliance import synthetic_problem
from neo_pinn.trace import Trace
from neo_pinn.verdict import Check, Verdict

from neo_pinn_amortized import AmortizedEstimator, ProtocolMismatchError, amortized_init, predict_traces
from neo_pinn_amortized.backend import Amortized, combine_sweeps
from neo_pinn_amortized.estimator import MANIFEST
from neo_pinn_amortized.reference import reference_test_set, reference_traces
from neo_pinn_amortized.train import train_estimator

DT = 0.2
FREE = ["theta0", "theta1"]
#: estimate() options every FHN fit here needs: the traces are dimensionless (|u| ≲ 2, read as mV), not a cell
CELL = {"qc": False, "allow_unphysiological": True, "device": "cpu"}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: one torch thread per module


@pytest.fixture(scope="module")
def trained(one_thread, tiny_fhn_estimator, tmp_path_factory):
    """(estimator, its folder, 8 noisy reference traces, their true targets)."""
    est = tiny_fhn_estimator
    folder = est.save(tmp_path_factory.mktemp("amortized") / "fhn")
    X, truth, _ = reference_test_set(est.spec, 8, seed=7)
    return est, folder, X, truth


def _trace(v, sweep=0, t0=0.0, dt=DT, i_ext=None):
    t = t0 + dt * np.arange(len(v))
    return Trace(t=t, v=np.asarray(v, float), i_ext=np.zeros_like(t) if i_ext is None else i_ext,
                 stimulus_source="user", sweep=sweep)


def _options(folder, **more):
    return {"estimator": str(folder), "n_samples": 200, "ood_draws": 16} | more


def _problem(traces, free=FREE, **kw):
    return EstimationProblem.build(neo_pinn.get_model("fitzhugh_nagumo"), traces, free, **kw)


# ---------------------------------------------------------------------------------------------- registration
def test_the_backend_is_registered_and_needs_an_estimator():
    assert neo_pinn.list_backends()["amortized"] == "amortized"
    assert neo_pinn.get_backend("amortized") is Amortized
    with pytest.raises(ConfigurationError, match=r"--option estimator=PATH.*train_estimator"):
        Amortized()
    with pytest.raises(ConfigurationError, match="no_such_option"):
        Amortized(estimator="x", no_such_option=1)
    with pytest.raises(InputPathError, match="train_estimator"):
        Amortized(estimator="/no/such/folder").fit(_problem(_trace(np.zeros(1000))), device="cpu")


# ---------------------------------------------------------------------------------------------- a fit
def test_estimate_returns_parameters_with_std_samples_noise_and_states(trained):
    est, folder, X, truth = trained
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # an in-distribution trace raises no OOD warning
        res = neo_pinn.estimate(_trace(X[0]), "fitzhugh_nagumo", "amortized", free=FREE,
                                backend_options=_options(folder), **CELL)
    mean, std = est.predict(X[:1], DT)  # the backend is the network's prediction (one sweep: no combination)
    for k, name in enumerate(FREE):
        p = res[name]
        assert p.value == pytest.approx(mean[0, k], rel=1e-6) and p.std == pytest.approx(std[0, k], rel=1e-6)
        assert abs(p.value - truth[0, k]) < 3 * p.std  # a calibrated std: 3 std hold the truth 99.7 % of the time
        assert len(res.samples[name]) == 200 and est.spec.priors[name].contains(res.samples[name]).all()
        lo50, hi50 = res.diagnostics["intervals"][name]["50"]
        lo90, hi90 = res.diagnostics["intervals"][name]["90"]
        assert lo90 < lo50 < p.value < hi50 < hi90
    rho, s = res.noise["rho"], res.noise["s"]
    assert abs(rho - truth[0, 2]) < 3 * res.noise["rho_std"] and abs(s - truth[0, 3]) < 3 * res.noise["s_std"]
    assert res.noise["sigma"] == pytest.approx(s / np.sqrt(1 - rho**2))
    assert set(res.diagnostics["noise_samples"]) == {"rho", "s"} and set(res.samples) == set(FREE)
    # the hidden states are the estimate simulated through the core: the independent solver agrees
    ref = reference_traces(est.spec, np.array([[res["theta0"].value, res["theta1"].value]]))[0]
    assert res.fits[0].states.shape == (1000, 2)
    assert np.abs(res.fits[0].states[:, 0] - ref).max() < 1e-3
    assert res.metrics["out_of_distribution"] is False and res.status in ("passed", "warning")
    assert res.metrics["reconstruction_ratio"] < 3.0
    back = EstimationResult.from_json(res.to_json())
    assert back.samples == res.samples and back.noise == res.noise
    _check_the_flag_turns_a_passed_verdict_into_a_warning(res, folder)


def test_several_sweeps_go_through_one_batched_call_and_are_combined(trained, monkeypatch):
    est, folder, X, _ = trained
    spec = est.spec
    clean = reference_traces(spec, np.array([[0.6, 0.3]]))
    from neo_pinn_amortized.training_set import add_noise

    noisy = add_noise(np.repeat(clean, 3, 0), "ar1", np.array([[0.8, 0.06]] * 3), np.random.default_rng(3))
    calls = []
    original = AmortizedEstimator.predict_scaled
    monkeypatch.setattr(AmortizedEstimator, "predict_scaled",
                        lambda self, x, dt: calls.append(np.shape(x)) or original(self, x, dt))
    problem = _problem([_trace(v, sweep=k) for k, v in enumerate(noisy)])
    res = Amortized(**_options(folder)).fit(problem, device="cpu", check=False)
    assert calls == [(3, 1000)]  # one batched call for the three sweeps
    per = res.diagnostics["per_sweep"]
    assert [p["sweep"] for p in per] == [0, 1, 2] and len(res.fits) == 3
    for name in FREE:  # the combination is tighter than any sweep alone
        assert res[name].std < min(p["std"][name] for p in per)
        assert min(p["mean"][name] for p in per) <= res[name].value <= max(p["mean"][name] for p in per)
    m, s, z = combine_sweeps(np.array([[0.2], [0.4]]), np.array([[0.1], [0.2]]))
    assert m[0] == pytest.approx((0.2 / 0.01 + 0.4 / 0.04) / (1 / 0.01 + 1 / 0.04))
    assert s[0] == pytest.approx((1 / 0.01 + 1 / 0.04) ** -0.5) and z.shape == (2, 1)


# ---------------------------------------------------------------------------------------------- protocol checks
def test_a_sweep_of_another_protocol_or_problem_is_refused_with_what_the_estimator_expects(trained):
    _, folder, X, _ = trained
    fit = Amortized(**_options(folder)).fit
    with pytest.raises(ProtocolMismatchError, match="sampled every 0.1 ms.*1000 samples at 0.2 ms"):
        fit(_problem(_trace(X[0], dt=0.1)), device="cpu")
    with pytest.raises(ProtocolMismatchError, match="999 samples"):
        fit(_problem(_trace(X[0][:999])), device="cpu")
    long = _trace(np.r_[X[0], X[1]])
    with pytest.raises(ProtocolMismatchError, match=r"window=\(0, 199.9\)"):
        fit(_problem(long), device="cpu")
    with pytest.raises(ProtocolMismatchError, match=r"free=\['theta0', 'theta1'\]"):
        fit(_problem(_trace(X[0]), free=["theta0"]), device="cpu")
    with pytest.raises(ProtocolMismatchError, match="gamma = 3"):
        fit(_problem(_trace(X[0]), values={"gamma": 4.0}), device="cpu")
    with pytest.raises(ProtocolMismatchError, match="injected current"):
        fit(_problem(_trace(X[0], i_ext=np.full(1000, 0.3))), device="cpu")
    with pytest.raises(ProtocolMismatchError, match="start"):
        fit(_problem(_trace(X[0]), initial_state=[1.0, 0.0]), device="cpu")
    with pytest.raises(ProtocolMismatchError, match="model 'fitzhugh_nagumo'"):
        problem = EstimationProblem.build(neo_pinn.get_model("morris_lecar"), _trace(X[0] - 60.0), ["gCa"])
        fit(problem, device="cpu")
    # the documented safe path: exactly the protocol's window of a longer sweep (from its start)
    res = fit(_problem(long, window=(0.0, 199.9)), device="cpu", check=False)
    assert res.fits[0].t.size == 1000


# ---------------------------------------------------------------------------------------------- out of distribution
def test_traces_unlike_the_training_data_are_flagged_and_the_verdict_says_so(trained):
    _, folder, X, _ = trained
    t = DT * np.arange(1000)
    flat = _trace(np.full(1000, -1.0))
    with pytest.warns(RuntimeWarning, match="unlike the estimator's training data"):
        res = neo_pinn.estimate(flat, "fitzhugh_nagumo", "amortized", free=FREE, backend_options=_options(folder),
                                **CELL)
    assert res.metrics["out_of_distribution"] is True and res.status != "passed"
    assert any("std = 0" in r for r in res.diagnostics["ood"]["reasons"])
    check = next(c for c in res.verdict["checks"] if c["name"] == "out_of_distribution")
    assert not check["passed"] and "out_of_distribution" in res.summary()
    with pytest.warns(RuntimeWarning):
        big = Amortized(**_options(folder)).fit(_problem(_trace(50.0 * np.sin(t))), device="cpu", check=False)
    assert big.metrics["out_of_distribution"] is True and big.status == "unchecked"
    assert big.metrics["reconstruction_ratio"] > 3.0  # the reconstruction check alone flags it too
    assert big.diagnostics["per_sweep"][0]["feature_z"]["std"] > 6.0


def _check_the_flag_turns_a_passed_verdict_into_a_warning(res, folder):
    assert res.metrics["out_of_distribution"] is False
    backend = Amortized(**_options(folder))
    (ok,) = backend.verdict_checks(None, res)
    assert ok.name == "out_of_distribution" and ok.passed and ok.severity == "warn"
    flagged = dataclasses.replace(res, metrics=res.metrics | {"out_of_distribution": True},
                                  diagnostics=res.diagnostics | {"ood": {"message": "made up for the test"}})
    (bad,) = backend.verdict_checks(None, flagged)
    passed = Verdict.from_dict(res.verdict | {"status": "passed", "checks": [
        c for c in res.verdict["checks"] if c["name"] != "out_of_distribution"]})
    assert passed.with_checks([ok]).status == "passed"
    warned = passed.with_checks([bad])
    assert warned.status == "warning" and not warned.check("out_of_distribution").passed
    assert any(line.startswith("WARN out_of_distribution: made up") for line in warned.lines())
    assert passed.with_checks([Check("out_of_distribution", "fail", False, "x")]).status == "failed"


def test_an_estimator_saved_before_the_ood_statistics_still_loads_and_says_the_check_was_skipped(trained, tmp_path):
    est, _, X, _ = trained
    folder = est.save(tmp_path / "old")
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["format"] = "neo_pinn_amortized/1"
    del manifest["ood"]
    (folder / MANIFEST).write_text(json.dumps(manifest))
    assert AmortizedEstimator.load(folder).feature_stats is None
    res = Amortized(**_options(folder)).fit(_problem(_trace(X[0])), device="cpu", check=False)
    assert res.diagnostics["ood"]["feature_check"].startswith("skipped")
    assert np.isnan(res.metrics["ood_feature_z"])


# ---------------------------------------------------------------------------------------------- entry points
def test_predict_traces_and_amortized_init(trained):
    est, folder, X, _ = trained
    out = predict_traces(folder, X, DT)
    mean, std = est.predict(X, DT)
    assert list(out) == ["theta0", "theta1", "rho", "s"]
    np.testing.assert_allclose(out["theta1"][0], mean[:, 1])
    np.testing.assert_allclose(out["s"][1], std[:, 3])
    with pytest.raises(ConfigurationError, match="1000 samples at 0.2 ms"):
        predict_traces(est, X[:, :500], DT)
    init = amortized_init(folder, _trace(X[3]))
    assert list(init) == FREE and init["theta0"] == pytest.approx(mean[3, 0], rel=1e-5)
    assert amortized_init(est, X[3:4], DT) == init
    with pytest.raises(ProtocolMismatchError):
        amortized_init(est, _trace(X[3], dt=0.1))


# ---------------------------------------------------------------------------------------------- the core's contract
def _ml_estimator(folder, sample_dt: float):
    """A deliberately tiny Morris–Lecar estimator (gCa and white σ) for the compliance problems' protocol.

    The compliance tests check the contract, not accuracy: 96 traces, 3 epochs and a 0.1 ms integration step keep
    it to a second or two.
    """
    from neo_pinn_amortized.priors import LogUniform
    from neo_pinn_amortized.train import TrainConfig

    config = TrainConfig(model="morris_lecar", preset="snlc", priors={"gCa": LogUniform(2.0, 8.0)}, noise="white",
                         noise_priors={"sigma": LogUniform(0.5, 2.0)}, duration_ms=120.0 + sample_dt,
                         sample_dt_ms=sample_dt, dt_ms=0.1, n=96, epochs=3, patience=3, seed=0, device="cpu")
    return train_estimator(config).save(folder)


#: synthetic sweeps of the compliance tests by their arguments
_SWEEPS: dict = {}


@pytest.mark.slow  # about 20 s, most of it the core's verdict simulating each fit at 0.05 ms: CI deselects "slow"
class TestAmortizedCompliance(BackendCompliance):
    """The core's backend contract (neo_pinn.testing.BackendCompliance) with estimators for its problems' protocols."""

    backend = "amortized"
    options: dict = {}
    step_options: dict = {}

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _estimators(cls, tmp_path_factory):
        folder = tmp_path_factory.mktemp("ml_estimators")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            five = _ml_estimator(folder / "5khz", 0.2)       # synthetic_problem(): 120 ms at 5 kHz
            two = _ml_estimator(folder / "2khz", 0.5)        # its sampling-interval test: 2 kHz
        cls.options = {"estimator": str(five), "n_samples": 50, "ood_draws": 4}
        cls.step_options = {"estimator": str(two)}
        yield
        cls.options, cls.step_options = {}, {}

    @pytest.fixture(autouse=True)
    def _quiet_and_memoised(self, monkeypatch):
        """No OOD warnings (a 3-epoch estimator may well call the recordings out of distribution), and each
        synthetic sweep simulated once (the contract simulates the same sweep in several tests; a Trace is frozen)."""
        from neo_pinn.testing import compliance

        made, simulate_sweep = _SWEEPS, compliance.synthetic_trace

        def memo(model, **kwargs):
            key = repr((getattr(model, "name", model), sorted(kwargs.items())))
            if key not in made:
                made[key] = simulate_sweep(model, **kwargs)
            return made[key]

        monkeypatch.setattr(compliance, "synthetic_trace", memo)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            yield

    def test_several_sweeps_are_fitted_jointly(self):
        """Sweeps of the estimator's protocol are fitted jointly; a sweep of another stimulus is refused."""
        problem = synthetic_problem(stimuli=(None, None))  # two noise draws of the same protocol
        _, res = self._fit(problem)
        self._check_complete(problem, res, self.backend)
        assert [f.sweep for f in res.fits] == [0, 1] and len(res.diagnostics["per_sweep"]) == 2
        other = dataclasses.replace(problem.traces[1], i_ext=np.full(problem.traces[1].t.size, 45.0))
        with pytest.raises(ProtocolMismatchError, match="injected current"):
            self._fit(dataclasses.replace(problem, traces=(problem.traces[0], other)))


# ---------------------------------------------------------------------------------------------- resampling
def test_a_faster_recording_is_read_at_every_kth_sample_only_when_asked(trained):
    _, folder, X, truth = trained
    fast = _trace(np.repeat(X[0], 4)[:3997], dt=DT / 4)  # the fewest samples that hold 1,000 protocol samples
    with pytest.raises(ProtocolMismatchError, match="resample=true"):
        Amortized(**_options(folder)).fit(_problem(fast), device="cpu", check=False)
    with pytest.raises(ProtocolMismatchError, match="sampled every 0.08 ms"):  # not a whole multiple: refused
        Amortized(**_options(folder, resample=True)).fit(_problem(_trace(np.repeat(X[0], 3), dt=0.08)),
                                                        device="cpu", check=False)
    with pytest.raises(ProtocolMismatchError, match="samples in the fitted window"):
        Amortized(**_options(folder, resample=True)).fit(_problem(_trace(np.repeat(X[0], 4)[:3990], dt=DT / 4)),
                                                        device="cpu", check=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        slow_res = Amortized(**_options(folder)).fit(_problem(_trace(X[0])), device="cpu", check=False)
        fast_res = Amortized(**_options(folder, resample=True)).fit(_problem(fast), device="cpu", check=False)
    for name in FREE:  # the network read the same 1,000 samples
        assert fast_res[name].value == pytest.approx(slow_res[name].value, rel=1e-9)
    assert fast_res.metrics["resample_factor"] == 4 and fast_res.fits[0].states.shape == (3997, 2)
    # AR(1) read at every 4th sample: ρ per recorded sample is the 4th root, the marginal σ unchanged
    assert fast_res.noise["rho"] == pytest.approx(slow_res.noise["rho"] ** 0.25)
    assert fast_res.noise["sigma"] == pytest.approx(slow_res.noise["sigma"])
    # the states on the fast grid pass through the slow grid's states
    assert np.abs(fast_res.fits[0].states[::4, 0] - slow_res.fits[0].states[:, 0]).max() < 1e-6


def test_estimate_keeps_the_estimators_protocol_no_step_window_and_no_stages(trained, monkeypatch):
    _, folder, X, _ = trained
    assert Amortized.fixed_protocol and not neo_pinn.get_backend("lsq").fixed_protocol
    with pytest.raises(ConfigurationError, match="fit without stages"):
        neo_pinn.estimate(_trace(X[0]), "fitzhugh_nagumo", "amortized", free=FREE, staged=True,
                          backend_options=_options(folder), **CELL)
    import neo_pinn.cellfit as cellfit

    seen = {}
    real = cellfit.plan_cell_fit

    def spy(*a, **k):
        seen["options"] = k["options"]
        return real(*a, **k)

    monkeypatch.setattr(cellfit, "plan_cell_fit", spy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        neo_pinn.estimate(_trace(X[0]), "fitzhugh_nagumo", "amortized", free=FREE, backend_options=_options(folder),
                          **CELL)
    assert seen["options"].staged is False and seen["options"].auto_window is False

"""The amortized inverse map (plugins/neo_pinn_amortized): priors, training, save/load, safety, protocol checks.

One tiny FitzHugh–Nagumo estimator (Rudi et al. 2022 set-up, 384 traces, 15 epochs of the paper's CNN, about
3 s on one CPU thread) is trained once per module and scored on traces of the independent scipy reference
solver, never on the torch simulator it was trained on.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from neo_pinn.errors import ConfigurationError, InputFormatError, NeoPinnError, OutputPathError

from neo_pinn_amortized.estimator import MANIFEST, WEIGHTS, AmortizedEstimator
from neo_pinn_amortized.priors import (RUDI2022_PRIORS, LogUniform, TruncatedNormal, Uniform,
                                       prior_from_dict)
from neo_pinn_amortized.reference import reference_test_set, reference_traces
from neo_pinn_amortized.train import TrainConfig, rudi2022_config
from neo_pinn_amortized.training_set import Protocol, add_noise, simulate_clean

DT = 0.2


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: one torch thread per module


@pytest.fixture(scope="module")
def tiny(one_thread, tiny_fhn_estimator):
    """A tiny estimator (trained once) and 96 noisy reference-solver test traces of the same generative model."""
    est = tiny_fhn_estimator
    X, truth, _ = reference_test_set(est.spec, 96, seed=7)
    return est, X, truth


# ---------------------------------------------------------------------------------------------- priors
def test_priors_sample_inside_their_supports_and_the_truncated_normal_has_its_moments():
    rng = np.random.default_rng(0)
    from scipy.stats import truncnorm

    for prior in (Uniform(-0.4, 1.2), LogUniform(0.01, 10.0), TruncatedNormal(-0.2, 1.0, mu=0.4, sigma=0.3),
                  TruncatedNormal(0.0, 1.0, mu=1.5, sigma=0.5)):
        x = prior.sample(200_000, rng)
        assert x.shape == (200_000,) and prior.contains(x).all()
        assert abs(x.mean() - prior.mean()) < 0.01 * prior.std() * 5
        assert abs(x.std() - prior.std()) < 0.01 * prior.std() * 5
        assert prior_from_dict(json.loads(json.dumps(prior.to_dict()))) == prior
        z = prior.scale(x)
        assert z.min() >= 0 and z.max() <= 1 and np.allclose(prior.unscale(z), x)
    tn = TruncatedNormal(0.0, 1.0, mu=1.5, sigma=0.5)  # the analytic moments are scipy's
    ref = truncnorm((0.0 - 1.5) / 0.5, (1.0 - 1.5) / 0.5, loc=1.5, scale=0.5)
    assert tn.mean() == pytest.approx(ref.mean(), rel=1e-9) and tn.std() == pytest.approx(ref.std(), rel=1e-9)
    bell = RUDI2022_PRIORS["theta1"].sample(100_000, rng)  # bell-shaped: the middle is denser than the edges
    assert np.mean(np.abs(bell - 0.4) < 0.2) > 2 * np.mean(bell > 1.0)


@pytest.mark.parametrize("make", [lambda: Uniform(1.0, 1.0), lambda: LogUniform(0.0, 1.0),
                                  lambda: TruncatedNormal(0.0, 1.0, mu=0.5, sigma=0.0),
                                  lambda: TruncatedNormal(0.0, 1.0, mu=100.0, sigma=0.01),
                                  lambda: prior_from_dict({"kind": "os.system", "low": 0, "high": 1})])
def test_bad_priors_are_configuration_errors(make):
    with pytest.raises(ConfigurationError):
        make()


# ---------------------------------------------------------------------------------------------- generative model
def test_ar1_noise_has_the_papers_innovation_std_and_correlation():
    rng = np.random.default_rng(1)
    eta = add_noise(np.zeros((4, 20_000)), "ar1", np.array([[0.66, 0.05], [0.8, 0.05], [0.92, 0.09], [0.7, 0.04]]),
                    rng)
    for row, (rho, s) in zip(eta, [(0.66, 0.05), (0.8, 0.05), (0.92, 0.09), (0.7, 0.04)]):
        lag1 = np.corrcoef(row[1:], row[:-1])[0, 1]
        innov = row[1:] - rho * row[:-1]
        assert lag1 == pytest.approx(rho, abs=0.02) and innov.std() == pytest.approx(s, rel=0.03)


def test_the_reference_solver_agrees_with_the_training_simulator():
    spec = rudi2022_config().spec()
    free = np.array([[0.4, 0.4], [0.0, 0.0], [0.8, 0.2], [0.085, 1.01]])
    ref = reference_traces(spec, free)
    sim = simulate_clean(spec, free, device="cpu")
    assert ref.shape == sim.shape == (4, 1000)
    assert np.abs(ref - sim).max() < 5e-3  # RK4 at 0.05 ms in float32 vs LSODA at rtol 1e-8


def test_training_config_is_validated_on_construction():
    with pytest.raises(ConfigurationError, match="noise_priors"):
        TrainConfig(noise="ar1")
    with pytest.raises(ConfigurationError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ConfigurationError):
        TrainConfig(arch="transformer")
    with pytest.raises(ConfigurationError):
        TrainConfig(duration_ms=200.0, sample_dt_ms=0.3)  # not a whole number of samples
    with pytest.raises(NeoPinnError):
        TrainConfig(priors={"no_such_parameter": Uniform(0.0, 1.0)})
    with pytest.raises(ConfigurationError, match="Unknown option"):
        TrainConfig.from_options({"epoch": 3})


# ---------------------------------------------------------------------------------------------- the estimator
def test_a_tiny_estimator_beats_the_prior_on_reference_solver_traces(tiny):
    est, X, truth = tiny
    assert est.target_names == ("theta0", "theta1", "rho", "s")
    scores = est.evaluate(X, DT, truth)["targets"]
    assert scores["theta0"]["r2"] > 0.75  # measured 0.910 (seeds 0-3, other test set: 0.89-0.93); prior mean ≤ 0
    mean, std = est.predict(X, DT)
    assert mean.shape == std.shape == (96, 4) and np.all(std > 0)
    lo, hi = est.interval(X, DT, 0.9)
    assert np.all(lo <= mean) and np.all(mean <= hi)
    draws = est.sample(X[:3], 50, DT, seed=0)
    priors = list(est.spec.target_priors.values())
    assert draws.shape == (3, 50, 4)
    assert all(p.contains(draws[..., k]).all() for k, p in enumerate(priors))
    assert set(est.metrics) >= {"train", "validation"}
    assert {"r2", "coverage_50", "coverage_90"} <= set(est.metrics["validation"]["targets"]["theta0"])


def test_save_and_load_round_trip_gives_identical_predictions(tiny, tmp_path):
    est, X, _ = tiny
    folder = est.save(tmp_path / "fhn")
    assert sorted(p.name for p in folder.iterdir()) == [MANIFEST, WEIGHTS]
    manifest = json.loads((folder / MANIFEST).read_text())
    for key in ("model", "preset", "free_parameters", "priors", "noise", "protocol", "normalisation", "architecture",
                "training", "metrics", "versions", "weights"):
        assert key in manifest
    assert manifest["protocol"] == {"duration_ms": 200.0, "sample_dt_ms": 0.2, "n_samples": 1000, "stimulus": None}
    assert manifest["architecture"]["name"] == "paper_cnn"
    assert "torch" in manifest["versions"] and "r2" in manifest["metrics"]["validation"]["targets"]["theta1"]
    loaded = AmortizedEstimator.load(folder)
    for a, b in zip(est.predict(X, DT), loaded.predict(X, DT)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(OutputPathError):
        est.save(folder)  # never replaced without overwrite=True


def test_a_trace_of_another_protocol_is_refused_with_what_the_estimator_expects(tiny):
    est, X, _ = tiny
    with pytest.raises(ConfigurationError, match="1000 samples at 0.2 ms"):
        est.predict(X[:, :999], DT)
    with pytest.raises(ConfigurationError, match="1000 samples at 0.2 ms"):
        est.predict(X, 0.1)
    with pytest.raises(ConfigurationError):
        Protocol(200.0, 0.2).check(np.zeros((2, 2000)), 0.1)


class _Payload:
    """Unpickling this creates a file: what a malicious weights file could do."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _write_object_npz(path: Path, marker: Path, arrays: dict) -> None:
    evil = np.empty(1, dtype=object)
    evil[0] = _Payload(str(marker))
    np.savez(path, **arrays, evil=evil)


def test_a_weights_file_with_pickled_objects_is_refused_without_running_them(tiny, tmp_path):
    est, _, _ = tiny
    folder = est.save(tmp_path / "est")
    arrays = dict(np.load(folder / WEIGHTS, allow_pickle=False))
    probe, probe_marker = tmp_path / "probe.npz", tmp_path / "probe_marker"
    _write_object_npz(probe, probe_marker, arrays)  # the payload works when numpy is allowed to unpickle it
    np.load(probe, allow_pickle=True)["evil"]
    assert probe_marker.exists()

    marker = tmp_path / "marker"
    _write_object_npz(folder / WEIGHTS, marker, arrays)
    with pytest.raises(InputFormatError, match="hash|SHA-256"):  # the manifest's hash no longer matches
        AmortizedEstimator.load(folder)
    import hashlib

    manifest = json.loads((folder / MANIFEST).read_text())  # an attacker could rewrite the hash too
    manifest["weights"]["sha256"] = hashlib.sha256((folder / WEIGHTS).read_bytes()).hexdigest()
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(InputFormatError, match="pickled"):
        AmortizedEstimator.load(folder)
    (folder / WEIGHTS).write_bytes(pickle.dumps(_Payload(str(marker))))  # a bare pickle as the weights file
    manifest["weights"]["sha256"] = hashlib.sha256((folder / WEIGHTS).read_bytes()).hexdigest()
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(InputFormatError):
        AmortizedEstimator.load(folder)
    assert not marker.exists()


def test_a_manifest_naming_an_unknown_network_is_refused(tiny, tmp_path):
    est, _, _ = tiny
    folder = est.save(tmp_path / "est")
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["architecture"]["name"] = "os.system"
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(InputFormatError, match="paper_cnn"):
        AmortizedEstimator.load(folder)


# ---------------------------------------------------------------------------------------------- fixed values, settling
def test_fixed_values_and_settling_shape_the_training_traces_as_the_reference_solver_does():
    from neo_pinn_amortized.training_set import GenerativeSpec

    proto = Protocol(300.0, 0.2, "step:amp=60pA,start=100ms,stop=250ms")
    priors = {"gCa": LogUniform(3.0, 5.0), "EL": Uniform(-50.0, -40.0)}
    free = np.array([[4.0, -45.0], [4.5, -42.0]])
    plain = GenerativeSpec("morris_lecar", priors, proto, preset="snlc")
    spec = GenerativeSpec("morris_lecar", priors, proto, preset="snlc", values={"C": 0.03 * pq_nF()}, settle_ms=300)
    assert spec.values == {"C": pytest.approx(30.0)} and spec.base_theta()[0] == pytest.approx(30.0)
    assert GenerativeSpec.from_dict(spec.to_dict()) == spec
    a, b = simulate_clean(spec, free, device="cpu"), reference_traces(spec, free)
    assert np.abs(a - b).max() < 0.02  # the independent solver agrees, settling included
    # settled: each trace starts at its own rest (flat before the step), unlike the preset's start
    assert np.abs(a[:, :400] - a[:, :1]).max() < 0.05
    assert np.abs(a[0, 0] - a[1, 0]) > 3.0 and simulate_clean(plain, free, device="cpu")[0, 0] == pytest.approx(-59.47)
    with pytest.raises(ConfigurationError, match="whole number of sampling intervals"):
        GenerativeSpec("morris_lecar", priors, proto, settle_ms=0.3)
    with pytest.raises(ConfigurationError, match="has a prior and a fixed value"):
        GenerativeSpec("morris_lecar", priors, proto, values={"gCa": 4.0})
    with pytest.raises(NeoPinnError, match="C"):
        GenerativeSpec("morris_lecar", priors, proto, values={"C": -1.0})


def pq_nF():
    import quantities as pq

    return pq.nF


def test_a_prior_of_draws_from_a_file_resamples_them_and_round_trips(tmp_path):
    from neo_pinn.errors import InputPathError
    from neo_pinn_amortized.cli_train import parse_prior
    from neo_pinn_amortized.priors import Draws, draws_from_file, prior_from_dict

    (tmp_path / "g.csv").write_text("gK,gCa\n8.0,4.0\n9.5,4.2\n7.0,3.9\n")
    name, prior = parse_prior(f"gCa=file:{tmp_path / 'g.csv'}:log")
    assert name == "gCa" and isinstance(prior, Draws) and prior.log_scaled
    assert (prior.low, prior.high) == (3.9, 4.2) and sorted(prior.values) == [3.9, 4.0, 4.2]
    x = prior.sample(1000, np.random.default_rng(0))
    assert set(np.unique(x)) == {3.9, 4.0, 4.2} and prior.scale([3.9, 4.2]).tolist() == pytest.approx([0.0, 1.0])
    assert prior_from_dict(json.loads(json.dumps(prior.to_dict()))) == prior
    (tmp_path / "one.txt").write_text("1\n2\n3\n")
    assert draws_from_file(tmp_path / "one.txt").mean() == pytest.approx(2.0)
    with pytest.raises(ConfigurationError, match="none named 'phi'"):
        draws_from_file(tmp_path / "g.csv", "phi")
    with pytest.raises(InputPathError):
        draws_from_file(tmp_path / "missing.csv")
    with pytest.raises(ConfigurationError, match="2 distinct"):
        Draws.of([1.0, 1.0])

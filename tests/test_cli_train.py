"""``neo-pinn train`` (the amortized plugin's command) and ``fit --init amortized:DIR``.

Estimators are trained through the command line in a few seconds on one torch thread (96 traces, 1–2 epochs of
the paper's dense network): these tests check the command's contract — flags, manifest, output checks, one-line
errors — not accuracy. Recordings are made here with ``neo-pinn simulate``; the shared real recordings are used
by one test only, skipped where they are absent.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest

from neo_pinn.cli import EXIT_BAD_INPUT, main

TINY = ["--n", "96", "--epochs", "2", "--arch", "paper_dense", "--threads", "1", "--device", "cpu"]
FHN = ["--model", "fitzhugh_nagumo", "--free", "theta0,theta1", "--prior", "theta0=truncnormal:0.4:0.3:-0.2:1.0",
       "--noise", "ar1", "--noise-prior", "rho=uniform:0.66:0.92", "--noise-prior", "s=uniform:0.0377:0.096",
       "--duration", "200", "--rate", "5000"]
#: what every fit of a FitzHugh–Nagumo recording here needs: its voltage is dimensionless (|u| ≲ 2, read as mV)
FHN_FIT = ["--model", "fitzhugh_nagumo", "--free", "theta0,theta1", "--no-qc", "--allow-unphysiological",
           "--device", "cpu", "--option", "n_starts=1", "--option", "max_iter=5"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: one torch thread per module


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def one_line_error(rc: int, err: str) -> str:
    lines = err.strip().splitlines()
    assert rc == EXIT_BAD_INPUT and len(lines) == 1 and lines[0].startswith("error:"), (rc, err)
    return lines[0]


def quietly(*argv) -> tuple[int, str]:
    """``main(argv)`` with stdout captured (for module fixtures, which cannot take capsys)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main([str(a) for a in argv])
    return rc, buf.getvalue()


@pytest.fixture(scope="module")
def fhn(tmp_path_factory):
    """(estimator folder, its manifest, what train printed) of a tiny FHN estimator trained with -q."""
    folder = tmp_path_factory.mktemp("train") / "fhn"
    rc, out = quietly("train", *FHN, *TINY, "--seed", "1", "-q", "--out", folder)
    assert rc == 0
    return folder, json.loads((folder / "manifest.json").read_text()), out


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """Synthetic recordings: ML with two step sweeps, ML under a ramp, FHN at the estimator's and at another rate."""
    d = tmp_path_factory.mktemp("recordings")
    made = {"ml": ["--model", "morris_lecar", "--preset", "snlc", "--stimulus", "step:amp=60pA,start=20ms,stop=100ms",
                   "--stimulus", "step:amp=30pA,start=20ms,stop=100ms", "--duration", "120", "--rate", "5000"],
            "ramp": ["--model", "morris_lecar", "--stimulus", "ramp:start=10ms,stop=50ms,from=0pA,to=100pA",
                     "--duration", "60", "--rate", "5000"],
            "fhn": ["--model", "fitzhugh_nagumo", "--duration", "199.8", "--rate", "5000", "--noise",
                    "ar1:sigma=0.1,rho=0.8", "--seed", "4"],
            "fhn_2khz": ["--model", "fitzhugh_nagumo", "--duration", "199.5", "--rate", "2000"]}
    paths = {}
    for name, flags in made.items():
        paths[name] = d / f"{name}.nwb"
        assert quietly("simulate", *flags, "-q", "--out", paths[name])[0] == 0
    return paths


# ---------------------------------------------------------------------------------------------- train
def test_train_writes_an_estimator_with_the_requested_priors_protocol_and_noise(fhn):
    folder, m, out = fhn
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "weights.npz"]
    assert m["model"] == "fitzhugh_nagumo" and m["free_parameters"] == ["theta0", "theta1"]
    assert m["priors"]["theta0"] == {"kind": "truncated_normal", "low": -0.2, "high": 1.0, "mu": 0.4, "sigma": 0.3}
    assert m["priors"]["theta1"]["kind"] == "uniform"  # no --prior: uniform on the model's bounds
    assert m["protocol"] == {"duration_ms": 200.0, "sample_dt_ms": 0.2, "n_samples": 1000, "stimulus": None}
    assert m["noise"]["kind"] == "ar1" and m["noise"]["estimated"] is True
    assert m["noise"]["priors"] == {"rho": {"kind": "uniform", "low": 0.66, "high": 0.92},
                                    "s": {"kind": "uniform", "low": 0.0377, "high": 0.096}}
    assert m["architecture"]["name"] == "paper_dense" and m["training"]["n"] == 96 and m["training"]["seed"] == 1
    assert m["training"]["epochs"] == 2 and m["training"]["num_threads"] == 1
    # -q: the table (the result) is printed, the informational "wrote" line is not
    assert "R²" in out and all(name in out for name in ("theta0", "theta1", "rho", " s ")) and "wrote" not in out


@pytest.mark.parametrize("flag, text, example", [
    ("--prior", "theta0=gauss:0:1", "gCa=loguniform"), ("--prior", "theta0=uniform:1", "takes 2 numbers"),
    ("--prior", "theta0=uniform:a:b", "not all plain numbers"), ("--prior", "theta0=uniform:1:0", "low < high"),
    ("--prior", "theta0", "truncnormal:MU:SD:LO:HI"), ("--prior", "theta0=loguniform:0:1", "0 < low"),
    ("--noise-prior", "rho=truncnormal:0.8:0.1:0.6", "takes 4 numbers")])
def test_bad_prior_text_is_one_line_naming_the_flag_with_an_example(tmp_path, capsys, flag, text, example):
    rc, _, err = run(capsys, "train", "--model", "fitzhugh_nagumo", "--free", "theta0", flag, text, "--n", "96",
                     "--duration", "200", "--rate", "5000", "--out", tmp_path / "est")
    line = one_line_error(rc, err)
    assert flag in line and text in line and example in line and "e.g." in line
    assert not (tmp_path / "est").exists()


def test_the_out_folder_is_checked_before_any_work(fhn, tmp_path, capsys):
    folder, _, _ = fhn
    common = ["train", *FHN, *TINY]
    line = one_line_error(*run(capsys, *common, "--out", folder)[::2])
    assert "exists" in line and "--overwrite" in line
    line = one_line_error(*run(capsys, *common, "--out", tmp_path / "no_such_folder" / "est")[::2])
    assert "does not exist" in line
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("mine")
    line = one_line_error(*run(capsys, *common, "--overwrite", "--out", plain)[::2])
    assert "not an estimator folder" in line and (plain / "notes.txt").read_text() == "mine"
    # the flags themselves are TrainConfig's to check; its refusal names the flag to give
    line = one_line_error(*run(capsys, "train", "--model", "fitzhugh_nagumo", "--free", "theta0", "--noise", "white",
                               "--n", "96", "--duration", "200", "--rate", "5000", "--out", tmp_path / "e")[::2])
    assert "--noise-prior" in line and not (tmp_path / "e").exists()


def test_protocol_of_a_recording_with_a_step_is_taken_and_overwrite_replaces_an_estimator(fhn, recordings, tmp_path,
                                                                                         capsys):
    from neo_pinn_amortized import protocol_of_recording

    target = tmp_path / "ml_est"
    shutil.copytree(fhn[0], target)  # an estimator folder: --overwrite may replace it
    rc, out, _ = run(capsys, "train", "--model", "morris_lecar", "--preset", "snlc", "--free", "gCa",
                     "--prior", "gCa=loguniform:2:8", "--protocol", recordings["ml"], "--sweep", "1",
                     "--window", "10:60",
                     "--n", "96", "--epochs", "1", "--arch", "paper_dense", "--threads", "1", "--device", "cpu",
                     "--overwrite", "--out", target)
    assert rc == 0 and f"wrote {target}" in out and "step:amp=30pA,start=10ms" in out
    m = json.loads((target / "manifest.json").read_text())
    assert m["model"] == "morris_lecar" and m["noise"]["kind"] == "none"
    assert m["protocol"] == {"duration_ms": 50.2, "sample_dt_ms": 0.2, "n_samples": 251,
                             "stimulus": "step:amp=30pA,start=10ms"}
    assert protocol_of_recording(recordings["ml"], sweep=1, window=(10, 60)).to_dict() == m["protocol"]
    assert protocol_of_recording(recordings["ml"]).stimulus == "step:amp=60pA,start=20ms,stop=100ms"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ml_est"]  # no temporary or old folder left behind


def test_a_bad_protocol_is_one_line(recordings, tmp_path, capsys):
    garbage = tmp_path / "garbage.abf"
    garbage.write_bytes(b"\x00\x01not a recording" * 100)
    base = ["train", "--model", "morris_lecar", "--free", "gCa", "--n", "96", "--out", tmp_path / "est"]
    one_line_error(*run(capsys, *base, "--protocol", garbage)[::2])
    line = one_line_error(*run(capsys, *base, "--protocol", recordings["ramp"])[::2])
    assert "not a sum of steps" in line and "--window" in line
    line = one_line_error(*run(capsys, *base, "--protocol", recordings["ml"], "--duration", "100")[::2])
    assert "--duration" in line
    line = one_line_error(*run(capsys, *base, "--protocol", "step:amp=1pA,start=5ms", "--window", "0:10")[::2])
    assert "--window" in line
    line = one_line_error(*run(capsys, *base, "--protocol", "step:amp=1pA,start=5ms")[::2])
    assert "--duration" in line and "--rate" in line
    line = one_line_error(*run(capsys, *base, "--protocol", tmp_path / "missing.nwb")[::2])
    assert "neither an existing recording file nor a stimulus spec" in line
    assert not (tmp_path / "est").exists()


# ------------------------------------------------------------------------------------------- fit --init amortized:DIR
@pytest.mark.filterwarnings("ignore:lsq. the best start:RuntimeWarning")  # 5 iterations: far from converged
def test_fit_starts_lsq_from_the_amortized_estimate_and_records_it(fhn, recordings, tmp_path, capsys):
    folder = fhn[0]
    result = tmp_path / "r.json"
    rc, _, err = run(capsys, "fit", recordings["fhn"], "--backend", "lsq", *FHN_FIT, "--init", f"amortized:{folder}",
                     "--json", result, "-q")
    assert rc in (0, 3), err  # a 5-iteration fit may fail its verdict; the warm start is what is tested
    prov = json.loads(result.read_text())["provenance"]
    init = prov["initializer"]
    assert init["scheme"] == "amortized" and init["argument"] == str(folder) and init["plugin"] == "amortized"
    assert set(init["values"]) == {"theta0", "theta1"} and init["units"]["theta0"] == "dimensionless"
    assert prov["initial_guess"] == pytest.approx(init["used"])


def test_fit_init_of_an_estimator_for_another_protocol_or_model_is_one_line(fhn, recordings, capsys):
    folder = fhn[0]
    line = one_line_error(*run(capsys, "fit", recordings["fhn_2khz"], "--backend", "lsq", *FHN_FIT,
                               "--init", f"amortized:{folder}")[::2])
    assert "0.5 ms" in line and "1000 samples at 0.2 ms" in line
    line = one_line_error(*run(capsys, "fit", recordings["ml"], "--model", "morris_lecar", "--free", "gCa",
                               "--backend", "lsq", "--sweep", "0", "--init", f"amortized:{folder}")[::2])
    assert "trained for the model 'fitzhugh_nagumo'" in line
    line = one_line_error(*run(capsys, "fit", recordings["fhn"], "--backend", "lsq", *FHN_FIT,
                               "--init", f"amortized:{Path(folder).parent / 'none_here'}")[::2])
    assert "No estimator folder" in line and "neo-pinn train" in line


def test_protocol_of_a_real_recording(recordings_dir):
    """A real NWB step sweep: its protocol is one step at the file's sampling (float32 currents rounded)."""
    import warnings

    from neo_pinn_amortized import protocol_of_recording
    from neo_pinn_amortized.recorded_protocol import sweep_of_recording

    path = recordings_dir / "99111002.nwb"
    if not path.exists():
        pytest.skip("99111002.nwb is not among the shared recordings")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proto = protocol_of_recording(path, sweep=3)
        sweep = sweep_of_recording(path, sweep=3)
    assert proto.stimulus.startswith("step:amp=") and proto.n_samples == sweep.t.size
    assert proto.sample_dt_ms == pytest.approx(sweep.dt, rel=1e-6)


def test_train_sets_fixed_values_settling_and_fresh_noise_from_flags(tmp_path, capsys):
    folder = tmp_path / "ml"
    rc, out, err = run(capsys, "train", "--model", "morris_lecar", "--preset", "snlc", "--free", "gCa",
                       "--prior", "gCa=loguniform:2:8", "--set", "C=30", "--set", "EL=-50", "--settle", "0.1s",
                       "--noise", "white", "--noise-prior", "sigma=loguniform:0.5:2", "--protocol",
                       "step:amp=60pA,start=20ms,stop=80ms", "--duration", "100", "--rate", "5000", *TINY, "-q",
                       "--out", folder)
    assert rc == 0, err
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["fixed_values"] == {"C": 30.0, "EL": -50.0} and manifest["simulation"]["settle_ms"] == 100.0
    assert manifest["training"]["renoise"] is True  # on by default whenever there is noise
    rc, _, err = run(capsys, "train", "--model", "morris_lecar", "--free", "gCa", "--set", "C=abc", "--duration",
                     "100", "--rate", "5000", *TINY, "--out", tmp_path / "bad")
    assert "--set 'C=abc'" in one_line_error(rc, err)
    rc, _, err = run(capsys, "train", "--model", "morris_lecar", "--free", "gCa", "--set", "gCa=3", "--duration",
                     "100", "--rate", "5000", *TINY, "--out", tmp_path / "bad")
    assert "prior and a fixed value" in one_line_error(rc, err)

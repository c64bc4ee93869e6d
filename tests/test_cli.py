"""The neo-pinn command line: a stable contract for scripts and benchmarks."""

from __future__ import annotations

import json

import pytest

from neo_pinn.cli import EXIT_BAD_INPUT, main


def run(capsys, *argv):
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture(scope="module")
def ml_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "ml.nwb"
    rc = main(["simulate", "--model", "morris_lecar", "--preset", "snlc", "--stimulus",
               "step:amp=60pA,start=20ms,stop=400ms", "--duration", "400", "--rate", "5000", "--noise",
               "white:sigma=1mV", "--seed", "3", "--out", str(path)])
    assert rc == 0
    return path


def test_simulate_writes_nwb_with_sidecar_and_info_reads_it(ml_file, capsys):
    side = json.loads(ml_file.with_name(ml_file.name + ".json").read_text())
    assert side["model"] == "morris_lecar" and side["parameters"]["gCa"] == 4.0
    assert side["command"].startswith("neo-pinn simulate")
    rc, out, _ = run(capsys, "info", str(ml_file), "--json")
    assert rc == 0
    d = json.loads(out)
    assert d["n_sweeps"] == 1 and d["recording_mode"] == "current_clamp"
    assert d["sweeps"][0]["stimulus_source"] == "nwb-stimulus"
    amps = [e["amplitude_pA"] for e in d["sweeps"][0]["stimulus_epochs"]]
    assert max(amps) == pytest.approx(60.0, abs=0.5)
    assert d["total_spikes"] >= 5


def test_simulate_refuses_to_overwrite(ml_file, capsys):
    rc, _, err = run(capsys, "simulate", "--model", "morris_lecar", "--duration", "200", "--out", str(ml_file))
    assert rc == EXIT_BAD_INPUT and "overwrite" in err


def test_simulate_abf_roundtrip(tmp_path, capsys):
    out = tmp_path / "x.abf"
    rc, _, _ = run(capsys, "simulate", "--model", "hodgkin_huxley", "--duration", "100", "--rate", "20000",
                   "--out", str(out))
    assert rc == 0
    rc, text, _ = run(capsys, "info", str(out), "--json")
    d = json.loads(text)
    assert d["n_sweeps"] == 1 and d["sweeps"][0]["spike_count"] >= 5  # HH tonic at 10 pA: 68 Hz


def test_plugins_lists_builtins(capsys):
    rc, out, _ = run(capsys, "plugins", "--json")
    d = json.loads(out)
    assert rc == 0 and d["models"]["morris_lecar"] == "core_models" and "lsq" in d["backends"]


def test_errors_are_one_line_with_exit_4(tmp_path, capsys):
    rc, _, err = run(capsys, "info", str(tmp_path / "missing.abf"))
    assert rc == EXIT_BAD_INPUT and err.startswith("error:") and len(err.splitlines()) == 1
    rc, _, err = run(capsys, "fit", str(tmp_path / "missing.abf"), "--model", "morris_lecar", "--backend", "lsq",
                     "--free", "gCa")
    assert rc == EXIT_BAD_INPUT and err.startswith("error:")
    rc, _, err = run(capsys, "simulate", "--model", "nope", "--duration", "10", "--out", str(tmp_path / "a.nwb"))
    assert rc == EXIT_BAD_INPUT and "morris_lecar" in err


def test_fit_writes_json_report_and_attached_nwb(ml_file, tmp_path, capsys):
    js, html, nwb = tmp_path / "r.json", tmp_path / "r.html", tmp_path / "fitted.nwb"
    rc, out, err = run(capsys, "fit", str(ml_file), "--model", "morris_lecar", "--preset", "snlc", "--backend", "lsq",
                       "--free", "gCa,phi", "--init", "gCa=3,phi=0.05", "--window", "0:200", "--seed", "1",
                       "--json", str(js), "--report", str(html), "--out", str(nwb), "--quiet")
    assert rc == 0, err
    d = json.loads(js.read_text())
    assert set(d) >= {"model", "backend", "parameters", "metrics", "provenance"}
    assert d["parameters"]["gCa"]["unit"] == "nS" and d["parameters"]["gCa"]["true_value"] == 4.0
    assert abs(d["parameters"]["gCa"]["value"] - 4.0) / 4.0 < 0.05
    assert "<img" in html.read_text()
    from neo_pinn.io.nwb_results import read_result_nwb

    back = read_result_nwb(nwb)  # --out .nwb: NWB-native results (processing/icephys), not Neo-attached signals
    assert back.parameters["gCa"].value == d["parameters"]["gCa"]["value"]


@pytest.mark.recordings
def test_fit_refuses_voltage_clamp(recordings_dir, capsys):
    rc, _, err = run(capsys, "fit", str(recordings_dir / "171116sh_0013.abf"), "--model", "morris_lecar",
                     "--backend", "lsq", "--free", "gCa")
    assert rc == EXIT_BAD_INPUT and "voltage-clamp" in err


def test_fit_without_free_estimates_the_models_default_set(capsys):
    from neo_pinn.api import get_model
    from neo_pinn.cli import free_parameters
    from neo_pinn.errors import ConfigurationError

    ml = get_model("morris_lecar")
    assert free_parameters(None, ml) == list(ml.default_free) and "gCa" in ml.default_free
    assert "default set" in capsys.readouterr().err
    assert free_parameters("gK, phi", ml) == ["gK", "phi"]
    with pytest.raises(ConfigurationError, match="--free"):
        free_parameters("", ml)  # given but empty: not silently replaced by the default

def test_every_models_default_free_names_its_own_parameters():
    from neo_pinn.api import get_model, list_models

    for name in list_models():
        model = get_model(name)
        assert set(model.default_free) <= set(model.param_names), name


def test_option_values_may_be_json_with_commas():
    from neo_pinn.cli import _options
    from neo_pinn.errors import ConfigurationError

    got = _options(['refine_options={"max_iter":8,"n_starts":2}', "pop_size=32,n_gen=10", "trace=rmse",
                    "starts=[1,2]"])
    assert got == {"refine_options": {"max_iter": 8, "n_starts": 2}, "pop_size": 32, "n_gen": 10,
                   "trace": "rmse", "starts": [1, 2]}
    with pytest.raises(ConfigurationError, match="name=value"):
        _options(["pop_size=32,10"])


def test_cli_fit_and_estimate_are_one_pipeline(ml_file, tmp_path, capsys):
    """`neo-pinn fit` runs neo_pinn.estimate: same defaults (the model's default_free without --free), same result."""
    import neo_pinn

    out = tmp_path / "fit.json"
    rc, _, err = run(capsys, "fit", str(ml_file), "--model", "morris_lecar", "--preset", "snlc", "--backend", "lsq",
                     "--window", "20:140", "--noise", "ar1", "--option", "n_starts=1", "--option", "max_iter=3",
                     "--json", str(out))
    cli = neo_pinn.EstimationResult.from_json(out)
    # three iterations are not a fit: the verdict may say so (exit 3), the pipeline is the same either way
    assert rc == (3 if cli.failed else 0) and "default set" in err
    api = neo_pinn.estimate(ml_file, "morris_lecar", "lsq", preset="snlc", window=(20, 140), noise="ar1",
                            backend_options={"n_starts": 1, "max_iter": 3})
    model = neo_pinn.get_model("morris_lecar")
    assert {k for k, p in api.parameters.items() if p.free} == set(model.default_free)
    assert cli.values == api.values and set(api.noise) == {"sigma", "rho"}
    assert cli.status == api.status and cli.verdict["checks"] == api.verdict["checks"]

"""Trust at the boundary: every output path of `fit` and `report` is checked before any work (inputs are never
written), and sweep selections are whole numbers listed once."""

from __future__ import annotations

import json

import pytest

from neo_pinn.cli import EXIT_BAD_INPUT, main
from neo_pinn.errors import OutputPathError
from neo_pinn.storage import check_outputs, sha256_of


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    path = tmp_path_factory.mktemp("outputs") / "cell.nwb"
    assert main(["simulate", "--model", "morris_lecar", "--preset", "snlc", "--stimulus",
                 "step:amp=60pA,start=20ms,stop=150ms", "--duration", "150", "--rate", "5000", "--out", str(path)]) == 0
    return path


@pytest.fixture()
def no_fit(monkeypatch):
    """Any fit started would fail the test: the checks must come first."""
    import neo_pinn.api

    def refuse(*args, **kwargs):
        raise AssertionError("a fit started before the outputs were checked")

    monkeypatch.setattr(neo_pinn.api, "estimate", refuse)


FIT = ["--model", "morris_lecar", "--preset", "snlc", "--backend", "lsq", "--free", "gCa", "--quiet"]


@pytest.mark.parametrize("flag", ["--json", "--report", "--out"])
def test_no_output_flag_may_name_the_input(recording, flag, no_fit, capsys):
    before = sha256_of(recording)
    rc = main(["fit", str(recording), *FIT, flag, str(recording), "--overwrite"])
    assert rc == EXIT_BAD_INPUT and "is an input" in capsys.readouterr().err
    assert sha256_of(recording) == before


@pytest.mark.parametrize("flag", ["--json", "--report", "--out"])
def test_an_existing_output_is_refused_before_the_fit_naming_the_flag(recording, flag, tmp_path, no_fit, capsys):
    target = tmp_path / "existing.txt"
    target.write_text("keep me")
    rc = main(["fit", str(recording), *FIT, flag, str(target)])
    err = capsys.readouterr().err
    assert rc == EXIT_BAD_INPUT and "exists" in err and "--overwrite" in err and "overwrite=True" not in err
    assert target.read_text() == "keep me"


def test_two_outputs_naming_one_file_are_refused(recording, tmp_path, no_fit, capsys):
    same = tmp_path / "both"
    rc = main(["fit", str(recording), *FIT, "--json", str(same), "--report", str(same)])
    assert rc == EXIT_BAD_INPUT and "both name" in capsys.readouterr().err and not same.exists()


def test_a_missing_or_unwritable_folder_is_refused_before_the_fit(recording, tmp_path, no_fit, capsys):
    rc = main(["fit", str(recording), *FIT, "--json", str(tmp_path / "nowhere" / "r.json")])
    assert rc == EXIT_BAD_INPUT and "does not exist" in capsys.readouterr().err
    with pytest.raises(OutputPathError, match="folder"):
        check_outputs({"--report": tmp_path}, [])


def test_report_never_replaces_its_result_and_asks_before_replacing_a_report(tmp_path, capsys):
    result = tmp_path / "r.json"
    result.write_text(json.dumps({"not": "a result"}))
    rc = main(["report", str(result), "--out", str(result)])
    assert rc == EXIT_BAD_INPUT and "is an input" in capsys.readouterr().err
    assert json.loads(result.read_text()) == {"not": "a result"}
    old = tmp_path / "old.html"
    old.write_text("old report")
    rc = main(["report", str(result), "--out", str(old)])
    assert rc == EXIT_BAD_INPUT and "--overwrite" in capsys.readouterr().err and old.read_text() == "old report"


@pytest.mark.parametrize("sweeps, match", [((0, 0), "listed twice"), ([1, -1], "listed twice"), (True, "whole numbers"),
                                           (1.5, "whole numbers"), ([0, 0.5], "whole numbers")])
def test_sweeps_are_whole_numbers_listed_once(sweeps, match):
    import neo_pinn
    from neo_pinn.errors import ConfigurationError

    rec = neo_pinn.load_recording(str(__import__("pathlib").Path(__file__).resolve().parents[1] / "sample_data"
                                      / "hh_steps.nwb"))
    with pytest.raises(ConfigurationError, match=match):
        rec.traces(sweeps=sweeps)
    assert [tr.sweep for tr in rec.traces(sweeps=[1, 0])] == [1, 0]

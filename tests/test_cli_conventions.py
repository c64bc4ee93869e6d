"""The command line's conventions: --help without heavy imports, documented exit codes, -q and help text on every
subcommand, `fit --json -`, one-line errors with exit status 4 for bad input (never a traceback), and `info`
labelling what it shows (channels, one unit per column, voltage clamp, non-finite samples)."""

from __future__ import annotations

import argparse
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import neo_pinn
import neo_pinn.cli as cli
from neo_pinn.cli import (EXIT_BAD_INPUT, EXIT_FIT_FAILED, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED,
                          EXIT_USAGE, build_parser, main)

HEAVY = ("torch", "scipy", "neo", "pynwb", "matplotlib")
#: the built-in plugin packages: building the parser may import their light entry-point modules (``plugin``, and
#: the ``cli_*`` module of a command they add), never a backend
PLUGIN_PACKAGES = ("neo_pinn_lsq", "neo_pinn_ga", "neo_pinn_pinn", "neo_pinn_amortized")


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def one_line_error(rc: int, err: str, code: int = EXIT_BAD_INPUT) -> str:
    lines = err.strip().splitlines()
    assert rc == code and len(lines) == 1 and lines[0].startswith("error:"), (rc, err)
    assert "Traceback" not in err
    return lines[0]


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


# ---------------------------------------------------------------------- fast --help, lazy package
def test_help_and_the_parser_import_nothing_heavy():
    code = ("import contextlib, io, sys\n"
            "import neo_pinn, neo_pinn.cli as cli\n"
            "p = cli.build_parser()\n"
            "for name in ['', *cli.build_parser()._subparsers._group_actions[0].choices]:\n"
            "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            "        p.parse_args([name, '--help'] if name else ['--help'])\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {PLUGIN_PACKAGES!r} and '.' in m\n"
            "             and not (m.endswith('.plugin') or m.split('.')[-1].startswith('cli_'))))\n"
            "print(sorted(p._subparsers._group_actions[0].choices))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    heavy, backends, commands = out.stdout.strip().splitlines()
    assert heavy == "[]" and backends == "[]"
    assert "train" in commands  # a plugin's command is in the parser (and its --help was shown above)


def test_the_package_names_are_lazy_but_all_there():
    assert neo_pinn.__version__ and "__getattr__" in vars(neo_pinn)
    from neo_pinn import EstimationResult, NeoPinnError, Trace, estimate

    assert callable(estimate) and issubclass(NeoPinnError, Exception) and EstimationResult.from_json and Trace

    for name in neo_pinn.__all__:
        assert getattr(neo_pinn, name) is not None, name
    assert set(neo_pinn.__all__) <= set(dir(neo_pinn))
    with pytest.raises(AttributeError, match="no_such_name"):
        neo_pinn.no_such_name  # noqa: B018


# ---------------------------------------------------------------------- exit codes, -q, help text
def test_exit_codes_are_constants_documented_in_help_and_docstring():
    assert (EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_FIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED,
            EXIT_TERMINATED) == (0, 1, 2, 3, 4, 130, 143)
    parsers = {"neo-pinn": build_parser(), **subcommands()}
    for name, parser in parsers.items():
        for code in ("0", "1", "2", "3", "4", "130", "143"):
            assert f"\n  {code} " in parser.format_help(), (name, code)
    for code in ("130", "143", "NEO_PINN_DEBUG"):
        assert code in cli.__doc__


def test_every_subcommand_has_quiet_and_every_option_a_help_text():
    for name, parser in subcommands().items():
        flags = {s for a in parser._actions for s in a.option_strings}
        assert {"-q", "--quiet"} <= flags, name
        for action in parser._actions:
            assert action.help and action.help.strip(), (name, action.dest)


def test_a_usage_error_exits_2():
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--no-such-flag"])
    assert exc.value.code == EXIT_USAGE


def test_an_internal_error_is_one_line_saying_it_is_a_bug_and_the_traceback_on_request(monkeypatch, capsys):
    import neo_pinn.plugins

    def broken():
        raise RuntimeError("boom")

    monkeypatch.setattr(neo_pinn.plugins, "get_state", broken)
    monkeypatch.delenv("NEO_PINN_DEBUG", raising=False)
    rc, _, err = run(capsys, "plugins")
    assert rc == EXIT_INTERNAL and len(err.strip().splitlines()) == 1
    assert "bug" in err and "RuntimeError: boom" in err and "Traceback" not in err
    monkeypatch.setenv("NEO_PINN_DEBUG", "1")
    rc, _, err = run(capsys, "plugins")
    assert rc == EXIT_INTERNAL and "Traceback" in err


def test_os_errors_about_files_exit_4_in_one_line(monkeypatch, capsys):
    import neo_pinn.plugins

    def denied():
        raise PermissionError(13, "Permission denied", "/some/file")

    monkeypatch.setattr(neo_pinn.plugins, "get_state", denied)
    line = one_line_error(*run(capsys, "plugins")[::2])
    assert "Permission denied" in line and "/some/file" in line


# ---------------------------------------------------------------------- bad values: exit 4, one line
@pytest.mark.parametrize("flags, match", [
    (["--duration", "100", "--rate", "0"], "--rate"), (["--duration", "100", "--rate", "nan"], "--rate"),
    (["--duration", "100", "--rate", "-5"], "--rate"), (["--duration", "inf"], "--duration"),
    (["--duration", "0"], "--duration"), (["--duration", "100", "--seed", "-1"], "--seed"),
    (["--duration", "1e8"], "GiB"), (["--duration", "1000", "--rate", "1e9"], "GiB")])
def test_simulate_refuses_impossible_values_at_once(tmp_path, capsys, flags, match):
    rc, _, err = run(capsys, "simulate", "--model", "morris_lecar", "--out", tmp_path / "x.nwb", *flags)
    assert match in one_line_error(rc, err) and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("device", ["tpu", "mps", "garbage", "cuda:x", "cuda", "cuda:0"])
def test_device_is_auto_cpu_cuda_or_cuda_n_on_every_subcommand_that_takes_it(tmp_path, capsys, device):
    import torch

    if device.startswith("cuda") and device != "cuda:x" and torch.cuda.is_available():
        pytest.skip("CUDA is present here")
    dummy = tmp_path / "cell.abf"
    dummy.write_bytes(b"not read: the device is checked first")
    takes_device = [name for name, p in subcommands().items()
                    if any("--device" in a.option_strings for a in p._actions)]
    assert takes_device == ["fit", "train"]  # train: the amortized plugin's command
    rc, _, err = run(capsys, "fit", dummy, "--model", "morris_lecar", "--backend", "lsq", "--free", "gCa",
                     "--device", device)
    assert ("CUDA" if device in ("cuda", "cuda:0") else "auto, cpu, cuda") in one_line_error(rc, err)
    rc, _, err = run(capsys, "train", "--model", "fitzhugh_nagumo", "--free", "theta0", "--n", "96", "--duration",
                     "200", "--rate", "5000", "--device", device, "--out", tmp_path / "est")
    line = one_line_error(rc, err)  # refused before any simulation
    assert "CUDA" in line if device in ("cuda", "cuda:0") else all(f"'{d}'" in line for d in ("auto", "cpu", "cuda"))
    assert not (tmp_path / "est").exists()


def test_report_refuses_whatever_is_not_a_result(tmp_path, capsys):
    bad = {"garbage.json": b"\x00\xffgarbage", "truncated.json": b'{"model": "morris_lecar", "param',
           "other.json": b'{"a": 1}', "list.json": b"[1, 2]"}
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "folder").mkdir()
    for name, why in [("garbage.json", "not readable JSON"), ("truncated.json", "not readable JSON"),
                      ("other.json", "no fit result"), ("list.json", "not an object"),
                      ("folder", "not a regular file"), ("missing.json", "does not exist")]:
        rc, _, err = run(capsys, "report", tmp_path / name, "--out", tmp_path / f"{name}.html")
        assert why in one_line_error(rc, err), name
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*bad, "folder"])


def test_info_and_fit_refuse_a_fifo_a_folder_and_a_device_file(tmp_path, capsys):
    fifo = tmp_path / "cell.abf"
    os.mkfifo(fifo)  # opening it would block forever
    for path, kind in [(fifo, "FIFO"), (tmp_path, "folder"), (Path(os.devnull), "device")]:
        assert stat.S_ISREG(os.stat(path).st_mode) is False
        for argv in (["info", path], ["fit", path, "--model", "morris_lecar", "--backend", "lsq"]):
            line = one_line_error(*run(capsys, *argv)[::2])
            assert "not a regular file" in line and kind in line


@pytest.fixture(scope="module")
def abf_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("conv") / "cell.abf"
    assert main(["simulate", "--model", "morris_lecar", "--preset", "snlc", "--duration", "200", "--rate", "10000",
                 "--out", str(path), "-q"]) == 0
    return path


def test_a_malformed_sidecar_is_ignored_with_a_one_line_warning(abf_file, tmp_path, capsys):
    data = tmp_path / "cell.abf"
    data.write_bytes(abf_file.read_bytes())
    side = tmp_path / "cell.abf.json"
    for text in ['{"model": "morris_lecar", "parameters": ', "[1]", b"\xff\xfe"]:
        side.write_bytes(text if isinstance(text, bytes) else text.encode())
        assert cli.read_sidecar(data) == {} and cli._truth_for(data, "morris_lecar") == {}
        err = capsys.readouterr().err
        assert err.startswith("warning: ignoring the sidecar") and len(err.strip().splitlines()) == 2
    side.write_text('{"model": "morris_lecar", "parameters": {"gCa": "four"}}')
    assert cli._truth_for(data, "morris_lecar") == {} and "not all finite" in capsys.readouterr().err
    side.unlink()
    side.mkdir()
    assert cli.read_sidecar(data) == {} and "not a regular file" in capsys.readouterr().err
    assert json.loads((abf_file.parent / "cell.abf.json").read_text())["model"] == "morris_lecar"


# ---------------------------------------------------------------------- fit: --json -, -q, the override flag
FIT = ["--model", "morris_lecar", "--preset", "snlc", "--backend", "lsq", "--free", "gCa", "--init", "gCa=3",
       "--stimulus", "const:amp=100pA", "--window", "0:100", "--option", "n_starts=1", "--option", "max_iter=2"]


def test_fit_json_dash_writes_only_the_json_to_stdout(abf_file, tmp_path, capsys):
    report = tmp_path / "r.html"
    rc, out, err = run(capsys, "fit", abf_file, *FIT, "--json", "-", "--report", report)
    assert rc in (0, EXIT_FIT_FAILED), err
    assert json.loads(out)["model"] == "morris_lecar"         # stdout is one JSON document and nothing else
    assert f"wrote {report}" in err and "fitted with lsq" in err and report.exists() and not Path("-").exists()
    rc, out, err = run(capsys, "fit", abf_file, *FIT, "--json", "-", "-q")
    assert json.loads(out)["backend"] == "lsq" and "fitted with lsq" not in err and "wrote" not in err


def test_allow_unphysiological_is_passed_only_when_given(abf_file, monkeypatch, capsys):
    import neo_pinn.api
    from neo_pinn.errors import ConfigurationError

    seen = []

    def fake(*args, **kwargs):
        seen.append(kwargs.get("allow_unphysiological", "absent"))
        raise ConfigurationError("stop here")

    monkeypatch.setattr(neo_pinn.api, "estimate", fake)
    assert run(capsys, "fit", abf_file, *FIT)[0] == EXIT_BAD_INPUT
    assert run(capsys, "fit", abf_file, *FIT, "--allow-unphysiological")[0] == EXIT_BAD_INPUT
    assert seen == ["absent", True]
    assert "physiological range" in subcommands()["fit"].format_help()


# ---------------------------------------------------------------------- info says what things are
def test_info_does_not_count_an_infinite_sample_as_a_spike(tmp_path, capsys):
    import neo
    import numpy as np
    import quantities as pq

    t = np.arange(20000) / 10.0
    v = -70.0 + 0.2 * np.random.default_rng(0).standard_normal(t.size)
    v[5000] = np.inf  # a recorder's overflow
    i = np.where((t >= 100) & (t < 1500), 50.0, 0.0)
    block, seg = neo.Block(), neo.Segment()
    block.segments.append(seg)
    seg.analogsignals += [neo.AnalogSignal(v, units="mV", sampling_rate=10 * pq.kHz, name="Vm"),
                          neo.AnalogSignal(i, units="pA", sampling_rate=10 * pq.kHz, name="Iinj")]
    path = tmp_path / "inf.nix"
    with neo.io.NixIO(str(path), mode="ow") as io:
        io.write_block(block)
    rc, out, _ = run(capsys, "info", path, "--json")
    d = json.loads(out)
    assert rc == 0 and d["total_spikes"] == 0 and d["sweeps"][0]["spike_count"] == 0
    assert any("1 NaN or infinite sample" in w for w in d["warnings"])
    rc, out, _ = run(capsys, "info", path)
    assert "injected current (stimulus)" in out and "membrane voltage (used)" in out


def sweep_rows(out: str) -> list[str]:
    """The header and rows of info's sweep table (sweep number, then the sampling rate with one decimal)."""
    import re

    lines = out.splitlines()
    start = next(k for k, line in enumerate(lines) if line.split()[:1] == ["sweep"])
    rows = [lines[start]]
    for line in lines[start + 1:]:
        if not re.match(r"\s+\d+\s+\d+\.\d\s", line):
            break
        rows.append(line)
    return rows


@pytest.mark.recordings
def test_info_labels_a_rejected_mv_channel_by_what_it_is(recordings_dir, capsys):
    rc, out, _ = run(capsys, "info", recordings_dir / "190619B_0003.abf")
    chans = {line.split()[1] + " " + line.split()[2]: line for line in out.splitlines()
             if line.startswith("  channel ")}
    assert rc == 0 and "membrane voltage (used)" in chans["IN 0"]
    assert "not used" in chans["IN 2"] and not chans["IN 2"].rstrip().endswith("voltage")  # was labelled "voltage"


@pytest.mark.recordings
def test_info_shows_one_current_unit_per_column(recordings_dir, capsys):
    rc, out, _ = run(capsys, "info", recordings_dir / "99111002.nwb")
    rows = sweep_rows(out)
    assert rc == 0 and rows[0].rstrip().endswith("stimulus (nA)") and len(rows) == 17
    assert not any(unit in row for row in rows[1:] for unit in ("pA", "nA"))
    assert "0.031–0.431 s: -2;" in rows[1] and "0.031–0.431 s: -1;" in rows[6]  # -2 nA and -1000 pA, both in nA


@pytest.mark.recordings
def test_info_of_a_voltage_clamp_file_names_its_stimulus(recordings_dir, capsys):
    rc, out, _ = run(capsys, "info", recordings_dir / "171116sh_0013.abf")
    rows = sweep_rows(out)
    assert rc == 0 and "none: " not in out and all("voltage clamp" in row for row in rows[1:])
    assert "clamp current (recorded)" in out

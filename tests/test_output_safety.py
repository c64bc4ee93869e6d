"""Nothing lost: every output of a run is checked before the work, locked against a second process, written to a
hidden temporary file and renamed with the run's other outputs at the end (all or none); temporary files and locks
are removed on errors, Ctrl-C and SIGTERM, and those of a killed run by the next run writing the same output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from neo_pinn.cli import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_TERMINATED, main
from neo_pinn.errors import OutputPathError
from neo_pinn.storage import (LOCK_SUFFIX, OutputLock, RunOutputs, final_path_of, remove_stale_temps,
                              temp_path_for)

SIM = ["simulate", "--model", "morris_lecar", "--preset", "snlc", "--duration", "20", "--rate", "5000", "-q"]


def dead_pid() -> int:
    """The id of a process that has just ended."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------------- all or none
def test_all_outputs_appear_together_and_old_files_stay_when_one_rename_fails(tmp_path, monkeypatch):
    a, b = tmp_path / "a.json", tmp_path / "b.html"
    b.write_text("old report")
    real = os.replace

    def refuse_b(src, dst):
        if Path(dst) == b and ".part" in Path(src).name:
            raise PermissionError(13, "Permission denied", str(dst))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", refuse_b)
    with pytest.raises(PermissionError):
        with RunOutputs({"--a": a, "--b": b}, [], overwrite=True) as run:
            run.temp("--a").write_text("new a")
            run.temp("--b").write_text("new b")
    assert names(tmp_path) == ["b.html"] and b.read_text() == "old report"  # a was rolled back, b untouched
    monkeypatch.setattr(os, "replace", real)
    with RunOutputs({"--a": a, "--b": b}, [], overwrite=True) as run:
        run.temp("--a").write_text("new a")
        run.temp("--b").write_text("new b")
        assert not a.exists() and b.read_text() == "old report"      # nothing appears before the end
    assert names(tmp_path) == ["a.json", "b.html"] and a.read_text() == "new a" and b.read_text() == "new b"


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt])
def test_an_error_or_ctrl_c_removes_temporary_files_and_locks(tmp_path, error):
    target = tmp_path / "r.json"
    with pytest.raises(error):
        with RunOutputs({"--json": target}, []) as run:
            run.temp("--json").write_text("half")
            assert (tmp_path / f".r.json{LOCK_SUFFIX}").read_text().strip() == str(os.getpid())
            raise error()
    assert names(tmp_path) == []


def test_temporary_names_keep_the_suffix_and_map_back_to_their_target(tmp_path):
    tmp = temp_path_for(tmp_path / "fit.nwb")
    assert tmp.parent == tmp_path and tmp.name.startswith(".fit.nwb.") and tmp.suffix == ".nwb"
    assert str(os.getpid()) in tmp.name and final_path_of(tmp) == tmp_path / "fit.nwb"
    assert final_path_of(tmp_path / "plain.nwb") == tmp_path / "plain.nwb"


# ---------------------------------------------------------------------- a second process, a killed process
def test_a_second_writer_of_the_same_output_is_refused_naming_the_holder(tmp_path, capsys):
    out = tmp_path / "x.nwb"
    with OutputLock(out, "--out"):
        rc = main([*SIM, "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == EXIT_BAD_INPUT and f"pid {os.getpid()}" in err and len(err.splitlines()) == 1
    assert names(tmp_path) == []  # the lock is gone with its holder, nothing was written


def test_a_lock_held_by_another_live_process_is_respected(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = tmp_path / f".x.nwb{LOCK_SUFFIX}"
        lock.write_text(f"{holder.pid}\n")
        with pytest.raises(OutputPathError, match=f"pid {holder.pid}"):
            with RunOutputs({"--out": tmp_path / "x.nwb"}, []):
                pass
        assert lock.read_text().strip() == str(holder.pid)  # not taken over, not removed
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_runs_lock_and_temporary_files_are_removed_by_the_next_run(tmp_path, capsys):
    pid, out = dead_pid(), tmp_path / "x.nwb"
    (tmp_path / f".x.nwb{LOCK_SUFFIX}").write_text(f"{pid}\n")
    (tmp_path / f".x.nwb.neo-pinn-{pid}-0badc0de.part.nwb").write_text("half written")
    (tmp_path / f"..x.nwb.neo-pinn-{pid}-0badc0de.part.nwb.neo-pinn-{pid}-00c0ffee.part.nwb").write_text("half")
    other = tmp_path / f".y.nwb.neo-pinn-{pid}-0badc0de.part.nwb"   # another output's: not ours to remove
    other.write_text("y")
    assert main([*SIM, "--out", str(out)]) == 0, capsys.readouterr().err
    assert names(tmp_path) == sorted([other.name, "x.nwb", "x.nwb.json"])
    assert remove_stale_temps(tmp_path / "y.nwb") == [other]


# ---------------------------------------------------------------------- outputs checked before any work
def test_every_output_of_simulate_is_checked_before_the_simulation(tmp_path, capsys):
    out = tmp_path / "x.nwb"
    states = tmp_path / "states.json"
    states.write_text("keep")
    rc = main([*SIM, "--out", str(out), "--states", str(states)])
    assert rc == EXIT_BAD_INPUT and "--states" in capsys.readouterr().err
    rc = main([*SIM, "--out", str(out), "--states", str(out)])
    assert rc == EXIT_BAD_INPUT and "both name" in capsys.readouterr().err
    (tmp_path / "x.nwb.json").write_text("an older sidecar")
    rc = main([*SIM, "--out", str(out)])
    assert rc == EXIT_BAD_INPUT and "sidecar" in capsys.readouterr().err
    assert names(tmp_path) == ["states.json", "x.nwb.json"] and states.read_text() == "keep"
    rc = main([*SIM, "--out", str(out), "--states", str(states), "--overwrite"])
    assert rc == 0 and capsys.readouterr().out == ""  # -q: nothing on stdout
    assert names(tmp_path) == ["states.json", "x.nwb", "x.nwb.json"] and states.read_text().startswith('{"t_ms"')


def test_demo_refuses_a_file_as_its_folder_and_its_old_outputs_without_overwrite(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("keep")
    assert main(["demo", "--out", str(afile)]) == EXIT_BAD_INPUT
    assert "is a file" in capsys.readouterr().err and afile.read_text() == "keep"
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "report.html").write_text("old")
    assert main(["demo", "--out", str(tmp_path / "d"), "-q"]) == EXIT_BAD_INPUT
    assert "--overwrite" in capsys.readouterr().err and names(tmp_path / "d") == ["report.html"]


@pytest.fixture()
def no_fit(monkeypatch):
    import neo_pinn.api

    def refuse(*args, **kwargs):
        raise AssertionError("a fit started before the outputs were checked")

    monkeypatch.setattr(neo_pinn.api, "estimate", refuse)


def _read_only_folder_is_refused(tmp_path, capsys):
    """`fit --json ro/r.json` with the folder ``ro`` (made by the caller) not writable."""
    rec, ro = tmp_path / "cell.nwb", tmp_path / "ro"
    assert main([*SIM, "--out", str(rec)]) == 0
    rc = main(["fit", str(rec), "--model", "morris_lecar", "--backend", "lsq", "--free", "gCa", "-q",
               "--json", str(ro / "r.json")])
    err = capsys.readouterr().err
    assert rc == EXIT_BAD_INPUT and "not writable" in err and names(ro) == []


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_folder_is_refused_before_the_fit(tmp_path, no_fit, capsys):
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    try:
        _read_only_folder_is_refused(tmp_path, capsys)
    finally:
        (tmp_path / "ro").chmod(0o755)


def test_an_unwritable_output_folder_is_refused_before_the_fit_even_as_root(tmp_path, no_fit, capsys, monkeypatch):
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p).name != "ro" and real(p, mode, **kw))
    (tmp_path / "ro").mkdir()
    _read_only_folder_is_refused(tmp_path, capsys)


# ---------------------------------------------------------------------- signals, in a real process
# SIGINT raises KeyboardInterrupt even where the test runner's shell started us with SIGINT ignored
RUN_CLI = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
           "from neo_pinn.cli import main; sys.exit(main())")
#: a writer that leaves half a file and waits: the signal arrives while a temporary file exists
SLOW_WRITER = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
import neo_pinn.io.synthetic_nwb as w
from neo_pinn.cli import main

def slow(path, traces, **kwargs):
    open(path, "w").write("half written")
    time.sleep(120)

w.write_icephys_nwb = slow
sys.exit(main())
"""


def _start(code: str, args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(proc: subprocess.Popen, folder: Path, pattern: str, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while not list(folder.glob(pattern)):
        if proc.poll() is not None or time.monotonic() > end:
            proc.kill()
            pytest.fail(f"{pattern} never appeared: {proc.communicate()[1][-2000:]}")
        time.sleep(0.05)


@pytest.mark.parametrize("sig, code, line", [(signal.SIGINT, EXIT_INTERRUPTED, "neo-pinn: interrupted"),
                                             (signal.SIGTERM, EXIT_TERMINATED, "neo-pinn: terminated")])
def test_a_signal_while_writing_leaves_no_file_and_says_one_line(tmp_path, sig, code, line):
    proc = _start(SLOW_WRITER, [*SIM, "--out", "x.nwb"], tmp_path)
    _wait_for(proc, tmp_path, ".x.nwb.neo-pinn-*.part.nwb")
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code and err.strip().splitlines() == [line]
    assert names(tmp_path) == []  # no output, no sidecar, no temporary file, no lock


def test_ctrl_c_during_a_long_simulation_stops_it_at_once(tmp_path):
    # 40 s of simulated time at a 25 µs step: minutes of work, interrupted as soon as it has started
    proc = _start(RUN_CLI, ["simulate", "--model", "morris_lecar", "--duration", "40000", "--rate", "1000",
                            "--out", "long.nwb", "--states", "long_states.json"], tmp_path)
    _wait_for(proc, tmp_path, f".long.nwb{LOCK_SUFFIX}")
    time.sleep(0.5)
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_INTERRUPTED and err.strip().splitlines() == ["neo-pinn: interrupted"]
    assert time.monotonic() - start < 30 and out == "" and names(tmp_path) == []

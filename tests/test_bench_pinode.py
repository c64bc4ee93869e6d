"""Smoke test of benchmarks/bench_pinode.py (the pinode backend against Radau ground truth).

The benchmark's numbers come from its own runs; here the scores are checked on known traces, the third-party
M-current model on its plugin hook, and the script runs end to end in ``--quick`` on the ``seed`` and ``voltage``
cases (plumbing only: tiny step counts, its numbers mean nothing).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from neo_pinn import plugins

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_pinode.py"


@pytest.fixture(scope="module")
def bench():
    """The script as a module (it puts benchmarks/ on sys.path to import pinode_cases; taken off again)."""
    before = list(sys.path)
    spec = importlib.util.spec_from_file_location("bench_pinode", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_pinode"] = module  # its dataclass looks its module up
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = before
    yield module
    sys.modules.pop("bench_pinode", None)


def _spiky(t, period, shift=0.0, amp=100.0):
    """A spike train: a narrow bump every ``period`` ms, from −70 mV to −70 + ``amp``."""
    phase = ((t - shift) % period) / period
    return -70.0 + amp * np.exp(-((phase - 0.5) / 0.03) ** 2)


def test_scores_of_known_traces(bench):
    pc = bench.pc
    t = np.arange(0.0, 200.0 + 1e-9, 0.05)
    true = _spiky(t, 15.0)
    same = pc.trajectory_scores(t, true, true)
    assert same["spikes_pred"] == same["spikes_true"] == 13 and same["period_error"] == 0.0
    assert same["drift_ms"] == 0.0 and same["amplitude_error"] == 0.0 and pc.forecast_passes(same)
    slow = pc.trajectory_scores(t, _spiky(t, 15.3, amp=90.0), true)
    assert slow["period_error"] == pytest.approx(0.02, abs=2e-3)
    assert slow["amplitude_error"] == pytest.approx(0.1, abs=1e-3)
    assert slow["drift_ms"] == pytest.approx(6 * 0.3 + 0.15, abs=0.1)  # at the 7th spike (the last ≤ 100 ms)
    assert not pc.forecast_passes(slow)
    broken = pc.trajectory_scores(t, np.where(t > 150, np.nan, true), true)
    assert not broken["finite"] and not pc.forecast_passes(broken)


def test_mcurrent_model_registers_through_its_hook(bench):
    pc = bench.pc
    plugins.reset()
    try:
        model = pc.register_mcurrent_model()
        assert plugins.get_state().models.origin(pc.MCURRENT_MODEL) == pc.MCURRENT_PLUGIN
        from neo_pinn.api import get_model

        hh = get_model("hodgkin_huxley")
        y = np.array([-60.0, 0.1, 0.5, 0.4, 0.3])
        theta = model.theta({"gM": 0.0})
        d = model.rhs(0.0, y, theta, 10.0)
        np.testing.assert_allclose(d[:4], hh.rhs(0.0, y[:4], hh.theta(), 10.0))  # gM = 0: plain HH
        with_m = model.rhs(0.0, y, model.theta({"gM": 1.0}), 10.0)
        assert with_m[0] == pytest.approx(d[0] - 0.3 * (-60.0 + 77.0))  # −I_M / C
    finally:
        plugins.reset()


def test_quick_run_of_seed_and_voltage(bench, tmp_path, capsys):
    threads = torch.get_num_threads()
    code = bench.main(["--quick", "--cases", "seed", "voltage", "--threads", "1", "--out", str(tmp_path),
                       "--cache", str(tmp_path / "cache")])
    assert torch.get_num_threads() == threads
    assert code == 0
    out = capsys.readouterr().out
    assert "## 1. seed" in out and "## 3. voltage" in out and "## Summary" in out
    assert "seed forecast:" in out and "seed speed:" in out and "voltage: median error" in out
    data = json.loads((tmp_path / "bench_pinode.json").read_text())
    seed = data["results"]["seed"]
    assert seed["error"] is None and seed["scores"]["spikes_true"] >= 3
    assert len(data["results"]["voltage"]["rows"]) == 2
    assert (tmp_path / "pinode_seed.png").exists()
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1  # one Radau truth, shared by both cases

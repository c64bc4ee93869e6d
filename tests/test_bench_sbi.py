"""Smoke test of benchmarks/bench_amortized_sbi.py (the amortized estimator beside sbi's NPE).

The benchmark's numbers come from its own run (benchmarks/README.md); here it only runs end to end on tiny sizes,
and says how to install sbi when it is missing. The end-to-end run is skipped without sbi (``neo-pinn[bench]``).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_amortized_sbi.py"


@pytest.fixture(scope="module")
def bench():
    """The script as a module (it puts benchmarks/ on sys.path to import bench_amortized; taken off again)."""
    before = list(sys.path)
    spec = importlib.util.spec_from_file_location("bench_amortized_sbi", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = before
    return module


def test_missing_sbi_is_a_clear_exit(bench, monkeypatch):
    monkeypatch.setitem(sys.modules, "sbi", None)  # import sbi raises ImportError
    with pytest.raises(SystemExit, match=r"pip install .*neo-pinn\[bench\]"):
        bench.require_sbi()


def test_tiny_run_prints_both_rows(bench, capsys):
    pytest.importorskip("sbi")
    threads = torch.get_num_threads()
    try:
        rows = bench.main(["--n", "64", "--n-test", "16", "--epochs", "2", "--samples", "20",
                           "--max-sampling-s", "1"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "| ours (rescnn, Gaussian head) |" in out and "| sbi NPE (MAF + rescnn body) |" in out
    assert "the same split as train_estimator's: yes" in out
    assert [r["r2"].shape for r in rows] == [(4,), (4,)]
    for r in rows:
        for key in ("cov_50", "cov_90"):
            assert ((r[key] >= 0) & (r[key] <= 1)).all()

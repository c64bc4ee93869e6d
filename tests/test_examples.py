"""The scripts in examples/ run as a user runs them, and say what they should."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from neo_pinn.storage import sha256_of

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("elephant")


def test_neo_elephant_workflow(tmp_path):
    """AxonIO → Elephant → fit → attach → Elephant on the reconstruction → NixIO and back."""
    abf = ROOT / "sample_data" / "ml_snlc.abf"
    digest = sha256_of(abf)
    out = tmp_path / "fit.nix"
    run = subprocess.run([sys.executable, str(ROOT / "examples" / "neo_elephant_workflow.py"), str(abf), str(out)],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    text = run.stdout
    spikes = {who: [float(x) for x in re.search(rf"^{who}:\s+(\d+) spikes.*?at \[([^\]]*)\] ms", text, re.M)
                    .group(2).split(",")] for who in ("recorded", "model")}
    # the fitted model fires where the cell fired (Elephant's spike times on both, ms)
    assert len(spikes["recorded"]) == len(spikes["model"]) >= 4
    assert max(abs(a - b) for a, b in zip(spikes["recorded"], spikes["model"])) < 0.5
    assert "attached: V [mV], n [dimensionless]" in text
    fitted = dict(re.findall(r"^(gCa|gK) = ([0-9.]+) nS ±", text, re.M))
    back = dict(re.findall(r"(gCa|gK) = ([0-9.]+) nS", text.split("read back from", 1)[1]))
    assert fitted == back and set(fitted) == {"gCa", "gK"}
    assert abs(float(fitted["gCa"]) - 4.0) < 0.1 and abs(float(fitted["gK"]) - 8.0) < 0.2  # the sample's truth
    assert out.is_file() and sha256_of(abf) == digest  # written to a new file; the input never changes
    again = subprocess.run([sys.executable, str(ROOT / "examples" / "neo_elephant_workflow.py"), str(abf), str(out)],
                           capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert again.returncode == 2 and "exists" in again.stderr


def test_readme_quickstart_runs_as_written(monkeypatch):
    """The README's Quickstart loads one file, fits it and attaches to that file's block, as written."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    code = re.search(r"## Quickstart \(Python\).*?```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(ROOT)
    scope: dict = {}
    exec(compile(code, "README quickstart", "exec"), scope)
    result, block = scope["result"], scope["block"]
    assert result.status == "passed" and abs(result["gCa"].value - 4.0) < 0.05
    assert block is scope["rec"].block
    n = scope["n"]
    assert n.units.dimensionality.string == "dimensionless" and n.annotations["neo_pinn_run_id"] == result.run_id

"""A real-cell fit end to end, on a synthetic step recording made by the independent scipy solver: sweep QC leaves
out a sweep that does not respond to its command, the cell is measured, the search is scaled to it and staged
(passive first), a sweep is held out, and the verdict judges the fit; a fit pinned at a bound fails on the
command line (exit 3) with the banner in its report."""

from __future__ import annotations

import json

import numpy as np
import pytest

import neo_pinn
from neo_pinn.api import get_model
from neo_pinn.cli import EXIT_FIT_FAILED, main
from neo_pinn.reference import reference_solution
from neo_pinn.trace import Trace

MODEL = get_model("morris_lecar")
SCALE = 3.0                                 # a cell three times the textbook patch
TRUE = MODEL.param_values("snlc") | {"C": 20.0 * SCALE, "gL": 2.0 * SCALE, "gCa": 4.0 * SCALE, "gK": 8.0 * SCALE}
AMPS = (-60.0, -30.0, -90.0, 150.0, 210.0, 270.0)   # pA; the third sweep's cell "does not respond"
DEAD = 2
ONSET, OFFSET, DURATION, RATE_KHZ, SIGMA = 50.0, 250.0, 300.0, 10.0, 0.3


@pytest.fixture(scope="module")
def recording():
    rng = np.random.default_rng(11)
    theta = np.array([TRUE[n] for n in MODEL.param_names])
    _, y = reference_solution(MODEL, theta, duration=2000.0, dt_out=1.0, i_ext=0.0)
    rest = y[-1]
    t = np.arange(int(DURATION * RATE_KHZ) + 1) / RATE_KHZ
    traces = []
    for k, amp in enumerate(AMPS):
        i = np.where((t >= ONSET) & (t < OFFSET), amp, 0.0)
        if k == DEAD:
            v = np.full(t.size, rest[0])  # the command was sent, the cell never saw it
        else:
            _, ys = reference_solution(MODEL, theta, duration=DURATION, t_eval=t, y0=rest, max_step=0.5,
                                       i_ext=lambda tt, a=amp: a if ONSET <= tt < OFFSET else 0.0,
                                       rtol=1e-7, atol=1e-9)
            v = ys[:, 0]
        traces.append(Trace(t=t + 1000.0 * k, v=v + SIGMA * rng.standard_normal(t.size), i_ext=i,
                            stimulus_source="user", sweep=k))
    return traces


@pytest.fixture(scope="module")
def fitted(recording):
    return neo_pinn.estimate(recording, "morris_lecar", "lsq", ["C", "gL", "EL", "gCa", "gK"], preset="snlc",
                             validate_on=(4,), backend_options={"n_starts": 1})


def test_quality_control_leaves_out_the_sweep_that_ignores_its_command(fitted):
    qc = fitted.cell["qc"]
    excluded = {s["sweep"]: s["reasons"] for s in qc["sweeps"] if not s["kept"]}
    assert excluded == {DEAD: ["no_response"]}
    assert DEAD not in fitted.cell["fitted_sweeps"] and DEAD not in fitted.cell["holdout_sweeps"]
    assert "sweep 2" in fitted.summary()


def test_the_cell_is_measured_and_the_search_scaled_to_it(fitted):
    props = fitted.cell["properties"]
    assert props["capacitance_pF"] == pytest.approx(TRUE["C"], rel=0.2)
    assert props["rheobase_pA"] == 150.0
    scaling = fitted.cell["scaling"]
    assert scaling["area_scale"] == pytest.approx(SCALE, rel=0.2)
    lo, hi = scaling["bounds"]["gCa"]
    assert lo < TRUE["gCa"] < hi and MODEL.param_spec("gCa").bounds[1] < hi  # beyond the textbook range


def test_passive_parameters_come_first_and_each_stage_is_kept(fitted):
    stages = fitted.cell["stages"]
    assert [s["stage"] for s in stages] == ["passive", "active"]
    assert set(stages[0]["free"]) == {"C", "gL", "EL"} and set(stages[0]["sweeps"]) <= {0, 1}
    assert set(stages[1]["free"]) == {"gCa", "gK"}
    assert all(fitted[p].free for p in ("C", "gL", "EL", "gCa", "gK"))
    assert fitted["C"].value == pytest.approx(TRUE["C"], rel=0.1)


def test_the_verdict_covers_fitted_and_held_out_sweeps(fitted):
    roles = {s["sweep"]: s["role"] for s in fitted.verdict["sweeps"]}
    assert roles[4] == "holdout" and roles[3] == "fit" and DEAD not in roles
    assert set(fitted.verdict["generalisation"]) == {"fit", "holdout"}
    assert fitted.status in ("passed", "warning"), fitted.verdict["lines"]
    hold = next(s for s in fitted.verdict["sweeps"] if s["role"] == "holdout")
    assert hold["n_spikes_cell"] > 0 and abs(hold["n_spikes_model"] - hold["n_spikes_cell"]) <= 1


def test_a_fit_pinned_at_a_bound_fails_on_the_command_line(tmp_path, capsys):
    rec = tmp_path / "cell.nwb"
    assert main(["simulate", "--model", "morris_lecar", "--preset", "snlc", "--stimulus",
                 "step:amp=60pA,start=20ms,stop=300ms", "--duration", "300", "--rate", "5000", "--noise",
                 "white:sigma=1mV", "--seed", "3", "--out", str(rec)]) == 0
    out, report = tmp_path / "fit.json", tmp_path / "fit.html"
    capsys.readouterr()
    rc = main(["fit", str(rec), "--model", "morris_lecar", "--preset", "snlc", "--backend", "lsq", "--free", "gCa,gK",
               "--bounds", "gCa=1:2", "--option", "n_starts=1", "--json", str(out), "--report", str(report), "--quiet"])
    printed = capsys.readouterr()
    assert rc == EXIT_FIT_FAILED
    assert "FIT FAILED" in printed.out and "upper bound" in printed.out and "exit status 3" in printed.err
    result = json.loads(out.read_text())
    assert result["status"] == "failed"
    assert any(c["name"] == "bounds" and not c["passed"] for c in result["verdict"]["checks"])
    html = report.read_text()
    assert 'class="banner failed"' in html and html.index("banner failed") < html.index("<h2>Parameters")


def test_info_shows_quality_control_and_the_cell(recordings_dir, capsys):
    rc = main(["info", str(recordings_dir / "99111002.nwb")])
    out = capsys.readouterr().out
    assert rc == 0 and "sweep quality control" in out and "no_response" in out and "input resistance" in out
    rc = main(["info", str(recordings_dir / "99111002.nwb"), "--json"])
    d = json.loads(capsys.readouterr().out)
    excluded = {s["sweep"] for s in d["qc"]["sweeps"] if not s["kept"]}
    assert {0, 1, 2, 3, 4} <= excluded and d["cell"]["input_resistance_MOhm"] > 0

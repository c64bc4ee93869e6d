"""Figures and the self-contained HTML report."""

from __future__ import annotations

import base64
import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from neo_pinn.errors import OutputPathError, UnknownNameError
from neo_pinn.report import figure_fit, figure_history, input_files, write_report
from neo_pinn.result import EstimationResult, ParameterEstimate, SweepFit


def make_result(n_sweeps: int = 2, history: dict | None = None) -> EstimationResult:
    t = np.arange(300) * 0.1
    fits = []
    for k in range(n_sweeps):
        v = -65 + 20 * np.sin(t / 2 + k)
        states = np.column_stack([v + 0.1, 0.5 + 0.1 * np.cos(t), 1e-3 * (1 + np.sin(t / 7))])
        fits.append(SweepFit(sweep=k, t=t, v_observed=v, i_ext=np.where(t > 5, 50.0, 0.0), states=states,
                             stimulus_source="abf2-protocol", source={"file": "cell<1>.abf", "sha256": "f" * 64}))
    params = {
        "g_K": ParameterEstimate("g_K", 8.123456, "nS", std=0.25, free=True, init=5.0, true_value=8.0),
        "C": ParameterEstimate("C", 20.5, "pF", std=None, free=True, init=10.0),
        "E_K": ParameterEstimate("E_K", -84.0, "mV", free=False),
    }
    return EstimationResult(
        model="morris_lecar", backend="lsq", parameters=params, state_names=("V", "w", "Ca"),
        state_units=("mV", "dimensionless", "dimensionless"), fits=tuple(fits), noise={"sigma": 0.97},
        metrics={"rmse_mV": 0.1, "n_starts": 3},
        history={"loss": [10.0, 1.0, 0.1, 0.05]} if history is None else history,
        provenance={"run_id": "abc123", "seed": 11, "device": "cpu", "wall_time_s": 2.5,
                    "versions": {"neo_pinn": "0.1.0"}, "input_file": "cell<1>.abf", "input_sha256": "f" * 64},
        config={"method": "trf", "note": "<b>not html</b>"},
    )


def test_figure_fit_panels():
    res = make_result()
    fig = figure_fit(res, sweep=1)
    assert isinstance(fig, Figure)
    axes = fig.axes
    assert len(axes) == 4  # stimulus, voltage, w, Ca
    assert "pA" in axes[0].get_ylabel() and "mV" in axes[1].get_ylabel()
    assert "RMSE" in axes[1].get_title() and f"{res.fits[1].rmse:.3g}" in axes[1].get_title()
    assert axes[2].get_ylabel() == "w" and axes[3].get_ylabel() == "Ca"
    np.testing.assert_array_equal(axes[1].lines[1].get_ydata(), res.fits[1].v_fit)
    with pytest.raises(UnknownNameError):
        figure_fit(res, sweep=7)


def test_figure_history():
    fig = figure_history(make_result())
    assert fig is not None and fig.axes[0].get_yscale() == "log"
    fig = figure_history(make_result(history={"loss": [1.0, 0.0, -1.0], "params": {"g_K": [5.0, 7.0, 8.0]}}))
    assert len(fig.axes) == 2 and fig.axes[0].get_yscale() == "symlog"
    assert figure_history(make_result(history={})) is None


def test_write_report_contents(tmp_path):
    res = make_result()
    extra = Figure()
    extra.subplots().plot([0, 1], [1, 0])
    out = write_report(res, tmp_path / "report.html", title="Fit <of> cell", extra_figures=[("extra one", extra)],
                       extra_html="<p id='extra'>added</p>")
    assert out == tmp_path / "report.html"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]  # written atomically: no .part left
    text = out.read_text(encoding="utf-8")
    for name, shown in (("g_K", "8.12346"), ("C", "20.5"), ("E_K", "-84")):
        assert name in text and shown in text
    assert "± 0.25" in text and "fixed" in text and "1.54 %" in text  # std, status, relative error
    imgs = re.findall(r'<img [^>]*src="([^"]+)"', text)
    assert len(imgs) == 2 + 1 + 1  # one per sweep, history, extra
    for src in imgs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http://" not in text and "https://" not in text and "<link" not in text and "<script" not in text
    assert "Fit &lt;of&gt; cell" in text and "cell&lt;1&gt;.abf" in text and "&lt;b&gt;not html&lt;/b&gt;" in text
    assert "f" * 64 in text and "abc123" in text and "0.97" in text
    assert "<p id='extra'>added</p>" in text


def test_report_caps_sweep_figures(tmp_path):
    text = write_report(make_result(n_sweeps=3, history={}), tmp_path / "r.html", max_sweeps=2).read_text()
    assert len(re.findall(r"<img ", text)) == 2
    assert "1 further sweep(s) not drawn" in text


def test_report_failure_leaves_nothing(tmp_path, monkeypatch):
    class Broken:
        def savefig(self, *a, **k):
            raise RuntimeError("cannot draw")

    small = make_result(n_sweeps=1, history={})  # fewer figures to draw: the point is the failure
    with pytest.raises(RuntimeError):
        write_report(small, tmp_path / "a.html", extra_figures=[Broken()])
    assert list(tmp_path.iterdir()) == []

    # a failure while the bytes are being written leaves neither the target nor a temporary file
    def failing_write(self, data):
        with open(self, "wb") as fh:
            fh.write(data[:10])
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_bytes", failing_write)
    with pytest.raises(OSError, match="disk full"):
        write_report(small, tmp_path / "b.html")
    assert list(tmp_path.iterdir()) == []


def test_report_refuses_input_file(tmp_path):
    src = tmp_path / "cell.abf"
    src.write_bytes(b"ABF2")
    res = make_result()
    res = dataclasses.replace(res, provenance={**res.provenance, "input_file": str(src)})
    with pytest.raises(OutputPathError, match="input"):
        write_report(res, src)
    assert src.read_bytes() == b"ABF2"


def test_report_refuses_a_folder_and_leaves_nothing(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(OutputPathError, match="folder"):
        write_report(make_result(n_sweeps=1, history={}), tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and not any((tmp_path / "out").iterdir())


def _section(text: str, title: str) -> str:
    return text.split(f"<h2>{title}</h2>", 1)[1].split("<h2>", 1)[0]


def test_report_shows_the_initial_guess_not_the_best_start(tmp_path):
    """The "initial guess" column is where the search started (the user's --init), the best start a column of its
    own; a result that does not record the guess says so instead of passing the best start off as it."""
    res = make_result(history={})  # g_K: best start 5.0, C: best start 10.0
    res = dataclasses.replace(res, provenance={**res.provenance, "initial_guess": {"g_K": 6.5, "C": None}})
    table = _section(write_report(res, tmp_path / "a.html").read_text(), "Parameters")
    header = re.findall(r"<th>([^<]+)</th>", table)
    row = re.search(r"<td>g_K</td>(.*?)</tr>", table).group(1)
    cells = dict(zip(header[1:], re.findall(r"<td[^>]*>([^<]*)</td>", row)))
    assert cells["initial guess"] == "6.5" and cells["best start"] == "5"
    row_c = re.search(r"<td>C</td>(.*?)</tr>", table).group(1)
    assert dict(zip(header[1:], re.findall(r"<td[^>]*>([^<]*)</td>", row_c)))["initial guess"] == "—"
    assert "initial_guess" not in _section(write_report(res, tmp_path / "b.html").read_text(), "Provenance")
    old = _section(write_report(make_result(history={}), tmp_path / "c.html").read_text(), "Parameters")
    assert "does not record the initial guess" in old


def test_from_fit_records_the_problems_initial_guess():
    from neo_pinn.api import get_model
    from neo_pinn.problem import EstimationProblem
    from neo_pinn.trace import Trace

    model = get_model("morris_lecar")
    t = np.arange(50) * 0.1
    tr = Trace(t=t, v=np.full(t.size, -60.0), i_ext=np.zeros(t.size))
    prob = EstimationProblem.build(model, [tr], ["gCa", "gK"], init={"gCa": 3.25})
    res = EstimationResult.from_fit(prob, "lsq", {"gCa": 4.0, "gK": 8.0}, [np.zeros((t.size, 2))],
                                    init={"gCa": 1.0, "gK": 9.0})
    assert res.provenance["initial_guess"] == {"gCa": 3.25, "gK": None}
    assert res["gCa"].init == 1.0  # the best start stays in ParameterEstimate.init
    back = EstimationResult.from_json(res.to_json())
    assert back.provenance["initial_guess"] == {"gCa": 3.25, "gK": None}


def test_history_draws_stages_as_markers_not_objective_values():
    cost = [100.0, 10.0, 5.0, 1.0, 0.5, 0.1]
    stage = [0, 0, 1, 1, 1, 2]
    fig = figure_history(make_result(history={"cost": cost, "stage": stage, "start_cost": [0.1, 0.3, 2.0],
                                              "start_init": [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]}))
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"  # the zeros of the stage index no longer force a symlog axis
    drawn = {line.get_label(): list(line.get_ydata()) for line in ax.lines if not str(line.get_gid()).startswith("stage")}
    assert drawn == {"cost": cost}  # the stage index is never drawn as an objective value
    markers = sorted(float(line.get_xdata()[0]) for line in ax.lines if str(line.get_gid()).startswith("stage"))
    assert markers == [0.0, 2.0, 5.0]  # where each stage begins
    assert len(fig.axes) == 2 and fig.axes[1].get_xlabel() == "start"  # per-start values get their own axis
    assert [list(line.get_ydata()) for line in fig.axes[1].lines] == [[0.1, 0.3, 2.0]]


def test_report_lists_each_input_file_once(tmp_path):
    """A source names its file as given (an absolute path) and by its base name: one input, listed once."""
    src = {"file": "/data/cells/cell.nwb", "file_name": "cell.nwb", "sha256": "a" * 64, "format": "NWB"}
    res = make_result(history={})
    res = dataclasses.replace(
        res, fits=tuple(dataclasses.replace(f, source=dict(src)) for f in res.fits),
        provenance={"run_id": "abc123", "inputs": [dict(src, sweep=f.sweep) for f in res.fits]})
    assert input_files(res) == [("/data/cells/cell.nwb", "a" * 64)]
    prov = _section(write_report(res, tmp_path / "r.html").read_text(), "Provenance")
    assert prov.count("cell.nwb") == 1 and prov.count("a" * 64) == 1
    assert re.search(r"<td>/data/cells/cell.nwb</td><td><code>a{64}</code></td><td>0, 1</td>", prov)


def test_protocol_steps_take_the_epoch_that_varies_across_sweeps():
    """The report reads steps through the core's protocol_steps: the 0 pA sweep does not take the fixed epoch."""
    from neo_pinn.cell import protocol_steps
    from neo_pinn.report import sweep_features
    from neo_pinn.trace import Trace

    t = np.arange(1000) * 1.0                                   # ms
    traces = []
    for k, amp in enumerate((-20.0, 0.0, 20.0, 40.0)):
        i = np.zeros(t.size)
        i[100:300] = amp                                        # the test step, stepped from sweep to sweep
        i[400:500] = -50.0                                      # a fixed epoch in every sweep
        traces.append(Trace(t=t, v=np.full(t.size, -65.0), i_ext=i, sweep=k))
    steps = protocol_steps(traces)
    assert [s.amplitude_pA for s in steps] == [-20.0, 0.0, 20.0, 40.0]
    assert all((s.onset_ms, s.offset_ms) == (100.0, 300.0) for s in steps)
    v = np.full(t.size, -65.0)
    v[[150, 250, 450]] = 20.0                                   # two spikes in the step, one in the fixed epoch
    mask = (t >= 100.0) & (t < 300.0)
    f = sweep_features(t, v, traces[2].i_ext, 0.0, -10.0, (20.0, mask))
    assert f["step_pA"] == 20.0 and f["rate_hz"] == pytest.approx(2 / 200 * 1000.0)
    assert protocol_steps([Trace(t=t, v=v, i_ext=np.zeros(t.size))]) is None


def test_report_shows_the_backends_diagnostics(tmp_path):
    res = dataclasses.replace(make_result(history={}), diagnostics={"stopped": "stagnation",
                                                                    "forward_rmse_mV": list(range(30))})
    text = write_report(res, tmp_path / "r.html").read_text()
    assert "<h2>Diagnostics</h2>" in text and "stagnation" in text
    assert "19, &quot;…&quot;" in text and "29" not in text.split("<h2>Diagnostics</h2>")[1].split("</table>")[0]

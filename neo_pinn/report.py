"""Figures of a fit and a self-contained HTML report.

Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas directly, never through
``pyplot``: nothing here changes the user's matplotlib backend or leaves figures open in a pyplot
registry, and it works on machines without a display. The report is one HTML file with the figures
inlined as base64 PNG, so it can be mailed or archived without losing anything.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from .errors import ConfigurationError, OutputPathError, UnknownNameError
from .plugins import get_state
from .cell import protocol_steps
from .report_cell import BANNER_CSS, cell_section, verdict_banner, verdict_section
from .report_signals import derived_section
from .result import EstimationResult, SweepFit
from .storage import atomic_write_text, dumps, same_file
from .trace import Trace

__all__ = ["figure_fit", "figure_history", "figure_fi", "fi_points", "fit_steps", "sweep_features", "write_report",
           "input_files", "initial_guess", "MAX_SWEEP_FIGURES"]

#: Sweeps drawn in a report by default; beyond it the report says how many were left out.
MAX_SWEEP_FIGURES = 20


# ------------------------------------------------------------------------------------------ figures
def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _pick_fit(result: EstimationResult, sweep: int | None) -> SweepFit:
    if not result.fits:
        raise ConfigurationError("The result holds no fitted sweeps; there is nothing to draw.")
    if sweep is None:
        return result.fits[0]
    for f in result.fits:
        if f.sweep == sweep:
            return f
    if 0 <= sweep < len(result.fits):
        return result.fits[sweep]
    raise UnknownNameError(f"No fitted sweep {sweep}; this result has sweeps {[f.sweep for f in result.fits]}.")


def _unit_label(unit: str) -> str:
    return "" if str(unit) in ("", "1", "dimensionless", "none", "None") else f" ({unit})"


def figure_fit(result: EstimationResult, sweep: int | None = 0):
    """Stimulus, recorded vs reconstructed voltage and every hidden state of one sweep, stacked.

    Parameters
    ----------
    result : EstimationResult
        A fit.
    sweep : int, optional
        The sweep number (``SweepFit.sweep``); when no fit has that number, the position in
        ``result.fits``. None: the first fit.

    Returns
    -------
    matplotlib.figure.Figure
        Panels sharing the time axis (ms): injected current (pA); recorded and reconstructed voltage
        (mV), RMSE in the title; then one panel per further state, in its unit.
    """
    fit = _pick_fit(result, sweep)
    states = np.asarray(fit.states, dtype=float).reshape(len(fit.t), -1)
    names = list(result.state_names) or [f"state {k}" for k in range(states.shape[1])]
    units = list(result.state_units) or [""] * states.shape[1]
    n_hidden = states.shape[1] - 1
    ratios = [1.0, 2.0] + [1.2] * n_hidden
    fig = _new_figure(8.0, 1.2 + 1.5 * sum(ratios) / 1.2)
    axes = fig.subplots(len(ratios), 1, sharex=True, gridspec_kw={"height_ratios": ratios})
    t = np.asarray(fit.t, dtype=float)
    ax = axes[0]
    ax.plot(t, fit.i_ext, color="k", lw=1)
    ax.set_ylabel("I (pA)")
    ax.set_title(f"Sweep {fit.sweep}: injected current (source: {fit.stimulus_source})", fontsize=10)
    ax = axes[1]
    ax.plot(t, fit.v_observed, color="0.55", lw=1, label="recorded")
    ax.plot(t, fit.v_fit, color="C3", lw=1.2, label="reconstructed")
    ax.set_ylabel("V (mV)")
    ax.set_title(f"{result.model} / {result.backend}: voltage, RMSE {fit.rmse:.3g} mV", fontsize=10)
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    for k in range(1, states.shape[1]):
        ax = axes[k + 1]
        name = names[k] if k < len(names) else f"state {k}"
        unit = units[k] if k < len(units) else ""
        ax.plot(t, states[:, k], color=f"C{k % 10}", lw=1.2)
        ax.set_ylabel(f"{name}{_unit_label(unit)}")
    axes[-1].set_xlabel("time (ms)")
    return fig


def _numeric_series(x) -> np.ndarray | None:
    if isinstance(x, (str, bytes, Mapping)):
        return None
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        return None
    return arr if arr.ndim == 1 and arr.size >= 2 and np.isfinite(arr).any() else None


def _is_stage_key(key: Any, arr: np.ndarray) -> bool:
    """A per-iteration index of the stage a fit is in (``stage``, ``lm_stage`` ...): integers, not an objective."""
    finite = arr[np.isfinite(arr)]
    return "stage" in str(key).lower() and finite.size > 0 and bool(np.all(finite == np.round(finite)))


def _stage_changes(stages: np.ndarray) -> list[tuple[int, float]]:
    """(iteration, new stage) wherever a stage index changes, the first iteration included."""
    out = [(0, float(stages[0]))] if stages.size else []
    out += [(int(k), float(stages[k])) for k in np.flatnonzero(np.diff(stages) != 0) + 1]
    return [(k, s) for k, s in out if math.isfinite(s)]


def _log_or_symlog(ax, series: Iterable[np.ndarray]) -> None:
    ax.set_yscale("log" if all(np.nanmin(a) > 0 for a in series) else "symlog")


def figure_history(result: EstimationResult):
    """The optimisation history of a fit, or None when the result has none.

    Parameters
    ----------
    result : EstimationResult
        A fit. Every 1-D numeric sequence in ``result.history`` (``loss``, ``cost``, ``objective`` ...) is drawn
        against its iteration index on a log axis; an integer sequence named like ``stage`` is the stage each
        iteration belongs to and is drawn as labelled vertical markers where the stage changes (never as objective
        values); sequences named ``start_*`` hold one value per start of a multi-start fit and get a panel of
        their own; sequences inside a dict entry (per-parameter traces) a panel relative to their final value.

    Returns
    -------
    matplotlib.figure.Figure or None
        Log-scaled objective panel (symlog when a trace has values ≤ 0), then the per-start and parameter panels.
    """
    series = {k: a for k, v in result.history.items() if (a := _numeric_series(v)) is not None}
    stages = {k: a for k, a in series.items() if _is_stage_key(k, a)}
    starts = {k: a for k, a in series.items() if k not in stages and str(k).startswith("start_")}
    curves = {k: a for k, a in series.items() if k not in stages and k not in starts}
    traces = {}
    for k, v in result.history.items():
        if isinstance(v, Mapping):
            for name, seq in v.items():
                arr = _numeric_series(seq)
                if arr is not None:
                    traces[f"{k}:{name}" if len(result.history) > 1 else str(name)] = arr
    panels = [p for p, present in (("curves", curves), ("starts", starts), ("traces", traces)) if present]
    if not panels:
        return None
    fig = _new_figure(8.0, 3.0 * len(panels))
    axes = dict(zip(panels, np.atleast_1d(fig.subplots(len(panels), 1))))
    if curves:
        ax = axes["curves"]
        for k, a in curves.items():
            ax.plot(np.arange(a.size), a, lw=1.2, label=str(k))
        _log_or_symlog(ax, curves.values())
        for name, a in stages.items():  # where each stage begins: a marker on the iteration axis, not a value
            for it, stage in _stage_changes(a):
                ax.axvline(it, color="0.5", ls=":", lw=1, gid=f"stage:{name}")
                ax.text(it, 1.0, f" {name} {stage:g}", transform=ax.get_xaxis_transform(), fontsize=7,
                        color="0.35", va="top", ha="left", rotation=90)
        ax.set_xlabel("iteration")
        ax.set_ylabel("objective")
        ax.set_title("Optimisation history" + (" (dotted: start of each stage)" if stages else ""), fontsize=10)
        ax.legend(fontsize=8, frameon=False)
    if starts:
        ax = axes["starts"]
        for k, a in starts.items():
            ax.plot(np.arange(a.size), a, "o", ms=4, label=str(k))
        _log_or_symlog(ax, starts.values())
        ax.set_xlabel("start")
        ax.set_ylabel("value per start")
        ax.set_title("Multi-start: one value per start", fontsize=10)
        ax.legend(fontsize=8, frameon=False)
    if traces:
        ax = axes["traces"]
        for k, a in traces.items():
            last = a[np.isfinite(a)][-1]
            ax.plot(np.arange(a.size), a / last if last != 0 else a, lw=1, label=str(k))
        ax.set_xlabel("iteration")
        ax.set_ylabel("value / final value")
        ax.set_title("Parameter traces", fontsize=10)
        ax.legend(fontsize=7, frameon=False, ncol=3)
    return fig


# ------------------------------------------------------------------------------ features and f–I
#: Per-sweep features drawn in the report's feature table: (key, label, unit).
SWEEP_FEATURES = (
    ("spike_count", "spikes", ""),
    ("rate_hz", "rate in step", "Hz"),
    ("first_spike_ms", "first spike", "ms"),
    ("isi_mean_ms", "mean ISI", "ms"),
    ("ap_peak_mv", "AP peak", "mV"),
    ("trough_mv", "AHP trough", "mV"),
    ("v_mean_mv", "mean V", "mV"),
)


def _spike_levels(model: str) -> tuple[float, float]:
    """Spike threshold and re-arm level (mV) of a registered model; 0 / −10 mV when unknown."""
    try:
        m = get_state().models.get(model)
        return float(m.spike_threshold), float(m.spike_rearm)
    except Exception:  # noqa: BLE001 - a report of an unregistered model still draws with the defaults
        return 0.0, -10.0


def fit_steps(result: EstimationResult) -> list[tuple[float, np.ndarray] | None]:
    """Each fitted sweep's step amplitude (pA) and the samples of its step (mask), from the protocol's shared step
    window (:func:`neo_pinn.cell.protocol_steps`); None per sweep when the sweeps hold no step."""
    traces = [Trace(t=f.t, v=f.v_observed, i_ext=f.i_ext, sweep=f.sweep) for f in result.fits]
    steps = protocol_steps(traces) if traces else None
    if steps is None:
        return [None] * len(result.fits)
    return [(s.amplitude_pA + s.holding_pA, (f.t >= s.onset_ms) & (f.t < s.offset_ms))
            for s, f in zip(steps, result.fits)]


def sweep_features(t: np.ndarray, v: np.ndarray, i_ext: np.ndarray, threshold: float = 0.0,
                   rearm: float | None = None, step: tuple[float, np.ndarray] | None = None) -> dict[str, float]:
    """Simple features of one sweep for the report (NaN where undefined).

    Parameters
    ----------
    t, v, i_ext : numpy.ndarray
        Times (ms), voltage (mV) and injected current (pA), shape (T,).
    threshold, rearm : float
        Spike detection levels in mV (see :func:`neo_pinn.features.spike_times`).
    step : (float, numpy.ndarray), optional
        Step current (pA) and its samples (mask), see :func:`fit_steps`; default: the whole sweep at its
        median current.

    Returns
    -------
    dict
        ``spike_count``; ``rate_hz`` (spikes per second during the samples of the step, see
        ``step``); ``first_spike_ms`` (from the sweep start); ``isi_mean_ms``; ``ap_peak_mv`` (mean
        per-spike maximum); ``trough_mv`` (mean minimum between spikes); ``v_mean_mv``; ``step_pA``.
    """
    from .features import spike_times

    t, v = np.asarray(t, dtype=float), np.asarray(v, dtype=float)
    st = spike_times(v, t, threshold, rearm)
    if step is None:
        amp, mask = float(np.median(i_ext)), np.ones(np.asarray(t).size, dtype=bool)
    else:
        amp, mask = step
    dt = float(np.median(np.diff(t))) if t.size > 1 else 1.0
    in_step = np.interp(st, t, mask.astype(float)) > 0.5 if st.size else np.zeros(0, dtype=bool)
    step_ms = mask.sum() * dt
    nan = float("nan")
    idx = np.searchsorted(t, st)
    bounds = np.concatenate([idx, [t.size]])
    peaks = [v[a:b].max() for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    troughs = [v[a:b].min() for a, b in zip(bounds[:-2], bounds[1:-1]) if b > a]
    return {
        "spike_count": float(st.size),
        "rate_hz": float(in_step.sum() / step_ms * 1000.0) if step_ms > 0 else nan,
        "first_spike_ms": float(st[0] - t[0]) if st.size else nan,
        "isi_mean_ms": float(np.mean(np.diff(st))) if st.size > 1 else nan,
        "ap_peak_mv": float(np.mean(peaks)) if peaks else nan,
        "trough_mv": float(np.mean(troughs)) if troughs else nan,
        "v_mean_mv": float(np.mean(v)),
        "step_pA": amp,
    }


def fi_points(result: EstimationResult) -> list[dict[str, float]]:
    """Recorded and fitted firing rate against step amplitude, one point per sweep, sorted by amplitude.

    Parameters
    ----------
    result : EstimationResult
        Any backend's fit (one or more sweeps).

    Returns
    -------
    list of dict
        ``sweep``, ``step_pA``, ``rate_recorded_hz``, ``rate_fitted_hz`` (see :func:`sweep_features`).
    """
    th, rearm = _spike_levels(result.model)
    pts = []
    steps = fit_steps(result)
    for f, step in zip(result.fits, steps):
        rec = sweep_features(f.t, f.v_observed, f.i_ext, th, rearm, step)
        fit = sweep_features(f.t, f.v_fit, f.i_ext, th, rearm, step)
        pts.append({"sweep": f.sweep, "step_pA": rec["step_pA"], "rate_recorded_hz": rec["rate_hz"],
                    "rate_fitted_hz": fit["rate_hz"]})
    return sorted(pts, key=lambda p: (p["step_pA"], p["sweep"]))


def figure_fi(result: EstimationResult):
    """The f–I curve, recorded vs fitted, or None when the sweeps hold fewer than two step amplitudes.

    Parameters
    ----------
    result : EstimationResult
        A multi-sweep fit (e.g. the steps of an f–I protocol).

    Returns
    -------
    matplotlib.figure.Figure or None
        Firing rate (Hz) during the step against the step amplitude (pA), recorded and fitted.
    """
    pts = fi_points(result)
    amps = np.array([p["step_pA"] for p in pts])
    if np.unique(amps).size < 2:
        return None
    fig = _new_figure(6.0, 3.6)
    ax = fig.subplots()
    ax.plot(amps, [p["rate_recorded_hz"] for p in pts], "o-", color="0.4", label="recorded")
    ax.plot(amps, [p["rate_fitted_hz"] for p in pts], "s--", color="C3", label="fitted")
    ax.set_xlabel("step amplitude (pA)")
    ax.set_ylabel("firing rate during the step (Hz)")
    ax.set_title(f"f–I curve: {result.model} / {result.backend}", fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    return fig


def _feature_table(result: EstimationResult, max_rows: int) -> str:
    th, rearm = _spike_levels(result.model)
    head = "".join(f"<th>{_e(lab)}{_e(_unit_label(u))}<br>recorded / fitted</th>" for _, lab, u in SWEEP_FEATURES)
    rows = []
    steps = fit_steps(result)
    for f, step in list(zip(result.fits, steps))[:max_rows]:
        rec = sweep_features(f.t, f.v_observed, f.i_ext, th, rearm, step)
        fit = sweep_features(f.t, f.v_fit, f.i_ext, th, rearm, step)
        cells = "".join(f'<td class="num">{_e(_fmt(rec[k]))} / {_e(_fmt(fit[k]))}</td>' for k, _, _ in SWEEP_FEATURES)
        rows.append(f'<tr><td class="num">{f.sweep}</td><td class="num">{_e(_fmt(rec["step_pA"]))}</td>{cells}</tr>')
    return (f"<table><tr><th>sweep</th><th>step (pA)</th>{head}</tr>" + "".join(rows) + "</table>"
            f"<p>Spikes are upward crossings of {th:g} mV (re-arm {rearm:g} mV); the rate counts the spikes "
            "during the step: the epochs where the sweeps' currents differ, for the sweeps of a protocol; "
            "otherwise the non-holding current level held longest.</p>")


def _backend_feature_errors(result: EstimationResult, max_rows: int) -> str:
    """Table of a backend's own per-sweep feature errors (``history["sweep_features"]``), or ''."""
    per = result.history.get("sweep_features")
    if not isinstance(per, list) or not per or not all(isinstance(x, Mapping) for x in per):
        return ""
    names = []
    for item in per:
        for k in (item.get("features") or {}):
            if k not in names:
                names.append(k)
    if not names:
        return ""
    head = "".join(f"<th>{_e(n)}</th>" for n in names)
    rows = []
    for item in per[:max_rows]:
        feats = item.get("features") or {}
        cells = []
        for n in names:
            d = feats.get(n) or {}
            cells.append(f'<td class="num">{_e(_fmt(d.get("recorded")))} / {_e(_fmt(d.get("fitted")))}'
                         f'<br>err {_e(_fmt(d.get("error")))}</td>')
        rows.append(f'<tr><td class="num">{_e(item.get("sweep"))}</td>{"".join(cells)}</tr>')
    return ("<h3>Feature errors used by the backend</h3><p>recorded / fitted, and the normalised error "
            "|fitted − recorded| / σ the backend minimised.</p>"
            f"<table><tr><th>sweep</th>{head}</tr>" + "".join(rows) + "</table>")


# ------------------------------------------------------------------------------------------- HTML
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1000px;
color:#222;line-height:1.4;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left;
vertical-align:top}th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.fixed td{color:#777}pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.85em}
figure{margin:1em 0}figure img{max-width:100%}figcaption{font-size:.9em;color:#555}
.note{color:#a60}code{font-size:.9em}
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _fmt(x: Any) -> str:
    if x is None:
        return "—"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return "NaN" if math.isnan(x) else f"{x:.6g}"
    return str(x)


def _json(obj: Any) -> str:
    return dumps(obj, indent=1, sort_keys=True)


def _png_data_uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _figure_html(fig, caption: str) -> str:
    return f'<figure><img alt="{_e(caption)}" src="{_png_data_uri(fig)}"><figcaption>{_e(caption)}</figcaption></figure>'


def _kv_table(d: Mapping[str, Any], header=("name", "value")) -> str:
    if not d:
        return "<p>none</p>"
    rows = []
    for k, v in d.items():
        if isinstance(v, (Mapping, list, tuple)):
            cell = f"<code>{_e(json.dumps(v, default=str, ensure_ascii=False))}</code>"
            rows.append(f"<tr><td>{_e(k)}</td><td>{cell}</td></tr>")
        else:
            cls = ' class="num"' if isinstance(v, (int, float, np.number)) and not isinstance(v, bool) else ""
            rows.append(f"<tr><td>{_e(k)}</td><td{cls}>{_e(_fmt(v))}</td></tr>")
    return f"<table><tr><th>{_e(header[0])}</th><th>{_e(header[1])}</th></tr>{''.join(rows)}</table>"


def initial_guess(result: EstimationResult) -> dict[str, float | None] | None:
    """The initial guess the fit started from (the user's ``init`` where given), or None when not recorded.

    Parameters
    ----------
    result : EstimationResult
        A fit; :meth:`EstimationResult.from_fit` records the problem's initial guess in
        ``provenance["initial_guess"]`` (free parameter → value in its unit, None where the backend chose).

    Returns
    -------
    dict or None
        Free parameter → initial value; None for a result written before the guess was recorded.
    """
    guess = result.provenance.get("initial_guess")
    if not isinstance(guess, Mapping):
        return None
    return {str(k): (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None)
            for k, v in guess.items()}


def _param_table(result: EstimationResult) -> str:
    guess = initial_guess(result)
    rows = []
    for p in result.parameters.values():
        rel = p.relative_error
        start = guess.get(p.name) if guess is not None and p.free else None
        rows.append(
            f'<tr class="{"free" if p.free else "fixed"}"><td>{_e(p.name)}</td><td class="num">{_e(_fmt(p.value))}</td>'
            f'<td class="num">{_e("± " + _fmt(p.std) if p.std is not None else "—")}</td><td>{_e(p.unit)}</td>'
            f'<td>{"free" if p.free else "fixed"}</td><td class="num">{_e(_fmt(start))}</td>'
            f'<td class="num">{_e(_fmt(p.init))}</td><td class="num">{_e(_fmt(p.true_value))}</td>'
            f'<td class="num">{_e(f"{100 * rel:.3g} %" if rel is not None else "—")}</td></tr>'
        )
    note = ("<p>Initial guess: where the fit started (your <code>init</code> / <code>--init</code> where given, "
            "else the starting value the fit chose; — where the backend drew it). Best start: the start the "
            "returned estimate came from (multi-start backends).</p>")
    if guess is None:
        note = ('<p class="note">This result does not record the initial guess (it was written by an older '
                "version); the best start is the start the returned estimate came from, not your "
                "<code>--init</code>.</p>")
    return ("<table><tr><th>parameter</th><th>value</th><th>± std</th><th>unit</th><th>status</th>"
            "<th>initial guess</th><th>best start</th><th>truth</th><th>relative error</th></tr>"
            + "".join(rows) + "</table>" + note)


def _sweep_table(result: EstimationResult) -> str:
    rows = []
    for f in result.fits:
        t = np.asarray(f.t, dtype=float)
        src = f.source.get("file") or f.source.get("path") or ""
        rows.append(
            f'<tr><td class="num">{f.sweep}</td><td class="num">{t.size}</td>'
            f'<td class="num">{_e(_fmt(float(t[0]) if t.size else None))} – {_e(_fmt(float(t[-1]) if t.size else None))}</td>'
            f"<td>{_e(f.stimulus_source)}</td><td class=\"num\">{_e(_fmt(f.rmse))}</td><td>{_e(src)}</td></tr>"
        )
    return ("<table><tr><th>sweep</th><th>samples</th><th>time (ms)</th><th>stimulus source</th><th>RMSE (mV)</th>"
            "<th>source</th></tr>" + "".join(rows) + "</table>")


def _same_input(a: tuple[str, str], b: tuple[str, str]) -> bool:
    """Whether two (file, sha256) name one input: the same file, or the same name and content (a path given
    relative in one place and absolute in another)."""
    if same_file(a[0], b[0]):
        return True
    return Path(a[0]).name == Path(b[0]).name and (a[1] == b[1] or not a[1] or not b[1])


def _is_file_key(key: Any) -> bool:
    k = str(key).lower()
    return ("file" in k or "path" in k) and "sha" not in k


def input_files(result: EstimationResult) -> list[tuple[str, str]]:
    """The input files a fit names, each once, with its sha256 ('' when not recorded).

    Parameters
    ----------
    result : EstimationResult
        A fit; its provenance (``inputs`` per sweep, or top-level ``input_file``-like keys) and its sweeps'
        sources are read. One source may name a file several ways (``file`` as given, ``file_name`` its base
        name, an absolute path elsewhere): they are one input, listed by its most complete path.

    Returns
    -------
    list of (str, str)
        (file, sha256), in the order first named.
    """
    found: list[tuple[str, str]] = []

    def add(f: str, sha: str) -> None:
        for k, (g, gsha) in enumerate(found):
            if _same_input((f, sha), (g, gsha)):
                longer = f if len(Path(f).parts) > len(Path(g).parts) else g
                found[k] = (longer, gsha or sha)
                return
        found.append((f, sha))

    def visit(d: Mapping[str, Any]) -> None:
        sha = next((str(v) for k, v in d.items() if "sha256" in str(k) and isinstance(v, str)), "")
        for k, v in d.items():
            if isinstance(v, (str, os.PathLike)) and _is_file_key(k) and str(v):
                add(str(v), sha)
        for v in d.values():
            if isinstance(v, Mapping):
                visit(v)
            elif isinstance(v, (list, tuple)):
                for x in v:
                    if isinstance(x, Mapping):
                        visit(x)

    visit(result.provenance)
    for f in result.fits:
        visit(f.source)
    return found


def _input_table(result: EstimationResult) -> str:
    inputs = input_files(result)
    if not inputs:
        return ""
    per_sweep = [d for d in result.provenance.get("inputs", []) if isinstance(d, Mapping)]

    def sweeps_of(f: str, sha: str) -> str:
        got = [str(d.get("sweep")) for d in per_sweep if d.get("sweep") is not None
               and any(_same_input((str(v), str(d.get("sha256") or "")), (f, sha))
                       for k, v in d.items() if _is_file_key(k) and isinstance(v, (str, os.PathLike)))]
        return ", ".join(dict.fromkeys(got)) or "—"

    return ("<table><tr><th>input file</th><th>sha256</th><th>sweeps</th></tr>" + "".join(
        f"<tr><td>{_e(f)}</td><td><code>{_e(s or '—')}</code></td><td>{_e(sweeps_of(f, s))}</td></tr>"
        for f, s in inputs) + "</table>")


def _provenance_items(result: EstimationResult) -> dict[str, Any]:
    """The provenance shown as name → value: the input files (and their hashes) are left out, since the input
    table lists them once, and so is the initial guess (a column of the parameter table)."""
    return {k: v for k, v in result.provenance.items()
            if k not in ("inputs", "initial_guess") and not _is_file_key(k) and "sha256" not in str(k)}


def _check_target(path: Path, result: EstimationResult) -> None:
    if path.is_dir():
        raise OutputPathError(f"The report path {path} is a folder; give a file name, e.g. {path / 'report.html'}.")
    for f, _ in input_files(result):
        if same_file(f, path):
            raise OutputPathError(f"Refusing to write the report over {path}: it is an input of this fit. "
                                  "Choose a new name.")


def write_report(result: EstimationResult, path: str | os.PathLike, *, title: str | None = None,
                 extra_figures: Iterable | Mapping | None = None, extra_html: str | None = None,
                 max_sweeps: int = MAX_SWEEP_FIGURES) -> Path:
    """Write a single self-contained HTML report of a fit, atomically.

    Parameters
    ----------
    result : EstimationResult
        A fit.
    path : str or os.PathLike
        Target ``.html`` file. Written under a temporary name beside it and renamed when complete, so
        a failure leaves no file (and an older report stays intact). An existing report is replaced;
        a file the fit names as its input (provenance or sweep source) is never overwritten.
    title : str, optional
        Page title; default names model, backend and run.
    extra_figures : iterable of Figure or (caption, Figure), or mapping caption → Figure, optional
        More figures to inline after the standard ones.
    extra_html : str, optional
        HTML appended verbatim at the end (trusted: it is not escaped).
    max_sweeps : int
        At most this many sweep figures (default 20); the report notes how many were left out.

    Returns
    -------
    pathlib.Path
        The written file.

    Notes
    -----
    Contents: parameter table (value, ± std, unit, free/fixed, initial guess, truth and relative error
    when known), noise estimates, metrics, per-sweep RMSE, per-sweep features recorded vs fitted (and the
    backend's own feature errors when ``result.history["sweep_features"]`` holds them), the f–I curve
    recorded vs fitted when the sweeps hold two or more step amplitudes, one fit figure per sweep, the backend's
    forecasts and correction currents when it made any (:mod:`neo_pinn.report_signals`), the optimisation
    history, provenance (versions, seed, device, wall time, input files with sha256) and the backend
    configuration as JSON. Every text is HTML-escaped.
    """
    path = Path(path)
    _check_target(path, result)
    title = title or f"{result.model} fitted with {result.backend} — run {result.run_id}"
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}{BANNER_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>", verdict_banner(result),
        f"<p>Model <b>{_e(result.model)}</b>, backend <b>{_e(result.backend)}</b>, run <code>{_e(result.run_id)}</code>, "
        f"{len(result.fits)} sweep(s). Report written {_e(_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'))}.</p>",
        "<h2>Parameters</h2>", _param_table(result),
        "<h2>Noise</h2>", _kv_table(result.noise, ("estimate", "value")),
        "<h2>Metrics</h2>", _kv_table(result.metrics, ("metric", "value")),
        "<h2>Sweeps</h2>", _sweep_table(result),
        verdict_section(result), cell_section(result),
    ]
    if result.samples:
        counts = {k: len(v) for k, v in result.samples.items() if hasattr(v, "__len__")}
        parts += ["<h2>Samples</h2>", _kv_table(counts, ("parameter", "number of samples"))]
    if result.diagnostics:
        # what a backend reports beyond single numbers (per sweep, per member, why it stopped); long lists are cut
        shown = {k: (v[:20] + ["…"] if isinstance(v, list) and len(v) > 20 else v)
                 for k, v in result.diagnostics.items()}
        parts += ["<h2>Diagnostics</h2>", _kv_table(shown, ("item", "value"))]
    parts += ["<h2>Features per sweep</h2>", _feature_table(result, max(1, int(max_sweeps))),
              _backend_feature_errors(result, max(1, int(max_sweeps)))]
    fi = figure_fi(result)
    if fi is not None:
        pts = fi_points(result)
        parts += ["<h2>f–I curve</h2>", _figure_html(fi, "f–I curve: firing rate during the step, recorded vs fitted"),
                  "<table><tr><th>sweep</th><th>step (pA)</th><th>recorded rate (Hz)</th><th>fitted rate (Hz)</th></tr>"
                  + "".join(f'<tr><td class="num">{p["sweep"]}</td><td class="num">{_e(_fmt(p["step_pA"]))}</td>'
                            f'<td class="num">{_e(_fmt(p["rate_recorded_hz"]))}</td>'
                            f'<td class="num">{_e(_fmt(p["rate_fitted_hz"]))}</td></tr>' for p in pts) + "</table>"]
    parts.append("<h2>Figures</h2>")
    shown = result.fits[: max(0, int(max_sweeps))]
    for f in shown:
        fig = figure_fit(result, sweep=f.sweep)
        parts.append(_figure_html(fig, f"Sweep {f.sweep}: stimulus, recorded vs reconstructed voltage, hidden states"))
    if len(result.fits) > len(shown):
        parts.append(f'<p class="note">{len(result.fits) - len(shown)} further sweep(s) not drawn '
                     f"(at most {len(shown)} figures); their RMSE is in the table above.</p>")
    if result.signals:
        parts.append(derived_section(result, max(0, int(max_sweeps))))
    hist = figure_history(result)
    if hist is not None:
        parts.append(_figure_html(hist, "Optimisation history"))
    if extra_figures is not None:
        items = extra_figures.items() if isinstance(extra_figures, Mapping) else extra_figures
        for k, item in enumerate(items):
            caption, fig = item if isinstance(item, tuple) else (f"Figure {k + 1}", item)
            parts.append(_figure_html(fig, caption))
    parts += ["<h2>Provenance</h2>", _kv_table(_provenance_items(result), ("item", "value")), _input_table(result)]
    parts += ["<h2>Configuration</h2>", f"<pre>{_e(_json(result.config))}</pre>"]
    if extra_html:
        parts.append(str(extra_html))
    parts.append("</body></html>")
    text = "\n".join(parts)
    atomic_write_text(path, text)
    return path

"""Report sections of the signals a backend derived beyond the reconstruction: forecasts and correction currents.

:func:`derived_section` is what :func:`neo_pinn.report.write_report` inlines for a result with
``result.signals``: per sweep, the forecast continuing past the fitted window beside the recording (where the
recording goes on), with a table of the forecast's figures (:func:`neo_pinn.forecast.forecast_metrics`), and
the learned correction current. Figures use the Agg canvas directly, never ``pyplot``.
"""

from __future__ import annotations

import base64
import html
import io
import math
from typing import Any

import numpy as np

from .forecast import forecast_metrics, spike_levels_of
from .result import EstimationResult, SweepFit

__all__ = ["figure_forecast", "figure_correction", "derived_section", "FORECAST_TITLE", "CORRECTION_TITLE"]

#: the heading of the forecast section of the report
FORECAST_TITLE = "Forecast past the fitted window"
#: the heading of the correction-current section of the report
CORRECTION_TITLE = "Correction current"


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _fit_of(result: EstimationResult, sweep: int) -> SweepFit | None:
    return next((f for f in result.fits if f.sweep == sweep), None)


def figure_forecast(result: EstimationResult, sweep: int):
    """The forecast of one sweep after its fitted window, beside the recording; None when the sweep has no forecast.

    Parameters
    ----------
    result : EstimationResult
        A fit whose ``signals`` hold a ``"forecast"`` of ``sweep``.
    sweep : int
        The sweep number (``SweepFit.sweep``).

    Returns
    -------
    matplotlib.figure.Figure or None
        Voltage (mV) against time (ms): the fitted window's recording and reconstruction, the forecast voltage
        continuing after it, the recorded voltage where the recording goes on (``observed``), and a dashed
        vertical line at the end of the fitted window.
    """
    sig = next(iter(result.signals_of("forecast", sweep)), None)
    if sig is None:
        return None
    fit = _fit_of(result, sweep)
    volt = result.state_names[0] if result.state_names and result.state_names[0] in sig.names else sig.names[0]
    fig = _new_figure(8.0, 3.4)
    ax = fig.subplots()
    if fit is not None:
        ax.plot(fit.t, fit.v_observed, color="0.55", lw=1, label="recorded (fitted)")
        ax.plot(fit.t, fit.v_fit, color="C3", lw=1.2, label="reconstructed")
        ax.axvline(float(fit.t[-1]), color="k", ls="--", lw=1, label="end of the fitted window")
    if sig.observed is not None and np.isfinite(sig.observed).any():
        ax.plot(sig.t, sig.observed, color="0.3", lw=1, alpha=0.8, label="recorded (not fitted)")
    ax.plot(sig.t, sig.channel(volt), color="C0", lw=1.2, label="forecast")
    ax.set_xlabel("time (ms)")
    ax.set_ylabel(f"{volt} (mV)")
    ax.set_title(f"Sweep {sweep}: forecast {sig.duration:.4g} ms past the fitted window", fontsize=10)
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    return fig


def figure_correction(result: EstimationResult, sweep: int):
    """The correction current of one sweep over time; None when the sweep has none.

    Parameters
    ----------
    result : EstimationResult
        A fit whose ``signals`` hold a ``"correction"`` of ``sweep``.
    sweep : int
        The sweep number.

    Returns
    -------
    matplotlib.figure.Figure or None
        Each channel of the correction (pA) against time (ms), with the zero line.
    """
    sig = next(iter(result.signals_of("correction", sweep)), None)
    if sig is None:
        return None
    fig = _new_figure(8.0, 2.6)
    ax = fig.subplots()
    ax.axhline(0.0, color="0.7", lw=0.8)
    for k, (name, unit) in enumerate(zip(sig.names, sig.units)):
        ax.plot(sig.t, sig.values[:, k], color=f"C{(k + 4) % 10}", lw=1.2, label=f"{name} ({unit})")
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("current (pA)" if set(sig.units) == {"pA"} else "correction")
    ax.set_title(f"Sweep {sweep}: learned correction current (what the model alone does not explain)", fontsize=10)
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    return fig


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _f(x: Any) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def _figure_html(fig, caption: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<figure><img alt="{_e(caption)}" src="{uri}"><figcaption>{_e(caption)}</figcaption></figure>'


_FORECAST_COLUMNS = (("sweep", "sweep"), ("forecast_ms", "forecast (ms)"), ("spikes_in_forecast", "spikes in forecast"),
                     ("compared_ms", "compared with recording (ms)"), ("rmse_mV", "RMSE (mV)"),
                     ("spikes_recorded", "spikes recorded"), ("spikes_predicted", "spikes predicted"),
                     ("spike_time_error_ms", "spike-time error (ms)"), ("rate_error", "rate error"))


def _forecast_table(result: EstimationResult, rows: list[dict[str, Any]]) -> str:
    head = "".join(f"<th>{_e(label)}</th>" for _, label in _FORECAST_COLUMNS)
    body = []
    for r in rows:
        compared = r["samples_compared"] > 0
        cells = [r[k] if compared or k in ("sweep", "forecast_ms", "spikes_in_forecast") else None
                 for k, _ in _FORECAST_COLUMNS]
        body.append("<tr>" + "".join(f'<td class="num">{_e(_f(c))}</td>' for c in cells) + "</tr>")
    th, rearm = spike_levels_of(result)
    note = (f"<p>Spikes: upward crossings of {th:g} mV, re-armed below {rearm:g} mV. The forecast is compared with "
            "the recording only where the recording goes on past the fitted window (— where it does not); "
            "spike-time error: median |recorded spike − nearest predicted spike|; rate error: |predicted − recorded| "
            "/ recorded firing rate.</p>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>{note}"


def derived_section(result: EstimationResult, max_sweeps: int = 20) -> str:
    """The report's HTML about the result's derived signals; '' for a result without any.

    Parameters
    ----------
    result : EstimationResult
        A fit.
    max_sweeps : int
        At most this many figures of each kind (the table lists every forecast).

    Returns
    -------
    str
        A ``Forecast past the fitted window`` section (table and one figure per sweep with a forecast) and a
        ``Correction current`` section (one figure per sweep with a correction), each only when present.
    """
    parts = []
    forecasts = result.signals_of("forecast")
    if forecasts:
        th, rearm = spike_levels_of(result)
        volt = result.state_names[0] if result.state_names else None
        rows = [forecast_metrics(s, th, rearm, voltage_name=volt) for s in forecasts]
        parts += [f"<h2>{_e(FORECAST_TITLE)}</h2>", _forecast_table(result, rows)]
        for s in forecasts[: max(0, int(max_sweeps))]:
            parts.append(_figure_html(figure_forecast(result, s.sweep), f"Sweep {s.sweep}: forecast past the fitted "
                                      "window (dashed line: its end) beside the recording where it goes on"))
    corrections = result.signals_of("correction")
    if corrections:
        parts.append(f"<h2>{_e(CORRECTION_TITLE)}</h2>")
        for s in corrections[: max(0, int(max_sweeps))]:
            parts.append(_figure_html(figure_correction(result, s.sweep), f"Sweep {s.sweep}: learned correction "
                                      "current (pA) on the sweep's samples"))
    n_left = max(len(forecasts), len(corrections)) - max(0, int(max_sweeps))
    if n_left > 0:
        parts.append(f'<p class="note">{n_left} further sweep(s) with derived signals not drawn.</p>')
    return "\n".join(parts)

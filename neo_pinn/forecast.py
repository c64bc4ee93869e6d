"""A forecast against the recording: how well the fitted model predicts what the cell did next.

A backend that forecasts (``forecast_ms``) returns, per fitted sweep, a :class:`~neo_pinn.derived.DerivedSignal`
of role ``"forecast"``: every model state simulated past the fitted window. Where the recording goes on beyond
that window, :func:`compare_forecast` puts the recorded voltage beside the forecast (``observed``) and scores
it: voltage RMSE, spikes recorded and predicted, spike-time error and firing-rate error.
:func:`neo_pinn.estimate` calls it by itself when it fitted a window of longer sweeps.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import replace
from typing import Any, Mapping, Sequence

import numpy as np

from .derived import DerivedSignal, sample_nearest
from .errors import ConfigurationError
from .features import spike_times
from .residuals import rms
from .result import EstimationResult
from .trace import Trace
from .units import magnitude_in

__all__ = ["compare_forecast", "forecast_metrics", "spike_levels_of", "FORECAST_METRICS"]

#: the metrics :func:`compare_forecast` adds to ``result.metrics``
FORECAST_METRICS = ("forecast_rmse_mV", "forecast_spikes_recorded", "forecast_spikes_predicted",
                    "forecast_spike_time_error_ms", "forecast_rate_error")


def spike_levels_of(result: EstimationResult) -> tuple[float, float]:
    """The spike threshold and re-arm level (mV) a fit used: the cell's (``result.cell["spike_levels_mV"]``),
    else the registered model's, else 0 and −10 mV.

    Parameters
    ----------
    result : EstimationResult

    Returns
    -------
    (float, float)
        Threshold and re-arm level in mV.
    """
    levels = result.cell.get("spike_levels_mV") if isinstance(result.cell, Mapping) else None
    if isinstance(levels, (list, tuple)) and len(levels) == 2 and all(isinstance(x, (int, float)) for x in levels):
        return float(levels[0]), float(levels[1])
    from .errors import NeoPinnError
    from .plugins import get_state

    try:
        model = get_state().models.get(result.model)
    except NeoPinnError:  # a model no installed plugin registers: the default levels
        return 0.0, -10.0
    return float(model.spike_threshold), float(model.spike_rearm)


def _voltage_column(signal: DerivedSignal, voltage_name: str | None) -> np.ndarray:
    """The forecast's membrane voltage: the channel named like the model's state 0, else the first channel."""
    if voltage_name is not None and voltage_name in signal.names:
        return signal.channel(voltage_name)
    return signal.values[:, 0]


def _nearest_errors(recorded: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """|recorded spike − nearest predicted spike| for every recorded spike (ms); empty when either has none."""
    if recorded.size == 0 or predicted.size == 0:
        return np.empty(0)
    return np.min(np.abs(recorded[:, None] - predicted[None, :]), axis=1)


def _relative_rate_error(n_recorded: int, n_predicted: int) -> float:
    """|predicted − recorded| / recorded spikes over one span (= the relative rate error); 0 when both are silent,
    NaN when only the forecast spikes (no rate to be relative to)."""
    if n_recorded == 0:
        return 0.0 if n_predicted == 0 else math.nan
    return abs(n_predicted - n_recorded) / n_recorded


def forecast_metrics(signal: DerivedSignal, threshold: float = 0.0, rearm: float | None = None, *,
                     voltage_name: str | None = None) -> dict[str, Any]:
    """Score one forecast against the recorded voltage in its ``observed`` (where both exist).

    Parameters
    ----------
    signal : DerivedSignal
        A ``"forecast"``; its ``observed`` (mV) may be None (nothing recorded to compare with).
    threshold, rearm : float
        Spike detection levels in mV (see :func:`neo_pinn.features.spike_times`).
    voltage_name : str, optional
        The channel holding the voltage (the model's state 0); default the first channel.

    Returns
    -------
    dict
        ``sweep``; ``forecast_ms`` (duration), ``t0_ms``, ``t1_ms``; ``spikes_in_forecast`` (whole forecast);
        over the compared part (where the recording goes on; a non-finite forecast sample counts as no spike, sets
        ``forecast_diverged`` (else False) and makes the RMSE infinite): ``compared_ms``, ``samples_compared``,
        ``rmse_mV``, ``spikes_recorded``, ``spikes_predicted``, ``spike_times_recorded_ms``,
        ``spike_times_predicted_ms``, ``spike_time_errors_ms`` (each recorded spike to the nearest predicted one),
        ``spike_time_error_ms`` (their median; NaN when either has no spike), ``rate_recorded_hz``,
        ``rate_predicted_hz`` and ``rate_error`` (|predicted − recorded| / recorded rate; 0 when both are silent,
        NaN when only the forecast spikes). NaN and 0 where nothing was compared.
    """
    if signal.role != "forecast":
        raise ConfigurationError(f"forecast_metrics scores a forecast; got the {signal.role} of sweep {signal.sweep}.")
    v = _voltage_column(signal, voltage_name)
    out: dict[str, Any] = {"sweep": signal.sweep, "forecast_ms": signal.duration, "t0_ms": float(signal.t[0]),
                           "t1_ms": float(signal.t[-1]),
                           "spikes_in_forecast": int(spike_times(v, signal.t, threshold, rearm).size)}
    obs = np.full(signal.t.shape, np.nan) if signal.observed is None else signal.observed
    both = np.isfinite(obs)
    n = int(both.sum())
    t, v_rec, v_pred = signal.t[both], obs[both], v[both]
    finite = np.isfinite(v_pred)
    diverged = not finite.all()
    if diverged:
        # a forecast that diverged is scored where it was recorded, as no spike and an infinite RMSE: comparing
        # only its finite part would drop the recorded spikes it missed
        floor = min(threshold, float(v_pred[finite].min())) if finite.any() else threshold
        v_pred = np.where(finite, v_pred, floor - 1.0)
    span = float(n * signal.dt)  # each compared sample stands for one sampling interval
    rec = spike_times(v_rec, t, threshold, rearm) if n >= 2 else np.empty(0)
    pred = spike_times(v_pred, t, threshold, rearm) if n >= 2 else np.empty(0)
    errors = _nearest_errors(rec, pred)
    out |= {
        "compared_ms": span, "samples_compared": n,
        "forecast_diverged": diverged,
        "rmse_mV": (math.inf if diverged else rms(v_pred - v_rec)) if n else math.nan,
        "spikes_recorded": int(rec.size), "spikes_predicted": int(pred.size),
        "spike_times_recorded_ms": rec.tolist(), "spike_times_predicted_ms": pred.tolist(),
        "spike_time_errors_ms": errors.tolist(),
        "spike_time_error_ms": float(np.median(errors)) if errors.size else math.nan,
        "rate_recorded_hz": rec.size / span * 1000.0 if span > 0 else math.nan,
        "rate_predicted_hz": pred.size / span * 1000.0 if span > 0 else math.nan,
        "rate_error": _relative_rate_error(int(rec.size), int(pred.size)) if n else math.nan,
    }
    return out


def _traces_by_sweep(traces: Trace | Sequence[Trace]) -> dict[int, Trace]:
    items = [traces] if isinstance(traces, Trace) else list(traces)
    bad = [type(x).__name__ for x in items if not isinstance(x, Trace)]
    if bad:
        raise ConfigurationError(f"compare_forecast needs the recorded sweeps as Trace objects (whole sweeps, before "
                                 f"any window cut), not {', '.join(sorted(set(bad)))}; Recording.traces() gives them.")
    out: dict[int, Trace] = {}
    for tr in items:
        out.setdefault(int(tr.sweep), tr)
    return out


def _json_ready(d: Mapping[str, Any]) -> dict[str, Any]:
    """NaN as None (JSON has no NaN)."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def _pooled(rows: Sequence[Mapping[str, Any]]) -> dict[str, float | int]:
    """One number per metric over every compared sweep: RMSE of all compared samples, spike sums, the median of all
    spike-time errors and the relative error of the total spike counts (the sweeps' spans are the same for both)."""
    n = sum(r["samples_compared"] for r in rows)
    sq = sum(r["samples_compared"] * r["rmse_mV"] ** 2 for r in rows if r["samples_compared"])
    rec = sum(r["spikes_recorded"] for r in rows)
    pred = sum(r["spikes_predicted"] for r in rows)
    errors = [e for r in rows for e in r["spike_time_errors_ms"]]
    return {"forecast_rmse_mV": math.sqrt(sq / n) if n else math.nan,
            "forecast_spikes_recorded": rec, "forecast_spikes_predicted": pred,
            "forecast_spike_time_error_ms": float(np.median(errors)) if errors else math.nan,
            "forecast_rate_error": _relative_rate_error(rec, pred)}


def compare_forecast(result: EstimationResult, traces: Trace | Sequence[Trace], *, threshold: Any = None,
                     rearm: Any = None) -> EstimationResult:
    """Put the recording beside each forecast and score the forecast where the recording goes on.

    Parameters
    ----------
    result : EstimationResult
        A fit whose ``signals`` hold ``"forecast"`` signals (states simulated past the fitted window).
    traces : Trace or sequence of Trace
        The recorded sweeps, whole (before any window cut), on the same clock as the fit; matched to the
        forecasts by ``sweep``. Forecasts of sweeps not given are left as they are.
    threshold, rearm : float or quantities.Quantity, optional
        Spike detection levels (mV); default the levels the fit used (:func:`spike_levels_of`); a threshold
        without re-arm level re-arms 10 mV below it.

    Returns
    -------
    EstimationResult
        A copy in which each matched forecast's ``observed`` holds the recorded voltage at its times (the nearest
        sample; NaN past the recording), ``metrics`` gains :data:`FORECAST_METRICS` over every compared sweep
        (``forecast_rmse_mV`` in mV, spike counts, ``forecast_spike_time_error_ms``: median |recorded spike −
        nearest predicted spike| in ms, NaN when either has none; ``forecast_rate_error``: relative firing-rate
        difference, NaN when only the forecast spikes) when any recorded sample overlaps a forecast, and
        ``diagnostics["forecast"]`` holds the levels and each sweep's figures (:func:`forecast_metrics`).
        The result itself when no forecast's sweep is among ``traces``.

    Raises
    ------
    ConfigurationError
        ``traces`` are not Trace objects, or a level is not a finite number.
    UnitsError
        A level given as a quantity that is not a voltage.
    """
    if not isinstance(result, EstimationResult):
        raise ConfigurationError(f"compare_forecast needs an EstimationResult, got {type(result).__name__}.")
    by_sweep = _traces_by_sweep(traces)
    forecasts = [s for s in result.signals_of("forecast") if s.sweep in by_sweep]
    if not forecasts:
        return result
    th, re = spike_levels_of(result)
    if threshold is not None:
        th, re = magnitude_in(threshold, "mV", "threshold"), None
    if rearm is not None:
        re = magnitude_in(rearm, "mV", "rearm")
    re = th - 10.0 if re is None else re
    for name, x in (("threshold", th), ("rearm", re)):
        if isinstance(x, bool) or not isinstance(x, numbers.Real) or not math.isfinite(x):
            raise ConfigurationError(f"{name}={x!r}: give a finite spike detection level in mV.")
    volt = result.state_names[0] if result.state_names else None
    signals, rows = [], []
    for s in result.signals:
        if any(s is f for f in forecasts):
            tr = by_sweep[s.sweep]
            s = replace(s, observed=sample_nearest(tr.t, tr.v, s.t))
            rows.append(forecast_metrics(s, float(th), float(re), voltage_name=volt))
        signals.append(s)
    diagnostics = dict(result.diagnostics)
    diagnostics["forecast"] = {"threshold_mV": float(th), "rearm_mV": float(re),
                               "sweeps": [_json_ready(r) for r in rows]}
    metrics = dict(result.metrics)
    if any(r["samples_compared"] for r in rows):
        metrics |= _pooled([r for r in rows if r["samples_compared"]])
    return replace(result, signals=tuple(signals), metrics=metrics, diagnostics=diagnostics)

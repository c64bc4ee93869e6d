"""Spike-by-spike comparison of the batched features with eFEL: a test oracle (needs ``efel``).

:func:`efel_cell_properties` gives eFEL's own subthreshold features of step sweeps (rest, input
resistance, τ, sag, spike counts) to hold :func:`neo_pinn.cell.measure_cell` to.

:func:`efel_agreement` runs eFEL (Blue Brain Project) on the same samples with the same definitions
switched on and reports, per row, the differences of peak times, ISIs, AP amplitudes, half widths and
AHP troughs, or why values are not compared one to one. The tests and ``benchmarks/bench_features.py``
hold the batched features (:mod:`neo_pinn.features`) to it; eFEL is a test dependency
(``pip install "neo-pinn[test]"``), imported only when the comparison runs.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigurationError
from ..features import inputs
from ..features.catalogue import SPIKE_FEATURE_NAMES
from ..features.per_spike import spike_table

__all__ = ["efel_agreement", "efel_cell_properties"]


#: How far (mV) efel_agreement raises samples that sit exactly at the threshold before eFEL sees them.
_EFEL_THRESHOLD_NUDGE_MV = 1e-9

#: eFEL features read by :func:`efel_agreement`.
_EFEL_FEATURES = ("peak_time", "peak_voltage", "AP_begin_indices", "AP_amplitude", "AP_duration_half_width",
                  "AP_rise_indices", "AP_fall_indices", "AP_end_indices", "all_ISI_values",
                  "min_voltage_between_spikes")


def efel_agreement(v, dt_ms: float, *, t0_ms: float = 0.0, window_ms: tuple[float, float] | None = None,
                   threshold_mv: float = 0.0, rearm_mv: float | None = None, derivative_threshold: float = 10.0,
                   derivative_window: int = 3, tail_ms: float = 20.0) -> list[dict]:
    """Compare :func:`~neo_pinn.features.batch_spike_features` with eFEL on each row, spike by spike.

    eFEL is run on the same samples with the same definitions switched on: ``Threshold`` =
    ``threshold_mv``, ``DerivativeThreshold``/``DerivativeWindow`` as given, ``strict_stiminterval`` on and
    ``stim_start``/``stim_end`` = the window. Three details make the comparison exact rather than
    approximate:

    * eFEL first resamples every trace onto a grid built by adding ``interp_step`` (default 0.1 ms)
      again and again. Even with ``interp_step`` = ``dt_ms`` that grid drifts from the sample times by
      rounding (0.05 ms is not exact in binary), and the resampled voltages differ from the samples in
      the last bits — which decides ties between equal samples (flat peaks and troughs of quantized
      recordings) differently. eFEL is therefore given the **sample index** as its time axis with
      ``interp_step`` = 1, which reproduces the samples exactly; the derivative thresholds are scaled to
      mV per sample (× ``dt_ms``) and eFEL's times are scaled back to ms.
    * eFEL searches the AP end of the last spike (which bounds its half-width fall) up to the end of the
      trace it is given, so a later event (the next spike, or the second current step of a multi-step
      ABF sweep) can replace the spike's own repolarisation. It is given each trace up to ``tail_ms``
      after the window end, and not beyond the threshold crossing of the first spike that peaks
      after the window.
    * eFEL's spike detector needs a sample strictly above the threshold after an upward crossing and
      one strictly below after a downward crossing; a sample exactly at the threshold makes it lose a
      crossing and mis-pair all later ones. Such samples are raised by 1e-9 mV for eFEL, which makes its
      rule the one used here (``≥`` threshold counts as above).

    eFEL's detector has no hysteresis — every upward crossing of the threshold that comes back down is
    a spike — so pass ``rearm_mv = threshold_mv`` to compare the same spikes; with the default re-arm
    level a spike whose trough stays above it is merged with the one before. A trace that ends above
    threshold has one spike more here than in eFEL (which needs the downward crossing).

    Parameters
    ----------
    v, dt_ms, t0_ms, window_ms, threshold_mv, rearm_mv, derivative_threshold, derivative_window
        As :func:`~neo_pinn.features.batch_spike_features` (mV, ms, mV/ms, samples).
    tail_ms : float
        How much of the trace after the window eFEL sees, ms.

    Returns
    -------
    list of dict
        One per row: ``spikes`` and ``spikes_efel`` (counts in the window); when they are equal the
        per-spike differences (ours − eFEL, numpy arrays) ``peak_time_ms``, ``isi_ms`` (ms),
        ``amplitude_mv`` (mV), ``width_ms`` (ms), ``ahp_mv`` (mV); an array is empty where eFEL gives no
        one-to-one values, and ``notes`` (list of str) says why. ``width_ms`` holds the spikes whose
        half-level samples in eFEL are the two samples on either side of our interpolated crossings
        (the same crossing, measured by nearest sample there and by interpolation here);
        ``width_excluded`` maps the index of every other spike to the reason eFEL measured a different
        crossing (see :func:`_same_half_crossings`).

    Raises
    ------
    ConfigurationError
        efel is not installed, or a bad argument.
    """
    try:
        import efel
    except ImportError:  # pragma: no cover - depends on the environment
        raise ConfigurationError('efel_agreement needs eFEL: pip install "neo-pinn[test]" (or pip install efel).') \
            from None
    x = inputs.voltage_batch(v)
    dt = inputs.check_dt(dt_ms)
    t0 = inputs.check_level(t0_ms, "t0_ms", "ms")
    tail = inputs.check_level(tail_ms, "tail_ms", "ms")
    window = inputs.analysis_window(window_ms, t0, dt, x.shape[1])
    thr, rearm = inputs.check_spike_levels(threshold_mv, rearm_mv)
    dth, window_n = inputs.check_derivative_rule(derivative_threshold, derivative_window)
    table = spike_table(x, dt, t0, thr, rearm, window, dth, window_n, need_shape=True)
    ours = {k: table[k].detach().cpu().numpy() for k in ("count", *SPIKE_FEATURE_NAMES)}
    volts = _traces_for_efel(x, table["all_peaks"], window, t0, dt, tail, thr)
    efel.reset()
    try:
        for name, value in (("Threshold", float(threshold_mv)), ("interp_step", 1.0),
                            ("DerivativeThreshold", dth * dt),
                            ("DownDerivativeThreshold", efel.get_settings().DownDerivativeThreshold * dt),
                            ("DerivativeWindow", int(derivative_window)), ("strict_stiminterval", True)):
            efel.set_setting(name, value)
        stim = ((window[0] - t0) / dt, (window[1] - t0) / dt)
        traces = [{"T": np.arange(row.size, dtype=float), "V": row, "stim_start": [stim[0]], "stim_end": [stim[1]]}
                  for row in volts]
        theirs = efel.get_feature_values(traces, list(_EFEL_FEATURES), raise_warnings=False)
    finally:
        efel.reset()
    return [_compare_row(ours, r, fe, volts[r], t0, dt, derivative_threshold, derivative_window)
            for r, fe in enumerate(theirs)]


def _traces_for_efel(x, all_peaks, window: tuple[float, float], t0: float, dt: float, tail: float,
                     thr: float) -> list[np.ndarray]:
    """Each row as eFEL is given it (float64 numpy): cut after the window, threshold samples nudged."""
    T = x.shape[1]
    # eFEL sees each row up to tail_ms after the window, and not beyond the start of the first spike
    # whose peak is after the window: it would otherwise search the last spike's AP end into it.
    n_keep = np.full(x.shape[0], min(T, inputs.first_index_at_or_after(window[1] + max(tail, 0.0), t0, dt, T) + 1))
    row_all, s_all, p_all = (a.detach().cpu().numpy() for a in all_peaks)
    later = t0 + p_all * dt > window[1]
    np.minimum.at(n_keep, row_all[later], s_all[later])
    volts_all = x.detach().cpu().double().numpy()
    # eFEL needs V > threshold after an upward and V < threshold after a downward crossing; a sample
    # exactly at the threshold (common in quantized recordings, where 0 mV is one of the levels) makes
    # it lose one crossing and pair every later upward crossing with the previous spike's downward one,
    # dropping all later spikes. Raised by 1e-9 mV, such samples count as at-or-above threshold for
    # eFEL too — the rule used here — and nothing else moves measurably. (One ulp is not enough:
    # eFEL's resampling, v[i-1] + (v[i] - v[i-1]), rounds it away.)
    volts = [volts_all[r, :n_keep[r]].copy() for r in range(x.shape[0])]
    for row in volts:
        row[row == thr] = thr + _EFEL_THRESHOLD_NUDGE_MV
    return volts


def _arr(values, scale: float = 1.0, offset: float = 0.0) -> np.ndarray:
    """An eFEL feature value as a flat float array, scaled (empty for None)."""
    return np.empty(0) if values is None else np.asarray(values, dtype=float).reshape(-1) * scale + offset


def _compare_row(ours: dict, r: int, fe: dict, v: np.ndarray, t0: float, dt: float, derivative_threshold,
                 derivative_window) -> dict:
    """One row of :func:`efel_agreement`: our per-spike values (row ``r`` of ``ours``) minus eFEL's ``fe``."""
    empty = np.empty(0)
    n = int(ours["count"][r])
    peaks = _arr(fe["peak_time"], dt, t0)
    row = {"spikes": n, "spikes_efel": int(peaks.size), "peak_time_ms": empty, "isi_ms": empty,
           "amplitude_mv": empty, "width_ms": empty, "width_excluded": {}, "ahp_mv": empty, "notes": []}
    if n != peaks.size:
        row["notes"].append(f"spike counts differ ({n} here, {peaks.size} in eFEL)")
        return row
    if n == 0:
        return row
    row["peak_time_ms"] = ours["peak_time_ms"][r, :n] - peaks
    if n > 1:
        row["isi_ms"] = ours["isi_ms"][r, :n - 1] - _arr(fe["all_ISI_values"], dt)
    begin_ok = np.isfinite(ours["ap_begin_mv"][r, :n])
    n_begin_efel = _arr(fe["AP_begin_indices"]).size
    if int(begin_ok.sum()) != n_begin_efel:
        row["notes"].append(f"AP begins differ ({int(begin_ok.sum())} here, {n_begin_efel} in eFEL)")
    elif not begin_ok.all():
        why = (f"no AP begin (dV/dt does not rise through {derivative_threshold:g} mV/ms for "
               f"{derivative_window} samples)")
        if n_begin_efel == 0:
            row["notes"].append(f"{n} of {n} spikes have {why}; no amplitude or width to compare")
        else:
            _amplitudes_from_begins(row, ours, r, fe, v, peaks, begin_ok, t0, dt, why)
    else:
        _amplitudes_and_widths(row, ours, r, fe, v, t0, dt)
    if n > 1:
        ahp = _arr(fe["min_voltage_between_spikes"])
        if ahp.size == n - 1:
            row["ahp_mv"] = ours["ahp_mv"][r, :n - 1] - ahp
        else:
            row["notes"].append(f"eFEL gives {ahp.size} minima between {n} spikes")
    return row


def _amplitudes_from_begins(row: dict, ours: dict, r: int, fe: dict, v: np.ndarray, peaks: np.ndarray,
                            begin_ok: np.ndarray, t0: float, dt: float, why: str) -> None:
    """Amplitudes when some spikes have no AP begin (then eFEL compares no widths).

    eFEL's AP_amplitude and half widths pair the k-th begin with the k-th peak, which is wrong once a
    spike has no begin; its begin indices themselves are right. Each is matched to the first peak after
    it and the amplitude taken from eFEL's own values.
    """
    n = row["spikes"]
    n_begin_efel = _arr(fe["AP_begin_indices"]).size
    begins = _arr(fe["AP_begin_indices"]).astype(int)
    peak_i = np.rint((peaks - t0) / dt).astype(int)
    owner = np.searchsorted(peak_i, begins, side="right")
    ok = np.array_equal(owner, np.flatnonzero(begin_ok))
    if ok:
        amp = _arr(fe["peak_voltage"])[owner] - v[begins]
        row["amplitude_mv"] = ours["ap_amplitude_mv"][r, owner] - amp
    row["notes"].append(
        f"{n - n_begin_efel} of {n} spikes have {why}; eFEL's AP_amplitude and half widths then pair "
        "peaks with later spikes' begins, so amplitudes are compared from its AP_begin_indices and "
        "peak_voltage" + ("" if ok else " — but its begins fall before other spikes than ours")
        + ", and widths not at all")


def _amplitudes_and_widths(row: dict, ours: dict, r: int, fe: dict, v: np.ndarray, t0: float, dt: float) -> None:
    """Amplitudes and half widths when every spike has an AP begin in both."""
    n = row["spikes"]
    amp = _arr(fe["AP_amplitude"])
    if amp.size == n:
        row["amplitude_mv"] = ours["ap_amplitude_mv"][r, :n] - amp
    width = _arr(fe["AP_duration_half_width"], dt)
    rise_i, fall_i, end_i = (_arr(fe[k]) for k in ("AP_rise_indices", "AP_fall_indices", "AP_end_indices"))
    if width.size == n and rise_i.size == n and fall_i.size == n:
        same, reasons = _same_half_crossings(v, (ours["half_rise_time_ms"][r, :n] - t0) / dt,
                                             (ours["half_fall_time_ms"][r, :n] - t0) / dt,
                                             rise_i, fall_i, end_i, ours["peak_time_ms"][r, :n],
                                             ours["ap_begin_mv"][r, :n], ours["peak_mv"][r, :n], t0, dt)
        row["width_ms"] = (ours["ap_width_ms"][r, :n] - width)[same]
        row["width_excluded"] = reasons
        row["notes"].extend(f"spike {k}: {why}" for k, why in reasons.items())
    else:
        row["notes"].append(f"eFEL gives {width.size} half widths for {n} spikes (an AP end is missing)")


def _same_half_crossings(v: np.ndarray, rise: np.ndarray, fall: np.ndarray, rise_i: np.ndarray, fall_i: np.ndarray,
                         end_i: np.ndarray, peak_ms: np.ndarray, begin_mv: np.ndarray, peak_mv: np.ndarray,
                         t0: float, dt: float) -> tuple[np.ndarray, dict[int, str]]:
    """Which half widths measure the same crossings here and in eFEL, and why the others do not.

    ``rise``/``fall`` are our interpolated half-level crossings and ``rise_i``/``fall_i``/``end_i`` eFEL's
    AP_rise/AP_fall/AP_end indices, all in samples. eFEL takes, on each side, the sample whose voltage
    is nearest to the half level — on the fall only up to its AP end, the first sample after the
    steepest repolarisation where dV/dt is back above DownDerivativeThreshold (−12 mV/ms). It measures
    the same crossing as we do when that sample is one of the two around our crossing. It does not
    when (a) its AP end comes before the half level is reached (a slowly repolarising spike), or
    (b) the trace crosses the half level again later (e.g. a stimulus artifact during repolarisation)
    and a later sample happens to be nearer to the level.
    """
    same = np.ones(rise.size, dtype=bool)
    reasons: dict[int, str] = {}
    for k in range(rise.size):
        rise_same = abs(rise_i[k] - rise[k]) < 1.0
        fall_same = abs(fall_i[k] - fall[k]) < 1.0
        if rise_same and fall_same:
            continue
        same[k] = False
        half = 0.5 * (peak_mv[k] + begin_mv[k])
        if not fall_same and k < end_i.size and fall[k] > end_i[k] - 1 and fall_i[k] == end_i[k] - 1:
            reasons[k] = (f"eFEL's fall search stops at its AP end (sample {int(end_i[k])}, dV/dt back above "
                          f"−12 mV/ms) before the voltage reaches the half level {half:.2f} mV at "
                          f"{t0 + fall[k] * dt:.2f} ms; eFEL's width is {(fall_i[k] - rise_i[k]) * dt:.3f} ms, "
                          f"ours {(fall[k] - rise[k]) * dt:.3f} ms")
            continue
        side, ours_at, theirs_at = ("fall", fall[k], fall_i[k]) if not fall_same else ("rise", rise[k], rise_i[k])
        lo, hi = sorted((int(math.floor(ours_at)), int(theirs_at)))
        seg = v[lo:hi + 2]
        crossings = int(np.sum((seg[:-1] - half) * (seg[1:] - half) <= 0))
        if crossings > 1:
            reasons[k] = (f"the voltage crosses the half level {half:.2f} mV {crossings} times on the {side} "
                          f"(between {t0 + lo * dt:.2f} and {t0 + (hi + 1) * dt:.2f} ms, e.g. a stimulus "
                          f"artifact); eFEL takes the sample nearest to the level, at {t0 + theirs_at * dt:.2f} ms, "
                          f"we the first crossing after the peak at {t0 + ours_at * dt:.2f} ms")
        else:
            reasons[k] = (f"eFEL's {side} sample {t0 + theirs_at * dt:.2f} ms is not next to the half-level "
                          f"crossing at {t0 + ours_at * dt:.2f} ms")
    return same, reasons


#: eFEL features read by :func:`efel_cell_properties`.
_EFEL_CELL_FEATURES = ("voltage_base", "steady_state_voltage_stimend", "ohmic_input_resistance_vb_ssse",
                       "time_constant", "sag_ratio1", "spike_count")


def efel_cell_properties(traces, steps, threshold: float = 0.0, *, passive=None) -> dict:
    """eFEL's per-sweep subthreshold features of step sweeps, and aggregates taken as ``measure_cell`` takes them.

    Each sweep is given to eFEL with its own time axis from 0 (``T`` = t − t[0], ms, so that eFEL's
    ``voltage_base`` window, 0.9–1.0 × stim_start, is the last 10 % of the pre-step baseline), ``V`` (mV),
    ``stim_start``/``stim_end`` = its step (ms) and ``stimulus_current`` = its amplitude in nA (so
    ``ohmic_input_resistance_vb_ssse`` is in MΩ). Settings: ``Threshold`` = ``threshold``,
    ``strict_stiminterval`` on (``Spikecount`` counts spikes during the step only); everything else is
    eFEL's default (e.g. ``interp_step`` 0.1 ms, ``voltage_base_mode`` mean).

    Parameters
    ----------
    traces : sequence of Trace
        The sweeps to run eFEL on (e.g. the kept ones).
    steps : sequence of StepEpoch or None
        Their steps, one per trace (:func:`neo_pinn.cell.protocol_steps`); sweeps without one are skipped.
    threshold : float
        eFEL's spike ``Threshold``, mV.
    passive : sequence of int, optional
        Sweeps that the input resistance, τ and sag aggregates come from (as
        :attr:`neo_pinn.cell.CellProperties.passive_sweeps`); default: the sweeps with a hyperpolarising step
        and no spike.

    Returns
    -------
    dict
        ``per_sweep``: sweep → {feature: float or None} for ``voltage_base``, ``steady_state_voltage_stimend``
        (mV), ``ohmic_input_resistance_vb_ssse`` (MΩ), ``time_constant`` (ms), ``sag_ratio1``, ``Spikecount``,
        plus ``amplitude_pA`` and ``duration_ms``; aggregates ``rest_mV`` (median voltage_base over all
        sweeps), ``input_resistance_MOhm``, ``tau_ms``, ``sag_ratio`` (medians over the passive sweeps; None
        when eFEL gives none), ``capacitance_pF`` (τ/R_in), ``rheobase_pA`` (smallest amplitude with
        Spikecount ≥ 1), ``fi`` ((amplitude pA, rate Hz, count) by amplitude) and ``passive_sweeps``.

    Raises
    ------
    ConfigurationError
        efel is not installed, or ``steps`` does not match ``traces``.
    """
    try:
        import efel
    except ImportError:  # pragma: no cover - depends on the environment
        raise ConfigurationError('efel_cell_properties needs eFEL: pip install "neo-pinn[test]" '
                                 '(or pip install efel).') from None
    traces, steps = list(traces), list(steps)
    if len(traces) != len(steps):
        raise ConfigurationError(f"efel_cell_properties needs one step per trace ({len(traces)} traces, "
                                 f"{len(steps)} steps).")
    pairs = [(tr, st) for tr, st in zip(traces, steps) if st is not None]
    given = [{"T": tr.t - tr.t[0], "V": np.asarray(tr.v, dtype=float), "stim_start": [st.onset_ms - tr.t[0]],
              "stim_end": [st.offset_ms - tr.t[0]], "stimulus_current": [st.amplitude_pA / 1000.0]}
             for tr, st in pairs]
    efel.reset()
    try:
        efel.set_setting("Threshold", float(threshold))
        efel.set_setting("strict_stiminterval", True)
        values = efel.get_feature_values(given, list(_EFEL_CELL_FEATURES), raise_warnings=False) if given else []
    finally:
        efel.reset()
    per_sweep = {}
    for (tr, st), fe in zip(pairs, values):
        row = {name: (None if fe.get(name) is None or np.size(fe[name]) == 0 else float(np.ravel(fe[name])[0]))
               for name in _EFEL_CELL_FEATURES}
        row["Spikecount"] = int(row.pop("spike_count") or 0)  # eFEL 5 renamed Spikecount to spike_count
        row["amplitude_pA"], row["duration_ms"] = st.amplitude_pA, st.duration_ms
        per_sweep[tr.sweep] = row
    return _efel_aggregates(per_sweep, passive)


def _efel_aggregates(per_sweep: dict, passive) -> dict:
    """Aggregates of :func:`efel_cell_properties` from its per-sweep rows."""
    if passive is None:
        passive = [k for k, r in per_sweep.items() if r["amplitude_pA"] < 0 and r["Spikecount"] == 0]
    passive = [k for k in passive if k in per_sweep]

    def med(values):
        values = [x for x in values if x is not None and np.isfinite(x)]
        return float(np.median(values)) if values else None
    base = med(r["voltage_base"] for r in per_sweep.values())
    rin = med(per_sweep[k]["ohmic_input_resistance_vb_ssse"] for k in passive)
    tau = med(per_sweep[k]["time_constant"] for k in passive)
    sag = med(per_sweep[k]["sag_ratio1"] for k in passive if per_sweep[k]["amplitude_pA"] < 0)
    fi = sorted((r["amplitude_pA"], 1000.0 * r["Spikecount"] / r["duration_ms"], r["Spikecount"])
                for r in per_sweep.values())
    firing = [a for a, _, n in fi if n >= 1]
    return {"per_sweep": per_sweep, "rest_mV": base, "input_resistance_MOhm": rin, "tau_ms": tau, "sag_ratio": sag,
            "capacitance_pF": (1000.0 * tau / rin if tau is not None and rin else None),
            "rheobase_pA": min(firing) if firing else None, "fi": tuple(fi), "passive_sweeps": tuple(passive)}

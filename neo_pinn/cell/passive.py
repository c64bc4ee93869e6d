"""Passive and active properties of a cell measured from a current-clamp step recording, model-free.

:func:`measure_cell` reads, from the sweeps that pass quality control (:func:`~neo_pinn.cell.qc.check_sweeps`):

* **rest** — the median pre-step baseline of the kept step sweeps (mV);
* **input resistance** — the median over the *passive sweeps* of (V_ss − V_base)/ΔI (MΩ), where V_ss is the
  median of the last 10 % of the step, as eFEL's ``ohmic_input_resistance_vb_ssse`` (which uses means);
* **membrane time constant** — an exponential fitted to the start of the response as eFEL's
  ``time_constant`` fits it (see :func:`fit_time_constant`), median over the passive sweeps (ms);
* **capacitance** — τ / R_in (pF);
* **sag ratio** — eFEL's ``sag_ratio1``, (V_ss − V_min)/(V_base − V_min), on the hyperpolarising passive
  sweeps, None when the trough is not clearly below the steady state;
* **rheobase** — the smallest step with at least one spike during the step (pA), and the **f–I** curve.

The passive sweeps are the kept, non-spiking sweeps with a hyperpolarising step whose response is above
the noise, the smallest steps first (least nonlinear: at most :data:`MAX_PASSIVE_SWEEPS`, with |ΔI| up to
twice the smallest); without hyperpolarising sweeps the smallest depolarising subthreshold ones are used.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Sequence

import numpy as np
from scipy.ndimage import uniform_filter1d
from scipy.optimize import minimize_scalar

from ..errors import ConfigurationError
from ..trace import Trace
from .levels import noise_level_mV
from .qc import QCReport, SweepQC, check_sweeps, sweep_spike_times
from .steps import StepEpoch, protocol_steps

__all__ = ["CellProperties", "measure_cell", "fit_time_constant", "passive_sweeps", "sag_ratio",
           "MAX_PASSIVE_SWEEPS", "TAU_SKIP_MS"]

#: most sweeps the passive properties are taken from
MAX_PASSIVE_SWEEPS = 3
#: the fit of τ starts this long after the step onset (eFEL skips 10 samples of its 0.1 ms grid), ms
TAU_SKIP_MS = 1.0
#: eFEL's "flat" rule: the decay has ended when the voltage moves less than 0.005 mV/ms over 70 ms
FLAT_SLOPE_MV_PER_MS = 5e-3
FLAT_WINDOW_MS = 70.0


@dataclass(frozen=True)
class CellProperties:
    """Model-free properties of a cell from its step sweeps.

    Parameters
    ----------
    rest_mV : float
        Median pre-step baseline of the kept step sweeps, mV.
    input_resistance_MOhm : float
        Median (V_ss − V_base)/ΔI over the passive sweeps, MΩ.
    tau_ms : float or None
        Median membrane time constant over the passive sweeps, ms (None when no fit converged).
    capacitance_pF : float or None
        τ / R_in, pF.
    sag_ratio : float or None
        Median eFEL ``sag_ratio1`` over the hyperpolarising passive sweeps; None when there is no sag.
    rheobase_pA : float or None
        Smallest step amplitude with at least one spike during the step, pA; None when the cell never fires.
    fi : tuple of (float, float, int)
        (amplitude pA, spikes during the step / step duration in Hz, spike count) per kept step sweep,
        by amplitude.
    subthreshold_sweeps, spiking_sweeps : tuple of int
        Kept step sweeps without / with spikes (or spike-shaped excursions) during the step.
    step_spacing_pA : float or None
        Typical increment between step amplitudes (median of the positive differences), pA.
    passive_sweeps : tuple of int
        Sweeps that R_in, τ and the sag ratio come from.
    threshold_mV : float
        Spike threshold used, mV.
    """

    rest_mV: float
    input_resistance_MOhm: float
    tau_ms: float | None
    capacitance_pF: float | None
    sag_ratio: float | None
    rheobase_pA: float | None
    fi: tuple[tuple[float, float, int], ...]
    subthreshold_sweeps: tuple[int, ...]
    spiking_sweeps: tuple[int, ...]
    step_spacing_pA: float | None
    passive_sweeps: tuple[int, ...] = ()
    threshold_mV: float = 0.0

    def to_dict(self) -> dict:
        """JSON-ready dictionary."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["fi"] = [list(row) for row in self.fi]
        for name in ("subthreshold_sweeps", "spiking_sweeps", "passive_sweeps"):
            d[name] = list(d[name])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "CellProperties":
        """Inverse of :meth:`to_dict`."""
        d = {k: v for k, v in d.items() if k in {f.name for f in fields(cls)}}
        d["fi"] = tuple((float(a), float(r), int(n)) for a, r, n in d.get("fi", ()))
        for name in ("subthreshold_sweeps", "spiking_sweeps", "passive_sweeps"):
            d[name] = tuple(int(k) for k in d.get(name, ()))
        return cls(**d)

    def table(self) -> str:
        """Plain-text table of the properties and the f–I curve."""
        def fmt(x, spec):
            return "-" if x is None else format(x, spec)
        rows = [f"rest                {self.rest_mV:9.2f} mV",
                f"input resistance    {self.input_resistance_MOhm:9.1f} MΩ",
                f"time constant       {fmt(self.tau_ms, '9.2f')} ms",
                f"capacitance         {fmt(self.capacitance_pF, '9.1f')} pF",
                f"sag ratio           {fmt(self.sag_ratio, '9.3f')}",
                f"rheobase            {fmt(self.rheobase_pA, '9.1f')} pA",
                f"step spacing        {fmt(self.step_spacing_pA, '9.1f')} pA",
                f"passive sweeps      {', '.join(map(str, self.passive_sweeps)) or '-'}",
                "", f"{'step pA':>8} {'rate Hz':>8} {'spikes':>6}"]
        rows += [f"{a:>8.1f} {r:>8.1f} {n:>6d}" for a, r, n in self.fi]
        return "\n".join(rows)


def _decay_window(t: np.ndarray, u: np.ndarray, step: StepEpoch, dt: float) -> tuple[int, int] | None:
    """Sample range of the decay that τ is fitted on (``u``: the smoothed response turned into a fall).

    From :data:`TAU_SKIP_MS` after the onset to eFEL's "flat": the first sample whose voltage falls by less
    than :data:`FLAT_SLOPE_MV_PER_MS` × L over the next L = 70 ms (less when half the first half of the
    step is shorter), searched up to the middle of the step minus L, which is the end when none is flat.
    """
    i0 = int(np.searchsorted(t, step.onset_ms + TAU_SKIP_MS))
    t_mid = 0.5 * (step.onset_ms + step.offset_ms)
    look_ms = min(FLAT_WINDOW_MS, 0.5 * (t_mid - t[min(i0, t.size - 1)]))
    look = int(round(look_ms / dt))
    cap = int(np.searchsorted(t, t_mid - look_ms))
    if look < 1 or cap - i0 < 10:
        return None
    k = np.arange(i0, cap)
    flat = np.flatnonzero(u[k + look] - u[k] > -FLAT_SLOPE_MV_PER_MS * look * dt)
    i1 = int(k[flat[0]]) if flat.size else cap
    return (i0, i1) if i1 - i0 >= 10 else (i0, cap)


def _log_fit(tt: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Slope of a straight line through (tt, y) and eFEL's normalised residual (RSS / range²)."""
    slope, icept = np.polyfit(tt, y, 1)
    r = y - (slope * tt + icept)
    span = float(np.ptp(y))
    return float(slope), (float(r @ r) / span ** 2 if span > 0 else np.inf)


def fit_time_constant(trace: Trace, step: StepEpoch) -> tuple[float, float, float] | None:
    """Membrane time constant from the start of a subthreshold step response, as eFEL's ``time_constant``.

    eFEL (``Subthreshold.cpp``, ``__time_constant``) takes the first half of a hyperpolarising step from
    10 samples of its 0.1 ms grid (1 ms) after the onset, ends the decay at the first point after which the
    voltage falls by less than 0.005 mV/ms over the next 70 ms (searched up to the middle of the step minus
    70 ms: the trough of a sag, or where the exponential has settled), and fits a straight line to
    log(V − V_end + x), choosing the offset x ∈ [0, 5] mV by golden-section search for the smallest
    RSS / range² of that line; τ = −1/slope. The same is done here on the voltage smoothed over 1 ms (eFEL
    works on the raw samples, so on noisy recordings its window end and V_end — one sample — are set by
    the noise), with x searched by bounded scalar minimisation over the 5 mV above the smallest offset
    that keeps every logarithm finite. Depolarising steps are turned upside down first.

    Parameters
    ----------
    trace : Trace
        The sweep.
    step : StepEpoch
        Its step (amplitude ≠ 0).

    Returns
    -------
    (tau_ms, start_ms, end_ms) or None
        τ in ms and the fitted window (trace time, ms); None when the window is too short or no decay is
        found.
    """
    t, dt = trace.t, trace.dt
    sign = -1.0 if step.amplitude_pA > 0 else 1.0  # turn the response into a fall
    u = sign * uniform_filter1d(trace.v, size=max(1, int(round(1.0 / dt))), mode="nearest")
    window = _decay_window(t, u, step, dt)
    if window is None:
        return None
    i0, i1 = window
    tt, y = t[i0:i1] - t[i0], u[i0:i1]
    v_end = float(y[-1])
    x_lo = max(0.0, float(np.max(v_end - y))) + 1e-6

    def cost(x: float) -> float:
        return _log_fit(tt, np.log(y - v_end + x))[1]
    best = minimize_scalar(cost, bounds=(x_lo, x_lo + 5.0), method="bounded", options={"xatol": 1e-3})
    slope = _log_fit(tt, np.log(y - v_end + float(best.x)))[0]
    if not np.isfinite(slope) or slope >= 0:
        return None
    return -1.0 / slope, float(t[i0]), float(t[i1 - 1])


def sag_ratio(trace: Trace, step: StepEpoch, baseline_mV: float, steady_mV: float) -> tuple[float, float]:
    """eFEL's ``sag_ratio1`` of a hyperpolarising step and the sag depth.

    Returns ``((V_ss − V_min)/(V_base − V_min), V_ss − V_min)`` in (1, mV), where V_min is the minimum of the
    voltage smoothed over 1 ms during the step (eFEL takes the raw minimum, which noise deepens).
    """
    during = (trace.t >= step.onset_ms) & (trace.t < step.offset_ms)
    vs = uniform_filter1d(trace.v, size=max(1, int(round(1.0 / trace.dt))), mode="nearest")
    vmin = float(np.min(vs[during]))
    depth = steady_mV - vmin
    den = baseline_mV - vmin
    return (depth / den if den > 0 else float("nan")), depth


def passive_sweeps(qc: QCReport, noise_mV: dict[int, float] | None = None) -> tuple[int, ...]:
    """The sweeps passive properties are measured on (see the module docstring).

    Parameters
    ----------
    qc : QCReport
        Quality control of the sweeps.
    noise_mV : dict, optional
        Sweep → recording noise SD, mV. A response must exceed max(1 mV, 5 × noise, 3 × the baseline SD):
        in a spontaneously active cell the baseline swings by several mV and a small step's response
        is lost in it.
    """
    noise_mV = noise_mV or {}

    def usable(s: SweepQC) -> bool:
        return (s.kept and not s.spiking and s.step is not None and s.response_mV is not None
                and s.step.amplitude_pA != 0
                and abs(s.response_mV) >= max(1.0, 5.0 * noise_mV.get(s.sweep, 0.0), 3.0 * s.baseline_sd_mV)
                and np.sign(s.response_mV) == np.sign(s.step.amplitude_pA))
    cands = [s for s in qc.sweeps if usable(s)]
    hyper = [s for s in cands if s.step.amplitude_pA < 0]
    pool = sorted(hyper or cands, key=lambda s: abs(s.step.amplitude_pA))
    if not pool:
        return ()
    smallest = abs(pool[0].step.amplitude_pA)
    return tuple(s.sweep for s in pool if abs(s.step.amplitude_pA) <= 2 * smallest + 1e-9)[:MAX_PASSIVE_SWEEPS]


def _fi(kept: list[SweepQC]) -> tuple[tuple[tuple[float, float, int], ...], float | None]:
    """f–I rows by amplitude and the rheobase."""
    rows = sorted(((s.step.amplitude_pA, 1000.0 * s.n_spikes / s.step.duration_ms, s.n_spikes) for s in kept),
                  key=lambda r: r[0])
    firing = [a for a, _, n in rows if n >= 1]
    return tuple((float(a), float(r), int(n)) for a, r, n in rows), (float(min(firing)) if firing else None)


def _spacing(steps: Sequence[StepEpoch]) -> float | None:
    """Median positive increment between sorted step amplitudes, pA."""
    amps = np.unique(np.round([s.amplitude_pA for s in steps], 6))
    d = np.diff(amps)
    d = d[d > 0]
    return float(np.median(d)) if d.size else None


def measure_cell(traces: Sequence[Trace], qc: QCReport | None = None, *, threshold: float = 0.0,
                 rearm: float | None = None) -> CellProperties | None:
    """Rest, input resistance, τ, capacitance, sag, rheobase and f–I of a step recording.

    Parameters
    ----------
    traces : sequence of Trace
        The sweeps (mV, pA, ms).
    qc : QCReport, optional
        Quality control of these sweeps (run with the same threshold when not given).
    threshold : float
        Spike threshold, mV (used when ``qc`` is not given, and for the f–I counts).
    rearm : float, optional
        Re-arm level of the spike detector, mV (default threshold − 10).

    Returns
    -------
    CellProperties or None
        None when the sweeps hold no step protocol or no passive sweep is usable.

    Raises
    ------
    ConfigurationError
        ``qc`` does not describe these sweeps.
    """
    traces = list(traces)
    if not traces or protocol_steps(traces) is None:
        return None
    if qc is None:
        qc = check_sweeps(traces, threshold=threshold, rearm=rearm)
    if sorted(s.sweep for s in qc.sweeps) != sorted(tr.sweep for tr in traces):
        raise ConfigurationError("The QC report describes other sweeps than the traces given; run check_sweeps "
                                 "on these traces.")
    by_sweep = {tr.sweep: tr for tr in traces}
    kept = [s for s in qc.sweeps if s.kept and s.step is not None and s.response_mV is not None]
    if not kept:
        return None
    noise = {s.sweep: noise_level_mV(by_sweep[s.sweep]) for s in kept}
    chosen = passive_sweeps(qc, noise)
    if not chosen:
        return None
    info = {s.sweep: s for s in kept}
    rin = float(np.median([info[k].response_mV / info[k].step.amplitude_pA for k in chosen])) * 1000.0
    taus = [f[0] for f in (fit_time_constant(by_sweep[k], info[k].step) for k in chosen) if f is not None]
    tau = float(np.median(taus)) if taus else None
    sags = [sag_ratio(by_sweep[k], info[k].step, info[k].baseline_mV, info[k].steady_state_mV)
            for k in chosen if info[k].step.amplitude_pA < 0]
    sag = None
    if sags and np.median([d for _, d in sags]) > max(1.0, 3.0 * float(np.median([noise[k] for k in chosen]))):
        sag = float(np.median([r for r, _ in sags]))
    if threshold != qc.threshold_mV:
        kept = [_recount(s, by_sweep[s.sweep], threshold, rearm) for s in kept]
    fi, rheobase = _fi(kept)
    return CellProperties(
        rest_mV=float(np.median([s.baseline_mV for s in kept])), input_resistance_MOhm=rin, tau_ms=tau,
        capacitance_pF=(1000.0 * tau / rin if tau is not None and rin > 0 else None), sag_ratio=sag,
        rheobase_pA=rheobase, fi=fi, subthreshold_sweeps=tuple(s.sweep for s in kept if not s.spiking),
        spiking_sweeps=tuple(s.sweep for s in kept if s.spiking),
        step_spacing_pA=_spacing([s.step for s in qc.sweeps if s.step is not None]),
        passive_sweeps=tuple(chosen), threshold_mV=float(threshold))


def _recount(s: SweepQC, trace: Trace, threshold: float, rearm: float | None) -> SweepQC:
    """``s`` with its spikes during the step counted at another threshold."""
    sp = sweep_spike_times(trace, threshold, rearm)
    n = int(((sp >= s.step.onset_ms) & (sp < s.step.offset_ms)).sum())
    return SweepQC(**{**{f.name: getattr(s, f.name) for f in fields(s)}, "n_spikes": n})

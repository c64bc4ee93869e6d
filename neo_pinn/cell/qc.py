"""Sweep quality control of a current-clamp recording, before anything is measured or fitted.

:func:`check_sweeps` measures every sweep (pre-step baseline, steady-state response to its step, spikes)
and excludes, with a reason code and a sentence with the numbers, the sweeps that break one of four rules:

``no_response``
    The step should move the voltage — the robust input resistance of the *other* subthreshold sweeps
    (the median of the upper half of their ΔV/ΔI, so up to half of them may be non-responders) times this
    sweep's |ΔI| is above :attr:`QCConfig.min_expected_response_mV` and three times the SD of its
    baseline — but the observed
    steady-state change, in the expected direction, is below :attr:`QCConfig.response_fraction` of that,
    and the sweep does not spike (the command was not delivered: amplifier off, bridge open, …).
``clipped``
    The voltage sits at its sweep's extreme value (within one ADC step) for at least
    :attr:`QCConfig.clip_ms`, or goes beyond ±:attr:`QCConfig.max_abs_mV` (amplifier or ADC saturation).
    The flat-run test is skipped for noise-free (simulated) sweeps, see :data:`SMOOTH_RATIO`.
``unstable_baseline``
    The spike-free pre-step baseline drifts (median of its last quarter minus its first quarter) by more
    than :attr:`QCConfig.baseline_drift_mV`, or its standard deviation about a straight line exceeds
    :attr:`QCConfig.baseline_sd_mV`, or its median lies more than :attr:`QCConfig.baseline_offset_mV` from the
    robust (Theil–Sen) trend of the other sweeps' baselines over the recording. The drift and SD tests are
    skipped when the cell fires spontaneously (spikes in the baselines of at least
    :attr:`QCConfig.spontaneous_fraction` of the sweeps): its baseline is a pacemaker ramp, not a rest.
``inconsistent``
    Among the subthreshold sweeps left, the steady-state response is not monotonic in the step amplitude
    (a larger step gives both a smaller change from baseline and a lower steady-state voltage, by more
    than :attr:`QCConfig.monotonic_tolerance_mV`, than a smaller step); the sweeps that break it are
    removed one at a time, worst residual from the Theil–Sen line of ΔV on ΔI first, until the rest is
    monotonic, so well-behaved neighbours stay.

Sweeps without a step (no step protocol) are checked for clipping only (their whole sweep is response). A sweep counts as
spiking — and is then left out of the subthreshold rules (its "steady state" is not steady) — when it has a
spike during its step or a spike-shaped excursion there (:attr:`QCConfig.spike_excursion_mV` above the 5 ms
running median), which catches spikes that never cross the chosen threshold. Spikes are counted on the
voltage after a 3-sample median filter, so single-sample artefacts (stimulator pickup) are not spikes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Sequence

import numpy as np
from scipy.ndimage import median_filter
from scipy.stats import theilslopes

from ..errors import ConfigurationError
from ..features.single_trace import spike_times
from ..trace import Trace
from .steps import StepEpoch, protocol_steps

__all__ = ["QCConfig", "SweepQC", "QCReport", "check_sweeps", "sweep_spike_times", "QC_REASONS"]

#: every reason code a :class:`SweepQC` can carry
QC_REASONS = ("no_response", "clipped", "unstable_baseline", "inconsistent", "user_excluded", "user_kept")

#: spike-free margins around each spike removed from the baseline, ms (before, after the crossing)
SPIKE_MASK_MS = (3.0, 15.0)
#: a sweep whose median |second difference| is below this fraction of its median |first difference| has no
#: sample noise (a simulation): flat runs at its extremes are settled steady states, not clipping
SMOOTH_RATIO = 0.3
#: window of the running median that spike-shaped excursions are measured from, ms
EXCURSION_WINDOW_MS = 5.0


@dataclass(frozen=True)
class QCConfig:
    """Thresholds of the sweep quality-control rules.

    Parameters
    ----------
    min_expected_response_mV : float
        A sweep is tested for ``no_response`` only when its expected |ΔV| is above this (and above three
        times its baseline SD), mV (3).
    response_fraction : float
        ``no_response`` when the observed steady-state change is below this fraction of the expected one (0.2).
    baseline_drift_mV : float
        Largest change between the first and last quarters of the spike-free baseline, mV (5).
    baseline_sd_mV : float
        Largest SD of the spike-free baseline about its straight-line trend, mV (2).
    baseline_offset_mV : float
        Largest distance of a sweep's baseline from the trend of the other sweeps' baselines, mV (15).
    clip_ms : float
        Shortest run at the sweep's extreme value taken for clipping, ms (2).
    max_abs_mV : float
        Voltages beyond ± this are saturation, mV (200).
    monotonic_tolerance_mV : float
        A larger step may give a response this much smaller than a smaller step before it counts as
        non-monotonic, mV (1).
    spike_excursion_mV : float
        A rise this far above the 5 ms running median marks a sweep as spiking whatever the threshold, mV (15).
    spontaneous_fraction : float
        The cell fires spontaneously when at least this fraction of sweeps has spikes in its baseline (0.25).
    """

    min_expected_response_mV: float = 3.0
    response_fraction: float = 0.2
    baseline_drift_mV: float = 5.0
    baseline_sd_mV: float = 2.0
    baseline_offset_mV: float = 15.0
    clip_ms: float = 2.0
    max_abs_mV: float = 200.0
    monotonic_tolerance_mV: float = 1.0
    spike_excursion_mV: float = 15.0
    spontaneous_fraction: float = 0.25

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
                raise ConfigurationError(f"QCConfig.{f.name} must be a finite number, got {value!r}.")
            if value < 0:
                raise ConfigurationError(f"QCConfig.{f.name} must not be negative, got {value!r}.")
        for name in ("response_fraction", "spontaneous_fraction"):
            if not 0 < getattr(self, name) <= 1:
                raise ConfigurationError(f"QCConfig.{name} must lie in (0, 1], got {getattr(self, name)!r}.")
        for name in ("clip_ms", "max_abs_mV", "baseline_drift_mV", "baseline_sd_mV", "baseline_offset_mV",
                     "spike_excursion_mV"):
            if getattr(self, name) == 0:
                raise ConfigurationError(f"QCConfig.{name} must be positive, got 0.")

    def to_dict(self) -> dict:
        """JSON-ready dictionary."""
        return asdict(self)


@dataclass(frozen=True)
class SweepQC:
    """Quality-control verdict and measurements of one sweep.

    Parameters
    ----------
    sweep : int
        Sweep index in the recording.
    kept : bool
        Whether the sweep is used.
    reasons : tuple of str
        Reason codes (:data:`QC_REASONS`); a user-kept sweep keeps the codes it was flagged with.
    details : tuple of str
        One sentence per reason, with the numbers.
    step : StepEpoch or None
        The sweep's current step (None without a step protocol).
    baseline_mV : float
        Median of the spike-free pre-step baseline (the whole sweep without a step), mV.
    baseline_sd_mV : float
        SD of the spike-free baseline about its straight-line trend, mV.
    response_mV : float or None
        Steady-state voltage change during the step (median of its last 10 % minus the baseline), mV.
    n_spikes : int
        Spikes during the step (during the sweep without a step).
    spiking : bool
        Spikes, or a spike-shaped excursion, during the step: left out of the subthreshold rules.
    baseline_drift_mV : float
        Median of the last minus the first quarter of the spike-free baseline, mV.
    steady_state_mV : float or None
        Median voltage over the last 10 % of the step, mV.
    """

    sweep: int
    kept: bool
    reasons: tuple[str, ...] = ()
    details: tuple[str, ...] = ()
    step: StepEpoch | None = None
    baseline_mV: float = float("nan")
    baseline_sd_mV: float = float("nan")
    response_mV: float | None = None
    n_spikes: int = 0
    spiking: bool = False
    baseline_drift_mV: float = float("nan")
    steady_state_mV: float | None = None

    def to_dict(self) -> dict:
        """JSON-ready dictionary."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["reasons"], d["details"] = list(self.reasons), list(self.details)
        d["step"] = None if self.step is None else self.step.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SweepQC":
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        d["reasons"], d["details"] = tuple(d.get("reasons", ())), tuple(d.get("details", ()))
        d["step"] = None if d.get("step") is None else StepEpoch(**d["step"])
        return cls(**{k: v for k, v in d.items() if k in {f.name for f in fields(cls)}})


@dataclass(frozen=True)
class QCReport:
    """Quality control of all sweeps of a recording.

    Parameters
    ----------
    sweeps : tuple of SweepQC
        One per sweep, in the order given.
    config : QCConfig
        The thresholds used.
    threshold_mV : float
        Spike threshold used, mV.
    """

    sweeps: tuple[SweepQC, ...]
    config: QCConfig = field(default_factory=QCConfig)
    threshold_mV: float = 0.0

    @property
    def kept(self) -> tuple[int, ...]:
        """Indices of the sweeps used."""
        return tuple(s.sweep for s in self.sweeps if s.kept)

    @property
    def excluded(self) -> dict[int, tuple[str, ...]]:
        """Sweep index → reason codes, for every excluded sweep."""
        return {s.sweep: s.reasons for s in self.sweeps if not s.kept}

    def get(self, sweep: int) -> SweepQC:
        """The verdict of sweep ``sweep`` (KeyError when absent)."""
        for s in self.sweeps:
            if s.sweep == sweep:
                return s
        raise KeyError(sweep)

    def to_dict(self) -> dict:
        """JSON-ready dictionary."""
        return {"sweeps": [s.to_dict() for s in self.sweeps], "config": self.config.to_dict(),
                "threshold_mV": self.threshold_mV}

    @classmethod
    def from_dict(cls, d: dict) -> "QCReport":
        """Inverse of :meth:`to_dict`."""
        return cls(sweeps=tuple(SweepQC.from_dict(s) for s in d["sweeps"]),
                   config=QCConfig(**d.get("config", {})), threshold_mV=float(d.get("threshold_mV", 0.0)))

    def table(self) -> str:
        """Plain-text table, one row per sweep, then the details of every flagged sweep."""
        head = (f"{'sweep':>5} {'kept':>4} {'step pA':>8} {'base mV':>8} {'sd mV':>6} {'dV mV':>7} "
                f"{'spikes':>6}  reasons")
        rows = [head, "-" * len(head)]
        for s in self.sweeps:
            amp = "-" if s.step is None else f"{s.step.amplitude_pA:.0f}"
            dv = "-" if s.response_mV is None else f"{s.response_mV:.1f}"
            rows.append(f"{s.sweep:>5} {'yes' if s.kept else 'no':>4} {amp:>8} {s.baseline_mV:>8.1f} "
                        f"{s.baseline_sd_mV:>6.2f} {dv:>7} {s.n_spikes:>6}  {', '.join(s.reasons)}")
        notes = [f"sweep {s.sweep}: {d}" for s in self.sweeps for d in s.details]
        return "\n".join(rows + ([""] + notes if notes else []))


def sweep_spike_times(trace: Trace, threshold: float = 0.0, rearm: float | None = None) -> np.ndarray:
    """Spike times of a sweep (ms), on the voltage after a 3-sample median filter.

    The filter removes single-sample artefacts (which cross any threshold) and keeps every spike that
    stays above the threshold for two samples or more. See :func:`~neo_pinn.features.single_trace.spike_times`.
    """
    return spike_times(median_filter(trace.v, size=3, mode="nearest"), trace.t, threshold, rearm)


def _spike_mask(t: np.ndarray, spikes: np.ndarray) -> np.ndarray:
    """True for samples away from every spike (:data:`SPIKE_MASK_MS`)."""
    keep = np.ones(t.size, dtype=bool)
    for s in spikes:
        keep &= ~((t > s - SPIKE_MASK_MS[0]) & (t < s + SPIKE_MASK_MS[1]))
    return keep


def _clip_detail(trace: Trace, cfg: QCConfig) -> str | None:
    """Why the sweep is clipped, or None."""
    v = trace.v
    peak = float(np.max(np.abs(v)))
    if peak > cfg.max_abs_mV:
        return f"the voltage reaches {peak:.1f} mV in magnitude, beyond ±{cfg.max_abs_mV:g} mV (saturation)"
    d = np.abs(np.diff(v))
    moving = d[d > 1e-9]
    if moving.size == 0:
        return None
    tol = 0.5 * float(moving.min())  # half an ADC step
    at_max, at_min = np.abs(v - v.max()) <= tol, np.abs(v - v.min()) <= tol
    free = ~(at_max | at_min)
    pair = free[:-1] & free[1:]
    d1 = d[pair]
    d2 = np.abs(np.diff(v, 2))[pair[:-1] & pair[1:]]
    if d1.size == 0 or d2.size == 0 or np.median(d1) <= 1e-9 or np.median(d2) < SMOOTH_RATIO * np.median(d1):
        # a noise-free (simulated) sweep, smooth from sample to sample: a settled steady state looks the
        # same as a clip there
        return None
    for name, level, at in (("maximum", v.max(), at_max), ("minimum", v.min(), at_min)):
        run = _longest_run(at) * trace.dt
        if run >= cfg.clip_ms:
            return (f"the voltage sits at its {name} {level:.2f} mV for {run:.1f} ms "
                    f"(≥ {cfg.clip_ms:g} ms: amplifier or ADC saturation)")
    return None


def _longest_run(mask: np.ndarray) -> int:
    """Length of the longest run of True."""
    if not mask.any():
        return 0
    padded = np.concatenate(([0], mask.astype(np.int8), [0]))
    edges = np.flatnonzero(np.diff(padded))
    return int(np.max(edges[1::2] - edges[0::2]))


def _measure(trace: Trace, step: StepEpoch | None, cfg: QCConfig, threshold: float,
             rearm: float | None) -> dict:
    """Baseline, response, spikes and clipping of one sweep."""
    t, v = trace.t, trace.v
    spikes = sweep_spike_times(trace, threshold, rearm)
    if step is not None:
        pre = t < step.onset_ms
        during = (t >= step.onset_ms) & (t < step.offset_ms)
        in_step = (spikes >= step.onset_ms) & (spikes < step.offset_ms)
        n_spikes, base_spikes = int(in_step.sum()), int((spikes < step.onset_ms).sum())
    else:
        pre = np.ones(t.size, dtype=bool)
        during = np.zeros(t.size, dtype=bool)
        n_spikes = base_spikes = int(spikes.size)
    if pre.sum() < 3:
        pre = np.zeros(t.size, dtype=bool)
        pre[:3] = True
    m = pre & _spike_mask(t, spikes)
    if m.sum() < 3:
        m = pre
    vb, tb = v[m], t[m]
    q = max(1, vb.size // 4)
    slope, icept = np.polyfit(tb - tb[0], vb, 1)
    out = {"baseline": float(np.median(vb)), "drift": float(np.median(vb[-q:]) - np.median(vb[:q])),
           "sd": float(np.std(vb - (slope * (tb - tb[0]) + icept))), "n_spikes": n_spikes,
           "base_spikes": base_spikes, "ss": None, "response": None, "spiking": n_spikes > 0,
           "clip": _clip_detail(trace, cfg)}
    if step is not None and during.sum() >= 3:
        w = (t >= step.offset_ms - 0.1 * step.duration_ms) & during
        ss = float(np.median(v[w])) if w.any() else float(v[during][-1])
        out["ss"], out["response"] = ss, ss - out["baseline"]
        win = max(3, int(round(EXCURSION_WINDOW_MS / trace.dt)) | 1)
        vm = median_filter(v, size=3, mode="nearest")
        exc = float(np.max((vm - median_filter(v, size=win, mode="nearest"))[during]))
        out["spiking"] = out["spiking"] or exc >= cfg.spike_excursion_mV
    return out


def _baseline_rule(k: int, meas: list[dict], active: bool, cfg: QCConfig, ref: list[int]) -> list[str]:
    """Sentences for an unstable baseline of sweep ``k`` (empty when stable)."""
    m, out = meas[k], []
    if not active and abs(m["drift"]) > cfg.baseline_drift_mV:
        out.append(f"the baseline drifts by {m['drift']:+.1f} mV before the step "
                   f"(limit ±{cfg.baseline_drift_mV:g} mV)")
    if not active and m["sd"] > cfg.baseline_sd_mV:
        out.append(f"the baseline SD is {m['sd']:.2f} mV (limit {cfg.baseline_sd_mV:g} mV)")
    others = [j for j in ref if j != k]
    if len(others) >= 2:
        x = np.array(others, dtype=float)
        y = np.array([meas[j]["baseline"] for j in others])
        if len(others) >= 3 and np.ptp(x) > 0:
            slope, icept = theilslopes(y, x)[:2]
            expected = float(icept + slope * k)
        else:
            expected = float(np.median(y))
        off = m["baseline"] - expected
        if abs(off) > cfg.baseline_offset_mV:
            out.append(f"the baseline {m['baseline']:.1f} mV lies {off:+.1f} mV from the other sweeps' trend "
                       f"({expected:.1f} mV; limit ±{cfg.baseline_offset_mV:g} mV)")
    return out


def _no_response(k: int, steps, meas: list[dict], cand: list[int], cfg: QCConfig) -> str | None:
    """Sentence when sweep ``k`` does not respond to its step, else None."""
    amp = steps[k].amplitude_pA
    rs = sorted(meas[j]["response"] / steps[j].amplitude_pA for j in cand if j != k)
    if len(rs) < 2:
        return None
    upper = rs[len(rs) // 2:]  # upper half: robust to up to half the sweeps not responding
    r_ref = float(np.median(upper))
    expected = r_ref * abs(amp)
    # a baseline that swings (spontaneous firing) hides responses of a few times its SD
    if r_ref <= 0 or expected <= max(cfg.min_expected_response_mV, 3.0 * meas[k]["sd"]):
        return None
    observed = meas[k]["response"] * np.sign(amp)
    if observed >= cfg.response_fraction * expected:
        return None
    pct = 100.0 * observed / expected
    return (f"its {amp:+.0f} pA step moves the voltage by {meas[k]['response']:+.1f} mV, "
            f"{0.0 if abs(pct) < 0.5 else pct:.0f} % of the {np.sign(amp) * expected:+.1f} mV expected from the other "
            f"sweeps' input resistance ({1000 * r_ref:.0f} MΩ; limit {100 * cfg.response_fraction:.0f} %), "
            "and it does not spike")


def _inconsistent(idx: list[int], steps, meas: list[dict], cfg: QCConfig) -> dict[int, str]:
    """Subthreshold sweeps that break the monotonic response, with a sentence each."""
    order = sorted(idx, key=lambda j: steps[j].amplitude_pA)
    amp = {j: steps[j].amplitude_pA for j in order}
    dv = {j: meas[j]["response"] for j in order}
    vss = {j: meas[j]["ss"] for j in order}
    tol = cfg.monotonic_tolerance_mV

    def breakers(left: list[int]) -> set[int]:
        # a pair breaks the order when both the change from baseline and the steady-state voltage itself
        # go down for a larger step: a baseline that differs between sweeps (a spontaneously active cell
        # caught at another phase of its cycle) moves only the first
        bad = set()
        for a_i, i in enumerate(left):
            for j in left[a_i + 1:]:
                if amp[j] > amp[i] and dv[j] < dv[i] - tol and vss[j] < vss[i] - tol:
                    bad.update((i, j))
        return bad

    left, out = list(order), {}
    bad = breakers(left)
    if not bad or len(order) < 3:
        return out
    slope, icept = theilslopes([dv[j] for j in order], [amp[j] for j in order])[:2]
    while bad and len(out) < len(order) // 2:
        worst = max(bad, key=lambda j: abs(dv[j] - (icept + slope * amp[j])))
        pred = icept + slope * amp[worst]
        out[worst] = (f"its response {dv[worst]:+.1f} mV to {amp[worst]:+.0f} pA breaks the monotonic "
                      f"I–V of the other subthreshold sweeps (trend {pred:+.1f} mV, "
                      f"{1000 * slope:.0f} MΩ)")
        left.remove(worst)
        bad = breakers(left)
    return out


def _overrides(traces: Sequence[Trace], keep, exclude) -> tuple[set[int], set[int]]:
    """Validated override sets."""
    known = {tr.sweep for tr in traces}
    keep, exclude = {int(k) for k in keep}, {int(k) for k in exclude}
    unknown = sorted((keep | exclude) - known)
    if unknown:
        raise ConfigurationError(f"Sweeps {unknown} are not in the recording (its sweeps: {sorted(known)}).")
    both = sorted(keep & exclude)
    if both:
        raise ConfigurationError(f"Sweeps {both} are both kept and excluded; give each in one list only.")
    return keep, exclude


def check_sweeps(traces: Sequence[Trace], *, config: QCConfig | None = None, keep: Sequence[int] = (),
                 exclude: Sequence[int] = (), threshold: float = 0.0, rearm: float | None = None) -> QCReport:
    """Quality control of the sweeps of a current-clamp recording (see the module docstring for the rules).

    Parameters
    ----------
    traces : sequence of Trace
        The sweeps (voltage in mV, stimulus in pA, time in ms).
    config : QCConfig, optional
        Thresholds of the rules (defaults: :class:`QCConfig`).
    keep, exclude : sequence of int
        Sweep indices forced in (reason ``user_kept`` added to any it was flagged with) or out
        (``user_excluded``; such sweeps are not used as references for the others).
    threshold : float
        Spike threshold, mV.
    rearm : float, optional
        Level the voltage must fall below before the next spike counts, mV (default threshold − 10).

    Returns
    -------
    QCReport

    Raises
    ------
    ConfigurationError
        An override names a sweep that is not there, or a sweep is both kept and excluded.
    """
    cfg = QCConfig() if config is None else config
    if not isinstance(cfg, QCConfig):
        raise ConfigurationError(f"config must be a QCConfig, got {type(cfg).__name__}.")
    traces = list(traces)
    keep_set, exclude_set = _overrides(traces, keep, exclude)
    steps = protocol_steps(traces) if traces else None
    steps = list(steps) if steps is not None else [None] * len(traces)
    meas = [_measure(tr, st, cfg, threshold, rearm) for tr, st in zip(traces, steps)]
    n = len(traces)
    reasons: list[dict[str, str]] = [{} for _ in range(n)]
    user_out = {k for k in range(n) if traces[k].sweep in exclude_set}
    for k in range(n):
        if meas[k]["clip"]:
            reasons[k]["clipped"] = meas[k]["clip"]
    active = n > 0 and sum(m["base_spikes"] > 0 for m in meas) >= _spontaneous_count(cfg, n)
    ref = [k for k in range(n) if k not in user_out and not reasons[k]]
    for k in range(n):
        if steps[k] is None:
            continue  # without a step the whole sweep is the response: no baseline to judge
        why = _baseline_rule(k, meas, active, cfg, ref)
        if why:
            reasons[k]["unstable_baseline"] = "; ".join(why)
    sub = [k for k in range(n) if steps[k] is not None and meas[k]["response"] is not None
           and not meas[k]["spiking"] and not reasons[k] and k not in user_out]
    cand = [k for k in sub if steps[k].amplitude_pA != 0]
    for k in cand:
        why = _no_response(k, steps, meas, cand, cfg)
        if why:
            reasons[k]["no_response"] = why
    for k, why in _inconsistent([k for k in sub if not reasons[k]], steps, meas, cfg).items():
        reasons[k]["inconsistent"] = why
    out = []
    for k, (tr, st, m) in enumerate(zip(traces, steps, meas)):
        codes, details = list(reasons[k]), list(reasons[k].values())
        kept = not codes
        if tr.sweep in exclude_set:
            kept = False
            codes.append("user_excluded")
            details.append("excluded by the user")
        elif tr.sweep in keep_set:
            kept = True
            codes.append("user_kept")
            details.append("kept by the user" + (" despite the flags above" if len(codes) > 1 else ""))
        out.append(SweepQC(sweep=tr.sweep, kept=kept, reasons=tuple(codes), details=tuple(details), step=st,
                           baseline_mV=m["baseline"], baseline_sd_mV=m["sd"], response_mV=m["response"],
                           n_spikes=m["n_spikes"], spiking=bool(m["spiking"]), baseline_drift_mV=m["drift"],
                           steady_state_mV=m["ss"]))
    return QCReport(sweeps=tuple(out), config=cfg, threshold_mV=float(threshold))


def _spontaneous_count(cfg: QCConfig, n: int) -> float:
    """How many sweeps (of ``n``) must spike in their baseline for the cell to count as spontaneously active."""
    return max(1.0, cfg.spontaneous_fraction * n)

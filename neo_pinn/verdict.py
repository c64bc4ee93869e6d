"""The verdict on a fit: does the fitted model behave like the cell?

A fit can end "successfully" with estimates pinned on their bounds, or with a model that never fires where
the cell fires a dozen spikes per sweep. :func:`assess` catches that: it simulates the fitted model freely
(from the fitted initial state, no data assimilation) on every sweep — the fitted ones and any held-out
ones — and compares it with the recording. The checks (:data:`CHECKS`; a failed "fail" check makes the
verdict "failed", a failed "warn" check "warning"): ``simulation`` (a sweep diverges), ``response`` (every fitted
sweep is flat: the recording holds no information about the parameters), ``spiking`` (the model
is silent where the cell fires or the reverse), ``rheobase``, ``firing_rate``, ``trace_rmse`` (subthreshold
sweeps against the noise), ``bounds`` (an estimate on a bound) and the warning ``constrained`` (a std as
large as the value or the search range); :class:`VerdictConfig` holds their thresholds.
:func:`neo_pinn.estimator.judge` puts a verdict into a result (withholding the std of an estimate on a bound).
Every check appears in every verdict; one that cannot apply (no spikes, no step protocol) passes and says why.
Spikes are upward crossings of the model's ``spike_threshold`` (re-armed below ``problem.spike_levels``), counted in
the step window of a step protocol (:func:`neo_pinn.cell.protocol_steps`) and over the whole sweep otherwise.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .cell import StepEpoch, noise_level_mV, protocol_steps
from .errors import ConfigurationError
from .features import spike_times
from .models.base import quasi_steady_states
from .problem import EstimationProblem
from .residuals import rms
from .result import EstimationResult
from .simulation import METHODS, simulate_traces
from .trace import Trace

__all__ = ["VerdictConfig", "SweepCheck", "Check", "Verdict", "assess", "status_of", "estimates_on_bounds",
           "simulate_traces", "CHECKS", "SEVERITY"]

#: every check of a verdict, in the order they are reported
CHECKS = ("simulation", "response", "spiking", "rheobase", "firing_rate", "trace_rmse", "bounds", "constrained")
#: what a failed check makes of the verdict: "fail" → status "failed", "warn" → status "warning"
SEVERITY = {name: ("warn" if name == "constrained" else "fail") for name in CHECKS}


@dataclass(frozen=True)
class VerdictConfig:
    """Thresholds of the verdict's checks.

    Parameters
    ----------
    rate_tolerance : float
        Largest relative difference of the firing rate (model vs cell) on a spiking sweep.
    count_slack : int
        A rate difference of at most this many spikes is counting resolution, never a failure.
    rheobase_steps : int
        Largest rheobase difference, in step spacings of the protocol; sweeps whose amplitude lies within it
        of the cell's rheobase are not compared by the spiking and firing_rate checks.
    bound_fraction : float
        A free parameter within this fraction of its (log-, for log-scale parameters) range of a bound is
        "on the bound".
    unconstrained_cv : float
        std / |value| above which a free parameter is "not constrained".
    unconstrained_span : float
        Fraction of the (log-)range covered by value ± std above which a free parameter is "not constrained".
    rmse_noise_factor : float
        A subthreshold sweep fails when its RMSE exceeds this many noise standard deviations ...
    rmse_floor_mV : float
        ... and this floor (mV).
    rmse_response_fraction : float
        ... and this fraction of the sweep's voltage excursion.
    flat_noise_factor : float
        A sweep without spikes is flat when its voltage excursion (1st to 99th percentile) is at most this many
        noise standard deviations ...
    flat_floor_mV : float
        ... or this floor (mV); a fit whose every fitted sweep is flat fails the ``response`` check.
    max_dt_ms : float
        Largest integration step of the free simulation (ms); the step divides the sampling interval.
    method : str
        Fixed-step integrator (``"rk4"``, ``"heun"``, ``"euler"``).
    device : str
        Torch device of the simulation.
    """

    rate_tolerance: float = 0.25
    count_slack: int = 1
    rheobase_steps: int = 1
    bound_fraction: float = 0.01
    unconstrained_cv: float = 0.5
    unconstrained_span: float = 0.5
    rmse_noise_factor: float = 3.0
    rmse_floor_mV: float = 2.0
    rmse_response_fraction: float = 0.1
    flat_noise_factor: float = 8.0
    flat_floor_mV: float = 1.0
    max_dt_ms: float = 0.05
    method: str = "rk4"
    device: str = "cpu"

    def __post_init__(self) -> None:
        rules = (("rate_tolerance", self.rate_tolerance > 0, "> 0"),
                 ("count_slack", int(self.count_slack) == self.count_slack >= 0, "a whole number >= 0"),
                 ("rheobase_steps", int(self.rheobase_steps) == self.rheobase_steps >= 0, "a whole number >= 0"),
                 ("bound_fraction", 0 <= self.bound_fraction < 0.5, "in [0, 0.5)"),
                 ("unconstrained_cv", self.unconstrained_cv > 0, "> 0"),
                 ("unconstrained_span", 0 < self.unconstrained_span <= 1, "in (0, 1]"),
                 ("rmse_noise_factor", self.rmse_noise_factor > 0, "> 0"),
                 ("rmse_floor_mV", self.rmse_floor_mV >= 0, ">= 0"),
                 ("rmse_response_fraction", 0 <= self.rmse_response_fraction < 1, "in [0, 1)"),
                 ("flat_noise_factor", self.flat_noise_factor >= 0, ">= 0"),
                 ("flat_floor_mV", self.flat_floor_mV >= 0, ">= 0"),
                 ("max_dt_ms", self.max_dt_ms > 0, "> 0"),
                 ("method", self.method in METHODS, f"one of {', '.join(METHODS)}"))
        for name, ok, rule in rules:
            if not ok:
                raise ConfigurationError(f"VerdictConfig.{name} must be {rule}; got {getattr(self, name)!r}.")


@dataclass(frozen=True)
class SweepCheck:
    """Model against cell on one sweep.

    Parameters
    ----------
    sweep : int
        Sweep index in the recording.
    role : str
        ``"fit"`` (a fitted sweep) or ``"holdout"`` (held out of the fit).
    amplitude_pA : float or None
        Step amplitude (pA) of a step protocol, None otherwise.
    n_spikes_cell, n_spikes_model : int
        Spikes in the step window (whole sweep without steps).
    rate_cell_hz, rate_model_hz : float
        Those counts per second of the window (Hz).
    rate_error : float or None
        |rate_model − rate_cell| / rate_cell; None where the cell does not fire.
    rmse_mV : float
        RMSE of the free simulation against the recording over the whole sweep (mV); NaN when it diverged.
    diverged : bool
        The simulation produced NaN/inf.
    """

    sweep: int
    role: str
    amplitude_pA: float | None
    n_spikes_cell: int
    n_spikes_model: int
    rate_cell_hz: float
    rate_model_hz: float
    rate_error: float | None
    rmse_mV: float
    diverged: bool = False

    @property
    def label(self) -> str:
        """``"sweep 3 (40 pA)"`` or ``"sweep 3"``."""
        amp = "" if self.amplitude_pA is None else f" ({self.amplitude_pA:.4g} pA)"
        return f"{'held-out ' if self.role == 'holdout' else ''}sweep {self.sweep}{amp}"


@dataclass(frozen=True)
class Check:
    """Outcome of one check.

    Parameters
    ----------
    name : str
        One of :data:`CHECKS`, or a backend's own check (:meth:`neo_pinn.estimator.Estimator.verdict_checks`).
    severity : str
        ``"fail"`` or ``"warn"``.
    passed : bool
    message : str
        What was found, with numbers, and — when it did not pass — what to do.
    """

    name: str
    severity: str
    passed: bool
    message: str


def status_of(checks: Sequence[Check]) -> str:
    """``"failed"`` when a "fail" check did not pass, ``"warning"`` when only a "warn" one did not, else ``"passed"``."""
    bad = {c.severity for c in checks if not c.passed}
    return "failed" if "fail" in bad else "warning" if bad else "passed"


def _json_float(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


@dataclass(frozen=True)
class Verdict:
    """Whether a fitted model behaves like the cell: the checks and the per-sweep comparison.

    Parameters
    ----------
    status : str
        ``"failed"`` (a "fail" check did not pass), ``"warning"`` (only a "warn" check did not pass) or
        ``"passed"``.
    checks : tuple of Check
        Every check of :data:`CHECKS`, passed or not.
    sweeps : tuple of SweepCheck
        Fitted sweeps, then held-out ones.
    rheobase_cell_pA, rheobase_model_pA : float or None
        Smallest step amplitude with a spike (pA); None without a step protocol or where none fires.
    noise_mV : float
        Recording noise used by the trace_rmse check (mV).
    step_spacing_pA : float or None
        Spacing of the protocol's step amplitudes (pA).
    """

    status: str
    checks: tuple[Check, ...]
    sweeps: tuple[SweepCheck, ...]
    rheobase_cell_pA: float | None
    rheobase_model_pA: float | None
    noise_mV: float
    step_spacing_pA: float | None = None

    @property
    def failed(self) -> bool:
        """Whether a "fail" check did not pass."""
        return self.status == "failed"

    def with_checks(self, extra: Sequence[Check]) -> "Verdict":
        """This verdict with ``extra`` checks added (replacing same-named ones) and its status recomputed."""
        for c in extra:
            if not isinstance(c, Check) or c.severity not in ("fail", "warn"):
                raise TypeError(f"A verdict check is a Check with severity 'fail' or 'warn'; got {c!r}.")
        names = {c.name for c in extra}
        checks = tuple(c for c in self.checks if c.name not in names) + tuple(extra)
        return replace(self, checks=checks, status=status_of(checks))

    def check(self, name: str) -> Check:
        """The check called ``name``."""
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(f"No check {name!r}; checks are {', '.join(c.name for c in self.checks)}.")

    def lines(self) -> list[str]:
        """Human summary: the status, then every check that did not pass (and the held-out errors)."""
        bad = [c for c in self.checks if not c.passed]
        n_fail = sum(c.severity == "fail" for c in bad)
        out = [f"{self.status.upper()}: {n_fail} of {len(self.checks)} checks failed, "
               f"{len(bad) - n_fail} warning(s)"]
        out += [f"{'FAIL' if c.severity == 'fail' else 'WARN'} {c.name}: {c.message}" for c in bad]
        gen = self.generalisation()
        if gen["holdout"]["n_sweeps"]:
            f, h = gen["fit"], gen["holdout"]
            out.append(f"held-out sweeps: RMSE {h['rmse_mV']:.3g} mV, spike count error {h['spike_count_error']:.3g} "
                       f"(fitted sweeps: {f['rmse_mV']:.3g} mV, {f['spike_count_error']:.3g})")
        return out

    def generalisation(self) -> dict[str, dict[str, float]]:
        """Errors per role (``"fit"``, ``"holdout"``).

        Returns
        -------
        dict
            Per role: ``n_sweeps``, ``n_diverged``, ``rmse_mV`` (root mean square of the per-sweep RMSEs,
            mV), ``spike_count_error`` (mean |model − cell| spike count) and ``rate_error`` (mean relative
            rate error over the cell's spiking sweeps); NaN where there is nothing to average.
        """
        out = {}
        for role in ("fit", "holdout"):
            s = [x for x in self.sweeps if x.role == role]
            ok = [x for x in s if not x.diverged]
            rates = [x.rate_error for x in ok if x.rate_error is not None]
            out[role] = {"n_sweeps": len(s), "n_diverged": len(s) - len(ok),
                         "rmse_mV": rms(np.array([x.rmse_mV for x in ok])),
                         "spike_count_error": float(np.mean([abs(x.n_spikes_model - x.n_spikes_cell) for x in ok]))
                         if ok else math.nan,
                         "rate_error": float(np.mean(rates)) if rates else math.nan}
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (NaN becomes None); ``generalisation`` is included for readers."""
        sweeps = [asdict(s) | {"rmse_mV": _json_float(s.rmse_mV), "rate_error": _json_float(s.rate_error)}
                  for s in self.sweeps]
        gen = {r: {k: _json_float(v) for k, v in g.items()} for r, g in self.generalisation().items()}
        return {"status": self.status, "checks": [asdict(c) for c in self.checks], "sweeps": sweeps,
                "rheobase_cell_pA": self.rheobase_cell_pA, "rheobase_model_pA": self.rheobase_model_pA,
                "noise_mV": _json_float(self.noise_mV), "step_spacing_pA": self.step_spacing_pA,
                "generalisation": gen}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Verdict":
        """Inverse of :meth:`to_dict` (extra keys such as ``generalisation`` or ``lines`` are ignored)."""
        sweeps = tuple(SweepCheck(**{**s, "rmse_mV": math.nan if s["rmse_mV"] is None else s["rmse_mV"]})
                       for s in d["sweeps"])
        return cls(status=d["status"], checks=tuple(Check(**c) for c in d["checks"]), sweeps=sweeps,
                   rheobase_cell_pA=d.get("rheobase_cell_pA"), rheobase_model_pA=d.get("rheobase_model_pA"),
                   noise_mV=math.nan if d.get("noise_mV") is None else float(d["noise_mV"]),
                   step_spacing_pA=d.get("step_spacing_pA"))


# ---------------------------------------------------------------------- simulation
def _initial_states(problem: EstimationProblem, result: EstimationResult, holdout: Sequence[Trace],
                    theta: np.ndarray) -> np.ndarray:
    """Initial states (n_fit + n_holdout, S): the fitted ones, then the holdout rule of :func:`assess`."""
    model = problem.model
    preset = model.initial_state(problem.preset) if (problem.preset or model.default_preset) \
        else np.array([s.scale for s in model.states], dtype=float)
    fits = result.fits if len(result.fits) == len(problem.traces) else ()
    rows = []
    for k, tr in enumerate(problem.traces):
        y0 = np.asarray(fits[k].states[0], dtype=float) if fits else np.full(model.n_states, np.nan)
        rows.append(y0 if np.all(np.isfinite(y0)) else None)
    need = [tr for tr, y0 in zip(problem.traces, rows) if y0 is None] + list(holdout)
    init = problem.initial_state
    if not isinstance(init, str):
        start = np.tile(np.asarray(init, dtype=float), (len(need), 1))
    elif init == "preset":
        start = np.tile(preset, (len(need), 1))
    elif need:
        # the median of the first 0.5 ms: the recorded start, less its noise
        v0 = [float(np.median(tr.v[: max(1, int(round(0.5 / tr.dt)))])) for tr in need]
        th = torch.as_tensor(np.tile(theta, (len(need), 1)), dtype=torch.float64)
        start = quasi_steady_states(model, th, torch.as_tensor(v0, dtype=torch.float64),
                                    torch.as_tensor([tr.i_ext[0] for tr in need], dtype=torch.float64),
                                    preset).numpy()
    else:
        start = np.zeros((0, model.n_states))
    it = iter(start)
    rows = [y0 if y0 is not None else next(it) for y0 in rows] + [next(it) for _ in holdout]
    return np.array(rows, dtype=float).reshape(-1, model.n_states)


# ---------------------------------------------------------------------- comparison per sweep
@dataclass(frozen=True)
class _Sweep:
    check: SweepCheck
    whole_cell: int       # spikes over the whole sweep
    whole_model: int
    noise_mV: float
    response_mV: float = 0.0  # the recorded voltage's excursion over the sweep (1st to 99th percentile)


def _count(v: np.ndarray, tr: Trace, step: StepEpoch | None, levels: tuple[float, float]) -> tuple[int, float, int]:
    """Spikes in the counting window, their rate (Hz) and spikes over the whole sweep."""
    st = spike_times(v, tr.t, *levels)
    if step is None:
        return st.size, st.size / (tr.duration / 1000.0), st.size
    n = int(np.count_nonzero((st >= step.onset_ms) & (st < step.offset_ms)))
    return n, n / (step.duration_ms / 1000.0), st.size


def _compare(tr: Trace, role: str, states: np.ndarray, step: StepEpoch | None, levels: tuple[float, float],
             sigma: float | None) -> _Sweep:
    v = states[:, 0]
    diverged = not bool(np.all(np.isfinite(states)))
    n_c, r_c, w_c = _count(tr.v, tr, step, levels)
    n_m, r_m, w_m = (0, 0.0, 0) if diverged else _count(v, tr, step, levels)
    err = None if n_c == 0 or diverged else abs(r_m - r_c) / r_c
    check = SweepCheck(sweep=tr.sweep, role=role, amplitude_pA=None if step is None else float(step.amplitude_pA),
                       n_spikes_cell=int(n_c), n_spikes_model=int(n_m), rate_cell_hz=float(r_c),
                       rate_model_hz=float(r_m), rate_error=err,
                       rmse_mV=math.nan if diverged else rms(tr.v - v), diverged=diverged)
    lo, hi = np.percentile(tr.v, [1.0, 99.0])
    return _Sweep(check, int(w_c), int(w_m), float(sigma) if sigma is not None else noise_level_mV(tr),
                  float(hi - lo))


@dataclass(frozen=True)
class _Rheobase:
    cell: float | None      # measured (None: never fires)
    model: float | None
    spacing: float | None
    top: float              # largest amplitude

    def effective(self, value: float | None) -> float:
        """A rheobase, one step above the largest amplitude for one that never fires."""
        return self.top + (self.spacing or 0.0) if value is None else value

    def excused(self, amp: float | None, k: int) -> bool:
        """Whether a sweep's amplitude lies within ``k`` steps of the cell's rheobase (where the model may differ)."""
        if amp is None or self.spacing is None:
            return False
        r, s = self.effective(self.cell), self.spacing
        return r - (k + 0.5) * s <= amp <= r + (k - 0.5) * s


def _rheobases(sweeps: Sequence[_Sweep]) -> _Rheobase | None:
    """Rheobases of cell and model; the spacing is the median gap between distinct step amplitudes (pA)."""
    amps = np.sort([s.check.amplitude_pA for s in sweeps if s.check.amplitude_pA is not None])
    if not amps.size:
        return None
    gaps = np.diff(amps)
    gaps = gaps[gaps > max(0.5, 0.01 * float(np.ptp(amps)))]       # distinct amplitudes, not recording jitter
    ok = [s.check for s in sweeps if s.check.amplitude_pA is not None and not s.check.diverged]
    cell = [c.amplitude_pA for c in ok if c.n_spikes_cell > 0]
    model = [c.amplitude_pA for c in ok if c.n_spikes_model > 0]
    return _Rheobase(min(cell) if cell else None, min(model) if model else None,
                     float(np.median(gaps)) if gaps.size else None, float(amps[-1]))


# ---------------------------------------------------------------------- checks
def _listing(items: Sequence[str], limit: int = 4) -> str:
    more = len(items) - limit
    return "; ".join(items[:limit]) + (f"; and {more} more" if more > 0 else "")


def _check_simulation(sweeps: Sequence[_Sweep]) -> Check:
    bad = [s.check.label for s in sweeps if s.check.diverged]
    return Check("simulation", SEVERITY["simulation"], not bad,
                 f"the fitted model diverges (NaN/inf) on {_listing(bad)}: its parameters make the equations "
                 "unstable; check the estimates against their bounds, or refit with tighter bounds." if bad else
                 f"the fitted model simulates without diverging on all {len(sweeps)} sweeps.")


def _check_response(problem: EstimationProblem, sweeps: Sequence[_Sweep], cfg: VerdictConfig) -> Check:
    name, sev = "response", SEVERITY["response"]
    fitted = [s for s in sweeps if s.check.role == "fit"]
    limits = [max(cfg.flat_noise_factor * s.noise_mV, cfg.flat_floor_mV) for s in fitted]
    alive = [s for s, lim in zip(fitted, limits) if s.whole_cell > 0 or s.response_mV > lim]
    if alive:
        best = max(alive, key=lambda s: s.response_mV)
        return Check(name, sev, True, f"{len(alive)} of {len(fitted)} fitted sweeps respond (largest voltage "
                                      f"excursion {best.response_mV:.3g} mV on {best.check.label}).")
    worst = max(fitted, key=lambda s: s.response_mV)
    free = ", ".join(problem.free_names)
    return Check(name, sev, False,
                 f"every fitted sweep is flat (no spike; voltage excursion at most {worst.response_mV:.3g} mV, within "
                 f"{cfg.flat_noise_factor:g} × noise or {cfg.flat_floor_mV:g} mV): the recording holds no information "
                 f"about {free}, so any estimate that keeps the model at rest fits it. Fit sweeps where the cell "
                 "responds to a stimulus (steps, spikes), or hold these parameters (--set).")


def _check_spiking(sweeps: Sequence[_Sweep], rb: _Rheobase | None, k: int) -> Check:
    ok = [s.check for s in sweeps if not s.check.diverged]
    if not any(c.n_spikes_cell or c.n_spikes_model for c in ok):
        return Check("spiking", SEVERITY["spiking"], True,
                     "did not apply: neither the cell nor the model fires on any sweep.")
    silent, extra, excused = [], [], 0
    for c in ok:
        if (c.n_spikes_cell > 0) == (c.n_spikes_model > 0):
            continue
        if rb is not None and rb.excused(c.amplitude_pA, k):
            excused += 1
        elif c.n_spikes_cell > 0:
            silent.append(f"{c.label}: cell {c.n_spikes_cell} spikes")
        else:
            extra.append(f"{c.label}: model {c.n_spikes_model} spikes")
    note = f" ({excused} sweep(s) within {k} step(s) of the rheobase not compared)" if excused else ""
    if not silent and not extra:
        return Check("spiking", SEVERITY["spiking"], True, f"model and cell fire on the same sweeps{note}.")
    parts = []
    if silent:
        parts.append(f"the model is silent where the cell fires ({_listing(silent)})")
    if extra:
        parts.append(f"the model fires where the cell is silent ({_listing(extra)})")
    return Check("spiking", SEVERITY["spiking"], False,
                 f"{' and '.join(parts)}{note}: the fitted model does not reproduce the cell's excitability; "
                 "refit including the spiking sweeps (e.g. spike-feature objectives) or free/widen the bounds of "
                 "the conductances that set excitability.")


def _check_rheobase(rb: _Rheobase | None, k: int) -> Check:
    name, sev = "rheobase", SEVERITY["rheobase"]
    if rb is None:
        return Check(name, sev, True, "did not apply: the sweeps are not a step protocol.")
    if rb.spacing is None:
        return Check(name, sev, True, "did not apply: the protocol has a single step amplitude, so no rheobase "
                                      "can be measured.")
    if rb.cell is None and rb.model is None:
        return Check(name, sev, True, f"neither the cell nor the model fires up to {rb.top:.4g} pA.")

    def say(x):
        return f"{x:.4g} pA" if x is not None else f"above {rb.top:.4g} pA (never fires)"

    diff = abs(rb.effective(rb.model) - rb.effective(rb.cell))
    steps = diff / rb.spacing
    text = f"model rheobase {say(rb.model)}, cell {say(rb.cell)}"
    if diff > (k + 0.5) * rb.spacing:
        return Check(name, sev, False,
                     f"{text}: {steps:.3g} steps of {rb.spacing:.4g} pA apart (tolerance {k}); the fitted model's "
                     "threshold current is wrong: fit the sweeps around the rheobase too, or free the "
                     "conductances that set the threshold (leak, inward currents).")
    return Check(name, sev, True, f"{text}: within {k} step(s) of {rb.spacing:.4g} pA.")


def _check_firing_rate(sweeps: Sequence[_Sweep], rb: _Rheobase | None, cfg: VerdictConfig) -> Check:
    name, sev = "firing_rate", SEVERITY["firing_rate"]
    cand = [s.check for s in sweeps if s.check.rate_error is not None
            and not (rb is not None and rb.excused(s.check.amplitude_pA, cfg.rheobase_steps))]
    if not cand:
        return Check(name, sev, True, "did not apply: the cell fires on no sweep that could be compared.")
    bad = [c for c in cand if c.rate_error > cfg.rate_tolerance
           and abs(c.n_spikes_model - c.n_spikes_cell) > cfg.count_slack]
    worst = max(cand, key=lambda c: c.rate_error)
    if not bad:
        return Check(name, sev, True, f"the model's rate is within {100 * cfg.rate_tolerance:.0f} % (or "
                                      f"{cfg.count_slack} spike) of the cell's on all {len(cand)} spiking sweeps "
                                      f"(worst {100 * worst.rate_error:.0f} % on {worst.label}).")
    items = [f"{c.label}: model {c.rate_model_hz:.3g} Hz vs cell {c.rate_cell_hz:.3g} Hz "
             f"({100 * (c.rate_model_hz - c.rate_cell_hz) / c.rate_cell_hz:+.0f} %)" for c in bad]
    return Check(name, sev, False,
                 f"the firing rate is off by more than {100 * cfg.rate_tolerance:.0f} % on {len(bad)} of "
                 f"{len(cand)} spiking sweeps ({_listing(items)}): the model's f–I curve is not the cell's; "
                 "fit the spiking sweeps with rate/ISI objectives or free the gating rates and K+ conductances.")


def _check_trace_rmse(sweeps: Sequence[_Sweep], cfg: VerdictConfig) -> Check:
    name, sev = "trace_rmse", SEVERITY["trace_rmse"]
    sub = [s for s in sweeps if not s.check.diverged and s.whole_cell == 0 and s.whole_model == 0]
    if not sub:
        return Check(name, sev, True, "did not apply: no sweep is subthreshold for both the cell and the model.")
    limits = [max(cfg.rmse_noise_factor * s.noise_mV, cfg.rmse_floor_mV, cfg.rmse_response_fraction * s.response_mV)
              for s in sub]
    bad = [f"{s.check.label}: {s.check.rmse_mV:.3g} mV > {lim:.3g} mV" for s, lim in zip(sub, limits)
           if s.check.rmse_mV > lim]
    rule = (f"max({cfg.rmse_noise_factor:g} × noise, {cfg.rmse_floor_mV:g} mV, "
            f"{100 * cfg.rmse_response_fraction:g} % of the sweep's voltage excursion)")
    if bad:
        return Check(name, sev, False,
                     f"the free simulation misses the subthreshold response on {len(bad)} of {len(sub)} sweeps "
                     f"(RMSE above {rule}: {_listing(bad)}): check the passive estimates (C, gL, EL), the "
                     "initial state and the stimulus (units, onset).")
    s, lim = max(zip(sub, limits), key=lambda x: x[0].check.rmse_mV / x[1] if x[1] > 0 else math.inf)
    return Check(name, sev, True, f"all {len(sub)} subthreshold sweeps within {rule} (worst {s.check.label}: "
                                  f"{s.check.rmse_mV:.3g} of {lim:.3g} mV).")


def _position(value: float, lo: float, hi: float, log: bool) -> float:
    """Where ``value`` lies in [lo, hi], 0 → lo, 1 → hi (on a log scale for log-scale parameters)."""
    if log and value > 0:
        return (math.log(value) - math.log(lo)) / (math.log(hi) - math.log(lo))
    return (value - lo) / (hi - lo)


def estimates_on_bounds(problem: EstimationProblem, result: EstimationResult,
                        config: VerdictConfig = VerdictConfig()) -> dict[str, str]:
    """The free parameters whose estimate sits on (or within ``bound_fraction`` of) a bound, or is not a number.

    Parameters
    ----------
    problem : EstimationProblem
        Its free parameters' bounds.
    result : EstimationResult
        The estimates.
    config : VerdictConfig
        ``bound_fraction`` (of the range, log range for log-scale parameters).

    Returns
    -------
    dict
        Name → what is wrong, e.g. ``"gK = 100 nS sits on its upper bound 100 nS"``, in the order of ``problem.free``.
    """
    out: dict[str, str] = {}
    for f in problem.free:
        p = result.parameters[f.name]
        lo, hi = f.bounds
        u = _position(p.value, lo, hi, f.log_scale)
        if not math.isfinite(u):
            out[f.name] = f"{f.name} = {p.value} {p.unit} is not a number"
            continue
        for side, b, near in (("lower", lo, u <= config.bound_fraction),
                              ("upper", hi, u >= 1 - config.bound_fraction)):
            if near:
                on = u <= 0 or u >= 1 or math.isclose(p.value, b, rel_tol=1e-9)
                where = "sits on" if on else f"lies within {100 * config.bound_fraction:g} % of"
                out[f.name] = f"{f.name} = {p.value:.4g} {p.unit} {where} its {side} bound {b:.4g} {p.unit}"
    return out


def _check_bounds(problem: EstimationProblem, result: EstimationResult, cfg: VerdictConfig) -> Check:
    name, sev = "bounds", SEVERITY["bounds"]
    flagged = estimates_on_bounds(problem, result, cfg)
    bad = []
    for k, text in flagged.items():
        std = result.parameters[k].std
        # a std computed where the bound stopped the search measures the bound, not the data
        bad.append(text + (f" (its std ± {std:.3g} is withheld: it means nothing there)"
                           if std is not None and math.isfinite(std) else ""))
    if bad:
        one = len(bad) == 1
        return Check(name, sev, False, f"{'; '.join(bad)}: the data push {'it' if one else 'them'} further, so "
                                       f"{'it is' if one else 'they are'} not identified; widen "
                                       f"{'its' if one else 'their'} bounds (--bounds) or the model cannot explain "
                                       "this cell.")
    return Check(name, sev, True, f"every free parameter ({len(problem.free)}) lies inside its bounds "
                                  f"(more than {100 * cfg.bound_fraction:g} % of its range from either).")


def _check_constrained(problem: EstimationProblem, result: EstimationResult, cfg: VerdictConfig) -> Check:
    name, sev = "constrained", SEVERITY["constrained"]
    bad, n_std = [], 0
    pinned = estimates_on_bounds(problem, result, cfg)  # the bounds check reports them; their std is withheld
    for f in problem.free:
        p = result.parameters[f.name]
        if p.std is None or not math.isfinite(p.std) or f.name in pinned:
            continue
        n_std += 1
        lo, hi = f.bounds
        cv = p.std / abs(p.value) if p.value != 0 else math.inf
        a, b = max(lo, p.value - p.std), min(hi, p.value + p.std)
        span = _position(b, lo, hi, f.log_scale) - _position(a, lo, hi, f.log_scale) if b > a else 0.0
        if cv > cfg.unconstrained_cv or span > cfg.unconstrained_span:
            bad.append(f"{f.name} = {p.value:.4g} ± {p.std:.3g} {p.unit} ({100 * cv:.0f} % of its value, "
                       f"{100 * span:.0f} % of its range)")
    if not n_std:
        why = "the estimates with a std sit on bounds (see the bounds check)" if pinned else \
            "the backend reports no standard deviations"
        return Check(name, sev, True, f"did not apply: {why}.")
    if bad:
        return Check(name, sev, False,
                     f"the data do not constrain {_listing(bad)}: fix such a parameter (--set) to a literature "
                     "value, or add sweeps that depend on it.")
    return Check(name, sev, True, f"every reported std is below {100 * cfg.unconstrained_cv:.0f} % of its value "
                                  f"and {100 * cfg.unconstrained_span:.0f} % of its range ({n_std} parameters).")


# ---------------------------------------------------------------------- the verdict
def assess(problem: EstimationProblem, result: EstimationResult, *, holdout: Sequence[Trace] | None = None,
           config: VerdictConfig = VerdictConfig()) -> Verdict:
    """Simulate the fitted model freely on every sweep and compare it with the cell.

    Parameters
    ----------
    problem : EstimationProblem
        The fitted problem: its model, sweeps (``traces``) and free parameters with their bounds.
    result : EstimationResult
        The fit: the full parameter values, the fitted initial state of each sweep (``fits[k].states[0]``)
        and the free parameters' std. The noise level of ``trace_rmse`` is the recording's own
        (:func:`neo_pinn.cell.noise_level_mV`), never the fit's residual.
    holdout : sequence of Trace, optional
        Sweeps not fitted, assessed with role ``"holdout"``; None: ``problem.holdout``. They start from the
        model's quasi-steady state at their first recorded voltage (median of the first 0.5 ms), from the
        preset's initial state when ``problem.initial_state == "preset"``, or from the given vector.
    config : VerdictConfig
        Thresholds.

    Returns
    -------
    Verdict
        ``status`` "failed" when a "fail" check does not pass, "warning" when only a "warn" check does not
        pass, else "passed".
    """
    model = problem.model
    holdout = tuple(problem.holdout if holdout is None else holdout)
    traces = tuple(problem.traces) + holdout
    roles = ["fit"] * len(problem.traces) + ["holdout"] * len(holdout)
    theta = np.array([result.parameters[n].value for n in model.param_names], dtype=float)
    y0 = _initial_states(problem, result, holdout, theta)
    states = simulate_traces(model, theta, traces, y0, max_dt=config.max_dt_ms, method=config.method,
                             device=config.device)
    steps = protocol_steps(traces) or [None] * len(traces)
    # the recording's own noise, not the fit's residual: a bad fit must not raise its own limit
    sigma = None
    sweeps = [_compare(tr, role, st, step, problem.spike_levels, sigma) for tr, role, st, step in zip(traces, roles, states, steps)]
    rb = _rheobases(sweeps)
    checks = (_check_simulation(sweeps), _check_response(problem, sweeps, config),
              _check_spiking(sweeps, rb, config.rheobase_steps),
              _check_rheobase(rb, config.rheobase_steps), _check_firing_rate(sweeps, rb, config),
              _check_trace_rmse(sweeps, config), _check_bounds(problem, result, config),
              _check_constrained(problem, result, config))
    noise = float(np.median([s.noise_mV for s in sweeps]))
    status = status_of(checks)
    return Verdict(status=status, checks=checks, sweeps=tuple(s.check for s in sweeps),
                   rheobase_cell_pA=None if rb is None else rb.cell, rheobase_model_pA=None if rb is None else rb.model,
                   noise_mV=noise, step_spacing_pA=None if rb is None else rb.spacing)

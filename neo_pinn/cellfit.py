"""Fitting a real cell: sweep quality control, passive properties first, a search scaled to the cell, held-out
sweeps — what :func:`neo_pinn.api.estimate` runs around a backend.

1. **Quality control** (:func:`neo_pinn.cell.check_sweeps`): unusable sweeps are left out, with reasons.
2. **The cell** (:func:`neo_pinn.cell.measure_cell`): rest, input resistance, time constant, capacitance, sag,
   rheobase and f–I, from the kept sweeps of a step protocol.
3. **A cell-scaled search** (:func:`neo_pinn.cell.scaling.cell_scaled_ranges`): starting values and bounds of
   every backend from the measured cell instead of the textbook set; the fit window is the step (with
   100 ms either side) unless the user gives one.
4. **Stages** (multi-sweep step protocols): the passive parameters are fitted by ``lsq`` on the subthreshold
   sweeps, then the active ones by the chosen backend with the passive ones held; each stage is kept.
5. **Held-out sweeps** are not fitted; the verdict (:mod:`neo_pinn.verdict`) reports the model's errors on them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

import numpy as np

from .cell import check_sweeps, measure_cell, protocol_steps, recording_spike_levels
from .cell.scaling import cell_scaled_ranges
from .errors import ConfigurationError, EmptySignalError, EstimationError
from .estimator import Estimator, judge
from .models.base import NeuronModel
from .noise import NoiseModel
from .plugins import get_state
from .problem import EstimationProblem, check_fit_length
from .result import EstimationResult
from .trace import Trace, check_window, require_finite
from .units import check_physiological_voltage

__all__ = ["CellFitOptions", "CellPlan", "RecordingSurvey", "survey_recording", "plan_cell_fit", "fit_cell", "held_out_sweeps", "STEP_MARGIN_MS"]

#: the automatic fit window runs from this long before the step to this long after it, ms
STEP_MARGIN_MS = 100.0
#: the passive stage runs at this sampling interval or coarser, ms (passive responses are slow)
PASSIVE_STAGE_DT_MS = 0.1


@dataclass(frozen=True)
class CellFitOptions:
    """How a recording is prepared before the backend runs.

    Parameters
    ----------
    qc : bool
        Run sweep quality control and leave out the sweeps it rejects.
    keep_sweeps, exclude_sweeps : tuple of int
        Sweeps forced in or out whatever quality control says.
    scale_to_cell : bool
        Derive starting values and bounds from the measured cell when it is measurable and the model's
        capacitance is free (a fixed capacitance states the cell's size); False: the model's textbook ranges.
    staged : bool or "auto"
        Fit the passive parameters first on subthreshold sweeps; "auto": for step protocols of two or more
        sweeps with a subthreshold one.
    validate_on : tuple of int, float, str or None
        Sweeps held out of the fit: sweep numbers, a fraction of the kept sweeps (spread evenly), or
        ``"alternate"`` (every other kept sweep).
    auto_window : bool
        Without a user window, fit the step of a multi-sweep step protocol and 100 ms either side of it.
    allow_unphysiological : bool
        Fit a voltage outside the physiological range (:func:`neo_pinn.units.check_physiological_voltage`) as it
        is, instead of refusing it as a likely unit mistake.
    """

    qc: bool = True
    keep_sweeps: tuple[int, ...] = ()
    exclude_sweeps: tuple[int, ...] = ()
    scale_to_cell: bool = True
    staged: bool | str = "auto"
    validate_on: Any = None
    auto_window: bool = True
    allow_unphysiological: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "keep_sweeps", tuple(int(s) for s in self.keep_sweeps))
        object.__setattr__(self, "exclude_sweeps", tuple(int(s) for s in self.exclude_sweeps))
        both = sorted(set(self.keep_sweeps) & set(self.exclude_sweeps))
        if both:
            raise ConfigurationError(f"Sweep(s) {both} are both kept and excluded; choose one.")
        if self.staged not in (True, False, "auto"):
            raise ConfigurationError(f"staged must be true, false or 'auto'; got {self.staged!r}.")
        v = self.validate_on
        if isinstance(v, float) and not 0.0 < v < 1.0:
            raise ConfigurationError(f"validate_on as a fraction must lie between 0 and 1; got {v}.")
        if isinstance(v, str) and v != "alternate":
            raise ConfigurationError(f"validate_on must be sweep numbers, a fraction or 'alternate'; got {v!r}.")
        if isinstance(v, (list, tuple)):
            object.__setattr__(self, "validate_on", tuple(int(s) for s in v))
        if not isinstance(self.allow_unphysiological, bool):
            raise ConfigurationError(f"allow_unphysiological must be true or false; got "
                                     f"{self.allow_unphysiological!r}.")


@dataclass(frozen=True)
class CellPlan:
    """What was measured on a recording and how the fit will run."""

    fit_traces: tuple[Trace, ...]
    holdout: tuple[Trace, ...]
    window: tuple[float, float] | None
    qc: Any = None
    properties: Any = None
    steps: tuple = ()
    ranges: Any = None
    staged: bool = False
    notes: tuple[str, ...] = ()
    spike_levels: tuple[float, float] | None = None

    def windowed(self) -> tuple[Trace, ...]:
        """The sweeps the backend fits: :attr:`fit_traces` cut to :attr:`window` (ms from each sweep's start)."""
        return _windowed(self.fit_traces, self.window)

    def to_dict(self) -> dict[str, Any]:
        """What goes into :attr:`EstimationResult.cell`."""
        return {"qc": None if self.qc is None else self.qc.to_dict(),
                "properties": None if self.properties is None else self.properties.to_dict(),
                "steps": [s.to_dict() for s in self.steps],
                "scaling": None if self.ranges is None else self.ranges.to_dict(),
                "window_ms": None if self.window is None else list(self.window),
                "fitted_sweeps": [tr.sweep for tr in self.fit_traces],
                "holdout_sweeps": [tr.sweep for tr in self.holdout],
                "staged": self.staged, "spike_levels_mV": None if self.spike_levels is None else list(self.spike_levels), "notes": list(self.notes), "stages": []}


def held_out_sweeps(kept: Sequence[int], validate_on: Any) -> list[int]:
    """The sweeps to hold out of ``kept`` for ``validate_on`` (see :class:`CellFitOptions`)."""
    kept = list(kept)
    if validate_on is None:
        return []
    if validate_on == "alternate":
        out = kept[1::2]
    elif isinstance(validate_on, float):
        n = max(1, int(round(validate_on * len(kept))))
        out = [kept[int(k)] for k in np.unique(np.linspace(1, len(kept) - 1, n).round().astype(int))] \
            if len(kept) > 1 else []
    else:
        missing = sorted(set(validate_on) - set(kept))
        if missing:
            raise ConfigurationError(f"Sweep(s) {missing} cannot be held out: they are not among the fitted "
                                     f"sweeps {kept}.")
        out = [s for s in kept if s in validate_on]
    if len(out) >= len(kept):
        raise ConfigurationError("Every sweep would be held out; keep at least one to fit.")
    return out


def _windowed(traces: Sequence[Trace], window: tuple[float, float] | None) -> tuple[Trace, ...]:
    """Each trace cut to ``window`` measured from its own start (ms); sweeps of one sampling rate keep one length
    (rounding of the window's edges must not make a sweep one sample shorter, which would split the batch)."""
    if window is None:
        return tuple(traces)
    w0, w1 = window
    cut = [tr.window(None if w0 is None else tr.t[0] + w0, None if w1 is None else tr.t[0] + w1) for tr in traces]
    for dt in {round(tr.dt, 9) for tr in cut}:
        same = [k for k, tr in enumerate(cut) if round(tr.dt, 9) == dt]
        n = min(cut[k].t.size for k in same)
        for k in same:
            tr = cut[k]
            cut[k] = dataclasses.replace(tr, t=tr.t[:n], v=tr.v[:n], i_ext=tr.i_ext[:n])
    return tuple(cut)


def _step_window(traces: Sequence[Trace], steps) -> tuple[float, float]:
    """The step of the protocol with :data:`STEP_MARGIN_MS` either side, from each sweep's start (ms)."""
    tr, st = traces[0], steps[0]
    onset, offset = st.onset_ms - tr.t[0], st.offset_ms - tr.t[0]
    return max(0.0, onset - STEP_MARGIN_MS), min(tr.duration, offset + STEP_MARGIN_MS)


@dataclass(frozen=True)
class RecordingSurvey:
    """What a recording says before any fit: its steps, spike levels, quality control, kept sweeps and the cell."""

    steps: tuple
    levels: tuple[float, float]
    qc: Any
    kept: tuple[Trace, ...]
    properties: Any


def survey_recording(traces: Sequence[Trace], threshold: float, rearm: float, *, qc: bool = True,
                     keep: Sequence[int] = (), exclude: Sequence[int] = ()) -> RecordingSurvey:
    """Steps, spike levels, sweep quality control and the cell's properties of whole sweeps (what ``info`` shows
    and what a fit starts from).

    Parameters
    ----------
    traces : sequence of Trace
        Whole sweeps.
    threshold, rearm : float
        The spike levels to start from (a model's, or 0 / −10 mV), mV; a step recording's own levels are
        derived from them (:func:`neo_pinn.cell.recording_spike_levels`).
    qc : bool
        Leave out the sweeps quality control rejects (False: only ``exclude``).
    keep, exclude : sequence of int
        Sweeps forced in or out.

    Returns
    -------
    RecordingSurvey
        ``qc`` is None when quality control is off and nothing is forced; ``properties`` None without steps.
    """
    traces = tuple(traces)
    steps = protocol_steps(traces) if traces else None
    # a recorded cell's spikes are detected at levels its noise cannot fool (step protocols: real cells);
    # synthetic single-regime traces keep the given levels
    levels = recording_spike_levels(traces, threshold, rearm) if steps else (float(threshold), float(rearm))
    report, kept = None, traces
    if qc or keep or exclude:
        report = check_sweeps(traces, keep=keep, exclude=exclude, threshold=levels[0], rearm=levels[1])
        chosen = set(report.kept) if qc else {tr.sweep for tr in traces} - set(exclude)
        kept = tuple(tr for tr in traces if tr.sweep in chosen)
    # measured on the sweeps quality control kept (it reads them from its report), or on all without one
    props = None
    if steps and kept:
        props = measure_cell(traces if report is not None and qc else kept, report if qc else None,
                             threshold=levels[0], rearm=levels[1])
    return RecordingSurvey(steps=tuple(steps or ()), levels=levels, qc=report, kept=kept, properties=props)


def plan_cell_fit(model: NeuronModel, traces: Sequence[Trace], free: Sequence[str], *,
                  options: CellFitOptions = CellFitOptions(), window: tuple[float, float] | None = None,
                  preset: str | None = None, values: Mapping[str, float] | None = None) -> CellPlan:
    """Check the sweeps, measure the cell and decide windows, ranges and stages (see the module docstring).

    Parameters
    ----------
    model : NeuronModel
    traces : sequence of Trace
        Whole sweeps (not yet windowed).
    free : sequence of str
        Parameters to estimate.
    options : CellFitOptions
    window : (float, float), optional
        User window, ms from each sweep's start (disables the automatic one).
    preset, values
        Reference preset and user-set values (for the scaling).

    Returns
    -------
    CellPlan

    Raises
    ------
    UnphysiologicalVoltageError
        The fitted voltage is outside the physiological range (unless ``options.allow_unphysiological``).
    NonFiniteDataError
        NaN/inf inside the window (without a window: anywhere in a sweep; the message names the samples).
    EmptySignalError
        A sweep too short to fit in the window (:func:`neo_pinn.problem.check_fit_length`).
    """
    traces = tuple(traces)
    window = check_window(window)
    notes: list[str] = []
    surveyed = _checked_sweeps(model, traces, window, options)
    survey = survey_recording(surveyed, model.spike_threshold, model.spike_rearm, qc=options.qc,
                              keep=options.keep_sweeps, exclude=options.exclude_sweeps)
    # the whole sweeps go on (fit_cell cuts them to the window); the survey may have seen only their window
    whole = {id(cut): tr for cut, tr in zip(surveyed, traces)}
    steps, levels, qc, props = survey.steps, survey.levels, survey.qc, survey.properties
    kept = [whole[id(tr)] for tr in survey.kept]
    if not kept:
        raise EmptySignalError("Quality control left no sweep to fit: "
                               + "; ".join(f"sweep {s}: {', '.join(r)}" for s, r in qc.excluded.items())
                               + ". Keep sweeps by hand (--keep-sweeps) or switch quality control off (--no-qc).")
    held = set(held_out_sweeps([tr.sweep for tr in kept], options.validate_on))
    fit_traces = tuple(tr for tr in kept if tr.sweep not in held)
    holdout = tuple(tr for tr in kept if tr.sweep in held)
    if window is None and steps and options.auto_window and len(traces) >= 2:
        window = _step_window(traces, steps)
        notes.append(f"fit window {window[0]:.1f}–{window[1]:.1f} ms: the step and {STEP_MARGIN_MS:.0f} ms "
                     "either side (give --window to choose another)")
    ranges = None
    roles = dict(model.passive_parameters)
    usable = props is not None and props.capacitance_pF is not None and props.input_resistance_MOhm is not None
    # a fixed capacitance is the user's statement of the cell's size: only a free one is scaled to the cell
    scalable = bool(roles.get("capacitance")) and roles["capacitance"] in free
    if options.scale_to_cell and usable and scalable:
        ranges = cell_scaled_ranges(model, free, capacitance_pF=props.capacitance_pF,
                                    input_resistance_MOhm=props.input_resistance_MOhm, rest_mV=props.rest_mV,
                                    preset=preset, values=values)
    elif options.scale_to_cell and steps and scalable:
        notes.append("the cell's passive properties could not be measured: textbook search ranges")
    passive_free = [p for p in roles.values() if p in free]
    active_free = [p for p in free if p not in passive_free]
    sub = _passive_sweeps(fit_traces, props, steps)
    staged = bool(options.staged) and ranges is not None and bool(passive_free) and bool(active_free) \
        and bool(sub) and (options.staged is True or len(fit_traces) >= 2)
    if levels != (model.spike_threshold, model.spike_rearm):
        notes.append(f"spikes: upward crossings of {levels[0]:.1f} mV, re-armed below {levels[1]:.1f} mV (the "
                     f"model's {model.spike_threshold:g}/{model.spike_rearm:g} mV would count this recording's "
                     "noise or merge spikes fired from depolarised troughs)")
    return CellPlan(fit_traces=fit_traces, holdout=holdout, window=window, qc=qc, properties=props,
                    steps=tuple(steps or ()), ranges=ranges, staged=staged, notes=tuple(notes),
                    spike_levels=levels if steps else None)


def _checked_sweeps(model: NeuronModel, traces: tuple[Trace, ...], window,
                    options: CellFitOptions) -> tuple[Trace, ...]:
    """Check what will be fitted before any work, and return what the survey may read.

    The voltage in the fit window (the whole sweep without one) must be physiological and long enough; NaN/inf
    samples are allowed only outside a user window, and then the survey reads the window alone (quality control
    and the cell's measurements cannot read a gap). Sweeps excluded by hand are not checked.
    """
    cut = _windowed(traces, window)
    used = [tr for tr in cut if tr.sweep not in options.exclude_sweeps]
    ends = ["…" if w is None else f"{w:g}" for w in window or ()]
    span = f" in the window {ends[0]}–{ends[1]} ms" if ends else ""
    if model.state_units[0] == "mV":
        for tr in used:
            check_physiological_voltage(tr.v, what=f"The voltage of sweep {tr.sweep}{span}",
                                        allow=options.allow_unphysiological)
    check_fit_length(used, window)
    gaps = any(not (np.all(np.isfinite(tr.v)) and np.all(np.isfinite(tr.i_ext))) for tr in traces)
    if not gaps:
        return traces
    require_finite(used)  # without a window: names the samples and asks for one
    return cut


def _passive_sweeps(traces: Sequence[Trace], props, steps) -> list[Trace]:
    """Subthreshold sweeps with a step, for the passive stage: the hyperpolarising ones when there are any."""
    if props is None or not steps:
        return []
    sub = set(props.subthreshold_sweeps)
    amp = {s.sweep: s.amplitude_pA for s in steps}
    chosen = [tr for tr in traces if tr.sweep in sub and amp.get(tr.sweep, 0.0) != 0.0]
    hyper = [tr for tr in chosen if amp[tr.sweep] < 0]
    return hyper or chosen


def _merged(ranges, init, bounds, values, free):
    """User init/bounds/values over the cell-scaled ones; bounds widened to hold a user's initial guess."""
    init = dict(init or {})
    bounds = dict(bounds or {})
    values = dict(values or {})
    if ranges is None:
        return init, bounds, values
    b = {k: v for k, v in ranges.bounds.items() if k in free} | bounds
    i = {k: v for k, v in ranges.init.items() if k in free} | init
    for k, x in init.items():
        if k in b and k not in bounds and not b[k][0] <= x <= b[k][1]:
            b[k] = (min(b[k][0], x), max(b[k][1], x))
    v = {k: x for k, x in ranges.fixed.items() if k not in free} | values
    return i, b, v


def fit_cell(estimator: Estimator, model: NeuronModel, plan: CellPlan, free: Sequence[str], *,
             preset: str | None = None, values: Mapping[str, float] | None = None,
             init: Mapping[str, float] | None = None, bounds: Mapping[str, tuple[float, float]] | None = None,
             noise: NoiseModel | None = None, truth: Mapping[str, float] | None = None,
             fit_kwargs: Mapping[str, Any] | None = None) -> EstimationResult:
    """Run the plan: one fit, or the passive stage then the active one; the result carries ``cell``.

    Parameters
    ----------
    estimator : Estimator
        The chosen backend, configured.
    model : NeuronModel
    plan : CellPlan
        From :func:`plan_cell_fit`.
    free : sequence of str
    preset, values, init, bounds, noise, truth
        As for :meth:`EstimationProblem.build` (the user's; they win over the cell-scaled ones).
    fit_kwargs : mapping
        ``seed``, ``device``, ``dtype``, ``progress`` of :meth:`Estimator.fit`.

    Returns
    -------
    EstimationResult
        With ``status``/``verdict`` over every free parameter and sweep, and ``cell`` (QC, properties,
        scaling, stages).
    """
    kw = dict(fit_kwargs or {})
    free = list(free)
    init_m, bounds_m, values_m = _merged(plan.ranges, init, bounds, values, free)
    fit_tr, hold_tr = _windowed(plan.fit_traces, plan.window), _windowed(plan.holdout, plan.window)
    cell = plan.to_dict()

    def build(traces, names, vals, holdout=()):
        return EstimationProblem.build(model, traces, names, preset=preset, values=vals,
                                       init={k: v for k, v in init_m.items() if k in names},
                                       bounds={k: v for k, v in bounds_m.items() if k in names},
                                       noise=noise, truth=truth, holdout=holdout,
                                       spike_threshold=None if plan.spike_levels is None else plan.spike_levels[0],
                                       spike_rearm=None if plan.spike_levels is None else plan.spike_levels[1])

    if not plan.staged:
        result = estimator.fit(build(fit_tr, free, values_m, hold_tr), **kw)
        return replace(result, cell=cell)
    roles = dict(model.passive_parameters)
    passive = [p for p in free if p in roles.values()]
    active = [p for p in free if p not in passive]
    sub = _windowed(_passive_sweeps(plan.fit_traces, plan.properties, plan.steps), plan.window)
    factor = max(1, int(round(PASSIVE_STAGE_DT_MS / sub[0].dt)))
    sub = tuple(tr.decimate(factor) for tr in sub)
    fixed_active = {k: v for k, v in init_m.items() if k in active} | values_m
    lsq = get_state().backends.get("lsq")()
    try:
        # judged once, as a whole, below: no verdict of the passive sub-problem on its own
        first = lsq.fit(build(sub, passive, fixed_active), **(kw | {"check": False}))
        held = {k: first.parameters[k].value for k in passive}
        record = _stage_record("passive", first, sub)
    except EstimationError as exc:
        # the model cannot follow these sweeps (e.g. its simulation diverges): hold the measured values and say so
        first, held = None, {k: init_m[k] for k in passive}
        record = {"stage": "passive", "backend": "lsq", "sweeps": [tr.sweep for tr in sub], "status": "failed",
                  "free": {k: {"value": v, "std": None, "unit": model.param_spec(k).unit} for k, v in held.items()},
                  "error": f"{exc} The measured passive values were held instead."}
    second_problem = build(fit_tr, active, values_m | held, hold_tr)
    second = estimator.fit(second_problem, **(kw | {"check": False}))
    cell["stages"] = [record, _stage_record("active", second, fit_tr)]
    if "error" in record:
        cell["notes"].append(f"passive stage failed: {record['error']}")
    params = dict(second.parameters)
    for k in passive:
        params[k] = dataclasses.replace(params[k], free=True, std=None if first is None else first.parameters[k].std,
                                        init=init_m[k] if first is None else first.parameters[k].init)
    combined = replace(second, parameters=params, cell=cell)
    # the verdict judges the whole model: every free parameter (passive ones at their stage's bounds)
    whole = build(fit_tr, free, values_m, hold_tr)
    return judge(whole, combined, holdout=whole.holdout, extra_checks=estimator.verdict_checks(whole, combined))


def _stage_record(name: str, result: EstimationResult, traces: Sequence[Trace]) -> dict[str, Any]:
    """One stage of a staged fit, for :attr:`EstimationResult.cell`."""
    return {"stage": name, "backend": result.backend, "sweeps": [tr.sweep for tr in traces],
            "free": {k: {"value": p.value, "std": p.std, "unit": p.unit} for k, p in result.free_parameters.items()},
            "rmse_mV": float(result.metrics.get("rmse_mV", float("nan"))), "status": result.status,
            "wall_time_s": float(result.provenance.get("wall_time_s", float("nan")))}

"""The injected current of every sweep: recovered from the recording, given by the user, or both.

:func:`recover_stimuli` decides each sweep's stimulus and marks it in the annotated copy: a stimulus
already marked there (an earlier load) is kept; a user's ``stimulus=`` wins over the recording's own,
with a :class:`~neo_pinn.errors.StimulusMismatchWarning` when they disagree; otherwise the stimulus
finder is asked first and the built-in finders (:mod:`neo_pinn.io.stimulus_finders`) after it, and two
recovered sources that disagree are reported too.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np
import quantities as pq

from ..errors import StimulusError, StimulusMismatchWarning
from ..units import dimension_of, to_canonical
from . import convert
from .channels import signals_aligned
from .stimulus_finders import find_candidates
from .stimulus_specs import StimulusSpec, compare_stimuli, parse_stimulus, step_amplitudes, summarize_steps

__all__ = ["NOT_FOUND", "USER", "NONE", "StimulusFinder", "user_stimulus", "signal_stimuli", "marked_stimuli",
           "recover_stimuli", "stimulus_signal", "step_summary"]

#: Stimulus sources that are not a finder's: none found, the user's, declared stimulus-free.
NOT_FOUND = "not-found"
USER = "user"
NONE = "none"

#: ``finder(signal=..., segment=...) -> (current_pA, source) | None``
StimulusFinder = Callable[..., Any]


# ---------------------------------------------------------------------- the user's stimulus
def _is_zero_declaration(stimulus) -> bool:
    return isinstance(stimulus, str) and stimulus.strip().lower() in ("none", "zero")


def _user_label(stimulus) -> str:
    if _is_neo_signal(stimulus):
        return f"AnalogSignal {stimulus.name!r}, matched by time"
    if isinstance(stimulus, StimulusSpec):
        return stimulus.to_string()
    if isinstance(stimulus, (str, os.PathLike)):
        return str(stimulus)
    if isinstance(stimulus, np.ndarray):
        return f"array {stimulus.shape}"
    return type(stimulus).__name__


def _as_current(x, t, k) -> np.ndarray:
    arr = np.asarray(to_canonical(x, kind="current") if isinstance(x, pq.Quantity) else x, dtype=float).reshape(-1)
    if arr.size != t.size:
        raise StimulusError(f"The stimulus array for sweep {k} has {arr.size} samples but the sweep has {t.size}; "
                            "give the current at the voltage's sampling times (pA).")
    return arr


def _arrays_per_sweep(values: np.ndarray, sweeps_t_rel: list[np.ndarray]) -> list[np.ndarray]:
    n = len(sweeps_t_rel)
    if values.ndim == 2 and values.shape[0] == n and n > 1:
        return [_as_current(values[k], t, k) for k, t in enumerate(sweeps_t_rel)]
    if values.ndim == 2 and 1 in values.shape:
        values = values.reshape(-1)
    if values.ndim != 1:
        raise StimulusError(f"A stimulus array of shape {values.shape} fits neither one sweep nor {n} sweeps; give "
                            "shape (T,) or (n_sweeps, T) in pA.")
    return [_as_current(values, t, k) for k, t in enumerate(sweeps_t_rel)]


def user_stimulus(stimulus, sweeps_t_rel: list[np.ndarray]) -> list[np.ndarray] | None:
    """Per-sweep currents in pA of a user's ``stimulus=``, or None for ``"auto"`` / None.

    Parameters
    ----------
    stimulus : str, StimulusSpec, os.PathLike, array_like, quantities array or callable
        See :func:`neo_pinn.io.load_recording`; ``"zero"`` / ``"none"`` give zeros.
    sweeps_t_rel : list of numpy.ndarray
        Each sweep's sample times in ms since its first sample.

    Raises
    ------
    StimulusError
        A malformed spec, or an array whose shape fits neither one sweep nor every sweep.
    """
    n = len(sweeps_t_rel)
    if stimulus is None:
        return None
    if isinstance(stimulus, str):
        low = stimulus.strip().lower()
        if low == "auto":
            return None
        if low in ("none", "zero"):
            return [np.zeros_like(t) for t in sweeps_t_rel]
        spec = parse_stimulus(stimulus)
        return [spec.sample(t) for t in sweeps_t_rel]
    if isinstance(stimulus, (StimulusSpec, os.PathLike)):
        spec = parse_stimulus(stimulus)
        return [spec.sample(t) for t in sweeps_t_rel]
    if isinstance(stimulus, pq.Quantity):
        values = np.asarray(to_canonical(pq.Quantity(np.asarray(stimulus.magnitude), stimulus.units),
                                         kind="current"), dtype=float)
        return _arrays_per_sweep(values, sweeps_t_rel)
    if callable(stimulus):
        out = []
        for t in sweeps_t_rel:
            value = np.asarray(stimulus(t), dtype=float).reshape(-1)
            out.append(value if value.size == t.size else np.broadcast_to(value, t.shape).copy())
        return out
    if isinstance(stimulus, (np.ndarray, list, tuple)):
        if isinstance(stimulus, (list, tuple)) and len(stimulus) == n and all(
                isinstance(x, (np.ndarray, list, tuple)) for x in stimulus):
            return [_as_current(x, t, k) for k, (x, t) in enumerate(zip(stimulus, sweeps_t_rel))]
        return _arrays_per_sweep(np.asarray(stimulus, dtype=float), sweeps_t_rel)
    raise StimulusError(f"stimulus={type(stimulus).__name__} is not understood: give 'auto', 'zero', a spec "
                        "string such as 'step:amp=50pA,start=100ms,stop=900ms', a StimulusSpec, a CSV path, or an "
                        "array in pA (one row per sweep, or one row for all).")


def _is_neo_signal(x) -> bool:
    return all(hasattr(x, a) for a in ("t_start", "sampling_rate", "times")) and isinstance(x, pq.Quantity)


def _signal_on_sweep(stim, vsig, k: int) -> np.ndarray:
    """A stimulus AnalogSignal's current (pA) at the samples of voltage signal ``vsig``, matched by time.

    The stimulus may span more than the voltage (a ``time_slice`` of the voltage and the whole current);
    one of exactly the voltage's length is taken sample for sample whatever its ``t_start``.
    """
    cur = np.asarray(to_canonical(stim, kind="current"), dtype=float)
    cur = cur[:, 0] if cur.ndim > 1 else cur
    n = vsig.shape[0]
    rate_v = float(vsig.sampling_rate.rescale("Hz").magnitude)
    rate_s = float(stim.sampling_rate.rescale("Hz").magnitude)
    if cur.size == n and abs(rate_s - rate_v) <= 1e-6 * rate_v:
        return cur
    if abs(rate_s - rate_v) > 1e-6 * rate_v:
        raise StimulusError(f"The stimulus signal is sampled at {rate_s:g} Hz but sweep {k}'s voltage at {rate_v:g} Hz; "
                            "give the current at the voltage's sampling rate.")
    first = (float(vsig.t_start.rescale("s").magnitude) - float(stim.t_start.rescale("s").magnitude)) * rate_v
    start = int(round(first))
    if abs(first - start) > 1e-3 or start < 0 or start + n > cur.size:
        t0, t1 = (float(x.rescale("ms").magnitude) for x in (stim.t_start, stim.t_stop))
        v0, v1 = (float(x.rescale("ms").magnitude) for x in (vsig.t_start, vsig.t_stop))
        raise StimulusError(f"The stimulus signal ({t0:g}–{t1:g} ms) does not cover sweep {k}'s voltage ({v0:g}–{v1:g} ms) "
                            "on the same sample times; give the current recorded with that voltage (a time_slice of "
                            "the voltage may be given with its whole current).")
    return cur[start:start + n]


def signal_stimuli(stimulus, voltages: list) -> list[np.ndarray] | None:
    """Per-sweep currents (pA) of a ``stimulus=`` given as Neo AnalogSignal(s), matched to each voltage by time.

    Parameters
    ----------
    stimulus : object
        One AnalogSignal for every sweep, or a list with one per sweep; anything else gives None.
    voltages : list of neo.AnalogSignal
        The sweeps' voltage signals.

    Raises
    ------
    StimulusError
        A current signal that is not a current, sampled at another rate, or not covering a sweep.
    """
    many = isinstance(stimulus, (list, tuple)) and stimulus and all(_is_neo_signal(x) for x in stimulus)
    if not (_is_neo_signal(stimulus) or many):
        return None
    signals = list(stimulus) if many else [stimulus] * len(voltages)
    if len(signals) != len(voltages):
        raise StimulusError(f"{len(signals)} stimulus signals were given for {len(voltages)} sweeps; give one per sweep "
                            "or one for all.")
    for x in signals:
        if dimension_of(x.units) != "current":
            raise StimulusError(f"The stimulus signal {x.name!r} is in {x.units.dimensionality.string}, not a current; "
                                "give the injected current (pA, nA ...).")
    return [_signal_on_sweep(x, v, k) for k, (x, v) in enumerate(zip(signals, voltages))]


# ---------------------------------------------------------------------- signals
def stimulus_signal(vsig, current_pA: np.ndarray, sweep: int, source: str, detail: str | None):
    """A new ``AnalogSignal`` in pA named ``"<voltage name>.stimulus"``, marked as sweep ``sweep``'s stimulus."""
    import neo

    sig = neo.AnalogSignal(np.asarray(current_pA, dtype=float), units="pA", t_start=vsig.t_start,
                           sampling_rate=vsig.sampling_rate, name=f"{vsig.name}.stimulus")
    sig.annotations.update(neo_pinn_role=convert.ROLE_STIMULUS, neo_pinn_sweep=int(sweep),
                           neo_pinn_stimulus_source=str(source),
                           neo_pinn_segment_index=vsig.annotations.get("neo_pinn_segment_index", 0))
    if detail:
        sig.annotations["neo_pinn_stimulus_detail"] = str(detail)
    return sig


def marked_stimuli(block, members) -> dict[int, Any]:
    """Stimuli an earlier load (or the user) marked for the chosen voltage signals: ``{id(voltage): stimulus}``.

    Only a voltage already marked with ``neo_pinn_sweep`` and exactly one aligned current marked
    ``neo_pinn_role="stimulus"`` for that sweep in its segment counts.
    """
    marked: dict[int, Any] = {}
    for s_idx, sig in members:
        if sig.annotations.get("neo_pinn_role") == convert.ROLE_VOLTAGE and "neo_pinn_sweep" in sig.annotations:
            old_k = sig.annotations["neo_pinn_sweep"]
            hit = [s for s in block.segments[s_idx].analogsignals
                   if s.annotations.get("neo_pinn_role") == convert.ROLE_STIMULUS
                   and s.annotations.get("neo_pinn_sweep") == old_k and dimension_of(s.units) == "current"
                   and signals_aligned(s, sig)]
            if len(hit) == 1:
                marked[id(sig)] = hit[0]
    return marked


# ---------------------------------------------------------------------- recovery
def _checked(result, sig):
    """A finder's ``(current_pA, source)`` as (float array of one value per sample, str), or None."""
    if result is None:
        return None
    try:
        current, source = result
    except (TypeError, ValueError) as exc:
        raise StimulusError("A stimulus finder (neo_pinn_find_stimulus) returned something other than "
                            f"(current_pA, source); got {type(result).__name__}.") from exc
    current = np.asarray(current, dtype=float).reshape(-1)
    if current.size != sig.shape[0]:
        raise StimulusError(f"A stimulus finder (neo_pinn_find_stimulus, {source!r}) returned {current.size} samples "
                            f"for a signal of {sig.shape[0]}; it must sample the current at the signal's times.")
    return current, str(source)


def _find(finder: StimulusFinder | None, sig, seg, cands):
    """The finder's answer, else the first built-in candidate, else None."""
    if finder is not None:
        found = _checked(finder(signal=sig, segment=seg), sig)
        if found is not None:
            return found
    return _checked((cands[0].current_pA, cands[0].source), sig) if cands else None


def _dt_ms(sig) -> float:
    return 1000.0 / float(sig.sampling_rate.rescale("Hz").magnitude)


class _Sweeps:
    """Per-sweep outcome of :func:`recover_stimuli` and the disagreements met on the way."""

    def __init__(self, n: int):
        self.sources: list[str | None] = [None] * n
        self.details: list[str | None] = [None] * n
        self.currents: list[np.ndarray | None] = [None] * n
        self.mismatch_user: dict[str, list] = {}
        self.mismatch_builtin: dict[tuple, list] = {}

    def record(self, k: int, source, detail, current) -> None:
        self.sources[k], self.details[k], self.currents[k] = source, detail, current


def _keep_marked(out: _Sweeps, k: int, sig, prior) -> None:
    src = str(prior.annotations.get("neo_pinn_stimulus_source", USER))
    det = str(prior.annotations.get("neo_pinn_stimulus_detail", "")) or None
    det = f"{det or src}; marked neo_pinn_role='stimulus' in the given tree"
    prior.annotations.update(neo_pinn_role=convert.ROLE_STIMULUS, neo_pinn_sweep=k,
                             neo_pinn_stimulus_source=src, neo_pinn_stimulus_detail=det)
    out.record(k, src, det, convert.signal_to_canonical(prior, "current"))


def _use_user(out: _Sweeps, k: int, sig, seg, cur, stimulus, found, winner) -> None:
    src = NONE if _is_zero_declaration(stimulus) else USER
    det = "declared: no injected current" if src == NONE else f"given by the user ({_user_label(stimulus)})"
    if found is not None and src == USER:
        cmp = compare_stimuli(cur, found[0], dt_ms=_dt_ms(sig))
        if not cmp["agree"]:
            name = winner.detail if winner is not None else found[1]
            out.mismatch_user.setdefault(f"{found[1]} ({name})", []).append((k, cmp))
    out.record(k, src, det, cur)
    if src == USER:
        seg.analogsignals.append(stimulus_signal(sig, cur, k, USER, det))


def _use_found(out: _Sweeps, k: int, sig, seg, found, winner, cands) -> None:
    cur, src = found
    det = winner.detail if winner is not None else f"found by plugin ({src})"
    for c in cands:
        if winner is not None and c is winner:
            continue
        if c.source == src and np.array_equal(c.current_pA, cur):
            continue
        cmp = compare_stimuli(cur, c.current_pA, dt_ms=_dt_ms(sig))
        if not cmp["agree"]:
            out.mismatch_builtin.setdefault((src, det, c.source, c.detail), []).append((k, cmp))
    out.record(k, src, det, np.asarray(cur, dtype=float))
    rec_sig = winner.signal if winner is not None else None
    if rec_sig is not None and rec_sig.shape[1] == 1 and any(s is rec_sig for s in seg.analogsignals) \
            and rec_sig.annotations.get("neo_pinn_role") != convert.ROLE_STIMULUS:
        rec_sig.annotations.update(neo_pinn_role=convert.ROLE_STIMULUS, neo_pinn_sweep=k,
                                   neo_pinn_stimulus_source=src, neo_pinn_stimulus_detail=det)
    else:
        seg.analogsignals.append(stimulus_signal(sig, cur, k, src, det))


def _worst(hits: list) -> tuple[str, dict]:
    return convert.format_ranges([k for k, _ in hits]), max(hits, key=lambda h: h[1]["max_abs_diff_pA"])[1]


def _report(out: _Sweeps, notes: list) -> None:
    for other, hits in out.mismatch_user.items():
        ks, worst = _worst(hits)
        notes.append((f"The stimulus you gave differs from the recording's own, {other}, in sweep(s) "
                      f"{ks} (max |difference| {worst['max_abs_diff_pA']:.4g} pA > tolerance "
                      f"{worst['tolerance_pA']:.4g} pA); using yours (source 'user').", StimulusMismatchWarning))
    for (src, det, osrc, odet), hits in out.mismatch_builtin.items():
        ks, worst = _worst(hits)
        notes.append((f"Two stimulus sources disagree in sweep(s) {ks}: using {src} ({det}); "
                      f"{osrc} ({odet}) differs by up to {worst['max_abs_diff_pA']:.4g} pA (tolerance "
                      f"{worst['tolerance_pA']:.4g} pA). Pass stimulus= to choose explicitly.",
                      StimulusMismatchWarning))
    missing = [k for k, s in enumerate(out.sources) if s == NOT_FOUND]
    if missing:
        notes.append((f"No injected current was found for sweep(s) {convert.format_ranges(missing)}; traces() will "
                      f"need stimulus= ({convert.STIMULUS_HINT}).", UserWarning))


def recover_stimuli(block, members, stimulus, marked: dict, notes: list, finder: StimulusFinder | None = None):
    """Decide every sweep's stimulus and mark it in the annotated copy.

    Parameters
    ----------
    block : neo.Block
        The annotated copy; recovered stimuli that are not a recorded signal are appended to its segments.
    members : list of (int, neo.AnalogSignal)
        The sweeps' voltage signals with their segment index, in sweep order.
    stimulus : object
        The user's ``stimulus=`` (see :func:`user_stimulus`).
    marked : dict
        From :func:`marked_stimuli`; used in ``"auto"`` mode.
    notes : list
        Appended ``(message, warning category)`` for disagreeing sources and sweeps without a stimulus.
    finder : callable, optional
        ``finder(signal=, segment=) -> (current_pA, source) | None``, asked before the built-in finders.

    Returns
    -------
    (list, list, list)
        Per sweep the source name, its detail and the current in pA (None where none was found).
    """
    out = _Sweeps(len(members))
    t_rel = [convert.signal_times_ms(sig) - convert.signal_times_ms(sig)[0] for _, sig in members]
    user = signal_stimuli(stimulus, [sig for _, sig in members])
    if user is None:
        user = user_stimulus(stimulus, t_rel)
    for k, (s_idx, sig) in enumerate(members):
        seg = block.segments[s_idx]
        prior = marked.get(id(sig)) if user is None else None
        if prior is not None:
            _keep_marked(out, k, sig, prior)
            sig.annotations["neo_pinn_stimulus_source"] = out.sources[k]
            sig.annotations["neo_pinn_stimulus_detail"] = out.details[k]
            continue
        cands = find_candidates(sig, seg)
        found = _find(finder, sig, seg, cands) if (user is None or not _is_zero_declaration(stimulus)) else None
        winner = None
        if found is not None:
            winner = next((c for c in cands if c.source == found[1] and np.array_equal(c.current_pA, found[0])),
                          None)
        if user is not None:
            _use_user(out, k, sig, seg, user[k], stimulus, found, winner)
        elif found is not None:
            _use_found(out, k, sig, seg, found, winner, cands)
        else:
            out.record(k, NOT_FOUND, None, None)
        sig.annotations["neo_pinn_stimulus_source"] = out.sources[k]
        if out.details[k]:
            sig.annotations["neo_pinn_stimulus_detail"] = out.details[k]
    _report(out, notes)
    return out.sources, out.details, out.currents


def step_summary(members, currents) -> dict:
    """The step protocol of the sweeps, for ``Recording.describe()``.

    Returns
    -------
    dict
        :func:`~neo_pinn.io.stimulus_specs.step_amplitudes` of the sweeps plus ``"epochs"``: per sweep
        :func:`~neo_pinn.io.stimulus_specs.summarize_steps` (times since sweep start), None without a stimulus.
    """
    per_sweep = []
    epochs = []
    for k, (s_idx, sig) in enumerate(members):
        if currents[k] is None:
            per_sweep.append(None)
            epochs.append(None)
            continue
        t = convert.signal_times_ms(sig)
        t = t - t[0]
        per_sweep.append((t, currents[k]))
        epochs.append(summarize_steps(t, currents[k]))
    info = step_amplitudes(per_sweep)
    info["epochs"] = epochs
    return info

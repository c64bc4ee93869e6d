"""Results back into Neo, and back out again.

:func:`attach` is the one explicit change neo_pinn makes to a user's Neo tree: for every fitted sweep it
*appends* one AnalogSignal per model state to the Segment holding that sweep's voltage, each on the fit's
sample times in the source segment's absolute time:

``<source>.neo_pinn.<model>.<backend>.<run id>.V``
    the reconstructed membrane voltage (mV, one channel), ``neo_pinn_role="reconstruction"``;
``<source>.neo_pinn.<model>.<backend>.<run id>.<state>``
    one per hidden state (``n``, ``h``, ``Ca`` ...), in that state's own units (dimensionless for gates),
    ``neo_pinn_role="hidden_states"``, ``neo_pinn_state=<state>``; its ``array_annotations``
    ``state_names``, ``state_units`` and ``channel_names`` name the one channel.

``<source>.neo_pinn.<model>.<backend>.<run id>.<role>.<channel>``
    only for a result with derived signals (``result.signals``): one signal per channel of each
    :class:`~neo_pinn.derived.DerivedSignal` of the sweep, on the derived signal's own times (a forecast
    lies past the fitted window, so its sample count differs from the sweep's), in the channel's unit
    (pA for a correction current), ``neo_pinn_role="forecast"`` or ``"correction"``,
    ``neo_pinn_state=<channel>``, plus ``neo_pinn_unit`` (the channel's canonical unit),
    ``neo_pinn_channels`` (every channel of that derived signal, in order), ``neo_pinn_description``
    and ``neo_pinn_observed`` (whether the forecast held the recorded voltage, which
    :func:`result_from_block` then re-reads from the sweep's voltage).

All carry the same flat annotations, chosen so that NixIO and NWBIO (through
:func:`neo_pinn.io.neo_writers.write_block`) can store them: only str, int, float, bool and lists of one
of those, never None.

=============================  ======================================================================
annotation                     value
=============================  ======================================================================
``neo_pinn_role``              ``"reconstruction"``, ``"hidden_states"``, ``"forecast"`` or ``"correction"``
``neo_pinn_model``             registered model name
``neo_pinn_backend``           registered backend name
``neo_pinn_run_id``            run identifier (``result.run_id``)
``neo_pinn_sweep``             sweep index of the fit (int)
``neo_pinn_source_signal``     name of the fitted voltage signal
``neo_pinn_stimulus_source``   where I(t) came from
``neo_pinn_rmse_mV``           RMSE recorded − reconstructed voltage of this sweep (mV)
``neo_pinn_state``             the state this signal holds (``V`` for the reconstruction)
``neo_pinn_parameters``        name → value, unit, std, interval_95, free, init, true_value (JSON text;
                               :func:`parameters_of` gives ParameterEstimates with quantities)
``neo_pinn_param_names``       parameter names, model order (list of str)
``neo_pinn_param_units``       their canonical units (list of str)
``neo_pinn_param_values``      estimates (list of float)
``neo_pinn_param_std``         one standard deviation, NaN when none (list of float)
``neo_pinn_param_free``        estimated (True) or fixed (False) (list of bool)
``neo_pinn_param_init``        initial guesses, NaN when none (list of float)
``neo_pinn_param_true``        ground truth, NaN when unknown (list of float)
``neo_pinn_state_names``       state names (list of str; also in the array annotations)
``neo_pinn_state_units``       state units (list of str)
``neo_pinn_config``            backend configuration (JSON text)
``neo_pinn_noise``             noise estimates (JSON text)
``neo_pinn_metrics``           metrics (JSON text)
``neo_pinn_provenance``        provenance (JSON text)
``neo_pinn_fit_source``        the sweep's source record (JSON text)
``neo_pinn_version``           neo_pinn version (str)
``neo_pinn_seed``              random seed (int), or ``"none"``
``neo_pinn_device``            device the fit ran on (str)
=============================  ======================================================================

:func:`read_attached` and :func:`result_from_block` read these signals back, from a Block in memory
or one read from a NIX or NWB file.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Iterable

import numpy as np
import quantities as pq

from ..errors import ConfigurationError
from ..result import EstimationResult, SweepFit
from ..storage import dumps as _dumps
from .attach_read import (ROLE_RECONSTRUCTION, ROLE_STATES, ROLES, annotations_of, as_int, name_of, nan_to_none,
                          parameters_of, read_attached, result_from_block, units_or_dimensionless)
from .fit_belongs import check_fit_belongs, is_voltage_signal

__all__ = ["attach", "attach_copy", "read_attached", "result_from_block", "parameters_of", "ROLE_RECONSTRUCTION",
           "ROLE_STATES"]

# Relative deviation of sampling intervals still called uniform: float rounding of windowed or
# decimated time axes, far below anything a sampled recording could mean.
_UNIFORM_RTOL = 1e-4


# ------------------------------------------------------------------------------------------ helpers
def _float_or_nan(x) -> float:
    return math.nan if x is None else float(x)


def _version(result: EstimationResult) -> str:
    prov = result.provenance
    versions = prov.get("versions")
    for key in ("neo-pinn", "neo_pinn"):  # the distribution's name, and the package's in older results
        if isinstance(versions, dict) and versions.get(key):
            return str(versions[key])
    if prov.get("neo_pinn_version"):
        return str(prov["neo_pinn_version"])
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("neo-pinn")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def _sampling(fit: SweepFit) -> tuple[float, float]:
    """(t0, dt) in ms of a uniformly sampled fit; raises otherwise."""
    t = np.asarray(fit.t, dtype=float).reshape(-1)
    if t.size < 2:
        raise ConfigurationError(f"Sweep {fit.sweep} has {t.size} sample(s); at least two are needed to attach it.")
    dt = float((t[-1] - t[0]) / (t.size - 1))
    if not (dt > 0 and np.all(np.abs(np.diff(t) - dt) <= _UNIFORM_RTOL * dt)):
        raise ConfigurationError(
            f"The times of sweep {fit.sweep} are not uniformly spaced, so they cannot be an AnalogSignal; "
            "fit on a uniformly sampled trace (decimate instead of dropping samples)."
        )
    return float(t[0]), dt


def _source_names(fit: SweepFit) -> set[str]:
    keys = ("signal", "signal_name", "voltage_signal", "channel", "channel_name")
    return {str(fit.source[k]) for k in keys if fit.source.get(k) not in (None, "")}


# ------------------------------------------------------------------------------------- target → plan
def _resolve_target(target):
    """Return (block or None, segments, explicit voltage signals or None)."""
    import neo

    if isinstance(target, neo.Block):
        return target, list(target.segments), None
    if isinstance(target, neo.Segment):
        return target.block, [target], None
    sigs = [target] if isinstance(target, neo.AnalogSignal) else None
    if sigs is None and isinstance(target, (list, tuple)) and target and all(isinstance(s, neo.AnalogSignal) for s in target):
        sigs = list(target)
    if sigs is None:
        raise ConfigurationError(
            f"attach needs a neo.Block, a neo.Segment or the voltage AnalogSignal(s) the result was fitted on, "
            f"not {type(target).__name__}."
        )
    segments = []
    for s in sigs:
        if s.segment is None:
            raise ConfigurationError(
                f"Signal {s.name!r} belongs to no Segment, so there is nowhere to append the reconstruction; "
                "pass its Segment or Block, or put it in a Segment first."
            )
        if all(s.segment is not x for x in segments):
            segments.append(s.segment)
    blocks = {id(s.block): s.block for s in segments}
    block = next(iter(blocks.values())) if len(blocks) == 1 else None
    return block, segments, sigs


def _match(result: EstimationResult, segments: list, explicit: list | None) -> list[tuple[SweepFit, Any, Any]]:
    """Pair every fit with (segment, source voltage signal or None); raise before any change."""
    if explicit is not None:
        candidates = explicit
    else:
        candidates = [s for seg in segments for s in seg.analogsignals if annotations_of(s)[0].get("neo_pinn_role") == "voltage"]
    swept = [(c, as_int(annotations_of(c)[0].get("neo_pinn_sweep"))) for c in candidates]
    annotated = [(c, k) for c, k in swept if k is not None]
    plan = []
    for n, fit in enumerate(result.fits):
        if annotated:
            hits = [c for c, k in annotated if k == fit.sweep]
            if len(hits) > 1:
                wanted = _source_names(fit)
                named = [c for c in hits if name_of(c) in wanted]
                hits = named if len(named) == 1 else hits
            if not hits:
                have = sorted({k for _, k in annotated})
                raise ConfigurationError(
                    f"No voltage signal annotated neo_pinn_sweep={fit.sweep} in the target (it has sweeps {have}). "
                    "Pass the Block or Segment the result was fitted on, or the voltage AnalogSignal(s) themselves."
                )
            if len(hits) > 1:
                raise ConfigurationError(
                    f"{len(hits)} voltage signals are annotated neo_pinn_sweep={fit.sweep} "
                    f"({', '.join(repr(name_of(h)) for h in hits)}); pass the one that was fitted as target."
                )
            plan.append((fit, hits[0].segment, hits[0]))
            continue
        if explicit is not None:
            if len(explicit) == len(result.fits):
                sig = explicit[n]
            elif len(explicit) == 1 and len(result.fits) == 1:
                sig = explicit[0]
            else:
                raise ConfigurationError(
                    f"{len(explicit)} signal(s) without neo_pinn_sweep annotations were given for {len(result.fits)} "
                    "fitted sweep(s); give one voltage signal per sweep, in the order of result.fits."
                )
            plan.append((fit, sig.segment, sig))
            continue
        # No annotations: the Segment is the sweep.
        if len(segments) == 1 and len(result.fits) == 1:
            seg = segments[0]
        elif len(segments) == 1:
            raise ConfigurationError(
                f"The target has one Segment but the result has {len(result.fits)} sweeps and its signals carry no "
                "neo_pinn_sweep annotations; pass the Block holding one Segment per sweep."
            )
        else:
            idx = as_int(fit.source.get("segment"))
            idx = fit.sweep if idx is None or not 0 <= idx < len(segments) else idx
            if not 0 <= idx < len(segments):
                raise ConfigurationError(
                    f"Sweep {fit.sweep} has no Segment: the target has {len(segments)} segments and no voltage signal "
                    "annotated neo_pinn_role='voltage'. Read the file with neo_pinn.load_recording() (which marks "
                    "the signals) or pass the fitted voltage AnalogSignal(s) as target."
                )
            # the recorded segment first; else the segment whose voltage the fit lies on (a fit of a time_slice
            # of sweep 5 of a Block Neo read knows neither its segment nor its sweep)
            order = [segments[idx]] + [s for s in segments if s is not segments[idx]]
            seg, src = next(((s, v) for s in order if (v := _lies_on(fit, s)) is not None),
                            (segments[idx], _voltage_of(fit, segments[idx])))
            plan.append((fit, seg, src))
            continue
        src = _lies_on(fit, seg)
        plan.append((fit, seg, src if src is not None else _voltage_of(fit, seg)))
    for fit, seg, src in plan:
        check_fit_belongs(fit, src)
    return plan


def _voltage_of(fit: SweepFit, seg):
    """The segment's signal named as the fit's source, else its first voltage signal that is not neo_pinn's."""
    wanted = _source_names(fit)
    src = next((s for s in seg.analogsignals if s.name in wanted), None)
    if src is None:
        src = next((s for s in seg.analogsignals if is_voltage_signal(s) and
                    annotations_of(s)[0].get("neo_pinn_role") not in ROLES), None)
    return src


def _lies_on(fit: SweepFit, seg):
    """The segment's voltage signal the fit lies on (its times and values), or None."""
    named = _voltage_of(fit, seg)
    others = [s for s in seg.analogsignals if s is not named and is_voltage_signal(s)
              and annotations_of(s)[0].get("neo_pinn_role") not in ROLES]
    for sig in ([named] if named is not None else []) + others:
        try:
            check_fit_belongs(fit, sig)
        except ConfigurationError:
            continue
        return sig
    return None


# -------------------------------------------------------------------------------------- annotations
def _parameter_mapping(result: EstimationResult) -> dict[str, dict]:
    """name → value, unit, std, 95 % interval, free, initial guess and truth (None where unknown)."""
    out = {}
    for name, p in result.parameters.items():
        ci = p.interval(0.95)
        out[str(name)] = {
            "value": nan_to_none(p.value), "unit": str(p.unit), "std": nan_to_none(p.std),
            "interval_95": None if ci is None else [float(ci[0].magnitude), float(ci[1].magnitude)],
            "free": bool(p.free), "init": nan_to_none(p.init), "true_value": nan_to_none(p.true_value),
        }
    return out


def _common_annotations(result: EstimationResult) -> dict[str, Any]:
    params = list(result.parameters.values())
    seed = result.provenance.get("seed")
    return {
        "neo_pinn_model": str(result.model),
        "neo_pinn_backend": str(result.backend),
        "neo_pinn_run_id": str(result.run_id),
        "neo_pinn_param_names": [str(p.name) for p in params],
        "neo_pinn_param_units": [str(p.unit) for p in params],
        "neo_pinn_param_values": [float(p.value) for p in params],
        "neo_pinn_param_std": [_float_or_nan(p.std) for p in params],
        "neo_pinn_param_free": [bool(p.free) for p in params],
        "neo_pinn_param_init": [_float_or_nan(p.init) for p in params],
        "neo_pinn_param_true": [_float_or_nan(p.true_value) for p in params],
        "neo_pinn_parameters": _dumps(_parameter_mapping(result)),
        "neo_pinn_state_names": [str(s) for s in result.state_names],
        "neo_pinn_state_units": [str(u) for u in result.state_units],
        "neo_pinn_config": _dumps(result.config),
        "neo_pinn_noise": _dumps(result.noise),
        "neo_pinn_metrics": _dumps(result.metrics),
        "neo_pinn_provenance": _dumps(result.provenance),
        "neo_pinn_version": _version(result),
        "neo_pinn_seed": as_int(seed) if as_int(seed) is not None else "none",
        "neo_pinn_device": str(result.provenance.get("device", "unknown")),
    }


def _signals_for(result: EstimationResult, fit: SweepFit, base: str, common: dict, source_name: str,
                 time_units=pq.ms) -> list:
    """The reconstructed voltage and one signal per hidden state of one fitted sweep, each in its own units."""
    import neo

    states = np.asarray(fit.states, dtype=float)
    if states.ndim != 2 or states.shape != (np.asarray(fit.t).size, len(result.state_names)):
        raise ConfigurationError(
            f"Sweep {fit.sweep}: states have shape {states.shape} but the result declares {len(result.state_names)} "
            f"states over {np.asarray(fit.t).size} samples."
        )
    t0, dt = _sampling(fit)
    per_fit = _per_fit_annotations(fit, source_name)
    # the source segment's absolute time, in the source signal's time units (Elephant slices by either)
    timing = dict(t_start=(t0 * pq.ms).rescale(time_units), sampling_rate=(1000.0 / dt) * pq.Hz)
    what = f"{result.model} fitted with {result.backend} (neo_pinn run {result.run_id}), sweep {fit.sweep}"
    v = neo.AnalogSignal(
        states[:, 0].reshape(-1, 1).copy(), units="mV", name=f"{base}.V",
        description=f"Reconstructed membrane voltage: {what}.", **timing,
        **{"neo_pinn_role": ROLE_RECONSTRUCTION, "neo_pinn_state": str(result.state_names[0]), **common, **per_fit},
    )
    out = [v]
    for k in range(1, len(result.state_names)):
        name, unit = str(result.state_names[k]), str(result.state_units[k])
        out.append(neo.AnalogSignal(
            states[:, k].reshape(-1, 1).copy(), units=units_or_dimensionless(unit), name=f"{base}.{name}",
            description=f"Reconstructed hidden state {name} ({unit}): {what}.",
            array_annotations={"state_names": np.array([name]), "state_units": np.array([unit]),
                               "channel_names": np.array([name])},
            **timing, **{"neo_pinn_role": ROLE_STATES, "neo_pinn_state": name, **common, **per_fit},
        ))
    return out + _derived_for(result, fit, base, common, per_fit, time_units)


def _per_fit_annotations(fit: SweepFit, source_name: str) -> dict[str, Any]:
    return {
        "neo_pinn_sweep": int(fit.sweep),
        "neo_pinn_source_signal": source_name,
        "neo_pinn_stimulus_source": str(fit.stimulus_source),
        "neo_pinn_fit_source": _dumps(fit.source),
        "neo_pinn_rmse_mV": float(fit.rmse),
    }


def _derived_for(result: EstimationResult, fit: SweepFit, base: str, common: dict, per_fit: dict,
                 time_units) -> list:
    """One AnalogSignal per channel of every derived signal (forecast, correction) of one fitted sweep."""
    import neo

    out = []
    for sig in (s for s in result.signals if s.sweep == fit.sweep):
        timing = dict(t_start=(float(sig.t[0]) * pq.ms).rescale(time_units), sampling_rate=(1000.0 / sig.dt) * pq.Hz)
        what = (f"{sig.role} of {result.model} fitted with {result.backend} (neo_pinn run {result.run_id}), "
                f"sweep {fit.sweep}")
        for k, (name, unit) in enumerate(zip(sig.names, sig.units)):
            out.append(neo.AnalogSignal(
                sig.values[:, k].reshape(-1, 1).copy(), units=units_or_dimensionless(unit),
                name=f"{base}.{sig.role}.{name}",
                description=f"{(sig.description or what).rstrip('.')}; channel {name} ({unit}).",
                array_annotations={"channel_names": np.array([name])}, **timing,
                **{**common, **per_fit, "neo_pinn_role": sig.role, "neo_pinn_state": str(name),
                   "neo_pinn_unit": str(unit), "neo_pinn_channels": [str(n) for n in sig.names],
                   "neo_pinn_description": sig.description, "neo_pinn_observed": sig.observed is not None},
            ))
    return out


# ----------------------------------------------------------------------------------------- attach
def attach(result: EstimationResult, target, *, name_prefix: str | None = None):
    """Append the reconstruction of every fitted sweep to the user's Neo tree.

    Parameters
    ----------
    result : EstimationResult
        A fit; ``result.fits[k].t`` in ms (uniform), states in ``result.state_units``.
    target : neo.Block, neo.Segment, neo.AnalogSignal or list of neo.AnalogSignal
        Where the result was fitted. Each fit goes to the Segment holding the voltage signal annotated
        ``neo_pinn_role="voltage"`` and ``neo_pinn_sweep == fit.sweep`` (as :mod:`neo_pinn.io` marks
        them); without such annotations to the Segment whose index is the fit's source segment or sweep,
        or to the only Segment when there is one Segment and one fit. Given signals, their Segments.
    name_prefix : str, optional
        Replaces the source signal's name at the start of the new signals' names.

    Returns
    -------
    neo.Block
        The Block owning the Segments (a Segment without a Block is put into a new one).

    Raises
    ------
    ConfigurationError
        A sweep cannot be matched, is matched ambiguously, its times are not uniform, or the run is
        already attached there. Nothing is appended when any sweep fails.

    Notes
    -----
    Only ``segment.analogsignals`` grows; no existing object, signal or annotation is changed. Use
    :func:`attach_copy` to leave the input entirely alone.
    """
    import neo

    if not isinstance(result, EstimationResult):
        raise ConfigurationError(f"attach needs an EstimationResult, got {type(result).__name__}.")
    if not result.fits:
        raise ConfigurationError("The result holds no fitted sweeps; there is nothing to attach.")
    block, segments, explicit = _resolve_target(target)
    plan = _match(result, segments, explicit)
    common = _common_annotations(result)
    tag = f"neo_pinn.{result.model}.{result.backend}.{result.run_id}"
    built = []
    planned: dict[int, set[str]] = {}
    for fit, seg, src in plan:
        source_name = (name_of(src) if src is not None else None) or f"sweep{fit.sweep}"
        base = f"{name_prefix if name_prefix is not None else source_name}.{tag}"
        new_signals = _signals_for(result, fit, base, common, source_name,
                                   time_units=src.t_start.units if src is not None else pq.ms)
        taken = {name_of(s) for s in seg.analogsignals} | planned.setdefault(id(seg), set())
        for new in new_signals:
            if new.name in taken:
                raise ConfigurationError(
                    f"Segment {seg.name!r} already holds a signal named {new.name!r}: this run is attached already "
                    "(or two fits share a sweep). Use attach_copy() on the original tree or another name_prefix."
                )
            planned[id(seg)].add(new.name)
        built.append((seg, new_signals))
    for seg, new_signals in built:  # all checks passed: now change the tree
        seg.analogsignals.extend(new_signals)
    if block is None:
        block = neo.Block(name=f"neo_pinn {result.run_id}")
        for seg in segments:
            if seg.block is None:
                block.segments.append(seg)
    return block


def attach_copy(result: EstimationResult, target, *, name_prefix: str | None = None):
    """Like :func:`attach`, on a deep copy of the tree holding ``target``; the input is left untouched.

    Parameters
    ----------
    result : EstimationResult
        A fit.
    target : neo.Block, neo.Segment, neo.AnalogSignal or list of neo.AnalogSignal
        As for :func:`attach`; the whole Block owning it is copied.
    name_prefix : str, optional
        As for :func:`attach`.

    Returns
    -------
    neo.Block
        The copy, with the new signals appended.
    """
    import neo

    block, segments, explicit = _resolve_target(target)
    if block is None or any(s.block is not block for s in segments):
        if len(segments) != 1:
            raise ConfigurationError("The target's signals lie in segments of different blocks; attach to one Block.")
        seg_copy = copy.deepcopy(segments[0])
        if explicit is None:
            return attach(result, seg_copy, name_prefix=name_prefix)
        idx = [_index_of(segments[0].analogsignals, s) for s in explicit]
        return attach(result, [seg_copy.analogsignals[i] for i in idx], name_prefix=name_prefix)
    block_copy = copy.deepcopy(block)
    if isinstance(target, neo.Block):
        new_target = block_copy
    elif isinstance(target, neo.Segment):
        new_target = block_copy.segments[_index_of(block.segments, target)]
    else:
        new_target = []
        for s in explicit:
            si = _index_of(block.segments, s.segment)
            new_target.append(block_copy.segments[si].analogsignals[_index_of(s.segment.analogsignals, s)])
    return attach(result, new_target, name_prefix=name_prefix)


def _index_of(items: Iterable, obj) -> int:
    for i, x in enumerate(items):
        if x is obj:
            return i
    raise ConfigurationError("The target is not part of its own Segment/Block lists; rebuild the tree with create_relationship().")


# ------------------------------------------------------------------------------------- and back

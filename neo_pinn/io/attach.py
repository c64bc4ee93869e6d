"""Results back into Neo, and back out again.

:func:`attach` is the one explicit change neo_pinn makes to a user's Neo tree: for every fitted sweep it
*appends* two AnalogSignals to the Segment holding that sweep's voltage:

``<source>.neo_pinn.<model>.<backend>.<run id>.V``
    the reconstructed membrane voltage (mV, one channel), ``neo_pinn_role="reconstruction"``;
``<source>.neo_pinn.<model>.<backend>.<run id>.states``
    every model state, state 0 (the voltage) included, as one multi-channel signal,
    ``neo_pinn_role="hidden_states"``. Its units are the states' common unit, or dimensionless when
    they differ; the numbers of channel *k* are in ``array_annotations["state_units"][k]``.
    ``array_annotations`` ``state_names``, ``state_units`` and ``channel_names`` name the channels.

Both carry the same flat annotations, chosen so that NixIO and NWBIO (through
:func:`neo_pinn.io.neo_writers.write_block`) can store them: only str, int, float, bool and lists of one
of those, never None.

=============================  ======================================================================
annotation                     value
=============================  ======================================================================
``neo_pinn_role``              ``"reconstruction"`` or ``"hidden_states"``
``neo_pinn_model``             registered model name
``neo_pinn_backend``           registered backend name
``neo_pinn_run_id``            run identifier (``result.run_id``)
``neo_pinn_sweep``             sweep index of the fit (int)
``neo_pinn_source_signal``     name of the fitted voltage signal
``neo_pinn_stimulus_source``   where I(t) came from
``neo_pinn_rmse_mV``           RMSE recorded − reconstructed voltage of this sweep (mV)
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
import json
import math
from typing import Any, Iterable

import numpy as np
import quantities as pq

from ..errors import ConfigurationError
from ..result import EstimationResult, ParameterEstimate, SweepFit, split_outputs
from ..storage import dumps as _dumps
from .fit_belongs import check_fit_belongs, is_voltage_signal
from .neo_files_reader import decode_nwb_payload

__all__ = ["attach", "attach_copy", "read_attached", "result_from_block", "ROLE_RECONSTRUCTION", "ROLE_STATES"]

ROLE_RECONSTRUCTION = "reconstruction"
ROLE_STATES = "hidden_states"
_ROLES = (ROLE_RECONSTRUCTION, ROLE_STATES)
# Relative deviation of sampling intervals still called uniform: float rounding of windowed or
# decimated time axes, far below anything a sampled recording could mean.
_UNIFORM_RTOL = 1e-4


# ------------------------------------------------------------------------------------------ helpers
def _float_or_nan(x) -> float:
    return math.nan if x is None else float(x)


def _nan_to_none(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


def _as_int(x) -> int | None:
    if x is None or isinstance(x, (bool, np.bool_)):
        return None
    try:
        f = float(np.asarray(x, dtype=float).reshape(-1)[0]) if np.ndim(x) else float(x)
    except (TypeError, ValueError, IndexError):
        return None
    return int(f) if math.isfinite(f) and f == int(f) else None


def _version(result: EstimationResult) -> str:
    prov = result.provenance
    versions = prov.get("versions")
    if isinstance(versions, dict) and versions.get("neo_pinn"):
        return str(versions["neo_pinn"])
    if prov.get("neo_pinn_version"):
        return str(prov["neo_pinn_version"])
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("neo-pinn")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def _units_or_dimensionless(text: str) -> pq.Quantity:
    try:
        if str(text).strip() in ("", "1", "dimensionless", "none", "None"):
            return pq.dimensionless
        return pq.Quantity(1.0, str(text).replace("µ", "u").replace("μ", "u")).units
    except (LookupError, ValueError, SyntaxError):
        return pq.dimensionless


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


def _annotations_of(sig) -> tuple[dict, dict]:
    """(annotations, array_annotations) of a signal, decoding a neo_pinn NWB payload when present."""
    payload = decode_nwb_payload(sig)
    if payload is not None:
        return dict(payload.get("annotations", {})), {k: np.asarray(v) for k, v in payload.get("array_annotations", {}).items()}
    return dict(sig.annotations), dict(sig.array_annotations)


def _name_of(sig) -> str | None:
    payload = decode_nwb_payload(sig)
    return payload.get("name") if payload is not None else sig.name


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
        candidates = [s for seg in segments for s in seg.analogsignals if _annotations_of(s)[0].get("neo_pinn_role") == "voltage"]
    swept = [(c, _as_int(_annotations_of(c)[0].get("neo_pinn_sweep"))) for c in candidates]
    annotated = [(c, k) for c, k in swept if k is not None]
    plan = []
    for n, fit in enumerate(result.fits):
        if annotated:
            hits = [c for c, k in annotated if k == fit.sweep]
            if len(hits) > 1:
                wanted = _source_names(fit)
                named = [c for c in hits if _name_of(c) in wanted]
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
                    f"({', '.join(repr(_name_of(h)) for h in hits)}); pass the one that was fitted as target."
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
            idx = _as_int(fit.source.get("segment"))
            idx = fit.sweep if idx is None or not 0 <= idx < len(segments) else idx
            if not 0 <= idx < len(segments):
                raise ConfigurationError(
                    f"Sweep {fit.sweep} has no Segment: the target has {len(segments)} segments and no voltage signal "
                    "annotated neo_pinn_role='voltage'. Read the file with neo_pinn.load_recording() (which marks "
                    "the signals) or pass the fitted voltage AnalogSignal(s) as target."
                )
            seg = segments[idx]
        wanted = _source_names(fit)
        src = next((s for s in seg.analogsignals if s.name in wanted), None)
        if src is None:
            src = next((s for s in seg.analogsignals if is_voltage_signal(s) and
                        _annotations_of(s)[0].get("neo_pinn_role") not in _ROLES), None)
        plan.append((fit, seg, src))
    for fit, seg, src in plan:
        check_fit_belongs(fit, src)
    return plan


# -------------------------------------------------------------------------------------- annotations
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
        "neo_pinn_state_names": [str(s) for s in result.state_names],
        "neo_pinn_state_units": [str(u) for u in result.state_units],
        "neo_pinn_config": _dumps(result.config),
        "neo_pinn_noise": _dumps(result.noise),
        "neo_pinn_metrics": _dumps(result.metrics),
        "neo_pinn_provenance": _dumps(result.provenance),
        "neo_pinn_version": _version(result),
        "neo_pinn_seed": _as_int(seed) if _as_int(seed) is not None else "none",
        "neo_pinn_device": str(result.provenance.get("device", "unknown")),
    }


def _signals_for(result: EstimationResult, fit: SweepFit, base: str, common: dict, source_name: str):
    import neo

    states = np.asarray(fit.states, dtype=float)
    if states.ndim != 2 or states.shape != (np.asarray(fit.t).size, len(result.state_names)):
        raise ConfigurationError(
            f"Sweep {fit.sweep}: states have shape {states.shape} but the result declares {len(result.state_names)} "
            f"states over {np.asarray(fit.t).size} samples."
        )
    t0, dt = _sampling(fit)
    per_fit = {
        "neo_pinn_sweep": int(fit.sweep),
        "neo_pinn_source_signal": source_name,
        "neo_pinn_stimulus_source": str(fit.stimulus_source),
        "neo_pinn_fit_source": _dumps(fit.source),
        "neo_pinn_rmse_mV": float(fit.rmse),
    }
    timing = dict(t_start=t0 * pq.ms, sampling_rate=(1000.0 / dt) * pq.Hz)
    what = f"{result.model} fitted with {result.backend} (neo_pinn run {result.run_id}), sweep {fit.sweep}"
    v = neo.AnalogSignal(
        states[:, 0].reshape(-1, 1).copy(), units="mV", name=f"{base}.V",
        description=f"Reconstructed membrane voltage: {what}.", **timing,
        **{"neo_pinn_role": ROLE_RECONSTRUCTION, **common, **per_fit},
    )
    units = sorted(set(result.state_units))
    sig_units = _units_or_dimensionless(units[0]) if len(units) == 1 else pq.dimensionless
    names = np.array([str(s) for s in result.state_names])
    s_units = np.array([str(u) for u in result.state_units])
    st = neo.AnalogSignal(
        states.copy(), units=sig_units, name=f"{base}.states",
        description=f"Reconstructed states {', '.join(names)} in units {', '.join(s_units)}: {what}.",
        array_annotations={"state_names": names, "state_units": s_units, "channel_names": names.copy()},
        **timing, **{"neo_pinn_role": ROLE_STATES, **common, **per_fit},
    )
    return v, st


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
        source_name = (_name_of(src) if src is not None else None) or f"sweep{fit.sweep}"
        base = f"{name_prefix if name_prefix is not None else source_name}.{tag}"
        v, st = _signals_for(result, fit, base, common, source_name)
        taken = {_name_of(s) for s in seg.analogsignals} | planned.setdefault(id(seg), set())
        for new in (v, st):
            if new.name in taken:
                raise ConfigurationError(
                    f"Segment {seg.name!r} already holds a signal named {new.name!r}: this run is attached already "
                    "(or two fits share a sweep). Use attach_copy() on the original tree or another name_prefix."
                )
            planned[id(seg)].add(new.name)
        built.append((seg, v, st))
    for seg, v, st in built:  # all checks passed: now change the tree
        seg.analogsignals.append(v)
        seg.analogsignals.append(st)
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
def _as_list(x) -> list:
    if x is None:
        return []
    if isinstance(x, str):
        return [x]
    return [v.item() if isinstance(v, np.generic) else v for v in np.atleast_1d(np.asarray(x, dtype=object)).tolist()]


def _loads(text, default):
    if isinstance(text, dict):
        return text
    try:
        return json.loads(text) if text not in (None, "") else default
    except (TypeError, ValueError):
        return default


def read_attached(block) -> list[dict]:
    """Find the neo_pinn signals of a Block and decode them, one dict per run.

    Parameters
    ----------
    block : neo.Block
        In memory after :func:`attach`, or read back with :func:`neo_pinn.io.neo_files_reader.read_block` or
        plain ``neo.io.NixIO`` / ``neo.io.NWBIO``.

    Returns
    -------
    list of dict
        In order of first appearance, each with ``run_id``, ``model``, ``backend``, ``version``,
        ``seed`` (int or None), ``device``, ``parameters`` (name → dict with ``value``, ``unit``, ``std``,
        ``free``, ``init``, ``true_value``; None where unknown), ``state_names``, ``state_units``,
        ``noise``, ``metrics``, ``config``, ``provenance`` and ``sweeps``: a list of dicts with ``sweep``,
        ``segment_index``, ``source_signal``, ``stimulus_source``, ``source``, ``rmse_mV``, ``t``
        (ms, array), ``v_fit`` (mV, array), ``states`` (state name → array, in that state's unit) and
        ``signals`` (``"V"`` → the reconstruction, ``"states"`` → list of the hidden-state signals: one,
        or one per state where a tool split the channels).
    """
    runs: dict[str, dict] = {}
    for si, seg in enumerate(block.segments):
        for sig in seg.analogsignals:
            ann, arr = _annotations_of(sig)
            role = ann.get("neo_pinn_role")
            if role not in _ROLES:
                continue
            rid = str(ann.get("neo_pinn_run_id", "run"))
            run = runs.get(rid)
            if run is None:
                run = runs[rid] = _run_header(ann)
                run["_sweeps"] = {}
            key = (si, _as_int(ann.get("neo_pinn_sweep")), str(ann.get("neo_pinn_source_signal", "")))
            sw = run["_sweeps"].setdefault(key, {
                "sweep": key[1], "segment_index": si, "source_signal": key[2],
                "stimulus_source": str(ann.get("neo_pinn_stimulus_source", "none")),
                "source": _loads(ann.get("neo_pinn_fit_source"), {}),
                "rmse_mV": _nan_to_none(ann.get("neo_pinn_rmse_mV")),
                "signals": {},
            })
            t = sig.times.rescale(pq.ms).magnitude.astype(float)
            if role == ROLE_RECONSTRUCTION:
                sw["signals"]["V"] = sig
                sw["t"] = t
                sw["v_fit"] = sig.rescale(pq.mV).magnitude[:, 0].astype(float)
            else:
                # Usually one multi-channel signal; tools that split channels (load_recording does)
                # leave one signal per state, each with its slice of the array annotations: merge them.
                sw["signals"].setdefault("states", []).append(sig)
                sw.setdefault("t", t)
                n_ch = sig.shape[1]
                names = next((c for c in (_as_list(arr.get("state_names")), _as_list(arr.get("channel_names")),
                                          run["state_names"]) if len(c) == n_ch), None)
                if names is None:
                    names = [f"{sig.name}[{k}]" for k in range(n_ch)]
                units = _as_list(arr.get("state_units"))
                mag = np.asarray(sig.magnitude, dtype=float)
                if len(set(units)) == 1 and sig.units != pq.dimensionless:
                    # One common unit: the signal carries it, so give numbers in that unit.
                    try:
                        mag = np.asarray(sig.rescale(_units_or_dimensionless(units[0])).magnitude, dtype=float)
                    except ValueError:
                        pass
                sw.setdefault("states", {}).update({str(n): mag[:, k].copy() for k, n in enumerate(names)})
    out = []
    for run in runs.values():
        sweeps = list(run.pop("_sweeps").values())
        for sw in sweeps:
            if "v_fit" not in sw and "states" in sw and sw["states"]:
                sw["v_fit"] = next(iter(sw["states"].values()))
        run["sweeps"] = sweeps
        out.append(run)
    return out


def _run_header(ann: dict) -> dict:
    names = [str(n) for n in _as_list(ann.get("neo_pinn_param_names"))]
    cols = {k: _as_list(ann.get(f"neo_pinn_param_{k}")) for k in ("units", "values", "std", "free", "init", "true")}
    for k, col in cols.items():
        if len(col) != len(names):
            cols[k] = [None] * len(names)  # a column lost on the way: unknown rather than misaligned
    params = {}
    for i, n in enumerate(names):
        free = cols["free"][i]
        params[n] = {
            "value": _nan_to_none(cols["values"][i]),
            "unit": str(cols["units"][i]) if cols["units"][i] is not None else "",
            "std": _nan_to_none(cols["std"][i]),
            "free": bool(free) if free is not None else True,
            "init": _nan_to_none(cols["init"][i]),
            "true_value": _nan_to_none(cols["true"][i]),
        }
    seed = ann.get("neo_pinn_seed")
    return {
        "run_id": str(ann.get("neo_pinn_run_id", "run")),
        "model": str(ann.get("neo_pinn_model", "")),
        "backend": str(ann.get("neo_pinn_backend", "")),
        "version": str(ann.get("neo_pinn_version", "")),
        "seed": _as_int(seed),
        "device": str(ann.get("neo_pinn_device", "")),
        "parameters": params,
        "state_names": [str(s) for s in _as_list(ann.get("neo_pinn_state_names"))],
        "state_units": [str(s) for s in _as_list(ann.get("neo_pinn_state_units"))],
        "noise": _loads(ann.get("neo_pinn_noise"), {}),
        "metrics": _loads(ann.get("neo_pinn_metrics"), {}),
        "config": _loads(ann.get("neo_pinn_config"), {}),
        "provenance": _loads(ann.get("neo_pinn_provenance"), {}),
    }


def _sample_at(sig, t_ms: np.ndarray, units) -> np.ndarray | None:
    """Values of channel 0 of ``sig`` at times ``t_ms`` (linear interpolation), or None if out of range."""
    try:
        y = np.asarray(sig.rescale(units).magnitude, dtype=float)[:, 0]
    except ValueError:
        return None
    ts = sig.times.rescale(pq.ms).magnitude.astype(float)
    half = 0.5 * float(np.median(np.diff(ts))) if ts.size > 1 else 0.0
    if ts.size == 0 or t_ms[0] < ts[0] - half or t_ms[-1] > ts[-1] + half:
        return None
    return np.interp(t_ms, ts, y)


def _partner_samples(seg, sweep: int | None, role: str, name: str | None, t_ms: np.ndarray, units):
    """Samples at ``t_ms`` of the sweep's signal of ``role`` (voltage/stimulus) in a segment, or None.

    The signal named ``name`` is tried first, then those annotated with ``role``; a signal annotated
    with another sweep, in other units or not covering the times is skipped.
    """
    def same_sweep(s) -> bool:
        k = _as_int(_annotations_of(s)[0].get("neo_pinn_sweep"))
        return k is None or sweep is None or k == sweep

    sigs = list(seg.analogsignals)
    pools = [[s for s in sigs if name and _name_of(s) == name],
             [s for s in sigs if _annotations_of(s)[0].get("neo_pinn_role") == role]]
    for pool in pools:
        for s in pool:
            if same_sweep(s):
                y = _sample_at(s, t_ms, units)
                if y is not None:
                    return y
    return None


def result_from_block(block, run_id: str | None = None) -> EstimationResult:
    """Rebuild an :class:`~neo_pinn.result.EstimationResult` from the neo_pinn signals of a Block.

    Parameters
    ----------
    block : neo.Block
        A Block :func:`attach` wrote to, in memory or read back from NIX / NWB.
    run_id : str, optional
        Which run; needed when the Block holds several.

    Returns
    -------
    EstimationResult
        Parameters (value, unit, std, free, initial guess, truth), states, noise, metrics, config and
        provenance as attached. ``v_observed`` (mV) and ``i_ext`` (pA) are re-read from the sweep's
        source voltage and ``neo_pinn_role="stimulus"`` signals at the fit's times; NaN (voltage) or
        zero (current, ``stimulus_source`` kept) where those signals are absent. ``history`` and
        ``samples`` are not stored in Neo and come back empty.

    Raises
    ------
    ConfigurationError
        No neo_pinn signals, an unknown ``run_id``, or several runs and no ``run_id``.
    """
    runs = read_attached(block)
    if not runs:
        raise ConfigurationError("The Block holds no neo_pinn signals (neo_pinn_role 'reconstruction'/'hidden_states'); "
                                 "attach a result first or read the file that attach wrote.")
    if run_id is None:
        if len(runs) > 1:
            raise ConfigurationError(f"The Block holds {len(runs)} runs ({', '.join(r['run_id'] for r in runs)}); pass run_id.")
        run = runs[0]
    else:
        match = [r for r in runs if r["run_id"] == str(run_id)]
        if not match:
            raise ConfigurationError(f"No run {run_id!r}; the Block holds {', '.join(r['run_id'] for r in runs)}.")
        run = match[0]
    params = {
        n: ParameterEstimate(name=n, value=float(p["value"]) if p["value"] is not None else math.nan, unit=p["unit"],
                             std=p["std"], free=p["free"], init=p["init"], true_value=p["true_value"])
        for n, p in run["parameters"].items()
    }
    names = run["state_names"]
    fits = []
    for sw in run["sweeps"]:
        t = np.asarray(sw["t"], dtype=float)
        if "states" in sw:
            missing = [n for n in names if n not in sw["states"]]
            if missing:
                raise ConfigurationError(f"Run {run['run_id']}, sweep {sw['sweep']}: the states {missing} are missing "
                                         f"from the Block (found {list(sw['states'])}).")
            states = np.column_stack([sw["states"][n] for n in names] if names else list(sw["states"].values()))
        else:
            states = np.asarray(sw["v_fit"], dtype=float).reshape(-1, 1)
        seg = block.segments[sw["segment_index"]]
        v_obs = _partner_samples(seg, sw["sweep"], "voltage", sw["source_signal"], t, pq.mV)
        i_ext = _partner_samples(seg, sw["sweep"], "stimulus", None, t, pq.pA)
        fits.append(SweepFit(
            sweep=int(sw["sweep"]) if sw["sweep"] is not None else sw["segment_index"], t=t,
            v_observed=v_obs if v_obs is not None else np.full(t.shape, np.nan),
            i_ext=i_ext if i_ext is not None else np.zeros(t.shape),
            states=states, stimulus_source=sw["stimulus_source"], source=dict(sw["source"]),
        ))
    metrics, _, diagnostics = split_outputs(run["metrics"], {}, [])
    return EstimationResult(
        model=run["model"], backend=run["backend"], parameters=params, state_names=tuple(names),
        state_units=tuple(run["state_units"]), fits=tuple(fits), noise=dict(run["noise"]),
        # a result attached before metrics held numbers only brings its lists and texts back as diagnostics
        metrics=metrics, diagnostics=diagnostics, provenance=dict(run["provenance"]), config=dict(run["config"]),
    )

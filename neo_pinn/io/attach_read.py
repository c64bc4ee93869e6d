"""neo_pinn's signals in a Neo tree, read back: runs, parameters and whole results.

:func:`read_attached`, :func:`result_from_block` and :func:`parameters_of` read what
:func:`neo_pinn.io.attach.attach` appended (see that module for the signals and annotations), from a Block
in memory or one read back from a NIX or NWB file, with neo_pinn's reader or with plain Neo.
"""

from __future__ import annotations

import json
import math

import numpy as np
import quantities as pq

from ..derived import DERIVED_ROLES, DerivedSignal, sample_nearest
from ..errors import ConfigurationError
from ..result import EstimationResult, ParameterEstimate, SweepFit, split_outputs
from .neo_files_reader import decode_nwb_payload

__all__ = ["read_attached", "result_from_block", "parameters_of", "ROLE_RECONSTRUCTION", "ROLE_STATES", "ROLES",
           "FIT_ROLES", "ROLE_FORECAST", "ROLE_CORRECTION", "annotations_of", "name_of", "as_int", "nan_to_none",
           "units_or_dimensionless"]

ROLE_RECONSTRUCTION = "reconstruction"
ROLE_STATES = "hidden_states"
ROLE_FORECAST, ROLE_CORRECTION = DERIVED_ROLES
#: the roles of a fit's reconstruction on the sweep's own samples (the voltage and the hidden states)
FIT_ROLES = (ROLE_RECONSTRUCTION, ROLE_STATES)
#: the ``neo_pinn_role`` of every signal attach appends: the reconstruction and the derived signals
#: (forecast, correction), which are never read as a reconstruction
ROLES = FIT_ROLES + DERIVED_ROLES


# ------------------------------------------------------------------------------------------ helpers
def nan_to_none(x) -> float | None:
    """A number as float, None for None or NaN (JSON and annotations hold no NaN meaning "unknown")."""
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


def as_int(x) -> int | None:
    """A whole number stored as int, float, numpy scalar or one-element array (NixIO's way), else None."""
    if x is None or isinstance(x, (bool, np.bool_)):
        return None
    try:
        f = float(np.asarray(x, dtype=float).reshape(-1)[0]) if np.ndim(x) else float(x)
    except (TypeError, ValueError, IndexError):
        return None
    return int(f) if math.isfinite(f) and f == int(f) else None


def units_or_dimensionless(text: str) -> pq.Quantity:
    """The units a unit string names (``"uM"``, ``"mV"``), dimensionless for an empty or unknown one."""
    try:
        if str(text).strip() in ("", "1", "dimensionless", "none", "None"):
            return pq.dimensionless
        return pq.Quantity(1.0, str(text).replace("µ", "u").replace("μ", "u")).units
    except (LookupError, ValueError, SyntaxError):
        return pq.dimensionless


def annotations_of(sig) -> tuple[dict, dict]:
    """(annotations, array_annotations) of a signal, decoding a neo_pinn NWB payload when present."""
    payload = decode_nwb_payload(sig)
    if payload is not None:
        return dict(payload.get("annotations", {})), {k: np.asarray(v) for k, v in payload.get("array_annotations", {}).items()}
    return dict(sig.annotations), dict(sig.array_annotations)


def name_of(sig) -> str | None:
    """A signal's name as neo_pinn wrote it (NWBIO renames signals; the payload keeps the original)."""
    payload = decode_nwb_payload(sig)
    return payload.get("name") if payload is not None else sig.name


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
        or one per state where a tool split the channels); and ``derived``: one dict per channel of each
        forecast or correction (``sweep``, ``segment_index``, ``source_signal``, ``role``, ``channel``, ``unit``,
        ``channels``, ``description``, ``observed`` (bool), ``t`` in ms, ``values`` in ``unit``, ``signal``).
    """
    runs: dict[str, dict] = {}
    for si, seg in enumerate(block.segments):
        for sig in seg.analogsignals:
            ann, arr = annotations_of(sig)
            role = ann.get("neo_pinn_role")
            if role not in ROLES:
                continue
            rid = str(ann.get("neo_pinn_run_id", "run"))
            run = runs.get(rid)
            if run is None:
                run = runs[rid] = _run_header(ann)
                run["_sweeps"], run["derived"] = {}, []
            if role in DERIVED_ROLES:
                run["derived"].append(_derived_channel(sig, ann, si))
                continue
            key = (si, as_int(ann.get("neo_pinn_sweep")), str(ann.get("neo_pinn_source_signal", "")))
            sw = run["_sweeps"].setdefault(key, {
                "sweep": key[1], "segment_index": si, "source_signal": key[2],
                "stimulus_source": str(ann.get("neo_pinn_stimulus_source", "none")),
                "source": _loads(ann.get("neo_pinn_fit_source"), {}),
                "rmse_mV": nan_to_none(ann.get("neo_pinn_rmse_mV")),
                "signals": {},
            })
            t = sig.times.rescale(pq.ms).magnitude.astype(float)
            if role == ROLE_RECONSTRUCTION:
                sw["signals"]["V"] = sig
                sw["t"] = t
                sw["v_fit"] = sig.rescale(pq.mV).magnitude[:, 0].astype(float)
                first = str(ann.get("neo_pinn_state") or (run["state_names"] or ["V"])[0])
                sw.setdefault("states", {}).setdefault(first, sw["v_fit"].copy())
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
                        mag = np.asarray(sig.rescale(units_or_dimensionless(units[0])).magnitude, dtype=float)
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


def _derived_channel(sig, ann: dict, segment_index: int) -> dict:
    """One channel of a forecast or correction signal attach appended, as plain numbers."""
    unit = str(ann.get("neo_pinn_unit") or sig.units.dimensionality.string)
    mag = np.asarray(sig.magnitude, dtype=float)[:, 0]
    if sig.units != pq.dimensionless:
        try:
            mag = np.asarray(sig.rescale(units_or_dimensionless(unit)).magnitude, dtype=float)[:, 0]
        except ValueError:
            pass
    return {"sweep": as_int(ann.get("neo_pinn_sweep")), "segment_index": segment_index,
            "source_signal": str(ann.get("neo_pinn_source_signal", "")), "role": str(ann["neo_pinn_role"]),
            "channel": str(ann.get("neo_pinn_state") or name_of(sig)), "unit": unit,
            "channels": [str(c) for c in _as_list(ann.get("neo_pinn_channels"))],
            "description": str(ann.get("neo_pinn_description") or ""),
            "observed": bool(ann.get("neo_pinn_observed", False)),
            "t": sig.times.rescale(pq.ms).magnitude.astype(float), "values": mag, "signal": sig}


def parameters_of(obj, run_id: str | None = None) -> dict[str, ParameterEstimate]:
    """The fitted parameters, name → :class:`~neo_pinn.result.ParameterEstimate`, from what :func:`attach` wrote.

    Each estimate gives ``value`` / ``unit`` / ``std``, ``quantity`` and ``std_quantity`` (quantities) and
    ``interval(level)``; the same mapping is stored as JSON text in the ``neo_pinn_parameters`` annotation,
    so plain ``json.loads(sig.annotations["neo_pinn_parameters"])["gCa"]["value"]`` reads it without this package.

    Parameters
    ----------
    obj : neo.AnalogSignal, neo.Segment, neo.Block or EstimationResult
        A signal attach appended, a container holding one (in memory or read back from NIX/NWB), or a result.
    run_id : str, optional
        Which run, where a container holds several.

    Raises
    ------
    ConfigurationError
        No neo_pinn signal, several runs and no ``run_id``, or an unknown ``run_id``.
    """
    import neo

    if isinstance(obj, EstimationResult):
        return dict(obj.parameters)
    if isinstance(obj, neo.AnalogSignal):
        signals = [obj]
    elif isinstance(obj, (neo.Segment, neo.Block)):
        segs = [obj] if isinstance(obj, neo.Segment) else list(obj.segments)
        signals = [x for seg in segs for x in seg.analogsignals]
    else:
        raise ConfigurationError(f"parameters_of needs a neo_pinn signal, a Segment, a Block or a result, not "
                                 f"{type(obj).__name__}.")
    found: dict[str, dict] = {}
    for sig in signals:
        ann = annotations_of(sig)[0]
        if ann.get("neo_pinn_role") in ROLES:
            found.setdefault(str(ann.get("neo_pinn_run_id", "run")), ann)
    if not found:
        raise ConfigurationError("No neo_pinn signal here (annotation neo_pinn_role 'reconstruction' or "
                                 "'hidden_states'); attach a result first or pass the signal attach appended.")
    if run_id is None and len(found) > 1:
        raise ConfigurationError(f"{len(found)} runs are attached here ({', '.join(found)}); pass run_id.")
    if run_id is not None and str(run_id) not in found:
        raise ConfigurationError(f"No run {run_id!r} here; attached runs: {', '.join(found)}.")
    ann = found[str(run_id) if run_id is not None else next(iter(found))]
    rows = _loads(ann.get("neo_pinn_parameters"), None) or _run_header(ann)["parameters"]
    return {str(n): ParameterEstimate(name=str(n), value=float(p["value"]) if p.get("value") is not None else math.nan,
                                      unit=str(p.get("unit", "")), std=p.get("std"), free=bool(p.get("free", True)),
                                      init=p.get("init"), true_value=p.get("true_value"))
            for n, p in rows.items()}


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
            "value": nan_to_none(cols["values"][i]),
            "unit": str(cols["units"][i]) if cols["units"][i] is not None else "",
            "std": nan_to_none(cols["std"][i]),
            "free": bool(free) if free is not None else True,
            "init": nan_to_none(cols["init"][i]),
            "true_value": nan_to_none(cols["true"][i]),
        }
    seed = ann.get("neo_pinn_seed")
    return {
        "run_id": str(ann.get("neo_pinn_run_id", "run")),
        "model": str(ann.get("neo_pinn_model", "")),
        "backend": str(ann.get("neo_pinn_backend", "")),
        "version": str(ann.get("neo_pinn_version", "")),
        "seed": as_int(seed),
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
        k = as_int(annotations_of(s)[0].get("neo_pinn_sweep"))
        return k is None or sweep is None or k == sweep

    sigs = list(seg.analogsignals)
    pools = [[s for s in sigs if name and name_of(s) == name],
             [s for s in sigs if annotations_of(s)[0].get("neo_pinn_role") == role]]
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
        signals=_derived_signals(block, run),
    )


def _derived_signals(block, run: dict) -> tuple[DerivedSignal, ...]:
    """The forecasts and corrections of a run, one DerivedSignal per (sweep, role), channels in their order."""
    groups: dict[tuple[int, str], list[dict]] = {}
    for ch in run.get("derived", []):
        sweep = ch["sweep"] if ch["sweep"] is not None else ch["segment_index"]
        groups.setdefault((sweep, ch["role"]), []).append(ch)
    out = []
    for (sweep, role), chans in groups.items():
        order = chans[0]["channels"]
        if sorted(order) == sorted(c["channel"] for c in chans):
            chans = sorted(chans, key=lambda c: order.index(c["channel"]))
        t = chans[0]["t"]
        if any(c["t"].shape != t.shape for c in chans):
            raise ConfigurationError(f"Run {run['run_id']}, sweep {sweep}: the channels of its {role} have different "
                                     "lengths in the Block; they were changed after attach.")
        observed = None
        if chans[0]["observed"]:
            seg = block.segments[chans[0]["segment_index"]]
            observed = _recorded_voltage(seg, sweep, chans[0]["source_signal"], t)
        out.append(DerivedSignal(sweep=int(sweep), role=role, t=t, values=np.column_stack([c["values"] for c in chans]),
                                 names=tuple(c["channel"] for c in chans), units=tuple(c["unit"] for c in chans),
                                 observed=observed, description=chans[0]["description"]))
    return tuple(out)


def _recorded_voltage(seg, sweep: int, name: str, t_ms: np.ndarray) -> np.ndarray:
    """The sweep's recorded voltage (mV) at ``t_ms``, nearest sample, NaN past the recording (all NaN without one)."""
    sigs = list(seg.analogsignals)
    pool = [s for s in sigs if name and name_of(s) == name] + \
        [s for s in sigs if annotations_of(s)[0].get("neo_pinn_role") == "voltage"]
    for s in pool:
        k = as_int(annotations_of(s)[0].get("neo_pinn_sweep"))
        if k is not None and k != sweep:
            continue
        try:
            v = np.asarray(s.rescale(pq.mV).magnitude, dtype=float)[:, 0]
        except ValueError:
            continue
        return sample_nearest(s.times.rescale(pq.ms).magnitude.astype(float), v, t_ms)
    return np.full(np.shape(t_ms), np.nan)

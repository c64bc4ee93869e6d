"""Fit results as NWB-native icephys data: :func:`write_result_nwb` and :func:`read_result_nwb`.

The written file is an ordinary NWB 2 file that pynwb, nwbinspector and DANDI read without this package:

* **the recording** — for an NWB input, the input's whole content (acquisition, stimulus, electrodes,
  devices, icephys tables, subject, session metadata), exported with pynwb (``NWBHDF5IO.export``) to the
  new file; the input is only opened read-only. For an ABF or any other file Neo reads (or Neo objects),
  a new icephys file: one ``Device``, one ``IntracellularElectrode``, per sweep a ``CurrentClampSeries``
  (samples in mV, ``conversion=1e-3``, unit ``volts``; ``starting_time`` the sweep's time in the recording)
  and, where the injected current is known, a ``CurrentClampStimulusSeries`` (pA, ``conversion=1e-12``,
  unit ``amperes``), linked in the icephys tables. A sweep whose file holds no stimulus gets the current
  the fit used, over the fitted window only. Without any file the fitted sweeps themselves are written.
* **the results**, in the processing module ``icephys`` (the NWB best-practice name for derived
  intracellular data; nwbinspector flags any other name), all names starting with the run:

  ``<model>_<backend>_<run id>_sweep<k>_<state>``
      one ``TimeSeries`` per fitted sweep and model state on the fit's time axis (``starting_time`` in
      seconds of the session, like the recorded sweep; ``rate`` in Hz): the voltage in ``volts``
      (stored in mV, ``conversion=1e-3``), a state declared in pA/nS/pF in amperes/siemens/farads, a
      dimensionless gating variable ``dimensionless``;
  ``<model>_<backend>_<run id>_sweep<k>_residual``
      recorded minus reconstructed voltage (volts, stored in mV);
  ``<model>_<backend>_<run id>_sweep<k>_<role>_<channel>``
      only for a result with derived signals: one ``TimeSeries`` per channel of a ``forecast`` (the states
      simulated past the fitted window, on its own times) or ``correction`` (a learned current, amperes
      stored in pA), units as above, with the signal's description;
  ``<run id>_parameters``
      a table, one row per model parameter: ``parameter``, ``value``, ``unit``, ``std``, ``lower_bound``,
      ``upper_bound``, ``bounds_source``, ``free``, ``initial``, ``true_value``, ``relative_error``,
      ``on_bound``, ``backend``, ``model``, ``run_id``. A float column is left out when the result holds no
      value for it (nwbinspector flags all-NaN columns); ``on_bound`` only when the fit has a verdict;
  ``<run id>_fit_provenance``
      a table of ``field`` / ``value`` / ``unit`` rows (one row per item; a one-row table is flagged by
      nwbinspector): run id, model, backend, neo_pinn version, seed, device, wall time, status, RMSE,
      the fitted recording's file name and sha256 (never a folder of the machine that wrote it), the backend
      options (JSON) and ``result_json``, the complete result (:meth:`EstimationResult.to_json` with the
      arrays, file paths reduced to file names) from which :func:`read_result_nwb` restores it.

Several runs can live in one file: writing with ``source=`` an output of this function keeps its runs
and adds the new one (a run id already there is refused). The output is always a new file, written
atomically; it never replaces its source.

Neo's ``NWBIO`` (neo 0.14) reads only ``acquisition`` and ``stimulus`` (and units, epochs): it shows the
recorded sweeps and stimuli of an output, so ``neo_pinn.load_recording`` fits an output like its input,
but it never opens ``processing``, so the reconstructed states and the tables are invisible to it; read
them with pynwb (``examples/nwb_results_pynwb.py``) or :func:`read_result_nwb`.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigurationError, InputFormatError, RecordingFormatError, UnknownNameError
from ..result import EstimationResult, SweepFit
from ..storage import atomic_path, check_input_file, check_outputs, dumps, sha256_of
from ..trace import Trace
from .convert import ROLE_STIMULUS, ROLE_VOLTAGE, clean_rate, signal_to_trace
from .recording import Recording, load_recording
from .synthetic_nwb import icephys_series, link_icephys_recordings

__all__ = ["write_result_nwb", "read_result_nwb", "write_fit_output", "PROCESSING_MODULE"]

#: the processing module holding the results
PROCESSING_MODULE = "icephys"
_PARAMS, _PROV = "_parameters", "_fit_provenance"
#: canonical unit → (NWB unit, conversion of the stored numbers to it)
_SI = {"mV": ("volts", 1e-3), "V": ("volts", 1.0), "pA": ("amperes", 1e-12), "nA": ("amperes", 1e-9),
       "nS": ("siemens", 1e-9), "pF": ("farads", 1e-12), "ms": ("seconds", 1e-3)}
_UNIFORM_RTOL = 1e-4
_HINT = "; give a file written by neo_pinn.io.nwb_results.write_result_nwb (or `neo-pinn fit --out X.nwb`)"


@dataclass
class _Source:
    kind: str  # "nwb" (keep the file), "recording" (convert it) or "arrays" (the fitted sweeps only)
    path: Path | None = None
    recording: Recording | None = None


# ----------------------------------------------------------------------------------------- small helpers
def _safe(text: Any) -> str:
    """An NWB object name: no '/' (refused by pynwb) and no ':' (flagged by nwbinspector)."""
    return re.sub(r"[/:]", "_", str(text))


def _nan(x) -> float:
    return math.nan if x is None else float(x)


def _timing(fit: SweepFit) -> tuple[float, float]:
    """(starting_time s, rate Hz) of a uniformly sampled fit."""
    t = np.asarray(fit.t, dtype=float).reshape(-1)
    dt = float((t[-1] - t[0]) / (t.size - 1)) if t.size > 1 else 0.0
    if not (dt > 0 and np.all(np.abs(np.diff(t) - dt) <= _UNIFORM_RTOL * dt)):
        raise ConfigurationError(f"The times of sweep {fit.sweep} are not uniformly spaced; NWB series need a fixed "
                                 "rate. Fit a uniformly sampled trace (decimate instead of dropping samples).")
    return float(t[0]) / 1000.0, clean_rate(1000.0 / dt)


def _version(result: EstimationResult) -> str:
    versions = result.provenance.get("versions") or {}
    return str(versions.get("neo-pinn") or versions.get("neo_pinn") or "unknown")


def _fitted_file(result: EstimationResult, src: _Source) -> tuple[str, str]:
    """(file name, sha256) of the recording the result was fitted on; '' when unknown."""
    for fit in result.fits:
        if fit.source.get("sha256"):
            name = fit.source.get("file_name") or fit.source.get("file") or ""
            return Path(str(name)).name, str(fit.source["sha256"])
    rec = src.recording
    if rec is not None and rec.path is not None:
        return rec.path.name, rec.sha256 or ""
    return ("", "") if src.path is None else (src.path.name, sha256_of(src.path))


def _portable_json(result: EstimationResult) -> str:
    """The result's JSON with the arrays, file paths reduced to file names (folders mean nothing elsewhere)."""
    d = json.loads(result.to_json(include_arrays=True))
    records = [f.get("source") for f in d.get("fits", [])]
    inputs = d.get("provenance", {}).get("inputs")
    records += inputs if isinstance(inputs, list) else []
    for rec in records:
        if isinstance(rec, dict) and rec.get("file"):
            rec["file"] = Path(str(rec["file"])).name
    return dumps(d, indent=1)


def _runs_in(nwbfile) -> dict[str, dict[str, str]]:
    """run id → the field/value rows of its ``<run>_fit_provenance`` table."""
    module = nwbfile.processing.get(PROCESSING_MODULE)
    runs: dict[str, dict[str, str]] = {}
    for name, obj in ({} if module is None else module.data_interfaces).items():
        if name.endswith(_PROV) and {"field", "value"} <= set(getattr(obj, "colnames", ())):
            rows = {str(f): str(v) for f, v in zip(obj["field"][:], obj["value"][:])}
            if "run_id" in rows and "result_json" in rows:
                runs[rows["run_id"]] = rows
    return runs


def _read_nwb(io, path: Path):
    try:
        return io.read()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        why = " ".join(str(exc).split())[:120]
        raise RecordingFormatError(f"pynwb cannot read {path.name!r} as NWB 2 ({why}); convert it with a current NWB "
                                   "tool, or pass the Recording loaded from it.") from None


# ----------------------------------------------------------------------------------------- the source
def _resolve_source(result: EstimationResult, source) -> _Source:
    if isinstance(source, Recording):
        if source.path is not None and source.format == "NWB":
            return _Source("nwb", source.path)
        return _Source("recording", source.path, source)
    if source is None:
        files = {str(f.source["file"]) for f in result.fits if f.source.get("file")}
        if len(files) != 1 or not Path(next(iter(files))).is_file():
            return _Source("arrays")
        source = next(iter(files))
    if not isinstance(source, (str, Path)) and not hasattr(source, "__fspath__"):
        raise ConfigurationError(f"source must be a recording file, a Recording from load_recording or None, not "
                                 f"{type(source).__name__}.")
    path = check_input_file(source, "Source recording")
    if path.suffix.lower() == ".nwb":
        return _Source("nwb", path)
    with warnings.catch_warnings():  # "no stimulus found" is expected here: the fit's own current is used
        warnings.simplefilter("ignore")
        return _Source("recording", path, load_recording(path))


def _check_belongs(result: EstimationResult, sha: str | None, earlier: set[str], label: str) -> None:
    """Refuse a source that is neither the fitted recording nor an output written from it."""
    fitted = {str(f.source["sha256"]) for f in result.fits if f.source.get("sha256")}
    if not fitted or sha is None or fitted <= ({sha} | earlier):
        return
    names = sorted({Path(str(f.source.get("file_name") or f.source.get("file") or "?")).name for f in result.fits})
    raise ConfigurationError(
        f"The result was fitted on {', '.join(names)} (sha256 {', '.join(s[:12] for s in sorted(fitted))}…), not on "
        f"{label}: pass source= the recording the result was fitted on, or an output written from it by "
        "write_result_nwb.")


# ----------------------------------------------------------------------------------------- recordings → NWB
def _recording_sweeps(rec: Recording) -> list[tuple[Trace, bool, str, str, float]]:
    """(trace, stimulus known, channel, stimulus detail, rate in Hz) of every sweep of a recording, in sweep order."""
    out = []
    for seg in rec.block.segments:
        stims = {s.annotations.get("neo_pinn_sweep"): s for s in seg.analogsignals
                 if s.annotations.get("neo_pinn_role") == ROLE_STIMULUS}
        for sig in seg.analogsignals:
            if sig.annotations.get("neo_pinn_role") != ROLE_VOLTAGE:
                continue
            k = int(sig.annotations["neo_pinn_sweep"])
            stim = stims.get(sig.annotations["neo_pinn_sweep"])
            info = rec.sweeps[k]
            tr = signal_to_trace(sig, stim, sweep=k, stimulus_source=str(info.stimulus_source))
            out.append((tr, stim is not None, info.channel, str(info.stimulus_detail or info.stimulus_source),
                        info.sampling_rate_hz))
    return sorted(out, key=lambda x: x[0].sweep)


def _session_start(rec: Recording | None, path: Path | None) -> tuple[_dt.datetime, str]:
    when = None if rec is None else rec.block.rec_datetime
    if when is not None:
        return (when if when.tzinfo else when.astimezone()), "the recording's own date"
    if path is not None:
        mtime = _dt.datetime.fromtimestamp(path.stat().st_mtime, tz=_dt.timezone.utc)
        return mtime, "the file's modification time (the file holds no recording date)"
    return _dt.datetime.now(_dt.timezone.utc), "the time of writing (no recording file was given)"


def _converted_nwbfile(result: EstimationResult, src: _Source):
    """A new icephys NWBFile holding the source's sweeps; (nwbfile, sweep → response series name)."""
    import pynwb

    rec = src.recording
    fits = {f.sweep: f for f in result.fits}
    if rec is not None:
        if rec.recording_mode != "current_clamp":
            raise ConfigurationError(f"{rec!r} is not a current-clamp recording; a fit result belongs to one.")
        sweeps = _recording_sweeps(rec)
        label = rec.path.name if rec.path is not None else "an in-memory Neo recording"
        what = f"{label} ({rec.format}, sha256 {rec.sha256})" if rec.sha256 else label
        stimulus_type = rec.sweeps[0].stimulus_detail or rec.sweeps[0].stimulus_source or "unknown"
        missing = sorted(set(fits) - {s[0].sweep for s in sweeps})
        if missing:
            raise ConfigurationError(f"The result has sweep(s) {missing} but {label} has {len(sweeps)} sweep(s); pass "
                                     "source= the recording the result was fitted on.")
    else:
        sweeps = [(Trace(t=f.t, v=f.v_observed, i_ext=f.i_ext, sweep=f.sweep, stimulus_source=f.stimulus_source), True,
                   str(f.source.get("signal") or "voltage"), f.stimulus_source, _timing(f)[1]) for f in result.fits]
        label = what = "the fitted sweeps of a neo_pinn result (no recording file was given)"
        stimulus_type = result.fits[0].stimulus_source
    start, start_note = _session_start(rec, src.path)
    nwbfile = pynwb.NWBFile(
        session_description=f"Current-clamp recording ({label}) with neo_pinn {result.model} fits",
        identifier=uuid.uuid4().hex, session_start_time=start,
        data_collection=f"Converted to NWB by neo_pinn {_version(result)} from {what}; session_start_time is "
                        f"{start_note}; sweep times are those of the recording.")
    device = nwbfile.create_device(name="amplifier", description=f"the amplifier that recorded {label} (its make and "
                                   "settings are not in the data as Neo reads them)")
    electrode = nwbfile.create_icephys_electrode(name="electrode 0", device=device,
                                                 description=f"intracellular electrode of {label}")
    pairs, names = [], {}
    for tr, has_stim, channel, detail, rate in sweeps:
        base = _safe(f"{channel}_sweep{tr.sweep}")
        common = dict(electrode=electrode, stimulus_description=str(stimulus_type), gain=None)
        what_v = f"membrane voltage, sweep {tr.sweep} of {label} (channel {channel})"
        resp = icephys_series(tr, "response", name=base, starting_time_s=float(tr.t[0]) / 1000.0, rate_hz=rate,
                              description=what_v, **common)
        nwbfile.add_acquisition(resp)
        names[tr.sweep] = base
        stim_tr, note = tr, f"injected current, sweep {tr.sweep} of {label}: {detail}"
        if not has_stim and tr.sweep in fits:  # the file holds none: the current the fit used, over its window
            f = fits[tr.sweep]
            stim_tr, rate = Trace(t=f.t, v=f.v_observed, i_ext=f.i_ext, sweep=tr.sweep), _timing(f)[1]
            note = (f"injected current used by the fit ({f.stimulus_source}), sweep {tr.sweep}, over the fitted "
                    f"window {f.t[0]:g}–{f.t[-1]:g} ms only (the recording holds no stimulus)")
        stim = None
        if has_stim or tr.sweep in fits:
            stim = icephys_series(stim_tr, "stimulus", name=f"{base}_stimulus", description=note, rate_hz=rate,
                                  starting_time_s=float(stim_tr.t[0]) / 1000.0, **common)
            nwbfile.add_stimulus(stim)
        pairs.append((resp, stim))
    link_icephys_recordings(nwbfile, electrode, pairs, str(stimulus_type))
    return nwbfile, names


# ----------------------------------------------------------------------------------------- results → NWB
def _on_bound(result: EstimationResult) -> dict[str, bool] | None:
    """Parameter → whether its estimate sits on (or next to) a bound, from the verdict; None without one."""
    check = next((c for c in result.verdict.get("checks", []) if c.get("name") == "bounds"), None)
    if check is None:
        return None
    flagged = set(result.verdict.get("withheld_std") or {})
    if not check.get("passed", True):
        msg = str(check.get("message", ""))
        flagged |= {k for k in result.parameters if re.search(rf"(?:^|; ){re.escape(k)} = ", msg)}
    return {k: p.free and k in flagged for k, p in result.parameters.items()}


def _parameters_table(result: EstimationResult):
    from hdmf.common import DynamicTable, VectorData

    params = list(result.parameters.values())
    scaling = (result.cell or {}).get("scaling") or {}
    bounds = {k: v for k, v in (scaling.get("bounds") or {}).items() if k in result.parameters}
    free_b = {k: bounds.get(k) if result.parameters[k].free else None for k in result.parameters}
    rows: list[tuple[str, str, list, bool]] = [  # (column, description, values, kept even when all NaN)
        ("parameter", "model parameter name", [p.name for p in params], True),
        ("value", "estimate (free) or held value (fixed), in `unit`", [float(p.value) for p in params], True),
        ("unit", "canonical unit of value, std, bounds, initial and true_value", [p.unit for p in params], True),
        ("std", "one standard deviation of a free estimate (NaN: none reported or withheld on a bound)",
         [_nan(p.std) for p in params], False),
        ("lower_bound", "lower end of the search range (NaN: not recorded in the result)",
         [_nan(free_b[p.name][0]) if free_b[p.name] else math.nan for p in params], False),
        ("upper_bound", "upper end of the search range (NaN: not recorded in the result)",
         [_nan(free_b[p.name][1]) if free_b[p.name] else math.nan for p in params], False),
        ("initial", "starting value of the best start of a free parameter (NaN: none)", [_nan(p.init) for p in params],
         False),
        ("true_value", "ground truth, known for synthetic data (NaN: unknown)", [_nan(p.true_value) for p in params],
         False),
        ("relative_error", "|value - true_value| / |true_value| (NaN: no ground truth)",
         [_nan(p.relative_error) for p in params], False),
    ]
    cols = [VectorData(name=n, description=d, data=v) for n, d, v, keep in rows
            if keep or not all(isinstance(x, float) and math.isnan(x) for x in v)]
    if any(col.name == "lower_bound" for col in cols):
        cols.append(VectorData(name="bounds_source", description="where lower_bound/upper_bound come from: the "
                               "cell-scaled search range of the fit (user --bounds, which win over it, are not "
                               "recorded in the result)", data=["cell-scaled range" if free_b[p.name] else "unknown"
                                                                 for p in params]))
    cols.append(VectorData(name="free", description="estimated (True) or held fixed (False)",
                           data=np.array([bool(p.free) for p in params])))
    on_bound = _on_bound(result)
    if on_bound is not None:
        cols.append(VectorData(name="on_bound", data=np.array([on_bound[p.name] for p in params]),
                               description="the verdict found the estimate on (or within 1 % of the range of) a bound: "
                                           "it is not identified"))
    for name, value in (("backend", result.backend), ("model", result.model), ("run_id", result.run_id)):
        cols.append(VectorData(name=name, description=f"neo_pinn {name.replace('_', ' ')}",
                               data=[str(value)] * len(params)))
    return DynamicTable(name=f"{_safe(result.run_id)}{_PARAMS}", columns=cols,
                        description=f"Parameters of {result.model} fitted with the neo_pinn backend {result.backend} "
                                    f"(run {result.run_id}), one row per model parameter, free and fixed.")


def _provenance_table(result: EstimationResult, file_name: str, sha: str, nwb_identifier: str):
    from hdmf.common import DynamicTable, VectorData

    prov = result.provenance
    seed = prov.get("seed")
    rows = [("run_id", result.run_id, ""), ("model", result.model, ""), ("backend", result.backend, ""),
            ("neo_pinn_version", _version(result), ""), ("seed", "none" if seed is None else str(seed), ""),
            ("device", str(prov.get("device", "unknown")), ""), ("dtype", str(prov.get("dtype", "unknown")), ""),
            ("wall_time", repr(_nan(prov.get("wall_time_s"))), "s"), ("finished", str(prov.get("finished", "")), ""),
            ("status", result.status, ""), ("rmse", repr(_nan(result.metrics.get("rmse_mV"))), "mV"),
            ("fitted_sweeps", ",".join(str(f.sweep) for f in result.fits), ""),
            ("stimulus_sources", ",".join(sorted({f.stimulus_source for f in result.fits})), ""),
            ("state_names", ",".join(result.state_names), ""), ("state_units", ",".join(result.state_units), ""),
            ("source_file_name", file_name or "unknown", ""), ("source_sha256", sha or "unknown", ""),
            ("source_nwb_identifier", nwb_identifier or "none (not an NWB file)", ""),
            ("backend_options", dumps(result.config, indent=1), "JSON"),
            ("result_json", _portable_json(result), "JSON")]
    cols = [VectorData(name="field", description="what the row holds", data=[r[0] for r in rows]),
            VectorData(name="value", description="its value as text (numbers in Python repr, options and the whole "
                       "result as JSON: json.loads(value))", data=[str(r[1]) for r in rows]),
            VectorData(name="unit", description="unit of a number ('' when none)", data=[r[2] for r in rows])]
    return DynamicTable(name=f"{_safe(result.run_id)}{_PROV}", columns=cols,
                        description=f"How neo_pinn run {result.run_id} was made ({result.model}, {result.backend}); "
                                    "the row result_json restores the whole result "
                                    "(neo_pinn.io.nwb_results.read_result_nwb).")


def _state_series(result: EstimationResult, fit: SweepFit, prefix: str, series_name: str | None, label: str) -> list:
    from hdmf.backends.hdf5 import H5DataIO
    from pynwb import TimeSeries

    states = np.asarray(fit.states, dtype=float)
    if states.shape != (np.asarray(fit.t).size, len(result.state_names)):
        raise ConfigurationError(f"Sweep {fit.sweep}: states have shape {states.shape} but the result declares "
                                 f"{len(result.state_names)} states over {np.asarray(fit.t).size} samples.")
    t0, rate = _timing(fit)
    where = f"recorded series '{series_name}'" if series_name else f"sweep {fit.sweep} of {label}"
    what = (f"of the {result.model} model fitted with the neo_pinn backend {result.backend} (run {result.run_id}) "
            f"to sweep {fit.sweep}, {where}")
    out = []
    columns = [(name, unit, states[:, j]) for j, (name, unit) in enumerate(zip(result.state_names, result.state_units))]
    columns.append(("residual", "mV", np.asarray(fit.v_observed, dtype=float) - states[:, 0]))
    for j, (name, unit, data) in enumerate(columns):
        nwb_unit, conversion = _SI.get(unit, (unit if unit not in ("", "1", "none") else "dimensionless", 1.0))
        if name == "residual" and j == len(columns) - 1:
            text = f"Recorded minus reconstructed membrane voltage {what}."
        elif j == 0:
            text = f"Reconstructed membrane voltage {name} ({unit}) {what}."
        else:
            text = f"Reconstructed hidden state {name} ({unit}) {what}."
        out.append(TimeSeries(name=_safe(f"{prefix}_sweep{fit.sweep}_{name}"),
                              data=H5DataIO(np.ascontiguousarray(data), compression="gzip"), unit=nwb_unit,
                              conversion=conversion, starting_time=t0, rate=rate, description=text,
                              comments=f"neo_pinn run {result.run_id}", continuity="continuous"))
    return out


def _derived_series(result: EstimationResult, fit: SweepFit, prefix: str) -> list:
    """One TimeSeries per channel of the sweep's forecast and correction (none for a result without them)."""
    from hdmf.backends.hdf5 import H5DataIO
    from pynwb import TimeSeries

    out = []
    for sig in result.signals:
        if sig.sweep != fit.sweep:
            continue
        t0, rate = float(sig.t[0]) / 1000.0, clean_rate(1000.0 / sig.dt)
        what = (f"{sig.role} of the {result.model} model fitted with the neo_pinn backend {result.backend} (run "
                f"{result.run_id}) to sweep {fit.sweep}")
        for k, (name, unit) in enumerate(zip(sig.names, sig.units)):
            nwb_unit, conversion = _SI.get(unit, (unit if unit not in ("", "1", "none") else "dimensionless", 1.0))
            out.append(TimeSeries(name=_safe(f"{prefix}_sweep{fit.sweep}_{sig.role}_{name}"),
                                  data=H5DataIO(np.ascontiguousarray(sig.values[:, k]), compression="gzip"),
                                  unit=nwb_unit, conversion=conversion, starting_time=t0, rate=rate,
                                  description=f"{(sig.description or what[0].upper() + what[1:]).rstrip('.')}. "
                                              f"Channel {name} ({unit}).",
                                  comments=f"neo_pinn run {result.run_id}", continuity="continuous"))
    return out


def _add_results(nwbfile, result: EstimationResult, series: dict[int, str], label: str, file_name: str, sha: str,
                 nwb_identifier: str) -> None:
    module = nwbfile.processing.get(PROCESSING_MODULE)
    if module is None:
        module = nwbfile.create_processing_module(
            name=PROCESSING_MODULE, description="Processed intracellular electrophysiology: neuron-model fits made "
            "with neo_pinn (reconstructed states and residual per fitted sweep, parameter and provenance tables "
            "per run)")
    run = _safe(result.run_id)
    if f"{run}{_PROV}" in module.data_interfaces or f"{run}{_PARAMS}" in module.data_interfaces:
        raise ConfigurationError(f"Run {result.run_id} is already in {label}; each run is written once. Write it from "
                                 "the original recording, or a result of another run.")
    prefix = _safe(f"{result.model}_{result.backend}_{result.run_id}")
    for fit in result.fits:
        derived = _derived_series(result, fit, prefix)
        for ts in _state_series(result, fit, prefix, series.get(fit.sweep), label) + derived:
            if ts.name in module.data_interfaces:
                raise ConfigurationError(f"{label} already holds a series named {ts.name!r}; two fits share sweep "
                                         f"{fit.sweep}.")
            module.add(ts)
    module.add(_parameters_table(result))
    module.add(_provenance_table(result, file_name, sha, nwb_identifier))


# ----------------------------------------------------------------------------------------- public API
def write_result_nwb(result: EstimationResult, path, *, source=None, overwrite: bool = False) -> Path:
    """Write a fit and the recording it was fitted on as one NWB 2 icephys file, atomically.

    Parameters
    ----------
    result : EstimationResult
        The fit: times in ms (uniformly sampled), states in ``result.state_units`` (the voltage in mV).
    path : str or os.PathLike
        The new ``.nwb`` file; written beside it under a temporary name and renamed when complete.
    source : str, os.PathLike, Recording or None
        The recording the result was fitted on: an ``.nwb`` file (its whole content is kept), an ``.abf`` or
        any file Neo reads (converted to icephys NWB), a :class:`~neo_pinn.io.recording.Recording` from
        ``load_recording`` (its file, or its Neo tree when loaded from memory), or an earlier output of this
        function (its runs are kept and this one is added). None: the file named in ``result.fits[*].source``
        when it exists, else the fitted sweeps themselves (voltage in mV, current in pA, fitted window only).
    overwrite : bool
        Replace an existing ``path`` (never the source).

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    OutputPathError
        ``path`` is the source, exists (without ``overwrite``), is a folder or lies in a missing folder.
    ConfigurationError
        Not a result, a result without sweeps or with non-uniform times, a source the result was not fitted
        on (by sha256), or a run already present in the source.
    InputPathError, RecordingFormatError
        The source file is missing or unreadable.
    """
    import h5py
    import pynwb

    if not isinstance(result, EstimationResult):
        raise ConfigurationError(f"write_result_nwb needs an EstimationResult, got {type(result).__name__}.")
    if not result.fits:
        raise ConfigurationError("The result holds no fitted sweeps; there is nothing to write.")
    path = Path(path)
    src = _resolve_source(result, source)
    check_outputs({"NWB output": path}, [] if src.path is None else [src.path], overwrite=overwrite,
                  overwrite_hint="overwrite=True")
    if src.kind != "nwb":
        label = src.path.name if src.path is not None else "the converted recording"
        if src.recording is not None:
            _check_belongs(result, src.recording.sha256, set(), label)
        nwbfile, series = _converted_nwbfile(result, src)
        name, sha = _fitted_file(result, src)
        _add_results(nwbfile, result, series, label, name, sha, "")
        with atomic_path(path) as tmp, pynwb.NWBHDF5IO(str(tmp), mode="w") as io:
            io.write(nwbfile)
        return path
    with pynwb.NWBHDF5IO(str(src.path), mode="r") as io:
        nwbfile = _read_nwb(io, src.path)
        earlier = {r.get("source_sha256", "") for r in _runs_in(nwbfile).values()}
        _check_belongs(result, sha256_of(src.path), earlier, src.path.name)
        series = {f.sweep: str(f.source["signal"]) for f in result.fits
                  if str(f.source.get("signal")) in nwbfile.acquisition}
        name, sha = _fitted_file(result, src)
        _add_results(nwbfile, result, series, src.path.name, name, sha, str(nwbfile.identifier))
        nwbfile.generate_new_id()  # new object ids: a derived file is a new set of objects
        with atomic_path(path) as tmp:
            with pynwb.NWBHDF5IO(str(tmp), mode="w") as out:
                out.export(src_io=io, nwbfile=nwbfile)
            # and a new file identifier (pynwb keeps it read-only): one shared with the input is a CRITICAL
            # nwbinspector finding (check_unique_identifiers) for the two files side by side
            with h5py.File(tmp, "r+") as h5:
                h5["identifier"][()] = uuid.uuid4().hex
    return path


def write_fit_output(result: EstimationResult, recording: Recording, path) -> Path:
    """Write the recording a result was fitted on, with the fit, to a new file (``neo-pinn fit --out``).

    Parameters
    ----------
    result : EstimationResult
        The fit.
    recording : Recording
        What ``load_recording`` returned for the fitted file; for ``.nix`` its ``block`` (neo_pinn's annotated copy,
        never the user's objects) receives the fit's signals.
    path : str or os.PathLike
        ``.nwb``: :func:`write_result_nwb` with ``source=recording``; ``.nix``: the Neo tree with the fit attached
        (:func:`neo_pinn.io.attach.attach`, then :func:`neo_pinn.io.neo_writers.write_block`).

    Returns
    -------
    pathlib.Path
        The written file.
    """
    if Path(path).suffix.lower() == ".nwb":
        return write_result_nwb(result, path, source=recording)
    from .attach import attach
    from .neo_writers import write_block

    attach(result, recording.block)
    return write_block(recording.block, path)


def read_result_nwb(path, run_id: str | None = None) -> EstimationResult:
    """Read back a result written by :func:`write_result_nwb`.

    Parameters
    ----------
    path : str or os.PathLike
        The NWB file.
    run_id : str, optional
        Which run, when the file holds several.

    Returns
    -------
    EstimationResult
        The result as written (file paths reduced to file names).

    Raises
    ------
    InputPathError
        The file is missing or not a regular file.
    InputFormatError
        The file is not NWB or holds no neo_pinn result.
    ConfigurationError
        Several runs and no ``run_id`` (the message lists them).
    UnknownNameError
        ``run_id`` is not among the runs of the file.
    """
    import pynwb

    path = check_input_file(path, "Result file")
    try:
        with pynwb.NWBHDF5IO(str(path), mode="r") as io:
            runs = _runs_in(_read_nwb(io, path))
    except (RecordingFormatError, OSError) as exc:
        raise InputFormatError(f"{path.name} is not a readable NWB file ({' '.join(str(exc).split())[:120]}){_HINT}.") \
            from None
    if not runs:
        raise InputFormatError(f"{path.name} holds no neo_pinn result (no table processing/{PROCESSING_MODULE}/"
                               f"<run id>{_PROV}){_HINT}.")
    if run_id is None:
        if len(runs) > 1:
            raise ConfigurationError(f"{path.name} holds {len(runs)} runs ({', '.join(sorted(runs))}); choose one with "
                                     "run_id=.")
        run_id = next(iter(runs))
    if str(run_id) not in runs:
        raise UnknownNameError(f"{path.name} holds no run {run_id!r}; its runs: {', '.join(sorted(runs))}.")
    return EstimationResult.from_json(runs[str(run_id)]["result_json"])

"""Write synthetic current-clamp sweeps as a proper NWB 2 icephys file, and read its ground truth back.

The layout mirrors real files such as the UCL/BBP ``99111002.nwb``, so the same reading code serves both:

* per sweep *N* a ``CurrentClampSeries`` ``ic__sim__N`` in ``acquisition`` — data in mV with
  ``conversion=1e-3`` (unit ``volts``), which Neo's NWBIO reads back as an AnalogSignal in mV holding
  exactly the written numbers — and a ``CurrentClampStimulusSeries`` ``ics__sim__N`` in ``stimulus``,
  data in pA with ``conversion=1e-12`` (unit ``amperes``), read back in pA. *N* is ``Trace.sweep``
  (0-based), also stored as the series' ``sweep_number``;
* both series of a sweep share one intracellular electrode and are linked in the icephys tables
  (intracellular recordings → simultaneous recordings → one sequential recording);
* sweep *k* (k-th trace given) starts at ``k * sweep_interval_s`` seconds plus the trace's own first
  time, so sweeps never overlap (``sweep_interval_s`` defaults to the longest sweep rounded up to a whole
  second, plus one second);
* the ground-truth ``metadata`` (true parameters, model, preset, noise, seed, command ...) is the JSON
  text of ``NWBFile.notes``; Neo shows it as the Block annotation ``notes``; :func:`read_icephys_metadata`
  returns it as a dict.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import uuid
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ConfigurationError, RecordingFormatError
from ..storage import atomic_path, json_default
from ..trace import Trace

__all__ = ["write_icephys_nwb", "read_icephys_metadata", "icephys_series", "link_icephys_recordings",
           "RESPONSE_PREFIX", "STIMULUS_PREFIX"]

RESPONSE_PREFIX = "ic__sim__"
STIMULUS_PREFIX = "ics__sim__"
_V_CONVERSION = 1e-3  # stored numbers are mV
_I_CONVERSION = 1e-12  # stored numbers are pA


def _uniform_rate_hz(tr: Trace) -> float:
    dt = tr.dt
    if not (dt > 0 and np.all(np.abs(np.diff(tr.t) - dt) <= 1e-4 * dt)):
        raise ConfigurationError(f"Sweep {tr.sweep} is not uniformly sampled; NWB series need a fixed rate. Resample it first.")
    return 1000.0 / dt


def icephys_series(trace: Trace, kind: str, *, name: str, electrode, starting_time_s: float,
                   stimulus_description: str, description: str, gain: float | None = 1.0,
                   rate_hz: float | None = None):
    """One sweep as a pynwb current-clamp series, the samples stored in the project's units.

    Parameters
    ----------
    trace : Trace
        The sweep: ``t`` in ms (uniform), ``v`` in mV, ``i_ext`` in pA.
    kind : {"response", "stimulus"}
        ``"response"``: a ``CurrentClampSeries`` of ``trace.v``, stored in mV with ``conversion=1e-3``
        (unit ``volts``); ``"stimulus"``: a ``CurrentClampStimulusSeries`` of ``trace.i_ext``, stored in pA
        with ``conversion=1e-12`` (unit ``amperes``).
    name : str
        Name of the series.
    electrode : pynwb.icephys.IntracellularElectrode
    starting_time_s : float
        Time of the first sample in seconds, in the session's time.
    stimulus_description : str
        NWB ``stimulus_description`` (the stimulus type).
    description : str
        NWB ``description`` of the series.
    gain : float or None
        Amplifier gain (V/A in current clamp) when known; None leaves it out.
    rate_hz : float, optional
        Sampling rate in Hz when known exactly (e.g. from the file); default ``1000 / trace.dt``.

    Returns
    -------
    pynwb.icephys.CurrentClampSeries or pynwb.icephys.CurrentClampStimulusSeries
    """
    from pynwb.icephys import CurrentClampSeries, CurrentClampStimulusSeries

    if kind not in ("response", "stimulus"):
        raise ConfigurationError(f"kind must be 'response' or 'stimulus', got {kind!r}.")
    cls, data, conversion = ((CurrentClampSeries, trace.v, _V_CONVERSION) if kind == "response"
                             else (CurrentClampStimulusSeries, trace.i_ext, _I_CONVERSION))
    extra = {} if gain is None else {"gain": float(gain)}
    rate = _uniform_rate_hz(trace) if rate_hz is None else rate_hz
    return cls(name=name, data=np.asarray(data, dtype=np.float64), conversion=conversion, description=description,
               rate=float(rate), starting_time=float(starting_time_s), electrode=electrode,
               sweep_number=np.uint32(trace.sweep),  # the schema's type; an int64 would warn
               stimulus_description=stimulus_description, **extra)


def link_icephys_recordings(nwbfile, electrode, pairs: Sequence[tuple[Any, Any]], stimulus_type: str) -> None:
    """Enter sweeps into the icephys tables: one intracellular recording per (response, stimulus) pair, each its
    own simultaneous recording, all of them one sequential recording of ``stimulus_type``.

    Parameters
    ----------
    nwbfile : pynwb.NWBFile
    electrode : pynwb.icephys.IntracellularElectrode
    pairs : sequence of (response series, stimulus series or None)
        The series, already added to ``nwbfile``; a response without a recorded stimulus pairs with None.
    stimulus_type : str
        The ``stimulus_type`` of the sequential recording.
    """
    rows = [nwbfile.add_intracellular_recording(electrode=electrode, response=resp,
                                                **({} if stim is None else {"stimulus": stim}))
            for resp, stim in pairs]
    sims = [nwbfile.add_icephys_simultaneous_recording(recordings=[r]) for r in rows]
    nwbfile.add_icephys_sequential_recording(simultaneous_recordings=sims, stimulus_type=stimulus_type)


def write_icephys_nwb(path: str | os.PathLike, traces: Sequence[Trace], *, metadata: dict[str, Any],
                      session_description: str = "Synthetic current-clamp recording made by neo_pinn (known ground truth)",
                      identifier: str | None = None,
                      electrode_description: str = "simulated whole-cell electrode (no access resistance, no filtering)",
                      session_start_time: _dt.datetime | None = None, sweep_interval_s: float | None = None,
                      stimulus_name: str = "sim", overwrite: bool = False) -> Path:
    """Write current-clamp sweeps and their ground truth to an NWB 2 file, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Target ``.nwb`` file; written under a temporary name beside it and renamed when complete.
    traces : sequence of Trace
        The sweeps: ``t`` in ms (uniform), ``v`` in mV, ``i_ext`` in pA; ``sweep`` numbers must differ.
    metadata : dict
        Ground truth and how the data were made (true parameters, model, preset, noise, seed, command).
        Stored as JSON: numpy numbers and arrays become numbers and lists, other non-JSON values
        (paths, datetimes) their text.
    session_description : str
        NWB ``session_description``.
    identifier : str, optional
        NWB ``identifier``; default a fresh UUID.
    electrode_description : str
        Description of the (single) intracellular electrode.
    session_start_time : datetime, optional
        Default now (UTC); a naive time is taken as local time.
    sweep_interval_s : float, optional
        Start-to-start interval of sweeps in seconds; default the longest sweep rounded up to a
        whole second, plus one second.
    stimulus_name : str
        ``stimulus_description`` of the series and the name of the stimulus type in the icephys tables.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    import pynwb

    path = Path(path)
    traces = list(traces)
    if not traces:
        raise ConfigurationError("No traces to write; pass at least one Trace.")
    if not all(isinstance(t, Trace) for t in traces):
        raise ConfigurationError("write_icephys_nwb needs neo_pinn.Trace objects (t ms, v mV, i_ext pA).")
    sweeps = [int(t.sweep) for t in traces]
    if min(sweeps) < 0:
        raise ConfigurationError(f"Sweep numbers must not be negative ({sweeps}); NWB stores them unsigned.")
    if len(set(sweeps)) != len(sweeps):
        raise ConfigurationError(f"Sweep numbers repeat ({sweeps}); give every Trace its own sweep number.")
    if path.exists() and not overwrite:
        raise ConfigurationError(f"{path} exists; choose a new file name or pass overwrite=True.")
    # numpy values become numbers/lists, anything else JSON lacks (paths, datetimes) its text
    notes = json.dumps(metadata, default=json_default)
    for tr in traces:  # a sweep that is not uniformly sampled is refused before anything is built
        _uniform_rate_hz(tr)
    if sweep_interval_s is None:
        span_s = max((t.t[-1] + t.dt) / 1000.0 for t in traces)
        sweep_interval_s = float(math.ceil(max(span_s, 0.0))) + 1.0
    start = session_start_time or _dt.datetime.now(_dt.timezone.utc)
    if start.tzinfo is None:
        start = start.astimezone()

    nwbfile = pynwb.NWBFile(
        session_description=session_description,
        identifier=identifier or uuid.uuid4().hex,
        session_start_time=start,
        notes=notes,
        data_collection=f"Simulated with neo_pinn; sweep k starts at k * {sweep_interval_s:g} s.",
        stimulus_notes=f"Injected current, {STIMULUS_PREFIX}N pairs with response {RESPONSE_PREFIX}N (N = sweep number).",
    )
    device = nwbfile.create_device(name="neo_pinn simulator", description="numerical simulation", manufacturer="neo_pinn")
    electrode = nwbfile.create_icephys_electrode(name="electrode 0", description=electrode_description, device=device)
    pairs = []
    for k, tr in enumerate(traces):
        common = dict(electrode=electrode, starting_time_s=k * sweep_interval_s + float(tr.t[0]) / 1000.0,
                      stimulus_description=stimulus_name, gain=1.0)
        response = icephys_series(tr, "response", name=f"{RESPONSE_PREFIX}{tr.sweep}",
                                  description=f"membrane voltage, sweep {tr.sweep}", **common)
        stimulus = icephys_series(tr, "stimulus", name=f"{STIMULUS_PREFIX}{tr.sweep}",
                                  description=f"injected current ({tr.stimulus_source}), sweep {tr.sweep}", **common)
        nwbfile.add_acquisition(response)
        nwbfile.add_stimulus(stimulus)
        pairs.append((response, stimulus))
    link_icephys_recordings(nwbfile, electrode, pairs, stimulus_name)

    with atomic_path(path) as tmp:
        with pynwb.NWBHDF5IO(str(tmp), mode="w") as io:
            io.write(nwbfile)
    return path


def read_icephys_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Return the ground-truth metadata :func:`write_icephys_nwb` stored in an NWB file.

    Parameters
    ----------
    path : str or os.PathLike
        An NWB file written by :func:`write_icephys_nwb`.

    Returns
    -------
    dict
        The ``metadata`` given when writing (JSON types: lists for tuples and arrays).

    Raises
    ------
    RecordingFormatError
        The file cannot be read or its ``notes`` are not a JSON object.
    """
    import pynwb

    try:
        with pynwb.NWBHDF5IO(str(path), mode="r") as io:
            notes = io.read().notes
    except (OSError, ValueError) as exc:
        raise RecordingFormatError(f"Cannot read {path} as NWB: {exc}") from exc
    try:
        meta = json.loads(notes) if notes else None
    except ValueError:
        meta = None
    if not isinstance(meta, dict):
        raise RecordingFormatError(f"{path} holds no neo_pinn ground truth (its NWB notes are not a JSON object).")
    return meta

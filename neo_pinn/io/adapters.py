"""Read recordings through Neo and mark the signals that matter.

:func:`load_recording` accepts a file (any format Neo reads) or a user's ``neo.Block`` / ``Segment`` /
``AnalogSignal`` and returns a :class:`Recording`. Its ``.block`` is an **annotated copy** of the Neo
tree:

* Every ``AnalogSignal`` is copied per channel (a 2-D signal whose channels share units becomes one 1-D
  signal per channel, named after the channel). The copies are *views*: they share the sample memory
  of the original (nothing is duplicated, so do not write into their values), but they are new Python
  objects with their own annotation dicts. Spike trains, events, epochs and irregular signals are
  copied. Groups are not carried over. The user's objects are never changed: no annotation is added to
  them and no object is appended to their segments.
* The membrane voltage of sweep k carries ``neo_pinn_role="voltage"``, ``neo_pinn_sweep=k`` and
  ``neo_pinn_stimulus_source``; its injected current carries ``neo_pinn_role="stimulus"`` and the same
  ``neo_pinn_sweep``. A recovered stimulus that is not a recorded signal (ABF protocol, user spec) is
  a new ``AnalogSignal`` in pA named ``"<voltage name>.stimulus"``, appended to the copied segment.
  In a voltage-clamp recording the recorded current carries ``neo_pinn_role="clamp_current"``.
* Every copied signal carries ``neo_pinn_segment_index``, ``neo_pinn_source_signal_index`` and
  ``neo_pinn_source_channel_index``: where it sits in the original tree (``Recording.original``).

So ``recording.block.filter(neo_pinn_role="voltage")`` lists the sweeps' voltages; a user may edit or
replace the annotated signals and convert them with :func:`neo_pinn.io.convert.block_to_traces`.

Files are opened read-only and never modified.
"""

from __future__ import annotations

import copy
import math
import os
import re
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

import numpy as np
import quantities as pq

from ..errors import (
    ConfigurationError,
    EmptySignalError,
    NoVoltageChannelError,
    RecordingFormatError,
    StimulusError,
    StimulusMismatchWarning,
    UnitsError,
    VoltageClampError,
)
from ..features import spike_count
from ..trace import Trace
from ..units import dimension_of, to_canonical
from . import convert
from . import stimulus_hooks
from .files import sha256_of
from .stimulus import StimulusSpec, compare_stimuli, describe_step_family, describe_steps, parse_stimulus, \
    step_amplitudes, summarize_steps

__all__ = ["load_recording", "Recording", "SweepInfo", "RecordingNotFoundError", "MODES"]

MODES = ("current_clamp", "any")
NOT_FOUND = "not-found"
USER = "user"
NONE = "none"


class RecordingNotFoundError(RecordingFormatError, FileNotFoundError):
    """The recording file does not exist."""


@dataclass(frozen=True)
class SweepInfo:
    """What one sweep of a :class:`Recording` is.

    Attributes
    ----------
    sweep : int
        Sweep index (0-based, in time order).
    segment : int
        Index of the segment in the original tree (``Recording.original``; for a file, Neo's block).
    signal_index, channel_index : int
        Where the chosen signal sits in that original segment: ``segment.analogsignals[signal_index]``,
        column ``channel_index``.
    channel : str
        Channel name (for NWB, the series name).
    units : str
        Units of the recorded channel as stored (e.g. ``"mV"``, ``"pA"``).
    role : str
        ``"voltage"`` (current clamp) or ``"clamp_current"`` (voltage clamp).
    sampling_rate_hz : float
        Sampling rate in Hz (snapped to 6 decimals when within 1e-9, see :func:`convert.clean_rate`).
    t_start_ms : float
        Time of the first sample in ms (absolute, as in the file).
    duration_ms : float
        Number of samples / rate, in ms.
    n_samples : int
        Number of samples.
    stimulus_source : str or None
        ``"abf2-protocol"``, ``"abf1-command"``, ``"recorded-channel"``, ``"nwb-stimulus"``, ``"user"``,
        ``"none"`` (declared stimulus-free), ``"not-found"``, a third-party finder's name, or None in
        voltage clamp.
    stimulus_detail : str or None
        Human-readable detail of the source.
    """

    sweep: int
    segment: int
    signal_index: int
    channel_index: int
    channel: str
    units: str
    role: str
    sampling_rate_hz: float
    t_start_ms: float
    duration_ms: float
    n_samples: int
    stimulus_source: str | None
    stimulus_detail: str | None

    def to_dict(self) -> dict:
        """JSON-ready dict of the fields."""
        return asdict(self)


# ---------------------------------------------------------------------- reading
def _format_of(io_name: str, block) -> str:
    if io_name == "AxonIO":
        v = block.annotations.get("abf_version")
        if v is not None:
            return "ABF " + f"{float(v):.2f}".rstrip("0").rstrip(".")
        return "ABF"
    if io_name == "NWBIO":
        return "NWB"
    return io_name[:-2] if io_name.endswith("IO") else io_name


def _read_file(path: Path) -> tuple[list, str]:
    import neo

    suffix = path.suffix.lower()
    try:
        if suffix == ".abf":
            io = neo.io.AxonIO(str(path))
            blocks = [io.read_block()]
        elif suffix == ".nwb":
            io = neo.io.NWBIO(str(path), mode="r")
            blocks = list(io.read_all_blocks())
        else:
            try:
                io = neo.io.get_io(str(path))
            except (OSError, ValueError, IndexError) as exc:
                raise RecordingFormatError(
                    f"Neo has no reader for {path.name!r} (extension {suffix or 'none'!r}): {exc}. Convert it to "
                    "a format Neo reads (ABF, NWB, NIX, Spike2, ...), or read it with Neo yourself and pass the "
                    "neo.Block to load_recording().") from exc
            if hasattr(io, "read_all_blocks"):
                blocks = list(io.read_all_blocks())
            else:
                blocks = [io.read_block()]
    except RecordingFormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure becomes one typed, actionable error
        kind = {".abf": "an Axon ABF", ".nwb": "an NWB"}.get(suffix, f"a {suffix or 'recording'}")
        raise RecordingFormatError(
            f"Cannot read {path.name!r} as {kind} file ({type(exc).__name__}: {exc}). Check that the file is "
            "complete and not corrupted (Neo cannot read ABF1 files smaller than 5,282 bytes), or read it "
            "with Neo yourself and pass the neo.Block.") from exc
    blocks = [b for b in blocks if b is not None]
    # Files written by neo_pinn.io.neo_files.write_block carry names and annotations that the plain
    # readers drop (NWB) or decorate (NIX); restore them so a re-loaded fit keeps its roles.
    from . import neo_files

    for b in blocks:
        if suffix == ".nwb":
            neo_files._restore_nwb(b)
        elif suffix == ".nix":
            neo_files._strip_nix_names(b)
    if not blocks or not any(len(b.segments) for b in blocks):
        raise EmptySignalError(f"{path.name!r} holds no segments (no sweeps) that Neo could read.")
    return blocks, _format_of(type(io).__name__, blocks[0])


# ---------------------------------------------------------------------- annotated copy
def _channel_names(sig) -> list[str]:
    return stimulus_hooks._channel_names(sig)


def _slice_array_annotations(sig, k: int) -> dict:
    out = {}
    n = sig.shape[1] if sig.ndim > 1 else 1
    for key, value in getattr(sig, "array_annotations", {}).items():
        arr = np.asarray(value)
        if arr.ndim >= 1 and arr.shape[0] == n:
            out[key] = arr[k:k + 1].copy()
    return out


def _copy_signal(sig, k: int, seg_index: int, sig_index: int, source_path: Path | None):
    import neo

    n = sig.shape[1] if sig.ndim > 1 else 1
    names = _channel_names(sig)
    name = names[k] if (n > 1 or (sig.array_annotations.get("channel_names") is not None)) else sig.name
    data = sig.magnitude[:, k] if sig.ndim > 1 else sig.magnitude
    ann = dict(sig.annotations)
    ann.update(neo_pinn_segment_index=int(seg_index), neo_pinn_source_signal_index=int(sig_index),
               neo_pinn_source_channel_index=int(k), neo_pinn_channel=str(names[k]))
    if source_path is not None:
        ann["neo_pinn_file"] = str(source_path)
    new = neo.AnalogSignal(data, units=sig.units, t_start=sig.t_start, sampling_rate=sig.sampling_rate,
                           name=name, file_origin=sig.file_origin, description=sig.description,
                           array_annotations=_slice_array_annotations(sig, k))
    new.annotations = ann
    return new


def _annotated_copy(segments: Sequence[tuple[int, Any]], template_block, source_path: Path | None):
    """A new Block with per-channel signal copies of ``segments`` [(original index, segment), ...]."""
    import neo

    tb = template_block
    block = neo.Block(name=getattr(tb, "name", None), description=getattr(tb, "description", None),
                      file_origin=getattr(tb, "file_origin", None) or (str(source_path) if source_path else None),
                      rec_datetime=getattr(tb, "rec_datetime", None))
    block.annotations = dict(getattr(tb, "annotations", {}) or {})
    for seg_index, seg in segments:
        new_seg = neo.Segment(name=seg.name, description=seg.description, file_origin=seg.file_origin,
                              rec_datetime=seg.rec_datetime, index=getattr(seg, "index", None))
        new_seg.annotations = dict(seg.annotations)
        new_seg.annotations["neo_pinn_segment_index"] = int(seg_index)
        for j, sig in enumerate(seg.analogsignals):
            n = sig.shape[1] if sig.ndim > 1 else 1
            for k in range(n):
                new_seg.analogsignals.append(_copy_signal(sig, k, seg_index, j, source_path))
        for attr in ("irregularlysampledsignals", "spiketrains", "events", "epochs"):
            for obj in getattr(seg, attr, []):
                getattr(new_seg, attr).append(obj.copy())
        block.segments.append(new_seg)
    return block


# ---------------------------------------------------------------------- channel choice
_VOLT_NAME = re.compile(r"(^v\d*$|^vm|vm$|vmem|membrane|potential|voltage|^v(m|mem|memb)?\d*$|^10vm$|primary)")
_NOT_VM_NAME = re.compile(r"(cmd|command|stim|mon|monitor|ext|aux|out|trig)")


def _nwb_type(sig) -> str:
    ntype = sig.annotations.get("nwb_neurodata_type")
    if isinstance(ntype, (tuple, list)) and ntype:
        return str(ntype[-1])
    return str(ntype or "")


def _channel_key(sig) -> str:
    """Identity of a channel across sweeps: the channel name, or for NWB the series type + electrode."""
    ntype = _nwb_type(sig)
    if ntype:
        elec = sig.annotations.get("nwb_electrode")
        ename = elec.get("name") if isinstance(elec, dict) else elec
        return f"{ntype} ({ename})" if ename else ntype
    return str(sig.annotations.get("neo_pinn_channel", sig.name))


def _excluded(sig) -> bool:
    role = sig.annotations.get("neo_pinn_role")
    if role not in (None, convert.ROLE_VOLTAGE, convert.ROLE_CLAMP_CURRENT):
        return True
    if ".neo_pinn." in str(sig.name or ""):
        return True
    return stimulus_hooks._is_nwb_stimulus(sig)


def _plausible_vm(sigs) -> bool:
    """False when a mV channel cannot be a membrane potential (all |v| < 1 mV, dead, or absurd)."""
    for sig in sigs:
        v = np.asarray(to_canonical(sig, kind="voltage"), dtype=float).reshape(-1)
        v = v[np.isfinite(v)]
        if v.size == 0:
            continue
        if np.max(np.abs(v)) < 1.0 or np.ptp(v) == 0.0 or abs(float(np.median(v))) > 200.0:
            continue
        return True
    return False


def _name_score(key: str, sig) -> int:
    norm = stimulus_hooks._norm(key)
    score = 0
    if _nwb_type(sig) == "CurrentClampSeries":
        score += 3
    if _VOLT_NAME.search(norm):
        score += 2
    if _NOT_VM_NAME.search(norm):
        score -= 2
    return score


def _sweep_number(sig) -> float:
    n = stimulus_hooks._sweep_number(sig)
    return float(n) if n is not None else math.inf


@dataclass
class _Channel:
    key: str
    kind: str  # "voltage" / "current" / other
    units: str
    signals: list  # (segment index in new block, signal)
    order: int


def _collect_channels(block) -> list[_Channel]:
    chans: dict[str, _Channel] = {}
    for s_idx, seg in enumerate(block.segments):
        for sig in seg.analogsignals:
            if sig.shape[0] == 0 or _excluded(sig):
                continue
            key = _channel_key(sig)
            if key not in chans:
                chans[key] = _Channel(key, dimension_of(sig.units) or "other", sig.units.dimensionality.string,
                                      [], len(chans))
            chans[key].signals.append((s_idx, sig))
    return list(chans.values())


def _all_channel_keys(block) -> list[str]:
    """Every recorded channel (NWB stimulus series included; neo_pinn's own signals left out)."""
    keys: list[str] = []
    for seg in block.segments:
        for sig in seg.analogsignals:
            if ".neo_pinn." in str(sig.name or "") or str(sig.name or "").endswith(".stimulus") and \
                    sig.annotations.get("neo_pinn_role") == convert.ROLE_STIMULUS:
                continue
            key = _channel_key(sig)
            if key not in keys:
                keys.append(key)
    return keys


def _match_channel(chans: list[_Channel], wanted, block) -> _Channel:
    keys = _all_channel_keys(block)
    listing = ", ".join(f"{i}: {k}" for i, k in enumerate(keys))
    if isinstance(wanted, (int, np.integer)) and not isinstance(wanted, bool):
        if not 0 <= int(wanted) < len(keys):
            raise NoVoltageChannelError(f"voltage_channel={wanted} is out of range; channels are {listing}.")
        target = keys[int(wanted)]
        hits = [c for c in chans if c.key == target]
    else:
        text = str(wanted)
        hits = [c for c in chans if c.key == text]
        if not hits:
            hits = [c for c in chans if c.key.lower() == text.lower()
                    or any(str(s.name) == text for _, s in c.signals)]
        if not hits:
            hits = [c for c in chans if stimulus_hooks._norm(c.key) == stimulus_hooks._norm(text)]
        if not hits and text.strip().isdigit() and int(text) < len(keys):  # "1" from a command line
            hits = [c for c in chans if c.key == keys[int(text)]]
    if not hits:
        raise NoVoltageChannelError(f"No channel named {wanted!r}; channels are {listing}.")
    chan = hits[0]
    if chan.kind != "voltage":
        volts = ", ".join(c.key for c in chans if c.kind == "voltage") or "none"
        raise UnitsError(f"Channel {chan.key!r} is in {chan.units}, not a voltage; voltage channels: {volts}.")
    return chan


def _choose_channel(chans: list[_Channel], voltage_channel, block, notes: list[str]) -> tuple[_Channel | None, str]:
    """Return (channel, recording mode)."""
    # Signals a user (or an earlier load) already marked as the voltage win.
    marked = [c for c in chans if any(s.annotations.get("neo_pinn_role") == convert.ROLE_VOLTAGE
                                      for _, s in c.signals)]
    if voltage_channel is not None:
        return _match_channel(chans, voltage_channel, block), "current_clamp"
    if len(marked) == 1 and marked[0].kind == "voltage":
        return marked[0], "current_clamp"
    volts = [c for c in chans if c.kind == "voltage"]
    if volts:
        scored = []
        for c in volts:
            plausible = _plausible_vm([s for _, s in c.signals])
            scored.append((not plausible, -_name_score(c.key, c.signals[0][1]), c.order, c, plausible))
        scored.sort(key=lambda x: x[:3])
        best = scored[0]
        if not best[4]:
            notes.append(f"Channel {best[3].key!r} is labelled {best[3].units} but its values do not look like a "
                         "membrane potential (all within ±1 mV, flat or beyond ±200 mV); check voltage_channel=.")
        for other in scored[1:]:
            if not other[4]:
                notes.append(_Info(f"Channel {other[3].key!r} ({other[3].units}) was not used as the membrane "
                                   "potential: its values stay within ±1 mV, are flat or lie beyond ±200 mV "
                                   "(e.g. a scaled monitor labelled mV)."))
        return best[3], "current_clamp"
    currents = [c for c in chans if c.kind == "current"]
    if currents:
        currents.sort(key=lambda c: (bool(stimulus_hooks._COMMAND_NAME.match(stimulus_hooks._norm(c.key)))
                                     and len(currents) > 1, c.order))
        return currents[0], "voltage_clamp"
    return None, "unknown"


# ---------------------------------------------------------------------- stimulus
def _user_stimulus(stimulus, sweeps_t_rel: list[np.ndarray]) -> list[np.ndarray] | None:
    """Per-sweep user currents in pA, or None for 'auto'. ``[]`` means declared zero."""
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


def _hook_stimulus(sig, seg):
    from ..plugins import get_state, register_plugin

    state = get_state()
    if not state.manager.is_registered(stimulus_hooks) and not state.manager.has_plugin("core_stimulus"):
        register_plugin(stimulus_hooks, name="core_stimulus")
    result = state.manager.hook.neo_pinn_find_stimulus(signal=sig, segment=seg)
    if result is None:
        return None
    try:
        current, source = result
    except (TypeError, ValueError) as exc:
        raise StimulusError("A neo_pinn_find_stimulus plugin returned something other than (current_pA, "
                            f"source); got {type(result).__name__}.") from exc
    current = np.asarray(current, dtype=float).reshape(-1)
    if current.size != sig.shape[0]:
        raise StimulusError(f"A neo_pinn_find_stimulus plugin ({source!r}) returned {current.size} samples for a "
                            f"signal of {sig.shape[0]}; it must sample the current at the signal's times.")
    return current, str(source)


def _stimulus_signal(vsig, current_pA: np.ndarray, sweep: int, source: str, detail: str | None):
    import neo

    sig = neo.AnalogSignal(np.asarray(current_pA, dtype=float), units="pA", t_start=vsig.t_start,
                           sampling_rate=vsig.sampling_rate, name=f"{vsig.name}.stimulus")
    sig.annotations.update(neo_pinn_role=convert.ROLE_STIMULUS, neo_pinn_sweep=int(sweep),
                           neo_pinn_stimulus_source=str(source),
                           neo_pinn_segment_index=vsig.annotations.get("neo_pinn_segment_index", 0))
    if detail:
        sig.annotations["neo_pinn_stimulus_detail"] = str(detail)
    return sig


def _fmt_sweeps(ks: list[int]) -> str:
    return convert._ranges(ks)


# ---------------------------------------------------------------------- Recording
class Recording:
    """A loaded recording: the annotated Neo tree plus what each sweep is.

    Attributes
    ----------
    block : neo.Block
        The annotated copy (see the module docstring); ``block.filter(neo_pinn_role="voltage")`` works.
    original : object
        What was loaded: the list of Blocks Neo read from the file, or the user's Block / Segment /
        AnalogSignal, unchanged.
    sweeps : list of SweepInfo
        One entry per sweep, in sweep order.
    path : pathlib.Path or None
        The file, None for in-memory objects.
    sha256 : str or None
        Hash of the file's bytes, None for in-memory objects.
    format : str
        ``"ABF 2.6"``, ``"ABF 1.83"``, ``"NWB"``, another Neo IO name, or ``"Neo (in memory)"``.
    recording_mode : str
        ``"current_clamp"`` or ``"voltage_clamp"``.
    voltage_channel : str or None
        The chosen channel (in voltage clamp: the clamp current's channel).
    warnings : list of str
        Every warning raised while loading (also emitted with :mod:`warnings`).
    """

    def __init__(self, *, block, original, sweeps, path, sha256, fmt, recording_mode, channel, warnings_,
                 channels, step_info):
        self.block = block
        self.original = original
        self.sweeps: list[SweepInfo] = sweeps
        self.path: Path | None = path
        self.sha256: str | None = sha256
        self.format: str = fmt
        self.recording_mode: str = recording_mode
        self.voltage_channel: str | None = channel
        self.warnings: list[str] = warnings_
        self.channels: list[dict] = channels
        self._step_info = step_info
        self._describe: dict | None = None

    def __len__(self) -> int:
        return len(self.sweeps)

    def __repr__(self) -> str:
        name = self.path.name if self.path else "in-memory"
        return (f"Recording({name!r}, {self.format}, {self.recording_mode}, {len(self.sweeps)} sweeps, "
                f"channel {self.voltage_channel!r})")

    def _provenance(self) -> dict:
        return {"file": None if self.path is None else str(self.path),
                "file_name": None if self.path is None else self.path.name,
                "sha256": self.sha256, "format": self.format}

    def traces(self, sweeps="all", window: tuple[float | None, float | None] | None = None) -> list[Trace]:
        """Plain-array traces of the chosen sweeps.

        Parameters
        ----------
        sweeps : "all", int or list of int
            Which sweeps (negative indices count from the end).
        window : (float, float), optional
            ``(t0_ms, t1_ms)`` measured **from each sweep's start**; None ends are open.

        Returns
        -------
        list of Trace
            t in ms (absolute recording time, ``t_start`` kept), v in mV, i_ext in pA.

        Raises
        ------
        VoltageClampError
            For a voltage-clamp recording.
        StimulusNotFoundError
            When a chosen sweep has no stimulus (pass ``stimulus=`` to :func:`load_recording`).
        """
        if self.recording_mode == "voltage_clamp":
            raise VoltageClampError(
                f"{self._label()} looks like a voltage-clamp recording (its recorded channel "
                f"{self.voltage_channel!r} is a current in {self.sweeps[0].units if self.sweeps else '?'}; "
                "no membrane-voltage channel); parameter estimation needs a current-clamp recording of the "
                "membrane voltage under an injected current.")
        return convert.block_to_traces(self.block, sweeps=sweeps, window=window, provenance=self._provenance())

    def _label(self) -> str:
        return repr(self.path.name) if self.path else "This recording"

    def _sweep_signals(self):
        """[(segment, main signal, stimulus signal or None)] in sweep order, from the annotated tree."""
        role = convert.ROLE_VOLTAGE if self.recording_mode == "current_clamp" else convert.ROLE_CLAMP_CURRENT
        found = {}
        for seg in self.block.segments:
            stims = {int(s.annotations["neo_pinn_sweep"]): s for s in seg.analogsignals
                     if s.annotations.get("neo_pinn_role") == convert.ROLE_STIMULUS}
            for sig in seg.analogsignals:
                if sig.annotations.get("neo_pinn_role") == role:
                    k = int(sig.annotations["neo_pinn_sweep"])
                    found[k] = (seg, sig, stims.get(k))
        return [found[k] for k in sorted(found)]

    def describe(self) -> dict:
        """JSON-ready summary (used by ``neo-pinn info``).

        Returns
        -------
        dict
            ``file``, ``sha256``, ``format``, ``recording_mode``, ``n_sweeps``, ``channels`` (name, units,
            dimension), ``voltage_channel``, ``total_spikes`` (0 mV upward crossings re-armed at -10 mV;
            None in voltage clamp), ``stimulus_sources``, ``stimulus_steps`` (per sweep the main step
            amplitude in pA, see :func:`neo_pinn.io.stimulus.step_amplitudes`), ``stimulus_step_window_ms``
            (its start/stop since sweep start), ``stimulus_summary`` (e.g. "steps -50 to +100 pA (+10 pA per
            sweep)"), ``warnings`` and ``sweeps``: per sweep the :class:`SweepInfo` fields plus
            ``spike_count``, ``stimulus_epochs`` (list of {start_ms, stop_ms, amplitude_pA}, times since
            sweep start) and ``stimulus_text``.
        """
        if self._describe is not None:
            return copy.deepcopy(self._describe)
        rows = []
        total = 0 if self.recording_mode == "current_clamp" else None
        for info, (seg, sig, stim) in zip(self.sweeps, self._sweep_signals()):
            row = info.to_dict()
            if self.recording_mode == "current_clamp":
                v = convert.signal_to_canonical(sig, "voltage")
                t = convert.signal_times_ms(sig)
                n = spike_count(v, t, threshold=0.0)
                row["spike_count"] = n
                total += n
            else:
                row["spike_count"] = None
            epochs = self._step_info["epochs"][info.sweep] if self._step_info else None
            row["stimulus_epochs"] = epochs
            row["stimulus_text"] = describe_steps(epochs) if epochs else None
            rows.append(row)
        amps = self._step_info["amplitudes_pA"] if self._step_info else [None] * len(self.sweeps)
        out = {
            "file": None if self.path is None else self.path.name,
            "path": None if self.path is None else str(self.path),
            "sha256": self.sha256,
            "format": self.format,
            "recording_mode": self.recording_mode,
            "n_sweeps": len(self.sweeps),
            "channels": self.channels,
            "voltage_channel": self.voltage_channel if self.recording_mode == "current_clamp" else None,
            "recorded_channel": self.voltage_channel,
            "total_spikes": total,
            "stimulus_sources": sorted({s.stimulus_source for s in self.sweeps if s.stimulus_source}),
            "stimulus_steps": [None if a is None else round(float(a), 3) for a in amps],
            "stimulus_step_window_ms": self._step_info["window_ms"] if self._step_info else None,
            "stimulus_summary": describe_step_family(amps) if self._step_info else None,
            "warnings": list(self.warnings),
            "sweeps": rows,
        }
        self._describe = out
        return copy.deepcopy(out)


def _recover_stimuli(block, members, stimulus, marked_stim: dict, notes: list):
    """Per sweep (source, detail, current in pA or None); marks and appends stimulus signals in ``block``."""
    sources: list[str | None] = [None] * len(members)
    details: list[str | None] = [None] * len(members)
    currents: list[np.ndarray | None] = [None] * len(members)
    t_rel = [convert.signal_times_ms(sig) - convert.signal_times_ms(sig)[0] for _, sig in members]
    user = _user_stimulus(stimulus, t_rel)
    mismatch_user: dict[str, list] = {}
    mismatch_builtin: dict[tuple, list] = {}
    for k, (s_idx, sig) in enumerate(members):
        seg = block.segments[s_idx]
        prior = marked_stim.get(id(sig)) if user is None else None
        if prior is not None:
            src = str(prior.annotations.get("neo_pinn_stimulus_source", USER))
            det = str(prior.annotations.get("neo_pinn_stimulus_detail", "")) or None
            det = f"{det or src}; marked neo_pinn_role='stimulus' in the given tree"
            prior.annotations.update(neo_pinn_role=convert.ROLE_STIMULUS, neo_pinn_sweep=k,
                                     neo_pinn_stimulus_source=src, neo_pinn_stimulus_detail=det)
            sources[k], details[k] = src, det
            currents[k] = convert.signal_to_canonical(prior, "current")
            sig.annotations["neo_pinn_stimulus_source"] = src
            sig.annotations["neo_pinn_stimulus_detail"] = det
            continue
        found = _hook_stimulus(sig, seg) if (user is None or not _is_zero_declaration(stimulus)) else None
        cands = stimulus_hooks.find_candidates(sig, seg)
        winner = None
        if found is not None:
            winner = next((c for c in cands if c.source == found[1] and np.array_equal(c.current_pA, found[0])),
                          None)
        if user is not None:
            cur = user[k]
            src = NONE if _is_zero_declaration(stimulus) else USER
            det = "declared: no injected current" if src == NONE else f"given by the user ({_user_label(stimulus)})"
            if found is not None and src == USER:
                cmp = compare_stimuli(cur, found[0], dt_ms=_dt_ms(sig))
                if not cmp["agree"]:
                    name = winner.detail if winner is not None else found[1]
                    mismatch_user.setdefault(f"{found[1]} ({name})", []).append((k, cmp))
            sources[k], details[k], currents[k] = src, det, cur
            if src == USER:
                seg.analogsignals.append(_stimulus_signal(sig, cur, k, USER, det))
        elif found is not None:
            cur, src = found
            det = winner.detail if winner is not None else f"found by plugin ({src})"
            for c in cands:
                if winner is not None and c is winner:
                    continue
                if c.source == src and np.array_equal(c.current_pA, cur):
                    continue
                cmp = compare_stimuli(cur, c.current_pA, dt_ms=_dt_ms(sig))
                if not cmp["agree"]:
                    mismatch_builtin.setdefault((src, det, c.source, c.detail), []).append((k, cmp))
            sources[k], details[k], currents[k] = src, det, np.asarray(cur, dtype=float)
            rec_sig = winner.signal if winner is not None else None
            if rec_sig is not None and rec_sig.shape[1] == 1 and any(s is rec_sig for s in seg.analogsignals) \
                    and rec_sig.annotations.get("neo_pinn_role") != convert.ROLE_STIMULUS:
                rec_sig.annotations.update(neo_pinn_role=convert.ROLE_STIMULUS, neo_pinn_sweep=k,
                                           neo_pinn_stimulus_source=src, neo_pinn_stimulus_detail=det)
            else:
                seg.analogsignals.append(_stimulus_signal(sig, cur, k, src, det))
        else:
            sources[k], details[k] = NOT_FOUND, None
        sig.annotations["neo_pinn_stimulus_source"] = sources[k]
        if details[k]:
            sig.annotations["neo_pinn_stimulus_detail"] = details[k]
    for other, hits in mismatch_user.items():
        ks = [k for k, _ in hits]
        worst = max(hits, key=lambda h: h[1]["max_abs_diff_pA"])[1]
        notes.append(_mismatch(f"The stimulus you gave differs from the recording's own, {other}, in sweep(s) "
                           f"{_fmt_sweeps(ks)} (max |difference| {worst['max_abs_diff_pA']:.4g} pA > tolerance "
                           f"{worst['tolerance_pA']:.4g} pA); using yours (source 'user')."))
    for (src, det, osrc, odet), hits in mismatch_builtin.items():
        ks = [k for k, _ in hits]
        worst = max(hits, key=lambda h: h[1]["max_abs_diff_pA"])[1]
        notes.append(_mismatch(f"Two stimulus sources disagree in sweep(s) {_fmt_sweeps(ks)}: using {src} ({det}); "
                           f"{osrc} ({odet}) differs by up to {worst['max_abs_diff_pA']:.4g} pA (tolerance "
                           f"{worst['tolerance_pA']:.4g} pA). Pass stimulus= to choose explicitly."))
    missing = [k for k, s in enumerate(sources) if s == NOT_FOUND]
    if missing:
        notes.append(f"No injected current was found for sweep(s) {_fmt_sweeps(missing)}; traces() will need "
                     f"stimulus= ({convert.STIMULUS_HINT}).")
    return sources, details, currents


def _open_source(source):
    """(original, format, template block, [(segment index, segment)], path, sha256, lone signal or None)."""
    import neo

    path: Path | None = None
    sha = None
    forced_signal = None
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if not path.exists():
            raise RecordingNotFoundError(f"Recording file {str(path)!r} does not exist; check the path "
                                         f"(relative paths start at {os.getcwd()!r}).")
        original, fmt = _read_file(path)
        sha = sha256_of(path) if path.is_file() else None
        segments = [(i, seg) for i, seg in enumerate(s for b in original for s in b.segments)]
        template = original[0]
    elif isinstance(source, neo.Block):
        original, fmt, template = source, "Neo (in memory)", source
        segments = list(enumerate(source.segments))
    elif isinstance(source, (list, tuple)) and source and all(isinstance(b, neo.Block) for b in source):
        original, fmt, template = source, "Neo (in memory)", source[0]
        segments = list(enumerate(s for b in source for s in b.segments))
    elif isinstance(source, neo.Segment):
        original, fmt = source, "Neo (in memory)"
        parent = getattr(source, "block", None)
        index = next((i for i, s in enumerate(parent.segments) if s is source), 0) if parent is not None else 0
        template = parent if parent is not None else neo.Block(name=source.name)
        segments = [(index, source)]
    elif isinstance(source, neo.AnalogSignal):
        original, fmt = source, "Neo (in memory)"
        parent_seg = getattr(source, "segment", None)
        parent = getattr(parent_seg, "block", None) if parent_seg is not None else None
        index = next((i for i, s in enumerate(parent.segments) if s is parent_seg), 0) if parent is not None else 0
        # A stand-in for the segment that lists only the user's signal (the signal is not re-parented).
        holder = SimpleNamespace(name=getattr(parent_seg, "name", None), description=None,
                                 file_origin=getattr(parent_seg, "file_origin", None) or source.file_origin,
                                 rec_datetime=getattr(parent_seg, "rec_datetime", None), index=None,
                                 annotations=dict(getattr(parent_seg, "annotations", {}) or {}),
                                 analogsignals=[source])
        template = parent if parent is not None else neo.Block(file_origin=source.file_origin)
        segments = [(index, holder)]
        forced_signal = source
    else:
        raise RecordingFormatError(f"Cannot load a {type(source).__name__}; give a file path, a neo.Block, "
                                   "neo.Segment or neo.AnalogSignal.")
    return original, fmt, template, segments, path, sha, forced_signal


# ---------------------------------------------------------------------- main entry
def load_recording(source, *, voltage_channel: str | int | None = None, stimulus="auto",
                   mode: str = "current_clamp") -> Recording:
    """Load a recording and mark its membrane voltage and injected current.

    Parameters
    ----------
    source : str, os.PathLike, neo.Block, neo.Segment, neo.AnalogSignal or list of neo.Block
        A file Neo can read (``.abf`` through ``AxonIO``, ``.nwb`` through ``NWBIO``, others through
        ``neo.io.get_io``), or Neo objects. Neo objects are **not modified**: the result's ``block`` is
        a new tree of per-channel views (see the module docstring). A single AnalogSignal is taken as
        the recording (its segment's other signals are not searched).
    voltage_channel : str or int, optional
        Force the membrane-voltage channel by name (``"IN 0"``, ``"10_Vm"``) or by its index in
        ``describe()["channels"]``. By default the channel is chosen by units (a voltage) and by name
        and content: names such as Vm, membrane or potential are preferred, channels whose values all
        stay within ±1 mV (a scaled monitor labelled mV) are passed over.
    stimulus : str, StimulusSpec, os.PathLike, array_like, callable or None
        ``"auto"`` (default) or None: recover it from the recording through the ``neo_pinn_find_stimulus``
        hook (ABF protocol, ABF1 command, recorded current channel, NWB stimulus series; third-party
        finders first). ``"zero"`` / ``"none"``: no current was injected. A spec string
        (``"step:amp=50pA,start=100ms,stop=900ms"``, times since each sweep's start), a
        :class:`StimulusSpec`, a CSV path (t_ms, i_pA), an array in pA (shape (T,) for every sweep or
        (n_sweeps, T)), a quantities array, or a callable ``f(t_ms_since_sweep_start) -> pA``. A given
        stimulus is source ``"user"``; when the recording holds its own and they disagree, a
        :class:`~neo_pinn.errors.StimulusMismatchWarning` names both.
    mode : {"current_clamp", "any"}
        ``"current_clamp"`` raises :class:`~neo_pinn.errors.VoltageClampError` for a voltage-clamp
        recording; ``"any"`` loads it too (for ``describe()``; its ``traces()`` still raise).

    Returns
    -------
    Recording

    Raises
    ------
    RecordingNotFoundError
        The file does not exist (a ``FileNotFoundError`` and a ``RecordingFormatError``).
    RecordingFormatError
        Neo cannot read the file.
    NoVoltageChannelError, UnitsError
        No usable voltage channel, or ``voltage_channel`` names a missing or non-voltage channel.
    VoltageClampError
        A voltage-clamp recording with ``mode="current_clamp"``.
    StimulusError
        A malformed ``stimulus``.
    """

    if mode not in MODES:
        raise ConfigurationError(f"mode={mode!r}; use 'current_clamp' (for fitting) or 'any' (to describe any "
                                 "recording, voltage clamp included).")
    notes: list[str] = []
    original, fmt, template, segments, path, sha, forced_signal = _open_source(source)
    if not segments:
        raise EmptySignalError("The recording holds no segments (sweeps).")
    block = _annotated_copy(segments, template, path)
    if forced_signal is not None:
        # signal indices of a lone AnalogSignal refer to its own segment
        parent_seg = getattr(forced_signal, "segment", None)
        if parent_seg is not None:
            j = next((i for i, s in enumerate(parent_seg.analogsignals) if s is forced_signal), 0)
            for sig in block.segments[0].analogsignals:
                sig.annotations["neo_pinn_source_signal_index"] = j

    chans = _collect_channels(block)
    channels = []
    for key in _all_channel_keys(block):
        sig = next(s for seg in block.segments for s in seg.analogsignals if _channel_key(s) == key)
        channels.append({"name": key, "units": sig.units.dimensionality.string,
                         "dimension": dimension_of(sig.units) or "other"})
    if not chans:
        raise EmptySignalError("No non-empty analog signal was found in this recording; check the file or the "
                               "segments you passed.")
    chan, rec_mode = _choose_channel(chans, voltage_channel, block, notes)
    if chan is None:
        listing = ", ".join(f"{c.key} ({c.units})" for c in chans)
        raise NoVoltageChannelError(f"No membrane-voltage (or clamp-current) channel found; channels: {listing}. "
                                    "Pass voltage_channel= with the name of the Vm channel.")
    label = repr(path.name) if path else "This recording"
    if rec_mode == "voltage_clamp" and mode == "current_clamp":
        raise VoltageClampError(
            f"{label} looks like a voltage-clamp recording: its channels are currents ({chan.key!r} in "
            f"{chan.units}) and none is a membrane voltage. Parameter estimation needs a current-clamp "
            "recording; use mode='any' (CLI: neo-pinn info) to inspect it.")

    # sweeps: the chosen channel's signals, by segment, then time, then sweep number in the name
    members = sorted(chan.signals, key=lambda x: (x[0], float(x[1].t_start.rescale("s").magnitude),
                                                  _sweep_number(x[1])))
    role = convert.ROLE_VOLTAGE if rec_mode == "current_clamp" else convert.ROLE_CLAMP_CURRENT
    # A stimulus already marked for a chosen voltage signal (a tree from an earlier load, possibly edited
    # by the user) is kept as that sweep's stimulus in "auto" mode.
    marked_stim: dict[int, Any] = {}
    for s_idx, sig in members:
        if sig.annotations.get("neo_pinn_role") == convert.ROLE_VOLTAGE and "neo_pinn_sweep" in sig.annotations:
            old_k = sig.annotations["neo_pinn_sweep"]
            hit = [s for s in block.segments[s_idx].analogsignals
                   if s.annotations.get("neo_pinn_role") == convert.ROLE_STIMULUS
                   and s.annotations.get("neo_pinn_sweep") == old_k and dimension_of(s.units) == "current"
                   and stimulus_hooks._aligned(s, sig)]
            if len(hit) == 1:
                marked_stim[id(sig)] = hit[0]
    # drop marks of an earlier load on the chosen channel's competitors
    for seg in block.segments:
        for sig in seg.analogsignals:
            if sig.annotations.get("neo_pinn_role") in (convert.ROLE_VOLTAGE, convert.ROLE_CLAMP_CURRENT) \
                    and all(sig is not m[1] for m in members):
                sig.annotations.pop("neo_pinn_role", None)
                sig.annotations.pop("neo_pinn_sweep", None)
            if sig.annotations.get("neo_pinn_role") == convert.ROLE_STIMULUS:
                sig.annotations.pop("neo_pinn_role", None)
                sig.annotations.pop("neo_pinn_sweep", None)
    for k, (s_idx, sig) in enumerate(members):
        sig.annotations["neo_pinn_role"] = role
        sig.annotations["neo_pinn_sweep"] = k
        if sig.shape[0] < 2:
            raise EmptySignalError(f"Sweep {k} ({sig.name!r}) holds fewer than two samples.")

    if rec_mode == "current_clamp":
        sources, details, currents = _recover_stimuli(block, members, stimulus, marked_stim, notes)
    else:
        sources = details = currents = [None] * len(members)
    for msg in notes:
        if isinstance(msg, _Info):
            continue  # kept in Recording.warnings only
        category = StimulusMismatchWarning if isinstance(msg, _Mismatch) else UserWarning
        warnings.warn(str(msg), category, stacklevel=2)
    notes = [str(m) for m in notes]

    infos = []
    for k, (s_idx, sig) in enumerate(members):
        rate = convert.clean_rate(float(sig.sampling_rate.rescale("Hz").magnitude))
        infos.append(SweepInfo(
            sweep=k, segment=int(sig.annotations["neo_pinn_segment_index"]),
            signal_index=int(sig.annotations["neo_pinn_source_signal_index"]),
            channel_index=int(sig.annotations["neo_pinn_source_channel_index"]),
            channel=str(sig.annotations.get("neo_pinn_channel", sig.name)) if not _nwb_type(sig) else str(sig.name),
            units=sig.units.dimensionality.string, role=role, sampling_rate_hz=rate,
            t_start_ms=float(sig.t_start.rescale("ms").magnitude), duration_ms=sig.shape[0] * 1000.0 / rate,
            n_samples=int(sig.shape[0]), stimulus_source=sources[k], stimulus_detail=details[k]))

    step_info = None
    if rec_mode == "current_clamp":
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
        step_info = step_amplitudes(per_sweep)
        step_info["epochs"] = epochs

    display = members[0][1].annotations.get("neo_pinn_channel", chan.key) if not _nwb_type(members[0][1]) \
        else chan.key
    return Recording(block=block, original=original, sweeps=infos, path=path, sha256=sha, fmt=fmt,
                     recording_mode=rec_mode, channel=str(display), warnings_=notes, channels=channels,
                     step_info=step_info)


def _dt_ms(sig) -> float:
    return 1000.0 / float(sig.sampling_rate.rescale("Hz").magnitude)


def _is_zero_declaration(stimulus) -> bool:
    return isinstance(stimulus, str) and stimulus.strip().lower() in ("none", "zero")


def _user_label(stimulus) -> str:
    if isinstance(stimulus, StimulusSpec):
        return stimulus.to_string()
    if isinstance(stimulus, (str, os.PathLike)):
        return str(stimulus)
    if isinstance(stimulus, np.ndarray):
        return f"array {stimulus.shape}"
    return type(stimulus).__name__


class _Info(str):
    """A note recorded in Recording.warnings without a Python warning."""


class _Mismatch(str):
    """A note to be emitted as a StimulusMismatchWarning."""


def _mismatch(msg: str) -> _Mismatch:
    return _Mismatch(msg)

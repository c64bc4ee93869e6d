"""Load a recording and mark the signals that matter: :func:`load_recording` and :class:`Recording`.

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

Files are opened read-only and never modified. Reading is in :mod:`~neo_pinn.io.reading`, the choice of
channel in :mod:`~neo_pinn.io.channels`, the stimulus of each sweep in :mod:`~neo_pinn.io.stimulus_recovery`.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import ConfigurationError, EmptySignalError, NoVoltageChannelError, VoltageClampError
from ..features import spike_count
from ..trace import Trace
from . import convert
from .channels import channel_listing, choose_channel, collect_channels, nwb_type, sweep_sort_key
from .reading import RecordingNotFoundError, open_source
from .stimulus_recovery import StimulusFinder, marked_stimuli, recover_stimuli, step_summary
from .stimulus_specs import StimulusSpec, describe_step_family, describe_steps, parse_stimulus

__all__ = ["load_recording", "Recording", "SweepInfo", "RecordingNotFoundError", "MODES"]

#: Values of ``load_recording(mode=...)``.
MODES = ("current_clamp", "any")


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
        if self.path is not None:
            return {"file": str(self.path), "file_name": self.path.name, "sha256": self.sha256, "format": self.format}
        # objects in memory: the file Neo read them from (file_origin), where it says; the samples came from memory
        origin = self.block.file_origin or next(
            (s.file_origin for seg in self.block.segments for s in seg.analogsignals if s.file_origin), None)
        return {"file": None if origin is None else str(origin),
                "file_name": None if origin is None else Path(str(origin)).name,
                "sha256": None, "format": self.format, "file_origin": origin is not None}

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
            amplitude in pA, see :func:`neo_pinn.io.stimulus_specs.step_amplitudes`), ``stimulus_step_window_ms``
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


# ---------------------------------------------------------------------- main entry
def load_recording(source, *, voltage_channel: str | int | None = None, stimulus="auto",
                   mode: str = "current_clamp", stimulus_finder: StimulusFinder | None = None) -> Recording:
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
    stimulus : str, StimulusSpec, os.PathLike, array_like, neo.AnalogSignal, callable or None
        ``"auto"`` (default) or None: recover it from the recording (``stimulus_finder`` first, then the
        built-in finders: recorded current channel, ABF protocol, ABF1 command, NWB stimulus series).
        ``"zero"`` / ``"none"``: no current was injected. A spec string
        (``"step:amp=50pA,start=100ms,stop=900ms"``, times since each sweep's start), a
        :class:`StimulusSpec`, a CSV path (t_ms, i_pA), an array in pA (shape (T,) for every sweep or
        (n_sweeps, T)), a quantities array, a current ``neo.AnalogSignal`` (or one per sweep) matched to each
        sweep by time (it may span more than a time-sliced voltage), or a callable
        ``f(t_ms_since_sweep_start) -> pA``. A given
        stimulus is source ``"user"``; when the recording holds its own and they disagree, a
        :class:`~neo_pinn.errors.StimulusMismatchWarning` names both.
    mode : {"current_clamp", "any"}
        ``"current_clamp"`` raises :class:`~neo_pinn.errors.VoltageClampError` for a voltage-clamp
        recording; ``"any"`` loads it too (for ``describe()``; its ``traces()`` still raise).
    stimulus_finder : callable, optional
        ``stimulus_finder(signal=, segment=) -> (current_pA, source) | None``, asked for each sweep's
        voltage signal before the built-in finders (:mod:`neo_pinn.io.stimulus_finders`); the current is
        sampled at the signal's times. :func:`neo_pinn.load_recording` passes the installed plugins'
        ``neo_pinn_find_stimulus`` hooks here.

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
    notes: list = []  # (message, warning category or None: recorded only)
    src = open_source(source)
    if not src.segments:
        raise EmptySignalError("The recording holds no segments (sweeps).")
    block = src.annotated_copy()
    chans = collect_channels(block)
    channels = channel_listing(block)
    if not chans:
        raise EmptySignalError("No non-empty analog signal was found in this recording; check the file or the "
                               "segments you passed.")
    chan, rec_mode = choose_channel(chans, voltage_channel, block, notes)
    _check_mode(chan, chans, rec_mode, mode, src.path)

    # sweeps: the chosen channel's signals, by segment, then time, then sweep number in the name
    members = sorted(chan.signals, key=sweep_sort_key)
    role = convert.ROLE_VOLTAGE if rec_mode == "current_clamp" else convert.ROLE_CLAMP_CURRENT
    # A stimulus already marked for a chosen voltage signal (a tree from an earlier load, possibly edited
    # by the user) is kept as that sweep's stimulus in "auto" mode.
    marked = marked_stimuli(block, members)
    _mark_sweeps(block, members, role)
    if rec_mode == "current_clamp":
        _check_spec_span(stimulus, members)
        sources, details, currents = recover_stimuli(block, members, stimulus, marked, notes, stimulus_finder)
    else:
        sources = details = currents = [None] * len(members)
    for message, category in notes:
        if category is not None:
            warnings.warn(message, category, stacklevel=2)

    infos = [_sweep_info(k, sig, role, sources[k], details[k]) for k, (_, sig) in enumerate(members)]
    step_info = step_summary(members, currents) if rec_mode == "current_clamp" else None
    first = members[0][1]
    display = first.annotations.get("neo_pinn_channel", chan.key) if not nwb_type(first) else chan.key
    return Recording(block=block, original=src.original, sweeps=infos, path=src.path, sha256=src.sha256,
                     fmt=src.format, recording_mode=rec_mode, channel=str(display),
                     warnings_=[message for message, _ in notes], channels=channels, step_info=step_info)


def _check_spec_span(stimulus, members) -> None:
    """Refuse a user's spec (step, ramp, pulses) that acts outside every sweep's time span (it would inject nothing)."""
    if isinstance(stimulus, str) and stimulus.strip().lower() in ("auto", "zero", "none"):
        return
    if not isinstance(stimulus, (str, StimulusSpec)):
        return
    spec = parse_stimulus(stimulus)
    for k, (_, sig) in enumerate(members):
        last = (sig.shape[0] - 1) * 1000.0 / convert.clean_rate(float(sig.sampling_rate.rescale("Hz").magnitude))
        spec.check_span(0.0, last, f"sweep {k}")


def _check_mode(chan, chans, rec_mode: str, mode: str, path) -> None:
    """Raise when no channel was found, or for a voltage-clamp recording loaded for fitting."""
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


def _mark_sweeps(block, members, role: str) -> None:
    """Mark the chosen signals as sweeps 0, 1, ... and drop the marks an earlier load left on others."""
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


def _sweep_info(k: int, sig, role: str, source, detail) -> SweepInfo:
    rate = convert.clean_rate(float(sig.sampling_rate.rescale("Hz").magnitude))
    return SweepInfo(
        sweep=k, segment=int(sig.annotations["neo_pinn_segment_index"]),
        signal_index=int(sig.annotations["neo_pinn_source_signal_index"]),
        channel_index=int(sig.annotations["neo_pinn_source_channel_index"]),
        channel=str(sig.annotations.get("neo_pinn_channel", sig.name)) if not nwb_type(sig) else str(sig.name),
        units=sig.units.dimensionality.string, role=role, sampling_rate_hz=rate,
        t_start_ms=float(sig.t_start.rescale("ms").magnitude), duration_ms=sig.shape[0] * 1000.0 / rate,
        n_samples=int(sig.shape[0]), stimulus_source=source, stimulus_detail=detail)

"""Built-in stimulus finders: where the injected current of a sweep can be recovered from.

:func:`find_stimulus` is the loader's default finder; this module is also the pluggy plugin
``core_stimulus``, whose :func:`neo_pinn_find_stimulus` is marked ``trylast`` so that any third-party
finder is asked first. Both return the first of these that applies to the voltage signal of a sweep,
as ``(current in pA at the signal's sample times, source name)``:

1. ``"recorded-channel"`` — a current channel **named** like an injected/command current (``Imemb``,
   ``I_Com``, ``Icmd``, ``Iinj``, ``Istim``, ``command``, ``current`` …) recorded in the same segment at
   the same sample times. A recorded current monitor is what reached the cell, amplifier bias current
   included, which the command waveform does not show; that is why it comes first.
2. ``"abf2-protocol"`` — the DAC command of an episodic ABF2 file: Neo's
   ``AxonIO(file).read_raw_protocol()`` (``sigs[sweep][dac]``), using the DAC whose units are a current
   (the DAC with the voltage channel's index when it is one). Neo rebuilds every epoch as a step; when
   pyabf's waveform (which draws ramps and pulse trains) differs from it, pyabf's is used.
3. ``"abf1-command"`` — the DAC command of an episodic ABF1 file from pyabf (``abf.setSweep(i,
   channel=c); abf.sweepC``), only when that DAC's units are a current.
4. ``"nwb-stimulus"`` — an NWB ``CurrentClampStimulusSeries`` (or any series of the ``stimulus`` group in
   current units) paired with the response by the sweep number at the end of the names
   (``ic__Step__7`` ↔ ``ics__Step__7``) and the same start time and length, else by start time alone.
5. ``"recorded-channel"`` — any other current channel recorded at the same sample times.

The ABF finders need the file: they read the annotation ``neo_pinn_file`` that
:func:`neo_pinn.io.load_recording` puts on the voltage signal of its annotated copy, else the
``file_origin`` of the signal, segment or block (Neo's AxonIO fills these). The sweep number is the
segment of the file whose start time equals the signal's ``t_start`` (read from the file's header), else
the annotation ``neo_pinn_segment_index``, else the segment's position in its block. A protocol whose
length differs from the signal's is never used.

:func:`find_candidates` returns every source that applies (used to warn when two sources of one sweep
disagree).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..hookspecs import hookimpl
from ..units import dimension_of, to_canonical
from .channels import channel_names, is_command_name, is_nwb_stimulus, signals_aligned, sweep_number

__all__ = [
    "StimulusCandidate",
    "find_candidates",
    "find_builtin",
    "find_stimulus",
    "neo_pinn_find_stimulus",
    "SOURCE_ABF2",
    "SOURCE_ABF1",
    "SOURCE_RECORDED",
    "SOURCE_NWB",
]

SOURCE_ABF2 = "abf2-protocol"
SOURCE_ABF1 = "abf1-command"
SOURCE_RECORDED = "recorded-channel"
SOURCE_NWB = "nwb-stimulus"


@dataclass(frozen=True)
class StimulusCandidate:
    """One recovered stimulus of a sweep.

    Parameters
    ----------
    current_pA : numpy.ndarray
        Current in pA at the voltage signal's sample times, shape (T,).
    source : str
        Short source name (``"abf2-protocol"``, ``"abf1-command"``, ``"recorded-channel"``,
        ``"nwb-stimulus"``).
    detail : str
        Human-readable detail (DAC or channel name and units, how it was built).
    signal : neo.AnalogSignal, optional
        The recorded signal the current came from, for recorded channels and NWB series.
    channel : int
        The column of ``signal`` used.
    """

    current_pA: np.ndarray = field(repr=False)
    source: str
    detail: str
    signal: object = field(default=None, repr=False, compare=False)
    channel: int = 0


# ---------------------------------------------------------------------- small helpers
def _role(sig) -> str | None:
    return sig.annotations.get("neo_pinn_role") if hasattr(sig, "annotations") else None


def _current_columns(signal, segment):
    """(sig, column, name) of current channels in the segment aligned with ``signal``."""
    out = []
    for sig in getattr(segment, "analogsignals", []):
        if sig is signal or dimension_of(sig.units) != "current":
            continue
        role = _role(sig)
        if role not in (None, "stimulus"):
            continue
        if ".neo_pinn." in str(sig.name or ""):
            continue
        if not signals_aligned(sig, signal):
            continue
        for k, name in enumerate(channel_names(sig)):
            out.append((sig, k, name))
    return out


def _column_pA(sig, k) -> np.ndarray:
    col = sig[:, k] if sig.ndim > 1 else sig
    return np.asarray(to_canonical(col, kind="current"), dtype=float).reshape(-1)


def _finite(x) -> bool:
    return x is not None and x.size > 0 and bool(np.all(np.isfinite(x)))


# ---------------------------------------------------------------------- recorded channels
def _recorded(signal, segment, named: bool) -> StimulusCandidate | None:
    for sig, k, name in _current_columns(signal, segment):
        if is_nwb_stimulus(sig):
            continue
        if is_command_name(name) != named:
            continue
        cur = _column_pA(sig, k)
        if not _finite(cur):
            continue
        units = sig.units.dimensionality.string
        return StimulusCandidate(cur, SOURCE_RECORDED, f"recorded channel {name!r} ({units} → pA)", sig, k)
    return None


# ---------------------------------------------------------------------- NWB
def _nwb(signal, segment) -> StimulusCandidate | None:
    cols = [(s, k, n) for s, k, n in _current_columns(signal, segment) if is_nwb_stimulus(s)]
    if not cols:
        return None
    number = sweep_number(signal)
    same = [c for c in cols if number is not None and sweep_number(c[0]) == number]
    sig, k, name = (same or cols)[0]
    cur = _column_pA(sig, k)
    if not _finite(cur):
        return None
    how = "sweep number and start time" if same else "start time"
    return StimulusCandidate(cur, SOURCE_NWB, f"NWB stimulus series {sig.name!r} (paired by {how}; "
                             f"{sig.units.dimensionality.string} → pA)", sig, k)


# ---------------------------------------------------------------------- ABF
def _source_file(signal, segment) -> Path | None:
    options = [getattr(signal, "annotations", {}).get("neo_pinn_file"), getattr(signal, "file_origin", None),
               getattr(segment, "file_origin", None)]
    block = getattr(segment, "block", None)
    if block is not None:
        options.append(getattr(block, "file_origin", None))
    for opt in options:
        if isinstance(opt, (str, os.PathLike)) and str(opt).lower().endswith(".abf"):
            p = Path(opt)
            if p.is_file():
                return p
    return None


def _sweep_index(signal, segment) -> int | None:
    for holder in (signal, segment):
        value = getattr(holder, "annotations", {}).get("neo_pinn_segment_index")
        if value is not None:
            return int(value)
    block = getattr(segment, "block", None)
    if block is not None:
        for i, seg in enumerate(block.segments):
            if seg is segment:
                return i
    return None


class _AbfFile:
    """Lazily read ABF header/protocol of one file (cached by path, size and mtime)."""

    def __init__(self, path: Path):
        import pyabf

        self.path = path
        self.abf = pyabf.ABF(str(path), loadData=False)
        self.major = int(self.abf.abfVersion["major"])
        self._neo = None
        self._neo_failed = False
        self._pyabf: dict[tuple[int, int], np.ndarray | None] = {}
        self.lock = threading.Lock()

    @property
    def episodic(self) -> bool:
        return int(getattr(self.abf, "nOperationMode", 5)) == 5

    def neo_protocol(self):
        if self._neo is None and not self._neo_failed:
            import neo

            try:
                self._neo = neo.io.AxonIO(str(self.path)).read_raw_protocol()
            except (OSError, IndexError, KeyError, ValueError) as exc:  # not ABF2, or a header Neo can't use
                self._neo_failed = True
                self._neo_error = f"{type(exc).__name__}: {exc}"
        return self._neo

    def pyabf_command(self, sweep: int, channel: int) -> np.ndarray | None:
        key = (sweep, channel)
        if key not in self._pyabf:
            value = None
            if channel < self.abf.channelCount and sweep < self.abf.sweepCount:
                try:
                    self.abf.setSweep(sweep, channel=channel)
                    value = np.asarray(self.abf.sweepC, dtype=float).copy()
                except (IndexError, ValueError, KeyError, OSError, AssertionError):
                    value = None
            self._pyabf[key] = value
        return self._pyabf[key]

    def segment_t_starts(self) -> list[float] | None:
        """Start time (s) of every segment as Neo reads them (header only), or None."""
        if not hasattr(self, "_t_starts"):
            self._t_starts = None
            try:
                from neo.rawio import AxonRawIO

                raw = AxonRawIO(filename=str(self.path))
                raw.parse_header()
                self._t_starts = [float(raw.segment_t_start(0, i)) for i in range(raw.segment_count(0))]
            except (OSError, ValueError, IndexError, KeyError):
                self._t_starts = None
        return self._t_starts

    def sweep_seconds(self) -> float | None:
        """Duration of one sweep (s), or None when the header does not say."""
        try:
            return float(self.abf.sweepPointCount) / float(self.abf.dataRate)
        except (AttributeError, TypeError, ValueError, ZeroDivisionError):
            return None

    def adc_position(self, name: str, fallback: int | None) -> int | None:
        names = [str(x) for x in self.abf.adcNames]
        if name in names:
            return names.index(name)
        return fallback


_CACHE: "OrderedDict[tuple, _AbfFile]" = OrderedDict()
_CACHE_LOCK = threading.Lock()


def _abf_file(path: Path) -> _AbfFile | None:
    try:
        st = path.stat()
    except OSError:
        return None
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    try:
        entry = _AbfFile(path)
    except (OSError, ValueError, IndexError, KeyError, AssertionError, UnicodeDecodeError):
        return None
    with _CACHE_LOCK:
        _CACHE[key] = entry
        while len(_CACHE) > 4:
            _CACHE.popitem(last=False)
    return entry


def _abf_context(signal, segment, major: int):
    """(file, sweep, first sample, ADC position) of an episodic ABF file of version ``major`` holding the signal.

    None when the signal is not from such a file; the first sample is where a time-sliced signal starts in its sweep.
    """
    path = _source_file(signal, segment)
    if path is None:
        return None
    f = _abf_file(path)
    if f is None or not f.episodic or f.major != major:
        return None
    where = _match_sweep(f, signal, _sweep_index(signal, segment))
    if where is None:
        return None
    sweep, first = where
    name = channel_names(signal)[0]
    ids = signal.array_annotations.get("channel_ids") if hasattr(signal, "array_annotations") else None
    fallback = None
    if ids is not None and len(ids) == 1:
        try:
            fallback = int(ids[0])
        except (TypeError, ValueError):
            fallback = None
    adc = f.adc_position(name, fallback)
    return f, sweep, first, adc


def _match_sweep(f: _AbfFile, signal, by_position: int | None) -> tuple[int, int] | None:
    """(sweep, first sample) of the file's sweep holding the signal.

    The sweep whose start time is the signal's; else the one whose span holds the signal's start (a
    ``time_slice`` of a sweep starts inside it); else its segment position (times were edited), from its start.
    """
    starts = f.segment_t_starts()
    if not starts:
        return None if by_position is None else (by_position, 0)
    t0 = float(signal.t_start.rescale("s").magnitude)
    rate = float(signal.sampling_rate.rescale("Hz").magnitude)
    half = 0.5 / rate
    if by_position is not None and by_position < len(starts) and abs(starts[by_position] - t0) <= half:
        return by_position, 0
    hits = [i for i, s in enumerate(starts) if abs(s - t0) <= half]
    if len(hits) == 1:
        return hits[0], 0
    length = f.sweep_seconds()
    inside = [i for i, s in enumerate(starts) if length is not None and s - half <= t0 < s + length - half]
    if len(inside) == 1:
        return inside[0], int(round((t0 - starts[inside[0]]) * rate))
    return (by_position, 0) if by_position is not None and by_position < len(starts) else None


def _pick_dac(units: list[str], adc: int | None, usable) -> int | None:
    if adc is not None and adc < len(units) and dimension_of(units[adc]) == "current" and usable(adc):
        return adc
    for d, u in enumerate(units):
        if dimension_of(u) == "current" and usable(d):
            return d
    return None


def _abf2(signal, segment) -> StimulusCandidate | None:
    ctx = _abf_context(signal, segment, major=2)
    if ctx is None:
        return None
    f, sweep, first, adc = ctx
    with f.lock:
        proto = f.neo_protocol()
        if proto is None:
            return None
        sigs, names, units = proto
        n = signal.shape[0]
        if sweep >= len(sigs):
            return None
        span = slice(first, first + n)

        def usable(d):
            return d < len(sigs[sweep]) and np.asarray(sigs[sweep][d])[span].size == n

        dac = _pick_dac(list(units), adc, usable)
        if dac is None:
            return None
        neo_wave = np.asarray(to_canonical(np.asarray(sigs[sweep][dac], dtype=float)[span], units[dac], kind="current"))
        detail = f"ABF2 protocol, DAC {dac} {names[dac]!r} ({units[dac]} → pA), rebuilt by Neo read_raw_protocol"
        alt = f.pyabf_command(sweep, dac)
        alt = None if alt is None else alt[span]
        if alt is not None and alt.size == n and _finite(alt):
            alt = np.asarray(to_canonical(alt, units[dac], kind="current"))
            if not np.allclose(alt, neo_wave, rtol=0, atol=1e-6 * max(1.0, float(np.abs(neo_wave).max()))):
                detail = (f"ABF2 protocol, DAC {dac} {names[dac]!r} ({units[dac]} → pA), drawn by pyabf "
                          "(its ramp/pulse epochs or disabled waveform differ from Neo's step-only rebuild)")
                neo_wave = alt
    if not _finite(neo_wave):
        return None
    return StimulusCandidate(np.asarray(neo_wave, dtype=float), SOURCE_ABF2, detail)


def _abf1(signal, segment) -> StimulusCandidate | None:
    ctx = _abf_context(signal, segment, major=1)
    if ctx is None:
        return None
    f, sweep, first, adc = ctx
    n = signal.shape[0]
    span = slice(first, first + n)
    with f.lock:
        units = [str(u) for u in f.abf.dacUnits]
        names = [str(u) for u in f.abf.dacNames]

        def usable(d):
            wave = f.pyabf_command(sweep, d)
            return wave is not None and wave[span].size == n and _finite(wave[span])

        dac = _pick_dac(units, adc, usable)
        if dac is None:
            return None
        wave = f.pyabf_command(sweep, dac)[span]
    cur = np.asarray(to_canonical(wave, units[dac], kind="current"), dtype=float)
    return StimulusCandidate(cur, SOURCE_ABF1, f"ABF1 command waveform, DAC {dac} {names[dac]!r} "
                             f"({units[dac]} → pA), drawn by pyabf")


# ---------------------------------------------------------------------- public
_FINDERS = (
    lambda s, g: _recorded(s, g, named=True),
    _abf2,
    _abf1,
    _nwb,
    lambda s, g: _recorded(s, g, named=False),
)


def _applicable(signal, segment):
    """Yield, in order of preference, every built-in candidate with one value per sample of ``signal``."""
    for finder in _FINDERS:
        cand = finder(signal, segment)
        if cand is not None and cand.current_pA.size == signal.shape[0]:
            yield cand


def find_candidates(signal, segment) -> list[StimulusCandidate]:
    """Every built-in stimulus source that applies to one voltage signal, in order of preference.

    Parameters
    ----------
    signal : neo.AnalogSignal
        The membrane-voltage signal of one sweep (one channel).
    segment : neo.Segment
        The segment holding it.

    Returns
    -------
    list of StimulusCandidate
        Possibly empty; currents in pA at the signal's sample times.
    """
    return list(_applicable(signal, segment))


def find_builtin(signal, segment) -> StimulusCandidate | None:
    """The first built-in stimulus source that applies (see the module docstring), or None."""
    return next(_applicable(signal, segment), None)


def find_stimulus(signal, segment):
    """The built-in finders as one stimulus finder: ``(current_pA, source)`` of :func:`find_builtin`, or None.

    This is the shape :func:`neo_pinn.io.load_recording` expects of ``stimulus_finder``.

    Parameters
    ----------
    signal : neo.AnalogSignal
        The membrane-voltage signal of one sweep.
    segment : neo.Segment
        The segment holding it.

    Returns
    -------
    (numpy.ndarray, str) or None
        The current in pA at the signal's sample times and the source name.
    """
    cand = find_builtin(signal, segment)
    if cand is None:
        return None
    return cand.current_pA, cand.source


@hookimpl(trylast=True)
def neo_pinn_find_stimulus(signal, segment):
    """Hook implementation of plugin ``core_stimulus``: :func:`find_stimulus`."""
    return find_stimulus(signal, segment)

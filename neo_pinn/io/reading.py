"""Read recordings through Neo and make the annotated copy the loader marks.

:func:`open_source` takes a file (any format Neo reads, opened read-only) or a user's Neo objects and
says what was loaded; :func:`annotated_copy` builds a new Block of per-channel *views* of its signals
(sharing the sample memory, with their own annotation dicts), so that the loader can mark roles
without ever changing the user's objects.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

import numpy as np

from ..errors import EmptySignalError, RecordingFormatError
from ..storage import check_input_file, sha256_of
from ..units import dimension_of
from .channels import channel_names
from .neo_files_reader import restore_nwb, strip_nix_names

__all__ = ["RecordingNotFoundError", "Source", "open_source", "read_file", "format_name", "annotated_copy"]

IN_MEMORY = "Neo (in memory)"


class RecordingNotFoundError(RecordingFormatError, FileNotFoundError):
    """The recording file does not exist."""


def format_name(io_name: str, block) -> str:
    """Readable file format from a Neo IO class name: ``"ABF 2.6"``, ``"NWB"``, ``"Nix"`` (for NixIO) ..."""
    if io_name == "AxonIO":
        v = block.annotations.get("abf_version")
        if v is not None:
            return "ABF " + f"{float(v):.2f}".rstrip("0").rstrip(".")
        return "ABF"
    if io_name == "NWBIO":
        return "NWB"
    return io_name[:-2] if io_name.endswith("IO") else io_name


def _read_blocks(path: Path):
    """(IO object, its blocks) for one file; ``.abf`` through AxonIO, ``.nwb`` through NWBIO, others by suffix."""
    import neo

    suffix = path.suffix.lower()
    if suffix == ".abf":
        io = neo.io.AxonIO(str(path))
        return io, [io.read_block()]
    if suffix == ".nwb":
        io = neo.io.NWBIO(str(path), mode="r")
        return io, list(io.read_all_blocks())
    try:
        io = neo.io.get_io(str(path))
    except (OSError, ValueError, IndexError) as exc:
        raise RecordingFormatError(
            f"Neo has no reader for {path.name!r} (extension {suffix or 'none'!r}): {exc}. Convert it to "
            "a format Neo reads (ABF, NWB, NIX, Spike2, ...), or read it with Neo yourself and pass the "
            "neo.Block to load_recording().") from exc
    if hasattr(io, "read_all_blocks"):
        return io, list(io.read_all_blocks())
    return io, [io.read_block()]


def read_file(path: Path) -> tuple[list, str]:
    """Every Block Neo reads from a recording file, and the file's format name.

    Files written by :func:`neo_pinn.io.neo_writers.write_block` carry names and annotations that the
    plain readers drop (NWB) or decorate (NIX); they are restored, so a re-loaded fit keeps its roles.

    Raises
    ------
    RecordingFormatError
        Neo cannot read the file.
    EmptySignalError
        The file holds no segments.
    """
    suffix = path.suffix.lower()
    try:
        io, blocks = _read_blocks(path)
    except RecordingFormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure becomes one typed, actionable error
        kind = {".abf": "an Axon ABF", ".nwb": "an NWB"}.get(suffix, f"a {suffix or 'recording'}")
        raise RecordingFormatError(
            f"Cannot read {path.name!r} as {kind} file ({type(exc).__name__}: {exc}). Check that the file is "
            "complete and not corrupted (Neo cannot read ABF1 files smaller than 5,282 bytes), or read it "
            "with Neo yourself and pass the neo.Block.") from exc
    blocks = [b for b in blocks if b is not None]
    for b in blocks:
        if suffix == ".nwb":
            restore_nwb(b)
        elif suffix == ".nix":
            strip_nix_names(b)
    if not blocks or not any(len(b.segments) for b in blocks):
        raise EmptySignalError(f"{path.name!r} holds no segments (no sweeps) that Neo could read.")
    return blocks, format_name(type(io).__name__, blocks[0])


@dataclass
class Source:
    """What :func:`open_source` found.

    Attributes
    ----------
    original : object
        The Blocks read from the file, or the user's object, unchanged.
    format : str
        See :func:`format_name`; ``"Neo (in memory)"`` for Neo objects.
    template : neo.Block or None
        The block whose name, description and annotations the annotated copy takes.
    segments : list of (int, segment)
        Segments to copy with their index in the original tree.
    path : pathlib.Path or None
        The file, None for Neo objects.
    sha256 : str or None
        Hash of the file's bytes.
    lone_signal : neo.AnalogSignal or None
        The user's signal when a single AnalogSignal was given.
    """

    original: Any
    format: str
    template: Any
    segments: list
    path: Path | None = None
    sha256: str | None = None
    lone_signal: Any = None

    def annotated_copy(self):
        """:func:`annotated_copy` of the segments; a lone signal's index refers to its own segment."""
        block = annotated_copy(self.segments, self.template, self.path)
        parent_seg = getattr(self.lone_signal, "segment", None) if self.lone_signal is not None else None
        if parent_seg is not None:  # indices in the user's segment, not in the stand-in's list
            for sig in block.segments[0].analogsignals:
                original = sig.annotations.get("neo_pinn_source_signal_index", 0)
                sig.annotations["neo_pinn_source_signal_index"] = _index_in(
                    parent_seg.analogsignals, self.segments[0][1].analogsignals[original])
        elif self.lone_signal is not None:  # e.g. a time_slice: Neo drops the Segment (and its current) from it
            for sig in block.segments[0].analogsignals:
                sig.annotations["neo_pinn_detached"] = True
        return block


def _index_in(items, obj) -> int:
    return next((i for i, s in enumerate(items) if s is obj), 0)


def _signal_source(source) -> Source:
    """A lone AnalogSignal: a stand-in segment listing only it (the signal is not re-parented)."""
    import neo

    parent_seg = getattr(source, "segment", None)
    parent = getattr(parent_seg, "block", None) if parent_seg is not None else None
    index = _index_in(parent.segments, parent_seg) if parent is not None else 0
    # the currents recorded beside it come along (its stimulus may be one of them); other voltages stay behind
    currents = [s for s in getattr(parent_seg, "analogsignals", []) if s is not source and dimension_of(s.units) == "current"]
    holder = SimpleNamespace(name=getattr(parent_seg, "name", None), description=None,
                             file_origin=getattr(parent_seg, "file_origin", None) or source.file_origin,
                             rec_datetime=getattr(parent_seg, "rec_datetime", None), index=None,
                             annotations=dict(getattr(parent_seg, "annotations", {}) or {}),
                             analogsignals=[source] + currents)
    template = parent if parent is not None else neo.Block(file_origin=source.file_origin)
    return Source(source, IN_MEMORY, template, [(index, holder)], lone_signal=source)


def open_source(source) -> Source:
    """Open what :func:`neo_pinn.io.load_recording` was given: a path, Block(s), Segment or AnalogSignal.

    Raises
    ------
    RecordingNotFoundError
        A path that does not exist.
    RecordingFormatError
        Neo cannot read the file, or ``source`` is of another type.
    """
    import neo

    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if not path.exists():
            raise RecordingNotFoundError(f"Recording file {str(path)!r} does not exist; check the path "
                                         f"(relative paths start at {os.getcwd()!r}).")
        if not path.is_dir():  # a folder may be a recording (some formats are folders); a FIFO would hang
            check_input_file(path, "Recording file")
        original, fmt = read_file(path)
        sha = sha256_of(path) if path.is_file() else None
        segments = [(i, seg) for i, seg in enumerate(s for b in original for s in b.segments)]
        return Source(original, fmt, original[0], segments, path, sha)
    if isinstance(source, neo.Block):
        return Source(source, IN_MEMORY, source, list(enumerate(source.segments)))
    if isinstance(source, (list, tuple)) and source and all(isinstance(b, neo.Block) for b in source):
        return Source(source, IN_MEMORY, source[0], list(enumerate(s for b in source for s in b.segments)))
    if isinstance(source, neo.Segment):
        parent = getattr(source, "block", None)
        index = _index_in(parent.segments, source) if parent is not None else 0
        template = parent if parent is not None else neo.Block(name=source.name)
        return Source(source, IN_MEMORY, template, [(index, source)])
    if isinstance(source, neo.AnalogSignal):
        return _signal_source(source)
    raise RecordingFormatError(f"Cannot load a {type(source).__name__}; give a file path, a neo.Block, "
                               "neo.Segment or neo.AnalogSignal.")


# ---------------------------------------------------------------------- annotated copy
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
    names = channel_names(sig)
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


def annotated_copy(segments: Sequence[tuple[int, Any]], template_block, source_path: Path | None):
    """A new Block with per-channel signal copies of ``segments`` ``[(original index, segment), ...]``.

    Every copied signal carries ``neo_pinn_segment_index``, ``neo_pinn_source_signal_index``,
    ``neo_pinn_source_channel_index`` and ``neo_pinn_channel`` (and ``neo_pinn_file`` for a file).
    Spike trains, events, epochs and irregular signals are copied; groups are not carried over.
    """
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

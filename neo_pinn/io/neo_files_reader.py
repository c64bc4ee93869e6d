"""Read NIX and NWB files written by :func:`neo_pinn.io.neo_writers.write_block`, undoing what it encoded.

NWBIO drops annotations, renames signals and reorders segments and signals; the writer stores each
signal's name, description and annotations (and its segment's and block's) as one JSON object in the
NWB ``description`` of its series. :func:`restore_nwb` puts them back and restores the order;
:func:`strip_nix_names` removes the ``nix_name`` annotation NixIO adds to every object. The recording
loader applies both to every NWB / NIX file it reads, so a re-loaded fit keeps its roles.
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from pathlib import Path

import numpy as np

from ..errors import ConfigurationError, RecordingFormatError

__all__ = ["read_block", "decode_nwb_payload", "restore_nwb", "strip_nix_names", "neo_file_format", "quiet_nwbio",
           "NWB_PAYLOAD_KEY"]

#: Key of the JSON object neo_pinn stores in the NWB ``description`` of every signal it writes.
NWB_PAYLOAD_KEY = "neo_pinn_neo_roundtrip"
_FORMATS = {".nix": "nix", ".nwb": "nwb"}


def neo_file_format(path: Path, format: str | None) -> str:
    """``"nix"`` or ``"nwb"``: ``format`` when given, else from the suffix of ``path``.

    Raises
    ------
    ConfigurationError
        An unknown ``format``, or a suffix other than ``.nix`` / ``.nwb``.
    """
    if format is not None:
        fmt = str(format).lower().lstrip(".")
        if fmt not in ("nix", "nwb"):
            raise ConfigurationError(f"Unknown format {format!r}; use 'nix' or 'nwb'.")
        return fmt
    try:
        return _FORMATS[path.suffix.lower()]
    except KeyError:
        raise ConfigurationError(
            f"Cannot tell the format of {path.name!r} from its suffix; use .nix or .nwb, or pass format='nix'/'nwb'."
        ) from None


class quiet_nwbio:
    """Context manager silencing NWBIO's expected chatter; other messages pass.

    Silenced: a root-logger warning for every signal NWBIO renames (all of them), a "Can't handle unit
    'dimensionles'" for every dimensionless signal it reads, pynwb's FutureWarning about how NWBIO calls
    ``validate`` and its unit replacement notice for patch-clamp series.
    """

    _EXPECTED = ("Warning signal name exists", "Warning event name exists", "Can't handle unit 'dimensionles'")

    class _Filter(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return not str(record.msg).startswith(quiet_nwbio._EXPECTED)

    def __enter__(self):
        self.f = self._Filter()
        self.loggers = [logging.getLogger(), logging.getLogger("Neo")]
        for lg in self.loggers:
            lg.addFilter(self.f)
        self.w = warnings.catch_warnings()
        self.w.__enter__()
        warnings.filterwarnings("ignore", message="validate: Using positional arguments", category=FutureWarning)
        # NWBIO passes 'V'/'A' to patch-clamp series, which pynwb replaces by 'volts'/'amperes' (same data).
        warnings.filterwarnings("ignore", message=r"Unit '.*' for \w*Clamp\w*Series .* is ignored", category=UserWarning)
        return self

    def __exit__(self, *exc):
        self.w.__exit__(*exc)
        for lg in self.loggers:
            lg.removeFilter(self.f)
        return False


def decode_nwb_payload(signal) -> dict | None:
    """The JSON object :func:`~neo_pinn.io.neo_writers.write_block` stored with an NWB signal, or None.

    Works on signals read by :func:`read_block` (before restoring) and by plain ``neo.io.NWBIO``, which
    puts a JSON description into the annotation ``notes``.
    """
    for holder in (signal.annotations.get("notes"), signal.description):
        if isinstance(holder, str):
            try:
                holder = json.loads(holder)
            except ValueError:
                continue
        if isinstance(holder, dict) and isinstance(holder.get(NWB_PAYLOAD_KEY), dict):
            return holder[NWB_PAYLOAD_KEY]
    return None


def read_block(path: str | os.PathLike, format: str | None = None, block_index: int = 0):
    """Read a NIX or NWB file into a Neo Block, undoing what :func:`~neo_pinn.io.neo_writers.write_block` encoded.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.nix`` or ``.nwb`` file.
    format : {"nix", "nwb"}, optional
        Overrides the choice by suffix.
    block_index : int
        Which Block of a file holding several.

    Returns
    -------
    neo.Block
        Fully loaded (not lazy); ``file_origin`` is ``path``.
    """
    path = Path(path)
    fmt = neo_file_format(path, format)
    if not path.exists():
        raise RecordingFormatError(f"{path} does not exist.")
    if fmt == "nix":
        from neo.io import NixIO

        with NixIO(str(path), mode="ro") as io:
            blocks = io.read_all_blocks()
    else:
        from neo.io import NWBIO

        io = NWBIO(str(path), mode="r")
        try:
            with quiet_nwbio(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pynwb/hdmf namespace chatter
                blocks = io.read_all_blocks()
        finally:
            io.close()
    if not blocks:
        raise RecordingFormatError(f"{path} holds no Neo Block.")
    try:
        block = blocks[block_index]
    except IndexError:
        raise ConfigurationError(f"{path} holds {len(blocks)} block(s); block_index={block_index} is out of range.") from None
    if fmt == "nix":
        strip_nix_names(block)
    else:
        restore_nwb(block)
    block.file_origin = str(path)
    return block


def strip_nix_names(block) -> None:
    """Remove the ``nix_name`` annotation NixIO adds to every object of a Block it reads (in place)."""
    for obj in [block] + list(block.segments) + [
        o for s in block.segments
        for o in (list(s.analogsignals) + list(s.irregularlysampledsignals) + list(s.spiketrains)
                  + list(s.events) + list(s.epochs))
    ]:
        obj.annotations.pop("nix_name", None)


def restore_nwb(block) -> None:
    """Put back, in place, what :func:`~neo_pinn.io.neo_writers.write_block` stored in an NWB file.

    Names, descriptions, annotations and array annotations of signals, segments and block, and the
    order of segments and signals.

    Signals without a stored JSON object (a plain NWB file) are left as NWBIO read them.
    """
    seg_order: dict[int, float] = {}
    for pos, seg in enumerate(block.segments):
        seg_order[id(seg)] = math.inf
        for kind in ("analogsignals", "irregularlysampledsignals"):
            sigs = list(getattr(seg, kind))
            keyed = []
            for pos_sig, sig in enumerate(sigs):
                payload = decode_nwb_payload(sig)
                if payload is None:
                    keyed.append((math.inf, pos_sig, sig))
                    continue
                sig.name = payload.get("name")
                sig.description = payload.get("description")
                sig.annotations.clear()
                sig.annotations.update(payload.get("annotations", {}))
                arr = {k: np.asarray(v) for k, v in payload.get("array_annotations", {}).items()}
                if arr:
                    sig.array_annotate(**arr)
                if "segment" in payload and seg_order[id(seg)] == math.inf:
                    sp = payload["segment"]
                    seg.name = sp.get("name")
                    seg.description = sp.get("description")
                    seg.annotations.update(sp.get("annotations", {}))
                    seg_order[id(seg)] = sp.get("index", math.inf)
                if "block" in payload:
                    bp = payload["block"]
                    block.name = bp.get("name")
                    block.description = bp.get("description")
                    block.annotations.update(bp.get("annotations", {}))
                keyed.append((payload.get("index", math.inf), pos_sig, sig))
            keyed.sort(key=lambda x: (x[0], x[1]))
            ordered = [s for _, _, s in keyed]
            if [id(s) for s in ordered] != [id(s) for s in sigs]:  # identity: == on signals compares samples
                getattr(seg, kind).clear()
                getattr(seg, kind).extend(ordered)
    segs = sorted(enumerate(block.segments), key=lambda p: (seg_order[id(p[1])], p[0]))
    ordered_segs = [s for _, s in segs]
    if [id(s) for s in ordered_segs] != [id(s) for s in block.segments]:
        block.segments.clear()
        block.segments.extend(ordered_segs)

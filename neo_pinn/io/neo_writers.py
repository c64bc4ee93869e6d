"""Write whole Neo trees to NIX or NWB files with Neo's own writers, atomically and losslessly.

Neo's writers differ in what they keep (as seen with neo 0.14.6, nixio 1.5, pynwb 4.2):

NixIO (``.nix``)
    keeps names, descriptions, units, times, annotations (str, int, float, bool, lists of one of these,
    datetime, Quantity) and ``array_annotations``; numbers come back as numpy scalars, tuples as
    lists and *one-element lists as scalars*. It *fails* on ``None`` and on lists mixing types (even
    ``[1, 2.5]``), *silently drops* nested lists and *corrupts* dict values. It adds a ``nix_name``
    annotation to every object it writes (to the objects passed in, too). :func:`write_block`
    therefore writes a copy in which int/float lists become float lists and other values NixIO
    cannot store are replaced by their JSON text (same key); :func:`~neo_pinn.io.neo_files_reader.read_block`
    removes ``nix_name``.
NWBIO (``.nwb``)
    keeps samples, units, ``t_start``, sampling rate, Block and Segment names, and the NWB global
    fields of the Block (``session_start_time``, ``identifier``, ``notes`` ...). It *drops* every other
    annotation, all ``array_annotations`` and signal descriptions, renames each signal to
    ``"<segment name> <signal name> <index>"`` (on the objects passed in, too), reorders segments and
    signals alphabetically on reading, loses empty segments, merges segments of the same name, and
    needs ``session_start_time``. :func:`write_block` writes a prepared copy: NWB defaults are
    supplied, segment names made unique, and each signal's name, description, annotations and
    array annotations (plus its Segment's and the Block's annotations) are stored as one JSON object in
    the NWB ``description`` of its TimeSeries. :func:`~neo_pinn.io.neo_files_reader.read_block` puts them
    back and restores the order. With this, a NWB round trip keeps everything a NIX round trip keeps for
    signals; values that JSON cannot hold (datetime, Quantity) come back as strings, tuples as lists.
    Events, epochs and spike trains keep only what NWBIO itself writes. A file written here read with
    plain ``neo.io.NWBIO`` shows the JSON object as the signal annotation ``notes`` (see
    :func:`~neo_pinn.io.neo_files_reader.decode_nwb_payload`).
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import quantities as pq

from ..errors import ConfigurationError
from ..storage import atomic_path, dumps, final_path_of, same_file
from .neo_files_reader import NWB_PAYLOAD_KEY, decode_nwb_payload, neo_file_format, quiet_nwbio

__all__ = ["write_block", "input_files_of"]

_PAYLOAD_VERSION = 1
# Block annotations NWBIO writes natively as NWBFile fields (neo.io.nwbio.GLOBAL_ANNOTATIONS).
_NWB_GLOBAL = {
    "session_start_time", "identifier", "timestamps_reference_time", "experimenter", "experiment_description",
    "session_id", "institution", "keywords", "notes", "pharmacology", "protocol", "related_publications",
    "slices", "source_script", "source_script_file_name", "data_collection", "surgery", "virus",
    "stimulus_notes", "lab", "session_description", "rec_datetime",
}


# ----------------------------------------------------------------------------------------- guards
def input_files_of(block) -> list[Path]:
    """Paths the objects of a Neo tree say they were read from (``file_origin`` of block, segments, signals)."""
    names = {getattr(block, "file_origin", None)}
    for seg in getattr(block, "segments", []):
        names.add(getattr(seg, "file_origin", None))
        for sig in list(seg.analogsignals) + list(seg.irregularlysampledsignals):
            names.add(getattr(sig, "file_origin", None))
    return [Path(str(n)) for n in names if n]


def _check_target(path: Path, inputs: list[Path], overwrite: bool) -> None:
    for src in inputs:
        if same_file(path, src):
            raise ConfigurationError(
                f"Refusing to write {path}: it is the file the data were read from. "
                "Inputs are never changed; choose a new file name."
            )
    if path.exists() and not overwrite:
        raise ConfigurationError(f"{path} exists; choose a new file name or pass overwrite=True.")


# ------------------------------------------------------------------------------------------ write
def write_block(block, path: str | os.PathLike, format: str | None = None, *, overwrite: bool = False) -> Path:
    """Write a Neo Block to a NIX or NWB file, atomically, without touching the Block.

    Parameters
    ----------
    block : neo.Block
        The tree to write. It is deep-copied first; the writers' changes (NixIO's ``nix_name``,
        NWBIO's renaming) land on the copy only.
    path : str or os.PathLike
        Target file; ``.nix`` (NixIO) or ``.nwb`` (NWBIO) unless ``format`` is given. The file is
        written beside the target under a temporary name and renamed onto it when complete.
    format : {"nix", "nwb"}, optional
        Overrides the choice by suffix.
    overwrite : bool
        Replace an existing file. A file the Block was read from (``file_origin``) is never replaced.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    ConfigurationError
        Unknown format, ``path`` is an input file, or ``path`` exists and ``overwrite`` is False.
    """
    import neo

    if not isinstance(block, neo.Block):
        raise ConfigurationError(f"write_block needs a neo.Block, got {type(block).__name__}; wrap segments in a Block.")
    path = Path(path)
    fmt = neo_file_format(path, format)
    _check_target(path, input_files_of(block), overwrite)
    work = copy.deepcopy(block)
    if fmt == "nix":
        _prepare_nix(work)
        from neo.io import NixIO

        with atomic_path(path) as tmp:
            with NixIO(str(tmp), mode="ow") as io:
                io.write_block(work)
    else:
        _prepare_nwb(work, path)
        from neo.io import NWBIO

        with atomic_path(path) as tmp, quiet_nwbio():
            NWBIO(str(tmp), mode="w").write_block(work)
    return path


# NIX ------------------------------------------------------------------------------------------------
def _nix_safe(value: Any) -> Any:
    """Return ``value`` if NixIO stores it faithfully, else a faithful stand-in (measured, see module doc)."""
    if isinstance(value, (str, bool, int, float, np.generic, pq.Quantity, _dt.datetime, _dt.date)):
        return value
    if isinstance(value, np.ndarray) and value.ndim <= 1:
        items = value.tolist()
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        return dumps(value)  # dicts, None, multidimensional arrays ...
    kinds = set()
    for x in items:
        if isinstance(x, (bool, np.bool_)):
            kinds.add(bool)
        elif isinstance(x, (int, np.integer)):
            kinds.add(int)
        elif isinstance(x, (float, np.floating)):
            kinds.add(float)
        elif isinstance(x, str):
            kinds.add(str)
        else:
            return dumps(value)  # None or nested containers inside
    if kinds == {int, float}:
        return [float(x) for x in items]  # NixIO refuses [1, 2.5] but not [1.0, 2.5]
    return value if len(kinds) <= 1 else dumps(value)


def _sanitize_nix(obj) -> None:
    ann = getattr(obj, "annotations", None)
    if ann:
        for k in list(ann):
            ann[k] = _nix_safe(ann[k])


def _prepare_nix(block) -> None:
    _sanitize_nix(block)
    for seg in block.segments:
        _sanitize_nix(seg)
        for obj in (list(seg.analogsignals) + list(seg.irregularlysampledsignals) + list(seg.spiketrains)
                    + list(seg.events) + list(seg.epochs)):
            _sanitize_nix(obj)


# NWB ------------------------------------------------------------------------------------------------
def _json_native(v: Any) -> bool:
    try:
        json.dumps(v)
    except (TypeError, ValueError):
        return False
    return True


def _nwb_name(text: Any) -> str:
    # '/' separates HDF5 groups and is refused by pynwb in object names.
    return str(text if text not in (None, "") else "").replace("/", "_")


def _prepare_nwb(block, path: Path) -> None:
    ann = block.annotations
    sigs_of = {id(seg): [(kind, j, sig) for kind in ("analogsignals", "irregularlysampledsignals")
                         for j, sig in enumerate(getattr(seg, kind))] for seg in block.segments}
    # Signals read with plain NWBIO from a file written here still carry what that file held.
    priors = {id(sig): p for seg in block.segments for _, _, sig in sigs_of[id(seg)]
              if (p := decode_nwb_payload(sig)) is not None}
    original_block = next((p["block"] for p in priors.values() if "block" in p), None) or {
        "name": block.name,
        "description": block.description,
        # NWB fields come back in NWB's types (a str experimenter as a tuple): keep the originals where
        # JSON holds them exactly; datetimes stay with NWB, which stores them natively.
        "annotations": {k: v for k, v in ann.items() if k not in _NWB_GLOBAL or _json_native(v)},
    }
    if ann.get("session_start_time") is None:
        start = block.rec_datetime or _dt.datetime.now(_dt.timezone.utc)
        if start.tzinfo is None:  # NWB needs an aware time; a naive one is taken as local time
            start = start.astimezone()
        ann["session_start_time"] = start
    # NWBIO's defaults would be the temporary file name.
    ann.setdefault("identifier", block.name or uuid.uuid4().hex)
    # a run's temporary path (neo_pinn.storage.RunOutputs) is described by the file it becomes
    ann.setdefault("session_description", block.description or block.name or
                   f"Neo block written to {final_path_of(path).name}")
    block.name = _nwb_name(block.name) or "block"
    used: set[str] = set()
    for i, seg in enumerate(block.segments):
        seg_payload = next((priors[id(s)]["segment"] for _, _, s in sigs_of[id(seg)]
                            if "segment" in priors.get(id(s), {})), None) or {
            "index": i, "name": seg.name, "description": seg.description, "annotations": dict(seg.annotations)}
        # NWBIO keys segments by name on reading: equal names would merge two segments into one.
        base = _nwb_name(seg.name) or f"segment{i}"
        name, k = base, 1
        while name in used:
            k += 1
            name = f"{base} ({k})"
        used.add(name)
        seg.name = name
        for kind, j, sig in sigs_of[id(seg)]:
            payload = {
                "version": _PAYLOAD_VERSION,
                "kind": kind,
                "index": j,
                "name": sig.name,
                "description": sig.description,
                "annotations": dict(sig.annotations),
                "array_annotations": {k: np.asarray(v).tolist() for k, v in sig.array_annotations.items()},
                # in every signal: NWBIO reorders signals, so any one of them must restore its segment
                "segment": seg_payload,
            }
            prior = priors.get(id(sig))
            if prior is not None:
                payload.update({k: prior[k] for k in ("index", "name", "description", "array_annotations") if k in prior})
                # what the user added since reading, over what the file held; not NWBIO's own keys
                added = {k: v for k, v in sig.annotations.items() if k != "notes" and not k.startswith("nwb")}
                payload["annotations"] = {**prior.get("annotations", {}), **added}
            if original_block is not None:  # the first signal of all carries the block
                payload["block"] = original_block
                original_block = None
            sig.name = _nwb_name(sig.name)
            # NWBIO passes "nwb:*" annotations to the TimeSeries constructor: this sets its description.
            sig.annotations["nwb:description"] = dumps({NWB_PAYLOAD_KEY: payload})

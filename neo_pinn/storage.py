"""Files on disk, for every layer: JSON text, atomic writes and content hashes.

Readers (problems, recordings) and writers (results, reports, Neo files) share these; input files are
only ever read, outputs are written to a temporary file beside the target and renamed onto it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["atomic_write_text", "atomic_write_bytes", "atomic_path", "sha256_of", "json_default", "dumps",
           "read_text_or_file"]


def json_default(o: Any):
    """``json.dumps`` fallback for numpy, quantities, paths and datetimes (anything else becomes str)."""
    if hasattr(o, "dimensionality"):  # a quantities array: keep its units in the text
        return str(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, (set, frozenset)):
        return sorted(o, key=str)
    if isinstance(o, (_dt.datetime, _dt.date)):
        return o.isoformat()
    return str(o)


def dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` with :func:`json_default` for numpy, quantities, paths and datetimes."""
    return json.dumps(obj, default=json_default, **kwargs)


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Return the hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


class atomic_path:
    """Context manager yielding a temporary path beside ``target``; renamed onto it on success.

    Writers that need a file name (NixIO, NWB, matplotlib) write to the temporary path; on an
    exception the temporary file is removed and ``target`` is untouched.
    """

    def __init__(self, target: str | os.PathLike):
        self.target = Path(target)
        self.tmp: Path | None = None

    def __enter__(self) -> Path:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{self.target.name}.", suffix=".part" + self.target.suffix,
                                    dir=self.target.parent)
        os.close(fd)
        os.unlink(name)  # writers such as h5py refuse to open an existing empty file
        self.tmp = Path(name)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self.tmp is None:  # __enter__ never ran
            return False
        if exc_type is None:
            os.replace(self.tmp, self.target)
        elif self.tmp.exists():
            self.tmp.unlink()
        return False


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; returns the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def read_text_or_file(text_or_path: str | os.PathLike) -> str:
    """JSON text as given, or the contents of the file it names (JSON text starts with ``{`` or ``[``)."""
    if isinstance(text_or_path, os.PathLike):
        return Path(text_or_path).read_text()
    text = str(text_or_path)
    if text.lstrip()[:1] in ("{", "["):
        return text
    return Path(text).read_text()

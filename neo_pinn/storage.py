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
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import OutputPathError

__all__ = ["atomic_write_text", "atomic_write_bytes", "atomic_path", "sha256_of", "json_default", "dumps",
           "read_text_or_file", "same_file", "check_outputs"]


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


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file (the same inode when both exist, else the same resolved path)."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.expanduser().resolve() == b.expanduser().resolve()


def check_outputs(outputs: Mapping[str, str | os.PathLike | None], inputs: Sequence[str | os.PathLike], *,
                  overwrite: bool = False, overwrite_hint: str = "--overwrite") -> None:
    """Check every output path before long work starts: nothing is lost and nothing fails after the work.

    Parameters
    ----------
    outputs : mapping
        What names each output (e.g. the flag ``"--json"``) → its path; None entries are skipped.
    inputs : sequence of path
        Files the work reads: never an output.
    overwrite : bool
        Whether existing outputs may be replaced.
    overwrite_hint : str
        How the user allows replacing (a flag or a keyword), named in the message.

    Raises
    ------
    OutputPathError
        An output is an input, two outputs are one file, an output exists (without ``overwrite``), is a folder,
        or its folder is missing or not writable.
    """
    given = [(name, Path(p)) for name, p in outputs.items() if p is not None]
    for k, (name, path) in enumerate(given):
        for src in inputs:
            if same_file(path, src):
                raise OutputPathError(f"{name} {path} is an input of this run; inputs are never changed. "
                                      "Choose a new file name.")
        for other, opath in given[:k]:
            if same_file(path, opath):
                raise OutputPathError(f"{other} and {name} both name {path}; give each output its own file.")
        if path.is_dir():
            raise OutputPathError(f"{name} {path} is a folder; give a file name.")
        if path.exists() and not overwrite:
            raise OutputPathError(f"{name} {path} exists; choose a new file name or pass {overwrite_hint}.")
        folder = path.expanduser().resolve().parent
        if not folder.is_dir():
            raise OutputPathError(f"The folder of {name} {path} does not exist; create it first.")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise OutputPathError(f"The folder of {name} {path} is not writable; choose another place.")

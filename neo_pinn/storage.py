"""Files on disk, for every layer: JSON text, atomic writes, content hashes and the outputs of a run.

Readers (problems, recordings) and writers (results, reports, Neo files) share these; input files are
only ever read, outputs are written to a temporary file beside the target and renamed onto it.

Nothing is lost (:class:`RunOutputs`): every output of a command is checked before the work, locked against
a second process writing it (``.NAME.neo-pinn.lock`` beside it, holding the writer's pid), written to a
hidden temporary file in its folder (``.NAME.neo-pinn-PID-XXXX.part.SUFFIX``) and renamed onto its name
with the others at the end — all appear or none does. Temporary files and locks of a process that died
(its pid is gone) are removed by the next run writing the same output.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import contextlib
import os
import re
import secrets
import signal
import stat
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from .errors import InputFormatError, InputPathError, OutputPathError

__all__ = ["atomic_write_text", "atomic_write_bytes", "atomic_path", "sha256_of", "json_default", "dumps",
           "read_text_or_file", "same_file", "check_outputs", "check_input_file", "read_json_object",
           "temp_path_for", "final_path_of", "pid_alive", "remove_stale_temps", "OutputLock", "RunOutputs",
           "LOCK_SUFFIX", "Terminated", "sigterm_raises"]

#: what marks neo_pinn's temporary files: ``.NAME.neo-pinn-PID-TOKEN.part.SUFFIX`` beside the target NAME
_TEMP_TAG = ".neo-pinn-"
_TEMP_RE = re.compile(r"^\.(?P<name>.+?)\.neo-pinn-(?P<pid>\d+)-[0-9a-f]+\.(?:part|old)")
#: a lock file is ``.NAME`` + this, beside the output NAME
LOCK_SUFFIX = ".neo-pinn.lock"
#: a lock file still empty after this many seconds lost its writer between creating and filling it
_EMPTY_LOCK_GRACE_S = 10.0


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


def temp_path_for(target: str | os.PathLike, kind: str = "part") -> Path:
    """A fresh hidden path beside ``target`` for writing it: ``.NAME.neo-pinn-PID-TOKEN.part.SUFFIX``.

    The path does not exist (writers such as h5py refuse an existing empty file); it keeps the target's
    suffix (writers choose their format by it) and names this process, so a later run can tell a file left
    by a killed process (:func:`remove_stale_temps`).

    Parameters
    ----------
    target : path
        The file the temporary one will become.
    kind : {"part", "old"}
        ``part`` for the new content, ``old`` for a copy of the previous file kept until a run commits.

    Returns
    -------
    pathlib.Path
    """
    target = Path(target)
    return target.with_name(f".{target.name}{_TEMP_TAG}{os.getpid()}-{secrets.token_hex(4)}.{kind}{target.suffix}")


def final_path_of(path: str | os.PathLike) -> Path:
    """The file a temporary path of :func:`temp_path_for` becomes (``path`` itself when it is not one)."""
    path = Path(path)
    m = _TEMP_RE.match(path.name)
    return path.with_name(m["name"]) if m else path


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (one owned by another user counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _temps_of(target: Path) -> Iterator[tuple[Path, int]]:
    """Temporary files of ``target`` (and of its temporary files) in its folder, with the pid that made them."""
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return
    for entry in entries:
        m = _TEMP_RE.match(entry.name)
        # ".NAME.neo-pinn-…", or a writer's own temporary file of a run's one: "..NAME.neo-pinn-…part.neo-pinn-…"
        if m is not None and m["name"] in (target.name, "." + target.name):
            yield Path(entry.path), int(m["pid"])


def remove_stale_temps(target: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of ``target`` left by processes that no longer run (killed with SIGKILL).

    Returns
    -------
    list of pathlib.Path
        The files removed.
    """
    removed = []
    for path, pid in _temps_of(Path(target)):
        if not pid_alive(pid):
            try:
                path.unlink()
                removed.append(path)
            except OSError:
                pass
    return removed


class atomic_path:
    """Context manager yielding a temporary path beside ``target``; renamed onto it on success.

    Writers that need a file name (NixIO, NWB, matplotlib) write to the temporary path; on an
    exception (KeyboardInterrupt included) the temporary file is removed and ``target`` is untouched.
    """

    def __init__(self, target: str | os.PathLike):
        self.target = Path(target)
        self.tmp: Path | None = None

    def __enter__(self) -> Path:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.target)
        self.tmp = temp_path_for(self.target)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self.tmp is None:  # __enter__ never ran
            return False
        try:
            if exc_type is None:
                os.replace(self.tmp, self.target)
        finally:  # an exception, or a rename that failed (target is a folder, read-only): nothing left behind
            if self.tmp.exists():  # after a successful rename it no longer does
                with contextlib.suppress(OSError):
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


def check_input_file(path: str | os.PathLike, what: str = "Input file") -> Path:
    """Refuse an input that is missing or not a regular file, before anything opens it.

    Opening a FIFO blocks until something writes to it, and a folder or a device file is never a recording
    or a result: each is refused here with a message saying what to give instead.

    Parameters
    ----------
    path : path
        The file a command or function is about to read.
    what : str
        What the file is, for the message (e.g. ``"Recording file"``).

    Returns
    -------
    pathlib.Path
        ``path``, with ``~`` expanded.

    Raises
    ------
    InputPathError
        ``path`` does not exist, or is a folder, FIFO, socket or device.
    """
    path = Path(path).expanduser()
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise InputPathError(f"{what} {str(path)!r} does not exist; check the path (relative paths start at "
                             f"{os.getcwd()!r}).") from None
    except OSError as exc:
        raise InputPathError(f"{what} {str(path)!r} cannot be read ({exc.strerror or exc}); check its "
                             "permissions.") from None
    if not stat.S_ISREG(mode):
        kind = ("a folder" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
                else "a device file" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "a special file")
        raise InputPathError(f"{what} {str(path)!r} is not a regular file (it is {kind}); give the path of a file.")
    return path


def read_json_object(path: str | os.PathLike, what: str = "JSON file", hint: str = "") -> dict:
    """The JSON object in a file, or a typed error saying what is wrong with the file.

    Parameters
    ----------
    path : path
        The file.
    what : str
        What the file is, for the message (e.g. ``"Result file"``).
    hint : str
        What to give instead, appended to the message (e.g. ``"; give the file written by ..."``).

    Returns
    -------
    dict

    Raises
    ------
    InputPathError
        The file is missing, not a regular file or unreadable (:func:`check_input_file`).
    InputFormatError
        Not UTF-8, not JSON (garbage, truncated) or JSON that is not an object.
    """
    path = check_input_file(path, what)
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except ValueError as exc:  # bad UTF-8, truncated or no JSON
        why = " ".join(str(exc).split())[:100]
        raise InputFormatError(f"{what} {path} is not readable JSON ({why}){hint}.") from None
    except OSError as exc:
        raise InputPathError(f"{what} {path} cannot be read ({exc.strerror or exc}){hint}.") from None
    if not isinstance(data, dict):
        raise InputFormatError(f"{what} {path} holds a JSON {type(data).__name__}, not an object{hint}.")
    return data


class OutputLock:
    """An exclusive claim on one output path, held by this process while it writes that output.

    The claim is a file ``.NAME.neo-pinn.lock`` beside the output, created with ``O_CREAT | O_EXCL`` and
    holding this process's id. A second process wanting the same output finds it and refuses with that id; a
    lock whose process no longer runs (killed) is stale and taken over.

    Parameters
    ----------
    target : path
        The output file.
    label : str
        What names the output (a flag such as ``"--json"``), for the message.
    """

    def __init__(self, target: str | os.PathLike, label: str = "The output"):
        self.target = Path(target)
        self.label = label
        self.path = self.target.with_name(f".{self.target.name}{LOCK_SUFFIX}")
        self.held = False

    def _holder(self) -> int | None:
        """The pid written in the lock file; None when it is empty or unreadable (being written, or broken)."""
        try:
            text = self.path.read_text().strip()
        except (OSError, UnicodeDecodeError):
            return None
        return int(text) if text.isdigit() else None

    def _refuse(self, pid: int | None) -> None:
        who = f"another process (pid {pid})" if pid is not None else "another process"
        raise OutputPathError(f"{self.label} {self.target} is being written by {who}; wait until it has finished "
                              f"or choose another file name (if no such process runs, remove {self.path}).")

    def _take_over_stale(self, pid: int | None) -> bool:
        """Remove a lock left by a dead process; False when it turned out not to be stale any more."""
        aside = self.path.with_name(f"{self.path.name}.stale-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            os.rename(self.path, aside)  # only one of two processes taking over the same stale lock gets it
        except FileNotFoundError:
            return True  # already gone: try again to create ours
        try:
            moved = aside.read_text().strip()
        except OSError:
            moved = ""
        if moved != ("" if pid is None else str(pid)):  # a live process locked in between: put its lock back
            try:
                os.link(aside, self.path)
            except OSError:
                pass
            aside.unlink(missing_ok=True)
            return False
        aside.unlink(missing_ok=True)
        return True

    def acquire(self) -> "OutputLock":
        """Take the lock, taking over a stale one.

        Raises
        ------
        OutputPathError
            Another live process holds it, or the folder refuses a new file.
        """
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pid = self._holder()
                if pid is None:
                    try:
                        fresh = time.time() - self.path.stat().st_mtime < _EMPTY_LOCK_GRACE_S
                    except OSError:
                        continue
                    if fresh:  # its writer is between creating it and writing its pid
                        self._refuse(None)
                elif pid_alive(pid):
                    self._refuse(pid)
                if not self._take_over_stale(pid):
                    self._refuse(self._holder())
                continue
            except OSError as exc:
                raise OutputPathError(f"Cannot write beside {self.label} {self.target} ({exc.strerror or exc}); "
                                      "choose a writable folder.") from None
            with os.fdopen(fd, "w") as fh:
                fh.write(f"{os.getpid()}\n")
            self.held = True
            return self
        self._refuse(self._holder())
        return self  # pragma: no cover - _refuse raises

    def release(self) -> None:
        """Remove the lock file (only when this object holds it)."""
        if self.held:
            self.held = False
            if self._holder() == os.getpid():
                self.path.unlink(missing_ok=True)

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> bool:
        self.release()
        return False


class RunOutputs:
    """All outputs of one run, written so that nothing is lost: all appear together, or none does.

    On entering, every output is checked (:func:`check_outputs`), locked against other processes
    (:class:`OutputLock`), checked again (another run may have finished it meanwhile), and temporary files
    left by killed runs are removed. Writers write to :meth:`temp`; on a clean exit every written temporary
    file is renamed onto its output. If one rename fails, the outputs already renamed are removed and the
    files they replaced are put back. On any exception (KeyboardInterrupt and the SIGTERM exception of the
    command line included) the temporary files are removed and no output changes. Locks are always released.

    Parameters
    ----------
    outputs : mapping
        What names each output (a flag such as ``"--json"``) → its path; None entries are skipped.
    inputs : sequence of path
        Files the run reads; never an output.
    overwrite : bool
        Whether existing outputs may be replaced.
    overwrite_hint : str
        How the user allows replacing, named in the message.

    Examples
    --------
    >>> with RunOutputs({"--json": "r.json"}, ["cell.abf"]) as run:   # doctest: +SKIP
    ...     Path(run.temp("--json")).write_text("{}")
    """

    def __init__(self, outputs: Mapping[str, str | os.PathLike | None], inputs: Sequence[str | os.PathLike] = (), *,
                 overwrite: bool = False, overwrite_hint: str = "--overwrite"):
        self.targets = {name: Path(p) for name, p in outputs.items() if p is not None}
        self.inputs = list(inputs)
        self.overwrite = overwrite
        self.overwrite_hint = overwrite_hint
        self._temps: dict[str, Path] = {}
        self._locks: list[OutputLock] = []

    def _check(self) -> None:
        check_outputs(self.targets, self.inputs, overwrite=self.overwrite, overwrite_hint=self.overwrite_hint)

    def __enter__(self) -> "RunOutputs":
        self._check()
        try:
            for name, target in self.targets.items():
                self._locks.append(OutputLock(target, name).acquire())
            self._check()
            for target in self.targets.values():
                remove_stale_temps(target)
        except BaseException:
            self._release()
            raise
        return self

    def temp(self, name: str) -> Path:
        """The temporary path the writer of output ``name`` writes to (the same path on every call)."""
        if name not in self._temps:
            self._temps[name] = temp_path_for(self.targets[name])
        return self._temps[name]

    def _commit(self) -> None:
        missing = [n for n, tmp in self._temps.items() if not tmp.exists()]
        if missing:
            raise OutputPathError(f"{missing[0]} {self.targets[missing[0]]} was not written; no output of this "
                                  "run was changed.")
        done: list[tuple[Path, Path | None]] = []
        try:
            for name, tmp in self._temps.items():
                target = self.targets[name]
                backup = None
                try:
                    if target.exists():  # kept until every output is in place, to put back if one fails
                        backup = temp_path_for(target, "old")
                        try:
                            os.link(target, backup)  # the target stays in place meanwhile
                        except OSError:
                            os.replace(target, backup)
                    os.replace(tmp, target)
                except BaseException:
                    if backup is not None:
                        if target.exists():
                            backup.unlink(missing_ok=True)
                        else:
                            os.replace(backup, target)
                    raise
                done.append((target, backup))
        except BaseException:
            for target, backup in reversed(done):
                if backup is not None:
                    os.replace(backup, target)
                else:
                    target.unlink(missing_ok=True)
            for _, backup in done:
                if backup is not None:
                    backup.unlink(missing_ok=True)
            raise
        for _, backup in done:
            if backup is not None:
                backup.unlink(missing_ok=True)

    def _release(self) -> None:
        for lock in reversed(self._locks):
            lock.release()
        self._locks.clear()

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc_type is None:
                self._commit()
        finally:
            for name, tmp in self._temps.items():
                # with the writers' own temporary files of this process (they remove them unless interrupted)
                for path in [tmp, *(p for p, pid in _temps_of(self.targets[name]) if pid == os.getpid())]:
                    try:
                        path.unlink(missing_ok=True)
                    except OSError:
                        pass
            self._release()
        return False


class Terminated(BaseException):
    """SIGTERM as an exception (like KeyboardInterrupt for SIGINT), so that cleanup runs: temporary files and locks
    of :class:`RunOutputs` are removed on the way out. Raised only inside :func:`sigterm_raises`."""


def _raise_terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def sigterm_raises():
    """Within this block SIGTERM raises :class:`Terminated` in the main thread; the old handler comes back after.

    In another thread (where Python cannot set signal handlers) the block runs unchanged.
    """
    old = None
    if threading.current_thread() is threading.main_thread():
        with contextlib.suppress(ValueError, OSError):
            old = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)

"""Run one case of the bad-input corpus and classify what happened.

A case (:class:`Case`) writes its input files into a folder of its own, then runs an action: a ``neo-pinn``
command line (in this process through :func:`neo_pinn.cli.main`, or in a subprocess for cases that may block
in C code or exhaust memory) or a Python callable. What happened is one of :data:`OUTCOMES`:

``error``
    A clear refusal: a :class:`~neo_pinn.errors.NeoPinnError` (Python), or exit status 4 or 2 with an ``error:``
    message and no traceback (command line); a message of more than one line is an error that does not pass.
``flagged``
    The fit ran and says it failed or needs care (``status`` failed/warning; exit status 3 on the command line).
``ok``
    The action succeeded and the case's own check of its answer passed.
``traceback``, ``hang``, ``data loss``, ``silent-wrong``
    The four outcomes that must never happen (:data:`BAD_OUTCOMES`): an unexpected exception, a printed
    traceback or the command line's "internal error" (exit status 1: a bug caught at the top); no answer within the case's time limit; an input changed, a pre-existing file changed that the
    case does not allow to change, a temporary (``.part``) file or the partial output of a failed run left
    behind; success without a flag where the case expects an error or a flag, or a wrong answer.
"""

from __future__ import annotations

import io
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from ..errors import NeoPinnError
from ..storage import sha256_of

__all__ = ["Case", "Observation", "OUTCOMES", "BAD_OUTCOMES", "run_case", "outcome_table", "CaseTimeout"]

#: every outcome the runner can observe, the good ones first
OUTCOMES = ("error", "flagged", "ok", "traceback", "hang", "data loss", "silent-wrong")
#: outcomes that must never happen
BAD_OUTCOMES = ("traceback", "hang", "data loss", "silent-wrong")
#: exit status of the command line: internal error (a bug), usage (argparse), fit failed its verdict, bad input
EXIT_INTERNAL, EXIT_USAGE, EXIT_FIT_FAILED, EXIT_BAD_INPUT = 1, 2, 3, 4
#: address-space limit of an isolated case (bytes): a runaway allocation fails instead of swapping the machine
ISOLATED_MEMORY = 6 << 30


class CaseTimeout(BaseException):
    """Raised by the alarm when an in-process case exceeds its time limit (a BaseException, so that the
    code under test cannot swallow it with ``except Exception``)."""


@dataclass(frozen=True)
class Case:
    """One bad input and what the package must do with it.

    Parameters
    ----------
    id : str
        Unique, readable name (the pytest id).
    group : str
        Class of problem (outputs, silently wrong, paths, numbers, names, specs, api, ...).
    action : tuple of str or callable
        ``neo-pinn`` arguments (``{d}`` stands for the case's folder, other ``{key}`` for what ``build``
        returns; relative paths start in the case's folder), or a callable of the folder.
    expect : str or tuple of str
        The correct outcome(s): ``"error"``, ``"flagged"`` or ``"ok"``.
    build : callable, optional
        Writes the case's input files into the folder; may return placeholders for ``action``.
    exit_code : int, optional
        Expected exit status of a command line error (default 4, bad input; 2 is for argparse usage errors).
    exception : type, optional
        Expected exception class of a Python error (default :class:`NeoPinnError`).
    match : str, optional
        Regular expression (case-insensitive) the error message or the flag must match: it names the problem.
    may_write : tuple of str
        Files (relative to the folder) the action may create or replace.
    check : callable, optional
        ``check(folder, observation)``: None when the answer is right, else what is wrong (a wrong answer of an
        ``ok`` case is silent-wrong; an error or flag that fails its check does not pass).
    isolate : bool
        Run the command line in a subprocess (memory-limited) instead of in this process.
    timeout_s : float
        Time limit (seconds) before the case counts as a hang.
    """

    id: str
    group: str
    action: tuple[str, ...] | Callable[[Path], Any]
    expect: str | tuple[str, ...]
    build: Callable[[Path], Mapping[str, str] | None] | None = None
    exit_code: int | None = None
    exception: type[BaseException] = NeoPinnError
    match: str | None = None
    may_write: tuple[str, ...] = ()
    check: Callable[[Path, "Observation"], str | None] | None = None
    isolate: bool = False
    timeout_s: float = 60.0

    @property
    def expected(self) -> tuple[str, ...]:
        """The correct outcomes as a tuple."""
        return (self.expect,) if isinstance(self.expect, str) else tuple(self.expect)

    @property
    def is_cli(self) -> bool:
        """Whether the action is a command line."""
        return isinstance(self.action, tuple)


@dataclass
class Observation:
    """What one run of a case did.

    Attributes
    ----------
    outcome : str
        One of :data:`OUTCOMES`.
    detail : str
        Why this outcome (the error line, the changed file, the missing flag ...).
    exit_code : int or None
        Exit status of a command line.
    stdout, stderr : str
        What the action printed.
    exception : BaseException or None
        What a Python action (or the command line, in process) raised.
    value : object
        What a Python action returned.
    seconds : float
        Wall time of the action.
    hung : bool
        Whether the action ran past the case's time limit.
    mismatch : str
        Empty when the case passed; else how the observation differs from the case's expectation.
    files : dict
        Relative path → sha256 of every file in the case's folder after the action.
    """

    case_id: str
    outcome: str = "ok"
    detail: str = ""
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    exception: BaseException | None = None
    value: Any = None
    seconds: float = 0.0
    hung: bool = False
    mismatch: str = ""
    files: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Whether the observed outcome is the expected one, with the expected status and message."""
        return not self.mismatch

    @property
    def message(self) -> str:
        """The error or flag text: the exception's, or the ``error:`` lines and verdict of a command line."""
        if self.exception is not None:
            return str(self.exception)
        lines = [ln for ln in self.stderr.splitlines() if "error:" in ln]
        return "\n".join(lines) if lines else (self.stdout + "\n" + self.stderr).strip()


# ------------------------------------------------------------------------------------------ running
def _snapshot(folder: Path) -> dict[str, str]:
    """Relative path → sha256 of every regular file below ``folder`` (FIFOs and links by kind, never opened)."""
    out: dict[str, str] = {}
    for root, dirs, files in os.walk(folder):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, folder)
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                out[rel] = "link:" + os.readlink(path)
            elif stat.S_ISREG(mode):
                try:
                    out[rel] = sha256_of(path)
                except OSError as exc:  # unreadable: its kind still tells a change
                    out[rel] = f"unreadable:{exc.errno}"
            else:
                out[rel] = f"special:{stat.S_IFMT(mode)}"
    return out


def _alarm(signum, frame):  # noqa: ARG001 - signal handler signature
    raise CaseTimeout()


class _Captured:
    """stdout (UTF-8, strict like a terminal's) and stderr swapped in for an in-process run."""

    def __init__(self):
        self.out, self.err = io.BytesIO(), io.BytesIO()
        self.stdout = io.TextIOWrapper(self.out, encoding="utf-8", errors="strict", write_through=True)
        self.stderr = io.TextIOWrapper(self.err, encoding="utf-8", errors="backslashreplace", write_through=True)

    def texts(self) -> tuple[str, str]:
        for s in (self.stdout, self.stderr):
            try:
                s.flush()
            except (UnicodeError, ValueError):
                pass
        return (self.out.getvalue().decode("utf-8", "backslashreplace"),
                self.err.getvalue().decode("utf-8", "backslashreplace"))


def _in_process(obs: Observation, call: Callable[[], Any], folder: Path, timeout_s: float) -> None:
    """Run ``call`` in ``folder`` with captured output and an alarm; fill ``obs``."""
    cap = _Captured()
    old = (sys.stdout, sys.stderr, os.getcwd())
    # the alarm needs the main thread; elsewhere (a threaded test runner) the case runs without a time limit
    timed = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGALRM, _alarm) if timed else None
    if timed:
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        sys.stdout, sys.stderr = cap.stdout, cap.stderr
        os.chdir(folder)
        obs.value = call()
    except CaseTimeout:
        obs.hung = True
    except SystemExit as exc:  # argparse usage errors and --version
        code = exc.code
        obs.exit_code = 0 if code is None else code if isinstance(code, int) else 1
        if not isinstance(code, (int, type(None))):
            print(code, file=cap.stderr)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - classifying every exception is the point of the corpus
        obs.exception = exc
        if not isinstance(exc, NeoPinnError):
            traceback.print_exception(exc, file=cap.stderr)
    finally:
        if timed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        sys.stdout, sys.stderr = old[0], old[1]
        os.chdir(old[2])
        obs.stdout, obs.stderr = cap.texts()


def _limit_memory() -> None:  # pragma: no cover - runs in the child
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (ISOLATED_MEMORY, ISOLATED_MEMORY))


def _subprocess(obs: Observation, argv: list[str], folder: Path, timeout_s: float) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    try:
        proc = subprocess.run([sys.executable, "-m", "neo_pinn.cli", *argv], cwd=folder, capture_output=True,
                              timeout=timeout_s, env=env, preexec_fn=_limit_memory)
    except subprocess.TimeoutExpired as exc:
        obs.hung = True
        obs.stdout = (exc.stdout or b"").decode("utf-8", "backslashreplace")
        obs.stderr = (exc.stderr or b"").decode("utf-8", "backslashreplace")
        return
    obs.exit_code = proc.returncode
    obs.stdout = proc.stdout.decode("utf-8", "backslashreplace")
    obs.stderr = proc.stderr.decode("utf-8", "backslashreplace")


def _argv(case: Case, subs: Mapping[str, str]) -> list[str]:
    out = []
    for arg in case.action:
        for key, value in subs.items():
            arg = arg.replace("{" + key + "}", value)
        out.append(arg)
    return out


def _restore_permissions(folder: Path) -> None:
    """Make every folder below ``folder`` writable again (a case may have made one read-only)."""
    for root, dirs, _ in os.walk(folder):
        for d in dirs:
            p = os.path.join(root, d)
            if not os.path.islink(p):
                os.chmod(p, 0o755)


def run_case(case: Case, folder: str | os.PathLike) -> Observation:
    """Build a case's inputs in ``folder``, run its action and classify the outcome.

    Parameters
    ----------
    case : Case
    folder : path
        An empty folder of the case's own (created when missing).

    Returns
    -------
    Observation
        With ``outcome`` (one of :data:`OUTCOMES`) and ``mismatch`` (empty when the case passed).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    built = case.build(folder) if case.build else None
    subs = {"d": str(folder)} | (dict(built) if isinstance(built, Mapping) else {})
    obs = Observation(case.id)
    before = _snapshot(folder)
    start = time.perf_counter()
    try:
        if not case.is_cli:
            _in_process(obs, lambda: case.action(folder), folder, case.timeout_s)
        elif case.isolate:
            _subprocess(obs, _argv(case, subs), folder, case.timeout_s)
        else:
            from ..cli import main

            _in_process(obs, lambda: main(_argv(case, subs)), folder, case.timeout_s)
            if obs.exit_code is None and obs.exception is None and not obs.hung:
                obs.exit_code = int(obs.value or 0)
    finally:
        obs.seconds = time.perf_counter() - start
        _restore_permissions(folder)
    obs.files = _snapshot(folder)
    obs.outcome, obs.detail = _classify(case, obs, folder, before)
    obs.mismatch = _judge(case, obs, folder)
    return obs


# ------------------------------------------------------------------------------------------ classifying
_TEMP = re.compile(r"\.part|^\.|\.tmp$|~$")


def _data_loss(case: Case, obs: Observation, before: Mapping[str, str], failed: bool) -> str:
    after = obs.files
    for rel, sha in before.items():
        if rel in case.may_write:
            continue
        if rel not in after:
            return f"{rel} was deleted"
        if after[rel] != sha:
            return f"{rel} was changed"
    for rel in sorted(set(after) - set(before)):
        if _TEMP.search(os.path.basename(rel)):
            return f"temporary file {rel} left behind"
        if failed and rel not in case.may_write:
            return f"the failed run left {rel} behind"
    return ""


def _one_line_error(stderr: str) -> str | None:
    """The ``error:`` line of a command line's stderr when it is its last line, else None."""
    lines = [ln for ln in stderr.replace("\r", "\n").splitlines() if ln.strip()]
    if lines and ("error:" in lines[-1] or "internal error" in lines[-1]):
        return lines[-1]
    return None


def _flag_of(obs: Observation) -> str | None:
    """``failed``/``warning`` when the run reports a fit that failed or warned, else None."""
    status = getattr(obs.value, "status", None)
    if isinstance(status, str):
        return status if status in ("failed", "warning") else None
    m = re.search(r"^verdict: (failed|warning)", obs.stdout, re.M)
    return m.group(1) if m else None


def _classify(case: Case, obs: Observation, folder: Path, before: Mapping[str, str]) -> tuple[str, str]:
    if obs.hung:
        return "hang", f"no answer within {case.timeout_s:g} s"
    failed = obs.exception is not None or obs.exit_code not in (None, 0, EXIT_FIT_FAILED)
    loss = _data_loss(case, obs, before, failed)
    if loss:
        return "data loss", loss
    if obs.exception is not None:
        exc = obs.exception
        if isinstance(exc, NeoPinnError):
            return "error", f"{type(exc).__name__}: {exc}"
        return "traceback", f"{type(exc).__name__}: {exc}"[:300]
    if "Traceback (most recent call last)" in obs.stderr:
        last = [ln for ln in obs.stderr.splitlines() if ln.strip()]
        return "traceback", (last[-1] if last else "traceback")[:300]
    if case.is_cli and obs.exit_code not in (0, EXIT_FIT_FAILED):
        line = _one_line_error(obs.stderr) or f"exit {obs.exit_code}: " + " | ".join(obs.stderr.split("\n")[-3:])
        if obs.exit_code == EXIT_INTERNAL or "internal error" in line:
            return "traceback", line[:300]  # a bug caught at the top: one line, but still a bug
        return "error", line
    flag = _flag_of(obs)
    if flag or obs.exit_code == EXIT_FIT_FAILED:
        return "flagged", f"fit {flag or 'failed'}"
    if "ok" not in case.expected:
        return "silent-wrong", f"succeeded without a flag; expected {' or '.join(case.expected)}"
    if case.check is not None:
        problem = case.check(folder, obs)
        if problem:
            return "silent-wrong", problem
    return "ok", ""


def _judge(case: Case, obs: Observation, folder: Path) -> str:
    if obs.outcome not in case.expected:
        return f"expected {' or '.join(case.expected)}, observed {obs.outcome}: {obs.detail}"
    if obs.outcome == "error":
        if case.is_cli:
            want = case.exit_code or EXIT_BAD_INPUT
            if obs.exit_code != want:
                return f"exit status {obs.exit_code}, expected {want} ({obs.detail})"
            if _one_line_error(obs.stderr) is None:
                return f"no one-line error message ends stderr: {obs.detail[:200]}"
        elif not isinstance(obs.exception, case.exception):
            return f"raised {type(obs.exception).__name__}, expected {case.exception.__name__}"
        elif "\n" in str(obs.exception).strip():
            return "the error message is not one line"
    text = obs.message if obs.outcome == "error" else obs.stdout + "\n" + obs.stderr
    if obs.outcome in ("error", "flagged") and case.match and not re.search(case.match, text, re.I | re.S):
        return f"the message does not name the problem (/{case.match}/): {obs.message[:200]}"
    if obs.outcome in ("error", "flagged") and case.check is not None:
        return case.check(folder, obs) or ""
    return ""


def outcome_table(observations: list[Observation]) -> str:
    """Counts by observed outcome, then the cases that did not pass, as plain text."""
    counts = {k: sum(o.outcome == k for o in observations) for k in OUTCOMES}
    lines = [f"{'outcome':<14}{'cases':>6}", *(f"{k:<14}{v:>6}" for k, v in counts.items()),
             f"{'total':<14}{len(observations):>6}"]
    failing = [o for o in observations if not o.passed]
    lines.append(f"\n{len(observations) - len(failing)} of {len(observations)} cases passed; not passing:"
                 if failing else f"\nall {len(observations)} cases passed")
    lines += [f"  {o.case_id}: {o.outcome} — {o.mismatch}"[:400] for o in failing]
    return "\n".join(lines)

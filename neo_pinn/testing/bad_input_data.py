"""Inputs of the bad-input corpus (:mod:`neo_pinn.testing.bad_inputs`): recordings, builders and answer checks.

Recordings are 150 ms of Morris–Lecar (SNLC preset) at 10 kHz under a 60 pA step from 20 to 130 ms, so the few
cases that reach a fit take a second or two with ``--backend lsq``, one start, started at the truth.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from .bad_input_runner import Observation

__all__ = ["RECORDINGS", "recording_bytes", "write_inputs", "files", "with_files", "readonly_folder", "result_json",
           "fitted_truth", "info_spikes", "printed", "wrote", "returned", "before_fit", "json_on_stdout", "nan_trace",
           "DIR", "FIFO", "Link", "FIT", "SIM", "EST", "STEP", "TRUTH", "GARBAGE", "NON_UTF8"]

DURATION_MS, RATE_HZ = 150.0, 10000.0
STEP = "step:amp=60pA,start=20ms,stop=130ms"
TRUTH = {"gCa": 4.0, "gK": 8.0}
#: a quick fit of two conductances, started at the truth
FIT = ("--model", "morris_lecar", "--backend", "lsq", "--free", "gCa,gK", "--init", "gCa=4,gK=8",
       "--option", "n_starts=1", "--option", "max_iter=30", "--seed", "0")
#: a quick simulation
SIM = ("simulate", "--model", "morris_lecar", "--duration", "50", "--rate", "10000")
#: the same fit through the Python API
EST = {"backend": "lsq", "free": ["gCa", "gK"], "init": dict(TRUTH), "backend_options": {"n_starts": 1, "max_iter": 30}}
GARBAGE = np.random.default_rng(16).integers(0, 256, 4096, dtype=np.uint8).tobytes()
NON_UTF8 = os.fsdecode(b"caf\xe9.nwb")  # a file name that is not UTF-8 (Latin-1 e-acute)


# ------------------------------------------------------------------------------------------ recordings
def _trace(kind: str, rate_hz: float = RATE_HZ):
    from ..api import synthetic_trace

    stim = "zero" if kind == "rest" else STEP
    tr, _ = synthetic_trace("morris_lecar", preset="snlc", stimulus=stim, duration=DURATION_MS, rate_hz=rate_hz)
    return tr


@lru_cache(maxsize=None)
def recording_bytes(kind: str) -> bytes:
    """The bytes of one corpus recording (see :data:`RECORDINGS`), made once per process.

    Parameters
    ----------
    kind : str
        A key of :data:`RECORDINGS`.

    Returns
    -------
    bytes
        An NWB file (or, for ``"abf"``, an ABF1 file without protocol, sampled at 20 kHz).
    """
    import dataclasses

    from ..io.synthetic_nwb import write_icephys_nwb
    from ..trace import Trace

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.nwb"
        if kind == "abf":
            import pyabf.abfWriter

            tr = _trace("cell", 20000.0)
            pyabf.abfWriter.writeABF1(tr.v[None, :], str(path), sampleRateHz=20000.0, units="mV")
            return path.read_bytes()
        base = _trace("rest" if kind == "inf" else "cell")
        if kind == "volts":
            base = dataclasses.replace(base, v=base.v / 1000.0)
        elif kind == "flat":
            base = dataclasses.replace(base, v=np.full_like(base.v, -65.0))
        elif kind == "tiny":
            base = Trace(t=base.t[:3], v=base.v[:3], i_ext=base.i_ext[:3])
        meta = {} if kind == "bare" else {"generator": "neo-pinn simulate", "model": "morris_lecar", "preset": "snlc",
                                          "parameters": {"gCa": 4.0, "gK": 8.0}}
        write_icephys_nwb(path, [base], metadata=meta, identifier=f"neo-pinn-corpus-{kind}",
                          session_start_time=_dt.datetime(2024, 1, 1, tzinfo=_dt.timezone.utc))
        bad = {"nan_late": (slice(1400, 1460), math.nan), "nan_mid": (slice(600, 610), math.nan),
               "inf_mid": (slice(600, 601), math.inf), "inf": (slice(700, 701), math.inf)}
        if kind in bad:
            import h5py

            where, value = bad[kind]
            with h5py.File(path, "r+") as f:
                f["acquisition/ic__sim__0/data"][where] = value
        return path.read_bytes()


#: corpus recordings: name → what it holds
RECORDINGS = {
    "cell": "Morris–Lecar SNLC, one 150 ms sweep at 10 kHz, 60 pA step 20–130 ms, ground truth in the file",
    "bare": "the same without ground truth metadata (a sidecar may give it)",
    "volts": "the same voltage in volts, labelled mV",
    "flat": "a flat -65 mV trace under the step",
    "tiny": "3 samples",
    "nan_late": "NaN from 140 ms on (outside a 0:130 window)",
    "nan_mid": "NaN at 60 ms",
    "inf_mid": "+inf at 60 ms",
    "inf": "a resting cell (no stimulus, no spike) with one +inf sample at 70 ms",
    "abf": "ABF1 at 20 kHz, voltage only (no protocol)",
}


class _Kind(str):
    pass


DIR = _Kind("<dir>")
FIFO = _Kind("<fifo>")


class Link(str):
    """A symbolic link to this target (relative to the case folder)."""


def _content(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, tuple):  # (recording, n): the first n bytes
        return recording_bytes(value[0])[: value[1]]
    if callable(value):
        return value()
    return recording_bytes(value)


def write_inputs(folder: Path, spec: Mapping[str, Any]) -> None:
    """Write a case's inputs: name → recording name, bytes, (recording, n bytes), callable, DIR, FIFO or Link."""
    for name, value in spec.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if value is DIR:
            path.mkdir()
        elif value is FIFO:
            os.mkfifo(path)
        elif isinstance(value, Link):
            os.symlink(value, path)
        else:
            path.write_bytes(_content(value))


def files(**spec: Any) -> Callable[[Path], None]:
    """A builder writing these inputs (keyword → file name; ``__`` in a keyword stands for ``.``)."""
    named = {k.replace("__", "."): v for k, v in spec.items()}
    return lambda folder: write_inputs(folder, named)


def with_files(spec: Mapping[str, Any], extra: Callable[[Path], Mapping[str, str] | None] | None = None):
    """A builder writing ``spec`` (file name → content) and then running ``extra``."""
    def build(folder: Path):
        write_inputs(folder, spec)
        return extra(folder) if extra else None
    return build


def readonly_folder(folder: Path) -> dict[str, str]:
    """``{ro}``: a folder nobody may write into (a chmod 555 folder, or a read-only system folder for root)."""
    ro = folder / "ro"
    ro.mkdir()
    os.chmod(ro, 0o555)
    for candidate in (ro, Path("/sys"), Path("/proc")):
        try:
            fd, probe = tempfile.mkstemp(dir=candidate)
        except OSError:
            return {"ro": str(candidate)}
        os.close(fd)
        os.unlink(probe)
    return {"ro": str(ro)}


def result_json(include_arrays: bool = True) -> bytes:
    """A small, valid result JSON (as ``fit --json`` writes) of an input ``cell.nwb``."""
    from ..result import EstimationResult, ParameterEstimate, SweepFit

    t = np.arange(200) * 0.1
    v = -65 + 20 * np.sin(t / 2)
    fit = SweepFit(sweep=0, t=t, v_observed=v, i_ext=np.where(t > 5, 60.0, 0.0),
                   states=np.column_stack([v + 0.1, 0.3 + 0.1 * np.cos(t)]), stimulus_source="nwb-stimulus",
                   source={"file": "cell.nwb", "sha256": "0" * 64})
    params = {"gCa": ParameterEstimate("gCa", 4.0, "nS", std=0.1, init=3.0, true_value=4.0),
              "C": ParameterEstimate("C", 20.0, "pF", free=False)}
    res = EstimationResult(model="morris_lecar", backend="lsq", parameters=params, state_names=("V", "n"),
                           state_units=("mV", "dimensionless"), fits=(fit,), provenance={"run_id": "corpus"})
    return res.to_json(include_arrays=include_arrays).encode()


def nan_trace(where: slice):
    """A corpus sweep (Morris–Lecar under the step, 150 ms) as a Trace whose voltage is NaN at ``where``."""
    import dataclasses

    tr = _trace("cell")
    v = tr.v.copy()
    v[where] = math.nan
    return dataclasses.replace(tr, v=v)


# ------------------------------------------------------------------------------------------ checks of ok cases
def _json_value(folder: Path, name: str, *keys: str) -> Any:
    d = json.loads((folder / name).read_text())
    for k in keys:
        d = d[k]
    return d


def fitted_truth(name: str = "r.json", rel: float = 0.05) -> Callable[[Path, Observation], str | None]:
    """Check of an ok fit: the result JSON ``name`` exists and its gCa, gK lie within ``rel`` of the truth."""
    def check(folder: Path, obs: Observation) -> str | None:
        if not (folder / name).is_file():
            return f"{name} was not written"
        for k, want in TRUTH.items():
            got = _json_value(folder, name, "parameters", k, "value")
            if got is None or abs(got - want) > rel * want:
                return f"{k} = {got}, the truth is {want}"
        return None
    return check


def info_spikes(want: int) -> Callable[[Path, Observation], str | None]:
    """Check of ``info --json``: the recording's spike count."""
    def check(folder: Path, obs: Observation) -> str | None:
        try:
            d = json.loads(obs.stdout)
        except json.JSONDecodeError:
            return "info --json did not print JSON"
        counts = [s.get("spike_count") for s in d.get("sweeps", [])]
        if d.get("total_spikes") not in (want, None) or any(c not in (want, None) for c in counts):
            return f"counted {d.get('total_spikes')} spike(s) (sweeps {counts}); the recording holds {want}"
        return None
    return check


def printed(pattern: str) -> Callable[[Path, Observation], str | None]:
    """Check that stdout matches a regular expression."""
    import re

    return lambda folder, obs: None if re.search(pattern, obs.stdout) else f"stdout lacks /{pattern}/"


def wrote(*names: str) -> Callable[[Path, Observation], str | None]:
    """Check that these files exist."""
    return lambda folder, obs: next((f"{n} was not written" for n in names if not (folder / n).exists()), None)


def before_fit(folder: Path, obs: Observation) -> str | None:
    """Check of a refused output: the refusal came before the fit (no fit summary was printed)."""
    return "the fit ran before the output was refused" if "fitted with" in obs.stdout else None


def json_on_stdout(folder: Path, obs: Observation) -> str | None:
    """Check of ``--json -``: stdout is one JSON result and nothing else."""
    try:
        d = json.loads(obs.stdout)
    except json.JSONDecodeError as exc:
        return f"stdout is not one JSON document ({exc})"
    return None if d.get("status") == "passed" else f"status {d.get('status')!r}"


def returned(test: Callable[[Any], str | None]) -> Callable[[Path, Observation], str | None]:
    """Check of a Python action's return value."""
    return lambda folder, obs: test(obs.value)

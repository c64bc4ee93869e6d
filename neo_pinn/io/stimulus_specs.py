"""Stimulus specifications and summaries of step protocols.

A :class:`StimulusSpec` is an injected current written as text — the form users pass on the command
line (``--stimulus``) or to :func:`neo_pinn.io.load_recording` (``stimulus=``) when a recording does not
hold its own stimulus, or to override it. Times in a spec are **ms since the start of the sweep** and
currents are pA (units may be written, e.g. ``0.1nA``, ``0.9s``).

Accepted forms (``parse_stimulus``)::

    zero                                     no injected current (alias: none)
    const:amp=60pA                           constant current (alias: constant)
    step:amp=48pA,start=100ms,stop=900ms     base + amp for start <= t < stop (start 0, stop inf,
                                             base 0 by default; optional base=...); start or stop
                                             is required (without either it would be a constant)
    ramp:start=100ms,stop=900ms,from=0pA,to=200pA
                                             linear from ``from`` at start to ``to`` at stop,
                                             base (default 0) outside
    pulses:amp=500pA,start=100ms,width=2ms,period=10ms,n=20
                                             n rectangular pulses (n omitted: unlimited), base outside
    csv:FILE  or a path ending in .csv       two columns t_ms,i_pA (an optional header line), each row
                                             held until the next, end values held outside the table

:func:`summarize_steps` turns a sampled current (a protocol or a recorded channel) into piecewise-
constant epochs; :func:`describe_steps` writes them as compact text; :func:`step_amplitudes` finds the
step that changes from sweep to sweep in a family of sweeps (the "steps -50 to +100 pA" of an I–V or
F–I protocol); :func:`compare_stimuli` is the tolerance test used to warn when two sources disagree. Those
summaries live in :mod:`neo_pinn.io.stimulus_steps` and are exported here too.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import StimulusError, UnitsError
from ..trace import zero_order_hold
from ..units import magnitude_in, parse_quantity
from .stimulus_steps import compare_stimuli, describe_step_family, describe_steps, step_amplitudes, summarize_steps

__all__ = [
    "StimulusSpec",
    "parse_stimulus",
    "summarize_steps",
    "describe_steps",
    "step_amplitudes",
    "describe_step_family",
    "compare_stimuli",
    "STIMULUS_SYNTAX",
    "STIMULUS_FORMS",
]

STIMULUS_SYNTAX = (
    "Accepted stimulus specs (times since sweep start; units optional, default pA and ms):\n"
    "  zero | none\n"
    "  const:amp=60pA\n"
    "  step:amp=48pA,start=100ms,stop=900ms[,base=0pA]\n"
    "  ramp:start=100ms,stop=900ms,from=0pA,to=200pA[,base=0pA]\n"
    "  pulses:amp=500pA,start=100ms,width=2ms,period=10ms[,n=20][,base=0pA]\n"
    "  csv:FILE  (or a path ending in .csv; columns t_ms,i_pA, optional header)"
)

#: the accepted forms on one line, for error messages (which are one line each)
STIMULUS_FORMS = ("accepted: zero | const:amp=60pA | step:amp=48pA,start=100ms,stop=900ms[,base=0pA] | "
                  "ramp:start=100ms,stop=900ms,from=0pA,to=200pA[,base=0pA] | "
                  "pulses:amp=500pA,start=100ms,width=2ms,period=10ms[,n=20][,base=0pA] | csv:FILE (t_ms,i_pA)")

# kind -> {parameter: (dimension, default or None if required)}
_KINDS: dict[str, dict[str, tuple[str, float | None]]] = {
    "zero": {},
    "const": {"amp": ("current", None)},
    "step": {"amp": ("current", None), "start": ("time", 0.0), "stop": ("time", math.inf),
             "base": ("current", 0.0)},
    "ramp": {"start": ("time", None), "stop": ("time", None), "from": ("current", None),
             "to": ("current", None), "base": ("current", 0.0)},
    "pulses": {"amp": ("current", None), "start": ("time", 0.0), "width": ("time", None),
               "period": ("time", None), "n": ("dimensionless", math.inf), "base": ("current", 0.0)},
    "csv": {},
}
_ALIASES = {"none": "zero", "constant": "const", "pulse": "pulses", "train": "pulses"}
_UNIT_OF = {"current": "pA", "time": "ms", "dimensionless": ""}
_ORDER = {"const": ("amp",), "step": ("amp", "start", "stop", "base"),
          "ramp": ("start", "stop", "from", "to", "base"),
          "pulses": ("amp", "start", "width", "period", "n", "base")}


def _fmt(x: float) -> str:
    if float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(float(x))


@dataclass(frozen=True)
class StimulusSpec:
    """An injected current described by a few numbers (see the module docstring for the forms).

    Parameters
    ----------
    kind : str
        ``"zero"``, ``"const"``, ``"step"``, ``"ramp"``, ``"pulses"`` or ``"csv"``.
    params : tuple of (str, float)
        Parameters in canonical units (pA for currents, ms for times), all of them, defaults filled in.
    path : str, optional
        The CSV file of a ``"csv"`` spec.
    table : tuple of two numpy.ndarray, optional
        The CSV columns (t in ms, current in pA), read once when the spec is parsed.

    Notes
    -----
    Calling the spec, ``spec(t_ms)``, returns the current in pA at times ``t_ms`` **measured from the
    start of the sweep** (numpy in → numpy out; a torch tensor in → a torch tensor out, same dtype and
    device).
    """

    kind: str
    params: tuple[tuple[str, float], ...] = ()
    path: str | None = None
    table: tuple[np.ndarray, np.ndarray] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise StimulusError(f"Unknown stimulus kind {self.kind!r}; {STIMULUS_FORMS}.")
        if self.kind == "csv" and self.table is None:
            raise StimulusError("A csv stimulus needs its table; build it with parse_stimulus('csv:FILE').")

    @classmethod
    def of(cls, kind: str, **params) -> "StimulusSpec":
        """A spec from keyword values: numbers in pA and ms, or quantities (rescaled; a wrong dimension raises).

        ``StimulusSpec.of("step", amp=0.06 * pq.nA, start=0.1 * pq.s, stop=0.9 * pq.s)`` is
        ``parse_stimulus("step:amp=60pA,start=100ms,stop=900ms")`` up to rounding; the same checks apply.

        Parameters
        ----------
        kind : str
            ``"zero"``, ``"const"``, ``"step"``, ``"ramp"`` or ``"pulses"`` (see the module docstring).
        **params : float or quantities.Quantity
            The kind's parameters (times since the sweep's start).

        Raises
        ------
        StimulusError, UnitsError
            An unknown kind or parameter, a missing one, or a quantity of the wrong dimension.
        """
        name = _ALIASES.get(str(kind).strip().lower(), str(kind).strip().lower())
        allowed = _KINDS.get(name)
        if allowed is None or name == "csv":
            raise StimulusError(f"Unknown stimulus kind {kind!r} for StimulusSpec.of; {STIMULUS_FORMS}.")
        items = []
        for key, value in params.items():
            if key not in allowed:
                raise StimulusError(f"{name!r} has no parameter {key!r} (it takes: {', '.join(allowed) or 'none'}).")
            unit = _UNIT_OF[allowed[key][0]] or "dimensionless"
            number = float(magnitude_in(value, unit, f"the stimulus' {key}"))
            items.append(f"{key}={'inf' if math.isinf(number) and number > 0 else repr(number)}"
                         f"{_UNIT_OF[allowed[key][0]] if math.isfinite(number) else ''}")
        return parse_stimulus(f"{name}:{','.join(items)}")

    # ------------------------------------------------------------------ access
    def get(self, name: str) -> float:
        """Return one parameter in canonical units (pA or ms)."""
        for key, value in self.params:
            if key == name:
                return value
        raise StimulusError(f"A {self.kind!r} stimulus has no parameter {name!r}.")

    def to_string(self) -> str:
        """Return the spec as text that :func:`parse_stimulus` reads back to an equal spec."""
        if self.kind == "zero":
            return "zero"
        if self.kind == "csv":
            return f"csv:{self.path}"
        parts = []
        defaults = _KINDS[self.kind]
        for key in _ORDER[self.kind]:
            value = self.get(key)
            default = defaults[key][1]
            if default is not None and value == default and not (self.kind == "step" and key == "start"):
                continue
            unit = "" if math.isinf(value) else _UNIT_OF[defaults[key][0]]
            parts.append(f"{key}={_fmt(value)}{unit}")
        return f"{self.kind}:" + ",".join(parts)

    def __str__(self) -> str:
        return self.to_string()

    def check_span(self, t_first: float, t_last: float, what: str = "the sweep") -> None:
        """Refuse a spec whose timed part (step, ramp, pulses) lies wholly outside a sweep's time span.

        Such a spec would inject only its base current: a step at 1000 ms on a 500 ms sweep is a typo (s for
        ms, or the wrong sweep), not a zero current.

        Parameters
        ----------
        t_first, t_last : float
            The sweep's first and last sample time, ms since its start (the spec's time).
        what : str
            The sweep, for the message (``"sweep 3"``).

        Raises
        ------
        StimulusError
            Naming the spec's times and the sweep's span.
        """
        if self.kind not in ("step", "ramp", "pulses"):
            return
        start = self.get("start")
        stop = self.get("stop") if self.kind != "pulses" else start + self.get("period") * self.get("n")
        if start <= t_last and stop > t_first:
            return
        raise StimulusError(
            f"The stimulus {self.to_string()!r} acts from {_fmt(start)} to {_fmt(stop)} ms, outside {what}, which "
            f"spans {t_first:.6g}–{t_last:.6g} ms (times in a spec count from the sweep's start): it would inject no "
            "step at all. Check the times and their units (e.g. start=0.1s is 100 ms).")

    # ------------------------------------------------------------------ evaluation
    def __call__(self, t):
        """Current in pA at times ``t`` (ms since sweep start); numpy or torch in, same kind out."""
        if type(t).__module__.split(".")[0] == "torch":
            return self._call_torch(t)
        t = np.asarray(t, dtype=float)
        return self._evaluate(t, np)

    def _call_torch(self, t):
        import torch

        if self.kind == "csv":
            out = self._evaluate(t.detach().cpu().double().numpy(), np)
            return torch.as_tensor(out, dtype=t.dtype if t.is_floating_point() else torch.float64,
                                   device=t.device)
        tt = t if t.is_floating_point() else t.double()
        return self._evaluate(tt, torch)

    def _evaluate(self, t, xp):
        zeros = xp.zeros_like(t)
        if self.kind == "zero":
            return zeros
        if self.kind == "csv":
            tab_t, tab_i = self.table
            return zero_order_hold(tab_t, tab_i, t)
        p = dict(self.params)
        if self.kind == "const":
            return zeros + p["amp"]
        if self.kind == "step":
            on = (t >= p["start"]) & (t < p["stop"])
            return zeros + p["base"] + p["amp"] * on
        if self.kind == "ramp":
            on = (t >= p["start"]) & (t < p["stop"])
            frac = (t - p["start"]) / (p["stop"] - p["start"])
            ramp = p["from"] + (p["to"] - p["from"]) * frac
            return xp.where(on, ramp, zeros + p["base"])
        # pulses
        rel = t - p["start"]
        k = xp.floor(rel / p["period"])
        phase = rel - k * p["period"]
        on = (rel >= 0) & (phase < p["width"]) & (k < p["n"])
        return zeros + p["base"] + p["amp"] * on

    def sample(self, t_ms) -> np.ndarray:
        """Float64 numpy current in pA at ``t_ms`` (ms since sweep start)."""
        return np.asarray(self(np.asarray(t_ms, dtype=float)), dtype=float)


# ---------------------------------------------------------------------- parsing
def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise StimulusError(f"Stimulus CSV {str(path)!r} does not exist; give an existing file with columns "
                            "t_ms,i_pA.")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise StimulusError(f"Stimulus CSV {path.name} is not text (UTF-8); write t_ms,i_pA pairs, one per "
                            "line.") from None
    rows: list[tuple[float, float]] = []
    for lineno, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        cells = [c for c in re.split(r"[,;\t ]+", text) if c]
        try:
            values = [float(c) for c in cells]
        except ValueError:
            if not rows:  # one header line is allowed
                continue
            raise StimulusError(f"{path.name}, line {lineno}: {text!r} is not two numbers (t_ms, i_pA).") \
                from None
        if len(values) < 2:
            raise StimulusError(f"{path.name}, line {lineno}: need two columns t_ms,i_pA, got {text!r}.")
        rows.append((values[0], values[1]))
    if len(rows) < 2:
        raise StimulusError(f"Stimulus CSV {path.name} holds fewer than two rows; write t_ms,i_pA pairs.")
    arr = np.asarray(rows, dtype=float)
    if not np.all(np.isfinite(arr)):
        raise StimulusError(f"Stimulus CSV {path.name} holds NaN or inf.")
    if np.any(np.diff(arr[:, 0]) <= 0):
        raise StimulusError(f"The times in stimulus CSV {path.name} must increase strictly.")
    return arr[:, 0].copy(), arr[:, 1].copy()


def parse_stimulus(spec) -> StimulusSpec:
    """Parse a stimulus spec.

    Parameters
    ----------
    spec : str, os.PathLike or StimulusSpec
        Text such as ``"step:amp=48pA,start=100ms,stop=900ms"`` (see the module docstring), a path to
        a CSV file (t_ms, i_pA), or an existing spec (returned unchanged).

    Returns
    -------
    StimulusSpec
        Parameters in pA and ms.

    Raises
    ------
    StimulusError
        The text is malformed; the message lists the accepted syntax.
    """
    if isinstance(spec, StimulusSpec):
        return spec
    if isinstance(spec, os.PathLike):
        path = Path(spec)
        return StimulusSpec("csv", path=str(path), table=_read_csv(path))
    if not isinstance(spec, str):
        raise StimulusError(f"Cannot read a stimulus from a {type(spec).__name__}; {STIMULUS_FORMS}.")
    text = spec.strip()
    if not text:
        raise StimulusError(f"Empty stimulus spec; {STIMULUS_FORMS}.")
    if text.lower().startswith("csv:"):
        path = Path(text[4:].strip())
        return StimulusSpec("csv", path=str(path), table=_read_csv(path))
    if text.lower().endswith(".csv"):
        path = Path(text)
        return StimulusSpec("csv", path=str(path), table=_read_csv(path))
    kind, _, rest = text.partition(":")
    kind = _ALIASES.get(kind.strip().lower(), kind.strip().lower())
    if kind not in _KINDS or kind == "csv":
        raise StimulusError(f"Unknown stimulus kind {text.partition(':')[0]!r} in {spec!r}; {STIMULUS_FORMS}.")
    allowed = _KINDS[kind]
    given: dict[str, float] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not eq or not value.strip():
            raise StimulusError(f"{item!r} in {spec!r} is not key=value; {STIMULUS_FORMS}.")
        if key not in allowed:
            names = ", ".join(allowed) or "none"
            raise StimulusError(f"{kind!r} has no parameter {key!r} (it takes: {names}); {STIMULUS_FORMS}.")
        if key in given:
            raise StimulusError(f"Parameter {key!r} given twice in {spec!r}.")
        dim = allowed[key][0]
        try:
            if value.strip().lower() in ("inf", "+inf") and key in ("stop", "n"):
                given[key] = math.inf
            else:
                given[key] = parse_quantity(value.strip(), kind=None if dim == "dimensionless" else dim,
                                            default_unit=None if dim != "dimensionless" else "dimensionless")
        except UnitsError as exc:
            unit = _UNIT_OF[dim] or "a plain number"
            raise StimulusError(f"Cannot read {key}={value!r} in {spec!r}: {exc} ({key} is a {dim}; "
                                f"e.g. {key}=10{_UNIT_OF[dim]} — {unit}); {STIMULUS_FORMS}.") from exc
    params = []
    for key, (dim, default) in allowed.items():
        if key in given:
            params.append((key, float(given[key])))
        elif default is None:
            raise StimulusError(f"{kind!r} stimulus {spec!r} lacks {key}=...; {STIMULUS_FORMS}.")
        else:
            params.append((key, float(default)))
    p = dict(params)
    if kind == "step" and "start" not in given and "stop" not in given:
        raise StimulusError(f"{spec!r} has neither start nor stop, so it would inject a constant current all sweep "
                            f"long: give the step's edges (e.g. step:amp={_fmt(p['amp'])}pA,start=100ms,stop=900ms), "
                            f"or write const:amp={_fmt(p['amp'])}pA for a constant current.")
    if kind in ("step", "ramp") and not p["stop"] > p["start"]:
        raise StimulusError(f"In {spec!r} stop must come after start.")
    if kind == "pulses":
        if not (p["width"] > 0 and p["period"] > 0):
            raise StimulusError(f"In {spec!r} width and period must be positive.")
        if not (p["n"] > 0 and (math.isinf(p["n"]) or float(p["n"]).is_integer())):
            raise StimulusError(f"In {spec!r} n must be a positive whole number.")
    for key, value in params:
        if math.isnan(value) or (math.isinf(value) and key not in ("stop", "n")):
            raise StimulusError(f"In {spec!r} {key} must be finite.")
    return StimulusSpec(kind, tuple(params))

"""Canonical units and the conversions at the edges.

Inside neo_pinn every number is a plain float in the canonical unit of its dimension:

=============  =====
dimension      unit
=============  =====
time           ms
voltage        mV
current        pA
capacitance    pF
conductance    nS
frequency      Hz
=============  =====

They are self-consistent (pF·mV/ms = pA, nS·mV = pA), so published per-area parameter sets
(µF/cm², mS/cm², µA/cm²) carry over number for number. :mod:`quantities` appears only here and
where Neo objects enter or leave (:mod:`neo_pinn.io.convert`).
"""

from __future__ import annotations

import re

import numpy as np
import quantities as pq

from .errors import ConfigurationError, UnitsError, UnphysiologicalVoltageError

__all__ = [
    "CANONICAL_UNITS",
    "dimension_of",
    "to_canonical",
    "parse_quantity",
    "canonical_unit",
    "PHYSIOLOGICAL_MV",
    "check_physiological_voltage",
    "magnitude_in",
    "as_quantity",
]

CANONICAL_UNITS: dict[str, str] = {
    "time": "ms",
    "voltage": "mV",
    "current": "pA",
    "capacitance": "pF",
    "conductance": "nS",
    "frequency": "Hz",
    "dimensionless": "dimensionless",
}

_PROBES = {kind: pq.Quantity(1.0, unit) for kind, unit in CANONICAL_UNITS.items()}


def _as_units(units) -> pq.Quantity:
    if isinstance(units, pq.Quantity):
        return pq.Quantity(1.0, units.dimensionality)
    text = str(units).strip()
    if text in ("", "1", "dimensionless", "none", "None"):
        return pq.Quantity(1.0, "dimensionless")
    text = text.replace("µ", "u").replace("μ", "u").replace("Ohm", "ohm")
    try:
        return pq.Quantity(1.0, text)
    except (LookupError, ValueError, SyntaxError) as exc:
        raise UnitsError(f"Unknown unit {units!r}; use SI symbols such as mV, pA, nA, ms, s, Hz.") from exc


def as_quantity(value, unit: str) -> pq.Quantity:
    """A number (or array) in ``unit`` as a :class:`quantities.Quantity` (how results leave neo_pinn).

    Parameters
    ----------
    value : float or array_like
        The magnitude, in ``unit``.
    unit : str
        A unit symbol (``"nS"``, ``"1/ms"``, ``"µM"``; empty or ``"dimensionless"`` for none).

    Returns
    -------
    quantities.Quantity

    Raises
    ------
    UnitsError
        ``unit`` is not a unit quantities knows.
    """
    return np.asarray(value, dtype=float) * _as_units(unit).units


def dimension_of(units) -> str | None:
    """Return the dimension name (``"voltage"``, ``"current"``, ...) of a unit, or None.

    Parameters
    ----------
    units : str or quantities.Quantity
        A unit symbol such as ``"mV"`` or a quantity whose dimensionality is used.

    Returns
    -------
    str or None
        A key of :data:`CANONICAL_UNITS`, or None when the unit has none of those dimensions.
    """
    try:
        probe = _as_units(units)
    except UnitsError:
        return None
    for kind, ref in _PROBES.items():
        try:
            probe.rescale(ref.units)
        except ValueError:
            continue
        return kind
    return None


def canonical_unit(kind: str) -> str:
    """Return the canonical unit symbol of a dimension name (e.g. ``"current"`` → ``"pA"``)."""
    try:
        return CANONICAL_UNITS[kind]
    except KeyError as exc:
        raise UnitsError(f"Unknown dimension {kind!r}; known: {', '.join(CANONICAL_UNITS)}.") from exc


def to_canonical(value, units=None, kind: str | None = None):
    """Convert a quantity (or a number with a unit) to a float array in canonical units.

    Parameters
    ----------
    value : quantities.Quantity, array_like or float
        The value; when it is a Quantity its own units are used and ``units`` must be None.
    units : str, optional
        Units of a plain ``value``.
    kind : str, optional
        Expected dimension (``"voltage"``, ``"current"``, ``"time"``, ...). A mismatch raises.

    Returns
    -------
    numpy.ndarray or float
        The magnitude in the canonical unit of its dimension (ms, mV, pA, pF, nS, Hz).
    """
    if isinstance(value, pq.Quantity):
        if units is not None:
            raise UnitsError("Pass either a Quantity or a number with units, not both.")
        q = value
    else:
        if units is None:
            raise UnitsError("A plain number needs units (e.g. units='mV').")
        q = np.asarray(value, dtype=float) * _as_units(units)
    found = dimension_of(q)
    if kind is not None and found != kind:
        raise UnitsError(
            f"Expected a {kind} (e.g. {CANONICAL_UNITS.get(kind, '?')}) but got units "
            f"{q.dimensionality.string!r}; check the channel or the value you passed."
        )
    if found is None:
        raise UnitsError(f"Units {q.dimensionality.string!r} are not time, voltage, current, capacitance,"
                         " conductance or frequency.")
    out = np.asarray(q.rescale(CANONICAL_UNITS[found]).magnitude, dtype=float)
    return float(out) if out.ndim == 0 else out


def magnitude_in(value, unit: str, what: str = "the value"):
    """A value as a plain number in ``unit``: a quantity is rescaled (a wrong dimension raises), a number is taken
    as already in ``unit``.

    Parameters
    ----------
    value : quantities.Quantity, float or other
        The value; anything that is not a Quantity is returned unchanged (its checks come later).
    unit : str
        Target unit symbol, e.g. ``"nS"``, ``"1/ms"``, ``"dimensionless"``.
    what : str
        What the value is, for the message (``"gCa"``).

    Returns
    -------
    float or the value unchanged
    """
    if not isinstance(value, pq.Quantity):
        return value
    target = _as_units(unit)
    try:
        out = np.asarray(value.rescale(target.units).magnitude, dtype=float)
    except ValueError as exc:
        raise UnitsError(f"{what} is given in {value.dimensionality.string}, which cannot be expressed in {unit}; "
                         f"give it in {unit} (or a plain number in {unit}).") from exc
    return float(out) if out.ndim == 0 else out


_QTY_RE = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-zµμ/²^0-9*]*)\s*$")


def parse_quantity(text: str, kind: str | None = None, default_unit: str | None = None) -> float:
    """Parse a string such as ``"48pA"``, ``"0.1 nA"`` or ``"900ms"`` into a canonical float.

    Parameters
    ----------
    text : str
        Number with an optional unit symbol.
    kind : str, optional
        Expected dimension; a mismatch raises :class:`~neo_pinn.errors.UnitsError`.
    default_unit : str, optional
        Unit assumed when the text has none (defaults to the canonical unit of ``kind``).

    Returns
    -------
    float
        Value in the canonical unit (ms, mV, pA, pF, nS, Hz).
    """
    m = _QTY_RE.match(str(text))
    if not m:
        raise UnitsError(f"Cannot read {text!r} as a number with a unit; write e.g. '48pA' or '100ms'.")
    number, unit = float(m.group(1)), m.group(2)
    if not unit:
        unit = default_unit or (CANONICAL_UNITS[kind] if kind else None)
        if unit is None:
            raise UnitsError(f"{text!r} has no unit; write e.g. '48pA' or '100ms'.")
        if unit == "dimensionless":
            return number
    return to_canonical(number, unit, kind=kind)


def parse_window(text: str | None, flag: str = "--window", example: str = "100:600") -> tuple[float, float] | None:
    """``"T0:T1"`` (ms, or each with a time unit: ``"0.1s:600ms"``) → (t0, t1) in ms; empty or None → None.

    Raises
    ------
    ConfigurationError
        Not two times separated by ':' (the message names ``flag`` and shows ``example``).
    """
    if not text:
        return None
    try:
        a, b = str(text).split(":")
        return parse_quantity(a, "time"), parse_quantity(b, "time")
    except (ValueError, UnitsError):
        raise ConfigurationError(f"{flag} {text!r}: write T0:T1 in ms, e.g. {example}.") from None


#: range (mV) a recorded membrane potential stays in; beyond it the data are in the wrong unit or an artefact
PHYSIOLOGICAL_MV: tuple[float, float] = (-200.0, 150.0)
#: a sweep whose every sample lies within this distance of 0 mV is not a membrane potential in mV (volts?)
FLAT_ZERO_MV = 1.0


def check_physiological_voltage(v, *, what: str = "the voltage", allow: bool = False) -> None:
    """Refuse a membrane voltage that no cell produces in mV: most often a unit mistake.

    Two signs: a sample beyond :data:`PHYSIOLOGICAL_MV` (−200 … +150 mV; e.g. µV labelled mV reads −65000), or
    every sample within ±1 mV of 0 (e.g. volts labelled mV read −0.065 … +0.02). Non-finite samples are ignored
    here (the fit's finite check names them).

    Parameters
    ----------
    v : array_like
        Membrane voltage in mV (any shape).
    what : str
        What it is, for the message (``"sweep 3 (0–300 ms)"``).
    allow : bool
        Skip the check (``allow_unphysiological=True``, CLI ``--allow-unphysiological``).

    Raises
    ------
    UnphysiologicalVoltageError
        Naming the range found, the likely unit mistake and the override.
    """
    if allow:
        return
    x = np.asarray(v, dtype=float).reshape(-1)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return
    lo, hi = float(x.min()), float(x.max())
    override = ("; or pass allow_unphysiological=True (CLI --allow-unphysiological) to fit it as it is")
    if max(abs(lo), abs(hi)) < FLAT_ZERO_MV:
        raise UnphysiologicalVoltageError(
            f"{what} stays within ±{FLAT_ZERO_MV:g} mV of 0 ({lo:.4g} to {hi:.4g} mV), which no membrane potential "
            "does: it is probably in volts labelled mV (×1000 needed) or a monitor channel; fix the channel's units "
            f"or choose the Vm channel (voltage_channel=, CLI --voltage-channel){override}.")
    a, b = PHYSIOLOGICAL_MV
    if lo < a or hi > b:
        big = float(np.median(np.abs(x))) > 1000.0
        cause = ("it is probably in µV labelled mV (÷1000 needed); fix the channel's units" if big else
                 "check the channel's units, or cut the window (--window) to leave out an artefact")
        raise UnphysiologicalVoltageError(
            f"{what} reaches {lo:.4g} to {hi:.4g} mV, beyond the physiological {a:g} … +{b:g} mV: {cause}{override}.")

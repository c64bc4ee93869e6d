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

from .errors import UnitsError

__all__ = [
    "CANONICAL_UNITS",
    "dimension_of",
    "to_canonical",
    "parse_quantity",
    "canonical_unit",
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

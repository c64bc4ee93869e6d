"""What ``neo-pinn info`` prints about a recording: every channel labelled by what it is, a sweep table whose
stimulus column holds one unit, and spikes counted on finite samples only.

It works on the JSON-ready description of a recording (:meth:`neo_pinn.io.Recording.describe`, a dict), so it
needs no Neo object; the command line adds the sweep quality control and cell tables.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..features.single_trace import spike_count

__all__ = ["finite_spike_count", "recount_spikes", "channel_label", "stimulus_column", "info_lines"]

#: sources of a stimulus read from a current channel of the file (that channel is then the stimulus)
CHANNEL_SOURCES = frozenset({"recorded-channel", "nwb-stimulus"})
#: epochs shown per sweep before "… (N epochs)"
MAX_EPOCHS = 12


def finite_spike_count(v, t, threshold: float = 0.0) -> tuple[int, int]:
    """Spikes of a voltage trace counted on its finite samples, and how many samples are NaN or infinite.

    A recorder's overflow (an inf sample) or a gap (NaN) is not a spike: those samples are left out before
    counting (:func:`neo_pinn.features.spike_count`, re-armed 10 mV below ``threshold``).

    Parameters
    ----------
    v : array_like
        Voltage, mV.
    t : array_like
        Times, ms.
    threshold : float
        Spike threshold, mV.

    Returns
    -------
    (int, int)
        The spike count and the number of non-finite samples.
    """
    v = np.asarray(v, dtype=float).reshape(-1)
    ok = np.isfinite(v)
    return spike_count(v[ok], np.asarray(t, dtype=float).reshape(-1)[ok], threshold=threshold), int((~ok).sum())


def recount_spikes(d: dict, sweeps) -> None:
    """Recount on its finite samples only the spikes of every sweep holding NaN or inf samples, and say so.

    Parameters
    ----------
    d : dict
        A recording's description (``sweeps`` with ``spike_count``, ``total_spikes``, ``warnings``); changed in place.
    sweeps : iterable of (int, array_like, array_like)
        (sweep number, voltage in mV, times in ms) of the recording's voltage signals.
    """
    rows = {s["sweep"]: s for s in d["sweeps"]}
    for k, v, t in sweeps:
        row = rows.get(k)
        if row is None or row.get("spike_count") is None:
            continue
        n, bad = finite_spike_count(v, t)
        if bad:
            d["total_spikes"] = (d.get("total_spikes") or 0) + n - row["spike_count"]
            row["spike_count"] = n
            d["warnings"].append(f"sweep {k} holds {bad} NaN or infinite sample(s), not counted as spikes; fit a "
                                 "window without them (--window T0:T1).")


def channel_label(ch: dict, d: dict) -> str:
    """What a channel is (``ch`` an entry of ``d["channels"]``): not only its units' dimension.

    Returns
    -------
    str
        ``"membrane voltage (used)"``, ``"clamp current (recorded)"``, ``"injected current (stimulus)"``, or
        ``"not used (voltage units; see the warning below)"`` for a channel in mV that is no membrane potential.
    """
    name, dim = ch.get("name"), ch.get("dimension") or "unknown"
    current_clamp = d.get("recording_mode") == "current_clamp"
    if name == d.get("recorded_channel"):
        return "membrane voltage (used)" if current_clamp else "clamp current (recorded)"
    if dim == "current" and current_clamp and CHANNEL_SOURCES & set(d.get("stimulus_sources") or ()):
        return "injected current (stimulus)"
    warned = any(f"'{name}'" in w for w in d.get("warnings", []))
    return f"not used ({dim} units{'; see the warning below' if warned else ''})"


def _seconds(ms: float) -> str:
    return f"{ms / 1000:.3f}".rstrip("0").rstrip(".") or "0"


def stimulus_column(d: dict) -> tuple[str, list[str]]:
    """The unit and the cells of the stimulus column of the sweep table, every current in that one unit.

    Parameters
    ----------
    d : dict
        A recording's description (``recording_mode`` and ``sweeps`` with ``stimulus_epochs`` in pA).

    Returns
    -------
    (str, list of str)
        ``"nA"`` when any current reaches 1 nA, else ``"pA"``; one cell per sweep, e.g.
        ``"nwb-stimulus: 0; 0.031–0.431 s: -2; 0.431–0.717 s: 0"``.
    """
    amps = [abs(v) for s in d["sweeps"] for e in (s.get("stimulus_epochs") or [])
            for k, v in e.items() if k.endswith("_pA") and isinstance(v, (int, float))]
    unit, scale = ("nA", 1000.0) if amps and max(amps) >= 1000.0 else ("pA", 1.0)

    def level(e: dict) -> str:
        def a(key: str) -> str:
            return f"{round(e[key] / scale, 4):g}"
        if e.get("kind") == "ramp":
            return f"ramp {a('from_pA')} → {a('to_pA')}"
        if e.get("kind") == "pulses":
            return f"{e['n']} pulses of {a('amplitude_pA')} ({e['width_ms']:.3g} ms every {e['period_ms']:.3g} ms)"
        return a("amplitude_pA")

    cells = []
    for s in d["sweeps"]:
        epochs, source = s.get("stimulus_epochs"), s.get("stimulus_source")
        if d.get("recording_mode") != "current_clamp":
            cells.append("none (voltage clamp: the command is a voltage)")
        elif not epochs:
            cells.append(source or "none found (give one with --stimulus)")
        else:
            parts = [level(epochs[0])] + [f"{_seconds(e['start_ms'])}–{_seconds(e['stop_ms'])} s: {level(e)}"
                                          for e in epochs[1:MAX_EPOCHS]]
            more = f"; … ({len(epochs)} epochs)" if len(epochs) > MAX_EPOCHS else ""
            cells.append(f"{source}: {'; '.join(parts)}{more}")
    return unit, cells


def info_lines(d: dict, tables: Sequence[tuple[str, str]] = ()) -> list[str]:
    """The lines ``neo-pinn info`` prints for a recording's description ``d``.

    Parameters
    ----------
    d : dict
        :meth:`neo_pinn.io.Recording.describe` (its ``warnings`` included).
    tables : sequence of (str, str)
        (title, table text) shown after the sweeps, e.g. the sweep quality control.

    Returns
    -------
    list of str
    """
    cc = d["recording_mode"] == "current_clamp"
    out = [f"{d['file'] or 'recording'}: {d['format']}, {d['recording_mode'].replace('_', ' ')}, "
           f"{d['n_sweeps']} sweep(s)"]
    out += [f"  channel {ch.get('name')!s:>12}  {ch.get('units')!s:>4}  {channel_label(ch, d)}"
            for ch in d.get("channels", [])]
    chan = d.get("voltage_channel") or d.get("recorded_channel")
    out.append(f"  voltage channel: {chan}" if cc else f"  recorded current: {chan}")
    if d.get("stimulus_summary"):
        out.append(f"  stimulus: {d['stimulus_summary']}")
    if d.get("total_spikes") is not None:
        out.append(f"  spikes (0 mV): {d['total_spikes']}")
    unit, cells = stimulus_column(d)
    out.append(f"  {'sweep':>5} {'rate Hz':>9} {'dur ms':>9} {'spikes':>6}  stimulus{f' ({unit})' if cc else ''}")
    for s, cell in zip(d["sweeps"], cells):
        spikes = "" if s.get("spike_count") is None else s["spike_count"]
        out.append(f"  {s['sweep']:>5} {s['sampling_rate_hz']:>9.1f} {s['duration_ms']:>9.1f} {spikes!s:>6}  {cell}")
    out += [f"  warning: {w}" for w in d.get("warnings", [])]
    for title, table in tables:
        out.append(title)
        out += ["  " + line for line in table.splitlines()]
    return out

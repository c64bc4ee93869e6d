"""Which recorded signal is the membrane voltage, which is a current, and how channels are named.

A *channel* is one column of the annotated copy's signals, identified across sweeps by its name (for
NWB: the series type and electrode). :func:`choose_channel` picks the membrane voltage by units, name
and content (a mV channel whose values stay within ±1 mV is a scaled monitor, not Vm), or the clamp
current of a voltage-clamp recording. The small signal helpers here (channel names, name
normalisation, sweep numbers, NWB stimulus series, same time grid) are shared with the stimulus finders.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from ..errors import NoVoltageChannelError, UnitsError
from ..units import dimension_of, to_canonical
from . import convert

__all__ = [
    "COMMAND_NAME",
    "Channel",
    "normalize_name",
    "is_command_name",
    "channel_names",
    "signals_aligned",
    "nwb_type",
    "is_nwb_stimulus",
    "sweep_number",
    "sweep_sort_key",
    "channel_key",
    "collect_channels",
    "all_channel_keys",
    "channel_listing",
    "choose_channel",
]

#: Normalised names (see :func:`normalize_name`) of channels that carry an injected or command current.
COMMAND_NAME = re.compile(
    r"^(i(memb|mem|m|com|cmd|command|inj|injected|stim|out|clamp|mon|monitor)?\d*"
    r"|.*(command|cmd|stim|inject|current).*)$"
)
_SWEEP_NUMBER = re.compile(r"(\d+)\s*$")
_VOLT_NAME = re.compile(r"(^v\d*$|^vm|vm$|vmem|membrane|potential|voltage|^v(m|mem|memb)?\d*$|^10vm$|primary)")
_NOT_VM_NAME = re.compile(r"(cmd|command|stim|mon|monitor|ext|aux|out|trig)")


# ---------------------------------------------------------------------- signal helpers
def normalize_name(name) -> str:
    """A channel name lower-cased with everything but letters and digits removed (``"I_Com 1"`` → ``"icom1"``)."""
    return re.sub(r"[^a-z0-9]", "", str(name or "").lower())


def is_command_name(name) -> bool:
    """True when a channel name reads like an injected/command current (``Imemb``, ``I_Com``, ``Istim`` ...)."""
    return bool(COMMAND_NAME.match(normalize_name(name)))


def channel_names(sig) -> list[str]:
    """One name per column of a Neo signal: its ``channel_names`` array annotation, else made from its name.

    Parameters
    ----------
    sig : neo.AnalogSignal
        Shape (T,) or (T, C).

    Returns
    -------
    list of str
        C names (one for a 1-D signal).
    """
    names = sig.array_annotations.get("channel_names") if hasattr(sig, "array_annotations") else None
    n = sig.shape[1] if sig.ndim > 1 else 1
    if names is not None and len(names) == n:
        return [str(x) for x in names]
    if n == 1:
        return [str(sig.name or "")]
    return [f"{sig.name or 'signal'}[{k}]" for k in range(n)]


def signals_aligned(a, b) -> bool:
    """True when two Neo signals share a time grid: same sample count, rate and start (within half a sample)."""
    if a.shape[0] != b.shape[0] or a.shape[0] == 0:
        return False
    ra = float(a.sampling_rate.rescale("Hz").magnitude)
    rb = float(b.sampling_rate.rescale("Hz").magnitude)
    if abs(ra - rb) > 1e-6 * max(ra, rb):
        return False
    ta = float(a.t_start.rescale("s").magnitude)
    tb = float(b.t_start.rescale("s").magnitude)
    return abs(ta - tb) <= 0.5 / ra


def nwb_type(sig) -> str:
    """The NWB neurodata type Neo's NWBIO recorded for a signal (``"CurrentClampSeries"``), or ``""``."""
    ntype = getattr(sig, "annotations", {}).get("nwb_neurodata_type")
    if isinstance(ntype, (tuple, list)) and ntype:
        return str(ntype[-1])
    return str(ntype or "")


def is_nwb_stimulus(sig) -> bool:
    """True for a series of an NWB file's ``stimulus`` group (a command, never a recorded response)."""
    return getattr(sig, "annotations", {}).get("nwb_group") == "stimulus" or "StimulusSeries" in nwb_type(sig)


def sweep_number(sig) -> int | None:
    """The sweep number of a signal: the NWB ``sweep_number``, else digits ending its name; None if neither."""
    ann = getattr(sig, "annotations", {})
    if "nwb:sweep_number" in ann:
        try:
            return int(ann["nwb:sweep_number"])
        except (TypeError, ValueError):
            pass
    m = _SWEEP_NUMBER.search(str(sig.name or ""))
    return int(m.group(1)) if m else None


def sweep_sort_key(member) -> tuple:
    """Order of a ``(segment index, signal)`` pair among sweeps: segment, start time, then sweep number."""
    s_idx, sig = member
    n = sweep_number(sig)
    return s_idx, float(sig.t_start.rescale("s").magnitude), float(n) if n is not None else math.inf


# ---------------------------------------------------------------------- channels of a block
def channel_key(sig) -> str:
    """Identity of a channel across sweeps: the channel name, or for NWB the series type + electrode.

    An unnamed signal (Neo's default ``name=None``) is keyed by its position in its segment and its units.
    """
    ntype = nwb_type(sig)
    if ntype:
        elec = sig.annotations.get("nwb_electrode")
        ename = elec.get("name") if isinstance(elec, dict) else elec
        return f"{ntype} ({ename})" if ename else ntype
    name = sig.annotations.get("neo_pinn_channel", sig.name)
    if name in (None, "", "None"):
        # Neo's default signal name is None: unnamed channels are told apart by their position in the segment and
        # their units, never merged into one channel (a current taken for a second voltage sweep)
        position = sig.annotations.get("neo_pinn_source_signal_index")
        if position is None and getattr(sig, "segment", None) is not None:
            position = next((i for i, s in enumerate(sig.segment.analogsignals) if s is sig), None)
        where = f" {int(position)}" if position is not None else ""
        return f"unnamed signal{where} ({sig.units.dimensionality.string})"
    return str(name)


@dataclass
class Channel:
    """One candidate channel of a recording: its signals in every sweep.

    Attributes
    ----------
    key : str
        See :func:`channel_key`.
    kind : str
        ``"voltage"``, ``"current"`` or another dimension (``"other"`` when unknown).
    units : str
        Units as stored, e.g. ``"mV"``.
    signals : list of (int, neo.AnalogSignal)
        (segment index in the annotated copy, signal), in block order.
    order : int
        Position of first appearance (ties are broken by it).
    """

    key: str
    kind: str
    units: str
    signals: list
    order: int


def _excluded(sig) -> bool:
    role = sig.annotations.get("neo_pinn_role")
    if role not in (None, convert.ROLE_VOLTAGE, convert.ROLE_CLAMP_CURRENT):
        return True
    if ".neo_pinn." in str(sig.name or ""):
        return True
    return is_nwb_stimulus(sig)


def collect_channels(block) -> list[Channel]:
    """The channels of an annotated copy that may be the recorded one (stimuli and neo_pinn's outputs left out)."""
    chans: dict[str, Channel] = {}
    for s_idx, seg in enumerate(block.segments):
        for sig in seg.analogsignals:
            if sig.shape[0] == 0 or _excluded(sig):
                continue
            key = channel_key(sig)
            if key not in chans:
                chans[key] = Channel(key, dimension_of(sig.units) or "other", sig.units.dimensionality.string,
                                     [], len(chans))
            chans[key].signals.append((s_idx, sig))
    return list(chans.values())


def all_channel_keys(block) -> list[str]:
    """Every recorded channel (NWB stimulus series included; neo_pinn's own signals left out)."""
    keys: list[str] = []
    for seg in block.segments:
        for sig in seg.analogsignals:
            if ".neo_pinn." in str(sig.name or "") or str(sig.name or "").endswith(".stimulus") and \
                    sig.annotations.get("neo_pinn_role") == convert.ROLE_STIMULUS:
                continue
            key = channel_key(sig)
            if key not in keys:
                keys.append(key)
    return keys


def channel_listing(block) -> list[dict]:
    """``[{"name", "units", "dimension"}]`` of every channel of :func:`all_channel_keys`, for ``describe()``."""
    out = []
    for key in all_channel_keys(block):
        sig = next(s for seg in block.segments for s in seg.analogsignals if channel_key(s) == key)
        out.append({"name": key, "units": sig.units.dimensionality.string,
                    "dimension": dimension_of(sig.units) or "other"})
    return out


# ---------------------------------------------------------------------- choosing the voltage
def _plausible_vm(sigs) -> bool:
    """False when a mV channel cannot be a membrane potential (all |v| < 1 mV, dead, or absurd)."""
    for sig in sigs:
        v = np.asarray(to_canonical(sig, kind="voltage"), dtype=float).reshape(-1)
        v = v[np.isfinite(v)]
        if v.size == 0:
            continue
        if np.max(np.abs(v)) < 1.0 or np.ptp(v) == 0.0 or abs(float(np.median(v))) > 200.0:
            continue
        return True
    return False


def _name_score(key: str, sig) -> int:
    norm = normalize_name(key)
    score = 0
    if nwb_type(sig) == "CurrentClampSeries":
        score += 3
    if _VOLT_NAME.search(norm):
        score += 2
    if _NOT_VM_NAME.search(norm):
        score -= 2
    return score


def _match_channel(chans: list[Channel], wanted, block) -> Channel:
    keys = all_channel_keys(block)
    listing = ", ".join(f"{i}: {k}" for i, k in enumerate(keys))
    if isinstance(wanted, (int, np.integer)) and not isinstance(wanted, bool):
        if not 0 <= int(wanted) < len(keys):
            raise NoVoltageChannelError(f"voltage_channel={wanted} is out of range; channels are {listing}.")
        target = keys[int(wanted)]
        hits = [c for c in chans if c.key == target]
    else:
        text = str(wanted)
        hits = [c for c in chans if c.key == text]
        if not hits:
            hits = [c for c in chans if c.key.lower() == text.lower()
                    or any(str(s.name) == text for _, s in c.signals)]
        if not hits:
            hits = [c for c in chans if normalize_name(c.key) == normalize_name(text)]
        if not hits and text.strip().isdigit() and int(text) < len(keys):  # "1" from a command line
            hits = [c for c in chans if c.key == keys[int(text)]]
    if not hits:
        index = int(wanted) if isinstance(wanted, (int, np.integer)) else \
            int(str(wanted).strip()) if str(wanted).strip().isdigit() else None
        if index is not None and 0 <= index < len(keys):  # a channel that is never a recorded voltage
            volts = ", ".join(c.key for c in chans if c.kind == "voltage") or "none"
            raise UnitsError(f"Channel {index} ({keys[index]}) is the stimulus or another signal that is not "
                             f"a voltage; voltage channels: {volts}.")
        raise NoVoltageChannelError(f"No channel named {wanted!r}; channels are {listing}.")
    chan = hits[0]
    if chan.kind != "voltage":
        volts = ", ".join(c.key for c in chans if c.kind == "voltage") or "none"
        raise UnitsError(f"Channel {chan.key!r} is in {chan.units}, not a voltage; voltage channels: {volts}.")
    return chan


def _best_voltage(volts: list[Channel], notes: list) -> Channel:
    scored = []
    for c in volts:
        plausible = _plausible_vm([s for _, s in c.signals])
        scored.append((not plausible, -_name_score(c.key, c.signals[0][1]), c.order, c, plausible))
    scored.sort(key=lambda x: x[:3])
    best = scored[0]
    if not best[4]:
        # recorded, not warned: a fit refuses such a voltage (neo_pinn.units.check_physiological_voltage) unless
        # forced, so a warning that scrolls by is not the only thing between the user and a nonsense fit
        notes.append((f"Channel {best[3].key!r} is labelled {best[3].units} but its values do not look like a "
                      "membrane potential (all within ±1 mV, flat or beyond ±200 mV); check voltage_channel= and the "
                      "units. A fit refuses it unless allow_unphysiological=True (CLI --allow-unphysiological).",
                      None))
    for other in scored[1:]:
        if not other[4]:
            notes.append((f"Channel {other[3].key!r} ({other[3].units}) was not used as the membrane "
                          "potential: its values stay within ±1 mV, are flat or lie beyond ±200 mV "
                          "(e.g. a scaled monitor labelled mV).", None))
    return best[3]


def choose_channel(chans: list[Channel], voltage_channel, block, notes: list) -> tuple[Channel | None, str]:
    """The recorded channel and the recording mode.

    Parameters
    ----------
    chans : list of Channel
        From :func:`collect_channels`.
    voltage_channel : str, int or None
        A channel forced by name or by its index in :func:`all_channel_keys`; None chooses.
    block : neo.Block
        The annotated copy.
    notes : list
        Appended ``(message, warning category or None)``; None means "recorded, not warned".

    Returns
    -------
    (Channel or None, str)
        The channel and ``"current_clamp"``, ``"voltage_clamp"`` or (with None) ``"unknown"``.
    """
    # Signals a user (or an earlier load) already marked as the voltage win.
    marked = [c for c in chans if any(s.annotations.get("neo_pinn_role") == convert.ROLE_VOLTAGE
                                      for _, s in c.signals)]
    if voltage_channel is not None:
        return _match_channel(chans, voltage_channel, block), "current_clamp"
    if len(marked) == 1 and marked[0].kind == "voltage":
        return marked[0], "current_clamp"
    volts = [c for c in chans if c.kind == "voltage"]
    if volts:
        return _best_voltage(volts, notes), "current_clamp"
    currents = [c for c in chans if c.kind == "current"]
    if currents:
        currents.sort(key=lambda c: (is_command_name(c.key) and len(currents) > 1, c.order))
        return currents[0], "voltage_clamp"
    return None, "unknown"

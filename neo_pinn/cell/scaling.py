"""Search ranges of a model scaled to a measured cell: the membrane area sets the scale of every conductance.

A model's textbook parameter set describes one patch of membrane (per-area numbers carried over number for
number: µF/cm² → pF, mS/cm² → nS). A real cell's size multiplies every capacitance, conductance and current
by the same area factor, so a search over textbook ranges can only find a 20 pF cell. Given the cell's
measured capacitance, input resistance and resting potential:

* capacitance: the measured value, searched within ×/÷ :data:`PASSIVE_SPAN`;
* leak conductance: 1 / input resistance, within ×/÷ :data:`PASSIVE_SPAN`;
* leak reversal: the resting potential, within ± :data:`REVERSAL_SPAN_MV`;
* every other conductance (nS) and current (pA): the textbook value and range × area factor
  (measured capacitance / the preset's); a per-current rate (1/pA) ÷ area factor;
* everything else (voltages, rates, time constants): unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from ..errors import ConfigurationError
from ..models.base import NeuronModel

__all__ = ["SearchRanges", "cell_scaled_ranges", "PASSIVE_SPAN", "REVERSAL_SPAN_MV"]

#: capacitance and leak are searched from measured/PASSIVE_SPAN to measured×PASSIVE_SPAN
PASSIVE_SPAN = 3.0
#: the leak reversal is searched within this many mV of the resting potential
REVERSAL_SPAN_MV = 20.0


@dataclass(frozen=True)
class SearchRanges:
    """Starting values and bounds of free parameters, in canonical units.

    Parameters
    ----------
    init : dict
        Parameter name → starting value.
    bounds : dict
        Parameter name → (low, high).
    fixed : dict
        Scaled values of the parameters that are not free (conductances held at the cell's scale).
    area_scale : float
        Measured capacitance / the model's reference capacitance (dimensionless).
    notes : tuple of str
        One sentence per rule applied, for reports.
    """

    init: dict[str, float]
    bounds: dict[str, tuple[float, float]]
    fixed: dict[str, float] = field(default_factory=dict)
    area_scale: float = 1.0
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """JSON-ready dictionary."""
        return {"init": dict(self.init), "bounds": {k: list(v) for k, v in self.bounds.items()},
                "fixed": dict(self.fixed), "area_scale": self.area_scale, "notes": list(self.notes)}


def _scaled(unit: str, value: float, scale: float) -> float | None:
    """``value`` scaled to the cell's area by its unit, or None when the unit does not scale with area."""
    if unit in ("nS", "pA", "pF"):
        return value * scale
    if unit == "1/pA":
        return value / scale
    return None


def cell_scaled_ranges(
    model: NeuronModel,
    free: Iterable[str],
    *,
    capacitance_pF: float,
    input_resistance_MOhm: float,
    rest_mV: float,
    preset: str | None = None,
    values: Mapping[str, float] | None = None,
) -> SearchRanges:
    """Starting values and bounds of ``free`` parameters of ``model`` for a cell of the measured size.

    Parameters
    ----------
    model : NeuronModel
        Needs :attr:`~neo_pinn.models.base.NeuronModel.passive_parameters` (capacitance at least).
    free : iterable of str
        Parameters to be estimated.
    capacitance_pF : float
        Measured membrane capacitance, pF.
    input_resistance_MOhm : float
        Measured input resistance, MΩ.
    rest_mV : float
        Measured resting potential, mV.
    preset : str, optional
        Preset of the reference values (model default when None).
    values : mapping, optional
        User-set parameter values: they are neither scaled nor searched.

    Returns
    -------
    SearchRanges
        Init and bounds of every free parameter, and the scaled values of the fixed conductances.
    """
    roles = dict(model.passive_parameters)
    c_name = roles.get("capacitance")
    if not c_name:
        raise ConfigurationError(f"{model.name} declares no capacitance parameter; it cannot be scaled to a cell.")
    for name, x in (("capacitance", capacitance_pF), ("input resistance", input_resistance_MOhm)):
        if not (x > 0 and x < float("inf")):
            raise ConfigurationError(f"The measured {name} must be a positive number, got {x}.")
    user = dict(values or {})
    ref = model.param_values(preset or model.default_preset or None, **user)
    scale = float(capacitance_pF) / float(ref[c_name])
    free = list(free)
    init: dict[str, float] = {}
    bounds: dict[str, tuple[float, float]] = {}
    fixed: dict[str, float] = {}
    notes = [f"area scale {scale:.3g} (measured C {capacitance_pF:.4g} pF / the model's {ref[c_name]:.4g} pF)"]
    measured = {c_name: capacitance_pF}
    if roles.get("leak_conductance"):
        measured[roles["leak_conductance"]] = 1000.0 / float(input_resistance_MOhm)  # 1/MΩ = µS = 1000 nS
        notes.append(f"{roles['leak_conductance']} from 1/Rin = {measured[roles['leak_conductance']]:.4g} nS")
    for name in model.param_names:
        if name in user and name not in free:
            continue
        spec = model.param_spec(name)
        if name in measured:
            v = measured[name]
            lo, hi = v / PASSIVE_SPAN, v * PASSIVE_SPAN
        elif name == roles.get("leak_reversal"):
            v = float(rest_mV)
            lo, hi = v - REVERSAL_SPAN_MV, v + REVERSAL_SPAN_MV
        else:
            v = _scaled(spec.unit, ref[name], scale)
            if v is None:
                continue
            lo, hi = sorted((_scaled(spec.unit, spec.bounds[0], scale), _scaled(spec.unit, spec.bounds[1], scale)))
            if spec.log_scale and lo <= 0:
                continue
        if name in free:
            init[name] = float(min(max(v, lo), hi))
            bounds[name] = (float(lo), float(hi))
        else:
            fixed[name] = float(v)
    if roles.get("leak_reversal") in init:
        notes.append(f"{roles['leak_reversal']} from the resting potential {rest_mV:.4g} mV")
    return SearchRanges(init=init, bounds=bounds, fixed=fixed, area_scale=scale, notes=tuple(notes))

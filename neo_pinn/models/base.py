"""The :class:`NeuronModel` contract every model (built-in or third-party) fulfils.

A model declares its states (state 0 is the membrane voltage), its parameters (unit, default, bounds,
log-scale flag), presets reproducing published regimes, and one pure, batched right-hand side written
against :mod:`neo_pinn.models.elementwise` so that it runs on torch tensors (simulator, PINN residuals,
autograd, GPU) and numpy arrays (scipy reference) from the same code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..errors import ConfigurationError, ParameterDomainError, UnknownNameError
from ..units import magnitude_in

__all__ = ["StateSpec", "Domain", "ParameterSpec", "Preset", "NeuronModel", "gate_mask", "quasi_steady_states",
           "PASSIVE", "POSITIVE", "NON_NEGATIVE", "ANY_FINITE", "default_domain"]

#: the usual names of the passive membrane parameters, by role (see ``NeuronModel.passive_parameters``)
PASSIVE: Mapping[str, str] = {"capacitance": "C", "leak_conductance": "gL", "leak_reversal": "EL"}


@dataclass(frozen=True)
class StateSpec:
    """A state variable.

    Parameters
    ----------
    name : str
        Identifier (``"V"``, ``"n"`` ...).
    unit : str
        Canonical unit (``"mV"`` or ``"dimensionless"``).
    scale : float
        Typical magnitude of the state's excursions, used to normalise residuals and networks.
    description : str
        One line for reports.
    """

    name: str
    unit: str
    scale: float
    description: str = ""


@dataclass(frozen=True)
class Domain:
    """The values a parameter may take at all (physics, not plausibility: that is the bounds' job).

    Parameters
    ----------
    lo, hi : float
        Ends of the interval (canonical units); ``-inf``/``inf`` for none.
    lo_open, hi_open : bool
        Whether the end itself is excluded (a capacitance: ``lo=0, lo_open=True``, i.e. > 0).

    Every value must also be finite.
    """

    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    hi_open: bool = False

    def __post_init__(self) -> None:
        if not float(self.lo) < float(self.hi):
            raise ConfigurationError(f"A parameter domain needs lo < hi; got ({self.lo}, {self.hi}).")

    def contains(self, x: float) -> bool:
        """Whether ``x`` is a finite value inside the domain."""
        return bool(self.inside(np.asarray(float(x))))

    def inside(self, x: np.ndarray) -> np.ndarray:
        """Element-wise :meth:`contains` of a float array (bool array of the same shape)."""
        above = x > self.lo if self.lo_open else x >= self.lo
        below = x < self.hi if self.hi_open else x <= self.hi
        return np.isfinite(x) & above & below

    def describe(self) -> str:
        """``"> 0"``, ``"≥ 0"``, ``"any finite value"`` or ``"in (0, 1]"``."""
        if math.isinf(self.lo) and math.isinf(self.hi):
            return "any finite value"
        if math.isinf(self.hi):
            return f"{'>' if self.lo_open else '≥'} {self.lo:g}"
        if math.isinf(self.lo):
            return f"{'<' if self.hi_open else '≤'} {self.hi:g}"
        return f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"


#: > 0: capacitances, rates, time constants, slopes, any log-scale parameter
POSITIVE = Domain(0.0, math.inf, lo_open=True)
#: ≥ 0: maximal conductances (0 is a blocked channel)
NON_NEGATIVE = Domain(0.0, math.inf)
#: any finite value: reversal potentials, half-activation voltages, currents
ANY_FINITE = Domain()

_UNIT_DOMAINS: Mapping[str, Domain] = {"nS": NON_NEGATIVE, "pF": POSITIVE, "ms": POSITIVE, "1/ms": POSITIVE,
                                       "s": POSITIVE, "Hz": POSITIVE}


def default_domain(unit: str, log_scale: bool) -> Domain:
    """The domain of a parameter that declares none, by its role (unit) — so third-party models get one too.

    Conductances (nS) ≥ 0; capacitances (pF), time constants (ms, s) and rates (1/ms, Hz) > 0; any other
    log-scale parameter (a slope, a scale) > 0; everything else (voltages, currents) any finite value.
    """
    if unit in _UNIT_DOMAINS:
        return _UNIT_DOMAINS[unit]
    return POSITIVE if log_scale else ANY_FINITE


@dataclass(frozen=True)
class ParameterSpec:
    """A model parameter.

    Parameters
    ----------
    name : str
        Identifier used everywhere (CLI ``--free``, JSON, annotations).
    unit : str
        Canonical unit (pF, nS, mV, 1/ms, pA, ms, dimensionless).
    default : float
        Default value (the model's reference set).
    bounds : tuple of float
        Plausible (low, high) range, used for random starts and bounded fits.
    log_scale : bool
        Whether the parameter is positive and best searched on a log scale.
    description : str
        One line for reports.
    domain : Domain or (float, float), optional
        The values the parameter may take at all (a pair: a closed interval); None: by its role
        (:func:`default_domain`). The default and both bounds must lie in it.
    """

    name: str
    unit: str
    default: float
    bounds: tuple[float, float]
    log_scale: bool = True
    description: str = ""
    domain: Domain | tuple[float, float] | None = None

    def __post_init__(self) -> None:
        lo, hi = self.bounds
        if not lo < hi:
            raise ConfigurationError(f"Parameter {self.name}: bounds {self.bounds} must satisfy low < high.")
        if self.log_scale and lo <= 0:
            raise ConfigurationError(f"Parameter {self.name}: a log-scale parameter needs positive bounds.")
        dom = self.domain
        if dom is None:
            dom = default_domain(self.unit, self.log_scale)
        elif not isinstance(dom, Domain):
            dom = Domain(float(dom[0]), float(dom[1]))
        object.__setattr__(self, "domain", dom)
        for what, x in (("default", self.default), ("lower bound", lo), ("upper bound", hi)):
            if not dom.contains(x):
                raise ConfigurationError(f"Parameter {self.name}: its {what} {x} lies outside its domain "
                                         f"({dom.describe()}).")


@dataclass(frozen=True)
class Preset:
    """A named parameter set and stimulus reproducing a documented regime.

    Parameters
    ----------
    name : str
        Preset identifier.
    params : dict
        Overrides of parameter defaults.
    i_ext : float
        Constant injected current in pA (µA/cm² for per-area models, number for number).
    y0 : tuple of float
        Initial state.
    regime : str
        ``"rest"``, ``"tonic"``, ``"bursting"`` ...
    description : str
        Where the numbers come from.
    expected : dict
        Documented behaviour (e.g. ``rate_hz``, ``period_ms``, ``spikes_per_burst``) used by the tests.
    transient_ms : float
        Time to discard before measuring the regime, ms.
    """

    name: str
    params: Mapping[str, float]
    i_ext: float
    y0: tuple[float, ...]
    regime: str
    description: str = ""
    expected: Mapping[str, Any] = field(default_factory=dict)
    transient_ms: float = 0.0


class NeuronModel:
    """Base class of neuron models.

    Subclasses set the class attributes and implement :meth:`derivatives`. Everything else
    (``rhs`` on stacked tensors, parameter vectors, presets) is provided here.

    Attributes
    ----------
    name : str
        Registry name.
    states : tuple of StateSpec
        State 0 is the membrane voltage (mV).
    parameters : tuple of ParameterSpec
    presets : dict of str to Preset
    default_preset : str
    spike_threshold, spike_rearm : float
        Spike detection levels (mV) for this model's voltage.
    default_free : tuple of str
        Parameters estimated when a fit names none (CLI ``fit`` without ``--free``): the ones that set a
        real cell's behaviour and differ from cell to cell — capacitance (membrane area is unknown),
        maximal conductances, the leak reversal and gating rates — not reversal potentials or kinetics
        shared across cells of a type.
    passive_parameters : dict
        Which parameters are the passive membrane, by role: ``"capacitance"`` (pF), ``"leak_conductance"``
        (nS) and ``"leak_reversal"`` (mV). Fits of real cells measure these from the recording first and
        scale the search of every other conductance to the cell's size; a model without them (empty) is
        fitted on the textbook ranges.
    """

    name: str = ""
    description: str = ""
    reference: str = ""
    states: tuple[StateSpec, ...] = ()
    parameters: tuple[ParameterSpec, ...] = ()
    presets: Mapping[str, Preset] = {}
    default_preset: str = ""
    spike_threshold: float = 0.0
    spike_rearm: float = -10.0
    default_free: tuple[str, ...] = ()
    passive_parameters: Mapping[str, str] = {}

    # ----------------------------------------------------------------- equations
    def derivatives(self, t, state: Sequence, p: Mapping[str, Any], i_ext):
        """Time derivatives of each state, element-wise.

        Parameters
        ----------
        t : float or tensor
            Time in ms (most models are autonomous and ignore it).
        state : sequence of tensors/arrays
            One entry per state, all broadcastable to each other.
        p : mapping of str to tensors/arrays/floats
            Parameter values by name, broadcastable to the states.
        i_ext : tensor/array/float
            Injected current in pA.

        Returns
        -------
        tuple
            dstate/dt for every state, per ms.
        """
        raise NotImplementedError

    def rhs(self, t, y, theta, i_ext):
        """Batched right-hand side dy/dt = f(t, y; theta, I_ext).

        Parameters
        ----------
        t : float or tensor
            Time in ms.
        y : torch.Tensor or numpy.ndarray
            States, shape (..., S) in state order (canonical units).
        theta : torch.Tensor or numpy.ndarray
            Parameters, shape (..., P) in :attr:`param_names` order.
        i_ext : float, tensor or array
            Injected current in pA, broadcastable to ``y[..., 0]``.

        Returns
        -------
        same type as y
            dy/dt, shape broadcast of (..., S), per ms.
        """
        if isinstance(y, torch.Tensor):
            theta = torch.as_tensor(theta, dtype=y.dtype, device=y.device)
            state = y.unbind(-1)
            cols = theta.unbind(-1)
            out = self.derivatives(t, state, dict(zip(self.param_names, cols)), i_ext)
            return torch.stack(torch.broadcast_tensors(*out), -1)
        y = np.asarray(y, dtype=float)
        theta = np.asarray(theta, dtype=float)
        out = self.derivatives(t, [y[..., k] for k in range(y.shape[-1])],
                               {n: theta[..., k] for k, n in enumerate(self.param_names)}, i_ext)
        return np.stack(np.broadcast_arrays(*out), -1)

    # ----------------------------------------------------------------- specs
    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.states)

    @property
    def state_units(self) -> tuple[str, ...]:
        return tuple(s.unit for s in self.states)

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    @property
    def n_states(self) -> int:
        return len(self.states)

    @property
    def n_params(self) -> int:
        return len(self.parameters)

    def param_spec(self, name: str) -> ParameterSpec:
        """The :class:`ParameterSpec` called ``name``."""
        for p in self.parameters:
            if p.name == name:
                return p
        raise UnknownNameError(f"Model {self.name!r} has no parameter {name!r}; it has: {', '.join(self.param_names)}.")

    def canonical_values(self, values: Mapping[str, Any] | None, what: str = "value") -> dict[str, Any]:
        """Parameter values by name with quantities rescaled to each parameter's unit (numbers are canonical already).

        Parameters
        ----------
        values : mapping of str to float or quantities.Quantity, optional
        what : str
            What the values are, for messages.

        Returns
        -------
        dict
            Name → number (or the value unchanged when it is neither: :meth:`check_parameter_values` refuses it).

        Raises
        ------
        UnitsError
            A quantity whose dimension is not the parameter's (a conductance given in mV).
        UnknownNameError
            A name the model does not have.
        """
        out = {}
        for k, v in dict(values or {}).items():
            spec = self.param_spec(k)
            out[k] = magnitude_in(v, spec.unit, f"{what} {k}")
        return out

    def check_parameter_values(self, values: Any, what: str = "value") -> None:
        """Refuse parameter values outside their domains (:attr:`ParameterSpec.domain`) or not finite.

        The one check of parameter values, run alike on a fit's fixed values, initial guesses and bounds and on
        the parameters of a simulation.

        Parameters
        ----------
        values : mapping of str to float, or array_like
            Values by name (canonical units), or parameter vectors (..., P) in :attr:`param_names` order.
        what : str
            What the values are, for the message (``"--set/values"``, ``"initial guess"``, ``"lower bound"``).

        Raises
        ------
        ParameterDomainError
            Naming the parameter, its value, its domain and what to give instead.
        UnknownNameError
            A name the model does not have.
        """
        if isinstance(values, Mapping):
            items = [(k, v) for k, v in values.items()]
        else:
            if isinstance(values, torch.Tensor):
                values = values.detach().cpu().numpy()
            try:
                arr = np.asarray(values, dtype=float)
            except (TypeError, ValueError):
                raise ParameterDomainError(f"{what}: parameter vectors of {self.name} must hold numbers "
                                           f"({', '.join(self.param_names)}).") from None
            if arr.ndim == 0 or arr.shape[-1] != self.n_params:
                raise ConfigurationError(f"Parameter vectors of {self.name} have {self.n_params} entries "
                                         f"({', '.join(self.param_names)}); got shape {arr.shape}.")
            cols = arr.reshape(-1, self.n_params)
            items = []
            for k, n in enumerate(self.param_names):
                bad = np.flatnonzero(~self.parameters[k].domain.inside(cols[:, k]))
                items.append((n, cols[bad[0] if bad.size else 0, k]))  # the first offending row, if any
        for name, x in items:
            spec = self.param_spec(name)
            try:
                ok = spec.domain.contains(x)
            except (TypeError, ValueError):
                raise ParameterDomainError(f"{what} {name}={x!r} is not a number; give {spec.domain.describe()} "
                                           f"({spec.unit}).") from None
            if not ok:
                reason = "is not finite" if not math.isfinite(float(x)) else "lies outside its domain"
                raise ParameterDomainError(
                    f"{what} {name} = {float(x):g} {spec.unit} {reason}: {name} ({spec.description or spec.unit}) "
                    f"must be {spec.domain.describe()}; give a value in that range (its plausible range is "
                    f"{spec.bounds[0]:g} … {spec.bounds[1]:g} {spec.unit}).")

    def param_index(self, name: str) -> int:
        """Position of parameter ``name`` in theta vectors."""
        self.param_spec(name)
        return self.param_names.index(name)

    def state_index(self, name: str) -> int:
        """Position of state ``name`` in state vectors."""
        if name not in self.state_names:
            raise UnknownNameError(f"Model {self.name!r} has no state {name!r}; it has: {', '.join(self.state_names)}.")
        return self.state_names.index(name)

    def preset(self, name: str | None = None) -> Preset:
        """Return preset ``name`` (the default preset when None)."""
        name = name or self.default_preset
        try:
            return self.presets[name]
        except KeyError:
            raise UnknownNameError(f"Model {self.name!r} has no preset {name!r}; presets: "
                                   f"{', '.join(self.presets)}.") from None

    def param_values(self, preset: str | None = None, **overrides: float) -> dict[str, float]:
        """Full parameter dictionary: defaults, then the preset's values, then ``overrides`` (numbers or quantities)."""
        values = {p.name: float(p.default) for p in self.parameters}
        if preset is not None or self.default_preset:
            values.update({k: float(v) for k, v in self.preset(preset).params.items()})
        for k, v in overrides.items():
            values[k] = float(magnitude_in(v, self.param_spec(k).unit, k))  # a quantity is rescaled, never misread
        return values

    def theta(self, values: Mapping[str, float] | None = None, preset: str | None = None) -> np.ndarray:
        """Parameter vector (P,) in :attr:`param_names` order from a preset plus overrides."""
        vals = self.param_values(preset, **dict(values or {}))
        return np.array([vals[n] for n in self.param_names], dtype=float)

    def initial_state(self, preset: str | None = None) -> np.ndarray:
        """The preset's initial state (S,)."""
        return np.array(self.preset(preset).y0, dtype=float)

    def describe(self) -> dict:
        """JSON-ready description of states, parameters and presets."""
        return {
            "name": self.name,
            "description": self.description,
            "reference": self.reference,
            "states": [dict(vars(s)) for s in self.states],
            "parameters": [{"name": p.name, "unit": p.unit, "default": p.default, "bounds": list(p.bounds),
                            "log_scale": p.log_scale, "domain": p.domain.describe(), "description": p.description}
                           for p in self.parameters],
            "presets": {k: {"regime": v.regime, "i_ext_pA": v.i_ext, "params": dict(v.params),
                            "y0": list(v.y0), "description": v.description} for k, v in self.presets.items()},
        }

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}: states {self.state_names}, {self.n_params} parameters>"


def gate_mask(model: "NeuronModel", gate_states: Sequence[str] | None = None) -> np.ndarray:
    """Which states are gating variables in [0, 1] (bool array (S,)).

    ``gate_states`` names them explicitly; None picks the dimensionless states whose description
    mentions an (in)activation or a gate.
    """
    if gate_states is not None:
        for n in gate_states:
            model.state_index(n)  # raises UnknownNameError listing the states
        if model.state_names[0] in gate_states:
            raise ConfigurationError(f"State {model.state_names[0]!r} is the membrane voltage, not a gate.")
        return np.array([s.name in gate_states for s in model.states])
    out = []
    for k, s in enumerate(model.states):
        desc = s.description.lower()
        out.append(k > 0 and s.unit == "dimensionless" and ("activation" in desc or "gate" in desc))
    return np.array(out)


def quasi_steady_states(model: "NeuronModel", theta, v0, i0, guess, *, gates=None, iterations: int = 8,
                        gate_margin: float = 1e-6):
    """States (B, S) with the voltage at ``v0`` and every hidden state at rest there (V clamped).

    Each hidden state h_k solves ``dh_k/dt = 0`` at fixed V and the other states: diagonal Newton
    iterations from ``guess``, with the diagonal of the Jacobian from autograd through the model's own
    ``derivatives``; gating variables are kept inside (gate_margin, 1 − gate_margin). This is how lsq
    starts its shooting nodes and ga its sweeps from a recorded voltage.

    Parameters
    ----------
    model : NeuronModel
    theta : torch.Tensor
        Parameters (B, P), canonical units.
    v0 : torch.Tensor
        Clamped voltages (B,) in mV.
    i0 : torch.Tensor
        Injected currents (B,) in pA.
    guess : array_like
        Starting values (S,) of the states (e.g. the preset's initial state); entry 0 is ignored.
    gates : array_like of bool, optional
        Which states are gating variables (S,); default :func:`gate_mask`.
    iterations : int
        Newton iterations.
    gate_margin : float
        Distance from 0 and 1 within which gating variables are clamped.

    Returns
    -------
    torch.Tensor
        (B, S), detached.
    """
    B, S = theta.shape[0], model.n_states
    kw = dict(dtype=theta.dtype, device=theta.device)
    if S == 1:
        return v0[:, None]
    gate_t = torch.as_tensor(np.asarray(gate_mask(model, None) if gates is None else gates, dtype=bool)[1:],
                             device=theta.device)
    h = torch.as_tensor(np.asarray(guess, dtype=float)[1:], **kw).expand(B, S - 1).clone()
    p = {name: theta[:, k] for k, name in enumerate(model.param_names)}
    for _ in range(iterations):
        hr = h.detach().requires_grad_(True)
        with torch.enable_grad():
            f = model.derivatives(0.0, (v0,) + tuple(hr[:, k] for k in range(S - 1)), p, i0)[1:]
            fv, diag = [], []
            for k in range(S - 1):
                fk = f[k] if isinstance(f[k], torch.Tensor) else torch.as_tensor(f[k], **kw)
                fv.append(fk.expand(B).detach())
                g = torch.autograd.grad(fk.sum(), hr, retain_graph=True, allow_unused=True)[0] \
                    if fk.requires_grad else None
                diag.append(torch.zeros(B, **kw) if g is None else g[:, k])
        fv_t, dg = torch.stack(fv, 1), torch.stack(diag, 1).detach()
        ok = (dg.abs() > 1e-12) & torch.isfinite(fv_t)
        h = torch.where(ok, h - fv_t / torch.where(ok, dg, torch.ones_like(dg)), h)
        h = torch.where(gate_t, h.clamp(gate_margin, 1 - gate_margin), h)
    return torch.cat([v0[:, None], h.detach()], 1)

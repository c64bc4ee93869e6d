"""The learned vector fields, each usable by the core's :func:`~neo_pinn.toolkit.step` (they have ``derivatives``).

Every field evaluates all ensemble members at once: a state is a tuple of (E, B) tensors (E members, B points),
a parameter a (E, 1) tensor, the injected current (pA) broadcasts against (E, B).

* :class:`NeuralField` — an MLP over every state and the current (the seed's set-up); inputs are each
  state scaled by its spread, outputs each derivative in units of its own spread (scale-aware).
* :class:`HybridField` — the model's own ``derivatives`` plus a learned current (pA) injected with the
  stimulus: the "unexplained current" of the membrane equation.
* :class:`MechanisticField` — the model alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Scales", "MemberMLP", "NeuralField", "HybridField", "PointwiseHybrid", "MechanisticField"]


@dataclass(frozen=True)
class Scales:
    """Centres and spreads of the states, their derivatives and the current (canonical units; from the data).

    Attributes
    ----------
    mean, spread : numpy.ndarray
        (S,) centre and spread of each state.
    rate : numpy.ndarray
        (S,) spread of each state's derivative over the window (state units per ms): the scale of its residual.
    current_mean, current_spread : float
        Centre and spread of the injected current, pA.
    membrane_current : float
        Spread of the membrane current, pA: the unit of the correction current.
    """

    mean: np.ndarray
    spread: np.ndarray
    rate: np.ndarray
    current_mean: float
    current_spread: float
    membrane_current: float


class MemberMLP(torch.nn.Module):
    """E independent tanh MLPs evaluated as one batch: (E, B, n_in) → (E, B, n_out).

    Parameters
    ----------
    members, n_in, n_out, width, depth : int
    last_gain : float
        Scale of the last layer's initial weights (small: the field starts near zero).
    dtype, device
        Of the weights.
    """

    def __init__(self, members: int, n_in: int, n_out: int, width: int, depth: int, last_gain: float = 0.1,
                 dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> None:
        super().__init__()
        dims = [n_in] + [width] * depth + [n_out]
        self.weights = torch.nn.ParameterList()
        self.biases = torch.nn.ParameterList()
        for k, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            gain = last_gain if k == len(dims) - 2 else 1.0
            w = torch.randn(members, a, b, dtype=dtype, device=device) * (gain * math.sqrt(1.0 / a))
            self.weights.append(torch.nn.Parameter(w))
            self.biases.append(torch.nn.Parameter(torch.zeros(members, 1, b, dtype=dtype, device=device)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer's activations (E, B, width): the output is linear in them."""
        for w, b in zip(self.weights[:-1], self.biases[:-1]):
            x = torch.tanh(torch.baddbmm(b, x, w))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.biases[-1], self.features(x), self.weights[-1])


def _as_members(x, like: torch.Tensor) -> torch.Tensor:
    """``x`` (a number or a tensor broadcasting against (E, B)) as an (E, B) tensor."""
    return torch.as_tensor(x, dtype=like.dtype, device=like.device).expand_as(like)


class _Normalised(torch.nn.Module):
    """Inputs of a network: each state by its centre and spread, and the current by its own."""

    def __init__(self, scales: Scales, dtype: torch.dtype, device) -> None:
        super().__init__()
        kw = dict(dtype=dtype, device=device)
        self.register_buffer("mu", torch.tensor(scales.mean, **kw))
        self.register_buffer("sd", torch.tensor(np.maximum(scales.spread, 1e-9), **kw))
        self.register_buffer("rate", torch.tensor(np.maximum(scales.rate, 1e-12), **kw))
        self.i_mean = float(scales.current_mean)
        self.i_spread = float(max(scales.current_spread, 1e-9))
        self.membrane_current = float(scales.membrane_current)

    def inputs(self, state, i_ext) -> torch.Tensor:
        cols = [(y - self.mu[s]) / self.sd[s] for s, y in enumerate(state)]
        cols.append((_as_members(i_ext, state[0]) - self.i_mean) / self.i_spread)
        return torch.stack(cols, -1)


class NeuralField(_Normalised):
    """An MLP vector field over every state and the current; output s is dy_s/dt in units of ``rate[s]``."""

    def __init__(self, members: int, scales: Scales, width: int, depth: int, dtype: torch.dtype, device) -> None:
        super().__init__(scales, dtype, device)
        n = len(scales.mean)
        self.net = MemberMLP(members, n + 1, n, width, depth, dtype=dtype, device=device)

    def derivatives(self, t, state, p, i_ext):  # noqa: ARG002 - the step's signature
        out = self.net(self.inputs(state, i_ext))
        return tuple(out[..., s] * self.rate[s] for s in range(out.shape[-1]))

    def correction(self, state, i_ext):  # noqa: ARG002
        return None


class HybridField(_Normalised):
    """The model's derivatives with a learned current (pA, an MLP of the voltage, of every state, or of the voltage
    and a learned slow gate) added to the stimulus.

    A current of every state can mimic any conductance (``gK n⁴ (V − EK)`` is a function of the states), so only
    its penalty decides what it takes from the free parameters; a current of the voltage alone cannot follow the
    gates' hysteresis over a spike, so the gating currents stay with the model (a leak still cannot be told
    from it: fix the passive parameters). ``inputs="gated"`` adds a state of the field's own, a gate ``z`` in
    [0, 1] with ``dz/dt = (z∞(V) − z)/τ(V)`` (``z∞`` and ``log τ`` MLPs of the voltage, ms), and the
    current is an MLP of the voltage and ``z``: a missing current with kinetics of its own (an adapting K⁺ current,
    say), which no function of the present state can be. The gate is the last state.
    """

    def __init__(self, model, members: int, scales: Scales, width: int, dtype: torch.dtype, device,
                 inputs: str = "voltage", gate_ms: float = 50.0) -> None:
        super().__init__(scales, dtype, device)
        self.model = model
        self.gated = inputs == "gated"
        n = len(scales.mean)
        self.input_index = (0,) if inputs == "voltage" else (0, n - 1) if self.gated else tuple(range(n))
        self.n_inputs = len(self.input_index)
        self.net = MemberMLP(members, self.n_inputs, 1, width, 2, last_gain=0.01, dtype=dtype, device=device)
        if self.gated:  # z∞(V) starts a random sigmoid; τ(V) starts flat at gate_ms
            self.gate_net = MemberMLP(members, 1, 1, width, 1, last_gain=1.0, dtype=dtype, device=device)
            self.tau_net = MemberMLP(members, 1, 1, width, 1, last_gain=0.01, dtype=dtype, device=device)
            self.log_tau = torch.nn.Parameter(torch.full((members, 1), math.log(gate_ms), dtype=dtype, device=device))

    def _scaled(self, state) -> torch.Tensor:
        return torch.stack([(state[s] - self.mu[s]) / self.sd[s] for s in self.input_index], -1)

    def features(self, state) -> torch.Tensor:
        """The correction network's last hidden activations (E, B, width) at ``state``."""
        return self.net.features(self._scaled(state))

    def correction(self, state, i_ext):  # noqa: ARG002
        """The learned current (E, B), pA."""
        return self.net(self._scaled(state))[..., 0] * self.membrane_current

    def gate_kinetics(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The gate's steady state z∞ and time constant τ (ms) at voltages ``v`` (E, B), mV (``inputs="gated"``)."""
        x = ((v - self.mu[0]) / self.sd[0]).unsqueeze(-1)
        return torch.sigmoid(self.gate_net(x)[..., 0]), torch.exp(self.log_tau + self.tau_net(x)[..., 0])

    @torch.no_grad()
    def gate_ms_at(self, v: float) -> np.ndarray:
        """(E,) the gate's time constant (ms) of each member at voltage ``v`` (mV) (``inputs="gated"``)."""
        at = torch.full((self.log_tau.shape[0], 1), float(v), dtype=self.mu.dtype, device=self.mu.device)
        return self.gate_kinetics(at)[1][:, 0].cpu().numpy()

    def derivatives_with(self, t, state, p, i_ext, current):
        """The derivatives with ``current`` (E, B), pA, as the learned current (and the gate's, when gated)."""
        if not self.gated:
            return self.model.derivatives(t, state, p, i_ext + current)
        z_inf, tau = self.gate_kinetics(state[0])
        return tuple(self.model.derivatives(t, state[:-1], p, i_ext + current)) + ((z_inf - state[-1]) / tau,)

    def derivatives(self, t, state, p, i_ext):
        return self.derivatives_with(t, state, p, i_ext, self.correction(state, i_ext))

    def last_layer(self) -> torch.Tensor:
        """The correction's output weights and bias per member, (E, width + 1), in units of the membrane current."""
        return torch.cat([self.net.weights[-1][..., 0], self.net.biases[-1][:, 0]], 1)

    @torch.no_grad()
    def set_last_layer(self, values: torch.Tensor) -> None:
        """Set what :meth:`last_layer` returns."""
        self.net.weights[-1].copy_(values[:, :-1, None])
        self.net.biases[-1].copy_(values[:, None, -1:])

    def with_last_layer(self, values: torch.Tensor) -> "PointwiseHybrid":
        """This field with its correction's output layer given per point: ``values`` (E, B, width + 1)."""
        return PointwiseHybrid(self, values)


class PointwiseHybrid:
    """A :class:`HybridField` whose correction has its own output layer at every point (E, B, width + 1): the
    perturbed copies of a Gauss–Newton step, run as extra points of each member (held hidden layers)."""

    def __init__(self, field: HybridField, values: torch.Tensor) -> None:
        self.field, self.values = field, values

    def correction(self, state, i_ext):  # noqa: ARG002
        """The learned current (E, B), pA."""
        out = (self.field.features(state) * self.values[..., :-1]).sum(-1) + self.values[..., -1]
        return out * self.field.membrane_current

    def derivatives(self, t, state, p, i_ext):
        return self.field.derivatives_with(t, state, p, i_ext, self.correction(state, i_ext))


class MechanisticField(torch.nn.Module):
    """The model alone (no learned part)."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def derivatives(self, t, state, p, i_ext):
        return self.model.derivatives(t, state, p, i_ext)

    def correction(self, state, i_ext):  # noqa: ARG002
        return None

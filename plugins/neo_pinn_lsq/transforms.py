"""Unconstrained coordinates for the node states of the multiple-shooting segments.

The voltage and any unbounded state are used as they are; gating variables go through a logistic, so
they stay in (0, 1). (The free parameters use the core's :class:`neo_pinn.transforms.LogLogit`, formerly
``ParamTransform`` here.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from neo_pinn.models.base import gate_mask

__all__ = ["StateTransform", "gate_mask"]


def __getattr__(name: str):
    if name == "ParamTransform":  # deprecated alias: the core's LogLogit has the same formulas
        import warnings

        from neo_pinn.transforms import LogLogit

        warnings.warn("neo_pinn_lsq.transforms.ParamTransform is deprecated; use neo_pinn.transforms.LogLogit.",
                      DeprecationWarning, stacklevel=2)
        return LogLogit
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class StateTransform:
    """Node-state coordinates u: identity for the voltage and unbounded states, logit for gates.

    Gate logits are kept in ``[-U_MAX, U_MAX]`` (a gate in [6e-6, 1 − 6e-6]) and one step moves a logit
    by at most ``STEP_GATE``, other states by at most ``STEP_SCALE`` times their typical size, so that a
    gate cannot jump into the flat, saturated part of the logistic in one Gauss–Newton step.
    """

    U_MAX = 12.0
    STEP_GATE = 3.0
    STEP_SCALE = 2.0

    def __init__(self, gates: np.ndarray, device: torch.device, scales: Sequence[float] | None = None,
                 dtype: torch.dtype = torch.float64) -> None:
        self.gates = torch.tensor(np.asarray(gates, dtype=bool), device=device)
        sc = np.ones(len(gates)) if scales is None else np.asarray(scales, dtype=float)
        self.max_step = torch.tensor(np.where(gates, self.STEP_GATE, self.STEP_SCALE * sc), dtype=dtype, device=device)

    def to_u(self, x: torch.Tensor) -> torch.Tensor:
        xc = x.clamp(1e-6, 1 - 1e-6)
        return self.clip(torch.where(self.gates, torch.log(xc / (1 - xc)), x))

    def clip(self, u: torch.Tensor) -> torch.Tensor:
        """Keep gate logits inside ``[-U_MAX, U_MAX]``."""
        return torch.where(self.gates, u.clamp(-self.U_MAX, self.U_MAX), u)

    def step(self, u: torch.Tensor, du: torch.Tensor) -> torch.Tensor:
        """``u + du`` with the step limited per component and gate logits kept in range."""
        du = torch.maximum(torch.minimum(du, self.max_step), -self.max_step)
        return self.clip(u + du)

    def from_u(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x and dx/du (shaped like ``u``)."""
        s = torch.sigmoid(u)
        return torch.where(self.gates, s, u), torch.where(self.gates, s * (1 - s), torch.ones_like(u))

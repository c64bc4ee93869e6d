"""Element-wise maths that works on torch tensors and numpy arrays alike.

Model equations are written once, against these functions, so the same code runs in the batched torch
simulator (CPU/GPU, autograd, torch.compile) and in the scipy reference solver (plain numpy, fast
per-call). Dispatch is a single isinstance check, which torch.compile traces away.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["exp", "expm1", "tanh", "cosh", "sigmoid", "where", "abs_", "safe_x_over_expm1"]


def _t(x) -> bool:
    return isinstance(x, torch.Tensor)


def exp(x):
    return torch.exp(x) if _t(x) else np.exp(x)


def expm1(x):
    return torch.expm1(x) if _t(x) else np.expm1(x)


def tanh(x):
    return torch.tanh(x) if _t(x) else np.tanh(x)


def cosh(x):
    return torch.cosh(x) if _t(x) else np.cosh(x)


def sigmoid(x):
    """1 / (1 + exp(−x))."""
    return torch.sigmoid(x) if _t(x) else 0.5 * (1.0 + np.tanh(0.5 * x))


def where(cond, a, b):
    return torch.where(cond, a, b) if (_t(cond) or _t(a) or _t(b)) else np.where(cond, a, b)


def abs_(x):
    return torch.abs(x) if _t(x) else np.abs(x)


def safe_x_over_expm1(u, eps: float = 1e-4):
    """u / (1 − exp(−u)) with its removable singularity at u = 0 (limit 1) guarded.

    The masked branch is evaluated at a harmless point, so neither the value nor the autograd
    gradient is NaN at u = 0 (a plain ``where`` would leak a NaN gradient from the 0/0 branch).
    """
    small = abs_(u) < eps
    u_safe = where(small, u * 0 + eps, u)
    return where(small, 1.0 + 0.5 * u, u_safe / (-expm1(-u_safe)))

"""Training of an ensemble of physics-informed networks, all members and segments as one batch.

:func:`train_members` is the engine behind the ``pinn`` backend (and the benchmark, which hands it one
member per initial-guess draw). Members never interact: each has its own network weights, trainable
frequencies, biophysical parameters, loss weights and optimiser state, so ``E`` members trained together
give exactly what ``E`` separate fits would, at the cost of one batched pass.

The work is split by idea: :class:`~neo_pinn_pinn.ensemble_setup.EnsembleSetup` (screened starts, segments,
warm start, scales), :class:`~neo_pinn_pinn.objective.EnsembleObjective` (points and loss terms) and
:class:`~neo_pinn_pinn.trainer.EnsembleTrainer` (optimisers, stages, balancing, records, evaluation).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from neo_pinn.estimator import FitContext
from neo_pinn.problem import EstimationProblem

from .config import PINNConfig
from .trainer import EnsembleTrainer, Trained

__all__ = ["Trained", "EnsembleTrainer", "train_members"]


def train_members(problem: EstimationProblem, inits: np.ndarray, cfg: PINNConfig | Mapping[str, Any],
                  ctx: FitContext) -> Trained:
    """Train ``E = len(inits)`` independent PINNs, one per row of initial free-parameter values.

    Parameters
    ----------
    problem : EstimationProblem
    inits : numpy.ndarray
        (E, F) initial guesses of the free parameters (canonical units).
    cfg : PINNConfig or mapping
        The backend's configuration, or its options by flat name (see :class:`~neo_pinn_pinn.config.PINNConfig`).
    ctx : FitContext
        Seed, device, dtype and progress flag.

    Returns
    -------
    Trained

    Raises
    ------
    EstimationError
        The loss or the parameters became non-finite.
    """
    config = cfg if isinstance(cfg, PINNConfig) else PINNConfig.from_options(dict(cfg))
    return EnsembleTrainer(problem, inits, config, ctx).train()

"""The options of the ``amortized`` backend: a frozen, typed configuration checked when the backend is made."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from neo_pinn.toolkit import BOOL, NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT, BackendConfig, Check, option, optional

from .ood import DEFAULT_RMSE_FACTOR, DEFAULT_Z_LIMIT

__all__ = ["AmortizedConfig"]


def _path_text(value: Any) -> Any:
    """A path given as ``pathlib.Path`` (or any ``os.PathLike``) becomes its text; anything else is left as it is."""
    return os.fspath(value) if isinstance(value, os.PathLike) else value


_PATH = Check(lambda x: x is None or (isinstance(x, str) and bool(x.strip())),
              "give the folder of a trained estimator (written by AmortizedEstimator.save)")


@dataclass(frozen=True)
class AmortizedConfig(BackendConfig):
    """Options of :class:`~neo_pinn_amortized.backend.Amortized` (see its docstring).

    ``estimator`` is required by the backend (its default None only lets the defaults be listed).
    """

    estimator: str | None = option(None, _PATH, "folder of a trained estimator (manifest.json + weights.npz); "
                                   "required: --option estimator=PATH", convert=_path_text)
    n_samples: int = option(1000, POSITIVE_INT, "posterior draws of the free parameters in result.samples")
    ood_z: float = option(DEFAULT_Z_LIMIT, POSITIVE, "out-of-distribution: robust z-score limit of a trace feature "
                          "outside the training range")
    ood_rmse_factor: float = option(DEFAULT_RMSE_FACTOR, POSITIVE,
                                    "out-of-distribution: largest RMSE of the simulated estimate, in multiples of "
                                    "the larger of the noise level and the posterior-predictive 95 % RMSE")
    ood_draws: int = option(64, NON_NEGATIVE_INT, "posterior-predictive draws simulated for the reconstruction "
                            "check (0: compare with the noise level only)")
    resample: bool = option(False, BOOL, "read a recording sampled k times faster than the estimator's protocol at "
                            "every k-th sample (k a whole number; the training traces are such point samples)")
    num_threads: int | None = option(1, optional(POSITIVE_INT),
                                     "torch CPU threads during the fit (None: leave torch's setting)")

"""The options of the ``lsq`` backend: a frozen, typed configuration checked when the backend is made."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from neo_pinn.config import (BOOL, POSITIVE, POSITIVE_INT, STRINGS, BackendConfig, Check, is_number, one_of, option,
                             optional)
from neo_pinn.simulation import METHODS

__all__ = ["LsqConfig", "RANDOM_STARTS"]

#: how the starts after the first are drawn
RANDOM_STARTS = ("bounds", "jitter")


def _valid_weights(value: Any) -> bool:
    if isinstance(value, (str, bytes)):
        return False
    values = (value,) if is_number(value) else tuple(value)
    return bool(values) and all(is_number(x) and x > 0 for x in values)


_WEIGHTS = Check(_valid_weights, "give a positive weight or a non-empty sequence of positive weights")


@dataclass(frozen=True)
class LsqConfig(BackendConfig):
    """Options of :class:`~neo_pinn_lsq.backend.LeastSquares` (see its docstring for the algorithm)."""

    n_starts: int = option(8, POSITIVE_INT, "starts, optimised as one batch (start 0: the problem's initial guess)")
    random_starts: str = option("bounds", one_of(*RANDOM_STARTS),
                                "other starts: 'bounds' (log-)uniform in bounds; 'jitter' log-normal around start 0")
    jitter: float = option(0.5, POSITIVE, "spread of 'jitter' starts (standard deviation of log θ)")
    max_iter: int = option(200, POSITIVE_INT, "Levenberg–Marquardt iterations in all, over all stages")
    tol: float = option(1e-7, POSITIVE, "relative cost decrease below which a start has converged in the last stage")
    stage_tol: float = option(1e-3, POSITIVE, "convergence tolerance of the earlier homotopy stages")
    stage_iter: int = option(25, POSITIVE_INT, "iteration cap of each earlier homotopy stage")
    continuity: tuple[float, ...] | float = option(
        (1.0, 10.0, 100.0, 1e3), _WEIGHTS,
        "continuity weight w per homotopy stage: a 1 mV defect weighs like w samples 1 mV off (a number: one stage)")
    segment_ms: float | None = option(5.0, optional(POSITIVE),
                                      "multiple-shooting segment length, ms (None: single shooting per sweep)")
    dt: float | None = option(None, optional(POSITIVE),
                              "integration step, ms, dividing the sampling interval (None: automatic)")
    max_dt: float = option(0.05, POSITIVE, "largest automatic integration step, ms")
    method: str = option("rk4", one_of(*METHODS), "fixed-step integrator of the simulator")
    subsample: int = option(1, POSITIVE_INT, "use every k-th sample in the residual (integration is unaffected)")
    success_tol: float = option(1e-3, POSITIVE, "a start succeeds within this relative tolerance of the best cost")
    abandon: float = option(10.0, POSITIVE, "exact phase: stop polishing starts whose cost exceeds this × the best")
    lambda0: float = option(1e-2, POSITIVE, "initial Levenberg–Marquardt damping")
    max_step: float = option(1.0, POSITIVE, "largest change of a search coordinate per iteration (log units if log-scale)")
    linear_start: bool = option(True, BOOL, "solve each start's parameters that enter the voltage equation "
                                "linearly (conductances) from the recording, with the hidden states driven by it")
    node_states: str = option("driven", one_of("driven", "quasi_steady"),
                              "hidden states at the shooting nodes: integrated with the recorded voltage in place of V "
                              "('driven') or at rest at the node's voltage ('quasi_steady')")
    gate_states: tuple[str, ...] | None = option(None, optional(STRINGS),
                                                 "states kept in (0, 1) by a logistic (None: the model's gates)")
    num_threads: int | None = option(1, optional(POSITIVE_INT),
                                     "torch CPU threads during the fit (None: leave torch's setting)")
    jacobian: str = option("forward", one_of("forward", "reverse"), "autograd mode of the segment Jacobians")

    @property
    def continuity_weights(self) -> tuple[float, ...]:
        """The homotopy stages' continuity weights as floats (``continuity`` may be one number: one stage)."""
        w = self.continuity
        return (float(w),) if is_number(w) else tuple(float(x) for x in w)

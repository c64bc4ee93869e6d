"""The options of the ``ga`` backend: a frozen, typed configuration checked when the backend is made.

The options sit in four groups (search, scoring, simulation, refinement); users give each by its own name
(``GeneticAlgorithm(pop_size=32, refine="lsq")``, ``--option pop_size=32``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from neo_pinn.toolkit import (MAPPING, METHODS, NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT,
                              BackendConfig, Check, OptionGroup, between, group, is_integer, one_of, option,
                              optional)

__all__ = ["GAConfig", "SearchOptions", "ScoringOptions", "SimulationOptions", "RefinementOptions", "TRACES",
           "OBJECTIVES", "ENGINES", "REFINE", "DTYPES"]

#: values of the ``trace`` option
TRACES = ("rmse", "phase_plane", "none")
#: values of the ``objectives`` option
OBJECTIVES = ("grouped", "features")
#: values of the ``engine`` option
ENGINES = ("auto", "torch", "fused")
#: values of the ``refine`` option
REFINE = ("none", "lsq", "cmaes", "cmaes+lsq")
#: values of the ``dtype`` option
DTYPES = ("float32", "float64", "context")

AT_LEAST_4 = Check(lambda x: is_integer(x) and x >= 4, "give at least 4 individuals (an integer)")
TRUE_OR_FALSE = Check(lambda x: isinstance(x, (bool, np.bool_)), "give true or false")
FEATURE_LIST = Check(lambda x: x is None or (isinstance(x, tuple) and len(x) > 0
                                              and all(isinstance(s, str) for s in x)),
                     "give a list of feature names or None")


def _feature_tuple(value: Any) -> Any:
    """``"a, b"`` → ``("a", "b")`` (the command line gives one string); other values as given."""
    if isinstance(value, str):
        return tuple(x.strip() for x in value.split(",") if x.strip())
    if isinstance(value, list):
        return tuple(value)
    return value


@dataclass(frozen=True)
class SearchOptions(OptionGroup):
    """NSGA-II: population, budget, stopping, variation and the near-optimal set."""

    pop_size: int = option(64, AT_LEAST_4, "individuals per generation, all simulated in one call")
    n_gen: int = option(60, POSITIVE_INT, "most generations (the first population counts as one)")
    max_evals: int | None = option(None, optional(POSITIVE_INT), "most evaluations (None: only n_gen limits)")
    screen: int = option(1024, NON_NEGATIVE_INT, "Latin-hypercube individuals scored once before the search, the "
                         "first population chosen from them by rank and crowding (≤ pop_size: no screen)")
    patience: int = option(15, POSITIVE_INT, "stop after this many generations without an improvement by ftol")
    ftol: float = option(1e-3, POSITIVE, "relative improvement of the best compromise or of any objective's best")
    crossover_eta: float = option(15.0, POSITIVE, "SBX crossover distribution index")
    crossover_prob: float = option(0.9, between(0.0, 1.0), "SBX crossover probability")
    mutation_eta: float = option(20.0, POSITIVE, "polynomial-mutation distribution index")
    near_optimal: float = option(0.25, POSITIVE, "relative score margin of the near-optimal members behind std")


@dataclass(frozen=True)
class ScoringOptions(OptionGroup):
    """The objectives: feature errors (see :mod:`neo_pinn_ga.evaluate`) and the trace term."""

    objectives: str = option("grouped", one_of(*OBJECTIVES),
                             "'grouped': one objective per feature group; 'features': one per feature")
    features: tuple[str, ...] | None = option(None, FEATURE_LIST, "feature names to use (None: all of the groups')",
                                              convert=_feature_tuple)
    trace: str = option("rmse", one_of(*TRACES), "trace objective: voltage RMSE, phase-plane distance or none")
    trace_sigma_mv: float = option(1.0, POSITIVE, "scale of the RMSE objective, mV")
    trace_smooth_ms: float = option(0.0, NON_NEGATIVE, "box filter on both traces before the RMSE, ms (0: raw)")
    rel_tol: float = option(0.05, POSITIVE, "relative feature tolerance: σ_f = max(rel_tol·|f_rec|, floor_f)")
    penalty: float = option(10.0, POSITIVE, "error (σ units) of a feature defined in only one of model and recording")
    saturate: bool = option(True, TRUE_OR_FALSE, "report an error r defined on both sides as penalty·r/(penalty + r)")
    smooth_ms: float = option(0.5, NON_NEGATIVE, "box filter on recorded and simulated voltage before features, ms")

    def _check(self) -> None:
        if self.features is None:
            return
        from neo_pinn.features import FEATURE_NAMES

        from .evaluate import GROUPS

        known = set(FEATURE_NAMES) | {n for names in GROUPS.values() for n in names}
        unknown = [x for x in self.features if x not in known]
        if unknown:
            raise self.bad("features", f"unknown feature(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")


@dataclass(frozen=True)
class SimulationOptions(OptionGroup):
    """How a population is simulated and scored."""

    settle_ms: float = option(0.0, NON_NEGATIVE, "pre-run at each sweep's first current before it starts, ms")
    dt: float | None = option(None, optional(POSITIVE), "integration step dividing the sampling interval, ms "
                              "(None: the largest ≤ max_dt)")
    max_dt: float = option(0.05, POSITIVE, "largest automatic integration step, ms")
    method: str = option("rk4", one_of(*METHODS), "fixed-step integrator")
    dtype: str = option("float32", one_of(*DTYPES), "precision of the population ('context': fit's dtype); the "
                        "chosen solution is re-simulated in float64")
    compile: bool | str = option("auto", one_of(True, False, "auto"),
                                 "torch.compile the step loop ('auto': when the search integrates enough steps)")
    engine: str = option("auto", one_of(*ENGINES), "'torch'/'auto': batched simulator and torch features; "
                         "'fused': one Triton launch per generation with online features (CUDA, float32)")


@dataclass(frozen=True)
class RefinementOptions(OptionGroup):
    """Local refinement of the GA's estimate (global → local)."""

    refine: str = option("cmaes+lsq", one_of(*REFINE), "CMA-ES on the compromise score, lsq, CMA-ES then lsq, or none")
    refine_starts: int = option(2, POSITIVE_INT, "lsq starts: the current estimate and the next best front members")
    refine_options: Mapping[str, Any] = option({}, MAPPING, "options of the lsq refinement")
    refine_gens: int = option(40, POSITIVE_INT, "most CMA-ES generations (pop_size candidates each)")
    refine_sigma: float = option(0.03, POSITIVE, "initial CMA-ES step, a fraction of each parameter's (log-)range")


@dataclass(frozen=True)
class GAConfig(BackendConfig):
    """Options of :class:`~neo_pinn_ga.backend.GeneticAlgorithm`."""

    search: SearchOptions = group(SearchOptions)
    scoring: ScoringOptions = group(ScoringOptions)
    simulation: SimulationOptions = group(SimulationOptions)
    refinement: RefinementOptions = group(RefinementOptions)
    num_threads: int | None = option(1, optional(POSITIVE_INT), "torch CPU threads during the fit (None: leave "
                                     "torch's setting)")

"""Refinement of the GA's estimate (global → local): the CMA-ES polish, the lsq refinement, and how each
stage is judged.

``refine="cmaes"`` minimises the best-compromise score (the sum of objectives that picks the GA's estimate)
with CMA-ES from that estimate, scoring each generation in one batched call; it needs no gradient, so it
works where lsq's multiple shooting cannot close (long bursting recordings). ``refine="lsq"`` continues
from the current estimate and the next best front members with the ``lsq`` backend, run by the core's
:func:`neo_pinn.estimator.refine` inside this fit. ``"cmaes+lsq"`` chains both. A stage's estimate is taken
only when it improves on the one before: a lower score for CMA-ES, a lower free-running voltage RMSE for
lsq (lsq's own states restart at every segment node, so they can fit a trace its parameters do not
produce).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

from neo_pinn.problem import EstimationProblem
from neo_pinn.toolkit import FitContext, UnitCube, refine, voltage_rmse

from .evaluate import PopulationEvaluator
from .search import progress_bar, run_cmaes

__all__ = ["Solution", "polish_cmaes", "refine_lsq", "cmaes_improves", "best_of_lsq", "lsq_improves", "cmaes_record",
           "lsq_record"]


@dataclass(frozen=True)
class Solution:
    """One parameter vector simulated free-running in float64, as every stage is judged.

    Attributes
    ----------
    theta : numpy.ndarray
        Free-parameter values (F,), canonical units.
    states : list of numpy.ndarray
        Per sweep (T, S) on the sweep's samples.
    per_sweep : list of dict
        Per-sweep recorded/fitted features and errors (:meth:`PopulationEvaluator.reconstruct`).
    objectives : numpy.ndarray
        (n_objectives,).
    rmse : float
        Voltage RMSE against the recording, mV.
    """

    theta: np.ndarray
    states: list
    per_sweep: list
    objectives: np.ndarray
    rmse: float

    @classmethod
    def simulate(cls, evaluator: PopulationEvaluator, theta: np.ndarray) -> "Solution":
        """Simulate ``theta`` (F,) on every sweep with the search's initial-state rule."""
        states, per_sweep, objectives = evaluator.reconstruct(theta)
        return cls(theta, states, per_sweep, objectives, voltage_rmse(evaluator.problem.traces, states))


def polish_cmaes(evaluator: PopulationEvaluator, space: UnitCube, x0: np.ndarray, *, sigma0: float, pop_size: int,
                 n_gen: int, patience: int, ftol: float, seed: int, progress: bool = False) -> dict[str, Any]:
    """CMA-ES on the best-compromise score (sum of objectives) from ``x0``, scored by the search's evaluator.

    Candidates come in batches of ``pop_size``, so a kernel the search compiled for that batch is reused.

    Parameters
    ----------
    evaluator : PopulationEvaluator
    space : UnitCube
    x0 : numpy.ndarray
        Start (F,) in normalised coordinates.
    sigma0, pop_size, n_gen, patience, ftol, seed
        As :func:`neo_pinn_ga.search.run_cmaes`.
    progress : bool
        Show a progress bar.

    Returns
    -------
    dict
        :func:`~neo_pinn_ga.search.run_cmaes`'s output and ``seconds`` (wall time, s).
    """
    bar = progress_bar(progress, n_gen, "ga refine (CMA-ES)", "gen")

    def on_generation(rec: dict) -> None:
        if bar is not None:
            bar.update(1)
            bar.set_postfix({"score": f"{rec['best_score']:.4g}", "sigma": f"{rec['sigma']:.3g}"})

    start = time.perf_counter()
    try:
        out = run_cmaes(lambda x: evaluator.evaluate_population(space.to_theta(x)).sum(1), x0, sigma0=sigma0,
                        pop_size=pop_size, n_gen=n_gen, patience=patience, ftol=ftol, seed=seed,
                        on_generation=on_generation)
    finally:
        if bar is not None:
            bar.close()
    out["seconds"] = time.perf_counter() - start
    return out


def refine_lsq(problem: EstimationProblem, ctx: FitContext, starts: np.ndarray,
               options: Mapping[str, Any]) -> dict[str, Any]:
    """Run ``lsq`` (one start each, float64) from each row of ``starts`` (k, F) inside this fit; keep the lowest cost.

    Returns
    -------
    dict
        ``free_values`` and ``std`` of the best fit, its (segment) ``states``, its ``cost``, and every
        start's ``costs`` (None where not finite) and ``starts``.
    """
    fits = refine(problem, ctx, starts, backend="lsq", options={"n_starts": 1} | dict(options), dtype=torch.float64)
    costs = []
    for res in fits:
        cost = float(res.metrics.get("cost", math.inf))
        costs.append(cost if math.isfinite(cost) else None)
    k = int(np.argmin([c if c is not None else math.inf for c in costs]))
    res = fits[k]
    return {"free_values": {n: res[n].value for n in problem.free_names},
            "std": {n: res[n].std for n in problem.free_names},
            "states": [f.states for f in res.fits], "cost": costs[k] if costs[k] is not None else math.inf,
            "max_defect": float(res.metrics.get("max_defect", math.inf)),
            "costs": costs, "starts": [[float(x) for x in row] for row in starts]}


def cmaes_improves(polish: Mapping[str, Any], ga_score: float) -> bool:
    """Whether the CMA-ES stage scores below the GA's best compromise."""
    return bool(polish["score"] < float(ga_score))


#: largest continuity defect (mV) at which lsq's segments count as one free-running trajectory
CONTINUOUS_MV = 1e-3


def best_of_lsq(problem: EstimationProblem, refined: Mapping[str, Any], simulated: Solution) -> Solution:
    """lsq's estimate with the better of two reconstructions: simulated by the search's initial-state rule, or lsq's
    own (from the initial states lsq fitted along with the parameters).

    The search starts every sweep from a rule (quasi-steady at the first recorded voltage, or the preset's state);
    lsq fits the initial state. Where a recording does not start at the rule's state (a sweep cut from a running
    cell), the exact least-squares optimum simulated from the rule's state can look worse than a biased estimate
    that compensates for the wrong start; judged with its own initial state it is not.
    """
    if not refined.get("max_defect", math.inf) <= CONTINUOUS_MV:  # lsq's segments are one trajectory only then
        return simulated
    own = Solution(simulated.theta, [np.asarray(s, dtype=float) for s in refined["states"]], simulated.per_sweep,
                   simulated.objectives, voltage_rmse(problem.traces, refined["states"]))
    return own if np.isfinite(own.rmse) and not own.rmse >= simulated.rmse else simulated


def lsq_improves(refined: Mapping[str, Any], lsq: Solution, current_rmse: float) -> bool:
    """Whether lsq's parameters, simulated free-running, fit the recording at least as well as the current estimate.

    lsq minimises the same trace misfit from the current estimate, so it should only improve it; a start that
    diverged or stalled is reported and not taken.
    """
    finite = all(math.isfinite(v) for v in refined["free_values"].values())
    return bool(finite and np.isfinite(lsq.rmse) and lsq.rmse <= current_rmse)


def cmaes_record(polish: Mapping[str, Any], taken: bool, values: Mapping[str, float],
                 rmse: float) -> tuple[dict, dict, dict]:
    """Metrics, ``history["refine"]`` entries and diagnostics of the CMA-ES stage.

    ``values`` and ``rmse`` are those of the estimate after the stage (CMA-ES's when ``taken``).
    """
    metrics = {"cmaes_score": polish["score"], "cmaes_taken": taken, "refine_taken": taken,
               "cmaes_generations": polish["n_gen"], "cmaes_evaluations": polish["n_evals"],
               "cmaes_s": polish["seconds"]}
    if taken:
        metrics["score"] = polish["score"]
        metrics["rmse_cmaes_mV"] = rmse
    history = {"cmaes": dict(values) if taken else None,
               "cmaes_best_score": [h["best_score"] for h in polish["history"]],
               "cmaes_sigma": [h["sigma"] for h in polish["history"]]}
    return metrics, history, {"cmaes_stopped": polish["stopped"]}


def lsq_record(problem: EstimationProblem, refined: Mapping[str, Any], lsq: Solution, taken: bool,
               seconds: float) -> tuple[dict, dict]:
    """Metrics and ``history["refine"]`` entries of the lsq stage."""
    metrics = {"rmse_lsq_mV": lsq.rmse, "rmse_lsq_segments_mV": voltage_rmse(problem.traces, refined["states"]),
               "refine_cost": refined["cost"], "refine_starts": len(refined["starts"]), "lsq_taken": taken,
               "lsq_s": seconds}
    if taken:
        metrics["refine_taken"] = True
    history = {"starts": refined["starts"], "costs": refined["costs"], "lsq": refined["free_values"]}
    return metrics, history

"""The ``ga`` backend: NSGA-II on electrophysiology features, the whole population simulated at once.

A fit (1) draws the first population as a Latin hypercube over the bounds (the initial guess, if any, as
its first member), optionally chosen from a larger screen; (2) runs NSGA-II with one batched simulation
per generation (:mod:`neo_pinn_ga.search`, objectives in :mod:`neo_pinn_ga.evaluate`; several sweeps are
fitted jointly); (3) takes the front member with the smallest sum of objectives as the estimate, its
parameters' spread over the near-optimal members as ``std``; (4) optionally refines it with CMA-ES, lsq or
both (:mod:`neo_pinn_ga.refinement`); (5) re-simulates the estimate in float64 for the hidden states.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import torch

from neo_pinn.errors import EstimationError
from neo_pinn.problem import EstimationProblem
from neo_pinn.toolkit import (EstimationResult, Estimator, FitContext, UnitCube, noise_from_residuals,
                              voltage_residuals, voltage_rmse)

from . import refinement, search
from .config import GAConfig
from .evaluate import DIVERGED, PopulationEvaluator

__all__ = ["GeneticAlgorithm"]

#: integration steps of a whole search above which ``compile="auto"`` compiles the simulator
COMPILE_MIN_STEPS = 100_000

_MOVED = {"SearchSpace": ("neo_pinn.transforms.UnitCube", UnitCube),
          "run_nsga2": ("neo_pinn_ga.search.run_nsga2", search.run_nsga2),
          "run_cmaes": ("neo_pinn_ga.search.run_cmaes", search.run_cmaes),
          "SCREEN_CHUNK_VALUES": ("neo_pinn_ga.search.SCREEN_CHUNK_VALUES", search.SCREEN_CHUNK_VALUES)}


def __getattr__(name: str) -> Any:
    if name in _MOVED:  # deprecated aliases of names that moved
        new, value = _MOVED[name]
        warnings.warn(f"neo_pinn_ga.backend.{name} is deprecated and will be removed; use {new} instead.",
                      DeprecationWarning, stacklevel=2)
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class GeneticAlgorithm(Estimator):
    """Multi-objective evolutionary search (NSGA-II) on feature errors, one batched simulation per generation.

    Options: :class:`~neo_pinn_ga.config.GAConfig`. The result holds the estimate (see the module
    docstring), ``samples`` = the parameters of the final front (best first), ``history`` = per-generation
    best objectives, best compromise score and parameters, throughput, the front's objectives, the
    per-sweep features of the estimate and, with refinement, ``history["refine"]`` (the GA's own estimate
    under ``"ga"`` and each stage's); ``diagnostics`` = why the search (and CMA-ES) stopped and, under
    ``"smoothing"``, the ``smooth_ms`` asked for and used and the spikes per sweep of the raw recording and
    of what the search saw (``smooth_ms`` shrinks, with a warning, until the box filter keeps every
    recorded spike: :meth:`~neo_pinn_ga.evaluate.PopulationEvaluator.check_smoothing`).

    Raises
    ------
    EstimationError
        Every individual's simulation diverged or missed the recording entirely.
    """

    name = "ga"
    description = "NSGA-II on electrophysiology features, whole population simulated per generation (pymoo)"
    config_class = GAConfig

    def _fit(self, problem: EstimationProblem, ctx: FitContext) -> EstimationResult:
        refine = self.config.refinement.refine
        evaluator = self._evaluator(problem, ctx)
        space = UnitCube(problem)
        initial, screened, screen_s = self._first_population(problem, ctx, evaluator, space)
        out = self._search(problem, ctx, evaluator, space, initial)
        front = self._best_compromise(out, space, len(evaluator.objective_names))
        polish = self._polish(evaluator, space, front.x, ctx) if refine in ("cmaes", "cmaes+lsq") else None
        cmaes_taken = polish is not None and refinement.cmaes_improves(polish, front.score)
        chosen = refinement.Solution.simulate(evaluator, space.to_theta(polish["x"]) if cmaes_taken else front.theta)
        metrics, history = self._search_record(problem, evaluator, space, out, front, chosen, screened, screen_s)
        diagnostics: dict[str, Any] = {"stopped": out["stopped"], "smoothing": evaluator.smoothing_diagnostics()}
        if refine != "none":
            rmse_ga = chosen.rmse if not cmaes_taken else voltage_rmse(problem.traces,
                                                                      evaluator.reconstruct(front.theta)[0])
            history["refine"] = {"ga": self._values(problem, front.theta)}
            metrics.update({"ga_score": front.score, "refine_taken": False, "rmse_ga_mV": rmse_ga})
        if polish is not None:
            m, h, d = refinement.cmaes_record(polish, cmaes_taken, self._values(problem, chosen.theta), chosen.rmse)
            metrics.update(m)
            history["refine"].update(h)
            diagnostics.update(d)
        front_theta = space.to_theta(front.front_x[front.order])
        std = {n: (float(s) if np.isfinite(s) else None) for n, s in zip(problem.free_names, front.spread)}
        values = self._values(problem, chosen.theta)
        if refine in ("lsq", "cmaes+lsq"):
            values, chosen, std = self._lsq_stage(problem, ctx, evaluator, front_theta, chosen, values, std,
                                                  metrics, history)
        samples = {n: [float(x) for x in front_theta[:, j]] for j, n in enumerate(problem.free_names)}
        init = {n: float(v) if v is not None else None for n, v in problem.initial_guess().items()}
        noise = noise_from_residuals(voltage_residuals(problem.traces, chosen.states), problem.noise)
        return EstimationResult.from_fit(problem, self.name, values, chosen.states, std=std, init=init, noise=noise,
                                         metrics=metrics, history=history, samples=samples, diagnostics=diagnostics,
                                         config={"objective_names": list(evaluator.objective_names)})

    # ------------------------------------------------------------------ steps of a fit
    def _evaluator(self, problem: EstimationProblem, ctx: FitContext) -> PopulationEvaluator:
        """The population scorer of the ``engine`` option, batched to ``pop_size`` rows."""
        c = self.config
        dtype = {"float32": torch.float32, "float64": torch.float64, "context": ctx.dtype}[c.simulation.dtype]
        if c.simulation.engine == "fused":
            from .fused_engine import FusedPopulationEvaluator

            evaluator = FusedPopulationEvaluator(problem, c, ctx.device, dtype)
        else:
            evaluator = PopulationEvaluator(problem, c, ctx.device, dtype)
        evaluator.batch_size = int(c.search.pop_size)
        if c.simulation.compile == "auto":
            # compiling costs a fixed time once, then every step runs much faster than eager execution (whose
            # cost per step hardly depends on the batch): worth it when the search integrates many steps
            evaluator.compile = evaluator.n_steps * int(c.search.n_gen) >= COMPILE_MIN_STEPS
        return evaluator

    def _first_population(self, problem: EstimationProblem, ctx: FitContext, evaluator: PopulationEvaluator,
                          space: UnitCube) -> tuple[np.ndarray, int, float]:
        """First population (pop_size, F), normalised; the number of individuals screened; the screen's time, s."""
        pop_size, n_screen = int(self.config.search.pop_size), int(self.config.search.screen)
        initial = search.latin_hypercube(pop_size, len(problem.free), ctx.rng)
        if any(v is not None for v in problem.initial_guess().values()):
            # row 0 of starting_points is the initial guess (parameters without one drawn in their bounds)
            initial[0] = space.to_x(problem.starting_points(1, ctx.rng)[0])
        if n_screen <= pop_size:
            return initial, 0, 0.0
        start = time.perf_counter()
        initial = search.screen_population(evaluator, space, initial, n_screen, ctx.rng, progress=ctx.progress)
        return initial, n_screen, time.perf_counter() - start

    def _search(self, problem: EstimationProblem, ctx: FitContext, evaluator: PopulationEvaluator, space: UnitCube,
                initial: np.ndarray) -> dict[str, Any]:
        """NSGA-II from ``initial`` (:func:`~neo_pinn_ga.search.run_nsga2`'s output)."""
        s = self.config.search
        bar = search.progress_bar(ctx.progress, int(s.n_gen), f"ga {problem.model.name} ×{int(s.pop_size)}", "gen")

        def on_generation(rec: dict) -> None:
            if bar is not None:
                bar.update(1)
                best = {k: f"{v:.3g}" for k, v in zip(evaluator.objective_names, rec["best_objectives"])}
                bar.set_postfix(best | {"evals/s": f"{rec['evals_per_s']:.0f}"})

        try:
            return search.run_nsga2(
                lambda x: evaluator.evaluate_population(space.to_theta(x)), len(problem.free),
                len(evaluator.objective_names), pop_size=int(s.pop_size), n_gen=int(s.n_gen), max_evals=s.max_evals,
                patience=int(s.patience), ftol=float(s.ftol), seed=int(ctx.rng.integers(0, 2**31 - 1)),
                initial=initial, crossover_eta=float(s.crossover_eta), crossover_prob=float(s.crossover_prob),
                mutation_eta=float(s.mutation_eta), on_generation=on_generation)
        finally:
            if bar is not None:
                bar.close()

    def _best_compromise(self, out: dict[str, Any], space: UnitCube, n_obj: int) -> search.Compromise:
        front = search.best_compromise(out, space, self.config.search.near_optimal)
        if not np.isfinite(front.score) or front.score >= DIVERGED * n_obj:
            raise EstimationError("Every individual's simulation diverged or missed the recording entirely; check "
                                  "the bounds, the stimulus units and dt (option max_dt).")
        return front

    def _polish(self, evaluator: PopulationEvaluator, space: UnitCube, x0: np.ndarray, ctx: FitContext) -> dict:
        """The CMA-ES stage from ``x0`` (normalised)."""
        c = self.config
        return refinement.polish_cmaes(
            evaluator, space, x0, sigma0=float(c.refinement.refine_sigma), pop_size=int(c.search.pop_size),
            n_gen=int(c.refinement.refine_gens), patience=int(c.search.patience), ftol=float(c.search.ftol),
            seed=int(ctx.rng.integers(0, 2**31 - 1)), progress=ctx.progress)

    def _refine(self, problem: EstimationProblem, ctx: FitContext, starts: np.ndarray) -> dict:
        """The lsq stage's fits from ``starts`` (k, F) (:func:`~neo_pinn_ga.refinement.refine_lsq`)."""
        return refinement.refine_lsq(problem, ctx, starts, self.config.refinement.refine_options)

    def _lsq_stage(self, problem: EstimationProblem, ctx: FitContext, evaluator: PopulationEvaluator,
                   front_theta: np.ndarray, chosen: refinement.Solution, values: dict, std: dict,
                   metrics: dict, history: dict) -> tuple[dict, refinement.Solution, dict]:
        """lsq from the current estimate and the next best front members; its result replaces the estimate
        when it improves it. Adds to ``metrics`` and ``history``; returns the (new) values, solution and std."""
        starts = front_theta[: int(self.config.refinement.refine_starts)].copy()
        starts[0] = chosen.theta
        start = time.perf_counter()
        refined = self._refine(problem, ctx, starts)
        theta_lsq = np.array([refined["free_values"][n] for n in problem.free_names], dtype=float)
        lsq = refinement.best_of_lsq(problem, refined, refinement.Solution.simulate(evaluator, theta_lsq))
        taken = refinement.lsq_improves(refined, lsq, chosen.rmse)
        m, h = refinement.lsq_record(problem, refined, lsq, taken, time.perf_counter() - start)
        metrics.update(m)
        history["refine"].update(h)
        if not taken:
            return values, chosen, std
        history["sweep_features"] = lsq.per_sweep
        metrics.update(self._objective_metrics(evaluator, lsq))
        std = {n: refined["std"].get(n) if refined["std"].get(n) is not None else std[n] for n in problem.free_names}
        return refined["free_values"], lsq, std

    # ------------------------------------------------------------------ what a fit reports
    @staticmethod
    def _values(problem: EstimationProblem, theta: np.ndarray) -> dict[str, float]:
        return {n: float(v) for n, v in zip(problem.free_names, theta)}

    @staticmethod
    def _objective_metrics(evaluator: PopulationEvaluator, solution: refinement.Solution) -> dict[str, float]:
        return {f"objective_{name}": float(val) for name, val in zip(evaluator.objective_names, solution.objectives)}

    def _search_record(self, problem: EstimationProblem, evaluator: PopulationEvaluator, space: UnitCube, out: dict,
                       front: search.Compromise, chosen: refinement.Solution, screened: int,
                       screen_s: float) -> tuple[dict, dict]:
        """Metrics and history of the search and of the chosen solution."""
        hist = out["history"]
        metrics: dict[str, Any] = {
            "generations": out["n_gen"], "evaluations": out["n_evals"], "pop_size": int(self.config.search.pop_size),
            "front_size": int(len(front.front_f)), "score": front.score, "n_objectives": len(evaluator.objective_names),
            "dt_ms": evaluator.dt, "simulations": evaluator.n_simulations,
            "evals_per_s": hist[-1]["evals_per_s"] if hist else 0.0, "near_optimal_size": front.near_size,
            "screened": screened, "screen_s": screen_s,
        } | self._objective_metrics(evaluator, chosen)
        history: dict[str, Any] = {
            "best_score": [h["best_score"] for h in hist],
            "throughput": {"evaluations": [h["n_evals"] for h in hist],
                           "evals_per_s": [h["evals_per_s"] for h in hist]},
            "best_objectives": {name: [h["best_objectives"][k] for h in hist]
                                for k, name in enumerate(evaluator.objective_names)},
            "best_params": {n: [float(space.to_theta(np.asarray(h["best_x"]))[j]) for h in hist]
                            for j, n in enumerate(problem.free_names)},
            "objective_names": list(evaluator.objective_names),
            "front_objectives": front.front_f[front.order].tolist(),
            "sweep_features": chosen.per_sweep,
        }
        return metrics, history

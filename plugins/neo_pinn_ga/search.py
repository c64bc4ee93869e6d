"""The search: NSGA-II over the unit cube, the screen that picks its first population, and CMA-ES.

Every function works in normalised coordinates x ∈ [0, 1]^F (:class:`neo_pinn.transforms.UnitCube` maps
them to parameter values) and scores a whole population per call, so one generation is one batched
simulation.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from neo_pinn.toolkit import UnitCube

__all__ = ["run_nsga2", "run_cmaes", "screen_population", "best_compromise", "Compromise", "latin_hypercube",
           "progress_bar", "SCREEN_CHUNK_VALUES"]

#: most recorded values (rows × sweeps × samples) simulated in one call of an eager screen (512 MB in float32)
SCREEN_CHUNK_VALUES = 2**27


def latin_hypercube(n: int, n_var: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points (n, n_var) of a Latin hypercube in [0, 1]^n_var drawn from ``rng``."""
    return (rng.permuted(np.tile(np.arange(n), (n_var, 1)), axis=1).T + rng.random((n, n_var))) / n


def progress_bar(show: bool, total: int, desc: str, unit: str):
    """A tqdm bar (None when ``show`` is false; tqdm shows nothing when the output is not a terminal)."""
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=False, disable=None)


def run_nsga2(evaluate: Callable[[np.ndarray], np.ndarray], n_var: int, n_obj: int, *, pop_size: int, n_gen: int,
              max_evals: int | None, patience: int, ftol: float, seed: int, initial: np.ndarray | None = None,
              crossover_eta: float = 15.0, crossover_prob: float = 0.9, mutation_eta: float = 20.0,
              on_generation: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """NSGA-II (pymoo) in [0, 1]^n_var with a vectorised evaluation and stagnation stopping.

    Parameters
    ----------
    evaluate : callable
        ``evaluate(X)`` maps a population (n, n_var) in [0, 1] to objectives (n, n_obj) (finite floats).
    n_var, n_obj : int
        Numbers of variables and objectives.
    pop_size, n_gen : int
        Population size and most generations.
    max_evals : int or None
        Most evaluations (None: no limit beyond ``n_gen``).
    patience : int
        Generations without a relative improvement above ``ftol`` of the best compromise score
        (sum of objectives over the front) or of any objective's best value, after which the search stops.
    ftol : float
        Relative improvement that resets the stagnation counter.
    seed : int
        Seed of pymoo's generator (every random choice of the algorithm).
    initial : numpy.ndarray, optional
        First population (pop_size, n_var); default a Latin hypercube from ``seed``.
    crossover_eta, crossover_prob, mutation_eta : float
        SBX distribution index and probability, polynomial-mutation distribution index.
    on_generation : callable, optional
        Called after every generation with a dict (``gen``, ``n_evals``, ``best_objectives``,
        ``best_score``, ``best_x``, ``evals_per_s``).

    Returns
    -------
    dict
        ``front_x``/``front_f`` (final non-dominated set), ``pop_x``/``pop_f`` (final population),
        ``n_gen``, ``n_evals``, ``stopped`` (reason) and the per-generation ``history`` list.
    """
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.evaluator import Evaluator
    from pymoo.core.problem import Problem
    from pymoo.operators.crossover.sbx import SBX
    from pymoo.operators.mutation.pm import PM

    class _Vectorised(Problem):
        def __init__(self):
            super().__init__(n_var=n_var, n_obj=n_obj, xl=0.0, xu=1.0)

        def _evaluate(self, X, out, *args, **kwargs):
            out["F"] = np.asarray(evaluate(np.asarray(X, dtype=float)), dtype=float)

    if initial is None:
        initial = latin_hypercube(pop_size, n_var, np.random.default_rng(seed))
    algorithm = NSGA2(pop_size=pop_size, sampling=np.asarray(initial, dtype=float),
                      crossover=SBX(eta=crossover_eta, prob=crossover_prob), mutation=PM(eta=mutation_eta),
                      eliminate_duplicates=True)
    problem = _Vectorised()
    algorithm.setup(problem, termination=("n_gen", n_gen), seed=int(seed), verbose=False)
    evaluator = Evaluator()
    history: list[dict] = []
    best_score, stale, n_evals, stopped = math.inf, 0, 0, "n_gen"
    best_each: np.ndarray | None = None
    start = time.perf_counter()
    while algorithm.has_next():
        pop = algorithm.ask()
        if pop is None or len(pop) == 0:
            stopped = "no new individuals"
            break
        evaluator.eval(problem, pop)
        algorithm.tell(infills=pop)
        n_evals += len(pop)
        opt = algorithm.opt
        fx, ff = opt.get("X"), opt.get("F")
        score = ff.sum(1)
        k = int(np.argmin(score))
        elapsed = time.perf_counter() - start
        rec = {"gen": len(history) + 1, "n_evals": n_evals, "best_objectives": ff.min(0).tolist(),
               "best_score": float(score[k]), "best_x": fx[k].tolist(), "front_size": int(len(ff)),
               "evals_per_s": n_evals / max(elapsed, 1e-9)}
        history.append(rec)
        if on_generation is not None:
            on_generation(rec)
        # stagnation = neither the best compromise nor any objective's best improved by ftol: the
        # compromise can stay flat for many generations while single objectives still fall
        obj_best = ff.min(0)
        moved = np.any(obj_best < best_each * (1 - ftol) - 1e-12) if best_each is not None else True
        if score[k] < best_score * (1 - ftol) or not math.isfinite(best_score) or moved:
            stale = 0
        else:
            stale += 1
        best_score = min(best_score, float(score[k]))
        best_each = obj_best if best_each is None else np.minimum(best_each, obj_best)
        if stale >= patience:
            stopped = "stagnation"
            break
        if max_evals is not None and n_evals >= max_evals:
            stopped = "max_evals"
            break
    opt, pop = algorithm.opt, algorithm.pop
    return {"front_x": opt.get("X"), "front_f": opt.get("F"), "pop_x": pop.get("X"), "pop_f": pop.get("F"),
            "n_gen": len(history), "n_evals": n_evals, "stopped": stopped, "history": history}


def run_cmaes(score: Callable[[np.ndarray], np.ndarray], x0: np.ndarray, *, sigma0: float, pop_size: int,
              n_gen: int, patience: int, ftol: float, seed: int,
              on_generation: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """CMA-ES (the ``cma`` package, ask/tell) in [0, 1]^n from ``x0``, elitist in what it returns.

    Parameters
    ----------
    score : callable
        ``score(X)`` maps candidates (n, n_var) in [0, 1] to scores (n,) to minimise (finite floats).
    x0 : numpy.ndarray
        Start (n_var,) in [0, 1]; scored first, so the result is never worse than it.
    sigma0 : float
        Initial step size (normalised units).
    pop_size : int
        Candidates per generation (scored in one call).
    n_gen : int
        Most generations.
    patience, ftol : int, float
        Stop after ``patience`` generations without a relative improvement of the best score above ``ftol``.
    seed : int
        Seed of CMA-ES's sampling.
    on_generation : callable, optional
        Called after every generation with a dict (``gen``, ``n_evals``, ``best_score``, ``sigma``).

    Returns
    -------
    dict
        ``x`` and ``score`` of the best candidate ever scored (``x0`` included), ``score0`` (of ``x0``),
        ``n_gen``, ``n_evals``, ``stopped`` and the per-generation ``history`` (best score so far, step size).
    """
    import cma

    x0 = np.clip(np.asarray(x0, dtype=float), 0.0, 1.0)
    score0 = float(np.asarray(score(x0[None]))[0])
    best_x, best_f = x0.copy(), score0
    # the cma package takes a scalar seed (0 would mean "from the clock") and reseeds numpy's global
    # generator with it; neo_pinn itself only draws from explicit Generators
    es = cma.CMAEvolutionStrategy(x0, float(sigma0), {"popsize": int(pop_size), "bounds": [0.0, 1.0],
                                                      "seed": int(seed) % (2**31 - 2) + 1, "verbose": -9,
                                                      "maxiter": int(n_gen)})
    history: list[dict] = []
    n_evals, stale, stopped, ref = 1, 0, "n_gen", score0
    while len(history) < n_gen:
        if es.stop():
            stopped = "cma: " + ", ".join(es.stop())
            break
        cand = np.asarray(es.ask(), dtype=float)
        f = np.asarray(score(cand), dtype=float)
        es.tell(list(cand), f.tolist())
        n_evals += len(cand)
        k = int(np.argmin(f))
        if f[k] < best_f:
            best_x, best_f = cand[k].copy(), float(f[k])
        if best_f < ref * (1 - ftol) - 1e-12:
            stale, ref = 0, best_f
        else:
            stale += 1
        rec = {"gen": len(history) + 1, "n_evals": n_evals, "best_score": best_f, "sigma": float(es.sigma)}
        history.append(rec)
        if on_generation is not None:
            on_generation(rec)
        if stale >= patience:
            stopped = "stagnation"
            break
    return {"x": best_x, "score": best_f, "score0": score0, "n_gen": len(history), "n_evals": n_evals,
            "stopped": stopped, "history": history}


def screen_population(evaluator, space: UnitCube, initial: np.ndarray, n_screen: int, rng: np.random.Generator,
                      progress: bool = False) -> np.ndarray:
    """First population (pop_size, F) chosen from ``n_screen`` Latin-hypercube individuals by rank and crowding.

    A step of the batched simulator costs far less than proportionally more for more rows, so scoring a
    large screen once samples a narrow firing region far more densely than the first population alone.

    Parameters
    ----------
    evaluator : PopulationEvaluator
        Scores the screen; its ``compile`` and ``batch_size`` are restored afterwards.
    space : UnitCube
        Normalised coordinates of the free parameters.
    initial : numpy.ndarray
        The unscreened first population (pop_size, F); its row 0 (the initial guess, when the problem has
        one) joins the screen, so a given guess is always among the candidates.
    n_screen : int
        Individuals screened.
    rng : numpy.random.Generator
        The fit's generator (the screen's points, then the seed of the survival's tie-breaking).
    progress : bool
        Show a progress bar.
    """
    from pymoo.algorithms.moo.nsga2 import RankAndCrowding
    from pymoo.core.population import Population
    from pymoo.core.problem import Problem

    pop_size, F = initial.shape
    xs = latin_hypercube(n_screen, F, rng)
    xs[0] = initial[0]
    compile_, batch = getattr(evaluator, "compile", None), evaluator.batch_size
    if compile_ is True and batch:
        # the search compiles its kernel for batches of pop_size rows anyway: chunks of that size reuse it
        rows = batch
    else:
        # eager and unpadded: a compiled kernel is specialised to one batch shape, and compiling it for
        # one call would cost more than a short screen itself
        rows = max(pop_size, SCREEN_CHUNK_VALUES // max(1, len(evaluator.sweeps) * evaluator.n_max))
        evaluator.compile, evaluator.batch_size = False, None
    bar = progress_bar(progress, n_screen, "ga screen", "ind")
    try:
        fs = []
        for k in range(0, n_screen, rows):
            fs.append(evaluator.evaluate_population(space.to_theta(xs[k:k + rows])))
            if bar is not None:
                bar.update(len(fs[-1]))
        fs = np.concatenate(fs, 0)
    finally:
        evaluator.compile, evaluator.batch_size = compile_, batch
        if bar is not None:
            bar.close()
    pop = Population.new("X", xs, "F", fs)
    problem = Problem(n_var=F, n_obj=fs.shape[1], xl=0.0, xu=1.0)
    keep = RankAndCrowding().do(problem, pop, n_survive=pop_size, random_state=np.random.default_rng(
        int(rng.integers(0, 2**31 - 1))))
    return np.asarray(keep.get("X"), dtype=float)


@dataclass(frozen=True)
class Compromise:
    """The search's estimate: the final front scalarised by the sum of its objectives, and its spread.

    Each objective is in units of its tolerance, so the sum is a fair compromise (BluePyOpt's "sum of
    scores"). The spread is the standard deviation of each parameter over the near-optimal members of the
    final population (score within ``near_optimal`` of the best, at least the 3 best): how well the
    objectives pin a parameter down at the population's resolution, not a posterior.

    Attributes
    ----------
    front_x, front_f : numpy.ndarray
        Final non-dominated set (n, F) and its objectives (n, n_obj).
    order : numpy.ndarray
        Front members by increasing score.
    score : float
        The best member's score.
    x, theta : numpy.ndarray
        The best member (F,): normalised and in canonical units.
    spread : numpy.ndarray
        (F,) standard deviations, NaN when undefined.
    near_size : int
        Members of the near-optimal set.
    """

    front_x: np.ndarray
    front_f: np.ndarray
    order: np.ndarray
    score: float
    x: np.ndarray
    theta: np.ndarray
    spread: np.ndarray
    near_size: int


def best_compromise(out: Mapping[str, Any], space: UnitCube, near_optimal: float) -> Compromise:
    """The best compromise of :func:`run_nsga2`'s output ``out`` and its near-optimal spread (:class:`Compromise`)."""
    front_x, front_f = np.atleast_2d(out["front_x"]), np.atleast_2d(out["front_f"])
    score = front_f.sum(1)
    order = np.argsort(score, kind="stable")
    best = int(order[0])
    pop_theta, pop_score = space.to_theta(np.atleast_2d(out["pop_x"])), np.atleast_2d(out["pop_f"]).sum(1)
    near = pop_score <= score[best] * (1 + float(near_optimal))
    if near.sum() < 3:
        near = np.zeros_like(near)
        near[np.argsort(pop_score, kind="stable")[:3]] = True
    spread = pop_theta[near].std(0, ddof=1) if near.sum() > 1 else np.full(front_x.shape[1], np.nan)
    return Compromise(front_x, front_f, order, float(score[best]), front_x[best], space.to_theta(front_x[best]),
                      spread, int(near.sum()))

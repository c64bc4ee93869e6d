"""The ``ga`` backend: NSGA-II on electrophysiology features, the whole population simulated at once.

Algorithm
---------
1. **Search space.** Every free parameter is mapped to [0, 1]: ``x = (log θ − log lo)/(log hi − log lo)``
   for log-scale parameters, ``(θ − lo)/(hi − lo)`` otherwise, within the problem's bounds. The first
   population is a Latin hypercube drawn with the fit's seeded generator; the problem's initial guess
   (where given) replaces its first member. With ``screen`` = N > ``pop_size`` (default 1024), N
   Latin-hypercube individuals (the guess among them) are simulated once — in one eager batch, or, when
   the search compiles its simulator, in chunks of ``pop_size`` through that compiled kernel — and the
   first population is chosen from them by NSGA-II's rank and crowding: on the shared 2-core CPU, 512 and
   2048 rows of a 1 s Morris–Lecar recording took 11 s and 19 s eager (one call each), a few generations'
   worth, and the screen samples a narrow firing region (Morris–Lecar homoclinic: ±5 % in any one
   parameter leaves it) far more densely than the first population alone.
2. **One generation = one simulation.** pymoo's NSGA-II (SBX crossover, polynomial mutation, duplicate
   elimination) proposes offspring; :class:`~neo_pinn_ga.evaluate.PopulationEvaluator` simulates all
   individuals × sweeps in ONE call of the batched simulator (float32 by default, on the fit's device),
   computes the features of every row and returns the normalised objectives (see
   :mod:`neo_pinn_ga.evaluate`: grouped feature errors plus a trace term). Several sweeps of a cell (an
   f–I protocol) are fitted jointly: every objective averages over the sweeps.
3. **Stopping.** After ``n_gen`` generations, ``max_evals`` evaluations, or when neither the best
   compromise score nor any objective's best value has improved by more than ``ftol`` (relative) for
   ``patience`` generations (stagnation).
4. **Best compromise.** The final non-dominated front is scalarised by the SUM of its objectives (each
   is already in units of its tolerance, so they are commensurate; the BluePyOpt "sum of scores"); the
   member with the smallest sum is the estimate.
5. **Uncertainty.** The standard deviation of each parameter over the near-optimal members of the final
   population: those whose score is within ``near_optimal`` (relative) of the best (at least the 3 best).
   It measures how well the objectives pin the parameter down at the population's resolution, not a
   posterior; it shrinks as the search converges.
6. **Refinement** (optional, global → local), two kinds, which ``refine="cmaes+lsq"`` chains:

   * ``refine="lsq"``: the ``refine_starts`` best compromise members each start the registry's ``lsq``
     backend (gradient-based trajectory fit, one start each); the best lsq fit (lowest cost) becomes the
     estimate when its free-running voltage RMSE is not worse than the GA's (metrics ``ga_score``,
     ``rmse_ga_mV``, ``rmse_lsq_mV``, ``refine_taken``).
   * ``refine="cmaes"``: CMA-ES (Hansen's ``cma``, which pymoo itself uses) minimises the best-compromise
     score — the same sum of objectives that picks the estimate — from the best compromise, with
     ``pop_size`` candidates per generation scored by the same batched evaluator (one simulation per
     generation, the search's compiled kernel reused), for at most ``refine_gens`` generations or
     ``patience`` generations without improvement. The best candidate ever scored becomes the estimate
     when it scores below the GA's best compromise. It needs no gradient and no continuity of a
     multiple-shooting fit, so it works where lsq cannot: on 6 s Butera bursts the voltage RMSE is a
     needle (1.0 at the truth, 6–8 a few percent away as spike times drift), which NSGA-II's
     front-wide selection approaches slowly and a CMA-ES search from the GA's estimate finds.

   ``"cmaes+lsq"`` runs CMA-ES, then lsq with the CMA-ES estimate as its first start, each stage taken only
   when it improves on the estimate before it (score for CMA-ES, free-running RMSE for lsq). Every
   refinement reports ``history["refine"]`` with the GA's own estimate under ``"ga"`` and metrics
   ``ga_score``, ``rmse_ga_mV``, ``refine_taken`` (any stage taken), ``cmaes_*`` and ``lsq_*`` per stage.
   Measured (bench_ga.py, 5 seeds): lsq reaches the noise level wherever its multiple shooting closes
   (Morris–Lecar, HH, the ML burster) but never on 6 s Butera bursts, where CMA-ES ends 0.005–0.017 %
   from the truth (from GA estimates up to 12 % off); CMA-ES alone
   does not rescue an ML burster search that ended 16–40 % off in ε, from where lsq converges.

Output: parameters, std (step 5), hidden states of the chosen solution simulated on every sweep in
float64 from the evaluator's initial state, ``samples`` = the parameters of the final front,
``history`` = per-generation best objectives, best compromise score and parameters, evaluations and
evaluations/s, plus the front's objectives. A tqdm bar (when ``progress``) shows the generation, the best
value of each objective and evaluations/s.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np
import torch

from neo_pinn.errors import ConfigurationError
from neo_pinn.estimator import Estimator, FitContext, build_result, is_integer_option, is_number_option
from neo_pinn.problem import EstimationProblem
from neo_pinn.simulate import METHODS

from .evaluate import GROUPS, PopulationEvaluator

__all__ = ["GeneticAlgorithm", "SearchSpace", "run_cmaes", "run_nsga2"]

_TRACES = ("rmse", "phase_plane", "none")
_OBJECTIVES = ("grouped", "features")
_ENGINES = ("auto", "torch", "fused")
_REFINE = ("none", "lsq", "cmaes", "cmaes+lsq")
_DTYPES = ("float32", "float64", "context")
#: most recorded values (rows × sweeps × samples) simulated in one call of the screen (512 MB in float32;
#: the default screen of a 6 s recording at 20 kHz fits in one call)
SCREEN_CHUNK_VALUES = 2**27
_COMPILE_MIN_STEPS = 100_000  # integration steps of a whole search above which compilation pays off


class SearchSpace:
    """Map between free-parameter values θ (canonical units) and normalised coordinates x ∈ [0, 1]."""

    def __init__(self, problem: EstimationProblem) -> None:
        self.lo = np.array([f.bounds[0] for f in problem.free], dtype=float)
        self.hi = np.array([f.bounds[1] for f in problem.free], dtype=float)
        self.log = np.array([f.log_scale for f in problem.free], dtype=bool)
        self.a = np.where(self.log, np.log(np.where(self.log, self.lo, 1.0)), self.lo)
        self.b = np.where(self.log, np.log(np.where(self.log, self.hi, 1.0)), self.hi)

    def to_theta(self, x: np.ndarray) -> np.ndarray:
        """θ (..., F) of normalised coordinates ``x`` (..., F)."""
        u = self.a + np.clip(x, 0.0, 1.0) * (self.b - self.a)
        return np.clip(np.where(self.log, np.exp(u), u), self.lo, self.hi)

    def to_x(self, theta: np.ndarray) -> np.ndarray:
        """Normalised coordinates of values ``theta`` (..., F)."""
        theta = np.clip(np.asarray(theta, dtype=float), self.lo, self.hi)
        u = np.where(self.log, np.log(np.maximum(theta, 1e-300)), theta)
        return np.clip((u - self.a) / (self.b - self.a), 0.0, 1.0)


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
        rng = np.random.default_rng(seed)
        initial = (rng.permuted(np.tile(np.arange(pop_size), (n_var, 1)), axis=1).T + rng.random((pop_size, n_var))) \
            / pop_size
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
        # stagnation = neither the best compromise nor any objective's best improved by ftol: on a 6 s
        # Butera recording the best compromise stayed flat for 16 generations (3–19) while the best
        # spiking and trace errors kept falling, and it then dropped from 10.8 to 6.7 with the estimate
        # going from 19 % to 0.5 % off; the compromise alone stopped that search at generation 19
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


class GeneticAlgorithm(Estimator):
    """Multi-objective evolutionary search (NSGA-II) on feature errors, one batched simulation per generation.

    Options (``default_config``)
    ----------------------------
    pop_size : int
        Individuals per generation (all simulated together).
    n_gen : int
        Most generations; the initial population is the first.
    max_evals : int or None
        Most model evaluations (individuals); None: only ``n_gen`` limits.
    screen : int
        Individuals of a Latin hypercube evaluated ONCE before the search (0 or ≤ ``pop_size``: no screen);
        the first population is chosen from them by non-dominated rank and crowding (NSGA-II survival).
        A step of the batched simulator costs far less than proportionally more for more rows (measured,
        eager, 1 s Morris–Lecar: 512 rows 11 s, 2048 rows 19 s), so a large screen costs a few
        generations and samples a narrow firing region (a bistable or near-bifurcation regime) far more
        densely than the first population alone. The screen runs without ``torch.compile`` (a compiled
        kernel is specialised to one batch shape) in chunks of at most :data:`SCREEN_CHUNK_VALUES`
        recorded values. Its evaluations are not counted in ``max_evals`` (metric ``screened``).
    patience, ftol : int, float
        Stop when the best compromise score has not improved by more than ``ftol`` (relative) for
        ``patience`` generations.
    objectives : {"grouped", "features"}
        One objective per feature group (spiking, shape, subthreshold, bursting; see
        :data:`neo_pinn_ga.evaluate.GROUPS`) or one per feature.
    features : list of str or None
        Feature names to use (None: all of the groups').
    trace : {"rmse", "phase_plane", "none"}
        The trace objective: voltage RMSE (in units of ``trace_sigma_mv``) or phase-plane density distance.
    trace_sigma_mv : float
        Scale of the RMSE objective (mV).
    trace_smooth_ms : float
        Box-filter width (ms) applied to model and recording before the RMSE (0: raw traces).
    rel_tol : float
        Relative feature tolerance: σ_f = max(rel_tol·|f_rec|, floor_f).
    penalty : float
        Error (in σ units) of a feature defined in only one of model and recording.
    saturate : bool
        Report an error r of a feature defined in both as ``penalty·r/(penalty + r)`` (< ``penalty``), so
        firing at the wrong rate always scores better than not firing (see :mod:`neo_pinn_ga.evaluate`);
        False clips errors at 10 × ``penalty`` instead.
    smooth_ms : float
        Box-filter width (ms) applied to recorded and simulated voltage before features.
    initial_state : —
        Taken from the problem: ``"fit"`` starts each sweep at its recorded (smoothed) first voltage with
        the hidden states at steady state there; ``"preset"`` or a vector as given.
    settle_ms : float
        Optional pre-run (ms) at each sweep's first current before the sweep starts (real recordings at a
        holding current); 0 disables it.
    dt, max_dt : float or None, float
        Integration step (ms); None: the largest step ≤ ``max_dt`` dividing the sampling interval.
    method : {"euler", "heun", "rk4"}
        Fixed-step integrator.
    dtype : {"float32", "float64", "context"}
        Precision of the population's simulation ("context": the ``dtype`` given to ``fit``). The chosen
        solution is always re-simulated in float64 for the hidden states.
    compile : bool or "auto"
        Passed to the simulator (``torch.compile`` of the step loop for large batches).
    engine : {"auto", "torch", "fused"}
        How a population is scored. ``"torch"`` (and ``"auto"``, on every device) simulates with the batched
        simulator and computes features with torch. ``"fused"`` scores a generation with ONE launch of the
        generated Triton kernel of :mod:`neo_pinn.fused` (state in registers, features accumulated online,
        no traces; CUDA and float32 only, else :class:`~neo_pinn.fused.FusedUnavailableError`) with the
        online objectives of :mod:`neo_pinn_ga.fused_engine` (spiking, peak/trough/rest, RMSE; the
        recording measured by the same accumulator code) — different feature definitions from
        ``"torch"``, which is why ``"auto"`` does not switch to it by device: the same configuration
        optimises the same objectives on CPU and GPU. Use ``engine="fused"`` on a GPU for large
        populations.
    crossover_eta, crossover_prob, mutation_eta : float
        SBX and polynomial-mutation settings.
    near_optimal : float
        Relative score margin defining the near-optimal set behind ``std``.
    refine : {"none", "lsq", "cmaes", "cmaes+lsq"}
        Local refinement of the best solutions: with the ``lsq`` backend, by CMA-ES on the best-compromise
        score, or CMA-ES then lsq (see the module documentation, step 6).
    refine_starts : int
        Starts of lsq (one lsq start each): the current estimate and the next best compromise members.
    refine_options : dict
        Options passed to ``lsq``.
    refine_gens : int
        Most CMA-ES generations (of ``pop_size`` candidates each); it also stops after ``patience``
        generations without an improvement of the best score by ``ftol``.
    refine_sigma : float
        Initial CMA-ES step size in normalised coordinates (a fraction of each parameter's range, of its
        log-range for log-scale parameters: 0.03 of a 0.25×–4× range is about 8 %).
    num_threads : int or None
        torch intra-op threads on CPU during the fit (restored afterwards); None leaves them alone.
    """

    name = "ga"
    description = "NSGA-II on electrophysiology features, whole population simulated per generation (pymoo)"
    default_config = {
        "pop_size": 64,
        "n_gen": 60,
        "max_evals": None,
        "screen": 1024,
        "patience": 15,
        "ftol": 1e-3,
        "objectives": "grouped",
        "features": None,
        "trace": "rmse",
        "trace_sigma_mv": 1.0,
        "trace_smooth_ms": 0.0,
        "rel_tol": 0.05,
        "penalty": 10.0,
        "saturate": True,
        "smooth_ms": 0.5,
        "settle_ms": 0.0,
        "dt": None,
        "max_dt": 0.05,
        "method": "rk4",
        "dtype": "float32",
        "compile": "auto",
        "engine": "auto",
        "crossover_eta": 15.0,
        "crossover_prob": 0.9,
        "mutation_eta": 20.0,
        "near_optimal": 0.25,
        "refine": "none",
        "refine_starts": 2,
        "refine_options": {},
        "refine_gens": 40,
        "refine_sigma": 0.03,
        "num_threads": 1,
    }

    # ------------------------------------------------------------------ options
    def _check_config(self) -> None:
        c = self.config

        bad, is_int, is_num = self._bad_option, is_integer_option, is_number_option

        for key in ("pop_size", "n_gen", "patience", "refine_starts", "refine_gens"):
            if not is_int(c[key]) or c[key] < 1:
                raise bad(key, "give a positive integer")
        if c["pop_size"] < 4:
            raise bad("pop_size", "give at least 4 individuals")
        if not is_int(c["screen"]) or c["screen"] < 0:
            raise bad("screen", "give an integer ≥ 0 (individuals screened before the search)")
        if c["max_evals"] is not None and (not is_int(c["max_evals"]) or c["max_evals"] < 1):
            raise bad("max_evals", "give a positive integer or None")
        if c["num_threads"] is not None and (not is_int(c["num_threads"]) or c["num_threads"] < 1):
            raise bad("num_threads", "give a positive integer or None")
        for key in ("ftol", "trace_sigma_mv", "rel_tol", "penalty", "max_dt", "crossover_eta", "mutation_eta",
                    "near_optimal", "refine_sigma"):
            if not is_num(c[key]) or c[key] <= 0:
                raise bad(key, "give a positive number")
        for key in ("smooth_ms", "settle_ms", "trace_smooth_ms"):
            if not is_num(c[key]) or c[key] < 0:
                raise bad(key, "give a number ≥ 0 (ms)")
        if not is_num(c["crossover_prob"]) or not 0 <= c["crossover_prob"] <= 1:
            raise bad("crossover_prob", "give a probability in [0, 1]")
        if c["dt"] is not None and (not is_num(c["dt"]) or c["dt"] <= 0):
            raise bad("dt", "give a positive step in ms or None (automatic)")
        for key, allowed in (("trace", _TRACES), ("objectives", _OBJECTIVES), ("engine", _ENGINES),
                             ("refine", _REFINE), ("dtype", _DTYPES), ("method", METHODS)):
            if c[key] not in allowed:
                raise bad(key, f"choose one of {', '.join(allowed)}")
        if not isinstance(c["saturate"], (bool, np.bool_)):
            raise bad("saturate", "give true or false")
        if c["compile"] not in (True, False, "auto"):
            raise bad("compile", "choose true, false or auto")
        f = c["features"]
        if f is not None:
            if isinstance(f, str):
                f = [x.strip() for x in f.split(",") if x.strip()]
            if not f or not all(isinstance(x, str) for x in f):
                raise bad("features", "give a list of feature names or None")
            from neo_pinn.features import FEATURE_NAMES

            known = set(FEATURE_NAMES) | {n for g in GROUPS.values() for n in g}
            unknown = [x for x in f if x not in known]
            if unknown:
                raise ConfigurationError(f"ga option features names unknown feature(s) {', '.join(unknown)}; "
                                         f"known: {', '.join(sorted(known))}.")
            c["features"] = list(f)
        if not isinstance(c["refine_options"], dict):
            raise bad("refine_options", "give a dict of lsq options")

    # ------------------------------------------------------------------ fit
    def _fit(self, problem: EstimationProblem, ctx: FitContext):
        c = self.config
        dtype = {"float32": torch.float32, "float64": torch.float64, "context": ctx.dtype}[c["dtype"]]
        if c["engine"] == "fused":
            # one fused Triton launch per generation, objectives from online features (fused_engine docstring)
            from .fused_engine import FusedPopulationEvaluator

            evaluator = FusedPopulationEvaluator(problem, c, ctx.device, dtype)
        else:
            evaluator = PopulationEvaluator(problem, c, ctx.device, dtype)
        evaluator.batch_size = int(c["pop_size"])
        if c["compile"] == "auto":
            # torch.compile costs ~30 s once (measured, 2-core CPU) and then runs a step ~20× faster than eager
            # execution, whose cost per step hardly depends on the batch; every generation reuses the kernel,
            # so compile when the whole search integrates enough steps to repay it.
            evaluator.compile = evaluator.n_steps * int(c["n_gen"]) >= _COMPILE_MIN_STEPS
        space = SearchSpace(problem)
        n_obj = len(evaluator.objective_names)
        F = len(problem.free)
        pop_size = int(c["pop_size"])

        # first population: Latin hypercube from the fit's generator, the initial guess (if any) first
        initial = (ctx.rng.permuted(np.tile(np.arange(pop_size), (F, 1)), axis=1).T
                   + ctx.rng.random((pop_size, F))) / pop_size
        guess = problem.initial_guess()
        if any(v is not None for v in guess.values()):
            # row 0 of starting_points is the initial guess (parameters without one drawn in their bounds)
            initial[0] = space.to_x(problem.starting_points(1, ctx.rng)[0])

        def evaluate(x: np.ndarray) -> np.ndarray:
            return evaluator.evaluate_population(space.to_theta(x))

        n_screen = int(c["screen"])
        screened, screen_s = 0, 0.0
        if n_screen > pop_size:
            t_screen = time.perf_counter()
            initial = self._screen(evaluator, space, initial, n_screen, ctx.rng, progress=ctx.progress)
            screened, screen_s = n_screen, time.perf_counter() - t_screen

        bar = None
        if ctx.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=int(c["n_gen"]), desc=f"ga {problem.model.name} ×{pop_size}", unit="gen", leave=False,
                       disable=None)

        def on_generation(rec: dict) -> None:
            if bar is not None:
                bar.update(1)
                best = {k: f"{v:.3g}" for k, v in zip(evaluator.objective_names, rec["best_objectives"])}
                bar.set_postfix(best | {"evals/s": f"{rec['evals_per_s']:.0f}"})

        try:
            out = run_nsga2(evaluate, F, n_obj, pop_size=pop_size, n_gen=int(c["n_gen"]), max_evals=c["max_evals"],
                            patience=int(c["patience"]), ftol=float(c["ftol"]),
                            seed=int(ctx.rng.integers(0, 2**31 - 1)), initial=initial,
                            crossover_eta=float(c["crossover_eta"]), crossover_prob=float(c["crossover_prob"]),
                            mutation_eta=float(c["mutation_eta"]), on_generation=on_generation)
        finally:
            if bar is not None:
                bar.close()

        # ---- best compromise, near-optimal spread
        front_x, front_f = np.atleast_2d(out["front_x"]), np.atleast_2d(out["front_f"])
        score = front_f.sum(1)
        order = np.argsort(score, kind="stable")
        best = int(order[0])
        if not np.isfinite(score[best]) or score[best] >= 1e3 * n_obj:
            raise ConfigurationError("Every individual's simulation diverged or missed the recording entirely; check "
                                     "the bounds, the stimulus units and dt (option max_dt).")
        theta_best = space.to_theta(front_x[best])
        pop_theta, pop_score = space.to_theta(np.atleast_2d(out["pop_x"])), np.atleast_2d(out["pop_f"]).sum(1)
        near = pop_score <= score[best] * (1 + float(c["near_optimal"]))
        if near.sum() < 3:
            near = np.zeros_like(near)
            near[np.argsort(pop_score, kind="stable")[:3]] = True
        spread = pop_theta[near].std(0, ddof=1) if near.sum() > 1 else np.full(F, np.nan)
        std = {n: (float(spread[j]) if np.isfinite(spread[j]) else None) for j, n in enumerate(problem.free_names)}

        polish = None
        cmaes_taken = False
        if c["refine"] in ("cmaes", "cmaes+lsq"):
            polish = self._polish(evaluator, space, front_x[best], ctx)
            cmaes_taken = bool(polish["score"] < float(score[best]))
            if cmaes_taken:
                theta_best = space.to_theta(polish["x"])

        # ---- chosen solution: states (float64), features per sweep
        theta_ga = space.to_theta(front_x[best])
        ga_values = {n: float(v) for n, v in zip(problem.free_names, theta_ga)}
        free_values = {n: float(theta_best[j]) for j, n in enumerate(problem.free_names)}
        states, per_sweep, objectives_best = self._reconstruct(problem, evaluator, theta_best)
        rmse_chosen = _rmse(problem, states)
        metrics: dict[str, Any] = {
            "generations": out["n_gen"], "evaluations": out["n_evals"], "stopped": out["stopped"],
            "pop_size": pop_size, "front_size": int(len(front_f)), "score": float(score[best]),
            "n_objectives": n_obj, "dt_ms": evaluator.dt, "simulations": evaluator.n_simulations,
            "evals_per_s": out["history"][-1]["evals_per_s"] if out["history"] else 0.0,
            "near_optimal_size": int(near.sum()), "screened": screened,
            "screen_s": screen_s,
        }
        for name, val in zip(evaluator.objective_names, objectives_best):
            metrics[f"objective_{name}"] = float(val)
        hist = out["history"]
        history: dict[str, Any] = {
            "best_score": [h["best_score"] for h in hist],
            "throughput": {"evaluations": [h["n_evals"] for h in hist],
                           "evals_per_s": [h["evals_per_s"] for h in hist]},
            "best_objectives": {name: [h["best_objectives"][k] for h in hist]
                                for k, name in enumerate(evaluator.objective_names)},
            "best_params": {n: [float(space.to_theta(np.asarray(h["best_x"]))[j]) for h in hist]
                            for j, n in enumerate(problem.free_names)},
            "objective_names": list(evaluator.objective_names),
            "front_objectives": front_f[order].tolist(),
            "sweep_features": per_sweep,
        }
        if c["refine"] != "none":
            # the GA's own estimate, before any refinement stage
            history["refine"] = {"ga": ga_values}
            metrics.update({"ga_score": float(score[best]), "refine_taken": False, "rmse_ga_mV": rmse_chosen
                            if not cmaes_taken else _rmse(problem, self._reconstruct(problem, evaluator, theta_ga)[0])})
        if polish is not None:
            history["refine"].update({"cmaes": free_values if cmaes_taken else None,
                                      "cmaes_best_score": [h["best_score"] for h in polish["history"]],
                                      "cmaes_sigma": [h["sigma"] for h in polish["history"]]})
            if cmaes_taken:
                metrics["score"] = polish["score"]
            metrics.update({"cmaes_score": polish["score"], "cmaes_taken": cmaes_taken, "refine_taken": cmaes_taken,
                            "cmaes_generations": polish["n_gen"], "cmaes_evaluations": polish["n_evals"],
                            "cmaes_stopped": polish["stopped"], "cmaes_s": polish["seconds"],
                            "rmse_cmaes_mV": rmse_chosen if cmaes_taken else None})
        front_theta = space.to_theta(front_x[order])
        samples = {n: [float(x) for x in front_theta[:, j]] for j, n in enumerate(problem.free_names)}
        init = {n: float(v) if v is not None else None for n, v in guess.items()}

        if c["refine"] in ("lsq", "cmaes+lsq"):
            # the first start is the current estimate (CMA-ES's, when it improved on the GA's best compromise)
            starts = front_theta[: int(c["refine_starts"])].copy()
            starts[0] = theta_best
            t_lsq = time.perf_counter()
            refined = self._refine(problem, ctx, starts)
            history["refine"].update({"starts": refined["starts"], "costs": refined["costs"],
                                      "lsq": refined["free_values"]})
            # judged like the GA's own solution: one free-running simulation from the same initial state.
            # lsq's own states restart every multiple-shooting segment from its nodes, so a start that did not
            # close its continuity defects (seen on 6 s Butera bursts: 1–3 mV) shows an RMSE far below what
            # its parameters produce (4.5 mV there, with gNaP and gL 38–42 % off against the GA's 19–23 %)
            theta_lsq = np.array([refined["free_values"][n] for n in problem.free_names], dtype=float)
            states_lsq, per_sweep_lsq, objectives_lsq = self._reconstruct(problem, evaluator, theta_lsq)
            rmse_lsq = _rmse(problem, states_lsq)
            # lsq minimises the same trace misfit from the current estimate, so it should only improve it; a
            # refinement that ended worse (a diverged or stalled start) is reported and not taken
            improved = bool(np.isfinite(rmse_lsq) and rmse_lsq <= rmse_chosen)
            metrics.update({"rmse_lsq_mV": rmse_lsq, "rmse_lsq_segments_mV": _rmse(problem, refined["states"]),
                            "refine_cost": refined["cost"], "refine_starts": len(refined["starts"]),
                            "lsq_taken": improved, "lsq_s": time.perf_counter() - t_lsq})
            if improved:
                metrics["refine_taken"] = True
                free_values = refined["free_values"]
                states = states_lsq
                history["sweep_features"] = per_sweep_lsq
                for name, val in zip(evaluator.objective_names, objectives_lsq):
                    metrics[f"objective_{name}"] = float(val)
                std = {n: refined["std"].get(n) if refined["std"].get(n) is not None else std[n]
                       for n in problem.free_names}
        return build_result(problem, self.name, free_values, states, std=std, init=init,
                            noise={"sigma": _rmse(problem, states)}, metrics=metrics, history=history,
                            samples=samples, config={"objective_names": list(evaluator.objective_names)})

    # ------------------------------------------------------------------ helpers
    def _reconstruct(self, problem, evaluator: PopulationEvaluator, theta_free: np.ndarray):
        """States (T, S) per sweep of one solution in float64, its per-sweep features and its objectives."""
        theta = evaluator.theta(theta_free[None]).to(torch.float64)
        y = evaluator.simulate_population(theta, states=None, dtype=torch.float64, compile_="auto")[0]  # (Q, T, S)
        y_np = y.cpu().numpy()
        states = [np.nan_to_num(y_np[q, :tr.t.size], nan=0.0, posinf=0.0, neginf=0.0)
                  for q, tr in enumerate(problem.traces)]
        obj, per = evaluator.objectives_from_voltage(y[None, ..., 0].to(evaluator.dtype))
        per_sweep = []
        for q, (sw, d) in enumerate(zip(evaluator.sweeps, per)):
            per_sweep.append({"sweep": problem.traces[q].sweep,
                              "features": {k: {"recorded": _num(sw.features[k]), "fitted": _num(d["values"][k][0]),
                                               "sigma": _num(sw.sigma[k]), "error": _num(d["errors"][k][0])}
                                           for k in d["values"]}})
        return states, per_sweep, obj[0]

    def _screen(self, evaluator, space: SearchSpace, initial: np.ndarray, n_screen: int,
                rng: np.random.Generator, progress: bool = False) -> np.ndarray:
        """First population (pop_size, F) chosen from ``n_screen`` Latin-hypercube individuals by rank and crowding.

        ``initial`` (pop_size, F), the unscreened first population, contributes its row 0 (the initial
        guess, when the problem has one) to the screen, so a given guess is always among the candidates.
        """
        from pymoo.algorithms.moo.nsga2 import RankAndCrowding
        from pymoo.core.population import Population
        from pymoo.core.problem import Problem

        pop_size, F = initial.shape
        xs = (rng.permuted(np.tile(np.arange(n_screen), (F, 1)), axis=1).T + rng.random((n_screen, F))) / n_screen
        xs[0] = initial[0]
        compile_, batch = getattr(evaluator, "compile", None), evaluator.batch_size
        if compile_ is True and batch:
            # the search will compile its kernel for batches of pop_size rows anyway: screening in chunks of
            # that size reuses it. Eager calls cost ~0.5–1 ms per step whatever the batch: on 17o05028 (16 ×
            # 3 s at 20 kHz, 60 000 steps per call; shared 2-core CPU) the eager screen took about 16 min of a
            # 29 min fit, this one 198 s
            rows = batch
        else:
            # eager and unpadded: a compiled kernel is specialised to the population's batch shape, and a
            # compilation (~30 s on CPU) for one call would cost more than a short screen itself
            rows = max(pop_size, SCREEN_CHUNK_VALUES // max(1, len(evaluator.sweeps) * evaluator.n_max))
            evaluator.compile, evaluator.batch_size = False, None
        bar = None
        if progress:
            from tqdm.auto import tqdm

            # a multi-sweep screen runs for minutes on CPU (16 sweeps × 3 s: several chunks), so show it
            bar = tqdm(total=n_screen, desc="ga screen", unit="ind", leave=False, disable=None)
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

    def _polish(self, evaluator, space: SearchSpace, x0: np.ndarray, ctx: FitContext) -> dict:
        """CMA-ES on the best-compromise score from ``x0`` (normalised), with the search's evaluator."""
        c = self.config
        bar = None
        if ctx.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=int(c["refine_gens"]), desc="ga refine (CMA-ES)", unit="gen", leave=False, disable=None)

        def on_generation(rec: dict) -> None:
            if bar is not None:
                bar.update(1)
                bar.set_postfix({"score": f"{rec['best_score']:.4g}", "sigma": f"{rec['sigma']:.3g}"})

        start = time.perf_counter()
        try:
            # scores are the sums of the same objectives; the candidates come in batches of pop_size, so the
            # search's compiled kernel (specialised to that batch) is reused
            out = run_cmaes(lambda x: evaluator.evaluate_population(space.to_theta(x)).sum(1), x0,
                            sigma0=float(c["refine_sigma"]), pop_size=int(c["pop_size"]),
                            n_gen=int(c["refine_gens"]), patience=int(c["patience"]), ftol=float(c["ftol"]),
                            seed=int(ctx.rng.integers(0, 2**31 - 1)), on_generation=on_generation)
        finally:
            if bar is not None:
                bar.close()
        out["seconds"] = time.perf_counter() - start
        return out

    def _refine(self, problem: EstimationProblem, ctx: FitContext, starts: np.ndarray) -> dict:
        """Run the registry's lsq backend from each of ``starts`` (k, F); keep the lowest cost."""
        from dataclasses import replace

        from neo_pinn.api import get_backend
        from neo_pinn.problem import FreeParameter

        lsq = get_backend("lsq")
        opts = {"n_starts": 1} | dict(self.config["refine_options"])
        fits, costs = [], []
        for row in starts:
            free = tuple(FreeParameter(f.name, float(np.clip(v, *f.bounds)), f.bounds, f.log_scale)
                         for f, v in zip(problem.free, row))
            res = lsq(**opts).fit(replace(problem, free=free), seed=ctx.seed, device=ctx.device, dtype=torch.float64)
            fits.append(res)
            cost = float(res.metrics.get("cost", math.inf))
            costs.append(cost if math.isfinite(cost) else None)
        k = int(np.argmin([c if c is not None else math.inf for c in costs]))
        res = fits[k]
        return {"free_values": {n: res[n].value for n in problem.free_names},
                "std": {n: res[n].std for n in problem.free_names},
                "states": [f.states for f in res.fits], "cost": costs[k] if costs[k] is not None else math.inf,
                "costs": costs, "starts": [[float(x) for x in row] for row in starts]}


def _num(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _rmse(problem: EstimationProblem, states) -> float:
    return float(np.sqrt(np.mean(np.concatenate([(st[:, 0] - tr.v) ** 2 for st, tr in zip(states, problem.traces)]))))

"""The ``amortized`` backend: a trained inverse map applied to the recorded sweeps, with an out-of-distribution flag.

Algorithm
---------
1. **Load** the estimator folder named by the option ``estimator`` (:meth:`AmortizedEstimator.load`: JSON
   manifest and plain weights, nothing executed).
2. **Check** the problem against the manifest (:func:`check_problem`; a :class:`ProtocolMismatchError` says what
   the estimator expects): the model; the free parameters (exactly the estimator's, any order); every fixed
   parameter at the value it was trained with; the initial state; and for every sweep the sampling interval,
   the number of samples (the protocol's ``n_samples`` from the sweep start: cut a longer sweep with a window of
   exactly that length) and the injected current (the protocol's stimulus, sample by sample). With the option
   ``resample``, a sweep sampled k times faster (k a whole number) is read at every k-th sample
   (:meth:`.training_set.Protocol.subsample`): the same point samples the estimator was trained on.
3. **Predict** every sweep in one batched call: a Gaussian per target in the network's scaled coordinate
   (each prior's support mapped onto [0, 1]; log for log-uniform priors).
4. **Combine** the sweeps by the product of their Gaussians — the precision-weighted mean
   ``m = Σ m_k/s_k² / Σ 1/s_k²``, ``s² = 1 / Σ 1/s_k²`` in the scaled coordinate. This treats sweeps as
   independent observations of shared parameters and counts the prior once per sweep (harmless for a flat
   prior; for a bell-shaped one the combined std is somewhat too small). The largest disagreement of a sweep
   with the combination (``sweep_consistency_z``, in that sweep's std) is a metric. The noise parameters are
   combined the same way (every sweep's own values are in ``diagnostics["per_sweep"]``).
5. **Result**: the combined posterior mean (clipped into the prior's support) and std of each free parameter
   (the mean and std of the log-normal for a log-uniform prior); ``n_samples`` posterior draws of the free
   parameters in ``samples`` (each target drawn from its Gaussian truncated to the prior's support); the noise
   parameters in ``noise`` (AR(1): ``rho``, the innovation std ``s`` and the marginal
   ``sigma = s / sqrt(1 − rho²)``, each with ``*_std``; white: ``sigma``), their draws in
   ``diagnostics["noise_samples"]``; the 50 % and 90 % intervals in ``diagnostics["intervals"]``; and the hidden
   states from simulating the estimate through the core (float64, from the estimator's training initial state,
   under each sweep's recorded current held sample to sample).
6. **Out of distribution** (:mod:`.ood`): the trace features against the training set's statistics and the
   simulated estimate against the recording (with ``ood_draws`` posterior-predictive draws). A flagged fit has
   ``metrics["out_of_distribution"] = True``, the reasons in ``diagnostics["ood"]``, a ``RuntimeWarning``,
   and in the verdict a failed "warn" check ``out_of_distribution`` that makes a "passed" status "warning"
   (:meth:`Amortized.verdict_checks`, the core's hook for a backend's own checks).

For many recordings at once use :func:`predict_traces` ((N, T) arrays in, means and stds out); to start another
backend from the amortized estimate, :func:`amortized_init` — or, in a fit, the initializer :func:`warm_start`
(``neo_pinn.estimate(..., init="amortized:DIR")``, CLI ``fit --init amortized:DIR``).
"""

from __future__ import annotations

import math
import os
import time
import warnings
import dataclasses
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from neo_pinn.errors import ConfigurationError, InputPathError
from neo_pinn.problem import EstimationProblem
from neo_pinn.toolkit import Estimator, EstimationResult, FitContext, choose_dt, noise_from_residuals, simulate
from neo_pinn.trace import Trace
from neo_pinn.verdict import Check

from .config import AmortizedConfig
from .estimator import AmortizedEstimator
from .metrics import z_quantile
from .ood import FeatureCheck, feature_check, reconstruction_check
from .training_set import DEFAULT_MAX_DT, DT_RTOL, add_noise, draw_parameters

__all__ = ["Amortized", "AmortizedConfig", "ProtocolMismatchError", "load_estimator", "predict_traces",
           "amortized_init", "warm_start", "combine_sweeps", "check_problem", "check_sweeps",
           "sweep_inputs"]

#: share of a sweep's samples whose injected current may differ from the protocol's (the samples at its edges)
STIMULUS_SLACK = 0.01
#: the interval levels of ``diagnostics["intervals"]``
LEVELS = (0.5, 0.9)


class ProtocolMismatchError(ConfigurationError):
    """A recording or problem that the estimator was not trained for (model, free set, fixed values, sampling,
    length, stimulus or initial state); the message says what the estimator expects."""


# ---------------------------------------------------------------------------------------------- public helpers
def load_estimator(estimator: AmortizedEstimator | str | os.PathLike, device: str | torch.device = "cpu"
                   ) -> AmortizedEstimator:
    """An :class:`AmortizedEstimator` as given, or read from its folder (nothing in it is executed).

    Raises
    ------
    InputPathError
        No estimator folder at the path (the message says how to make one).
    InputFormatError
        A folder that is not a readable estimator (see :meth:`AmortizedEstimator.load`).
    """
    if isinstance(estimator, AmortizedEstimator):
        return estimator
    if not isinstance(estimator, (str, os.PathLike)):
        raise ConfigurationError(f"Give an AmortizedEstimator or the folder of one; got {type(estimator).__name__}.")
    path = Path(estimator)
    if not path.is_dir():
        raise InputPathError(f"No estimator folder at {path}. Train one with `neo-pinn train ... --out {path}`, or "
                             "in Python: neo_pinn_amortized.train_estimator(TrainConfig(...)).save(PATH).")
    return AmortizedEstimator.load(path, device=str(device))


def predict_traces(estimator: AmortizedEstimator | str | os.PathLike, traces: Any, dt_ms: float, *,
                   device: str = "cpu") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Posterior mean and standard deviation of every target for many traces at once.

    Parameters
    ----------
    estimator : AmortizedEstimator or path
        A trained estimator or its folder.
    traces : array_like
        (N, T) (or one (T,)) recorded voltages in the model's unit (mV), each ``protocol.n_samples`` samples from
        its sweep's start; they are fed through the network in batches.
    dt_ms : float
        Their sampling interval, ms (must be the protocol's).
    device : str
        Device of the network.

    Returns
    -------
    dict
        Target name → (mean (N,), std (N,)) in the target's canonical unit: the free parameters, then the
        noise parameters the estimator estimates (AR(1): ``rho`` and the innovation std ``s``; white: ``sigma``).

    Raises
    ------
    ConfigurationError
        Traces of another length or sampling interval than the estimator's protocol.
    """
    est = load_estimator(estimator, device)
    mean, std = est.predict(traces, dt_ms)
    return {name: (mean[:, k], std[:, k]) for k, name in enumerate(est.target_names)}


def combine_sweeps(mz: np.ndarray, sz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The product of per-sweep Gaussians (scaled coordinate): precision-weighted mean and its std.

    Parameters
    ----------
    mz, sz : numpy.ndarray
        (Q, P) per-sweep means and standard deviations.

    Returns
    -------
    mean, std : numpy.ndarray
        (P,) the combination.
    z : numpy.ndarray
        (Q, P) each sweep's distance from the combination in its own std.
    """
    mz, sz = np.atleast_2d(mz), np.atleast_2d(sz)
    w = 1.0 / sz**2
    std = 1.0 / np.sqrt(w.sum(0))
    mean = (w * mz).sum(0) * std**2
    return mean, std, (mz - mean) / sz


def check_sweeps(est: AmortizedEstimator, traces: Sequence[Trace], resample: bool = False) -> int:
    """Every sweep's sampling interval, length and injected current against the estimator's protocol.

    Parameters
    ----------
    est : AmortizedEstimator
    traces : sequence of Trace
    resample : bool
        Accept sweeps sampled k times faster than the protocol (k a whole number), read at every k-th sample.

    Returns
    -------
    int
        k: 1 for sweeps at the protocol's interval.

    Raises
    ------
    ProtocolMismatchError
        Naming the sweep, what it has and what the estimator expects (and how to cut a longer sweep).
    """
    proto = est.protocol
    want = (f"the estimator reads {proto.n_samples} samples at {proto.sample_dt_ms:g} ms ({proto.duration_ms:g} ms "
            f"from the sweep start) under {proto.stimulus or 'the preset current'}")
    factors = set()
    for tr in traces:
        k = 1 if abs(tr.dt - proto.sample_dt_ms) <= DT_RTOL * proto.sample_dt_ms * 10 else \
            proto.resample_factor(tr.dt)
        if k is None or (k > 1 and not resample):
            hint = (f" It is {k} times faster: pass the option resample=true (CLI --option resample=true) to read "
                    f"every {k}-th sample, as the estimator was trained." if k else "")
            raise ProtocolMismatchError(f"Sweep {tr.sweep} is sampled every {tr.dt:.6g} ms, but {want}.{hint or ' '}"
                                        f"{'' if hint else 'Resample the recording or train an estimator for its protocol.'}")
        factors.add(k)
        lo, hi = proto.n_samples * k - k + 1, proto.n_samples * k
        if not lo <= tr.t.size <= hi:
            cut = (f" Fit exactly that window, e.g. window=(0, {(proto.n_samples - 0.5) * proto.sample_dt_ms:g}) "
                   "ms from the sweep start (estimate(window=...), CLI --window; for Trace objects the window is in "
                   "their own time)." if tr.t.size > hi else " Train an estimator for this protocol.")
            raise ProtocolMismatchError(f"Sweep {tr.sweep} has {tr.t.size} samples in the fitted window, but {want}."
                                        + cut)
        expected = _protocol_current(est, tr.t - tr.t[0])
        diff = np.abs(tr.i_ext - expected)
        tol = 1e-3 + 1e-2 * float(np.max(np.abs(expected)))
        if np.mean(diff > tol) > STIMULUS_SLACK:
            raise ProtocolMismatchError(f"The injected current of sweep {tr.sweep} differs from the estimator's "
                                        f"protocol by up to {diff.max():.4g} pA ({want}); give the sweep the "
                                        "estimator was trained for, or train one for this stimulus.")
    if len(factors) > 1:
        raise ProtocolMismatchError(f"The sweeps are sampled at different intervals; {want}. Fit them separately.")
    return factors.pop() if factors else 1


def _protocol_current(est: AmortizedEstimator, t_from_start: np.ndarray) -> np.ndarray:
    """The protocol's injected current (pA) at times from the sweep start (ms)."""
    stim = est.protocol.current()
    if stim is None:
        return np.full(t_from_start.shape, float(est.spec.neuron_model().preset(est.spec.preset).i_ext))
    return np.asarray(stim(t_from_start), dtype=float) * np.ones_like(t_from_start)


def check_problem(est: AmortizedEstimator, problem: EstimationProblem, resample: bool = False) -> None:
    """The problem against the estimator's manifest (see the module documentation, step 2).

    Raises
    ------
    ProtocolMismatchError
        What differs and what the estimator expects.
    """
    spec, model = est.spec, problem.model
    if model.name != spec.model:
        raise ProtocolMismatchError(f"The estimator was trained for the model {spec.model!r}; this problem fits "
                                    f"{model.name!r}. Use an estimator trained for {model.name}.")
    if set(problem.free_names) != set(spec.free):
        raise ProtocolMismatchError(f"The estimator estimates exactly free={list(spec.free)}; this problem frees "
                                    f"{list(problem.free_names)}. Free those parameters (CLI --free "
                                    f"{','.join(spec.free)}) or train an estimator for this set.")
    trained = dict(zip(model.param_names, spec.base_theta()))
    for name, value in problem.fixed.items():
        if not math.isclose(float(value), float(trained[name]), rel_tol=1e-9, abs_tol=1e-12):
            how = (f"--set {name}={trained[name]:g}" if name in spec.values
                   else f"preset {spec.preset or model.default_preset!r} and without --set {name}")
            raise ProtocolMismatchError(f"The estimator was trained with {name} = {trained[name]:g}; this problem "
                                        f"fixes {name} = {value:g}. Fit with {how}, or train an estimator for these "
                                        "values.")
    y0 = model.initial_state(spec.preset)
    given = problem.initial_state
    if isinstance(given, str):
        given = None if given == "fit" else model.initial_state(problem.preset)
    if given is not None and spec.settle_ms > 0:
        raise ProtocolMismatchError(f"The estimator's training traces start at rest ({spec.settle_ms:g} ms settled "
                                    "before the protocol); this problem fixes the initial state. Use "
                                    "initial_state='fit'.")
    if given is not None and not np.allclose(np.asarray(given, float), y0, rtol=1e-6, atol=1e-9):
        raise ProtocolMismatchError(f"The estimator's training traces start from {dict(zip(model.state_names, y0))}; "
                                    f"this problem starts from {np.asarray(given, float).tolist()}. Use "
                                    "initial_state='fit' (the estimator's start) or train for this start.")
    check_sweeps(est, problem.traces, resample)


def sweep_inputs(est: AmortizedEstimator, traces: Sequence[Trace], resample: bool = False) -> np.ndarray:
    """The sweeps' voltages as the network reads them, (Q, n_samples), after :func:`check_sweeps`."""
    k = check_sweeps(est, traces, resample)
    n = est.protocol.n_samples
    return np.stack([tr.v[: n * k: k] for tr in traces])


def amortized_init(estimator: AmortizedEstimator | str | os.PathLike, traces: Trace | Sequence[Trace] | Any,
                   dt_ms: float | None = None, *, device: str = "cpu", resample: bool = False) -> dict[str, float]:
    """The amortized estimate of the free parameters, as the initial guess of another backend (warm start).

    Parameters
    ----------
    estimator : AmortizedEstimator or path
    traces : Trace, sequence of Trace, or array_like
        Sweeps sharing the parameters (checked against the protocol: sampling, length, stimulus), or an
        (N, T) voltage array (mV) with ``dt_ms``.
    dt_ms : float, optional
        Sampling interval of an array, ms.
    device : str
    resample : bool
        Read sweeps sampled k times faster than the protocol at every k-th sample (see :func:`check_sweeps`).

    Returns
    -------
    dict
        Free parameter name → combined posterior mean (canonical units), e.g. for
        ``neo_pinn.estimate(..., backend="lsq", init=amortized_init(est, traces))``.
    """
    est = load_estimator(estimator, device)
    if isinstance(traces, Trace) or (isinstance(traces, (list, tuple)) and traces
                                     and all(isinstance(tr, Trace) for tr in traces)):
        sweeps = [traces] if isinstance(traces, Trace) else list(traces)
        x, dt = sweep_inputs(est, sweeps, resample), est.protocol.sample_dt_ms
    elif dt_ms is None:
        raise ConfigurationError("amortized_init needs dt_ms (the sampling interval, ms) for an array of traces.")
    else:
        x, dt = traces, dt_ms
    mc, sc, _ = combine_sweeps(*est.predict_scaled(x, dt))
    mean, _ = est.physical(np.clip(mc, 0.0, 1.0), sc)
    return {name: float(mean[0, k]) for k, name in enumerate(est.target_names) if name in est.spec.free}


def warm_start(argument: str, traces: Sequence[Trace], model: Any, free: Sequence[str], device: str = "cpu"
               ) -> dict[str, float]:
    """The initializer ``amortized`` (``init="amortized:DIR"``, CLI ``fit --init amortized:DIR``) of any backend.

    Parameters
    ----------
    argument : str
        The estimator folder (written by ``neo-pinn train`` or :meth:`AmortizedEstimator.save`).
    traces : sequence of Trace
        The sweeps the fit will see (after sweep selection and the window), each of the estimator's protocol (a
        sweep sampled k times faster is read at every k-th sample, a longer one for the protocol's length from
        its start: only the starting point depends on them).
    model : NeuronModel
        The fitted model: the estimator must have been trained for it.
    free : sequence of str
        The fit's free parameters.
    device : str
        Device of the network.

    Returns
    -------
    dict
        The combined amortized estimate (:func:`amortized_init`) of the free parameters the estimator estimates,
        canonical units; the fit starts the others as it would without an initializer.

    Raises
    ------
    ProtocolMismatchError
        Another model, or sweeps of another sampling interval, length or stimulus than the estimator's protocol
        (the message says what it expects).
    InputPathError, InputFormatError
        No estimator at ``argument``, or not a readable one.
    """
    if not argument:
        raise ConfigurationError("init 'amortized:DIR' names the estimator folder after the colon, e.g. "
                                 "--init amortized:fhn_estimator.")
    est = load_estimator(argument, device)
    if est.spec.model != getattr(model, "name", model):
        raise ProtocolMismatchError(f"The estimator {argument} was trained for the model {est.spec.model!r}; this fit "
                                    f"is of {getattr(model, 'name', model)!r}. Use an estimator trained for it.")
    proto = est.protocol
    cut = []
    for tr in traces:  # a longer sweep is read from its start for the protocol's length: only the start uses it
        k = 1 if abs(tr.dt - proto.sample_dt_ms) <= DT_RTOL * 10 * proto.sample_dt_ms else proto.resample_factor(tr.dt)
        n = proto.n_samples * (k or 1)
        cut.append(tr.window(None, float(tr.t[n - 1])) if k and tr.t.size > n else tr)
    return {k: v for k, v in amortized_init(est, cut, device=device, resample=True).items() if k in free}


# ---------------------------------------------------------------------------------------------- the backend
class Amortized(Estimator):
    """A trained amortized inverse map applied to the sweeps (see the module documentation).

    The options are those of :class:`~neo_pinn_amortized.config.AmortizedConfig`; ``estimator`` is required.
    """

    name = "amortized"
    fixed_protocol = True  # estimate() keeps the user's window and fits the estimator's free set in one stage
    description = "amortized inverse map: a network trained once on simulations, instant estimates with intervals"
    config_class = AmortizedConfig
    config: AmortizedConfig

    def __init__(self, config: AmortizedConfig | None = None, **options: Any) -> None:
        super().__init__(config, **options)
        if self.config.estimator is None:
            raise ConfigurationError(
                "The amortized backend needs a trained estimator: give --option estimator=PATH (neo-pinn fit) or "
                "backend_options={'estimator': PATH} (Python). Train one with `neo-pinn train --model M --free "
                "p1,p2 --n N --out PATH` (see `neo-pinn train --help`), or in Python with "
                "neo_pinn_amortized.train_estimator(neo_pinn_amortized.TrainConfig(...)).save(PATH).")

    def verdict_checks(self, problem: EstimationProblem, result: EstimationResult) -> tuple[Check, ...]:
        """The out-of-distribution flag as a "warn" check of the verdict (a flagged fit: at best "warning")."""
        if "out_of_distribution" not in result.metrics:
            return ()
        flagged = bool(result.metrics["out_of_distribution"])
        message = (result.diagnostics.get("ood") or {}).get("message") or (
            "the recording is unlike the estimator's training data" if flagged else "like the training data")
        return (Check("out_of_distribution", "warn", not flagged, message),)

    def _fit(self, problem: EstimationProblem, ctx: FitContext) -> EstimationResult:
        c = self.config
        est = load_estimator(c.estimator, ctx.device)
        check_problem(est, problem, c.resample)
        spec = est.spec
        traces = problem.traces
        x = sweep_inputs(est, traces, c.resample)
        k_resample = int(round(est.protocol.sample_dt_ms / traces[0].dt))
        start = time.perf_counter()
        mz, sz = est.predict_scaled(x, est.protocol.sample_dt_ms)   # one batched call
        t_infer = time.perf_counter() - start
        mc, sc, zq = combine_sweeps(mz, sz)
        mc = np.clip(mc, 0.0, 1.0)  # the estimate stays in the prior's support (far outside: out of distribution)
        mean, std = (a[0] for a in est.physical(mc, sc))
        draws = est.sample_scaled(mc, sc, int(c.n_samples), ctx.rng)[0]               # (n, P)
        col = {name: k for k, name in enumerate(est.target_names)}
        free = {name: float(mean[col[name]]) for name in spec.free}
        theta_hat = problem.theta_full(free)
        n_draws = min(int(c.ood_draws), draws.shape[0])
        theta_draws = np.repeat(theta_hat[None], n_draws, 0)
        for name in spec.free:
            theta_draws[:, problem.model.param_index(name)] = draws[:n_draws, col[name]]
        sims = _simulate(est, problem, np.concatenate([theta_hat[None], theta_draws]), ctx)   # (1 + K, Q, T, S)
        states = [sims[0, q] for q in range(len(traces))]
        noise, sigma_hat = self._noise(est, problem, mean, std, draws, col, states)
        # the checks read what the network read: every k-th sample of a faster recording
        n_in = x.shape[1]
        sub = [dataclasses.replace(tr, t=tr.t[::k_resample][:n_in], v=tr.v[::k_resample][:n_in],
                                   i_ext=tr.i_ext[::k_resample][:n_in]) for tr in traces]
        sub_states = [st[::k_resample][:n_in] for st in states]
        predictive = (self._predictive(est, sims[1:, :, ::k_resample, 0][:, :, :n_in], draws[:n_draws], col, ctx.rng)
                      if n_draws else None)
        ood = self._ood(est, sub, sub_states, sigma_hat, predictive)
        names = est.target_names
        m_q, s_q = est.physical(mz, sz)
        per_sweep = [{"sweep": tr.sweep, "mean": dict(zip(names, map(float, m_q[q]))),
                      "std": dict(zip(names, map(float, s_q[q]))),
                      "consistency_z": dict(zip(names, map(float, zq[q])))} | ood["per_sweep"][q]
                     for q, tr in enumerate(traces)]
        metrics = {"out_of_distribution": bool(ood["flagged"]), "ood_feature_z": ood["feature_z"],
                   "reconstruction_ratio": ood["ratio"], "rmse_over_noise": ood["rmse_over_noise"],
                   "sweep_consistency_z": float(np.max(np.abs(zq))) if len(traces) > 1 else 0.0,
                   "n_sweeps": len(traces), "n_samples": int(c.n_samples), "inference_s": t_infer,
                   "resample_factor": k_resample}
        diagnostics = {
            "estimator": _estimator_facts(est, c.estimator),
            "combination": "product of the sweeps' Gaussians in the scaled coordinate (precision-weighted mean)",
            "intervals": _intervals(est, mc, sc),
            "noise_samples": {n: [float(x) for x in draws[:, col[n]]] for n in names if n not in spec.free},
            "per_sweep": per_sweep,
            "ood": {k: v for k, v in ood.items() if k != "per_sweep"},
        }
        if ood["flagged"]:
            warnings.warn(f"amortized: {ood['message']}", RuntimeWarning, stacklevel=3)
        return EstimationResult.from_fit(
            problem, self.name, free, states, std={n: float(std[col[n]]) for n in spec.free}, noise=noise,
            metrics=metrics, samples={n: [float(x) for x in draws[:, col[n]]] for n in spec.free},
            diagnostics=diagnostics)

    # ------------------------------------------------------------------ steps of the fit
    def _noise(self, est: AmortizedEstimator, problem: EstimationProblem, mean: np.ndarray, std: np.ndarray,
               draws: np.ndarray, col: Mapping[str, int], states: Sequence[np.ndarray]
               ) -> tuple[dict[str, float], float | None]:
        """The ``noise`` entry and the estimated marginal noise std (mV; None when the estimator has none)."""
        spec = est.spec
        if not spec.estimate_noise or spec.noise == "none":
            res = [st[:, 0] - tr.v for st, tr in zip(states, problem.traces)]
            return noise_from_residuals(res, problem.noise), None
        if spec.noise == "white":
            k = col["sigma"]
            return {"sigma": float(mean[k]), "sigma_std": float(std[k])}, float(mean[k])
        rho, s = mean[col["rho"]], mean[col["s"]]
        marginal = draws[:, col["s"]] / np.sqrt(1.0 - draws[:, col["rho"]] ** 2)
        sigma = float(s / math.sqrt(1.0 - rho * rho))
        out = {"sigma": sigma, "sigma_std": float(marginal.std()), "rho": float(rho),
               "rho_std": float(std[col["rho"]]), "s": float(s), "s_std": float(std[col["s"]])}
        k = int(round(spec.protocol.sample_dt_ms / problem.traces[0].dt))
        if k > 1 and rho > 0:  # read at every k-th sample: ρ per protocol interval is ρ_rec^k, σ unchanged
            rho_rec = float(rho) ** (1.0 / k)
            out |= {"rho": rho_rec, "rho_std": float(std[col["rho"]]) * rho_rec / (k * float(rho)),
                    "s": sigma * math.sqrt(1.0 - rho_rec**2), "rho_per_protocol_interval": float(rho)}
            out.pop("s_std")
        return out, sigma

    def _predictive(self, est: AmortizedEstimator, v_draws: np.ndarray, draws: np.ndarray, col: Mapping[str, int],
                    rng: np.random.Generator) -> list[np.ndarray]:
        """Posterior-predictive voltages per sweep, (K, T) each: the simulated draws plus their noise."""
        spec = est.spec
        K, Q, T = v_draws.shape
        if spec.noise == "none":
            return [v_draws[:, q] for q in range(Q)]
        if spec.estimate_noise:
            values = np.stack([draws[:, col[n]] for n in spec.noise_names], 1)
        else:
            values = draw_parameters(spec.noise_priors, K, rng)  # not estimated: drawn from its priors
        noisy = add_noise(v_draws.transpose(1, 0, 2).reshape(Q * K, T), spec.noise, np.tile(values, (Q, 1)), rng)
        return list(noisy.reshape(Q, K, T))

    def _ood(self, est: AmortizedEstimator, traces: Sequence[Trace], states: Sequence[np.ndarray],
             sigma_hat: float | None, predictive: list[np.ndarray] | None) -> dict[str, Any]:
        """Both out-of-distribution checks, per sweep and overall (JSON-ready, with a message)."""
        c = self.config
        recorded = [tr.v for tr in traces]
        rec = reconstruction_check(recorded, [st[:, 0] for st in states], sigma_hat, predictive, c.ood_rmse_factor)
        feats: FeatureCheck | None = None
        if est.feature_stats is not None:
            feats = feature_check(est.feature_stats, np.stack(recorded), c.ood_z)
        per_sweep, reasons = [], []
        for q, tr in enumerate(traces):
            why = (feats.reasons(q) if feats is not None else []) + ([rec.reason(q)] if rec.flagged[q] else [])
            reasons += [f"sweep {tr.sweep}: {w}" for w in why]
            per_sweep.append({"rmse_mV": float(rec.rmse[q]), "predictive_rmse_mV": _num(rec.predictive_rmse[q]),
                              "reconstruction_ratio": _num(rec.ratio[q]), "ood_reasons": why,
                              "features": None if feats is None else
                              {n: float(x) for n, x in zip(est.feature_stats.names, feats.features[q])},
                              "feature_z": None if feats is None else
                              {n: float(x) for n, x in zip(est.feature_stats.names, feats.z[q])}})
        flagged = bool(rec.flagged.any() or (feats is not None and feats.flagged.any()))
        message = ("the recording is unlike the estimator's training data, so its estimate and intervals are not to "
                   "be trusted: " + "; ".join(reasons) + ". Check the model, preset and protocol, fit with another "
                   "backend (e.g. lsq), or train an estimator whose priors cover this cell."
                   if flagged else "the recording resembles the training data (features and reconstruction).")
        with np.errstate(invalid="ignore", divide="ignore"):
            over_noise = rec.rmse / rec.noise_sigma
        return {"flagged": flagged, "message": message, "reasons": reasons, "per_sweep": per_sweep,
                "feature_z": float(feats.max_abs_z().max()) if feats is not None else math.nan,
                "ratio": float(np.nanmax(rec.ratio)) if np.isfinite(rec.ratio).any() else math.nan,
                "rmse_over_noise": float(np.nanmax(over_noise)) if np.isfinite(over_noise).any() else math.nan,
                "feature_check": "done" if feats is not None else
                "skipped: the estimator's manifest (format 1) holds no training-set statistics; re-train it",
                "z_limit": float(c.ood_z), "rmse_factor": float(c.ood_rmse_factor), "n_draws": int(c.ood_draws)}


def _simulate(est: AmortizedEstimator, problem: EstimationProblem, thetas: np.ndarray, ctx: FitContext
              ) -> np.ndarray:
    """States (B, Q, T, S) of parameter sets ``thetas`` (B, P) on every sweep, float64, one batched simulation.

    From the estimator's training initial state (after its settling time, under the sweep's first current), under
    each sweep's recorded current held sample to sample, at the estimator's integration step (every sweep has
    the protocol's sampling and length: checked).
    """
    model, spec, traces = problem.model, est.spec, problem.traces
    B, Q, T = thetas.shape[0], len(traces), traces[0].t.size
    same_rate = abs(traces[0].dt - spec.protocol.sample_dt_ms) <= DT_RTOL * 10 * spec.protocol.sample_dt_ms
    dt, r = choose_dt(traces[0].dt, spec.dt_ms if same_rate else None, DEFAULT_MAX_DT)
    n_settle = int(round(spec.settle_ms / traces[0].dt)) * r   # integration steps before the sweep
    n_steps = (T - 1) * r + n_settle
    tk = dt * (np.arange(n_steps + 1) - n_settle)
    stim = np.stack([tr.held_current(tr.t[0] + np.maximum(tk, 0.0)) for tr in traces])  # (Q, n_steps + 1)
    y0 = model.initial_state(spec.preset)
    sim = simulate(model, np.repeat(thetas, Q, 0), duration=n_steps * dt, dt=dt, i_ext=np.tile(stim, (B, 1)),
                   y0=np.tile(y0, (B * Q, 1)), method=spec.method, dtype=torch.float64, device=ctx.device,
                   record_every=r, compile=False, check_finite=False)
    y = sim.y.detach().cpu().numpy()[:, n_settle // r:n_settle // r + T]
    return y.reshape(B, Q, T, model.n_states)


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(float(x)) else None


def _intervals(est: AmortizedEstimator, mc: np.ndarray, sc: np.ndarray) -> dict[str, dict[str, list[float]]]:
    """Central 50 % and 90 % intervals of every target (canonical units) from the combined Gaussians."""
    out: dict[str, dict[str, list[float]]] = {}
    for k, (name, prior) in enumerate(est.spec.target_priors.items()):
        out[name] = {}
        for level in LEVELS:
            q = z_quantile(level)
            lo, hi = (float(prior.unscale(np.clip(mc[k] + sign * q * sc[k], 0.0, 1.0))) for sign in (-1, 1))
            out[name][f"{round(level * 100)}"] = [lo, hi]
    return out


def _estimator_facts(est: AmortizedEstimator, path: str | None) -> dict[str, Any]:
    """What the result records of the estimator: where, what for, and how good it was on its validation split."""
    val = (est.metrics.get("validation") or {}).get("targets", {})
    return {"path": None if path is None else str(path), "model": est.spec.model, "preset": est.spec.preset,
            "targets": list(est.target_names), "architecture": est.arch, "protocol": est.protocol.to_dict(),
            "noise": est.spec.noise, "n_train": est.training.get("n_train"),
            "validation": {n: {k: v.get(k) for k in ("r2", "coverage_50", "coverage_90")} for n, v in val.items()}}

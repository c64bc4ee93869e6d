"""The Estimator base class: a public ``fit()`` template around each backend's ``_fit()``.

Like Neo's ``parse_header``/``_parse_header``, the public method does everything backends share —
validating the problem, seeding, choosing the device, timing, provenance, the ``neo_pinn_after_fit``
hook — and the backend implements only :meth:`Estimator._fit`.
"""

from __future__ import annotations

import math
import platform
import random
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
import torch

from .errors import ConfigurationError, NonFiniteDataError
from .problem import EstimationProblem
from .result import EstimationResult, ParameterEstimate, SweepFit

__all__ = ["Estimator", "FitContext", "build_result"]


@dataclass(frozen=True)
class FitContext:
    """What ``fit()`` hands to ``_fit()``: seed, device, dtype, progress and a seeded numpy generator."""

    seed: int
    device: torch.device
    dtype: torch.dtype
    progress: bool
    rng: np.random.Generator


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("neo-pinn", "torch", "numpy", "scipy", "neo", "quantities"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def is_integer_option(x: Any) -> bool:
    """Whether a backend option value is an integer (numpy integers too; bool is not)."""
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def is_number_option(x: Any) -> bool:
    """Whether a backend option value is a finite real number (bool is not)."""
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) and math.isfinite(x)


class Estimator:
    """Base class of estimation backends.

    Subclasses set :attr:`name` and :attr:`default_config` and implement :meth:`_fit`. Configuration
    keys are validated against ``default_config``; unknown keys raise
    :class:`~neo_pinn.errors.ConfigurationError` listing the valid ones. A backend that declares a
    ``num_threads`` option gets it applied by :meth:`fit` (torch CPU threads during the fit, then restored).

    Parameters
    ----------
    **config
        Backend options overriding :attr:`default_config`.
    """

    name: ClassVar[str] = "base"
    description: ClassVar[str] = ""
    default_config: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, **config: Any) -> None:
        unknown = set(config) - set(self.default_config)
        if unknown:
            raise ConfigurationError(
                f"Unknown option(s) {', '.join(sorted(unknown))} for backend {self.name!r}; valid: "
                f"{', '.join(sorted(self.default_config)) or 'none'}."
            )
        self.config: dict[str, Any] = dict(self.default_config) | dict(config)
        self._check_config()

    def _check_config(self) -> None:
        """Validate option values (types, ranges); raise :class:`ConfigurationError` via :meth:`_bad_option`.

        Called once from ``__init__``, so a bad option fails when the backend is made, not mid-fit.
        """

    def _bad_option(self, key: str, want: str) -> ConfigurationError:
        """The error for an invalid option value; ``want`` says what to give instead."""
        return ConfigurationError(f"{self.name} option {key}={self.config[key]!r} is invalid: {want}.")

    # ------------------------------------------------------------------ template
    def fit(
        self,
        problem: EstimationProblem,
        *,
        seed: int | None = 0,
        device: str | torch.device = "auto",
        dtype: torch.dtype = torch.float64,
        progress: bool = False,
    ) -> EstimationResult:
        """Estimate the free parameters (and hidden states) of ``problem``.

        Parameters
        ----------
        problem : EstimationProblem
        seed : int or None
            Seeds Python, numpy and torch; None draws one (recorded in the provenance).
        device : str or torch.device
            ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
        dtype : torch.dtype
            Floating-point precision of the backend's tensors.
        progress : bool
            Show a progress bar.

        Returns
        -------
        EstimationResult
            With provenance (versions, seed, device, wall time, input hashes, run id) filled in.
        """
        from .plugins import get_state
        from .simulate import resolve_device

        self._validate(problem)
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % (2**31))
        random.seed(seed)
        np.random.seed(seed % (2**32))
        torch.manual_seed(seed)
        dev = resolve_device(device)
        ctx = FitContext(seed=int(seed), device=dev, dtype=dtype, progress=progress, rng=np.random.default_rng(seed))
        start = time.perf_counter()
        threads = self.config.get("num_threads")
        before = torch.get_num_threads()
        # A backend option ``num_threads`` limits torch's CPU threads for this fit only: on a small shared
        # machine several OpenMP threads per process stall each other (see benchmarks/README.md).
        if threads is not None and dev.type == "cpu":
            torch.set_num_threads(int(threads))
        try:
            result = self._fit(problem, ctx)
        finally:
            torch.set_num_threads(before)
        wall = time.perf_counter() - start
        provenance = dict(result.provenance) | {
            "run_id": uuid.uuid4().hex[:8],
            "backend": self.name,
            "model": problem.model.name,
            "seed": int(seed),
            "device": str(dev),
            "dtype": str(dtype).replace("torch.", ""),
            "wall_time_s": wall,
            "versions": _versions(),
            "inputs": [dict(tr.source) | {"sweep": tr.sweep, "stimulus_source": tr.stimulus_source}
                       for tr in problem.traces],
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        result = replace(result, provenance=provenance, config=dict(self.config) | dict(result.config))
        get_state().manager.hook.neo_pinn_after_fit(problem=problem, result=result)
        return result

    def _fit(self, problem: EstimationProblem, ctx: FitContext) -> EstimationResult:
        """Backend-specific estimation; return a result built with :func:`build_result`."""
        raise NotImplementedError

    # ------------------------------------------------------------------ checks
    def _validate(self, problem: EstimationProblem) -> None:
        if not isinstance(problem, EstimationProblem):
            raise ConfigurationError(f"fit() takes an EstimationProblem, got {type(problem).__name__}.")
        if not problem.free:
            raise ConfigurationError("No free parameters: name at least one with free=[...] (CLI --free).")
        for tr in problem.traces:
            if not (np.all(np.isfinite(tr.v)) and np.all(np.isfinite(tr.i_ext))):
                raise NonFiniteDataError(f"Sweep {tr.sweep} holds NaN/inf; choose a clean --window.")


def build_result(
    problem: EstimationProblem,
    backend: str,
    free_values: Mapping[str, float],
    states: Sequence[np.ndarray],
    *,
    std: Mapping[str, float | None] | None = None,
    init: Mapping[str, float | None] | None = None,
    noise: Mapping[str, float] | None = None,
    metrics: Mapping[str, Any] | None = None,
    history: Mapping[str, Any] | None = None,
    samples: Mapping[str, list] | None = None,
    config: Mapping[str, Any] | None = None,
) -> EstimationResult:
    """Assemble an :class:`EstimationResult` from a backend's raw output.

    Parameters
    ----------
    problem : EstimationProblem
    backend : str
        Backend name.
    free_values : mapping
        Estimates of the free parameters (canonical units).
    states : sequence of numpy.ndarray
        Reconstructed states per trace, each (T, S) on the trace's time grid.
    std, init, noise, metrics, history, samples, config : mappings, optional
        Uncertainties, starting values, noise estimates, figures of merit, trajectories, samples, options.
    """
    model = problem.model
    std = dict(std or {})
    init = dict(init or {})
    theta = problem.theta_full(free_values)
    params = {}
    for k, name in enumerate(model.param_names):
        spec = model.param_spec(name)
        is_free = name in problem.free_names
        params[name] = ParameterEstimate(
            name=name, value=float(theta[k]), unit=spec.unit,
            std=(None if std.get(name) is None else float(std[name])) if is_free else None,
            free=is_free, init=init.get(name) if is_free else None,
            true_value=problem.truth.get(name))
    if len(states) != len(problem.traces):
        raise ConfigurationError(f"{len(states)} state arrays for {len(problem.traces)} traces.")
    fits = []
    for tr, st in zip(problem.traces, states):
        st = np.asarray(st, dtype=float)
        if st.shape != (tr.t.size, model.n_states):
            raise ConfigurationError(f"States of sweep {tr.sweep} have shape {st.shape}, expected {(tr.t.size, model.n_states)}.")
        fits.append(SweepFit(sweep=tr.sweep, t=tr.t, v_observed=tr.v, i_ext=tr.i_ext, states=st,
                             stimulus_source=tr.stimulus_source, source=dict(tr.source)))
    m = dict(metrics or {})
    m.setdefault("rmse_mV", float(np.sqrt(np.mean(np.concatenate([(f.v_observed - f.v_fit) ** 2 for f in fits])))))
    errs = [p.relative_error for p in params.values() if p.free and p.relative_error is not None]
    if errs:
        m.setdefault("max_relative_error", float(max(errs)))
    return EstimationResult(model=model.name, backend=backend, parameters=params, state_names=model.state_names,
                            state_units=model.state_units, fits=tuple(fits), noise=dict(noise or {}), metrics=m,
                            history=dict(history or {}), samples=dict(samples or {}), config=dict(config or {}))

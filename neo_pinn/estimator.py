"""The Estimator base class: a public ``fit()`` template around each backend's ``_fit()``.

Like Neo's ``parse_header``/``_parse_header``, the public method does everything backends share —
validating the problem, seeding (once), choosing the device, limiting threads, timing, provenance, the
``neo_pinn_after_fit`` hook (once) — and the backend implements only :meth:`Estimator._fit`. A backend
that continues from another backend's estimate (global → local) asks the core for it with
:func:`refine`, inside its own fit: same seeded context, no second seeding, no second hook.
"""

from __future__ import annotations

import dataclasses
import math
import platform
import random
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, ClassVar, Iterator, Mapping, Sequence

import numpy as np
import torch

from .config import BackendConfig, config_from_defaults, is_integer, is_number
from .errors import ConfigurationError, EstimationError
from .plugins import fire_after_fit, get_state
from .problem import EstimationProblem
from .result import EstimationResult, build_result
from .simulation import resolve_device
from .trace import Trace, require_finite
from .verdict import Check, VerdictConfig, assess, estimates_on_bounds

__all__ = ["Estimator", "FitContext", "refine", "build_result", "is_integer_option", "is_number_option", "check_seed",
           "judge"]

#: deprecated names of :func:`neo_pinn.config.is_integer` and :func:`neo_pinn.config.is_number`
is_integer_option = is_integer
is_number_option = is_number


def judge(problem: EstimationProblem, result: EstimationResult, *, holdout: Sequence[Trace] | None = None,
          config: VerdictConfig = VerdictConfig(), extra_checks: Sequence[Check] = ()) -> EstimationResult:
    """The result with its verdict: :func:`neo_pinn.verdict.assess`, then ``status``/``verdict`` filled in.

    The std of an estimate on (or next to) a bound is withheld (set to None; the value is kept in
    ``verdict["withheld_std"]`` and named in the bounds check): the search stopped at the bound, so the curvature
    there says nothing about how well the data determine the parameter.

    Parameters
    ----------
    problem, result, holdout, config
        As for :func:`neo_pinn.verdict.assess`.
    extra_checks : sequence of Check
        A backend's own checks (:meth:`Estimator.verdict_checks`), added to the verdict and counted in its status.

    Returns
    -------
    EstimationResult
        A new result; ``status`` is "failed" when a "fail" check does not pass.
    """
    verdict = assess(problem, result, holdout=holdout, config=config).with_checks(tuple(extra_checks))
    withheld = {k: _json_number(result.parameters[k].std) for k in estimates_on_bounds(problem, result, config)
                if result.parameters[k].std is not None}
    params = dict(result.parameters)
    for k in withheld:
        params[k] = replace(params[k], std=None)
    return replace(result, parameters=params, status=verdict.status,
                   verdict=verdict.to_dict() | {"lines": verdict.lines(), "withheld_std": withheld})


def _json_number(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def check_seed(seed: Any) -> int | None:
    """A fit's seed: None (draw one) or a whole number in [0, 2**32); anything else raises ConfigurationError."""
    if seed is None:
        return None
    if not is_integer(seed) or not 0 <= int(seed) < 2**32:
        raise ConfigurationError(f"seed={seed!r}: give a whole number from 0 to {2**32 - 1} (or None to draw one).")
    return int(seed)


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


class _DefaultConfig:
    """``Estimator.default_config``: the backend's option defaults as a read-only flat mapping."""

    def __get__(self, obj: Any, owner: type) -> Mapping[str, Any]:
        return MappingProxyType(owner.config_class().to_dict())


class Estimator:
    """Base class of estimation backends.

    Subclasses set :attr:`name`, :attr:`description` and :attr:`config_class` (a frozen
    :class:`~neo_pinn.config.BackendConfig` dataclass of their options) and implement :meth:`_fit`; they may add
    verdict checks (:meth:`verdict_checks`) and declare a :attr:`fixed_protocol`. A plugin
    of the first contract may instead set ``default_config`` to a dict; its options are then untyped.
    Unknown options and invalid values raise :class:`~neo_pinn.errors.ConfigurationError` when the
    backend is made. An option ``num_threads`` limits torch's CPU threads during the fit.

    Parameters
    ----------
    config : BackendConfig, optional
        A ready configuration (then no other option may be given).
    **options
        Options by name, overriding the defaults.
    """

    name: ClassVar[str] = "base"
    description: ClassVar[str] = ""
    config_class: ClassVar[type[BackendConfig]] = BackendConfig
    default_config: ClassVar[Mapping[str, Any]] = _DefaultConfig()  # type: ignore[assignment]
    #: the backend reads sweeps exactly as it was trained to (a fixed protocol and free set, e.g. ``amortized``):
    #: :func:`neo_pinn.estimate` then neither cuts a step protocol to its step window nor fits in stages
    fixed_protocol: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        legacy = cls.__dict__.get("default_config")
        if isinstance(legacy, Mapping) and "config_class" not in cls.__dict__:
            cls.config_class = config_from_defaults(cls.name, legacy)
            cls.default_config = _DefaultConfig()  # type: ignore[assignment]
        elif "config_class" in cls.__dict__:
            cls.config_class.name_owner(cls.name)  # error messages name the backend

    def __init__(self, config: BackendConfig | None = None, **options: Any) -> None:
        if config is not None:
            if options or not isinstance(config, self.config_class):
                raise ConfigurationError(f"Give {self.name} either a {self.config_class.__name__} or options by name.")
            self.config = config
        else:
            self.config = self.config_class.from_options(options)
        self._check_config()

    def _check_config(self) -> None:
        """Extra validation of a first-contract (``default_config`` dict) plugin; typed configs validate themselves."""

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
        check: bool = True,
    ) -> EstimationResult:
        """Estimate the free parameters (and hidden states) of ``problem``, then judge the fit.

        Parameters
        ----------
        problem : EstimationProblem
        seed : int or None
            Seeds Python, numpy and torch once; None draws one (recorded in the provenance).
        device : str or torch.device
            ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
        dtype : torch.dtype
            Floating-point precision of the backend's tensors.
        progress : bool
            Show a progress bar.
        check : bool
            Simulate the fitted model on every sweep (fitted and ``problem.holdout``) and compare it with
            the recording (:func:`judge`): the result's ``status`` and ``verdict``; the std of
            an estimate on a bound is withheld.

        Returns
        -------
        EstimationResult
            With provenance (versions, seed, device, wall time, input hashes, run id) and, with ``check``,
            the verdict filled in.

        Raises
        ------
        EstimationError
            The fit diverged: an estimate is not a finite number.
        """
        self._validate(problem)
        seed = check_seed(seed)
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % (2**31))
        random.seed(seed)
        np.random.seed(seed % (2**32))
        torch.manual_seed(seed)
        dev = resolve_device(device)
        ctx = FitContext(seed=int(seed), device=dev, dtype=dtype, progress=progress, rng=np.random.default_rng(seed))
        start = time.perf_counter()
        with self.cpu_threads(dev):
            result = self._fit(problem, ctx)
        wall = time.perf_counter() - start
        bad = [k for k, p in result.parameters.items() if p.free and not math.isfinite(p.value)]
        if bad:
            raise EstimationError(f"The {self.name} fit diverged: {', '.join(bad)} ended non-finite. Check the bounds, "
                                  "the stimulus units and the integration step, or start from another guess.")
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
        result = replace(result, provenance=provenance, config=self.config.to_dict() | dict(result.config))
        if check:
            result = judge(problem, result, holdout=problem.holdout,
                           extra_checks=self.verdict_checks(problem, result))
        fire_after_fit(problem, result)
        return result

    def verdict_checks(self, problem: EstimationProblem, result: EstimationResult) -> tuple[Check, ...]:
        """This backend's own checks of a fit, added to the verdict (override; none by default).

        Called by :meth:`fit` (and by the staged cell fit) with the fitted problem and the result before its
        verdict; a :class:`~neo_pinn.verdict.Check` that does not pass makes the status "failed" (severity
        "fail") or "warning" ("warn"), like the core's checks. E.g. the amortized backend's out-of-distribution
        flag.
        """
        return ()

    def _fit(self, problem: EstimationProblem, ctx: FitContext) -> EstimationResult:
        """Backend-specific estimation; return :meth:`EstimationResult.from_fit` (states on the traces' samples)."""
        raise NotImplementedError

    @contextmanager
    def cpu_threads(self, device: torch.device) -> Iterator[None]:
        """Limit torch's CPU threads to the ``num_threads`` option (if any) for the duration of the block.

        On a small shared machine several OpenMP threads per process stall each other (see
        benchmarks/README.md), so the built-in backends default to one.
        """
        threads = self.config.get("num_threads")
        before = torch.get_num_threads()
        if threads is not None and device.type == "cpu":
            torch.set_num_threads(int(threads))
        try:
            yield
        finally:
            torch.set_num_threads(before)

    # ------------------------------------------------------------------ checks
    def _validate(self, problem: EstimationProblem) -> None:
        if not isinstance(problem, EstimationProblem):
            raise ConfigurationError(f"fit() takes an EstimationProblem, got {type(problem).__name__}.")
        if not problem.free:
            raise ConfigurationError("No free parameters: name at least one with free=[...] (CLI --free).")
        require_finite(problem.traces)  # a problem made by hand or edited after construction


def refine(
    problem: EstimationProblem,
    ctx: FitContext,
    starts: np.ndarray | Sequence[Sequence[float]],
    *,
    backend: str | type[Estimator] = "lsq",
    options: Mapping[str, Any] | None = None,
    dtype: torch.dtype | None = None,
) -> list[EstimationResult]:
    """Continue a fit with another backend (global → local), from each row of ``starts``.

    Runs inside the calling backend's fit: the registered backend ``backend`` fits ``problem`` once per start
    (the start as the initial guess, clipped into the bounds) with the caller's seeded context — nothing is
    re-seeded and no ``neo_pinn_after_fit`` hook fires; the outer ``fit()`` does both once.

    Parameters
    ----------
    problem : EstimationProblem
    ctx : FitContext
        The running fit's context.
    starts : array_like
        (k, F) free-parameter values (canonical units), one row per refinement.
    backend : str or Estimator subclass
        Registered name (``"lsq"``) or the class.
    options : mapping, optional
        Options of that backend.
    dtype : torch.dtype, optional
        Precision of the refinement (default the context's).

    Returns
    -------
    list of EstimationResult
        One per start, without provenance.
    """
    cls = get_state().backends.get(backend) if isinstance(backend, str) else backend
    if not (isinstance(cls, type) and issubclass(cls, Estimator)):
        raise ConfigurationError(f"refine() needs an Estimator subclass, got {cls!r}.")
    est = cls(**dict(options or {}))
    sub_ctx = ctx if dtype is None else replace(ctx, dtype=dtype)
    results = []
    for row in np.atleast_2d(np.asarray(starts, dtype=float)):
        free = tuple(dataclasses.replace(f, init=float(np.clip(v, *f.bounds))) for f, v in zip(problem.free, row))
        sub = replace(problem, free=free)
        est._validate(sub)
        with est.cpu_threads(sub_ctx.device):
            results.append(est._fit(sub, sub_ctx))
    return results

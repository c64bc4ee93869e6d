"""The training data of the amortized estimator: parameters from the priors, batched simulation, noise.

:class:`Protocol` is what a recording must look like for an estimator to read it (sampling interval,
length, stimulus); :class:`GenerativeSpec` is the whole generative model a network is trained to invert
(model, preset, priors of the free parameters, observation noise and its priors, protocol, integrator).
:func:`make_training_set` draws N parameter sets, simulates them in chunks with the core's batched torch
simulator (float32, any device) and adds the noise.

Noise
-----
The AR(1) noise is that of Rudi, Bessac & Lenzi (2022): ``η_i = ρ η_{i−1} + ε_i``, ``ε_i ~ N(0, s²)``, added
to the voltage (state 0). The core's :class:`neo_pinn.noise.AR1Noise` draws exactly this recursion; it is
parametrised by the *marginal* standard deviation, so it is built with ``sigma = s / sqrt(1 − ρ²)``, which
makes its innovations N(0, s²). It starts from the stationary distribution (the paper's start is not
stated). White noise is :class:`neo_pinn.noise.WhiteNoise` (``sigma``: its standard deviation).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch

from neo_pinn.errors import ConfigurationError, EstimationError, NonFiniteDataError
from neo_pinn.io.stimulus_specs import parse_stimulus
from neo_pinn.models.base import NeuronModel
from neo_pinn.noise import AR1Noise, WhiteNoise
from neo_pinn.plugins import get_state
from neo_pinn.toolkit import METHODS, choose_dt, resolve_device, simulate

from .priors import Prior, priors_from_dict, priors_to_dict

__all__ = ["Protocol", "GenerativeSpec", "TrainingSet", "NOISE_KINDS", "NOISE_PARAMETERS", "make_training_set",
           "draw_parameters", "add_noise", "simulate_clean", "DEFAULT_MAX_DT"]

#: observation-noise kinds and the parameters each has (their priors are given by these names)
NOISE_PARAMETERS: dict[str, tuple[str, ...]] = {"none": (), "white": ("sigma",), "ar1": ("rho", "s")}
NOISE_KINDS = tuple(NOISE_PARAMETERS)
#: largest automatic integration step, ms (RK4; a divisor of the sampling interval is taken)
DEFAULT_MAX_DT = 0.05
#: relative tolerance of a recording's sampling interval against the protocol's
DT_RTOL = 1e-6


@dataclass(frozen=True)
class Protocol:
    """What a recording must look like: its sampling interval, its length and the injected current.

    Parameters
    ----------
    duration_ms : float
        Length of a trace, ms; it holds ``n_samples = duration_ms / sample_dt_ms`` samples at
        ``t = 0, dt, …, duration − dt`` (a whole number of samples).
    sample_dt_ms : float
        Sampling interval, ms.
    stimulus : str, optional
        The injected current as a stimulus spec (``"step:amp=48pA,start=10ms,stop=90ms"``, see
        :mod:`neo_pinn.io.stimulus_specs`); None: the preset's constant current.
    """

    duration_ms: float
    sample_dt_ms: float
    stimulus: str | None = None

    def __post_init__(self) -> None:
        d, dt = self.duration_ms, self.sample_dt_ms
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0
                   for x in (d, dt)):
            raise ConfigurationError(f"Protocol duration_ms and sample_dt_ms must be positive numbers of ms; got "
                                     f"{d!r} and {dt!r}.")
        n = d / dt
        if abs(n - round(n)) > 1e-6 * max(1.0, n) or round(n) < 8:
            raise ConfigurationError(f"Protocol duration {d:g} ms must be a whole number (≥ 8) of sampling intervals "
                                     f"({dt:g} ms); e.g. duration_ms={dt * max(8, round(n)):g}.")
        object.__setattr__(self, "duration_ms", float(d))
        object.__setattr__(self, "sample_dt_ms", float(dt))
        if self.stimulus is not None:
            if not isinstance(self.stimulus, str):
                raise ConfigurationError("Protocol stimulus must be a stimulus spec string or None.")
            parse_stimulus(self.stimulus)  # a malformed spec raises StimulusError with the accepted forms

    @property
    def n_samples(self) -> int:
        """Samples per trace."""
        return int(round(self.duration_ms / self.sample_dt_ms))

    def times(self) -> np.ndarray:
        """Sample times, ms (n_samples,)."""
        return self.sample_dt_ms * np.arange(self.n_samples)

    def current(self) -> Any:
        """The stimulus as the simulator takes it: a :class:`StimulusSpec` (callable of t in ms), or None."""
        return None if self.stimulus is None else parse_stimulus(self.stimulus)

    def to_dict(self) -> dict[str, Any]:
        return {"duration_ms": self.duration_ms, "sample_dt_ms": self.sample_dt_ms, "n_samples": self.n_samples,
                "stimulus": self.stimulus}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Protocol":
        return cls(data["duration_ms"], data["sample_dt_ms"], data.get("stimulus"))

    def resample_factor(self, dt_ms: float) -> int | None:
        """k when ``dt_ms`` × k is the protocol's sampling interval (k ≥ 2 a whole number), else None."""
        try:
            k = self.sample_dt_ms / float(dt_ms)
        except (TypeError, ValueError, ZeroDivisionError):
            return None
        if not math.isfinite(k) or round(k) < 2 or abs(k - round(k)) > 1e-6 * k:
            return None
        return int(round(k))

    def subsample(self, traces: Any, dt_ms: float) -> tuple[np.ndarray, int]:
        """Traces sampled k times faster than the protocol, cut to every k-th sample; (traces, k).

        The documented, safe resampling of the amortized backend. The training traces are point samples of the
        model plus noise at the protocol's interval, and so is every k-th sample of a faster recording: the
        same times (0, k·dt, …), no smoothing of spikes, and white noise keeps its standard deviation (an
        average over blocks would shrink it by √k and blunt the spikes). AR(1) noise of coefficient ρ per
        recorded sample becomes AR(1) with ρᵏ per protocol sample. Traces already at the protocol's interval
        come back checked and unchanged (k = 1).

        Raises
        ------
        ConfigurationError
            ``dt_ms`` is neither the protocol's interval nor that divided by a whole number, or the traces
            hold fewer than ``n_samples`` × k samples.
        """
        k = self.resample_factor(dt_ms)
        if k is None:
            return self.check(traces, dt_ms), 1
        x = np.asarray(traces, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        need = self.n_samples * k
        if x.ndim != 2 or x.shape[1] < need - k + 1:
            raise ConfigurationError(f"Traces of shape {tuple(np.shape(traces))} at {float(dt_ms):g} ms are too short: "
                                     f"every {k}-th sample of {self.duration_ms:g} ms from the sweep start needs "
                                     f"{need - k + 1} samples.")
        return self.check(x[:, :need:k], self.sample_dt_ms), k

    def check(self, traces: Any, dt_ms: float) -> np.ndarray:
        """Traces as a (N, n_samples) float32 array, or a ConfigurationError saying what is expected.

        Parameters
        ----------
        traces : array_like
            One trace (T,) or several (N, T), voltage in the model's unit (mV).
        dt_ms : float
            Their sampling interval, ms.

        Raises
        ------
        ConfigurationError
            Another sampling interval or length than the protocol's.
        NonFiniteDataError
            NaN or infinite samples.
        """
        x = np.asarray(traces, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        want = (f"this estimator reads traces of {self.n_samples} samples at {self.sample_dt_ms:g} ms "
                f"({self.duration_ms:g} ms from the sweep start, stimulus {self.stimulus or 'the preset current'})")
        try:
            dt = float(dt_ms)
        except (TypeError, ValueError):
            raise ConfigurationError(f"dt_ms must be a number of ms; {want}.") from None
        if not (math.isfinite(dt) and abs(dt - self.sample_dt_ms) <= DT_RTOL * self.sample_dt_ms):
            raise ConfigurationError(f"Sampling interval {dt:g} ms does not match: {want}. Resample the recording "
                                     "or train an estimator for this protocol.")
        if x.ndim != 2 or x.shape[1] != self.n_samples:
            raise ConfigurationError(f"Traces of shape {tuple(np.shape(traces))} do not match: {want}. Cut the "
                                     "recording to that window or train an estimator for this protocol.")
        if not np.isfinite(x).all():
            raise NonFiniteDataError("The traces hold NaN or infinite samples; remove or interpolate them first.")
        return x


def _mapping_of_priors(value: Any, what: str) -> dict[str, Prior]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(p, Prior) for p in value.values()):
        raise ConfigurationError(f"{what} must map parameter names to priors (Uniform, LogUniform, "
                                 f"TruncatedNormal); got {value!r}.")
    return dict(value)


@dataclass(frozen=True)
class GenerativeSpec:
    """The generative model an amortized estimator inverts (validated on construction).

    Parameters
    ----------
    model : str
        Registered model name.
    priors : mapping of str to Prior
        Prior of every free parameter (canonical units); the others keep the preset's values.
    protocol : Protocol
    preset : str, optional
        Preset giving the fixed parameters, the initial state and the default current (the model's default).
    noise : {"none", "white", "ar1"}
        Observation noise added to state 0 (see the module documentation).
    noise_priors : mapping of str to Prior
        Priors of the noise parameters: ``sigma`` (white) or ``rho`` and ``s`` (AR(1), s the innovation st.dev.).
    estimate_noise : bool
        Whether the noise parameters are estimated (targets of the network) besides the free parameters.
    dt_ms : float, optional
        Integration step, ms, dividing the sampling interval (None: the largest ≤ 0.05 ms that does).
    method : str
        Fixed-step integrator of the simulator (``"rk4"``).
    values : mapping of str to float
        Fixed parameters that differ from the preset (canonical units), e.g. a measured cell's capacitance,
        leak and resting potential (:func:`neo_pinn.cell.cell_scaled_ranges`).
    settle_ms : float
        Every simulation starts this long before the protocol (from the preset's initial state, with the
        protocol's current at its start held), so that a trace starts where its parameters make the cell rest —
        as a recorded sweep does — instead of relaxing from the preset's state (0: no settling). A whole number
        of sampling intervals.
    """

    model: str
    priors: Mapping[str, Prior]
    protocol: Protocol
    preset: str | None = None
    noise: str = "none"
    noise_priors: Mapping[str, Prior] = field(default_factory=dict)
    estimate_noise: bool = True
    dt_ms: float | None = None
    method: str = "rk4"
    values: Mapping[str, float] = field(default_factory=dict)
    settle_ms: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.protocol, Protocol):
            raise ConfigurationError("protocol must be a Protocol(duration_ms, sample_dt_ms, stimulus).")
        object.__setattr__(self, "priors", _mapping_of_priors(self.priors, "priors"))
        object.__setattr__(self, "noise_priors", _mapping_of_priors(self.noise_priors, "noise_priors"))
        model = self.neuron_model()
        if self.preset is not None:
            model.preset(self.preset)  # UnknownNameError listing the presets
        if not isinstance(self.values, Mapping):
            raise ConfigurationError(f"values must map fixed parameter names to numbers; got {self.values!r}.")
        fixed = {k: float(model.param_values(None, **{k: v})[k]) for k, v in self.values.items()}  # names, units
        model.check_parameter_values(fixed, "fixed value of")
        both = sorted(set(fixed) & set(self.priors or {}))
        if both:
            raise ConfigurationError(f"{', '.join(both)} has a prior and a fixed value; give one or the other.")
        object.__setattr__(self, "values", fixed)
        if not self.priors:
            raise ConfigurationError(f"Give a prior for at least one free parameter of {self.model} "
                                     f"({', '.join(model.param_names)}).")
        for name, prior in self.priors.items():
            model.param_spec(name)  # UnknownNameError naming the model's parameters
            model.check_parameter_values({name: prior.low}, "prior lower bound of")
            model.check_parameter_values({name: prior.high}, "prior upper bound of")
        if self.noise not in NOISE_PARAMETERS:
            raise ConfigurationError(f"noise={self.noise!r}: give one of {', '.join(NOISE_KINDS)}.")
        want = set(NOISE_PARAMETERS[self.noise])
        if set(self.noise_priors) != want:
            raise ConfigurationError(f"noise={self.noise!r} needs priors for exactly {sorted(want) or 'nothing'}; got "
                                     f"{sorted(self.noise_priors)}.")
        if self.noise == "ar1" and not (-1 < self.noise_priors["rho"].low and self.noise_priors["rho"].high < 1):
            raise ConfigurationError("The AR(1) rho prior must lie inside (−1, 1).")
        for name in want - {"rho"}:
            if self.noise_priors[name].low < 0:
                raise ConfigurationError(f"The noise {name} prior must lie in [0, ∞).")
        object.__setattr__(self, "noise_priors", {k: self.noise_priors[k] for k in NOISE_PARAMETERS[self.noise]})
        if self.method not in METHODS:
            raise ConfigurationError(f"method={self.method!r}: give one of {', '.join(METHODS)}.")
        choose_dt(self.protocol.sample_dt_ms, self.dt_ms, DEFAULT_MAX_DT)  # a dt not dividing the interval raises
        settle = self.settle_ms
        if isinstance(settle, bool) or not isinstance(settle, (int, float)) or not (math.isfinite(settle)
                                                                                     and settle >= 0):
            raise ConfigurationError(f"settle_ms must be a number of ms ≥ 0; got {settle!r}.")
        n_settle = settle / self.protocol.sample_dt_ms
        if abs(n_settle - round(n_settle)) > 1e-6 * max(1.0, n_settle):
            raise ConfigurationError(f"settle_ms={settle:g} must be a whole number of sampling intervals "
                                     f"({self.protocol.sample_dt_ms:g} ms).")
        object.__setattr__(self, "settle_ms", float(settle))

    def neuron_model(self) -> NeuronModel:
        """The registered :class:`NeuronModel` named :attr:`model` (UnknownNameError when absent)."""
        if not isinstance(self.model, str):
            raise ConfigurationError(f"model must be a registered model's name; got {self.model!r}.")
        return get_state().models.get(self.model)

    @property
    def free(self) -> tuple[str, ...]:
        """Free (simulated-from-prior) model parameters, in order."""
        return tuple(self.priors)

    @property
    def noise_names(self) -> tuple[str, ...]:
        return NOISE_PARAMETERS[self.noise]

    @property
    def target_names(self) -> tuple[str, ...]:
        """What the network estimates: the free parameters, then (``estimate_noise``) the noise parameters."""
        return self.free + (self.noise_names if self.estimate_noise else ())

    @property
    def target_priors(self) -> dict[str, Prior]:
        return {n: (self.priors.get(n) or self.noise_priors[n]) for n in self.target_names}

    @property
    def settle_samples(self) -> int:
        """Sampling intervals simulated before the protocol starts (:attr:`settle_ms`)."""
        return int(round(self.settle_ms / self.protocol.sample_dt_ms))

    def base_theta(self) -> np.ndarray:
        """The model's parameter vector (P,) of the preset with :attr:`values` (the free ones are drawn)."""
        return self.neuron_model().theta(self.values, preset=self.preset)

    def integration(self) -> tuple[float, int]:
        """(integration step in ms, steps per sample)."""
        return choose_dt(self.protocol.sample_dt_ms, self.dt_ms, DEFAULT_MAX_DT)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "preset": self.preset, "priors": priors_to_dict(self.priors),
                "protocol": self.protocol.to_dict(), "noise": self.noise,
                "noise_priors": priors_to_dict(self.noise_priors), "estimate_noise": self.estimate_noise,
                "dt_ms": self.dt_ms, "method": self.method, "values": dict(self.values), "settle_ms": self.settle_ms}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "GenerativeSpec":
        return cls(model=data["model"], priors=priors_from_dict(data["priors"]),
                   protocol=Protocol.from_dict(data["protocol"]), preset=data.get("preset"),
                   noise=data.get("noise", "none"), noise_priors=priors_from_dict(data.get("noise_priors", {})),
                   estimate_noise=bool(data.get("estimate_noise", True)), dt_ms=data.get("dt_ms"),
                   method=data.get("method", "rk4"), values=dict(data.get("values") or {}),
                   settle_ms=float(data.get("settle_ms", 0.0)))


@dataclass
class TrainingSet:
    """Simulated traces and what generated them.

    Attributes
    ----------
    clean : numpy.ndarray
        Noise-free state-0 traces (N, T), float32, the model's voltage unit.
    traces : numpy.ndarray
        ``clean`` plus one noise draw (N, T), float32.
    free_values : numpy.ndarray
        Free parameters (N, F), float64, canonical units, in :attr:`GenerativeSpec.free` order.
    noise_values : numpy.ndarray
        Noise parameters (N, K), float64, in :attr:`GenerativeSpec.noise_names` order.
    n_dropped : int
        Draws whose simulation diverged (not finite) and were replaced by new draws.
    """

    clean: np.ndarray
    traces: np.ndarray
    free_values: np.ndarray
    noise_values: np.ndarray
    n_dropped: int = 0

    def targets(self, spec: GenerativeSpec) -> np.ndarray:
        """Physical values of the spec's targets (N, P), float64."""
        noise = self.noise_values if spec.estimate_noise else self.noise_values[:, :0]
        return np.concatenate([self.free_values, noise], 1)

    def scaled_targets(self, spec: GenerativeSpec) -> np.ndarray:
        """Targets in the network's coordinate (N, P), float32: each prior's support mapped onto [0, 1]."""
        values = self.targets(spec)
        cols = [p.scale(values[:, k]) for k, p in enumerate(spec.target_priors.values())]
        return np.stack(cols, 1).astype(np.float32)


def draw_parameters(priors: Mapping[str, Prior], n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` draws of every prior, (n, len(priors)) float64, columns in the mapping's order."""
    if not priors:
        return np.zeros((int(n), 0))
    return np.stack([p.sample(n, rng) for p in priors.values()], 1)


def add_noise(clean: np.ndarray, kind: str, values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``clean`` (N, T) plus one noise draw per row with that row's noise parameters ``values`` (N, K).

    See the module documentation for the AR(1) parametrisation (``values[:, 0]`` = ρ, ``values[:, 1]`` = s,
    the innovation standard deviation). Returns float64.
    """
    clean = np.asarray(clean, dtype=float)
    if kind == "none":
        return clean.copy()
    out = np.empty_like(clean)
    T = clean.shape[1]
    for i in range(clean.shape[0]):
        if kind == "ar1":
            rho, s = float(values[i, 0]), float(values[i, 1])
            model = AR1Noise(sigma=s / math.sqrt(1.0 - rho * rho), rho=rho)
        else:
            model = WhiteNoise(float(values[i, 0]))
        out[i] = clean[i] + model.sample((T,), rng)
    return out


def simulate_clean(spec: GenerativeSpec, free_values: np.ndarray, *, device: str = "auto",
                   dtype: torch.dtype = torch.float32, compile: bool | str = False) -> np.ndarray:
    """Noise-free state-0 traces (N, T) of parameter sets ``free_values`` (N, F) with the batched simulator.

    Non-finite rows (diverged simulations) are returned as NaN rows; the caller decides what to do.
    """
    model = spec.neuron_model()
    theta = np.tile(spec.base_theta(), (free_values.shape[0], 1))
    for k, name in enumerate(spec.free):
        theta[:, model.param_index(name)] = free_values[:, k]
    dt, steps = spec.integration()
    T, n0 = spec.protocol.n_samples, spec.settle_samples
    current = spec.protocol.current()
    if current is not None and n0:
        stimulus = current

        def current(t):  # settling holds the protocol's current at its start, as the reference solver does
            return stimulus(t.clamp(min=0.0) if isinstance(t, torch.Tensor) else np.maximum(t, 0.0))
    sim = simulate(model, theta, duration=(T + n0) * spec.protocol.sample_dt_ms, dt=dt, record_every=steps,
                   t0=-spec.settle_ms, i_ext=current, preset=spec.preset, method=spec.method,
                   dtype=dtype, device=device, states=[model.state_names[0]], compile=compile, check_finite=False)
    y = sim.y[:, n0:n0 + T, 0].detach().to("cpu", torch.float32).numpy()
    bad = ~np.isfinite(y).all(1)
    y[bad] = np.nan
    return y


def make_training_set(spec: GenerativeSpec, n: int, *, seed: int = 0, device: str = "auto", chunk: int = 4096,
                      progress: bool = False, max_rounds: int = 5) -> TrainingSet:
    """Draw ``n`` parameter sets from the priors, simulate them in chunks (float32) and add the noise.

    Parameters
    ----------
    spec : GenerativeSpec
    n : int
        Traces wanted.
    seed : int
        Seed of the draws (parameters and noise); the same seed gives the same set on the same device.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"`` for the simulation.
    chunk : int
        Parameter sets simulated per call (memory: chunk × T × 4 bytes).
    progress : bool
        Show a tqdm bar over the chunks.
    max_rounds : int
        Rounds of redrawing parameter sets whose simulation diverged.

    Returns
    -------
    TrainingSet

    Raises
    ------
    EstimationError
        Too many draws diverge (after ``max_rounds`` rounds of redrawing): narrow the priors or reduce dt.
    """
    if not (isinstance(n, int) and n >= 1 and isinstance(chunk, int) and chunk >= 1):
        raise ConfigurationError("n and chunk must be positive integers.")
    rng = np.random.default_rng(seed)
    dev = resolve_device(device)
    compile_ = "auto" if dev.type == "cuda" else False
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, unit="trace", desc=f"simulate {spec.model}", leave=False)
    kept_free, kept_clean, dropped, rounds = [], [], 0, 0
    have = 0
    try:
        while have < n:
            if rounds > max_rounds:
                raise EstimationError(f"{dropped} of the simulated parameter draws diverged; narrow the priors of "
                                      f"{', '.join(spec.free)} or give a smaller dt_ms.")
            m = min(chunk, n - have)
            free = draw_parameters(spec.priors, m, rng)
            clean = simulate_clean(spec, free, device=str(dev), compile=compile_)
            ok = np.isfinite(clean).all(1)
            dropped += int((~ok).sum())
            rounds += int(not ok.all())
            kept_free.append(free[ok])
            kept_clean.append(clean[ok])
            have += int(ok.sum())
            if bar is not None:
                bar.update(int(ok.sum()))
    finally:
        if bar is not None:
            bar.close()
    if dropped:
        warnings.warn(f"{dropped} parameter draws diverged in simulation and were redrawn (the training set "
                      "under-represents those regions of the prior).", RuntimeWarning, stacklevel=2)
    free = np.concatenate(kept_free)[:n]
    clean = np.concatenate(kept_clean)[:n].astype(np.float32)
    noise_values = draw_parameters(spec.noise_priors, n, rng)  # columns in spec.noise_names order
    traces = add_noise(clean, spec.noise, noise_values, rng).astype(np.float32)
    if not np.isfinite(traces).all():
        raise NonFiniteDataError("The noisy training traces hold NaN/inf; check the noise priors.")
    return TrainingSet(clean=clean, traces=traces, free_values=free, noise_values=noise_values, n_dropped=dropped)

"""Training an amortized estimator: :class:`TrainConfig` (frozen, validated) and :func:`train_estimator`.

Training simulates ``n`` traces from the priors (:func:`.training_set.make_training_set`), holds out a
validation split, fits the network with AdamW on the Gaussian (β-)NLL of the scaled targets with a cosine
learning-rate decay and early stopping on the validation NLL, keeps the best epoch, and fits a per-target
temperature on the validation split so that the 50 % and 90 % intervals cover as often as they say
(:func:`.metrics.temperature`). With ``renoise`` every epoch sees a fresh noise draw (and fresh noise
parameters) on the same noise-free simulations. The training traces' summary features are stored for the
out-of-distribution check (:func:`.ood.feature_stats`), with the share of validation traces it flags.

:func:`rudi2022_config` is the set-up of Rudi, Bessac & Lenzi (2022): FitzHugh–Nagumo, T = 200, Δt = 0.2
(1,000 samples), AR(1) noise, θ0, θ1, ρ and s estimated, their CNN, batch 32, learning rate 2e-3.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import numpy as np
import torch

from neo_pinn.errors import ConfigurationError, EstimationError
from neo_pinn.plugins import get_state
from neo_pinn.toolkit import (BOOL, MAPPING, METHODS, NON_NEGATIVE, POSITIVE, POSITIVE_INT, Check, OptionGroup,
                              between, one_of, option, optional, resolve_device)

from .estimator import AmortizedEstimator
from .metrics import temperature
from .networks import NETWORKS, build_network, gaussian_nll
from .ood import DEFAULT_Z_LIMIT, feature_check, feature_stats
from .priors import RUDI2022_AR1_PRIORS, RUDI2022_PRIORS, LogUniform, Prior, Uniform
from .training_set import NOISE_KINDS, GenerativeSpec, Protocol, TrainingSet, add_noise, draw_parameters, \
    make_training_set

__all__ = ["TrainConfig", "train_estimator", "rudi2022_config", "default_priors"]

_PRIOR_MAP = Check(lambda x: x is None or (isinstance(x, Mapping) and all(isinstance(p, Prior) for p in x.values())),
                   "give a mapping of parameter name to prior (Uniform, LogUniform, TruncatedNormal) or None")
_NAMES = Check(lambda x: x is None or (isinstance(x, tuple) and len(x) > 0 and all(isinstance(s, str) for s in x)),
               "give a list of parameter names or None")
_NAME = Check(lambda x: isinstance(x, str) and bool(x), "give a registered model's name")
_OPT_STR = Check(lambda x: x is None or isinstance(x, str), "give a string or None")


@dataclass(frozen=True)
class TrainConfig(OptionGroup):
    """Everything that defines a trained amortized estimator (frozen; checked when made)."""

    owner: ClassVar[str] = "amortized training"

    model: str = option("fitzhugh_nagumo", _NAME, "registered model name")
    preset: str | None = option(None, _OPT_STR, "preset: fixed parameters, initial state, current (None: default)")
    free: tuple[str, ...] | None = option(None, _NAMES, "free parameters (None: the priors' names, else the model's "
                                          "default free parameters)")
    priors: Mapping[str, Prior] | None = option(None, _PRIOR_MAP, "prior per free parameter (None: uniform on the "
                                                "model's bounds, log-uniform for log-scale parameters)")
    noise: str = option("none", one_of(*NOISE_KINDS), "observation noise on state 0: none, white or ar1")
    noise_priors: Mapping[str, Prior] | None = option(None, _PRIOR_MAP, "priors of the noise parameters: sigma "
                                                      "(white) or rho and s (ar1, s the innovation st.dev.)")
    estimate_noise: bool = option(True, BOOL, "estimate the noise parameters too")
    values: Mapping[str, float] = option({}, MAPPING, "fixed parameters that differ from the preset (canonical "
                                         "units), e.g. a measured cell's capacitance and leak")
    settle_ms: float = option(0.0, NON_NEGATIVE, "simulate this long before the protocol so traces start at rest, ms")
    duration_ms: float = option(200.0, POSITIVE, "trace length, ms (a whole number of sampling intervals)")
    sample_dt_ms: float = option(0.2, POSITIVE, "sampling interval, ms")
    stimulus: str | None = option(None, _OPT_STR, "injected current as a stimulus spec (None: the preset's)")
    dt_ms: float | None = option(None, optional(POSITIVE), "integration step, ms (None: ≤ 0.05 ms dividing the "
                                 "sampling interval)")
    method: str = option("rk4", one_of(*METHODS), "fixed-step integrator")
    n: int = option(1280, POSITIVE_INT, "simulated traces, training and validation together")
    validation_fraction: float = option(0.2, between(0.01, 0.9), "share of the traces held out for validation")
    arch: str = option("rescnn", one_of(*NETWORKS), "network architecture (rescnn: the best measured, "
                       "benchmarks/README.md)")
    arch_options: Mapping[str, Any] = option({}, MAPPING, "options of the architecture (numbers, lists)")
    epochs: int = option(200, POSITIVE_INT, "most epochs")
    batch_size: int = option(32, POSITIVE_INT, "mini-batch size")
    lr: float = option(2e-3, POSITIVE, "AdamW learning rate (cosine decay to lr/20)")
    weight_decay: float = option(1e-4, NON_NEGATIVE, "AdamW weight decay")
    beta_nll: float = option(0.5, between(0.0, 1.0), "β of the β-NLL loss (0: plain Gaussian NLL)")
    patience: int = option(50, POSITIVE_INT, "stop after this many epochs without a better validation NLL")
    renoise: bool | None = option(None, optional(BOOL), "fresh noise (and noise parameters) on the clean "
                                  "simulations every epoch (None: on when there is noise)")
    calibrate: bool = option(True, BOOL, "fit a per-target temperature of the std on the validation split")
    seed: int = option(0, Check(lambda x: isinstance(x, int) and not isinstance(x, bool) and x >= 0,
                                "give an integer ≥ 0"), "seed of simulation, split, initialisation and batches")
    device: str = option("auto", Check(lambda x: isinstance(x, str), "give 'auto', 'cpu' or 'cuda'"),
                         "device of simulation and training")
    progress: bool = option(False, BOOL, "show tqdm progress bars")
    num_threads: int | None = option(None, optional(POSITIVE_INT), "torch CPU threads while training "
                                     "(None: leave torch's setting)")

    def _check(self) -> None:
        if self.free is not None and self.priors is not None and set(self.free) != set(self.priors):
            raise self.bad("free", f"name exactly the parameters that have priors ({', '.join(self.priors)})")
        if self.noise != "none" and self.noise_priors is None:
            raise self.bad("noise_priors", f"give the priors of the {self.noise} noise parameters, e.g. "
                           + ("{'rho': Uniform(0.66, 0.92), 's': Uniform(0.0377, 0.096)}" if self.noise == "ar1"
                              else "{'sigma': LogUniform(0.1, 2.0)}"))
        if self.noise == "none" and self.renoise:
            raise self.bad("renoise", "use it with noise 'white' or 'ar1' (there is no noise to redraw)")
        resolve_device(self.device)  # ConfigurationError naming the accepted devices
        self.spec()  # the generative model: model, preset, priors, noise, protocol, dt all checked
        n_val = self.n_validation
        if n_val < 2 or self.n - n_val < 2:
            raise self.bad("n", f"give enough traces for both splits (validation {n_val}, training {self.n - n_val})")

    @property
    def fresh_noise(self) -> bool:
        """Whether every epoch draws fresh noise (``renoise``; None: whenever there is noise, the measured best)."""
        return self.noise != "none" if self.renoise is None else bool(self.renoise)

    @property
    def n_validation(self) -> int:
        """Traces held out for validation."""
        return int(round(self.n * self.validation_fraction))

    def spec(self) -> GenerativeSpec:
        """The :class:`GenerativeSpec` this configuration trains for."""
        priors = dict(self.priors) if self.priors is not None else default_priors(self.model, self.free)
        if self.priors is not None and self.free is not None:
            priors = {name: priors[name] for name in self.free}
        return GenerativeSpec(model=self.model, priors=priors,
                              protocol=Protocol(self.duration_ms, self.sample_dt_ms, self.stimulus),
                              preset=self.preset, noise=self.noise, noise_priors=dict(self.noise_priors or {}),
                              estimate_noise=self.estimate_noise, dt_ms=self.dt_ms, method=self.method,
                              values=dict(self.values), settle_ms=self.settle_ms)

    def hyper_parameters(self) -> dict[str, Any]:
        """The training options as JSON-ready values (for the manifest)."""
        keys = ("n", "validation_fraction", "epochs", "batch_size", "lr", "weight_decay", "beta_nll", "patience",
                "renoise", "calibrate", "seed", "device", "num_threads")
        return {k: self[k] for k in keys} | {"renoise": self.fresh_noise, "optimizer": "AdamW",
                                            "schedule": "cosine to lr/20",
                                            "early_stopping": "validation Gaussian NLL"}


def default_priors(model: str, free: tuple[str, ...] | None) -> dict[str, Prior]:
    """Uniform priors on the model's bounds (log-uniform for log-scale parameters) of ``free`` (or its default)."""
    m = get_state().models.get(model)
    names = free or m.default_free
    out: dict[str, Prior] = {}
    for name in names:
        spec = m.param_spec(name)
        lo, hi = spec.bounds
        out[name] = LogUniform(lo, hi) if (spec.log_scale and lo > 0) else Uniform(lo, hi)
    return out


def rudi2022_config(**overrides: Any) -> TrainConfig:
    """The set-up of Rudi, Bessac & Lenzi (2022) (module doc) with 1,024 training + 256 validation traces.

    The priors are :data:`.priors.RUDI2022_PRIORS` and :data:`.priors.RUDI2022_AR1_PRIORS` (their family is not
    verified, see there). Any option may be overridden by name.
    """
    base = dict(model="fitzhugh_nagumo", priors=RUDI2022_PRIORS, noise="ar1", noise_priors=RUDI2022_AR1_PRIORS,
                estimate_noise=True, duration_ms=200.0, sample_dt_ms=0.2, stimulus=None, n=1280,
                validation_fraction=0.2, arch="paper_cnn", epochs=200, batch_size=32, lr=2e-3, renoise=False)
    return TrainConfig.from_options(base | overrides)


@dataclass
class _Split:
    """Training or validation arrays: noise-free traces, noisy traces, physical targets, scaled targets."""

    clean: np.ndarray
    traces: np.ndarray
    free: np.ndarray
    noise: np.ndarray


def _split(data: TrainingSet, n_val: int, rng: np.random.Generator) -> tuple[_Split, _Split]:
    order = rng.permutation(data.traces.shape[0])
    parts = []
    for idx in (order[n_val:], order[:n_val]):
        parts.append(_Split(data.clean[idx], data.traces[idx], data.free_values[idx], data.noise_values[idx]))
    return parts[0], parts[1]


def _truth(spec: GenerativeSpec, part: _Split) -> np.ndarray:
    """Physical target values of a split (N, P)."""
    return np.concatenate([part.free, part.noise if spec.estimate_noise else part.noise[:, :0]], 1)


def _scaled(spec: GenerativeSpec, part: _Split) -> np.ndarray:
    """Target values of a split in the network's coordinate (N, P), float32."""
    values = _truth(spec, part)
    return np.stack([p.scale(values[:, k]) for k, p in enumerate(spec.target_priors.values())], 1).astype(np.float32)


def _predict(network: torch.nn.Module, x: torch.Tensor, batch: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    network.eval()
    ms, ss = [], []
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            m, lv = network(x[i:i + batch])
            ms.append(m.double().cpu().numpy())
            ss.append(torch.exp(0.5 * lv).double().cpu().numpy())
    return np.concatenate(ms), np.concatenate(ss)


def _nll(mean: np.ndarray, std: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(np.log(std) + 0.5 * ((truth - mean) / std) ** 2))


def _fit(config: TrainConfig, spec: GenerativeSpec, network: torch.nn.Module, train: _Split, val: _Split,
         norm: tuple[float, float], device: torch.device, rng: np.random.Generator) -> dict[str, Any]:
    """The training loop: AdamW, cosine decay, early stopping on the validation NLL; loads the best weights."""
    def to_x(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor((a - norm[0]) / norm[1], dtype=torch.float32, device=device)

    x_val, y_val = to_x(val.traces), _scaled(spec, val)
    x_tr, y_tr = to_x(train.traces), torch.as_tensor(_scaled(spec, train), device=device)
    opt = torch.optim.AdamW(network.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs, eta_min=config.lr / 20)
    gen = torch.Generator().manual_seed(config.seed)
    best = (math.inf, -1, copy.deepcopy(network.state_dict()))
    history: list[float] = []
    bar = None
    if config.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.epochs, unit="epoch", desc=f"train {config.arch}", leave=False)
    try:
        for epoch in range(config.epochs):
            if config.fresh_noise:
                noise = draw_parameters(spec.noise_priors, train.clean.shape[0], rng)
                x_tr = to_x(add_noise(train.clean, spec.noise, noise, rng).astype(np.float32))
                y_tr = torch.as_tensor(_scaled(spec, _Split(train.clean, train.traces, train.free, noise)),
                                       device=device)
            network.train()
            perm = torch.randperm(x_tr.shape[0], generator=gen).to(device)
            for i in range(0, x_tr.shape[0], config.batch_size):
                idx = perm[i:i + config.batch_size]
                if idx.numel() < 2:  # batch norm needs two samples
                    continue
                mean, log_var = network(x_tr[idx])
                loss = gaussian_nll(mean, log_var, y_tr[idx], config.beta_nll)
                if not torch.isfinite(loss):
                    raise EstimationError(f"The training loss became {loss.item()} at epoch {epoch}; lower lr "
                                          f"(now {config.lr:g}) or check the priors.")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            sched.step()
            m, s = _predict(network, x_val)
            val_nll = _nll(m, s, y_val)
            history.append(val_nll)
            if val_nll < best[0]:
                best = (val_nll, epoch, copy.deepcopy(network.state_dict()))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(val_nll=f"{val_nll:.3f}")
            if epoch - best[1] >= config.patience:
                break
    finally:
        if bar is not None:
            bar.close()
    network.load_state_dict(best[2])
    network.eval()
    return {"epochs_run": len(history), "best_epoch": best[1] + 1, "best_val_nll": best[0],
            "val_nll_history": [round(v, 5) for v in history]}


def train_estimator(config: TrainConfig) -> AmortizedEstimator:
    """Simulate, train and calibrate an amortized estimator (see the module documentation).

    Parameters
    ----------
    config : TrainConfig

    Returns
    -------
    AmortizedEstimator
        On the CPU, with training and validation metrics (R², RMSE, 50/90 % coverage) in ``metrics``.

    Raises
    ------
    ConfigurationError
        ``config`` is not a :class:`TrainConfig`.
    EstimationError
        The simulation or the training diverged.
    """
    if not isinstance(config, TrainConfig):
        raise ConfigurationError("train_estimator takes a TrainConfig (e.g. TrainConfig(n=1280) or "
                                 "rudi2022_config()).")
    old_threads = torch.get_num_threads()
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    try:
        return _train(config)
    finally:
        torch.set_num_threads(old_threads)


def _train(config: TrainConfig) -> AmortizedEstimator:
    t0 = time.perf_counter()
    spec = config.spec()
    device = resolve_device(config.device)
    data = make_training_set(spec, config.n, seed=config.seed, device=str(device), progress=config.progress)
    t_sim = time.perf_counter() - t0
    rng = np.random.default_rng([config.seed, 1])
    train, val = _split(data, config.n_validation, rng)
    norm = (float(train.traces.mean()), float(train.traces.std()) or 1.0)
    torch.manual_seed(config.seed)
    network = build_network(config.arch, spec.protocol.n_samples, len(spec.target_names),
                            dict(config.arch_options)).to(device)
    facts = _fit(config, spec, network, train, val, norm, device, rng)
    est = AmortizedEstimator(spec, config.arch, dict(config.arch_options), network.cpu(), input_shift=norm[0],
                             input_scale=norm[1])
    dt = spec.protocol.sample_dt_ms
    raw = est.evaluate(val.traces, dt, _truth(spec, val))
    if config.calibrate:
        mz, sz = est.predict_scaled(val.traces, dt)
        est.temperature = temperature(_scaled(spec, val).astype(float), mz, sz)
    model = spec.neuron_model()
    est.feature_stats = feature_stats(train.traces, model.spike_threshold, model.spike_rearm)
    flagged = feature_check(est.feature_stats, val.traces, DEFAULT_Z_LIMIT).flagged
    est.metrics = {"train": est.evaluate(train.traces, dt, _truth(spec, train)),
                   "validation": est.evaluate(val.traces, dt, _truth(spec, val)),
                   "validation_uncalibrated": raw,
                   "ood_validation_flagged": {"z_limit": DEFAULT_Z_LIMIT, "fraction": float(flagged.mean())}}
    training = config.hyper_parameters() | facts | {
        "n_train": int(train.traces.shape[0]), "n_validation": int(val.traces.shape[0]),
        "n_dropped_diverged": data.n_dropped, "device_used": str(device), "simulate_s": round(t_sim, 3),
        "wall_s": round(time.perf_counter() - t0, 3)}
    est.training = training
    return est

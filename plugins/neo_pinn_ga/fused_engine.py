"""The GA's ``engine="fused"``: a generation scored by ONE fused kernel launch, objectives from online features.

:class:`FusedPopulationEvaluator` replaces the trace-based scoring of
:class:`~neo_pinn_ga.evaluate.PopulationEvaluator` by :func:`neo_pinn.simulation.fused.population_features`:
one Triton kernel integrates every individual × sweep with its state in registers and accumulates only the
features of :data:`ONLINE_GROUPS` (spike count, rate, latency, ISI mean and CV; peak, trough and rest
means) and the squared error against the raw recording, so no trace is ever stored. The recording's
features come from :func:`neo_pinn.simulation.fused.voltage_features`, the same accumulator code, and the
error rule, tolerances, grouping and divergence are :mod:`neo_pinn_ga.evaluate`'s.

The objectives therefore differ in value (not in kind) from ``engine="torch"``: spikes are threshold
crossings (not AP peaks); the shape group holds peak/trough/rest means (no ``time_above_ms``,
``v_mean_mv``, bursting group or phase plane, which need stored traces); ``rest_mv`` is the mean before the
stimulus first departs from its initial value; the model's voltage is not smoothed and
``trace_smooth_ms`` is ignored; a peak between two samples counts in the model only. Sweeps of equal
length share one launch; sweeps of different lengths get one launch per length (padding would keep a
shorter sweep's held stimulus driving the model).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import torch

from neo_pinn.errors import ConfigurationError
from neo_pinn.problem import EstimationProblem
from neo_pinn.simulation.fused import FusedUnavailableError, fused_available, population_features, voltage_features

from .evaluate import DIVERGED, PopulationEvaluator

__all__ = ["FusedPopulationEvaluator", "ONLINE_GROUPS", "ONLINE_FEATURES"]

#: Feature groups → online feature names (keys of :func:`neo_pinn.simulation.fused.population_features`).
ONLINE_GROUPS: dict[str, tuple[str, ...]] = {
    "spiking": ("spike_count", "mean_rate_hz", "first_spike_latency_ms", "isi_mean_ms", "isi_cv"),
    "shape": ("peak_mean_mv", "trough_mean_mv", "rest_mv"),
}
ONLINE_FEATURES = tuple(n for g in ONLINE_GROUPS.values() for n in g)

#: Absolute floor of each online feature's σ in its unit (those shared with the torch objectives as in
#: :data:`neo_pinn_ga.evaluate.FEATURE_FLOORS`; peak/trough as ``ap_peak_mv``/``trough_mv``).
ONLINE_FLOORS: dict[str, float] = {
    "spike_count": 1.0, "mean_rate_hz": 0.5, "first_spike_latency_ms": 2.0, "isi_mean_ms": 1.0, "isi_cv": 0.05,
    "peak_mean_mv": 1.0, "trough_mean_mv": 1.0, "rest_mv": 1.0,
}


def _onset(i_ext: np.ndarray) -> int:
    """Index of the first sample whose current differs from the first one (len when it never does)."""
    i = np.asarray(i_ext, dtype=float)
    tol = 1e-9 * max(1.0, float(np.max(np.abs(i))) if i.size else 1.0)
    moved = np.nonzero(np.abs(i - i[0]) > tol)[0]
    return int(moved[0]) if moved.size else int(i.size)


class FusedPopulationEvaluator(PopulationEvaluator):
    """Objectives of a population from online features, one fused-kernel launch per sweep length.

    Parameters
    ----------
    problem : EstimationProblem
    config : mapping
        The GA configuration (as :class:`~neo_pinn_ga.evaluate.PopulationEvaluator`); ``trace`` must be
        ``"rmse"`` or ``"none"``, ``features`` (if given) a subset of :data:`ONLINE_FEATURES`.
    device : torch.device
        CUDA, or CPU under ``TRITON_INTERPRET=1`` (Triton's interpreter; for tests).
    dtype : torch.dtype
        Must be float32 (the kernel's precision).
    kernel_engine : {"fused", "torch"}
        ``"fused"``: the Triton kernel. ``"torch"``: :func:`neo_pinn.simulation.fused.online_features_torch`, the
        reference the kernel is tested against (same objectives, any device; slow: it simulates with torch).

    Raises
    ------
    FusedUnavailableError
        ``kernel_engine="fused"`` without Triton or a CUDA device (and not interpreting), or not float32.
    ConfigurationError
        ``trace="phase_plane"``, or ``features`` naming a feature the kernel does not accumulate.
    """

    def __init__(self, problem: EstimationProblem, config: Mapping[str, Any], device: torch.device,
                 dtype: torch.dtype, kernel_engine: str = "fused") -> None:
        config = dict(config)
        if kernel_engine not in ("fused", "torch"):
            raise ConfigurationError(f"kernel_engine must be 'fused' or 'torch'; got {kernel_engine!r}.")
        if kernel_engine == "fused":
            if not fused_available(device):
                raise FusedUnavailableError(
                    f"ga engine='fused' runs the population in a Triton kernel on a CUDA device (this fit runs on "
                    f"{device}, or Triton is missing): fit with device='cuda' and `pip install neo-pinn[fused]`, "
                    "or use engine='torch' (or 'auto') on CPU.")
            if dtype != torch.float32:
                raise FusedUnavailableError("ga engine='fused' computes in float32: set the ga option "
                                            "dtype='float32', or use engine='torch'.")
        if config.get("trace") not in ("rmse", "none"):
            raise ConfigurationError(f"ga engine='fused' supports trace='rmse' or 'none' (the phase plane needs "
                                     f"stored traces); got trace={config.get('trace')!r}. Use engine='torch' for it.")
        wanted = tuple(config["features"]) if config.get("features") else ONLINE_FEATURES
        unknown = [n for n in wanted if n not in ONLINE_FEATURES]
        if unknown:
            raise ConfigurationError(f"ga engine='fused' accumulates only {', '.join(ONLINE_FEATURES)}; the "
                                     f"features option names {', '.join(unknown)}. Drop them or use engine='torch'.")
        self.kernel_engine = kernel_engine
        # rest_mv baseline per sweep length (see the module docstring): needed by _features, which the
        # parent's __init__ already calls for the recorded sweeps
        self._baseline_by_len: dict[int, int] = {}
        for tr in problem.traces:
            n = int(tr.t.size)
            self._baseline_by_len[n] = min(self._baseline_by_len.get(n, n), _onset(tr.i_ext))
        # the parent builds stimulus, initial-state rule, smoothing and the recorded features (through
        # the _features override below); its torch feature selection is replaced afterwards
        super().__init__(problem, dict(config, features=None, trace=config["trace"]), device, dtype)
        self.config = config
        self.feature_names = wanted
        for sw in self.sweeps:  # σ with the online floors (the parent used the torch table's)
            sw.sigma = {k: max(float(config["rel_tol"]) * abs(x), ONLINE_FLOORS[k]) if math.isfinite(x) else
                        ONLINE_FLOORS[k] for k, x in sw.features.items()}
        defined = {k for sw in self.sweeps for k, x in sw.features.items() if math.isfinite(x)}
        if config["objectives"] == "features":
            groups = {k: (k,) for k in wanted if k in defined or k == "spike_count"}
        else:
            groups = {}
            for g, names in ONLINE_GROUPS.items():
                keep = tuple(n for n in names if n in wanted)
                if keep and any(n in defined for n in keep):
                    groups[g] = keep
        self.groups = groups
        self.objective_names = tuple(groups) + (("trace",) if config["trace"] == "rmse" else ())
        if not self.objective_names:
            raise ConfigurationError("The GA has no objective: name features that the recording defines, or set "
                                     "trace='rmse'.")
        # sweeps grouped by length: one kernel launch per group (one in all for equal-length sweeps)
        by_len: dict[int, list[int]] = {}
        for sw in self.sweeps:
            by_len.setdefault(sw.n_samples, []).append(sw.index)
        self.launch_groups = [tuple(v) for v in by_len.values()]
        #: fused-kernel (or reference) launches so far: one per sweep length per evaluation
        self.n_launches = 0

    # ------------------------------------------------------------------ definitions shared by both sides
    def _baseline(self, n_samples: int) -> tuple[int, int] | None:
        b1 = self._baseline_by_len.get(int(n_samples), 0)
        return (0, b1) if b1 >= 2 else None

    def _features(self, v: torch.Tensor) -> dict[str, torch.Tensor]:
        """Online features of voltages (B, T) at the sampling interval (recording, or reconstructed model)."""
        out = voltage_features(v, self.sample_dt, baseline=self._baseline(v.shape[1]), threshold_mv=self.threshold,
                               rearm_mv=self.rearm)
        return {k: out[k] for k in ONLINE_FEATURES}

    def spike_counts(self, v: torch.Tensor) -> torch.Tensor:
        """Spikes (B,) of voltages (B, T) as the online features count them (threshold crossings)."""
        return self._features(v)["spike_count"]

    def _score(self, feats: list[dict[str, torch.Tensor]], sq_sum: torch.Tensor, n_points: int,
               diverged: torch.Tensor) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
        """Objectives from per-sweep model features (each name → (B,)) and the summed squared error (mV²)."""
        B = diverged.shape[0]
        dev = diverged.device
        group_sum = {g: torch.zeros(B, dtype=torch.float64, device=dev) for g in self.groups}
        group_n = {g: 0 for g in self.groups}
        per_sweep = []
        for sw, fq in zip(self.sweeps, feats):
            errs, vals = {}, {}
            for name in self.feature_names:
                val = fq[name].double().to(dev)
                errs[name] = self.feature_error(val, sw.features[name], sw.sigma[name])  # the torch path's rule
                vals[name] = val
            for g, names in self.groups.items():
                for n in names:
                    group_sum[g] += errs[n]
                    group_n[g] += 1
            per_sweep.append({"values": {k: x.cpu().numpy() for k, x in vals.items()},
                              "errors": {k: x.cpu().numpy() for k, x in errs.items()}})
        cols = [group_sum[g] / max(1, group_n[g]) for g in self.groups]
        if self.config["trace"] == "rmse":
            cols.append((sq_sum.double().to(dev) / max(1, n_points)).sqrt() / float(self.config["trace_sigma_mv"]))
        obj = torch.stack(cols, 1)
        obj = torch.where(diverged[:, None] | ~torch.isfinite(obj), torch.full_like(obj, DIVERGED), obj)
        return obj.cpu().numpy(), per_sweep

    # ------------------------------------------------------------------ evaluation
    def evaluate_population(self, free: np.ndarray) -> np.ndarray:
        """Objectives (B, n_objectives) of free-parameter vectors ``free`` (B, F) in canonical units.

        All individuals × sweeps of one length run in ONE launch of the fused kernel (one row per
        individual and sweep, the sweep's stimulus and recording selected by ``stim_index``); no trace is
        stored. Objectives as in the module docstring.
        """
        free = np.atleast_2d(np.asarray(free, dtype=float))
        B, Q = free.shape[0], len(self.sweeps)
        theta = self.theta(free)
        x0 = self.initial_states(theta)                                   # (B·Q, S), row b·Q + q
        rows_x0 = x0.reshape(B, Q, -1)
        spp = self.steps_per_sample
        feats: list[dict[str, torch.Tensor]] = [{} for _ in range(Q)]
        sq_sum = torch.zeros(B, dtype=torch.float64, device=self.device)
        finite = torch.ones(B, dtype=torch.bool, device=self.device)
        for qs in self.launch_groups:
            G = len(qs)
            n_samples = self.sweeps[qs[0]].n_samples
            n_steps = (n_samples - 1) * spp
            idx = torch.as_tensor(qs, device=self.device)
            base = self._baseline(n_samples)
            # the kernel's baseline spans the same time as the recording's samples [0, b1)
            base_steps = None if base is None else (0, (base[1] - 1) * spp + 1)
            out = population_features(
                self.model, theta.repeat_interleave(G, 0), i_table=self.stimulus[idx, :n_steps + 1],
                stim_index=torch.arange(G, device=self.device).repeat(B), dt=self.dt, n_steps=n_steps,
                y0=rows_x0[:, idx].reshape(B * G, -1), baseline=base_steps, v_ref=torch.stack(
                    [self.sweeps[q].v_raw for q in qs]), record_every=spp, method=self.config["method"],
                engine=self.kernel_engine, dtype=self.dtype, device=self.device,
                **({"compile": self.compile} if self.kernel_engine == "torch" else {}))
            self.n_launches += 1
            for j, q in enumerate(qs):
                feats[q] = {k: out[k].reshape(B, G)[:, j] for k in ONLINE_FEATURES}
            sq_sum += out["sse"].reshape(B, G).sum(1)
            finite &= out["finite"].reshape(B, G).all(1)
        n_points = sum(sw.n_samples for sw in self.sweeps)
        obj, _ = self._score(feats, sq_sum, n_points, ~finite)
        self.n_simulations += 1
        self.n_evaluations += B
        return obj

    def objectives_from_voltage(self, v: torch.Tensor) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
        """Objectives (B, n_obj) and per-sweep values/errors from voltages (B, Q, T_max) in mV at the sample
        times, with the online definitions (used for the chosen solution's report).

        Returns
        -------
        objectives : numpy.ndarray
            (B, n_objectives), float64, finite.
        per_sweep : list of dict
            Per sweep: ``values`` (name → (B,) model feature), ``errors`` (name → (B,) normalised error).
        """
        diverged = ~torch.isfinite(v).flatten(1).all(1)
        v = torch.where(torch.isfinite(v), v, torch.zeros((), dtype=v.dtype, device=v.device))
        feats, sq_sum, n_points = [], torch.zeros(v.shape[0], dtype=torch.float64, device=v.device), 0
        for sw in self.sweeps:
            vq = v[:, sw.index, :sw.n_samples]
            feats.append(self._features(vq))
            sq_sum += ((vq.double() - sw.v_raw.double()[None]) ** 2).sum(1)
            n_points += sw.n_samples
        return self._score(feats, sq_sum, n_points, diverged)

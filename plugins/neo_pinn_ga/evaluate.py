"""Scoring a whole GA population: one batched simulation, batched features, normalised errors.

:class:`PopulationEvaluator` holds what does not change during the search (the stimulus of every sweep on
the integration grid, the recording's smoothed voltage, features and tolerances) and turns free-parameter
vectors (B, F) into objectives (B, n_objectives) with ONE simulator call over all B × Q rows (individual ×
sweep), followed by the features of every row.

Objectives
----------
A feature f of sweep q scores ``|f_model − f_rec| / σ_f`` with ``σ_f = max(rel_tol·|f_rec|, floor_f)``
(:data:`FEATURE_FLOORS`); ``penalty`` when only one of model and recording defines it, 0 when neither
does. With ``saturate`` an error r of a feature defined on both sides is reported as
``penalty·r/(penalty + r)``, always below ``penalty``: a model that fires at the wrong rate scores better
than a silent one, so the search gets the firing pattern right first. A group's objective (:data:`GROUPS`)
is the mean of its errors over its features and all sweeps; a group undefined in every recorded sweep is
dropped. Few objectives keep NSGA-II's selection pressure; ``objectives="features"`` gives one per feature.

The trace term is the voltage RMSE over all sweeps in units of ``trace_sigma_mv`` (``"rmse"``, optionally
after a ``trace_smooth_ms`` box filter), or the L1 distance (0…2, in units of 0.05) between the V–dV/dt
occupancy densities of model and recording on a 32 × 32 grid (``"phase_plane"``: blind to spike timing,
but dominated by the noise in dV/dt, so meant for clean or filtered data). Voltages are smoothed with
``smooth_ms`` before features and the phase plane, so noise neither makes spikes nor biases peaks; where
that filter would flatten, add or move a recorded spike (narrow, low spikes), a narrower one is used for
recording and model alike, with a warning (:meth:`PopulationEvaluator.check_smoothing`). A diverged
simulation scores :data:`DIVERGED` on every objective.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from neo_pinn import toolkit
from neo_pinn.errors import ConfigurationError
from neo_pinn.features import FEATURE_NAMES, batch_features
from neo_pinn.problem import EstimationProblem
from neo_pinn.toolkit import SmoothingCheck, box_smooth, quasi_steady_states, simulate, spike_preserving_width

__all__ = ["PopulationEvaluator", "GROUPS", "FEATURE_FLOORS", "DIVERGED", "threshold_features"]

#: Objective value of an individual whose simulation diverged.
DIVERGED = 1.0e3

#: Feature groups → feature names. ``trough_mv``, ``time_above_ms`` and ``v_mean_mv`` are computed here
#: (see :func:`threshold_features`); the others by :func:`neo_pinn.features.batch_features`.
GROUPS: dict[str, tuple[str, ...]] = {
    "spiking": ("spike_count", "mean_rate_hz", "first_spike_latency_ms", "isi_mean_ms", "isi_cv"),
    "shape": ("ap_peak_mv", "trough_mv", "time_above_ms", "rest_mv", "v_mean_mv"),
    "bursting": ("burst_period_ms", "spikes_per_burst", "duty_cycle"),
}

#: Absolute floor of each feature's tolerance σ, in the feature's unit.
FEATURE_FLOORS: dict[str, float] = {
    "spike_count": 1.0, "mean_rate_hz": 0.5, "first_spike_latency_ms": 2.0, "isi_mean_ms": 1.0, "isi_cv": 0.05,
    "adaptation_index": 0.05, "ap_peak_mv": 1.0, "ap_amplitude_mv": 1.0, "ap_width_ms": 0.1, "ahp_depth_mv": 1.0,
    "rest_mv": 1.0, "v_mean_mv": 1.0, "burst_period_ms": 20.0, "spikes_per_burst": 0.5, "duty_cycle": 0.05,
    "trough_mv": 1.0, "time_above_ms": 0.1,
}

_PP_BINS = 32
_PP_UNIT = 0.05
_LOCAL = ("trough_mv", "time_above_ms", "v_mean_mv")


def __getattr__(name: str) -> Any:
    if name == "choose_dt":  # deprecated alias: the step choice is the core's
        warnings.warn("neo_pinn_ga.evaluate.choose_dt is deprecated and will be removed; use "
                      "neo_pinn.simulation.choose_dt instead.", DeprecationWarning, stacklevel=2)
        return toolkit.choose_dt
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def threshold_features(v: torch.Tensor, dt_ms: float, threshold_mv: float) -> dict[str, torch.Tensor]:
    """Shape features that need no derivative and no local extremum, so noise hardly biases them.

    They replace the eFEL-style ``ap_width_ms`` (from the dV/dt-defined AP begin) and ``ahp_depth_mv``
    (first local minimum after the peak), which follow every noise wiggle of a recording while the model's
    traces are clean, so even the true parameters score many σ on them.

    Parameters
    ----------
    v : torch.Tensor
        Smoothed voltage (B, T) in mV.
    dt_ms : float
        Sampling interval in ms.
    threshold_mv : float
        Spike threshold (mV): a spike is an upward crossing.

    Returns
    -------
    dict
        ``trough_mv``: mean over the intervals between consecutive spikes of the lowest voltage (NaN below
        2 spikes); ``time_above_ms``: time above threshold per spike (NaN without spikes); ``v_mean_mv``:
        mean voltage.
    """
    B, T = v.shape
    up = (v[:, :-1] < threshold_mv) & (v[:, 1:] >= threshold_mv)
    count = up.sum(1)
    seg = torch.cat([torch.zeros(B, 1, dtype=torch.long, device=v.device), up.long().cumsum(1)], 1)
    K = int(count.max()) if B else 0
    seg_min = torch.full((B, K + 1), math.inf, dtype=v.dtype, device=v.device).scatter_reduce(
        1, seg, v, "amin", include_self=True)
    idx = torch.arange(K + 1, device=v.device)[None]
    between = (idx >= 1) & (idx < count[:, None])
    n_between = between.sum(1)
    zero = torch.zeros((), dtype=v.dtype, device=v.device)
    nan = torch.full((B,), math.nan, dtype=v.dtype, device=v.device)
    trough = torch.where(n_between > 0, torch.where(between, seg_min, zero).sum(1) / n_between.clamp_min(1), nan)
    above = (v >= threshold_mv).sum(1).to(v.dtype) * dt_ms
    width = torch.where(count > 0, above / count.clamp_min(1).to(v.dtype), nan)
    return {"trough_mv": trough, "time_above_ms": width, "v_mean_mv": v.mean(1)}


@dataclass
class SweepData:
    """One sweep as the evaluator sees it (arrays on the search device)."""

    index: int            # position in problem.traces
    n_samples: int
    v_smooth: torch.Tensor  # (T,) smoothed recorded voltage
    v_raw: torch.Tensor     # (T,) recorded voltage
    v_trace: torch.Tensor   # (T,) recorded voltage smoothed for the trace term
    features: dict[str, float]
    sigma: dict[str, float]
    pp_density: torch.Tensor | None  # (bins²,) recorded phase-plane density
    pp_range: tuple[float, float, float, float] | None


class PopulationEvaluator:
    """Objectives of a population of free-parameter vectors, one batched simulation per call.

    Parameters
    ----------
    problem : EstimationProblem
    config : mapping
        The GA options by name (a :class:`~neo_pinn_ga.config.GAConfig` or a flat mapping of its options).
    device : torch.device
    dtype : torch.dtype
        Precision of the population's simulation.
    """

    def __init__(self, problem: EstimationProblem, config: Mapping[str, Any], device: torch.device,
                 dtype: torch.dtype) -> None:
        self.problem, self.config, self.device, self.dtype = problem, dict(config), device, dtype
        model = problem.model
        self.model = model
        traces = problem.traces
        sample_dt = traces[0].dt
        for tr in traces:
            if abs(tr.dt - sample_dt) > 1e-6 * sample_dt:
                raise ConfigurationError(f"Sweeps are sampled at different intervals ({sample_dt:.6g} and "
                                         f"{tr.dt:.6g} ms); resample them to one rate before fitting them jointly.")
            if np.ptp(np.diff(tr.t)) > 1e-3 * sample_dt:
                raise ConfigurationError(f"Sweep {tr.sweep} is not uniformly sampled; resample it first.")
        self.sample_dt = sample_dt
        self.dt, self.steps_per_sample = toolkit.choose_dt(sample_dt, config["dt"], config["max_dt"])
        self.n_max = max(tr.t.size for tr in traces)
        n_steps = (self.n_max - 1) * self.steps_per_sample
        self.n_steps = n_steps
        # stimulus of every sweep at the step times, held at its last value past the sweep's end
        stim = []
        for tr in traces:
            tk = tr.t[0] + self.dt * np.arange(n_steps + 1)
            stim.append(tr.held_current(tk))
        self.stimulus = torch.as_tensor(np.array(stim), dtype=dtype, device=device)            # (Q, N+1)
        kw = dict(dtype=dtype, device=device)
        self.free_index = [model.param_index(n) for n in problem.free_names]
        self.theta_fixed = torch.as_tensor(problem.theta_full({f.name: f.bounds[0] for f in problem.free}), **kw)
        self.trace_width = max(1, int(round(float(config["trace_smooth_ms"]) / sample_dt)))
        self.threshold, self.rearm = problem.spike_levels
        #: the recorded spikes before and after the ``smooth_ms`` box filter (:meth:`check_smoothing`)
        self.smoothing: SmoothingCheck = spike_preserving_width(
            [tr.v for tr in traces], [tr.t for tr in traces],
            max(1, int(round(float(config["smooth_ms"]) / sample_dt))), self.threshold, self.rearm, dtype=dtype)
        #: box-filter length (samples) applied to recorded and simulated voltages before features
        self.smooth_width = self.smoothing.width
        wanted = tuple(config["features"]) if config["features"] else tuple(n for g in GROUPS.values() for n in g)
        unknown = [n for n in wanted if n not in FEATURE_NAMES and n not in _LOCAL]
        if unknown:
            raise ConfigurationError(f"ga option features names unknown feature(s) {', '.join(unknown)}; choose "
                                     f"from {', '.join(FEATURE_NAMES + _LOCAL)}.")
        self.feature_names = wanted
        # initial-state rule
        self.x0_mode = self._x0_mode()
        self.sweeps: list[SweepData] = self._recorded_sweeps()
        self.check_smoothing()
        # objectives: groups with at least one feature defined in some sweep of the recording
        defined = {k for sw in self.sweeps for k, x in sw.features.items() if math.isfinite(x)}
        if config["objectives"] == "features":
            groups = {k: (k,) for k in self.feature_names if k in defined or k in ("spike_count",)}
        else:
            groups = {}
            for g, names in GROUPS.items():
                keep = tuple(n for n in names if n in self.feature_names)
                if keep and any(n in defined for n in keep):
                    groups[g] = keep
            extra = tuple(n for n in self.feature_names if not any(n in v for v in GROUPS.values()))
            if extra:
                groups["other"] = extra
        self.groups = groups
        # compute only what an objective uses (e.g. no burst features for a tonic recording)
        self.feature_names = tuple(n for names in groups.values() for n in names)
        self.objective_names = tuple(groups) + (("trace",) if config["trace"] != "none" else ())
        if not self.objective_names:
            raise ConfigurationError("The GA has no objective: name features that the recording defines, or set "
                                     "trace to 'rmse' or 'phase_plane'.")
        self.n_simulations = 0
        self.n_evaluations = 0
        #: rows simulated per call (the population size); smaller batches are padded to it
        self.batch_size: int | None = None
        #: ``compile`` passed to the simulator for population calls
        self.compile: bool | str = config["compile"]

    # ------------------------------------------------------------------ the recording
    def _recorded_sweeps(self) -> list[SweepData]:
        """The recorded sweeps smoothed with :attr:`smooth_width`, their features and tolerances."""
        config, kw = self.config, dict(dtype=self.dtype, device=self.device)
        sweeps = []
        for q, tr in enumerate(self.problem.traces):
            v = torch.as_tensor(tr.v, **kw)
            vs = box_smooth(v[None], self.smooth_width)[0]
            feats = {k: float(x[0]) for k, x in self._features(vs[None]).items()}
            sigma = {k: max(float(config["rel_tol"]) * abs(x), FEATURE_FLOORS.get(k, 1.0)) if math.isfinite(x) else
                     FEATURE_FLOORS.get(k, 1.0) for k, x in feats.items()}
            pp, rng_ = (None, None)
            if config["trace"] == "phase_plane":
                rng_ = self._pp_range(vs)
                pp = self._pp_density(vs[None], rng_)[0]
            vt = box_smooth(v[None], self.trace_width)[0]
            sweeps.append(SweepData(q, tr.t.size, vs, v, vt, feats, sigma, pp, rng_))
        return sweeps

    def spike_counts(self, v: torch.Tensor) -> torch.Tensor:
        """Spikes (B,) of voltages (B, T) at the sampling interval, counted as the spiking features count them."""
        return batch_features(v, self.sample_dt, threshold_mv=self.threshold, rearm_mv=self.rearm,
                              names=["spike_count"])["spike_count"]

    def check_smoothing(self) -> None:
        """Make sure the search sees every recorded spike, and say so when ``smooth_ms`` had to shrink.

        :attr:`smoothing` (:func:`~neo_pinn.toolkit.spike_preserving_width`, on the raw sweeps with the
        model's spike threshold and re-arm level) gave the widest box filter up to ``smooth_ms`` that keeps
        every recorded spike (count and time; only spikes the raw trace re-armed for within its noise may
        merge). Here the smoothed recording's spikes are counted as the search counts them
        (:meth:`spike_counts`, in the search's precision and on its device); should that differ from the
        check's count, the recording is used unsmoothed. Sets :attr:`search_spike_counts` and
        :attr:`merged_spikes`; warns when the width was reduced, or when the search's count of a raw sweep
        differs from :func:`~neo_pinn.features.spike_times`'.
        """
        check = self.smoothing
        raw = tuple(int(self.spike_counts(sw.v_raw[None])[0]) for sw in self.sweeps)
        counts = tuple(int(self.spike_counts(sw.v_smooth[None])[0]) for sw in self.sweeps)
        #: raw spikes per sweep merged by the box filter because the raw trace re-armed only within noise
        self.merged_spikes = check.merged
        if counts != check.counts and self.smooth_width > 1:
            self.smooth_width = 1
            self.sweeps = self._recorded_sweeps()
            counts, self.merged_spikes = raw, (0,) * len(raw)
        #: spikes per recorded sweep as the search sees them (after the box filter of :attr:`smooth_width`)
        self.search_spike_counts = counts
        if raw != check.raw_counts:
            warnings.warn(f"ga: the search counts {list(raw)} spikes per raw recorded sweep where spike_times "
                          f"counts {list(check.raw_counts)} (threshold {self.threshold:g} mV, re-arm "
                          f"{self.rearm:g} mV).", RuntimeWarning, stacklevel=3)
        if self.smooth_width < check.requested_width:
            warnings.warn(f"ga: smooth_ms={float(self.config['smooth_ms']):g} ms reduced to "
                          f"{self.smooth_width * self.sample_dt:.3g} ms ({self.smooth_width} samples) for the "
                          f"recorded and simulated voltage: {check.describe()}. Raw spikes per sweep "
                          f"{list(check.raw_counts)}, seen by the search {list(counts)}.", RuntimeWarning, stacklevel=3)

    def smoothing_diagnostics(self) -> dict[str, Any]:
        """What the ``smooth_ms`` check found and did (JSON-ready), for the result's ``diagnostics``."""
        check = self.smoothing
        return {"requested_ms": float(self.config["smooth_ms"]), "used_ms": self.smooth_width * self.sample_dt,
                "requested_samples": check.requested_width, "used_samples": self.smooth_width,
                "adjusted": self.smooth_width < check.requested_width, "threshold_mv": self.threshold,
                "rearm_mv": self.rearm, "raw_spike_counts": list(check.raw_counts),
                "requested_spike_counts": list(check.requested_counts),
                "search_spike_counts": list(self.search_spike_counts),
                "merged_spikes": list(self.merged_spikes), "noise_mv": list(check.noise_mv)}

    # ------------------------------------------------------------------ building blocks
    def _x0_mode(self) -> str:
        init = self.problem.initial_state
        if not isinstance(init, str):
            x0 = np.asarray(init, dtype=float)
            if x0.shape != (self.model.n_states,):
                raise ConfigurationError(f"initial_state must have {self.model.n_states} values "
                                         f"({', '.join(self.model.state_names)}).")
            return "vector"
        return init  # "fit" (quasi-steady at the recorded start) or "preset"

    def theta(self, free: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Full parameter vectors (B, P) from free values (B, F) in canonical units."""
        free_t = torch.as_tensor(free, dtype=self.dtype, device=self.device).reshape(-1, len(self.free_index))
        th = self.theta_fixed.expand(free_t.shape[0], -1).clone()
        th[:, self.free_index] = free_t
        return th

    def initial_states(self, theta: torch.Tensor) -> torch.Tensor:
        """Initial states (B·Q, S), rows ordered individual-major (row b·Q + q is individual b, sweep q)."""
        B, Q, S = theta.shape[0], len(self.sweeps), self.model.n_states
        kw = dict(dtype=self.dtype, device=self.device)
        preset = self.model.initial_state(self.problem.preset) if (self.problem.preset or self.model.default_preset) \
            else np.array([s.scale for s in self.model.states])
        if self.x0_mode == "vector":
            x0 = torch.as_tensor(np.asarray(self.problem.initial_state, dtype=float), **kw).expand(B * Q, S)
        elif self.x0_mode == "preset":
            x0 = torch.as_tensor(np.asarray(preset, dtype=float), **kw).expand(B * Q, S)
        else:
            # V from the start of each (smoothed) sweep, hidden states at their steady value there
            v0 = torch.stack([sw.v_smooth[0] for sw in self.sweeps]).repeat(B)
            i0 = self.stimulus[:, 0].repeat(B)
            x0 = quasi_steady_states(self.model, theta.repeat_interleave(Q, 0), v0, i0, preset)
        settle = float(self.config["settle_ms"])
        if settle > 0:
            n = max(1, int(round(settle / self.dt)))
            i0 = self.stimulus[:, 0].repeat(B)[:, None].expand(-1, n + 1)
            sim = simulate(self.model, theta.repeat_interleave(Q, 0), duration=n * self.dt, dt=self.dt, i_ext=i0,
                           y0=x0, method=self.config["method"], dtype=self.dtype, device=self.device,
                           record_every=n, compile=False, check_finite=False)
            x0 = sim.y[:, -1]
            if self.x0_mode == "fit":
                x0 = x0.clone()
                x0[:, 0] = torch.stack([sw.v_smooth[0] for sw in self.sweeps]).repeat(B)
        return x0.contiguous()

    def simulate_population(self, theta: torch.Tensor, states: Sequence[str] | None = ("V",),
                            dtype: torch.dtype | None = None, compile_: bool | str | None = None) -> torch.Tensor:
        """Simulate every individual on every sweep in ONE simulator call.

        Parameters
        ----------
        theta : torch.Tensor
            Full parameter vectors (B, P).
        states : sequence of str or None
            States to record (None: all).
        dtype : torch.dtype, optional
            Precision (default the evaluator's).
        compile_ : bool or "auto", optional
            Passed to the simulator (default :attr:`compile`).

        Returns
        -------
        torch.Tensor
            (B, Q, T_max, S_rec) at the sampling times of the sweeps (padded past a shorter sweep's end).
        """
        B, Q = theta.shape[0], len(self.sweeps)
        dtype = dtype or self.dtype
        compile_ = self.compile if compile_ is None else compile_
        if states is not None:
            states = [self.model.state_names[0] if s == "V" else s for s in states]
        theta = theta.to(dtype)
        x0 = self.initial_states(theta.to(self.dtype)).to(dtype)
        stim = self.stimulus.to(dtype).repeat(B, 1)                                         # (B·Q, N+1)
        sim = simulate(self.model, theta.repeat_interleave(Q, 0), duration=self.n_steps * self.dt, dt=self.dt,
                       i_ext=stim, y0=x0, method=self.config["method"], dtype=dtype, device=self.device,
                       record_every=self.steps_per_sample, states=states, compile=compile_,
                       check_finite=False)
        self.n_simulations += 1
        y = sim.y
        return y.reshape(B, Q, y.shape[1], y.shape[2])

    def _features(self, v: torch.Tensor) -> dict[str, torch.Tensor]:
        names = [n for n in self.feature_names if n not in _LOCAL]
        out = batch_features(v, self.sample_dt, threshold_mv=self.threshold, rearm_mv=self.rearm, names=names) \
            if names else {}
        out = {k: out[k].to(v.dtype) for k in names}
        local = [n for n in self.feature_names if n in _LOCAL]
        if local:
            extra = threshold_features(v, self.sample_dt, self.threshold)
            out.update({k: extra[k] for k in local})
        return out

    def _pp_range(self, v: torch.Tensor) -> tuple[float, float, float, float]:
        dv = (v[2:] - v[:-2]) / (2 * self.sample_dt)
        span_v = float(v.max() - v.min())
        lo_d, hi_d = float(torch.quantile(dv.float(), 0.001)), float(torch.quantile(dv.float(), 0.999))
        span_d = hi_d - lo_d
        return (float(v.min()) - 0.1 * span_v, float(v.max()) + 0.1 * span_v, lo_d - 0.1 * span_d, hi_d + 0.1 * span_d)

    def _pp_density(self, v: torch.Tensor, rng: tuple[float, float, float, float]) -> torch.Tensor:
        """Occupancy density (B, bins²) of (V, dV/dt); points outside the range land in the edge bins."""
        lo_v, hi_v, lo_d, hi_d = rng
        dv = (v[:, 2:] - v[:, :-2]) / (2 * self.sample_dt)
        vv = v[:, 1:-1]
        iv = ((vv - lo_v) / (hi_v - lo_v) * _PP_BINS).floor().clamp(0, _PP_BINS - 1).long()
        idv = ((dv - lo_d) / (hi_d - lo_d) * _PP_BINS).floor().clamp(0, _PP_BINS - 1).long()
        idx = torch.where(torch.isfinite(dv) & torch.isfinite(vv), iv * _PP_BINS + idv, torch.zeros_like(iv))
        h = torch.zeros(v.shape[0], _PP_BINS * _PP_BINS, dtype=v.dtype, device=v.device)
        h.scatter_add_(1, idx, torch.ones_like(vv))
        return h / h.sum(1, keepdim=True).clamp_min(1)

    # ------------------------------------------------------------------ evaluation
    def evaluate_population(self, free: np.ndarray) -> np.ndarray:
        """Objectives (B, n_objectives) of free-parameter vectors ``free`` (B, F) in canonical units.

        One batched simulation of all individuals × sweeps, then features and errors (module docstring).
        """
        # engine "torch" (and "auto"): simulate + batch features. engine "fused" overrides this method
        # (neo_pinn_ga.fused_engine.FusedPopulationEvaluator: one kernel launch, online-feature objectives).
        free = np.atleast_2d(np.asarray(free, dtype=float))
        n = free.shape[0]
        # pad to a fixed batch (duplicate elimination can shrink an offspring batch): a compiled simulator
        # keeps one kernel for one shape instead of recompiling for every new batch size
        width = max(n, self.batch_size or 0)
        if width > n:
            free = np.concatenate([free, np.repeat(free[:1], width - n, 0)], 0)
        theta = self.theta(free)
        y = self.simulate_population(theta)[..., 0]                                     # (B, Q, T)
        obj, _ = self.objectives_from_voltage(y)
        self.n_evaluations += n
        return obj[:n]

    def feature_error(self, val: torch.Tensor, rec: float, sigma: float) -> torch.Tensor:
        """Normalised error (B,) of model feature values ``val`` against the recorded ``rec`` (module docstring).

        The one definition of the error rule (penalty, saturation, clipping), shared with the fused engine
        (:mod:`neo_pinn_ga.fused_engine`), whose features differ but whose errors must not.

        Parameters
        ----------
        val : torch.Tensor
            Model feature (B,), float64, NaN where undefined; in the feature's unit.
        rec : float
            Recorded feature (NaN where undefined), same unit.
        sigma : float
            Tolerance σ_f, same unit.
        """
        pen = float(self.config["penalty"])
        if math.isfinite(rec):
            e = torch.where(torch.isfinite(val), (val - rec).abs() / sigma, torch.full_like(val, pen))
        else:
            e = torch.where(torch.isfinite(val), torch.full_like(val, pen), torch.zeros_like(val))
        if self.config.get("saturate", True):
            # defined-in-both errors stay below the defined/undefined penalty (module docstring)
            e = torch.where(torch.isfinite(val) == math.isfinite(rec), pen * e / (pen + e), e)
        return e.clamp(max=pen * 10)

    def objectives_from_voltage(self, v: torch.Tensor) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
        """Objectives (B, n_obj) and per-sweep feature values/errors from voltages (B, Q, T_max) in mV.

        Returns
        -------
        objectives : numpy.ndarray
            (B, n_objectives), float64, finite.
        per_sweep : list of dict
            Per sweep: ``values`` (name → (B,) model feature), ``errors`` (name → (B,) normalised error).
        """
        B, Q = v.shape[0], v.shape[1]
        diverged = ~torch.isfinite(v).flatten(1).all(1)                                    # (B,)
        v = torch.where(torch.isfinite(v), v, torch.zeros((), dtype=v.dtype, device=v.device))
        per_sweep = []
        group_sum = {g: torch.zeros(B, dtype=torch.float64, device=v.device) for g in self.groups}
        group_n = {g: 0 for g in self.groups}
        sq_sum = torch.zeros(B, dtype=torch.float64, device=v.device)
        n_samples = 0
        pp_sum = torch.zeros(B, dtype=torch.float64, device=v.device)
        for sw in self.sweeps:
            vq = v[:, sw.index, :sw.n_samples]
            vs = box_smooth(vq, self.smooth_width)
            feats = self._features(vs)
            errs = {}
            for name, val in feats.items():
                errs[name] = self.feature_error(val.double(), sw.features[name], sw.sigma[name])
            for g, names in self.groups.items():
                for n in names:
                    group_sum[g] += errs[n]
                    group_n[g] += 1
            if self.config["trace"] == "rmse":
                if self.trace_width > 1:
                    diff = box_smooth(vq, self.trace_width) - sw.v_trace[None]
                else:
                    diff = vq - sw.v_raw[None]
                sq_sum += (diff**2).double().sum(1)
                n_samples += sw.n_samples
            elif self.config["trace"] == "phase_plane":
                pp_sum += (self._pp_density(vs, sw.pp_range) - sw.pp_density[None]).abs().sum(1).double() / _PP_UNIT
            per_sweep.append({"values": {k: x.double().cpu().numpy() for k, x in feats.items()},
                              "errors": {k: x.cpu().numpy() for k, x in errs.items()}})
        cols = [group_sum[g] / max(1, group_n[g]) for g in self.groups]
        if self.config["trace"] == "rmse":
            cols.append((sq_sum / max(1, n_samples)).sqrt() / float(self.config["trace_sigma_mv"]))
        elif self.config["trace"] == "phase_plane":
            cols.append(pp_sum / Q)
        obj = torch.stack(cols, 1)
        obj = torch.where(diverged[:, None] | ~torch.isfinite(obj), torch.full_like(obj, DIVERGED), obj)
        return obj.cpu().numpy(), per_sweep

    # ------------------------------------------------------------------ the chosen solution
    def reconstruct(self, theta_free: np.ndarray) -> tuple[list[np.ndarray], list[dict], np.ndarray]:
        """One solution re-simulated in float64: its states, per-sweep features and objectives.

        Parameters
        ----------
        theta_free : numpy.ndarray
            Free-parameter values (F,) in canonical units.

        Returns
        -------
        states : list of numpy.ndarray
            Per sweep (T, S) on the sweep's samples (non-finite values set to 0).
        per_sweep : list of dict
            Per sweep: ``sweep`` and, per feature, ``recorded``, ``fitted``, ``sigma`` and ``error`` (None
            where undefined).
        objectives : numpy.ndarray
            (n_objectives,).
        """
        theta = self.theta(theta_free[None]).to(torch.float64)
        y = self.simulate_population(theta, states=None, dtype=torch.float64, compile_="auto")[0]  # (Q, T, S)
        y_np = y.cpu().numpy()
        traces = self.problem.traces
        states = [np.nan_to_num(y_np[q, :tr.t.size], nan=0.0, posinf=0.0, neginf=0.0) for q, tr in enumerate(traces)]
        obj, per = self.objectives_from_voltage(y[None, ..., 0].to(self.dtype))
        per_sweep = []
        for q, (sw, d) in enumerate(zip(self.sweeps, per)):
            per_sweep.append({"sweep": traces[q].sweep,
                              "features": {k: {"recorded": _finite_or_none(sw.features[k]),
                                               "fitted": _finite_or_none(d["values"][k][0]),
                                               "sigma": _finite_or_none(sw.sigma[k]),
                                               "error": _finite_or_none(d["errors"][k][0])}
                                           for k in d["values"]}})
        return states, per_sweep, obj[0]


def _finite_or_none(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None

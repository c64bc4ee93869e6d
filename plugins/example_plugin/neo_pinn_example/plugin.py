"""A passive-membrane model and a random-search backend, registered through neo_pinn's hooks.

This is the template of a third-party plugin: a model (:class:`PassiveMembrane`), a backend with typed
options (:class:`RandomSearch`, :class:`RandomSearchConfig`) built only from the public toolkit, and the two
hook implementations that register them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from neo_pinn.errors import ConfigurationError, EstimationError
from neo_pinn.hookspecs import hookimpl
from neo_pinn.models.base import NeuronModel, ParameterSpec, Preset, StateSpec
from neo_pinn.toolkit import (POSITIVE, POSITIVE_INT, BackendConfig, EstimationResult, Estimator, choose_dt,
                              noise_from_residuals, option, optional, simulate, voltage_residuals)

__all__ = ["PassiveMembrane", "RandomSearch", "RandomSearchConfig"]


class PassiveMembrane(NeuronModel):
    """Passive RC membrane: ``C dV/dt = I − gL (V − EL)`` (pF, nS, mV, pA)."""

    name = "passive_membrane"
    description = "Passive RC membrane (example plugin)"
    states = (StateSpec("V", "mV", 10.0, "membrane voltage"),)
    parameters = (
        ParameterSpec("C", "pF", 100.0, (1.0, 1000.0), True, "capacitance"),
        ParameterSpec("gL", "nS", 5.0, (0.1, 100.0), True, "leak conductance"),
        ParameterSpec("EL", "mV", -70.0, (-100.0, 0.0), False, "leak reversal"),
    )
    presets = {"default": Preset("default", {}, 50.0, (-70.0,), "rest", "50 pA step on a 20 ms membrane")}
    default_preset = "default"

    def derivatives(self, t, state, p, i_ext):
        return ((i_ext - p["gL"] * (state[0] - p["EL"])) / p["C"],)


@dataclass(frozen=True)
class RandomSearchConfig(BackendConfig):
    """Options of :class:`RandomSearch`."""

    n_samples: int = option(256, POSITIVE_INT, "random parameter sets, simulated as one batch")
    dt: float | None = option(None, optional(POSITIVE),
                              "integration step, ms, dividing the sampling interval (None: the sampling interval)")


def sweep_initial_state(problem, trace) -> np.ndarray:
    """Initial state (S,) of a sweep: the problem's vector, the preset's, or (``"fit"``) the preset's with
    the voltage replaced by the first recorded sample. This backend does not estimate hidden initial states."""
    model = problem.model
    if not isinstance(problem.initial_state, str):
        x0 = np.asarray(problem.initial_state, dtype=float)
        if x0.shape != (model.n_states,):
            raise ConfigurationError(f"initial_state must have {model.n_states} values "
                                     f"({', '.join(model.state_names)}).")
        return x0
    if problem.preset or model.default_preset:
        x0 = model.initial_state(problem.preset)
    else:
        x0 = np.array([s.scale for s in model.states], dtype=float)
    if problem.initial_state == "fit":
        x0 = x0.copy()
        x0[0] = trace.v[0]
    return x0


class RandomSearch(Estimator):
    """Simulate ``n_samples`` random parameter sets in one batch and keep the best (example backend)."""

    name = "random_search"
    description = "batched random search (example plugin)"
    config_class = RandomSearchConfig
    config: RandomSearchConfig

    def _fit(self, problem, ctx):
        starts = problem.sample_starts(self.config.n_samples, ctx.rng)           # (B, F)
        theta = torch.as_tensor(np.stack([problem.theta_full(s) for s in starts]), dtype=ctx.dtype)
        costs = np.zeros(len(starts))
        sims = []
        for tr in problem.traces:
            y = self._simulate_sweep(problem, tr, theta, ctx)                  # (B, T, S) on the trace's samples
            costs += np.mean((y[:, :, 0] - tr.v[None, :]) ** 2, axis=1)
            sims.append(y)
        costs = np.where(np.isfinite(costs), costs, np.inf)
        best = int(np.argmin(costs))
        if not np.isfinite(costs[best]):
            raise EstimationError("Every random_search sample diverged (NaN/inf); use a smaller dt or narrower bounds.")
        states = [y[best] for y in sims]
        return EstimationResult.from_fit(
            problem, self.name, dict(zip(problem.free_names, starts[best])), states,
            noise=noise_from_residuals(voltage_residuals(problem.traces, states), problem.noise),
            metrics={"cost": float(costs[best])},
            samples={n: starts[:, j].tolist() for j, n in enumerate(problem.free_names)})

    def _simulate_sweep(self, problem, tr, theta, ctx) -> np.ndarray:
        """States (B, T, S) of every parameter set at the sweep's samples.

        The step divides the sampling interval (``k`` steps per sample); the simulator gets the stimulus on
        its own step grid and records every k-th step, which lands on the recording's samples.
        """
        dt, k = choose_dt(tr.dt, self.config.dt, tr.dt)
        n_steps = (tr.t.size - 1) * k
        t_steps = float(tr.t[0]) + dt * np.arange(n_steps + 1)
        i_steps = tr.held_current(t_steps)
        sim = simulate(problem.model, theta, duration=n_steps * dt, dt=dt, i_ext=i_steps,
                       y0=sweep_initial_state(problem, tr), t0=float(tr.t[0]), record_every=k, device=ctx.device,
                       dtype=ctx.dtype, check_finite=False)
        return sim.y.detach().cpu().double().numpy()


@hookimpl
def neo_pinn_register_models(registry):
    registry.register(PassiveMembrane())


@hookimpl
def neo_pinn_register_backends(registry):
    registry.register(RandomSearch)

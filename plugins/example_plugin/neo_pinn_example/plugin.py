"""A passive-membrane model and a random-search backend, registered through neo_pinn's hooks."""

from __future__ import annotations

import numpy as np
import torch

from neo_pinn import Estimator, NeuronModel, ParameterSpec, Preset, StateSpec, build_result
from neo_pinn.hookspecs import hookimpl
from neo_pinn.simulate import simulate


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


class RandomSearch(Estimator):
    """Simulate ``n_samples`` random parameter sets in one batch and keep the best (example backend)."""

    name = "random_search"
    description = "batched random search (example plugin)"
    default_config = {"n_samples": 256, "dt": None}

    def _fit(self, problem, ctx):
        model = problem.model
        starts = problem.sample_starts(int(self.config["n_samples"]), ctx.rng)
        theta = np.stack([problem.theta_full(s) for s in starts])
        costs = np.zeros(len(theta))
        sims = []
        for tr in problem.traces:
            dt = float(self.config["dt"] or tr.dt)
            y0 = np.array([tr.v[0]] + [0.0] * (model.n_states - 1))
            sim = simulate(model, torch.as_tensor(theta), duration=tr.duration, dt=dt, i_ext=tr.i_ext,
                           y0=y0, t0=float(tr.t[0]), device=ctx.device, dtype=ctx.dtype)
            y = sim.y.detach().cpu().numpy()
            costs += np.mean((y[:, :, 0] - tr.v[None, :]) ** 2, axis=1)
            sims.append(y)
        best = int(np.argmin(costs))
        return build_result(problem, self.name, dict(zip(problem.free_names, starts[best])),
                            [y[best] for y in sims], metrics={"cost": float(costs[best])},
                            samples={n: starts[:, j].tolist() for j, n in enumerate(problem.free_names)})


@hookimpl
def neo_pinn_register_models(registry):
    registry.register(PassiveMembrane())


@hookimpl
def neo_pinn_register_backends(registry):
    registry.register("random_search", RandomSearch)

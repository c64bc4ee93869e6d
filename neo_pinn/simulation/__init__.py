"""Batched simulation of neuron models: fixed-step integrators, the torch simulator and its fused GPU kernel.

:func:`simulate` integrates B parameter sets at once (CPU or CUDA, float32/64, differentiable);
:func:`step` and :func:`choose_dt` are the integrator step and the step choice every backend shares;
:func:`simulate_traces` runs one parameter set on recorded sweeps (the verdict's free simulation).
The fused population kernel (:mod:`neo_pinn.simulation.fused`) is imported on demand only.
"""

from .budget import available_memory_bytes, check_simulation_size, check_simulation_work
from .integrators import METHODS, choose_dt, step
from .simulator import Simulation, as_batch, resolve_device, simulate, stimulus_half_grid, theta_batch
from .sweeps import simulate_traces

__all__ = ["simulate", "Simulation", "resolve_device", "METHODS", "step", "choose_dt", "theta_batch",
           "stimulus_half_grid", "as_batch", "check_simulation_size", "check_simulation_work",
           "available_memory_bytes", "simulate_traces"]

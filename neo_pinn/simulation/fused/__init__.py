"""Population features without traces: a fused, generated GPU kernel and its torch reference.

Scoring a GA population means integrating many neurons for thousands of steps and reducing each trace
to a handful of features. Done step by step in torch (:func:`neo_pinn.simulation.simulate`) every step
is a few kernel launches and every recorded sample a write to memory, so the GPU idles on launch
latency and bandwidth. Here the whole time loop runs inside one Triton kernel
(:mod:`~.triton_engine`): each GPU thread keeps one neuron's parameters and states in registers,
integrates it (Euler, Heun or RK4) and accumulates its features online — spike count and times, ISI
moments, spike peaks and troughs, the mean voltage over a baseline window and the squared error
against a reference trace.

The model equations are never written again for the kernel: :func:`trace_derivatives`
(:mod:`~.tracing`, :mod:`~.aten_to_triton`) traces the model's own ``derivatives`` into straight-line
Triton statements, :func:`generate_kernel_source` (:mod:`~.codegen`) inlines them once per integrator
stage, and :func:`load_kernel_module` (:mod:`~.loading`) writes the module to a cache file and imports
it. An op without a translation raises :class:`UnsupportedOpError` naming it.

:func:`online_features_torch` (:mod:`~.torch_engine`) computes exactly the same accumulators from
:func:`~neo_pinn.simulation.simulate` traces; it is the CPU fallback and the oracle the kernel is
tested against. :func:`population_features` picks one of the two; every engine returns the keys
:data:`ONLINE_FEATURE_NAMES` (not :data:`neo_pinn.features.FEATURE_NAMES`: online accumulators and what
derives from them).

Spike convention (as :func:`neo_pinn.features.spike_times`): a spike is an upward crossing of
``threshold_mv`` between two consecutive samples of the analysis window, its time linearly interpolated
between them; after a spike the next crossing only counts once the voltage has been below
``rearm_mv``; the window opens armed when its first sample is below threshold.
"""

from .codegen import generate_kernel_source
from .engine_io import ENGINES, ONLINE_FEATURE_NAMES
from .errors import FusedUnavailableError, UnsupportedOpError
from .loading import evaluate_generated_derivatives, fused_available, kernel_path, load_kernel_module
from .population import population_features
from .torch_engine import online_features_torch, voltage_features
from .tracing import TracedDerivatives, trace_derivatives
from .triton_engine import online_features_fused

__all__ = [
    "ENGINES",
    "ONLINE_FEATURE_NAMES",
    "FusedUnavailableError",
    "UnsupportedOpError",
    "TracedDerivatives",
    "trace_derivatives",
    "generate_kernel_source",
    "kernel_path",
    "load_kernel_module",
    "fused_available",
    "evaluate_generated_derivatives",
    "online_features_fused",
    "online_features_torch",
    "population_features",
    "voltage_features",
]

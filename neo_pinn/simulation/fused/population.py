"""Features of a neuron population by the fastest engine available here (fused kernel or torch)."""

from __future__ import annotations

import torch

from ...errors import ConfigurationError
from .engine_io import ENGINES, engine_device, engine_docstring
from .loading import fused_available
from .torch_engine import online_features_torch
from .triton_engine import online_features_fused

__all__ = ["population_features"]


def population_features(model, theta, *, i_table, stim_index=None, dt: float, n_steps: int, y0=None,
                        window=None, baseline=None, threshold_mv=None, rearm_mv=None, v_ref=None,
                        record_every: int = 1, method: str = "rk4", engine: str = "auto", t0: float = 0.0,
                        dtype: torch.dtype = torch.float32, device="auto", **engine_options
                        ) -> dict[str, torch.Tensor]:
    """Features of a population of neurons, computed by the fastest available engine.

    ``engine="auto"`` runs the fused Triton kernel
    (:func:`~neo_pinn.simulation.fused.online_features_fused`) on a CUDA device when Triton is importable
    and dtype is float32, else the torch reference (:func:`~neo_pinn.simulation.fused.online_features_torch`);
    ``"fused"`` / ``"torch"`` force one (``"fused"`` raises
    :class:`~neo_pinn.simulation.fused.FusedUnavailableError` where it cannot run). Both return the same
    keys with the same meaning.
    """
    if engine not in ENGINES:
        raise ConfigurationError(f"Unknown engine {engine!r}; choose one of {', '.join(ENGINES)}.")
    kw = dict(i_table=i_table, stim_index=stim_index, dt=dt, n_steps=n_steps, y0=y0, window=window,
              baseline=baseline, threshold_mv=threshold_mv, rearm_mv=rearm_mv, v_ref=v_ref,
              record_every=record_every, method=method, t0=t0, dtype=dtype, device=device)
    if engine == "auto":
        dev = engine_device(theta, device)
        engine = "fused" if dev.type == "cuda" and dtype == torch.float32 and fused_available(dev) else "torch"
    fn = online_features_fused if engine == "fused" else online_features_torch
    return fn(model, theta, **kw, **engine_options)


population_features.__doc__ += engine_docstring(
    """    engine : {"auto", "fused", "torch"}
    **engine_options
        ``block_size``/``num_warps`` (fused) or ``segment_steps``/``compile`` (torch).
""", """
    Raises
    ------
    FusedUnavailableError, UnsupportedOpError, ConfigurationError
""")

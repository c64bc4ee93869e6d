"""The fused engine: one generated Triton kernel integrates the whole population and keeps features.

Each GPU thread keeps one neuron's parameters and states in registers, integrates it (Euler, Heun or
RK4) for every step of the run and accumulates its features online, so nothing but the stimulus table
is read and nothing but the accumulators is written (CUDA, float32; Triton's interpreter on CPU).
"""

from __future__ import annotations

import contextlib

import torch

from ...errors import ConfigurationError
from .codegen import N_OUT_FLOAT, N_OUT_INT
from .engine_io import engine_docstring, finish_features, prepare_inputs
from .errors import FusedUnavailableError
from .loading import default_block_size, import_triton, load_kernel_module, quiet_numpy, triton_interpreting

__all__ = ["online_features_fused"]


def online_features_fused(model, theta, *, i_table, stim_index=None, dt: float, n_steps: int, y0=None,
                          window=None, baseline=None, threshold_mv=None, rearm_mv=None, v_ref=None,
                          record_every: int = 1, method: str = "rk4", t0: float = 0.0,
                          dtype: torch.dtype = torch.float32, device="auto", block_size: int | None = None,
                          num_warps: int | None = None) -> dict[str, torch.Tensor]:
    """Population features from the fused, generated Triton kernel (CUDA, float32).

    The kernel is generated from ``model.derivatives`` (see
    :func:`~neo_pinn.simulation.fused.generate_kernel_source`), cached and compiled on first use per
    (model, method); each GPU thread integrates one neuron for all steps and keeps only the online
    accumulators.
    """
    tri = import_triton()
    x = prepare_inputs(model, theta, i_table=i_table, stim_index=stim_index, dt=dt, n_steps=n_steps, y0=y0,
                       window=window, baseline=baseline, threshold_mv=threshold_mv, rearm_mv=rearm_mv,
                       v_ref=v_ref, record_every=record_every, method=method, t0=t0, dtype=dtype, device=device)
    if x.device.type != "cuda" and not triton_interpreting():
        raise FusedUnavailableError(f"engine='fused' runs on a CUDA device (got {x.device}); on CPU use "
                                    "engine='torch' (TRITON_INTERPRET=1 runs it in Triton's slow interpreter "
                                    "for debugging).")
    if x.dtype != torch.float32:
        raise FusedUnavailableError("engine='fused' computes in float32; use dtype=torch.float32 or engine='torch'.")
    B = x.B
    # Offsets inside the kernel are 32-bit.
    big = max(B * max(x.model.n_params, x.model.n_states), x.i_table.numel(),
              0 if x.v_ref is None else x.v_ref.numel())
    if big >= 2 ** 31:
        raise ConfigurationError(f"engine='fused' indexes with 32-bit offsets; {big} elements is too many — "
                                 "split the population or the stimulus table.")
    mod = load_kernel_module(x.model, x.method)
    block = int(block_size) if block_size else default_block_size(B, x.device)
    if block < 16 or block & (block - 1):
        raise ConfigurationError(f"block_size must be a power of two ≥ 16; got {block}.")
    nw = int(num_warps) if num_warps else max(1, min(8, block // 32))
    outf = torch.empty((N_OUT_FLOAT, B), dtype=torch.float32, device=x.device)
    outi = torch.empty((N_OUT_INT, B), dtype=torch.int32, device=x.device)
    has_ref = x.v_ref is not None
    vref = x.v_ref if has_ref else torch.zeros((1, 1), dtype=torch.float32, device=x.device)
    sidx = x.stim_index.to(torch.int32)
    dt_ = x.dt
    device_ctx = torch.cuda.device(x.device) if x.device.type == "cuda" else contextlib.nullcontext()
    with quiet_numpy(), device_ctx:  # launch on the tensors' GPU, not just the current one
        mod.population_kernel[(tri.cdiv(B, block),)](
            x.theta, x.y0, sidx, x.i_table, x.i_table.shape[1], vref, vref.shape[1], vref.shape[1],
            outf, outi, B, x.n_steps, x.t0, dt_, 0.5 * dt_, dt_ / 6.0, x.w0, x.w1, x.b0, x.b1, x.thr, x.rearm,
            x.record_every, HAS_REF=has_ref, BLOCK=block, num_warps=nw, enable_fp_fusion=True)
    cnt = outi[0].long()
    f = outf.double()
    m = (cnt - 1).clamp(min=0).double()
    shift, dsum, dsumsq = f[2], f[3], f[4]
    nan = torch.tensor(float("nan"), dtype=torch.float64, device=x.device)
    raw = {
        "spike_count": cnt,
        "first_spike_ms": torch.where(cnt > 0, x.t0 + (outi[1].double() + f[0]) * dt_, nan),
        "last_spike_ms": torch.where(cnt > 0, x.t0 + (outi[2].double() + f[1]) * dt_, nan),
        # the kernel sums ISI − first ISI (stable); undo the shift in float64
        "isi_sum_ms": torch.where(m > 0, dsum + m * shift, 0.0),
        "isi_sumsq_ms2": torch.where(m > 0, dsumsq + 2.0 * shift * dsum + m * shift * shift, 0.0),
        "peak_sum_mv": f[5],
        "trough_sum_mv": f[6],
        "v_sum": f[7],
        "sse": f[8],
        "finite": outi[3].bool(),
    }
    return finish_features(x, raw)


online_features_fused.__doc__ += engine_docstring(
    """    block_size : int, optional
        Neurons per Triton program (power of two; default 128, or 64 when B leaves SMs idle).
    num_warps : int, optional
        Warps per program (default block_size // 32: one neuron per thread).
""", """
    Raises
    ------
    FusedUnavailableError
        Without Triton, off CUDA (unless TRITON_INTERPRET=1), or for float64.
    UnsupportedOpError
        When the model's equations hold an op the generator cannot translate.
    ConfigurationError
        For inconsistent inputs (shapes, windows, thresholds).
""")

"""The torch engine: population features from :func:`neo_pinn.simulation.simulate` traces (any device).

The reference the fused kernel is tested against and its CPU fallback: the run is simulated in time
segments and each segment's traces are reduced to the kernel's accumulators
(:class:`~.accumulator.SpikeAccumulator`) before the next is simulated, so memory stays bounded.
:func:`voltage_features` runs the same reduction over given traces (e.g. a recording).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch

from ...errors import ConfigurationError
from ..simulator import simulate
from .accumulator import SpikeAccumulator
from .engine_io import EngineInputs, cdiv, engine_docstring, finish_features, prepare_inputs

__all__ = ["online_features_torch", "voltage_features", "auto_segment_steps"]

#: Neuron-steps per time segment of the torch reference (bounds its memory: a few such tensors live).
_SEGMENT_ELEMENTS = 1 << 24


def auto_segment_steps(n_steps: int, B: int, S: int) -> int:
    """Steps per segment of the torch engine: bounded memory, no ragged tail.

    At most about 2**24 neuron-states per segment, spread evenly over the segments, a multiple of 8
    (simulate's compiled chunk) so no segment is a ragged tail.

    Parameters
    ----------
    n_steps : int
        Steps of the run.
    B, S : int
        Neurons and states per neuron.

    Returns
    -------
    int
        Steps per segment (a multiple of 8).
    """
    k_max = max(8, (_SEGMENT_ELEMENTS // max(B * S, 1)) // 8 * 8)
    return cdiv(cdiv(n_steps, cdiv(n_steps, k_max)), 8) * 8


def online_features_torch(model, theta, *, i_table, stim_index=None, dt: float, n_steps: int, y0=None,
                          window=None, baseline=None, threshold_mv=None, rearm_mv=None, v_ref=None,
                          record_every: int = 1, method: str = "rk4", t0: float = 0.0,
                          dtype: torch.dtype = torch.float32, device="auto", segment_steps: int | None = None,
                          compile: bool | str = "auto") -> dict[str, torch.Tensor]:
    """Population features from :func:`neo_pinn.simulation.simulate` traces (any device, float32/64).

    The reference for the fused kernel and its CPU fallback: the run is simulated in time segments of
    ``segment_steps`` steps (every step recorded) and each segment's traces are reduced to the same
    accumulators, in float64, before the next is simulated — memory stays O(B × segment_steps).
    """
    x = prepare_inputs(model, theta, i_table=i_table, stim_index=stim_index, dt=dt, n_steps=n_steps, y0=y0,
                       window=window, baseline=baseline, threshold_mv=threshold_mv, rearm_mv=rearm_mv,
                       v_ref=v_ref, record_every=record_every, method=method, t0=t0, dtype=dtype, device=device)
    if segment_steps is not None and int(segment_steps) < 1:
        raise ConfigurationError("segment_steps must be a positive integer.")
    return finish_features(x, _torch_raw(x, segment_steps, compile))


def _torch_raw(x: EngineInputs, segment_steps: int | None, compile) -> dict[str, torch.Tensor]:
    """The torch engine's accumulators (before :func:`~.engine_io.finish_features`)."""
    if x.i_table.shape[0] > 1:
        # Neurons sharing a stimulus are simulated together with that single row: simulate() then reads
        # one current per step instead of gathering a strided column per neuron (faster).
        out: dict[str, torch.Tensor] = {}
        for g in torch.unique(x.stim_index).tolist():
            idx = (x.stim_index == g).nonzero()[:, 0]
            sub = replace(x, theta=x.theta[idx], y0=x.y0[idx], i_table=x.i_table[g:g + 1],
                          stim_index=torch.zeros_like(idx), B=int(idx.numel()),
                          v_ref=None if x.v_ref is None else x.v_ref[g:g + 1])
            for k, val in _torch_raw(sub, segment_steps, compile).items():
                if k not in out:
                    out[k] = torch.empty((x.B,), dtype=val.dtype, device=val.device)
                out[k][idx] = val
        return out
    B, N, S = x.B, x.n_steps, x.model.n_states
    K = int(segment_steps) if segment_steps is not None else auto_segment_steps(N, B, S)
    n_seg = -(-N // K)
    # Every segment gets K steps — the last one runs past n_steps on a held stimulus and its extra samples
    # are dropped — so torch.compile sees one shape and compiles once.
    pad = n_seg * K - N
    itab = torch.cat([x.i_table, x.i_table[:, -1:].expand(-1, pad)], 1) if pad else x.i_table
    acc = SpikeAccumulator(B, x.thr, x.rearm, x.device)
    f64 = dict(dtype=torch.float64, device=x.device)
    v_sum = torch.zeros(B, **f64)
    sse = torch.zeros(B, **f64)
    vref = x.v_ref[0].double() if x.v_ref is not None else None  # (R,), R ≤ N / record_every + 1
    y = x.y0
    started = False
    y_final = None
    for seg in range(n_seg):
        k0 = seg * K
        sim = simulate(x.model, x.theta, duration=K * x.dt, dt=x.dt, i_ext=itab[:, k0:k0 + K + 1], y0=y,
                       method=x.method, dtype=x.dtype, device=x.device, record_every=1, t0=x.t0 + k0 * x.dt,
                       compile=compile, check_finite=False)
        traj = sim.y                                            # (B, K + 1, S), samples k0..k0+K
        y = traj[:, -1, :]
        hi = min(k0 + K, N)                                     # last valid sample in this segment
        v = traj[:, : hi - k0 + 1, 0]                           # samples k0..hi (sums below in float64)
        if hi == N:
            y_final = traj[:, N - k0, :]
        new_lo = k0 if seg == 0 else k0 + 1                     # samples not consumed by the previous segment
        # analysis window: samples w0..w1-1
        if not started and k0 <= x.w0 <= hi:
            acc.start(v[:, x.w0 - k0])
            started = True
        lo_w, hi_w = max(k0, x.w0), min(hi, x.w1 - 1)
        if started and hi_w > lo_w:
            acc.update(v[:, lo_w - k0: hi_w - k0 + 1], lo_w, x.dt)
        # baseline samples b0..b1-1 among the new ones
        lo_b, hi_b = max(new_lo, x.b0), min(hi, x.b1 - 1)
        if hi_b >= lo_b:
            v_sum += v[:, lo_b - k0: hi_b - k0 + 1].double().sum(1)
        # reference points r·record_every among the new ones
        if vref is not None:
            r_lo = -(-new_lo // x.record_every)
            r_hi = min(hi // x.record_every, vref.shape[0] - 1)
            if r_hi >= r_lo:
                r = torch.arange(r_lo, r_hi + 1, device=x.device)
                vr = vref[r_lo: r_hi + 1]
                e = torch.where(torch.isfinite(vr), v[:, r * x.record_every - k0].double() - vr, 0.0)
                sse += (e * e).sum(1)
    raw = acc.result(x.t0, x.dt)
    raw.update(v_sum=v_sum, sse=sse, finite=torch.isfinite(y_final).all(1))
    return raw


def voltage_features(v, dt: float, *, window=None, baseline=None, threshold_mv: float, rearm_mv: float,
                     t0: float = 0.0) -> dict[str, torch.Tensor]:
    """The engines' features of given voltage traces (e.g. a recording), by the torch engine's own code.

    Runs the same :class:`~.accumulator.SpikeAccumulator` and baseline sum as :func:`online_features_torch`
    over the samples of ``v`` and derives the features with the same
    :func:`~.engine_io.finish_features`, so a recorded trace and a
    simulated population are described by identical definitions (spike convention, window, ISI and
    peak/trough rules). Only the grid may differ: the engines see every integration step, ``v`` its own
    samples.

    Parameters
    ----------
    v : array_like
        Voltages (B, T) or (T,) in mV at times t0 + k·dt, k = 0..T-1 (T ≥ 2), finite.
    dt : float
        Sampling interval in ms.
    window : (int, int), optional
        Analysis window [w0, w1) in samples for the spike features; default all samples.
    baseline : (int, int), optional
        Samples [b0, b1) averaged into ``rest_mv``; default none (``rest_mv`` NaN).
    threshold_mv, rearm_mv : float
        Spike threshold and re-arm level in mV (rearm_mv < threshold_mv).
    t0 : float
        Time of sample 0 in ms.

    Returns
    -------
    dict of str to torch.Tensor
        (B,) float64 tensors, keys :data:`~.engine_io.ONLINE_FEATURE_NAMES` as
        :func:`~neo_pinn.simulation.fused.population_features` (``sse`` 0,
        ``sse_count`` 0, ``rmse_mv`` NaN: there is no reference here; ``finite``: every sample finite).

    Raises
    ------
    ConfigurationError
        For a trace shorter than two samples, bad windows or thresholds.
    """
    vt = torch.as_tensor(v if isinstance(v, torch.Tensor) else np.asarray(v, dtype=float)).to(torch.float64)
    if vt.ndim == 1:
        vt = vt.unsqueeze(0)
    if vt.ndim != 2 or vt.shape[1] < 2:
        raise ConfigurationError(f"v must have shape (B, T) or (T,) with T ≥ 2 samples; got {tuple(vt.shape)}.")
    dt = float(dt)
    if not dt > 0 or not math.isfinite(dt):
        raise ConfigurationError(f"dt (ms) must be positive; got {dt}.")
    thr, rearm = float(threshold_mv), float(rearm_mv)
    if not rearm < thr:
        raise ConfigurationError(f"rearm_mv ({rearm}) must be below threshold_mv ({thr}).")
    B, T = vt.shape

    def span(w, what, default):
        if w is None:
            return default
        a, b = int(w[0]), int(w[1])
        if not 0 <= a < b <= T:
            raise ConfigurationError(f"{what} = ({a}, {b}) must satisfy 0 ≤ start < stop ≤ T = {T} (samples).")
        return a, b

    w0, w1 = span(window, "window", (0, T))
    b0, b1 = span(baseline, "baseline", (0, 0))
    acc = SpikeAccumulator(B, thr, rearm, vt.device)
    acc.start(vt[:, w0])
    if w1 - 1 > w0:  # the pairs inside the window, exactly as the torch engine hands them over
        acc.update(vt[:, w0:w1], w0, dt)
    raw = acc.result(float(t0), dt)
    raw.update(v_sum=vt[:, b0:b1].sum(1), sse=torch.zeros(B, dtype=torch.float64, device=vt.device),
               finite=torch.isfinite(vt).all(1))
    # finish_features reads only the run's geometry; the model-side fields are not used for a trace
    x = EngineInputs(None, None, None, None, torch.zeros(B, dtype=torch.int64, device=vt.device), None, B, T - 1,
                     dt, float(t0), w0, w1, b0, b1, thr, rearm, 1, "rk4", torch.float64, vt.device)
    return finish_features(x, raw)


online_features_torch.__doc__ += engine_docstring(
    """    segment_steps : int, optional
        Steps per segment (default: about 2**24 / (B·S) neuron-steps, a multiple of 8).
    compile : bool or "auto"
        Passed to :func:`~neo_pinn.simulation.simulate`.
""", """
    Raises
    ------
    ConfigurationError
        For inconsistent inputs (shapes, windows, thresholds).
""")

"""What both engines share: the checked run inputs, the derived features and their documentation.

:func:`prepare_inputs` validates one population run (model, parameters, stimulus table, windows,
thresholds, reference trace) into :class:`EngineInputs`; each engine computes the raw online
accumulators and :func:`finish_features` derives the features named in :data:`ONLINE_FEATURE_NAMES`
from them, so the fused kernel, the torch reference and recorded traces are described identically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ...errors import ConfigurationError
from ...models.base import NeuronModel
from ..integrators import METHODS
from ..simulator import resolve_device, theta_batch

__all__ = ["ENGINES", "ONLINE_FEATURE_NAMES", "EngineInputs", "prepare_inputs", "finish_features", "engine_device",
           "engine_docstring", "cdiv"]

#: Engines :func:`~neo_pinn.simulation.fused.population_features` can run.
ENGINES = ("auto", "fused", "torch")

#: Keys of the dict every engine returns, all (B,) tensors (see
#: :func:`~neo_pinn.simulation.fused.population_features`). Not :data:`neo_pinn.features.FEATURE_NAMES`:
#: these are online accumulators and what derives from them.
ONLINE_FEATURE_NAMES = (
    # accumulators
    "spike_count", "first_spike_ms", "last_spike_ms", "isi_sum_ms", "isi_sumsq_ms2", "peak_sum_mv",
    "trough_sum_mv", "v_sum", "v_count", "sse", "sse_count", "finite",
    # derived (names as in neo_pinn.features.batch_features where the meaning is the same)
    "mean_rate_hz", "first_spike_latency_ms", "isi_mean_ms", "isi_cv", "rest_mv", "rmse_mv", "peak_mean_mv",
    "trough_mean_mv",
)


def cdiv(a: int, b: int) -> int:
    """Ceiling of a / b for positive integers."""
    return -(-a // b)


@dataclass
class EngineInputs:
    """One population run, checked and on its device (see :func:`prepare_inputs`).

    Tensors: ``theta`` (B, P), ``y0`` (B, S), ``i_table`` (n_stim, N + 1) in pA, ``stim_index`` (B,)
    int64, ``v_ref`` (n_stim, R) in mV or None. Windows ``[w0, w1)`` and ``[b0, b1)`` are in samples
    (steps); ``thr``/``rearm`` in mV; ``dt``/``t0`` in ms.
    """

    model: NeuronModel
    theta: torch.Tensor        # (B, P)
    y0: torch.Tensor           # (B, S)
    i_table: torch.Tensor      # (n_stim, N + 1)
    stim_index: torch.Tensor   # (B,) int64
    v_ref: torch.Tensor | None  # (n_stim, R)
    B: int
    n_steps: int
    dt: float
    t0: float
    w0: int
    w1: int
    b0: int
    b1: int
    thr: float
    rearm: float
    record_every: int
    method: str
    dtype: torch.dtype
    device: torch.device


def engine_device(theta, device) -> torch.device:
    """The run's device: ``theta``'s when it is a tensor and ``device`` is "auto" (or None), else ``device``."""
    if device is None or str(device) == "auto":
        return theta.device if isinstance(theta, torch.Tensor) else resolve_device("auto")
    return resolve_device(device)


def _as_rows(x, dtype: torch.dtype, dev: torch.device) -> torch.Tensor:
    """``x`` as a tensor of ``dtype`` on ``dev``, a vector made one row."""
    t = torch.as_tensor(x if isinstance(x, torch.Tensor) else np.asarray(x, dtype=float)).to(dtype=dtype, device=dev)
    return t.unsqueeze(0) if t.ndim == 1 else t


def prepare_inputs(model, theta, *, i_table, stim_index, dt, n_steps, y0, window, baseline, threshold_mv, rearm_mv,
                   v_ref, record_every, method, t0, dtype, device) -> EngineInputs:
    """Check the arguments of a population run (see :func:`~neo_pinn.simulation.fused.population_features`).

    Returns
    -------
    EngineInputs
        Tensors broadcast to B rows and contiguous, on the run's device.

    Raises
    ------
    ConfigurationError
        Naming the argument and what it accepts.
    """
    if isinstance(model, str):
        raise ConfigurationError(f"model must be a NeuronModel; got the name {model!r}: pass the model itself, "
                                 f"e.g. neo_pinn.api.get_model({model!r}).")
    if not isinstance(model, NeuronModel):
        raise ConfigurationError(f"model must be a NeuronModel; got {type(model).__name__}.")
    if method not in METHODS:
        raise ConfigurationError(f"Unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    if dtype not in (torch.float32, torch.float64):
        raise ConfigurationError(f"dtype must be torch.float32 or torch.float64; got {dtype}.")
    n_steps = int(n_steps)
    dt = float(dt)
    if n_steps < 1 or not dt > 0 or not math.isfinite(dt):
        raise ConfigurationError(f"n_steps must be ≥ 1 and dt (ms) positive; got n_steps={n_steps}, dt={dt}.")
    record_every = int(record_every)
    if record_every < 1:
        raise ConfigurationError("record_every must be a positive integer (steps between v_ref points).")
    dev = engine_device(theta, device)

    th = theta_batch(model, theta, None, dtype, dev)
    y0t = _as_rows(model.initial_state() if y0 is None else y0, dtype, dev)
    if y0t.ndim != 2 or y0t.shape[1] != model.n_states:
        raise ConfigurationError(f"y0 must have shape ({model.n_states},) or (B, {model.n_states}); "
                                 f"got {tuple(y0t.shape)}.")
    it = _as_rows(i_table, dtype, dev)
    if it.ndim != 2 or it.shape[1] != n_steps + 1:
        raise ConfigurationError(f"i_table must have shape (n_stim, n_steps + 1) = (n_stim, {n_steps + 1}): one "
                                 f"current (pA) per step time; got {tuple(it.shape)}.")
    if not bool(torch.isfinite(it).all()):
        raise ConfigurationError("i_table holds NaN/inf; every stimulus value must be finite (pA).")
    n_stim = it.shape[0]

    si = _stim_index(stim_index, n_stim, max(th.shape[0], y0t.shape[0]), dev)
    B = max(th.shape[0], y0t.shape[0], si.shape[0])
    if si.shape[0] == 1:
        si = si.expand(B)
    for name, rows in (("theta", th.shape[0]), ("y0", y0t.shape[0]), ("stim_index", si.shape[0])):
        if rows not in (1, B):
            raise ConfigurationError(f"Batch sizes disagree: {name} has {rows} rows, others {B}.")
    th = th.expand(B, -1).contiguous()
    y0t = y0t.expand(B, -1).contiguous()
    si = si.contiguous()

    w0, w1 = _sample_span(window, "window", (0, n_steps + 1), n_steps)
    b0, b1 = _sample_span(baseline, "baseline", (0, 0), n_steps)
    thr = float(model.spike_threshold if threshold_mv is None else threshold_mv)
    rearm = float(model.spike_rearm if rearm_mv is None else rearm_mv)
    if not rearm < thr:
        raise ConfigurationError(f"rearm_mv ({rearm}) must be below threshold_mv ({thr}).")
    vr = None if v_ref is None else _reference(v_ref, n_stim, n_steps, record_every, dtype, dev)
    return EngineInputs(model, th, y0t, it.contiguous(), si, vr, B, n_steps, dt, float(t0), w0, w1, b0, b1, thr,
                        rearm, record_every, method, dtype, dev)


def _stim_index(stim_index, n_stim: int, B: int, dev: torch.device) -> torch.Tensor:
    """(B,) or (1,) int64 row of the stimulus table per neuron (all row 0 when None and there is one)."""
    if stim_index is None:
        if n_stim != 1:
            raise ConfigurationError(f"i_table has {n_stim} stimuli: pass stim_index (B,) saying which one each "
                                     "neuron receives.")
        return torch.zeros(B, dtype=torch.int64, device=dev)
    si = torch.as_tensor(stim_index if isinstance(stim_index, torch.Tensor) else np.asarray(stim_index))
    if si.ndim == 0:
        si = si.reshape(1)
    if si.ndim != 1 or si.dtype.is_floating_point or si.dtype == torch.bool:
        raise ConfigurationError(f"stim_index must be a 1-D integer array (B,); got {si.dtype} "
                                 f"{tuple(si.shape)}.")
    si = si.to(device=dev, dtype=torch.int64)
    if si.numel() and (int(si.min()) < 0 or int(si.max()) >= n_stim):
        raise ConfigurationError(f"stim_index values must lie in [0, {n_stim}) (rows of i_table).")
    return si


def _sample_span(w, what: str, default: tuple[int, int], n_steps: int) -> tuple[int, int]:
    """A window [start, stop) of sample indices (steps), checked against the run's n_steps + 1 samples."""
    if w is None:
        return default
    try:
        a, b = (int(w[0]), int(w[1]))
    except (TypeError, ValueError, IndexError):
        raise ConfigurationError(f"{what} must be a pair (start, stop) of sample indices (steps).") from None
    if not (0 <= a < b <= n_steps + 1):
        raise ConfigurationError(f"{what} = ({a}, {b}) must satisfy 0 ≤ start < stop ≤ n_steps + 1 = "
                                 f"{n_steps + 1} (sample indices, end exclusive).")
    return a, b


def _reference(v_ref, n_stim: int, n_steps: int, record_every: int, dtype: torch.dtype,
               dev: torch.device) -> torch.Tensor:
    """The reference voltage (n_stim, R) in mV at samples r·record_every, checked."""
    vr = _as_rows(v_ref, dtype, dev)
    if vr.ndim != 2 or vr.shape[0] != n_stim:
        raise ConfigurationError(f"v_ref must have shape (n_stim, R) = ({n_stim}, R): one reference trace "
                                 f"(mV) per stimulus; got {tuple(vr.shape)}.")
    r_max = n_steps // record_every + 1
    if not 1 <= vr.shape[1] <= r_max:
        raise ConfigurationError(f"v_ref has {vr.shape[1]} points, but the run has n_steps // record_every "
                                 f"+ 1 = {r_max} record points (samples 0, record_every, 2·record_every, …).")
    return vr.contiguous()


def finish_features(x: EngineInputs, raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The features of :data:`ONLINE_FEATURE_NAMES` from an engine's raw accumulators ``raw``.

    Adds the counts known from the inputs alone (``v_count``, ``sse_count``) and derives rates, ISI
    statistics, rest, RMSE and mean peak/trough (float64; NaN where undefined).
    """
    dev = x.device
    n = raw["spike_count"]
    lo, hi = max(x.b0, 0), min(x.b1, x.n_steps + 1)
    raw["v_count"] = torch.full((x.B,), max(hi - lo, 0), dtype=torch.int64, device=dev)
    if x.v_ref is not None:
        per_stim = torch.isfinite(x.v_ref).sum(1)
        raw["sse_count"] = per_stim[x.stim_index].to(torch.int64)
    else:
        raw["sse"] = torch.zeros(x.B, dtype=torch.float64, device=dev)
        raw["sse_count"] = torch.zeros(x.B, dtype=torch.int64, device=dev)
    nan = torch.tensor(float("nan"), dtype=torch.float64, device=dev)
    nf = n.double()
    raw["spike_count"] = nf  # a float count, as batch_features (objectives do arithmetic with it)
    m = (nf - 1).clamp(min=0)  # number of ISIs
    win_ms = (x.w1 - 1 - x.w0) * x.dt  # first to last window sample, as batch_features' window_ms
    out = dict(raw)
    out["mean_rate_hz"] = 1000.0 * nf / win_ms if win_ms > 0 else torch.full_like(nf, float("nan"))
    out["first_spike_latency_ms"] = raw["first_spike_ms"] - (x.t0 + x.w0 * x.dt)
    mean = torch.where(m > 0, raw["isi_sum_ms"] / m.clamp(min=1), nan)
    # sample variance (ddof = 1, as batch_features); NaN with fewer than two ISIs
    var = ((raw["isi_sumsq_ms2"] - m * mean * mean) / (m - 1).clamp(min=1)).clamp(min=0)
    out["isi_mean_ms"] = mean
    out["isi_cv"] = torch.where(m > 1, var.sqrt() / mean, nan)
    out["rest_mv"] = torch.where(raw["v_count"] > 0, raw["v_sum"] / raw["v_count"].clamp(min=1), nan)
    out["rmse_mv"] = torch.where(raw["sse_count"] > 0, (raw["sse"] / raw["sse_count"].clamp(min=1)).sqrt(), nan)
    out["peak_mean_mv"] = torch.where(n > 0, raw["peak_sum_mv"] / nf.clamp(min=1), nan)
    out["trough_mean_mv"] = torch.where(m > 0, raw["trough_sum_mv"] / m.clamp(min=1), nan)
    return {k: out[k] for k in ONLINE_FEATURE_NAMES}



_COMMON_DOC = """
    Parameters
    ----------
    model : NeuronModel
        The model (``neo_pinn.api.get_model(name)`` gives a registered one).
    theta : array_like or torch.Tensor
        Parameters (B, P) (or (P,), shared) in ``model.param_names`` order, canonical units. A tensor's
        device is used when ``device="auto"``.
    i_table : array_like
        Injected currents in pA at the step times t0 + k·dt, k = 0..n_steps: shape (n_stim, n_steps + 1),
        or (n_steps + 1,) for one stimulus. Each value is held over its step (zero-order hold), exactly as
        :func:`neo_pinn.simulation.simulate` does for an array stimulus.
    stim_index : array_like of int
        (B,) row of ``i_table`` each neuron receives (None: all row 0 when there is one stimulus).
    dt : float
        Step in ms.
    n_steps : int
        Number of steps; samples are k = 0..n_steps.
    y0 : array_like, optional
        Initial state (S,) or (B, S); default the model's default preset's.
    window : (int, int), optional
        Analysis window [w0, w1) in samples (steps) for the spike features; default the whole run.
    baseline : (int, int), optional
        Samples [b0, b1) averaged into ``rest_mv``; default none (rest_mv NaN).
    threshold_mv, rearm_mv : float, optional
        Spike threshold and re-arm level in mV (default the model's ``spike_threshold``/``spike_rearm``);
        rearm_mv < threshold_mv.
    v_ref : array_like, optional
        Reference voltage (n_stim, R) in mV at samples r·record_every, r = 0..R-1 (R ≤ n_steps //
        record_every + 1); NaN points are skipped. Gives ``sse``/``rmse_mv``.
    record_every : int
        Steps between ``v_ref`` points.
    method : {"euler", "heun", "rk4"}
    t0 : float
        Time of sample 0 in ms.
    dtype : torch.dtype
        Simulation dtype (the fused engine runs float32 only).
    device : str or torch.device
        "auto": ``theta``'s device if it is a tensor, else CUDA when present.
"""

_RETURNS_DOC = """
    Returns
    -------
    dict of str to torch.Tensor
        (B,) tensors on the simulation device, keys :data:`ONLINE_FEATURE_NAMES`:

        - ``spike_count`` (a float64 count), ``first_spike_ms``, ``last_spike_ms`` (threshold-crossing
          times in ms on the clock of ``t0``, NaN without spikes), ``isi_sum_ms``, ``isi_sumsq_ms2``
          (sums over the count − 1 ISIs, ms and ms²), ``peak_sum_mv`` (sum over spikes of the maximum
          V from the crossing to the re-arm — equivalently to the next spike),
          ``trough_sum_mv`` (sum of the minimum V between consecutive spikes), ``v_sum``/``v_count``
          (baseline samples), ``sse``/``sse_count`` (squared error against ``v_ref``, mV², and its points),
          ``finite`` (bool: every state finite at the end — NaN/inf persists once reached);
        - derived: ``mean_rate_hz`` (count / window length, the window spanning its first to its last
          sample), ``first_spike_latency_ms`` (from the window start), ``isi_mean_ms``, ``isi_cv``
          (sample std, ddof = 1, / mean of the ISIs; NaN with < 2 ISIs), ``rest_mv`` (baseline
          mean), ``rmse_mv``, ``peak_mean_mv``, ``trough_mean_mv``.

        Floats are float64; ``v_count`` and ``sse_count`` are int64. The names follow
        :func:`neo_pinn.features.batch_features`, with two differences an online kernel imposes: spike
        times are threshold crossings (batch_features uses AP peaks, as eFEL: latencies differ by the
        AP rise time, ISI statistics hardly), and ``rest_mv`` is the baseline mean, not its median.
"""


def engine_docstring(extra: str, raises: str) -> str:
    """The numpydoc sections the engines share (parameters, returns), with an engine's own ``extra``
    parameters and its ``raises`` section; appended to each entry point's docstring."""
    return _COMMON_DOC + extra + _RETURNS_DOC + raises

"""The batched torch simulator: fixed-step integration of B neurons at once (CPU or CUDA, float32 or float64).

B parameter sets × T steps run as one torch computation: every state is kept as its own contiguous
(B,) tensor (structure of arrays) so element-wise kernels vectorise, the model's shared
:meth:`~neo_pinn.models.base.NeuronModel.derivatives` is called directly, and — where a C++ compiler or
CUDA is available — a chunk of steps is fused by ``torch.compile`` into one kernel call. Only the
requested states at every ``record_every``-th step are kept, so memory stays bounded for large B.
The computation is differentiable with respect to ``theta``, ``y0`` and a tensor stimulus.
"""

from __future__ import annotations

import math
import threading
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from ..errors import ConfigurationError, NonFiniteDataError
from ..models.base import NeuronModel
from .budget import check_simulation_size
from .integrators import METHODS, step

__all__ = ["simulate", "Simulation", "resolve_device", "theta_batch", "stimulus_half_grid", "as_batch"]

_COMPILE_MIN_WORK = 2_000_000  # neuron-steps below which compilation costs more than it saves
_compiled: dict[tuple, Callable] = {}
_compile_failed = False
_lock = threading.Lock()


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Resolve ``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda"`` or a torch device."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigurationError(f"device {device!r} is not a device; use 'auto', 'cpu', 'cuda' or 'cuda:N'.") from None
    if dev.type not in ("cpu", "cuda"):
        raise ConfigurationError(f"device {device!r} is not supported (the models run on 'cpu' or 'cuda'); use "
                                 "'auto', 'cpu', 'cuda' or 'cuda:N'.")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigurationError(f"device={str(device)!r} was requested but CUDA is not available; use device='auto' "
                                 "or 'cpu'.")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigurationError(f"device={str(device)!r}: this machine has {torch.cuda.device_count()} CUDA "
                                 "device(s); use 'cuda' or a smaller index.")
    return dev


@dataclass
class Simulation:
    """Output of :func:`simulate`.

    Attributes
    ----------
    t : torch.Tensor
        Recorded times in ms, shape (R,).
    y : torch.Tensor
        Recorded states, shape (B, R, S_rec), canonical units.
    state_names : tuple of str
        Names of the recorded states (columns of ``y``).
    model : NeuronModel
    dt : float
        Integration step in ms.
    method : str
    """

    t: torch.Tensor
    y: torch.Tensor
    state_names: tuple[str, ...]
    model: NeuronModel
    dt: float
    method: str

    def state(self, name: str) -> torch.Tensor:
        """Recorded state ``name``, shape (B, R)."""
        return self.y[..., self.state_names.index(name)]

    @property
    def v(self) -> torch.Tensor:
        """Membrane voltage (mV), shape (B, R); requires state 0 to be recorded."""
        return self.state(self.model.state_names[0])

    def numpy(self) -> tuple[np.ndarray, np.ndarray]:
        """(t, y) as float64 numpy arrays."""
        return self.t.detach().cpu().double().numpy(), self.y.detach().cpu().double().numpy()


def _make_chunk(model: NeuronModel, method: str, n_steps: int, record_every: int | None, dt: float,
                rec_idx: tuple[int, ...]):
    """A function advancing ``n_steps`` steps.

    It returns the new states and, when ``record_every`` is not None, the recorded states after every
    ``record_every``-th step stacked into one tensor (B, n_steps // record_every, len(rec_idx)) — one
    output per chunk instead of one per recorded step keeps the Python/dispatch overhead per chunk fixed.
    """

    def chunk(t0, ys, p, i_seg):
        out = []
        for j in range(n_steps):
            t = t0 + j * dt
            i_held = i_seg[..., 2 * j + 1]  # the current held over the whole step (zero-order hold)
            ys = step(model, method, t, ys, p, i_held, i_held, i_held, dt)
            if record_every is not None and (j + 1) % record_every == 0:
                out.append(torch.stack([ys[k] for k in rec_idx], -1))
        return ys, (torch.stack(out, 1) if out else None)

    return chunk


def _get_chunk(model, method, n_steps, record_every, dt, rec_idx, compile_: bool):
    fn = _make_chunk(model, method, n_steps, record_every, dt, rec_idx)
    if not compile_ or _compile_failed:
        return fn, False
    key = (type(model), model.name, method, n_steps, record_every, float(dt), tuple(rec_idx))
    with _lock:
        if key not in _compiled:
            _compiled[key] = torch.compile(fn, dynamic=None)
        return _compiled[key], True


def as_batch(x, dtype, device, width: int, what: str) -> torch.Tensor:
    """``x`` as a (B, width) tensor of ``dtype`` on ``device`` (a vector becomes one row); ``what`` names it in errors."""
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x, dtype=float))
    t = t.to(dtype=dtype, device=device)
    if t.ndim == 1:
        t = t.unsqueeze(0)
    if t.ndim != 2 or t.shape[-1] != width:
        raise ConfigurationError(f"{what} must have shape ({width},) or (B, {width}); got {tuple(t.shape)}.")
    return t


def theta_batch(model: NeuronModel, theta, preset: str | None, dtype: torch.dtype, device) -> torch.Tensor:
    """Parameters as a (B, P) tensor: None or a mapping of overrides (on the preset's values), a vector or a batch."""
    if theta is None or isinstance(theta, Mapping):
        theta = model.theta(dict(theta or {}), preset=preset)
    return as_batch(theta, dtype, device, model.n_params, "theta")


def _positive_times(dt: Any, duration: Any) -> tuple[float, float]:
    """(dt, duration) as floats (ms), or a ConfigurationError when either is not a positive, finite number."""
    dt, duration = float(dt), float(duration)
    if not (math.isfinite(dt) and math.isfinite(duration) and dt > 0 and duration > 0):
        raise ConfigurationError(f"duration ({duration}) and dt ({dt}) must be positive, finite numbers of ms.")
    return dt, duration


def _check_memory(duration: float, dt: float, n_steps: int, record_every: int, B: int, n_rec: int,
                  dtype: torch.dtype) -> None:
    """Refuse a simulation whose stimulus grid and recorded states cannot fit in memory, before allocating."""
    check_simulation_size(2 * n_steps + 1 + B * (n_steps // record_every + 1) * n_rec,
                          what=f"a {duration:g} ms simulation of {B} cell(s) at dt {dt:g} ms",
                          itemsize=torch.empty((), dtype=dtype).element_size(),
                          hint="shorten the duration, record fewer states or raise record_every")


def stimulus_half_grid(i_ext, model: NeuronModel, preset: str | None, n_steps: int, dt: float, t0: float, B: int,
                       dtype: torch.dtype, device) -> torch.Tensor:
    """Injected current (pA) on the half-step grid t0 + k·dt/2, k = 0..2N, shape (1 or B, 2N+1).

    The current is held over each step, as an amplifier holds its command between samples: entry 2n+1
    (the step's middle) is the current over the whole step n and entry 2n its value at the step's start.
    An array at the step times gives [a0, a0, a1, a1, …, a_N]; a callable is read at the step middles,
    so a protocol step whose edges fall on the step grid is applied exactly.
    """
    if i_ext is None:
        i_ext = model.preset(preset).i_ext if (preset or model.default_preset) else 0.0
    if isinstance(i_ext, (int, float)):
        return torch.full((1, 1), float(i_ext), dtype=dtype, device=device).expand(1, 2 * n_steps + 1)
    if callable(i_ext) and not isinstance(i_ext, (np.ndarray, torch.Tensor)):
        tm = t0 + dt * (torch.arange(n_steps + 1, dtype=torch.float64, device=device) + 0.5)
        vals = i_ext(tm)
        vals = vals if isinstance(vals, torch.Tensor) else torch.as_tensor(np.asarray(vals, dtype=float))
        arr = vals.to(dtype=dtype, device=device)
        arr = arr.reshape(1, -1) if arr.ndim <= 1 else arr
        arr = arr.expand(1, n_steps + 1) if arr.shape[-1] == 1 else arr
    else:
        arr = i_ext if isinstance(i_ext, torch.Tensor) else torch.as_tensor(np.asarray(i_ext, dtype=float))
        arr = arr.to(dtype=dtype, device=device)
        if arr.ndim == 0:
            return arr.reshape(1, 1).expand(1, 2 * n_steps + 1)
        if arr.ndim == 1:
            arr = arr.unsqueeze(0)
        if arr.shape[-1] != n_steps + 1:
            raise ConfigurationError(
                f"An array stimulus needs one value per step time (n_steps + 1 = {n_steps + 1}); got {arr.shape[-1]}. "
                "Resample it to dt, or pass a callable of t (ms)."
            )
    if B != 1 and arr.shape[0] not in (1, B):  # B == 1: theta and y0 broadcast to the stimulus batch
        raise ConfigurationError(f"Stimulus batch {arr.shape[0]} does not match B = {B}.")
    out = torch.stack([arr[:, :-1], arr[:, :-1]], -1).reshape(arr.shape[0], -1)
    return torch.cat([out, arr[:, -1:]], -1)


def simulate(
    model: NeuronModel,
    theta: Any = None,
    *,
    duration: float,
    dt: float = 0.01,
    i_ext: Any = None,
    y0: Any = None,
    preset: str | None = None,
    method: str = "rk4",
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "auto",
    record_every: int = 1,
    states: Sequence[str] | None = None,
    t0: float = 0.0,
    compile: bool | str = "auto",
    chunk_steps: int = 8,
    progress: bool = False,
    check_finite: bool = True,
) -> Simulation:
    """Integrate a batch of neurons with a fixed-step method.

    Parameters
    ----------
    model : NeuronModel
        The model whose ``derivatives`` are integrated.
    theta : mapping, array_like or torch.Tensor, optional
        Parameters: None (the preset's), a dict of overrides, a vector (P,) or a batch (B, P) in
        ``model.param_names`` order. A tensor requiring grad makes the output differentiable.
    duration : float
        Simulated time in ms (rounded to a whole number of steps).
    dt : float
        Step in ms.
    i_ext : float, array_like, tensor or callable, optional
        Injected current in pA: a constant; an array (N+1,) or (B, N+1) at the step times
        ``t0 + k·dt``; or a callable of a time tensor (ms) returning pA (e.g. a
        :class:`~neo_pinn.io.stimulus_specs.StimulusSpec`). Default: the preset's constant current.
    y0 : array_like, optional
        Initial state (S,) or (B, S); default the preset's.
    preset : str, optional
        Preset supplying defaults (the model's default preset when None).
    method : {"euler", "heun", "rk4"}
    dtype : torch.dtype
        ``torch.float32`` or ``torch.float64``.
    device : str or torch.device
        ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
    record_every : int
        Keep every k-th step (the initial state is always kept).
    states : sequence of str, optional
        Names of the states to record (default all).
    t0 : float
        Start time in ms.
    compile : bool or "auto"
        Fuse chunks of steps with ``torch.compile``; "auto" does so for large enough work and falls back
        to eager execution (with a warning) where compilation is unavailable.
    chunk_steps : int
        Steps per (compiled) chunk: rounded down to a multiple of ``record_every``, or, when
        ``record_every`` is larger, to the largest divisor of ``record_every`` not above it.
    progress : bool
        Show a tqdm progress bar.
    check_finite : bool
        Raise :class:`~neo_pinn.errors.NonFiniteDataError` if the result holds NaN/inf.

    Returns
    -------
    Simulation
        Times (R,) and states (B, R, S_rec) with R = N // record_every + 1.
    """
    if method not in METHODS:
        raise ConfigurationError(f"Unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    dt, duration = _positive_times(dt, duration)
    record_every = int(record_every)
    if record_every < 1:
        raise ConfigurationError("record_every must be a positive integer.")
    dev = resolve_device(device)
    n_steps = int(round(duration / dt))
    n_steps -= n_steps % record_every
    if n_steps < record_every:
        raise ConfigurationError(f"duration {duration} ms is shorter than one recorded step ({record_every} × {dt} ms).")

    th = theta_batch(model, theta, preset, dtype, dev)
    if y0 is None:
        y0 = model.initial_state(preset)
    y0t = as_batch(y0, dtype, dev, model.n_states, "y0")
    B = max(th.shape[0], y0t.shape[0])
    _check_memory(duration, dt, n_steps, record_every, B, model.n_states if states is None else len(states), dtype)
    i_half = stimulus_half_grid(i_ext, model, preset, n_steps, dt, t0, B, dtype, dev)
    B = max(B, i_half.shape[0])
    for name, tens in (("theta", th), ("y0", y0t), ("i_ext", i_half)):
        if tens.shape[0] not in (1, B):
            raise ConfigurationError(f"Batch sizes disagree: {name} has {tens.shape[0]} rows, others {B}.")

    # Structure of arrays: one contiguous (B,) tensor per state, one (B,) or (1,) per parameter.
    ys = tuple(y0t[:, k].expand(B).contiguous() for k in range(model.n_states))
    p = {n: th[:, k].contiguous() for k, n in enumerate(model.param_names)}
    i_half = i_half if i_half.shape[0] == B else i_half.expand(1, -1)
    if i_half.shape[0] == 1:
        i_half = i_half[0]  # (2N+1,) broadcasts against (B,) states after slicing one column
    rec_idx = tuple(model.state_index(s) for s in states) if states is not None else tuple(range(model.n_states))
    want_compile = (compile is True) or (compile == "auto" and B * n_steps >= _COMPILE_MIN_WORK)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_steps, unit="step", desc=f"simulate {model.name} B={B}", leave=False, disable=None)
    try:
        y = _integrate(model, method, ys, p, i_half, n_steps, dt, torch.tensor(t0, dtype=dtype, device=dev),
                       record_every, chunk_steps, rec_idx, want_compile, bar)
    finally:
        if bar is not None:
            bar.close()
    if check_finite and not bool(torch.isfinite(y).all()):
        raise NonFiniteDataError(
            f"The {model.name} simulation diverged (NaN/inf); reduce dt (now {dt} ms), use method='rk4' or "
            "check the parameters against the model's bounds."
        )
    t = t0 + dt * record_every * torch.arange(y.shape[1], dtype=torch.float64, device=dev)
    names = tuple(model.state_names[k] for k in rec_idx)
    return Simulation(t=t, y=y, state_names=names, model=model, dt=float(dt), method=method)


def _chunk_plan(record_every: int, chunk_steps: int) -> tuple[int, int | None, int]:
    """Steps K unrolled per (compiled) call, the recording interval inside a chunk, chunks between records.

    K must not grow with record_every: a chunk of record_every = 1000 unrolled steps takes torch.compile
    practically forever. So either K is a multiple of record_every and the chunk records inside
    (record_every <= chunk_steps), or K divides record_every, the chunk records nothing and the caller
    records after every record_every // K chunks.
    """
    cs = max(1, int(chunk_steps))
    if record_every <= cs:
        return (cs // record_every) * record_every, record_every, 1
    K = max(d for d in range(1, cs + 1) if record_every % d == 0)
    return K, None, record_every // K


def _integrate(model, method, ys, p, i_half, n_steps, dt, t0_t, record_every, chunk_steps, rec_idx, want_compile,
               bar) -> torch.Tensor:
    """Advance the states chunk by chunk and stack the recorded ones, (B, R, len(rec_idx))."""
    global _compile_failed
    K, rec_in, outer = _chunk_plan(record_every, chunk_steps)
    chunk, compiled = _get_chunk(model, method, K, rec_in, dt, rec_idx, want_compile)
    tail_chunk = _make_chunk(model, method, n_steps % K, rec_in, dt, rec_idx) if n_steps % K else None
    records = [torch.stack([ys[k] for k in rec_idx], -1).unsqueeze(1)]
    n_chunks = 0
    k0 = 0
    while k0 < n_steps:
        n = K if n_steps - k0 >= K else n_steps - k0
        fn = chunk if n == K else tail_chunk
        seg = i_half[..., 2 * k0: 2 * (k0 + n) + 1]  # stimulus on the half steps of steps k0..k0+n
        tk = t0_t + k0 * dt
        try:
            ys, outs = fn(tk, ys, p, seg)
        except Exception as exc:  # noqa: BLE001 - torch.compile needs a C++ compiler / triton; fall back
            if not (compiled and fn is chunk):
                raise
            _compile_failed = True
            warnings.warn(f"torch.compile unavailable ({type(exc).__name__}: {str(exc)[:200]}); "
                          "simulating without compilation (slower).", RuntimeWarning, stacklevel=3)
            chunk, compiled = _make_chunk(model, method, K, rec_in, dt, rec_idx), False
            continue
        if outs is not None:
            records.append(outs)
        n_chunks += 1
        if rec_in is None and n_chunks % outer == 0:
            records.append(torch.stack([ys[k] for k in rec_idx], -1).unsqueeze(1))
        k0 += n
        if bar is not None:
            bar.update(n)
    return torch.cat(records, 1)

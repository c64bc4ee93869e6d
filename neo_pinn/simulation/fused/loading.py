"""Loading the generated Triton module: the source cache, Triton's presence, launch sizes, the probe.

The generated module is written to a cache file (Triton compiles from inspectable source) and imported
from there, once per process and per source. :func:`fused_available` says whether the fused engine
can run on a device, and :func:`evaluate_generated_derivatives` runs the generated right-hand side
alone, so tests can compare it with the model.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import re
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...models.base import NeuronModel
from ..simulator import resolve_device
from .codegen import generate_kernel_source
from .engine_io import cdiv
from .errors import FusedUnavailableError

__all__ = ["kernel_path", "load_kernel_module", "fused_available", "evaluate_generated_derivatives",
           "import_triton", "triton_interpreting", "default_block_size", "quiet_numpy"]

_modules: dict[str, Any] = {}
_load_lock = threading.Lock()


def _cache_dir() -> Path:
    """Folder for generated kernel sources: $NEO_PINN_CACHE_DIR, else the user's cache, else a temp dir."""
    env = os.environ.get("NEO_PINN_CACHE_DIR")
    if env:
        base = Path(env)
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "neo_pinn"
    d = base / "fused"
    try:
        d.mkdir(parents=True, exist_ok=True)
        if os.access(d, os.W_OK):
            return d
    except OSError:
        pass
    d = Path(tempfile.gettempdir()) / f"neo_pinn_fused_{os.getuid() if hasattr(os, 'getuid') else 'user'}"
    d.mkdir(parents=True, exist_ok=True)
    return d


def kernel_path(model: NeuronModel, method: str = "rk4", source: str | None = None) -> Path:
    """Where the generated source for (model, method) is (or will be) cached; the name holds its hash."""
    src = generate_kernel_source(model, method) if source is None else source
    digest = hashlib.sha256(src.encode()).hexdigest()[:16]
    safe = re.sub(r"[^A-Za-z0-9_]", "_", model.name or type(model).__name__)
    return _cache_dir() / f"{safe}_{method}_{digest}.py"


def import_triton():
    """The ``triton`` module; :class:`~.errors.FusedUnavailableError` (saying how to install it) when absent."""
    try:
        import triton  # noqa: F401

        return triton
    except Exception as exc:  # noqa: BLE001 - ImportError or a broken install: both mean "not available"
        raise FusedUnavailableError(
            f"engine='fused' needs Triton ({type(exc).__name__}: {exc}); install it with "
            "`pip install neo-pinn[fused]` (CUDA builds of torch ship it), or use engine='torch'."
        ) from exc


def triton_interpreting() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (TRITON_INTERPRET=1, read when triton is imported)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def load_kernel_module(model: NeuronModel, method: str = "rk4"):
    """Generate (if needed), write and import the Triton module for (model, method); cached per process."""
    import_triton()
    src = generate_kernel_source(model, method)
    digest = hashlib.sha256(src.encode()).hexdigest()[:16]
    with _load_lock:
        if digest in _modules:
            return _modules[digest]
        path = kernel_path(model, method, src)
        if not path.exists() or path.read_text() != src:
            tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_text(src)
            os.replace(tmp, path)  # atomic: concurrent processes never import a half-written file
        modname = f"neo_pinn_fused_{path.stem}"
        spec = importlib.util.spec_from_file_location(modname, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[modname] = module  # triton resolves globals and source through the module
        spec.loader.exec_module(module)
        _modules[digest] = module
        return module


def fused_available(device: str | torch.device | None = "auto") -> bool:
    """Whether :func:`~neo_pinn.simulation.fused.online_features_fused` can run on ``device``.

    It can where Triton is importable and the device is CUDA, or for CPU tensors under Triton's
    interpreter (TRITON_INTERPRET=1).
    """
    dev = resolve_device(device) if device in (None, "auto") else torch.device(device)
    try:
        import_triton()
    except FusedUnavailableError:
        return False
    return dev.type == "cuda" or (dev.type == "cpu" and triton_interpreting())


def default_block_size(B: int, device: torch.device) -> int:
    """Neurons per Triton program (a power of two) for a population of ``B`` neurons on ``device``.

    On CUDA, 128 lanes (4 warps, one neuron per thread) once there are at least 4 programs per SM, else
    64 so that every SM has work; under the interpreter one program per up to 128 neurons.
    """
    if device.type != "cuda":  # interpreter: one program per ≤128 neurons, numpy-vectorised
        return max(16, min(128, 1 << (max(B, 1) - 1).bit_length()))
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    return 128 if B >= 128 * 4 * sms else 64


def evaluate_generated_derivatives(model: NeuronModel, y, theta, i_ext, t: float = 0.0) -> torch.Tensor:
    """Evaluate the generated right-hand side (the statements the kernels inline) once per row.

    A check of the code generator: tests compare it with ``model.rhs``.

    Parameters
    ----------
    model : NeuronModel
    y : array_like
        States (B, S), canonical units.
    theta : array_like
        Parameters (B, P).
    i_ext : array_like
        Injected current (B,) in pA.
    t : float
        Time in ms.

    Returns
    -------
    torch.Tensor
        dy/dt (B, S) in float32, per ms, on the device of ``y`` (CUDA, or CPU under TRITON_INTERPRET=1).
    """
    mod = load_kernel_module(model, "rk4")
    y = torch.as_tensor(y, dtype=torch.float32).contiguous()
    dev = y.device
    if dev.type != "cuda" and not triton_interpreting():
        raise FusedUnavailableError("Generated kernels run on CUDA tensors, or on CPU tensors only under "
                                    "TRITON_INTERPRET=1 (set before triton is imported).")
    theta = torch.as_tensor(theta, dtype=torch.float32, device=dev).contiguous()
    i_ext = torch.as_tensor(i_ext, dtype=torch.float32, device=dev).reshape(-1).contiguous()
    B = y.shape[0]
    out = torch.empty((model.n_states, B), dtype=torch.float32, device=dev)
    block = default_block_size(B, dev)
    with quiet_numpy():
        mod.derivative_probe_kernel[(cdiv(B, block),)](y, theta, i_ext, out, B, float(t), BLOCK=block)
    return out.T.contiguous()


def quiet_numpy():
    """A context that silences numpy's warnings under the interpreter, which evaluates masked branches
    with numpy (harmless overflows); a no-op when kernels are compiled."""
    return np.errstate(all="ignore") if triton_interpreting() else contextlib.nullcontext()


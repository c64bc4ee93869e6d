"""Small parsers and checks of the ``neo-pinn`` flags: name=value lists, bounds, windows, sweeps, backend options,
seeds, devices and ``fit --forecast``. Light on purpose (no torch, numpy or Neo at import): building the parser and
``--help`` stay instant; each check raises a one-line :class:`~neo_pinn.errors.ConfigurationError` naming the flag.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from typing import Any, Mapping, Sequence

from .errors import ConfigurationError, NeoPinnError

__all__ = ["kv_list", "float_values", "bounds", "window", "sweep_list", "sweeps", "validate_on", "backend_options",
           "positive", "check_seed", "check_device", "forecast_option", "DEVICE_PATTERN", "MAX_SEED"]

DEVICE_PATTERN = re.compile(r"(auto|cpu|cuda(:\d+)?)")  # what --device accepts (checked before torch is imported)
MAX_SEED = 2**32 - 1  # largest --seed (numpy's legacy seeding takes 32 bits)


def kv_list(items: Sequence[str] | None, what: str) -> dict[str, str]:
    """``["a=1,b=2", "c=x"]`` → ``{"a": "1", "b": "2", "c": "x"}``; ``what`` names the flag in errors."""
    out: dict[str, str] = {}
    for item in items or []:
        for part in filter(None, (p.strip() for p in item.split(","))):
            if "=" not in part:
                raise ConfigurationError(f"{what} takes name=value pairs; got {part!r}.")
            k, v = (x.strip() for x in part.split("=", 1))
            out[k] = v
    return out


def float_values(d: dict[str, str], what: str) -> dict[str, float]:
    """The values of a :func:`kv_list` as numbers (canonical units) or parsed quantities (``"100pF"``)."""
    from .units import parse_quantity

    out = {}
    for k, v in d.items():
        try:
            out[k] = float(v)
        except ValueError:
            try:
                out[k] = parse_quantity(v)
            except NeoPinnError as exc:
                raise ConfigurationError(f"{what} {k}={v!r} is not a number.") from exc
    return out


def bounds(items: Sequence[str] | None) -> dict[str, tuple[float, float]]:
    """``--bounds gCa=1:16`` → ``{"gCa": (1.0, 16.0)}`` (canonical units)."""
    out = {}
    for k, v in kv_list(items, "--bounds").items():
        try:
            lo, hi = (float(x) for x in v.split(":"))
        except ValueError:
            raise ConfigurationError(f"--bounds {k}={v!r}: write low:high, e.g. gCa=1:16.") from None
        out[k] = (lo, hi)
    return out


def window(text: str | None) -> tuple[float, float] | None:
    """``--window T0:T1`` → (T0, T1) in ms from each sweep's start; None without the flag."""
    from .units import parse_window

    return parse_window(text)


def sweep_list(text: str | None, flag: str) -> tuple[int, ...]:
    """``"3,5"`` → (3, 5)."""
    if not text:
        return ()
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError as exc:
        raise ConfigurationError(f"{flag} takes sweep numbers separated by commas, e.g. 3,5; got {text!r}.") from exc


def sweeps(text: str | None):
    """``--sweep``: "all", one sweep number or a list of them."""
    if text is None or text == "all":
        return "all"
    vals = sweep_list(text, "--sweep")
    if not vals:
        raise ConfigurationError(f"--sweep {text!r} names no sweep; give 'all', a sweep number or a list, e.g. 3,5.")
    return vals[0] if len(vals) == 1 else list(vals)


def validate_on(text: str | None):
    """``--validate-on``: sweep numbers, a fraction (0.5) or ``alternate``."""
    if not text:
        return None
    if text == "alternate":
        return text
    if "," not in text and "." in text:
        with contextlib.suppress(ValueError):
            return float(text)
    return sweep_list(text, "--validate-on")


def backend_options(items: Sequence[str] | None) -> dict[str, Any]:
    """Backend options from ``--option K=V`` items; V is JSON where it parses, else a string.

    A whole item whose value is JSON is one option, so a dict or list value may contain commas
    (``refine_options={"max_iter":8,"n_starts":2}``); otherwise an item may hold several comma-separated
    pairs (``pop_size=32,n_gen=10``).
    """
    def json_or_text(v: str) -> Any:
        try:
            return json.loads(v)
        except json.JSONDecodeError:
            return v

    out: dict[str, Any] = {}
    for item in items or []:
        k, sep, v = item.partition("=")
        whole = json_or_text(v) if sep and k.strip() and "," in v else v
        if whole is not v:                      # the whole value parsed as JSON (a dict or list with commas)
            out[k.strip()] = whole
            continue
        out.update({k: json_or_text(v) for k, v in kv_list([item], "--option").items()})
    return out


def positive(value: float, flag: str, unit: str, example: str) -> float:
    """``value`` when it is a positive finite number, else a ConfigurationError naming ``flag``."""
    if not (math.isfinite(value) and value > 0):
        raise ConfigurationError(f"{flag} {value:g}: give a positive, finite number of {unit}, e.g. {flag} {example}.")
    return value


def check_seed(seed: int) -> int:
    """``--seed`` when it is a whole number from 0 to :data:`MAX_SEED`, else a ConfigurationError."""
    if not 0 <= seed <= MAX_SEED:
        raise ConfigurationError(f"--seed {seed}: give a whole number from 0 to {MAX_SEED}.")
    return seed


def check_device(text: str, available: bool = False) -> str:
    """``--device`` if it is auto, cpu, cuda or cuda:N (with ``available``: a GPU this machine has), else an error."""
    if not DEVICE_PATTERN.fullmatch(text):
        raise ConfigurationError(f"--device {text!r}: give auto, cpu, cuda or cuda:N (N: a GPU index); neo_pinn "
                                 "runs on CPUs and NVIDIA GPUs.")
    if available and text.startswith("cuda"):
        import torch
        from .simulation import resolve_device

        dev = resolve_device(text)  # ConfigurationError without CUDA
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise ConfigurationError(f"--device {text}: this machine has {n} CUDA device(s), numbered from 0.")
    return text


def forecast_option(ms: float | None, backend: str, default_config: Mapping[str, Any]) -> dict[str, float]:
    """The backend option ``fit --forecast MS`` sets: ``{"forecast_ms": MS}`` ({} without the flag).

    Parameters
    ----------
    ms : float or None
        How long to forecast past the fitted window, ms (positive, finite); None when the flag was not given.
    backend : str
        The backend's name (``--backend``).
    default_config : mapping
        The backend's options and defaults (``Estimator.default_config``); it must have ``forecast_ms``.

    Raises
    ------
    ConfigurationError
        ``ms`` is not a positive finite number, or the backend has no ``forecast_ms`` option (one line, before
        any work).
    """
    if ms is None:
        return {}
    positive(ms, "--forecast", "ms", "50")
    if "forecast_ms" not in default_config:
        raise ConfigurationError(f"backend {backend} does not forecast; --forecast needs a backend with a forecast_ms "
                                 "option (e.g. --backend pinode).")
    return {"forecast_ms": float(ms)}

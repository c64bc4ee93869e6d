"""The networks of the amortized estimator, each ending in a heteroscedastic Gaussian head.

A network maps a batch of normalised traces (N, T) to the mean and the log-variance of every target in
its scaled coordinate (each prior's support mapped onto [0, 1]), (N, P) each. It is trained with the
Gaussian negative log-likelihood (:func:`gaussian_nll`), so the predicted spread is an uncertainty.

Only the architectures of :data:`NETWORKS` exist: an estimator's manifest names one of them with its
options (plain numbers), and loading rebuilds it from that name — no code is ever read from a file.

=================  ==========================================================================================
``paper_dense``    Rudi, Bessac & Lenzi (2022) dense network: T → 32 → 32 (SiLU), the head.
``paper_cnn``      their CNN: Conv1D 8/16/32 channels, kernel 3, stride 2, no padding, average pooling (2)
                   between the convolutions, SiLU, dense 32 → 32, the head (33,874 weights with their
                   2 sigmoid outputs; here the head has 2 outputs per target).
``rescnn``         a wider residual CNN: the trace and its first difference (``diff``) as two channels, each
                   batch-normalised, a strided stem, residual blocks (two convolutions, batch norm,
                   SiLU, strided 1×1 shortcut) halving the length, then the time-averaged and
                   time-max features and a coarse time profile through a dense layer, the head.
=================  ==========================================================================================
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from torch import nn

from neo_pinn.errors import ConfigurationError

__all__ = ["NETWORKS", "PaperDense", "PaperCNN", "ResCNN", "build_network", "gaussian_nll", "GaussianHead",
           "LOG_VAR_RANGE"]

#: the predicted log-variance (scaled coordinate) is kept in this range: std from 1e-4 to 3 prior widths
LOG_VAR_RANGE = (2 * math.log(1e-4), 2 * math.log(3.0))


class GaussianHead(nn.Module):
    """A linear layer to a mean and a bounded log-variance per target."""

    def __init__(self, n_in: int, n_targets: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, 2 * n_targets)
        self.n_targets = n_targets
        with torch.no_grad():  # start at the prior: mean 0.5, std ≈ 0.3 of the support
            self.linear.bias[:n_targets].fill_(0.5)
            self.linear.bias[n_targets:].fill_(2 * math.log(0.3))

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.linear(h)
        mean, raw = out[:, : self.n_targets], out[:, self.n_targets:]
        lo, hi = LOG_VAR_RANGE  # a smooth clamp, the identity well inside the range
        log_var = hi - nn.functional.softplus(hi - lo - nn.functional.softplus(raw - lo))
        return mean, log_var


def gaussian_nll(mean: torch.Tensor, log_var: torch.Tensor, target: torch.Tensor, beta: float = 0.0) -> torch.Tensor:
    """Gaussian negative log-likelihood per target, averaged (constant dropped).

    ``beta`` > 0 weights each term by the detached variance to the power ``beta`` (β-NLL, Seitzer et al. 2022),
    which keeps hard samples from being ignored through a large variance; 0 is the plain NLL.
    """
    nll = 0.5 * (log_var + (target - mean) ** 2 * torch.exp(-log_var))
    if beta:
        nll = nll * torch.exp(beta * log_var).detach()
    return nll.mean()


def _conv_length(n: int, kernel: int, stride: int, padding: int = 0) -> int:
    return (n + 2 * padding - kernel) // stride + 1


class PaperDense(nn.Module):
    """The dense network of Rudi, Bessac & Lenzi (2022): the whole trace through dense SiLU layers."""

    def __init__(self, n_samples: int, n_targets: int, hidden: tuple[int, ...] = (32, 32)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        n = n_samples
        for width in hidden:
            layers += [nn.Linear(n, int(width)), nn.SiLU()]
            n = int(width)
        self.body = nn.Sequential(*layers)
        self.head = GaussianHead(n, n_targets)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.body(x))


class PaperCNN(nn.Module):
    """The CNN of Rudi, Bessac & Lenzi (2022) (see the module table), with the Gaussian head."""

    def __init__(self, n_samples: int, n_targets: int, channels: tuple[int, ...] = (8, 16, 32),
                 hidden: tuple[int, ...] = (32, 32), kernel: int = 3, stride: int = 2, pool: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in, n = 1, n_samples
        for i, c in enumerate(channels):
            if i > 0:
                layers.append(nn.AvgPool1d(pool, pool))
                n = _conv_length(n, pool, pool)
            layers += [nn.Conv1d(c_in, int(c), kernel, stride), nn.SiLU()]
            n = _conv_length(n, kernel, stride)
            c_in = int(c)
        if n < 1:
            raise ConfigurationError(f"paper_cnn: {n_samples} samples are too few for {len(channels)} strided "
                                     "convolutions; use fewer channels or the paper_dense network.")
        dense: list[nn.Module] = [nn.Flatten()]
        width = n * c_in
        for h in hidden:
            dense += [nn.Linear(width, int(h)), nn.SiLU()]
            width = int(h)
        self.features = nn.Sequential(*layers)
        self.dense = nn.Sequential(*dense)
        self.head = GaussianHead(width, n_targets)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.dense(self.features(x.unsqueeze(1))))


class _ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int) -> None:
        super().__init__()
        pad = kernel // 2
        self.conv1 = nn.Conv1d(c_in, c_out, kernel, stride, pad, bias=False)
        self.bn1 = nn.BatchNorm1d(c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, kernel, 1, pad, bias=False)
        self.bn2 = nn.BatchNorm1d(c_out)
        self.act = nn.SiLU()
        self.short = (nn.Identity() if (c_in == c_out and stride == 1)
                      else nn.Sequential(nn.Conv1d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm1d(c_out)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.bn1(self.conv1(x)))
        return self.act(self.bn2(self.conv2(h)) + self.short(x))


class ResCNN(nn.Module):
    """A residual CNN (see the module table); ``channels`` gives one strided block per entry."""

    def __init__(self, n_samples: int, n_targets: int, stem: int = 16, channels: tuple[int, ...] = (24, 32, 48, 64),
                 kernel: int = 5, profile: int = 8, hidden: int = 64, diff: int = 1) -> None:
        super().__init__()
        self.diff = bool(diff)
        c0 = 2 if self.diff else 1
        self.stem = nn.Sequential(nn.BatchNorm1d(c0), nn.Conv1d(c0, int(stem), 7, 2, 3, bias=False),
                                  nn.BatchNorm1d(int(stem)), nn.SiLU())
        blocks, c_in = [], int(stem)
        for c in channels:
            blocks.append(_ResBlock(c_in, int(c), int(kernel), 2))
            c_in = int(c)
        self.blocks = nn.Sequential(*blocks)
        self.profile = nn.AdaptiveAvgPool1d(int(profile))  # a coarse time course: when things happen matters
        width = 2 * c_in + int(profile) * c_in
        self.dense = nn.Sequential(nn.Linear(width, int(hidden)), nn.SiLU())
        self.head = GaussianHead(int(hidden), n_targets)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.unsqueeze(1)
        if self.diff:  # the first difference as a second channel: the noise lives at the sampling scale
            x = torch.cat([x, nn.functional.pad(x[..., 1:] - x[..., :-1], (1, 0))], 1)
        h = self.blocks(self.stem(x))
        feats = torch.cat([h.mean(-1), h.amax(-1), self.profile(h).flatten(1)], 1)
        return self.head(self.dense(feats))


#: architecture name → class (the only networks an estimator file may name)
NETWORKS: dict[str, type[nn.Module]] = {"paper_dense": PaperDense, "paper_cnn": PaperCNN, "rescnn": ResCNN}


def _json_option(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_json_option(v) for v in value]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"Network options are numbers or lists of numbers; got {value!r}.")
    return value


def build_network(arch: str, n_samples: int, n_targets: int, options: Mapping[str, Any] | None = None) -> nn.Module:
    """The network ``arch`` of :data:`NETWORKS` for traces of ``n_samples`` and ``n_targets`` targets.

    Raises
    ------
    ConfigurationError
        An unknown architecture or option (the message lists the valid ones).
    """
    cls = NETWORKS.get(arch)
    if cls is None:
        raise ConfigurationError(f"Unknown network {arch!r}; choose one of {', '.join(NETWORKS)}.")
    import inspect

    allowed = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "n_samples", "n_targets")]
    options = dict(options or {})
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigurationError(f"Network {arch!r} has no option(s) {', '.join(unknown)}; its options: "
                                 f"{', '.join(allowed)}.")
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in
              ((k, _json_option(v)) for k, v in options.items())}
    try:
        return cls(int(n_samples), int(n_targets), **kwargs)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ConfigurationError(f"Network {arch!r} cannot be built with {options}: {exc}") from None

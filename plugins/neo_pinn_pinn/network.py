"""An ensemble of small time → state networks evaluated as one batch, with their time derivatives.

Every group ``g`` (one ensemble member × one time segment) owns its own weights; all groups run through
the same batched matrix products (``torch.baddbmm``), so an ensemble of independent fits, each cut into
segments, costs one forward pass. The time derivative of every output is propagated alongside the value
(forward-mode, by hand: ``dz = dx @ W``, ``dh = tanh'(z) dz``), which is cheaper than autograd's
``create_graph`` double backward and exact.

Techniques, each switchable (for ablations):

* **Fourier features** of the time: ``sin/cos(2π f (t − c_g))`` for a fixed set of frequencies taken
  from the voltage's spectrum, plus a trainable set (log-frequencies per ensemble member) meant for the
  hidden, slower states; the segment-local time ``τ ∈ [−1, 1]`` is always an input.
* **Random weight factorization** (Wang et al. 2023): ``W = V · diag(exp(s))`` with ``s ~ N(μ, σ)`` and
  ``V`` rescaled so that ``W`` starts Glorot-distributed; the network learns a per-neuron scale.
"""

from __future__ import annotations

import math

import torch

__all__ = ["EnsembleNet"]


class EnsembleNet(torch.nn.Module):
    """``n_groups`` independent MLPs ``(τ, Fourier features) → û`` (normalised states) and ``dû/dt``.

    Parameters
    ----------
    n_members, n_segments : int
        Groups are ordered member-major: ``g = member · n_segments + segment``.
    n_out : int
        Number of outputs (states).
    fixed_freqs : torch.Tensor
        (F1,) frequencies in 1/ms (empty: no fixed Fourier features).
    trainable_freqs : torch.Tensor
        (F2,) initial trainable frequencies in 1/ms, copied to every member (empty: none).
    width, depth : int
        Hidden-layer width and number of hidden layers.
    rwf : bool
        Random weight factorization of every dense layer.
    rwf_mean, rwf_std : float
        Mean and standard deviation of the log-scale factors ``s`` at initialisation.
    generator : torch.Generator
        Seeded generator for the initial weights.
    """

    def __init__(self, n_members: int, n_segments: int, n_out: int, fixed_freqs: torch.Tensor,
                 trainable_freqs: torch.Tensor, width: int, depth: int, rwf: bool, rwf_mean: float,
                 rwf_std: float, generator: torch.Generator, dtype: torch.dtype, device: torch.device) -> None:
        super().__init__()
        kw = dict(dtype=dtype, device=device)
        self.n_members, self.n_segments = n_members, n_segments
        g = n_members * n_segments
        self.register_buffer("fixed_freqs", fixed_freqs.to(**kw))
        f2 = trainable_freqs.to(**kw).log().expand(n_members, -1).clone()
        self.log_freqs = torch.nn.Parameter(f2)  # (E, F2)
        self.rwf = rwf
        d_in = 1 + 2 * fixed_freqs.numel() + 2 * trainable_freqs.numel()
        dims = [d_in] + [width] * depth + [n_out]
        self.V = torch.nn.ParameterList()
        self.s = torch.nn.ParameterList()
        self.b = torch.nn.ParameterList()
        for k, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            std = math.sqrt(2.0 / (a + b))
            w = torch.randn(g, a, b, generator=generator, **kw) * std
            if rwf:
                s = rwf_mean + rwf_std * torch.randn(g, 1, b, generator=generator, **kw)
                self.s.append(torch.nn.Parameter(s))
                w = w / torch.exp(s)
            self.V.append(torch.nn.Parameter(w))
            self.b.append(torch.nn.Parameter(torch.zeros(g, 1, b, **kw)))

    def weight(self, k: int) -> torch.Tensor:
        """Effective weight (G, in, out) of layer ``k``."""
        return self.V[k] * torch.exp(self.s[k]) if self.rwf else self.V[k]

    def embed(self, t_rel: torch.Tensor, tau: torch.Tensor, dtau_dt: torch.Tensor):
        """Inputs (G, N, D) and their time derivatives.

        Parameters
        ----------
        t_rel : torch.Tensor
            (G, N) time relative to each group's segment centre, ms.
        tau : torch.Tensor
            (G, N) segment-local time in [−1, 1].
        dtau_dt : torch.Tensor
            (G, 1) dτ/dt, 1/ms.
        """
        feats = [tau.unsqueeze(-1)]
        dfeats = [dtau_dt.unsqueeze(-1).expand_as(feats[0])]
        freq_sets = []
        if self.fixed_freqs.numel():
            freq_sets.append(self.fixed_freqs.expand(t_rel.shape[0], -1))
        if self.log_freqs.shape[-1]:
            freq_sets.append(torch.exp(self.log_freqs).repeat_interleave(self.n_segments, 0))
        for f in freq_sets:
            w = 2.0 * math.pi * f.unsqueeze(1)  # (G, 1, F)
            ph = t_rel.unsqueeze(-1) * w
            sn, cs = torch.sin(ph), torch.cos(ph)
            feats += [sn, cs]
            dfeats += [w * cs, -w * sn]
        return torch.cat(feats, -1), torch.cat(dfeats, -1)

    def forward(self, t_rel: torch.Tensor, tau: torch.Tensor, dtau_dt: torch.Tensor):
        """Normalised outputs û (G, N, n_out) and dû/dt (1/ms)."""
        x, dx = self.embed(t_rel, tau, dtau_dt)
        n_layers = len(self.V)
        for k in range(n_layers):
            w = self.weight(k)
            z = torch.baddbmm(self.b[k], x, w)
            dz = torch.bmm(dx, w)
            if k < n_layers - 1:
                x = torch.tanh(z)
                dx = (1.0 - x * x) * dz
            else:
                x, dx = z, dz
        return x, dx

    def network_parameters(self) -> list[torch.nn.Parameter]:
        """Weights, factors and biases (not the trainable frequencies), for gradient norms."""
        return list(self.V) + list(self.s) + list(self.b)

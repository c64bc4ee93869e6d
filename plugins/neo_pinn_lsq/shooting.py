"""Multiple shooting: segment layout, residuals, normal equations and their block solver.

Each sweep is cut into segments of ``L`` samples. Segment s starts from its own node state ``x_s`` (a
variable) and is integrated for ``L`` sample intervals; its voltage is compared with the recording at
the (sub-sampled) samples it covers, and its end state with the next node (a *continuity defect*,
weighted by ``w``). All segments of all starts run as one batch, so the sequential depth of the
computation is one segment, not the whole recording.

Per start the Gauss–Newton normal matrix of the homotopy stages is block tridiagonal in the node
variables with a dense border for the shared parameters; it is solved by block-tridiagonal elimination and
a Schur complement (:func:`assemble`, :func:`solve`). The exact phase eliminates the linearised continuity
conditions instead (condensing, :func:`condensed`), leaving a small system in the parameters and initial
states whose Jacobian, once the gaps are closed, is the single-shooting one used for the covariance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from neo_pinn import simulation
from neo_pinn.errors import ConfigurationError
from neo_pinn.models.base import NeuronModel
from neo_pinn.trace import Trace
from neo_pinn.transforms import LogLogit

from .forward import integrate_segments, integrate_segments_reverse
from .transforms import StateTransform

__all__ = [
    "Condensed",
    "Layout",
    "Normal",
    "Raw",
    "assemble",
    "condensed",
    "condensed_apply",
    "condensed_solve",
    "evaluate",
    "make_layout",
    "solve",
]


def __getattr__(name: str):
    if name == "choose_dt":  # deprecated alias of the core's
        import warnings

        warnings.warn("neo_pinn_lsq.shooting.choose_dt is deprecated; use neo_pinn.simulation.choose_dt.",
                      DeprecationWarning, stacklevel=2)
        return simulation.choose_dt
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class Layout:
    """How the sweeps are cut into segments (all arrays have one row per segment, M in all)."""

    dt: float
    steps_per_sample: int
    subsample: int
    rows: int                 # recorded rows per segment (the node is row 0)
    n_steps: int              # integration steps per segment
    sweep: np.ndarray         # (M,) sweep index of each segment
    first: np.ndarray         # (M,) True for the first segment of a sweep
    has_next: np.ndarray      # (M,) True where a continuity defect links s to s+1
    sample0: np.ndarray       # (M,) index of the node's sample in its sweep
    valid: np.ndarray         # (M, rows) rows inside the recording
    v_obs: np.ndarray         # (M, rows) recorded voltage at the rows (0 where invalid)
    i_half: np.ndarray        # (M, 2·n_steps + 1) stimulus on the half-step grid (pA)

    @property
    def n_segments(self) -> int:
        return int(self.sweep.size)

    @property
    def n_rows(self) -> int:
        return int(self.valid.sum())


def make_layout(traces: Sequence[Trace], dt: float | None, max_dt: float, segment_ms: float | None,
                subsample: int) -> Layout:
    """Cut the sweeps into multiple-shooting segments (one per sweep when ``segment_ms`` is None)."""
    sample_dt = traces[0].dt
    for tr in traces[1:]:
        if abs(tr.dt - sample_dt) > 1e-6 * sample_dt:
            raise ConfigurationError(f"Sweeps are sampled at different intervals ({sample_dt:.6g} and {tr.dt:.6g} ms); "
                                     "resample them to one rate before fitting them jointly.")
    for tr in traces:
        if np.ptp(np.diff(tr.t)) > 1e-3 * sample_dt:
            raise ConfigurationError(f"Sweep {tr.sweep} is not uniformly sampled; resample it first.")
    dt, r = simulation.choose_dt(sample_dt, dt, max_dt)
    k = int(subsample)
    n_max = max(tr.t.size for tr in traces)
    if segment_ms is None or segment_ms <= 0:
        L = n_max
    else:
        L = max(1, int(round(float(segment_ms) / sample_dt)))
    L = k * max(1, math.ceil(L / k))
    rows = L // k
    n_steps = L * r
    sweep, first, has_next, sample0, valid, vobs, ihalf = [], [], [], [], [], [], []
    for q, tr in enumerate(traces):
        T = tr.t.size
        n_seg = max(1, math.ceil(T / L))
        for s in range(n_seg):
            s0 = s * L
            idx = s0 + k * np.arange(rows)
            ok = idx < T
            sweep.append(q)
            first.append(s == 0)
            has_next.append(s < n_seg - 1)
            sample0.append(s0)
            valid.append(ok)
            vobs.append(np.where(ok, tr.v[np.minimum(idx, T - 1)], 0.0))
            th = tr.t[0] + (s0 * r + 0.5 * np.arange(2 * n_steps + 1)) * dt
            ihalf.append(tr.held_current(th))
    return Layout(dt=dt, steps_per_sample=r, subsample=k, rows=rows, n_steps=n_steps, sweep=np.array(sweep),
                  first=np.array(first), has_next=np.array(has_next), sample0=np.array(sample0),
                  valid=np.array(valid), v_obs=np.array(vobs), i_half=np.array(ihalf))


@dataclass
class Raw:
    """Segment outputs of n starts: voltage rows, end states and their Jacobians.

    The last axis of ``dv``/``dend`` holds the derivatives with respect to the node state x (S, in state
    units, not the node coordinates u) and then the free-parameter coordinates z (F).
    """

    v: torch.Tensor      # (n, M, R)
    dv: torch.Tensor     # (n, M, R, D)
    end: torch.Tensor    # (n, M, S)
    dend: torch.Tensor   # (n, M, S, D)

    def index(self, i: torch.Tensor) -> Raw:
        return Raw(self.v[i], self.dv[i], self.end[i], self.dend[i])

    def put(self, mask: torch.Tensor, other: Raw) -> None:
        for name in ("v", "dv", "end", "dend"):
            getattr(self, name)[mask] = getattr(other, name)


def evaluate(model: NeuronModel, method: str, lay: Layout, theta_fixed: torch.Tensor, free_index: Sequence[int],
             ptf: LogLogit, stf: StateTransform, z: torch.Tensor, u: torch.Tensor,
             i_half: torch.Tensor, chunk: int, jacobian: str = "forward") -> Raw:
    """Integrate every segment of every start in ``z`` (n, F), ``u`` (n, M, S) with their Jacobians.

    ``chunk`` caps the segments integrated together (memory and cache locality); the chunks run one after
    the other. ``jacobian`` is ``"forward"`` or ``"reverse"`` (autograd mode, see :mod:`.forward`).
    """
    n, M, S = u.shape
    F = z.shape[1]
    D = S + F
    theta_free, dth = ptf.from_z(z)                       # (n, F)
    theta = theta_fixed.expand(n, -1).clone()
    theta[:, list(free_index)] = theta_free
    x, _ = stf.from_u(u)                                  # (n, M, S)
    eye_s = torch.eye(S, dtype=u.dtype, device=u.device)
    eye_f = torch.eye(F, dtype=u.dtype, device=u.device)
    nm = n * M
    x0 = x.reshape(nm, S)
    th = theta.repeat_interleave(M, 0)                    # (nm, P)
    dthu = dth.repeat_interleave(M, 0)                    # (nm, F)
    vs, dvs, ends, dends = [], [], [], []
    for a in range(0, nm, chunk):
        b = min(nm, a + chunk)
        B = b - a
        seg = torch.arange(a, b, device=u.device) % M
        rec = lay.steps_per_sample * lay.subsample
        if jacobian == "reverse":
            v, dv, end, dend = integrate_segments_reverse(model, method, lay.dt, lay.n_steps, rec, x0[a:b],
                                                          th[a:b], dthu[a:b], free_index, i_half[:, seg])
        else:
            dx0 = torch.zeros(D, B, S, dtype=u.dtype, device=u.device)
            dx0[:S] = eye_s[:, None, :]
            dtheta = torch.zeros(D, B, F, dtype=u.dtype, device=u.device)
            dtheta[S:] = eye_f[:, None, :] * dthu[a:b][None]
            v, dv, end, dend = integrate_segments(model, method, lay.dt, lay.n_steps, rec, x0[a:b], dx0, th[a:b],
                                                  dtheta, free_index, i_half[:, seg])
        vs.append(v)
        dvs.append(dv)
        ends.append(end)
        dends.append(dend)
    v = torch.cat(vs, 0).reshape(n, M, -1)
    dv = torch.cat(dvs, 1).reshape(D, n, M, -1).permute(1, 2, 3, 0)
    end = torch.cat(ends, 0).reshape(n, M, S)
    dend = torch.cat(dends, 1).reshape(D, n, M, S).permute(1, 2, 3, 0)
    return Raw(v, dv, end, dend)


@dataclass
class Normal:
    """Residual norms and the blocks of the Gauss–Newton normal equations of n starts."""

    cost: torch.Tensor   # (n,)  ½(‖r‖² + ‖d‖²)
    data: torch.Tensor   # (n,)  ½‖r‖² (data part only)
    A: torch.Tensor      # (n, M, S, S) node diagonal blocks
    B: torch.Tensor      # (n, M-1, S, S) node coupling s ↔ s+1
    C: torch.Tensor      # (n, M, S, F) node ↔ parameter blocks
    E: torch.Tensor      # (n, F, F) parameter block
    gx: torch.Tensor     # (n, M, S)
    gz: torch.Tensor     # (n, F)
    max_defect: torch.Tensor  # (n,) largest continuity defect (mV; hidden states scaled to mV)


def whiten(x: torch.Tensor, rho: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Prais–Winsten AR(1) whitening along axis 2 (rows) of (n, M, R, ...), within each segment."""
    extra = x.ndim - 3
    rr = rho.reshape((-1, 1, 1) + (1,) * extra)
    out = torch.empty_like(x)
    out[:, :, :1] = torch.sqrt(1 - rr**2) * x[:, :, :1]
    out[:, :, 1:] = x[:, :, 1:] - rr * x[:, :, :-1]
    vm = valid.reshape(valid.shape + (1,) * extra)
    return torch.where(vm, out, torch.zeros((), dtype=x.dtype, device=x.device))


def assemble(raw: Raw, u: torch.Tensor, stf: StateTransform, lay_t: dict, w: float, scale: torch.Tensor,
             rho: torch.Tensor | None, freeze_first: bool) -> Normal:
    """Residuals and normal-equation blocks at continuity weight ``w`` (AR(1) whitening when ``rho``)."""
    n, M, S = u.shape
    valid, vobs, has_next, first = lay_t["valid"], lay_t["v_obs"], lay_t["has_next"], lay_t["first"]
    zero = torch.zeros((), dtype=u.dtype, device=u.device)
    r = torch.where(valid, raw.v - vobs, zero)
    J = torch.where(valid[..., None], raw.dv, zero)
    if rho is not None:
        r, J = whiten(r, rho, valid), whiten(J, rho, valid)
    x, dx = stf.from_u(u)
    Jx, Jt = J[..., :S] * dx[:, :, None, :], J[..., S:]
    hn = has_next[None, :, None]
    wsc = w * scale                                              # (S,)
    # defect s → s+1: d_s = w·sc·(end_s − x_{s+1})
    x_next = torch.cat([x[:, 1:], x[:, -1:]], 1)
    dx_next = torch.cat([dx[:, 1:], dx[:, -1:]], 1)
    d = torch.where(hn, wsc * (raw.end - x_next), zero)
    d = torch.nan_to_num(d, nan=1e150, posinf=1e150, neginf=-1e150) if not bool(torch.isfinite(d).all()) else d
    Gd = torch.where(hn[..., None], wsc[:, None] * raw.dend[..., :S] * dx[:, :, None, :], zero)  # ∂d_s/∂u_s
    Pd = torch.where(hn[..., None], wsc[:, None] * raw.dend[..., S:], zero)   # ∂d_s/∂z     (n,M,S,F)
    Nd = torch.where(hn, -wsc * dx_next, zero)                                # ∂d_s/∂u_s+1 (diagonal)
    A = torch.einsum("nmrk,nmrj->nmkj", Jx, Jx) + torch.einsum("nmik,nmij->nmkj", Gd, Gd)
    A[:, 1:] += torch.diag_embed(Nd[:, :-1] ** 2)
    Bc = Gd[:, :-1].transpose(-1, -2) * Nd[:, :-1, None, :]
    C = torch.einsum("nmrk,nmrf->nmkf", Jx, Jt) + torch.einsum("nmik,nmif->nmkf", Gd, Pd)
    C[:, 1:] += Nd[:, :-1, :, None] * Pd[:, :-1]
    E = torch.einsum("nmrf,nmrg->nfg", Jt, Jt) + torch.einsum("nmif,nmig->nfg", Pd, Pd)
    gx = torch.einsum("nmrk,nmr->nmk", Jx, r) + torch.einsum("nmik,nmi->nmk", Gd, d)
    gx[:, 1:] += Nd[:, :-1] * d[:, :-1]
    gz = torch.einsum("nmrf,nmr->nf", Jt, r) + torch.einsum("nmif,nmi->nf", Pd, d)
    if freeze_first:
        fm = first[None, :]
        eye = torch.eye(S, dtype=u.dtype, device=u.device)
        A = torch.where(fm[..., None, None], eye, A)
        C = torch.where(fm[..., None, None], zero, C)
        gx = torch.where(fm[..., None], zero, gx)
        Bc = torch.where(fm[:, :-1, None, None], zero, Bc)
    data = 0.5 * (r**2).sum((1, 2))
    cost = data + 0.5 * (d**2).sum((1, 2))
    finite = torch.isfinite(raw.dv).flatten(1).all(1) & torch.isfinite(raw.dend).flatten(1).all(1)
    cost = torch.where(torch.isfinite(cost) & finite, cost, torch.full_like(cost, math.inf))
    maxdef = torch.where(hn, (raw.end - x_next).abs() * scale, zero).flatten(1).amax(1)
    return Normal(cost=cost, data=data, A=A, B=Bc, C=C, E=E, gx=gx, gz=gz, max_defect=maxdef)


def solve(nq: Normal, lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Levenberg–Marquardt step (H + λ·diag H) Δ = −g for every start.

    Returns Δu (n, M, S), Δz (n, F) and the decrease predicted by the linear model (n,).
    """
    A, Bc, C, E, gx, gz = nq.A, nq.B, nq.C, nq.E, nq.gx, nq.gz
    n, M, S, _ = A.shape
    F = E.shape[-1]
    lam = lam.to(A.dtype)
    dA = torch.diagonal(A, dim1=-2, dim2=-1)
    dE = torch.diagonal(E, dim1=-2, dim2=-1)
    # Moré-style floor, so that a variable the data hardly sees is still damped
    floor = 1e-9 * torch.maximum(dA.flatten(1).amax(1), dE.amax(1)).clamp_min(torch.finfo(A.dtype).tiny)
    dA = torch.maximum(dA, floor[:, None, None])
    dE = torch.maximum(dE, floor[:, None])
    Ad = A + torch.diag_embed(lam[:, None, None] * dA)
    Ed = E + torch.diag_embed(lam[:, None] * dE)
    rhs = torch.cat([C, gx[..., None]], -1)                      # (n, M, S, F+1)
    # block-tridiagonal elimination (symmetric: lower block of row s is B_{s-1}ᵀ)
    Dinv = [None] * M
    Rp = [None] * M
    Dinv[0] = torch.linalg.inv(Ad[:, 0])
    Rp[0] = rhs[:, 0]
    for s in range(1, M):
        W = Bc[:, s - 1].transpose(-1, -2) @ Dinv[s - 1]
        Dinv[s] = torch.linalg.inv(Ad[:, s] - W @ Bc[:, s - 1])
        Rp[s] = rhs[:, s] - W @ Rp[s - 1]
    X = [None] * M
    X[M - 1] = Dinv[M - 1] @ Rp[M - 1]
    for s in range(M - 2, -1, -1):
        X[s] = Dinv[s] @ (Rp[s] - Bc[:, s] @ X[s + 1])
    X = torch.stack(X, 1)                                        # (n, M, S, F+1)
    Y, y = X[..., :F], X[..., F]
    schur = Ed - torch.einsum("nmkf,nmkg->nfg", C, Y)
    rz = -gz + torch.einsum("nmkf,nmk->nf", C, y)
    dz = torch.linalg.solve(schur, rz[..., None])[..., 0]
    du = -y - torch.einsum("nmkf,nf->nmk", Y, dz)
    g_dot = (gx * du).sum((1, 2)) + (gz * dz).sum(1)
    d_dot = (dA * du**2).sum((1, 2)) + (dE * dz**2).sum(1)
    pred = 0.5 * (-g_dot + lam * d_dot)
    return du, dz, pred


@dataclass
class Condensed:
    """Gauss–Newton system of the exactly continuous (single-shooting) problem, condensed from segments."""

    merit: torch.Tensor  # (n,) ½‖r‖² + ½ w² ‖defects‖² at the current nodes
    data: torch.Tensor   # (n,) ½‖r‖² (whitened data residual)
    J: torch.Tensor      # (n, rows, ncol) single-shooting Jacobian (valid rows, recording order)
    r: torch.Tensor      # (n, rows) residual of the linearised, gap-closed trajectory
    a: torch.Tensor      # (n, M, S) node change (state units) that closes the gaps, to first order
    X: torch.Tensor      # (n, M, S, ncol) node sensitivities (state units) to the condensed variables
    max_defect: torch.Tensor  # (n,)


def condensed(raw: Raw, u: torch.Tensor, stf: StateTransform, lay: Layout, lay_t: dict, fit_x0: bool,
              rho: torch.Tensor | None, w: float, scale: torch.Tensor) -> Condensed:
    """Condense the multiple-shooting system onto the parameters (and initial states) of each start.

    Linearising the continuity conditions ``x_{s+1} = end_s`` gives node changes
    ``Δx_s = a_s + X_s Δζ`` with ``a_{s+1} = c_s + G_s a_s`` and ``X_{s+1} = G_s X_s + P_s`` (``c_s`` the
    defect, ``G_s``/``P_s`` the end-state Jacobians), so that the residual becomes
    ``r_s + J^x_s a_s + (J^x_s X_s + J^z_s) Δζ`` in the few variables ζ — the free parameters z and, when
    fitted, each sweep's initial-state coordinates u. With the gaps closed (``a = 0``) ``J`` is the
    single-shooting Jacobian, used for the covariance. AR(1) whitening runs over each whole sweep.
    """
    n, M, R, D = raw.dv.shape
    S = u.shape[-1]
    F = D - S
    n_sweeps = int(lay.sweep.max()) + 1
    ncol = F + (S * n_sweeps if fit_x0 else 0)
    kw = dict(dtype=u.dtype, device=u.device)
    zero = torch.zeros((), **kw)
    x, dx = stf.from_u(u)
    valid = lay_t["valid"]
    r0 = torch.where(valid, raw.v - lay_t["v_obs"], zero)               # (n, M, R)
    a_all = torch.zeros(n, M, S, **kw)
    X_all = torch.zeros(n, M, S, ncol, **kw)
    a = X = None
    defects = torch.zeros(n, M, S, **kw)
    for s in range(M):
        if lay.first[s]:
            a = torch.zeros(n, S, **kw)
            X = torch.zeros(n, S, ncol, **kw)
            if fit_x0:
                q = int(lay.sweep[s])
                X[:, :, F + S * q:F + S * (q + 1)] = torch.diag_embed(dx[:, s])
        a_all[:, s], X_all[:, s] = a, X
        if lay.has_next[s]:
            c = raw.end[:, s] - x[:, s + 1]
            defects[:, s] = c
            G = raw.dend[:, s, :, :S]
            P = torch.zeros(n, S, ncol, **kw)
            P[..., :F] = raw.dend[:, s, :, S:]
            a = c + (G @ a[..., None])[..., 0]
            X = G @ X + P
    Jx, Jt = raw.dv[..., :S], raw.dv[..., S:]
    r = r0 + torch.einsum("nmrk,nmk->nmr", Jx, a_all)
    J = torch.einsum("nmrk,nmkc->nmrc", Jx, X_all)
    J[..., :F] += Jt
    r = torch.where(valid, r, zero).reshape(n, M * R)
    J = torch.where(valid[..., None], J, zero).reshape(n, M * R, ncol)
    r0f = r0.reshape(n, M * R)
    if rho is not None:
        start = torch.zeros(M, R, dtype=torch.bool, device=u.device)
        start[torch.as_tensor(lay.first, device=u.device), 0] = True
        start = start.reshape(-1)
        r, J, r0f = (_whiten_seq(t, rho, start) for t in (r, J, r0f))
    keep = valid.reshape(-1)
    r, J, r0f = r[:, keep], J[:, keep], r0f[:, keep]
    data = 0.5 * (r0f**2).sum(1)
    hn = lay_t["has_next"][None, :, None]
    dw = torch.where(hn, w * scale * defects, zero)
    merit = data + 0.5 * (dw**2).sum((1, 2))
    bad = ~(torch.isfinite(merit) & torch.isfinite(J).flatten(1).all(1))
    merit = torch.where(bad, torch.full_like(merit, math.inf), merit)
    maxdef = torch.where(hn, defects.abs() * scale, zero).flatten(1).amax(1)
    return Condensed(merit=merit, data=data, J=J, r=r, a=a_all, X=X_all, max_defect=maxdef)


def _whiten_seq(x: torch.Tensor, rho: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """Prais–Winsten AR(1) whitening along axis 1 of (n, T, ...); ``start`` marks each sweep's first row."""
    extra = x.ndim - 2
    rr = rho.reshape((-1, 1) + (1,) * extra)
    prev = torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], 1)
    st = start.reshape((1, -1) + (1,) * extra)
    return torch.where(st, torch.sqrt(1 - rr**2) * x, x - rr * prev)


def condensed_solve(cs: Condensed, lam: torch.Tensor) -> torch.Tensor:
    """Levenberg–Marquardt step Δζ (n, ncol) of the condensed system."""
    H = cs.J.transpose(1, 2) @ cs.J
    g = (cs.J.transpose(1, 2) @ cs.r[..., None])[..., 0]
    dH = torch.diagonal(H, dim1=-2, dim2=-1)
    dH = torch.maximum(dH, 1e-9 * dH.amax(1, keepdim=True).clamp_min(torch.finfo(H.dtype).tiny))
    Hd = H + torch.diag_embed(lam[:, None] * dH)
    return torch.linalg.solve(Hd, -g[..., None])[..., 0]


def condensed_apply(cs: Condensed, dzeta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Node changes Δx = a + X Δζ (n, M, S) in state units and the merit decrease the linear model predicts."""
    dx = cs.a + torch.einsum("nmkc,nc->nmk", cs.X, dzeta)
    lin = cs.r + (cs.J @ dzeta[..., None])[..., 0]
    return dx, cs.merit - 0.5 * (lin**2).sum(1)

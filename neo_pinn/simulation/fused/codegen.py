"""Generating the Triton module of a model: the population kernel and the derivative probe.

:func:`generate_kernel_source` inlines the statements :func:`~.tracing.trace_derivatives` made from the
model's ``derivatives`` once per integrator stage into a kernel template whose time loop integrates one
neuron per GPU lane (Euler, Heun or RK4, operation for operation as :func:`neo_pinn.simulation.step`)
and accumulates its features online. The output layout of the kernel is :data:`N_OUT_FLOAT` float32
and :data:`N_OUT_INT` int32 rows of B values.
"""

from __future__ import annotations

import re
from typing import Sequence

from ...errors import ConfigurationError
from ...models.base import NeuronModel
from ..integrators import METHODS
from .tracing import TracedDerivatives, trace_derivatives

__all__ = ["generate_kernel_source", "INPUT_NAME", "N_OUT_FLOAT", "N_OUT_INT"]

#: Names in a traced body that each integrator stage binds to its own values (inputs) or prefixes
#: (temporaries): ``vN``, ``sN``, ``i_ext`` and ``t``.
INPUT_NAME = re.compile(r"\b(v\d+|s\d+|i_ext|t)\b")


def _inline(tr: TracedDerivatives, stage: str, t: str, states: Sequence[str], cur: str, indent: str) -> list[str]:
    """The derivative body for one stage: inputs bound to this stage's values, temporaries prefixed.

    Emitted inline (no @triton.jit device function): the compiled kernel is the same after Triton's
    inlining, and the interpreter — which re-patches triton.language on every device-function call —
    runs much faster. Defines ``{stage}0 .. {stage}{S-1}`` = dstate/dt.
    """
    out: list[str] = []
    names = {"t": t, "i_ext": cur}
    for j, e in enumerate(states):
        if re.fullmatch(r"[A-Za-z_]\w*", e):
            names[f"s{j}"] = e
        else:  # a stage input such as y0 + h * ka0: computed once
            names[f"s{j}"] = f"{stage}_y{j}"
            out.append(f"{indent}{stage}_y{j} = {e}")

    def sub(text: str) -> str:
        return INPUT_NAME.sub(lambda m: names.get(m.group(1), f"{stage}_{m.group(1)}"), text)

    out += [f"{indent}{sub(line)}" for line in tr.lines]
    out += [f"{indent}{stage}{j} = {sub(o)}" for j, o in enumerate(tr.outputs)]
    return out


def _step_code(tr: TracedDerivatives, method: str, indent: str) -> list[str]:
    """The integrator step, mirroring :func:`neo_pinn.simulation.step` operation for operation (same rounding)."""
    S = len(tr.state_names)
    ys = [f"y{j}" for j in range(S)]
    out = [f"{indent}t = t0 + k * dt", f"{indent}th = t + h", f"{indent}t1 = t + dt"] if tr.uses_t else []
    if method == "euler":
        out += _inline(tr, "ka", "t", ys, "i0", indent)
        out += [f"{indent}y{j} = y{j} + dt * ka{j}" for j in range(S)]
    elif method == "heun":
        out += _inline(tr, "ka", "t", ys, "i0", indent)
        out += _inline(tr, "kb", "t1", [f"y{j} + dt * ka{j}" for j in range(S)], "i0", indent)
        out += [f"{indent}y{j} = y{j} + h * (ka{j} + kb{j})" for j in range(S)]
    else:
        # the current is held over the whole step (zero-order hold), as stimulus_half_grid builds it
        out += _inline(tr, "ka", "t", ys, "i0", indent)
        out += _inline(tr, "kb", "th", [f"y{j} + h * ka{j}" for j in range(S)], "i0", indent)
        out += _inline(tr, "kc", "th", [f"y{j} + h * kb{j}" for j in range(S)], "i0", indent)
        out += _inline(tr, "kd", "t1", [f"y{j} + dt * kc{j}" for j in range(S)], "i0", indent)
        out += [f"{indent}y{j} = y{j} + dt6 * (ka{j} + 2.0 * kb{j} + 2.0 * kc{j} + kd{j})" for j in range(S)]
    return out



_KERNEL = '''
@triton.jit(do_not_specialize=["B", "n_steps", "w0", "w1", "b0", "b1", "rec_every", "n_ref", "itab_stride",
                               "vref_stride"])
def population_kernel(theta_ptr, y0_ptr, sidx_ptr, itab_ptr, itab_stride, vref_ptr, vref_stride, n_ref,
                      outf_ptr, outi_ptr, B, n_steps, t0, dt, h, dt6, w0, w1, b0, b1, thr, rearm, rec_every,
                      HAS_REF: tl.constexpr, BLOCK: tl.constexpr):
    # One lane = one neuron for the whole run: parameters and states stay in registers, features are
    # accumulated online, only the stimulus table (a few shared rows, cached) is read per step.
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < B
    row = tl.minimum(offs, B - 1)  # padding lanes repeat the last neuron: valid maths, never stored
$LOADS
$PROLOGUE
    sidx = tl.load(sidx_ptr + row)
    irow = itab_ptr + sidx * itab_stride
    rrow = vref_ptr + sidx * vref_stride
    i0 = tl.load(irow)
    v = y0
    # ---- accumulators (sample 0)
    armed = (v < thr) | (v < rearm)  # re-set at s == w0 when the window starts later
    cnt = tl.zeros([BLOCK], dtype=tl.int32)
    first_idx = tl.zeros([BLOCK], dtype=tl.int32)
    last_idx = tl.zeros([BLOCK], dtype=tl.int32)
    first_frac = tl.zeros([BLOCK], dtype=tl.float32)
    last_frac = tl.zeros([BLOCK], dtype=tl.float32)
    isi_shift = tl.zeros([BLOCK], dtype=tl.float32)
    isi_dsum = tl.zeros([BLOCK], dtype=tl.float32)
    isi_dsumsq = tl.zeros([BLOCK], dtype=tl.float32)
    peak_sum = tl.zeros([BLOCK], dtype=tl.float32)
    trough_sum = tl.zeros([BLOCK], dtype=tl.float32)
    cur_max = tl.zeros([BLOCK], dtype=tl.float32)
    cur_min = tl.zeros([BLOCK], dtype=tl.float32)
    v_sum = tl.zeros([BLOCK], dtype=tl.float32)
    v_c = tl.zeros([BLOCK], dtype=tl.float32)
    sse = tl.zeros([BLOCK], dtype=tl.float32)
    sse_c = tl.zeros([BLOCK], dtype=tl.float32)
    if (b0 <= 0) & (b1 > 0):
        v_sum = v
    if HAS_REF:
        vr = tl.load(rrow)
        e = tl.where(vr == vr, v - vr, 0.0)  # NaN in the reference = point excluded
        sse = e * e
    for k in range(0, n_steps):
        s = k + 1
        i1 = tl.load(irow + s)
$STEP
        i0 = i1
        vp = v
        v = y0
        if (s > w0) & (s < w1):  # the pair (s - 1, s) lies in the analysis window
            cross = armed & (vp < thr) & (v >= thr)
            frac = (thr - vp) / (v - vp)
            # ISI from integer step difference + fractions: exact to float32 rounding of ~one ISI.
            isi = ((s - 1 - last_idx).to(tl.float32) + (frac - last_frac)) * dt
            new_isi = cross & (cnt > 0)
            isi_shift = tl.where(new_isi & (cnt == 1), isi, isi_shift)  # shifted sums: stable variance
            d = isi - isi_shift
            isi_dsum += tl.where(new_isi, d, 0.0)
            isi_dsumsq += tl.where(new_isi, d * d, 0.0)
            # the previous spike is complete: its peak (max since its crossing) and the trough before this one
            peak_sum += tl.where(new_isi, cur_max, 0.0)
            trough_sum += tl.where(new_isi, cur_min, 0.0)
            first = cross & (cnt == 0)
            first_idx = tl.where(first, s - 1, first_idx)
            first_frac = tl.where(first, frac, first_frac)
            last_idx = tl.where(cross, s - 1, last_idx)
            last_frac = tl.where(cross, frac, last_frac)
            cur_max = tl.where(cross | (v > cur_max), v, cur_max)
            cur_min = tl.where(cross | (v < cur_min), v, cur_min)
            cnt += cross.to(tl.int32)
            armed = (armed & (cross == 0)) | (v < rearm)
        if s == w0:
            armed = (v < thr) | (v < rearm)
        if (s >= b0) & (s < b1):  # Kahan sum: 1e5 samples of ~-60 mV in float32 would lose ~1e-3
            yk = v - v_c
            tk = v_sum + yk
            v_c = (tk - v_sum) - yk
            v_sum = tk
        if HAS_REF:
            r = s // rec_every
            if (s - r * rec_every == 0) & (r < n_ref):
                vr = tl.load(rrow + r)
                e = tl.where(vr == vr, v - vr, 0.0)
                ye = e * e - sse_c
                te = sse + ye
                sse_c = (te - sse) - ye
                sse = te
    peak_sum += tl.where(cnt > 0, cur_max, 0.0)  # the last spike's peak (window ended before re-arm)
    fin = $FINITE
    tl.store(outi_ptr + offs, cnt, mask=mask)
    tl.store(outi_ptr + B + offs, first_idx, mask=mask)
    tl.store(outi_ptr + 2 * B + offs, last_idx, mask=mask)
    tl.store(outi_ptr + 3 * B + offs, fin.to(tl.int32), mask=mask)
    tl.store(outf_ptr + offs, first_frac, mask=mask)
    tl.store(outf_ptr + B + offs, last_frac, mask=mask)
    tl.store(outf_ptr + 2 * B + offs, isi_shift, mask=mask)
    tl.store(outf_ptr + 3 * B + offs, isi_dsum, mask=mask)
    tl.store(outf_ptr + 4 * B + offs, isi_dsumsq, mask=mask)
    tl.store(outf_ptr + 5 * B + offs, peak_sum, mask=mask)
    tl.store(outf_ptr + 6 * B + offs, trough_sum, mask=mask)
    tl.store(outf_ptr + 7 * B + offs, v_sum, mask=mask)
    tl.store(outf_ptr + 8 * B + offs, sse, mask=mask)


@triton.jit
def derivative_probe_kernel(y0_ptr, theta_ptr, i_ptr, out_ptr, B, t, BLOCK: tl.constexpr):
    # Evaluates the generated right-hand side once per element (tests compare it with the model).
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < B
    row = tl.minimum(offs, B - 1)
$LOADS
$PROLOGUE
    iext = tl.load(i_ptr + row)
$PROBE_BODY
$PROBE_STORES
'''


#: Rows of the kernel's float32 output (first/last spike fractions, ISI shift and sums, peak and trough
#: sums, baseline sum, squared error) and of its int32 output (count, first/last spike step, finite).
N_OUT_FLOAT, N_OUT_INT = 9, 4


def generate_kernel_source(model: NeuronModel, method: str = "rk4") -> str:
    """Source of the Triton module for ``model`` integrated with ``method``.

    The module holds ``population_kernel`` (time loop + online features) and
    ``derivative_probe_kernel``; each inlines the statements :func:`~.tracing.trace_derivatives` generated from
    the model's ``derivatives`` once per integrator stage. Functions without a Triton builtin (expm1,
    tanh, cosh ...) are expanded into numerically careful ``tl.exp``/``tl.log`` statements, so the same
    source runs compiled and in Triton's CPU interpreter.

    Parameters
    ----------
    model : NeuronModel
    method : {"euler", "heun", "rk4"}

    Returns
    -------
    str
        Python source; deterministic for a given model, method and generator version.
    """
    if method not in METHODS:
        raise ConfigurationError(f"Unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    tr = trace_derivatives(model)
    S, P = model.n_states, model.n_params
    legend = ", ".join(f"s{k} = {n}" for k, n in enumerate(tr.state_names)) + "; " + \
        ", ".join(f"p{k} = {n}" for k, n in enumerate(tr.param_names))
    loads = [f"    p{k} = tl.load(theta_ptr + row * {P} + {k})" for k in range(P)]
    loads += [f"    y{k} = tl.load(y0_ptr + row * {S} + {k})" for k in range(S)]
    step = _step_code(tr, method, " " * 8)
    probe = _inline(tr, "d", "t", [f"y{k}" for k in range(S)], "iext", "    ")
    finite = " & ".join(f"(tl.abs(y{k}) <= 3.4028234663852886e38)" for k in range(S))  # NaN and inf fail
    kernel = (_KERNEL.replace("$LOADS", "\n".join(loads)).replace("$STEP", "\n".join(step))
              .replace("$FINITE", finite).replace("$PROBE_BODY", "\n".join(probe))
              .replace("$PROLOGUE", "\n".join(f"    {ln}" for ln in tr.prologue) or "    pass")
              .replace("$PROBE_STORES", "\n".join(f"    tl.store(out_ptr + {k} * B + offs, d{k}, mask=mask)"
                                                   for k in range(S))))
    header = (f"# Generated by neo_pinn.simulation.fused from {type(model).__module__}.{type(model).__name__}"
              f".derivatives (method {method!r}).\n# Do not edit: regenerated from the model whenever it changes.\n"
              f"# Names: {legend}; i_ext in pA; a stage's vN are the model's traced ATen ops, in order.\n"
              "import triton\nimport triton.language as tl\n")
    return header + kernel

"""Population features without traces: a fused, generated GPU kernel and its torch reference.

Scoring a GA population means integrating B = 1e5–1e6 neurons for thousands of steps and reducing each
trace to a handful of features. Done step by step in torch (:func:`neo_pinn.simulate.simulate`) every
step is a few kernel launches and every recorded sample a write to memory, so the GPU idles on launch
latency and bandwidth. Here the whole time loop runs inside one Triton kernel: each GPU thread keeps
one neuron's parameters and states in registers, integrates it (Euler, Heun or RK4) and accumulates
its features online — spike count and times, ISI moments, spike peaks and troughs, the mean voltage
over a baseline window and the squared error against a reference trace — so nothing but the stimulus
table is read and nothing but the accumulators is written.

The model equations are never written again for the kernel. :func:`trace_derivatives` traces the
model's own :meth:`~neo_pinn.models.base.NeuronModel.derivatives` (written once, against
:mod:`neo_pinn.models.elementwise`) with ``make_fx`` into an element-wise ATen graph and translates that
graph op by op into straight-line Triton statements (loop-invariant ones hoisted out of the time loop);
:func:`generate_kernel_source` inlines them once per integrator stage into the kernel. An op without a
translation raises :class:`UnsupportedOpError` naming it. The generated module is written to a cache
file (Triton compiles from inspectable source) and imported from there.

:func:`online_features_torch` computes exactly the same accumulators from :func:`~neo_pinn.simulate.
simulate` traces (time segment by time segment, so memory stays bounded); it is the CPU fallback and
the oracle the kernel is tested against. :func:`population_features` picks one of the two.

Spike convention (as :func:`neo_pinn.features.spike_times`): a spike is an upward crossing of
``threshold_mv`` between two consecutive samples of the analysis window, its time linearly interpolated
between them; after a spike the next crossing only counts once the voltage has been below
``rearm_mv``; the window opens armed when its first sample is below threshold.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import math
import os
import re
import sys
import tempfile
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .errors import ConfigurationError
from .models.base import NeuronModel
from .simulate import METHODS, _theta_tensor, resolve_device, simulate

__all__ = [
    "ENGINES",
    "FEATURE_NAMES",
    "FusedUnavailableError",
    "UnsupportedOpError",
    "trace_derivatives",
    "generate_kernel_source",
    "kernel_path",
    "load_kernel_module",
    "fused_available",
    "evaluate_generated_derivatives",
    "online_features_fused",
    "online_features_torch",
    "population_features",
    "voltage_features",
]

ENGINES = ("auto", "fused", "torch")

#: Keys of the dict every engine returns, all (B,) tensors (see :func:`population_features`).
FEATURE_NAMES = (
    # accumulators
    "spike_count", "first_spike_ms", "last_spike_ms", "isi_sum_ms", "isi_sumsq_ms2", "peak_sum_mv",
    "trough_sum_mv", "v_sum", "v_count", "sse", "sse_count", "finite",
    # derived (names as in neo_pinn.features.batch_features where the meaning is the same)
    "mean_rate_hz", "first_spike_latency_ms", "isi_mean_ms", "isi_cv", "rest_mv", "rmse_mv", "peak_mean_mv",
    "trough_mean_mv",
)

#: Elements per trace batch used for tracing; any size > 1 works (the graph is element-wise).
_TRACE_N = 4
#: Neuron-steps per time segment of the torch reference (bounds its memory: a few such tensors live).
_SEGMENT_ELEMENTS = 1 << 24


class UnsupportedOpError(ConfigurationError):
    """A model's ``derivatives`` uses an operation the kernel generator cannot translate."""


class FusedUnavailableError(ConfigurationError):
    """The fused engine cannot run here (no Triton, no CUDA device, or an unsupported dtype)."""


# ============================================================================ tracing and code generation

def _lit(x: Any) -> str:
    """A Python float literal for a constant of the graph (non-finite constants are not representable)."""
    if isinstance(x, bool):
        return "True" if x else "False"
    f = float(x)
    if not math.isfinite(f):
        raise UnsupportedOpError(f"the kernel generator cannot embed the non-finite constant {f!r}; write the "
                                 "model without infinities (e.g. a large finite bound).")
    return repr(f)


#: One-argument ops: ATen name → Triton expression template ({0} is the argument).
_UNARY = {
    "neg": "(-{0})",
    "exp": "tl.exp({0})",
    "exp2": "tl.exp2({0})",
    "log": "tl.log({0})",
    "log2": "tl.log2({0})",
    "sqrt": "tl.sqrt({0})",
    "rsqrt": "(1.0 / tl.sqrt({0}))",
    "reciprocal": "(1.0 / {0})",
    "abs": "tl.abs({0})",
    "sigmoid": "(1.0 / (1.0 + tl.exp(-{0})))",
    "sin": "tl.sin({0})",
    "cos": "tl.cos({0})",
    "erf": "tl.erf({0})",
    "floor": "tl.floor({0})",
    "ceil": "tl.ceil({0})",
    "square": "({0} * {0})",
    "relu": "tl.where({0} < 0.0, 0.0, {0})",  # NaN passes through, as in torch
    "logical_not": "({0} == 0)",
    "bitwise_not": "({0} == 0)",  # only ever applied to masks here
}
#: Two-argument ops: ATen name → Triton expression template.
_BINARY = {
    "mul": "({0} * {1})",
    "div": "({0} / {1})",
    "true_divide": "({0} / {1})",
    "lt": "({0} < {1})",
    "le": "({0} <= {1})",
    "gt": "({0} > {1})",
    "ge": "({0} >= {1})",
    "eq": "({0} == {1})",
    "ne": "({0} != {1})",
    "logical_and": "({0} & {1})",
    "bitwise_and": "({0} & {1})",
    "logical_or": "({0} | {1})",
    "bitwise_or": "({0} | {1})",
    "logical_xor": "({0} ^ {1})",
    "bitwise_xor": "({0} ^ {1})",
    # NaN-propagating like torch.minimum/maximum (fmin/fmax would ignore a NaN: same for finite inputs).
    "minimum": "tl.where(({0} < {1}) | ({0} != {0}), {0}, {1})",
    "maximum": "tl.where(({0} > {1}) | ({0} != {0}), {0}, {1})",
    "fmin": "tl.where(({0} < {1}) | ({1} != {1}), {0}, {1})",
    "fmax": "tl.where(({0} > {1}) | ({1} != {1}), {0}, {1})",
}


def _expand_helper(op: str, x: str, bind) -> str:
    """Functions without a Triton builtin, as statements on tl.exp/tl.log (valid compiled and interpreted).

    They are emitted inline rather than as @triton.jit helpers: the interpreter re-patches
    triton.language on every device-function call, which made each call cost milliseconds.
    """
    if op == "expm1":
        # exp(x) - 1 without cancellation near 0 (Kahan: (u - 1) x / log u is accurate to a few ulp).
        u = bind(f"tl.exp({x})")
        um1 = bind(f"({u} - 1.0)")
        ok = bind(f"(({um1} != 0.0) & ({um1} != -1.0) & ({x} < 80.0))")
        lu = bind(f"tl.log(tl.where({ok}, {u}, 2.0))")  # masked lanes take a harmless log
        r = bind(f"tl.where({ok}, {um1} * {x} / {lu}, {um1})")
        return bind(f"tl.where({um1} == 0.0, {x}, {r})")
    if op == "log1p":  # log(1 + x) accurate near 0 (Kahan's trick)
        u = bind(f"(1.0 + {x})")
        d = bind(f"({u} - 1.0)")
        return bind(f"tl.where({d} != 0.0, tl.log({u}) * {x} / tl.where({d} != 0.0, {d}, 1.0), {x})")
    if op == "tanh":  # tanh|x| = -expm1(-2|x|) / (2 + expm1(-2|x|)): no cancellation near 0
        e = _expand_helper("expm1", bind(f"(-2.0 * tl.abs({x}))"), bind)
        r = bind(f"(-{e} / (2.0 + {e}))")
        return bind(f"tl.where({x} < 0.0, -{r}, {r})")
    if op == "cosh":  # e^|x| / 2 as exp(|x| - ln 2) stays finite wherever cosh is
        e = bind(f"tl.exp(tl.abs({x}) - 0.6931471805599453)")
        return bind(f"({e} + 0.25 / {e})")
    if op == "sinh":  # sinh|x| = (em + em / (em + 1)) / 2 with em = expm1|x|: accurate near 0
        em = _expand_helper("expm1", bind(f"tl.abs({x})"), bind)
        r = bind(f"(0.5 * ({em} + {em} / ({em} + 1.0)))")
        return bind(f"tl.where({x} < 0.0, -{r}, {r})")
    raise KeyError(op)


_HELPER_OPS = ("expm1", "log1p", "tanh", "cosh", "sinh")

#: Ops that only move data (view, copy, broadcast): the value per neuron is unchanged.
_IDENTITY = {"alias", "clone", "detach", "lift_fresh_copy", "expand", "view", "reshape", "_unsafe_view",
             "squeeze", "unsqueeze", "contiguous", "_to_copy", "to", "type_as"}
#: Ops creating a constant tensor: ATen name → which argument holds the value.
_CONSTANT = {"scalar_tensor": 0, "full": 1, "full_like": 1, "new_full": 2}


@dataclass(frozen=True)
class TracedDerivatives:
    """The model's ``derivatives`` as straight-line Triton code.

    Attributes
    ----------
    model_name : str
    state_names, param_names : tuple of str
        What the generated names ``s0..`` and ``p0..`` stand for (``t`` is time, ``i_ext`` the current).
    uses_t : bool
        Whether the right-hand side depends on time (then the kernel computes t per stage).
    prologue : tuple of str
        Loop-invariant statements (parameters and constants only), computed once per neuron.
    lines : tuple of str
        The body: one assignment per (common-subexpression-eliminated) graph node.
    outputs : tuple of str
        Expressions of dstate/dt, one per state.
    ops : tuple of str
        The ATen ops the model uses (for reports and tests).
    """

    model_name: str
    state_names: tuple[str, ...]
    param_names: tuple[str, ...]
    uses_t: bool
    prologue: tuple[str, ...]
    lines: tuple[str, ...]
    outputs: tuple[str, ...]
    ops: tuple[str, ...]


def _trace_graph(model: NeuronModel):
    """make_fx graph of ``derivatives`` on fake (B,) float32 tensors, and the constant (non-tensor) outputs.

    Fake tensors make any data-dependent Python control flow in the model fail loudly here instead of
    silently freezing one branch into the kernel. ``elementwise`` dispatches on ``isinstance(x, torch.Tensor)``,
    which fake tensors satisfy, so the torch branch is traced.
    """
    from torch.fx.experimental.proxy_tensor import make_fx

    S, P = model.n_states, model.n_params
    const_out: dict[int, float] = {}

    def f(t, i_ext, *args):
        out = model.derivatives(t, tuple(args[:S]), dict(zip(model.param_names, args[S:])), i_ext)
        out = tuple(out)
        if len(out) != S:
            raise UnsupportedOpError(f"{type(model).__name__}.derivatives returned {len(out)} values for "
                                     f"{S} states.")
        tensors = []
        for k, o in enumerate(out):
            if isinstance(o, torch.Tensor):
                tensors.append(o)
            else:  # a state with a constant derivative (e.g. 0.0): kept outside the graph
                const_out[k] = float(o)
        return tuple(tensors)

    args = [torch.zeros((), dtype=torch.float32)] + [torch.zeros(_TRACE_N, dtype=torch.float32)
                                                     for _ in range(1 + S + P)]
    try:
        gm = make_fx(f, tracing_mode="fake")(*args)
    except UnsupportedOpError:
        raise
    except Exception as exc:  # noqa: BLE001 - any tracing failure means "cannot generate a kernel"
        raise UnsupportedOpError(
            f"{type(model).__name__}.derivatives could not be traced to an element-wise graph "
            f"({type(exc).__name__}: {str(exc)[:300]}). Data-dependent Python control flow (if/while on "
            "tensor values) is not supported: use neo_pinn.models.elementwise.where; or use engine='torch'."
        ) from exc
    return gm, const_out


def trace_derivatives(model: NeuronModel) -> TracedDerivatives:
    """Trace ``model.derivatives`` and translate it into Triton statements.

    Parameters
    ----------
    model : NeuronModel
        Any model whose ``derivatives`` is element-wise torch code (all built-ins are).

    Returns
    -------
    TracedDerivatives
        The generated body; see :func:`generate_kernel_source` for the full module.

    Raises
    ------
    UnsupportedOpError
        When the graph holds an op without a Triton translation (the message names it), a non-scalar
        constant tensor, or data-dependent control flow.
    """
    gm, const_out = _trace_graph(model)
    S, P = model.n_states, model.n_params
    names: dict[Any, str] = {}  # fx node → Triton expression (a variable name or a literal)
    lines: list[str] = []
    prologue: list[str] = []
    cse: dict[str, str] = {}
    ops: set[str] = set()
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    arg_names = ["t", "i_ext"] + [f"s{k}" for k in range(S)] + [f"p{k}" for k in range(P)]
    for node, name in zip(placeholders, arg_names):
        names[node] = name
    t_node = placeholders[0]

    # Nodes the outputs depend on (make_fx keeps dead ones, e.g. an unused intermediate of the model).
    out_node = next(n for n in gm.graph.nodes if n.op == "output")
    live: set = set()
    stack = list(out_node.all_input_nodes)
    while stack:
        n = stack.pop()
        if n in live:
            continue
        live.add(n)
        stack.extend(n.all_input_nodes)
    uses_t = t_node in live

    def arg(a) -> str:
        if isinstance(a, torch.fx.Node):
            return names[a]
        if isinstance(a, (bool, int, float)):
            return _lit(a)
        raise UnsupportedOpError(f"{model.name}: the kernel generator cannot use the argument {a!r} "
                                 f"({type(a).__name__}).")

    # Nodes that depend on parameters and constants only are loop-invariant: they go to the prologue
    # (computed once per neuron, named cN) instead of every stage of every step (named vN).
    invariant: set = {n for n, name in zip(placeholders, arg_names) if name.startswith("p")}
    hoisting = [False]

    def bind(expr: str) -> str:
        """Assign ``expr`` to a fresh variable unless an identical expression already has one (CSE)."""
        if expr in cse:
            return cse[expr]
        if hoisting[0]:
            var = f"c{len(prologue)}"
            prologue.append(f"{var} = {expr}")
        else:
            var = f"v{len(lines)}"
            lines.append(f"{var} = {expr}")
        cse[expr] = var
        return var

    def reciprocal(d) -> str | None:
        """1/d as a hoisted value when d is loop-invariant (a division costs ~8 instructions on a GPU, a
        multiplication one; the result differs from x / d by at most an ulp or two)."""
        if isinstance(d, torch.fx.Node):
            if d not in invariant:
                return None
            hoisting[0] = True
            r = bind(f"(1.0 / {names[d]})")
            hoisting[0] = False
            return r
        if isinstance(d, (int, float)) and not isinstance(d, bool) and d != 0 and math.isfinite(1.0 / d):
            return _lit(1.0 / d)
        return None

    for node in gm.graph.nodes:
        if node.op in ("placeholder", "output") or node not in live:
            continue
        if node.op != "get_attr" and all(n in invariant for n in node.all_input_nodes):
            invariant.add(node)
        hoisting[0] = node in invariant
        if node.op == "get_attr":  # a tensor constant captured from the model (torch.tensor(...))
            val = getattr(gm, node.target)
            if not isinstance(val, torch.Tensor) or val.numel() != 1:
                raise UnsupportedOpError(f"{model.name}: derivatives captures a constant tensor of shape "
                                         f"{tuple(getattr(val, 'shape', ()))}; only scalars can be embedded.")
            names[node] = _lit(val.item())
            invariant.add(node)
            continue
        if node.op != "call_function" or not hasattr(node.target, "overloadpacket"):
            raise UnsupportedOpError(f"{model.name}: unsupported graph node {node.op} {node.target!r} in "
                                     "derivatives; only element-wise ATen ops can be generated.")
        op = node.target.overloadpacket.__name__
        full = str(node.target)
        ops.add(full)
        a, kw = node.args, dict(node.kwargs)
        if op in _IDENTITY:
            if op in ("_to_copy", "to") and kw.get("dtype") not in (None, torch.float32, torch.float64):
                raise UnsupportedOpError(f"{model.name}: {full} to {kw.get('dtype')} has no element-wise "
                                         "float translation.")
            names[node] = arg(a[0])
        elif op in _CONSTANT:
            names[node] = _lit(a[_CONSTANT[op]])
        elif op in ("zeros_like", "zeros"):
            names[node] = "0.0"
        elif op in ("ones_like", "ones"):
            names[node] = "1.0"
        elif op in ("add", "sub"):
            x, y = arg(a[0]), arg(a[1])
            alpha = kw.get("alpha", a[2] if len(a) > 2 else 1)
            if alpha != 1:
                y = f"({_lit(alpha)} * {y})"
            names[node] = bind(f"({x} {'+' if op == 'add' else '-'} {y})")
        elif op == "rsub":  # rsub(x, c, alpha) = c − alpha·x
            x, y = arg(a[0]), arg(a[1])
            alpha = kw.get("alpha", a[2] if len(a) > 2 else 1)
            if alpha != 1:
                x = f"({_lit(alpha)} * {x})"
            names[node] = bind(f"({y} - {x})")
        elif op in ("div", "true_divide") and kw.get("rounding_mode") is not None:
            raise UnsupportedOpError(f"{model.name}: {full} with rounding_mode={kw['rounding_mode']!r} is not "
                                     "supported by the kernel generator.")
        elif op in ("div", "true_divide") and not hoisting[0] and (r := reciprocal(a[1])) is not None:
            names[node] = bind(f"({arg(a[0])} * {r})")
        elif op in _BINARY:
            if len(a) != 2 or kw:
                raise UnsupportedOpError(f"{model.name}: {full} with arguments {a} {kw} is not supported.")
            names[node] = bind(_BINARY[op].format(arg(a[0]), arg(a[1])))
        elif op in _HELPER_OPS:
            if len(a) != 1 or kw:
                raise UnsupportedOpError(f"{model.name}: {full} with arguments {a} {kw} is not supported.")
            names[node] = _expand_helper(op, arg(a[0]), bind)
        elif op in _UNARY:
            if len(a) != 1 or kw:
                raise UnsupportedOpError(f"{model.name}: {full} with arguments {a} {kw} is not supported.")
            names[node] = bind(_UNARY[op].format(arg(a[0])))
        elif op == "pow":
            base, ex = a[0], a[1]
            if isinstance(base, torch.fx.Node) and not isinstance(ex, torch.fx.Node):
                x, e = arg(base), float(ex)
                if e == int(e) and -8 <= e <= 8:  # integer powers by repeated multiplication (exact sign)
                    ie = int(abs(e))
                    expr = "1.0" if ie == 0 else " * ".join([x] * ie)
                    expr = f"(1.0 / ({expr}))" if e < 0 else f"({expr})"
                elif e == 0.5:
                    expr = f"tl.sqrt({x})"
                else:
                    expr = f"tl.exp({_lit(e)} * tl.log({x}))"
            elif not isinstance(base, torch.fx.Node):  # c ** x
                c = float(base)
                if c <= 0:
                    raise UnsupportedOpError(f"{model.name}: {full} with a non-positive base {c} is not supported.")
                expr = f"tl.exp({arg(ex)} * {_lit(math.log(c))})"
            else:
                expr = f"tl.exp({arg(ex)} * tl.log({arg(base)}))"
            names[node] = bind(expr)
        elif op == "where":
            names[node] = bind(f"tl.where({arg(a[0])}, {arg(a[1])}, {arg(a[2])})")
        elif op in ("clamp", "clamp_min", "clamp_max"):
            x = arg(a[0])
            lo = a[1] if op in ("clamp", "clamp_min") and len(a) > 1 else kw.get("min")
            hi = (a[2] if len(a) > 2 else kw.get("max")) if op == "clamp" else (a[1] if op == "clamp_max" else None)
            if lo is not None:
                x = bind(_BINARY["maximum"].format(x, arg(lo)))
            if hi is not None:
                x = bind(_BINARY["minimum"].format(x, arg(hi)))
            names[node] = x
        else:
            supported = sorted({*_UNARY, *_BINARY, *_HELPER_OPS, "add", "sub", "rsub", "pow", "where", "clamp"})
            raise UnsupportedOpError(
                f"{model.name}: derivatives uses {full}, which the fused-kernel generator cannot translate "
                f"to Triton (supported: {', '.join(supported)}). Rewrite the model with the functions of "
                "neo_pinn.models.elementwise, or use engine='torch'."
            )

    outs_nodes = list(out_node.args[0]) if isinstance(out_node.args[0], (tuple, list)) else [out_node.args[0]]
    outputs: list[str] = []
    it = iter(outs_nodes)
    for k in range(S):
        if k in const_out:
            outputs.append(f"(tl.zeros_like(s0) + {_lit(const_out[k])})")
        else:
            o = next(it)
            outputs.append(arg(o) if isinstance(o, torch.fx.Node) else _lit(o))
    # A bare input or literal as an output would alias it; give every output its own value.
    outputs = [o if re.fullmatch(r"[vc]\d+", o) else f"({o} + 0.0)" for o in outputs]
    return TracedDerivatives(model.name, model.state_names, model.param_names, uses_t, tuple(prologue),
                             tuple(lines), tuple(outputs), tuple(sorted(ops)))


_INPUT_NAME = re.compile(r"\b(v\d+|s\d+|i_ext|t)\b")


def _inline(tr: TracedDerivatives, stage: str, t: str, states: Sequence[str], cur: str, indent: str) -> list[str]:
    """The derivative body for one stage: inputs bound to this stage's values, temporaries prefixed.

    Emitted inline (no @triton.jit device function): the compiled kernel is the same after Triton's
    inlining, and the interpreter — which re-patches triton.language on every device-function call —
    runs an order of magnitude faster. Defines ``{stage}0 .. {stage}{S-1}`` = dstate/dt.
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
        return _INPUT_NAME.sub(lambda m: names.get(m.group(1), f"{stage}_{m.group(1)}"), text)

    out += [f"{indent}{sub(line)}" for line in tr.lines]
    out += [f"{indent}{stage}{j} = {sub(o)}" for j, o in enumerate(tr.outputs)]
    return out


def _step_code(tr: TracedDerivatives, method: str, indent: str) -> list[str]:
    """The integrator step, mirroring neo_pinn.simulate._step operation for operation (same rounding)."""
    S = len(tr.state_names)
    ys = [f"y{j}" for j in range(S)]
    out = [f"{indent}t = t0 + k * dt", f"{indent}th = t + h", f"{indent}t1 = t + dt"] if tr.uses_t else []
    if method == "euler":
        out += _inline(tr, "ka", "t", ys, "i0", indent)
        out += [f"{indent}y{j} = y{j} + dt * ka{j}" for j in range(S)]
    elif method == "heun":
        out += _inline(tr, "ka", "t", ys, "i0", indent)
        out += _inline(tr, "kb", "t1", [f"y{j} + dt * ka{j}" for j in range(S)], "i1", indent)
        out += [f"{indent}y{j} = y{j} + h * (ka{j} + kb{j})" for j in range(S)]
    else:
        out.append(f"{indent}ih = 0.5 * (i0 + i1)")  # the half-step current, as _stimulus_half_grid builds it
        out += _inline(tr, "ka", "t", ys, "i0", indent)
        out += _inline(tr, "kb", "th", [f"y{j} + h * ka{j}" for j in range(S)], "ih", indent)
        out += _inline(tr, "kc", "th", [f"y{j} + h * kb{j}" for j in range(S)], "ih", indent)
        out += _inline(tr, "kd", "t1", [f"y{j} + dt * kc{j}" for j in range(S)], "i1", indent)
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

_N_OUT_F, _N_OUT_I = 9, 4


def generate_kernel_source(model: NeuronModel, method: str = "rk4") -> str:
    """Source of the Triton module for ``model`` integrated with ``method``.

    The module holds ``population_kernel`` (time loop + online features) and
    ``derivative_probe_kernel``; each inlines the statements :func:`trace_derivatives` generated from
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
    header = (f"# Generated by neo_pinn.fused from {type(model).__module__}.{type(model).__name__}.derivatives "
              f"(method {method!r}).\n# Do not edit: regenerated from the model whenever it changes.\n"
              f"# Names: {legend}; i_ext in pA; a stage's vN are the model's traced ATen ops, in order.\n"
              "import triton\nimport triton.language as tl\n")
    return header + kernel


# ============================================================================ loading the generated module

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


def _triton():
    try:
        import triton  # noqa: F401

        return triton
    except Exception as exc:  # noqa: BLE001 - ImportError or a broken install: both mean "not available"
        raise FusedUnavailableError(
            f"engine='fused' needs Triton ({type(exc).__name__}: {exc}); install it with "
            "`pip install neo-pinn[fused]` (CUDA builds of torch ship it), or use engine='torch'."
        ) from exc


def _interpreting() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (TRITON_INTERPRET=1, read when triton is imported)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def load_kernel_module(model: NeuronModel, method: str = "rk4"):
    """Generate (if needed), write and import the Triton module for (model, method); cached per process."""
    _triton()
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
    """Whether :func:`online_features_fused` can run on ``device`` (Triton importable and CUDA, or the
    Triton interpreter for CPU tensors)."""
    dev = resolve_device(device) if device in (None, "auto") else torch.device(device)
    try:
        _triton()
    except FusedUnavailableError:
        return False
    return dev.type == "cuda" or (dev.type == "cpu" and _interpreting())


def _default_block(B: int, device: torch.device) -> int:
    if device.type != "cuda":  # interpreter: one program per ≤128 neurons, numpy-vectorised
        return max(16, min(128, 1 << (max(B, 1) - 1).bit_length()))
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    # 128 lanes (4 warps, one neuron per thread) once there are ≥ 4 programs per SM; smaller blocks below
    # that keep every SM busy for B ~ 1e4–1e5.
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
    if dev.type != "cuda" and not _interpreting():
        raise FusedUnavailableError("Generated kernels run on CUDA tensors, or on CPU tensors only under "
                                    "TRITON_INTERPRET=1 (set before triton is imported).")
    theta = torch.as_tensor(theta, dtype=torch.float32, device=dev).contiguous()
    i_ext = torch.as_tensor(i_ext, dtype=torch.float32, device=dev).reshape(-1).contiguous()
    B = y.shape[0]
    out = torch.empty((model.n_states, B), dtype=torch.float32, device=dev)
    block = _default_block(B, dev)
    with _quiet_numpy():
        mod.derivative_probe_kernel[(_cdiv(B, block),)](y, theta, i_ext, out, B, float(t), BLOCK=block)
    return out.T.contiguous()


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _quiet_numpy():
    """The interpreter evaluates masked branches with numpy: silence their harmless overflow warnings."""
    return np.errstate(all="ignore") if _interpreting() else contextlib.nullcontext()


# ============================================================================ inputs shared by both engines

@dataclass
class _Inputs:
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


def _prepare(model, theta, *, i_table, stim_index, dt, n_steps, y0, window, baseline, threshold_mv, rearm_mv,
             v_ref, record_every, method, t0, dtype, device) -> _Inputs:
    if isinstance(model, str):
        from .api import get_model

        model = get_model(model)
    if not isinstance(model, NeuronModel):
        raise ConfigurationError(f"model must be a NeuronModel (or a registered name); got {type(model).__name__}.")
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
    if device is None or str(device) == "auto":
        dev = theta.device if isinstance(theta, torch.Tensor) else resolve_device("auto")
    else:
        dev = resolve_device(device)

    th = _theta_tensor(model, theta, None, dtype, dev)
    y0 = model.initial_state() if y0 is None else y0
    y0t = torch.as_tensor(y0 if isinstance(y0, torch.Tensor) else np.asarray(y0, dtype=float)).to(dtype=dtype,
                                                                                                   device=dev)
    if y0t.ndim == 1:
        y0t = y0t.unsqueeze(0)
    if y0t.ndim != 2 or y0t.shape[1] != model.n_states:
        raise ConfigurationError(f"y0 must have shape ({model.n_states},) or (B, {model.n_states}); "
                                 f"got {tuple(y0t.shape)}.")

    it = torch.as_tensor(i_table if isinstance(i_table, torch.Tensor) else np.asarray(i_table, dtype=float))
    it = it.to(dtype=dtype, device=dev)
    if it.ndim == 1:
        it = it.unsqueeze(0)
    if it.ndim != 2 or it.shape[1] != n_steps + 1:
        raise ConfigurationError(f"i_table must have shape (n_stim, n_steps + 1) = (n_stim, {n_steps + 1}): one "
                                 f"current (pA) per step time; got {tuple(it.shape)}.")
    if not bool(torch.isfinite(it).all()):
        raise ConfigurationError("i_table holds NaN/inf; every stimulus value must be finite (pA).")
    n_stim = it.shape[0]

    B = max(th.shape[0], y0t.shape[0])
    if stim_index is None:
        if n_stim != 1:
            raise ConfigurationError(f"i_table has {n_stim} stimuli: pass stim_index (B,) saying which one each "
                                     "neuron receives.")
        si = torch.zeros(B, dtype=torch.int64, device=dev)
    else:
        si = torch.as_tensor(stim_index if isinstance(stim_index, torch.Tensor) else np.asarray(stim_index))
        if si.ndim == 0:
            si = si.reshape(1)
        if si.ndim != 1 or si.dtype.is_floating_point or si.dtype == torch.bool:
            raise ConfigurationError(f"stim_index must be a 1-D integer array (B,); got {si.dtype} "
                                     f"{tuple(si.shape)}.")
        si = si.to(device=dev, dtype=torch.int64)
        B = max(B, si.shape[0])
        if si.shape[0] == 1:
            si = si.expand(B)
        if si.numel() and (int(si.min()) < 0 or int(si.max()) >= n_stim):
            raise ConfigurationError(f"stim_index values must lie in [0, {n_stim}) (rows of i_table).")
    for name, rows in (("theta", th.shape[0]), ("y0", y0t.shape[0]), ("stim_index", si.shape[0])):
        if rows not in (1, B):
            raise ConfigurationError(f"Batch sizes disagree: {name} has {rows} rows, others {B}.")
    th = th.expand(B, -1).contiguous()
    y0t = y0t.expand(B, -1).contiguous()
    si = si.contiguous()

    def span(w, what, default):
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

    w0, w1 = span(window, "window", (0, n_steps + 1))
    b0, b1 = span(baseline, "baseline", (0, 0))
    thr = float(model.spike_threshold if threshold_mv is None else threshold_mv)
    rearm = float(model.spike_rearm if rearm_mv is None else rearm_mv)
    if not rearm < thr:
        raise ConfigurationError(f"rearm_mv ({rearm}) must be below threshold_mv ({thr}).")

    vr = None
    if v_ref is not None:
        vr = torch.as_tensor(v_ref if isinstance(v_ref, torch.Tensor) else np.asarray(v_ref, dtype=float))
        vr = vr.to(dtype=dtype, device=dev)
        if vr.ndim == 1:
            vr = vr.unsqueeze(0)
        if vr.ndim != 2 or vr.shape[0] != n_stim:
            raise ConfigurationError(f"v_ref must have shape (n_stim, R) = ({n_stim}, R): one reference trace "
                                     f"(mV) per stimulus; got {tuple(vr.shape)}.")
        r_max = n_steps // record_every + 1
        if not 1 <= vr.shape[1] <= r_max:
            raise ConfigurationError(f"v_ref has {vr.shape[1]} points, but the run has n_steps // record_every "
                                     f"+ 1 = {r_max} record points (samples 0, record_every, 2·record_every, …).")
        vr = vr.contiguous()
    return _Inputs(model, th, y0t, it.contiguous(), si, vr, B, n_steps, dt, float(t0), w0, w1, b0, b1, thr, rearm,
                   record_every, method, dtype, dev)


def _finish(x: _Inputs, raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Counts known from the inputs alone, and the derived features (float64; NaN where undefined)."""
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
    return {k: out[k] for k in FEATURE_NAMES}


_COMMON_DOC = """
    Parameters
    ----------
    model : NeuronModel or str
        The model (or its registered name).
    theta : array_like or torch.Tensor
        Parameters (B, P) (or (P,), shared) in ``model.param_names`` order, canonical units. A tensor's
        device is used when ``device="auto"``.
    i_table : array_like
        Injected currents in pA at the step times t0 + k·dt, k = 0..n_steps: shape (n_stim, n_steps + 1),
        or (n_steps + 1,) for one stimulus. RK4/Heun use the mid-point mean at half steps, exactly as
        :func:`neo_pinn.simulate.simulate` does for an array stimulus.
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
        (B,) tensors on the simulation device, keys :data:`FEATURE_NAMES`:

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


# ============================================================================ engines

def online_features_fused(model, theta, *, i_table, stim_index=None, dt: float, n_steps: int, y0=None,
                          window=None, baseline=None, threshold_mv=None, rearm_mv=None, v_ref=None,
                          record_every: int = 1, method: str = "rk4", t0: float = 0.0,
                          dtype: torch.dtype = torch.float32, device="auto", block_size: int | None = None,
                          num_warps: int | None = None) -> dict[str, torch.Tensor]:
    """Population features from the fused, generated Triton kernel (CUDA, float32).

    The kernel is generated from ``model.derivatives`` (see :func:`generate_kernel_source`), cached and
    compiled on first use per (model, method); each GPU thread integrates one neuron for all steps and
    keeps only the online accumulators.
    """
    tri = _triton()
    x = _prepare(model, theta, i_table=i_table, stim_index=stim_index, dt=dt, n_steps=n_steps, y0=y0,
                 window=window, baseline=baseline, threshold_mv=threshold_mv, rearm_mv=rearm_mv, v_ref=v_ref,
                 record_every=record_every, method=method, t0=t0, dtype=dtype, device=device)
    if x.device.type != "cuda" and not _interpreting():
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
    block = int(block_size) if block_size else _default_block(B, x.device)
    if block < 16 or block & (block - 1):
        raise ConfigurationError(f"block_size must be a power of two ≥ 16; got {block}.")
    nw = int(num_warps) if num_warps else max(1, min(8, block // 32))
    outf = torch.empty((_N_OUT_F, B), dtype=torch.float32, device=x.device)
    outi = torch.empty((_N_OUT_I, B), dtype=torch.int32, device=x.device)
    has_ref = x.v_ref is not None
    vref = x.v_ref if has_ref else torch.zeros((1, 1), dtype=torch.float32, device=x.device)
    sidx = x.stim_index.to(torch.int32)
    dt_ = x.dt
    device_ctx = torch.cuda.device(x.device) if x.device.type == "cuda" else contextlib.nullcontext()
    with _quiet_numpy(), device_ctx:  # launch on the tensors' GPU, not just the current one
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
    return _finish(x, raw)


def _auto_segment_steps(n_steps: int, B: int, S: int) -> int:
    """Steps per torch segment: at most ~_SEGMENT_ELEMENTS neuron-states, spread evenly over the
    segments, a multiple of 8 (simulate's compiled chunk) so no segment is a ragged tail."""
    k_max = max(8, (_SEGMENT_ELEMENTS // max(B * S, 1)) // 8 * 8)
    return _cdiv(_cdiv(n_steps, _cdiv(n_steps, k_max)), 8) * 8


class _SpikeAccumulator:
    """The kernel's online accumulators, computed vectorised over whole trace segments (float64).

    Equivalence with the sample-by-sample state machine (and with features.spike_times): a candidate
    crossing counts iff the voltage went below ``rearm`` since the previous *candidate* crossing (or, for
    the first candidate, the window opened armed or went below since): if the previous candidate counted
    that is the rule itself, and if it did not, no re-arm happened since the last counted one either.
    Peaks and troughs are the max/min over the samples from one counted crossing to the next: after the
    re-arm every sample up to the next counted crossing is below threshold, so neither changes.
    """

    def __init__(self, B: int, thr: float, rearm: float, device):
        f = dict(dtype=torch.float64, device=device)
        self.thr, self.rearm = thr, rearm
        self.armed = torch.zeros(B, dtype=torch.bool, device=device)
        self.n = torch.zeros(B, dtype=torch.int64, device=device)
        self.first = torch.full((B,), math.inf, **f)      # position in steps (index + fraction)
        self.last = torch.full((B,), -math.inf, **f)
        self.isi_sum = torch.zeros(B, **f)
        self.isi_sumsq = torch.zeros(B, **f)
        self.peak_sum = torch.zeros(B, **f)
        self.trough_sum = torch.zeros(B, **f)
        self.cur_max = torch.full((B,), -math.inf, **f)
        self.cur_min = torch.full((B,), math.inf, **f)

    def start(self, v0: torch.Tensor) -> None:
        """The window's first sample: armed iff below threshold (or below re-arm)."""
        self.armed = (v0 < self.thr) | (v0 < self.rearm)

    def update(self, v: torch.Tensor, g0: int, dt: float) -> None:
        """Consume the pairs of ``v`` (B, L), whose column 0 is sample ``g0`` (already consumed).

        Crossings are rare (a few per thousand samples), so after the few dense passes every sample
        needs (two compares, a cumulative count of re-arm samples, a segmented max and min) the work is
        done on the list of candidate crossings only.
        """
        B, L = v.shape
        if L < 2:
            return
        dev = v.device
        vp, vn = v[:, :-1], v[:, 1:]
        rows, cols = ((vp < self.thr) & (vn >= self.thr)).nonzero(as_tuple=True)  # row-major order
        cd = (vp < self.rearm).cumsum(1, dtype=torch.int32)   # re-arm samples among the pairs' first samples
        cd_end = cd[:, -1]
        cd_c = cd[rows, cols]
        new_row = torch.ones_like(rows, dtype=torch.bool)
        new_row[1:] = rows[1:] != rows[:-1]
        last_of_row = torch.ones_like(new_row)
        last_of_row[:-1] = new_row[1:]
        prev_cd = torch.zeros_like(cd_c)
        prev_cd[1:] = cd_c[:-1]
        # a candidate counts iff a re-arm sample lies after the previous candidate of its row (or, for the
        # row's first candidate, the row was armed or re-arms before it)
        counted = torch.where(new_row, self.armed[rows] | (cd_c > 0), cd_c - prev_cd > 0)
        armed = self.armed | (cd_end > 0)
        armed[rows[last_of_row]] = (cd_end[rows[last_of_row]] - cd_c[last_of_row]) > 0
        self.armed = armed

        rs, js = rows[counted], cols[counted]
        n_seg = torch.bincount(rs, minlength=B)
        n_before = self.n
        a, b = vp[rs, js].double(), vn[rs, js].double()
        pos = (g0 + js).double() + (self.thr - a) / (b - a)     # spike position in steps
        first_c = torch.ones_like(rs, dtype=torch.bool)
        first_c[1:] = rs[1:] != rs[:-1]
        prev = torch.empty_like(pos)
        prev[1:] = pos[:-1]
        prev[first_c] = self.last[rs[first_c]]
        has_prev = torch.isfinite(prev)
        isi = (pos[has_prev] - prev[has_prev]) * dt
        self.isi_sum.index_add_(0, rs[has_prev], isi)
        self.isi_sumsq.index_add_(0, rs[has_prev], isi * isi)
        firsts = first_c & (n_before[rs] == 0)
        self.first[rs[firsts]] = pos[firsts]
        last_c = torch.ones_like(first_c)
        last_c[:-1] = first_c[1:]
        self.last[rs[last_c]] = pos[last_c]

        # Peaks/troughs: max/min over regions of the row-major flattened vn, cut at each row start and at
        # each counted crossing (its second sample); region 0 of a row continues the carried one.
        K = L - 1
        starts = torch.cat([torch.arange(B, device=dev) * K, rs * K + js])
        kind = torch.cat([torch.zeros(B, dtype=torch.long, device=dev), torch.ones_like(rs)])  # 0: row start
        order = torch.argsort(starts * 2 + kind)                 # a row start precedes a crossing at column 0
        starts, kind = starts[order], kind[order]
        lengths = torch.diff(starts, append=torch.tensor([B * K], device=dev))
        flat = vn.reshape(-1)
        smax = torch.segment_reduce(flat, "max", lengths=lengths, initial=-math.inf).double()
        smin = torch.segment_reduce(flat, "min", lengths=lengths, initial=math.inf).double()
        seg_row = torch.div(starts, K, rounding_mode="floor")
        is_start = kind == 0
        smax[is_start] = torch.maximum(smax[is_start], self.cur_max)
        smin[is_start] = torch.minimum(smin[is_start], self.cur_min)
        is_last = torch.ones_like(is_start)
        is_last[:-1] = is_start[1:]
        done = ~is_last & (~is_start | (n_before[seg_row] > 0))
        self.peak_sum.index_add_(0, seg_row[done], smax[done])
        self.trough_sum.index_add_(0, seg_row[done], smin[done])
        self.cur_max = smax[is_last]                              # one per row, rows in order
        self.cur_min = smin[is_last]
        self.n = n_before + n_seg

    def result(self, t0: float, dt: float) -> dict[str, torch.Tensor]:
        has = self.n > 0
        nan = torch.tensor(float("nan"), dtype=torch.float64, device=self.n.device)
        return {
            "spike_count": self.n,
            "first_spike_ms": torch.where(has, t0 + self.first * dt, nan),
            "last_spike_ms": torch.where(has, t0 + self.last * dt, nan),
            "isi_sum_ms": self.isi_sum,
            "isi_sumsq_ms2": self.isi_sumsq,
            "peak_sum_mv": self.peak_sum + torch.where(has, self.cur_max, 0.0),
            "trough_sum_mv": self.trough_sum,
        }


def online_features_torch(model, theta, *, i_table, stim_index=None, dt: float, n_steps: int, y0=None,
                          window=None, baseline=None, threshold_mv=None, rearm_mv=None, v_ref=None,
                          record_every: int = 1, method: str = "rk4", t0: float = 0.0,
                          dtype: torch.dtype = torch.float32, device="auto", segment_steps: int | None = None,
                          compile: bool | str = "auto") -> dict[str, torch.Tensor]:
    """Population features from :func:`neo_pinn.simulate.simulate` traces (any device, float32/64).

    The reference for the fused kernel and its CPU fallback: the run is simulated in time segments of
    ``segment_steps`` steps (every step recorded) and each segment's traces are reduced to the same
    accumulators, in float64, before the next is simulated — memory stays O(B × segment_steps).
    """
    x = _prepare(model, theta, i_table=i_table, stim_index=stim_index, dt=dt, n_steps=n_steps, y0=y0,
                 window=window, baseline=baseline, threshold_mv=threshold_mv, rearm_mv=rearm_mv, v_ref=v_ref,
                 record_every=record_every, method=method, t0=t0, dtype=dtype, device=device)
    if segment_steps is not None and int(segment_steps) < 1:
        raise ConfigurationError("segment_steps must be a positive integer.")
    return _finish(x, _torch_raw(x, segment_steps, compile))


def _torch_raw(x: _Inputs, segment_steps: int | None, compile) -> dict[str, torch.Tensor]:
    """The torch engine's accumulators (before :func:`_finish`)."""
    if x.i_table.shape[0] > 1:
        # Neurons sharing a stimulus are simulated together with that single row: simulate() then reads
        # one current per step instead of gathering a strided column per neuron (1.8× faster on CPU).
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
    K = int(segment_steps) if segment_steps is not None else _auto_segment_steps(N, B, S)
    n_seg = -(-N // K)
    # Every segment gets K steps — the last one runs past n_steps on a held stimulus and its extra samples
    # are dropped — so torch.compile sees one shape and compiles once.
    pad = n_seg * K - N
    itab = torch.cat([x.i_table, x.i_table[:, -1:].expand(-1, pad)], 1) if pad else x.i_table
    acc = _SpikeAccumulator(B, x.thr, x.rearm, x.device)
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

    Runs the same :class:`_SpikeAccumulator` and baseline sum as :func:`online_features_torch` over the
    samples of ``v`` and derives the features with the same :func:`_finish`, so a recorded trace and a
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
        (B,) float64 tensors, keys :data:`FEATURE_NAMES` as :func:`population_features` (``sse`` 0,
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
    acc = _SpikeAccumulator(B, thr, rearm, vt.device)
    acc.start(vt[:, w0])
    if w1 - 1 > w0:  # the pairs inside the window, exactly as _torch_raw hands them over
        acc.update(vt[:, w0:w1], w0, dt)
    raw = acc.result(float(t0), dt)
    raw.update(v_sum=vt[:, b0:b1].sum(1), sse=torch.zeros(B, dtype=torch.float64, device=vt.device),
               finite=torch.isfinite(vt).all(1))
    # _finish reads only the run's geometry from _Inputs; the model-side fields are not used for a trace
    x = _Inputs(None, None, None, None, torch.zeros(B, dtype=torch.int64, device=vt.device), None, B, T - 1, dt,
                float(t0), w0, w1, b0, b1, thr, rearm, 1, "rk4", torch.float64, vt.device)
    return _finish(x, raw)


def population_features(model, theta, *, i_table, stim_index=None, dt: float, n_steps: int, y0=None,
                        window=None, baseline=None, threshold_mv=None, rearm_mv=None, v_ref=None,
                        record_every: int = 1, method: str = "rk4", engine: str = "auto", t0: float = 0.0,
                        dtype: torch.dtype = torch.float32, device="auto", **engine_options
                        ) -> dict[str, torch.Tensor]:
    """Features of a population of neurons, computed by the fastest available engine.

    ``engine="auto"`` runs the fused Triton kernel (:func:`online_features_fused`) on a CUDA device when
    Triton is importable and dtype is float32, else the torch reference (:func:`online_features_torch`);
    ``"fused"`` / ``"torch"`` force one (``"fused"`` raises :class:`FusedUnavailableError` where it
    cannot run). Both return the same keys with the same meaning.
    """
    if engine not in ENGINES:
        raise ConfigurationError(f"Unknown engine {engine!r}; choose one of {', '.join(ENGINES)}.")
    kw = dict(i_table=i_table, stim_index=stim_index, dt=dt, n_steps=n_steps, y0=y0, window=window,
              baseline=baseline, threshold_mv=threshold_mv, rearm_mv=rearm_mv, v_ref=v_ref,
              record_every=record_every, method=method, t0=t0, dtype=dtype, device=device)
    if engine == "auto":
        if device is None or str(device) == "auto":
            dev = theta.device if isinstance(theta, torch.Tensor) else resolve_device("auto")
        else:
            dev = resolve_device(device)
        engine = "fused" if dev.type == "cuda" and dtype == torch.float32 and fused_available(dev) else "torch"
    fn = online_features_fused if engine == "fused" else online_features_torch
    return fn(model, theta, **kw, **engine_options)


# The three entry points share their parameter and return documentation (numpydoc sections).
def _sections(extra: str, raises: str) -> str:
    return _COMMON_DOC + extra + _RETURNS_DOC + raises


online_features_fused.__doc__ += _sections(
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
online_features_torch.__doc__ += _sections(
    """    segment_steps : int, optional
        Steps per segment (default: about 2**24 / (B·S) neuron-steps, a multiple of 8).
    compile : bool or "auto"
        Passed to :func:`~neo_pinn.simulate.simulate`.
""", """
    Raises
    ------
    ConfigurationError
        For inconsistent inputs (shapes, windows, thresholds).
""")
population_features.__doc__ += _sections(
    """    engine : {"auto", "fused", "torch"}
    **engine_options
        ``block_size``/``num_warps`` (fused) or ``segment_steps``/``compile`` (torch).
""", """
    Raises
    ------
    FusedUnavailableError, UnsupportedOpError, ConfigurationError
""")

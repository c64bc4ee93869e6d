"""Tracing a model's ``derivatives`` into straight-line Triton statements.

The model equations are never written again for the kernel: :func:`trace_derivatives` traces the
model's own :meth:`~neo_pinn.models.base.NeuronModel.derivatives` (written once, against
:mod:`neo_pinn.models.elementwise`) with ``make_fx`` into an element-wise ATen graph and translates
that graph op by op (:class:`~.aten_to_triton.GraphTranslator`), loop-invariant statements hoisted
out of the time loop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from ...models.base import NeuronModel
from .aten_to_triton import GraphTranslator, triton_literal
from .errors import UnsupportedOpError

__all__ = ["TracedDerivatives", "trace_derivatives"]

#: Elements per trace batch used for tracing; any size > 1 works (the graph is element-wise).
_TRACE_N = 4


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
        The generated body; see :func:`~neo_pinn.simulation.fused.generate_kernel_source` for the full module.

    Raises
    ------
    UnsupportedOpError
        When the graph holds an op without a Triton translation (the message names it), a non-scalar
        constant tensor, or data-dependent control flow.
    """
    gm, const_out = _trace_graph(model)
    S, P = model.n_states, model.n_params
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    arg_names = ["t", "i_ext"] + [f"s{k}" for k in range(S)] + [f"p{k}" for k in range(P)]
    t_node = placeholders[0]
    out_node = next(n for n in gm.graph.nodes if n.op == "output")
    live = _live_nodes(out_node)
    uses_t = t_node in live
    tr = GraphTranslator(model.name, gm, dict(zip(placeholders, arg_names)),
                         {n for n, name in zip(placeholders, arg_names) if name.startswith("p")})
    for node in gm.graph.nodes:
        if node.op in ("placeholder", "output") or node not in live:
            continue
        tr.translate(node)

    outs_nodes = list(out_node.args[0]) if isinstance(out_node.args[0], (tuple, list)) else [out_node.args[0]]
    outputs: list[str] = []
    it = iter(outs_nodes)
    for k in range(S):
        if k in const_out:
            outputs.append(f"(tl.zeros_like(s0) + {triton_literal(const_out[k])})")
        else:
            o = next(it)
            outputs.append(tr.arg(o) if isinstance(o, torch.fx.Node) else triton_literal(o))
    # A bare input or literal as an output would alias it; give every output its own value.
    outputs = [o if re.fullmatch(r"[vc]\d+", o) else f"({o} + 0.0)" for o in outputs]
    return TracedDerivatives(model.name, model.state_names, model.param_names, uses_t, tuple(tr.prologue),
                             tuple(tr.lines), tuple(outputs), tuple(sorted(tr.ops)))


def _live_nodes(out_node) -> set:
    """The nodes the outputs depend on (make_fx keeps dead ones, e.g. an unused intermediate of the model)."""
    live: set = set()
    stack = list(out_node.all_input_nodes)
    while stack:
        n = stack.pop()
        if n in live:
            continue
        live.add(n)
        stack.extend(n.all_input_nodes)
    return live

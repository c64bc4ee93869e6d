"""Translation of element-wise ATen ops into Triton expressions, node by node of a traced graph.

:class:`GraphTranslator` names each node's value — a fresh variable, an identical expression's
variable (common-subexpression elimination) or a literal — and moves loop-invariant nodes (parameters
and constants only) to a prologue computed once per neuron. Functions without a Triton builtin
(expm1, log1p, tanh, cosh, sinh) are expanded into numerically careful ``tl.exp``/``tl.log``
statements. An op without a translation raises :class:`~.errors.UnsupportedOpError` naming it.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .errors import UnsupportedOpError

__all__ = ["GraphTranslator", "triton_literal", "SUPPORTED_OPS"]


def triton_literal(x: Any) -> str:
    """A Python literal for a constant of the graph (a bool, or a float; non-finite ones are refused).

    Parameters
    ----------
    x : bool, int or float

    Returns
    -------
    str
        ``"True"``/``"False"`` or ``repr(float(x))``.

    Raises
    ------
    UnsupportedOpError
        For inf or NaN, which cannot be embedded.
    """
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
    triton.language on every device-function call, which makes such calls slow.
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


#: Every op name the generator translates (for error messages and documentation).
SUPPORTED_OPS: tuple[str, ...] = tuple(sorted({*_UNARY, *_BINARY, *_HELPER_OPS, "add", "sub", "rsub", "pow", "where",
                                               "clamp"}))


class GraphTranslator:
    """Translates the nodes of an element-wise fx graph, in order, into straight-line Triton statements.

    Parameters
    ----------
    model_name : str
        Named in error messages.
    graph_module : torch.fx.GraphModule
        The traced graph (its attributes hold captured constant tensors).
    inputs : dict
        Placeholder node → its name in the generated code (``t``, ``i_ext``, ``s0..``, ``p0..``).
    invariant_inputs : iterable
        The placeholder nodes that do not change during the time loop (the parameters).

    Attributes
    ----------
    names : dict
        fx node → Triton expression (a variable name or a literal).
    lines, prologue : list of str
        Statements of the loop body (``vN = ...``) and of the once-per-neuron prologue (``cN = ...``).
    ops : set of str
        The ATen ops met.
    """

    def __init__(self, model_name: str, graph_module, inputs: dict, invariant_inputs):
        self.model_name = model_name
        self.graph_module = graph_module
        self.names: dict[Any, str] = dict(inputs)
        self.lines: list[str] = []
        self.prologue: list[str] = []
        self.ops: set[str] = set()
        self._cse: dict[str, str] = {}
        # Nodes that depend on parameters and constants only are loop-invariant: they go to the prologue
        # (computed once per neuron, named cN) instead of every stage of every step (named vN).
        self._invariant: set = set(invariant_inputs)
        self._hoisting = False

    def arg(self, a) -> str:
        """The Triton expression of an op argument: a node's name, or a literal."""
        if isinstance(a, torch.fx.Node):
            return self.names[a]
        if isinstance(a, (bool, int, float)):
            return triton_literal(a)
        raise UnsupportedOpError(f"{self.model_name}: the kernel generator cannot use the argument {a!r} "
                                 f"({type(a).__name__}).")

    def bind(self, expr: str) -> str:
        """Assign ``expr`` to a fresh variable unless an identical expression already has one (CSE)."""
        if expr in self._cse:
            return self._cse[expr]
        if self._hoisting:
            var = f"c{len(self.prologue)}"
            self.prologue.append(f"{var} = {expr}")
        else:
            var = f"v{len(self.lines)}"
            self.lines.append(f"{var} = {expr}")
        self._cse[expr] = var
        return var

    def _reciprocal(self, d) -> str | None:
        """1/d as a hoisted value when d is loop-invariant (a GPU divides far more slowly than it
        multiplies; the result differs from x / d by at most an ulp or two)."""
        if isinstance(d, torch.fx.Node):
            if d not in self._invariant:
                return None
            self._hoisting = True
            r = self.bind(f"(1.0 / {self.names[d]})")
            self._hoisting = False
            return r
        if isinstance(d, (int, float)) and not isinstance(d, bool) and d != 0 and math.isfinite(1.0 / d):
            return triton_literal(1.0 / d)
        return None

    def translate(self, node) -> None:
        """Name the value of ``node`` (a get_attr constant or an ATen call), emitting its statements."""
        if node.op != "get_attr" and all(n in self._invariant for n in node.all_input_nodes):
            self._invariant.add(node)
        self._hoisting = node in self._invariant
        if node.op == "get_attr":  # a tensor constant captured from the model (torch.tensor(...))
            val = getattr(self.graph_module, node.target)
            if not isinstance(val, torch.Tensor) or val.numel() != 1:
                raise UnsupportedOpError(f"{self.model_name}: derivatives captures a constant tensor of shape "
                                         f"{tuple(getattr(val, 'shape', ()))}; only scalars can be embedded.")
            self.names[node] = triton_literal(val.item())
            self._invariant.add(node)
            return
        if node.op != "call_function" or not hasattr(node.target, "overloadpacket"):
            raise UnsupportedOpError(f"{self.model_name}: unsupported graph node {node.op} {node.target!r} in "
                                     "derivatives; only element-wise ATen ops can be generated.")
        full = str(node.target)
        self.ops.add(full)
        self.names[node] = self._call(node.target.overloadpacket.__name__, full, node.args, dict(node.kwargs))

    def _call(self, op: str, full: str, a: tuple, kw: dict) -> str:
        """The expression (usually a bound variable) of ATen op ``op`` applied to arguments ``a``, ``kw``."""
        name = self.model_name
        if op in _IDENTITY:
            if op in ("_to_copy", "to") and kw.get("dtype") not in (None, torch.float32, torch.float64):
                raise UnsupportedOpError(f"{name}: {full} to {kw.get('dtype')} has no element-wise "
                                         "float translation.")
            return self.arg(a[0])
        if op in _CONSTANT:
            return triton_literal(a[_CONSTANT[op]])
        if op in ("zeros_like", "zeros"):
            return "0.0"
        if op in ("ones_like", "ones"):
            return "1.0"
        if op in ("add", "sub", "rsub"):
            return self._add_sub(op, a, kw)
        if op in ("div", "true_divide") and kw.get("rounding_mode") is not None:
            raise UnsupportedOpError(f"{name}: {full} with rounding_mode={kw['rounding_mode']!r} is not "
                                     "supported by the kernel generator.")
        if op in ("div", "true_divide") and not self._hoisting and (r := self._reciprocal(a[1])) is not None:
            return self.bind(f"({self.arg(a[0])} * {r})")
        if op in _BINARY or op in _HELPER_OPS or op in _UNARY:
            want = 2 if op in _BINARY else 1
            if len(a) != want or kw:
                raise UnsupportedOpError(f"{name}: {full} with arguments {a} {kw} is not supported.")
            if op in _BINARY:
                return self.bind(_BINARY[op].format(self.arg(a[0]), self.arg(a[1])))
            if op in _HELPER_OPS:
                return _expand_helper(op, self.arg(a[0]), self.bind)
            return self.bind(_UNARY[op].format(self.arg(a[0])))
        if op == "pow":
            return self.bind(self._pow(full, a[0], a[1]))
        if op == "where":
            return self.bind(f"tl.where({self.arg(a[0])}, {self.arg(a[1])}, {self.arg(a[2])})")
        if op in ("clamp", "clamp_min", "clamp_max"):
            return self._clamp(op, a, kw)
        raise UnsupportedOpError(
            f"{name}: derivatives uses {full}, which the fused-kernel generator cannot translate "
            f"to Triton (supported: {', '.join(SUPPORTED_OPS)}). Rewrite the model with the functions of "
            "neo_pinn.models.elementwise, or use engine='torch'."
        )

    def _add_sub(self, op: str, a: tuple, kw: dict) -> str:
        """add / sub: x ± alpha·y; rsub(x, c, alpha) = c − alpha·x."""
        x, y = self.arg(a[0]), self.arg(a[1])
        alpha = kw.get("alpha", a[2] if len(a) > 2 else 1)
        if op == "rsub":
            if alpha != 1:
                x = f"({triton_literal(alpha)} * {x})"
            return self.bind(f"({y} - {x})")
        if alpha != 1:
            y = f"({triton_literal(alpha)} * {y})"
        return self.bind(f"({x} {'+' if op == 'add' else '-'} {y})")

    def _pow(self, full: str, base, ex) -> str:
        """base ** ex: integer powers by repeated multiplication (exact sign), else through exp and log."""
        if isinstance(base, torch.fx.Node) and not isinstance(ex, torch.fx.Node):
            x, e = self.arg(base), float(ex)
            if e == int(e) and -8 <= e <= 8:
                ie = int(abs(e))
                expr = "1.0" if ie == 0 else " * ".join([x] * ie)
                return f"(1.0 / ({expr}))" if e < 0 else f"({expr})"
            if e == 0.5:
                return f"tl.sqrt({x})"
            return f"tl.exp({triton_literal(e)} * tl.log({x}))"
        if not isinstance(base, torch.fx.Node):  # c ** x
            c = float(base)
            if c <= 0:
                raise UnsupportedOpError(f"{self.model_name}: {full} with a non-positive base {c} is not supported.")
            return f"tl.exp({self.arg(ex)} * {triton_literal(math.log(c))})"
        return f"tl.exp({self.arg(ex)} * tl.log({self.arg(base)}))"

    def _clamp(self, op: str, a: tuple, kw: dict) -> str:
        """clamp / clamp_min / clamp_max as NaN-propagating maximum then minimum."""
        x = self.arg(a[0])
        lo = a[1] if op in ("clamp", "clamp_min") and len(a) > 1 else kw.get("min")
        hi = (a[2] if len(a) > 2 else kw.get("max")) if op == "clamp" else (a[1] if op == "clamp_max" else None)
        if lo is not None:
            x = self.bind(_BINARY["maximum"].format(x, self.arg(lo)))
        if hi is not None:
            x = self.bind(_BINARY["minimum"].format(x, self.arg(hi)))
        return x

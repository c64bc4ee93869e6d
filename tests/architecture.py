"""Static checks of the package's structure: one-way layers, no import cycles, no private names across
modules, and the size of modules and functions. Used by ``tests/test_architecture.py``.

Every import statement counts, function-level ones too (a lazy import is still a dependency); imports under
``if TYPE_CHECKING:`` do not (they never run). Importing ``a.b.c`` also runs the packages ``a.b`` (not the
root package, which every import runs). The layers, low to high, are :data:`LAYERS`: a module may import
modules of its own layer or lower, never higher; a deprecated alias module may import anything but nothing
may import it.
"""

from __future__ import annotations

import ast
import fnmatch
from dataclasses import dataclass
from pathlib import Path

#: (layer name, module patterns), lowest first; the first pattern that matches a module gives its layer.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundation", ("neo_pinn.errors", "neo_pinn.units", "neo_pinn.hookspecs", "neo_pinn.storage",
                    "neo_pinn.deprecation", "neo_pinn.trace", "neo_pinn.noise", "neo_pinn.transforms",
                    "neo_pinn.residuals", "neo_pinn.config", "neo_pinn.models", "neo_pinn.models.*")),
    ("numerics", ("neo_pinn.simulation", "neo_pinn.simulation.*", "neo_pinn.reference", "neo_pinn.features",
                  "neo_pinn.features.*", "neo_pinn.cell", "neo_pinn.cell.*")),
    ("io read", ("neo_pinn.io", "neo_pinn.io.convert", "neo_pinn.io.reading", "neo_pinn.io.channels",
                 "neo_pinn.io.recording", "neo_pinn.io.stimulus_*", "neo_pinn.io.neo_files_reader")),
    ("plugins", ("neo_pinn.registry", "neo_pinn.plugins")),
    ("problem", ("neo_pinn.problem",)),
    ("result", ("neo_pinn.result", "neo_pinn.derived", "neo_pinn.forecast")),
    ("verdict", ("neo_pinn.verdict",)),
    ("estimator", ("neo_pinn.estimator", "neo_pinn.toolkit")),
    ("backends", ("neo_pinn_lsq", "neo_pinn_lsq.*", "neo_pinn_pinn", "neo_pinn_pinn.*", "neo_pinn_ga",
                  "neo_pinn_ga.*", "neo_pinn_amortized", "neo_pinn_amortized.*", "neo_pinn_example",
                  "neo_pinn_example.*")),
    ("io write", ("neo_pinn.io.attach", "neo_pinn.io.attach_read", "neo_pinn.io.fit_belongs", "neo_pinn.io.neo_writers", "neo_pinn.io.synthetic_nwb",
                  "neo_pinn.io.nwb_results", "neo_pinn.report",
                  "neo_pinn.report_cell", "neo_pinn.report_signals")),
    ("api", ("neo_pinn", "neo_pinn.api", "neo_pinn.cellfit", "neo_pinn.cli", "neo_pinn.cli_args",
             "neo_pinn.cli_plugins", "neo_pinn.batch",
             "neo_pinn.testing", "neo_pinn.testing.*")),
)
#: deprecated aliases of moved modules: they may import anything, nothing may import them
ALIASES: tuple[str, ...] = ("neo_pinn.simulate", "neo_pinn.fused", "neo_pinn.models._math", "neo_pinn.io.files",
                            "neo_pinn_pinn.prepare",
                            "neo_pinn.io.adapters", "neo_pinn.io.stimulus", "neo_pinn.io.stimulus_hooks",
                            "neo_pinn.io.neo_files", "neo_pinn.io.nwb")
#: (importer, imported) pairs left out of the graph: lazy imports inside a module ``__getattr__`` that serve a
#: deprecated alias of a moved name (they point upward by nature)
ALIAS_EDGES: tuple[tuple[str, str], ...] = (
    ("neo_pinn.features", "neo_pinn.testing.efel"),  # neo_pinn.features.efel_agreement, moved to testing
)
ROOTS = ("neo_pinn", "neo_pinn_lsq", "neo_pinn_pinn", "neo_pinn_ga", "neo_pinn_amortized", "neo_pinn_example")
MAX_MODULE_LINES = 700
MAX_FUNCTION_LINES = 120


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    is_package: bool


def find_modules(*folders: Path) -> dict[str, Module]:
    """Every module of the project's packages below ``folders`` (a folder holding ``neo_pinn`` etc.)."""
    out: dict[str, Module] = {}
    for folder in folders:
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder)
            if rel.parts[0] not in ROOTS or "build" in rel.parts:
                continue
            parts = list(rel.with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            out[".".join(parts)] = Module(".".join(parts), path, is_package)
    return out


def layer_of(name: str) -> str | None:
    """The layer of module ``name`` ("alias" for a deprecated alias); None when no pattern matches."""
    if name in ALIASES:
        return "alias"
    for layer, patterns in LAYERS:
        if any(fnmatch.fnmatchcase(name, p) for p in patterns):
            return layer
    return None


def _rank(layer: str) -> int:
    return [name for name, _ in LAYERS].index(layer)


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                for n in ast.walk(sub):
                    if hasattr(n, "lineno"):
                        lines.add(n.lineno)
    return lines


@dataclass(frozen=True)
class Import:
    target: str          # imported module
    names: tuple[str, ...]  # names taken from it (from ... import names)
    line: int


def imports_of(mod: Module, modules: dict[str, Module]) -> list[Import]:
    """The project modules ``mod`` imports (resolved), and the names it takes from each."""
    tree = ast.parse(mod.path.read_text(), str(mod.path))
    skip = _type_checking_lines(tree)
    package = mod.name if mod.is_package else mod.name.rpartition(".")[0]
    out: list[Import] = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in ROOTS:
                    out.append(Import(alias.name, (), node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] not in ROOTS:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in modules:  # `from package import submodule`
                    out.append(Import(sub, (), node.lineno))
                else:
                    out.append(Import(target, (alias.name,), node.lineno))
    return out


def _executed(target: str) -> list[str]:
    """Modules that run when ``target`` is imported: it and its parent packages, except the root package."""
    parts = target.split(".")
    return [".".join(parts[:k]) for k in range(2, len(parts) + 1)] or [target]


def dependency_graph(modules: dict[str, Module]) -> dict[str, set[str]]:
    """Module → the project modules importing it runs (own parent packages and the root excluded)."""
    graph: dict[str, set[str]] = {}
    for name, mod in modules.items():
        deps: set[str] = set()
        for imp in imports_of(mod, modules):
            if (name, imp.target) in ALIAS_EDGES:  # lazy and deprecated: listed, not followed
                continue
            for dep in _executed(imp.target):
                if dep in modules and dep != name and not name.startswith(dep + "."):
                    deps.add(dep)
        graph[name] = deps
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def layer_violations(modules: dict[str, Module], graph: dict[str, set[str]]) -> list[str]:
    """Unclassified modules, upward imports and imports of deprecated aliases."""
    problems = []
    for name in sorted(modules):
        layer = layer_of(name)
        if layer is None:
            problems.append(f"{name}: in no layer (add it to tests/architecture.py LAYERS)")
            continue
        for dep in sorted(graph[name]):
            dep_layer = layer_of(dep)
            if dep_layer is None or layer == "alias":
                continue
            if dep_layer == "alias":
                problems.append(f"{name} imports the deprecated alias {dep}")
            elif _rank(dep_layer) > _rank(layer):
                problems.append(f"{name} ({layer}) imports {dep} ({dep_layer}), a higher layer")
    return problems


def private_name_uses(modules: dict[str, Module]) -> list[str]:
    """``from x import _y`` and ``x._y`` where x is another project module (dunder names allowed)."""
    problems = []

    def private(n: str) -> bool:
        return n.startswith("_") and not (n.startswith("__") and n.endswith("__"))

    for name, mod in sorted(modules.items()):
        tree = ast.parse(mod.path.read_text(), str(mod.path))
        bound: dict[str, str] = {}  # local name → project module it stands for
        for imp in imports_of(mod, modules):
            for n in imp.names:
                if private(n):
                    problems.append(f"{name}:{imp.line} imports the private name {n} of {imp.target}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in modules and alias.asname:
                        bound[alias.asname] = alias.name
        for imp in imports_of(mod, modules):
            if not imp.names and imp.target in modules:
                bound.setdefault(imp.target.rpartition(".")[2], imp.target)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and private(node.attr)
                    and node.value.id in bound and bound[node.value.id] != name):
                problems.append(f"{name}:{node.lineno} uses the private name {node.attr} of {bound[node.value.id]}")
    return problems


def size_violations(modules: dict[str, Module]) -> list[str]:
    """Modules over :data:`MAX_MODULE_LINES` lines and functions over :data:`MAX_FUNCTION_LINES` lines."""
    problems = []
    for name, mod in sorted(modules.items()):
        text = mod.path.read_text()
        n_lines = len(text.splitlines())
        if n_lines > MAX_MODULE_LINES:
            problems.append(f"{name}: {n_lines} lines (> {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    problems.append(f"{name}.{node.name} (line {node.lineno}): {length} lines (> {MAX_FUNCTION_LINES})")
    return problems

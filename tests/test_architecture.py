"""The package's structure: one-way layers, no import cycles, no private names across modules, sizes.

See ``tests/architecture.py`` for the rules and the layer table. Each check also runs on a small package
written on the fly with one deliberate violation, so a check that passes is known to be able to fail.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import architecture as arch

REPO = Path(__file__).resolve().parents[1]
FOLDERS = (REPO, REPO / "plugins", REPO / "plugins" / "example_plugin")


@pytest.fixture(scope="module")
def project():
    modules = arch.find_modules(*FOLDERS)
    assert "neo_pinn.estimator" in modules and "neo_pinn_ga.plugin" in modules
    return modules, arch.dependency_graph(modules)


def test_no_import_cycles(project):
    _, graph = project
    assert arch.find_cycles(graph) == []


def test_every_module_has_a_layer_and_imports_only_downwards(project):
    modules, graph = project
    assert arch.layer_violations(modules, graph) == []


def test_no_private_name_is_used_across_modules(project):
    modules, _ = project
    assert arch.private_name_uses(modules) == []


def test_modules_and_functions_stay_small(project):
    modules, _ = project
    assert arch.size_violations(modules) == []


# ---------------------------------------------------------------------- the checks can fail
def _write(root: Path, files: dict[str, str]) -> dict:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return arch.find_modules(root)


def test_checks_catch_a_cycle_an_upward_import_and_a_private_name(tmp_path):
    modules = _write(tmp_path, {
        "neo_pinn/__init__.py": "",
        "neo_pinn/errors.py": "def f():\n    from .problem import thing\n",     # foundation → problem: upward
        "neo_pinn/problem.py": "from .result import _helper\nthing = 1\n",    # private name of another module
        "neo_pinn/result.py": "from . import problem\n\ndef g():\n    return problem._hidden\n",  # cycle + private
        "neo_pinn/api.py": "import typing\nif typing.TYPE_CHECKING:\n    from .simulate import x\n",  # not at run time
        "neo_pinn/cli.py": "from .simulate import y\n",                        # a deprecated alias
        "neo_pinn/simulate.py": "from .api import z\n",
    })
    graph = arch.dependency_graph(modules)
    assert arch.find_cycles(graph) == [["neo_pinn.problem", "neo_pinn.result"]]
    layers = arch.layer_violations(modules, graph)
    assert any("neo_pinn.errors (foundation) imports neo_pinn.problem (problem)" in p for p in layers)
    assert any("neo_pinn.cli imports the deprecated alias neo_pinn.simulate" in p for p in layers)
    assert not any(p.startswith("neo_pinn.api ") for p in layers)
    private = arch.private_name_uses(modules)
    assert any("imports the private name _helper of neo_pinn.result" in p for p in private)
    assert any("uses the private name _hidden of neo_pinn.problem" in p for p in private)


def test_size_check_catches_a_long_function(tmp_path):
    body = "\n".join(f"    x{k} = {k}" for k in range(arch.MAX_FUNCTION_LINES))
    modules = _write(tmp_path, {"neo_pinn/__init__.py": "", "neo_pinn/trace.py": f"def long():\n{body}\n"})
    assert arch.size_violations(modules) == [f"neo_pinn.trace.long (line 1): {arch.MAX_FUNCTION_LINES + 1} lines "
                                             f"(> {arch.MAX_FUNCTION_LINES})"]

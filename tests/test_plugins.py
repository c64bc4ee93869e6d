"""Plugin registry: built-ins come through entry points; third parties plug in; failures are isolated."""

from __future__ import annotations

import importlib
import subprocess
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest

import neo_pinn
from neo_pinn import plugins
from neo_pinn.errors import DuplicateNameError, PluginLoadWarning, UnknownNameError
from neo_pinn.hookspecs import hookimpl

EXAMPLE = Path(__file__).resolve().parents[1] / "plugins" / "example_plugin"


@pytest.fixture()
def fresh_plugins():
    plugins.reset()
    yield plugins
    plugins.reset()


def test_import_loads_no_plugins():
    code = ("import sys, neo_pinn; from neo_pinn import plugins; "
            "assert plugins._state is None; assert 'neo_pinn_lsq' not in sys.modules; "
            "import torch; assert not torch.cuda.is_initialized(); print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_builtin_models_and_backends_registered_through_entry_points(fresh_plugins):
    models = neo_pinn.list_models()
    for name in ("morris_lecar", "morris_lecar_burster", "hodgkin_huxley", "fitzhugh_nagumo", "butera_pbc"):
        assert models[name] == "core_models"
    assert neo_pinn.list_backends()["lsq"] == "lsq"


def test_unknown_names_list_what_exists(fresh_plugins):
    with pytest.raises(UnknownNameError, match="morris_lecar"):
        neo_pinn.get_model("morris_lecarr")
    with pytest.raises(UnknownNameError, match="lsq"):
        neo_pinn.get_backend("nope")


def test_example_plugin_registers_and_fits(fresh_plugins, example_module):
    mod = example_module
    plugins.register_plugin(mod, name="example")
    assert neo_pinn.list_models()["passive_membrane"] == "example"
    assert neo_pinn.list_backends()["random_search"] == "example"
    tr, _ = neo_pinn.synthetic_trace("passive_membrane", values={"C": 100.0, "gL": 5.0}, stimulus=50.0,
                                     duration=100.0, rate_hz=10000, noise="white:sigma=0.2mV", seed=1)
    res = neo_pinn.estimate(tr, "passive_membrane", backend="random_search", free=["gL"],
                            values={"C": 100.0}, backend_options={"n_samples": 512}, seed=3)
    # 50 pA into 5 nS gives a 10 mV step; random search over [0.1, 100] nS finds gL within 10 %.
    assert abs(res["gL"].value - 5.0) / 5.0 < 0.1
    assert res.backend == "random_search" and res.provenance["seed"] == 3


def test_duplicate_name_names_both_plugins(fresh_plugins, example_module):
    mod = example_module
    plugins.register_plugin(mod, name="example")
    clash = types.SimpleNamespace(neo_pinn_register_backends=hookimpl(
        lambda registry: registry.register("random_search", mod.RandomSearch)))
    with pytest.raises(DuplicateNameError, match=r"example.*clash|clash.*example"):
        plugins.register_plugin(clash, name="clash")


def test_broken_plugin_is_a_warning_not_a_crash(fresh_plugins):
    def broken(registry):
        raise RuntimeError("boom")

    bad = types.SimpleNamespace(neo_pinn_register_models=hookimpl(broken))
    with pytest.warns(PluginLoadWarning, match="bad_plugin.*boom"):
        plugins.register_plugin(bad, name="bad_plugin")
    assert "morris_lecar" in neo_pinn.list_models()
    assert "bad_plugin" in plugins.get_state().failed


def test_broken_entry_point_is_isolated(fresh_plugins, monkeypatch):
    real = importlib.metadata.entry_points

    class FakeEP:
        name, value, group = "broken_ep", "no_such_module_xyz:plugin", "neo_pinn"

        def load(self):
            return importlib.import_module("no_such_module_xyz")

    def fake(group=None, **kw):
        eps = list(real(group=group, **kw)) if group else real(**kw)
        return eps + [FakeEP()] if group == "neo_pinn" else eps

    monkeypatch.setattr(importlib.metadata, "entry_points", fake)
    with pytest.warns(PluginLoadWarning, match="broken_ep"):
        state = plugins.get_state()
    assert "lsq" in state.backends


def test_after_fit_hook_sees_every_fit(fresh_plugins, example_module):
    seen = []
    spy = types.SimpleNamespace(neo_pinn_after_fit=hookimpl(lambda problem, result: seen.append(result.backend)))
    plugins.register_plugin(spy, name="spy")
    mod = example_module
    plugins.register_plugin(mod, name="example")
    tr, _ = neo_pinn.synthetic_trace("passive_membrane", stimulus=50.0, duration=20.0, rate_hz=5000)
    neo_pinn.estimate(tr, "passive_membrane", backend="random_search", free=["gL"],
                      backend_options={"n_samples": 8})
    assert seen == ["random_search"]


@pytest.mark.timeout(300)
def test_example_plugin_installs_as_a_distribution(tmp_path):
    """pip-install the template into a private folder and find it through its entry point."""
    import shutil

    target = tmp_path / "site"
    source = tmp_path / "example_plugin"  # a copy: building in place would leave build/ in the repository
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q",
                           "--target", str(target), str(source)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"pip could not build the example plugin here: {proc.stderr[-300:]}")
    code = ("import neo_pinn; print(neo_pinn.list_models()['passive_membrane'], "
            "neo_pinn.list_backends()['random_search'])")
    env = dict(__import__("os").environ, PYTHONPATH=str(target))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["example", "example"]


def test_third_party_stimulus_finder_wins_over_builtins(fresh_plugins, tmp_path):
    """neo_pinn_find_stimulus is firstresult: a plugin's finder is asked before the built-in ones."""
    from neo_pinn.cli import main

    path = tmp_path / "s.nwb"
    assert main(["simulate", "--model", "morris_lecar", "--duration", "50", "--rate", "5000",
                 "--stimulus", "const:amp=60pA", "--out", str(path)]) == 0

    def finder(signal, segment):
        return np.full(signal.shape[0], 12.5), "my-rig"

    plugins.register_plugin(types.SimpleNamespace(neo_pinn_find_stimulus=hookimpl(finder)), name="rig")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the NWB stimulus series disagrees with the rig's: a warning
        rec = neo_pinn.load_recording(path)
    tr = rec.traces()[0]
    assert tr.stimulus_source == "my-rig" and np.all(tr.i_ext == 12.5)


def _fake_entry_point(monkeypatch, name: str, module):
    """Make ``module`` look like an installed third-party plugin called ``name``."""
    real = importlib.metadata.entry_points

    class FakeEP:
        value, group, dist = f"{module.__name__}", "neo_pinn", None

        def load(self):
            return module

    FakeEP.name = name

    def fake(group=None, **kw):
        eps = list(real(group=group, **kw)) if group else real(**kw)
        return eps + [FakeEP()] if group == "neo_pinn" else eps

    monkeypatch.setattr(importlib.metadata, "entry_points", fake)


def test_autoload_of_third_party_plugins_can_be_switched_off(fresh_plugins, monkeypatch, example_module):
    mod = example_module
    _fake_entry_point(monkeypatch, "example", mod)
    assert "random_search" in neo_pinn.list_backends()
    plugins.reset()
    monkeypatch.setenv(plugins.AUTOLOAD_ENV, "1")
    backends = neo_pinn.list_backends()
    assert "random_search" not in backends and {"lsq", "ga", "pinn"} <= set(backends)
    plugins.register_plugin(mod, name="example")  # still possible by hand
    assert neo_pinn.list_backends()["random_search"] == "example"


def test_named_plugins_can_be_blocked(fresh_plugins, monkeypatch, example_module):
    mod = example_module
    _fake_entry_point(monkeypatch, "example", mod)
    monkeypatch.setenv(plugins.BLOCK_ENV, "example, ga")
    backends = neo_pinn.list_backends()
    assert "random_search" not in backends and "ga" not in backends and "lsq" in backends
    assert "example" not in plugins.get_state().plugin_names()


def test_a_backend_is_keyed_by_its_class_name(fresh_plugins, example_module):
    mod = example_module
    from neo_pinn.errors import ConfigurationError
    from neo_pinn.registry import BackendRegistry

    reg = BackendRegistry()
    reg.register(mod.RandomSearch)
    assert reg.get("random_search") is mod.RandomSearch
    with pytest.raises(ConfigurationError, match="named 'random_search' but was registered as 'other'"):
        BackendRegistry().register("other", mod.RandomSearch)
    with pytest.raises(ConfigurationError, match="subclass of neo_pinn.Estimator"):
        BackendRegistry().register(object)


def test_hook_spec_version_is_exposed():
    major, minor = (int(x) for x in neo_pinn.HOOKSPEC_VERSION.split("."))
    assert (major, minor) >= (1, 1)


def test_plugin_packages_do_not_import_their_backends_on_import():
    code = ("import sys, neo_pinn_lsq, neo_pinn_pinn, neo_pinn_ga, neo_pinn_lsq.plugin, neo_pinn_pinn.plugin, "
            "neo_pinn_ga.plugin\n"
            "heavy = [m for m in sys.modules if m.split('.')[0] in ('neo_pinn_lsq', 'neo_pinn_pinn', 'neo_pinn_ga') "
            "and m.split('.')[-1] not in ('plugin',) and '.' in m]\n"
            "assert not heavy, heavy\n"
            "from neo_pinn_pinn import PINN\nassert PINN.name == 'pinn'\nprint('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"

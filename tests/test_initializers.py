"""Initializers (hook ``neo_pinn_register_initializers``): ``estimate(..., init="SCHEME:ARG")`` and
``fit --init SCHEME:ARG`` start any backend from a plugin's values, recorded in the result's provenance.

A third-party initializer is registered here through a pluggy plugin object, as an installed plugin would be;
the fits use the example plugin's passive membrane and random-search backend (a fraction of a second).
"""

from __future__ import annotations

import json
import math
import types

import pytest
import torch

import neo_pinn
from neo_pinn import plugins
from neo_pinn.cli import EXIT_BAD_INPUT, main
from neo_pinn.cli_plugins import init_argument
from neo_pinn.errors import ConfigurationError, DuplicateNameError
from neo_pinn.hookspecs import hookimpl
from neo_pinn.registry import InitializerRegistry


@pytest.fixture()
def fresh_plugins():
    plugins.reset()
    yield plugins
    plugins.reset()


@pytest.fixture()
def passive(fresh_plugins, example_module):
    """The example plugin registered; a 50 ms passive-membrane sweep at 5 kHz (sample times from 0 ms)."""
    plugins.register_plugin(example_module, name="example")
    tr, _ = neo_pinn.synthetic_trace("passive_membrane", stimulus=50.0, duration=50.0, rate_hz=5000)
    return tr


def constant_plugin(calls: list, values=None):
    """A plugin object whose initializer ``const:X`` starts gL at X (and returns whatever ``values`` adds)."""
    def const(argument, traces, model, free, device):
        """start gL at the number after the colon"""
        calls.append({"argument": argument, "samples": [tr.t.size for tr in traces], "model": model.name,
                      "free": free, "device": device})
        return {"gL": float(argument)} | dict(values or {})

    return types.SimpleNamespace(neo_pinn_register_initializers=hookimpl(lambda registry: registry.register(
        "const", const)))


def _fit(tr, init, **kw):
    return neo_pinn.estimate(tr, "passive_membrane", backend="random_search", free=["gL", "C"], init=init,
                             backend_options={"n_samples": 8}, seed=0, **kw)


# ---------------------------------------------------------------------------------------------- estimate(init=...)
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # random search's wildest draws
def test_a_third_party_initializer_starts_the_fit_on_the_windowed_sweeps(passive):
    calls: list = []
    plugins.register_plugin(constant_plugin(calls, {"C": 5000.0, "EL": -65.0}), name="const_plugin")
    res = _fit(passive, "const:7.5", window=(0.0, 20.0))
    (call,) = calls
    assert call["argument"] == "7.5" and call["samples"] == [101] and call["model"] == "passive_membrane"
    assert call["free"] == ("gL", "C") and call["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    record = res.provenance["initializer"]
    assert record["scheme"] == "const" and record["plugin"] == "const_plugin" and record["argument"] == "7.5"
    assert record["values"] == {"gL": 7.5, "C": 5000.0} and record["ignored"] == ["EL"]  # EL is not free
    assert record["clipped"] == {"C": 5000.0} and record["used"] == {"gL": 7.5, "C": 1000.0}  # C's bounds 1–1000 pF
    assert record["units"] == {"gL": "nS", "C": "pF"}
    assert res.provenance["initial_guess"] == record["used"]
    assert json.loads(res.to_json())["provenance"]["initializer"] == record  # it survives the JSON round trip
    assert neo_pinn.EstimationResult.from_json(res.to_json()).provenance["initializer"] == record


def test_initializer_values_are_clipped_into_given_bounds(passive):
    plugins.register_plugin(constant_plugin([]), name="const_plugin")
    res = _fit(passive, "const:50", bounds={"gL": (1.0, 20.0)})
    assert res.provenance["initializer"]["clipped"] == {"gL": 50.0}
    assert res.provenance["initial_guess"]["gL"] == 20.0


def test_an_unknown_or_malformed_initializer_is_refused_before_any_file_is_read(fresh_plugins, tmp_path):
    missing = tmp_path / "missing.nwb"  # never opened: the init is checked first
    with pytest.raises(ConfigurationError, match=r"Unknown initializer 'nope'.*registered: amortized"):
        neo_pinn.estimate(missing, "morris_lecar", "lsq", ["gCa"], init="nope:x")
    with pytest.raises(ConfigurationError, match=r"'SCHEME:ARGUMENT'.*Registered initializers: amortized"):
        neo_pinn.estimate(missing, "morris_lecar", "lsq", ["gCa"], init="just text")


@pytest.mark.parametrize("returned, match", [
    ([1.0], "not a mapping"), ({"gL": math.nan}, "not a finite number"), ({"gL": "x"}, "not a finite number"),
    ({"zz": 1.0}, "passive_membrane does not have")])
def test_an_initializer_returning_nonsense_is_a_configuration_error_naming_it(passive, returned, match):
    reg = types.SimpleNamespace(neo_pinn_register_initializers=hookimpl(
        lambda registry: registry.register("bad", lambda *a: returned)))
    plugins.register_plugin(reg, name="bad_plugin")
    with pytest.raises(ConfigurationError, match=rf"Initializer 'bad' \(plugin 'bad_plugin'\).*{match}"):
        _fit(passive, "bad:")


def test_the_registry_keys_initializers_by_scheme():
    reg = InitializerRegistry()
    reg.register("mine", lambda *a: {}, "my warm start")
    assert reg.get("mine").description == "my warm start" and reg.split(" mine: a:b ") == ("mine", "a:b")
    with pytest.raises(DuplicateNameError, match="registered twice"):
        reg.register("mine", lambda *a: {})
    with pytest.raises(ConfigurationError, match="callable"):
        reg.register("other", 3)
    with pytest.raises(ConfigurationError, match="Python identifier"):
        reg.register("not-a-scheme", lambda *a: {})
    for text in ("mine", ":x", "a b:c", 3):
        with pytest.raises(ConfigurationError, match="SCHEME:ARGUMENT"):
            reg.split(text)


# ---------------------------------------------------------------------------------------------- the command line
def test_fit_init_text_is_pairs_random_or_a_registered_scheme(fresh_plugins):
    pairs = lambda text: {"gCa": 4.0}  # noqa: E731 - stands in for fit's p=v reader
    assert init_argument(None, pairs) == {} and init_argument("random", pairs) == {}
    assert init_argument("gCa=4", pairs) == {"gCa": 4.0}
    assert init_argument("amortized:some/dir", pairs) == "amortized:some/dir"
    with pytest.raises(ConfigurationError, match="registered: amortized"):
        init_argument("amortised:some/dir", pairs)


def test_fit_with_an_unknown_scheme_is_one_line_listing_the_registered_ones(fresh_plugins, tmp_path, capsys):
    path = tmp_path / "ml.nwb"
    assert main(["simulate", "--model", "morris_lecar", "--duration", "50", "--rate", "5000", "-q", "--out",
                 str(path)]) == 0
    capsys.readouterr()
    rc = main(["fit", str(path), "--model", "morris_lecar", "--backend", "lsq", "--free", "gCa", "--init", "nope:x"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == EXIT_BAD_INPUT and len(err) == 1 and "Unknown initializer 'nope'" in err[0] and "amortized" in err[0]


def test_plugins_lists_initializers_and_commands(fresh_plugins, capsys):
    assert main(["plugins", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["initializers"]["amortized"] == "amortized" and d["commands"]["train"] == "amortized"
    assert main(["plugins"]) == 0
    text = capsys.readouterr().out
    assert "initializers (fit --init NAME:ARGUMENT):" in text and "commands:" in text
    assert any(line.split()[:3] == ["train", "from", "amortized"] for line in text.splitlines())


def test_hook_spec_version_says_initializers_and_commands_were_added():
    assert neo_pinn.HOOKSPEC_VERSION == "1.2"
    assert all(hasattr(neo_pinn.hookspecs.NeoPinnSpec, h) for h in
               ("neo_pinn_register_initializers", "neo_pinn_register_commands"))

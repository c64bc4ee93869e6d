"""``neo-pinn`` subcommands contributed by plugins (hook ``neo_pinn_register_commands``): in the parser after the
built-ins, with ``-q/--quiet``, through ``main()``'s error handling; clashes are errors naming the plugins; a
broken one is skipped with a warning; collecting them imports no torch."""

from __future__ import annotations

import argparse
import subprocess
import sys
import types

import pytest

from neo_pinn import plugins
from neo_pinn.cli import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_USAGE, build_parser, main
from neo_pinn.errors import ConfigurationError, DuplicateNameError, PluginLoadWarning
from neo_pinn.hookspecs import hookimpl
from neo_pinn.registry import CommandRegistry


@pytest.fixture()
def fresh_plugins():
    plugins.reset()
    yield plugins
    plugins.reset()


def greeter(name: str = "hello", add_quiet: bool = False):
    """A plugin object contributing the command ``name`` (``--who``)."""
    def add_arguments(parser):
        parser.add_argument("--who", default="world", help="whom to greet")
        if add_quiet:  # clashes with the -q the core adds
            parser.add_argument("-q", help="mine")

    def run(args):
        if args.who == "nobody":
            raise ConfigurationError("--who nobody: give somebody, e.g. --who Ada.")
        if args.who == "bug":
            raise RuntimeError("boom")
        if not args.quiet:
            print(f"hello {args.who}")
        return 0

    return types.SimpleNamespace(neo_pinn_register_commands=hookimpl(
        lambda registry: registry.register(name, "say hello", add_arguments, run)))


def subcommands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def run(capsys, *argv):
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.parametrize("loaded_first", [False, True])
def test_a_plugin_command_is_a_subcommand_with_quiet_and_main_s_error_handling(fresh_plugins, capsys, loaded_first):
    if loaded_first:  # the commands were already collected: a plugin registered later still adds its own
        plugins.get_commands()
    plugins.register_plugin(greeter(), name="greeter")
    commands = subcommands()
    assert list(commands)[-2:] in (["hello", "train"], ["train", "hello"])  # after the built-ins
    assert "(plugin greeter)" in build_parser().format_help()
    assert {"-q", "--quiet", "--who"} <= {s for a in commands["hello"]._actions for s in a.option_strings}
    assert run(capsys, "hello", "--who", "Ada")[:2] == (0, "hello Ada\n")
    assert run(capsys, "hello", "-q")[:2] == (0, "")
    rc, _, err = run(capsys, "hello", "--who", "nobody")
    assert rc == EXIT_BAD_INPUT and err.strip() == "error: --who nobody: give somebody, e.g. --who Ada."
    rc, _, err = run(capsys, "hello", "--who", "bug")
    assert rc == EXIT_INTERNAL and len(err.strip().splitlines()) == 1 and "RuntimeError: boom" in err
    with pytest.raises(SystemExit) as exc:
        main(["hello", "--no-such-flag"])
    assert exc.value.code == EXIT_USAGE


def test_a_command_named_like_a_built_in_is_a_one_line_error_naming_the_plugin(fresh_plugins, capsys):
    plugins.register_plugin(greeter("fit"), name="greeter")
    rc, _, err = run(capsys, "plugins")
    lines = err.strip().splitlines()
    assert rc == EXIT_BAD_INPUT and len(lines) == 1
    assert "'greeter' registers the command 'fit', which is a built-in" in lines[0]
    assert "NEO_PINN_BLOCK_PLUGINS=greeter" in lines[0]


def test_two_plugins_registering_one_command_name_both(fresh_plugins):
    plugins.get_commands()
    plugins.register_plugin(greeter(), name="first")
    with pytest.raises(DuplicateNameError, match="command 'hello' is registered twice: by 'first' and by 'second'"):
        plugins.register_plugin(greeter(), name="second")


def test_a_command_whose_options_fail_is_skipped_with_a_warning(fresh_plugins):
    plugins.register_plugin(greeter(add_quiet=True), name="clumsy")
    with pytest.warns(PluginLoadWarning, match="'clumsy'.*'hello'.*skipped"):
        commands = subcommands()
    assert "hello" not in commands and "train" in commands


def test_a_blocked_plugin_contributes_no_command(fresh_plugins, monkeypatch):
    monkeypatch.setenv(plugins.BLOCK_ENV, "amortized")
    assert "train" not in subcommands() and "train" not in plugins.get_commands()


def test_the_command_registry_checks_what_it_is_given():
    reg = CommandRegistry()
    reg.register("make-report", "  write a\n report ", lambda p: None, lambda a: 0)
    assert reg.get("make-report").help == "write a report"
    for name in ("Hello", "1x", "a b", "", 3):
        with pytest.raises(ConfigurationError, match="command name"):
            reg.register(name, "help", lambda p: None, lambda a: 0)
    with pytest.raises(ConfigurationError, match="one-line help"):
        reg.register("x", " ", lambda p: None, lambda a: 0)
    with pytest.raises(ConfigurationError, match="run must be callable"):
        reg.register("x", "help", lambda p: None, None)


def test_commands_are_collected_without_torch_or_any_backend():
    code = ("import sys, neo_pinn.plugins as p\n"
            "names = p.get_commands().names()\n"
            "print(names, sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'scipy', 'neo') "
            "or m.endswith('.backend')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['train'] []"

"""What plugins add to the ``neo-pinn`` command line: their subcommands, ``fit --init SCHEME:ARG`` and the
``plugins`` listing.

A plugin contributes a subcommand through the hook ``neo_pinn_register_commands`` (see
:class:`neo_pinn.registry.CommandRegistry`); :func:`add_plugin_commands` adds each after the built-ins, with
``-q/--quiet`` and the exit-status epilog like theirs. Their ``run(args)`` goes through the same ``main()``: a
:class:`~neo_pinn.errors.NeoPinnError` is one line on stderr and exit status 4. Collecting the commands imports
only the plugins' light entry-point modules (:func:`neo_pinn.plugins.get_commands`), never torch, so ``--help``
stays instant.
"""

from __future__ import annotations

import argparse
import json
import warnings
from typing import Any, Callable, Collection, Mapping

from .errors import DuplicateNameError, PluginLoadWarning

__all__ = ["add_plugin_commands", "init_argument", "cmd_plugins"]


def add_plugin_commands(sub: Any, builtin: Collection[str], *, quiet_help: str, epilog: str,
                        formatter: type[argparse.HelpFormatter]) -> None:
    """Add every plugin's subcommand to the ``neo-pinn`` parser, after the built-ins.

    Parameters
    ----------
    sub : argparse._SubParsersAction
        The parser's subcommands.
    builtin : collection of str
        The built-in command names (a plugin may not take one).
    quiet_help, epilog : str
        The ``-q/--quiet`` help text and the exit-status epilog every subcommand shows.
    formatter : type
        The help formatter of the built-ins.

    Raises
    ------
    DuplicateNameError
        A plugin registers a built-in command's name (or two plugins one name, from
        :func:`neo_pinn.plugins.get_commands`); the message names the plugin and how to block it.
    """
    from .plugins import BLOCK_ENV, get_commands

    registry = get_commands()
    for name in registry.names():
        cmd, origin = registry.get(name), registry.origin(name)
        if name in builtin:
            raise DuplicateNameError(f"Plugin {origin!r} registers the command {name!r}, which is a built-in neo-pinn "
                                     f"command; rename it in the plugin, or block the plugin with {BLOCK_ENV}={origin}.")
        kwargs = dict(help=f"{cmd.help} (plugin {origin})", description=cmd.help[:1].upper() + cmd.help[1:] + ".",
                      epilog=epilog, formatter_class=formatter)
        try:  # on a parser of its own first: a plugin whose options clash is skipped, not the whole command line
            cmd.add_arguments(_with_quiet(argparse.ArgumentParser(prog=f"neo-pinn {name}"), quiet_help))
        except Exception as exc:  # noqa: BLE001 - isolation of a broken plugin, as when plugins load
            warnings.warn(f"neo_pinn plugin {origin!r}: its command {name!r} cannot add its options and was skipped: "
                          f"{type(exc).__name__}: {exc}", PluginLoadWarning, stacklevel=2)
            continue
        parser = _with_quiet(sub.add_parser(name, **kwargs), quiet_help)
        cmd.add_arguments(parser)
        parser.set_defaults(func=cmd.run)


def _with_quiet(parser: argparse.ArgumentParser, quiet_help: str) -> argparse.ArgumentParser:
    parser.add_argument("-q", "--quiet", action="store_true", help=quiet_help)
    return parser


def init_argument(text: str | None, pairs: Callable[[str], Mapping[str, float]]) -> Mapping[str, float] | str:
    """``fit --init``: ``p=v,...`` initial guesses, or ``SCHEME:ARGUMENT`` of a registered initializer.

    Parameters
    ----------
    text : str or None
        The flag's value.
    pairs : callable
        Reads ``p=v,...`` text into numbers (canonical units).

    Returns
    -------
    dict or str
        {} for no value or ``random``; the text itself when it names an initializer (the part before the first
        colon holds no ``=``), which :func:`neo_pinn.estimate` runs; else the guesses.

    Raises
    ------
    ConfigurationError
        An initializer scheme no plugin registered (the message lists those there are), before any file is read.
    """
    if text is None or text.strip() in ("", "random"):
        return {}
    scheme, sep, _ = text.partition(":")
    if sep and "=" not in scheme and "," not in scheme:
        from .plugins import get_state

        get_state().initializers.split(text.strip())
        return text.strip()
    return pairs(text)


def cmd_plugins(args) -> int:
    """``neo-pinn plugins``: models, backends, initializers and commands with the plugin of each, and failures."""
    from .plugins import get_commands, get_state

    state = get_state()
    commands = get_commands()
    rows = {"models": {n: state.models.origin(n) for n in state.models.names()},
            "backends": {n: state.backends.origin(n) for n in state.backends.names()},
            "initializers": {n: state.initializers.origin(n) for n in state.initializers.names()},
            "commands": {n: commands.origin(n) for n in commands.names()},
            "failed": dict(state.failed)}
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    lines = ["models:"] + [f"  {n:<22} from {o:<14} presets: {', '.join(state.models.get(n).presets)}"
                           for n, o in rows["models"].items()]
    lines += ["backends:"] + [f"  {n:<22} from {o:<14} {state.backends.get(n).description}"
                              for n, o in rows["backends"].items()]
    lines += ["initializers (fit --init NAME:ARGUMENT):"] + [
        f"  {n:<22} from {o:<14} {state.initializers.get(n).description}" for n, o in rows["initializers"].items()]
    lines += ["commands:"] + [f"  {n:<22} from {o:<14} {commands.get(n).help}" for n, o in rows["commands"].items()]
    print("\n".join(lines + [f"  failed plugin {n}: {why}" for n, why in rows["failed"].items()]))
    return 0

"""Lazy, isolated plugin loading through pluggy, and the registries the plugins fill.

Plugins are found through the entry-point group ``neo_pinn`` (the built-ins too). Nothing is loaded at
``import neo_pinn``; the first call that needs a registry or a hook loads them. Registries are filled by
pluggy hook calls made one plugin at a time (``subset_hook_caller``), so a plugin that fails to import or
to register is skipped with a :class:`~neo_pinn.errors.PluginLoadWarning` naming it, what it registered
is undone, and the rest work. A name registered by two plugins is a :class:`DuplicateNameError`.

Environment switches (read when the plugins load):

``NEO_PINN_DISABLE_PLUGIN_AUTOLOAD=1``
    Load only the plugins that ship with neo-pinn itself (models, stimulus finders, built-in backends);
    third-party plugins can still be registered by hand with :func:`register_plugin`.
``NEO_PINN_BLOCK_PLUGINS=name1,name2``
    Never load or register the plugins with these entry-point names (pluggy's block list).

The ``neo-pinn`` subcommands that plugins contribute (hook ``neo_pinn_register_commands``) are collected apart, by
:func:`get_commands`: the command line needs them to build its parser, and ``--help`` must stay instant, so only the
plugins' (light) entry-point modules are imported and only that hook is called — no model, backend or torch.
"""

from __future__ import annotations

import importlib.metadata
import os
import threading
import types
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import pluggy

from .errors import DuplicateNameError, PluginLoadWarning
from .hookspecs import PROJECT, NeoPinnSpec
from .registry import BackendRegistry, CommandRegistry, InitializerRegistry, ModelRegistry, Registry

__all__ = ["ENTRY_POINT_GROUP", "AUTOLOAD_ENV", "BLOCK_ENV", "BUILTIN_DISTRIBUTION", "PluginState", "get_state",
           "get_commands", "register_plugin", "reset", "stimulus_finder", "fire_after_fit"]

ENTRY_POINT_GROUP = "neo_pinn"
AUTOLOAD_ENV = "NEO_PINN_DISABLE_PLUGIN_AUTOLOAD"
BLOCK_ENV = "NEO_PINN_BLOCK_PLUGINS"
#: the distribution whose entry points are the built-ins (always loaded, first)
BUILTIN_DISTRIBUTION = "neo-pinn"
#: hooks that fill a registry, and the registry each fills
_REGISTERING_HOOKS = (("neo_pinn_register_models", "models"), ("neo_pinn_register_backends", "backends"),
                      ("neo_pinn_register_initializers", "initializers"))
_lock = threading.RLock()
_state: "PluginState | None" = None
#: the plugins' commands (:func:`get_commands`), the plugins registered by hand (their commands count too) and the
#: failures already warned about (each once per process, though both loaders meet them)
_commands: tuple[pluggy.PluginManager, CommandRegistry] | None = None
_by_hand: list[tuple[str, object]] = []
_warned: set[tuple[str, str]] = set()


@dataclass
class PluginState:
    """The loaded plugin manager, the registries it filled and the plugins that failed."""

    manager: pluggy.PluginManager
    models: ModelRegistry = field(default_factory=ModelRegistry)
    backends: BackendRegistry = field(default_factory=BackendRegistry)
    initializers: InitializerRegistry = field(default_factory=InitializerRegistry)
    failed: dict[str, str] = field(default_factory=dict)

    def plugin_names(self) -> list[str]:
        """Names of the registered plugins, in loading order."""
        return [name for name, plugin in self.manager.list_name_plugin() if plugin is not None]


def _truthy(value: str | None) -> bool:
    return str(value or "").strip().lower() not in ("", "0", "false", "no", "off")


def _skip(state: PluginState | None, name: str, exc: Exception, what: str) -> None:
    if state is not None:
        state.failed[name] = f"{type(exc).__name__}: {exc}"
    text = f"neo_pinn plugin {name!r} {what} and was skipped: {type(exc).__name__}: {exc}"
    if (name, text) not in _warned:
        _warned.add((name, text))
        warnings.warn(text, PluginLoadWarning, stacklevel=4)


def _hashable(plugin: object, name: str) -> object:
    """The plugin itself, or, when it cannot be hashed (a ``SimpleNamespace``), a module holding its attributes.

    pluggy keeps plugins in sets (``subset_hook_caller``), so they must be hashable; the hook
    implementations are the same function objects, markers included.
    """
    try:
        hash(plugin)
        return plugin
    except TypeError:
        view = types.ModuleType(name)
        view.__dict__.update({k: v for k, v in vars(plugin).items() if not k.startswith("__")})
        return view


def _fill_registries(state: PluginState, name: str, plugin: object) -> None:
    """Call the registering hooks of one plugin (pluggy's own hook call, restricted to that plugin)."""
    pm = state.manager
    others = [p for _, p in pm.list_name_plugin() if p is not None and p is not plugin]
    registries: list[Registry] = [getattr(state, attr) for _, attr in _REGISTERING_HOOKS]
    snapshots = [r.snapshot() for r in registries]
    try:
        for hook_name, attr in _REGISTERING_HOOKS:
            registry = getattr(state, attr)
            with registry.registering_for(name):
                pm.subset_hook_caller(hook_name, remove_plugins=others)(registry=registry)
    except DuplicateNameError:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken third-party plugin must not break the others
        for registry, snapshot in zip(registries, snapshots):  # undo what it registered in either registry
            registry.restore(snapshot)
        pm.unregister(plugin)
        _skip(state, name, exc, "failed to register")


def _admitted(pm: pluggy.PluginManager, state: PluginState | None, name: str, plugin: object) -> object | None:
    """The plugin registered in ``pm`` under ``name``; None when blocked, already there, or refused by pluggy."""
    plugin = _hashable(plugin, name)
    if pm.is_blocked(name) or pm.is_registered(plugin) or pm.has_plugin(name):
        return None
    try:
        pm.register(plugin, name=name)
    except Exception as exc:  # noqa: BLE001 - e.g. a hook implementation with a wrong signature
        _skip(state, name, exc, "failed its hook validation")
        return None
    return plugin


def _register(state: PluginState, name: str, plugin: object) -> None:
    plugin = _admitted(state.manager, state, name, plugin)
    if plugin is not None:
        _fill_registries(state, name, plugin)


def _entry_points() -> tuple[list, Callable[[Any], bool]]:
    eps = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))

    def builtin(ep) -> bool:
        dist = getattr(ep, "dist", None)
        return dist is not None and dist.name == BUILTIN_DISTRIBUTION

    # built-ins first (the core ones before the built-in backends), so that a third party's duplicate
    # name is the one reported
    return sorted(eps, key=lambda e: (not builtin(e), not e.name.startswith("core"), e.name)), builtin


def _load() -> PluginState:
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(NeoPinnSpec)
    state = PluginState(manager=pm)
    for name in filter(None, (x.strip() for x in os.environ.get(BLOCK_ENV, "").split(","))):
        pm.set_blocked(name)
    third_party = not _truthy(os.environ.get(AUTOLOAD_ENV))
    eps, builtin = _entry_points()
    for ep in eps:
        if pm.is_blocked(ep.name) or not (third_party or builtin(ep)):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # noqa: BLE001 - isolation of broken plugins is the point
            _skip(state, ep.name, exc, f"({ep.value}) could not be imported")
            continue
        _register(state, ep.name, plugin)
    return state


def _is_core(ep) -> bool:
    """Whether an entry point is one of the core package's own (models, stimulus finders): they contribute no
    command, and importing them imports torch."""
    return str(getattr(ep, "value", "")).split(":")[0].split(".")[0] == "neo_pinn"


def _add_commands(pm: pluggy.PluginManager, registry: CommandRegistry, name: str, plugin: object) -> None:
    """Register one plugin in the commands' manager and call its ``neo_pinn_register_commands``."""
    plugin = _admitted(pm, None, name, plugin)
    if plugin is None:
        return
    others = [p for _, p in pm.list_name_plugin() if p is not None and p is not plugin]
    snapshot = registry.snapshot()
    try:
        with registry.registering_for(name):
            pm.subset_hook_caller("neo_pinn_register_commands", remove_plugins=others)(registry=registry)
    except DuplicateNameError:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken third-party plugin must not break the command line
        registry.restore(snapshot)
        pm.unregister(plugin)
        _skip(None, name, exc, "failed to register its commands")


def _load_commands() -> tuple[pluggy.PluginManager, CommandRegistry]:
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(NeoPinnSpec)
    registry = CommandRegistry()
    for name in filter(None, (x.strip() for x in os.environ.get(BLOCK_ENV, "").split(","))):
        pm.set_blocked(name)
    third_party = not _truthy(os.environ.get(AUTOLOAD_ENV))
    eps, builtin = _entry_points()
    for ep in eps:
        if pm.is_blocked(ep.name) or not (third_party or builtin(ep)) or _is_core(ep):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # noqa: BLE001 - isolation of broken plugins is the point
            _skip(None, ep.name, exc, f"({ep.value}) could not be imported")
            continue
        _add_commands(pm, registry, ep.name, plugin)
    for name, plugin in _by_hand:
        _add_commands(pm, registry, name, plugin)
    return pm, registry


def get_commands() -> CommandRegistry:
    """The ``neo-pinn`` subcommands the plugins contribute (hook ``neo_pinn_register_commands``), loaded on first use.

    Only the plugins' entry-point modules are imported (not the core's own entry points, which contribute none)
    and only this hook is called, so building the command line's parser stays instant. The same environment
    switches apply as for :func:`get_state`; plugins registered with :func:`register_plugin` count too.

    Raises
    ------
    DuplicateNameError
        Two plugins register the same command name.
    """
    global _commands
    with _lock:
        if _commands is None:
            _commands = _load_commands()
        return _commands[1]


def get_state() -> PluginState:
    """Return the plugin state, loading every installed plugin on first use."""
    global _state
    with _lock:
        if _state is None:
            _state = _load()
        return _state


def register_plugin(plugin: object, name: str | None = None) -> None:
    """Register a plugin object (module or instance with hookimpls) at run time.

    Its models, backends, initializers and commands are registered at once (a duplicate name raises
    :class:`DuplicateNameError`).

    Parameters
    ----------
    plugin : object
        Module or object whose functions are marked with :data:`neo_pinn.hookspecs.hookimpl`.
    name : str, optional
        Plugin name shown by ``neo-pinn plugins`` (defaults to the module or class name).
    """
    state = get_state()
    name = name or getattr(plugin, "__name__", type(plugin).__name__)
    with _lock:
        _register(state, name, plugin)
        if name in state.plugin_names():  # registered (not blocked, not failed): its commands too
            _by_hand.append((name, plugin))
            if _commands is not None:
                _add_commands(*_commands, name, plugin)


def reset() -> None:
    """Forget loaded plugins and commands (the next access reloads them); for tests."""
    global _state, _commands
    with _lock:
        _state, _commands = None, None
        _by_hand.clear()
        _warned.clear()


def stimulus_finder() -> Callable[..., Any]:
    """The ``neo_pinn_find_stimulus`` hook of every loaded plugin, as one callable ``(signal=, segment=)``.

    The first non-None result wins (see :class:`~neo_pinn.hookspecs.NeoPinnSpec`). Pass it to
    :func:`neo_pinn.io.load_recording` as ``stimulus_finder``.
    """
    return get_state().manager.hook.neo_pinn_find_stimulus


def fire_after_fit(problem: Any, result: Any) -> None:
    """Call every plugin's ``neo_pinn_after_fit(problem=..., result=...)``."""
    get_state().manager.hook.neo_pinn_after_fit(problem=problem, result=result)

"""Lazy, isolated plugin loading.

Plugins are found through the entry-point group ``neo_pinn`` (the built-ins too). Nothing is loaded at
``import neo_pinn``; the first call that needs a registry loads them. A plugin that fails to import or
to register is skipped with a :class:`~neo_pinn.errors.PluginLoadWarning` naming it; the rest work.
"""

from __future__ import annotations

import importlib.metadata
import threading
import warnings
from dataclasses import dataclass, field

import pluggy

from .errors import DuplicateNameError, PluginLoadWarning
from .hookspecs import PROJECT, NeoPinnSpec
from .registry import BackendRegistry, ModelRegistry

__all__ = ["ENTRY_POINT_GROUP", "PluginState", "get_state", "register_plugin", "reset"]

ENTRY_POINT_GROUP = "neo_pinn"
_lock = threading.RLock()
_state: "PluginState | None" = None


@dataclass
class PluginState:
    """The loaded plugin manager and the registries it filled."""

    manager: pluggy.PluginManager
    models: ModelRegistry = field(default_factory=ModelRegistry)
    backends: BackendRegistry = field(default_factory=BackendRegistry)
    failed: dict[str, str] = field(default_factory=dict)

    def plugin_names(self) -> list[str]:
        return [name for name, _ in self.manager.list_name_plugin()]


def _register_into(state: PluginState, name: str, plugin: object) -> None:
    """Register one plugin object and let it fill the registries, isolating its failures."""
    pm = state.manager
    if pm.is_registered(plugin) or pm.has_plugin(name):
        return
    models_before = dict(state.models._items)
    backends_before = dict(state.backends._items)
    try:
        pm.register(plugin, name=name)
        state.models.current_plugin = state.backends.current_plugin = name
        for hook_name, registry in (("neo_pinn_register_models", state.models),
                                    ("neo_pinn_register_backends", state.backends)):
            impls = [i for i in getattr(pm.hook, hook_name).get_hookimpls() if i.plugin is plugin]
            for impl in impls:
                impl.function(registry=registry)
    except DuplicateNameError:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken third-party plugin must not break the others
        # Undo whatever the broken plugin managed to register.
        state.models._items = models_before
        state.backends._items = backends_before
        if pm.is_registered(plugin):
            pm.unregister(plugin)
        state.failed[name] = f"{type(exc).__name__}: {exc}"
        warnings.warn(f"neo_pinn plugin {name!r} failed to load and was skipped: {type(exc).__name__}: {exc}",
                      PluginLoadWarning, stacklevel=3)
    finally:
        state.models.current_plugin = state.backends.current_plugin = "<direct>"


def _load() -> PluginState:
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(NeoPinnSpec)
    state = PluginState(manager=pm)
    # Built-ins (models, stimulus finders, backends) come through the same entry points as third
    # parties; the core ones load first so that a third party's duplicate name is the one reported.
    eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    for ep in sorted(eps, key=lambda e: (not e.name.startswith("core"), e.name)):
        try:
            plugin = ep.load()
        except Exception as exc:  # noqa: BLE001 - isolation of broken plugins is the point
            state.failed[ep.name] = f"{type(exc).__name__}: {exc}"
            warnings.warn(f"neo_pinn plugin {ep.name!r} ({ep.value}) could not be imported and was skipped: "
                          f"{type(exc).__name__}: {exc}", PluginLoadWarning, stacklevel=3)
            continue
        _register_into(state, ep.name, plugin)
    return state


def get_state() -> PluginState:
    """Return the plugin state, loading every installed plugin on first use."""
    global _state
    with _lock:
        if _state is None:
            _state = _load()
        return _state


def register_plugin(plugin: object, name: str | None = None) -> None:
    """Register a plugin object (module or instance with hookimpls) at run time.

    Parameters
    ----------
    plugin : object
        Module or object whose methods are marked with :data:`neo_pinn.hookspecs.hookimpl`.
    name : str, optional
        Plugin name shown by ``neo-pinn plugins`` (defaults to the module or class name).
    """
    state = get_state()
    name = name or getattr(plugin, "__name__", type(plugin).__name__)
    with _lock:
        _register_into(state, name, plugin)


def reset() -> None:
    """Forget loaded plugins (the next access reloads them); for tests."""
    global _state
    with _lock:
        _state = None

"""Name → model and name → backend registries, filled through the plugin hooks (see :mod:`neo_pinn.plugins`)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from .errors import ConfigurationError, DuplicateNameError, UnknownNameError
from .models.base import NeuronModel

__all__ = ["Registry", "ModelRegistry", "BackendRegistry"]


class Registry:
    """Items by name, with the plugin that registered each; a name registered twice is an error."""

    kind = "item"

    def __init__(self) -> None:
        self._items: dict[str, object] = {}
        self._origin: dict[str, str] = {}
        self.current_plugin: str = "<direct>"

    def _add(self, name: str, item: object) -> None:
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigurationError(f"A {self.kind} name must be a Python identifier, got {name!r}.")
        if name in self._items:
            raise DuplicateNameError(
                f"{self.kind} {name!r} is registered twice: by {self._origin[name]!r} and by "
                f"{self.current_plugin!r}. Uninstall one of the two plugins or rename the {self.kind}."
            )
        self._items[name] = item
        self._origin[name] = self.current_plugin

    @contextmanager
    def registering_for(self, plugin: str) -> Iterator[None]:
        """Attribute what is registered inside the block to ``plugin`` (named in duplicate-name errors)."""
        self.current_plugin = plugin
        try:
            yield
        finally:
            self.current_plugin = "<direct>"

    def snapshot(self) -> tuple[dict, dict]:
        """The current contents, for :meth:`restore`."""
        return dict(self._items), dict(self._origin)

    def restore(self, snapshot: tuple[dict, dict]) -> None:
        """Go back to a :meth:`snapshot` (undo what a failed plugin registered)."""
        self._items, self._origin = dict(snapshot[0]), dict(snapshot[1])

    def get(self, name: str) -> Any:
        """The item registered as ``name`` (:class:`UnknownNameError` listing the registered names)."""
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise UnknownNameError(f"Unknown {self.kind} {name!r}; registered: {known}. "
                                   "Run `neo-pinn plugins` to see what is installed.") from None

    def origin(self, name: str) -> str:
        """Name of the plugin that registered ``name``."""
        self.get(name)
        return self._origin[name]

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)


class ModelRegistry(Registry):
    """Registered :class:`~neo_pinn.models.base.NeuronModel` instances by name."""

    kind = "model"

    def register(self, model: NeuronModel) -> None:
        """Add a model instance under ``model.name``."""
        if not isinstance(model, NeuronModel):
            raise ConfigurationError(f"register() takes a NeuronModel instance, got {type(model).__name__}.")
        self._add(model.name, model)

    def get(self, name: str) -> NeuronModel:
        return super().get(name)


class BackendRegistry(Registry):
    """Registered estimator classes (subclasses of :class:`neo_pinn.Estimator`) by their ``name``."""

    kind = "backend"

    def register(self, name_or_cls: str | type, backend_cls: type | None = None) -> None:
        """Add an estimator class under its ``name`` attribute.

        Parameters
        ----------
        name_or_cls : type or str
            The class (keyed by ``cls.name``); or, as in the first plugin contract, the name followed by
            the class, which must then equal ``cls.name``.
        backend_cls : type, optional
            The class, when the first argument is a name.
        """
        cls = name_or_cls if backend_cls is None else backend_cls
        # The registry sits below the estimator layer, so it checks the contract by shape: a class with a
        # string ``name`` and the public ``fit`` template (what neo_pinn.Estimator provides).
        if not (isinstance(cls, type) and callable(getattr(cls, "fit", None))
                and isinstance(getattr(cls, "name", None), str)):
            raise ConfigurationError(f"A backend must be a subclass of neo_pinn.Estimator with a name; got {cls!r}.")
        if backend_cls is not None and name_or_cls != cls.name:
            raise ConfigurationError(f"Backend class {cls.__name__} is named {cls.name!r} but was registered as "
                                     f"{name_or_cls!r}; call registry.register({cls.__name__}) (the class's name "
                                     "is the key).")
        self._add(cls.name, cls)

    def get(self, name: str) -> type:
        return super().get(name)

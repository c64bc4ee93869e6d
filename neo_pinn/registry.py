"""Name → model and name → backend registries, filled through the plugin hooks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from .errors import ConfigurationError, DuplicateNameError, UnknownNameError

if TYPE_CHECKING:  # pragma: no cover
    from .estimator import Estimator
    from .models.base import NeuronModel

__all__ = ["ModelRegistry", "BackendRegistry"]


class _Registry:
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

    def get(self, name: str):
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
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)


class ModelRegistry(_Registry):
    """Registered :class:`~neo_pinn.models.base.NeuronModel` instances by name."""

    kind = "model"

    def register(self, model: "NeuronModel") -> None:
        """Add a model instance under ``model.name``."""
        from .models.base import NeuronModel

        if not isinstance(model, NeuronModel):
            raise ConfigurationError(f"register() takes a NeuronModel instance, got {type(model).__name__}.")
        self._add(model.name, model)

    def get(self, name: str) -> "NeuronModel":
        return super().get(name)  # type: ignore[return-value]


class BackendRegistry(_Registry):
    """Registered :class:`~neo_pinn.estimator.Estimator` subclasses by name."""

    kind = "backend"

    def register(self, name: str, backend_cls: type["Estimator"]) -> None:
        """Add an Estimator subclass under ``name``."""
        from .estimator import Estimator

        if not (isinstance(backend_cls, type) and issubclass(backend_cls, Estimator)):
            raise ConfigurationError(f"Backend {name!r} must be an Estimator subclass, got {backend_cls!r}.")
        self._add(name, backend_cls)

    def get(self, name: str) -> type["Estimator"]:
        return super().get(name)  # type: ignore[return-value]

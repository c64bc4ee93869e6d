"""Registries filled through the plugin hooks (see :mod:`neo_pinn.plugins`): name → model, backend, initializer and
command-line command.

Importing this module imports no torch (the command registry is filled while ``neo-pinn --help`` builds its
parser): the model class is imported where a model is registered.
"""

from __future__ import annotations

import math
import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

from .errors import ConfigurationError, DuplicateNameError, UnknownNameError

if TYPE_CHECKING:
    from .models.base import NeuronModel

__all__ = ["Registry", "ModelRegistry", "BackendRegistry", "InitializerRegistry", "Initializer", "CommandRegistry",
           "PluginCommand"]


class Registry:
    """Items by name, with the plugin that registered each; a name registered twice is an error."""

    kind = "item"

    def __init__(self) -> None:
        self._items: dict[str, object] = {}
        self._origin: dict[str, str] = {}
        self.current_plugin: str = "<direct>"

    def _check_name(self, name: object) -> None:
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigurationError(f"A {self.kind} name must be a Python identifier, got {name!r}.")

    def _add(self, name: str, item: object) -> None:
        self._check_name(name)
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
        from .models.base import NeuronModel

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


@dataclass(frozen=True)
class Initializer:
    """A registered warm start: its scheme name, its function and one line saying what it does."""

    name: str
    function: Callable[..., Mapping[str, float]]
    description: str = ""


class InitializerRegistry(Registry):
    """Warm starts of any backend by scheme name, for ``init="SCHEME:ARGUMENT"`` (CLI ``fit --init SCHEME:ARG``).

    An initializer is a callable ``function(argument, traces, model, free, device)`` called with, in this order:

    * ``argument`` (str): the text after the first colon (e.g. an estimator folder);
    * ``traces`` (list of :class:`~neo_pinn.trace.Trace`): the sweeps the fit will see — after sweep selection,
      quality control and the fit window — t in ms, v in mV, i_ext in pA;
    * ``model`` (:class:`~neo_pinn.models.base.NeuronModel`);
    * ``free`` (tuple of str): the parameters the fit estimates;
    * ``device`` (str): ``"cpu"`` or ``"cuda[:N]"`` (``"auto"`` already resolved).

    It returns initial values by parameter name in canonical units (ms, mV, pA, pF, nS); values of parameters that
    are not free are ignored (and recorded as such).
    """

    kind = "initializer"

    def register(self, name: str, function: Callable[..., Mapping[str, float]], description: str | None = None
                 ) -> None:
        """Add ``function`` under the scheme ``name``.

        Parameters
        ----------
        name : str
            The scheme (a Python identifier), e.g. ``"amortized"``.
        function : callable
            See the class documentation.
        description : str, optional
            One line for ``neo-pinn plugins`` (default: the first line of the function's docstring).
        """
        if not callable(function):
            raise ConfigurationError(f"Initializer {name!r}: register a callable (argument, traces, model, free, "
                                     f"device) -> {{name: value}}; got {type(function).__name__}.")
        text = description if description is not None else (getattr(function, "__doc__", None) or "")
        self._add(name, Initializer(name, function, (text.strip().splitlines() or [""])[0]))

    def get(self, name: str) -> Initializer:
        return super().get(name)

    def split(self, text: object) -> tuple[str, str]:
        """``"SCHEME:ARGUMENT"`` → (scheme, argument), the scheme registered.

        Raises
        ------
        ConfigurationError
            Text that is not ``SCHEME:ARGUMENT``, or a scheme no plugin registered (the message lists the
            registered ones).
        """
        scheme, sep, argument = text.partition(":") if isinstance(text, str) else ("", "", "")
        scheme = scheme.strip()
        known = ", ".join(self.names()) or "none"
        if not sep or not scheme.isidentifier():
            raise ConfigurationError(f"init given as text names an initializer, 'SCHEME:ARGUMENT' (e.g. "
                                     f"'amortized:PATH'); got {text!r}. Registered initializers: {known}.")
        if scheme not in self:
            raise ConfigurationError(f"Unknown initializer {scheme!r} in init {text!r}; registered: {known}. Run "
                                     "`neo-pinn plugins` to see what is installed.")
        return scheme, argument.strip()

    def initial_values(self, text: str, traces: Sequence[Any], model: Any, free: Sequence[str], device: str
                       ) -> tuple[dict[str, float], dict[str, Any]]:
        """Run the initializer that ``text`` names on the fit's sweeps.

        Returns
        -------
        values : dict
            Initial values of the free parameters it gave, canonical units.
        record : dict
            JSON-ready: ``scheme``, ``argument``, ``plugin``, ``values``, ``units``, ``ignored`` (names it gave that
            are not free), for the result's provenance.

        Raises
        ------
        ConfigurationError
            Malformed text, an unknown scheme, or an initializer that returned something other than finite
            numbers by the model's parameter names. Whatever the initializer raises (e.g. a typed mismatch
            between its estimator and these sweeps) propagates.
        """
        scheme, argument = self.split(text)
        free = tuple(free)
        out = self.get(scheme).function(argument, list(traces), model, free, device)
        who = f"Initializer {scheme!r} (plugin {self.origin(scheme)!r})"
        if not isinstance(out, Mapping):
            raise ConfigurationError(f"{who} returned a {type(out).__name__}, not a mapping of parameter name to "
                                     "value.")
        values: dict[str, float] = {}
        ignored: list[str] = []
        for name, value in out.items():
            if name not in model.param_names:
                raise ConfigurationError(f"{who} returned {name!r}, which {model.name} does not have "
                                         f"({', '.join(model.param_names)}).")
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = math.nan
            if not math.isfinite(number):
                raise ConfigurationError(f"{who} returned {name}={value!r}, not a finite number.")
            if name in free:
                values[name] = number
            else:
                ignored.append(name)
        record = {"scheme": scheme, "argument": argument, "plugin": self.origin(scheme), "values": dict(values),
                  "units": {k: model.param_spec(k).unit for k in values}, "ignored": ignored}
        return values, record


#: what a command name may look like (it becomes ``neo-pinn NAME``)
_COMMAND_NAME = re.compile(r"[a-z][a-z0-9_-]*")


@dataclass(frozen=True)
class PluginCommand:
    """A ``neo-pinn`` subcommand contributed by a plugin.

    Attributes
    ----------
    name : str
        ``neo-pinn NAME``.
    help : str
        One line for ``neo-pinn --help``.
    add_arguments : callable
        ``add_arguments(parser)`` adds the command's options to its :class:`argparse.ArgumentParser` (``-q/--quiet``
        is added by the core). It must import nothing heavy: it runs whenever the parser is built.
    run : callable
        ``run(args) -> int | None``: the command; returns the exit status (None: 0). A
        :class:`~neo_pinn.errors.NeoPinnError` becomes one line on stderr and exit status 4, as for the built-ins.
    """

    name: str
    help: str
    add_arguments: Callable[[Any], None]
    run: Callable[[Any], Any]


class CommandRegistry(Registry):
    """``neo-pinn`` subcommands contributed by plugins, by name (filled without importing torch: see
    :func:`neo_pinn.plugins.get_commands`)."""

    kind = "command"

    def _check_name(self, name: object) -> None:
        if not (isinstance(name, str) and _COMMAND_NAME.fullmatch(name)):
            raise ConfigurationError(f"A command name is lower-case letters, digits, '-' and '_', starting with a "
                                     f"letter (e.g. 'train'); got {name!r}.")

    def register(self, name: str, help: str, add_arguments: Callable[[Any], None], run: Callable[[Any], Any]) -> None:
        """Add the command ``neo-pinn NAME`` (see :class:`PluginCommand`)."""
        if not (isinstance(help, str) and help.strip()):
            raise ConfigurationError(f"Command {name!r} needs a one-line help text.")
        for what, function in (("add_arguments", add_arguments), ("run", run)):
            if not callable(function):
                raise ConfigurationError(f"Command {name!r}: {what} must be callable; got {type(function).__name__}.")
        self._add(name, PluginCommand(name, " ".join(help.split()), add_arguments, run))

    def get(self, name: str) -> PluginCommand:
        return super().get(name)

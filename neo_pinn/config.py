"""Typed backend configuration: frozen dataclasses validated on construction.

A backend declares its options as a :class:`BackendConfig` subclass whose fields are made with
:func:`option` (default, check, one line of documentation). Related options may be grouped in nested
:class:`OptionGroup` dataclasses; users still give every option by its own (unique) name —
``PINN(width=32, rwf=False)`` or ``--option rwf=false`` — and :meth:`BackendConfig.from_options` puts it
in its group. A bad value raises :class:`~neo_pinn.errors.ConfigurationError` naming the option and what
it accepts; a configuration is never changed after it is made (:meth:`BackendConfig.replace` makes a
new one). A configuration reads like a flat, read-only mapping of option names to values, which is what
results store and what plugins of the first contract (``self.config["key"]``) expect.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from collections.abc import Mapping
from typing import Any, Callable, ClassVar, Iterator

from .errors import ConfigurationError

__all__ = ["Check", "option", "group", "OptionGroup", "BackendConfig", "config_from_defaults", "POSITIVE_INT",
           "NON_NEGATIVE_INT", "POSITIVE", "NON_NEGATIVE", "BOOL", "FINITE", "one_of", "optional", "either",
           "between", "STRINGS", "MAPPING", "is_integer", "is_number"]


def is_integer(x: Any) -> bool:
    """Whether ``x`` is an integer (numpy integers too; a bool is not)."""
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def is_number(x: Any) -> bool:
    """Whether ``x`` is a finite real number (a bool is not)."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


class Check:
    """A test of an option value with the words that say what the option accepts.

    Parameters
    ----------
    test : callable
        ``test(value) -> bool``.
    want : str
        What to give instead, for the error message (``"give a positive integer"``).
    """

    def __init__(self, test: Callable[[Any], bool], want: str) -> None:
        self.test, self.want = test, want

    def __call__(self, value: Any) -> bool:
        try:
            return bool(self.test(value))
        except (TypeError, ValueError):
            return False


POSITIVE_INT = Check(lambda x: is_integer(x) and x >= 1, "give a positive integer")
NON_NEGATIVE_INT = Check(lambda x: is_integer(x) and x >= 0, "give an integer ≥ 0")
POSITIVE = Check(lambda x: is_number(x) and x > 0, "give a positive number")
NON_NEGATIVE = Check(lambda x: is_number(x) and x >= 0, "give a number ≥ 0")
FINITE = Check(is_number, "give a finite number")
BOOL = Check(lambda x: isinstance(x, bool), "give true or false")
STRINGS = Check(lambda x: not isinstance(x, (str, bytes)) and all(isinstance(s, str) for s in x),
                "give a list of names")
MAPPING = Check(lambda x: isinstance(x, Mapping), "give a mapping of options")


def one_of(*values: Any) -> Check:
    """The value must equal one of ``values``."""
    return Check(lambda x: any(x == v and type(x) is type(v) for v in values),
                 "give one of " + ", ".join(repr(v) for v in values))


def between(lo: float, hi: float, *, integer: bool = False) -> Check:
    """A number (an integer with ``integer``) in [lo, hi]."""
    kind = "an integer" if integer else "a number"
    return Check(lambda x: (is_integer(x) if integer else is_number(x)) and lo <= x <= hi,
                 f"give {kind} between {lo:g} and {hi:g}")


def optional(check: Check) -> Check:
    """None, or a value passing ``check``."""
    return Check(lambda x: x is None or check(x), check.want + " or None")


def either(*checks: Check) -> Check:
    """A value passing any of ``checks``."""
    return Check(lambda x: any(c(x) for c in checks), "; or ".join(c.want for c in checks))


def option(default: Any, check: Check | None = None, doc: str = "", convert: Callable[[Any], Any] | None = None) -> Any:
    """A configuration field: its default, its :class:`Check`, one line of documentation and, optionally, how a
    value given by name is converted at the door (e.g. the command line's ``"a,b"`` into a tuple).

    Lists given as defaults are stored as tuples and dicts are copied per instance, so no two
    configurations share a mutable default. ``convert`` runs in :meth:`OptionGroup.from_options`, before the
    configuration is made; the configuration itself is never changed.
    """
    meta = {"check": check, "doc": doc, "convert": convert}
    if isinstance(default, list):
        default = tuple(default)
    if isinstance(default, (dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def group(group_cls: type) -> Any:
    """A configuration field holding a nested :class:`OptionGroup` (its defaults unless options say otherwise)."""
    return dataclasses.field(default_factory=group_cls)


def _group_class(f: dataclasses.Field) -> type | None:
    """The :class:`OptionGroup` subclass a field holds (made with :func:`group`), or None for a plain option."""
    factory = f.default_factory
    if isinstance(factory, type) and issubclass(factory, OptionGroup):
        return factory
    return type(f.default) if isinstance(f.default, OptionGroup) else None


@functools.lru_cache(maxsize=None)
def _leaf_paths(cls: type) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for f in dataclasses.fields(cls):
        group_cls = _group_class(f)
        if group_cls is not None:
            out.update({leaf: (f.name,) + path for leaf, path in _leaf_paths(group_cls).items()})
        else:
            out[f.name] = (f.name,)
    return out


@dataclasses.dataclass(frozen=True)
class OptionGroup:
    """A set of related options inside a :class:`BackendConfig` (fields made with :func:`option`)."""

    owner: ClassVar[str] = "backend"

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            check = f.metadata.get("check")
            value = getattr(self, f.name)
            if check is not None and not check(value):
                raise ConfigurationError(f"{self.owner} option {f.name}={value!r} is invalid: {check.want}.")
        self._check()

    def _check(self) -> None:
        """Relations between options (override; raise :meth:`bad`)."""

    def bad(self, name: str, want: str) -> ConfigurationError:
        """The error for option ``name`` (by its flat name) with what to give instead."""
        return ConfigurationError(f"{self.owner} option {name}={self[name]!r} is invalid: {want}.")

    # ------------------------------------------------------------------ flat view
    @classmethod
    def leaf_paths(cls) -> dict[str, tuple[str, ...]]:
        """Flat option name → attribute path (group, ..., name)."""
        return dict(_leaf_paths(cls))

    def __getitem__(self, name: str) -> Any:
        path = _leaf_paths(type(self)).get(name)
        if path is None:
            raise KeyError(name)
        value: Any = self
        for part in path:
            value = getattr(value, part)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(_leaf_paths(type(self)))

    def __len__(self) -> int:
        return len(_leaf_paths(type(self)))

    def keys(self):
        return _leaf_paths(type(self)).keys()

    def items(self):
        return [(k, self[k]) for k in self.keys()]

    def values(self):
        return [self[k] for k in self.keys()]

    def get(self, name: str, default: Any = None) -> Any:
        try:
            return self[name]
        except KeyError:
            return default

    def __contains__(self, name: object) -> bool:
        return name in _leaf_paths(type(self))

    def to_dict(self, nested: bool = False) -> dict[str, Any]:
        """The options as a dict: flat (option name → value) or nested by group."""
        if nested:
            return {f.name: (getattr(self, f.name).to_dict(nested=True) if _group_class(f) else getattr(self, f.name))
                    for f in dataclasses.fields(self)}
        return {k: self[k] for k in self.keys()}

    # ------------------------------------------------------------------ construction
    @classmethod
    def option_docs(cls) -> dict[str, str]:
        """Flat option name → its one-line documentation."""
        out = {}
        for f in dataclasses.fields(cls):
            group_cls = _group_class(f)
            if group_cls is not None:
                out.update(group_cls.option_docs())
            else:
                out[f.name] = f.metadata.get("doc", "")
        return out

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None = None, **more: Any):
        """A configuration from option values by flat name (or a group name with a mapping of its options).

        Raises
        ------
        ConfigurationError
            An unknown option (the message lists the valid ones) or a value its check refuses.
        """
        given = dict(options or {}) | more
        paths = cls.leaf_paths()
        groups = {f.name: f for f in dataclasses.fields(cls) if _group_class(f)}
        unknown = [k for k in given if k not in paths and k not in groups]
        if unknown:
            raise ConfigurationError(f"Unknown option(s) {', '.join(sorted(map(str, unknown)))} for {cls.owner!r}; "
                                     f"valid: {', '.join(sorted(paths)) or 'none'}.")
        return cls._build(given)

    @classmethod
    def _build(cls, given: Mapping[str, Any]):
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            group_cls = _group_class(f)
            if group_cls is not None:
                sub = {k: v for k, v in given.items() if k in group_cls.leaf_paths()}
                whole = given.get(f.name)
                if whole is not None:
                    if isinstance(whole, OptionGroup):
                        whole = whole.to_dict()
                    if not isinstance(whole, Mapping):
                        raise ConfigurationError(f"{cls.owner} option group {f.name} takes a mapping of its options "
                                                 f"({', '.join(group_cls.leaf_paths())}).")
                    sub = dict(whole) | sub
                kwargs[f.name] = group_cls.from_options(sub)
            elif f.name in given:
                value = given[f.name]
                convert = f.metadata.get("convert")
                if convert is not None:
                    value = convert(value)
                kwargs[f.name] = tuple(value) if isinstance(value, list) else value
        return cls(**kwargs)

    def replace(self, **options: Any):
        """A new configuration with some options (by flat name) changed."""
        return type(self).from_options(self.to_dict() | options)


@dataclasses.dataclass(frozen=True)
class BackendConfig(OptionGroup):
    """Base of a backend's options: a frozen dataclass, validated on construction (see the module doc)."""

    @classmethod
    def name_owner(cls, owner: str) -> None:
        """Name the backend in this configuration's error messages, its nested groups' included."""
        todo: list[type] = [cls]
        while todo:
            klass = todo.pop()
            klass.owner = owner
            for f in dataclasses.fields(klass):
                group_cls = _group_class(f)
                if group_cls is not None:
                    todo.append(group_cls)


def config_from_defaults(owner: str, defaults: Mapping[str, Any]) -> type[BackendConfig]:
    """An untyped :class:`BackendConfig` subclass for a plugin that declares a ``default_config`` dict.

    Every option accepts any value (such plugins validate in ``_check_config``); unknown names are still
    refused.
    """
    fields = [(name, Any, option(value)) for name, value in defaults.items()]
    cls = dataclasses.make_dataclass(f"{owner.title().replace('_', '')}Config", fields, bases=(BackendConfig,),
                                     frozen=True)
    cls.name_owner(owner)
    return cls

"""Verbs: the seam through which packages add commands to ``actstore``.

A package declares each verb as a :class:`Verb` in a light module (standard library
and this module only, so ``actstore --help`` stays fast) and registers it as an entry
point of the group ``actstore.verbs``, the way xarray finds its backends::

    [project.entry-points."actstore.verbs"]
    probe = "queries.verbs:PROBE"

A verb's parameters are dataclasses whose fields carry :func:`option` metadata; the
command line turns every field into a flag (``--field-name`` unless ``flag`` says
otherwise) and converts the text by the field's type. ``Verb.run`` names the function
that does the work (``"module:function"``); it is imported only when the verb runs and
is called with one instance of each parameter class, in order. Library code names
parameters in its errors (:class:`~actstore.errors.ParameterError`); the command line
shows the matching flag.

Examples
--------
>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Hello:
...     name: str = option(help="who to greet")
...     times: int = option(1, help="how often")
>>> verb = Verb("hello", "greet someone", "actstore hello --name Ada", (Hello,), "m:f")
>>> [flag_of(f) for f in parameter_fields(Hello)]
['--name', '--times']
>>> verb.build(name="Ada")
(Hello(name='Ada', times=1),)
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import MISSING, dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, NewType

from actstore.errors import ActStoreError, ParameterError

# A store a verb reads: its directory, or its URL in object storage (``s3://bucket/prefix``).
StoreLocation = NewType("StoreLocation", str)


def _local_path(text: str) -> Path:
    from actstore.storage import is_url

    if is_url(text):
        raise ValueError("a URL")
    return Path(text)


GROUP = "actstore.verbs"
log = logging.getLogger("actstore")
_KEY = "actstore.option"


@dataclass(frozen=True)
class Option:
    """How one parameter appears on the command line."""

    help: str
    flag: str | None = None  # default: --field-name
    positional: bool = False
    short: str | None = None  # e.g. "-o"
    metavar: str | None = None


def option(
    default: Any = MISSING,
    *,
    help: str,
    flag: str | None = None,
    positional: bool = False,
    short: str | None = None,
    metavar: str | None = None,
) -> Any:
    """A dataclass field that the command line shows as a flag (or a positional argument).

    Without a default the parameter is required. ``bool`` fields are switches: a
    default of False gives ``--flag`` (set it true), a default of True needs a ``flag``
    such as ``--no-spearman`` (set it false).

    Examples
    --------
    >>> @dataclass(frozen=True)
    ... class P:
    ...     top: int = option(5, help="units per site")
    >>> parameter_fields(P)[0].metadata["actstore.option"].help
    'units per site'
    """
    meta = {_KEY: Option(help, flag, positional, short, metavar)}
    if isinstance(default, (list, dict, set)):
        raise TypeError("mutable defaults are not allowed in parameter classes; use a tuple")
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Verb:
    """One command of ``actstore``: its name, help text, example, parameters, function.

    Examples
    --------
    >>> Verb("info", "describe a store", "actstore info s.actstore", (), "m:f").name
    'info'
    """

    name: str
    help: str
    example: str
    params: tuple[type, ...]
    run: str  # "module:function", imported when the verb runs

    def function(self) -> Callable[..., Any]:
        """The function behind the verb (imports its module)."""
        module, _, name = self.run.partition(":")
        function: Callable[..., Any] = getattr(importlib.import_module(module), name)
        return function

    def build(self, **values: Any) -> tuple[Any, ...]:
        """Parameter objects from keyword values by field name; others take their defaults.

        Examples
        --------
        >>> @dataclass(frozen=True)
        ... class P:
        ...     top: int = option(5, help="units")
        >>> Verb("v", "h", "e", (P,), "m:f").build(top=3)
        (P(top=3),)
        >>> Verb("v", "h", "e", (P,), "m:f").build(bottom=3)
        Traceback (most recent call last):
        ...
        actstore.errors.ParameterError: bottom is not a parameter of verb v; parameters: top
        """
        known = {f.name for cls in self.params for f in parameter_fields(cls)}
        for name in values:
            if name not in known:
                raise ParameterError(
                    name,
                    f"is not a parameter of verb {self.name}; parameters: "
                    + ", ".join(sorted(known)),
                )
        out = []
        for cls in self.params:
            mine = {f.name: values[f.name] for f in parameter_fields(cls) if f.name in values}
            try:
                out.append(cls(**mine))
            except TypeError as exc:  # a required parameter is missing
                raise ParameterError(self.name, f"needs more parameters: {exc}") from None
        return tuple(out)

    def __call__(self, **values: Any) -> Any:
        """Run the verb from Python with parameters by name; returns what the verb returns."""
        return self.function()(*self.build(**values))


def parameter_fields(cls: type) -> list[dataclasses.Field[Any]]:
    """The fields of a parameter class that carry :func:`option` metadata, in order."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    return [f for f in dataclasses.fields(cls) if _KEY in f.metadata]


def option_of(f: dataclasses.Field[Any]) -> Option:
    """The :class:`Option` of a parameter field."""
    opt: Option = f.metadata[_KEY]
    return opt


def flag_of(f: dataclasses.Field[Any]) -> str:
    """The flag of a parameter field (its name for a positional one)."""
    opt = option_of(f)
    if opt.positional:
        return f.name
    return opt.flag or "--" + f.name.replace("_", "-")


def field_types(cls: type) -> dict[str, Any]:
    """Resolved type hints of a parameter class (``from __future__`` annotations too)."""
    return typing.get_type_hints(cls)


def unwrap_optional(kind: Any) -> tuple[Any, bool]:
    """``X | None`` -> ``(X, True)``; anything else -> ``(kind, False)``."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(kind)) == 2:
            return args[0], True
    return kind, False


def converter(kind: Any, name: str) -> Callable[[str], Any]:
    """A function turning command-line text into a value of ``kind``.

    Supports ``str``, ``int``, ``float``, ``Path``, :data:`StoreLocation` and ``tuple[int, ...]`` /
    ``tuple[str, ...]`` (comma-separated). Bad text raises :class:`ParameterError`.

    Examples
    --------
    >>> converter(tuple[int, ...], "offsets")("-2,-1,0")
    (-2, -1, 0)
    >>> converter(int, "top")("five")
    Traceback (most recent call last):
    ...
    actstore.errors.ParameterError: top expects an integer, got 'five'
    >>> converter(Path, "output")("s3://bucket/page.html")
    Traceback (most recent call last):
    ...
    actstore.errors.ParameterError: output expects a local path (...), got 's3://bucket/page.html'
    """
    if typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]
        parse_item = converter(item, name)

        def parse_tuple(text: str) -> tuple[Any, ...]:
            return tuple(parse_item(p.strip()) for p in text.split(",") if p.strip())

        return parse_tuple
    simple: dict[Any, tuple[Callable[[str], Any], str]] = {
        int: (int, "an integer"),
        float: (float, "a number"),
        str: (str, "text"),
        Path: (_local_path, "a local path (a URL names a store, not this)"),
        StoreLocation: (str, "a store directory or URL"),
    }
    if kind not in simple:
        raise TypeError(f"parameter {name}: unsupported type {kind!r}")
    parse, what = simple[kind]

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError:
            raise ParameterError(name, f"expects {what}, got {text!r}") from None

    return convert


def choices_of(kind: Any) -> tuple[Any, ...] | None:
    """The allowed values of a ``Literal[...]`` type, else None."""
    if typing.get_origin(kind) is typing.Literal:
        return typing.get_args(kind)
    return None


def discover() -> dict[str, Verb]:
    """Every registered verb by name (entry points of the group ``actstore.verbs``).

    Loading an entry point imports only the light module that declares the verb.

    Examples
    --------
    >>> discover()["sql"].run
    'actstore.commands:sql'
    """
    found: dict[str, Verb] = {}
    for point in entry_points(group=GROUP):
        try:
            verb = point.load()
        except Exception as exc:  # one broken plugin must not take the others down
            log.warning("verb %s (%s) cannot be loaded: %s", point.name, point.value, exc)
            continue
        if not isinstance(verb, Verb) or verb.name != point.name:
            raise ActStoreError(
                f"entry point {point.name} = {point.value} in group {GROUP} does not name "
                f"a Verb called {point.name!r}"
            )
        found[verb.name] = verb
    return dict(sorted(found.items()))


def verb(name: str) -> Verb:
    """The registered verb ``name``; the error lists the verbs there are."""
    verbs = discover()
    if name not in verbs:
        raise ParameterError("verb", f"{name!r} is not registered; verbs: {', '.join(verbs)}")
    return verbs[name]


def iter_options(v: Verb) -> Iterator[tuple[type, dataclasses.Field[Any], Option, Any]]:
    """``(parameter class, field, option, resolved type)`` of every parameter of a verb."""
    for cls in v.params:
        hints = field_types(cls)
        for f in parameter_fields(cls):
            yield cls, f, option_of(f), hints[f.name]

"""The ``actstore`` command line, built from the registered verbs (:mod:`actstore.verbs`).

Every verb has ``--help`` with an example. User mistakes and OS errors (a missing
file, a full disk, no permission) end in one line on stderr, ``actstore: error: ...``,
and exit status 2; no traceback. A verb's module is imported only when it runs.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import typing
from collections.abc import Callable, Sequence
from dataclasses import MISSING
from typing import Any

from actstore import progress
from actstore.errors import ActStoreError, ParameterError
from actstore.verbs import (
    Verb,
    choices_of,
    converter,
    discover,
    flag_of,
    iter_options,
    unwrap_optional,
)
from actstore.version import __version__

STORE_ALIAS = "store_flag"
_NEGATIVE = re.compile(r"^-[0-9.][0-9.,:eE+-]*$")  # -2,-1,0 or -0.5 or -3:


def _add_parameters(parser: argparse.ArgumentParser, verb: Verb) -> None:
    for _, f, opt, kind in iter_options(verb):
        kind, _ = unwrap_optional(kind)
        required = f.default is MISSING
        names = [flag_of(f)] + ([opt.short] if opt.short else [])
        kwargs: dict[str, Any] = {"help": opt.help}
        if kind is bool:
            if f.default is True and not opt.flag:
                raise TypeError(f"{verb.name}: switch {f.name} defaults to True; give a flag")
            kwargs["action"] = "store_false" if f.default is True else "store_true"
            kwargs["dest"] = f.name
            parser.add_argument(*names, **kwargs)
            continue
        choices = choices_of(kind)
        if choices is not None:
            kwargs["choices"] = choices
        elif opt.positional and typing.get_origin(kind) is tuple:  # FILE [FILE ...]
            kwargs["type"] = _typed(converter(typing.get_args(kind)[0], flag_of(f)))
            kwargs["nargs"] = "+" if required else "*"
        else:
            kwargs["type"] = _typed(converter(kind, flag_of(f)))
        if opt.metavar:
            kwargs["metavar"] = opt.metavar
        if opt.positional and f.name == "store":  # also --store, the older spelling
            kwargs.setdefault("metavar", "STORE")
            if not required:
                kwargs["help"] = f"{opt.help} (default: {_shown(f.default)})"
            parser.add_argument(f.name, nargs="?", default=None, **kwargs)
            parser.add_argument(
                "--store", dest=STORE_ALIAS, metavar="STORE", help="the same as the first argument"
            )
            continue
        if opt.positional:
            if not required:
                kwargs.setdefault("nargs", "?")
                kwargs["default"] = f.default
                kwargs["help"] = f"{opt.help} (default: {_shown(f.default)})"
            parser.add_argument(f.name, **kwargs)
            continue
        if not required:
            kwargs["default"] = f.default
            if f.default not in (None, "", ()) and not isinstance(f.default, bool):
                kwargs["help"] = f"{opt.help} (default: {_shown(f.default)})"
        parser.add_argument(*names, dest=f.name, required=required, **kwargs)


def _with_store(values: dict[str, Any], alias: str | None, verb: Verb) -> dict[str, Any]:
    """Resolve ``--store S`` against the first positional argument: with both, the
    positional one is the first of the verb's positional files (``ingest F1 F2 --store
    S``); with neither, the verb's default store, if it has one."""
    fields = {f.name: (f, opt, kind) for _, f, opt, kind in iter_options(verb)}
    given = values.get("store")
    if alias is None:
        if given is None:
            default = fields["store"][0].default
            if default is MISSING:
                raise ParameterError("store", "is missing: give the store as the first argument")
            values["store"] = default
        return values
    if given is not None:
        files = [
            name
            for name, (_, opt, kind) in fields.items()
            if name != "store" and opt.positional and typing.get_origin(kind) is tuple
        ]
        if not files:
            raise ParameterError("store", f"given twice ({given} and --store {alias})")
        values[files[0]] = (given, *values[files[0]])
    values["store"] = converter(fields["store"][2], "store")(alias)
    return values


def negative_values(argv: Sequence[str]) -> list[str]:
    """``--offsets -2,-1,0`` as ``--offsets=-2,-1,0``: argparse takes a value that starts
    with ``-`` (and is not one plain number) for a flag.

    Examples
    --------
    >>> negative_values(["probe", "s", "--offsets", "-2,-1,0", "--control"])
    ['probe', 's', '--offsets=-2,-1,0', '--control']
    """
    out: list[str] = []
    for token in argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] and _NEGATIVE.match(token):
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out


def _typed(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """``convert`` with its errors as argparse reports them (usage, then the reason)."""

    def parse(text: str) -> Any:
        try:
            return convert(text)
        except ParameterError as exc:
            raise argparse.ArgumentTypeError(exc.detail) from None

    return parse


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def parser(verbs: dict[str, Verb] | None = None) -> argparse.ArgumentParser:
    """The top-level parser with one sub-command per registered verb."""
    top = argparse.ArgumentParser(
        prog="actstore",
        description="Activation store and query engine: ingest annotated corpora, "
        "store activations, query them with SQL.",
    )
    top.add_argument("--version", action="version", version=f"actstore {__version__}")
    top.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = top.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb in (verbs or discover()).values():
        p = sub.add_parser(
            verb.name,
            help=verb.help,
            description=verb.help,
            epilog=f"example:\n  {verb.example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_parameters(p, verb)
    return top


def _flag_message(verb: Verb, exc: ParameterError) -> str:
    """The error with the parameter's flag in place of its library name."""
    for _, f, _, _ in iter_options(verb):
        if f.name == exc.parameter:
            return f"{flag_of(f)} {exc.detail}"
    return str(exc)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``actstore`` with ``argv`` (default: the process's arguments); the exit status.

    Examples
    --------
    >>> main(["sql", str(store_path), "SELECT count(*) AS n FROM sentences"])
     n
    30
    0
    """
    verbs = discover()
    args = parser(verbs).parse_args(negative_values(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    verb = verbs[args.verb]
    values = {f.name: getattr(args, f.name) for _, f, _, _ in iter_options(verb)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    if values.get("quiet"):  # no progress bars either, in this process and its children
        progress.configure(False)
    try:
        if hasattr(args, STORE_ALIAS):
            values = _with_store(values, getattr(args, STORE_ALIAS), verb)
        verb(**values)
    except ParameterError as exc:
        return _fail(_flag_message(verb, exc))
    except ActStoreError as exc:
        return _fail(str(exc))
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print("actstore: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # disk full, permission denied, a missing file: no traceback
        where = f": {exc.filename}" if exc.filename else ""
        return _fail(f"{exc.strerror or exc}{where}")
    return 0


def _fail(message: str) -> int:
    print(f"actstore: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

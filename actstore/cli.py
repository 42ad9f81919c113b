"""The ``actstore`` command line, built from the registered verbs (:mod:`actstore.verbs`).

Every verb has ``--help`` with an example. User mistakes and OS errors (a missing
file, a full disk, no permission) end in one line on stderr, ``actstore: error: ...``,
and exit status 2; no traceback. A verb's module is imported only when it runs.
"""

from __future__ import annotations

import argparse
import logging
import sys
import typing
from collections.abc import Callable, Sequence
from dataclasses import MISSING
from typing import Any

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
            kwargs["nargs"] = "+"
        else:
            kwargs["type"] = _typed(converter(kind, flag_of(f)))
        if opt.metavar:
            kwargs["metavar"] = opt.metavar
        if opt.positional:
            parser.add_argument(f.name, **kwargs)
            continue
        if not required:
            kwargs["default"] = f.default
            if f.default not in (None, "", ()) and not isinstance(f.default, bool):
                kwargs["help"] = f"{opt.help} (default: {_shown(f.default)})"
        parser.add_argument(*names, dest=f.name, required=required, **kwargs)


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
    args = parser(verbs).parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    verb = verbs[args.verb]
    values = {f.name: getattr(args, f.name) for _, f, _, _ in iter_options(verb)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    try:
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

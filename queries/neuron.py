"""One unit seen in context: its activations over chosen sentences, word by word, and
the word types it responds to most and least (the LSTM probing paper's Figures 4 and 6).

:func:`neuron_view` gathers what a view shows (the words and values of a few whole
sentences, the colour scale, the top and bottom types over the whole table) into a
:class:`NeuronView`; :mod:`queries.neuron_render` draws it as HTML or text and
:mod:`queries.neuron_figure` as a figure (:func:`view_html` and :func:`write_view`
here call them).

Examples
--------
>>> view = neuron_view(store, "toy/layer.0", 3, "n_words BETWEEN 5 AND 12", limit=2, top=3,
...                    min_count=3)
>>> [s.sentence_id for s in view.sentences], len(view.top), view.n_matched
([0, 9], 3, 4)
>>> view.scale == max(abs(v) for s in view.sentences for v in s.values)
True
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

import actstore
from actstore.coverage import describe, outside
from actstore.errors import ParameterError, SiteError, SiteNotFoundError, SQLError
from actstore.names import did_you_mean
from actstore.sql import condition
from queries.engine import Selection, map_reduce
from queries.select import categorical_codes, one_site, require_tokens
from queries.selectivity import _type_sums, frequent_codes

BY = ("form", "lemma")
_GLOB = re.compile(r"[*?\[,]")


@dataclass(frozen=True)
class ShownSentence:
    """One sentence of a view: its words, the table rows they are, the unit's values."""

    sentence_id: int
    sent_id: str | None
    rows: tuple[int, ...]
    words: tuple[str, ...]
    values: tuple[float, ...]  # exactly the values read (float32 or finer)
    space_after: tuple[bool, ...]


@dataclass(frozen=True)
class TypeMean:
    """A word type's mean activation of the unit over the table, and its count."""

    type: str
    mean: float
    count: int


@dataclass(frozen=True)
class NeuronView:
    """What a neuron view shows; :func:`neuron_view` makes one.

    ``scale`` is the limit of the symmetric colour scale (the largest absolute value
    among the shown words); ``percentiles`` the unit's 1st and 99th percentile over
    every row of the table the site covers (None when ``top`` was 0: no pass was made).
    ``top`` and ``bottom`` hold the types of highest and lowest mean (``by``, lower-cased;
    types seen at least ``min_count`` times; ``n_types`` of them).
    """

    site: str
    unit: int
    n_units: int
    model: str
    by: str
    min_count: int
    chosen: str  # how the sentences were chosen, in words
    n_matched: int  # sentences matching the choice (the view shows the first ones)
    sentences: tuple[ShownSentence, ...]
    scale: float
    percentiles: tuple[float, float] | None
    top: tuple[TypeMean, ...]
    bottom: tuple[TypeMean, ...]
    n_types: int

    @property
    def title(self) -> str:
        """``Unit 5 of toy/layer.0``."""
        return f"Unit {self.unit} of {self.site}"


def neuron_view(
    store: actstore.Store,
    site: str,
    unit: int,
    sentences: str | Sequence[int] | None,
    *,
    limit: int = 10,
    top: int = 10,
    by: str = "form",
    min_count: int = 5,
) -> NeuronView:
    """The activations of ``unit`` of ``site`` over some sentences, and its top word types.

    Parameters
    ----------
    store
        An open store.
    site
        A complete site over ``tokens`` (a name, or a glob matching one site).
    unit
        The unit, ``0 .. n_units - 1``.
    sentences
        An SQL condition over the ``sentences`` table (``"sent_id LIKE 'weblog%'"``,
        run read-only), sentence ids (shown in the order given), or None (the first
        sentences). The first ``limit`` that match, in sentence order, are shown.
    limit
        Sentences shown at most; more ids than this are refused rather than cut.
    top
        Word types of highest and of lowest mean activation (0: none, and no pass
        over the site).
    by
        ``form`` or ``lemma``: what makes a word type (lower-cased).
    min_count
        Types seen fewer times over the table are left out of the ranking.

    Examples
    --------
    >>> view = neuron_view(store, "toy/layer.1", 0, [4, 1], top=0)
    >>> [s.sentence_id for s in view.sentences], view.sentences[1].words[:3]
    ([4, 1], ('President', 'Bush', 'on'))
    >>> neuron_view(store, "toy/layer.1", 16, None)
    Traceback (most recent call last):
    ...
    actstore.errors.ParameterError: unit 16 is outside 0..15: site toy/layer.1 has 16 units
    """
    site = _site(store, site)
    require_tokens(store, [site])
    info = store.site(site)
    _check(site, unit, info.n_units, limit, top, by, min_count)
    chosen, n_matched, picked = _sentences(store, sentences, limit)
    shown = _read(store, site, unit, picked)
    scale = max((abs(v) for s in shown for v in s.values), default=0.0)
    top_types: tuple[TypeMean, ...] = ()
    bottom_types: tuple[TypeMean, ...] = ()
    percentiles, n_types = None, 0
    if top > 0:
        types, means, counts, percentiles = unit_type_means(store, site, unit, by, min_count)
        order = np.argsort(-means, kind="stable")
        n_types = len(types)

        def ranked(at: np.ndarray) -> tuple[TypeMean, ...]:
            return tuple(TypeMean(types[i], float(means[i]), int(counts[i])) for i in at)

        top_types, bottom_types = ranked(order[:top]), ranked(order[::-1][:top])
    model = str(info.provenance.get("model") or site.split("/")[0])
    return NeuronView(
        site, unit, info.n_units, model, by, min_count, chosen, n_matched, tuple(shown),
        float(scale), percentiles, top_types, bottom_types, n_types,
    )  # fmt: skip


def _site(store: actstore.Store, name: str) -> str:
    """The site ``name`` names (or the one site a glob matches); unknown names are
    refused with the closest names."""
    if name in store.sites:
        return name
    try:
        return one_site(store, name, "site")
    except SiteNotFoundError:
        if _GLOB.search(name):
            raise
        names = sorted(store.sites)
        hint = did_you_mean(name, names)
        listed = ", ".join(names) or "none"
        raise SiteNotFoundError(
            f"no site {name!r}{f' ({hint})' if hint else ''}; sites: {listed}"
        ) from None


def _check(
    site: str, unit: int, n_units: int, limit: int, top: int, by: str, min_count: int
) -> None:
    if not 0 <= unit < n_units:
        detail = f"{unit} is outside 0..{n_units - 1}: site {site} has {n_units} units"
        raise ParameterError("unit", detail)
    for name, value, least in (("limit", limit, 1), ("top", top, 0), ("min_count", min_count, 1)):
        if value < least:
            raise ParameterError(name, f"must be at least {least}, got {value}")
    if by not in BY:
        raise ParameterError("by", f"must be one of {', '.join(BY)}, got {by!r}")


def _sentences(
    store: actstore.Store, sentences: str | Sequence[int] | None, limit: int
) -> tuple[str, int, list[tuple[int, str | None]]]:
    """How the sentences were chosen (in words), how many match, and the first ``limit``
    as (sentence id, sent_id) in the order shown."""
    columns = "sentence_id, sent_id, count(*) OVER () AS n_matched FROM sentences"
    if sentences is None or (isinstance(sentences, str) and not sentences.strip()):
        found = store.sql(f"SELECT {columns} ORDER BY sentence_id LIMIT ?", [limit])
        if not len(found):
            raise ParameterError("sentences", "cannot be shown: the store has no sentences")
        return "the first sentences", _matched(found), _pairs(found)
    if isinstance(sentences, str):
        return _filtered(store, sentences, limit, columns)
    ids = list(dict.fromkeys(int(i) for i in sentences))
    if not ids:
        raise ParameterError("sentences", "names no sentence id")
    if len(ids) > limit:
        detail = f"names {len(ids)} sentences, more than limit {limit}; raise the limit"
        raise ParameterError("sentences", detail)
    found = store.sql(f"SELECT {columns} WHERE list_contains(?, sentence_id)", [ids])
    known = dict(_pairs(found))
    missing = [i for i in ids if i not in known]
    if missing:
        n = store.n_rows("sentences")
        raise ParameterError(
            "sentences", f"has no sentence {', '.join(map(str, missing))}: ids run 0..{n - 1}"
        )
    return (
        f"sentence{'s' * (len(ids) > 1)} " + ", ".join(map(str, ids)),
        len(ids),
        [(i, known[i]) for i in ids],
    )


def _filtered(
    store: actstore.Store, where: str, limit: int, columns: str
) -> tuple[str, int, list[tuple[int, str | None]]]:
    try:
        checked = condition(where, "sentences")
        kind = _filter_type(store, checked)
        found = None
        if kind is None:
            query = f"SELECT {columns} WHERE ({checked}) ORDER BY sentence_id LIMIT ?"
            found = store.sql(query, [limit])
    except (SQLError, ParameterError) as exc:  # one line, with what the filter may name
        detail = str(exc).splitlines()[0].removeprefix("sentences ")
        names = ", ".join(store.schema("sentences").names)
        detail = f"filter {where!r} fails: {detail}; columns of sentences: {names}"
        raise ParameterError("sentences", detail) from None
    if found is None:
        detail = (
            f"filter {where!r} gives {kind} values, not true or false: it must be a condition "
            '(e.g. "n_words > 5"), or sentence ids separated by commas (3,17,42)'
        )
        raise ParameterError("sentences", detail)
    if not len(found):
        raise ParameterError("sentences", f"filter {where!r} matches no sentence")
    return f"sentences where {' '.join(where.split())}", _matched(found), _pairs(found)


def _filter_type(store: actstore.Store, checked: str) -> str | None:
    """None when the filter is a condition (boolean, or NULL); else the type it gives.

    DuckDB takes a number as a condition (``-1``, ``5-7``, ``sentence_id``: true unless
    0), which would show the first sentences as if the filter chose them."""
    import pyarrow as pa

    query = f"SELECT ({checked}) AS keep FROM sentences LIMIT 0"
    kind = store.sql(query, arrow=True).schema.field("keep").type
    return None if kind in (pa.bool_(), pa.null()) else str(kind)


def _matched(found: pd.DataFrame) -> int:
    column = found["n_matched"]
    return int(column.iloc[0]) if len(column) else 0


def _pairs(found: pd.DataFrame) -> list[tuple[int, str | None]]:
    ids = found["sentence_id"].tolist()
    names = [None if pd.isna(n) else str(n) for n in found["sent_id"].tolist()]
    return list(zip((int(i) for i in ids), names, strict=True))


def _read(
    store: actstore.Store, site: str, unit: int, picked: list[tuple[int, str | None]]
) -> list[ShownSentence]:
    """The words of the picked sentences and the unit's values at exactly their rows."""
    ids = [i for i, _ in picked]
    space = ", space_after" if "space_after" in store.schema("tokens").names else ""
    query = (
        f"SELECT row, sentence_id, form{space} FROM tokens WHERE sentence_id BETWEEN ? AND ? "
        "AND list_contains(?, sentence_id) ORDER BY row"
    )
    words = store.sql(query, [min(ids), max(ids), ids])
    rows = words["row"].to_numpy(np.int64)
    info = store.site(site)
    missing = outside(rows, info.covers)
    if missing.any():
        lacking = sorted(set(words["sentence_id"].to_numpy()[missing].tolist()))
        raise SiteError(
            f"site {site} does not cover sentence{'s' * (len(lacking) > 1)} "
            f"{', '.join(map(str, lacking[:10]))}{' ...' if len(lacking) > 10 else ''} "
            f"(it covers {describe(list(info.covers))} of tokens); extract it there first"
        )
    values = store.site_reader(site).take(rows)[:, unit]  # rows come sorted and unique
    after = words["space_after"].fillna(True).to_numpy(bool) if space else np.ones(len(rows), bool)
    sentence = words["sentence_id"].to_numpy(np.int64)
    shown = []
    for sentence_id, sent_id in picked:
        at = np.flatnonzero(sentence == sentence_id)
        shown.append(
            ShownSentence(
                sentence_id,
                sent_id,
                tuple(rows[at].tolist()),
                tuple(str(w) for w in words["form"].to_numpy()[at]),
                tuple(values[at].tolist()),
                tuple(after[at].tolist()),
            )
        )
    return shown


def _unit_block(
    x: np.ndarray, *, codes: np.ndarray, unit: int, n_types: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-type sums of one unit over a block, and the block's values of that unit."""
    column = x[:, unit : unit + 1]
    return _type_sums(column, codes=codes, n_types=n_types)[:, 0], column[:, 0].copy()


def _merge(
    a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    return a[0] + b[0], np.concatenate([a[1], b[1]])


def unit_type_means(
    store: actstore.Store, site: str, unit: int, by: str = "form", min_count: int = 5
) -> tuple[list[str], np.ndarray, np.ndarray, tuple[float, float]]:
    """Word types (``by``, lower-cased) seen at least ``min_count`` times over the rows
    ``site`` covers, the unit's mean activation and count per type, and the unit's 1st
    and 99th percentile over those rows, in one pass of the engine.

    Examples
    --------
    >>> types, means, counts, (low, high) = unit_type_means(store, "toy/layer.0", 2, "form", 10)
    >>> types[:4], counts[:4].tolist(), bool(low < 0 < high)
    (["'s", ',', '-', '.'], [10, 28, 11, 26], True)
    """
    info = store.site(site)
    covered = [np.arange(a, b, dtype=np.int64) for a, b in info.covers]
    everything = info.n_covered == store.n_rows(info.table)
    rows = None if everything else np.concatenate(covered or [np.zeros(0, np.int64)])
    selection = Selection(store, (site,), row_ids=rows)
    codes, names = categorical_codes(selection.values([by]).column(by))
    lowered = np.array([n.lower() for n in names] + [""], dtype=object)
    types, merged = np.unique(lowered[:-1], return_inverse=True)
    remap = np.append(merged, -1)
    codes = remap[codes]  # NULL (-1) stays -1
    codes, frequent, counts = frequent_codes(codes, len(types), min_count, by)
    block_fn = partial(_unit_block, unit=unit, n_types=int(frequent.size))
    sums, values = map_reduce(
        block_fn, _merge, selection, per_row={"codes": codes}, label=f"type means {site}"
    )
    low, high = np.percentile(values, [1, 99])
    kept = counts[frequent]
    return [str(types[i]) for i in frequent], sums / kept, kept, (float(low), float(high))


def view_html(view: NeuronView) -> str:
    """The view as an HTML fragment to embed in a page (a ``<figure>``): see
    :func:`queries.neuron_render.view_html`, which this calls.

    Examples
    --------
    >>> view_html(neuron_view(store, "toy/layer.0", 1, [2], top=0))[:31]
    '<figure class="actstore-neuron"'
    """
    from queries.neuron_render import view_html as render

    return render(view)


def write_view(view: NeuronView, path: Path) -> None:
    """Write the view as an HTML page (``.html``, ``.htm``) or a figure (``.svg``,
    ``.png``): see :func:`queries.neuron_render.write_view`, which this calls."""
    from queries.neuron_render import write_view as write

    write(view, path)

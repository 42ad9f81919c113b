"""The 2 vs 2 and 1 vs 2 tests on a store's sites (:mod:`queries.twovtwo`,
:mod:`queries.onevstwo` do the arithmetic on arrays).

:func:`two_vs_two_sites` compares two sites through condition means
(:func:`queries.conditions.condition_means`): each side's conditions are a column or SQL
expression over its table (an image ``label``, a ``words`` table's ``word``), and the
concepts tested are the labels both sides have, matched exactly (normalise them in
``by_a``/``by_b``, e.g. ``lower(label)``, if they differ in case).

:func:`one_vs_two_store` reads the top-1 predictions that CNN extraction stores
(``predictions_<model>``; docs/IMAGES.md). An image is correctly classified when its
predicted ``class_name`` names its label: both are compared as *concept names*, lower-
cased, trimmed, underscores read as spaces, and only up to the first comma (the first
lemma of ``"tabby, tabby cat"``), so labels and class names must come from the same
vocabulary (a folder named ``n02123045`` never matches ``tabby``). Word vectors are
looked up by the same concept name in the word site's table (``word_by``; the first row
in row order when several words share one); classes without one take no part.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

import actstore
from actstore.errors import SchemaError
from actstore.sql import quote_ident
from queries.onevstwo import OneVsTwo, one_vs_two
from queries.results import Column, TableSchema
from queries.twovtwo import two_vs_two

TWO_VS_TWO = TableSchema(
    "two_vs_two",
    (
        Column("site_a", "string"), Column("site_b", "string"), Column("accuracy", "float64"),
        Column("n_pairs", "int64"), Column("n_concepts", "int64"), Column("p", "float64"),
        Column("permutations", "int64"), Column("seed", "int64"),
    ),
)  # fmt: skip
ONE_VS_TWO = TableSchema(
    "one_vs_two",
    (
        Column("image_site", "string"), Column("word_site", "string"),
        Column("accuracy", "float64"), Column("n_images", "int64"), Column("n_classes", "int64"),
        Column("p_binomial", "float64"), Column("p", "float64"), Column("permutations", "int64"),
        Column("seed", "int64"),
    ),
)  # fmt: skip


def two_vs_two_sites(
    store: actstore.Store,
    site_a: str,
    site_b: str,
    *,
    by_a: str,
    by_b: str,
    where_a: str | None = None,
    where_b: str | None = None,
    min_count: int = 1,
    min_count_b: int | None = None,
    permutations: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """The 2 vs 2 test between two sites over the conditions both have.

    Parameters
    ----------
    store
        An open store.
    site_a, site_b
        Complete sites, over the same table or not (a CNN layer over ``images`` and word
        vectors over ``words``).
    by_a, by_b
        Each side's conditions: a column or one SQL expression over its site's table.
    where_a, where_b
        SQL conditions choosing each side's rows (None: all).
    min_count, min_count_b
        Conditions with fewer rows are left out: on side a; on side b ``min_count_b``
        (None: ``min_count`` over the same table, else 1: a ``words`` table has one row
        per word). ``where_b`` None over the same table is ``where_a``, as in RSA.
    permutations, seed
        The permutation null (:func:`queries.twovtwo.two_vs_two`).

    Returns
    -------
    pandas.DataFrame
        One row: site_a, site_b, accuracy, n_pairs, n_concepts, p, permutations, seed.

    Examples
    --------
    >>> table = two_vs_two_sites(store, "toy/layer.0", "toy/layer.1", by_a="upos",
    ...                          by_b="upos", min_count=5, permutations=9)
    >>> table[["n_concepts", "n_pairs", "permutations"]].iloc[0].tolist()
    [15, 105, 9]
    """
    from queries.conditions import condition_counts, condition_means

    same = store.site(site_a).table == store.site(site_b).table
    where_b = where_b if where_b is not None else (where_a if same else None)
    count_b = min_count_b if min_count_b is not None else (min_count if same else 1)
    labels_a, _ = condition_counts(
        store, store.site(site_a).table, by_a, where=where_a, min_count=min_count
    )
    labels_b, _ = condition_counts(
        store, store.site(site_b).table, by_b, where=where_b, min_count=count_b
    )
    shared = sorted(set(labels_a) & set(labels_b))
    if len(shared) < 4:
        raise SchemaError(
            f"{site_a} by {by_a} and {site_b} by {by_b} share {len(shared)} conditions "
            f"({', '.join(shared) or 'none'}); the 2 vs 2 test needs at least 4. "
            f"{site_a} has {_some(labels_a)}; {site_b} has {_some(labels_b)}"
        )
    a = condition_means(store, [site_a], by_a, where=where_a, min_count=min_count, labels=shared)
    b = condition_means(store, [site_b], by_b, where=where_b, min_count=count_b, labels=shared)
    result = two_vs_two(
        a.subset(shared).means[site_a],
        b.subset(shared).means[site_b],
        permutations=permutations,
        seed=seed,
    )
    return pd.DataFrame(
        {
            "site_a": [site_a],
            "site_b": [site_b],
            "accuracy": [result.accuracy],
            "n_pairs": [result.n_pairs],
            "n_concepts": [result.n_concepts],
            "p": [result.p],
            "permutations": [permutations],
            "seed": [seed],
        }
    )


@dataclass(frozen=True)
class OneVsTwoStore:
    """The 1 vs 2 test on a store: ``summary`` (one row: image_site, word_site, accuracy,
    n_images, n_classes, p_binomial, p, permutations, seed), ``images`` (one row per
    tested image: row, label, predicted, r_true, r_predicted, passed), ``skipped``
    (images left out, by reason) and the array ``result``."""

    summary: pd.DataFrame
    images: pd.DataFrame
    skipped: dict[str, int]
    result: OneVsTwo


def concept_name(text: str | None) -> str | None:
    """A label or class name as a concept name: lower-cased, the first lemma, spaces.

    Examples
    --------
    >>> concept_name("Tabby, tabby cat"), concept_name(" Egyptian_cat "), concept_name(None)
    ('tabby', 'egyptian cat', None)
    """
    if text is None:
        return None
    return text.split(",")[0].replace("_", " ").strip().lower() or None


def one_vs_two_store(
    store: actstore.Store,
    image_site: str,
    word_site: str,
    *,
    predictions: str | None = None,
    label: str = "label",
    word_by: str = "word",
    where: str | None = None,
    min_count: int = 1,
    permutations: int = 0,
    seed: int = 0,
) -> OneVsTwoStore:
    """The 1 vs 2 test of the misclassified images of ``image_site``'s table.

    Parameters
    ----------
    store
        An open store.
    image_site
        A complete site over the images table (a CNN layer).
    word_site
        A complete site over a words table (static vectors).
    predictions
        The predictions table (default ``predictions_<model>``, the image site's name
        before the slash with ``-`` and ``.`` as ``_``); its rank-1 ``class_name`` is
        each image's prediction.
    label
        The images table's column of true classes.
    word_by
        The words table's column of words.
    where
        SQL condition over the images table choosing the images (all by default).
    min_count
        Classes with fewer correctly classified images are not reference classes.
    permutations, seed
        The permutation null (:func:`queries.onevstwo.one_vs_two`).
    """
    table = store.site(image_site).table
    name = predictions or "predictions_" + image_site.split("/")[0].replace("-", "_").replace(
        ".", "_"
    )
    if name not in store.results:
        stored = [r for r in store.results if r.startswith("predictions")]
        raise SchemaError(
            f"no predictions table {name!r} for {image_site}; predictions tables: "
            f"{', '.join(sorted(stored)) or 'none (extract the model logits first)'}"
        )
    store.require_columns([label], table)
    rows = store.rows(where, table=table)
    found = store.sql(
        f"SELECT i.row AS row, CAST(i.{quote_ident(label)} AS VARCHAR) AS label, "
        f"p.class_name AS predicted FROM {quote_ident(table)} i "
        f"JOIN {quote_ident(name)} p ON p.row = i.row WHERE p.rank = 1 ORDER BY i.row",
        arrow=True,
    )
    image_rows = np.asarray(found.column("row").to_numpy(), np.int64)
    chosen = np.isin(image_rows, rows)
    image_rows = image_rows[chosen]
    truth = [concept_name(x) for x in found.column("label").filter(chosen).to_pylist()]
    guess = [concept_name(x) for x in found.column("predicted").filter(chosen).to_pylist()]
    vectors, concepts = _word_vectors(store, word_site, word_by, set(truth) | set(guess))
    index = {c: i for i, c in enumerate(concepts)}
    t = np.array([index.get(x, -1) if x else -1 for x in truth], np.int64)
    p = np.array([index.get(x, -1) if x else -1 for x in guess], np.int64)
    named = np.array([x is not None and y is not None for x, y in zip(truth, guess, strict=True)])
    correct = named & (np.array(truth, dtype=object) == np.array(guess, dtype=object))
    wrong = named & ~correct
    tested = wrong & (t >= 0) & (p >= 0)
    skipped = {
        "no label or class name": int(np.count_nonzero(~named)),
        "true class without a word vector": int(np.count_nonzero(wrong & (t < 0))),
        "predicted class without a word vector": int(np.count_nonzero(wrong & (t >= 0) & (p < 0))),
    }
    if not tested.any():
        raise SchemaError(
            f"no misclassified image to test at {image_site}: of {len(image_rows)} images, "
            f"{int(correct.sum())} are correctly classified (by {name}), {int(wrong.sum())} "
            f"misclassified, and none of those has word vectors at {word_site} for both its "
            f"true and predicted class ({skipped})"
        )
    means, counts = _class_means(store, image_site, image_rows, t, correct, len(index))
    reference = counts >= min_count
    if np.count_nonzero(reference) < 3:
        raise SchemaError(
            f"{int(np.count_nonzero(reference))} classes have {min_count}+ correctly "
            f"classified images and a word vector at {word_site}; the 1 vs 2 test needs 3"
        )
    reader = store.site_reader(image_site, dtype="float64")
    images = reader.take(image_rows[tested]).reshape(int(tested.sum()), -1)
    result = one_vs_two(
        images, t[tested], p[tested], means, vectors,
        reference=reference, permutations=permutations, seed=seed,
    )  # fmt: skip
    summary = pd.DataFrame(
        {
            "image_site": [image_site], "word_site": [word_site],
            "accuracy": [result.accuracy], "n_images": [result.n_images],
            "n_classes": [int(np.count_nonzero(reference))], "p_binomial": [result.p_binomial],
            "p": [result.p], "permutations": [permutations], "seed": [seed],
        }
    )  # fmt: skip
    per_image = pd.DataFrame(
        {
            "row": image_rows[tested],
            "label": [concepts[i] for i in t[tested]],
            "predicted": [concepts[i] for i in p[tested]],
            "r_true": result.r_true,
            "r_predicted": result.r_predicted,
            "passed": result.passed,
        }
    )
    return OneVsTwoStore(summary, per_image, skipped, result)


def _word_vectors(
    store: actstore.Store, site: str, by: str, wanted: set[str | None]
) -> tuple[np.ndarray, list[str]]:
    """The word vectors (float64) of the wanted concept names the site covers, and those
    names, sorted."""
    info = store.site(site)
    store.require_columns(["row", by], info.table)
    words = store.columns(["row", by], info.table)
    rows = np.asarray(words.column("row").to_numpy(), np.int64)
    keys = [concept_name(w) for w in words.column(by).to_pylist()]
    covered = np.zeros(len(rows), dtype=bool)
    for lo, hi in info.covers:
        covered |= (rows >= lo) & (rows < hi)
    first: dict[str, int] = {}
    for key, row, ok in zip(keys, rows.tolist(), covered.tolist(), strict=True):
        if ok and key in wanted and key is not None and key not in first:
            first[key] = row
    if not first:
        shown = sorted(w for w in wanted if w)[:5]
        raise SchemaError(
            f"no class has a word vector at {site}: none of the labels or predicted class "
            f"names ({', '.join(shown) or 'none'}{', ...' if len(wanted) > 5 else ''}) is a "
            f"{by} of {info.table} that the site covers"
        )
    concepts = sorted(first)
    chosen = np.array([first[c] for c in concepts], np.int64)
    order = np.argsort(chosen)
    values = store.site_reader(site, dtype="float64").take(chosen[order])
    vectors = np.empty_like(values)
    vectors[order] = values
    return vectors.reshape(len(concepts), -1), concepts


def _class_means(
    store: actstore.Store,
    site: str,
    rows: np.ndarray,
    classes: np.ndarray,
    correct: np.ndarray,
    k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean activation of each class's correctly classified images (k x units, float64)
    and their counts; classes without any are zero rows with count 0."""
    from queries.conditions import group_sums

    chosen = correct & (classes >= 0)
    (sums,) = group_sums(store, [site], rows[chosen], classes[chosen], k)
    counts = np.bincount(classes[chosen], minlength=k)
    means = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], 0.0)
    return means, counts


def _some(labels: Sequence[str]) -> str:
    shown = ", ".join(labels[:5])
    return f"{len(labels)} ({shown}{', ...' if len(labels) > 5 else ''})"

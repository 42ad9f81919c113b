"""The query engine: a sixth analysis written here alone, the merge order, sentence blocks,
schedulers, and the selection's checks."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import cloudpickle
import dask
import numpy as np
import pytest
from dask.delayed import delayed

import actstore
from queries.engine import Selection, compute, map_blocks, map_reduce, tree
from queries.results import Column, TableSchema, TidyResult, provenance

# -- a sixth analysis, defined in this file only: mean activation per unit ------------

MEANS = TableSchema(
    "unit_means",
    (Column("site", "string"), Column("unit", "int64"), Column("value", "float64"),
     Column("n", "int64")),
)  # fmt: skip


def _sums(x: np.ndarray) -> tuple[np.ndarray, int]:
    return np.asarray(x, np.float64).sum(axis=0), len(x)


def _add(a: tuple[np.ndarray, int], b: tuple[np.ndarray, int]) -> tuple[np.ndarray, int]:
    return a[0] + b[0], a[1] + b[1]


def unit_means(store: actstore.Store, site: str, where: str | None = None) -> TidyResult:
    selection = Selection(store, (site,), where)
    total, n = map_reduce(_sums, _add, selection)
    frame = MEANS.frame({"site": site, "unit": np.arange(total.size), "value": total / n, "n": n})
    return TidyResult(MEANS, frame, provenance(store, "unit_means", [site], {}, where))


SiteWriter = Callable[..., np.ndarray]


@pytest.fixture
def site_store(
    writable_store: actstore.Store, site_writer: SiteWriter
) -> tuple[actstore.Store, np.ndarray]:
    """EWT dev with a float16 site of 7 units in chunks of 1,000 rows."""
    n = writable_store.n_rows("tokens")
    values = np.random.default_rng(2).normal(3, 2, size=(n, 7)).astype(np.float32)
    stored = site_writer(writable_store, "toy/layer.0", values, dtype="float16", chunk_rows=1000)
    return writable_store, stored


def test_a_sixth_analysis_needs_only_its_own_module(
    site_store: tuple[actstore.Store, np.ndarray],
) -> None:
    store, stored = site_store
    where = "upos = 'NOUN' AND depth > 2"
    rows = store.sql(f"SELECT row FROM tokens WHERE {where}")["row"].to_numpy()
    result = unit_means(store, "toy/layer.0", where)
    expected = stored[np.sort(rows)].mean(axis=0)  # the float16 values written, in numpy
    np.testing.assert_allclose(result.frame["value"], expected, rtol=1e-12)
    assert set(result.frame["n"]) == {rows.size}
    result.save(store, "noun_means")
    saved = store.sql("SELECT unit, value FROM noun_means ORDER BY unit")
    np.testing.assert_allclose(saved["value"], expected, rtol=1e-12)
    made = store.results["noun_means"].provenance
    assert made["analysis"] == "unit_means"
    assert made["where"] == where
    assert made["sites"] == ["toy/layer.0"]
    assert made["actstore_version"] == actstore.__version__
    whole = unit_means(store, "toy/layer.0").frame["value"]
    np.testing.assert_allclose(whole, stored.mean(axis=0), rtol=1e-12)


def test_merges_follow_a_fixed_tree_in_block_order() -> None:
    parts = [delayed(str)(i) for i in range(7)]
    merged = compute(tree(parts, lambda a, b: f"({a} {b})"))[0]
    assert merged == "(((0 1) (2 3)) ((4 5) 6))"


# worker processes cannot import this test module by name: send its functions by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _label(x: np.ndarray, *, first_row: np.ndarray) -> str:
    return str(int(first_row[0]))


def test_map_reduce_meets_blocks_in_order_on_every_scheduler(
    site_store: tuple[actstore.Store, np.ndarray],
) -> None:
    store, _ = site_store
    # at most 340 rows a block: each chunk's 333 selected rows are a block of their own
    selection = Selection(store, ("toy/layer.0",), "row % 3 = 0", block_rows=340)
    expected = [str(selection.rows[s.start]) for s in selection.spans]
    assert len(expected) == -(-store.n_rows() // 1000)
    assert Selection(store, ("toy/layer.0",), "row % 3 = 0").spans == [slice(0, 8383)]
    results = []
    for scheduler in ("threads", "processes", "sync"):
        with dask.config.set(scheduler=scheduler, num_workers=2):
            results.append(
                map_reduce(_label, "{}|{}".format, selection, per_row={"first_row": selection.rows})
            )
    assert len(set(results)) == 1
    assert results[0].replace("|", " ").split() == expected


def _sentences(x: np.ndarray, *, sentence: np.ndarray) -> np.ndarray:
    return np.unique(sentence)


def test_sentence_blocks_hold_whole_sentences(
    site_store: tuple[actstore.Store, np.ndarray],
) -> None:
    store, stored = site_store
    selection = Selection(store, ("toy/layer.0",), "upos <> 'PUNCT'", sentences=True)
    parts = map_blocks(_sentences, selection, per_row={"sentence": selection.sentence})
    seen = np.concatenate(parts)
    assert seen.size == np.unique(seen).size  # no sentence in two blocks
    frame = store.sql("SELECT sentence_id FROM tokens WHERE upos <> 'PUNCT' ORDER BY row")
    np.testing.assert_array_equal(np.sort(seen), np.unique(frame["sentence_id"]))
    sizes = [s.stop - s.start for s in selection.spans]
    assert min(sizes[:-1]) >= 1000  # about a chunk each
    blocks = map_blocks(np.asarray, selection)
    np.testing.assert_array_equal(np.concatenate(blocks), stored[selection.rows])


def test_subset_and_several_sites(
    site_store: tuple[actstore.Store, np.ndarray], site_writer: SiteWriter
) -> None:
    store, stored = site_store
    other = site_writer(store, "toy/layer.1", 2 * stored[:, :3].astype(np.float32))
    selection = Selection(store, ("toy/layer.0", "toy/layer.1"), "depth = 1")
    picked = selection.subset(np.arange(selection.rows.size) % 2 == 0)

    def pair(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.concatenate([x, y], axis=1)

    with dask.config.set(scheduler="sync"):
        got = np.concatenate(map_blocks(pair, picked))
    rows = store.rows("depth = 1")[::2]
    np.testing.assert_array_equal(got, np.concatenate([stored[rows], other[rows]], axis=1))


def test_selection_checks(site_store: tuple[actstore.Store, np.ndarray], tmp_path: Path) -> None:
    store, _ = site_store
    with pytest.raises(actstore.SiteNotFoundError, match="no site 'toy/nope'"):
        Selection(store, ("toy/nope",))
    with pytest.raises(actstore.SchemaError, match="a tuple of site names"):
        Selection(store, "toy/layer.0")  # type: ignore[arg-type]
    writer = store.create_site("toy/half", n_units=2, chunk_rows=1000)
    writer.write(0, np.zeros((1000, 2), np.float32))
    with pytest.raises(actstore.SiteError, match="toy/half is incomplete"):
        Selection(store, ("toy/half",))
    empty = Selection(store, ("toy/layer.0",), "row < 0")
    with pytest.raises(actstore.SchemaError, match="no rows of tokens are selected by 'row < 0'"):
        map_reduce(_sums, _add, empty)
    with pytest.raises(actstore.SchemaError, match="per-row value 'y' has 3 entries"):
        map_blocks(_sums, Selection(store, ("toy/layer.0",)), per_row={"y": np.zeros(3)})

"""Sites that grow with their table, and sites that cover some rows only."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import actstore
from actstore import chunks
from actstore.verify import check_store

N_UNITS = 3


def expected(rows: np.ndarray) -> np.ndarray:
    """The values the tests write: unit k of row r is r + k / 4 (exact in float32)."""
    return rows[:, None].astype(np.float32) + np.arange(N_UNITS, dtype=np.float32) / 4


def fill(writer: actstore.SiteWriter) -> None:
    for start, stop in writer.pending_ranges():
        writer.write(start, expected(np.arange(start, stop)))
    writer.commit()


@pytest.fixture
def halves(tmp_path: Path, ewt_dev: Path) -> tuple[Path, Path]:
    """A store holding the first 300 sentences of EWT dev, and EWT dev itself (to append)."""
    path = tmp_path / "g.actstore"
    with actstore.create(path) as store:
        actstore.ingest_conllu(store, [ewt_dev], sentences=(0, 300))
    return path, ewt_dev


def chunk_inode(store: actstore.Store, site: str, chunk: int) -> int:
    return os.stat(chunks.chunk_file(store.path / store.site(site).path, chunk)).st_ino


def test_a_site_grows_after_an_append(halves: tuple[Path, Path]) -> None:
    path, ewt_dev = halves
    with actstore.open(path, mode="a") as store:
        fill(store.create_site("t/a", n_units=N_UNITS, dtype="float32", chunk_rows=1000))
        n_before = store.n_rows()
        kept = chunk_inode(store, "t/a", 0)
        actstore.ingest_conllu(store, [ewt_dev], sentences=(300, 600))
        n_after = store.n_rows()
        assert store.site("t/a").n_covered == n_before < n_after
        with pytest.raises(actstore.SiteError) as caught:
            store.acts("t/a", np.arange(n_before - 2, n_before + 3))
        assert str(caught.value).startswith(
            f"site t/a covers rows 0..{n_before - 1} of table tokens ({n_after:,} rows); "
            "run actstore extract to extend it (3 of the 5 rows asked for"
        )
        writer = store.create_site("t/a", n_units=N_UNITS, dtype="float32")  # chunk_rows kept
        last_full = n_before // 1000 * 1000  # the old edge chunk is written again
        assert writer.pending_ranges() == [(last_full, n_after)]
        fill(writer)
        assert chunk_inode(store, "t/a", 0) == kept  # linked, not copied or rewritten
        values = store.acts("t/a").values
    np.testing.assert_array_equal(values, expected(np.arange(n_after)))
    with actstore.open(path) as store:
        assert check_store(store) == []


def test_a_site_covering_some_rows(halves: tuple[Path, Path]) -> None:
    path, _ = halves
    with actstore.open(path, mode="a") as store:
        n = store.n_rows()
        writer = store.create_site(
            "t/part", n_units=N_UNITS, dtype="float32", chunk_rows=32, covers=[(96, 160)]
        )
        assert writer.pending_ranges() == [(96, 160)]
        fill(writer)
        site = store.site("t/part")
        assert (site.status, site.covers, site.n_covered) == ("complete", ((96, 160),), 64)
        folder = store.path / site.path
        assert not chunks.chunk_file(folder, 0).exists()  # no covered row: no file
        np.testing.assert_array_equal(
            store.acts("t/part").values, expected(np.arange(96, 160))
        )  # the rows it covers
        with pytest.raises(actstore.SiteError, match=r"covers rows 96\.\.159 of table tokens"):
            store.acts("t/part", np.array([10, 100]))
        assert check_store(store) == []
        writer = store.create_site("t/part", n_units=N_UNITS, dtype="float32")  # every row
        assert writer.pending_ranges() == [(0, 96), (160, n)]
        fill(writer)
        np.testing.assert_array_equal(store.acts("t/part").values, expected(np.arange(n)))


def test_a_smaller_coverage_never_shrinks_a_site(halves: tuple[Path, Path]) -> None:
    path, _ = halves
    with actstore.open(path, mode="a") as store:
        fill(store.create_site("t/b", n_units=N_UNITS, chunk_rows=64))
        before = store.site("t/b")
        writer = store.create_site("t/b", n_units=N_UNITS, covers=[(0, 10)])
        assert writer.pending_ranges() == [] and store.site("t/b") == before


def test_a_redeclaration_with_other_settings_names_them(halves: tuple[Path, Path]) -> None:
    path, _ = halves
    with actstore.open(path, mode="a") as store:
        fill(store.create_site("t/c", n_units=N_UNITS, provenance={"align": "mean", "k": 1}))
        with pytest.raises(actstore.SiteError) as caught:
            store.create_site(
                "t/c", n_units=N_UNITS, dtype="float32", provenance={"align": "first", "k": 1}
            )
    message = str(caught.value)
    assert "dtype: float16 → float32" in message and "align: mean → first" in message
    assert "k:" not in message and "--name" in message and "--overwrite" in message

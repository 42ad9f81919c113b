"""Sites that grow with their table, and sites that cover some rows only."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import actstore
from actstore import chunks
from actstore.marks import progress_folder
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


def test_a_writer_of_a_redeclared_site_publishes_nothing(halves: tuple[Path, Path]) -> None:
    path, _ = halves
    with actstore.open(path, mode="a") as store:
        declare = {"n_units": N_UNITS, "dtype": "float32"}
        stale = store.create_site("t/d", **declare, chunk_rows=64, covers=[(0, 100)])
        fresh = store.create_site("t/d", **declare)  # grows into a new array
        for start, stop in stale.pending_ranges():
            stale.write(start, expected(np.arange(start, stop)))
        with pytest.raises(actstore.SiteError, match=r"declared again .* while this writer"):
            stale.commit()
        assert store.site("t/d").status == "partial"
        fill(fresh)
        np.testing.assert_array_equal(store.acts("t/d").values, expected(np.arange(store.n_rows())))


def test_an_interrupted_declaration_leaves_nothing_to_inherit(halves: tuple[Path, Path]) -> None:
    path, _ = halves
    with actstore.open(path, mode="a") as store:
        debris = store.path / progress_folder(f"arrays.zarr/t/e@{store.generation + 1}")
        debris.mkdir(parents=True)
        for chunk in range(3):  # markers an uncommitted declaration left at the next path
            chunks.write_marker(debris, chunk, chunks.ABSENT)
        writer = store.create_site("t/e", n_units=N_UNITS, chunk_rows=64)
        assert writer.pending_ranges() == [(0, store.n_rows())]


def test_a_damaged_zstd_chunk_is_one_line_everywhere(halves: tuple[Path, Path]) -> None:
    path, _ = halves
    with actstore.open(path, mode="a") as store:
        declare = {"n_units": N_UNITS, "dtype": "float32", "codec": "zstd"}
        fill(store.create_site("t/z", **declare, chunk_rows=256))
        chunk = chunks.chunk_file(store.path / store.site("t/z").path, 1)
        chunk.write_bytes(chunk.read_bytes()[:20])  # cut: zstd cannot decode it
        with pytest.raises(actstore.SiteError, match="chunk 1 cannot be decoded"):
            store.acts("t/z", np.arange(250, 260)).compute()
        assert [p.where for p in check_store(store)] == ["chunk 1"]
        store.reopen_chunks("t/z", [1])  # what verify --repair does
        writer = store.create_site("t/z", **declare)
        assert writer.pending_chunks() == [1]
        fill(writer)
        np.testing.assert_array_equal(store.acts("t/z").values, expected(np.arange(store.n_rows())))


def test_sites_of_different_coverage_read_the_rows_both_hold(halves: tuple[Path, Path]) -> None:
    from queries.selection import Selection

    path, _ = halves
    with actstore.open(path, mode="a") as store:
        fill(store.create_site("t/f", n_units=N_UNITS, chunk_rows=64, covers=[(0, 300)]))
        fill(store.create_site("t/g", n_units=N_UNITS, chunk_rows=64, covers=[(100, 400)]))
        both = Selection(store, ("t/f", "t/g"), "row BETWEEN 120 AND 250")
        np.testing.assert_array_equal(both.rows, np.arange(120, 251))
        with pytest.raises(actstore.SiteError, match=r"site t/f covers rows 0\.\.299"):
            _ = Selection(store, ("t/f", "t/g"), "row BETWEEN 250 AND 350").rows

"""The row reader: every path it takes (one run, runs through short gaps, spans gathered,
pieces decoded, zarr for compressed chunks) returns exactly the rows written, and a row
selection reads about what it selects, not the chunks around it."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

import actstore
from actstore import reader as reader_module
from actstore.arrays import to_bfloat16_bits

UNITS = 40
CHUNK = 700


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory, ewt_small: Path) -> Iterator[Path]:
    """Sites of each dtype (and a compressed one) over the small EWT slice; values are
    random normals times a per-row scale, so rows are told apart."""
    import shutil

    path = Path(shutil.copytree(ewt_small, tmp_path_factory.mktemp("reader") / "s.actstore"))
    with actstore.open(path, mode="a") as store:
        n = store.n_rows()
        for name, dtype, codec in (
            ("float16", "float16", "none"),
            ("bfloat16", "bfloat16", "none"),
            ("float32", "float32", "none"),
            ("zstd", "float16", "zstd"),
            ("zstd_bfloat16", "bfloat16", "zstd"),
        ):
            writer = store.create_site(
                f"toy/{name}", n_units=UNITS, dtype=dtype, chunk_rows=CHUNK, codec=codec
            )
            writer.write(0, _written(n))
            writer.commit()
    yield path


def _written(n: int) -> np.ndarray:
    rng = np.random.default_rng(11)
    scale = np.arange(1, n + 1, dtype=np.float32)[:, None]
    return rng.standard_normal((n, UNITS), dtype=np.float32) * scale


def _stored(name: str, n: int) -> np.ndarray:
    """What a site holds, converted by numpy alone (not by the reader's torch decoding)."""
    values = _written(n)
    if name in ("float16", "zstd"):
        return values.astype(np.float16).astype(np.float32)
    if name in ("bfloat16", "zstd_bfloat16"):
        return (to_bfloat16_bits(values).astype(np.uint32) << 16).view(np.float32)
    return values


def _selections(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    starts = np.sort(rng.choice(n - 20, 60, replace=False))
    runs = np.unique(np.concatenate([np.arange(s, s + rng.integers(1, 20)) for s in starts]))
    return {
        "all": np.arange(n),
        "one row": np.array([CHUNK + 3]),
        "last row": np.array([n - 1]),
        "across chunks": np.arange(CHUNK - 5, 3 * CHUNK + 9),
        "5% at random": np.sort(rng.choice(n, n // 20, replace=False)),
        "every other row": np.arange(1, n, 2),
        "runs": runs,
    }


@pytest.fixture(params=["defaults", "tiny buffers"])
def limits(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reader's defaults, and limits so small that every path is taken: short gaps
    read through, runs read one by one, spans cut into windows, decoding in pieces."""
    if request.param == "tiny buffers":
        row = UNITS * 2
        monkeypatch.setattr(reader_module, "GAP_BYTES", 3 * row)
        monkeypatch.setattr(reader_module, "PIECE_BYTES", 7 * row)
        monkeypatch.setattr(reader_module, "SPAN_BYTES", 50 * row)
        monkeypatch.setattr(reader_module, "_IOV_MAX", 4)


@pytest.mark.usefixtures("limits")
@pytest.mark.parametrize("name", ["float16", "bfloat16", "float32", "zstd", "zstd_bfloat16"])
def test_every_selection_reads_exactly_the_rows_written(sites: Path, name: str) -> None:
    with actstore.open(sites) as store:
        n = store.n_rows()
        expected = _stored(name, n)
        for label, rows in _selections(n).items():
            got = store.site_reader(f"toy/{name}").take(rows)
            np.testing.assert_array_equal(got, expected[rows], err_msg=label)
            view = store.acts(f"toy/{name}", rows).values
            np.testing.assert_array_equal(view, expected[rows], err_msg=label)
        raw = store.site_reader(f"toy/{name}", dtype=None).take(np.arange(5, 900))
        assert raw.dtype == (np.float16 if name in ("float16", "zstd") else np.float32)
        np.testing.assert_array_equal(raw.astype(np.float32), expected[5:900])
        assert store.site_reader(f"toy/{name}").take(np.array([], np.int64)).shape == (0, UNITS)


@pytest.mark.parametrize("name", ["bfloat16", "zstd_bfloat16"])
def test_bfloat16_bits_read_raw(sites: Path, name: str) -> None:
    """Exact Spearman reads a bfloat16 site's bit patterns (as uint16), compressed or not."""
    with actstore.open(sites) as store:
        bits = to_bfloat16_bits(_written(store.n_rows()))
        rows = _selections(store.n_rows())["5% at random"]
        got = store.site_reader(f"toy/{name}", dtype="uint16").take(rows)
        np.testing.assert_array_equal(got, bits[rows])


def test_rows_out_of_order_or_range_are_refused(sites: Path) -> None:
    with actstore.open(sites) as store:
        reader = store.site_reader("toy/float16")
        n = store.n_rows()
        for rows in ([3, 7, 5], [4, 4], [-1, 2], [0, n]):
            with pytest.raises(actstore.SiteError, match=r"strictly increasing row ids in 0\.\."):
                reader.take(np.array(rows))
        with pytest.raises(actstore.SiteError, match="out must be a"):
            reader.take_into(np.array([1, 2]), np.empty((2, UNITS), np.float64))


def test_all_zero_chunks_are_written_and_read(tmp_path: Path, ewt_small: Path) -> None:
    """zarr skips all-zero chunks unless told not to; a reader would take the missing
    file for a damaged site."""
    import shutil

    from actstore.verify import check_store

    path = Path(shutil.copytree(ewt_small, tmp_path / "zeros.actstore"))
    with actstore.open(path, mode="a") as store:
        values = _written(store.n_rows())
        values[:CHUNK] = 0
        writer = store.create_site("toy/zeros", n_units=UNITS, chunk_rows=CHUNK)
        writer.write(0, values)
        writer.commit()
        got = store.acts("toy/zeros").values
    np.testing.assert_array_equal(got, values.astype(np.float16).astype(np.float32))
    with actstore.open(path) as store:
        assert check_store(store) == []


def _counting_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    counted: list[int] = []
    preadv: Callable[..., int] = os.preadv

    def counting(fd: int, buffers: list[object], offset: int) -> int:
        got = preadv(fd, buffers, offset)
        counted.append(got)
        return got

    monkeypatch.setattr(os, "preadv", counting)
    return counted


def test_a_selection_of_wide_rows_reads_what_it_selects(
    tmp_path: Path, ewt_small: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """4,096 float16 units (8 KiB rows): 5% of rows at random, or 5% of the sentences,
    read little more than those rows' bytes, though they touch every chunk."""
    import shutil

    path = Path(shutil.copytree(ewt_small, tmp_path / "wide.actstore"))
    with actstore.open(path, mode="a") as store:
        n = store.n_rows()
        writer = store.create_site("toy/wide", n_units=4096, chunk_rows=1024)
        for start, stop in writer.pending_ranges():
            writer.write(start, np.ones((stop - start, 4096), np.float32))
        writer.commit()
        sentence = store.columns(["sentence_id"]).column("sentence_id").to_numpy()
        rng = np.random.default_rng(0)
        scattered = np.sort(rng.choice(n, n // 20, replace=False))
        chosen = rng.choice(int(sentence.max()) + 1, int(sentence.max() + 1) // 20, replace=False)
        sentences = np.flatnonzero(np.isin(sentence, chosen))
        row_bytes = 4096 * 2
        for rows in (scattered, sentences):
            assert np.unique(rows // 1024).size == -(-n // 1024)  # every chunk is touched
            counted = _counting_reads(monkeypatch)
            store.acts("toy/wide", rows).values  # noqa: B018 (read it)
            assert sum(counted) <= 1.05 * rows.size * row_bytes + len(counted) * 4096
            assert sum(counted) < 0.1 * n * row_bytes


def test_a_chunk_cut_short_under_the_reader_is_an_error(sites: Path) -> None:
    with actstore.open(sites) as store:
        reader = store.site_reader("toy/float16")
        path = Path(reader.path) / "c" / "1" / "0"
        original = path.read_bytes()
        try:
            path.write_bytes(original[:-10])
            with pytest.raises(actstore.SiteError, match=r"chunk 1 .* holds .* bytes, expected"):
                reader.take(np.array([CHUNK + 1]))
            path.unlink()
            with pytest.raises(actstore.SiteError, match=r"chunk 1 .* is missing"):
                reader.read(0, 2 * CHUNK)
        finally:
            path.write_bytes(original)
        assert reader.take(np.array([CHUNK + 1])).shape == (1, UNITS)


def test_blocks_are_whole_chunks_grouped_by_size() -> None:
    cuts = reader_module.block_cuts
    rows = np.arange(10)
    assert cuts(rows, chunk_rows=3, row_bytes=1, target_bytes=6) == [0, 6, 10]
    assert cuts(rows, chunk_rows=3, row_bytes=1, target_bytes=2) == [0, 3, 6, 9, 10]
    sparse = np.array([0, 5, 10, 15, 16])  # one row in each of chunks 0-3, two in chunk 3
    assert cuts(sparse, chunk_rows=5, row_bytes=1, target_bytes=3) == [0, 3, 5]
    assert cuts(np.array([], np.int64), chunk_rows=5, row_bytes=1) == [0]

"""Sites: the writer API, lazy reads, crash safety and resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dask
import numpy as np
import pytest
import zarr

import actstore
import actstore.reader

N_UNITS = 6


def reference(rows: np.ndarray, n_units: int = N_UNITS) -> np.ndarray:
    """Values a test site holds: a smooth function of row and unit, computed here."""
    return np.sin(rows[:, None] * 0.001 + np.arange(n_units)[None, :]).astype(np.float32)


def fill(writer: actstore.SiteWriter, block_rows: int = 100) -> None:
    for start, stop in writer.pending_ranges():
        for a in range(start, stop, block_rows):
            b = min(a + block_rows, stop)
            writer.write(a, reference(np.arange(a, b)))


def test_write_out_of_order_then_read(
    writable_store: actstore.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = writable_store.create_site(
        "toy/layer.0", n_units=N_UNITS, chunk_rows=1000, provenance={"model": "toy"}
    )
    n = writable_store.n_rows("tokens")
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.choice(np.arange(1, n), 300, replace=False))
    blocks = list(zip([0, *cuts.tolist()], [*cuts.tolist(), n], strict=True))
    rng.shuffle(blocks)  # rows arrive in any order, e.g. sentences sorted by length
    for a, b in blocks:
        writer.write(a, reference(np.arange(a, b)))
    assert writer.complete and writer.buffered_rows == 0
    writer.commit()
    site = writable_store.sites["toy/layer.0"]
    assert (site.status, site.n_rows, site.n_units, site.dtype) == (
        "complete",
        n,
        N_UNITS,
        "float16",
    )
    assert not (writable_store.path / "progress").exists()

    acts = writable_store.acts("toy/layer.0")
    assert acts.dims == ("row", "unit") and acts.shape == (n, N_UNITS)
    assert acts.dtype == np.float32  # read as float32: float16 sums lose precision
    expected = reference(np.arange(n)).astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(acts.values, expected)
    stored = writable_store.acts("toy/layer.0", dtype=None)
    assert stored.dtype == np.float16
    np.testing.assert_array_equal(stored.values, expected.astype(np.float16))

    rows = writable_store.rows("upos = 'NOUN'")
    nouns = writable_store.acts("toy/layer.0", rows)
    assert nouns.shape == (rows.size, N_UNITS)
    np.testing.assert_array_equal(nouns["row"].values, rows)
    np.testing.assert_array_equal(nouns.values, expected[rows])
    np.testing.assert_allclose(
        nouns.mean("row").values, expected[rows].astype(np.float64).mean(0), rtol=1e-5
    )
    # blocks end at chunk boundaries, a sparse selection gathering many chunks per block
    monkeypatch.setattr(actstore.reader, "BLOCK_BYTES", 2000 * N_UNITS * 4)
    blocks = writable_store.acts("toy/layer.0", rows).data.chunks[0]
    cuts = np.cumsum(blocks)[:-1]
    assert 1 < len(blocks) < np.unique(rows // 1000).size
    assert (rows[cuts - 1] // 1000 != rows[cuts] // 1000).all() and max(blocks) <= 2000


def test_float32_and_bfloat16_round_trip(writable_store: actstore.Store) -> None:
    values = reference(np.arange(writable_store.n_rows("tokens")))
    for dtype in ("float32", "bfloat16"):
        writer = writable_store.create_site(f"toy/{dtype}", n_units=N_UNITS, dtype=dtype)
        writer.write(0, values)
        writer.commit()
        got = writable_store.acts(f"toy/{dtype}").values
        assert got.dtype == np.float32
        if dtype == "float32":
            np.testing.assert_array_equal(got, values)
        else:  # bfloat16 keeps 8 bits of mantissa: relative error below 2**-8
            np.testing.assert_allclose(got, values, rtol=2**-8, atol=0)
            assert not np.array_equal(got, values)


@pytest.mark.parametrize("codec", ["none", "zstd"])
def test_selection_reads_nothing(
    writable_store: actstore.Store, monkeypatch: pytest.MonkeyPatch, codec: str
) -> None:
    """store.acts and selections on it build a graph only; any byte read would raise
    (positioned reads of chunk files, and zarr's reads of compressed chunks)."""
    writer = writable_store.create_site("toy/layer.0", n_units=N_UNITS, chunk_rows=512, codec=codec)
    fill(writer)
    writer.commit()
    real_open = os.open

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a chunk was read")

    async def refuse_async(*args: object, **kwargs: object) -> None:
        refuse()

    def open_no_chunk(path: object, *args: object, **kwargs: object) -> int:
        if "arrays.zarr" in str(path):
            refuse()
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", open_no_chunk)
    monkeypatch.setattr(os, "preadv", refuse)
    monkeypatch.setattr(zarr.storage.LocalStore, "get", refuse_async)
    monkeypatch.setattr(zarr.storage.LocalStore, "get_partial_values", refuse_async)
    acts = writable_store.acts("toy/layer.0", writable_store.rows("upos = 'VERB'"))
    selected = acts.isel(row=slice(10, 500)).sel(unit=[1, 3])
    reduced = (selected.astype("float32") ** 2).mean("row")
    with pytest.raises(AssertionError, match="a chunk was read"):
        reduced.compute()
    annotated = writable_store.acts("toy/layer.0", where="depth > 2", coords=["upos", "lemma"])
    by_upos = annotated.groupby("upos").mean()  # the annotations read, no activation
    with pytest.raises(AssertionError, match="a chunk was read"):
        by_upos.compute()


def test_arrays_carry_their_annotations(writable_store: actstore.Store) -> None:
    writer = writable_store.create_site("toy/layer.0", n_units=N_UNITS, chunk_rows=512)
    fill(writer)
    writer.commit()
    where = "upos IN ('NOUN', 'VERB') AND depth > 3"
    view = writable_store.acts("toy/layer.0", where=where, coords=["upos", "sentence_id"])
    rows = writable_store.sql(
        f"SELECT row, upos, sentence_id FROM tokens WHERE {where} ORDER BY row"
    )
    np.testing.assert_array_equal(view.row.values, rows.row.to_numpy())
    assert view.upos.values.tolist() == rows.upos.tolist()
    np.testing.assert_array_equal(view.sentence_id.values, rows.sentence_id.to_numpy())
    means = view.groupby("upos").mean().compute()
    stored = reference(rows.row.to_numpy()).astype(np.float16).astype(np.float32)
    for upos in ("NOUN", "VERB"):
        expected = stored[(rows.upos == upos).to_numpy()].mean(axis=0)
        np.testing.assert_allclose(means.sel(upos=upos).values, expected, rtol=1e-6)
    with pytest.raises(
        actstore.SchemaError, match=r"no column 'Upos' in tokens \(did you mean upos\?\)"
    ):
        writable_store.acts("toy/layer.0", coords=["Upos"])
    with pytest.raises(actstore.ParameterError, match="rows or where, not both"):
        writable_store.acts("toy/layer.0", np.arange(3), where="depth > 2")


def test_redeclare_resumes_and_different_declaration_is_refused(
    writable_store: actstore.Store,
) -> None:
    w1 = writable_store.create_site(
        "toy/layer.0", n_units=N_UNITS, chunk_rows=4096, provenance={"model": "a"}
    )
    w1.write(0, reference(np.arange(5000)))  # chunk 0 full, chunk 1 partly buffered
    w1.commit()
    assert writable_store.sites["toy/layer.0"].status == "partial"
    with pytest.raises(actstore.SiteError, match=r"incomplete \(1/7 chunks written\)"):
        writable_store.acts("toy/layer.0")
    w2 = writable_store.create_site(
        "toy/layer.0", n_units=N_UNITS, chunk_rows=4096, provenance={"model": "a"}
    )
    assert w2.pending_ranges() == [(4096, writable_store.n_rows("tokens"))]
    with pytest.raises(
        actstore.SiteError, match=r"other settings \(model: a → b\).*--name.*overwrite"
    ):
        writable_store.create_site(
            "toy/layer.0", n_units=N_UNITS, chunk_rows=4096, provenance={"model": "b"}
        )
    w3 = writable_store.create_site(
        "toy/layer.0", n_units=N_UNITS, chunk_rows=4096, provenance={"model": "b"}, overwrite=True
    )
    assert w3.pending_ranges() == [(0, writable_store.n_rows("tokens"))]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "layer0"}, "invalid site name"),
        ({"name": "m/../x"}, "invalid site name"),
        ({"dtype": "int8"}, "dtype must be one of .*got 'int8'"),
        ({"codec": "lz4"}, "codec must be one of .*got 'lz4'"),
        ({"table": "images"}, "no table 'images'"),
        ({"n_units": 0}, "n_units must be a positive integer"),
    ],
)
def test_bad_declarations(
    writable_store: actstore.Store, kwargs: dict[str, object], match: str
) -> None:
    args: dict[str, object] = {"name": "m/layer.0", "n_units": 4, **kwargs}
    name = args.pop("name")
    with pytest.raises(actstore.ActStoreError, match=match):
        writable_store.create_site(str(name), **args)  # type: ignore[arg-type]


def test_bad_writes(writable_store: actstore.Store) -> None:
    writer = writable_store.create_site("m/layer.0", n_units=4)
    with pytest.raises(
        actstore.SiteError, match=r"expected a block of shape \(rows, 4\), got \(2, 3\)"
    ):
        writer.write(0, np.zeros((2, 3)))
    with pytest.raises(actstore.SiteError, match=r"outside 0\.\.25146"):
        writer.write(25146, np.zeros((2, 4)))
    block = np.zeros((3, 4))
    block[1, 2] = np.nan
    with pytest.raises(actstore.SiteError, match="row 11 holds NaN"):
        writer.write(10, block)


WRITER = """
import sys, time, numpy as np, actstore
sys.path.insert(0, sys.argv[2])
from test_sites import reference
delay = float(sys.argv[3])
with actstore.open(sys.argv[1], mode="a") as store:
    writer = store.create_site(
        "toy/layer.0", n_units=6, chunk_rows=256, provenance={"model": "toy"}
    )
    for start, stop in writer.pending_ranges():
        for a in range(start, stop, 100):
            b = min(a + 100, stop)
            writer.write(a, reference(np.arange(a, b)))
            time.sleep(delay)
    writer.commit()
"""


def run_writer(store: Path, delay: float) -> subprocess.Popen[bytes]:
    here = str(Path(__file__).parent)
    return subprocess.Popen([sys.executable, "-c", WRITER, str(store), here, str(delay)])


def copy_store(src: actstore.Store, dst: Path) -> Path:
    import shutil

    shutil.copytree(src.path, dst, ignore=shutil.ignore_patterns(".lock"))
    return dst


def _written(path: Path) -> int:
    """Chunks of toy/layer.0 durably written so far, through the public API."""
    with actstore.open(path) as store:
        return len(store.written_chunks("toy/layer.0")) if "toy/layer.0" in store.sites else 0


def test_sigkill_mid_write_then_resume_is_byte_identical(
    writable_store: actstore.Store, tmp_path: Path
) -> None:
    killed = copy_store(writable_store, tmp_path / "killed")
    clean = copy_store(writable_store, tmp_path / "clean")
    proc = run_writer(killed, delay=0.01)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and _written(killed) < 10:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    n_done = _written(killed)
    assert 10 <= n_done < 99, "the writer must die mid-way"

    # The previous committed state is readable: tables intact, the site listed as partial.
    with actstore.open(killed) as store:
        assert store.n_rows("tokens") == 25147
        assert store.sql("SELECT count(*) AS n FROM tokens")["n"].item() == 25147
        assert store.sites["toy/layer.0"].status == "partial"
        with pytest.raises(actstore.SiteError, match="incomplete"):
            store.acts("toy/layer.0")

    assert run_writer(killed, delay=0).wait() == 0
    assert run_writer(clean, delay=0).wait() == 0
    with actstore.open(killed) as a, actstore.open(clean) as b:
        assert a.sites["toy/layer.0"].status == "complete"
        np.testing.assert_array_equal(a.acts("toy/layer.0").values, b.acts("toy/layer.0").values)
    chunks_a = sorted((killed / a.site("toy/layer.0").path).rglob("c/*/*"))
    chunks_b = sorted((clean / b.site("toy/layer.0").path).rglob("c/*/*"))
    assert len(chunks_a) == len(chunks_b) == 99
    for fa, fb in zip(chunks_a, chunks_b, strict=True):
        assert fa.read_bytes() == fb.read_bytes(), fa


def test_failed_transaction_leaves_manifest_and_removes_its_files(
    writable_store: actstore.Store,
) -> None:
    import pyarrow as pa

    before = (writable_store.tables["tokens"], writable_store.generation)
    with pytest.raises(RuntimeError), writable_store.transaction():
        writable_store.append_table("tokens", pa.table({"row": [1]}))
        raise RuntimeError("crash")
    assert (writable_store.tables["tokens"], writable_store.generation) == before
    assert not (writable_store.path / "tables/tokens/part-00001.parquet").exists()
    assert sorted(p.name for p in (writable_store.path / "tables/tokens").iterdir()) == [
        "part-00000.parquet"
    ]


def test_results_and_sites_written_in_a_transaction_commit_with_it(
    writable_store: actstore.Store,
) -> None:
    import pandas as pd

    path = writable_store.path
    on_disk = (path / "manifest.json").read_bytes()
    with pytest.raises(RuntimeError), writable_store.transaction():
        writable_store.write_result("scores", pd.DataFrame({"row": [0]}))
        with writable_store.transaction():  # a nested one joins the outer
            writer = writable_store.create_site("toy/layer.0", n_units=N_UNITS)
            fill(writer)
            writer.commit()
        assert set(writable_store.results) == {"scores"}  # visible to this handle
        assert (path / "manifest.json").read_bytes() == on_disk  # not yet to others
        raise RuntimeError("crash")
    assert (path / "manifest.json").read_bytes() == on_disk
    assert not writable_store.results and not writable_store.sites
    with writable_store.transaction():
        writable_store.write_result("scores", pd.DataFrame({"row": [0]}))
    with actstore.open(path) as other:
        assert set(other.results) == {"scores"}


def test_acts_works_with_dask_threads_and_processes(writable_store: actstore.Store) -> None:
    writer = writable_store.create_site("toy/layer.0", n_units=N_UNITS, chunk_rows=2048)
    fill(writer)
    writer.commit()
    acts = writable_store.acts("toy/layer.0").astype("float64")
    expected = reference(np.arange(25147)).astype(np.float16).astype(np.float64).sum(0)
    for scheduler in ("threads", "processes"):
        with dask.config.set(scheduler=scheduler):
            np.testing.assert_allclose(acts.sum("row").values, expected, rtol=1e-4)


def test_debris_of_a_killed_chunk_write_is_removed(writable_store: actstore.Store) -> None:
    """zarr writes a chunk to '<key>.<uuid>.partial' and renames it; SIGKILL can leave one."""
    writer = writable_store.create_site("toy/layer.0", n_units=N_UNITS, chunk_rows=4096)
    writer.write(0, reference(np.arange(4096)))
    array = writable_store.path / writable_store.site("toy/layer.0").path
    debris = array / "c/1/0.0123abcd.partial"
    debris.parent.mkdir(parents=True)
    debris.write_bytes(b"half a chunk")
    path = writable_store.path
    writable_store.close()
    with actstore.open(path, mode="a") as store:  # the next exclusive writer cleans up
        assert not debris.exists()
        assert (array / "c/0/0").exists()
        writer = store.create_site("toy/layer.0", n_units=N_UNITS, chunk_rows=4096)
        debris.write_bytes(b"left by a shard")
        fill(writer)
        writer.commit()  # complete: nobody writes the site any more
        assert not debris.exists()


def test_cleanup_never_follows_symlinks_nor_deletes_foreign_files(
    tmp_path: Path, ewt_dev: Path
) -> None:
    path = tmp_path / "s"
    with actstore.create(path) as store:
        actstore.ingest_conllu(store, [ewt_dev])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.parquet").write_text("mine")
    (elsewhere / "part-00007.parquet").write_text("mine too")
    (path / "tables" / "evil").symlink_to(elsewhere)
    (path / "results" / "evil").symlink_to(elsewhere)
    (path / "arrays.zarr" / "evil").symlink_to(elsewhere)
    notes = path / "tables" / "tokens" / "NOTES.txt"
    notes.write_text("my notes")
    orphan = path / "tables" / "tokens" / "part-00009.parquet"  # a failed writer's part
    orphan.write_bytes(b"half")
    actstore.open(path, mode="a").close()
    assert sorted(p.name for p in elsewhere.iterdir()) == ["part-00007.parquet", "precious.parquet"]
    assert notes.read_text() == "my notes"
    assert not orphan.exists()
    with actstore.open(path) as store:
        assert store.n_rows("tokens") == 25147

"""Stores in object storage, against a real S3 server (SeaweedFS, started by the tests).

Every number read from S3 is checked against what the test wrote or against the
local files read directly (zarr, pyarrow, CoNLL-U), not against the S3 code itself.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import actstore
from actstore import transfer
from actstore.errors import (
    ActStoreError,
    CommitConflictError,
    ReadOnlyError,
    SiteError,
    StoreExistsError,
    StoreNotFoundError,
)
from actstore.manifest import read_manifest
from actstore.objects import ObjectStorage, manifest_name
from actstore.s3server import LocalS3
from actstore.storage import LocalStorage, is_url
from actstore.transfer import copy_store

N_UNITS = 24


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory, ewt_small: Path) -> tuple[Path, dict]:
    """EWT's first 120 sentences with a float16 site in chunks of 256 rows (the last one
    short), a zstd float32 site, a bfloat16 site, a table result and a matrix result; and
    the values written, computed here."""
    path = tmp_path_factory.mktemp("objects") / "ewt.actstore"
    shutil.copytree(ewt_small, path)
    rng = np.random.default_rng(11)
    written: dict[str, np.ndarray] = {}
    with actstore.open(path, mode="a") as store:
        n = store.n_rows("tokens")
        for name, dtype, codec in (
            ("toy/plain", "float16", "none"),
            ("toy/packed", "float32", "zstd"),
            ("toy/brain", "bfloat16", "none"),
        ):
            values = rng.standard_normal((n, N_UNITS)).astype(np.float32)
            writer = store.create_site(
                name, n_units=N_UNITS, dtype=dtype, chunk_rows=256, codec=codec
            )
            writer.write(0, values)
            writer.commit()
            written[name] = values
        store.write_result(
            "depth_counts", store.sql("SELECT depth, count(*) AS n FROM tokens GROUP BY depth")
        )
        written["matrix"] = rng.standard_normal((5, 7))
        store.write_matrix(
            "grid", written["matrix"], rows=[f"r{i}" for i in range(5)], columns=list("abcdefg")
        )
    return path, written


@pytest.fixture(scope="module")
def remote(s3: LocalS3, local: tuple[Path, dict]) -> str:
    url = s3.fresh_url() + "/corpora/ewt"
    copy_store(local[0], url, jobs=4)
    return url


def test_urls_are_told_from_paths() -> None:
    assert is_url("s3://b/p") and is_url("gs://b") and not is_url("runs/s3:/x")
    assert not is_url(Path("s3://b/p"))  # a Path is a path: pathlib already ate the //
    with pytest.raises(ActStoreError, match="not a store URL"):
        ObjectStorage("ftp://host/x")


def test_a_copied_store_answers_what_the_local_one_holds(
    remote: str, local: tuple[Path, dict]
) -> None:
    path, written = local
    with actstore.open(remote) as store:
        assert store.location == remote
        assert store.generation == read_manifest(path).generation
        # SQL over the S3 parts equals pyarrow over the local files
        tokens = pq.read_table(path / "tables/tokens/part-00000.parquet").to_pandas()
        got = store.sql("SELECT upos, count(*) AS n FROM tokens GROUP BY upos ORDER BY upos")
        want = tokens.groupby("upos").size().sort_index()
        assert got["upos"].tolist() == want.index.tolist() and got["n"].tolist() == want.tolist()
        assert store.rows("depth > 4").tolist() == tokens.index[tokens["depth"] > 4].tolist()
        assert store.columns(["form"]).column(0).to_pylist() == tokens["form"].tolist()
        # sites: every dtype and codec, dense and scattered rows, against the values written
        n = store.n_rows("tokens")
        rows = np.sort(np.random.default_rng(2).choice(n, 300, replace=False))
        for name, values in written.items():
            if name == "matrix":
                continue
            dtype = store.site(name).dtype
            stored = values.astype(np.float16) if dtype == "float16" else values
            if dtype == "bfloat16":  # keep the top 16 bits, rounded to nearest even
                bits = values.view(np.uint32)
                bits = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint32) << 16
                stored = bits.view(np.float32)
            reader = store.site_reader(name)
            np.testing.assert_array_equal(reader.take(rows), stored[rows].astype(np.float32))
            np.testing.assert_array_equal(reader.read(0, n), stored.astype(np.float32))
            np.testing.assert_array_equal(
                store.acts(name, rows[:50]).values, stored[rows[:50]].astype(np.float32)
            )
        # results
        result = store.sql("SELECT * FROM depth_counts ORDER BY depth")
        assert result["n"].sum() == n
        matrix = store.matrix("grid")
        np.testing.assert_array_equal(matrix.values.values, written["matrix"])
        assert list(matrix.values.column.values) == list("abcdefg")
        # info counts the bytes the local store holds in the same files
        local_bytes = sum(
            p.stat().st_size for p in (path / "arrays.zarr").rglob("*") if p.is_file()
        )
        assert store.info()["bytes"]["arrays"] == local_bytes


def test_every_copied_file_has_the_local_bytes(
    s3: LocalS3, remote: str, local: tuple[Path, dict], tmp_path: Path
) -> None:
    """S3 -> a new directory: each file is a source file, byte for byte, under the name
    its copy's manifest gives it, and the result is a store."""
    back = tmp_path / "back.actstore"
    report = copy_store(remote, back)

    def contents(where: Path) -> list[str]:
        named = transfer.committed_files(LocalStorage(where), read_manifest(where))
        return sorted(hashlib.sha256((where / rel).read_bytes()).hexdigest() for rel in named)

    assert report.files == len(contents(local[0])) > 10
    assert contents(back) == contents(local[0])
    with actstore.open(back) as store, actstore.open(local[0]) as source:
        assert store.n_rows("tokens") == source.n_rows("tokens")
        for name in source.sites:
            np.testing.assert_array_equal(store.acts(name).values, source.acts(name).values)


def test_verify_on_s3_finds_a_changed_and_a_missing_chunk(
    s3: LocalS3, local: tuple[Path, dict]
) -> None:
    url = s3.fresh_url() + "/damaged"
    copy_store(local[0], url)
    with actstore.open(url) as store:
        assert [p for p in check(store)] == []
        storage = store.storage
        plain = store.site("toy/plain").path
        chunk = storage.read_bytes(f"{plain}/c/1/0")
        storage.put(f"{plain}/c/1/0", bytes([chunk[0] ^ 1]) + chunk[1:])
        storage.delete_files([f"{plain}/c/2/0"])
        found = {(p.name, p.where): p.problem for p in check(store)}
        assert found[("toy/plain", "chunk 1")].startswith("checksum mismatch")
        assert "is missing" in found[("toy/plain", "chunk 2")]
        with pytest.raises(SiteError, match=r"chunk 2 .* is missing"):
            store.site_reader("toy/plain").read(600, 610)


def source_copy(store: Path, where: Path) -> tuple[Path, str]:
    """A copy of the local store to damage, and the array path of its site toy/plain."""
    shutil.copytree(store, where)
    return where, read_manifest(where).sites["toy/plain"].path


def check(store: actstore.Store) -> list:
    from actstore.verify import check_store

    return check_store(store)


def test_a_damaged_source_is_not_copied(
    s3: LocalS3, local: tuple[Path, dict], tmp_path: Path
) -> None:
    source, plain = source_copy(local[0], tmp_path / "bad.actstore")
    chunk = source / plain / "c/0/0"
    data = bytearray(chunk.read_bytes())
    data[10] ^= 0xFF
    chunk.write_bytes(bytes(data))
    url = s3.fresh_url() + "/never"
    with pytest.raises(ActStoreError, match=r"c/0/0 does not match its recorded checksum"):
        copy_store(source, url)
    with pytest.raises(StoreNotFoundError, match="holds no actstore store"):
        actstore.open(url)


def test_a_copy_that_fails_half_way_commits_nothing(
    s3: LocalS3, local: tuple[Path, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = s3.fresh_url() + "/half"
    real = ObjectStorage.put_file
    calls = []

    def failing(target: ObjectStorage, rel: str, data: bytes) -> None:
        calls.append(rel)
        if len(calls) == 8:
            raise OSError(28, "No space left on device")
        real(target, rel, data)

    monkeypatch.setattr(ObjectStorage, "put_file", failing)
    with pytest.raises(OSError, match="No space left"):
        copy_store(local[0], url, jobs=1)
    assert ObjectStorage(url).generations() == []  # files may be there; no manifest names them
    with pytest.raises(StoreNotFoundError):
        actstore.open(url)
    monkeypatch.setattr(ObjectStorage, "put_file", real)
    copy_store(local[0], url)  # the next copy completes over the leftovers
    assert actstore.open(url).n_rows("tokens") == actstore.open(local[0]).n_rows("tokens")


def test_two_writers_of_one_generation_never_both_win(
    s3: LocalS3, local: tuple[Path, dict]
) -> None:
    """The conditional create, raced 20 times by two threads released together."""
    storage = ObjectStorage(s3.fresh_url() + "/race")
    base = read_manifest(local[0])
    for _ in range(20):
        barrier = threading.Barrier(2)
        outcome: list[str] = []

        def commit(
            tag: str, barrier: threading.Barrier = barrier, outcome: list[str] = outcome
        ) -> None:
            mine = base.copy()
            mine.actstore_version = tag
            barrier.wait()
            try:
                storage.commit(mine)
                outcome.append(f"won {tag}")
            except CommitConflictError:
                outcome.append("lost")

        threads = [threading.Thread(target=commit, args=(t,)) for t in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcome)[0] == "lost" and sorted(outcome)[1].startswith("won"), outcome
        winner = sorted(outcome)[1].split()[1]
        assert storage.read_manifest().actstore_version == winner  # the reader sees the winner
        base.generation += 1


def test_concurrent_copies_to_one_prefix_commit_once(s3: LocalS3, local: tuple[Path, dict]) -> None:
    url = s3.fresh_url() + "/twice"
    errors: list[BaseException] = []

    def run() -> None:
        try:
            copy_store(local[0], url, jobs=2)
        except (CommitConflictError, StoreExistsError) as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 1, errors  # each copy names its files apart: one manifest lands
    assert ObjectStorage(url).generations() == [read_manifest(local[0]).generation]
    with actstore.open(url) as store:
        assert check(store) == []  # whole: no file of the other copy in it
    with pytest.raises(StoreExistsError, match="already holds a store"):
        copy_store(local[0], url)


def test_sql_stays_read_only_and_images_say_they_need_a_local_store(
    remote: str, tmp_path: Path
) -> None:
    with actstore.open(remote) as store:
        with pytest.raises(ActStoreError, match="read-only"):
            store.sql(f"COPY (SELECT 1) TO '{manifest_name(99)}'")
        generation = store.generation
    with actstore.open(remote, mode="a") as store:
        with pytest.raises(ReadOnlyError, match=r"in object storage, and ingesting images needs"):
            actstore.ingest_images(store, tmp_path)
        with pytest.raises(ReadOnlyError, match="this operation needs a local store"):
            store.path  # noqa: B018 - the property is what raises
    assert ObjectStorage(remote).generations()[-1] == generation  # nothing committed


def test_the_command_line_reads_and_copies_urls(
    s3: LocalS3, remote: str, local: tuple[Path, dict], tmp_path: Path
) -> None:
    def actstore_cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [str(Path(sys.executable).parent / "actstore"), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    query = "SELECT count(*) AS n FROM tokens WHERE upos = 'NOUN'"
    got = actstore_cli("sql", remote, query, "--format", "csv")
    want = actstore_cli("sql", str(local[0]), query, "--format", "csv")
    assert got.returncode == 0 and got.stdout == want.stdout, got.stderr
    assert (
        actstore_cli("verify", remote).stdout.strip()
        == f"{remote}: every chunk and table part is intact"
    )
    copied = actstore_cli("copy", str(local[0]), s3.fresh_url() + "/cli")
    assert (
        copied.returncode == 0 and "every file read back and its checksum matched" in copied.stdout
    )
    refused = actstore_cli("report", remote, "-o", remote + "/r.html")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "--output/-o: expects a local path (a URL names a store, not this)" in refused.stderr


def test_copy_refuses_what_would_be_wrong_there(
    s3: LocalS3, local: tuple[Path, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, plain = source_copy(local[0], tmp_path / "src.actstore")
    (source / plain / "c/1/0").unlink()  # a complete site missing a chunk
    with pytest.raises(ActStoreError, match=r"site toy/plain: chunk 1 \(.*\) is missing"):
        copy_store(source, s3.fresh_url() + "/holes")
    shutil.rmtree(source)
    shutil.copytree(local[0], source)
    with actstore.open(source, mode="a") as store:  # an incomplete site
        writer = store.create_site("toy/half", n_units=4, chunk_rows=256)
        writer.write(0, np.ones((256, 4), np.float32))
        writer.commit()
    with pytest.raises(ActStoreError, match="site toy/half is incomplete"):
        copy_store(source, s3.fresh_url() + "/half")
    copy_store(source, tmp_path / "same-kind.actstore")  # on disk to disk its markers go too
    url = s3.fresh_url() + "/outer"
    copy_store(local[0], url)
    with pytest.raises(ActStoreError, match="lie one inside the other"):
        copy_store(url, url + "/inner")
    monkeypatch.chdir(tmp_path)  # a relative source, an absolute destination inside it
    with pytest.raises(ActStoreError, match="lie one inside the other"):
        copy_store("src.actstore", source / "arrays.zarr" / "backup")


def test_copy_takes_only_the_stores_own_image_files(
    local: tuple[Path, dict], tmp_path: Path
) -> None:
    import pyarrow as pa

    source = tmp_path / "img.actstore"
    shutil.copytree(local[0], source)
    (tmp_path / "secret.txt").write_text("not the store's", encoding="utf-8")
    with actstore.open(source, mode="a") as store, store.transaction():
        store.append_table(
            "images", pa.table({"row": [0], "path": ["../secret.txt"], "sha256": ["0" * 64]})
        )
    with pytest.raises(ActStoreError, match=r"images path '\.\./secret\.txt' is neither"):
        copy_store(source, tmp_path / "out" / "copy.actstore")
    assert not (tmp_path / "out").exists()


def test_mistyped_urls_and_missing_buckets_are_one_line(s3: LocalS3, remote: str) -> None:
    for bad in ("s3:/bucket/x", "S3:bucket"):
        assert is_url(bad) or bad == "S3:bucket"
    with pytest.raises(ActStoreError, match="not a store URL; expected scheme://bucket/prefix"):
        actstore.open("s3:/bucket/x")
    with pytest.raises(ActStoreError, match="the bucket no-such-bucket-here does not exist"):
        actstore.open("s3://no-such-bucket-here/x")
    with actstore.open("S3" + remote[2:]) as store, pytest.raises(ActStoreError) as raised:
        store.site("nope")
    assert str(raised.value).startswith(f"no site 'nope' in {remote}; sites: toy/brain")

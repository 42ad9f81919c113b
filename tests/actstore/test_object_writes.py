"""Writing to a store in object storage (a real S3 server, SeaweedFS): ingest, sites,
results and their commits, checked against the CoNLL-U file, the values written, and
what the same steps leave in a local store."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import conllu
import numpy as np
import pytest

import actstore
from actstore.errors import (
    CommitConflictError,
    CommitUnknownError,
    ParameterError,
    StorageError,
    StoreExistsError,
    StoreNotFoundError,
)
from actstore.objects import ObjectStorage
from actstore.s3server import LocalS3

N_UNITS = 8


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "actstore.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_ingest_into_s3_holds_the_file(s3: LocalS3, ewt_dev: Path, tmp_path: Path) -> None:
    sample = tmp_path / "en_ewt-ud-dev.conllu"
    blocks = ewt_dev.read_text(encoding="utf-8").split("\n\n")
    sample.write_text("\n\n".join(blocks[:80]) + "\n\n", encoding="utf-8")
    url = s3.fresh_url() + "/ingested"
    words = [
        t for s in conllu.parse(sample.read_text(encoding="utf-8")) for t in s
        if isinstance(t["id"], int)
    ]  # fmt: skip
    done = cli("ingest", url, str(sample))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(f"{url}: {len(words):,} tokens, 80 sentences")
    with actstore.open(url) as store:
        assert store.n_rows("tokens") == len(words)
        got = store.sql("SELECT form, upos, head FROM tokens ORDER BY row")
        assert got["form"].tolist() == [t["form"] for t in words]
        assert got["upos"].tolist() == [t["upos"] for t in words]
        assert got["head"].tolist() == [t["head"] for t in words]
    again = cli("ingest", url, str(sample))  # the same file twice is refused, as on disk
    assert again.returncode == 2 and "Traceback" not in again.stderr
    with actstore.open(url) as store:
        assert store.n_rows("tokens") == len(words)


def test_a_failed_first_ingest_leaves_nothing(s3: LocalS3, tmp_path: Path) -> None:
    bad = tmp_path / "bad.conllu"
    bad.write_text("1\tA\ta\tX\t_\t_\t7\troot\t_\t_\n\n", encoding="utf-8")
    url = s3.fresh_url() + "/never"
    done = cli("ingest", url, str(bad))
    assert done.returncode == 2 and "bad.conllu:1" in done.stderr, done.stderr
    assert ObjectStorage(url).files("") == {}


@pytest.fixture
def small_s3(s3: LocalS3, ewt_small: Path) -> str:
    from actstore.transfer import copy_store

    url = s3.fresh_url() + "/small"
    copy_store(ewt_small, url)
    return url


def test_a_site_written_to_s3_reads_back_and_resumes(small_s3: str) -> None:
    rng = np.random.default_rng(4)
    with actstore.open(small_s3, mode="a") as store:
        n = store.n_rows("tokens")
        values = rng.standard_normal((n, N_UNITS)).astype(np.float32)
        writer = store.create_site("t/x", n_units=N_UNITS, dtype="float32", chunk_rows=256)
        writer.write(0, values[:700])  # chunks 0 and 1 whole; the writer dies here
        assert sorted(writer.done) == [0, 1]
    with actstore.open(small_s3, mode="a") as store:  # a new writer resumes after them
        writer = store.create_site("t/x", n_units=N_UNITS, dtype="float32", chunk_rows=256)
        assert sorted(writer.done) == [0, 1] and writer.pending_ranges() == [(512, n)]
        writer.write(512, values[512:])
        writer.commit()
    with actstore.open(small_s3) as store:
        assert store.site("t/x").status == "complete"
        np.testing.assert_array_equal(store.acts("t/x").values, values)
        from actstore.verify import check_store

        assert check_store(store) == []


def test_two_writers_of_one_store_never_both_commit(small_s3: str) -> None:
    """Object storage has no lock: two writers open at once, the second to commit is
    refused and nothing of its change stays, not even its file."""
    with actstore.open(small_s3, mode="a") as first, actstore.open(small_s3, mode="a") as second:
        first.write_result("mine", first.sql("SELECT 1 AS one"))
        with (
            pytest.raises(CommitConflictError, match="another writer committed generation"),
            second.transaction(),
        ):
            second.write_result("theirs", second.sql("SELECT 2 AS two"))
    with actstore.open(small_s3) as store:
        assert "mine" in store.results and "theirs" not in store.results
    left = ObjectStorage(small_s3).files("results")
    assert left and all(name.startswith("mine/") for name in left), left


def test_shard_writers_racing_to_publish_all_land(small_s3: str) -> None:
    """Four shard writers fill disjoint chunks and publish at once; commits that lose
    a race are retried on the newer manifest, so every chunk is published."""
    with actstore.open(small_s3) as store:
        n = store.n_rows("tokens")
    values = np.random.default_rng(9).standard_normal((n, N_UNITS)).astype(np.float32)
    barrier = threading.Barrier(4)
    failures: list[BaseException] = []

    def shard(index: int) -> None:
        try:
            with actstore.open(small_s3, mode="a", shared=True) as store:
                writer = store.create_site(
                    "t/s", n_units=N_UNITS, dtype="float32", chunk_rows=128, shard=(index, 4)
                )
                for chunk in writer.pending_chunks():
                    if chunk % 4 == index:
                        lo, hi = writer.chunk_range(chunk)
                        writer.write(lo, values[lo:hi])
                barrier.wait()
                writer.commit()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=shard, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures
    with actstore.open(small_s3) as store:
        assert store.site("t/s").status == "complete"
        np.testing.assert_array_equal(store.acts("t/s").values, values)


def test_create_over_a_store_needs_overwrite(s3: LocalS3) -> None:
    url = s3.fresh_url() + "/fresh"
    with pytest.raises(StoreNotFoundError, match="holds no actstore store"):
        actstore.open(url)
    actstore.create(url).close()
    with pytest.raises(StoreExistsError, match="already holds a store"):
        actstore.create(url)
    with actstore.open(url, mode="a") as old:  # a writer of the store about to go
        old.write_result("early", old.sql("SELECT 1 AS one"))
        with actstore.create(url, overwrite=True) as new:
            assert new.generation == 3 and not new.results  # numbering goes on
        with pytest.raises(CommitConflictError):  # the old writer cannot bring it back
            old.write_result("late", old.sql("SELECT 2 AS two"))
    assert ObjectStorage(url).generations() == [1, 2, 3]
    with actstore.open(url) as store:
        assert not store.results and store.generation == 3
    assert [n for n in ObjectStorage(url).files("") if not n.startswith("manifests/")] == []


def test_racing_ingests_leave_the_winner_whole(
    small_s3: str, ewt_dev: Path, tmp_path: Path
) -> None:
    """Both writers write the next part of tokens; the loser's must not overwrite the
    winner's file, nor delete it when it cleans up."""
    blocks = ewt_dev.read_text(encoding="utf-8").split("\n\n")
    extra = []
    for i, lo in enumerate((200, 300)):
        path = tmp_path / f"en_ewt-ud-test{i}.conllu"
        path.write_text("\n\n".join(blocks[lo : lo + 20]) + "\n\n", encoding="utf-8")
        extra.append(path)
    with actstore.open(small_s3, mode="a") as a, actstore.open(small_s3, mode="a") as b:
        before = a.n_rows("tokens")
        records = actstore.ingest_conllu(b, [extra[1]])
        with pytest.raises(CommitConflictError):
            actstore.ingest_conllu(a, [extra[0]])
    with actstore.open(small_s3) as store:
        assert store.n_rows("tokens") == before + records[0]["n_words"]
        assert store.sql("SELECT count(*) AS n FROM tokens")["n"][0] == store.n_rows("tokens")
        from actstore.verify import check_store

        assert check_store(store) == []


def test_a_commit_whose_response_was_lost_is_not_a_conflict(
    small_s3: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A retried conditional PUT finds its own first try: that commit went through."""
    real = ObjectStorage.put

    def lost_response(self: ObjectStorage, rel: str, data: bytes, *, create: bool = False) -> None:
        real(self, rel, data, create=create)
        if create:
            raise FileExistsError(rel)  # what the retry of a PUT that went through gets

    monkeypatch.setattr(ObjectStorage, "put", lost_response)
    with actstore.open(small_s3, mode="a") as store:
        store.write_result("kept", store.sql("SELECT 1 AS one"))
    monkeypatch.setattr(ObjectStorage, "put", real)
    with actstore.open(small_s3) as store:
        assert store.sql("SELECT one FROM kept")["one"].tolist() == [1]


def test_shard_writers_do_not_replace_each_others_results(small_s3: str) -> None:
    with (
        actstore.open(small_s3, mode="a", shared=True) as a,
        actstore.open(small_s3, mode="a", shared=True) as b,
    ):
        a.write_result("align", a.sql("SELECT 1 AS one"))
        with pytest.raises(ParameterError, match="replace is needed"):
            b.write_result("align", b.sql("SELECT 2 AS two"))
    with actstore.open(small_s3) as store:
        assert store.sql("SELECT * FROM align").columns.tolist() == ["one"]
    assert len(ObjectStorage(small_s3).files("results/align")) == 1  # b's file deleted


def test_a_chunk_found_damaged_and_written_again_by_its_shard_is_done(s3: LocalS3) -> None:
    """Shard 0 finds chunk 5 (shard 1's) damaged; shard 1 resumes and writes it again:
    each event is versioned above what its writer had seen, so the rewrite wins, and
    the site can complete, whatever the hosts' clocks say."""
    from actstore.marks import ObjectMarks

    storage = ObjectStorage(s3.fresh_url() + "/marks")
    path = "arrays.zarr/t/x@3"
    first, second = (
        ObjectMarks(storage, path, "shard-0-of-2"),
        ObjectMarks(storage, path, "shard-1-of-2"),
    )
    second.mark_many({4: "aa", 5: "bb"})
    named = [first.own, second.own]
    assert first.all(named) == {4: "aa", 5: "bb"}  # what a resuming writer reads first
    first.unmark(5)
    assert ObjectMarks(storage, path, "shard-1-of-2").all(named) == {4: "aa"}
    resumed = ObjectMarks(storage, path, "shard-1-of-2")
    assert 5 not in resumed.all(named)
    resumed.mark(5, "cc")
    assert ObjectMarks(storage, path, "shard-0-of-2").all(named) == {4: "aa", 5: "cc"}


def test_a_commit_whose_outcome_is_unknown_deletes_nothing(
    small_s3: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The manifest's PUT lands but its answer is lost, and the store cannot be asked
    either: the files stay, as the store may name them (it does)."""
    real_put, real_read = ObjectStorage.put, ObjectStorage.read_bytes
    lost: list[str] = []

    def timed_out(self: ObjectStorage, rel: str, data: bytes, *, create: bool = False) -> None:
        real_put(self, rel, data, create=create)
        if create:
            lost.append(rel)
            raise StorageError(f"{rel}: operation timed out")

    def unreachable(self: ObjectStorage, rel: str) -> bytes:
        if rel in lost:
            raise StorageError(f"{rel}: connection refused")
        return real_read(self, rel)

    monkeypatch.setattr(ObjectStorage, "put", timed_out)
    monkeypatch.setattr(ObjectStorage, "read_bytes", unreachable)
    with actstore.open(small_s3, mode="a") as store, pytest.raises(CommitUnknownError):
        store.write_result("landed", store.sql("SELECT 7 AS seven"))
    monkeypatch.undo()
    with actstore.open(small_s3) as store:
        assert store.sql("SELECT seven FROM landed")["seven"].tolist() == [7]

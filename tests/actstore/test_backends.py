"""The store's guarantees, checked the same way on both backends: a local directory and
a prefix of a real S3 server (SeaweedFS). Values are checked against what the test
wrote; the files against a listing taken before the change."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import actstore
from actstore.errors import ActStoreError, CommitConflictError, StoreLockedError
from actstore.storage import storage_of
from actstore.transfer import copy_store
from actstore.verify import check_store

N_UNITS = 8


@pytest.fixture(params=["local", "s3"])
def location(request: pytest.FixtureRequest, tmp_path: Path, ewt_small: Path) -> str:
    """A store with the first 120 sentences of EWT dev, on one backend or the other."""
    if request.param == "local":
        path = tmp_path / "s.actstore"
        shutil.copytree(ewt_small, path, ignore=shutil.ignore_patterns(".lock", ".commit.lock"))
        return str(path)
    url = request.getfixturevalue("s3").fresh_url() + "/s"
    copy_store(ewt_small, url)
    return url


def files(location: str) -> dict[str, str]:
    """Every file of the store (locks apart) and the sha256 of its bytes."""
    storage = storage_of(location)
    names = [n for n in storage.files("") if n not in (".lock", ".commit.lock")]
    return {n: hashlib.sha256(storage.read_bytes(n)).hexdigest() for n in sorted(names)}


def values(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, N_UNITS)).astype(np.float32)


def test_a_site_is_read_back_and_a_dropped_writer_resumed(location: str) -> None:
    with actstore.open(location, mode="a") as store:
        n = store.n_rows("tokens")
        want = values(n, 1)
        writer = store.create_site("t/a", n_units=N_UNITS, chunk_rows=256)
        writer.write(0, want[:600])  # two whole chunks, then the writer is dropped
    with actstore.open(location, mode="a") as store:
        writer = store.create_site("t/a", n_units=N_UNITS, chunk_rows=256)
        assert writer.pending_ranges() == [(512, n)]
        writer.write(512, want[512:])
        writer.commit()
    with actstore.open(location) as store:
        np.testing.assert_array_equal(
            store.acts("t/a").values, want.astype(np.float16).astype(np.float32)
        )
        assert check_store(store) == []


def test_a_failed_change_leaves_every_file_as_it_was(location: str) -> None:
    with actstore.open(location, mode="a") as store:  # something to keep
        store.write_result("kept", store.sql("SELECT 1 AS one"))
    before = files(location)
    with (
        actstore.open(location, mode="a") as store,
        pytest.raises(RuntimeError, match="boom"),
        store.transaction(),
    ):
        n = store.n_rows("tokens")
        store.write_result("lost", store.sql("SELECT 2 AS two"))
        store.write_matrix("grid", np.eye(3), rows=list("abc"), columns=list("xyz"))
        writer = store.create_site("t/lost", n_units=N_UNITS, chunk_rows=256)
        writer.write(0, values(n, 2))
        raise RuntimeError("boom")
    assert files(location) == before
    with actstore.open(location) as store:
        assert set(store.results) == {"kept"} and "t/lost" not in store.sites


def test_a_reader_keeps_its_generation_while_a_writer_replaces(location: str) -> None:
    with actstore.open(location, mode="a") as store:
        n = store.n_rows("tokens")
        old = values(n, 3)
        writer = store.create_site("t/r", n_units=N_UNITS, dtype="float32", chunk_rows=256)
        writer.write(0, old)
        writer.commit()
        store.write_result("scores", store.sql("SELECT 1 AS v"))
    reader = actstore.open(location)
    new = values(n, 4)
    with actstore.open(location, mode="a") as store:
        writer = store.create_site(
            "t/r", n_units=N_UNITS, dtype="float32", chunk_rows=256, overwrite=True,
            provenance={"run": 2},
        )  # fmt: skip
        writer.write(0, new)
        writer.commit()
        store.write_result("scores", store.sql("SELECT 2 AS v"), replace=True)
    np.testing.assert_array_equal(reader.acts("t/r").values, old)  # the old array, whole
    assert reader.sql("SELECT v FROM scores")["v"].tolist() == [1]
    with actstore.open(location) as fresh:
        np.testing.assert_array_equal(fresh.acts("t/r").values, new)
        assert fresh.sql("SELECT v FROM scores")["v"].tolist() == [2]


def test_two_writers_never_both_commit(location: str) -> None:
    """On disk the second writer is kept out by the lock; in object storage, which has
    none, its commit is refused. Either way one change lands, whole."""
    outcomes = []
    first = actstore.open(location, mode="a")
    try:
        with actstore.open(location, mode="a") as second:
            first.write_result("first", first.sql("SELECT 1 AS one"))
            with second.transaction():
                second.write_result("second", second.sql("SELECT 2 AS two"))
        outcomes.append("both")
    except StoreLockedError:
        outcomes.append("locked out")
    except CommitConflictError:
        outcomes.append("refused at commit")
    finally:
        first.close()
    expected = "locked out" if not location.startswith("s3://") else "refused at commit"
    assert outcomes == [expected]
    with actstore.open(location) as store:
        assert "second" not in store.results
        if expected == "locked out":
            assert "first" not in store.results  # the first writer never got to write
        else:
            assert "first" in store.results


WRITER = textwrap.dedent(
    """
    import sys, numpy as np, actstore
    with actstore.open(sys.argv[1], mode="a") as store:
        n = store.n_rows("tokens")
        for i in range(1000):
            with store.transaction():
                store.write_result(f"r{i}", store.sql(f"SELECT {i} AS i"))
                writer = store.create_site(f"k/{i}", n_units=4, chunk_rows=256)
                writer.write(0, np.full((n, 4), i, np.float32))
                writer.commit()
            print(i, flush=True)
    """
)


def test_a_writer_killed_during_its_commits_leaves_a_consistent_store(location: str) -> None:
    run = subprocess.Popen(
        [sys.executable, "-c", WRITER, location], stdout=subprocess.PIPE, text=True,
        env=dict(os.environ),
    )  # fmt: skip
    assert run.stdout is not None
    for _ in range(3):  # three changes committed, the fourth under way
        assert run.stdout.readline(), "the writer stopped"
    time.sleep(0.05)
    os.kill(run.pid, signal.SIGKILL)
    run.communicate()
    with actstore.open(location) as store:
        assert check_store(store) == []  # every named file there and intact
        committed = sorted(int(n[1:]) for n in store.results)
        assert committed == list(range(len(committed))) and len(committed) >= 3
        for i in committed:  # each change whole: its result and its site together
            assert store.sql(f"SELECT i FROM r{i}")["i"].tolist() == [i]
            assert (store.acts(f"k/{i}").values == i).all()
    with actstore.open(location, mode="a") as store:  # the next writer commits
        store.write_result("after", store.sql("SELECT 1 AS one"))


def test_a_matrix_writer_commits_once_and_a_failed_inner_change_cleans_up(
    location: str,
) -> None:
    with actstore.open(location, mode="a") as store:
        writer = store.create_matrix("grid", (3, 3), rows=list("abc"), columns=list("xyz"))
        writer.write(0, 0, np.eye(3))
        writer.commit()
        with pytest.raises(ActStoreError, match="this writer has committed"):
            writer.commit()  # a second commit must not touch the first one's files
        before = files(location)
        with store.transaction():  # noqa: SIM117 - the outer one goes on after the inner fails
            with pytest.raises(RuntimeError, match="inner"), store.transaction():
                store.write_result("inner", store.sql("SELECT 1 AS one"))
                raise RuntimeError("inner")
        added = set(files(location)) - set(before)
        assert all(n.startswith("manifests/") for n in added), added  # the outer's commit
    with actstore.open(location) as store:
        np.testing.assert_array_equal(store.matrix("grid").values.values, np.eye(3))
        assert "inner" not in store.results

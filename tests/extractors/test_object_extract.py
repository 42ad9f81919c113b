"""Extraction into a store in object storage (a real S3 server, SeaweedFS): shards
running at once and a SIGKILLed run resumed write the bytes one uninterrupted local
process writes, against real MiniLM over 120 sentences of EWT dev."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import actstore
from actstore.objects import ObjectStorage
from actstore.s3server import LocalS3
from actstore.transfer import copy_store
from actstore.verbs import verb
from actstore.verify import check_store
from extractors.testing import clone, site_bytes, stored_files

OPTIONS = ["--model", "minilm", "--sites", "layer.3", "--chunk-rows", "64", "--device", "cpu"]
SITE = "minilm/layer.3"


@pytest.fixture(scope="module")
def local_reference(ewt_small: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted local run with one torch thread, as the subprocesses run."""
    store = clone(ewt_small, tmp_path_factory.mktemp("reference") / "s")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        verb("extract")(store=store, model="minilm", sites="layer.3", chunk_rows=64,
                        device="cpu", quiet=True)  # fmt: skip
    finally:
        torch.set_num_threads(before)
    return store


def corpus_on_s3(s3: LocalS3, ewt_small: Path, name: str) -> str:
    url = s3.fresh_url() + f"/{name}"
    copy_store(ewt_small, url)
    return url


def extract(url: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "actstore.cli", "extract", url, *OPTIONS, "--quiet", *extra]


def one_thread() -> dict[str, str]:
    """This process's environment (the S3 server's ``AWS_*`` too), one torch thread."""
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def assert_same_as(url: str, reference: Path) -> None:
    with actstore.open(url) as store:
        assert store.site(SITE).status == "complete"
        assert check_store(store) == []  # every chunk re-hashed from the objects
    assert stored_files(url) == stored_files(reference)
    assert site_bytes(url) == site_bytes(reference)
    folder = "progress/" + actstore.open(url).site(SITE).path.partition("/")[2]
    assert ObjectStorage(url).files(folder) == {}  # the writers' records are gone


def test_shards_at_once_on_s3_write_one_process_bytes(
    s3: LocalS3, ewt_small: Path, local_reference: Path
) -> None:
    """Two shard processes started together commit through conditional creates; the
    one that loses a race reads the newer manifest and commits again."""
    url = corpus_on_s3(s3, ewt_small, "shards")
    shards = [
        subprocess.Popen(
            extract(url, "--shard", f"{i}/2"),
            env=one_thread(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(2)
    ]
    for shard in shards:
        _, err = shard.communicate(timeout=600)
        assert shard.returncode == 0, err.decode()
    assert_same_as(url, local_reference)


def progress_written(url: str) -> int:
    """Chunks the running writer has recorded in its own progress object."""
    storage = ObjectStorage(url)
    for rel in storage.files("progress"):
        if rel.endswith("shard-0-of-1.json"):
            events = json.loads(storage.read_bytes(f"progress/{rel}")).values()
            return sum(checksum is not None for _, checksum in events)
    return 0


def test_a_sigkilled_extraction_on_s3_resumes_byte_identical(
    s3: LocalS3, ewt_small: Path, local_reference: Path
) -> None:
    url = corpus_on_s3(s3, ewt_small, "killed")
    run = subprocess.Popen(extract(url), env=one_thread(), stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while progress_written(url) < 3:
            assert run.poll() is None, "the extraction ended before 3 chunks"
            assert time.monotonic() < deadline, "no chunk recorded in 300 s"
            time.sleep(0.05)
    finally:
        os.kill(run.pid, signal.SIGKILL)
        _, err = run.communicate()  # reaps it and closes its pipe
    assert run.returncode == -signal.SIGKILL, err.decode()
    with actstore.open(url) as store:  # declared, not complete: readers see it partial
        assert store.site(SITE).status == "partial"
    done = subprocess.run(extract(url), env=one_thread(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert_same_as(url, local_reference)

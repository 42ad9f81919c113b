"""``actstore extract --workers N`` and ``run_shard``: N processes, one shard each, write
the same bytes as one process, against real MiniLM over 120 sentences of EWT dev."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import actstore
from actstore.verbs import verb
from actstore.verify import check_store
from extractors.testing import clone, site_bytes, stored_files
from extractors.workers import cpu_threads, run_shard

SITE = "minilm/layer.3"
ARGUMENTS: dict[str, Any] = {
    "model": "minilm",
    "sites": "layer.3",
    "chunk_rows": 64,
    "device": "cpu",
}
OPTIONS = ["--model", "minilm", "--sites", "layer.3", "--chunk-rows", "64", "--device", "cpu"]


def extract_command(store: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "actstore.cli", "extract", str(store), *OPTIONS, *extra]


def environment(threads: int | None) -> dict[str, str]:
    """This process's environment with ``OMP_NUM_THREADS`` set to ``threads`` (None:
    unset, so that ``--workers`` chooses)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    return env if threads is None else {**env, "OMP_NUM_THREADS": str(threads)}


@pytest.fixture(scope="module")
def reference(
    ewt_small: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[int], Path]]:
    """One uninterrupted run in this process with ``threads`` torch threads (the bytes of
    a matrix product may depend on them): what every sharded run must equal."""
    made: dict[int, Path] = {}

    def make(threads: int) -> Path:
        if threads not in made:
            store = clone(ewt_small, tmp_path_factory.mktemp("reference") / "s")
            before = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                verb("extract")(store=store, quiet=True, **ARGUMENTS)
            finally:
                torch.set_num_threads(before)
            made[threads] = store
        return made[threads]

    yield make


def assert_same_sites(store: Path, expected: Path) -> None:
    with actstore.open(store) as opened:
        assert {s.status for s in opened.sites.values()} == {"complete"}
        assert check_store(opened) == []  # checksums recomputed too
    assert stored_files(store) == stored_files(expected)
    assert site_bytes(store) == site_bytes(expected)


def test_two_workers_equal_one_process(
    ewt_small: Path, reference: Callable[[int], Path], tmp_path: Path
) -> None:
    store = clone(ewt_small, tmp_path / "s")
    done = subprocess.run(
        extract_command(store, "--workers", "2"), env=environment(None),
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = done.stdout.strip()
    assert "\n" not in summary
    assert re.fullmatch(
        rf"extracted 1 sites \({SITE} \.\. {SITE}\) over 2,675 rows, .* 42 chunks on cpu in "
        r"[\d.]+ s; .*; 2 shards",
        summary,
    ), summary
    # declared once: the shard that came second found the site, made no array of its own
    assert len(list((store / "arrays.zarr" / "minilm").glob("layer.3@*"))) == 1
    assert_same_sites(store, reference(cpu_threads(2)))


def find_child(parent: subprocess.Popen[bytes], store: Path, shard: str) -> int | None:
    """The pid of ``parent``'s child running ``shard`` of ``store`` (None: not yet)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().decode().split("\0")
            ppid = int((proc / "stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        if ppid == parent.pid and str(store) in args and f"--shard={shard}" in args:
            return int(proc.name)
    return None


def poll(what: str, check: Callable[[], Any], parent: subprocess.Popen[bytes]) -> Any:
    """Call ``check`` until it returns something, failing after 120 s or if ``parent``
    ended."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        assert parent.poll() is None, f"the workers ended before {what}"
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def shard_chunks_written(store: Path) -> bool:
    """Whether a chunk of shard 1 of 2 (the second half) is durably written."""
    with actstore.open(store) as opened:
        if SITE not in opened.sites:
            return False
        n_chunks = opened.site(SITE).n_chunks
        return any(c * 2 // n_chunks == 1 for c in opened.written_chunks(SITE))


@pytest.mark.slow  # 40-80 s on 2 cores; the bytes of two workers are checked by default
def test_a_killed_worker_is_started_again(
    ewt_small: Path, reference: Callable[[int], Path], tmp_path: Path
) -> None:
    store = clone(ewt_small, tmp_path / "s")
    parent = subprocess.Popen(
        extract_command(store, "--workers", "2"), env=environment(None),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        pid = poll("shard 1/2 to start", lambda: find_child(parent, store, "1/2"), parent)
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert f"OMP_NUM_THREADS={cpu_threads(2)}".encode() in environ  # its share of cores
        poll("a chunk of shard 1/2", lambda: shard_chunks_written(store), parent)
        os.kill(pid, signal.SIGKILL)
        out, err = (s.decode() for s in parent.communicate(timeout=300))
    finally:
        if parent.poll() is None:
            parent.kill()
    assert parent.returncode == 0, err
    assert "shard 1/2 stopped (killed by SIGKILL" in err
    assert "starting it again (retry 1 of 1)" in err
    assert out.strip().endswith("; 2 shards, started again: 1/2 (1x)"), out
    # the chunks the killed one finished were kept, not computed again
    chunks = int(re.search(r"(\d+) chunks", out).group(1))  # type: ignore[union-attr]
    assert chunks < 42
    assert_same_sites(store, reference(cpu_threads(2)))


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--workers", "0"], "--workers must be at least 1, got 0"),
        (["--workers", "2", "--retries", "-1"], "--retries must be 0 or more, got -1"),
        (
            ["--workers", "2", "--shard", "1/2"],
            "--workers cannot be combined with shard 1/2: it runs every shard",
        ),
        (
            ["--workers", "2", "--overwrite"],
            "--workers cannot be combined with overwrite; overwrite first",
        ),
    ],
)
def test_refusals_in_one_line(
    ewt_small: Path, flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from actstore.cli import main

    assert main(["extract", str(ewt_small), *OPTIONS, *flags]) == 2
    err = capsys.readouterr().err
    assert err == f"actstore: error: {message}\n"


def test_refuses_an_extractor_that_cannot_run_in_shards(
    ewt_small: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from actstore.cli import main
    from extractors.transformer import TransformerExtractor

    monkeypatch.setattr(TransformerExtractor, "shardable", False)
    assert main(["extract", str(ewt_small), *OPTIONS, "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert err == "actstore: error: --workers extractor transformer cannot run in shards\n"


def test_a_shard_that_keeps_failing_is_named(
    ewt_small: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Shard 0 fails on every attempt; shard 1 is left to finish first."""
    from actstore.cli import main
    from extractors import workers

    finished = tmp_path / "shard 1 finished"
    script = (
        "import sys, time\n"
        "if '--shard=0/2' in sys.argv: sys.exit('actstore: error: out of luck')\n"
        f"time.sleep(1); open({str(finished)!r}, 'w').close()\n"
    )

    def child_argv(store: Path, options: object, index: int, count: int) -> list[str]:
        return [sys.executable, "-c", script, f"--shard={index}/{count}", "--quiet"]

    monkeypatch.setattr(workers, "child_argv", child_argv)
    assert main(["extract", str(ewt_small), *OPTIONS, "--workers", "2", "--retries", "2"]) == 2
    assert finished.exists()
    assert [r.getMessage() for r in caplog.records] == [
        f"shard 0/2 stopped (exit status 1: out of luck); starting it again (retry {i} of 2)"
        for i in (1, 2)
    ]
    assert capsys.readouterr().err == (
        "actstore: error: shard 0/2 failed (exit status 1, 3 attempts): out of luck; the "
        "chunks written are kept: run the command again to resume\n"
    )


def test_one_gpu_each_round_robin(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    import actstore.devices
    from extractors import workers
    from extractors.transformer import ExtractOptions, TransformerExtractor

    monkeypatch.setattr(actstore.devices, "resolve_device", lambda name, parameter: torch.device(
        name if name != "auto" else "cuda"))  # fmt: skip
    monkeypatch.setattr(workers, "visible_gpus", lambda: ["2", "5", "7"])
    envs, label = workers.placement(ExtractOptions(device="auto"), TransformerExtractor, 4)
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["2", "5", "7", "2"]
    assert label == "GPUs 2,5,7"
    # a GPU named: every shard on it, as asked
    assert workers.placement(ExtractOptions(device="cuda:1"), TransformerExtractor, 2) == (
        [{}, {}],
        None,
    )


@pytest.mark.slow  # a LocalCluster of 2 processes loading MiniLM: 20-50 s on 2 cores
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_dask_runs_the_shards(
    ewt_small: Path, reference: Callable[[int], Path], tmp_path: Path
) -> None:
    from distributed import Client, LocalCluster

    store = clone(ewt_small, tmp_path / "s")
    with (
        # the nanny starts its workers with OMP_NUM_THREADS=1
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        futures = [client.submit(run_shard, store, i, 2, **ARGUMENTS) for i in range(2)]
        summaries = client.gather(futures)
        workers = {w for ws in client.who_has(futures).values() for w in ws}
    assert len(workers) == 2  # one shard on each worker process
    assert all(s.startswith(f"extracted 1 sites ({SITE} .. {SITE}) over ") for s in summaries)
    assert_same_sites(store, reference(1))

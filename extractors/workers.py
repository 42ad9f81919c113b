"""One extraction as N processes, one shard each: ``actstore extract --workers N``.

:func:`run_workers` starts ``python -m actstore.cli extract STORE ... --shard i/N
--quiet`` for each shard, with the options it was given, and waits for them. The
parent declares nothing: each shard opens the store as a shared writer and declares
the sites itself, under the commit lock, so the first declares them and the others
find them declared (the driver's own rule for ``--shard``). Each child gets one GPU
where ``--device`` is ``auto`` or ``cuda`` and several are visible
(``CUDA_VISIBLE_DEVICES``, round robin), else its share of the CPU cores
(``OMP_NUM_THREADS``, unless set already). A child that dies is started again, up to
``retries`` times; it resumes where it stopped, since finished chunks are kept. Each
child hands its report back as JSON (:data:`~extractors.commands.REPORT_ENV`); the
parent prints one summary for all.

:func:`run_shard` runs one shard in the calling process, for schedulers (dask, a
SLURM array) that start the processes themselves.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import actstore
from actstore.errors import ActStoreError, ParameterError
from actstore.verbs import flag_of, parameter_fields
from extractors.base import Extractor
from extractors.choice import combine
from extractors.commands import REPORT_ENV, extractor_class
from extractors.driver import ExtractReport
from extractors.verbs import ExtractOptions

log = logging.getLogger("actstore.extract")

# handled by the parent, never passed on to a shard
_NOT_FORWARDED = ("shard", "workers", "retries")


def child_argv(store: str | Path, options: ExtractOptions, index: int, count: int) -> list[str]:
    """The command line of shard ``index`` of ``count``: every option that differs from
    its default, as ``--flag=value`` (a value may start with a dash), then ``--shard``
    and ``--quiet``.

    Examples
    --------
    >>> options = ExtractOptions(sites="layer.3", chunk_rows=64, workers=2, time_major=False)
    >>> child_argv("ewt.actstore", options, 1, 2)[1:]
    ['-m', 'actstore.cli', 'extract', 'ewt.actstore', '--sites=layer.3', '--align=mean', \
'--chunk-rows=64', '--shard=1/2', '--quiet']
    """
    argv = [sys.executable, "-m", "actstore.cli", "extract", str(store)]
    for field in parameter_fields(ExtractOptions):
        value = getattr(options, field.name)
        if field.name in _NOT_FORWARDED or value is None or value == field.default:
            continue
        if isinstance(value, bool):  # a switch, given only when on (the default is off)
            argv.append(flag_of(field))
        else:
            argv.append(f"{flag_of(field)}={value}")
    return [*argv, f"--shard={index}/{count}", "--quiet"]


def cpu_threads(count: int, cores: int | None = None) -> int:
    """Threads for each of ``count`` processes sharing ``cores`` (default: the cores this
    process may run on), at least one.

    Examples
    --------
    >>> cpu_threads(2, cores=16), cpu_threads(3, cores=2)
    (8, 1)
    """
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        cores = cores or os.cpu_count() or 1
    return max(1, cores // count)


def visible_gpus() -> list[str]:
    """The GPUs this process sees, as ``CUDA_VISIBLE_DEVICES`` names them (``0``, ``1``,
    ... without it), as many as torch counts."""
    import torch

    n_gpus = torch.cuda.device_count()
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        return [str(i) for i in range(n_gpus)]
    return [g.strip() for g in listed.split(",") if g.strip()][:n_gpus]


def placement(
    options: ExtractOptions, extractor: type[Extractor], count: int
) -> tuple[list[dict[str, str]], str | None]:
    """What each of ``count`` children adds to its environment, and the devices to name
    in the summary (None: as the children report it).

    On CUDA (``--device auto`` or ``cuda`` resolving to it) with several GPUs visible,
    child *i* sees only GPU *i* mod their number. ``cuda:N`` puts every child on GPU N.
    On CPU each child runs ``cores // count`` threads (at least one), unless
    ``OMP_NUM_THREADS`` is set already.

    Examples
    --------
    >>> from extractors.vectors import VectorsExtractor  # runs no model
    >>> envs, label = placement(ExtractOptions(device="cpu"), VectorsExtractor, 2)
    >>> len(envs), label, envs[0] == envs[1]
    (2, None, True)
    """
    if "cuda" in extractor.devices and options.device != "cpu":
        from actstore.devices import resolve_device

        device = resolve_device(options.device, parameter="device")
        if device.type == "cuda":
            gpus = visible_gpus()
            if device.index is not None or len(gpus) < 2:
                return [{} for _ in range(count)], None
            chosen = [gpus[i % len(gpus)] for i in range(count)]
            label = "GPUs " + ",".join(dict.fromkeys(chosen))
            return [{"CUDA_VISIBLE_DEVICES": gpu} for gpu in chosen], label
    if "OMP_NUM_THREADS" in os.environ:
        return [{} for _ in range(count)], None
    threads = str(cpu_threads(count))
    return [{"OMP_NUM_THREADS": threads} for _ in range(count)], None


def describe_exit(code: int) -> str:
    """How a process ended, from its return code.

    Examples
    --------
    >>> describe_exit(-9), describe_exit(2)
    ('killed by SIGKILL', 'exit status 2')
    """
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


class Shard:
    """One child process and its attempts: started, polled, stopped, its report read."""

    def __init__(self, argv: list[str], env: dict[str, str], name: str, folder: Path) -> None:
        self.argv, self.env, self.name = argv, env, name  # name: "i/N"
        index = name.partition("/")[0]
        self.report_path = folder / f"report-{index}.json"
        self.stderr_path = folder / f"stderr-{index}.txt"
        self.attempts = 0
        self.code: int | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start (or start again) the child."""
        self.attempts += 1
        self.report_path.unlink(missing_ok=True)
        env = {**os.environ, **self.env, REPORT_ENV: str(self.report_path)}
        with open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                self.argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=stderr,
            )  # fmt: skip

    def poll(self) -> int | None:
        """The exit code of the running attempt (None while it runs)."""
        assert self.process is not None  # started first
        return self.process.poll()

    def last_line(self) -> str:
        """The last line the current attempt wrote to stderr (without the command
        line's ``actstore: error:``)."""
        try:
            lines = self.stderr_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return "(no output)"
        last = next((line.strip() for line in reversed(lines) if line.strip()), "(no output)")
        return last.removeprefix("actstore: error: ")

    def stop(self) -> None:
        """End a child still running (the parent failed or was interrupted)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def report(self) -> list[ExtractReport]:
        """The parts of the report the finished child wrote (one per driver run)."""
        data = json.loads(self.report_path.read_text(encoding="utf-8"))
        return [ExtractReport(**part) for part in data["parts"]]


def wait_all(shards: Sequence[Shard], retries: int, poll_seconds: float = 0.1) -> None:
    """Wait until every shard has finished, starting one that failed again (up to
    ``retries`` times); each shard's final exit code is left in ``code``."""
    running = list(shards)
    while running:
        time.sleep(poll_seconds)
        for shard in list(running):
            code = shard.poll()
            if code is None:
                continue
            if code != 0 and shard.attempts <= retries:
                log.warning(
                    "shard %s stopped (%s: %s); starting it again (retry %d of %d)",
                    shard.name, describe_exit(code), shard.last_line(), shard.attempts, retries,
                )  # fmt: skip
                shard.start()
                continue
            shard.code = code
            running.remove(shard)


def failure(failed: Sequence[Shard]) -> str:
    """One line for shards that failed for good, naming the first."""
    first = failed[0]
    tries = f", {first.attempts} attempts" if first.attempts > 1 else ""
    line = (
        f"shard {first.name} failed ({describe_exit(first.code or 0)}{tries}): {first.last_line()}"
    )
    if len(failed) > 1:
        line += f"; shards {', '.join(s.name for s in failed[1:])} failed too"
    return line + "; the chunks written are kept: run the command again to resume"


def merge(
    shard_reports: Sequence[Sequence[ExtractReport]], seconds: float, device: str | None, note: str
) -> ExtractReport:
    """One report for the shards' reports (each a list of parts, one per table): rows
    and chunks summed, the wall time, the extractor's details where all shards agree.

    Examples
    --------
    >>> a = [ExtractReport(["m/a"], 300, 2, 1.0, "cpu", middle=", 9 tokens")]
    >>> b = [ExtractReport(["m/a"], 398, 2, 1.2, "cpu", middle=", 9 tokens")]
    >>> merge([a, b], 1.5, None, "; 2 shards").summary()
    'extracted 1 sites (m/a .. m/a) over 698 rows, 9 tokens, 4 chunks on cpu in 1.5 s; 2 shards'
    """
    merged = []
    for parts in zip(*shard_reports, strict=True):
        first = parts[0]

        def agreed(name: str, parts: Sequence[ExtractReport] = parts) -> Any:
            value = getattr(parts[0], name)
            return value if all(getattr(p, name) == value for p in parts) else type(value)()

        merged.append(
            ExtractReport(
                sites=first.sites,
                rows=sum(p.rows for p in parts),
                chunks_done=sum(p.chunks_done for p in parts),
                seconds=seconds,
                device=device or first.device,
                stats=agreed("stats"),
                middle=agreed("middle"),
                tail=agreed("tail") + note,
                nothing_to_do=all(p.nothing_to_do for p in parts),
            )
        )
    return combine(merged)


def run_workers(store: str | Path, options: ExtractOptions) -> ExtractReport:
    """Run ``options.workers`` processes, shard *i* of N each, into the store at
    ``store``; their report together (see the module's docstring).

    Examples
    --------
    >>> store.close()
    >>> options = ExtractOptions(model="minilm", sites="layer.3", workers=2)
    >>> run_workers(store_path, options).summary()  # doctest: +SKIP
    'extracted 1 sites (minilm/layer.3 .. minilm/layer.3) over 698 rows, ...; 2 shards'
    """
    started = time.perf_counter()
    count = options.workers
    kind = extractor_class(options)
    if not kind.shardable:
        raise ParameterError("workers", f"extractor {kind.name} cannot run in shards")
    actstore.open(store).close()  # a missing store: one error here, not one per shard
    envs, device = placement(options, kind, count)
    with tempfile.TemporaryDirectory(prefix="actstore-workers-") as folder:
        shards = [
            Shard(child_argv(store, options, i, count), env, f"{i}/{count}", Path(folder))
            for i, env in enumerate(envs)
        ]
        try:
            for shard in shards:
                shard.start()
            wait_all(shards, options.retries)
        finally:
            for shard in shards:
                shard.stop()
        failed = [s for s in shards if s.code != 0]
        if failed:
            raise ActStoreError(failure(failed))
        reports = [shard.report() for shard in shards]
    again = [f"{s.name} ({s.attempts - 1}x)" for s in shards if s.attempts > 1]
    note = f"; {count} shards" + (f", started again: {', '.join(again)}" if again else "")
    return merge(reports, time.perf_counter() - started, device, note)


def run_shard(store: str | Path, index: int, count: int, **options: Any) -> str:
    """Run shard ``index`` of ``count`` in this process through the registered
    ``extract`` verb (``options`` by parameter name, as ``actstore extract`` takes
    them); its summary line. For schedulers that start the processes themselves:

    >>> from distributed import Client  # doctest: +SKIP
    >>> client = Client(scheduler_address)  # doctest: +SKIP
    >>> futures = [client.submit(run_shard, "ewt.actstore", i, 4, model="minilm",
    ...                          sites="layer.*") for i in range(4)]  # doctest: +SKIP
    >>> client.gather(futures)  # doctest: +SKIP

    Examples
    --------
    >>> store.close()
    >>> run_shard(store_path, 0, 2, model="minilm", sites="layer.3")  # doctest: +SKIP
    'extracted 1 sites (minilm/layer.3 .. minilm/layer.3) over 350 rows, ...'
    """
    from actstore.verbs import verb

    extract = verb("extract")
    report = extract(store=Path(store), shard=f"{index}/{count}", quiet=True, **options)
    return str(report.summary())

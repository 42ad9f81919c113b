"""Fault injection: writers are killed at random moments (ingest, site overwrite, result
replacement) while a reader keeps reading; the reader must only ever see a committed
state, whole: never a mix of two, never zeros for data that was written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import actstore

WRITER = r"""
import sys, numpy as np, pyarrow as pa, actstore
path, conllu, start = sys.argv[1], sys.argv[2], int(sys.argv[3])
for k in range(start, start + 1000):
    with actstore.open(path, mode="a") as store:
        n = store.n_rows()
        store.write_result("r", pa.table({"v": np.full(1000, k)}), replace=True)
        writer = store.create_site("toy/layer.0", n_units=4, chunk_rows=512,
                                   provenance={"v": k}, overwrite=True)
        for lo in range(0, n, 256):
            writer.write(lo, np.full((min(256, n - lo), 4), k % 2000, np.float16))
        writer.commit()
        if k % 7 == 0:  # the same words, a new file (the same content twice is refused)
            fresh = f"{conllu}.{k}.conllu"
            open(fresh, "w").write(f"# k = {k}\n" + open(conllu).read())
            actstore.ingest_conllu(store, [fresh], corpus=f"c{k}")
"""


def test_killed_writers_never_show_a_reader_a_mixed_state(tmp_path: Path, ewt_dev: Path) -> None:
    blocks = ewt_dev.read_text(encoding="utf-8").split("\n\n")
    sample = tmp_path / "s.conllu"
    sample.write_text("\n\n".join(blocks[:40]) + "\n\n", encoding="utf-8")
    n_sample = sum(
        1 for b in blocks[:40] for ln in b.splitlines() if ln and ln.split("\t")[0].isdigit()
    )
    path = tmp_path / "store"
    with actstore.create(path) as store:
        actstore.ingest_conllu(store, [sample], corpus="c0")
    rng = np.random.default_rng(0)
    seen_states: set[int] = set()
    start, kills, began = 1, 0, time.monotonic()
    # at least 20 s and 4 kills, and until the reader has seen 3 committed states (a
    # loaded machine starts writers slowly), but never more than 120 s
    while time.monotonic() - began < 120 and (
        time.monotonic() - began < 20 or kills < 4 or len(seen_states) < 3
    ):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(sample), str(start)])
        start += 1000
        try:
            _read_while_writing(path, n_sample, rng.uniform(2.0, 4.5), seen_states)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        kills += 1
    assert kills >= 4 and len(seen_states) >= 3, (kills, seen_states)
    with actstore.open(path, mode="a") as store:  # recovery: the next writer cleans up
        assert store.n_rows() % n_sample == 0
    verified = subprocess.run(
        [sys.executable, "-m", "actstore.cli", "verify", str(path)], capture_output=True, text=True
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr


def _read_while_writing(path: Path, n_sample: int, seconds: float, seen: set[int]) -> None:
    """Open and read the store again and again for ``seconds``, checking every state."""
    stop_at = time.monotonic() + seconds
    while time.monotonic() < stop_at:
        try:
            with actstore.open(path) as reader:
                n_rows = reader.n_rows()
                assert n_rows % n_sample == 0  # whole files only
                if "r" in reader.results:
                    v = reader.sql("SELECT min(v) AS lo, max(v) AS hi, count(*) AS n FROM r")
                    assert v.lo[0] == v.hi[0] and v.n[0] == 1000
                if (
                    "toy/layer.0" in reader.sites
                    and reader.site("toy/layer.0").status == "complete"
                ):
                    site = reader.site("toy/layer.0")
                    values = reader.acts("toy/layer.0", dtype=None).values
                    k = site.provenance["v"]
                    assert values.shape == (site.n_rows, 4)
                    assert (values == k % 2000).all(), (k, np.unique(values)[:5])
                    seen.add(k)
        except (actstore.SiteError, actstore.SQLError) as exc:
            # allowed: the files this reader's manifest names were cleaned up by a
            # later writer; an error, never wrong values
            assert "open it again" in str(exc) or "reopen" in str(exc), exc

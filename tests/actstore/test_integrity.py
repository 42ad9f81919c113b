"""Nothing silently wrong: a replaced site never reads as a mix, a missing or damaged chunk
is an error (never zeros), ``actstore verify`` finds damage and ``--repair`` lets the
extraction rewrite just the damaged chunks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import actstore
from actstore.chunks import chunk_file

UNITS = 8
CHUNK = 1024


def _values(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, UNITS)).astype(np.float16)


def _write(store: actstore.Store, name: str, values: np.ndarray, **kw: object) -> None:
    writer = store.create_site(name, n_units=UNITS, chunk_rows=CHUNK, **kw)  # type: ignore[arg-type]
    writer.write(0, values)
    writer.commit()


@pytest.fixture
def store_path(tmp_path: Path, ewt_small: Path) -> Path:
    import shutil

    return Path(shutil.copytree(ewt_small, tmp_path / "s.actstore"))


def _array(store_path: Path, site: str) -> Path:
    with actstore.open(store_path) as store:
        return store_path / store.site(site).path


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "actstore.cli", *args], capture_output=True, text=True, check=False
    )


def test_a_reader_never_sees_a_half_replaced_site(store_path: Path) -> None:
    with actstore.open(store_path, mode="a") as store:
        n = store.n_rows()
        old = _values(n, 1)
        _write(store, "toy/layer.0", old, provenance={"v": 1})
    reader = actstore.open(store_path)
    new = _values(n, 2)
    with actstore.open(store_path, mode="a") as store:
        _write(store, "toy/layer.0", new, provenance={"v": 2}, overwrite=True)
        np.testing.assert_array_equal(store.acts("toy/layer.0", dtype=None).values, new)
    np.testing.assert_array_equal(reader.acts("toy/layer.0", dtype=None).values, old)
    actstore.open(store_path, mode="a").close()  # the next writer removes the old array
    with pytest.raises(actstore.SiteError, match=r"chunk \d+ .* is missing; the site was replaced"):
        reader.acts("toy/layer.0").compute()
    with actstore.open(store_path) as fresh:
        np.testing.assert_array_equal(fresh.acts("toy/layer.0", dtype=None).values, new)


def test_missing_or_cut_chunks_are_errors_through_the_command_line(store_path: Path) -> None:
    with actstore.open(store_path, mode="a") as store:
        _write(store, "toy/layer.0", _values(store.n_rows(), 3))
    first = chunk_file(_array(store_path, "toy/layer.0"), 0)
    args = (
        "correlate",
        str(store_path),
        "--sites",
        "toy/layer.0",
        "--with",
        "depth",
        "--no-spearman",
    )
    assert _cli(*args).returncode == 0
    data = first.read_bytes()
    first.write_bytes(data[:100])
    proc = _cli(*args)
    assert proc.returncode == 2 and "holds 100 bytes, expected" in proc.stderr, proc.stderr
    first.unlink()
    proc = _cli(*args)
    assert proc.returncode == 2 and "chunk 0" in proc.stderr and "is missing" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_verify_finds_damage_and_repair_rewrites_only_it(store_path: Path) -> None:
    with actstore.open(store_path, mode="a") as store:
        n = store.n_rows()
        values = _values(n, 4)
        _write(store, "toy/layer.0", values)
        _write(store, "toy/layer.1", values)
    assert _cli("verify", str(store_path)).returncode == 0
    array = _array(store_path, "toy/layer.0")
    flipped = bytearray(chunk_file(array, 1).read_bytes())
    flipped[10] ^= 0xFF
    chunk_file(array, 1).write_bytes(bytes(flipped))  # same size: only the checksum sees it
    chunk_file(_array(store_path, "toy/layer.1"), 0).unlink()
    proc = _cli("verify", str(store_path))
    assert proc.returncode == 2, proc.stdout
    assert "checksum mismatch" in proc.stdout and "is missing" in proc.stdout
    assert "actstore verify STORE --repair" in proc.stdout
    proc = _cli("verify", str(store_path), "--repair")
    assert proc.returncode == 0, proc.stderr
    with actstore.open(store_path, mode="a") as store:
        for site, bad in (("toy/layer.0", [1]), ("toy/layer.1", [0])):
            writer = store.create_site(site, n_units=UNITS, chunk_rows=CHUNK)  # same settings
            assert writer.pending_chunks() == bad
            for start, stop in writer.pending_ranges():
                writer.write(start, values[start:stop])
            writer.commit()
        for site in ("toy/layer.0", "toy/layer.1"):
            np.testing.assert_array_equal(store.acts(site, dtype=None).values, values)
    assert _cli("verify", str(store_path)).returncode == 0


def test_resume_rewrites_a_chunk_damaged_before_the_crash(store_path: Path) -> None:
    with actstore.open(store_path, mode="a") as store:
        n = store.n_rows()
        values = _values(n, 5)
        writer = store.create_site("toy/layer.0", n_units=UNITS, chunk_rows=CHUNK)
        writer.write(0, values[: 2 * CHUNK])  # chunks 0 and 1 written, then "killed"
    assert n > 2 * CHUNK
    path = chunk_file(_array(store_path, "toy/layer.0"), 0)
    os.truncate(path, 64)
    with actstore.open(store_path, mode="a") as store:
        writer = store.create_site("toy/layer.0", n_units=UNITS, chunk_rows=CHUNK)
        assert writer.pending_chunks()[0] == 0 and 1 not in writer.pending_chunks()
        writer.write(0, values)
        writer.commit()
        np.testing.assert_array_equal(store.acts("toy/layer.0", dtype=None).values, values)


def test_verify_checks_the_image_files_the_images_rows_name(tmp_path: Path) -> None:
    import hashlib
    import shutil

    from PIL import Image
    from skimage import data

    from actstore.verify import check_store

    def pic(name: str) -> np.ndarray:
        return np.asarray(getattr(data, name)())

    folder = tmp_path / "photos" / "grey"
    folder.mkdir(parents=True)
    for name, pixels in (
        ("camera.png", pic("camera")[:32, :32]),
        ("coins.png", pic("coins")[:32, :32]),
    ):
        Image.fromarray(pixels).save(folder / name)
    path = tmp_path / "s.actstore"
    with actstore.create(path) as store:
        actstore.ingest_images(store, [pic("astronaut")[:16, :16], pic("chelsea")[:16, :16]])
        actstore.ingest_images(store, folder.parent)
        rows = store.sql("SELECT row, path FROM images ORDER BY row").path.tolist()
    proc = _cli("verify", str(path))
    assert (
        proc.returncode == 0 and "every chunk, table part and image file is intact" in proc.stdout
    )
    first, second = (path / rows[0], path / rows[1])
    first.write_bytes(b"garbage")  # what the review did: same name, other bytes
    second.unlink()
    camera = folder / "camera.png"
    shutil.copy(folder / "coins.png", camera)  # an external file changed: found, not hashed
    (folder / "coins.png").unlink()
    proc = _cli("verify", str(path))
    assert proc.returncode == 2, proc.stdout
    garbage = hashlib.sha256(b"garbage").hexdigest()[:12]
    assert f"{rows[0]} has sha256 {garbage}..., the row says {rows[0][7:19]}..." in proc.stdout
    assert (
        f"{rows[1]} is missing" in proc.stdout
        and f"{folder / 'coins.png'} is missing" in proc.stdout
    )
    assert "camera.png" not in proc.stdout and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1] == f"actstore: error: 3 problem(s) found in {path}"
    hashed = _cli("verify", str(path), "--hash-images")  # the changed external file too
    assert "camera.png has sha256" in hashed.stdout and "4 problem(s)" in hashed.stderr
    with actstore.open(path) as store:
        found = {
            (p.kind, p.where, p.problem.split()[0]) for p in check_store(store, hash_external=True)
        }
    assert found == {
        ("image", "row 0", rows[0]),
        ("image", "row 1", rows[1]),
        ("image", "row 2", str(camera)),
        ("image", "row 3", str(folder / "coins.png")),
    }

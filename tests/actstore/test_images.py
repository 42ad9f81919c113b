"""The ``images`` row table: folders, lists and arrays of real images, and every way a
source can be bad (refused in one line, the store unchanged, or recorded with
``--skip-bad``)."""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from skimage import data

import actstore
from actstore.cli import main
from actstore.data import SAMPLE
from actstore.image_files import load_rgb
from actstore.images import image_path, ingest_images

# (label, file name) -> how the file is made from a scikit-image picture
PICTURES = {
    ("cat", "chelsea.jpg"): ("chelsea", None, "JPEG"),
    ("cat", "coffee.jpg"): ("coffee", "CMYK", "JPEG"),
    ("space", "astronaut.png"): ("astronaut", "P", "PNG"),
    ("space", "camera.png"): ("camera", None, "PNG"),
    ("space", "rocket.png"): ("rocket", None, "PNG"),
}


def picture(name: str) -> np.ndarray:
    """A scikit-image sample picture (``chelsea``, ``camera`` ...) as uint8 pixels."""
    return np.asarray(getattr(data, name)())


def _save(path: Path, pixels: np.ndarray, mode: str | None = None) -> None:
    image = Image.fromarray(pixels)
    (image.convert(mode) if mode else image).save(path)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``photos/cat/*.jpg``, ``photos/space/*.png`` and hidden files to ignore."""
    root = tmp_path_factory.mktemp("img") / "photos"
    for (label, name), (picture_name, mode, _) in PICTURES.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        _save(root / label / name, picture(picture_name), mode)
    (root / ".DS_Store").write_bytes(b"\x00\x01")
    (root / "cat" / ".hidden.jpg").write_text("not an image")
    (root / ".cache").mkdir()
    return root


def _expected(folder: Path) -> list[dict[str, Any]]:
    """The rows a folder should give, from the pictures and the files themselves."""
    rows = []
    for (label, name), (picture_name, mode, fmt) in sorted(PICTURES.items()):
        pixels = picture(picture_name)
        path = folder / label / name
        rows.append(
            {
                "path": str(path),
                "label": label,
                "width": pixels.shape[1],
                "height": pixels.shape[0],
                "mode": mode or ("L" if pixels.ndim == 2 else "RGB"),
                "format": fmt,
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            }
        )
    return rows


def _tree(root: Path) -> dict[str, str]:
    """Every path under ``root`` with a digest of its bytes (folders too)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "/"
        for p in sorted(root.rglob("*"))
    }


def _table(store: actstore.Store) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = store.sql(
        "SELECT * FROM images ORDER BY row", arrow=True
    ).to_pylist()
    return rows


def _sources(store: actstore.Store) -> list[dict[str, Any]]:
    sources: list[dict[str, Any]] = store.manifest_records().tables["images"].provenance["sources"]
    return sources


def _copy(photos: Path, tmp: Path, extra: dict[str, bytes] | None = None) -> Path:
    """A copy of the photos with ``extra`` files (relative path -> bytes) added."""
    folder = Path(shutil.copytree(photos, tmp / "photos"))
    for rel, content in (extra or {}).items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(content)
    return folder


def _half(path: Path) -> bytes:
    content = path.read_bytes()
    return content[: len(content) // 2]


@pytest.fixture
def images_store(tmp_path: Path, photos: Path) -> Path:
    """A store holding the packaged CoNLL-U sample and the photos."""
    path = tmp_path / "s.actstore"
    with actstore.create(path) as store:
        actstore.ingest_conllu(store, [SAMPLE])
        ingest_images(store, photos)
    return path


def test_folder_rows_labels_sizes_modes_in_order(tmp_path: Path, photos: Path) -> None:
    with actstore.create(tmp_path / "s.actstore") as store:
        record = ingest_images(store, photos)
        rows = _table(store)
        counts = store.sql("SELECT label, count(*) AS n FROM images GROUP BY label ORDER BY label")
        provenance = _sources(store)
    expected = _expected(photos)
    assert [{k: r[k] for k in expected[0]} for r in rows] == expected
    assert [r["row"] for r in rows] == list(range(len(PICTURES)))
    assert {r["duplicate_of"] for r in rows} == {None}
    assert {r["split"] for r in rows} == {None}
    assert {r["source"] for r in rows} == {str(photos)}
    assert counts.to_dict("list") == {"label": ["cat", "space"], "n": [2, 3]}
    listing = "".join(f"{r['path']}\t{r['label']}\tNone\t{r['sha256']}\n" for r in expected)
    assert provenance == [record]
    assert record["kind"] == "folder" and record["path"] == str(photos)
    assert (record["n_rows"], record["first_row"], record["skipped"]) == (5, 0, [])
    assert record["listing_sha256"] == hashlib.sha256(listing.encode()).hexdigest()


def test_csv_list_with_split_and_relative_paths(tmp_path: Path, photos: Path) -> None:
    listing = photos.parent / "list.csv"
    names = [("space", "rocket.png"), ("cat", "chelsea.jpg"), ("cat", "coffee.jpg")]
    with open(listing, "w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["path", "label", "split"])
        out.writerow([f"photos/{names[0][0]}/{names[0][1]}", "vehicle", "train"])
        out.writerow([str(photos / names[1][0] / names[1][1]), "animal", "test"])
        out.writerow([f"photos/{names[2][0]}/{names[2][1]}", "drink", ""])
    with actstore.create(tmp_path / "s.actstore") as store:
        record = ingest_images(store, listing)
        rows = _table(store)
    assert [r["path"] for r in rows] == [str(photos / a / b) for a, b in names]
    assert [r["label"] for r in rows] == ["vehicle", "animal", "drink"]
    assert [r["split"] for r in rows] == ["train", "test", None]
    assert [r["width"] for r in rows] == [
        picture(n).shape[1] for n in ("rocket", "chelsea", "coffee")
    ]
    assert record["kind"] == "list" and {r["source"] for r in rows} == {str(listing)}


def test_csv_list_bad_lines_are_named(tmp_path: Path, photos: Path) -> None:
    store_path = tmp_path / "s.actstore"
    short = tmp_path / "short.csv"
    short.write_text(f"path,label\n{photos}/cat/chelsea.jpg,cat\nonly-one-field.jpg\n")
    missing = tmp_path / "missing.csv"
    missing.write_text("path,label\n\nnowhere/ghost.jpg,cat\n")
    header = tmp_path / "header.csv"
    header.write_text("file,class\na.jpg,cat\n")
    with actstore.create(store_path) as store:
        with pytest.raises(
            actstore.ImageError, match=rf"^{re.escape(str(short))}:3: 1 fields: expected 2"
        ):
            ingest_images(store, short)
        ghost = tmp_path / "nowhere" / "ghost.jpg"
        with pytest.raises(
            actstore.ImageError,
            match=rf"^{re.escape(str(ghost))}: cannot be read .*line 3 of missing\.csv",
        ):
            ingest_images(store, missing)
        with pytest.raises(
            actstore.ImageError, match=rf"^{re.escape(str(header))}:1: no column 'path'"
        ):
            ingest_images(store, header)
        assert "images" not in store.tables


def test_parquet_list(tmp_path: Path, photos: Path) -> None:
    listing = tmp_path / "list.parquet"
    paths = [str(photos / "space" / "camera.png"), str(photos / "cat" / "coffee.jpg")]
    pq.write_table(pa.table({"path": paths, "label": [7, 3]}), listing)
    with actstore.create(tmp_path / "s.actstore") as store:
        ingest_images(store, listing, split="val")
        rows = _table(store)
    camera = picture("camera")
    assert [(r["path"], r["label"], r["split"]) for r in rows] == [
        (paths[0], "7", "val"),
        (paths[1], "3", "val"),
    ]
    assert (rows[0]["width"], rows[0]["height"], rows[0]["mode"]) == (
        camera.shape[1],
        camera.shape[0],
        "L",
    )
    assert rows[1]["mode"] == "CMYK"


def test_arrays_become_png_files_in_the_store(tmp_path: Path) -> None:
    cat, coffee = picture("chelsea")[:64, :80], picture("coffee")[:64, :80]
    batch = np.stack([cat, coffee, cat])
    grey = [picture("camera")[:32, :48], picture("camera")[100:120, :10]]
    path = tmp_path / "s.actstore"
    with actstore.create(path) as store:
        record = ingest_images(store, batch, labels=["cat", "coffee", "cat"])
        ingest_images(store, grey, labels=None, split="test")
        rows = _table(store)
        with pytest.raises(actstore.ImageError, match="already in the store"):
            ingest_images(store, batch[:2], labels=["a", "b"])
    assert record["kind"] == "arrays" and record["n_duplicates"] == 1
    assert [r["duplicate_of"] for r in rows] == [None, None, 0, None, None]
    assert [r["label"] for r in rows] == ["cat", "coffee", "cat", None, None]
    assert [r["split"] for r in rows] == [None, None, None, "test", "test"]
    for row, pixels in zip(rows, [cat, coffee, cat, *grey], strict=True):
        assert row["path"] == f"images/{row['sha256']}.png"
        file = image_path(path, row["path"])
        assert file == path / row["path"] and file.is_file()
        assert hashlib.sha256(file.read_bytes()).hexdigest() == row["sha256"]
        assert (row["width"], row["height"]) == (pixels.shape[1], pixels.shape[0])
        with Image.open(file) as image:
            assert image.format == row["format"] == "PNG" and image.mode == row["mode"]
            np.testing.assert_array_equal(np.asarray(image), pixels)
    assert len(list((path / "images").iterdir())) == 4
    assert image_path(path, "/abs/a.jpg") == Path("/abs/a.jpg")


def test_duplicates_point_to_the_first_row(tmp_path: Path, photos: Path) -> None:
    folder = _copy(photos, tmp_path, {"dog/copy.jpg": (photos / "cat/chelsea.jpg").read_bytes()})
    later = tmp_path / "later"
    (later / "x").mkdir(parents=True)
    shutil.copy(photos / "space" / "rocket.png", later / "x" / "again.png")
    _save(later / "x" / "new.png", picture("chelsea")[::2, ::2])
    with actstore.create(tmp_path / "s.actstore") as store:
        first = ingest_images(store, folder)
        second = ingest_images(store, later)
        rows = _table(store)
    by_name = {Path(r["path"]).name: r for r in rows}
    chelsea, rocket = by_name["chelsea.jpg"]["row"], by_name["rocket.png"]["row"]
    assert by_name["copy.jpg"]["duplicate_of"] == chelsea and chelsea < by_name["copy.jpg"]["row"]
    assert (
        by_name["again.png"]["duplicate_of"] == rocket
        and by_name["new.png"]["duplicate_of"] is None
    )
    assert (first["n_duplicates"], second["n_duplicates"], second["first_row"]) == (1, 1, 6)


BAD: dict[
    str, tuple[str, Callable[[Path], bytes], str]
] = {  # kind -> (relative file, its bytes from the photos folder, words of the message)
    "truncated": ("cat/zz-cut.jpg", lambda p: _half(p / "cat/chelsea.jpg"), "is truncated"),
    "text": ("space/x.jpg", lambda p: b"just some text\n", "is not an image (text"),
    "empty file": ("space/empty.png", lambda p: b"", "is empty"),
    "outside a class": (
        "loose.jpg",
        lambda p: (p / "cat/chelsea.jpg").read_bytes(),
        "class folder",
    ),
    "cut png": ("space/zz.png", lambda p: _half(p / "space/rocket.png"), "expected a whole image"),
}


@pytest.mark.parametrize("kind", BAD)
def test_a_bad_file_is_refused_in_one_line_and_changes_nothing(
    kind: str, tmp_path: Path, photos: Path, images_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rel, content, words = BAD[kind]
    folder = _copy(photos, tmp_path, {rel: content(photos)})
    before = _tree(images_store)
    message = rf"^{re.escape(str(folder / rel))}: .*{re.escape(words)}"
    with (
        actstore.open(images_store, mode="a") as store,
        pytest.raises(actstore.ImageError, match=message),
    ):
        ingest_images(store, folder, block_rows=1)  # parts are written before the error
    assert _tree(images_store) == before
    capsys.readouterr()
    assert main(["ingest", str(images_store), "images", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith(f"actstore: error: {folder / rel}: ")
    assert err.count("actstore: error:") == 1 and "Traceback" not in err
    assert _tree(images_store) == before
    fresh = tmp_path / "fresh.actstore"
    assert main(["ingest", "images", str(folder), "--store", str(fresh)]) == 2
    assert not fresh.exists()


def test_empty_folder_and_missing_source(tmp_path: Path, photos: Path) -> None:
    empty = tmp_path / "empty"
    (empty / ".git").mkdir(parents=True)
    (empty / ".keep").write_text("")
    with actstore.create(tmp_path / "s.actstore") as store:
        with pytest.raises(
            actstore.ImageError, match=rf"^{re.escape(str(empty))}: holds no images: expected"
        ):
            ingest_images(store, empty)
        with pytest.raises(actstore.ImageError, match="no such folder or list"):
            ingest_images(store, tmp_path / "nope")
        with pytest.raises(actstore.ImageError, match="neither a folder nor a list"):
            ingest_images(store, photos / "cat" / "chelsea.jpg")
        with pytest.raises(actstore.ParameterError, match="labels is for arrays only"):
            ingest_images(store, photos, labels=["a"])
        with pytest.raises(actstore.ParameterError, match="expected uint8"):
            ingest_images(store, [np.zeros((4, 4), np.float32)])


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_an_unreadable_file_is_named(tmp_path: Path, photos: Path) -> None:
    folder = _copy(photos, tmp_path)
    (folder / "cat" / "chelsea.jpg").chmod(0)
    with (
        actstore.create(tmp_path / "s.actstore") as store,
        pytest.raises(actstore.ImageError, match=r"chelsea\.jpg: cannot be read"),
    ):
        ingest_images(store, folder)


def test_skip_bad_records_the_bad_files(
    tmp_path: Path, photos: Path, caplog: pytest.LogCaptureFixture
) -> None:
    extra = {rel: content(photos) for rel, content, _ in BAD.values()}
    folder = _copy(photos, tmp_path, extra)
    with actstore.create(tmp_path / "s.actstore") as store, caplog.at_level(logging.WARNING):
        record = ingest_images(store, folder, skip_bad=True)
        rows = _table(store)
    assert [r["path"] for r in rows] == [e["path"] for e in _expected(folder)]
    assert sorted(s["path"] for s in record["skipped"]) == sorted(str(folder / r) for r in extra)
    reasons = {Path(s["path"]).name: s["reason"] for s in record["skipped"]}
    assert reasons["x.jpg"].startswith("is not an image") and "truncated" in reasons["zz-cut.jpg"]
    warned = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped ")]
    assert len(warned) == len(extra)
    only_bad = tmp_path / "bad"
    (only_bad / "x").mkdir(parents=True)
    (only_bad / "x" / "a.jpg").write_text("text")
    with (
        actstore.open(tmp_path / "s.actstore", mode="a") as store,
        pytest.raises(actstore.ImageError, match=r"has no image that decodes \(1 skipped\)"),
    ):
        ingest_images(store, only_bad, skip_bad=True)


def test_reingesting_a_folder_is_refused(images_store: Path, photos: Path) -> None:
    before = _tree(images_store)
    message = (
        rf"^{re.escape(str(photos))}: already in the store.*row 0 from {re.escape(str(photos))}"
    )
    with (
        actstore.open(images_store, mode="a") as store,
        pytest.raises(actstore.ImageError, match=message),
    ):
        ingest_images(store, photos)
    assert _tree(images_store) == before


def test_cli_spellings_and_a_store_with_tokens_and_images(
    tmp_path: Path, photos: Path, images_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one, two = tmp_path / "one.actstore", tmp_path / "two.actstore"
    assert main(["ingest", str(one), "images", str(photos)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"ingested {photos}: 5 images (rows 0..4)", f"{one}: 5 images"]
    assert main(["ingest", "images", str(photos), "--store", str(two)]) == 0
    with actstore.open(one) as a, actstore.open(two) as b:
        assert _table(a) == _table(b)
    assert main(["ingest", str(two), str(SAMPLE)]) == 0  # CoNLL-U still ingests
    capsys.readouterr()
    assert main(["info", str(images_store)]) == 0
    info = capsys.readouterr().out
    assert re.search(r"^  images +5 rows +1 part\(s\)$", info, re.M), info
    assert re.search(r"^  tokens +4,007 rows", info, re.M) and "en_ewt-ud-dev.conllu.gz" in info
    listed = rf"^  {re.escape(str(photos))} +table=images kind=folder 5 rows from row 0 sha256="
    assert re.search(listed, info, re.M), info
    with actstore.open(images_store) as store:
        joined = store.sql(
            "SELECT (SELECT count(*) FROM tokens) AS words, (SELECT count(*) FROM images) AS n"
        )
        assert store.n_rows("tokens") > 0 and joined.n[0] == 5
        assert joined.words[0] == store.n_rows("tokens")


def test_command_line_in_a_process_warns_and_fails_in_one_line(
    tmp_path: Path, photos: Path
) -> None:
    folder = _copy(photos, tmp_path, {"space/x.jpg": b"just some text\n"})
    store = tmp_path / "s.actstore"
    command = [sys.executable, "-m", "actstore.cli", "ingest", "images", str(folder)]
    failed = subprocess.run([*command, "--store", str(store)], capture_output=True, text=True)
    assert failed.returncode == 2 and not store.exists()
    assert f"actstore: error: {folder}/space/x.jpg: is not an image" in failed.stderr
    assert "Traceback" not in failed.stderr
    done = subprocess.run(
        [*command, "--store", str(store), "--skip-bad"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert f"skipped {folder}/space/x.jpg: is not an image" in done.stderr
    assert "5 images (rows 0..4), 1 skipped" in done.stdout


def test_arrays_failing_midway_leave_the_store_as_it_was(images_store: Path) -> None:
    first, second = picture("chelsea")[:40, :40], picture("coffee")[:40, :40]
    png = io.BytesIO()
    Image.fromarray(second).save(png, format="PNG")
    digest = hashlib.sha256(png.getvalue()).hexdigest()
    # the second PNG cannot be written: its temporary name is taken by a folder
    (images_store / "images" / f"{digest}.png.partial").mkdir(parents=True)
    before = _tree(images_store)
    with (
        actstore.open(images_store, mode="a") as store,
        pytest.raises(IsADirectoryError),
    ):
        ingest_images(store, np.stack([first, second]), labels=["a", "b"], block_rows=1)
    assert _tree(images_store) == before
    with actstore.open(images_store) as store:
        assert store.n_rows("images") == len(PICTURES)


def test_png_files_a_killed_ingest_left_go_at_the_next_writer(tmp_path: Path) -> None:
    path = tmp_path / "arrays.actstore"
    pixels = picture("camera")[:64, :64]
    with actstore.create(path) as store:
        ingest_images(store, [pixels], labels=["camera"])
    folder = path / "images"
    (kept,) = folder.iterdir()
    # what a SIGKILL between writing the files and committing the rows leaves behind
    orphan = folder / (hashlib.sha256(b"other").hexdigest() + ".png")
    orphan.write_bytes(kept.read_bytes())
    half = folder / (hashlib.sha256(b"half").hexdigest() + ".png.partial")
    half.write_bytes(b"\x89PNG")
    foreign = folder / "notes.txt"  # not a name the store writes: never touched
    foreign.write_text("mine")
    with actstore.open(path) as reader:  # readers delete nothing
        assert reader.n_rows("images") == 1
    assert orphan.exists() and half.exists()
    actstore.open(path, mode="a").close()
    assert sorted(p.name for p in folder.iterdir()) == sorted([kept.name, "notes.txt"])
    with actstore.open(path) as store:
        (value,) = store.sql("SELECT path FROM images").path
        assert np.array_equal(np.asarray(Image.open(image_path(path, value))), pixels)


# --- review fixes: the shared loader, orientation, lists, options, the format doc ---


def test_load_rgb_scales_deep_greyscale_and_checks_the_hash(tmp_path: Path) -> None:
    deep = np.array([[0, 257 * 100, 65535], [30000, 1, 40000]], np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as raw:
        assert raw.mode == "I;16" and raw.convert("RGB").getpixel((1, 0)) == (255, 255, 255)
    image = load_rgb(tmp_path / "deep.png")
    expected = np.round(deep.astype(np.float64) * 255 / 65535).astype(np.uint8)
    assert image.mode == "RGB" and image.size == (3, 2)
    np.testing.assert_array_equal(np.asarray(image), np.repeat(expected[..., None], 3, axis=2))
    wide = np.array([[0, 65535, 1000]], np.int32)  # mode I: read as 16-bit
    Image.fromarray(wide).save(tmp_path / "wide.tif")
    np.testing.assert_array_equal(np.asarray(load_rgb(tmp_path / "wide.tif"))[0, :, 0], [0, 255, 4])
    floats = np.array([[0.0, 0.5, 1.0, 0.25]], np.float32)  # mode F: 0..1
    Image.fromarray(floats).save(tmp_path / "f.tif")
    np.testing.assert_array_equal(
        np.asarray(load_rgb(tmp_path / "f.tif"))[0, :, 1], np.rint(floats[0] * 255.0)
    )
    Image.fromarray(np.array([[-5, 70000]], np.int32)).save(tmp_path / "bad.tif")
    with pytest.raises(actstore.ImageError, match=r"bad\.tif: is I greyscale with values -5\.\."):
        load_rgb(tmp_path / "bad.tif")
    digest = hashlib.sha256((tmp_path / "deep.png").read_bytes()).hexdigest()
    assert load_rgb(tmp_path / "deep.png", digest, row=4).size == (3, 2)
    changed = rf"^{re.escape(str(tmp_path / 'deep.png'))} \(images row 4\): changed since it was"
    with pytest.raises(actstore.ImageError, match=changed):
        load_rgb(tmp_path / "deep.png", "0" * 64, row=4)
    Image.fromarray(picture("camera")).save(tmp_path / "camera.png")
    (tmp_path / "cut.png").write_bytes(_half(tmp_path / "camera.png"))
    with pytest.raises(actstore.ImageError, match=r"cut\.png \(images row 9\): is truncated"):
        load_rgb(tmp_path / "cut.png", row=9)


def test_exif_orientation_turns_loaded_pixels_and_ingested_sizes(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored pixels turned a quarter clockwise when displayed
    folder = tmp_path / "x" / "c"
    folder.mkdir(parents=True)
    Image.new("RGB", (40, 20), (200, 10, 10)).save(folder / "turned.jpg", exif=exif)
    pixels = picture("chelsea")[:6, :10]
    Image.fromarray(pixels).save(folder / "turned.png", exif=exif)
    assert load_rgb(folder / "turned.jpg").size == (20, 40)
    np.testing.assert_array_equal(np.asarray(load_rgb(folder / "turned.png")), np.rot90(pixels, -1))
    with actstore.create(tmp_path / "s.actstore") as store:
        ingest_images(store, tmp_path / "x")
        rows = _table(store)
    assert [(r["width"], r["height"], r["mode"]) for r in rows] == [(20, 40, "RGB"), (6, 10, "RGB")]


def test_decompression_bomb_warning_is_one_log_line_and_over_twice_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow's 89M pixels, scaled down
    (tmp_path / "big" / "x").mkdir(parents=True)
    Image.new("L", (40, 40)).save(tmp_path / "big" / "x" / "a.png")  # 1,600 pixels
    with actstore.create(tmp_path / "s.actstore") as store, caplog.at_level(logging.WARNING):
        ingest_images(store, tmp_path / "big")  # filterwarnings=error: no warning escapes
        assert store.n_rows("images") == 1
    (message,) = [r.getMessage() for r in caplog.records]
    assert message.startswith(f"{tmp_path / 'big' / 'x' / 'a.png'}: 1,600 pixels, over Pillow's")
    Image.new("L", (50, 50)).save(tmp_path / "huge.png")  # 2,500 > twice the limit
    with pytest.raises(actstore.ImageError, match=r"huge\.png \(images row 2\): is too large"):
        load_rgb(tmp_path / "huge.png", row=2)


def test_list_errors_name_the_list_and_line_in_one_format(tmp_path: Path, photos: Path) -> None:
    chelsea = photos / "cat" / "chelsea.jpg"
    lists = {
        "twice.csv": ("path,label,path\na.jpg,cat,b.jpg\n", r":1: column 'path' appears 2 times"),
        "nopath.csv": (f"path,label\n{chelsea},cat\n,dog\n", r":3: no path \(expected"),
        "late.csv": (
            f"path,label\n{chelsea},\n{chelsea},cat\n",
            r":3: has a label, but line 2 has none",
        ),
        "early.csv": (
            f"path,label\n{chelsea},cat\n{chelsea},\n",
            r":3: no label, but line 2 has one",
        ),
    }
    nested = tmp_path / "nested.parquet"
    pq.write_table(pa.table({"path": [str(chelsea)], "label": [[1, 2]]}), nested)
    empty_path = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"path": [str(chelsea), None], "label": ["a", "b"]}), empty_path)
    with actstore.create(tmp_path / "s.actstore") as store:
        for name, (text, words) in lists.items():
            (tmp_path / name).write_text(text)
            with pytest.raises(
                actstore.ImageError, match=rf"^{re.escape(str(tmp_path / name))}{words}"
            ):
                ingest_images(store, tmp_path / name)
        with pytest.raises(
            actstore.ImageError,
            match=rf"^{re.escape(str(nested))}: column 'label' is list<.*>: expected text or",
        ):
            ingest_images(store, nested)
        with pytest.raises(
            actstore.ImageError, match=rf"^{re.escape(str(empty_path))}: row 2: no path"
        ):
            ingest_images(store, empty_path)
        assert "images" not in store.tables
        (tmp_path / "none.csv").write_text(f"path,label\n{chelsea},\n{photos}/space/camera.png,\n")
        ingest_images(store, tmp_path / "none.csv")  # no line has a label: every label NULL
        assert [r["label"] for r in _table(store)] == [None, None]


@pytest.mark.parametrize(
    "option",
    [["--glove"], ["--vocab", "w.txt"], ["--name", "x"], ["--lang", "en"], ["--limit", "3"]],
)
def test_options_images_do_not_take_are_refused(
    option: list[str], tmp_path: Path, photos: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "s.actstore"
    assert main(["ingest", str(store), "images", str(photos), *option]) == 2
    err = capsys.readouterr().err
    expected = f"{option[0]} is for CoNLL-U or vectors, not images: images take --split and"
    assert err == f"actstore: error: {expected} --skip-bad\n"
    assert not store.exists()


def test_a_source_named_twice_is_refused_before_anything_is_written(
    tmp_path: Path,
    photos: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = tmp_path / "s.actstore"
    monkeypatch.chdir(photos.parent)
    assert main(["ingest", str(store), "images", str(photos), f"./{photos.name}"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"actstore: error: {photos}: given twice (sources 1 and 2 of the command): "
        "name each folder or list once\n"
    )
    assert not store.exists()


def test_format_doc_names_the_current_format_version() -> None:
    from actstore.manifest import FORMAT_VERSION

    first = (Path(__file__).parents[2] / "docs" / "FORMAT.md").read_text().splitlines()[0]
    assert first == f"# The actstore store format, version {FORMAT_VERSION}"

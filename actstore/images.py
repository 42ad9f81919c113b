"""Image folders, lists and arrays -> the ``images`` row table of a store.

Every file is read, hashed and fully decoded one at a time, and the table is written
in parts of ``block_rows`` rows inside one transaction: a bad file (or a crash) leaves
the store as it was, and memory holds one image and one block of rows. Arrays are
written as PNG files into the store's ``images/`` folder under the digest of their
bytes. Columns and the provenance record are described in ``docs/FORMAT.md``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import itertools
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from actstore import image_files
from actstore.commit import IMAGES_DIR
from actstore.errors import FormatError, ImageError, ParameterError
from actstore.image_files import Decoded, Problem
from actstore.manifest import PARTIAL_SUFFIX, now_utc
from actstore.store import Store

if TYPE_CHECKING:
    from actstore.core_verbs import IngestParams

log = logging.getLogger(__name__)

TABLE = "images"

BLOCK_ROWS = 10_000
SCHEMA = pa.schema(
    [
        ("row", pa.int64()),
        ("path", pa.string()),
        ("label", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("mode", pa.string()),
        ("format", pa.string()),
        ("sha256", pa.string()),
        ("duplicate_of", pa.int64()),
        ("split", pa.string()),
        ("source", pa.string()),
    ]
)


def image_path(store_root: Path, value: str) -> Path:
    """The file an ``images.path`` value names: absolute paths as they are, relative
    ones (the PNG files of ingested arrays) inside the store.

    Examples
    --------
    >>> image_path(Path("/data/s.actstore"), "images/ab12.png").as_posix()
    '/data/s.actstore/images/ab12.png'
    >>> image_path(Path("/data/s.actstore"), "/photos/cat/a.jpg").as_posix()
    '/photos/cat/a.jpg'
    """
    path = Path(value)
    if path.is_absolute():
        return path
    if ".." in path.parts:
        raise FormatError(f"image path {value!r} leaves the store: the table was edited")
    return Path(store_root) / path


def ingest_images(
    store: Store,
    source: Any,
    *,
    labels: Sequence[Any] | None = None,
    split: str | None = None,
    skip_bad: bool = False,
    block_rows: int = BLOCK_ROWS,
) -> dict[str, Any]:
    """Append the images of a folder, a list or arrays to the store's ``images`` table.

    Parameters
    ----------
    store
        A store opened for writing.
    source
        A folder of class folders (``FOLDER/CLASS/file.jpg``; the label is the class
        folder's name; rows sorted by label, then file name), a ``.csv`` or ``.parquet``
        list with columns ``path``, ``label`` and, optional, ``split`` (relative paths
        resolve against the list's folder; rows in list order), or arrays: a uint8
        array ``N x H x W (x 3)`` or a sequence of ``H x W (x 3)`` arrays, written as
        PNG files into the store (``path`` is then ``images/<sha256>.png``).
    labels
        Arrays only: one label per image (None: no labels).
    split
        The split of every row (default: a list's ``split`` column, else NULL).
    skip_bad
        Leave out files that cannot be read or decoded (recorded in the provenance
        with their reason, and logged as warnings) instead of refusing the source.
    block_rows
        Rows written as one Parquet part; memory is bounded by a block.

    Returns
    -------
    dict
        The source's provenance record (``store.manifest_records().tables["images"]
        .provenance["sources"]``): path, kind, listing hash, rows, skipped files.

    Examples
    --------
    >>> pixels = np.zeros((3, 4, 5, 3), np.uint8); pixels[1] = 255
    >>> record = ingest_images(store, pixels, labels=["black", "white", "black"])
    >>> record["kind"], record["n_rows"], record["n_duplicates"]
    ('arrays', 3, 1)
    >>> store.sql("SELECT label, width, height, duplicate_of FROM images ORDER BY row")
       label  width  height  duplicate_of
    0  black      5       4          <NA>
    1  white      5       4          <NA>
    2  black      5       4             0
    """
    store.check_writable(exclusive=True)
    store.local_path("ingesting images")  # PNG files and image paths are local files
    if block_rows < 1:
        raise ParameterError("block_rows", f"must be at least 1, got {block_rows}")
    kind, name, items = _open_source(source, labels)
    created: list[Path] = []
    try:
        with store.transaction():
            record = _write(store, kind, name, items, split, skip_bad, block_rows, created)
            store.add_table_source(TABLE, record)
    except BaseException:
        _remove(created, store.path)
        raise
    return record


def _open_source(source: Any, labels: Sequence[Any] | None) -> tuple[str, str, Iterator[Any]]:
    """The kind of ``source``, its name (the ``source`` column) and its items, after the
    checks that need no decoding (the folder exists and holds class folders, the list
    has its columns, the arrays their shapes)."""
    if not isinstance(source, str | os.PathLike):
        return "arrays", "arrays", array_images(source, labels)
    if labels is not None:
        raise ParameterError(
            "labels", "is for arrays only: a folder's labels are its class folders, a list's "
            "its label column"
        )  # fmt: skip
    path = Path(source).expanduser().resolve()
    if path.is_dir():
        entries, problems = image_files.folder_entries(path)
        return "folder", str(path), iter([*problems, *entries])
    if not path.exists():
        raise ImageError(str(path), None, "no such folder or list: expected a folder of class "
                         "folders (CLASS/file.jpg) or a .csv or .parquet list")  # fmt: skip
    if path.suffix.lower() not in image_files.LIST_SUFFIXES:
        raise ImageError(
            str(path), None, "is neither a folder nor a list: expected a folder of class "
            "folders (CLASS/file.jpg) or a list ending in .csv or .parquet"
        )  # fmt: skip
    entries_iter = image_files.list_entries(path)
    first = next(entries_iter, None)  # header errors before the transaction starts
    if first is None:
        raise ImageError(str(path), None, "lists no images: expected lines path,label[,split]")
    return "list", str(path), itertools.chain([first], entries_iter)


class _Rows:
    """The block of rows being gathered, and what the whole source has added."""

    def __init__(self, store: Store, source: str, split: str | None, block_rows: int) -> None:
        self.store, self.source, self.split, self.block_rows = store, source, split, block_rows
        self.first_row = self.next_row = store.n_rows(TABLE)
        self.seen = _known_hashes(store)
        self.listing = hashlib.sha256()
        self.columns: dict[str, list[Any]] = {name: [] for name in SCHEMA.names}
        self.n_duplicates = self.n_earlier = 0
        self.earlier: int | None = None  # a row of an earlier ingest this source repeats

    def add(self, path: str, label: Any, split: str | None, image: Decoded) -> None:
        row = self.next_row
        duplicate = self.seen.setdefault(image.sha256, row)
        if duplicate != row:
            self.n_duplicates += 1
            if duplicate < self.first_row:
                self.n_earlier += 1
                self.earlier = duplicate if self.earlier is None else self.earlier
        label = None if label is None else str(label)
        split = self.split or split
        values = (
            row, path, label, image.width, image.height, image.mode, image.format,
            image.sha256, None if duplicate == row else duplicate, split, self.source,
        )  # fmt: skip
        for name, value in zip(SCHEMA.names, values, strict=True):
            self.columns[name].append(value)
        self.listing.update(f"{path}\t{label}\t{split}\t{image.sha256}\n".encode())
        self.next_row += 1
        if len(self.columns["row"]) >= self.block_rows:
            self.flush()

    def flush(self) -> None:
        if self.columns["row"]:
            self.store.append_table(TABLE, pa.table(self.columns, schema=SCHEMA))
            self.columns = {name: [] for name in SCHEMA.names}

    @property
    def n_rows(self) -> int:
        return self.next_row - self.first_row


def _known_hashes(store: Store) -> dict[str, int]:
    """The first row of every image content already in the table."""
    if not store.n_rows(TABLE):
        return {}
    known = store.columns(["row", "sha256"], table=TABLE)
    seen: dict[str, int] = {}
    for row, digest in zip(known["row"].to_pylist(), known["sha256"].to_pylist(), strict=True):
        seen.setdefault(digest, row)
    return seen


def _write(
    store: Store,
    kind: str,
    name: str,
    items: Iterator[Any],
    split: str | None,
    skip_bad: bool,
    block_rows: int,
    created: list[Path],
) -> dict[str, Any]:
    rows = _Rows(store, name, split, block_rows)
    skipped: list[Problem] = []
    for item in items:
        if kind == "arrays":
            pixels, label = item
            path, image = _store_png(store.path, pixels, created)
            rows.add(path, label, None, image)
            continue
        if isinstance(item, Problem):
            problem: Problem | None = item
        else:
            try:
                image = image_files.read_image(item.path)
            except ImageError as exc:
                problem = Problem(str(item.path), exc.reason, item.origin)
            else:
                problem = None
                rows.add(str(item.path), item.label, item.split, image)
        if problem is not None:
            if not skip_bad:
                raise problem.error()
            log.warning("skipped %s: %s", problem.path, problem.reason)
            skipped.append(problem)
    rows.flush()
    if not rows.n_rows:
        raise ImageError(name, None, f"has no image that decodes ({len(skipped)} skipped)")
    if rows.n_earlier == rows.n_rows:
        raise ImageError(
            name, None, f"already in the store: its {rows.n_rows:,} images have the same "
            f"content as earlier rows (the first: row {rows.earlier}{_from(store, rows.earlier)})"
        )  # fmt: skip
    return {
        "path": name,
        "kind": kind,
        "listing_sha256": rows.listing.hexdigest(),
        "n_rows": rows.n_rows,
        "first_row": rows.first_row,
        "n_duplicates": rows.n_duplicates,
        "split": split,
        "ingested": now_utc(),
        "skipped": [p.record() for p in skipped],
    }


def _from(store: Store, row: int | None) -> str:
    """`` from SOURCE``: the ingested source that holds ``row``, as its provenance says."""
    record = store.manifest_records().tables.get(TABLE)
    for source in record.provenance.get("sources", []) if record else []:
        if row is not None and source["first_row"] <= row < source["first_row"] + source["n_rows"]:
            return f" from {source['path']}"
    return ""


def _store_png(root: Path, pixels: Any, created: list[Path]) -> tuple[str, Decoded]:
    """Write one array as ``images/<sha256>.png`` in the store (unless that content is
    there already); the ``path`` value and what the file is."""
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(out, format="PNG")
    data = out.getvalue()
    image = image_files.decode("(array)", data)
    rel = f"{IMAGES_DIR}/{image.sha256}.png"
    target = root / rel
    if not target.exists():
        target.parent.mkdir(exist_ok=True)
        partial = target.with_name(target.name + PARTIAL_SUFFIX)
        partial.write_bytes(data)
        os.replace(partial, target)
        created.append(target)
    return rel, image


def _remove(created: list[Path], root: Path) -> None:
    """Delete the PNG files a failed ingest wrote, and ``images/`` if that empties it."""
    for path in created:
        path.unlink(missing_ok=True)
    folder = root / IMAGES_DIR
    if created and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


IMAGE_OPTIONS = ("store", "files", "split", "skip_bad")  # what ingest ... images uses


def _refuse_other_options(params: IngestParams) -> None:
    """Any ingest option images do not use, set to other than its default, is refused."""
    for field in dataclasses.fields(params):
        if field.name not in IMAGE_OPTIONS and getattr(params, field.name) != field.default:
            raise ParameterError(
                field.name, "is for CoNLL-U or vectors, not images: images take "
                "--split and --skip-bad"
            )  # fmt: skip


def ingest_command(store: Store, params: IngestParams) -> list[dict[str, Any]]:
    """``actstore ingest STORE images SOURCE...``: every folder or list in one
    transaction; prints one line a source and the table's total."""
    sources = params.files[1:]
    if not sources:
        raise ParameterError(
            "files", "images needs a folder (CLASS/file.jpg) or a CSV/Parquet list "
            "(path, label[, split]) after the word images"
        )  # fmt: skip
    _refuse_other_options(params)
    seen: dict[Path, int] = {}
    for i, source in enumerate(sources, 1):
        path = Path(source).expanduser().resolve()
        if seen.setdefault(path, i) != i:
            raise ImageError(
                str(path), None, f"given twice (sources {seen[path]} and {i} of the command): "
                "name each folder or list once"
            )  # fmt: skip
    with store.transaction():
        records = [
            ingest_images(store, s, split=params.split, skip_bad=params.skip_bad) for s in sources
        ]
    for r in records:
        extra = [f"{r['n_duplicates']:,} duplicate(s)"] if r["n_duplicates"] else []
        extra += [f"{len(r['skipped']):,} skipped"] if r["skipped"] else []
        last = r["first_row"] + r["n_rows"] - 1
        print(
            f"ingested {r['path']}: {r['n_rows']:,} images (rows {r['first_row']:,}..{last:,})"
            + "".join(f", {e}" for e in extra)
        )
    print(f"{store.location}: {store.n_rows(TABLE):,} images")
    return records


def array_images(arrays: Any, labels: Sequence[Any] | None) -> Iterator[tuple[np.ndarray, Any]]:
    """Each image of a uint8 array ``N x H x W (x 3 or 4)``, or of a sequence of
    ``H x W (x 3 or 4)`` arrays, with its label (checked before any is yielded).

    Examples
    --------
    >>> [(a.shape, label) for a, label in array_images(np.zeros((2, 4, 5), np.uint8), "ab")]
    [((4, 5), 'a'), ((4, 5), 'b')]
    """
    if isinstance(arrays, np.ndarray):
        if arrays.ndim not in (3, 4):
            raise ParameterError("source", f"as an array must be N x H x W (x C): {arrays.shape}")
        images: Any = arrays
    elif isinstance(arrays, Sequence) and not isinstance(arrays, str | bytes):
        images = arrays
    else:
        raise ParameterError(
            "source", "expected a folder, a .csv or .parquet list, a uint8 array or a sequence "
            f"of arrays; got {type(arrays).__name__}"
        )  # fmt: skip
    if labels is not None and len(labels) != len(images):
        raise ParameterError("labels", f"has {len(labels)} labels for {len(images)} images")
    for i, image in enumerate(images):
        image = np.asarray(image)
        channels = image.shape[2] if image.ndim == 3 else 1
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or channels not in (1, 3, 4):
            raise ParameterError(
                "source", f"image {i} is {image.dtype} {image.shape}: expected uint8 "
                "H x W, H x W x 3 or H x W x 4"
            )  # fmt: skip
    for i, image in enumerate(images):
        image = np.asarray(image)
        yield (
            (image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image),
            (None if labels is None else labels[i]),
        )

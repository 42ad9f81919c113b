"""The images a source names, and each one read, hashed and fully decoded.

A source is a folder of class folders (``FOLDER/CLASS/file.jpg``, the label is the
class folder's name), a CSV or Parquet list (columns ``path``, ``label`` and, optional,
``split``) or arrays in memory. Listing a source checks its layout; :func:`read_image`
then decodes one file at a time, so memory holds one image, never the whole source.
Pillow is imported inside the functions that decode: the core starts without it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from actstore.errors import ImageError, ParameterError

LIST_SUFFIXES = (".csv", ".parquet")
LIST_COLUMNS = ("path", "label")  # and, optional, "split"


@dataclass(frozen=True)
class Entry:
    """One image a folder or list names, before it is read: the file, its labels, and
    where it was named (``line 7 of list.csv``) when a list named it."""

    path: Path
    label: str | None
    split: str | None = None
    origin: str | None = None


@dataclass(frozen=True)
class Decoded:
    """What a fully decoded image file is: the digest of its bytes, size, mode, format."""

    sha256: str
    width: int
    height: int
    mode: str
    format: str


@dataclass(frozen=True)
class Problem:
    """A file left out of a source: its path, why, and where a list named it."""

    path: str
    reason: str
    origin: str | None = None

    def error(self) -> ImageError:
        where = f" (named on {self.origin})" if self.origin else ""
        return ImageError(self.path, None, self.reason + where)

    def record(self) -> dict[str, str]:
        out = {"path": self.path, "reason": self.reason}
        return out | ({"origin": self.origin} if self.origin else {})


def hidden(name: str) -> bool:
    """Dot files and folders (``.DS_Store``, ``.ipynb_checkpoints``) are not images."""
    return name.startswith(".")


def folder_entries(folder: Path) -> tuple[list[Entry], list[Problem]]:
    """The images of ``FOLDER/CLASS/file``, sorted by (label, file name), and the files
    that do not sit in a class folder.

    Examples
    --------
    >>> (tmp / "photos" / "cat").mkdir(parents=True)
    >>> _ = (tmp / "photos" / "cat" / "b.png").write_bytes(b"")
    >>> entries, problems = folder_entries(tmp / "photos")
    >>> [(e.path.name, e.label) for e in entries], problems
    ([('b.png', 'cat')], [])
    """
    entries: list[Entry] = []
    problems: list[Problem] = []
    for top in _visible(folder):
        if not top.is_dir():
            problems.append(Problem(str(top), _OUTSIDE))
            continue
        for item in _visible(top):
            if item.is_dir():
                problems.append(Problem(str(item), "is a folder inside a class folder" + _EXPECT))
            else:
                entries.append(Entry(item, top.name))
    if not entries and not problems:
        raise ImageError(str(folder), None, "holds no images" + _EXPECT)
    entries.sort(key=lambda e: (e.label or "", e.path.name))
    return entries, problems


_EXPECT = ": expected FOLDER/CLASS/file.jpg (the label is the class folder's name)"
_OUTSIDE = "is not inside a class folder" + _EXPECT


def _visible(folder: Path) -> list[Path]:
    with os.scandir(folder) as it:
        return sorted(Path(e.path) for e in it if not hidden(e.name))


def list_entries(listing: Path) -> Iterator[Entry]:
    """The images a CSV or Parquet list names, in its order; relative paths resolve
    against the list's folder. A line without a path, or a list without the columns
    ``path`` and ``label``, is an error naming the line.

    Examples
    --------
    >>> _ = (tmp / "list.csv").write_text("path,label\\nphotos/a.jpg,cat\\n")
    >>> [(e.path.name, e.label, e.origin) for e in list_entries(tmp / "list.csv")]
    [('a.jpg', 'cat', 'line 2 of list.csv')]
    """
    rows = _csv_rows(listing) if listing.suffix.lower() == ".csv" else _parquet_rows(listing)
    for origin, values in rows:
        path = values.get("path")
        if not path:
            raise ImageError(str(listing), None, f"{origin}: no path (expected path,label[,split])")
        where = Path(os.path.expanduser(path))
        yield Entry(
            where if where.is_absolute() else listing.parent.resolve() / where,
            values.get("label") or None,
            values.get("split") or None,
            origin,
        )


def _check_header(listing: Path, names: Sequence[str]) -> None:
    missing = [c for c in LIST_COLUMNS if c not in names]
    if missing:
        raise ImageError(
            str(listing), 1 if listing.suffix.lower() == ".csv" else None,
            f"no column {missing[0]!r}: expected columns path, label and, optional, split; "
            f"got {', '.join(names) or 'none'}"
        )  # fmt: skip


def _csv_rows(listing: Path) -> Iterator[tuple[str, dict[str, str]]]:
    with open(listing, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        _check_header(listing, header)
        for fields in reader:
            origin = f"line {reader.line_num} of {listing.name}"
            if not any(f.strip() for f in fields):
                continue  # a blank line
            if len(fields) != len(header):
                raise ImageError(
                    str(listing), reader.line_num,
                    f"{len(fields)} fields: expected {len(header)} ({', '.join(header)})"
                )  # fmt: skip
            yield origin, {k: v.strip() for k, v in zip(header, fields, strict=True)}


def _parquet_rows(listing: Path) -> Iterator[tuple[str, dict[str, str]]]:
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(listing)
    except Exception as exc:  # pyarrow raises several kinds for a file that is not Parquet
        raise ImageError(str(listing), None, f"is not a Parquet file ({exc})") from None
    names = file.schema_arrow.names
    _check_header(listing, names)
    wanted = [c for c in (*LIST_COLUMNS, "split") if c in names]
    index = 0
    for batch in file.iter_batches(batch_size=10_000, columns=wanted):
        columns = {c: batch.column(c).cast("string").to_pylist() for c in wanted}
        for i in range(batch.num_rows):
            index += 1
            yield f"row {index} of {listing.name}", {c: columns[c][i] for c in wanted}


def read_image(path: Path) -> Decoded:
    """Read ``path`` whole, hash its bytes and decode it fully with Pillow (truncated
    files are errors, not grey bands); an :class:`ImageError` says why it is unusable.

    Examples
    --------
    >>> from PIL import Image
    >>> Image.new("RGB", (3, 2)).save(tmp / "a.png")
    >>> d = read_image(tmp / "a.png"); (d.width, d.height, d.mode, d.format)
    (3, 2, 'RGB', 'PNG')
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(str(path), None, f"cannot be read ({exc.strerror or exc})") from None
    if not data:
        raise ImageError(str(path), None, "is empty (0 bytes): expected an image file")
    return decode(str(path), data)


def decode(name: str, data: bytes) -> Decoded:
    """Decode image bytes fully (``name`` for messages)."""
    from PIL import Image, ImageFile, UnidentifiedImageError

    allowed = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a cut file must fail, not decode half grey
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            decoded = Decoded(
                hashlib.sha256(data).hexdigest(), image.width, image.height, image.mode,
                image.format or "",
            )  # fmt: skip
    except UnidentifiedImageError:
        raise ImageError(
            name, None, f"is not an image ({_looks_like(data)}): expected a file Pillow "
            "decodes (JPEG, PNG, GIF, BMP, TIFF, WebP ...)"
        ) from None  # fmt: skip
    except Exception as exc:  # codecs fail in many ways (OSError, SyntaxError, ValueError ...)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        truncated = "truncated" in reason or isinstance(exc, EOFError)
        raise ImageError(
            name, None, ("is truncated" if truncated else "does not decode")
            + f" ({reason}; {len(data):,} bytes): expected a whole image"
        ) from None  # fmt: skip
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = allowed
    return decoded


def _looks_like(data: bytes) -> str:
    head = data[:512]
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return f"{len(data):,} bytes starting {data[:8].hex(' ')}"
    return f"text, {len(data):,} bytes"


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
            raise ParameterError(
                "source", f"as an array must be N x H x W (x C), got {arrays.shape}"
            )
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


def png_bytes(image: np.ndarray) -> bytes:
    """The PNG encoding of one uint8 image (L, RGB or RGBA)."""
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(out, format="PNG")
    return out.getvalue()

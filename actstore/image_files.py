"""The images a source names, and each one read, hashed and fully decoded.

A source is a folder of class folders (``FOLDER/CLASS/file.jpg``, the label is the
class folder's name), a CSV or Parquet list (columns ``path``, ``label`` and, optional,
``split``; arrays in memory are in ``images.py``). Listing a source checks its layout;
:func:`read_image` then decodes one file at a time, so memory holds one image, never
the whole source. :func:`load_rgb` reads an ingested image back for a model with the
same checks. Pillow is imported inside the functions that decode: the core starts
without it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from actstore.errors import ImageError

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

log = logging.getLogger(__name__)

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
    against the list's folder. Errors name the list and the line (``list.csv:7: ...``;
    a Parquet list: ``list.parquet: row 7: ...``): a missing, repeated or non-text
    column, a line without a path, and a list where some lines have a label and others
    none (give every line a label, or none: then every label is NULL).

    Examples
    --------
    >>> _ = (tmp / "list.csv").write_text("path,label\\nphotos/a.jpg,cat\\n")
    >>> [(e.path.name, e.label, e.origin) for e in list_entries(tmp / "list.csv")]
    [('a.jpg', 'cat', 'line 2 of list.csv')]
    """
    csv_list = listing.suffix.lower() == ".csv"
    rows = _csv_rows(listing) if csv_list else _parquet_rows(listing)
    unit = "line" if csv_list else "row"
    first: tuple[int, bool] | None = None  # the first line, and whether it has a label
    for number, values in rows:
        path, label = values.get("path"), values.get("label") or None
        if not path:
            raise _list_error(listing, number, "no path (expected path,label[,split])")
        first = first or (number, label is not None)
        if (label is not None) != first[1]:
            raise _list_error(
                listing, number, f"{'has a label' if label else 'no label'}, but {unit} "
                f"{first[0]} has {'none' if label else 'one'}: give every {unit} a label, "
                "or none (then every label is NULL)"
            )  # fmt: skip
        where = Path(os.path.expanduser(path))
        yield Entry(
            where if where.is_absolute() else listing.parent.resolve() / where,
            label,
            values.get("split") or None,
            f"{unit} {number} of {listing.name}",
        )


def _list_error(listing: Path, number: int | None, message: str) -> ImageError:
    """``list.csv:7: message``, or ``list.parquet: row 7: message`` (rows, not lines)."""
    if listing.suffix.lower() == ".csv" or number is None:
        return ImageError(str(listing), number, message)
    return ImageError(str(listing), None, f"row {number}: {message}")


def _check_header(listing: Path, names: Sequence[str]) -> None:
    line = 1 if listing.suffix.lower() == ".csv" else None
    got = f"got {', '.join(names) or 'none'}"
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ImageError(
            str(listing), line, f"column {twice[0]!r} appears {names.count(twice[0])} times: "
            f"expected each of path, label and, optional, split once; {got}"
        )  # fmt: skip
    missing = [c for c in LIST_COLUMNS if c not in names]
    if missing:
        raise ImageError(
            str(listing), line,
            f"no column {missing[0]!r}: expected columns path, label and, optional, split; {got}"
        )  # fmt: skip


def _csv_rows(listing: Path) -> Iterator[tuple[int, dict[str, str]]]:
    with open(listing, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        _check_header(listing, header)
        for fields in reader:
            if not any(f.strip() for f in fields):
                continue  # a blank line
            if len(fields) != len(header):
                raise ImageError(
                    str(listing), reader.line_num,
                    f"{len(fields)} fields: expected {len(header)} ({', '.join(header)})"
                )  # fmt: skip
            yield reader.line_num, {k: v.strip() for k, v in zip(header, fields, strict=True)}


def _parquet_rows(listing: Path) -> Iterator[tuple[int, dict[str, str]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(listing)
    except Exception as exc:  # pyarrow raises several kinds for a file that is not Parquet
        raise ImageError(str(listing), None, f"is not a Parquet file ({exc})") from None
    schema = file.schema_arrow
    _check_header(listing, schema.names)
    wanted = [c for c in (*LIST_COLUMNS, "split") if c in schema.names]
    for name in wanted:
        kind = schema.field(name).type
        if not _textual(pa, kind):
            raise ImageError(
                str(listing), None, f"column {name!r} is {kind}: expected text or numbers "
                "(string, integer, floating point, boolean or a dictionary of strings)"
            )  # fmt: skip
    index = 0
    for batch in file.iter_batches(batch_size=10_000, columns=wanted):
        columns = {c: batch.column(c).cast(pa.string()).to_pylist() for c in wanted}
        for i in range(batch.num_rows):
            index += 1
            yield index, {c: columns[c][i] for c in wanted}


def _textual(pa: Any, kind: Any) -> bool:
    """Whether a Parquet column of type ``kind`` reads as one text value a row."""
    t = pa.types
    if t.is_dictionary(kind):
        return _textual(pa, kind.value_type)
    checks = (t.is_string, t.is_large_string, t.is_integer, t.is_floating, t.is_boolean, t.is_null)
    return any(check(kind) for check in checks)


def read_image(path: Path) -> Decoded:
    """Read ``path`` whole, hash its bytes and decode it fully with Pillow (truncated
    files are errors, not grey bands); an :class:`ImageError` says why it is unusable.
    ``width`` and ``height`` are the size as displayed: swapped when the EXIF
    orientation turns the image a quarter (5 to 8), as :func:`load_rgb` turns it.

    Examples
    --------
    >>> from PIL import Image
    >>> Image.new("RGB", (3, 2)).save(tmp / "a.png")
    >>> d = read_image(tmp / "a.png"); (d.width, d.height, d.mode, d.format)
    (3, 2, 'RGB', 'PNG')
    """
    return decode(str(path), _read(path, str(path)))


def load_rgb(path: Path, sha256: str | None = None, *, row: int | None = None) -> PILImage:
    """The image in ``path`` as an RGB Pillow image, read once and checked as ingest
    checks it, turned as its EXIF orientation says; with ``sha256``, the file must
    still have that digest. 16-bit greyscale (``I;16*``, and ``I``, which must hold
    0..65535) is scaled 0..65535 -> 0..255; ``F`` must hold 0..1 and is scaled by 255.
    Every failure is an :class:`ImageError` naming the file (and ``row``).

    Examples
    --------
    >>> from PIL import Image
    >>> Image.fromarray(np.full((2, 3), 65535, np.uint16)).save(tmp / "deep.png")
    >>> image = load_rgb(tmp / "deep.png"); image.mode, image.size, image.getpixel((0, 0))
    ('RGB', (3, 2), (255, 255, 255))
    """
    name = str(path) if row is None else f"{path} (images row {row})"
    data = _read(path, name)
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise ImageError(
            name, None, "changed since it was ingested (its sha256 differs); ingest it again "
            "into a new store"
        )  # fmt: skip
    image = _open(name, data)
    if _orientation(image) != 1:
        from PIL import ImageOps

        image = ImageOps.exif_transpose(image)
    return _rgb(name, image)


def _read(path: Path, name: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(name, None, f"cannot be read ({exc.strerror or exc})") from None
    if not data:
        raise ImageError(name, None, "is empty (0 bytes): expected an image file")
    return data


def decode(name: str, data: bytes) -> Decoded:
    """Decode image bytes fully (``name`` for messages)."""
    image = _open(name, data)
    width, height = image.size
    if _orientation(image) in (5, 6, 7, 8):  # turned a quarter: displayed as height x width
        width, height = height, width
    digest = hashlib.sha256(data).hexdigest()
    return Decoded(digest, width, height, image.mode, image.format or "")


def _orientation(image: PILImage) -> int:
    """The EXIF orientation (1 to 8) :func:`PIL.ImageOps.exif_transpose` applies."""
    try:
        value = image.getexif().get(0x0112, 1)
    except Exception:  # EXIF that does not parse: the pixels as stored
        return 1
    return value if value in range(1, 9) else 1


_OPENING = threading.Lock()  # warnings.catch_warnings is process-wide: one open at a time


def _open(name: str, data: bytes) -> PILImage:
    """The image in ``data``, fully decoded; Pillow's decompression-bomb warning (over
    ``PIL.Image.MAX_IMAGE_PIXELS``) becomes one log line, its error (over twice that)
    an :class:`ImageError`, as does every other failure."""
    from PIL import Image, ImageFile, UnidentifiedImageError

    allowed = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a cut file must fail, not decode half grey
    try:
        with _OPENING, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            image = Image.open(io.BytesIO(data))
        for w in caught:
            if issubclass(w.category, Image.DecompressionBombWarning):
                log.warning(
                    "%s: %s pixels, over Pillow's decompression-bomb limit of %s; decoded "
                    "anyway (twice the limit is refused)", name,
                    f"{image.width * image.height:,}", f"{Image.MAX_IMAGE_PIXELS or 0:,}",
                )  # fmt: skip
            else:  # another thread's warning, caught while this one opened a file
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        image.load()
    except UnidentifiedImageError:
        raise ImageError(
            name, None, f"is not an image ({_looks_like(data)}): expected a file Pillow "
            "decodes (JPEG, PNG, GIF, BMP, TIFF, WebP ...)"
        ) from None  # fmt: skip
    except Image.DecompressionBombError as exc:
        raise ImageError(
            name, None, f"is too large ({exc}): refused over twice PIL.Image.MAX_IMAGE_PIXELS"
        ) from None
    except Exception as exc:  # codecs fail in many ways (OSError, SyntaxError, ValueError ...)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        truncated = "truncated" in reason or isinstance(exc, EOFError)
        raise ImageError(
            name, None, ("is truncated" if truncated else "does not decode")
            + f" ({reason}; {len(data):,} bytes): expected a whole image"
        ) from None  # fmt: skip
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = allowed
    return image


def _rgb(name: str, image: PILImage) -> PILImage:
    """``image`` as RGB; deep greyscale scaled to 8 bits (Pillow's own conversion clips
    them at 255, which turns a 16-bit image nearly white)."""
    from PIL import Image

    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        values = np.asarray(image)
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        top = 1.0 if image.mode == "F" else 65535.0
        if not (low >= 0 and high <= top):  # also NaN
            raise ImageError(
                name, None, f"is {image.mode} greyscale with values {low:g}..{high:g}: "
                f"expected 0..{top:g} ({'floats' if top == 1 else '16-bit'}, scaled to 0..255)"
            )  # fmt: skip
        if image.mode == "F":
            eight = np.rint(values.astype(np.float64) * 255)
        else:  # round(v * 255 / 65535) = round(v / 257)
            eight = (values.astype(np.uint32) + 128) // 257
        image = Image.fromarray(eight.astype(np.uint8))
    return image if image.mode == "RGB" else image.convert("RGB")


def _looks_like(data: bytes) -> str:
    head = data[:512]
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return f"{len(data):,} bytes starting {data[:8].hex(' ')}"
    return f"text, {len(data):,} bytes"

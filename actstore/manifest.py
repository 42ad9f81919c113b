"""The manifest: the store's commit record (see docs/FORMAT.md), as typed records.

A reader sees exactly what ``manifest.json`` names. Writers prepare new files first
and replace the manifest last, atomically, so a crash at any point leaves the
previous committed state intact. In memory the manifest is a :class:`Manifest` of
dataclass records; on disk it is the same JSON as format version 1 always was, so
stores written before these records existed open unchanged.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from actstore.errors import FormatError, StoreNotFoundError

FORMAT_NAME = "actstore"
FORMAT_VERSION = 5  # 2: covers, subset; 3: unit_shape, table provenance; 4: shuffle_seed;
# 5: a site's progress (object storage)
MANIFEST = "manifest.json"
PARTIAL_SUFFIX = ".partial"

SiteStatus = Literal["partial", "complete"]
ResultKind = Literal["table", "matrix"]


def now_utc() -> str:
    """The current time as an ISO 8601 string in UTC, to the second.

    Examples
    --------
    >>> now_utc()[:2], now_utc().endswith("+00:00")
    ('20', True)
    """
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()


@dataclass
class Part:
    """One Parquet file of a table: its path (relative to the store) and rows."""

    path: str
    n_rows: int
    first_row: int


@dataclass
class TableRecord:
    """A row table (``tokens``, ``sentences``, ``images``, ``words``): its Parquet parts
    in row order, and where its rows came from when that is not a CoNLL-U source
    (``provenance["sources"]``: one record per ingested image folder or vector file)."""

    n_rows: int = 0
    parts: list[Part] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)


@dataclass
class ResultRecord:
    """An analysis result: a table (Parquet parts) or a matrix (a Zarr array with
    Parquet tables of row and column labels)."""

    kind: ResultKind = "table"
    n_rows: int = 0
    parts: list[Part] = field(default_factory=list)
    shape: list[int] = field(default_factory=list)  # matrices: [rows, columns]
    path: str | None = None  # matrices: the Zarr array
    labels: dict[str, str] = field(default_factory=dict)  # matrices: axis -> Parquet file
    provenance: dict[str, Any] = field(default_factory=dict)
    created: str = ""

    def files(self) -> list[str]:
        """Every path (relative to the store) this result owns."""
        named = [p.path for p in self.parts] + list(self.labels.values())
        return named + ([self.path] if self.path else [])


@dataclass
class SiteRecord:
    """A declared site: shape, storage, provenance and progress."""

    table: str
    n_rows: int
    n_units: int
    dtype: str
    chunk_rows: int
    codec: str
    provenance: dict[str, Any]
    path: str
    status: SiteStatus = "partial"
    done_chunks: int = 0
    created: str = ""
    covers: list[list[int]] | None = None  # [start, stop) row ranges; None: all n_rows
    unit_shape: list[int] | None = None  # e.g. [C, H, W] for spatial maps; n_units = product
    # object storage, while incomplete: the progress objects of the writers that published
    progress: list[str] | None = None

    @property
    def n_chunks(self) -> int:
        return -(-self.n_rows // self.chunk_rows)

    def covered(self) -> list[tuple[int, int]]:
        """The row ranges the site holds values for."""
        if self.covers is None:
            return [(0, self.n_rows)] if self.n_rows else []
        return [(int(a), int(b)) for a, b in self.covers]


@dataclass(frozen=True)
class SourceInfo:
    """One ingested corpus file: where it came from, its labels, hash and counts."""

    path: str
    corpus: str | None
    lang: str | None
    split: str | None
    sha256: str
    n_sentences: int
    n_words: int
    n_multiword_tokens: int
    n_empty_nodes: int
    first_row: int
    first_sentence: int
    ingested: str
    subset: str | None = None  # "sentences A:B" when only some of the file was ingested
    shuffle_seed: int | None = None  # the seed when each sentence's words were shuffled


@dataclass
class Manifest:
    """Everything a store has committed."""

    created: str
    updated: str
    actstore_version: str
    generation: int = 0
    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION
    tables: dict[str, TableRecord] = field(default_factory=dict)
    sources: list[SourceInfo] = field(default_factory=list)
    sites: dict[str, SiteRecord] = field(default_factory=dict)
    results: dict[str, ResultRecord] = field(default_factory=dict)

    @classmethod
    def new(cls, version: str) -> Manifest:
        """An empty store's manifest."""
        return cls(created=now_utc(), updated=now_utc(), actstore_version=version)

    def table_like(self, name: str) -> TableRecord | ResultRecord | None:
        """The corpus table or table result ``name`` (both are SQL tables)."""
        if name in self.tables:
            return self.tables[name]
        result = self.results.get(name)
        return result if result is not None and result.kind == "table" else None

    def copy(self) -> Manifest:
        return copy.deepcopy(self)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any, where: str | Path) -> Manifest:
        """Records from the JSON of ``manifest.json`` at ``where``; malformed -> FormatError."""
        try:
            body = {k: v for k, v in data.items() if k not in _COLLECTIONS}
            manifest = cls(**body)
            manifest.tables = {n: _table(t) for n, t in data.get("tables", {}).items()}
            manifest.sources = [SourceInfo(**s) for s in data.get("sources", [])]
            manifest.sites = {n: SiteRecord(**s) for n, s in data.get("sites", {}).items()}
            manifest.results = {n: _result(r) for n, r in data.get("results", {}).items()}
        except (TypeError, AttributeError, KeyError) as exc:
            raise FormatError(f"{where}: malformed manifest ({exc})") from None
        manifest.check_paths(where)
        manifest.check_covers(where)
        return manifest

    def check_covers(self, where: str | Path) -> None:
        """Every site's ``covers``: sorted, disjoint ``[start, stop)`` ranges of its rows."""
        for name, site in self.sites.items():
            if site.covers is None:
                continue
            previous = 0
            for pair in site.covers if isinstance(site.covers, list) else [None]:
                ok = (
                    isinstance(pair, list)
                    and len(pair) == 2
                    and all(isinstance(x, int) and not isinstance(x, bool) for x in pair)
                    and previous <= pair[0] < pair[1] <= site.n_rows
                )
                if not ok:
                    raise FormatError(
                        f"{where}: site {name} covers {site.covers!r}, not sorted disjoint "
                        f"[start, stop) ranges within its {site.n_rows} rows; the manifest "
                        "was edited or damaged"
                    )
                previous = pair[1]

    def check_paths(self, where: str | Path) -> None:
        """Every file the manifest names lies inside the store, in the folder of its kind."""
        named = [("tables", p.path) for t in self.tables.values() for p in t.parts]
        named += [("results", f) for r in self.results.values() for f in r.files()]
        named += [("arrays.zarr", s.path) for s in self.sites.values()]
        named += [("progress", p) for s in self.sites.values() for p in s.progress or []]
        for folder, rel in named:
            parts = rel.split("/") if isinstance(rel, str) else []
            if len(parts) < 2 or parts[0] != folder or any(p in ("", ".", "..") for p in parts):
                raise FormatError(
                    f"{where}: names {rel!r}, which is not a path inside the store's {folder}/ "
                    "folder; the manifest was edited or damaged"
                )


_COLLECTIONS = {
    f.name for f in fields(Manifest) if f.name in ("tables", "sources", "sites", "results")
}


def _parts(items: list[dict[str, Any]]) -> list[Part]:
    return [Part(**p) for p in items]


def _table(data: dict[str, Any]) -> TableRecord:
    return TableRecord(
        n_rows=data["n_rows"], parts=_parts(data["parts"]), provenance=data.get("provenance", {})
    )


def _result(data: dict[str, Any]) -> ResultRecord:
    record = ResultRecord(**{k: v for k, v in data.items() if k != "parts"})
    record.parts = _parts(data.get("parts", []))
    return record


def fsync_dir(path: Path) -> None:
    """Make a rename or file creation inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new, never half.

    The bytes go to ``path.partial`` first, are flushed to disk, then renamed over
    ``path`` (``os.replace`` is atomic on POSIX file systems).

    Examples
    --------
    >>> atomic_write(tmp / "note.txt", b"hello")
    >>> (tmp / "note.txt").read_bytes()
    b'hello'
    """
    tmp = path.with_name(path.name + PARTIAL_SUFFIX)
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def read_manifest(root: Path) -> Manifest:
    """Load and check the manifest of the store at ``root``.

    Examples
    --------
    >>> read_manifest(store_path).tables["tokens"].n_rows
    698
    """
    path = root / MANIFEST
    if not root.exists():
        raise StoreNotFoundError(f"no store at {root}: the path does not exist")
    if not path.is_file():
        raise StoreNotFoundError(
            f"{root} is not an actstore store: it has no {MANIFEST} "
            "(create one with actstore.create or `actstore ingest`)"
        )
    return parse_manifest(path.read_bytes(), str(path))


def parse_manifest(raw: bytes, where: str) -> Manifest:
    """The manifest in ``raw`` (the bytes of ``where``), checked."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise FormatError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise FormatError(f"{where}: expected an actstore manifest (format: {FORMAT_NAME!r})")
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise FormatError(f"{where}: format_version must be an integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise FormatError(
            f"{where}: format version {version!r} is newer than this actstore understands "
            f"(up to {FORMAT_VERSION}); upgrade actstore"
        )
    return Manifest.from_json(data, where)


def stamp(manifest: Manifest) -> None:
    """Make ``manifest`` the next commit: its generation bumped, in this version's format
    (a store written by an older actstore is read as it is), dated now."""
    manifest.generation += 1
    manifest.format_version = FORMAT_VERSION
    manifest.updated = now_utc()


def manifest_bytes(manifest: Manifest) -> bytes:
    """The JSON of ``manifest`` as it is committed."""
    return json.dumps(manifest.to_json(), indent=1).encode("utf-8") + b"\n"


def write_manifest(root: Path, manifest: Manifest) -> None:
    """Commit ``manifest``: :func:`stamp` it and replace the file atomically."""
    stamp(manifest)
    atomic_write(root / MANIFEST, manifest_bytes(manifest))

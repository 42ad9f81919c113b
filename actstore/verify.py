"""``actstore verify``: every chunk and every table part checked against the manifest.

Sites: each chunk file present, of the size it must have, and matching the checksum
recorded when it was written. Tables and results: each Parquet part readable with
the rows the manifest says; matrices readable with their shape. Images: each PNG file
the store holds for an ``images`` row (ingested arrays) present with the row's sha256;
each external file (folders and lists) present, re-hashed only with ``hash_external``
(a stat each is cheap, reading every photo again is not). ``repair=True`` turns
each damaged site back into a partial one without its damaged chunks, so running the
extraction that made it again (same settings) rewrites only those chunks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

import actstore
from actstore import chunks
from actstore.core_verbs import StoreParam, VerifyParams
from actstore.errors import ActStoreError
from actstore.manifest import ResultRecord, TableRecord
from actstore.output import render
from actstore.storage import Storage


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a store: what (kind and name), where, and how."""

    kind: str  # "site", "table", "result" or "image"
    name: str
    where: str
    problem: str


def check_store(store: actstore.Store, *, hash_external: bool = False) -> list[Problem]:
    """Everything wrong with ``store``'s files (an empty list: it is intact); with
    ``hash_external``, image files outside the store are hashed too, not only found.

    Examples
    --------
    >>> check_store(store)
    []
    >>> chunks.chunk_file(store_path / store.site("toy/layer.1").path, 0).unlink()
    >>> [p.problem for p in check_store(store)]
    ['chunk 0 (...) is missing']
    """
    problems = []
    manifest = store.manifest_records()
    for name, record in manifest.sites.items():
        if record.status != "complete":
            continue
        problems += [
            Problem("site", name, f"chunk {d.chunk}", d.problem.split(": ", 1)[-1])
            for d in chunks.verify_site(store.storage, name, record)
        ]
    for kind, named in (("table", manifest.tables), ("result", manifest.results)):
        for name, entry in named.items():
            problems += _check_parts(store.storage, kind, name, entry)
    if IMAGES in manifest.tables and not any(p.name == IMAGES for p in problems):
        problems += _check_images(store, hash_external)
    return problems


IMAGES = "images"
MAX_MISSING = 20  # external image files named one by one; the rest are counted


def _check_images(store: actstore.Store, hash_external: bool) -> list[Problem]:
    """The files the ``images`` rows name: the store's own PNG files hashed, external
    ones found (and hashed with ``hash_external``)."""
    from actstore.images import image_path

    columns = store.columns(["row", "path", "sha256"], table=IMAGES).to_pydict()
    out: list[Problem] = []
    checked: set[str] = set()
    n_missing = 0
    for row, value, digest in zip(columns["row"], columns["path"], columns["sha256"], strict=True):
        if value in checked:
            continue  # duplicates share a file
        checked.add(value)
        inside = not Path(value).is_absolute()
        where = f"row {row}"
        try:
            if inside:  # the store's own PNG, wherever the store is
                got = hashlib.sha256(
                    store.storage.read_bytes(image_path(Path(), value).as_posix())
                ).hexdigest()
            elif hash_external:
                got = hashlib.sha256(Path(value).read_bytes()).hexdigest()
            elif not Path(value).is_file():
                raise FileNotFoundError(value)
        except FileNotFoundError:
            n_missing += not inside
            if inside or n_missing <= MAX_MISSING:
                out.append(Problem("image", IMAGES, where, f"{value} is missing"))
            continue
        except OSError as exc:
            out.append(Problem("image", IMAGES, where, f"{value} cannot be read ({exc.strerror})"))
            continue
        if (inside or hash_external) and got != digest:
            out.append(
                Problem("image", IMAGES, where, f"{value} has sha256 {got[:12]}..., the row "
                        f"says {digest[:12]}...: the file changed since it was ingested")
            )  # fmt: skip
    if n_missing > MAX_MISSING:
        out.append(
            Problem("image", IMAGES, "...", f"{n_missing - MAX_MISSING:,} more image files "
                    "outside the store are missing")
        )  # fmt: skip
    return out


def _check_parts(
    storage: Storage, kind: str, name: str, entry: TableRecord | ResultRecord
) -> list[Problem]:
    out = []
    for part in entry.parts:
        try:
            rows = pq.ParquetFile(storage.parquet(part.path)).metadata.num_rows
        except (OSError, ValueError) as exc:
            out.append(Problem(kind, name, part.path, f"unreadable ({exc})"))
            continue
        if rows != part.n_rows:
            out.append(
                Problem(kind, name, part.path, f"{rows} rows, the manifest says {part.n_rows}")
            )
    if isinstance(entry, ResultRecord) and entry.kind == "matrix" and entry.path:
        import zarr

        try:
            shape = list(zarr.open_array(storage.zarr(entry.path), mode="r").shape)
        except (OSError, ValueError, KeyError) as exc:
            return [*out, Problem(kind, name, entry.path, f"unreadable ({exc})")]
        if shape != entry.shape:
            out.append(Problem(kind, name, entry.path, f"shape {shape}, expected {entry.shape}"))
    return out


def verify(where: StoreParam, params: VerifyParams) -> list[Problem]:
    """Print what is wrong with a store (and with ``repair``, reopen damaged sites)."""
    with actstore.open(where.store, mode="a" if params.repair else "r") as store:
        problems = check_store(store, hash_external=params.hash_images)
        if not problems:
            what = ", table part and image file" if IMAGES in store.tables else " and table part"
            print(f"{store.location}: every chunk{what} is intact")
            return problems
        import pyarrow as pa

        table = pa.table(
            {f: [getattr(p, f) for p in problems] for f in Problem.__dataclass_fields__}
        )
        print(render(table, "table"), end="")
        damaged: dict[str, list[int]] = {}
        for p in problems:
            if p.kind == "site":
                damaged.setdefault(p.name, []).append(int(p.where.split()[-1]))
        if params.repair:
            for site, bad in damaged.items():
                store.reopen_chunks(site, bad)
                print(f"{site}: {len(bad)} chunk(s) to write again: rerun its extraction")
        elif damaged:
            print(
                "repair: actstore verify STORE --repair, then rerun the extraction of "
                + ", ".join(sorted(damaged))
                + " with the same settings (only the damaged chunks are recomputed)"
            )
    if params.repair and all(p.kind == "site" for p in problems):
        return problems
    raise ActStoreError(f"{len(problems)} problem(s) found in {where.store}")

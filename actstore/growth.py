"""Starting a site's new array: what an interrupted declaration left is cleared, and
the chunks that need no writing are marked (those without covered rows, and, when a
site grows, those it keeps from its old array, hard-linked)."""

from __future__ import annotations

import shutil
from pathlib import Path

from actstore import chunks, coverage
from actstore.manifest import SiteRecord
from actstore.storage import LocalStorage


def clear_debris(root: Path, path: str) -> None:
    """Remove what an interrupted, uncommitted declaration left at ``path`` (nothing
    names it: paths carry the generation of the commit that declares them)."""
    shutil.rmtree(root / path, ignore_errors=True)
    shutil.rmtree(chunks.progress_folder(root, path), True)


def start(root: Path, record: SiteRecord, old: SiteRecord | None) -> int:
    """Mark the chunks of a new array that need no writing: those without covered rows,
    and (when it grows from ``old``) those whose rows ``old`` holds whole and unchanged,
    linked from its array. Returns how many were marked."""
    folder = chunks.progress_folder(root, record.path)
    folder.mkdir(parents=True, exist_ok=True)
    wanted = record.covered()
    known = written(root, old) if old is not None else {}
    marked = 0
    for chunk in range(record.n_chunks):
        lo, hi = chunk * record.chunk_rows, min((chunk + 1) * record.chunk_rows, record.n_rows)
        mine = coverage.clip(wanted, lo, hi)
        if not mine:
            chunks.write_marker(folder, chunk, chunks.ABSENT)
            marked += 1
        elif (
            old is not None
            and known.get(chunk) not in (None, chunks.ABSENT)
            and hi - lo == record.chunk_rows
            and (chunk + 1) * old.chunk_rows <= old.n_rows
            and coverage.clip(old.covered(), lo, hi) == mine
            and chunks.link_chunk(root / old.path, root / record.path, chunk)
        ):
            chunks.write_marker(folder, chunk, str(known[chunk]))
            marked += 1
    return marked


def written(root: Path, record: SiteRecord) -> dict[int, str | None]:
    """Checksums of the written chunks of ``record`` (complete or partial)."""
    if record.status == "complete":
        listed = chunks.read_checksums(LocalStorage(root), record.path, record.n_chunks)
        return dict(enumerate(listed))
    return chunks.read_markers(chunks.progress_folder(root, record.path))

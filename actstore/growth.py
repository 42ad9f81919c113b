"""Starting a site's new array: whether its settings differ from the old one's, what
an interrupted declaration left is cleared, and the chunks that need no writing are
marked (those without covered rows, and, when a site grows, those it keeps from its
old array, linked or copied server-side)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from actstore import chunks, coverage
from actstore.commit import progress_folder
from actstore.manifest import SiteRecord
from actstore.marks import marks_for
from actstore.storage import Storage

DECLARED = "declared"  # the writer whose marks a declaration records (object storage)

# provenance that says how much of the corpus a site covers, not how its values are
# made: it may change as the site grows (a corpus hash, counts over the corpus)
EXTENT_KEYS = frozenset(
    {"corpus_sha256", "flagged_words", "n_windowed_sentences", "actstore_version"}
)


def clear_debris(storage: Storage, path: str) -> None:
    """Remove what an interrupted, uncommitted declaration left at ``path`` (nothing
    names it: paths carry the generation of the commit that declares them)."""
    storage.delete_tree(path)
    storage.delete_tree(progress_folder(path))


def start(storage: Storage, record: SiteRecord, old: SiteRecord | None) -> int:
    """Mark the chunks of a new array that need no writing: those without covered rows,
    and (when it grows from ``old``) those whose rows ``old`` holds whole and unchanged,
    linked from its array. Returns how many were marked; in object storage the record
    names the object that holds the marks."""
    marks = marks_for(storage, record, DECLARED)
    wanted = record.covered()
    known = written(storage, old) if old is not None else {}
    marked: dict[int, str] = {}
    for chunk in range(record.n_chunks):
        lo, hi = chunk * record.chunk_rows, min((chunk + 1) * record.chunk_rows, record.n_rows)
        mine = coverage.clip(wanted, lo, hi)
        if not mine:
            marked[chunk] = chunks.ABSENT
        elif (
            old is not None
            and known.get(chunk) not in (None, chunks.ABSENT)
            and hi - lo == record.chunk_rows
            and (chunk + 1) * old.chunk_rows <= old.n_rows
            and coverage.clip(old.covered(), lo, hi) == mine
            and _link(storage, old, record, chunk)
        ):
            marked[chunk] = str(known[chunk])
    if marked:
        marks.mark_many(marked)
        record.progress = None if marks.name is None else [marks.name]
    return len(marked)


def _link(storage: Storage, old: SiteRecord, new: SiteRecord, chunk: int) -> bool:
    """Give the new array ``old``'s file of ``chunk``; False if that file is gone."""
    try:
        storage.copy_file(f"{old.path}/c/{chunk}/0", f"{new.path}/c/{chunk}/0")
    except FileNotFoundError:
        return False
    return True


def written(storage: Storage, record: SiteRecord) -> dict[int, str | None]:
    """Checksums of the written chunks of ``record`` (complete or partial)."""
    if record.status == "complete":
        return dict(enumerate(chunks.read_checksums(storage, record.path, record.n_chunks)))
    return marks_for(storage, record, DECLARED).all(record.progress)


def differences(old: SiteRecord, declared: Mapping[str, Any]) -> list[str]:
    """``key: old → new`` for each setting that differs (provenance key by key, apart
    from :data:`EXTENT_KEYS`); the row count may differ: the site grows."""
    out = []
    for key, new in declared.items():
        if key == "provenance":
            before, after = _settings(old.provenance), _settings(new)
            out += [
                f"{k}: {_short(before.get(k))} → {_short(after.get(k))}"
                for k in sorted(before.keys() | after.keys())
                if before.get(k) != after.get(k)
            ]
        elif key != "n_rows" and getattr(old, key) != new:
            out.append(f"{key}: {getattr(old, key)} → {new}")
    return out


def _settings(provenance: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in provenance.items() if k not in EXTENT_KEYS}


def _short(value: Any) -> str:
    text = "(none)" if value is None else str(value)
    return text if len(text) <= 60 else text[:57] + "..."

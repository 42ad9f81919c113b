"""``Store.info()``: a JSON-ready description of a store, with its bytes on disk."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from actstore.commit import ARRAYS_DIR, RESULTS_DIR, TABLES_DIR

if TYPE_CHECKING:
    from actstore.store import Store


def dir_bytes(path: Path) -> int:
    """Bytes of every file under ``path`` (0 if it does not exist)."""
    if not path.exists():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def summarize(store: Store) -> dict[str, Any]:
    """Corpus tables (with the sources of those not from CoNLL-U, such as ``images``),
    sites, results (tables and matrices), sources and bytes on disk of ``store``.

    Examples
    --------
    >>> summarize(store)["tables"]["sentences"]
    {'n_rows': 30, 'n_parts': 1}
    """
    path = store.path
    provenance = {n: t.provenance for n, t in store.manifest_records().tables.items()}
    return {
        "path": str(path),
        **store.header(),
        "tables": {  # corpus tables; table results are listed with the other results
            n: {"n_rows": t.n_rows, "n_parts": t.n_parts}
            | (
                {"sources": provenance[n]["sources"]}
                if provenance.get(n, {}).get("sources")
                else {}
            )
            for n, t in store.tables.items()
            if n not in store.results
        },
        "sites": {
            n: {
                "table": s.table,
                "shape": list(s.shape),
                "dtype": s.dtype,
                "chunk_rows": s.chunk_rows,
                "codec": s.codec,
                "status": s.status,
                "chunks_done": f"{s.done_chunks}/{s.n_chunks}",
                "covers": [list(r) for r in s.covers],
                "n_covered": s.n_covered,
                "table_rows": store.n_rows(s.table),
                "bytes": dir_bytes(path / s.path),
                "provenance": s.provenance,
            }
            for n, s in store.sites.items()
        },
        "results": {
            n: {
                "kind": r.kind,
                "shape": list(r.shape),
                "analysis": r.provenance.get("analysis"),
                "created": r.created,
            }
            for n, r in store.results.items()
        },
        "sources": [vars(s) for s in store.sources],
        "bytes": {
            "tables": dir_bytes(path / TABLES_DIR),
            "arrays": dir_bytes(path / ARRAYS_DIR),
            "results": dir_bytes(path / RESULTS_DIR),
            "total": dir_bytes(path),
        },
    }

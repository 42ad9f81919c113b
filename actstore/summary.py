"""``Store.info()``: a JSON-ready description of a store, with its bytes on disk."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from actstore.commit import ARRAYS_DIR, RESULTS_DIR, TABLES_DIR

if TYPE_CHECKING:
    from actstore.storage import Storage
    from actstore.store import Store


def stored_bytes(storage: Storage, rel: str = "") -> int:
    """Bytes of every file under folder ``rel`` of a store (0 if it does not exist)."""
    return sum(storage.files(rel).values())


def summarize(store: Store) -> dict[str, Any]:
    """Corpus tables (with the sources of those not from CoNLL-U, such as ``images``),
    sites, results (tables and matrices), sources and bytes on disk of ``store``.

    Examples
    --------
    >>> summarize(store)["tables"]["sentences"]
    {'n_rows': 30, 'n_parts': 1}
    """
    everything = store.storage.files("")  # one listing: in object storage, one pass

    def stored(rel: str = "") -> int:
        return sum(n for f, n in everything.items() if not rel or f.startswith(rel + "/"))

    provenance = {n: t.provenance for n, t in store.manifest_records().tables.items()}
    return {
        "path": store.location,
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
                "bytes": stored(s.path),
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
            "tables": stored(TABLES_DIR),
            "arrays": stored(ARRAYS_DIR),
            "results": stored(RESULTS_DIR),
            "total": stored(),
        },
    }

"""What the core verbs do: ``ingest``, ``sql`` and ``info`` (declared in ``core_verbs``)."""

from __future__ import annotations

import json
import shutil
from typing import Any

import actstore
from actstore.core_verbs import InfoParams, IngestParams, SQLParams, StoreParam
from actstore.errors import ActStoreError
from actstore.output import Output, show


def ingest(params: IngestParams) -> list[dict[str, Any]]:
    """Append CoNLL-U files to a store, creating it when missing; prints one line a file."""
    path = params.store
    fresh = not (path / "manifest.json").is_file()
    store = actstore.create(path) if fresh else actstore.open(path, mode="a")
    try:
        with store:
            records = actstore.ingest_conllu(
                store, params.files, corpus=params.corpus, lang=params.lang, split=params.split
            )
    except (ActStoreError, OSError):
        if fresh:  # leave no empty store behind for a failed first ingest
            shutil.rmtree(path, ignore_errors=True)
        raise
    for r in records:
        print(
            f"ingested {r['path']}: {r['n_sentences']:,} sentences, {r['n_words']:,} words "
            f"(rows {r['first_row']:,}..{r['first_row'] + r['n_words'] - 1:,})"
        )
    print(f"{path}: {store.n_rows('tokens'):,} tokens, {store.n_rows('sentences'):,} sentences")
    return records


def sql(where: StoreParam, query: SQLParams, out: Output) -> Any:
    """Run one read-only query and print its result."""
    with actstore.open(where.store) as store:
        frame = store.sql(query.query, arrow=True, timeout=query.timeout)
    show(frame, out)
    return frame


def info(where: StoreParam, params: InfoParams) -> dict[str, Any]:
    """Describe a store: tables, sites, results, sources and bytes on disk."""
    with actstore.open(where.store) as store:
        described: dict[str, Any] = store.info()
    if params.json:
        print(json.dumps(described, indent=1))
    else:
        print(describe(described))
    return described


def describe(info: dict[str, Any]) -> str:
    """``Store.info()`` as the lines ``actstore info`` prints."""
    lines = [
        f"store {info['path']} (format {info['format_version']}, "
        f"actstore {info['actstore_version']})",
        f"  created {info['created']}, updated {info['updated']}",
    ]
    sizes = info["bytes"]
    lines.append(
        f"  bytes on disk: {size(sizes['total'])} (tables {size(sizes['tables'])}, "
        f"arrays {size(sizes['arrays'])}, results {size(sizes['results'])})"
    )
    lines.append("tables:")
    width = max(map(len, info["tables"]), default=0)
    for name, t in info["tables"].items():
        lines.append(f"  {name:<{width}} {t['n_rows']:>12,} rows  {t['n_parts']} part(s)")
    lines.append("sites:" if info["sites"] else "sites: none")
    for name, s in info["sites"].items():
        keys = ("model", "hidden_state", "align", "dtype", "compute")
        prov = ", ".join(f"{k}={s['provenance'][k]}" for k in keys if k in s["provenance"])
        lines.append(
            f"  {name:<24} {s['table']} {s['shape'][0]:,}x{s['shape'][1]} {s['dtype']} "
            f"{s['status']} ({s['chunks_done']} chunks) {size(s['bytes'])}  {prov}"
        )
    results = info.get("results", {})
    lines.append("results:" if results else "results: none")
    for name, r in results.items():
        what = r.get("analysis") or ""
        lines.append(f"  {name:<24} {r['kind']:<6} {r['shape']}  {what}".rstrip())
    lines.append("sources:" if info["sources"] else "sources: none")
    for src in info["sources"]:
        lines.append(
            f"  {src['path']}  corpus={src['corpus']} lang={src['lang']} split={src['split']} "
            f"{src['n_sentences']:,} sentences {src['n_words']:,} words sha256={src['sha256'][:12]}"
        )
    return "\n".join(lines)


def size(n: int) -> str:
    """Bytes as text: ``1536`` -> ``1.5 KiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{n} B"

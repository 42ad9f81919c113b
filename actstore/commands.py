"""What the core verbs do: ``ingest``, ``sql`` and ``info`` (declared in ``core_verbs``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import actstore
from actstore.core_verbs import (
    INGEST_KINDS,
    CopyParams,
    InfoParams,
    IngestParams,
    SQLParams,
    StoreParam,
)
from actstore.errors import ActStoreError, ParameterError
from actstore.output import Output, show
from actstore.storage import storage_of

if TYPE_CHECKING:
    from actstore.transfer import CopyReport


def ingest(params: IngestParams) -> Any:
    """Append CoNLL-U files (or, after the word ``images`` or ``vectors``, rows of that
    kind) to a store, creating it when missing; prints what it added."""
    path, kind = params.store, params.kind
    if kind is not None and params.shuffle_words is not None:
        raise ParameterError("shuffle_words", f"is for CoNLL-U files, not {kind}")
    subset = None if kind else params.subset()
    storage = storage_of(path)
    fresh = not storage.holds_store()
    store = actstore.create(path) if fresh else actstore.open(path, mode="a")
    try:
        with store:
            if kind is not None:
                return ingest_kind(kind)(store, params)
            records = actstore.ingest_conllu(
                store, params.files, corpus=params.corpus, lang=params.lang, split=params.split,
                sentences=subset, shuffle_words=params.shuffle_words,
            )  # fmt: skip
    except (ActStoreError, OSError):
        if fresh:  # leave no empty store behind for a failed first ingest
            storage.remove_all()
        raise
    for r in records:
        seed = r["shuffle_seed"]
        print(
            f"ingested {r['path']}: {r['n_sentences']:,} sentences, {r['n_words']:,} words "
            f"(rows {r['first_row']:,}..{r['first_row'] + r['n_words'] - 1:,})"
            + ("" if seed is None else f", words shuffled with seed {seed}")
        )
    print(f"{path}: {store.n_rows('tokens'):,} tokens, {store.n_rows('sentences'):,} sentences")
    return records


def ingest_kind(kind: str) -> Callable[[actstore.Store, IngestParams], Any]:
    """The function registered for ``actstore ingest STORE KIND ...`` (entry-point group
    ``actstore.ingest``): called with the store, open for writing, and the parameters;
    it prints what it added. ``kind`` is the first of ``params.files``.

    Examples
    --------
    >>> ingest_kind("images").__name__
    'ingest_command'
    """
    from importlib.metadata import entry_points

    (point,) = entry_points(group=INGEST_KINDS, name=kind)
    function: Callable[[actstore.Store, IngestParams], Any] = point.load()
    return function


def sql(where: StoreParam, query: SQLParams, out: Output) -> Any:
    """Run one read-only query and print its result."""
    with actstore.open(where.store) as store:
        frame = store.sql(query.query, arrow=True, timeout=query.timeout)
    show(frame, out)
    return frame


def copy(where: StoreParam, params: CopyParams) -> CopyReport:
    """Copy a store, verified, and say what was moved."""
    from actstore.transfer import copy_store

    if params.jobs < 1:
        raise ParameterError("jobs", f"must be at least 1, got {params.jobs}")
    report = copy_store(where.store, params.destination, jobs=params.jobs)
    print(report.line())
    return report


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
    """``Store.info()`` as the lines ``actstore info`` prints: corpus tables, sites,
    results and sources, each a section of aligned columns.

    Examples
    --------
    >>> print(describe(store.info()))
    store ...
    tables:
      tokens     698 rows  1 part(s)
      sentences   30 rows  1 part(s)
    sites:
      toy/layer.0  tokens  698x16  float16  complete  (1/1 chunks)  ... model=toy
      toy/layer.1  tokens  698x16  float16  complete  (1/1 chunks)  ... model=toy
    results: none
    sources:
      ...en_ewt-ud-sample.conllu  corpus=en_ewt lang=en split=dev 30 sentences 698 words ...
    """
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
    tables = [
        [n, f"{t['n_rows']:,} rows", f"{t['n_parts']} part(s)"] for n, t in info["tables"].items()
    ]
    sites = []
    for name, s in info["sites"].items():
        keys = ("model", "hidden_state", "align", "dtype", "compute")
        prov = ", ".join(f"{k}={s['provenance'][k]}" for k in keys if k in s["provenance"])
        shape = f"{s['shape'][0]:,}x" + "x".join(str(d) for d in s["shape"][1:])
        chunks = f"({s['chunks_done']} chunks)"
        status = s["status"]
        if s["n_covered"] < s["table_rows"]:  # the table grew, or --where chose some rows
            status += f", covers {s['n_covered']:,} of {s['table_rows']:,} rows"
        sites.append([name, s["table"], shape, s["dtype"], status, chunks, size(s["bytes"]), prov])
    results = [
        [n, r["kind"], _shape(r["kind"], r["shape"]), r.get("analysis") or ""]
        for n, r in info.get("results", {}).items()
    ]
    sources = [
        [
            src["path"],
            f"corpus={src['corpus']} lang={src['lang']} split={src['split']} "
            f"{src['n_sentences']:,} sentences {src['n_words']:,} words "
            + (f"({src['subset']}) " if src.get("subset") else "")
            + (f"shuffled={src['shuffle_seed']} " if src.get("shuffle_seed") is not None else "")
            + f"sha256={src['sha256'][:12]}",
        ]
        for src in info["sources"]
    ]
    sources += [
        _table_source(table, src)
        for table, t in info["tables"].items()
        for src in t.get("sources", [])
    ]
    for title, rows, right in (
        ("tables", tables, {1}),
        ("sites", sites, {2, 6}),
        ("results", results, {2}),
        ("sources", sources, set()),
    ):
        lines.append(f"{title}:" if rows else f"{title}: none")
        lines += aligned(rows, right)
    return "\n".join(lines)


def _table_source(table: str, src: dict[str, Any]) -> list[str]:
    """One line of ``info`` for a source of a row table not read from CoNLL-U (an image
    folder or list, a vector file): what its provenance record says, briefly."""
    words = [f"table={table}"] + ([f"kind={src['kind']}"] if "kind" in src else [])
    if "n_rows" in src:
        words.append(f"{src['n_rows']:,} rows from row {src.get('first_row', 0):,}")
    if src.get("skipped"):
        words.append(f"{len(src['skipped']):,} skipped")
    digest = src.get("listing_sha256") or src.get("sha256")
    words += [f"sha256={digest[:12]}"] if isinstance(digest, str) else []
    return [str(src.get("path", "")), " ".join(words)]


def aligned(rows: list[list[str]], right: set[int] | None = None) -> list[str]:
    """Rows of cells as lines indented by two, each column as wide as its widest cell
    (``right``: the columns aligned to the right, such as numbers).

    Examples
    --------
    >>> aligned([["tokens", "25,147 rows"], ["sentences", "2,001 rows"]], right={1})
    ['  tokens     25,147 rows', '  sentences   2,001 rows']
    """
    right = right or set()
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))] if rows else []
    lines = []
    for row in rows:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append(("  " + "  ".join(cells)).rstrip())
    return lines


def _shape(kind: str, shape: list[int]) -> str:
    """A result's shape as text: ``25,147 rows`` for a table, ``17x385`` for a matrix."""
    if kind == "table" and len(shape) == 1:
        return f"{shape[0]:,} rows"
    return "x".join(f"{d:,}" for d in shape)


def size(n: int) -> str:
    """Bytes as text: ``1536`` -> ``1.5 KiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{n} B"

"""The generic extraction driver: chunks, shards, a background writer, provenance.

:func:`run` opens the store, asks the :class:`~extractors.base.Extractor` which sites
it can write, declares the chosen ones (or resumes them), and goes through the chunks
still missing from any of them that belong to this shard (``chunk * N // n_chunks ==
I``). Each chunk's batches are computed on the calling thread and written by a
background thread; at most ``writer_bytes`` of finished blocks wait for it, and each
site's writer holds only the chunk being filled, so memory does not grow with the
corpus. Finally every site is committed (complete once all its chunks are written).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import actstore
from actstore import coverage
from actstore.errors import ActStoreError, ParameterError, SchemaError, SiteNotFoundError
from actstore.names import match_names, quote_ident
from actstore.sql import condition
from extractors.background import BackgroundWriter
from extractors.base import Block, Extractor, SiteSpec
from extractors.progress import Progress
from extractors.verbs import ExtractOptions

log = logging.getLogger("actstore.extract")


@dataclass
class ExtractReport:
    """What a run did: sites, rows, chunks written by this process, device, time.

    Examples
    --------
    >>> report = ExtractReport(["m/layer.0", "m/layer.1"], 510, 2, 1.5, "cpu")
    >>> report.summary()
    'extracted 2 sites (m/layer.0 .. m/layer.1) over 510 rows, 2 chunks on cpu in 1.5 s'
    """

    sites: list[str]
    rows: int
    chunks_done: int
    seconds: float
    device: str
    stats: dict[str, int] = field(default_factory=dict)
    middle: str = ""  # extractor-specific parts of the summary line
    tail: str = ""
    nothing_to_do: bool = False  # every chosen site already held every row asked for

    def summary(self) -> str:
        """One line for the command line."""
        if self.nothing_to_do:
            return (
                f"nothing to do: {len(self.sites)} sites ({self.sites[0]} .. {self.sites[-1]}) "
                "already hold every row asked for"
            )
        return (
            f"extracted {len(self.sites)} sites ({self.sites[0]} .. {self.sites[-1]}) over "
            f"{self.rows:,} rows{self.middle}, {self.chunks_done} chunks"
            f"{'' if self.device == 'none' else ' on ' + self.device} in "
            f"{self.seconds:.1f} s{self.tail}"
        )


def corpus_sha256(store: actstore.Store, table: str = "tokens") -> str:
    """Hash of what was ingested into ``table``, in order: the CoNLL-U sources for
    ``tokens`` and ``sentences``; for other tables (``images``, ``words``) the sources
    their provenance records (each one's content hash: ``listing_sha256`` of an image
    folder or list, ``sha256`` of a vector file).

    Examples
    --------
    >>> len(corpus_sha256(store)), corpus_sha256(store, "images") == corpus_sha256(store)
    (64, False)
    """
    digest = hashlib.sha256()
    if table in ("tokens", "sentences"):
        for source in store.sources:
            digest.update(source.sha256.encode())
        return digest.hexdigest()
    record = store.manifest_records().tables.get(table)
    for source in record.provenance.get("sources", []) if record is not None else []:
        content = source.get("listing_sha256") or source.get("sha256") or ""
        digest.update(f"{content}|{source.get('n_rows')}".encode())
    return digest.hexdigest()


def choose_sites(available: Sequence[SiteSpec], pattern: str) -> list[SiteSpec]:
    """The sites matching the comma-separated globs ``pattern`` (name or component).

    Examples
    --------
    >>> specs = [SiteSpec(f"m/layer.{i}", 4) for i in range(3)]
    >>> [s.name for s in choose_sites(specs, "layer.0,m/layer.2")]
    ['m/layer.0', 'm/layer.2']
    >>> choose_sites(specs, "layer.9")
    Traceback (most recent call last):
    ...
    actstore.errors.ParameterError: sites 'layer.9' matches none of m/layer.0, m/layer.1, m/layer.2
    """
    by_name = {s.name: s for s in available}
    try:
        chosen = match_names(by_name, pattern)
    except SiteNotFoundError:
        raise ParameterError("sites", f"{pattern!r} matches none of {', '.join(by_name)}") from None
    order = {name: i for i, name in enumerate(by_name)}
    return [by_name[n] for n in sorted(chosen, key=order.__getitem__)]


def shard_chunks(pending: Sequence[int], n_chunks: int, index: int, count: int) -> list[int]:
    """The pending chunks shard ``index`` of ``count`` fills: contiguous runs of chunks.

    Examples
    --------
    >>> shard_chunks(range(8), 8, 1, 2), shard_chunks([0, 5, 6], 8, 1, 2)
    ([4, 5, 6, 7], [5, 6])
    """
    return [c for c in pending if c * count // n_chunks == index]


def resolve(extractor: Extractor, device: str) -> Any:
    """The ``torch.device`` the extractor runs on (None if it needs no device)."""
    if not extractor.devices:
        if device not in ("auto", "cpu"):
            raise ParameterError("device", f"{device!r}: extractor {extractor.name} runs no model")
        return None
    from actstore.devices import resolve_device

    chosen = resolve_device(device, parameter="device")
    if chosen.type not in extractor.devices:
        raise ParameterError(
            "device",
            f"{device!r}: extractor {extractor.name} runs on {', '.join(extractor.devices)}",
        )
    return chosen


def compute_label(device: Any) -> str:
    """How values were computed, for provenance."""
    if device is None:
        return "none"
    return "cuda autocast bfloat16" if device.type == "cuda" else "cpu float32"


def run(
    store_path: str | Path,
    extractor: Extractor,
    options: ExtractOptions,
    *,
    on_chunk: Callable[[int], None] | None = None,
) -> ExtractReport:
    """Run ``extractor`` over the store at ``store_path`` as ``options`` say.

    Uses ``options.sites``, ``dtype``, ``device``, ``shard``, ``chunk_rows``,
    ``overwrite`` and ``writer_bytes``; the rest is the extractor's business.
    ``on_chunk`` is called with each chunk number once its blocks are queued.

    Examples
    --------
    >>> class Rows(Extractor):
    ...     name = "rows"
    ...     def sites(self):
    ...         return [SiteSpec("rows/id", n_units=1)]
    ...     def compute(self, batch):
    ...         rows = np.arange(*batch)
    ...         return Block(rows, [rows[:, None] + 1.0])
    >>> store.close()
    >>> run(store_path, Rows(), ExtractOptions(device="cpu")).summary()
    'extracted 1 sites (rows/id .. rows/id) over 698 rows, 1 chunks on cpu in ... s'
    >>> actstore.open(store_path).acts("rows/id").values[:3, 0]
    array([1., 2., 3.], dtype=float32)
    """
    options.check()
    started = time.perf_counter()
    index, count = options.shard_index
    if count > 1 and not extractor.shardable:
        raise ParameterError("shard", f"extractor {extractor.name} cannot run in shards")
    chosen = choose_sites(extractor.sites(), options.sites)
    if options.name is not None:
        chosen = [replace(s, name=f"{options.name}/{s.component}") for s in chosen]
    device = resolve(extractor, options.device)
    with actstore.open(store_path, mode="a", shared=count > 1) as store:
        n_rows = store.n_rows(extractor.table)
        if not n_rows and not extractor.allows_zero_rows:
            raise SchemaError(
                f"{store.location} has no {extractor.table} yet: run `actstore ingest` first"
            )
        # what prepare() saves (an alignment, say) commits with the sites or not at all;
        # shards commit apart, as each one declares the sites the first one made
        with store.transaction() if count == 1 else contextlib.nullcontext():
            extractor.prepare(store, chosen, device)
            common = {
                "extractor": extractor.name,
                **extractor.provenance(),
                "dtype": options.dtype,
                "compute": compute_label(device),
                "corpus_sha256": corpus_sha256(store, extractor.table),
                "actstore_version": actstore.__version__,
            }
            covers = (
                extractor.covered_rows(store)
                if options.where is None
                else wanted_rows(store, extractor, options)
            )
            writers = _declare(store, extractor, chosen, options, common, covers)
        first = writers[0]
        pending = sorted(set().union(*(w.pending_chunks() for w in writers)))
        mine = shard_chunks(pending, first.n_chunks, index, count)
        needed = {
            c: coverage.merge(r for w in writers if c not in w.done for r in w.needed(c))
            for c in mine
        }
        n_needed = sum(map(coverage.count, needed.values()))
        progress = Progress(total=n_needed, unit=extractor.row_unit)
        background = BackgroundWriter(writers, options.writer_bytes)
        try:
            for chunk in mine:
                lo, hi = first.chunk_range(chunk)
                for start, stop in needed[chunk]:
                    for batch in extractor.batches(start, stop):
                        block = extractor.compute(batch)
                        _check_block(extractor, block, lo, hi, len(writers))
                        background.put(block)
                        progress.advance(block.n_rows)
                if on_chunk is not None:
                    on_chunk(chunk)
        finally:
            extractor.close()
            background.close()
            progress.close()
        for writer in writers:
            if writer.buffered_rows:
                raise ActStoreError(
                    f"extractor {extractor.name} left {writer.buffered_rows} rows of site "
                    f"{writer.name} unwritten: compute() must cover every row of its chunk"
                )
        for writer in writers:
            writer.commit()
    stats = extractor.stats()
    middle, tail = extractor.describe(stats)
    return ExtractReport(
        sites=[s.name for s in chosen],
        rows=n_needed,
        chunks_done=len(mine),
        nothing_to_do=not pending,
        seconds=time.perf_counter() - started,
        device="none" if device is None else str(device),
        stats=stats,
        middle=middle,
        tail=tail,
    )


def _declare(
    store: actstore.Store,
    extractor: Extractor,
    chosen: Sequence[SiteSpec],
    options: ExtractOptions,
    common: dict[str, Any],
    covers: list[tuple[int, int]] | None,
) -> list[actstore.SiteWriter]:
    """One writer per chosen site, in order, all cut into the same chunks: the widest
    site picks the chunk size (unless ``chunk_rows`` is given), the others follow."""
    widest = max(range(len(chosen)), key=lambda i: chosen[i].n_units)
    order = [widest, *(i for i in range(len(chosen)) if i != widest)]
    writers: dict[int, actstore.SiteWriter] = {}
    chunk_rows = options.chunk_rows
    if chunk_rows is None:  # sites written before keep their chunking; new ones follow it
        declared = store.sites
        existing = {declared[s.name].chunk_rows for s in chosen if s.name in declared}
        if len(existing) > 1:
            raise ParameterError(
                "chunk_rows",
                f"the chosen sites were written in chunks of {sorted(existing)} rows: extract "
                "them apart, or give --chunk-rows (with --overwrite)",
            )
        chunk_rows = next(iter(existing), None)
    for i in order:
        spec = chosen[i]
        writers[i] = store.create_site(
            spec.name,
            table=extractor.table,
            n_units=spec.n_units,
            dtype=options.dtype,
            chunk_rows=chunk_rows,
            provenance={**common, **spec.provenance},
            overwrite=options.overwrite,
            covers=covers,
            unit_shape=spec.unit_shape,
            shard=options.shard_index,
        )
        chunk_rows = writers[i].chunk_rows
    return [writers[i] for i in range(len(chosen))]


def wanted_rows(
    store: actstore.Store, extractor: Extractor, options: ExtractOptions
) -> list[tuple[int, int]]:
    """The row ranges ``options.where`` asks for: the whole sentences holding a matching
    row where the table has sentences (a word's activations depend on its sentence).

    Examples
    --------
    >>> class Words(Extractor):
    ...     def sites(self):
    ...         return []
    ...     def compute(self, batch):
    ...         raise NotImplementedError
    >>> options = ExtractOptions(where="sentence_id IN (2, 3, 9) AND position = 1")
    >>> wanted_rows(store, Words(), options)
    [(26, 56), (169, 178)]
    """
    where = options.where or ""
    table = quote_ident(extractor.table)
    if "sentence_id" in store.schema(extractor.table).names:
        spans = store.sql(
            f"SELECT min(row) AS lo, max(row) + 1 AS hi FROM {table} WHERE sentence_id IN "
            f"(SELECT sentence_id FROM {table} WHERE ({condition(where, 'where')})) "
            "GROUP BY sentence_id",
            arrow=True,
        )
        lo, hi = (spans.column(c).to_pylist() for c in ("lo", "hi"))
        ranges = coverage.merge(zip(lo, hi, strict=True))
    else:
        ranges = coverage.runs(store.rows(where, table=extractor.table))
    if not ranges:
        raise ParameterError("where", f"{where!r} matches no row of table {extractor.table}")
    return ranges


def _check_block(extractor: Extractor, block: Block, lo: int, hi: int, n_sites: int) -> None:
    """Rows outside the chunk would sit in another chunk's buffer (maybe another
    shard's) for the rest of the run: refuse them."""
    rows = block.rows
    if len(rows) and (int(rows.min()) < lo or int(rows.max()) >= hi):
        raise ActStoreError(
            f"extractor {extractor.name} returned rows {int(rows.min())}..{int(rows.max())} "
            f"for the chunk of rows {lo}..{hi - 1}"
        )
    if len(block.values) != n_sites:
        raise ActStoreError(
            f"extractor {extractor.name} returned {len(block.values)} value arrays "
            f"for {n_sites} sites"
        )

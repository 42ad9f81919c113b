"""The ``actstore`` command line.

Every verb has ``--help`` with an example. User mistakes end in one line on stderr,
``actstore: error: ...``, and exit status 2; no traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

import actstore
from actstore.cli_analyses import (
    ANALYSIS_COMMANDS,
    add_analysis_verbs,
    demo_analyses,
    output_options,
)
from actstore.data import DEFAULT_CORPUS, corpus_path
from actstore.errors import ActStoreError
from actstore.output import emit, render

log = logging.getLogger("actstore")


def _parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="actstore",
        description="Activation store and query engine: ingest annotated corpora, "
        "store activations, query them with SQL.",
    )
    top.add_argument("--version", action="version", version=f"actstore {actstore.__version__}")
    top.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    verbs = top.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, help: str, example: str) -> argparse.ArgumentParser:
        return verbs.add_parser(
            name,
            help=help,
            description=help,
            epilog=f"example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    p = verb(
        "ingest",
        "add CoNLL-U files to a store (created if missing)",
        "actstore ingest ../shared/data/ud/en_ewt/en_ewt-ud-dev.conllu --store ewt.actstore",
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.add_argument("--store", required=True, type=Path, help="store directory")
    p.add_argument("--corpus", help="corpus label (default: from the UD file name)")
    p.add_argument("--lang", help="language code (default: from the UD file name)")
    p.add_argument("--split", help="split label (default: from the UD file name)")

    p = verb(
        "sql",
        "run a read-only SQL query over a store's tables",
        'actstore sql ewt.actstore "SELECT upos, count(*) AS n FROM tokens GROUP BY upos"',
    )
    p.add_argument("store", type=Path)
    p.add_argument("query")
    output_options(p)

    p = verb(
        "extract",
        "run a transformer over the store's sentences and store word-aligned hidden states",
        'actstore extract ewt.actstore --model minilm --sites "layer.*" --align mean',
    )
    p.add_argument("store", type=Path)
    p.add_argument("--model", default="minilm", help="minilm, smollm2, an HF folder or a .gguf")
    p.add_argument("--sites", default="*", help="glob over site names, e.g. 'layer.*' (all)")
    p.add_argument(
        "--align", default="mean", choices=("mean", "first", "last"), help="pieces -> word"
    )
    p.add_argument("--dtype", default="float16", choices=("float16", "bfloat16", "float32"))
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument("--batch-tokens", type=int, help="padded tokens per batch (default by device)")
    p.add_argument("--shard", default="0/1", help="I/N: this process does shard I of N")
    p.add_argument("--max-length", type=int, help="window length (default: the model's limit)")
    p.add_argument("--chunk-rows", type=int, help="rows per chunk (default: about 8 MiB)")
    p.add_argument("--overwrite", action="store_true", help="replace sites made differently")

    add_analysis_verbs(verb)

    p = verb(
        "info", "describe a store: tables, sites, sources, bytes", "actstore info ewt.actstore"
    )
    p.add_argument("store", type=Path)
    p.add_argument("--json", action="store_true", help="print the full description as JSON")

    p = verb(
        "demo",
        "the main job: ingest, extract, summarise with SQL, probe and correlate",
        "actstore demo --corpus ../shared/data/ud/en_ewt/en_ewt-ud-dev.conllu",
    )
    p.add_argument("--corpus", type=Path, help="CoNLL-U file (default: UD English-EWT dev)")
    p.add_argument(
        "--store", type=Path, default=Path("runs/demo.actstore"), help="store to (re)build"
    )
    p.add_argument("--model", default="minilm", help="model to extract (default: minilm)")
    return top


def cmd_ingest(args: argparse.Namespace) -> None:
    store_path: Path = args.store
    fresh = not (store_path / "manifest.json").is_file()
    store = actstore.create(store_path) if fresh else actstore.open(store_path, mode="a")
    try:
        with store:
            records = actstore.ingest_conllu(
                store, args.files, corpus=args.corpus, lang=args.lang, split=args.split
            )
    except ActStoreError:
        if fresh:  # leave no empty store behind for a failed first ingest
            shutil.rmtree(store_path, ignore_errors=True)
        raise
    for r in records:
        print(
            f"ingested {r['path']}: {r['n_sentences']:,} sentences, {r['n_words']:,} words "
            f"(rows {r['first_row']:,}..{r['first_row'] + r['n_words'] - 1:,})"
        )
    print(
        f"{store.path}: {store.n_rows('tokens'):,} tokens, {store.n_rows('sentences'):,} sentences"
    )


def cmd_extract(args: argparse.Namespace) -> None:
    from extractors.transformer import ExtractOptions, extract, parse_shard

    options = ExtractOptions(
        model=args.model,
        sites=args.sites,
        align=args.align,
        dtype=args.dtype,
        device=args.device,
        batch_tokens=args.batch_tokens,
        shard=parse_shard(args.shard),
        overwrite=args.overwrite,
        max_length=args.max_length,
        chunk_rows=args.chunk_rows,
    )
    report = extract(args.store, options)
    print(
        f"extracted {len(report.sites)} sites ({report.sites[0]} .. {report.sites[-1]}) "
        f"over {report.rows:,} rows, {report.pieces:,} model tokens, {report.chunks_done} chunks "
        f"on {report.device} in {report.seconds:.1f} s; "
        f"{report.n_windowed} sentences needed windows"
    )


def cmd_sql(args: argparse.Namespace) -> None:
    with actstore.open(args.store) as store:
        emit(render(store.sql(args.query), args.format), args.output)


def cmd_info(args: argparse.Namespace) -> None:
    with actstore.open(args.store) as store:
        info = store.info()
    if args.json:
        print(json.dumps(info, indent=1))
        return
    print(
        f"store {info['path']} (format {info['format_version']}, "
        f"actstore {info['actstore_version']})"
    )
    print(f"  created {info['created']}, updated {info['updated']}")
    sizes = info["bytes"]
    print(
        f"  bytes on disk: {_size(sizes['total'])} (tables {_size(sizes['tables'])}, "
        f"arrays {_size(sizes['arrays'])}, results {_size(sizes['results'])})"
    )
    print("tables:")
    for name, t in info["tables"].items():
        print(f"  {name:<12} {t['n_rows']:>12,} rows  {t['n_parts']} part(s)")
    print("sites:" if info["sites"] else "sites: none")
    for name, s in info["sites"].items():
        keys = ("model", "hidden_state", "align", "dtype", "compute")
        prov = ", ".join(f"{k}={s['provenance'][k]}" for k in keys if k in s["provenance"])
        print(
            f"  {name:<24} {s['table']} {s['shape'][0]:,}x{s['shape'][1]} {s['dtype']} "
            f"{s['status']} ({s['chunks_done']} chunks) {_size(s['bytes'])}  {prov}"
        )
    print("sources:" if info["sources"] else "sources: none")
    for src in info["sources"]:
        print(
            f"  {src['path']}  corpus={src['corpus']} lang={src['lang']} split={src['split']} "
            f"{src['n_sentences']:,} sentences {src['n_words']:,} words sha256={src['sha256'][:12]}"
        )


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{n} B"


DEMO_QUERIES: list[tuple[str, str]] = [
    (
        "words by UPOS",
        "SELECT upos, count(*) AS n, round(100.0 * count(*) / sum(count(*)) OVER (), 2) AS pct "
        "FROM tokens GROUP BY upos ORDER BY n DESC",
    ),
    (
        "tree depth distribution (root = 1)",
        "SELECT depth, count(*) AS n, round(avg(sentence_length), 1) AS mean_sentence_length "
        "FROM tokens GROUP BY depth ORDER BY depth",
    ),
    (
        "mean depth by UPOS",
        "SELECT upos, round(avg(depth), 2) AS mean_depth, count(*) AS n FROM tokens "
        "GROUP BY upos HAVING count(*) >= 100 ORDER BY mean_depth",
    ),
    (
        "sentence lengths",
        "SELECT count(*) AS sentences, min(n_words) AS min, median(n_words) AS median, "
        "round(avg(n_words), 2) AS mean, max(n_words) AS max, "
        "sum(n_tokens)::BIGINT AS surface_tokens FROM sentences",
    ),
    (
        "model pieces per word (alignment; 6 = six or more)",
        "SELECT least(n_pieces, 6) AS pieces, count(*) AS words, "
        "count(*) FILTER (in_mwt) AS in_multiword_token, count(*) FILTER (windowed) AS windowed "
        "FROM align_{model} GROUP BY ALL ORDER BY pieces",
    ),
]


def cmd_demo(args: argparse.Namespace) -> None:
    from extractors.transformer import ExtractOptions, extract

    corpus = args.corpus or corpus_path(*DEFAULT_CORPUS)
    started = time.perf_counter()
    args.store.parent.mkdir(parents=True, exist_ok=True)
    with actstore.create(args.store, overwrite=True) as store:
        actstore.ingest_conllu(store, [corpus])
    print(f"== ingested {corpus} in {time.perf_counter() - started:.2f} s")
    report = extract(args.store, ExtractOptions(model=args.model))
    print(
        f"== extracted {args.model}: {len(report.sites)} sites over {report.rows:,} words "
        f"({report.pieces:,} model tokens) on {report.device} in {report.seconds:.1f} s\n"
    )
    with actstore.open(args.store) as store:
        sites = pd.DataFrame(
            [
                {
                    "site": s.name,
                    "rows": s.n_rows,
                    "units": s.n_units,
                    "dtype": s.dtype,
                    "status": s.status,
                    "MiB": round(info["bytes"] / 2**20, 1),
                }
                for s, info in zip(
                    store.sites.values(), store.info()["sites"].values(), strict=True
                )
            ]
        )
        print(f"== store {store.path}: sites\n{render(sites, 'table')}")
        for title, query in DEMO_QUERIES:
            query = query.format(model=args.model)
            print(f"== {title}\n{query}")
            print(render(store.sql(query), "table"))
    with actstore.open(args.store, mode="a") as store:
        demo_analyses(store, args.store.parent / "plots")


COMMANDS = {
    **ANALYSIS_COMMANDS,
    "extract": cmd_extract,
    "ingest": cmd_ingest,
    "sql": cmd_sql,
    "info": cmd_info,
    "demo": cmd_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    try:
        COMMANDS[args.verb](args)
    except ActStoreError as exc:
        print(f"actstore: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())

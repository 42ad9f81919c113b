"""The recurrent papers' analyses end to end, from raw UD files to the tables in
docs/RECURRENT.md ("The papers' analyses, end to end").

Part 1 (the LSTM probing paper): train the word-level LSTM language model on EWT train,
extract every component of its layer (h, c, i, f, g, o) over EWT dev, and report per
component: UPOS, Case and Number probe accuracy beside the majority baseline, the unit
most correlated with tree depth, and the sentence-level depth dynamics.

Part 2 (the GRU analysis, Figure 1): train IMAGINET's VISUAL pathway on the synthetic
image task of docs/RECURRENT.md, extract its gates over EWT dev, and report mean dred
and zmean per UPOS and per deprel.

Run from the repository root (about 5 minutes on 2 CPU cores with the defaults)::

    .venv/bin/python docs/examples/gates_end_to_end.py runs/gates

``--sentences N`` trains on the first N sentences only and ``--epochs`` sets both
trainings' epochs (the slow test runs a small version).
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

import actstore
from actstore.data import corpus_path
from actstore.verbs import verb

COMPONENTS = ("h", "c", "i", "f", "g", "o")
DEV = "split = 'dev'"


def build_store(folder: Path, sentences: int | None) -> Path:
    """EWT train (or its first ``sentences``) and dev in one store, made once."""
    path = folder / "ewt.actstore"
    if not (path / "manifest.json").is_file():
        with actstore.create(path) as store:
            subset = None if sentences is None else (0, sentences)
            actstore.ingest_conllu(store, [corpus_path("en_ewt", "train")], sentences=subset)
            actstore.ingest_conllu(store, [corpus_path("en_ewt", "dev")])
    return path


def lstm_tables(path: Path, folder: Path, epochs: int) -> dict[str, pd.DataFrame]:
    """Part 1: probes, correlations and dynamics per LSTM component over EWT dev."""
    common = {"store": path, "quiet": True}
    verb("train")(architecture="lstm-lm", **common, out=folder / "lm", epochs=epochs, threads=1)
    verb("extract")(**common, model=str(folder / "lm"), sites="layer.*", where=DEV)
    sites = "lm/layer.0.*"
    probes = []
    for target, where in (("upos", DEV), ("Case", DEV), ("Number", DEV)):
        table = verb("probe")(**common, sites=sites, target=target, where=where, epochs=5)
        wide = table.pivot_table(index="site", columns="metric", values="value", sort=False)
        probes.append(wide[["accuracy", "majority"]].add_prefix(f"{target} "))
    correlations = verb("correlate")(**common, sites=sites, covariate="depth", where=DEV, top=1)
    pearson = correlations[correlations.metric == "pearson"]
    pearson = pearson.loc[pearson["value"].abs().groupby(pearson["site"]).idxmax()]
    pearson = pearson.set_index("site")
    dynamics = verb("dynamics")(**common, sites=sites, covariate="depth", where=DEV)
    probe_table = pd.concat(probes, axis=1)
    probe_table["depth: strongest unit r"] = pearson["value"]
    probe_table["depth: unit"] = pearson["unit"].astype("Int64")
    probe_table["dynamics mean r"] = dynamics.set_index("site")["value"]
    probe_table.index = [name.rsplit(".", 1)[-1] for name in probe_table.index]
    return {"lstm": probe_table.loc[[c for c in COMPONENTS if c in probe_table.index]]}


def synthetic_images(path: Path, out: Path) -> Path:
    """Each sentence's image vector: a fixed linear map of its bag of words (every word
    seen twice in training turns on about 3 of 32 units), as in docs/RECURRENT.md."""
    with actstore.open(path) as store:
        words = store.sql("SELECT sentence_id, lower(form) AS word, split FROM tokens ORDER BY row")
    counts = collections.Counter(words.word[words.split == "train"])
    index = {w: i for i, w in enumerate(sorted(w for w, n in counts.items() if n >= 2))}
    mapping = (np.random.default_rng(0).random((32, len(index))) < 3 / 32) * np.float32(0.3)
    bags: dict[int, np.ndarray] = collections.defaultdict(lambda: np.zeros(len(index), np.float32))
    for sentence, word in zip(words.sentence_id, words.word, strict=True):
        bag = bags[int(sentence)]
        if word in index:
            bag[index[word]] += 1
    ids = sorted(bags)
    vectors = [(mapping @ bags[i]).tolist() for i in ids]
    pq.write_table(pa.table({"sentence_id": ids, "vector": vectors}), out)
    return out


def imaginet_tables(path: Path, folder: Path, epochs: int) -> dict[str, pd.DataFrame]:
    """Part 2: mean dred and zmean of the VISUAL pathway per UPOS and deprel."""
    images = synthetic_images(path, folder / "images.parquet")
    short = "n_words <= 20"
    verb("train")(
        architecture="imaginet", store=path, out=folder / "visual", images=images, alpha=0.0,
        embedding_dim=128, hidden_size=128, lr=0.003, epochs=epochs, threads=1, where=short,
        dev_where=f"{DEV} AND {short}", quiet=True,
    )  # fmt: skip
    verb("extract")(
        store=path, model=str(folder / "visual"), sites="visual.*", where=DEV, quiet=True
    )
    out = {}
    for column in ("upos", "deprel"):
        table = verb("measures")(
            store=path, sites="visual.layer.0.h", by=(column,), min_count=200, where=DEV,
            quiet=True,
        )  # fmt: skip
        wide = table.pivot_table(index="category", columns="metric", values="value")
        counts = table.groupby("category")["n"].first()
        out[f"imaginet by {column}"] = wide.join(counts).sort_values("dred", ascending=False)
    return out


def markdown(frame: pd.DataFrame) -> str:
    """``frame`` as a Markdown table, its index as the first column."""
    header = [str(frame.index.name or ""), *map(str, frame.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, row in frame.iterrows():
        lines.append("| " + " | ".join([str(name), *map(str, row.tolist())]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="where the store, models and tables go")
    parser.add_argument("--sentences", type=int, default=None, help="train sentences used")
    parser.add_argument("--epochs", type=int, default=5, help="epochs of each training")
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    path = build_store(args.folder, args.sentences)
    tables = {**lstm_tables(path, args.folder, args.epochs)}
    tables.update(imaginet_tables(path, args.folder, args.epochs))
    for name, table in tables.items():
        text = markdown(table.round(3))
        (args.folder / f"{name.replace(' ', '_')}.md").write_text(text + "\n", encoding="utf-8")
        print(f"## {name}\n\n{text}\n")


if __name__ == "__main__":
    main()

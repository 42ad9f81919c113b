"""MiniLM's layers against GloVe over EWT lemmas, end to end: RSA and the 2 vs 2 test per
layer, with permutation p (the table in docs/ANALYSES.md, "Representational similarity:
a real run").

1. Ingest UD English-EWT train, extract MiniLM-L6's seven word-level sites.
2. Ingest GloVe 6B 50d (``actstore ingest STORE vectors --glove``).
3. Conditions: lower-cased lemmas seen ``--min-count`` times or more (20) that GloVe has;
   a condition's vector is the mean of its words' activations at a layer, GloVe's the
   word's vector.
4. Per layer: RSA (Spearman r between the RDMs, 1 - Pearson r, 1,000 permutations) and the
   2 vs 2 test (``--permutations2`` permutations, 200) against GloVe; and the layer x
   layer RSA. Tables written as Markdown into FOLDER.

Run from the repository root (about 15 minutes on 2 shared CPU cores)::

    .venv/bin/python docs/examples/rsa_end_to_end.py runs/rsa

``--sentences N`` takes the first N sentences of EWT train only (the test runs a small
version).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

import actstore
from actstore.data import corpus_path
from actstore.verbs import verb


def markdown(frame: pd.DataFrame) -> str:
    """A pipe table."""
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--sentences", type=int, default=None)
    parser.add_argument("--min-count", type=int, default=20)
    parser.add_argument("--permutations2", type=int, default=200)
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    store = args.folder / "ewt.actstore"
    if not (store / "manifest.json").is_file():
        with actstore.create(store) as new:
            subset = None if args.sentences is None else (0, args.sentences)
            actstore.ingest_conllu(new, [corpus_path("en_ewt", "train")], sentences=subset)
    verb("extract")(store=store, model="minilm", sites="layer.*", quiet=True)
    verb("ingest")(store=store, files=(Path("vectors"),), glove=True)
    common = {"store": store, "quiet": True, "by": "lower(lemma)", "min_count": args.min_count}
    versus = {**common, "sites": "minilm/layer.*", "against": "glove/vectors", "against_by": "word"}
    rsa = verb("rsa")(**versus, permutations=1000, seed=0, save="rsa_glove")
    two = verb("rsa")(**versus, test="2v2", permutations=args.permutations2, seed=0)
    layers = verb("rsa")(**common, sites="minilm/layer.*", permutations=0)

    table = pd.DataFrame(
        {
            "layer": rsa["site_a"].str.removeprefix("minilm/"),
            "RSA (Spearman r)": rsa["value"].round(3),
            "RSA p": rsa["p"].round(4),
            "2 vs 2 accuracy": two["accuracy"].round(3).to_numpy(),
            "2 vs 2 p": two["p"].round(4).to_numpy(),
            "concepts": rsa["n_conditions"],
        }
    )
    (args.folder / "glove.md").write_text(markdown(table))
    wide = layers.pivot_table(index="site_a", columns="site_b", values="value", sort=False)
    names = list(dict.fromkeys(layers["site_a"]))
    wide = wide.reindex(index=names, columns=names).round(3)
    wide.columns = [c.removeprefix("minilm/") for c in wide.columns]
    wide.index = [c.removeprefix("minilm/") for c in wide.index]
    (args.folder / "layers.md").write_text(markdown(wide.reset_index(names="layer")))
    print(table.to_string(index=False))
    print(wide.to_string())


if __name__ == "__main__":
    main()

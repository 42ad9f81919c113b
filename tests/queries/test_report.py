"""``actstore report``: the page's numbers against the store and the corpus read
independently, its embedded figures and CSV files, warnings, escaping, size budget, the
command line; and the page in a real browser (Debian's chromium through Playwright)."""

from __future__ import annotations

import base64
import gzip
import html
import io
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import conllu
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

import actstore
from actstore.verbs import verb
from queries.report import report_html
from queries.report_results import Budget

ANALYSED = ("upos_probe", "depth_r", "depth_dynamics", "rsa_layers")


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory, toy_store: Path) -> Path:
    """The toy store (EWT dev, 1,000 sentences, two sites) with a probe (and control
    task), unit correlations, dynamics and RSA saved, each through its verb."""
    path = tmp_path_factory.mktemp("report") / "toy.actstore"
    shutil.copytree(toy_store, path)
    common = {"store": path, "sites": "toy/*", "quiet": True}
    verb("probe")(**common, target="upos", control=True, epochs=3.0, device="cpu",
                  save="upos_probe")  # fmt: skip
    verb("correlate")(**common, covariate="depth", save="depth_r")
    verb("dynamics")(**common, covariate="depth", save="depth_dynamics")
    verb("rsa")(**common, by="upos", min_count=20, permutations=19, save="rsa_layers")
    return path


class Page(HTMLParser):
    """What the tests read off a page: images, CSV links, text, table cells by id."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.images: list[dict[str, str | None]] = []
        self.csv: dict[str, str] = {}
        self.text: list[str] = []
        self.skip = 0
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.skip += tag in ("style", "script")
        if tag not in ("code", "span", "a", "strong", "small", "em", "b"):
            self.text.append(" ")  # a new cell or block: words apart
        found = dict(attrs)
        if tag == "img":
            self.images.append(found)
        if tag == "a" and found.get("data-csv"):
            self.csv[str(found["download"])] = str(found["data-csv"])

    def handle_endtag(self, tag: str) -> None:
        self.skip -= tag in ("style", "script")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.text.append(data)

    @property
    def words(self) -> str:
        return " ".join("".join(self.text).split())


@pytest.fixture(scope="module")
def page(analysed: Path) -> str:
    with actstore.open(analysed) as store:
        return report_html(store)


def unpack(payload: str) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(gzip.decompress(base64.b64decode(payload))))


def parquet(store_path: Path, name: str) -> pd.DataFrame:
    """A result table read straight from its Parquet files, not through actstore."""
    parts = sorted((store_path / "results" / name).glob("*.parquet"))
    assert parts, f"no parts of {name}"
    return pd.concat([pq.read_table(p).to_pandas() for p in parts], ignore_index=True)


def test_corpus_counts_match_the_conllu_file(page: str, ewt_slice: Path) -> None:
    source = next(ewt_slice.parent.glob("*.conllu"))
    words = [
        t
        for sentence in conllu.parse(source.read_text(encoding="utf-8"))
        for t in sentence
        if isinstance(t["id"], int)
    ]
    upos = pd.Series([t["upos"] for t in words]).value_counts()
    number = pd.Series([(t["feats"] or {}).get("Number") for t in words]).dropna()
    text = Page(page).words
    for tag in ("NOUN", "VERB", "PUNCT"):
        share = 100 * upos[tag] / len(words)
        assert f"{tag} {upos[tag]:,} {share:.2f}" in text
    sing = 100 * (number == "Sing").mean()
    assert f"Number {len(number):,} {100 * len(number) / len(words):.1f}" in text
    assert f"Sing {sing:.0f}%" in text
    assert f"en_ewt en dev original 1,000 {len(words):,}" in text


def test_sites_and_results_are_all_there(page: str, analysed: Path) -> None:
    text = Page(page).words
    assert "Sites (2)" in text and "Results (" in text
    for name in ("toy/layer.0", "toy/layer.3"):
        assert name in text
    with actstore.open(analysed) as store:
        for name in store.results:
            assert f'id="result-{name.replace("_", "-")}"' in page, name
    assert "Every chunk and table part was checked" in text


def test_probe_accuracy_in_the_page_is_the_saved_one(page: str, analysed: Path) -> None:
    """One row per site, its metrics across: accuracy first, as the probe saved it."""
    probe = parquet(analysed, "upos_probe")
    for site in ("toy/layer.0", "toy/layer.3"):
        mine = probe[probe["site"] == site].set_index("metric")["value"]
        shown = "".join(f"<td>{mine[m]:.4g}</td>" for m in ("accuracy", "macro_f1", "majority"))
        assert f"<td>{site}</td><td>upos</td><td>0</td>{shown}" in page


def test_every_result_table_is_in_the_page_as_csv(page: str, analysed: Path) -> None:
    found = Page(page).csv
    for name in ANALYSED:
        embedded = unpack(found[f"{name}.csv"])
        saved = parquet(analysed, name)
        for column in saved.columns:  # CSV writes NULL and "" alike
            if not pd.api.types.is_numeric_dtype(saved[column]):
                saved[column] = saved[column].astype(object).fillna("").astype(str)
                embedded[column] = embedded[column].astype(object).fillna("").astype(str)
        pd.testing.assert_frame_equal(
            embedded, saved, check_dtype=False, check_exact=False, rtol=1e-12
        )


def test_figures_are_png_one_per_result_that_draws(page: str) -> None:
    images = Page(page).images
    # probe, correlations, dynamics, the RSA matrix and the two sites' RDMs
    assert len(images) == 6
    for image in images:
        src = str(image["src"])
        assert src.startswith("data:image/png;base64,")
        decoded = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        assert decoded.format == "PNG"
        assert (decoded.width, decoded.height) == (
            int(str(image["width"])),
            int(str(image["height"])),
        )
        assert image["alt"]


def test_top_correlations_are_the_largest(page: str, analysed: Path) -> None:
    table = parquet(analysed, "depth_r")
    largest = table.loc[table["value"].abs().idxmax()]
    assert f"20 of {len(table):,} rows, the largest |value| first" in Page(page).words
    first = page.index("the largest |value| first")
    assert f"<td>{largest['value']:.4g}</td>" in page[first : first + 2000]


def test_warnings(analysed: Path, tmp_path: Path) -> None:
    """A probe below its majority baseline, a result whose site is gone, and a chunk
    file missing (verify)."""
    from actstore.chunks import chunk_file
    from queries.results import TidyResult, provenance
    from queries.scores import PROBE

    path = tmp_path / "damaged.actstore"
    shutil.copytree(analysed, path)
    with actstore.open(path, mode="a") as store:
        made = provenance(store, "probe", ["toy/layer.3"], {"target": "upos"})
        rows = [{"site": "toy/layer.3", "target": "upos", "word_offset": 0, "metric": m,
                 "label": "", "value": v, "n": 100, "n_train": 900, "n_classes": 17,
                 "scoring": "feature", "seed": 0, "warning": w}
                for m, v, w in [("accuracy", 0.3, "not above the majority baseline (0.400)"),
                                ("majority", 0.4, "")]]  # fmt: skip
        TidyResult(PROBE, PROBE.frame(rows), made).save(store, "weak_probe")
        store.delete_site("toy/layer.0")
        chunk_file(path / store.site("toy/layer.3").path, 0).unlink()
    with actstore.open(path) as store:
        text = Page(report_html(store)).words
    assert "weak_probe: toy/layer.3, upos at w+0: not above the majority baseline (0.400)" in text
    assert "result upos_probe was made from site toy/layer.0, which is gone" in text
    assert "verify: site toy/layer.3, chunk 0: chunk 0" in text
    assert "is missing" in text
    with actstore.open(path) as store:
        text = Page(report_html(store, verify=False)).words
    assert "verify:" not in text and "were not checked (--no-verify)" in text


def test_text_from_the_store_is_escaped(analysed: Path, tmp_path: Path) -> None:
    path = tmp_path / "hostile.actstore"
    shutil.copytree(analysed, path)
    hostile = "form = '<script>alert(1)</script>' OR form <> ''"
    verb("correlate")(store=path, sites="toy/layer.0", covariate="depth", where=hostile,
                      quiet=True, save="hostile")  # fmt: skip
    with actstore.open(path) as store:
        page = report_html(store, verify=False)
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_budget_leaves_out_figures_and_csv_with_a_way_to_get_them(analysed: Path) -> None:
    with actstore.open(analysed) as store:
        page = report_html(store, verify=False, budget=Budget(total_figure_bytes=1,
                                                             total_csv_bytes=1))  # fmt: skip
    found = Page(page)
    assert not found.images and not found.csv
    assert "Figure left out" in found.words
    assert """actstore sql STORE "SELECT * FROM \"depth_r\"" --format csv""" in found.words


def test_cli_writes_the_page_and_refuses_bad_input(analysed: Path, tmp_path: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "actstore.cli", "report", *args],
                              capture_output=True, text=True, check=False)  # fmt: skip

    out = tmp_path / "r" / "report.html"
    done = cli(str(analysed), "-o", str(out), "--no-verify", "--top-rows", "5")
    assert done.returncode == 0, done.stderr
    assert f"wrote report {out}" in done.stderr
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    for args, words in [
        ((str(analysed), "-o", str(analysed / "x.html")), "inside the store"),
        ((str(analysed), "-o", str(tmp_path / "x.txt")), "name it .html"),
        ((str(analysed), "-o", str(out), "--neurons", "toy/layer.0"), "expected SITE:UNIT"),
        ((str(tmp_path / "none.actstore"), "-o", str(out)), "none.actstore"),
        ((str(analysed), "-o", str(out), "--top-rows", "0"), "at least 1"),
        ((str(analysed), "-o", str(out), "--neurons", "toy/none:1"), "toy/none"),
        ((str(analysed), "-o", str(out), "--neurons", "toy/layer.0:384"), "outside 0..383"),
        ((str(analysed), "-o", str(out), "--sentences", "nonsense((("), "nonsense((("),
    ]:
        refused = cli(*args)
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.startswith("actstore: error: ")
        assert refused.stderr.count("\n") == 1 and words in refused.stderr, refused.stderr


def browser() -> str:
    """Debian's chromium, or skip naming what is missing (``.ci/run`` installs it)."""
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("no chromium on PATH: apt-get install chromium (.ci/run tries to)")
    return found


CHROMIUM_FLAGS = [  # headless in a sandbox-less container, with no network to reach
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def open_in_browser(page_file: Path, screenshot: Path, visit: Any = None) -> dict[str, Any]:
    """Load the page from a file:// URL in headless chromium; what the tests check of it:
    console errors, requests for anything but the page itself and data: URIs, images
    that did not load, the visible text; ``visit(page)`` does more while it is open."""
    from playwright.sync_api import sync_playwright

    seen: dict[str, Any] = {"errors": [], "requests": []}
    with sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=browser(), args=CHROMIUM_FLAGS)
        try:
            page = chromium.new_page(
                viewport={"width": 1280, "height": 1000}, accept_downloads=True
            )
            page.on(
                "console", lambda m: seen["errors"].append(m.text) if m.type == "error" else None
            )
            page.on("pageerror", lambda e: seen["errors"].append(str(e)))
            page.on("request", lambda r: seen["requests"].append(r.url))
            page.goto(page_file.resolve().as_uri(), wait_until="load")
            seen["images"] = page.evaluate("document.images.length")
            seen["broken"] = page.evaluate(
                "[...document.images].filter(i => !i.complete || i.naturalWidth === 0).length"
            )
            seen["load_ms"] = page.evaluate(
                "performance.getEntriesByType('navigation')[0].loadEventEnd"
            )
            seen["text"] = " ".join(page.inner_text("body").split())
            page.screenshot(path=str(screenshot), full_page=True)
            if visit is not None:
                visit(page, seen)
        finally:
            chromium.close()
    seen["requests"] = [u for u in seen["requests"] if not u.startswith(("file:", "data:"))]
    return seen


def test_the_page_in_a_real_browser(analysed: Path, tmp_path: Path) -> None:
    """Every figure loads, nothing is fetched, no console error; the probe's accuracy
    and the site count are on screen; a header click sorts; the CSV link downloads the
    saved table."""
    browser()
    out = tmp_path / "report.html"
    verb("report")(store=analysed, output=out)
    probe = parquet(analysed, "upos_probe")
    accuracy = probe[(probe["metric"] == "accuracy") & (probe["site"] == "toy/layer.3")]
    saved = parquet(analysed, "depth_r")

    def visit(page: Any, seen: dict[str, Any]) -> None:
        article = page.locator("#result-depth-r")
        article.locator("th button", has_text="value").click()
        seen["sorted"] = article.locator("tbody tr td:nth-child(5)").all_inner_texts()
        with page.expect_download() as download:
            article.locator("a[data-csv]").click()
        seen["csv"] = pd.read_csv(download.value.path())

    seen = open_in_browser(out, tmp_path / "report.png", visit)
    assert seen["errors"] == [] and seen["requests"] == []
    assert seen["images"] == 6 and seen["broken"] == 0
    assert "Sites (2)" in seen["text"] and f"{accuracy['value'].iloc[0]:.4g}" in seen["text"]
    shown = [float(v) for v in seen["sorted"]]
    assert shown == sorted(shown) and len(shown) == 20
    assert len(seen["csv"]) == len(saved)
    np.testing.assert_allclose(seen["csv"]["value"], saved["value"], rtol=1e-12)
    with Image.open(tmp_path / "report.png") as screenshot:
        assert screenshot.height > 3000  # the whole page was drawn


@pytest.mark.slow
def test_the_demo_report_in_a_real_browser(tmp_path: Path) -> None:
    """The main job on its default corpus (UD English-EWT dev), then its page in chromium."""
    browser()
    done = subprocess.run([sys.executable, "-m", "actstore.cli", "demo",
                           str(tmp_path / "demo.actstore")],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    page = tmp_path / "report.html"
    assert f"{page} (open it in a browser)" in done.stdout
    seen = open_in_browser(page, tmp_path / "demo.png")
    assert seen["errors"] == [] and seen["requests"] == [] and seen["broken"] == 0
    assert seen["images"] == 20  # probe, correlations, dynamics, 2 RSA, 15 RDMs
    probe = parquet(tmp_path / "demo.actstore", "demo_probe_upos")
    for site in (f"minilm/layer.{i}" for i in range(7)):
        row = probe[(probe["metric"] == "accuracy") & (probe["site"] == site)]
        assert f"{site} upos 0 {row['value'].iloc[0]:.4g}" in seen["text"]
    depth = parquet(tmp_path / "demo.actstore", "demo_correlate_depth")
    pearson = depth[depth["metric"] == "pearson"]
    top = pearson.loc[pearson["value"].abs().idxmax()]
    assert "Sites (8)" in seen["text"] and f"Unit {top['unit']} of {top['site']}" in seen["text"]


def test_neuron_views_beside_their_shuffled_sentences(
    tmp_path: Path, ewt_small: Path, site_writer: Any
) -> None:
    """In a store holding the corpus and its word-shuffled copy, each view of the page
    comes with the same sentences shuffled, and every word shown carries the value of
    its own row."""
    path = tmp_path / "mixed.actstore"
    shutil.copytree(ewt_small, path)
    source = next(ewt_small.parent.glob("*.conllu"))
    with actstore.open(path, mode="a") as store:
        actstore.ingest_conllu(store, [source], corpus="en_ewt", lang="en", split="dev",
                               shuffle_words=3)  # fmt: skip
        depth = store.sql("SELECT depth FROM tokens ORDER BY row")["depth"].to_numpy(float)
        values = np.random.default_rng(0).normal(size=(len(depth), 8)) + depth[:, None]
        stored = site_writer(store, "m/layer.1", values.astype(np.float32))
    verb("correlate")(store=path, sites="m/layer.1", covariate="depth", quiet=True, save="r")
    with actstore.open(path) as store:
        page = report_html(store, verify=False)
    assert "The same sentences (same sent_id) in their other word order" in page
    text = Page(page).words
    assert "en_ewt en dev original 120" in text and "en_ewt en dev shuffled, seed 3 120" in text
    source_words = [t for s in conllu.parse(source.read_text(encoding="utf-8")) for t in s
                    if isinstance(t["id"], int)]  # fmt: skip
    nouns = sum(t["upos"] == "NOUN" for t in source_words)
    assert f"NOUN {nouns:,} {100 * nouns / len(source_words):.2f}" in text
    correlations = parquet(path, "r").query("metric == 'pearson'")
    unit = int(correlations.loc[correlations["value"].abs().idxmax(), "unit"])
    tokens = pd.concat(
        [pq.read_table(p, columns=["row", "form", "sentence_id"]).to_pandas()
         for p in sorted((path / "tables" / "tokens").glob("*.parquet"))]
    )  # fmt: skip
    sentences = pd.concat(
        [pq.read_table(p).to_pandas() for p in sorted((path / "tables" / "sentences").glob("*"))]
    ).set_index("sentence_id")
    labels = dict(re.findall(r"sentence (\d+) \(([^)]+)\)", page))
    shown = [int(i) for i in labels]
    original = [i for i in shown if pd.isna(sentences.loc[i].get("shuffle_seed"))]
    twins = [i for i in shown if i not in original]
    assert len(original) == 4
    assert sorted(labels[str(i)] for i in twins) == sorted(labels[str(i)] for i in original)
    spans = re.findall(r'<span style="[^"]*" title="([^"]+)">([^<]*)</span>', page)
    for i in original + twins:  # every word shown with the value of its own row, in order
        mine = tokens[tokens["sentence_id"] == i]
        pairs = zip(mine["row"], mine["form"], strict=True)
        expected = [(stored[r, unit], html.escape(f)) for r, f in pairs]
        start = next(k for k, (_, w) in enumerate(spans) if w == expected[0][1]
                     and abs(float(spans[k][0]) - expected[0][0]) < 1e-5)  # fmt: skip
        got = spans[start : start + len(expected)]
        assert [w for _, w in got] == [w for _, w in expected]
        np.testing.assert_allclose([float(v) for v, _ in got], [v for v, _ in expected], atol=1e-5)

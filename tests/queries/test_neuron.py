"""Neuron views (``actstore show``): values against the site's Zarr array read directly,
top types against pandas, HTML escaping, SVG and PNG files, the command line."""

from __future__ import annotations

import html
import itertools
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.transforms import Bbox
from PIL import Image

import actstore
from actstore.cli import main
from actstore.data import corpus_path
from actstore.errors import ParameterError, SchemaError, SiteError, SiteNotFoundError
from queries.neuron import NeuronView, neuron_view
from queries.neuron_figure import view_figure
from queries.neuron_render import page_html, view_html, view_text, write_view

SITE = "toy/layer.3"
MARKUP = ("<b>x</b>&", "<script>alert(1)</script>", '"quoted"')


class _Spans(HTMLParser):
    """The (text, title) of every ``<span title=...>`` of a fragment, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []
        self._title: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        title = dict(attrs).get("title")
        if tag == "span" and title is not None:
            self._title = title

    def handle_data(self, data: str) -> None:
        if self._title is not None:
            self.found.append((data, self._title))
            self._title = None


def _spans(fragment: str) -> list[tuple[str, str]]:
    parser = _Spans()
    parser.feed(fragment)
    return parser.found


def _expected(store: actstore.Store, site: str, unit: int, ids: list[int]) -> pd.DataFrame:
    """Rows, words and the unit's values of sentences ``ids`` (in that order), read
    through SQL and the Zarr array directly."""
    words = store.sql(
        "SELECT row, sentence_id, form FROM tokens WHERE list_contains(?, sentence_id)", [ids]
    )
    words["order"] = words["sentence_id"].map({s: k for k, s in enumerate(ids)})
    words = pd.DataFrame(words.sort_values(["order", "row"], ignore_index=True))
    array = zarr.open_array(store.path / store.site(site).path, mode="r")
    words["value"] = np.asarray(array.oindex[words["row"].to_numpy(), unit], np.float32)
    return words


def _flat(view: NeuronView) -> tuple[list[int], list[str], np.ndarray]:
    rows = [r for s in view.sentences for r in s.rows]
    words = [w for s in view.sentences for w in s.words]
    return rows, words, np.array([v for s in view.sentences for v in s.values], np.float32)


def _check_against_zarr(view: NeuronView, expected: pd.DataFrame) -> None:
    rows, words, values = _flat(view)
    assert rows == expected["row"].tolist()
    assert words == expected["form"].tolist()
    np.testing.assert_array_equal(values, expected["value"].to_numpy())
    spans = _spans(view_html(view))
    assert [w for w, _ in spans] == expected["form"].tolist()
    titles = np.array([np.float32(float(t)) for _, t in spans], np.float32)
    np.testing.assert_array_equal(titles, expected["value"].to_numpy())
    assert view.scale == float(np.abs(expected["value"]).max())


def test_sql_filter_values_against_zarr(toy_store: Path) -> None:
    where = "sent_id LIKE 'weblog%' AND n_words BETWEEN 8 AND 20"
    with actstore.open(toy_store) as store:
        view = neuron_view(store, SITE, 7, where, limit=4, top=0)
        found = store.sql(f"SELECT sentence_id FROM sentences WHERE {where} ORDER BY sentence_id")
        ids = found["sentence_id"].tolist()
        _check_against_zarr(view, _expected(store, SITE, 7, ids[:4]))
    assert [s.sentence_id for s in view.sentences] == ids[:4]
    assert view.n_matched == len(ids) and view.percentiles is None and not view.top


def test_sentence_ids_in_the_order_given_and_the_first_sentences(toy_store: Path) -> None:
    with actstore.open(toy_store) as store:
        view = neuron_view(store, "layer.0", 300, [40, 3, 17, 3], top=0)
        assert view.site == "toy/layer.0"
        _check_against_zarr(view, _expected(store, "toy/layer.0", 300, [40, 3, 17]))
        first = neuron_view(store, SITE, 0, None, limit=3, top=0)
        _check_against_zarr(first, _expected(store, SITE, 0, [0, 1, 2]))
        assert first.n_matched == store.n_rows("sentences")


@pytest.mark.parametrize(("by", "unit"), [("form", 11), ("lemma", 250)])
def test_top_types_against_pandas(toy_store: Path, by: str, unit: int) -> None:
    with actstore.open(toy_store) as store:
        view = neuron_view(store, SITE, unit, [5], top=6, by=by, min_count=4)
        frame = store.sql(f"SELECT row, {by} FROM tokens ORDER BY row")
        array = zarr.open_array(store.path / store.site(SITE).path, mode="r")
        x = np.asarray(array[:, unit], np.float64)
    grouped = pd.Series(x).groupby(frame[by].str.lower().to_numpy())
    stats = grouped.agg(["mean", "size"])
    stats = stats[stats["size"] >= 4].sort_values("mean", ascending=False, kind="stable")
    assert view.n_types == len(stats)
    for got, want in ((view.top, stats.iloc[:6]), (view.bottom, stats.iloc[::-1][:6])):
        assert [t.type for t in got] == want.index.tolist()
        assert [t.count for t in got] == want["size"].tolist()
        np.testing.assert_allclose([t.mean for t in got], want["mean"], rtol=1e-9, atol=1e-9)
    assert view.percentiles is not None
    np.testing.assert_allclose(view.percentiles, np.percentile(x, [1, 99]), rtol=1e-6)
    text = view_text(view)
    assert stats.index[0] in text and f"{stats['mean'].iloc[0]:9.3f}" in text


@pytest.fixture(scope="module")
def markup_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten EWT dev sentences and one of forms that are HTML markup; a float32 site of 4
    units over all tokens, one over sentences, one covering the first 50 tokens only."""
    folder = tmp_path_factory.mktemp("markup")
    blocks = corpus_path("en_ewt", "dev").read_text(encoding="utf-8").split("\n\n")[:10]
    lines = ["# sent_id = markup", "# text = " + " ".join(MARKUP)]
    lines += [
        f"{i}\t{form}\t{form}\tX\t_\t_\t{int(i > 1)}\t{'dep' if i > 1 else 'root'}\t_\t_"
        for i, form in enumerate(MARKUP, 1)
    ]
    conllu = folder / "markup.conllu"
    conllu.write_text("\n\n".join([*blocks, "\n".join(lines)]) + "\n\n", encoding="utf-8")
    path = folder / "m.actstore"
    rng = np.random.default_rng(1)
    with actstore.create(path) as store:
        actstore.ingest_conllu(store, [conllu])
        n = store.n_rows("tokens")
        for name, table, rows, covers in (
            ("toy/layer.0", "tokens", n, None),
            ("toy/sentence", "sentences", store.n_rows("sentences"), None),
            ("toy/part", "tokens", 50, [(0, 50)]),
        ):
            writer = store.create_site(name, table=table, n_units=4, dtype="float32", covers=covers)
            writer.write(0, rng.normal(size=(rows, 4)).astype(np.float32))
            writer.commit()
    return path


def test_html_escapes_markup_forms(markup_store: Path) -> None:
    with actstore.open(markup_store) as store:
        view = neuron_view(store, "toy/layer.0", 1, "sent_id = 'markup'", top=999, min_count=1)
    fragment, page = view_html(view), page_html(view)
    assert "<b>" not in fragment and "<script" not in fragment.lower()
    assert "&lt;b&gt;x&lt;/b&gt;&amp;" in fragment and "&quot;quoted&quot;" in fragment
    assert [w for w, _ in _spans(fragment)] == list(MARKUP)
    assert page.startswith("<!DOCTYPE html>") and fragment in page
    assert "<script" not in page.lower() and "http" not in page
    assert {m.lower() for m in MARKUP} <= {t.type for t in view.top}  # every type, ranked
    assert all(f">{html.escape(m.lower())}</span>" in fragment for m in MARKUP)


def _overlaps(boxes: list[Bbox]) -> list[tuple[Bbox, Bbox]]:
    return [(a, b) for a, b in itertools.combinations(boxes, 2) if a.overlaps(b)]


def test_svg_and_png_files_and_no_overlaps(
    toy_store: Path, markup_store: Path, tmp_path: Path
) -> None:
    with actstore.open(toy_store) as store:
        view = neuron_view(store, SITE, 3, "n_words > 25", limit=4, top=8)
    figure = view_figure(view)
    renderer = FigureCanvasAgg(figure).get_renderer()  # type: ignore[no-untyped-call]
    figure.draw(renderer)
    texts = [t.get_window_extent(renderer) for t in figure.texts if t.get_text()]
    assert not _overlaps(texts)
    boxes = [p.get_window_extent(renderer) for p in figure.patches]
    assert len(boxes) == sum(len(s.words) for s in view.sentences)
    assert not [(a, b) for a, b in _overlaps(boxes) if a.width > 0 and b.width > 0]
    write_view(view, tmp_path / "out" / "unit.png")
    write_view(view, tmp_path / "unit.svg")
    with Image.open(tmp_path / "out" / "unit.png") as image:
        image.verify()
        assert image.format == "PNG" and image.size[0] > 1000
    root = ET.parse(tmp_path / "unit.svg").getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    svg_text = "".join(root.itertext())
    assert view.sentences[0].words[0] in svg_text
    with actstore.open(markup_store) as store:
        marked = neuron_view(store, "toy/layer.0", 0, "sent_id = 'markup'", top=0)
    write_view(marked, tmp_path / "markup.svg")
    words = "".join(ET.parse(tmp_path / "markup.svg").getroot().itertext())
    assert all(m in words for m in MARKUP)


def test_refusals(markup_store: Path, tmp_path: Path) -> None:
    with actstore.open(markup_store) as store:
        with pytest.raises(SiteNotFoundError, match=r"no site 'toy/layr.0' \(did you mean toy/l"):
            neuron_view(store, "toy/layr.0", 0, None)
        with pytest.raises(ParameterError, match=r"unit 4 is outside 0..3: site toy/layer.0 has 4"):
            neuron_view(store, "toy/layer.0", 4, None)
        with pytest.raises(SchemaError, match="site toy/sentence is over table sentences"):
            neuron_view(store, "toy/sentence", 0, None)
        with pytest.raises(ParameterError, match=r"filter 'nope > 1' fails: .*nope.*columns of"):
            neuron_view(store, "toy/layer.0", 0, "nope > 1")
        with pytest.raises(ParameterError, match="is not one SQL expression"):
            neuron_view(store, "toy/layer.0", 0, "1=1) OR (1=1")
        with pytest.raises(ParameterError, match="filter 'n_words > 999' matches no sentence"):
            neuron_view(store, "toy/layer.0", 0, "n_words > 999")
        with pytest.raises(ParameterError, match="'sent_id' gives string values, not true or"):
            neuron_view(store, "toy/layer.0", 0, "sent_id")
        with pytest.raises(ParameterError, match="filter 'NULL' matches no sentence"):
            neuron_view(store, "toy/layer.0", 0, "NULL")  # a condition, though never true
        with pytest.raises(ParameterError, match=r"has no sentence 11, 99: ids run 0..10"):
            neuron_view(store, "toy/layer.0", 0, [1, 11, 99])
        with pytest.raises(ParameterError, match="names 3 sentences, more than limit 2"):
            neuron_view(store, "toy/layer.0", 0, [1, 2, 3], limit=2)
        with pytest.raises(
            SiteError, match=r"does not cover sentences 4, 5 \(it covers rows 0..49"
        ):
            neuron_view(store, "toy/part", 0, [0, 4, 5], top=0)
        part = neuron_view(store, "toy/part", 0, [0], top=2, min_count=1)  # types: its rows
        assert part.percentiles is not None and len(part.top) == 2
        with pytest.raises(ParameterError, match=r"output .*x\.pdf: .*\.html or \.htm"):
            write_view(part, tmp_path / "x.pdf")
        with pytest.raises(ParameterError, match="lies inside the store"):
            write_view(part, markup_store / "x.html")


def test_cli_end_to_end(toy_store: Path, tmp_path: Path) -> None:
    page = tmp_path / "unit5.html"
    args = [sys.executable, "-m", "actstore.cli", "show", str(toy_store), "--site", SITE]
    run = subprocess.run(
        [*args, "--unit", "5", "--sentences", "12, 3", "--top", "4", "-o", str(page)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stderr == f"wrote unit 5 of {SITE} over 2 sentences to {page}\n"
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in text
    with actstore.open(toy_store) as store:
        expected = _expected(store, SITE, 5, [12, 3])
    titles = [np.float32(float(t)) for _, t in _spans(text)]
    np.testing.assert_array_equal(titles, expected["value"].to_numpy())
    printed = subprocess.run(
        [*args, "--unit", "5", "--sentences", "n_words = 3", "--limit", "2", "--top", "0"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.splitlines()
    assert lines[0] == f"Unit 5 of {SITE}" and "sentences where n_words = 3 · 2 of" in lines[1]
    assert sum(line.startswith("sentence ") for line in lines) == 2


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--unit", "384"], "--unit 384 is outside 0..383: site toy/layer.3 has 384 units"),
        (["--unit", "1", "--sentences", "n_wrds > 3"], "--sentences filter 'n_wrds > 3' fails"),
        (["--unit", "1", "-o", "{tmp}/view.txt"], "view.txt: the extension chooses the format"),
        (["--unit", "1", "--site", "toy/layer.9"], "no site 'toy/layer.9' (did you mean"),
        (["--unit", "1", "--sentences", "5000"], "--sentences has no sentence 5000"),
        (["--unit", "1", "--sentences", "-1"], "--sentences has a negative id, -1: sentence ids"),
        (["--unit", "1", "--sentences", "3, -1,-7"], "--sentences has negative ids, -1, -7:"),
        (["--unit", "1", "--sentences", "5-7"], "filter '5-7' gives int32 values, not true or"),
        (["--unit", "1", "--sentences", "sentence_id"], "'sentence_id' gives int64 values"),
        (["--unit", "1", "--sentences", "n_words"], "it must be a condition (e.g. "),
    ],
)
def test_cli_refusals_are_one_line(
    toy_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
    words: str,
) -> None:  # fmt: skip
    argv = ["show", str(toy_store), "--site", SITE, *(a.format(tmp=tmp_path) for a in extra)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("actstore: error: ") and err.count("\n") == 1, err
    assert words in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())


def test_cli_refuses_a_bad_path_before_the_work(markup_store: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(markup_store, tmp_path / "c.actstore"))
    proc = subprocess.run(
        [sys.executable, "-m", "actstore.cli", "show", str(copy), "--site", "toy/layer.0",
         "--unit", "0", "-o", str(copy / "inside.png")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "lies inside the store" in proc.stderr and "Traceback" not in proc.stderr

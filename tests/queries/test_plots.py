"""Figures a paper can use: what each names, the file formats, and what --save and
--plot say and write.

The figures are captured as the verbs draw them (``queries.plots.save`` wrapped), so
the captions are checked with the model, sites, filter and word count the verbs pass;
the numbers they are checked against are read from the store's Parquet columns or
computed here, not through the code that makes the figures.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure
from matplotlib.text import Text
from PIL import Image

import actstore
from actstore.cli import main
from actstore.verbs import verb
from queries import plots
from queries.scores import PROBE, with_warnings

WHERE = "depth <= 4"


def texts(figure: Figure) -> str:
    """Every text of ``figure`` (titles, captions, labels, ticks, legends), one line."""
    figure.draw_without_rendering()
    return " ".join(" ".join(t.get_text().split()) for t in figure.findobj(Text))


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """The figures the verbs draw, in order (still written to their files)."""
    figures: list[Figure] = []
    save = plots.save

    def keep(figure: Figure, path: Path) -> None:
        figures.append(figure)
        save(figure, path)

    monkeypatch.setattr(plots, "save", keep)
    return figures


@pytest.fixture(scope="module")
def selected(toy_store: Path) -> int:
    """The words ``WHERE`` selects, counted from the depth column's Parquet parts."""
    with actstore.open(toy_store) as store:
        depth = store.columns(["depth"]).column("depth").to_numpy()
    return int((depth <= 4).sum())


def _run(name: str, toy_store: Path, tmp_path: Path, **values: Any) -> Any:
    common = {"store": toy_store, "where": WHERE, "quiet": True, "plot": tmp_path / f"{name}.png"}
    return verb(name)(**common, **values)


VERBS: dict[str, dict[str, Any]] = {
    "probe": {"sites": "toy/*", "target": "upos", "control": True, "epochs": 1, "device": "cpu"},
    "correlate": {"sites": "toy/*", "covariate": "position", "spearman": False},
    "dynamics": {"sites": "toy/*", "covariate": "position"},
    "measures": {"sites": "toy/layer.3", "by": ("upos",), "min_count": 100},
    "selectivity": {"sites": "toy/layer.3", "by": "form", "min_count": 5},
}


@pytest.mark.parametrize("name", sorted(VERBS))
def test_each_figure_names_model_sites_words_and_filter(
    name: str, toy_store: Path, tmp_path: Path, selected: int, drawn: list[Figure]
) -> None:
    _run(name, toy_store, tmp_path, **VERBS[name])
    (figure,) = drawn
    said = texts(figure)
    assert "model toy" in said and "corpus en_ewt dev (en)" in said
    assert f"n = {selected:,} words" in said
    assert f"where {WHERE}" in said
    sites = (
        ["toy/layer.3"] if name in ("measures", "selectivity") else ["toy/layer.0", "toy/layer.3"]
    )
    assert f"site{'s' if len(sites) > 1 else ''} {', '.join(sites)}" in said
    assert figure.get_layout_engine() is not None  # constrained layout
    panels = [ax for ax in figure.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]
    assert all(ax.get_ylabel() for ax in panels) and panels[-1].get_xlabel()
    for legend in figure.legends:  # legends sit outside every panel
        assert not any(legend.get_window_extent().overlaps(ax.bbox) for ax in panels)
    assert all(ax.get_legend() is None for ax in figure.axes)


def test_probe_figure_draws_selectivity_fold_intervals_and_warnings(
    toy_store: Path, tmp_path: Path, drawn: list[Figure]
) -> None:
    table = _run("probe", toy_store, tmp_path, **{**VERBS["probe"], "folds": 3})
    accuracy = table[(table.metric == "accuracy")].set_index("site")
    control = table[(table.metric == "control_accuracy")].set_index("site")
    (figure,) = drawn
    top, bottom = figure.axes[:2]
    assert bottom.get_ylabel() == "selectivity\n(accuracy - control)"
    line = bottom.containers[0]
    assert isinstance(line, ErrorbarContainer) and line.has_yerr
    selectivity = accuracy["value"].to_numpy(float) - control["value"].to_numpy(float)
    np.testing.assert_allclose(np.asarray(line.lines[0].get_ydata(), float), selectivity)
    bars = top.containers[0].lines[2][0].get_segments()  # the accuracy's error bars
    interval = accuracy[["ci_low", "ci_high"]].to_numpy(float)
    np.testing.assert_allclose([b[:, 1] for b in bars], interval, rtol=1e-12)
    assert "error bars: 95% t-interval over the folds" in texts(figure)
    records = [  # a probe not above its majority class, and one its control task matches
        {"site": f"s/{k}", "target": "upos", "word_offset": 0, "metric": metric, "label": "",
         "value": value, "ci_low": np.nan, "ci_high": np.nan, "n": 50, "n_train": 450,
         "n_classes": 3, "scoring": "feature", "seed": 0, "warning": ""}
        for k, values in enumerate([(0.4, 0.5, 0.2), (0.8, 0.3, 0.79)])
        for metric, value in zip(("accuracy", "majority", "control_accuracy"), values, strict=True)
    ]  # fmt: skip
    warned = PROBE.frame(with_warnings(records))
    said = texts(plots.probe_figure(warned, plots.FigureContext("m", "c", 100)))
    assert "warning: not above the majority baseline" in said
    assert "warning: control within 2 points of the probe" in said


def test_correlations_coloured_by_size_and_strongest_units_named(
    toy_store: Path, tmp_path: Path, drawn: list[Figure]
) -> None:
    table = _run("correlate", toy_store, tmp_path, **VERBS["correlate"])
    (figure,) = drawn
    assert any(ax.get_ylabel() == "|r|" for ax in figure.axes)  # the colour bar
    named = {t.get_text() for ax in figure.axes for t in ax.texts}
    for site in ("toy/layer.0", "toy/layer.3"):
        values = table[(table.site == site) & (table.metric == "pearson")]
        strongest = int(values["unit"].to_numpy()[np.argmax(np.abs(values["value"].to_numpy()))])
        assert f"unit {strongest}" in named


def test_dynamics_error_bars_are_labelled(
    toy_store: Path, tmp_path: Path, drawn: list[Figure]
) -> None:
    _run("dynamics", toy_store, tmp_path, **VERBS["dynamics"])
    (figure,) = drawn
    assert "mean over units" in figure.axes[0].get_ylabel()
    assert "error bars: ±1 SEM over sentences" in texts(figure)


def test_lexical_map_is_dark_opaque_and_leaves_out_function_words(
    toy_store: Path, tmp_path: Path, drawn: list[Figure]
) -> None:
    _run("selectivity", toy_store, tmp_path, **VERBS["selectivity"])
    (figure,) = drawn
    words = figure.axes[0].texts
    assert len(words) > 10
    for word in words:
        assert word.get_alpha() in (None, 1.0)
        assert sum(word.get_color()[:3]) / 3 < 0.6  # dark enough to read on white
    shown = {w.get_text() for w in words}
    assert not shown & {"the", "a", "of", "and", "to", ",", ".", "(", "'s"}
    said = texts(figure)
    assert "colour: mean activation of the unit" in said and "x |mean activation|" in said


@pytest.mark.parametrize(
    ("suffix", "check"),
    [
        (".png", lambda data: data[:4] == b"\x89PNG"),
        (".PDF", lambda data: data[:4] == b"%PDF"),
        (".svg", lambda data: b"<svg" in data[:1000]),
    ],
)
def test_the_extension_chooses_the_format(
    suffix: str, check: Callable[[bytes], bool], tmp_path: Path
) -> None:
    figure = Figure()
    figure.subplots().plot([0, 1], [1, 0])
    path = tmp_path / "sub" / f"figure{suffix}"
    plots.save(figure, path)
    assert check(path.read_bytes())
    if suffix == ".png":
        with Image.open(path) as image:
            assert image.info["dpi"] == pytest.approx((300, 300), abs=0.01)


def test_a_bad_extension_is_refused_before_the_work(
    toy_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(actstore.ParameterError, match=r"^plot .*\.jpg.*\.png.*\.pdf.*\.svg"):
        plots.save(Figure(), tmp_path / "figure.jpg")
    with pytest.raises(actstore.ParameterError, match=r"extension chooses the format"):
        verb("dynamics")(store=toy_store, sites="toy/*", plot=tmp_path / "plot", quiet=True)
    assert main(["dynamics", str(toy_store), "--sites", "toy/*", "--plot", "d.eps"]) == 2
    assert "--plot d.eps: the extension chooses the format" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_measures_writes_nothing_without_save_and_says_what_it_wrote(
    ewt_small: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], site_writer: Any
) -> None:
    path = tmp_path / "m.actstore"
    shutil.copytree(ewt_small, path)
    with actstore.open(path, mode="a") as store:
        values = np.random.default_rng(0).normal(size=(store.n_rows(), 4)).astype(np.float32)
        site_writer(store, "toy/layer.0", values, model="toy")
    before = (path / "manifest.json").read_bytes()
    args = ["measures", str(path), "--sites", "toy/layer.0", "--by", "upos", "--min-count", "50"]
    assert main([*args, "--format", "csv"]) == 0
    printed = capsys.readouterr()
    assert (path / "manifest.json").read_bytes() == before  # no result, not even `measures`
    assert printed.err == ""
    plot = tmp_path / "plots" / "m.pdf"
    assert main([*args, "--format", "csv", "--save", "by_upos", "--plot", str(plot)]) == 0
    saved = capsys.readouterr()
    assert saved.out == printed.out  # the same means, saved or not
    with actstore.open(path) as store:
        assert {"measures", "by_upos"} <= set(store.results)
        n_tokens, n_means = store.n_rows(), store.results["by_upos"].shape[0]
        by_sql = store.sql(  # the means from the saved per-token values, by SQL
            "SELECT upos, avg(dred) AS dred FROM tokens JOIN measures USING (row) "
            "GROUP BY upos HAVING count(*) >= 50 ORDER BY upos"
        )
        got = store.sql("SELECT category, value FROM by_upos ORDER BY category")
    np.testing.assert_allclose(got["value"], by_sql["dred"], rtol=1e-12)
    assert saved.err.splitlines() == [
        f"saved result measures ({n_tokens:,} rows) in {path}",
        f"saved result by_upos ({n_means:,} rows) in {path}",
        f"wrote plot {plot}",
    ]
    assert plot.read_bytes()[:4] == b"%PDF"
    assert main([*args, "--save", "again", "--plot", str(plot), "-q"]) == 0
    assert capsys.readouterr().err == ""  # quiet says nothing

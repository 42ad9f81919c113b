"""Progress of analyses: a bar per pass counting blocks, a bar per training counting
steps and epochs; drawn when asked, silent when quiet, and the numbers the same bit for
bit either way."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pytest

import actstore
from actstore import progress
from queries import correlate
from queries.engine import Selection, map_blocks, map_reduce
from queries.options import ProbeOptions
from queries.probe import fit_probe

SiteWriter = Callable[..., np.ndarray]


def bars(text: str) -> list[tuple[str, int, list[int]]]:
    """Each bar drawn, in order: its name, total and the counts it showed (each once)."""
    out: list[tuple[str, int, list[int]]] = []
    pattern = r"(?:^|\r)([^\r]+?): +\d+%\|[^|\r]*\| *(\d+)/(\d+) \["
    for name, n, total in re.findall(pattern, text):
        if not out or out[-1][0] != name or (n == "0" and out[-1][2][-1] != 0):
            out.append((name, int(total), [int(n)]))
        elif out[-1][2][-1] != int(n):
            out[-1][2].append(int(n))
    return out


def counted_all(drawn: tuple[str, int, list[int]]) -> bool:
    """Whether a bar showed every count from 0 to its total."""
    _, total, counts = drawn
    return total > 0 and counts == list(range(total + 1))


@pytest.fixture
def shown(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bars forced on, redrawn at every update."""
    monkeypatch.setenv("ACTSTORE_PROGRESS", "1")
    monkeypatch.setattr(progress, "MIN_INTERVAL", 0.0)


@pytest.fixture
def small_store(
    tmp_path: Path, ewt_small: Path, site_writer: SiteWriter
) -> Iterator[actstore.Store]:
    """120 sentences of EWT dev, a float16 site of 6 units in chunks of 256 rows whose
    first unit follows depth."""
    path = shutil.copytree(ewt_small, tmp_path / "small.actstore")
    with actstore.open(path, mode="a") as store:
        depth = store.sql("SELECT depth FROM tokens ORDER BY row")["depth"].to_numpy()
        values = np.random.default_rng(3).normal(size=(depth.size, 6))
        values[:, 0] += depth
        site_writer(store, "toy/layer.0", values.astype(np.float32), dtype="float16",
                    chunk_rows=256)  # fmt: skip
        yield store


def _sums(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, np.float64).sum(axis=0)


@pytest.mark.parametrize("scheduler", ["threads", "sync"])
def test_a_pass_counts_every_block(
    small_store: actstore.Store,
    shown: None,
    capsys: pytest.CaptureFixture[str],
    scheduler: str,
) -> None:
    selection = Selection(small_store, ("toy/layer.0",), "upos <> 'PUNCT'", block_rows=300)
    n_blocks = len(selection.spans)
    assert n_blocks >= 4
    with dask.config.set(scheduler=scheduler, num_workers=2):
        total = map_reduce(_sums, np.add, selection, label="sums")
        parts = map_blocks(_sums, selection)
        seen = bars(capsys.readouterr().err)
        with progress.quiet():
            quiet_total = map_reduce(_sums, np.add, selection, label="sums")
            quiet_parts = map_blocks(_sums, selection)
    assert capsys.readouterr().err == ""
    assert [(name, total) for name, total, _ in seen] == [("sums", n_blocks)] * 2
    assert all(map(counted_all, seen))  # map_blocks' bar is named after its function
    assert total.tobytes() == quiet_total.tobytes()
    assert np.stack(parts).tobytes() == np.stack(quiet_parts).tobytes()


def test_correlations_count_blocks_and_unit_groups(
    small_store: actstore.Store,
    shown: None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(correlate, "STREAM_BLOCK_BYTES", 4 * 6 * 400)  # blocks of 400 rows
    with dask.config.set(scheduler="threads", num_workers=2):
        table = correlate.unit_correlations(small_store, "toy/layer.0", "depth")
        seen = bars(capsys.readouterr().err)
        with progress.quiet():
            quiet = correlate.unit_correlations(small_store, "toy/layer.0", "depth")
    assert capsys.readouterr().err == ""
    (pearson, pearson_blocks, _), (spearman, groups, _) = seen
    assert (pearson, spearman) == ("pearson toy/layer.0", "spearman toy/layer.0")
    assert pearson_blocks >= 4 and groups == 2  # the 6 units in a group per worker
    assert all(map(counted_all, seen))
    pd.testing.assert_frame_equal(table, quiet, check_exact=True)


def test_a_probe_counts_steps_and_epochs(
    small_store: actstore.Store, shown: None, capsys: pytest.CaptureFixture[str]
) -> None:
    options = ProbeOptions("upos", device="cpu", epochs=3, patience=5)
    fitted = fit_probe(small_store, "toy/layer.0", options)
    err = capsys.readouterr().err
    with progress.quiet():
        quiet = fit_probe(small_store, "toy/layer.0", options)
    assert capsys.readouterr().err == ""
    (train, steps, _), (test, _, _) = seen = bars(err)
    assert (train, test) == ("probe toy/layer.0", "probe toy/layer.0: test")
    assert steps == fitted.trained.steps and all(map(counted_all, seen))
    epochs = sorted({int(e) for e in re.findall(r"epoch (\d+)/3\]", err)})
    assert epochs == [1, 2, 3]
    for (coef, intercept), (quiet_coef, quiet_intercept) in zip(
        fitted.trained.weights, quiet.trained.weights, strict=True
    ):
        assert coef.tobytes() == quiet_coef.tobytes()
        assert intercept.tobytes() == quiet_intercept.tobytes()
    np.testing.assert_array_equal(fitted.predicted, quiet.predicted)

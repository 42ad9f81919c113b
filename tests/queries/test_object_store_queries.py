"""The analyses on a store in object storage (a real S3 server, SeaweedFS) answer the
numbers they answer on the same store on disk, bit for bit: the kernels are the same,
so only where the bytes come from changes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import actstore
from actstore.s3server import LocalS3
from actstore.transfer import copy_store
from actstore.verbs import verb
from queries.correlate import unit_correlations
from queries.dynamics import sentence_dynamics
from queries.selectivity import type_means

ANALYSES: dict[str, Callable[[actstore.Store], Any]] = {
    "correlations": lambda s: unit_correlations(s, "toy/layer.3", "depth", "row < 6000"),
    "dynamics": lambda s: sentence_dynamics(s, "toy/layer.0", "depth"),
    "type means": lambda s: type_means(s, "toy/layer.3", "upos").means,
}


@pytest.fixture(scope="module")
def remote_toy(s3: LocalS3, toy_store: Path) -> str:
    url = s3.fresh_url() + "/toy"
    copy_store(toy_store, url)
    return url


def numbers(result: Any) -> np.ndarray:
    if isinstance(result, pd.DataFrame):
        return result.select_dtypes("number").to_numpy(np.float64)
    return np.asarray(result, np.float64)


def test_analyses_read_from_s3_give_the_local_numbers(toy_store: Path, remote_toy: str) -> None:
    with actstore.open(toy_store) as here, actstore.open(remote_toy) as there:
        for name, run in ANALYSES.items():
            np.testing.assert_array_equal(numbers(run(there)), numbers(run(here)), err_msg=name)


def test_verbs_on_an_s3_store(toy_store: Path, remote_toy: str) -> None:
    """probe, correlate and rsa through the registered verbs, by URL as on the command line."""
    asked: list[tuple[str, dict[str, Any]]] = [
        ("probe", {"target": "upos", "device": "cpu", "seed": 3, "epochs": 2.0}),
        ("correlate", {"covariate": "depth", "top": 5}),
        ("rsa", {"by": "upos", "min_count": 20, "permutations": 19}),
    ]
    for name, options in asked:
        common = {"sites": "toy/*", "quiet": True, **options}
        here = verb(name)(store=toy_store, **common)
        there = verb(name)(store=remote_toy, **common)
        pd.testing.assert_frame_equal(there, here, obj=name)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_cluster_workers_read_the_objects_themselves(toy_store: Path, remote_toy: str) -> None:
    """Under a LocalCluster of processes each worker opens the S3 objects it reads (the
    reader pickles as its URL): the results, a probe's too, are the threaded local ones,
    bit for bit."""
    from distributed import Client, LocalCluster, get_task_stream

    probe = {"sites": "toy/*", "target": "upos", "device": "cpu", "seed": 3, "epochs": 2.0}
    with actstore.open(toy_store) as here:
        local = {name: numbers(run(here)) for name, run in ANALYSES.items()}
    local_probe = verb("probe")(store=toy_store, quiet=True, **probe)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster),
        actstore.open(remote_toy) as there,
    ):
        for name, run in ANALYSES.items():
            with get_task_stream() as stream:
                got = numbers(run(there))
            assert stream.data, f"{name}: no task ran on the workers"
            np.testing.assert_array_equal(got, local[name], err_msg=name)
        with get_task_stream() as stream:  # standardisation and prediction on the workers
            remote_probe = verb("probe")(store=remote_toy, quiet=True, **probe)
        assert stream.data, "probe: no task ran on the workers"
        pd.testing.assert_frame_equal(remote_probe, local_probe)


def test_the_report_of_an_s3_store(remote_toy: str, tmp_path: Path) -> None:
    """The page of a store read from S3, with every chunk verified there."""
    page = tmp_path / "remote.html"
    verb("report")(store=remote_toy, output=page, neurons="toy/layer.3:5")
    html = page.read_text(encoding="utf-8")
    assert "<title>actstore report: toy</title>" in html and remote_toy in html
    assert "toy/layer.0" in html and "toy/layer.3" in html
    assert "Every chunk and table part was checked against its checksum" in html
    assert "every checksum right" in html  # no warning: verify found every object intact

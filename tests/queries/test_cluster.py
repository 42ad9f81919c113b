"""The streaming analyses run unchanged under a dask.distributed cluster of processes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import actstore
from queries.correlate import unit_correlations
from queries.dynamics import sentence_dynamics
from queries.measures import token_measures
from queries.selectivity import type_means

ANALYSES: dict[str, Callable[[actstore.Store], Any]] = {
    "correlations": lambda s: unit_correlations(s, "toy/layer.3", "depth", "row < 6000"),
    "dynamics": lambda s: sentence_dynamics(s, "toy/layer.0", "depth"),
    "type means": lambda s: type_means(s, "toy/layer.3", "upos").means,
    "measures": lambda s: token_measures(s, "toy/layer.3"),
}


def as_array(result: Any) -> np.ndarray:
    if isinstance(result, pd.DataFrame):
        return result.select_dtypes("number").to_numpy(np.float64)
    return np.asarray(result, np.float64)


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_local_cluster_gives_the_threaded_results(toy_store: Path) -> None:
    from distributed import Client, LocalCluster, get_task_stream

    with actstore.open(toy_store) as store:
        threaded = {name: run(store) for name, run in ANALYSES.items()}
        with (
            LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            Client(cluster),
        ):
            for name, run in ANALYSES.items():
                with get_task_stream() as stream:
                    distributed = run(store)
                assert stream.data, f"{name}: no task ran on the cluster's workers"
                np.testing.assert_allclose(
                    as_array(distributed),
                    as_array(threaded[name]),
                    rtol=1e-9,
                    atol=1e-12,
                    err_msg=name,
                )
                # deterministic kernels and merge order: the same bits as on threads
                np.testing.assert_array_equal(
                    as_array(distributed), as_array(threaded[name]), err_msg=name
                )

"""Drawing order of an RDM: clustering takes the tiny negative distances that rounding
leaves in ``1 - r`` (identical profiles), ordering them as zeros."""

from __future__ import annotations

import numpy as np
from scipy.cluster.hierarchy import leaves_list, linkage

from queries.rsa_plots import rdm_order


def test_cluster_order_takes_a_rounding_negative_as_zero() -> None:
    clean = np.array(
        [
            [0.0, 1.5, 0.0, 1.4],
            [1.5, 0.0, 1.6, 0.1],
            [0.0, 1.6, 0.0, 1.5],
            [1.4, 0.1, 1.5, 0.0],
        ]
    )
    rounded = clean.copy()
    rounded[0, 2] = rounded[2, 0] = -1e-15  # as 1 - r gives for two identical profiles
    # the order scipy gives for the clean matrix, condensed by hand (upper triangle)
    condensed = np.array([1.5, 0.0, 1.4, 1.6, 0.1, 1.5])
    expected = leaves_list(linkage(condensed, "average")).tolist()
    order = rdm_order(rounded, list("abcd"), "cluster").tolist()
    assert order == expected
    assert abs(order.index(0) - order.index(2)) == 1 and abs(order.index(1) - order.index(3)) == 1

"""Linear CKA between sites over the same rows, in one streaming pass (METHODS.md,
"Representational similarity").

Linear centred kernel alignment of two sites X and Y (n rows, centred per unit) is

    CKA(X, Y) = ‖XᵀY‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F),

which needs only cross-products of features: one pass over the rows accumulates, per
block, every site's column sums and, for every pair of sites (each with itself too),
XᵢᵀXⱼ in float64 (a GEMM per piece of rows); the centred products are
XᵢᵀXⱼ - n μᵢμⱼᵀ. Values are shifted by a per-unit centre first (the mean of the first
:data:`CENTRE_ROWS` selected rows, fixed before the pass), so that subtraction does not
cancel digits when a unit's mean is large against its spread.

Debiased CKA (Kornblith et al. 2019, from the unbiased HSIC estimator of Song et al.
2012, as Nguyen et al. 2021 use it) replaces each ‖XᵢᵀXⱼ‖²_F by

    ‖XᵀY‖²_F - n/(n-2) Σᵣ aᵣbᵣ + (Σᵣ aᵣ)(Σᵣ bᵣ) / ((n-1)(n-2)),

with aᵣ = ‖xᵣ - μₓ‖² and bᵣ = ‖yᵣ - μᵧ‖² the rows' squared centred norms: the
estimator's nxn Gram matrices K = XXᵀ enter only through their traces, row sums and
diagonals, which for a linear kernel are functions of features. Σ aᵣbᵣ expands around
the centres into sums a pass can accumulate: per row the squared norm pᵣ of every site's
shifted values, and per block PᵀP (sites x sites) and PᵀXⱼ (sites x units of site j).
So the debiased variant streams too, at any n, for a few percent more work.

Blocks sum in a fixed order on one thread (torch, single-threaded inside the engine's
tasks) and merge in the engine's fixed tree order, so a result is the same bit for bit
on the threaded or process scheduler, any worker count or a cluster. Different
``block_rows`` add the same float64 numbers in another order (equal to about 1e-14).

Memory: units_a x units_b float64 per pair (768 x 768: 4.7 MB), one copy per block in
flight; more than :data:`BUDGET_BYTES` for one copy is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
import torch

import actstore
from actstore.errors import ParameterError, SchemaError
from queries.engine import Selection, map_reduce
from queries.results import Column, TableSchema
from queries.select import resolve_sites

BUDGET_BYTES = 1 << 30  # one copy of every pair's cross-products
PIECE_ROWS = 2048  # rows decoded to float64 and multiplied at a time
CENTRE_ROWS = 4096  # selected rows whose mean is the shift applied before summing
MIN_ROWS = {False: 2, True: 4}  # the unbiased estimator divides by n - 3

CKA = TableSchema(
    "cka",
    (
        Column("site_a", "string"),
        Column("site_b", "string"),
        Column("cka", "float64"),
        Column("debiased", "bool"),
        Column("n", "int64"),
    ),
)

Pair = tuple[int, int]


@dataclass(frozen=True)
class CrossSums:
    """What a block contributes, on values shifted by the centres: the row count, every
    site's column sums, every pair's cross-product; for the debiased variant, with pᵣ
    a row's squared shifted norm per site, PᵀP, Σ p and PᵀXⱼ per site (else empty)."""

    n: int
    sums: tuple[np.ndarray, ...]
    cross: tuple[np.ndarray, ...]
    norms: np.ndarray
    norm_sums: np.ndarray
    weighted: tuple[np.ndarray, ...]


def merge_sums(a: CrossSums, b: CrossSums) -> CrossSums:
    """Two blocks' sums added (float64, the engine merges them in a fixed order)."""
    return CrossSums(
        a.n + b.n,
        tuple(x + y for x, y in zip(a.sums, b.sums, strict=True)),
        tuple(x + y for x, y in zip(a.cross, b.cross, strict=True)),
        a.norms + b.norms,
        a.norm_sums + b.norm_sums,
        tuple(x + y for x, y in zip(a.weighted, b.weighted, strict=True)),
    )


def block_sums(
    *blocks: np.ndarray, centres: Sequence[np.ndarray], pairs: Sequence[Pair], debiased: bool
) -> CrossSums:
    """One block's :class:`CrossSums`: pieces of :data:`PIECE_ROWS` rows of every site
    decoded to float64 and shifted, then summed and multiplied (torch; one thread inside
    the engine's tasks, so the order of every sum is fixed by the block's values).

    Examples
    --------
    >>> x = np.array([[1.0, 2.0], [3.0, 5.0], [4.0, 4.0]], np.float16)
    >>> sums = block_sums(x, centres=[np.zeros(2)], pairs=[(0, 0)], debiased=False)
    >>> sums.n, sums.sums[0].tolist(), sums.cross[0].tolist()
    (3, [8.0, 11.0], [[26.0, 33.0], [33.0, 45.0]])
    """
    k = len(blocks)
    f64 = torch.float64
    shifts = [torch.from_numpy(np.asarray(c, np.float64)) for c in centres]
    sums = [torch.zeros(b.shape[1], dtype=f64) for b in blocks]
    cross = [torch.zeros(blocks[i].shape[1], blocks[j].shape[1], dtype=f64) for i, j in pairs]
    norms = torch.zeros(k, k, dtype=f64)
    norm_sums = torch.zeros(k, dtype=f64)
    weighted = [torch.zeros(k, b.shape[1], dtype=f64) for b in blocks] if debiased else []
    rows = len(blocks[0])
    for lo in range(0, rows, PIECE_ROWS):
        xs = [
            torch.from_numpy(np.ascontiguousarray(b[lo : lo + PIECE_ROWS])).to(f64) - shift
            for b, shift in zip(blocks, shifts, strict=True)
        ]  # fresh torch tensors: aligned alike every time, so MKL sums alike
        for total, x in zip(sums, xs, strict=True):
            total += x.sum(dim=0)
        for (i, j), product in zip(pairs, cross, strict=True):
            product.addmm_(xs[i].T, xs[j])
        if debiased:
            p = torch.stack([(x * x).sum(dim=1) for x in xs], dim=1)
            norms.addmm_(p.T, p)
            norm_sums += p.sum(dim=0)
            for w, x in zip(weighted, xs, strict=True):
                w.addmm_(p.T, x)
    return CrossSums(
        rows,
        tuple(t.numpy() for t in sums),
        tuple(t.numpy() for t in cross),
        norms.numpy(),
        norm_sums.numpy(),
        tuple(t.numpy() for t in weighted),
    )


def hsic(total: CrossSums, i: int, j: int, pair: int, *, debiased: bool) -> float:
    """‖XᵢᵀXⱼ‖²_F on centred values, or its debiased form (without the constant factor
    1/(n(n-3)), which cancels in CKA); ``pair`` is the index of (i, j) in the sums.

    Examples
    --------
    >>> x = np.array([[1.0], [2.0], [4.0]])
    >>> total = block_sums(x, centres=[np.zeros(1)], pairs=[(0, 0)], debiased=False)
    >>> round(hsic(total, 0, 0, 0, debiased=False), 6)  # centred: -4/3, -1/3, 5/3
    21.777778
    """
    n = float(total.n)
    mi, mj = total.sums[i] / n, total.sums[j] / n
    centred = total.cross[pair] - n * np.outer(mi, mj)
    value = float(np.square(centred).sum())
    if not debiased:
        return value
    if i > j:
        raise ValueError("hsic: pairs are stored with i <= j")
    # elementwise products and numpy's pairwise sums, no BLAS: no dependence on its threads
    ni, nj = float(np.sum(mi * mi)), float(np.sum(mj * mj))
    p_sum = total.norm_sums
    # Σᵣ aᵣbᵣ with aᵣ = ‖x̃ᵣ - m‖² expanded: x̃ the shifted values, m their mean
    both = (
        total.norms[i, j]
        - 2 * float(np.sum(mj * total.weighted[j][i]))
        - 2 * float(np.sum(mi * total.weighted[i][j]))
        + nj * p_sum[i]
        + ni * p_sum[j]
        + 4 * float(np.sum(np.outer(mi, mj) * total.cross[pair]))
        - 3 * n * ni * nj
    )
    sum_a, sum_b = p_sum[i] - n * ni, p_sum[j] - n * nj
    return float(value - n / (n - 2) * both + sum_a * sum_b / ((n - 1) * (n - 2)))


def site_names(store: actstore.Store, sites: str | Sequence[str], parameter: str) -> list[str]:
    """Site names from a glob (comma-separated globs allowed) or a sequence of names or
    globs, without repeats, in the order given (a glob's matches sorted naturally)."""
    patterns = [sites] if isinstance(sites, str) else list(sites)
    if not patterns:
        raise ParameterError(parameter, "names no site")
    found: list[str] = []
    for pattern in patterns:
        found += [pattern] if pattern in store.sites else resolve_sites(store, pattern)
    return list(dict.fromkeys(found))


def _check_budget(store: actstore.Store, sites: Sequence[str], pairs: Sequence[Pair]) -> None:
    units = [store.site(name).n_units for name in sites]
    needed = 8 * sum(units[i] * units[j] for i, j in pairs)
    if needed > BUDGET_BYTES:
        raise SchemaError(
            f"cka of {len(sites)} sites ({min(units):,} to {max(units):,} units) needs "
            f"{needed / 2**30:.1f} GiB of float64 cross-products for its {len(pairs)} pairs "
            f"of sites, more than the {BUDGET_BYTES / 2**30:.1f} GiB budget; compare fewer "
            "sites at once, or two groups with --against (sites_b)"
        )


def _centres(selection: Selection) -> list[np.ndarray]:
    """Every site's mean over the first :data:`CENTRE_ROWS` selected rows (float64)."""
    first = selection.rows[:CENTRE_ROWS]
    return [
        np.asarray(reader.take(first), np.float64).mean(axis=0)
        for reader in selection.readers(None)
    ]


def cka_matrix(
    store: actstore.Store,
    sites_a: str | Sequence[str],
    sites_b: str | Sequence[str] | None = None,
    *,
    where: str | None = None,
    debiased: bool = False,
    block_rows: int | None = None,
) -> pd.DataFrame:
    """Linear CKA of every site of ``sites_a`` with every site of ``sites_b`` (default:
    ``sites_a`` again, site x site), from one streaming pass over the rows.

    Parameters
    ----------
    store
        An open store.
    sites_a, sites_b
        Site names or globs (comma-separated globs allowed); all over the same table.
    where
        SQL condition over that table selecting the rows (default: every row).
    debiased
        Debiased CKA (the unbiased HSIC estimator; needs at least 4 rows).
    block_rows
        Rows per block of the pass (default: the engine's).

    Returns
    -------
    pandas.DataFrame
        One row per pair (:data:`CKA`): ``site_a, site_b, cka, debiased, n``.

    Examples
    --------
    >>> table = cka_matrix(store, "toy/*", where="upos = 'NOUN'")
    >>> table[["site_a", "site_b"]].values.tolist()[:2]
    [['toy/layer.0', 'toy/layer.0'], ['toy/layer.0', 'toy/layer.1']]
    >>> bool(np.isclose(table["cka"].iloc[0], 1.0)), int(table["n"].iloc[0]) > 0
    (True, True)
    """
    first = site_names(store, sites_a, "sites")
    second = first if sites_b is None else site_names(store, sites_b, "against")
    sites = tuple(dict.fromkeys([*first, *second]))
    index = {name: i for i, name in enumerate(sites)}
    wanted = [(a, b) for a in first for b in second]
    ordered = {(min(index[a], index[b]), max(index[a], index[b])) for a, b in wanted}
    pairs = sorted(ordered | {(i, i) for i in range(len(sites))})
    _check_budget(store, sites, pairs)
    selection = Selection(store, sites, where, block_rows=block_rows)
    n = int(selection.rows.size)
    if n < MIN_ROWS[debiased]:
        kind = "debiased CKA" if debiased else "CKA"
        raise SchemaError(f"{kind} needs at least {MIN_ROWS[debiased]} rows; {n} are selected")
    block = partial(block_sums, pairs=pairs, debiased=debiased)
    total = map_reduce(
        block,
        merge_sums,
        selection,
        shared={"centres": _centres(selection)},
        dtype=None,
        label="cka",
    )
    at = {pair: k for k, pair in enumerate(pairs)}
    h = {pair: hsic(total, *pair, at[pair], debiased=debiased) for pair in pairs}
    values = []
    for a, b in wanted:
        i, j = sorted((index[a], index[b]))
        with np.errstate(invalid="ignore", divide="ignore"):
            values.append(np.float64(h[i, j]) / np.sqrt(np.float64(h[i, i] * h[j, j])))
    return CKA.frame(
        {
            "site_a": [a for a, _ in wanted],
            "site_b": [b for _, b in wanted],
            "cka": np.asarray(values, np.float64),
            "debiased": debiased,
            "n": n,
        }
    )

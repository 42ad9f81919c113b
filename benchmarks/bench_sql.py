"""SQL over token tables: DuckDB on a store's Parquet tables against pandas on the same data.

Two queries over N synthetic token rows (default 10 million, in sentences of 5-40
words with Zipf-like UPOS frequencies):

* GROUP BY: count and mean depth per UPOS;
* sentence window: the previous word's UPOS (LAG within the sentence), counted as
  UPOS bigrams.

Baseline: pandas on the same Parquet files, timed with and without loading them.

Run: ``.venv/bin/python benchmarks/bench_sql.py [N_ROWS]``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
from timing import compare, peak_rss_mib

import actstore

UPOS = "NOUN PUNCT VERB PRON ADP DET PROPN ADJ AUX ADV CCONJ PART SCONJ NUM INTJ SYM X".split()  # noqa: SIM905
PART_ROWS = 1_000_000
GROUP_BY = "SELECT upos, count(*) AS n, avg(depth) AS mean_depth FROM tokens GROUP BY upos"
WINDOW = (
    "SELECT prev, upos, count(*) AS n FROM ("
    " SELECT upos, lag(upos) OVER (PARTITION BY sentence_id ORDER BY position) AS prev"
    " FROM tokens) GROUP BY ALL"
)


def synthetic_tokens(
    first_row: int, n: int, first_sentence: int, rng: np.random.Generator
) -> pa.Table:
    lengths = rng.integers(5, 41, size=n // 5 + 1)
    lengths = lengths[: np.searchsorted(np.cumsum(lengths), n) + 1]
    lengths[-1] -= lengths.sum() - n
    sentence = np.repeat(np.arange(lengths.size) + first_sentence, lengths)
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    weights = 1 / np.arange(1, len(UPOS) + 1)
    codes = rng.choice(len(UPOS), size=n, p=weights / weights.sum()).astype(np.int8)
    return pa.table(
        {
            "row": np.arange(n, dtype=np.int64) + first_row,
            "sentence_id": sentence.astype(np.int64),
            "position": (np.arange(n) - starts + 1).astype(np.int32),
            "upos": pa.DictionaryArray.from_arrays(codes, UPOS).cast(pa.string()),
            "depth": rng.integers(1, 12, size=n).astype(np.int32),
        }
    )


def build_store(path: Path, n_rows: int) -> actstore.Store:
    rng = np.random.default_rng(0)
    store = actstore.create(path)
    with store.transaction():
        sentences = 0
        for first in range(0, n_rows, PART_ROWS):
            part = synthetic_tokens(first, min(PART_ROWS, n_rows - first), sentences, rng)
            sentences = int(part.column("sentence_id")[-1].as_py()) + 1
            store.append_table("tokens", part)
    return store


def pandas_group_by(df: pd.DataFrame) -> pd.DataFrame:
    return df.groupby("upos").agg(n=("depth", "size"), mean_depth=("depth", "mean")).reset_index()


def pandas_window(df: pd.DataFrame) -> pd.DataFrame:
    ordered = df.sort_values(["sentence_id", "position"])
    prev = ordered.groupby("sentence_id")["upos"].shift()
    return ordered.assign(prev=prev).groupby(["prev", "upos"], dropna=False).size().reset_index()


def main() -> None:
    n_rows = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000
    with tempfile.TemporaryDirectory() as tmp:
        store = build_store(Path(tmp) / "synthetic", n_rows)
        files = sorted((store.path / "tables" / "tokens").glob("part-*.parquet"))
        plain = duckdb.connect(":memory:")  # no sandbox, no fresh connection: the limit
        listed = ", ".join(f"'{f}'" for f in files)
        plain.execute(f"CREATE VIEW tokens AS SELECT * FROM read_parquet([{listed}])")
        columns = ["sentence_id", "position", "upos", "depth"]

        def load() -> pd.DataFrame:
            return pd.concat(
                [pd.read_parquet(f, columns=columns) for f in files], ignore_index=True
            )

        frame = load()
        # Same answers from both engines before timing anything.
        ours = store.sql(GROUP_BY).sort_values("upos").reset_index(drop=True)
        theirs = pandas_group_by(frame).sort_values("upos").reset_index(drop=True)
        assert ours["n"].tolist() == theirs["n"].tolist()
        np.testing.assert_allclose(ours["mean_depth"], theirs["mean_depth"])
        bigrams = store.sql(WINDOW)
        assert int(bigrams["n"].sum()) == n_rows == int(pandas_window(frame)[0].sum())

        best = compare(
            {
                "duckdb group-by": lambda: store.sql(GROUP_BY),
                "plain group-by": lambda: plain.sql(GROUP_BY).df(),
                "pandas group-by": lambda: pandas_group_by(frame),
                "pandas load+group-by": lambda: pandas_group_by(load()),
                "duckdb window": lambda: store.sql(WINDOW),
                "plain window": lambda: plain.sql(WINDOW).df(),
                "pandas window": lambda: pandas_window(frame),
                "pandas load+window": lambda: pandas_window(load()),
            }
        )
        store.close()
    print(f"{n_rows:,} synthetic token rows in {len(files)} Parquet parts; best of 3, interleaved")
    for name, seconds in best.items():
        print(f"  {name:<22} {seconds:8.3f} s")
    for query in ("group-by", "window"):
        duck = best[f"duckdb {query}"]
        print(
            f"{query}: pandas / duckdb = {best[f'pandas {query}'] / duck:.1f}x in memory, "
            f"{best[f'pandas load+{query}'] / duck:.1f}x with loading; "
            f"store.sql / plain unsandboxed DuckDB = {duck / best[f'plain {query}']:.2f}"
        )
    print(f"peak RSS of this process: {peak_rss_mib():,.0f} MiB")


if __name__ == "__main__":
    main()

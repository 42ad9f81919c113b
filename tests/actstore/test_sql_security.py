"""SQL is read-only by construction: attacks through the command line (a real process, as
a user would), through Python, and with the statement check bypassed altogether."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import actstore
from actstore import sql
from actstore.storage import LocalStorage


def _digest(store: Path) -> dict[str, str]:
    """Every file of the store (and beside it) by path -> sha256."""
    return {
        str(p.relative_to(store.parent)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(store.parent.rglob("*"))
        if p.is_file() and ".lock" not in p.name
    }


@pytest.fixture
def small(tmp_path: Path, ewt_small: Path) -> Path:
    import shutil

    return Path(shutil.copytree(ewt_small, tmp_path / "s.actstore"))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "actstore.cli", *args], capture_output=True, text=True, check=False
    )


def attacks(store: Path) -> list[str]:
    part = store / "tables" / "tokens" / "part-00000.parquet"
    forged = "(SELECT * REPLACE ('FORGED' AS upos) FROM tokens)"
    return [
        f"EXPLAIN ANALYZE COPY {forged} TO '{part}' (FORMAT parquet)",
        f"EXPLAIN ANALYZE COPY {forged} TO 'actstore://{part.relative_to(store)}' (FORMAT csv)",
        f"EXPLAIN COPY (SELECT 1) TO '{store / 'manifest.json'}'",
        f"COPY (SELECT 1) TO '{store / 'manifest.json'}'",
        "EXPLAIN ANALYZE CREATE OR REPLACE VIEW tokens AS SELECT 1 AS row",
        "EXPLAIN ANALYZE DROP VIEW tokens",
        "EXPLAIN (FORMAT json) SELECT 1",
        "SELECT * FROM read_csv('/etc/passwd')",
        f"SELECT * FROM read_text('{store / 'manifest.json'}')",
        f"SELECT * FROM read_parquet('{part}')",
        "SELECT * FROM read_parquet('actstore://tables/../manifest.json')",
        "SELECT * FROM glob('/etc/*')",
        f"SELECT * FROM glob('{store}/*')",
        "SELECT * FROM read_text('.tmp/*')",
        "ATTACH 'evil.duckdb'",
        "INSTALL httpfs",
        "SET enable_external_access = true",
        "SELECT 1; SELECT 2",
        "PRAGMA enable_profiling",
        "CREATE MACRO m() AS 1",
    ]


def test_attacks_through_the_command_line_change_nothing(small: Path) -> None:
    before = _digest(small)
    for query in attacks(small):
        proc = _cli("sql", str(small), query)
        assert proc.returncode == 2, (query, proc.stdout)
        assert proc.stderr.startswith("actstore: error: "), (query, proc.stderr)
        assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert _digest(small) == before
    with actstore.open(small) as store:
        assert "FORGED" not in store.sql("SELECT DISTINCT upos FROM tokens")["upos"].tolist()


def test_output_file_inside_a_store_is_refused(small: Path, tmp_path: Path) -> None:
    before = _digest(small)
    for target in ("manifest.json", "tables/tokens/part-00000.parquet", "new.csv"):
        proc = _cli("sql", str(small), "SELECT 1 AS x", "-o", str(small / target))
        assert proc.returncode == 2 and "lies inside the store" in proc.stderr, proc.stderr
    proc = _cli("sql", str(small), "SELECT 1 AS x", "-o", str(tmp_path))
    assert proc.returncode == 2 and "is a folder" in proc.stderr
    assert _digest(small) == before
    assert _cli("sql", str(small), "SELECT 1 AS x", "-o", str(tmp_path / "ok.csv")).returncode == 0


def test_python_queries_cannot_forge_later_ones(small: Path) -> None:
    with actstore.open(small) as store:
        nouns = store.rows("upos = 'NOUN'")
        with pytest.raises(actstore.ReadOnlyError):
            store.sql(
                "EXPLAIN ANALYZE CREATE OR REPLACE VIEW tokens AS SELECT 0 AS row, 'NOUN' AS upos"
            )
        assert store.rows("upos = 'NOUN'").tolist() == nouns.tolist()
        # python objects in scope are not tables
        secret = store  # noqa: F841
        with pytest.raises(actstore.SQLError, match="secret"):
            store.sql("SELECT * FROM secret")


def test_error_hints_quote_only_the_users_query(small: Path) -> None:
    """DuckDB's excerpts of SQL of our own (a view over ``actstore://`` parts) are left
    out of messages; those of the user's query, with their caret, are kept."""
    ours = "SELECT * FROM read_parquet(['actstore://tables/tokens/part-00000.parquet'])"
    error = Exception(f'Binder Error: no "x"\n\nLINE 1: {ours}\n              ^\nhint: y')
    assert sql._message(error, "SELECT x FROM tokens") == 'Binder Error: no "x"\n  hint: y'
    mine = "SELECT * FROM tokens WHERE depth = 'x'"
    error = Exception(f"Conversion Error: no\n\nLINE 1: {mine}\n        ^^^")
    assert sql._message(error, mine) == f"Conversion Error: no\n  LINE 1: {mine}\n          ^^^"
    with actstore.open(small) as store:
        for query in ("SELECT upod FROM tokens", "SELECT * FROM tokenz", "SELECT Case FROM t"):
            with pytest.raises(actstore.SQLError) as caught:
                store.sql(query)
            message = str(caught.value)
            assert "actstore://" not in message and "read_parquet" not in message, message
            assert "actstore-sql-" not in message and "Traceback" not in message, message


def test_construction_holds_without_the_statement_check(small: Path) -> None:
    """The statement check only explains refusals: skip it, and writes still cannot happen."""
    before = _digest(small)
    views = {"tokens": ["tables/tokens/part-00000.parquet"]}
    with sql.connect(LocalStorage(small), views) as con:
        for statement in (
            "COPY (SELECT 1 AS x) TO 'actstore://tables/tokens/part-00000.parquet' (FORMAT csv)",
            f"COPY (SELECT 1 AS x) TO '{small / 'manifest.json'}' (FORMAT csv)",
            f"COPY (SELECT 1 AS x) TO '{small.parent / 'beside.csv'}' (FORMAT csv)",
            "SET enable_external_access = true",
            "SELECT * FROM read_parquet('actstore://manifest.json')",
        ):
            with pytest.raises(Exception):  # noqa: B017 - any refusal; the files decide
                con.execute(statement)
        con.execute("CREATE OR REPLACE VIEW tokens AS SELECT 1 AS row")  # lives and dies here
    rows = pq.read_table(small / views["tokens"][0]).num_rows
    with sql.connect(
        LocalStorage(small), views
    ) as con:  # a new connection sees the store, not the view
        assert con.execute("SELECT count(*) FROM tokens").fetchall() == [(rows,)]
    assert _digest(small) == before


@pytest.mark.parametrize(
    "path", ["../../../../etc/passwd", "/etc/passwd", "tables/../../x.parquet", "arrays.zarr/x"]
)
def test_manifest_paths_outside_the_store_are_refused(small: Path, path: str) -> None:
    manifest = json.loads((small / "manifest.json").read_text())
    manifest["tables"]["tokens"]["parts"][0]["path"] = path
    (small / "manifest.json").write_text(json.dumps(manifest))
    proc = _cli("sql", str(small), "SELECT 1 AS x")
    assert proc.returncode == 2, proc.stdout
    assert "not a path inside the store's tables/ folder" in proc.stderr, proc.stderr
    with pytest.raises(actstore.FormatError, match="not a path inside the store"):
        actstore.open(small)

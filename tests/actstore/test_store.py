"""Opening, locking, SQL and row selection."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import actstore
from actstore.cli import main


def test_open_errors(tmp_path: Path) -> None:
    with pytest.raises(actstore.StoreNotFoundError, match="does not exist"):
        actstore.open(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(actstore.StoreNotFoundError, match=r"has no manifest\.json"):
        actstore.open(tmp_path / "plain")
    with pytest.raises(FileExistsError, match="not a store"):
        actstore.create(tmp_path / "plain", overwrite=True)
    (tmp_path / "future").mkdir()
    (tmp_path / "future" / "manifest.json").write_text(
        json.dumps({"format": "actstore", "format_version": 99})
    )
    with pytest.raises(actstore.FormatError, match="newer than this actstore understands"):
        actstore.open(tmp_path / "future")


def test_create_refuses_existing_store_unless_overwrite(tmp_path: Path) -> None:
    actstore.create(tmp_path / "s").close()
    with pytest.raises(actstore.StoreExistsError, match="overwrite=True"):
        actstore.create(tmp_path / "s")
    actstore.create(tmp_path / "s", overwrite=True).close()


TRY_LOCK = """
import sys, actstore
try:
    actstore.open(sys.argv[1], mode="a").close()
    print("acquired")
except actstore.StoreLockedError as exc:
    print(exc)
"""


def _try_lock(path: Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", TRY_LOCK, str(path)], capture_output=True, text=True, check=True
    )
    return proc.stdout.strip()


def test_one_writer_at_a_time_and_readers_never_block(tmp_path: Path, ewt_dev: Path) -> None:
    path = tmp_path / "s"
    with actstore.create(path) as writer:
        actstore.ingest_conllu(writer, [ewt_dev])
        message = _try_lock(path)
        assert "is being written by another process" in message
        assert f"pid {os.getpid()}" in message and "readers are not blocked" in message
        with actstore.open(path) as reader:  # readers do not wait
            assert reader.n_rows("tokens") == 25147
    assert _try_lock(path) == "acquired"


def test_read_only_handle_refuses_writes(dev_store: actstore.Store) -> None:
    with pytest.raises(actstore.ReadOnlyError, match="open read-only"):
        dev_store.create_site("m/layer.0", n_units=4)


def test_sql_returns_frames_arrow_and_binds_parameters(
    dev_store: actstore.Store, ewt_dev: Path
) -> None:
    words = _word_lines(ewt_dev)
    frame = dev_store.sql("SELECT count(*) AS n FROM tokens WHERE upos = ?", ["NOUN"])
    assert frame["n"].item() == sum(w[3] == "NOUN" for w in words)
    query = "SELECT count(*) AS n FROM tokens WHERE position > $p"
    table = dev_store.sql(query, {"p": 50}, arrow=True)
    assert isinstance(table, pa.Table)
    assert table.column("n")[0].as_py() == sum(int(w[0]) > 50 for w in words) > 0


@pytest.mark.parametrize(
    ("query", "error", "match"),
    [
        ("DELETE FROM tokens", actstore.ReadOnlyError, "DELETE statements are not allowed"),
        ("CREATE TABLE x AS SELECT 1", actstore.ReadOnlyError, "CREATE statements are not allowed"),
        ("COPY tokens TO 'x.csv'", actstore.ReadOnlyError, "COPY statements are not allowed"),
        ("ATTACH 'x.db'", actstore.ReadOnlyError, "ATTACH statements are not allowed"),
        ("SELECT * FROM read_csv('/etc/passwd')", actstore.ReadOnlyError, "Cannot access file"),
        ("SELECT 1; SELECT 2", actstore.SQLError, "exactly one SQL statement, got 2"),
        ("SELEC 1", actstore.SQLError, "syntax error"),
        ("SELECT nope FROM tokens", actstore.SQLError, "nope"),
    ],
)
def test_sql_is_read_only(dev_store: actstore.Store, query: str, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        dev_store.sql(query)


def test_rows_selects_sorted_ids(dev_store: actstore.Store, ewt_dev: Path) -> None:
    rows = dev_store.rows("upos = 'NOUN' AND depth > 3")
    assert rows.dtype == np.int64 and (np.diff(rows) > 0).all()
    frame = dev_store.sql("SELECT row FROM tokens WHERE upos = 'NOUN' AND depth > 3 ORDER BY row")
    assert rows.tolist() == frame["row"].tolist()
    assert dev_store.rows().tolist() == list(range(25147))
    long_sentences = [b for b in ewt_dev.read_text().split("\n\n") if _n_words(b) > 60]
    assert dev_store.rows("n_words > ?", "sentences", [60]).size == len(long_sentences) > 0
    with pytest.raises(actstore.SchemaError, match="no table 'nope'"):
        dev_store.rows("1=1", table="nope")
    for escape in ("1=1); DROP VIEW tokens; SELECT (1", "1=1) OR (1=1", "depth > 3 /*"):
        with pytest.raises(actstore.ParameterError, match="where is not one SQL expression"):
            dev_store.rows(escape)
    # a trailing comment cannot swallow the rest of the query
    assert (
        dev_store.rows("upos = 'NOUN' -- nouns").tolist()
        == dev_store.rows("upos = 'NOUN'").tolist()
    )


def test_cli_sql_formats(
    dev_store_path: Path, ewt_dev: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    words = _word_lines(ewt_dev)
    sym, x = (sum(w[3] == tag for w in words) for tag in ("SYM", "X"))
    query = (
        "SELECT upos, count(*) AS n FROM tokens WHERE upos IN ('SYM', 'X') "
        "GROUP BY upos ORDER BY upos"
    )
    assert main(["sql", str(dev_store_path), query]) == 0
    assert capsys.readouterr().out.split() == ["upos", "n", "SYM", str(sym), "X", str(x)]
    assert main(["sql", str(dev_store_path), query, "--format", "csv"]) == 0
    assert capsys.readouterr().out == f"upos,n\nSYM,{sym}\nX,{x}\n"
    out = tmp_path / "r.json"
    assert main(["sql", str(dev_store_path), query, "--format", "json", "-o", str(out)]) == 0
    assert json.loads(out.read_text()) == [{"upos": "SYM", "n": sym}, {"upos": "X", "n": x}]
    assert main(["sql", str(dev_store_path), "DROP VIEW tokens"]) == 2
    assert capsys.readouterr().err.startswith("actstore: error: the store is read-only through SQL")


def test_info(dev_store_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(dev_store_path)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"tokens +25,147 rows", out) and re.search(r"sentences +2,001 rows", out)
    assert "corpus=en_ewt lang=en split=dev 2,001 sentences 25,147 words" in out
    assert main(["info", str(dev_store_path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["tables"]["tokens"]["n_rows"] == 25147
    assert info["bytes"]["total"] > info["bytes"]["tables"] > 0
    assert main(["info", str(dev_store_path.parent / "nope")]) == 2


def _n_words(block: str) -> int:
    return sum(line.split("\t")[0].isdigit() for line in block.splitlines())


def _word_lines(path: Path) -> list[list[str]]:
    """The columns of every word line (integer ID) of a CoNLL-U file."""
    lines = (line.split("\t") for line in path.read_text(encoding="utf-8").splitlines())
    return [cols for cols in lines if len(cols) == 10 and cols[0].isdigit()]


def test_columns_read_parts_in_row_order_like_sql(tmp_path: Path, ewt_dev: Path) -> None:
    """Two corpora whose parts carry different feature columns: NULL where a part lacks one."""
    from actstore.data import corpus_path

    with actstore.create(tmp_path / "two.actstore") as store:
        actstore.ingest_conllu(store, [corpus_path("pt_bosque", "dev"), ewt_dev])
        names = ["sentence_id", "upos", "depth", "Gender", "Poss"]  # Poss: EWT only
        got = store.columns(names).to_pandas()
        expected = store.sql(f"SELECT {', '.join(names)} FROM tokens ORDER BY row")
        with pytest.raises(actstore.SchemaError, match="no column 'nope' in tokens"):
            store.columns(["upos", "nope"])
    assert len(got) == store.n_rows("tokens")
    for name in names:
        left = got[name].astype(object).where(got[name].notna(), None).tolist()
        right = expected[name].astype(object).where(expected[name].notna(), None).tolist()
        assert left == right, name

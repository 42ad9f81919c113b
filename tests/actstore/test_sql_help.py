"""Messages and output that help: DuckDB's hints kept in SQL errors, feature columns
named like SQL keywords, close column names suggested, one rendering of NULL, JSON
without escaped slashes, and ``actstore info`` in aligned columns with its results
apart from the corpus tables. The expected strings are written by hand."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import actstore
from actstore.cli import main
from actstore.output import render
from queries.labels import prepare_labels
from queries.options import ProbeOptions


@pytest.fixture
def small(tmp_path: Path, ewt_small: Path) -> Path:
    """A copy of the first 120 sentences of EWT dev with a 4-unit site ``toy/layer.0``."""
    path = Path(shutil.copytree(ewt_small, tmp_path / "s.actstore"))
    with actstore.open(path, mode="a") as store:
        writer = store.create_site("toy/layer.0", n_units=4)
        writer.write(0, np.random.default_rng(0).standard_normal((store.n_rows(), 4)))
        writer.commit()
    return path


def _error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """What ``actstore ARGV`` says on stderr when it fails as a user mistake."""
    assert main(list(argv)) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("actstore: error: "), captured.err
    assert "Traceback" not in captured.err
    return captured.err


def test_a_misspelt_column_keeps_duckdbs_candidate_bindings(
    ewt_small: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _error(capsys, "sql", str(ewt_small), "SELECT upod, count(*) FROM tokens GROUP BY 1")
    first, *hints = err.splitlines()
    assert first == (
        'actstore: error: Binder Error: Referenced column "upod" not found in FROM clause!'
    )
    assert hints[0].startswith('  Candidate bindings: "upos"'), err


def test_a_keyword_column_unquoted_is_shown_and_quoting_suggested(
    ewt_small: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    query = "SELECT upos FROM tokens WHERE Case = 'Nom'"
    err = _error(capsys, "sql", str(ewt_small), query)
    assert err.splitlines() == [
        'actstore: error: Parser Error: syntax error at or near "="',
        "  LINE 1: SELECT upos FROM tokens WHERE Case = 'Nom'",
        "                                             ^",
        '  Case is an SQL keyword: write the column as "Case", in double quotes',
    ]
    quoted = "SELECT count(*) AS n FROM tokens WHERE \"Case\" = 'Nom'"
    assert main(["sql", str(ewt_small), quoted]) == 0
    assert int(capsys.readouterr().out.split()[-1]) > 0
    with actstore.open(ewt_small) as store:
        with pytest.raises(actstore.SQLError, match=r'Foreign are SQL keywords: .* "Foreign"'):
            store.sql("SELECT Case, Foreign FROM tokens")
        with pytest.raises(actstore.ParameterError, match='write the column as "Case"'):
            store.rows("upos = 'PRON' AND Case = 'Nom'")
        assert store.rows("upos = 'PRON' AND \"Case\" = 'Nom'").size > 0


def test_no_quoting_advice_where_quoting_would_not_help(ewt_small: Path) -> None:
    with actstore.open(ewt_small) as store:
        with pytest.raises(actstore.SQLError) as caught:
            store.sql("SELECT CASE WHEN depth > 3 THEN 1 END AS deep FROM tokens WHERE")
        assert "keyword" not in str(caught.value)
        with pytest.raises(actstore.ParameterError) as bad:
            store.rows("upos = 'NOUN' AND")
        assert "keyword" not in str(bad.value)


def test_an_unknown_table_lists_the_stores_tables(ewt_small: Path) -> None:
    with actstore.open(ewt_small) as store, pytest.raises(actstore.SQLError) as caught:
        store.sql("SELECT * FROM xyzzy")
    assert str(caught.value).splitlines() == [
        "Catalog Error: Table with name xyzzy does not exist!",
        "  tables: sentences, tokens",
    ]


def test_a_target_in_the_wrong_case_suggests_the_column(
    small: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["probe", str(small), "--sites", "toy/layer.0", "--target", "tense"]
    err = _error(capsys, *argv, "--kind", "classify")
    assert "--target is 'tense', but there is no column 'tense' in tokens" in err
    assert "(did you mean Tense?)" in err
    closest = r"did you mean deprel_base or deprel\?"
    with actstore.open(small) as store, pytest.raises(actstore.SchemaError, match=closest):
        prepare_labels(store, ProbeOptions("deprel_bas"))


def test_a_target_in_the_wrong_case_suggests_the_column_with_kind_auto(
    small: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _error(capsys, "probe", str(small), "--sites", "toy/layer.0", "--target", "tense")
    assert "(did you mean Tense?)" in err


def _cells(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()]


def test_table_output_renders_missing_values_as_null_for_pandas_and_arrow() -> None:
    frame = pd.DataFrame(
        {
            "upos": ["NOUN", None],
            "r": [0.5, np.nan],
            "n": pd.array([3, None], dtype="Int64"),
            "seen": [True, None],
        }
    )
    table = pa.table(
        {"upos": ["NOUN", None], "r": [0.5, None], "n": [3, None], "seen": [True, None]}
    )
    expected = [["upos", "r", "n", "seen"], ["NOUN", "0.5", "3", "True"], ["NULL"] * 4]
    assert _cells(render(frame, "table")) == expected
    assert _cells(render(table, "table")) == expected
    assert render(frame, "csv") == "upos,r,n,seen\nNOUN,0.5,3,True\n,,,\n"
    assert render(table, "csv") == "upos,r,n,seen\nNOUN,0.5,3,True\n,,,\n"


def test_json_output_escapes_no_slash_and_writes_null() -> None:
    frame = pd.DataFrame({"site": ["minilm/layer.3", "toy/layer.0"], "r": [0.25, np.nan]})
    table = pa.table({"site": ["minilm/layer.3", "toy/layer.0"], "r": [0.25, float("nan")]})
    expected = [{"site": "minilm/layer.3", "r": 0.25}, {"site": "toy/layer.0", "r": None}]
    for text in (render(frame, "json"), render(table, "json")):
        assert "\\/" not in text and '"minilm/layer.3"' in text
        assert json.loads(text) == expected


def test_cli_sql_prints_null_and_clean_json(
    ewt_small: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    query = "SELECT 'a/b' AS path, NULL AS nothing, CAST(NULL AS DOUBLE) AS x"
    assert main(["sql", str(ewt_small), query]) == 0
    assert _cells(capsys.readouterr().out) == [["path", "nothing", "x"], ["a/b", "NULL", "NULL"]]
    assert main(["sql", str(ewt_small), query, "--format", "json"]) == 0
    out = capsys.readouterr().out
    assert "\\/" not in out
    assert json.loads(out) == [{"path": "a/b", "nothing": None, "x": None}]


def test_info_lists_results_apart_and_aligns_long_names(
    small: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    long_name = "depth_correlations_of_every_unit_of_the_toy_site"
    base = ["correlate", str(small), "--sites", "toy/layer.0", "--with", "depth", "-q"]
    assert main([*base, "--save", long_name]) == 0
    assert main([*base, "--save", "c"]) == 0
    capsys.readouterr()
    assert main(["info", str(small)]) == 0
    out = capsys.readouterr().out.splitlines()
    tables, sites, results = (out.index(f"{s}:") for s in ("tables", "sites", "results"))
    assert tables < sites < results < out.index("sources:")
    assert [line.split()[0] for line in out[tables + 1 : sites]] == ["tokens", "sentences"]
    assert [line.split()[0] for line in out[results + 1 : results + 3]] == [long_name, "c"]
    listed = out[results + 1 : results + 3]
    assert listed[0].index("table") == listed[1].index("table") == len(f"  {long_name}  ")
    assert listed[0].index("rows") == listed[1].index("rows")  # the row counts line up
    assert listed[0].endswith("correlate") and listed[1].endswith("correlate")
    assert main(["info", str(small), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert sorted(info["tables"]) == ["sentences", "tokens"]
    assert sorted(info["results"]) == ["c", long_name]

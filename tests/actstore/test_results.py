"""Results: tables from pandas or Arrow with provenance, matrices with labels, listing,
replacing while a reader holds the old manifest, deleting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import actstore


def test_table_result_from_pandas_and_arrow(writable_store: actstore.Store) -> None:
    frame = pd.DataFrame({"row": [3, 1, 2], "score": [0.5, 1.5, 2.5]})
    writable_store.write_result("scores", frame, provenance={"analysis": "toy", "k": [1, 2]})
    got = writable_store.sql("SELECT row, score FROM scores ORDER BY row")
    assert got["row"].tolist() == [1, 2, 3] and got["score"].tolist() == [1.5, 2.5, 0.5]
    info = writable_store.results["scores"]
    assert (info.kind, info.shape, info.provenance) == (
        "table",
        (3,),
        {"analysis": "toy", "k": [1, 2]},
    )
    info.provenance["k"].append(3)  # a copy: the manifest is not changed through it
    assert writable_store.results["scores"].provenance["k"] == [1, 2]
    with pytest.raises(
        actstore.ParameterError, match=r"^replace is needed: a result named 'scores' exists alr"
    ):
        writable_store.write_result("scores", pa.table({"row": [7]}))
    writable_store.write_result("scores", pa.table({"row": [7]}), replace=True)
    assert writable_store.sql("SELECT * FROM scores")["row"].tolist() == [7]


def test_bad_results_are_refused(writable_store: actstore.Store) -> None:
    with pytest.raises(
        actstore.SchemaError, match=r"expected a pyarrow\.Table or a pandas\.DataFrame"
    ):
        writable_store.write_result("x", {"a": [1]})
    with pytest.raises(actstore.SchemaError, match="corpus table"):
        writable_store.write_result("tokens", pa.table({"a": [1]}))
    with pytest.raises(actstore.SchemaError, match="JSON-ready"):
        writable_store.write_result("x", pa.table({"a": [1]}), provenance={"f": object()})
    for clash in ("Tokens", "SENTENCES"):
        with pytest.raises(actstore.SchemaError, match=r"clashes with .* ignore case"):
            writable_store.write_result(clash, pa.table({"a": [1]}))
    writable_store.write_result("scores", pa.table({"a": [1]}))
    with pytest.raises(actstore.SchemaError, match="clashes with 'scores'"):
        writable_store.write_result("Scores", pa.table({"a": [1]}), replace=True)
    with pytest.raises(actstore.SchemaError, match="clashes with 'scores'"):
        writable_store.append_table("SCORES", pa.table({"a": [1]}))
    with pytest.raises(actstore.ParameterError, match="'nothing' is not a result"):
        writable_store.delete_result("nothing")
    assert "x" not in writable_store.results
    assert writable_store.sql("SELECT count(*) AS n FROM tokens")["n"][0] == 25147


def test_matrix_round_trip_with_labels(writable_store: actstore.Store) -> None:
    rng = np.random.default_rng(0)
    values = rng.standard_normal((5, 3))
    labels = pd.DataFrame({"label": list("abcde"), "n": [5, 4, 3, 2, 1]})
    writable_store.write_matrix(
        "m", values, rows=labels, columns=["x", "y", "z"], provenance={"analysis": "rdm"}
    )
    result = writable_store.matrix("m")
    np.testing.assert_array_equal(result.values.values, values)  # float64 kept exactly
    assert result.values.dims == ("row", "column")
    assert result.values.sel(row="d", column="y").values == values[3, 1]
    assert result.rows.column("n").to_pylist() == [5, 4, 3, 2, 1]
    assert writable_store.results["m"].shape == (5, 3)
    assert "m" not in writable_store.tables  # matrices are not SQL tables
    with pytest.raises(actstore.SchemaError, match="4 row labels for a matrix with 5 rows"):
        writable_store.write_matrix("bad", values, rows=list("abcd"), columns=list("xyz"))


def test_matrix_written_block_by_block(writable_store: actstore.Store) -> None:
    full = np.arange(7 * 6, dtype=np.float32).reshape(7, 6)
    writer = writable_store.create_matrix(
        "blocks", (7, 6), rows=[str(i) for i in range(7)], columns=[str(j) for j in range(6)]
    )
    for r in range(0, 7, 3):
        for c in range(0, 6, 4):
            writer.write(r, c, full[r : r + 3, c : c + 4])
    with pytest.raises(actstore.SchemaError, match="does not fit"):
        writer.write(6, 5, full[:2, :2])
    assert "blocks" not in writable_store.results  # nothing published before commit
    writer.commit()
    np.testing.assert_array_equal(writable_store.matrix("blocks").values.values, full)


def test_replacing_a_result_keeps_an_old_reader_working(tmp_path: Path, ewt_dev: Path) -> None:
    path = tmp_path / "s"
    with actstore.create(path) as store:
        actstore.ingest_conllu(store, [ewt_dev])
        store.write_result("r", pa.table({"v": [1, 2]}))
        store.write_matrix("m", np.ones((2, 2)), rows=["a", "b"], columns=["a", "b"])
    reader = actstore.open(path)
    with actstore.open(path, mode="a") as store:
        store.write_result("r", pa.table({"v": [3]}), replace=True)
        store.write_matrix("m", np.zeros((2, 2)), rows=["a", "b"], columns=["a", "b"], replace=True)
    assert reader.sql("SELECT sum(v) AS s FROM r")["s"][0] == 3  # the snapshot it took
    assert float(reader.matrix("m").values.sum()) == 4.0
    reader.close()
    with actstore.open(path, mode="a") as store:  # the next exclusive writer clears old files
        store.delete_result("m")
    with actstore.open(path, mode="a") as store:
        assert sorted(store.results) == ["r"]
    left = sorted(
        p.name.split("-")[0]
        for p in (path / "results").rglob("*")
        if p.parent.parent.name == "results"
    )
    assert left == ["part"], left

"""The verb seam: parameter classes become flags, library parameter errors become flag
errors on the command line, verbs are discovered by entry point and callable from Python."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

import actstore
from actstore import cli
from actstore.errors import ParameterError
from actstore.verbs import Verb, discover, option


@dataclass(frozen=True)
class Toy:
    store: Path = option(positional=True, help="store")
    offsets: tuple[int, ...] = option((0,), help="word offsets")
    align: Literal["mean", "first"] = option("mean", help="pieces -> word")
    spearman: bool = option(True, flag="--no-spearman", help="Pearson only")
    limit: int | None = option(None, help="at most this many")


CALLS: list[Toy] = []


def run_toy(params: Toy) -> str:
    CALLS.append(params)
    if params.limit == 0:
        raise ParameterError("limit", "must be positive, got 0")
    return "ran"


TOY = Verb("toy", "a toy verb", "actstore toy S", (Toy,), f"{__name__}:run_toy")


def test_parameters_become_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "discover", lambda: {"toy": TOY})
    CALLS.clear()
    assert (
        cli.main(["toy", "s.actstore", "--offsets=-1,0,2", "--align", "first", "--no-spearman"])
        == 0
    )
    assert [Toy(Path("s.actstore"), (-1, 0, 2), "first", False, None)] == CALLS
    assert cli.main(["toy", "s.actstore"]) == 0
    assert CALLS[-1] == Toy(Path("s.actstore"))


def test_library_errors_name_the_flag(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "discover", lambda: {"toy": TOY})
    assert cli.main(["toy", "s", "--limit", "0"]) == 2
    assert capsys.readouterr().err == "actstore: error: --limit must be positive, got 0\n"
    with pytest.raises(ParameterError, match=r"^limit must be positive"):
        TOY(store=Path("s"), limit=0)  # from Python the parameter keeps its own name
    with pytest.raises(SystemExit):
        cli.main(["toy", "s", "--align", "middle"])
    assert "invalid choice: 'middle'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["toy", "s", "--limit", "many"])
    assert "argument --limit: expects an integer, got 'many'" in capsys.readouterr().err


def test_python_calls_check_parameter_names() -> None:
    assert TOY(store=Path("s")) == "ran"
    with pytest.raises(ParameterError, match="colour is not a parameter of verb toy"):
        TOY(store=Path("s"), colour="red")


def test_os_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "s"
    actstore.create(store).close()
    out = tmp_path / "missing-dir" / "out.csv"
    assert cli.main(["sql", str(store), "SELECT 1 AS one", "-o", str(out)]) == 2
    assert capsys.readouterr().err == f"actstore: error: No such file or directory: {out}\n"


def test_every_registered_verb_has_help_and_an_example() -> None:
    verbs = discover()
    assert {"ingest", "sql", "info", "demo", "extract", "probe", "correlate"} <= set(verbs)
    for verb in verbs.values():
        assert verb.help and verb.example.startswith(f"actstore {verb.name}")
        verb.function()  # its implementation imports

"""CoNLL-U ingest: a hand-worked example, official counts, an independent parser."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import conllu
import numpy as np
import pytest

import actstore

# A hand-worked example. Expected values below were derived by hand from these lines.
EXAMPLE = "\n".join(
    [
        "# sent_id = s1",
        "# text = I don't know.",
        "1\tI\tI\tPRON\tPRP\tCase=Nom|Number=Sing|Person=1|PronType=Prs\t4\tnsubj\t4:nsubj\t_",
        "2-3\tdon't\t_\t_\t_\t_\t_\t_\t_\t_",
        "2\tdo\tdo\tAUX\tVBP\tMood=Ind|Tense=Pres|VerbForm=Fin\t4\taux\t4:aux\t_",
        "3\tn't\tnot\tPART\tRB\tPolarity=Neg\t4\tadvmod\t4:advmod\t_",
        "4\tknow\tknow\tVERB\tVB\tVerbForm=Inf\t0\troot\t0:root\tSpaceAfter=No",
        "5\t.\t.\tPUNCT\t.\t_\t4\tpunct\t4:punct\t_",
        "",
        "# sent_id = s2",
        "# newpar",
        "# text = My dog barks",
        "1\tMy\tmy\tPRON\tPRP$\tNumber[psor]=Sing|Person=1|Poss=Yes\t2\tnmod:poss\t_\t_",
        "2\tdog\tdog\tNOUN\tNN\tNumber=Sing\t3\tnsubj\t_\t_",
        "3\tbarks\tbark\tVERB\tVBZ\t_\t0\troot\t_\t_",
        "3.1\tbarks\tbark\tVERB\tVBZ\t_\t_\t_\t3:conj\t_",
        "",
    ]
)


@pytest.fixture
def example_store(tmp_path: Path) -> actstore.Store:
    src = tmp_path / "xx_tiny-ud-test.conllu"
    src.write_text(EXAMPLE + "\n", encoding="utf-8")
    store = actstore.create(tmp_path / "s.actstore")
    actstore.ingest_conllu(store, [src])
    return store


def column(store: actstore.Store, name: str, table: str = "tokens") -> list[object]:
    frame = store.sql(f'SELECT "{name}" AS v FROM {table} ORDER BY row', arrow=True)
    return frame.column("v").to_pylist()


def test_hand_worked_example(example_store: actstore.Store) -> None:
    s = example_store
    assert column(s, "row") == list(range(8))
    assert column(s, "sentence_id") == [0, 0, 0, 0, 0, 1, 1, 1]
    assert column(s, "position") == [1, 2, 3, 4, 5, 1, 2, 3]
    assert column(s, "form") == ["I", "do", "n't", "know", ".", "My", "dog", "barks"]
    assert column(s, "head") == [4, 4, 4, 0, 4, 2, 3, 0]
    assert column(s, "depth") == [2, 2, 2, 1, 2, 3, 2, 1]
    assert column(s, "n_children") == [0, 0, 0, 4, 0, 0, 1, 1]
    assert column(s, "head_distance") == [3, 2, 1, None, -1, 1, 1, None]
    assert column(s, "sentence_length") == [5] * 5 + [3] * 3
    assert column(s, "deprel_base")[5] == "nmod"
    assert column(s, "deprel")[5] == "nmod:poss"
    assert column(s, "mwt_start") == [None, 2, 2, None, None, None, None, None]
    assert column(s, "mwt_end") == [None, 3, 3, None, None, None, None, None]
    assert column(s, "mwt_form") == [None, "don't", "don't", None, None, None, None, None]
    assert column(s, "space_after") == [True, True, True, False, True, True, True, True]
    assert column(s, "feats")[4] is None
    assert column(s, "misc")[3] == "SpaceAfter=No"
    assert column(s, "Case")[:2] == ["Nom", None]
    assert column(s, "Number_psor")[5] == "Sing"
    assert column(s, "Polarity")[2] == "Neg"
    assert set(column(s, "lang")) == {"xx"}
    assert set(column(s, "corpus")) == {"xx_tiny"}
    assert set(column(s, "split")) == {"test"}
    assert column(s, "sent_id", "sentences") == ["s1", "s2"]
    assert column(s, "text", "sentences") == ["I don't know.", "My dog barks"]
    assert column(s, "comments", "sentences") == [[], ["newpar"]]
    assert column(s, "n_words", "sentences") == [5, 3]
    assert column(s, "n_tokens", "sentences") == [4, 3]
    assert column(s, "n_empty_nodes", "sentences") == [0, 1]
    assert column(s, "first_row", "sentences") == [0, 5]
    assert column(s, "line", "sentences") == [1, 10]
    (source,) = s.sources
    assert (source.n_multiword_tokens, source.n_empty_nodes) == (1, 1)


def _official_counts(stats: Path) -> dict[str, dict[str, int]]:
    size = ET.parse(stats).getroot().find("size")
    assert size is not None
    return {
        split.tag: {
            field: int(split.findtext(field) or 0) for field in ("sentences", "words", "fused")
        }
        for split in size
    }


def _treebank_files(ud: Path) -> list[Path]:
    return sorted(ud.glob("*/*.conllu"))


def test_counts_equal_stats_xml(ud_dir: Path, tmp_path: Path) -> None:
    """Every treebank split in shared/data: words and sentences equal the official stats.xml."""
    files = _treebank_files(ud_dir)
    assert len(files) == 14
    with actstore.create(tmp_path / "all.actstore") as store:
        actstore.ingest_conllu(store, files)
        got = store.sql(
            "SELECT corpus, split, count(*) AS words, count(DISTINCT sentence_id) AS sentences "
            "FROM tokens GROUP BY ALL",
            arrow=True,
        ).to_pylist()
        by_file = {(r["corpus"], r["split"]): r for r in got}
        fused = {(s.corpus, s.split): s.n_multiword_tokens for s in store.sources}
        assert store.n_rows("tokens") == sum(r["words"] for r in got)
    for path in files:
        corpus, split = path.parent.name, path.stem.rsplit("-", 1)[1]
        official = _official_counts(path.parent / "stats.xml")[split]
        assert by_file[(corpus, split)]["words"] == official["words"], path
        assert by_file[(corpus, split)]["sentences"] == official["sentences"], path
        assert fused[(corpus, split)] == official["fused"], path


def _reference_tree_measures(path: Path) -> tuple[list[int], list[int]]:
    """Depth and child counts from the independent `conllu` package's trees."""
    depths: list[int] = []
    children: list[int] = []
    with open(path, encoding="utf-8") as fh:
        for sentence in conllu.parse_incr(fh):
            words = [t for t in sentence if isinstance(t["id"], int)]
            depth_of: dict[int, int] = {}
            count_of: dict[int, int] = {}

            stack = [(sentence.to_tree(), 1)]
            while stack:
                node, depth = stack.pop()
                depth_of[node.token["id"]] = depth
                count_of[node.token["id"]] = len(node.children)
                stack += [(child, depth + 1) for child in node.children]
            depths += [depth_of[t["id"]] for t in words]
            children += [count_of[t["id"]] for t in words]
    return depths, children


def test_depth_and_children_match_conllu_package(dev_store: actstore.Store, ewt_dev: Path) -> None:
    depths, children = _reference_tree_measures(ewt_dev)
    table = dev_store.sql("SELECT depth, n_children FROM tokens ORDER BY row", arrow=True)
    assert table.column("depth").to_pylist() == depths
    assert table.column("n_children").to_pylist() == children


def test_forms_and_features_match_conllu_package(dev_store: actstore.Store, ewt_dev: Path) -> None:
    with open(ewt_dev, encoding="utf-8") as fh:
        words = [t for s in conllu.parse_incr(fh) for t in s if isinstance(t["id"], int)]
    table = dev_store.sql(
        'SELECT form, upos, "Tense", "Number" FROM tokens ORDER BY row', arrow=True
    )
    assert table.column("form").to_pylist() == [w["form"] for w in words]
    assert table.column("upos").to_pylist() == [w["upos"] for w in words]
    assert table.column("Tense").to_pylist() == [(w["feats"] or {}).get("Tense") for w in words]
    assert table.column("Number").to_pylist() == [(w["feats"] or {}).get("Number") for w in words]


def test_append_languages(tmp_path: Path, ud_dir: Path) -> None:
    """Appending a second language continues rows and sentence ids; feature sets unite."""
    de = ud_dir / "de_gsd" / "de_gsd-ud-dev.conllu"
    nl = ud_dir / "nl_alpino" / "nl_alpino-ud-dev.conllu"
    with actstore.create(tmp_path / "s") as store:
        actstore.ingest_conllu(store, [de])
    with actstore.open(tmp_path / "s", mode="a") as store:
        actstore.ingest_conllu(store, [nl], split="development")
        rows = store.sql(
            "SELECT row, sentence_id, lang, split FROM tokens ORDER BY row", arrow=True
        )
        assert rows.column("row").to_pylist() == list(range(12480 + 11541))
        sentence_ids = np.asarray(rows.column("sentence_id"))
        assert sentence_ids[-1] == 799 + 718 - 1 and (np.diff(sentence_ids) >= 0).all()
        by_lang = store.sql(
            "SELECT lang, split, count(*) AS n FROM tokens GROUP BY ALL ORDER BY lang"
        )
        assert by_lang.to_dict("records") == [
            {"lang": "de", "split": "dev", "n": 12480},
            {"lang": "nl", "split": "development", "n": 11541},
        ]
        # Each file's words with a Case feature, counted from the raw lines.
        case = store.sql('SELECT lang, count("Case") AS n FROM tokens GROUP BY lang ORDER BY lang')
        assert case["n"].tolist() == [_count_feature(de, "Case"), _count_feature(nl, "Case")]
        first = store.sql("SELECT first_row FROM sentences WHERE sentence_id = 799")
        assert first["first_row"].item() == 12480


def _count_feature(path: Path, name: str) -> int:
    count = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        cols = line.split("\t")
        if len(cols) == 10 and cols[0].isdigit():
            count += any(f.split("=")[0] == name for f in cols[5].split("|"))
    return count

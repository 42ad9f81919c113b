"""The analysis verbs: light to declare, the flags and defaults of before, Python calls
that return the full table, errors that name parameters (and flags on the command line)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import actstore
from actstore.cli import parser
from actstore.verbs import discover, verb
from queries import verbs as analysis_verbs
from queries.selectivity import default_map_site

SiteWriter = Callable[..., np.ndarray]
FLAGS = {
    "probe": {
        "--sites": None, "--where": None, "--target": None, "--offsets": (0,),
        "--control": False, "--device": "auto", "--seed": 0, "--epochs": 10.0, "--patience": 3,
        "--max-steps": 20_000, "--kind": "auto", "--scoring": "feature", "--per-class": False,
        "--l1": 0.0, "--top-units": (),
        "--folds": 0, "--test-where": None, "--apply": None, "--apply-store": None,
        "--memory-gib": 1.0,
    },
    "correlate": {
        "--sites": None, "--where": None, "--with": None, "--top": 5, "--no-spearman": True,
    },
    "dynamics": {"--sites": None, "--where": None, "--with": "depth", "--min-words": 3},
    "measures": {
        "--sites": None, "--gate-site": None, "--name": "measures",
        "--by": ("upos", "deprel"), "--min-count": 500, "--where": None,
    },
    "selectivity": {
        "--sites": None, "--by": "form", "--where": None, "--min-count": 5, "--top": 10,
        "--units": None, "--map-site": None, "--function-words": False,
    },
}  # fmt: skip
COMMON = {
    "--store": None,  # the alias of the first argument
    "--format": "table", "--output": None, "--quiet": False, "--save": None, "--replace": False,
    "--plot": None,
}  # fmt: skip


def test_declaring_the_verbs_imports_nothing_heavy() -> None:
    code = (
        "import sys, queries.verbs; "
        "print(sorted(m for m in ('numpy', 'pandas', 'torch', 'dask', 'xarray', 'pyarrow') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_flags_and_defaults_are_as_before() -> None:
    registered = discover()
    for name, flags in FLAGS.items():
        assert registered[name] is getattr(analysis_verbs, name.upper())
        sub = parser({name: registered[name]})._subparsers._group_actions[0].choices[name]
        actions = {a.option_strings[0]: a for a in sub._actions if a.option_strings}
        for flag, default in {**flags, **COMMON}.items():
            assert flag in actions, f"{name} {flag}"
            assert actions[flag].default == default, f"{name} {flag}"
        positional = [a.dest for a in sub._actions if not a.option_strings]
        assert positional == ["store"]
        assert set(actions) - {"-h"} == set(flags) | set(COMMON), name


@pytest.fixture
def small_store(
    ewt_small: Path, tmp_path: Path, site_writer: SiteWriter
) -> tuple[Path, np.ndarray]:
    path = tmp_path / "small.actstore"
    shutil.copytree(ewt_small, path)
    with actstore.open(path, mode="a") as store:
        depth = store.sql("SELECT depth FROM tokens ORDER BY row")["depth"].to_numpy(float)
        values = np.random.default_rng(1).normal(size=(depth.size, 6)).astype(np.float32)
        values[:, 2] += depth
        stored = site_writer(store, "toy/layer.0", values, model="toy", hidden_state=0)
    return path, stored


def test_python_calls_return_the_full_table(
    small_store: tuple[Path, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, stored = small_store
    common = {"store": path, "sites": "*", "quiet": True}
    probes = verb("probe")(
        **common, target="upos", control=True, device="cpu", save="p", plot=tmp_path / "p.png"
    )
    assert set(probes["metric"]) == {
        "accuracy", "macro_f1", "majority", "control_accuracy", "selectivity",
    }  # fmt: skip
    correlations = verb("correlate")(**common, covariate="depth", save="c", top=1)
    assert len(correlations) == 2 * 6  # every unit, not only the top one printed
    with actstore.open(path) as store:
        depth = store.sql("SELECT depth FROM tokens ORDER BY row")["depth"].to_numpy(float)
    pearson = correlations[correlations.metric == "pearson"].sort_values("unit")["value"]
    expected = [np.corrcoef(stored[:, u], depth)[0, 1] for u in range(6)]
    np.testing.assert_allclose(pearson, expected, atol=2e-6)
    dynamics = verb("dynamics")(**common, covariate="depth", save="d", plot=tmp_path / "d.png")
    assert list(dynamics["lang"]) == ["en"]
    assert capsys.readouterr().out == ""  # quiet
    with actstore.open(path) as store:
        results = store.results
        assert results["p"].provenance["parameters"]["target"] == "upos"
        assert results["c"].provenance["parameters"]["covariate"] == "depth"
        assert results["d"].provenance["sites"] == ["toy/layer.0"]
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(actstore.SchemaError, match="a result named 'c' exists already"):
        verb("correlate")(**common, covariate="position", save="c")
    verb("correlate")(**common, covariate="position", save="c", replace=True)
    with actstore.open(path) as store:
        assert store.results["c"].provenance["parameters"]["covariate"] == "position"


def test_errors_name_parameters(small_store: tuple[Path, np.ndarray]) -> None:
    path, _ = small_store
    with pytest.raises(actstore.ParameterError, match=r"^units takes comma-separated unit"):
        verb("selectivity")(store=path, sites="toy/layer.0", units="a,b", quiet=True)
    with pytest.raises(actstore.ParameterError, match=r"^device 'cuda:7' asked for"):
        verb("probe")(store=path, sites="*", target="upos", device="cuda:7", quiet=True)
    with pytest.raises(actstore.ParameterError, match=r"^where 'row < 0': no tokens selected"):
        verb("probe")(store=path, sites="*", target="upos", where="row < 0", quiet=True)


def test_the_lexical_map_site_comes_from_provenance(toy_store: Path) -> None:
    with actstore.open(toy_store) as store:
        assert default_map_site(store, "toy/layer.3") == "toy/layer.0"
        assert default_map_site(store, "toy/layer.0") == "toy/layer.0"

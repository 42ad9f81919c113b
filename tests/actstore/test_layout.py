"""The layering the design promises, checked on the source: the core imports neither
extractors nor queries, those two never import each other, no package has an import
cycle, modules stay small, and the command line starts without the heavy libraries."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("actstore", "extractors", "queries")
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def _imports(path: Path, name: str) -> set[str]:
    """Modules ``path`` imports, at any depth (inside functions too), absolute names."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _top_level_imports(path: Path) -> set[str]:
    """Modules imported at module level (not inside functions or TYPE_CHECKING blocks)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


MODULES = _modules()


def test_the_checker_sees_imports_inside_functions() -> None:
    source = "def f():\n    from queries.probe import probe\n"
    path = ROOT / "tests" / "actstore" / "_probe_source.py"
    try:
        path.write_text(source, encoding="utf-8")
        assert "queries.probe" in _imports(path, "actstore.x")
    finally:
        path.unlink()


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("actstore", ("extractors", "queries")),
        ("extractors", ("queries",)),
        ("queries", ("extractors",)),
    ],
)
def test_layers_point_one_way(package: str, forbidden: tuple[str, ...]) -> None:
    offenders = [
        f"{name} imports {imported}"
        for name, path in MODULES.items()
        if name.split(".")[0] == package
        for imported in _imports(path, name)
        if imported.split(".")[0] in forbidden
    ]
    assert not offenders, offenders


def test_no_import_cycles() -> None:
    graph = {
        name: {m for m in _top_level_imports(path) if m in MODULES and m != name}
        for name, path in MODULES.items()
    }
    # a package's __init__ is imported before its modules: it may name them lazily only
    visiting: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> None:
        if node in done:
            return
        assert node not in visiting, " -> ".join([*visiting[visiting.index(node) :], node])
        visiting.append(node)
        for nxt in sorted(graph[node]):
            visit(nxt)
        visiting.pop()
        done.add(node)

    for name in sorted(graph):
        visit(name)


def test_modules_stay_small() -> None:
    big = {
        name: n
        for name, path in MODULES.items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not big, big


HEAVY = (
    "torch",
    "transformers",
    "xarray",
    "dask",
    "pandas",
    "scipy",
    "sklearn",
    "matplotlib",
    "zarr",
)


@pytest.mark.parametrize("argv", [["--help"], ["sql", "--help"], ["probe", "--help"]])
def test_command_line_starts_without_heavy_libraries(argv: list[str]) -> None:
    code = (
        "import sys\nfrom actstore.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout[-500:]


def test_sql_runs_without_xarray_dask_or_pandas(dev_store_path: Path) -> None:
    code = (
        "import sys\nfrom actstore.cli import main\n"
        f"main(['sql', {str(dev_store_path)!r}, 'SELECT count(*) AS n FROM tokens'])\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = proc.stdout.strip().splitlines()
    assert lines[-2].split() == ["25147"] and lines[-1] == "[]", proc.stdout

"""pyproject.toml's package list and package data cover the source tree.

The wheel ships exactly the packages listed under ``[tool.setuptools] packages`` and the files
matched by ``package-data`` (``include-package-data = false``), so a new folder or data file
that is not listed there would be missing from an installed baton while the editable checkout
still works. These checks read the tree, not a built wheel (``make packaging-test`` builds one).
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE_ROOTS = ("agents", "broker", "protocol")


@pytest.fixture(scope="module")
def setuptools_cfg() -> dict[str, Any]:
    cfg: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return cfg


def package_of(folder: Path, package_dir: dict[str, str]) -> str:
    """The import name of ``folder`` (relative to the repository) under the package-dir mapping."""
    rel = folder.as_posix()
    matches = [(src, pkg) for pkg, src in package_dir.items() if rel == src or rel.startswith(src + "/")]
    assert matches, f"{rel} is under no package-dir entry"
    src, pkg = max(matches, key=lambda m: len(m[0]))  # the most specific mapping wins
    rest = rel[len(src) :].strip("/")
    return ".".join([pkg, *rest.split("/")]) if rest else pkg


def folder_of(package: str, package_dir: dict[str, str]) -> str:
    """The folder (relative to the repository) that holds ``package`` under the package-dir mapping."""
    parts = package.split(".")
    for n in range(len(parts), 0, -1):  # the most specific mapping wins
        if (src := package_dir.get(".".join(parts[:n]))) is not None:
            return "/".join([src, *parts[n:]])
    raise AssertionError(f"{package} is under no package-dir entry")


def package_folders() -> list[Path]:
    return sorted(
        init.parent.relative_to(ROOT)
        for base in SOURCE_ROOTS
        for init in (ROOT / base).rglob("__init__.py")
        if "__pycache__" not in init.parts
    )


def test_every_package_folder_is_listed(setuptools_cfg: dict[str, Any]) -> None:
    found = {package_of(folder, setuptools_cfg["package-dir"]) for folder in package_folders()}
    listed = set(setuptools_cfg["packages"])
    assert found - listed == set(), "folders with __init__.py missing from pyproject.toml `packages`"
    assert listed - found == set(), "pyproject.toml `packages` lists packages with no folder"


def test_package_dir_maps_the_three_roots(setuptools_cfg: dict[str, Any]) -> None:
    mapping = setuptools_cfg["package-dir"]
    assert mapping["baton"] == "agents/client"
    assert {mapping[f"baton.{root}"] for root in SOURCE_ROOTS} == set(SOURCE_ROOTS)


def test_every_data_file_is_package_data(setuptools_cfg: dict[str, Any]) -> None:
    assert setuptools_cfg.get("include-package-data") is False
    package_dir = setuptools_cfg["package-dir"]
    covered: set[Path] = set()
    for pkg, patterns in setuptools_cfg["package-data"].items():
        assert pkg in setuptools_cfg["packages"], f"package-data names {pkg}, which is not in `packages`"
        base = ROOT / folder_of(pkg, package_dir)
        for pattern in patterns:
            hits = set(base.glob(pattern))
            assert hits, f"package-data {pkg}: {pattern!r} matches no file"
            covered |= hits
    data = {
        path
        for base in SOURCE_ROOTS
        for path in (ROOT / base).rglob("*")
        if path.is_file() and path.suffix not in {".py", ".pyc"} and "__pycache__" not in path.parts
    }
    assert sorted(p.relative_to(ROOT).as_posix() for p in data - covered) == []



def infrastructure_imports(source: str) -> list[str]:
    """What ``source`` imports of the repository's test or bench infrastructure (``tests``, ``bench``:
    not in the wheel)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            found.append(node.module or "")
    return [name for name in found if name.split(".")[0] in {"tests", "bench"}]


def test_test_and_bench_infrastructure_does_not_ship() -> None:
    shipped = [p for base in SOURCE_ROOTS for p in (ROOT / base).rglob("*.py") if "__pycache__" not in p.parts]
    assert len(shipped) > 50 and (ROOT / "bench" / "localcluster.py").is_file()
    assert [p.relative_to(ROOT).as_posix() for p in shipped if p.stem == "localcluster"] == []
    found = {p.relative_to(ROOT).as_posix(): names for p in shipped if (names := infrastructure_imports(p.read_text()))}
    assert found == {}


def test_the_infrastructure_check_can_fail() -> None:
    source = "from bench.localcluster import LocalCluster\nimport tests.waiting\nfrom .bench import x\nimport benches\n"
    assert infrastructure_imports(source) == ["bench.localcluster", "tests.waiting"]

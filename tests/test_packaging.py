"""pyproject.toml declares what the package imports, no more, and names every package."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))

#: distribution name -> the module it installs, where they differ
IMPORT_NAME = {"pillow": "PIL", "scikit-learn": "sklearn", "cuml-cu12": "cuml"}


def _distribution(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower()


def _imported_modules() -> set[str]:
    found = set()
    for path in (REPO / "vo_similarity").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


def test_every_runtime_dependency_is_imported_by_the_package():
    imported = _imported_modules()
    declared = [*PYPROJECT["project"]["dependencies"],
                *PYPROJECT["project"]["optional-dependencies"]["gpu"]]
    unused = [r for r in declared
              if IMPORT_NAME.get(_distribution(r), _distribution(r)) not in imported]
    assert unused == [], f"declared but never imported by vo_similarity: {unused}"


def test_dependencies_that_need_it_are_pinned():
    deps = {_distribution(r): r for r in PYPROJECT["project"]["dependencies"]}
    # torch and torchvision only import together at matching versions; lightly
    # follows its own major version's API.
    assert "==" in deps["torch"] and "==" in deps["torchvision"]
    assert "<2" in deps["lightly"]
    assert all(re.search(r"[<>=]=?", r) for r in deps.values()), deps


def test_every_package_of_the_tree_is_listed():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    tree = {".".join(p.parent.relative_to(REPO).parts)
            for p in (REPO / "vo_similarity").rglob("__init__.py")}
    assert tree - listed == set(), "add to [tool.setuptools] packages in pyproject.toml"
    assert {"vo_similarity.resdir", "vo_similarity.sql"} <= listed

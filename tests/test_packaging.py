"""pyproject.toml declares what the package imports, no more, and names every package.

`pip install vo-similarity` is the astronomer's light client; the extra `pipeline`
carries the archive's stack (training, ONNX export, database). The client's
modules, and every module of ours they import, import only the light set.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))

#: distribution name -> the module it installs, where they differ
IMPORT_NAME = {"pillow": "PIL", "scikit-learn": "sklearn", "cuml-cu12": "cuml"}

#: what `pip install vo-similarity` (the client) installs, as distributions
LIGHT = {"numpy", "astropy", "pillow", "pyvo", "astroquery", "requests", "onnxruntime"}
#: the heavy stack the client must not need
HEAVY = {"torch", "torchvision", "lightly", "optuna", "scikit-learn", "psycopg", "matplotlib",
         "scipy", "tqdm", "onnx"}


def _distribution(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower()


def _imports(path: Path, package: str) -> set[str]:
    """Every module ``path`` imports (also inside functions), relative ones resolved
    against ``package``; ``if TYPE_CHECKING:`` blocks are not run, so not counted."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level \
                else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.add(module)
            # `from pkg import name` may import the submodule pkg.name
            found |= {f"{module}.{alias.name}" for alias in node.names}
    return found


def _module_file(module: str) -> Path | None:
    """Our source file of ``module`` (a package's ``__init__.py``), or None."""
    parts = module.split(".")
    if parts[0] != "vo_similarity":
        return None
    base = REPO.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules() -> set[str]:
    found = set()
    for path in (REPO / "vo_similarity").rglob("*.py"):
        package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
        found |= {m.split(".")[0] for m in _imports(path, package)}
    return found


def _closure(start: list[str]) -> dict[str, set[str]]:
    """Each module of ours that importing ``start`` can load -> its third-party
    top-level imports (the packages above a module are loaded too)."""
    todo = list(start)
    seen: dict[str, set[str]] = {}
    while todo:
        module = todo.pop()
        path = _module_file(module)
        if path is None or module in seen:
            continue
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        imports = _imports(path, package)
        parents = [".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)]
        seen[module] = {m.split(".")[0] for m in imports if not m.startswith("vo_similarity")}
        todo += [m for m in imports if m.startswith("vo_similarity")] + parents
    return seen


def test_every_runtime_dependency_is_imported_by_the_package():
    imported = _imported_modules()
    extras = PYPROJECT["project"]["optional-dependencies"]
    declared = [*PYPROJECT["project"]["dependencies"], *extras["pipeline"], *extras["gpu"]]
    unused = [r for r in declared
              if IMPORT_NAME.get(_distribution(r), _distribution(r)) not in imported]
    assert unused == [], f"declared but never imported by vo_similarity: {unused}"


def test_the_plain_install_is_the_light_client_and_the_pipeline_an_extra():
    core = {_distribution(r) for r in PYPROJECT["project"]["dependencies"]}
    pipeline = {_distribution(r) for r in PYPROJECT["project"]["optional-dependencies"]["pipeline"]}
    assert core == LIGHT, "`pip install vo-similarity` must stay the light client"
    assert HEAVY <= pipeline and not pipeline & core


def test_the_client_imports_only_the_light_set():
    light = {IMPORT_NAME.get(d, d) for d in LIGHT}
    closure = _closure([".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
                        for p in (REPO / "vo_similarity" / "client").rglob("*.py")])
    # the analysis sees a heavy import through our modules: the exporter needs torch
    assert "torch" in set().union(*_closure(["vo_similarity.embed.onnx_export"]).values())
    assert "vo_similarity.client.embedding" in closure
    assert "vo_similarity.ingest.readers" in closure  # reached through embedding
    outside = {module: sorted(names - light - sys.stdlib_module_names)
               for module, names in closure.items()}
    assert {m: n for m, n in outside.items() if n} == {}, \
        "the light client (pip install vo-similarity) would miss these"


def test_dependencies_that_need_it_are_pinned():
    extras = PYPROJECT["project"]["optional-dependencies"]
    deps = {_distribution(r): r for r in [*PYPROJECT["project"]["dependencies"],
                                          *extras["pipeline"]]}
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

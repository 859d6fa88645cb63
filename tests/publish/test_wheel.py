"""The package as users install it: a wheel built from the repository, in a fresh venv.

The wheel must carry what the code reads at run time (the DaCHS resource
directory, the SQL, the shipped checkpoint) and find it through
importlib.resources, so that ``vo-similarity publish`` works with no checkout
in sight. The fresh environment gets the wheel itself; its dependencies come
from the suite's own environment through a path file (installing torch anew
would take minutes and say nothing about our package).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.dachs, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def _run(*cmd: str | os.PathLike[str], cwd: Path, env: dict | None = None,
         timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=timeout, check=False)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # A clean copy of the sources: setuptools builds in the source tree, and a
    # stale build/ in a checkout would let files into the wheel that
    # pyproject.toml does not name.
    source = out / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "work", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"))
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "-q", "-w", out, source, cwd=out)
    (found,) = out.glob("vo_similarity-*.whl")
    return found


#: Of what npm fetched (vo_similarity/web/node_modules), the one file the page serves.
NPM_SERVED = "vo_similarity/web/node_modules/sampjs/samp.js"


def _files(folder: Path, prefix: str) -> set[str]:
    """What the wheel must hold of ``folder``: its files, less caches, hidden files
    and the npm packages' other files."""
    return {name for p in folder.rglob("*")
            if p.is_file() and not any(part.startswith((".", "__pycache__"))
                                       for part in p.relative_to(folder).parts)
            for name in [f"{prefix}/{p.relative_to(folder)}"]
            if "/node_modules/" not in name or name == NPM_SERVED}


def test_wheel_carries_every_module_and_resource(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = (_files(REPO / "vo_similarity", "vo_similarity")
                | _files(REPO / "resdir", "vo_similarity/resdir")
                | _files(REPO / "sql", "vo_similarity/sql"))
    missing = sorted(expected - names)
    assert missing == [], f"the wheel lacks (add them to pyproject.toml): {missing}"
    assert "vo_similarity/resdir/similarity/q.rd" in names
    assert "vo_similarity/data/simclr_builtin.fp16.pt" in names


def test_publish_from_an_installed_wheel(wheel, site, published, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    _run(python, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
         "--disable-pip-version-check", wheel, cwd=tmp_path)
    fresh_site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                           cwd=tmp_path).stdout.strip())
    (fresh_site / "suite_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    # Far from the checkout, with only the environment's own files on its path.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = _run(python, "-c", "import vo_similarity.resources as r, vo_similarity as v; "
                 "print(v.__file__); print(r.resource_dir()); print(r.sql_files()[0])",
                 cwd=tmp_path, env=env).stdout.split()
    assert all(Path(p).is_relative_to(env_dir) for p in where), where

    proc = _run(env_dir / "bin" / "vo-similarity", "publish", "--quiet",
                published.work.root, cwd=tmp_path, env=env)
    assert "Published in DaCHS at " + site.url in proc.stdout
    installed_rd = Path(where[1]) / "q.rd"
    assert (site.resdir / "q.rd").read_bytes() == installed_rd.read_bytes()

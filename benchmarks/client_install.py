"""Size and install time of the light client against the full pipeline install.

Builds two fresh virtual environments in a temporary folder, one with the client
only (``pip install <repo>``) and one with the archive pipeline
(``pip install '<repo>[pipeline]'``), both with pip's cache off so that neither
profits from the other, and prints for each the install time, the size on disk
(``du``) and the number of distributions, then the ratios. In the client
environment it also checks that torch is absent and that the client imports.
pip builds from a clean copy of the sources (setuptools would leave build/ in the
checkout).

    .venv/bin/python benchmarks/client_install.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _du_bytes(path: Path) -> int:
    """Disk usage of ``path`` as ``du`` counts it (blocks, hard links once)."""
    out = subprocess.run(["du", "-s", "--block-size=1", str(path)], check=True,
                         capture_output=True, text=True).stdout
    return int(out.split()[0])


def _install(root: Path, name: str, requirement: str) -> dict:
    env = root / name
    venv.EnvBuilder(with_pip=True).create(env)
    python = env / "bin" / "python"
    base = _du_bytes(env)
    start = time.perf_counter()
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-cache-dir",
                           "--disable-pip-version-check", requirement],
                          check=False, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:  # pip's own messages only then: it warns about every mirror folder
        sys.exit(f"pip install {requirement} failed:\n{done.stdout}{done.stderr}")
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format=freeze"], check=True,
                            capture_output=True, text=True).stdout.split()
    return {"env": env, "python": python, "seconds": seconds, "bytes": _du_bytes(env),
            "empty_bytes": base, "distributions": len(listed),
            "torch": any(line.lower().startswith("torch==") for line in listed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep", type=Path, help="build the environments here and keep them")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="vo-similarity-install-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        source = root / "source"
        shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
            ".git", ".venv", "work", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"))
        client = _install(root, "client", str(source))
        full = _install(root, "full", f"{source}[pipeline]")
        check = ("import vo_similarity.client.embedding, sys; "
                 "assert 'torch' not in sys.modules; print('client imports without torch')")
        print(subprocess.run([str(client["python"]), "-c", check], check=True,
                             capture_output=True, text=True, cwd=root).stdout.strip())
        print(f"python {sys.version.split()[0]}, pip cache off, empty venv "
              f"{client['empty_bytes'] / 2**20:.0f} MiB")
        print(f"{'install':<38} {'time s':>8} {'size MiB':>10} {'dists':>6}  torch")
        for label, r in (("client: pip install <repo>", client),
                         ("full: pip install '<repo>[pipeline]'", full)):
            print(f"{label:<38} {r['seconds']:8.1f} {r['bytes'] / 2**20:10.0f} "
                  f"{r['distributions']:6d}  {'yes' if r['torch'] else 'no'}")
        print(f"ratio full/client: size {full['bytes'] / client['bytes']:.1f}x, "
              f"time {full['seconds'] / client['seconds']:.1f}x")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

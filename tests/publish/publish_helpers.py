"""Helpers shared by the publish tests (fixtures are in conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

from vo_similarity.publish.dachs import DachsSite
from vo_similarity.workdir import WorkDir

N_IMAGES, K = 60, 20
MODELS = ("sample", "galactic")


@dataclass
class Published:
    work: WorkDir
    stdout: str
    query: str


def run_publish(*args: str, env: dict | None = None, check: bool = True
                ) -> subprocess.CompletedProcess:
    """Run ``vo-similarity publish ARGS`` in a subprocess."""
    proc = subprocess.run(
        [sys.executable, "-m", "vo_similarity", "publish", "--quiet", *args],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600, check=False,
        env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"publish failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


#: Every published neighbour row (outlier as text: NaN != NaN in comparisons).
SNAPSHOT = ("SELECT model_id, image_id, outlier::text, neighbour_ids, dists "
            "FROM similarity.neighbour_sets ORDER BY model_id, image_id")


def publication_state(site: DachsSite) -> tuple:
    """What a test must leave as it found it: neighbours, models (but when), images."""
    with site.connect(autocommit=True) as conn:
        return (
            conn.execute(SNAPSHOT).fetchall(),
            conn.execute("SELECT model_id, name, category, n_images, k, hyperparameters, "
                         "metrics FROM similarity.models ORDER BY model_id").fetchall(),
            conn.execute("SELECT image_id, obs_publisher_did FROM similarity.images "
                         "ORDER BY image_id").fetchall(),
        )


def model_id(site: DachsSite, name: str) -> int:
    from vo_similarity.publish.collections import DEFAULT_COLLECTION
    from vo_similarity.publish.resdir import published_models

    return published_models(site)[(DEFAULT_COLLECTION, name)]


def stilts(*args: str, timeout: float = 300) -> str:
    proc = subprocess.run(["stilts", *args], capture_output=True, text=True, check=False,
                          stdin=subprocess.DEVNULL, timeout=timeout)
    assert proc.returncode == 0, f"stilts {args[0]} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout

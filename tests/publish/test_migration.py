"""An installation published by the version before collections is taken over.

The older version runs from the repository's history (``git archive`` of
:data:`BEFORE`, with this environment's dependencies) and publishes into a
DaCHS instance of this module's own; then this version publishes the same
work directory and a second collection beside it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from publish_helpers import run_publish
from scratch_instances import register

from vo_similarity.publish.collections import DEFAULT_COLLECTION, ID_STRIDE
from vo_similarity.publish.dachs import DachsSite
from vo_similarity.publish.sample import make_sample_workdir
from vo_similarity.publish.scratch import ScratchDachs

pytestmark = [pytest.mark.dachs, pytest.mark.slow]

#: the last commit before collections
BEFORE = "8df9bc3"
REPO = Path(__file__).resolve().parents[2]
#: runs ``python -m vo_similarity`` from an extracted tree instead of this checkout
_RUNNER = """
import runpy, sys
sys.meta_path = [f for f in sys.meta_path if "Editable" not in type(f).__name__]
sys.path.insert(0, sys.argv.pop(1))
import vo_similarity
assert vo_similarity.__file__.startswith(sys.path[0]), vo_similarity.__file__
sys.argv[0] = "vo-similarity"
runpy.run_module("vo_similarity", run_name="__main__")
"""


@pytest.fixture(scope="module")
def old_code(tmp_path_factory) -> Path:
    """The package as it was at :data:`BEFORE`, laid out as an installed one."""
    found = subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{BEFORE}^{{commit}}"],
                           capture_output=True, check=False)
    if found.returncode != 0:
        pytest.skip(f"commit {BEFORE} is not in this checkout's history (a shallow clone)")
    root = tmp_path_factory.mktemp("before")
    archive = subprocess.run(["git", "-C", str(REPO), "archive", BEFORE, "vo_similarity",
                              "resdir", "sql"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    for package in ("resdir", "sql"):  # pyproject maps them into the package
        (root / "vo_similarity" / package).symlink_to(root / package)
    return root


@pytest.fixture(scope="module")
def own_site(dachs_scratch) -> DachsSite:
    with ScratchDachs.start() as scratch:
        register(scratch)
        yield scratch.site()


def _publish_before(old_code: Path, site: DachsSite, work) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(old_code), "publish", "--quiet", str(work.root),
         "--gavo-rc", str(site.settings)],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600, check=False,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _state(site: DachsSite) -> tuple:
    with site.connect(autocommit=True) as conn:
        return (conn.execute("SELECT image_id, obs_publisher_did FROM similarity.images "
                             "ORDER BY image_id").fetchall(),
                conn.execute("SELECT model_id, name, n_images, k FROM similarity.models "
                             "ORDER BY model_id").fetchall(),
                conn.execute("SELECT model_id, image_id, neighbour_ids, dists FROM "
                             "similarity.neighbour_sets ORDER BY model_id, image_id").fetchall())


def _obscore(site: DachsSite) -> dict:
    import pyvo

    table = pyvo.dal.TAPService(site.tap_url).run_sync(
        "SELECT obs_collection, COUNT(*) AS n FROM ivoa.obscore GROUP BY obs_collection"
    ).to_table()
    return {str(c): int(n) for c, n in table.iterrows()}


def test_an_installation_from_before_collections_becomes_one_collection(
        old_code, own_site, tmp_path):
    old = make_sample_workdir(tmp_path / "old", n=30, k=25, models=("sample", "galactic"),
                              seed=1)
    out = _publish_before(old_code, own_site, old)
    assert "images: imported" in out and "collection" not in out  # the old code ran
    data = own_site.resdir / "data"
    assert (data / "images.csv").is_file() and (data / "models" / "sample.json").is_file()
    before = _state(own_site)

    out = run_publish(str(old.root), "--gavo-rc", str(own_site.settings)).stdout
    assert f"images: unchanged (collection {DEFAULT_COLLECTION!r})" in out
    assert _state(own_site) == before  # the same ids, models and neighbours
    assert not (data / "images.csv").exists()
    assert (data / "collections" / f"{DEFAULT_COLLECTION}.csv").is_file()
    assert sorted(p.name for p in (data / "models").iterdir()) == ["m1.json", "m2.json"]
    with own_site.connect(autocommit=True) as conn:
        # the old similar view (every model, model_id first) became the view by model,
        # and similarity.similar the default model's
        columns = {view: [r[0] for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
            "ORDER BY attnum", (f"similarity.{view}",)).fetchall()]
            for view in ("similar", "similar_by_model")}
        assert columns["similar_by_model"][:2] == ["model_id", "query_did"]
        assert columns["similar"][0] == "query_did" and "model_id" not in columns["similar"]
        assert conn.execute("SELECT DISTINCT collection FROM similarity.images").fetchall() \
            == [(DEFAULT_COLLECTION,)]
        assert conn.execute("SELECT DISTINCT collection FROM similarity.models").fetchall() \
            == [(DEFAULT_COLLECTION,)]

    # ObsCore takes obs_collection from the images now: a second collection shows
    beta = make_sample_workdir(tmp_path / "beta", n=20, k=5, models=("sample",), seed=2,
                               collection="beta")
    run_publish(str(beta.root), "--gavo-rc", str(own_site.settings), "--no-metadata")
    assert _obscore(own_site) == {DEFAULT_COLLECTION: 30, "beta": 20}
    after = _state(own_site)
    assert after[0][:30] == before[0] and after[0][30][0] == ID_STRIDE
    assert after[1][:2] == before[1] and after[2][:60] == before[2]
    proc = subprocess.run(["dachs", "test", "similarity/q"], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=300, check=False,
                          env={**os.environ, **own_site.environ()})
    assert proc.returncode == 0 and "0 of 6 bad" in proc.stdout, proc.stdout + proc.stderr

"""Replacing a collection's image set unpublishes its models not republished."""

from __future__ import annotations

import pytest
from publish_helpers import MODELS, run_publish

from vo_similarity.publish.collections import DEFAULT_COLLECTION
from vo_similarity.publish.resdir import published_models
from vo_similarity.publish.sample import make_sample_workdir

pytestmark = [pytest.mark.dachs, pytest.mark.slow]


def _state(site):
    with site.connect(autocommit=True) as conn:
        models = dict(conn.execute("SELECT name, model_id FROM similarity.models").fetchall())
        parts = sorted(r[0] for r in conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'similarity.neighbour_sets'::regclass").fetchall())
        n_images = conn.execute("SELECT COUNT(*) FROM similarity.images").fetchone()[0]
    return models, parts, n_images


def test_new_images_replace_every_model(site, published, tmp_path):
    before = _state(site)
    assert set(MODELS) <= set(before[0])
    other = make_sample_workdir(tmp_path / "other", n=30, k=5, models=("only",), seed=6)
    try:
        refused = run_publish(str(other.root), "--no-metadata", check=False)
        assert refused.returncode != 0 and "--replace-collection" in refused.stderr
        assert _state(site) == before
        out = run_publish(str(other.root), "--no-metadata", "--replace-collection").stdout
        assert f"images: imported (collection {DEFAULT_COLLECTION!r}, 30 removed)" in out
        models, parts, n_images = _state(site)
        assert models == {"only": 1}
        assert parts == ["neighbour_sets_m1"]
        assert n_images == 30
        assert published_models(site) == {(DEFAULT_COLLECTION, "only"): 1}
    finally:
        run_publish(str(published.work.root), "--no-metadata", "--replace-collection")
    assert _state(site) == before

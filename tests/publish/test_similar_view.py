"""The short ADQL form: similarity.similar (the collection's default model) and
similarity.similar_by_model give exactly the rows of the long join."""

from __future__ import annotations

import json

import numpy as np
import pytest
from publish_helpers import MODELS, N_IMAGES, K, model_id

from vo_similarity.publish.queries import similar_images_join, similar_images_query

pytestmark = pytest.mark.dachs

COLUMNS = ["model_id", "query_did", "query_obs_id", "query_ra", "query_dec", "rank", "dist",
           "obs_publisher_did", "obs_id", "target_name", "s_ra", "s_dec", "s_fov", "access_url",
           "access_format", "preview", "credit", "category"]
#: similarity.similar: one model per collection (so no model_id), the main columns
DEFAULT_COLUMNS = ["query_did", "rank", "dist", "obs_publisher_did", "obs_id", "target_name",
                   "s_ra", "s_dec", "s_fov", "access_url", "preview", "credit"]

LONG = """SELECT n.model_id, q.obs_publisher_did AS query_did, q.obs_id AS query_obs_id,
  q.s_ra AS query_ra, q.s_dec AS query_dec, n.rank, n.dist, o.obs_publisher_did, o.obs_id,
  o.target_name, o.s_ra, o.s_dec, o.s_fov, o.access_url, o.access_format, o.preview,
  i.credit, i.category
FROM similarity.neighbours AS n
JOIN ivoa.obscore AS q ON q.obs_publisher_did = n.obs_publisher_did
JOIN ivoa.obscore AS o ON o.obs_publisher_did = n.neighbour_did
JOIN similarity.images AS i ON i.image_id = n.neighbour_id
WHERE n.obs_publisher_did = '{did}' AND n.model_id = {mid} ORDER BY rank"""


def _rows(table) -> list[tuple]:
    """Rows as Python values; s_fov as float32, the type it is stored in
    (ivoa.obscore declares it double and sends the real's decimal text)."""
    fov = table.colnames.index("s_fov") if "s_fov" in table.colnames else -1
    return [tuple(None if np.ma.is_masked(v) else
                  float(np.float32(v)) if i == fov else (v.item() if hasattr(v, "item") else v)
                  for i, v in enumerate(row)) for row in table.iterrows()]


def _did(image_id: int) -> str:
    return f"ivo://vo-similarity.example/~?sample-{image_id:06d}"


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("image_id", [0, 8, N_IMAGES - 1])
def test_view_by_model_returns_the_rows_of_the_long_join(site, published, name, image_id):
    import pyvo

    tap = pyvo.dal.TAPService(site.tap_url)
    did, mid = _did(image_id), model_id(site, name)
    short = tap.run_sync(f"SELECT * FROM similarity.similar_by_model WHERE query_did = '{did}' "
                         f"AND model_id = {mid} ORDER BY rank").to_table()
    long = tap.run_sync(LONG.format(did=did, mid=mid)).to_table()
    assert short.colnames == COLUMNS
    assert len(short) == K
    assert _rows(short) == _rows(long[COLUMNS])
    # the printed query (TOP n, no rank condition) gives the first n of the same rows
    top = tap.run_sync(similar_images_query(did, mid, top=5)).to_table()
    assert _rows(top) == _rows(short[:5])
    join = tap.run_sync(similar_images_join(did, mid, top=5)).to_table()
    assert list(join["obs_publisher_did"]) == list(top["obs_publisher_did"])


@pytest.mark.parametrize("image_id", [0, N_IMAGES - 1])
def test_default_view_is_the_lowest_model_of_the_collection(site, published, image_id):
    import pyvo

    tap = pyvo.dal.TAPService(site.tap_url)
    did = _did(image_id)
    ids = sorted(model_id(site, name) for name in MODELS)
    default = tap.run_sync(f"SELECT * FROM similarity.similar WHERE query_did = '{did}' "
                           "ORDER BY rank").to_table()
    assert default.colnames == DEFAULT_COLUMNS
    by_model = {mid: tap.run_sync(LONG.format(did=did, mid=mid)).to_table()[DEFAULT_COLUMNS]
                for mid in ids}
    assert _rows(default) == _rows(by_model[ids[0]])
    # the sample's two models have different lists, so the view did choose
    assert _rows(by_model[ids[1]]) != _rows(by_model[ids[0]])
    top = tap.run_sync(similar_images_query(did, top=5)).to_table()
    assert "model_id" not in similar_images_query(did)
    assert _rows(top) == _rows(default[:5])


@pytest.mark.parametrize(("view", "columns"), [("similar", DEFAULT_COLUMNS),
                                               ("similar_by_model", COLUMNS)])
def test_every_column_has_description_ucd_and_unit(site, published, view, columns):
    import pyvo

    meta = pyvo.dal.TAPService(site.tap_url).run_sync(
        "SELECT column_name, description, ucd, unit FROM tap_schema.columns "
        f"WHERE table_name = 'similarity.{view}'").to_table()
    by_name = {str(r["column_name"]): r for r in meta}
    assert sorted(by_name) == sorted(columns)
    for name, row in by_name.items():
        assert str(row["description"]).strip() and str(row["ucd"]).strip(), name
    for name in {"query_ra", "query_dec", "s_ra", "s_dec", "s_fov"} & set(columns):
        assert str(by_name[name]["unit"]) == "deg"


@pytest.mark.parametrize(("view", "condition"), [("similar", ""),
                                                 ("similar_by_model", "AND model_id = 1 ")])
def test_postgres_applies_the_rank_condition_before_joining(site, published, view, condition):
    """The rank filter sits on the unnest, below the join with the neighbour's row."""
    with site.connect(autocommit=True) as conn:
        plan = conn.execute(
            f"EXPLAIN (FORMAT JSON) SELECT * FROM similarity.{view} WHERE query_did = %s "
            f"{condition}AND rank <= 20 ORDER BY rank", (_did(0),)).fetchone()[0]
    plan = plan if isinstance(plan, list) else json.loads(plan)

    def nodes(node, above=()):
        yield node, above
        for child in node.get("Plans", []):
            yield from nodes(child, (*above, node["Node Type"]))

    scans = [(n, above) for n, above in nodes(plan[0]["Plan"])
             if n["Node Type"] == "Function Scan"]
    assert len(scans) == 1
    scan, above = scans[0]
    assert "<= 20" in scan.get("Filter", ""), scan
    assert any("Join" in a or "Nested Loop" in a for a in above)

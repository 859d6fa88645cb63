"""The client's pure-TAP methods against the real service, and the same ADQL through STILTS.

Each method's answer is checked against what the published work directory
says (neighbour files, outlier scores, positions), and its
``get_query_payload=True`` output is run through STILTS ``tapquery``: the
rows must be the same, in the same order.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astroquery.exceptions import InvalidQueryError

from vo_similarity.client.adql import adql_string

pytestmark = [pytest.mark.dachs, pytest.mark.slow]


def _positions(table, ra="s_ra", dec="s_dec") -> SkyCoord:
    return SkyCoord(np.asarray(table[ra], float), np.asarray(table[dec], float), unit=u.deg)


def _neighbour_dids(service, image_id: int, k: int) -> list[str]:
    """The first k neighbours of an image as the work directory has them."""
    model = service.work.model("builtin")
    ids = np.load(model.embedding_ids)
    row = int(np.flatnonzero(ids == image_id)[0])
    nb = np.load(model.neighbour_ids, mmap_mode="r")[row, :k]
    dids = dict(zip(service.manifest["image_id"], service.manifest["obs_publisher_did"]))
    return [dids[int(i)] for i in nb]


# -- query_similar --------------------------------------------------------------
def test_query_similar_gives_the_published_neighbours_in_rank_order(service, client):
    row = service.manifest[7]
    table = client.query_similar(row["obs_publisher_did"], n=20)
    assert list(table["rank"]) == list(range(1, 21))
    assert list(table["obs_publisher_did"]) == _neighbour_dids(service, int(row["image_id"]), 20)
    assert np.all(np.diff(table["dist"]) >= 0)
    assert set(table["query_did"]) == {row["obs_publisher_did"]}
    assert row["obs_publisher_did"] not in set(table["obs_publisher_did"])
    # what the service declares comes with the table
    assert table["s_ra"].unit == u.deg and table["s_ra"].description
    assert table["dist"].meta.get("ucd")


def test_query_similar_by_obs_id_equals_by_did(service, client):
    row = service.manifest[11]
    by_did = client.query_similar(row["obs_publisher_did"], n=30)
    by_obs_id = client.query_similar(str(row["obs_id"]), n=30)
    assert list(by_obs_id["obs_publisher_did"]) == list(by_did["obs_publisher_did"])
    assert list(by_obs_id["dist"]) == list(by_did["dist"])


def test_query_similar_payload_through_stilts(service, client, stilts, same_rows):
    did = service.manifest[3]["obs_publisher_did"]
    adql = client.query_similar(did, n=25, get_query_payload=True)
    assert isinstance(adql, str) and "similarity.similar_by_model" in adql
    same_rows(client.query_similar(did, n=25), stilts(adql))


def test_exclude_same_target_leaves_out_the_neighbours_nearby(service, client, stilts,
                                                              same_rows):
    # an image whose first 20 neighbours include images within 5 degrees
    radius = 5 * u.deg
    for row in service.manifest:
        full = client.query_similar(row["obs_publisher_did"], n=1000)
        centre = SkyCoord(row["s_ra"], row["s_dec"], unit=u.deg)
        near = _positions(full).separation(centre) <= radius
        if near[:20].any():
            break
    else:
        pytest.fail("no image has a neighbour within 5 deg among its first 20")
    table = client.query_similar(row["obs_publisher_did"], n=20, exclude_same_target=radius)
    expected = full[~near][:20]
    assert list(table["obs_publisher_did"]) == list(expected["obs_publisher_did"])
    assert np.all(_positions(table).separation(centre) > radius)
    adql = client.query_similar(row["obs_publisher_did"], n=20, exclude_same_target=radius,
                                get_query_payload=True)
    same_rows(table, stilts(adql))


def test_hostile_ids_are_escaped_and_unknown(service, client, sent, stilts):
    for did in ("x' OR '1'='1", "<script>alert(1)</script>", "ivo://x' OR ''='"):
        adql = client.query_similar(did, get_query_payload=True)
        assert f"= {adql_string(did)} AND" in adql  # one literal, every quote doubled
        assert len(stilts(adql)) == 0  # runs, finds nothing: not a condition of its own
        before = len(sent)
        with pytest.raises(InvalidQueryError, match="no published image has"):
            client.query_similar(did)
        assert len(sent) - before == 2, sent.urls  # the query, then the id check


# -- query_region and query_object --------------------------------------------------
def test_query_region_finds_every_image_in_the_cone(service, client, stilts, same_rows):
    centre = SkyCoord(83.8, -5.4, unit=u.deg)  # Orion: several images
    radius = 8 * u.deg
    table = client.query_region(centre, radius=radius)
    sep = _positions(service.manifest).separation(centre)
    expected = set(service.manifest["obs_publisher_did"][sep <= radius])
    assert len(expected) >= 3
    assert set(table["obs_publisher_did"]) == expected
    assert np.all(np.diff(table["ang_sep"]) >= 0)
    assert table["ang_sep"].unit == u.deg
    same_rows(table, stilts(client.query_region(centre, radius=radius,
                                                get_query_payload=True)))
    # the same cone given as text
    again = client.query_region("83.8 -5.4", radius=radius)
    assert list(again["obs_publisher_did"]) == list(table["obs_publisher_did"])


def test_query_region_with_neighbours_as_extra_rows(service, client, stilts, same_rows):
    centre, radius, k = SkyCoord(83.8, -5.4, unit=u.deg), 8 * u.deg, 3
    images = client.query_region(centre, radius=radius)
    table = client.query_region(centre, radius=radius, neighbours=k)
    assert len(table) == k * len(images)
    assert list(dict.fromkeys(table["query_did"])) == list(images["obs_publisher_did"])
    for did in images["obs_publisher_did"]:
        rows = table[table["query_did"] == did]
        assert list(rows["rank"]) == list(range(1, k + 1))
        similar = client.query_similar(did, n=k)
        assert list(rows["obs_publisher_did"]) == list(similar["obs_publisher_did"])
    same_rows(table, stilts(client.query_region(centre, radius=radius, neighbours=k,
                                                get_query_payload=True)))


def test_query_region_stops_at_conf_row_limit(service, client, caplog):
    from vo_similarity.client import conf

    with conf.set_temp("row_limit", 7):
        table = client.query_region("0 0", radius=180 * u.deg)
    assert len(table) == 7
    assert "may be cut" in caplog.text


@pytest.mark.parametrize("name", ["M 1", "m1", " M  1 ", "NGC1532", "barnard's loop"])
def test_query_object_resolves_the_service_target_names(service, client, name, stilts,
                                                        same_rows):
    table = client.query_object(name, radius=0.5 * u.deg)
    wanted = "".join(name.lower().split())
    assert any("".join(str(t).lower().split()) == wanted for t in table["target_name"])
    same_rows(table, stilts(client.query_object(name, radius=0.5 * u.deg,
                                                get_query_payload=True)))


def test_query_object_unknown_name_is_a_clear_error(service, client, sent):
    for name in ("No Such Nebula", "<script>", "x' OR '1'='1"):
        before = len(sent)
        with pytest.raises(InvalidQueryError, match="not a target name of this service.*Sesame"):
            client.query_object(name)
        assert len(sent) - before == 1  # the target-name lookup; no cone query


# -- query_outliers -------------------------------------------------------------------
def test_query_outliers_are_the_largest_scores(service, client, stilts, same_rows):
    model = service.work.model("builtin")
    scores = np.load(model.outlier)
    ids = np.load(model.embedding_ids)
    order = np.argsort(-scores, kind="stable")[:15]
    dids = dict(zip(service.manifest["image_id"], service.manifest["obs_publisher_did"]))
    table = client.query_outliers(n=15)
    assert list(table["obs_publisher_did"]) == [dids[int(ids[i])] for i in order]
    np.testing.assert_array_equal(np.asarray(table["outlier"], np.float32), scores[order])
    same_rows(table, stilts(client.query_outliers(n=15, get_query_payload=True)))


# -- join_archive -----------------------------------------------------------------------
def test_join_archive_finds_the_other_archive_observations_nearby(service, client, stilts,
                                                                  same_rows):
    ours = client.query_region(SkyCoord(0, 0, unit=u.deg), radius=180 * u.deg)  # all
    radius = 0.01 * u.deg  # the counterparts lie 0.002 and 0.004 deg away
    table = client.join_archive(ours, service.tap_url, radius=radius,
                                obscore_table="otherarchive.obscore")
    other = _positions(service.other)
    expected = set()
    for i, c in enumerate(_positions(ours)):
        for j in np.flatnonzero(other.separation(c) <= radius):
            expected.add((i, service.other["obs_publisher_did"][j]))
    assert len(expected) >= 10
    got = {(int(r), str(d)) for r, d in zip(table["our_row"], table["obs_publisher_did"])}
    assert got == expected
    assert all(ours["obs_publisher_did"][int(r)] == d
               for r, d in zip(table["our_row"], table["our_did"]))
    assert np.all(table["ang_sep"] <= radius.to_value(u.deg))
    payload = client.join_archive(ours, service.tap_url, radius=radius,
                                  obscore_table="otherarchive.obscore",
                                  get_query_payload=True)
    assert set(payload) == {"tap_url", "adql", "uploads"}
    same_rows(table, stilts(payload["adql"], payload["uploads"], payload["tap_url"]))


def test_join_archive_with_a_similarity_result(service, client):
    # the neighbours' positions (s_ra, s_dec of similarity.similar_by_model) go up
    similar = client.query_similar(service.manifest[0]["obs_publisher_did"], n=100)
    table = client.join_archive(similar, service.tap_url, radius=0.01 * u.deg,
                                obscore_table="otherarchive.obscore")
    assert set(table["our_did"]) <= set(similar["obs_publisher_did"])
    assert len(table) > 0

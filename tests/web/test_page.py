"""Browsing in headless Chromium: find an image, see its neighbours, page, click, leave out its target.

Every check compares what the page shows with what the API (itself checked
against TAP in test_api.py) or the published manifest says.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from services import WEB_SECOND_K, WEB_SECOND_MODEL
from webpage import PAGE_SIZE, Tab, did_of

pytestmark = pytest.mark.dachs


def assert_tiles_show(tab: Tab, rows: list[dict]) -> None:
    """The grid holds one tile per row, in order, with the row's rank, distance, target, credit."""
    tiles = tab.tiles()
    assert [t["did"] for t in tiles] == [r["obs_publisher_did"] for r in rows]
    for tile, row in zip(tiles, rows):
        assert tile["rank"] == row["rank"]
        assert re.search(rf"\b{row['rank']}\b", tile["rank_text"]), tile["rank_text"]
        assert (tile["target"] or "") == (row["target_name"] or "")
        assert (tile["credit"] or "") == (row["credit"] or "")
        if "dist" in row:  # shown rounded: equal up to half a unit of the last digit shown
            shown = re.search(r"\d+(?:\.(\d+))?", tile["dist"])
            assert shown, tile["dist"]
            decimals = len(shown.group(1) or "")
            assert abs(float(shown.group(0)) - row["dist"]) <= 0.5 * 10 ** -decimals + 1e-12
        assert tile["src"] == row["preview"]


def wait_thumbnails(tab: Tab) -> list[dict]:
    """Scroll through the grid so every thumbnail loads; the tiles once all have."""
    tab.page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    tab.wait_until(
        "[...document.querySelectorAll('#grid img.thumb')].every(i => i.complete)")
    return tab.tiles()


def lookup(tab: Tab, kind: str, value: str) -> None:
    tab.page.select_option("#lookup-kind", kind)
    tab.page.fill("#lookup-value", value)
    tab.click("#lookup-go")


# -- finding an image -------------------------------------------------------------

def test_the_page_opens_and_shows_an_image_and_its_neighbours(tab, web, service):
    did = did_of(service, 0)
    tab.open({"id": did, "model": 1})
    image = web.image(did)
    assert tab.query_did() == did
    assert tab.text("#query-target") == image["target_name"]
    assert tab.text("#query-credit") == image["credit"]
    assert tab.page.get_attribute("#query-file", "href") == image["access_url"]
    assert tab.page.get_attribute("#query-record", "href") == image["record_url"]
    for sel in ("#query-position", "#query-fov"):
        assert re.search(r"\d", tab.text(sel)), sel
    assert tab.page.evaluate(
        "(() => { const i = document.getElementById('query-image');"
        " return i.complete && i.naturalWidth > 0; })()")
    tiles = wait_thumbnails(tab)
    assert len(tiles) == PAGE_SIZE >= 20
    assert all(t["loaded"] for t in tiles), [t["did"] for t in tiles if not t["loaded"]]
    assert_tiles_show(tab, web.neighbours(did)["results"])


def test_random_starts_somewhere(tab, web):
    tab.open()
    tab.click("#random")
    did = tab.query_did()
    assert_tiles_show(tab, web.neighbours(did)["results"])


@pytest.mark.parametrize("column", ["obs_publisher_did", "obs_id"])
def test_lookup_by_id(tab, web, service, column):
    row = service.manifest[42]
    tab.open()
    lookup(tab, "id", str(row[column]))
    assert tab.query_did() == row["obs_publisher_did"]
    assert tab.text("#query-target") == row["target_name"]
    assert len(tab.tiles()) == PAGE_SIZE


def test_lookup_by_a_target_name_with_one_match_goes_to_the_image(tab, web, service):
    for row in service.manifest:
        name = str(row["target_name"])
        if len(web.api("lookup", {"target": name})["images"]) == 1:
            break
    else:
        pytest.fail("every target name of the sample is part of another")
    tab.open()
    lookup(tab, "target", name.upper())
    assert tab.query_did() == row["obs_publisher_did"]
    assert tab.text("#query-target") == name


def test_lookup_by_a_target_name_with_several_matches_lists_them(tab, web, service):
    tab.open()
    lookup(tab, "target", "m 1")
    tab.page.wait_for_selector("#matches button.match")
    listed = tab.page.eval_on_selector_all("#matches button.match", "bs => bs.map(b => "
                                           "[b.dataset.did, b.textContent])")
    expected = web.api("lookup", {"target": "m 1"})["images"]
    assert [d for d, _ in listed] == [im["obs_publisher_did"] for im in expected]
    assert all(im["target_name"] in text for (_, text), im in zip(listed, expected))
    assert expected[0]["target_name"] == "M 1"  # the exact match comes first
    tab.click("#matches button.match >> nth=0")
    assert tab.query_did() == expected[0]["obs_publisher_did"]


def test_lookup_by_position(tab, web, service):
    manifest = service.manifest
    coords = SkyCoord(manifest["s_ra"], manifest["s_dec"], unit="deg")
    # an image with others within 1 degree (the default radius: a list), none at
    # its very position (a smaller radius then finds it alone)
    i = next(j for j, c in enumerate(coords)
             if np.sum(coords.separation(c) < 1 * u.deg) >= 3
             and np.sum(coords.separation(c) < 1e-6 * u.deg) == 1)
    row = manifest[i]
    tab.open()
    lookup(tab, "position", f"{row['s_ra']:.6f}, {row['s_dec']:.6f}")
    tab.page.wait_for_selector("#matches button.match")
    listed = tab.page.eval_on_selector_all("#matches button.match", "bs => bs.map(b => "
                                           "b.dataset.did)")
    expected = web.api("lookup", {"ra": f"{row['s_ra']:.6f}", "dec": f"{row['s_dec']:.6f}"})
    assert listed == [im["obs_publisher_did"] for im in expected["images"]]
    assert listed[0] == row["obs_publisher_did"]
    # "ra dec radius" with a radius that holds only this image goes straight to it
    others = coords.separation(coords[i]).deg
    radius = 0.5 * min(s for s in others if s > 1e-6)
    lookup(tab, "position", f"{row['s_ra']:.6f} {row['s_dec']:.6f} {radius:.6f}")
    assert tab.query_did() == row["obs_publisher_did"]


# -- the grid ---------------------------------------------------------------------

def test_paging_reaches_the_last_rank(tab, web, service):
    did = did_of(service, 5)
    total = web.neighbours(did)["total"]
    tab.open({"id": did, "model": 1})
    assert re.search(rf"1\D+{PAGE_SIZE}\D+{total}\b", tab.text("#page-info"))
    tab.click("#next")
    assert_tiles_show(tab, web.neighbours(did, offset=PAGE_SIZE)["results"])
    assert tab.state()["page"] == "2"
    tab.click("#last")
    last_page = math.ceil(total / PAGE_SIZE)
    start = (last_page - 1) * PAGE_SIZE + 1
    tiles = tab.tiles()
    assert len(service.manifest) > 1001
    assert tiles[-1]["rank"] == total == 1000
    assert len(tiles) == total - start + 1
    assert re.search(rf"{start}\D+{total}\D+{total}\b", tab.text("#page-info"))
    assert tab.page.input_value("#page-number") == str(last_page)
    assert_tiles_show(tab, web.neighbours(did, offset=start - 1)["results"])
    tab.click("#prev")
    assert tab.tiles()[0]["rank"] == start - PAGE_SIZE
    tab.page.fill("#page-number", "3")
    tab.act(lambda: tab.page.press("#page-number", "Enter"))
    assert tab.tiles()[0]["rank"] == 2 * PAGE_SIZE + 1 and tab.state()["page"] == "3"


def test_clicking_a_thumbnail_makes_it_the_query(tab, web, service):
    did = did_of(service, 9)
    tab.open({"id": did, "model": 1})
    clicked = tab.tiles()[4]["did"]
    tab.click(tab.tile(clicked) + " img.thumb")
    assert tab.query_did() == clicked
    assert tab.text("#query-target") == web.image(clicked)["target_name"]
    assert_tiles_show(tab, web.neighbours(clicked)["results"])


def test_the_same_target_toggle_leaves_out_images_near_the_query(tab, web, service):
    manifest = service.manifest
    coords = SkyCoord(manifest["s_ra"], manifest["s_dec"], unit="deg")
    where = {str(r["obs_publisher_did"]): coords[j] for j, r in enumerate(manifest)}
    radius = 0.5  # the page's default, checked below
    # a query that has an image of its own target among its first neighbours
    for i, centre in enumerate(coords):
        near = {str(manifest[j]["obs_publisher_did"])
                for j in np.flatnonzero(coords.separation(centre).deg < radius) if j != i}
        if near and near & {r["obs_publisher_did"] for r in web.neighbours(
                did_of(service, i))["results"]}:
            break
    else:
        pytest.fail("no image of the sample has a neighbour of its own target on page 1")
    did = did_of(service, i)
    tab.open({"id": did, "model": 1})
    assert near & set(tab.dids())  # the check below can fail
    assert tab.page.input_value("#same-radius") == "0.5"
    tab.act(lambda: tab.page.check("#same-target"))
    assert float(tab.state()["same"]) == radius
    kept = web.neighbours(did, exclude_radius=radius)
    assert_tiles_show(tab, kept["results"])
    assert not near & set(tab.dids())
    for t in tab.tiles():
        assert where[t["did"]].separation(coords[i]).deg >= radius, t
    assert re.search(rf"\b{kept['total']}\b", tab.text("#page-info"))
    tab.act(lambda: tab.page.uncheck("#same-target"))
    assert "same" not in tab.state()
    assert near & set(tab.dids())


def test_the_outlier_view(tab, web, service):
    tab.open({"id": did_of(service, 0), "model": 1})
    tab.click("#outliers")
    assert tab.state()["view"] == "outliers"
    rows = web.api("outliers", {"model": 1, "n": PAGE_SIZE})["results"]
    assert tab.dids() == [r["obs_publisher_did"] for r in rows]


def test_the_model_menu_lists_the_published_models(tab, web, service):
    tab.open({"id": did_of(service, 0), "model": 1})
    options = tab.page.eval_on_selector_all("#model option", "os => os.map(o => o.value)")
    assert options == [str(m["model_id"]) for m in web.api("config")["models"]]
    assert tab.page.input_value("#model") == "1"


def test_choosing_another_model_shows_its_neighbours(tab, web, service):
    second = next(m for m in web.api("config")["models"] if m["name"] == WEB_SECOND_MODEL)
    did = did_of(service, 3)
    tab.open({"id": did, "model": 1, "page": 2})
    tab.act(lambda: tab.page.select_option("#model", str(second["model_id"])))
    assert tab.state()["model"] == str(second["model_id"]) and tab.state()["page"] == "1"
    assert re.search(rf"1\D+{PAGE_SIZE}\D+{WEB_SECOND_K}\b", tab.text("#page-info"))
    assert [t["rank"] for t in tab.tiles()] == list(range(1, PAGE_SIZE + 1))
    reply = web.neighbours(did, model=second["model_id"])
    assert reply["k"] == WEB_SECOND_K
    assert tab.dids() == [r["obs_publisher_did"] for r in reply["results"]]
    tab.act(lambda: tab.page.go_back())
    assert tab.state()["model"] == "1" and tab.state()["page"] == "2"

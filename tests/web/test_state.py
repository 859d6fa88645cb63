"""Every state is a URL: reload gives the same view, the back button the one before.

A view's snapshot is everything the user sees that the state decides: the
query, the model, the page, the tiles with their marks, the same-target
toggle, the selection count, the view.
"""

from __future__ import annotations

import pytest
from webpage import PAGE_SIZE, Tab, did_of, marked

pytestmark = pytest.mark.dachs


def snapshot(tab: Tab) -> dict:
    page = tab.page
    return {
        "state": tab.state(),
        "query": tab.text("#query-target"),
        "model": page.input_value("#model"),
        "page_info": tab.text("#page-info"),
        "page_number": page.input_value("#page-number"),
        "same": (page.is_checked("#same-target"), page.input_value("#same-radius")),
        "count": tab.text("#selection-count"),
        "tiles": [(t["did"], t["rank"], t["similar"], t["not"]) for t in tab.tiles()],
    }


def reload(tab: Tab) -> None:
    tab.act(tab.page.reload)


def test_reload_restores_neighbours_page_marks_and_toggle(tab, service):
    tab.open({"id": did_of(service, 50), "model": 1})
    tab.act(lambda: tab.page.check("#same-target"))
    tab.click("#next")
    dids = tab.dids()
    tab.page.click(tab.tile(dids[1]) + " .mark-similar")
    tab.page.click(tab.tile(dids[4]) + " .mark-similar")
    tab.page.click(tab.tile(dids[6]) + " .mark-not")
    before = snapshot(tab)
    assert before["state"]["page"] == "2" and "same" in before["state"]
    assert marked(before["state"], "sim") == [dids[1], dids[4]]
    assert marked(before["state"], "not") == [dids[6]]
    assert before["tiles"][0][1] == PAGE_SIZE + 1
    reload(tab)
    assert snapshot(tab) == before
    # the same URL in a new tab: nothing comes from the old tab's memory
    url = tab.page.url
    tab.page.goto("about:blank")
    tab.page.goto(url)
    tab.wait_ready()
    assert snapshot(tab) == before


def test_reload_restores_a_refined_view(tab, service):
    tab.open({"id": did_of(service, 51), "model": 1})
    dids = tab.dids()
    for d in dids[:2]:
        tab.page.click(tab.tile(d) + " .mark-similar")
    tab.page.click(tab.tile(dids[3]) + " .mark-not")
    tab.click("#refine")
    tab.click("#next")
    before = snapshot(tab)
    assert before["state"]["view"] == "refine" and before["state"]["page"] == "2"
    reload(tab)
    assert snapshot(tab) == before


def test_the_outlier_view_survives_a_reload(tab, service):
    tab.open({"id": did_of(service, 52), "model": 1})
    tab.click("#outliers")
    before = snapshot(tab)
    reload(tab)
    assert snapshot(tab) == before and before["state"]["view"] == "outliers"


def test_the_back_button_returns_to_each_state_before(tab, service):
    tab.open({"id": did_of(service, 53), "model": 1})
    first = snapshot(tab)
    clicked = tab.dids()[2]
    tab.click(tab.tile(clicked) + " img.thumb")
    second = snapshot(tab)
    tab.click("#next")
    third = snapshot(tab)
    assert second["state"]["id"] == clicked and third["state"]["page"] == "2"
    tab.act(tab.page.go_back)
    assert snapshot(tab) == second
    tab.act(tab.page.go_back)
    assert snapshot(tab) == first
    tab.act(tab.page.go_forward)
    assert snapshot(tab) == second


def test_a_hand_written_url_opens_its_state(tab, web, service):
    did = did_of(service, 54)
    tab.open({"id": did, "model": 1, "page": 3})
    rows = web.neighbours(did, offset=2 * PAGE_SIZE)["results"]
    assert tab.dids() == [r["obs_publisher_did"] for r in rows]
    assert tab.page.input_value("#page-number") == "3"

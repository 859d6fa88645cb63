"""Refinement in headless Chromium: quick select (shift-click, the whole page, keys), refine, reject.

The refined list the page shows is the API's for the same marks
(``api/refine``, itself compared with the search service in test_api.py); it
differs from the plain neighbours and never holds a chosen image.
"""

from __future__ import annotations

import re

import pytest
from webpage import PAGE_SIZE, Tab, did_of, marked

pytestmark = pytest.mark.dachs


def marks(tab: Tab) -> tuple[list[str], list[str]]:
    """(similar, not similar) dids as the tiles show them, in grid order."""
    tiles = tab.tiles()
    for t in tiles:  # the class and the button's state agree
        assert (t["pressed"] == "true") == t["similar"] and (t["pressed_not"] == "true") == t["not"]
    return [t["did"] for t in tiles if t["similar"]], [t["did"] for t in tiles if t["not"]]


def count_shown(tab: Tab) -> int:
    found = re.search(r"\d+", tab.text("#selection-count"))
    return int(found.group(0)) if found else 0


def all_refined(web, similar, not_similar=(), **extra) -> list[str]:
    rows, total = [], None
    while total is None or len(rows) < total:
        reply = web.refine(similar, not_similar, offset=len(rows), n=100, **extra)
        total = reply["total"]
        rows += [r["obs_publisher_did"] for r in reply["results"]]
        if not reply["results"]:
            break
    return rows


def test_three_by_shift_click_then_refine_then_reject_one(tab, web, service):
    did = did_of(service, 30)
    tab.open({"id": did, "model": 1})
    plain = tab.dids()
    assert tab.page.is_disabled("#refine")
    tab.page.click(tab.tile(plain[0]) + " .mark-similar")
    tab.page.click(tab.tile(plain[2]) + " .mark-similar", modifiers=["Shift"])
    chosen = plain[:3]
    assert marks(tab) == (chosen, [])
    assert count_shown(tab) == 3
    assert tab.page.is_enabled("#refine")

    tab.click("#refine")
    state = tab.state()
    assert state["view"] == "refine" and marked(state, "sim") == chosen
    refined = tab.dids()
    # docs/web.md: the query image counts as one more similar image
    expected = web.refine(chosen, query=did)["results"]
    assert refined == [r["obs_publisher_did"] for r in expected]
    assert len(refined) == PAGE_SIZE
    assert not {did, *chosen} & set(all_refined(web, chosen, query=did))  # on no page
    assert refined != [d for d in plain if d not in chosen]  # it did rerank

    rejected = refined[1]
    tab.page.click(tab.tile(rejected) + " .mark-not")
    assert marks(tab) == ([], [rejected])
    tab.click("#refine")
    assert marked(tab.state(), "not") == [rejected] and marked(tab.state(), "sim") == chosen
    again = tab.dids()
    assert rejected not in again
    assert again == [r["obs_publisher_did"]
                     for r in web.refine(chosen, [rejected], query=did)["results"]]
    assert rejected not in all_refined(web, chosen, [rejected], query=did)

    tab.click("#back-to-neighbours")
    assert tab.state().get("view", "neighbours") == "neighbours" and tab.dids() == plain


def test_select_page_marks_every_tile_and_clear_unmarks(tab, service):
    tab.open({"id": did_of(service, 31), "model": 1})
    tab.page.click("#select-page")
    similar, rejected = marks(tab)
    assert similar == tab.dids() and len(similar) == PAGE_SIZE and not rejected
    assert count_shown(tab) == PAGE_SIZE
    assert marked(tab.state(), "sim") == similar
    tab.page.click("#clear-selection")
    assert marks(tab) == ([], []) and count_shown(tab) == 0
    assert not marked(tab.state(), "sim") and tab.page.is_disabled("#refine")


def test_keyboard_marks_and_moves_between_tiles(tab, service):
    tab.open({"id": did_of(service, 32), "model": 1})
    dids = tab.dids()
    tab.page.focus(tab.tile(dids[0]))
    tab.page.keyboard.press("s")
    tab.page.keyboard.press("ArrowRight")
    focused = tab.page.evaluate("document.activeElement.dataset.did")
    assert focused == dids[1]
    tab.page.keyboard.press("x")
    assert marks(tab) == ([dids[0]], [dids[1]])
    tab.page.keyboard.press("ArrowLeft")
    assert tab.page.evaluate("document.activeElement.dataset.did") == dids[0]
    tab.page.keyboard.press("s")  # toggles off
    assert marks(tab) == ([], [dids[1]])


def test_a_tile_is_either_similar_or_not(tab, service):
    tab.open({"id": did_of(service, 33), "model": 1})
    did = tab.dids()[3]
    tab.page.click(tab.tile(did) + " .mark-similar")
    tab.page.click(tab.tile(did) + " .mark-not")
    assert marks(tab) == ([], [did])
    tab.page.click(tab.tile(did) + " .mark-similar")
    assert marks(tab) == ([did], [])

"""Text from the archive is shown as text: a target name or credit that is markup stays text.

For the tests of this module two published images get hostile texts (set in
the database as ``gavoadmin``, the owner of the tables; put back afterwards,
so that the client tests sharing the service see the sample as published).
The page must show the literal text, run none of it and grow no element from
it.
"""

from __future__ import annotations

import pytest
from webpage import Tab, did_of

pytestmark = pytest.mark.dachs

SCRIPT = "<script>window.__xss=1</script>"
IMG = '"><img src=x onerror="window.__xss=2">'


def shown_in_first_page_of_some_query(web, did: str) -> str:
    """A query image whose first page of neighbours holds ``did``."""
    for row in web.neighbours(did, n=20)["results"]:
        if did in {r["obs_publisher_did"] for r in web.neighbours(row["obs_publisher_did"])
                   ["results"]}:
            return row["obs_publisher_did"]
    raise AssertionError(f"{did} is on no first page of its neighbours' neighbours")


@pytest.fixture(scope="module")
def hostile(service, web):
    """[(did, query showing it, target text, credit text)] of the changed images."""
    changes = [(did_of(service, 80), SCRIPT, "ok"), (did_of(service, 81), IMG, IMG)]
    with service.site.connect() as conn:
        saved = [conn.execute("SELECT target_name, credit FROM similarity.images "
                              "WHERE obs_publisher_did = %s", (did,)).fetchone()
                 for did, _, _ in changes]
    try:
        with service.site.connect() as conn:
            for (did, target, credit), (_, old_credit) in zip(changes, saved):
                conn.execute("UPDATE similarity.images SET target_name = %s, credit = %s "
                             "WHERE obs_publisher_did = %s",
                             (target, old_credit if credit == "ok" else credit, did))
        rows = []
        for (did, target, credit), (_, old_credit) in zip(changes, saved):
            assert web.image(did)["target_name"] == target  # the server reads it live
            rows.append((did, shown_in_first_page_of_some_query(web, did), target,
                         old_credit if credit == "ok" else credit))
        yield rows
    finally:
        with service.site.connect() as conn:
            for (did, _, _), (target, credit) in zip(changes, saved):
                conn.execute("UPDATE similarity.images SET target_name = %s, credit = %s "
                             "WHERE obs_publisher_did = %s", (target, credit, did))


def assert_nothing_ran(tab: Tab) -> None:
    page = tab.page
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.evaluate("document.querySelectorAll('img[src=\"x\"], [onerror]').length") == 0
    scripts = page.evaluate("[...document.scripts].map(s => s.getAttribute('src'))")
    assert scripts == ["assets/app.js", "assets/samp.js"], scripts


def test_a_hostile_query_text_is_shown_literally(tab, hostile):
    for did, _, target, credit in hostile:
        tab.open({"id": did, "model": 1})
        assert tab.text("#query-target") == target
        assert tab.text("#query-credit") == credit
        assert_nothing_ran(tab)


def test_a_hostile_tile_text_is_shown_literally(tab, hostile):
    for did, query, target, credit in hostile:
        tab.open({"id": query, "model": 1})
        tile = next(t for t in tab.tiles() if t["did"] == did)
        assert (tile["target"], tile["credit"]) == (target, credit)
        assert_nothing_ran(tab)


def test_hostile_names_in_the_list_of_matches_are_text(tab, web, hostile):
    tab.open()
    tab.page.select_option("#lookup-kind", "target")
    tab.page.fill("#lookup-value", "window.__xss")
    tab.click("#lookup-go")
    tab.page.wait_for_selector("#matches button.match")
    listed = dict(tab.page.eval_on_selector_all(
        "#matches button.match", "bs => bs.map(b => [b.dataset.did, b.textContent])"))
    assert set(listed) == {did for did, *_ in hostile}
    for did, _, target, _ in hostile:
        assert target in listed[did]
    assert_nothing_ran(tab)
    # and a lookup value that is markup is a value too
    tab.page.select_option("#lookup-kind", "id")
    tab.page.fill("#lookup-value", IMG)
    tab.expect_error("status of 404")
    tab.click("#lookup-go")
    assert tab.text("#error")  # says the id is unknown
    assert_nothing_ran(tab)

"""The page is usable at 1280x800 and on a phone (390x844): nothing sticks out sideways.

Screenshots of both land in the test's temporary folder (scripts/screenshots.py
takes the docs' ones the same way).
"""

from __future__ import annotations

import pytest
from webpage import DESKTOP, PHONE, did_of

pytestmark = pytest.mark.dachs

#: what a user needs to reach at any width
CONTROLS = ["#lookup-value", "#lookup-go", "#random", "#model", "#query-image", "#same-target",
            "#refine", "#record", "#prev", "#next", "#page-number", "#samp-topcat",
            "#grid figure.tile .mark-similar", "#grid figure.tile img.thumb"]


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_no_horizontal_overflow_and_every_control_within_the_width(new_tab, service, viewport,
                                                                   tmp_path):
    tab = new_tab(viewport)
    did = did_of(service, 0)
    tab.open({"id": did, "model": 1})
    dids = tab.dids()
    tab.open({"id": did, "model": 1, "sim": dids[1:4], "not": [dids[6]]})
    assert [t["did"] for t in tab.tiles() if t["similar"]] == dids[1:4]
    tab.page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    tab.wait_until("[...document.querySelectorAll('#grid img.thumb')].every(i => i.complete)")
    tab.page.evaluate("window.scrollTo(0, 0)")
    width = viewport["width"]
    assert tab.page.evaluate("document.documentElement.scrollWidth") <= width
    assert tab.page.evaluate("document.body.scrollWidth") <= width
    for selector in CONTROLS:
        box = tab.page.locator(selector).first.bounding_box()
        assert box and box["width"] > 0 and box["height"] > 0, selector
        assert box["x"] >= 0 and box["x"] + box["width"] <= width + 0.5, (selector, box)
    # tiles of a phone-sized grid are still big enough to see and to tap
    tile = tab.page.locator("#grid figure.tile").first.bounding_box()
    assert tile["width"] >= 100 if viewport is PHONE else tile["width"] >= 120
    tab.page.screenshot(path=tmp_path / f"page-{width}x{viewport['height']}.png")

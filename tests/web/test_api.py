"""The page's JSON API (``.../web/custom/api/<op>``) against the published built-in sample.

What the fast path answers is compared with what TAP answers for the same
question (``similarity.similar_by_model``, ``similarity.outliers``, ``ivoa.obscore``),
and with the search service for refinement; bad input of every kind gets a
JSON error with a 4xx status, never a 500. The page and every reply carry
the Content-Security-Policy of docs/web.md, and Chromium enforces it.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import requests
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io.votable import parse_single_table
from webpage import PAGE_SIZE, did_of

pytestmark = pytest.mark.dachs

#: the contract's policy, directive by directive (docs/web.md)
CSP = {
    "default-src": {"'self'"}, "img-src": {"'self'", "data:"}, "script-src": {"'self'"},
    "style-src": {"'self'"}, "object-src": {"'none'"}, "base-uri": {"'none'"},
    "frame-ancestors": {"'none'"}, "form-action": {"'self'"},
    "connect-src": {"'self'", "http://127.0.0.1:21012", "http://localhost:21012"},
}


def parse_csp(header: str) -> dict[str, set[str]]:
    policy = {}
    for directive in filter(None, (d.strip() for d in header.split(";"))):
        name, *sources = directive.split()
        policy[name] = set(sources)
    return policy


def tap_rows(tap, adql: str):
    return tap.run_sync(adql).to_table()


# -- reads ------------------------------------------------------------------------

def test_config_names_the_tap_service_and_the_published_model(web, service, tap):
    config = web.api("config")
    assert config["tap_url"] == service.tap_url
    models = tap_rows(tap, "SELECT model_id, name, n_images, k FROM similarity.models "
                           "ORDER BY model_id")
    assert [(m["model_id"], m["name"], m["n_images"], m["k"]) for m in config["models"]] == \
        [(int(r["model_id"]), str(r["name"]), int(r["n_images"]), int(r["k"])) for r in models]
    assert config["default_model"] == int(models[0]["model_id"])
    assert config["models"][0]["searchable"] is True
    assert config["limits"] == {"page_size_max": 100, "record_max": 100}


def test_an_image_by_did_and_by_obs_id_is_the_same_obscore_row(web, service, tap):
    row = service.manifest[7]
    by_did, by_obs_id = web.image(str(row["obs_publisher_did"])), web.image(str(row["obs_id"]))
    assert by_did == by_obs_id
    assert (by_did["obs_publisher_did"], by_did["obs_id"], by_did["target_name"]) == \
        (row["obs_publisher_did"], row["obs_id"], row["target_name"])
    assert by_did["s_ra"] == pytest.approx(float(row["s_ra"]), abs=1e-9)
    assert by_did["credit"] == row["credit"]
    # the links work: the file, its preview (a PNG), its ObsCore record
    for url, kind in ((by_did["access_url"], by_did["access_format"]),
                      (by_did["preview"], "image/png")):
        reply = requests.get(url, timeout=60)
        assert reply.status_code == 200 and reply.headers["Content-Type"].startswith(kind)
    record = requests.get(by_did["record_url"], timeout=60)
    table = parse_single_table(io.BytesIO(record.content)).to_table()
    assert list(table["obs_publisher_did"]) == [row["obs_publisher_did"]]
    obscore = tap_rows(tap, "SELECT access_url FROM ivoa.obscore WHERE obs_publisher_did = '"
                            + str(row["obs_publisher_did"]) + "'")
    assert str(obscore["access_url"][0]) == by_did["access_url"]


def test_neighbours_are_what_tap_publishes_page_by_page(web, service, tap):
    did = did_of(service, 3)
    similar = tap_rows(tap, "SELECT rank, dist, obs_publisher_did FROM similarity.similar_by_model "
                            f"WHERE query_did = '{did}' AND model_id = 1 ORDER BY rank")
    first = web.neighbours(did)
    assert first["query"]["obs_publisher_did"] == did
    assert first["k"] == first["total"] == len(similar)
    assert [r["rank"] for r in first["results"]] == list(range(1, PAGE_SIZE + 1))
    rows = web.all_neighbours(did)
    assert [r["obs_publisher_did"] for r in rows] == list(similar["obs_publisher_did"])
    assert [r["rank"] for r in rows] == list(similar["rank"])
    # the same float32 distances, read from the same table by two paths
    np.testing.assert_array_equal(np.array([r["dist"] for r in rows], np.float32),
                                  np.asarray(similar["dist"], np.float32))
    last = web.neighbours(did, offset=len(similar) - 3, n=100)
    assert [r["rank"] for r in last["results"]] == list(range(len(similar) - 2,
                                                              len(similar) + 1))


def test_exclude_radius_leaves_out_exactly_the_neighbours_near_the_query(web, service):
    manifest = service.manifest
    coords = SkyCoord(manifest["s_ra"], manifest["s_dec"], unit="deg")
    radius = 0.5
    near_counts = [(int(np.sum(coords.separation(c) < radius * u.deg)) - 1, i)
                   for i, c in enumerate(coords)]
    count, i = max(near_counts)
    assert count >= 1, "the sample has pairs of images within 0.5 deg of each other"
    did = did_of(service, i)
    everything = web.all_neighbours(did)
    kept = web.all_neighbours(did, exclude_radius=radius)
    by_did = {str(r["obs_publisher_did"]): coords[j] for j, r in enumerate(manifest)}
    seps = {r["obs_publisher_did"]: by_did[r["obs_publisher_did"]].separation(coords[i]).deg
            for r in everything}
    expected = [r["obs_publisher_did"] for r in everything if seps[r["obs_publisher_did"]]
                >= radius]
    assert [r["obs_publisher_did"] for r in kept] == expected
    assert len(everything) - len(kept) == count
    # ranks stay the 1-based places in the reduced list, "total" is its length
    reply = web.neighbours(did, exclude_radius=radius, n=5)
    assert reply["total"] == len(kept) and [r["rank"] for r in reply["results"]] == [1, 2, 3, 4,
                                                                                      5]


def test_lookup_by_target_is_case_and_blank_insensitive_exact_first(web, service):
    images = web.api("lookup", {"target": "m1"})["images"]
    targets = [im["target_name"] for im in images]
    assert targets[0] == "M 1"
    assert all("m1" in t.lower().replace(" ", "") for t in targets)
    assert {"M 10", "M 101"} <= set(targets) and len(images) <= 50
    # no wildcards: a % or _ is a plain character no target name holds
    for text in ("%", "_", "M_1", "M%"):
        assert web.api("lookup", {"target": text})["images"] == [], text


def test_lookup_by_position_is_ordered_by_separation(web, service):
    row = service.manifest[20]
    images = web.api("lookup", {"ra": row["s_ra"], "dec": row["s_dec"], "radius": 5})["images"]
    assert images[0]["obs_publisher_did"] == row["obs_publisher_did"]
    assert images[0]["sep"] == pytest.approx(0, abs=1e-9)
    seps = [im["sep"] for im in images]
    assert seps == sorted(seps) and seps[-1] <= 5
    centre = SkyCoord(row["s_ra"], row["s_dec"], unit="deg")
    for im in images:  # the separations are the images' true ones (q3c vs astropy: < 1 mas)
        sep = centre.separation(SkyCoord(im["s_ra"], im["s_dec"], unit="deg")).deg
        assert im["sep"] == pytest.approx(sep, abs=1e-6)


def test_outliers_are_tap_s_order(web, tap):
    reply = web.api("outliers", {"model": 1, "n": 20})
    table = tap_rows(tap, "SELECT TOP 20 i.obs_publisher_did, s.outlier FROM "
                          "similarity.outliers AS s JOIN similarity.images AS i "
                          "ON i.image_id = s.image_id WHERE s.model_id = 1 "
                          "ORDER BY s.outlier DESC, s.image_id")
    assert [r["obs_publisher_did"] for r in reply["results"]] == \
        list(table["obs_publisher_did"])
    assert [r["rank"] for r in reply["results"]] == list(range(1, 21))


def test_refine_is_the_search_service_s_rocchio_and_never_returns_the_chosen(web, service):
    chosen = [did_of(service, i) for i in (10, 11, 12)]
    rejected = [did_of(service, 13)]
    reply = web.refine(chosen, rejected, method="exact", n=30)
    assert reply["method"] == "exact"
    search = requests.get(f"{service.url}/similarity/q/search/api", timeout=60, params=[
        ("model", 1), ("n", 30), *(("similar", d) for d in chosen),
        *(("not_similar", d) for d in rejected)]).json()
    assert [r["obs_publisher_did"] for r in reply["results"]] == \
        [r["obs_publisher_did"] for r in search["results"]]
    default = web.refine(chosen, rejected)
    for result in (reply, default):
        dids = {r["obs_publisher_did"] for r in result["results"]}
        assert not dids & set(chosen + rejected)
        scores = [r["score"] for r in result["results"]]
        assert scores == sorted(scores, reverse=True)
        for r in result["results"]:
            assert r["dist"] == pytest.approx(math.sqrt(max(0, 2 - 2 * r["score"])))


def test_the_query_image_counts_as_similar_and_leaves_the_result(web, service):
    query, chosen = did_of(service, 14), [did_of(service, 15), did_of(service, 16)]
    with_query = web.refine(chosen, query=query, method="exact")
    assert with_query["results"] == web.refine(chosen + [query], method="exact")["results"]
    assert query not in {r["obs_publisher_did"] for r in with_query["results"]}
    assert with_query["results"] != web.refine(chosen, method="exact")["results"]


def test_a_random_image_has_neighbours(web):
    did = web.api("random", {"model": 1})["image"]["obs_publisher_did"]
    assert len(web.neighbours(did, n=20)["results"]) == 20


# -- bad input ------------------------------------------------------------------------

HOSTILE = ["x' OR '1'='1", "'; DROP TABLE similarity.selections; --", '"><script>1</script>',
           "ivo://vo-similarity.example/~?stellarium/m1dumont' --", "%", "\\", "1e999", "NaN",
           "a" * 401, "\u0000"]


@pytest.mark.parametrize("op, params, status, message", [
    ("image", {"id": "ivo://nowhere/~?none"}, 404, "no published image"),
    ("image", {}, 400, "id is required"),
    ("neighbours", {"id": "no-such-obs-id", "model": 1}, 404, "no published image"),
    ("neighbours", {"id": "{did}", "model": 99}, 404, "unknown model 99"),
    ("neighbours", {"id": "{did}", "model": 0}, 400, "model"),
    ("neighbours", {"id": "{did}", "model": "x"}, 400, "whole number"),
    ("neighbours", {"id": "{did}"}, 400, "model is required"),
    ("neighbours", {"id": "{did}", "model": 1, "n": 0}, 400, "n must be"),
    ("neighbours", {"id": "{did}", "model": 1, "n": 101}, 400, "n must be"),
    ("neighbours", {"id": "{did}", "model": 1, "n": "ten"}, 400, "n must be"),
    ("neighbours", {"id": "{did}", "model": 1, "offset": -1}, 400, "offset"),
    ("neighbours", {"id": "{did}", "model": 1, "exclude_radius": 181}, 400, "exclude_radius"),
    ("neighbours", {"id": "{did}", "model": 1, "exclude_radius": "nan"}, 400, "exclude_radius"),
    ("lookup", {"ra": 10}, 400, "ra and dec"),
    ("lookup", {"ra": 10, "dec": 91}, 400, "dec"),
    ("lookup", {"ra": "ten", "dec": 0}, 400, "ra"),
    ("lookup", {"ra": 10, "dec": 0, "radius": 200}, 400, "radius"),
    ("lookup", {"target": ""}, 400, ""),
    ("refine", {"model": 1}, 400, "at least one"),
    ("refine", {"model": 1, "similar": "nowhere"}, 404, "no published image"),
    ("refine", {"model": 1, "similar": "{did}", "method": "magic"}, 400, "method"),
    ("refine", [("model", 1), ("similar", "{did}"), ("not_similar", "{did}")], 400, "both"),
    ("outliers", {"model": 7}, 404, "unknown model"),
    ("random", {}, 400, "model"),
    ("nosuchop", {}, 404, "no API operation"),
])
def test_bad_input_gets_a_json_error_that_says_what_is_wrong(web, service, op, params, status,
                                                            message):
    did = did_of(service, 0)
    items = params.items() if isinstance(params, dict) else params
    params = [(k, str(v).replace("{did}", did)) for k, v in items]
    reply = web.api(op, params, status=status)
    assert set(reply) <= {"error", "stale_token"} and message.lower() in reply["error"].lower()


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_in_any_parameter_is_a_clean_4xx_never_a_500(web, service, text):
    did = did_of(service, 0)
    cases = [("image", {"id": text}), ("neighbours", {"id": text, "model": 1}),
             ("neighbours", {"id": did, "model": text}),
             ("neighbours", {"id": did, "model": 1, "n": text}),
             ("neighbours", {"id": did, "model": 1, "exclude_radius": text}),
             ("lookup", {"ra": text, "dec": 0}), ("refine", {"model": 1, "similar": text}),
             ("refine", {"model": 1, "similar": did, "not_similar": text}),
             ("outliers", {"model": 1, "offset": text})]
    for op, params in cases:
        reply = web.get(op, params)
        assert reply.status_code in (400, 404), (op, params, reply.status_code, reply.text)
        assert reply.headers["Content-Type"].startswith("application/json")
        assert reply.json()["error"]
    # a target name search takes it as text: the names that contain it (or a 400)
    reply = web.get("lookup", {"target": text})
    assert reply.status_code in (200, 400), reply.text
    wanted = "".join(text.lower().split())
    for image in reply.json().get("images", []):
        assert wanted in "".join(image["target_name"].lower().split()), image["target_name"]


def test_the_selections_table_survived_the_hostile_ids(web, tap):
    for text in HOSTILE[:2]:
        web.get("image", {"id": text})
    assert "similarity.selections" in {str(n) for n in tap_rows(
        tap, "SELECT table_name FROM tap_schema.tables")["table_name"]}


# -- the page itself, its headers -------------------------------------------------------

def test_the_page_needs_its_trailing_slash(web):
    reply = requests.get(web.page_url.rstrip("/"), timeout=60, allow_redirects=False)
    assert reply.status_code in (301, 302, 303, 307, 308)
    assert reply.headers["Location"].endswith("/web/custom/")


@pytest.mark.parametrize("path", ["", "assets/app.js", "assets/app.css", "assets/samp.js",
                                  "api/config", "api/image?id=nowhere", "assets/nothing.js"])
def test_every_reply_carries_the_content_security_policy(web, path):
    reply = requests.get(web.page_url + path, timeout=60)
    assert reply.status_code in (200, 404)
    policy = parse_csp(reply.headers["Content-Security-Policy"])
    assert policy == CSP
    assert "'unsafe-inline'" not in str(policy) and "'unsafe-eval'" not in str(policy)
    assert reply.headers.get("X-Content-Type-Options") == "nosniff"


def test_the_page_s_html_holds_no_inline_script_or_style(web):
    from html.parser import HTMLParser

    found = []

    class Scan(HTMLParser):
        def handle_starttag(self, tag, attrs):
            names = dict(attrs)
            if tag == "script" and not names.get("src"):
                found.append("an inline <script>")
            if tag == "style":
                found.append("a <style> element")
            found.extend(f"{tag} {a}=" for a in names if a == "style" or a.startswith("on"))

    html = requests.get(web.page_url, timeout=60).text
    Scan().feed(html)
    assert not found, found


def test_chromium_blocks_an_injected_inline_script(tab, service):
    """The header is enforced: an inline script added to the page does not run."""
    tab.expect_error("(?i)content security policy|script-src")
    tab.open({"id": did_of(service, 0), "model": 1})
    ran = tab.page.evaluate("""() => {
        const s = document.createElement('script');
        s.textContent = 'window.__inline = 1';
        document.body.appendChild(s);
        const d = document.createElement('div');
        d.innerHTML = '<img src="data:," onerror="window.__handler = 1">';
        document.body.appendChild(d);
        return new Promise(r => setTimeout(() => r([window.__inline, window.__handler]), 300));
    }""")
    assert ran == [None, None]
    violations = tab.page.evaluate("window.__cspViolations")
    assert any(v.startswith("script-src") for v in violations), violations

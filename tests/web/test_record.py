"""Recording selections: from the page they land in similarity.selections; from anywhere else nothing does.

What was written is read back through TAP with pyvo, never from the
server's reply alone. Hand-made requests go out from addresses of their own
on the loopback network (127.0.0.2, 127.0.0.3, ...; Linux routes all of
127/8 to ``lo``), because the server limits writes per client address: a test
that floods the limit from its address leaves the browser's (127.0.0.1) and
every other test's alone.
"""

from __future__ import annotations

import itertools
import re
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest
import requests
from webpage import did_of

from vo_similarity.selections.page_client import _FromAddress

pytestmark = pytest.mark.dachs

_ADDRESSES = (f"127.0.0.{i}" for i in itertools.count(2))


class Writer:
    """A hand-made client of ``api/record`` from an address of its own."""

    def __init__(self, web) -> None:
        self.web = web
        self.address = next(_ADDRESSES)
        self.http = requests.Session()
        self.http.mount("http://", _FromAddress(self.address))
        self.session_id = "test-" + secrets.token_hex(8)

    def token(self) -> str:
        """A token from api/token (its cookie lands in this client's cookie jar)."""
        reply = self.http.get(self.web.api_url("token"), timeout=60)
        assert reply.status_code == 200
        return reply.json()["token"]

    def fields(self, n_similar: int = 2, n_not: int = 1, *, start: int = 100) -> dict:
        service = self.web.service
        return {"model": "1", "query": did_of(service, start), "session": self.session_id,
                "similar": [did_of(service, start + 1 + j) for j in range(n_similar)],
                "not_similar": [did_of(service, start + 1 + n_similar + j)
                                for j in range(n_not)]}

    def post(self, data: dict, *, token: str | None = None, headers: dict | None = None,
             method: str = "POST") -> requests.Response:
        headers = dict(headers or {})
        if token is not None:
            headers["X-Vosim-Token"] = token
        if method == "GET":
            return self.http.get(self.web.api_url("record"), params=data, headers=headers,
                                 timeout=60)
        return self.http.post(self.web.api_url("record"), data=data, headers=headers,
                              timeout=60)


def rows_of(tap, session_id: str):
    """The rows of similarity.selections written under ``session_id``, read through TAP."""
    return tap.run_sync(
        "SELECT model_id, image_id, chosen_id, is_similar, created, session_id "
        f"FROM similarity.selections WHERE session_id = '{session_id}' "
        "ORDER BY chosen_id").to_table()


def count_all(tap) -> int:
    return int(tap.run_sync("SELECT COUNT(*) AS n FROM similarity.selections")
               .to_table()["n"][0])


def image_id(service, did: str) -> int:
    return int(service.manifest[list(service.manifest["obs_publisher_did"]).index(did)]
               ["image_id"])


def assert_refused(reply: requests.Response, status: int | tuple = 403) -> str:
    statuses = status if isinstance(status, tuple) else (status,)
    assert reply.status_code in statuses, (reply.status_code, reply.text)
    assert reply.headers["Content-Type"].startswith("application/json")
    return reply.json()["error"]


# -- from the page ------------------------------------------------------------------

def test_a_selection_recorded_from_the_page_is_in_the_table(tab, service, tap):
    did = did_of(service, 60)
    tab.open({"id": did, "model": 1})
    dids = tab.dids()
    for d in dids[:2]:
        tab.page.click(tab.tile(d) + " .mark-similar")
    tab.page.click(tab.tile(dids[5]) + " .mark-not")
    with tab.page.expect_response(lambda r: r.url.endswith("/api/record")) as sent:
        tab.page.click("#record")
    reply = sent.value
    assert reply.status == 200, reply.text()
    tab.wait_until(
        "document.getElementById('record-status').textContent.includes('Recorded')")
    assert re.search(r"Recorded 3 selections", tab.text("#record-status"))
    form = parse_qs(reply.request.post_data)
    session_id = form["session"][0]
    assert re.fullmatch(r"[A-Za-z0-9_-]{8,64}", session_id)
    rows = rows_of(tap, session_id)
    assert {(int(r["model_id"]), int(r["image_id"]), int(r["chosen_id"]), bool(r["is_similar"]))
            for r in rows} == {(1, image_id(service, did), image_id(service, d), d != dids[5])
                               for d in (*dids[:2], dids[5])}
    assert all(r["created"] for r in rows)


# -- from another origin ----------------------------------------------------------

_ATTACK = """<!doctype html><html><head><link rel="icon" href="data:,"></head><body>
<form id="f" method="post" action="{action}">
<input name="model" value="1"><input name="query" value="{query}">
<input name="similar" value="{similar}"><input name="session" value="{session}">
<button id="go" type="submit">win a prize</button></form>
<button id="fetch" type="button">fetch</button>
<script>
document.getElementById('fetch').onclick = () => fetch('{action}', {{method: 'POST',
  mode: 'no-cors', credentials: 'include', body: new URLSearchParams(new FormData(
  document.getElementById('f')))}}).then(() => document.title = 'sent',
  () => document.title = 'failed');
</script></body></html>"""


@pytest.fixture(scope="module")
def other_site():
    """A second HTTP server on another port: its page posts to api/record."""
    pages: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = pages.get(self.path.split("?")[0], b"")
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], pages
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


# 127.0.0.1 on another port is another origin of the same site (a SameSite cookie
# goes along); localhost is another site
@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_a_form_on_another_origin_writes_nothing(tab, web, service, tap, other_site, host):
    port, pages = other_site
    session_id = "attack-" + secrets.token_hex(6)
    pages["/attack.html"] = _ATTACK.format(
        action=web.api_url("record"), query=did_of(service, 70), similar=did_of(service, 71),
        session=session_id).encode()
    tab.expect_error("status of 403")
    # the browser then shows the API's JSON reply, and asks the server for its icon
    tab.expect_error(r"status of 404 .*/favicon\.ico")
    before = count_all(tap)
    tab.open({"id": did_of(service, 70), "model": 1})  # the page's cookie is in this browser
    tab.page.goto(f"http://{host}:{port}/attack.html")
    tab.page.click("#fetch")
    tab.wait_until("document.title !== ''")
    with tab.page.expect_navigation() as navigation:
        tab.page.click("#go")
    assert navigation.value.status == 403
    assert "error" in tab.page.text_content("body")
    assert len(rows_of(tap, session_id)) == 0
    assert count_all(tap) == before


# -- hand-made requests -------------------------------------------------------------

def _attempts(w: Writer):
    """(what is tried, the reply) for every way of writing without what the page holds."""
    data = w.fields()
    yield "no token", w.post(data)
    token = w.token()
    bare = requests.Session()
    bare.mount("http://", _FromAddress(w.address))
    yield "the token without its cookie", bare.post(
        w.web.api_url("record"), data=data, headers={"X-Vosim-Token": token}, timeout=60)
    yield "the cookie without the token", w.post(data)
    yield "another token than the cookie's", w.post(data, token=Writer(w.web).token())
    forged = token.rsplit(".", 1)[0] + "." + "0" * 64
    w.http.cookies.set("vosim_token", forged)
    yield "a forged token", w.post(data, token=forged)
    w.http.cookies.clear()
    token = w.token()
    yield "another site's Origin", w.post(data, token=token,
                                          headers={"Origin": "http://evil.example"})
    yield "the page's host on another port", w.post(
        data, token=token, headers={"Origin": f"http://127.0.0.1:{w.web.service.scratch.http_port + 1}"})
    yield "a cross-site fetch", w.post(data, token=token, headers={"Sec-Fetch-Site": "cross-site"})
    yield "a same-site fetch", w.post(data, token=token, headers={"Sec-Fetch-Site": "same-site"})
    yield "a GET", w.post(data, token=token, method="GET")


def test_writes_without_what_the_page_holds_are_refused_and_write_nothing(web, tap):
    w = Writer(web)
    before = count_all(tap)
    for what, reply in _attempts(w):
        status = (403, 405) if what == "a GET" else 403  # docs/web.md: refused
        assert assert_refused(reply, status), what
    assert len(rows_of(tap, w.session_id)) == 0
    assert count_all(tap) == before
    # the same request with what the page holds is taken: the refusals above were
    # for what was missing, not for the request itself
    token = w.token()
    for origin in (None, web.origin):
        reply = w.post(w.fields(start=110 if origin else 120), token=token,
                       headers={"Origin": origin} if origin else {})
        assert reply.status_code == 200, reply.text
        assert reply.json() == {"recorded": 3}
    assert len(rows_of(tap, w.session_id)) == 6


def test_the_cookie_is_http_only_and_same_site_strict(web):
    reply = Writer(web).http.get(web.api_url("token"), timeout=60)
    cookie = reply.headers["Set-Cookie"]
    assert re.match(r"vosim_token=[^;]+;", cookie)
    attributes = {a.strip().split("=")[0].lower(): a.strip() for a in cookie.split(";")[1:]}
    assert "httponly" in attributes and attributes["samesite"].lower() == "samesite=strict"


def test_at_most_the_cap_per_request(web, service, tap):
    w = Writer(web)
    token = w.token()
    cap = web.api("config")["limits"]["record_max"]
    too_many = w.fields(n_similar=cap, n_not=1, start=200)
    assert "at most" in assert_refused(w.post(too_many, token=token), 400)
    assert len(rows_of(tap, w.session_id)) == 0
    reply = w.post(w.fields(n_similar=cap - 1, n_not=1, start=200), token=token)
    assert reply.status_code == 200 and reply.json() == {"recorded": cap}
    assert len(rows_of(tap, w.session_id)) == cap


@pytest.mark.parametrize("change, status, message", [
    ({"model": "99"}, 404, "unknown model"),
    ({"model": "1 OR 1=1"}, 400, "model"),
    ({"query": "ivo://nowhere/~?x"}, 404, "no published image"),
    ({"similar": ["nowhere' --"]}, 404, "no published image"),
    ({"session": "short"}, 400, "session"),
    ({"session": "x'; DROP TABLE similarity.selections; --"}, 400, "session"),
    ({"similar": [], "not_similar": []}, 400, "nothing to record"),
    ({"similar": ["{query}"]}, 400, "query image"),
    ({"not_similar": ["{similar}"]}, 400, "twice"),
])
def test_bad_fields_are_refused_and_write_nothing(web, tap, change, status, message):
    w = Writer(web)
    token = w.token()
    data = w.fields()
    for key, value in change.items():
        if isinstance(value, list):
            value = [v.replace("{query}", data["query"]).replace("{similar}", data["similar"][0])
                     for v in value]
        data[key] = value
    assert message in assert_refused(w.post(data, token=token), status).lower()
    assert len(rows_of(tap, w.session_id)) == 0


def test_rapid_writes_are_refused_after_the_rate_limit(web, tap):
    w = Writer(web)
    token = w.token()
    taken = 0
    for _ in range(1000):
        reply = w.post(w.fields(n_similar=1, n_not=0, start=300), token=token)
        if reply.status_code != 200:
            break
        taken += 1
    else:
        pytest.fail("1000 writes in a row were all taken")
    error = assert_refused(reply, 429)
    limit = re.search(r"at most (\d+) requests per (\d+) s", error)
    assert limit, error
    assert taken == int(limit.group(1)) and len(rows_of(tap, w.session_id)) == taken
    # the limit is per client: another one (here the next address) still writes
    other = Writer(web)
    assert other.post(other.fields(start=310), token=other.token()).status_code == 200

"""The web page under test: its URLs and JSON API (:class:`Web`), a browser tab on it (:class:`Tab`).

Used by the fixtures of ``tests/web/conftest.py`` and by the tests, which
import the constants and helpers from here (a module of its own: a
``conftest`` cannot be imported by name when several folders have one).
"""

from __future__ import annotations

import re
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

import requests
from services import Service

#: where DaCHS serves the page below a server's root
PAGE_PATH = "/similarity/q/web/custom/"
CHROMIUM = "/usr/bin/chromium"
#: DESIGN §6a: the flags shown to work headless on these machines (no GPU, no
#: network besides the tests' own servers, small /dev/shm)
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
#: ms a view may take to render (a fresh DaCHS answers its first requests slowly)
READY_MS = 30_000
#: the contract's page size
PAGE_SIZE = 50


class ApiError(AssertionError):
    """An API reply with another status than the test expected."""


@dataclass
class Web:
    """The page and its JSON API on the test service."""

    service: Service
    session: requests.Session = field(default_factory=requests.Session)

    @property
    def origin(self) -> str:
        return self.service.url

    @property
    def page_url(self) -> str:
        return self.service.url + PAGE_PATH

    def api_url(self, op: str) -> str:
        return f"{self.page_url}api/{op}"

    def get(self, op: str, params=None, **kwargs) -> requests.Response:
        """GET ``api/<op>`` (``params`` a dict or a list of pairs for repeated names)."""
        return self.session.get(self.api_url(op), params=params, timeout=60, **kwargs)

    def api(self, op: str, params=None, *, status: int = 200) -> dict:
        """GET ``api/<op>``, check the status and that the body is JSON, return it."""
        reply = self.get(op, params)
        if reply.status_code != status:
            raise ApiError(f"api/{op} {params}: HTTP {reply.status_code} (expected {status}): "
                           f"{reply.text[:500]}")
        assert reply.headers["Content-Type"].split(";")[0] == "application/json", \
            reply.headers["Content-Type"]
        return reply.json()

    def image(self, ident: str) -> dict:
        return self.api("image", {"id": ident})["image"]

    def neighbours(self, did: str, *, model: int = 1, offset: int = 0, n: int = PAGE_SIZE,
                   **extra) -> dict:
        return self.api("neighbours", {"id": did, "model": model, "offset": offset, "n": n,
                                       **extra})

    def all_neighbours(self, did: str, *, model: int = 1, **extra) -> list[dict]:
        """Every neighbour of ``did`` in rank order, page by page (100 a request)."""
        rows: list[dict] = []
        while True:
            reply = self.neighbours(did, model=model, offset=len(rows), n=100, **extra)
            rows += reply["results"]
            if len(rows) >= reply["total"] or not reply["results"]:
                return rows

    def refine(self, similar: list[str], not_similar: list[str] = (), *, model: int = 1,
               offset: int = 0, n: int = PAGE_SIZE, status: int = 200, **extra) -> dict:
        params = [("model", model), ("offset", offset), ("n", n),
                  *(("similar", d) for d in similar), *(("not_similar", d) for d in not_similar),
                  *extra.items()]
        return self.api("refine", params, status=status)


def did_of(service: Service, i: int) -> str:
    """obs_publisher_did of the manifest's i-th image."""
    return str(service.manifest[i]["obs_publisher_did"])


# -- the browser ----------------------------------------------------------------

#: runs in every document before the page's own scripts (DevTools injects it,
#: so the page's CSP does not apply to it): remembers every CSP violation
_WATCH_CSP = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', e => {
  window.__cspViolations.push(e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline'));
});
"""

_TILES = """() => [...document.querySelectorAll('#grid figure.tile')].map(t => {
  const text = sel => { const e = t.querySelector(sel); return e ? e.textContent : null; };
  const img = t.querySelector('img.thumb');
  return {did: t.dataset.did, rank: Number(t.dataset.rank), target: text('.target'),
          credit: text('.credit'), dist: text('.dist'), rank_text: text('.rank'),
          similar: t.classList.contains('similar'), not: t.classList.contains('not-similar'),
          pressed: t.querySelector('.mark-similar')?.getAttribute('aria-pressed'),
          pressed_not: t.querySelector('.mark-not')?.getAttribute('aria-pressed'),
          src: img ? img.src : null, loaded: !!img && img.complete && img.naturalWidth > 0};
})"""


class Tab:
    """One browser tab on the page, with what it reported as errors."""

    def __init__(self, page, web: Web) -> None:
        self.page, self.web = page, web
        self.errors: list[str] = []
        self._expected: list[re.Pattern] = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(
            f"console: {m.text} ({m.location.get('url', '')})"))
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))

    # -- errors ---------------------------------------------------------------
    def expect_error(self, pattern: str) -> None:
        """Declare errors matching ``pattern`` (a regex) expected in this test."""
        self._expected.append(re.compile(pattern))

    def unexpected_errors(self) -> list[str]:
        found = list(self.errors)
        if not self.page.is_closed():
            try:
                found += [f"CSP: {v}" for v in self.page.evaluate("window.__cspViolations || []")]
            except Exception as exc:  # noqa: BLE001 -- a page mid-navigation has no window
                found.append(f"could not read the page's CSP violations: {exc}")
        return [e for e in found if not any(p.search(e) for p in self._expected)]

    # -- navigation -------------------------------------------------------------
    def open(self, state: str | dict | None = None) -> Tab:
        """Load the page, with ``state`` as its hash (a dict: :func:`hash_of`), until ready."""
        if isinstance(state, dict):
            state = hash_of(state)
        if self.page.url.startswith(self.web.page_url):
            # a new document, as a pasted URL gets: from the page itself only the
            # hash would change, and the old view's "ready" pass for the new one
            self.page.goto("about:blank")
        self.page.goto(self.web.page_url + (f"#{state}" if state else ""))
        self.wait_ready()
        return self

    def wait_until(self, expression: str, timeout: float = READY_MS) -> object:
        """Poll the JavaScript ``expression`` until it is truthy; its value.

        Not Playwright's ``wait_for_function``: that compiles the expression
        with ``eval`` inside the page, which the page's CSP rightly forbids
        (``evaluate`` goes through DevTools and is not subject to it).
        """
        deadline = time.monotonic() + timeout / 1000
        while True:
            value = self.page.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"not true within {timeout / 1000:.0f} s: {expression}")
            time.sleep(0.05)

    def wait_ready(self, timeout: float = READY_MS) -> None:
        self.wait_until("document.body && document.body.dataset.state === 'ready'", timeout)

    def act(self, action: Callable[[], object]) -> None:
        """Do ``action`` (which must re-render the view) and wait for the new view.

        The body's ``data-state`` is set to a value the page never sets first,
        so that a ``ready`` left from the view before cannot pass for the new one.
        """
        self.page.evaluate("document.body.dataset.state = 'before-test-action'")
        action()
        self.wait_ready()

    def click(self, selector: str, **kwargs) -> None:
        """Click ``selector`` and wait for the view it renders."""
        self.act(lambda: self.page.click(selector, **kwargs))

    # -- what the page shows -----------------------------------------------------
    def tiles(self) -> list[dict]:
        return self.page.evaluate(_TILES)

    def dids(self) -> list[str]:
        return [t["did"] for t in self.tiles()]

    def text(self, selector: str) -> str:
        return self.page.eval_on_selector(selector, "e => e.textContent")

    def state(self) -> dict[str, str]:
        """The URL hash as {name: value} (URLSearchParams syntax)."""
        fragment = urllib.parse.urlsplit(self.page.url).fragment
        return dict(urllib.parse.parse_qsl(fragment, keep_blank_values=True))

    def query_did(self) -> str:
        return self.state()["id"]

    def tile(self, did: str) -> str:
        """A CSS selector of the tile of ``did``."""
        return f'#grid figure.tile[data-did="{css_string(did)}"]'


def css_string(text: str) -> str:
    """``text`` as the inside of a double-quoted CSS string."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def new_context_tab(browser, web: Web, viewport: dict) -> tuple[object, Tab]:
    context = browser.new_context(viewport=viewport)
    context.set_default_timeout(READY_MS)
    context.add_init_script(_WATCH_CSP)
    return context, Tab(context.new_page(), web)


def hash_of(state: dict) -> str:
    """A URL hash as the page writes it: lists (``sim``, ``not``) comma-joined, each
    did encodeURIComponent'ed."""
    def encode(value) -> str:
        if isinstance(value, (list, tuple)):
            return ",".join(urllib.parse.quote(str(v), safe="") for v in value)
        return urllib.parse.quote(str(value), safe="")
    return "&".join(f"{key}={encode(value)}" for key, value in state.items())


def marked(state: dict[str, str], name: str) -> list[str]:
    """The dids of ``sim`` or ``not`` in a URL state (each encodeURIComponent'ed, comma-joined)."""
    value = state.get(name, "")
    return [urllib.parse.unquote(part) for part in value.split(",") if part]

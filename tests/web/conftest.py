"""Fixtures for the web page's tests: the page's URLs, its JSON API, and headless Chromium.

The page runs against a test service of its own (``web_service`` in
``tests/services.py``, named ``service`` here: the built-in sample and
synthetic images, more than 1000, published in the tests' own scratch DaCHS;
``vo-similarity publish`` installs the page there). The browser
is Debian's Chromium (``/usr/bin/chromium``), never one that Playwright
downloads, driven from Python by Playwright: one browser per session, a fresh
context (cookies, storage, cache) per test.

Every tab collects what the browser reports as an error -- console errors
(failed loads, Content-Security-Policy violations: Chromium logs both there),
uncaught exceptions, and ``securitypolicyviolation`` events -- and the test
fails on any it did not declare expected (:meth:`webpage.Tab.expect_error`).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator

import pytest
from real_components import need
from webpage import CHROMIUM, CHROMIUM_ARGS, DESKTOP, Tab, Web, new_context_tab


@pytest.fixture(scope="session")
def service(web_service):
    """The web tests' service: more than 1000 images, so that rank 1000 exists."""
    return web_service


@pytest.fixture(scope="session")
def web(service) -> Web:
    """The page and its API on the shared test service (which must serve the page)."""
    web = Web(service)
    reply = web.session.get(web.page_url, timeout=60)
    assert reply.status_code == 200, \
        f"the web page is not served at {web.page_url}: HTTP {reply.status_code}"
    return web


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium, headless, driven by Playwright; one for the session."""
    if shutil.which(CHROMIUM) is None:
        need("the web tests need Debian's chromium (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need("the web tests need the Python package playwright (the dev extra)")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture()
def new_tab(browser, web) -> Iterator[Callable[..., Tab]]:
    """``new_tab(viewport=DESKTOP) -> Tab`` in a fresh context; no unexpected error at the end."""
    opened: list[tuple[object, Tab]] = []

    def make(viewport: dict = DESKTOP) -> Tab:
        opened.append(new_context_tab(browser, web, viewport))
        return opened[-1][1]

    yield make
    problems = [e for _, tab in opened for e in tab.unexpected_errors()]
    for context, _ in opened:
        context.close()
    assert not problems, "the browser reported errors:\n" + "\n".join(problems)


@pytest.fixture()
def tab(new_tab) -> Tab:
    """A fresh tab at 1280x800 (nothing loaded yet)."""
    return new_tab()


@pytest.fixture(scope="session")
def tap(service):
    """A pyvo TAPService of the test service."""
    import pyvo

    return pyvo.dal.TAPService(service.tap_url)

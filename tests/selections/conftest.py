"""Fixtures of the selections' tests: the web page's test service, its TAP, client addresses.

The service is ``web_service`` of ``tests/services.py`` (the built-in sample
and 460 images of the synthetic sky, whose manifest ``label`` is their class,
published with the web page in a scratch DaCHS of the tests' own: a few
minutes to start, once per session; the web tests share it). Writes go out
from addresses of their own on the loopback network (127.0.9.1, 127.0.9.2,
...; Linux routes all of 127/8 to ``lo``): the server limits writes per client
address, and the web tests use 127.0.0.x.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

_ADDRESSES = (f"127.0.9.{i}" for i in itertools.count(1))


@pytest.fixture(scope="session")
def page_service(web_service):
    """The published service that serves the web page (``tests/services.py``)."""
    return web_service


@pytest.fixture(scope="session")
def page_url(page_service) -> str:
    """The web page's URL on the test service."""
    from vo_similarity.selections.page_client import PAGE_PATH

    return page_service.url + PAGE_PATH


@pytest.fixture(scope="session")
def page_tap(page_service):
    """A pyvo TAPService of the test service."""
    import pyvo

    return pyvo.dal.TAPService(page_service.tap_url)


@pytest.fixture(scope="session")
def new_address() -> Callable[[], str]:
    """``new_address()``: a loopback address no other client of the session writes from."""
    return lambda: next(_ADDRESSES)

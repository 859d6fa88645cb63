"""The web page's own requests over HTTP: what the page reads, and its one write.

A program that records selections the way the page "You might also like these
images" does (docs/web.md, "Recording selections: who may write"), for the
simulated astronomer (:mod:`vo_similarity.selections.simulate`), tests and
benchmarks. It goes through the same checks as the page's script
(``vo_similarity/web/assets/record.js`` and ``api.js``), and no others:

* ``GET api/token`` answers a token and sets it as the ``vosim_token`` cookie
  (kept in this client's cookie jar);
* ``POST api/record`` sends the page's form fields (``model``, ``query``,
  ``similar``..., ``not_similar``..., ``session``) with the token in the
  ``X-Vosim-Token`` header, the page's ``Origin`` and ``Sec-Fetch-Site:
  same-origin`` (what a browser adds to the page's own ``fetch``), and at most
  ``limits.record_max`` marks a request (more are split, as the page does);
* a token the server calls stale or expired (it lives 12 h, or until the
  server restarts) is renewed once and the write sent again, as the page does;
* a 429 (more than 30 writes a minute from one client address) is waited out
  for as long as the server says ("try again in N s", or ``Retry-After``) and
  the write sent again. The page's script does not retry; a program writing
  hundreds of marks must.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from typing import Self
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

__all__ = ["PAGE_PATH", "PAGE_SIZE", "PageClient", "PageError", "page_url"]

log = logging.getLogger(__name__)

#: where DaCHS serves the page below a server's root (the RD ``similarity/q``, service ``web``)
PAGE_PATH = "/similarity/q/web/custom/"
#: neighbours on one page of the web page (its first view of a query image)
PAGE_SIZE = 50
#: names of the headers and the cookie that carry the write token (web/guard.py)
TOKEN_HEADER, TOKEN_COOKIE = "X-Vosim-Token", "vosim_token"
#: what the page's script takes for a token to renew (record.js)
_STALE = re.compile(r"token|expired|cookie", re.IGNORECASE)
_WAIT = re.compile(r"try again in (\d+) s")
#: seconds to wait after a 429 whose reply says nothing (the server's window)
_DEFAULT_WAIT = 60.0


class PageError(RuntimeError):
    """A request the page's service refused, or one that got no JSON reply.

    Attributes:
        status: the HTTP status (0 when the server could not be reached).
    """

    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status


def page_url(url: str) -> str:
    """The page's URL from the page's own URL or from the server's root.

    ``http://host:8080`` becomes ``http://host:8080/similarity/q/web/custom/``; a
    URL that already ends in ``/custom`` or ``/custom/`` keeps its path (with the
    trailing slash, which the page's relative links need). A fragment
    (``#id=...``) or query is dropped.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) URL of the web page or its server: {url!r}")
    path = parts.path.rstrip("/")
    if not path.endswith("/custom"):
        path += PAGE_PATH.rstrip("/")
    return f"{parts.scheme}://{parts.netloc}{path}/"


class _FromAddress(HTTPAdapter):
    """Connections from one local source address (each address has its own rate limit)."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


class PageClient:
    """The web page's JSON API (``api/<op>``) as the page's script uses it.

    Args:
        base_url: the page's URL (``.../similarity/q/web/custom/``) or the server's
            root (see :func:`page_url`).
        timeout: seconds for one HTTP request.
        source_address: the local address to connect from (e.g. ``127.0.9.1``
            on the loopback network), so that several clients on one machine
            have rate limits of their own; ``None``: the system's choice.
        max_retries: how many 429 replies in a row one write waits out before
            it gives up with a :class:`PageError`.

    Attributes:
        url: the page's URL.
        origin: the page's origin (``scheme://host:port``), sent as ``Origin``.
        token: the write token in use; ``None`` until the first write. The
            ``vosim_token`` cookie of :attr:`http` holds the same.
        http: the ``requests.Session`` (with the cookie jar).
        waited: seconds spent waiting out 429 replies so far.
    """

    def __init__(self, base_url: str, *, timeout: float = 60.0,
                 source_address: str | None = None, max_retries: int = 10) -> None:
        self.url = page_url(base_url)
        parts = urlsplit(self.url)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.timeout, self.max_retries = timeout, max_retries
        self.http = requests.Session()
        self.http.headers.update({"Accept": "application/json",
                                  "User-Agent": "vo-similarity-page-client"})
        if source_address:
            for scheme in ("http://", "https://"):
                self.http.mount(scheme, _FromAddress(source_address))
        self.token: str | None = None
        self.waited = 0.0
        self._config: dict | None = None

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def api_url(self, op: str) -> str:
        return f"{self.url}api/{op}"

    # -- reading ---------------------------------------------------------------------

    def _reply(self, response: requests.Response, op: str) -> dict:
        """The JSON of a reply; :class:`PageError` for an error status or an error body."""
        try:
            data = response.json()
        except ValueError:
            data = None
        if not response.ok or not isinstance(data, dict) or isinstance(data.get("error"), str):
            message = (data.get("error") if isinstance(data, dict) and data.get("error")
                       else f"HTTP {response.status_code} {response.reason} (no JSON reply)")
            raise PageError(f"api/{op}: {message}", response.status_code)
        return data

    def _get(self, op: str, params: dict | None = None) -> dict:
        try:
            response = self.http.get(self.api_url(op), params=params, timeout=self.timeout)
        except requests.RequestException as exc:
            raise PageError(f"the web page's server at {self.origin} could not be reached: "
                            f"{exc}") from exc
        return self._reply(response, op)

    def config(self) -> dict:
        """``api/config``: the published models, the TAP URL and the request limits."""
        self._config = self._get("config")
        return self._config

    def model_id(self, model: int | str) -> int:
        """The ``model_id`` of a published model given by id or by name (``api/config``)."""
        models = self.config()["models"]
        for m in models:
            if str(model) in (str(m["model_id"]), m["name"]):
                return int(m["model_id"])
        known = ", ".join(f"{m['model_id']} ({m['name']})" for m in models) or "none"
        raise PageError(f"no published model {model!r}; published models: {known}", 404)

    def neighbours(self, query: str, model: int, page: int = 0, *, n: int = PAGE_SIZE) -> dict:
        """``api/neighbours``: page ``page`` (0 is the first) of ``n`` neighbours of ``query``.

        Args:
            query: the query image's obs_publisher_did or obs_id.
            model: the model_id.
            page: which page, counted from 0 (ranks ``page * n + 1`` to ``(page + 1) * n``).
            n: neighbours per page (at most ``limits.page_size_max``, 100).

        Returns:
            The reply: ``query`` (an image), ``k``, ``total``, ``offset`` and
            ``results`` (images with ``rank`` and ``dist``, rank order).
        """
        if page < 0:
            raise ValueError(f"page counts from 0, got {page}")
        return self._get("neighbours", {"id": query, "model": int(model),
                                        "offset": page * n, "n": n})

    # -- writing ---------------------------------------------------------------------

    def new_token(self) -> str:
        """A fresh token from ``api/token`` (its cookie lands in the cookie jar)."""
        self.token = self._get("token")["token"]
        return self.token

    def _post_record(self, fields: list[tuple[str, str]]) -> requests.Response:
        headers = {TOKEN_HEADER: self.token or self.new_token(), "Origin": self.origin,
                   "Sec-Fetch-Site": "same-origin"}
        try:
            return self.http.post(self.api_url("record"), data=fields, headers=headers,
                                  timeout=self.timeout)
        except requests.RequestException as exc:
            raise PageError(f"the web page's server at {self.origin} could not be reached: "
                            f"{exc}") from exc

    def _wait_for(self, response: requests.Response) -> float:
        """Seconds a 429 reply asks to wait."""
        retry_after = response.headers.get("Retry-After", "")
        if retry_after.isdigit():
            return float(retry_after)
        try:
            found = _WAIT.search(str(response.json().get("error", "")))
        except ValueError:
            found = None
        return float(found.group(1)) if found else _DEFAULT_WAIT

    def _write(self, fields: list[tuple[str, str]]) -> int:
        """One ``api/record`` request: renew a stale token once, wait out 429s."""
        renewed = False
        for _ in range(self.max_retries + 1):
            response = self._post_record(fields)
            if response.status_code == 429:
                wait = self._wait_for(response)
                log.info("the server takes no more writes from here for now (HTTP 429); "
                         "waiting %.0f s as it says", wait)
                time.sleep(wait)
                self.waited += wait
                continue
            if response.status_code == 403 and not renewed and self._stale(response):
                log.info("the write token is outdated; fetching a new one, as the page does")
                self.new_token()
                renewed = True
                continue
            return int(self._reply(response, "record")["recorded"])
        raise PageError(f"api/record: still refused (HTTP 429) after waiting "
                        f"{self.max_retries} times", 429)

    @staticmethod
    def _stale(response: requests.Response) -> bool:
        try:
            data = response.json()
        except ValueError:
            return False
        return bool(data.get("stale_token")) or bool(_STALE.search(str(data.get("error", ""))))

    def record(self, query: str, similar: Sequence[str] = (), not_similar: Sequence[str] = (),
               *, model: int, session: str) -> int:
        """Record marks for ``query`` as the page's Record button does.

        Args:
            query: the query image's obs_publisher_did (or obs_id).
            similar: images marked similar (DIDs or obs_ids).
            not_similar: images marked not similar.
            model: the model_id whose neighbours were shown.
            session: the session id (8-64 letters, digits, ``_``, ``-``).

        Returns:
            The number of rows the server wrote (``recorded``, summed over requests).

        Raises:
            PageError: a refusal (bad field, unknown image or model, a write
                the server does not take).
        """
        marks = [("similar", d) for d in similar] + [("not_similar", d) for d in not_similar]
        if not marks:
            raise ValueError("nothing to record: give similar or not_similar images")
        config = self._config or self.config()
        most = int((config.get("limits") or {}).get("record_max") or 100)
        recorded = 0
        for start in range(0, len(marks), most):
            fields = [("model", str(int(model))), ("query", query), *marks[start:start + most],
                      ("session", session)]
            recorded += self._write(fields)
        return recorded

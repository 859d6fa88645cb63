"""The web page "You might also like these images": DaCHS's custom renderer module.

Installed by ``vo-similarity publish`` as ``res/web_page.py`` of the resdir and
named by the RD's ``web`` service (``customPage="res/web_page"``); it runs in
DaCHS's own Python (twisted, psycopg2, numpy).  docs/web.md describes the page
and its JSON API.

    .../web/custom/              the page (assets/index.html)
    .../web/custom/assets/NAME   its script, style sheet and sampjs (res/web/assets)
    .../web/custom/api/OP        JSON: config image random lookup neighbours refine
                                 outliers token record (:mod:`web_queries`)

Why a custom renderer rather than ``pythonCore`` services under ``api``: the
reply is written in one piece with its Content-Length (DaCHS's ``api`` renderer
streams it from a thread, and on keep-alive connections the chunked terminator
then waits for a delayed ACK, ~40 ms: docs/search-service.md), and the page
needs its own headers (Content-Security-Policy, cookies) and HTTP statuses.
"""

from __future__ import annotations

import json
import math
import os
from urllib.parse import urlsplit

from gavo import api, base
from gavo.web import grend
from twisted.internet import defer, threads
from twisted.web import resource, server

queries, _ = api.loadPythonModule("web_queries", relativeTo=__file__)
guard, _ = api.loadPythonModule("web_guard", relativeTo=__file__)
kernel, _ = api.loadPythonModule("search_kernel", relativeTo=__file__)

#: Scripts and styles from this origin only, nothing inline; SAMP's Web Profile hub.
CSP = ("default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; "
       "connect-src 'self' http://127.0.0.1:21012 http://localhost:21012; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".png": "image/png", ".svg": "image/svg+xml"}
_READS = {"config": queries.config, "image": queries.image, "random": queries.random_image,
          "neighbours": queries.neighbours, "outliers": queries.outliers}
#: Requests answered on the server's event loop: each costs one indexed SQL
#: statement (~1-3 ms), less than the hop to a worker thread and back (~1 ms);
#: the rest (scans, the vector search, writes) runs in the reactor's thread pool.
_INLINE = {"config", "image", "neighbours", "token"}
_TOKENS = guard.TokenKeeper()
_RATE = guard.RateLimiter()
_HERE = os.path.dirname(os.path.abspath(__file__))
ASSETS = os.path.join(_HERE, "web", "assets")
VECTORS = os.path.join(os.path.dirname(_HERE), "data", "vectors")


def _headers(request, content_type: str) -> None:
    request.setHeader(b"content-type", content_type.encode())
    request.setHeader(b"content-security-policy", CSP.encode())
    request.setHeader(b"x-content-type-options", b"nosniff")
    request.setHeader(b"referrer-policy", b"same-origin")
    request.setHeader(b"cache-control", b"no-cache")


def _send(request, status: int, content_type: str, body: bytes) -> None:
    """The whole reply in one write, with its length (no chunking, no stall)."""
    if request.finished or getattr(request, "_disconnected", False):
        return
    request.setResponseCode(status)
    _headers(request, content_type)
    request.setHeader(b"content-length", str(len(body)).encode())
    request.write(body)
    request.finish()


def _json(value) -> bytes:
    if isinstance(value, queries.RawJSON):
        return value.encode("utf-8")
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except ValueError:  # a NaN or infinity: JSON has none, send null
        pass

    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v
    return json.dumps(clean(value), separators=(",", ":")).encode("utf-8")


def _args(request) -> dict:
    """Query and form parameters as name -> [text] (undecodable bytes refused)."""
    try:
        args = {k.decode("utf-8"): [v.decode("utf-8") for v in vs]
                for k, vs in (request.args or {}).items()}
    except UnicodeDecodeError:
        raise queries.WebError("parameters must be UTF-8 text") from None
    if any("\x00" in v for vs in args.values() for v in vs):  # PostgreSQL takes no NUL
        raise queries.WebError("parameters must not contain NUL characters")
    return args


def _base_url() -> str:
    return base.getConfig("web", "serverURL").rstrip("/")


def _own_origins(request) -> set[str]:
    found = set()
    parts = urlsplit(_base_url())
    found.add(f"{parts.scheme}://{parts.netloc}".lower())
    host = request.getHeader(b"host")
    if host:
        found.add(f"http://{host.decode('latin-1')}".lower())
    return found


class _File(resource.Resource):
    isLeaf = True

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def render_GET(self, request):
        with open(self.path, "rb") as f:
            body = f.read()
        _send(request, 200, _TYPES.get(os.path.splitext(self.path)[1], "text/plain"), body)
        return server.NOT_DONE_YET

    render_HEAD = render_GET


class _Assets(resource.Resource):
    def getChild(self, name, request):
        name = name.decode("utf-8", "replace")
        # only plain file names of the asset folder: no path ever reaches open()
        if name in os.listdir(ASSETS) and os.path.splitext(name)[1] in _TYPES:
            return _File(os.path.join(ASSETS, name))
        return _NotFound()


class _NotFound(resource.Resource):
    isLeaf = True

    def render(self, request):
        _send(request, 404, "application/json", _json({"error": "no such page"}))
        return server.NOT_DONE_YET


class _Api(resource.Resource):
    isLeaf = True

    def render(self, request):
        op = "/".join(p.decode("utf-8", "replace") for p in request.postpath)
        method = request.method.decode("ascii", "replace")
        if op in _INLINE and b"exclude_radius" not in request.args:
            d = defer.maybeDeferred(self._answer, request, op, method)
        else:
            d = threads.deferToThread(self._answer, request, op, method)
        d.addCallback(lambda r: _send(request, r[0], "application/json", _json(r[1])))
        d.addErrback(self._failed, request)
        return server.NOT_DONE_YET

    def _failed(self, failure, request):
        base.ui.notifyError(f"web page API: {failure.getErrorMessage()}")
        _send(request, 500, "application/json",
              _json({"error": "internal error; the server's log has the details"}))

    def _answer(self, request, op: str, method: str) -> tuple[int, dict]:
        try:
            if op == "record":
                return 200, self._record(request, method)
            if method not in ("GET", "HEAD", "POST"):
                return 405, {"error": f"{method} is not supported here"}
            if op == "token":
                return 200, {"token": self._token(request)}
            args = _args(request)
            if op == "lookup":
                read = queries.lookup_target if "target" in args else queries.lookup_position
            elif op == "refine":
                def read(cursor, args, base_url):
                    return queries.refine(cursor, args, base_url, kernel, VECTORS)
            elif op in _READS:
                read = _READS[op]
            else:
                return 404, {"error": f"no API operation {op[:40]!r}; see docs/web.md"}
            return 200, _with_cursor(base.getTableConn, read, args, _base_url())
        except queries.WebError as exc:
            return exc.status, {"error": str(exc)}
        except guard.Refused as exc:
            return exc.status, {"error": str(exc), "stale_token": exc.stale_token}

    def _token(self, request) -> str:
        token = _TOKENS.issue()
        request.addCookie(guard.COOKIE, token, path="/", httpOnly=True, sameSite="strict",
                          max_age=str(int(guard.TOKEN_LIFETIME)))
        return token

    def _record(self, request, method: str) -> dict:
        if method != "POST":
            raise guard.Refused("selections are recorded by POST from the web page only", 405)
        guard.check_origin(_header(request, b"origin"), _header(request, b"sec-fetch-site"),
                           _own_origins(request))
        cookie = request.getCookie(guard.COOKIE.encode())
        _TOKENS.check(_header(request, guard.HEADER.encode()),
                      cookie.decode("latin-1") if cookie else None)
        _RATE.take(request.getClientAddress().host)
        args = _args(request)
        return {"recorded": _with_cursor(base.getWritableTableConn,
                                         queries.record_selections, args)}


def _with_cursor(connect, work, *args):
    """``work(cursor, *args)`` on a pooled connection.

    A refused request leaves the ``with`` block normally: DaCHS's pool closes
    connections that an exception passes through, and bad input is no reason
    to reconnect.  A writable connection then rolls back what was done.
    """
    refused = None
    with connect() as conn, conn.cursor() as cursor:
        try:
            result = work(cursor, *args)
        except queries.WebError as exc:
            refused = exc
            if not conn.autocommit:
                conn.rollback()
    if refused is not None:
        raise refused
    return result


def _header(request, name: bytes) -> str | None:
    value = request.getHeader(name)
    return value.decode("latin-1") if value is not None else None


class MainPage(grend.ServiceBasedPage):
    """The ``custom`` renderer of the ``web`` service."""

    name = "custom"  # what DaCHS checks against the service's allowed renderers

    @classmethod
    def isBrowseable(cls, service):
        return True

    def render(self, request):
        # the page's relative links need the trailing slash
        request.redirect(request.URLPath().child(b"").__str__().encode())
        request.finish()
        return server.NOT_DONE_YET

    def getChild(self, name, request):
        if name == b"":
            return _File(os.path.join(ASSETS, "index.html"))
        if name == b"assets":
            return _Assets()
        if name == b"api":
            return _Api()
        return _NotFound()

"""Who may write selections: the page's token, its origin, and a rate limit.

Runs inside DaCHS (``res/web_guard.py``) and in the tests: standard library only.

A write (``api/record``) is taken only from the page itself:

* the request carries the token the page got from ``api/token`` twice, in the
  ``X-Vosim-Token`` header and in the ``vosim_token`` cookie (``SameSite=Strict``,
  ``HttpOnly``).  A form on another site can send neither a custom header nor,
  being cross-site, the cookie; a script that has not loaded ``api/token`` has
  no token.  The token is an HMAC of its issue time under a key that lives in
  the server's memory (tokens end with the server process, or after
  :data:`TOKEN_LIFETIME`; the page then fetches a new one);
* an ``Origin`` header, when present, names the page's own origin, and a
  ``Sec-Fetch-Site`` header, when present, says ``same-origin``;
* per client address at most :data:`RATE` writes in :data:`RATE_WINDOW` seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from collections import deque

__all__ = ["COOKIE", "HEADER", "RATE", "RATE_WINDOW", "TOKEN_LIFETIME", "RateLimiter",
           "Refused", "TokenKeeper", "check_origin"]

COOKIE = "vosim_token"
HEADER = "X-Vosim-Token"
TOKEN_LIFETIME = 12 * 3600  # seconds
RATE, RATE_WINDOW = 30, 60.0  # writes per client address and window (seconds)


class Refused(Exception):
    """A write that is not taken: HTTP ``status`` (403 or 429) and why."""

    def __init__(self, message: str, status: int = 403, *, stale_token: bool = False):
        super().__init__(message)
        self.status, self.stale_token = status, stale_token


class TokenKeeper:
    """Issues and checks the page's write tokens (``<time>.<hmac>``)."""

    def __init__(self, key: bytes | None = None, lifetime: float = TOKEN_LIFETIME):
        self._key = key or os.urandom(32)
        self.lifetime = lifetime

    def _mac(self, stamp: str) -> str:
        return hmac.new(self._key, stamp.encode("ascii"), hashlib.sha256).hexdigest()

    def issue(self, now: float | None = None) -> str:
        """A new token."""
        stamp = f"{int(now if now is not None else time.time())}.{os.urandom(8).hex()}"
        return f"{stamp}.{self._mac(stamp)}"

    def check(self, header: str | None, cookie: str | None, now: float | None = None) -> None:
        """Raise :class:`Refused` unless header and cookie hold the same valid token."""
        if not header:
            raise Refused(f"no {HEADER} header: selections are recorded from the web "
                          "page only")
        if not cookie:
            raise Refused(f"no {COOKIE} cookie: selections are recorded from the web page "
                          "only (reload the page)")
        if not hmac.compare_digest(header, cookie):
            raise Refused("the token does not match the page's cookie")
        issued, _, rest = header.partition(".")
        nonce, _, mac = rest.partition(".")
        if not (issued.isdigit() and nonce and mac and
                hmac.compare_digest(mac, self._mac(f"{issued}.{nonce}"))):
            raise Refused("invalid or outdated token: reload the page", stale_token=True)
        age = (now if now is not None else time.time()) - int(issued)
        if not 0 <= age <= self.lifetime:
            raise Refused("the token has expired: reload the page", stale_token=True)


def check_origin(origin: str | None, fetch_site: str | None, allowed: set[str]) -> None:
    """Raise :class:`Refused` for a request a browser says came from another site.

    Args:
        origin: the ``Origin`` header, if any.
        fetch_site: the ``Sec-Fetch-Site`` header, if any.
        allowed: the page's own origins (``scheme://host:port``, lower case).
    """
    if origin is not None and origin.rstrip("/").lower() not in allowed:
        raise Refused(f"requests from {origin[:100]} may not record selections")
    if fetch_site is not None and fetch_site.lower() not in ("same-origin", "none"):
        raise Refused(f"a {fetch_site[:40]} request may not record selections")


class RateLimiter:
    """At most ``rate`` events per ``window`` seconds per key (a sliding window)."""

    def __init__(self, rate: int = RATE, window: float = RATE_WINDOW, max_keys: int = 10000):
        self.rate, self.window, self.max_keys = rate, window, max_keys
        self._events: dict[str, deque] = {}
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> None:
        """Count one event for ``key``; raise :class:`Refused` (429) over the limit."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if len(self._events) > self.max_keys:  # forget idle clients, bound memory
                for k in [k for k, q in self._events.items() if q[-1] < now - self.window]:
                    del self._events[k]
            events = self._events.setdefault(key, deque())
            while events and events[0] < now - self.window:
                events.popleft()
            if len(events) >= self.rate:
                wait = int(events[0] + self.window - now) + 1
                raise Refused(f"too many selections recorded from here: at most "
                              f"{self.rate} requests per {int(self.window)} s; try again in "
                              f"{wait} s", 429)
            events.append(now)

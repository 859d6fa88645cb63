"""The write guard of the web page (vo_similarity/web/guard.py), without a server."""

from __future__ import annotations

import pytest

from vo_similarity.web.guard import RateLimiter, Refused, TokenKeeper, check_origin


def test_a_token_is_taken_only_with_its_cookie_and_within_its_lifetime():
    keeper = TokenKeeper(lifetime=100)
    token = keeper.issue(now=1000)
    keeper.check(token, token, now=1050)
    for header, cookie in [(None, token), (token, None), (token, keeper.issue(now=1000))]:
        with pytest.raises(Refused) as err:
            keeper.check(header, cookie, now=1050)
        assert err.value.status == 403 and not err.value.stale_token
    with pytest.raises(Refused, match="expired") as err:
        keeper.check(token, token, now=1101)
    assert err.value.stale_token


def test_a_token_of_another_key_or_altered_is_refused():
    token = TokenKeeper().issue()
    with pytest.raises(Refused, match="invalid"):
        TokenKeeper().check(token, token)  # another server process: another key
    keeper = TokenKeeper()
    good = keeper.issue(now=1000)
    stamp, nonce, mac = good.split(".")
    for forged in (f"{int(stamp) + 10}.{nonce}.{mac}", f"{stamp}.{nonce}.{'0' * len(mac)}",
                   "x.y.z", "", "..", stamp):
        if not forged:
            continue
        with pytest.raises(Refused):
            keeper.check(forged, forged, now=1000)


def test_only_the_pages_own_origin_may_write():
    own = {"http://127.0.0.1:8080"}
    check_origin(None, None, own)
    check_origin("http://127.0.0.1:8080", "same-origin", own)
    check_origin("HTTP://127.0.0.1:8080/", None, own)
    for origin, site in [("http://evil.example", None), ("null", None),
                         ("http://127.0.0.1:8081", None), (None, "cross-site"),
                         (None, "same-site")]:
        with pytest.raises(Refused) as err:
            check_origin(origin, site, own)
        assert err.value.status == 403


def test_the_rate_limit_is_per_client_and_slides():
    limit = RateLimiter(rate=3, window=10)
    for t in (0, 1, 2):
        limit.take("a", now=t)
    with pytest.raises(Refused) as err:
        limit.take("a", now=3)
    assert err.value.status == 429 and "try again in 8 s" in str(err.value)
    limit.take("b", now=3)  # another client is not held up
    limit.take("a", now=10.5)  # the first write has left the window
    with pytest.raises(Refused):
        limit.take("a", now=10.6)

"""The server's vector search (``{server}/similarity/q/search/api``): request and answer.

The service (docs/publish.md) takes a model, ``n``, chosen images
(``similar``/``not_similar``) and/or vectors with weights, and answers JSON
``{"model_id", "dim", "n", "results": [{"rank", "image_id",
"obs_publisher_did", "obs_id", "score", "dist"}, ...]}``, or
``{"error": "..."}`` for bad input.  Its results carry ids only; the client
then fetches their ObsCore columns in one TAP query with the results uploaded
(:func:`vo_similarity.client.adql.hits_query`).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence

import numpy as np
from astropy.table import Table
from pyvo.dal import DALQueryError, DALServiceError

__all__ = ["HIT_COLUMNS", "hits_table", "search_request", "search_url", "send_search"]

#: The columns of the uploaded results table, in order, with their types.
HIT_COLUMNS = (("rank", np.int32), ("obs_publisher_did", object), ("score", np.float64),
               ("dist", np.float64))


def search_url(server: str) -> str:
    return f"{server.rstrip('/')}/similarity/q/search/api"


def _vector_text(vector: np.ndarray) -> str:
    # repr of a float64 is the shortest text that reads back to the same number
    return ",".join(repr(float(x)) for x in vector)


def search_request(server: str, model_id: int, n: int, *, similar: Sequence[str] = (),
                   not_similar: Sequence[str] = (), vectors: Sequence[np.ndarray] = (),
                   weights: Sequence[float] = ()) -> dict:
    """The request as ``{"url": str, "data": [(key, value), ...]}`` (a form POST).

    ``data`` is a list of pairs because keys repeat (one ``similar`` per image).
    """
    data: list[tuple[str, str]] = [("model", str(int(model_id))), ("n", str(int(n)))]
    data += [("similar", s) for s in similar]
    data += [("not_similar", s) for s in not_similar]
    data += [("vector", _vector_text(v)) for v in vectors]
    data += [("weight", repr(float(w))) for w in weights]
    return {"url": search_url(server), "data": data}


def send_search(session, request: dict, timeout: float) -> dict:
    """POST ``request``; return the decoded JSON answer.

    Raises:
        DALQueryError: the service refused the input (its message passed on).
        DALServiceError: no usable answer (unreachable, not JSON, an HTTP error).
    """
    url = request["url"]
    try:
        # A fresh connection per search: DaCHS's api renderer sends a reply in
        # pieces from a thread, and on a reused connection Nagle's algorithm
        # then waits for the client's delayed ACK (~40 ms; docs/search-service.md)
        response = session.post(url, data=request["data"], timeout=timeout,
                                headers={"Connection": "close"})
    except OSError as exc:  # requests' ConnectionError and Timeout are OSErrors
        raise DALServiceError(f"the search service at {url} did not answer: {exc}",
                              url=url) from exc
    try:
        answer = response.json()
    except (ValueError, json.JSONDecodeError):
        message = _dali_error(response.content)
        if message is not None:  # DaCHS refused the input before the service ran
            raise DALQueryError(message, url=url) from None
        raise DALServiceError(
            f"the search service at {url} answered HTTP {response.status_code} "
            f"{response.headers.get('Content-Type', '')!r}, not JSON: {response.text[:300]!r}",
            code=response.status_code, url=url) from None
    if isinstance(answer, dict) and "error" in answer:
        raise DALQueryError(str(answer["error"]), url=url)
    if response.status_code >= 400 or not isinstance(answer, dict) or "results" not in answer:
        raise DALServiceError(f"the search service at {url} answered HTTP "
                              f"{response.status_code}: {response.text[:300]!r}",
                              code=response.status_code, url=url)
    return answer


def _dali_error(body: bytes) -> str | None:
    """The message of a DALI error document (a VOTable whose QUERY_STATUS is ERROR)."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return None
    for info in root.iter():
        if (info.tag.rsplit("}", 1)[-1] == "INFO" and info.get("name") == "QUERY_STATUS"
                and info.get("value") == "ERROR"):
            return (info.text or "").strip() or "the service reported an error"
    return None


def hits_table(answer: dict | None = None) -> Table:
    """The results of a search as the table the client uploads (empty without ``answer``)."""
    results = (answer or {}).get("results", [])
    return Table({name: np.array([r[name] for r in results], dtype=dtype)
                  for name, dtype in HIT_COLUMNS})

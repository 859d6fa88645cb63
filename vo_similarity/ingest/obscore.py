"""Images from an archive's ObsCore table over TAP: the operator's road in.

``vo-similarity ingest W --tap URL --adql "SELECT ... FROM ivoa.obscore WHERE ..."``
runs the query with pyvo, downloads each row's ``access_url`` (resolving a
DataLink document first where ``access_format`` says the URL is one) and hands
the files to the ingest pipeline with the archive's own ``obs_publisher_did``,
``obs_id``, ``target_name``, ``s_ra``, ``s_dec`` and ``s_fov``, so that the
published neighbours join that archive's ObsCore directly. Columns named like
the manifest's ``category``, ``credit`` or ``label`` are taken too (an
operator may ``SELECT ..., 'galaxy' AS category``).

Downloads run ``workers`` at a time with retries and back-off on connection
errors and 5xx replies; each file is cached under ``WORKDIR/downloads/`` by
the SHA-256 of its DID and written under a temporary name first, so a killed
run resumes with the files it has, and a rerun downloads nothing. A row whose
file cannot be had costs one line in the ingest report; the run goes on.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from urllib.parse import urlparse

from vo_similarity.ingest.inputs import ImageInput

__all__ = ["DATALINK", "download_inputs", "obscore_inputs", "query_obscore"]

log = logging.getLogger(__name__)

#: ``access_format`` of an access_url that is a DataLink document (ObsCore 1.1, §4.7)
DATALINK = "content=datalink"
_REQUIRED = ("obs_publisher_did", "access_url")
_SUFFIXES = {"image/fits": ".fits", "application/fits": ".fits", "image/png": ".png",
             "image/jpeg": ".jpg"}


def query_obscore(tap_url: str, adql: str, *, maxrec: int | None = None):
    """Run ``adql`` on the TAP service (pyvo, synchronous) and return an astropy Table.

    Raises:
        ValueError: when the result lacks ``obs_publisher_did`` or ``access_url``.
    """
    import pyvo

    table = pyvo.dal.TAPService(tap_url).run_sync(adql, maxrec=maxrec).to_table()
    missing = [c for c in _REQUIRED if c not in table.colnames]
    if missing:
        raise ValueError(f"the query must select {', '.join(missing)} (ObsCore columns) "
                         f"besides what it selects now: {', '.join(table.colnames)}")
    return table


def _text(value) -> str:
    if value is None or getattr(value, "mask", False) is True:
        return ""
    text = value.decode() if isinstance(value, bytes) else str(value)
    return "" if text == "--" else text


def _number(value) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) else math.nan


def _obs_id(did: str) -> str:
    return did.split("?", 1)[1] if "?" in did else did.rsplit("/", 1)[-1]


def _cache_name(did: str, url: str, access_format: str) -> str:
    suffix = _SUFFIXES.get(access_format.split(";")[0].strip().lower(), "")
    if not suffix:
        path = urlparse(url).path.lower()
        suffix = next((s for s in (".fits.gz", ".fits", ".fit", ".fts", ".png", ".jpg",
                                   ".jpeg") if path.endswith(s)), "")
    return hashlib.sha256(did.encode()).hexdigest()[:32] + (suffix or ".dat")


def _resolve_datalink(url: str, session) -> tuple[str, str]:
    """The ``#this`` link of a DataLink document: ``(access_url, content_type)``."""
    from pyvo.dal.adhoc import DatalinkResults

    links = DatalinkResults.from_result_url(url, session=session)
    for link in links:
        if link.semantics == "#this" and not link.error_message:
            return link.access_url, link.content_type or ""
    raise OSError(f"the DataLink document {url} has no #this link to the dataset")


class _Download:
    """Fetch one URL to a file: retries with exponential back-off on connection
    errors and 5xx replies, none on 4xx (the file is not there to have)."""

    def __init__(self, session, *, retries: int, backoff: float, timeout: float):
        self.session, self.retries, self.backoff, self.timeout = (session, retries, backoff,
                                                                  timeout)

    def __call__(self, url: str, target: Path) -> None:
        import requests

        part = target.with_name(target.name + ".part")
        for attempt in range(self.retries + 1):
            try:
                with self.session.get(url, stream=True, timeout=self.timeout) as reply:
                    if reply.status_code >= 400:
                        error = OSError(f"HTTP {reply.status_code} {reply.reason} from {url}")
                        if reply.status_code < 500:
                            raise error
                        raise _Retry(error)
                    with open(part, "wb") as f:
                        f.writelines(reply.iter_content(1 << 16))
                os.replace(part, target)
                return
            except (_Retry, requests.ConnectionError, requests.Timeout) as exc:
                last = exc.error if isinstance(exc, _Retry) else exc
                if attempt == self.retries:
                    raise OSError(f"{last} (after {self.retries + 1} tries)") from None
                time.sleep(self.backoff * 2**attempt)
            finally:
                part.unlink(missing_ok=True)


class _Retry(Exception):
    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.error = error


def download_inputs(table, cache: Path, *, workers: int = 4, retries: int = 3,
                    backoff: float = 0.5, timeout: float = 60.0, progress: bool = True,
                    session=None) -> tuple[list[ImageInput], list[tuple[str, str]]]:
    """Download the files of ObsCore rows and make them ingest inputs.

    Args:
        table: rows with at least ``obs_publisher_did`` and ``access_url``.
        cache: the download folder (files named by the SHA-256 of the DID).
        workers: downloads at a time.
        retries: further tries after a connection error or a 5xx reply.
        backoff: seconds before the first retry, doubled each time.
        timeout: seconds to wait for the server.
        progress: show a progress bar.
        session: a ``requests.Session`` (default: a new one).

    Returns:
        ``(inputs in the table's order, [(DID, reason)] of the rows that failed)``.
    """
    import requests
    from tqdm.auto import tqdm

    cache.mkdir(parents=True, exist_ok=True)
    session = session or requests.Session()
    fetch = _Download(session, retries=retries, backoff=backoff, timeout=timeout)
    cols = set(table.colnames)
    rows, failed, seen = [], [], set()
    for row in table:
        did = _text(row["obs_publisher_did"])
        url = _text(row["access_url"])
        if not did or not url:
            failed.append((did or "(no DID)",
                           "the row has no obs_publisher_did or access_url"))
            continue
        if did in seen:
            failed.append((did, "duplicate obs_publisher_did in the query's result"))
            continue
        seen.add(did)
        rows.append((row, did, url, _text(row["access_format"]) if "access_format" in cols
                     else ""))

    def one(row, did: str, url: str, access_format: str) -> Path:
        if DATALINK in access_format.lower():
            url, access_format = _resolve_datalink(url, session)
        target = cache / _cache_name(did, url, access_format)
        if not target.is_file():
            fetch(url, target)
        return target

    paths: dict[str, Path] = {}
    with ThreadPoolExecutor(max(1, workers)) as pool, \
            tqdm(total=len(rows), desc="download", unit="file", disable=not progress) as bar:
        futures = {pool.submit(one, *r): r[1] for r in rows}
        for future in as_completed(futures):
            did = futures[future]
            try:
                paths[did] = future.result()
            except Exception as exc:  # noqa: BLE001 - any failure of one file is one report line
                log.info("download of %s failed: %s", did, exc)
                failed.append((did, f"download failed: {exc}"))
            bar.update()

    inputs = []
    for row, did, _, _ in rows:
        if did not in paths:
            continue
        values = {c: row[c] if c in cols else None
                  for c in ("obs_id", "target_name", "s_ra", "s_dec", "s_fov", "category",
                            "credit", "label")}
        inputs.append(ImageInput(
            path=paths[did], obs_id=_text(values["obs_id"]) or _obs_id(did),
            target_name=_text(values["target_name"]), s_ra=_number(values["s_ra"]),
            s_dec=_number(values["s_dec"]), s_fov=_number(values["s_fov"]),
            category=_text(values["category"]), credit=_text(values["credit"]),
            label=_text(values["label"]), publisher_did=did))
    return inputs, failed


def obscore_inputs(tap_url: str, adql: str, cache: Path, **options
                   ) -> tuple[list[ImageInput], list[tuple[str, str]]]:
    """:func:`query_obscore`, then :func:`download_inputs` of its rows."""
    table = query_obscore(tap_url, adql)
    log.info("the ObsCore query returned %d rows", len(table))
    return download_inputs(table, cache, **options)



"""Hand results to desktop VO tools over SAMP: tables to TOPCAT, images to Aladin.

:class:`SampMixin` gives the client (``SimilarityClass``) ``send_table``
(``table.load.votable``), ``send_image`` (``image.load.fits``) and
``highlight_row`` (``table.highlight.row``). Every call registers with the hub
(found the standard way: ``SAMP_HUB``, else ``~/.samp``) for its own duration
and unregisters before it returns, even on error: no registration outlives a
call, and a hub started between calls is found by the next one. A sent table
is a VOTable file in a private temporary folder, kept until the process ends
(:func:`remove_sent_files` removes it earlier). Light: no torch (docs/samp.md).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
from astropy.table import Row, Table
from astroquery.exceptions import InvalidQueryError
from pyvo.samp import SAMPClientError, SAMPHubError, SAMPIntegratedClient
from pyvo.samp.errors import SAMPProxyError

__all__ = ["SampDeliveryError", "SampHubNotFoundError", "SampMixin", "SampRecipientError",
           "SentImage", "SentTable", "remove_sent_files"]

log = logging.getLogger(__name__)

#: the program a user should start to receive each message type
_RECEIVER_HINT = {"table.load.votable": "TOPCAT", "table.highlight.row": "TOPCAT",
                  "image.load.fits": "Aladin"}
_URL_SCHEMES = ("http", "https", "ftp", "file")
#: clients that load what they are sent but never reply to a load *call* (Aladin 12):
#: they are notified instead of called (a call would wait out the timeout)
_NO_LOAD_REPLY = frozenset({"aladin"})


class SampHubNotFoundError(SAMPHubError, ConnectionError):
    """No SAMP hub runs (or its lock file names one that is gone)."""


class SampRecipientError(SAMPClientError, LookupError):
    """The named client is not on the hub, or does not accept the message type."""


class SampDeliveryError(SAMPClientError):
    """Every recipient refused the message or did not answer in time."""


@dataclass(frozen=True)
class SentTable:
    """A table handed to SAMP clients (what :meth:`SampMixin.highlight_row` needs).

    ``recipients``: SAMP ids of the clients that have it (those that replied
    they loaded it, and those notified because they never reply: Aladin).
    """

    table_id: str  #: the ``table-id`` the receivers know the table by
    url: str  #: the ``file://`` URL of the VOTable they loaded
    name: str  #: the name the receivers show
    n_rows: int
    recipients: tuple[str, ...]


@dataclass(frozen=True)
class SentImage:
    """An image SAMP clients were told to load (notified: they do not reply)."""

    image_id: str
    url: str  #: the URL sent (a ``file://`` URL after ``download=True``)
    name: str
    recipients: tuple[str, ...]


_files_lock = threading.Lock()
_files: tempfile.TemporaryDirectory | None = None  # removes itself at interpreter exit


def _new_file(stem: str, suffix: str = ".vot") -> Path:
    """A path in this process's private folder of sent files."""
    global _files
    with _files_lock:
        if _files is None:
            _files = tempfile.TemporaryDirectory(prefix="vo-similarity-samp-")
        return Path(_files.name) / f"{stem}{suffix}"


def remove_sent_files() -> None:
    """Remove the files sent so far (receivers that loaded them keep their copy)."""
    global _files
    with _files_lock:
        if _files is not None:
            _files.cleanup()
            _files = None


def _new_id(kind: str) -> str:
    return f"vo-similarity-{kind}-{uuid.uuid4().hex[:12]}"


@contextmanager
def _hub_connection(name: str) -> Iterator[SAMPIntegratedClient]:
    """Register with the running hub for the duration of the block, then unregister."""
    client = SAMPIntegratedClient(
        name=name, description="vo-similarity client: image similarity search results",
        callable=False)  # sends only: no XML-RPC server of our own, no port
    try:
        client.connect()
    except (SAMPHubError, SAMPClientError, SAMPProxyError, OSError) as exc:
        where = os.environ.get("SAMP_HUB") or str(Path("~/.samp").expanduser())
        raise SampHubNotFoundError(
            f"No SAMP hub is running (looked for it in {where}: {exc}). Start TOPCAT or "
            "Aladin (each starts a hub when none runs) and try again.") from exc
    try:
        yield client
    finally:
        # Not client.disconnect(): pyvo (1.9) skips unregistering there for a
        # client that is not callable, which would leave our registration behind.
        try:
            if client.client is not None and client.client.is_registered:
                client.client.unregister()
        except (SAMPHubError, SAMPClientError, SAMPProxyError, OSError) as exc:
            log.debug("unregistering from the SAMP hub failed (the hub is gone?): %s", exc)
        finally:
            client.hub.disconnect()


def _client_names(conn: SAMPIntegratedClient, ids) -> dict[str, str]:
    return {cid: str(conn.get_metadata(cid).get("samp.name", "")) for cid in ids}


def _recipients(conn: SAMPIntegratedClient, mtype: str, to: str | None) -> list[str]:
    """SAMP ids of the clients to send ``mtype`` to: those called ``to``, or all subscribed."""
    me = conn.get_public_id()
    hint = _RECEIVER_HINT.get(mtype, "a client that accepts it")
    subscribed = [cid for cid in conn.get_subscribed_clients(mtype) if cid != me]
    if to is None:
        if not subscribed:
            raise SampRecipientError(f"no client on the SAMP hub accepts {mtype}; "
                                     f"start {hint} and try again")
        return subscribed
    hub_id = getattr(conn.client, "_hub_id", None)  # the hub lists itself as a client
    others = [cid for cid in conn.get_registered_clients() if cid not in (me, hub_id)]
    names = _client_names(conn, others)
    named = [cid for cid, n in names.items() if n.lower() == to.strip().lower()]
    if not named:
        present = ", ".join(sorted({n for n in names.values() if n})) or "none"
        raise SampRecipientError(f"no client called {to!r} is on the SAMP hub (clients there: "
                                 f"{present}); start it and try again")
    accepting = [cid for cid in named if cid in subscribed]
    if not accepting:
        willing = ", ".join(sorted({names.get(c) or c for c in subscribed})) or "none"
        raise SampRecipientError(f"the SAMP client {to!r} does not accept {mtype} "
                                 f"(clients that do: {willing})")
    return accepting


def _check_to(to) -> None:
    if to is not None and (not isinstance(to, str) or not to.strip()):
        raise InvalidQueryError(f"to must be a SAMP client's name (e.g. 'topcat') or None, "
                                f"not {to!r}")


def _reply_error(reply: Mapping) -> str | None:
    """None for a reply of status ok or warning, else the receiver's error text."""
    status, error = reply.get("samp.status"), reply.get("samp.error") or {}
    if status == "samp.warning":
        log.warning("SAMP receiver warns: %s", error)
    if status in ("samp.ok", "samp.warning"):
        return None
    return str(error.get("samp.errortxt") or status or "no status in the reply")


def _call_each(conn: SAMPIntegratedClient, recipients: list[str], mtype: str, params: dict,
               timeout: float, *, retry_for: float = 0.0) -> tuple[list[str], dict[str, str]]:
    """Call every recipient, waiting for its reply; returns (accepted ids, id -> error).

    A reply with an error is retried for ``retry_for`` seconds (TOPCAT answers
    ``table.load.votable`` ~10-100 ms before a highlight can find the table).
    """
    message = {"samp.mtype": mtype, "samp.params": params}
    accepted, failed = [], {}
    for cid in recipients:
        deadline = time.monotonic() + retry_for
        while True:
            try:
                error = _reply_error(conn.call_and_wait(cid, message, str(max(1, round(timeout)))))
            except SAMPProxyError as exc:  # the hub's timeout, or the receiver is gone
                error = f"no answer within {timeout:g} s ({exc.faultString})"
                deadline = 0  # a timeout is not retried
            if error is None or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        if error is None:
            accepted.append(cid)
        else:
            failed[cid] = error
    return accepted, failed


def _report(failed: dict[str, str], names: dict[str, str], accepted: list[str],
            what: str) -> None:
    """Raise if nobody took it; log the recipients that refused it otherwise."""
    lines = [f"{names.get(c) or c}: {e}" for c, e in failed.items()]
    if not accepted:
        raise SampDeliveryError(f"no SAMP client took {what}: " + "; ".join(lines))
    for line in lines:
        log.warning("a SAMP client refused %s: %s", what, line)


def _as_table(table) -> Table:
    if isinstance(table, Table):
        return table
    if hasattr(table, "to_table"):  # pyvo DALResults, astropy VOTable objects
        return table.to_table()
    raise InvalidQueryError(f"send_table needs an astropy Table (or pyvo results), "
                            f"not {type(table).__name__}")


def _image_url(row_or_url) -> tuple[str, str]:
    """(URL, default name) of an image given as a result row, a URL or a local path."""
    if isinstance(row_or_url, (Row, Mapping)):  # an astropy Row; a pyvo Record is a Mapping
        names = row_or_url.colnames if isinstance(row_or_url, Row) else list(row_or_url)
        if "access_url" not in names:
            raise InvalidQueryError(f"this row has no access_url column (columns: "
                                    f"{', '.join(map(str, names))})")
        url = row_or_url["access_url"]
        url = "" if np.ma.is_masked(url) else (url.decode() if isinstance(url, bytes)
                                               else str(url)).strip()
        if not url:
            raise InvalidQueryError("this row's access_url is empty")
        name = next((str(row_or_url[k]) for k in ("obs_id", "target_name", "obs_publisher_did")
                     if k in names and not np.ma.is_masked(row_or_url[k])
                     and str(row_or_url[k]).strip()), url)
        if urlparse(url).scheme.lower() not in _URL_SCHEMES:
            raise InvalidQueryError(f"this row's access_url is not a URL: {url!r}")
        return url, name
    if isinstance(row_or_url, Path) or (isinstance(row_or_url, str)
                                        and urlparse(row_or_url).scheme.lower()
                                        not in _URL_SCHEMES):
        path = Path(row_or_url).expanduser()
        if not path.is_file():
            raise InvalidQueryError(f"no such image file: {path}")
        return path.resolve().as_uri(), path.name
    if isinstance(row_or_url, str):
        return row_or_url.strip(), row_or_url.strip().rsplit("/", 1)[-1] or row_or_url
    raise InvalidQueryError(f"send_image needs a result row with access_url, a URL or a file "
                            f"path, not {type(row_or_url).__name__}")


def _fetch(url: str, path: Path, timeout: float) -> str:
    """Download ``url`` to ``path``; returns the file's URL."""
    with urllib.request.urlopen(url, timeout=timeout) as response, open(path, "wb") as out:
        shutil.copyfileobj(response, out)  # urlopen raises HTTPError on a 4xx/5xx
    log.info("downloaded %s for SAMP (%d bytes)", url, path.stat().st_size)
    return path.as_uri()


def _row_index(sent_table: SentTable, row) -> int:
    if isinstance(row, Row):
        index = row.index
    elif isinstance(row, (int, np.integer)) and not isinstance(row, (bool, np.bool_)):
        index = int(row)
    else:
        raise InvalidQueryError(f"row must be a row index (0-based) or an astropy Row, "
                                f"not {type(row).__name__}")
    if not 0 <= index < sent_table.n_rows:
        raise InvalidQueryError(f"row {index} is outside the sent table "
                                f"({sent_table.n_rows} rows: 0..{sent_table.n_rows - 1})")
    return index


class SampMixin:
    """Send tables and images to desktop VO tools (TOPCAT, Aladin) over SAMP.

    ``to`` names a client as it registered on the hub (its ``samp.name``,
    matched case-insensitively: ``"topcat"``, ``"aladin"``), or is None for
    every client that accepts the message.
    """

    #: the name this client registers under on the hub
    samp_name: str = "vo-similarity"
    #: seconds a receiver may take to answer a call (TOPCAT loads the table first)
    samp_timeout: float = 60.0
    #: seconds to retry a highlight the receiver refused (it may still be adding the table)
    samp_settle: float = 5.0

    def send_table(self, table, *, to: str | None = "topcat",
                   name: str | None = None) -> SentTable:
        """Send a table to TOPCAT (or another SAMP client) and wait until it loaded it.

        Args:
            table: an astropy Table (e.g. a result of the client's queries) or
                pyvo results; its units, UCDs and descriptions travel with it.
            to: the receiving client's name on the hub, or None for all that
                accept ``table.load.votable``.
            name: the name the receiver shows (default: ``table.meta['name']``
                or "vo-similarity results").

        Returns:
            The :class:`SentTable` (table-id, URL), for :meth:`highlight_row`.

        Raises:
            InvalidQueryError: not a table, or it cannot be written as VOTable.
            SampHubNotFoundError: no hub runs.
            SampRecipientError: ``to`` is not on the hub or does not accept tables.
            SampDeliveryError: no recipient loaded it (their error messages included).
        """
        _check_to(to)
        table = _as_table(table)
        name = name or str(table.meta.get("name") or "vo-similarity results")
        table_id = _new_id("table")
        path = _new_file(table_id)
        try:
            table.write(path, format="votable")
        except Exception as exc:  # astropy raises several kinds for unwritable columns
            path.unlink(missing_ok=True)
            raise InvalidQueryError(f"this table cannot be written as VOTable: {exc}") from exc
        url = path.as_uri()
        params = {"url": url, "table-id": table_id, "name": name}
        with _hub_connection(self.samp_name) as conn:
            recipients = _recipients(conn, "table.load.votable", to)
            names = _client_names(conn, recipients)
            silent = [c for c in recipients if names[c].lower() in _NO_LOAD_REPLY]
            for cid in silent:
                conn.notify(cid, {"samp.mtype": "table.load.votable", "samp.params": params})
            accepted, failed = _call_each(conn, [c for c in recipients if c not in silent],
                                          "table.load.votable", params, self.samp_timeout)
        accepted = [c for c in recipients if c in accepted or c in silent]  # in hub order
        _report(failed, names, accepted, f"table {name!r}")
        log.info("sent table %r (%d rows) to %s", name, len(table),
                 ", ".join(names[c] or c for c in accepted))
        return SentTable(table_id, url, name, len(table), tuple(accepted))

    def send_image(self, row_or_url, *, to: str | None = "aladin", name: str | None = None,
                   download: bool = False) -> SentImage:
        """Tell Aladin (or another SAMP client) to load an image (``image.load.fits``).

        Sent as a notification: Aladin loads such images but never answers the
        call form of this message, so there is no confirmation to wait for.
        Aladin also loads PNG and JPEG files sent this way (the built-in
        sample's ``access_url`` are PNG), without a sky position.

        Args:
            row_or_url: a result row (its ``access_url`` is sent), a URL, or
                the path of a local image file.
            to: the receiving client's name on the hub, or None for all that
                accept ``image.load.fits``.
            name: the name the receiver shows (default: the row's obs_id or
                target, else the file name).
            download: fetch an http(s) image here first and send the local
                file: for receivers that cannot fetch it themselves (Debian's
                Aladin 12 offline loads no http URL: it looks the URL up in
                a dictionary it downloads from CDS).

        Raises:
            InvalidQueryError: a row without access_url, a missing file.
            OSError: ``download=True`` and the server refused the image.
            SampHubNotFoundError: no hub runs.
            SampRecipientError: ``to`` is not on the hub or does not accept images.
        """
        _check_to(to)
        url, default_name = _image_url(row_or_url)
        name = name or default_name
        image_id = _new_id("image")
        if download and urlparse(url).scheme.lower() in ("http", "https"):
            folder = _new_file(image_id, "")  # one each: Aladin names a PNG plane by its file
            folder.mkdir()
            url = _fetch(url, folder / (Path(urlparse(url).path).name or "image"),
                         self.samp_timeout)
        message = {"samp.mtype": "image.load.fits",
                   "samp.params": {"url": url, "image-id": image_id, "name": name}}
        with _hub_connection(self.samp_name) as conn:
            recipients = _recipients(conn, "image.load.fits", to)
            for cid in recipients:
                conn.notify(cid, message)
        log.info("sent image %s to %d SAMP client(s)", url, len(recipients))
        return SentImage(image_id, url, name, tuple(recipients))

    def highlight_row(self, sent_table: SentTable, row, *, to: str | None = "topcat") -> None:
        """Highlight one row of a table sent with :meth:`send_table` (``table.highlight.row``).

        Args:
            sent_table: what :meth:`send_table` returned.
            row: the row's index in that table (0-based), or the astropy Row.
            to: the client's name on the hub, or None for all that accept it.

        Raises:
            InvalidQueryError: not a SentTable, or the row is out of range.
            SampHubNotFoundError: no hub runs.
            SampRecipientError: ``to`` is not on the hub or does not accept highlights.
            SampDeliveryError: no recipient highlighted it (e.g. it never got the table).
        """
        if not isinstance(sent_table, SentTable):
            raise InvalidQueryError(f"highlight_row needs what send_table returned, "
                                    f"not {type(sent_table).__name__}")
        _check_to(to)
        index = _row_index(sent_table, row)
        params = {"table-id": sent_table.table_id, "url": sent_table.url, "row": str(index)}
        with _hub_connection(self.samp_name) as conn:
            recipients = _recipients(conn, "table.highlight.row", to)
            accepted, failed = _call_each(conn, recipients, "table.highlight.row", params,
                                          self.samp_timeout, retry_for=self.samp_settle)
            names = _client_names(conn, recipients)
        _report(failed, names, accepted, f"row {index} of {sent_table.name!r}")

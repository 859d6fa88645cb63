"""Downloading the image files of a result table (its ``access_url`` column).

Files are named after the row's ``obs_id`` (else its DID, else its row
number), made safe for any file system, with the extension of the media type
(``access_format``) or else of the URL: ``stellarium/m1dumont`` becomes
``stellarium_m1dumont.png``.  An existing non-empty file of that name is kept
when ``cache`` is true; a download goes to a temporary name first, so an
interrupted one never leaves a truncated file under the final name.
"""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
from astropy.table import Table
from astropy.utils.console import ProgressBarOrSpinner
from astroquery.exceptions import InvalidQueryError

from vo_similarity.workdir import atomic_write

__all__ = ["download_rows", "file_name"]

log = logging.getLogger(__name__)

_SUFFIX = {"image/png": ".png", "image/jpeg": ".jpg", "image/fits": ".fits",
           "application/fits": ".fits", "application/x-fits": ".fits",
           "image/gif": ".gif", "image/tiff": ".tif"}
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def _text(row, name: str) -> str:
    if name not in row.colnames:
        return ""
    value = row[name]
    if value is np.ma.masked:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


def file_name(row, index: int) -> str:
    """The file name of a row's image (see the module docstring)."""
    stem = _text(row, "obs_id") or _text(row, "obs_publisher_did").split("?")[-1] or f"row{index}"
    stem = _UNSAFE.sub("_", stem).strip("._") or f"row{index}"
    url = _text(row, "access_url")
    mime = _text(row, "access_format").split(";")[0].strip().lower()
    suffix = _SUFFIX.get(mime) or "".join(Path(urlparse(url).path).suffixes[-2:]).lower()
    return stem[:200] + suffix


def download_rows(session, table: Table, folder: Path, *, cache: bool, timeout: float,
                  show_progress: bool = True) -> list[Path]:
    """Download every row's ``access_url`` into ``folder``; return the paths in row order.

    Raises:
        InvalidQueryError: the table has no ``access_url`` column or a row none.
        requests.HTTPError: the server refused a file (its status and URL).
    """
    if "access_url" not in table.colnames:
        raise InvalidQueryError("the table has no access_url column: pass a result of this "
                                f"client (its columns: {', '.join(table.colnames)})")
    urls = [_text(row, "access_url") for row in table]
    if not all(urlparse(u).scheme in ("http", "https") for u in urls):
        bad = next(i for i, u in enumerate(urls) if urlparse(u).scheme not in ("http", "https"))
        raise InvalidQueryError(f"row {bad} has no http(s) access_url ({urls[bad]!r})")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = [file_name(row, i) for i, row in enumerate(table)]
    seen: dict[str, int] = {}
    for i, name in enumerate(names):  # two rows, one name: number the later ones
        if name in seen:
            stem, dot, ext = name.partition(".")
            names[i] = f"{stem}-{i}{dot}{ext}"
        seen[names[i]] = i
    paths = [folder / name for name in names]
    with ProgressBarOrSpinner(len(paths), f"Downloading {len(paths)} images to {folder}",
                              file=None if show_progress else io.StringIO()) as bar:
        for i, (url, path) in enumerate(zip(urls, paths, strict=True)):
            if cache and path.is_file() and path.stat().st_size > 0:
                log.debug("cached: %s", path)
            else:
                _fetch(session, url, path, timeout)
            bar.update(i + 1)
    return paths


def _fetch(session, url: str, path: Path, timeout: float) -> None:
    with session.get(url, stream=True, timeout=timeout) as response, \
            atomic_write(path) as tmp:
        response.raise_for_status()
        with open(tmp, "wb") as f:
            f.writelines(response.iter_content(chunk_size=1 << 16))
    log.debug("downloaded %s -> %s", url, path)

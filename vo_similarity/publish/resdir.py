"""The resource directory inside DaCHS's inputs: the RD, the files it serves.

``<DaCHS root>/inputs/similarity`` holds copies of the package's resource files
(``q.rd``, from the repository's ``resdir/similarity``; see
:func:`vo_similarity.resources.resource_dir`), refreshed by every publish, and
the files written per publication:

    data/collections/<name>.csv  per collection, its manifest as DaCHS's
                               csvGrammar reads it (image ids plus the
                               collection's offset, .collections)
    data/images/<id>.<ext>     the image files behind ObsCore's access_url
    data/previews/<id>.png     the PNG previews
    data/models/m<id>.json     one file per published model (models table)
    data/vectors/m<id>-*.vectors  the models' embeddings (search service, .vectors)
    data/published/weights/    the models' ONNX files (.model_files), served
    res/search_kernel.py       the search service's code (.search_kernel)
    res/web_page.py, web_queries.py, web_guard.py, web/assets/
                               the web page (vo_similarity.web, docs/web.md)

Copies rather than links: the server runs as DaCHS's own user, which must be
able to read them wherever the package is installed (a virtual environment
below ``/root`` is not readable by others), and a publication must not change
when a checkout is edited or removed.
"""

from __future__ import annotations

import csv
import filecmp
import json
import logging
import math
import mimetypes
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ..resources import resource_dir
from ..workdir import ModelDir, WorkDir, atomic_write, file_sha256
from .collections import DEFAULT_COLLECTION
from .dachs import SCHEMA, DachsSite

if TYPE_CHECKING:
    from astropy.table import Table

__all__ = [
    "collection_csv",
    "install_resdir",
    "install_tap_examples",
    "mark_images_imported",
    "model_file",
    "published_models",
    "write_images",
    "write_model",
]

log = logging.getLogger(__name__)

_IMAGE_COLUMNS = ["image_id", "collection", "obs_publisher_did", "obs_id", "target_name", "s_ra", "s_dec",
                  "s_fov", "category", "credit", "source_path", "label"]
#: the columns taken from the manifest as they are (image_id and collection are the
#: publication's)
_MANIFEST_COLUMNS = _IMAGE_COLUMNS[2:]


def install_resdir(site: DachsSite, source: Path | None = None) -> bool:
    """Copy our resource files into ``inputs/similarity`` where they differ.

    Args:
        site: the DaCHS installation.
        source: the resource folder (default: the one shipped with the package).

    Returns:
        True when a file was written: a running server may have cached the old
        RD, or its failure to find one, and needs ``dachs serv reload``.
    """
    source = source or resource_dir(SCHEMA)
    if not (source / "q.rd").is_file():
        raise FileNotFoundError(f"the RD {source / 'q.rd'} is missing")
    target = site.resdir
    # a link (to a checkout's resdir) would make the service follow the checkout
    if target.is_symlink():
        target.unlink()
    (target / "data" / "models").mkdir(parents=True, exist_ok=True)
    changed = False
    for src in sorted(p for p in source.rglob("*") if p.is_file()):
        rel = src.relative_to(source)
        if rel.parts[0] == "data" or src.name == "__init__.py" or "__pycache__" in rel.parts:
            continue
        dst = target / rel
        # a link (to a checkout's q.rd) is replaced by a copy, for the same reason
        if dst.is_symlink():
            dst.unlink()
        changed = _install_file(src, dst) or changed
    for src, rel in _code_files():
        changed = _install_file(src, target / rel) or changed
    return changed


#: The search service's code, loaded by the RD from here (DaCHS's own Python).
KERNEL = Path("res") / "search_kernel.py"


def _code_files() -> list[tuple[Path, Path]]:
    """(package file, place in the resdir) of the code DaCHS runs: the search
    kernel and the web page (:mod:`vo_similarity.web`) with its assets and sampjs."""
    web = Path(__file__).resolve().parent.parent / "web"
    files = [(Path(__file__).with_name("search_kernel.py"), KERNEL),
             (web / "page.py", Path("res") / "web_page.py"),
             (web / "queries.py", Path("res") / "web_queries.py"),
             (web / "guard.py", Path("res") / "web_guard.py")]
    files += [(p, Path("res") / "web" / "assets" / p.name)
              for p in sorted((web / "assets").iterdir()) if p.is_file()]
    sampjs = web / "node_modules" / "sampjs" / "samp.js"
    if sampjs.is_file():
        files.append((sampjs, Path("res") / "web" / "assets" / "samp.js"))
    else:
        log.warning("%s is missing (npm ci --prefix %s; scripts/install.sh does it): the "
                    "web page's SAMP buttons stay disabled", sampjs, web)
    return files


def _install_file(src: Path, dst: Path) -> bool:
    """Copy ``src`` to ``dst`` where it differs; True when written."""
    if dst.is_file() and filecmp.cmp(src, dst, shallow=False):
        return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(dst) as tmp:
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o644)  # DaCHS's server user must read it
    log.info("installed %s", dst)
    return True


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    return str(value)


def _link_or_copy(src: Path, dst: Path) -> None:
    with atomic_write(dst) as tmp:
        tmp.unlink(missing_ok=True)
        try:
            # A hard link shares the user's file and its mode: never chmod it.
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
            os.chmod(tmp, 0o644)  # DaCHS's server user must read the copy


def collection_csv(site: DachsSite, collection: str) -> Path:
    """The file DaCHS imports a collection's images from."""
    return site.resdir / "data" / "collections" / f"{collection}.csv"


def _stamp(site: DachsSite, collection: str) -> Path:
    return site.resdir / "data" / "collections" / f"{collection}.sha256"


def _digest(work: WorkDir, offset: int) -> str:
    return f"{file_sha256(work.manifest)} {int(offset)}"


def write_images(work: WorkDir, site: DachsSite, collection: str, offset: int = 0,
                 table: Table | None = None) -> bool:
    """Write the manifest, image files and previews of one collection below ``data/``.

    The image file behind ``access_url`` is the manifest's ``source_path`` where
    that is a local file, else the preview.  Files are named by the published
    image id, the manifest's plus ``offset`` (:mod:`.collections`).  ``table``
    is the manifest where the caller has read it already (it is not changed).

    Returns:
        True if anything changed since the collection's last publication (so
        that its images must be imported again), False if the same manifest is
        published at the same offset.
    """
    from ..ingest.manifest import read_manifest

    data = site.resdir / "data"
    csv_path, stamp = collection_csv(site, collection), _stamp(site, collection)
    if (stamp.is_file() and stamp.read_text().strip() == _digest(work, offset)
            and csv_path.is_file()):
        log.info("manifest of collection %s unchanged since its last publication", collection)
        return False
    table = read_manifest(work.manifest) if table is None else table
    missing = [c for c in ("image_id", *_MANIFEST_COLUMNS) if c not in table.colnames]
    if missing:
        raise ValueError(f"{work.manifest} lacks the columns {', '.join(missing)}")
    # Files are replaced one by one (never a folder removed first), so rows still
    # published keep their files if this publish dies before the import commits.
    for sub in ("images", "previews", "collections"):
        (data / sub).mkdir(parents=True, exist_ok=True)
    with atomic_write(csv_path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(_IMAGE_COLUMNS + ["accref", "accsize", "mime", "preview"])
        for row in table:
            preview = work.preview(int(row["image_id"]))
            if not preview.is_file():
                raise FileNotFoundError(
                    f"the preview {preview} of image {row['image_id']} is missing")
            image_id = int(row["image_id"]) + int(offset)
            source = Path(_text(row["source_path"]))
            product = source if source.is_file() else preview
            suffix = "".join(product.suffixes[-2:]) if product.suffix == ".gz" else product.suffix
            name = f"{image_id}{suffix.lower()}"
            _link_or_copy(product, data / "images" / name)
            _link_or_copy(preview, data / "previews" / f"{image_id}.png")
            mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
            if suffix.lower() in (".fits", ".fit", ".fts"):
                mime = "image/fits"
            writer.writerow([image_id, collection,
                             *(_text(row[c]) for c in _MANIFEST_COLUMNS),
                             f"{SCHEMA}/data/images/{name}", product.stat().st_size, mime,
                             f"{SCHEMA}/data/previews/{image_id}.png"])
    stamp.unlink(missing_ok=True)
    return True


def mark_images_imported(work: WorkDir, site: DachsSite, collection: str,
                         offset: int = 0) -> None:
    """Remember that this manifest is in the database as ``collection`` at ``offset``
    (after `dachs imp` succeeded)."""
    _stamp(site, collection).write_text(_digest(work, offset) + "\n")


def published_models(site: DachsSite) -> dict[tuple[str, str], int]:
    """(collection, model name) -> model_id of every model published so far."""
    folder = site.resdir / "data" / "models"
    result = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        record = json.loads(path.read_text(encoding="utf-8"))
        key = (record.get("collection") or DEFAULT_COLLECTION, record["name"])
        result[key] = int(record["model_id"])
    return result


def model_file(site: DachsSite, model_id: int) -> Path:
    """The JSON file DaCHS imports model ``model_id``'s row from."""
    return site.resdir / "data" / "models" / f"m{int(model_id)}.json"


def write_model(site: DachsSite, model: ModelDir, model_id: int, n_images: int, k: int,
                *, collection: str, dim: int | None = None, weights_url: str | None = None,
                weights_sha256: str | None = None, preprocess: dict | None = None) -> Path:
    """Write ``data/models/m<model_id>.json``, the row DaCHS imports into ``models``.

    ``dim`` is the embedding dimension, ``weights_url``/``weights_sha256`` the
    published ONNX file (:mod:`.model_files`), ``preprocess`` the manifest's
    preprocessing metadata; None where unknown (NULL in the table).
    """
    config = json.loads(model.config.read_text(encoding="utf-8"))
    metrics = (json.loads(model.evaluation.read_text(encoding="utf-8"))
               if model.evaluation.is_file() else None)
    record = {
        "model_id": model_id,
        "name": model.name,
        "collection": collection,
        "category": str(config.get("category") or ""),
        "created": datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds"),
        "n_images": int(n_images),
        "k": int(k),
        "hyperparameters": json.dumps(config, sort_keys=True),
        "metrics": None if metrics is None else json.dumps(metrics, sort_keys=True),
        "dim": None if dim is None else int(dim),
        "weights_url": weights_url,
        "weights_sha256": weights_sha256,
        "preprocess": None if preprocess is None else json.dumps(preprocess, sort_keys=True),
    }
    path = model_file(site, model_id)
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
    return path


_USERCONFIG_MARK = "<!-- vo-similarity: TAP examples -->"


def install_tap_examples(site: DachsSite) -> bool:
    """Feed our RD's TAP examples into the TAP service (``etc/userconfig.rd``).

    DaCHS takes its TAP examples from the ``tapexamples`` stream of
    ``etc/userconfig.rd``; we install a copy of DaCHS's own that feeds ours.

    Returns:
        True if the file was written (the server must reload it).
    """
    target = site.root / "etc" / "userconfig.rd"
    if target.is_file() and _USERCONFIG_MARK in target.read_text(encoding="utf-8"):
        return False
    if target.is_file():
        log.warning("%s exists and is not ours; leaving the TAP examples out", target)
        return False
    import glob
    import re

    found = sorted(glob.glob(
        "/usr/lib/python3*/dist-packages/gavo/resources/inputs/__system__/userconfig.rd"))
    if not found:
        log.warning("DaCHS's own userconfig.rd not found; leaving the TAP examples out")
        return False
    text = Path(found[-1]).read_text(encoding="utf-8")
    text, n = re.subn(
        r'(<STREAM id="tapexamples">).*?(</STREAM>)',
        lambda m: (f'{m.group(1)}\n\t\t{_USERCONFIG_MARK}\n'
                   f'\t\t<FEED source="{SCHEMA}/q#tapexamples"/>\n\t{m.group(2)}'),
        text, count=1, flags=re.DOTALL)
    if n != 1:
        log.warning("no tapexamples stream in %s; leaving the TAP examples out", found[-1])
        return False
    with atomic_write(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
        os.chmod(tmp, 0o644)
    log.info("installed %s with our TAP examples", target)
    return True

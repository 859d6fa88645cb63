"""Collections side by side in one service: their names, id ranges and the checks
that keep one publication from touching another's images (docs/publish.md).

A work directory is one collection, named by ``vo-similarity ingest
--collection NAME`` (the manifest's meta ``collection``; ``vo-similarity``
where a manifest has none).  The name is ``obs_collection`` in ``ivoa.obscore``
and ``collection`` in ``similarity.images`` and ``similarity.models``.

Image ids must be unique across collections (the neighbour arrays, the search
service's vector files and the recorded selections hold them), while each work
directory numbers its images from 0.  A collection therefore owns the id range
``[offset, offset + ID_STRIDE)`` and is published with its manifest's ids plus
``offset``: the first collection of a server gets offset 0 (so a server with
one collection has the manifest's ids), each new one the next free multiple of
:data:`ID_STRIDE`.  The offsets are not stored apart from the images: a
collection's offset is where its published ids lie.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = [
    "DEFAULT_COLLECTION",
    "ID_STRIDE",
    "CollectionConflict",
    "CollectionPlan",
    "check_collection_name",
    "collection_of",
    "offset_of",
    "plan_collection",
    "published_name",
    "work_collection",
]

#: the collection of a work directory whose manifest names none
DEFAULT_COLLECTION = "vo-similarity"
#: image ids per collection: ids of collection c lie in [offset_c, offset_c + ID_STRIDE),
#: so an int4 image_id holds 214 collections of up to 10^7 images each
ID_STRIDE = 10_000_000
_MAX_ID = 2**31 - 1
#: letters, digits, ``.``, ``_`` and ``-``: safe in a file name, an URL and ADQL
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")


class CollectionConflict(ValueError):
    """Publishing would remove or take over images of a published collection."""


def check_collection_name(name: str) -> str:
    """Return ``name`` if it may name a collection, else raise ValueError saying why."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"{name!r} cannot name a collection: use 1 to 64 letters, digits, '.', '_' "
            "or '-', starting with a letter or digit")
    return name


def work_collection(meta: dict) -> str:
    """The collection a manifest's metadata names (:data:`DEFAULT_COLLECTION` if none)."""
    return check_collection_name(str(meta.get("collection") or DEFAULT_COLLECTION))


def published_name(collection: str, name: str) -> str:
    """A model's name in the server's file names, unique across collections:
    ``name`` in the default collection (as before collections), else
    ``collection~name`` (``~`` is in no collection name)."""
    return name if collection == DEFAULT_COLLECTION else f"{collection}~{name}"


def collection_of(work) -> str:
    """The collection of a work directory (:data:`DEFAULT_COLLECTION` before ingest)."""
    from ..ingest.manifest import read_manifest_meta

    return work_collection(read_manifest_meta(work.manifest) if work.manifest.is_file() else {})


@dataclass
class CollectionPlan:
    """Where a work directory's images go on the server.

    Attributes:
        name: the collection.
        offset: added to the manifest's image ids.
        exists: the collection has published images.
        removed: how many of its published images the work directory lacks
            (they leave the service; allowed with ``replace`` only).
        others: the other collections on the server, name -> number of images.
    """

    name: str
    offset: int
    exists: bool
    removed: int = 0
    others: dict[str, int] = field(default_factory=dict)


def _images_table(conn) -> bool:
    return bool(conn.execute(
        "SELECT to_regclass('similarity.images') IS NOT NULL").fetchone()[0])


def _has_collection_column(conn) -> bool:
    return conn.execute(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'similarity' "
        "AND table_name = 'images' AND column_name = 'collection'").fetchone()[0] > 0


def offset_of(image_id: int) -> int:
    """The offset of the collection that holds the published id ``image_id``."""
    return int(image_id) - int(image_id) % ID_STRIDE


def _ranges(conn, has_column: bool) -> dict[str, tuple[int, int, int]]:
    """collection -> (smallest id, largest id, number of images) on the server."""
    if not _images_table(conn):
        return {}
    if not has_column:  # published before collections: one, the default
        row = conn.execute("SELECT min(image_id), max(image_id), count(*) "
                           "FROM similarity.images").fetchone()
        return {DEFAULT_COLLECTION: tuple(row)} if row[2] else {}
    return {name: (lo, hi, n) for name, lo, hi, n in conn.execute(
        "SELECT collection, min(image_id), max(image_id), count(*) "
        "FROM similarity.images GROUP BY collection")}


def plan_collection(conn, name: str, dids: list[str], *, replace: bool = False
                    ) -> CollectionPlan:
    """Check that ``dids`` may be published as collection ``name``; say where.

    Adding images to a collection, or publishing the same ones again, needs no
    flag.  Publishing a set that lacks some of the collection's published
    images removes them and needs ``replace``.  A DID that another collection
    publishes is refused either way (ObsCore has each DID once).  Nothing is
    written.

    Args:
        conn: a psycopg 3 connection to the service's database.
        name: the collection.
        dids: the ``obs_publisher_did`` of every image of the work directory.
        replace: the operator said that the collection's image set is replaced.

    Raises:
        CollectionConflict: saying what would be lost and how to go on.
    """
    check_collection_name(name)
    has_column = _has_collection_column(conn)
    ranges = _ranges(conn, has_column)
    others = {c: r[2] for c, r in ranges.items() if c != name}
    if len(dids) > ID_STRIDE:
        raise CollectionConflict(
            f"{len(dids)} images do not fit a collection's id range ({ID_STRIDE}); "
            "split them into several collections")
    if name in ranges:
        offset = offset_of(ranges[name][0])
    else:
        top = max((r[1] for r in ranges.values()), default=-1)
        offset = 0 if not ranges else (top // ID_STRIDE + 1) * ID_STRIDE
        if offset + ID_STRIDE - 1 > _MAX_ID:
            raise CollectionConflict("the service holds as many collections as image ids "
                                     "allow; remove one first (docs/publish.md)")
    plan = CollectionPlan(name, offset, name in ranges, others=others)
    if not ranges:
        return plan
    column = "collection" if has_column else f"'{DEFAULT_COLLECTION}'"
    rows = conn.execute(
        f"SELECT {column}, count(*), min(i.obs_publisher_did) FROM similarity.images AS i "
        "JOIN unnest(%s::text[]) AS d(did) ON d.did = i.obs_publisher_did "
        "GROUP BY 1", (list(dids),)).fetchall()
    kept = 0
    for collection, count, example in rows:
        if collection == name:
            kept = count
        else:
            raise CollectionConflict(
                f"{count} of these images are published already in collection "
                f"{collection!r} (e.g. {example}); an image is published in one collection "
                f"only: publish this work directory as {collection!r} (ingest it with "
                f"--collection {collection}) or remove those images from it")
    if plan.exists:
        plan.removed = ranges[name][2] - kept
        if plan.removed and not replace:
            raise CollectionConflict(
                f"collection {name!r} on this server holds {ranges[name][2]} images, "
                f"{plan.removed} of which this work directory does not have: publishing "
                f"would remove them and the neighbours of its models. If this work "
                f"directory is another collection, give it a name of its own "
                f"(`vo-similarity ingest WORKDIR ... --collection NAME`; a rerun reuses "
                f"what was done); to replace collection {name!r}, publish with "
                f"--replace-collection. Nothing was changed.")
    return plan

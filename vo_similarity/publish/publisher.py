"""Publish a work directory in DaCHS: images, models, neighbours (docs/publish.md).

Order of work, each step safe to repeat:

1. check the work directory and the server, and where its collection goes
   (:func:`.collections.plan_collection`: never over another collection's
   images, and not replacing its own without ``replace_collection``);
2. install the resdir and write the files DaCHS imports and serves;
3. apply ``sql/*.sql`` (the partitioned neighbour store) and bring an older
   installation's ``models`` table up to date (:func:`.migrate.migrate`);
4. per model: binary COPY into a staging table (:func:`.copy.stage_model`),
   its embeddings into a new vector file (:func:`.vectors.stage_vectors`) and,
   where it has weights, its ONNX file (:func:`.model_files.publish_weights`);
5. ``dachs imp`` the images (only when the manifest changed) -- into
   ``ivoa.obscore`` through the ObsCore mixin; each collection has its file,
   and the import replaces a collection's rows only;
6. swap all staged models in, in one transaction (:func:`.copy.swap_in`), with
   their vector files; with new images, the collection's models not
   republished are unpublished in the same step (other collections' stay);
7. ``dachs imp`` the models, create the views (anew when the RD changed) and
   ``selections`` if missing
   (older ones get the new columns: :func:`.migrate.migrate_selections`);
8. ``dachs imp -m`` and ``dachs limits`` to refresh DaCHS's metadata; with a
   new RD, ``dachs pub`` (the web page on DaCHS's root page) and a reload.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field

import numpy as np

from ..neighbours.store import neighbour_state
from ..resources import sql_files
from ..workdir import PIXELS_DIGEST, ModelDir, WorkDir
from . import resdir as rd
from .collections import CollectionConflict, collection_of, plan_collection, published_name
from .copy import PUBLISH_LOCK, stage_model, swap_in, update_partition
from .dachs import RD_ID, DachsSite
from .increments import changes_to_send, forget_published_state, record_published_state
from .migrate import migrate, migrate_obscore, migrate_selections
from .model_files import publish_weights
from .vectors import prune_vector_files, stage_vectors

__all__ = ["CollectionConflict", "ModelReport", "PublishReport", "check_workdir", "publish"]

log = logging.getLogger(__name__)


class WorkDirIncomplete(ValueError):
    """The work directory lacks files that publishing needs."""


@dataclass
class ModelReport:
    name: str
    model_id: int
    n_images: int
    k: int
    rows: int
    load_s: float
    swap_s: float
    dim: int | None = None
    weights_url: str | None = None
    searchable: bool = False
    #: only the rows ``update`` changed were sent (``rows`` of them)
    incremental: bool = False

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.load_s if self.load_s else float("nan")


@dataclass
class PublishReport:
    url: str
    images_imported: bool
    models: list[ModelReport] = field(default_factory=list)
    example_did: str = ""
    collection: str = ""
    #: the collection's default model (its lowest model_id): the one
    #: ``similarity.similar`` answers with
    default_model_id: int | None = None
    #: the collection's published images that this publication removed
    images_removed: int = 0
    #: the other collections on the server, name -> number of images
    other_collections: dict[str, int] = field(default_factory=dict)


def check_workdir(work: WorkDir, names: list[str] | None = None) -> list[ModelDir]:
    """Return the models to publish; raise :class:`WorkDirIncomplete` naming what is missing."""
    problems = []
    if not work.manifest.is_file():
        problems.append(f"no manifest ({work.manifest}); run `vo-similarity ingest` first")
    if not work.previews.is_dir():
        problems.append(f"no previews folder ({work.previews})")
    models = [work.model(n) for n in names] if names else work.models()
    if not models:
        problems.append(f"no model below {work.root / 'models'}")
    pixels = _manifest_pixels_digest(work)
    for model in models:
        for path in (model.config, model.embedding_ids, model.neighbour_ids,
                     model.neighbour_dist):
            if not path.is_file():
                problems.append(f"model {model.name}: {path.name} is missing ({path})")
        if pixels and model.embedding_source.is_file():
            embedded = json.loads(model.embedding_source.read_text()).get(PIXELS_DIGEST)
            if embedded != pixels:
                problems.append(
                    f"model {model.name}: its embeddings come from other pixels than the "
                    f"current ingest (pixels.npy changed since `vo-similarity embed`); rerun "
                    f"`vo-similarity embed {work.root} --model {model.name}` and "
                    f"`vo-similarity neighbours {work.root} --model {model.name}`")
    if problems:
        raise WorkDirIncomplete(f"work directory {work.root} is incomplete:\n  "
                                + "\n  ".join(problems))
    return models


def _manifest_preprocess(work: WorkDir) -> dict | None:
    """The manifest's preprocessing metadata (None for manifests without it)."""
    from ..ingest.manifest import read_manifest_meta

    meta = read_manifest_meta(work.manifest)
    found = meta.get("preprocess")
    if isinstance(found, dict):
        return dict(found)
    return {"size": int(meta["image_size"])} if meta.get("image_size") else None


def _manifest_pixels_digest(work: WorkDir) -> str:
    """The manifest's record of the pixel store ("" for manifests written before it)."""
    if not work.manifest.is_file():
        return ""
    from ..ingest.manifest import read_manifest_meta

    return str(read_manifest_meta(work.manifest).get(PIXELS_DIGEST, ""))


def _load_arrays(model: ModelDir):
    ids = np.load(model.embedding_ids, mmap_mode="r")
    nb = np.load(model.neighbour_ids, mmap_mode="r")
    dist = np.load(model.neighbour_dist, mmap_mode="r")
    outlier = np.load(model.outlier, mmap_mode="r") if model.outlier.is_file() else None
    if nb.ndim != 2 or nb.shape != dist.shape or nb.shape[0] != ids.shape[0]:
        raise WorkDirIncomplete(
            f"model {model.name}: shapes disagree: embedding_ids {ids.shape}, "
            f"neighbours_ids {nb.shape}, neighbours_dist {dist.shape}")
    if outlier is not None and outlier.shape != ids.shape:
        raise WorkDirIncomplete(f"model {model.name}: outlier.npy has shape {outlier.shape}")
    return ids, nb, dist, outlier


def apply_sql(conn) -> None:
    """Run every ``sql/*.sql`` file (idempotent DDL), in name order."""
    for path in sql_files():
        log.info("applying %s", path.name)
        with conn.transaction():
            conn.execute(path.read_text(encoding="utf-8"))


def _partition_ids(conn) -> set[int]:
    """Model ids that have a partition of ``similarity.neighbour_sets``."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'similarity.neighbour_sets'::regclass").fetchall()
    return {int(name.rsplit("_m", 1)[1]) for (name,) in rows}


def _published(conn, site: DachsSite) -> dict[tuple[str, str], int]:
    """Every published model, (collection, name) -> id, from the JSON files, the
    table and the partitions (a partition without a model is ``("", "<unnamed ID>")``)."""
    known = rd.published_models(site)
    if conn.execute("SELECT to_regclass('similarity.models') IS NOT NULL").fetchone()[0]:
        known.update({(collection, name): int(mid) for collection, name, mid in conn.execute(
            "SELECT collection, name, model_id FROM similarity.models").fetchall()})
    for mid in _partition_ids(conn) - set(known.values()):
        known[("", f"<unnamed {mid}>")] = mid
    return known


def _model_ids(before: dict[tuple[str, str], int], collection: str, names: list[str],
               dropped: set[int]) -> dict[str, int]:
    """Ids of the models to publish: a published model keeps its id, a new one gets
    the smallest id no other model holds (``dropped`` go in this publication)."""
    ids = {name: before[(collection, name)] for name in names if (collection, name) in before}
    taken = (set(before.values()) - dropped) | set(ids.values())
    free = (i for i in range(1, 32768) if i not in taken)
    for name in names:
        if name not in ids:
            ids[name] = next(free)
    return {name: ids[name] for name in names}


def _forget_models(conn, site: DachsSite, model_ids: list[int]) -> None:
    """Remove the rows and JSON files of unpublished models (partitions are gone)."""
    if conn.execute("SELECT to_regclass('similarity.models') IS NOT NULL").fetchone()[0]:
        conn.execute("DELETE FROM similarity.models WHERE model_id = ANY(%s)", (model_ids,))
    for mid in model_ids:
        rd.model_file(site, mid).unlink(missing_ok=True)


def _views_exist(conn) -> bool:
    row = conn.execute(
        "SELECT to_regclass('similarity.neighbours') IS NOT NULL"
        " AND to_regclass('similarity.outliers') IS NOT NULL"
        " AND to_regclass('similarity.similar') IS NOT NULL"
        " AND to_regclass('similarity.similar_by_model') IS NOT NULL"
        " AND to_regclass('similarity.selections') IS NOT NULL").fetchone()
    return bool(row[0])


def publish(work: WorkDir, site: DachsSite | None = None, models: list[str] | None = None,
            *, progress: bool = True, refresh_metadata: bool = True,
            replace_collection: bool = False) -> PublishReport:
    """Publish ``work``'s images, as its collection, and the neighbours of ``models``
    (default: all).

    Republishing a model replaces only that model's neighbours; other models'
    rows stay, and so do other collections.  See the module docstring for the
    steps.

    Args:
        work: the work directory (one collection: its manifest's ``collection``).
        site: the DaCHS installation (default: :meth:`.DachsSite.from_config`).
        models: names of the models to publish (default: every model of ``work``).
        progress: show progress bars.
        refresh_metadata: run ``dachs imp -m`` and ``dachs limits`` at the end.
        replace_collection: allow a publication that removes images of the
            collection (an image set that is not a superset of the published one).

    Raises:
        CollectionConflict: the images would replace those of the collection
            without ``replace_collection``, or are another collection's; nothing
            was changed.
    """
    from tqdm import tqdm

    site = site or DachsSite.from_config()
    chosen = check_workdir(work, models)
    site.check_installed()
    site.check_running()

    with site.connect(autocommit=True) as conn:
        # One publish per server at a time, from the choice of model ids to the
        # swap: a session lock, released when this connection closes (also when
        # the process is killed).
        if not conn.execute("SELECT pg_try_advisory_lock(%s, 0)", (PUBLISH_LOCK,)
                            ).fetchone()[0]:
            raise RuntimeError("another publish is running on this server; "
                               "run this one again when it has finished")
        from ..ingest.manifest import read_manifest

        collection, manifest = collection_of(work), read_manifest(work.manifest)
        plan = plan_collection(conn, collection,
                               [str(d) for d in manifest["obs_publisher_did"]],
                               replace=replace_collection)
        offset = plan.offset
        rd_changed = rd.install_resdir(site)
        apply_sql(conn)
        migrated = migrate(conn, site)
        images_changed = rd.write_images(work, site, collection, offset, manifest)
        images_exist, obscore_exists = conn.execute(
            "SELECT to_regclass('similarity.images') IS NOT NULL,"
            " to_regclass('ivoa._obscoresources') IS NOT NULL").fetchone()
        new_images = images_changed or not images_exist or not plan.exists
        before = _published(conn, site)
        # Neighbours name images by id: with new images the collection's models
        # not republished go; every model keeps its id.
        gone = {key: mid for key, mid in before.items()
                if new_images and key[0] == collection
                and key[1] not in {m.name for m in chosen}}
        ids = _model_ids(before, collection, [m.name for m in chosen], set(gone.values()))
        report = PublishReport(url=site.url, images_imported=new_images,
                               collection=collection, images_removed=plan.removed,
                               other_collections=plan.others)

        staged, vectors, weights, states, increments = [], {}, {}, {}, {}
        preprocess = _manifest_preprocess(work)
        partitions = _partition_ids(conn)
        for model in chosen:  # 1. COPY into staging tables, invisible to readers
            mid = ids[model.name]
            arrays = _load_arrays(model)
            n, k = arrays[1].shape
            states[mid] = neighbour_state(model)
            changes = (changes_to_send(site, model, mid, offset, states[mid])
                       if plan.exists and not plan.removed and mid in partitions
                       and (collection, model.name) in before else None)
            if changes is not None:  # sent in step 3, in the partition's transaction
                increments[mid] = (arrays, changes)
                staged.append(ModelReport(model.name, mid, n, k, len(changes.changed) * k,
                                          0.0, 0.0, incremental=True))
            else:
                log.info("staging model %s (id %d): %d images x %d neighbours",
                         model.name, mid, n, k)
                t0 = time.perf_counter()
                with tqdm(total=n, unit="img", desc=f"COPY {model.name}",
                          disable=not progress) as bar:
                    stage_model(conn, mid, *arrays, progress=bar.update, id_offset=offset)
                staged.append(ModelReport(model.name, mid, n, k, n * k,
                                          time.perf_counter() - t0, 0.0))
            # the search service's vectors and the client's ONNX file, before the swap
            vectors[mid] = stage_vectors(site, model, mid, id_offset=offset)
            weights[model.name] = publish_weights(site, model, (preprocess or {}).get("size"),
                                                  published_name(collection, model.name))

        if not obscore_exists:  # 2. the images, through DaCHS
            site.run("imp", "//obscore")
        elif migrate_obscore(conn, site):
            migrated.append("ivoa.obscore")
        if new_images:
            site.run("imp", RD_ID, "import_images")

        # 3. all models at once; with new images the collection's others go too
        drop = sorted(set(gone.values()) - set(ids.values()))
        for mid in [*ids.values(), *drop]:  # a publish killed from here sends all again
            forget_published_state(site, mid)
        t0 = time.perf_counter()
        full = [mid for mid in ids.values() if mid not in increments]
        swap_s = swap_in(conn, full, drop=drop,
                         vector_files={m: v for m, v in vectors.items() if m in full})
        swap_total = time.perf_counter() - t0
        for mid, (arrays, changes) in increments.items():
            took = update_partition(conn, mid, *arrays, changes.changed, changes.removed,
                                    id_offset=offset, vector_file=vectors[mid])
            next(m for m in staged if m.model_id == mid).load_s = took
        for mid, state in states.items():
            record_published_state(site, mid, offset, state)
        prune_vector_files(site, conn)
        # The search service finds images by obs_id too (DaCHS indexes the DID).
        conn.execute("CREATE INDEX IF NOT EXISTS images_obs_id ON similarity.images (obs_id)")
        conn.execute("CREATE INDEX IF NOT EXISTS images_collection "
                     "ON similarity.images (collection)")
        if new_images:  # only now: a publish killed before this redoes the images
            rd.mark_images_imported(work, site, collection, offset)
        for m in staged:
            if not m.incremental:
                m.swap_s, m.load_s = swap_s, m.load_s + swap_total
            report.models.append(m)
        _forget_models(conn, site, drop)
        for model, m in zip(chosen, staged, strict=True):
            found, onnx = vectors.get(m.model_id), weights.get(model.name)
            m.dim = found.dim if found else None
            m.weights_url, m.searchable = onnx.url if onnx else None, found is not None
            rd.write_model(site, model, m.model_id, m.n_images, m.k,
                           collection=collection, dim=m.dim,
                           weights_url=m.weights_url, weights_sha256=onnx and onnx.sha256,
                           preprocess=preprocess)
        site.run("imp", RD_ID, "import_models")
        # a new RD may define the views anew (a view's columns, a new view);
        # `dachs imp -m` creates missing ones but leaves existing ones as they are
        if rd_changed or not _views_exist(conn):
            site.run("imp", RD_ID, "views", "create_selections")
        migrated = migrate_selections(conn) + migrated
        first = conn.execute(
            "SELECT obs_publisher_did FROM similarity.images WHERE image_id = %s",
            (offset,)).fetchone()
        report.example_did = first[0] if first else ""
        report.default_model_id = conn.execute(
            "SELECT min(model_id) FROM similarity.models WHERE collection = %s",
            (collection,)).fetchone()[0]

    if refresh_metadata or migrated:
        site.run("imp", "-m", RD_ID)
        # Column statistics of the tables; not of the views, whose statistics
        # would unnest every neighbour (10^9 rows at N = 10^6).
        site.run("limits", f"{RD_ID}#images", f"{RD_ID}#models")
    if rd_changed:
        # the web page's entry on DaCHS's root page (its <publish sets="local">)
        site.run("pub", RD_ID)
    # New TAP examples, or an RD the running server has not seen: reload.
    if rd.install_tap_examples(site) or rd_changed:
        site.run("serv", "reload")
    return report

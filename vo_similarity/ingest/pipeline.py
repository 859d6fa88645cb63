"""The ingest run: read, preprocess and commit every input, then assemble the work directory.

A run has two steps.

1. **Process.** Each input is read (:mod:`~vo_similarity.ingest.readers`),
   preprocessed (:mod:`~vo_similarity.ingest.preprocess`) and its outcome
   committed to the journal (:mod:`~vo_similarity.ingest.journal`). A run killed
   here loses at most the input it was working on; the next run skips what is
   committed.
2. **Assemble.** The manifest, ``pixels.npy``, the previews, the report and the
   contact sheet are written from the journal, each under a temporary name and
   then renamed into place (:func:`vo_similarity.workdir.atomic_write`).

A work directory accumulates: the inputs of a run are the images already in
its manifest (in ``image_id`` order, keeping their ids) followed by the new
inputs whose ``obs_id`` is not there yet. Rerunning on the same inputs thus
changes nothing; an input whose ``obs_id`` is already there replaces that row's
metadata but keeps its id.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import quote

import numpy as np

from vo_similarity.ingest.contact_sheet import MAX_THUMBNAILS, draw_contact_sheet
from vo_similarity.ingest.inputs import DEFAULT_AUTHORITY, ImageInput
from vo_similarity.ingest.journal import Journal, JournalEntry
from vo_similarity.ingest.manifest import read_manifest, write_manifest
from vo_similarity.ingest.preprocess import PreprocessConfig, preprocess
from vo_similarity.ingest.raw_image import InputRejected
from vo_similarity.ingest.readers import read_image
from vo_similarity.workdir import PIXELS_DIGEST, WorkDir, atomic_write, file_sha256

__all__ = ["DEFAULT_AUTHORITY", "IngestResult", "NoImages", "ingest", "publisher_did"]

log = logging.getLogger(__name__)

#: Bumped when a change of this code changes the outcome for the same input.
PIPELINE_VERSION = 2


class NoImages(ValueError):
    """A run would leave the work directory without a single image.

    Only the report of the rejected inputs is written then: no manifest, pixels
    or contact sheet, so an earlier complete work directory stays as it was.
    """


@dataclass(frozen=True)
class IngestResult:
    """What a run produced.

    Attributes:
        workdir: the work directory written.
        n_images: rows in the manifest.
        rejected: ``(source path, reason)`` of every rejected input.
    """

    workdir: WorkDir
    n_images: int
    rejected: list[tuple[str, str]] = field(default_factory=list)


def publisher_did(authority: str, obs_id: str) -> str:
    """The IVOA publisher DID ``ivo://<authority>/~?<obs_id>`` (obs_id percent-encoded)."""
    return f"ivo://{authority}/~?{quote(obs_id, safe='/:._-~+')}"


def ingest(
    inputs: Iterable[ImageInput],
    workdir: WorkDir,
    config: PreprocessConfig | None = None,
    *,
    authority: str = DEFAULT_AUTHORITY,
    channels: tuple[int | None, int | None] | None = None,
    progress: bool = True,
    rejected: Iterable[tuple[str, str]] = (),
    collection: str | None = None,
) -> IngestResult:
    """Ingest ``inputs`` into ``workdir`` (see the module docstring).

    Args:
        inputs: the images to add, in the order their ids are given.
        workdir: the work directory (created if missing).
        config: preprocessing settings; defaults to :class:`PreprocessConfig`.
        authority: IVOA authority of the ``obs_publisher_did`` column.
        channels: channel range ``(start, stop)`` for cubes, see
            :func:`~vo_similarity.ingest.fits_reader.read_fits`.
        progress: show a tqdm progress bar.
        rejected: ``(source, reason)`` of inputs their source could not provide
            (a failed download), reported with the others.
        collection: the collection the work directory is published as
            (:mod:`vo_similarity.publish.collections`); None: the one its
            manifest names already, else ``vo-similarity``.

    Returns:
        The number of images and the rejected inputs with their reasons.

    Raises:
        NoImages: no input became an image (and the work directory held none).
    """
    from tqdm import tqdm

    from ..publish.collections import check_collection_name, collection_of

    config = config or PreprocessConfig()
    collection = check_collection_name(collection or collection_of(workdir))
    work = workdir.ensure()
    todo, duplicates = _plan(_previous_inputs(work), inputs)
    rejected = [*rejected, *duplicates]
    journal = Journal(work.ingest_journal, {
        "preprocess": asdict(config), "channels": channels, "version": PIPELINE_VERSION,
    })
    outcomes: list[tuple[ImageInput, str | JournalEntry]] = []
    for inp in tqdm(todo, desc="ingest", unit="image", disable=not progress, dynamic_ncols=True):
        key = journal.key(inp.obs_id, inp.path)
        if not journal.has(key):
            entry, final = _process(inp, config, channels)
            if not final:  # an unexpected failure is reported but retried next run
                outcomes.append((inp, entry))
                continue
            journal.put(key, entry)
        outcomes.append((inp, key))
    result = _assemble(work, outcomes, journal, config, authority, rejected, channels,
                       collection)
    journal.prune({o for _, o in outcomes if isinstance(o, str)})
    return result


def _plan(previous: list[ImageInput], new: Iterable[ImageInput]
          ) -> tuple[list[ImageInput], list[tuple[str, str]]]:
    """Previous inputs first (updated by new ones with the same obs_id), then the new."""
    order = {inp.obs_id: i for i, inp in enumerate(previous)}
    todo = list(previous)
    seen: dict[str, Path] = {}
    duplicates = []
    for inp in new:
        if inp.obs_id in seen:
            reason = f"duplicate obs_id {inp.obs_id!r}, already used by {seen[inp.obs_id]}"
            duplicates.append((str(inp.path), reason))
            continue
        seen[inp.obs_id] = inp.path
        if inp.obs_id in order:
            todo[order[inp.obs_id]] = inp
        else:
            order[inp.obs_id] = len(todo)
            todo.append(inp)
    return todo, duplicates


def _previous_inputs(work: WorkDir) -> list[ImageInput]:
    """The manifest's rows as inputs, in image_id order (none if there is no manifest)."""
    if not work.manifest.is_file():
        return []
    table = read_manifest(work.manifest)
    authority = table.meta.get("authority", DEFAULT_AUTHORITY)
    inputs = []
    for row in table:
        did = str(row["obs_publisher_did"])
        own = did if did != publisher_did(authority, str(row["obs_id"])) else ""
        inputs.append(ImageInput(
            path=Path(row["source_path"]), obs_id=str(row["obs_id"]),
            target_name=str(row["target_name"]), s_ra=float(row["s_ra"]),
            s_dec=float(row["s_dec"]), s_fov=float(row["s_fov"]),
            category=str(row["category"]), credit=str(row["credit"]), label=str(row["label"]),
            publisher_did=own,
        ))
    return inputs


def _process(inp: ImageInput, config: PreprocessConfig,
             channels: tuple[int | None, int | None] | None) -> tuple[JournalEntry, bool]:
    """Read and preprocess one input.

    Returns:
        The outcome, and whether it is final (to be journaled): a rejection for
        a reason in the file is, an unexpected error (e.g. out of memory) is not.
    """
    try:
        raw = read_image(inp.path, channels)
        pixels, preview = preprocess(raw.data, config)
    except InputRejected as exc:
        log.debug("rejected %s: %s", inp.path, exc)
        return JournalEntry({}, str(exc)), True
    except MemoryError:
        log.error("%s: out of memory", inp.path)
        return JournalEntry({}, "out of memory while reading or preprocessing"), False
    except Exception as exc:  # an input must never stop the run
        log.exception("%s failed", inp.path)
        reason = f"unexpected error: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        return JournalEntry({}, reason), False
    return JournalEntry(asdict(raw.facts), "", pixels, _png(preview)), True


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _write_if_changed(path: Path, content: bytes) -> None:
    """Put ``content`` at ``path`` atomically, unless the file already holds it."""
    try:
        if path.stat().st_size == len(content) and path.read_bytes() == content:
            return
    except FileNotFoundError:
        pass
    with atomic_write(path) as tmp:
        tmp.write_bytes(content)


def _merge(inp: ImageInput, facts: dict) -> dict:
    """One manifest row: what the source knows, gaps filled from the header."""
    def first(given, key):
        if isinstance(given, float):
            return given if math.isfinite(given) else float(facts.get(key, math.nan))
        return given or str(facts.get(key, "") or "")

    return {
        "obs_id": inp.obs_id,
        "target_name": first(inp.target_name, "target_name"),
        "s_ra": first(inp.s_ra, "s_ra"),
        "s_dec": first(inp.s_dec, "s_dec"),
        "s_fov": first(inp.s_fov, "s_fov"),
        "category": first(inp.category, "category"),
        "credit": inp.credit,
        "source_path": str(inp.path),
        "label": first(inp.label, "label"),
    }


def _assemble(work: WorkDir, outcomes: list[tuple[ImageInput, str | JournalEntry]],
              journal: Journal, config: PreprocessConfig, authority: str,
              rejected: list[tuple[str, str]],
              channels: tuple[int | None, int | None] | None = None,
              collection: str | None = None) -> IngestResult:
    """Write the work directory's ingest files from the journal, each atomically."""
    from PIL import Image

    entries = []
    rejected = list(rejected)
    for inp, outcome in outcomes:
        entry = outcome if isinstance(outcome, JournalEntry) else journal.get(outcome, arrays=False)
        if entry.accepted:
            entries.append((inp, outcome))
        else:
            rejected.append((str(inp.path), entry.reason))
    n, size = len(entries), config.size
    if not n:
        _write_report(work, rejected)
        if rejected:
            raise NoImages(f"all {len(rejected)} inputs were rejected, one line each in "
                           f"{work.ingest_report}")
        raise NoImages("nothing to ingest")

    with atomic_write(work.pixels) as tmp_pixels:
        pixels = np.lib.format.open_memmap(tmp_pixels, mode="w+", dtype=np.float16,
                                           shape=(n, 1, size, size))
        work.previews.mkdir(exist_ok=True)
        rows, thumbs, captions = [], [], []
        for image_id, (inp, key) in enumerate(entries):
            entry = journal.get(key)
            pixels[image_id, 0] = entry.pixels
            _write_if_changed(work.preview(image_id), entry.preview_png)
            row = _merge(inp, entry.facts)
            did = inp.publisher_did or publisher_did(authority, inp.obs_id)
            rows.append({"image_id": image_id, "obs_publisher_did": did, **row})
            if image_id < MAX_THUMBNAILS:
                thumbs.append(np.asarray(Image.open(io.BytesIO(entry.preview_png))))
                captions.append(f"{image_id} {row['target_name'] or Path(inp.path).stem}")
        pixels.flush()
        del pixels
        pixels_digest = file_sha256(tmp_pixels)
    _remove_stale_previews(work, n)

    preprocess_meta = {k: list(v) if isinstance(v, tuple) else v
                       for k, v in asdict(config).items()}
    # the cube channel range belongs to "how raw pixels became model input": a
    # client embedding a new cube (vo_similarity.client.embedding) must use it too
    preprocess_meta["channels"] = list(channels) if channels else None
    write_manifest(work.manifest, rows, {"authority": authority, "collection": collection,
                                         "image_size": size,
                                         PIXELS_DIGEST: pixels_digest,
                                         "preprocess": preprocess_meta,
                                         "pipeline_version": PIPELINE_VERSION})

    _write_report(work, rejected)
    with atomic_write(work.contact_sheet) as tmp:
        draw_contact_sheet(thumbs, captions, tmp, total=n)
    log.info("ingested %d images into %s, %d rejected", n, work.root, len(rejected))
    return IngestResult(work, n, rejected)


def _write_report(work: WorkDir, rejected: list[tuple[str, str]]) -> None:
    """``ingest_report.txt``: one ``path<TAB>reason`` line per rejected input."""
    with atomic_write(work.ingest_report) as tmp:
        tmp.write_text("".join(f"{path}\t{reason}\n" for path, reason in rejected))


def _remove_stale_previews(work: WorkDir, n: int) -> None:
    """Delete previews of ids >= n left by an earlier, larger run."""
    for file in work.previews.glob("*.png"):
        if file.stem.isdigit() and int(file.stem) >= n:
            file.unlink(missing_ok=True)

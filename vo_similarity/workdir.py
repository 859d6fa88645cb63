"""The work directory: the files through which the pipeline stages talk.

Every stage reads and writes files below one folder, so that each stage can be
rerun, resumed and tested on its own. This module is the single
place that knows the file names; stages ask it for paths and never build them.

Layout::

    WORK/
      manifest.ecsv            one row per image (astropy ECSV, typed columns; read it
                               with vo_similarity.ingest.manifest.read_manifest, which
                               turns ECSV's masked empty strings back into "")
      pixels.npy               float16 [N, 1, S, S], values in [0, 1], masked pixels 0;
                               its SHA-256 is the manifest's meta ``pixels_sha256``
      previews/<image_id>.png  one PNG preview per image
      contact_sheet.png        the ingested images at a glance
      ingest_report.txt        one line per rejected input: "<path>\\t<reason>"
      downloads/               files of ``ingest --tap``, by the SHA-256 of their DID
      models/<name>/
        config.json            the hyperparameters (learn.config.TrainConfig) + name, category
        checkpoint.pt          latest training state (resumable)
        model.pt               final weights
        loss.png, train.log    loss curve and run log
        embeddings.npy         float32 [N, D] unit vectors
        embedding_ids.npy      int32 [N] image_id of each embedding row
        embedding_source.json  the pixel store that was embedded: {"pixels_sha256": ...,
                               "images": N, "pixel_rows_sha256": ... of its N images}
        neighbours_ids.npy     int32 [N, k] image_id of neighbours, rank order, self excluded
        neighbours_dist.npy    float32 [N, k] L2 distance of unit vectors
        outlier.npy            float32 [N] per-image outlier score
        neighbour_changes.json the rows `update` changed since the neighbours
                               were computed in full (publish sends only them)
        evaluation.json        metrics (with baselines)
        evaluation_grid.png    queries and their nearest neighbours
      tune/study.sqlite, tune/best_config.json, tune/best_trial.json

Rows of ``embedding_ids.npy`` and of the neighbour files are aligned: row i of
``neighbours_ids.npy`` holds the neighbours of image ``embedding_ids[i]``.
Publishing refuses a model whose ``embedding_source.json`` names other pixels
than the manifest's ``pixels_sha256`` (the images changed after it was embedded).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MANIFEST_COLUMNS", "PIXELS_DIGEST", "ModelDir", "WorkDir", "atomic_path",
           "atomic_write", "embedded_images_unchanged", "embedding_source", "file_sha256",
           "pixel_rows_sha256"]

#: Manifest meta key holding the SHA-256 of ``pixels.npy``.
PIXELS_DIGEST = "pixels_sha256"

#: Columns of the manifest, in order, with their meaning. Unknown floats are NaN,
#: unknown strings are empty.
MANIFEST_COLUMNS: dict[str, str] = {
    "image_id": "dense integer id, 0..N-1, the row of pixels.npy",
    "obs_publisher_did": "IVOA publisher DID, ivo://<authority>/~?<obs_id>",
    "obs_id": "identifier of the observation inside this collection",
    "target_name": "astronomical object observed, if any",
    "s_ra": "ICRS right ascension of the image centre [deg]",
    "s_dec": "ICRS declination of the image centre [deg]",
    "s_fov": "diameter of the field of view [deg]",
    "category": "science category (e.g. galaxy, nebula, synthetic)",
    "credit": "who made the image; shown wherever the image is shown",
    "source_path": "where the image came from (file path or URL)",
    "label": "class label where known (ground truth for evaluation), else empty",
}

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def atomic_path(path: Path) -> Path:
    """Return a temporary sibling of ``path`` to write and then ``os.replace``.

    Writers put a file in place only when it is complete, so a killed stage
    never leaves a half-written file under the final name. The temporary name
    keeps the suffix last (``.x.tmp-PID.npy``), so that writers which choose the
    format by suffix (``np.save``, ``savefig``) neither append nor guess one.
    """
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(2**20), b""):
            digest.update(piece)
    return digest.hexdigest()


#: Keys of ``embedding_source.json`` besides :data:`PIXELS_DIGEST`: how many
#: images the embedded pixel store held, and the SHA-256 of their pixel bytes.
EMBEDDED_IMAGES, EMBEDDED_ROWS_DIGEST = "images", "pixel_rows_sha256"


def _store_digests(pixels: str | os.PathLike[str], n: int | None, *, whole_file: bool = True
                   ) -> tuple[str | None, int, str | None]:
    """One read of a pixel store (``pixels.npy``): the SHA-256 of the file (None
    without ``whole_file``, which then reads only the first ``n`` images), its
    number of images, and the SHA-256 of the bytes of its first ``n`` images
    (all of them for None; None when it holds fewer, or is not in C order)."""
    import numpy as np

    whole, rows = hashlib.sha256(), hashlib.sha256()
    with open(pixels, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(f)
        offset = f.tell()
        f.seek(0)
        whole.update(f.read(offset))
        count = int(shape[0])
        n = count if n is None else n
        wanted = n * int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        ok = count >= n and not fortran
        for piece in iter(lambda: f.read(2**20), b""):
            whole.update(piece)
            if ok and wanted > 0:
                rows.update(piece[:wanted])
                wanted -= min(wanted, len(piece))
            if not whole_file and (wanted == 0 or not ok):
                break
    return (whole.hexdigest() if whole_file else None, count,
            rows.hexdigest() if ok and wanted == 0 else None)


def pixel_rows_sha256(pixels: str | os.PathLike[str], n: int) -> str | None:
    """Hex SHA-256 of the bytes of the first ``n`` images of a pixel store
    (``pixels.npy``, any header), or None when it holds fewer."""
    return _store_digests(pixels, n, whole_file=False)[2]


def embedding_source(work: WorkDir) -> dict:
    """What ``embedding_source.json`` records of the pixel store being embedded."""
    whole, count, rows = _store_digests(work.pixels, None)
    return {PIXELS_DIGEST: whole, EMBEDDED_IMAGES: count, EMBEDDED_ROWS_DIGEST: rows}


def embedded_images_unchanged(work: WorkDir, source: dict, current: dict | None = None
                              ) -> bool:
    """Whether the images that were embedded (``source``, from
    :func:`embedding_source`) are still the first images of the pixel store,
    with the same pixels (so the same ids, which are rows of the store): true
    when ingest only appended since.

    A record without the rows' digest (written by an earlier version) can only
    say so when the whole pixel store is unchanged.

    Args:
        work: the work directory.
        source: the record of what was embedded.
        current: :func:`embedding_source` of the store now, where already
            computed (saves reading the store once more).
    """
    digest = (current or {}).get(PIXELS_DIGEST) or file_sha256(work.pixels)
    if source.get(PIXELS_DIGEST) == digest:
        return True
    n, digest = source.get(EMBEDDED_IMAGES), source.get(EMBEDDED_ROWS_DIGEST)
    return n is not None and digest is not None and pixel_rows_sha256(work.pixels, n) == digest


@contextlib.contextmanager
def atomic_write(path: Path) -> Iterator[Path]:
    """Write a file all at once: yield a temporary sibling, move it onto ``path`` on success.

    The body writes the yielded :func:`atomic_path`; when it finishes, the
    file replaces ``path`` in one ``os.replace``. When it raises (or the
    process is interrupted), the temporary file is removed and ``path`` keeps
    its previous content. Nest several to replace a set of files only when
    all of them are complete.

    Example::

        with atomic_write(work.ingest_report) as tmp:
            tmp.write_text(report)
    """
    tmp = atomic_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@dataclass(frozen=True)
class ModelDir:
    """The files of one model below ``WORK/models/<name>``."""

    root: Path

    @property
    def name(self) -> str:
        return self.root.name

    config = property(lambda self: self.root / "config.json")
    checkpoint = property(lambda self: self.root / "checkpoint.pt")
    weights = property(lambda self: self.root / "model.pt")
    loss_plot = property(lambda self: self.root / "loss.png")
    log = property(lambda self: self.root / "train.log")
    embeddings = property(lambda self: self.root / "embeddings.npy")
    embedding_ids = property(lambda self: self.root / "embedding_ids.npy")
    embedding_source = property(lambda self: self.root / "embedding_source.json")
    neighbour_ids = property(lambda self: self.root / "neighbours_ids.npy")
    neighbour_dist = property(lambda self: self.root / "neighbours_dist.npy")
    outlier = property(lambda self: self.root / "outlier.npy")
    neighbour_changes = property(lambda self: self.root / "neighbour_changes.json")
    evaluation = property(lambda self: self.root / "evaluation.json")
    evaluation_grid = property(lambda self: self.root / "evaluation_grid.png")

    def ensure(self) -> ModelDir:
        self.root.mkdir(parents=True, exist_ok=True)
        return self


@dataclass(frozen=True)
class WorkDir:
    """The work directory shared by all stages."""

    root: Path

    def __init__(self, root: str | os.PathLike[str]):
        object.__setattr__(self, "root", Path(root).expanduser().resolve())

    manifest = property(lambda self: self.root / "manifest.ecsv")
    pixels = property(lambda self: self.root / "pixels.npy")
    previews = property(lambda self: self.root / "previews")
    contact_sheet = property(lambda self: self.root / "contact_sheet.png")
    ingest_report = property(lambda self: self.root / "ingest_report.txt")
    tune = property(lambda self: self.root / "tune")
    tune_study = property(lambda self: self.tune / "study.sqlite")
    tune_best_config = property(lambda self: self.tune / "best_config.json")
    tune_best_trial = property(lambda self: self.tune / "best_trial.json")
    #: per-input results of ingest, so that a killed run resumes (internal to ingest)
    ingest_journal = property(lambda self: self.root / ".ingest-journal")
    #: FITS files written by ``ingest --synthetic``
    synthetic = property(lambda self: self.root / "synthetic")
    #: files downloaded by ``ingest --tap``, named by the SHA-256 of their DID
    downloads = property(lambda self: self.root / "downloads")

    def preview(self, image_id: int) -> Path:
        return self.previews / f"{int(image_id)}.png"

    def model(self, name: str) -> ModelDir:
        """The folder of model ``name`` (letters, digits, ``_.-``; at most 64)."""
        if not _NAME_RE.match(name):
            raise ValueError(
                f"invalid model name {name!r}: use letters, digits, '_', '.', '-' "
                "(at most 64, starting with a letter or digit)"
            )
        return ModelDir(self.root / "models" / name)

    def models(self) -> list[ModelDir]:
        """All models that have a config, sorted by name."""
        base = self.root / "models"
        if not base.is_dir():
            return []
        return [ModelDir(p) for p in sorted(base.iterdir()) if (p / "config.json").is_file()]

    def ensure(self) -> WorkDir:
        self.root.mkdir(parents=True, exist_ok=True)
        return self

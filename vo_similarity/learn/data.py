"""Images of a work directory as tensors: category selection and the validation split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vo_similarity.workdir import WorkDir

__all__ = ["ImageSet", "PixelStore", "is_validation", "load_images"]

SPLITS = ("all", "train", "val")


def is_validation(image_ids: np.ndarray, fraction: float) -> np.ndarray:
    """Deterministic held-out mask: a fixed hash of each ``image_id`` below ``fraction``.

    The split depends only on the id, not on N or on the order of rows, so the
    training and evaluation stages agree without storing it.
    """
    ids = np.asarray(image_ids, dtype=np.uint64)
    h = (ids * np.uint64(2654435761) + np.uint64(12345)) % np.uint64(2**32)  # Knuth's hash
    return (h.astype(np.float64) / 2**32) < fraction


class PixelStore:
    """Rows of the memory-mapped ``pixels.npy`` read on demand as float32 tensors.

    Indexing (an int, a slice, an index array) reads only those images, so a
    work directory of any size is embedded and trained on in bounded memory.
    """

    def __init__(self, array: np.ndarray, rows: np.ndarray):
        self.array = array
        self.rows = np.asarray(rows, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index) -> torch.Tensor:
        if isinstance(index, torch.Tensor):
            index = index.cpu().numpy()
        return torch.from_numpy(np.asarray(self.array[self.rows[index]], dtype=np.float32))

    def subset(self, keep: np.ndarray) -> PixelStore:
        return PixelStore(self.array, self.rows[keep])

    def all(self) -> torch.Tensor:
        """Every selected image as one float32 tensor ``[N, 1, S, S]``."""
        return self[np.arange(len(self))]


@dataclass
class ImageSet:
    """Pixels and the manifest columns the learning stage uses, row-aligned."""

    pixels: PixelStore  # [N, 1, S, S] in [0, 1], read on demand
    image_ids: np.ndarray  # int32 [N]
    labels: np.ndarray  # str [N], "" where unknown
    credits: np.ndarray  # str [N]
    names: np.ndarray  # str [N] target names
    categories: np.ndarray | None = None  # str [N] manifest ``category``, "" where unknown

    def __len__(self) -> int:
        return len(self.image_ids)


def _column(table, name: str, n: int) -> np.ndarray:
    if name not in table.colnames:
        return np.full(n, "", dtype=object)
    return np.array([str(v) for v in table[name]], dtype=object)


def load_images(
    workdir: WorkDir, *, category: str = "", split: str = "all", val_fraction: float = 0.0
) -> ImageSet:
    """Read the images of ``workdir``, optionally one category and one split.

    Args:
        workdir: the work directory written by the ingest stage.
        category: keep only rows whose manifest ``category`` equals this; "" keeps all.
        split: ``all``, ``train`` or ``val`` (see :func:`is_validation`).
        val_fraction: the held-out fraction defining the split.

    Raises:
        FileNotFoundError: the work directory has no manifest or pixels.
        ValueError: bad split, unknown category or an empty selection.
    """
    from vo_similarity.ingest.manifest import read_manifest

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    for path in (workdir.manifest, workdir.pixels):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: run `vo-similarity ingest` first")
    table = read_manifest(workdir.manifest)
    pixels = np.load(workdir.pixels, mmap_mode="r")
    ids = np.asarray(table["image_id"], dtype=np.int64)
    if pixels.ndim != 4 or pixels.shape[1] != 1 or len(pixels) != len(table):
        raise ValueError(f"{workdir.pixels} has shape {pixels.shape}; expected [{len(table)}, 1, S, S]")
    keep = np.ones(len(table), dtype=bool)
    if category:
        cats = _column(table, "category", len(table))
        keep &= cats == category
        if not keep.any():
            raise ValueError(f"no image has category {category!r}; present: {sorted(set(cats))}")
    if split != "all":
        val = is_validation(ids, val_fraction)
        keep &= val if split == "val" else ~val
    rows = np.flatnonzero(keep)
    if len(rows) == 0:
        raise ValueError(f"the selection (category={category!r}, split={split!r}) is empty")
    n = len(table)
    return ImageSet(
        pixels=PixelStore(pixels, ids[rows]),
        image_ids=ids[rows].astype(np.int32),
        labels=_column(table, "label", n)[rows],
        credits=_column(table, "credit", n)[rows],
        names=_column(table, "target_name", n)[rows],
        categories=_column(table, "category", n)[rows],
    )

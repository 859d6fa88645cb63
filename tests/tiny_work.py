"""A tiny labelled work directory: bars, rings and pairs of dots (imported by the
fixtures of tests/conftest.py and by tests that need its classes)."""

from __future__ import annotations

import numpy as np
from astropy.table import Table

from vo_similarity.workdir import WorkDir

CLASSES = ("bar", "ring", "pair")


def draw(cls: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """One image of a bar, a ring or a pair of dots, randomly rotated and placed."""
    y, x = (np.mgrid[:size, :size] - (size - 1) / 2) / (size / 2)
    x = x - rng.uniform(-0.1, 0.1)
    y = y - rng.uniform(-0.1, 0.1)
    a = rng.uniform(0, np.pi)
    u, v = x * np.cos(a) + y * np.sin(a), -x * np.sin(a) + y * np.cos(a)
    if cls == "bar":
        img = np.exp(-(u / 0.6) ** 2 - (v / 0.12) ** 2)
    elif cls == "ring":
        img = np.exp(-((np.hypot(u, v) - 0.5) / 0.1) ** 2)
    else:
        img = np.exp(-(((u - 0.4) ** 2 + v**2) / 0.03)) + np.exp(-(((u + 0.4) ** 2 + v**2) / 0.03))
    img = img + rng.normal(0, 0.03, img.shape)
    return np.clip(img, 0, 1).astype(np.float32)


def make_workdir(root, n: int = 48, size: int = 16, seed: int = 0) -> WorkDir:
    """Write manifest.ecsv + pixels.npy following the work-directory contract."""
    rng = np.random.default_rng(seed)
    work = WorkDir(root).ensure()
    labels = [CLASSES[i % len(CLASSES)] for i in range(n)]
    pixels = np.stack([draw(c, rng, size)[None] for c in labels]).astype(np.float16)
    np.save(work.pixels, pixels)
    Table({
        "image_id": np.arange(n, dtype=np.int32),
        "obs_publisher_did": [f"ivo://test/~?img{i}" for i in range(n)],
        "obs_id": [f"img{i}" for i in range(n)],
        "target_name": [f"T{i}" for i in range(n)],
        "s_ra": np.zeros(n), "s_dec": np.zeros(n), "s_fov": np.full(n, 0.01),
        "category": ["small" if i % 2 else "large" for i in range(n)],
        "credit": ["test suite"] * n,
        "source_path": [""] * n,
        "label": labels,
    }).write(work.manifest, format="ascii.ecsv")
    return work

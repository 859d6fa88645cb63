"""The search-by-image trial: transformed copies of published images.

Issue 11's acceptance asks that ``query_image`` on a published image rotated by
37 degrees, flipped and rescaled by 0.9 finds that image among its 5 nearest.
The test (tests/client/test_client_search.py, 20 images) and the benchmark
(benchmarks/query_image.py, 100) make the copies and choose the images here,
so that both measure the same thing.
"""

from __future__ import annotations

import os

from astropy.table import Table
from PIL import Image

__all__ = ["spread_selection", "transformed"]


def transformed(path: str | os.PathLike[str], angle: float = 37.0,
                scale: float = 0.9) -> Image.Image:
    """The image at ``path`` rotated by ``angle`` degrees, flipped left-right, rescaled."""
    with Image.open(path) as im:
        im = im.convert("RGBA" if "A" in im.getbands() else "RGB")
        im = im.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
        return im.resize(size, Image.Resampling.LANCZOS)


def spread_selection(table: Table, n: int) -> Table:
    """``n`` rows spread evenly over ``table`` in ``obs_publisher_did`` order."""
    ordered = table[table.argsort("obs_publisher_did")]
    return ordered[::max(1, len(ordered) // n)][:n]

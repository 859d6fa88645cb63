"""A contact sheet: the ingested images at a glance, each with a short caption."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["MAX_THUMBNAILS", "draw_contact_sheet"]

#: At most this many thumbnails are drawn; the title says when there are more.
MAX_THUMBNAILS = 100


def draw_contact_sheet(
    previews: Sequence[np.ndarray],
    captions: Sequence[str],
    path: Path,
    *,
    total: int | None = None,
    thumb: int = 96,
    columns: int = 10,
) -> Path:
    """Draw thumbnails of ``previews`` in a grid with a caption under each.

    Args:
        previews: uint8 grayscale images, any shapes (the first
            :data:`MAX_THUMBNAILS` are drawn).
        captions: one short text per preview (cut to fit the cell).
        path: the PNG to write.
        total: how many images there are in all (for the title); defaults to
            ``len(previews)``.
        thumb: side of a thumbnail cell in pixels.
        columns: thumbnails per row.

    Returns:
        ``path``.
    """
    from PIL import Image, ImageDraw, ImageFont

    total = len(previews) if total is None else total
    shown = min(len(previews), MAX_THUMBNAILS)
    columns = max(1, min(columns, shown))
    rows = max(1, math.ceil(shown / columns))
    font = ImageFont.load_default(size=11)
    caption_h, title_h, pad = 14, 22, 4
    cell_w, cell_h = thumb + pad, thumb + caption_h + pad
    sheet = Image.new("L", (max(columns * cell_w + pad, 420), title_h + rows * cell_h + pad), 32)
    draw = ImageDraw.Draw(sheet)
    title = f"{total} images" if shown == total else f"{total} images, the first {shown} shown"
    draw.text((pad, 4), title, fill=255, font=font)
    max_chars = max(4, thumb // 6)
    for i in range(shown):
        im = Image.fromarray(np.asarray(previews[i], dtype=np.uint8))
        im.thumbnail((thumb, thumb), Image.Resampling.LANCZOS)
        x0 = pad + (i % columns) * cell_w
        y0 = title_h + (i // columns) * cell_h
        sheet.paste(im, (x0 + (thumb - im.width) // 2, y0 + (thumb - im.height) // 2))
        text = captions[i] if len(captions[i]) <= max_chars else captions[i][:max_chars - 1] + "…"
        draw.text((x0, y0 + thumb + 1), text, fill=200, font=font)
    sheet.save(path, format="PNG")
    return path

"""Turn a raw image into the model's input: robust scaling, stretch, resampling.

1. **Robust scaling.** The values at the ``clip`` percentiles of the unmasked
   pixels map to 0 and 1, everything beyond is clipped. Percentiles resist the
   few very bright or very negative pixels of radio maps far better than the
   minimum and maximum.
2. **Stretch.** ``asinh`` (Lupton, Gunn & Szalay 1999, AJ 118, 1406): linear for
   faint pixels, logarithmic for bright ones, so faint extended emission and a
   bright core both stay visible; ``log`` (the ds9 form
   ``log10(a·x + 1) / log10(a + 1)``) and ``linear`` are also there.
3. **Masked pixels** (NaN: blank, primary-beam border, transparent) become 0.
4. **Resampling** to ``size × size`` keeping the aspect ratio: the longer side
   becomes ``size`` (area-averaging when shrinking), the shorter side is padded
   with zeros on both sides.

The result is float16 in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vo_similarity.ingest.raw_image import InputRejected

__all__ = [
    "MIN_SIDE",
    "PreprocessConfig",
    "preprocess",
    "resample_square",
    "scale_and_stretch",
]

#: Images with fewer pixels than this along either side are rejected.
MIN_SIDE = 4


@dataclass(frozen=True)
class PreprocessConfig:
    """How raw pixels become model input.

    Attributes:
        size: side S of the square output images.
        clip: lower and upper percentiles (0–100) that map to 0 and 1.
        stretch: ``"asinh"``, ``"log"`` or ``"linear"``.
        softening: the asinh softening ``a`` in ``asinh(x/a) / asinh(1/a)``, or
            the log factor ``a`` in ``log10(a·x + 1) / log10(a + 1)``.
        preview_size: longer side of the PNG previews (smaller images keep
            their size).
    """

    size: int = 128
    clip: tuple[float, float] = (0.5, 99.9)
    stretch: str = "asinh"
    softening: float = 0.1
    preview_size: int = 256

    def __post_init__(self) -> None:
        if self.size < 1 or self.preview_size < 1:
            raise ValueError("size and preview_size must be positive")
        lo, hi = self.clip
        if not 0 <= lo < hi <= 100:
            raise ValueError(
                f"clip percentiles must satisfy 0 <= low < high <= 100, got {self.clip}")
        if self.stretch not in ("asinh", "log", "linear"):
            raise ValueError(f"unknown stretch {self.stretch!r}: use asinh, log or linear")
        if self.softening <= 0:
            raise ValueError("softening must be positive")


def scale_and_stretch(data: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """Scale ``data`` robustly into [0, 1], stretch it and set masked pixels to 0.

    Args:
        data: 2-D float array, NaN where masked.
        config: clip percentiles and stretch.

    Returns:
        float32 array of the same shape in [0, 1].

    Raises:
        InputRejected: too small, nothing unmasked, or no variation at all.
    """
    if data.ndim != 2 or min(data.shape) < MIN_SIDE:
        raise InputRejected(
            f"image of {'x'.join(map(str, data.shape[::-1]))} pixels is too small "
            f"(at least {MIN_SIDE} per side)"
        )
    finite = np.isfinite(data)
    values = data[finite]
    if values.size == 0:
        raise InputRejected("all pixels are NaN or blank")
    lo, hi = np.percentile(values, config.clip)
    if not hi > lo:
        lo, hi = values.min(), values.max()
        if not hi > lo:
            raise InputRejected(f"constant image: every unmasked pixel is {lo:g}")
    del values
    x = np.where(finite, data, lo).astype(np.float32)
    x -= lo
    x /= hi - lo
    np.clip(x, 0.0, 1.0, out=x)
    a = config.softening
    if config.stretch == "asinh":
        x = np.arcsinh(x / a) / np.arcsinh(1.0 / a)
    elif config.stretch == "log":
        x = np.log10(a * x + 1.0) / np.log10(a + 1.0)
    x[~finite] = 0.0
    return x.astype(np.float32, copy=False)


def resample_square(image: np.ndarray, size: int) -> np.ndarray:
    """Resize so the longer side is ``size``, keep the aspect ratio, zero-pad to square.

    Shrinking averages over the covered area (Pillow's ``reduce`` then Lanczos);
    growing uses Lanczos interpolation. The result is clipped to [0, 1].
    """
    from PIL import Image

    h, w = image.shape
    scale = size / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    resized = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32)).resize(
        (new_w, new_h), Image.Resampling.LANCZOS, reducing_gap=2.0
    )
    out = np.zeros((size, size), dtype=np.float32)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    out[top:top + new_h, left:left + new_w] = np.asarray(resized)
    return np.clip(out, 0.0, 1.0, out=out)


def preprocess(data: np.ndarray, config: PreprocessConfig) -> tuple[np.ndarray, np.ndarray]:
    """The model input and a preview of one raw image.

    Returns:
        ``(pixels, preview)``: float16 ``(size, size)`` in [0, 1], and uint8
        ``(h, w)`` with the longer side ``min(preview_size, original)``.
    """
    stretched = scale_and_stretch(data, config)
    pixels = resample_square(stretched, config.size).astype(np.float16)
    h, w = stretched.shape
    if max(h, w) > config.preview_size:
        from PIL import Image

        scale = config.preview_size / max(h, w)
        shape = (max(1, round(w * scale)), max(1, round(h * scale)))
        stretched = np.asarray(Image.fromarray(stretched).resize(
            shape, Image.Resampling.LANCZOS, reducing_gap=2.0))
    preview = np.round(np.clip(stretched, 0.0, 1.0) * 255).astype(np.uint8)
    return pixels, preview

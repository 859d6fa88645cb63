"""The light embedding runtime: an image in, the published model's unit vector out, no torch.

A published model with trained weights also publishes its embedding as an ONNX
file (``similarity.models.weights_url``, written by
:func:`vo_similarity.embed.onnx_export.export_onnx`), its SHA-256
(``weights_sha256``) and the ``preprocess`` settings with which ingest turned
the archive's files into model input. :class:`ModelRuntime` downloads the file
once into a cache named by its digest, checks the digest, and runs it with ONNX
Runtime on an image read and preprocessed by the very functions ingest uses
(:func:`image_pixels`), so that a file embeds here as it would in the archive.

Example::

    rt = ModelRuntime.fetch(row["weights_url"], row["weights_sha256"], row["preprocess"])
    vector = rt.embed("m51.fits")          # float32 [D], unit length
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
from astroquery.exceptions import InvalidQueryError, RemoteServiceError

from vo_similarity.ingest.preprocess import PreprocessConfig
from vo_similarity.ingest.preprocess import preprocess as ingest_preprocess
from vo_similarity.ingest.raw_image import InputRejected
from vo_similarity.ingest.readers import read_image
from vo_similarity.workdir import file_sha256

__all__ = ["ModelRuntime", "default_cache_dir", "image_pixels", "preprocess_config"]

log = logging.getLogger(__name__)

#: ITU-R BT.601 luma weights, those of Pillow's "L" conversion (the ingest reader's)
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


def preprocess_config(preprocess: Mapping[str, Any] | str | PreprocessConfig) -> PreprocessConfig:
    """The :class:`PreprocessConfig` of a model's published ``preprocess`` metadata.

    Args:
        preprocess: the ``similarity.models.preprocess`` value, as a dict or its JSON text.

    Raises:
        InvalidQueryError: not a JSON object, or a value PreprocessConfig refuses.
    """
    if isinstance(preprocess, PreprocessConfig):
        return preprocess
    if isinstance(preprocess, (str, bytes)):
        try:
            preprocess = json.loads(preprocess)
        except ValueError as exc:
            raise InvalidQueryError(f"preprocess metadata is not JSON: {exc}") from exc
    if not isinstance(preprocess, Mapping):
        raise InvalidQueryError(f"preprocess metadata must be a JSON object, got {preprocess!r}")
    known = {f.name for f in fields(PreprocessConfig)}
    values = {k: v for k, v in preprocess.items() if k in known}
    if "clip" in values:
        values["clip"] = tuple(values["clip"])
    try:
        return PreprocessConfig(**values)
    except (TypeError, ValueError) as exc:
        raise InvalidQueryError(f"invalid preprocess metadata {dict(preprocess)}: {exc}") from exc


def _array_image(image: np.ndarray) -> np.ndarray:
    """A 2-D float image (NaN where masked) from a 2-D, H×W×3 or H×W×4 array."""
    if image.ndim == 3 and image.shape[2] in (3, 4):
        if image.dtype == np.uint8:
            # the ingest reader's own conversion, so that an array of a PNG's
            # pixels gives exactly what reading the PNG gives
            from PIL import Image

            im = Image.fromarray(np.ascontiguousarray(image))  # RGB or RGBA
            if im.mode == "RGBA":
                la = np.asarray(im.convert("LA"))
                data = la[..., 0].astype(np.float32)
                data[la[..., 1] == 0] = np.nan
                return data
            return np.asarray(im.convert("L"), dtype=np.float32)
        rgb = image[..., :3].astype(np.float64) @ _LUMA
        if image.shape[2] == 4:
            rgb[image[..., 3] == 0] = np.nan
        return rgb.astype(np.float32)
    if image.ndim != 2:
        raise InvalidQueryError(
            f"an image array must be 2-D or H×W×3 (RGB) / H×W×4 (RGBA), got shape {image.shape}")
    if not (np.issubdtype(image.dtype, np.floating) or np.issubdtype(image.dtype, np.integer)
            or image.dtype == np.bool_):
        raise InvalidQueryError(f"an image array must be numeric, got dtype {image.dtype}")
    return np.asarray(image, dtype=np.float32)


def _channels(preprocess: Mapping[str, Any] | str | PreprocessConfig
              ) -> tuple[int | None, int | None] | None:
    """The cube channel range ingest used (``preprocess["channels"]``), if any."""
    if isinstance(preprocess, (str, bytes)):
        preprocess = json.loads(preprocess)
    found = preprocess.get("channels") if isinstance(preprocess, Mapping) else None
    if not found:
        return None
    if not isinstance(found, (list, tuple)) or len(found) != 2:
        raise InvalidQueryError(f"invalid channel range in the preprocess metadata: {found!r}")
    return (found[0], found[1])


def image_pixels(image: str | os.PathLike[str] | np.ndarray,
                 preprocess: Mapping[str, Any] | str | PreprocessConfig) -> np.ndarray:
    """The model input of one image: float32 ``[S, S]`` in [0, 1], as ingest stores it.

    A file is read by ingest's reader (:func:`vo_similarity.ingest.readers.read_image`:
    FITS, plain or gzipped, its first image HDU, a cube as its peak-flux image;
    PNG/JPEG as luminance) and goes through ingest's
    :func:`~vo_similarity.ingest.preprocess.preprocess`, so the result equals the
    pixel store's entry of that file (float16 values, returned as float32).

    Args:
        image: a FITS/PNG/JPEG file, or an array: 2-D (row 0 at the top, as
            displayed: flip an array read with ``astropy.io.fits``, whose row 0 is
            the bottom, or pass the file), H×W×3 RGB or H×W×4 RGBA. NaN pixels
            are masked.
        preprocess: the model's published ``preprocess`` metadata.

    Raises:
        InvalidQueryError: missing, unreadable, not an image, too small, all
            NaN/blank or constant; or invalid preprocess metadata.
    """
    config = preprocess_config(preprocess)
    if isinstance(image, np.ndarray):
        what = f"image array {image.shape}"
    elif isinstance(image, (str, os.PathLike)):
        what = str(image)
    else:
        raise InvalidQueryError(
            f"image must be a file path or a numpy array, got {type(image).__name__}")
    try:
        if isinstance(image, np.ndarray):
            data = _array_image(image)
        else:
            data = read_image(Path(image).expanduser(), _channels(preprocess)).data
        pixels, _ = ingest_preprocess(data, config)
    except InputRejected as exc:
        raise InvalidQueryError(f"{what}: {exc}") from exc
    return pixels.astype(np.float32)


def default_cache_dir() -> Path:
    """Where downloaded models are kept: ``vo_similarity/models`` in astropy's cache."""
    from astropy.config import get_cache_dir

    return Path(get_cache_dir()) / "vo_similarity" / "models"


def _download(url: str, target: Path, sha256: str, timeout: float) -> None:
    """Stream ``url`` into ``target``, which appears only when its digest is ``sha256``."""
    import requests

    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".part-", suffix=".onnx")
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with requests.get(url, stream=True, timeout=timeout) as response:
                    response.raise_for_status()
                    for block in response.iter_content(_CHUNK):
                        digest.update(block)
                        out.write(block)
            except requests.RequestException as exc:
                raise RemoteServiceError(f"cannot download the model from {url}: {exc}") from exc
        if digest.hexdigest() != sha256:
            raise RemoteServiceError(
                f"the model downloaded from {url} has SHA-256 {digest.hexdigest()}, "
                f"but the service publishes {sha256}: refusing it (a changed or corrupted "
                "file); ask the archive to republish, or retry")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


class ModelRuntime:
    """A published model's embedding, run by ONNX Runtime on the CPU.

    Build it with :meth:`fetch` (from the published URL and digest) or
    :meth:`from_file`; :meth:`embed` turns an image into the model's vector.

    Attributes:
        path: the ONNX file.
        preprocess: how images become the model's input.
        dim: the embedding dimension D.
        input_size: the side S of the model's input.
        metadata: what the file says it is (model name, torch version, ...).
    """

    def __init__(self, path: str | os.PathLike[str],
                 preprocess: Mapping[str, Any] | str | PreprocessConfig, *,
                 threads: int | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        self.preprocess = preprocess_config(preprocess)
        options = ort.SessionOptions()
        # 0 lets ONNX Runtime use all physical cores
        options.intra_op_num_threads = 0 if threads is None else int(threads)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(self.path), options,
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own unexported exception types
            raise InvalidQueryError(f"{self.path} is not a usable ONNX model: {exc}") from exc
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        shape, out_shape = inputs[0].shape, outputs[0].shape
        if (len(inputs) != 1 or len(outputs) != 1 or len(shape) != 4 or len(out_shape) != 2
                or not all(isinstance(s, int) for s in shape[2:] + out_shape[1:])):
            raise InvalidQueryError(
                f"{self.path} is not a vo-similarity embedding (input {shape}, output {out_shape})")
        self._input = inputs[0].name
        self.input_size = int(shape[-1])
        self.dim = int(out_shape[-1])
        self.metadata = dict(self._session.get_modelmeta().custom_metadata_map)
        if self.preprocess.size != self.input_size:
            raise InvalidQueryError(
                f"the model takes {self.input_size}×{self.input_size} images, but its preprocess "
                f"metadata says size {self.preprocess.size}: they belong to different models")

    @classmethod
    def from_file(cls, path: str | os.PathLike[str],
                  preprocess: Mapping[str, Any] | str | PreprocessConfig, *,
                  threads: int | None = None) -> ModelRuntime:
        """The runtime of a local ONNX file (see :meth:`fetch` for the arguments)."""
        if not Path(path).is_file():
            raise InvalidQueryError(f"no such model file: {path}")
        return cls(path, preprocess, threads=threads)

    @classmethod
    def fetch(cls, weights_url: str | None, sha256: str | None,
              preprocess: Mapping[str, Any] | str | PreprocessConfig, *,
              cache_dir: Path | None = None, timeout: float = 60,
              threads: int | None = None) -> ModelRuntime:
        """The runtime of a published model, downloaded once into a cache named by its digest.

        Args:
            weights_url: ``similarity.models.weights_url`` (http URL of the ONNX file).
            sha256: ``similarity.models.weights_sha256`` (hex).
            preprocess: ``similarity.models.preprocess`` (dict or JSON text).
            cache_dir: where models are kept (default :func:`default_cache_dir`).
            timeout: seconds for the download to connect and between bytes.
            threads: ONNX Runtime's intra-op threads (default: all cores).

        Raises:
            InvalidQueryError: the model publishes no weights, or a malformed digest.
            RemoteServiceError: the download failed, or the file's digest is not ``sha256``.
        """
        if not weights_url:
            raise InvalidQueryError(
                "this model publishes no weights (weights_url is empty): it cannot embed new "
                "images; query by published images instead")
        digest = (sha256 or "").strip().lower()
        if not _SHA256.fullmatch(digest):
            raise InvalidQueryError(f"weights_sha256 must be 64 hex digits, got {sha256!r}")
        target = Path(cache_dir or default_cache_dir()) / f"{digest}.onnx"
        if target.is_file() and file_sha256(target) != digest:
            log.warning("cached model %s is corrupted: downloading it again", target)
            target.unlink()
        if not target.is_file():
            log.info("downloading the model %s into %s", weights_url, target)
            _download(weights_url, target, digest, timeout)
        return cls(target, preprocess, threads=threads)

    def pixels(self, image: str | os.PathLike[str] | np.ndarray) -> np.ndarray:
        """The model input of ``image``, float32 ``[S, S]`` (see :func:`image_pixels`)."""
        return image_pixels(image, self.preprocess)

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """The embedding of preprocessed pixels ``[S, S]`` in [0, 1]: float32 ``[D]``, unit length."""
        pixels = np.asarray(pixels, dtype=np.float32)
        if pixels.shape != (self.input_size, self.input_size):
            raise InvalidQueryError(f"pixels must be {self.input_size}×{self.input_size}, "
                                    f"got shape {pixels.shape}")
        out = self._session.run(None, {self._input: pixels[None, None]})[0][0]
        if not np.all(np.isfinite(out)):
            raise InvalidQueryError("the model produced a non-finite embedding for this image")
        return out.astype(np.float32, copy=False)

    def embed(self, image: str | os.PathLike[str] | np.ndarray) -> np.ndarray:
        """The model's embedding of a FITS/PNG/JPEG file or an image array: float32 ``[D]``, unit length.

        Raises:
            InvalidQueryError: the image cannot be read or preprocessed (see :func:`image_pixels`).
        """
        return self.embed_pixels(self.pixels(image))

    def __repr__(self) -> str:
        name = self.metadata.get("vo_similarity.model", "?")
        return (f"<ModelRuntime {name!r}: {self.input_size}×{self.input_size} -> {self.dim}, "
                f"{self.path}>")

"""The published model itself: its ONNX file, served by DaCHS for the light client.

For a model with trained weights (``model.pt``), publishing exports the
embedding computation to ONNX (:func:`vo_similarity.embed.onnx_export.export_onnx`)
into ``data/published/weights/<name>-<sha16>.onnx`` below the resdir, which the
RD's ``files`` service serves with DaCHS's ``static`` renderer.  The name holds
the start of the file's SHA-256, so that a URL always names the same bytes
(clients cache by digest).  A stamp (``data/weights-stamps/<name>.json``)
records what the file was made from -- the SHA-256 of the weights and of the
config, and the input size -- so that an unchanged model is not exported again.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..workdir import ModelDir, atomic_write, file_sha256
from .dachs import RD_ID, DachsSite

__all__ = ["PublishedWeights", "publish_weights", "weights_folder"]

log = logging.getLogger(__name__)

#: The RD's service that serves ``data/published`` (renderer ``static``).
FILES_SERVICE = "files"


def weights_folder(site: DachsSite) -> Path:
    return site.resdir / "data" / "published" / "weights"


def _stamp(site: DachsSite, name: str) -> Path:
    return site.resdir / "data" / "weights-stamps" / f"{name}.json"


@dataclass
class PublishedWeights:
    url: str
    sha256: str
    path: Path
    exported: bool


def _url(site: DachsSite, file_name: str) -> str:
    # [web]serverURL: the address clients reach the server at
    return f"{site.url}/{RD_ID}/{FILES_SERVICE}/static/weights/{file_name}"


def publish_weights(site: DachsSite, model: ModelDir, input_size: int | None,
                    key: str | None = None) -> PublishedWeights | None:
    """Export ``model`` to ONNX where DaCHS serves it, unless unchanged since last time.

    Args:
        site: the DaCHS installation.
        model: the model's folder.
        input_size: side S of the model's input (the manifest's ``preprocess.size``).
        key: the model's name on the server, unique across collections
            (:func:`.collections.published_name`; default: the folder's name);
            it starts the file's name, and older files of that key are removed.

    Returns:
        URL, SHA-256 and path of the served file; None when the model has no
        trained weights (nothing to export).

    Raises:
        ValueError: weights but no input size is known.
    """
    if not model.weights.is_file():
        log.info("model %s has no %s: no ONNX file published", model.name, model.weights.name)
        return None
    if not input_size:
        raise ValueError(f"model {model.name}: the manifest records no preprocess size, "
                         "so the ONNX input size is unknown; rerun `vo-similarity ingest`")
    source = {"weights_sha256": file_sha256(model.weights),
              "config_sha256": file_sha256(model.config), "input_size": int(input_size)}
    key = key or model.name
    folder = weights_folder(site)
    stamp = _stamp(site, key)
    if stamp.is_file():
        record = json.loads(stamp.read_text(encoding="utf-8"))
        path = folder / record.get("file", "")
        if record.get("source") == source and path.is_file() \
                and file_sha256(path) == record.get("sha256"):
            log.info("model %s: ONNX file unchanged (%s)", model.name, path.name)
            return PublishedWeights(_url(site, path.name), record["sha256"], path, False)

    from vo_similarity.embed.onnx_export import export_onnx

    folder.mkdir(parents=True, exist_ok=True)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
        exported = Path(export_onnx(model, Path(tmp) / f"{model.name}.onnx",
                                    input_size=int(input_size)))
        digest = file_sha256(exported)
        path = folder / f"{key}-{digest[:16]}.onnx"
        os.chmod(exported, 0o644)  # DaCHS's server user serves it
        os.replace(exported, path)  # the temporary folder is on the same file system
    with atomic_write(stamp) as tmp_stamp:
        tmp_stamp.write_text(json.dumps({"source": source, "file": path.name,
                                         "sha256": digest}, indent=1), encoding="utf-8")
    # Older exports of this model: keep the newest previous one (a client may
    # have read its URL just before this publish), remove the rest.
    own = re.compile(re.escape(key) + r"-[0-9a-f]{16}\.onnx")
    older = sorted((p for p in folder.glob(f"{glob.escape(key)}-*.onnx")
                    if p != path and own.fullmatch(p.name)),
                   key=lambda p: p.stat().st_mtime_ns)
    for old in older[:-1]:
        old.unlink(missing_ok=True)
    log.info("model %s: exported %s (sha256 %s)", model.name, path.name, digest)
    return PublishedWeights(_url(site, path.name), digest, path, True)

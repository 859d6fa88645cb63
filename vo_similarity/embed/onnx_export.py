"""Export a trained model's embedding computation to ONNX for the light client.

The exported graph is the whole of :func:`vo_similarity.learn.model.embed_tensor`
at fp32 precision: the canonical frame (:mod:`vo_similarity.learn.canonical`),
the rotation pooling, the backbone and the final normalisation. An astronomer's
client (:mod:`vo_similarity.client.embedding`) runs it with ONNX Runtime, without
torch, on an image preprocessed as ingest did, and gets the vector that
``vo-similarity embed`` would have computed.

The input shape is fixed, ``images`` float32 ``[1, 1, S, S]`` with S the pixel
store's side: the canonical frame's blur builds one kernel per sample, which the
TorchScript exporter can only trace at a fixed batch size (one image per call
is what a client needs). The output is ``embedding`` float32 ``[1, D]``, unit
length. What the file is (model name, D, S, torch version) is recorded in its
``metadata_props``.
"""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from vo_similarity.learn.config import TrainConfig
from vo_similarity.learn.model import SimCLR, embed_tensor
from vo_similarity.workdir import ModelDir, atomic_write

__all__ = ["INPUT_NAME", "OPSET", "OUTPUT_NAME", "export_onnx"]

log = logging.getLogger(__name__)

#: ONNX opset of the exported graph; ONNX Runtime >= 1.17 runs it.
OPSET = 20
INPUT_NAME = "images"
OUTPUT_NAME = "embedding"


class _Embedding(nn.Module):
    """``embed_tensor`` as a module, the form ``torch.onnx.export`` traces."""

    def __init__(self, model: SimCLR, cfg: TrainConfig):
        super().__init__()
        self.model = model
        self.cfg = cfg

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return embed_tensor(self.model, images, self.cfg)


def _antialiased_bilinear(g, images, output_size, align_corners, scale_factors):
    """ONNX for ``F.interpolate(..., mode="bilinear", antialias=True)``, which the
    TorchScript exporter lacks (embed_tensor's path without canonical frame and pooling).

    The resize is linear and separable, so at the graph's static sizes it is
    ``rows @ images @ cols`` with the two operator matrices taken from torch's own
    resize of identity matrices. (ONNX's Resize with ``antialias=1`` weights the
    border pixels differently: 6e-4 apart on a 24 -> 16 shrink.)
    """
    import torch.nn.functional as F
    from torch.onnx import symbolic_helper as sh

    size = sh._maybe_get_const(output_size, "is")
    shape = sh._get_tensor_sizes(images)
    if not isinstance(size, list) or shape is None or None in shape[2:]:
        raise ValueError("the antialiased resize exports only at static sizes")
    corners = bool(sh._maybe_get_const(align_corners, "b"))

    def operator(n_in: int, n_out: int) -> torch.Tensor:  # [n_out, n_in]
        # the same 1-D filter serves both axes; along the width, because torch's
        # antialiased resize of a width-1 batch along the height is off (torch 2.14)
        eye = torch.eye(n_in).view(n_in, 1, 1, n_in)
        return F.interpolate(eye, size=(1, n_out), mode="bilinear", antialias=True,
                             align_corners=corners)[:, 0, 0, :].T.contiguous()

    rows = g.op("Constant", value_t=operator(shape[2], size[0]))
    cols = g.op("Constant", value_t=operator(shape[3], size[1]).T.contiguous())
    return g.op("MatMul", g.op("MatMul", rows, images), cols)


def _metadata(cfg: TrainConfig, name: str, dim: int, input_size: int) -> dict[str, str]:
    from vo_similarity import __version__

    return {
        "vo_similarity.model": name,
        "vo_similarity.dim": str(dim),
        "vo_similarity.input_size": str(input_size),
        "vo_similarity.image_size": str(cfg.image_size),
        "vo_similarity.pool_rotations": str(cfg.pool_rotations),
        "vo_similarity.canonical": str(cfg.canonical.enabled).lower(),
        "vo_similarity.version": __version__,
        "torch_version": torch.__version__,
    }


def export_module(model: SimCLR, cfg: TrainConfig, input_size: int, name: str = "") -> bytes:
    """The serialised ONNX model of ``embed_tensor(model, ., cfg)`` at fp32, input side ``input_size``.

    Args:
        model: the trained network (on the CPU).
        cfg: its training config (its ``precision`` is overridden by fp32).
        input_size: side S of the input images (the pixel store's).
        name: the model's name, recorded in the metadata.
    """
    import onnx

    if input_size < 1:
        raise ValueError(f"input_size must be positive, got {input_size}")
    cfg = cfg.replace(precision="fp32")
    module = _Embedding(model.cpu().eval(), cfg).eval()
    probe = torch.zeros(1, 1, input_size, input_size)
    with torch.no_grad():
        dim = int(module(probe).shape[1])
    torch.onnx.register_custom_op_symbolic("aten::_upsample_bilinear2d_aa", _antialiased_bilinear,
                                           OPSET)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # the tracer warns about Python floats taken from tensors (the blur's kernel
        # radius, from the config's constant sigma): constant here by construction
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", "Constant folding", UserWarning)
        torch.onnx.export(module, (probe,), buffer, dynamo=False, opset_version=OPSET,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME])
    proto = onnx.load_from_string(buffer.getvalue())
    proto.doc_string = (f"vo-similarity embedding of model {name!r}: images float32 "
                        f"[1, 1, {input_size}, {input_size}] in [0, 1] -> unit vector [1, {dim}]")
    onnx.helper.set_model_props(proto, _metadata(cfg, name, dim, input_size))
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def export_onnx(model_dir: ModelDir, out: Path, *, input_size: int) -> Path:
    """Write the ONNX embedding of the trained model in ``model_dir`` to ``out``, atomically.

    Args:
        model_dir: a trained model (its ``config`` and ``weights``).
        out: the ONNX file to write (replaced only when complete).
        input_size: side S of the input images: the pixel store's
            (the manifest's ``preprocess.size``).

    Returns:
        ``out``.

    Raises:
        FileNotFoundError: the model has not been trained.
    """
    from vo_similarity.embed.embed import load_trained

    cfg, model = load_trained(model_dir)
    data = export_module(model, cfg, input_size, model_dir.name)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out) as tmp:
        tmp.write_bytes(data)
    log.info("exported %s to %s (%.1f MB, input %d x %d)", model_dir.name, out, len(data) / 1e6,
             input_size, input_size)
    return out

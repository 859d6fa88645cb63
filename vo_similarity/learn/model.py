"""The SimCLR network: a ResNet backbone and lightly's projection head.

Training compares projections with lightly's ``NTXentLoss`` (Chen et al. 2020,
arXiv:2002.05709); the embedding used for similarity is the backbone's pooled
feature vector before the head, as in that paper (§4.2).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from torch import nn

from vo_similarity.learn.augment import compose_affine, rotation_matrices, warp
from vo_similarity.learn.backbone import build_backbone, feature_dim
from vo_similarity.learn.canonical import canonical_matrices
from vo_similarity.learn.config import TrainConfig

__all__ = ["SimCLR", "build_loss", "build_model", "embed_tensor", "load_model"]


class SimCLR(nn.Module):
    """Backbone + SimCLR projection head."""

    def __init__(self, backbone: nn.Module, dim: int, projection_dim: int):
        super().__init__()
        self.backbone = backbone
        self.head = SimCLRProjectionHead(input_dim=dim, hidden_dim=dim, output_dim=projection_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def build_model(cfg: TrainConfig) -> SimCLR:
    """A freshly initialised network for ``cfg`` (seed the global RNG first for repeatability)."""
    dim = feature_dim(cfg.backbone, cfg.width)
    return SimCLR(build_backbone(cfg.backbone, cfg.stem, cfg.width), dim, cfg.projection_dim)


def build_loss(cfg: TrainConfig, distributed: bool = False) -> NTXentLoss:
    """lightly's NT-Xent loss; under DDP negatives are gathered from all processes."""
    return NTXentLoss(temperature=cfg.temperature, gather_distributed=distributed)


def load_model(cfg: TrainConfig, weights: str | os.PathLike[str], device="cpu") -> SimCLR:
    """A network for ``cfg`` with the state dict saved at ``weights`` (fp16 or fp32)."""
    model = build_model(cfg)
    state = torch.load(Path(weights), map_location="cpu", weights_only=True)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return model.to(device).eval()


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``, or None for plain fp32."""
    if precision == "fp32":
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if precision == "bf16":
        return torch.bfloat16
    # auto on the CPU: bf16 only where the hardware computes it natively (AVX512-BF16, AMX)
    cpu = torch.cpu
    native = cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported()
    return torch.bfloat16 if native else None


@torch.no_grad()
def embed_tensor(
    model: SimCLR, images: torch.Tensor, cfg: TrainConfig, pool_rotations: int | None = None
) -> torch.Tensor:
    """Unit-length embeddings ``[B, D]`` float32 of ``images`` [B, 1, S, S] (values in [0, 1]).

    With ``pool_rotations`` = n > 1 the backbone features are averaged over the
    2n views of the dihedral group D_n (n rotations, each with and without a
    flip) before normalising: group averaging makes the embedding invariant to
    those transforms and close to invariant to any rotation between them
    (cf. Cohen & Welling 2016, arXiv:1602.07576, on group pooling).

    With ``cfg.canonical.enabled`` each image is first mapped to its canonical
    frame (:mod:`vo_similarity.learn.canonical`), composed with the group's
    transforms so that every view is one resampling of the stored pixels.
    """
    n = cfg.pool_rotations if pool_rotations is None else pool_rotations
    device = next(model.parameters()).device
    images = images.to(device, torch.float32)
    dtype = autocast_dtype(cfg.precision, device)
    base = canonical_matrices(images, cfg.canonical) if cfg.canonical.enabled else None
    with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        if n > 1:
            mats = rotation_matrices(n, device=device)
            b, g = images.shape[0], mats.shape[0]
            mats = mats.repeat(b, 1, 1)
            if base is not None:
                mats = compose_affine(base.repeat_interleave(g, 0), mats)
            views = warp(images.repeat_interleave(g, 0), mats, cfg.image_size)
            feats = model.backbone(views).float().view(b, g, -1).mean(1)
        elif base is not None:
            feats = model.backbone(warp(images, base, cfg.image_size)).float()
        else:
            if images.shape[-1] != cfg.image_size:
                images = F.interpolate(images, size=cfg.image_size, mode="bilinear",
                                       antialias=True, align_corners=False)
            feats = model.backbone(images).float()
    return F.normalize(feats, dim=1)

"""The typed training configuration, saved as ``config.json`` beside every model.

The publish stage reads ``name`` and ``category`` and stores the rest as the
model's hyperparameters, so every field here is plain JSON.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vo_similarity.workdir import atomic_write

__all__ = ["AugmentConfig", "CanonicalConfig", "TrainConfig"]

STEMS = ("unstrided", "halved", "stock")
BACKBONES = ("resnet18", "resnet50")
PRECISIONS = ("auto", "bf16", "fp32")
BACKGROUND_PIXELS = ("nonzero", "unpadded")
#: the keys of the canonical frame as first saved, and the values that the keys added
#: later had implicitly before: a complete saved frame lacking them keeps its behaviour
FIRST_CANONICAL_KEYS = frozenset({"enabled", "fill", "flux_fraction", "nsigma", "smooth_sigma",
                                  "zoom_min", "zoom_max", "max_shift"})
LEGACY_CANONICAL = {"radius": "flux", "zoom_power": 1.0, "background_pixels": "unpadded"}


@dataclass
class AugmentConfig:
    """Ranges of the per-sample augmentations (see :mod:`vo_similarity.learn.augment`).

    Attributes:
        rotation_deg: rotation angle drawn uniformly in ``[-rotation_deg, rotation_deg]``.
        flip_prob: probability of a mirror flip.
        shear_deg: shear angle drawn uniformly in ``[-shear_deg, shear_deg]``.
        scale_min: smallest zoom factor (log-uniform between min and max).
        scale_max: largest zoom factor.
        offset: translation as a fraction of the half-width, uniform in ``[-offset, offset]``.
        stretch: strength of the log-stretch jitter, both directions (0 = none).
        noise_std: largest standard deviation of added Gaussian noise.
        blur_sigma: largest sigma, in output pixels, of the Gaussian beam blur.
    """

    rotation_deg: float = 180.0
    flip_prob: float = 0.5
    shear_deg: float = 12.0
    scale_min: float = 0.8
    scale_max: float = 1.25
    offset: float = 0.08
    stretch: float = 1.0
    noise_std: float = 0.08
    blur_sigma: float = 1.5


@dataclass
class CanonicalConfig:
    """The canonical frame: centring and isotropic zoom of each image (see
    :mod:`vo_similarity.learn.canonical`), applied before the augmentations and
    before embedding. The defaults are the measured default recipe
    (``docs/learning.md``, "The default recipe").

    Attributes:
        enabled: map every image to its canonical frame (False: the stored frame).
        fill: radius, as a fraction of the half-width, that the flux radius is zoomed to.
        radius: ``"flux"``, the radius enclosing ``flux_fraction`` of the significant
            flux, or ``"rms"``, the flux²-weighted RMS radius (smooth in the pixels;
            about half the 90 %-flux radius, so use a smaller ``fill``).
        flux_fraction: fraction of the significant flux enclosed by the flux radius.
        nsigma: emission counts above the background plus this many noise sigmas.
        smooth_sigma: Gaussian smoothing before the threshold, in pixels of a 64-px image.
        zoom_min: smallest canonical zoom (< 1 shrinks large sources; 1 leaves a source
            that fills the field, whose size cannot be measured, in its stored frame).
        zoom_max: largest canonical zoom (limits the up-sampling of tiny sources).
        max_shift: largest centring shift, as a fraction of the half-width (the centroid
            of a crowded field moves when a transform crops its corners).
        zoom_power: how much of the size is normalised: the zoom is
            ``(fill / r) ** zoom_power`` (1: every source to the same size; 0.5: a
            16-fold range of sizes becomes 4-fold, keeping some size information
            and halving the effect of a misjudged radius).
        background_pixels: the pixels the background and noise are measured on:
            ``"nonzero"``, those not zero after smoothing, or ``"unpadded"``, those whose
            smoothing kernel saw no exact zero (the rule that saved frames without
            this key were trained with, :data:`LEGACY_CANONICAL`; it takes a
            photograph's black sky, clipped to zeros, for padding).
    """

    enabled: bool = True
    fill: float = 0.35
    radius: str = "rms"
    flux_fraction: float = 0.9
    nsigma: float = 1.0
    smooth_sigma: float = 1.0
    zoom_min: float = 1.0
    zoom_max: float = 3.0
    max_shift: float = 0.1
    zoom_power: float = 0.7
    background_pixels: str = "nonzero"


@dataclass
class TrainConfig:
    """All the hyperparameters of one model, plus its name and category.

    Attributes:
        name: model name (a folder below ``WORK/models``).
        category: manifest category the model is trained on; empty means all images.
        backbone: ``resnet18`` or ``resnet50`` (torchvision).
        stem: ``unstrided`` (3x3 stride-1 conv, no max-pool), ``halved`` (3x3 stride-2,
            no max-pool) or ``stock`` (7x7 stride-2 conv + max-pool).
        width: channels of the first ResNet stage (torchvision's is 64).
        image_size: side in pixels the network sees; images are resampled to it.
        projection_dim: output size of the SimCLR projection head.
        epochs, batch_size, learning_rate, weight_decay, temperature: the optimisation.
        warmup_epochs: linear learning-rate warm-up before the cosine decay.
        pool_rotations: embeddings are averaged over this many rotations, each with and
            without a flip (group pooling over the dihedral group D_n); 0 or 1 turns it off.
        val_fraction: fraction of images held out (chosen by ``image_id``) for validation.
        seed: seeds weights, batch order and augmentations.
        precision: ``auto`` (bf16 autocast where the hardware has it), ``bf16`` or ``fp32``.
        augment: augmentation ranges.
        canonical: the canonical frame; a config file without this key loads with it
            off, and a frame saved before the keys ``radius``, ``zoom_power`` and
            ``background_pixels`` existed with the values they had implicitly
            (:data:`LEGACY_CANONICAL`), so older models keep their behaviour.
        selection_weight: weight of the selection term (the supervised contrastive
            loss over recorded selections, :mod:`vo_similarity.learn.selection_loss`)
            beside SimCLR's; 0 is pure SimCLR, and the term is only computed when
            training is given selections.
        selection_temperature: temperature of the selection term.
        selection_batch: marked pairs (query, chosen image) per training step.
        selection_per_query: at most this many of one query's pairs per step (the
            step's pairs come from whole queries, so each query's similar and
            not-similar images meet in one step).
        selection_negative_weight: weight of the images marked not similar in the
            selection term's denominator (1: plain supervised contrastive loss).
    """

    name: str = "default"
    category: str = ""
    backbone: str = "resnet18"
    stem: str = "stock"
    width: int = 32
    image_size: int = 64
    projection_dim: int = 128
    epochs: int = 300
    batch_size: int = 128
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    temperature: float = 0.2
    warmup_epochs: int = 3
    pool_rotations: int = 8
    val_fraction: float = 0.0
    seed: int = 0
    precision: str = "auto"
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    canonical: CanonicalConfig = field(default_factory=CanonicalConfig)
    selection_weight: float = 0.0
    selection_temperature: float = 0.1
    selection_batch: int = 64
    selection_per_query: int = 16
    selection_negative_weight: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.augment, dict):
            self.augment = AugmentConfig(**self.augment)
        if isinstance(self.canonical, dict):
            self.canonical = CanonicalConfig(**self.canonical)
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first field that is out of range."""
        checks = [
            (self.backbone in BACKBONES, f"backbone must be one of {BACKBONES}"),
            (self.stem in STEMS, f"stem must be one of {STEMS}"),
            (self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}"),
            (self.width >= 4, "width must be >= 4"),
            (self.image_size >= 8, "image_size must be >= 8"),
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 2, "batch_size must be >= 2 (SimCLR needs negatives)"),
            (self.learning_rate > 0, "learning_rate must be > 0"),
            (self.temperature > 0, "temperature must be > 0"),
            (0 <= self.val_fraction < 1, "val_fraction must be in [0, 1)"),
            (self.pool_rotations >= 0, "pool_rotations must be >= 0"),
            (0 < self.augment.scale_min <= self.augment.scale_max, "need 0 < scale_min <= scale_max"),
            (0 <= self.augment.flip_prob <= 1, "flip_prob must be in [0, 1]"),
            (0 < self.canonical.fill <= 1, "canonical fill must be in (0, 1]"),
            (0 < self.canonical.flux_fraction <= 1, "canonical flux_fraction must be in (0, 1]"),
            (self.canonical.radius in ("flux", "rms"), "canonical radius must be 'flux' or 'rms'"),
            (0 < self.canonical.zoom_min <= self.canonical.zoom_max,
             "need 0 < canonical zoom_min <= zoom_max"),
            (self.canonical.smooth_sigma >= 0, "canonical smooth_sigma must be >= 0"),
            (0 <= self.canonical.max_shift <= 1, "canonical max_shift must be in [0, 1]"),
            (0 < self.canonical.zoom_power <= 1, "canonical zoom_power must be in (0, 1]"),
            (self.selection_weight >= 0, "selection_weight must be >= 0"),
            (self.selection_temperature > 0, "selection_temperature must be > 0"),
            (self.selection_batch >= 1, "selection_batch must be >= 1"),
            (self.selection_per_query >= 1, "selection_per_query must be >= 1"),
            (self.selection_negative_weight > 0, "selection_negative_weight must be > 0"),
            (self.canonical.background_pixels in BACKGROUND_PIXELS,
             f"canonical background_pixels must be one of {BACKGROUND_PIXELS}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"invalid config: {message}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build a config, rejecting unknown keys with a clear message."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}; known: {sorted(known)}")
        data = dict(data)
        for key, kind in (("augment", AugmentConfig), ("canonical", CanonicalConfig)):
            if key in data:
                sub_known = {f.name for f in dataclasses.fields(kind)}
                bad = set(data[key]) - sub_known
                if bad:
                    raise ValueError(f"unknown {key} keys: {sorted(bad)}; known: {sorted(sub_known)}")
        # files written before the canonical frame existed load with it off; a frame
        # saved before some of its keys existed keeps the values they had implicitly.
        # A partial, hand-written frame takes the defaults for what it leaves out.
        canonical = data.get("canonical")
        if canonical is None:
            data["canonical"] = {"enabled": False}
        elif FIRST_CANONICAL_KEYS <= set(canonical):
            data["canonical"] = {**LEGACY_CANONICAL, **canonical}
        return cls(**data)

    def save(self, path: str | os.PathLike[str]) -> None:
        path = Path(path)
        with atomic_write(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TrainConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed; ``augment`` and ``canonical`` may be partial dicts."""
        data = self.to_dict()
        subs = {key: changes.pop(key, None) for key in ("augment", "canonical")}
        data.update(changes)
        for key, sub in subs.items():
            if sub:
                data[key] = {**data[key], **sub}
        return TrainConfig.from_dict(data)

"""A synthetic ALMA-like sky: interferometer images and cubes with known classes.

Nine morphologies (:data:`CLASSES`) — point sources, Gaussian blobs, discs with
rings and gaps, spirals, edge-on discs, bipolar outflows, rings, filaments and
double-lobed radio sources — each with random geometry, seen through a random
elliptical restoring beam, with beam-correlated noise and a Gaussian primary
beam whose cut leaves a NaN border. They give ground truth for
tests and evaluation and data at any N for benchmarks.

Use :func:`render` (one 2-D image in memory, for training and evaluation code),
:func:`render_many` (a balanced labelled set in memory) or :func:`write_sky`
(FITS files with WCS and beam headers plus their
:class:`~vo_similarity.ingest.inputs.ImageInput` records for the ingest stage).

Example:
    >>> import numpy as np
    >>> from vo_similarity.ingest import synthetic
    >>> img = synthetic.render("spiral", np.random.default_rng(1), size=64)
    >>> img.shape, img.dtype
    ((64, 64), dtype('float32'))
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vo_similarity.ingest.inputs import ImageInput
from vo_similarity.ingest.synthetic_fits import SkyPlacement, Spectral, make_header, write_cube
from vo_similarity.ingest.synthetic_models import MODELS, Grid, ModelParams
from vo_similarity.ingest.synthetic_observe import (
    Observation,
    convolve_beam,
    correlated_noise,
    draw_observation,
    restore,
)

__all__ = [
    "CLASSES",
    "CREDIT",
    "SyntheticImage",
    "label_of",
    "render",
    "render_many",
    "simulate",
    "write_cube",
    "write_sky",
]

log = logging.getLogger(__name__)

#: The class labels, in a fixed order.
CLASSES: tuple[str, ...] = tuple(MODELS)
#: Credit line of every synthetic image.
CREDIT = "vo-similarity synthetic ALMA-like sky"
_STOKES_FRACTION = 0.5  # of cubes, written 4-D with a degenerate STOKES axis
_DEGENERATE_FRACTION = 0.3  # of 2-D images, written 4-D with one channel and one Stokes


@dataclass(frozen=True)
class SyntheticImage:
    """One simulated observation.

    Attributes:
        label: the class (one of :data:`CLASSES`).
        data: float32 Jy/beam, ``(size, size)`` or ``(n_channels, size, size)``;
            NaN outside the primary-beam cut.
        model: float32 ``(size, size)``: the noiseless beam-convolved sky
            [Jy/beam], no primary beam, no NaN (for a cube, the sky at the line peak).
        observation: beam, noise, primary beam.
        params: where the source is (centre, axis, inclination, size).
    """

    label: str
    data: np.ndarray
    model: np.ndarray
    observation: Observation
    params: ModelParams


def _check_class(cls: str) -> None:
    if cls not in MODELS:
        raise ValueError(f"unknown class {cls!r}; choose one of {', '.join(CLASSES)}")


def _channel_map(
    g: Grid, p: ModelParams, rng: np.random.Generator, n_channels: int
) -> tuple[np.ndarray, float]:
    """Peak channel of the line at each pixel, and the line width in channels.

    Discs rotate (Keplerian, v ∝ r^-1/2, projected on the major axis); other
    sources get a velocity gradient along their axis (outflows expand, jets...).
    """
    mid = (n_channels - 1) / 2.0 + rng.uniform(-0.1, 0.1) * n_channels
    span = rng.uniform(0.15, 0.35) * n_channels * rng.choice([-1.0, 1.0])
    dx, dy = g.x - p.x0, g.y - p.y0
    u = dx * np.cos(p.pa) + dy * np.sin(p.pa)
    v = (-dx * np.sin(p.pa) + dy * np.cos(p.pa)) / p.cos_incl
    if p.rotating:
        r = np.maximum(np.hypot(u, v), 0.15 * p.radius) / p.radius
        vel = (u / p.radius) / r * r**-0.5 * 0.15**0.5  # |vel| ≤ 1 at r = 0.15 R
    else:
        vel = np.clip(u / p.radius, -1.0, 1.0)
    chan = np.clip(mid + span * vel, 1.0, n_channels - 2.0)
    return chan.astype(np.float32), float(rng.uniform(0.7, 2.0))


def simulate(
    cls: str, rng: np.random.Generator, size: int = 128, n_channels: int = 0
) -> SyntheticImage:
    """Simulate one observation of a source of class ``cls``.

    Args:
        cls: one of :data:`CLASSES`.
        rng: the random generator; the result depends only on its state.
        size: image width and height in pixels (≥ 32).
        n_channels: 0 for a 2-D continuum image, else the number of channels of
            a spectral-line cube (≥ 4) whose line peaks at a channel that varies
            across the source, on top of a weaker continuum.

    Returns:
        The image or cube with its noiseless model and parameters.
    """
    _check_class(cls)
    if size < 32:
        raise ValueError(f"size must be at least 32 pixels, got {size}")
    if n_channels and n_channels < 4:
        raise ValueError(f"a cube needs at least 4 channels, got {n_channels}")
    obs = draw_observation(rng, size)
    g = Grid.square(size, beam=obs.beam.fwhm, radius=0.8 * min(obs.pb_radius, size / 2.0))
    sky, params = MODELS[cls](g, rng)
    model = convolve_beam(sky, obs.beam)
    scale = obs.snr * obs.noise_rms / max(float(model.max()), 1e-30)
    model *= scale
    pb = obs.primary_beam(size)
    if n_channels:
        chan, width = _channel_map(g, params, rng, n_channels)
        continuum = rng.uniform(0.0, 0.3)
        k = np.arange(n_channels, dtype=np.float32)[:, None, None]
        line = np.exp(-0.5 * ((k - chan[None]) / width) ** 2)
        data = restore(sky[None] * scale * ((1 - continuum) * line + continuum), obs)
        shape: tuple[int, ...] = (n_channels, size, size)
    else:
        data, shape = restore(sky * scale, obs), (size, size)
    data = data * pb + obs.noise_rms * correlated_noise(rng, shape, obs.beam)
    if obs.pb_corrected:
        data = data / pb
    data[..., pb < obs.pb_cut] = np.nan
    return SyntheticImage(cls, data.astype(np.float32), model, obs, params)


def render(cls: str, rng: np.random.Generator, size: int = 128) -> np.ndarray:
    """A 2-D sky image of class ``cls``: float32 Jy/beam, NaN outside the primary beam.

    Includes the restoring beam, beam-correlated noise and the primary-beam taper
    (or its correction); about 1 ms for 128².
    """
    return simulate(cls, rng, size).data


def label_of(index: int, seed: int = 0) -> str:
    """The class of image ``index`` of the sky with ``seed``.

    Every block of 9 consecutive indices holds each class once, in an order
    shuffled per block, so any prefix of the sky is balanced to within one image.
    """
    perm = np.random.default_rng([seed, index // len(CLASSES), 2]).permutation(len(CLASSES))
    return CLASSES[int(perm[index % len(CLASSES)])]


def render_many(n: int, *, seed: int = 0, size: int = 128) -> tuple[np.ndarray, list[str]]:
    """``n`` balanced 2-D images in memory: float32 ``(n, size, size)`` and their labels.

    Image ``i`` has class :func:`label_of` ``(i, seed)`` and depends only on
    ``(seed, i)``, so larger sets extend smaller ones.
    """
    out = np.empty((n, size, size), np.float32)
    labels = [label_of(i, seed) for i in range(n)]
    for i in tqdm(range(n), desc="synthetic sky", unit="img", disable=n < 500):
        out[i] = render(labels[i], np.random.default_rng([seed, i]), size)
    return out, labels


def _write_one(
    path: Path, seed: int, index: int, size: int, cube_fraction: float, n_channels: int
) -> ImageInput:
    label = label_of(index, seed)
    meta = np.random.default_rng([seed, index, 1])
    is_cube = meta.random() < cube_fraction
    four_d = meta.random() < (_STOKES_FRACTION if is_cube else _DEGENERATE_FRACTION)
    img = simulate(label, np.random.default_rng([seed, index]), size, n_channels * is_cube)
    obs = img.observation
    place = SkyPlacement.draw(meta, obs.beam.bmaj)
    spectral = Spectral.draw(meta, n_channels, four_d) if is_cube else None
    target = f"SYN-{seed}-{index:06d}"
    header = make_header(
        size,
        place,
        (obs.beam.bmaj, obs.beam.bmin, obs.beam.bpa),
        spectral=spectral,
        degenerate=four_d and not is_cube,
        extra={
            "OBJECT": (target, "synthetic source"),
            "LABEL": (label, "ground-truth morphology class"),
            "ORIGIN": ("vo-similarity", "synthetic ALMA-like sky"),
            "SYNSEED": (seed, "seed of the synthetic sky"),
            "SYNINDEX": (index, "index of this image in the synthetic sky"),
            "PBCOR": (obs.pb_corrected, "divided by the primary beam"),
            "PBCUT": (obs.pb_cut, "primary-beam level of the NaN border"),
            "NOISE": (obs.noise_rms, "[Jy/beam] rms of the flat noise"),
        },
    )
    planes = img.data if is_cube else [img.data]
    write_cube(path, planes, header)
    return ImageInput(
        path=path,
        obs_id=f"synthetic/{seed}/{index}",
        target_name=target,
        s_ra=place.ra,
        s_dec=place.dec,
        s_fov=2 * obs.pb_radius * place.cell,
        category="synthetic",
        credit=CREDIT,
        label=label,
    )


def write_sky(
    out_dir: Path,
    n: int,
    *,
    seed: int = 0,
    size: int = 128,
    cube_fraction: float = 0.2,
    n_channels: int = 16,
    progress: bool = True,
) -> list[ImageInput]:
    """Write ``n`` synthetic observations as FITS files and describe them.

    Files are ``out_dir/synthetic_<seed>_<index>.fits`` (index zero-padded to 6
    digits): 2-D images (30 % of them 4-D with one-pixel FREQ and STOKES axes,
    as many ALMA continuum products are) and, for a fraction ``cube_fraction``,
    spectral-line cubes (RA, DEC, FREQ; half of them with a degenerate STOKES
    axis). Every header has a SIN-projection WCS, BMAJ/BMIN/BPA, BUNIT, OBJECT
    and LABEL. Image ``i`` depends only on ``(seed, i, size, cube_fraction,
    n_channels)``: rerunning rewrites identical files, and a larger ``n``
    extends a smaller one.

    Args:
        out_dir: folder to write into (created if missing).
        n: number of images; classes are balanced (see :func:`label_of`).
        seed: seed of the sky.
        size: image width and height [px].
        cube_fraction: fraction of images written as cubes, in [0, 1].
        n_channels: channels per cube (≥ 4).
        progress: show a progress bar (for 200 images or more).

    Returns:
        One :class:`ImageInput` per file, in index order, with the label,
        ``category="synthetic"``, the credit, the WCS centre and the diameter of
        the primary-beam cut as field of view.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0.0 <= cube_fraction <= 1.0:
        raise ValueError(f"cube_fraction must be in [0, 1], got {cube_fraction}")
    if cube_fraction > 0 and n_channels < 4:
        raise ValueError(f"a cube needs at least 4 channels, got n_channels={n_channels}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs = [
        _write_one(
            out_dir / f"synthetic_{seed}_{i:06d}.fits", seed, i, size, cube_fraction, n_channels
        )
        for i in tqdm(range(n), desc="synthetic sky", unit="file", disable=not progress or n < 200)
    ]
    log.info("wrote %d synthetic images to %s", n, out_dir)
    return inputs

"""Noiseless sky models of the synthetic ALMA-like sky, one function per class.

Each model draws its own geometry (centre offset, orientation, inclination,
size, fine structure) from a :class:`numpy.random.Generator` and returns the
sky brightness on the pixel grid in arbitrary units per pixel, *before* the
restoring beam. Sizes are given in units of the beam so that every class stays
resolved the way it would be in a real interferometric image; the observation
(beam, noise, primary beam) is added by :mod:`vo_similarity.ingest.synthetic_observe`.

The morphologies follow what ALMA and the VLA actually show: ringed and spiral
protoplanetary discs (ALMA Partnership 2015, ApJL 808 L3; Andrews et al. 2018,
ApJL 869 L41 "DSHARP"; Huang et al. 2018, ApJL 869 L43), edge-on discs
(Villenave et al. 2020, A&A 642 A164), bipolar molecular outflows with
limb-brightened cavity walls (Arce et al. 2007, Protostars & Planets V),
filaments with dense cores (André et al. 2014, PPVI), and double-lobed
Fanaroff-Riley radio galaxies (Fanaroff & Riley 1974, MNRAS 167 31P).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["MODELS", "Grid", "ModelParams"]


@dataclass(frozen=True)
class Grid:
    """Pixel coordinates of a square image, relative to its centre.

    Attributes:
        x: column offsets in pixels, shape ``(size, size)``; +x points west on
            the sky (RA decreases to the right in a standard image).
        y: row offsets in pixels (+y is north).
        beam: restoring-beam FWHM (geometric mean of major and minor) in pixels.
        radius: radius in pixels inside which sources are placed (inside the
            primary-beam cut).
    """

    x: np.ndarray
    y: np.ndarray
    beam: float
    radius: float

    @classmethod
    def square(cls, size: int, beam: float, radius: float) -> Grid:
        c = np.arange(size, dtype=np.float32) - (size - 1) / 2.0
        y, x = np.meshgrid(c, c, indexing="ij")
        return cls(x=x, y=y, beam=float(beam), radius=float(radius))

    @property
    def size(self) -> int:
        return self.x.shape[0]


@dataclass(frozen=True)
class ModelParams:
    """Where a model put its source, for the spectral-line velocity field.

    Attributes:
        x0, y0: source centre in pixels relative to the image centre.
        pa: position angle of the source's major axis (or jet/outflow axis),
            radians counter-clockwise from +x.
        cos_incl: cosine of the inclination for discs (1 = face-on), 1 otherwise.
        radius: characteristic outer radius in pixels.
        rotating: whether the source is a rotating disc (Keplerian velocity
            field) rather than an expanding/linear one.
    """

    x0: float
    y0: float
    pa: float
    cos_incl: float
    radius: float
    rotating: bool


Model = Callable[[Grid, np.random.Generator], tuple[np.ndarray, ModelParams]]


# --------------------------------------------------------------------------- helpers


def _centre(g: Grid, rng: np.random.Generator, extent: float) -> tuple[float, float]:
    """A source centre near the image centre that keeps ``extent`` px inside the field."""
    room = max(0.0, min(0.25 * g.radius, g.radius - extent))
    r = room * np.sqrt(rng.random())
    phi = rng.uniform(0, 2 * np.pi)
    return float(r * np.cos(phi)), float(r * np.sin(phi))


def _frame(
    g: Grid, x0: float, y0: float, pa: float, cos_incl: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates along (u) and across (v) an axis at ``pa``; v de-projected by ``cos_incl``."""
    dx, dy = g.x - x0, g.y - y0
    c, s = np.cos(pa), np.sin(pa)
    u = dx * c + dy * s
    v = (-dx * s + dy * c) / cos_incl
    return u, v


def _size(g: Grid, rng: np.random.Generator, lo: float, hi: float, frac: float = 0.8) -> float:
    """A size drawn log-uniformly in [lo, hi] beams, capped at ``frac`` of the field radius."""
    return float(min(g.beam * np.exp(rng.uniform(np.log(lo), np.log(hi))), frac * g.radius))


def _deposit(img: np.ndarray, xs: np.ndarray, ys: np.ndarray, w: np.ndarray) -> None:
    """Add point fluxes ``w`` at sub-pixel offsets (xs, ys) with bilinear weights."""
    n = img.shape[0]
    cx = xs + (n - 1) / 2.0
    cy = ys + (n - 1) / 2.0
    ix, iy = np.floor(cx).astype(int), np.floor(cy).astype(int)
    fx, fy = cx - ix, cy - iy
    for ddx, ddy, ww in (
        (0, 0, (1 - fx) * (1 - fy)),
        (1, 0, fx * (1 - fy)),
        (0, 1, (1 - fx) * fy),
        (1, 1, fx * fy),
    ):
        jx, jy = ix + ddx, iy + ddy
        ok = (jx >= 0) & (jx < n) & (jy >= 0) & (jy < n)
        np.add.at(img, (jy[ok], jx[ok]), (w * ww)[ok])


def _gauss(u: np.ndarray, v: np.ndarray, su: float, sv: float) -> np.ndarray:
    return np.exp(-0.5 * ((u / su) ** 2 + (v / sv) ** 2))


def _incl(rng: np.random.Generator, max_deg: float) -> float:
    """cos(i) for an inclination uniform in cos between face-on and ``max_deg``."""
    return float(rng.uniform(np.cos(np.radians(max_deg)), 1.0))


# --------------------------------------------------------------------------- classes


def point_sources(g: Grid, rng: np.random.Generator) -> tuple[np.ndarray, ModelParams]:
    """One to four unresolved sources (delta functions), the brightest near the centre."""
    n = int(rng.choice([1, 2, 3, 4], p=[0.4, 0.3, 0.2, 0.1]))
    x0, y0 = _centre(g, rng, 0.0)
    r = 0.75 * g.radius * np.sqrt(rng.random(n - 1))
    phi = rng.uniform(0, 2 * np.pi, n - 1)
    xs = np.concatenate([[x0], r * np.cos(phi)])
    ys = np.concatenate([[y0], r * np.sin(phi)])
    w = np.concatenate([[1.0], 10 ** rng.uniform(-0.8, 0.0, n - 1)])
    img = np.zeros(g.x.shape, np.float32)
    _deposit(img, xs, ys, w)
    return img, ModelParams(x0, y0, rng.uniform(0, np.pi), 1.0, g.beam, False)


def gaussian_blob(g: Grid, rng: np.random.Generator) -> tuple[np.ndarray, ModelParams]:
    """A resolved elliptical Gaussian (3–10 beams FWHM), sometimes slightly lopsided."""
    fwhm = _size(g, rng, 2.5, 9.0, frac=0.9)
    ratio = rng.uniform(0.45, 1.0)
    pa = rng.uniform(0, np.pi)
    x0, y0 = _centre(g, rng, fwhm)
    u, v = _frame(g, x0, y0, pa)
    s = fwhm / 2.3548
    img = _gauss(u, v, s, s * ratio)
    if rng.random() < 0.5:  # a weaker companion blob makes the profile lopsided
        off = rng.uniform(0.2, 0.5) * fwhm
        img = img + rng.uniform(0.1, 0.35) * _gauss(u - off, v, 0.7 * s, 0.7 * s * ratio)
    return img.astype(np.float32), ModelParams(x0, y0, pa, 1.0, fwhm, False)


def ringed_disc(g: Grid, rng: np.random.Generator) -> tuple[np.ndarray, ModelParams]:
    """A protoplanetary disc with bright rings and dark gaps (HL Tau, DSHARP)."""
    rout = _size(g, rng, 7.0, 14.0)
    cos_i, pa = _incl(rng, 65.0), rng.uniform(0, np.pi)
    x0, y0 = _centre(g, rng, rout)
    u, v = _frame(g, x0, y0, pa, cos_i)
    r = np.hypot(u, v) / rout
    core = max(0.12, g.beam / rout)  # the cusp is flattened inside about one beam
    img = (np.maximum(r, core) ** -rng.uniform(0.2, 0.7)) * np.exp(-(r**8))
    n_gaps = int(rng.integers(1, 4))
    radii = np.sort(rng.uniform(0.25, 0.85, n_gaps))
    for rg in radii:
        width = max(rng.uniform(0.03, 0.08), 0.6 * g.beam / rout)
        img = img * (1 - rng.uniform(0.7, 1.0) * np.exp(-0.5 * ((r - rg) / width) ** 2))
        rr = rg + rng.uniform(2.0, 3.0) * width  # the bright ring just outside each gap
        img = img + 0.6 * np.exp(-0.5 * ((r - rr) / (0.7 * width)) ** 2) * np.exp(-(rr**8))
    return img.astype(np.float32), ModelParams(x0, y0, pa, cos_i, rout, True)


def spiral(g: Grid, rng: np.random.Generator) -> tuple[np.ndarray, ModelParams]:
    """A disc or galaxy with two to four logarithmic spiral arms around a bright centre."""
    rout = _size(g, rng, 7.0, 15.0)
    cos_i, pa = _incl(rng, 55.0), rng.uniform(0, np.pi)
    x0, y0 = _centre(g, rng, rout)
    u, v = _frame(g, x0, y0, pa, cos_i)
    rad = np.hypot(u, v)
    r = rad / rout
    phi = np.arctan2(v, u)
    m = int(rng.choice([2, 3, 4], p=[0.6, 0.25, 0.15]))
    pitch = np.radians(rng.uniform(12.0, 30.0))
    width = max(rng.uniform(0.6, 1.1) * g.beam, 0.05 * rout)
    sense = rng.choice([-1.0, 1.0])
    phase = sense * np.log(np.maximum(r, 0.05)) / np.tan(pitch) + rng.uniform(0, 2 * np.pi)
    arms = np.zeros_like(r)
    for j in range(m):
        d = np.angle(np.exp(1j * (phi - phase - 2 * np.pi * j / m)))
        arms = arms + np.exp(-0.5 * (d * rad / width) ** 2)
    r_in = rng.uniform(0.1, 0.25)
    envelope = np.exp(-r / rng.uniform(0.35, 0.6)) * (1 - np.exp(-((r / r_in) ** 4)))
    img = envelope * (0.15 + arms) * np.exp(-(r**6))
    img = img + rng.uniform(0.3, 1.0) * np.exp(-0.5 * (r / (0.6 * r_in)) ** 2)
    return img.astype(np.float32), ModelParams(x0, y0, pa, cos_i, rout, True)


def edge_on_disc(g: Grid, rng: np.random.Generator) -> tuple[np.ndarray, ModelParams]:
    """A thin, nearly edge-on disc: long and straight, often flared with a dark mid-plane."""
    length = _size(g, rng, 6.0, 14.0)
    pa = rng.uniform(0, np.pi)
    x0, y0 = _centre(g, rng, length)
    u, v = _frame(g, x0, y0, pa)
    h0 = max(length / rng.uniform(5.0, 10.0), 0.35 * g.beam)
    flare = rng.uniform(0.0, 0.5)
    h = h0 * (1 + flare * np.abs(u / length) ** 1.25)
    img = np.exp(-(np.abs(u / length) ** rng.uniform(2.0, 4.0))) * np.exp(-0.5 * (v / h) ** 2)
    if rng.random() < 0.5:  # optically thick mid-plane: two parallel lobes (HH 30, HH 212)
        img = img * (1 - rng.uniform(0.5, 0.9) * np.exp(-0.5 * (v / (0.45 * h)) ** 2))
    return img.astype(np.float32), ModelParams(x0, y0, pa, 0.1, length, True)


def bipolar_outflow(g: Grid, rng: np.random.Generator) -> tuple[np.ndarray, ModelParams]:
    """Two opposite limb-brightened cavities from a central protostar (hourglass shape)."""
    length = _size(g, rng, 7.0, 16.0, frac=0.9)
    pa = rng.uniform(0, 2 * np.pi)
    x0, y0 = _centre(g, rng, length)
    u, v = _frame(g, x0, y0, pa)
    s = np.abs(u) / length
    opening = rng.uniform(0.25, 0.6)  # half-width at the tip, in units of the length
    power = rng.uniform(0.5, 1.0)  # 1: conical, 0.5: parabolic wide-angle wind
    wall = opening * length * s**power
    thick = max(rng.uniform(0.5, 1.0) * g.beam, 0.04 * length)
    shell = np.exp(-0.5 * ((np.abs(v) - wall) / thick) ** 2)
    fill = rng.uniform(0.05, 0.3) * (np.abs(v) < wall)
    along = np.exp(-s / rng.uniform(0.5, 1.5)) * (s < 1.0) * (1 - np.exp(-((s / 0.08) ** 2)))
    ratio = np.where(u > 0, 1.0, rng.uniform(0.3, 1.0))  # red and blue lobes differ
    img = (shell + fill) * along * ratio
    img = img + rng.uniform(0.2, 1.0) * _gauss(u, v, 0.6 * g.beam, 0.6 * g.beam)
    return img.astype(np.float32), ModelParams(x0, y0, pa, 1.0, length, False)


def ring(g: Grid, rng: np.random.Generator) -> tuple[np.ndarray, ModelParams]:
    """A single narrow ring around an empty cavity (transition disc, shell), maybe lopsided."""
    r0 = _size(g, rng, 4.0, 12.0, frac=0.7)
    cos_i, pa = _incl(rng, 60.0), rng.uniform(0, np.pi)
    x0, y0 = _centre(g, rng, r0 * 1.3)
    u, v = _frame(g, x0, y0, pa, cos_i)
    width = max(rng.uniform(0.06, 0.2) * r0, 0.35 * g.beam)
    img = np.exp(-0.5 * ((np.hypot(u, v) - r0) / width) ** 2)
    if rng.random() < 0.4:  # azimuthal asymmetry (crescent, e.g. Oph IRS 48)
        phi = np.arctan2(v, u)
        img = img * (1 + rng.uniform(0.3, 0.9) * np.cos(phi - rng.uniform(0, 2 * np.pi)))
    if rng.random() < 0.3:  # a faint unresolved central source
        img = img + rng.uniform(0.05, 0.3) * _gauss(u, v * cos_i, 0.5 * g.beam, 0.5 * g.beam)
    return img.astype(np.float32), ModelParams(x0, y0, pa, cos_i, r0, True)


def filament(g: Grid, rng: np.random.Generator) -> tuple[np.ndarray, ModelParams]:
    """A long, curved, clumpy filament (sometimes with a branch) crossing the field."""
    img = np.zeros(g.x.shape, np.float32)
    width = rng.uniform(0.4, 1.2) * g.beam
    x0, y0 = _centre(g, rng, 0.0)
    heading = rng.uniform(0, 2 * np.pi)
    length = rng.uniform(1.3, 2.0) * g.radius
    pts = []
    for k in range(2 if rng.random() < 0.4 else 1):
        n = int(max(length, 8) / 0.3)
        turn = ndimage.gaussian_filter1d(rng.normal(0, 1, n), n / 8, mode="nearest")
        turn *= rng.uniform(0.6, 2.0) / (np.abs(turn).max() + 1e-9) / n * 4
        ang = heading + np.cumsum(turn)
        xs = np.cumsum(0.3 * np.cos(ang))
        ys = np.cumsum(0.3 * np.sin(ang))
        if k == 0:  # centre the main filament on (x0, y0)
            xs, ys = xs - xs[n // 2] + x0, ys - ys[n // 2] + y0
        else:  # a branch leaving the main filament at a random point
            n0 = len(pts[0][0])
            j = int(rng.integers(n0 // 5, 4 * n0 // 5))
            xs, ys = xs + pts[0][0][j], ys + pts[0][1][j]
        z = ndimage.gaussian_filter1d(rng.normal(0, 1, n), n / 15, mode="nearest")
        brightness = np.exp(0.5 * z / (z.std() + 1e-9))
        brightness /= brightness.mean()
        along = np.arange(n)
        for j in rng.integers(0, n, int(rng.integers(0, 4))):  # dense cores on the spine
            bump = np.exp(-0.5 * ((along - j) * 0.3 / rng.uniform(0.5, 1.5) / width) ** 2)
            brightness += rng.uniform(0.5, 2.0) * bump
        pts.append((xs, ys, brightness * (1.0 if k == 0 else rng.uniform(0.3, 0.7))))
        heading += rng.choice([-1, 1]) * rng.uniform(0.5, 1.2)
        length *= rng.uniform(0.3, 0.5)
    for xs, ys, w in pts:
        _deposit(img, xs, ys, w * 0.3)
    img = ndimage.gaussian_filter(img, width / 2.3548)
    return img, ModelParams(x0, y0, heading, 1.0, g.radius, False)


def double_lobed(g: Grid, rng: np.random.Generator) -> tuple[np.ndarray, ModelParams]:
    """A radio galaxy: compact core, jets, and two lobes with hot spots (FR I / FR II)."""
    arm = _size(g, rng, 6.0, 15.0, frac=0.8)
    pa = rng.uniform(0, np.pi)
    x0, y0 = _centre(g, rng, arm)
    img = np.zeros(g.x.shape, np.float32)
    fr2 = rng.random() < 0.6
    bend = np.radians(rng.uniform(0, 25.0))
    for side in (1.0, -1.0):
        a = pa + (0 if side > 0 else np.pi) + side * bend * rng.uniform(0.5, 1.0)
        d = arm * rng.uniform(0.7, 1.0)
        lx, ly = x0 + d * np.cos(a), y0 + d * np.sin(a)
        u, v = _frame(g, lx, ly, a)
        lobe_len = d * rng.uniform(0.25, 0.5)
        lobe = _gauss(u + 0.4 * lobe_len, v, lobe_len, lobe_len * rng.uniform(0.4, 0.8))
        img += rng.uniform(0.5, 1.0) * lobe
        if fr2:  # edge-brightened: a hot spot at the outer end of each lobe
            img += rng.uniform(0.5, 1.5) * _gauss(u, v, 0.5 * g.beam, 0.5 * g.beam)
        ju, jv = _frame(g, x0, y0, a)
        jet = np.exp(-0.5 * (jv / (0.3 * g.beam)) ** 2) * (ju > 0) * (ju < d)
        img += rng.uniform(0.0, 0.15 if fr2 else 0.4) * jet
    img += rng.uniform(0.1, 1.0) * _gauss(g.x - x0, g.y - y0, 0.4 * g.beam, 0.4 * g.beam)
    return img.astype(np.float32), ModelParams(x0, y0, pa, 1.0, arm, False)


#: The classes in a fixed order; the name is the label written to FITS and manifest.
MODELS: dict[str, Model] = {
    "point_sources": point_sources,
    "gaussian_blob": gaussian_blob,
    "ringed_disc": ringed_disc,
    "spiral": spiral,
    "edge_on_disc": edge_on_disc,
    "bipolar_outflow": bipolar_outflow,
    "ring": ring,
    "filament": filament,
    "double_lobed": double_lobed,
}

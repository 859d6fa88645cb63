"""What an interferometer does to a sky model: restoring beam, correlated noise, primary beam.

A CLEAN image is the sky convolved with the restoring beam (an elliptical
Gaussian, Högbom 1974, A&AS 15 417) in Jy/beam, plus thermal noise that the
same synthesis makes correlated on the scale of the beam, multiplied by the
antenna's primary-beam response (close to a Gaussian; ALMA's FWHM is about
1.13 λ/D) and blanked (NaN) where that response falls below a cut (CASA's
``pblimit``, 0.2 by default). Archive products come either as the flat-noise
image or divided by the primary beam (``.pbcor``), where the noise rises towards
the edge; both are drawn here.

CLEAN is never complete: the flux left in the residuals stays convolved with
the *dirty* beam, the Fourier transform of the (u, v) sampling of the array
(Thompson, Moran & Swenson 2017, *Interferometry and Synthesis in Radio
Astronomy*, ch. 10), which brings the stripes and sidelobes of real images. A
random array (12–43 antennas, centrally concentrated, with a short
Earth-rotation track) gives that sampling here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "Beam",
    "Observation",
    "convolve_beam",
    "correlated_noise",
    "draw_observation",
    "restore",
    "uv_sampling",
]

_FWHM_TO_SIGMA = 1.0 / np.sqrt(8.0 * np.log(2.0))


@dataclass(frozen=True)
class Beam:
    """An elliptical Gaussian restoring beam in pixels.

    Attributes:
        bmaj, bmin: full widths at half maximum of the major and minor axes [px].
        bpa: position angle of the major axis, degrees east of north, i.e.
            counter-clockwise from +y towards -x in a standard (east-left) image.
    """

    bmaj: float
    bmin: float
    bpa: float

    @property
    def fwhm(self) -> float:
        """Geometric-mean FWHM [px]."""
        return float(np.sqrt(self.bmaj * self.bmin))

    @property
    def area(self) -> float:
        """Beam solid angle in pixels, 2π σ_maj σ_min (pixels per beam)."""
        return float(2 * np.pi * self.bmaj * self.bmin * _FWHM_TO_SIGMA**2)

    def transfer(self, shape: tuple[int, int]) -> np.ndarray:
        """The beam's Fourier transform on the ``rfft2`` grid of ``shape``, 1 at zero frequency."""
        ky = np.fft.fftfreq(shape[0])[:, None]
        kx = np.fft.rfftfreq(shape[1])[None, :]
        t = np.radians(self.bpa)
        # unit vectors of the major and minor axes in (x, y) pixel coordinates
        ka = -kx * np.sin(t) + ky * np.cos(t)
        kb = kx * np.cos(t) + ky * np.sin(t)
        sa, sb = self.bmaj * _FWHM_TO_SIGMA, self.bmin * _FWHM_TO_SIGMA
        return np.exp(-2 * np.pi**2 * ((sa * ka) ** 2 + (sb * kb) ** 2))


@dataclass(frozen=True)
class Observation:
    """The instrument part of one synthetic image.

    Attributes:
        beam: the restoring beam.
        noise_rms: rms of the (flat) noise [Jy/beam].
        snr: peak of the beam-convolved sky over ``noise_rms``.
        pb_fwhm: primary-beam FWHM [px].
        pb_cut: primary-beam level below which pixels are NaN.
        pb_corrected: whether the image is divided by the primary beam.
        residual: fraction of the flux left uncleaned (seen through the dirty beam).
        sampling: the (u, v) sampling on the ``rfft2`` grid of the image,
            normalised so that the dirty beam peaks at 1.
    """

    beam: Beam
    noise_rms: float
    snr: float
    pb_fwhm: float
    pb_cut: float
    pb_corrected: bool
    residual: float = 0.0
    sampling: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def pb_radius(self) -> float:
        """Radius [px] at which the primary beam falls to ``pb_cut``."""
        return float(self.pb_fwhm / 2 * np.sqrt(np.log(1 / self.pb_cut) / np.log(2)))

    def primary_beam(self, size: int) -> np.ndarray:
        """The primary-beam response on a ``size``² grid centred on the image."""
        c = np.arange(size, dtype=np.float32) - (size - 1) / 2.0
        r2 = c[:, None] ** 2 + c[None, :] ** 2
        return np.exp(-4 * np.log(2) * r2 / self.pb_fwhm**2).astype(np.float32)


def draw_observation(rng: np.random.Generator, size: int) -> Observation:
    """Draw beam, noise, signal-to-noise ratio and primary beam for a ``size``² image.

    The beam FWHM spans 2.5–6 px scaled with the image (ALMA images use 3–7
    pixels per beam), axis ratio 0.5–1; the peak S/N is log-uniform in 20–300;
    the primary-beam cut radius is 44–52 % of the image width so that the
    corners are always blank and sometimes the edges too; 0–12 % of the flux
    stays uncleaned.
    """
    scale = size / 128.0
    bmaj = rng.uniform(2.5, 6.0) * scale
    beam = Beam(bmaj=bmaj, bmin=bmaj * rng.uniform(0.5, 1.0), bpa=rng.uniform(-90.0, 90.0))
    pb_cut = float(rng.choice([0.2, 0.2, 0.3, 0.5]))
    r_cut = rng.uniform(0.44, 0.52) * size
    pb_fwhm = 2 * r_cut / np.sqrt(np.log(1 / pb_cut) / np.log(2))
    return Observation(
        residual=float(rng.uniform(0.0, 0.12)),
        sampling=uv_sampling(rng, size, beam),
        beam=beam,
        noise_rms=float(10 ** rng.uniform(-5.0, -3.0)),
        snr=float(np.exp(rng.uniform(np.log(20.0), np.log(300.0)))),
        pb_fwhm=float(pb_fwhm),
        pb_cut=pb_cut,
        pb_corrected=bool(rng.random() < 0.5),
    )


def convolve_beam(sky: np.ndarray, beam: Beam) -> np.ndarray:
    """Convolve the last two axes of ``sky`` [Jy/pixel] with ``beam`` → Jy/beam.

    The kernel peaks at 1, so a point source of flux S becomes a beam of peak S.
    The convolution is circular (FFT); models keep their flux away from the edges.
    """
    shape = sky.shape[-2:]
    ft = np.fft.rfft2(sky) * (beam.transfer(shape) * beam.area)
    return np.fft.irfft2(ft, s=shape).astype(np.float32)


def correlated_noise(rng: np.random.Generator, shape: tuple[int, ...], beam: Beam) -> np.ndarray:
    """Unit-rms Gaussian noise convolved with the beam (the last two axes are the image)."""
    white = rng.standard_normal(shape, dtype=np.float32)
    t = beam.transfer(shape[-2:])
    # rms after filtering (Parseval): sqrt(mean |T|²) over the full spectrum; the
    # half spectrum of rfft2 counts every column twice except zero and Nyquist
    weight = np.full(t.shape[1], 2.0)
    weight[0] = 1.0
    if shape[-1] % 2 == 0:
        weight[-1] = 1.0
    rms = np.sqrt(np.sum(t**2 * weight) / (shape[-2] * shape[-1]))
    out = np.fft.irfft2(np.fft.rfft2(white) * (t / rms), s=shape[-2:])
    return out.astype(np.float32)


def uv_sampling(rng: np.random.Generator, size: int, beam: Beam) -> np.ndarray:
    """A random interferometer's (u, v) sampling on the ``rfft2`` grid of a ``size``² image.

    Antennas lie in a centrally concentrated disc; every baseline (both signs)
    is tracked over up to ±35° of hour angle and foreshortened by the source's
    declination. The coverage is stretched so that its extent matches ``beam``
    (longest baseline ≈ 1 / FWHM along each axis, which makes the dirty
    beam's main lobe about as large as the clean beam) and weighted by the square
    root of the hits per cell (between natural and uniform weighting).

    Returns:
        Weights whose inverse ``irfft2`` is the dirty beam, peak 1 at pixel (0, 0).
    """
    n_ant = int(rng.integers(12, 44))
    r = rng.random(n_ant) ** 1.5
    phi = rng.uniform(0, 2 * np.pi, n_ant)
    ax, ay = r * np.cos(phi), r * np.sin(phi)
    i, j = np.triu_indices(n_ant, 1)
    bu, bv = ax[i] - ax[j], ay[i] - ay[j]
    hours = np.linspace(-1, 1, 8) * rng.uniform(0.0, 0.6)
    squash = rng.uniform(0.5, 1.0)
    u = (bu[:, None] * np.cos(hours) - bv[:, None] * np.sin(hours)).ravel()
    v = ((bu[:, None] * np.sin(hours) + bv[:, None] * np.cos(hours)) * squash).ravel()
    scale = 1.0 / max(np.hypot(u, v).max(), 1e-9)
    ka, kb = v * scale / beam.bmaj, u * scale / beam.bmin  # along the major, minor axes
    t = np.radians(beam.bpa)
    kx = -ka * np.sin(t) + kb * np.cos(t)
    ky = ka * np.cos(t) + kb * np.sin(t)
    kx, ky = np.concatenate([kx, -kx]), np.concatenate([ky, -ky])
    cells = (np.rint(ky * size).astype(int) % size) * size + np.rint(kx * size).astype(int) % size
    weights = np.sqrt(np.bincount(cells, minlength=size * size).reshape(size, size))
    weights *= size * size / weights.sum()
    return weights[:, : size // 2 + 1]


def restore(sky: np.ndarray, obs: Observation) -> np.ndarray:
    """The CLEAN image of ``sky`` [Jy/pixel] → Jy/beam (last two axes are the image).

    ``(1 - residual)`` of the flux is restored with the clean beam, the rest is
    seen through the dirty beam of ``obs.sampling``.
    """
    shape = sky.shape[-2:]
    transfer = obs.beam.transfer(shape) * obs.beam.area
    if obs.sampling is not None and obs.residual > 0:
        transfer = (1 - obs.residual) * transfer + obs.residual * obs.sampling
    return np.fft.irfft2(np.fft.rfft2(sky) * transfer, s=shape).astype(np.float32)

"""What a corrected SDSS frame holds besides the sky's sources: background structure and cosmic rays.

- **Background structure.** The sky subtraction of SDSS corrected frames leaves gradients and scattered-light
  glows over arcminutes: the range of 256 x 256 px block medians is 0.0041 / 0.0057 / 0.0081 nanomaggies per
  pixel in g / r / i (medians over the shared frames, 0.0052-0.0227 in r; BENCHMARKS.md, "Real SDSS frames
  against the simulator"). Each field draws one shape for all bands, a plane of random direction plus
  Poisson(1) Gaussian glows (sigma 120-300 px, 0.8-2', centred anywhere within a quarter field of the
  frame, relative heights 0.5-1.5), scaled so that the range of its 256 x 256 px block means (the
  measurement's blocks) in r is log-normal about 0.0057 nanomaggies (sigma_ln 0.5) and in g and i by the
  square root of their sky relative to r (0.66 and 1.32, close to the measured 0.72 and 1.42), each band with
  a 20 % jitter; its median is zero, as the frames' is.
- **Cosmic rays.** SDSS's ``photo`` interpolates over the cosmic rays it finds, but a few per frame remain
  (~4 in a 2048 x 1489 frame, issue 15's count on real frames): straight tracks 1-8 px long at any angle,
  one pixel wide and not blurred by the PSF, independent in each band (each CCD is hit on its own), peaking at
  5-100 times the band's pixel noise (log-uniform).
"""
import cv2
import numpy as np

from .instrument import BANDS, pixel_noise, sky_level

BACKGROUND_RANGE_R = 0.0057  # nanomaggies per pixel, median range of block medians on real r frames
_BLOCK_PX = 256
_BACKGROUND_SIGMA_LN = 0.5
_BAND_JITTER_LN = 0.2
_GLOW_SIGMA_PX = (120.0, 300.0)
_GLOW_HEIGHT = (0.5, 1.5)
_GLOWS_PER_FIELD = 1.0
COSMIC_RAYS_PER_FRAME = 4.0  # per SDSS frame of 2048 x 1489 px
_SDSS_FRAME_PIXELS = 2048 * 1489
_COSMIC_RAY_LENGTH_PX = (1.0, 8.0)
_COSMIC_RAY_PEAK_SIGMA = (5.0, 100.0)


def draw_background(rng, nx, ny, bands=BANDS):
    """Smooth background structure of one field: ``{band: (ny, nx) float64 array}`` in nanomaggies per pixel.

    The same shape in every band (module docstring); ``rng`` is used the same way whatever ``bands`` holds.
    """
    y, x = np.mgrid[0:ny, 0:nx].astype(np.float64)
    direction = rng.uniform(0.0, 2.0 * np.pi)
    shape = (x * np.cos(direction) + y * np.sin(direction)) / max(nx, ny) * rng.uniform(0.0, 1.0)
    for _ in range(rng.poisson(_GLOWS_PER_FIELD)):
        centre_x = rng.uniform(-0.25 * nx, 1.25 * nx)
        centre_y = rng.uniform(-0.25 * ny, 1.25 * ny)
        sigma = rng.uniform(*_GLOW_SIGMA_PX)
        shape += rng.uniform(*_GLOW_HEIGHT) * np.exp(-0.5 * ((x - centre_x) ** 2 + (y - centre_y) ** 2) / sigma**2)
    blocks = cv2.resize(shape, (max(nx // _BLOCK_PX, 2), max(ny // _BLOCK_PX, 2)), interpolation=cv2.INTER_AREA)
    span = np.ptp(blocks)
    shape = (shape - np.median(shape)) / span if span > 0 else np.zeros_like(shape)
    range_r = BACKGROUND_RANGE_R * np.exp(_BACKGROUND_SIGMA_LN * rng.standard_normal())
    jitter = {band: np.exp(_BAND_JITTER_LN * rng.standard_normal()) for band in BANDS}
    return {band: shape * range_r * np.sqrt(sky_level(band) / sky_level("r")) * (1.0 if band == "r" else jitter[band])
            for band in bands}


def draw_cosmic_rays(rng, nx, ny, band):
    """An image (nanomaggies, float64) holding the cosmic rays of one frame of ``band`` (module docstring)."""
    image = np.zeros((ny, nx), dtype=np.float64)
    for _ in range(rng.poisson(COSMIC_RAYS_PER_FRAME * nx * ny / _SDSS_FRAME_PIXELS)):
        x0, y0 = rng.uniform(0, nx), rng.uniform(0, ny)
        length = rng.uniform(*_COSMIC_RAY_LENGTH_PX)
        angle = rng.uniform(0.0, np.pi)
        peak = pixel_noise(band) * np.exp(rng.uniform(*np.log(_COSMIC_RAY_PEAK_SIGMA)))
        end = (int(round(x0 + length * np.cos(angle))), int(round(y0 + length * np.sin(angle))))
        cv2.line(image, (int(round(x0)), int(round(y0))), end, float(peak), thickness=1, lineType=cv2.LINE_8)
    return image

"""The PSF of imaging, measured on the image's own stars.

Two users: the injection (`deepcee_d2.synthetic.inject.measure_psf`, the PSF image it draws galaxies into a
frame with: `stacked_psf`) and the red-sequence photometry (`deepcee_d2.redsequence.measure_photometry`, whose aperture
colours need the same PSF in every band).

- **The stellar locus** (`stellar_locus`): among isolated, bright, round sources, stars share the smallest
  size (galaxies are wider, saturated cores flat-topped and wider). Starting at the median of the smallest
  third, the sources within 10 % of the running median are kept.
- **Aperture corrections** (`aperture_corrections`): a colour read in a fixed aperture from bands of
  different seeing is biased, because the band with the wider PSF loses more of a source's light out of the
  aperture (SDSS field 005194-2-0540, r PSF 1.42 times its i PSF: its stars' aperture colours 0.05 mag
  redder; BENCHMARKS.md "Aperture-corrected colours"). The image's stars give each band's share of a point
  source's light in the aperture (of the light within a reference circle that holds nearly all of it),
  compared star by star with one band's: dividing the aperture fluxes by it puts every band on one PSF. Compact
  galaxies (the red sequence's ellipticals) lose the same share as stars (to 0.004 mag in the colours),
  extended discs less (to 0.02). Convolving the sharper bands to the widest did as well for ellipticals, worse
  for discs, and cost clusters their red-sequence confirmation (BENCHMARKS.md, "PSF-matched colours").
- **Stars and galaxies** (`separate_point_sources`): the concentration ``c = m(1") - m(3")`` (r aperture
  magnitudes) is the same for every point source of an image and larger for resolved galaxies. The image's
  own locus ``c*`` is the mode of c among 16 < r < 19.5 sources (where stars are at least as many as galaxies
  at high latitude, and unsaturated): the biweight location of the third of them with the smallest c, and its
  width ``w`` the biweight scale of those below ``c*`` mirrored about it (the side galaxies do not reach). A
  source is a galaxy when ``c > c* + 3 sqrt(w^2 + sigma_c^2)`` (sigma_c: its own error of c), a point source
  when ``|c - c*|`` is within that and sigma_c is at most 0.05 mag; the rest is neither: more concentrated than
  a star (cosmic rays, hot pixels), or too faint to tell (on the synthetic sky a quarter of the galaxies of
  r 20-21 lie within 3 sigma_c of the locus, none of r < 20 within the 0.05 mag cap). The realism bench
  (`benchmarks/bench_sky_realism.py`) counts stars and galaxies with it, and the red-sequence estimator leaves
  point sources out of its counts (``DEEPCEE.REDSHIFT.EXCLUDE_POINT_SOURCES``).
"""
import math
from dataclasses import dataclass

import numpy as np
from astropy.stats import biweight_location, biweight_scale

# Sources within this fraction of the locus' running median are stars.
LOCUS_WIDTH = 0.10
_LOCUS_ITERATIONS = 10
# Star/galaxy separation (`separate_point_sources`): the concentration's apertures, the r range of the sources
# that find the locus and the fewest of them, the tolerance in units of the locus' width and the source's error.
CONCENTRATION_RADII_ARCSEC = (1.0, 3.0)
CONCENTRATION_LOCUS_R_RANGE = (16.0, 19.5)
MIN_CONCENTRATION_LOCUS_SOURCES = 10
SEPARATION_NSIGMA = 3.0
MAX_POINT_CONCENTRATION_ERR = 0.05
# A wider locus (mag) means the 3" aperture holds neighbours (a crowded field): the separation is unreliable.
MAX_CONCENTRATION_LOCUS_WIDTH = 0.1


def stellar_locus(sizes, min_stars, width=LOCUS_WIDTH):
    """The stars among sources of ``sizes`` (any measure of width: a Gaussian fit's sigma, a half-light radius).

    Parameters
    ----------
    sizes : (n,) array
        One size per isolated, bright, round source; NaN for a failed measurement.
    min_stars : int
        Fewest sources that make a locus.
    width : float
        Relative half-width of the locus.

    Returns
    -------
    locus : float
        The stars' median size; NaN with fewer than ``min_stars`` finite sizes.
    members : (n,) bool array
        The sources on the locus (none when there is no locus).
    """
    sizes = np.asarray(sizes, dtype=float)
    finite = np.sort(sizes[np.isfinite(sizes)])
    members = np.zeros(len(sizes), dtype=bool)
    if len(finite) < min_stars:
        return math.nan, members
    locus = float(np.median(finite[: max(len(finite) // 3, min_stars)]))
    for _ in range(_LOCUS_ITERATIONS):
        members = np.abs(sizes - locus) <= width * locus
        if not members.any():  # the median moved off every source: no locus
            return math.nan, members
        locus = float(np.median(sizes[members]))
    return locus, members


@dataclass(frozen=True)
class PointSourceSeparation:
    """`separate_point_sources` of one image's sources.

    Attributes
    ----------
    galaxy, point : (n,) bool arrays
        Resolved sources, and sources on the stellar locus (neither: more concentrated than a star, too faint
        to tell, or no concentration).
    locus, width : float
        The locus ``c*`` and its width ``w`` (mag).
    """

    galaxy: np.ndarray
    point: np.ndarray
    locus: float
    width: float

    @property
    def reliable(self):
        """Whether the locus is narrow enough to tell stars from galaxies (not a crowded field's blends)."""
        return self.width <= MAX_CONCENTRATION_LOCUS_WIDTH


def separate_point_sources(concentration, concentration_err, r_mag):
    """Stars and galaxies of one image by their concentration against the image's own stellar locus (module
    docstring).

    Parameters
    ----------
    concentration, concentration_err : (n,) arrays
        ``m(1") - m(3")`` in r (`CONCENTRATION_RADII_ARCSEC`) and its error from the sky noise, mag; NaN where
        a flux is not positive (never a galaxy or a point source).
    r_mag : (n,) array
        Total r magnitudes.

    Returns
    -------
    PointSourceSeparation

    Raises
    ------
    ValueError
        Fewer than `MIN_CONCENTRATION_LOCUS_SOURCES` sources in `CONCENTRATION_LOCUS_R_RANGE` to find the locus.
    """
    c = np.asarray(concentration, dtype=float)
    r_mag = np.asarray(r_mag, dtype=float)
    low, high = CONCENTRATION_LOCUS_R_RANGE
    bright = np.sort(c[(r_mag > low) & (r_mag < high) & np.isfinite(c)])
    if len(bright) < MIN_CONCENTRATION_LOCUS_SOURCES:
        raise ValueError(f"only {len(bright)} sources at {low} < r < {high} for the stellar locus (need "
                         f"{MIN_CONCENTRATION_LOCUS_SOURCES})")
    locus = float(biweight_location(bright[: max(len(bright) // 3, MIN_CONCENTRATION_LOCUS_SOURCES)]))
    below = bright[bright <= locus]
    width = float(biweight_scale(np.concatenate([below, 2 * locus - below])))
    with np.errstate(invalid="ignore"):
        tolerance = SEPARATION_NSIGMA * np.hypot(width, np.asarray(concentration_err, dtype=float))
        galaxy = c > locus + tolerance
        point = (np.abs(c - locus) <= tolerance) & (np.asarray(concentration_err) <= MAX_POINT_CONCENTRATION_ERR)
    return PointSourceSeparation(galaxy, point, locus, width)


def aperture_corrections(images, x, y, aperture_radius, reference_radius, reference_band="r"):
    """Each band's share of a point source's light in an aperture, relative to one band's, from stars.

    Parameters
    ----------
    images : dict of str -> (ny, nx) float64 array
        Sky-subtracted bands on one pixel grid.
    x, y : (n,) arrays
        0-based pixel positions of isolated stars (`stellar_locus`), their reference circles on the image,
        bright enough that their shares are precise.
    aperture_radius, reference_radius : float
        Radii (pixels) of the aperture and of the circle holding nearly all of a star's light.
    reference_band : str
        The band whose PSF the others are put on.

    Returns
    -------
    dict of str -> float
        The median over the stars of (the band's share of the star's light within ``reference_radius`` that
        lies within ``aperture_radius``) / (``reference_band``'s share); exactly 1 for ``reference_band``.
        Bands are compared star by star: a star's share varies by ~2 % with its surroundings (a neighbour's
        wing, the sky under it) alike in every band, which the ratio cancels.

    Raises
    ------
    ValueError
        No star, or no ``reference_band`` among the images.
    """
    import sep

    if not len(x):
        raise ValueError("aperture_corrections: no star to measure the bands' PSFs on")
    if reference_band not in images:
        raise ValueError(f"aperture_corrections: no {reference_band} image among {sorted(images)}")
    x, y = np.asarray(x, float), np.asarray(y, float)
    shares = {band: sep.sum_circle(image, x, y, aperture_radius, subpix=5)[0]
              / sep.sum_circle(image, x, y, reference_radius, subpix=5)[0] for band, image in images.items()}
    return {band: float(np.median(share / shares[reference_band])) for band, share in shares.items()}


def stacked_psf(image, x, y, half, core_radius):
    """The PSF of an image as the median of its stars' normalised stamps.

    Each star's stamp is shifted to put the star on the middle pixel (cubic spline) and scaled to unit light
    within ``half`` pixels; the median of the stamps is kept within ``core_radius`` and replaced beyond it by
    its median in 1-pixel rings (the faint wings carry the sky noise of every stamp; the rings average it
    away), set to zero where negative and beyond ``half``, and scaled to unit sum. The pixel response is in it,
    as in the stars.

    Parameters
    ----------
    image : (ny, nx) array
        Sky-subtracted image.
    x, y : (n,) arrays
        0-based pixel positions of isolated stars, each at least ``half + 2`` pixels from every edge.
    half : int
        Half side of the stamp (pixels).
    core_radius : float
        Radius (pixels) within which the stamp is kept as stacked.

    Returns
    -------
    (2 half + 1, 2 half + 1) float64 array

    Raises
    ------
    ValueError
        No star.
    """
    from scipy import ndimage

    if not len(x):
        raise ValueError("stacked_psf: no star")
    x, y = np.asarray(x, float), np.asarray(y, float)
    side = 2 * half + 1
    radius = np.hypot(*(np.indices((side, side)) - half))
    inside = radius <= half
    stamps = []
    for a, b, dx, dy in zip(np.rint(x).astype(int), np.rint(y).astype(int), x - np.rint(x), y - np.rint(y)):
        stamp = np.asarray(image[b - half - 2:b + half + 3, a - half - 2:a + half + 3], dtype=np.float64)
        # 2 pixels more on each side for the spline's shift
        stamp = ndimage.shift(stamp, (-dy, -dx), order=3, mode="nearest")[2:-2, 2:-2]
        stamps.append(stamp / stamp[inside].sum())
    stacked = np.median(stamps, axis=0)
    rings = np.rint(radius).astype(int)
    profile = np.array([np.median(stacked[rings == k]) for k in range(half + 1)])
    wings = radius > core_radius
    stacked[wings & inside] = profile[rings[wings & inside]]
    stacked[~inside] = 0.0
    stacked = np.clip(stacked, 0.0, None)
    return stacked / stacked.sum()

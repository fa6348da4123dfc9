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
"""
import math

import numpy as np

# Sources within this fraction of the locus' running median are stars.
LOCUS_WIDTH = 0.10
_LOCUS_ITERATIONS = 10


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

"""The PSF of imaging, measured on the image's own stars.

Two users: the injection (`deepcee_d2.synthetic.inject.measure_psf`, the PSF image it draws galaxies into a
frame with: `stacked_psf`) and the red-sequence photometry (`deepcee_d2.redsequence.measure_photometry`, whose aperture
colours need the same PSF in every band).

- **The stellar locus** (`stellar_locus`): among isolated, bright, round sources, stars share the smallest
  size (galaxies are wider, saturated cores flat-topped and wider). Starting at the median of the smallest
  third, the sources within 10 % of the running median are kept.
- **Matched PSFs** (`match_psfs`): a colour read in a fixed aperture from bands of different seeing is biased,
  because the band with the wider PSF loses more of a source's light out of the aperture (SDSS field
  005194-2-0540, r PSF 1.42 times its i PSF: its stars' aperture colours 0.05 mag redder; BENCHMARKS.md
  "PSF-matched colours", where matching is measured on clusters injected into it). Each band but the widest is
  convolved with the Gaussian that makes its stars put the same share of their light into the aperture as
  the widest band's do (the share within a reference circle that holds nearly all of a star's light,
  compared star by star: the median of their ratios). The quantity matched is the one the colours read, so
  the Gaussian's mismatch to the Moffat-like core and wings of real PSFs matters only through the sources'
  profiles: compact galaxies (the red sequence's ellipticals) are matched as stars are, extended discs less
  well (BENCHMARKS.md, "PSF-matched colours").
"""
import math

import cv2
import numpy as np

# Sources within this fraction of the locus' running median are stars.
LOCUS_WIDTH = 0.10
_LOCUS_ITERATIONS = 10
# Gaussians are searched up to this many aperture radii (sigma): a band this much sharper than another is no
# longer imaging of one sky. Bisection steps: 2^-16 of that range.
_MAX_KERNEL_APERTURES, _BISECTIONS = 1.0, 16
# opencv's GaussianBlur truncates a float kernel at 4 sigma; stamps leave that room around the reference circle.
_KERNEL_TRUNCATE = 4.0


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


def stamp_half_size(aperture_radius, reference_radius):
    """Half side (pixels) of the square stamps `match_psfs` cuts around its stars: room for the widest kernel
    it tries around the reference circle. A star needs this many pixels to every edge of the image."""
    return int(math.ceil(reference_radius + _KERNEL_TRUNCATE * _MAX_KERNEL_APERTURES * aperture_radius)) + 1


def _stamps(image, x, y, half):
    """The stamps of ``image`` around ``(x, y)`` stacked into one column (one opencv call blurs them all: a
    kernel within its truncation does not reach from one stamp into its neighbour's reference circle) and
    the stars' positions in it."""
    side = 2 * half + 1
    x0, y0 = np.rint(x).astype(int), np.rint(y).astype(int)
    column = np.concatenate([image[b - half:b + half + 1, a - half:a + half + 1] for a, b in zip(x0, y0)])
    return np.ascontiguousarray(column, dtype=np.float64), half + (x - x0), np.arange(len(x)) * side + half + (y - y0)


def _aperture_shares(column, x, y, aperture_radius, reference_radius, sigma=0.0):
    """Each star's share of its light within ``reference_radius`` that lies within ``aperture_radius``, after a
    Gaussian of ``sigma`` pixels (none at 0)."""
    import sep

    if sigma > 0:
        column = cv2.GaussianBlur(column, (0, 0), sigma)
    inner = sep.sum_circle(column, x, y, aperture_radius, subpix=5)[0]
    outer = sep.sum_circle(column, x, y, reference_radius, subpix=5)[0]
    return inner / outer


def match_psfs(images, x, y, aperture_radius, reference_radius):
    """Convolve the bands of one image so that its stars put the same share of their light into an aperture.

    Parameters
    ----------
    images : dict of str -> (ny, nx) float64 array
        Sky-subtracted bands on one pixel grid.
    x, y : (n,) arrays
        0-based pixel positions of stars (`stellar_locus`), each at least `stamp_half_size` pixels from every
        edge, bright enough that their shares are precise.
    aperture_radius, reference_radius : float
        Radii (pixels) of the aperture and of the circle holding nearly all of a star's light.

    Returns
    -------
    matched : dict of str -> (ny, nx) array
        The bands, each convolved with its Gaussian (the widest band, and any band already matched, as given).
    kernels : dict of str -> float
        Sigma (pixels) of each band's Gaussian, 0 for those left as given.
    shares : dict of str -> float
        Each band's median share over the stars before the convolution.

    Raises
    ------
    ValueError
        No star.
    """
    if not len(x):
        raise ValueError("match_psfs: no star to match the bands' PSFs on")
    half = stamp_half_size(aperture_radius, reference_radius)
    columns = {band: _stamps(image, np.asarray(x, float), np.asarray(y, float), half) for band, image in images.items()}
    star_shares = {band: _aperture_shares(*column, aperture_radius, reference_radius) for band, column in columns.items()}
    # Bands are compared star by star: a star's shares vary by ~2 % with its surroundings (a neighbour's wing,
    # the sky under it) alike in every band, which the ratio cancels.
    first = next(iter(star_shares.values()))
    target = min(star_shares, key=lambda band: np.median(star_shares[band] / first))
    matched, kernels = {}, {}
    for band, image in images.items():
        def excess(sigma):
            shares = _aperture_shares(*columns[band], aperture_radius, reference_radius, sigma)
            return float(np.median(shares / star_shares[target])) - 1.0

        kernels[band] = 0.0
        if band != target and excess(0.0) > 0:
            low, high = 0.0, _MAX_KERNEL_APERTURES * aperture_radius
            for _ in range(_BISECTIONS):  # the share falls as the kernel widens
                middle = 0.5 * (low + high)
                low, high = (middle, high) if excess(middle) > 0 else (low, middle)
            kernels[band] = 0.5 * (low + high)
        matched[band] = cv2.GaussianBlur(image, (0, 0), kernels[band]) if kernels[band] > 0 else image
    return matched, kernels, {band: float(np.median(shares)) for band, shares in star_shares.items()}


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
    column, _, _ = _stamps(image, x, y, half + 2)  # 2 pixels more for the spline's shift
    stamps = []
    for stamp, dx, dy in zip(column.reshape(len(x), side + 4, side + 4), x - np.rint(x), y - np.rint(y)):
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

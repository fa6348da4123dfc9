"""Sky geometry for the whole package: pixel <-> sky, cutout grids, image footprints, pairs and merging.

Data, evaluation and survey all measure the sky here, so each rule has one home:

- **Pixels.** detectron2 box coordinates are continuous: pixel ``i`` spans ``[i, i + 1)``, so its centre is
  ``i + 0.5``. astropy's WCS uses 0-based pixel indices with the centre of pixel ``i`` at ``i``. The
  half-pixel shift lives in `sky_to_box_xy` / `box_xy_to_sky` and nowhere else.
- **Grids.** `cutout_grid` is the north-up, east-left TAN grid every cutout is made on.
- **Footprints.** `corners_sky`, `centre_and_radius` and `footprints_overlap` say where an image lies.
- **Pairs.** `sky_pairs` finds all pairs within an angle, or within a proper length at the redshifts of one
  side (always the ``b`` side); a pair exactly at the radius is inside (``<=``). The evaluator's 100 kpc
  matching, the catalogue cross-matches and `merge_by_sky_distance` (the survey's de-duplication) stand on it.
"""
import warnings
from typing import NamedTuple

import astropy.units as u
import numpy as np
from astropy.coordinates import Angle, SkyCoord, search_around_sky
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from .cosmology import DEFAULT_COSMOLOGY, angular_size, proper_length

SDSS_PIXEL_SCALE = 0.396 * u.arcsec

# Offset from astropy's 0-based pixel-centre convention to detectron2's continuous box coordinates.
_BOX_MINUS_ASTROPY = 0.5

# A pair exactly at the radius is inside. Trigonometry rounds a separation built to equal the radius by a
# few parts in 1e13, so the comparison allows this relative slack (1e-7 kpc at 100 kpc): rounding noise
# must not decide a match, and nothing physical is this close to the boundary.
BOUNDARY_RTOL = 1e-9


# ---- pixel <-> sky ----

def celestial_wcs(header, source="image"):
    """Return the celestial `~astropy.wcs.WCS` of a FITS header (or its string), or raise naming ``source``.

    astropy's `~astropy.wcs.FITSFixedWarning` (it repaired a non-standard keyword, e.g. the ``DATE-OBS`` and
    ``RADECSYS`` of every SDSS frame) is silenced here: the repair is what we want, and users read the
    warnings as errors.

    Raises
    ------
    ValueError
        When the header has no celestial WCS.
    """
    if isinstance(header, str):
        header = fits.Header.fromstring(header)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(header).celestial
    if not wcs.has_celestial or wcs.naxis != 2:
        raise ValueError(f"{source}: has no celestial WCS (CTYPE1/2, CRVAL, CRPIX and CD or CDELT keys)")
    return wcs


def sky_to_box_xy(wcs, coord):
    """Sky position(s) -> detectron2 continuous pixel coordinates ``(x, y)`` in the image of ``wcs``."""
    x, y = wcs.world_to_pixel(coord)
    return np.asarray(x) + _BOX_MINUS_ASTROPY, np.asarray(y) + _BOX_MINUS_ASTROPY


def box_xy_to_sky(wcs, x, y):
    """detectron2 continuous pixel coordinates (e.g. box centres) -> `~astropy.coordinates.SkyCoord`."""
    return wcs.pixel_to_world(np.asarray(x) - _BOX_MINUS_ASTROPY, np.asarray(y) - _BOX_MINUS_ASTROPY)


def box_centres(boxes_xyxy):
    """Centres ``(x, y)`` of an ``(N, 4)`` array of XYXY boxes."""
    boxes = np.asarray(boxes_xyxy, dtype=float).reshape(-1, 4)
    return (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2


# ---- grids and footprints ----

def cutout_grid(centre, size, pixel_scale=SDSS_PIXEL_SCALE):
    """North-up, east-left TAN grid of ``size x size`` pixels centred on ``centre``.

    Parameters
    ----------
    centre : `~astropy.coordinates.SkyCoord`
        Sky position of the image centre (the reference point, at FITS pixel ``(size + 1) / 2``).
    size : int
        Pixels on a side.
    pixel_scale : `~astropy.units.Quantity` [angle]
        Angular size of a pixel.
    """
    centre = centre.icrs
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.cunit = ["deg", "deg"]
    wcs.wcs.radesys = "ICRS"
    wcs.wcs.crval = [centre.ra.deg, centre.dec.deg]
    wcs.wcs.crpix = [(size + 1) / 2, (size + 1) / 2]
    scale = pixel_scale.to_value(u.deg)
    wcs.wcs.cdelt = [-scale, scale]
    wcs.pixel_shape = (size, size)
    wcs.wcs.set()
    return wcs


def corners_sky(wcs, shape):
    """Sky positions of the outer corners of an image of ``shape`` (rows, columns): bottom-left,
    bottom-right, top-right, top-left of its pixel grid."""
    height, width = shape
    return wcs.pixel_to_world([-0.5, width - 0.5, width - 0.5, -0.5], [-0.5, -0.5, height - 0.5, height - 0.5])


def centre_and_radius(wcs, shape):
    """Sky centre of an image of ``shape`` (rows, columns) and the angle from it to the farthest corner."""
    height, width = shape
    centre = wcs.pixel_to_world((width - 1) / 2, (height - 1) / 2)
    return centre, centre.separation(corners_sky(wcs, shape)).max()


def footprints_overlap(wcs, shape, grid):
    """Whether an image of ``shape`` (rows, columns) with ``wcs`` and the image of ``grid`` (a WCS with its
    ``pixel_shape``) overlap on the sky.

    The grid's corners, taken into the image's pixels, bound a box that is compared with the image's extent.
    Corner containment (astropy's ``footprint_contains``) is not enough: a 2000 px square cutout on a
    2048 x 1489 SDSS frame overlaps it with no corner of either inside the other. The box is conservative:
    a rotated grid that only meets the image's corner region may count as overlapping (it then adds no pixels).
    """
    x, y = (np.asarray(v) for v in wcs.world_to_pixel(corners_sky(grid, grid.array_shape)))
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return False  # a corner on the far side of the image's projection
    height, width = shape
    return x.max() >= -0.5 and x.min() <= width - 0.5 and y.max() >= -0.5 and y.min() <= height - 0.5


# ---- pairs within a radius, and merging ----

class SkyPairs(NamedTuple):
    """Pairs ``(coords_a[index_a[k]], coords_b[index_b[k]])`` within a radius, nearest first."""

    index_a: np.ndarray
    index_b: np.ndarray
    #: Angular separation of each pair.
    separation: Angle
    #: Separation in the radius' kind of unit: an angle, or a proper length at the redshift of the b side.
    distance: u.Quantity


def as_coords_array(coords, name):
    """``coords`` as a 1-D `~astropy.coordinates.SkyCoord` (a scalar becomes one position); raise naming
    ``name`` for anything else."""
    if not isinstance(coords, SkyCoord):
        raise TypeError(f"{name}: expected an astropy SkyCoord, got {type(coords).__name__}")
    return coords.reshape((1,)) if coords.isscalar else coords.reshape((-1,))


def within(distance, radius):
    """The one boundary rule: inside when ``distance <= radius`` (inclusive, up to BOUNDARY_RTOL)."""
    return distance <= radius * (1 + BOUNDARY_RTOL)


def sky_pairs(coords_a, coords_b, radius, redshift=None, cosmology=DEFAULT_COSMOLOGY):
    """All pairs of positions closer than ``radius`` on the sky.

    With an angular ``radius`` the pairs are those within that angle. With a length (e.g. ``100 * u.kpc``)
    they are those whose angular separation subtends at most that *proper* length at the redshift of the
    ``b`` side (``redshift[j]`` for ``coords_b[j]``), in ``cosmology``. A pair exactly at the radius is
    inside (the comparison is ``<=``, with a relative slack of ``BOUNDARY_RTOL`` for rounding).

    Parameters
    ----------
    coords_a, coords_b : `~astropy.coordinates.SkyCoord`
        Positions; scalars count as one position. Either may be empty.
    radius : `~astropy.units.Quantity` [angle or length]
        The largest separation: an angle, or a proper transverse length (then ``redshift`` is required).
    redshift : float or array_like, optional
        Redshift of each ``coords_b`` position (or one for all), finite and > 0; only with a length radius.
    cosmology : `~astropy.cosmology.FLRW`
        Cosmology for the length <-> angle conversion.

    Returns
    -------
    SkyPairs
        ``index_a``, ``index_b`` (int arrays), ``separation`` (arcsec) and ``distance`` (in the unit of
        ``radius``), sorted by distance, then ``index_a``, then ``index_b``.

    Raises
    ------
    ValueError
        For a radius that is neither an angle nor a length, a length without redshifts, an angle with
        redshifts, or redshifts that are not finite and positive or do not match ``coords_b``.
    """
    coords_a = as_coords_array(coords_a, "coords_a")
    coords_b = as_coords_array(coords_b, "coords_b")
    radius = u.Quantity(radius)
    if not radius.isscalar or not np.isfinite(radius.value) or radius.value < 0:
        raise ValueError(f"radius must be one finite, non-negative quantity, got {radius}")
    if radius.unit.physical_type == "angle":
        if redshift is not None:
            raise ValueError("an angular radius takes no redshift; give the radius as a length (e.g. kpc)")
        search_radius = radius
    elif radius.unit.physical_type == "length":
        if redshift is None:
            raise ValueError(f"a radius of {radius} is a proper length: the redshifts of coords_b are needed")
        redshift = np.asarray(redshift, dtype=float).reshape(-1)
        if len(redshift) not in (1, len(coords_b)):
            raise ValueError(f"{len(redshift)} redshifts for {len(coords_b)} positions of coords_b")
        redshift = np.broadcast_to(redshift, (len(coords_b),))
        if not np.all(np.isfinite(redshift) & (redshift > 0)):
            raise ValueError(f"redshifts must be finite and > 0 to convert {radius} into an angle, got "
                             f"{redshift[~(np.isfinite(redshift) & (redshift > 0))][:5]}")
        search_radius = angular_size(radius, redshift, cosmology).max() if len(coords_b) else 0 * u.arcsec
    else:
        raise ValueError(f"radius must be an angle or a length, got {radius}")

    if len(coords_a) == 0 or len(coords_b) == 0:
        empty = np.zeros(0, dtype=int)
        return SkyPairs(empty, empty.copy(), Angle(np.zeros(0), u.arcsec), np.zeros(0) * radius.unit)

    # The KD-tree search works on chords; a little margin keeps pairs at the boundary for the exact test below.
    index_a, index_b, separation, _ = search_around_sky(coords_a, coords_b, search_radius * (1 + 1e-6))
    separation = separation.to(u.arcsec)
    if radius.unit.physical_type == "angle":
        distance = separation.to(radius.unit)
    else:
        distance = proper_length(separation, redshift[index_b], cosmology).to(radius.unit)
    keep = within(distance, radius)
    order = np.lexsort((index_b[keep], index_a[keep], distance[keep].value))
    return SkyPairs(index_a[keep][order], index_b[keep][order], separation[keep][order], distance[keep][order])


class MergeResult(NamedTuple):
    """De-duplicated detections: ``kept`` indices (descending score) and, per detection, ``group`` = the
    index of the kept detection that absorbed it (its own index when kept)."""

    kept: np.ndarray
    group: np.ndarray


def merge_by_sky_distance(coords, scores, radius):
    """Merge detections closer than ``radius`` on the sky, keeping the one with the best score.

    In descending score (ties in input order), each detection not yet absorbed is kept and absorbs every
    unabsorbed detection within its radius (inclusive). A chain A-B-C with only neighbours within the
    radius keeps A and C when B is absorbed by A, as non-maximum suppression does. Since a detection's fate
    depends only on better-scored ones, merging and then cutting at a score gives the same kept detections
    as cutting first.

    Parameters
    ----------
    coords : `~astropy.coordinates.SkyCoord`
        Detection positions.
    scores : array_like
        Detection scores.
    radius : `~astropy.units.Quantity` [angle]
        Merging radius on the sky: one for all, or one per detection (e.g. a proper length at each
        detection's redshift, `deepcee_d2.cosmology.angular_size`); a kept detection absorbs within its own.

    Returns
    -------
    MergeResult
    """
    coords = as_coords_array(coords, "coords")
    scores = np.asarray(scores, dtype=float).reshape(-1)
    if len(scores) != len(coords):
        raise ValueError(f"{len(coords)} positions but {len(scores)} scores")
    radius = Angle(radius)
    if not radius.isscalar and radius.shape != (len(coords),):
        raise ValueError(f"{radius.size} merging radii for {len(coords)} detections; give one, or one per detection")
    radius = radius * np.ones(len(coords)) if radius.isscalar else radius
    bad = ~(np.isfinite(radius) & (radius >= 0))
    if bad.any():
        raise ValueError(f"merging radii must be finite and >= 0, got {radius[bad][:5]}")
    pairs = sky_pairs(coords, coords, radius.max() if len(coords) else 0 * u.arcsec)
    # Each detection's neighbours within its own radius, as slices of one array sorted by detection.
    inside = within(pairs.separation, radius[pairs.index_a])
    order = np.argsort(pairs.index_a[inside], kind="stable")
    neighbours = pairs.index_b[inside][order]
    start = np.searchsorted(pairs.index_a[inside][order], np.arange(len(scores) + 1))
    group = np.full(len(scores), -1, dtype=int)
    kept = []
    for index in np.argsort(-scores, kind="stable"):
        if group[index] >= 0:
            continue
        kept.append(index)
        group[index] = index
        others = neighbours[start[index]:start[index + 1]]
        group[others[group[others] < 0]] = index
    return MergeResult(np.asarray(kept, dtype=int), group)

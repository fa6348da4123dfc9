"""Pixel <-> sky conversions for detectron2 boxes, through the image's astropy WCS.

detectron2 box coordinates are continuous: pixel ``i`` spans ``[i, i + 1)``, so its centre is ``i + 0.5``.
astropy's WCS uses 0-based pixel indices with the centre of pixel ``i`` at ``i``. The half-pixel shift lives
here and nowhere else.
"""
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

# Offset from astropy's 0-based pixel-centre convention to detectron2's continuous box coordinates.
_BOX_MINUS_ASTROPY = 0.5


def celestial_wcs(header, source="image"):
    """Return the celestial `~astropy.wcs.WCS` of a FITS header (or its string), or raise naming ``source``.

    Raises
    ------
    ValueError
        When the header has no celestial WCS.
    """
    if isinstance(header, str):
        header = fits.Header.fromstring(header)
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

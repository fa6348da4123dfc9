import numpy as np
import pytest
import astropy.units as u
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS

from deepcee_d2.data.pixels import box_centres, box_xy_to_sky, celestial_wcs, sky_to_box_xy


def tan_wcs(size=100, scale_arcsec=0.792):
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.crpix = [(size + 1) / 2, (size + 1) / 2]  # FITS 1-based: the centre of the image
    wcs.wcs.cdelt = [-scale_arcsec / 3600, scale_arcsec / 3600]
    return wcs


def test_reference_pixel_is_at_the_image_centre_in_box_coordinates():
    wcs = tan_wcs(size=100)
    x, y = sky_to_box_xy(wcs, SkyCoord(150.0 * u.deg, 2.0 * u.deg))
    # A 100 px image spans [0, 100) in detectron2 box coordinates; its centre is 50.0.
    assert x == pytest.approx(50.0, abs=1e-9) and y == pytest.approx(50.0, abs=1e-9)


def test_round_trip_and_box_centres():
    wcs = tan_wcs()
    boxes = np.array([[10.0, 20.0, 30.0, 60.0], [0.0, 0.0, 1.0, 1.0]])
    x, y = box_centres(boxes)
    np.testing.assert_allclose(x, [20.0, 0.5])
    np.testing.assert_allclose(y, [40.0, 0.5])
    coords = box_xy_to_sky(wcs, x, y)
    x2, y2 = sky_to_box_xy(wcs, coords)
    np.testing.assert_allclose(x2, x, atol=1e-8)
    np.testing.assert_allclose(y2, y, atol=1e-8)


def test_header_without_celestial_wcs_is_named_in_the_error():
    with pytest.raises(ValueError, match="cutout_42.fits: has no celestial WCS"):
        celestial_wcs(WCS(naxis=2).to_header(), source="cutout_42.fits")
    assert celestial_wcs(tan_wcs().to_header_string()).has_celestial

"""Sky geometry: pixel <-> sky for boxes, cutout grids, footprints, and the one pair-finding convention."""
import warnings

import numpy as np
import pytest
import astropy.units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning

from deepcee_d2.data.catalogs import sky_match_mask
from deepcee_d2.sky import (
    box_centres, box_xy_to_sky, celestial_wcs, centre_and_radius, corners_sky, cutout_grid, footprints_overlap,
    sky_to_box_xy,
)

CENTRE = SkyCoord(150.0 * u.deg, 2.0 * u.deg)


def tan_wcs(size=100, scale_arcsec=0.792):
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.crpix = [(size + 1) / 2, (size + 1) / 2]  # FITS 1-based: the centre of the image
    wcs.wcs.cdelt = [-scale_arcsec / 3600, scale_arcsec / 3600]
    return wcs


def test_reference_pixel_is_at_the_image_centre_in_box_coordinates():
    wcs = tan_wcs(size=100)
    x, y = sky_to_box_xy(wcs, CENTRE)
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


def test_real_sdss_header_gives_its_wcs_without_fits_fixed_warnings(shared_data):
    header = fits.getheader(shared_data / "sdss" / "frame-g-002583-2-0136.fits.bz2")
    with warnings.catch_warnings(record=True) as plain:
        warnings.simplefilter("always")
        WCS(header)
    assert sum(isinstance(w.message, FITSFixedWarning) for w in plain) == 2  # RADECSYS, MJD-OBS from DATE-OBS
    with warnings.catch_warnings(record=True) as ours:
        warnings.simplefilter("always")
        wcs = celestial_wcs(header, "frame-g")
    assert not ours
    assert wcs.pixel_to_world(1024, 744).separation(SkyCoord(323.34 * u.deg, -0.73 * u.deg)) < 3 * u.arcmin


def test_cutout_grid_is_centred_north_up_at_the_pixel_scale():
    grid = cutout_grid(CENTRE, 200, 0.396 * u.arcsec)
    x, y = grid.world_to_pixel(CENTRE)
    assert x == pytest.approx(99.5) and y == pytest.approx(99.5)  # the centre of a 200 px image
    north = grid.pixel_to_world(99.5, 199.5)
    assert north.dec > CENTRE.dec
    assert north.separation(CENTRE).to_value(u.arcsec) == pytest.approx(100 * 0.396, rel=1e-6)


def test_corners_and_circumscribed_circle_of_an_image():
    grid = cutout_grid(CENTRE, 100, 1 * u.arcsec)
    corners = corners_sky(grid, (100, 100))
    x, y = grid.world_to_pixel(corners)
    np.testing.assert_allclose(x, [-0.5, 99.5, 99.5, -0.5], atol=1e-8)  # outer edges, counter-clockwise
    np.testing.assert_allclose(y, [-0.5, -0.5, 99.5, 99.5], atol=1e-8)
    centre, radius = centre_and_radius(grid, (100, 100))
    assert centre.separation(CENTRE) < 1e-6 * u.arcsec
    assert radius.to_value(u.arcsec) == pytest.approx(50 * np.sqrt(2), rel=1e-4)


def test_a_cutout_crossing_a_frame_overlaps_it_though_no_corner_is_inside(sky_wcs):
    """A 2000 px square centred on a 2048 x 1489 px SDSS-like frame: each pokes out of the other on two sides,
    so no corner of either lies inside the other, yet they overlap."""
    shape = (1489, 2048)
    frame = sky_wcs(150.0, 2.0, shape, rotation_deg=0.3)
    grid = cutout_grid(CENTRE, 2000)
    assert not frame.footprint_contains(corners_sky(grid, grid.array_shape)).any()
    assert not grid.footprint_contains(corners_sky(frame, shape)).any()
    assert footprints_overlap(frame, shape, grid)
    # Beside the frame (its half-width is 405", the grid's 396"): apart, then touching.
    beside = [cutout_grid(CENTRE.spherical_offsets_by(dx * u.arcsec, 0 * u.deg), 2000) for dx in (810, 790)]
    assert not footprints_overlap(frame, shape, beside[0]) and footprints_overlap(frame, shape, beside[1])
    assert not footprints_overlap(frame, shape, cutout_grid(SkyCoord(330.0 * u.deg, -2.0 * u.deg), 2000))


def clusters(*rows):
    table = Table(rows=rows, names=["id", "ra", "dec", "z"], dtype=[str, float, float, float])
    table["ra"].unit = table["dec"].unit = u.deg
    return table


def test_catalogue_match_is_sky_pairs_at_the_selected_rows_redshift_inclusive(offset_by_kpc):
    """One convention with `sky_pairs`: the radius is a proper length at the redshift of the rows being
    selected (not the reference's), and a row exactly at the radius matches."""
    at, beyond = offset_by_kpc(CENTRE, 500, 0.1), offset_by_kpc(CENTRE, 500 * (1 + 1e-6), 0.1, position_angle=90)
    near = offset_by_kpc(CENTRE, 450, 0.1, position_angle=180)  # 450 kpc at z = 0.1 is > 500 kpc at z = 0.3
    table = clusters(("at", at.ra.deg, at.dec.deg, 0.1), ("beyond", beyond.ra.deg, beyond.dec.deg, 0.1),
                     ("near", near.ra.deg, near.dec.deg, 0.1), ("near at z=0.3", near.ra.deg, near.dec.deg, 0.3),
                     ("no z", CENTRE.ra.deg, CENTRE.dec.deg, np.nan))
    far = CENTRE.spherical_offsets_by(1 * u.deg, 0 * u.deg)
    # The reference's own redshift (where 450 kpc at z = 0.1 is > 1 Mpc) plays no part.
    reference = clusters(("far", far.ra.deg, far.dec.deg, 0.1), ("A1", CENTRE.ra.deg, CENTRE.dec.deg, 0.9))
    matched, nearest, separation = sky_match_mask(table, reference, 500 * u.kpc)
    assert matched.tolist() == [True, False, True, False, False]
    assert nearest.tolist() == [1, -1, 1, -1, -1]
    assert separation[0].to_value(u.arcsec) == pytest.approx(at.separation(CENTRE).to_value(u.arcsec))
    assert np.isnan(separation[1])
    # An angle needs no redshift: the row without one matches too.
    matched, nearest, _ = sky_match_mask(table, reference, at.separation(CENTRE))
    assert matched.tolist() == [True, False, True, True, True] and nearest[4] == 1

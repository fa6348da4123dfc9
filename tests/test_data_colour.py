import warnings
from dataclasses import replace

import numpy as np
import pytest
import astropy.units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS
from scipy import ndimage

from deepcee_d2.config import load_config
from deepcee_d2.data.colour import (
    STRETCH_NAMES,
    ColourSettings,
    bin_wcs,
    flip_wcs,
    make_colour_image,
    make_network_image,
    resample_to,
)

SIZE = 200
NETWORK = 100
CENTRE = SkyCoord(150.0 * u.deg, 2.0 * u.deg)
# The config's colour image: i, r, g -> R, G, B, sqrt stretch between 0 and 10 nanomaggies.
DEFAULT = ColourSettings.from_cfg(load_config())


def bands_of(value_by_band, shape=(4, 5)):
    return {band: np.full(shape, value, dtype=float) for band, value in value_by_band.items()}


def test_sqrt_stretch_maps_limits_to_black_and_white_and_follows_the_square_root():
    settings = ColourSettings(bands=("i", "r", "g"), stretch="sqrt", lower=1.0, upper=5.0, lupton_q=8.0)
    values = np.array([[0.0, 1.0, 2.0, 3.0, 5.0, 100.0]])
    rgb = make_colour_image({"i": values, "r": values, "g": values}, settings)
    expected = np.floor(255 * np.sqrt(np.clip((values - 1.0) / 4.0, 0, 1)) + 1e-9)
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 6, 3)
    np.testing.assert_array_equal(rgb[..., 0], expected)
    assert rgb[0, 0, 0] == 0 and rgb[0, -1, 0] == 255


def test_bands_go_to_red_green_blue_in_the_order_given():
    rgb = make_colour_image(bands_of({"i": 10.0, "r": 2.5, "g": 0.0}), replace(DEFAULT, lower=0.0, upper=10.0))
    assert tuple(rgb[0, 0]) == (255, 127, 0)


@pytest.mark.parametrize("stretch", [name for name in STRETCH_NAMES if name != "lupton"])
def test_every_stretch_is_monotonic_from_black_at_lower_to_white_at_upper(stretch):
    ramp = np.linspace(0.0, 10.0, 50)[None, :]
    rgb = make_colour_image({"i": ramp, "r": ramp, "g": ramp}, replace(DEFAULT, stretch=stretch, lower=0.0, upper=10.0))
    assert rgb.dtype == np.uint8
    red = rgb[0, :, 0].astype(int)
    assert red[0] == 0 and red[-1] >= 254
    assert np.all(np.diff(red) >= 0)


def test_lupton_stretch_is_monotonic_and_keeps_the_colour_of_bright_pixels():
    ramp = np.geomspace(1e-3, 1e4, 60)[None, :]
    settings = replace(DEFAULT, stretch="lupton", lower=0.0, upper=10.0)
    rgb = make_colour_image({"i": 2 * ramp, "r": ramp, "g": ramp / 2}, settings).astype(int)
    assert np.all(np.diff(rgb[0, :, 0]) >= 0) and rgb[0, -1, 0] == 255
    bright = rgb[0, -10:]
    # i : r : g = 4 : 2 : 1 survives where a per-band stretch would have saturated all three to white.
    np.testing.assert_allclose(bright[:, 1] / bright[:, 0], 0.5, atol=0.01)
    np.testing.assert_allclose(bright[:, 2] / bright[:, 0], 0.25, atol=0.01)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="unknown stretch 'gamma'"):
        replace(DEFAULT, stretch="gamma")
    with pytest.raises(ValueError, match="lower .* must be below upper"):
        replace(DEFAULT, lower=5.0, upper=5.0)
    with pytest.raises(ValueError, match="need 3 bands"):
        replace(DEFAULT, bands=("r", "g"))


def test_settings_round_trip_through_json():
    settings = replace(DEFAULT, stretch="lupton", bands=["g", "r", "i"])
    assert settings.bands == ("g", "r", "i")
    assert ColourSettings(**settings.to_dict()) == settings


def test_missing_band_is_named_with_the_source():
    with pytest.raises(ValueError, match=r"cutout_7\.fits: missing band\(s\) \['g'\]"):
        make_colour_image(bands_of({"i": 1.0, "r": 1.0}), DEFAULT, source="cutout_7.fits")


def test_mismatched_shapes_are_named_with_the_source():
    images = bands_of({"i": 1.0, "r": 1.0})
    images["g"] = np.ones((4, 6))
    with pytest.raises(ValueError, match=r"cutout_7\.fits: band images have different shapes"):
        make_colour_image(images, DEFAULT, source="cutout_7.fits")


def test_nan_pixels_are_refused_naming_band_and_source():
    images = bands_of({"i": 1.0, "r": 1.0, "g": 1.0})
    images["r"][1, 2] = np.nan
    with pytest.raises(ValueError, match=r"cutout_7\.fits: band r has 1 NaN/inf pixels of 20"):
        make_colour_image(images, DEFAULT, source="cutout_7.fits")


def test_block_average_keeps_surface_brightness_and_conserves_flux():
    rng = np.random.default_rng(1)
    image = rng.normal(0.0, 1.0, (SIZE, SIZE)) + 3.0
    binned = resample_to(image, NETWORK)
    assert binned.shape == (NETWORK, NETWORK)
    assert binned[3, 7] == pytest.approx(image[6:8, 14:16].mean())
    assert binned.sum() * 4 == pytest.approx(image.sum())
    np.testing.assert_allclose(resample_to(np.full((SIZE, SIZE), 2.5), NETWORK), 2.5)


@pytest.mark.parametrize("size", [150, 300, (100, 50)])
def test_non_integer_or_anisotropic_resampling_is_refused(size):
    with pytest.raises(ValueError, match="tile.fits: cannot block-average"):
        resample_to(np.zeros((SIZE, SIZE)), size, source="tile.fits")


@pytest.mark.parametrize("use_cd", [False, True])
def test_binned_wcs_puts_each_network_pixel_at_the_centre_of_its_block(sky_wcs, use_cd):
    wcs = sky_wcs(150.0, 2.0, (SIZE, SIZE), rotation_deg=30.0, use_cd=use_cd)
    binned = bin_wcs(wcs, 2)
    j = np.array([0.0, 10.0, 57.0, 99.0])
    i = np.array([3.0, 99.0, 20.0, 0.0])
    original = wcs.pixel_to_world(2 * j + 0.5, 2 * i + 0.5)
    network = binned.pixel_to_world(j, i)
    assert original.separation(network).max() < 1e-6 * u.arcsec
    assert binned.pixel_shape == (NETWORK, NETWORK)


@pytest.mark.parametrize("axis", ["x", "y"])
def test_flipped_wcs_maps_mirrored_pixels_to_the_same_sky(sky_wcs, axis):
    shape = (60, 80)
    wcs = sky_wcs(150.0, 2.0, shape, rotation_deg=-20.0, use_cd=True)
    flipped = flip_wcs(wcs, shape, axis)
    x, y = np.array([0.0, 13.0, 79.0]), np.array([0.0, 41.0, 59.0])
    mirrored = (79 - x, y) if axis == "x" else (x, 59 - y)
    assert wcs.pixel_to_world(x, y).separation(flipped.pixel_to_world(*mirrored)).max() < 1e-6 * u.arcsec
    twice = flip_wcs(flipped, shape, axis)
    assert wcs.pixel_to_world(x, y).separation(twice.pixel_to_world(x, y)).max() < 1e-6 * u.arcsec


def test_distorted_wcs_is_refused_rather_than_transformed_wrongly(sky_wcs):
    header = sky_wcs(150.0, 2.0, (50, 50)).to_header()
    header["CTYPE1"], header["CTYPE2"] = "RA---TAN-SIP", "DEC--TAN-SIP"
    header.update({"A_ORDER": 2, "B_ORDER": 2, "A_2_0": 1e-6, "B_0_2": 1e-6})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        distorted = WCS(header)
    with pytest.raises(ValueError, match="frame.fits: WCS has SIP"):
        bin_wcs(distorted, 2, source="frame.fits")


@pytest.mark.parametrize("rotation_deg", [0.0, 37.0])
def test_known_sky_position_lands_on_its_blob_in_the_network_image(sky_wcs, blobs, rotation_deg):
    wcs = sky_wcs(150.0, 2.0, (SIZE, SIZE), rotation_deg=rotation_deg, use_cd=True)
    target = CENTRE.spherical_offsets_by(-13.3 * u.arcsec, 21.7 * u.arcsec)
    image = blobs(wcs, (SIZE, SIZE), target, 400.0, 3.0)
    # A linear stretch with no clipping keeps the blob's light-weighted centre where the flux is.
    settings = replace(DEFAULT, stretch="linear", lower=0.0, upper=float(image.max()) * 1.01)
    rgb, network_wcs = make_network_image({"i": image, "r": image, "g": image}, wcs, NETWORK, settings)
    assert rgb.shape == (NETWORK, NETWORK, 3) and rgb.dtype == np.uint8
    row, column = ndimage.center_of_mass(rgb[..., 0].astype(float))
    x, y = network_wcs.world_to_pixel(target)
    assert abs(x - column) < 0.1 and abs(y - row) < 0.1


def test_network_image_is_north_up_for_a_north_up_cutout(sky_wcs):
    wcs = sky_wcs(150.0, 2.0, (SIZE, SIZE))
    rgb, network_wcs = make_network_image(
        {band: np.zeros((SIZE, SIZE)) for band in "gri"}, wcs, NETWORK, DEFAULT)
    top, bottom = network_wcs.pixel_to_world([50, 50], [0, 99])
    assert top.dec > bottom.dec  # row 0, the top of the PNG, is the northern edge


def test_network_image_refuses_a_missing_wcs():
    with pytest.raises(ValueError, match="c.fits: has no celestial WCS"):
        make_network_image({band: np.zeros((4, 4)) for band in "gri"}, None, 2, DEFAULT, source="c.fits")


def test_real_sdss_frame_makes_a_network_image_with_unsaturated_sky(shared_data):
    """The r frame stands in for all bands: the default limits keep sky dark and most pixels unsaturated."""
    with fits.open(shared_data / "sdss" / "frame-r-002583-2-0136.fits.bz2") as hdul:
        image = hdul[0].data[:1400, :1400].astype(float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wcs = WCS(hdul[0].header).celestial[:1400, :1400]
    rgb, network_wcs = make_network_image({band: image for band in "gri"}, wcs, 700, DEFAULT, source="frame-r")
    red = rgb[::-1, :, 0]  # back to FITS row order, to compare with the binned fluxes
    assert np.median(red) < 40  # sky: dark grey
    # Pixels of sources (> 0.2 nmgy, ~ 5 sigma after 2x2 averaging) are mostly below saturation even in
    # this crowded field beside M2; only bright cores reach upper.
    source_pixels = resample_to(image, 700) > 0.2
    assert np.mean(red[source_pixels] == 255) < 0.15
    assert network_wcs.pixel_shape == (700, 700)

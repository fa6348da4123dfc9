"""Red-sequence redshift and richness (deepcee_d2.redsequence) on small synthetic fields."""
import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.table import Table
from detectron2.config import get_cfg

from deepcee_d2.config import add_deepcee_config
from deepcee_d2.cosmology import DEFAULT_COSMOLOGY
from deepcee_d2.redsequence import (ESTIMATE_COLUMNS, RedSequenceEstimator, RedSequenceSettings, aperture_coverage,
                                    estimate_redshift_richness, measure_background, measure_photometry,
                                    read_background, write_background)
from deepcee_d2.synthetic import render
from deepcee_d2.synthetic.field import make_field

CENTRE = SkyCoord(150.0 * u.deg, 2.0 * u.deg)
MAG_LIMIT = 22.5  # the 5-sigma depth is ~22.6: fainter galaxies only add unresolved light, and render time


@pytest.fixture(scope="module")
def settings():
    return RedSequenceSettings.from_cfg(add_deepcee_config(get_cfg()))


@pytest.fixture(scope="module")
def background(settings):
    field = make_field(CENTRE, 1000, 1000, clusters=None, seed=21, mag_limit=MAG_LIMIT)
    return measure_background([measure_photometry(field.images, field.wcs, settings)], DEFAULT_COSMOLOGY, settings)


def test_cluster_redshift_and_richness_are_recovered(settings, background):
    request = Table({"ra": [150.0], "dec": [2.0], "z": [0.2], "richness": [60.0]})
    field = make_field(CENTRE, 800, 800, clusters=request, seed=4, mag_limit=MAG_LIMIT)
    truth = field.clusters[0]
    photometry = measure_photometry(field.images, field.wcs, settings)
    estimate = estimate_redshift_richness(photometry, CENTRE, DEFAULT_COSMOLOGY, background, settings)
    assert estimate.has_peak
    assert estimate.z == pytest.approx(truth["z"], abs=0.03)
    assert 0 < estimate.z_err < 0.05
    assert truth["richness"] / 1.5 < estimate.richness < 1.5 * truth["richness"]
    assert estimate.as_row() == {"z_est": estimate.z, "z_err": estimate.z_err, "richness": estimate.richness,
                                 "rs_significance": estimate.significance, "rs_peak": True}


def test_blank_field_has_no_red_sequence_peak(settings, background):
    field = make_field(CENTRE, 700, 700, clusters=None, seed=8, mag_limit=MAG_LIMIT)
    photometry = measure_photometry(field.images, field.wcs, settings)
    estimate = estimate_redshift_richness(photometry, CENTRE, DEFAULT_COSMOLOGY, background, settings)
    assert not estimate.has_peak
    assert estimate.significance < settings.min_significance
    assert estimate.n_members < 3
    row = estimate.as_row()  # no peak: no redshift or richness in the catalogue
    assert np.isnan([row["z_est"], row["z_err"], row["richness"]]).all() and not row["rs_peak"]


def test_photometry_measures_injected_point_sources_in_ab_magnitudes(settings):
    """Stars of known magnitudes drawn on a noisy empty field come back at their AB magnitudes and colours."""
    seeing = {band: 1.3 for band in "gri"}
    field = make_field(CENTRE, 400, 400, clusters=None, field_galaxies=False, stars=False, seeing=seeing, seed=2)
    grid = np.arange(60.0, 400.0, 100.0)
    x, y = (value.ravel() for value in np.meshgrid(grid, grid))
    rng = np.random.default_rng(0)
    r_mag = rng.uniform(17.0, 20.0, len(x))
    stars = Table({"x": x, "y": y, "r_mag": r_mag, "g_mag": r_mag + rng.uniform(0.3, 1.4, len(x)),
                   "i_mag": r_mag - rng.uniform(0.1, 0.6, len(x))})
    images = {}
    for band in "gri":
        image = render.new_image(400, 400)
        render.draw_stars(image, stars, band, seeing[band])
        images[band] = field.images[band] + image.array
    sources = measure_photometry(images, field.wcs, settings).sources
    distance = np.hypot(sources["x"][:, None] - stars["x"][None, :], sources["y"][:, None] - stars["y"][None, :])
    assert np.all(distance.min(axis=0) < 0.5)
    measured = sources[distance.argmin(axis=0)]
    # Kron fluxes hold ~95 % of a point source's light: 0.05 mag faint.
    assert np.all(np.abs(measured["r_mag"] - stars["r_mag"]) < 0.12)
    # Colours within 4 sigma of their stated errors (plus 0.01 mag for the PSF's aperture losses).
    assert np.all(np.abs(measured["g_r"] - (stars["g_mag"] - stars["r_mag"])) < 4 * measured["g_r_err"] + 0.01)
    assert np.all(np.abs(measured["r_i"] - (stars["r_mag"] - stars["i_mag"])) < 4 * measured["r_i_err"] + 0.01)
    assert np.median(measured["g_r_err"]) < 0.05
    assert measured["i_mag"] == pytest.approx(stars["i_mag"], abs=0.15)
    assert sources["r_mag"].unit == u.mag


def test_bad_input_is_refused_with_a_clear_error(settings, background):
    field = make_field(CENTRE, 64, 64, clusters=None, seed=1, mag_limit=MAG_LIMIT)
    with pytest.raises(ValueError, match=r"tile-7: missing band\(s\) \['i'\]"):
        measure_photometry({"g": field.images["g"], "r": field.images["r"]}, field.wcs, settings, source="tile-7")
    images = dict(field.images)
    images["r"] = images["r"].copy()
    images["r"][3, 5] = np.nan
    with pytest.raises(ValueError, match="band r has 1 NaN/inf pixels"):
        measure_photometry(images, field.wcs, settings)
    photometry = measure_photometry(field.images, field.wcs, settings)
    with pytest.raises(ValueError, match="outside the 64 x 64 px cutout"):
        estimate_redshift_richness(photometry, SkyCoord(151.0 * u.deg, 2.0 * u.deg), DEFAULT_COSMOLOGY,
                                   background, settings)
    with pytest.raises(ValueError, match="another redshift grid"):
        estimate_redshift_richness(photometry, CENTRE, DEFAULT_COSMOLOGY, background[::2], settings)


def test_estimator_gives_catalogue_columns_for_each_detection(settings, background, tmp_path, caplog):
    """Photometry once per cutout, one row per detection; one outside the cutout and a blank cutout get NaN."""
    request = Table({"ra": [150.0], "dec": [2.0], "z": [0.15], "richness": [50.0]})
    field = make_field(CENTRE, 700, 700, clusters=request, seed=5, mag_limit=MAG_LIMIT)
    truth = field.clusters[0]
    estimator = RedSequenceEstimator(settings, DEFAULT_COSMOLOGY, background)
    outside = 151.0
    table = estimator.estimate(field.images, field.wcs, [truth["ra"], outside], [truth["dec"], 2.0], "tile-3")
    assert table.colnames == list(ESTIMATE_COLUMNS) and len(table) == 2
    assert table["rs_peak"].tolist() == [True, False]
    assert table["z_est"][0] == pytest.approx(truth["z"], abs=0.03) and np.isnan(table["z_est"][1])
    assert "tile-3: no redshift or richness at RA 151.00000" in caplog.text
    blank = {band: np.zeros((50, 50)) for band in "gri"}
    assert not estimator.estimate(blank, field.wcs, [truth["ra"]], [truth["dec"]], "tile-4")["rs_peak"][0]
    assert "tile-4: no redshift or richness for its 1 detections" in caplog.text
    assert len(estimator.estimate(blank, field.wcs, [], [])) == 0


def test_background_file_round_trips_and_is_checked(settings, background, tmp_path):
    path = write_background(background, tmp_path / "background.ecsv")
    np.testing.assert_allclose(read_background(path, settings)["scan"], background["scan"])
    with pytest.raises(FileNotFoundError, match="missing.ecsv: red-sequence background file not found"):
        read_background(tmp_path / "missing.ecsv", settings)
    write_background(background[::2], tmp_path / "coarse.ecsv")
    with pytest.raises(ValueError, match="coarse.ecsv: background measured on .* not on DEEPCEE.REDSHIFT.Z_GRID"):
        read_background(tmp_path / "coarse.ecsv", settings)
    write_background(background["z", "scan"], tmp_path / "partial.ecsv")
    with pytest.raises(ValueError, match=r"partial.ecsv: background table lacks column\(s\) \['scan_squared'"):
        read_background(tmp_path / "partial.ecsv", settings)
    # The packaged background of the synthetic sky fits the default settings.
    packaged = RedSequenceEstimator.from_cfg(add_deepcee_config(get_cfg())).background
    assert np.all(np.asarray(packaged["scan"]) > 0) and packaged.meta["area"] > 500 * u.arcmin**2


def test_padding_outside_the_imaging_is_neither_sky_nor_area(settings):
    """A tile reaching past the frames is padded with zeros (`Cutout.covered`): with the mask, the imaged half
    gives the sources, noise and area of that half of the whole image; without it, the zeros lower the sky
    noise, so the detection threshold, and count as area."""
    field = make_field(CENTRE, 600, 600, clusters=None, seed=8, mag_limit=MAG_LIMIT)
    covered = np.zeros((600, 600), bool)
    covered[:, :300] = True
    padded = {band: np.where(covered, image, 0.0) for band, image in field.images.items()}
    whole = measure_photometry(field.images, field.wcs, settings)
    masked = measure_photometry(padded, field.wcs, settings, covered=covered)
    unmasked = measure_photometry(padded, field.wcs, settings)

    def left(photometry):
        return photometry.sources[photometry.sources["x"] < 280]

    assert abs(len(left(masked)) - len(left(whole))) <= 2
    assert len(left(unmasked)) > len(left(masked)) + 5
    assert masked.area.value == pytest.approx(whole.area.value / 2, rel=1e-6)
    centre = field.wcs.pixel_to_world(299.5, 299.5)
    assert aperture_coverage(masked, centre, 60 * u.arcsec)[0] == pytest.approx(0.5, abs=0.03)
    assert aperture_coverage(unmasked, centre, 60 * u.arcsec)[0] == 1.0
    with pytest.raises(ValueError, match="tile-3: no pixel is imaged"):
        measure_photometry(padded, field.wcs, settings, source="tile-3", covered=np.zeros((600, 600), bool))

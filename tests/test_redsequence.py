"""Red-sequence redshift and richness (deepcee_d2.redsequence) on small synthetic fields."""
from dataclasses import replace

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.table import Table, vstack
from astropy.wcs import WCS
from detectron2.config import get_cfg

from deepcee_d2.config import add_deepcee_config
from deepcee_d2.cosmology import DEFAULT_COSMOLOGY
from deepcee_d2.dust import EXTINCTION_PER_EBV, galactic_reddening
from deepcee_d2.redsequence import (ESTIMATE_COLUMNS, RICHNESS_Z_PIVOT, SCAN_COLUMNS, SOURCE_DENSITY_KEY,
                                    Photometry, RedSequenceEstimator, RedSequenceSettings, aperture_coverage,
                                    deredden, detected_source_density, estimate_redshift_richness,
                                    measure_background, measure_photometry, percolate, read_background,
                                    red_sequence_weights, richness_members, write_background)
from deepcee_d2.evaluation.purity import loss_stages
from deepcee_d2.survey.run import merged_candidates
from deepcee_d2.synthetic import render
from deepcee_d2.synthetic.clusters import MAX_RADIUS_R200, projected_fraction, r200_from_richness
from deepcee_d2.synthetic.colours import m_star, red_sequence
from deepcee_d2.synthetic.field import make_field
from conftest import write_sfd_like_map

CENTRE = SkyCoord(150.0 * u.deg, 2.0 * u.deg)
MAG_LIMIT = 22.5  # the 5-sigma depth is ~22.6: fainter galaxies only add unresolved light, and render time


@pytest.fixture(scope="module")
def settings():
    return RedSequenceSettings.from_cfg(add_deepcee_config(get_cfg()))


@pytest.fixture(scope="module")
def background(settings):
    field = make_field(CENTRE, 1000, 1000, clusters=None, seed=21, mag_limit=MAG_LIMIT)
    return measure_background([measure_photometry(field.images, field.wcs, settings)], DEFAULT_COSMOLOGY, settings)


def test_cluster_redshift_and_richness_are_recovered(settings):
    """Against the packaged background (the survey's): one blank field is no background for the richness, as
    the pieces of a big nearby galaxy, split into many sources of red colours, can dominate it."""
    request = Table({"ra": [150.0], "dec": [2.0], "z": [0.2], "richness": [60.0]})
    field = make_field(CENTRE, 800, 800, clusters=request, seed=4, mag_limit=MAG_LIMIT)
    truth = field.clusters[0]
    photometry = measure_photometry(field.images, field.wcs, settings)
    packaged = RedSequenceEstimator.from_cfg(add_deepcee_config(get_cfg())).background
    estimate = estimate_redshift_richness(photometry, CENTRE, DEFAULT_COSMOLOGY, packaged, settings)
    assert estimate.has_peak
    assert estimate.z == pytest.approx(truth["z"], abs=0.03)
    assert 0 < estimate.z_err < 0.05
    # Within a factor 2 (0.3 dex, twice the scatter): most of this cluster's r200 (1.6 Mpc) lies outside the
    # 800 px field, and the calibration's slope (below 1) pulls a rich cluster's estimate towards the middle.
    assert truth["richness"] / 2 < estimate.richness < 2 * truth["richness"]
    # The BCG the richness counts is the cluster's (Kron magnitudes hold most of a galaxy's light).
    assert estimate.bcg_r_mag == pytest.approx(truth["bcg_rmag"], abs=0.3)
    assert estimate.as_row() == {"z_est": estimate.z, "z_err": estimate.z_err, "richness": estimate.richness,
                                 "rs_significance": estimate.significance, "rs_peak": True,
                                 "bcg_rmag": estimate.bcg_r_mag}


def test_blank_field_has_no_red_sequence_peak(settings, background):
    field = make_field(CENTRE, 700, 700, clusters=None, seed=8, mag_limit=MAG_LIMIT)
    photometry = measure_photometry(field.images, field.wcs, settings)
    estimate = estimate_redshift_richness(photometry, CENTRE, DEFAULT_COSMOLOGY, background, settings)
    assert not estimate.has_peak
    assert estimate.significance < settings.min_significance
    assert estimate.members < 3
    row = estimate.as_row()  # no peak: no redshift or richness in the catalogue
    assert np.isnan([row["z_est"], row["z_err"], row["richness"], row["bcg_rmag"]]).all() and not row["rs_peak"]


def catalogue_photometry(z, luminosity, offset_kpc, colour_offset=0.0, size=1000, seed=0, east_kpc=0.0):
    """A hand-made `Photometry`: galaxies of ``luminosity`` (L*, r band) at ``z`` on the red sequence's ridge
    line (g - r shifted by ``colour_offset``), ``offset_kpc`` (proper) in random directions from a point
    ``east_kpc`` east of `CENTRE`, on a ``size`` px image of 0.396" pixels centred on `CENTRE`."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype, wcs.wcs.crval = ["RA---TAN", "DEC--TAN"], [CENTRE.ra.deg, CENTRE.dec.deg]
    wcs.wcs.crpix, wcs.wcs.cdelt = [(size + 1) / 2] * 2, [-0.396 / 3600, 0.396 / 3600]
    r_mag = m_star(z, DEFAULT_COSMOLOGY) - 2.5 * np.log10(np.asarray(luminosity, dtype=float))
    g_r, r_i = red_sequence(z, r_mag - 0.5)
    for _ in range(3):  # the ridge line tilts with i = r - (r - i)
        g_r, r_i = red_sequence(z, r_mag - r_i)
    angle = np.random.default_rng(seed).uniform(0, 2 * np.pi, len(r_mag))
    radius = (np.asarray(offset_kpc, dtype=float) * u.kpc
              / DEFAULT_COSMOLOGY.kpc_proper_per_arcmin(z)).to_value(u.arcsec)
    x0, y0 = wcs.world_to_pixel(CENTRE)
    x0 = x0 - east_pixels(east_kpc, z)
    x, y = x0 + radius * np.cos(angle) / 0.396, y0 + radius * np.sin(angle) / 0.396
    sky = wcs.pixel_to_world(x, y)
    n = len(r_mag)
    sources = Table({"x": x, "y": y, "ra": sky.ra.deg, "dec": sky.dec.deg, "r_mag": r_mag, "i_mag": r_mag - r_i,
                     "g_r": g_r + colour_offset, "r_i": r_i, "g_r_err": np.full(n, 0.01), "r_i_err": np.full(n, 0.01),
                     "r_mag_err": np.full(n, 0.01)})
    return Photometry(sources, wcs, (size, size))


def east_pixels(kpc, z):
    """0.396" pixels spanned by ``kpc`` (proper) at ``z``."""
    return (kpc * u.kpc / DEFAULT_COSMOLOGY.kpc_proper_per_arcmin(z)).to_value(u.arcsec) / 0.396


def empty_background(settings):
    """A background of nothing at all (every density 0)."""
    zeros = np.zeros(len(settings.z_grid))
    return Table({"z": settings.z_grid, "scan": zeros, "scan_squared": zeros, "members": zeros})


def test_richness_is_the_number_of_members_within_r200(settings):
    """Twice the red-sequence members, twice the number, and the richness follows the calibration's power of
    it; twice their light changes nothing. The image holds the whole aperture (r200) and there is no
    background, so the number is the members'."""
    z, n = 0.15, 25

    def estimate(count, light):
        offsets = np.linspace(20.0, 400.0, count)
        return estimate_redshift_richness(catalogue_photometry(z, np.full(count, light), offsets, size=4000),
                                          CENTRE, DEFAULT_COSMOLOGY, empty_background(settings), settings)

    estimates = [estimate(n, 1.0), estimate(2 * n, 1.0), estimate(n, 2.0)]
    assert [e.z for e in estimates] == pytest.approx([z] * 3, abs=0.005)
    assert [e.members for e in estimates] == pytest.approx([n, 2 * n, n], rel=0.03)
    assert estimates[1].richness / estimates[0].richness == pytest.approx(2.0 ** settings.richness_slope, rel=0.05)
    assert estimates[2].richness == pytest.approx(estimates[0].richness, rel=0.01)


def test_richness_relation_has_a_redshift_term(settings):
    """The same members give a richness 10^(z_slope (z - pivot)) times the one without the z term."""
    z, n = 0.1, 25
    photometry = catalogue_photometry(z, np.ones(n), np.linspace(20.0, 400.0, n), size=4000)
    richness = [estimate_redshift_richness(photometry, CENTRE, DEFAULT_COSMOLOGY, empty_background(settings),
                                           replace(settings, richness_z_slope=z_slope)).richness
                for z_slope in (0.0, 1.5)]
    assert richness[1] / richness[0] == pytest.approx(10.0 ** (1.5 * (z - RICHNESS_Z_PIVOT)), rel=0.01)


def test_richness_members_are_red_sequence_galaxies_within_the_magnitude_window(settings):
    """Only galaxies on the red sequence count, between m* + BRIGHT_MAG and m* + RICHNESS_FAINT_MAG: a bright
    foreground object of red-sequence colour is no member."""
    z = 0.2
    light = np.array([1.0, 3.0, 0.5, 0.3, 20.0])  # 0.3 L* is below the 0.42 L* cut, 20 L* above m* - 3
    sources = catalogue_photometry(z, light, np.full(5, 100.0)).sources
    assert list(richness_members(sources, z, settings, DEFAULT_COSMOLOGY)[:, 0]) == [True, True, True, False, False]
    blue = catalogue_photometry(z, light, np.full(5, 100.0), colour_offset=-0.4).sources
    assert not richness_members(blue, z, settings, DEFAULT_COSMOLOGY).any()


def _photometry_of_stars(settings, stars, size, seed):
    """The sources measured on a noisy empty field of ``size`` px with ``stars`` drawn in (1.3" seeing in every
    band), and the distance (px) of every source (rows) to every star (columns)."""
    seeing = {band: 1.3 for band in "gri"}
    field = make_field(CENTRE, size, size, clusters=None, field_galaxies=False, stars=False, artefacts=False,
                       seeing=seeing, seed=seed)
    images = {}
    for band in "gri":
        image = render.new_image(size, size)
        render.draw_stars(image, stars, band, field.psf[band])
        images[band] = field.images[band] + image.array
    sources = measure_photometry(images, field.wcs, settings).sources
    return sources, np.hypot(sources["x"][:, None] - stars["x"][None, :], sources["y"][:, None] - stars["y"][None, :])


def test_point_sources_are_told_from_galaxies_and_left_out_of_the_counts_when_asked(settings):
    """On a synthetic field whose stars and galaxies are known; stars are the K dwarfs on the red sequence."""
    from scipy.spatial import cKDTree

    field = make_field(CENTRE, 1000, 1000, clusters=None, seed=21, mag_limit=MAG_LIMIT)
    photometry = measure_photometry(field.images, field.wcs, settings)
    sources = photometry.sources
    xy = np.column_stack([sources["x"], sources["y"]])
    truth = {}
    for kind, table in (("star", field.stars), ("galaxy", field.galaxies)):
        distance, index = cKDTree(np.column_stack([table["x"], table["y"]])).query(xy)
        truth[kind] = (distance < 1.5, np.asarray(table["r_mag"])[index])
    star = truth["star"][0] & ~(truth["galaxy"][0] & (truth["galaxy"][1] < truth["star"][1]))
    galaxy = truth["galaxy"][0] & ~star
    r_mag, point = np.asarray(sources["r_mag"]), np.asarray(sources["point_source"])
    bright_stars = star & (r_mag > 16) & (r_mag < 19.5)
    assert bright_stars.sum() >= 10 and point[bright_stars].mean() >= 0.85
    bright_galaxies = galaxy & (r_mag < 21)
    assert bright_galaxies.sum() >= 30 and point[bright_galaxies].mean() <= 0.03
    # The red-sequence counts: the same background without the point sources, and only without them.
    excluding = replace(settings, exclude_point_sources=True)
    everything = measure_background([photometry], DEFAULT_COSMOLOGY, settings)
    galaxies_only = measure_background([photometry], DEFAULT_COSMOLOGY, excluding)
    without_stars = Photometry(sources[~point], photometry.wcs, photometry.shape)
    np.testing.assert_allclose(galaxies_only["scan"], measure_background([without_stars], DEFAULT_COSMOLOGY,
                                                                         settings)["scan"])
    low_z = (everything["z"] >= 0.1) & (everything["z"] <= 0.2)
    assert np.all(galaxies_only["scan"][low_z] < everything["scan"][low_z])


def test_photometry_measures_injected_point_sources_in_ab_magnitudes(settings):
    """Stars of known magnitudes drawn on a noisy empty field come back at their AB magnitudes and colours."""
    grid = np.arange(60.0, 400.0, 100.0)
    x, y = (value.ravel() for value in np.meshgrid(grid, grid))
    rng = np.random.default_rng(0)
    r_mag = rng.uniform(17.0, 20.0, len(x))
    stars = Table({"x": x, "y": y, "r_mag": r_mag, "g_mag": r_mag + rng.uniform(0.3, 1.4, len(x)),
                   "i_mag": r_mag - rng.uniform(0.1, 0.6, len(x))})
    sources, distance = _photometry_of_stars(settings, stars, size=400, seed=2)
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


def test_a_source_along_the_y_axis_is_measured(settings, monkeypatch):
    """SEP gives theta as float32: for a source along the y axis (a sliver of a star at a frame's edge, one
    column wide; a cosmic ray) pi/2 rounds above pi/2 in float64, which SEP's elliptical apertures refuse
    (sep-developers/sep#110). Such a source must not stop a tile's photometry."""
    import sep

    extract = sep.extract

    def along_y(*args, **kwargs):
        objects = extract(*args, **kwargs)
        objects["theta"][0] = np.float32(np.pi / 2)
        return objects

    monkeypatch.setattr(sep, "extract", along_y)
    assert np.float64(np.float32(np.pi / 2)) > np.pi / 2
    stars = Table({"x": [60.0, 140.0], "y": [100.0, 100.0], "r_mag": [18.0, 18.5], "g_mag": [19.0, 19.5],
                   "i_mag": [17.7, 18.2]})
    sources, distance = _photometry_of_stars(settings, stars, size=200, seed=5)
    assert len(sources) >= 2 and np.all(distance.min(axis=0) < 0.5) and np.isfinite(sources["r_mag"]).all()


def test_a_failure_inside_sep_is_a_value_error_naming_the_cutout(settings, monkeypatch):
    """SEP raises bare Exceptions; as ValueErrors naming the cutout, the estimator leaves that tile's detections
    without estimates (`RedSequenceEstimator.estimate`) instead of stopping the survey. Other errors pass."""
    import sep

    field = make_field(CENTRE, 200, 200, clusters=None, seed=6, mag_limit=MAG_LIMIT)

    def fails(*args, **kwargs):
        raise Exception("invalid aperture parameters")

    monkeypatch.setattr(sep, "sum_ellipse", fails)
    with pytest.raises(ValueError, match="tile-9: SEP failed on its sources: invalid aperture parameters"):
        measure_photometry(field.images, field.wcs, settings, "tile-9")

    def bug(*args, **kwargs):
        raise TypeError("a bug of ours")

    monkeypatch.setattr(sep, "sum_ellipse", bug)
    with pytest.raises(TypeError, match="a bug of ours"):
        measure_photometry(field.images, field.wcs, settings, "tile-9")


def test_touching_sources_of_different_colours_are_measured_apart(settings):
    """A red and a blue star 4" apart, one blended source above the detection threshold, come back as two
    sources at their own positions with their own colours (deblending), as a BCG and its neighbours must."""
    stars = Table({"x": [95.0, 105.0], "y": [100.0, 100.0], "r_mag": [17.5, 18.0], "g_mag": [19.1, 18.3],
                   "i_mag": [17.0, 17.9]})
    sources, distance = _photometry_of_stars(settings, stars, size=200, seed=4)
    assert len(sources) == 2 and np.all(distance.min(axis=0) < 1.0)
    measured = sources[distance.argmin(axis=0)]
    assert measured["g_r"] == pytest.approx(stars["g_mag"] - stars["r_mag"], abs=0.05)
    assert measured["r_i"] == pytest.approx(stars["r_mag"] - stars["i_mag"], abs=0.05)


def test_extended_galaxies_keep_their_kron_magnitudes_down_to_the_red_sequence_limit(settings):
    """Extended galaxies get their total (Kron) r magnitude, not the 2" aperture's, down to the faintest
    red-sequence candidate of the z grid (m*(z_max) + faint_mag): the faintest one drawn lies inside that window
    by its total light only, its aperture magnitude lies outside, so it counts only while it keeps its Kron flux."""
    from photutils.aperture import CircularAperture, aperture_photometry

    seeing = {band: 1.3 for band in "gri"}
    size = 400
    field = make_field(CENTRE, size, size, clusters=None, field_galaxies=False, stars=False, noise=False,
                       seeing=seeing, seed=3)
    limit = float(m_star(settings.z_grid[-1:], DEFAULT_COSMOLOGY)[0]) + settings.faint_mag
    r_mag = np.array([limit - 2.5, limit - 1.5, limit - 0.8, limit - 0.35])
    grid = np.array([100.0, 300.0])
    x, y = (value.ravel() for value in np.meshgrid(grid, grid))
    galaxies = Table({"x": x, "y": y, "r_mag": r_mag, "g_mag": r_mag + 1.4, "i_mag": r_mag - 0.5,
                      "sersic_n": np.ones(4), "half_light_radius": np.full(4, 2.0), "axis_ratio": np.full(4, 0.8),
                      "position_angle": np.zeros(4)})
    rng = np.random.default_rng(3)
    images = {}
    for band in "gri":
        image = render.new_image(size, size)
        render.draw_galaxies(image, galaxies, band, field.psf[band])
        images[band] = image.array + rng.normal(0.0, 0.002, (size, size)).astype(np.float32)  # a deep sky
    aperture = CircularAperture(np.transpose([x, y]), r=settings.aperture_radius.to_value(u.arcsec) / 0.396)
    aperture_mag = 22.5 - 2.5 * np.log10(np.asarray(aperture_photometry(images["r"], aperture)["aperture_sum"]))
    assert aperture_mag[-1] > limit  # the faintest one is a red-sequence candidate by its total light only
    sources = measure_photometry(images, field.wcs, settings).sources
    distance = np.hypot(sources["x"][:, None] - x[None, :], sources["y"][:, None] - y[None, :])
    measured = sources[distance.argmin(axis=0)]
    assert np.all(distance.min(axis=0) < 2.0)  # one source each, at the flat core of a disc
    # Kron fluxes hold ~90 % of the light of these discs (half-light radius 2"), the aperture about half of it.
    assert np.all(np.abs(measured["r_mag"] - r_mag) < 0.25)
    assert np.all(measured["r_mag"] < aperture_mag - 0.5)
    assert measured["r_mag"][-1] <= limit
    weights = red_sequence_weights(measured, settings.z_grid[-1:], settings.bright_mag, settings.faint_mag,
                                   settings.colour_error_floor, DEFAULT_COSMOLOGY)
    assert weights[-1, 0] > 0


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
    assert table.colnames == list(ESTIMATE_COLUMNS + SCAN_COLUMNS) and len(table) == 2
    assert table["rs_peak"].tolist() == [True, False]
    # The scan of each trial z, for the survey's percolation: its peak is the estimate's significance.
    assert table["scan_excess"].shape == (2, len(settings.z_grid)) and np.isnan(table["scan_excess"][1]).all()
    best = np.argmax(table["scan_excess"][0])
    assert table["scan_excess"][0][best] / table["scan_noise"][0][best] == pytest.approx(table["rs_significance"][0],
                                                                                       rel=1e-5)
    assert table["z_est"][0] == pytest.approx(truth["z"], abs=0.03) and np.isnan(table["z_est"][1])
    assert "tile-3: no redshift or richness at RA 151.00000" in caplog.text
    # The cutout's sources per arcmin^2 (700 x 700 px of 0.396"), for the survey to flag crowded fields.
    n_sources = len(measure_photometry(field.images, field.wcs, settings).sources)
    assert n_sources > 50
    assert table.meta[SOURCE_DENSITY_KEY] == pytest.approx(n_sources / (700 * 0.396 / 60) ** 2, rel=1e-3)
    blank = {band: np.zeros((50, 50)) for band in "gri"}
    without = estimator.estimate(blank, field.wcs, [truth["ra"]], [truth["dec"]], "tile-4")
    assert not without["rs_peak"][0] and SOURCE_DENSITY_KEY not in without.meta
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
    # A background of an earlier richness estimator (the members' luminosity) is refused by name.
    old = background.copy()
    old.rename_column("members", "luminosity")
    write_background(old, tmp_path / "light.ecsv")
    with pytest.raises(ValueError, match=r"light.ecsv: background table lacks column\(s\) \['members'\].*earlier "
                                         "richness estimator: its column 'luminosity'.*measure it again"):
        read_background(tmp_path / "light.ecsv", settings)
    # So is one measured with another member definition (its member density would not fit).
    with pytest.raises(ValueError, match=r"background.ecsv: background measured with other DEEPCEE.REDSHIFT "
                                         r"settings: richness_faint_mag 0.94 \(now 1.5\)"):
        read_background(path, replace(settings, richness_faint_mag=1.5))
    # Or other sources: a background depends on the detection and the colour aperture too.
    with pytest.raises(ValueError, match=r"other DEEPCEE.REDSHIFT settings: detect_nsigma 1.5 \(now 2.0\), "
                                         r"aperture_radius 2.0 arcsec \(now 3.0 arcsec\)"):
        read_background(path, replace(settings, detect_nsigma=2.0, aperture_radius=3.0 * u.arcsec))
    # And one made by the photometry before SEP, which recorded none (its deblender found other sources).
    before = background.copy()
    del before.meta["photometry"]
    write_background(before, tmp_path / "photutils.ecsv")
    with pytest.raises(ValueError, match="photutils.ecsv: background measured with the photometry 'photutils "
                                         r"\(not recorded\)', not 'sep'; measure it again"):
        read_background(tmp_path / "photutils.ecsv", settings)
    # One written before aperture corrections existed was measured with colours as imaged: it fits those only.
    uncorrected = background.copy()
    uncorrected.meta["settings"] = {k: v for k, v in background.meta["settings"].items()
                                    if k != "aperture_correction"}
    write_background(uncorrected, tmp_path / "before_corrections.ecsv")
    read_background(tmp_path / "before_corrections.ecsv", replace(settings, aperture_correction=False))
    with pytest.raises(ValueError, match=r"before_corrections.ecsv: .*other DEEPCEE.REDSHIFT settings: "
                                         r"aperture_correction False \(now True\)"):
        read_background(tmp_path / "before_corrections.ecsv", replace(settings, aperture_correction=True))
    # And one counting the stars of the sky does not fit counts of its galaxies alone.
    with pytest.raises(ValueError, match=r"other DEEPCEE.REDSHIFT settings: exclude_point_sources False \(now True\)"):
        read_background(path, replace(settings, exclude_point_sources=True))
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
    assert aperture_coverage(masked, (299.5, 299.5), 60 * u.arcsec)[0] == pytest.approx(0.5, abs=0.03)
    assert aperture_coverage(unmasked, (299.5, 299.5), 60 * u.arcsec)[0] == 1.0
    with pytest.raises(ValueError, match="tile-3: no pixel is imaged"):
        measure_photometry(padded, field.wcs, settings, source="tile-3", covered=np.zeros((600, 600), bool))
    # The survey's tiles without detections: the same density from the detection step alone, r band only.
    assert detected_source_density({"r": padded["r"]}, field.wcs, settings, covered=covered) == masked.source_density
    assert detected_source_density(field.images, field.wcs, settings) == whole.source_density > 0


def test_galactic_reddening_is_read_from_the_dust_map_and_removed(settings, background, tmp_path):
    """A reddened cluster field gives a too-high redshift; dereddened by the map's E(B-V) it gives the
    unreddened field's estimate back, and each detection carries the E(B-V) of its position."""
    ebv = 0.15
    request = Table({"ra": [150.0], "dec": [2.0], "z": [0.15], "richness": [50.0]})
    field = make_field(CENTRE, 700, 700, clusters=request, seed=5, mag_limit=MAG_LIMIT)
    truth = field.clusters[0]
    reddened = {band: image * 10 ** (-0.4 * EXTINCTION_PER_EBV[band] * ebv) for band, image in field.images.items()}
    map_dir = write_sfd_like_map(tmp_path / "sfd", north=ebv, south=0.01)
    south = SkyCoord(0 * u.deg, -50 * u.deg, frame="galactic")
    np.testing.assert_allclose(galactic_reddening(SkyCoord([CENTRE, south.icrs]), map_dir), [ebv, 0.01], rtol=1e-6)

    plain = RedSequenceEstimator(settings, DEFAULT_COSMOLOGY, background)
    corrected = RedSequenceEstimator(settings, DEFAULT_COSMOLOGY, background, str(map_dir))
    at = ([truth["ra"]], [truth["dec"]])
    unreddened = plain.estimate(field.images, field.wcs, *at)
    as_imaged = plain.estimate(reddened, field.wcs, *at)
    dereddened = corrected.estimate(reddened, field.wcs, *at)
    assert "ebv" not in as_imaged.colnames and dereddened["ebv"][0] == pytest.approx(ebv)
    assert as_imaged["z_est"][0] > unreddened["z_est"][0] + 0.03  # g - r 0.15 mag too red
    assert dereddened["z_est"][0] == pytest.approx(unreddened["z_est"][0], abs=0.005)
    assert dereddened["z_est"][0] == pytest.approx(truth["z"], abs=0.03)
    sources = measure_photometry(reddened, field.wcs, settings).sources
    corrected_sources = deredden(measure_photometry(reddened, field.wcs, settings), ebv).sources
    np.testing.assert_allclose(sources["g_r"] - corrected_sources["g_r"], (3.303 - 2.285) * ebv)
    np.testing.assert_allclose(sources["r_mag"] - corrected_sources["r_mag"], 2.285 * ebv)


def test_a_dust_map_folder_without_the_map_is_refused_before_a_run(tmp_path):
    cfg = add_deepcee_config(get_cfg())
    cfg.DEEPCEE.REDSHIFT.DUST_MAP_DIR = str(tmp_path / "sfd")
    write_sfd_like_map(tmp_path / "sfd", 0.1, 0.1)
    (tmp_path / "sfd" / "SFD_dust_4096_sgp.fits").unlink()
    refused = (r"sfd: no SFD_dust_4096_sgp.fits in this dust map folder \(DEEPCEE.REDSHIFT.DUST_MAP_DIR, "
               r"--dust-map-dir\)\. Download .*dustmaps")
    with pytest.raises(FileNotFoundError, match=refused):
        RedSequenceEstimator.from_cfg(cfg)


def test_real_imaging_with_the_synthetic_calibration_is_warned_of(settings, background, shared_data, tmp_path,
                                                                  caplog):
    """The red-sequence background and colours of the synthetic sky do not fit real frames: the survey and the
    evaluator say what to set for them; for the simulator's frames, or with both set, nothing."""
    from deepcee_d2.data.frames import LocalFITSSource
    from deepcee_d2.data.sources import make_source

    synthetic = make_field(CENTRE, 100, 100, clusters=None, seed=1, mag_limit=18.0)
    (tmp_path / "synthetic").mkdir()
    for band in "gri":
        synthetic.hdu(band).writeto(tmp_path / "synthetic" / f"frame-{band}-f000.fits")
    plain = RedSequenceEstimator(settings, DEFAULT_COSMOLOGY, background)
    assert plain.calibration_warnings(LocalFITSSource(tmp_path / "synthetic")) == []
    real = LocalFITSSource(shared_data / "sdss")
    no_background, no_map = plain.calibration_warnings(real)
    assert no_background.startswith(f"12 real frames under {shared_data / 'sdss'}")
    assert "tools/measure_background.py" in no_background
    assert "DEEPCEE.REDSHIFT.DUST_MAP_DIR empty" in no_map and no_map in caplog.text
    assert plain.calibration_warnings(make_source("skyview"))[0].startswith("skyview imaging")
    calibrated = RedSequenceEstimator(settings, DEFAULT_COSMOLOGY, background, str(tmp_path / "sfd"), "sdss.ecsv")
    assert calibrated.calibration_warnings(real) == []


def piece_and_neighbour(settings, neighbour_z):
    """A rich z = 0.15 cluster (150 members drawn from its projected NFW profile), a poorer cluster 900 kpc
    west of it (25 members within 300 kpc) at ``neighbour_z``, and the estimates of detections on both, one
    100 kpc from the rich one's centre (the same cluster, detected twice) and one 700 kpc east of it on its
    outskirts (a piece), as a survey's tiles hold them. No background: every red-sequence galaxy is a member."""
    z, size = 0.15, 6000
    rng = np.random.default_rng(3)
    grid = np.linspace(0.0, MAX_RADIUS_R200, 2001)
    cumulative = projected_fraction(grid)
    radii = np.interp(rng.uniform(0.0, cumulative[-1], 150), cumulative, grid) * r200_from_richness(60).to_value(u.kpc)
    rich = catalogue_photometry(z, np.ones(len(radii)), radii, size=size, seed=1)
    neighbour = catalogue_photometry(neighbour_z, np.ones(25), rng.uniform(20.0, 300.0, 25), size=size, seed=2,
                                     east_kpc=-900.0)
    photometry = Photometry(vstack([rich.sources, neighbour.sources]), rich.wcs, rich.shape)
    x0, y0 = rich.wcs.world_to_pixel(CENTRE)
    east = [0.0, 100.0, 700.0]  # the rich cluster's centre, a second detection of it, the piece
    x = [x0 - east_pixels(kpc, z) for kpc in east] + [x0 + east_pixels(900.0, neighbour_z)]
    centres = rich.wcs.pixel_to_world(x, [y0] * 4)
    estimates = [estimate_redshift_richness(photometry, centre, DEFAULT_COSMOLOGY, empty_background(settings),
                                            settings) for centre in centres]
    rows = [dict(estimate.as_row(), ra=centre.ra.deg, dec=centre.dec.deg, scan_excess=estimate.scan_excess,
                 scan_noise=estimate.scan_noise) for centre, estimate in zip(centres, estimates)]
    return Table(rows=rows)


@pytest.mark.parametrize("neighbour_z", [0.15, 0.3])
def test_percolation_takes_the_peak_of_a_piece_of_a_richer_cluster_but_not_of_a_neighbour(settings, neighbour_z):
    """On their own, all four detections show a red sequence; percolated, the piece does not, and nothing else
    changes. In any order of the rows."""
    alone = piece_and_neighbour(settings, neighbour_z)
    assert all(alone["rs_peak"])
    for order in ([0, 1, 2, 3], [2, 3, 1, 0]):
        percolated = percolate(alone[order], 500 * u.kpc, DEFAULT_COSMOLOGY, settings, min_drop=1.0)
        percolated = percolated[np.argsort(order)]
        assert list(percolated["rs_peak"]) == [True, True, False, True]
        assert percolated["rs_significance"][2] < 1.0 < settings.min_significance < alone["rs_significance"][2]
        assert np.isnan([percolated["z_est"][2], percolated["richness"][2]]).all()
        # The neighbour keeps its redshift, the others their z and richness and significance.
        assert percolated["z_est"][3] == pytest.approx(neighbour_z, abs=0.02)
        keep = [0, 1, 3]
        assert list(percolated["z_est"][keep]) == list(alone["z_est"][keep])
        assert list(percolated["richness"][keep]) == list(alone["richness"][keep])
        assert list(percolated["rs_significance"][[0, 1]]) == list(alone["rs_significance"][[0, 1]])
    # A peak falls only when the richer clusters explain at least min_drop sigma of it.
    lenient = percolate(alone, 500 * u.kpc, DEFAULT_COSMOLOGY, settings, min_drop=alone["rs_significance"][2] + 0.1)
    assert all(lenient["rs_peak"]) and lenient["rs_significance"][2] == alone["rs_significance"][2]


def test_each_true_cluster_is_told_where_the_survey_lost_it(settings):
    """`loss_stages` follows the catalogue's making: a piece of the rich cluster loses its peak (percolated), a
    cluster 300 kpc from the rich one has only a detection the rich one absorbs (merged away), and copies of
    the neighbour's detection far away are lost to their score, the crowded-sky mask or a missing peak."""
    detections = piece_and_neighbour(settings, 0.3)
    detections["score"] = [0.99, 0.9, 0.98, 0.95]
    detections["source_density"] = 5.0
    detections["tile"] = "t0"
    far = vstack([detections[3:4]] * 3)
    far["dec"] += [1.0, 2.0, 3.0]
    far["score"] = [0.3, 0.9, 0.9]
    far["source_density"][1] = 50.0
    far["rs_peak"][2] = False
    detections = vstack([detections, far])
    coords = SkyCoord(detections["ra"], detections["dec"], unit=u.deg)
    kpc_300 = 300 * u.kpc / DEFAULT_COSMOLOGY.kpc_proper_per_arcmin(0.15)
    beside = coords[0].directional_offset_by(coords[0].position_angle(coords[2]), kpc_300)
    positions = SkyCoord([*coords[[0, 2, 3, 4, 5, 6]], beside, coords[0].directional_offset_by(0, 5 * u.deg)])
    truth = Table({"id": [f"c{i}" for i in range(8)], "ra": positions.ra.deg, "dec": positions.dec.deg,
                   "z": [0.15, 0.15, 0.3, 0.3, 0.3, 0.3, 0.15, 0.3]})
    cfg = add_deepcee_config(get_cfg())
    stages = loss_stages(detections, truth, cfg, 0.5)
    assert list(stages["id"]) == list(truth["id"])
    assert list(stages["stage"]) == ["found", "percolated", "found", "not detected", "crowded sky",
                                     "no red sequence", "merged away", "not detected"]
    assert np.allclose(stages["best_score"][:7], [0.99, 0.98, 0.95, 0.3, 0.9, 0.9, 0.9])
    assert np.isnan(stages["best_score"][7])
    # Without percolation the piece is a candidate of its own; at 0.2 the low-scored detection is found.
    cfg.merge_from_list(["DEEPCEE.SURVEY.PERCOLATE", "False"])
    assert list(loss_stages(detections, truth, cfg, 0.2)["stage"][[1, 3]]) == ["found", "found"]
    # A truth outside the evaluation's redshift window is not looked for.
    assert len(loss_stages(detections, truth[:1].copy(), cfg, 0.5)) == 1
    far_z = truth[:1].copy()
    far_z["z"] = 0.9
    assert len(loss_stages(detections, far_z, cfg, 0.5)) == 0


def test_a_survey_percolates_when_its_catalogue_is_built_unless_switched_off(settings, caplog):
    """`merged_candidates` percolates (DEEPCEE.SURVEY.PERCOLATE, on) and drops the scans; switched off, or for
    tiles without the scans, the piece stays a candidate (with a warning for the tiles)."""
    detections = piece_and_neighbour(settings, 0.3)
    detections["score"] = [0.99, 0.9, 0.98, 0.95]
    detections["source_density"] = 5.0
    detections["tile"] = "t0"

    def candidates(table, *opts):
        cfg = add_deepcee_config(get_cfg())
        cfg.merge_from_list(list(opts))
        merged = merged_candidates(table, cfg)
        assert not set(SCAN_COLUMNS) & set(merged.colnames)
        return sorted(np.round(merged["score"], 2))

    assert candidates(detections) == [0.95, 0.99]
    assert candidates(detections, "DEEPCEE.SURVEY.PERCOLATE", "False") == [0.95, 0.98, 0.99]
    assert "not percolated" not in caplog.text
    assert candidates(detections[[name for name in detections.colnames if name not in SCAN_COLUMNS]]) \
        == [0.95, 0.98, 0.99]
    assert "tiles without the red-sequence scans" in caplog.text
    # Tiles from before the BCG magnitudes were kept: candidates stand on their best-scored detection, with a warning.
    assert "hold no BCG magnitudes" not in caplog.text
    assert candidates(detections[[name for name in detections.colnames if name != "bcg_rmag"]]) == [0.95, 0.99]
    assert "hold no BCG magnitudes" in caplog.text

"""The synthetic SDSS sky: measured counts, depth, red-sequence colours, WCS, determinism, errors, resume."""
import runpy
from pathlib import Path

import astropy.units as u
import galsim
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.stats import sigma_clipped_stats
from astropy.table import Table
from scipy import signal

from deepcee_d2.data.catalogs import CLUSTER_COLUMNS, read_catalog
from deepcee_d2.data.frames import LocalFITSSource
from deepcee_d2.sky import celestial_wcs
from deepcee_d2.synthetic import BANDS, ClusterSpec, make_field, write_survey
from deepcee_d2.synthetic import colours, galaxies, instrument, render
from deepcee_d2.synthetic.clusters import RICHNESS_CUT_MAG, _draw_projected_radii, projected_fraction

REPO = Path(__file__).resolve().parents[1]
CENTRE = SkyCoord(150.0 * u.deg, 2.0 * u.deg)


def test_recovered_galaxy_counts_match_the_number_count_model():
    """Detect sources on a noiseless galaxies-only r image (threshold 0.02 nanomaggies per pixel, below the sky
    noise of 0.03, so low-surface-brightness discs are found too), measure Kron magnitudes and compare the counts
    per magnitude bin with the model that made them and with the catalogue that was drawn."""
    from photutils.segmentation import SourceCatalog, detect_sources

    size = 1600
    field = make_field(CENTRE, size, size, clusters=None, stars=False, noise=False, artefacts=False, bands=("r",),
                       seed=11)
    image = field.images["r"]
    segments = detect_sources(image, threshold=0.02, n_pixels=5)
    mags = instrument.nanomaggies_to_mag(SourceCatalog(image, segments).kron_flux)
    area = (size * instrument.PIXEL_SCALE) ** 2
    inside = (field.galaxies["x"] >= -0.5) & (field.galaxies["x"] < size - 0.5) & \
             (field.galaxies["y"] >= -0.5) & (field.galaxies["y"] < size - 0.5)
    for low in (18.0, 19.0, 20.0):
        expected = galaxies.expected_galaxies(area, low, low + 1)
        recovered = np.sum((mags >= low) & (mags < low + 1))
        catalogued = np.sum(inside & (field.galaxies["r_mag"] >= low) & (field.galaxies["r_mag"] < low + 1))
        assert abs(recovered - expected) < 3 * np.sqrt(expected) + 1, (low, recovered, expected)
        assert abs(recovered - catalogued) <= 0.15 * catalogued + 3, (low, recovered, catalogued)
    assert galaxies.expected_galaxies(area, 20, 21) > 2.5 * galaxies.expected_galaxies(area, 19, 20)


def test_five_sigma_depth_measured_from_the_noise_is_sdss_like():
    field = make_field(CENTRE, 400, 400, clusters=None, field_galaxies=False, stars=False, artefacts=False, seed=3)
    for band in BANDS:
        _, _, sigma = sigma_clipped_stats(field.images[band])
        psf_image = render.new_image(301, 301)  # the aureole reaches 128 px
        star = Table({"x": [150.0], "y": [150.0], f"{band}_mag": [15.0]})
        psf = instrument.PSF.from_header(field.header(band))
        render.draw_stars(psf_image, star, band, psf)
        profile = render.add_psf_wing(psf_image.array.astype(np.float64), psf)
        profile = profile / profile.sum()
        depth = instrument.nanomaggies_to_mag(5 * sigma * np.sqrt(1.0 / np.sum(profile**2)))
        assert depth == pytest.approx(field.depth(band), abs=0.03), band
    assert 22.2 < field.depth("r") < 23.0


@pytest.mark.parametrize("z", [0.1, 0.25])
def test_red_sequence_colours_of_injected_members(z):
    """Aperture colours of isolated bright red members on a noiseless render follow the red sequence at z."""
    from photutils.aperture import CircularAperture, aperture_photometry

    request = Table({"ra": [150.0], "dec": [2.0], "z": [z], "richness": [60.0]})
    seeing = {band: 1.3 for band in BANDS}
    field = make_field(CENTRE, 900, 900, clusters=request, field_galaxies=False, stars=False, noise=False,
                       seeing=seeing, seed=5)
    members = field.galaxies
    bright = members["red"] & (members["r_mag"] < field.clusters["m_star_r"][0] + 1.5)
    inside = (members["x"] > 20) & (members["x"] < 880) & (members["y"] > 20) & (members["y"] < 880)
    xy = np.stack([members["x"], members["y"]], axis=1)
    nearest = np.sort(np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1)), axis=1)[:, 1]
    chosen = bright & inside & (nearest > 15)
    assert chosen.sum() >= 8
    apertures = CircularAperture(xy[chosen], r=3.0 / 0.396)
    flux = {band: aperture_photometry(field.images[band], apertures)["aperture_sum"] for band in BANDS}
    measured_gr = np.median(-2.5 * np.log10(flux["g"] / flux["r"]))
    measured_ri = np.median(-2.5 * np.log10(flux["r"] / flux["i"]))
    model_gr, model_ri = colours.red_sequence(z, members["i_mag"][chosen])
    assert measured_gr == pytest.approx(np.median(model_gr), abs=0.04)
    assert measured_ri == pytest.approx(np.median(model_ri), abs=0.03)
    expected = {0.1: (0.938, 0.407), 0.25: (1.392, 0.518)}[z]  # redMaPPer DR8 ridge line at the pivot
    assert measured_gr == pytest.approx(expected[0], abs=0.08)
    assert measured_ri == pytest.approx(expected[1], abs=0.05)


def test_every_cluster_centre_round_trips_through_the_written_wcs(synthetic_survey):
    """Each truth BCG position, through the frame's own header WCS, lands within 0.1 px of the BCG's light.

    The BCG's centroid is measured with GalSim's adaptive moments after the other galaxies of the written
    source list (re-rendered at the header's seeing) are subtracted from the frame, so neighbours do not pull it.
    """
    import galsim

    truth = read_catalog(synthetic_survey / "clusters.fits")
    assert len(truth) == 4
    for cluster in truth:
        with fits.open(synthetic_survey / cluster["field"] / "frame-r.fits") as hdul:
            image, header = hdul[0].data.astype(float), hdul[0].header
        wcs = celestial_wcs(header)
        bcg = SkyCoord(cluster["bcg_ra"] * u.deg, cluster["bcg_dec"] * u.deg)
        x, y = wcs.world_to_pixel(bcg)
        assert bcg.separation(wcs.pixel_to_world(x, y)) < 1e-3 * u.arcsec
        others = Table.read(synthetic_survey / cluster["field"] / "galaxies.fits")
        others = others[~np.asarray(others["bcg"]) | (np.asarray(others["cluster_id"]).astype(str) != cluster["id"])]
        neighbours = render.new_image(image.shape[1], image.shape[0])
        render.draw_galaxies(neighbours, others, "r", instrument.PSF.from_header(header))
        alone = galsim.Image(np.ascontiguousarray(image - neighbours.array), xmin=0, ymin=0)
        x0, y0 = int(round(float(x))), int(round(float(y)))
        stamp = alone[galsim.BoundsI(x0 - 20, x0 + 20, y0 - 20, y0 + 20)]
        moments = galsim.hsm.FindAdaptiveMom(stamp, guess_centroid=galsim.PositionD(float(x), float(y)))
        assert abs(moments.moments_centroid.x - x) < 0.1
        assert abs(moments.moments_centroid.y - y) < 0.1
        assert cluster["x"] == pytest.approx(float(x), abs=1e-6)


def test_survey_layout_headers_and_truth_are_read_by_the_data_module(synthetic_survey):
    truth = read_catalog(synthetic_survey / "clusters.fits")
    assert truth.colnames[:len(CLUSTER_COLUMNS)] == list(CLUSTER_COLUMNS)
    assert set(truth["field"]) == {"f000", "f001"}
    assert np.all(truth["bcg_ra"] == truth["ra"]) and np.all(truth["r200"] > 0.5)
    fields = Table.read(synthetic_survey / "fields.ecsv", format="ascii.ecsv")
    assert list(fields["field"]) == ["f000", "f001"] and np.all(fields["nx"] == 500)
    header = fits.getheader(synthetic_survey / "f000" / "frame-g.fits")
    assert header["FILTER"] == "g" and header["BUNIT"] == "nanomaggy" and header["PIXSCALE"] == 0.396
    assert 0.9 < header["SEEING"] < 1.9 and header["SKYLEVEL"] > 0
    assert "DATE" not in header
    cutout = LocalFITSSource(synthetic_survey).cutout(SkyCoord(truth["ra"][0], truth["dec"][0], unit=u.deg), 64)
    assert set(cutout.images) == set(BANDS) and cutout.images["r"][32, 32] > 1.0


def test_richness_in_the_truth_is_counted_from_the_written_members(synthetic_survey):
    truth = read_catalog(synthetic_survey / "clusters.fits")
    for cluster in truth:
        members = Table.read(synthetic_survey / cluster["field"] / "galaxies.fits")
        mine = members[np.asarray(members["cluster_id"]).astype(str) == cluster["id"]]
        luminosity = 10 ** (-0.4 * (np.asarray(mine["r_mag"]) - cluster["m_star_r"]))
        counted = (np.asarray(mine["distance_r200"]) <= 1) & (luminosity >= 10 ** (-0.4 * RICHNESS_CUT_MAG))
        assert counted.sum() == cluster["n_members"]
        assert luminosity[counted].sum() == pytest.approx(cluster["richness"], rel=1e-6)
        assert mine["r_mag"][np.asarray(mine["bcg"])][0] == pytest.approx(cluster["bcg_rmag"])
        assert cluster["bcg_rmag"] <= mine["r_mag"].min() + 1e-9


def test_projected_fraction_follows_the_members_drawn():
    """The share of the members within r200 that lie within a radius is what the simulator draws."""
    radii = _draw_projected_radii(np.random.default_rng(3), 200_000)
    within_r200 = np.sum(radii <= 1.0)
    for radius in (0.25, 0.5, 1.5, 2.0):
        assert projected_fraction(radius) == pytest.approx(np.sum(radii <= radius) / within_r200, rel=0.02)
    assert projected_fraction(1.0) == pytest.approx(1.0) and projected_fraction(0.0) == pytest.approx(0.0)


def _small_survey(root, seed):
    write_survey(root, 1, 200, 160, clusters=ClusterSpec(z_range=(0.2, 0.3), richness_range=(20, 30)), seed=seed,
                 progress=False)
    return {path.relative_to(root): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path):
    first = _small_survey(tmp_path / "a", seed=4)
    second = _small_survey(tmp_path / "b", seed=4)
    assert first.keys() == second.keys() and Path("f000/frame-r.fits") in first
    assert first == second
    third = _small_survey(tmp_path / "c", seed=5)
    assert third[Path("f000/frame-r.fits")] != first[Path("f000/frame-r.fits")]


def test_two_worker_processes_write_the_same_bytes(tmp_path):
    spec = ClusterSpec(per_field=1, z_range=(0.2, 0.3), richness_range=(20, 30))
    files = []
    for workers in (1, 2):
        root = tmp_path / f"workers{workers}"
        write_survey(root, 3, 160, 160, clusters=spec, seed=6, workers=workers, progress=False)
        files.append({path.relative_to(root): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()})
    assert len(files[0]) == 3 * 8 + 3 and files[0] == files[1]  # + clusters.fits, fields.ecsv, survey.json
    with pytest.raises(ValueError, match="workers"):
        write_survey(tmp_path / "bad", 1, 160, 160, workers=0)


def test_resume_skips_finished_fields_and_refuses_other_parameters(tmp_path):
    spec = ClusterSpec(per_field=1, z_range=(0.2, 0.3), richness_range=(20, 30))
    write_survey(tmp_path, 2, 160, 160, clusters=spec, seed=9, progress=False)
    kept = tmp_path / "f000" / "frame-r.fits"
    kept_stamp = kept.stat().st_mtime_ns
    redone = tmp_path / "f001" / "frame-g.fits"
    redone_bytes = redone.read_bytes()
    (tmp_path / "f001" / "field.ecsv").unlink()  # as if interrupted before the field finished
    (tmp_path / "clusters.fits").unlink()
    clusters, fields = write_survey(tmp_path, 2, 160, 160, clusters=spec, seed=9, progress=False)
    assert kept.stat().st_mtime_ns == kept_stamp
    assert redone.read_bytes() == redone_bytes
    assert sorted(read_catalog(tmp_path / "clusters.fits")["field"]) == ["f000", "f001"]
    assert list(fields["field"]) == ["f000", "f001"] and len(clusters) == 2
    with pytest.raises(ValueError, match="seed"):
        write_survey(tmp_path, 2, 160, 160, clusters=spec, seed=10, progress=False)
    assert not list(tmp_path.rglob("*.tmp"))


def test_impossible_inputs_raise_errors_naming_the_parameter():
    with pytest.raises(ValueError, match="nx"):
        make_field(CENTRE, -5, 100)
    with pytest.raises(ValueError, match="ny"):
        make_field(CENTRE, 100, 0)
    with pytest.raises(ValueError, match="z_range.*0.05-0.6"):
        ClusterSpec(z_range=(0.01, 0.3))
    with pytest.raises(ValueError, match="z.*0.9"):
        make_field(CENTRE, 100, 100, clusters=Table({"ra": [150.0], "dec": [2.0], "z": [0.9], "richness": [30.0]}))
    with pytest.raises(ValueError, match="band 'u'"):
        make_field(CENTRE, 100, 100, bands=("g", "u"))
    with pytest.raises(ValueError, match="outside"):
        make_field(CENTRE, 100, 100, clusters=Table({"ra": [151.0], "dec": [2.0], "z": [0.2], "richness": [30.0]}))
    with pytest.raises(ValueError, match="min_separation"):
        make_field(CENTRE, 200, 200, clusters=ClusterSpec(per_field=3, placement="random"))


def test_random_placement_keeps_clusters_apart_and_allows_edges():
    spec = ClusterSpec(per_field=4, placement="random", min_separation=100 * u.arcsec, z_range=(0.3, 0.4),
                       richness_range=(20, 25))
    field = make_field(CENTRE, 1200, 1200, clusters=spec, field_galaxies=False, stars=False, noise=False,
                       bands=("r",), seed=2)
    xy = np.stack([field.clusters["x"], field.clusters["y"]], axis=1)
    separation = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))[np.triu_indices(4, 1)]
    assert separation.min() * 0.396 >= 100
    assert np.all((xy > -0.5) & (xy < 1199.5))
    centred = make_field(CENTRE, 301, 201, clusters=ClusterSpec(), field_galaxies=False, stars=False,
                         noise=False, bands=("r",), seed=2)
    assert (centred.clusters["x"][0], centred.clusters["y"][0]) == pytest.approx((150.0, 100.0), abs=1e-6)


def test_centre_placement_puts_the_first_cluster_at_the_centre_and_its_neighbours_apart():
    spec = ClusterSpec(per_field=3, placement="centre", min_separation=120 * u.arcsec, z_range=(0.3, 0.4),
                       richness_range=(20, 25), edge_margin=20 * u.arcsec)
    field = make_field(CENTRE, 1001, 901, clusters=spec, field_galaxies=False, stars=False, noise=False,
                       bands=("r",), seed=4)
    xy = np.stack([field.clusters["x"], field.clusters["y"]], axis=1)
    assert list(field.clusters["id"]) == ["synthetic-c0", "synthetic-c1", "synthetic-c2"]
    assert tuple(xy[0]) == pytest.approx((500.0, 450.0), abs=1e-6)
    separation = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))[np.triu_indices(3, 1)]
    assert separation.min() * 0.396 >= 120
    assert np.all((xy[1:] >= 20 / 0.396 - 1e-6) & (xy[1:] <= np.array([1000, 900]) - 20 / 0.396 + 1e-6))
    with pytest.raises(ValueError, match="min_separation"):
        make_field(CENTRE, 301, 301, clusters=ClusterSpec(per_field=2, placement="centre"), field_galaxies=False,
                   stars=False, noise=False, bands=("r",))


def test_saturation_clips_and_bleeds_along_the_column_conserving_charge():
    counts = np.full((60, 5), 100.0)
    counts[28:32, 2] = [4e4, 9e4, 9e4, 4e4]
    saturated = instrument.saturate(counts, level=25000.0)
    assert saturated.max() == 25000.0 and saturated.sum() == pytest.approx(counts.sum())
    assert np.sum(saturated[:, 2] == 25000.0) > 4 and np.all(saturated[:, [0, 1, 3, 4]] == 100.0)


def test_command_line_writes_a_survey_and_reports_bad_input(tmp_path, capsys):
    tool = runpy.run_path(str(REPO / "tools" / "make_synthetic_sky.py"), run_name="tool")
    assert tool["main"]([str(tmp_path / "sky"), "--n-fields", "2", "--size", "160", "120", "--z-range", "0.2",
                         "0.3", "--no-progress", "--seed", "3"]) == 0
    assert "2 fields, 2 clusters" in capsys.readouterr().out
    assert fits.getdata(tmp_path / "sky" / "f001" / "frame-i.fits").shape == (120, 160)
    with pytest.raises(ValueError, match="z_range"):
        tool["main"]([str(tmp_path / "bad"), "--z-range", "0.01", "0.3"])
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'centres.csv'}: --centres table not found"):
        tool["main"]([str(tmp_path / "bad"), "--centres", str(tmp_path / "centres.csv")])


@pytest.mark.parametrize("beta", [2.5, 3.7])
def test_psf_fwhm_follows_from_the_effective_width_and_the_star_has_the_drawn_shape(beta):
    """The seeing drawn is SDSS's effective width (Gaussian FWHM of the same noise-equivalent area): the NEA of
    the Moffat drawn finely gives it back; a star rendered with the PSF has the Moffat FWHM and beta (astropy
    fit) and the ellipticity and angle (second moments) drawn."""
    from astropy.modeling import fitting, models

    fwhm = instrument.effective_width_to_fwhm(1.43, beta)
    psf = instrument.PSF(fwhm, beta, ellipticity=0.06, angle=30.0)
    core = instrument.PSF(fwhm, beta).profile().drawImage(nx=1024, ny=1024, scale=0.05, method="no_pixel").array
    aureole = galsim.Moffat(beta=instrument.WING_BETA, scale_radius=instrument.WING_SCALE_RADIUS).drawImage(
        nx=1024, ny=1024, scale=0.05, method="no_pixel").array
    whole = (1 - instrument.WING_FRACTION) * core / core.sum() + instrument.WING_FRACTION * aureole
    nea = 1.0 / np.sum(whole**2) * 0.05**2  # unit flux; the aureole beyond the grid adds nothing to sum(p^2)
    assert 2.3548 / np.sqrt(4 * np.pi) * np.sqrt(nea) == pytest.approx(1.43, rel=0.01)
    assert fwhm < 1.43 * 0.8  # the Moffat's wings and the aureole widen the effective width beyond the FWHM

    size, scale = 201, 0.099  # a quarter of an SDSS pixel: the fit sees the profile, not the pixel
    image = psf.profile().drawImage(nx=size, ny=size, scale=scale, method="no_pixel").array
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    round_image = instrument.PSF(fwhm, beta).profile().drawImage(nx=size, ny=size, scale=scale,
                                                                 method="no_pixel").array
    fit = fitting.LMLSQFitter()(models.Moffat2D(round_image.max(), 0, 0, 4.0, 3.0), x, y, round_image)
    assert fit.fwhm * scale == pytest.approx(fwhm, rel=0.02) and fit.alpha.value == pytest.approx(beta, rel=0.02)
    inner = image * (np.hypot(x, y) < 3 * fwhm / scale)
    xx, yy, xy = (np.sum(inner * term) / inner.sum() for term in (x * x, y * y, x * y))
    major, minor = np.sqrt(np.linalg.eigvalsh([[xx, xy], [xy, yy]])[::-1])
    assert 1 - minor / major == pytest.approx(0.06, abs=0.01)
    # North up, east left (-x): position angle 30 deg east of north puts the major axis at x < 0, y > 0.
    axis = np.degrees(0.5 * np.arctan2(2 * xy, xx - yy))  # from +x, modulo 180
    assert (axis - (90.0 + 30.0) + 90.0) % 180.0 - 90.0 == pytest.approx(0.0, abs=2.0)


def test_the_aureole_moves_its_share_of_the_light_outwards_and_keeps_the_flux():
    """A star drawn with the core and spread by `render.add_psf_wing`: the same total, WING_FRACTION of it in the
    aureole's profile far from the core (beyond 6", where the core holds < 0.2 %), none moved without one."""
    image = render.new_image(401, 401)
    psf = instrument.PSF(1.1, 3.0)
    render.draw_stars(image, Table({"x": [200.0], "y": [200.0], "r_mag": [15.0]}), "r", psf)
    core = image.array.astype(np.float64)
    bare = render.add_psf_wing(core.copy(), instrument.PSF(1.1, 3.0, wing=0.0))
    spread = render.add_psf_wing(core.copy(), psf)
    assert np.array_equal(bare, core)
    assert spread.sum() == pytest.approx(core.sum(), rel=1e-6)
    y, x = np.indices(core.shape) - 200
    outside = np.hypot(x, y) * 0.396 > 6.0
    assert core[outside].sum() < 2e-3 * core.sum()
    kernel = instrument.wing_kernel()
    share = instrument.WING_FRACTION
    expected = (1 - share) * core + share * signal.fftconvolve(core, kernel, mode="same")  # centred, not shifted
    assert np.allclose(spread, expected, rtol=0, atol=1e-9 * core.max())
    ky, kx = np.indices(kernel.shape) - len(kernel) // 2
    aureole = share * kernel[np.hypot(kx, ky) * 0.396 > 6.0].sum()
    assert 0.1 * share < aureole < 0.5 * share
    # Beyond 6" the light is the aureole's (the core's own width carries a little more of it out).
    assert spread[outside].sum() / spread.sum() == pytest.approx(aureole, rel=0.2)
    with pytest.raises(ValueError, match="aureole"):
        instrument.PSF(1.0, wing=1.0)


def test_drawn_psfs_span_the_stated_ranges_and_scale_with_wavelength():
    rng = np.random.default_rng(2)
    draws = [instrument.draw_psfs(rng) for _ in range(400)]
    beta = np.array([d["r"].beta for d in draws])
    ellipticity = np.array([d["r"].ellipticity for d in draws])
    assert instrument.MOFFAT_BETA_RANGE[0] <= beta.min() and beta.max() <= instrument.MOFFAT_BETA_RANGE[1]
    assert instrument.PSF_ELLIPTICITY_RANGE[0] <= ellipticity.min() <= ellipticity.max() <= 0.07
    assert all(d["g"].beta == d["r"].beta == d["i"].beta and d["g"].angle == d["i"].angle for d in draws)
    width = np.array([d["r"].effective_width() for d in draws])
    assert np.median(width) == pytest.approx(instrument.MEDIAN_SEEING_R, abs=0.03)
    ratio = np.median([d["g"].effective_width() / d["r"].effective_width() for d in draws])
    assert ratio == pytest.approx(instrument.SEEING_RATIO["g"], abs=0.02) and ratio > 1.05
    given = instrument.draw_psfs(np.random.default_rng(2), seeing={"g": 1.5, "r": 1.2, "i": 1.1})
    assert {band: psf.fwhm for band, psf in given.items()} == {"g": 1.5, "r": 1.2, "i": 1.1}
    with pytest.raises(ValueError, match="beta"):
        instrument.PSF(1.0, beta=1.0)


def test_background_structure_and_cosmic_rays():
    """One smooth shape for every band, with the drawn range of 256 px block means and a zero median; cosmic
    rays: a few sharp tracks per SDSS frame, independent per band."""
    import cv2

    from deepcee_d2.synthetic import artefacts

    ranges = []
    for seed in range(12):
        background = artefacts.draw_background(np.random.default_rng(seed), 1024, 768)
        blocks = {band: cv2.resize(image, (4, 3), interpolation=cv2.INTER_AREA) for band, image in background.items()}
        ranges.append(np.ptp(blocks["r"]))
        assert abs(np.median(background["r"])) < 1e-12
        assert np.corrcoef(background["g"].ravel(), background["i"].ravel())[0, 1] > 0.999
        assert np.ptp(background["i"]) > np.ptp(background["g"])  # scales with the square root of the sky
    assert 0.002 < np.median(ranges) < 0.015
    tracks = [artefacts.draw_cosmic_rays(np.random.default_rng(seed), 2048, 1489, "r") for seed in range(50)]
    counts = [cv2.connectedComponents((image > 0).astype(np.uint8))[0] - 1 for image in tracks]  # less background
    assert 3.0 < np.mean(counts) < 5.0
    lit = np.concatenate([image[image > 0] for image in tracks])
    assert lit.min() >= 5 * instrument.pixel_noise("r") * 0.999
    assert np.median([np.count_nonzero(image) for image in tracks]) < 40  # a few pixels each
    field = make_field(CENTRE, 300, 300, clusters=None, field_galaxies=False, stars=False, noise=False, seed=4)
    quiet = make_field(CENTRE, 300, 300, clusters=None, field_galaxies=False, stars=False, noise=False, seed=4,
                       artefacts=False)
    assert np.all(quiet.images["r"] == 0) and np.ptp(field.images["r"]) > 0
    assert field.header("r")["ARTEFACT"] and not quiet.header("r")["ARTEFACT"]


def test_every_field_holds_unlabelled_groups_below_the_cut():
    from deepcee_d2.synthetic import groups

    area = (3000 * instrument.PIXEL_SCALE) ** 2
    expected = groups.expected_groups(area)
    assert 52 * area.to_value(u.deg**2) == pytest.approx(expected, rel=0.02)
    spec = ClusterSpec(per_field=1, z_range=(0.1, 0.2), richness_range=(40, 60), min_members=20)
    field = make_field(CENTRE, 3000, 3000, clusters=spec, stars=False, noise=False, artefacts=False,
                       bands=("r",), mag_limit=20.0, seed=8)
    assert len(field.clusters) == 1 and len(field.groups) > 0
    assert np.all(field.groups["n_members"] < 20) and np.all(field.groups["richness"] > 0)
    ids = np.asarray(field.galaxies["cluster_id"]).astype(str)
    for group in field.groups:
        assert group["id"].startswith("synthetic-grp") and np.count_nonzero(ids == group["id"]) == group["n_galaxies"]
    default = make_field(CENTRE, 3000, 3000, clusters=None, stars=False, noise=False, artefacts=False,
                         bands=("r",), mag_limit=20.0, seed=8)
    assert np.all(default.groups["n_members"] < groups.WHL12_MIN_MEMBERS)
    alone = make_field(CENTRE, 3000, 3000, clusters=spec, field_galaxies=False, stars=False, noise=False,
                       artefacts=False, bands=("r",), mag_limit=20.0, seed=8)
    assert len(alone.groups) == 0 and set(np.asarray(alone.galaxies["cluster_id"]).astype(str)) == {"synthetic-c0"}

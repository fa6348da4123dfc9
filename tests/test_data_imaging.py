"""Cutouts on one grid from local frames, SDSS (recorded frames) and SkyView (recorded images); the cache."""
import shutil
import warnings

import numpy as np
import pytest
import astropy.units as u
import requests
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS
from scipy import ndimage

from deepcee_d2.data.imaging import (
    ImagingError,
    LocalFITSSource,
    SDSSSource,
    SkyViewSource,
    cutout_grid,
    cutout_paths,
    get_cutout,
    make_source,
    with_retries,
)

BCG = SkyCoord(150.0 * u.deg, 2.0 * u.deg)  # SYN-0 of the tiny survey (conftest)
BCG_FLUX = {"g": 60.0, "r": 150.0, "i": 220.0}


def blob_centroid(image, grid, coord, radius_px=8):
    """Light-weighted centroid (astropy pixel convention) of the blob near ``coord``."""
    x0, y0 = grid.world_to_pixel(coord)
    yy, xx = np.mgrid[0:image.shape[0], 0:image.shape[1]]
    near = (xx - x0) ** 2 + (yy - y0) ** 2 <= radius_px**2
    weights = np.where(near, image, 0.0)
    row, column = ndimage.center_of_mass(weights)
    return column, row, weights.sum()


def copy_survey(tiny_survey, tmp_path):
    return shutil.copytree(tiny_survey, tmp_path / "survey")


def test_cutout_grid_is_centred_north_up_at_the_pixel_scale():
    grid = cutout_grid(BCG, 200, 0.396 * u.arcsec)
    x, y = grid.world_to_pixel(BCG)
    assert x == pytest.approx(99.5) and y == pytest.approx(99.5)  # the centre of a 200 px image
    north = grid.pixel_to_world(99.5, 199.5)
    assert north.dec > BCG.dec and north.separation(BCG).to_value(u.arcsec) == pytest.approx(100 * 0.396, rel=1e-6)


def test_bands_with_different_wcs_land_on_one_grid(tiny_survey):
    cutout = LocalFITSSource(tiny_survey).cutout(BCG, 200)
    assert set(cutout.images) == {"g", "r", "i"}
    positions = {band: blob_centroid(cutout.images[band], cutout.wcs, BCG) for band in "gri"}
    x_true, y_true = cutout.wcs.world_to_pixel(BCG)
    for band, (x, y, flux) in positions.items():
        # The frames' reference pixels differ by up to 3.6 px; on the common grid the BCG is where it belongs.
        assert abs(x - x_true) < 0.1 and abs(y - y_true) < 0.1, band
        # Flux within 8 px of a sigma = 3 px Gaussian (97 %) plus a sliver of a member: conserved.
        assert flux == pytest.approx(BCG_FLUX[band] * (1 - np.exp(-8**2 / (2 * 3**2))), rel=0.03), band


def test_coarser_cutout_keeps_total_flux(tiny_survey):
    fine = LocalFITSSource(tiny_survey).cutout(BCG, 200, 0.396 * u.arcsec)
    coarse = LocalFITSSource(tiny_survey).cutout(BCG, 100, 0.792 * u.arcsec)
    _, _, fine_flux = blob_centroid(fine.images["r"], fine.wcs, BCG, radius_px=12)
    _, _, coarse_flux = blob_centroid(coarse.images["r"], coarse.wcs, BCG, radius_px=6)
    assert coarse_flux == pytest.approx(fine_flux, rel=0.03)


def test_position_partly_outside_the_field_is_refused(tiny_survey):
    edge = BCG.spherical_offsets_by(0 * u.arcsec, 110 * u.arcsec)  # the field reaches 118.8" north
    with pytest.raises(ImagingError, match=r"lies outside the imaging coverage"):
        LocalFITSSource(tiny_survey).cutout(edge, 200)
    far = SkyCoord(10.0 * u.deg, -40.0 * u.deg)
    with pytest.raises(ImagingError, match=r"no g-band frame covers the cutout"):
        LocalFITSSource(tiny_survey).cutout(far, 200)


def test_missing_band_is_named(tiny_survey, tmp_path):
    root = copy_survey(tiny_survey, tmp_path)
    for path in root.rglob("frame-i.fits"):
        path.unlink()
    with pytest.raises(ImagingError, match=r"no i-band frame covers the cutout \(bands here: \['g', 'r'\]\)"):
        LocalFITSSource(root).cutout(BCG, 200)


def test_nan_filled_frame_is_named(tiny_survey, tmp_path):
    root = copy_survey(tiny_survey, tmp_path)
    with fits.open(root / "f000" / "frame-r.fits", mode="update") as hdul:
        hdul[0].data[:] = np.nan
    with pytest.raises(ValueError, match=r"f000/frame-r.fits: band r has 360000 NaN/inf pixels"):
        LocalFITSSource(root).cutout(BCG, 200)


def test_corrupt_frame_and_frame_without_wcs_are_named(tiny_survey, tmp_path):
    root = copy_survey(tiny_survey, tmp_path)
    corrupt = root / "f001" / "frame-g.fits"
    corrupt.write_bytes(corrupt.read_bytes()[:1000])
    syn2 = SkyCoord(150.5 * u.deg, (2.0 - 20 / 3600) * u.deg)  # in field f001 (conftest)
    with pytest.raises(ImagingError, match=r"no g-band frame covers.*f001/frame-g.fits: cannot read FITS header"):
        LocalFITSSource(root).cutout(syn2, 200)
    assert LocalFITSSource(root).cutout(BCG, 200).images["g"].shape == (200, 200)  # field f000 is intact
    root2 = copy_survey(tiny_survey, tmp_path / "2")
    path = root2 / "f000" / "frame-g.fits"
    data = fits.getdata(path)
    fits.PrimaryHDU(data, fits.Header({"FILTER": "g", "BUNIT": "nanomaggy"})).writeto(path, overwrite=True)
    with pytest.raises(ImagingError, match=r"f000/frame-g.fits: has no celestial WCS"):
        LocalFITSSource(root2).frames()
    with pytest.raises(ImagingError, match=r"no g-band frame covers.*f000/frame-g.fits: has no celestial WCS"):
        LocalFITSSource(root2).cutout(BCG, 200)
    # scan() keeps going: the five good frames, and the bad one with its reason.
    frames, unusable = LocalFITSSource(root2).scan()
    assert len(frames) == 5 and list(unusable) == [path] and "no celestial WCS" in unusable[path]


def test_frame_without_filter_or_in_other_units_is_refused(tiny_survey, tmp_path):
    root = copy_survey(tiny_survey, tmp_path)
    with fits.open(root / "f000" / "frame-g.fits", mode="update") as hdul:
        hdul[0].header["BUNIT"] = "counts"
    with pytest.raises(ImagingError, match=r"frame-g.fits: BUNIT is 'counts', expected nanomaggies"):
        LocalFITSSource(root).frames()
    with fits.open(root / "f000" / "frame-g.fits", mode="update") as hdul:
        hdul[0].header["BUNIT"] = "nanomaggy"
        del hdul[0].header["FILTER"]
    with pytest.raises(ImagingError, match=r"frame-g.fits: no FILTER keyword"):
        LocalFITSSource(root).frames()


def test_cache_writes_each_band_once_and_reads_it_back(tiny_survey, tmp_path, monkeypatch):
    source = LocalFITSSource(tiny_survey)
    cache = tmp_path / "cache"
    first = get_cutout(source, BCG, 200, cache_dir=cache)
    paths = cutout_paths(cache, source, BCG, 200)
    assert all(path.exists() for path in paths.values())
    assert sorted(p.name for p in next(iter(paths.values())).parent.iterdir()) == [
        "cutout-g.fits", "cutout-i.fits", "cutout-r.fits"]  # no temporaries left
    monkeypatch.setattr(source, "cutout", lambda *a, **k: pytest.fail("cached cutout fetched again"))
    second = get_cutout(source, BCG, 200, cache_dir=cache)
    for band in "gri":
        np.testing.assert_allclose(second.images[band], first.images[band])
    assert second.wcs.wcs.compare(first.wcs.wcs, tolerance=1e-10)
    paths["r"].write_bytes(b"garbage")
    with pytest.raises(ImagingError, match=r"cutout-r.fits: cannot read FITS image"):
        get_cutout(source, BCG, 200, cache_dir=cache)


def test_real_sdss_bands_are_aligned_on_the_common_grid(shared_data):
    """The g, r, i frames of one SDSS field are offset by pixels; after the cutout a star is in one place."""
    frames = shared_data / "sdss"
    centre = SkyCoord(323.34 * u.deg, -0.73 * u.deg)
    cutout = LocalFITSSource(frames).cutout(centre, 300)
    r = cutout.images["r"]
    peak = np.unravel_index(np.argmax(np.where(r < 100, ndimage.uniform_filter(r, 5), 0)), r.shape)
    star = cutout.wcs.pixel_to_world(peak[1], peak[0])
    found = {band: blob_centroid(cutout.images[band], cutout.wcs, star, radius_px=4)[:2] for band in "gri"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = {band: WCS(fits.getheader(frames / f"frame-{band}-002583-2-0136.fits.bz2")).world_to_pixel(star)
               for band in "gri"}
    raw_spread = max(np.hypot(raw[b][0] - raw["r"][0], raw[b][1] - raw["r"][1]) for b in "gi")
    grid_spread = max(np.hypot(found[b][0] - found["r"][0], found[b][1] - found["r"][1]) for b in "gi")
    assert raw_spread > 2.0  # the bands' pixel grids disagree by pixels ...
    assert grid_spread < 0.3  # ... the cutout's do not


def test_sdss_source_downloads_each_frame_once_through_astroquery(shared_data, tmp_path, monkeypatch):
    """astroquery.sdss answered by the shared frames as recorded responses (no network)."""
    from astropy.table import Table
    from astroquery.sdss import SDSS

    queries, downloads = [], []

    def query_region(coordinates, radius, fields, data_release):
        queries.append((coordinates, radius))
        return Table({"run": [2583, 2583], "rerun": [301, 301], "camcol": [2, 2], "field": [136, 136]})

    def get_images(run, rerun, camcol, field, band, data_release):
        downloads.append(band)
        return [fits.open(shared_data / "sdss" / f"frame-{band}-{run:06d}-{camcol}-{field:04d}.fits.bz2")]

    monkeypatch.setattr(SDSS, "query_region", query_region)
    monkeypatch.setattr(SDSS, "get_images", get_images)
    centre = SkyCoord(323.34 * u.deg, -0.73 * u.deg)
    source = SDSSSource(tmp_path / "frames", attempts=1)
    cutout = source.cutout(centre, 100)
    assert sorted(downloads) == ["g", "i", "r"] and len(queries) == 9
    assert all(radius == 3 * u.arcmin for _, radius in queries)
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == [
        "frame-g-002583-2-0136.fits", "frame-i-002583-2-0136.fits", "frame-r-002583-2-0136.fits"]
    source.cutout(centre.spherical_offsets_by(20 * u.arcsec, 0 * u.arcsec), 100)
    assert len(downloads) == 3  # resumed: nothing fetched twice
    local = LocalFITSSource(shared_data / "sdss").cutout(centre, 100)
    np.testing.assert_allclose(cutout.images["i"], local.images["i"], rtol=1e-5, atol=1e-6)


def skyview_answer(tiny_survey, bunit="nanomaggy"):
    """SkyView's answer: one HDUList per survey (the tiny survey's frames stand in for SkyView's images)."""
    answer = []
    for band in "gri":
        with fits.open(tiny_survey / "f000" / f"frame-{band}.fits") as hdul:
            header = hdul[0].header.copy()
            header["BUNIT"] = bunit
            answer.append(fits.HDUList([fits.PrimaryHDU(hdul[0].data.copy(), header)]))
    return answer


def test_skyview_source_asks_for_the_grid_and_reprojects(tiny_survey, monkeypatch):
    from astroquery.skyview import SkyView

    requests_made = []

    def get_images(position, survey, **kwargs):
        requests_made.append((position, survey, kwargs))
        return skyview_answer(tiny_survey)

    monkeypatch.setattr(SkyView, "get_images", get_images)
    cutout = SkyViewSource(attempts=1).cutout(BCG, 200)
    ((position, survey, kwargs),) = requests_made
    assert survey == ["SDSSg", "SDSSr", "SDSSi"] and kwargs["pixels"] == "200,200"
    assert kwargs["width"].to_value(u.arcsec) == pytest.approx(79.2) and kwargs["projection"] == "Tan"
    assert position.separation(BCG) < 1e-6 * u.arcsec
    local = LocalFITSSource(tiny_survey).cutout(BCG, 200)
    for band in "gri":
        np.testing.assert_allclose(cutout.images[band], local.images[band], atol=1e-5)


def test_skyview_in_unknown_units_is_refused(tiny_survey, monkeypatch):
    from astroquery.skyview import SkyView

    monkeypatch.setattr(SkyView, "get_images", lambda *a, **k: skyview_answer(tiny_survey, bunit="DN"))
    with pytest.raises(ImagingError, match=r"SkyView SDSSg,SDSSr,SDSSi at .*\(SDSSg\): BUNIT is 'DN'"):
        SkyViewSource(attempts=1).cutout(BCG, 200)


def test_network_calls_are_retried_with_backoff(monkeypatch):
    import deepcee_d2.data.imaging as imaging

    sleeps, calls = [], []
    monkeypatch.setattr(imaging.time, "sleep", sleeps.append)

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise requests.ConnectionError("connection reset")
        return "answer"

    assert with_retries(flaky, "SkyView at 150 2", attempts=4, backoff_s=2.0) == "answer"
    assert sleeps == [2.0, 4.0]
    with pytest.raises(ImagingError, match=r"SkyView at 150 2: failed after 3 attempts \(ConnectionError"):
        with_retries(lambda: (_ for _ in ()).throw(requests.ConnectionError("down")), "SkyView at 150 2",
                     attempts=3, backoff_s=1.0)


def test_make_source_by_name(tiny_survey):
    assert isinstance(make_source("synthetic", tiny_survey), LocalFITSSource)
    assert isinstance(make_source("skyview"), SkyViewSource)
    with pytest.raises(ValueError, match="needs a folder"):
        make_source("fits")
    with pytest.raises(ValueError, match="unknown imaging source 'dss'"):
        make_source("dss", tiny_survey)


def test_cutout_across_two_frames_is_mosaicked(sky_wcs, tmp_path):
    """Two overlapping frames per band (values 1 and 3): the cutout spans both and averages the overlap."""
    shape = (300, 200)
    for band in "gri":
        for name, ra, value in (("a", 150.0, 1.0), ("b", 150.0 + 120 * 0.396 / 3600, 3.0)):
            header = sky_wcs(ra, 2.0, shape).to_header()
            header.update(FILTER=band, BUNIT="nanomaggy")
            fits.PrimaryHDU(np.full(shape, value, dtype=np.float32), header).writeto(
                tmp_path / f"frame-{band}-{name}.fits")
    centre = SkyCoord((150.0 + 60 * 0.396 / 3600) * u.deg, 2.0 * u.deg)  # midway between the frame centres
    cutout = LocalFITSSource(tmp_path).cutout(centre, 250, 0.396 * u.arcsec)
    row = cutout.images["r"][125]
    # East is left: frame b (east, value 3) covers the left end, frame a (value 1) the right end.
    assert row[2] == pytest.approx(3.0) and row[-3] == pytest.approx(1.0) and row[125] == pytest.approx(2.0)


def write_aligned_field(folder, sky_wcs, shape=(300, 320), rotation_deg=0.0, seed=3):
    """Three bands on one north-up 0.396" grid (the synthetic survey's layout), noise only."""
    rng = np.random.default_rng(seed)
    for band in "gri":
        wcs = sky_wcs(150.0, 2.0, shape, rotation_deg=rotation_deg if band == "i" else 0.0)
        header = wcs.to_header()
        header.update(FILTER=band, BUNIT="nanomaggy")
        fits.PrimaryHDU(rng.normal(0, 0.05, shape).astype(np.float32), header).writeto(folder / f"frame-{band}.fits")


def test_frames_on_the_cutout_grid_are_sliced_not_resampled(sky_wcs, tmp_path):
    write_aligned_field(tmp_path, sky_wcs)
    source = LocalFITSSource(tmp_path)
    frame_wcs = source.frames()[0].wcs
    centre = frame_wcs.pixel_to_world(140.3, 170.8)
    cutout = source.cutout(centre, 100)
    # The slice starts at the whole pixel that puts the centre nearest the middle: x 140.3 - 49.5 -> 91.
    for band in "gri":
        with fits.open(tmp_path / f"frame-{band}.fits") as hdul:
            np.testing.assert_array_equal(cutout.images[band], hdul[0].data[121:221, 91:191])
    x, y = cutout.wcs.world_to_pixel(centre)
    assert abs(x - 49.5) <= 0.5 and abs(y - 49.5) <= 0.5
    assert cutout.wcs.pixel_shape == (100, 100)
    # The sliced WCS puts every sky position where the frame's WCS does, 91 / 121 pixels on.
    sky = frame_wcs.pixel_to_world([100.0, 180.0], [130.0, 200.0])
    np.testing.assert_allclose(np.array(cutout.wcs.world_to_pixel(sky)), [[9.0, 89.0], [9.0, 79.0]], atol=1e-8)


def test_a_rotated_band_or_an_edge_cutout_is_reprojected(sky_wcs, tmp_path):
    write_aligned_field(tmp_path, sky_wcs, rotation_deg=0.5)
    centre = SkyCoord(150.0 * u.deg, 2.0 * u.deg)
    cutout = LocalFITSSource(tmp_path).cutout(centre, 100)
    assert cutout.wcs.wcs.compare(cutout_grid(centre, 100).wcs, tolerance=1e-12)  # the north-up grid
    corner = SkyCoord(150.0 * u.deg, 2.0 * u.deg).spherical_offsets_by(-60 * u.arcsec, -55 * u.arcsec)
    with pytest.raises(ImagingError, match="outside the imaging coverage"):
        LocalFITSSource(tmp_path).cutout(corner, 100)


def test_only_frames_near_the_cutout_are_used(sky_wcs, tmp_path):
    # Three single-band-set fields 0.2 deg apart; a cutout in the middle one reads only its frames.
    for index, ra in enumerate((149.8, 150.0, 150.2)):
        folder = tmp_path / f"field{index}"
        folder.mkdir()
        for band in "gri":
            header = sky_wcs(ra, 2.0, (300, 300)).to_header()
            header.update(FILTER=band, BUNIT="nanomaggy")
            fits.PrimaryHDU(np.zeros((300, 300), np.float32), header).writeto(folder / f"frame-{band}.fits")
    source = LocalFITSSource(tmp_path)
    cutout = source.cutout(SkyCoord(150.0 * u.deg, 2.0 * u.deg), 100)
    assert cutout.source.count("field1") == 3 and "field0" not in cutout.source and "field2" not in cutout.source
    # Between the fields (0.1 deg from each, which are 0.033 deg wide) no frame is within reach.
    assert source._near(source.frames(), cutout_grid(SkyCoord(150.1 * u.deg, 2.0 * u.deg), 100)) == []

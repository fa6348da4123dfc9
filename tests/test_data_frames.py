"""Local frames: cutouts on one grid (reprojected, or cut with Cutout2D), the frame index and its problems
report, missing pixels, and the messages for what cannot be cut."""
import bz2
import gzip
import logging
import shutil
import tempfile
import warnings

import numpy as np
import pytest
import astropy.units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from scipy import ndimage

from deepcee_d2.data.frames import ImagingError, LocalFITSSource, read_frame_header, read_image
from deepcee_d2.sky import cutout_grid

BCG = SkyCoord(150.0 * u.deg, 2.0 * u.deg)  # SYN-0 of the tiny survey (conftest)
BCG_FLUX = {"g": 60.0, "r": 150.0, "i": 220.0}
SDSS_FIELDS = ("002583-2-0136", "002126-1-0366", "005390-2-0117", "005194-2-0540")  # the shared real frames


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


def test_position_partly_outside_the_field_is_refused_saying_which_part(tiny_survey):
    edge = BCG.spherical_offsets_by(0 * u.arcsec, 110 * u.arcsec)  # the field reaches 118.8" north
    # 110 + 39.6 - 118.8 = 30.8" = 78 rows of 200 at the top (north) are outside, give or take the band's tilt.
    with pytest.raises(ImagingError, match=r"band g \(frame-g.fits\): 39\.0% of the cutout \(pixels x 0-199, "
                                           r"y 122-199, the north part around 150\.00000 2\.03727\) lies outside "
                                           r"the imaging coverage"):
        LocalFITSSource(tiny_survey).cutout(edge, 200)
    far = SkyCoord(10.0 * u.deg, -40.0 * u.deg)
    with pytest.raises(ImagingError, match=r"no g-band frame covers the cutout; no frame of any band covers it$"):
        LocalFITSSource(tiny_survey).cutout(far, 200)


def test_a_partial_cutout_pads_and_masks_what_lies_outside_the_imaging(tiny_survey):
    edge = BCG.spherical_offsets_by(0 * u.arcsec, 110 * u.arcsec)  # as above: the top ~39 % lies outside
    cutout = LocalFITSSource(tiny_survey).cutout(edge, 200, partial=True)
    rows_covered = cutout.covered.any(axis=1)
    assert 0.58 < cutout.covered_fraction < 0.62 and rows_covered[:115].all() and not rows_covered[125:].any()
    for image in cutout.images.values():  # the padding is 0 (blank sky) in every band; the data are not
        assert np.all(image[~cutout.covered] == 0) and np.std(image[cutout.covered]) > 0.01
    inside = LocalFITSSource(tiny_survey).cutout(BCG, 200, partial=True)
    assert inside.covered is None and inside.covered_fraction == 1.0


def test_missing_band_names_the_bands_of_the_field_not_of_the_folder(tiny_survey, tmp_path):
    root = copy_survey(tiny_survey, tmp_path)
    (root / "f000" / "frame-i.fits").unlink()  # field f001 keeps its i frame
    with pytest.raises(ImagingError, match=r"no i-band frame covers the cutout; it lies on f000/frame-g.fits, "
                                           r"f000/frame-r.fits \(bands \['g', 'r'\]\)$"):
        LocalFITSSource(root).cutout(BCG, 200)


def test_missing_band_of_a_real_sdss_field_names_its_frames(shared_data, tmp_path):
    """Four real SDSS fields, one without its i frame: the message names that field's frames, not the
    folder's bands (which include i)."""
    for field in SDSS_FIELDS:
        for band in "gri" if field != "002126-1-0366" else "gr":
            name = f"frame-{band}-{field}.fits.bz2"
            (tmp_path / name).symlink_to(shared_data / "sdss" / name)
    with pytest.raises(ImagingError, match=r"no i-band frame covers the cutout; it lies on frame-g-002126-1-0366"
                                           r"\.fits\.bz2, frame-r-002126-1-0366\.fits\.bz2 \(bands \['g', 'r'\]\)$"):
        LocalFITSSource(tmp_path).cutout(SkyCoord(174.051 * u.deg, 3.967 * u.deg), 300)  # its centre


def test_nan_pixels_in_covered_area_are_missing_data_set_to_zero_and_counted(tiny_survey, tmp_path, caplog):
    """A few NaN pixels near a corner of one g frame: cutouts elsewhere in the field are untouched, and one
    over them fills them with 0 and counts them, instead of failing every tile of the field."""
    root = copy_survey(tiny_survey, tmp_path)
    with fits.open(root / "f000" / "frame-g.fits", mode="update") as hdul:
        hdul[0].data[30:32, 30] = np.nan
        hdul[0].data[31, 31] = np.inf
        g_wcs = WCS(hdul[0].header)
    source = LocalFITSSource(root)
    reference = LocalFITSSource(tiny_survey).cutout(BCG, 200)
    cutout = source.cutout(BCG, 200)
    assert cutout.missing == {}
    for band in "gri":
        np.testing.assert_array_equal(cutout.images[band], reference.images[band])
    corner = g_wcs.pixel_to_world(64, 64)  # a 100 px cutout here spans g pixels 14-113, inside every band
    with caplog.at_level(logging.WARNING, logger="deepcee_d2.data.frames"):
        cutout = source.cutout(corner, 100)
    assert cutout.missing == {"g": 3}
    assert "3 NaN/inf pixels of" in caplog.text and "frame-g.fits inside the cutout set to 0" in caplog.text
    assert all(np.isfinite(image).all() for image in cutout.images.values())
    x, y = (int(round(float(v))) for v in cutout.wcs.world_to_pixel(g_wcs.pixel_to_world(30, 30)))
    assert abs(cutout.images["g"][y, x]) < 0.1 < abs(reference.images["g"]).max()  # ~0, not NaN, not a value
    with fits.open(root / "f000" / "frame-r.fits", mode="update") as hdul:
        hdul[0].data[:] = np.nan
    with pytest.raises(ImagingError, match=r"f000/frame-r.fits: every pixel is NaN/inf: no data"):
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
    frames, problems = LocalFITSSource(root2).scan()
    assert len(frames) == 5 and list(problems) == [path] and "no celestial WCS" in problems[path]


def test_compressed_frames_read_as_the_plain_one_and_leave_no_temporary_files(tiny_survey, tmp_path, monkeypatch):
    # astropy 8.0's get_readable_fileobj copied each .bz2 file into the temporary folder and left it there.
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    plain = tiny_survey / "f000" / "frame-g.fits"
    data, header = read_image(plain)
    for suffix, compress in ((".bz2", bz2.compress), (".gz", gzip.compress)):
        packed = tmp_path / f"frame-g.fits{suffix}"
        packed.write_bytes(compress(plain.read_bytes()))
        assert read_frame_header(packed).shape == read_frame_header(plain).shape
        packed_data, packed_header = read_image(packed)
        np.testing.assert_array_equal(packed_data, data)
        assert packed_header == header
    assert list(temporary.iterdir()) == []


def test_fits_images_named_outside_the_pattern_are_reported_not_skipped_silently(shared_data, tmp_path):
    """A real SDSS field under other names (as another pipeline would name it), a table and a real field: the
    renamed images are in the problems report, the table is not, and reading real headers prints nothing."""
    for band in "gri":
        (tmp_path / f"frame-{band}-002583-2-0136.fits.bz2").symlink_to(
            shared_data / "sdss" / f"frame-{band}-002583-2-0136.fits.bz2")
        (tmp_path / f"fpC-005390-{band}2-0117.fit.bz2").symlink_to(
            shared_data / "sdss" / f"frame-{band}-005390-2-0117.fits.bz2")
    Table({"ra": [1.0]}).write(tmp_path / "clusters.fits")
    (tmp_path / "notes.txt").write_text("not FITS")
    with warnings.catch_warnings(record=True) as printed:
        warnings.simplefilter("always")
        frames, problems = LocalFITSSource(tmp_path).scan()
    assert not printed  # astropy's two FITSFixedWarnings per SDSS header are silenced where headers are read
    assert sorted(frame.path.name for frame in frames) == [f"frame-{b}-002583-2-0136.fits.bz2" for b in "gir"]
    assert sorted(path.name for path in problems) == [f"fpC-005390-{b}2-0117.fit.bz2" for b in "gir"]
    assert all("a 2-D image whose name does not match 'frame-*.fits*': skipped" in why for why in problems.values())
    with pytest.raises(ImagingError, match=r"fpC-005390-g2-0117.fit.bz2: a 2-D image whose name does not match"):
        LocalFITSSource(tmp_path).frames()


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

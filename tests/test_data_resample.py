"""Resampling frames onto grids: opencv remap against the reference reproject, on a real rotated SDSS frame."""
import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.stats import mad_std
from astropy.wcs import WCS
from astropy.wcs.utils import pixel_to_pixel
from scipy import ndimage

from deepcee_d2.data.frames import ImagingError
from deepcee_d2.sky import cutout_grid
from deepcee_d2.sky import celestial_wcs
from deepcee_d2.data.resample import pixel_map, remap_to_grid, reproject_to_grid, resample_to_grid

TOLERANCE_PX = 0.01  # far below SDSS's astrometric error (4 mas)
GRID_SIZE = 400  # a north-up grid inside the frame, small enough to be quick


@pytest.fixture(scope="module")
def r_frame(shared_data):
    """The r frame of run 5194 camcol 2 field 540: rows run 94.7 degrees from north (4.7 degrees off axis)."""
    with fits.open(shared_data / "sdss" / "frame-r-005194-2-0540.fits.bz2") as hdul:
        data = np.asarray(hdul[0].data, dtype=np.float32)
        return data, celestial_wcs(hdul[0].header), float(mad_std(data))


def frame_centre(r_frame):
    data, wcs, _ = r_frame
    return wcs.pixel_to_world((data.shape[1] - 1) / 2, (data.shape[0] - 1) / 2)


def exact_mapping(grid, frame_wcs):
    """Frame pixel coordinates of every grid pixel, each transformed by astropy."""
    rows, columns = np.mgrid[0:grid.pixel_shape[1], 0:grid.pixel_shape[0]]
    return pixel_to_pixel(grid, frame_wcs, columns, rows)


def test_remap_agrees_with_reproject_on_a_real_frame(r_frame):
    """Within 0.01 sigma of the frame's sky noise at every pixel (measured: 0.002 sigma, at a star core)."""
    data, wcs, sigma = r_frame
    grid = cutout_grid(frame_centre(r_frame), GRID_SIZE)
    image, covered = remap_to_grid([(data, wcs)], grid, TOLERANCE_PX)
    reference, reference_covered = reproject_to_grid([(data, wcs)], grid)
    assert image.dtype == np.float32 and image.shape == (GRID_SIZE, GRID_SIZE)
    assert covered.all() and reference_covered.all()
    assert reference.max() > 100 * sigma  # a star is in the test: steep gradients
    assert np.abs(image - reference).max() < 0.01 * sigma


def test_the_mapping_is_within_tolerance_at_every_pixel(r_frame):
    data, wcs, _ = r_frame
    grid = cutout_grid(frame_centre(r_frame), GRID_SIZE)
    mapping = pixel_map(grid, wcs, TOLERANCE_PX)
    x, y = mapping.block(slice(None), slice(None))
    exact_x, exact_y = exact_mapping(grid, wcs)
    assert mapping.max_error_px <= TOLERANCE_PX
    assert mapping.spacing_px > 16  # a coarse mesh: the point of the method
    assert np.hypot(x - exact_x, y - exact_y).max() <= TOLERANCE_PX


def tan_wcs(ctype, crval, scale_deg, size, rotation_deg=0.0):
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = [f"RA---{ctype}", f"DEC--{ctype}"]
    wcs.wcs.crval = crval
    wcs.wcs.crpix = [(size + 1) / 2, (size + 1) / 2]
    c, s = np.cos(np.radians(rotation_deg)), np.sin(np.radians(rotation_deg))
    wcs.wcs.cd = np.array([[-c, s], [s, c]]) * scale_deg
    wcs.pixel_shape = (size, size)
    wcs.wcs.set()
    return wcs


def test_a_curved_mapping_refines_the_mesh_until_within_tolerance():
    """A 3 degree wide grid onto a ZEA frame 1 degree away: the first mesh misses 0.001 px, finer ones meet it."""
    grid = tan_wcs("TAN", [10, 60], 0.01, 300)
    frame = tan_wcs("ZEA", [12, 61], 0.012, 400, rotation_deg=30)
    coarse = pixel_map(grid, frame, 0.01)
    fine = pixel_map(grid, frame, 0.001)
    assert coarse.max_error_px > 0.001 and fine.spacing_px < coarse.spacing_px
    x, y = fine.block(slice(None), slice(None))
    exact_x, exact_y = exact_mapping(grid, frame)
    assert fine.max_error_px <= 0.001
    assert np.hypot(x - exact_x, y - exact_y).max() <= 0.001


def test_a_ramp_is_interpolated_exactly_and_rescaled_by_pixel_area():
    """Bilinear interpolation reproduces a linear ramp: opencv's weights must not be rounded (opencv 4 rounds
    them to 1/32 px, errors up to 0.05 here), and values are per grid pixel (x (10/12)^2 here)."""
    grid = tan_wcs("TAN", [10, 60], 0.01, 60)
    frame = tan_wcs("TAN", [10.05, 60.02], 0.012, 80, rotation_deg=30)
    rows, columns = np.mgrid[0:80, 0:80]
    image, covered = remap_to_grid([((columns + 2.0 * rows).astype(np.float32), frame)], grid, 1e-4)
    exact_x, exact_y = exact_mapping(grid, frame)
    assert covered.all()
    np.testing.assert_allclose(image, (exact_x + 2 * exact_y) * (10 / 12) ** 2, atol=1e-3)


def test_flux_is_conserved_under_a_change_of_pixel_scale(r_frame):
    """The same 158" square at 0.198", 0.264", 0.396" and 0.792" per pixel holds the same flux, within a tenth
    of the sky noise of that sum (measured: 0.05 at 0.264", < 0.004 elsewhere).

    Bilinear interpolation samples the image, so for 0.792" the frame is first smoothed by a 1.5 px Gaussian
    (which keeps its flux) to be well sampled there: star cores are under-sampled at twice the SDSS pixel, by
    reproject's bilinear interpolation as much as by remap (the sum then differs by ~1 noise).
    """
    data, wcs, sigma = r_frame
    centre = frame_centre(r_frame)
    noise_of_sum = sigma * GRID_SIZE  # sqrt(GRID_SIZE**2) native pixels
    for frame, scales in ((data, [(0.198, 800), (0.264, 600)]),
                          (ndimage.gaussian_filter(data, 1.5), [(0.198, 800), (0.264, 600), (0.792, 200)])):
        native = remap_to_grid([(frame, wcs)], cutout_grid(centre, GRID_SIZE), TOLERANCE_PX)[0].sum()
        for scale, size in scales:
            assert size * scale == pytest.approx(GRID_SIZE * 0.396)
            image, _ = remap_to_grid([(frame, wcs)], cutout_grid(centre, size, scale * u.arcsec), TOLERANCE_PX)
            assert abs(image.sum() - native) < 0.1 * noise_of_sum, (scale, frame is data)


def test_pixels_outside_the_frame_are_uncovered_and_zero(r_frame):
    data, wcs, _ = r_frame
    corner = wcs.pixel_to_world(0, 0)  # the grid's lower-left part hangs off the frame
    grid = cutout_grid(corner, 200)
    image, covered = remap_to_grid([(data, wcs)], grid, TOLERANCE_PX, require_coverage=False)
    _, reference_covered = reproject_to_grid([(data, wcs)], grid, require_coverage=False)
    exact_x, exact_y = exact_mapping(grid, wcs)
    margin = {name: np.minimum(coords + 0.5, size - 0.5 - coords)  # > 0 inside the frame's outer edge
              for name, coords, size in (("x", exact_x, data.shape[1]), ("y", exact_y, data.shape[0]))}
    inside = np.minimum(margin["x"], margin["y"])
    clear = np.abs(inside) > TOLERANCE_PX  # pixels whose side of the edge the tolerance cannot change
    assert 0.15 < covered.mean() < 0.35  # about a quarter of the grid lies on the frame
    np.testing.assert_array_equal(covered[clear], inside[clear] > 0)
    np.testing.assert_array_equal(covered[clear], reference_covered[clear])
    assert (image[~covered] == 0).all() and (image[covered] != 0).all()
    with pytest.raises(ImagingError, match=r"frame-r-005194 \(test\): 7\d\.\d% of the cutout lies outside"):
        remap_to_grid([(data, wcs)], grid, TOLERANCE_PX, source="frame-r-005194 (test)")


def test_overlapping_frames_are_averaged_where_they_overlap(r_frame):
    """Two overlapping parts of the frame, the second tripled: 1x, 2x (their mean) and 3x the frame across
    the grid, as reproject_and_coadd's mean gives (within 0.01 sigma of the sky noise)."""
    data, wcs, sigma = r_frame
    left, right = (slice(None), slice(0, 1100)), (slice(None), slice(950, None))
    frames = [(data[left], wcs[left]), (3 * data[right], wcs[right])]
    grid = cutout_grid(wcs.pixel_to_world(1025, 744), 300)  # straddles the 150 px wide overlap
    whole, _ = remap_to_grid([(data, wcs)], grid, TOLERANCE_PX)
    image, covered = remap_to_grid(frames, grid, TOLERANCE_PX)
    reference, _ = reproject_to_grid(frames, grid)
    exact_x, _ = exact_mapping(grid, wcs)
    # Columns 0-1099 and 950-2047; within a pixel of a part's edge it replicates its edge column instead
    # of interpolating across, so those bands are left out.
    tol = TOLERANCE_PX
    expected = {1: exact_x < 949.5 - tol, 2: (exact_x > 950 + tol) & (exact_x < 1099 - tol),
                3: exact_x > 1099.5 + tol}
    assert covered.all() and all(region.mean() > 0.2 for region in expected.values())
    for factor, region in expected.items():
        np.testing.assert_allclose(image[region], factor * whole[region], rtol=0, atol=0.01 * sigma)
    np.testing.assert_allclose(image, reference, rtol=0, atol=0.01 * sigma)


def test_resample_to_grid_chooses_the_method(r_frame):
    data, wcs, _ = r_frame
    frames, grid = [(data, wcs)], cutout_grid(frame_centre(r_frame), 50)
    np.testing.assert_array_equal(resample_to_grid(frames, grid, "remap", TOLERANCE_PX)[0],
                                  remap_to_grid(frames, grid, TOLERANCE_PX)[0])
    np.testing.assert_array_equal(resample_to_grid(frames, grid, "reproject", TOLERANCE_PX)[0],
                                  reproject_to_grid(frames, grid)[0])
    with pytest.raises(ValueError, match="'nearest' is not one of"):
        resample_to_grid(frames, grid, "nearest", TOLERANCE_PX)


def test_bad_arguments_are_refused():
    grid = tan_wcs("TAN", [10, 60], 0.01, 20)
    frame = tan_wcs("TAN", [10, 60], 0.01, 20)
    with pytest.raises(ValueError, match="tolerance_px must be positive"):
        pixel_map(grid, frame, 0)
    with pytest.raises(ValueError, match="too large for opencv"):
        remap_to_grid([(np.zeros((4, 32767), np.float32), frame)], grid, TOLERANCE_PX)
    with pytest.raises(ImagingError, match="100.0% of the cutout lies outside"):
        remap_to_grid([], grid, TOLERANCE_PX)
    grid.pixel_shape = None
    with pytest.raises(ValueError, match="no pixel_shape"):
        pixel_map(grid, frame, TOLERANCE_PX)


def test_a_grid_spanning_four_frames_resamples_each_on_its_own_part_only(r_frame, monkeypatch):
    """The frame cut into four abutting quadrants (as a tile spanning four survey frames): the same image
    as from the whole frame away from the seams (within 0.01 sigma), the same coverage everywhere, and each
    quadrant's mapping made for its part of the grid only, so that the grid's pixels are mapped about once
    in all, not once per frame."""
    from astropy.nddata import Cutout2D

    import deepcee_d2.data.resample as resample

    data, wcs, sigma = r_frame
    centre_x, centre_y = 1024, 744
    grid = cutout_grid(wcs.pixel_to_world(centre_x - 0.5, centre_y - 0.5), GRID_SIZE)
    parts = []
    for rows in (slice(0, centre_y), slice(centre_y, data.shape[0])):
        for columns in (slice(0, centre_x), slice(centre_x, data.shape[1])):
            size = (rows.stop - rows.start, columns.stop - columns.start)
            position = ((columns.start + columns.stop - 1) / 2, (rows.start + rows.stop - 1) / 2)
            cut = Cutout2D(data, position, size, wcs=wcs, mode="strict")
            parts.append((cut.data, cut.wcs))
    mapped = []
    original_pixel_map = resample.pixel_map
    monkeypatch.setattr(resample, "pixel_map", lambda part, *args: mapped.append(
        part.pixel_shape[0] * part.pixel_shape[1]) or original_pixel_map(part, *args))
    image, covered = remap_to_grid(parts, grid, TOLERANCE_PX)
    whole, whole_covered = remap_to_grid([(data, wcs)], grid, TOLERANCE_PX)
    assert len(mapped) == 5 and mapped[-1] == GRID_SIZE ** 2
    assert sum(mapped[:4]) < 1.5 * GRID_SIZE ** 2  # bounding boxes of rotated quadrants; before: 4 x the grid
    assert covered.all() and whole_covered.all()
    exact_x, exact_y = exact_mapping(grid, wcs)
    off_seams = (np.abs(exact_x - (centre_x - 0.5)) > 1) & (np.abs(exact_y - (centre_y - 0.5)) > 1)
    assert off_seams.mean() > 0.98
    assert np.abs(image - whole)[off_seams].max() < 0.01 * sigma

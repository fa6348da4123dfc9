"""Resampling of frames onto a target pixel grid (cutouts, survey tiles): the one home of it.

Every frame has its own (rotated, offset) WCS; a grid is a celestial WCS with ``pixel_shape``. Two methods
share one contract: ``(frames, grid) -> (image, covered)``, the image in flux per *grid* pixel (frames with
another pixel area are rescaled by the ratio of pixel areas), several frames averaged where they overlap,
``covered`` False where no frame has data (the image is 0 there).

- ``"remap"`` (`remap_to_grid`, the default): the exact astropy transform grid pixel -> sky -> frame pixel
  is evaluated on a coarse mesh of the grid and interpolated bilinearly to every pixel; the mesh is refined
  until the interpolated mapping is within ``tolerance_px`` frame pixels of the exact one at the midpoints
  of the mesh cells and edges (checked on every call). opencv's ``remap`` then interpolates the pixels
  bilinearly, from float32 maps (their rounding adds < 3e-4 px for frames under 4096 px). opencv >= 5 is
  needed: opencv 4 rounds the interpolation weights to 1/32 px, which on the shared SDSS frames puts pixels
  at bright star cores up to 64 sigma of the sky noise away from reproject's (opencv 5: 0.3 sigma).
  Many times faster than reproject (BENCHMARKS.md, "Resampling frames onto tiles").
- ``"reproject"`` (`reproject_to_grid`): ``reproject_interp`` + ``reproject_and_coadd``, which transform
  every pixel exactly; the reference in tests.

Both use bilinear interpolation and one coverage rule (reproject's): a grid pixel is covered by a frame
when it maps within the frame's outer pixel edges (``-0.5 <= x <= width - 0.5``, the outer half pixel taking
the edge pixel's value) and the interpolated value is finite.
"""
import math

import numpy as np
from astropy.wcs.utils import pixel_to_pixel, proj_plane_pixel_area

from .imaging import ImagingError

METHODS = ("remap", "reproject")
# Mesh spacing (grid pixels) tried first: a 2000 px SDSS tile needs ~1e-4 px of accuracy at this spacing,
# so one mesh of 33 x 33 nodes usually passes the check; the spacing halves until it does.
_FIRST_MESH_SPACING_PX = 64
# opencv's remap addresses pixels with 16-bit integers: no map or source side may reach 2**15 - 1.
_CV_MAX_SIDE = 32767


def _mesh_nodes(n, spacing):
    """Mesh node positions along an axis of ``n`` pixels: both end pixels and at most ``spacing`` apart."""
    return np.linspace(0.0, n - 1.0, min(n, max(2, math.ceil((n - 1) / spacing) + 1)))


def _linear_weights(nodes, n):
    """``(len(nodes), n)`` weights of piecewise-linear interpolation from ``nodes`` to pixels ``0 .. n-1``."""
    pixels = np.arange(n, dtype=float)
    return np.stack([np.interp(pixels, nodes, unit) for unit in np.eye(len(nodes))])


def _midpoints(nodes):
    return (nodes[:-1] + nodes[1:]) / 2


def _mapping_error(grid, frame_wcs, nodes_x, nodes_y, mesh_x, mesh_y):
    """Largest distance (frame pixels) between the exact and the bilinearly interpolated mapping.

    Checked at the midpoints of the mesh's horizontal and vertical edges and at the centres of its cells,
    where the bilinear value is the mean of the two or four nodes around.
    """
    def mean_pairs(mesh, axis):
        head = np.take(mesh, np.arange(mesh.shape[axis] - 1), axis=axis)
        tail = np.take(mesh, np.arange(1, mesh.shape[axis]), axis=axis)
        return (head + tail) / 2

    checks = []  # (x positions, y positions, interpolated x, interpolated y), each on a 2-d mesh
    if len(nodes_x) > 1:
        checks.append((_midpoints(nodes_x), nodes_y, mean_pairs(mesh_x, 1), mean_pairs(mesh_y, 1)))
    if len(nodes_y) > 1:
        checks.append((nodes_x, _midpoints(nodes_y), mean_pairs(mesh_x, 0), mean_pairs(mesh_y, 0)))
    if len(nodes_x) > 1 and len(nodes_y) > 1:
        checks.append((_midpoints(nodes_x), _midpoints(nodes_y),
                       mean_pairs(mean_pairs(mesh_x, 0), 1), mean_pairs(mean_pairs(mesh_y, 0), 1)))
    worst = 0.0
    for xs, ys, approx_x, approx_y in checks:
        exact_x, exact_y = pixel_to_pixel(grid, frame_wcs, *np.meshgrid(xs, ys))
        error = np.hypot(approx_x - exact_x, approx_y - exact_y)
        if np.isfinite(error).any():
            worst = max(worst, float(np.nanmax(error)))
    return worst


class PixelMap:
    """Frame pixel coordinates of every grid pixel, interpolated from a checked mesh (`pixel_map`).

    Attributes
    ----------
    max_error_px : float
        Largest error of the interpolated mapping found by the run-time check, in frame pixels.
    spacing_px : float
        Largest distance between mesh nodes, in grid pixels (1 or less: every pixel is a node, exact).
    """

    def __init__(self, nodes_x, nodes_y, mesh_x, mesh_y, shape, max_error_px):
        self._weights_x = _linear_weights(nodes_x, shape[1])
        self._weights_y = _linear_weights(nodes_y, shape[0])
        self._mesh_x, self._mesh_y = mesh_x, mesh_y
        self.shape = shape
        self.max_error_px = max_error_px
        self.spacing_px = max(np.diff(nodes_x).max(initial=0.0), np.diff(nodes_y).max(initial=0.0))

    def block(self, rows, columns):
        """``(x, y)`` float32 frame pixel coordinates (astropy's 0-based convention) of grid pixels
        ``[rows, columns]`` (two slices); the separable product is exactly the bilinear interpolation."""
        wy, wx = self._weights_y[:, rows], self._weights_x[:, columns]
        return tuple(np.ascontiguousarray(wy.T @ mesh @ wx, dtype=np.float32)
                     for mesh in (self._mesh_x, self._mesh_y))


def pixel_map(grid, frame_wcs, tolerance_px):
    """Mapping from the pixels of ``grid`` to those of ``frame_wcs``, accurate to ``tolerance_px``.

    Parameters
    ----------
    grid : `~astropy.wcs.WCS`
        Target celestial WCS with ``pixel_shape``.
    frame_wcs : `~astropy.wcs.WCS`
        Celestial WCS of the frame.
    tolerance_px : float
        Largest allowed error of the interpolated mapping, in frame pixels (``DEEPCEE.SURVEY.
        RESAMPLE_TOLERANCE_PX``). The mesh spacing halves until the check passes.

    Returns
    -------
    PixelMap
    """
    if not tolerance_px > 0:
        raise ValueError(f"tolerance_px must be positive, got {tolerance_px!r}")
    if grid.pixel_shape is None:
        raise ValueError("the grid WCS has no pixel_shape (set wcs.pixel_shape = (width, height))")
    width, height = grid.pixel_shape
    spacing = float(_FIRST_MESH_SPACING_PX)
    while True:
        nodes_x, nodes_y = _mesh_nodes(width, spacing), _mesh_nodes(height, spacing)
        mesh_x, mesh_y = pixel_to_pixel(grid, frame_wcs, *np.meshgrid(nodes_x, nodes_y))
        exact = len(nodes_x) == width and len(nodes_y) == height  # every pixel is a node
        error = 0.0 if exact else _mapping_error(grid, frame_wcs, nodes_x, nodes_y, mesh_x, mesh_y)
        if error <= tolerance_px:
            return PixelMap(nodes_x, nodes_y, mesh_x, mesh_y, (height, width), error)
        spacing /= 2


def _area_ratio(grid, frame_wcs):
    """Grid pixel area / frame pixel area: turns flux per frame pixel into flux per grid pixel."""
    return proj_plane_pixel_area(grid) / proj_plane_pixel_area(frame_wcs)


def _checked_coverage(image, covered, require_coverage, source):
    if require_coverage and not covered.all():
        raise ImagingError(f"{source}: {1 - covered.mean():.1%} of the cutout lies outside the imaging coverage")
    return image, covered


def remap_to_grid(frames, grid, tolerance_px, source="frames", require_coverage=True):
    """Average frames (each ``(data, wcs)``) onto ``grid`` with opencv's remap, in flux per grid pixel.

    Parameters
    ----------
    frames : list of (2-d array, `~astropy.wcs.WCS`)
        Frame pixels (flux per frame pixel, e.g. nanomaggies) and their celestial WCS.
    grid : `~astropy.wcs.WCS`
        Target celestial WCS with ``pixel_shape``.
    tolerance_px : float
        Largest allowed error of the pixel mapping, in frame pixels (`pixel_map`).
    source : str
        Names the frames in error messages.
    require_coverage : bool
        Raise `ImagingError` when part of the grid is covered by no frame (as `reproject_to_grid`).

    Returns
    -------
    image : (height, width) float32 array
        Flux per grid pixel; 0 where not covered.
    covered : (height, width) bool array
        Pixels covered by at least one frame.
    """
    import cv2

    height, width = grid.pixel_shape[1], grid.pixel_shape[0]
    total = np.zeros((height, width), np.float32)
    count = np.zeros((height, width), np.uint16)
    for data, frame_wcs in frames:
        data = np.ascontiguousarray(data, dtype=np.float32)
        if max(data.shape) >= _CV_MAX_SIDE:
            raise ValueError(f"{source}: a frame of {data.shape[1]} x {data.shape[0]} px is too large for "
                             f"opencv's remap (sides below {_CV_MAX_SIDE} px); cut it into parts")
        mapping = pixel_map(grid, frame_wcs, tolerance_px)
        scale = np.float32(_area_ratio(grid, frame_wcs))
        for top in range(0, height, _CV_MAX_SIDE - 1):
            for left in range(0, width, _CV_MAX_SIDE - 1):
                rows, columns = slice(top, top + _CV_MAX_SIDE - 1), slice(left, left + _CV_MAX_SIDE - 1)
                x, y = mapping.block(rows, columns)
                # Replicating the edge gives the outer half pixel the edge pixel's value, as reproject does;
                # further out it is a placeholder that `inside` drops (so do NaN maps, which compare False).
                values = cv2.remap(data, x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                inside = (x >= -0.5) & (x <= data.shape[1] - 0.5) & (y >= -0.5) & (y <= data.shape[0] - 0.5)
                good = inside & np.isfinite(values)
                values *= scale
                values[~good] = 0
                total[rows, columns] += values
                count[rows, columns] += good
    covered = count > 0
    image = np.divide(total, count, out=np.zeros_like(total), where=covered)
    return _checked_coverage(image, covered, require_coverage, source)


def reproject_to_grid(frames, grid, source="frames", require_coverage=True):
    """`remap_to_grid`'s contract with ``reproject_interp`` + ``reproject_and_coadd``: the reference."""
    from reproject import reproject_interp
    from reproject.mosaicking import reproject_and_coadd

    scaled = [(data * _area_ratio(grid, wcs), wcs) for data, wcs in frames]
    shape = (grid.pixel_shape[1], grid.pixel_shape[0])
    array, footprint = reproject_and_coadd(scaled, grid, shape_out=shape, reproject_function=reproject_interp,
                                           combine_function="mean")
    covered = footprint > 0
    image = np.where(covered, array, 0).astype(np.float32)
    return _checked_coverage(image, covered, require_coverage, source)


def resample_to_grid(frames, grid, method, tolerance_px, source="frames", require_coverage=True):
    """`remap_to_grid` (``method="remap"``) or `reproject_to_grid` (``"reproject"``); ``DEEPCEE.SURVEY.
    RESAMPLE_METHOD`` and ``RESAMPLE_TOLERANCE_PX``. ``tolerance_px`` is unused by ``"reproject"``."""
    if method == "remap":
        return remap_to_grid(frames, grid, tolerance_px, source, require_coverage)
    if method == "reproject":
        return reproject_to_grid(frames, grid, source, require_coverage)
    raise ValueError(f"resampling method {method!r} is not one of {METHODS}")

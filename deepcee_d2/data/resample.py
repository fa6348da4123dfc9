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
  at bright star cores up to 64 sigma of the sky noise away from reproject's (opencv 5: 0.16 sigma).
  ~35 times fewer core-seconds than reproject (BENCHMARKS.md, "Resampling frames onto tiles").
- ``"reproject"`` (`reproject_to_grid`): ``reproject_interp`` + ``reproject_and_coadd``, which transform
  every pixel exactly; the reference in tests.

Both use bilinear interpolation and one coverage rule (reproject's): a grid pixel is covered by a frame
when it maps within the frame's outer pixel edges (``-0.5 <= x <= width - 0.5``, the outer half pixel taking
the edge pixel's value) and the interpolated value is finite.
"""
import math
from dataclasses import dataclass

import cv2
import numpy as np
from astropy.wcs.utils import pixel_to_pixel, proj_plane_pixel_area

METHODS = ("remap", "reproject")

# Mesh spacing (grid pixels) tried first: on a 2000 px SDSS tile (33 x 33 nodes) the interpolated mapping
# errs by < 1e-7 px, so the first mesh passes; wide or curved mappings make the check refine it.
_FIRST_MESH_SPACING_PX = 64
# Spacing of the points along a frame's edges that bound its part of a grid (`_frame_window`).
_OUTLINE_STEP_PX = 64
# opencv's remap addresses pixels with 16-bit integers: no map or source side may reach 2**15 - 1.
_CV_MAX_SIDE = 32767


class ImagingError(RuntimeError):
    """A cutout cannot be made (no coverage, a band missing, a failed download); the message says why."""


def _mesh_nodes(n, spacing):
    """Mesh node positions along an axis of ``n`` pixels: both end pixels and at most ``spacing`` apart."""
    return np.linspace(0.0, n - 1.0, min(n, max(2, math.ceil((n - 1) / spacing) + 1)))


def _linear_weights(nodes, positions):
    """``(len(nodes), len(positions))`` weights of piecewise-linear interpolation from ``nodes`` to
    ``positions``: a mesh ``M`` (rows along y) becomes ``wy.T @ M @ wx``, exactly its bilinear interpolation."""
    return np.stack([np.interp(positions, nodes, unit) for unit in np.eye(len(nodes))])


def _largest_distance(x, y, other_x, other_y):
    distance = np.hypot(x - other_x, y - other_y)
    return float(np.nanmax(distance)) if np.isfinite(distance).any() else 0.0


class PixelMap:
    """Frame pixel coordinates of every grid pixel, interpolated from a checked mesh (`pixel_map`).

    Attributes
    ----------
    shape : tuple of int
        ``(height, width)`` of the grid.
    max_error_px : float
        Largest error of the interpolated mapping found by the run-time check, in frame pixels.
    spacing_px : float
        Largest distance between mesh nodes, in grid pixels (1: every pixel is a node, the map is exact).
    """

    def __init__(self, nodes_x, nodes_y, mesh_x, mesh_y, max_error_px):
        self.shape = (int(nodes_y[-1]) + 1, int(nodes_x[-1]) + 1)
        self._weights_x = _linear_weights(nodes_x, np.arange(self.shape[1]))
        self._weights_y = _linear_weights(nodes_y, np.arange(self.shape[0]))
        self._mesh_x, self._mesh_y = mesh_x, mesh_y
        self.max_error_px = max_error_px
        self.spacing_px = max(np.diff(nodes_x).max(initial=1.0), np.diff(nodes_y).max(initial=1.0))

    def block(self, rows, columns):
        """``(x, y)``: float32 frame pixel coordinates (astropy's 0-based convention) of the grid pixels
        ``[rows, columns]`` (two slices)."""
        wy, wx = self._weights_y[:, rows], self._weights_x[:, columns]
        return tuple(np.ascontiguousarray(wy.T @ mesh @ wx, dtype=np.float32)
                     for mesh in (self._mesh_x, self._mesh_y))


def pixel_map(grid, frame_wcs, tolerance_px):
    """Mapping from the pixels of ``grid`` to those of ``frame_wcs``, accurate to ``tolerance_px``.

    The exact transform (astropy's ``pixel_to_pixel``, grid pixel -> sky -> frame pixel) is evaluated on a
    mesh and interpolated bilinearly. The check compares the interpolation with the exact transform halfway
    between nodes (edge midpoints and cell centres, where bilinear interpolation errs most); while it
    exceeds ``tolerance_px`` the mesh spacing halves.

    Parameters
    ----------
    grid : `~astropy.wcs.WCS`
        Target celestial WCS with ``pixel_shape``.
    frame_wcs : `~astropy.wcs.WCS`
        Celestial WCS of the frame.
    tolerance_px : float
        Largest allowed error of the interpolated mapping, in frame pixels (0.01 px, 4 mas on SDSS, is far
        below the astrometric error). The float32 maps add their rounding (< 3e-4 px within
        4096 px of the frame's origin).

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
        if len(nodes_x) == width and len(nodes_y) == height:  # every pixel is a node: nothing interpolated
            return PixelMap(nodes_x, nodes_y, mesh_x, mesh_y, 0.0)
        halfway_x, halfway_y = (np.linspace(0, nodes[-1], 2 * len(nodes) - 1) for nodes in (nodes_x, nodes_y))
        wx, wy = _linear_weights(nodes_x, halfway_x), _linear_weights(nodes_y, halfway_y)
        error = _largest_distance(wy.T @ mesh_x @ wx, wy.T @ mesh_y @ wx,
                                  *pixel_to_pixel(grid, frame_wcs, *np.meshgrid(halfway_x, halfway_y)))
        if error <= tolerance_px:
            return PixelMap(nodes_x, nodes_y, mesh_x, mesh_y, error)
        spacing /= 2


def _area_ratio(grid, frame_wcs):
    """Grid pixel area / frame pixel area: turns flux per frame pixel into flux per grid pixel."""
    return proj_plane_pixel_area(grid) / proj_plane_pixel_area(frame_wcs)


def _checked_coverage(image, covered, require_coverage, source):
    if require_coverage and not covered.all():
        raise ImagingError(f"{source}: {1 - covered.mean():.1%} of the cutout lies outside the imaging coverage")
    return image, covered


def _frame_window(shape, frame_wcs, grid):
    """Row and column slices of ``grid`` holding every grid pixel that can map onto a frame of ``shape``:
    the bounding box, 2 px wider, of the frame's outer pixel edges mapped onto the grid (points every
    ``_OUTLINE_STEP_PX`` frame pixels, along which the outline is straight to far below a pixel). The whole
    grid when part of the outline does not map (e.g. the far side of the sky); None when the frame misses
    the grid. A tile spanning several frames then resamples each over its own part only."""
    ny, nx = shape
    across_x = np.linspace(-0.5, nx - 0.5, max(2, math.ceil(nx / _OUTLINE_STEP_PX) + 1))
    across_y = np.linspace(-0.5, ny - 0.5, max(2, math.ceil(ny / _OUTLINE_STEP_PX) + 1))
    x = np.concatenate([across_x, across_x, np.full_like(across_y, -0.5), np.full_like(across_y, nx - 0.5)])
    y = np.concatenate([np.full_like(across_x, -0.5), np.full_like(across_x, ny - 0.5), across_y, across_y])
    grid_x, grid_y = pixel_to_pixel(frame_wcs, grid, x, y)
    width, height = grid.pixel_shape
    if not (np.isfinite(grid_x).all() and np.isfinite(grid_y).all()):
        return slice(0, height), slice(0, width)
    left, right = max(0, math.floor(grid_x.min()) - 2), min(width, math.ceil(grid_x.max()) + 3)
    bottom, top = max(0, math.floor(grid_y.min()) - 2), min(height, math.ceil(grid_y.max()) + 3)
    if left >= right or bottom >= top:
        return None
    return slice(bottom, top), slice(left, right)


def _remap_frame(data, frame_wcs, grid, tolerance_px, source):
    """One frame on ``grid``: flux per grid pixel (0 where not covered) and the covered pixels."""
    data = np.ascontiguousarray(data, dtype=np.float32)
    if max(data.shape) >= _CV_MAX_SIDE:
        raise ValueError(f"{source}: a frame of {data.shape[1]} x {data.shape[0]} px is too large for "
                         f"opencv's remap (sides below {_CV_MAX_SIDE} px); cut it into parts")
    shape = (grid.pixel_shape[1], grid.pixel_shape[0])
    values, good = np.zeros(shape, np.float32), np.zeros(shape, bool)
    window = _frame_window(data.shape, frame_wcs, grid)
    if window is None:
        return values, good
    part = grid.slice(window)
    part.pixel_shape = (window[1].stop - window[1].start, window[0].stop - window[0].start)
    mapping = pixel_map(part, frame_wcs, tolerance_px)
    part_values, part_good = values[window], good[window]  # views: filled in place
    for top in range(0, mapping.shape[0], _CV_MAX_SIDE - 1):
        for left in range(0, mapping.shape[1], _CV_MAX_SIDE - 1):
            rows, columns = slice(top, top + _CV_MAX_SIDE - 1), slice(left, left + _CV_MAX_SIDE - 1)
            x, y = mapping.block(rows, columns)
            # Replicating the edge gives the outer half pixel the edge pixel's value, as reproject does;
            # further out it is a placeholder that `good` drops (NaN maps fail the comparisons too).
            part_values[rows, columns] = cv2.remap(data, x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            part_good[rows, columns] = ((x >= -0.5) & (x <= data.shape[1] - 0.5)
                                        & (y >= -0.5) & (y <= data.shape[0] - 0.5))
    part_good &= np.isfinite(part_values)
    part_values *= np.float32(_area_ratio(grid, frame_wcs))
    part_values[~part_good] = 0
    return values, good


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
    shape = (grid.pixel_shape[1], grid.pixel_shape[0])
    remapped = [_remap_frame(data, frame_wcs, grid, tolerance_px, source) for data, frame_wcs in frames]
    if len(remapped) == 1:
        image, covered = remapped[0]
    else:
        total = sum((values for values, _ in remapped), np.zeros(shape, np.float32))
        count = sum((good.astype(np.uint16) for _, good in remapped), np.zeros(shape, np.uint16))
        covered = count > 0
        image = np.divide(total, count, out=np.zeros(shape, np.float32), where=covered)
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
    """`remap_to_grid` (``method="remap"``) or `reproject_to_grid` (``"reproject"``); ``tolerance_px`` is
    unused by ``"reproject"``."""
    if method == "remap":
        return remap_to_grid(frames, grid, tolerance_px, source, require_coverage)
    if method == "reproject":
        return reproject_to_grid(frames, grid, source, require_coverage)
    raise ValueError(f"resampling method {method!r} is not one of {METHODS}")


@dataclass(frozen=True)
class Resampling:
    """How every imaging source resamples frames onto cutout and tile grids (`resample_to_grid`).

    `from_cfg` reads ``cfg.DEEPCEE.IMAGING``, where the defaults (and why) live.
    """

    method: str
    tolerance_px: float

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"resampling method {self.method!r} is not one of {METHODS}")
        if not self.tolerance_px > 0:
            raise ValueError(f"resampling tolerance must be positive, got {self.tolerance_px!r} px")

    @classmethod
    def from_cfg(cls, cfg):
        imaging = cfg.DEEPCEE.IMAGING
        return cls(imaging.RESAMPLE_METHOD, float(imaging.RESAMPLE_TOLERANCE_PX))

    @classmethod
    def default(cls):
        """The settings of the default config (``config.py``)."""
        from ..config import load_config

        return cls.from_cfg(load_config())

    def __call__(self, frames, grid, source="frames", require_coverage=True):
        return resample_to_grid(frames, grid, self.method, self.tolerance_px, source, require_coverage)

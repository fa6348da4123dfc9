"""Local g, r, i frames: FITS images read, a folder of frames indexed, and cutouts on one common grid.

A cutout is ``size x size`` pixels at ``pixel_scale`` (SDSS: 0.396"), centred anywhere, on a north-up TAN
grid (`deepcee_d2.sky.cutout_grid`) shared by the three bands: the bands of one SDSS field are offset by a few
pixels and each frame has its own rotated WCS, so the frames are resampled onto this grid
(`deepcee_d2.data.resample.Resampling`: bilinear interpolation; several frames are averaged where they
overlap). Values are nanomaggies per *cutout* pixel: frames with another pixel scale are rescaled by the
ratio of pixel areas. Frames already on the cutout grid (the synthetic survey) are cut with astropy's
`~astropy.nddata.Cutout2D` instead. A cutout must lie inside the imaging, except where ``partial=True``
(survey tiles at the edge of the imaging): there the pixels without data of every band are 0 (the sky level
of sky-subtracted frames) and marked in `Cutout.covered`.

`LocalFITSSource` reads a folder searched recursively for ``frame-*.fits*`` files whose primary HDU is an
image in nanomaggies with a celestial WCS and a ``FILTER`` keyword: the real SDSS corrected frames
(``frame-g-002583-2-0136.fits.bz2``) and the synthetic survey (``<root>/<field>/frame-g.fits``) alike.
NaN/inf pixels of a frame are missing data: they are set to 0 (the sky level of sky-subtracted frames) and
counted in `Cutout.missing`. The remote sources (`deepcee_d2.data.sources`) and the cache
(`deepcee_d2.data.cache`) build on the `ImagingSource` and `Cutout` defined here and on `ImagingError`
(defined with the resampling, `deepcee_d2.data.resample`, which raises it too).
"""
import bz2
import functools
import gzip
import io
import logging
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.nddata import Cutout2D, NoOverlapError, PartialOverlapError
from astropy.wcs import WCS

from ..sky import SDSS_PIXEL_SCALE, celestial_wcs, centre_and_radius, corners_sky, cutout_grid, footprints_overlap
from .colour import check_band_images
from .resample import ImagingError, Resampling

logger = logging.getLogger(__name__)

BANDS = ("g", "r", "i")
# Spellings of "nanomaggies per pixel" in BUNIT keywords (SDSS frames write "nanomaggy").
_NANOMAGGY_UNITS = {"nanomaggy", "nanomaggies", "nmgy", "nanomaggy/pixel", "nanomaggies/pixel"}
# FITS files by name (also compressed): those under the root that do not match the frame pattern are reported.
_FITS_NAME = re.compile(r"\.(fits?|fts)(\.(gz|bz2|fz))?$", re.IGNORECASE)


@dataclass
class Cutout:
    """Flux images of several bands on one pixel grid.

    Attributes
    ----------
    images : dict of str -> (size, size) float32 array
        Nanomaggies per cutout pixel, by band.
    wcs : `~astropy.wcs.WCS`
        The common celestial WCS (`deepcee_d2.sky.cutout_grid`, or the frames' own for a cut of them).
    source : str
        Where the pixels came from (files or service), for messages and provenance.
    missing : dict of str -> int
        By band, the NaN/inf frame pixels inside the cutout that were set to 0 (bands without any are absent).
    covered : (size, size) bool array or None
        Pixels imaged in every band; None when all are (the cutout lies inside the imaging). Only a
        ``partial=True`` cutout has uncovered pixels, which are 0 in every band.
    """

    images: dict
    wcs: WCS
    source: str
    missing: dict = field(default_factory=dict)
    covered: np.ndarray = None

    @property
    def covered_fraction(self):
        """Fraction of the cutout's pixels imaged in every band."""
        return 1.0 if self.covered is None else float(self.covered.mean())


def covered_at(covered, x, y):
    """``covered`` (a `Cutout.covered` mask) at pixel positions ``x``, ``y`` (0-based, any shape): the
    nearest pixel's value, positions past the border taking the border's."""
    height, width = covered.shape
    column = np.clip(np.rint(np.asarray(x)).astype(int), 0, width - 1)
    row = np.clip(np.rint(np.asarray(y)).astype(int), 0, height - 1)
    return covered[row, column]


class ImagingSource:
    """Base class: ``cutout(centre, size, pixel_scale) -> Cutout`` with images of `bands`."""

    name = "imaging"
    bands = BANDS

    def cutout(self, centre, size, pixel_scale=SDSS_PIXEL_SCALE, partial=False):  # pragma: no cover - interface
        """The `Cutout` of ``size`` pixels at ``pixel_scale`` around ``centre``; with ``partial`` it may reach
        past the edge of the imaging (`Cutout.covered`), otherwise that raises `ImagingError`."""
        raise NotImplementedError

    def describe(self):
        """A short text naming the source, recorded in data sets."""
        return self.name

    def real_sky(self):
        """What of this imaging shows the real sky, as a short text, or None for the simulator's: an archive's
        imaging is all real."""
        return f"{self.name} imaging"


def check_nanomaggies(header, source):
    """Raise `ImagingError` naming ``source`` when the header's ``BUNIT`` is not nanomaggies per pixel."""
    unit = str(header.get("BUNIT", "nanomaggy")).strip().lower().replace(" ", "")
    if unit not in _NANOMAGGY_UNITS:
        raise ImagingError(f"{source}: BUNIT is {header['BUNIT']!r}, expected nanomaggies per pixel")


# Whole-file compressions of FITS frames, by suffix, and the standard library's opener of each.
_DECOMPRESSORS = {".gz": gzip.open, ".bz2": bz2.open}


def open_decompressed(path):
    """Binary stream of ``path``, decompressed when its name ends in ``.gz`` or ``.bz2``. Not astropy's
    ``get_readable_fileobj``: astropy 8.0 copies every ``.bz2`` file it opens into the system's temporary
    folder and never deletes the copy (3-4 MB per SDSS frame read; a day of test runs left 10 GB)."""
    return _DECOMPRESSORS.get(Path(str(path)).suffix.lower(), open)(str(path), "rb")


@contextmanager
def open_fits(path):
    """``fits.open`` of ``path``; a ``.gz`` or ``.bz2`` file is decompressed into memory once first. astropy
    seeks backwards in a compressed stream, and each such seek decompresses from the start again: an SDSS
    ``.bz2`` frame took 4.2 CPU-s to read that way, 1.9 s decompressed once (BENCHMARKS "Test suite")."""
    if Path(str(path)).suffix.lower() in _DECOMPRESSORS:
        with open_decompressed(path) as stream:
            path = io.BytesIO(stream.read())
    with fits.open(path) as hdul:
        yield hdul


def read_image(path):
    """Primary image (float32) and header of a FITS file, or raise naming the file."""
    try:
        with open_fits(path) as hdul:
            return np.asarray(hdul[0].data, dtype=np.float32), hdul[0].header.copy()
    except (OSError, ValueError, TypeError, EOFError) as error:
        raise ImagingError(f"{path}: cannot read FITS image ({type(error).__name__}: {error})") from error


def _describe_uncovered(uncovered, grid):
    """Which part of the image of ``grid`` the boolean ``uncovered`` marks: fraction, pixel box, sky position
    and direction from the centre."""
    rows, columns = np.nonzero(uncovered)
    where = (f"{uncovered.mean():.1%} of the cutout (pixels x {columns.min()}-{columns.max()}, "
             f"y {rows.min()}-{rows.max()}")
    if uncovered.all():
        return f"all of the cutout ({uncovered.size} pixels)"
    ny, nx = uncovered.shape
    centre = grid.pixel_to_world((nx - 1) / 2, (ny - 1) / 2)
    part = grid.pixel_to_world(columns.mean(), rows.mean())
    compass = ("north", "north-east", "east", "south-east", "south", "south-west", "west", "north-west")
    side = compass[int(((centre.position_angle(part).deg + 22.5) % 360) // 45)]
    return f"{where}, the {side} part around {part.icrs.to_string('decimal', precision=5)})"


def resample_frames(frames, grid, resampling, source="frames", partial=False):
    """Average frames (each ``(data, wcs)``) onto ``grid`` with ``resampling``
    (`deepcee_d2.data.resample.Resampling`), in flux per grid pixel.

    Returns
    -------
    image : float32 array
        0 where no frame has data.
    covered : bool array
        Pixels with data.

    Raises
    ------
    ImagingError
        When part of the grid is covered by no frame (the position is at the edge of the imaging) and not
        ``partial``, or none of it is, naming that part (pixels, sky position, direction) and ``source``.
    """
    image, covered = resampling(frames, grid, source, require_coverage=False)
    if not covered.all() and not (partial and covered.any()):
        raise ImagingError(f"{source}: {_describe_uncovered(~covered, grid)} lies outside the imaging coverage")
    return image, covered


# The ORIGIN card of the simulator's frames (`deepcee_d2.synthetic`): any other is imaging of the real sky.
SYNTHETIC_ORIGIN = "deepcee_d2.synthetic"


@dataclass(frozen=True)
class _Frame:
    path: Path
    band: str
    wcs: WCS
    shape: tuple
    origin: str = ""  # the header's ORIGIN: "SDSS" for SDSS frames, SYNTHETIC_ORIGIN for the simulator's


def read_primary_header(path):
    """The primary header of a FITS file, also ``.gz`` / ``.bz2`` compressed: read from the start of the
    decompressed stream, which costs 0.04 s for an SDSS ``.bz2`` frame where ``fits.getheader`` decompresses
    the whole file (1.6 s)."""
    with open_decompressed(path) as stream:
        return fits.Header.fromfile(stream)


def read_frame_header(path):
    """The frame (path, band, wcs, shape) of a FITS file, or `ImagingError` naming the file and why it is not a usable frame."""
    try:
        header = read_primary_header(path)
    except (OSError, ValueError, EOFError) as error:
        raise ImagingError(f"{path}: cannot read FITS header ({type(error).__name__}: {error})") from error
    if header.get("NAXIS", 0) != 2:
        raise ImagingError(f"{path}: primary HDU is not a 2-D image (NAXIS = {header.get('NAXIS')})")
    band = str(header.get("FILTER", "")).strip()
    if not band:
        raise ImagingError(f"{path}: no FILTER keyword naming the band")
    check_nanomaggies(header, path)
    try:
        wcs = celestial_wcs(header, str(path))
    except ValueError as error:
        raise ImagingError(str(error)) from error
    return _Frame(path, band, wcs, (header["NAXIS2"], header["NAXIS1"]), str(header.get("ORIGIN", "")).strip())


def _skipped_by_name(path, pattern):
    """Why a FITS file whose name does not match ``pattern`` is worth reporting (a 2-D image, or unreadable),
    or None (a table, an empty primary HDU: not imaging)."""
    try:
        if read_primary_header(path).get("NAXIS", 0) != 2:
            return None
        why = "a 2-D image"
    except (OSError, ValueError, EOFError) as error:
        why = f"unreadable ({type(error).__name__}: {error})"
    return f"{path}: {why} whose name does not match {pattern!r}: skipped (frames are named like " \
           f"frame-g-002583-2-0136.fits.bz2 or <field>/frame-g.fits)"


def _frame_pixels(path):
    """A frame's pixels with NaN/inf set to 0, and the ``(rows, columns)`` of those pixels.

    Frames are read once per process while cutouts are cut from them (bz2 files take ~1 s each), and again
    when the file changes.
    """
    stat = Path(path).stat()
    return _read_frame_pixels(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=12)
def _read_frame_pixels(path, mtime_ns, size):
    data, _ = read_image(path)
    bad = ~np.isfinite(data)
    if bad.all():
        raise ImagingError(f"{path}: every pixel is NaN/inf: no data")
    data[bad] = 0.0  # the sky level of sky-subtracted frames: missing data adds no light
    return data, np.nonzero(bad)


def _missing_inside(frame, bad, grid):
    """How many of a frame's NaN/inf pixels ``bad`` (rows, columns) fall inside the image of ``grid``."""
    rows, columns = bad
    if len(rows) == 0:
        return 0
    x, y = (np.asarray(v) for v in frame.wcs.world_to_pixel(corners_sky(grid, grid.array_shape)))
    near = (columns >= x.min() - 1) & (columns <= x.max() + 1) & (rows >= y.min() - 1) & (rows <= y.max() + 1)
    if not near.any():
        return 0
    gx, gy = grid.world_to_pixel(frame.wcs.pixel_to_world(columns[near], rows[near]))
    ny, nx = grid.array_shape
    return int(np.count_nonzero((gx > -0.5) & (gx < nx - 0.5) & (gy > -0.5) & (gy < ny - 0.5)))


def _shares_north_up_grid(covering_by_band, pixel_scale):
    """Whether one frame per band covers the cutout and all bands share one north-up pixel grid at
    ``pixel_scale`` (the synthetic survey): then a cutout is a cut of the frames, without resampling."""
    if any(len(covering) != 1 for covering in covering_by_band.values()):
        return False
    first, *others = (covering[0] for covering in covering_by_band.values())
    if any(f.shape != first.shape or not f.wcs.wcs.compare(first.wcs.wcs, tolerance=1e-10) for f in others):
        return False
    scale = pixel_scale.to_value(u.deg)
    return np.allclose(first.wcs.pixel_scale_matrix, [[-scale, 0.0], [0.0, scale]], rtol=0, atol=1e-9 * scale)


class LocalFITSSource(ImagingSource):
    """Cutouts from a folder of ``frame-*.fits[.gz|.bz2]`` files (SDSS corrected frames, synthetic fields).

    Parameters
    ----------
    root : str or Path
        Folder searched recursively.
    resampling : `~deepcee_d2.data.resample.Resampling`, optional
        How frames are resampled onto cutout grids (``Resampling.from_cfg``); the default config's if None.
    bands : tuple of str
        Bands to cut (each must have at least one frame covering the cutout).
    pattern : str
        File-name pattern of frames.
    """

    name = "fits"

    def __init__(self, root, resampling=None, bands=BANDS, pattern="frame-*.fits*"):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: imaging folder not found")
        self.resampling = resampling or Resampling.default()
        self.bands = tuple(bands)
        self.pattern = pattern
        self._frames = {}
        self._problems = {}
        self._not_imaging = set()  # FITS tables and such beside the frames (e.g. clusters.fits): not reported
        self._footprints = None  # (frames, centres, radii) of the last scan, for a quick distance cut

    def describe(self):
        return f"fits:{self.root}"

    def real_sky(self):
        """The frames whose ``ORIGIN`` is not the simulator's (`SYNTHETIC_ORIGIN`), counted and one named; None
        when every frame is synthetic."""
        real = [frame for frame in self.scan()[0] if frame.origin != SYNTHETIC_ORIGIN]
        if not real:
            return None
        return f"{len(real)} real frames under {self.root} (e.g. {real[0].path.name})"

    def scan(self):
        """``(frames, problems)``: the frames under the root, and ``{path: reason}`` for the FITS files that are
        not used: files matching the pattern that are not usable frames (unreadable header, not a 2-D image, no
        FILTER, other units, no celestial WCS), and 2-D images or unreadable files whose names do not match it.
        FITS files of other kinds (tables such as ``clusters.fits``) are left out silently.

        Headers are read once; files added later are picked up on the next call.
        """
        for path in sorted(self.root.rglob("*")):
            if path in self._frames or path in self._problems or path in self._not_imaging or not path.is_file():
                continue
            if path.match(self.pattern):
                try:
                    self._frames[path] = read_frame_header(path)
                except ImagingError as error:
                    self._problems[path] = str(error)
            elif _FITS_NAME.search(path.name):
                why = _skipped_by_name(path, self.pattern)
                if why is None:
                    self._not_imaging.add(path)
                else:
                    self._problems[path] = why
        return list(self._frames.values()), dict(self._problems)

    def _near(self, frames, grid):
        """The frames whose circumscribed circle meets the grid's: one vectorised sky-distance cut, so that the
        exact overlap test runs on a few frames rather than on every frame of a large survey."""
        if self._footprints is None or self._footprints[0] != frames:
            circles = [centre_and_radius(frame.wcs, frame.shape) for frame in frames]
            centres = SkyCoord([c for c, _ in circles]) if circles else None
            self._footprints = (frames, centres, u.Quantity([r for _, r in circles]) if circles else None)
        frames, centres, radii = self._footprints
        if not frames:
            return []
        centre, radius = centre_and_radius(grid, grid.array_shape)
        close = centres.separation(centre) <= radii + radius
        return [frame for frame, keep in zip(frames, close) if keep]

    def frames(self):
        """All frames under the root; raises `ImagingError` naming the first file `scan` reports."""
        frames, problems = self.scan()
        if problems:
            raise ImagingError(next(iter(problems.values())))
        return frames

    def cutout(self, centre, size, pixel_scale=SDSS_PIXEL_SCALE, partial=False):
        """g, r, i (``bands``) on `~deepcee_d2.sky.cutout_grid` around ``centre``, from the covering frames.

        Files that are not used (`scan`) are left out, and named when a band has no frame. NaN/inf pixels
        are set to 0 and counted (`Cutout.missing`, and a warning). With ``partial``, the cutout may reach
        past the edge of the imaging: pixels without data in every band are 0 in all bands and
        `Cutout.covered` marks the others.

        When one frame per band covers the cutout and the bands share one north-up grid at ``pixel_scale``
        (the synthetic survey), the cutout is instead a `~astropy.nddata.Cutout2D` of that grid centred on
        the pixel nearest ``centre`` (within half a pixel), with the frames' own WCS: the same sky, without
        resampling.

        Raises
        ------
        ImagingError
            No frame of a band covers the cutout (the message names the frames and bands that do), part of
            it lies outside all frames and not ``partial`` (the message says which part), or a frame has no
            finite pixel.
        """
        grid = cutout_grid(centre, size, pixel_scale)
        where = f"{self.root} at {centre.icrs.to_string('decimal', precision=5)}"
        frames, problems = self.scan()
        covering = [frame for frame in self._near(frames, grid) if footprints_overlap(frame.wcs, frame.shape, grid)]
        covering_by_band = {band: [frame for frame in covering if frame.band == band] for band in self.bands}
        for band, on_band in covering_by_band.items():
            if not on_band:
                names = ", ".join(str(f.path.relative_to(self.root)) for f in covering)
                here = (f"it lies on {names} (bands {sorted({f.band for f in covering})})" if covering
                        else "no frame of any band covers it")
                skipped = f"; files not used: {list(problems.values())}" if problems else ""
                raise ImagingError(f"{where}: no {band}-band frame covers the cutout; {here}{skipped}")
        cut = None
        if _shares_north_up_grid(covering_by_band, pixel_scale):
            try:
                cut = {band: Cutout2D(_frame_pixels(frame.path)[0], centre, size, wcs=frame.wcs, mode="strict")
                       for band, (frame,) in covering_by_band.items()}
            except (NoOverlapError, PartialOverlapError):
                pass  # at the frame's edge: resampled below, which names the part outside the imaging
        covered = None
        if cut is not None:
            images = {band: np.array(piece.data, dtype=np.float32) for band, piece in cut.items()}
            grid = next(iter(cut.values())).wcs
        else:
            images = {}
            for band, on_band in covering_by_band.items():
                names = ", ".join(frame.path.name for frame in on_band)
                images[band], on_grid = resample_frames([(_frame_pixels(f.path)[0], f.wcs) for f in on_band], grid,
                                                        self.resampling, f"{where}, band {band} ({names})", partial)
                covered = on_grid if covered is None else covered & on_grid
            if covered.all():
                covered = None
            else:  # a pixel is searched only with all its colours; the rest is blank sky in every band
                for image in images.values():
                    image[~covered] = 0
        missing = {}
        for band, on_band in covering_by_band.items():
            for frame in on_band:
                count = _missing_inside(frame, _frame_pixels(frame.path)[1], grid)
                if count:
                    logger.warning("%s: %d NaN/inf pixels of %s inside the cutout set to 0 (missing data)",
                                   where, count, frame.path)
                    missing[band] = missing.get(band, 0) + count
        check_band_images(images, self.bands, where)
        return Cutout(images, grid, "; ".join(str(f.path) for on_band in covering_by_band.values() for f in on_band),
                      missing, covered)

"""g, r, i cutouts on one common grid, from SkyView, SDSS frames or any folder of FITS frames.

A cutout is ``size x size`` pixels at ``pixel_scale`` (SDSS: 0.396"), centred anywhere, on a north-up TAN
grid (`cutout_grid`) shared by the three bands: the bands of one SDSS field are offset by a few pixels and
each frame has its own rotated WCS, so every source reprojects its images onto this grid with
`reproject` (bilinear interpolation; several frames are averaged where they overlap). Values are
nanomaggies per *cutout* pixel: frames with another pixel scale are rescaled by the ratio of pixel areas.

Sources (`ImagingSource` subclasses, `make_source` by name):

- `LocalFITSSource`: a folder searched recursively for ``frame-*.fits*`` files whose primary HDU is an image
  in nanomaggies with a celestial WCS and a ``FILTER`` keyword. This reads the real SDSS corrected frames
  (``frame-g-002583-2-0136.fits.bz2``) and the synthetic survey (``<root>/<field>/frame-g.fits``) alike.
- `SDSSSource`: downloads the SDSS corrected frames covering a cutout through ``astroquery.sdss`` into a
  folder (resumable: frames already there are not fetched again), then reads them as a `LocalFITSSource`.
- `SkyViewSource`: ``astroquery.skyview`` surveys SDSSg/SDSSr/SDSSi (as the paper did). SkyView resamples
  the SDSS DR frames, whose pixel values are nanomaggies; a ``BUNIT`` other than nanomaggies is refused.

`get_cutout` adds the on-disk cache: one FITS file per band under a folder named for the source, position
and size, written to a temporary name and renamed, so an interrupted run resumes where it stopped.
Network calls are retried with exponential backoff.
"""
import functools
import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_area

from ..io import atomic_output
from .colour import check_band_images
from .pixels import celestial_wcs

logger = logging.getLogger(__name__)

BANDS = ("g", "r", "i")
SDSS_PIXEL_SCALE = 0.396 * u.arcsec
# Spellings of "nanomaggies per pixel" in BUNIT keywords (SDSS frames write "nanomaggy").
_NANOMAGGY_UNITS = {"nanomaggy", "nanomaggies", "nmgy", "nanomaggy/pixel", "nanomaggies/pixel"}


class ImagingError(RuntimeError):
    """A cutout cannot be made (no coverage, a band missing, a failed download); the message says why."""


@dataclass
class Cutout:
    """Flux images of several bands on one pixel grid.

    Attributes
    ----------
    images : dict of str -> (size, size) float32 array
        Nanomaggies per cutout pixel, by band.
    wcs : `~astropy.wcs.WCS`
        The common celestial WCS (`cutout_grid`).
    source : str
        Where the pixels came from (files or service), for messages and provenance.
    """

    images: dict
    wcs: WCS
    source: str


def cutout_grid(centre, size, pixel_scale=SDSS_PIXEL_SCALE):
    """North-up, east-left TAN grid of ``size x size`` pixels centred on ``centre``.

    Parameters
    ----------
    centre : `~astropy.coordinates.SkyCoord`
        Sky position of the image centre (the reference point, at FITS pixel ``(size + 1) / 2``).
    size : int
        Pixels on a side.
    pixel_scale : `~astropy.units.Quantity` [angle]
        Angular size of a pixel.
    """
    centre = centre.icrs
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.cunit = ["deg", "deg"]
    wcs.wcs.radesys = "ICRS"
    wcs.wcs.crval = [centre.ra.deg, centre.dec.deg]
    wcs.wcs.crpix = [(size + 1) / 2, (size + 1) / 2]
    scale = pixel_scale.to_value(u.deg)
    wcs.wcs.cdelt = [-scale, scale]
    wcs.pixel_shape = (size, size)
    wcs.wcs.set()
    return wcs


def _position_name(centre, size, pixel_scale):
    """Stable name of a cutout: rounded position (to 0.036") and size."""
    centre = centre.icrs
    return f"ra{centre.ra.deg:010.5f}_dec{centre.dec.deg:+09.5f}_{size}px_{pixel_scale.to_value(u.arcsec):.4f}as"


def _check_nanomaggies(header, source):
    unit = str(header.get("BUNIT", "nanomaggy")).strip().lower().replace(" ", "")
    if unit not in _NANOMAGGY_UNITS:
        raise ImagingError(f"{source}: BUNIT is {header['BUNIT']!r}, expected nanomaggies per pixel")


def _open_image(path):
    """Primary image (float32) and header of a FITS file, or raise naming the file."""
    try:
        with fits.open(path) as hdul:
            return np.asarray(hdul[0].data, dtype=np.float32), hdul[0].header.copy()
    except (OSError, ValueError, TypeError, EOFError) as error:
        raise ImagingError(f"{path}: cannot read FITS image ({type(error).__name__}: {error})") from error


def reproject_to_grid(frames, grid, source="frames"):
    """Average frames (each ``(data, wcs)``) onto ``grid``, rescaled to flux per grid pixel.

    Raises
    ------
    ImagingError
        When part of the grid is covered by no frame (the position is outside the imaging), naming the
        uncovered fraction and ``source``.
    """
    from reproject import reproject_interp
    from reproject.mosaicking import reproject_and_coadd

    grid_area = proj_plane_pixel_area(grid)
    scaled = [(data * (grid_area / proj_plane_pixel_area(wcs)), wcs) for data, wcs in frames]
    shape = (grid.pixel_shape[1], grid.pixel_shape[0])
    array, footprint = reproject_and_coadd(scaled, grid, shape_out=shape, reproject_function=reproject_interp,
                                           combine_function="mean")
    uncovered = footprint <= 0
    if uncovered.any():
        raise ImagingError(
            f"{source}: {uncovered.mean():.1%} of the cutout lies outside the imaging coverage"
        )
    return array.astype(np.float32)


class ImagingSource:
    """Base class: ``cutout(centre, size, pixel_scale) -> Cutout`` with images of `bands`."""

    name = "imaging"
    bands = BANDS

    def cutout(self, centre, size, pixel_scale=SDSS_PIXEL_SCALE):  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self):
        """A short text naming the source, recorded in data sets."""
        return self.name


@dataclass(frozen=True)
class _Frame:
    path: Path
    band: str
    wcs: WCS
    shape: tuple


def corners_sky(wcs, shape):
    """Sky positions of the outer corners of an image of ``shape`` (rows, columns): bottom-left,
    bottom-right, top-right, top-left of its pixel grid."""
    height, width = shape
    return wcs.pixel_to_world([-0.5, width - 0.5, width - 0.5, -0.5], [-0.5, -0.5, height - 0.5, height - 0.5])


def _centre_and_radius(wcs, shape):
    """Sky centre of an image of ``shape`` and the angle from it to the farthest corner."""
    height, width = shape
    centre = wcs.pixel_to_world((width - 1) / 2, (height - 1) / 2)
    return centre, centre.separation(corners_sky(wcs, shape)).max()


def _overlaps(frame, grid):
    """Whether the cutout ``grid`` and the frame overlap (corners and centre of the grid in frame pixels)."""
    nx, ny = grid.pixel_shape
    corners_x = np.array([-0.5, nx - 0.5, nx - 0.5, -0.5, (nx - 1) / 2])
    corners_y = np.array([-0.5, -0.5, ny - 0.5, ny - 0.5, (ny - 1) / 2])
    sky = grid.pixel_to_world(corners_x, corners_y)
    x, y = frame.wcs.world_to_pixel(sky)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return False
    height, width = frame.shape
    return x.max() >= -0.5 and x.min() <= width - 0.5 and y.max() >= -0.5 and y.min() <= height - 0.5


@functools.lru_cache(maxsize=12)
def _cached_image(path):
    """Frames are read once per process while cutouts are cut from them (bz2 files take ~1 s each)."""
    return _open_image(path)[0]


def _aligned_slice(covering_by_band, centre, size, pixel_scale):
    """``(rows, columns)`` slices when one frame per band covers the cutout, all bands share one north-up
    pixel grid at ``pixel_scale`` (the synthetic survey), and the cutout fits inside it; else None."""
    frames = [covering[0] for covering in covering_by_band.values() if len(covering) == 1]
    if len(frames) != len(covering_by_band):
        return None
    first = frames[0]
    if any(f.shape != first.shape or not f.wcs.wcs.compare(first.wcs.wcs, tolerance=1e-10) for f in frames[1:]):
        return None
    scale = pixel_scale.to_value(u.deg)
    if not np.allclose(first.wcs.pixel_scale_matrix, [[-scale, 0.0], [0.0, scale]], rtol=0, atol=1e-9 * scale):
        return None
    x, y = (float(v) for v in first.wcs.world_to_pixel(centre))
    x0, y0 = round(x - (size - 1) / 2), round(y - (size - 1) / 2)
    height, width = first.shape
    if x0 < 0 or y0 < 0 or x0 + size > width or y0 + size > height:
        return None
    return slice(y0, y0 + size), slice(x0, x0 + size)


def _sliced_cutout(covering_by_band, aligned, where):
    """The cutout as a slice of frames already on a north-up grid at the cutout's scale: no resampling,
    so no interpolation smooths the noise; its WCS is the frames' own, centred on the nearest pixel."""
    images, used = {}, []
    for band, (frame,) in covering_by_band.items():
        data = _cached_image(frame.path)
        check_band_images({band: data}, (band,), str(frame.path))
        images[band] = np.array(data[aligned], dtype=np.float32)
        used.append(str(frame.path))
    wcs = frame.wcs.slice(aligned)
    wcs.pixel_shape = (images[band].shape[1], images[band].shape[0])
    check_band_images(images, tuple(covering_by_band), where)
    return Cutout(images, wcs, "; ".join(used))


def _read_frame_header(path):
    """The `_Frame` of a FITS file, or `ImagingError` naming the file and why it is not a usable frame."""
    try:
        header = fits.getheader(path, 0)
    except (OSError, ValueError, EOFError) as error:
        raise ImagingError(f"{path}: cannot read FITS header ({type(error).__name__}: {error})") from error
    if header.get("NAXIS", 0) != 2:
        raise ImagingError(f"{path}: primary HDU is not a 2-D image (NAXIS = {header.get('NAXIS')})")
    band = str(header.get("FILTER", "")).strip()
    if not band:
        raise ImagingError(f"{path}: no FILTER keyword naming the band")
    _check_nanomaggies(header, path)
    try:
        wcs = celestial_wcs(header, str(path))
    except ValueError as error:
        raise ImagingError(str(error)) from error
    return _Frame(path, band, wcs, (header["NAXIS2"], header["NAXIS1"]))


class LocalFITSSource(ImagingSource):
    """Cutouts from a folder of ``frame-*.fits[.gz|.bz2]`` files (SDSS corrected frames, synthetic fields).

    Parameters
    ----------
    root : str or Path
        Folder searched recursively.
    bands : tuple of str
        Bands to cut (each must have at least one frame covering the cutout).
    pattern : str
        File-name pattern of frames.
    """

    name = "fits"

    def __init__(self, root, bands=BANDS, pattern="frame-*.fits*"):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: imaging folder not found")
        self.bands = tuple(bands)
        self.pattern = pattern
        self._frames = {}
        self._unusable = {}
        self._footprints = None  # (frames, centres, radii) of the last scan, for a quick distance cut

    def describe(self):
        return f"fits:{self.root}"

    def scan(self):
        """``(frames, unusable)``: the frames under the root, and ``{path: reason}`` for files that are not
        usable frames (unreadable header, not a 2-D image, no FILTER, other units, no celestial WCS).

        Headers are read once; files added later are picked up on the next call.
        """
        for path in sorted(self.root.rglob(self.pattern)):
            if path in self._frames or path in self._unusable:
                continue
            try:
                self._frames[path] = _read_frame_header(path)
            except ImagingError as error:
                self._unusable[path] = str(error)
        return list(self._frames.values()), dict(self._unusable)

    def _near(self, frames, grid):
        """The frames whose circumscribed circle meets the grid's: one vectorised sky-distance cut, so that the
        exact overlap test runs on a few frames rather than on every frame of a large survey."""
        if self._footprints is None or self._footprints[0] != frames:
            circles = [_centre_and_radius(frame.wcs, frame.shape) for frame in frames]
            centres = SkyCoord([c for c, _ in circles]) if circles else None
            self._footprints = (frames, centres, u.Quantity([r for _, r in circles]) if circles else None)
        frames, centres, radii = self._footprints
        if not frames:
            return []
        centre, radius = _centre_and_radius(grid, (grid.pixel_shape[1], grid.pixel_shape[0]))
        close = centres.separation(centre) <= radii + radius
        return [frame for frame, keep in zip(frames, close) if keep]

    def frames(self):
        """All frames under the root; raises `ImagingError` naming the first file that is not a usable frame."""
        frames, unusable = self.scan()
        if unusable:
            raise ImagingError(next(iter(unusable.values())))
        return frames

    def cutout(self, centre, size, pixel_scale=SDSS_PIXEL_SCALE):
        """g, r, i (``bands``) on `cutout_grid` around ``centre``, reprojected from the covering frames.

        Files that are not usable frames (`scan`) are left out, and named when a band has no frame.

        When one frame per band covers the cutout and the bands share one north-up grid at ``pixel_scale``
        (the synthetic survey), the cutout is instead a slice of that grid centred on the pixel nearest
        ``centre`` (within half a pixel), with the frames' own WCS: the same sky, without resampling.

        Raises
        ------
        ImagingError
            No frame of a band covers the cutout, or part of it lies outside all frames.
        """
        grid = cutout_grid(centre, size, pixel_scale)
        where = f"{self.root} at {centre.icrs.to_string('decimal', precision=5)}"
        images, used = {}, []
        frames, unusable = self.scan()
        near = self._near(frames, grid)
        covering_by_band = {band: [frame for frame in near if frame.band == band and _overlaps(frame, grid)]
                            for band in self.bands}
        for band, covering in covering_by_band.items():
            if not covering:
                have = sorted({frame.band for frame in frames})
                skipped = f"; files that are not usable frames: {list(unusable.values())}" if unusable else ""
                raise ImagingError(f"{where}: no {band}-band frame covers the cutout (bands here: {have}){skipped}")
        aligned = _aligned_slice(covering_by_band, centre, size, pixel_scale)
        if aligned is not None:
            return _sliced_cutout(covering_by_band, aligned, where)
        for band, covering in covering_by_band.items():
            names = ", ".join(frame.path.name for frame in covering)
            pixels = [_cached_image(frame.path) for frame in covering]
            for frame, data in zip(covering, pixels):  # reproject would treat NaN as "not covered"
                check_band_images({band: data}, (band,), str(frame.path))
            images[band] = reproject_to_grid(list(zip(pixels, [frame.wcs for frame in covering])), grid,
                                             f"{where}, band {band} ({names})")
            used += [str(frame.path) for frame in covering]
        check_band_images(images, self.bands, where)
        return Cutout(images, grid, "; ".join(used))


def with_retries(call, what, attempts=4, backoff_s=2.0):
    """``call()``, retried on network errors after ``backoff_s``, 2x, 4x ... seconds; raise naming ``what``."""
    import urllib.error

    import requests

    # requests (astroquery's HTTP layer), urllib (astropy's download_file, used for SkyView's images), sockets.
    network_errors = (requests.RequestException, urllib.error.URLError, ConnectionError, TimeoutError)
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except network_errors as error:
            if attempt == attempts:
                raise ImagingError(f"{what}: failed after {attempts} attempts ({type(error).__name__}: {error})") \
                    from error
            wait = backoff_s * 2 ** (attempt - 1)
            logger.warning("%s: %s; retrying in %.0f s (%d/%d)", what, error, wait, attempt, attempts)
            time.sleep(wait)


class SDSSSource(ImagingSource):
    """SDSS corrected frames fetched through ``astroquery.sdss`` into ``folder``, then cut like local frames.

    The frames overlapping a cutout are found by photometric-object queries (radius 3', astroquery's
    largest) at the centre, corners and edge midpoints of the cutout; each frame is downloaded once per
    band (``frame-<band>-<run>-<camcol>-<field>.fits``) and kept.

    Parameters
    ----------
    folder : str or Path
        Where frames are stored.
    data_release : int
        SDSS data release.
    attempts, backoff_s : int, float
        Retries of each network call (`with_retries`).
    """

    name = "sdss"

    def __init__(self, folder, bands=BANDS, data_release=17, attempts=4, backoff_s=2.0):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.bands = tuple(bands)
        self.data_release = data_release
        self.attempts, self.backoff_s = attempts, backoff_s
        self.local = LocalFITSSource(self.folder, self.bands)

    def describe(self):
        return f"sdss:DR{self.data_release}"

    def _fields(self, centre, size, pixel_scale):
        from astropy.table import unique, vstack
        from astroquery.sdss import SDSS

        half = size * pixel_scale / 2
        tables = []
        for dx in (-half, 0 * u.arcsec, half):
            for dy in (-half, 0 * u.arcsec, half):
                point = centre.spherical_offsets_by(dx, dy)
                found = with_retries(
                    lambda: SDSS.query_region(point, radius=3 * u.arcmin, fields=["run", "rerun", "camcol", "field"],
                                              data_release=self.data_release),
                    f"SDSS fields near {point.to_string('decimal')}", self.attempts, self.backoff_s)
                if found is not None and len(found):
                    tables.append(found)
        if not tables:
            raise ImagingError(f"SDSS DR{self.data_release}: no imaging at {centre.to_string('decimal')}")
        return unique(vstack(tables), keys=["run", "camcol", "field"])

    def download(self, centre, size, pixel_scale=SDSS_PIXEL_SCALE):
        """Fetch the missing frames around ``centre``; returns the frame paths."""
        from astroquery.sdss import SDSS

        paths = []
        for row in self._fields(centre, size, pixel_scale):
            for band in self.bands:
                path = self.folder / f"frame-{band}-{int(row['run']):06d}-{int(row['camcol'])}-{int(row['field']):04d}.fits"
                paths.append(path)
                if path.exists():
                    continue
                hduls = with_retries(
                    lambda: SDSS.get_images(run=int(row["run"]), rerun=int(row["rerun"]), camcol=int(row["camcol"]),
                                            field=int(row["field"]), band=band, data_release=self.data_release),
                    f"SDSS frame {path.name}", self.attempts, self.backoff_s)
                if not hduls:
                    raise ImagingError(f"SDSS DR{self.data_release}: no {path.name} returned")
                with atomic_output(path) as temporary:
                    fits.PrimaryHDU(hduls[0][0].data, hduls[0][0].header).writeto(temporary, overwrite=True)
        return paths

    def cutout(self, centre, size, pixel_scale=SDSS_PIXEL_SCALE):
        self.download(centre, size, pixel_scale)
        return self.local.cutout(centre, size, pixel_scale)


class SkyViewSource(ImagingSource):
    """Cutouts from NASA SkyView's SDSSg/SDSSr/SDSSi surveys through ``astroquery.skyview``.

    SkyView is asked for the cutout grid itself (TAN, J2000, ``size`` pixels over ``size x pixel_scale``);
    its answer is then reprojected onto `cutout_grid` so that every source returns the same grid.
    """

    name = "skyview"
    SURVEYS = {"g": "SDSSg", "r": "SDSSr", "i": "SDSSi"}

    def __init__(self, bands=BANDS, attempts=4, backoff_s=2.0):
        unknown = [band for band in bands if band not in self.SURVEYS]
        if unknown:
            raise ValueError(f"SkyView: no SDSS survey for band(s) {unknown}")
        self.bands = tuple(bands)
        self.attempts, self.backoff_s = attempts, backoff_s

    def cutout(self, centre, size, pixel_scale=SDSS_PIXEL_SCALE):
        from astroquery.skyview import SkyView

        surveys = [self.SURVEYS[band] for band in self.bands]
        width = size * pixel_scale
        where = f"SkyView {','.join(surveys)} at {centre.icrs.to_string('decimal', precision=5)}"
        hduls = with_retries(
            lambda: SkyView.get_images(position=centre.icrs, survey=surveys, pixels=f"{size},{size}", width=width,
                                       height=width, coordinates="J2000", projection="Tan"),
            where, self.attempts, self.backoff_s)
        if len(hduls) != len(self.bands):
            raise ImagingError(f"{where}: {len(hduls)} images returned for {len(self.bands)} surveys")
        grid = cutout_grid(centre, size, pixel_scale)
        images = {}
        for band, survey, hdul in zip(self.bands, surveys, hduls):
            header = hdul[0].header
            _check_nanomaggies(header, f"{where} ({survey})")
            data = np.asarray(hdul[0].data, dtype=np.float32)
            check_band_images({band: data}, (band,), f"{where} ({survey})")
            images[band] = reproject_to_grid([(data, celestial_wcs(header, f"{where} ({survey})"))], grid,
                                             f"{where} ({survey})")
        return Cutout(images, grid, where)

    def describe(self):
        return "skyview:" + ",".join(self.SURVEYS[band] for band in self.bands)


def make_source(kind, root=None, **kwargs):
    """An `ImagingSource` by name: ``"skyview"``, ``"sdss"`` (frames kept in ``root``), or ``"fits"`` /
    ``"synthetic"`` (a folder of frames, e.g. the synthetic survey root)."""
    if kind == "skyview":
        return SkyViewSource(**kwargs)
    if kind in ("sdss", "fits", "synthetic") and root is None:
        raise ValueError(f"imaging source {kind!r} needs a folder (root)")
    if kind == "sdss":
        return SDSSSource(root, **kwargs)
    if kind in ("fits", "synthetic"):
        return LocalFITSSource(root, **kwargs)
    raise ValueError(f"unknown imaging source {kind!r}; choose skyview, sdss, synthetic or fits")


def cutout_paths(cache_dir, source, centre, size, pixel_scale=SDSS_PIXEL_SCALE):
    """The cache files (band -> path) of one cutout: ``<cache_dir>/<source>/<position>/cutout-<band>.fits``.

    ``<source>`` is the source's name and a hash of its description (e.g. its folder), so one cache can
    serve several sources.
    """
    tag = hashlib.sha1(source.describe().encode()).hexdigest()[:8]
    folder = Path(cache_dir) / f"{source.name}-{tag}" / _position_name(centre, size, pixel_scale)
    return {band: folder / f"cutout-{band}.fits" for band in source.bands}


def write_cutout(cutout, paths):
    """Write each band of ``cutout`` to its path (float32, WCS, FILTER, BUNIT, SOURCE), atomically."""
    header = cutout.wcs.to_header()
    for band, path in paths.items():
        hdu = fits.PrimaryHDU(cutout.images[band].astype(np.float32), header)
        hdu.header["FILTER"] = band
        hdu.header["BUNIT"] = "nanomaggy"
        hdu.header["SOURCE"] = cutout.source[:68]
        with atomic_output(path) as temporary:
            hdu.writeto(temporary, overwrite=True)


def read_cutout(paths):
    """A `Cutout` from the files of `cutout_paths`; raises naming a file that is corrupt or off the grid."""
    images, wcs, source = {}, None, ""
    for band, path in paths.items():
        images[band], header = _open_image(path)
        band_wcs = celestial_wcs(header, str(path))
        if wcs is None:
            wcs, source = band_wcs, str(header.get("SOURCE", path.parent))
        elif not wcs.wcs.compare(band_wcs.wcs, tolerance=1e-10):
            raise ImagingError(f"{path}: WCS differs from the other bands of the cutout")
    check_band_images(images, tuple(paths), str(Path(next(iter(paths.values()))).parent))
    height, width = images[next(iter(images))].shape
    wcs.pixel_shape = (width, height)
    return Cutout(images, wcs, source)


def get_cutout(source, centre, size, pixel_scale=SDSS_PIXEL_SCALE, cache_dir=None):
    """``source.cutout(...)``, through the on-disk cache when ``cache_dir`` is given.

    A cutout whose band files all exist is read back instead of fetched again; a new one is written band by
    band, each file atomically.
    """
    if cache_dir is None:
        return source.cutout(centre, size, pixel_scale)
    paths = cutout_paths(cache_dir, source, centre, size, pixel_scale)
    if all(path.exists() for path in paths.values()):
        return read_cutout(paths)
    cutout = source.cutout(centre, size, pixel_scale)
    write_cutout(cutout, paths)
    return cutout

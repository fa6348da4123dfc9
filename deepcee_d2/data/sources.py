"""Remote imaging: SDSS corrected frames through ``astroquery.sdss`` and NASA SkyView, with retries.

- `SDSSSource`: downloads the SDSS corrected frames covering a cutout through ``astroquery.sdss`` into a
  folder (resumable: frames already there are not fetched again; each written atomically), then reads them as
  a `~deepcee_d2.data.frames.LocalFITSSource`.
- `SkyViewSource`: ``astroquery.skyview`` surveys SDSSg/SDSSr/SDSSi (as the paper did). SkyView resamples
  the SDSS DR frames, whose pixel values are nanomaggies; a ``BUNIT`` other than nanomaggies is refused.

Network calls are retried with exponential backoff (`with_retries`). `make_source` names every source,
local ones included.
"""
import logging
import time
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits

from ..io import atomic_output
from ..sky import SDSS_PIXEL_SCALE, celestial_wcs, cutout_grid
from .colour import check_band_images
from .frames import BANDS, Cutout, ImagingError, ImagingSource, LocalFITSSource, check_nanomaggies, resample_frames
from .resample import Resampling

logger = logging.getLogger(__name__)


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
    resampling : `~deepcee_d2.data.resample.Resampling`, optional
        How the frames are resampled onto cutout grids; the default config's if None.
    data_release : int
        SDSS data release.
    attempts, backoff_s : int, float
        Retries of each network call (`with_retries`).
    """

    name = "sdss"

    def __init__(self, folder, resampling=None, bands=BANDS, data_release=17, attempts=4, backoff_s=2.0):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.bands = tuple(bands)
        self.data_release = data_release
        self.attempts, self.backoff_s = attempts, backoff_s
        self.local = LocalFITSSource(self.folder, resampling, self.bands)

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

    def cutout(self, centre, size, pixel_scale=SDSS_PIXEL_SCALE, partial=False):
        self.download(centre, size, pixel_scale)
        return self.local.cutout(centre, size, pixel_scale, partial)


class SkyViewSource(ImagingSource):
    """Cutouts from NASA SkyView's SDSSg/SDSSr/SDSSi surveys through ``astroquery.skyview``.

    SkyView is asked for the cutout grid itself (TAN, J2000, ``size`` pixels over ``size x pixel_scale``);
    its answer is then reprojected onto `cutout_grid` so that every source returns the same grid.
    """

    name = "skyview"
    SURVEYS = {"g": "SDSSg", "r": "SDSSr", "i": "SDSSi"}

    def __init__(self, resampling=None, bands=BANDS, attempts=4, backoff_s=2.0):
        unknown = [band for band in bands if band not in self.SURVEYS]
        if unknown:
            raise ValueError(f"SkyView: no SDSS survey for band(s) {unknown}")
        self.resampling = resampling or Resampling.default()
        self.bands = tuple(bands)
        self.attempts, self.backoff_s = attempts, backoff_s

    def cutout(self, centre, size, pixel_scale=SDSS_PIXEL_SCALE, partial=False):
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
        images, covered = {}, np.ones((size, size), bool)
        for band, survey, hdul in zip(self.bands, surveys, hduls):
            header = hdul[0].header
            check_nanomaggies(header, f"{where} ({survey})")
            data = np.asarray(hdul[0].data, dtype=np.float32)
            check_band_images({band: data}, (band,), f"{where} ({survey})")
            images[band], on_grid = resample_frames([(data, celestial_wcs(header, f"{where} ({survey})"))], grid,
                                                    self.resampling, f"{where} ({survey})", partial)
            covered &= on_grid
        for image in images.values():
            image[~covered] = 0
        return Cutout(images, grid, where, covered=None if covered.all() else covered)

    def describe(self):
        return "skyview:" + ",".join(self.SURVEYS[band] for band in self.bands)


def make_source(kind, root=None, resampling=None, **kwargs):
    """An `ImagingSource` by name: ``"skyview"``, ``"sdss"`` (frames kept in ``root``), or ``"fits"`` /
    ``"synthetic"`` (a folder of frames, e.g. the synthetic survey root); all resample with ``resampling``
    (`deepcee_d2.data.resample.Resampling`, the default config's if None)."""
    if kind == "skyview":
        return SkyViewSource(resampling, **kwargs)
    if kind in ("sdss", "fits", "synthetic") and root is None:
        raise ValueError(f"imaging source {kind!r} needs a folder (root)")
    if kind == "sdss":
        return SDSSSource(root, resampling, **kwargs)
    if kind in ("fits", "synthetic"):
        return LocalFITSSource(root, resampling, **kwargs)
    raise ValueError(f"unknown imaging source {kind!r}; choose skyview, sdss, synthetic or fits")

"""The cutout cache: one FITS file per band under a folder named for the source, position and size.

Each file is written to a temporary name and renamed, so an interrupted run resumes where it stopped
(`get_cutout`), and a corrupt file is named when read back.
"""
import hashlib
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits

from ..io import atomic_output
from ..sky import SDSS_PIXEL_SCALE, celestial_wcs
from .colour import check_band_images
from .frames import Cutout, ImagingError, read_image


def _position_name(centre, size, pixel_scale):
    """Stable name of a cutout: rounded position (to 0.036") and size."""
    centre = centre.icrs
    return f"ra{centre.ra.deg:010.5f}_dec{centre.dec.deg:+09.5f}_{size}px_{pixel_scale.to_value(u.arcsec):.4f}as"


def cutout_paths(cache_dir, source, centre, size, pixel_scale=SDSS_PIXEL_SCALE):
    """The cache files (band -> path) of one cutout: ``<cache_dir>/<source>/<position>/cutout-<band>.fits``.

    ``<source>`` is the source's name and a hash of its description (e.g. its folder), so one cache can
    serve several sources.
    """
    tag = hashlib.sha1(source.describe().encode()).hexdigest()[:8]
    folder = Path(cache_dir) / f"{source.name}-{tag}" / _position_name(centre, size, pixel_scale)
    return {band: folder / f"cutout-{band}.fits" for band in source.bands}


def write_cutout(cutout, paths):
    """Write each band of ``cutout`` to its path (float32, WCS, FILTER, BUNIT, SOURCE, NMISSING), atomically;
    a partly imaged cutout also gets its `Cutout.covered` mask as a ``COVERED`` image extension."""
    header = cutout.wcs.to_header()
    for band, path in paths.items():
        hdu = fits.PrimaryHDU(cutout.images[band].astype(np.float32), header)
        hdu.header["FILTER"] = band
        hdu.header["BUNIT"] = "nanomaggy"
        hdu.header["SOURCE"] = cutout.source[:68]
        hdu.header["NMISSING"] = (cutout.missing.get(band, 0), "NaN/inf frame pixels set to 0")
        hdus = [hdu]
        if cutout.covered is not None:
            hdus.append(fits.ImageHDU(cutout.covered.astype(np.uint8), header, name="COVERED"))
        with atomic_output(path) as temporary:
            fits.HDUList(hdus).writeto(temporary, overwrite=True)


def read_cutout(paths):
    """A `Cutout` from the files of `cutout_paths`; raises naming a file that is corrupt or off the grid."""
    images, wcs, source, missing, covered = {}, None, "", {}, None
    for band, path in paths.items():
        images[band], header = read_image(path)
        if covered is None:
            covered = _read_covered(path)
        if header.get("NMISSING", 0):
            missing[band] = int(header["NMISSING"])
        band_wcs = celestial_wcs(header, str(path))
        if wcs is None:
            wcs, source = band_wcs, str(header.get("SOURCE", path.parent))
        elif not wcs.wcs.compare(band_wcs.wcs, tolerance=1e-10):
            raise ImagingError(f"{path}: WCS differs from the other bands of the cutout")
    check_band_images(images, tuple(paths), str(Path(next(iter(paths.values()))).parent))
    height, width = images[next(iter(images))].shape
    wcs.pixel_shape = (width, height)
    return Cutout(images, wcs, source, missing, covered)


def _read_covered(path):
    """The ``COVERED`` mask of a cached band file, or None (all imaged)."""
    try:
        with fits.open(path) as hdul:
            return np.asarray(hdul["COVERED"].data, bool) if "COVERED" in hdul else None
    except (OSError, ValueError, TypeError, EOFError) as error:
        raise ImagingError(f"{path}: cannot read the COVERED mask ({type(error).__name__}: {error})") from error


def get_cutout(source, centre, size, pixel_scale=SDSS_PIXEL_SCALE, cache_dir=None, partial=False):
    """``source.cutout(...)``, through the on-disk cache when ``cache_dir`` is given.

    A cutout whose band files all exist is read back instead of fetched again; a new one is written band by
    band, each file atomically. A cached partly imaged cutout serves only ``partial`` requests.
    """
    if cache_dir is None:
        return source.cutout(centre, size, pixel_scale, partial)
    paths = cutout_paths(cache_dir, source, centre, size, pixel_scale)
    if all(path.exists() for path in paths.values()):
        cutout = read_cutout(paths)
        if cutout.covered is not None and not partial:
            raise ImagingError(f"{next(iter(paths.values())).parent}: {1 - cutout.covered_fraction:.1%} of the "
                               f"cutout lies outside the imaging coverage")
        return cutout
    cutout = source.cutout(centre, size, pixel_scale, partial)
    write_cutout(cutout, paths)
    return cutout

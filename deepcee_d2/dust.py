"""Galactic dust: E(B-V) of the Schlegel, Finkbeiner & Davis (1998) map and the extinction it gives in the
SDSS bands.

Real imaging is reddened by the Milky Way's dust; the synthetic sky is not. The red-sequence estimator
dereddens the photometry of real imaging with it (`deepcee_d2.redsequence.deredden`), and clusters injected into
real frames are reddened with it (`deepcee_d2.synthetic.inject`), both when ``DEEPCEE.REDSHIFT.DUST_MAP_DIR``
(or ``inject_clusters(dust_map_dir=...)``) names a folder with the map's two files. The map is read by the
``dustmaps`` package (the survey extra), which also downloads it (README, "Galactic reddening").
"""
import functools
import warnings
from pathlib import Path

import numpy as np
from astropy.coordinates import SkyCoord

# A_band / E(B-V) of the SDSS bands for E(B-V) on the scale of the Schlegel, Finkbeiner & Davis (1998) map
# (Schlafly & Finkbeiner 2011, ApJ 737, 103, Table 6, R_V = 3.1).
EXTINCTION_PER_EBV = {"g": 3.303, "r": 2.285, "i": 1.698}
# The two files of the SFD map (north and south Galactic pole, `dustmaps.sfd.SFDQuery`'s names).
SFD_FILES = ("SFD_dust_4096_ngp.fits", "SFD_dust_4096_sgp.fits")


def check_dust_map(map_dir):
    """The folder of the SFD dust map (``DEEPCEE.REDSHIFT.DUST_MAP_DIR``, injection's ``dust_map_dir``) as a
    `Path`, checked before a run.

    Raises
    ------
    FileNotFoundError
        A file of `SFD_FILES` is missing; the message says how to download them.
    """
    map_dir = Path(map_dir).expanduser()
    missing = [name for name in SFD_FILES if not (map_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{map_dir}: no {', '.join(missing)} in this dust map folder (DEEPCEE.REDSHIFT.DUST_MAP_DIR, "
            "--dust-map-dir). Download the SFD map (2 x 64 MB) "
            "with the dustmaps package: python -c \"from dustmaps.config import config; "
            "config['data_dir'] = 'DIR'; import dustmaps.sfd; dustmaps.sfd.fetch()\" and set DUST_MAP_DIR to "
            "DIR/sfd")
    return map_dir


@functools.lru_cache(maxsize=2)
def _sfd_map(map_dir):
    map_dir = check_dust_map(map_dir)
    with warnings.catch_warnings():  # dustmaps warns of its own unset data folder, which a given folder bypasses
        warnings.filterwarnings("ignore", message="Configuration file not found")
        from dustmaps.sfd import SFDQuery  # only surveys of real imaging need it (the survey extra)

    return SFDQuery(str(map_dir))


def galactic_reddening(coords, map_dir):
    """E(B-V) of the Schlegel, Finkbeiner & Davis (1998) map at ``coords`` (`~astropy.coordinates.SkyCoord`),
    bilinear between its pixels; the map's two files are read once per process from ``map_dir``."""
    coords = SkyCoord(coords)
    if not coords.size:
        return np.zeros(coords.shape)
    return np.asarray(_sfd_map(str(Path(map_dir).expanduser().resolve())).query(coords), dtype=float)

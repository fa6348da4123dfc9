"""The cutout cache: written once per band, atomically, read back whole, corrupt files named."""
import numpy as np
import pytest
import astropy.units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits

from deepcee_d2.data.cache import cutout_paths, get_cutout, read_cutout, write_cutout
from deepcee_d2.data.frames import Cutout, ImagingError, LocalFITSSource
from deepcee_d2.sky import cutout_grid

BCG = SkyCoord(150.0 * u.deg, 2.0 * u.deg)  # SYN-0 of the tiny survey (conftest)


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


def test_cache_keeps_the_count_of_missing_pixels(tmp_path):
    grid = cutout_grid(BCG, 20)
    images = {band: np.full((20, 20), value, np.float32) for band, value in zip("gri", (1.0, 2.0, 3.0))}
    paths = {band: tmp_path / f"cutout-{band}.fits" for band in "gri"}
    write_cutout(Cutout(images, grid, "frames", missing={"g": 3}), paths)
    assert fits.getheader(paths["g"])["NMISSING"] == 3 and fits.getheader(paths["r"])["NMISSING"] == 0
    back = read_cutout(paths)
    assert back.missing == {"g": 3} and back.source == "frames"
    np.testing.assert_array_equal(back.images["i"], images["i"])

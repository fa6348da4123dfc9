"""Remote imaging answered by recordings (no network): SDSS frames through astroquery, SkyView; retries."""
import numpy as np
import pytest
import astropy.units as u
import requests
from astropy.coordinates import SkyCoord
from astropy.io import fits

from deepcee_d2.data.frames import ImagingError, LocalFITSSource
from deepcee_d2.data.sources import SDSSSource, SkyViewSource, make_source, with_retries

BCG = SkyCoord(150.0 * u.deg, 2.0 * u.deg)  # SYN-0 of the tiny survey (conftest)


def test_sdss_source_downloads_each_frame_once_through_astroquery(shared_data, tmp_path, monkeypatch):
    """astroquery.sdss answered by the shared frames as recorded responses (no network)."""
    from astropy.table import Table
    from astroquery.sdss import SDSS

    queries, downloads = [], []

    def query_region(coordinates, radius, fields, data_release):
        queries.append((coordinates, radius))
        return Table({"run": [2583, 2583], "rerun": [301, 301], "camcol": [2, 2], "field": [136, 136]})

    def get_images(run, rerun, camcol, field, band, data_release):
        downloads.append(band)
        return [fits.open(shared_data / "sdss" / f"frame-{band}-{run:06d}-{camcol}-{field:04d}.fits.bz2")]

    monkeypatch.setattr(SDSS, "query_region", query_region)
    monkeypatch.setattr(SDSS, "get_images", get_images)
    centre = SkyCoord(323.34 * u.deg, -0.73 * u.deg)
    source = SDSSSource(tmp_path / "frames", attempts=1)
    cutout = source.cutout(centre, 100)
    assert sorted(downloads) == ["g", "i", "r"] and len(queries) == 9
    assert all(radius == 3 * u.arcmin for _, radius in queries)
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == [
        "frame-g-002583-2-0136.fits", "frame-i-002583-2-0136.fits", "frame-r-002583-2-0136.fits"]
    source.cutout(centre.spherical_offsets_by(20 * u.arcsec, 0 * u.arcsec), 100)
    assert len(downloads) == 3  # resumed: nothing fetched twice
    local = LocalFITSSource(shared_data / "sdss").cutout(centre, 100)
    np.testing.assert_allclose(cutout.images["i"], local.images["i"], rtol=1e-5, atol=1e-6)


def skyview_answer(tiny_survey, bunit="nanomaggy"):
    """SkyView's answer: one HDUList per survey (the tiny survey's frames stand in for SkyView's images)."""
    answer = []
    for band in "gri":
        with fits.open(tiny_survey / "f000" / f"frame-{band}.fits") as hdul:
            header = hdul[0].header.copy()
            header["BUNIT"] = bunit
            answer.append(fits.HDUList([fits.PrimaryHDU(hdul[0].data.copy(), header)]))
    return answer


def test_skyview_source_asks_for_the_grid_and_reprojects(tiny_survey, monkeypatch):
    from astroquery.skyview import SkyView

    requests_made = []

    def get_images(position, survey, **kwargs):
        requests_made.append((position, survey, kwargs))
        return skyview_answer(tiny_survey)

    monkeypatch.setattr(SkyView, "get_images", get_images)
    cutout = SkyViewSource(attempts=1).cutout(BCG, 200)
    ((position, survey, kwargs),) = requests_made
    assert survey == ["SDSSg", "SDSSr", "SDSSi"] and kwargs["pixels"] == "200,200"
    assert kwargs["width"].to_value(u.arcsec) == pytest.approx(79.2) and kwargs["projection"] == "Tan"
    assert position.separation(BCG) < 1e-6 * u.arcsec
    local = LocalFITSSource(tiny_survey).cutout(BCG, 200)
    for band in "gri":
        np.testing.assert_allclose(cutout.images[band], local.images[band], atol=1e-5)


def test_skyview_in_unknown_units_is_refused(tiny_survey, monkeypatch):
    from astroquery.skyview import SkyView

    monkeypatch.setattr(SkyView, "get_images", lambda *a, **k: skyview_answer(tiny_survey, bunit="DN"))
    with pytest.raises(ImagingError, match=r"SkyView SDSSg,SDSSr,SDSSi at .*\(SDSSg\): BUNIT is 'DN'"):
        SkyViewSource(attempts=1).cutout(BCG, 200)


def test_network_calls_are_retried_with_backoff(monkeypatch):
    import deepcee_d2.data.sources as sources

    sleeps, calls = [], []
    monkeypatch.setattr(sources.time, "sleep", sleeps.append)

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise requests.ConnectionError("connection reset")
        return "answer"

    assert with_retries(flaky, "SkyView at 150 2", attempts=4, backoff_s=2.0) == "answer"
    assert sleeps == [2.0, 4.0]
    with pytest.raises(ImagingError, match=r"SkyView at 150 2: failed after 3 attempts \(ConnectionError"):
        with_retries(lambda: (_ for _ in ()).throw(requests.ConnectionError("down")), "SkyView at 150 2",
                     attempts=3, backoff_s=1.0)


def test_make_source_by_name(tiny_survey):
    assert isinstance(make_source("synthetic", tiny_survey), LocalFITSSource)
    assert isinstance(make_source("skyview"), SkyViewSource)
    with pytest.raises(ValueError, match="needs a folder"):
        make_source("fits")
    with pytest.raises(ValueError, match="unknown imaging source 'dss'"):
        make_source("dss", tiny_survey)

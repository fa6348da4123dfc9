import math
from dataclasses import replace

import numpy as np
import pytest
import sep
from astropy.io import fits
from astropy.wcs import WCS

from deepcee_d2.config import load_config
from deepcee_d2.data.frames import LocalFITSSource
from deepcee_d2.psf import match_psfs, stamp_half_size, stellar_locus
from deepcee_d2.redsequence import BANDS, RedSequenceSettings, _detect_sources, _psf_stars, measure_photometry


def test_stellar_locus_keeps_the_stars_and_drops_the_galaxies():
    rng = np.random.default_rng(1)
    stars = 2.0 + rng.uniform(-0.05, 0.05, 12)
    galaxies = rng.uniform(2.6, 6.0, 30)
    sizes = np.concatenate([galaxies[:10], stars, galaxies[10:], [np.nan]])
    locus, members = stellar_locus(sizes, min_stars=5)
    assert abs(locus - 2.0) < 0.05
    assert members.tolist() == [False] * 10 + [True] * 12 + [False] * 21


def test_stellar_locus_needs_enough_sources():
    locus, members = stellar_locus([2.0, 2.1, np.nan, 2.0], min_stars=5)
    assert math.isnan(locus) and not members.any() and len(members) == 4


def _gaussian_stars(sigmas, n_side=6, size=400, noise=0.01, seed=0):
    """Bands of one grid holding the same round Gaussian stars (flux 100) of each band's sigma (pixels)."""
    rng = np.random.default_rng(seed)
    centres = np.linspace(60, size - 60, n_side)
    x, y = (a.ravel() + rng.uniform(-0.5, 0.5, n_side * n_side) for a in np.meshgrid(centres, centres))
    rows, columns = np.indices((size, size))
    images = {}
    for band, sigma in sigmas.items():
        image = rng.normal(0.0, noise, (size, size))
        for a, b in zip(x, y):
            image += 100.0 / (2 * np.pi * sigma**2) * np.exp(-((columns - a) ** 2 + (rows - b) ** 2) / (2 * sigma**2))
        images[band] = image
    return images, x, y


def _share(image, x, y, radius, reference):
    return np.median(sep.sum_circle(image, x, y, radius, subpix=5)[0] / sep.sum_circle(image, x, y, reference, subpix=5)[0])


def test_match_psfs_convolves_the_sharper_bands_to_the_widest():
    sigmas = {"g": 1.6, "r": 1.2, "i": 1.0}
    images, x, y = _gaussian_stars(sigmas)
    matched, kernels, shares = match_psfs(images, x, y, aperture_radius=3.0, reference_radius=12.0)
    assert kernels["g"] == 0.0 and matched["g"] is images["g"]
    # Gaussians convolve in quadrature: the kernel that matches a Gaussian star to a wider one is known.
    for band in ("r", "i"):
        assert kernels[band] == pytest.approx(np.sqrt(sigmas["g"] ** 2 - sigmas[band] ** 2), abs=0.03)
    assert shares["g"] < shares["r"] < shares["i"]
    after = {band: _share(matched[band], x, y, 3.0, 12.0) for band in BANDS}
    assert after["r"] == pytest.approx(after["g"], abs=0.002) and after["i"] == pytest.approx(after["g"], abs=0.002)
    with pytest.raises(ValueError, match="no star"):
        match_psfs(images, x[:0], y[:0], 3.0, 12.0)


@pytest.fixture(scope="module")
def bad_seeing_tile(shared_data):
    """The detection step of a 2000 px tile of SDSS field 005194-2-0540 (PSF FWHM g 1.56", r 1.25", i 0.88")."""
    settings = replace(RedSequenceSettings.from_cfg(load_config("configs/deepcee_demo_cpu.yaml")), match_psfs=True)
    header = fits.getheader(shared_data / "sdss" / "frame-r-005194-2-0540.fits.bz2")
    cutout = LocalFITSSource(shared_data / "sdss").cutout(WCS(header).pixel_to_world(1024, 744), 2000, partial=True)
    return settings, cutout


def test_matched_real_bands_give_stars_their_total_colours(bad_seeing_tile):
    """The stars' colours in the 2" aperture are those within 6" once the bands are matched; as imaged, this
    field's worse seeing in g and r makes them 0.05 mag redder."""
    settings, cutout = bad_seeing_tile
    images, noise, objects, covered = _detect_sources(cutout.images, BANDS, settings, "005194", cutout.covered)
    radius = settings.aperture_radius.to_value("arcsec") / 0.396
    x, y = _psf_stars(images, objects, noise, covered, radius, 3 * radius)
    assert len(x) >= 15
    half = stamp_half_size(radius, 3 * radius)
    assert (x >= half).all() and (y >= half).all() and (x < 2000 - half).all() and (y < 2000 - half).all()
    matched, kernels, _ = match_psfs({band: images[band] for band in BANDS}, x, y, radius, 3 * radius)
    assert kernels["g"] == 0.0 and kernels["i"] > kernels["r"] > 0

    def offsets(bands):
        colour = {}
        for name, r in (("aperture", radius), ("total", 3 * radius)):
            flux = {band: sep.sum_circle(bands[band], x, y, r, subpix=5)[0] for band in BANDS}
            colour[name] = (-2.5 * np.log10(flux["g"] / flux["r"]), -2.5 * np.log10(flux["r"] / flux["i"]))
        return [float(np.median(a - t)) for a, t in zip(colour["aperture"], colour["total"])]

    assert min(offsets(images)) > 0.03
    assert max(np.abs(offsets(matched))) < 0.01


def test_photometry_records_its_kernels_and_bluer_colours_in_bad_seeing(bad_seeing_tile):
    settings, cutout = bad_seeing_tile
    matched = measure_photometry(cutout.images, cutout.wcs, settings, "005194", cutout.covered)
    as_imaged = measure_photometry(cutout.images, cutout.wcs, replace(settings, match_psfs=False), "005194",
                                   cutout.covered)
    assert as_imaged.psf_kernels is None
    assert matched.psf_kernels["g"] == 0.0 and 0 < matched.psf_kernels["r"] < matched.psf_kernels["i"] < 1.0
    assert np.array_equal(matched.sources["x"], as_imaged.sources["x"])
    np.testing.assert_allclose(matched.sources["r_mag"], as_imaged.sources["r_mag"], atol=0.2)
    bright = as_imaged.sources["r_mag"] < 21
    for colour in ("g_r", "r_i"):
        assert np.median(matched.sources[colour][bright] - as_imaged.sources[colour][bright]) < -0.03

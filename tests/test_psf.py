import math
from dataclasses import replace

import numpy as np
import pytest
import sep
from astropy.io import fits
from astropy.wcs import WCS

from deepcee_d2.config import load_config
from deepcee_d2.data.frames import LocalFITSSource
from deepcee_d2.psf import (MAX_POINT_CONCENTRATION_ERR, aperture_corrections, separate_point_sources,
                            stellar_locus)
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


def test_point_sources_sit_on_the_concentration_locus_and_galaxies_above_it():
    rng = np.random.default_rng(3)
    n_stars, n_galaxies = 30, 40
    concentration = np.concatenate([0.5 + rng.normal(0.0, 0.01, n_stars), rng.uniform(0.8, 1.5, n_galaxies),
                                    [0.52, 0.1, np.nan]])
    error = np.concatenate([np.full(n_stars + n_galaxies, 0.01), [2 * MAX_POINT_CONCENTRATION_ERR, 0.01, np.nan]])
    r_mag = np.concatenate([rng.uniform(16.5, 19.0, n_stars + n_galaxies), [21.5, 17.0, 18.0]])
    separation = separate_point_sources(concentration, error, r_mag)
    assert separation.locus == pytest.approx(0.5, abs=0.01) and separation.reliable
    assert separation.point.tolist() == [True] * n_stars + [False] * n_galaxies + [False] * 3
    assert separation.galaxy.tolist() == [False] * n_stars + [True] * n_galaxies + [False] * 3
    # A crowded field's locus (blends in the 3" aperture) is wide: the separation says it is unreliable.
    blended = separate_point_sources(concentration + np.concatenate([rng.normal(0, 0.3, n_stars + n_galaxies),
                                                                     [0, 0, 0]]), error, r_mag)
    assert not blended.reliable
    with pytest.raises(ValueError, match=r"only 3 sources at 16.0 < r < 19.5 for the stellar locus \(need 10\)"):
        separate_point_sources(concentration[:3], error[:3], r_mag[:3])


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


def test_aperture_corrections_of_gaussian_stars_are_their_known_shares():
    """A Gaussian star of sigma s puts 1 - exp(-R^2 / 2 s^2) of its light within R (sampled finely enough
    for that: sigma >= 2 px)."""
    sigmas = {"g": 3.2, "r": 2.4, "i": 2.0}
    images, x, y = _gaussian_stars(sigmas)
    corrections = aperture_corrections(images, x, y, aperture_radius=6.0, reference_radius=24.0)

    def share(sigma):
        return 1 - np.exp(-(6.0**2) / (2 * sigma**2))

    assert corrections["r"] == 1.0
    for band in ("g", "i"):
        assert corrections[band] == pytest.approx(share(sigmas[band]) / share(sigmas["r"]), abs=0.002)
    assert corrections["g"] < 1.0 < corrections["i"]
    with pytest.raises(ValueError, match="no star"):
        aperture_corrections(images, x[:0], y[:0], 6.0, 24.0)
    with pytest.raises(ValueError, match=r"no r image among \['g', 'i'\]"):
        aperture_corrections({band: images[band] for band in "gi"}, x, y, 6.0, 24.0)


@pytest.fixture(scope="module")
def bad_seeing_tile(shared_data):
    """A 2000 px tile of SDSS field 005194-2-0540 (PSF FWHM g 1.56", r 1.25", i 0.88")."""
    settings = replace(RedSequenceSettings.from_cfg(load_config("configs/deepcee_demo_cpu.yaml")),
                       aperture_correction=True)
    header = fits.getheader(shared_data / "sdss" / "frame-r-005194-2-0540.fits.bz2")
    cutout = LocalFITSSource(shared_data / "sdss").cutout(WCS(header).pixel_to_world(1024, 744), 2000, partial=True)
    return settings, cutout


def test_corrections_from_half_the_stars_give_the_other_half_their_total_colours(bad_seeing_tile):
    """As imaged, this field's worse seeing in g and r makes its stars' colours in the 2" aperture 0.05 mag redder
    than within 6"; corrected with the other half of the stars, they are the 6" colours."""
    settings, cutout = bad_seeing_tile
    images, noise, objects, covered = _detect_sources(cutout.images, BANDS, settings, "005194", cutout.covered)
    radius = settings.aperture_radius.to_value("arcsec") / 0.396
    x, y = _psf_stars(images, objects, noise, covered, 3 * radius)
    assert len(x) >= 20
    half = int(np.ceil(3 * radius)) + 1
    assert (x >= half).all() and (y >= half).all() and (x < 2000 - half).all() and (y < 2000 - half).all()
    corrections = aperture_corrections(images, x[::2], y[::2], radius, 3 * radius)
    assert corrections["g"] < 0.97 and corrections["i"] > 1.03

    def offsets(shares):
        colour = {}
        for name, r, share in (("aperture", radius, shares), ("total", 3 * radius, dict.fromkeys(BANDS, 1.0))):
            flux = {band: sep.sum_circle(images[band], x[1::2], y[1::2], r, subpix=5)[0] / share[band]
                    for band in BANDS}
            colour[name] = (-2.5 * np.log10(flux["g"] / flux["r"]), -2.5 * np.log10(flux["r"] / flux["i"]))
        return [float(np.median(a - t)) for a, t in zip(colour["aperture"], colour["total"])]

    assert min(offsets(dict.fromkeys(BANDS, 1.0))) > 0.03
    assert max(np.abs(offsets(corrections))) < 0.01


def test_photometry_records_its_corrections_and_bluer_colours_in_bad_seeing(bad_seeing_tile):
    settings, cutout = bad_seeing_tile
    corrected = measure_photometry(cutout.images, cutout.wcs, settings, "005194", cutout.covered)
    as_imaged = measure_photometry(cutout.images, cutout.wcs, replace(settings, aperture_correction=False),
                                   "005194", cutout.covered)
    assert as_imaged.aperture_corrections is None
    shares = corrected.aperture_corrections
    assert shares["r"] == 1.0 and shares["g"] < 0.97 and shares["i"] > 1.03
    # The same sources and total magnitudes; every colour moves by its bands' corrections, errors stay.
    for name in ("x", "r_mag", "g_r_err", "r_i_err"):
        np.testing.assert_allclose(corrected.sources[name], as_imaged.sources[name], rtol=1e-12)
    np.testing.assert_allclose(corrected.sources["g_r"] - as_imaged.sources["g_r"], 2.5 * np.log10(shares["g"]))
    np.testing.assert_allclose(corrected.sources["r_i"] - as_imaged.sources["r_i"], -2.5 * np.log10(shares["i"]))
    assert 2.5 * np.log10(shares["g"]) < -0.03 and -2.5 * np.log10(shares["i"]) < -0.03

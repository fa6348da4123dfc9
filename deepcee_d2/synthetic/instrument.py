"""The SDSS camera as the simulator sees it: calibration, sky, seeing, PSF, noise and saturation.

Every number is the SDSS one for a typical frame, so that a synthetic frame has the pixel statistics of a
real corrected frame (``frame-{band}-RRRRRR-C-FFFF.fits``, DR8 and later):

- Pixels are 0.396" and the image is in nanomaggies: ``m = 22.5 - 2.5 log10(flux)`` (SDSS DR8 data model,
  "frame"). Exposures last 53.907456 s (the ``EXPTIME`` of every SDSS frame).
- Counts: ``NMGY_PER_COUNT`` converts data numbers (DN) to nanomaggies. The values are the ``NMGY`` header
  keys of the frames of run 2583, camcol 2, field 136 (``shared/data/sdss``): 0.00447 (g), 0.00547 (r),
  0.00656 (i); other fields differ by ~10 % with airmass and flat field.
- Gain and dark variance: camera column 3 of the SDSS frame data model table (gain 3.845 / 4.72 / 4.86 e-/DN,
  dark variance 1.3225 / 1.3225 / 4.6225 DN^2 in g / r / i). The per-pixel variance in DN^2 is
  ``counts / gain + dark_variance``, the data model's formula.
- Sky: the median r-band sky of the survey is 20.86 mag/arcsec^2 (quartiles 20.70 / 21.03; SDSS DR7
  "Seeing and sky brightness"). The g and i skies follow from the sky colours measured on the shared frame
  (its ``ALLSKY`` sky image times ``NMGY``: g - r = 0.88, r - i = 0.60 mag/arcsec^2), giving 21.74 and 20.26.
- Seeing: the r-band PSF width has median 1.43" with quartiles 1.30" and 1.58" (same DR7 page). Each field
  draws r from the log-normal with that median and inter-quartile range (sigma_ln = 0.145), kept within
  1.05-1.70"; g and i scale as lambda^-0.2 (Kolmogorov turbulence) with the effective wavelengths 4686,
  6166, 7480 A (Fukugita et al. 1996): g = 1.056 r, i = 0.962 r, each with an independent 3 % jitter, and
  kept within 1.0-1.8".
- PSF: a Kolmogorov profile of that FWHM (GalSim ``Kolmogorov``), whose r^-11/3 wings resemble the extended
  wings of SDSS PSFs better than a Gaussian.
- Noise: GalSim's ``CCDNoise`` on the image in DN with the sky added: Poisson noise in electrons and a
  Gaussian "read" noise of ``sqrt(dark_variance) * gain`` electrons; the sky is then subtracted again, as in
  the sky-subtracted corrected frames.
- Saturation: SDSS point sources saturate at r ~ 14 (Stoughton et al. 2002). ``SATURATION_DN`` is the peak
  (sky included) that a 14.0 mag star reaches in the median 1.43" r-band seeing, rounded: 25,000 DN
  (the star's central pixel holds 5.5 % of its 4.6e5 DN). Charge
  above it bleeds along the CCD column (the drift-scan direction, image y), conserving the total, which
  makes the flat-topped cores and bleed trails of bright stars.

With these numbers the 5-sigma PSF-weighted point-source depth (`point_source_depth`) is g = 22.9, r = 22.6,
i = 22.2 for the median sky and seeing. The often-quoted SDSS limit r = 22.2 (York et al. 2000) is the 95 %
*completeness* for point sources; 95 % of point sources have S/N > 5 down to r = 22.2 in the simulator too
(measured in BENCHMARKS.md, "Synthetic sky"; compared in docs/synthetic_sky.md).
"""
import functools

import astropy.units as u
import galsim
import numpy as np

BANDS = ("g", "r", "i")
PIXEL_SCALE = 0.396 * u.arcsec
ZERO_POINT = 22.5  # AB magnitude of 1 nanomaggy
EXPOSURE_TIME = 53.907456 * u.s
NMGY_PER_COUNT = {"g": 0.00447, "r": 0.00547, "i": 0.00656}
GAIN = {"g": 3.845, "r": 4.72, "i": 4.86}  # electrons per DN
DARK_VARIANCE = {"g": 1.3225, "r": 1.3225, "i": 4.6225}  # DN^2
SKY_BRIGHTNESS = {"g": 21.74, "r": 20.86, "i": 20.26}  # mag / arcsec^2
SATURATION_DN = 25000.0
MEDIAN_SEEING_R = 1.43  # arcsec FWHM
_SEEING_SIGMA_LN = 0.145
_SEEING_LIMITS_R = (1.05, 1.70)
SEEING_LIMITS = (1.0, 1.8)  # every band, arcsec
# Seeing relative to r, (lambda / lambda_r)^-0.2 with Fukugita et al. (1996) effective wavelengths.
SEEING_RATIO = {"g": (4686.0 / 6166.0) ** -0.2, "r": 1.0, "i": (7480.0 / 6166.0) ** -0.2}
_SEEING_JITTER = 0.03


def check_bands(bands):
    """Return ``bands`` as a tuple after checking each is one of `BANDS`; ValueError names a bad one."""
    bands = tuple(bands)
    if not bands:
        raise ValueError(f"bands: need at least one of {BANDS}")
    for band in bands:
        if band not in BANDS:
            raise ValueError(f"bands: unknown band {band!r}; the simulator makes {', '.join(BANDS)}")
    if len(set(bands)) != len(bands):
        raise ValueError(f"bands: repeated band in {bands}")
    return bands


def mag_to_nanomaggies(mag):
    """AB magnitude -> flux in nanomaggies (``22.5 - 2.5 log10(flux)``)."""
    return 10.0 ** (-0.4 * (np.asarray(mag, dtype=float) - ZERO_POINT))


def nanomaggies_to_mag(flux):
    """Flux in nanomaggies -> AB magnitude."""
    return ZERO_POINT - 2.5 * np.log10(np.asarray(flux, dtype=float))


def pixel_area():
    """Solid angle of one pixel, `~astropy.units.Quantity` [arcsec^2]."""
    return PIXEL_SCALE**2


def sky_level(band):
    """Sky per pixel in nanomaggies (the value subtracted from the frame, header ``SKYLEVEL``)."""
    return float(mag_to_nanomaggies(SKY_BRIGHTNESS[band]) * pixel_area().to_value(u.arcsec**2))


def pixel_noise(band, extra_nanomaggies=0.0):
    """Standard deviation (nanomaggies) of a pixel holding ``extra_nanomaggies`` above the sky.

    ``sqrt(counts / gain + dark_variance)`` DN, the SDSS data model's error of a pixel, times ``NMGY_PER_COUNT``.
    """
    counts = (sky_level(band) + extra_nanomaggies) / NMGY_PER_COUNT[band]
    return float(np.sqrt(counts / GAIN[band] + DARK_VARIANCE[band]) * NMGY_PER_COUNT[band])


def draw_seeing(rng, bands=BANDS):
    """Seeing FWHM (arcsec) of one field in each band, drawn as described in the module docstring."""
    seeing_r = float(np.clip(MEDIAN_SEEING_R * np.exp(_SEEING_SIGMA_LN * rng.standard_normal()),
                             *_SEEING_LIMITS_R))
    jitter = {band: float(np.exp(_SEEING_JITTER * rng.standard_normal())) for band in BANDS}
    return {band: round(float(np.clip(seeing_r * SEEING_RATIO[band] * (1.0 if band == "r" else jitter[band]),
                                      *SEEING_LIMITS)), 4)
            for band in bands}


@functools.lru_cache(maxsize=64)
def psf(fwhm):
    """The PSF of seeing ``fwhm`` (arcsec): a GalSim Kolmogorov profile of unit flux (cached per FWHM)."""
    if not fwhm > 0:
        raise ValueError(f"seeing: FWHM must be positive, got {fwhm}")
    return galsim.Kolmogorov(fwhm=float(fwhm))


def noise_equivalent_area(fwhm):
    """Noise-equivalent area ``1 / sum(p_i^2)`` (pixels) of the PSF of ``fwhm`` arcsec, sampled at 0.396".

    A PSF-weighted flux measured on a background of pixel noise sigma has error ``sigma * sqrt(NEA)``.
    """
    scale = PIXEL_SCALE.to_value(u.arcsec)
    image = psf(fwhm).drawImage(nx=101, ny=101, scale=scale).array
    image = image / image.sum()
    return float(1.0 / np.sum(image**2))


def point_source_depth(band, fwhm, nsigma=5.0):
    """Magnitude of a point source detected at ``nsigma`` by PSF-weighted photometry on the sky noise.

    Parameters
    ----------
    band : str
        One of `BANDS`.
    fwhm : float
        Seeing FWHM in arcsec.
    nsigma : float
        Signal-to-noise ratio that defines the limit.

    Returns
    -------
    float
        AB magnitude.
    """
    return float(nanomaggies_to_mag(nsigma * pixel_noise(band) * np.sqrt(noise_equivalent_area(fwhm))))


def add_noise(image_nmgy, band, seed):
    """Add SDSS sky Poisson and read noise to a noiseless image (nanomaggies, float), in place.

    The image is converted to DN, GalSim's ``CCDNoise`` adds Poisson noise in electrons on the image plus
    the sky and Gaussian read noise of ``sqrt(dark_variance) * gain`` electrons, the sky is subtracted and the
    image converted back; saturated pixels (`saturate`) are clipped before the sky is removed.
    """
    counts = galsim.ImageD(np.ascontiguousarray(image_nmgy, dtype=np.float64) / NMGY_PER_COUNT[band])
    sky = sky_level(band) / NMGY_PER_COUNT[band]
    counts += sky
    noise = galsim.CCDNoise(galsim.BaseDeviate(int(seed)), sky_level=0.0, gain=GAIN[band],
                            read_noise=float(np.sqrt(DARK_VARIANCE[band]) * GAIN[band]))
    counts.addNoise(noise)
    image_nmgy[...] = (saturate(counts.array) - sky) * NMGY_PER_COUNT[band]
    return image_nmgy


def saturate(counts, level=SATURATION_DN):
    """Clip pixels (DN, sky included) at ``level`` and bleed the excess charge along the column.

    Returns a new array. The charge above ``level`` in a column is shared equally between the pixels
    above and below the saturated run, filling each to ``level`` in turn, so the total is conserved until
    the trail reaches the edge of the image.
    """
    out = np.array(counts, dtype=np.float64, copy=True)
    over = out > level
    for column in np.unique(np.nonzero(over)[1]):
        values = out[:, column]
        rows = np.nonzero(values > level)[0]
        excess = float(np.sum(values[rows] - level))
        values[rows] = level
        for side in (values[rows.max() + 1:], values[:rows.min()][::-1]):  # views: up, then down
            room = np.maximum(level - side, 0.0)
            filled = np.minimum(np.cumsum(room), excess / 2)
            side += np.diff(filled, prepend=0.0)
    return out

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
- Seeing: SDSS's "seeing" is the PSF's *effective width*, ``w = 0.6643 sqrt(NEA)`` (the FWHM of the Gaussian
  with the same noise-equivalent area ``NEA = (sum p)^2 / sum p^2``; EDR paper section 4.3), not a FWHM. Its
  r-band median is 1.43" with quartiles 1.30" and 1.58" (same DR7 page). Each field draws the r width from the
  log-normal with that median and inter-quartile range (sigma_ln = 0.145), kept within 1.05-1.70"; g and i
  scale as lambda^-0.3, the exponent SDSS PSFs follow (Xin et al. 2018, arXiv:1805.02845; -0.2 for pure
  Kolmogorov turbulence), with the effective wavelengths 4686, 6166, 7480 A (Fukugita et al. 1996):
  g = 1.086 r, i = 0.944 r, each with an independent 6 % jitter, kept within 1.0-1.8".
- PSF: a Moffat profile (`PSF`), ``(1 + r^2 / alpha^2)^-beta``, with beta drawn per field uniform in 2.5-3.7
  and sheared to an axis ratio ``1 - e`` with e uniform in 0.02-0.07 at one position angle for all bands: the
  range of beta and ellipticity fitted to isolated stars on the shared SDSS frames (BENCHMARKS.md, "Real SDSS
  frames against the simulator"). Its FWHM is the one whose effective width is the drawn seeing
  (`effective_width_to_fwhm`): 1.04" at the median seeing for beta = 3, since a Moffat's wings and the
  aureole below widen the effective width by ~1.4x the core's FWHM. The frame header's ``SEEING`` is this FWHM.
- The PSF's aureole: SDSS stars hold far more light 3-10" from their centre than a Moffat core does (2x at
  3.2", 30x at 10"). `WING_FRACTION` = 7 % of every source's light goes into a wide Moffat of beta 2 and scale
  radius 3.2", the same in g, r and i: the least-squares fit (in log) of core plus aureole to the flux-weighted
  ring profile of the isolated r = 13.5-17.5 stars of the three high-latitude shared frames at 3.2-10" (the
  core there their median r Moffat, FWHM 0.91" and beta 2.90), which `benchmarks/bench_sky_realism.py` prints.
  Sources are drawn with the core and the whole noiseless image is then convolved with the aureole
  (`render.add_psf_wing`): one FFT per band instead of a wide FFT per source. Its kernel is cut at 50.6" (128
  SDSS pixels) and renormalised: the 0.3 % of the aureole's light beyond lands inside.
- Noise: GalSim's ``CCDNoise`` on the image in DN with the sky added: Poisson noise in electrons and a
  Gaussian "read" noise of ``sqrt(dark_variance) * gain`` electrons; the sky is then subtracted again, as in
  the sky-subtracted corrected frames.
- Saturation: SDSS point sources saturate at r ~ 14 (Stoughton et al. 2002). ``SATURATION_DN`` is 25,000 DN
  (sky included), the peak a 14.0 mag star reached in the median seeing of an earlier Kolmogorov PSF; with
  the Moffat PSF at the median seeing a point source saturates at r = 14.4 (its central pixel holds 7.9 % of
  its light). Charge above it bleeds along the CCD column (the drift-scan direction, image y), conserving the
  total, which makes the flat-topped cores and bleed trails of bright stars.

The 5-sigma PSF-weighted point-source depth (`point_source_depth`) depends on the seeing through the NEA
only: at the median effective width it is g = 23.06, r = 22.72, i = 22.36 whatever beta. The often-quoted SDSS
limit r = 22.2 (York et al. 2000) is the 95 % *completeness* for point sources (the simulator's: BENCHMARKS.md,
"Synthetic sky"; compared in docs/synthetic_sky.md).
"""
import functools
from dataclasses import dataclass

import astropy.units as u
import galsim
import numpy as np
from scipy import integrate, optimize

BANDS = ("g", "r", "i")
PIXEL_SCALE = 0.396 * u.arcsec
ZERO_POINT = 22.5  # AB magnitude of 1 nanomaggy
EXPOSURE_TIME = 53.907456 * u.s
NMGY_PER_COUNT = {"g": 0.00447, "r": 0.00547, "i": 0.00656}
GAIN = {"g": 3.845, "r": 4.72, "i": 4.86}  # electrons per DN
DARK_VARIANCE = {"g": 1.3225, "r": 1.3225, "i": 4.6225}  # DN^2
SKY_BRIGHTNESS = {"g": 21.74, "r": 20.86, "i": 20.26}  # mag / arcsec^2
SATURATION_DN = 25000.0
MEDIAN_SEEING_R = 1.43  # arcsec, effective width
_SEEING_SIGMA_LN = 0.145
_SEEING_LIMITS_R = (1.05, 1.70)
SEEING_LIMITS = (1.0, 1.8)  # every band, arcsec
SEEING_EXPONENT = -0.3  # FWHM ~ lambda^-0.3 (Xin et al. 2018)
# Seeing relative to r, (lambda / lambda_r)^-0.3 with Fukugita et al. (1996) effective wavelengths.
SEEING_RATIO = {band: (wavelength / 6166.0) ** SEEING_EXPONENT
                for band, wavelength in (("g", 4686.0), ("r", 6166.0), ("i", 7480.0))}
_SEEING_JITTER = 0.06
MOFFAT_BETA_RANGE = (2.5, 3.7)
INJECTION_BETA = 3.1  # the middle of that range: clusters injected into real frames get a Moffat of this beta
PSF_ELLIPTICITY_RANGE = (0.02, 0.07)  # 1 - b/a
# The Moffat is drawn once per PSF on this grid and interpolated (galsim.InterpolatedImage): GalSim's Moffat of
# a general beta evaluates its Fourier transform numerically for every galaxy it is convolved with (6.7 ms
# against 1.1 ms per convolved 40 px galaxy, measured). On half the SDSS pixel the interpolated one costs what
# GalSim's analytic Kolmogorov does (0.1" costs 1.7x); drawn galaxies differ from the exact Moffat's by 1e-4 of
# their peak.
_PSF_GRID_SCALE = 0.198  # arcsec
_PSF_GRID_SIZE = 128  # pixels: 25.3"; beyond 12.7" a beta = 2.5 Moffat holds < 0.1 % of its light
# The aureole (module docstring): light fraction, Moffat beta, scale radius and the kernel's reach (arcsec).
WING_FRACTION = 0.07
WING_BETA = 2.0
WING_SCALE_RADIUS = 3.2
WING_RADIUS = 50.6  # 128 SDSS pixels
# FWHM of the Gaussian of noise-equivalent area NEA: 2 sqrt(2 ln 2) / sqrt(4 pi) sqrt(NEA).
_EFFECTIVE_WIDTH_PER_ROOT_NEA = 2.0 * np.sqrt(2.0 * np.log(2.0)) / np.sqrt(4.0 * np.pi)


@dataclass(frozen=True)
class PSF:
    """The PSF of one band of a frame.

    Attributes
    ----------
    fwhm : float
        FWHM in arcsec (of the round profile before the shear, which keeps the area).
    beta : float
        Moffat index; by default `INJECTION_BETA`, the middle of the range fields draw.
    ellipticity : float
        ``1 - b/a``.
    angle : float
        Position angle of the major axis, degrees east of north on a north-up, east-left image.
    wing : float
        Fraction of the light in the aureole (`WING_FRACTION` by default; 0 for a bare Moffat).
    """

    fwhm: float
    beta: float = INJECTION_BETA
    ellipticity: float = 0.0
    angle: float = 0.0
    wing: float = WING_FRACTION
    draw_method = "auto"  # GalSim adds the pixel's response to the profile
    min_window_half_width = 0  # the aureole goes on the whole image (`render.add_psf_wing`), not in the windows

    def __post_init__(self):
        if not self.fwhm > 0:
            raise ValueError(f"seeing: FWHM must be positive, got {self.fwhm}")
        if not self.beta > 1.1:
            raise ValueError(f"PSF: Moffat beta must be above 1.1 (GalSim's untruncated Moffat), got {self.beta}")
        if not 0.0 <= self.ellipticity < 1.0:
            raise ValueError(f"PSF: ellipticity 1 - b/a must lie in [0, 1), got {self.ellipticity}")
        if not 0.0 <= self.wing < 1.0:
            raise ValueError(f"PSF: the aureole's light fraction must lie in [0, 1), got {self.wing}")

    @classmethod
    def from_header(cls, header):
        """The PSF a synthetic frame's header records (``SEEING``, ``PSFBETA``, ``PSFELLIP``, ``PSFPA``,
        ``PSFWING``; frames of simulators before the aureole have no ``PSFWING``: none)."""
        return cls(float(header["SEEING"]), float(header["PSFBETA"]), float(header["PSFELLIP"]),
                   float(header["PSFPA"]), float(header.get("PSFWING", 0.0)))

    def profile(self):
        """The core: the unit-flux GalSim Moffat (cached), without the aureole (`render.add_psf_wing`)."""
        return _psf_profile(self)

    def effective_width(self):
        """The effective width (arcsec) of core and aureole: the FWHM of the Gaussian of the same noise-equivalent
        area (of the round profile: the shear keeps the core's)."""
        return _EFFECTIVE_WIDTH_PER_ROOT_NEA * np.sqrt(_continuous_nea(self.fwhm, self.beta, self.wing))


def moffat(r, beta, alpha):
    """Unit-flux round Moffat surface brightness at radius ``r`` (units of ``alpha``^-2)."""
    return (beta - 1.0) / (np.pi * alpha**2) * (1.0 + (r / alpha) ** 2) ** -beta


def moffat_scale_radius(fwhm, beta):
    """The scale radius alpha of the Moffat of index ``beta`` and FWHM ``fwhm`` (same units)."""
    return fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))


def _continuous_nea(fwhm, beta, wing):
    """Noise-equivalent area ``1 / integral(p^2)`` (arcsec^2) of the round PSF ``(1 - wing) core + wing aureole``."""
    alpha = moffat_scale_radius(fwhm, beta)
    # Moffat (1 + r^2/alpha^2)^-beta: integral(p^2) = (beta - 1)^2 / (pi alpha^2 (2 beta - 1)).
    core = (beta - 1.0) ** 2 / (np.pi * alpha**2 * (2.0 * beta - 1.0))
    if not wing:
        return float(1.0 / core)
    aureole = (WING_BETA - 1.0) ** 2 / (np.pi * WING_SCALE_RADIUS**2 * (2.0 * WING_BETA - 1.0))
    cross, _ = integrate.quad(lambda r: 2.0 * np.pi * r * moffat(r, beta, alpha)
                              * moffat(r, WING_BETA, WING_SCALE_RADIUS), 0.0, np.inf, limit=200)
    return float(1.0 / ((1.0 - wing) ** 2 * core + wing**2 * aureole + 2.0 * wing * (1.0 - wing) * cross))


def effective_width_to_fwhm(width, beta, wing=WING_FRACTION):
    """FWHM (arcsec) of the Moffat core of index ``beta`` whose PSF, with ``wing`` of the light in the aureole,
    has the effective width ``width`` (module docstring)."""
    def excess(fwhm):
        return _EFFECTIVE_WIDTH_PER_ROOT_NEA * np.sqrt(_continuous_nea(fwhm, beta, wing)) - width

    return float(optimize.brentq(excess, 0.05 * width, 2.0 * width, xtol=1e-6))


@functools.lru_cache(maxsize=8)
def wing_kernel(pixel_scale=PIXEL_SCALE.to_value(u.arcsec)):
    """The aureole on pixels of ``pixel_scale`` arcsec: a unit-sum float64 image reaching `WING_RADIUS`, centred."""
    size = 2 * int(np.ceil(WING_RADIUS / pixel_scale)) + 1
    aureole = galsim.Moffat(beta=WING_BETA, scale_radius=WING_SCALE_RADIUS)
    kernel = aureole.drawImage(nx=size, ny=size, scale=pixel_scale, method="no_pixel").array.astype(np.float64)
    return kernel / kernel.sum()


@functools.lru_cache(maxsize=256)
def _psf_profile(psf):
    profile = galsim.Moffat(beta=float(psf.beta), fwhm=float(psf.fwhm))
    if psf.ellipticity:
        # GalSim's beta is measured from +x (east is -x, north +y): beta = 90 deg + position angle.
        profile = profile.shear(q=1.0 - psf.ellipticity, beta=(90.0 + psf.angle) * galsim.degrees)
    grid = profile.drawImage(nx=_PSF_GRID_SIZE, ny=_PSF_GRID_SIZE, scale=_PSF_GRID_SCALE, method="no_pixel")
    return galsim.InterpolatedImage(grid, normalization="flux", flux=1.0)


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


def draw_psfs(rng, bands=BANDS, seeing=None):
    """The PSF of one field in each band, drawn as the module docstring says.

    ``seeing`` (arcsec FWHM per band) fixes the FWHMs; the shape (beta, ellipticity, angle) is drawn either way.
    """
    width_r = float(np.clip(MEDIAN_SEEING_R * np.exp(_SEEING_SIGMA_LN * rng.standard_normal()),
                            *_SEEING_LIMITS_R))
    jitter = {band: float(np.exp(_SEEING_JITTER * rng.standard_normal())) for band in BANDS}
    beta = round(float(rng.uniform(*MOFFAT_BETA_RANGE)), 3)
    ellipticity = round(float(rng.uniform(*PSF_ELLIPTICITY_RANGE)), 4)
    angle = round(float(rng.uniform(0.0, 180.0)), 2)
    psfs = {}
    for band in bands:
        if seeing is not None:
            fwhm = float(seeing[band])
        else:
            width = np.clip(width_r * SEEING_RATIO[band] * (1.0 if band == "r" else jitter[band]), *SEEING_LIMITS)
            fwhm = round(effective_width_to_fwhm(width, beta, WING_FRACTION), 4)
        psfs[band] = PSF(fwhm, beta, ellipticity, angle, WING_FRACTION)
    return psfs


def noise_equivalent_area(psf):
    """Noise-equivalent area ``1 / sum(p_i^2)`` (pixels) of `PSF` ``psf`` sampled at 0.396".

    A PSF-weighted flux measured on a background of pixel noise sigma has error ``sigma * sqrt(NEA)``.
    """
    kernel = wing_kernel()
    image = psf.profile().drawImage(nx=len(kernel), ny=len(kernel), scale=PIXEL_SCALE.to_value(u.arcsec)).array
    image = (1.0 - psf.wing) * image / image.sum() + psf.wing * kernel
    return float(1.0 / np.sum(image**2))


def point_source_depth(band, psf, nsigma=5.0):
    """Magnitude of a point source detected at ``nsigma`` by PSF-weighted photometry on the sky noise.

    Parameters
    ----------
    band : str
        One of `BANDS`.
    psf : PSF
        The band's PSF.
    nsigma : float
        Signal-to-noise ratio that defines the limit.

    Returns
    -------
    float
        AB magnitude.
    """
    return float(nanomaggies_to_mag(nsigma * pixel_noise(band) * np.sqrt(noise_equivalent_area(psf))))


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

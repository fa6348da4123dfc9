"""Redshift and richness of a cluster candidate from the red sequence of the galaxies around it.

A red-sequence estimator in the spirit of redMaPPer (Rykoff et al. 2014, ApJ 785, 104) and WHL12 (Wen, Han &
Liu 2012, ApJS 199, 34), calibrated on the red-sequence model the simulator draws from
(`deepcee_d2.synthetic.colours`: redMaPPer's SDSS DR8 ridge line, slope and scatter, and WHL12's L*):

1. **Photometry** (`measure_photometry`): sources detected and deblended on the r image of a flux cutout
   smoothed to about the seeing (Source Extractor's algorithms through SEP); the colours ``g - r`` and
   ``r - i`` from one circular aperture per source measured in all three bands, each band's fluxes divided by
   its share of a point source's light in the aperture relative to r's (``DEEPCEE.REDSHIFT.APERTURE_CORRECTION``:
   measured on the cutout's own stars, `deepcee_d2.psf.aperture_corrections`), their errors from the sky
   noise; the total r magnitude from the Kron flux (AB, SDSS nanomaggies: ``m = 22.5 - 2.5 log10 f``), and
   ``i = r - (r - i)``. Point sources are told from galaxies by their r concentration against the cutout's own
   stellar locus (`deepcee_d2.psf.separate_point_sources`) and, with ``DEEPCEE.REDSHIFT.EXCLUDE_POINT_SOURCES``,
   left out of every count below (`counted_sources`).
2. **Background** (`measure_background`): the surface densities of red-sequence-weighted galaxies and of
   richness members (step 4) at every trial redshift, measured over whole fields (a
   survey's mean: clusters cover a small fraction of the sky). It is global, as redMaPPer's is, rather than
   an annulus of the cutout: a cluster's members reach 2 r200 (2-4 proper Mpc), more than a 2000-pixel SDSS
   tile spans at z < 0.2, so an annulus would hold members.
3. **Redshift** (`estimate_redshift_richness`): at each trial z, every galaxy with
   ``m*(z) + bright_mag <= r <= m*(z) + faint_mag`` within ``scan_radius`` (proper) of the centre is weighted
   by its Gaussian likelihood of lying on the red sequence at z (the ridge line at its i magnitude, width the
   intrinsic scatter and its colour error added in quadrature), relative to an error-free galaxy on the ridge
   line, so poorly measured galaxies count less. The background expected on the same area (the part of the
   aperture inside the image) is subtracted; the peak of this excess is the first guess, its significance
   (excess over the square root of the summed squared weights) decides whether there is a red-sequence peak
   at all. The redshift is then refined as the maximum of the colour likelihood of the members (weights at
   the guess times the purity, excess over total), recomputing the members at the new redshift twice; its
   error is the width of that likelihood (``-2 ln L`` rising by 1) and a systematic floor in quadrature.
4. **Richness** (`richness_members`): the quantity the catalogue defines is WHL12's R_L* (the r luminosity, in
   L*, of the members brighter than 0.42 L* within r200, BCG included); it is estimated from the number of
   red-sequence members within r200 at the estimated z, mapped onto R_L*. Members are the galaxies with
   ``m*(z) + bright_mag <= r <= m*(z) + richness_faint_mag`` whose colours lie within the red sequence (chi^2
   of g - r and r - i against the ridge line, intrinsic scatter and colour error in quadrature, at most
   ``richness_member_chi2``): a hard colour cut rather than the scan's Gaussian weights, which are spread over
   0-1 for true members and so multiply every member by a random factor. The BCG (a member within
   ``richness_bcg_radius`` of the centre) counts once; the other members within ``richness_aperture_r200`` x
   r200 are background subtracted (the background's member density at z over the part of the aperture inside
   the image) and divided by the share of a cluster's members within r200 that this covered aperture holds (a
   projected NFW profile, c = 2.9: the missing outskirts and the part of the aperture outside the image). r200
   follows the richness (WHL12: ``log10 r200 / Mpc = -0.57 + 0.44 log10 R_L*``), so the two are iterated to a
   fixed point, as redMaPPer iterates its richness and radius. The number N is mapped onto R_L* by
   ``log10 R = richness_intercept + richness_slope log10 N + richness_z_slope (z - RICHNESS_Z_PIVOT)``,
   calibrated on synthetic clusters in both geometries the estimator meets (1200 px fields centred on the
   cluster, and the evaluator's 1000 px data-set cutouts with the cluster up to 100" off centre): it absorbs
   the mean luminosity of a member, the share of blue members, the faint members lost to the depth at higher z
   (the z term), and the regression dilution of a noisy estimate. A count rather than the members' light:
   where an image shows only part of r200 (a 1000 px cutout spans +-200", 360-650 kpc at 0.1 < z < 0.2) the
   unseen part is extrapolated from what is seen, and a count extrapolates with less noise than a light
   dominated by a few bright members (cross-validated on the calibration cutouts 0.136 dex against 0.152 for
   the light, and better in the centred fields too; BENCHMARKS.md). Galaxies brighter than ``m* + bright_mag``
   (3 mag above L*) never count; the pieces of a big nearby galaxy can: the deblender splits it into many
   sources of 16-19.5 mag with its red colours, which a hard colour cut admits. The background covers them
   only on average.

5. **Catalogue columns** (`RedSequenceEstimator`, the one entry point of the survey and the evaluator): the
   photometry of one flux cutout, then an estimate at each detection in it, as the columns `ESTIMATE_COLUMNS`
   (`RedSequenceEstimate.as_row`).
6. **Percolation** (`percolate`, a survey's detections of all tiles): a rich cluster's bright members far from
   its centre are detected on their own, and the red sequence under such a piece is the cluster's outskirts.
   Each peak is tested, in descending richness, against the richer clusters beyond the survey's merging
   radius: their projected NFW profiles' share of its scan aperture is subtracted from its scan, and a piece
   is left without a peak.

**Where the background comes from.** A survey tile or a data-set image is not a blank field: the detector
looks at clusters, a 2000-pixel tile (176 arcmin^2) holds about as many red-sequence galaxies of one cluster
as of the whole background at its redshift, and the synthetic skies of the demo put a cluster in every
training image and three in every survey field. A background measured on the imaging being searched would
therefore carry the clusters it is meant to reveal, and masking them needs their positions before the
detector has run. The background is instead a calibration, like the red-sequence model and the richness
relation it goes with: `read_background` reads the table of ``DEEPCEE.REDSHIFT.BACKGROUND_FILE``, by default
`DEFAULT_BACKGROUND_FILE`, measured on blank fields of the simulator (``python benchmarks/bench_redshift.py
--write-background``; BENCHMARKS.md). Imaging of other depth, seeing or galaxy population (real SDSS) needs
its own table: `measure_background` on blank fields of that imaging, written with `write_background`.

**Galactic reddening.** The red sequence is a colour, and dust in the Milky Way reddens every colour of a
field: E(B-V) = 0.03 (a typical high-latitude SDSS field) makes g - r 0.03 mag redder, 0.1 (common below
|b| ~ 30 deg) 0.10 mag, which the scan reads as a higher redshift. With ``DEEPCEE.REDSHIFT.DUST_MAP_DIR`` the
sources' magnitudes and colours are dereddened before any of the steps above (`deredden`): E(B-V) of the
Schlegel, Finkbeiner & Davis (1998) map at each source (`deepcee_d2.dust.galactic_reddening`, read by the
``dustmaps`` package), times Schlafly & Finkbeiner's (2011) SDSS coefficients (`EXTINCTION_PER_EBV`). The
synthetic sky has no Galactic reddening, so it needs no map; real imaging does.

Every tunable number comes from ``cfg.DEEPCEE.REDSHIFT`` through `RedSequenceSettings`. The estimator knows
exactly the red sequence the simulator draws from, so its accuracy on the synthetic sky is an upper bound of
its accuracy on real SDSS clusters (BENCHMARKS.md, "Redshift and richness").
"""
import functools
import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.convolution import Gaussian2DKernel
from astropy.coordinates import SkyCoord
from astropy.stats import gaussian_fwhm_to_sigma, sigma_clipped_stats
from astropy.table import Table
from astropy.wcs.utils import proj_plane_pixel_area, proj_plane_pixel_scales

from .cosmology import cosmology_from_cfg
from .data.colour import check_band_images
from .data.frames import covered_at
from .dust import EXTINCTION_PER_EBV, check_dust_map, galactic_reddening
from .io import atomic_output
from .psf import CONCENTRATION_RADII_ARCSEC, aperture_corrections, separate_point_sources, stellar_locus
from .synthetic.clusters import CONCENTRATION, MAX_RADIUS_R200, projected_fraction, r200_from_richness
from .synthetic.colours import m_star, red_sequence, red_sequence_scatter
from .synthetic.instrument import nanomaggies_to_mag

logger = logging.getLogger(__name__)

BANDS = ("g", "r", "i")
_MAG_PER_LN = 2.5 / np.log(10.0)  # magnitude error of a relative flux error
_SKY_SUBSAMPLE = 2  # every 2nd pixel in x and y is plenty for the sky's median and noise
# Kron photometry as Source Extractor's MAG_AUTO: the Kron radius measured within 6 times the source's ellipse,
# the flux within 2.5 Kron radii, a circle of 1.75 px (3.5 px across) where that ellipse is smaller.
_KRON_WINDOW, _KRON_FACTOR, _KRON_MIN_RADIUS = 6.0, 2.5, 1.75
# SEP's buffers: active pixels of sources being extracted (at least its default), sub-objects a source may be
# deblended into (a crowded field's big blends exceed the default 1024).
_SEP_PIXSTACK, _SEP_SUB_OBJECTS = 300_000, 4096
# The stars that measure the bands' aperture corrections (`_psf_stars`, `deepcee_d2.psf.aperture_corrections`):
# their light is measured
# within this many colour-aperture radii (6" for 2": nearly all of it), they have no other source within it,
# their S/N there in r is at least _PSF_STAR_SNR, their SEP ellipse is round (b/a), unflagged (neither
# deblended nor truncated). The brightest _PSF_MAX_STARS (a crowded field has thousands) give the locus;
# fewer than _PSF_MIN_STARS on it leave the colours uncorrected. Stars of S/N >= 50 when the locus holds
# enough of them, else down to 20: a 1000 px survey tile of a high-latitude SDSS field holds 1-8 stars at 50
# (7 of 12 tiles of 005194-2-0540 below 5), 3-13 at 20.
_PSF_REFERENCE_APERTURES, _PSF_STAR_SNR, _PSF_STAR_MIN_AXIS_RATIO = 3.0, (50.0, 20.0), 0.8
_PSF_MIN_STARS, _PSF_MAX_STARS = 5, 200
# Polar sample grid of the unit disc for the fraction of an aperture inside the image.
_COVERAGE_RADII, _COVERAGE_ANGLES = 40, 72
# The coarser grid of percolation's profile shares (1 % of a share is plenty against a scan's noise).
_SHARE_RADII, _SHARE_ANGLES, _SHARE_APERTURES = 20, 36, 12
_REFINE_HALF_WIDTH, _REFINE_STEP = 0.04, 0.0005
_REFINE_ITERATIONS = 3
# The background of the synthetic sky (module docstring), the default of DEEPCEE.REDSHIFT.BACKGROUND_FILE.
DEFAULT_BACKGROUND_FILE = Path(__file__).resolve().parent / "synthetic" / "red_sequence_background.ecsv"
_BACKGROUND_COLUMNS = ("z", "scan", "scan_squared", "members")
# The settings a background depends on besides the z grid, kept in its meta and checked when it is read.
_BACKGROUND_SETTINGS = ("detect_nsigma", "detect_npixels", "smooth_fwhm_pixels", "aperture_radius", "aperture_correction",
                        "bright_mag", "faint_mag", "richness_faint_mag", "colour_error_floor",
                        "richness_member_chi2", "exclude_point_sources")
# Settings added after backgrounds were first written, and the value those files were measured with.
_BACKGROUND_SETTINGS_BEFORE = {"aperture_correction": False, "exclude_point_sources": False}
# Which photometry a background was measured with (its meta): another deblender finds other sources, so a
# background of photutils' segmentation (before SEP; not recorded then) does not fit this photometry.
PHOTOMETRY = "sep"
# The richness / r200 fixed point (step 4): start at R_L* = 20 (r200 = 1 Mpc), stop when R moves by less than
# the tolerance (dex) or after the most iterations.
_RICHNESS_START, _RICHNESS_TOLERANCE, _RICHNESS_ITERATIONS = 20.0, 1e-3, 20
# The redshift the richness relation's z term is measured from (DEEPCEE.REDSHIFT.RICHNESS_Z_SLOPE).
RICHNESS_Z_PIVOT = 0.2
# Catalogue columns of an estimate (`RedSequenceEstimate.as_row`), in order.
ESTIMATE_COLUMNS = ("z_est", "z_err", "richness", "rs_significance", "rs_peak", "bcg_rmag")
# The redshift scan of each estimate, per trial z, which a survey's tiles keep for `percolate`.
SCAN_COLUMNS = ("scan_excess", "scan_noise")
# `RedSequenceEstimator.estimate` puts the cutout's `Photometry.source_density` in its table's meta under this key.
SOURCE_DENSITY_KEY = "SOURCE_DENSITY"
_NO_ESTIMATE = dict(zip(ESTIMATE_COLUMNS, (math.nan,) * 4 + (False, math.nan)))
_MAGNITUDE_COLUMNS = ("r_mag", "i_mag", "g_r", "r_i", "g_r_err", "r_i_err", "r_mag_err", "concentration",
                      "concentration_err")
PHOTOMETRY_COLUMNS = ("x", "y", "ra", "dec", "r_mag", "i_mag", "g_r", "r_i", "g_r_err", "r_i_err", "r_mag_err",
                      "concentration", "concentration_err", "point_source")


@dataclass(frozen=True)
class RedSequenceSettings:
    """The estimator's tunable numbers, from ``cfg.DEEPCEE.REDSHIFT`` (`from_cfg`; each documented there).

    Parameters
    ----------
    detect_nsigma : float
        Detection threshold on the smoothed r image, in units of the sky noise of the unsmoothed image.
    detect_npixels : int
        Fewest connected pixels of a source.
    smooth_fwhm_pixels : float
        FWHM (pixels) of the Gaussian that smooths the r image before detection.
    aperture_radius : `~astropy.units.Quantity` [angle]
        Radius of the colour aperture.
    aperture_correction : bool
        Put the aperture colours on r's PSF with the cutout's stars (`deepcee_d2.psf.aperture_corrections`).
    exclude_point_sources : bool
        Leave the point sources (`deepcee_d2.psf.separate_point_sources`) out of the red-sequence counts.
    z_grid : (n,) array
        Trial redshifts.
    bright_mag, faint_mag : float
        Magnitude window (r, relative to m*(z)) of red-sequence candidates in the redshift scan.
    scan_radius : `~astropy.units.Quantity` [length]
        Proper radius of the redshift scan.
    colour_error_floor : float
        Smallest colour error (mag).
    z_error_floor : float
        Systematic redshift error added in quadrature to the statistical one.
    min_significance : float
        Significance of the red-sequence excess below which a detection has no peak.
    richness_faint_mag : float
        Faintest member (r, relative to m*) counted in the richness.
    richness_member_chi2 : float
        Largest colour chi^2 (g - r and r - i against the red sequence) of a richness member.
    richness_aperture_r200 : float
        Radius of the richness aperture, in units of the r200 of the estimated richness.
    richness_bcg_radius : `~astropy.units.Quantity` [length]
        Proper radius around the centre within which the brightest member is the BCG.
    richness_intercept, richness_slope, richness_z_slope : float
        ``log10 R = intercept + slope log10 N + z_slope (z - RICHNESS_Z_PIVOT)`` (N: the red-sequence members
        within r200, `RedSequenceEstimate.members`).
    """

    detect_nsigma: float
    detect_npixels: int
    smooth_fwhm_pixels: float
    aperture_radius: u.Quantity
    aperture_correction: bool
    exclude_point_sources: bool
    z_grid: np.ndarray
    bright_mag: float
    faint_mag: float
    scan_radius: u.Quantity
    colour_error_floor: float
    z_error_floor: float
    min_significance: float
    richness_faint_mag: float
    richness_member_chi2: float
    richness_aperture_r200: float
    richness_bcg_radius: u.Quantity
    richness_intercept: float
    richness_slope: float
    richness_z_slope: float

    @classmethod
    def from_cfg(cls, cfg):
        """The settings of ``cfg.DEEPCEE.REDSHIFT``."""
        c = cfg.DEEPCEE.REDSHIFT
        start, stop, step = (float(v) for v in c.Z_GRID)
        if not (0 < start < stop and step > 0):
            raise ValueError(f"DEEPCEE.REDSHIFT.Z_GRID: need [start, stop, step] with 0 < start < stop and "
                             f"step > 0, got {list(c.Z_GRID)}")
        return cls(
            detect_nsigma=float(c.DETECT_NSIGMA), detect_npixels=int(c.DETECT_NPIXELS),
            smooth_fwhm_pixels=float(c.SMOOTH_FWHM_PIXELS), aperture_radius=float(c.APERTURE_RADIUS_ARCSEC) * u.arcsec,
            aperture_correction=bool(c.APERTURE_CORRECTION), exclude_point_sources=bool(c.EXCLUDE_POINT_SOURCES),
            z_grid=np.round(np.arange(start, stop + step / 2, step), 6), bright_mag=float(c.BRIGHT_MAG),
            faint_mag=float(c.FAINT_MAG), scan_radius=float(c.SCAN_RADIUS_KPC) * u.kpc,
            colour_error_floor=float(c.COLOUR_ERROR_FLOOR), z_error_floor=float(c.Z_ERROR_FLOOR),
            min_significance=float(c.MIN_SIGNIFICANCE),
            richness_faint_mag=float(c.RICHNESS_FAINT_MAG), richness_member_chi2=float(c.RICHNESS_MEMBER_CHI2),
            richness_aperture_r200=float(c.RICHNESS_APERTURE_R200),
            richness_bcg_radius=float(c.RICHNESS_BCG_RADIUS_KPC) * u.kpc,
            richness_intercept=float(c.RICHNESS_INTERCEPT), richness_slope=float(c.RICHNESS_SLOPE),
            richness_z_slope=float(c.RICHNESS_Z_SLOPE),
        )


@dataclass
class Photometry:
    """Sources of one flux cutout and the footprint they were found on.

    Attributes
    ----------
    sources : `~astropy.table.Table`
        One row per source: ``x``, ``y`` (0-based pixels), ``ra``, ``dec`` (deg), ``r_mag`` (total, Kron, AB),
        ``i_mag`` (``r_mag - r_i``), ``g_r``, ``r_i`` (aperture colours, mag), their errors ``g_r_err``,
        ``r_i_err`` and ``r_mag_err`` (mag), the r ``concentration`` and ``concentration_err`` (mag) and
        ``point_source`` (`deepcee_d2.psf.separate_point_sources`; none without a stellar locus).
    wcs : `~astropy.wcs.WCS`
        The cutout's celestial WCS.
    shape : tuple of int
        ``(ny, nx)`` of the cutout.
    covered : (ny, nx) bool array or None
        The pixels imaged in every band (`deepcee_d2.data.frames.Cutout.covered`); None: all of them.
    aperture_corrections : dict of str -> float or None
        Each band's share of a point source's light in the colour aperture relative to r's, which its aperture
        fluxes were divided by (`deepcee_d2.psf.aperture_corrections`); None where the colours are as imaged
        (not asked, or too few stars).
    """

    sources: Table
    wcs: object
    shape: tuple
    covered: np.ndarray = None
    aperture_corrections: dict = None

    @functools.cached_property
    def pixel_scale(self):
        """Mean pixel side (arcsec) of the cutout's WCS (asked for every aperture: worked out once)."""
        return _pixel_scale(self.wcs)

    @property
    def source_density(self):
        """Sources detected per arcmin^2 of the imaged cutout: the crowded field of the globular cluster M2
        gives 5-10 times the high-latitude sky's (BENCHMARKS.md, "Source density of the candidates' tiles")."""
        return _per_arcmin2(len(self.sources), self.area)

    @property
    def area(self):
        """Imaged solid angle of the cutout, `~astropy.units.Quantity` [arcmin^2]."""
        return _imaged_area(self.wcs, self.shape, self.covered)


def _imaged_area(wcs, shape, covered):
    """Solid angle of the pixels of a ``shape`` cutout with ``wcs`` that are ``covered`` (all when None), arcmin^2."""
    pixel = proj_plane_pixel_area(wcs) * u.deg**2
    n_pixels = shape[0] * shape[1] if covered is None else int(np.count_nonzero(covered))
    return (n_pixels * pixel).to(u.arcmin**2)


def _pixel_scale(wcs):
    """Mean pixel side of ``wcs`` (arcsec), from the WCS itself."""
    return float(np.mean(proj_plane_pixel_scales(wcs.celestial)) * 3600.0)


def measure_photometry(images, wcs, settings, source="image", covered=None):
    """Detect sources on the r image and measure their AB magnitudes and g - r, r - i colours.

    Source Extractor's algorithms through SEP (Barbary 2016, JOSS 1, 58): detection on the r image convolved
    with a Gaussian of about the seeing, its multi-threshold deblending (cluster cores are crowded: without it
    a BCG and its neighbours would be one source of mixed colour), Kron fluxes within 2.5 Kron radii (a circle
    of `_KRON_MIN_RADIUS` where that ellipse is smaller) and exact circular apertures for the colours at each
    source's barycentre. With ``settings.aperture_correction`` each band's aperture fluxes are divided by its
    share of a point source's light in the aperture relative to r's (`deepcee_d2.psf.aperture_corrections`, on the
    cutout's stars, `_psf_stars`), which puts the colours on r's PSF.

    Parameters
    ----------
    images : dict of str -> (ny, nx) array
        g, r, i flux images on one pixel grid, nanomaggies per pixel, sky-subtracted or not (the clipped
        median of each band is subtracted), e.g. ``Cutout.images`` or ``SyntheticField.images``.
    wcs : `~astropy.wcs.WCS`
        Their common celestial WCS.
    settings : `RedSequenceSettings`
    source : str
        Name of the images for error messages.
    covered : (ny, nx) bool array, optional
        The pixels with imaging (`deepcee_d2.data.frames.Cutout.covered` of a tile reaching past the frames):
        the sky is measured and sources are detected on these only, so padding neither lowers the noise
        estimate nor becomes area. None: every pixel.

    Returns
    -------
    Photometry

    Raises
    ------
    ValueError
        A band is missing, the images differ in shape, are not 2-D or hold NaN/inf pixels, or SEP fails on
        the sources (its bare ``Exception``, named with ``source``: one tile's failure leaves its detections
        without estimates instead of stopping a survey).
    """
    try:
        return _measure_photometry(images, wcs, settings, source, covered)
    except Exception as error:
        if type(error) is not Exception:  # SEP raises bare Exceptions; anything else is a bug to see
            raise
        raise ValueError(f"{source}: SEP failed on its sources: {error}") from error


def _measure_photometry(images, wcs, settings, source, covered):
    """`measure_photometry` itself."""
    import sep

    images, noise, objects, covered = _detect_sources(images, BANDS, settings, source, covered)
    shape = images["r"].shape
    if not len(objects):
        return Photometry(_empty_sources(), wcs, shape, covered)
    x, y, a, b, theta = (objects[name].astype(np.float64) for name in ("x", "y", "a", "b", "theta"))
    # SEP's float32 theta of an object along the y axis can exceed pi/2 in float64, which its own elliptical
    # apertures refuse ("invalid aperture parameters", sep-developers/sep#110): seen on a one-column source.
    theta = np.clip(theta, -np.pi / 2, np.pi / 2)
    kron_radius, _ = sep.kron_radius(images["r"], x, y, a, b, theta, _KRON_WINDOW)
    kron, _, _ = sep.sum_ellipse(images["r"], x, y, a, b, theta, _KRON_FACTOR * kron_radius, subpix=1)
    small = ~(kron_radius * np.sqrt(a * b) >= _KRON_MIN_RADIUS)  # NaN radii too
    if small.any():
        kron[small] = sep.sum_circle(images["r"], x[small], y[small], _KRON_MIN_RADIUS, subpix=1)[0]
    radius = settings.aperture_radius.to_value(u.arcsec) / _pixel_scale(wcs)
    corrections = None
    if settings.aperture_correction:
        reference = _PSF_REFERENCE_APERTURES * radius
        stars_x, stars_y = _psf_stars(images, objects, noise, covered, reference)
        if len(stars_x) >= _PSF_MIN_STARS:
            corrections = aperture_corrections(images, stars_x, stars_y, radius, reference)
        else:
            logger.info("%s: %d stars (need %d): colours not aperture-corrected", source, len(stars_x),
                        _PSF_MIN_STARS)
    shares = corrections or dict.fromkeys(BANDS, 1.0)
    area = np.pi * radius**2
    flux, error = {}, {}
    for band in BANDS:
        flux[band] = sep.sum_circle(images[band], x, y, radius, subpix=0)[0]
        error[band] = noise[band] * np.sqrt(area)
        # A source fainter than its error gets its 1-sigma flux: a colour limit whose large error weights it down.
        flux[band] = np.maximum(flux[band], error[band]) / shares[band]
        error[band] = error[band] / shares[band]
    relative = {band: error[band] / flux[band] for band in BANDS}
    total_r = np.where(np.isfinite(kron) & (kron > flux["r"]), kron, flux["r"])
    concentration, concentration_err = _concentration(images["r"], x, y, noise["r"], _pixel_scale(wcs))
    point_source = _point_sources(concentration, concentration_err, nanomaggies_to_mag(total_r), source)
    sky = wcs.pixel_to_world(x, y)
    r_i = -2.5 * np.log10(flux["r"] / flux["i"])
    sources = Table({
        "x": x, "y": y, "ra": sky.ra.to(u.deg), "dec": sky.dec.to(u.deg),
        "r_mag": nanomaggies_to_mag(total_r), "i_mag": nanomaggies_to_mag(total_r) - r_i,
        "g_r": -2.5 * np.log10(flux["g"] / flux["r"]), "r_i": r_i,
        "g_r_err": _MAG_PER_LN * np.hypot(relative["g"], relative["r"]),
        "r_i_err": _MAG_PER_LN * np.hypot(relative["r"], relative["i"]),
        "r_mag_err": _MAG_PER_LN * error["r"] / total_r,
        "concentration": concentration, "concentration_err": concentration_err, "point_source": point_source,
    })
    for name in _MAGNITUDE_COLUMNS:
        sources[name].unit = u.mag
    return Photometry(sources, wcs, shape, covered, corrections)


def _concentration(image, x, y, noise, pixel_scale):
    """``m(1") - m(3")`` of the sources at ``(x, y)`` on the sky-subtracted r ``image`` and its error from the
    sky ``noise`` per pixel (`deepcee_d2.psf.separate_point_sources`); NaN where a flux is not positive."""
    import sep

    fluxes, errors = [], []
    for radius in np.asarray(CONCENTRATION_RADII_ARCSEC) / pixel_scale:
        fluxes.append(sep.sum_circle(image, x, y, radius, subpix=0)[0])
        errors.append(noise * np.sqrt(np.pi) * radius)
    (inner, outer), (inner_error, outer_error) = fluxes, errors
    with np.errstate(invalid="ignore", divide="ignore"):
        positive = (inner > 0) & (outer > 0)
        concentration = np.where(positive, -2.5 * np.log10(inner / np.where(positive, outer, 1.0)), np.nan)
        error = _MAG_PER_LN * np.hypot(inner_error / inner, outer_error / outer)
    return concentration, np.where(positive, error, np.nan)


def _point_sources(concentration, concentration_err, r_mag, source):
    """Which sources are point sources (`deepcee_d2.psf.separate_point_sources`); none where the image's
    stellar locus cannot be found or is too wide to tell (a crowded field), with a message naming ``source``."""
    try:
        separation = separate_point_sources(concentration, concentration_err, r_mag)
    except ValueError as error:
        logger.info("%s: no star/galaxy separation: %s", source, error)
        return np.zeros(len(r_mag), dtype=bool)
    if not separation.reliable:
        logger.info("%s: no star/galaxy separation: its stellar locus is %.2f mag wide (a crowded field)", source,
                    separation.width)
        return np.zeros(len(r_mag), dtype=bool)
    return separation.point


def counted_sources(photometry, settings):
    """The sources the red-sequence counts are made of: `Photometry.sources`, without its point sources when
    ``settings.exclude_point_sources`` (stars are no cluster members; at high latitude as many K dwarfs have
    the red sequence's colours at 0.1 < z < 0.2 as galaxies of the background, many more near the plane)."""
    sources = photometry.sources
    if not settings.exclude_point_sources or not len(sources):
        return sources
    return sources[~np.asarray(sources["point_source"], dtype=bool)]


def _psf_stars(images, objects, noise, covered, reference_radius):
    """Pixel positions ``(x, y)`` of the stars of a cutout for `deepcee_d2.psf.aperture_corrections`: SEP's
    objects (`_detect_sources`) that are unflagged, round, isolated and bright (`_PSF_STAR_SNR`, ...), with
    their reference circle on imaged pixels, on the stellar locus of their r half-light radii (`stellar_locus`); only the
    brighter ones where they are enough."""
    import sep
    from scipy.spatial import cKDTree

    x, y = objects["x"].astype(np.float64), objects["y"].astype(np.float64)
    if len(x) < _PSF_MIN_STARS:
        return x[:0], y[:0]
    half = int(math.ceil(reference_radius)) + 1
    ny, nx = images["r"].shape
    flux = sep.sum_circle(images["r"], x, y, reference_radius, subpix=1)[0]
    snr = flux / (noise["r"] * np.sqrt(np.pi) * reference_radius)
    nearest = cKDTree(np.column_stack([x, y])).query(np.column_stack([x, y]), k=2)[0][:, 1]
    candidate = ((objects["flag"] == 0) & (objects["b"] >= _PSF_STAR_MIN_AXIS_RATIO * objects["a"])
                 & (nearest > reference_radius)
                 & (snr >= min(_PSF_STAR_SNR))
                 & (x >= half) & (x < nx - 1 - half) & (y >= half) & (y < ny - 1 - half))
    index = np.flatnonzero(candidate)
    if covered is not None:
        x0, y0 = np.rint(x[index]).astype(int), np.rint(y[index]).astype(int)
        index = index[[covered[b - half:b + half + 1, a - half:a + half + 1].all() for a, b in zip(x0, y0)]]
    index = index[np.argsort(-flux[index])][:_PSF_MAX_STARS]
    sizes = sep.flux_radius(images["r"], x[index], y[index], np.full(len(index), reference_radius), 0.5,
                            normflux=flux[index], subpix=5)[0]
    _, on_locus = stellar_locus(sizes, _PSF_MIN_STARS)
    stars = index[on_locus]
    bright = snr[stars] >= max(_PSF_STAR_SNR)
    if bright.sum() >= _PSF_MIN_STARS:
        stars = stars[bright]
    return x[stars], y[stars]


def _detect_sources(images, bands, settings, source, covered):
    """The detection step of `measure_photometry` (and all of `detected_source_density`): ``bands`` (r among
    them) checked and sky-subtracted (sigma-clipped median of the imaged pixels), sources detected on r.

    Returns ``(images, noise, objects, covered)``: the sky-subtracted images of ``bands`` (C-ordered float64,
    as SEP reads them), each band's sky noise, SEP's objects and the covered mask as a bool array (or None)."""
    import sep

    images = dict(zip(bands, check_band_images(images, bands, source)))
    shape = images["r"].shape
    if covered is not None:
        covered = np.asarray(covered, dtype=bool)
        if covered.shape != shape:
            raise ValueError(f"{source}: covered mask {covered.shape} does not match the images {shape}")
        if not covered.any():
            raise ValueError(f"{source}: no pixel is imaged")
    sky_mask = None if covered is None else ~covered[::_SKY_SUBSAMPLE, ::_SKY_SUBSAMPLE]
    noise = {}
    for band in bands:
        _, median, std = sigma_clipped_stats(images[band][::_SKY_SUBSAMPLE, ::_SKY_SUBSAMPLE], mask=sky_mask,
                                             sigma=3.0, maxiters=5)
        if not std > 0:
            raise ValueError(f"{source}: band {band} has no sky noise (a constant image?)")
        # SEP reads C-ordered native float64; FITS data are big-endian.
        images[band] = np.ascontiguousarray(images[band] - median, dtype=np.float64)
        noise[band] = float(std)
    # Every pixel of the image may belong to a source being extracted (a crowded field, a bright star).
    sep.set_extract_pixstack(max(_SEP_PIXSTACK, shape[0] * shape[1]))
    sep.set_sub_object_limit(_SEP_SUB_OBJECTS)
    kernel_size = 2 * int(np.ceil(settings.smooth_fwhm_pixels)) + 1
    kernel = Gaussian2DKernel(settings.smooth_fwhm_pixels * gaussian_fwhm_to_sigma, x_size=kernel_size,
                              y_size=kernel_size).array
    try:
        objects = sep.extract(images["r"], settings.detect_nsigma, err=noise["r"],
                              mask=None if covered is None else ~covered, minarea=settings.detect_npixels,
                              filter_kernel=kernel, filter_type="conv")
    except Exception as error:  # SEP raises a bare Exception for its buffer overflows
        raise ValueError(f"{source}: source extraction failed: {error}") from error
    return images, noise, objects, covered


def detected_source_density(images, wcs, settings, source="image", covered=None):
    """`Photometry.source_density` of ``images`` (arguments as `measure_photometry`) from the detection step
    alone, on the r image: the same number at about half the cost (0.23 against 0.44 CPU-s per 2000 px tile of
    the shared frames, BENCHMARKS.md "Crowded sky masked"), for tiles whose sources need no photometry (the
    survey's tiles without detections, whose crowding its mask needs too).

    Raises
    ------
    ValueError
        As `measure_photometry`, for the r image.
    """
    images, _, objects, covered = _detect_sources(images, ("r",), settings, source, covered)
    return _per_arcmin2(len(objects), _imaged_area(wcs, images["r"].shape, covered))


def _per_arcmin2(n_sources, area):
    return round(n_sources / area.to_value(u.arcmin**2), 3)


def _empty_sources():
    table = Table({name: np.zeros(0, dtype=bool if name == "point_source" else float) for name in PHOTOMETRY_COLUMNS})
    table["ra"].unit = table["dec"].unit = u.deg
    return table


def red_sequence_weights(sources, z, bright_mag, faint_mag, colour_error_floor, cosmology):
    """Red-sequence weight of every source at every trial redshift.

    The weight is the Gaussian likelihood of the source's (g - r, r - i) on the red sequence at z (ridge line
    at its i magnitude; width the intrinsic scatter and its colour error added in quadrature), relative to a
    source on the ridge line whose colour error is the floor: 1 at best, less for a poorly measured colour. Sources
    outside ``m*(z) + bright_mag <= r <= m*(z) + faint_mag`` weigh 0.

    Parameters
    ----------
    sources : `~astropy.table.Table`
        `Photometry.sources` (or any table with its magnitude and colour columns).
    z : float or (m,) array
        Trial redshifts.
    bright_mag, faint_mag : float
        Magnitude window, r relative to m*(z).
    colour_error_floor : float
        Smallest colour error, mag.
    cosmology : `~astropy.cosmology.FLRW`

    Returns
    -------
    (n, m) array
    """
    z = np.atleast_1d(np.asarray(z, dtype=float))
    chi2, width_ratio = _colour_chi2(sources, z, colour_error_floor)
    return width_ratio * np.exp(-0.5 * chi2) * _in_window(sources, z, bright_mag, faint_mag, cosmology)


def _colour_chi2(sources, z, colour_error_floor):
    """chi^2 of every source's (g - r, r - i) against the red sequence at every trial z (n, m), and the product
    over both colours of (width with the floor error) / (width with the source's error), at most 1."""
    ridge_gr, ridge_ri = red_sequence(z[None, :], np.asarray(sources["i_mag"], dtype=float)[:, None])
    scatter_gr, scatter_ri = red_sequence_scatter(z)
    chi2, width_ratio = np.zeros((len(sources), len(z))), np.ones((len(sources), len(z)))
    for colour, ridge, scatter in (("g_r", ridge_gr, scatter_gr), ("r_i", ridge_ri, scatter_ri)):
        error = np.maximum(np.asarray(sources[f"{colour}_err"], dtype=float), colour_error_floor)[:, None]
        width = np.hypot(scatter[None, :], error)
        width_ratio *= np.hypot(scatter[None, :], colour_error_floor) / width
        chi2 += ((np.asarray(sources[colour])[:, None] - ridge) / width) ** 2
    return chi2, width_ratio


def _in_window(sources, z, bright_mag, faint_mag, cosmology):
    """Whether each source's r lies within ``m*(z) + bright_mag .. m*(z) + faint_mag`` at each trial z (n, m)."""
    r_mag = np.asarray(sources["r_mag"], dtype=float)[:, None]
    star = m_star(z, cosmology)[None, :]
    return (r_mag >= star + bright_mag) & (r_mag <= star + faint_mag)


def richness_members(sources, z, settings, cosmology):
    """Whether each source is a richness member at each trial redshift.

    A member lies within ``m*(z) + settings.bright_mag <= r <= m*(z) + settings.richness_faint_mag`` and its
    colour chi^2 against the red sequence at z (`red_sequence_weights`' widths) is at most
    ``settings.richness_member_chi2``.

    Parameters
    ----------
    sources : `~astropy.table.Table`
        `Photometry.sources`.
    z : float or (m,) array
        Trial redshifts.
    settings : `RedSequenceSettings`
    cosmology : `~astropy.cosmology.FLRW`

    Returns
    -------
    (n, m) bool array
    """
    z = np.atleast_1d(np.asarray(z, dtype=float))
    chi2, _ = _colour_chi2(sources, z, settings.colour_error_floor)
    return (chi2 <= settings.richness_member_chi2) & _in_window(sources, z, settings.bright_mag,
                                                                 settings.richness_faint_mag, cosmology)


def measure_background(photometries, cosmology, settings):
    """Mean surface densities of red-sequence-weighted galaxies and of richness members at every trial
    redshift, over whole fields.

    Parameters
    ----------
    photometries : iterable of `Photometry`
        Fields representative of the survey (its mean sky; a few clusters among them matter little), read
        once, one at a time (a generator keeps only one in memory).
    cosmology : `~astropy.cosmology.FLRW`
    settings : `RedSequenceSettings`

    Returns
    -------
    `~astropy.table.Table`
        ``z``; ``scan`` (weights of the redshift scan), ``scan_squared`` (their squares), each per arcmin^2,
        and ``members`` (`richness_members`), each per arcmin^2; ``meta["area"]``: the area measured,
        ``meta["settings"]``: the settings besides the z grid that the densities depend on.
    """
    z = settings.z_grid
    area = 0.0 * u.arcmin**2
    scan = np.zeros(len(z))
    scan_squared = np.zeros(len(z))
    members = np.zeros(len(z))
    for photometry in photometries:  # one at a time: a survey's tiles need not all be held at once
        area = area + photometry.area
        sources = counted_sources(photometry, settings)
        weights = red_sequence_weights(sources, z, settings.bright_mag, settings.faint_mag,
                                       settings.colour_error_floor, cosmology)
        scan += weights.sum(axis=0)
        scan_squared += (weights**2).sum(axis=0)
        members += richness_members(sources, z, settings, cosmology).sum(axis=0)
    if not area > 0:
        raise ValueError("background: need at least one field's photometry, with imaged area")
    density = 1.0 / area.to_value(u.arcmin**2)
    table = Table({"z": z, "scan": scan * density, "scan_squared": scan_squared * density,
                   "members": members * density})
    for name in ("scan", "scan_squared", "members"):
        table[name].unit = u.arcmin**-2
    table.meta["area"] = area
    table.meta["settings"] = {name: getattr(settings, name) for name in _BACKGROUND_SETTINGS}
    table.meta["photometry"] = PHOTOMETRY
    return table


def write_background(background, path):
    """Write a `measure_background` table to ``path`` (ECSV, atomically), for ``DEEPCEE.REDSHIFT.BACKGROUND_FILE``."""
    with atomic_output(path) as temporary:
        background.write(temporary, format="ascii.ecsv", overwrite=True)
    return Path(path)


def read_background(path, settings):
    """The background table of ``path`` (written by `write_background`), checked against ``settings``.

    Parameters
    ----------
    path : str or Path
        ECSV file with ``z`` and the densities ``scan``, ``scan_squared``, ``members`` (per arcmin^2).
    settings : `RedSequenceSettings`

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        The file is not such a table (or one written for an earlier richness, without the ``members``
        column), or was measured with other settings than ``settings`` (the redshift grid
        ``DEEPCEE.REDSHIFT.Z_GRID``, the detection and the colour aperture, the magnitude window, the colour
        floor, the member chi^2), named with the file, or with another photometry (`PHOTOMETRY`).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: red-sequence background file not found (DEEPCEE.REDSHIFT.BACKGROUND_FILE)")
    try:
        table = Table.read(path, format="ascii.ecsv")
    except (ValueError, OSError, KeyError) as error:
        raise ValueError(f"{path}: not a readable ECSV background table ({error})") from None
    missing = [name for name in _BACKGROUND_COLUMNS if name not in table.colnames]
    if missing:
        earlier = [name for name in ("richness", "luminosity") if name in table.colnames]
        hint = (f" (a background of an earlier richness estimator: its column {earlier[0]!r})"
                if "members" in missing and earlier else "")
        raise ValueError(f"{path}: background table lacks column(s) {missing}; it has {table.colnames}{hint}; "
                         "measure it again (measure_background, write_background; for the synthetic sky "
                         "benchmarks/bench_redshift.py --write-background)")
    z = np.asarray(table["z"], dtype=float)
    if len(z) != len(settings.z_grid) or not np.allclose(z, settings.z_grid):
        raise ValueError(f"{path}: background measured on {len(z)} trial redshifts {z[:1]}..{z[-1:]}, not on "
                         f"DEEPCEE.REDSHIFT.Z_GRID ({len(settings.z_grid)} from {settings.z_grid[0]}); measure it "
                         "again with these settings (measure_background, write_background)")
    photometry = table.meta.get("photometry", "photutils (not recorded)")
    if photometry != PHOTOMETRY:
        raise ValueError(f"{path}: background measured with the photometry {photometry!r}, not {PHOTOMETRY!r}; "
                         "measure it again (measure_background, write_background)")
    measured_with = {**_BACKGROUND_SETTINGS_BEFORE, **table.meta.get("settings", {})}
    changed = [f"{name} {measured_with.get(name, 'not recorded')} (now {getattr(settings, name)})"
               for name in _BACKGROUND_SETTINGS
               if name not in measured_with or not np.isclose(measured_with[name], getattr(settings, name))]
    if changed:
        raise ValueError(f"{path}: background measured with other DEEPCEE.REDSHIFT settings: {', '.join(changed)}; "
                         "measure it again with these settings (measure_background, write_background)")
    return table


def _nfw_surface_density(x):
    """Projected NFW surface density at ``x = R / r_s`` (arbitrary normalisation; Bartelmann 1996)."""
    x = np.maximum(np.asarray(x, dtype=float), 1e-4)
    out = np.full(x.shape, 1.0 / 3.0)
    below, above = x < 1.0 - 1e-6, x > 1.0 + 1e-6
    out[below] = (1.0 - np.arccosh(1.0 / x[below]) / np.sqrt(1.0 - x[below] ** 2)) / (x[below] ** 2 - 1.0)
    out[above] = (1.0 - np.arccos(1.0 / x[above]) / np.sqrt(x[above] ** 2 - 1.0)) / (x[above] ** 2 - 1.0)
    return out


@functools.lru_cache(maxsize=2)
def _unit_disc(radii=_COVERAGE_RADII, angles=_COVERAGE_ANGLES):
    """A polar grid over the unit disc: radii rho (k,), the samples' x and y (k,); rho is also the area
    element's weight (rho d rho d phi)."""
    rho = (np.arange(radii) + 0.5) / radii
    phi = np.arange(angles) * 2 * np.pi / angles
    unit_x = (rho[:, None] * np.cos(phi)[None, :]).ravel()
    unit_y = (rho[:, None] * np.sin(phi)[None, :]).ravel()
    return np.repeat(rho, angles), unit_x, unit_y


def aperture_coverage(photometry, centre_xy, radius, scale_radius=None):
    """Fraction of circular apertures around ``centre_xy`` that lies inside the image, on imaged pixels.

    Parameters
    ----------
    photometry : `Photometry`
    centre_xy : (float, float)
        The apertures' centre in the cutout's 0-based pixels (``photometry.wcs.world_to_pixel`` of the sky
        position, done once by the caller for all its apertures).
    radius : `~astropy.units.Quantity` [angle], scalar or (m,)
        Aperture radii.
    scale_radius : `~astropy.units.Quantity` [angle], optional
        Weight the area by a projected NFW profile of this scale radius (one per aperture): the fraction of a
        cluster's members that the image holds. None weighs the area uniformly (the background's fraction).

    Returns
    -------
    (m,) array
    """
    radius = np.atleast_1d(radius.to_value(u.arcsec))
    x0, y0 = centre_xy
    scale = photometry.pixel_scale
    area, unit_x, unit_y = _unit_disc()
    ny, nx = photometry.shape
    x = x0 + unit_x[None, :] * radius[:, None] / scale
    y = y0 + unit_y[None, :] * radius[:, None] / scale
    inside = (x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5)
    if photometry.covered is not None:  # and imaged
        inside &= covered_at(photometry.covered, x, y)
    weight = np.broadcast_to(area, inside.shape)
    if scale_radius is not None:
        r_s = np.atleast_1d(scale_radius.to_value(u.arcsec))
        weight = area[None, :] * _nfw_surface_density(area[None, :] * radius[:, None] / r_s[:, None])
    return (weight * inside).sum(axis=1) / weight.sum(axis=1)


@dataclass(frozen=True)
class RedSequenceEstimate:
    """Redshift and richness of one detection.

    Attributes
    ----------
    z, z_err : float
        Red-sequence redshift and its 1-sigma error.
    richness : float
        Estimated catalogue richness R_L* (WHL12's definition, calibrated); 0 when no excess members.
    members : float
        The red-sequence members within r200 (module docstring, step 4): the BCG plus the others'
        background-subtracted number within the aperture, divided by the share of the members the covered
        aperture holds; the richness before its calibration.
    n_red : float
        Background-subtracted red-sequence weighted count of the redshift scan at ``z``.
    significance : float
        The scan's excess over its noise at the peak.
    has_peak : bool
        Whether the significance reaches ``min_significance``; when false, z and richness mean little.
    bcg_r_mag : float
        r magnitude of the BCG the richness counts (the brightest member at ``z`` within
        ``richness_bcg_radius`` of the detection); NaN when none is there.
    scan_excess, scan_noise : (m,) array
        The scan's background-subtracted count and its noise at every trial z (`percolate` compares them).
    """

    z: float
    z_err: float
    richness: float
    members: float
    n_red: float
    significance: float
    has_peak: bool
    bcg_r_mag: float = math.nan
    scan_excess: np.ndarray = field(default=None, repr=False, compare=False)
    scan_noise: np.ndarray = field(default=None, repr=False, compare=False)

    def as_row(self):
        """The catalogue columns (`ESTIMATE_COLUMNS`): ``z_est``, ``z_err``, ``richness`` and ``bcg_rmag`` (NaN
        without a red-sequence peak: there is no cluster red sequence to measure), ``rs_significance`` and
        ``rs_peak`` (``has_peak``)."""
        peak = self.has_peak
        return {"z_est": self.z if peak else math.nan, "z_err": self.z_err if peak else math.nan,
                "richness": self.richness if peak else math.nan, "rs_significance": self.significance,
                "rs_peak": peak, "bcg_rmag": self.bcg_r_mag if peak else math.nan}


def _proper_per_arcsec(z, cosmology):
    return cosmology.kpc_proper_per_arcmin(z).to_value(u.kpc / u.arcsec)


def _calibrated_richness(members, z, settings):
    """R_L* of a number of members at redshift z: ``log10 R = intercept + slope log10 N + z_slope (z -
    RICHNESS_Z_PIVOT)``; 0 for none."""
    if not members > 0:
        return 0.0
    return float(10.0 ** (settings.richness_intercept + settings.richness_slope * np.log10(members)
                          + settings.richness_z_slope * (z - RICHNESS_Z_PIVOT)))


def _richness(sources, separation, background, z, photometry, centre_xy, settings, cosmology):
    """Red-sequence members within r200, the calibrated richness R_L* at ``z`` (module docstring, step 4) and
    the r magnitude of the BCG they count (NaN without one).

    r200 follows the richness (WHL12), the aperture follows r200: iterated from R_L* = 20 to a fixed point.
    """
    per_arcsec = _proper_per_arcsec(z, cosmology)
    member = richness_members(sources, z, settings, cosmology)[:, 0]
    near = member & (separation <= settings.richness_bcg_radius.to_value(u.kpc) / per_arcsec)
    satellites = member.copy()
    bcg_r_mag = math.nan
    if near.any():  # the BCG: the brightest member near the centre
        bcg = np.flatnonzero(near)[np.argmin(np.asarray(sources["r_mag"])[near])]
        satellites[bcg], bcg_r_mag = False, float(sources["r_mag"][bcg])
    density = float(np.interp(z, background["z"], background["members"]))
    share = float(projected_fraction(settings.richness_aperture_r200))  # of the members within r200
    richness, number = _RICHNESS_START, 0.0
    for _ in range(_RICHNESS_ITERATIONS):
        r200 = r200_from_richness(richness).to_value(u.kpc) / per_arcsec  # arcsec
        radius = settings.richness_aperture_r200 * r200 * u.arcsec
        covered = aperture_coverage(photometry, centre_xy, radius)[0]
        held = share * aperture_coverage(photometry, centre_xy, radius, scale_radius=r200 / CONCENTRATION * u.arcsec)[0]
        expected = density * np.pi * radius.to_value(u.arcmin) ** 2 * covered
        excess = np.count_nonzero(satellites & (separation <= radius.value)) - expected
        number = float(near.any()) + max(excess, 0.0) / held
        updated = _calibrated_richness(number, z, settings)
        if not updated > 0 or abs(np.log10(updated / richness)) < _RICHNESS_TOLERANCE:
            return number, updated, bcg_r_mag
        richness = updated
    return number, richness, bcg_r_mag


def estimate_redshift_richness(photometry, centre, cosmology, background, settings):
    """Red-sequence redshift and richness of a cluster candidate at ``centre`` (module docstring).

    Parameters
    ----------
    photometry : `Photometry`
        Sources of a cutout around the detection (`measure_photometry`).
    centre : `~astropy.coordinates.SkyCoord`
        The detection's position; it must lie inside the cutout.
    cosmology : `~astropy.cosmology.FLRW`
        For proper radii, distance moduli and L*.
    background : `~astropy.table.Table`
        `measure_background` of the survey, made with the same ``settings``.
    settings : `RedSequenceSettings`

    Returns
    -------
    RedSequenceEstimate

    Raises
    ------
    ValueError
        The centre lies outside the cutout, or the background was measured on another redshift grid.
    """
    z_grid = settings.z_grid
    if len(background) != len(z_grid) or not np.allclose(background["z"], z_grid):
        raise ValueError("background: measured on another redshift grid than settings.z_grid; measure it again "
                         "with these settings")
    x0, y0 = (float(v) for v in photometry.wcs.world_to_pixel(centre))
    ny, nx = photometry.shape
    if not (-0.5 <= x0 < nx - 0.5 and -0.5 <= y0 < ny - 0.5):
        raise ValueError(f"centre {centre.to_string('decimal', precision=5)} lies outside the {nx} x {ny} px "
                         "cutout")
    sources = counted_sources(photometry, settings)
    separation = centre.separation(SkyCoord(sources["ra"], sources["dec"], unit=u.deg)).to_value(u.arcsec)

    # 1. Scan: background-subtracted red-sequence count within scan_radius at every trial z.
    per_arcsec = _proper_per_arcsec(z_grid, cosmology)
    scan_angle = settings.scan_radius.to_value(u.kpc) / per_arcsec  # arcsec, per trial z
    weights = red_sequence_weights(sources, z_grid, settings.bright_mag, settings.faint_mag,
                                   settings.colour_error_floor, cosmology)
    weights = weights * (separation[:, None] <= scan_angle[None, :])
    area = np.pi * (scan_angle / 60.0) ** 2 * aperture_coverage(photometry, (x0, y0), scan_angle * u.arcsec)
    excess = weights.sum(axis=0) - np.asarray(background["scan"]) * area
    noise = np.sqrt((weights**2).sum(axis=0) + np.asarray(background["scan_squared"]) * area)
    significance = np.where(noise > 0, excess / np.where(noise > 0, noise, 1.0), 0.0)
    peak = int(np.argmax(excess))
    z = float(z_grid[peak])

    # 2. Refine: maximise the colour likelihood of the members (weights at z times purity), twice more.
    z_err = np.nan
    for _ in range(_REFINE_ITERATIONS):
        z, z_err = _refine(sources, separation, background, z, photometry, (x0, y0), settings, cosmology)

    # 3. Richness: the red-sequence members within r200 (r200 iterated with it), mapped onto the catalogue's R_L*.
    members, richness, bcg_r_mag = _richness(sources, separation, background, z, photometry, (x0, y0), settings,
                                             cosmology)
    scan_at_z = float(np.interp(z, z_grid, excess))
    z_err = float(np.hypot(z_err, settings.z_error_floor))
    return RedSequenceEstimate(z=z, z_err=z_err, richness=float(richness),
                               members=float(members), n_red=scan_at_z,
                               significance=float(significance[peak]),
                               has_peak=bool(significance[peak] >= settings.min_significance),
                               bcg_r_mag=bcg_r_mag, scan_excess=excess, scan_noise=noise)


def _refine(sources, separation, background, z, photometry, centre_xy, settings, cosmology):
    """One refinement step: members at ``z``, then the z maximising their colour likelihood, and its error."""
    scan_angle = settings.scan_radius.to_value(u.kpc) / _proper_per_arcsec(z, cosmology)
    weights = red_sequence_weights(sources, z, settings.bright_mag, settings.faint_mag,
                                   settings.colour_error_floor, cosmology)[:, 0] * (separation <= scan_angle)
    area = np.pi * (scan_angle / 60.0) ** 2 * aperture_coverage(photometry, centre_xy, scan_angle * u.arcsec)[0]
    total = weights.sum()
    if not total > 0:
        return z, np.nan
    purity = np.clip(1.0 - np.interp(z, background["z"], background["scan"]) * area / total, 0.0, 1.0)
    members = sources[weights > 0]
    probability = weights[weights > 0] * purity
    trial = np.arange(max(z - _REFINE_HALF_WIDTH, settings.z_grid[0]),
                      min(z + _REFINE_HALF_WIDTH, settings.z_grid[-1]) + _REFINE_STEP / 2, _REFINE_STEP)
    # Colour likelihood only: the members are fixed, so the magnitude window is open.
    likelihood = red_sequence_weights(members, trial, -np.inf, np.inf, settings.colour_error_floor, cosmology)
    # The weights are relative to the intrinsic scatter; the likelihood's normalisation is 1 / width.
    scatter_gr, scatter_ri = red_sequence_scatter(trial)
    floor = settings.colour_error_floor
    normalisation = np.log(np.hypot(scatter_gr, floor) * np.hypot(scatter_ri, floor))
    log_likelihood = (probability[:, None] * (np.log(np.maximum(likelihood, 1e-300))
                                              - normalisation[None, :])).sum(axis=0)
    best = int(np.argmax(log_likelihood))
    # 1-sigma: where -2 ln L has risen by 1 on either side of the maximum.
    within = trial[-2.0 * (log_likelihood - log_likelihood[best]) <= 1.0]
    z_err = max((within.max() - within.min()) / 2.0, _REFINE_STEP / 2)
    return float(trial[best]), float(z_err)


def _profile_in_circles(offset, scale_radius, radius):
    """A projected NFW profile of ``scale_radius`` (arcsec) integrated over circles of ``radius`` ((m,) arcsec)
    ``offset`` arcsec from its centre; arbitrary normalisation."""
    area, unit_x, unit_y = _unit_disc(_SHARE_RADII, _SHARE_ANGLES)
    x, y = unit_x[None, :] * radius[:, None] + offset, unit_y[None, :] * radius[:, None]
    return (_nfw_surface_density(np.hypot(x, y) / scale_radius) * area).sum(axis=1)


def percolate(detections, merge_radius, cosmology, settings, min_drop):
    """A survey's detections with each red-sequence peak tested against the richer clusters around it.

    A cluster's bright members far from its centre can be detected on their own, beyond the survey's merging
    radius; the red sequence under such a piece is the cluster's outskirts, so it would be confirmed and listed.
    As redMaPPer percolates its catalogue, the detections with a peak are taken in descending richness (the
    estimate extrapolated to r200, so less cut by a tile's edges than the scan; ties by the scan's peak
    excess). From each one's scan (``scan_excess``: the background-subtracted count at every trial z) is
    subtracted what every richer cluster already kept, more than ``merge_radius`` (proper, at that cluster's
    z) away, puts into its aperture: that cluster's own scan times the share of its projected NFW profile
    (r200 of its richness) in this aperture over the share in its own. The peak and significance are then
    those of what is left. A piece's scan is mostly its cluster's profile and loses its peak; a neighbour
    cluster keeps its own concentrated members, and one at another redshift loses little at its own.
    Detections within ``merge_radius`` of each other are one cluster (the survey merges them): none subtracts
    another. A peak is only lost when the richer clusters explain at least ``min_drop`` sigma of it
    (``DEEPCEE.SURVEY.PERCOLATE_MIN_DROP``): a poor cluster just above ``min_significance`` keeps its peak
    beside a neighbour whose profile's tail takes a sigma or two. Every tile's detections take part, so a piece
    and its cluster may lie in different tiles.

    Parameters
    ----------
    detections : `~astropy.table.Table`
        ``ra``, ``dec`` and the estimator's columns (`ESTIMATE_COLUMNS` and `SCAN_COLUMNS`, as
        `RedSequenceEstimator.estimate` gives them).
    merge_radius : `~astropy.units.Quantity` [length]
    cosmology : `~astropy.cosmology.FLRW`
    settings : `RedSequenceSettings`
        Those of the estimates (their trial redshifts).
    min_drop : float
        The least fall of significance (sigma) that takes a peak.

    Returns
    -------
    `~astropy.table.Table`
        A copy: ``rs_significance`` and ``rs_peak`` of what is left of each peak (unchanged where less than
        ``min_drop`` was taken and that would have taken the peak), no z or richness where no peak is left
        (`RedSequenceEstimate.as_row`).
    """
    table = Table(detections, copy=True)
    peaked = np.flatnonzero(np.asarray(table["rs_peak"], dtype=bool))
    if len(peaked) < 2:
        return table
    excess = np.asarray(table["scan_excess"], dtype=float)
    noise = np.asarray(table["scan_noise"], dtype=float)
    if excess.shape[1:] != settings.z_grid.shape:
        raise ValueError(f"scan_excess: {excess.shape[1:]} trial redshifts, the settings have {len(settings.z_grid)}")
    z, richness = np.asarray(table["z_est"], dtype=float), np.asarray(table["richness"], dtype=float)
    coords = SkyCoord(np.asarray(table["ra"], dtype=float), np.asarray(table["dec"], dtype=float), unit=u.deg)
    per_arcsec = np.full(len(table), np.nan)
    per_arcsec[peaked] = _proper_per_arcsec(z[peaked], cosmology)
    scale_radius = np.full(len(table), np.nan)  # arcsec
    scale_radius[peaked] = (r200_from_richness(np.maximum(richness[peaked], 1.0)).to_value(u.kpc)
                            / per_arcsec[peaked] / CONCENTRATION)
    scan_angle = settings.scan_radius.to_value(u.kpc) / _proper_per_arcsec(settings.z_grid, cosmology)
    # A richer cluster reaches as far as its members (MAX_RADIUS_R200 r200) plus the widest scan: only pairs
    # closer than that are compared.
    reach = MAX_RADIUS_R200 * CONCENTRATION * scale_radius + scan_angle.max()
    first, second, separation, _ = coords[peaked].search_around_sky(coords[peaked], np.nanmax(reach) * u.arcsec)
    neighbours = {}
    for i, j, angle in zip(peaked[first], peaked[second], separation.to_value(u.arcsec)):
        if i != j and angle <= reach[i]:
            neighbours.setdefault(int(j), []).append((int(i), float(angle)))
    own = {}  # each richer cluster's profile in its own scan apertures
    # Shares vary slowly with the aperture: computed at a few radii, interpolated to every trial z's.
    share_radii = np.geomspace(scan_angle.min(), scan_angle.max(), _SHARE_APERTURES)
    order = sorted(peaked, key=lambda k: (-richness[k], -float(np.max(excess[k]))))
    is_cluster = np.zeros(len(table), dtype=bool)  # the richest kept detection of each cluster
    significance = np.asarray(table["rs_significance"], dtype=float).copy()
    has_peak = np.asarray(table["rs_peak"], dtype=bool).copy()
    for k in order:
        contamination = np.zeros(len(settings.z_grid))
        same_cluster = False
        for a, angle in neighbours.get(int(k), []):
            if not is_cluster[a]:
                continue
            if angle * per_arcsec[a] <= merge_radius.to_value(u.kpc):
                same_cluster = True
                continue
            if a not in own:
                own[a] = _profile_in_circles(0.0, scale_radius[a], share_radii)
            here = _profile_in_circles(angle, scale_radius[a], share_radii)
            share = np.interp(scan_angle, share_radii, here / own[a])
            contamination += share * np.clip(excess[a], 0.0, None)
        left = excess[k] - contamination
        peak = int(np.argmax(left))
        remaining = left[peak] / noise[k, peak] if noise[k, peak] > 0 else 0.0
        if remaining >= settings.min_significance or significance[k] - remaining >= min_drop:
            significance[k] = remaining
            has_peak[k] = remaining >= settings.min_significance
        is_cluster[k] = has_peak[k] and not same_cluster
    table["rs_significance"] = significance
    table["rs_peak"] = has_peak
    for name in ("z_est", "z_err", "richness"):
        table[name][~has_peak] = np.nan
    return table


def deredden(photometry, ebv):
    """``photometry`` with its sources' magnitudes and colours corrected for Galactic reddening ``ebv``
    (E(B-V) on the SFD scale, one per source or one for all; `EXTINCTION_PER_EBV`); errors are unchanged."""
    sources = photometry.sources.copy()
    ebv = np.broadcast_to(np.asarray(ebv, dtype=float), (len(sources),))
    extinction = {band: coefficient * ebv for band, coefficient in EXTINCTION_PER_EBV.items()}
    sources["r_mag"] = sources["r_mag"] - extinction["r"]
    sources["i_mag"] = sources["i_mag"] - extinction["i"]
    sources["g_r"] = sources["g_r"] - (extinction["g"] - extinction["r"])
    sources["r_i"] = sources["r_i"] - (extinction["r"] - extinction["i"])
    return replace(photometry, sources=sources)


@dataclass(frozen=True)
class RedSequenceEstimator:
    """Redshift and richness of every detection in a flux cutout, as catalogue columns.

    Everything a survey worker or the evaluator needs, picklable (Dask sends it to the workers once per
    run); build it with `from_cfg`.

    Attributes
    ----------
    settings : `RedSequenceSettings`
    cosmology : `~astropy.cosmology.FLRW`
    background : `~astropy.table.Table` or None
        `read_background` of the settings' grid; None for an estimator that only measures photometry (one
        that measures a background: `from_cfg` with ``with_background=False``).
    dust_map_dir : str
        Folder of the SFD dust map: sources are dereddened (`deredden`) and each detection gets its E(B-V)
        (column ``ebv``); "" (default) for imaging without Galactic reddening (the synthetic sky).
    background_file : str
        Where ``background`` was read from; "" for the packaged one (the synthetic sky's).
    """

    settings: RedSequenceSettings
    cosmology: object
    background: Table
    dust_map_dir: str = ""
    background_file: str = ""

    @classmethod
    def from_cfg(cls, cfg, with_background=True):
        """Settings of ``cfg.DEEPCEE.REDSHIFT``, cosmology of ``DEEPCEE.COSMOLOGY``, background of
        ``DEEPCEE.REDSHIFT.BACKGROUND_FILE`` (empty: `DEFAULT_BACKGROUND_FILE`; not read without
        ``with_background``: measuring a background needs none, and the file may be the one to be written or
        made with other settings), dust map of ``DUST_MAP_DIR`` (`check_dust_map`)."""
        settings = RedSequenceSettings.from_cfg(cfg)
        path = cfg.DEEPCEE.REDSHIFT.BACKGROUND_FILE or DEFAULT_BACKGROUND_FILE
        dust_map_dir = cfg.DEEPCEE.REDSHIFT.DUST_MAP_DIR
        if dust_map_dir:  # refused here, before a survey or an evaluation starts, not in its workers
            dust_map_dir = str(check_dust_map(dust_map_dir).resolve())
        background = read_background(path, settings) if with_background else None
        return cls(settings, cosmology_from_cfg(cfg), background, dust_map_dir,
                   cfg.DEEPCEE.REDSHIFT.BACKGROUND_FILE)

    def calibration_warnings(self, source):
        """What this estimate lacks on the real sky of an imaging source (`ImagingSource.real_sky`), as
        messages, also logged as warnings: the packaged background is the synthetic sky's, and colours are not
        dereddened without a dust map. No message for the simulator's imaging."""
        real = source.real_sky()
        if real is None:
            return []
        messages = []
        if not self.background_file:
            messages.append(f"{real}: the red-sequence background is the synthetic sky's (DEEPCEE.REDSHIFT."
                            "BACKGROUND_FILE empty); real SDSS sky has 1.3-2x its red-sequence galaxies at z 0.2-0.5. "
                            "Measure this imaging's with tools/measure_background.py and set BACKGROUND_FILE")
        if not self.dust_map_dir:
            messages.append(f"{real}: colours are not corrected for Galactic reddening (DEEPCEE.REDSHIFT.DUST_MAP_DIR "
                            "empty): z_est runs high by ~0.4 E(B-V). Set DUST_MAP_DIR to the SFD map (README, "
                            "\"Galactic reddening\")")
        for message in messages:
            logger.warning(message)
        return messages

    def estimate(self, images, wcs, ra, dec, source="image", covered=None):
        """The `ESTIMATE_COLUMNS` of detections at ``(ra, dec)`` in one flux cutout.

        The photometry is measured once (and not at all without detections). A detection outside the cutout,
        or a cutout whose photometry cannot be measured (a blank, constant image), gets NaN and no peak, with
        a warning naming ``source``: the detections themselves stay.

        Parameters
        ----------
        images : dict of str -> (ny, nx) array
            g, r, i flux images, nanomaggies per pixel (`deepcee_d2.data.frames.Cutout.images`).
        wcs : `~astropy.wcs.WCS`
            Their celestial WCS.
        ra, dec : array_like
            Detection positions (deg).
        source : str
            Name of the cutout in messages.
        covered : (ny, nx) bool array, optional
            The imaged pixels (`deepcee_d2.data.frames.Cutout.covered`); None: all.

        Returns
        -------
        `~astropy.table.Table`
            One row per detection, in order, with the `SCAN_COLUMNS` (for `percolate`; with ``dust_map_dir``,
            its ``ebv`` too); its meta holds the cutout's `Photometry.source_density` under
            `SOURCE_DENSITY_KEY` when the photometry was measured.
        """
        ra, dec = np.atleast_1d(np.asarray(ra, dtype=float)), np.atleast_1d(np.asarray(dec, dtype=float))
        table = no_estimates(len(ra))
        for name, description in zip(SCAN_COLUMNS, ("red-sequence scan: background-subtracted count at each trial z",
                                                    "its noise")):
            table[name] = np.full((len(ra), len(self.settings.z_grid)), np.nan, dtype=np.float32)
            table[name].description = description
        if self.dust_map_dir:
            table["ebv"] = galactic_reddening(SkyCoord(ra * u.deg, dec * u.deg), self.dust_map_dir)
            table["ebv"].description = "Galactic E(B-V) (SFD map) the photometry was dereddened by, here"
        if not len(ra):
            return table
        try:
            photometry = self.photometry(images, wcs, source, covered)
        except ValueError as error:
            logger.warning("%s: no redshift or richness for its %d detections: %s", source, len(ra), error)
            return table
        table.meta[SOURCE_DENSITY_KEY] = photometry.source_density
        for index, centre in enumerate(SkyCoord(ra * u.deg, dec * u.deg)):
            try:
                estimate = estimate_redshift_richness(photometry, centre, self.cosmology, self.background,
                                                      self.settings)
            except ValueError as error:  # the centre lies outside the cutout
                logger.warning("%s: no redshift or richness at RA %.5f, Dec %.5f: %s", source, ra[index],
                               dec[index], error)
                continue
            for name, value in estimate.as_row().items():
                table[name][index] = value
            table["scan_excess"][index] = estimate.scan_excess
            table["scan_noise"][index] = estimate.scan_noise
        return table

    def photometry(self, images, wcs, source="image", covered=None):
        """`measure_photometry` of one flux cutout (arguments as `estimate`), dereddened (`deredden`) by the
        dust map's E(B-V) at each source when there is one: the sources the estimates and a survey's own
        background (`deepcee_d2.survey.background`) are made of."""
        photometry = measure_photometry(images, wcs, self.settings, source, covered)
        if not self.dust_map_dir:
            return photometry
        sources = photometry.sources
        return deredden(photometry, galactic_reddening(SkyCoord(sources["ra"], sources["dec"], unit=u.deg),
                                                       self.dust_map_dir))

    def source_density(self, images, wcs, source="image", covered=None):
        """`detected_source_density` of one flux cutout (arguments as `estimate`): for tiles without
        detections, whose crowding the survey's mask needs too; NaN, with a warning naming ``source``, when
        its sources cannot be detected."""
        try:
            return detected_source_density(images, wcs, self.settings, source, covered)
        except ValueError as error:
            logger.warning("%s: no source density: %s", source, error)
            return math.nan


def no_estimates(n):
    """The `ESTIMATE_COLUMNS` of ``n`` detections without an estimate (NaN, no peak), described."""
    table = Table({name: np.full(n, value) for name, value in _NO_ESTIMATE.items()})
    table["z_est"].description = "red-sequence redshift (NaN without a red-sequence peak)"
    table["z_err"].description = "1-sigma error of z_est"
    table["richness"].description = "red-sequence richness, calibrated onto WHL12's R_L*"
    table["rs_significance"].description = "red-sequence excess over its noise at the best trial z"
    table["rs_peak"].description = "a red-sequence peak was found (rs_significance >= MIN_SIGNIFICANCE)"
    table["bcg_rmag"].description = "r magnitude of the brightest red-sequence member within RICHNESS_BCG_RADIUS_KPC"
    return table

#!/usr/bin/env python
"""Is the synthetic sky like the real one? The same statistics measured on real SDSS frames and on the
simulator's twins of those fields, printed side by side as a Markdown table (progress on stderr).

  PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_sky_realism.py [--real ../shared/data/sdss]
      [--synthetic TWINS | --work /tmp/sky_realism [--twin-skies N]] [--exclude-crowded 002583-2-0136]

- **Skies.** ``--real``: SDSS corrected frames ``frame-{g,r,i}-RRRRRR-C-FFFF.fits.bz2`` (nanomaggies, each band
  with its own rotated WCS). ``--synthetic``: `deepcee_d2.synthetic.write_survey` fields without clusters, one
  per real field at the same sky centre and pixel size (``<root>/f000/frame-g.fits``...); by default made
  under ``--work/twins`` as ``bench_injection.py`` makes them (`bench_injection.make_twins`, seed 1), and with
  ``--twin-skies N`` N random skies per real field (seeds 1..N, ``--work/twins_seedK``), the synthetic column
  summarised over all of them: one sky per field leaves rows such as counts in cells to one draw. Frames
  make fields by name as the survey groups them (`deepcee_d2.survey.tiling.group_fields`); each twin is paired
  with the real field whose r centre is nearest (within 10"). The field named by ``--exclude-crowded`` (a
  substring of its name, e.g. ``frame-002583-2-0136``) and its twin are left out of the galaxy rows (1-3) but
  kept for the PSF, depth and background rows.
- **One measurement for both skies** (`measure_field`), every frame in its own pixels (nothing resampled):
  each frame's sky level and noise are the 3-sigma clipped median and standard deviation of its pixels with
  the sources masked (photutils segmentation at 2 sigma, 5 px, grown by 11 px); sources are detected on the r
  frame and get their total r (Kron) magnitude from the package's `deepcee_d2.redsequence.measure_photometry`
  (run on the r frame alone: it wants all bands on one grid, and SDSS bands each have their own WCS); the g, r
  and i fluxes in the package's colour aperture (``DEEPCEE.REDSHIFT.APERTURE_RADIUS_ARCSEC``, 2") are measured
  at the r positions taken through each band's WCS, with errors from the sky noise, a flux below its error set
  to its error as `measure_photometry` does. Only sources whose apertures lie inside all three frames count,
  and the area is that footprint's (r pixels whose 3" surroundings lie in every band's frame).
- **Stars and galaxies**: the package's `deepcee_d2.psf.separate_point_sources` (the concentration ``c =
  m(1") - m(3")`` in r against the frame's own stellar locus ``c*``; a *galaxy* above ``c* + 3 sqrt(w^2 +
  sigma_c^2)``, a *point source* within it), on the aperture fluxes of each frame in its own pixels, the
  red-sequence estimator's star/galaxy separation.

Rows (per-frame or per-field values, summarised over the fields of each sky as median (min-max)):

1. Galaxy counts per deg^2 per mag at r (Kron) 18-19, 19-20 and 20-21 over the footprint.
2. Median g - r and r - i (aperture colours) of the galaxies with r < 21; again aperture-corrected, as
   `measure_photometry` does with ``DEEPCEE.REDSHIFT.APERTURE_CORRECTION`` (`field_aperture_corrections`):
   each band's fluxes divided by its share of a star's light within 3 aperture radii (6") that lies in the
   aperture, relative to r's, the median over the field's isolated point sources of 15 < r whose r S/N in
   the 6" circle is >= 50 (each band at the star's position through its own WCS). The seeing of each band
   is then out of the colours, and the rows compare the galaxies (row 5 compares the seeing).
3. Counts in cells: variance / mean of the number of r < 21 galaxies in square 2' cells laid on the r frame
   from its centre (the whole cells inside the footprint; 1 for a Poisson sky).
4. The r PSF: FWHM (arcsec) and beta of `astropy.modeling.models.Moffat2D` fitted to 25 x 25 px stamps of
   point sources, and the ellipticity ``1 - b/a`` of an elliptical `Gaussian2D` fitted to the same stamps;
   the median over the stars of a frame. Stars: point sources (above) with no other r detection within 6"
   (15 px), peaking above 50 sigma of the frame's sky noise and below half the saturation level (SDSS's 25,000 DN
   of `deepcee_d2.synthetic.instrument.SATURATION_DN`, times the frame's ``NMGY``), the 40 brightest fitted
   per frame, at least 5 needed. Every band is fitted, at the r stars' positions through its WCS.
5. g / r and i / r ratios of these FWHMs per field.
6. 5-sigma point-source depth per band: a Gaussian PSF of the frame's Moffat FWHM measured in its optimal
   circular aperture (radius ``R = 1.585 s = 0.673 FWHM``, s = FWHM / 2.355, which maximises
   ``(1 - exp(-R^2 / 2 s^2)) / R``; it holds 71.5 % of the light): ``m5 = 22.5 - 2.5 log10(5 sigma_sky
   sqrt(pi R^2) / 0.715)``, sigma_sky the clipped per-pixel noise in nanomaggies, R in pixels.
7. Point sources. (a) The stellar locus: the median over point sources of 16 < r < 19.5 (unsaturated, S/N
   >= 20 in every band's colour aperture) and 0.2 < g - r < 1.2 of their r - i less the SDSS main-sequence
   locus' at their g - r (`main_sequence_r_i`, Juric et al. 2008, eq. 1), both colours
   aperture-corrected (row 2: a star's colours are then its total light's). Real stars sit above it by their
   Galactic reddening (E(r - i) ~ 0.6 E(B - V), 0.01-0.03 at high latitude). (b) Red point sources per deg^2:
   point sources with r > 15 (unsaturated) that the package's red-sequence estimator would count as richness
   members at some 0.10 <= z <= 0.20 (`richness_members`, step 0.005: r within m*(z) - 3 .. m*(z) + 0.94 and
   a colour chi^2 <= 9.21 against the ridge line at its i magnitude, intrinsic scatter and colour error in
   quadrature). The ridge line runs from g - r = 0.94, r - i = 0.41 (z = 0.1) to 1.24, 0.48 (z = 0.2); the box
   printed under the table. High-latitude fields and the crowded field in separate rows.
8. Background structure per band: max - min of the 256 x 256 px block medians (photutils `Background2D`,
   3-sigma clipped, sources masked; a block more than 75 % masked takes photutils' interpolation of its
   neighbours), nanomaggies per pixel.
9. The r PSF's aureole: of the light of bright stars within 12" (30 SDSS pixels) of their centres, the
   fraction at 3.2-12" (8-30 px), where a Moffat core of beta ~3 holds a few per mille and the aureole most
   of it; summed over the point sources of 13.5 < r < 17.5 (Kron) with no other source within 12" and a
   peak below half the saturation level (so the brightest weigh most, as their rings are the least noisy), at
   least 3 needed. Light in 1 px rings: 2.5-sigma clipped means (a neighbour's light is clipped), the star's
   local sky the clipped median of the ring at 18-24" (45-60 px); high-latitude fields only (the crowded
   field's rings are full of neighbours).

Photometry settings are the package defaults (`deepcee_d2.config.load_config`). About 2.5 minutes on one core for
four fields per sky (the crowded field takes longest). A field whose stellar locus is wider than 0.1 mag (the
crowded one: neighbours inside the 3" aperture) is named under the table: its star/galaxy separation fails.
"""
import argparse
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.stats import SigmaClip, sigma_clipped_stats
from astropy.table import Table
from astropy.utils.exceptions import AstropyUserWarning
from astropy.wcs.utils import proj_plane_pixel_area, proj_plane_pixel_scales

from bench_injection import make_twins  # this folder is on the path when run as a script
from deepcee_d2.config import load_config
from deepcee_d2.cosmology import DEFAULT_COSMOLOGY
from deepcee_d2.data.frames import LocalFITSSource, read_image
from deepcee_d2.psf import CONCENTRATION_RADII_ARCSEC, MAX_CONCENTRATION_LOCUS_WIDTH, separate_point_sources
from deepcee_d2.redsequence import (_PSF_REFERENCE_APERTURES, _PSF_STAR_SNR, RedSequenceSettings, measure_photometry,
                                    richness_members)
from deepcee_d2.sky import centre_and_radius
from deepcee_d2.survey.tiling import group_fields
from deepcee_d2.synthetic.colours import red_sequence, red_sequence_scatter
from deepcee_d2.synthetic.instrument import (BANDS, PIXEL_SCALE, SATURATION_DN, WING_BETA, WING_FRACTION,
                                             WING_SCALE_RADIUS, ZERO_POINT, moffat, moffat_scale_radius)

REPO = Path(__file__).resolve().parents[1]
TWIN_MATCH = 10 * u.arcsec  # twins are centred on their real field's r frame
# Sky: source mask, blocks.
MASK_NSIGMA, MASK_NPIXELS, MASK_GROW_PX = 2.0, 5, 11
BLOCK_PX = 256
BLOCK_MAX_MASKED_PERCENT = 75.0  # a block this masked (a bright star, the crowded field) has no sky to speak of
CONCENTRATION_RADII = CONCENTRATION_RADII_ARCSEC * u.arcsec
# Rows 1-3.
COUNT_BINS = ((18.0, 19.0), (19.0, 20.0), (20.0, 21.0))
GALAXY_R_LIMIT = 21.0
CELL_SIDE = 2 * u.arcmin
FOOTPRINT_STEP_PX = 8  # the footprint is sampled on every 8th r pixel: 0.1 % of its area
# Rows 4-6: PSF stars and depth.
STAR_PEAK_SNR = 50.0
STAR_ISOLATION = 6 * u.arcsec  # 15 SDSS pixels
STAMP_HALF = 12
MAX_PSF_STARS = 40
MIN_PSF_STARS = 5
UNSATURATED_DN = 0.5 * SATURATION_DN
GUESS_FWHM = 1.4 * u.arcsec
GUESS_BETA = 3.5  # SDSS PSFs are about Moffat beta 3-4
FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))
# The Gaussian PSF's optimal aperture: R / s maximising (1 - exp(-R^2 / 2 s^2)) / R, and the light inside it.
OPTIMAL_RADIUS_SIGMA = 1.5852
OPTIMAL_FRACTION = 1.0 - np.exp(-0.5 * OPTIMAL_RADIUS_SIGMA**2)
DEPTH_NSIGMA = 5.0
MAG_PER_LN = 2.5 / np.log(10.0)  # magnitude error of a relative flux error
# Row 9: the PSF's aureole (radii in arcsec).
AUREOLE_R_RANGE = (13.5, 17.5)
AUREOLE_RADII = (3.2, 12.0)
AUREOLE_SKY_RADII = (18.0, 24.0)
AUREOLE_ISOLATION = 12 * u.arcsec
AUREOLE_CLIP_SIGMA = 2.5
AUREOLE_MIN_STARS = 3  # a 13 x 9' field holds 3-9 such stars at high latitude
PIXEL_SCALE_ARCSEC = PIXEL_SCALE.to_value(u.arcsec)  # the rings' pixels (SDSS frames and their twins)
AUREOLE_FIT_RADII = (3.2, 10.0)  # arcsec: inside, the core's shape rules; beyond, the rings are sky noise
AUREOLE_PRINT_PX = (8, 10, 12, 15, 18, 21, 25)
# Row 7.
RED_SEQUENCE_Z = np.round(np.arange(0.10, 0.20 + 1e-9, 0.005), 3)
RED_STAR_R_MIN = 15.0  # SDSS point sources saturate at r ~ 14
LOCUS_STAR_R_RANGE = (16.0, 19.5)
LOCUS_STAR_G_R_RANGE = (0.2, 1.2)  # where the locus' r - i is well defined by g - r (it turns vertical at M types)
LOCUS_STAR_MIN_SNR = 20.0
# Juric et al. (2008) eq. 1: g - r = A (1 - exp(-(c3 x^3 + c2 x^2 + c1 x + c0))), x = r - i; tabulated for the
# inverse from r - i = -0.2 (bluer than any main-sequence star) to 2.5 (late M).
LOCUS_AMPLITUDE, LOCUS_COEFFICIENTS = 1.39, (4.9, 2.45, 1.68, 0.050)
LOCUS_R_I = np.linspace(-0.2, 2.5, 2701)


@dataclass
class SkyFrame:
    """One frame, sky-subtracted, with what its sky says.

    Attributes
    ----------
    path : Path
    band : str
    wcs : `~astropy.wcs.WCS`
    image : (ny, nx) float32 array
        Nanomaggies per pixel, the clipped sky median subtracted.
    noise : float
        Clipped standard deviation of the unmasked pixels, nanomaggies per pixel.
    block_range : float
        max - min of the 256 px block medians, nanomaggies per pixel.
    nmgy_per_dn : float
        The header's ``NMGY``.
    """

    path: Path
    band: str
    wcs: object
    image: np.ndarray
    noise: float
    block_range: float
    nmgy_per_dn: float

    @property
    def scale(self):
        """Mean pixel side (arcsec), from the WCS."""
        return float(np.mean(proj_plane_pixel_scales(self.wcs.celestial)) * 3600.0)

    def pixels(self, angle):
        """An angle (Quantity) in this frame's pixels."""
        return float(angle.to_value(u.arcsec)) / self.scale


def read_sky_frame(frame):
    """`SkyFrame` of one frame of `LocalFITSSource.scan`; ValueError naming the file for NaN pixels or no NMGY."""
    from photutils.background import Background2D, MedianBackground
    from photutils.segmentation import detect_sources

    image, header = read_image(frame.path)
    if not np.isfinite(image).all():
        raise ValueError(f"{frame.path}: {np.count_nonzero(~np.isfinite(image))} NaN or infinite pixels")
    if "NMGY" not in header:
        raise ValueError(f"{frame.path}: no NMGY header key (nanomaggies per DN), needed for the saturation level")
    _, median, std = sigma_clipped_stats(image, sigma=3.0, maxiters=5)
    segments = detect_sources(image - median, MASK_NSIGMA * std, n_pixels=MASK_NPIXELS)
    mask = np.zeros(image.shape, bool) if segments is None else segments.make_source_mask(size=MASK_GROW_PX)
    _, sky, noise = sigma_clipped_stats(image, mask=mask, sigma=3.0, maxiters=5)
    background = Background2D(image, BLOCK_PX, mask=mask, filter_size=1, exclude_percentile=BLOCK_MAX_MASKED_PERCENT,
                              sigma_clip=SigmaClip(sigma=3.0, maxiters=5), bkg_estimator=MedianBackground())
    blocks = background.background_mesh
    return SkyFrame(frame.path, frame.band, frame.wcs, image - np.float32(sky), float(noise),
                    float(np.nanmax(blocks) - np.nanmin(blocks)), float(header["NMGY"]))


def read_fields(root):
    """The fields under ``root``: ``[(name, {band: frame})]`` (frames of `LocalFITSSource.scan` grouped by the
    survey's `group_fields`), sorted by name, and their r frames' centres; ValueError naming the file for an
    unusable frame, a doubled band frame or a field without all of g, r, i."""
    root = Path(root)
    frames, problems = LocalFITSSource(root).scan()
    if problems:
        raise ValueError(f"{root}: unusable frames: {problems}")
    fields = sorted(group_fields(frames, root).items())
    if not fields:
        raise ValueError(f"{root}: no frames")
    for name, field in fields:
        missing = [band for band in BANDS if band not in field]
        if missing:
            raise ValueError(f"{root}: field {name} has no {', '.join(missing)} frame")
    centres = SkyCoord([centre_and_radius(field["r"].wcs, field["r"].shape)[0] for _, field in fields])
    return fields, centres


def aperture_fluxes(frame, coords, radius):
    """Fluxes (nanomaggies) in circles of ``radius`` around ``coords`` in ``frame``'s pixels, and their error from
    the sky noise."""
    from photutils.aperture import CircularAperture, aperture_photometry

    xy = np.column_stack(frame.wcs.world_to_pixel(coords))
    aperture = CircularAperture(xy, r=frame.pixels(radius))
    flux = np.asarray(aperture_photometry(frame.image, aperture)["aperture_sum"], dtype=float)
    return flux, frame.noise * np.sqrt(aperture.area)


def in_footprint(frames, coords, margin):
    """Whether each position lies at least ``margin`` (angle) inside every frame of ``frames``."""
    inside = np.ones(len(coords), bool)
    for frame in frames.values():
        x, y = frame.wcs.world_to_pixel(coords)
        ny, nx = frame.image.shape
        edge = frame.pixels(margin) + 0.5
        inside &= (x >= edge - 0.5) & (x <= nx - 0.5 - edge) & (y >= edge - 0.5) & (y <= ny - 0.5 - edge)
    return inside


def footprint_grid(shape):
    """``(y, x)`` of every `FOOTPRINT_STEP_PX`-th pixel of an image of ``shape``, where the footprint is sampled."""
    half = FOOTPRINT_STEP_PX // 2
    return np.mgrid[half:shape[0]:FOOTPRINT_STEP_PX, half:shape[1]:FOOTPRINT_STEP_PX]


def magnitude(flux):
    return ZERO_POINT - 2.5 * np.log10(flux)


def field_catalogue(frames, settings):
    """Sources of one field (module docstring): r position, Kron r, aperture colours, concentration.

    Returns
    -------
    sources : `~astropy.table.Table`
        Inside the footprint: ``ra``, ``dec`` (deg), ``x``, ``y`` (r pixels), ``r_mag``, ``i_mag``, ``g_r``,
        ``r_i`` and their errors, ``concentration`` and ``concentration_err`` (mag).
    footprint : (m, n) bool array
        The footprint on every `FOOTPRINT_STEP_PX`-th r pixel.
    area : `~astropy.units.Quantity` [deg^2]
    """
    reference = frames["r"]
    # The package's detection and Kron magnitudes, on r alone: measure_photometry wants its bands on one grid.
    detected = measure_photometry({band: reference.image for band in BANDS}, reference.wcs, settings,
                                  str(reference.path)).sources
    coords = SkyCoord(detected["ra"], detected["dec"], unit=u.deg)
    margin = max(CONCENTRATION_RADII[-1], settings.aperture_radius)
    keep = in_footprint(frames, coords, margin)
    sources, coords = detected["ra", "dec", "x", "y", "r_mag", "r_mag_err"][keep], coords[keep]
    relative = {}
    flux = {}
    for band, frame in frames.items():
        flux[band], error = aperture_fluxes(frame, coords, settings.aperture_radius)
        flux[band] = np.maximum(flux[band], error)  # as measure_photometry: a colour limit, weighted down
        relative[band] = error / flux[band]
    sources["g_r"] = magnitude(flux["g"]) - magnitude(flux["r"])
    sources["r_i"] = magnitude(flux["r"]) - magnitude(flux["i"])
    sources["g_r_err"] = MAG_PER_LN * np.hypot(relative["g"], relative["r"])
    sources["r_i_err"] = MAG_PER_LN * np.hypot(relative["r"], relative["i"])
    sources["i_mag"] = sources["r_mag"] - sources["r_i"]
    (inner, inner_error), (outer, outer_error) = (aperture_fluxes(reference, coords, radius)
                                                  for radius in CONCENTRATION_RADII)
    with np.errstate(invalid="ignore", divide="ignore"):  # faint sources: NaN, never a galaxy or a star
        sources["concentration"] = magnitude(inner) - magnitude(outer)
        sources["concentration_err"] = MAG_PER_LN * np.hypot(inner_error / inner, outer_error / outer)

    ny, nx = reference.image.shape
    grid_y, grid_x = footprint_grid(reference.image.shape)
    footprint = in_footprint(frames, reference.wcs.pixel_to_world(grid_x.ravel(), grid_y.ravel()), margin)
    footprint = footprint.reshape(grid_x.shape)
    area = footprint.mean() * nx * ny * proj_plane_pixel_area(reference.wcs.celestial) * u.deg**2
    return sources, footprint, area


def main_sequence_r_i(g_r):
    """r - i of the SDSS main-sequence stellar locus at ``g_r`` (row 7; g - r rises monotonically with r - i
    towards its 1.39 asymptote, so only g - r below ~1.35 is well defined)."""
    c3, c2, c1, c0 = LOCUS_COEFFICIENTS
    x = LOCUS_R_I
    return np.interp(g_r, LOCUS_AMPLITUDE * (1.0 - np.exp(-(c3 * x**3 + c2 * x**2 + c1 * x + c0))), x)


def field_aperture_corrections(frames, stars, settings):
    """Each band's aperture correction for one field (module docstring, row 2): ``{band: share / r's share}``
    with the number of stars, or NaNs with fewer than `MIN_PSF_STARS`."""
    coords = SkyCoord(stars["ra"], stars["dec"], unit=u.deg)
    reference = _PSF_REFERENCE_APERTURES * settings.aperture_radius
    shares, bright = {}, in_footprint(frames, coords, reference)
    for band, frame in frames.items():
        aperture = aperture_fluxes(frame, coords, settings.aperture_radius)[0]
        total, error = aperture_fluxes(frame, coords, reference)
        with np.errstate(invalid="ignore", divide="ignore"):
            shares[band] = aperture / total
        if band == "r":
            bright = bright & (total >= max(_PSF_STAR_SNR) * error)
    if np.count_nonzero(bright) < MIN_PSF_STARS:
        return dict.fromkeys(frames, np.nan), int(np.count_nonzero(bright))
    return ({band: float(np.median(share[bright] / shares["r"][bright])) for band, share in shares.items()},
            int(np.count_nonzero(bright)))


def fit_psf(stamp, centre, scale):
    """``(FWHM arcsec, beta, ellipticity)`` of one star: `Moffat2D` and elliptical `Gaussian2D` least-squares fits
    to its sky-subtracted stamp, ``centre`` its (x, y) in the stamp; None when a fit fails or wanders off."""
    from astropy.modeling import fitting, models

    rows, columns = np.indices(stamp.shape)
    peak = float(stamp.max())
    fwhm_guess = GUESS_FWHM.to_value(u.arcsec) / scale
    moffat = models.Moffat2D(amplitude=peak, x_0=centre[0], y_0=centre[1], alpha=GUESS_BETA,
                             gamma=fwhm_guess / (2.0 * np.sqrt(2.0 ** (1.0 / GUESS_BETA) - 1.0)))
    moffat.alpha.bounds = (1.0, 20.0)  # beta < 1 has infinite flux; beyond 20 a Moffat is a Gaussian
    fitter = fitting.TRFLSQFitter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyUserWarning)  # non-convergence is caught by the checks below
        moffat = fitter(moffat, columns, rows, stamp)
        sigma = abs(moffat.fwhm) / FWHM_PER_SIGMA
        gaussian = fitter(models.Gaussian2D(peak, moffat.x_0.value, moffat.y_0.value, sigma, sigma), columns, rows,
                          stamp)
    axes = np.abs([gaussian.x_stddev.value, gaussian.y_stddev.value])
    moved = np.hypot(moffat.x_0.value - centre[0], moffat.y_0.value - centre[1])
    if not (np.isfinite(moffat.fwhm) and np.all(np.isfinite(axes)) and axes.min() > 0.1 and moved < 2.0):
        return None
    return float(abs(moffat.fwhm) * scale), float(moffat.alpha.value), float(1.0 - axes.min() / axes.max())


def star_stamp(frame, x_star, y_star):
    """``(stamp, (x, y) of the star in it, peak)``: the `STAMP_HALF` stamp of ``frame`` around pixel ``x_star,
    y_star`` and the highest of its central 3 x 3 pixels; None when the stamp leaves the frame."""
    x0, y0 = int(round(x_star)), int(round(y_star))
    ny, nx = frame.image.shape
    if not (STAMP_HALF <= x0 < nx - STAMP_HALF and STAMP_HALF <= y0 < ny - STAMP_HALF):
        return None
    stamp = frame.image[y0 - STAMP_HALF:y0 + STAMP_HALF + 1, x0 - STAMP_HALF:x0 + STAMP_HALF + 1]
    peak = stamp[STAMP_HALF - 1:STAMP_HALF + 2, STAMP_HALF - 1:STAMP_HALF + 2].max()
    return stamp, (x_star - x0 + STAMP_HALF, y_star - y0 + STAMP_HALF), peak


def psf_stars(frame, stars):
    """PSF fits (`fit_psf`) of ``stars`` (brightest first) in ``frame``: those peaking above `STAR_PEAK_SNR` sigma
    and below `UNSATURATED_DN`, at most `MAX_PSF_STARS`; a Table of ``fwhm``, ``beta``, ``ellipticity``."""
    x, y = frame.wcs.world_to_pixel(SkyCoord(stars["ra"], stars["dec"], unit=u.deg))
    ceiling = UNSATURATED_DN * frame.nmgy_per_dn
    fits = []
    for x_star, y_star in zip(x, y):
        cut = star_stamp(frame, x_star, y_star)
        if cut is None:
            continue
        stamp, centre, peak = cut
        if not STAR_PEAK_SNR * frame.noise < peak < ceiling:
            continue
        fit = fit_psf(stamp, centre, frame.scale)
        if fit is not None:
            fits.append(fit)
        if len(fits) == MAX_PSF_STARS:
            break
    return Table(rows=fits, names=("fwhm", "beta", "ellipticity"), dtype=(float, float, float))


def aureole_rings(frame, stars):
    """Light (nanomaggies) and pixels in the 1 px rings of radius 0 to the outer of `AUREOLE_RADII`, summed over
    ``stars`` (bright isolated point sources) in ``frame`` (module docstring, row 9), and how many stars."""
    inner, outer = (frame.pixels(radius * u.arcsec) for radius in AUREOLE_RADII)
    sky_inner, sky_outer = (frame.pixels(radius * u.arcsec) for radius in AUREOLE_SKY_RADII)
    half = int(np.ceil(sky_outer)) + 1
    ny, nx = frame.image.shape
    ceiling = UNSATURATED_DN * frame.nmgy_per_dn
    light, pixels, n_stars = np.zeros(int(np.ceil(outer))), np.zeros(int(np.ceil(outer))), 0
    for x_star, y_star in zip(*frame.wcs.world_to_pixel(SkyCoord(stars["ra"], stars["dec"], unit=u.deg))):
        x0, y0 = int(round(x_star)), int(round(y_star))
        if not (half <= x0 < nx - half and half <= y0 < ny - half):
            continue
        stamp = frame.image[y0 - half:y0 + half + 1, x0 - half:x0 + half + 1].astype(np.float64)
        if stamp[half - 1:half + 2, half - 1:half + 2].max() >= ceiling:
            continue
        rows, columns = np.indices(stamp.shape)
        radius = np.hypot(columns - (x_star - x0 + half), rows - (y_star - y0 + half))
        _, sky, _ = sigma_clipped_stats(stamp[(radius >= sky_inner) & (radius < sky_outer)], sigma=3.0)
        stamp -= sky
        ring = np.floor(radius).astype(int)
        for k in range(len(light)):
            values = stamp[ring == k]
            # The core's rings are the star's own steep profile: plain sums; beyond, clip the neighbours.
            mean = values.mean() if k < inner else sigma_clipped_stats(values, sigma=AUREOLE_CLIP_SIGMA)[0]
            light[k] += mean * len(values)
            pixels[k] += len(values)
        n_stars += 1
    return light, pixels, n_stars


def aureole_fraction(rings, scale):
    """Row 9 from `aureole_rings`: the light at `AUREOLE_RADII` over the light within the outer one, on pixels
    of ``scale`` arcsec; NaN with fewer than `AUREOLE_MIN_STARS` stars."""
    light, _, n_stars = rings
    if n_stars < AUREOLE_MIN_STARS or not light.sum() > 0:
        return np.nan
    return float(light[int(np.floor(AUREOLE_RADII[0] / scale)):].sum() / light.sum())


def aureole_profile(rings):
    """Surface brightness per pixel of the summed rings of several fields, per unit of their light within the
    outer radius, at the rings' mid radii (pixels): ``(radii, profile)``."""
    light = np.sum([ring[0] for ring in rings], axis=0)
    pixels = np.sum([ring[1] for ring in rings], axis=0)
    stars = sum(ring[2] for ring in rings)
    return np.arange(len(light)) + 0.5, light / (pixels / stars) / light.sum()


def fit_aureole(radii, profile, core_fwhm, core_beta, scale):
    """Least-squares fit in log of ``(1 - f) core + f aureole`` to ``profile`` at `AUREOLE_FIT_RADII`: the core a
    round Moffat of ``core_fwhm`` (arcsec) and ``core_beta``, the aureole a Moffat of index
    `~deepcee_d2.synthetic.instrument.WING_BETA`; ``(f, scale radius arcsec, rms residual dex)``."""
    from scipy import optimize

    core_alpha = moffat_scale_radius(core_fwhm / scale, core_beta)
    chosen = (radii * scale >= AUREOLE_FIT_RADII[0]) & (radii * scale <= AUREOLE_FIT_RADII[1]) & (profile > 0)
    r, measured = radii[chosen], profile[chosen]

    def residual(params):
        share, alpha = params
        model = (1.0 - share) * moffat(r, core_beta, core_alpha) + share * moffat(r, WING_BETA, alpha)
        return np.log10(model) - np.log10(measured)

    fit = optimize.least_squares(residual, [0.05, 5.0], bounds=([1e-4, 0.5], [0.5, 50.0]))
    return float(fit.x[0]), float(fit.x[1] * scale), float(np.sqrt(np.mean(fit.fun**2)))


def isolated(sources, radius):
    """Whether each source has no other within ``radius`` (angle)."""
    coords = SkyCoord(sources["ra"], sources["dec"], unit=u.deg)
    if len(coords) < 2:
        return np.ones(len(coords), bool)
    _, distance, _ = coords.match_to_catalog_sky(coords, nthneighbor=2)  # the nearest other source
    return distance > radius


def counts_in_cells(frame, footprint, x, y):
    """variance / mean of the numbers of sources at r pixels ``(x, y)`` in square `CELL_SIDE` cells laid on the r
    frame from its centre, over the cells wholly inside ``footprint`` (`field_catalogue`)."""
    side = frame.pixels(CELL_SIDE)
    ny, nx = frame.image.shape
    edges = [(length - 1) / 2 + (np.arange(n + 1) - n / 2) * side
             for length, n in ((ny, int(ny // side)), (nx, int(nx // side)))]
    counts = np.histogram2d(y, x, bins=edges)[0]
    grid_y, grid_x = footprint_grid(frame.image.shape)
    outside = np.histogram2d(grid_y[~footprint], grid_x[~footprint], bins=edges)[0]
    counts = counts[outside == 0]
    return float(counts.var(ddof=1) / counts.mean()) if len(counts) > 1 and counts.mean() > 0 else np.nan


def point_source_depth(noise, fwhm, scale):
    """5-sigma magnitude of a point source of a Gaussian PSF of ``fwhm`` (arcsec) in its optimal aperture, on a
    per-pixel noise of ``noise`` nanomaggies with pixels of ``scale`` arcsec (module docstring, row 6)."""
    radius = OPTIMAL_RADIUS_SIGMA * fwhm / FWHM_PER_SIGMA / scale
    return float(magnitude(DEPTH_NSIGMA * noise * np.sqrt(np.pi) * radius / OPTIMAL_FRACTION))


def measure_field(name, frames, settings):
    """The table's values (`ROWS` keys) for one field ``{band: frame}``; progress per frame on stderr."""
    start = time.perf_counter()
    sky = {band: read_sky_frame(frames[band]) for band in BANDS}
    sources, footprint, area = field_catalogue(sky, settings)
    try:
        separation = separate_point_sources(sources["concentration"], sources["concentration_err"],
                                            sources["r_mag"])
    except ValueError as error:
        raise ValueError(f"{frames['r'].path}: {error}") from None
    galaxy, point, locus, width = separation.galaxy, separation.point, separation.locus, separation.width
    r_mag = np.asarray(sources["r_mag"], dtype=float)
    per_deg2 = 1.0 / area.to_value(u.deg**2)
    values = {}
    for low, high in COUNT_BINS:
        chosen = galaxy & (r_mag >= low) & (r_mag < high)
        values[f"counts {low:g}-{high:g}"] = np.count_nonzero(chosen) * per_deg2 / (high - low)
    bright = galaxy & (r_mag < GALAXY_R_LIMIT)
    values["g_r"] = float(np.median(sources["g_r"][bright]))
    values["r_i"] = float(np.median(sources["r_i"][bright]))
    values["cells"] = counts_in_cells(sky["r"], footprint, sources["x"][bright], sources["y"][bright])

    stars = sources[point & (r_mag > RED_STAR_R_MIN) & isolated(sources, STAR_ISOLATION)]
    stars.sort("r_mag")
    corrections, n_correction_stars = field_aperture_corrections(sky, stars, settings)
    # Dividing g's and i's aperture fluxes by their shares (r's is 1) moves every source's colours alike.
    g_r_shift, r_i_shift = 2.5 * np.log10(corrections["g"]), -2.5 * np.log10(corrections["i"])
    values["g_r corrected"] = values["g_r"] + g_r_shift
    values["r_i corrected"] = values["r_i"] + r_i_shift
    psf = {band: psf_stars(sky[band], stars) for band in BANDS}
    fwhm = {band: float(np.median(psf[band]["fwhm"])) if len(psf[band]) >= MIN_PSF_STARS else np.nan
            for band in BANDS}
    values["fwhm r"] = fwhm["r"]
    for quantity in ("beta", "ellipticity"):
        values[f"{quantity} r"] = float(np.median(psf["r"][quantity])) if np.isfinite(fwhm["r"]) else np.nan
    values["g/r"], values["i/r"] = fwhm["g"] / fwhm["r"], fwhm["i"] / fwhm["r"]
    for band in BANDS:
        values[f"depth {band}"] = point_source_depth(sky[band].noise, fwhm[band], sky[band].scale)
        values[f"background {band}"] = sky[band].block_range

    aureole_stars = point & (r_mag > AUREOLE_R_RANGE[0]) & (r_mag < AUREOLE_R_RANGE[1])
    values["aureole rings"] = aureole_rings(sky["r"], sources[aureole_stars & isolated(sources, AUREOLE_ISOLATION)])
    values["aureole r"] = aureole_fraction(values["aureole rings"], sky["r"].scale)

    # Aperture-corrected: a star's colours then are its total light's, which the locus describes.
    g_r = np.asarray(sources["g_r"], dtype=float) + g_r_shift
    r_i = np.asarray(sources["r_i"], dtype=float) + r_i_shift
    precise = (MAG_PER_LN / LOCUS_STAR_MIN_SNR) * np.sqrt(2.0)  # both colours' errors at S/N 20 in each band
    locus_stars = (point & (r_mag > LOCUS_STAR_R_RANGE[0]) & (r_mag < LOCUS_STAR_R_RANGE[1])
                   & (g_r > LOCUS_STAR_G_R_RANGE[0]) & (g_r < LOCUS_STAR_G_R_RANGE[1])
                   & (sources["g_r_err"] < precise) & (sources["r_i_err"] < precise))
    values["locus r_i"] = (float(np.median(r_i[locus_stars] - main_sequence_r_i(g_r[locus_stars])))
                           if np.count_nonzero(locus_stars) >= MIN_PSF_STARS else np.nan)
    members = richness_members(sources, RED_SEQUENCE_Z, settings, DEFAULT_COSMOLOGY).any(axis=1)
    values["red stars"] = np.count_nonzero(point & (r_mag > RED_STAR_R_MIN) & members) * per_deg2
    values["locus width"] = width

    for band in BANDS:
        print(f"  {sky[band].path}: noise {sky[band].noise:.4f} nmgy, FWHM {fwhm[band]:.2f}\" "
              f"({len(psf[band])} stars), depth {values[f'depth {band}']:.2f}, "
              f"block range {sky[band].block_range:.4f} nmgy", file=sys.stderr)
    print(f"{name}: {len(sources)} sources on {area.to(u.arcmin**2):.1f}, {np.count_nonzero(bright)} galaxies "
          f"r < {GALAXY_R_LIMIT:g}, stellar locus c* = {locus:.3f} +- {width:.3f}, aperture corrections g "
          f"{corrections['g']:.3f}, i {corrections['i']:.3f} ({n_correction_stars} stars), "
          f"{time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    if not separation.reliable:
        print(f"{name}: stellar locus {width:.2f} mag wide (> {MAX_CONCENTRATION_LOCUS_WIDTH}): its star/galaxy "
              "separation is unreliable (neighbours in the 3\" aperture)", file=sys.stderr)
    return values


# key, label, format, fields (galaxy rows leave the crowded field out; "crowded": that field alone), tolerance on
# the synthetic median against the real one: ("diff", d) |synthetic - real| <= d, ("factor", f) within a factor f.
# Why these widths: docs/synthetic_sky.md, "Tolerances".
ROWS = (
    ("counts 18-19", "galaxies per deg^2 per mag, r 18-19", "{:.0f}", "high", ("factor", 1.3)),
    ("counts 19-20", "galaxies per deg^2 per mag, r 19-20", "{:.0f}", "high", ("factor", 1.3)),
    ("counts 20-21", "galaxies per deg^2 per mag, r 20-21", "{:.0f}", "high", ("factor", 1.3)),
    ("g_r", "galaxy median g - r (r < 21)", "{:.2f}", "high", ("diff", 0.05)),
    ("r_i", "galaxy median r - i (r < 21)", "{:.2f}", "high", ("diff", 0.05)),
    ("g_r corrected", "galaxy median g - r (r < 21), aperture-corrected", "{:.2f}", "high", ("diff", 0.05)),
    ("r_i corrected", "galaxy median r - i (r < 21), aperture-corrected", "{:.2f}", "high", ("diff", 0.05)),
    ("cells", "counts in 2' cells, variance / mean (r < 21 galaxies)", "{:.2f}", "high", ("diff", 0.5)),
    ("fwhm r", "r PSF FWHM (Moffat, arcsec)", "{:.2f}", "all", ("diff", 0.25)),
    ("beta r", "r PSF Moffat beta", "{:.2f}", "all", ("diff", 0.5)),
    ("ellipticity r", "r PSF ellipticity 1 - b/a", "{:.3f}", "all", ("diff", 0.02)),
    ("aureole r", "r PSF aureole: light at 3.2-12\" / within 12\" (r 13.5-17.5 stars)", "{:.3f}", "high",
     ("factor", 2.0)),
    ("g/r", "FWHM ratio g / r", "{:.3f}", "all", ("diff", 0.1)),
    ("i/r", "FWHM ratio i / r", "{:.3f}", "all", ("diff", 0.1)),
    ("depth g", "5-sigma point-source depth g (mag)", "{:.2f}", "all", ("diff", 0.3)),
    ("depth r", "5-sigma point-source depth r (mag)", "{:.2f}", "all", ("diff", 0.3)),
    ("depth i", "5-sigma point-source depth i (mag)", "{:.2f}", "all", ("diff", 0.3)),
    ("locus r_i", "point sources' r - i less the SDSS stellar locus' at their g - r (16 < r < 19.5)", "{:.3f}",
     "high", ("diff", 0.03)),
    ("red stars", "red-sequence-coloured point sources per deg^2, z 0.1-0.2 (high latitude)", "{:.0f}", "high",
     ("factor", 2.0)),
    ("red stars", "red-sequence-coloured point sources per deg^2, z 0.1-0.2 (crowded field)", "{:.0f}", "crowded",
     ("factor", 2.0)),
    ("background g", "background block-median range g (nmgy / px)", "{:.4f}", "all", ("factor", 2.0)),
    ("background r", "background block-median range r (nmgy / px)", "{:.4f}", "all", ("factor", 2.0)),
    ("background i", "background block-median range i (nmgy / px)", "{:.4f}", "all", ("factor", 2.0)),
)


def summary(values, form):
    """``median (min-max)`` of per-field values, ``n/a`` without any, the count of unmeasured fields noted."""
    values = np.asarray(values, dtype=float)
    measured = values[np.isfinite(values)]
    if not len(measured):
        return "n/a"
    text = form.format(np.median(measured))
    if len(measured) > 1:
        text += f" ({form.format(measured.min())}-{form.format(measured.max())})"
    if len(measured) < len(values):
        text += f", {len(values) - len(measured)} field(s) unmeasured"
    return text


def within_tolerance(real, synthetic, tolerance):
    """Whether the median of ``synthetic`` per-field values lies within ``tolerance`` of the median of ``real``
    (`ROWS`); None when either has no measured field."""
    real, synthetic = (np.asarray(values, dtype=float) for values in (real, synthetic))
    real, synthetic = real[np.isfinite(real)], synthetic[np.isfinite(synthetic)]
    if not len(real) or not len(synthetic):
        return None
    kind, width = tolerance
    a, b = float(np.median(real)), float(np.median(synthetic))
    if kind == "diff":
        return abs(b - a) <= width
    return a > 0 and b > 0 and max(a / b, b / a) <= width


def tolerance_text(tolerance, form):
    kind, width = tolerance
    return f"+- {form.format(width)}" if kind == "diff" else f"x {width:g}"


def pair_twins(real, twins, real_centres, twin_centres):
    """Index of the real field of each twin (nearest r centre); ValueError naming a twin without one or a real
    field with two."""
    index, separation, _ = twin_centres.match_to_catalog_sky(real_centres)
    for (name, _), k, distance in zip(twins, index, separation):
        if distance > TWIN_MATCH:
            raise ValueError(f"{name}: no real field within {TWIN_MATCH} of its centre (nearest {real[k][0]}, "
                             f"{distance.to(u.arcsec):.1f})")
    if len(set(index)) < len(index):
        raise ValueError("two twins share one real field: " + ", ".join(
            f"{name} -> {real[k][0]}" for (name, _), k in zip(twins, index)))
    return [int(k) for k in index]


def twin_folder(seed):
    """Where the twins of one seed are made under ``--work`` (seed 1: ``twins``, as before there were several)."""
    return "twins" if seed == 1 else f"twins_seed{seed}"


def red_sequence_box(settings):
    """The g - r and r - i ranges of row 7's colour test at the pivot i magnitude (ridge line +- the chi^2
    limit's half-width in each colour)."""
    ridge = red_sequence(RED_SEQUENCE_Z)
    half = np.sqrt(settings.richness_member_chi2) * np.hypot(red_sequence_scatter(RED_SEQUENCE_Z),
                                                             settings.colour_error_floor)
    return [(float(np.min(line - width)), float(np.max(line + width))) for line, width in zip(ridge, half)]


def print_aureole(measured, crowded):
    """Row 9's rings summed over each sky's high-latitude fields, and the aureole fitted to the real ones (the
    core: the real fields' median r Moffat)."""
    print(f"\nr PSF ring profile of the aureole stars (row 9), per pixel per 1e6 of their light within "
          f"{AUREOLE_RADII[1]:g}\", summed over the high-latitude fields, at radii (px) "
          f"{', '.join(str(k) for k in AUREOLE_PRINT_PX)}:")
    for sky in ("real", "synthetic"):
        fields = [values for k, values in enumerate(measured[sky]) if k not in crowded[sky]]
        radii, profile = aureole_profile([values["aureole rings"] for values in fields])
        stars = sum(values["aureole rings"][2] for values in fields)
        print(f"- {sky} ({stars} stars): {', '.join(f'{profile[k] * 1e6:.1f}' for k in AUREOLE_PRINT_PX)}")
        if sky == "real":
            fwhm, beta = (float(np.nanmedian([values[key] for values in fields])) for key in ("fwhm r", "beta r"))
            share, scale_radius, rms = fit_aureole(radii, profile, fwhm, beta, PIXEL_SCALE_ARCSEC)
            print(f"  fit at {AUREOLE_FIT_RADII[0]:g}-{AUREOLE_FIT_RADII[1]:g}\" (core: Moffat FWHM {fwhm:.2f}\", "
                  f"beta {beta:.2f}; aureole beta {WING_BETA:g}): {share:.3f} of the light, scale radius "
                  f"{scale_radius:.2f}\", rms {rms:.3f} dex (the simulator: {WING_FRACTION:g}, "
                  f"{WING_SCALE_RADIUS:g}\")")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", type=Path, default=REPO.parent / "shared" / "data" / "sdss")
    parser.add_argument("--synthetic", type=Path, help="fields to compare (default: twins of --real made under --work)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/sky_realism"), help="where the twins are written")
    parser.add_argument("--twin-skies", type=int, default=1,
                        help="random skies per real field (twin seeds 1..N; default 1): the synthetic column is "
                             "over all")
    parser.add_argument("--exclude-crowded", default="002583-2-0136",
                        help="part of the name of the crowded real field ('' for none)")
    args = parser.parse_args(argv)
    settings = RedSequenceSettings.from_cfg(load_config())
    start = time.perf_counter()

    if args.twin_skies < 1:
        raise SystemExit(f"--twin-skies {args.twin_skies}: need at least 1")
    if args.synthetic is not None and args.twin_skies > 1:
        raise SystemExit("--twin-skies: the twins are made under --work; give it without --synthetic")
    real, real_centres = read_fields(args.real)
    roots = ([args.synthetic] if args.synthetic is not None else
             [make_twins(args.real, args.work / twin_folder(seed), seed)[0] for seed in range(1, args.twin_skies + 1)])
    twins, twin_of = [], []
    for root in roots:  # each sky holds one twin per real field
        fields, centres = read_fields(root)
        twin_of += pair_twins(real, fields, real_centres, centres)
        twins += [(f"{Path(root).name}/{name}" if len(roots) > 1 else name, frames) for name, frames in fields]
    args.synthetic = ", ".join(str(root) for root in roots)
    crowded_real = {k for k, (name, _) in enumerate(real) if args.exclude_crowded and args.exclude_crowded in name}
    if args.exclude_crowded and not crowded_real:
        raise ValueError(f"--exclude-crowded {args.exclude_crowded}: no real field of {args.real} is named so")
    crowded = {"real": crowded_real, "synthetic": {t for t, k in enumerate(twin_of) if k in crowded_real}}

    measured = {}
    for sky, fields in (("real", real), ("synthetic", twins)):
        print(f"{sky}: {len(fields)} fields under {args.real if sky == 'real' else args.synthetic}", file=sys.stderr)
        measured[sky] = [measure_field(name, frames, settings) for name, frames in fields]

    print(f"Real SDSS frames ({args.real}: {len(real)} fields) against their synthetic twins ({args.synthetic}: "
          f"{', '.join(f'{name} -> {real[k][0]}' for (name, _), k in zip(twins, twin_of))}); crowded field "
          f"{', '.join(real[k][0] for k in crowded_real) or 'none'}. Per-field values, median (min-max).\n")
    print("| statistic | real SDSS | synthetic | tolerance | within |")
    print("|---|---:|---:|---:|---|")
    met = 0
    for key, label, form, which, tolerance in ROWS:
        cells, values = [], []
        for sky in ("real", "synthetic"):
            chosen = [k for k in range(len(measured[sky]))
                      if which == "all" or (k in crowded[sky]) == (which == "crowded")]
            values.append([measured[sky][k][key] for k in chosen])
            cells.append(summary(values[-1], form) + f" [{len(chosen)}]")
        within = within_tolerance(*values, tolerance)
        met += bool(within)
        print(f"| {label} | {cells[0]} | {cells[1]} | {tolerance_text(tolerance, form)} | "
              f"{'n/a' if within is None else 'yes' if within else 'NO'} |")
    print(f"\n{met} of {len(ROWS)} rows within their tolerance (medians compared).")
    (gr_low, gr_high), (ri_low, ri_high) = red_sequence_box(settings)
    print(f"\n[n]: fields. Red-sequence colours of 0.1 < z < 0.2 (row 'red-sequence-coloured'): within "
          f"g - r {gr_low:.2f}-{gr_high:.2f} and r - i {ri_low:.2f}-{ri_high:.2f} at the pivot i magnitude "
          f"(chi^2 <= {settings.richness_member_chi2:g} against the ridge line, tilted with i). "
          f"{time.perf_counter() - start:.0f} s.")
    print_aureole(measured, crowded)
    unreliable = [name for sky, fields in (("real", real), ("synthetic", twins))
                  for (name, _), values in zip(fields, measured[sky])
                  if values["locus width"] > MAX_CONCENTRATION_LOCUS_WIDTH]
    if unreliable:
        print(f"Star/galaxy separation unreliable (stellar locus wider than {MAX_CONCENTRATION_LOCUS_WIDTH} mag) in "
              f"{', '.join(unreliable)}: its point-source rows count blends of any kind.")


if __name__ == "__main__":
    main()

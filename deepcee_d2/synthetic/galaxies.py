"""Galaxies: the field population, and the colours, sizes and shapes every galaxy (field or member) gets.

Field galaxies are drawn from empirical r-band number counts, then given a redshift, a type (red or blue),
colours (`colours`), a Sersic profile, a size from the SDSS size-luminosity relations and an orientation:

- **Number counts** (`galaxy_counts`, galaxies deg^-2 mag^-1): a broken power law in r. Brighter than
  r = 16 the counts are Euclidean, slope d log N / dm = 0.6 (Yasuda et al. 2001, AJ 122, 1104); between 16
  and 22 the slope is 0.47, the no-evolution slope Yasuda et al. find at 16 < r < 21; fainter than 22 it
  flattens to 0.33 (the faint-end slope 0.31 of the i-band counts, LSST Science Book 2009, eq. 3.7). The
  normalisation, 129 deg^-2 mag^-1 at r = 18, makes 90 galaxies deg^-2 brighter than r = 17.77, the surface
  density of the SDSS main galaxy sample (Strauss et al. 2002, AJ 124, 1810). The model gives 129, 1123 and
  9790 deg^-2 mag^-1 at r = 18, 20 and 22; the COSMOS2020 i-band counts (Weaver et al. 2022, ApJS 258, 11,
  Table 2), shifted by a typical faint-galaxy r - i = 0.4, give ~1450 and ~9500 at r = 20 and 22.
- **Redshifts**: ``p(z) ~ z^2 exp[-(z / z0)^1.5]`` (Baugh & Efstathiou 1993) with median
  ``1.412 z0 = 0.10 + 0.10 (r - 17.77)``: the SDSS main sample's median z = 0.10 at its r = 17.77 limit
  (Strauss et al. 2002), rising to ~0.5 at r = 22 as in deep redshift surveys. A draw that would make the
  galaxy more luminous than M_r = -23.5 (brighter than the most luminous cluster galaxies; it happens to
  faint red galaxies in the high-z tail, whose K-corrections are large) is redrawn.
- **Types**: the red fraction falls from 0.55 at r <= 17 to 0.25 at r >= 22 (0.06 per mag): bright SDSS
  galaxies split about evenly between the red and blue populations (Strateva et al. 2001; Baldry et al.
  2004) while faint counts are dominated by blue galaxies. Blue galaxies take the Sbc, Scd or Im template
  (40 / 40 / 20 %).
- **Colours**: red galaxies sit on the red sequence at their z and i magnitude with its intrinsic scatter;
  blue ones on their template's colours with 0.10 (g - r) and 0.08 (r - i) mag scatter, about the width of
  the blue cloud (Baldry et al. 2004).
- **Profiles**: red galaxies are de Vaucouleurs (Sersic n = 4) and blue ones exponential (n = 1), the two
  profiles of SDSS model magnitudes. Half-light radii follow Shen et al. (2003, MNRAS 343, 978, eqs. 14-16):
  early types ``log R = -0.4 a M + b`` (a = 0.65, b = -5.06), late types ``log R = -0.4 alpha M + (beta -
  alpha) log(1 + 10^(-0.4 (M - M0))) + gamma`` (alpha = 0.21, beta = 0.53, gamma = -1.31, M0 = -20.52), R in
  kpc, with log-normal scatter ``sigma_lnR = sigma2 + (sigma1 - sigma2) / (1 + 10^(-0.8 (M - M0)))`` (early
  0.45 / 0.27, late 0.48 / 0.25); M is the rest-frame r absolute magnitude (K-corrected with the template).
  The angle comes from `deepcee_d2.cosmology.angular_size`.
- **Shapes**: discs are circular with intrinsic thickness q0 = 0.2 seen at a random inclination, so
  ``q^2 = cos^2 i (1 - q0^2) + q0^2`` with cos i uniform (Hubble 1926); ellipticals have b/a ~ N(0.75, 0.15)
  in [0.3, 1] (Padilla & Strauss 2008). Position angles are uniform.
"""
import astropy.units as u
import numpy as np
from astropy.table import Table

from ..cosmology import DEFAULT_COSMOLOGY, angular_size
from .colours import BLUE_TEMPLATES, absolute_magnitude, red_sequence, red_sequence_scatter, template_colours

# Number counts: log10 n = log10(N_AT_18) + piecewise slopes (see module docstring).
N_AT_18 = 129.0
_COUNT_BREAKS = (16.0, 22.0)
_COUNT_SLOPES = (0.60, 0.47, 0.33)
BRIGHTEST_GALAXY = 12.0
_BLUE_TEMPLATE_WEIGHTS = (0.4, 0.4, 0.2)
_Q0_DISC = 0.2
# Shen et al. (2003) size-luminosity relations.
_SHEN_EARLY = {"a": 0.65, "b": -5.06, "sigma1": 0.45, "sigma2": 0.27}
_SHEN_LATE = {"alpha": 0.21, "beta": 0.53, "gamma": -1.31, "sigma1": 0.48, "sigma2": 0.25}
_SHEN_M0 = -20.52
MAX_HALF_LIGHT_RADIUS = 30.0  # arcsec; the largest SDSS galaxies at z >= 0.02 are smaller
MIN_REDSHIFT = 0.02
BRIGHTEST_ABS_MAG = -23.5  # rest-frame r; the most luminous BCGs reach about this
_MAX_REDRAWS = 200

GALAXY_COLUMNS = ("id", "ra", "dec", "x", "y", "z", "g_mag", "r_mag", "i_mag", "red", "template", "sersic_n",
                  "half_light_radius", "axis_ratio", "position_angle", "abs_mag_r", "cluster_id")


def galaxy_counts(r_mag):
    """Differential r-band galaxy counts, galaxies deg^-2 mag^-1 (module docstring)."""
    r_mag = np.asarray(r_mag, dtype=float)
    low, high = _COUNT_BREAKS
    bright, middle, faint = _COUNT_SLOPES
    log_n = np.log10(N_AT_18) + middle * (np.clip(r_mag, low, high) - 18.0)
    log_n += bright * np.minimum(r_mag - low, 0.0) + faint * np.maximum(r_mag - high, 0.0)
    return 10.0**log_n


def expected_galaxies(area, r_bright, r_faint):
    """Expected number of field galaxies with ``r_bright <= r < r_faint`` on ``area`` (Quantity, solid angle)."""
    grid = np.linspace(r_bright, r_faint, 2001)
    return float(np.trapezoid(galaxy_counts(grid), grid) * area.to_value(u.deg**2))


def _sample_magnitudes(rng, n, r_bright, r_faint):
    grid = np.linspace(r_bright, r_faint, 4001)
    cumulative = np.concatenate([[0.0], np.cumsum(np.diff(grid) * 0.5 * (galaxy_counts(grid[1:]) +
                                                                           galaxy_counts(grid[:-1])))])
    return np.interp(rng.uniform(0.0, cumulative[-1], n), cumulative, grid)


def median_redshift(r_mag):
    """Median redshift of field galaxies of r magnitude ``r_mag`` (module docstring)."""
    return np.clip(0.10 + 0.10 * (np.asarray(r_mag, dtype=float) - 17.77), 0.03, 1.2)


def red_fraction(r_mag):
    """Fraction of field galaxies of r magnitude ``r_mag`` that are red (module docstring)."""
    return np.clip(0.55 - 0.06 * (np.asarray(r_mag, dtype=float) - 17.0), 0.25, 0.55)


def half_light_radius_kpc(rng, abs_mag_r, red):
    """Half-light radii (kpc) for rest-frame r absolute magnitudes, Shen et al. (2003) with scatter."""
    m = np.asarray(abs_mag_r, dtype=float)
    red = np.asarray(red, dtype=bool)
    log_early = -0.4 * _SHEN_EARLY["a"] * m + _SHEN_EARLY["b"]
    late = _SHEN_LATE
    log_late = (-0.4 * late["alpha"] * m + (late["beta"] - late["alpha"]) *
                np.log10(1.0 + 10.0 ** (-0.4 * (m - _SHEN_M0))) + late["gamma"])
    transition = 1.0 / (1.0 + 10.0 ** (-0.8 * (m - _SHEN_M0)))
    sigma_early = _SHEN_EARLY["sigma2"] + (_SHEN_EARLY["sigma1"] - _SHEN_EARLY["sigma2"]) * transition
    sigma_late = late["sigma2"] + (late["sigma1"] - late["sigma2"]) * transition
    log_r = np.where(red, log_early, log_late)
    sigma_ln = np.where(red, sigma_early, sigma_late)
    return 10.0**log_r * np.exp(sigma_ln * rng.standard_normal(m.shape))


def assign_properties(rng, table, cosmology=DEFAULT_COSMOLOGY):
    """Fill colours, magnitudes, profile, size and shape of galaxies from ``r_mag``, ``z`` and ``red``.

    ``table`` needs ``r_mag``, ``z`` and ``red`` columns (one row per galaxy); the other `GALAXY_COLUMNS`
    (except positions and ids) are added in place. Used for field galaxies and cluster members alike.
    """
    n = len(table)
    r_mag = np.asarray(table["r_mag"], dtype=float)
    z = np.asarray(table["z"], dtype=float)
    red = np.asarray(table["red"], dtype=bool)
    template = (np.asarray(table["template"]) if "template" in table.colnames
                else choose_templates(rng, red))

    blue_gr, blue_ri = np.zeros(n), np.zeros(n)
    for name in BLUE_TEMPLATES:
        chosen = template == name
        blue_gr[chosen], blue_ri[chosen] = template_colours(name, z[chosen])
    blue_gr += 0.10 * rng.standard_normal(n)
    blue_ri += 0.08 * rng.standard_normal(n)
    # The red-sequence tilt is defined against i; r - 0.5 is close enough to i for a 0.03 mag/mag slope.
    red_gr, red_ri = red_sequence(z, r_mag - 0.5)
    scatter_gr, scatter_ri = red_sequence_scatter(z)
    red_gr = red_gr + scatter_gr * rng.standard_normal(n)
    red_ri = red_ri + scatter_ri * rng.standard_normal(n)
    g_r = np.where(red, red_gr, blue_gr)
    r_i = np.where(red, red_ri, blue_ri)
    table["g_mag"] = r_mag + g_r
    table["i_mag"] = r_mag - r_i
    table["template"] = template
    table["abs_mag_r"] = absolute_magnitude(r_mag, z, template, cosmology)
    table["sersic_n"] = np.where(red, 4.0, 1.0)
    radius_kpc = half_light_radius_kpc(rng, table["abs_mag_r"], red)
    radius = angular_size(radius_kpc * u.kpc, np.maximum(z, MIN_REDSHIFT), cosmology).to_value(u.arcsec)
    table["half_light_radius"] = np.clip(radius, 0.05, MAX_HALF_LIGHT_RADIUS)
    table["half_light_radius"].unit = u.arcsec
    cos_i = rng.uniform(0.0, 1.0, n)
    disc_q = np.sqrt(cos_i**2 * (1.0 - _Q0_DISC**2) + _Q0_DISC**2)
    elliptical_q = np.clip(rng.normal(0.75, 0.15, n), 0.3, 1.0)
    table["axis_ratio"] = np.where(red, elliptical_q, disc_q)
    table["position_angle"] = rng.uniform(0.0, 180.0, n)
    table["position_angle"].unit = u.deg
    for band in ("g", "r", "i"):
        table[f"{band}_mag"].unit = u.mag
    table["abs_mag_r"].unit = u.mag
    return table


def choose_templates(rng, red):
    """SED template per galaxy: E for red ones, Sbc / Scd / Im (40 / 40 / 20 %) for blue ones."""
    red = np.asarray(red, dtype=bool)
    return np.where(red, "E", rng.choice(BLUE_TEMPLATES, size=len(red), p=_BLUE_TEMPLATE_WEIGHTS))


def _draw_redshifts(rng, r_mag):
    z0 = median_redshift(r_mag) / 1.412
    # p(z) ~ z^2 exp(-(z/z0)^1.5): (z/z0)^1.5 is Gamma(2)-distributed.
    return np.clip(z0 * rng.gamma(2.0, 1.0, len(z0)) ** (1.0 / 1.5), 0.005, 2.0)


def field_galaxies(rng, area, r_faint, cosmology=DEFAULT_COSMOLOGY):
    """Draw the field galaxies of one field (positions are added by the caller).

    Parameters
    ----------
    rng : `numpy.random.Generator`
    area : `~astropy.units.Quantity` [solid angle]
        Area of the field.
    r_faint : float
        Faintest r magnitude drawn (fainter galaxies only add to the unresolved background).
    cosmology : `~astropy.cosmology.FLRW`

    Returns
    -------
    `~astropy.table.Table`
        One row per galaxy with ``r_mag``, ``z``, ``red`` and the columns of `assign_properties`.
    """
    n = rng.poisson(expected_galaxies(area, BRIGHTEST_GALAXY, r_faint))
    r_mag = _sample_magnitudes(rng, n, BRIGHTEST_GALAXY, r_faint)
    red = rng.uniform(0.0, 1.0, n) < red_fraction(r_mag)
    template = choose_templates(rng, red)
    z = _draw_redshifts(rng, r_mag)
    # A galaxy more luminous than any real one (a faint red galaxy put at z > 1 by the broad p(z)) is given
    # another redshift from the same p(z | r) until it is not.
    for _ in range(_MAX_REDRAWS):
        too_bright = absolute_magnitude(r_mag, z, template, cosmology) < BRIGHTEST_ABS_MAG
        if not too_bright.any():
            break
        z[too_bright] = _draw_redshifts(rng, r_mag[too_bright])
    else:
        raise RuntimeError(f"{too_bright.sum()} field galaxies stay brighter than M_r = {BRIGHTEST_ABS_MAG}")
    table = Table({"r_mag": r_mag, "z": z, "red": red, "template": template})
    return assign_properties(rng, table, cosmology)

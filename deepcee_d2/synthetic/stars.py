"""Stars at high Galactic latitude: counts and colours along the stellar locus.

- **Counts** (`star_counts`, stars deg^-2 mag^-1 in r): ``n(r) = 670 x 10^(0.12 (r - 20))`` fainter than
  r = 18 (halo-dominated, shallow counts) and slope 0.25 brighter (disc dwarfs). These are approximate
  values for |b| ~ 60 deg, chosen to give ~3,500 stars deg^-2 brighter than r = 22, three times the galaxy
  counts at r = 18 and an eighth of them at r = 22, crossing at r ~ 19.4 (galaxies outnumber stars fainter
  than r ~ 19.5 at high latitude; Yasuda et al. 2001; Juric et al. 2008), and ~65 stars deg^-2 brighter than
  r = 14, so a
  2048 x 2048 field (0.05 deg^2) holds a few saturated stars on average. They are not a fit to a specific
  Galactic model.
- **Colours**: three populations, as in the SDSS colour-magnitude diagrams of Juric et al. (2008) and
  Ivezic et al. (2008): halo and thick-disc main-sequence turn-off stars (g - r ~ N(0.30, 0.08)), disc G and
  K dwarfs (g - r uniform in 0.4-1.2) and M dwarfs (g - r ~ N(1.40, 0.05), r - i uniform in 0.6-1.8). The
  first two follow the stellar locus ``r - i = 0.44 (g - r) - 0.08`` (through the Sun's 0.44 / 0.11 and a K5
  dwarf's 1.10 / 0.40) with 0.03 mag scatter. The turn-off fraction rises from 30 % at r = 16 to 60 % at
  r = 22, M dwarfs make 20 %, G/K dwarfs the rest.
"""
import astropy.units as u
import numpy as np
from astropy.table import Table

N_AT_20 = 670.0
_BREAK = 18.0
_SLOPE_BRIGHT, _SLOPE_FAINT = 0.25, 0.12
BRIGHTEST_STAR = 10.0

STAR_COLUMNS = ("id", "ra", "dec", "x", "y", "g_mag", "r_mag", "i_mag", "population")


def star_counts(r_mag):
    """Differential r-band star counts, stars deg^-2 mag^-1 (module docstring)."""
    r_mag = np.asarray(r_mag, dtype=float)
    log_n = np.log10(N_AT_20) + _SLOPE_FAINT * (np.maximum(r_mag, _BREAK) - 20.0)
    return 10.0 ** (log_n + _SLOPE_BRIGHT * np.minimum(r_mag - _BREAK, 0.0))


def expected_stars(area, r_bright, r_faint):
    """Expected number of stars with ``r_bright <= r < r_faint`` on ``area`` (Quantity, solid angle)."""
    grid = np.linspace(r_bright, r_faint, 2001)
    return float(np.trapezoid(star_counts(grid), grid) * area.to_value(u.deg**2))


def field_stars(rng, area, r_faint):
    """Draw the stars of one field: a table with ``r_mag``, ``g_mag``, ``i_mag`` and ``population``.

    Parameters
    ----------
    rng : `numpy.random.Generator`
    area : `~astropy.units.Quantity` [solid angle]
    r_faint : float
        Faintest r magnitude drawn.
    """
    n = rng.poisson(expected_stars(area, BRIGHTEST_STAR, r_faint))
    grid = np.linspace(BRIGHTEST_STAR, r_faint, 4001)
    cumulative = np.concatenate([[0.0], np.cumsum(np.diff(grid) * 0.5 * (star_counts(grid[1:]) +
                                                                           star_counts(grid[:-1])))])
    r_mag = np.interp(rng.uniform(0.0, cumulative[-1], n), cumulative, grid)
    turnoff_fraction = np.clip(0.30 + 0.05 * (r_mag - 16.0), 0.30, 0.60)
    draw = rng.uniform(0.0, 1.0, n)
    population = np.where(draw < 0.20, "M", np.where(draw < 0.20 + turnoff_fraction, "turnoff", "GK"))
    g_r = np.where(population == "turnoff", rng.normal(0.30, 0.08, n), rng.uniform(0.4, 1.2, n))
    r_i = 0.44 * g_r - 0.08 + rng.normal(0.0, 0.03, n)
    is_m = population == "M"
    g_r = np.where(is_m, rng.normal(1.40, 0.05, n), g_r)
    r_i = np.where(is_m, rng.uniform(0.6, 1.8, n), r_i)
    table = Table({"r_mag": r_mag, "g_mag": r_mag + g_r, "i_mag": r_mag - r_i, "population": population})
    for band in ("g", "r", "i"):
        table[f"{band}_mag"].unit = u.mag
    return table

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
  K dwarfs (g - r uniform in 0.4-1.2) and M dwarfs (r - i uniform in 0.6-1.8). All lie on the SDSS
  main-sequence stellar locus of Juric et al. (2008, ApJ 673, 864, eq. 1; `main_sequence_g_r`), with 0.03
  mag scatter in r - i (turn-off, G/K) or 0.05 in g - r (M). The turn-off fraction rises from 30 % at r = 16 to 60 % at
  r = 22, M dwarfs make 20 %, G/K dwarfs the rest. (A straight line through the Sun's colours, used before, lay
  0.02-0.05 mag bluer in r - i than the stars of the shared SDSS frames; BENCHMARKS.md, "The stellar locus".)
"""
import astropy.units as u
import numpy as np
from astropy.table import Table

N_AT_20 = 670.0
_BREAK = 18.0
_SLOPE_BRIGHT, _SLOPE_FAINT = 0.25, 0.12
BRIGHTEST_STAR = 10.0

# Juric et al. (2008) eq. 1: g - r = A (1 - exp(-(c3 x^3 + c2 x^2 + c1 x + c0))), x = r - i.
_LOCUS_AMPLITUDE, _LOCUS_COEFFICIENTS = 1.39, (4.9, 2.45, 1.68, 0.050)
# Tabulated for the inverse: r - i from -0.2 (bluer than any main-sequence star) to 2.5 (late M).
_LOCUS_R_I = np.linspace(-0.2, 2.5, 2701)
LOCUS_SCATTER_R_I, M_DWARF_SCATTER_G_R = 0.03, 0.05

STAR_COLUMNS = ("id", "ra", "dec", "x", "y", "g_mag", "r_mag", "i_mag", "population")


def star_counts(r_mag):
    """Differential r-band star counts, stars deg^-2 mag^-1 (module docstring)."""
    r_mag = np.asarray(r_mag, dtype=float)
    log_n = np.log10(N_AT_20) + _SLOPE_FAINT * (np.maximum(r_mag, _BREAK) - 20.0)
    return 10.0 ** (log_n + _SLOPE_BRIGHT * np.minimum(r_mag - _BREAK, 0.0))


def main_sequence_g_r(r_i):
    """g - r of the SDSS main-sequence stellar locus at ``r_i`` (Juric et al. 2008, eq. 1)."""
    x = np.asarray(r_i, dtype=float)
    c3, c2, c1, c0 = _LOCUS_COEFFICIENTS
    return _LOCUS_AMPLITUDE * (1.0 - np.exp(-(c3 * x**3 + c2 * x**2 + c1 * x + c0)))


def main_sequence_r_i(g_r):
    """r - i of the stellar locus at ``g_r`` (the inverse of `main_sequence_g_r`; g - r rises monotonically with
    r - i and flattens towards its 1.39 asymptote, so only g - r below ~1.35 is well defined)."""
    return np.interp(g_r, main_sequence_g_r(_LOCUS_R_I), _LOCUS_R_I)


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
    r_i = main_sequence_r_i(g_r) + rng.normal(0.0, LOCUS_SCATTER_R_I, n)
    is_m = population == "M"
    m_scatter = rng.normal(0.0, M_DWARF_SCATTER_G_R, n)
    m_r_i = rng.uniform(0.6, 1.8, n)
    g_r = np.where(is_m, main_sequence_g_r(m_r_i) + m_scatter, g_r)
    r_i = np.where(is_m, m_r_i, r_i)
    table = Table({"r_mag": r_mag, "g_mag": r_mag + g_r, "i_mag": r_mag - r_i, "population": population})
    for band in ("g", "r", "i"):
        table[f"{band}_mag"].unit = u.mag
    return table

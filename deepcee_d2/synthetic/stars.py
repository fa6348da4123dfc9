"""Stars: counts that follow the Galaxy's structure, colours along the stellar locus.

- **Counts** (`star_counts`, stars deg^-2 mag^-1 in r) of the *reference field*, the average over Galactic
  longitude at |b| = 60 deg: ``n(r) = 670 x 10^(0.12 (r - 20))`` fainter than r = 18 (halo-dominated, shallow
  counts) and slope 0.25 brighter (disc dwarfs), chosen to give ~3,500 stars deg^-2 brighter than r = 22,
  three times the galaxy counts at r = 18 and an eighth of them at r = 22, crossing at r ~ 19.4 (galaxies
  outnumber stars fainter than r ~ 19.5 at high latitude; Yasuda et al. 2001; Juric et al. 2008), and ~65
  stars deg^-2 brighter than r = 14, so a 2048 x 2048 field (0.05 deg^2) holds a few saturated stars on
  average. These are approximate values, not a fit.
- **Galactic structure** (`stellar_density`): a field elsewhere holds the reference field's stars of each
  apparent magnitude and colour in proportion to the Galaxy's star density at their distance in its direction
  against the reference field's. The density is the model of Juric et al. (2008, ApJ 673, 864, Table 10,
  bias-corrected): thin disc (scale height 300 pc, length 2600 pc) and thick disc (900 pc, 3600 pc, 12 % of
  the thin disc's density at the Sun) and an oblate power-law halo (0.51 %, axis ratio 0.64, index 2.77), the
  Sun 8 kpc from the centre and 25 pc above the plane; each star's distance from its r magnitude and the
  absolute magnitude of its r - i (Juric et al. eq. 2). The disc's K and M dwarfs gain most towards low
  latitude (about 3 times the reference's at b = -36 deg, l = 53 deg) and the high-latitude fields have
  0.75-0.9 times its stars. Fields closer to the plane than `MIN_LATITUDE` are refused: the model has no
  extinction and no bulge.
- **Colours**: three populations, as in the SDSS colour-magnitude diagrams of Juric et al. (2008) and
  Ivezic et al. (2008): halo and thick-disc main-sequence turn-off stars (g - r ~ N(0.30, 0.08)), disc G and
  K dwarfs (g - r uniform in 0.4-1.2) and M dwarfs (r - i uniform in 0.6-1.8). All lie on the SDSS
  main-sequence stellar locus of Juric et al. (2008, ApJ 673, 864, eq. 1; `main_sequence_g_r`), with 0.03
  mag scatter in r - i (turn-off, G/K) or 0.05 in g - r (M). The turn-off fraction rises from 30 % at r = 16 to 60 % at
  r = 22, M dwarfs make 20 %, G/K dwarfs the rest. (A straight line through the Sun's colours, used before, lay
  0.02-0.05 mag bluer in r - i than the stars of the shared SDSS frames; BENCHMARKS.md, "Stars: the SDSS stellar
  locus and the Galaxy's structure".)
"""
import functools

import astropy.units as u
import numpy as np
from astropy.table import Table

N_AT_20 = 670.0
_BREAK = 18.0
_SLOPE_BRIGHT, _SLOPE_FAINT = 0.25, 0.12
BRIGHTEST_STAR = 10.0

# Juric et al. (2008) Table 10 (pc): the Sun, thin disc, thick disc (density relative to the thin disc at the
# Sun), halo (relative density, axis ratio, power-law index).
_SUN_R, _SUN_Z = 8000.0, 25.0
_THIN_H, _THIN_L = 300.0, 2600.0
_THICK_FRACTION, _THICK_H, _THICK_L = 0.12, 900.0, 3600.0
_HALO_FRACTION, _HALO_AXIS_RATIO, _HALO_INDEX = 0.0051, 0.64, 2.77
# Juric et al. (2008) eq. 2: M_r of a main-sequence star from its r - i.
_ABS_MAG_COEFFICIENTS = (4.0, 11.86, -10.74, 5.99, -1.20)
REFERENCE_LATITUDE = 60.0 * u.deg
MIN_LATITUDE = 20.0 * u.deg
_REFERENCE_LONGITUDES = np.linspace(0.0, 360.0, 72, endpoint=False)
_DISTANCE_GRID = np.logspace(0.0, 5.5, 1101)  # pc: the nearest M dwarf at r = 10 to a turn-off star at r > 24

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


def stellar_density(galactic_l, galactic_b, distance):
    """Star density of the Juric et al. (2008) Galaxy (module docstring) at ``distance`` (pc) in the direction
    ``galactic_l``, ``galactic_b`` (deg), relative to the thin disc's in the plane at the Sun."""
    l, b = np.radians(galactic_l), np.radians(galactic_b)
    distance = np.asarray(distance, dtype=float)
    in_plane = distance * np.cos(b)
    radius = np.hypot(_SUN_R - in_plane * np.cos(l), in_plane * np.sin(l))
    height = distance * np.sin(b) + _SUN_Z
    disc = (np.exp((_SUN_R - radius) / _THIN_L - np.abs(height) / _THIN_H)
            + _THICK_FRACTION * np.exp((_SUN_R - radius) / _THICK_L - np.abs(height) / _THICK_H))
    halo = _HALO_FRACTION * (_SUN_R / np.hypot(radius, height / _HALO_AXIS_RATIO)) ** _HALO_INDEX
    return disc + halo


def main_sequence_abs_mag(r_i):
    """Absolute r magnitude of a main-sequence star of ``r_i`` (Juric et al. 2008, eq. 2)."""
    x = np.asarray(r_i, dtype=float)
    return sum(c * x**k for k, c in enumerate(_ABS_MAG_COEFFICIENTS))


@functools.lru_cache(maxsize=1)
def _reference_density_grid():
    """`stellar_density` on `_DISTANCE_GRID` averaged over longitude at +-`REFERENCE_LATITUDE`."""
    return np.mean([stellar_density(l, sign * REFERENCE_LATITUDE.to_value(u.deg), _DISTANCE_GRID)
                    for l in _REFERENCE_LONGITUDES for sign in (1.0, -1.0)], axis=0)


def _density_ratio_at(centre, distance):
    """The star density at ``distance`` (pc) towards ``centre`` over the reference field's at that distance."""
    galactic = centre.galactic
    reference = np.exp(np.interp(np.log(distance), np.log(_DISTANCE_GRID), np.log(_reference_density_grid())))
    return stellar_density(galactic.l.to_value(u.deg), galactic.b.to_value(u.deg), distance) / reference


def density_ratio(centre, r_mag, r_i):
    """How many times the reference field's stars of ``r_mag`` and ``r_i`` a field at ``centre`` holds."""
    distance = 10.0 ** ((np.asarray(r_mag, dtype=float) - main_sequence_abs_mag(r_i)) / 5.0 + 1.0)
    return _density_ratio_at(centre, distance)


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


def field_stars(rng, area, r_faint, centre):
    """Draw the stars of one field: a table with ``r_mag``, ``g_mag``, ``i_mag`` and ``population``.

    Parameters
    ----------
    rng : `numpy.random.Generator`
    area : `~astropy.units.Quantity` [solid angle]
    r_faint : float
        Faintest r magnitude drawn.
    centre : `~astropy.coordinates.SkyCoord`
        The field's centre: its Galactic position sets the counts (module docstring).

    Raises
    ------
    ValueError
        ``centre`` is closer to the Galactic plane than `MIN_LATITUDE`.
    """
    latitude = abs(centre.galactic.b)
    if latitude < MIN_LATITUDE:
        raise ValueError(f"stars: the field at {centre.to_string('decimal')} lies at Galactic latitude "
                         f"{latitude.to_value(u.deg):.1f} deg; the star model holds at |b| >= {MIN_LATITUDE:g}")
    # The reference field's stars, thinned to the field's: drawn at the largest ratio any of them can have,
    # each kept in proportion to its own.
    most = float(np.max(_density_ratio_at(centre, _DISTANCE_GRID)))
    n = rng.poisson(expected_stars(area, BRIGHTEST_STAR, r_faint) * most)
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
    kept = rng.uniform(0.0, most, n) < density_ratio(centre, r_mag, r_i)
    table = Table({"r_mag": r_mag, "g_mag": r_mag + g_r, "i_mag": r_mag - r_i, "population": population})[kept]
    for band in ("g", "r", "i"):
        table[f"{band}_mag"].unit = u.mag
    return table

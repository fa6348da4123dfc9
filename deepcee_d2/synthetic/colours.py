"""Observed g - r and r - i colours, K-corrections and L* of galaxies at redshift z.

One colour model serves field galaxies and cluster members alike, so that a cluster stands out only by what
makes real clusters stand out (many galaxies of one red-sequence colour, concentrated on the sky), never by
a colour or profile that field galaxies lack.

- **Red sequence** (`red_sequence`): the SDSS DR8 red-sequence model of redMaPPer (Rykoff et al. 2014,
  ApJ 785, 104), i.e. the colour of the ridge line at the pivot i magnitude, its slope with magnitude and its
  intrinsic scatter, at the nodes of the calibration distributed with the redMaPPer code
  (``tests/data_for_tests/test_dr8_pars.fit`` of github.com/erykoff/redmapper, Apache-2.0; columns ``Z01``,
  ``C01``, ``C02``, ``SLOPE01``, ``SLOPE02``, ``REFMAG``, ``SIGMA``). At z = 0.1 / 0.2 the ridge line has
  g - r = 0.938 / 1.240 and r - i = 0.407 / 0.479. Hao et al. (2009, ApJ 702, 745) show that field red
  galaxies follow the same ridge line as cluster members, so field red galaxies use it too. Beyond the
  calibrated range (z > 0.6) the colour continues along the CWW elliptical template below, shifted to meet
  the calibration at z = 0.6.
- **Templates**: the Coleman, Wu & Weedman (1980) E, Sbc, Scd and Im spectra extended by GalSim
  (``CWW_*_ext.sed``), redshifted and integrated through the LSST g, r, i bandpasses that GalSim ships, which
  stand in for SDSS's (the E template gives g - r = 0.909 / 1.216 and r - i = 0.425 / 0.490 at z = 0.1 / 0.2,
  within 0.03 mag of the SDSS ridge line above, which bounds the error of the substitution). Blue galaxies
  take the Sbc, Scd or Im colours.
- **K-corrections** (`k_correction`): from the same templates, ``K(z) = m(SED at z) - m(SED at 0) +
  2.5 log10(1 + z)`` in the r band (Hogg et al. 2002, eq. 13 for a redshifted f_lambda spectrum).
- **L*** (`m_star`): ``M*_r(z) = -21.44 - 1.62 z`` (Blanton et al. 2003's r-band M* with its luminosity
  evolution Q = 1.62, as adopted by Wen, Han & Liu 2012 for R_L*), observed through the elliptical template:
  ``m* = M* + DM(z) + K_E(z)`` with the distance modulus of the cosmology passed in.
"""
import functools

import numpy as np
from scipy.interpolate import CubicSpline

from ..cosmology import DEFAULT_COSMOLOGY

# redMaPPer SDSS DR8 red-sequence calibration (see module docstring).
_RS_Z = np.array([0.05, 0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 0.40, 0.45, 0.50, 0.55, 0.60])
_RS_GR = np.array([0.812, 0.938, 1.075, 1.240, 1.392, 1.523, 1.621, 1.643, 1.645, 1.625, 1.603, 1.580])
_RS_RI = np.array([0.389, 0.407, 0.436, 0.479, 0.518, 0.551, 0.582, 0.638, 0.733, 0.850, 0.964, 1.062])
_RS_SLOPE_Z = np.array([0.05, 0.15, 0.25, 0.35, 0.45, 0.60])
_RS_SLOPE_GR = np.array([-0.005, -0.015, -0.018, -0.029, -0.029, -0.026])  # mag per i mag
_RS_SLOPE_RI = np.array([-0.004, -0.004, -0.003, -0.006, -0.008, -0.050])
_RS_PIVOT_I = np.array([15.686, 17.981, 18.935, 19.672, 19.796, 20.118])  # at _RS_SLOPE_Z
_RS_SCATTER_Z = np.array([0.05, 0.20, 0.35, 0.50, 0.60])
_RS_SCATTER_GR = np.array([0.042, 0.057, 0.103, 0.072, 0.065])
_RS_SCATTER_RI = np.array([0.019, 0.022, 0.032, 0.085, 0.107])
RED_SEQUENCE_Z_RANGE = (float(_RS_Z[0]), float(_RS_Z[-1]))

TEMPLATES = ("E", "Sbc", "Scd", "Im")
BLUE_TEMPLATES = ("Sbc", "Scd", "Im")
# Redshift grid on which template magnitudes are tabulated (interpolated linearly in between).
_Z_GRID = np.round(np.arange(0.0, 2.0001, 0.01), 2)

# Blanton et al. (2003) r-band M* and evolution, as used by WHL12 for L*.
M_STAR_R0 = -21.44
Q_EVOLUTION = 1.62


@functools.lru_cache(maxsize=1)
def _template_magnitudes():
    """AB magnitudes (same arbitrary normalisation) of each template at each grid redshift, per band."""
    import galsim

    bandpasses = {band: galsim.Bandpass(f"LSST_{band}.dat", wave_type="nm").withZeropoint("AB")
                  for band in ("g", "r", "i")}
    table = {}
    for name in TEMPLATES:
        sed = galsim.SED(f"CWW_{name}_ext.sed", wave_type="Angstrom", flux_type="flambda")
        table[name] = {band: np.array([sed.atRedshift(z).calculateMagnitude(bandpass) for z in _Z_GRID])
                       for band, bandpass in bandpasses.items()}
    return table


def template_colours(name, z):
    """Observed (g - r, r - i) of template ``name`` at redshift(s) ``z``."""
    mags = _template_magnitudes()[name]
    z = np.asarray(z, dtype=float)
    return (np.interp(z, _Z_GRID, mags["g"] - mags["r"]), np.interp(z, _Z_GRID, mags["r"] - mags["i"]))


def k_correction(name, z):
    """r-band K-correction (mag) of template ``name`` at redshift(s) ``z``: ``m = M + DM + K``."""
    mags = _template_magnitudes()[name]["r"]
    z = np.asarray(z, dtype=float)
    return np.interp(z, _Z_GRID, mags - mags[0]) + 2.5 * np.log10(1.0 + z)


@functools.lru_cache(maxsize=1)
def _ridge_splines():
    return CubicSpline(_RS_Z, _RS_GR), CubicSpline(_RS_Z, _RS_RI)


def red_sequence(z, i_mag=None):
    """Ridge-line (g - r, r - i) of the red sequence at redshift(s) ``z`` (and i magnitude(s) ``i_mag``).

    Parameters
    ----------
    z : float or array_like
        Redshift(s), 0 < z <= 2.
    i_mag : float or array_like, optional
        Observed i magnitudes; the ridge line tilts with magnitude by the calibrated slope around the pivot
        magnitude (bright galaxies are redder). None gives the colour at the pivot.

    Returns
    -------
    (g_r, r_i) : arrays
    """
    z = np.asarray(z, dtype=float)
    spline_gr, spline_ri = _ridge_splines()
    inside = np.clip(z, *RED_SEQUENCE_Z_RANGE)
    g_r, r_i = spline_gr(inside), spline_ri(inside)
    # Outside the calibration: follow the elliptical template, joined continuously at the end points.
    for edge in RED_SEQUENCE_Z_RANGE:
        beyond = (z > edge) if edge == RED_SEQUENCE_Z_RANGE[1] else (z < edge)
        if np.any(beyond):
            template_gr, template_ri = template_colours("E", z)
            edge_gr, edge_ri = template_colours("E", edge)
            g_r = np.where(beyond, template_gr - edge_gr + spline_gr(edge), g_r)
            r_i = np.where(beyond, template_ri - edge_ri + spline_ri(edge), r_i)
    if i_mag is not None:
        pivot = np.interp(inside, _RS_SLOPE_Z, _RS_PIVOT_I)
        offset = np.asarray(i_mag, dtype=float) - pivot
        g_r = g_r + np.interp(inside, _RS_SLOPE_Z, _RS_SLOPE_GR) * offset
        r_i = r_i + np.interp(inside, _RS_SLOPE_Z, _RS_SLOPE_RI) * offset
    return g_r, r_i


def red_sequence_scatter(z):
    """Intrinsic scatter (sigma_g-r, sigma_r-i) of the red sequence at redshift(s) ``z`` (mag)."""
    z = np.asarray(z, dtype=float)
    return np.interp(z, _RS_SCATTER_Z, _RS_SCATTER_GR), np.interp(z, _RS_SCATTER_Z, _RS_SCATTER_RI)


def distance_modulus(z, cosmology=DEFAULT_COSMOLOGY):
    """Distance modulus (mag) at redshift(s) ``z`` in ``cosmology``."""
    return np.asarray(cosmology.distmod(np.asarray(z, dtype=float)).value)


def m_star(z, cosmology=DEFAULT_COSMOLOGY):
    """Apparent r magnitude of an L* red galaxy at redshift(s) ``z`` (see module docstring)."""
    z = np.asarray(z, dtype=float)
    return M_STAR_R0 - Q_EVOLUTION * z + distance_modulus(z, cosmology) + k_correction("E", z)


def absolute_magnitude(r_mag, z, template, cosmology=DEFAULT_COSMOLOGY):
    """Rest-frame r absolute magnitude of galaxies of observed ``r_mag`` at ``z`` with SED ``template``.

    ``template`` is one name or an array of names (one per galaxy).
    """
    z = np.asarray(z, dtype=float)
    template = np.broadcast_to(np.asarray(template), z.shape)
    k = np.zeros(z.shape)
    for name in TEMPLATES:
        chosen = template == name
        if np.any(chosen):
            k[chosen] = k_correction(name, z[chosen])
    return np.asarray(r_mag, dtype=float) - distance_modulus(z, cosmology) - k

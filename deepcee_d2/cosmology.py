"""The one place that turns angles on the sky into physical lengths at a redshift, and back.

Deep-CEE measures everything physical (the 100 kpc matching radius, box sizes, centring errors) as proper
lengths at the cluster's redshift in the flat LCDM cosmology of ``cfg.DEEPCEE.COSMOLOGY`` (by default that of
the WHL12 catalogue, Wen, Han & Liu 2012). The cosmology is always an ``astropy.cosmology`` object passed in;
``DEFAULT_COSMOLOGY`` is the one built from the config's defaults.
"""
import astropy.units as u
from astropy.cosmology import FlatLambdaCDM

from .config import load_config


def cosmology_from_cfg(cfg):
    """Return the flat LCDM cosmology of ``cfg.DEEPCEE.COSMOLOGY`` (H0 in km/s/Mpc, OM0)."""
    options = cfg.DEEPCEE.COSMOLOGY
    return FlatLambdaCDM(H0=options.H0 * u.km / u.s / u.Mpc, Om0=options.OM0)


DEFAULT_COSMOLOGY = cosmology_from_cfg(load_config())


def proper_length(angle, z, cosmology=DEFAULT_COSMOLOGY):
    """Proper transverse length subtended by ``angle`` at redshift ``z``.

    Parameters
    ----------
    angle : `~astropy.units.Quantity` [angle]
        Angular separation(s).
    z : float or array_like
        Redshift(s), broadcast against ``angle``.
    cosmology : `~astropy.cosmology.FLRW`
        The cosmology to use.

    Returns
    -------
    `~astropy.units.Quantity` [kpc]
    """
    return (angle * cosmology.kpc_proper_per_arcmin(z)).to(u.kpc)


def angular_size(length, z, cosmology=DEFAULT_COSMOLOGY):
    """Angle subtended by the proper transverse ``length`` (e.g. ``100 * u.kpc``) at redshift ``z``.

    Returns
    -------
    `~astropy.units.Quantity` [arcsec]
    """
    return (length / cosmology.kpc_proper_per_arcmin(z)).to(u.arcsec)

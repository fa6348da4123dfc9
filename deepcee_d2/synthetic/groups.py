"""Groups: the poor systems below a catalogue's cut, which make field galaxies clustered.

Real galaxies are clustered: counts of r < 21 galaxies in 2' cells of the shared high-latitude SDSS frames
have variance / mean 2.1 against 1.0 for the simulator's uniform field (BENCHMARKS.md, "Real SDSS frames
against the simulator"), and a cluster finder trained without groups has never seen a clump of red galaxies
it must not report. Each field therefore holds groups, realised by the cluster model itself
(`clusters.realise_cluster`) and never labelled:

- **Abundance**: ``n(>R_L*) = 6 deg^-2 (R_L* / 12)^-1.2`` for 0.05 <= z < 0.45. WHL12 find 132,684 clusters
  of R_L* >= 12 over ~14,000 deg^2 at 0.05 <= z < 0.8 (9.5 deg^-2), about 60 % of them below z = 0.45. The
  slope follows the halo mass function at group masses (``n(>M) ~ M^-1`` at 10^13-10^14 M_sun) with richness
  growing slightly slower than mass. Down to R_L* = 2 this is ~52 groups per deg^2.
- **Redshift**: uniform in comoving volume within 0.05-0.45.
- **Below the cut**: a group is redrawn (richness halved each time) until its N200 is below ``max_members``,
  the N200 above which the truth labels clusters (`make_field`: the spec's ``min_members``, else WHL12's 8).
  The truth lists groups apart from clusters (``SyntheticField.groups``); their members carry the group's
  id, ``<field>-grp<k>``, in ``cluster_id``.
"""
import astropy.units as u
import numpy as np
from astropy.table import Table

from ..cosmology import DEFAULT_COSMOLOGY
from .clusters import realise_cluster

GROUPS_PER_DEG2_AT_12 = 6.0  # R_L* >= 12, 0.05 <= z < 0.45
RICHNESS_PIVOT = 12.0
RICHNESS_SLOPE = 1.2  # n(>R) ~ R^-1.2
MIN_RICHNESS = 2.0
Z_RANGE = (0.05, 0.45)
WHL12_MIN_MEMBERS = 8
_REDRAWS = 20


def expected_groups(area, min_richness=MIN_RICHNESS):
    """Expected number of groups with R_L* >= ``min_richness`` on ``area`` (Quantity, solid angle)."""
    return GROUPS_PER_DEG2_AT_12 * (min_richness / RICHNESS_PIVOT) ** -RICHNESS_SLOPE * area.to_value(u.deg**2)


def _draw_redshifts(rng, n, cosmology):
    grid = np.linspace(*Z_RANGE, 400)
    volume = cosmology.comoving_volume(grid).to_value(u.Mpc**3)
    return np.interp(rng.uniform(volume[0], volume[-1], n), volume, grid)


def field_groups(rng, positions, area, r_faint, max_members, name, cosmology=DEFAULT_COSMOLOGY):
    """Draw the groups of one field.

    Parameters
    ----------
    rng : `numpy.random.Generator`
    positions : callable
        ``positions(n)`` -> `~astropy.coordinates.SkyCoord` of ``n`` uniform positions over the field.
    area : `~astropy.units.Quantity` [solid angle]
        The area those positions cover.
    r_faint : float
        Faintest member drawn (r magnitude).
    max_members : int
        Groups have fewer members (N200) than this.
    name : str
        Field name; group ids are ``"<name>-grp<k>"``.

    Returns
    -------
    truths : list of dict
        One truth row per group (`clusters.realise_cluster`'s).
    members : list of `~astropy.table.Table`
        Their member galaxies.
    """
    n = rng.poisson(expected_groups(area))
    richness = MIN_RICHNESS * rng.uniform(0.0, 1.0, n) ** (-1.0 / RICHNESS_SLOPE)
    z = _draw_redshifts(rng, n, cosmology)
    centres = positions(n)
    truths, members = [], []
    for k in range(n):
        target = float(richness[k])
        for _ in range(_REDRAWS):
            truth, galaxies = realise_cluster(rng, centres[k], float(z[k]), target, f"{name}-grp{k}", r_faint,
                                              cosmology)
            if truth["n_members"] < max_members:
                break
            target = max(0.5 * target, MIN_RICHNESS)
        else:
            continue  # a poor system that keeps coming out rich is left out
        truths.append(truth)
        members.append(galaxies)
    return truths, members


def group_table(truths, columns):
    """The groups' truth rows as a table of ``columns`` (an empty one without groups)."""
    if not truths:
        return Table({name: [] for name in columns})
    return Table(rows=[[truth[name] for name in columns] for truth in truths], names=columns)

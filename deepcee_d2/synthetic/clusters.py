"""Galaxy clusters: a BCG, members from a Schechter luminosity function on a projected NFW profile.

A cluster is specified by its redshift and a target richness R_L* (Wen, Han & Liu 2012, WHL12: total
r-band luminosity of the members within r200, in units of L*) and realised as follows.

- **Size**: ``log10(r200 / Mpc) = -0.57 + 0.44 log10(R_L*)``, the WHL12 relation between r200 and the
  luminosity within 1 Mpc in L* units (their eq. 2), with the target R_L* standing in for that luminosity.
  R_L* = 20 gives r200 = 1.0 Mpc, R_L* = 100 gives 2.0 Mpc.
- **L***: ``m*(z)`` of `colours.m_star` (M*_r = -21.44 - 1.62 z observed through the elliptical template).
  Members count towards the richness when brighter than WHL12's evolution-corrected cut M_r = -20.5, i.e.
  0.94 mag below M*: ``L >= 0.42 L*``.
- **BCG**: a red galaxy at the cluster centre (the catalogue position, as in WHL12 and redMaPPer) of
  magnitude ``m* - 1.5 - 0.75 log10(R_L* / 20)`` with 0.3 mag scatter: BCGs are 1-2.5 mag brighter than L*
  and brighter in richer clusters (L_BCG growing as ~richness^0.3, as found by Hansen et al. 2009, ApJ 699,
  1333), and never fainter than the brightest satellite. Its half-light radius is 1.4 x the Shen et al.
  (2003) early-type size, since BCGs are larger than other ellipticals of the same luminosity (Bernardi et al.
  2007, AJ 133, 1741).
- **Satellites**: luminosities ``x = L / L*`` from a Schechter function with alpha = -1.0 (close to the
  alpha ~ -1 of the combined red and blue satellite luminosity function of maxBCG clusters, Hansen et al.
  2009), normalised so the satellites above the WHL12 cut within r200 carry the target R_L* minus the BCG's
  share (at least 20 % of the target), and drawn down to the survey's faint limit.
- **Positions**: a projected NFW profile (Navarro, Frenk & White 1997; projected form of Bartelmann 1996)
  with the galaxy concentration c = 2.9 of Lin, Mohr & Stanford (2004), scaled to r200 and drawn out to
  2 r200; the distribution is elliptical (axis ratio uniform in 0.6-1, random orientation: clusters are
  elongated) and its centre is offset from the BCG by a half-normal distance of scale 0.03 r200 (BCGs sit
  within a few tens of kpc of the halo centre). Proper kpc become angles through
  `deepcee_d2.cosmology.angular_size`.
- **Colours**: members are red-sequence galaxies at the cluster redshift except for a blue fraction
  ``f_blue = (0.05 + 0.5 (z - 0.05)) (1 + R / r200)`` (at most 0.8): ~5 % in the cores of z = 0.05 clusters
  rising to ~20 % at z = 0.4 (the Butcher & Oemler 1984 effect) and larger in the outskirts (Balogh et al.
  1997). Blue members are drawn like blue field galaxies (`galaxies.assign_properties`).

The truth records the richness *as realised*: ``richness`` is the sum of L/L* and ``n_members`` the number
of members (BCG included) above the cut within a projected r200 of the BCG, as WHL12 measure R_L* and N200.
"""
import functools
from dataclasses import dataclass

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table

from ..cosmology import DEFAULT_COSMOLOGY, angular_size
from .colours import RED_SEQUENCE_Z_RANGE, m_star
from .galaxies import assign_properties

Z_LIMITS = RED_SEQUENCE_Z_RANGE  # the calibrated red sequence, 0.05-0.6
PLACEMENTS = ("centre", "random")
SCHECHTER_ALPHA = -1.0
CONCENTRATION = 2.9
MAX_RADIUS_R200 = 2.0
RICHNESS_CUT_MAG = 0.94  # below m*: WHL12's M_r <= -20.5 against M*_r = -21.44
BCG_SIZE_FACTOR = 1.4
_BCG_OFFSET_R200 = 0.03
_MAX_ATTEMPTS = 200


def r200_from_richness(richness):
    """r200 (Quantity, Mpc) for a richness R_L*: ``log10 r200 = -0.57 + 0.44 log10 R_L*`` (WHL12)."""
    return 10.0 ** (-0.57 + 0.44 * np.log10(np.asarray(richness, dtype=float))) * u.Mpc


@dataclass(frozen=True)
class ClusterSpec:
    """How many clusters each field gets, which, and where.

    Parameters
    ----------
    per_field : int
        Clusters per field.
    z_range : tuple of float
        Redshifts are uniform in this range, within 0.05-0.6 (the calibrated red sequence).
    richness_range : tuple of float
        Target R_L* (WHL12 richness), drawn uniform in log between the two values.
    min_members : int
        Clusters whose realised N200 (`n_members`) falls below this are drawn again (new z and richness).
    placement : str
        ``"centre"``: the first cluster's BCG at the field centre (for training cutouts with offsets around
        it), the others (neighbours that may fall inside those cutouts, also near their edges) placed as
        ``"random"`` places them: uniform over the field within ``edge_margin`` of the edges, no two
        closer than ``min_separation``. The centre cluster is the first row (id ``<field>-c0``).
    min_separation : `~astropy.units.Quantity` [angle]
        Smallest separation between BCGs of one field (``"random"``).
    edge_margin : `~astropy.units.Quantity` [angle]
        Smallest distance of a BCG from the field edge (``"random"``); 0 allows clusters cut by the edge.
    """

    per_field: int = 1
    z_range: tuple = (0.05, 0.4)
    richness_range: tuple = (20.0, 100.0)
    min_members: int = 0
    placement: str = "centre"
    min_separation: u.Quantity = 300 * u.arcsec
    edge_margin: u.Quantity = 0 * u.arcsec

    def __post_init__(self):
        object.__setattr__(self, "z_range", tuple(float(z) for z in self.z_range))
        object.__setattr__(self, "richness_range", tuple(float(r) for r in self.richness_range))
        object.__setattr__(self, "min_separation", u.Quantity(self.min_separation, u.arcsec))
        object.__setattr__(self, "edge_margin", u.Quantity(self.edge_margin, u.arcsec))
        if int(self.per_field) != self.per_field or self.per_field < 0:
            raise ValueError(f"clusters per field must be a non-negative integer, got {self.per_field}")
        check_redshifts(self.z_range, "z_range")
        if len(self.z_range) != 2 or self.z_range[0] > self.z_range[1]:
            raise ValueError(f"z_range must be (z_min, z_max) with z_min <= z_max, got {self.z_range}")
        low, high = self.richness_range
        if not (0 < low <= high):
            raise ValueError(f"richness_range must be 0 < min <= max, got {self.richness_range}")
        if self.min_members < 0:
            raise ValueError(f"min_members must be >= 0, got {self.min_members}")
        if self.placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {PLACEMENTS}, got {self.placement!r}")
        if self.min_separation < 0 or self.edge_margin < 0:
            raise ValueError("min_separation and edge_margin must be >= 0")


def add_cluster_arguments(group, placement, placement_help, separation_help, edge_help):
    """Add the command-line options of a `ClusterSpec` to an argparse ``group`` (the synthetic sky's and the
    injection's commands share them; ``placement`` is the default placement, the helps say what the
    separation and edge margin are measured over). `cluster_spec_from_args` reads them back."""
    group.add_argument("--clusters-per-field", type=int, default=1)
    group.add_argument("--cluster-placement", choices=["centre", "random"], default=placement, help=placement_help)
    group.add_argument("--z-range", type=float, nargs=2, default=[0.05, 0.4], metavar=("ZMIN", "ZMAX"))
    group.add_argument("--richness-range", type=float, nargs=2, default=[20.0, 100.0], metavar=("MIN", "MAX"),
                       help="target R_L* (WHL12 richness), log-uniform (default 20 100)")
    group.add_argument("--min-members", type=int, default=0, help="redraw clusters with N200 below this")
    group.add_argument("--min-separation", type=float, default=300.0, help=separation_help)
    group.add_argument("--edge-margin", type=float, default=0.0, help=edge_help)


def cluster_spec_from_args(args):
    """The `ClusterSpec` of options added by `add_cluster_arguments`."""
    return ClusterSpec(per_field=args.clusters_per_field, z_range=tuple(args.z_range),
                       richness_range=tuple(args.richness_range), min_members=args.min_members,
                       placement=args.cluster_placement, min_separation=args.min_separation * u.arcsec,
                       edge_margin=args.edge_margin * u.arcsec)


def check_redshifts(z, name="z"):
    """Raise ValueError naming ``name`` if any redshift lies outside `Z_LIMITS`."""
    z = np.atleast_1d(np.asarray(z, dtype=float))
    bad = ~((z >= Z_LIMITS[0]) & (z <= Z_LIMITS[1]))
    if bad.any():
        raise ValueError(f"{name}: redshift {z[bad][0]:g} is outside the simulator's range "
                         f"{Z_LIMITS[0]}-{Z_LIMITS[1]} (the calibrated SDSS red sequence)")


def _projected_nfw_cumulative(x):
    """Projected NFW number within ``x = R / r_s`` (arbitrary normalisation), Bartelmann (1996)."""
    x = np.asarray(x, dtype=float)
    out = np.log(x / 2.0)
    below, above = x < 1.0, x > 1.0
    out[below] += np.arccosh(1.0 / x[below]) / np.sqrt(1.0 - x[below] ** 2)
    out[above] += np.arccos(1.0 / x[above]) / np.sqrt(x[above] ** 2 - 1.0)
    out[~(below | above)] += 1.0
    return out


@functools.lru_cache(maxsize=1)
def _projected_nfw_table(concentration=CONCENTRATION, max_radius=MAX_RADIUS_R200):
    """Radii (units of r200) and projected NFW cumulative numbers out to ``max_radius``."""
    x = np.linspace(1e-4, max_radius, 4000) * concentration
    cumulative = np.concatenate([[0.0], _projected_nfw_cumulative(x)[1:] - _projected_nfw_cumulative(x[:1])])
    return x / concentration, cumulative


def fraction_within_r200():
    """Fraction of the members drawn (out to 2 r200) that lie within a projected r200."""
    radius, cumulative = _projected_nfw_table()
    return float(np.interp(1.0, radius, cumulative) / cumulative[-1])


def projected_fraction(radius_r200):
    """Fraction of a cluster's members within a projected r200 that lie within ``radius_r200`` (projected,
    units of r200; above 1 beyond r200): the projected NFW profile the members are drawn from, which ends at
    `MAX_RADIUS_R200`."""
    radius, cumulative = _projected_nfw_table()
    return np.interp(radius_r200, radius, cumulative) / np.interp(1.0, radius, cumulative)


def _draw_projected_radii(rng, n):
    """Projected radii (units of r200) from the projected NFW profile, out to 2 r200."""
    radius, cumulative = _projected_nfw_table()
    return np.interp(rng.uniform(0.0, cumulative[-1], n), cumulative, radius)


def _schechter_grid(x_min, x_max):
    x = np.geomspace(x_min, x_max, 3000)
    return x, x**SCHECHTER_ALPHA * np.exp(-x)


def _draw_luminosities(rng, n, x_min, x_max):
    x, density = _schechter_grid(x_min, x_max)
    cumulative = np.concatenate([[0.0], np.cumsum(np.diff(x) * 0.5 * (density[1:] + density[:-1]))])
    return np.interp(rng.uniform(0.0, cumulative[-1], n), cumulative, x)


def _integral(x_low, x_high, power):
    """``integral of x^(alpha + power) e^-x`` from x_low to x_high (numerical)."""
    x, density = _schechter_grid(x_low, x_high)
    return float(np.trapezoid(density * x**power, x))


def blue_fraction(z, radius_r200):
    """Fraction of blue members at redshift ``z`` and projected radius (units of r200) (module docstring)."""
    return np.minimum((0.05 + 0.5 * (z - 0.05)) * (1.0 + np.asarray(radius_r200, dtype=float)), 0.8)


def realise_cluster(rng, bcg, z, richness_target, cluster_id, r_faint, cosmology=DEFAULT_COSMOLOGY):
    """Draw one cluster around a BCG position.

    Parameters
    ----------
    rng : `numpy.random.Generator`
    bcg : `~astropy.coordinates.SkyCoord`
        Position of the BCG (the cluster centre of the truth).
    z : float
        Redshift, within `Z_LIMITS`.
    richness_target : float
        Target R_L*.
    cluster_id : str
        Identifier written to the truth and to every member's ``cluster_id``.
    r_faint : float
        Faintest member drawn (r magnitude).
    cosmology : `~astropy.cosmology.FLRW`

    Returns
    -------
    truth : dict
        The cluster's truth row (cluster schema + extras, see `make_field`).
    members : `~astropy.table.Table`
        Member galaxies, BCG first, with ``ra``, ``dec`` and the galaxy columns.
    """
    check_redshifts(z)
    if not richness_target > 0:
        raise ValueError(f"{cluster_id}: richness must be positive, got {richness_target}")
    r200 = r200_from_richness(richness_target)
    m_star_r = float(m_star(z, cosmology))
    x_cut = 10.0 ** (-0.4 * RICHNESS_CUT_MAG)
    x_faint = 10.0 ** (-0.4 * (r_faint - m_star_r))
    m_bcg = m_star_r - 1.5 - 0.75 * np.log10(richness_target / 20.0) + 0.3 * rng.standard_normal()
    x_bcg = 10.0 ** (-0.4 * (m_bcg - m_star_r))

    satellite_luminosity = max(richness_target - x_bcg, 0.2 * richness_target)
    phi_star = satellite_luminosity / _integral(x_cut, x_bcg, power=1.0)
    n_expected = phi_star * _integral(min(x_faint, x_cut), x_bcg, power=0.0) / fraction_within_r200()
    n = rng.poisson(n_expected)
    x = _draw_luminosities(rng, n, min(x_faint, x_cut), x_bcg)
    radii = _draw_projected_radii(rng, n)

    # Elliptical distribution around a halo centre offset from the BCG; offsets in proper kpc (east, north).
    axis_ratio = rng.uniform(0.6, 1.0)
    orientation = rng.uniform(0.0, np.pi)
    phase = rng.uniform(0.0, 2 * np.pi, n)
    major, minor = radii * np.cos(phase) / np.sqrt(axis_ratio), radii * np.sin(phase) * np.sqrt(axis_ratio)
    r200_kpc = r200.to_value(u.kpc)
    east = (major * np.sin(orientation) + minor * np.cos(orientation)) * r200_kpc
    north = (major * np.cos(orientation) - minor * np.sin(orientation)) * r200_kpc
    halo_distance = abs(rng.normal(0.0, _BCG_OFFSET_R200)) * r200_kpc
    halo_angle = rng.uniform(0.0, 2 * np.pi)
    halo_east, halo_north = halo_distance * np.sin(halo_angle), halo_distance * np.cos(halo_angle)
    east, north = east + halo_east, north + halo_north

    # BCG first, then the satellites (r magnitudes from luminosities).
    r_mag = np.concatenate([[m_bcg], m_star_r - 2.5 * np.log10(x)])
    east, north = np.concatenate([[0.0], east]), np.concatenate([[0.0], north])
    distance_r200 = np.hypot(east, north) / r200_kpc
    red = rng.uniform(0.0, 1.0, n + 1) >= blue_fraction(z, distance_r200)
    red[0] = True
    members = Table({"r_mag": r_mag, "z": np.full(n + 1, float(z)), "red": red})
    assign_properties(rng, members, cosmology)
    members["half_light_radius"][0] *= BCG_SIZE_FACTOR
    offsets = angular_size(np.stack([east, north]) * u.kpc, z, cosmology)
    positions = bcg.spherical_offsets_by(offsets[0], offsets[1])
    positions = SkyCoord(np.concatenate([[bcg.ra.deg], positions.ra.deg[1:]]) * u.deg,
                         np.concatenate([[bcg.dec.deg], positions.dec.deg[1:]]) * u.deg)
    members["ra"], members["dec"] = positions.ra.to(u.deg), positions.dec.to(u.deg)
    members["cluster_id"] = np.full(n + 1, cluster_id)
    members["bcg"] = np.arange(n + 1) == 0
    members["distance_r200"] = distance_r200

    luminosity = 10.0 ** (-0.4 * (r_mag - m_star_r))
    counted = (distance_r200 <= 1.0) & (luminosity >= x_cut)
    halo = bcg.spherical_offsets_by(*angular_size([halo_east, halo_north] * u.kpc, z, cosmology))
    truth = {
        "id": cluster_id, "ra": bcg.ra.deg, "dec": bcg.dec.deg, "z": float(z),
        "richness": float(luminosity[counted].sum()), "n_members": int(counted.sum()), "bcg_rmag": float(m_bcg),
        "bcg_ra": bcg.ra.deg, "bcg_dec": bcg.dec.deg, "r200": float(r200.to_value(u.Mpc)),
        "richness_target": float(richness_target), "n_galaxies": int(n + 1),
        "r200_arcsec": float(angular_size(r200, z, cosmology).to_value(u.arcsec)),
        "m_star_r": m_star_r, "halo_ra": float(halo.ra.deg), "halo_dec": float(halo.dec.deg),
        "concentration": CONCENTRATION, "axis_ratio": float(axis_ratio),
        "position_angle": float(np.degrees(orientation)),
        "blue_fraction": float(1.0 - members["red"][counted].mean()) if counted.any() else 0.0,
    }
    return truth, members


def draw_cluster_parameters(rng, spec):
    """One (z, target richness) pair from ``spec``: z uniform, richness uniform in log."""
    z = rng.uniform(*spec.z_range)
    log_low, log_high = np.log10(spec.richness_range)
    return float(z), float(10.0 ** rng.uniform(log_low, log_high))


def realise_from_spec(rng, spec, bcg, cluster_id, r_faint, cosmology=DEFAULT_COSMOLOGY):
    """`realise_cluster` with z and richness drawn from ``spec``, redrawn until N200 >= ``spec.min_members``.

    Raises
    ------
    ValueError
        When no draw reaches ``min_members`` in 200 attempts (the richness range is too poor for it).
    """
    for _ in range(_MAX_ATTEMPTS):
        z, richness = draw_cluster_parameters(rng, spec)
        truth, members = realise_cluster(rng, bcg, z, richness, cluster_id, r_faint, cosmology)
        if truth["n_members"] >= spec.min_members:
            return truth, members
    raise ValueError(f"min_members={spec.min_members}: no cluster with that many members in {_MAX_ATTEMPTS} "
                     f"draws from richness_range={spec.richness_range}; raise the richness range")

"""One synthetic SDSS field in memory: g, r, i images in nanomaggies, their WCS and the truth.

`make_field` draws, in this order and each from its own child of the seed (so changing one ingredient, e.g.
switching stars off, leaves the others' draws unchanged): the PSF per band, the clusters (positions,
then members), the field galaxies, the stars, the noise of each band, the background structure and
cosmic rays (`artefacts`), and the groups below the clusters' cut (`groups`). It then renders every band with GalSim (`render`), adds SDSS noise and saturation
(`instrument`) and then the artefacts.
"""
from dataclasses import dataclass, field as dataclass_field

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table, vstack
from astropy.wcs import WCS

from ..cosmology import DEFAULT_COSMOLOGY
from ..data.catalogs import CLUSTER_COLUMNS, COLUMN_UNITS, check_cluster_table
from ..data.frames import SYNTHETIC_ORIGIN
from ..sky import cutout_grid
from . import render
from .clusters import ClusterSpec, check_redshifts, realise_cluster, realise_from_spec
from . import artefacts as artefact_model
from . import galaxies as galaxy_model
from . import groups as group_model
from . import stars as star_model
from .instrument import (
    BANDS,
    EXPOSURE_TIME,
    GAIN,
    DARK_VARIANCE,
    NMGY_PER_COUNT,
    PIXEL_SCALE,
    SATURATION_DN,
    ZERO_POINT,
    add_noise,
    check_bands,
    draw_psfs,
    point_source_depth,
    sky_level,
)

DEFAULT_MAG_LIMIT = 23.5  # r; one magnitude below the 5-sigma depth, so the faintest add unresolved texture
_EDGE_PAD = 16  # pixels: sources centred this far outside the field still spill light into it
_PLACEMENT_ATTEMPTS = 2000
# Extra truth columns written after the cluster schema (see clusters.realise_cluster).
GALAXY_TABLE_COLUMNS = galaxy_model.GALAXY_COLUMNS + ("bcg", "distance_r200")
GROUP_COLUMNS = ("id", "ra", "dec", "z", "richness", "n_members", "bcg_rmag", "r200", "richness_target",
                 "n_galaxies", "r200_arcsec")
CLUSTER_EXTRAS = ("field", "x", "y", "richness_target", "n_galaxies", "r200_arcsec", "m_star_r", "halo_ra",
                  "halo_dec", "concentration", "axis_ratio", "position_angle", "blue_fraction")


@dataclass
class SyntheticField:
    """A synthetic field: one image per band plus the truth.

    Attributes
    ----------
    name : str
        Field name (prefix of its cluster ids).
    images : dict of str -> (ny, nx) float32 array
        Sky-subtracted images in nanomaggies per pixel.
    wcs : `~astropy.wcs.WCS`
        Celestial TAN WCS shared by all bands (north up, east left).
    psf : dict of str -> `~deepcee_d2.synthetic.instrument.PSF`
        The PSF of each band.
    clusters : `~astropy.table.Table`
        Truth: the cluster schema (``CLUSTER_COLUMNS``) plus ``field``, the BCG pixel position ``x``, ``y``
        (0-based, astropy convention) and the simulator's extras.
    galaxies : `~astropy.table.Table`
        Every galaxy drawn (field galaxies, cluster and group members; ``cluster_id`` empty for the field,
        the cluster's or group's id for members), with ``x``, ``y`` pixel positions.
    groups : `~astropy.table.Table`
        Truth of the unlabelled groups (`groups`), ``GROUP_COLUMNS``.
    stars : `~astropy.table.Table`
        Every star drawn.
    seed : int
        The seed that made it.
    noise : bool
        Whether the images carry noise.
    artefacts : bool
        Whether the images carry background structure and cosmic rays.
    """

    name: str
    images: dict
    wcs: WCS
    psf: dict
    clusters: Table
    galaxies: Table
    stars: Table
    groups: Table
    seed: int
    noise: bool = True
    artefacts: bool = True
    bands: tuple = dataclass_field(default=BANDS)

    @property
    def seeing(self):
        """PSF FWHM per band, arcsec."""
        return {band: psf.fwhm for band, psf in self.psf.items()}

    def header(self, band):
        """FITS header of the band's frame: WCS and the SDSS-like keys (no date or other volatile value)."""
        header = self.wcs.to_header()
        cards = {
            "FILTER": (band, "SDSS band"),
            "BUNIT": ("nanomaggy", "flux per pixel; m = 22.5 - 2.5 log10(flux)"),
            "PIXSCALE": (PIXEL_SCALE.to_value(u.arcsec), "arcsec per pixel"),
            "SEEING": (self.psf[band].fwhm, "PSF core FWHM, arcsec"),
            "PSFBETA": (self.psf[band].beta, "PSF Moffat beta"),
            "PSFELLIP": (self.psf[band].ellipticity, "PSF ellipticity 1 - b/a"),
            "PSFPA": (self.psf[band].angle, "PSF major axis, deg east of north"),
            "PSFWING": (self.psf[band].wing, "fraction of the light in the PSF aureole"),
            "SKYLEVEL": (round(sky_level(band), 6), "sky subtracted, nanomaggies per pixel"),
            "ZEROPT": (ZERO_POINT, "AB magnitude of 1 nanomaggy"),
            "EXPTIME": (EXPOSURE_TIME.to_value(u.s), "seconds"),
            "NMGY": (NMGY_PER_COUNT[band], "nanomaggies per count (DN)"),
            "GAIN": (GAIN[band], "electrons per DN"),
            "DARKVAR": (DARK_VARIANCE[band], "dark variance, DN^2"),
            "SATURATE": (SATURATION_DN, "saturation, DN including the sky"),
            "NOISE": (self.noise, "sky Poisson and read noise added"),
            "ARTEFACT": (self.artefacts, "background structure and cosmic rays added"),
            "FIELD": (self.name, "synthetic field name"),
            "SIMSEED": (int(self.seed), "seed of deepcee_d2.synthetic.make_field"),
            "ORIGIN": (SYNTHETIC_ORIGIN, "GalSim synthetic SDSS sky"),
        }
        for key, value in cards.items():
            header[key] = value
        return header

    def hdu(self, band):
        """The band's frame as a float32 `~astropy.io.fits.PrimaryHDU`."""
        return fits.PrimaryHDU(np.asarray(self.images[band], dtype=np.float32), self.header(band))

    def depth(self, band, nsigma=5.0):
        """Model ``nsigma`` point-source depth (AB mag) of the band at this field's seeing."""
        return point_source_depth(band, self.psf[band], nsigma)


def field_wcs(centre, nx, ny):
    """North-up, east-left TAN WCS at 0.396"/px with ``centre`` at the image centre (FITS pixel (n+1)/2).

    The data module's cutout grid, made rectangular.
    """
    wcs = cutout_grid(centre, nx, PIXEL_SCALE)
    wcs.wcs.crpix = [(nx + 1) / 2, (ny + 1) / 2]
    wcs.pixel_shape = (nx, ny)
    wcs.wcs.set()
    return wcs


def _check_size(value, name):
    if isinstance(value, bool) or int(value) != value or value <= 0:
        raise ValueError(f"{name}: the field size must be a positive number of pixels, got {value}")
    return int(value)


def _check_centre(centre):
    if not isinstance(centre, SkyCoord) or not centre.isscalar:
        raise ValueError(f"centre: need one astropy SkyCoord, got {type(centre).__name__}")
    return centre.icrs


def _check_seeing(seeing, bands):
    missing = [band for band in bands if band not in seeing]
    if missing:
        raise ValueError(f"seeing: no FWHM for band(s) {missing}")
    for band in bands:
        if not float(seeing[band]) > 0:
            raise ValueError(f"seeing: FWHM of band {band} must be positive, got {seeing[band]}")
    return {band: float(seeing[band]) for band in bands}


def _place_clusters(rng, spec, wcs, nx, ny):
    """BCG positions (SkyCoord) for ``spec``: random with separation and margin, the first at the field centre
    for ``"centre"`` (then one centred cluster draws nothing from ``rng``)."""
    if spec.per_field == 0:
        return SkyCoord([] * u.deg, [] * u.deg)
    margin = (spec.edge_margin / PIXEL_SCALE).to_value(u.dimensionless_unscaled)
    separation = (spec.min_separation / PIXEL_SCALE).to_value(u.dimensionless_unscaled)
    placed = [((nx - 1) / 2, (ny - 1) / 2)] if spec.placement == "centre" else []
    if len(placed) < spec.per_field and 2 * margin >= min(nx, ny) - 1:
        raise ValueError(f"edge_margin: {spec.edge_margin} leaves no room in a {nx} x {ny} field")
    for _ in range(_PLACEMENT_ATTEMPTS):
        if len(placed) == spec.per_field:
            xy = np.array(placed)
            return wcs.pixel_to_world(xy[:, 0], xy[:, 1])
        x = rng.uniform(margin, nx - 1 - margin)
        y = rng.uniform(margin, ny - 1 - margin)
        if all(np.hypot(x - px, y - py) >= separation for px, py in placed):
            placed.append((x, y))
    raise ValueError(f"cannot place {spec.per_field} clusters at least {spec.min_separation} apart "
                     f"(edge margin {spec.edge_margin}) in a {nx} x {ny} px field; lower min_separation")


def _clusters_from_table(table, wcs, nx, ny):
    """Check a table of requested clusters (ra, dec [deg], z, richness) and return its positions."""
    missing = [name for name in ("ra", "dec", "z", "richness") if name not in table.colnames]
    if missing:
        raise ValueError(f"clusters table: missing column(s) {missing}; need ra, dec (deg), z, richness")
    check_redshifts(table["z"], "clusters table z")
    richness = np.asarray(table["richness"], dtype=float)
    if not np.all(richness > 0):
        raise ValueError("clusters table richness: must be positive")
    unit = table["ra"].unit or u.deg
    coords = SkyCoord(u.Quantity(table["ra"], unit), u.Quantity(table["dec"], table["dec"].unit or u.deg))
    x, y = wcs.world_to_pixel(coords)
    outside = ~((x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5))
    if outside.any():
        first = coords[np.nonzero(outside)[0][0]]
        raise ValueError(f"clusters table: position {first.to_string('decimal', precision=5)} lies outside "
                         f"the {nx} x {ny} px field")
    return coords


def _empty_cluster_table():
    table = Table({name: [] for name in CLUSTER_COLUMNS + CLUSTER_EXTRAS})
    table["id"] = table["id"].astype(str)
    table["field"] = table["field"].astype(str)
    for name, unit in COLUMN_UNITS.items():
        table[name].unit = unit
    return table


def _cluster_table(rows):
    if not rows:
        return _empty_cluster_table()
    table = Table(rows=[[row[name] for name in CLUSTER_COLUMNS + CLUSTER_EXTRAS] for row in rows],
                  names=CLUSTER_COLUMNS + CLUSTER_EXTRAS)
    return check_cluster_table(table, "synthetic truth")


def make_field(centre, nx=2048, ny=2048, clusters=ClusterSpec(), seed=0, bands=BANDS, name="synthetic",
               field_galaxies=True, stars=True, noise=True, artefacts=True, seeing=None,
               mag_limit=DEFAULT_MAG_LIMIT, cosmology=DEFAULT_COSMOLOGY):
    """Make one synthetic SDSS field in memory.

    Parameters
    ----------
    centre : `~astropy.coordinates.SkyCoord`
        Sky position of the field centre.
    nx, ny : int
        Image size in pixels (0.396" each); 2048 x 2048 covers 13.5' x 13.5'.
    clusters : `ClusterSpec`, `~astropy.table.Table` or None
        A specification (how many, which redshifts and richnesses, where), or a table with one row per
        cluster to put exactly there: ``ra``, ``dec`` (deg, the BCG), ``z``, ``richness`` (target R_L*);
        None for no clusters.
    seed : int
        Everything drawn follows from it: the same seed gives identical images and tables.
    bands : sequence of str
        Bands to render, among ``"g"``, ``"r"``, ``"i"`` (the truth tables do not depend on it).
    name : str
        Field name; cluster ids are ``"<name>-c<k>"``.
    field_galaxies, stars : bool
        Whether to draw field galaxies (with the groups below the clusters' cut, `groups`) and stars (switch
        off to render clusters alone, e.g. in tests). Groups have fewer members (N200) than the spec's
        ``min_members``, or than WHL12's catalogue cut of 8 when the spec sets none or a table is given.
    noise : bool
        Whether to add sky, Poisson and read noise (and saturation).
    artefacts : bool
        Whether to add background structure and cosmic rays (`artefacts`).
    seeing : dict of str -> float, optional
        PSF FWHM (arcsec) per band; by default drawn from the SDSS seeing distribution. The PSF's shape
        (Moffat beta, ellipticity, angle) is drawn either way.
    mag_limit : float
        Faintest r magnitude of the galaxies and stars drawn.
    cosmology : `~astropy.cosmology.FLRW`
        For distances, sizes and angles.

    Returns
    -------
    SyntheticField

    Raises
    ------
    ValueError
        Non-positive size, unknown band, redshift outside 0.05-0.6, a cluster position outside the field,
        impossible placement, bad seeing.
    """
    centre = _check_centre(centre)
    nx, ny = _check_size(nx, "nx"), _check_size(ny, "ny")
    bands = check_bands(bands)
    if not 15.0 <= mag_limit <= 27.0:
        raise ValueError(f"mag_limit: {mag_limit} is outside 15-27")
    wcs = field_wcs(centre, nx, ny)
    streams = [np.random.default_rng(child) for child in np.random.SeedSequence(int(seed)).spawn(8)]
    seeing_rng, placement_rng, cluster_rng, galaxy_rng, star_rng, noise_rng, artefact_rng, group_rng = streams
    psfs = draw_psfs(seeing_rng, bands, _check_seeing(seeing, bands) if seeing is not None else None)

    rows, members = [], []
    if isinstance(clusters, Table):
        positions = _clusters_from_table(clusters, wcs, nx, ny)
        for k, (position, z, richness) in enumerate(zip(positions, clusters["z"], clusters["richness"])):
            truth, galaxies = realise_cluster(cluster_rng, position, float(z), float(richness), f"{name}-c{k}",
                                              mag_limit, cosmology)
            rows.append(truth)
            members.append(galaxies)
    elif isinstance(clusters, ClusterSpec):
        for k, position in enumerate(_place_clusters(placement_rng, clusters, wcs, nx, ny)):
            truth, galaxies = realise_from_spec(cluster_rng, clusters, position, f"{name}-c{k}", mag_limit, cosmology)
            rows.append(truth)
            members.append(galaxies)
    elif clusters is not None:
        raise ValueError(f"clusters: need a ClusterSpec, an astropy Table or None, got {type(clusters).__name__}")
    for row in rows:
        row["field"] = name
        row["x"], row["y"] = (float(v) for v in wcs.world_to_pixel(SkyCoord(row["ra"] * u.deg, row["dec"] * u.deg)))

    padded_area = (nx + 2 * _EDGE_PAD) * (ny + 2 * _EDGE_PAD) * PIXEL_SCALE**2
    galaxies = (galaxy_model.field_galaxies(galaxy_rng, padded_area, mag_limit, cosmology) if field_galaxies
                else Table())
    _scatter_positions(galaxy_rng, galaxies, wcs, nx, ny)
    galaxies["cluster_id"] = np.full(len(galaxies), "", dtype="U32")
    galaxies["bcg"] = np.zeros(len(galaxies), dtype=bool)
    galaxies["distance_r200"] = np.full(len(galaxies), np.nan)
    group_truths = []
    if field_galaxies:
        max_members = (clusters.min_members if isinstance(clusters, ClusterSpec) and clusters.min_members > 0
                       else group_model.WHL12_MIN_MEMBERS)

        def uniform_positions(n):
            return wcs.pixel_to_world(group_rng.uniform(-0.5 - _EDGE_PAD, nx - 0.5 + _EDGE_PAD, n),
                                      group_rng.uniform(-0.5 - _EDGE_PAD, ny - 0.5 + _EDGE_PAD, n))

        group_truths, group_members = group_model.field_groups(group_rng, uniform_positions, padded_area, mag_limit,
                                                               max_members, name, cosmology)
        members = members + group_members
    for table in members:
        table["x"], table["y"] = wcs.world_to_pixel(SkyCoord(table["ra"], table["dec"]))
    galaxies = _stack(([galaxies] if len(galaxies) else []) + members)
    galaxies["id"] = np.array([f"{name}-g{k}" for k in range(len(galaxies))], dtype=str)
    galaxies = galaxies[[c for c in GALAXY_TABLE_COLUMNS if c in galaxies.colnames]]

    star_table = star_model.field_stars(star_rng, padded_area, mag_limit) if stars else Table()
    _scatter_positions(star_rng, star_table, wcs, nx, ny)
    star_table["id"] = np.array([f"{name}-s{k}" for k in range(len(star_table))], dtype=str)
    star_table = star_table[[c for c in star_model.STAR_COLUMNS if c in star_table.colnames]]

    noise_seeds = noise_rng.integers(0, 2**31 - 1, len(BANDS))
    background = artefact_model.draw_background(artefact_rng, nx, ny, bands) if artefacts else None
    cosmic_ray_rngs = dict(zip(BANDS, artefact_rng.spawn(len(BANDS))))
    images = {}
    for band in bands:
        image = render.new_image(nx, ny)
        if len(galaxies):
            render.draw_galaxies(image, galaxies, band, psfs[band])
        if len(star_table):
            render.draw_stars(image, star_table, band, psfs[band])
        pixels = render.add_psf_wing(image.array.astype(np.float64), psfs[band])
        if noise:
            add_noise(pixels, band, noise_seeds[BANDS.index(band)])
        if artefacts:
            pixels += background[band] + artefact_model.draw_cosmic_rays(cosmic_ray_rngs[band], nx, ny, band)
        images[band] = pixels.astype(np.float32)
    return SyntheticField(name=name, images=images, wcs=wcs, psf=psfs, clusters=_cluster_table(rows),
                          galaxies=galaxies, stars=star_table,
                          groups=group_model.group_table(group_truths, GROUP_COLUMNS), seed=int(seed),
                          noise=bool(noise),
                          artefacts=bool(artefacts), bands=bands)


def _scatter_positions(rng, table, wcs, nx, ny):
    """Uniform pixel positions over the field plus its edge pad, and their sky coordinates, in place."""
    n = len(table)
    x = rng.uniform(-0.5 - _EDGE_PAD, nx - 0.5 + _EDGE_PAD, n)
    y = rng.uniform(-0.5 - _EDGE_PAD, ny - 0.5 + _EDGE_PAD, n)
    sky = wcs.pixel_to_world(x, y)
    table["x"], table["y"] = x, y
    table["ra"] = np.atleast_1d(sky.ra.deg) * u.deg if n else [] * u.deg
    table["dec"] = np.atleast_1d(sky.dec.deg) * u.deg if n else [] * u.deg


def _stack(tables):
    """Stack galaxy tables (field and members) into one with the same columns."""
    if not tables:
        return Table({"x": [], "y": [], "ra": [] * u.deg, "dec": [] * u.deg, "cluster_id": np.array([], "U32")})
    return vstack(tables, join_type="exact", metadata_conflicts="silent")

"""Galaxy-cluster catalogues in one schema, and the paper's selection of training clusters.

Every catalogue becomes an astropy `~astropy.table.Table` with the columns of `CLUSTER_COLUMNS` (units on
``ra``, ``dec``, ``bcg_ra``, ``bcg_dec`` [deg], ``bcg_rmag`` [mag], ``r200`` [Mpc]; missing values NaN), plus
any extra columns a schema file already carried (e.g. the synthetic truth's ``field``). Three published
catalogues are known by name (`CATALOGS`):

- ``"whl12"``: Wen, Han & Liu (2012), VizieR J/ApJS/199/34 table1; centred on the BCG. ``richness`` = R_L*,
  ``n_members`` = N200, ``z`` = the photometric redshift zph, ``bcg_rmag`` = the BCG's r magnitude.
- ``"redmapper"``: Rykoff et al. (2016) SDSS DR8 redMaPPer clusters, VizieR J/ApJS/224/1 cat_dr8; centred on
  the most likely central galaxy. ``richness`` = lambda, ``z`` = z_lambda.
- ``"abell"``: Abell, Corwin & Olowin (1989), VizieR VII/110A tables 3 (Abell/ACO, ids ``A<n>``) and 4 (the
  southern supplement, ids ``S<n>``); centred on the galaxy concentration, so ``bcg_ra``/``bcg_dec`` are
  NaN. ``richness`` = the galaxy count ``Count``.

They are read from VizieR through astroquery (`query_vizier`, which astroquery caches on disk) or from a local
FITS / VOTable / CSV / ECSV file with the VizieR column labels or the catalogue's own lower-case names
(`read_catalog`); `load_catalog` picks between the two. The selection functions (`redshift_mask`,
`members_mask`, `dec_mask`, `sky_match_mask`, `paper_selection`) are plain functions of tables so that
every count they produce can be checked by hand.
"""
import logging
from dataclasses import dataclass, field
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import Angle, SkyCoord
from astropy.table import MaskedColumn, Table, vstack

from ..cosmology import DEFAULT_COSMOLOGY
from ..io import atomic_output, read_table
from ..sky import sky_pairs

logger = logging.getLogger(__name__)

CLUSTER_COLUMNS = ("id", "ra", "dec", "z", "richness", "n_members", "bcg_rmag", "bcg_ra", "bcg_dec", "r200")
COLUMN_UNITS = {"ra": u.deg, "dec": u.deg, "bcg_ra": u.deg, "bcg_dec": u.deg, "bcg_rmag": u.mag, "r200": u.Mpc}


@dataclass(frozen=True)
class CatalogFormat:
    """How one published catalogue maps onto `CLUSTER_COLUMNS`.

    Parameters
    ----------
    name : str
        Short name (``"whl12"``).
    vizier_tables : tuple of str
        VizieR table(s) holding it, stacked in this order.
    columns : dict
        Schema column -> the source labels accepted for it (case-insensitive; VizieR's first, then those of
        the catalogue's own files). ``ra``/``dec`` use VizieR's computed ``_RAJ2000``/``_DEJ2000`` (degrees,
        J2000) when querying. Schema columns absent from the dict are NaN.
    optional : frozenset of str
        Schema columns filled with NaN (with a warning) when the source lacks them; any other missing column
        is an error.
    id_prefix : str
        Prepended to the source identifier.
    centre_is_bcg : bool
        Whether ``ra``/``dec`` are the BCG (then copied to ``bcg_ra``/``bcg_dec``).
    """

    name: str
    vizier_tables: tuple
    columns: dict
    optional: frozenset = field(default_factory=frozenset)
    id_prefix: str = ""
    centre_is_bcg: bool = True

    def vizier_columns(self):
        """The VizieR labels to request: the first label of each mapped column."""
        return [labels[0] for labels in self.columns.values()]


CATALOGS = {
    "whl12": CatalogFormat(
        name="whl12",
        vizier_tables=("J/ApJS/199/34/table1",),
        columns={
            "id": ("WHL", "name"), "ra": ("_RAJ2000", "RAJ2000", "ra"), "dec": ("_DEJ2000", "DEJ2000", "dec"),
            "z": ("zph",), "richness": ("RL*", "RL_"), "n_members": ("N200",), "bcg_rmag": ("rmag",),
            "r200": ("r200",),
        },
        optional=frozenset({"bcg_rmag"}),
        id_prefix="WHL ",
    ),
    "redmapper": CatalogFormat(
        name="redmapper",
        vizier_tables=("J/ApJS/224/1/cat_dr8",),
        columns={
            "id": ("Name", "name"), "ra": ("_RAJ2000", "RAdeg", "RAJ2000", "ra"),
            "dec": ("_DEJ2000", "DEdeg", "DEJ2000", "dec"), "z": ("zlambda", "z_lambda"),
            "richness": ("lambda",), "bcg_rmag": ("rmagm", "rmag"),
        },
        optional=frozenset({"bcg_rmag"}),
    ),
    "abell": CatalogFormat(
        name="abell",
        vizier_tables=("VII/110A/table3", "VII/110A/table4"),
        columns={
            "id": ("ACO",), "ra": ("_RAJ2000", "RAJ2000", "ra"), "dec": ("_DEJ2000", "DEJ2000", "dec"),
            "z": ("z",), "richness": ("Count",),
        },
        centre_is_bcg=False,
    ),
}


def _column(table, labels):
    """The column of ``table`` whose name is one of ``labels`` (case-insensitive), or None."""
    by_lower = {name.lower(): name for name in table.colnames}
    for label in labels:
        if label.lower() in by_lower:
            return table[by_lower[label.lower()]]
    return None


def _as_float(column):
    """Column values as floats with masked entries as NaN."""
    if isinstance(column, MaskedColumn):
        return column.astype(float).filled(np.nan).data
    return np.asarray(column, dtype=float)


def _coordinates(ra, dec, source):
    """Degrees from numeric (deg) or sexagesimal (hours, degrees) coordinate columns."""
    if ra.dtype.kind in "US" or dec.dtype.kind in "US":
        coords = SkyCoord(np.asarray(ra).astype(str), np.asarray(dec).astype(str), unit=(u.hourangle, u.deg))
        return coords.ra.deg, coords.dec.deg
    ra_deg = (_as_float(ra) * (ra.unit or u.deg)).to_value(u.deg)
    dec_deg = (_as_float(dec) * (dec.unit or u.deg)).to_value(u.deg)
    if not (np.isfinite(ra_deg).all() and np.isfinite(dec_deg).all()):
        raise ValueError(f"{source}: {np.sum(~np.isfinite(ra_deg) | ~np.isfinite(dec_deg))} rows without coordinates")
    return ra_deg, dec_deg


def _abell_ids(numbers, source):
    """``A<n>`` for the first occurrence of a number, ``S<n>`` for its second (the southern supplement)."""
    numbers = np.asarray(numbers).astype(int)
    occurrence = np.zeros(len(numbers), dtype=int)
    seen = {}
    for index, number in enumerate(numbers):
        occurrence[index] = seen.get(number, 0)
        seen[number] = occurrence[index] + 1
    if (occurrence > 1).any():
        raise ValueError(f"{source}: Abell/ACO numbers appear more than twice (main table + supplement)")
    return np.where(occurrence == 0, "A", "S").astype(object) + numbers.astype(str)


def to_cluster_schema(table, catalog, source="catalogue"):
    """Map a table with a published catalogue's columns onto `CLUSTER_COLUMNS`.

    Parameters
    ----------
    table : `~astropy.table.Table`
        Rows of the catalogue as VizieR or its authors publish them.
    catalog : str or CatalogFormat
        A name from `CATALOGS` or a format.
    source : str
        Names the table in error messages (a file name or VizieR table).

    Returns
    -------
    `~astropy.table.Table`
        The schema columns with units; ``meta["catalog"]`` and ``meta["source"]`` record the origin.

    Raises
    ------
    ValueError
        Empty table, a required column missing (the message lists those present), rows without
        coordinates, or duplicate identifiers.
    """
    form = CATALOGS[catalog] if isinstance(catalog, str) else catalog
    if len(table) == 0:
        raise ValueError(f"{source}: the catalogue is empty")
    found = {}
    for name, labels in form.columns.items():
        found[name] = _column(table, labels)
        if found[name] is None and name not in form.optional:
            raise ValueError(
                f"{source}: no column {' / '.join(labels)} for {name!r} of the {form.name} catalogue; "
                f"columns are {table.colnames}"
            )
        if found[name] is None:
            logger.warning("%s: no %s column %s; %r is NaN", source, form.name, "/".join(labels), name)
    out = Table(meta={"catalog": form.name, "source": str(source)})
    raw_ids = np.asarray(found["id"]).astype(str)
    ids = _abell_ids(raw_ids, source) if form.name == "abell" else np.char.strip(raw_ids).astype(object)
    out["id"] = [f"{form.id_prefix}{value}" for value in ids]
    out["ra"], out["dec"] = _coordinates(found["ra"], found["dec"], source)
    for name in ("z", "richness", "n_members", "bcg_rmag", "r200"):
        out[name] = _as_float(found[name]) if found.get(name) is not None else np.full(len(table), np.nan)
    centre = form.centre_is_bcg
    out["bcg_ra"] = out["ra"] if centre else np.full(len(table), np.nan)
    out["bcg_dec"] = out["dec"] if centre else np.full(len(table), np.nan)
    return check_cluster_table(out, source)


def check_cluster_table(table, source="catalogue"):
    """Put `CLUSTER_COLUMNS` first with their units and check the table, or raise naming ``source``."""
    if len(table) == 0:
        raise ValueError(f"{source}: the catalogue is empty")
    missing = [name for name in CLUSTER_COLUMNS if name not in table.colnames]
    if missing:
        raise ValueError(f"{source}: missing cluster columns {missing}; columns are {table.colnames}")
    table = table[list(CLUSTER_COLUMNS) + [c for c in table.colnames if c not in CLUSTER_COLUMNS]]
    table["id"] = np.asarray(table["id"]).astype(str)
    for name in CLUSTER_COLUMNS[1:]:
        unit = COLUMN_UNITS.get(name)
        values = _as_float(table[name])
        if unit is not None and table[name].unit is not None:
            values = (values * table[name].unit).to_value(unit)
        table[name] = values
        table[name].unit = unit
    ids, counts = np.unique(table["id"], return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"{source}: duplicate cluster ids {[str(i) for i in ids[counts > 1][:5]]}")
    return table


def read_catalog(path, catalog=None):
    """Read a cluster catalogue file (FITS, VOTable, CSV, ECSV) into the cluster schema.

    Parameters
    ----------
    path : str or Path
        The file.
    catalog : str, optional
        A name from `CATALOGS` when the file has that catalogue's columns; None for a file already in the
        cluster schema (e.g. one `write_catalog` made, or the synthetic sky's ``clusters.fits``).

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        The file cannot be read as a table, or its columns do not fit (see `to_cluster_schema`).
    """
    if catalog is not None and catalog not in CATALOGS:
        raise ValueError(f"{path}: unknown catalogue {catalog!r}; choose one of {sorted(CATALOGS)}")
    table = read_table(path, "catalogue file")
    if catalog is None:
        return check_cluster_table(table, str(path))
    return to_cluster_schema(table, catalog, str(path))


def query_vizier(catalog, vizier=None):
    """Download a whole catalogue of `CATALOGS` from VizieR through astroquery and map it to the schema.

    Parameters
    ----------
    catalog : str
        ``"whl12"``, ``"redmapper"`` or ``"abell"``.
    vizier : `astroquery.vizier.VizierClass`, optional
        A configured client (e.g. another mirror); by default one asking for the needed columns only, with
        no row limit.

    Raises
    ------
    ValueError
        Unknown catalogue, or VizieR returned no rows.
    """
    from astroquery.vizier import Vizier

    if catalog not in CATALOGS:
        raise ValueError(f"unknown catalogue {catalog!r}; choose one of {sorted(CATALOGS)}")
    form = CATALOGS[catalog]
    if vizier is None:
        vizier = Vizier(columns=form.vizier_columns(), row_limit=-1)
    tables = vizier.get_catalogs(list(form.vizier_tables))
    returned = {name: tables[name] for name in tables.keys()}
    missing = [name for name in form.vizier_tables if name not in returned]
    source = f"VizieR {', '.join(form.vizier_tables)}"
    if missing:
        raise ValueError(f"{source}: no rows returned for {missing} (got {list(returned)})")
    stacked = vstack([returned[name] for name in form.vizier_tables], metadata_conflicts="silent")
    return to_cluster_schema(stacked, form, source)


def load_catalog(spec, catalog=None):
    """A catalogue from a file path or, for a name of `CATALOGS`, from VizieR.

    Parameters
    ----------
    spec : str or Path
        An existing file, or ``"whl12"`` / ``"redmapper"`` / ``"abell"`` to query VizieR.
    catalog : str, optional
        For a file: its catalogue format (None for the cluster schema).
    """
    if Path(spec).is_file():
        return read_catalog(spec, catalog)
    if str(spec) in CATALOGS:
        return query_vizier(str(spec))
    raise FileNotFoundError(
        f"{spec}: neither a catalogue file nor a VizieR catalogue name ({', '.join(sorted(CATALOGS))})"
    )


def write_catalog(table, path):
    """Write a schema table to ``path`` (FITS or ECSV by suffix) atomically: temporary name, then rename."""
    path = Path(path)
    table = check_cluster_table(table, str(path))
    with atomic_output(path) as temporary:
        table.write(temporary, overwrite=True, format="fits" if path.suffix.lower() == ".fits" else "ascii.ecsv")
    return path


def sky_coords(table):
    """The cluster centres of a schema table as `~astropy.coordinates.SkyCoord` (ICRS)."""
    return SkyCoord(table["ra"].quantity, table["dec"].quantity)


# ---- The paper's selection: boolean masks over a schema table ----

def redshift_mask(table, z_min, z_max):
    """Rows with ``z_min < z < z_max`` (NaN redshifts fail)."""
    z = np.asarray(table["z"], dtype=float)
    return (z > z_min) & (z < z_max)


def members_mask(table, min_members):
    """Rows with at least ``min_members`` members within r200 (NaN fails)."""
    return np.asarray(table["n_members"], dtype=float) >= min_members


def dec_mask(table, dec_min):
    """Rows north of ``dec_min``."""
    return table["dec"].quantity > dec_min


def region_mask(table, ra_range, dec_range):
    """Rows inside ``ra_range`` x ``dec_range`` (deg); an RA range with ``ra_min > ra_max`` wraps through 0."""
    ra, dec = np.asarray(table["ra"], dtype=float), np.asarray(table["dec"], dtype=float)
    ra_min, ra_max = ra_range
    in_ra = (ra >= ra_min) & (ra <= ra_max) if ra_min <= ra_max else (ra >= ra_min) | (ra <= ra_max)
    return in_ra & (dec >= dec_range[0]) & (dec <= dec_range[1])


def select_clusters(table, z_range=None, min_members=None, dec_min=None, region=None):
    """Rows passing the cuts that are given (None: no cut).

    Parameters
    ----------
    z_range : (float, float), optional
        ``z_min < z < z_max``.
    min_members : float, optional
        ``n_members >= min_members``.
    dec_min : `~astropy.units.Quantity` [angle], optional
        ``dec > dec_min``.
    region : (float, float, float, float), optional
        ``ra_min, ra_max, dec_min, dec_max`` in degrees (`region_mask`).
    """
    keep = np.ones(len(table), dtype=bool)
    if z_range is not None:
        keep &= redshift_mask(table, *z_range)
    if min_members is not None:
        keep &= members_mask(table, min_members)
    if dec_min is not None:
        keep &= dec_mask(table, dec_min)
    if region is not None:
        keep &= region_mask(table, region[:2], region[2:])
    return table[keep]


def sky_match_mask(table, reference, max_separation=500 * u.kpc, cosmology=DEFAULT_COSMOLOGY):
    """Rows of ``table`` with a ``reference`` cluster within ``max_separation`` on the sky, and the nearest one.

    A thin use of `deepcee_d2.sky.sky_pairs`, with its conventions: a length is a proper distance at the
    redshift of each row of ``table`` (the catalogue being selected, e.g. WHL12, whose redshifts are
    photometric and complete where Abell's are not), and a pair exactly at ``max_separation`` matches (``<=``).

    Parameters
    ----------
    table, reference : `~astropy.table.Table`
        Schema tables (e.g. WHL12 and Abell).
    max_separation : `~astropy.units.Quantity` [angle or length]
        An angle, or a proper length at each row's redshift (rows without a finite, positive ``z`` then
        match nothing).
    cosmology : `~astropy.cosmology.FLRW`
        For a length.

    Returns
    -------
    mask : ndarray of bool
    nearest : ndarray of int
        Index in ``reference`` of each row's nearest cluster within ``max_separation`` (-1 without one).
    separation : `~astropy.coordinates.Angle`
        Its angular separation (NaN without one).
    """
    if len(reference) == 0:
        raise ValueError("reference catalogue is empty")
    rows = np.arange(len(table))
    redshift = None
    if max_separation.unit.physical_type == "length":
        z = np.asarray(table["z"], dtype=float)
        rows = np.flatnonzero(np.isfinite(z) & (z > 0))
        redshift = z[rows]
    pairs = sky_pairs(sky_coords(reference), sky_coords(table[rows]), max_separation, redshift=redshift,
                      cosmology=cosmology)
    # Pairs come nearest first, so the first pair of each row is its nearest reference cluster.
    matched, first = np.unique(pairs.index_b, return_index=True)
    nearest = np.full(len(table), -1)
    separation = Angle(np.full(len(table), np.nan), u.arcsec)
    nearest[rows[matched]] = pairs.index_a[first]
    separation[rows[matched]] = pairs.separation[first]
    return nearest >= 0, nearest, separation


def paper_selection(whl, abell, *, z_range, min_members, dec_min, max_separation, cosmology):
    """The paper's training clusters: WHL12 clusters with an Abell counterpart, in a redshift range, with a
    least number of members and north of a declination (the paper: 0.1 < z < 0.2, N200 >= 20, Dec > 0; the
    values are ``cfg.DEEPCEE.DATA.PAPER_SELECTION``, which tools/prepare_dataset.py passes in).

    The cuts on redshift, members and declination use WHL12's values; the Abell match is the nearest Abell
    centre within ``max_separation`` (a proper length at the WHL12 redshift: Abell centres are eyeball
    centres of the galaxy concentration, often arcminutes from the BCG). Chan & Stott (2019) list 497 clusters.

    Parameters
    ----------
    whl, abell : `~astropy.table.Table`
        Schema tables of WHL12 and Abell clusters.
    z_range : (float, float)
        ``z_min < z < z_max``.
    min_members : float
        ``n_members >= min_members``.
    dec_min : `~astropy.units.Quantity` [angle]
        ``dec > dec_min``.
    max_separation : `~astropy.units.Quantity` [length or angle]
        Largest distance to the Abell centre (see `sky_match_mask`).
    cosmology : `~astropy.cosmology.FLRW`

    Returns
    -------
    `~astropy.table.Table`
        The selected WHL12 rows, with ``abell_id`` and ``abell_separation`` (arcsec) added.
    """
    matched, nearest, separation = sky_match_mask(whl, abell, max_separation, cosmology)
    keep = (redshift_mask(whl, *z_range) & members_mask(whl, min_members) & dec_mask(whl, dec_min) & matched)
    selected = whl[keep]
    selected["abell_id"] = np.asarray(abell["id"])[nearest[keep]]
    selected["abell_separation"] = separation[keep].to(u.arcsec)
    selected.meta["selection"] = (
        f"{z_range[0]} < z < {z_range[1]}, n_members >= {min_members}, dec > {dec_min}, "
        f"Abell within {max_separation}"
    )
    return selected

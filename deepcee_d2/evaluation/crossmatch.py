"""False positives against other cluster catalogues: known clusters or new candidates?

A "false positive" only means that the test set's own catalogue has no cluster there. The paper
cross-matches them with other catalogues (WHL, redMaPPer, ...): one within 250 kpc (proper, at the
catalogued cluster's redshift) of a catalogued cluster in a redshift window (0.05 < z < 0.4) is a known
cluster the training catalogue missed; the rest are new candidates. A catalogued cluster without a redshift
(many Abell clusters, X-ray or SZ source lists) is matched at the redshift the detector's red sequence gives the
candidate (``z_est``), when it has one. Matching goes through `deepcee_d2.sky.sky_pairs`, the project's one
matching function.
"""
import logging
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table

from ..cosmology import DEFAULT_COSMOLOGY
from ..io import read_table
from ..sky import sky_pairs

logger = logging.getLogger(__name__)

KNOWN, NEW_CANDIDATE = "known", "new candidate"
_REQUIRED = ("ra", "dec")


def _column(table, name):
    """The column called ``name`` in any letter case, or None."""
    matches = [column for column in table.colnames if column.lower() == name]
    return table[matches[0]] if matches else None


def read_reference_catalog(source, name=None):
    """Read any catalogue of known clusters to cross-match against into a Table with ``id``, ``ra``, ``dec``
    (deg) and ``z``: a lenient reader (any letter case, missing ids), unlike the full cluster schema of
    `deepcee_d2.data.catalogs.read_catalog` that training data needs.

    Parameters
    ----------
    source : str, Path or `~astropy.table.Table`
        A table, or a file in any format astropy identifies (FITS, ECSV, CSV, VOTable, ...). It needs
        ``ra``, ``dec`` (degrees; a unit on the column is honoured) and should have ``z``, in any letter case
        (without it, or where it is empty, a cluster is matched at each candidate's ``z_est``; a catalogue
        without the column is logged); an ``id`` column is used when present, else the row number.
    name : str, optional
        The catalogue's name in the output; default the file's stem, or the table's ``meta['name']``.

    Returns
    -------
    `~astropy.table.Table`
        Columns ``id`` (str), ``ra``, ``dec`` (deg), ``z``; ``meta['name']`` holds the name.

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    ValueError
        When the file cannot be read as a table, lacks a column, is empty, or a table has no name.
    """
    if isinstance(source, Table):
        label = name or source.meta.get("name")
        if not label:
            raise ValueError("a catalogue given as a Table needs a name (argument name, or meta['name'])")
        table = source
    else:
        path = Path(source)
        label = name or path.name.split(".")[0]
        table = read_table(path, "catalogue file")
        label = str(label)
    missing = [column for column in _REQUIRED if _column(table, column) is None]
    if missing:
        raise ValueError(f"{label}: catalogue lacks column(s) {missing} (needs ra, dec in deg, and z where known); "
                         f"it has {table.colnames}")
    if len(table) == 0:
        raise ValueError(f"{label}: catalogue is empty")
    ids = _column(table, "id")
    catalogue = Table()
    catalogue["id"] = (np.arange(len(table)) if ids is None else np.asarray(ids)).astype(str)
    for column in ("ra", "dec"):
        values = _column(table, column)
        catalogue[column] = u.Quantity(_filled(values), values.unit or u.deg).to(u.deg)
    bad = ~(np.isfinite(catalogue["ra"]) & np.isfinite(catalogue["dec"]))
    if bad.any():
        raise ValueError(f"{label}: {bad.sum()} row(s) without a finite ra/dec, e.g. row {np.flatnonzero(bad)[0]}")
    # A missing (masked or NaN) redshift is NaN: `crossmatch_false_positives` matches such a cluster at the
    # candidate's own z_est.
    redshifts = _column(table, "z")
    if redshifts is None:
        logger.warning("%s: catalogue has no z column (it has %s): its clusters are matched at each candidate's "
                       "z_est", label, table.colnames)
    catalogue["z"] = np.full(len(table), np.nan) if redshifts is None else _filled(redshifts)
    catalogue.meta["name"] = str(label)
    return catalogue


def _filled(column):
    """Float values of a column, masked entries as NaN."""
    return np.ma.filled(np.ma.asarray(column, dtype=float), np.nan)


def read_reference_catalogs(catalogs):
    """Every catalogue of ``catalogs`` (a path or Table, a list of them, or a dict of name -> path or Table),
    read by `read_reference_catalog`: a caller checks them before a long run that cross-matches at its end."""
    if isinstance(catalogs, dict):
        return [read_reference_catalog(source, name) for name, source in catalogs.items()]
    if isinstance(catalogs, (str, Path, Table)):
        catalogs = [catalogs]
    return [read_reference_catalog(source) for source in catalogs]


def crossmatch_false_positives(false_positives, catalogs, *, radius, z_range, cosmology=DEFAULT_COSMOLOGY):
    """Flag each false positive as a known catalogued cluster or a new candidate.

    Parameters
    ----------
    false_positives : `~astropy.table.Table`
        Predictions with ``ra``, ``dec`` (deg), and optionally ``z_est`` (the red-sequence redshift, NaN where
        none); other columns (``image_id``, ``score``, ...) are kept.
    catalogs : path, Table, list of them, or dict of name -> path or Table
        The catalogues (see `read_reference_catalog`).
    radius : `~astropy.units.Quantity` [length]
        Proper distance at the catalogued cluster's redshift (``DEEPCEE.EVAL.CROSSMATCH_RADIUS_KPC``: 250 kpc);
        for a catalogued cluster without one, at the false positive's ``z_est``.
    z_range : (float, float)
        Only catalogued clusters with ``z_range[0] < z < z_range[1]`` count (``DEEPCEE.EVAL.CROSSMATCH_Z_RANGE``:
        0.05 < z < 0.4); one without a redshift counts for false positives whose ``z_est`` is in the window.
    cosmology : `~astropy.cosmology.FLRW`

    Returns
    -------
    `~astropy.table.Table`
        The false positives with ``status`` ("known" or "new candidate"), ``known`` (bool), and for known
        ones the nearest catalogued cluster over all catalogues: ``catalog`` (name), ``catalog_id``,
        ``catalog_z`` (NaN for one without a redshift), ``catalog_distance`` (proper kpc), and
        ``n_catalog_matches`` (clusters within the radius in all catalogues). ``meta`` records ``CATALOGS``
        (names), ``RADIUS`` (kpc), ``ZMIN``, ``ZMAX``.
    """
    low, high = z_range
    if not low < high:
        raise ValueError(f"z_range must be (low, high) with low < high, got {z_range}")
    catalogues = read_reference_catalogs(catalogs)
    names = [catalogue.meta["name"] for catalogue in catalogues]
    if len(set(names)) != len(names):
        raise ValueError(f"catalogue names must differ, got {names}")
    n = len(false_positives)
    coords = SkyCoord(u.Quantity(false_positives["ra"], u.deg), u.Quantity(false_positives["dec"], u.deg))
    z_est = (_filled(false_positives["z_est"]) if "z_est" in false_positives.colnames else np.full(n, np.nan))
    estimated = np.flatnonzero((z_est > low) & (z_est < high))
    best_distance = np.full(n, np.inf)
    catalog, catalog_id = np.full(n, "", dtype=object), np.full(n, "", dtype=object)
    catalog_z, n_matches = np.full(n, np.nan), np.zeros(n, dtype=int)
    for catalogue in catalogues:
        in_window = catalogue[(catalogue["z"] > low) & (catalogue["z"] < high)]
        pairs = sky_pairs(coords, SkyCoord(in_window["ra"], in_window["dec"]), radius,
                          redshift=np.asarray(in_window["z"]), cosmology=cosmology)
        distance = pairs.distance.to_value(u.kpc)
        matches = [(a, in_window[b], d) for a, b, d in zip(pairs.index_a, pairs.index_b, distance)]
        without_z = catalogue[~np.isfinite(catalogue["z"])]
        if len(without_z) and len(estimated):
            pairs = sky_pairs(SkyCoord(without_z["ra"], without_z["dec"]), coords[estimated], radius,
                              redshift=z_est[estimated], cosmology=cosmology)
            distance = pairs.distance.to_value(u.kpc)
            matches += [(estimated[a], without_z[b], d) for b, a, d in zip(pairs.index_a, pairs.index_b, distance)]
        for a, row, d in matches:
            n_matches[a] += 1
            if d < best_distance[a]:
                best_distance[a] = d
                catalog[a], catalog_id[a], catalog_z[a] = catalogue.meta["name"], row["id"], row["z"]
    known = np.isfinite(best_distance)
    result = Table(false_positives, copy=True)
    result["status"] = np.where(known, KNOWN, NEW_CANDIDATE).astype(str)
    result["known"] = known
    result["catalog"] = catalog.astype(str)
    result["catalog_id"] = catalog_id.astype(str)
    result["catalog_z"] = catalog_z
    result["catalog_distance"] = np.where(known, best_distance, np.nan) * u.kpc
    result["n_catalog_matches"] = n_matches
    # Short upper-case keys, so the FITS header takes them as they are.
    result.meta.update({"CATALOGS": ",".join(names), "RADIUS": float(u.Quantity(radius, u.kpc).value),
                        "ZMIN": float(low), "ZMAX": float(high)})
    return result

"""Many synthetic fields written to disk in the layout the data and survey code read, resumably.

::

    <root>/survey.json            the settings every field is made with (a rerun with others is refused)
    <root>/clusters.fits          truth of every cluster: cluster schema + field + simulator extras
    <root>/fields.ecsv            one row per field: field, ra, dec, nx, ny, seed, seeing_* (PSF core FWHM), psf_beta,
                                  psf_ellipticity, psf_angle, psf_wing, sky_*, depth_*, ...
    <root>/<field>/frame-g.fits   float32 nanomaggies, TAN WCS, FILTER, PIXSCALE, SEEING, SKYLEVEL, BUNIT
    <root>/<field>/frame-r.fits
    <root>/<field>/frame-i.fits
    <root>/<field>/galaxies.fits  every galaxy drawn (optional), stars.fits every star drawn and groups.fits the
                                  unlabelled groups (optional)
    <root>/<field>/clusters.fits  this field's truth rows, field.ecsv its row of fields.ecsv

Every file is written to a temporary name in its folder and renamed into place. A field's own
``clusters.fits`` and ``field.ecsv`` are written last, so their presence (with all frames) marks a finished
field: a rerun skips it, after checking that it was made with the same parameters (a mismatch is an error,
never a silent mix). The root ``clusters.fits`` and ``fields.ecsv`` are rebuilt from the per-field truth
after every field, so an interrupted run leaves them consistent with the fields finished so far.

FITS files carry no date or other volatile value: the same seed and parameters give byte-identical files.
"""
import json

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table, vstack
from tqdm import tqdm

from ..cosmology import DEFAULT_COSMOLOGY
from ..io import atomic_output, setting_differences
from .clusters import ClusterSpec
from .field import DEFAULT_MAG_LIMIT, _empty_cluster_table, make_field
from .instrument import BANDS, PIXEL_SCALE, check_bands, sky_level

FIELD_PREFIX = "f"
_GRID_ORIGIN = SkyCoord(150.0 * u.deg, 20.0 * u.deg)
_GRID_GAP = 1.25  # grid spacing in units of the field size, so neighbouring fields never overlap
# Recorded in survey.json, so that resuming a survey made by an older simulator is refused rather than mixed:
# 2 = Moffat PSFs with ellipticity, background structure, cosmic rays and groups (issue 15); 3 = the PSF's aureole.
SIMULATOR_VERSION = 3


def field_names(n_fields):
    """Names of ``n_fields`` fields: ``f000``, ``f001``, ... (wider when needed)."""
    width = max(3, len(str(n_fields - 1)))
    return [f"{FIELD_PREFIX}{k:0{width}d}" for k in range(n_fields)]


def field_seed(seed, index):
    """The seed of field ``index`` of a survey made with ``seed`` (independent streams per field)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def grid_centres(n_fields, nx, ny, origin=_GRID_ORIGIN):
    """Centres of ``n_fields`` fields on a square grid starting at ``origin``, 25 % apart beyond their size.

    Rows run east along constant declination; the RA step is divided by cos(dec) so the fields keep their
    spacing on the sky.
    """
    columns = int(np.ceil(np.sqrt(n_fields)))
    step_x = (_GRID_GAP * nx * PIXEL_SCALE).to(u.deg)
    step_y = (_GRID_GAP * ny * PIXEL_SCALE).to(u.deg)
    index = np.arange(n_fields)
    dec = origin.dec + (index // columns) * step_y
    if np.any(np.abs(dec) >= 89 * u.deg):
        raise ValueError(f"grid of {n_fields} fields from {origin.to_string('decimal')} runs past the pole; "
                         "choose another origin or give centres")
    ra = origin.ra + (index % columns) * step_x / np.cos(dec)
    return SkyCoord(ra.wrap_at(360 * u.deg), dec)


def _write_fits_table(table, path):
    with atomic_output(path) as temporary:
        table.write(temporary, format="fits", overwrite=True)


def _write_ecsv(table, path):
    with atomic_output(path) as temporary:
        table.write(temporary, format="ascii.ecsv", overwrite=True)


def _field_row(name, centre, nx, ny, seed, synthetic_field=None, n_clusters=0):
    row = {"field": name, "ra": round(float(centre.ra.deg), 10), "dec": round(float(centre.dec.deg), 10),
           "nx": int(nx), "ny": int(ny), "seed": int(seed)}
    if synthetic_field is not None:
        for band in BANDS:
            row[f"seeing_{band}"] = synthetic_field.seeing.get(band, np.nan)
        shape = next(iter(synthetic_field.psf.values()))  # one shape for every band
        row.update(psf_beta=shape.beta, psf_ellipticity=shape.ellipticity, psf_angle=shape.angle, psf_wing=shape.wing)
        for band in BANDS:
            row[f"sky_{band}"] = round(sky_level(band), 6)
        for band in BANDS:
            row[f"depth_{band}"] = (round(synthetic_field.depth(band), 4) if band in synthetic_field.seeing
                                    else np.nan)
        row.update(n_clusters=int(n_clusters), n_groups=len(synthetic_field.groups),
                   n_galaxies=len(synthetic_field.galaxies),
                   n_stars=len(synthetic_field.stars), noise=bool(synthetic_field.noise),
                   bands="".join(synthetic_field.bands))
    return row


_IDENTITY = ("field", "ra", "dec", "nx", "ny", "seed", "noise", "bands")


def _finished(folder, bands):
    return (all((folder / f"frame-{band}.fits").is_file() for band in bands)
            and (folder / "clusters.fits").is_file() and (folder / "field.ecsv").is_file())


def _check_same(folder, planned):
    done = Table.read(folder / "field.ecsv", format="ascii.ecsv")[0]
    for key in _IDENTITY:
        if key in planned and str(done[key]) != str(planned[key]):
            raise ValueError(f"{folder}: already made with {key}={done[key]}, this run asks for "
                             f"{planned[key]}; write to a new folder or delete {folder}")


def _check_survey_settings(root, settings):
    """Write ``survey.json`` or check that ``root`` was made with the same ``settings`` (plain JSON)."""
    path = root / "survey.json"
    settings = json.loads(json.dumps(settings))
    if path.is_file():
        previous = json.loads(path.read_text())
        differences = setting_differences(previous, settings)
        if differences:
            raise ValueError(f"{root}: already made with other settings ({path}): " + "; ".join(differences)
                             + f"; write to a new folder or delete {root}")
        return
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps(settings, indent=1, sort_keys=True))


def _spec_settings(clusters):
    if clusters is None:
        return None
    return {"per_field": int(clusters.per_field), "z_range": list(clusters.z_range),
            "richness_range": list(clusters.richness_range), "min_members": int(clusters.min_members),
            "placement": clusters.placement, "min_separation_arcsec": clusters.min_separation.to_value(u.arcsec),
            "edge_margin_arcsec": clusters.edge_margin.to_value(u.arcsec)}


def _rebuild_root(root, field_rows, cluster_tables):
    fields = Table(rows=field_rows, names=list(field_rows[0])) if field_rows else Table()
    clusters = [table for table in cluster_tables if len(table)]
    clusters = vstack(clusters, metadata_conflicts="silent") if clusters else _empty_cluster_table()
    _write_fits_table(clusters, root / "clusters.fits")
    if field_rows:
        _write_ecsv(fields, root / "fields.ecsv")
    return clusters, fields


def _make_or_read_field(root, name, centre, nx, ny, seed, bands, clusters, source_lists, field_galaxies, stars,
                        noise, mag_limit, cosmology):
    """Write one field (or, when it is finished, check and read it back); returns its row and truth."""
    folder = root / name
    planned = _field_row(name, centre, nx, ny, seed)
    planned.update(noise=bool(noise), bands="".join(bands))
    if _finished(folder, bands):
        _check_same(folder, planned)
        return dict(Table.read(folder / "field.ecsv", format="ascii.ecsv")[0]), Table.read(folder / "clusters.fits")
    made = make_field(centre, nx, ny, clusters=clusters, seed=seed, bands=bands, name=name,
                      field_galaxies=field_galaxies, stars=stars, noise=noise, mag_limit=mag_limit,
                      cosmology=cosmology)
    for band in bands:
        with atomic_output(folder / f"frame-{band}.fits") as temporary:
            made.hdu(band).writeto(temporary, overwrite=True)
    if source_lists:
        _write_fits_table(made.galaxies, folder / "galaxies.fits")
        _write_fits_table(made.stars, folder / "stars.fits")
        _write_fits_table(made.groups, folder / "groups.fits")
    row = _field_row(name, centre, nx, ny, seed, made, len(made.clusters))
    _write_fits_table(made.clusters, folder / "clusters.fits")
    _write_ecsv(Table(rows=[row], names=list(row)), folder / "field.ecsv")
    return row, made.clusters


def write_survey(root, n_fields, nx=2048, ny=2048, centres=None, clusters=ClusterSpec(), seed=0, bands=BANDS,
                 source_lists=True, field_galaxies=True, stars=True, noise=True, mag_limit=DEFAULT_MAG_LIMIT,
                 cosmology=DEFAULT_COSMOLOGY, workers=1, progress=True):
    """Write ``n_fields`` synthetic fields and their truth under ``root`` (module docstring), resumably.

    Parameters
    ----------
    root : str or Path
        Output folder (created).
    n_fields : int
        Number of fields.
    nx, ny : int
        Field size in pixels. For training cutouts of ``S`` pixels offset by up to ``D`` arcsec around a
        cluster at the centre, use at least ``S + 2 D / 0.396``.
    centres : `~astropy.coordinates.SkyCoord`, optional
        One centre per field; by default a grid (`grid_centres`).
    clusters : `~deepcee_d2.synthetic.ClusterSpec` or None
        Clusters per field and how they are drawn and placed.
    seed : int
        Survey seed; field ``k`` uses `field_seed(seed, k)`.
    bands : sequence of str
        Bands to write.
    source_lists : bool
        Also write ``galaxies.fits`` and ``stars.fits`` per field.
    field_galaxies, stars, noise, mag_limit, cosmology
        As in `~deepcee_d2.synthetic.make_field`.
    workers : int
        Processes drawing fields at once. Each field depends only on its own seed, so the files are the
        same for any number of workers.
    progress : bool
        Show a tqdm progress bar over fields.

    Returns
    -------
    clusters : `~astropy.table.Table`
        The survey's cluster truth (as written to ``clusters.fits``).
    fields : `~astropy.table.Table`
        The field table (as written to ``fields.ecsv``).
    """
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context
    from pathlib import Path

    root = Path(root)
    if isinstance(n_fields, bool) or int(n_fields) != n_fields or n_fields < 1:
        raise ValueError(f"n_fields: need a positive integer, got {n_fields}")
    n_fields = int(n_fields)
    if isinstance(workers, bool) or int(workers) != workers or workers < 1:
        raise ValueError(f"workers: need a positive integer, got {workers}")
    bands = check_bands(bands)
    if clusters is not None and not isinstance(clusters, ClusterSpec):
        raise ValueError(f"clusters: need a ClusterSpec or None, got {type(clusters).__name__}")
    if centres is None:
        centres = grid_centres(n_fields, nx, ny)
    elif not isinstance(centres, SkyCoord) or centres.isscalar or len(centres) != n_fields:
        raise ValueError(f"centres: need a SkyCoord array of {n_fields} positions (one per field)")
    root.mkdir(parents=True, exist_ok=True)
    _check_survey_settings(root, {
        "simulator": SIMULATOR_VERSION, "nx": int(nx), "ny": int(ny), "seed": int(seed), "bands": "".join(bands),
        "clusters": _spec_settings(clusters),
        "source_lists": bool(source_lists), "field_galaxies": bool(field_galaxies), "stars": bool(stars),
        "noise": bool(noise), "mag_limit": float(mag_limit),
        "cosmology": {"name": str(cosmology.name), "H0": cosmology.H0.to_value(u.km / u.s / u.Mpc),
                      "Om0": float(cosmology.Om0)}})

    names = field_names(n_fields)
    jobs = [(root, names[index], centres[index], nx, ny, field_seed(seed, index), bands, clusters, source_lists,
             field_galaxies, stars, noise, mag_limit, cosmology) for index in range(n_fields)]
    done = {}

    def finish(name, result):
        done[name] = result
        ordered = [done[n] for n in names if n in done]
        _rebuild_root(root, [row for row, _ in ordered], [truth for _, truth in ordered])

    bar = tqdm(total=n_fields, desc="synthetic fields", unit="field", disable=not progress)
    if workers == 1:
        for job in jobs:
            finish(job[1], _make_or_read_field(*job))
            bar.update()
    else:
        # "spawn": the children start clean rather than inherit the parent's PyTorch threads.
        with ProcessPoolExecutor(int(workers), mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(_make_or_read_field, *job): job[1] for job in jobs}
            for future in as_completed(futures):
                finish(futures[future], future.result())
                bar.update()
    bar.close()
    ordered = [done[name] for name in names]
    return _rebuild_root(root, [row for row, _ in ordered], [truth for _, truth in ordered])

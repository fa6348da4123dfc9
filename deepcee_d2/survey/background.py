"""The red-sequence background of a survey's own imaging (``tools/measure_background.py``).

The red-sequence estimator subtracts a background: the density of red-sequence galaxies and of richness
members per arcmin^2 at each trial redshift (`deepcee_d2.redsequence`, "Where the background comes from").
The packaged one is the synthetic sky's; real imaging has other galaxy counts, colours and depth
(BENCHMARKS.md, "Real SDSS frames against the simulator"), so a survey of it measures its own, here: the
photometry of every tile of a folder of frames, cut as the survey cuts them (`plan_folder_tiles`,
`tile_geometry`), dereddened when ``DEEPCEE.REDSHIFT.DUST_MAP_DIR`` is set
(`~deepcee_d2.redsequence.RedSequenceEstimator.photometry`), crowded tiles left out as the survey masks them
(``DEEPCEE.SURVEY.MAX_SOURCE_DENSITY``), summed into densities by `~deepcee_d2.redsequence.measure_background`.
Point ``DEEPCEE.REDSHIFT.BACKGROUND_FILE`` at the result.

The background is the field's, so known clusters can be left out of it (`excluded_sky`): on a survey's thousands
of square degrees they are a small share of the red galaxies, but on a few frames one cluster is not. On the
shared SDSS frames the X-ray cluster XMMXCS J124425.9+164758.0, on 13 % of their area, held 17-28 % of the
red-sequence background at 0.125 < z < 0.25 (BENCHMARKS.md, "A known X-ray cluster on the shared frames").
"""
import dataclasses
import logging
from dataclasses import dataclass, field

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import vstack
from tqdm import tqdm

from ..cosmology import angular_size, cosmology_from_cfg
from ..data.cache import get_cutout
from ..data.colour import survey_tile_sizes
from ..data.frames import ImagingError
from .run import ImagingSpec
from .tiling import crowded, plan_folder_tiles, tile_geometry

logger = logging.getLogger(__name__)


@dataclass
class BackgroundTiles:
    """What `measure_folder_background` measured the background on: tiles used, left out and failed."""

    used: list = field(default_factory=list)
    crowded: list = field(default_factory=list)
    failed: list = field(default_factory=list)  # (tile id or file, reason)


def excluded_sky(known, cfg):
    """The circles of sky a background leaves out around the ``known`` clusters (a table with ``ra``, ``dec``,
    ``z``: `~deepcee_d2.evaluation.crossmatch.read_reference_catalogs`, stacked): ``DEEPCEE.REDSHIFT.BACKGROUND_EXCLUDE_KPC``
    (proper) at each cluster's redshift, or at ``DEEPCEE.SURVEY.MIN_REDSHIFT`` (the largest angle the survey
    looks for) where it has none. Returns their centres (`~astropy.coordinates.SkyCoord`) and angular radii."""
    z = np.asarray(known["z"], dtype=float)
    z = np.where(np.isfinite(z) & (z > 0), z, cfg.DEEPCEE.SURVEY.MIN_REDSHIFT)
    radii = angular_size(cfg.DEEPCEE.REDSHIFT.BACKGROUND_EXCLUDE_KPC * u.kpc, z, cosmology_from_cfg(cfg))
    return SkyCoord(u.Quantity(known["ra"], u.deg), u.Quantity(known["dec"], u.deg)), radii


def without_sky(photometry, centres, radii):
    """``photometry`` without its sources and imaged pixels inside any of the circles (``centres``, angular
    ``radii``): the background then counts neither their galaxies nor their area. Circles are drawn on the
    cutout's pixel grid (a tile is a few arcmin: its projection's distortion is negligible)."""
    if not len(centres):
        return photometry
    x, y = photometry.wcs.world_to_pixel(centres)
    radius = radii.to_value(u.arcsec) / photometry.pixel_scale
    ny, nx = photometry.shape
    near = np.isfinite(x) & np.isfinite(y) & (x + radius > 0) & (x - radius < nx) & (y + radius > 0) & (y - radius < ny)
    if not near.any():
        return photometry
    rows, columns = np.ogrid[:ny, :nx]
    inside = np.zeros((ny, nx), dtype=bool)
    for cx, cy, r in zip(x[near], y[near], radius[near]):
        inside |= (columns - cx) ** 2 + (rows - cy) ** 2 <= r**2
    covered = ~inside if photometry.covered is None else photometry.covered & ~inside
    sources = photometry.sources
    column = np.clip(np.rint(np.asarray(sources["x"], dtype=float)).astype(int), 0, nx - 1)
    row = np.clip(np.rint(np.asarray(sources["y"], dtype=float)).astype(int), 0, ny - 1)
    return dataclasses.replace(photometry, sources=sources[~inside[row, column]], covered=covered)


def measure_folder_background(cfg, frames_root, progress=True, sample=None, seed=0, known=None):
    """The red-sequence background (`~deepcee_d2.redsequence.measure_background`) of every tile of a folder of
    g, r, i frames, as ``cfg``'s survey would tile and measure it (module docstring), or of a random ``sample``
    of its tiles (``seed``): a mean density needs a few hundred tiles, not a whole survey's (~4 CPU-s each).
    ``known``: catalogues of clusters known on the frames (a path or Table, a list of them, or a dict of name ->
    path or Table, as `~deepcee_d2.evaluation.crossmatch.read_reference_catalogs` reads them), whose sky is left
    out (`excluded_sky`).

    Returns
    -------
    background : `~astropy.table.Table`
        To be written with `~deepcee_d2.redsequence.write_background`; its meta also records the imaging,
        the number of tiles used and masked, the dust map, and the known clusters left out (``excluded``: their
        ids; ``excluded_kpc``: the radius).
    tiles : `BackgroundTiles`

    Raises
    ------
    ValueError
        No tile of the folder could be measured, or every tile is crowded sky.
    """
    from ..evaluation.crossmatch import read_reference_catalogs
    from ..redsequence import RedSequenceEstimator, measure_background  # imports galsim and sep

    known = vstack(read_reference_catalogs(known), metadata_conflicts="silent") if known else None

    estimator = RedSequenceEstimator.from_cfg(cfg, with_background=False)
    imaging = ImagingSpec.from_cfg(cfg, "fits", frames_root)
    source = imaging.source()
    planned, problems = plan_folder_tiles(source, *tile_geometry(cfg))
    n_planned = len(planned)
    if sample is not None and sample < n_planned:
        if sample < 1:
            raise ValueError(f"sample: need at least 1 tile, got {sample}")
        chosen = np.random.default_rng(seed).choice(n_planned, sample, replace=False)
        planned = [planned[index] for index in sorted(chosen)]
    tiles = BackgroundTiles(failed=list(problems))
    size, scale = survey_tile_sizes(cfg)[0], cfg.DEEPCEE.COLOUR.PIXEL_SCALE * u.arcsec
    max_density = cfg.DEEPCEE.SURVEY.MAX_SOURCE_DENSITY
    left_out = None if known is None else excluded_sky(known, cfg)

    def photometries():
        for tile in tqdm(planned, desc="background tiles", unit="tile", disable=not progress):
            name = f"tile {tile.tile_id}"
            try:
                cutout = get_cutout(source, tile.centre, size, scale, partial=True)
                photometry = estimator.photometry(cutout.images, cutout.wcs, f"{name} ({cutout.source})",
                                                  cutout.covered)
            except (ImagingError, ValueError, OSError) as error:
                tiles.failed.append((tile.tile_id, str(error)))
                logger.warning("%s: left out of the background: %s", name, error)
                continue
            if crowded(np.array([photometry.source_density]), max_density)[0]:
                tiles.crowded.append(tile.tile_id)
                continue
            tiles.used.append(tile.tile_id)
            yield photometry if left_out is None else without_sky(photometry, *left_out)

    try:
        background = measure_background(photometries(), estimator.cosmology, estimator.settings)
    except ValueError:
        if tiles.used:  # not the want of tiles
            raise
        raise ValueError(f"{frames_root}: no tile to measure a background on ({len(planned)} tiles: "
                         f"{len(tiles.crowded)} crowded sky (> {max_density} sources per arcmin^2), "
                         f"{len(tiles.failed)} failed or unusable files)") from None
    background.meta.update(imaging=str(frames_root), tiles_planned=n_planned, tiles_used=len(tiles.used),
                           tiles_crowded=len(tiles.crowded), tiles_failed=len(tiles.failed),
                           dust_map=estimator.dust_map_dir or "none",
                           excluded=[] if known is None else [str(name) for name in known["id"]],
                           excluded_kpc=float(cfg.DEEPCEE.REDSHIFT.BACKGROUND_EXCLUDE_KPC))
    return background, tiles

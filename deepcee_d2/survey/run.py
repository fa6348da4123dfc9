"""Run a trained Deep-CEE over a survey on Dask: one task per tile, results kept as they finish.

Each tile's detections are written to ``<output>/tiles/<tile_id>.ecsv`` (atomically) as soon as the tile is
done, so a rerun skips finished tiles and an interrupted run resumes; the candidate catalogue is always
rebuilt from all tile files, so it is the same however the run was split. A tile whose imaging cannot be
read (corrupt FITS, no WCS, no imaging at all) is reported with its files and the reason in
``failed_tiles.ecsv`` and retried by the next run; it does not stop the others. A tile reaching past the
imaging is padded (`deepcee_d2.data.frames.Cutout.covered`): detections centred on its padding are dropped,
and the tile file records its covered fraction. For fields of local frames, ``coverage.ecsv`` and the
catalogue's metadata give the imaged and the searched area (`deepcee_d2.survey.tiling.field_coverage`).
Crowded sky is masked, as cluster surveys mask it: a tile whose red-sequence photometry finds more than
``DEEPCEE.SURVEY.MAX_SOURCE_DENSITY`` sources per arcmin^2 (the globular cluster M2's frame; `crowded`) gives no
candidates, and its area not covered by other tiles is masked, not searched (``tiles.ecsv`` lists every tile's
density). The mask is applied when the catalogue is built, so changing it needs no rerun of the detector.
``manifest.json`` records
what decides the tile files (weights SHA-256, config, imaging, tiles, threshold); a rerun into the same
folder with anything else is refused, naming the differences, so tiles of two runs are never mixed.

Dask runs on a ``LocalCluster`` (one single-threaded worker process per core) unless a scheduler address
is given (an existing ``dask-scheduler``, or a dask-jobqueue cluster's ``cluster.scheduler_address``). The
detector is loaded once per worker process, not once per tile. Workers use one PyTorch thread each by
default, so the floating-point work of a tile, and so the catalogue, does not depend on the number of
workers.
"""
import hashlib
import json
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.table import Table, hstack
from astropy.wcs.utils import proj_plane_pixel_scales

from ..config import flat_config
from ..cosmology import cosmology_from_cfg
from ..data.cache import get_cutout
from ..data.colour import ColourSettings, make_network_image, survey_tile_sizes
from ..data.frames import ImagingError, covered_at
from ..data.resample import Resampling
from ..data.sources import make_source
from ..engine.predictor import DetectorFactory
from ..io import atomic_output, setting_differences
from ..sky import box_centres, box_xy_to_sky
from .tiling import (DETECTION_COLUMNS, Tile, crowded, field_coverage, field_reference_frames, merge_detections,
                     plan_folder_tiles, stack_detections, tile_geometry)

logger = logging.getLogger(__name__)

# Per-process state of a Dask worker: the detector and imaging sources, built on first use.
_WORKER_STATE = {}


def _worker_cached(key, make):
    if key not in _WORKER_STATE:
        _WORKER_STATE[key] = make()
    return _WORKER_STATE[key]


@dataclass(frozen=True)
class ImagingSpec:
    """How a worker gets pixels: ``kind`` is ``fits`` (``root`` is a folder of frames, e.g. a synthetic
    survey or SDSS frames), ``sdss`` or ``skyview`` (``root`` is the download folder / cutout cache);
    frames are resampled onto tiles with ``resampling`` (`from_cfg`: ``DEEPCEE.IMAGING``)."""

    kind: str
    root: str
    resampling: Resampling = None

    @classmethod
    def from_cfg(cls, cfg, kind, root):
        return cls(kind, str(root), Resampling.from_cfg(cfg))

    def source(self):
        return _worker_cached(("imaging", self), lambda: make_source(self.kind, self.root, self.resampling))

    @property
    def cache_dir(self):
        """Network sources keep their cutouts on disk; local frames are read directly."""
        return None if self.kind == "fits" else Path(self.root) / "cutouts"


@dataclass(frozen=True)
class SurveyJob:
    """Everything a worker needs for a tile."""

    imaging: ImagingSpec
    # A picklable factory with a ``cache_key`` attribute; calling it returns
    # ``detect(rgb) -> (boxes XYXY, scores)``. Each worker calls it once per cache_key.
    detector: object
    colour: ColourSettings
    cutout_size: int
    pixel_scale: float  # arcsec
    network_size: int
    score_threshold: float  # the lowest score a tile file keeps (`tile_score_floor`)
    tiles_dir: str
    reference_band: str = "r"
    redshift: object = None  # a deepcee_d2.redsequence.RedSequenceEstimator, or None: no z and richness columns


def tile_result_path(job, tile):
    return Path(job.tiles_dir) / f"{tile.tile_id}.ecsv"


def _field_wcs(spec, name, band):
    """WCS of a field's reference frame, for pixel positions in the field (None outside local frames)."""
    if spec.kind != "fits":
        return None
    frames = _worker_cached(("fields", spec, band), lambda: field_reference_frames(
        spec.source().scan()[0], Path(spec.root), band))
    frame = frames.get(name)
    return None if frame is None else frame.wcs


def on_imaging(cutout, network_wcs, boxes):
    """Which boxes (XYXY, pixels of the network image with ``network_wcs``) are centred on pixels of
    ``cutout`` imaged in every band (`~deepcee_d2.data.frames.Cutout.covered`)."""
    if cutout.covered is None or len(boxes) == 0:
        return np.ones(len(boxes), bool)
    return covered_at(cutout.covered, *cutout.wcs.world_to_pixel(box_xy_to_sky(network_wcs, *box_centres(boxes))))


def detections_table(tile, boxes, scores, wcs, field_wcs=None):
    """The detections of one tile on the sky: box centres through the network image's ``wcs``."""
    x, y = box_centres(boxes)
    sky = box_xy_to_sky(wcs, x, y)
    pixel = proj_plane_pixel_scales(wcs).mean() * 3600  # arcsec per network pixel
    field_x = field_y = np.full(len(scores), np.nan)
    if field_wcs is not None and len(scores):
        field_x, field_y = (np.asarray(v, dtype=float) for v in field_wcs.world_to_pixel(sky))
    table = Table({
        "ra": np.atleast_1d(sky.ra.deg).astype(float), "dec": np.atleast_1d(sky.dec.deg).astype(float),
        "score": np.asarray(scores, dtype=float), "field": np.full(len(scores), tile.field, dtype=object).astype(str),
        "tile": np.full(len(scores), tile.tile_id, dtype=object).astype(str), "tile_x": x, "tile_y": y,
        "field_x": field_x, "field_y": field_y,
        "box_width": (boxes[:, 2] - boxes[:, 0]) * pixel if len(scores) else np.zeros(0),
        "box_height": (boxes[:, 3] - boxes[:, 1]) * pixel if len(scores) else np.zeros(0),
    }, names=DETECTION_COLUMNS)
    for name in ("ra", "dec"):
        table[name].unit = u.deg
    for name in ("box_width", "box_height"):
        table[name].unit = u.arcsec
    for name in ("tile_x", "tile_y", "field_x", "field_y"):
        table[name].unit = u.pix
    return table


def process_tile(tile, job):
    """Detect clusters in one tile and write its detections; returns ``(tile_id, n_detections, failure)``
    where ``failure`` is None or the reason the tile's imaging could not be used."""
    path = tile_result_path(job, tile)
    if path.exists():
        return tile.tile_id, None, None
    spec = job.imaging
    # Built first: building it sets the worker's threads (`DetectorFactory`), which the resampling uses too.
    detect = _worker_cached(("detector", job.detector.cache_key), job.detector)
    try:
        cutout = get_cutout(spec.source(), tile.centre, job.cutout_size, job.pixel_scale * u.arcsec,
                            cache_dir=spec.cache_dir, partial=True)
        rgb, wcs = make_network_image(cutout.images, cutout.wcs, job.network_size, job.colour,
                                      source=f"tile {tile.tile_id} ({cutout.source})")
    except (ImagingError, ValueError, OSError) as error:
        return tile.tile_id, None, str(error)
    boxes, scores = detect(rgb)
    keep = (scores >= job.score_threshold) & on_imaging(cutout, wcs, boxes)
    table = detections_table(tile, boxes[keep], scores[keep], wcs,
                             _field_wcs(spec, tile.field, job.reference_band))
    if job.redshift is not None:  # z and richness of each detection, from the tile's flux images
        from ..redsequence import SCAN_COLUMNS, SOURCE_DENSITY_KEY

        source = f"tile {tile.tile_id} ({cutout.source})"
        table = hstack([table, job.redshift.estimate(cutout.images, cutout.wcs, table["ra"], table["dec"], source,
                                                     cutout.covered)])
        if not len(table):  # the crowded-sky mask needs every tile's crowding, with detections or not
            table.meta[SOURCE_DENSITY_KEY] = job.redshift.source_density(cutout.images, cutout.wcs, source,
                                                                         cutout.covered)
            table.remove_columns(SCAN_COLUMNS)  # nothing to percolate; astropy cannot read empty ones back
    table.meta["COVERED"] = round(cutout.covered_fraction, 6)  # share of the tile imaged in every band
    table.meta.update(FIELD=tile.field, TILE_RA=tile.ra, TILE_DEC=tile.dec)  # where its sky is, for the mask
    with atomic_output(path) as temporary:
        table.write(temporary, format="ascii.ecsv", overwrite=True)
    return tile.tile_id, len(table), None


@contextmanager
def dask_client(scheduler=None, n_workers=None, processes=True, dashboard=None):
    """A Dask client on ``scheduler``, or on a `LocalCluster` of ``n_workers`` single-threaded workers
    (processes, or threads of this process) that is shut down, workers first, when the block ends.

    ``dashboard`` is an address (e.g. ``"localhost:8787"``) for Dask's dashboard; by default none is started.
    """
    from dask.distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    cluster = LocalCluster(n_workers=n_workers or os.cpu_count(), threads_per_worker=1, processes=processes,
                           dashboard_address=dashboard)
    try:
        with Client(cluster) as client:
            yield client
    finally:
        # The cluster is closed here, not left to the interpreter's exit. Dask's nanny still kills a worker
        # whose interpreter takes over its fixed 4 s to exit (torch's teardown on a busy machine) and warns
        # "Worker process still alive ... killing"; every result is on disk by then, so that one is not shown.
        nanny_log = logging.getLogger("distributed.nanny")
        nanny_log.addFilter(_quiet_slow_worker_exit)
        try:
            cluster.close()
        finally:
            nanny_log.removeFilter(_quiet_slow_worker_exit)


def _quiet_slow_worker_exit(record):
    return "Worker process still alive" not in record.getMessage()


def run_tiles(tiles, job, scheduler=None, n_workers=None, progress=True, processes=True, dashboard=None):
    """Process every tile without a result file on Dask (`dask_client`); returns the failures as a Table."""
    from dask.distributed import as_completed
    from tqdm import tqdm

    Path(job.tiles_dir).mkdir(parents=True, exist_ok=True)
    pending = [tile for tile in tiles if not tile_result_path(job, tile).exists()]
    logger.info("%d tiles, %d already done, %d to run", len(tiles), len(tiles) - len(pending), len(pending))
    failures = []
    if pending:
        by_id = {tile.tile_id: tile for tile in pending}
        with dask_client(scheduler, n_workers, processes, dashboard) as client:
            futures = client.map(process_tile, pending, job=job, pure=False)
            for future in tqdm(as_completed(futures), total=len(futures), desc="tiles", unit="tile",
                               disable=not progress):
                tile_id, _, failure = future.result()
                if failure is not None:
                    tile = by_id[tile_id]
                    logger.warning("tile %s failed: %s", tile_id, failure)
                    failures.append((tile_id, tile.field, tile.ra, tile.dec, failure))
    failures.sort()
    return Table(rows=failures or None, names=("tile", "field", "ra", "dec", "reason"),
                 dtype=(str, str, float, float, str))


def read_tile_file(path):
    """The detections of one tile file, with ``source_density``: the tile's sources per arcmin^2
    (`deepcee_d2.redsequence.Photometry.source_density`, from the file's meta; NaN without the tile's
    photometry: redshifts off, or a tile file written before it was recorded)."""
    from ..redsequence import SOURCE_DENSITY_KEY  # imports galsim and sep: not at module import

    table = Table.read(path, format="ascii.ecsv")
    table["source_density"] = np.full(len(table), float(table.meta.get(SOURCE_DENSITY_KEY, np.nan)))
    table["source_density"].unit = u.arcmin**-2
    table["source_density"].description = ("sources detected per arcmin^2 of the tile (high in crowded star "
                                           "fields, where candidates are unreliable)")
    return table


TILE_COLUMNS = ("tile", "field", "ra", "dec", "covered", "source_density")


def read_tile_files(paths):
    """The detections of tile files (`read_tile_file`), stacked (with ``source_density`` even when empty), and
    a table of the tiles, one row per file: `TILE_COLUMNS` (``ra``, ``dec`` of the tile's centre and ``field``
    are NaN and empty in tile files written before they were recorded)."""
    from ..redsequence import SOURCE_DENSITY_KEY  # imports galsim and sep: not at module import

    tables, rows = [], []
    for path in paths:
        table = read_tile_file(path)
        meta = table.meta
        rows.append((Path(path).stem, str(meta.get("FIELD", "")), float(meta.get("TILE_RA", np.nan)),
                     float(meta.get("TILE_DEC", np.nan)), float(meta.get("COVERED", np.nan)),
                     float(meta.get(SOURCE_DENSITY_KEY, np.nan))))
        tables.append(table)
    detections = stack_detections(tables)
    if "source_density" not in detections.colnames:
        detections["source_density"] = np.zeros(0)
    tile_table = Table(rows=rows or None, names=TILE_COLUMNS, dtype=(str, str, float, float, float, float))
    tile_table["ra"].unit = tile_table["dec"].unit = u.deg
    tile_table["source_density"].unit = u.arcmin**-2
    return detections, tile_table


def tiles_of(tile_table):
    """`Tile` objects of a `read_tile_files` tile table's rows (their squares: the searched and masked sky)."""
    return [Tile(str(row["tile"]), str(row["field"]), float(row["ra"]), float(row["dec"])) for row in tile_table]


def collect_detections(tiles, job):
    """`read_tile_files` of the tiles that have results, in tile order."""
    paths = (tile_result_path(job, tile) for tile in sorted(tiles, key=lambda t: t.tile_id))
    return read_tile_files([path for path in paths if path.exists()])


MANIFEST = "manifest.json"
# Config keys that do not change a tile's detections (the catalogue step reads them afresh on every run), and
# ones compared on their own (the weights by their SHA-256, the threshold by name).
# SCORE_THRESHOLD and KEEP_SCORE_FLOOR decide the tiles only through the floor the tiles keep, compared by name.
_NOT_IN_TILES = ("MODEL.WEIGHTS", "OUTPUT_DIR", "DEEPCEE.SURVEY.MERGE_RADIUS_KPC", "DEEPCEE.SURVEY.SCORE_THRESHOLD",
                 "DEEPCEE.SURVEY.KEEP_SCORE_FLOOR", "DEEPCEE.SURVEY.TARGET_FALSE_PER_DEG2",
                 "DEEPCEE.SURVEY.MAX_SOURCE_DENSITY", "DEEPCEE.SURVEY.REQUIRE_RED_SEQUENCE",
                 "DEEPCEE.SURVEY.PERCOLATE", "DEEPCEE.SURVEY.BCG_",
                 "DEEPCEE.REDSHIFT.BACKGROUND_EXCLUDE_KPC",  # measuring a background only
                 "DEEPCEE.EVAL.")  # PERCOLATE_MIN_DROP too (a prefix)
_COMPARED = ("weights_sha256", "detector", "imaging", "tiles", "tiles_sha256", "score_threshold")


def _sha256_json(value):
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def survey_manifest(cfg, job, tiles):
    """What decides the tile files of a run: the detector (weights SHA-256), the config, the imaging, the
    tiles and the score threshold, as plain JSON (``<output>/manifest.json``)."""
    detector = job.detector
    sha = getattr(detector, "weights_sha256", None)
    root = job.imaging.root if "://" in str(job.imaging.root) else str(Path(job.imaging.root).resolve())
    config = flat_config(cfg, skip=_NOT_IN_TILES)
    manifest = {
        "weights": getattr(detector, "weights", None), "weights_sha256": sha,
        "detector": None if sha else f"{type(detector).__module__}.{type(detector).__qualname__} {detector.cache_key}",
        "imaging": f"{job.imaging.kind}:{root}", "tiles": len(tiles),
        "tiles_sha256": _sha256_json(sorted((t.tile_id, t.ra, t.dec) for t in tiles)),
        "score_threshold": job.score_threshold, "config_sha256": _sha256_json(config), "config": config,
    }
    return json.loads(json.dumps(manifest))  # tuples as lists, as read back


class SurveyStateError(ValueError):
    """An output folder holds the tiles of another survey run, or tiles of an unknown one: resuming would mix
    them. Callers that own the folder (the demo) can say what to do in their own terms."""


def check_or_write_manifest(output_dir, manifest):
    """Write ``manifest.json`` into a new output folder, or check that an existing one (resume) was made
    with the same manifest.

    Raises
    ------
    SurveyStateError
        The folder holds tiles of another run (other weights, config, imaging, tiles or threshold; each
        difference is named), tile files without a manifest, or an unreadable manifest.
    """
    path = Path(output_dir) / MANIFEST
    if path.is_file():
        try:
            previous = json.loads(path.read_text())
        except ValueError as error:
            raise SurveyStateError(f"{path}: unreadable ({error}); write to another output folder, or delete "
                                   f"{output_dir} to start over") from None
        differences = setting_differences(previous, manifest, keys=_COMPARED)
        if previous.get("config_sha256") != manifest["config_sha256"]:
            config = setting_differences(previous.get("config", {}), manifest["config"])
            differences.append(f"config: {len(config)} keys differ: " + ", ".join(config[:5]))
        if differences:
            raise SurveyStateError(f"{output_dir}: holds the tiles of another survey run ({path}): "
                                   + "; ".join(differences)
                                   + f". Write to another output folder, or delete {output_dir} to start over")
        return
    tiles_dir = Path(output_dir) / "tiles"
    if tiles_dir.is_dir() and any(tiles_dir.glob("*.ecsv")):
        raise SurveyStateError(f"{tiles_dir}: tile results without {MANIFEST}, from an unknown run; write to "
                               f"another output folder, or delete {output_dir} to start over")
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")


def mark_crowded(tile_table, max_density, photometry_on):
    """Add the column ``crowded`` (`crowded` at ``max_density``) to a `read_tile_files` tile table, log what the
    mask covers and what it cannot (no photometry: ``photometry_on`` false, or tile files without a density),
    and return the crowded tiles' ids."""
    tile_table["crowded"] = crowded(tile_table["source_density"], max_density)
    unknown = int(np.count_nonzero(np.isnan(np.asarray(tile_table["source_density"], dtype=float))))
    if max_density > 0 and not photometry_on:
        logger.warning("DEEPCEE.SURVEY.MAX_SOURCE_DENSITY needs each tile's photometry "
                       "(DEEPCEE.REDSHIFT.IN_SURVEY True): no crowded sky is masked")
    elif max_density > 0 and unknown:
        logger.warning("%d of %d tiles have no source density (tile files of an older version, or photometry that "
                       "failed): the crowded-sky mask cannot cover them; rerun into a new folder to measure them all",
                       unknown, len(tile_table))
    crowded_ids = [str(tile) for tile in tile_table["tile"][tile_table["crowded"]]]
    if crowded_ids:
        logger.info("%d of %d tiles masked as crowded sky (> %g sources per arcmin^2): %s", len(crowded_ids),
                    len(tile_table), max_density, ", ".join(crowded_ids[:5]) + (" ..." if len(crowded_ids) > 5 else ""))
    return crowded_ids


def listable(detections, cfg):
    """Which detections may become candidates: not on crowded sky (`crowded` at
    ``DEEPCEE.SURVEY.MAX_SOURCE_DENSITY``) and, with ``DEEPCEE.SURVEY.REQUIRE_RED_SEQUENCE``, with a red-sequence
    peak at their position (``rs_peak``; detections without the estimator's columns are not cut, with a
    warning)."""
    survey = cfg.DEEPCEE.SURVEY
    keep = ~crowded(detections["source_density"], survey.MAX_SOURCE_DENSITY)
    if survey.REQUIRE_RED_SEQUENCE:
        if "rs_peak" in detections.colnames:
            keep &= np.asarray(detections["rs_peak"], dtype=bool)
        elif len(detections):
            logger.warning("DEEPCEE.SURVEY.REQUIRE_RED_SEQUENCE: the detections have no red-sequence estimate "
                           "(DEEPCEE.REDSHIFT.IN_SURVEY False when the tiles were made); none is cut for it")
    return keep


def percolated(detections, cfg):
    """``detections`` with their red-sequence peaks percolated (`deepcee_d2.redsequence.percolate`, at
    ``DEEPCEE.SURVEY.MERGE_RADIUS_KPC``, ``PERCOLATE_MIN_DROP``) when ``DEEPCEE.SURVEY.PERCOLATE``, without
    the scans' columns. Tiles without the scans (made before they were kept) are not percolated, with a
    warning; without red-sequence estimates (``REDSHIFT.IN_SURVEY`` off) there is nothing to percolate."""
    from ..redsequence import SCAN_COLUMNS, RedSequenceSettings, percolate  # imports galsim and sep

    has_scans = all(name in detections.colnames for name in SCAN_COLUMNS)
    if cfg.DEEPCEE.SURVEY.PERCOLATE and len(detections):
        if has_scans and not np.ma.is_masked(detections["scan_excess"]):
            detections = percolate(detections, cfg.DEEPCEE.SURVEY.MERGE_RADIUS_KPC * u.kpc, cosmology_from_cfg(cfg),
                                   RedSequenceSettings.from_cfg(cfg), cfg.DEEPCEE.SURVEY.PERCOLATE_MIN_DROP)
        elif "rs_peak" in detections.colnames:
            logger.warning("DEEPCEE.SURVEY.PERCOLATE: tiles without the red-sequence scans (made before they were "
                           "kept); their detections are not percolated. Rerun into a new folder to percolate")
    return detections[[name for name in detections.colnames if name not in SCAN_COLUMNS]]


def merged_candidates(detections, cfg):
    """A survey's detections (`collect_detections`), `percolated`, that may be candidates (`listable`), merged
    within the proper ``DEEPCEE.SURVEY.MERGE_RADIUS_KPC`` and centred on their brightest BCG within
    ``DEEPCEE.SURVEY.BCG_SCORE_MARGIN`` (`merge_detections`), at every score: the catalogue before its score
    cut, which the false-candidate rates (`deepcee_d2.evaluation.purity`) cut at several."""
    return merged_percolated(percolated(detections, cfg), cfg)


def merged_percolated(detections, cfg):
    """`merged_candidates` of detections already `percolated` (for a caller that needs the percolated peaks
    too, e.g. `deepcee_d2.evaluation.purity.loss_stages`)."""
    survey = cfg.DEEPCEE.SURVEY
    if survey.BCG_SCORE_MARGIN > 0 and len(detections) and "bcg_rmag" not in detections.colnames:
        logger.warning("DEEPCEE.SURVEY.BCG_SCORE_MARGIN: the tiles hold no BCG magnitudes (made before they were "
                       "kept, or without REDSHIFT.IN_SURVEY); candidates stand on their best-scored detection")
    return merge_detections(detections[listable(detections, cfg)], survey.MERGE_RADIUS_KPC * u.kpc,
                            survey.MIN_REDSHIFT, cosmology_from_cfg(cfg), survey.BCG_SCORE_MARGIN,
                            survey.BCG_MAG_MARGIN)


def build_catalogue(detections, cfg, provenance=None):
    """The candidate catalogue of a survey's detections (`collect_detections`): the `merged_candidates`
    scoring ``DEEPCEE.SURVEY.SCORE_THRESHOLD`` or more, ``provenance`` in its metadata."""
    catalogue = merged_candidates(detections, cfg)
    catalogue = catalogue[np.asarray(catalogue["score"], dtype=float) >= cfg.DEEPCEE.SURVEY.SCORE_THRESHOLD]
    catalogue.meta.update(provenance or {})
    return catalogue


@dataclass
class SurveyResult:
    """What `find_clusters` made: the catalogue, the failed tiles and the paths of every output."""

    catalogue: Table
    failures: Table
    paths: dict
    n_tiles: int = 0

    @property
    def all_tiles_failed(self):
        """True when no tile could be processed (every one is in ``failures``)."""
        return self.n_tiles > 0 and int(np.count_nonzero(self.failures["tile"] != "untiled")) == self.n_tiles


def job_from_cfg(cfg, imaging, output_dir, detector=None):
    """The `SurveyJob` of a Deep-CEE config: tile size (`survey_tile_sizes`), colour and score threshold; the
    red-sequence estimator when ``DEEPCEE.REDSHIFT.IN_SURVEY``."""
    from ..redsequence import RedSequenceEstimator  # imports galsim and sep: not at module import

    tile_size, network_size = survey_tile_sizes(cfg)
    return SurveyJob(imaging=imaging, detector=detector or DetectorFactory(cfg),
                     colour=ColourSettings.from_cfg(cfg), cutout_size=tile_size,
                     pixel_scale=cfg.DEEPCEE.COLOUR.PIXEL_SCALE, network_size=network_size,
                     score_threshold=tile_score_floor(cfg), tiles_dir=str(Path(output_dir) / "tiles"),
                     redshift=RedSequenceEstimator.from_cfg(cfg) if cfg.DEEPCEE.REDSHIFT.IN_SURVEY else None)


def tile_score_floor(cfg):
    """The lowest score a tile file keeps: ``DEEPCEE.SURVEY.KEEP_SCORE_FLOOR``, or ``SCORE_THRESHOLD`` when lower."""
    survey = cfg.DEEPCEE.SURVEY
    return min(survey.KEEP_SCORE_FLOOR, survey.SCORE_THRESHOLD)


def survey_coverage(cfg, tiles, imaging, failures, crowded_ids=()):
    """Imaged, searched and masked area per field (`field_coverage`) of a survey of local frames' fields: the
    tiles that did not fail are searched, those of ``crowded_ids`` masked; None for other surveys (sky regions,
    positions, remote imaging)."""
    field_tiles = [tile for tile in tiles if np.isfinite(tile.field_x)]
    if imaging.kind != "fits" or not field_tiles:
        return None
    failed, crowded_ids = set(failures["tile"]), set(crowded_ids)
    done = [tile for tile in field_tiles if tile.tile_id not in failed]
    frames, _ = imaging.source().scan()
    return field_coverage(frames, Path(imaging.root), [t for t in done if t.tile_id not in crowded_ids],
                          tile_geometry(cfg)[0], masked_tiles=[t for t in done if t.tile_id in crowded_ids])


def tile_network_image(job, tile):
    """Remake a tile's network image and WCS (for the gallery) exactly as the detector saw it."""
    cutout = get_cutout(job.imaging.source(), tile.centre, job.cutout_size, job.pixel_scale * u.arcsec,
                        cache_dir=job.imaging.cache_dir, partial=True)
    return make_network_image(cutout.images, cutout.wcs, job.network_size, job.colour, source=tile.tile_id)


def find_clusters(cfg, tiles, imaging, output_dir, *, problems=(), scheduler=None, n_workers=None,
                  gallery_size=50, crossmatch=(), detector=None, progress=True,
                  processes=True, dashboard=None):
    """Run the detector of ``cfg`` over ``tiles`` and write the candidate catalogue and its companions.

    Parameters
    ----------
    cfg : CfgNode
        Deep-CEE config with ``MODEL.WEIGHTS``; its ``DEEPCEE.COLOUR`` must be the training data's.
    tiles : list of `deepcee_d2.survey.tiling.Tile`
        From ``plan_field_tiles``, ``plan_region_tiles`` or ``plan_position_tiles``.
    imaging : ImagingSpec
        Where the pixels come from.
    problems : sequence of (str, str)
        Input that could not be tiled, ``(file or field, reason)`` (`plan_folder_tiles`): reported in
        ``failed_tiles.ecsv`` beside the tiles that failed.
    output_dir : str or Path
        Receives ``manifest.json``, ``tiles/``, ``candidates.{fits,ecsv,csv}``, ``candidates.reg``,
        ``failed_tiles.ecsv``, ``tiles.ecsv`` (every finished tile: centre, imaged fraction, source density,
        crowded), ``coverage.ecsv`` (fields of local frames: imaged, searched and masked deg^2, also in the
        catalogue's ``AREADEG2`` / ``IMAGDEG2`` / ``MASKDEG2`` metadata), ``config.yaml`` and ``gallery/index.html``.
        Rerunning into the same folder resumes, when the run's manifest (weights, config, imaging, tiles,
        threshold) is the same.
    scheduler : str, optional
        Address of an existing Dask scheduler; a ``LocalCluster`` of ``n_workers`` (default: all cores)
        single-threaded workers otherwise: processes, or threads of this process with ``processes=False``.
    dashboard : str, optional
        Address for the LocalCluster's Dask dashboard (e.g. ``"localhost:8787"``); none by default.
    crossmatch : path, Table, list of them, or dict of name -> path or Table
        Known-cluster catalogues (``ra``, ``dec``, ``z``): candidates within
        ``DEEPCEE.EVAL.CROSSMATCH_RADIUS_KPC`` of a catalogued cluster in ``CROSSMATCH_Z_RANGE`` are flagged
        known, the others new.
    detector : callable, optional
        A detector factory in place of the config's model (see `SurveyJob`).

    Raises
    ------
    ValueError
        No tiles (an empty input: the ``problems`` are named), a ``crossmatch`` catalogue that cannot be read
        (`~deepcee_d2.evaluation.crossmatch.read_reference_catalog`), weights that cannot be loaded or do not
        fit the model (`deepcee_d2.engine.predictor`), or an ``output_dir`` holding another run's tiles. All
        before anything is written.
    """
    from ..evaluation.crossmatch import crossmatch_false_positives, read_reference_catalogs
    from .outputs import candidate_names, write_catalogue, write_gallery, write_regions

    output_dir = Path(output_dir)
    crossmatch = read_reference_catalogs(crossmatch) if crossmatch else ()  # a bad one is named before the run
    if not tiles:
        found = "; ".join(f"{where}: {reason}" for where, reason in list(problems)[:5]) or "no frames found"
        raise ValueError(f"{imaging.kind}:{imaging.root}: nothing to run the detector on, 0 tiles "
                         f"({len(problems)} problems: {found})")
    job = job_from_cfg(cfg, imaging, output_dir, detector)  # checks the weights first
    if job.redshift is not None:
        job.redshift.calibration_warnings(imaging.source())
    manifest = survey_manifest(cfg, job, tiles)
    check_or_write_manifest(output_dir, manifest)
    with atomic_output(output_dir / "config.yaml") as temporary:
        temporary.write_text(cfg.dump(), encoding="utf-8")
    failures = run_tiles(tiles, job, scheduler, n_workers, progress, processes, dashboard)
    for where, reason in problems:  # "untiled": ECSV reads an empty string back as a masked value
        failures.add_row(("untiled", where, np.nan, np.nan, reason))
    # FITS-keyword-sized names, so the FITS catalogue carries them too (CONFIG, multi-line, is ECSV only).
    provenance = {
        "MODEL": manifest["weights"] or "",
        "MODELSHA": manifest["weights_sha256"] or "",
        "IMAGING": f"{imaging.kind}:{imaging.root}",
        "SCORECUT": cfg.DEEPCEE.SURVEY.SCORE_THRESHOLD,
        "MERGEKPC": cfg.DEEPCEE.SURVEY.MERGE_RADIUS_KPC,
        "MERGEZ": cfg.DEEPCEE.SURVEY.MIN_REDSHIFT,
        "BCGMARGN": cfg.DEEPCEE.SURVEY.BCG_SCORE_MARGIN,
        "BCGMAGMG": cfg.DEEPCEE.SURVEY.BCG_MAG_MARGIN,
        "NFAILED": len(failures),
        "NTILES": len(tiles),
        "CONFIG": cfg.dump(),
    }
    detections, tile_table = collect_detections(tiles, job)
    crowded_ids = mark_crowded(tile_table, cfg.DEEPCEE.SURVEY.MAX_SOURCE_DENSITY, job.redshift is not None)
    provenance.update({"MAXSRCD": cfg.DEEPCEE.SURVEY.MAX_SOURCE_DENSITY, "NCROWDED": len(crowded_ids),
                       "RSREQ": bool(cfg.DEEPCEE.SURVEY.REQUIRE_RED_SEQUENCE),
                       # Which red-sequence calibration the z and richness columns rest on.
                       "RSBKG": cfg.DEEPCEE.REDSHIFT.BACKGROUND_FILE or "packaged (synthetic sky)",
                       "DUSTMAP": cfg.DEEPCEE.REDSHIFT.DUST_MAP_DIR or "none (not dereddened)"})
    coverage = survey_coverage(cfg, tiles, imaging, failures, crowded_ids)
    if coverage is not None:
        searched, imaged, masked = (float(np.sum(coverage[column]))
                                    for column in ("searched_deg2", "imaged_deg2", "masked_deg2"))
        provenance.update({"AREADEG2": round(searched, 6), "IMAGDEG2": round(imaged, 6),
                           "MASKDEG2": round(masked, 6)})
        logger.info("searched %.4f of %.4f deg^2 imaged (%.1f %%) in %d fields; %.4f deg^2 masked as crowded",
                    searched, imaged, 100 * searched / imaged if imaged else float("nan"), len(coverage), masked)
    catalogue = build_catalogue(detections, cfg, provenance)
    catalogue.add_column(candidate_names(catalogue["ra"], catalogue["dec"]) if len(catalogue) else np.zeros(0, str),
                         name="name", index=0)
    if crossmatch:
        evaluation = cfg.DEEPCEE.EVAL
        catalogue = crossmatch_false_positives(catalogue, crossmatch,
                                               radius=evaluation.CROSSMATCH_RADIUS_KPC * u.kpc,
                                               z_range=tuple(evaluation.CROSSMATCH_Z_RANGE),
                                               cosmology=cosmology_from_cfg(cfg))
    paths = write_catalogue(catalogue, output_dir)
    paths["regions"] = write_regions(catalogue, output_dir / "candidates.reg")
    with atomic_output(output_dir / "failed_tiles.ecsv") as temporary:
        failures.write(temporary, format="ascii.ecsv", overwrite=True)
    paths["failures"] = output_dir / "failed_tiles.ecsv"
    with atomic_output(output_dir / "tiles.ecsv") as temporary:
        tile_table.write(temporary, format="ascii.ecsv", overwrite=True)
    paths["tiles"] = output_dir / "tiles.ecsv"
    if coverage is not None:
        with atomic_output(output_dir / "coverage.ecsv") as temporary:
            coverage.write(temporary, format="ascii.ecsv", overwrite=True)
        paths["coverage"] = output_dir / "coverage.ecsv"
    by_id = {tile.tile_id: tile for tile in tiles}
    paths["gallery"] = write_gallery(catalogue, output_dir, lambda tile_id: tile_network_image(job, by_id[tile_id]),
                                     top=gallery_size)
    logger.info("%d candidates from %d tiles (%d failed): %s", len(catalogue), len(tiles), len(failures),
                paths["ecsv"])
    return SurveyResult(catalogue, failures, paths, len(tiles))


def find_clusters_in_folder(cfg, frames_root, output_dir, **options):
    """`find_clusters` over every field of a folder of g, r, i FITS frames (a synthetic survey, SDSS frames,
    injected frames), cut into ``cfg``'s tiles (`plan_folder_tiles`); ``options`` go to `find_clusters`."""
    imaging = ImagingSpec.from_cfg(cfg, "fits", frames_root)
    tiles, problems = plan_folder_tiles(imaging.source(), *tile_geometry(cfg))
    return find_clusters(cfg, tiles, imaging, output_dir, problems=problems, **options)

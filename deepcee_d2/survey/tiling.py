"""Where the detector looks: survey fields or sky regions cut into overlapping tiles, and the tiles'
detections merged into one list of candidates on the sky.

A tile is a north-up cutout of ``DEEPCEE.SURVEY.TILE_SIZE`` pixels at ``COLOUR.PIXEL_SCALE`` (by default the
training size, ``COLOUR.CUTOUT_SIZE``; `~deepcee_d2.data.colour.survey_tile_sizes`) made by the same imaging
source and colour function, and binned by the same factor, as the training images. Neighbouring tiles overlap by
at least the largest cluster box the survey looks for (`tile_geometry`), so a cluster cut by one tile's edge
lies whole inside a neighbour; detections of the same cluster in several tiles, and the pieces of one
cluster (bright members detected on their own), are merged by proper distance at the cluster's redshift,
keeping the best score.

Fields (frames of any orientation) are covered whole (`plan_field_tiles`): the tiles reach half an overlap
past every edge of a field's frame, into its neighbours' frames or into padding where there is no imaging
(`deepcee_d2.data.frames.Cutout.covered`), so every box centred on the frame lies whole inside a tile.
`field_coverage` measures the imaged and the searched area of every field. Tiles of crowded sky (a globular
cluster, low Galactic latitude: more sources per arcmin^2 than ``DEEPCEE.SURVEY.MAX_SOURCE_DENSITY``,
`crowded`) are masked, as cluster surveys mask such sky: their detections are no candidates and their area is
not searched.
"""
import math
import re
from dataclasses import dataclass
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import Angle, SkyCoord
from astropy.table import Table, vstack
from astropy.wcs.utils import proj_plane_pixel_scales

from ..cosmology import DEFAULT_COSMOLOGY, angular_size, cosmology_from_cfg
from ..data.colour import survey_tile_sizes
from ..sky import centre_and_radius, corners_sky, cutout_grid, merge_by_sky_distance


@dataclass(frozen=True)
class Tile:
    """One tile: a cutout centred on ``(ra, dec)`` (deg), from field ``field``.

    ``field_x``, ``field_y`` are the 0-based pixel position of the centre in the field's reference frame
    (NaN for tiles of a sky region rather than of a field).
    """

    tile_id: str
    field: str
    ra: float
    dec: float
    field_x: float = math.nan
    field_y: float = math.nan

    @property
    def centre(self):
        return SkyCoord(self.ra * u.deg, self.dec * u.deg)


def largest_cluster_box(cfg):
    """Side on the sky (`~astropy.units.Quantity` [arcsec]) of the largest cluster box the survey looks for:
    ``DEEPCEE.DATA.BOX_SIZE_KPC`` (proper) at ``DEEPCEE.SURVEY.MIN_REDSHIFT``. The angular size of a fixed
    proper length shrinks with redshift up to z ~ 1.6, so every cluster at higher z has a smaller box."""
    z = cfg.DEEPCEE.SURVEY.MIN_REDSHIFT
    if not 0 < z < 1.5:
        raise ValueError(f"DEEPCEE.SURVEY.MIN_REDSHIFT = {z}: must lie between 0 and 1.5 (the tile overlap is the "
                         f"box size at this redshift)")
    return angular_size(cfg.DEEPCEE.DATA.BOX_SIZE_KPC * u.kpc, z, cosmology_from_cfg(cfg))


def tile_geometry(cfg):
    """Tile side and minimum overlap (both `~astropy.units.Quantity` [arcsec]) from a Deep-CEE config.

    The overlap is ``DEEPCEE.SURVEY.TILE_OVERLAP_ARCSEC``, or when that is 0 the largest cluster box
    (`largest_cluster_box`): a box no larger than the overlap lies whole inside one of two neighbouring tiles.
    A smaller positive value is refused, since a cluster could then be cut by the edges of every tile that
    holds it.
    """
    side = survey_tile_sizes(cfg)[0] * cfg.DEEPCEE.COLOUR.PIXEL_SCALE * u.arcsec
    box = largest_cluster_box(cfg)
    overlap = cfg.DEEPCEE.SURVEY.TILE_OVERLAP_ARCSEC * u.arcsec
    if overlap == 0:
        overlap = box
    if overlap < box:
        raise ValueError(f"DEEPCEE.SURVEY.TILE_OVERLAP_ARCSEC = {overlap.value} is smaller than the largest cluster "
                         f"box ({box.to_value(u.arcsec):.1f} arcsec: {cfg.DEEPCEE.DATA.BOX_SIZE_KPC} kpc at "
                         f"z = {cfg.DEEPCEE.SURVEY.MIN_REDSHIFT}); use 0 for that minimum")
    if overlap >= side:
        raise ValueError(f"tile overlap {overlap:.1f} must be smaller than the tile side {side:.1f} (raise "
                         f"DEEPCEE.SURVEY.MIN_REDSHIFT for smaller cluster boxes)")
    return side, overlap.to(u.arcsec)


def spread_offsets(room, step):
    """Offsets ``0 .. room`` no more than ``step`` apart, evenly spread (``[room / 2]`` when room < 0)."""
    if room <= 0:
        return np.array([room / 2])
    return np.linspace(0, room, math.ceil(room / step) + 1)


def tile_centres_1d(length, tile, overlap):
    """Centres of tiles of size ``tile`` covering ``[0, length]`` with neighbours overlapping >= ``overlap``:
    the first and last flush with the ends, the others evenly between (one in the middle if it is short)."""
    return tile / 2 + spread_offsets(length - tile, tile - overlap)


def field_name(path, root, band):
    """A field's name from one of its frame files: the file name without the band and the extension, or
    the folder name for the synthetic layout ``<field>/frame-<band>.fits``."""
    path = Path(path)
    stem = re.sub(r"\.fits(\.gz|\.bz2|\.fz)?$", "", path.name)
    stem = re.sub(rf"-{re.escape(band)}(?=-|$)", "", stem)
    folder = path.parent.relative_to(root).as_posix()
    if stem == "frame":
        return folder if folder != "." else stem
    return stem if folder == "." else f"{folder}/{stem}"


def _safe(text):
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", text)


def group_fields(frames, root):
    """``{field name: {band: frame}}`` of ``frames``; a field with two frames of one band is an error."""
    fields = {}
    for frame in frames:
        bands = fields.setdefault(field_name(frame.path, root, frame.band), {})
        if frame.band in bands:
            raise ValueError(f"{frame.path}: a second {frame.band}-band frame of the field of {bands[frame.band].path}")
        bands[frame.band] = frame
    return fields


def field_reference_frames(frames, root, band="r"):
    """``{field name: frame}`` of the ``band`` frames among ``frames``."""
    return {name: bands[band] for name, bands in group_fields(frames, root).items() if band in bands}


# Tiles are spaced on one tangent plane per field; each tile's own north-up grid is tilted against that plane
# by the convergence of meridians (< 1 degree across a field), which this share of the tile side absorbs.
_TILT_MARGIN = 0.02
# Frames are sampled in cells of about this many pixels on a side (and along their edges) to decide which
# tiles hold imaging and to measure the imaged and searched areas.
_SAMPLE_STEP_PX = 16


def tile_square(tile, side, n_pixels=1000):
    """The north-up TAN grid of a tile's square of ``side`` on the sky, with ``n_pixels`` on a side (any
    number: only the square matters)."""
    return cutout_grid(tile.centre, n_pixels, side / n_pixels)


def _inside_any(coords, grids):
    """Which of ``coords`` lie within the outer pixel edges of at least one of ``grids``, each
    ``(wcs, (height, width))``: the one containment rule of tiles and frames (as the resampling's coverage)."""
    inside = np.zeros(coords.shape, bool)
    for wcs, (height, width) in grids:
        x, y = (np.asarray(v) for v in wcs.world_to_pixel(coords))
        inside |= (x >= -0.5) & (x <= width - 0.5) & (y >= -0.5) & (y <= height - 0.5)
    return inside


def inside_tiles(coords, tiles, side):
    """Boolean array: which of ``coords`` lie inside the square of at least one of ``tiles``."""
    return _inside_any(coords, [(grid, grid.array_shape) for grid in (tile_square(tile, side) for tile in tiles)])


def frame_samples(frame, step_px=_SAMPLE_STEP_PX, edges=False):
    """Sky positions of the centres of a frame's cells of about ``step_px`` x ``step_px`` pixels, and the
    number of frame pixels each stands for (for areas); with ``edges``, also points every ``step_px`` along
    the frame's outer pixel edges (which stand for no area: the count is for the cells)."""
    height, width = frame.shape
    nx, ny = math.ceil(width / step_px), math.ceil(height / step_px)
    x, y = np.meshgrid((np.arange(nx) + 0.5) * width / nx - 0.5, (np.arange(ny) + 0.5) * height / ny - 0.5)
    x, y = x.ravel(), y.ravel()
    if edges:
        along_x, along_y = np.linspace(-0.5, width - 0.5, nx + 1), np.linspace(-0.5, height - 0.5, ny + 1)
        x = np.concatenate([x, along_x, along_x, np.full(ny + 1, -0.5), np.full(ny + 1, width - 0.5)])
        y = np.concatenate([y, np.full(nx + 1, -0.5), np.full(nx + 1, height - 0.5), along_y, along_y])
    return frame.wcs.pixel_to_world(x, y), width * height / (nx * ny)


def frame_tiles(name, frame, side, overlap):
    """North-up tiles of ``side`` covering the whole footprint of ``frame`` (any rotation) and reaching
    ``overlap / 2`` past it, neighbours overlapping by at least ``overlap``; tiles holding none of the frame
    (corners of a rotated frame's bounding box) are left out."""
    centre, _ = centre_and_radius(frame.wcs, frame.shape)
    plane = cutout_grid(centre, 1, 1 * u.arcsec)  # a tangent plane in arcsec, north up
    x, y = (np.asarray(v) for v in plane.world_to_pixel(corners_sky(frame.wcs, frame.shape)))
    side_as, overlap_as = side.to_value(u.arcsec), overlap.to_value(u.arcsec) + _TILT_MARGIN * side.to_value(u.arcsec)
    if overlap_as >= side_as:
        raise ValueError(f"{frame.path}: tiles of {side} cannot overlap by {overlap} (+{_TILT_MARGIN:.0%} margin)")
    half = overlap.to_value(u.arcsec) / 2
    xs = x.min() - half + tile_centres_1d(np.ptp(x) + 2 * half, side_as, overlap_as)
    ys = y.min() - half + tile_centres_1d(np.ptp(y) + 2 * half, side_as, overlap_as)
    samples, _ = frame_samples(frame, edges=True)
    tiles = []
    for row, ty in enumerate(ys):
        for column, tx in enumerate(xs):
            sky = plane.pixel_to_world(tx, ty)
            fx, fy = (float(v) for v in frame.wcs.world_to_pixel(sky))
            tile = Tile(f"{_safe(name)}_r{row:03d}_c{column:03d}", name, float(sky.ra.deg), float(sky.dec.deg), fx, fy)
            if inside_tiles(samples, [tile], side).any():
                tiles.append(tile)
    return tiles


def plan_field_tiles(frames, root, side, overlap, reference_band="r"):
    """Tiles covering every field of ``frames`` (the ``frames()`` of a `LocalFITSSource` on ``root``).

    Each field is tiled over the whole footprint of its ``reference_band`` frame (`frame_tiles`): north-up
    tiles reaching ``overlap / 2`` past its edges, so that every box up to ``overlap`` centred on the frame
    lies whole inside one tile. Where a tile reaches past the imaging, its cutout is padded and masked.

    Returns
    -------
    list of `Tile`, sorted by field, then row, then column.
    """
    fields = group_fields(frames, root)
    names = sorted(name for name, bands in fields.items() if reference_band in bands)
    if not names:
        raise ValueError(f"{root}: no {reference_band}-band frames to tile")
    return [tile for name in names for tile in frame_tiles(name, fields[name][reference_band], side, overlap)]


def _imaged_samples(frames, root, names, reference_band, bands):
    """``{field: (samples, imaged, deg^2 per sample)}`` of the named fields: their ``reference_band`` frame
    sampled (`frame_samples`), and which samples have data in every band (from any frame of ``frames``)."""
    fields = group_fields(frames, root)
    circles = [centre_and_radius(frame.wcs, frame.shape) for frame in frames]
    centres, radii = SkyCoord([c for c, _ in circles]), u.Quantity([r for _, r in circles])
    result = {}
    for name in sorted(names):
        if reference_band not in fields.get(name, {}):
            continue
        reference = fields[name][reference_band]
        samples, pixels_each = frame_samples(reference)
        centre, radius = centre_and_radius(reference.wcs, reference.shape)
        close = centres.separation(centre) <= radii + radius
        imaged = np.ones(samples.shape, bool)
        for band in bands:
            on_band = [(f.wcs, f.shape) for f, near in zip(frames, close) if near and f.band == band]
            imaged &= _inside_any(samples, on_band)
        result[name] = samples, imaged, pixels_each * proj_plane_pixel_scales(reference.wcs).mean() ** 2
    return result


def imaged_area(frames, root, reference_band="r", bands=("g", "r", "i")):
    """Area in deg^2 of the fields of ``frames`` imaged in every band (`field_coverage`'s imaged area), summed
    over fields (strips where neighbouring fields overlap count in each)."""
    fields = group_fields(frames, root)
    sampled = _imaged_samples(frames, root, fields, reference_band, bands)
    return float(sum(imaged.sum() * area for _, imaged, area in sampled.values()))


def field_coverage(frames, root, tiles, side, reference_band="r", bands=("g", "r", "i"), masked_tiles=()):
    """Imaged, searched and masked area of every field of ``frames`` that ``tiles`` were planned on.

    The imaged area of a field is the part of its ``reference_band`` frame with data in every band (from any
    frame of the folder); the searched area is the part of that inside at least one of ``tiles`` (pass the
    tiles that were processed and not masked); the masked area is the imaged part inside ``masked_tiles``
    (crowded sky, `crowded`) and inside no searched tile. All are sampled at the centres of cells of about
    16 x 16 frame pixels.

    Returns
    -------
    `~astropy.table.Table`
        One row per field: ``field``, ``imaged_deg2``, ``searched_deg2``, ``searched_fraction``, ``masked_deg2``.
    """
    by_field, masked_by_field = {}, {}
    for tile in tiles:
        by_field.setdefault(tile.field, []).append(tile)
    for tile in masked_tiles:
        masked_by_field.setdefault(tile.field, []).append(tile)
    rows = []
    for name, (samples, imaged, area) in _imaged_samples(frames, root, set(by_field) | set(masked_by_field),
                                                         reference_band, bands).items():
        searched = imaged & inside_tiles(samples, by_field.get(name, []), side)
        masked = imaged & ~searched & inside_tiles(samples, masked_by_field.get(name, []), side)
        rows.append((name, imaged.sum() * area, searched.sum() * area,
                     searched.sum() / imaged.sum() if imaged.any() else np.nan, masked.sum() * area))
    table = Table(rows=rows or None,
                  names=("field", "imaged_deg2", "searched_deg2", "searched_fraction", "masked_deg2"),
                  dtype=(str, float, float, float, float))
    for column in ("imaged_deg2", "searched_deg2", "masked_deg2"):
        table[column].unit = u.deg ** 2
    return table


def crowded(source_density, max_density):
    """Which tiles (or the detections of which tiles) lie on crowded sky: more than ``max_density`` sources per
    arcmin^2 (``DEEPCEE.SURVEY.MAX_SOURCE_DENSITY``; 0: none does). An unknown density (NaN) is not crowded."""
    density = np.asarray(source_density, dtype=float)
    if not max_density > 0:
        return np.zeros(density.shape, bool)
    return density > max_density  # NaN compares False


def plan_folder_tiles(source, side, overlap, reference_band="r"):
    """Tiles of every field of a `~deepcee_d2.data.frames.LocalFITSSource`, and what cannot be tiled.

    Returns
    -------
    tiles : list of `Tile`
    problems : list of (str, str)
        ``(file or field, reason)`` for files that are not usable frames (corrupt, no WCS, ...) and fields
        without a ``reference_band`` frame; they are reported, the rest is tiled.
    """
    frames, unusable = source.scan()
    problems = [(str(path), reason) for path, reason in unusable.items()]
    fields = group_fields(frames, source.root)
    problems += [(name, f"field {name}: no {reference_band}-band frame to tile it on")
                 for name, bands in sorted(fields.items()) if reference_band not in bands]
    if not any(reference_band in bands for bands in fields.values()):
        return [], problems
    return plan_field_tiles(frames, source.root, side, overlap, reference_band), problems


def plan_region_tiles(ra_range, dec_range, side, overlap):
    """Tiles covering an RA/Dec box (deg): rows of constant Dec, each row's RA step widened by 1/cos(Dec)
    at the row's edge nearest the equator, where the row is widest on the sky."""
    (ra_min, ra_max), (dec_min, dec_max) = sorted(ra_range), sorted(dec_range)
    if not (-90 <= dec_min < dec_max <= 90) or not ra_min < ra_max:
        raise ValueError(f"region RA {ra_range}, Dec {dec_range}: need ra_min < ra_max and -90 <= dec_min < dec_max <= 90")
    side_deg, overlap_deg = side.to_value(u.deg), overlap.to_value(u.deg)
    tiles = []
    dec_centres = dec_min + tile_centres_1d(dec_max - dec_min, side_deg, overlap_deg)
    for row, dec in enumerate(dec_centres):
        low, high = dec - side_deg / 2, dec + side_deg / 2
        nearest_equator = 0.0 if low <= 0 <= high else min(abs(low), abs(high))
        cos_dec = math.cos(math.radians(min(nearest_equator, 89.0)))
        width = (ra_max - ra_min) * cos_dec
        for column, x in enumerate(tile_centres_1d(width, side_deg, overlap_deg)):
            ra = (ra_min + x / cos_dec) % 360
            tiles.append(Tile(f"region_r{row:03d}_c{column:03d}", "region", float(ra), float(dec)))
    return tiles


def plan_position_tiles(coords):
    """One tile centred on each sky position (e.g. candidates from another catalogue)."""
    return [Tile(f"position_{index:05d}", "positions", float(c.ra.deg), float(c.dec.deg))
            for index, c in enumerate(coords)]


DETECTION_COLUMNS = ("ra", "dec", "score", "field", "tile", "tile_x", "tile_y", "field_x", "field_y",
                     "box_width", "box_height")


def stack_detections(tables):
    """Tile detection tables stacked into one, the empty ones left out; with none holding a detection, the
    first table's columns without rows (a survey whose tiles found nothing keeps its z and richness columns),
    or `DETECTION_COLUMNS` without any table."""
    found = [table for table in tables if len(table)]
    if found:
        return vstack(found, metadata_conflicts="silent")
    if tables:
        return Table(tables[0][:0], copy=True, meta={})
    return Table(names=DETECTION_COLUMNS, dtype=(float, float, float, str, str) + (float,) * 6)


def merge_radii(detections, radius, min_redshift, cosmology=DEFAULT_COSMOLOGY):
    """The merging radius of each detection on the sky: the proper length ``radius`` at the detection's
    redshift estimate (column ``z_est``, where present and finite), else at ``min_redshift``.

    Parameters
    ----------
    detections : `~astropy.table.Table`
        Detections, with an optional ``z_est`` column (masked or NaN where there is no estimate).
    radius : `~astropy.units.Quantity` [length]
        Proper merging radius (``DEEPCEE.SURVEY.MERGE_RADIUS_KPC``).
    min_redshift : float
        The survey's lowest cluster redshift (``DEEPCEE.SURVEY.MIN_REDSHIFT``), > 0: a detection without an
        estimate gets the widest angle a cluster of the survey's redshifts can span.
    cosmology : `~astropy.cosmology.FLRW`

    Returns
    -------
    `~astropy.coordinates.Angle`, one per detection.
    """
    radius = u.Quantity(radius)
    if radius.unit.physical_type != "length" or not radius.isscalar or not radius.value > 0:
        raise ValueError(f"merging radius must be one positive proper length (e.g. kpc), got {radius}")
    if not (np.isfinite(min_redshift) and min_redshift > 0):
        raise ValueError(f"DEEPCEE.SURVEY.MIN_REDSHIFT must be finite and > 0, got {min_redshift}")
    z = np.full(len(detections), float(min_redshift))
    if "z_est" in detections.colnames:
        estimate = np.ma.filled(np.ma.asarray(detections["z_est"], dtype=float), np.nan)
        known = np.isfinite(estimate) & (estimate > 0)
        z[known] = estimate[known]
    return Angle(angular_size(radius, z, cosmology))


def centres_on_brightest_bcg(detections, result, margin, mag_margin=0.0):
    """For each candidate of a `merge_by_sky_distance` ``result``, the detection it stands on: of its group's
    detections scoring within ``margin`` of its best and with a BCG (``bcg_rmag`` finite, the red-sequence
    estimate's), those whose BCG is at most ``mag_margin`` fainter than the brightest of them (a near-tie is
    no evidence), and of these the best-scored (the first in the table on a tie); the group's best-scored
    detection when none has a BCG."""
    scores = np.asarray(detections["score"], dtype=float)
    bcg = np.ma.filled(np.ma.asarray(detections["bcg_rmag"], dtype=float), np.nan)
    centres = []
    for kept in result.kept:
        close = np.flatnonzero((result.group == kept) & (scores >= scores[kept] - margin) & np.isfinite(bcg))
        if not len(close):
            centres.append(kept)
            continue
        bright = close[bcg[close] <= bcg[close].min() + mag_margin]
        centres.append(kept if kept in bright else bright[np.argmax(scores[bright])])
    return np.asarray(centres, dtype=int)


def merge_detections(detections, radius, min_redshift, cosmology=DEFAULT_COSMOLOGY, bcg_margin=0.0,
                     bcg_mag_margin=0.0):
    """One row per candidate from the detections of all tiles: in descending score, each detection not yet
    absorbed is kept and absorbs the others within ``radius`` (proper) at its redshift (`merge_radii`,
    `merge_by_sky_distance`); ``n_merged`` counts the detections each candidate absorbed.

    With ``bcg_margin`` > 0 and the estimator's ``bcg_rmag`` column, a candidate stands where its BCG is
    brightest (`centres_on_brightest_bcg`): its row is that of the detection of its group whose BCG is the
    brightest (within ``bcg_mag_margin``: the best-scored of those) among those scoring within ``bcg_margin``
    of the group's best, with the best score. Labels are BCG-centred, but the network can score a bright member
    hundreds of kpc away as high as the BCG.

    The result is independent of the order in which tiles finished: rows are sorted by tile and
    position first, and the merged catalogue by descending score, then RA and Dec. Cutting the result at a
    score gives the candidates that merging only the detections above that score gives (positions aside:
    a candidate may stand on a detection scoring up to ``bcg_margin`` less than it).
    """
    if len(detections) == 0:
        merged = Table(detections[:0], copy=True)
        merged["n_merged"] = np.zeros(0, dtype=int)
        return merged
    detections = Table(detections, copy=True)
    detections.sort(["tile", "ra", "dec", "score"])
    coords = SkyCoord(np.asarray(detections["ra"], float), np.asarray(detections["dec"], float), unit=u.deg)
    result = merge_by_sky_distance(coords, np.asarray(detections["score"]),
                                   merge_radii(detections, radius, min_redshift, cosmology))
    centres = result.kept
    if bcg_margin > 0 and "bcg_rmag" in detections.colnames:
        centres = centres_on_brightest_bcg(detections, result, bcg_margin, bcg_mag_margin)
    merged = detections[centres]
    merged["score"] = detections["score"][result.kept]
    merged["n_merged"] = [int(np.count_nonzero(result.group == index)) for index in result.kept]
    order = np.lexsort((np.asarray(merged["dec"]), np.asarray(merged["ra"]), -np.asarray(merged["score"])))
    return merged[order]

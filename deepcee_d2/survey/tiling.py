"""Where the detector looks: survey fields or sky regions cut into overlapping tiles, and the tiles'
detections merged into one list of candidates on the sky.

A tile is a cutout of the training size (``DEEPCEE.COLOUR.CUTOUT_SIZE`` pixels at ``PIXEL_SCALE``) made by
the same imaging source and colour function as the training images. Neighbouring tiles overlap by at least
the largest anchor box, so a cluster cut by one tile's edge lies whole inside a neighbour; detections of the
same cluster in several tiles, and the pieces of one cluster (bright members detected on their own), are
merged by proper distance at the cluster's redshift, keeping the best score.
"""
import math
import re
from dataclasses import dataclass
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import Angle, SkyCoord
from astropy.table import Table
from astropy.wcs.utils import proj_plane_pixel_scales

from ..cosmology import DEFAULT_COSMOLOGY, angular_size
from ..sky import corners_sky, merge_by_sky_distance


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


def tile_geometry(cfg):
    """Tile side and minimum overlap (both `~astropy.units.Quantity` [arcsec]) from a Deep-CEE config.

    The overlap is ``DEEPCEE.SURVEY.TILE_OVERLAP_ARCSEC``, or when that is 0 the side of the largest anchor
    box (``MODEL.ANCHOR_GENERATOR.SIZES``, in network pixels) on the sky; a smaller positive value is refused,
    since a cluster could then be cut by the edges of every tile that holds it.
    """
    colour = cfg.DEEPCEE.COLOUR
    side = colour.CUTOUT_SIZE * colour.PIXEL_SCALE * u.arcsec
    network_pixel = side / colour.NETWORK_SIZE
    largest_anchor = max(max(sizes) for sizes in cfg.MODEL.ANCHOR_GENERATOR.SIZES) * network_pixel
    overlap = cfg.DEEPCEE.SURVEY.TILE_OVERLAP_ARCSEC * u.arcsec
    if overlap == 0:
        overlap = largest_anchor
    if overlap < largest_anchor:
        raise ValueError(f"DEEPCEE.SURVEY.TILE_OVERLAP_ARCSEC = {overlap.value} is smaller than the largest anchor "
                         f"box ({largest_anchor.to_value(u.arcsec):.1f} arcsec); use 0 for that minimum")
    if overlap >= side:
        raise ValueError(f"tile overlap {overlap:.1f} must be smaller than the tile side {side:.1f}")
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


def common_footprint(bands, reference):
    """``(x0, x1, y0, y1)``: the rectangle of the reference frame's pixel grid covered by every band.

    SDSS bands of one field are shifted by a few pixels and slightly rotated against each other; tiles must
    stay inside all of them.
    """
    height, width = reference.shape
    x0, x1, y0, y1 = -0.5, width - 0.5, -0.5, height - 0.5
    for frame in bands.values():
        if frame is reference:
            continue
        x, y = (np.asarray(v) for v in reference.wcs.world_to_pixel(corners_sky(frame.wcs, frame.shape)))
        # Corners in order (bottom-left, bottom-right, top-right, top-left) of the frame's own grid.
        x0, x1 = max(x0, x[0], x[3]), min(x1, x[1], x[2])
        y0, y1 = max(y0, y[0], y[1]), min(y1, y[2], y[3])
    return x0, x1, y0, y1


def tile_extent(reference, centre, side):
    """A north-up tile of ``side`` at ``centre`` in the reference frame's pixels: its bounding box
    ``(width, height)`` and the side of the largest axis-aligned square inside it (frames can be rotated)."""
    half = side / 2
    corners = centre.spherical_offsets_by(u.Quantity([-half, half, half, -half]), u.Quantity([-half, -half, half, half]))
    x, y = (np.asarray(v) for v in reference.wcs.world_to_pixel(corners))
    edge = math.hypot(x[1] - x[0], y[1] - y[0])
    angle = math.atan2(y[1] - y[0], x[1] - x[0])
    inner = edge / (abs(math.cos(angle)) + abs(math.sin(angle)))
    return x.max() - x.min(), y.max() - y.min(), inner


def plan_field_tiles(frames, root, side, overlap, reference_band="r"):
    """Tiles covering every field of ``frames`` (the ``frames()`` of a `LocalFITSSource` on ``root``).

    Each field is tiled on the pixel grid of its ``reference_band`` frame, inside the part covered by all
    its bands (`common_footprint`): the north-up tiles are flush with its edges and spaced so that the
    largest axis-aligned squares inside neighbouring tiles overlap by at least ``overlap``.

    Returns
    -------
    list of `Tile`, sorted by field, then row, then column.
    """
    fields = group_fields(frames, root)
    names = sorted(name for name, bands in fields.items() if reference_band in bands)
    if not names:
        raise ValueError(f"{root}: no {reference_band}-band frames to tile")
    tiles = []
    for name in names:
        reference = fields[name][reference_band]
        x0, x1, y0, y1 = common_footprint(fields[name], reference)
        centre = reference.wcs.pixel_to_world((x0 + x1) / 2, (y0 + y1) / 2)
        width, height, inner = tile_extent(reference, centre, side)
        overlap_px = (overlap / (proj_plane_pixel_scales(reference.wcs).mean() * u.deg)).decompose().value
        if inner <= overlap_px:
            raise ValueError(f"{reference.path}: tiles of {side} do not overlap by {overlap} in this frame")
        step = inner - overlap_px
        xs = x0 + width / 2 + spread_offsets(x1 - x0 - width, step)
        ys = y0 + height / 2 + spread_offsets(y1 - y0 - height, step)
        for row, y in enumerate(ys):
            centres = reference.wcs.pixel_to_world(xs, np.full_like(xs, y))
            for column, (x, sky) in enumerate(zip(xs, centres)):
                tiles.append(Tile(f"{_safe(name)}_r{row:03d}_c{column:03d}", name, float(sky.ra.deg),
                                  float(sky.dec.deg), float(x), float(y)))
    return tiles


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


def merge_detections(detections, radius, min_redshift, cosmology=DEFAULT_COSMOLOGY):
    """One row per candidate from the detections of all tiles: in descending score, each detection not yet
    absorbed is kept and absorbs the others within ``radius`` (proper) at its redshift (`merge_radii`,
    `merge_by_sky_distance`); ``n_merged`` counts the detections each candidate absorbed.

    The result is independent of the order in which tiles finished: rows are sorted by tile and
    position first, and the merged catalogue by descending score, then RA and Dec. Cutting the result at a
    score gives what merging only the detections above that score gives.
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
    merged = detections[result.kept]
    merged["n_merged"] = [int(np.count_nonzero(result.group == index)) for index in result.kept]
    order = np.lexsort((np.asarray(merged["dec"]), np.asarray(merged["ra"]), -np.asarray(merged["score"])))
    return merged[order]

"""What a survey run leaves for astronomers: the candidate catalogue (FITS, ECSV, CSV), a DS9 region file
and an HTML gallery of the best candidates with links to the SDSS and Legacy Survey viewers."""
import html
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.wcs.utils import proj_plane_pixel_scales
from PIL import Image, ImageDraw

from ..io import atomic_output

SDSS_VIEWER = "https://skyserver.sdss.org/dr18/VisualTools/navi?ra={ra:.6f}&dec={dec:.6f}&scale=0.4"
LEGACY_VIEWER = "https://www.legacysurvey.org/viewer?ra={ra:.6f}&dec={dec:.6f}&layer=ls-dr10&zoom=13"


def candidate_names(ra, dec):
    """IAU-style names ``DeepCEE Jhhmmss.s+ddmmss`` from positions in degrees."""
    coords = SkyCoord(np.atleast_1d(np.asarray(ra, float)) * u.deg, np.atleast_1d(np.asarray(dec, float)) * u.deg)
    ra_part = coords.ra.to_string(unit=u.hourangle, sep="", precision=1, pad=True)
    dec_part = coords.dec.to_string(sep="", precision=0, alwayssign=True, pad=True)
    return [f"DeepCEE J{r}{d}" for r, d in zip(np.atleast_1d(ra_part), np.atleast_1d(dec_part))]


def write_catalogue(catalogue, output_dir, basename="candidates"):
    """Write ``catalogue`` as FITS, ECSV and CSV; returns the paths. The config text in the metadata goes
    to ECSV only (FITS headers cannot hold multi-line strings)."""
    output_dir = Path(output_dir)
    paths = {kind: output_dir / f"{basename}.{kind}" for kind in ("fits", "ecsv", "csv")}
    fits_table = catalogue.copy(copy_data=False)
    fits_table.meta = {key: value for key, value in catalogue.meta.items() if "\n" not in str(value)}
    for kind, table, fmt in (("fits", fits_table, "fits"), ("ecsv", catalogue, "ascii.ecsv"),
                             ("csv", catalogue, "ascii.csv")):
        with atomic_output(paths[kind]) as temporary:
            table.write(temporary, format=fmt, overwrite=True)
    return paths


def write_regions(catalogue, path):
    """DS9 region file: each candidate's box (width x height on the sky) labelled with its score."""
    from regions import Regions, RectangleSkyRegion

    shapes = []
    for row in catalogue:
        region = RectangleSkyRegion(SkyCoord(row["ra"] * u.deg, row["dec"] * u.deg),
                                    width=float(row["box_width"]) * u.arcsec, height=float(row["box_height"]) * u.arcsec)
        region.meta["text"] = f"{row['score']:.2f}"
        shapes.append(region)
    with atomic_output(path) as temporary:
        Regions(shapes).write(str(temporary), format="ds9", overwrite=True)
    return Path(path)


def draw_candidate(rgb, x, y, width, height, margin=1.0, thumbnail=300):
    """A square crop of a tile's network image around a candidate box (centre ``x, y`` and size in network
    pixels, detectron2 box coordinates), with the box drawn, as a PIL image of ``thumbnail`` pixels."""
    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    draw.rectangle([x - width / 2, y - height / 2, x + width / 2, y + height / 2], outline=(0, 255, 0), width=3)
    half = (1 + margin) * max(width, height) / 2
    crop = image.crop((int(x - half), int(y - half), int(x + half), int(y + half)))  # pads outside with black
    return crop.resize((thumbnail, thumbnail), Image.LANCZOS)


def red_sequence_text(row):
    """The red-sequence redshift and richness of a catalogue row, as the gallery and the demo show them:
    ``z 0.153 ± 0.009, richness 42``, ``no red-sequence peak``, or "" when the catalogue has no estimates."""
    if "rs_peak" not in row.colnames:
        return ""
    if not row["rs_peak"]:
        return "no red-sequence peak"
    return f"z {row['z_est']:.3f} ± {row['z_err']:.3f}, richness {row['richness']:.0f}"


def write_gallery(catalogue, output_dir, tile_image, top=50):
    """``<output_dir>/gallery/index.html`` with the ``top`` best candidates.

    Parameters
    ----------
    catalogue : `~astropy.table.Table`
        Merged candidates (columns of `deepcee_d2.survey.tiling.DETECTION_COLUMNS`, ``name``, and the
        red-sequence z and richness when the survey estimated them: `red_sequence_text`).
    tile_image : callable
        ``tile_image(tile_id) -> (rgb, network_wcs)``: the network image of a tile, remade from the imaging.
    top : int
        Number of candidates shown, best score first.
    """
    gallery = Path(output_dir) / "gallery"
    gallery.mkdir(parents=True, exist_ok=True)
    best = catalogue[np.argsort(-np.asarray(catalogue["score"]), kind="stable")][:top]
    images = {}
    rows = []
    for rank, row in enumerate(best, start=1):
        if row["tile"] not in images:
            images[row["tile"]] = tile_image(row["tile"])
        rgb, wcs = images[row["tile"]]
        pixel = proj_plane_pixel_scales(wcs).mean() * 3600  # arcsec per network pixel
        picture = draw_candidate(rgb, row["tile_x"], row["tile_y"], row["box_width"] / pixel,
                                 row["box_height"] / pixel)
        name = f"candidate_{rank:04d}.png"
        with atomic_output(gallery / name) as temporary:
            picture.save(temporary, format="PNG")
        ra, dec = float(row["ra"]), float(row["dec"])
        links = (f'<a href="{SDSS_VIEWER.format(ra=ra, dec=dec)}">SDSS</a> · '
                 f'<a href="{LEGACY_VIEWER.format(ra=ra, dec=dec)}">Legacy Survey</a>')
        rows.append(f'<tr><td>{rank}</td><td><img src="{name}" width="300" height="300"></td>'
                    f"<td>{html.escape(str(row['name']))}<br>RA {ra:.5f}, Dec {dec:+.5f}<br>"
                    f"score {row['score']:.3f}<br>{html.escape(red_sequence_text(row)) or 'z not estimated'}<br>"
                    f"box {row['box_width']:.0f}\" x {row['box_height']:.0f}\"<br>"
                    f"tile {html.escape(str(row['tile']))}<br>{links}</td></tr>")
    page = ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Deep-CEE candidates</title>"
            "<style>body{font-family:sans-serif} td{padding:6px;vertical-align:top}</style></head><body>\n"
            f"<h1>Deep-CEE cluster candidates: the {len(best)} best of {len(catalogue)}</h1>\n<table>\n"
            + "\n".join(rows) + "\n</table></body></html>\n")
    index = gallery / "index.html"
    with atomic_output(index) as temporary:
        temporary.write_text(page, encoding="utf-8")
    return index

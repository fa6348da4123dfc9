"""From a cluster table and an imaging source to colour PNGs and COCO json files with astronomy extras.

For each target cluster, `DatasetSettings.n_offsets` cutouts are made whose centres are offset from the
cluster by ``(dx, dy)`` drawn uniformly in ``[-max_offset, max_offset]`` along the cutout's x (east-west)
and y (north-south) axes, from a generator seeded by ``seed``; each cutout becomes the network's colour
image through `deepcee_d2.data.colour.make_network_image`. *Blank targets* (positions without a cluster of
the catalogue: empty sky, bright stars, lone ellipticals, groups below the richness cut) get images the same
way after all the clusters' (so adding them does not move a cluster image), flagged ``blank``: a survey
tile mostly holds no cluster, so they show a detector sky without one, in training, and in a test split
they give the false detections per deg^2 of such sky (whether training on them helps depends on how real
that sky is: BENCHMARKS.md, "Training with images without a cluster"). Every catalogued cluster whose centre (the BCG,
where the catalogue has one) falls inside an image is annotated, with a square box of side
``box_size`` (proper length at the cluster's redshift, ``DEEPCEE.DATA.BOX_SIZE_KPC``) centred on its pixel in the
network image's WCS; a box reaching past the image edge is narrowed about the BCG along that axis (not
clipped on one side), so its centre is the BCG in every image. A training image in which a box is narrowed to
thinner than `MIN_TRAIN_BOX_ASPECT` (narrower side over longer side) is left out of the training split (not of
the test split): no anchor shape fits such a box, and the detector's ordinary-shaped proposals on that cluster
overlap it too little to count as it, so they would be trained as sky (BENCHMARKS.md, "Two neighbours per
training field, on the real frames").

Layout of a data set folder (``out_dir``)::

    build.json            the settings it was built with (a rebuild with other settings is refused)
    images/<id>_<k>.png   network images (row 0 at the top = north)
    train.json, test.json COCO files (pycocotools fields + the extras below); "info" records everything
                          needed to make the same colour images at inference
    clusters.ecsv         the target clusters
    failures.ecsv         cutouts that could not be made (with skip_failures), and why
    cutouts/              the g, r, i cutout cache, when asked for (tools/prepare_dataset.py default)

Image extras: ``wcs`` (FITS header of the network image's WCS), ``ra``/``dec`` (image centre, deg),
``pixel_scale`` (arcsec per network pixel), ``target_id``, ``offset_arcsec`` ([dx, dy]), ``blank`` (made around a
blank target). Annotation extras:
``cluster_id``, ``ra``/``dec`` (the box centre on the sky, deg), ``z``, ``richness``, ``n_members``,
``bcg_rmag``, ``box_aspect`` (the box's narrower side over its longer one: 1 unless the edge cut it);
NaN is written as null.

Splits: ``"by-cluster"`` (the config's default; clusters that share an image are kept together so that no cluster is
annotated in both sets; blank targets are split on their own, ``test_fraction`` of them into the test set, so
that the clusters' split does not depend on them), ``"random"`` (the paper: images drawn at random), or ``"train"`` / ``"test"``
(all images in one set, e.g. the redMaPPer test field).
"""
import datetime
import json
import logging
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table
from astropy.wcs.utils import proj_plane_pixel_scales
from PIL import Image

from ..cosmology import DEFAULT_COSMOLOGY, angular_size
from ..io import atomic_output, setting_differences, sky_positions
from ..sky import cutout_grid, sky_to_box_xy
from .cache import get_cutout
from .catalogs import check_cluster_table, sky_coords, write_catalog
from .colour import ColourSettings, binning_factor, make_network_image, network_wcs
from .frames import ImagingError

logger = logging.getLogger(__name__)

SPLITS = ("by-cluster", "random", "train", "test")
CATEGORY = {"id": 1, "name": "cluster", "supercategory": "cluster"}
# A training image whose cluster box the edge cuts thinner than this (narrower side over longer side; the
# thinnest anchor shape of the configs is 0.5) is not trained on: the proposals on that cluster would be
# background (module docstring). With two neighbours per demo field, leaving them out (54 of 644 images) took
# the test split's recall at 0.5 from 0.73 to 0.88 and the held-out region's clusters found from 5 to 6 of 6.
MIN_TRAIN_BOX_ASPECT = 0.5
# Cluster properties copied onto each box; NaN is written as null.
NUMERIC_ANNOTATION_EXTRAS = ("z", "richness", "n_members", "bcg_rmag")
ANNOTATION_EXTRAS = ("cluster_id", "ra", "dec") + NUMERIC_ANNOTATION_EXTRAS
IMAGE_EXTRAS = ("wcs", "ra", "dec", "pixel_scale", "target_id", "offset_arcsec")
# Image extras added since, with the value of images of data sets built before them.
LATER_IMAGE_EXTRAS = {"blank": False}


@dataclass(frozen=True)
class DatasetSettings:
    """Everything that decides the images and boxes of a data set (recorded in its COCO ``info``).

    `from_cfg` builds it from ``cfg.DEEPCEE.COLOUR`` and ``cfg.DEEPCEE.DATA``, where the defaults (and why) live.

    Parameters
    ----------
    cutout_size : int
        Cutout side in pixels of ``pixel_scale`` (the paper: 2000).
    network_size : int
        Network image side in pixels (the paper: 1000); must divide ``cutout_size``.
    pixel_scale : `~astropy.units.Quantity` [angle]
        Cutout pixel (SDSS: 0.396").
    n_offsets : int
        Images per target cluster (the paper: 4).
    max_offset : `~astropy.units.Quantity` [angle]
        Largest offset of an image centre from its cluster along x and along y (the paper: 270").
    box_size : `~astropy.units.Quantity` [length]
        Proper side of the ground-truth box at the cluster's redshift (2 x 250 kpc).
    split : str
        One of `SPLITS`.
    test_fraction : float
        Fraction of images (``random``) or clusters (``by-cluster``) in the test set.
    seed : int
        Seeds the offsets and the split.
    colour : ColourSettings
        Stretch and limits of the colour image.
    """

    cutout_size: int
    network_size: int
    pixel_scale: u.Quantity
    n_offsets: int
    max_offset: u.Quantity
    box_size: u.Quantity
    split: str
    test_fraction: float
    seed: int
    colour: ColourSettings

    def __post_init__(self):
        binning_factor((self.cutout_size, self.cutout_size), self.network_size, "dataset settings")
        if self.split not in SPLITS:
            raise ValueError(f"dataset settings: unknown split {self.split!r}; choose one of {SPLITS}")
        if not 0 <= self.test_fraction < 1:
            raise ValueError(f"dataset settings: test_fraction must be in [0, 1), got {self.test_fraction}")
        if self.n_offsets < 1:
            raise ValueError(f"dataset settings: n_offsets must be at least 1, got {self.n_offsets}")
        half_width = self.cutout_size * self.pixel_scale / 2
        if not 0 * u.arcsec <= self.max_offset < half_width:
            raise ValueError(
                f"dataset settings: max_offset {self.max_offset} must be below half the cutout width "
                f"({half_width.to(u.arcsec):.1f}) so that each target stays in its own image"
            )

    def to_dict(self):
        """Plain-JSON form with units in the key names."""
        return {
            "cutout_size": self.cutout_size, "network_size": self.network_size,
            "pixel_scale_arcsec": self.pixel_scale.to_value(u.arcsec), "n_offsets": self.n_offsets,
            "max_offset_arcsec": self.max_offset.to_value(u.arcsec), "box_size_kpc": self.box_size.to_value(u.kpc),
            "split": self.split, "test_fraction": self.test_fraction, "seed": self.seed,
            "colour": self.colour.to_dict(),
        }

    @classmethod
    def from_cfg(cls, cfg, **overrides):
        """Sizes, pixel scale and colour from ``cfg.DEEPCEE.COLOUR`` (so a data set and the model trained on it
        agree), the rest from ``cfg.DEEPCEE.DATA``; ``overrides`` replace fields by name (e.g. ``seed=3``)."""
        colour, data = cfg.DEEPCEE.COLOUR, cfg.DEEPCEE.DATA
        settings = {"cutout_size": colour.CUTOUT_SIZE, "network_size": colour.NETWORK_SIZE,
                    "pixel_scale": colour.PIXEL_SCALE * u.arcsec, "n_offsets": data.N_OFFSETS,
                    "max_offset": data.MAX_OFFSET_ARCSEC * u.arcsec, "box_size": data.BOX_SIZE_KPC * u.kpc,
                    "split": data.SPLIT, "test_fraction": data.TEST_FRACTION, "seed": data.SEED,
                    "colour": ColourSettings.from_cfg(cfg)}
        return cls(**{**settings, **overrides})

    @classmethod
    def from_dict(cls, values):
        """Inverse of `to_dict`."""
        return cls(
            cutout_size=values["cutout_size"], network_size=values["network_size"],
            pixel_scale=values["pixel_scale_arcsec"] * u.arcsec, n_offsets=values["n_offsets"],
            max_offset=values["max_offset_arcsec"] * u.arcsec, box_size=values["box_size_kpc"] * u.kpc,
            split=values["split"], test_fraction=values["test_fraction"], seed=values["seed"],
            colour=ColourSettings(**values["colour"]),
        )


def _safe_name(cluster_id):
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", str(cluster_id)).strip("_")


def plan_images(clusters, settings, blank_targets=None):
    """One row per image: ``image_id``, ``target_id``, ``offset_index``, ``dx``/``dy`` (arcsec), ``ra``/``dec``
    of the image centre (deg), ``file_name`` and ``blank``; the offsets come from ``default_rng(settings.seed)``
    drawn cluster by cluster in table order, then for the ``blank_targets`` (`check_blank_targets`), so the same
    tables and seed give the same images, and adding blank targets leaves the clusters' images as they were."""
    clusters = check_cluster_table(clusters, "target clusters")
    blank_targets = check_blank_targets(blank_targets, clusters)
    rng = np.random.default_rng(settings.seed)
    limit = settings.max_offset.to_value(u.arcsec)
    n_targets = len(clusters) + len(blank_targets)
    offsets = rng.uniform(-limit, limit, size=(n_targets, settings.n_offsets, 2)).reshape(-1, 2)
    target_index = np.repeat(np.arange(n_targets), settings.n_offsets)
    offset_index = np.tile(np.arange(settings.n_offsets), n_targets)
    cluster_centres = sky_coords(clusters)
    centres = SkyCoord(np.concatenate([cluster_centres.ra.deg, np.asarray(blank_targets["ra"], float)]),
                       np.concatenate([cluster_centres.dec.deg, np.asarray(blank_targets["dec"], float)]),
                       unit=u.deg)
    # The cutout grid is north-up and east-left, so moving the centre dx east and dy north puts the target at
    # (+dx, -dy) from the image centre: within max_offset along x and along y.
    image_centres = centres[target_index].spherical_offsets_by(offsets[:, 0] * u.arcsec, offsets[:, 1] * u.arcsec)
    target_ids = [str(i) for i in clusters["id"]] + [str(i) for i in blank_targets["id"]]
    plan = Table({
        "image_id": np.arange(1, len(offsets) + 1), "target_id": [target_ids[i] for i in target_index],
        "offset_index": offset_index, "dx": offsets[:, 0], "dy": offsets[:, 1], "ra": image_centres.ra.deg,
        "dec": image_centres.dec.deg,
        "file_name": [f"images/{_safe_name(target_ids[i])}_{k}.png" for i, k in zip(target_index, offset_index)],
        "blank": target_index >= len(clusters),
    }, dtype=[int, str, int, float, float, float, float, str, bool])
    plan["dx"].unit = plan["dy"].unit = u.arcsec
    plan["ra"].unit = plan["dec"].unit = u.deg
    return plan


def check_blank_targets(blank_targets, clusters):
    """Blank targets as a Table of ``id`` (str), ``ra``, ``dec`` (deg); None gives an empty one.

    Raises
    ------
    ValueError
        Missing ``ra``/``dec``, positions that are not finite, or ids that repeat or are also cluster ids
        (their images would share file names), naming the table (its ``meta["source"]``, the file) and the rows.
    """
    if blank_targets is None:
        return Table({"id": np.zeros(0, str), "ra": np.zeros(0), "dec": np.zeros(0)})
    source = f"blank targets {blank_targets.meta['source']}" if blank_targets.meta.get("source") else "blank targets"
    positions = sky_positions(blank_targets, source)
    ids = ([str(i) for i in blank_targets["id"]] if "id" in blank_targets.colnames
           else [f"blank-{index:05d}" for index in range(len(blank_targets))])
    counts = Counter(_safe_name(i) for i in ids)  # names.count() per id would be quadratic in a survey's table
    cluster_names = {_safe_name(i) for i in clusters["id"]}
    repeated = sorted(name for name, count in counts.items() if count > 1 or name in cluster_names)
    if repeated:
        raise ValueError(f"{source}: ids {repeated[:5]} repeat, or are cluster ids too; each target needs its own "
                         "image names")
    return Table({"id": ids, "ra": positions.ra.deg, "dec": positions.dec.deg}, dtype=[str, float, float])


def _json_number(value):
    value = float(value)
    return None if math.isnan(value) else value


def annotate(wcs, shape, clusters, settings, cosmology=DEFAULT_COSMOLOGY):
    """COCO annotations (without ids) of every cluster of ``clusters`` whose centre is inside the image.

    Parameters
    ----------
    wcs : `~astropy.wcs.WCS`
        The network image's WCS.
    shape : (int, int)
        ``(height, width)`` of the network image.
    clusters : `~astropy.table.Table`
        Cluster schema table; the box centre is ``bcg_ra``/``bcg_dec`` where finite, else ``ra``/``dec``.
    """
    height, width = shape
    has_bcg = np.isfinite(clusters["bcg_ra"]) & np.isfinite(clusters["bcg_dec"])
    ra = np.where(has_bcg, clusters["bcg_ra"], clusters["ra"])
    dec = np.where(has_bcg, clusters["bcg_dec"], clusters["dec"])
    centres = SkyCoord(ra * u.deg, dec * u.deg)
    x, y = sky_to_box_xy(wcs, centres)
    inside = np.isfinite(x) & np.isfinite(y) & (x >= 0) & (x < width) & (y >= 0) & (y < height)
    scale_arcsec = float(np.mean(proj_plane_pixel_scales(wcs)) * 3600)
    annotations = []
    for index in np.nonzero(inside)[0]:
        row = clusters[index]
        side = angular_size(settings.box_size, row["z"], cosmology).to_value(u.arcsec) / scale_arcsec
        # Cut by the image edge, the box shrinks about the BCG along that axis, so its centre stays the
        # position the evaluator scores (a one-sided clip would move it by up to half the box).
        half_x = min(side / 2, x[index], width - x[index])
        half_y = min(side / 2, y[index], height - y[index])
        x0, y0, x1, y1 = x[index] - half_x, y[index] - half_y, x[index] + half_x, y[index] + half_y
        annotations.append({
            "category_id": CATEGORY["id"], "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
            "iscrowd": 0, "cluster_id": str(row["id"]), "ra": float(ra[index]), "dec": float(dec[index]),
            "box_aspect": float(min(half_x, half_y) / max(half_x, half_y)),
            **{name: _json_number(row[name]) for name in NUMERIC_ANNOTATION_EXTRAS},
        })
    return annotations


def split_images(images, settings):
    """Assign image ids to ``"train"`` and ``"test"``.

    Parameters
    ----------
    images : list of dict
        COCO image records, each with its ``annotations`` (list of dicts with ``cluster_id``).

    Returns
    -------
    dict of str -> list of int
    """
    ids = [image["id"] for image in images]
    if settings.split in ("train", "test"):
        return {settings.split: ids}
    rng = np.random.default_rng([settings.seed, 1])  # a stream of its own, apart from the offsets
    if settings.split == "random":
        order = rng.permutation(len(ids))
        n_test = round(settings.test_fraction * len(ids))
        test = {ids[i] for i in order[:n_test]}
        return {"train": [i for i in ids if i not in test], "test": [i for i in ids if i in test]}
    # by-cluster: clusters annotated in the same image form one group (union-find), groups go to one set.
    parent = {}

    def root(name):
        while parent.setdefault(name, name) != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    def image_clusters(image):
        return ([] if image.get("blank") else [image["target_id"]]) + [a["cluster_id"] for a in image["annotations"]]

    for image in images:
        names = image_clusters(image)
        if names:
            root(names[0])
        for name in names[1:]:
            parent[root(name)] = root(names[0])
    groups = {}
    for name in sorted(parent):
        groups.setdefault(root(name), []).append(name)
    group_list = [groups[key] for key in sorted(groups)]
    n_test_clusters = round(settings.test_fraction * len(parent))
    test_clusters = set()
    for index in rng.permutation(len(group_list)):
        if len(test_clusters) >= n_test_clusters:
            break
        test_clusters.update(group_list[index])
    test_roots = {root(name) for name in test_clusters}
    # Blank targets whose images hold no catalogued cluster: test_fraction of them, from a stream of their own.
    blank = sorted({image["target_id"] for image in images if image.get("blank") and not image["annotations"]})
    test_blank = {blank[i] for i in np.random.default_rng([settings.seed, 2]).permutation(len(blank))
                  [:round(settings.test_fraction * len(blank))]}

    def in_test(image):
        names = image_clusters(image)
        return root(names[0]) in test_roots if names else image["target_id"] in test_blank

    test = {image["id"] for image in images if in_test(image)}
    return {"train": [i for i in ids if i not in test], "test": [i for i in ids if i in test]}


def _check_settings_file(out_dir, record):
    """Write ``build.json`` or check that the folder was built with the same settings (resume)."""
    path = Path(out_dir) / "build.json"
    if path.exists():
        differences = setting_differences(json.loads(path.read_text()), json.loads(json.dumps(record)))
        if differences:
            raise ValueError(f"{path}: this folder was built with other settings or another source: "
                             + "; ".join(differences) + "; use a new --out folder or delete this one")
        return
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps(record, indent=1))


def _write_png(rgb, path):
    # zlib level 3: 4x faster than PIL's default 6 for 13 % larger files (noisy sky compresses poorly).
    with atomic_output(path) as temporary:
        Image.fromarray(rgb).save(temporary, format="PNG", compress_level=3)


def build_dataset(clusters, source, out_dir, settings, annotate_with=None, blank_targets=None,
                  cosmology=DEFAULT_COSMOLOGY, cache_dir=None, skip_failures=False, progress=True):
    """Make the images and COCO files of a data set; resumable (finished PNGs are not remade).

    Parameters
    ----------
    clusters : `~astropy.table.Table`
        Target clusters (cluster schema).
    source : `~deepcee_d2.data.frames.ImagingSource`
        Where the g, r, i pixels come from.
    out_dir : str or Path
        The data set folder (layout in the module docstring).
    settings : DatasetSettings
    annotate_with : `~astropy.table.Table`, optional
        Clusters to annotate in every image (default: ``clusters``); all need a redshift.
    blank_targets : `~astropy.table.Table`, optional
        Positions (``ra``, ``dec`` in deg, optional ``id``) to make images around without a target cluster
        (`check_blank_targets`); clusters of ``annotate_with`` inside them are still annotated.
    cosmology : `~astropy.cosmology.FLRW`
        For box sizes.
    cache_dir : str or Path, optional
        Cutout cache (`deepcee_d2.data.cache.get_cutout`), e.g. ``<out_dir>/cutouts``; None: no cache.
        Finished PNGs are never remade, so the cache only saves downloads when images are remade with
        other colour settings; at 2000 px it holds 48 MB (3 x 2000^2 float32) per image.
    skip_failures : bool
        Record cutouts that cannot be made in ``failures.ecsv`` and go on, instead of raising.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    dict of str -> Path
        The COCO json of each split.

    Raises
    ------
    ValueError
        Empty catalogue, clusters to annotate without a redshift, or a folder built with other settings.
    ImagingError
        A cutout that cannot be made (unless ``skip_failures``), naming the cluster.
    """
    from tqdm import tqdm

    out_dir = Path(out_dir)
    clusters = check_cluster_table(clusters, "target clusters")
    annotate_with = clusters if annotate_with is None else check_cluster_table(annotate_with, "annotation catalogue")
    z = np.asarray(annotate_with["z"], dtype=float)
    of_file = f" of {annotate_with.meta['source']}" if annotate_with.meta.get("source") else ""
    # A box's side is a proper length at the cluster's distance: z <= 0 would give an inverted or whole-image box.
    for bad, what in ((~np.isfinite(z), "without a redshift"), (np.isfinite(z) & (z <= 0), "with z <= 0")):
        if bad.any():
            raise ValueError(f"annotation catalogue: {bad.sum()} clusters {what}, e.g. "
                             f"{[str(i) for i in annotate_with['id'][bad][:3]]} (rows {np.nonzero(bad)[0][:5].tolist()}"
                             f"{of_file}); boxes need z > 0 (select them out first)")
    record = {"settings": settings.to_dict(), "source": source.describe(),
              "cosmology": {"name": cosmology.name, "H0": cosmology.H0.to_value(u.km / u.s / u.Mpc),
                            "Om0": cosmology.Om0}}
    plan = plan_images(clusters, settings, blank_targets)
    n_blank = len(set(plan["target_id"][plan["blank"]]))
    if n_blank:  # only then, so that folders built before blank targets existed still resume
        record["blank_targets"] = n_blank
    _check_settings_file(out_dir, record)
    write_catalog(clusters, out_dir / "clusters.ecsv")
    shape = (settings.network_size, settings.network_size)
    images, failures = [], []
    for row in tqdm(plan, desc=f"images for {out_dir.name}", unit="image", disable=not progress):
        centre = SkyCoord(row["ra"] * u.deg, row["dec"] * u.deg)
        grid = cutout_grid(centre, settings.cutout_size, settings.pixel_scale)
        png = out_dir / row["file_name"]
        if png.exists():
            wcs = network_wcs(grid, (settings.cutout_size, settings.cutout_size), settings.network_size)
        else:
            try:
                cutout = get_cutout(source, centre, settings.cutout_size, settings.pixel_scale, cache_dir)
                rgb, wcs = make_network_image(cutout.images, cutout.wcs, settings.network_size, settings.colour,
                                              cutout.source)
            except (ImagingError, ValueError) as error:
                what = "blank target" if row["blank"] else "cluster"
                message = f"{what} {row['target_id']} image {row['offset_index']}: {error}"
                if not skip_failures:
                    raise ImagingError(message) from error
                failures.append((row["target_id"], row["offset_index"], row["ra"], row["dec"], str(error)))
                continue
            _write_png(rgb, png)
        images.append({
            "id": int(row["image_id"]), "file_name": str(row["file_name"]), "height": shape[0], "width": shape[1],
            "wcs": wcs.to_header_string(), "ra": float(row["ra"]), "dec": float(row["dec"]),
            "pixel_scale": float(np.mean(proj_plane_pixel_scales(wcs)) * 3600), "target_id": str(row["target_id"]),
            "offset_arcsec": [float(row["dx"]), float(row["dy"])], "blank": bool(row["blank"]),
            "annotations": annotate(wcs, shape, annotate_with, settings, cosmology),
        })
    if failures:
        logger.warning("%d of %d images could not be made; see %s", len(failures), len(plan),
                       out_dir / "failures.ecsv")
        table = Table(rows=failures, names=["target_id", "offset_index", "ra", "dec", "error"])
        with atomic_output(out_dir / "failures.ecsv") as temporary:
            table.write(temporary, format="ascii.ecsv", overwrite=True)
    if not images:  # training would only fail later ("Dataset is empty")
        raise ValueError(f"{out_dir}: no image could be made ({len(failures)} failed, e.g. {failures[0][-1] if failures else '-'}); "
                         f"no COCO file written, reasons in {out_dir / 'failures.ecsv'}")
    info = {
        "description": "Deep-CEE galaxy-cluster images", "contributor": "deepcee_d2", "version": "1",
        "date_created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "deepcee": {**record, "catalog": clusters.meta.get("source", ""), "n_failures": len(failures),
                    "network_pixel_scale_arcsec": images[0]["pixel_scale"] if images else None},
    }
    splits = split_images(images, settings)
    if "train" in splits:
        cut = {image["id"] for image in images
               if any(a["box_aspect"] < MIN_TRAIN_BOX_ASPECT for a in image["annotations"])}
        left_out = cut.intersection(splits["train"])
        if left_out:
            logger.info("%d of %d training images left out: a cluster's box there is cut by the edge to thinner than "
                        "%g of its length", len(left_out), len(splits["train"]), MIN_TRAIN_BOX_ASPECT)
        splits["train"] = [i for i in splits["train"] if i not in left_out]
    return write_coco_files(images, splits, out_dir, info)


def write_coco_files(images, splits, out_dir, info):
    """Write ``<split>.json`` for each split: COCO images, annotations (ids numbered 1.. per file), info."""
    paths = {}
    for split, ids in splits.items():
        chosen = set(ids)
        coco = {"info": info, "licenses": [], "categories": [CATEGORY], "images": [], "annotations": []}
        for image in images:
            if image["id"] not in chosen:
                continue
            coco["images"].append({key: value for key, value in image.items() if key != "annotations"})
            for annotation in image["annotations"]:
                coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": image["id"],
                                            **annotation})
        paths[split] = Path(out_dir) / f"{split}.json"
        with atomic_output(paths[split]) as temporary:
            temporary.write_text(json.dumps(coco))
    return paths

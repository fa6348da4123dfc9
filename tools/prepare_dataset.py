#!/usr/bin/env python
"""Build one Deep-CEE data set: a cluster catalogue + imaging -> colour PNGs + COCO json (train/test).

Examples (see datasets/README.md)::

    # The paper's training set: WHL12 clusters matched to Abell, 0.1 < z < 0.2, N200 >= 20, Dec > 0, SkyView
    python tools/prepare_dataset.py --catalog whl12 --select paper --source skyview --out datasets/whl12

    # A synthetic sky made by tools/make_synthetic_sky.py (offline)
    python tools/prepare_dataset.py --catalog SKY/clusters.fits --source synthetic --imaging SKY \\
        --out datasets/synthetic --cutout-size 1000 --network-size 500 --max-offset 100

Every default comes from the config (``--config-file`` and trailing ``KEY VALUE`` overrides): the colour
image and sizes from DEEPCEE.COLOUR, so a data set and the model trained on it agree; offsets, boxes and the
split from DEEPCEE.DATA; the paper's cuts from DEEPCEE.DATA.PAPER_SELECTION. An option given here wins.
"""
import argparse
import sys

import astropy.units as u

from deepcee_d2.config import load_config
from deepcee_d2.cosmology import cosmology_from_cfg
from deepcee_d2.data.catalogs import CATALOGS, load_catalog, paper_selection, select_clusters
from deepcee_d2.data.coco import SPLITS, DatasetSettings, build_dataset
from deepcee_d2.data.resample import Resampling
from deepcee_d2.data.sources import make_source
from deepcee_d2.io import read_table


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    catalogue = parser.add_argument_group("clusters")
    catalogue.add_argument("--catalog", required=True,
                           help=f"a catalogue file, or {'/'.join(CATALOGS)} to download it from VizieR")
    catalogue.add_argument("--catalog-format", choices=sorted(CATALOGS),
                           help="columns of a catalogue file (default: already in the cluster schema)")
    catalogue.add_argument("--select", choices=["paper"],
                           help="paper: keep clusters with an Abell counterpart and the paper's cuts "
                                "(DEEPCEE.DATA.PAPER_SELECTION, unless given below)")
    catalogue.add_argument("--abell", default="abell", help="Abell catalogue for --select paper (file or 'abell')")
    catalogue.add_argument("--max-separation-kpc", type=float,
                           help="largest distance to the Abell centre for --select paper (proper kpc; default "
                                "DEEPCEE.DATA.PAPER_SELECTION.ABELL_RADIUS_KPC)")
    catalogue.add_argument("--z-range", type=float, nargs=2, metavar=("ZMIN", "ZMAX"),
                           help="keep ZMIN < z < ZMAX (--select paper: default PAPER_SELECTION.Z_RANGE)")
    catalogue.add_argument("--min-members", type=int,
                           help="keep n_members >= N (--select paper: default PAPER_SELECTION.MIN_MEMBERS)")
    catalogue.add_argument("--dec-min", type=float,
                           help="keep dec > DEC degrees (--select paper: default PAPER_SELECTION.DEC_MIN_DEG)")
    catalogue.add_argument("--region", type=float, nargs=4, metavar=("RA0", "RA1", "DEC0", "DEC1"),
                           help="keep clusters in this RA/Dec box (degrees; RA0 > RA1 wraps through 0)")
    catalogue.add_argument("--limit", type=int, help="keep only the first N clusters (quick tests)")
    catalogue.add_argument("--annotate", help="annotate the clusters of this catalogue (default: the targets)")
    catalogue.add_argument("--annotate-format", choices=sorted(CATALOGS), help="columns of the --annotate file")
    catalogue.add_argument("--blank", metavar="TABLE",
                           help="positions without a target cluster (a table with ra, dec in deg and optionally id: "
                                "FITS, ECSV or CSV) made into images like the clusters, e.g. random sky, bright "
                                "stars, lone ellipticals or groups below the cut; catalogued clusters inside them "
                                "are still annotated")

    imaging = parser.add_argument_group("imaging")
    imaging.add_argument("--source", required=True, choices=["skyview", "sdss", "synthetic", "fits"])
    imaging.add_argument("--imaging", help="folder of frames (synthetic, fits) or where SDSS frames are kept "
                                           "(sdss; default OUT/frames)")
    imaging.add_argument("--cache", help="cutout cache folder (default OUT/cutouts; 48 MB per 2000 px image)")
    imaging.add_argument("--no-cache", action="store_true", help="keep no g, r, i cutouts, only the PNGs")

    images = parser.add_argument_group("images and split")
    images.add_argument("--out", required=True, help="the data set folder, e.g. datasets/whl12")
    images.add_argument("--cutout-size", type=int, help="cutout pixels (default DEEPCEE.COLOUR.CUTOUT_SIZE)")
    images.add_argument("--network-size", type=int, help="network pixels (default DEEPCEE.COLOUR.NETWORK_SIZE)")
    images.add_argument("--pixel-scale", type=float, help="arcsec per cutout pixel (default DEEPCEE.COLOUR.PIXEL_SCALE)")
    images.add_argument("--n-offsets", type=int, help="images per cluster (default DEEPCEE.DATA.N_OFFSETS)")
    images.add_argument("--max-offset", type=float,
                        help="largest offset of the centre, arcsec (default DEEPCEE.DATA.MAX_OFFSET_ARCSEC)")
    images.add_argument("--box-size-kpc", type=float,
                        help="box side, proper kpc at the cluster z (default DEEPCEE.DATA.BOX_SIZE_KPC)")
    images.add_argument("--split", choices=SPLITS, help="default DEEPCEE.DATA.SPLIT")
    images.add_argument("--test-fraction", type=float, help="default DEEPCEE.DATA.TEST_FRACTION")
    images.add_argument("--seed", type=int, help="default DEEPCEE.DATA.SEED")
    images.add_argument("--skip-failures", action="store_true",
                        help="record cutouts that cannot be made in OUT/failures.ecsv and go on")
    images.add_argument("--no-progress", action="store_true")

    parser.add_argument("--config-file", help="YAML with DEEPCEE.COLOUR / DATA / COSMOLOGY settings")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return parser.parse_args(argv)


# Command-line options that override a config key when given.
OPTION_KEYS = {
    "cutout_size": "DEEPCEE.COLOUR.CUTOUT_SIZE", "network_size": "DEEPCEE.COLOUR.NETWORK_SIZE",
    "pixel_scale": "DEEPCEE.COLOUR.PIXEL_SCALE", "n_offsets": "DEEPCEE.DATA.N_OFFSETS",
    "max_offset": "DEEPCEE.DATA.MAX_OFFSET_ARCSEC", "box_size_kpc": "DEEPCEE.DATA.BOX_SIZE_KPC",
    "split": "DEEPCEE.DATA.SPLIT", "test_fraction": "DEEPCEE.DATA.TEST_FRACTION", "seed": "DEEPCEE.DATA.SEED",
}
PAPER_KEYS = {
    "z_range": "DEEPCEE.DATA.PAPER_SELECTION.Z_RANGE", "min_members": "DEEPCEE.DATA.PAPER_SELECTION.MIN_MEMBERS",
    "dec_min": "DEEPCEE.DATA.PAPER_SELECTION.DEC_MIN_DEG",
    "max_separation_kpc": "DEEPCEE.DATA.PAPER_SELECTION.ABELL_RADIUS_KPC",
}


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config_file, args.opts)
    given = {key: value for key, value in vars(args).items() if value is not None}
    keys = {**OPTION_KEYS, **(PAPER_KEYS if args.select == "paper" else {})}
    cfg.merge_from_list([item for name, key in keys.items() if name in given for item in (key, given[name])])
    cosmology = cosmology_from_cfg(cfg)
    clusters = load_catalog(args.catalog, args.catalog_format)
    if args.select == "paper":
        paper = cfg.DEEPCEE.DATA.PAPER_SELECTION
        clusters = paper_selection(clusters, load_catalog(args.abell, "abell"), z_range=tuple(paper.Z_RANGE),
                                   min_members=paper.MIN_MEMBERS, dec_min=paper.DEC_MIN_DEG * u.deg,
                                   max_separation=paper.ABELL_RADIUS_KPC * u.kpc, cosmology=cosmology)
        clusters = select_clusters(clusters, region=args.region)
    else:
        clusters = select_clusters(clusters, z_range=args.z_range, min_members=args.min_members,
                                   dec_min=None if args.dec_min is None else args.dec_min * u.deg, region=args.region)
    if args.limit is not None:
        clusters = clusters[:args.limit]
    annotate_with = load_catalog(args.annotate, args.annotate_format) if args.annotate else None
    blank_targets = read_table(args.blank, "--blank table") if args.blank else None
    settings = DatasetSettings.from_cfg(cfg)
    imaging_root = args.imaging or (f"{args.out}/frames" if args.source == "sdss" else None)
    source = make_source(args.source, imaging_root, Resampling.from_cfg(cfg))
    n_targets = len(clusters) + (0 if blank_targets is None else len(blank_targets))
    print(f"{len(clusters)} clusters and {n_targets - len(clusters)} blank targets -> {n_targets * settings.n_offsets} "
          f"images in {args.out}")
    paths = build_dataset(clusters, source, args.out, settings, annotate_with=annotate_with,
                          blank_targets=blank_targets, cosmology=cosmology,
                          cache_dir=None if args.no_cache else args.cache or f"{args.out}/cutouts",
                          skip_failures=args.skip_failures, progress=not args.no_progress)
    for split, path in paths.items():
        print(f"{split}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Build one Deep-CEE data set: a cluster catalogue + imaging -> colour PNGs + COCO json (train/test).

Examples (see datasets/README.md)::

    # The paper's training set: WHL12 clusters matched to Abell, 0.1 < z < 0.2, N200 >= 20, Dec > 0, SkyView
    python tools/prepare_dataset.py --catalog whl12 --select paper --source skyview --out datasets/whl12

    # A synthetic sky made by tools/make_synthetic_sky.py (offline)
    python tools/prepare_dataset.py --catalog SKY/clusters.fits --source synthetic --imaging SKY \\
        --out datasets/synthetic --cutout-size 1000 --network-size 500 --max-offset 100

The colour image (stretch, limits, bands) and the default sizes come from DEEPCEE.COLOUR of the config
(``--config-file`` and trailing ``KEY VALUE`` overrides), so a data set and the model trained on it agree.
"""
import argparse
import sys

import astropy.units as u

from deepcee_d2.config import load_config
from deepcee_d2.cosmology import cosmology_from_cfg
from deepcee_d2.data.catalogs import CATALOGS, load_catalog, paper_selection, select_clusters
from deepcee_d2.data.coco import SPLITS, DatasetSettings, build_dataset
from deepcee_d2.data.sources import make_source

PAPER_CUTS = {"z_range": (0.1, 0.2), "min_members": 20, "dec_min": 0.0}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    catalogue = parser.add_argument_group("clusters")
    catalogue.add_argument("--catalog", required=True,
                           help=f"a catalogue file, or {'/'.join(CATALOGS)} to download it from VizieR")
    catalogue.add_argument("--catalog-format", choices=sorted(CATALOGS),
                           help="columns of a catalogue file (default: already in the cluster schema)")
    catalogue.add_argument("--select", choices=["paper"],
                           help="paper: keep clusters with an Abell counterpart and the paper's cuts (defaults below)")
    catalogue.add_argument("--abell", default="abell", help="Abell catalogue for --select paper (file or 'abell')")
    catalogue.add_argument("--max-separation-kpc", type=float, default=500.0,
                           help="largest distance to the Abell centre for --select paper (proper kpc)")
    catalogue.add_argument("--z-range", type=float, nargs=2, metavar=("ZMIN", "ZMAX"),
                           help="keep ZMIN < z < ZMAX (paper: 0.1 0.2)")
    catalogue.add_argument("--min-members", type=float, help="keep n_members >= N (paper: 20)")
    catalogue.add_argument("--dec-min", type=float, help="keep dec > DEC degrees (paper: 0)")
    catalogue.add_argument("--region", type=float, nargs=4, metavar=("RA0", "RA1", "DEC0", "DEC1"),
                           help="keep clusters in this RA/Dec box (degrees; RA0 > RA1 wraps through 0)")
    catalogue.add_argument("--limit", type=int, help="keep only the first N clusters (quick tests)")
    catalogue.add_argument("--annotate", help="annotate the clusters of this catalogue (default: the targets)")
    catalogue.add_argument("--annotate-format", choices=sorted(CATALOGS), help="columns of the --annotate file")

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
    images.add_argument("--n-offsets", type=int, default=4, help="images per cluster")
    images.add_argument("--max-offset", type=float, default=270.0, help="largest offset of the centre, arcsec")
    images.add_argument("--box-size-kpc", type=float, default=500.0, help="box side, proper kpc at the cluster z")
    images.add_argument("--split", choices=SPLITS, default="by-cluster")
    images.add_argument("--test-fraction", type=float, default=0.1)
    images.add_argument("--seed", type=int, default=0)
    images.add_argument("--skip-failures", action="store_true",
                        help="record cutouts that cannot be made in OUT/failures.ecsv and go on")
    images.add_argument("--no-progress", action="store_true")

    parser.add_argument("--config-file", help="YAML with DEEPCEE.COLOUR / DEEPCEE.COSMOLOGY settings")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config_file, args.opts)
    cosmology = cosmology_from_cfg(cfg)
    clusters = load_catalog(args.catalog, args.catalog_format)
    cuts = {"z_range": args.z_range, "min_members": args.min_members, "dec_min": args.dec_min}
    if args.select == "paper":
        cuts = {key: PAPER_CUTS[key] if value is None else value for key, value in cuts.items()}
        clusters = paper_selection(clusters, load_catalog(args.abell, "abell"), cuts["z_range"][0],
                                   cuts["z_range"][1], cuts["min_members"], cuts["dec_min"] * u.deg,
                                   args.max_separation_kpc * u.kpc, cosmology)
        cuts = {}
    elif cuts["dec_min"] is not None:
        cuts["dec_min"] = cuts["dec_min"] * u.deg
    clusters = select_clusters(clusters, **cuts, region=args.region)
    if args.limit is not None:
        clusters = clusters[:args.limit]
    annotate_with = load_catalog(args.annotate, args.annotate_format) if args.annotate else None
    sizes = {"DEEPCEE.COLOUR.CUTOUT_SIZE": args.cutout_size, "DEEPCEE.COLOUR.NETWORK_SIZE": args.network_size,
             "DEEPCEE.COLOUR.PIXEL_SCALE": args.pixel_scale}
    cfg.merge_from_list([item for key, value in sizes.items() if value is not None for item in (key, value)])
    settings = DatasetSettings.from_cfg(
        cfg, n_offsets=args.n_offsets, max_offset=args.max_offset * u.arcsec, box_size=args.box_size_kpc * u.kpc,
        split=args.split, test_fraction=args.test_fraction, seed=args.seed)
    imaging_root = args.imaging or (f"{args.out}/frames" if args.source == "sdss" else None)
    source = make_source(args.source, root=imaging_root)
    print(f"{len(clusters)} clusters -> {len(clusters) * settings.n_offsets} images in {args.out}")
    paths = build_dataset(clusters, source, args.out, settings, annotate_with=annotate_with, cosmology=cosmology,
                          cache_dir=None if args.no_cache else args.cache or f"{args.out}/cutouts", skip_failures=args.skip_failures, progress=not args.no_progress)
    for split, path in paths.items():
        print(f"{split}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

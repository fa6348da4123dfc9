#!/usr/bin/env python
"""Write a synthetic SDSS survey (g, r, i frames with injected clusters, plus truth) to a folder, resumably.

Examples::

    # Training fields: one cluster at the centre of each 3400 px field, big enough for 2000 px cutouts
    # offset by up to 270" around the cluster (2000 + 2 x 270 / 0.396 = 3364 px)
    python tools/make_synthetic_sky.py SKY --n-fields 200 --size 3400 --cluster-placement centre \\
        --z-range 0.1 0.2 --min-members 20 --seed 1

    # Survey fields: four clusters each, anywhere (also cut by the edges), at least 5' apart
    python tools/make_synthetic_sky.py SURVEY --n-fields 10 --size 4096 --clusters-per-field 4 \\
        --cluster-placement random --min-separation 300 --seed 2

    # Fields at given positions (ECSV/CSV/FITS table with ra, dec columns in degrees)
    python tools/make_synthetic_sky.py SKY --centres centres.ecsv

A rerun with the same arguments skips finished fields; different arguments for an existing field are an
error. See docs/synthetic_sky.md.
"""
import argparse
import sys

import astropy.units as u
from astropy.coordinates import SkyCoord

from deepcee_d2.io import read_positions
from deepcee_d2.synthetic import BANDS, write_survey
from deepcee_d2.synthetic.clusters import add_cluster_arguments, cluster_spec_from_args
from deepcee_d2.synthetic.field import DEFAULT_MAG_LIMIT


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="output folder")
    fields = parser.add_argument_group("fields")
    fields.add_argument("--n-fields", type=int, help="number of fields (default: 1, or one per --centres row)")
    fields.add_argument("--size", type=int, nargs="+", default=[2048], metavar=("NX", "NY"),
                        help="field size in pixels of 0.396\": NX [NY] (default 2048)")
    fields.add_argument("--centres", help="table (ECSV, CSV, FITS) of field centres, columns ra, dec in degrees")
    fields.add_argument("--grid-origin", type=float, nargs=2, default=[150.0, 20.0], metavar=("RA", "DEC"),
                        help="first field centre of the default grid, degrees (default 150 20)")
    fields.add_argument("--bands", default="".join(BANDS), help="bands to write (default gri)")
    fields.add_argument("--mag-limit", type=float, default=DEFAULT_MAG_LIMIT,
                        help=f"faintest r magnitude drawn (default {DEFAULT_MAG_LIMIT})")
    fields.add_argument("--no-field-galaxies", action="store_true", help="draw no field galaxies")
    fields.add_argument("--no-stars", action="store_true", help="draw no stars")
    fields.add_argument("--no-noise", action="store_true", help="noiseless images")
    fields.add_argument("--no-source-lists", action="store_true", help="skip galaxies.fits and stars.fits")
    clusters = parser.add_argument_group("clusters")
    add_cluster_arguments(
        clusters, "centre", "centre: the BCG at the field centre (one per field); random: anywhere",
        "smallest BCG separation within a field, arcsec (random placement; default 300)",
        "smallest BCG distance from a field edge, arcsec (random placement; default 0)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="processes drawing fields at once (same files)")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if len(args.size) > 2:
        raise SystemExit(f"--size takes NX or NX NY, got {args.size}")
    nx, ny = args.size[0], args.size[-1]
    centres = None if args.centres is None else read_positions(args.centres, "--centres table")
    n_fields = args.n_fields if args.n_fields is not None else (len(centres) if centres is not None else 1)
    if centres is None:
        from deepcee_d2.synthetic.survey import grid_centres

        centres = grid_centres(n_fields, nx, ny, SkyCoord(*args.grid_origin, unit=u.deg))
    spec = None
    if args.clusters_per_field > 0:
        spec = cluster_spec_from_args(args)
    clusters, fields = write_survey(args.out, n_fields, nx, ny, centres=centres, clusters=spec, seed=args.seed,
                                    bands=tuple(args.bands), source_lists=not args.no_source_lists,
                                    field_galaxies=not args.no_field_galaxies, stars=not args.no_stars,
                                    noise=not args.no_noise, mag_limit=args.mag_limit,
                                    workers=args.workers, progress=not args.no_progress)
    print(f"{args.out}: {len(fields)} fields, {len(clusters)} clusters (clusters.fits, fields.ecsv)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ValueError, OSError) as error:  # bad input: the message names the file and the problem
        sys.exit(f"error: {error}")

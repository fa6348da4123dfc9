#!/usr/bin/env python
"""Inject simulated galaxy clusters into real g, r, i frames (each band's own WCS and PSF, photon noise) and
write the injected frames and the truth, resumably.

Examples::

    # Two clusters per SDSS field, 0.1 < z < 0.2, N200 >= 20, anywhere in each field's g, r, i footprint
    python tools/inject_clusters.py ../shared/data/sdss INJECTED --clusters-per-field 2 \\
        --z-range 0.1 0.2 --min-members 20 --edge-margin 60 --seed 1

    # Clusters exactly where you want them (ECSV/CSV/FITS table: ra, dec in degrees, z, richness = R_L*)
    python tools/inject_clusters.py MY_FRAMES INJECTED --positions clusters.ecsv

    # Your own imaging: give the seeing and electrons per nanomaggy when the headers do not tell them
    python tools/inject_clusters.py MY_FRAMES INJECTED --fwhm g=0.9 r=0.8 i=0.75 \\
        --electrons-per-nmgy g=900 r=850 i=1000

Then measure completeness: ``tools/find_clusters.py --input INJECTED ... --crossmatch INJECTED/clusters.fits``
(docs/injection.md). A rerun with the same arguments writes only the frames still missing; other arguments
into the same folder are an error.
"""
import argparse
import sys

from deepcee_d2.io import read_table
from deepcee_d2.synthetic import BANDS
from deepcee_d2.synthetic.clusters import add_cluster_arguments, cluster_spec_from_args
from deepcee_d2.synthetic.field import DEFAULT_MAG_LIMIT
from deepcee_d2.synthetic.inject import inject_clusters


def _per_band(values, option):
    """``["g=1.2", "r=1.1"]`` -> ``{"g": 1.2, "r": 1.1}``."""
    if not values:
        return None
    out = {}
    for item in values:
        band, _, value = item.partition("=")
        try:
            out[band] = float(value)
        except ValueError:
            raise SystemExit(f"{option}: need BAND=VALUE items, got {item!r}") from None
    return out


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="folder of frame-*.fits* files (g, r, i, each with WCS, in nanomaggies)")
    parser.add_argument("out", help="output folder (outside the input folder)")
    clusters = parser.add_argument_group("clusters")
    clusters.add_argument("--positions", help="table (ECSV, CSV, FITS) of clusters to inject: ra, dec (deg), z, "
                                              "richness (target R_L*); replaces the options below")
    add_cluster_arguments(
        clusters, "random", "random: anywhere in the field's common g, r, i footprint; centre: its centre",
        "smallest BCG separation over all fields, arcsec (default 300)",
        "smallest BCG distance from the footprint's edges, arcsec (default 0)")
    clusters.add_argument("--mag-limit", type=float, default=DEFAULT_MAG_LIMIT,
                          help=f"faintest member drawn, r mag (default {DEFAULT_MAG_LIMIT})")
    frames = parser.add_argument_group("frames")
    frames.add_argument("--bands", default="".join(BANDS), help="bands to inject (default gri)")
    frames.add_argument("--fwhm", nargs="+", metavar="BAND=ARCSEC",
                        help="PSF FWHM per band for every frame, drawn as a round Moffat (default: each frame's own "
                             "PSF, stacked from its stars)")
    frames.add_argument("--electrons-per-nmgy", nargs="+", metavar="BAND=VALUE",
                        help="electrons per nanomaggy per band (default: header GAIN/NMGY, or SDSS camcol gain)")
    frames.add_argument("--no-noise", action="store_true", help="add no photon noise for the injected light")
    frames.add_argument("--no-compress", action="store_true", help="write .fits instead of .fits.gz")
    frames.add_argument("--dust-map-dir", help="folder of the SFD dust map: dim the members by the Galactic "
                        "extinction at their positions (real frames; README, \"Galactic reddening\")")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.positions:
        clusters = read_table(args.positions, "--positions table")
    else:
        clusters = cluster_spec_from_args(args)
    truth, frames = inject_clusters(args.input, args.out, clusters=clusters, seed=args.seed,
                                    bands=tuple(args.bands), fwhm=_per_band(args.fwhm, "--fwhm"),
                                    electrons_per_nmgy=_per_band(args.electrons_per_nmgy, "--electrons-per-nmgy"),
                                    noise=not args.no_noise, mag_limit=args.mag_limit,
                                    compress=not args.no_compress, progress=not args.no_progress,
                                    dust_map_dir=args.dust_map_dir)
    print(f"{args.out}: {len(truth)} clusters in {len(frames)} frames (clusters.fits, injection.ecsv)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ValueError, OSError) as error:  # bad input: the message names the file and the problem
        sys.exit(f"error: {error}")

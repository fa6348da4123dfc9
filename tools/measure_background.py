#!/usr/bin/env python
"""Measure the red-sequence background of your own imaging (a folder of g, r, i frames, e.g. SDSS fields
without known rich clusters) for DEEPCEE.REDSHIFT.BACKGROUND_FILE: the estimator's z and richness on real
imaging need the background of that imaging, not the synthetic sky's packaged one.

  tools/measure_background.py --config-file configs/deepcee_inception_v2_sdss.yaml [--known CATALOGUE ...] \
      FRAMES_DIR OUT.ecsv [DEEPCEE.REDSHIFT.DUST_MAP_DIR /data/dust/sfd] [KEY VALUE ...]

Tiles the frames as tools/find_clusters.py would, measures each tile's photometry (dereddened with the dust
map when DUST_MAP_DIR is set; crowded tiles left out as the survey masks them) and writes the densities per
trial redshift (deepcee_d2.survey.background). One pass, ~4 CPU-s per 2000 px tile of SDSS frames: for a large
survey measure a random --sample of a few hundred tiles. --known CATALOGUE (ra, dec, z; z may be empty; repeatable)
leaves out the sky within DEEPCEE.REDSHIFT.BACKGROUND_EXCLUDE_KPC of each known cluster: the background is the
field's, and on a few frames one cluster is a large share of it. An existing OUT is not overwritten unless
--overwrite.
"""
import argparse
import sys
from pathlib import Path

from deepcee_d2.config import load_config
from deepcee_d2.redsequence import write_background
from deepcee_d2.survey.background import measure_folder_background


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("frames", help="folder of g, r, i FITS frames (after the options)")
    parser.add_argument("output", help="background table to write (ECSV)")
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--sample", type=int, help="measure a random sample of this many tiles (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="of the sample")
    parser.add_argument("--known", action="append", default=[], metavar="CATALOGUE",
                        help="clusters known on the frames, whose sky is left out (repeatable)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    args = parser.parse_args(argv)
    output = Path(args.output)
    if output.exists() and not args.overwrite:
        raise SystemExit(f"{output}: exists; give --overwrite to replace it, or another path")
    cfg = load_config(args.config_file, args.opts)
    background, tiles = measure_folder_background(cfg, args.frames, sample=args.sample, seed=args.seed,
                                                  known=args.known)
    write_background(background, output)
    for tile, reason in tiles.failed:
        print(f"left out: {tile}: {reason}")
    print(f"{output}: red-sequence background of {len(tiles.used)} of {background.meta['tiles_planned']} tiles ({background.meta['area']:.1f} summed over "
          f"the tiles, overlaps counted in each), "
          f"{len(tiles.crowded)} crowded tiles left out, {len(tiles.failed)} failed; "
          f"{len(background.meta['excluded'])} known clusters' sky left out; dust map: "
          f"{background.meta['dust_map']}. Set DEEPCEE.REDSHIFT.BACKGROUND_FILE {output.resolve()}")
    return output


if __name__ == "__main__":
    try:
        main()
    except (ValueError, OSError) as error:
        sys.exit(f"measure_background: error: {error}")

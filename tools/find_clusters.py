#!/usr/bin/env python
"""Find galaxy clusters across a survey with a trained Deep-CEE: tiles -> detections -> candidate catalogue.

  tools/find_clusters.py --config-file configs/deepcee_inception_v2_sdss.yaml --input FRAMES_DIR \
      --output survey_out MODEL.WEIGHTS output/model_final.pth
  tools/find_clusters.py --config-file ... --region 150 152 1 3 --source sdss --download-dir sdss_frames \
      --output survey_out MODEL.WEIGHTS ...
  tools/find_clusters.py ... --scheduler tcp://head-node:8786     # an existing Dask cluster

Rerunning with the same --output resumes: finished tiles are kept (a rerun with other weights, config, input or
threshold is refused). Exits with status 1 and a message when nothing can be run or every tile failed.
See deepcee_d2.survey and docs/errors.md.
"""
import argparse
import logging
import sys

from detectron2.utils.logger import setup_logger

from deepcee_d2.config import load_config
from deepcee_d2.io import read_positions
from deepcee_d2.survey.run import ImagingSpec, find_clusters
from deepcee_d2.survey.tiling import plan_folder_tiles, plan_position_tiles, plan_region_tiles, tile_geometry


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--input", help="folder of g, r, i FITS frames with WCS (SDSS frames, synthetic fields)")
    where.add_argument("--region", nargs=4, type=float, metavar=("RA_MIN", "RA_MAX", "DEC_MIN", "DEC_MAX"),
                       help="sky box in degrees, imaging fetched from --source")
    where.add_argument("--positions", help="table (FITS/ECSV/CSV) with ra, dec columns: one tile on each")
    parser.add_argument("--source", choices=["sdss", "skyview"], default="sdss",
                        help="imaging service for --region / --positions")
    parser.add_argument("--download-dir", default="survey_imaging", help="where fetched imaging is cached")
    parser.add_argument("--output", required=True)
    parser.add_argument("--scheduler", help="address of an existing Dask scheduler (default: a LocalCluster)")
    parser.add_argument("--workers", type=int, help="LocalCluster worker processes (default: one per core)")
    parser.add_argument("--threads", action="store_true",
                        help="LocalCluster workers as threads of this process, not processes (small runs, debugging)")
    parser.add_argument("--dashboard", metavar="ADDRESS", help="start Dask's dashboard there, e.g. localhost:8787")
    parser.add_argument("--threads-per-worker", type=int,
                        help="PyTorch and opencv threads in each worker (default DEEPCEE.SURVEY.TORCH_THREADS_PER_WORKER)")
    parser.add_argument("--gallery", type=int, default=50, help="candidates shown in the HTML gallery")
    # One catalogue per flag: a list-taking flag would swallow the KEY VALUE overrides that follow it.
    parser.add_argument("--crossmatch", action="append", default=[], metavar="CATALOGUE",
                        help="known-cluster catalogue (ra, dec, z; a cluster without z is matched at the "
                             "candidate's z_est); repeat the flag for several")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    setup_logger(name="deepcee_d2")
    logging.getLogger("deepcee_d2").setLevel(logging.INFO)
    cfg = load_config(args.config_file, args.opts)
    if args.threads_per_worker is not None:
        cfg.DEEPCEE.SURVEY.TORCH_THREADS_PER_WORKER = args.threads_per_worker
    cfg.freeze()
    side, overlap = tile_geometry(cfg)
    problems = []
    if args.input:
        imaging = ImagingSpec.from_cfg(cfg, "fits", args.input)
        tiles, problems = plan_folder_tiles(imaging.source(), side, overlap)
    else:
        imaging = ImagingSpec.from_cfg(cfg, args.source, args.download_dir)
        if args.region:
            tiles = plan_region_tiles(args.region[:2], args.region[2:], side, overlap)
        else:
            tiles = plan_position_tiles(read_positions(args.positions, "--positions table"))
    result = find_clusters(cfg, tiles, imaging, args.output, problems=problems, scheduler=args.scheduler,
                           n_workers=args.workers, gallery_size=args.gallery,
                           crossmatch=args.crossmatch, processes=not args.threads,
                           dashboard=args.dashboard)
    print(f"{len(result.catalogue)} candidates from {len(tiles)} tiles ({len(result.failures)} failed, "
          f"{result.catalogue.meta.get('NCROWDED', 0)} masked as crowded sky)")
    for kind, path in result.paths.items():
        print(f"  {kind}: {path}")
    if result.all_tiles_failed:
        raise SystemExit(f"find_clusters: error: all {len(tiles)} tiles failed, e.g. {result.failures['reason'][0]} "
                         f"(every reason in {result.paths['failures']})")
    return result


if __name__ == "__main__":
    try:
        main()
    except (ValueError, OSError) as error:  # bad input: the message names the file and the problem
        sys.exit(f"find_clusters: error: {error}")

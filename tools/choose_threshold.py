#!/usr/bin/env python
"""Choose the survey's score threshold from its false-candidate rate: the lowest score at which a survey run
on sky without clusters (or with known truth) gives at most DEEPCEE.SURVEY.TARGET_FALSE_PER_DEG2 false
candidates per deg^2. The run's tile files are re-merged with the config's merging, so the rate is measured
down to the run's DEEPCEE.SURVEY.KEEP_SCORE_FLOOR.

  tools/choose_threshold.py --config-file configs/deepcee_inception_v2_sdss.yaml \
      [--truth clusters.fits] [--known CATALOGUE ...] [--area DEG2 | --frames FRAMES_DIR] [--target 2] SURVEY_OUT
      [KEY VALUE ...]

Real sky holds real clusters: --known CATALOGUE (ra, dec, z; z may be empty; repeatable: redMaPPer, WHL,
Abell, X-ray or SZ lists) counts the candidates on them apart, not as false. Prints the rate table and the
threshold; set DEEPCEE.SURVEY.SCORE_THRESHOLD to it. With --truth also where
the true clusters not found at that threshold (or at the config's, when none meets the target) were lost:
not detected, crowded sky, no red sequence, percolated or merged away. See deepcee_d2.evaluation.purity.
"""
import argparse
import sys

import numpy as np

from deepcee_d2.config import load_config
from deepcee_d2.evaluation.purity import (
    LOSS_STAGES, choose_score_threshold, loss_stages, rates_markdown, read_tile_detections, survey_false_rates,
)


def print_losses(detections, truth, cfg, threshold):
    """How many true clusters the survey found at ``threshold`` and where it lost the others."""
    stages = loss_stages(detections, truth, cfg, threshold)["stage"]
    counts = ", ".join(f"{stage} {int((stages == stage).sum())}" for stage in LOSS_STAGES)
    print(f"the {len(stages)} true clusters of the redshift window at score >= {threshold:g}: {counts}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("survey", help="output folder of tools/find_clusters.py (after the options)")
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--truth", help="true clusters (ra, dec, z, id); default: the sky holds none")
    parser.add_argument("--known", action="append", metavar="CATALOGUE",
                        help="real clusters known on the sky searched, not counted as false (repeatable)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--area", type=float, help="searched area in deg^2 (default: the catalogue's AREADEG2)")
    where.add_argument("--frames", help="folder of the frames the survey ran on, to measure the area")
    parser.add_argument("--target", type=float, help="false candidates per deg^2 (default: the config's)")
    parser.add_argument("--step", type=float, default=0.01, help="threshold step")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    args = parser.parse_args(argv)
    cfg = load_config(args.config_file, args.opts)
    target = cfg.DEEPCEE.SURVEY.TARGET_FALSE_PER_DEG2 if args.target is None else args.target
    detections, _, floor = read_tile_detections(args.survey)
    thresholds = np.round(np.arange(floor, 1 + args.step / 2, args.step), 6)
    rates = survey_false_rates(args.survey, cfg, thresholds, args.truth, args.area, args.frames,
                               known_clusters=args.known)
    chosen = choose_score_threshold(rates, target)
    shown = rates[np.isclose(np.round(rates["threshold"] * 10) / 10, rates["threshold"])
                  | (rates["threshold"] == chosen)]
    print(rates_markdown(shown))
    area = rates.meta["AREADEG2"]
    if rates.meta["NMASKTRU"]:
        print(f"{rates.meta['NMASKTRU']} true clusters lie on masked (crowded) sky, outside the searched "
              f"{area:.4f} deg^2: left out of the completeness")
    if args.truth:
        print_losses(detections, args.truth, cfg, cfg.DEEPCEE.SURVEY.SCORE_THRESHOLD if chosen is None else chosen)
    if chosen is None:
        print(f"no threshold >= {floor} gives <= {target} false candidates per deg^2 over {area:.3f} deg^2")
        return None
    row = rates[rates["threshold"] == chosen][0]
    print(f"lowest threshold with <= {target} false candidates per deg^2 over {area:.3f} deg^2: {chosen:g} "
          f"({row['n_false']} false, {row['false_per_deg2']:.2f} per deg^2); "
          f"set DEEPCEE.SURVEY.SCORE_THRESHOLD {chosen:g}")
    return chosen


if __name__ == "__main__":
    try:
        main()
    except (ValueError, OSError) as error:
        sys.exit(f"choose_threshold: error: {error}")

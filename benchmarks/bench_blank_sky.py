#!/usr/bin/env python
"""Purity at the survey threshold (issue 15): a model's false candidates per deg^2 on >= 1 deg^2 of synthetic
sky without clusters (with the simulator's groups below the richness cut), the lowest score that keeps them
at or under DEEPCEE.SURVEY.TARGET_FALSE_PER_DEG2, and the model's test split at that score (BENCHMARKS.md,
"Purity on a square degree of synthetic sky").

  PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_blank_sky.py --weights demo/train/model_final.pth \
      --report demo/train/inference/deepcee_synthetic_test [--fields 10] [--field-size 3000] \
      [--config-file configs/deepcee_demo_cpu.yaml] [--work /tmp/blank_sky] [--workers 2] [KEY VALUE ...]

- The sky: ``--fields`` fields of ``--field-size`` px squared (10 x 3000^2 px = 1.09 deg^2) on a grid at RA 220,
  Dec 35 (high Galactic latitude; apart from the demo's training sky and held-out region), drawn by
  `write_survey` without clusters: field galaxies, stars, artefacts and groups (N200 below the cut) as always.
- The survey: ``find_clusters_in_folder`` with the config's tiles and merging; every candidate is false. The tile files keep
  detections down to KEEP_SCORE_FLOOR, so the rate is tabulated from there up in steps of 0.01.
- The test split: the report folder's predictions.ecsv and true_clusters.ecsv (written by the evaluator)
  matched again (`evaluate_detections`, the config's 100 kpc) at the chosen threshold and the usual ones.
- ``DEEPCEE.SURVEY.REQUIRE_RED_SEQUENCE True``: the survey lists only detections with a red-sequence peak, and
  the test split's recall counts only those (its precision is not known: see `test_split_at`).

Everything is kept under ``--work``; a rerun resumes (the sky and the survey refuse other settings).
"""
import argparse
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table

from deepcee_d2.config import load_config
from deepcee_d2.cosmology import cosmology_from_cfg
from deepcee_d2.evaluation.matching import evaluate_detections
from deepcee_d2.evaluation.purity import choose_score_threshold, read_tile_detections, survey_false_rates
from deepcee_d2.evaluation.report import PREDICTIONS_NAME, TRUTHS_NAME
from deepcee_d2.survey.run import find_clusters_in_folder
from deepcee_d2.synthetic import write_survey
from deepcee_d2.synthetic.survey import grid_centres

REPO = Path(__file__).resolve().parents[1]
ORIGIN = SkyCoord(220.0 * u.deg, 35.0 * u.deg)


def test_split_at(cfg, report_dir, thresholds):
    """P / R / F1 rows of the evaluated test split at ``thresholds``, from the evaluator's written tables; with
    DEEPCEE.SURVEY.REQUIRE_RED_SEQUENCE, the recall counts only detections with a red-sequence peak (precision
    and F1 then NaN: the evaluator estimates only the predictions near a cluster)."""
    predictions = Table.read(Path(report_dir) / PREDICTIONS_NAME, format="ascii.ecsv")
    truths = Table.read(Path(report_dir) / TRUTHS_NAME, format="ascii.ecsv")
    confirm = cfg.DEEPCEE.SURVEY.REQUIRE_RED_SEQUENCE
    if confirm:
        predictions = predictions[np.asarray(predictions["rs_peak"], dtype=bool)]
    evaluation = evaluate_detections(predictions, truths, thresholds=thresholds,
                                     match_radius=cfg.DEEPCEE.EVAL.MATCH_RADIUS_KPC * u.kpc,
                                     histogram_radius=cfg.DEEPCEE.EVAL.HISTOGRAM_RADIUS_KPC * u.kpc,
                                     cosmology=cosmology_from_cfg(cfg))
    table = evaluation.table
    if confirm:
        table["precision"] = table["f1"] = np.nan
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--report", required=True, help="the test split's report folder (predictions.ecsv)")
    parser.add_argument("--config-file", default=str(REPO / "configs" / "deepcee_demo_cpu.yaml"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/blank_sky"))
    parser.add_argument("--fields", type=int, default=10)
    parser.add_argument("--field-size", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, KEY VALUE ...")
    args = parser.parse_args(argv)
    cfg = load_config(args.config_file, ["MODEL.WEIGHTS", args.weights] + args.opts)
    cfg.freeze()

    sky, output = args.work / "sky", args.work / "survey"
    centres = grid_centres(args.fields, args.field_size, args.field_size, origin=ORIGIN)
    _, fields = write_survey(sky, args.fields, args.field_size, args.field_size, centres=centres, clusters=None,
                             seed=args.seed, source_lists=False, workers=args.workers)
    find_clusters_in_folder(cfg, sky, output, n_workers=args.workers)

    _, _, floor = read_tile_detections(output)
    thresholds = np.round(np.arange(floor, 1.005, 0.01), 6)
    rates = survey_false_rates(output, cfg, thresholds, frames=sky)
    target = cfg.DEEPCEE.SURVEY.TARGET_FALSE_PER_DEG2
    chosen = choose_score_threshold(rates, target)
    area = rates.meta["AREADEG2"]
    n_groups = int(np.sum(fields["n_groups"]))
    print(f"\n{args.fields} synthetic fields without clusters, {area:.3f} deg^2, {n_groups} groups below the cut "
          f"({args.config_file}, weights {args.weights})\n")
    shown = sorted({0.5, 0.7, 0.8, 0.9, 0.95, 0.99, float(floor), cfg.DEEPCEE.SURVEY.SCORE_THRESHOLD}
                   | ({chosen} if chosen is not None else set()))
    at = {float(row["threshold"]): row for row in rates}
    split = {float(row["threshold"]): row for row in test_split_at(cfg, args.report, shown)}
    print("| score >= | false candidates | per deg^2 | test split precision | recall | F1 |")
    print("|---:|---:|---:|---:|---:|---:|")
    for threshold in shown:
        row = at[min(at, key=lambda t: abs(t - threshold))]
        test = split[threshold]
        print(f"| {threshold:g} | {row['n_false']} | {row['false_per_deg2']:.2f} | {test['precision']:.3f} "
              f"| {test['recall']:.3f} | {test['f1']:.3f} |")
    if chosen is None:
        print(f"\nno score >= {floor:g} gives <= {target:g} false candidates per deg^2 over {area:.3f} deg^2")
    else:
        print(f"\nlowest score with <= {target:g} false candidates per deg^2: {chosen:g}; test-split recall there "
              f"{split[chosen]['recall']:.3f} (the issue asks >= 0.9)")
    rates.write(args.work / "rates.ecsv", overwrite=True)
    return rates, chosen


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Red-sequence z and richness on a data set's split along the evaluator's path, with the truth as detections.

Loads a Deep-CEE COCO json (`deepcee_d2.data.register.load_deepcee_json`), puts one prediction on every
annotated cluster (offset by ``--offset-kpc`` proper kpc in a random direction, a detection's typical centring
error), and runs what `DeepCEEEvaluator` does with ``DEEPCEE.EVAL.REDSHIFTS``: the flux cutout of each image
remade from the imaging the data set records (`deepcee_d2.evaluation.redshifts.estimate_predictions`), the
100 kpc matching and `redshift_accuracy`. Prints the accuracy and the seconds per image. Writes nothing.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/redshift_dataset.py DATASET/test.json \\
        --config configs/deepcee_demo_cpu.yaml
"""
import argparse
import time
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table

from deepcee_d2.config import load_config
from deepcee_d2.cosmology import angular_size, cosmology_from_cfg
from deepcee_d2.data.register import load_deepcee_json
from deepcee_d2.evaluation.matching import evaluate_detections
from deepcee_d2.evaluation.redshifts import RedshiftEvaluation, estimate_predictions, redshift_accuracy


def main(args):
    cfg = load_config(args.config)
    cosmology = cosmology_from_cfg(cfg)
    records = load_deepcee_json(args.json, Path(args.json).parent, "benchmark")
    rng = np.random.default_rng(args.seed)
    truths, predictions = [], []
    for record in records:
        for annotation in record["annotations"]:
            truths.append((record["image_id"], annotation["cluster_id"], annotation["ra"], annotation["dec"],
                           annotation["z"], annotation["richness"], annotation["n_members"]))
            centre = SkyCoord(annotation["ra"] * u.deg, annotation["dec"] * u.deg)
            offset = angular_size(args.offset_kpc * u.kpc, annotation["z"], cosmology)
            moved = centre.directional_offset_by(rng.uniform(0, 360) * u.deg, offset)
            predictions.append((record["image_id"], moved.ra.deg, moved.dec.deg, 0.9))
    truths = Table(rows=truths, names=("image_id", "id", "ra", "dec", "z", "richness", "n_members"))
    predictions = Table(rows=predictions, names=("image_id", "ra", "dec", "score"))
    redshifts = RedshiftEvaluation.from_cfg(cfg)
    match_radius = cfg.DEEPCEE.EVAL.MATCH_RADIUS_KPC * u.kpc
    wall, cpu = time.perf_counter(), time.process_time()
    estimated, problems = estimate_predictions(predictions, truths, {r["image_id"]: r for r in records}, redshifts,
                                               match_radius, cosmology, "benchmark")
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    evaluation = evaluate_detections(estimated, truths, thresholds=(0.5,), match_radius=match_radius,
                                     histogram_radius=cfg.DEEPCEE.EVAL.HISTOGRAM_RADIUS_KPC * u.kpc,
                                     cosmology=cosmology)
    accuracy = redshift_accuracy(evaluation, redshifts.outlier)
    print(f"{args.json}: {len(records)} images, {len(truths)} annotated clusters "
          f"({len(np.unique(truths['id']))} distinct), predictions {args.offset_kpc:g} kpc off; {len(problems)} images "
          f"without a flux cutout")
    print(f"estimates: {wall:.0f} s wall, {cpu:.0f} s CPU, {cpu / len(records):.2f} CPU-s per image")
    for key, value in accuracy.items():
        print(f"  {key}: {value:.4f}" if isinstance(value, float) else f"  {key}: {value}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json", help="a data set's train.json or test.json")
    parser.add_argument("--config", help="the config the data set was built with (its DEEPCEE.REDSHIFT, EVAL)")
    parser.add_argument("--offset-kpc", type=float, default=12.0, help="prediction offset from the truth (default 12)")
    parser.add_argument("--seed", type=int, default=0)
    main(parser.parse_args())

#!/usr/bin/env python
"""Recall and speed of a trained Deep-CEE against the number of test proposals, and batching on CPU.

  DEEPCEE_DATASETS=demo/datasets .venv/bin/python benchmarks/bench_proposals.py \
      --weights demo/train/model_final.pth [--config configs/deepcee_demo_cpu.yaml] \
      [--dataset deepcee_synthetic_test] [--proposals 300 100 50 20] [--threads 1] \
      [--batch-proposals 50] [--batch-sizes 1 2 4] [--batch-images 16] [--max-images N]

One model per proposal count (``MODEL.RPN.POST_NMS_TOPK_TEST``), all loaded with the same weights; every
test image (read once by detectron2's test loader) goes through each of them in turn, in an order rotated
from image to image, so the timings are side by side under the same machine load. Each model's detections
go to its own ``DeepCEEEvaluator`` (100 kpc matching, ``DEEPCEE.EVAL``): recall with every detection
(threshold 0), recall at the survey's ``DEEPCEE.SURVEY.SCORE_THRESHOLD``, and P, R, F1 at the best threshold.
Seconds per image are the median over the images of the model's forward pass (preprocessing, backbone, RPN,
box head, postprocessing; not reading the PNG), split into backbone, RPN and box head by forward hooks.

Batching: the first ``--batch-images`` images through the model with ``--batch-proposals`` proposals, in
batches of each ``--batch-sizes`` (interleaved), seconds per image, and the largest score difference from
batch 1 (the same images must give the same detections).
"""
import argparse
import math
import statistics
import time
from collections import defaultdict

import numpy as np
import torch

import deepcee_d2  # noqa: F401  (registers the model parts and data sets)
from deepcee_d2.config import load_config
from deepcee_d2.engine import Trainer
from deepcee_d2.engine.predictor import build_inference_model
from deepcee_d2.evaluation import DeepCEEEvaluator

STAGES = ("backbone", "proposal_generator", "roi_heads")


class StageTimer:
    """Wall time of each stage of a GeneralizedRCNN, summed over calls, by forward pre- and post-hooks."""

    def __init__(self, model):
        self.seconds = defaultdict(float)
        self._start = {}
        for name in STAGES:
            module = getattr(model, name)
            module.register_forward_pre_hook(lambda _m, _a, name=name: self._start.__setitem__(name, time.perf_counter()))
            module.register_forward_hook(lambda _m, _a, _o, name=name: self._add(name))

    def _add(self, name):
        self.seconds[name] += time.perf_counter() - self._start[name]


def timed(model, inputs):
    start = time.perf_counter()
    with torch.no_grad():
        outputs = model(inputs)
    return outputs, time.perf_counter() - start


def test_inputs(cfg, dataset, max_images=0):
    """The first ``max_images`` (0: all) batches of detectron2's test loader of ``dataset``, read once."""
    inputs = []
    for batch in Trainer.build_test_loader(cfg, dataset):
        inputs.append(batch)
        if max_images and len(inputs) == max_images:
            break
    return inputs


def proposal_curve(cfgs, models, inputs, dataset):
    """Table rows: model key (e.g. proposals), recall (all / at the survey threshold), best P, R, F1, s per
    image, stages; the survey threshold; each model's detections (`Instances` per image)."""
    evaluators = {k: DeepCEEEvaluator(cfgs[k], dataset, output_dir=None, distributed=False) for k in models}
    timers = {k: StageTimer(model) for k, model in models.items()}
    seconds, detections = defaultdict(list), defaultdict(list)
    counts = list(models)
    for index, batch in enumerate(inputs):
        order = counts[index % len(counts):] + counts[:index % len(counts)]  # no count always runs first
        for k in order:
            outputs, wall = timed(models[k], batch)
            seconds[k].append(wall)
            detections[k].append(outputs[0]["instances"])
            evaluators[k].process(batch, outputs)
    rows = []
    for k in counts:
        metrics = evaluators[k].evaluate()["deepcee"]
        survey_threshold = cfgs[k].DEEPCEE.SURVEY.SCORE_THRESHOLD
        stages = {name: timers[k].seconds[name] / len(inputs) for name in STAGES}
        rows.append((k, metrics["recall-0"], metrics[f"recall-{100 * survey_threshold:g}"],
                     metrics["best_threshold"], metrics["precision"], metrics["recall"], metrics["f1"],
                     metrics["centring_error_kpc"], statistics.median(seconds[k]), stages))
    return rows, cfgs[counts[0]].DEEPCEE.SURVEY.SCORE_THRESHOLD, detections


def batching(model, inputs, batch_sizes):
    """Seconds per image for each batch size (median over rounds) and the largest score difference from batch 1."""
    group = math.lcm(*batch_sizes)
    images = [batch[0] for batch in inputs][: len(inputs) // group * group]
    if not images:
        raise SystemExit(f"--batch-images must be at least {group} (the least common multiple of --batch-sizes)")
    per_image = defaultdict(list)
    scores = {size: [] for size in batch_sizes}
    for start in range(0, len(images), group):
        chunk = images[start:start + group]
        rotation = (start // group) % len(batch_sizes)
        for size in batch_sizes[rotation:] + batch_sizes[:rotation]:
            total = 0.0
            for first in range(0, group, size):
                outputs, wall = timed(model, chunk[first:first + size])
                total += wall
                scores[size].extend(output["instances"].scores.numpy() for output in outputs)
            per_image[size].append(total / group)
    single = scores[batch_sizes[0]]
    rows = []
    for size in batch_sizes:
        # Images are in the same order for every batch size; detections may differ in number only if a score
        # moves across the NMS or top-k boundary, so compare the shared leading scores.
        difference = max((float(np.abs(a[:len(b)] - b[:len(a)]).max(initial=0))
                          for a, b in zip(single, scores[size])), default=0.0)
        rows.append((size, statistics.median(per_image[size]), difference))
    return rows, len(images)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/deepcee_demo_cpu.yaml")
    parser.add_argument("--weights", required=True)
    parser.add_argument("--dataset", default="deepcee_synthetic_test")
    parser.add_argument("--proposals", type=int, nargs="+", default=[300, 100, 50, 20])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (a survey worker's default: 1)")
    parser.add_argument("--max-images", type=int, default=0, help="evaluate only the first N test images (0: all)")
    parser.add_argument("--batch-proposals", type=int, default=50)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--batch-images", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cfgs, models = {}, {}
    for k in dict.fromkeys(args.proposals + [args.batch_proposals]):
        # The curve is about detection: the evaluators skip the red-sequence redshifts of the matches.
        cfgs[k] = load_config(args.config, ["MODEL.WEIGHTS", args.weights, "MODEL.DEVICE", "cpu",
                                            "MODEL.RPN.POST_NMS_TOPK_TEST", k, "DEEPCEE.EVAL.REDSHIFTS", False])
        models[k] = build_inference_model(cfgs[k])
    inputs = test_inputs(cfgs[args.proposals[0]], args.dataset, args.max_images)
    height, width = inputs[0][0]["image"].shape[1:]
    print(f"{args.dataset}: {len(inputs)} images of {width} x {height} px; {args.config}, weights {args.weights}; "
          f"CPU, {torch.get_num_threads()} torch threads, torch {torch.__version__}")

    rows, survey_threshold, _ = proposal_curve(cfgs, {k: models[k] for k in args.proposals}, inputs, args.dataset)
    print(f"\n| test proposals | recall, all detections | recall at {100 * survey_threshold:g} % | best threshold "
          "| precision | recall | F1 | centring error (kpc) | s / image (median) | backbone / RPN / box head (s, mean) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for k, recall_all, recall_survey, best, precision, recall, f1, centring, seconds, stages in rows:
        print(f"| {k} | {recall_all:.3f} | {recall_survey:.3f} | {100 * best:.0f} % | {precision:.3f} | {recall:.3f} "
              f"| {f1:.3f} | {centring:.1f} | {seconds:.3f} | "
              + " / ".join(f"{stages[name]:.3f}" for name in STAGES) + " |", flush=True)

    batch_rows, n_images = batching(models[args.batch_proposals], inputs[:args.batch_images], args.batch_sizes)
    print(f"\nbatching, {args.batch_proposals} proposals, {n_images} images:")
    print("| images per forward pass | s / image (median) | vs batch 1 | largest score difference from batch 1 |")
    print("| --- | --- | --- | --- |")
    for size, seconds, difference in batch_rows:
        print(f"| {size} | {seconds:.3f} | {seconds / batch_rows[0][1]:.2f} | {difference:.1e} |")


if __name__ == "__main__":
    main()

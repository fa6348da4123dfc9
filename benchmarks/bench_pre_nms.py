#!/usr/bin/env python
"""Detections and time per image of a trained Deep-CEE against the RPN's boxes before its NMS.

  DEEPCEE_DATASETS=demo/datasets .venv/bin/python benchmarks/bench_pre_nms.py \
      --weights demo/train/model_final.pth [--config configs/deepcee_demo_cpu.yaml] \
      [--dataset deepcee_synthetic_test] [--pre-nms 6000 2000 1000] [--proposals 100] [--max-images N]

One model per ``MODEL.RPN.PRE_NMS_TOPK_TEST`` value, each prepared for inference with ``--proposals``
proposals (the survey's default), the test images through them in rotating order (`bench_proposals.
proposal_curve`), one torch thread. Printed per value: recall, best P/R/F1, seconds per image and per stage,
and against the first value the largest score difference, centre offset (network px) and number of images
with another count of detections >= 0.2 (`bench_precision.differences`).
"""
import argparse

import torch

import deepcee_d2  # noqa: F401  (registers the model parts and data sets)
from bench_precision import differences  # this folder is on the path when run as a script
from bench_proposals import STAGES, proposal_curve, test_inputs
from deepcee_d2.config import load_config
from deepcee_d2.engine.predictor import build_inference_model


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/deepcee_demo_cpu.yaml")
    parser.add_argument("--weights", required=True)
    parser.add_argument("--dataset", default="deepcee_synthetic_test")
    parser.add_argument("--pre-nms", type=int, nargs="+", default=[6000, 2000, 1000])
    parser.add_argument("--proposals", type=int, default=100)
    parser.add_argument("--max-images", type=int, default=0, help="only the first N test images (0: all)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    cfgs, models = {}, {}
    for pre in args.pre_nms:
        cfgs[pre] = load_config(args.config, [
            "MODEL.WEIGHTS", args.weights, "MODEL.DEVICE", "cpu", "MODEL.RPN.POST_NMS_TOPK_TEST", args.proposals,
            "MODEL.RPN.PRE_NMS_TOPK_TEST", pre, "DEEPCEE.EVAL.REDSHIFTS", False])
        models[pre] = build_inference_model(cfgs[pre])
    inputs = test_inputs(cfgs[args.pre_nms[0]], args.dataset, args.max_images)
    print(f"{args.dataset}: {len(inputs)} images; {args.config}, weights {args.weights}; {args.proposals} proposals")
    rows, survey_threshold, detections = proposal_curve(cfgs, models, inputs, args.dataset)
    print(f"\n| pre-NMS boxes | recall, all | recall at {100 * survey_threshold:g} % | P / R / F1 (best threshold) "
          "| s / image (median) | backbone / RPN / box head (s) | largest score difference | largest centre offset "
          "(px) | images with another count >= 0.2 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for pre, recall_all, recall_survey, best, precision, recall, f1, _, seconds, stages in rows:
        score, offset, count = differences(detections[args.pre_nms[0]], detections[pre], 0.2)
        print(f"| {pre} | {recall_all:.3f} | {recall_survey:.3f} | {precision:.3f} / {recall:.3f} / {f1:.3f} "
              f"({100 * best:.0f} %) | {seconds:.3f} | " + " / ".join(f"{stages[s]:.3f}" for s in STAGES)
              + f" | {score:.4f} | {offset:.2f} | {count} |")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Time per image and detections of a trained Deep-CEE as trained, prepared for inference, and in bfloat16.

  DEEPCEE_DATASETS=demo/datasets .venv/bin/python benchmarks/bench_precision.py \
      --weights demo/train/model_final.pth [--config configs/deepcee_demo_cpu.yaml] \
      [--dataset deepcee_synthetic_test] [--proposals 100] [--threads 1] [--max-images N] [--floor 0.2]

Three models with the same weights and ``MODEL.RPN.POST_NMS_TOPK_TEST`` ``--proposals`` (the survey's
default): the model as training leaves it (batch norms, contiguous tensors), the same after
`~deepcee_d2.engine.predictor.prepare_for_inference` (batch norms folded, channels-last; what evaluation and
the survey run), and prepared with ``MODEL.INCEPTION_V2.PRECISION`` bfloat16. Each test image goes through
the three in rotating order (`bench_proposals.proposal_curve`: side by side under the same load), each into
its own 100 kpc evaluator. Printed: recall, best P/R/F1, seconds per image and per stage, and against the
first model the largest score difference and the largest centre offset (network pixels) of detections
scoring >= ``--floor`` (the survey's keep floor), each matched to the nearest detection of the first model,
and how many images differ in their number of such detections.
"""
import argparse

import torch

import deepcee_d2  # noqa: F401  (registers the model parts and data sets)
from bench_proposals import STAGES, proposal_curve, test_inputs  # this folder is on the path when run as a script
from deepcee_d2.config import load_config
from deepcee_d2.engine import Trainer
from deepcee_d2.engine.predictor import load_weights, prepare_for_inference, weights_file

MODELS = {"float32, as trained": ("float32", False), "float32, prepared": ("float32", True),
          "bfloat16, prepared": ("bfloat16", True)}


def differences(reference, other, floor):
    """Largest score difference, largest centre offset (px) and the number of images whose count of
    detections >= ``floor`` differs, ``other`` against ``reference`` (lists of `Instances`, image by image)."""
    score, offset, count = 0.0, 0.0, 0
    for a, b in zip(reference, other):
        a, b = a[a.scores >= floor], b[b.scores >= floor]
        count += len(a) != len(b)
        if len(a) and len(b):
            distance = torch.cdist(b.pred_boxes.get_centers(), a.pred_boxes.get_centers())
            nearest = distance.argmin(dim=1)
            offset = max(offset, float(distance.min(dim=1).values.max()))
            score = max(score, float((b.scores - a.scores[nearest]).abs().max()))
    return score, offset, count


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/deepcee_demo_cpu.yaml")
    parser.add_argument("--weights", required=True)
    parser.add_argument("--dataset", default="deepcee_synthetic_test")
    parser.add_argument("--proposals", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (a survey worker's default: 1)")
    parser.add_argument("--max-images", type=int, default=0, help="evaluate only the first N test images (0: all)")
    parser.add_argument("--floor", type=float, default=0.2, help="lowest score compared (the survey's keep floor)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cfgs, models = {}, {}
    for name, (precision, prepared) in MODELS.items():
        # Detection only: the evaluators skip the red-sequence redshifts of the matches.
        cfgs[name] = load_config(args.config, [
            "MODEL.WEIGHTS", args.weights, "MODEL.DEVICE", "cpu", "MODEL.RPN.POST_NMS_TOPK_TEST", args.proposals,
            "MODEL.INCEPTION_V2.PRECISION", precision, "DEEPCEE.EVAL.REDSHIFTS", False])
        model = Trainer.build_model(cfgs[name])
        load_weights(model, weights_file(cfgs[name]))
        models[name] = prepare_for_inference(model) if prepared else model.eval()
    inputs = test_inputs(cfgs[next(iter(MODELS))], args.dataset, args.max_images)
    height, width = inputs[0][0]["image"].shape[1:]
    print(f"{args.dataset}: {len(inputs)} images of {width} x {height} px; {args.config}, weights {args.weights}; "
          f"{args.proposals} proposals; CPU, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}")

    rows, survey_threshold, detections = proposal_curve(cfgs, models, inputs, args.dataset)
    reference = next(iter(MODELS))
    print(f"\n| model | recall, all detections | recall at {100 * survey_threshold:g} % | best threshold | precision "
          f"| recall | F1 | centring error (kpc) | s / image (median) | backbone / RPN / box head (s, mean) "
          f"| largest score difference | largest centre offset (px) | images with another count >= {args.floor:g} |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, recall_all, recall_survey, best, precision, recall, f1, centring, seconds, stages in rows:
        score, offset, count = differences(detections[reference], detections[name], args.floor)
        print(f"| {name} | {recall_all:.3f} | {recall_survey:.3f} | {100 * best:.0f} % | {precision:.3f} | {recall:.3f} "
              f"| {f1:.3f} | {centring:.1f} | {seconds:.3f} | " + " / ".join(f"{stages[s]:.3f}" for s in STAGES)
              + f" | {score:.4f} | {offset:.2f} | {count} |", flush=True)


if __name__ == "__main__":
    main()

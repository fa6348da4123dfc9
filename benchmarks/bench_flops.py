#!/usr/bin/env python
"""The detector's achieved GFLOP/s on CPU beside the machine's fp32 matmul peak, measured in one run.

  .venv/bin/python benchmarks/bench_flops.py [--threads 1 2] [--proposals 300 50] [--iterations 3] [--matmul 2048]
      [--precisions float32 bfloat16]

For each torch thread count: the matmul peak (``torch.mm`` of two ``--matmul`` square fp32 matrices, best of
10 after a warm-up, 2 n^3 FLOPs each), then for each config, network image size and proposal count the
detector's FLOPs for one image (fvcore's ``FlopCountAnalysis``, which counts one multiply-add as one; doubled
here to the matmul's convention) and its median seconds per image (`bench_detector.ImageToBoxes`: preprocessing,
backbone, RPN, box head, box postprocessing), then the matmul peak again (the machine's load may drift). The
configs: the CPU demo (``configs/deepcee_demo_cpu.yaml``, 500 px network images, and at 1000 px) and the
paper's SDSS config (``configs/deepcee_inception_v2_sdss.yaml``, 1000 px). Random weights with the RPN's box
deltas zeroed and its NMS off (`bench_detector.zero_rpn_box_deltas`), so the box head runs on every proposal,
as a trained model's does on a busy field. Each model is prepared for inference as evaluation and the survey
run it (`prepare_for_inference`) and timed at each ``--precisions`` (``MODEL.INCEPTION_V2.PRECISION``); its
FLOPs are counted once (the same arithmetic at either precision) and set against the matmul peak of the same
dtype.
"""
import argparse
import statistics
import time

import torch
from fvcore.nn import FlopCountAnalysis

from bench_detector import ImageToBoxes, seconds_per_call, zero_rpn_box_deltas  # this folder is on the path
from deepcee_d2.config import load_config
from deepcee_d2.engine.predictor import prepare_for_inference
from detectron2.modeling import build_model

MODELS = (("configs/deepcee_demo_cpu.yaml", 500), ("configs/deepcee_demo_cpu.yaml", 1000),
          ("configs/deepcee_inception_v2_sdss.yaml", 1000))
STAGES = ("backbone", "proposal_generator", "roi_heads")


def matmul_gflops(n, repeats=10, dtype=torch.float32):
    """Best and median GFLOP/s of ``torch.mm`` on two n x n matrices of ``dtype`` (2 n^3 FLOPs per product)."""
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=generator).to(dtype) for _ in range(2))
    torch.mm(a, b)  # warm-up
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        rates.append(2 * n ** 3 / (time.perf_counter() - start) / 1e9)
    return max(rates), statistics.median(rates)


def detector(config, size, proposals, precision="float32"):
    cfg = load_config(config, ["MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TEST", size, "INPUT.MAX_SIZE_TEST", size,
                               "MODEL.RPN.NMS_THRESH", 1.0, "MODEL.RPN.POST_NMS_TOPK_TEST", proposals,
                               "MODEL.INCEPTION_V2.PRECISION", precision])
    torch.manual_seed(0)
    return ImageToBoxes(prepare_for_inference(zero_rpn_box_deltas(build_model(cfg))))


def flops(model, image):
    """fvcore's multiply-adds of one image, in all and per stage, and the ops it could not count."""
    analysis = FlopCountAnalysis(model, image)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    by_module = analysis.by_module()
    return analysis.total(), {name: by_module[f"model.{name}"] for name in STAGES}, analysis.unsupported_ops()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--proposals", type=int, nargs="+", default=[300, 50])
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--matmul", type=int, default=2048, help="side of the square matrices of the peak")
    parser.add_argument("--precisions", nargs="+", default=["float32"], choices=["float32", "bfloat16"])
    args = parser.parse_args()

    models, counted = {}, {}
    for config, size in MODELS:
        image = torch.randint(0, 256, (3, size, size), generator=torch.Generator().manual_seed(0)).float()
        for proposals in args.proposals:
            for precision in args.precisions:
                models[config, size, proposals, precision] = (detector(config, size, proposals, precision), image)
            with torch.no_grad():  # counted on a float32 model: the same arithmetic at either precision
                counted[config, size, proposals] = flops(detector(config, size, proposals), image)
    print(f"CPU, torch {torch.__version__}; fvcore multiply-adds x 2 = FLOPs; detector: median of {args.iterations} "
          f"after a warm-up; matmul {args.matmul}^2 fp32 best of 10")
    for (config, size, proposals), (total, stages, unsupported) in counted.items():
        print(f"{config} {size} px, {proposals} proposals: {2 * total / 1e9:.1f} GFLOP ("
              + ", ".join(f"{name} {2 * stages[name] / 1e9:.1f}" for name in STAGES)
              + f"); not counted by fvcore: {dict(unsupported)}")
    print("\n| torch threads | config | network image | proposals | precision | GFLOP / image | s / image | GFLOP/s "
          "| matmul peak GFLOP/s of that dtype (before / after) | detector / peak |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16}
    for threads in args.threads:
        torch.set_num_threads(threads)
        before = {p: matmul_gflops(args.matmul, dtype=dtypes[p])[0] for p in args.precisions}
        rows = []
        for key, (model, image) in models.items():
            with torch.no_grad():
                seconds = seconds_per_call(lambda: model(image), args.iterations)
            rows.append((key, 2 * counted[key[:3]][0] / 1e9, seconds))
        after = {p: matmul_gflops(args.matmul, dtype=dtypes[p])[0] for p in args.precisions}
        for (config, size, proposals, precision), gflop, seconds in rows:
            peak = max(before[precision], after[precision])
            print(f"| {threads} | {config.split('/')[-1]} | {size} px | {proposals} | {precision} | {gflop:.1f} "
                  f"| {seconds:.3f} | {gflop / seconds:.1f} | {before[precision]:.0f} / {after[precision]:.0f} "
                  f"| {gflop / seconds / peak:.3f} |", flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Speed and FLOPs of Deep-CEE's Inception-v2 Faster R-CNN against detectron2's stock R50-C4 Faster R-CNN.

Both models are measured side by side in one process, on the same random 1000x1000 RGB images with one
ground-truth box, on CPU: seconds per training iteration (batch 1, forward + backward + SGD step) and per
inference image, and the FLOPs of one inference (fvcore's FlopCountAnalysis, which counts one fused
multiply-add as one FLOP; detectron2 v0.6's own wrapper imports caffe2, so the model is wrapped here).

  .venv/bin/python benchmarks/bench_detector.py [--iterations 5] [--size 1000] [--threads N]

R50-C4 is detectron2's default config (ResNet-50 to res4, res5 box head, 1000 test proposals); it is also
measured with Deep-CEE's 300 test proposals so that the backbone and head costs can be told apart.
The models have random weights, whose RPN outputs are meaningless (random-weight ResNet activations grow
so large that its box deltas push most proposals off the image). So that each box head gets its configured
number of proposals, as in a trained model, the RPN's box deltas are zeroed (proposals are anchors) and RPN
NMS is switched off. The training steps use a learning rate of 0 (same work per step, weights kept finite).
"""
import argparse
import statistics
import time

import torch
from fvcore.nn import FlopCountAnalysis
from torch import nn

import deepcee_d2  # noqa: F401
from deepcee_d2.config import load_config
from deepcee_d2.engine import Trainer
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage


def deepcee_cfg(size):
    return load_config("configs/Base-DeepCEE.yaml", ["MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TEST", size,
                                                     "INPUT.MAX_SIZE_TEST", size, "MODEL.RPN.NMS_THRESH", 1.0])


def r50_c4_cfg(size, proposals=1000):
    cfg = get_cfg()  # detectron2's defaults are the R50-C4 Faster R-CNN
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.ROI_HEADS.NUM_CLASSES", 1, "INPUT.MIN_SIZE_TEST", size,
                         "INPUT.MAX_SIZE_TEST", size, "MODEL.RPN.POST_NMS_TOPK_TEST", proposals,
                         "MODEL.RPN.NMS_THRESH", 1.0])
    return cfg


def sample(size, generator):
    image = torch.randint(0, 256, (3, size, size), generator=generator).float()
    instances = Instances((size, size), gt_boxes=Boxes(torch.tensor([[size * 0.3, size * 0.3, size * 0.6, size * 0.6]])),
                          gt_classes=torch.zeros(1, dtype=torch.long))
    return {"image": image, "height": size, "width": size, "instances": instances}


class ImageToBoxes(nn.Module):
    """A model as a function of one image tensor, so that fvcore can trace it."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, image):
        instances = self.model.inference([{"image": image}], do_postprocess=False)[0]
        return instances.pred_boxes.tensor, instances.scores


def seconds_per_call(function, iterations):
    function()  # warm-up
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def zero_rpn_box_deltas(model):
    """Make a random-weight model's proposals its anchors (module docstring); returns the model."""
    deltas = model.proposal_generator.rpn_head.anchor_deltas
    nn.init.zeros_(deltas.weight)
    nn.init.zeros_(deltas.bias)
    return model


def measure(name, cfg, size, iterations, trainer_class):
    generator = torch.Generator().manual_seed(0)
    model = zero_rpn_box_deltas(build_model(cfg))
    parameters = sum(p.numel() for p in model.parameters())
    # A learning rate of 0 keeps the random weights (so the outputs stay finite: one real step makes the
    # random-weight R50-C4 diverge) while every step still does the full forward, backward and SGD update.
    cfg = cfg.clone()
    cfg.SOLVER.BASE_LR = 0.0
    optimizer = trainer_class.build_optimizer(cfg, model)
    batch = [sample(size, generator)]

    def train_step():
        model.train()
        with EventStorage():
            losses = model(batch)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()

    def infer():
        model.eval()
        with torch.no_grad():
            model([{k: v for k, v in batch[0].items() if k != "instances"}])

    # Inference first: training steps on random data can leave random-weight models with non-finite outputs.
    inference = seconds_per_call(infer, iterations)
    model.eval()
    flops = FlopCountAnalysis(ImageToBoxes(model), batch[0]["image"])
    flops.unsupported_ops_warnings(False)
    flops.uncalled_modules_warnings(False)
    gflops = flops.total() / 1e9
    train = seconds_per_call(train_step, iterations)
    print(f"| {name} | {parameters / 1e6:.1f} | {train:.2f} | {inference:.2f} | {gflops:.0f} |", flush=True)
    return inference


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from detectron2.engine import DefaultTrainer

    print(f"{args.size}x{args.size} RGB, batch 1, CPU, {torch.get_num_threads()} torch threads, "
          f"median of {args.iterations} after one warm-up; torch {torch.__version__}")
    print("| model | parameters (M) | s / train iteration | s / inference image | GFLOPs / inference |")
    print("| --- | --- | --- | --- | --- |")
    ours = measure("Deep-CEE Inception-v2 (300 proposals)", deepcee_cfg(args.size), args.size, args.iterations, Trainer)
    stock = measure("detectron2 R50-C4 (1000 proposals)", r50_c4_cfg(args.size), args.size, args.iterations,
                    DefaultTrainer)
    measure("detectron2 R50-C4 (300 proposals)", r50_c4_cfg(args.size, 300), args.size, args.iterations, DefaultTrainer)
    print(f"inference speed-up of Deep-CEE over stock R50-C4: {stock / ours:.1f}x")


if __name__ == "__main__":
    main()

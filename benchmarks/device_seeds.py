"""The demo trained several times side by side on one CUDA GPU (seeds, schedules), each run evaluated on the
demo's test split: enough runs to tell two configurations apart, which one CPU run each cannot (BENCHMARKS.md,
"Run-to-run scatter"). For the device machine of this workplace (`run` of the device tool), or any GPU.

First the demo's training sky and data set (`deepcee_d2.demo`, the default `DemoPlan`; ``--neighbours`` as
``tools/run_demo.py``'s), on every core; then one process per variant, all at once on the one GPU (a batch-1
run of the demo uses ~0.5 GB of it and a fraction of its time), each killed at ``--deadline`` seconds after the
start; then a table of the variants' test-split numbers on stdout and in OUT/summary.md, each variant's
evaluation in OUT/NAME.json and, for ``--keep NAME``, its weights in float16 in two files (NAME_fp16_0.pth,
NAME_fp16_1.pth; each under the device tool's 16 MiB a file), which ``--merge-weights`` makes one weights file
of again (float32, as MODEL.WEIGHTS):

    python benchmarks/device_seeds.py WORK --out OUT --variants x1s7:7:1300 x1s8:8:1300 x3s7:7:3900 \\
        [--neighbours 2] [--deadline 550] [--keep x3s7]
    python benchmarks/device_seeds.py --merge-weights x3s7.pth OUT/x3s7_fp16_0.pth OUT/x3s7_fp16_1.pth

A variant is NAME:SEED:MAX_ITER (the learning-rate drop at 4/5 of MAX_ITER, as the demo's 1040 of 1300). The
device tool brings back at most 8 files: summary.md, one JSON per variant and two per kept one must fit.
On the device machine, whose Python (3.12) lacks some of this package's needs, carry the folder that
``benchmarks/device_bundle.sh`` makes (``.d2site``) and put it first on PYTHONPATH:

    PYTHONPATH=$PWD/.d2site:$PWD python3 benchmarks/device_seeds.py /tmp/seeds --out $OUT --variants ...
"""
import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import deepcee_d2.demo as demo


def demo_plan(args, config_opts=()):
    return demo.DemoPlan(work_dir=Path(args.work), n_train_fields=args.train_fields,
                         neighbours_per_field=args.neighbours, workers=os.cpu_count(), progress=False,
                         precision="bfloat16", config_opts=tuple(config_opts))


def make_data(args):
    """The demo's training sky and data set; seconds each."""
    plan = demo_plan(args)
    cfg = demo.demo_config(plan)
    start = time.time()
    clusters, blank_targets = demo.make_training_sky(plan, cfg)
    sky_done = time.time()
    demo.make_dataset(plan, cfg, clusters, blank_targets)
    return {"sky_s": round(sky_done - start, 1), "dataset_s": round(time.time() - sky_done, 1)}


def train_one(args):
    """One variant: train on the GPU, evaluate the test split, write OUT/NAME.json (and the weights if kept)."""
    import torch
    from detectron2.utils.logger import setup_logger

    name, seed, max_iter = args.train_one.split(":")
    max_iter = int(max_iter)
    opts = ("SEED", seed, "MODEL.DEVICE", args.device, "SOLVER.MAX_ITER", str(max_iter),
            "SOLVER.STEPS", f"({int(0.8 * max_iter)},)", "SOLVER.CHECKPOINT_PERIOD", "100000")
    cfg = demo.demo_config(demo_plan(args, opts))
    cfg.OUTPUT_DIR = str(Path(args.work) / f"train_{name}")  # demo_config sets the demo's own
    cfg.freeze()
    setup_logger(output=cfg.OUTPUT_DIR, name="deepcee_d2")
    setup_logger(output=cfg.OUTPUT_DIR)
    start = time.time()
    weights = demo.train_and_evaluate(cfg)
    metrics = [json.loads(line) for line in (Path(cfg.OUTPUT_DIR) / "metrics.json").read_text().splitlines()]
    step_times = [m["time"] for m in metrics if "time" in m]
    result = {"name": name, "seed": int(seed), "max_iter": max_iter, "wall_s": round(time.time() - start, 1),
              "s_per_iteration": step_times[-1] if step_times else None, "device": torch.cuda.get_device_name() if args.device == "cuda" else args.device,
              "evaluation": json.loads((demo.test_report_dir(cfg) / "evaluation.json").read_text())}
    out = Path(args.out)
    (out / f"{name}.json").write_text(json.dumps(result, indent=1))
    if name in args.keep:
        model = torch.load(weights, map_location="cpu", weights_only=True)["model"]
        model = {key: value.half() if value.is_floating_point() else value for key, value in model.items()}
        halves = ({}, {})
        for key in sorted(model, key=lambda key: -model[key].numel()):
            min(halves, key=lambda half: sum(value.numel() for value in half.values()))[key] = model[key]
        for part, half in enumerate(halves):
            torch.save(half, out / f"{name}_fp16_{part}.pth")


def merge_weights(target, parts):
    """The float16 halves written for ``--keep`` as one float32 weights file at ``target``."""
    import torch

    model = {}
    for part in parts:
        model.update(torch.load(part, map_location="cpu", weights_only=True))
    torch.save({"model": {key: value.float() if value.is_floating_point() else value
                          for key, value in model.items()}}, target)


def at_threshold(rows, threshold):
    return next(row for row in rows if abs(row["threshold"] - threshold) < 1e-6)


def summary_markdown(results):
    lines = ["| variant | seed | iterations | s / iteration | best F1 (threshold) | TP / FP / FN at 0.5 | "
             "recall at 0.5 | merged F1 at 0.5 |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        evaluation = r["evaluation"]
        best, at_half = evaluation["best"], at_threshold(evaluation["thresholds"], 0.5)
        merged = at_threshold(evaluation["survey_merged"]["thresholds"], 0.5)
        lines.append(f"| {r['name']} | {r['seed']} | {r['max_iter']} | {r['s_per_iteration']:.3f} | "
                     f"{best['f1']:.3f} ({100 * best['threshold']:.0f} %) | {at_half['tp']} / {at_half['fp']} / "
                     f"{at_half['fn']} | {at_half['recall']:.3f} | {merged['f1']:.3f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("work", nargs="?", help="where the sky, data set and runs are written")
    parser.add_argument("--out", default=os.environ.get("OUT", "."), help="where the results are written")
    parser.add_argument("--variants", nargs="+", default=["x1s7:7:1300"], help="NAME:SEED:MAX_ITER each")
    parser.add_argument("--neighbours", type=int, default=0, help="as tools/run_demo.py --neighbours")
    parser.add_argument("--train-fields", type=int, default=demo.DemoPlan.n_train_fields,
                        help="training fields of the sky (the demo's by default)")
    parser.add_argument("--device", default="cuda", help="MODEL.DEVICE of the runs")
    parser.add_argument("--deadline", type=float, default=550.0, help="seconds from the start for everything")
    parser.add_argument("--keep", nargs="*", default=[], help="variants whose weights are written to --out")
    parser.add_argument("--merge-weights", nargs=3, metavar=("TARGET", "PART0", "PART1"),
                        help="write the two halves of kept weights as one float32 weights file, then stop")
    parser.add_argument("--train-one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.merge_weights:
        return merge_weights(args.merge_weights[0], args.merge_weights[1:])
    if args.work is None:
        parser.error("the work folder is needed")
    os.environ["DEEPCEE_DATASETS"] = str(Path(args.work).resolve() / "datasets")
    args.work = str(Path(args.work).resolve())
    if args.train_one:
        return train_one(args)
    start = time.time()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    timing = make_data(args)
    print(f"sky {timing['sky_s']} s, data set {timing['dataset_s']} s ({os.cpu_count()} processes)", flush=True)
    passed = [arg for flag in ("--out", "--neighbours", "--train-fields", "--device") for arg in (flag, str(getattr(args, flag[2:].replace("-", "_"))))]
    runs = {}
    with contextlib.ExitStack() as logs:  # each run's log is closed when its run is over
        for variant in args.variants:
            log = logs.enter_context(open(Path(args.work) / f"{variant.split(':')[0]}.log", "w"))
            runs[variant] = subprocess.Popen([sys.executable, __file__, args.work, *passed, "--keep", *args.keep,
                                              "--train-one", variant], stdout=log, stderr=subprocess.STDOUT)
        for variant, process in runs.items():
            try:
                process.wait(timeout=max(1.0, args.deadline - (time.time() - start)))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                print(f"{variant}: stopped at the deadline ({args.deadline:.0f} s)", flush=True)
    results = [json.loads(path.read_text()) for variant in args.variants
               if (path := Path(args.out) / f"{variant.split(':')[0]}.json").is_file()]
    table = summary_markdown(results) if results else "no variant finished"
    (Path(args.out) / "summary.md").write_text(f"{timing}\n\n{table}\n")
    print(table, f"\nall in {time.time() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()

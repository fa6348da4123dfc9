#!/usr/bin/env python
"""Survey throughput against Dask workers and PyTorch threads per worker, and where a tile's time goes.

  .venv/bin/python benchmarks/bench_workers.py --weights demo/train/model_final.pth --input demo/survey_sky \
      [--config configs/deepcee_demo_cpu.yaml] [--grid 1x1 1x2 2x1 2x2] [--max-tiles 0] [--split-tiles 8] \
      [--work /tmp/deepcee_workers_bench] [opts KEY VALUE ...]

1. ``find_clusters`` over the tiles of the ``--input`` frames, once per ``WORKERSxTHREADS`` of ``--grid``
   (a LocalCluster of that many single-task worker processes, each running PyTorch with that many intra-op
   threads), each into a fresh folder. Tiles per second over the whole call (Dask start, one model load per
   worker, catalogue) and in the steady state: (tiles - 1) / (last - first tile file's time).
2. In this process, one thread: the first ``--split-tiles`` tiles, reading + colour image
   (`deepcee_d2.survey.run.tile_network_image`) and detection, each as wall and CPU time. A part whose CPU time
   is its wall time never waits (on disk or network), so running it beside the detection (a prefetch thread,
   more tasks per worker) only helps if a core is idle.
"""
import argparse
import resource
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
from astropy.table import Table

from deepcee_d2.config import load_config
from deepcee_d2.survey.run import ImagingSpec, find_clusters, job_from_cfg, tile_network_image
from deepcee_d2.survey.tiling import plan_folder_tiles, tile_geometry


def wall_and_cpu(function):
    wall, cpu = time.perf_counter(), time.thread_time()
    result = function()
    return result, time.perf_counter() - wall, time.thread_time() - cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/deepcee_demo_cpu.yaml")
    parser.add_argument("--weights", required=True)
    parser.add_argument("--input", required=True, help="folder of g, r, i frames (a synthetic survey, SDSS frames)")
    parser.add_argument("--grid", nargs="+", default=["1x1", "1x2", "2x1", "2x2"], help="WORKERSxTHREADS")
    parser.add_argument("--max-tiles", type=int, default=0, help="only the first N tiles (0: all)")
    parser.add_argument("--split-tiles", type=int, default=8)
    parser.add_argument("--work", type=Path, default=Path("/tmp/deepcee_workers_bench"))
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    args = parser.parse_args()

    cfg = load_config(args.config, ["MODEL.WEIGHTS", args.weights, "MODEL.DEVICE", "cpu"] + args.opts)
    cfg.freeze()
    imaging = ImagingSpec.from_cfg(cfg, "fits", args.input)
    tiles, problems = plan_folder_tiles(imaging.source(), *tile_geometry(cfg))
    tiles = tiles[:args.max_tiles or None]
    print(f"{len(tiles)} tiles of {args.input}; {args.config}, {cfg.DEEPCEE.SURVEY.POST_NMS_TOPK_TEST or 'MODEL.RPN'} "
          f"proposals per tile; weights {args.weights}")
    print("| Dask workers | torch threads each | wall (s) | tiles / s, whole call | tiles / s, steady state |")
    print("| --- | --- | --- | --- | --- |")
    catalogues = {}
    for entry in args.grid:
        workers, threads = (int(n) for n in entry.split("x"))
        output = args.work / f"out_{entry}"
        shutil.rmtree(output, ignore_errors=True)
        start = time.perf_counter()
        run_cfg = cfg.clone()
        run_cfg.defrost()
        run_cfg.DEEPCEE.SURVEY.TORCH_THREADS_PER_WORKER = threads
        result = find_clusters(run_cfg, tiles, imaging, output, problems=problems, n_workers=workers,
                               gallery_size=0, progress=False)
        wall = time.perf_counter() - start
        assert len(result.failures) == 0, result.failures
        done = sorted(path.stat().st_mtime for path in (output / "tiles").glob("*.ecsv"))
        steady = (len(done) - 1) / (done[-1] - done[0])
        print(f"| {workers} | {threads} | {wall:.1f} | {len(tiles) / wall:.3f} | {steady:.3f} |", flush=True)
        catalogues[entry] = Table.read(output / "candidates.ecsv")
    first = next(iter(catalogues.values()))
    counts = {entry: len(catalogue) for entry, catalogue in catalogues.items()}
    if len(set(counts.values())) == 1:
        difference = max(float(np.abs(c["score"] - first["score"]).max(initial=0)) for c in catalogues.values())
        print(f"every run: {len(first)} candidates; largest score difference from the first run {difference:.1e}")
    else:
        print(f"candidates per run differ: {counts}")

    job = job_from_cfg(cfg, imaging, args.work / "split")
    detect = job.detector()
    rows = []
    for tile in tiles[:args.split_tiles]:
        (rgb, _), read_wall, read_cpu = wall_and_cpu(lambda: tile_network_image(job, tile))
        _, detect_wall, detect_cpu = wall_and_cpu(lambda: detect(rgb))
        rows.append((read_wall, read_cpu, detect_wall, detect_cpu))
    medians = [statistics.median(column) for column in zip(*rows)]
    print(f"\none thread, first {len(rows)} tiles (median s per tile): read + colour image {medians[0]:.3f} wall, "
          f"{medians[1]:.3f} CPU; detection {medians[2]:.3f} wall, {medians[3]:.3f} CPU; peak memory of this "
          f"process (two models, the tiles): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20:.2f} GiB")


if __name__ == "__main__":
    main()

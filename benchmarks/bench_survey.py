#!/usr/bin/env python
"""Survey inference speed: tiles per second and square degrees per core-hour with 1 and 2 Dask workers,
measured in one run, and the time projected for the SDSS DR8 footprint on one 16-core node.

  .venv/bin/python benchmarks/bench_survey.py [--fields 2] [--field-size 4096] [--config configs/...yaml]
                                               [--weights model.pth] [--work /tmp/deepcee_survey_bench]

The tiles are the paper's (2000 px at 0.396" shown at 1000 px, overlapping by the 512 px anchor) unless
another config is given. Without --weights the model has random weights (drawn once, saved, loaded by every
worker), with zero RPN box deltas (proposals are anchors) and the RPN's NMS switched off, so that the box
head runs on all 300 proposals of every tile, as a trained model does on a busy field (the cost per tile is
then an upper bound). The fields are synthetic (deepcee_d2.synthetic), made once in --work.
Each worker count runs into a fresh output folder, so no tile is skipped as already done.

Synthetic fields lie on the tiles' own north-up grid, so their tiles are sliced, not resampled. Real SDSS
frames are rotated and offset between bands, so each tile is reprojected from them; that cost is measured
separately (three bands of one tile reprojected from a grid rotated by 5 degrees, one core) and added to the
SDSS projection.
"""
import argparse
import shutil
import time
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table

from bench_detector import zero_rpn_box_deltas  # this folder is on the path when run as a script
from deepcee_d2.config import load_config
from deepcee_d2.data.frames import reproject_to_grid
from deepcee_d2.sky import cutout_grid
from deepcee_d2.synthetic import ClusterSpec, write_survey
from deepcee_d2.survey.run import ImagingSpec, find_clusters
from deepcee_d2.survey.tiling import plan_folder_tiles, tile_geometry

SDSS_DR8_DEG2 = 14555.0
NODE_CORES = 16


def reprojection_seconds(size, pixel_scale):
    """Seconds to reproject g, r, i of one ``size`` px tile from frames on a grid rotated by 5 degrees."""
    centre = SkyCoord(150 * u.deg, 20 * u.deg)
    grid = cutout_grid(centre, size, pixel_scale * u.arcsec)
    frame = cutout_grid(centre, size + 200, pixel_scale * u.arcsec)
    angle = np.deg2rad(5.0)
    frame.wcs.pc = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    frame.wcs.set()
    data = np.random.default_rng(0).normal(0, 0.03, (size + 200, size + 200)).astype(np.float32)
    start = time.perf_counter()
    for _ in "gri":
        reproject_to_grid([(data, frame)], grid, "benchmark")
    return time.perf_counter() - start


def save_random_weights(cfg, path):
    """One random-weight model of ``cfg``, saved as a detectron2 checkpoint at ``path``."""
    import torch
    from detectron2.modeling import build_model

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = zero_rpn_box_deltas(build_model(cfg))
    torch.save({"model": model.state_dict()}, path)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fields", type=int, default=2)
    parser.add_argument("--field-size", type=int, default=4096)
    parser.add_argument("--config", default="configs/deepcee_inception_v2_sdss.yaml")
    parser.add_argument("--weights", default="")
    parser.add_argument("--work", type=Path, default=Path("/tmp/deepcee_survey_bench"))
    args = parser.parse_args()

    opts = ["MODEL.DEVICE", "cpu"]
    if not args.weights:
        opts += ["MODEL.RPN.NMS_THRESH", 1.0]
    cfg = load_config(args.config, opts)
    # Every worker loads the same weights; random ones are drawn once and saved.
    weights = args.weights or str(save_random_weights(cfg, args.work / "random_weights.pth"))
    cfg.MODEL.WEIGHTS = weights
    cfg.freeze()
    sky = args.work / "sky"
    clusters, fields = write_survey(sky, args.fields, args.field_size, args.field_size,
                                    clusters=ClusterSpec(per_field=3, placement="random"), seed=5,
                                    source_lists=False, workers=2, progress=False)
    imaging = ImagingSpec.from_cfg(cfg, "fits", sky)
    side, overlap = tile_geometry(cfg)
    tiles, problems = plan_folder_tiles(imaging.source(), side, overlap)
    area = sum(row["nx"] * row["ny"] for row in fields) * (0.396 / 3600) ** 2  # deg^2 of input sky
    print(f"{len(fields)} synthetic fields of {args.field_size}^2 px ({area:.3f} deg^2), {len(tiles)} tiles of "
          f"{side:.0f} overlapping by {overlap:.1f}; config {args.config}, weights {weights}")
    print("| workers | wall (s) | tiles / s | deg^2 / core-hour | SDSS DR8 (14,555 deg^2) on 16 cores |")
    print("| --- | --- | --- | --- | --- |")
    walls = {}
    for workers in (1, 2):
        output = args.work / f"out_{workers}"
        shutil.rmtree(output, ignore_errors=True)
        start = time.perf_counter()
        result = find_clusters(cfg, tiles, imaging, output, problems=problems, n_workers=workers, gallery_size=0,
                               progress=False)
        wall = time.perf_counter() - start
        assert len(result.failures) == 0, result.failures
        per_core_hour = area / (wall * workers / 3600)
        days = SDSS_DR8_DEG2 / (per_core_hour * NODE_CORES) / 24
        print(f"| {workers} | {wall:.1f} | {len(tiles) / wall:.3f} | {per_core_hour:.2f} | {days:.1f} days |",
              flush=True)
        walls[workers] = wall
    one, two = (Table.read(args.work / f"out_{n}" / "candidates.ecsv") for n in (1, 2))
    same = one.colnames == two.colnames and all((one[c] == two[c]).all() for c in one.colnames)
    print(f"catalogues with 1 and 2 workers identical: {same} ({len(one)} candidates)")
    reproject = reprojection_seconds(cfg.DEEPCEE.COLOUR.CUTOUT_SIZE, cfg.DEEPCEE.COLOUR.PIXEL_SCALE)
    core_seconds_per_tile = walls[2] * 2 / len(tiles) + reproject
    tiles_dr8 = SDSS_DR8_DEG2 / (area / len(tiles))
    print(f"reprojecting g, r, i of one tile from rotated frames: {reproject:.1f} s on one core; with it, "
          f"{core_seconds_per_tile:.1f} core-seconds per tile and SDSS DR8 ({tiles_dr8:,.0f} tiles at this "
          f"tile density) takes {tiles_dr8 * core_seconds_per_tile / NODE_CORES / 86400:.1f} days on {NODE_CORES} cores")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Cost of the catalogue step's percolation (`deepcee_d2.redsequence.percolate`) at survey scale.

Detections with a red-sequence peak, as a survey's tiles hold them: clusters at a surface density typical of
the survey's peaked detections, each detected 3 times (tile overlaps, second boxes) within 50", 0.1 < z < 0.3,
richness log-uniform 5-100, each scan a Gaussian bump at its z. Prints the wall time of `percolate` for each
number of detections (the comparisons grow with the detections' density, not with the survey's area).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_percolation.py [--per-deg2 5] [--detections 3000 30000]
"""
import argparse
import time

import astropy.units as u
import numpy as np
from astropy.table import Table

from deepcee_d2.config import add_deepcee_config
from deepcee_d2.cosmology import DEFAULT_COSMOLOGY
from deepcee_d2.redsequence import RedSequenceSettings, percolate
from detectron2.config import get_cfg


def detections(n, per_deg2, settings, rng):
    clusters = n // 3
    side = np.sqrt(clusters / per_deg2)  # deg, a square region near the equator
    ra, dec = rng.uniform(150.0, 150.0 + side, clusters), rng.uniform(0.0, side, clusters)
    z = rng.uniform(0.1, 0.3, clusters)
    richness = np.exp(rng.uniform(np.log(5.0), np.log(100.0), clusters))
    rows = np.repeat(np.arange(clusters), 3)
    offset = rng.normal(0.0, 50.0 / 3600.0 / np.sqrt(2), (len(rows), 2))
    grid = settings.z_grid
    excess = 3.0 * richness[rows, None] ** 0.7 * np.exp(-0.5 * ((grid[None, :] - z[rows, None]) / 0.02) ** 2)
    return Table({"ra": ra[rows] + offset[:, 0], "dec": dec[rows] + offset[:, 1], "z_est": z[rows],
                  "z_err": np.full(len(rows), 0.01), "richness": richness[rows], "rs_significance": excess.max(1) / 3,
                  "rs_peak": np.ones(len(rows), bool), "scan_excess": excess, "scan_noise": np.full(excess.shape, 3.0)})


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-deg2", type=float, default=5.0, help="clusters per deg^2 (default 5)")
    parser.add_argument("--detections", type=int, nargs="+", default=[3000, 30000])
    args = parser.parse_args()
    cfg = add_deepcee_config(get_cfg())
    settings = RedSequenceSettings.from_cfg(cfg)
    rng = np.random.default_rng(1)
    print("| detections | clusters per deg^2 | area deg^2 | percolate s | peaks kept |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for n in args.detections:
        table = detections(n, args.per_deg2, settings, rng)
        start = time.perf_counter()
        result = percolate(table, cfg.DEEPCEE.SURVEY.MERGE_RADIUS_KPC * u.kpc, DEFAULT_COSMOLOGY, settings,
                           cfg.DEEPCEE.SURVEY.PERCOLATE_MIN_DROP)
        seconds = time.perf_counter() - start
        print(f"| {len(table)} | {args.per_deg2:g} | {len(table) / 3 / args.per_deg2:.0f} | {seconds:.1f} | "
              f"{int(np.sum(result['rs_peak']))} |", flush=True)


if __name__ == "__main__":
    main()

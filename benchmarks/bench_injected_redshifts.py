#!/usr/bin/env python
"""Red-sequence redshifts and confirmations of clusters injected into real frames and their synthetic twins, at
the clusters' true centres, without the detector (BENCHMARKS.md, "Aperture-corrected colours").

  PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_injected_redshifts.py --work /tmp/injection_bench \
      [--frames ../shared/data/sdss] [--config-file configs/deepcee_demo_cpu.yaml] [--rounds 6] [--per-field 2]
      [--seed 1] [--workers 2] [--real-background FILE] [--output TABLE.ecsv] [KEY VALUE ...]

The clusters are those of `bench_injection.py` with the same ``--work``, ``--rounds``, ``--per-field`` and
``--seed`` (its folders are reused, or injected here when missing). Each cluster gets the photometry of a tile
of the survey's size (`survey_tile_sizes`: ``DEEPCEE.SURVEY.TILE_SIZE``, 0 for ``COLOUR.CUTOUT_SIZE``) around it, offset from its BCG at random by up to 30 %
of the tile (as the survey's tiles fall), and `RedSequenceEstimator.estimate` at the BCG: dz / (1 + z), the
significance and whether it confirms a red-sequence peak (``rs_peak``). Printed per field and over each sky;
``--real-background`` as in `bench_injection.py` (the twins use the config's background). What changes between
two runs is the estimator's settings (``KEY VALUE ...``), not the clusters, so settings are compared cluster by
cluster in seconds per cluster rather than by a survey.
"""
import argparse
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table

from bench_injection import cluster_spec, make_twins
from deepcee_d2.config import load_config
from deepcee_d2.data.colour import survey_tile_sizes
from deepcee_d2.data.frames import LocalFITSSource
from deepcee_d2.redsequence import RedSequenceEstimator
from deepcee_d2.synthetic.inject import inject_clusters

REPO = Path(__file__).resolve().parents[1]
MAX_OFFSET = 0.3  # of the tile side


def estimates(folder, estimator, size, scale, rng):
    """One row per cluster of ``folder``'s truth: its estimate at the BCG in a ``size`` px tile of ``scale``
    (angle per pixel) around it."""
    truth = Table.read(folder / "clusters.fits")
    source = LocalFITSSource(folder)
    rows = []
    for cluster in truth:
        bcg = SkyCoord(cluster["ra"] * u.deg, cluster["dec"] * u.deg)
        dx, dy = rng.uniform(-MAX_OFFSET, MAX_OFFSET, 2) * size * scale
        cutout = source.cutout(bcg.spherical_offsets_by(dx, dy), size, scale, partial=True)
        estimate = estimator.estimate(cutout.images, cutout.wcs, [cluster["ra"]], [cluster["dec"]], str(folder),
                                      cutout.covered)
        rows.append({"field": str(cluster["field"]), "id": str(cluster["id"]), "z": float(cluster["z"]),
                     "richness": float(cluster["richness"]), "z_est": float(estimate["z_est"][0]),
                     "significance": float(estimate["rs_significance"][0]), "peak": bool(estimate["rs_peak"][0])})
    return rows


def summary(label, table):
    dz = (table["z_est"] - table["z"]) / (1 + table["z"])
    confirmed = table["peak"]
    bias = np.median(dz[confirmed]) if confirmed.any() else np.nan
    nmad = 1.4826 * np.median(np.abs(dz[confirmed] - bias)) if confirmed.any() else np.nan
    return (f"| {label} | {int(confirmed.sum())} / {len(table)} | {bias:+.4f} | {nmad:.4f} | "
            f"{np.median(table['significance']):.2f} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/injection_bench"))
    parser.add_argument("--frames", default=str(REPO.parent / "shared" / "data" / "sdss"))
    parser.add_argument("--config-file", default=str(REPO / "configs" / "deepcee_demo_cpu.yaml"))
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--per-field", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--real-background", help="red-sequence background file for the real sky only")
    parser.add_argument("--output", type=Path, help="write the per-cluster table here (ECSV)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, KEY VALUE ...")
    args = parser.parse_args(argv)
    cfg = load_config(args.config_file, args.opts)
    synthetic = RedSequenceEstimator.from_cfg(cfg)
    real = synthetic
    if args.real_background:
        real = RedSequenceEstimator.from_cfg(load_config(
            args.config_file, args.opts + ["DEEPCEE.REDSHIFT.BACKGROUND_FILE", args.real_background]))
    estimators = {"real": real, "synthetic": synthetic}
    size, scale = survey_tile_sizes(cfg)[0], cfg.DEEPCEE.COLOUR.PIXEL_SCALE * u.arcsec
    twins, _ = make_twins(args.frames, args.work / "twins", args.seed, args.workers)
    skies = {"real": Path(args.frames), "synthetic": twins}
    spec = cluster_spec(args.per_field)
    rows = []
    for k in range(args.rounds):
        for name, root in skies.items():
            folder = args.work / f"{name}_injected_{k}"
            inject_clusters(root, folder, clusters=spec, seed=args.seed + k, progress=False)
            # The same tile offsets on both skies: the k-th cluster of a field is the same cluster on both.
            for row in estimates(folder, estimators[name], size, scale, np.random.default_rng(1000 + k)):
                rows.append({"sky": name, "round": k, **row})
        print(f"round {k} of {args.rounds}", flush=True)
    table = Table(rows)
    if args.output:
        table.write(args.output, format="ascii.ecsv", overwrite=True)
    print("\n| sky / field | red-sequence peak | median dz/(1+z) of those | sigma_NMAD | median significance |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in skies:
        on_sky = table[table["sky"] == name]
        print(summary(f"{name}, all", on_sky))
        for field in sorted(set(on_sky["field"])):
            print(summary(f"{name} {field}", on_sky[on_sky["field"] == field]))


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""One candidate per cluster: a survey run's tile detections re-merged at several proper radii, with the
false candidates per deg^2 and the clusters found exactly once at a few thresholds (BENCHMARKS.md, "Purity").
Reads the run (never writes into it).

  python benchmarks/bench_purity.py demo/survey --truth demo/survey_sky/clusters.fits --frames demo/survey_sky \
      --radii-kpc 250 500 750 1000 1500 [--config-file configs/deepcee_demo_cpu.yaml] [--out /tmp/purity]

The old fixed angle (100") is the first row: the same angle for every detection is a proper length at the
survey's MIN_REDSHIFT with no redshift column.
"""
import argparse
from pathlib import Path

import astropy.units as u
from astropy.table import vstack

from deepcee_d2.config import load_config
from deepcee_d2.cosmology import cosmology_from_cfg, proper_length
from deepcee_d2.evaluation.purity import survey_false_rates


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("survey")
    parser.add_argument("--truth", required=True)
    parser.add_argument("--frames", required=True, help="the survey's frames, for the searched area")
    parser.add_argument("--config-file",
                        default=str(Path(__file__).resolve().parents[1] / "configs" / "deepcee_demo_cpu.yaml"))
    parser.add_argument("--radii-kpc", type=float, nargs="+", default=[250, 500, 750, 1000, 1500])
    parser.add_argument("--old-arcsec", type=float, default=100.0)
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.5, 0.8, 0.9])
    parser.add_argument("--out", default="/tmp/purity")
    args = parser.parse_args(argv)
    cfg = load_config(args.config_file)
    old_kpc = proper_length(args.old_arcsec * u.arcsec, cfg.DEEPCEE.SURVEY.MIN_REDSHIFT, cosmology_from_cfg(cfg))
    rows = []
    radii = [(f'{args.old_arcsec:g}" (old)', old_kpc.to_value(u.kpc))] + [(f"{r:g} kpc", r) for r in args.radii_kpc]
    for label, kpc in radii:
        cfg = load_config(args.config_file, ["DEEPCEE.SURVEY.MERGE_RADIUS_KPC", str(kpc)])
        rates = survey_false_rates(args.survey, cfg, args.thresholds, truth=args.truth, frames=args.frames)
        rates["merge"] = label
        rows.append(rates)
    table = vstack(rows, metadata_conflicts="silent")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    table.write(Path(args.out) / "purity_by_radius.ecsv", format="ascii.ecsv", overwrite=True)
    print(f"searched area {rows[0].meta['AREADEG2']:.4f} deg^2, {rows[0]['n_true'][0]} true clusters\n")
    print("| merging | score >= | candidates | false | of them duplicates | false per deg^2 | found | found once |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in table:
        print(f"| {row['merge']} | {row['threshold']:g} | {row['n_candidates']} | {row['n_false']} "
              f"| {row['n_duplicate']} | {row['false_per_deg2']:.1f} | {row['n_found']} | {row['n_found_once']} |")
    return table


if __name__ == "__main__":
    main()

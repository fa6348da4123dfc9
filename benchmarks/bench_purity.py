#!/usr/bin/env python
"""One candidate per cluster: a survey run's tile detections re-merged at several proper radii, with the
false candidates per deg^2 and the clusters found exactly once at a few thresholds (BENCHMARKS.md, "Purity").
Reads the run (never writes into it).

  python benchmarks/bench_purity.py demo/survey --truth demo/survey_sky/clusters.fits --frames demo/survey_sky \
      --radii-kpc 250 500 750 1000 1500 [--config-file configs/deepcee_demo_cpu.yaml] [--out /tmp/purity]

The old fixed angle (100") is the first row: the same angle for every detection is a proper length at the
survey's MIN_REDSHIFT with no redshift column. With --oracle-z every detection within 2 r200 of a true cluster
also gets that cluster's redshift as z_est (what a perfect red-sequence redshift would give; the tiles are
copied to OUT/oracle_survey with the column added): the merging's bound once z_est exists.
"""
import argparse
import shutil
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table, vstack

from deepcee_d2.config import load_config
from deepcee_d2.cosmology import cosmology_from_cfg, proper_length
from deepcee_d2.evaluation.purity import survey_false_rates


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("survey")
    parser.add_argument("--truth", required=True)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--frames", help="the survey's frames, for the searched area")
    where.add_argument("--area", type=float, help="the searched area in deg^2")
    parser.add_argument("--config-file",
                        default=str(Path(__file__).resolve().parents[1] / "configs" / "deepcee_demo_cpu.yaml"))
    parser.add_argument("--radii-kpc", type=float, nargs="+", default=[250, 500, 750, 1000, 1500])
    parser.add_argument("--old-arcsec", type=float, default=100.0)
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.5, 0.8, 0.9])
    parser.add_argument("--out", default="/tmp/purity")
    parser.add_argument("--oracle-z", action="store_true", help="z_est = the true z of a cluster within 2 r200")
    args = parser.parse_args(argv)
    survey = oracle_redshifts(args.survey, args.truth, Path(args.out) / "oracle_survey") if args.oracle_z else args.survey
    cfg = load_config(args.config_file)
    old_kpc = proper_length(args.old_arcsec * u.arcsec, cfg.DEEPCEE.SURVEY.MIN_REDSHIFT, cosmology_from_cfg(cfg))
    rows = []
    radii = [(f"{r:g} kpc", r) for r in args.radii_kpc]
    if not args.oracle_z:  # with redshifts a fixed length is no longer the old fixed angle
        radii.insert(0, (f'{args.old_arcsec:g}" (old)', old_kpc.to_value(u.kpc)))
    for label, kpc in radii:
        cfg = load_config(args.config_file, ["DEEPCEE.SURVEY.MERGE_RADIUS_KPC", str(kpc)])
        rates = survey_false_rates(survey, cfg, args.thresholds, truth=args.truth, area=args.area, frames=args.frames)
        rates["merge"] = label
        rows.append(rates)
    table = vstack(rows, metadata_conflicts="silent")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    name = "purity_by_radius_oracle_z.ecsv" if args.oracle_z else "purity_by_radius.ecsv"
    table.write(Path(args.out) / name, format="ascii.ecsv", overwrite=True)
    print(f"searched area {rows[0].meta['AREADEG2']:.4f} deg^2, {rows[0]['n_true'][0]} true clusters\n")
    print("| merging | score >= | candidates | false | of them duplicates | false per deg^2 | found | found once |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in table:
        print(f"| {row['merge']} | {row['threshold']:g} | {row['n_candidates']} | {row['n_false']} "
              f"| {row['n_duplicate']} | {row['false_per_deg2']:.1f} | {row['n_found']} | {row['n_found_once']} |")
    return table


def oracle_redshifts(survey, truth_path, out):
    """A copy of a survey run's tiles and manifest in ``out`` with ``z_est`` the redshift of the nearest true
    cluster within 2 r200 of each detection (NaN elsewhere)."""
    truth = Table.read(truth_path)
    truth_sky = SkyCoord(truth["ra"], truth["dec"], unit="deg")
    if out.exists():
        shutil.rmtree(out)
    (out / "tiles").mkdir(parents=True)
    shutil.copy(Path(survey) / "manifest.json", out / "manifest.json")
    for path in sorted((Path(survey) / "tiles").glob("*.ecsv")):
        tile = Table.read(path, format="ascii.ecsv")
        tile["z_est"] = np.full(len(tile), np.nan)
        if len(tile):
            index, separation, _ = SkyCoord(tile["ra"], tile["dec"], unit="deg").match_to_catalog_sky(truth_sky)
            near = separation.arcsec <= 2 * np.asarray(truth["r200_arcsec"])[index]
            tile["z_est"][near] = np.asarray(truth["z"])[index][near]
        tile.write(out / "tiles" / path.name, format="ascii.ecsv")
    return out


if __name__ == "__main__":
    main()

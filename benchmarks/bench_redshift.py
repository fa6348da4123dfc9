#!/usr/bin/env python
"""Accuracy and cost of the red-sequence redshift and richness (deepcee_d2.redsequence) on synthetic clusters.

Makes synthetic fields with one cluster at the field centre (`deepcee_d2.synthetic.make_field`) in two sets,
the demo's (0.1 < z < 0.2, >= 20 members) and a wide one (0.05 < z < 0.35), plus blank fields for the
background, measures the photometry of each field once and estimates z and richness at the true centre and
at a centre offset by a typical detection error (12 proper kpc, random direction). Prints sigma_NMAD of
dz / (1 + z) (1.4826 median |dz - median dz| / (1 + z)), the outlier fraction (|dz| / (1 + z) > 0.05), the
richness scatter in dex against the truth R_L* at >= 20 members, and seconds per field and per estimate.

``--write-background PATH`` only measures the background on ``--n-blank`` blank fields of ``--size`` pixels
(seeds apart from the benchmark's) and writes it for ``DEEPCEE.REDSHIFT.BACKGROUND_FILE``; the packaged
``deepcee_d2/synthetic/red_sequence_background.ecsv`` is ``--write-background ... --n-blank 8 --size 2000``.
Config overrides (``KEY VALUE ...`` after the options, e.g. ``DEEPCEE.REDSHIFT.APERTURE_CORRECTION True``) apply
to every mode; a background measured with other settings than the packaged one is the one to estimate against
(``... DEEPCEE.REDSHIFT.BACKGROUND_FILE PATH``).

The redshifts and richnesses are estimated against the packaged background
(``DEEPCEE.REDSHIFT.BACKGROUND_FILE``, what the survey and the evaluator use), in every mode; the blank fields
(``--n-blank``) give the blank-field significance, and with ``--measure-background`` the background itself (as
before the packaged one existed).

``--tile-cost`` only times what the survey adds per tile (`RedSequenceEstimator.estimate`: photometry once, then
one estimate per detection) on a ``DEEPCEE.COLOUR.CUTOUT_SIZE`` field with one cluster and ``--detections``
detections (the cluster and random positions), in wall and CPU (core) seconds.

``--calibrate`` fits the richness relation (log10 R_L* = intercept + slope log10 N + z_slope (z - 0.2), N the
red-sequence members within r200 of `deepcee_d2.redsequence`) on fields made from other seeds than the test
run's, at their true centres, and prints the three config values; put them in DEEPCEE.REDSHIFT. The richness
sets the radius (r200) within which N is measured, so the fit is repeated with its own result until it no longer
changes; the tables printed after it use the fitted values (the calibration set's own scatter). ``--dataset
JSON`` adds the flux cutouts of a data set's split (`dataset_fields`: the evaluator's geometry, offsets 0 and 1)
as a third set; every set weighs the same in the fit. The packaged relation is ``--calibrate --n-clusters 40
--n-blank 1 --dataset DEMO/datasets/synthetic/train.json`` (the demo's train split: clusters disjoint from its
test split).

``--cache DIR`` keeps each field's photometry and truth in DIR (`field_photometry`) and reads them back on the
next run: a change of the richness or of the background is then measured on the same fields in seconds
instead of minutes. Clear DIR when the simulator or the photometry changes.

    python benchmarks/bench_redshift.py                   # 7.5 min on 2 shared cores (BENCHMARKS.md)
    python benchmarks/bench_redshift.py --calibrate --n-clusters 40 --dataset DEMO/datasets/synthetic/train.json
"""
import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from detectron2.config import get_cfg

from deepcee_d2.config import add_deepcee_config
from deepcee_d2.cosmology import angular_size, cosmology_from_cfg
from deepcee_d2.redsequence import (RICHNESS_Z_PIVOT, Photometry, RedSequenceEstimator, RedSequenceSettings,
                                    estimate_redshift_richness, measure_background, measure_photometry,
                                    write_background)
from deepcee_d2.synthetic import ClusterSpec
from deepcee_d2.synthetic.field import make_field

CENTRE = SkyCoord(150.0 * u.deg, 2.0 * u.deg)
SETS = {"demo (0.1 < z < 0.2, >= 20 members)": ((0.1, 0.2), 20),
        "wide (0.05 < z < 0.35)": ((0.05, 0.35), 0)}
OUTLIER = 0.05
OFFSET = 12 * u.kpc
_CALIBRATION_SEED = 10_000  # calibration fields are made from seeds this far from the test fields'
_BACKGROUND_SEED = 20_000  # and the packaged background's blank fields from these


def sigma_nmad(dz):
    return float(1.4826 * np.median(np.abs(dz - np.median(dz))))


def field_photometry(name, size, seed, clusters, settings, cosmology, cache=None):
    """Photometry and cluster truth (a dict, None without a cluster) of one synthetic field, and the seconds
    its photometry took (None when it came from ``cache``).

    With ``cache`` (a folder) the photometry and truth are kept there as ``{name}-{size}px-{seed}.ecsv`` and
    read back on the next run, so that a change of the estimator is measured on the same fields in seconds.
    The key holds what the field is made of only as ``name``: clear the folder when anything else changes
    (the simulator, the photometry settings).
    """
    path = Path(cache) / f"{name}-{size}px-{seed}.ecsv" if cache else None
    if path is not None and path.is_file():
        table = Table.read(path, format="ascii.ecsv")
        wcs = WCS(fits.Header.fromstring(table.meta.pop("wcs")))
        shape, truth = tuple(table.meta.pop("shape")), json.loads(table.meta.pop("truth"))
        return Photometry(table, wcs, shape), truth, None
    field = make_field(CENTRE, size, size, clusters=clusters, seed=seed, name=f"b{seed}", cosmology=cosmology)
    start = time.perf_counter()
    photometry = measure_photometry(field.images, field.wcs, settings, source=field.name)
    seconds = time.perf_counter() - start
    truth = ({key: (value.item() if hasattr(value, "item") else value) for key, value in
              zip(field.clusters.colnames, field.clusters[0])} if len(field.clusters) else None)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        table = photometry.sources.copy()
        table.meta.update(wcs=photometry.wcs.to_header_string(), shape=list(photometry.shape),
                          truth=json.dumps(truth))
        table.write(path, format="ascii.ecsv", overwrite=True)
    return photometry, truth, seconds


def dataset_fields(json_file, settings, cosmology, cache=None, offsets=(0, 1), seed=0):
    """The flux cutouts of a Deep-CEE data set's images as the evaluator remakes them
    (`deepcee_d2.evaluation.redshifts._flux_cutout`), one field per image with one annotated cluster, its
    photometry cached as ``dataset-{split}-{image id}.ecsv`` in ``cache``: the geometry the evaluator and the
    survey see (cutouts of the data set's size, the cluster anywhere within its offsets).

    Takes the images whose offset index (the ``_k`` of ``{cluster}_{k}`` in the file name) is in ``offsets``.
    Each field's centres are the annotated position ("true centre") and one 12 proper kpc off ("offset 12 kpc"),
    as in `make_set`.
    """
    from deepcee_d2.data.register import load_deepcee_json
    from deepcee_d2.evaluation.redshifts import _flux_cutout

    records = load_deepcee_json(json_file, Path(json_file).parent, "calibration")
    rng = np.random.default_rng(seed)
    fields, sources = [], {}
    for record in records:
        if int(Path(record["file_name"]).stem.rsplit("_", 1)[1]) not in offsets or len(record["annotations"]) != 1:
            continue
        annotation = record["annotations"][0]
        path = Path(cache) / f"dataset-{Path(json_file).stem}-{record['image_id']}.ecsv" if cache else None
        if path is not None and path.is_file():
            table = Table.read(path, format="ascii.ecsv")
            photometry = Photometry(table, WCS(fits.Header.fromstring(table.meta.pop("wcs"))),
                                    tuple(table.meta.pop("shape")))
        else:
            cutout = _flux_cutout(record, "", "calibration", sources)
            photometry = measure_photometry(cutout.images, cutout.wcs, settings, record["file_name"],
                                            cutout.covered)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                table = photometry.sources.copy()
                table.meta.update(wcs=photometry.wcs.to_header_string(), shape=list(photometry.shape))
                table.write(path, format="ascii.ecsv", overwrite=True)
        truth = {key: annotation[key] for key in ("cluster_id", "ra", "dec", "z", "richness", "n_members")}
        true_centre = SkyCoord(truth["ra"] * u.deg, truth["dec"] * u.deg)
        angle = rng.uniform(0, 2 * np.pi)
        offset = angular_size(OFFSET, truth["z"], cosmology)
        fields.append({"photometry": photometry, "truth": truth, "centres": {
            "true centre": true_centre,
            "offset 12 kpc": true_centre.spherical_offsets_by(offset * np.sin(angle), offset * np.cos(angle))}})
    return fields


def make_set(z_range, min_members, n, size, seed, settings, cosmology, rng, cache=None):
    """The photometry, truth and the two centres (true, 12 kpc off) of ``n`` fields with one cluster each, and
    the mean seconds of their photometry (NaN when all came from ``cache``)."""
    fields, photometry_times = [], []
    for k in range(n):
        photometry, truth, seconds = field_photometry(
            f"cluster-{z_range[0]:g}-{z_range[1]:g}-{min_members}", size, seed + k,
            ClusterSpec(z_range=z_range, min_members=min_members), settings, cosmology, cache)
        if seconds is not None:
            photometry_times.append(seconds)
        true_centre = SkyCoord(truth["ra"] * u.deg, truth["dec"] * u.deg)
        angle = rng.uniform(0, 2 * np.pi)
        offset = angular_size(OFFSET, truth["z"], cosmology)
        offset_centre = true_centre.spherical_offsets_by(offset * np.sin(angle), offset * np.cos(angle))
        fields.append({"photometry": photometry, "truth": truth,
                       "centres": {"true centre": true_centre, "offset 12 kpc": offset_centre}})
    return fields, np.mean(photometry_times) if photometry_times else np.nan


def estimate_set(fields, background, settings, cosmology, centres=("true centre", "offset 12 kpc")):
    rows = []
    for field in fields:
        truth = field["truth"]
        for label in centres:
            start = time.perf_counter()
            estimate = estimate_redshift_richness(field["photometry"], field["centres"][label], cosmology,
                                                  background, settings)
            rows.append({"centre": label, "z": float(truth["z"]), "richness": float(truth["richness"]),
                         "n_members": int(truth["n_members"]), "estimate": estimate,
                         "seconds": time.perf_counter() - start})
    return rows


def summarise(name, rows, photometry_seconds, size):
    print(f"\n{name}: photometry {photometry_seconds:.2f} s per {size} px field (nan: read from --cache)")
    print("| centre | clusters | sigma_NMAD | outliers | median dz/(1+z) | |dz| < z_err | peak found "
          "| richness scatter (dex, >= 20 members) | s per estimate |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for centre in ("true centre", "offset 12 kpc"):
        chosen = [row for row in rows if row["centre"] == centre]
        z = np.array([row["z"] for row in chosen])
        z_est = np.array([row["estimate"].z for row in chosen])
        z_err = np.array([row["estimate"].z_err for row in chosen])
        dz = (z_est - z) / (1 + z)
        rich = np.array([(row["richness"], row["estimate"].richness) for row in chosen
                         if row["n_members"] >= 20 and row["estimate"].richness > 0])
        scatter = float(np.std(np.log10(rich[:, 1] / rich[:, 0]))) if len(rich) > 1 else float("nan")
        print(f"| {centre} | {len(chosen)} | {sigma_nmad(dz):.4f} | {np.mean(np.abs(dz) > OUTLIER):.1%} "
              f"| {np.median(dz):+.4f} | {np.mean(np.abs(z_est - z) < z_err):.0%} "
              f"| {np.mean([row['estimate'].has_peak for row in chosen]):.0%} | {scatter:.3f} ({len(rich)}) "
              f"| {np.mean([row['seconds'] for row in chosen]):.3f} |")


def calibrate(sets, background, settings, cosmology, rounds=12, tolerance=5e-4):
    """Fit log10 R_L* = intercept + slope log10 L + z_slope (z - pivot) at the true centres, each set of fields
    (``sets``: name -> fields) weighing the same in the fit (the data set's cutouts outnumber the 1200 px fields).
    The richness sets the aperture (r200) in which L is measured, so the fit is repeated with its own result
    until it stops changing."""
    for round_ in range(1, rounds + 1):
        x, y, z, weight = [], [], [], []
        for fields in sets.values():
            rows = [row for row in estimate_set(fields, background, settings, cosmology, centres=("true centre",))
                    if row["estimate"].members > 0]
            x += [np.log10(row["estimate"].members) for row in rows]
            y += [np.log10(row["richness"]) for row in rows]
            z += [row["estimate"].z - RICHNESS_Z_PIVOT for row in rows]
            weight += [1.0 / len(rows)] * len(rows)
        x, y, z, weight = (np.asarray(v) for v in (x, y, z, weight))
        design = np.stack([np.ones(len(x)), x, z], axis=1)
        root = np.sqrt(weight)
        intercept, slope, z_slope = np.linalg.lstsq(design * root[:, None], y * root, rcond=None)[0]
        residual = y - design @ (intercept, slope, z_slope)
        scatter = np.sqrt(np.average((residual - np.average(residual, weights=weight)) ** 2, weights=weight))
        converged = (abs(intercept - settings.richness_intercept) < tolerance
                     and abs(slope - settings.richness_slope) < tolerance
                     and abs(z_slope - settings.richness_z_slope) < tolerance)
        settings = replace(settings, richness_intercept=float(intercept), richness_slope=float(slope),
                           richness_z_slope=float(z_slope))
        if converged:
            break
    print(f"\ncalibration on {', '.join(f'{len(fields)} {name}' for name, fields in sets.items())} ({round_} rounds"
          f"{'' if converged else ', not converged'}): DEEPCEE.REDSHIFT.RICHNESS_INTERCEPT = {intercept:.3f}, "
          f"RICHNESS_SLOPE = {slope:.3f}, RICHNESS_Z_SLOPE = {z_slope:.3f} (scatter {scatter:.3f} dex, sets "
          "weighted equally)")
    return settings


def tile_cost(cfg, n_detections, seed):
    """Wall and CPU seconds of `RedSequenceEstimator.estimate` on one survey-sized tile with a cluster."""
    estimator = RedSequenceEstimator.from_cfg(cfg)
    size = cfg.DEEPCEE.COLOUR.CUTOUT_SIZE
    field = make_field(CENTRE, size, size, clusters=ClusterSpec(z_range=(0.1, 0.2), min_members=20), seed=seed,
                       name="tile", cosmology=estimator.cosmology)
    truth = field.clusters[0]
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(0.1 * size, 0.9 * size, (2, n_detections - 1))
    others = field.wcs.pixel_to_world(x, y)
    ra = np.concatenate([[truth["ra"]], others.ra.deg])
    dec = np.concatenate([[truth["dec"]], others.dec.deg])
    rows = []
    for count in (1, 1, n_detections):  # the first call also builds the templates behind L* (once per worker)
        wall, cpu = time.perf_counter(), time.process_time()
        table = estimator.estimate(field.images, field.wcs, ra[:count], dec[:count], "tile")
        rows.append((count, time.perf_counter() - wall, time.process_time() - cpu))
    print(f"{size} px tile, cluster z = {truth['z']:.3f} (R_L* {truth['richness']:.0f}): estimated z = "
          f"{table['z_est'][0]:.3f} +- {table['z_err'][0]:.3f}, richness {table['richness'][0]:.0f} "
          f"(significance {table['rs_significance'][0]:.1f})")
    for label, (count, wall, cpu) in zip(("first call", "again", "again"), rows):
        print(f"{label}, {count} detections: {wall:.1f} s wall, {cpu:.1f} s CPU")
    _, (_, wall_1, cpu_1), (_, wall_n, cpu_n) = rows
    print(f"per extra detection: {(wall_n - wall_1) / (n_detections - 1):.2f} s wall, "
          f"{(cpu_n - cpu_1) / (n_detections - 1):.2f} s CPU")


def main(args):
    cfg = add_deepcee_config(get_cfg())
    cfg.merge_from_list(args.opts)
    if args.tile_cost:
        return tile_cost(cfg, args.detections, args.seed + 30_000)
    settings = RedSequenceSettings.from_cfg(cfg)
    cosmology = cosmology_from_cfg(cfg)
    seed = args.seed + (_CALIBRATION_SEED if args.calibrate else _BACKGROUND_SEED if args.write_background else 0)
    rng = np.random.default_rng(seed)
    blanks = []
    start = time.perf_counter()
    for k in range(args.n_blank):
        blanks.append(field_photometry("blank", args.size, seed + 5000 + k, None, settings, cosmology,
                                       args.cache)[0])
    measured = measure_background(blanks, cosmology, settings)
    if args.write_background:
        measured.meta["description"] = (f"red-sequence background of the synthetic sky: {args.n_blank} blank "
                                        f"fields of {args.size} px, seeds {seed + 5000}-{seed + 5000 + args.n_blank - 1}"
                                        " (benchmarks/bench_redshift.py --write-background)")
        print(f"{write_background(measured, args.write_background)}: {measured.meta['area']:.1f} in "
              f"{time.perf_counter() - start:.0f} s")
        return
    packaged = not args.measure_background
    background = RedSequenceEstimator.from_cfg(cfg).background if packaged else measured
    print(f"background: {'packaged (DEEPCEE.REDSHIFT.BACKGROUND_FILE)' if packaged else 'the blank fields'}")
    sets = {name: make_set(z_range, min_members, args.n_clusters // 2, args.size, seed + 1000 * (index + 1),
                           settings, cosmology, rng, args.cache)
            for index, (name, (z_range, min_members)) in enumerate(SETS.items())}
    if args.dataset:
        sets["cutouts of " + args.dataset] = (dataset_fields(args.dataset, settings, cosmology, args.cache),
                                              np.nan)
    if args.calibrate:
        settings = calibrate({name: fields for name, (fields, _) in sets.items()}, background, settings,
                             cosmology)
    all_rows = []
    for name, (fields, photometry_seconds) in sets.items():
        rows = estimate_set(fields, background, settings, cosmology)
        summarise(name, rows, photometry_seconds, args.size)
        all_rows += rows
    centre_pixel = (args.size - 1) / 2
    blank_rows = [estimate_redshift_richness(photometry, photometry.wcs.pixel_to_world(centre_pixel, centre_pixel),
                                             cosmology, background, settings) for photometry in blanks]
    print(f"\nblank fields, at their centre: significance "
          f"{', '.join(f'{e.significance:.1f}' for e in blank_rows)}; peak found in "
          f"{np.mean([e.has_peak for e in blank_rows]):.0%}; richness "
          f"{', '.join(f'{e.richness:.1f}' for e in blank_rows)}")
    significance = [row["estimate"].significance for row in all_rows]
    print(f"cluster significance: median {np.median(significance):.1f}, 10th percentile "
          f"{np.percentile(significance, 10):.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-clusters", type=int, default=32, help="clusters in all, half per set (default 32)")
    parser.add_argument("--n-blank", type=int, default=3, help="blank fields for the background (default 3)")
    parser.add_argument("--size", type=int, default=1200, help="field side in pixels (default 1200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-background", metavar="PATH",
                        help="only measure the background on the blank fields and write it to PATH (ECSV)")
    parser.add_argument("--measure-background", action="store_true",
                        help="estimate against the background of the --n-blank fields, not the packaged one")
    parser.add_argument("--tile-cost", action="store_true", help="only time the estimates on one survey tile")
    parser.add_argument("--detections", type=int, default=5, help="detections in the --tile-cost tile (default 5)")
    parser.add_argument("--cache", metavar="DIR",
                        help="keep each field's photometry and truth in DIR and reuse them (field_photometry)")
    parser.add_argument("--dataset", metavar="JSON",
                        help="add the flux cutouts of a data set's split (the evaluator's geometry; a train.json "
                             "for --calibrate) as one more set of fields (dataset_fields, offsets 0 and 1)")
    parser.add_argument("--calibrate", action="store_true",
                        help="use calibration seeds and fit the richness relation")
    parser.add_argument("opts", nargs=argparse.REMAINDER,
                        help="config overrides, KEY VALUE ... (e.g. DEEPCEE.REDSHIFT.APERTURE_CORRECTION True)")
    main(parser.parse_args())

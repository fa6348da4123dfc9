#!/usr/bin/env python
"""Survey inference on real SDSS frames: coverage, resampling and detection cost, workers, DR8 projection.

  PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_survey_real.py [--frames ../shared/data/sdss]
      [--config configs/deepcee_inception_v2_sdss.yaml] [--weights model.pth] [--work /tmp/deepcee_real_bench]
      [--cost-tiles N] [--coverage-only] [--costs-only] [--precisions float32 bfloat16]
      [--clusters-per-deg2 9.5] [KEY VALUE ...]

On every field of ``--frames`` (corrected frames, g, r, i), in one run:
1. the tile plan (`plan_folder_tiles`) and the searched / imaged area of every field (`field_coverage`);
2. per tile, the CPU seconds of making its g, r, i cutout with each resampling method (``remap``, the default,
   and ``reproject``, the reference) from frames already in memory, and the largest pixel difference between
   the two in units of the frame's sky noise (1.4826 x the median absolute deviation of the frame);
3. per tile, the CPU seconds of its network image (colour stretch and binning), of the detector on it (built as
   a survey worker builds it: one torch and one opencv thread, model prepared for inference) at each
   ``--precisions`` value, of the red-sequence z and richness of one detection (the photometry of the
   whole tile, which every tile with a detection kept pays once) and of the source density of a tile without
   detections (the detection step alone, for the crowded-sky mask); the DR8 projection from these per-tile
   costs, for tiles imaged whole (resampling, photometry and density scaled by each tile's imaged share), with
   the photometry paid by the tiles holding a cluster at ``--clusters-per-deg2`` and the density by the others
   (the survey's default), the photometry by all, and neither (``DEEPCEE.REDSHIFT.IN_SURVEY False``);
4. ``find_clusters`` over all tiles with 1 and 2 Dask workers (remap) and once with reproject (2 workers):
   deg^2 searched per core-hour, and whether the reproject catalogue equals the remap one (same candidates
   within 1", scores within 0.01);
5. the projection for the SDSS DR8 footprint (14,555 deg^2) on one 16-core node, from the 2-worker rate per
   core and the tile density of a contiguous survey (`plan_region_tiles`: one tile per (side - overlap)^2,
   no field tiled on its own).

Without ``--weights`` the model has random weights (drawn once, saved, loaded by every worker) with zero RPN
box deltas and the RPN's NMS off, so the box head runs on every proposal of every tile (an upper bound of the
detection cost; its candidates mean nothing, the catalogue comparison then only checks that both paths give
the same numbers).
"""
import argparse
import resource
import shutil
import time
from pathlib import Path

import astropy.units as u
import numpy as np
import torch
from astropy.coordinates import SkyCoord
from astropy.stats import mad_std
from astropy.table import Table
from scipy.ndimage import distance_transform_edt

from bench_detector import zero_rpn_box_deltas  # this folder is on the path when run as a script
from deepcee_d2.config import load_config
from deepcee_d2.data.colour import ColourSettings, make_network_image, survey_tile_sizes
from deepcee_d2.data.frames import LocalFITSSource, read_image
from deepcee_d2.data.resample import Resampling
from deepcee_d2.engine.predictor import DetectorFactory
from deepcee_d2.redsequence import RedSequenceEstimator
from deepcee_d2.survey.run import ImagingSpec, find_clusters
from deepcee_d2.survey.tiling import field_coverage, plan_folder_tiles, tile_geometry

SDSS_DR8_DEG2 = 14555.0
NODE_CORES = 16
REPO = Path(__file__).resolve().parents[1]


def save_random_weights(cfg, path):
    """One random-weight model of ``cfg`` with zero RPN deltas, saved as a detectron2 checkpoint."""
    from detectron2.modeling import build_model

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save({"model": zero_rpn_box_deltas(build_model(cfg)).state_dict()}, path)
    return path


def cpu_seconds(call):
    start = time.process_time()
    result = call()
    return time.process_time() - start, result


def per_tile_costs(cfg, frames_root, tiles, precisions):
    """CPU seconds per tile of remap, reproject, the network image, detection at each of ``precisions`` and
    the red-sequence estimate, the largest remap - reproject difference in sigma of the frame noise, and how
    far (px) that pixel lies from the imaging's edge."""
    import cv2

    colour = cfg.DEEPCEE.COLOUR
    (size, network_size), scale = survey_tile_sizes(cfg), colour.PIXEL_SCALE * u.arcsec
    redshift = RedSequenceEstimator.from_cfg(cfg)
    sources = {method: LocalFITSSource(frames_root, Resampling(method, cfg.DEEPCEE.IMAGING.RESAMPLE_TOLERANCE_PX))
               for method in ("remap", "reproject")}
    frames = sources["remap"].frames()
    noise = {frame.path: mad_std(read_image(frame.path)[0], ignore_nan=True) for frame in frames}
    for tile in tiles:  # every frame read and decompressed before the timing (a worker keeps the last 12 frames)
        sources["remap"].cutout(tile.centre, size, scale, partial=True)
    detectors = {}
    for precision in precisions:  # as a survey worker builds it: one torch and one opencv thread
        precision_cfg = cfg.clone()
        precision_cfg.defrost()
        precision_cfg.MODEL.INCEPTION_V2.PRECISION = precision
        detectors[precision] = DetectorFactory(precision_cfg)()
    rows = []
    for tile in tiles:
        seconds, cutouts = {}, {}
        for method, source in sources.items():
            seconds[method], cutouts[method] = cpu_seconds(lambda: source.cutout(tile.centre, size, scale, partial=True))
        covered = cutouts["remap"].covered
        if covered is None:
            covered = np.ones(next(iter(cutouts["remap"].images.values())).shape, bool)
        # Distance of every imaged pixel from the nearest pixel without imaging or the tile's border.
        from_edge = distance_transform_edt(np.pad(covered, 1))[1:-1, 1:-1]
        worst, worst_edge = 0.0, np.nan
        for band in cutouts["remap"].images:
            sigma = min(noise[f.path] for f in frames if f.band == band and str(f.path) in cutouts["remap"].source)
            difference = np.where(covered, np.abs(cutouts["remap"].images[band] - cutouts["reproject"].images[band]), 0)
            where = np.unravel_index(np.argmax(difference), difference.shape)
            if difference[where] / sigma > worst:
                worst, worst_edge = float(difference[where]) / sigma, float(from_edge[where])
        seconds["network_image"], (rgb, _) = cpu_seconds(lambda: make_network_image(
            cutouts["remap"].images, cutouts["remap"].wcs, network_size, ColourSettings.from_cfg(cfg)))
        for precision, detect in detectors.items():
            seconds[f"detect_{precision}"], _ = cpu_seconds(lambda: detect(rgb))
        centre = tile.centre
        seconds["redshift"], _ = cpu_seconds(lambda: redshift.estimate(
            cutouts["remap"].images, cutouts["remap"].wcs, [centre.ra.deg], [centre.dec.deg], tile.tile_id,
            cutouts["remap"].covered))
        seconds["density"], _ = cpu_seconds(lambda: redshift.source_density(
            cutouts["remap"].images, cutouts["remap"].wcs, tile.tile_id, cutouts["remap"].covered))
        rows.append({"tile": tile.tile_id, "remap_s": seconds["remap"], "reproject_s": seconds["reproject"],
                     "network_image_s": seconds["network_image"],
                     **{f"detect_{p}_s": seconds[f"detect_{p}"] for p in precisions},
                     "redshift_s": seconds["redshift"], "density_s": seconds["density"], "max_diff_sigma": worst, "max_diff_from_edge_px": worst_edge,
                     "covered": cutouts["remap"].covered_fraction, "opencv_threads": cv2.getNumThreads()})
    return Table(rows=rows)


def same_catalogue(one, other):
    """Whether two candidate catalogues hold the same candidates within 1" with scores within 0.01."""
    if len(one) != len(other):
        return False, f"{len(one)} vs {len(other)} candidates"
    if len(one) == 0:
        return True, "both empty"
    a = SkyCoord(one["ra"], one["dec"], unit=u.deg)
    b = SkyCoord(other["ra"], other["dec"], unit=u.deg)
    index, separation, _ = a.match_to_catalog_sky(b)
    score = np.abs(np.asarray(one["score"]) - np.asarray(other["score"])[index])
    ok = len(set(index)) == len(one) and separation.max() < 1 * u.arcsec and score.max() < 0.01
    return ok, f"{len(one)} candidates, largest offset {separation.max().to(u.arcsec):.3f}, score difference {score.max():.4f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=Path, default=REPO.parent / "shared" / "data" / "sdss")
    parser.add_argument("--config", default=str(REPO / "configs" / "deepcee_inception_v2_sdss.yaml"))
    parser.add_argument("--weights", default="")
    parser.add_argument("--work", type=Path, default=Path("/tmp/deepcee_real_bench"))
    parser.add_argument("--cost-tiles", type=int, default=0, help="per-tile costs on the first N tiles (0: all)")
    parser.add_argument("--coverage-only", action="store_true", help="stop after the tile plan and the coverage")
    parser.add_argument("--costs-only", action="store_true", help="stop after the per-tile costs")
    parser.add_argument("--precisions", nargs="+", default=["float32", "bfloat16"],
                        help="MODEL.INCEPTION_V2.PRECISION values whose detection is timed per tile")
    parser.add_argument("--clusters-per-deg2", type=float, default=9.5,
                        help="clusters per deg^2 the projection assumes: a tile holding one keeps a detection and "
                             "pays the red-sequence photometry (9.5: WHL12's 132,684 clusters over the DR8 "
                             "footprint); the projection is also printed with every tile paying it")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config KEY VALUE pairs")
    args = parser.parse_args()

    opts = ["MODEL.DEVICE", "cpu", "DEEPCEE.SURVEY.SCORE_THRESHOLD", "0.5"] + args.opts
    if not args.weights:
        opts += ["MODEL.RPN.NMS_THRESH", 1.0]
    cfg = load_config(args.config, opts)
    cfg.MODEL.WEIGHTS = args.weights or ("" if args.coverage_only else
                                          str(save_random_weights(cfg, args.work / "random_weights.pth")))
    cfg.freeze()
    side, overlap = tile_geometry(cfg)
    imaging = ImagingSpec.from_cfg(cfg, "fits", args.frames)
    start = time.perf_counter()
    tiles, problems = plan_folder_tiles(imaging.source(), side, overlap)
    plan_s = time.perf_counter() - start
    frames = imaging.source().frames()
    coverage = field_coverage(frames, args.frames, tiles, side)
    imaged, searched = (float(np.sum(coverage[c])) for c in ("imaged_deg2", "searched_deg2"))
    print(f"{args.frames}: {len(coverage)} fields, {len(tiles)} tiles of {side:.0f} overlapping by {overlap:.1f} "
          f"(planned in {plan_s:.1f} s, headers included); problems: {problems or 'none'}")
    print(f"config {args.config}, weights {cfg.MODEL.WEIGHTS}")
    print(f"imaged {imaged:.4f} deg^2, searched {searched:.4f} deg^2: searched / imaged = {searched / imaged:.3f}")
    for row in coverage:
        print(f"  {row['field']}: {row['searched_fraction']:.3f} of {row['imaged_deg2']:.4f} deg^2")

    if args.coverage_only:
        return
    costs = per_tile_costs(cfg, args.frames, tiles[:args.cost_tiles or None], args.precisions)
    median = {name: float(np.median(costs[name])) for name in costs.colnames if name.endswith("_s")}
    worst = int(np.argmax(costs["max_diff_sigma"]))
    print(f"\nper tile (median of {len(costs)}, CPU seconds on one core; opencv threads {costs['opencv_threads'][0]}): "
          f"remap {median['remap_s']:.2f}, reproject {median['reproject_s']:.2f} "
          f"({np.median(costs['reproject_s'] / costs['remap_s']):.0f}x), network image {median['network_image_s']:.2f}, "
          + ", ".join(f"detection {p} {median[f'detect_{p}_s']:.2f}" for p in args.precisions)
          + f", red-sequence z and richness {median['redshift_s']:.2f}, source density alone {median['density_s']:.2f}; "
          f"largest remap - reproject difference {costs['max_diff_sigma'][worst]:.3f} sigma of the frame noise, "
          f"{costs['max_diff_from_edge_px'][worst]:.0f} px from the imaging's edge; tiles "
          f"{np.mean(costs['covered']):.2f} imaged on average; peak memory of this process "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    # A contiguous survey's tiles are imaged whole: the costs that follow the imaged pixels (resampling, the
    # photometry) are scaled up from these lone fields' partly padded tiles, tile by tile.
    full = {name: float(np.median(costs[name] / costs["covered"])) for name in ("remap_s", "redshift_s", "density_s")}
    region_tiles = SDSS_DR8_DEG2 / ((side - overlap).to_value(u.deg) ** 2)
    share = 1 - np.exp(-args.clusters_per_deg2 * side.to_value(u.deg) ** 2)
    print(f"DR8 from the per-tile costs: {region_tiles:,.0f} contiguous tiles ({(side - overlap).to_value(u.arcsec):.0f}\" "
          f"apart) on {NODE_CORES} such cores. Per tile: remap of a whole imaged tile {full['remap_s']:.2f} + network "
          f"image + detection + the photometry of a whole tile ({full['redshift_s']:.2f}) on the share of tiles "
          f"holding a cluster ({share:.2f} at {args.clusters_per_deg2:g} clusters per deg^2) and the source density "
          f"alone ({full['density_s']:.2f}) on the others (the survey's default), the photometry on every tile, or "
          f"neither (DEEPCEE.REDSHIFT.IN_SURVEY False: no z, richness or mask):")
    for precision in args.precisions:
        for paid, density in ((0.0, 0.0), (share, 1 - share), (1.0, 0.0)):
            per_tile = (full["remap_s"] + median["network_image_s"] + median[f"detect_{precision}_s"]
                        + paid * full["redshift_s"] + density * full["density_s"])
            print(f"  {precision}, photometry on {paid:.2f} of the tiles, density alone on {density:.2f}: "
                  f"{per_tile:.2f} core-seconds per tile -> {region_tiles * per_tile / NODE_CORES / 3600:.1f} h")
    if args.costs_only:
        return

    print("\n| run | wall (s) | tiles / s | deg^2 searched / core-hour |\n| --- | --- | --- | --- |")
    catalogues, rates, core_s = {}, {}, {}
    for name, workers, method in [("remap, 1 worker", 1, "remap"), ("remap, 2 workers", 2, "remap"),
                                  ("reproject, 2 workers", 2, "reproject")]:
        run_cfg = cfg.clone()
        run_cfg.defrost()
        run_cfg.DEEPCEE.IMAGING.RESAMPLE_METHOD = method
        run_cfg.freeze()
        output = args.work / name.replace(", ", "_").replace(" ", "")
        shutil.rmtree(output, ignore_errors=True)
        start = time.perf_counter()
        result = find_clusters(run_cfg, tiles, ImagingSpec.from_cfg(run_cfg, "fits", args.frames), output,
                               n_workers=workers, gallery_size=0, progress=False)
        wall = time.perf_counter() - start
        assert len(result.failures) == 0, result.failures
        rates[name] = result.catalogue.meta["AREADEG2"] / (wall * workers / 3600)
        core_s[name] = wall * workers / len(tiles)
        catalogues[name] = result.catalogue
        print(f"| {name} | {wall:.1f} | {len(tiles) / wall:.3f} | {rates[name]:.3f} |", flush=True)
    ok, detail = same_catalogue(catalogues["remap, 2 workers"], catalogues["reproject, 2 workers"])
    print(f"\nremap and reproject catalogues the same (1\", 0.01): {ok} ({detail})")

    region_tiles = SDSS_DR8_DEG2 / ((side - overlap).to_value(u.deg) ** 2)
    hours = region_tiles * core_s["remap, 2 workers"] / NODE_CORES / 3600
    print(f"DR8: {region_tiles:,.0f} contiguous tiles ({(side - overlap).to_value(u.arcsec):.0f}\" apart) at "
          f"{core_s['remap, 2 workers']:.1f} core-seconds each (this run's 2-worker wall x 2 / tiles) -> {hours:.1f} h "
          f"on {NODE_CORES} cores")


if __name__ == "__main__":
    main()

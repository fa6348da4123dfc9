#!/usr/bin/env python
"""Core-seconds to resample one 2000 px survey tile (g, r, i) from real SDSS frames: reproject vs opencv remap
(BENCHMARKS.md, "Resampling frames onto tiles"). Single-threaded (opencv, OpenMP, MKL, OpenBLAS), so CPU time is
core-seconds.

    .venv/bin/python benchmarks/bench_resample.py [--frames path/to/shared/data/sdss] [--fields 005194-2-0540 ...]

The tile is the paper's: 2000 px at 0.396", north-up, centred on the field's r frame; SDSS frames are 2048 x 1489
px with rows at ~90 degrees from north, so about three quarters of the tile lies on the frame. For each band it
prints the CPU time of ``reproject_interp`` (one call, as ``reproject`` alone), of ``resample_to_grid`` with
``"reproject"`` (reproject_and_coadd, the path cutouts use) and with ``"remap"`` (best of 3), the largest
|remap - reproject| (both in flux per tile pixel) over the pixels both cover, in units of the frame's sky noise
(astropy mad_std of the frame), pixels whose coverage differs, the mapping error found by the run-time check and
measured against astropy's transform on every 5th pixel of each axis, and the mesh spacing.
"""
import os

for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_variable] = "1"  # before numpy is imported: one core per measurement

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from astropy.io import fits  # noqa: E402
from astropy.stats import mad_std  # noqa: E402
from astropy.wcs.utils import pixel_to_pixel  # noqa: E402
from reproject import reproject_interp  # noqa: E402

from deepcee_d2.sky import cutout_grid  # noqa: E402
from deepcee_d2.sky import celestial_wcs  # noqa: E402
from deepcee_d2.data.resample import pixel_map, resample_to_grid  # noqa: E402

TILE_PX = 2000
BANDS = ("g", "r", "i")
REMAP_REPEATS = 3


def cpu_seconds(call, repeats=1):
    """Result of ``call()`` and its least CPU time over ``repeats`` calls (process time: core-seconds)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        result = call()
        best = min(best, time.process_time() - start)
    return result, best


def read_frame(path):
    with fits.open(path) as hdul:
        return np.asarray(hdul[0].data, dtype=np.float32), celestial_wcs(hdul[0].header, str(path))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "sdss")
    parser.add_argument("--fields", nargs="+", default=["005194-2-0540", "002583-2-0136"],
                        help="run-camcol-field of frame-{g,r,i}-<field>.fits.bz2 (default: the most rotated "
                             "shared field and the crowded M2 field)")
    parser.add_argument("--tolerance-px", type=float, default=0.01, help="largest mapping error (frame px)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # FITSFixedWarning on the SDSS headers' RADECSYS
    cv2.setNumThreads(1)
    tolerance = args.tolerance_px
    print(f"opencv {cv2.__version__}, tolerance {tolerance} px, {TILE_PX} px tile, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("| field | band | covered | reproject_interp (s) | reproject_and_coadd (s) | remap (s) | speed-up "
          "| max abs diff / sigma | mapping error: checked / measured (px) | mesh spacing (px) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    totals = np.zeros(3)
    for field in args.fields:
        frames = {band: read_frame(args.frames / f"frame-{band}-{field}.fits.bz2") for band in BANDS}
        data_r, wcs_r = frames["r"]
        grid = cutout_grid(wcs_r.pixel_to_world((data_r.shape[1] - 1) / 2, (data_r.shape[0] - 1) / 2), TILE_PX)
        for band, (data, wcs) in frames.items():
            _, t_interp = cpu_seconds(lambda: reproject_interp((data, wcs), grid, shape_out=(TILE_PX, TILE_PX)))
            (reference, reference_covered), t_coadd = cpu_seconds(
                lambda: resample_to_grid([(data, wcs)], grid, "reproject", tolerance, require_coverage=False))
            (image, covered), t_remap = cpu_seconds(
                lambda: resample_to_grid([(data, wcs)], grid, "remap", tolerance, require_coverage=False),
                REMAP_REPEATS)
            if not np.array_equal(covered, reference_covered):
                print(f"  {field} {band}: coverage differs at {(covered != reference_covered).sum()} pixels")
            both = covered & reference_covered
            max_diff = np.abs(image[both] - reference[both]).max() / mad_std(data)
            mapping = pixel_map(grid, wcs, tolerance)
            rows, columns = np.mgrid[0:TILE_PX:5, 0:TILE_PX:5]
            x, y = mapping.block(slice(None, None, None), slice(None, None, None))
            exact_x, exact_y = pixel_to_pixel(grid, wcs, columns, rows)
            measured = np.hypot(x[::5, ::5] - exact_x, y[::5, ::5] - exact_y).max()
            totals += (t_interp, t_coadd, t_remap)
            print(f"| {field} | {band} | {covered.mean():.1%} | {t_interp:.2f} | {t_coadd:.2f} | {t_remap:.3f} "
                  f"| {t_interp / t_remap:.0f}x | {max_diff:.3f} | {mapping.max_error_px:.1e} / {measured:.1e} "
                  f"| {mapping.spacing_px:.1f} |")
    tiles = len(args.fields)
    print(f"per tile (g + r + i), mean of {tiles}: reproject_interp {totals[0] / tiles:.2f}, reproject_and_coadd "
          f"{totals[1] / tiles:.2f}, remap {totals[2] / tiles:.3f} core-seconds")


if __name__ == "__main__":
    main()

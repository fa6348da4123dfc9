#!/usr/bin/env python
"""Red-sequence z and richness along the survey's path, on the demo's held-out region, at the true positions.

Writes (or reuses) the region the demo surveys (`deepcee_d2.demo.make_survey_sky`, `DemoPlan` defaults) under
WORK, cuts it into the demo config's tiles (`plan_folder_tiles`), makes each tile's flux cutout as the survey
does (`get_cutout`) and runs `RedSequenceEstimator.estimate` at every true BCG inside the tile: what
`deepcee_d2.survey.run.process_tile` does, with the detector replaced by the truth. Prints every
(tile, cluster) estimate, sigma_NMAD of dz / (1 + z), the outlier fraction, the richness scatter (dex), and the
CPU seconds per tile holding a cluster.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/redshift_survey_path.py /tmp/demo_region
"""
import argparse
import time
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table

from deepcee_d2.data.cache import get_cutout
from deepcee_d2.data.frames import covered_at
from deepcee_d2.demo import DemoPlan, demo_config, make_survey_sky
from deepcee_d2.redsequence import RedSequenceEstimator
from deepcee_d2.survey.run import ImagingSpec
from deepcee_d2.survey.tiling import plan_folder_tiles, tile_geometry


def main(work):
    plan = DemoPlan(work_dir=Path(work), workers=1, progress=False)
    cfg = demo_config(plan)
    start = time.perf_counter()
    truth = make_survey_sky(plan)
    print(f"sky: {time.perf_counter() - start:.0f} s; {len(truth)} clusters")
    estimator = RedSequenceEstimator.from_cfg(cfg)
    imaging = ImagingSpec("fits", str(Path(work) / "survey_sky"))
    side, overlap = tile_geometry(cfg)
    tiles, _ = plan_folder_tiles(imaging.source(), side, overlap)
    coords = SkyCoord(truth["bcg_ra"], truth["bcg_dec"], unit=u.deg)
    size = cfg.DEEPCEE.COLOUR.CUTOUT_SIZE
    rows, cpu = [], []
    for tile in tiles:
        # Tiles reach past the imaging: as process_tile, a partial cutout, and only BCGs on imaged pixels.
        cutout = get_cutout(imaging.source(), tile.centre, size, cfg.DEEPCEE.COLOUR.PIXEL_SCALE * u.arcsec,
                            partial=True)
        x, y = (np.asarray(v) for v in cutout.wcs.world_to_pixel(coords))
        inside = (x > 0) & (x < size - 1) & (y > 0) & (y < size - 1)
        if cutout.covered is not None:
            inside[inside] = covered_at(cutout.covered, x[inside], y[inside])
        if not inside.any():
            continue
        start = time.process_time()
        table = estimator.estimate(cutout.images, cutout.wcs, coords.ra.deg[inside], coords.dec.deg[inside],
                                   tile.tile_id, cutout.covered)
        cpu.append(time.process_time() - start)
        for row, k in zip(table, np.flatnonzero(inside)):
            rows.append((tile.tile_id, truth["id"][k], truth["z"][k], truth["richness"][k], row["z_est"],
                         row["z_err"], row["richness"], row["rs_significance"], row["rs_peak"]))
    result = Table(rows=rows, names=("tile", "id", "z", "richness", "z_est", "z_err", "richness_est",
                                     "significance", "rs_peak"))
    for name in ("z", "z_est", "z_err"):
        result[name].format = ".3f"
    for name in ("richness", "richness_est", "significance"):
        result[name].format = ".1f"
    result.pprint(max_lines=-1, max_width=-1)
    peak = result[result["rs_peak"]]
    dz = (peak["z_est"] - peak["z"]) / (1 + peak["z"])
    print(f"{len(tiles)} tiles of {size} px; CPU per tile with a cluster ({len(cpu)}): {np.mean(cpu):.2f} s")
    print(f"{len(result)} (tile, cluster) estimates, {len(peak)} with a peak: sigma_NMAD "
          f"{1.4826 * np.median(np.abs(dz - np.median(dz))):.4f}, median dz/(1+z) {np.median(dz):+.4f}, outliers "
          f"{np.mean(np.abs(dz) > 0.05):.1%}, richness scatter "
          f"{np.std(np.log10(peak['richness_est'] / peak['richness'])):.3f} dex")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("work", help="folder for the region (reused when it is there)")
    main(parser.parse_args().work)

#!/usr/bin/env python
"""Time one network image from real SDSS frames: g, r, i cutout (reprojection onto the common grid) and
colour image + PNG, at cutout sizes that fit in one SDSS field (BENCHMARKS.md, "Data sets").

    .venv/bin/python benchmarks/data_image_speed.py [path/to/shared/data/sdss]
"""
import io
import sys
import time
import warnings
from pathlib import Path

import astropy.units as u
from astropy.coordinates import SkyCoord
from PIL import Image

from deepcee_d2.config import load_config
from deepcee_d2.data.colour import ColourSettings, make_network_image
from deepcee_d2.data.frames import LocalFITSSource
from deepcee_d2.data.resample import Resampling

warnings.simplefilter("ignore")
FRAMES = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "data" / "sdss"
CENTRE = SkyCoord(323.34 * u.deg, -0.73 * u.deg)
REPEATS = 3

source = LocalFITSSource(FRAMES, Resampling.from_cfg(load_config()))
start = time.perf_counter()
source.cutout(CENTRE, 100)  # reads the headers and decompresses the three .bz2 frames once
print(f"first cutout (reading 3 bz2 frames): {time.perf_counter() - start:.2f} s")
COLOUR = ColourSettings.from_cfg(load_config())
for cutout_size, network_size in [(1000, 500), (1400, 700)]:
    cut, colour, sizes = [], [], []
    for _ in range(REPEATS):
        start = time.perf_counter()
        cutout = source.cutout(CENTRE, cutout_size)
        middle = time.perf_counter()
        rgb, wcs = make_network_image(cutout.images, cutout.wcs, network_size, COLOUR)
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, format="PNG")
        end = time.perf_counter()
        cut.append(middle - start)
        colour.append(end - middle)
        sizes.append(buffer.tell())
    print(f"{cutout_size} px -> {network_size} px: cutout {min(cut):.2f} s, colour + PNG {min(colour):.2f} s "
          f"(best of {REPEATS}), PNG {sizes[0] / 1024:.0f} KiB")

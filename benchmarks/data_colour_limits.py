#!/usr/bin/env python
"""Measure what the colour limits DEEPCEE.COLOUR.LOWER/UPPER do to real SDSS frames (BENCHMARKS.md, "Data sets").

For each band of the shared SDSS frames (run 2583, camcol 2, field 136): the pixel noise (MAD of neighbouring
pixel differences / sqrt 2, insensitive to sources and sky gradients), the sigma-clipped sky level, the
peak-to-total flux ratio of bright unsaturated point sources (peak / flux within 8 px), and for candidate
upper limits: the fraction of local maxima above 10 sigma that saturate, the magnitude (zero point 22.5)
brighter than which a point source saturates, and the sqrt-stretch level of 1 sigma noise.

    .venv/bin/python benchmarks/data_colour_limits.py [path/to/shared/data/sdss]
"""
import sys
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.stats import mad_std, sigma_clipped_stats
from scipy import ndimage

FRAMES = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "data" / "sdss"
APERTURE_RADIUS = 8  # px: the flux of a point source within 3.2"
UPPERS = [1, 2, 5, 10, 20, 50]

for band in "gri":
    image = fits.getdata(FRAMES / f"frame-{band}-002583-2-0136.fits.bz2").astype(float)
    noise = mad_std(np.diff(image, axis=1)) / np.sqrt(2)
    _, sky, _ = sigma_clipped_stats(image, sigma=3, maxiters=10)
    is_peak = (image == ndimage.maximum_filter(image, size=9)) & (image > 10 * noise)
    r = APERTURE_RADIUS
    is_peak[:r + 2], is_peak[-r - 2:], is_peak[:, :r + 2], is_peak[:, -r - 2:] = False, False, False, False
    ys, xs = np.nonzero(is_peak)
    peaks = image[ys, xs]
    dy, dx = np.mgrid[-r:r + 1, -r:r + 1]
    disc = dx**2 + dy**2 <= r**2
    totals = np.array([image[y - r:y + r + 1, x - r:x + r + 1][disc].sum() for y, x in zip(ys, xs)])
    bright = (peaks > 50 * noise) & (peaks < 100)  # well measured, below the frames' saturation
    peak_fraction = np.median(peaks[bright] / totals[bright])
    print(f"{band}: noise {noise:.4f} nmgy/px, sky {sky:.4f} nmgy/px, {len(peaks)} peaks > 10 sigma, "
          f"point-source peak/total {peak_fraction:.3f}")
    for upper in UPPERS:
        saturating_mag = 22.5 - 2.5 * np.log10(upper / peak_fraction)
        print(f"  upper {upper:>3} nmgy: {np.mean(peaks > upper):.2f} of peaks saturate; point sources saturate "
              f"brighter than {saturating_mag:.2f} mag; 1 sigma noise at {np.sqrt(noise / upper):.3f} of full scale")

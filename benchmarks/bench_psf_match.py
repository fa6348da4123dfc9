#!/usr/bin/env python
"""PSF-matched aperture colours on real SDSS frames (`deepcee_d2.psf.match_psfs`, ``DEEPCEE.REDSHIFT.MATCH_PSFS``;
BENCHMARKS.md "PSF-matched colours").

  PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_psf_match.py [--frames ../shared/data/sdss]
      [--config-file configs/deepcee_demo_cpu.yaml] [--size 2000]

For each field of ``--frames``, one tile of ``--size`` px at its r frame's centre, made as the survey makes
its tiles (`LocalFITSSource.cutout`, all bands on one grid), and the estimator's detection step on it:

- **Stars**: the stars the photometry matches the bands on (`deepcee_d2.redsequence._psf_stars`), each band's
  median share of a star's light within 6" that lies in the 2" colour aperture, and the Gaussian (sigma,
  arcsec) `match_psfs` convolves each band with.
- **Stars' colours**: median over those stars of (colour in the 2" aperture) - (colour within 6"), as imaged
  and matched: 0 when the bands' PSFs put the same share of a point source into the aperture.
- **Model galaxies**: Sersic profiles (n = 4, the red sequence's ellipticals, and n = 1 discs; half-light radii
  0.5-2.5", axis ratio 0.8) convolved with each band's empirical PSF (the stars' stack, `deepcee_d2.psf.stacked_psf`,
  cut at 6" as SDSS's photometry is calibrated within 7.4"), the same galaxy in every band: its
  aperture colour is then its error. As imaged, and with each band's stamp also convolved by its kernel.
- **Photometry time** per tile (`measure_photometry`, with and without matching; the survey's per-tile cost).
"""
import argparse
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import sep
from scipy.signal import fftconvolve
from scipy.special import gammaincinv

from deepcee_d2.config import load_config
from deepcee_d2.data.frames import LocalFITSSource
from deepcee_d2.psf import match_psfs, stacked_psf
from deepcee_d2.redsequence import (BANDS, RedSequenceSettings, _detect_sources, _pixel_scale, _psf_stars,
                                    measure_photometry)
from deepcee_d2.survey.tiling import field_reference_frames

REPO = Path(__file__).resolve().parents[1]
GALAXIES = [(4, radius) for radius in (0.5, 1.0, 1.5, 2.5)] + [(1, radius) for radius in (0.5, 1.0, 1.5, 2.5)]


def colour(flux, blue, red):
    return -2.5 * np.log10(flux[blue] / flux[red])


def star_offsets(images, x, y, radius):
    """Median (aperture colour - colour within 3 apertures) of g - r and r - i over the stars."""
    inner = {band: sep.sum_circle(images[band], x, y, radius, subpix=5)[0] for band in BANDS}
    outer = {band: sep.sum_circle(images[band], x, y, 3 * radius, subpix=5)[0] for band in BANDS}
    return [float(np.median(colour(inner, a, b) - colour(outer, a, b))) for a, b in (("g", "r"), ("r", "i"))]


def sersic(index, half_light_px, axis_ratio=0.8, half=40):
    rows, columns = np.indices((2 * half + 1,) * 2) - half
    b = gammaincinv(2 * index, 0.5)
    image = np.exp(-b * (np.hypot(columns, rows / axis_ratio) / half_light_px) ** (1.0 / index))
    return image / image.sum()


def galaxy_errors(psfs, kernels, radius, scale):
    """(g - r, r - i) aperture colour errors of the `GALAXIES` seen through ``psfs`` and ``kernels``."""
    errors = []
    for index, half_light in GALAXIES:
        galaxy = sersic(index, half_light / scale)
        centre = galaxy.shape[0] // 2
        share = {}
        for band in BANDS:
            image = fftconvolve(galaxy, psfs[band], mode="same")
            if kernels[band] > 0:
                image = cv2.GaussianBlur(image, (0, 0), kernels[band])
            share[band] = sep.sum_circle(np.ascontiguousarray(image), [centre], [centre], radius, subpix=5)[0][0]
        errors.append((colour(share, "g", "r"), colour(share, "r", "i")))
    return np.array(errors)


def main(args):
    cfg = load_config(args.config_file)
    settings = RedSequenceSettings.from_cfg(cfg)
    source = LocalFITSSource(args.frames)
    frames, _ = source.scan()
    print("| field | stars | share in 2\" g / r / i | kernel sigma g / r / i (\") | stars' 2\" - 6\" g-r, r-i as imaged "
          "| matched | n=4 galaxies' worst error g-r, r-i, as imaged | matched | n=1 discs' worst, as imaged | matched "
          "| photometry s, unmatched / matched |")
    print("| --- | ---: | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, frame in field_reference_frames(frames, Path(args.frames)).items():
        ny, nx = frame.shape
        cutout = source.cutout(frame.wcs.pixel_to_world((nx - 1) / 2, (ny - 1) / 2), args.size, partial=True)
        images, noise, objects, covered = _detect_sources(cutout.images, BANDS, settings, name, cutout.covered)
        scale = _pixel_scale(cutout.wcs)
        radius = settings.aperture_radius.to_value("arcsec") / scale
        x, y = _psf_stars(images, objects, noise, covered, radius, 3 * radius)
        matched, kernels, shares = match_psfs(images, x, y, radius, 3 * radius)
        # The stars' stacked PSF (the injection's, `synthetic.inject.measure_psf`), cut at the 6" reference.
        psfs = {band: stacked_psf(images[band], x, y, int(3 * radius), 3.0 / scale) for band in BANDS}
        before = galaxy_errors(psfs, dict.fromkeys(BANDS, 0.0), radius, scale)
        after = galaxy_errors(psfs, kernels, radius, scale)
        times = []
        for match in (False, True):
            start = time.perf_counter()
            measure_photometry(cutout.images, cutout.wcs, replace(settings, match_psfs=match), name, cutout.covered)
            times.append(time.perf_counter() - start)

        def worst(errors, rows):
            return ", ".join(f"{errors[rows, k][np.argmax(np.abs(errors[rows, k]))]:+.3f}" for k in (0, 1))

        elliptical, disc = slice(0, 4), slice(4, 8)
        print(f"| {name} | {len(x)} | {' / '.join(f'{shares[b]:.3f}' for b in BANDS)} | "
              f"{' / '.join(f'{kernels[b] * scale:.2f}' for b in BANDS)} | "
              f"{', '.join(f'{v:+.3f}' for v in star_offsets(images, x, y, radius))} | "
              f"{', '.join(f'{v:+.3f}' for v in star_offsets(matched, x, y, radius))} | "
              f"{worst(before, elliptical)} | {worst(after, elliptical)} | {worst(before, disc)} | {worst(after, disc)} | "
              f"{times[0]:.2f} / {times[1]:.2f} |", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", default=str(REPO.parent / "shared" / "data" / "sdss"))
    parser.add_argument("--config-file", default=str(REPO / "configs" / "deepcee_demo_cpu.yaml"))
    parser.add_argument("--size", type=int, default=2000)
    main(parser.parse_args())

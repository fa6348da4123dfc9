#!/usr/bin/env python
"""Aperture-corrected colours on real SDSS frames (`deepcee_d2.psf.aperture_corrections`,
``DEEPCEE.REDSHIFT.APERTURE_CORRECTION``; BENCHMARKS.md "Aperture-corrected colours").

  PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_aperture_correction.py [--frames ../shared/data/sdss]
      [--config-file configs/deepcee_demo_cpu.yaml] [--size 2000]

For each field of ``--frames``, one tile of ``--size`` px at its r frame's centre, made as the survey makes
its tiles (`LocalFITSSource.cutout`, all bands on one grid), and the estimator's detection step on it:

- **Stars**: the stars the photometry measures its corrections on (`deepcee_d2.redsequence._psf_stars`), and
  each band's share of a star's light within 6" that lies in the 2" colour aperture, relative to r's (the
  correction its aperture fluxes are divided by).
- **Stars' colours**: median over half of those stars of (colour in the 2" aperture) - (colour within 6"), as
  imaged and corrected with the other half's shares: 0 when the correction holds for point sources.
- **Model galaxies**: Sersic profiles (n = 4, the red sequence's ellipticals, and n = 1 discs; half-light radii
  0.5-2.5", axis ratio 0.8) convolved with each band's empirical PSF (the stars' stack, `deepcee_d2.psf.stacked_psf`,
  cut at 6" as SDSS's photometry is calibrated within 7.4"), the same galaxy in every band: its
  aperture colour is then its error. As imaged, and corrected with all the stars' shares.
- **Photometry time** per tile (`measure_photometry`, without and with the correction; the survey's per-tile cost).
"""
import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import sep
from scipy.signal import fftconvolve
from scipy.special import gammaincinv

from deepcee_d2.config import load_config
from deepcee_d2.data.frames import LocalFITSSource
from deepcee_d2.psf import aperture_corrections, stacked_psf
from deepcee_d2.redsequence import (BANDS, RedSequenceSettings, _detect_sources, _pixel_scale, _psf_stars,
                                    measure_photometry)
from deepcee_d2.survey.tiling import field_reference_frames

REPO = Path(__file__).resolve().parents[1]
GALAXIES = [(4, radius) for radius in (0.5, 1.0, 1.5, 2.5)] + [(1, radius) for radius in (0.5, 1.0, 1.5, 2.5)]


def colour(flux, blue, red):
    return -2.5 * np.log10(flux[blue] / flux[red])


def star_offsets(images, x, y, radius, shares):
    """Median (aperture colour, fluxes divided by ``shares`` - colour within 3 apertures) of g - r and r - i."""
    inner = {band: sep.sum_circle(images[band], x, y, radius, subpix=5)[0] / shares[band] for band in BANDS}
    outer = {band: sep.sum_circle(images[band], x, y, 3 * radius, subpix=5)[0] for band in BANDS}
    return [float(np.median(colour(inner, a, b) - colour(outer, a, b))) for a, b in (("g", "r"), ("r", "i"))]


def sersic(index, half_light_px, axis_ratio=0.8, half=40):
    rows, columns = np.indices((2 * half + 1,) * 2) - half
    b = gammaincinv(2 * index, 0.5)
    image = np.exp(-b * (np.hypot(columns, rows / axis_ratio) / half_light_px) ** (1.0 / index))
    return image / image.sum()


def galaxy_errors(psfs, radius, scale):
    """(g - r, r - i) aperture colour errors of the `GALAXIES` seen through ``psfs``."""
    errors = []
    for index, half_light in GALAXIES:
        galaxy = sersic(index, half_light / scale)
        centre = galaxy.shape[0] // 2
        share = {}
        for band in BANDS:
            image = np.ascontiguousarray(fftconvolve(galaxy, psfs[band], mode="same"))
            share[band] = sep.sum_circle(image, [centre], [centre], radius, subpix=5)[0][0]
        errors.append((colour(share, "g", "r"), colour(share, "r", "i")))
    return np.array(errors)


def main(args):
    cfg = load_config(args.config_file)
    settings = RedSequenceSettings.from_cfg(cfg)
    source = LocalFITSSource(args.frames)
    frames, _ = source.scan()
    print("| field | stars | share in 2\" relative to r: g / i | stars' 2\" - 6\" g-r, r-i as imaged | corrected "
          "| n=4 galaxies' worst error g-r, r-i, as imaged | corrected | n=1 discs' worst, as imaged | corrected "
          "| photometry s, as imaged / corrected |")
    print("| --- | ---: | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, frame in field_reference_frames(frames, Path(args.frames)).items():
        ny, nx = frame.shape
        cutout = source.cutout(frame.wcs.pixel_to_world((nx - 1) / 2, (ny - 1) / 2), args.size, partial=True)
        images, noise, objects, covered = _detect_sources(cutout.images, BANDS, settings, name, cutout.covered)
        scale = _pixel_scale(cutout.wcs)
        radius = settings.aperture_radius.to_value("arcsec") / scale
        x, y = _psf_stars(images, objects, noise, covered, 3 * radius)
        shares = aperture_corrections(images, x, y, radius, 3 * radius)
        # Point sources: corrections from the even stars, colours of the odd ones.
        half_shares = aperture_corrections(images, x[::2], y[::2], radius, 3 * radius)
        as_imaged = dict.fromkeys(BANDS, 1.0)
        # The stars' stacked PSF (the injection's, `synthetic.inject.measure_psf`), cut at the 6" reference.
        psfs = {band: stacked_psf(images[band], x, y, int(3 * radius), 3.0 / scale) for band in BANDS}
        before = galaxy_errors(psfs, radius, scale)
        # Dividing the fluxes by the shares adds 2.5 log10 of their ratio to each colour.
        after = before + [2.5 * np.log10(shares["g"] / shares["r"]), 2.5 * np.log10(shares["r"] / shares["i"])]
        times = []
        for correct in (False, True):
            start = time.perf_counter()
            measure_photometry(cutout.images, cutout.wcs, replace(settings, aperture_correction=correct), name,
                               cutout.covered)
            times.append(time.perf_counter() - start)

        def worst(errors, rows):
            return ", ".join(f"{errors[rows, k][np.argmax(np.abs(errors[rows, k]))]:+.3f}" for k in (0, 1))

        elliptical, disc = slice(0, 4), slice(4, 8)
        print(f"| {name} | {len(x)} | {shares['g']:.3f} / {shares['i']:.3f} | "
              f"{', '.join(f'{v:+.3f}' for v in star_offsets(images, x[1::2], y[1::2], radius, as_imaged))} | "
              f"{', '.join(f'{v:+.3f}' for v in star_offsets(images, x[1::2], y[1::2], radius, half_shares))} | "
              f"{worst(before, elliptical)} | {worst(after, elliptical)} | {worst(before, disc)} | {worst(after, disc)} | "
              f"{times[0]:.2f} / {times[1]:.2f} |", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", default=str(REPO.parent / "shared" / "data" / "sdss"))
    parser.add_argument("--config-file", default=str(REPO / "configs" / "deepcee_demo_cpu.yaml"))
    parser.add_argument("--size", type=int, default=2000)
    main(parser.parse_args())

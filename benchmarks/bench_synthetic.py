#!/usr/bin/env python
"""Measure the synthetic sky: speed, depth and completeness, galaxy counts, red-sequence colours, seeing.

Prints Markdown for BENCHMARKS.md ("Synthetic sky") and docs/synthetic_sky.md. One process, one core
(GalSim's FFTs are single-threaded; numpy/scipy thread pools are limited to one thread below).

    .venv/bin/python benchmarks/bench_synthetic.py [--repeats 3] [--count-fields 4]
"""
import argparse
import os
import platform
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import astropy.units as u  # noqa: E402
import numpy as np  # noqa: E402
from astropy.coordinates import SkyCoord  # noqa: E402
from astropy.stats import sigma_clipped_stats  # noqa: E402
from astropy.table import Table  # noqa: E402

from deepcee_d2.synthetic import BANDS, ClusterSpec, colours, galaxies, instrument, make_field, render  # noqa: E402

CENTRE = SkyCoord(150.0 * u.deg, 2.0 * u.deg)
# The median seeing (effective width) in each band, as a round Moffat of the middle of the drawn beta range.
_BETA = float(np.mean(instrument.MOFFAT_BETA_RANGE))
MEDIAN_PSF = {band: instrument.PSF(instrument.effective_width_to_fwhm(
    instrument.MEDIAN_SEEING_R * instrument.SEEING_RATIO[band], _BETA), _BETA) for band in BANDS}


def speed(repeats, size):
    spec = ClusterSpec(z_range=(0.15, 0.15), richness_range=(40, 40))
    make_field(CENTRE, 64, 64, seed=0)  # templates and imports, once
    times, objects = [], []
    for seed in range(repeats):
        start = time.perf_counter()
        field = make_field(CENTRE, size, size, clusters=spec, seed=seed)
        times.append(time.perf_counter() - start)
        objects.append(len(field.galaxies) + len(field.stars))
    return float(np.median(times)), float(np.min(times)), float(np.max(times)), int(np.median(objects))


def depth_and_completeness(seed=1):
    """5-sigma PSF depth from the measured noise, and the magnitude to which 95 % of injected point sources have
    a PSF-weighted S/N above 5 (forced photometry at their positions)."""
    size = 1024
    noise_only = make_field(CENTRE, size, size, clusters=None, field_galaxies=False, stars=False, artefacts=False,
                            seeing={band: MEDIAN_PSF[band].fwhm for band in BANDS}, seed=seed)
    rows = []
    rng = np.random.default_rng(seed)
    for band in BANDS:
        _, _, sigma = sigma_clipped_stats(noise_only.images[band])
        # The PSF with its aureole; the weights are its central 41 x 41 px, as fractions of all its light.
        psf_image = render.new_image(301, 301)
        render.draw_stars(psf_image, Table({"x": [150.0], "y": [150.0], f"{band}_mag": [15.0]}), band,
                          MEDIAN_PSF[band])
        whole = render.add_psf_wing(psf_image.array.astype(np.float64), MEDIAN_PSF[band])
        weights = whole[130:171, 130:171] / whole.sum()
        depth = float(instrument.nanomaggies_to_mag(5 * sigma * np.sqrt(1.0 / np.sum(weights**2))))
        # Inject point sources (0.1 mag steps) into the noise, measure PSF-weighted S/N at their positions.
        mags = np.repeat(np.arange(depth - 1.2, depth + 0.61, 0.1), 60)
        found = []
        for mag in np.unique(mags):
            image = render.new_image(410, 410)
            xy = np.stack(np.meshgrid(np.arange(25, 400, 50.0), np.arange(25, 400, 50.0)), -1).reshape(-1, 2)
            xy = xy[:60] + rng.uniform(-0.5, 0.5, (60, 2))
            render.draw_stars(image, Table({"x": xy[:, 0], "y": xy[:, 1], f"{band}_mag": np.full(60, mag)}), band,
                              MEDIAN_PSF[band])
            pixels = render.add_psf_wing(image.array.astype(np.float64), MEDIAN_PSF[band])
            instrument.add_noise(pixels, band, int(rng.integers(2**31 - 1)))
            for x, y in np.round(xy).astype(int):
                cut = pixels[y - 20:y + 21, x - 20:x + 21]
                flux = np.sum(cut * weights) / np.sum(weights**2)
                found.append(flux / (sigma / np.sqrt(np.sum(weights**2))) > 5.0)
        found = np.array(found).reshape(-1, 60).mean(axis=1)
        grid = np.unique(mags)
        complete = grid[found >= 0.95]
        rows.append((band, MEDIAN_PSF[band].fwhm, sigma, instrument.pixel_noise(band), depth,
                     instrument.point_source_depth(band, MEDIAN_PSF[band]), float(complete.max())))
    return rows


def counts(n_fields, size=2048):
    """Galaxy counts recovered by detection (Kron magnitudes) on noiseless and noisy r-band fields."""
    from photutils.segmentation import SourceCatalog, detect_sources

    centres = (17.5, 19.5, 21.5)
    found = {"noiseless": np.zeros(3), "noisy": np.zeros(3)}
    for seed in range(n_fields):
        for label, noise in (("noiseless", False), ("noisy", True)):
            field = make_field(CENTRE, size, size, clusters=None, stars=False, noise=noise, artefacts=False,
                               bands=("r",), seed=100 + seed)
            image, threshold = field.images["r"], 0.02
            if noise:  # SDSS-like detection: peaks above 5 sigma in the PSF-smoothed image
                from astropy.convolution import Gaussian2DKernel, convolve

                sigma_psf = field.seeing["r"] / 2.355 / instrument.PIXEL_SCALE.to_value(u.arcsec)
                image = convolve(image, Gaussian2DKernel(sigma_psf))
                threshold = 5 * sigma_clipped_stats(image)[2]
            segments = detect_sources(image, threshold=threshold, n_pixels=5)
            mags = instrument.nanomaggies_to_mag(SourceCatalog(field.images["r"], segments).kron_flux)
            for k, low in enumerate(centres):
                found[label][k] += np.sum((mags >= low) & (mags < low + 1))
    area = n_fields * ((size * instrument.PIXEL_SCALE) ** 2).to_value(u.deg**2)
    model = galaxies.galaxy_counts(np.array(centres) + 0.5)
    return centres, model, {label: values / area for label, values in found.items()}, area


def red_sequence_colours():
    from photutils.aperture import CircularAperture, aperture_photometry

    rows = []
    for z in (0.1, 0.2):
        request = Table({"ra": [150.0], "dec": [2.0], "z": [z], "richness": [80.0]})
        field = make_field(CENTRE, 1200, 1200, clusters=request, field_galaxies=False, stars=False, noise=False,
                           seeing={band: 1.3 for band in BANDS}, seed=5)
        members = field.galaxies
        bright = members["red"] & (members["r_mag"] < field.clusters["m_star_r"][0] + 1.5)
        inside = (members["x"] > 20) & (members["x"] < 1180) & (members["y"] > 20) & (members["y"] < 1180)
        xy = np.stack([members["x"], members["y"]], axis=1)
        nearest = np.sort(np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1)), axis=1)[:, 1]
        chosen = bright & inside & (nearest > 15)
        apertures = CircularAperture(xy[chosen], r=3.0 / 0.396)
        flux = {band: aperture_photometry(field.images[band], apertures)["aperture_sum"] for band in BANDS}
        rows.append((z, int(chosen.sum()), float(np.median(-2.5 * np.log10(flux["g"] / flux["r"]))),
                     float(np.median(-2.5 * np.log10(flux["r"] / flux["i"]))),
                     *[float(c) for c in colours.red_sequence(z)]))
    return rows


def seeing_distribution(n=4000):
    rng = np.random.default_rng(0)
    draws = [instrument.draw_psfs(rng) for _ in range(n)]
    return {band: np.percentile([d[band].fwhm for d in draws], [0, 25, 50, 75, 100]) for band in BANDS}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--count-fields", type=int, default=4)
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, one used\n")

    print("| field | bands | median s (min-max) | objects drawn |\n| --- | --- | --- | --- |")
    for size in (2048, 3400):
        median, low, high, objects = speed(args.repeats, size)
        print(f"| {size} x {size}, 1 cluster z = 0.15, R_L* = 40 | g, r, i | {median:.2f} ({low:.2f}-{high:.2f}) | "
              f"{objects} |")

    print("\n| band | seeing (\") | pixel noise measured / model (nmgy) | 5-sigma PSF depth measured / model | "
          "95 % of point sources at S/N > 5 |\n| --- | --- | --- | --- | --- |")
    for band, seeing, sigma, model_sigma, depth, model_depth, complete in depth_and_completeness():
        print(f"| {band} | {seeing:.2f} | {sigma:.4f} / {model_sigma:.4f} | {depth:.2f} / {model_depth:.2f} | "
              f"{complete:.1f} |")

    centres, model, found, area = counts(args.count_fields)
    print(f"\nGalaxy counts, deg^-2 mag^-1 (r band, {area:.3f} deg^2, Kron magnitudes of detected sources):\n")
    print("| r | model | recovered, noiseless | recovered, with noise |\n| --- | --- | --- | --- |")
    for k, low in enumerate(centres):
        print(f"| {low}-{low + 1} | {model[k]:.0f} | {found['noiseless'][k]:.0f} | {found['noisy'][k]:.0f} |")

    print("\nRed sequence (median aperture colours of isolated bright red members, noiseless, 1.3\" seeing):\n")
    print("| z | members | g - r measured / model | r - i measured / model |\n| --- | --- | --- | --- |")
    for z, n, gr, ri, model_gr, model_ri in red_sequence_colours():
        print(f"| {z} | {n} | {gr:.3f} / {model_gr:.3f} | {ri:.3f} / {model_ri:.3f} |")

    print("\nSeeing drawn per field (min, quartiles, max; arcsec FWHM):\n")
    for band, values in seeing_distribution().items():
        print(f"- {band}: " + ", ".join(f"{v:.2f}" for v in values))


if __name__ == "__main__":
    main()

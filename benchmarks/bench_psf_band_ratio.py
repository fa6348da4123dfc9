"""The g / r and i / r PSF width ratios of g, r, i frames, star by star: the realism table's "FWHM ratio" rows
compare medians of each band's own stars; here the same isolated stars are fitted in every band
(`bench_sky_realism`'s Moffat fit and star selection), g / r split by how near the star's r peak is to
saturation, beside the ratios of their half-light radii (SEP's ``flux_radius`` within 12", a measure that needs
no PSF model).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_psf_band_ratio.py [FRAMES]   # default ../shared/data/sdss
"""
import argparse
from pathlib import Path

import astropy.units as u
import numpy as np
import sep
from astropy.coordinates import SkyCoord

from bench_sky_realism import (RED_STAR_R_MIN, STAR_ISOLATION, STAR_PEAK_SNR, UNSATURATED_DN, field_catalogue,
                               fit_psf, isolated, read_fields, read_sky_frame,
                               star_stamp)  # this folder is on the path when run as a script
from deepcee_d2.config import load_config
from deepcee_d2.psf import separate_point_sources
from deepcee_d2.redsequence import RedSequenceSettings
from deepcee_d2.synthetic.instrument import BANDS, SATURATION_DN

MAX_STARS = 80  # brightest isolated point sources tried per field
HALF_LIGHT_APERTURE = 12 * u.arcsec  # radius of the total light for flux_radius
PEAK_BINS = ((0.0, 0.05), (0.05, 0.15), (0.15, UNSATURATED_DN / SATURATION_DN))  # r peak / saturation level


def band_widths(frame, stars):
    """Per star of ``stars`` in one frame: ``(Moffat FWHM arcsec or NaN, peak / saturation, peak S/N, half-light
    radius arcsec)``, or None when its stamp leaves the frame. The half-light radii come from one SEP call for
    all the stars."""
    x, y = frame.wcs.world_to_pixel(SkyCoord(stars["ra"], stars["dec"], unit=u.deg))
    x, y = np.atleast_1d(x).astype(float), np.atleast_1d(y).astype(float)
    aperture = np.full(len(x), HALF_LIGHT_APERTURE.to_value(u.arcsec) / frame.scale)
    radii, _ = sep.flux_radius(np.ascontiguousarray(frame.image, dtype=np.float64), x, y, aperture, 0.5, subpix=5)
    widths = []
    for x_star, y_star, radius in zip(x, y, radii):
        cut = star_stamp(frame, x_star, y_star)
        if cut is None:
            widths.append(None)
            continue
        stamp, centre, peak = cut
        fit = fit_psf(np.asarray(stamp, float), centre, frame.scale)
        widths.append((fit[0] if fit else np.nan, peak / (SATURATION_DN * frame.nmgy_per_dn), peak / frame.noise,
                       float(radius) * frame.scale))
    return widths


def field_ratios(frames, settings):
    """Per star measured in every band: r magnitude, r peak / saturation, g / r Moffat FWHM, g / r half-light
    radius, r FWHM, i / r Moffat FWHM, i / r half-light radius (columns of one array)."""
    sky = {band: read_sky_frame(frames[band]) for band in BANDS}
    sources, _, _ = field_catalogue(sky, settings)
    point = separate_point_sources(sources["concentration"], sources["concentration_err"], sources["r_mag"]).point
    r_mag = np.asarray(sources["r_mag"], dtype=float)
    stars = sources[point & (r_mag > RED_STAR_R_MIN) & isolated(sources, STAR_ISOLATION)]
    stars.sort("r_mag")
    stars = stars[:MAX_STARS]
    per_band = {band: band_widths(sky[band], stars) for band in BANDS}
    g, r, i = (BANDS.index(band) for band in "gri")
    rows = []
    for k, star in enumerate(stars):
        widths = [per_band[band][k] for band in BANDS]
        if None in widths:
            continue
        fwhm, peak, snr, hlr = (np.array([width[q] for width in widths]) for q in range(4))
        if np.isfinite(fwhm).all() and snr.min() > STAR_PEAK_SNR and peak.max() < UNSATURATED_DN / SATURATION_DN:
            rows.append((float(star["r_mag"]), peak[r], fwhm[g] / fwhm[r], hlr[g] / hlr[r], fwhm[r], fwhm[i] / fwhm[r],
                         hlr[i] / hlr[r]))
    return np.array(rows, dtype=float).reshape(-1, 7)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("frames", nargs="?", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "sdss"))
    args = parser.parse_args(argv)
    settings = RedSequenceSettings.from_cfg(load_config())
    fields, _ = read_fields(args.frames)
    print("| field | stars | r FWHM (\") | g / r FWHM, same stars | g / r half-light radius | i / r FWHM | "
          "i / r half-light radius | "
          + " | ".join(f"g / r FWHM, r peak {low:g}-{high:g} of saturation (stars)" for low, high in PEAK_BINS) + " |")
    print("|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(PEAK_BINS))
    for name, frames in fields:
        rows = field_ratios(frames, settings)
        if not len(rows):
            print(f"| {name} | 0 | | | | | |" + " |" * len(PEAK_BINS))
            continue
        bins = []
        for low, high in PEAK_BINS:
            chosen = (rows[:, 1] >= low) & (rows[:, 1] < high)
            bins.append(f"{np.median(rows[chosen, 2]):.3f} ({chosen.sum()})" if chosen.any() else "-")
        print(f"| {name} | {len(rows)} | {np.median(rows[:, 4]):.2f} | {np.median(rows[:, 2]):.3f} | "
              f"{np.median(rows[:, 3]):.3f} | {np.median(rows[:, 5]):.3f} | {np.median(rows[:, 6]):.3f} | "
              + " | ".join(bins) + " |")


if __name__ == "__main__":
    main()

"""Galactic reddening against the red-sequence redshift: synthetic clusters imaged through E(B-V), estimated as
imaged and dereddened (`deepcee_d2.redsequence.deredden`, the correction DEEPCEE.REDSHIFT.DUST_MAP_DIR applies).

Each cluster field (`make_field`, a cluster at the centre) is dimmed in each band by 10^(-0.4 A_band), A_band =
`EXTINCTION_PER_EBV` x E(B-V), as Galactic dust dims everything extragalactic, and Gaussian noise is added to
bring the sky noise back to the field's own (the sky and the detector are not behind the dust, so the sources
lose signal-to-noise: what the correction cannot give back); the photometry is measured on
those images and the redshift estimated against the packaged background, once as imaged and once dereddened
by the same E(B-V). Prints the median and scatter of z_est - z_true per E(B-V).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_extinction.py --clusters 24
"""
import argparse

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table
from astropy.stats import mad_std, sigma_clipped_stats

from deepcee_d2.config import load_config
from deepcee_d2.dust import EXTINCTION_PER_EBV
from deepcee_d2.redsequence import RedSequenceEstimator, deredden, estimate_redshift_richness, measure_photometry
from deepcee_d2.synthetic.field import make_field


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clusters", type=int, default=24)
    parser.add_argument("--ebv", type=float, nargs="+", default=[0.0, 0.03, 0.1, 0.2])
    parser.add_argument("--z-range", type=float, nargs=2, default=[0.1, 0.3])
    parser.add_argument("--size", type=int, default=900, help="field side, px")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    estimator = RedSequenceEstimator.from_cfg(load_config("configs/Base-DeepCEE.yaml"))
    rng = np.random.default_rng(args.seed)
    centre = SkyCoord(150.0 * u.deg, 2.0 * u.deg)
    rows = []
    for k in range(args.clusters):
        request = Table({"ra": [150.0], "dec": [2.0], "z": [rng.uniform(*args.z_range)],
                         "richness": [float(np.exp(rng.uniform(np.log(20), np.log(100))))]})
        field = make_field(centre, args.size, args.size, clusters=request, seed=args.seed * 1000 + k)
        z_true = float(field.clusters[0]["z"])
        for ebv in args.ebv:
            images = {}
            for band, image in field.images.items():
                dimming = 10 ** (-0.4 * EXTINCTION_PER_EBV[band] * ebv)
                sky_noise = sigma_clipped_stats(image)[2]
                noise_rng = np.random.default_rng([args.seed, k, int(ebv * 1000), ord(band)])
                images[band] = image * dimming + noise_rng.normal(0.0, sky_noise * np.sqrt(1 - dimming**2), image.shape)
            photometry = measure_photometry(images, field.wcs, estimator.settings)
            for corrected, phot in ((False, photometry), (True, deredden(photometry, ebv))):
                estimate = estimate_redshift_richness(phot, centre, estimator.cosmology, estimator.background,
                                                      estimator.settings)
                rows.append((k, z_true, ebv, corrected, estimate.z - z_true, estimate.has_peak))
        print(f"cluster {k + 1}/{args.clusters} done (z {z_true:.3f})", flush=True)
    table = Table(rows=rows, names=("cluster", "z_true", "ebv", "dereddened", "dz", "peak"))
    print(f"\n{args.clusters} clusters, z {args.z_range[0]}-{args.z_range[1]}, R_L* 20-100 log-uniform, "
          f"{args.size} px fields\n")
    print("| E(B-V) | as imaged: median z_est - z | scatter (MAD) | peaks | dereddened: median | scatter | peaks |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for ebv in args.ebv:
        cells = []
        for corrected in (False, True):
            sel = table[(table["ebv"] == ebv) & (table["dereddened"] == corrected)]
            dz = np.asarray(sel["dz"])
            cells += [f"{np.median(dz):+.4f}", f"{mad_std(dz):.4f}", f"{int(np.sum(sel['peak']))}/{len(sel)}"]
        print(f"| {ebv:g} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

"""The magnitude gap dm12 (r band: brightest satellite minus BCG) of the simulator's clusters, as drawn for the
demo's training sky (0.1 < z < 0.2, >= 20 members, R_L* 20-100 log-uniform): its quantiles and the share of
clusters with a gap under 0.25 mag (a satellite that rivals the BCG, which a detector may take for the
centre) or of 1 mag and more (Smith et al. 2010, LoCuSS, 59 massive clusters: p(dm12 >= 1) = 0.37 +- 0.08),
counting satellites within 2 r200 (all the simulator draws) and within a projected 500 kpc of the BCG.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_magnitude_gap.py [--clusters 400] [--seed 5]
"""
import argparse

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord

from deepcee_d2.synthetic.clusters import ClusterSpec, realise_from_spec

FAINT_LIMIT = 22.5  # r; deep enough for every satellite that could rival a BCG at z < 0.2


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clusters", type=int, default=400)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)
    spec = ClusterSpec(per_field=1, z_range=(0.1, 0.2), min_members=20, placement="centre")
    rng = np.random.default_rng(args.seed)
    centre = SkyCoord(150 * u.deg, 2 * u.deg)
    gaps = {"2 r200": [], "500 kpc": []}
    for k in range(args.clusters):
        truth, members = realise_from_spec(rng, spec, centre, f"c{k}", FAINT_LIMIT)
        satellites = members[~members["bcg"]]
        distance_kpc = np.asarray(satellites["distance_r200"]) * (truth["r200"] * u.Mpc).to_value(u.kpc)
        for name, inside in (("2 r200", np.ones(len(satellites), bool)), ("500 kpc", distance_kpc < 500)):
            gaps[name].append(np.min(satellites["r_mag"][inside]) - truth["bcg_rmag"] if inside.any() else np.inf)
    print(f"{args.clusters} clusters of the demo's training sky (z {spec.z_range}, >= {spec.min_members} members, "
          f"R_L* {spec.richness_range}), seed {args.seed}\n")
    print("| satellites within | dm12 quantiles 10 / 25 / 50 / 75 % | dm12 < 0.25 | dm12 >= 1 |\n|---|---|---:|---:|")
    for name, values in gaps.items():
        values = np.array(values)
        quantiles = " / ".join(f"{q:.2f}" for q in np.percentile(values, [10, 25, 50, 75]))
        print(f"| {name} | {quantiles} | {np.mean(values < 0.25):.2f} | {np.mean(values >= 1):.2f} |")


if __name__ == "__main__":
    main()

"""The true colours and redshifts of the simulator's field galaxies (`deepcee_d2.synthetic.galaxies`), in the
realism table's sample (r < 21), so that its galaxy colour rows (`bench_sky_realism.py`, measured on rendered
twins) can be told apart into the photometry's share and the galaxy model's: median g - r and r - i of all, of
the red and blue populations, and of the realism bench's g - r classes (blue < 0.85, red > 1.15); the red
fraction and the median redshift of each population per r magnitude.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_field_colours.py [--area 1] [--seed 1] [--r-faint 21]
"""
import argparse

import astropy.units as u
import numpy as np

from deepcee_d2.synthetic.galaxies import field_galaxies

# The realism bench's split of galaxies by g - r (BENCHMARKS.md, "Aperture-corrected colour rows").
BLUE_CLASS, RED_CLASS = 0.85, 1.15


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--area", type=float, default=1.0, help="deg^2 of field galaxies")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--r-faint", type=float, default=21.0)
    args = parser.parse_args(argv)
    galaxies = field_galaxies(np.random.default_rng(args.seed), args.area * u.deg**2, args.r_faint)
    r_mag, z = np.asarray(galaxies["r_mag"]), np.asarray(galaxies["z"])
    g_r = np.asarray(galaxies["g_mag"]) - r_mag
    r_i = r_mag - np.asarray(galaxies["i_mag"])
    red = np.asarray(galaxies["red"], dtype=bool)
    print(f"{len(galaxies)} field galaxies with r < {args.r_faint:g} on {args.area:g} deg^2 (seed {args.seed}), "
          "true colours\n")
    print("| sample | galaxies | median g - r | median r - i | median z |\n|---|---:|---:|---:|---:|")
    samples = {"all": np.ones(len(galaxies), bool), "red population": red, "blue population": ~red,
               f"g - r < {BLUE_CLASS}": g_r < BLUE_CLASS, f"g - r > {RED_CLASS}": g_r > RED_CLASS}
    for name, chosen in samples.items():
        print(f"| {name} | {chosen.sum()} | {np.median(g_r[chosen]):.3f} | {np.median(r_i[chosen]):.3f} | "
              f"{np.median(z[chosen]):.3f} |")
    print("\n| r | galaxies | red fraction | median z, red | median z, blue |\n|---|---:|---:|---:|---:|")
    for bright in np.arange(np.floor(r_mag.min()), args.r_faint):
        chosen = (r_mag >= bright) & (r_mag < bright + 1)
        if chosen.sum() < 10:
            continue
        print(f"| {bright:g}-{bright + 1:g} | {chosen.sum()} | {red[chosen].mean():.2f} | "
              f"{np.median(z[chosen & red]):.3f} | {np.median(z[chosen & ~red]):.3f} |")


if __name__ == "__main__":
    main()

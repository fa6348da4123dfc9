#!/usr/bin/env python
"""Merging radius against the demo's held-out layout (BENCHMARKS.md, "One candidate per cluster").

Monte Carlo of the demo's held-out layout: 3 clusters uniform in a 1188" square field, >= 300" apart, z
uniform in 0.1-0.2. Fraction of clusters with a neighbour within the merging radius (the cost of merging)."""
import numpy as np
from deepcee_d2.cosmology import DEFAULT_COSMOLOGY as cosmo
rng = np.random.default_rng(1)
side, sep_min, n_fields = 1188.0, 300.0, 20000
seps, zs = [], []
for _ in range(n_fields):
    while True:
        xy = rng.uniform(0, side, (3, 2))
        d = np.hypot(*(xy[:, None] - xy[None]).transpose(2, 0, 1))
        if (d[np.triu_indices(3, 1)] >= sep_min).all():
            break
    z = rng.uniform(0.1, 0.2, 3)
    for i in range(3):
        others = [j for j in range(3) if j != i]
        seps.append(d[i, others].min()); zs.append(z[i])
seps, zs = np.array(seps), np.array(zs)
kpc_per_arcsec_min = cosmo.kpc_proper_per_arcmin(0.1).value / 60
kpc_per_arcsec_z = cosmo.kpc_proper_per_arcmin(zs).value / 60
print("radius_kpc  angle_at_z0.1  frac_clusters_with_neighbour_within(no z_est)  (z_est = own z)")
for r in (182.2, 250, 500, 750, 1000, 1500):
    a = r / kpc_per_arcsec_min
    print(f"{r:7.0f}  {a:6.0f}\"  {np.mean(seps <= a):.3f}  {np.mean(seps <= r / kpc_per_arcsec_z):.3f}")

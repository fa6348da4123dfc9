#!/usr/bin/env python
"""Floor of the richness scatter when a cluster is seen only through an image (BENCHMARKS.md, "Redshift and
richness").

Draws clusters with `realise_cluster` alone (no rendering, no photometry, no background): the demo's
(0.1 < z < 0.2, >= 20 members) and the wide set (0.05 < z < 0.35), 100 each. Members are known exactly: the
red ones between 0.42 L* and m* - 3; only those inside the image count (the demo's 1000 px cutouts offset by
up to 100" along x and y, or 1200 px centred fields as in bench_redshift.py). Estimators: the light (or, with
``soft``, the light times a uniform 0-2 factor per member, like the redshift scan's colour weights) within a
fixed aperture (kpc), within r200 or a multiple of it (r200 iterated from the estimate, R = L / 0.9), divided
by the projected-NFW share of the members that the covered aperture holds, with the BCG inside that
correction or counted once (``bcgsep``). Each is fitted with log10 R = a + b log10 L and its scatter printed.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_richness_floor.py [SEED]    # seed 1 in BENCHMARKS.md
"""
import sys
import time

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS
from deepcee_d2.synthetic.clusters import (ClusterSpec, realise_from_spec, r200_from_richness, CONCENTRATION,
                                          _projected_nfw_cumulative)
from deepcee_d2.cosmology import DEFAULT_COSMOLOGY as cosmo
from deepcee_d2.redsequence import Photometry, aperture_coverage, _empty_sources
rng = np.random.default_rng(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
bcg = SkyCoord(150*u.deg, 2*u.deg)
def F(x):  # fraction of the members within r200 that lie within x r200 (projected NFW, c)
    c = CONCENTRATION
    return _projected_nfw_cumulative(np.atleast_1d(c*np.asarray(x, float)))/_projected_nfw_cumulative(np.array([c]))
def wcs_at(centre, n):
    w = WCS(naxis=2); w.wcs.ctype = ["RA---TAN", "DEC--TAN"]; w.wcs.crval = [centre.ra.deg, centre.dec.deg]
    w.wcs.crpix = [(n+1)/2, (n+1)/2]; w.wcs.cdelt = [-0.396/3600, 0.396/3600]; return w
def estimate(xs, dist_kpc, seen, is_bcg, phot, z, mode, soft, A=500.0, iters=4, bcg_sep=False):
    kpa = cosmo.kpc_proper_per_arcmin(z).to_value(u.kpc/u.arcsec)
    w = rng.uniform(0, 1, len(xs))*2 if soft else np.ones(len(xs))  # soft colour weight noise (mean 1)
    R = 40.0
    for _ in range(iters):
        r200 = r200_from_richness(R).to_value(u.kpc)
        ap = A if mode == "fixed" else (r200 if mode == "r200" else A*r200/1000)
        rs = r200 / CONCENTRATION
        cov = aperture_coverage(phot, bcg, ap/kpa*u.arcsec, scale_radius=rs/kpa*u.arcsec)[0]
        frac = cov * min(F(ap/r200)[0], 1.0) if ap <= r200 else cov * F(ap/r200)[0]
        sel = seen & (dist_kpc <= ap)
        if bcg_sep:
            L = xs[is_bcg].sum() + (w*xs)[sel & ~is_bcg].sum()/frac
        else:
            L = (w*xs)[sel].sum()/frac
        R = L/0.9
    return L
specs = {"demo": ClusterSpec(z_range=(0.1,0.2), min_members=20), "wide": ClusterSpec(z_range=(0.05,0.35))}
variants = [("fixed500", "fixed", 500), ("fixed750", "fixed", 750), ("r200", "r200", None), ("0.75r200", "frac", 750), ("1.5r200", "frac", 1500)]
t = time.process_time()
for setname, spec in specs.items():
  for geom in (["demo-split", "bench1200"] if setname == "demo" else ["bench1200"]):
    res = {}
    truthR = []
    for k in range(100):
        truth, m = realise_from_spec(rng, spec, bcg, "c", 22.5, cosmo)
        ms = truth["m_star_r"]; x = 10**(-0.4*(np.asarray(m["r_mag"])-ms))
        keep = np.asarray(m["red"]) & (x >= 10**(-0.4*0.94)) & (x <= 10**(1.2))
        d = np.asarray(m["distance_r200"])*truth["r200"]*1000
        if geom == "demo-split":
            off = rng.uniform(-100, 100, 2)*u.arcsec; n = 1000
        else:
            off = [0, 0]*u.arcsec; n = 1200
        centre = bcg.spherical_offsets_by(off[0], off[1])
        wcs = wcs_at(centre, n); phot = Photometry(_empty_sources(), wcs, (n, n))
        px, py = wcs.world_to_pixel(SkyCoord(m["ra"], m["dec"], unit=u.deg))
        seen = (px >= -0.5) & (px < n-0.5) & (py >= -0.5) & (py < n-0.5)
        truthR.append(truth["richness"])
        for name, mode, A in variants:
            for soft in (False, True):
                for sep in (False, True):
                    res.setdefault((name, soft, sep), []).append(estimate(x[keep], d[keep], seen[keep], np.asarray(m["bcg"])[keep], phot, truth["z"], mode, soft, A or 500, bcg_sep=sep))
    R = np.log10(truthR)
    print(f"{setname} {geom}: sd logR {np.std(R):.3f}")
    for key, v in res.items():
        v = np.log10(np.maximum(v, 1e-2)); b, a = np.polyfit(v, R, 1)
        print(f"  {key[0]:9s} soft={key[1]!s:5} bcgsep={key[2]!s:5} slope {b:.2f} scatter {np.std(R-a-b*v):.3f}")
print("cpu", time.process_time()-t)

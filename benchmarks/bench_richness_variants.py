#!/usr/bin/env python
"""Richness estimators compared on the fields of benchmarks/bench_redshift.py (the alternatives behind the
one in deepcee_d2.redsequence; BENCHMARKS.md, "Redshift and richness").

Each variant is re-implemented here on the package's pieces (colour chi^2, magnitude window, aperture
coverage, projected NFW share, WHL12 r200): member weight (``soft``: the redshift scan's Gaussian weights;
``gauss``: exp(-chi^2 / 2); ``flatT``: exp(-max(chi^2 - T, 0) / 2); a number: chi^2 <= that number), summed
quantity (``lum``: L / L*; ``count``), aperture (fixed kpc with a fixed r200 of 1 Mpc as the old estimator;
fixed kpc with the share of an iterated r200; a multiple of the iterated r200), the BCG counted once or not,
and an optional (z - 0.2) term in the calibration. Each is calibrated to its own fixed point on the
calibration fields of ``bench_redshift.py --calibrate --n-clusters 40`` (true centres), with its own background
from the packaged background's 8 blank 2000 px fields, and applied to the test fields of ``bench_redshift.py``
(16 + 16, true and 12 kpc-offset centres). Redshifts are the package's. Prints one Markdown row per variant:
slope, intercept, scatter (dex) on the calibration set (all, >= 20 members) and on the test sets (>= 20
members; n and median offset in brackets).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_richness_variants.py --cache /tmp/rich_cache

With an empty cache it first makes and measures the 80 fields (~10 CPU-minutes here); with a full one, ~2.5 min.
"""
import argparse
import sys
import time

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from detectron2.config import get_cfg

import bench_redshift as B  # the benchmark beside this script: its fields, seeds and cache
import deepcee_d2.redsequence as rs
from deepcee_d2.config import add_deepcee_config
from deepcee_d2.cosmology import cosmology_from_cfg
from deepcee_d2.synthetic.clusters import CONCENTRATION, projected_fraction, r200_from_richness

p = argparse.ArgumentParser()
p.add_argument("--cache", required=True, help="bench_redshift.py's --cache folder (made when missing)")
p.add_argument("--size", type=int, default=1200)
p.add_argument("--n-cal", type=int, default=40)
p.add_argument("--n-test", type=int, default=32)
p.add_argument("--blank-size", type=int, default=2000)
p.add_argument("--n-blank", type=int, default=8)
p.add_argument("--variants", default="all", help="comma-separated parts of the variant names to run")
args = p.parse_args()

cfg = add_deepcee_config(get_cfg())
S = rs.RedSequenceSettings.from_cfg(cfg)
C = cosmology_from_cfg(cfg)

def load_sets(base_seed, n):
    rng = np.random.default_rng(base_seed)
    out = {}
    for index, (name, (zr, mm)) in enumerate(B.SETS.items()):
        fields, _ = B.make_set(zr, mm, n // 2, args.size, base_seed + 1000 * (index + 1), S, C, rng, args.cache)
        out[name.split()[0]] = fields
    return out

t0 = time.process_time()
blanks = [B.field_photometry("blank", args.blank_size, B._BACKGROUND_SEED + 5000 + k, None, S, C, args.cache)[0]
          for k in range(args.n_blank)]
cal = load_sets(B._CALIBRATION_SEED, args.n_cal)
test = load_sets(0, args.n_test)
print("loaded", time.process_time() - t0, file=sys.stderr)

# z per field and centre (package scan with a background measured on the blanks; richness part irrelevant)
bg0 = rs.measure_background(blanks, C, S)
def prep(fields, centres):
    items = []
    for f in fields:
        for label in centres:
            c = f["centres"][label]
            ph = f["photometry"]
            est = rs.estimate_redshift_richness(ph, c, C, bg0, S)
            sep = c.separation(SkyCoord(ph.sources["ra"], ph.sources["dec"], unit=u.deg)).to_value(u.arcsec)
            items.append(dict(ph=ph, c=c, sep=sep, z=est.z, peak=est.has_peak, R=f["truth"]["richness"],
                              N=f["truth"]["n_members"], zt=f["truth"]["z"], label=label))
    return items
CAL = {k: prep(v, ("true centre",)) for k, v in cal.items()}
TEST = {k: prep(v, ("true centre", "offset 12 kpc")) for k, v in test.items()}
print("prepped", time.process_time() - t0, file=sys.stderr)

def member_weights(sources, z, V):
    z = np.atleast_1d(np.asarray(z, float))
    chi2, ratio = rs._colour_chi2(sources, z, S.colour_error_floor)
    window = rs._in_window(sources, z, S.bright_mag, S.richness_faint_mag, C)
    if V["w"] == "soft":
        w = ratio * np.exp(-0.5 * chi2)
    elif V["w"] == "gauss":
        w = np.exp(-0.5 * chi2)
    elif isinstance(V["w"], str) and V["w"].startswith("flat"):
        w = np.exp(-0.5 * np.maximum(chi2 - float(V["w"][4:]), 0.0))
    else:
        w = (chi2 <= V["w"]).astype(float)
    w = w * window
    if V["x"] == "lum":
        w = w * 10.0 ** (-0.4 * (np.asarray(sources["r_mag"], float)[:, None] - rs.m_star(z, C)[None, :]))
    return w

def background(V):
    area = sum(p.area for p in blanks).to_value(u.arcmin**2)
    return S.z_grid, sum(member_weights(p.sources, S.z_grid, V).sum(axis=0) for p in blanks) / area

def richness(item, V, bgz, a, b, c=0.0):
    z = item["z"]; sep = item["sep"]; ph = item["ph"]; cen = item["c"]
    per = rs._proper_per_arcsec(z, C)
    light = member_weights(ph.sources, z, V)[:, 0]
    bcg_light = 0.0; sat = light.copy()
    if V["bcg"] > 0:
        near = (sep <= V["bcg"] / per) & (light > 0)
        if near.any():
            k = np.flatnonzero(near)[np.argmax(light[near])]; bcg_light = light[k]; sat[k] = 0
    dens = float(np.interp(z, bgz[0], bgz[1]))
    R = 20.0; L = 0.0
    for _ in range(20):
        r200 = r200_from_richness(R).to_value(u.kpc) / per
        if V["ap"][0] == "r200":
            rad = V["ap"][1] * r200; share = float(projected_fraction(V["ap"][1]))
        elif V["ap"][0] == "kpc-fixed":  # old: fixed aperture, profile of fixed r200 = 1 Mpc, no share
            rad = V["ap"][1] / per; share = 1.0; r200 = 1000.0 / per
        else:  # fixed aperture, iterated r200 for the share
            rad = V["ap"][1] / per; share = float(projected_fraction(V["ap"][1] / (r200 * per)))
        cov = rs.aperture_coverage(ph, cen, rad * u.arcsec)[0]
        mem = share * rs.aperture_coverage(ph, cen, rad * u.arcsec, scale_radius=r200 / CONCENTRATION * u.arcsec)[0]
        exc = sat[sep <= rad].sum() - dens * np.pi * (rad / 60) ** 2 * cov
        L = bcg_light + max(exc, 0.0) / mem
        if not L > 0:
            return L, 0.0
        new = 10 ** (a + b * np.log10(L) + c * (z - 0.2))
        if V["ap"][0] == "kpc-fixed" or abs(np.log10(new / R)) < 1e-3:
            return L, new
        R = new
    return L, R

def calibrate(V, bgz):
    a, b, c = 0.0, 1.0, 0.0
    items = [it for s in CAL.values() for it in s]
    for r in range(12):
        L = np.array([richness(it, V, bgz, a, b, c)[0] for it in items])
        ok = L > 0
        y = np.log10([it["R"] for it in np.array(items)[ok]])
        zz = np.array([it["z"] for it in np.array(items)[ok]]) - 0.2
        X = np.stack([np.ones(ok.sum()), np.log10(L[ok])] + ([zz] if V.get("zterm") else []), axis=1)
        coef = np.linalg.lstsq(X, y, rcond=None)[0]
        a2, b2, c2 = coef[0], coef[1], (coef[2] if V.get("zterm") else 0.0)
        done = abs(a2 - a) < 5e-4 and abs(b2 - b) < 5e-4 and abs(c2 - c) < 5e-4
        a, b, c = a2, b2, c2
        if done: break
    return a, b, c, r + 1

def scatter(items, V, bgz, a, b, c, label=None, rich_only=True, peak_only=False):
    d = []
    for it in items:
        if label and it["label"] != label: continue
        if rich_only and it["N"] < 20: continue
        if peak_only and not it["peak"]: continue
        R = richness(it, V, bgz, a, b, c)[1]
        if R > 0: d.append(np.log10(R / it["R"]))
    d = np.array(d)
    return np.std(d), np.median(d), len(d)

VARIANTS = {
    "old: soft count, 500 kpc, r200=1Mpc": dict(w="soft", x="count", ap=("kpc-fixed", 500), bcg=0),
    "soft lum, 500 kpc, r200=1Mpc": dict(w="soft", x="lum", ap=("kpc-fixed", 500), bcg=0),
    "soft lum, 500 kpc, iter r200": dict(w="soft", x="lum", ap=("kpc", 500), bcg=0),
    "soft lum, 500 kpc, iter r200, bcg": dict(w="soft", x="lum", ap=("kpc", 500), bcg=100),
    "soft lum, 0.5 r200, bcg": dict(w="soft", x="lum", ap=("r200", 0.5), bcg=100),
    "soft lum, 1.0 r200, bcg": dict(w="soft", x="lum", ap=("r200", 1.0), bcg=100),
    "soft lum, 1.0 r200": dict(w="soft", x="lum", ap=("r200", 1.0), bcg=0),
    "soft count, 1.0 r200, bcg": dict(w="soft", x="count", ap=("r200", 1.0), bcg=100),
    "gauss lum, 1.0 r200, bcg": dict(w="gauss", x="lum", ap=("r200", 1.0), bcg=100),
    "flat1 lum, 1.0 r200, bcg": dict(w="flat1", x="lum", ap=("r200", 1.0), bcg=100),
    "flat2 lum, 1.0 r200, bcg": dict(w="flat2", x="lum", ap=("r200", 1.0), bcg=100),
    "hard2 lum, 1.0 r200, bcg": dict(w=2.0, x="lum", ap=("r200", 1.0), bcg=100),
    "hard4 lum, 0.5 r200, bcg": dict(w=4.0, x="lum", ap=("r200", 0.5), bcg=100),
    "hard9 lum, 1.0 r200, bcg": dict(w=9.21, x="lum", ap=("r200", 1.0), bcg=100),
    "soft lum, 1.0 r200, bcg, z-term": dict(w="soft", x="lum", ap=("r200", 1.0), bcg=100, zterm=True),
    "soft lum, 500 kpc, iter r200, bcg, z-term": dict(w="soft", x="lum", ap=("kpc", 500), bcg=100, zterm=True),
}
chosen = (VARIANTS if args.variants == "all" else
          {k: v for k, v in VARIANTS.items() if any(part in k for part in args.variants.split(","))})
print("| variant | slope | intercept | cal all | cal >=20 | demo true | demo off | wide true | wide off |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for name, V in chosen.items():
    bgz = background(V)
    a, b, c, rounds = calibrate(V, bgz)
    cal_items = [it for s in CAL.values() for it in s]
    ca = scatter(cal_items, V, bgz, a, b, c, rich_only=False); cr = scatter(cal_items, V, bgz, a, b, c)
    intercept = f"{a:.2f}{'' if not c else f' z {c:+.2f}'} r{rounds}"  # r: calibration rounds (12: not converged)
    cells = [name, f"{b:.2f}", intercept, f"{ca[0]:.3f} ({ca[2]})", f"{cr[0]:.3f} ({cr[2]})"]
    for s in ("demo", "wide"):
        for label in ("true centre", "offset 12 kpc"):
            sc = scatter(TEST[s], V, bgz, a, b, c, label=label)
            cells.append(f"{sc[0]:.3f} ({sc[2]}, bias {sc[1]:+.2f})")
    print("| " + " | ".join(cells) + " |", flush=True)
print("cpu", time.process_time() - t0, file=sys.stderr)

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

``--dataset TRAIN.json`` adds a data set's flux cutouts (the evaluator's geometry) as a third calibration set
("cutouts"); ``--calibrate-on demo,wide,cutouts`` fits on all three, each weighing the same; the "cv" columns
are each set's scatter with the relation fitted on the other half of the clusters (2-fold, by cluster), the
numbers to choose a variant by; ``--no-test`` leaves the test fields alone.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_richness_variants.py --cache /tmp/rich_cache
    cd benchmarks && PYTHONPATH=.. python bench_richness_variants.py --cache /tmp/rich_cache --no-test \
        --dataset DEMO/datasets/synthetic/train.json --dataset-offsets 0 --calibrate-on demo,wide,cutouts

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
p.add_argument("--variants", default="all", help="semicolon-separated parts of the variant names to run")
p.add_argument("--dataset", help="a data set's train.json: its flux cutouts (the evaluator's geometry) join the "
                                 "calibration set as 'cutouts' (bench_redshift.dataset_fields)")
p.add_argument("--dataset-offsets", default="0,1", help="offset indices of the data set's images to use (default 0,1)")
p.add_argument("--calibrate-on", default="demo,wide", help="calibration sets the relation is fitted on (default "
                                                            "demo,wide: the 1200 px fields; add cutouts)")
p.add_argument("--no-test", action="store_true", help="do not estimate the test fields (choosing a variant)")
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
if args.dataset:
    cal["cutouts"] = B.dataset_fields(args.dataset, S, C, args.cache,
                                      tuple(int(k) for k in args.dataset_offsets.split(",")))
test = {} if args.no_test else load_sets(0, args.n_test)
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
                              N=f["truth"]["n_members"], zt=f["truth"]["z"], label=label,
                              id=f["truth"].get("cluster_id", id(f))))
    return items
CAL = {k: prep(v, ("true centre",)) for k, v in cal.items()}
TEST = {k: prep(v, ("true centre", "offset 12 kpc")) for k, v in test.items()}
print("prepped", time.process_time() - t0, file=sys.stderr)

_WEIGHTS = {}

def member_weights(sources, z, V, x=None):
    """Each source's weight (``V["x"]`` or ``x``: "lum" L / L*, "count" 1) as a member at each z; cached per
    field and z (the variants re-estimate the same fields many times)."""
    x = x or V["x"]
    key = (id(sources), float(np.atleast_1d(z)[0]), len(np.atleast_1d(z)), str(V["w"]), x)
    if key in _WEIGHTS:
        return _WEIGHTS[key]
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
    if x == "lum":
        w = w * 10.0 ** (-0.4 * (np.asarray(sources["r_mag"], float)[:, None] - rs.m_star(z, C)[None, :]))
    _WEIGHTS[key] = w
    return w

def background(V):
    area = sum(p.area for p in blanks).to_value(u.arcmin**2)
    kinds = ("lum", "count") if V["x"] == "hybrid" else (V["x"],)
    return (S.z_grid,) + tuple(sum(member_weights(p.sources, S.z_grid, V, x).sum(axis=0) for p in blanks) / area
                               for x in kinds)

def richness(item, V, bgz, a, b, c=0.0):
    """(L, R) of one item. ``hybrid``: the seen light counted as it is, the unseen part of r200 extrapolated
    from the seen member count times the mean member luminosity (``lbar``, L*) instead of from the light."""
    z = item["z"]; sep = item["sep"]; ph = item["ph"]; cen = item["c"]
    per = rs._proper_per_arcsec(z, C)
    hybrid = V["x"] == "hybrid"
    light = member_weights(ph.sources, z, V, "lum" if hybrid else None)[:, 0]
    count = member_weights(ph.sources, z, V, "count")[:, 0] if hybrid else None
    bcg_light = 0.0; sat = light.copy(); sat_count = None if count is None else count.copy()
    if V["bcg"] > 0:
        near = (sep <= V["bcg"] / per) & (light > 0)
        if near.any():
            k = np.flatnonzero(near)[np.argmax(light[near])]; bcg_light = light[k]; sat[k] = 0
            if hybrid:
                sat_count[k] = 0
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
        if hybrid:
            n_exc = sat_count[sep <= rad].sum() - float(np.interp(z, bgz[0], bgz[2])) * np.pi * (rad / 60) ** 2 * cov
            L = bcg_light + max(exc, 0.0) + max(n_exc, 0.0) * V["lbar"] * (1.0 / mem - 1.0)
        else:
            L = bcg_light + max(exc, 0.0) / mem
        if not L > 0:
            return L, 0.0
        new = 10 ** (a + b * np.log10(L) + c * (z - 0.2))
        if V["ap"][0] == "kpc-fixed" or abs(np.log10(new / R)) < 1e-3:
            return L, new
        R = new
    return L, R

def calibrate(V, bgz, items=None):
    """Fit log10 R = a + b log10 L (+ c (z - 0.2)) on ``items`` (default: the --calibrate-on sets, each set
    weighted equally) to its fixed point."""
    if items is None:
        items = [it for name in args.calibrate_on.split(",") for it in CAL[name]]
    sizes = {}
    for it in items:
        sizes[it["set"]] = sizes.get(it["set"], 0) + 1
    a, b, c = 0.0, 1.0, 0.0
    for r in range(12):
        L = np.array([richness(it, V, bgz, a, b, c)[0] for it in items])
        ok = L > 0
        y = np.log10([it["R"] for it in np.array(items)[ok]])
        zz = np.array([it["z"] for it in np.array(items)[ok]]) - 0.2
        w = np.sqrt([1.0 / sizes[it["set"]] for it in np.array(items)[ok]])
        X = np.stack([np.ones(ok.sum()), np.log10(L[ok])] + ([zz] if V.get("zterm") else []), axis=1)
        coef = np.linalg.lstsq(X * w[:, None], y * w, rcond=None)[0]
        a2, b2, c2 = coef[0], coef[1], (coef[2] if V.get("zterm") else 0.0)
        done = abs(a2 - a) < 5e-4 and abs(b2 - b) < 5e-4 and abs(c2 - c) < 5e-4
        a, b, c = a2, b2, c2
        if done: break
    return a, b, c, r + 1

def cross_validated(V, bgz, folds=2):
    """Scatter (>= 20 members) of every calibration set, each cluster estimated with the relation fitted on the
    folds that do not hold it (clusters split by id)."""
    items = [it for name in args.calibrate_on.split(",") for it in CAL[name]]
    ids = sorted({str(it["id"]) for it in items})
    fold_of = {identifier: k % folds for k, identifier in enumerate(ids)}
    d = {name: [] for name in CAL}
    for fold in range(folds):
        fit = [it for it in items if fold_of[str(it["id"])] != fold]
        a, b, c, _ = calibrate(V, bgz, fit)
        for name, set_items in CAL.items():
            for it in set_items:
                if fold_of.get(str(it["id"]), fold) != fold or it["N"] < 20:
                    continue
                R = richness(it, V, bgz, a, b, c)[1]
                if R > 0:
                    d[name].append(np.log10(R / it["R"]))
    return {name: (np.std(v), len(v)) for name, v in d.items()}

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
    "hard9 lum, 0.5 r200, bcg": dict(w=9.21, x="lum", ap=("r200", 0.5), bcg=100),
    "hard9 lum, 0.75 r200, bcg": dict(w=9.21, x="lum", ap=("r200", 0.75), bcg=100),
    "hard9 lum, 500 kpc, iter r200, bcg": dict(w=9.21, x="lum", ap=("kpc", 500), bcg=100),
    "hard9 lum, 750 kpc, iter r200, bcg": dict(w=9.21, x="lum", ap=("kpc", 750), bcg=100),
    "hard9 count, 1.0 r200, bcg": dict(w=9.21, x="count", ap=("r200", 1.0), bcg=100),
    "hard9 lum, 1.0 r200, bcg, z-term": dict(w=9.21, x="lum", ap=("r200", 1.0), bcg=100, zterm=True),
    "hard9 count, 1.0 r200, bcg, z-term": dict(w=9.21, x="count", ap=("r200", 1.0), bcg=100, zterm=True),
    "hard9 hybrid, 1.0 r200, bcg": dict(w=9.21, x="hybrid", ap=("r200", 1.0), bcg=100, lbar=0.96),
    "hard9 hybrid, 1.0 r200, bcg, z-term": dict(w=9.21, x="hybrid", ap=("r200", 1.0), bcg=100, lbar=0.96,
                                               zterm=True),
    "soft lum, 1.0 r200, bcg, z-term": dict(w="soft", x="lum", ap=("r200", 1.0), bcg=100, zterm=True),
    "soft lum, 500 kpc, iter r200, bcg, z-term": dict(w="soft", x="lum", ap=("kpc", 500), bcg=100, zterm=True),
}
chosen = (VARIANTS if args.variants == "all" else
          {k: v for k, v in VARIANTS.items() if any(part in k for part in args.variants.split(";"))})
for name, set_items in CAL.items():
    for it in set_items:
        it["set"] = name
header = ["variant", "slope", "intercept"] + [f"cal {name} >=20" for name in CAL] + [f"cv {name}" for name in CAL]
header += [f"{s} {label}" for s in TEST for label in ("true", "off")]
print(f"calibrated on {args.calibrate_on}; cv: {2}-fold cross-validation by cluster")
print("| " + " | ".join(header) + " |")
print("|" + " --- |" * len(header))
for name, V in chosen.items():
    bgz = background(V)
    a, b, c, rounds = calibrate(V, bgz)
    intercept = f"{a:.2f}{'' if not c else f' z {c:+.2f}'} r{rounds}"  # r: calibration rounds (12: not converged)
    cells = [name, f"{b:.2f}", intercept]
    for set_items in CAL.values():
        sc = scatter(set_items, V, bgz, a, b, c)
        cells.append(f"{sc[0]:.3f} ({sc[2]}, bias {sc[1]:+.2f})")
    cells += [f"{v[0]:.3f} ({v[1]})" for v in cross_validated(V, bgz).values()]
    for s in TEST:
        for label in ("true centre", "offset 12 kpc"):
            sc = scatter(TEST[s], V, bgz, a, b, c, label=label)
            cells.append(f"{sc[0]:.3f} ({sc[2]}, bias {sc[1]:+.2f})")
    print("| " + " | ".join(cells) + " |", flush=True)
print("cpu", time.process_time() - t0, file=sys.stderr)

#!/usr/bin/env python
"""Injection-recovery on real against synthetic backgrounds: the same simulated clusters injected into the real
frames of ``--frames`` and into synthetic twins of those fields, the same survey over both, recall and false
candidates per deg^2 side by side (issue 15; BENCHMARKS.md, "Injected clusters: real against synthetic
backgrounds").

  PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_injection.py --weights demo/train/model_final.pth \
      [--frames ../shared/data/sdss] [--config-file configs/deepcee_demo_cpu.yaml] [--work /tmp/injection_bench]
      [--rounds 4] [--per-field 2] [--seed 1] [--workers 2] [--real-background FILE] [--known CATALOGUE ...]
      [KEY VALUE ...]

- The twins: one synthetic field per real field (`write_survey` without clusters), with the real field's r-frame
  centre and pixel size, north up (the simulator's stars are high-latitude ones everywhere: the twin of a
  crowded low-latitude field is not crowded).
- Each round ``k`` injects ``--per-field`` clusters (0.1 < z < 0.2, N200 >= 20, >= 60" from the edges) into every
  field of both skies with seed ``--seed + k``. Members are drawn from their own child of the seed
  (`deepcee_d2.synthetic.inject.plan_clusters`), so the k-th cluster of each field is the same cluster (z,
  richness, members and their offsets from the BCG) on both backgrounds; only its position differs, drawn in
  each field's own footprint. The script checks that z, richness and N200 agree.
- Each injected folder, and both skies without injection, is searched with ``find_clusters_in_folder`` (the
  config's tiles, merging and thresholds); the tile files are re-merged at each threshold (`survey_false_rates`).
- Crowded sky (``DEEPCEE.SURVEY.MAX_SOURCE_DENSITY``) is masked on both skies. Recall is compared over the
  clusters the real sky's survey searched (a cluster on masked real sky leaves both columns; the number is
  printed), false rates are over each sky's searched area. ``DEEPCEE.SURVEY.MAX_SOURCE_DENSITY 0.0`` gives the
  numbers without the mask from the same tiles. At the survey threshold the two recalls are also compared
  cluster by cluster (`paired_recall_difference`): the difference's 95 % interval and McNemar's exact p, from
  the clusters found on one sky only, say how many rounds a difference of a few points needs.

- Where each cluster missed at the survey threshold was lost (`loss_stages`: not detected, crowded sky, no
  red-sequence peak, percolated, merged into another candidate), per cluster in ``--work/clusters.ecsv``
  (``lost_real``, ``lost_synthetic``) and counted under the table.

- The false candidates at the survey threshold are told apart by what they lie on (`false_candidates`): a known
  cluster of the real sky (``--known``: catalogues of clusters on the frames, cross-matched as the survey's
  ``--crossmatch`` does; e.g. ``benchmarks/known_clusters_sdss_frames.ecsv`` for the shared SDSS frames), the
  sky's own object (a detection of the same sky searched without injection: a real group that an injected
  neighbour's outskirts confirm), a piece of an injected cluster, or other; ``--work/false_candidates.ecsv``
  lists them. A candidate on a known cluster is not the detector's invention but a real cluster the injected
  truth lacks: the false candidates per cluster are printed with and without them.

- ``--real-background FILE``: the real sky is searched with its own red-sequence background
  (``DEEPCEE.REDSHIFT.BACKGROUND_FILE``, e.g. `tools/measure_background.py` of ``--frames``), the twins with the
  config's (the synthetic sky's): each sky with its own calibration, as a survey of it would be.

Everything is kept under ``--work`` and a rerun resumes (injection and survey runs refuse other settings).
"""
import argparse
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table, vstack

from deepcee_d2.config import load_config
from deepcee_d2.cosmology import cosmology_from_cfg
from deepcee_d2.data.frames import LocalFITSSource
from deepcee_d2.evaluation.crossmatch import read_reference_catalogs
from deepcee_d2.evaluation.purity import (LOSS_STAGES, loss_stages, match_known, match_truth,
                                          paired_recall_difference, read_tile_detections, survey_false_rates,
                                          true_candidates)
from deepcee_d2.sky import centre_and_radius, sky_pairs
from deepcee_d2.survey.run import find_clusters_in_folder, merged_candidates
from deepcee_d2.synthetic import ClusterSpec, write_survey
from deepcee_d2.synthetic.inject import inject_clusters

REPO = Path(__file__).resolve().parents[1]
THRESHOLDS = (0.2, 0.3, 0.5, 0.7, 0.8, 0.9)
# A false candidate within this proper distance of an injected cluster (at its z) is a piece of it: r200 of the
# clusters of the cut is 0.9-1.6 Mpc.
PIECE_RADIUS = 1000 * u.kpc
FALSE_KINDS = ("known cluster", "before injection", "piece", "other")


def cluster_spec(per_field):
    """The injected clusters: 0.1 < z < 0.2, N200 >= 20, anywhere >= 60" from the edges."""
    return ClusterSpec(per_field=per_field, z_range=(0.1, 0.2), min_members=20, placement="random",
                       edge_margin=60 * u.arcsec)


def real_field_layout(frames_root, band="r"):
    """Centre (SkyCoord) and (nx, ny) of each field's ``band`` frame, in the order of their paths."""
    frames, problems = LocalFITSSource(frames_root).scan()
    if problems:
        raise ValueError(f"{frames_root}: unusable frames: {sorted(map(str, problems))}")
    chosen = sorted((frame for frame in frames if frame.band == band), key=lambda frame: str(frame.path))
    centres = SkyCoord([centre_and_radius(frame.wcs, frame.shape)[0] for frame in chosen])
    sizes = {(frame.shape[1], frame.shape[0]) for frame in chosen}
    if len(sizes) != 1:
        raise ValueError(f"{frames_root}: {band} frames of several sizes {sorted(sizes)}; twins need one size")
    return centres, sizes.pop()


def make_twins(frames_root, root, seed=1, workers=2):
    """A synthetic field without clusters for each real field of ``frames_root``, at its r frame's centre and
    of its size, under ``root`` (resumes); returns ``root`` and the centres."""
    centres, (nx, ny) = real_field_layout(frames_root)
    write_survey(root, len(centres), nx, ny, centres=centres, clusters=None, seed=seed, source_lists=False,
                 workers=workers)
    return Path(root), centres


def rates(cfg, output, frames_root, truth=None):
    return survey_false_rates(output, cfg, THRESHOLDS, truth=truth, frames=frames_root)


def highest_threshold_found(cfg, output, cluster, frames_root):
    """The highest of `THRESHOLDS` at which the one-row truth ``cluster`` is found (0 when it is not), and
    whether it lies on masked (crowded) sky, where it is not looked for."""
    table = rates(cfg, output, frames_root, truth=cluster)
    return max((t for t, n in zip(THRESHOLDS, table["n_found"]) if n), default=0.0), table.meta["NMASKTRU"] > 0


def stage_by_id(cfg, survey_dir, truth):
    """Where the survey of ``survey_dir`` lost each cluster of ``truth`` at the survey threshold, by id
    (`loss_stages`)."""
    stages = loss_stages(read_tile_detections(survey_dir)[0], truth, cfg, cfg.DEEPCEE.SURVEY.SCORE_THRESHOLD)
    return dict(zip(np.asarray(stages["id"]).astype(str), stages["stage"]))


def false_candidates(cfg, survey_dir, truth, blank, threshold, known=()):
    """The false candidates scoring ``threshold`` or more of one injected folder's survey (catalogue re-made
    from its tiles as `survey_false_rates` does; true: the best-scored candidate within the cross-match radius
    of an injected cluster), each with ``kind``: "known cluster" when it lies within the cross-match radius of
    a cluster of the ``known`` catalogues (`crossmatch_false_positives`; ``known_as`` names it), else "before
    injection" when ``blank``, the tile detections of the same sky searched without injection
    (`read_tile_detections`), has one scoring ``threshold`` or more within the cross-match radius at the
    candidate's z (the sky's own object, e.g. a real group an injected neighbour's outskirts confirm), else
    "piece" within `PIECE_RADIUS` of an injected cluster, else "other"."""
    cosmology, evaluation = cosmology_from_cfg(cfg), cfg.DEEPCEE.EVAL
    radius = evaluation.CROSSMATCH_RADIUS_KPC * u.kpc
    candidates = merged_candidates(read_tile_detections(survey_dir)[0], cfg)
    candidates = candidates[np.asarray(candidates["score"], dtype=float) >= threshold]
    if not len(candidates):
        return candidates
    candidates, truth = match_truth(candidates, truth, radius, tuple(evaluation.CROSSMATCH_Z_RANGE), cosmology)
    candidates = candidates[~true_candidates(candidates)]
    candidates.sort("score", reverse=True)
    coords = SkyCoord(candidates["ra"], candidates["dec"], unit=u.deg)
    kind = np.full(len(candidates), FALSE_KINDS[3], dtype=object)
    pieces = sky_pairs(coords, SkyCoord(truth["ra"], truth["dec"], unit=u.deg), PIECE_RADIUS,
                       redshift=np.asarray(truth["z"], dtype=float), cosmology=cosmology)
    kind[pieces.index_a] = FALSE_KINDS[2]
    blank = blank[np.asarray(blank["score"], dtype=float) >= threshold]
    z = np.asarray(candidates["z_est"], dtype=float)
    with_z = np.flatnonzero(np.isfinite(z) & (z > 0))
    if len(blank) and len(with_z):
        before = sky_pairs(SkyCoord(blank["ra"], blank["dec"], unit=u.deg), coords[with_z], radius,
                           redshift=z[with_z], cosmology=cosmology)
        kind[with_z[before.index_b]] = FALSE_KINDS[1]
    known_as = np.full(len(candidates), "")
    if known:
        matched = match_known(candidates, known, radius, tuple(evaluation.CROSSMATCH_Z_RANGE), cosmology)
        kind[np.asarray(matched["known"])] = FALSE_KINDS[0]
        known_as = np.asarray(matched["catalog_id"]).astype(str)
    candidates["known_as"] = known_as
    candidates["kind"] = kind.astype(str)
    return candidates


def check_same_clusters(real_truth, twin_truth):
    """The k-th cluster of each field must have the same z, richness and N200 in both skies."""
    for column in ("z", "richness", "n_members"):
        if not np.allclose(real_truth[column], twin_truth[column]):
            raise RuntimeError(f"the injected clusters differ between the skies in {column}: "
                               f"{list(real_truth[column])} vs {list(twin_truth[column])}")


def totals(tables):
    """Sum the counts of several `false_rate_table`s (same thresholds) and recompute the rates."""
    out = tables[0][["threshold"]].copy()
    area = sum(table.meta["AREADEG2"] for table in tables)
    for column in ("n_candidates", "n_false", "n_true", "n_found", "n_found_once"):
        if column in tables[0].colnames:
            out[column] = np.sum([table[column] for table in tables], axis=0)
    out["false_per_deg2"] = out["n_false"] / area
    if "n_true" in out.colnames:
        out["completeness"] = out["n_found"] / out["n_true"]
    out.meta["AREADEG2"] = area
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--frames", default=str(REPO.parent / "shared" / "data" / "sdss"))
    parser.add_argument("--config-file", default=str(REPO / "configs" / "deepcee_demo_cpu.yaml"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/injection_bench"))
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--per-field", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--real-background", help="red-sequence background file for the real sky only")
    parser.add_argument("--known", action="append", default=[], metavar="CATALOGUE",
                        help="clusters known on the real frames (ra, dec, z; z may be empty), e.g. "
                             "benchmarks/known_clusters_sdss_frames.ecsv; repeatable")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, KEY VALUE ...")
    args = parser.parse_args(argv)
    cfg = load_config(args.config_file, ["MODEL.WEIGHTS", args.weights] + args.opts)
    cfg.freeze()
    configs = {"real": cfg, "synthetic": cfg}
    if args.real_background:
        configs["real"] = cfg.clone()
        configs["real"].defrost()
        configs["real"].DEEPCEE.REDSHIFT.BACKGROUND_FILE = args.real_background
        configs["real"].freeze()
    work = args.work
    spec = cluster_spec(args.per_field)
    known = read_reference_catalogs(args.known)  # once, and a bad file is named before any survey runs

    twins, centres = make_twins(args.frames, work / "twins", args.seed, args.workers)
    skies = {"real": Path(args.frames), "synthetic": twins}

    blank = {}
    for name, root in skies.items():
        find_clusters_in_folder(configs[name], root, work / f"{name}_blank_survey", n_workers=args.workers)
        blank[name] = rates(configs[name], work / f"{name}_blank_survey", root)

    injected = {name: [] for name in skies}
    per_cluster = []
    for k in range(args.rounds):
        truths = {}
        for name, root in skies.items():
            folder = work / f"{name}_injected_{k}"
            truths[name], _ = inject_clusters(root, folder, clusters=spec, seed=args.seed + k)
            find_clusters_in_folder(configs[name], folder, work / f"{name}_injected_{k}_survey", n_workers=args.workers)
            injected[name].append(rates(configs[name], work / f"{name}_injected_{k}_survey", folder,
                                        truth=truths[name]))
        check_same_clusters(truths["real"], truths["synthetic"])
        stages = {name: stage_by_id(configs[name], work / f"{name}_injected_{k}_survey", truths[name])
                  for name in skies}
        for index, row in enumerate(truths["real"]):
            best = {name: highest_threshold_found(configs[name], work / f"{name}_injected_{k}_survey",
                                                  truths[name][index:index + 1], work / f"{name}_injected_{k}")
                    for name in skies}
            per_cluster.append({"round": k, "real_id": row["id"], "synthetic_id": truths["synthetic"]["id"][index],
                                "z": row["z"], "richness": row["richness"], "n_members": row["n_members"],
                                "found_real": best["real"][0], "found_synthetic": best["synthetic"][0],
                                "masked_real": best["real"][1], "masked_synthetic": best["synthetic"][1],
                                **{f"lost_{name}": stages[name].get(str(truths[name]["id"][index]), "outside z window")
                                   for name in skies}})
        found = {name: [int(n) for n in tables[-1]["n_found"]] for name, tables in injected.items()}
        print(f"round {k}: clusters found at {list(THRESHOLDS)}: real {found['real']}, synthetic "
              f"{found['synthetic']} of {len(truths['real'])}", flush=True)

    real, synthetic = totals(injected["real"]), totals(injected["synthetic"])
    clusters = Table(rows=per_cluster)
    searched = ~np.asarray(clusters["masked_real"], dtype=bool)
    print(f"\n{len(clusters)} clusters injected into {len(centres)} real fields and their synthetic twins, "
          f"{args.rounds} rounds ({args.config_file}, weights {args.weights}; red-sequence background of the real "
          f"sky: {args.real_background or 'as the config'}); {np.sum(~searched)} on crowded real "
          f"sky (DEEPCEE.SURVEY.MAX_SOURCE_DENSITY {cfg.DEEPCEE.SURVEY.MAX_SOURCE_DENSITY:g}) are left out of "
          f"both recall columns, {np.sum(clusters['masked_synthetic'])} lie on masked synthetic sky\n")
    print("| score >= | recall real | recall synthetic | difference (points) | found once real / synthetic "
          "| false per cluster, real / synthetic | false per deg^2 with clusters, real / synthetic "
          "| false per deg^2 without, real / synthetic |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    n_searched = int(np.sum(searched))
    for i, threshold in enumerate(THRESHOLDS):
        found = {name: int(np.sum(np.asarray(clusters[f"found_{name}"])[searched] >= threshold)) for name in skies}
        recall = {name: found[name] / n_searched if n_searched else float("nan") for name in skies}
        print(f"| {threshold:g} | {recall['real']:.3f} ({found['real']}/{n_searched}) | "
              f"{recall['synthetic']:.3f} ({found['synthetic']}/{n_searched}) | "
              f"{100 * (recall['real'] - recall['synthetic']):+.1f} | "
              f"{real['n_found_once'][i]} / {synthetic['n_found_once'][i]} | "
              f"{real['n_false'][i] / real['n_true'][i]:.2f} / {synthetic['n_false'][i] / synthetic['n_true'][i]:.2f} | "
              f"{real['false_per_deg2'][i]:.1f} / {synthetic['false_per_deg2'][i]:.1f} | "
              f"{blank['real']['false_per_deg2'][i]:.1f} / {blank['synthetic']['false_per_deg2'][i]:.1f} |")
    print(f"\nsearched areas: real {blank['real'].meta['AREADEG2']:.3f} deg^2, synthetic twins "
          f"{blank['synthetic'].meta['AREADEG2']:.3f} deg^2 per round. Found once and false per cluster: over the "
          f"clusters on each sky's searched area (real {int(real['n_true'][0])}, synthetic {int(synthetic['n_true'][0])})")
    clusters.write(work / "clusters.ecsv", overwrite=True)
    vstack([table for tables in injected.values() for table in tables], metadata_conflicts="silent").write(
        work / "rates.ecsv", overwrite=True)
    cut = cfg.DEEPCEE.SURVEY.SCORE_THRESHOLD
    false = []
    for name in skies:
        blank_detections = read_tile_detections(work / f"{name}_blank_survey")[0]
        for k in range(args.rounds):
            folder = work / f"{name}_injected_{k}"
            table = false_candidates(configs[name], work / f"{folder.name}_survey", Table.read(folder / "clusters.fits"),
                                     blank=blank_detections, threshold=cut, known=known if name == "real" else ())
            if len(table):
                table = table["ra", "dec", "score", "z_est", "rs_significance", "kind", "known_as"]
                table["sky"], table["round"] = name, k
                false.append(table)
    false = vstack(false, metadata_conflicts="silent") if false else Table(names=("sky", "kind"), dtype=(str, str))
    false.write(work / "false_candidates.ecsv", overwrite=True)
    print(survey_threshold_summary(clusters, false, cut, f"per cluster: {work / 'clusters.ecsv'}",
                                   f"per candidate: {work / 'false_candidates.ecsv'}",
                                   cfg.DEEPCEE.EVAL.CROSSMATCH_RADIUS_KPC))


def threshold_counts(clusters, false, cut):
    """From a bench's ``clusters.ecsv`` and ``false_candidates.ecsv`` tables at the survey threshold ``cut``: the
    clusters on searched real sky (mask), which were found on each sky ({sky: mask}), the clusters on each sky's
    searched area ({sky: count}: the denominator of false candidates per cluster), the false candidates
    ({sky: count}) and those of them on no known cluster ({sky: count})."""
    searched = ~np.asarray(clusters["masked_real"], dtype=bool)
    found = {name: np.asarray(clusters[f"found_{name}"], dtype=float) >= cut for name in ("real", "synthetic")}
    n_true = {"real": int(np.sum(searched)),
              "synthetic": int(np.sum(~np.asarray(clusters["masked_synthetic"], dtype=bool)))}
    n_false = {name: int(np.sum(np.asarray(false["sky"]) == name)) for name in ("real", "synthetic")}
    n_unknown = {name: int(np.sum((np.asarray(false["sky"]) == name) & (np.asarray(false["kind"]) != FALSE_KINDS[0])))
                 for name in ("real", "synthetic")}
    return searched, found, n_true, n_false, n_unknown


def ratio(count, total):
    """``count / total`` as the tables print it, with both numbers."""
    return f"{count / total if total else float('nan'):.2f} ({count}/{total})"


def survey_threshold_summary(clusters, false, cut, clusters_file, false_file, crossmatch_radius_kpc):
    """The bench's tables at the survey threshold ``cut``, as Markdown: clusters found on each sky, the paired
    recall difference, where the others were lost, recall per real field, and the false candidates by what they
    lie on, per injected cluster. ``clusters`` and ``false`` as the bench writes them (``clusters.ecsv``,
    ``false_candidates.ecsv``), of one run or of several stacked (`pool_injection.py`)."""
    skies = ("real", "synthetic")
    searched, found, n_true, _, n_unknown = threshold_counts(clusters, false, cut)
    both, real_only = found["real"] & found["synthetic"], found["real"] & ~found["synthetic"]
    lines = [f"at the survey threshold {cut:g}: found on both backgrounds {np.sum(both)}, only on the real one "
             f"{np.sum(real_only)}, only on the synthetic one {np.sum(~found['real'] & found['synthetic'])}, on "
             f"neither {np.sum(~found['real'] & ~found['synthetic'])} ({clusters_file})"]
    if searched.any():
        paired = paired_recall_difference(found["real"][searched], found["synthetic"][searched])
        lines.append(f"\nover the {paired['n']} clusters on searched real sky: recall real minus synthetic "
                     f"{100 * paired['difference']:+.1f} points, 95 % interval +-{100 * paired['half_width']:.1f} "
                     f"(found only on the real sky {paired['only_a']}, only on the synthetic {paired['only_b']}; "
                     f"McNemar's exact p = {paired['pvalue']:.2f})")
    lines.append(f"\nwhere the clusters not found at {cut:g} were lost (`deepcee_d2.evaluation.purity.loss_stages`; "
                 "per cluster: lost_real, lost_synthetic), over the clusters on searched real sky\n\n| sky | "
                 + " | ".join(LOSS_STAGES) + " |\n|---|" + "---:|" * len(LOSS_STAGES))
    for name in skies:
        lost = np.asarray(clusters[f"lost_{name}"])[searched]
        lines.append(f"| {name} | " + " | ".join(str(np.sum(lost == stage)) for stage in LOSS_STAGES) + " |")
    fields = np.array([name.rsplit("-c", 1)[0] for name in clusters["real_id"]])
    lines.append("\n| real field | recall real | recall synthetic | on crowded (masked) real sky |\n|---|---:|---:|---:|")
    for name in np.unique(fields):
        mine = fields == name
        lines.append(f"| {name} | {np.sum(found['real'] & mine)}/{np.sum(mine)} | "
                     f"{np.sum(found['synthetic'] & mine)}/{np.sum(mine)} | {np.sum(~searched & mine)} |")
    lines.append(f"\nfalse candidates at {cut:g} by what they lie on ({false_file}): within "
                 f"{crossmatch_radius_kpc:g} kpc of a cluster known on the real sky (--known), else of a detection "
                 f">= {cut:g} of the same sky without injection (the sky's own object), else within "
                 f"{PIECE_RADIUS:.0f} of an injected cluster (a piece of it), else other; per cluster over the "
                 "clusters on each sky's searched area, all and those on no known cluster\n\n| sky | false | "
                 "per cluster | on no known cluster, per cluster | " + " | ".join(FALSE_KINDS) + " |\n|---|"
                 + "---:|" * (3 + len(FALSE_KINDS)))
    for name in skies:
        kinds = np.asarray(false["kind"])[np.asarray(false["sky"]) == name]
        lines.append(f"| {name} | {len(kinds)} | {ratio(len(kinds), n_true[name])} | "
                     f"{ratio(n_unknown[name], n_true[name])} | "
                     + " | ".join(str(np.sum(kinds == kind)) for kind in FALSE_KINDS) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Several runs of `bench_injection.py` pooled: one sample of the per-cluster results each run wrote, so that
rounds added in a later run (other ``--seed``) count together (BENCHMARKS.md, "Forty rounds of the SEED-8
model"). Reads only each ``--work`` folder's ``clusters.ecsv`` and ``false_candidates.ecsv``; runs nothing.

  PYTHONPATH=$PWD .venv/bin/python benchmarks/pool_injection.py WORK [WORK ...] [--config-file CONFIG]

Each run must have been made with the same weights and settings, and with the survey threshold of ``CONFIG``
(``DEEPCEE.SURVEY.SCORE_THRESHOLD``: the threshold its false candidates and loss stages were counted at);
rounds of different runs must be different rounds (other seeds). Prints one row per run and the pooled tables
of `bench_injection.survey_threshold_summary`.
"""
import argparse
from pathlib import Path

import numpy as np
from astropy.table import Table, vstack

# This folder is on the path when run as a script.
from bench_injection import REPO, ratio, survey_threshold_summary, threshold_counts
from deepcee_d2.config import load_config
from deepcee_d2.evaluation.purity import paired_recall_difference


def read_run(work):
    """A bench run's per-cluster and false-candidate tables, each with a ``run`` column (the folder)."""
    tables = []
    for name in ("clusters.ecsv", "false_candidates.ecsv"):
        path = Path(work) / name
        if not path.is_file():
            raise ValueError(f"{work}: no {name}; is it the --work folder of a finished bench_injection.py run?")
        table = Table.read(path, format="ascii.ecsv")
        table["run"] = str(work)
        tables.append(table)
    return tables


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("works", nargs="+", type=Path, help="--work folders of bench_injection.py runs")
    parser.add_argument("--config-file", default=str(REPO / "configs" / "deepcee_demo_cpu.yaml"))
    args = parser.parse_args(argv)
    cfg = load_config(args.config_file)
    cut = cfg.DEEPCEE.SURVEY.SCORE_THRESHOLD
    runs = [read_run(work) for work in args.works]
    print("| run | real: found | twins: found | real - twins (points) | only real / only twins | "
          "false per cluster, real / twins | on no known cluster, real |\n|---|---:|---:|---:|---:|---:|---:|")
    for work, (clusters, false) in zip(args.works, runs):
        searched, found, n_true, n_false, n_unknown = threshold_counts(clusters, false, cut)
        paired = paired_recall_difference(found["real"][searched], found["synthetic"][searched])
        print(f"| {work} | {np.sum(found['real'][searched])} / {paired['n']} | "
              f"{np.sum(found['synthetic'][searched])} / {paired['n']} | {100 * paired['difference']:+.1f} | "
              f"{paired['only_a']} / {paired['only_b']} | "
              f"{ratio(n_false['real'], n_true['real'])}; {ratio(n_false['synthetic'], n_true['synthetic'])} | "
              f"{ratio(n_unknown['real'], n_true['real'])} |")
    clusters = vstack([clusters for clusters, _ in runs], metadata_conflicts="silent")
    false = vstack([false for _, false in runs if len(false)], metadata_conflicts="silent")
    print(f"\npooled: {len(clusters)} clusters of {len(runs)} runs\n")
    print(survey_threshold_summary(clusters, false, cut, "per cluster: each run's clusters.ecsv",
                                   "per candidate: each run's false_candidates.ecsv",
                                   cfg.DEEPCEE.EVAL.CROSSMATCH_RADIUS_KPC))


if __name__ == "__main__":
    main()

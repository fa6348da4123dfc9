#!/usr/bin/env python
"""The main job on the embedded default (make demo): synthetic sky -> data set -> trained Deep-CEE ->
100 kpc evaluation -> candidate catalogue of a held-out region. Rerunning resumes. See deepcee_d2.demo.

  tools/run_demo.py [--work-dir demo] [--workers 2] [KEY VALUE ...]

Trailing KEY VALUE pairs override the demo config (configs/deepcee_demo_cpu.yaml) for every step, as
tools/train_net.py's do: e.g. `SEED 8` trains a second run from other initial weights and data order.
Resuming a work folder whose training had other settings is refused.
"""
import argparse
from pathlib import Path

from deepcee_d2.demo import DemoPlan, run_demo, summary_text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", type=Path, default=DemoPlan.work_dir, help="where everything is written")
    parser.add_argument("--workers", type=int, default=DemoPlan.workers, help="processes for the sky and the survey")
    parser.add_argument("--empty-fields", type=int, default=DemoPlan.n_empty_fields,
                        help="training fields without clusters, 4 blank images each (experiments; see DemoPlan)")
    parser.add_argument("--group-fields", type=int, default=DemoPlan.n_group_fields,
                        help="training fields with an unlabelled group below the richness cut, 4 images each")
    parser.add_argument("--neighbours", type=int, default=DemoPlan.neighbours_per_field,
                        help="more clusters at random in each training field, annotated where its images hold them")
    parser.add_argument("--precision", choices=("auto", "float32", "bfloat16"), default=DemoPlan.precision,
                        help="MODEL.INCEPTION_V2.PRECISION; auto: bfloat16 where the CPU computes it natively")
    parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE",
                        help="config overrides for every step, as tools/train_net.py's (e.g. SEED 8)")
    args = parser.parse_args(argv)
    result = run_demo(DemoPlan(work_dir=args.work_dir, workers=args.workers, n_empty_fields=args.empty_fields,
                               n_group_fields=args.group_fields, neighbours_per_field=args.neighbours,
                               precision=args.precision, config_opts=tuple(args.opts)))
    print(summary_text(result))
    return result


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Completeness of a trained model against redshift (0.05 - 0.4) and richness (BENCHMARKS.md, "Main job").
# The demo and paper-geometry runs train on 0.1 < z < 0.2, >= 20 members; this tests a model on clusters it
# never saw, of any redshift in 0.05 - 0.4 and R_L* drawn in 20 - 100 (no member cut; the measured richness
# spans ~15 - 110), one per field at the centre, 2 images per cluster with offsets up to 40" (so that a
# z = 0.05 cluster's box fits the cutout), at the config's geometry and colour, boxes of BOX_KPC. Then the
# 100 kpc evaluation of all of them and completeness in fixed bins.
#     bash benchmarks/completeness_vs_z.sh CONFIG WEIGHTS BOX_KPC [OUT_FOLDER] [N_FIELDS]
# e.g. the demo's model: configs/deepcee_demo_cpu.yaml demo/train/model_final.pth 300
set -euo pipefail
config=${1:?a config, e.g. configs/deepcee_demo_cpu.yaml}
weights=$(realpath "${2:?trained weights, e.g. demo/train/model_final.pth}")
box_kpc=${3:?box side in kpc, as in training: 300 for the demo, 500 for the paper geometry}
work=${4:-/tmp/deepcee_completeness}
fields=${5:-120}
py=.venv/bin/python
mkdir -p "$work"
cutout=$($py -c "from deepcee_d2.config import load_config; print(load_config('$config').DEEPCEE.COLOUR.CUTOUT_SIZE)")
/usr/bin/time -f "sky: wall %e s" $py tools/make_synthetic_sky.py "$work/sky" --n-fields "$fields" \
    --size $((cutout + 300)) --clusters-per-field 1 --cluster-placement centre --z-range 0.05 0.4 --richness-range 20 100 \
    --grid-origin 250 40 --seed 7 --workers 2 --no-progress --no-source-lists
/usr/bin/time -f "data set: wall %e s" $py tools/prepare_dataset.py --catalog "$work/sky/clusters.fits" \
    --source synthetic --imaging "$work/sky" --out "$work/datasets/synthetic" --split test --n-offsets 2 \
    --max-offset 40 --box-size-kpc "$box_kpc" --no-cache --no-progress --config-file "$config"
DEEPCEE_DATASETS="$work/datasets" /usr/bin/time -f "evaluation: wall %e s" $py tools/train_net.py \
    --config-file "$config" --eval-only MODEL.WEIGHTS "$weights" MODEL.DEVICE cpu \
    DATASETS.TEST '("deepcee_synthetic_test",)' OUTPUT_DIR "$work/eval" > "$work/eval.log" 2>&1
$py - "$work/eval/inference/deepcee_synthetic_test" <<'PY'
import json, sys
from astropy.table import Table
from deepcee_d2.evaluation.report import completeness_table, flat_metrics

folder = sys.argv[1]
summary = json.load(open(f"{folder}/evaluation.json"))
best = summary["best"]
print(f"{summary['n_true']} true clusters; best threshold {100 * best['threshold']:.0f} %: precision "
      f"{best['precision']:.3f} recall {best['recall']:.3f} F1 {best['f1']:.3f}; "
      f"centring error {flat_metrics(summary)['centring_error_kpc']:.1f} kpc")
truths = Table.read(f"{folder}/true_clusters.ecsv")
for name, bins in (("z", [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4]), ("richness", [10, 20, 30, 40, 60, 120])):
    table = completeness_table(truths[name], truths["recovered"], bins=bins)
    print(f"\n| {name} | clusters x images | recovered | completeness (1 sigma) |\n| --- | --- | --- | --- |")
    for row in table:
        print(f"| {row['lower']:g} - {row['upper']:g} | {row['n_true']} | {row['n_recovered']} | "
              f"{row['completeness']:.2f} ({row['completeness_low']:.2f} - {row['completeness_high']:.2f}) |")
PY

#!/usr/bin/env bash
# The paper's configuration on the synthetic sky, as long a CPU run as a session allows (BENCHMARKS.md, "Main job").
# Everything of configs/deepcee_inception_v2_sdss.yaml (2000 px cutouts shown at 1000 px, offsets up to 270",
# 500 kpc boxes, 64-512 px anchors, 300 proposals, 64 ROIs, ...) except: the synthetic sky instead of SDSS + WHL12
# (N_FIELDS clusters at 0.1 < z < 0.2 with >= 20 members, 20 % held out by cluster), and the demo's from-scratch
# optimiser (lr 0.01, 100-iteration warm-up, x0.1 for the last fifth) because the paper's lr 2e-4 assumes the
# COCO-trained weights, which cannot be downloaded here. Resumes when run again with the same arguments.
#     bash benchmarks/paper_geometry_cpu.sh [OUT_FOLDER] [N_FIELDS] [MAX_ITER]
set -euo pipefail
work=${1:-/tmp/deepcee_paper_geometry}
fields=${2:-60}
iterations=${3:-1000}
py=.venv/bin/python
mkdir -p "$work"
/usr/bin/time -f "sky: wall %e s" $py tools/make_synthetic_sky.py "$work/sky" --n-fields "$fields" --size 3400 \
    --clusters-per-field 1 --cluster-placement centre --z-range 0.1 0.2 --min-members 20 --grid-origin 300 40 \
    --seed 11 --workers 2 --no-progress --no-source-lists
/usr/bin/time -f "data set: wall %e s" $py tools/prepare_dataset.py --catalog "$work/sky/clusters.fits" \
    --source synthetic --imaging "$work/sky" --out "$work/datasets/synthetic" --test-fraction 0.2 --no-cache \
    --no-progress --config-file configs/deepcee_inception_v2_sdss.yaml
DEEPCEE_DATASETS="$work/datasets" /usr/bin/time -f "training + evaluation: wall %e s" $py tools/train_net.py \
    --config-file configs/deepcee_inception_v2_sdss.yaml --resume MODEL.DEVICE cpu \
    DATASETS.TRAIN '("deepcee_synthetic_train",)' DATASETS.TEST '("deepcee_synthetic_test",)' \
    DATALOADER.NUM_WORKERS 1 SOLVER.BASE_LR 0.01 SOLVER.WARMUP_ITERS 100 SOLVER.MAX_ITER "$iterations" \
    SOLVER.STEPS "($((iterations * 4 / 5)),)" SOLVER.CHECKPOINT_PERIOD 100 TEST.EVAL_PERIOD 0 SEED 7 \
    OUTPUT_DIR "$work/train" > "$work/train.log" 2>&1
grep -A16 "Precision, recall" "$work/train/inference/deepcee_synthetic_test/report.md"
grep "Centring standard error" "$work/train/inference/deepcee_synthetic_test/report.md"

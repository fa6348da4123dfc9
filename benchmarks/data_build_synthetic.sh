#!/usr/bin/env bash
# Sizes and times of a small synthetic data set (BENCHMARKS.md and datasets/README.md, "Data sets"):
# 20 fields of 1600 x 1600 px with one cluster each at the field centre, 0.1 < z < 0.2, then 80 images
# (1000 px cutouts -> 500 px network images, offsets up to 100"), then the same command again (resume).
#     bash benchmarks/data_build_synthetic.sh [WORK_FOLDER]
set -euo pipefail
work=${1:-/tmp/deepcee_synthetic_benchmark}
py=.venv/bin/python
rm -rf "$work" && mkdir -p "$work"
/usr/bin/time -f "make_synthetic_sky: wall %e s, user %U s, max RSS %M KB" \
    $py tools/make_synthetic_sky.py "$work/sky" --n-fields 20 --size 1600 --clusters-per-field 1 \
    --cluster-placement centre --z-range 0.1 0.2 --seed 1 --no-progress
prepare=($py tools/prepare_dataset.py --catalog "$work/sky/clusters.fits" --source synthetic --imaging "$work/sky"
         --out "$work/synthetic" --cutout-size 1000 --network-size 500 --max-offset 100 --no-progress)
/usr/bin/time -f "prepare_dataset: wall %e s, user %U s, max RSS %M KB" "${prepare[@]}"
/usr/bin/time -f "prepare_dataset again (resume): wall %e s" "${prepare[@]}"
/usr/bin/time -f "import deepcee_d2: wall %e s" $py -c "import deepcee_d2"
du -sh "$work/sky" "$work/synthetic/images" "$work/synthetic/cutouts" "$work/synthetic/train.json" "$work/synthetic/test.json"
$py - "$work/synthetic" <<'PY'
import json, sys
for split in ("train", "test"):
    coco = json.load(open(f"{sys.argv[1]}/{split}.json"))
    widths = sorted(a["bbox"][2] for a in coco["annotations"])
    print(f"{split}: {len(coco['images'])} images, {len(coco['annotations'])} boxes, "
          f"box width {widths[0]:.0f}-{widths[-1]:.0f} px")
PY

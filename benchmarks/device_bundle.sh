#!/usr/bin/env bash
# What the device machine of this workplace (Python 3.12 with PyTorch, torchvision, numpy, scipy, opencv,
# matplotlib, Pillow; no package index) lacks to train and evaluate the demo, as one folder to carry (41 MB of
# the device tool's 64 MiB): the compiled packages as CPython 3.12 manylinux wheels from PyPI, unpacked and
# stripped of debug symbols (GalSim's library is 199 MB with them, 4 MB without), and the pure-Python ones
# (detectron2 as scripts/install_detectron2.py built it, fvcore, ...) copied from .venv. Run here, in the
# repository; then carry BUNDLE and put it first on PYTHONPATH there (benchmarks/device_seeds.py).
#     bash benchmarks/device_bundle.sh [BUNDLE=.d2site]
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=${1:-.d2site}
site=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
version() { .venv/bin/python -c "import importlib.metadata as m; print(m.version('$1'))"; }
grep -qx "/$bundle/" .git/info/exclude 2>/dev/null || echo "/$bundle/" >> .git/info/exclude
rm -rf "$bundle" && mkdir -p "$bundle"
compiled=()
for package in GalSim LSSTDESC.Coord astropy pyerfa astropy-iers-data pycocotools sep; do
  compiled+=("$package==$(version "$package")")
done
python3 -m pip install -q --no-deps --no-compile --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --target "$bundle" "${compiled[@]}"
rm -rf "$bundle/bin" "$bundle/galsim/share/roman" "$bundle/galsim/share/sensors" "$bundle/galsim/include"
# astropy imports astropy.tests at start-up; its subpackages' tests are not needed.
find "$bundle/astropy" -mindepth 2 -type d -name tests -prune -exec rm -rf {} +
find "$bundle" -name "*.so*" -type f -exec strip --strip-unneeded {} \;
for package in detectron2 fvcore iopath yacs termcolor omegaconf hydra antlr4; do
  cp -r "$site/$package" "$bundle/"
done
find "$bundle" -name __pycache__ -prune -exec rm -rf {} +
du -sh "$bundle"

#!/usr/bin/env bash
# Set up everything deepcee_d2 needs, on a fresh machine or an existing one; safe to re-run (a no-op when
# nothing changed). Creates the virtual environment .venv (DEEPCEE_VENV overrides), installs PyTorch unless
# one is importable there, detectron2 by the first route that works (scripts/install_detectron2.py), then
# this package with its extras in editable mode.
#   DEEPCEE_VENV=path           where the environment lives (default .venv in the repository)
#   DEEPCEE_TORCH="torch==... torchvision==..."   the PyTorch pair to install into a new environment
#   DEEPCEE_DETECTRON2_ROUTE=auto|installed|git|sdist   see scripts/install_detectron2.py
#   DEEPCEE_EXTRAS=sim,survey,data,test                 extras of this package to install
#   DEEPCEE_SETUP_FREE_GB=8     free disk (GB) required before installing PyTorch into a new environment
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${DEEPCEE_VENV:-.venv}
TORCH=${DEEPCEE_TORCH:-"torch==2.14.1 torchvision==0.29.1"}
ROUTE=${DEEPCEE_DETECTRON2_ROUTE:-auto}
EXTRAS=${DEEPCEE_EXTRAS:-sim,survey,data,test}
STAMP="$VENV/.deepcee-setup"
wanted=$( { cat setup.py scripts/setup_env.sh scripts/install_detectron2.py scripts/detectron2_C_stub.py;
            echo "$TORCH $ROUTE $EXTRAS"; } | sha256sum | cut -c1-16)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$wanted" ]; then
  echo "[setup_env] $VENV is up to date"
  exit 0
fi

say() { echo "[setup_env] $*"; }
[ -x "$VENV/bin/python" ] || { say "creating $VENV"; "${PYTHON:-python3}" -m venv "$VENV"; }
PY="$VENV/bin/python"
# No pip cache: it would hold a second copy of every downloaded wheel on the same disk.
pip_install() { "$PY" -m pip install --no-cache-dir --disable-pip-version-check --progress-bar off "$@"; }

if "$PY" -c "import torch, torchvision" 2>/dev/null; then
  say "keeping $("$PY" -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__)')"
else
  # PyPI's torch wheel brings the CUDA libraries even to CPU machines: the environment takes ~7.6 GB
  # (BENCHMARKS.md, Set-up). Fail before pip does, with the reason, rather than on a half-written venv.
  need_gb=${DEEPCEE_SETUP_FREE_GB:-8}
  free_gb=$(df -Pk "$VENV" | awk 'NR==2 {print int($4 / 1048576)}')
  if [ "$free_gb" -lt "$need_gb" ]; then
    say "error: $VENV is on a disk with $free_gb GB free; installing $TORCH needs about $need_gb GB." >&2
    say "Free space there, set DEEPCEE_VENV to a larger disk, or install a PyTorch of your own into $VENV first." >&2
    exit 1
  fi
  say "installing $TORCH"
  # shellcheck disable=SC2086
  pip_install $TORCH
fi
"$PY" scripts/install_detectron2.py --route "$ROUTE"
say "installing deepcee_d2[$EXTRAS] (editable)"
pip_install -e ".[$EXTRAS]"
echo "$wanted" > "$STAMP"
say "done: activate with 'source $VENV/bin/activate'"

"""scripts/setup_env.sh refuses, with its reason, to start a PyTorch install that the disk cannot hold."""
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_setup_stops_before_installing_torch_on_a_full_disk(tmp_path):
    venv = tmp_path / "venv"
    env = dict(os.environ, DEEPCEE_VENV=str(venv), DEEPCEE_SETUP_FREE_GB=str(10**9))
    done = subprocess.run(["bash", "scripts/setup_env.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 1
    assert f"{venv} is on a disk with" in done.stderr and "GB free" in done.stderr
    assert not list(venv.glob("lib/python*/site-packages/torch"))
    assert not (venv / ".deepcee-setup").exists()

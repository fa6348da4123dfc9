"""Instant training runs on CPU: the loss falls, checkpoints are written, --resume continues them,
--eval-only evaluates a written checkpoint with the 100 kpc evaluator. One instant model serves every test
(conftest's ``instant_model``)."""
import json
import re
import runpy
from pathlib import Path

import pytest

from deepcee_d2.config import load_config
from deepcee_d2.engine import Trainer
from deepcee_d2.engine.trainer import TRAINING_SETTINGS_FILE

REPO = Path(__file__).resolve().parents[1]
INSTANT = REPO / "configs" / "deepcee_instant_test.yaml"


def train_net_main(*argv):
    """Run tools/train_net.py's main() in this process (so the toy data sets registered here are seen)."""
    script = runpy.run_path(str(REPO / "tools" / "train_net.py"))
    args = script["default_argument_parser"]().parse_args(["--config-file", str(INSTANT), *argv])
    return script["main"](args)


@pytest.fixture
def trained(instant_model):
    return instant_model


def test_instant_training_loss_falls(trained):
    output, losses = trained
    assert len(losses) == 30
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    print(f"total loss: first 5 iterations {first:.3f}, last 5 {last:.3f}")
    assert last < 0.7 * first
    assert (output / "model_final.pth").is_file() and (output / "model_0000014.pth").is_file()
    assert (output / "last_checkpoint").read_text().strip() == "model_final.pth"


def test_resume_continues_from_the_last_iteration(trained, tmp_path):
    output, _ = trained
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    for name in ("model_final.pth", "last_checkpoint", TRAINING_SETTINGS_FILE):
        (resumed / name).write_bytes((output / name).read_bytes())
    cfg = load_config(INSTANT, ["OUTPUT_DIR", str(resumed), "SOLVER.MAX_ITER", "36"])  # a longer schedule may resume
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=True)
    assert trainer.start_iter == 30

    # The command-line entry point does the same: it trains iterations 30..35 only.
    train_net_main("--resume", "OUTPUT_DIR", str(resumed), "SOLVER.MAX_ITER", "36")
    records = [json.loads(line) for line in (resumed / "metrics.json").read_text().splitlines()]
    iterations = [record["iteration"] for record in records if "total_loss" in record]
    assert min(iterations) >= 30 and max(iterations) == 35
    assert (resumed / "last_checkpoint").read_text().strip() == "model_final.pth"


def test_a_resume_with_other_training_settings_is_refused(trained, tmp_path):
    output, _ = trained
    for name in ("model_final.pth", "last_checkpoint", TRAINING_SETTINGS_FILE):
        (tmp_path / name).write_bytes((output / name).read_bytes())
    record = (tmp_path / TRAINING_SETTINGS_FILE).read_text()
    assert json.loads(record)["SOLVER.BASE_LR"] == load_config(INSTANT).SOLVER.BASE_LR
    # Test-time keys and the device do not count; the learning rate and the seed do.
    fine = ["OUTPUT_DIR", str(tmp_path), "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.3", "INPUT.MIN_SIZE_TEST", "64",
            "DEEPCEE.SURVEY.SCORE_THRESHOLD", "0.7", "MODEL.DEVICE", "cpu"]
    Trainer(load_config(INSTANT, fine)).resume_or_load(resume=True)
    cfg = load_config(INSTANT, fine + ["SOLVER.BASE_LR", "0.5", "SEED", "123"])
    refused = rf"{re.escape(str(tmp_path))}: .*other settings \(.*\): SEED 1 there, 123 now; SOLVER.BASE_LR .* there, 0.5 now"
    with pytest.raises(ValueError, match=refused):
        Trainer(cfg).resume_or_load(resume=True)
    assert (tmp_path / TRAINING_SETTINGS_FILE).read_text() == record  # the record is left as it was
    (tmp_path / TRAINING_SETTINGS_FILE).write_text("[1, 2]")
    with pytest.raises(ValueError, match=rf"{TRAINING_SETTINGS_FILE}: not a training-settings record"):
        Trainer(cfg).resume_or_load(resume=True)
    # Without a resume the folder is trained afresh, and its record is the new settings'.
    Trainer(cfg).resume_or_load(resume=False)
    assert json.loads((tmp_path / TRAINING_SETTINGS_FILE).read_text())["SOLVER.BASE_LR"] == 0.5


def test_eval_only_from_the_written_checkpoint_writes_the_report(trained, tmp_path):
    output, _ = trained
    results = train_net_main("--eval-only", "MODEL.WEIGHTS", str(output / "model_final.pth"),
                             "OUTPUT_DIR", str(tmp_path))
    metrics = results["deepcee"]
    assert metrics["n_true"] == 6  # one cluster in each of the 6 test images
    report = tmp_path / "inference" / "deepcee_toy_test"
    summary = json.loads((report / "evaluation.json").read_text())
    # The same numbers as the evaluation at the end of training, of the same weights in memory: the checkpoint
    # was loaded (a model that ignored it would predict other boxes and scores).
    at_end = json.loads((output / "inference" / "deepcee_toy_test" / "evaluation.json").read_text())
    assert summary["n_predictions"] == at_end["n_predictions"] > 0
    assert summary["thresholds"] == at_end["thresholds"]
    assert summary["centre_distances_kpc"] == pytest.approx(at_end["centre_distances_kpc"], rel=1e-4)
    assert metrics["f1"] == at_end["best"]["f1"] and metrics["f1-0"] == at_end["thresholds"][0]["f1"]
    written = {p.name for p in report.iterdir()}
    for name in ("evaluation.json", "report.md", "precision_recall.png", "centre_distances.png",
                 "recovered_vs_all_z.png", "recovered_vs_all_bcg_rmag.png", "recovered_vs_all_richness.png",
                 "completeness_z.png", "completeness_richness.png"):
        assert name in written, name
    assert set(summary["files"]) <= written
    assert len(summary["thresholds"]) == 11  # thresholds 0, 10, ..., 100 %


def test_the_training_model_is_channels_last_on_cpu_with_the_same_features():
    import copy

    import torch

    cfg = load_config(INSTANT)
    model = Trainer.build_model(cfg)
    weights = [p for p in model.parameters() if p.dim() == 4]
    assert weights and all(w.is_contiguous(memory_format=torch.channels_last) for w in weights)
    assert not all(w.is_contiguous() for w in weights)  # not merely 1x1 kernels, which are both
    contiguous = copy.deepcopy(model).to(memory_format=torch.contiguous_format).eval()
    image = torch.rand(1, 3, 96, 128)
    with torch.no_grad():
        torch.testing.assert_close(model.eval().backbone(image), contiguous.backbone(image), rtol=1e-4, atol=1e-4)

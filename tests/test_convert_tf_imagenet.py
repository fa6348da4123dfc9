"""tools/convert_tf_checkpoint.py on a TF-slim ImageNet inception_v2 checkpoint in TensorFlow's V1 format.

tests/tf_reference.py (run in its own process) builds TF-slim's own inception_v2 with random weights, saves a V1
checkpoint and its Mixed_4e and Mixed_5c outputs; the command-line tool's main converts it (in the test process).
Float32, max absolute difference < 1e-4. Skips without TensorFlow and TF-slim (pip install -e '.[convert]').
"""
import contextlib
import io
import runpy
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from deepcee_d2.config import load_config
from test_convert_tf_checkpoint import (
    BASE,
    COCO_INIT,
    TOLERANCE,
    loaded_model,
    max_difference,
    nchw,
    needs_tf,
    run_tf_reference,
)

CONVERTER = Path(__file__).resolve().parents[1] / "tools" / "convert_tf_checkpoint.py"


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
    """A random TF-slim ImageNet inception_v2 (V1 checkpoint), converted by the command-line tool."""
    folder = tmp_path_factory.mktemp("tf_imagenet")
    checkpoint, reference = run_tf_reference(folder, "classification", "V1")
    weights = folder / "imagenet.pth"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):  # the command's main, in this process
        runpy.run_path(str(CONVERTER))["main"]([str(checkpoint), str(weights)])
    cfg = load_config(COCO_INIT, ["MODEL.DEVICE", "cpu"])
    return SimpleNamespace(checkpoint=checkpoint, reference=reference, weights=weights, stdout=stdout.getvalue(),
                           model=loaded_model(cfg, weights))


@needs_tf
def test_imagenet_v1_checkpoint_through_the_command_line(imagenet):
    model, reference = imagenet.model, imagenet.reference
    assert "classification checkpoint" in imagenet.stdout
    assert "[RPN: not in an ImageNet checkpoint]: 6" in imagenet.stdout
    assert "[ImageNet classifier: not part of a detector]: 2" in imagenet.stdout
    pixels = torch.from_numpy(reference["pixels"][0]).permute(2, 0, 1)
    with torch.no_grad():
        mixed_4e = model.backbone(model.preprocess_image([{"image": pixels}]).tensor)["Mixed_4e"]
        head = model.roi_heads.res5
        mixed_5c = head.Mixed_5c(head.Mixed_5b(head.Mixed_5a(nchw(reference["mixed_4e"]))))
    assert max_difference(mixed_4e, nchw(reference["mixed_4e"])) < TOLERANCE
    assert max_difference(mixed_5c, nchw(reference["mixed_5c"])) < TOLERANCE
    # TF-slim's separable stem has biases, no batch norm: an identity norm carrying the bias
    saved = torch.load(imagenet.weights, weights_only=True)["model"]
    assert torch.equal(saved["backbone.Conv2d_1a_7x7.norm.running_mean"], torch.zeros(64))
    assert torch.equal(saved["backbone.Conv2d_1a_7x7.norm.weight"], torch.ones(64))
    # the same file through DetectionCheckpointer into a model with trainable batch norm (Base-DeepCEE.yaml)
    state = loaded_model(load_config(BASE, ["MODEL.DEVICE", "cpu"]), imagenet.weights).state_dict()
    assert all(torch.equal(state[key], value) for key, value in saved.items())
    assert all(key.startswith(("proposal_generator.", "roi_heads.box_predictor.")) or
               key.endswith("num_batches_tracked") for key in set(state) - set(saved))


def test_command_line_reports_a_missing_checkpoint_clearly(tmp_path):
    # In this process: sys.exit(message) is what makes the command print the message and exit with status 1.
    main = runpy.run_path(str(CONVERTER))["main"]
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path / "nothing.ckpt"), str(tmp_path / "o.pth"), "MODEL.ROI_HEADS.NUM_CLASSES", "2",
              "--keep-coco-classes", "1", "3"])
    assert exit_.value.code == (
        f"convert_tf_checkpoint: {tmp_path / 'nothing.ckpt'}: no TensorFlow checkpoint here (looked for "
        f"{tmp_path / 'nothing.ckpt'}, {tmp_path / 'nothing.ckpt'}.index and a folder); give the checkpoint "
        "prefix, e.g. .../model.ckpt")
    assert not (tmp_path / "o.pth").exists()



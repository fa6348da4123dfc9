"""deepcee_d2.convert and tools/convert_tf_checkpoint.py: TensorFlow Inception-v2 checkpoints into our model.

TensorFlow runs only in subprocesses: tests/tf_reference.py builds a random faster_rcnn_inception_v2 (TF-slim
layers, the object-detection API's variable names) or TF-slim ImageNet inception_v2, saves its checkpoint and its
outputs; the converter reads checkpoints in a process of its own. Outputs are compared in float32, max absolute
difference < 1e-4. Tests that need TensorFlow skip when it or TF-slim is missing (pip install -e '.[convert]').
"""
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import deepcee_d2  # noqa: F401  (registers the model's parts)
from deepcee_d2.config import load_config
from deepcee_d2.convert import (
    TFAnchorGrid,
    conversion_targets,
    convert_variables,
    read_tf_checkpoint,
    save_detectron2_checkpoint,
)
from deepcee_d2.convert.tf_checkpoint import (
    anchor_permutation,
    check_config_for_tf_weights,
    depthwise_weight,
    rpn_objectness,
)
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(__file__).with_name("tf_reference.py")
COCO_INIT = REPO / "configs" / "deepcee_inception_v2_sdss_coco_init.yaml"
BASE = REPO / "configs" / "Base-DeepCEE.yaml"
TOLERANCE = 1e-4  # max absolute difference, float32 on both sides
KEPT_COCO_CLASSES = (5, 1)  # two COCO classes, out of order, so that index slips show

TF_MISSING = [name for name in ("tensorflow", "tf_slim") if importlib.util.find_spec(name) is None]
needs_tf = pytest.mark.skipif(bool(TF_MISSING), reason=f"{' and '.join(TF_MISSING)} not installed; "
                              "pip install -e '.[convert]' to compare the converter with TensorFlow")


def run_tf_reference(folder, kind, checkpoint_format):
    """Run tests/tf_reference.py; return the checkpoint prefix and its reference outputs."""
    result = subprocess.run([sys.executable, str(REFERENCE), str(folder), "--kind", kind,
                             "--format", checkpoint_format], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    with np.load(folder / "reference.npz") as data:
        return folder / "model.ckpt", {name: data[name] for name in data.files}


def nchw(array):
    return torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2)))


def max_difference(ours, theirs):
    return float(np.abs(np.asarray(ours, dtype=np.float64) - np.asarray(theirs, dtype=np.float64)).max())


def yxyx_to_xyxy(boxes):
    return boxes[..., [1, 0, 3, 2]]


def loaded_model(cfg, weights):
    model = build_model(cfg)
    DetectionCheckpointer(model).load(str(weights))
    return model.eval()


@pytest.fixture(scope="module")
def detection(tmp_path_factory):
    """A random COCO-style faster_rcnn_inception_v2 (V2 checkpoint), converted keeping COCO classes 5 and 1."""
    folder = tmp_path_factory.mktemp("tf_detection")
    checkpoint, reference = run_tf_reference(folder, "detection", "V2")
    variables, prefix = read_tf_checkpoint(folder)  # the folder: TF finds the prefix in its 'checkpoint' file
    cfg = load_config(COCO_INIT, ["MODEL.DEVICE", "cpu", "MODEL.ROI_HEADS.NUM_CLASSES", "2"])
    targets = conversion_targets(cfg)
    conversion = convert_variables(variables, **targets, coco_class_ids=KEPT_COCO_CLASSES, source=prefix)
    weights = save_detectron2_checkpoint(conversion, folder / "converted.pth")
    return SimpleNamespace(checkpoint=checkpoint, prefix=prefix, variables=variables, targets=targets,
                           reference=reference, conversion=conversion, weights=weights,
                           model=loaded_model(cfg, weights))


@needs_tf
def test_backbone_mixed_4e_equals_tensorflow_from_raw_pixels(detection):
    model, reference = detection.model, detection.reference
    pixels = torch.from_numpy(reference["pixels"][0]).permute(2, 0, 1)  # RGB 0-255; TF applies (2/255) x - 1
    with torch.no_grad():
        features = model.backbone(model.preprocess_image([{"image": pixels}]).tensor)["Mixed_4e"]
    assert features.shape == (1, 576, 10, 12)
    assert max_difference(features, nchw(reference["mixed_4e"])) < TOLERANCE


@needs_tf
def test_box_head_mixed_5c_equals_tensorflow_on_crops(detection):
    model, reference = detection.model, detection.reference
    with torch.no_grad():
        mixed_5c = model.roi_heads.res5(nchw(reference["crops"]))
    assert mixed_5c.shape == (3, 1024, 4, 4)
    assert max_difference(mixed_5c, nchw(reference["mixed_5c"])) < TOLERANCE
    assert max_difference(mixed_5c.mean(dim=(2, 3)), reference["box_features"]) < TOLERANCE


def rpn_against_tensorflow(model, reference, suffix):
    """Our RPN on TF's Mixed_4e (times the reference's factor): objectness logits and decoded boxes per anchor,
    paired with TF's anchor of the same coordinates, and TF's (l_object - l_background) and boxes."""
    features = nchw(reference["mixed_4e"]) * (float(reference["large_factor"]) if suffix else 1.0)
    rpn = model.proposal_generator
    with torch.no_grad():
        logits, deltas = rpn.rpn_head([features])
        anchors = rpn.anchor_generator([features])[0].tensor
    n_anchors = logits[0].shape[1]
    logits = logits[0].permute(0, 2, 3, 1).reshape(-1)
    deltas = deltas[0].view(1, n_anchors, 4, *deltas[0].shape[-2:]).permute(0, 3, 4, 1, 2).reshape(-1, 4)
    boxes = rpn.box2box_transform.apply_deltas(deltas, anchors).numpy()
    tf_anchors = yxyx_to_xyxy(reference["anchors"])
    distance = np.abs(anchors.numpy()[:, None, :] - tf_anchors[None, :, :]).max(axis=2)
    pairs = distance.argmin(axis=1)
    assert distance.min(axis=1).max() < 1e-3 and len(set(pairs)) == len(pairs)
    tf_logits = reference[f"rpn_class_logits{suffix}"]
    return (logits.numpy(), tf_logits[pairs, 1] - tf_logits[pairs, 0], boxes,
            yxyx_to_xyxy(reference[f"rpn_boxes{suffix}"])[pairs])


@needs_tf
def test_rpn_objectness_and_proposals_equal_tensorflow(detection):
    reference = detection.reference
    # Premise: TF's 3x3 conv output stays below 6, where its ReLU6 and our head's ReLU agree.
    assert reference["rpn_pre_activation_max"] < 6.0
    logits, tf_logits, boxes, tf_boxes = rpn_against_tensorflow(detection.model, reference, "")
    assert max_difference(logits, tf_logits) < TOLERANCE
    # Boxes reach ~700 px: float32 rounding of the decoding (exp, products) leaves ~5e-4 px.
    assert max_difference(boxes, tf_boxes) < 1e-3


@needs_tf
def test_rpn_equals_tensorflow_where_its_conv_output_exceeds_six(detection):
    reference = detection.reference
    assert reference["rpn_pre_activation_max_large"] > 6.0
    logits, tf_logits, boxes, tf_boxes = rpn_against_tensorflow(detection.model, reference, "_large")
    assert max_difference(logits, tf_logits) < TOLERANCE


@needs_tf
def test_kept_coco_classes_equal_tensorflow_with_background_last(detection):
    model, reference = detection.model, detection.reference
    predictor = model.roi_heads.box_predictor
    with torch.no_grad():
        scores, deltas = predictor(torch.from_numpy(reference["box_features"]))
    class_logits = reference["class_logits"]
    tf_columns = [*KEPT_COCO_CLASSES, 0]  # ours: class 0 <- COCO 5, class 1 <- COCO 1, background last
    assert max_difference(scores, class_logits[:, tf_columns]) < TOLERANCE
    proposals = torch.from_numpy(yxyx_to_xyxy(reference["proposals"])).float()
    boxes = predictor.box2box_transform.apply_deltas(deltas, proposals).view(3, 2, 4).numpy()
    tf_boxes = yxyx_to_xyxy(reference["boxes"])[:, [c - 1 for c in KEPT_COCO_CLASSES]]
    assert max_difference(boxes, tf_boxes) < 1e-3  # pixels


@needs_tf
def test_report_names_leftovers_and_the_file_needs_no_tensorflow(detection):
    conversion = detection.conversion
    assert conversion.kind == "detection" and conversion.reinitialised == {}
    assert conversion.unmapped() == []
    assert conversion.unused == dict.fromkeys(
        ["FirstStageFeatureExtractor/InceptionV2/Conv2d_2b_1x1/weights/Momentum", "global_step"],
        "training state (optimizer slots, step counter)")
    saved = torch.load(detection.weights, weights_only=True)
    assert set(saved) == {"model", "__author__", "matching_heuristics"} and saved["matching_heuristics"] is False
    assert all(type(value) is torch.Tensor and value.dtype == torch.float32 for value in saved["model"].values())
    state = detection.model.state_dict()
    assert all(torch.equal(state[key], value) for key, value in saved["model"].items())
    # Loading needs no TensorFlow: a fresh interpreter in which importing it fails loads the file.
    blocked = ("import sys; sys.modules['tensorflow'] = None; import torch; "
               f"state = torch.load({str(detection.weights)!r}, weights_only=True); print(len(state['model']))")
    loaded = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, check=True)
    assert int(loaded.stdout.strip()) == len(saved["model"])


@needs_tf
def test_missing_variable_fails_gamma_is_optional_unknown_ones_are_named(detection):
    assert detection.prefix == str(detection.checkpoint)
    variables, targets = detection.variables, detection.targets
    dropped = "SecondStageFeatureExtractor/InceptionV2/Mixed_5b/Branch_2/Conv2d_0c_3x3/BatchNorm/moving_variance"
    without = {name: value for name, value in variables.items() if name != dropped}
    with pytest.raises(ValueError, match=rf"model\.ckpt: 1 variable\(s\) our model needs.*{dropped}"):
        convert_variables(without, **targets, source=detection.prefix)
    # batch-norm gamma is optional (TF's scale=False): it becomes 1
    gamma = "FirstStageFeatureExtractor/InceptionV2/Mixed_3b/Branch_0/Conv2d_0a_1x1/BatchNorm/gamma"
    conversion = convert_variables({n: v for n, v in variables.items() if n != gamma}, **targets,
                                   source=detection.prefix)
    assert torch.equal(conversion.state_dict["backbone.Mixed_3b.Branch_0.Conv2d_0a_1x1.norm.weight"],
                       torch.ones(64))
    # a variable no rule knows is reported by name, not silently dropped
    extra = convert_variables({**variables, "BoxClassifier/Extra/weights": np.zeros(3, np.float32)}, **targets,
                              source=detection.prefix)
    assert extra.unmapped() == ["BoxClassifier/Extra/weights"]
    assert "[unmapped: no part of our model]: 1: BoxClassifier/Extra/weights" in extra.summary()


# ---- without TensorFlow ----

def test_depthwise_weight_follows_tensorflow_channel_order():
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3, 3, 4, 2)).astype(np.float32)  # [kh, kw, in, multiplier]
    image = rng.normal(size=(1, 4, 6, 5)).astype(np.float32)
    ours = F.conv2d(torch.from_numpy(image), torch.from_numpy(depthwise_weight(kernel)), padding=1, groups=4)
    # TF's definition: output channel i * multiplier + m = input channel i filtered by kernel[:, :, i, m]
    padded = np.pad(image, ((0, 0), (0, 0), (1, 1), (1, 1)))
    for i in range(4):
        for m in range(2):
            expected = sum(kernel[dy, dx, i, m] * padded[0, i, dy:dy + 6, dx:dx + 5]
                           for dy in range(3) for dx in range(3))
            assert max_difference(ours[0, i * 2 + m], expected) < 1e-5


def test_objectness_logit_gives_tensorflow_softmax_probability():
    rng = np.random.default_rng(1)
    kernel, bias = rng.normal(size=(1, 1, 8, 6)), rng.normal(size=6)  # 3 anchors x (background, object)
    features = rng.normal(size=8)
    tf_probability = torch.softmax(torch.from_numpy((features @ kernel[0, 0] + bias).reshape(3, 2)), 1)[:, 1]
    weight, ours_bias = rpn_objectness(kernel, bias, np.array([2, 0, 1]))
    ours = torch.sigmoid(torch.from_numpy(weight[:, :, 0, 0] @ features + ours_bias))
    assert max_difference(ours, tf_probability[[2, 0, 1]]) < 1e-12


def test_anchor_permutation_pairs_same_shapes_across_the_two_conventions(small_targets):
    anchors = small_targets["cell_anchors"]
    grid = TFAnchorGrid()
    permutation = anchor_permutation(anchors, grid)
    heights_widths = np.stack([anchors[:, 3] - anchors[:, 1], anchors[:, 2] - anchors[:, 0]], axis=1)
    assert max_difference(heights_widths, grid.cell_sizes()[permutation]) < 1e-3
    # detectron2's first anchor: size 64, height/width 0.5 = TF's scale 0.25 with width/height 2 (index 8)
    assert permutation[0] == 2 * len(grid.scales)
    with pytest.raises(ValueError, match=r"ckpt: the config's anchors .* are not the TF model's"):
        anchor_permutation(anchors, TFAnchorGrid(scales=(0.5, 1.0, 2.0, 4.0)), "ckpt")


def test_unknown_checkpoints_and_configs_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"x\.ckpt: neither .* it holds resnet_v1_50/conv1/weights"):
        convert_variables({"resnet_v1_50/conv1/weights": np.zeros((7, 7, 3, 64))}, {}, source="x.ckpt")
    with pytest.raises(FileNotFoundError, match="absent.ckpt: no TensorFlow checkpoint here"):
        read_tf_checkpoint(tmp_path / "absent.ckpt")
    with pytest.raises(ValueError, match=r"PIXEL_MEAN .* not 127\.5.*INPUT\.FORMAT is 'BGR'"):
        check_config_for_tf_weights(load_config(None, ["MODEL.DEVICE", "cpu"]), "x.ckpt")


@pytest.fixture(scope="module")
def small_targets():
    return conversion_targets(load_config(BASE, ["MODEL.INCEPTION_V2.DEPTH_MULTIPLIER", "0.25"]))


def test_missing_variables_are_all_named(small_targets):
    only_stem = {"InceptionV2/Conv2d_1a_7x7/depthwise_weights": np.zeros((7, 7, 3, 5), np.float32)}
    with pytest.raises(ValueError, match=r"x\.ckpt: \d+ variable\(s\) our model needs .*"
                                         r"InceptionV2/Conv2d_1a_7x7/BatchNorm/beta"):
        convert_variables(only_stem, **small_targets, source="x.ckpt")


def test_coco_classes_cannot_come_from_an_imagenet_checkpoint(small_targets):
    stem = {"InceptionV2/Conv2d_1a_7x7/depthwise_weights": np.zeros((7, 7, 3, 5), np.float32)}
    with pytest.raises(ValueError, match=r"x\.ckpt: an ImageNet checkpoint has no COCO classes to keep"):
        convert_variables(stem, **small_targets, coco_class_ids=(1,), source="x.ckpt")

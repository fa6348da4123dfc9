"""The Inception-v2 backbone, its box head, the RPN and predictor initialisation, and gradient clipping."""
import copy
import math
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import deepcee_d2  # noqa: F401  (registers the parts)
from deepcee_d2.compat import compiled_ops_available
from deepcee_d2.config import load_config
from deepcee_d2.engine import Trainer, add_global_norm_clipping
from deepcee_d2.engine.predictor import prepare_for_inference
from deepcee_d2.modeling.inception_v2 import pad_same, tf_same_padding
from deepcee_d2.modeling.roi_heads import DeepCEERPN, GatherROIAlign
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone, build_model
from detectron2.modeling.proposal_generator import build_proposal_generator
from detectron2.modeling.proposal_generator.rpn import RPN
from detectron2.modeling.roi_heads import build_roi_heads
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
BASE = CONFIGS / "Base-DeepCEE.yaml"

# The layer table of issue #3, in its own notation: "a>b" is a chain of convs (first 1x1, then 3x3),
# "avg>n"/"max>n" a 3x3 pool then a 1x1 conv, "/2" a stride-2 layer, "maxpool/2" a stride-2 pool.
LAYER_TABLE_BACKBONE = """
Mixed_3b (64 | 64>64 | 64>96>96 | avg>32 = 256)
Mixed_3c (64 | 64>96 | 64>96>96 | avg>64 = 320)
Mixed_4a (128>160/2 | 64>96>96/2 | maxpool/2 = 576)
Mixed_4b (224 | 64>96 | 96>128>128 | avg>128)
Mixed_4c (192 | 96>128 | 96>128>128 | avg>128)
Mixed_4d (160 | 128>160 | 128>160>160 | avg>96)
Mixed_4e (96 | 128>192 | 160>192>192 | avg>96)
"""
LAYER_TABLE_HEAD = """
Mixed_5a (128>192/2 | 192>256>256/2 | maxpool/2 = 1024)
Mixed_5b (352 | 192>320 | 160>224>224 | avg>128)
Mixed_5c (352 | 192>320 | 192>224>224 | max>128)
"""


def parameters_from_layer_table(table, in_channels):
    """Weights (k*k*in*out) + batch norm gamma and beta (2*out) of every conv in ``table``."""
    total = 0
    for line in table.strip().splitlines():
        branches = re.search(r"\((.*?)(=.*)?\)", line).group(1).split("|")
        out_channels = 0
        for branch in branches:
            channels = in_channels
            for position, layer in enumerate(branch.strip().split(">")):
                layer = layer.replace("/2", "")
                if layer in ("avg", "max", "maxpool"):
                    continue
                kernel = 1 if position == 0 or branch.strip().startswith(("avg", "max")) else 3
                total += kernel * kernel * channels * int(layer) + 2 * int(layer)
                channels = int(layer)
            out_channels += channels
        in_channels = out_channels
    return total, in_channels


def stem_parameters():
    """Conv2d_1a_7x7 (depthwise 7x7x3x8 + pointwise 24->64), Conv2d_2b_1x1 64, Conv2d_2c_3x3 192, with BN."""
    return (7 * 7 * 3 * 8 + 24 * 64 + 2 * 64) + (64 * 64 + 2 * 64) + (9 * 64 * 192 + 2 * 192)


def count(module):
    return sum(p.numel() for p in module.parameters())


def cfg_for(*opts, config=BASE):
    return load_config(config, ["MODEL.DEVICE", "cpu", *opts])


def test_parameter_counts_match_the_layer_table():
    cfg = cfg_for()
    backbone = build_backbone(cfg)
    head = build_roi_heads(cfg, backbone.output_shape()).res5
    mixed_4_params, channels_4e = parameters_from_layer_table(LAYER_TABLE_BACKBONE, 192)
    head_params, channels_5c = parameters_from_layer_table(LAYER_TABLE_HEAD, channels_4e)
    print(f"Inception-v2 up to Mixed_4e: {count(backbone)} parameters; Mixed_5a-c box head: {count(head)}")
    assert (channels_4e, channels_5c) == (576, 1024)
    assert count(backbone) == stem_parameters() + mixed_4_params
    assert count(head) == head_params


@pytest.mark.parametrize("height,width", [(97, 131), (161, 67), (225, 225)])
def test_backbone_output_matches_output_shape_for_odd_sizes(height, width):
    backbone = build_backbone(cfg_for())
    spec = backbone.output_shape()["Mixed_4e"]
    assert (spec.channels, spec.stride) == (576, 16)
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, height, width))
    assert list(features) == ["Mixed_4e"]
    # TF "SAME": every stride-2 layer gives ceil(n / 2) pixels, so stride 16 gives ceil(n / 16).
    assert tuple(features["Mixed_4e"].shape) == (1, 576, math.ceil(height / 16), math.ceil(width / 16))


def test_depth_multiplier_min_depth_and_several_outputs():
    cfg = cfg_for("MODEL.INCEPTION_V2.DEPTH_MULTIPLIER", "0.25",
                  "MODEL.INCEPTION_V2.OUT_FEATURES", "['Conv2d_2c_3x3', 'Mixed_3c', 'Mixed_4e']")
    backbone = build_backbone(cfg)
    shapes = backbone.output_shape()
    # depth(d) = max(int(d * 0.25), 16): 192 -> 48; Mixed_3c 16+24+24+16 = 80; Mixed_4e 24+48+48+24 = 144.
    assert {k: (v.channels, v.stride) for k, v in shapes.items()} == {
        "Conv2d_2c_3x3": (48, 4), "Mixed_3c": (80, 8), "Mixed_4e": (144, 16)}
    with torch.no_grad():
        features = backbone(torch.randn(2, 3, 99, 70))
    for name, spec in shapes.items():
        n, c, h, w = features[name].shape
        assert (n, c, h, w) == (2, spec.channels, math.ceil(99 / spec.stride), math.ceil(70 / spec.stride))


def test_tf_same_padding_semantics():
    # TF pads the odd pixel at the end: 224 px, 7x7 stride 2 -> total 5 -> (2, 3); 7x7 stride 2 on 223 -> (3, 3).
    assert tf_same_padding(224, 7, 2) == (2, 3)
    assert tf_same_padding(223, 7, 2) == (3, 3)
    assert tf_same_padding(8, 3, 2) == (0, 1)
    assert tf_same_padding(10, 1, 1) == (0, 0)
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    padded = pad_same(x, 3, 2, value=-1.0)
    assert padded.shape[-2:] == (5, 5) and padded[0, 0, -1, :].eq(-1).all() and padded[0, 0, 0, 0] == 0
    # Average pools exclude the padding: a constant image stays constant up to its edges.
    net = build_backbone(cfg_for("MODEL.INCEPTION_V2.DEPTH_MULTIPLIER", "0.25",
                                 "MODEL.INCEPTION_V2.OUT_FEATURES", "['Mixed_3b']"))
    pool = net.Mixed_3b.Branch_3.AvgPool_0a_3x3
    assert torch.allclose(pool(torch.ones(1, 2, 5, 7)), torch.ones(1, 2, 5, 7))
    # Stride-2 max pools pad with -inf, so negative inputs are not clipped to the padding value.
    maxpool = net.MaxPool_2a_3x3
    assert maxpool(-torch.ones(1, 1, 6, 6)).eq(-1).all()


def test_frozen_stages_and_frozen_batch_norm():
    cfg = cfg_for("MODEL.BACKBONE.FREEZE_AT", "2", "MODEL.INCEPTION_V2.NORM", "FrozenBN")
    backbone = build_backbone(cfg)
    for name, parameter in backbone.named_parameters():
        frozen = name.split(".")[0] in {"Conv2d_1a_7x7", "Conv2d_2b_1x1", "Conv2d_2c_3x3", "Mixed_3b", "Mixed_3c"}
        assert parameter.requires_grad != frozen, name
    assert not any(isinstance(m, nn.BatchNorm2d) for m in backbone.modules())
    assert all(m.eps == 1e-3 for m in backbone.modules() if hasattr(m, "running_var"))
    with pytest.raises(ValueError, match="FREEZE_AT"):
        build_backbone(cfg_for("MODEL.BACKBONE.FREEZE_AT", "4"))
    with pytest.raises(ValueError, match="OUT_FEATURES"):
        build_backbone(cfg_for("MODEL.INCEPTION_V2.OUT_FEATURES", "['Mixed_5c']"))


def test_box_head_under_event_storage():
    cfg = cfg_for("MODEL.INCEPTION_V2.DEPTH_MULTIPLIER", "0.25")
    shape = {"Mixed_4e": ShapeSpec(channels=144, stride=16)}
    heads = build_roi_heads(cfg, shape)
    assert heads.res5.out_channels == 256  # Mixed_5c at depth 0.25: 88 + 80 + 56 + 32
    features = {"Mixed_4e": torch.rand(2, 144, 20, 20)}
    image_size = (320, 320)
    proposals, targets = [], []
    for _ in range(2):
        boxes = torch.tensor([[10.0, 20.0, 100.0, 120.0], [150.0, 150.0, 300.0, 290.0], [30.0, 40.0, 90.0, 130.0]])
        proposal = Instances(image_size, proposal_boxes=Boxes(boxes), objectness_logits=torch.randn(3))
        target = Instances(image_size, gt_boxes=Boxes(boxes[:2] + 2.0), gt_classes=torch.zeros(2, dtype=torch.long))
        proposals.append(proposal)
        targets.append(target)
    heads.train()
    with EventStorage():
        _, losses = heads(None, features, proposals, targets)
    assert set(losses) == {"loss_cls", "loss_box_reg"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    assert heads.res5.Mixed_5c.Branch_3.Conv2d_0b_1x1.conv.weight.grad.abs().sum() > 0
    heads.eval()
    with torch.no_grad():
        instances, _ = heads(None, features, proposals)
    assert len(instances) == 2 and instances[0].pred_boxes.tensor.shape[1] == 4
    assert (instances[0].scores >= 0).all() and (instances[0].pred_classes == 0).all()


def test_tf_initialisation_of_rpn_and_predictor():
    cfg = cfg_for()
    shape = {"Mixed_4e": ShapeSpec(channels=576, stride=16)}
    rpn_head = build_proposal_generator(cfg, shape).rpn_head
    assert rpn_head.conv.out_channels == 512 and rpn_head.objectness_logits.out_channels == 12
    assert isinstance(rpn_head.conv.activation, nn.ReLU6)  # TF's first stage clips at 6
    for conv in (rpn_head.conv, rpn_head.objectness_logits, rpn_head.anchor_deltas):
        assert conv.weight.abs().max() <= 0.02 and conv.bias.abs().max() == 0
    # A normal with sigma 0.01 truncated at 2 sigma has standard deviation 0.0088.
    assert rpn_head.conv.weight.std().item() == pytest.approx(0.0088, rel=0.05)
    predictor = build_roi_heads(cfg, shape).box_predictor
    for layer in (predictor.cls_score, predictor.bbox_pred):
        limit = math.sqrt(6 / (layer.in_features + layer.out_features))
        assert layer.weight.abs().max() <= limit and layer.weight.abs().max() > 0.9 * limit
        assert layer.bias.abs().max() == 0
    assert predictor.cls_score.out_features == 2 and predictor.bbox_pred.out_features == 4


def test_gather_roi_align_gives_torchvision_crops_and_gradients_at_the_edges_too():
    from torchvision.ops import roi_align

    features = torch.randn(2, 8, 9, 13, dtype=torch.float64)
    # inside; over the top-left edge; over the far edges; wholly beyond -1 px (zero); empty; whole image
    rois = torch.tensor([[0, 10.0, 20, 100, 90], [1, -40, -30, 60, 50], [0, 150, 100, 260, 190],
                         [1, -80, -60, -20, -20], [0, 30, 30, 30, 30], [1, 0, 0, 208, 144]], dtype=torch.float64)
    expected_features, features = features.clone().requires_grad_(), features.requires_grad_()
    expected = roi_align(expected_features, rois, (7, 5), spatial_scale=1 / 16, sampling_ratio=1, aligned=True)
    crops = GatherROIAlign((7, 5), 1 / 16)(features, rois)
    assert crops.shape == expected.shape == (6, 8, 7, 5)
    torch.testing.assert_close(crops, expected, rtol=0, atol=1e-12)
    assert expected[3].abs().max() == 0 and expected[1].abs().max() > 0
    weights = torch.randn(expected.shape, dtype=torch.float64)
    (expected * weights).sum().backward()
    (crops * weights).sum().backward()
    torch.testing.assert_close(features.grad, expected_features.grad, rtol=0, atol=1e-12)


def test_roi_heads_crop_with_the_gather_roi_align_for_roi_align_v2_with_one_sample():
    shape = {"Mixed_4e": ShapeSpec(channels=576, stride=16)}
    assert isinstance(build_roi_heads(cfg_for(), shape).pooler.level_poolers[0], GatherROIAlign)
    other = build_roi_heads(cfg_for("MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO", "2"), shape)
    assert not isinstance(other.pooler.level_poolers[0], GatherROIAlign)  # detectron2's ROIAlign


@pytest.mark.parametrize("training", [False, True])
def test_deepcee_rpn_keeps_the_proposals_of_detectron2s_rpn(training, monkeypatch):
    from deepcee_d2.modeling import roi_heads

    cfg = cfg_for("MODEL.RPN.POST_NMS_TOPK_TRAIN", "50", "MODEL.RPN.POST_NMS_TOPK_TEST", "50")
    generator = build_proposal_generator(cfg, {"Mixed_4e": ShapeSpec(channels=576, stride=16)})
    assert isinstance(generator, DeepCEERPN)
    generator.train(training)
    prefixes = []
    find = roi_heads.find_top_rpn_proposals
    monkeypatch.setattr(roi_heads, "find_top_rpn_proposals", lambda *args: prefixes.append(args[4]) or find(*args))
    torch.manual_seed(0)
    image_sizes = [(320, 480), (320, 400)]
    anchors = generator.anchor_generator([torch.zeros(2, 576, 20, 30)])
    n_anchors = len(anchors[0])
    logits, deltas = [torch.randn(2, n_anchors)], [torch.randn(2, n_anchors, 4) * 0.3]
    # anchors over the image: the best 200 boxes keep 50; every anchor on one spot: NMS keeps a few of any
    # prefix, so the search widens to all of them
    one_spot = [Boxes(torch.tensor([[100.0, 100.0, 200.0, 200.0]]).repeat(n_anchors, 1))]
    whole_list = cfg.MODEL.RPN.PRE_NMS_TOPK_TRAIN if training else cfg.MODEL.RPN.PRE_NMS_TOPK_TEST
    for some_anchors, searched in ((anchors, [200]), (one_spot, [200, 800, 3200, whole_list])):
        prefixes.clear()
        expected = RPN.predict_proposals(generator, some_anchors, logits, deltas, image_sizes)
        found = generator.predict_proposals(some_anchors, logits, deltas, image_sizes)
        assert prefixes == searched
        assert [len(image) for image in found] == [len(image) for image in expected]
        for image, expected_image in zip(found, expected):
            assert torch.equal(image.proposal_boxes.tensor, expected_image.proposal_boxes.tensor)
            assert torch.equal(image.objectness_logits, expected_image.objectness_logits)
    assert len(expected[0]) < 50  # the one-spot case did need the whole list


def test_global_norm_gradient_clipping_scales_all_gradients_together():
    weights = [nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(4))]
    optimizer = add_global_norm_clipping(torch.optim.SGD(weights, lr=1.0), max_norm=10.0)
    grads = [torch.tensor([30.0, 0.0, 0.0]), torch.tensor([0.0, 40.0, 0.0, 0.0])]  # global norm 50
    for weight, grad in zip(weights, grads):
        weight.grad = grad.clone()
    optimizer.step()
    # Each gradient shrinks by the same factor 10 / 50 (per-parameter clipping would give 10 and 10).
    assert torch.allclose(weights[0].data, torch.tensor([-6.0, 0.0, 0.0]))
    assert torch.allclose(weights[1].data, torch.tensor([0.0, -8.0, 0.0, 0.0]))


def test_trainer_optimizer_uses_global_clipping_from_config():
    cfg = cfg_for("MODEL.INCEPTION_V2.DEPTH_MULTIPLIER", "0.25")
    model = build_model(cfg)
    optimizer = Trainer.build_optimizer(cfg, model)
    assert type(optimizer) is torch.optim.SGD and len(optimizer._optimizer_step_pre_hooks) == 1
    assert optimizer.param_groups[0]["lr"] == pytest.approx(2e-4)
    assert optimizer.param_groups[0]["momentum"] == pytest.approx(0.9)


@pytest.mark.parametrize("config", sorted(CONFIGS.rglob("*.yaml")), ids=lambda p: p.name)
def test_every_config_loads_and_builds(config):
    cfg = load_config(config, ["MODEL.DEVICE", "cpu"])
    model = build_model(cfg)
    assert model.backbone.output_shape()["Mixed_4e"].stride == 16


def test_unknown_config_key_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f'_BASE_: "{BASE}"\nMODEL:\n  INCEPTION_V2:\n    DEPTH_MULTIPLYER: 0.5\n')
    with pytest.raises(ValueError, match=r"bad\.yaml: Non-existent config key: MODEL\.INCEPTION_V2\.DEPTH_MULTIPLYER"):
        load_config(bad)
    with pytest.raises(ValueError, match="command-line overrides: Non-existent key: DEEPCEE.NOPE"):
        load_config(BASE, ["DEEPCEE.NOPE", "1"])
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_config(tmp_path / "missing.yaml")


@pytest.mark.skipif(compiled_ops_available(), reason="this detectron2 has its compiled ops")
def test_config_needing_an_absent_compiled_op_fails_clearly():
    cfg = cfg_for("MODEL.ROI_BOX_HEAD.POOLER_TYPE", "ROIAlignRotated")
    with pytest.raises(RuntimeError, match=r"op 'roi_align_rotated'.*git\+https://github.com/facebookresearch"):
        Trainer.build_model(cfg)


def test_installers_stand_in_extension_names_the_missing_op():
    try:
        from detectron2 import _C
    except ImportError:
        pytest.skip("detectron2 main without compiled ops has no _C module at all")
    if not getattr(_C, "DEEPCEE_STUB", False):
        pytest.skip("this detectron2 has its compiled ops")
    with pytest.raises(AttributeError, match="compiled op 'box_iou_rotated' is not available.*git\\+https"):
        _C.box_iou_rotated
    assert "none" in _C.get_compiler_version()  # what detectron2's collect_env prints


def _model_with_batch_norm_statistics(*opts):
    """A random small model in eval mode whose batch norms have non-trivial statistics and affine terms."""
    torch.manual_seed(0)
    model = build_model(cfg_for("MODEL.INCEPTION_V2.DEPTH_MULTIPLIER", "0.25", *opts)).eval()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            for tensor, low, high in ((module.running_mean, -0.2, 0.2), (module.running_var, 0.5, 2.0),
                                      (module.weight.data, 0.5, 1.5), (module.bias.data, -0.2, 0.2)):
                tensor.uniform_(low, high)
    # Small box deltas, so that random weights give boxes inside the image (detections to compare).
    for layer in (model.proposal_generator.rpn_head.anchor_deltas, model.roi_heads.box_predictor.bbox_pred):
        layer.weight.data *= 0.01
    return model


def test_prepare_for_inference_gives_the_same_detections_without_batch_norms():
    model = _model_with_batch_norm_statistics()
    image = torch.rand(3, 160, 224) * 255
    prepared = prepare_for_inference(copy.deepcopy(model))
    with torch.no_grad():
        before, after = (m([{"image": image}])[0]["instances"] for m in (model, prepared))
        features = [m.backbone(image[None] / 255)["Mixed_4e"] for m in (model, prepared)]
    torch.testing.assert_close(features[1], features[0], rtol=1e-4, atol=1e-4)
    assert len(before) > 0 and len(after) == len(before)
    torch.testing.assert_close(after.scores, before.scores, rtol=0, atol=1e-5)
    torch.testing.assert_close(after.pred_boxes.tensor, before.pred_boxes.tensor, rtol=0, atol=1e-3)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in prepared.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) > 50  # the model given is left alone
    weight = prepared.backbone.Mixed_4e.Branch_1.Conv2d_0b_3x3.conv.weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    with pytest.raises(ValueError, match="eval"):
        _model_with_batch_norm_statistics().train().backbone.Conv2d_2b_1x1.fold_norm()


def test_trainer_evaluates_a_prepared_copy_and_leaves_the_training_model(monkeypatch):
    from detectron2.engine import DefaultTrainer

    seen = {}
    monkeypatch.setattr(DefaultTrainer, "test", classmethod(lambda cls, cfg, model, evaluators=None: seen.update(
        model=model)))
    model = _model_with_batch_norm_statistics().train()
    Trainer.test(cfg_for(), model)
    assert seen["model"] is not model and not seen["model"].training
    assert not any(isinstance(m, nn.BatchNorm2d) for m in seen["model"].modules())
    assert model.training and sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) > 50


def test_bfloat16_precision_runs_the_convolutions_in_bfloat16_and_returns_float32():
    full, half = (_model_with_batch_norm_statistics("MODEL.INCEPTION_V2.PRECISION", p) for p in ("float32", "bfloat16"))
    half.load_state_dict(full.state_dict())
    image = torch.rand(1, 3, 128, 128)
    conv_inputs = []
    hook = half.backbone.Mixed_4e.Branch_0.Conv2d_0a_1x1.conv.register_forward_hook(
        lambda module, inputs, output: conv_inputs.append(output.dtype))
    with torch.no_grad():
        reference, features = full.backbone(image)["Mixed_4e"], half.backbone(image)["Mixed_4e"]
        rpn = half.proposal_generator.rpn_head([features])
        crops = half.roi_heads.res5(torch.rand(4, 144, 14, 14))
    hook.remove()
    assert conv_inputs == [torch.bfloat16]
    assert features.dtype == crops.dtype == torch.float32
    assert all(t.dtype == torch.float32 for outputs in rpn for t in outputs)
    assert 0 < (features - reference).abs().max() <= 0.05 * reference.abs().max()
    with pytest.raises(ValueError, match="MODEL.INCEPTION_V2.PRECISION"):
        build_backbone(cfg_for("MODEL.INCEPTION_V2.PRECISION", "float16"))

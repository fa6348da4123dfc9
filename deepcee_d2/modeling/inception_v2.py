"""Inception-v2 (BN-Inception) as in TF-slim's ``inception_v2``: the backbone up to Mixed_4e and the
Mixed_5a-c box head of TensorFlow's ``faster_rcnn_inception_v2`` feature extractor.

Module names follow the TF variable scopes (``Mixed_4b.Branch_2.Conv2d_0c_3x3.conv.weight`` holds
``InceptionV2/Mixed_4b/Branch_2/Conv2d_0c_3x3/weights``), so converted checkpoints map name for name.
Padding follows TF's "SAME": stride-1 layers pad symmetrically, stride-2 layers pad so that the output has
``ceil(n / 2)`` pixels with the odd pixel at the bottom/right, max pools pad with -inf and average pools
exclude the padding from the mean.
"""
import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from detectron2.layers import FrozenBatchNorm2d, ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from fvcore.nn import weight_init

# One entry per layer; channel numbers are those of the published network (depth multiplier 1).
#   ("conv", depth, kernel, stride, name)   convolution + batch norm + ReLU
#   ("avgpool", stride, name), ("maxpool", stride, name)   3x3 pooling
# A "Mixed" block is a list of branches, each a list of layers, concatenated along channels.


def _conv(depth, kernel, name, stride=1):
    return ("conv", depth, kernel, stride, name)


def _inception_block(b0, b1, b2, pool="avgpool", pool_projection=0):
    """The four-branch block: 1x1 | 1x1>3x3 | 1x1>3x3>3x3 | 3x3 pool>1x1."""
    pool_name = "AvgPool_0a_3x3" if pool == "avgpool" else "MaxPool_0a_3x3"
    return [
        [_conv(b0, 1, "Conv2d_0a_1x1")],
        [_conv(b1[0], 1, "Conv2d_0a_1x1"), _conv(b1[1], 3, "Conv2d_0b_3x3")],
        [_conv(b2[0], 1, "Conv2d_0a_1x1"), _conv(b2[1], 3, "Conv2d_0b_3x3"), _conv(b2[2], 3, "Conv2d_0c_3x3")],
        [(pool, 1, pool_name), _conv(pool_projection, 1, "Conv2d_0b_1x1")],
    ]


def _reduction_block(b0, b1):
    """The stride-2 block: 1x1>3x3/2 | 1x1>3x3>3x3/2 | 3x3 max pool/2."""
    return [
        [_conv(b0[0], 1, "Conv2d_0a_1x1"), _conv(b0[1], 3, "Conv2d_1a_3x3", stride=2)],
        [_conv(b1[0], 1, "Conv2d_0a_1x1"), _conv(b1[1], 3, "Conv2d_0b_3x3"),
         _conv(b1[2], 3, "Conv2d_1a_3x3", stride=2)],
        [("maxpool", 2, "MaxPool_1a_3x3")],
    ]


BACKBONE_MIXED_BLOCKS = OrderedDict([
    ("Mixed_3b", _inception_block(64, (64, 64), (64, 96, 96), pool_projection=32)),
    ("Mixed_3c", _inception_block(64, (64, 96), (64, 96, 96), pool_projection=64)),
    ("Mixed_4a", _reduction_block((128, 160), (64, 96, 96))),
    ("Mixed_4b", _inception_block(224, (64, 96), (96, 128, 128), pool_projection=128)),
    ("Mixed_4c", _inception_block(192, (96, 128), (96, 128, 128), pool_projection=128)),
    ("Mixed_4d", _inception_block(160, (128, 160), (128, 160, 160), pool_projection=96)),
    ("Mixed_4e", _inception_block(96, (128, 192), (160, 192, 192), pool_projection=96)),
])
BOX_HEAD_MIXED_BLOCKS = OrderedDict([
    ("Mixed_5a", _reduction_block((128, 192), (192, 256, 256))),
    ("Mixed_5b", _inception_block(352, (192, 320), (160, 224, 224), pool_projection=128)),
    ("Mixed_5c", _inception_block(352, (192, 320), (192, 224, 224), pool="maxpool", pool_projection=128)),
])
# Backbone stages for MODEL.BACKBONE.FREEZE_AT, with the stride of their output.
STAGES = OrderedDict([
    ("stem", ["Conv2d_1a_7x7", "MaxPool_2a_3x3", "Conv2d_2b_1x1", "Conv2d_2c_3x3", "MaxPool_3a_3x3"]),
    ("mixed_3", ["Mixed_3b", "Mixed_3c"]),
    ("mixed_4", list(BACKBONE_MIXED_BLOCKS)[2:]),
])
FEATURE_STRIDES = {"Conv2d_2c_3x3": 4, "MaxPool_3a_3x3": 8, "Mixed_3b": 8, "Mixed_3c": 8,
                   **{name: 16 for name in STAGES["mixed_4"]}}


# MODEL.INCEPTION_V2.PRECISION: the floating-point type of the convolutions (torch.autocast's dtype).
PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def native_bfloat16():
    """Whether this machine's CPU computes bfloat16 natively (AVX512-BF16 or AMX): there autocast's bfloat16
    convolutions are faster than float32 ones, elsewhere oneDNN emulates them, slower."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu's, private: absent means no
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def check_precision(precision):
    if precision not in PRECISIONS:
        raise ValueError(f"MODEL.INCEPTION_V2.PRECISION: unknown precision {precision!r}; use one of "
                         f"{sorted(PRECISIONS)}")
    return precision


def convolutions_in(precision, x):
    """The context in which a trunk of convolutions on ``x`` runs at ``precision`` (torch.autocast on
    ``x``'s device; "float32" turns autocast off). Trunks return float32, so box and score outputs do not
    carry bfloat16's 8-bit mantissa (~1 px on a 500 px box coordinate)."""
    return torch.autocast(x.device.type, dtype=PRECISIONS[precision], enabled=precision != "float32")


def fold_norm(conv, norm):
    """Fold ``norm``'s (eval-mode) scale and shift into ``conv``'s weight and bias (torch's
    ``fuse_conv_bn_weights``): the same outputs without the norm's pass over the feature map."""
    if norm.training:
        raise ValueError("batch norms are folded for inference only: call model.eval() first")
    conv.weight, conv.bias = fuse_conv_bn_weights(conv.weight, conv.bias, norm.running_mean, norm.running_var,
                                                  norm.eps, norm.weight, norm.bias)


def tf_same_padding(size, kernel, stride):
    """(before, after) padding of one axis of ``size`` pixels under TF's padding="SAME"."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def pad_same(x, kernel, stride, value=0.0):
    """Pad an NCHW tensor as TF's "SAME" padding does before a ``kernel``/``stride`` window."""
    top, bottom = tf_same_padding(x.shape[-2], kernel, stride)
    left, right = tf_same_padding(x.shape[-1], kernel, stride)
    return F.pad(x, (left, right, top, bottom), value=value)


def make_norm(norm, channels, eps, momentum):
    """The batch norm layer named by MODEL.INCEPTION_V2.NORM."""
    if norm == "FrozenBN":
        return FrozenBatchNorm2d(channels, eps=eps)
    if norm == "BN":
        return nn.BatchNorm2d(channels, eps=eps, momentum=momentum)
    if norm == "SyncBN":
        return nn.SyncBatchNorm(channels, eps=eps, momentum=momentum)
    raise ValueError(f"MODEL.INCEPTION_V2.NORM: unknown norm {norm!r}; use 'FrozenBN', 'BN' or 'SyncBN'")


class ConvUnit(nn.Module):
    """Convolution without bias, batch norm and ReLU (slim.conv2d with a batch-norm normalizer)."""

    def __init__(self, in_channels, out_channels, kernel, stride, norm_args):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        # Stride 1 with an odd kernel: TF's SAME padding is symmetric, so the conv can pad by itself.
        padding = kernel // 2 if stride == 1 else 0
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride, padding, bias=False)
        self.norm = make_norm(channels=out_channels, **norm_args)
        weight_init.c2_msra_fill(self.conv)

    def forward(self, x):
        if self.stride > 1:
            x = pad_same(x, self.kernel, self.stride)
        return F.relu(self.norm(self.conv(x)))

    def fold_norm(self):
        """For inference: the batch norm folded into the convolution (`fold_norm`) and removed."""
        fold_norm(self.conv, self.norm)
        self.norm = nn.Identity()


class SeparableConvUnit(nn.Module):
    """slim.separable_conv2d: depthwise conv, 1x1 pointwise conv, then batch norm and ReLU."""

    def __init__(self, in_channels, out_channels, kernel, stride, depthwise_multiplier, norm_args):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        # Output channel c of a grouped conv reads input channel c // multiplier, as TF's depthwise conv.
        self.depthwise = nn.Conv2d(in_channels, in_channels * depthwise_multiplier, kernel, stride,
                                   groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels * depthwise_multiplier, out_channels, 1, bias=False)
        self.norm = make_norm(channels=out_channels, **norm_args)
        weight_init.c2_msra_fill(self.depthwise)
        weight_init.c2_msra_fill(self.pointwise)

    def forward(self, x):
        x = self.depthwise(pad_same(x, self.kernel, self.stride))
        return F.relu(self.norm(self.pointwise(x)))

    def fold_norm(self):
        """For inference: the batch norm folded into the pointwise convolution (`fold_norm`) and removed."""
        fold_norm(self.pointwise, self.norm)
        self.norm = nn.Identity()


class SamePool(nn.Module):
    """3x3 max or average pooling with TF "SAME" padding (average excludes the padding)."""

    def __init__(self, kind, stride, kernel=3):
        super().__init__()
        self.kind, self.stride, self.kernel = kind, stride, kernel

    def forward(self, x):
        if self.kind == "maxpool":
            return F.max_pool2d(pad_same(x, self.kernel, self.stride, value=-math.inf), self.kernel, self.stride)
        if self.stride != 1:
            raise NotImplementedError("TF-SAME average pooling is implemented for stride 1 only")
        return F.avg_pool2d(x, self.kernel, 1, padding=self.kernel // 2, count_include_pad=False)


class Mixed(nn.Module):
    """An Inception block: branches ``Branch_0`` ... run on the same input, concatenated along channels."""

    def __init__(self, in_channels, branches, depth, norm_args):
        super().__init__()
        self.out_channels = 0
        for index, layers in enumerate(branches):
            modules, channels = OrderedDict(), in_channels
            for layer in layers:
                if layer[0] == "conv":
                    _, d, kernel, stride, name = layer
                    modules[name] = ConvUnit(channels, depth(d), kernel, stride, norm_args)
                    channels = depth(d)
                else:
                    kind, stride, name = layer
                    modules[name] = SamePool(kind, stride)
            self.add_module(f"Branch_{index}", nn.Sequential(modules))
            self.out_channels += channels

    def forward(self, x):
        return torch.cat([branch(x) for branch in self.children()], dim=1)


def depth_function(depth_multiplier, min_depth):
    """TF-slim's ``depth(d) = max(int(d * depth_multiplier), min_depth)``."""
    if depth_multiplier <= 0:
        raise ValueError(f"MODEL.INCEPTION_V2.DEPTH_MULTIPLIER must be > 0, got {depth_multiplier}")
    return lambda d: max(int(d * depth_multiplier), min_depth)


def _norm_args(cfg):
    v2 = cfg.MODEL.INCEPTION_V2
    return {"norm": v2.NORM, "eps": v2.BN_EPS, "momentum": v2.BN_MOMENTUM}


class InceptionV2(Backbone):
    """TF-slim ``inception_v2_base`` from the input up to ``Mixed_4e`` (576 channels at stride 16).

    `build_inception_v2_backbone` builds it from ``cfg.MODEL.INCEPTION_V2``, where the defaults live.

    Parameters
    ----------
    in_channels : int
        Input channels (3 for the RGB colour image).
    depth_multiplier, min_depth : float, int
        Channel scaling of every layer, as TF-slim's arguments of the same names.
    use_separable_conv : bool
        Conv2d_1a_7x7 as depthwise (x min(depth(64) // 3, 8)) + pointwise conv, as in the published model.
    norm_args : dict
        ``norm`` ("FrozenBN", "BN", "SyncBN"), ``eps`` and ``momentum`` of every batch norm.
    out_features : list of str
        Names of the layers whose outputs are returned (see ``FEATURE_STRIDES``).
    freeze_at : int
        Number of stages (``STAGES``: stem, mixed_3, mixed_4) whose weights and batch norms are frozen.
    precision : str
        Floating-point type of the convolutions (``PRECISIONS``); the features are returned as float32.
    """

    def __init__(self, in_channels, *, depth_multiplier, min_depth, use_separable_conv, norm_args, out_features,
                 freeze_at, precision="float32"):
        super().__init__()
        self.precision = check_precision(precision)
        depth = depth_function(depth_multiplier, min_depth)
        unknown = sorted(set(out_features) - set(FEATURE_STRIDES))
        if unknown or not out_features:
            raise ValueError(f"MODEL.INCEPTION_V2.OUT_FEATURES: {unknown or 'empty'}; choose from "
                             f"{sorted(FEATURE_STRIDES)}")
        if not 0 <= freeze_at <= len(STAGES):
            raise ValueError(f"MODEL.BACKBONE.FREEZE_AT must be 0..{len(STAGES)} for Inception-v2, got {freeze_at}")

        if use_separable_conv:
            multiplier = min(int(depth(64) / in_channels), 8)
            stem = SeparableConvUnit(in_channels, depth(64), 7, 2, multiplier, norm_args)
        else:
            stem = ConvUnit(in_channels, depth(64), 7, 2, norm_args)
        self.Conv2d_1a_7x7 = stem
        self.MaxPool_2a_3x3 = SamePool("maxpool", 2)
        self.Conv2d_2b_1x1 = ConvUnit(depth(64), depth(64), 1, 1, norm_args)
        self.Conv2d_2c_3x3 = ConvUnit(depth(64), depth(192), 3, 1, norm_args)
        self.MaxPool_3a_3x3 = SamePool("maxpool", 2)
        channels = {"Conv2d_2c_3x3": depth(192), "MaxPool_3a_3x3": depth(192)}
        previous = depth(192)
        for name, branches in BACKBONE_MIXED_BLOCKS.items():
            block = Mixed(previous, branches, depth, norm_args)
            self.add_module(name, block)
            channels[name] = previous = block.out_channels

        self._out_features = list(out_features)
        self._out_feature_channels = {name: channels[name] for name in out_features}
        self._out_feature_strides = {name: FEATURE_STRIDES[name] for name in out_features}
        # Layers after the last requested output are never run, so they are not kept.
        last = max(list(self._modules).index(name) for name in out_features)
        for name in list(self._modules)[last + 1:]:
            delattr(self, name)
        self.freeze(freeze_at)

    def freeze(self, freeze_at):
        """Freeze the weights and batch norms of the first ``freeze_at`` stages."""
        for stage in list(STAGES.values())[:freeze_at]:
            for name in stage:
                if hasattr(self, name):
                    module = getattr(self, name)
                    for parameter in module.parameters():
                        parameter.requires_grad = False
                    setattr(self, name, FrozenBatchNorm2d.convert_frozen_batchnorm(module))
        return self

    def forward(self, x):
        if x.dim() != 4:
            raise ValueError(f"InceptionV2 takes (N, C, H, W) input, got shape {tuple(x.shape)}")
        outputs = {}
        with convolutions_in(self.precision, x):
            for name, module in self.named_children():
                x = module(x)
                if name in self._out_feature_channels:
                    outputs[name] = x
        return {name: feature.float() for name, feature in outputs.items()}

    def output_shape(self):
        return {name: ShapeSpec(channels=self._out_feature_channels[name], stride=self._out_feature_strides[name])
                for name in self._out_features}


class InceptionV2BoxHead(nn.Sequential):
    """Per-ROI features of TF's faster_rcnn_inception_v2: max pool of the crops, then Mixed_5a-c.

    With 14x14 crops and a 2x2 pool the blocks run on 7x7 maps (4x4 after Mixed_5a); the ROI head takes the
    spatial mean of the 1024-channel output.
    """

    def __init__(self, in_channels, *, depth_multiplier, min_depth, norm_args, crop_max_pool, precision="float32"):
        layers = OrderedDict()
        if crop_max_pool > 1:
            # TF max-pools the crop_and_resize output with padding "VALID".
            layers["MaxPool_crop"] = nn.MaxPool2d(crop_max_pool, crop_max_pool)
        depth = depth_function(depth_multiplier, min_depth)
        channels = in_channels
        for name, branches in BOX_HEAD_MIXED_BLOCKS.items():
            layers[name] = Mixed(channels, branches, depth, norm_args)
            channels = layers[name].out_channels
        super().__init__(layers)
        self.out_channels = channels
        self.precision = check_precision(precision)

    def forward(self, x):
        # In channels-last (GatherROIAlign's crops are; detectron2's ROIAlign's are NCHW) the crops' max pools
        # take ~1/7 of the time on CPU (100 crops of 576 x 14 x 14: 136 -> 19 ms), and the convolutions too.
        x = x.contiguous(memory_format=torch.channels_last)
        with convolutions_in(self.precision, x):
            x = super().forward(x)
        return x.float()


def box_head_from_cfg(cfg, in_channels):
    """The ``InceptionV2BoxHead`` described by ``cfg.MODEL.INCEPTION_V2``."""
    v2 = cfg.MODEL.INCEPTION_V2
    return InceptionV2BoxHead(in_channels, depth_multiplier=v2.DEPTH_MULTIPLIER, min_depth=v2.MIN_DEPTH,
                              norm_args=_norm_args(cfg), crop_max_pool=v2.CROP_MAX_POOL, precision=v2.PRECISION)


@BACKBONE_REGISTRY.register()
def build_inception_v2_backbone(cfg, input_shape: ShapeSpec):
    """Build the Inception-v2 backbone from ``cfg.MODEL.INCEPTION_V2`` and ``MODEL.BACKBONE.FREEZE_AT``."""
    v2 = cfg.MODEL.INCEPTION_V2
    return InceptionV2(
        input_shape.channels,
        depth_multiplier=v2.DEPTH_MULTIPLIER,
        min_depth=v2.MIN_DEPTH,
        use_separable_conv=v2.USE_SEPARABLE_CONV,
        norm_args=_norm_args(cfg),
        out_features=v2.OUT_FEATURES,
        freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT,
        precision=v2.PRECISION,
    )

"""Deep-CEE's heads: the Inception-v2 Mixed_5a-c box head on ROI crops, and the TF-initialised predictors.

The structure is detectron2's "C4" R-CNN: ROI crops of the stride-16 feature map run through a per-ROI
network whose spatial mean feeds the classifier and box regressor. ``Res5ROIHeads`` already does exactly
that with its ``res5`` module; here that module is ``InceptionV2BoxHead`` (max pool 2x2, Mixed_5a-c).
"""
from torch import nn

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.modeling.proposal_generator.rpn import RPN_HEAD_REGISTRY, StandardRPNHead
from detectron2.modeling.roi_heads import Res5ROIHeads
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers

from .inception_v2 import box_head_from_cfg, check_precision, convolutions_in


class GlorotFastRCNNOutputLayers(FastRCNNOutputLayers):
    """detectron2's box predictor with TF's initialisation: variance scaling (factor 1, FAN_AVG, uniform),
    i.e. Glorot uniform weights, and zero biases, as the faster_rcnn_inception_v2 config's fc_hyperparams."""

    @configurable
    def __init__(self, input_shape, **kwargs):
        super().__init__(input_shape, **kwargs)
        for layer in (self.cls_score, self.bbox_pred):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)


@RPN_HEAD_REGISTRY.register()
class DeepCEERPNHead(StandardRPNHead):
    """detectron2's RPN head (3x3 conv, 1x1 objectness and box deltas) as TF's first stage: ReLU6 after the
    3x3 conv (faster_rcnn_meta_arch), truncated normal weights with standard deviation 0.01 (cut at two
    standard deviations) and zero biases; the 3x3 conv at ``MODEL.INCEPTION_V2.PRECISION``."""

    @configurable
    def __init__(self, *, precision="float32", **kwargs):
        super().__init__(**kwargs)
        if not isinstance(self.conv, nn.Module) or not hasattr(self.conv, "activation"):
            raise ValueError("DeepCEERPNHead supports one 3x3 conv (MODEL.RPN.CONV_DIMS of length 1)")
        self.conv.activation = nn.ReLU6()
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.trunc_normal_(layer.weight, std=0.01, a=-0.02, b=0.02)
                nn.init.zeros_(layer.bias)
        self.precision = check_precision(precision)

    @classmethod
    def from_config(cls, cfg, input_shape):
        return {**super().from_config(cfg, input_shape), "precision": cfg.MODEL.INCEPTION_V2.PRECISION}

    def forward(self, features):
        """StandardRPNHead's, with the 3x3 conv at the model's precision and the 1x1 outputs in float32."""
        objectness, deltas = [], []
        for x in features:
            with convolutions_in(self.precision, x):
                t = self.conv(x)
            objectness.append(self.objectness_logits(t.float()))
            deltas.append(self.anchor_deltas(t.float()))
        return objectness, deltas


@ROI_HEADS_REGISTRY.register()
class InceptionV2ROIHeads(Res5ROIHeads):
    """ROI heads whose per-ROI network is Inception-v2's Mixed_5a-c (``InceptionV2BoxHead``).

    Crops come from detectron2's ``ROIPooler`` at ``ROI_BOX_HEAD.POOLER_RESOLUTION`` (14, like TF's
    crop_and_resize), are max-pooled by ``MODEL.INCEPTION_V2.CROP_MAX_POOL`` and averaged spatially after
    Mixed_5c before the 2-way classifier and box regressor.
    """

    @classmethod
    def from_config(cls, cfg, input_shape):
        if cfg.MODEL.MASK_ON:
            raise ValueError("InceptionV2ROIHeads predicts boxes only; set MODEL.MASK_ON False")
        # The parent builds the pooler, the proposal matcher and the sampling settings; it also builds a
        # ResNet res5 block and its predictor, which are replaced here (a one-off cost at construction).
        ret = super().from_config(cfg, input_shape)
        in_channels = input_shape[ret["in_features"][0]].channels
        ret["res5"] = box_head_from_cfg(cfg, in_channels)
        ret["box_predictor"] = GlorotFastRCNNOutputLayers(
            cfg, ShapeSpec(channels=ret["res5"].out_channels, height=1, width=1)
        )
        return ret

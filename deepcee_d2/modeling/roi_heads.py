"""Deep-CEE's heads: the Inception-v2 Mixed_5a-c box head on ROI crops, and the TF-initialised predictors.

The structure is detectron2's "C4" R-CNN: ROI crops of the stride-16 feature map run through a per-ROI
network whose spatial mean feeds the classifier and box regressor. ``Res5ROIHeads`` already does exactly
that with its ``res5`` module; here that module is ``InceptionV2BoxHead`` (max pool 2x2, Mixed_5a-c).
"""
import torch
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import PROPOSAL_GENERATOR_REGISTRY, ROI_HEADS_REGISTRY
from detectron2.modeling.proposal_generator.proposal_utils import find_top_rpn_proposals
from detectron2.modeling.proposal_generator.rpn import RPN, RPN_HEAD_REGISTRY, StandardRPNHead
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


@PROPOSAL_GENERATOR_REGISTRY.register()
class DeepCEERPN(RPN):
    """detectron2's RPN, its proposals found with less NMS work: NMS runs first on the best-scored
    ``FIRST_NMS_FACTOR`` x ``post_nms_topk`` boxes, on a prefix ``PREFIX_GROWTH`` times longer each time it keeps
    fewer than ``post_nms_topk``, and on all ``pre_nms_topk`` only if none does. Greedy NMS drops a box only for
    a better scored kept one, so the boxes a score-ordered prefix keeps are the first boxes the whole list keeps:
    the proposals are RPN's own, to the box (TF's first stage likewise stops its NMS at the maximum number of
    proposals). torchvision's NMS of every anchor took a fifth of a CPU training step of the demo
    (BENCHMARKS.md, "Where a training step's time goes"). One feature level (the C4 backbone) only; with more
    (FPN), whose levels are merged after NMS, it is RPN's."""

    FIRST_NMS_FACTOR = 4
    PREFIX_GROWTH = 4

    def predict_proposals(self, anchors, pred_objectness_logits, pred_anchor_deltas, image_sizes):
        if len(pred_objectness_logits) != 1 or torch.jit.is_tracing():
            return super().predict_proposals(anchors, pred_objectness_logits, pred_anchor_deltas, image_sizes)
        pre_nms_topk, post_nms_topk = self.pre_nms_topk[self.training], self.post_nms_topk[self.training]
        with torch.no_grad():  # as RPN: proposals are fixed for the ROI heads
            proposals = self._decode_proposals(anchors, pred_anchor_deltas)
            if self.training and not (torch.isfinite(proposals[0]).all() and
                                      torch.isfinite(pred_objectness_logits[0]).all()):
                # RPN checks its pre-NMS boxes only; a prefix would not reach every one of them
                raise FloatingPointError("Predicted boxes or scores contain Inf/NaN. Training has diverged.")

            def best(n_boxes):
                return find_top_rpn_proposals(proposals, pred_objectness_logits, image_sizes, self.nms_thresh, n_boxes,
                                              post_nms_topk, self.min_box_size, self.training)

            prefix = self.FIRST_NMS_FACTOR * post_nms_topk
            while prefix < min(pred_objectness_logits[0].shape[1], pre_nms_topk):
                found = best(prefix)
                if all(len(image) == post_nms_topk for image in found):
                    return found
                prefix *= self.PREFIX_GROWTH
            return best(pre_nms_topk)


class GatherROIAlign(nn.Module):
    """detectron2's ``ROIAlign(output_size, spatial_scale, sampling_ratio=1, aligned=True)`` (ROIAlignV2 with
    one sample per bin) as a weighted sum of feature-map rows (torch's ``embedding_bag``): the crops of
    torchvision's kernel, to float rounding, with its edge rule (a sample up to one pixel outside the map takes
    the edge's value, one farther out is zero). torchvision's CPU kernel loops over every channel of every
    sample, one thread; its backward took a fifth of a CPU training step of the demo, this one a few per cent
    (BENCHMARKS.md, "Where a training step's time goes")."""

    def __init__(self, output_size, spatial_scale):
        super().__init__()
        self.output_size, self.spatial_scale = output_size, spatial_scale

    def forward(self, features, rois):
        """``features`` (N, C, H, W), ``rois`` (M, 5): image index, x1, y1, x2, y2 in input pixels;
        returns (M, C, *output_size), channels-last."""
        n, channels, height, width = features.shape
        out_h, out_w = self.output_size
        corner = rois[:, 1:3] * self.spatial_scale - 0.5  # aligned: pixel centres at +0.5
        bin_w = (rois[:, 3] * self.spatial_scale - 0.5 - corner[:, 0]) / out_w
        bin_h = (rois[:, 4] * self.spatial_scale - 0.5 - corner[:, 1]) / out_h
        x = corner[:, 0, None] + torch.arange(out_w, device=rois.device) * bin_w[:, None] + 0.5 * bin_w[:, None]
        y = corner[:, 1, None] + torch.arange(out_h, device=rois.device) * bin_h[:, None] + 0.5 * bin_h[:, None]
        inside = (((y >= -1) & (y <= height))[:, :, None] & ((x >= -1) & (x <= width))[:, None, :])
        x, y = x.clamp(0, width - 1), y.clamp(0, height - 1)
        x0, y0 = x.floor(), y.floor()
        fx, fy = (x - x0)[:, None, :], (y - y0)[:, :, None]
        x0, y0 = x0.long(), y0.long()
        x1, y1 = (x0 + 1).clamp(max=width - 1), (y0 + 1).clamp(max=height - 1)
        first_row = rois[:, 0].long()[:, None, None] * (height * width)
        rows_y0, rows_y1 = first_row + (y0 * width)[:, :, None], first_row + (y1 * width)[:, :, None]
        index = torch.stack(torch.broadcast_tensors(rows_y0 + x0[:, None, :], rows_y0 + x1[:, None, :],
                                                    rows_y1 + x0[:, None, :], rows_y1 + x1[:, None, :]), -1)
        weight = torch.stack(torch.broadcast_tensors((1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx), -1)
        weight = weight * inside[..., None]
        rows = features.permute(0, 2, 3, 1).reshape(n * height * width, channels)  # a view when channels-last
        crops = F.embedding_bag(index.reshape(-1, 4), rows, per_sample_weights=weight.reshape(-1, 4).to(rows.dtype),
                                mode="sum")
        return crops.reshape(-1, out_h, out_w, channels).permute(0, 3, 1, 2)


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
        box_head = cfg.MODEL.ROI_BOX_HEAD
        if box_head.POOLER_TYPE == "ROIAlignV2" and box_head.POOLER_SAMPLING_RATIO == 1:
            ret["pooler"].level_poolers = nn.ModuleList(GatherROIAlign(level.output_size, level.spatial_scale)
                                                        for level in ret["pooler"].level_poolers)
        in_channels = input_shape[ret["in_features"][0]].channels
        ret["res5"] = box_head_from_cfg(cfg, in_channels)
        ret["box_predictor"] = GlorotFastRCNNOutputLayers(
            cfg, ShapeSpec(channels=ret["res5"].out_channels, height=1, width=1)
        )
        return ret

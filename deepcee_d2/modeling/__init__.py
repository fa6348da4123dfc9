"""Importing this package registers the Inception-v2 backbone, RPN, RPN head and ROI heads in detectron2."""
from .inception_v2 import InceptionV2, InceptionV2BoxHead, build_inception_v2_backbone
from .roi_heads import DeepCEERPN, DeepCEERPNHead, GatherROIAlign, GlorotFastRCNNOutputLayers, InceptionV2ROIHeads

__all__ = ["InceptionV2", "InceptionV2BoxHead", "build_inception_v2_backbone", "DeepCEERPN", "DeepCEERPNHead",
           "GatherROIAlign", "GlorotFastRCNNOutputLayers", "InceptionV2ROIHeads"]

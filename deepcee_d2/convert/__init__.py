"""Converters from other frameworks' checkpoints into detectron2 checkpoints of our model.

``tf_checkpoint``: the TensorFlow object-detection API's faster_rcnn_inception_v2 and TF-slim's ImageNet
inception_v2 (TensorFlow, an optional extra, is only used in a separate process to read the file).
"""
from .tf_checkpoint import (
    Conversion,
    TFAnchorGrid,
    conversion_targets,
    convert_tf_checkpoint,
    convert_variables,
    read_tf_checkpoint,
    save_detectron2_checkpoint,
)

__all__ = ["Conversion", "TFAnchorGrid", "conversion_targets", "convert_tf_checkpoint", "convert_variables",
           "read_tf_checkpoint", "save_detectron2_checkpoint"]

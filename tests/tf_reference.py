"""TensorFlow side of tests/test_convert_tf_checkpoint.py: a random Inception-v2 network, its checkpoint and outputs.

    python tests/tf_reference.py OUT_DIR --kind detection|classification --format V1|V2

Runs in a process of its own (TensorFlow and PyTorch are never imported together). With tf.compat.v1 and TF-slim:

- ``detection``: the variables of the TF object-detection API's faster_rcnn_inception_v2: TF-slim's own
  ``inception_v2_base`` up to Mixed_4e under FirstStageFeatureExtractor/InceptionV2 (batch norm with scale on
  conv2d and separable_conv2d, as the API's feature extractor), the RPN (3x3 conv ``Conv`` with ReLU6, then
  FirstStageBoxPredictor's 1x1 ClassPredictor and BoxEncodingPredictor), and the second stage on crops (2x2 max
  pool, Mixed_5a-c under SecondStageFeatureExtractor/InceptionV2 written here after the API's feature extractor,
  spatial mean, SecondStageBoxPredictor's fully connected layers for 90 classes). Plus a global step and one
  Momentum slot, as a training checkpoint has.
- ``classification``: TF-slim's own ``inception_v2`` (to Mixed_5c and the ImageNet logits) under InceptionV2,
  with batch norm without scale on conv2d only, as TF-slim's inception_v2_arg_scope (so the separable stem
  has biases and no batch norm).

Weights are random, batch-norm statistics too (so a converter that ignores them fails). Writes
OUT_DIR/model.ckpt (V1: one file; V2: .index + .data) and OUT_DIR/reference.npz with the inputs and outputs.
Anchors and box decoding follow the object-detection API's GridAnchorGenerator and FasterRcnnBoxCoder.
"""
import argparse
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow.compat.v1 as tf  # noqa: E402

# TF-slim 1.1 still names tf.Tensor by its pre-2.20 location; give it that name so its layers build.
from tensorflow.python.framework import ops as _tf_ops  # noqa: E402

if not hasattr(_tf_ops, "Tensor"):
    _tf_ops.Tensor = tf.Tensor
import tf_slim as slim  # noqa: E402
from tf_slim.nets import inception_v2  # noqa: E402

IMAGE_SHAPE = (147, 181)  # odd sizes: TF's "SAME" padding is asymmetric at every stride-2 layer
N_CROPS, CROP_SIZE, N_COCO_CLASSES = 3, 14, 90
ANCHOR_SCALES, ANCHOR_RATIOS, ANCHOR_BASE, ANCHOR_STRIDE = (0.25, 0.5, 1.0, 2.0), (0.5, 1.0, 2.0), 256.0, 16.0
BOX_CODER_SCALES = (10.0, 10.0, 5.0, 5.0)
LARGE_FEATURE_FACTOR = 40.0  # RPN input scaled so that its 3x3 conv output passes 6, where ReLU6 differs from ReLU


def conv(depth, kernel, scope, stride=1):
    return ("conv", depth, kernel, stride, scope)


# The second-stage feature extractor of faster_rcnn_inception_v2 (Mixed_5a-c), branch by branch.
MIXED_5 = [
    ("Mixed_5a", [[conv(128, 1, "Conv2d_0a_1x1"), conv(192, 3, "Conv2d_1a_3x3", 2)],
                  [conv(192, 1, "Conv2d_0a_1x1"), conv(256, 3, "Conv2d_0b_3x3"), conv(256, 3, "Conv2d_1a_3x3", 2)],
                  [("max", 2, "MaxPool_1a_3x3")]]),
    ("Mixed_5b", [[conv(352, 1, "Conv2d_0a_1x1")],
                  [conv(192, 1, "Conv2d_0a_1x1"), conv(320, 3, "Conv2d_0b_3x3")],
                  [conv(160, 1, "Conv2d_0a_1x1"), conv(224, 3, "Conv2d_0b_3x3"), conv(224, 3, "Conv2d_0c_3x3")],
                  [("avg", 1, "AvgPool_0a_3x3"), conv(128, 1, "Conv2d_0b_1x1")]]),
    ("Mixed_5c", [[conv(352, 1, "Conv2d_0a_1x1")],
                  [conv(192, 1, "Conv2d_0a_1x1"), conv(320, 3, "Conv2d_0b_3x3")],
                  [conv(192, 1, "Conv2d_0a_1x1"), conv(224, 3, "Conv2d_0b_3x3"), conv(224, 3, "Conv2d_0c_3x3")],
                  [("max", 1, "MaxPool_0a_3x3"), conv(128, 1, "Conv2d_0b_1x1")]]),
]


def batch_norm_params(scale):
    # updates_collections=None selects TF-slim's fused batch norm (no Keras needed); inference uses the
    # moving statistics either way.
    return {"is_training": False, "scale": scale, "epsilon": 1e-3, "decay": 0.9997, "updates_collections": None}


def mixed_5(net):
    for block, branches in MIXED_5:
        with tf.variable_scope(block):
            outputs = []
            for index, layers in enumerate(branches):
                with tf.variable_scope(f"Branch_{index}"):
                    branch = net
                    for layer in layers:
                        if layer[0] == "conv":
                            _, depth, kernel, stride, scope = layer
                            branch = slim.conv2d(branch, depth, [kernel, kernel], stride=stride, scope=scope)
                        else:
                            pool = slim.max_pool2d if layer[0] == "max" else slim.avg_pool2d
                            branch = pool(branch, [3, 3], stride=layer[1], scope=layer[2])
                    outputs.append(branch)
            net = tf.concat(outputs, 3)
    return net


def grid_anchors(height, width):
    """The API's GridAnchorGenerator: [ymin, xmin, ymax, xmax], location-major, ratio-major per location."""
    scales, ratios = np.meshgrid(ANCHOR_SCALES, ANCHOR_RATIOS)  # [ratio, scale], as the API's ops.meshgrid
    scales, ratios = scales.ravel(), ratios.ravel()
    heights = scales / np.sqrt(ratios) * ANCHOR_BASE
    widths = scales * np.sqrt(ratios) * ANCHOR_BASE
    y, x = np.meshgrid(np.arange(height) * ANCHOR_STRIDE, np.arange(width) * ANCHOR_STRIDE, indexing="ij")
    centres_y = np.repeat(y.ravel(), len(heights))
    centres_x = np.repeat(x.ravel(), len(heights))
    sizes_h, sizes_w = np.tile(heights, height * width), np.tile(widths, height * width)
    return np.stack([centres_y - sizes_h / 2, centres_x - sizes_w / 2, centres_y + sizes_h / 2,
                     centres_x + sizes_w / 2], axis=1)


def decode(codes, boxes):
    """The API's FasterRcnnBoxCoder.decode: codes [..., (ty, tx, th, tw)] on boxes [..., (ymin, xmin, ymax, xmax)]."""
    ty, tx, th, tw = (codes[..., i] / BOX_CODER_SCALES[i] for i in range(4))
    ha, wa = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    yc, xc = boxes[..., 0] + ha / 2, boxes[..., 1] + wa / 2
    h, w = np.exp(th) * ha, np.exp(tw) * wa
    y, x = ty * ha + yc, tx * wa + xc
    return np.stack([y - h / 2, x - w / 2, y + h / 2, x + w / 2], axis=-1)


def randomise(session, rng):
    """Random weights; batch-norm statistics far from (0, 1) so that they matter. One session run initialises
    every variable from its fed initial value (a ``load`` per variable took 17 s for the detection model)."""
    feed = {}
    for variable in tf.global_variables():
        name, shape = variable.op.name, variable.shape.as_list()
        leaf = name.rsplit("/", 1)[-1]
        if leaf == "moving_mean":
            value = rng.normal(0.0, 0.3, shape)
        elif leaf == "moving_variance":
            value = rng.uniform(0.4, 2.5, shape)
        elif leaf == "gamma":
            value = rng.uniform(0.5, 1.5, shape)
        elif leaf in ("beta", "biases"):
            value = rng.normal(0.0, 0.2, shape)
        elif leaf in ("weights", "depthwise_weights", "pointwise_weights", "Momentum"):
            fan_in = np.prod(shape[:-1]) if leaf != "depthwise_weights" else np.prod(shape[:2])
            std = 0.01 if name == "Conv/weights" else np.sqrt(2.0 / fan_in)  # the API's RPN init, He elsewhere
            value = rng.normal(0.0, std, shape)
        elif name == "global_step":
            value = np.int64(12345)
        else:
            raise ValueError(f"no random value for {name}")
        feed[variable.initial_value] = np.asarray(value, dtype=variable.dtype.as_numpy_dtype)
    session.run([variable.initializer for variable in tf.global_variables()], feed)


def build_detection(image, crops):
    with tf.variable_scope("FirstStageFeatureExtractor"):
        with tf.variable_scope("InceptionV2") as scope:
            with slim.arg_scope([slim.conv2d, slim.separable_conv2d], normalizer_fn=slim.batch_norm,
                                normalizer_params=batch_norm_params(scale=True)):
                mixed_4e, _ = inception_v2.inception_v2_base(image, final_endpoint="Mixed_4e", scope=scope)
    n_anchors = len(ANCHOR_SCALES) * len(ANCHOR_RATIOS)
    outputs = {"mixed_4e": mixed_4e}
    for suffix, features, reuse in (("", mixed_4e, None), ("_large", mixed_4e * LARGE_FEATURE_FACTOR, True)):
        # The API's _extract_rpn_feature_maps and ConvolutionalBoxPredictor (1x1 kernels, no extra layers).
        pre_activation = slim.conv2d(features, 512, [3, 3], activation_fn=None, scope="Conv", reuse=reuse)
        hidden = tf.nn.relu6(pre_activation)
        with tf.variable_scope("FirstStageBoxPredictor", reuse=reuse):
            boxes = slim.conv2d(hidden, n_anchors * 4, [1, 1], activation_fn=None, scope="BoxEncodingPredictor")
            classes = slim.conv2d(hidden, n_anchors * 2, [1, 1], activation_fn=None, scope="ClassPredictor")
        outputs.update({f"rpn_pre_activation_max{suffix}": tf.reduce_max(pre_activation),
                        f"rpn_box_encodings{suffix}": tf.reshape(boxes, [-1, 4]),
                        f"rpn_class_logits{suffix}": tf.reshape(classes, [-1, 2])})
    net = slim.max_pool2d(crops, [2, 2], stride=2)  # the API's maxpool_kernel_size / maxpool_stride, VALID
    with tf.variable_scope("SecondStageFeatureExtractor"):
        with tf.variable_scope("InceptionV2"):
            with slim.arg_scope([slim.conv2d, slim.max_pool2d, slim.avg_pool2d], stride=1, padding="SAME"):
                with slim.arg_scope([slim.conv2d, slim.separable_conv2d], normalizer_fn=slim.batch_norm,
                                    normalizer_params=batch_norm_params(scale=True)):
                    mixed_5c = mixed_5(net)
    box_features = tf.reduce_mean(mixed_5c, [1, 2])
    with tf.variable_scope("SecondStageBoxPredictor"):
        box_encodings = slim.fully_connected(box_features, N_COCO_CLASSES * 4, activation_fn=None,
                                             scope="BoxEncodingPredictor")
        class_logits = slim.fully_connected(box_features, N_COCO_CLASSES + 1, activation_fn=None,
                                            scope="ClassPredictor")
    with tf.variable_scope("FirstStageFeatureExtractor/InceptionV2/Conv2d_2b_1x1/weights"):
        tf.get_variable("Momentum", [1, 1, 64, 64])
    tf.train.get_or_create_global_step()
    outputs.update({"mixed_5c": mixed_5c, "box_features": box_features,
                    "box_encodings": tf.reshape(box_encodings, [-1, N_COCO_CLASSES, 4]),
                    "class_logits": class_logits})
    return outputs


def build_classification(image):
    with slim.arg_scope([slim.conv2d], normalizer_fn=slim.batch_norm,
                        normalizer_params=batch_norm_params(scale=False)):
        _, end_points = inception_v2.inception_v2(image, num_classes=1001, is_training=False)
    return {"mixed_4e": end_points["Mixed_4e"], "mixed_5c": end_points["Mixed_5c"],
            "logits": end_points["Logits"]}


def main(out_dir, kind, checkpoint_format):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20190101)
    pixels = rng.uniform(0.0, 255.0, (1, *IMAGE_SHAPE, 3)).astype(np.float32)  # RGB, 0-255
    crops = np.abs(rng.normal(0.0, 1.0, (N_CROPS, CROP_SIZE, CROP_SIZE, 576))).astype(np.float32)
    tf.disable_eager_execution()
    with tf.Graph().as_default():
        raw = tf.placeholder(tf.float32, pixels.shape)
        image = (2.0 / 255.0) * raw - 1.0  # faster_rcnn_inception_v2's preprocess
        crops_input = tf.placeholder(tf.float32, crops.shape)
        outputs = build_detection(image, crops_input) if kind == "detection" else build_classification(image)
        with tf.Session() as session:
            randomise(session, rng)
            feed = {raw: pixels, crops_input: crops} if kind == "detection" else {raw: pixels}
            values = session.run(outputs, feed)
            version = tf.train.SaverDef.V1 if checkpoint_format == "V1" else tf.train.SaverDef.V2
            tf.train.Saver(write_version=version).save(session, str(out_dir / "model.ckpt"), write_meta_graph=False)
    values["pixels"] = pixels
    if kind == "detection":
        feature_height, feature_width = values["mixed_4e"].shape[1:3]
        anchors = grid_anchors(feature_height, feature_width)
        proposals = np.array([[10.0, 20.0, 90.0, 120.0], [0.0, 0.0, 147.0, 181.0], [50.0, 60.0, 70.0, 100.0]])
        values.update({
            "crops": crops, "anchors": anchors, "proposals": proposals, "large_factor": LARGE_FEATURE_FACTOR,
            "rpn_boxes": decode(values["rpn_box_encodings"], anchors),
            "rpn_boxes_large": decode(values["rpn_box_encodings_large"], anchors),
            "boxes": decode(values["box_encodings"], proposals[:, None, :]),
        })
    np.savez(out_dir / "reference.npz", **values)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--kind", choices=("detection", "classification"), required=True)
    parser.add_argument("--format", choices=("V1", "V2"), default="V2")
    args = parser.parse_args()
    main(args.out_dir, args.kind, args.format)

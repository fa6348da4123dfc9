"""Convert the published TensorFlow Inception-v2 checkpoints into detectron2 checkpoints of our model.

Two kinds of checkpoint are understood (names verified against the TF object-detection API and TF-slim):

``"detection"``: the object-detection API's ``faster_rcnn_inception_v2`` (the model zoo's
``faster_rcnn_inception_v2_coco_2018_01_28``)
    ``FirstStageFeatureExtractor/InceptionV2/<layer>``   backbone, Conv2d_1a_7x7 ... Mixed_4e
    ``SecondStageFeatureExtractor/InceptionV2/Mixed_5*``  box head
    ``Conv/{weights,biases}``                              the RPN's 3x3 conv (ReLU6 in TF)
    ``FirstStageBoxPredictor/{ClassPredictor,BoxEncodingPredictor}/{weights,biases}``  RPN 1x1 convs
    ``SecondStageBoxPredictor/{ClassPredictor,BoxEncodingPredictor}/{weights,biases}`` fully connected
``"classification"``: TF-slim's ImageNet ``inception_v2`` (``InceptionV2/<layer>`` up to Mixed_5c, plus the
    unused ImageNet classifier ``InceptionV2/Logits``). Only the backbone and box head come from it.

Layout changes:
- conv kernels HWIO -> OIHW; dense kernels [in, out] -> [out, in];
- depthwise kernels [kh, kw, in, mult] -> grouped-conv [in * mult, 1, kh, kw] (output channel in * mult + m,
  TF's depthwise order);
- batch norm: gamma (absent when TF used scale=False -> 1), beta, moving mean and variance, TF's eps 1e-3; a
  conv with biases and no batch norm (TF-slim's separable stem) becomes a norm with mean 0, variance 1 - eps;
- RPN objectness: TF's 2-way softmax (background, object) per anchor becomes one sigmoid logit
  l_object - l_background (identical probability);
- anchors: TF's grid anchors per location run aspect-ratio-major with ratio = width / height, detectron2's
  run size-major with ratio = height / width; each of our anchors is matched to TF's anchor of the same
  height and width, and the RPN's output channels are permuted accordingly;
- box codes: TF's [ty, tx, th, tw] scaled by (10, 10, 5, 5) become detectron2's [dx, dy, dw, dh] scaled by the
  config's BBOX_REG_WEIGHTS: rows are reordered and multiplied by weight / TF scale, so decoded boxes equal
  TF's for any weights;
- box predictor: TF's class 0 is background, detectron2's background is the last class; TF's class-specific
  boxes cover the 90 COCO classes only. Our model's classes are either taken from chosen COCO classes
  (``coco_class_ids``) or left at their initialisation (reported).
"""
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

# TF's FasterRcnnBoxCoder scale factors for (ty, tx, th, tw), both stages (core/target_assigner.py).
TF_BOX_CODER_SCALES = (10.0, 10.0, 5.0, 5.0)
# detectron2's delta k of (dx, dy, dw, dh) is TF's code TF_CODE_INDEX[k] of (ty, tx, th, tw).
TF_CODE_INDEX = (1, 0, 3, 2)
# TF's batch-norm epsilon (object-detection API and TF-slim Inception arg scopes).
TF_BN_EPS = 1e-3
# Where each part of our model lives in each kind of checkpoint.
TRUNK_SCOPES = {
    "detection": {"backbone.": "FirstStageFeatureExtractor/InceptionV2/",
                  "roi_heads.res5.": "SecondStageFeatureExtractor/InceptionV2/"},
    "classification": {"backbone.": "InceptionV2/", "roi_heads.res5.": "InceptionV2/"},
}
RPN_CONV = "Conv"
RPN_PREDICTOR = "FirstStageBoxPredictor"
BOX_PREDICTOR = "SecondStageBoxPredictor"
RPN_PREFIX = "proposal_generator.rpn_head."
BOX_PREDICTOR_PREFIX = "roi_heads.box_predictor."
# Last name components of optimizer slots and moving averages: training state, not weights.
TRAINING_STATE_SUFFIXES = ("Momentum", "ExponentialMovingAverage", "Adam", "Adam_1", "RMSProp", "RMSProp_1",
                           "Adagrad", "Ftrl", "Ftrl_1")
TRAINING_STATE_NAMES = ("global_step", "beta1_power", "beta2_power")
# Model entries that are not weights: BN step counters, and the normalisation the config sets.
NOT_WEIGHTS = ("num_batches_tracked", "pixel_mean", "pixel_std")
# The reason given for checkpoint variables that no rule knows.
UNMAPPED = "unmapped: no part of our model"


@dataclass(frozen=True)
class TFAnchorGrid:
    """The first-stage anchors of the TF model (``grid_anchor_generator`` of its pipeline config).

    Parameters
    ----------
    scales : tuple of float
        Anchor scales, multiplying ``base_size``.
    aspect_ratios : tuple of float
        Width / height of the anchors (TF's convention).
    base_size : float
        Base anchor size in input pixels (TF's default 256).
    """

    scales: tuple = (0.25, 0.5, 1.0, 2.0)
    aspect_ratios: tuple = (0.5, 1.0, 2.0)
    base_size: float = 256.0

    def cell_sizes(self):
        """(A, 2) heights and widths in pixels of the anchors at one location, in TF's channel order.

        TF's ``GridAnchorGenerator`` meshes scales with aspect ratios so that the ratio varies slowest:
        anchor ``r * len(scales) + s`` has ``height = scales[s] / sqrt(r) * base``, ``width = scales[s] *
        sqrt(r) * base``.
        """
        ratios = np.sqrt(np.asarray(self.aspect_ratios, dtype=np.float64))[:, None]
        scales = np.asarray(self.scales, dtype=np.float64)[None, :]
        heights = (scales / ratios * self.base_size).ravel()
        widths = (scales * ratios * self.base_size).ravel()
        return np.stack([heights, widths], axis=1)


@dataclass
class Conversion:
    """The result of ``convert_variables``.

    Attributes
    ----------
    state_dict : dict of str to torch.Tensor
        Our model's entries filled from the checkpoint (float32 tensors).
    kind : str
        ``"detection"`` or ``"classification"``.
    source : str
        The checkpoint read.
    reinitialised : dict of str to str
        Model entries not taken from the checkpoint (they keep the model's initialisation), with the reason.
    unused : dict of str to str
        Checkpoint variables nothing was taken from, with the reason.
    """

    state_dict: dict
    kind: str
    source: str
    reinitialised: dict = field(default_factory=dict)
    unused: dict = field(default_factory=dict)

    def unmapped(self):
        """Checkpoint variables that no rule knows (neither weights of our model nor known leftovers)."""
        return sorted(name for name, reason in self.unused.items() if reason == UNMAPPED)

    def summary(self, examples=3):
        """A human-readable report: what was converted, what was left at initialisation, what was unused."""
        lines = [f"{self.source}: {self.kind} checkpoint, {len(self.state_dict)} model entries converted"]
        for title, entries in (("left at their initialisation", self.reinitialised),
                               ("checkpoint variables not used", self.unused)):
            by_reason = {}
            for name, reason in entries.items():
                by_reason.setdefault(reason, []).append(name)
            for reason, names in sorted(by_reason.items()):
                names = sorted(names)
                shown = names if reason == UNMAPPED else names[:examples]
                more = f", ... ({len(names) - len(shown)} more)" if len(names) > len(shown) else ""
                lines.append(f"  {title} [{reason}]: {len(names)}: {', '.join(shown)}{more}")
        return "\n".join(lines)


class _Variables:
    """The checkpoint's variables, remembering which were read."""

    def __init__(self, variables, source):
        self.values, self.source, self.used, self.missing = variables, source, set(), []

    def __contains__(self, name):
        return name in self.values

    def take(self, name, required=True):
        if name not in self.values:
            if required:
                self.missing.append(name)
            return None
        self.used.add(name)
        return np.asarray(self.values[name], dtype=np.float32)


def checkpoint_kind(names, source="checkpoint"):
    """``"detection"`` or ``"classification"`` from the variable ``names``; ValueError for anything else."""
    if any(name.startswith(TRUNK_SCOPES["detection"]["backbone."]) for name in names):
        return "detection"
    if any(name.startswith(TRUNK_SCOPES["classification"]["backbone."]) for name in names):
        return "classification"
    sample = ", ".join(sorted(names)[:5]) or "no variables"
    raise ValueError(f"{source}: neither a TF object-detection faster_rcnn_inception_v2 checkpoint "
                     f"(FirstStageFeatureExtractor/InceptionV2/...) nor a TF-slim inception_v2 one "
                     f"(InceptionV2/...); it holds {sample}")


def conv_weight(hwio):
    """TF conv kernel [kh, kw, in, out] -> PyTorch [out, in, kh, kw]."""
    return np.ascontiguousarray(np.transpose(hwio, (3, 2, 0, 1)))


def depthwise_weight(kernel):
    """TF depthwise kernel [kh, kw, in, mult] -> grouped-conv weight [in * mult, 1, kh, kw].

    TF's output channel ``i * mult + m`` filters input channel ``i`` with ``kernel[:, :, i, m]``; a PyTorch
    conv with ``groups=in`` reads input channel ``c // mult`` for output channel ``c``: the same order.
    """
    kh, kw, channels, multiplier = kernel.shape
    return np.ascontiguousarray(kernel.reshape(kh, kw, channels * multiplier).transpose(2, 0, 1)[:, None])


def box_codes_to_detectron2(codes, target_weights):
    """TF box codes on the last axis, (ty, tx, th, tw) x TF_BOX_CODER_SCALES -> (dx, dy, dw, dh) x weights.

    Applied to the rows of a linear predictor of codes (weights and biases alike) it makes detectron2's
    ``Box2BoxTransform(target_weights)`` decode the same boxes as TF's ``FasterRcnnBoxCoder``.
    """
    factors = np.array([target_weights[k] / TF_BOX_CODER_SCALES[TF_CODE_INDEX[k]] for k in range(4)],
                       dtype=np.float64)
    return (codes[..., list(TF_CODE_INDEX)] * factors).astype(np.float32)


def anchor_permutation(cell_anchors, tf_anchors, source="checkpoint"):
    """For each of our anchors at one location, the index of TF's anchor of the same height and width.

    Parameters
    ----------
    cell_anchors : array (A, 4)
        Our anchors at one location, (x0, y0, x1, y1) in pixels (detectron2's ``cell_anchors``).
    tf_anchors : TFAnchorGrid
        The TF model's anchors.

    Raises
    ------
    ValueError
        When the two sets of anchor shapes differ.
    """
    cell_anchors = np.asarray(cell_anchors, dtype=np.float64)
    ours = np.stack([cell_anchors[:, 3] - cell_anchors[:, 1], cell_anchors[:, 2] - cell_anchors[:, 0]], axis=1)
    theirs = tf_anchors.cell_sizes()
    close = np.all(np.abs(ours[:, None] - theirs[None]) <= 1e-4 * np.maximum(theirs[None], 1.0), axis=2)
    permutation = np.argmax(close, axis=1)
    if len(ours) != len(theirs) or not close.any(axis=1).all() or len(set(permutation)) != len(ours):
        raise ValueError(
            f"{source}: the config's anchors (height x width {_sizes(ours)}) are not the TF model's "
            f"({_sizes(theirs)} from scales {tf_anchors.scales}, aspect ratios {tf_anchors.aspect_ratios}, "
            f"base {tf_anchors.base_size}); set MODEL.ANCHOR_GENERATOR or the TF anchor options to match")
    return permutation


def _sizes(heights_widths):
    return ", ".join(f"{h:.1f}x{w:.1f}" for h, w in heights_widths)


def rpn_objectness(kernel, bias, permutation):
    """TF's first-stage ClassPredictor (1x1 conv to A x (background, object)) -> detectron2 logits [A, C, 1, 1].

    ``sigmoid(l_object - l_background)`` equals TF's softmax probability of "object".
    """
    kernel = kernel.reshape(kernel.shape[-2], -1, 2)  # [in, A, 2]
    bias = bias.reshape(-1, 2)
    weight = (kernel[..., 1] - kernel[..., 0])[:, permutation].T
    return np.ascontiguousarray(weight[:, :, None, None]), (bias[:, 1] - bias[:, 0])[permutation]


def rpn_anchor_deltas(kernel, bias, permutation, target_weights):
    """TF's first-stage BoxEncodingPredictor (1x1 conv to A x 4 codes) -> detectron2's [A * 4, C, 1, 1]."""
    kernel = box_codes_to_detectron2(kernel.reshape(kernel.shape[-2], -1, 4), target_weights)[:, permutation]
    bias = box_codes_to_detectron2(bias.reshape(-1, 4), target_weights)[permutation]
    weight = kernel.reshape(kernel.shape[0], -1).T
    return np.ascontiguousarray(weight[:, :, None, None]), bias.reshape(-1)


def box_predictor(class_kernel, class_bias, box_kernel, box_bias, coco_class_ids, target_weights):
    """TF's second-stage predictor -> detectron2's ``cls_score`` and ``bbox_pred`` for the chosen classes.

    Parameters
    ----------
    class_kernel, class_bias : arrays [in, K + 1], [K + 1]
        TF's ClassPredictor; column 0 is background, column c the label-map class c.
    box_kernel, box_bias : arrays [in, K * 4], [K * 4]
        TF's class-specific BoxEncodingPredictor; codes of class c at columns (c - 1) * 4 ...
    coco_class_ids : sequence of int
        TF class ids (1 ... K) that become our classes 0, 1, ...; background goes last.
    target_weights : sequence of 4 float
        ``MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS``.

    Returns
    -------
    dict of str to ndarray
        ``cls_score.weight``, ``cls_score.bias``, ``bbox_pred.weight``, ``bbox_pred.bias``.
    """
    ids = np.asarray(coco_class_ids, dtype=int)
    columns = np.concatenate([ids, [0]])
    boxes = box_codes_to_detectron2(box_kernel.reshape(box_kernel.shape[0], -1, 4)[:, ids - 1], target_weights)
    box_bias = box_codes_to_detectron2(box_bias.reshape(-1, 4)[ids - 1], target_weights)
    return {
        "cls_score.weight": np.ascontiguousarray(class_kernel[:, columns].T),
        "cls_score.bias": class_bias[columns],
        "bbox_pred.weight": np.ascontiguousarray(boxes.reshape(boxes.shape[0], -1).T),
        "bbox_pred.bias": box_bias.reshape(-1),
    }


def _unit_norm(variables, scope, channels):
    """Batch-norm entries of the conv unit at TF ``scope`` (see the module docstring); {} when missing."""
    if f"{scope}/BatchNorm/moving_mean" in variables:
        if f"{scope}/biases" in variables:
            raise ValueError(f"{variables.source}: {scope} has both biases and BatchNorm; not an Inception-v2 "
                             "layer this converter knows")
        gamma = variables.take(f"{scope}/BatchNorm/gamma", required=False)
        norm = {"weight": np.ones(channels, np.float32) if gamma is None else gamma,
                "bias": variables.take(f"{scope}/BatchNorm/beta"),
                "running_mean": variables.take(f"{scope}/BatchNorm/moving_mean"),
                "running_var": variables.take(f"{scope}/BatchNorm/moving_variance")}
    elif f"{scope}/biases" in variables:
        # (x - 0) / sqrt(1 - eps + eps) * 1 + b: the conv's bias, exactly.
        norm = {"weight": np.ones(channels, np.float32), "bias": variables.take(f"{scope}/biases"),
                "running_mean": np.zeros(channels, np.float32),
                "running_var": np.full(channels, 1.0 - TF_BN_EPS, np.float32)}
    else:
        norm = {name: variables.take(f"{scope}/BatchNorm/{name}") for name in ("beta", "moving_mean",
                                                                               "moving_variance")}
    return {f"norm.{name}": value for name, value in norm.items() if value is not None}


def _trunk_entries(store, target_shapes, scopes):
    """Backbone and box-head entries: every ``ConvUnit`` / ``SeparableConvUnit`` of ours from its TF scope."""
    units = {}
    for key in target_shapes:
        prefix = next((p for p in scopes if key.startswith(p)), None)
        if prefix is not None and key.rpartition(".")[2] not in NOT_WEIGHTS:
            unit, part = key.rsplit(".", 2)[0], ".".join(key.rsplit(".", 2)[1:])
            units.setdefault((prefix, unit), set()).add(part)
    entries = {}
    for (prefix, unit), parts in units.items():
        scope = scopes[prefix] + unit[len(prefix):].replace(".", "/")
        rules = {"conv.weight": (f"{scope}/weights", conv_weight),
                 "depthwise.weight": (f"{scope}/depthwise_weights", depthwise_weight),
                 "pointwise.weight": (f"{scope}/pointwise_weights", conv_weight)}
        unknown = sorted(parts - set(rules) - {"norm.weight", "norm.bias", "norm.running_mean", "norm.running_var"})
        if unknown:
            raise ValueError(f"{store.source}: no conversion rule for our model's entries "
                             f"{', '.join(f'{unit}.{part}' for part in unknown)}")
        unit_entries = _unit_norm(store, scope, target_shapes[f"{unit}.norm.bias"][0])
        for part in sorted(parts & set(rules)):
            name, layout = rules[part]
            value = store.take(name)
            if value is not None:
                unit_entries[part] = layout(value)
        entries.update({f"{unit}.{part}": value for part, value in unit_entries.items()})
    return entries


def convert_variables(variables, target_shapes, *, cell_anchors=None, rpn_box_weights=(1.0, 1.0, 1.0, 1.0),
                      roi_box_weights=TF_BOX_CODER_SCALES, coco_class_ids=None, tf_anchors=TFAnchorGrid(),
                      source="checkpoint"):
    """Map TF checkpoint variables onto our model's state dict (pure; no TensorFlow needed).

    Parameters
    ----------
    variables : dict of str to ndarray
        Every variable of the TF checkpoint (``read_tf_checkpoint``).
    target_shapes : dict of str to tuple
        Our model's ``state_dict`` entries and their shapes (``model.state_dict()``).
    cell_anchors : array (A, 4), optional
        Our RPN's anchors at one location, (x0, y0, x1, y1) pixels; needed for a detection checkpoint.
    rpn_box_weights, roi_box_weights : sequence of 4 float
        ``MODEL.RPN.BBOX_REG_WEIGHTS`` and ``MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS`` (dx, dy, dw, dh).
    coco_class_ids : sequence of int, optional
        TF class ids (1-90 in the COCO label map; e.g. 1 person) that become our classes, in order, one per
        class of ``ROI_HEADS.NUM_CLASSES``. None leaves the box predictor at its initialisation.
    tf_anchors : TFAnchorGrid
        The TF model's first-stage anchors.
    source : str
        The checkpoint's name for messages.

    Returns
    -------
    Conversion

    Raises
    ------
    ValueError
        A variable our model needs is missing (all such are named), shapes disagree, or an option does not
        fit the checkpoint.
    """
    kind = checkpoint_kind(variables, source)
    store = _Variables(variables, source)
    conversion = Conversion(state_dict={}, kind=kind, source=source)
    scopes = TRUNK_SCOPES[kind]
    rpn_keys = sorted(k for k in target_shapes if k.startswith(RPN_PREFIX))
    predictor_keys = sorted(k for k in target_shapes if k.startswith(BOX_PREDICTOR_PREFIX))
    known = tuple(scopes) + (RPN_PREFIX, BOX_PREDICTOR_PREFIX)
    unknown = sorted(k for k in target_shapes if not k.startswith(known) and k.rpartition(".")[2] not in NOT_WEIGHTS)
    if unknown:
        raise ValueError(f"{source}: no conversion rule for our model's entries {', '.join(unknown[:5])}"
                         f"{' ...' if len(unknown) > 5 else ''}")
    converted = _trunk_entries(store, target_shapes, scopes)

    if kind == "detection":
        converted.update(_rpn_entries(store, rpn_keys, cell_anchors, rpn_box_weights, tf_anchors))
    else:
        conversion.reinitialised.update(dict.fromkeys(rpn_keys, "RPN: not in an ImageNet checkpoint"))
    if coco_class_ids is None:
        reason = ("box predictor: no COCO class kept (coco_class_ids)" if kind == "detection"
                  else "box predictor: not in an ImageNet checkpoint")
        conversion.reinitialised.update(dict.fromkeys(predictor_keys, reason))
    elif kind == "classification":
        raise ValueError(f"{source}: an ImageNet checkpoint has no COCO classes to keep; drop coco_class_ids")
    else:
        converted.update(_predictor_entries(store, coco_class_ids, roi_box_weights, target_shapes))

    if store.missing:
        missing = sorted(set(store.missing))
        raise ValueError(f"{source}: {len(missing)} variable(s) our model needs are not in the checkpoint: "
                         f"{', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''} "
                         f"(check MODEL.INCEPTION_V2.USE_SEPARABLE_CONV and the checkpoint kind)")
    for key, value in converted.items():
        if tuple(value.shape) != tuple(target_shapes[key]):
            raise ValueError(f"{source}: {key} has shape {tuple(value.shape)} in the checkpoint but "
                             f"{tuple(target_shapes[key])} in our model (check MODEL.INCEPTION_V2.DEPTH_MULTIPLIER, "
                             f"MODEL.RPN.CONV_DIMS and the anchors)")
        conversion.state_dict[key] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    conversion.unused = {name: _unused_reason(name, kind) for name in variables if name not in store.used}
    return conversion


def _rpn_entries(store, rpn_keys, cell_anchors, rpn_box_weights, tf_anchors):
    expected = {f"{RPN_PREFIX}{name}" for name in ("conv.weight", "conv.bias", "objectness_logits.weight",
                                                   "objectness_logits.bias", "anchor_deltas.weight",
                                                   "anchor_deltas.bias")}
    if set(rpn_keys) != expected:
        raise ValueError(f"{store.source}: TF's RPN is one 3x3 conv and two 1x1 convs; our RPN head has "
                         f"{', '.join(rpn_keys)} (set MODEL.RPN.CONV_DIMS to [512])")
    if cell_anchors is None:
        raise ValueError(f"{store.source}: converting the RPN needs our cell anchors")
    conv = store.take(f"{RPN_CONV}/weights")
    conv_bias = store.take(f"{RPN_CONV}/biases")
    values = [store.take(f"{RPN_PREDICTOR}/{layer}/{name}") for layer in ("ClassPredictor", "BoxEncodingPredictor")
              for name in ("weights", "biases")]
    if conv is None or conv_bias is None or any(value is None for value in values):
        return {}
    class_kernel, class_bias, box_kernel, box_bias = values
    permutation = anchor_permutation(cell_anchors, tf_anchors, store.source)
    if class_bias.size != 2 * len(permutation) or box_bias.size != 4 * len(permutation):
        raise ValueError(f"{store.source}: the first-stage predictor has {class_bias.size // 2} anchors per "
                         f"location but the TF anchor grid {tf_anchors} has {len(permutation)}")
    objectness = rpn_objectness(class_kernel, class_bias, permutation)
    deltas = rpn_anchor_deltas(box_kernel, box_bias, permutation, rpn_box_weights)
    entries = {"conv.weight": conv_weight(conv), "conv.bias": conv_bias,
               "objectness_logits.weight": objectness[0], "objectness_logits.bias": objectness[1],
               "anchor_deltas.weight": deltas[0], "anchor_deltas.bias": deltas[1]}
    return {RPN_PREFIX + name: value for name, value in entries.items()}


def _predictor_entries(store, coco_class_ids, roi_box_weights, target_shapes):
    values = [store.take(f"{BOX_PREDICTOR}/{layer}/{name}") for layer in ("ClassPredictor", "BoxEncodingPredictor")
              for name in ("weights", "biases")]
    if any(value is None for value in values):
        return {}
    n_classes = values[1].size - 1
    ids = list(coco_class_ids)
    bad = [i for i in ids if not 1 <= i <= n_classes]
    if bad or len(set(ids)) != len(ids):
        raise ValueError(f"{store.source}: COCO class ids must be distinct and in 1..{n_classes}; got {ids}")
    ours = target_shapes[f"{BOX_PREDICTOR_PREFIX}cls_score.bias"][0] - 1
    if len(ids) != ours:
        raise ValueError(f"{store.source}: {len(ids)} COCO class(es) kept but MODEL.ROI_HEADS.NUM_CLASSES is {ours}")
    if target_shapes[f"{BOX_PREDICTOR_PREFIX}bbox_pred.bias"][0] != 4 * ours:
        raise ValueError(f"{store.source}: TF's boxes are class-specific; set MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG "
                         "False to keep COCO classes")
    entries = box_predictor(*values, ids, roi_box_weights)
    return {BOX_PREDICTOR_PREFIX + name: value for name, value in entries.items()}


def _unused_reason(name, kind):
    parts = name.split("/")
    if parts[-1] in TRAINING_STATE_SUFFIXES or name in TRAINING_STATE_NAMES:
        return "training state (optimizer slots, step counter)"
    if kind == "classification" and name.startswith("InceptionV2/Logits/"):
        return "ImageNet classifier: not part of a detector"
    if kind == "detection" and name.startswith(f"{BOX_PREDICTOR}/"):
        return "COCO box predictor: no class kept"
    return UNMAPPED


def resolve_checkpoint_path(path):
    """Check that ``path`` names a TF checkpoint: a V2 prefix (``.index`` beside it), a V1 file or a folder."""
    path = Path(path)
    if path.is_dir() or path.is_file() or Path(f"{path}.index").is_file():
        return path
    raise FileNotFoundError(f"{path}: no TensorFlow checkpoint here (looked for {path}, {path}.index and a "
                            "folder); give the checkpoint prefix, e.g. .../model.ckpt")


def read_tf_checkpoint(path):
    """Every numeric variable of the TF checkpoint at ``path``, read by TensorFlow in a separate process.

    Parameters
    ----------
    path : str or Path
        A checkpoint prefix (V2: ``model.ckpt`` for ``model.ckpt.index`` + ``.data-*``), a V1 checkpoint file,
        or a folder with TensorFlow's ``checkpoint`` state file.

    Returns
    -------
    variables : dict of str to ndarray
    prefix : str
        The checkpoint actually read.

    Raises
    ------
    FileNotFoundError
        Nothing at ``path``.
    RuntimeError
        TensorFlow is missing or cannot read the checkpoint (its message is included).
    """
    path = resolve_checkpoint_path(path)
    reader = Path(__file__).with_name("tf_reader.py")
    with tempfile.TemporaryDirectory(prefix="deepcee_tf_") as folder:
        dump = Path(folder) / "variables.npz"
        result = subprocess.run([sys.executable, str(reader), str(path), str(dump)], capture_output=True,
                                text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        if result.returncode != 0:
            message = (result.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise RuntimeError(f"{path}: reading the TensorFlow checkpoint failed: {message}")
        with np.load(dump) as data:
            names = [str(name) for name in data["names"]]
            variables = {name: data[f"v{i}"] for i, name in enumerate(names)}
            prefix = str(data["checkpoint"])
    return variables, prefix


def check_config_for_tf_weights(cfg, source="checkpoint"):
    """Raise ValueError unless ``cfg`` feeds the network as the TF checkpoints expect.

    The TF Inception checkpoints were trained on RGB input mapped to (2/255) x - 1, i.e. (x - 127.5) / 127.5,
    with batch-norm epsilon 1e-3.
    """
    problems = []
    if not (np.allclose(cfg.MODEL.PIXEL_MEAN, 127.5) and np.allclose(cfg.MODEL.PIXEL_STD, 127.5)):
        problems.append(f"MODEL.PIXEL_MEAN / PIXEL_STD are {list(cfg.MODEL.PIXEL_MEAN)} / "
                        f"{list(cfg.MODEL.PIXEL_STD)}, not 127.5 (TF's (2/255) x - 1)")
    if cfg.INPUT.FORMAT != "RGB":
        problems.append(f"INPUT.FORMAT is {cfg.INPUT.FORMAT!r}, not 'RGB'")
    if not np.isclose(cfg.MODEL.INCEPTION_V2.BN_EPS, TF_BN_EPS):
        problems.append(f"MODEL.INCEPTION_V2.BN_EPS is {cfg.MODEL.INCEPTION_V2.BN_EPS}, not TF's {TF_BN_EPS}")
    if problems:
        raise ValueError(f"{source}: the config does not match the TF weights: {'; '.join(problems)}")


def conversion_targets(cfg):
    """What ``convert_variables`` needs to know of the model that ``cfg`` builds (built once, on the CPU).

    Returns
    -------
    dict
        ``target_shapes`` (state-dict entry -> shape), ``cell_anchors`` (A, 4), ``rpn_box_weights`` and
        ``roi_box_weights``: keyword arguments of ``convert_variables``.
    """
    from detectron2.modeling import build_model

    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    cell_anchors = list(model.proposal_generator.anchor_generator.cell_anchors)
    if len(cell_anchors) != 1:
        raise ValueError(f"TF's RPN works on one feature map; the config's anchor generator has {len(cell_anchors)}")
    return {"target_shapes": {key: tuple(value.shape) for key, value in model.state_dict().items()},
            "cell_anchors": cell_anchors[0].numpy(),
            "rpn_box_weights": tuple(cfg.MODEL.RPN.BBOX_REG_WEIGHTS),
            "roi_box_weights": tuple(cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS)}


def convert_tf_checkpoint(checkpoint, cfg, coco_class_ids=None, tf_anchors=TFAnchorGrid()):
    """Read a TF Inception-v2 checkpoint and convert it for the model that ``cfg`` builds.

    Parameters
    ----------
    checkpoint : str or Path
        See ``read_tf_checkpoint``.
    cfg : CfgNode
        The config the converted weights are for (``deepcee_d2.config.load_config``); its preprocessing is
        checked (``check_config_for_tf_weights``) and its anchors, BBOX_REG_WEIGHTS and NUM_CLASSES shape the
        conversion.
    coco_class_ids, tf_anchors
        See ``convert_variables``.

    Returns
    -------
    Conversion
    """
    check_config_for_tf_weights(cfg, str(checkpoint))
    variables, prefix = read_tf_checkpoint(checkpoint)
    return convert_variables(variables, **conversion_targets(cfg), coco_class_ids=coco_class_ids,
                             tf_anchors=tf_anchors, source=prefix)


def save_detectron2_checkpoint(conversion, path):
    """Write ``conversion`` as a detectron2 checkpoint for ``MODEL.WEIGHTS`` (tensors only; atomic).

    The file loads with ``torch.load(path, weights_only=True)`` and needs neither TensorFlow nor numpy.
    """
    from ..io import atomic_output

    checkpoint = {"model": conversion.state_dict,
                  "__author__": f"deepcee_d2.convert from TensorFlow checkpoint {conversion.source}",
                  "matching_heuristics": False}
    with atomic_output(path) as temporary:
        torch.save(checkpoint, temporary)
    return Path(path)

"""The one place weights are loaded: safely (no pickle), strictly (every parameter fits), naming the file.

detectron2's checkpointer unpickles ``.pkl`` files (a crafted file runs code) and loads weights of another
architecture with a warning per skipped parameter. Here every weights file goes through `SafeCheckpointer`:

- ``.pkl`` / ``.pyth`` files are refused; everything else is read with ``torch.load(..., weights_only=True)``,
  which builds tensors and plain containers only. detectron2's own checkpoints (model, optimizer, scheduler,
  iteration) are such containers, so resuming training works through it too.
- Anything that is not a state dict (random bytes, a pickle of objects) is an error naming the file.
- With ``strict`` (inference and evaluation always; training unless ``DEEPCEE.WEIGHTS_STRICT`` is False), a
  missing, unexpected or reshaped parameter is an error listing them.

`DetectorFactory` is the picklable recipe a survey worker calls once: it checks the weights in the calling
process (so a bad file is reported before Dask starts) and builds detectron2's ``DefaultPredictor`` with the
survey's number of proposals per tile and its tiles' size (`survey_detector_config`), its model prepared for
inference (`prepare_for_inference`).
"""
import hashlib
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np
import torch

from detectron2.checkpoint import DetectionCheckpointer

from ..io import file_sha256

PICKLE_SUFFIXES = (".pkl", ".pickle", ".pyth")
SHOWN_KEYS = 5  # keys listed per kind of mismatch; the counts give the rest


class WeightsError(ValueError):
    """A weights file that cannot be loaded safely, or does not fit the model."""


def _listing(items, describe=str):
    shown = ", ".join(describe(item) for item in items[:SHOWN_KEYS])
    return shown + (f", ... ({len(items) - SHOWN_KEYS} more)" if len(items) > SHOWN_KEYS else "")


def read_state_dict(path):
    """The checkpoint dict of a weights file, read without running code.

    Returns
    -------
    dict
        ``{"model": {name: tensor}, ...}`` (a bare state dict is wrapped in ``"model"``).

    Raises
    ------
    FileNotFoundError
        No such file.
    WeightsError
        A pickle file, a file ``torch.load(weights_only=True)`` refuses (random bytes, python objects), or
        a file that holds no ``{name: tensor}`` state dict; the message names the file.
    """
    path = str(path)
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: weights file not found")
    if path.lower().endswith(PICKLE_SUFFIXES):
        raise WeightsError(f"{path}: pickle files can run code when loaded and are refused; give a PyTorch "
                           "state dict (.pth), e.g. saved by detectron2's training or tools/convert_tf_checkpoint.py")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise WeightsError(f"{path}: not a PyTorch weights file that loads safely (torch.load with "
                           f"weights_only=True: {reason})") from None
    if isinstance(loaded, Mapping) and "model" in loaded:
        checkpoint = dict(loaded)
    else:
        checkpoint = {"model": loaded}
    state = checkpoint["model"]
    if not isinstance(state, Mapping) or not state or not all(
            isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items()):
        raise WeightsError(f"{path}: holds no state dict (a mapping of parameter names to tensors)")
    return checkpoint


class SafeCheckpointer(DetectionCheckpointer):
    """detectron2's ``DetectionCheckpointer`` reading files with `read_state_dict` and, with ``strict``,
    refusing weights that do not fit the model (module docstring)."""

    def __init__(self, model, save_dir="", *, strict=True, **checkpointables):
        super().__init__(model, save_dir, **checkpointables)
        self.strict = strict
        self.loaded_file = None

    def _load_file(self, filename):
        self.loaded_file = filename
        return read_state_dict(filename)

    def _load_model(self, checkpoint):
        incompatible = super()._load_model(checkpoint)
        problems = []
        if incompatible.incorrect_shapes:
            problems.append(f"{len(incompatible.incorrect_shapes)} of another shape: " + _listing(
                incompatible.incorrect_shapes,
                lambda item: f"{item[0]} (file {list(item[1])}, model {list(item[2])})"))
        reshaped = {key for key, _, _ in incompatible.incorrect_shapes}
        missing = [key for key in incompatible.missing_keys if key not in reshaped]  # fvcore lists them twice
        if missing:
            problems.append(f"{len(missing)} missing from the file: " + _listing(missing))
        if incompatible.unexpected_keys:
            problems.append(f"{len(incompatible.unexpected_keys)} not in the model: "
                            + _listing(incompatible.unexpected_keys))
        if problems and self.strict:
            raise WeightsError(f"{self.loaded_file}: the weights do not fit this model (another architecture, "
                               f"e.g. MODEL.INCEPTION_V2.DEPTH_MULTIPLIER or NUM_CLASSES?); parameters "
                               + "; ".join(problems) + ". To fine-tune from weights of another head, set "
                               "DEEPCEE.WEIGHTS_STRICT False (training only)")
        return incompatible


def load_weights(model, path, strict=True):
    """Load the weights file ``path`` (local path or URL) into ``model`` through `SafeCheckpointer`."""
    return SafeCheckpointer(model, strict=strict).load(str(path))


def weights_file(cfg):
    """The local path of ``cfg.MODEL.WEIGHTS`` (URLs are fetched into detectron2's cache), which must exist."""
    from detectron2.utils.file_io import PathManager

    weights = cfg.MODEL.WEIGHTS
    if not weights:
        # Without weights every worker would draw its own random model.
        raise ValueError("MODEL.WEIGHTS is empty: inference needs trained weights "
                         "(e.g. MODEL.WEIGHTS output/model_final.pth)")
    local = Path(PathManager.get_local_path(weights)) if "://" in weights else Path(weights)
    if not local.is_file():
        raise FileNotFoundError(f"{weights}: MODEL.WEIGHTS file not found")
    return local


def prepare_for_inference(model):
    """``model`` in eval mode, made faster for inference with the same outputs (to float32 rounding): every
    batch norm of the Inception-v2 layers folded into its convolution, and channels-last tensors (oneDNN's
    faster layout on CPU). Together 1.2-1.4x less time per image on CPU (BENCHMARKS "Detector precision").
    The model can no longer be trained or saved as a checkpoint of the original architecture."""
    from ..modeling.inception_v2 import ConvUnit, SeparableConvUnit

    model.eval()
    for module in model.modules():
        if isinstance(module, (ConvUnit, SeparableConvUnit)):
            module.fold_norm()
    return model.to(memory_format=torch.channels_last)


def build_inference_model(cfg):
    """The model of ``cfg`` with ``MODEL.WEIGHTS`` loaded strictly, prepared for inference
    (`prepare_for_inference`)."""
    from .trainer import Trainer

    model = Trainer.build_model(cfg)
    load_weights(model, weights_file(cfg), strict=True)
    return prepare_for_inference(model)


def survey_detector_config(cfg):
    """A copy of ``cfg`` for survey tiles: ``MODEL.RPN.PRE_NMS_TOPK_TEST`` and ``POST_NMS_TOPK_TEST`` are at most
    ``DEEPCEE.SURVEY.PRE_NMS_TOPK_TEST`` and ``POST_NMS_TOPK_TEST`` (the survey's boxes per tile before the RPN's
    NMS and its proposals per tile; 0 keeps the evaluation's value)
    and ``INPUT.MIN_SIZE_TEST`` / ``MAX_SIZE_TEST`` grow with the tiles' network images
    (`~deepcee_d2.data.colour.survey_tile_sizes`) over the training ones (``COLOUR.NETWORK_SIZE``), so a tile
    reaches the network at the scale of evaluation's images. ``cfg`` itself is not changed."""
    from ..data.colour import survey_tile_sizes

    survey = cfg.clone()
    survey.defrost()
    for key in ("PRE_NMS_TOPK_TEST", "POST_NMS_TOPK_TEST"):
        limit = cfg.DEEPCEE.SURVEY[key]
        if limit < 0:
            raise ValueError(f"DEEPCEE.SURVEY.{key} {limit}: give a number of boxes per tile, or 0 for "
                             f"MODEL.RPN.{key}")
        if limit:
            survey.MODEL.RPN[key] = min(limit, cfg.MODEL.RPN[key])
    # Tiles larger than the training images are resized as evaluation resizes those, scaled up alike.
    scale = survey_tile_sizes(cfg)[1] / cfg.DEEPCEE.COLOUR.NETWORK_SIZE
    survey.INPUT.MIN_SIZE_TEST = round(cfg.INPUT.MIN_SIZE_TEST * scale)
    survey.INPUT.MAX_SIZE_TEST = round(cfg.INPUT.MAX_SIZE_TEST * scale)
    survey.freeze()
    return survey


class DetectorFactory:
    """Picklable recipe for the detector a worker builds once: detectron2's ``DefaultPredictor`` on
    `survey_detector_config` of ``cfg``, with ``MODEL.WEIGHTS`` loaded by `load_weights`, running with
    ``DEEPCEE.SURVEY.TORCH_THREADS_PER_WORKER`` PyTorch (and opencv) threads.

    Creating it checks the weights completely (a model is built and loaded once here), so a bad file is an
    error naming it before any worker starts; ``weights_sha256`` identifies the file.
    """

    def __init__(self, cfg):
        threads = cfg.DEEPCEE.SURVEY.TORCH_THREADS_PER_WORKER
        if threads < 1:
            raise ValueError(f"DEEPCEE.SURVEY.TORCH_THREADS_PER_WORKER must be at least 1, got {threads}")
        cfg = survey_detector_config(cfg)
        self.weights = str(weights_file(cfg))
        build_inference_model(cfg)  # raises WeightsError naming the file
        self.weights_sha256 = file_sha256(self.weights)
        self.config_yaml = cfg.dump()
        self.threads = threads
        self.cache_key = hashlib.sha256(f"{self.config_yaml}{threads}{self.weights_sha256}".encode()).hexdigest()

    def build_predictor(self):
        """detectron2's ``DefaultPredictor`` of this recipe with its weights loaded."""
        from detectron2.config import CfgNode
        from detectron2.engine import DefaultPredictor

        cfg = CfgNode.load_cfg(self.config_yaml)
        cfg.MODEL.WEIGHTS = ""  # DefaultPredictor loads nothing; load_weights does, safely
        predictor = DefaultPredictor(cfg)
        load_weights(predictor.model, self.weights, strict=True)
        prepare_for_inference(predictor.model)
        return predictor

    def __call__(self):
        torch.set_num_threads(self.threads)
        # The worker's resampling and colour images (opencv) too: opencv starts a thread per core by default,
        # which oversubscribes a node running a single-threaded worker per core.
        cv2.setNumThreads(self.threads)
        predictor = self.build_predictor()

        def detect(rgb):
            # DefaultPredictor takes BGR (OpenCV order) and converts to the model's INPUT.FORMAT.
            instances = predictor(np.ascontiguousarray(rgb[:, :, ::-1]))["instances"].to("cpu")
            return instances.pred_boxes.tensor.numpy().astype(float), instances.scores.numpy().astype(float)

        return detect

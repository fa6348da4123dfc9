"""The Deep-CEE trainer: detectron2's DefaultTrainer with Deep-CEE's evaluator and TF-style global gradient
clipping, evaluating a copy of the model prepared for inference. Only classmethods are overridden, and
``resume_or_load``, so that weights are loaded safely and strictly; detectron2's DatasetMapper reads the
images (in training with INPUT.RANDOM_FLIP and the quarter turns of ``DEEPCEE.AUGMENT``,
deepcee_d2.data.augment) and the evaluator takes the truth and WCS of each image from the DatasetCatalog
records."""
import copy
import json
import logging
import os
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from detectron2.data import DatasetMapper, build_detection_train_loader
from detectron2.engine import DefaultTrainer
from detectron2.solver import build_optimizer
from detectron2.utils import comm

from ..compat import check_compiled_ops
from ..config import flat_config
from ..data.augment import build_train_augmentations
from ..evaluation import DeepCEEEvaluator
from ..io import atomic_output, setting_differences
from .predictor import SafeCheckpointer, prepare_for_inference

logger = logging.getLogger(__name__)

GLOBAL_NORM_CLIP_TYPE = "full_model"
# The record, in OUTPUT_DIR, of the settings its checkpoints were trained with (`check_training_settings`).
TRAINING_SETTINGS_FILE = "training_settings.json"
# Config keys (and sections, ending in ".") that do not change what training computes: where and how often it
# writes, the device, the initial weights (not read when resuming), the loader's processes, and what is used
# only at test time or after training.
NOT_TRAINING_KEYS = ("OUTPUT_DIR", "MODEL.DEVICE", "MODEL.WEIGHTS", "DATALOADER.NUM_WORKERS",
                     "SOLVER.CHECKPOINT_PERIOD", "VIS_PERIOD", "CUDNN_BENCHMARK", "GLOBAL.", "TEST.", "DATASETS.TEST",
                     "INPUT.MIN_SIZE_TEST", "INPUT.MAX_SIZE_TEST",
                     "MODEL.RPN.PRE_NMS_TOPK_TEST", "MODEL.RPN.POST_NMS_TOPK_TEST",
                     "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "MODEL.ROI_HEADS.NMS_THRESH_TEST",
                     "DEEPCEE.EVAL.", "DEEPCEE.SURVEY.", "DEEPCEE.REDSHIFT.")
# Keys a resumed run may change: its schedule's length, as when training is extended (detectron2's --resume).
SCHEDULE_KEYS = ("SOLVER.MAX_ITER", "SOLVER.STEPS")


def training_settings(cfg):
    """The keys of ``cfg`` that decide the trained weights, flattened ("SOLVER.BASE_LR": 0.0002), as JSON
    gives them back (tuples as lists)."""
    return json.loads(json.dumps(flat_config(cfg, skip=NOT_TRAINING_KEYS)))


def check_training_settings(cfg, may_change=()):
    """Refuse to go on from the checkpoints of ``cfg.OUTPUT_DIR`` when they were trained with other settings
    than ``cfg``'s (`training_settings`), keys of ``may_change`` aside; then record ``cfg``'s there.

    A folder with checkpoints but no record (made before the record existed) is accepted with a warning, and
    left without one.

    Raises
    ------
    ValueError
        Naming the folder and every key that differs, with both values.
    """
    record = Path(cfg.OUTPUT_DIR) / TRAINING_SETTINGS_FILE
    current = training_settings(cfg)
    if record.is_file():
        try:
            previous = json.loads(record.read_text())
        except json.JSONDecodeError:
            previous = None
        if not isinstance(previous, dict):
            raise ValueError(f"{record}: not a training-settings record (a JSON object of config keys); delete "
                             f"it to go on unchecked")
        differences = setting_differences(previous, current, ignore=may_change)
        if differences:
            raise ValueError(f"{cfg.OUTPUT_DIR}: its checkpoints were trained with other settings ({record}): "
                             + "; ".join(differences)
                             + ". Train into another OUTPUT_DIR, or delete this one's checkpoints.")
    else:
        # Not written then: the record would vouch for checkpoints of unknown settings.
        logger.warning("%s holds no %s: its checkpoints' settings cannot be checked", cfg.OUTPUT_DIR,
                       TRAINING_SETTINGS_FILE)
        return
    record_training_settings(cfg)


def record_training_settings(cfg):
    """Write ``cfg``'s `training_settings` into ``cfg.OUTPUT_DIR`` (main process)."""
    if comm.is_main_process():
        with atomic_output(Path(cfg.OUTPUT_DIR) / TRAINING_SETTINGS_FILE) as temporary:
            temporary.write_text(json.dumps(training_settings(cfg), indent=1, sort_keys=True))


def add_global_norm_clipping(optimizer, max_norm, norm_type=2.0):
    """Clip the norm of all of ``optimizer``'s gradients together before each step, as TF's
    ``clip_gradients_by_norm`` (``tf.clip_by_global_norm``) does; detectron2 only clips per parameter.

    Returns the optimizer, with a step pre-hook added.
    """
    parameters = [p for group in optimizer.param_groups for p in group["params"]]

    def clip(_optimizer, _args, _kwargs):
        torch.nn.utils.clip_grad_norm_(parameters, max_norm, norm_type)

    optimizer.register_step_pre_hook(clip)
    return optimizer


class Trainer(DefaultTrainer):
    """DefaultTrainer for Deep-CEE; see the module docstring."""

    @classmethod
    def build_model(cls, cfg):
        """detectron2's model; on CPU with channels-last weights, oneDNN's faster layout (its convolutions then
        give channels-last features; 1.1x less time per step: BENCHMARKS.md, "Training in bfloat16, channels-last")."""
        check_compiled_ops(cfg)
        model = super().build_model(cfg)
        return model.to(memory_format=torch.channels_last) if cfg.MODEL.DEVICE == "cpu" else model

    def resume_or_load(self, resume=True):
        """detectron2's, with every file read by `SafeCheckpointer` (no pickle): the last checkpoint of
        ``OUTPUT_DIR`` with the optimizer, scheduler and iteration when resuming (strictly), else
        ``MODEL.WEIGHTS``, strictly unless ``DEEPCEE.WEIGHTS_STRICT`` is False. A resume refuses checkpoints
        trained with other settings (`check_training_settings`; the schedule's length may change)."""
        resuming = resume and self.checkpointer.has_checkpoint()
        if resuming:
            check_training_settings(self.cfg, may_change=SCHEDULE_KEYS)
        else:
            record_training_settings(self.cfg)
        checkpointer = SafeCheckpointer(self.model, self.cfg.OUTPUT_DIR, strict=resuming or self.cfg.DEEPCEE.WEIGHTS_STRICT,
                                        **self.checkpointer.checkpointables)
        checkpointer.resume_or_load(self.cfg.MODEL.WEIGHTS, resume=resume)
        if resuming:
            self.start_iter = self.iter + 1  # the checkpoint holds the iteration that had finished

    @classmethod
    def build_optimizer(cls, cfg, model):
        clipping = cfg.SOLVER.CLIP_GRADIENTS
        if not (clipping.ENABLED and clipping.CLIP_TYPE == GLOBAL_NORM_CLIP_TYPE):
            return super().build_optimizer(cfg, model)
        # detectron2 builds the SGD parameter groups; the global clipping is added on top.
        cfg = copy.deepcopy(cfg)
        cfg.defrost()
        cfg.SOLVER.CLIP_GRADIENTS.ENABLED = False
        return add_global_norm_clipping(build_optimizer(cfg, model), clipping.CLIP_VALUE, clipping.NORM_TYPE)

    @classmethod
    def build_train_loader(cls, cfg):
        """detectron2's train loader, its mapper with `build_train_augmentations` (quarter turns added)."""
        mapper = DatasetMapper(cfg, is_train=True, augmentations=build_train_augmentations(cfg))
        return build_detection_train_loader(cfg, mapper=mapper)

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """detectron2's evaluation, run on a copy of ``model`` made by `prepare_for_inference` (the same
        outputs in less time); ``model`` itself is left as it was, so training can go on."""
        if isinstance(model, DistributedDataParallel):
            model = model.module
        return super().test(cfg, prepare_for_inference(copy.deepcopy(model)), evaluators)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        """The 100 kpc evaluator (options from ``cfg.DEEPCEE.EVAL``); its report goes to
        ``OUTPUT_DIR/inference/<dataset_name>``."""
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return DeepCEEEvaluator(cfg, dataset_name, output_dir=output_folder)

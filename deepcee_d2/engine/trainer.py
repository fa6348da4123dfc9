"""The Deep-CEE trainer: detectron2's DefaultTrainer with Deep-CEE's evaluator and TF-style global gradient
clipping, evaluating a copy of the model prepared for inference. Only classmethods are overridden, and
``resume_or_load``, so that weights are loaded safely and strictly; detectron2's DatasetMapper reads the
images (in training with INPUT.RANDOM_FLIP and the quarter turns of ``DEEPCEE.AUGMENT``,
deepcee_d2.data.augment) and the evaluator takes the truth and WCS of each image from the DatasetCatalog
records."""
import copy
import os

import torch
from torch.nn.parallel import DistributedDataParallel

from detectron2.data import DatasetMapper, build_detection_train_loader
from detectron2.engine import DefaultTrainer
from detectron2.solver import build_optimizer

from ..compat import check_compiled_ops
from ..data.augment import build_train_augmentations
from ..evaluation import DeepCEEEvaluator
from .predictor import SafeCheckpointer, prepare_for_inference

GLOBAL_NORM_CLIP_TYPE = "full_model"


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
        ``MODEL.WEIGHTS``, strictly unless ``DEEPCEE.WEIGHTS_STRICT`` is False."""
        resuming = resume and self.checkpointer.has_checkpoint()
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

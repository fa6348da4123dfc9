"""Weights are loaded safely (never unpickled) and strictly (every parameter fits), naming the file.

The malicious files are made here and would touch a marker file if anything ran them; the tests assert
the marker never appears.
"""
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from deepcee_d2.config import load_config
from deepcee_d2.engine import Trainer
from deepcee_d2.engine.predictor import (
    DetectorFactory, SafeCheckpointer, WeightsError, build_inference_model, load_weights, read_state_dict,
    survey_detector_config,
)

REPO = Path(__file__).resolve().parents[1]
INSTANT = REPO / "configs" / "deepcee_instant_test.yaml"


class _TouchMarker:
    """Unpickling this calls os.system: a stand-in for a crafted weights file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def crafted_pickle(path, marker):
    with open(path, "wb") as handle:
        pickle.dump({"model": _TouchMarker(marker)}, handle)
    return path


@pytest.fixture(scope="module")
def instant_model():
    return Trainer.build_model(load_config(INSTANT))


@pytest.fixture(scope="module")
def weights(instant_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "model.pth"
    torch.save({"model": instant_model.state_dict(), "iteration": 3}, path)
    return path


@pytest.mark.parametrize("name", ["model.pkl", "model.pth"])
def test_a_crafted_pickle_never_runs(tmp_path, instant_model, name):
    marker = tmp_path / "marker"
    path = crafted_pickle(tmp_path / name, marker)
    with pytest.raises(WeightsError, match=str(path)):
        load_weights(instant_model, path)
    # the same file through the training loader
    trainer_like = SafeCheckpointer(instant_model, str(tmp_path), strict=False)
    with pytest.raises(WeightsError, match=str(path)):
        trainer_like.load(str(path))
    assert not marker.exists()


def test_random_bytes_and_non_state_dicts_are_refused_naming_the_file(tmp_path):
    noise = tmp_path / "noise.pth"
    noise.write_bytes(os.urandom(4096))
    with pytest.raises(WeightsError, match=f"{noise}: not a PyTorch weights file"):
        read_state_dict(noise)
    tensors = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensors)
    with pytest.raises(WeightsError, match=f"{tensors}: holds no state dict"):
        read_state_dict(tensors)
    with pytest.raises(FileNotFoundError, match="nothing.pth"):
        read_state_dict(tmp_path / "nothing.pth")


def test_weights_of_another_architecture_are_refused_listing_the_keys(weights):
    other = Trainer.build_model(load_config(INSTANT, ["MODEL.INCEPTION_V2.DEPTH_MULTIPLIER", "0.5"]))
    with pytest.raises(WeightsError) as error:
        load_weights(other, weights)
    message = str(error.value)
    assert message.startswith(f"{weights}: the weights do not fit this model")
    assert "of another shape: backbone." in message and "more)" in message and "DEEPCEE.WEIGHTS_STRICT" in message


def test_missing_and_unexpected_keys_are_counted(instant_model, weights, tmp_path):
    state = read_state_dict(weights)["model"]
    head = [key for key in state if key.startswith("roi_heads.box_predictor.")]
    partial = {key: value for key, value in state.items() if key not in head}
    partial["an.unknown.weight"] = torch.zeros(1)
    path = tmp_path / "partial.pth"
    torch.save(partial, path)  # a bare state dict, as other tools write them
    with pytest.raises(WeightsError, match=rf"{len(head)} missing from the file: roi_heads.box_predictor.*"
                                          r"1 not in the model: an.unknown.weight"):
        load_weights(instant_model, path)
    # the explicit opt-out (fine-tuning from another head) loads what fits
    incompatible_loaded = load_weights(instant_model, path, strict=False)
    assert isinstance(incompatible_loaded, dict)


def test_training_loads_initial_weights_strictly_unless_told(weights, toy_datasets, tmp_path):
    other = ["MODEL.INCEPTION_V2.DEPTH_MULTIPLIER", "0.5", "MODEL.WEIGHTS", str(weights),
             "OUTPUT_DIR", str(tmp_path / "a")]
    with pytest.raises(WeightsError, match=str(weights)):
        Trainer(load_config(INSTANT, other)).resume_or_load(resume=False)
    trainer = Trainer(load_config(INSTANT, other + ["DEEPCEE.WEIGHTS_STRICT", "False", "OUTPUT_DIR",
                                                    str(tmp_path / "b")]))
    trainer.resume_or_load(resume=False)
    assert trainer.start_iter == 0


def test_detectron2_checkpoints_load_with_weights_only(instant_model, tmp_path):
    """A checkpoint as DefaultTrainer writes it (model, optimizer, scheduler, iteration) passes read_state_dict."""
    cfg = load_config(INSTANT)
    optimizer = Trainer.build_optimizer(cfg, instant_model)
    scheduler = Trainer.build_lr_scheduler(cfg, optimizer)
    saver = SafeCheckpointer(instant_model, str(tmp_path), optimizer=optimizer, scheduler=scheduler)
    saver.save("model_0000004", iteration=4)
    loaded = read_state_dict(tmp_path / "model_0000004.pth")
    assert loaded["iteration"] == 4 and {"model", "optimizer", "scheduler"} <= set(loaded)
    extra = SafeCheckpointer(instant_model, str(tmp_path), optimizer=optimizer, scheduler=scheduler).resume_or_load(
        "", resume=True)
    assert extra["iteration"] == 4


def test_detector_factory_checks_the_weights_before_any_worker(weights, tmp_path):
    cfg = load_config(INSTANT, ["MODEL.WEIGHTS", str(weights)])
    factory = DetectorFactory(cfg)
    assert len(factory.weights_sha256) == 64
    boxes, scores = factory()(torch.zeros(192, 192, 3, dtype=torch.uint8).numpy())
    assert boxes.shape == (len(scores), 4)
    noise = tmp_path / "noise.pth"
    noise.write_bytes(os.urandom(1000))
    with pytest.raises(WeightsError, match=str(noise)):
        DetectorFactory(load_config(INSTANT, ["MODEL.WEIGHTS", str(noise)]))
    with pytest.raises(ValueError, match="MODEL.WEIGHTS is empty"):
        build_inference_model(load_config(INSTANT))


def test_a_worker_runs_the_configured_number_of_threads(weights):
    import cv2

    before = torch.get_num_threads(), cv2.getNumThreads()
    try:
        DetectorFactory(load_config(INSTANT, ["MODEL.WEIGHTS", str(weights),
                                              "DEEPCEE.SURVEY.TORCH_THREADS_PER_WORKER", "2"]))()
        assert (torch.get_num_threads(), cv2.getNumThreads()) == (2, 2)
        DetectorFactory(load_config(INSTANT, ["MODEL.WEIGHTS", str(weights)]))()  # the default: 1
        assert (torch.get_num_threads(), cv2.getNumThreads()) == (1, 1)
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])
    with pytest.raises(ValueError, match="TORCH_THREADS_PER_WORKER must be at least 1, got 0"):
        DetectorFactory(load_config(INSTANT, ["MODEL.WEIGHTS", str(weights), "DEEPCEE.SURVEY.TORCH_THREADS_PER_WORKER", "0"]))


def _proposals_per_image(predictor, image):
    """How many proposals the predictor's box head receives for ``image`` (a forward pre-hook counts them)."""
    counts = []
    hook = predictor.model.roi_heads.register_forward_pre_hook(
        lambda _module, args: counts.extend(len(p) for p in args[2]))  # (images, features, proposals)
    try:
        predictor(image)
    finally:
        hook.remove()
    return counts


def test_the_survey_detector_runs_the_box_head_on_the_survey_number_of_proposals(weights):
    # RPN NMS off: every anchor survives, so the box head gets exactly the configured number of proposals.
    opts = ["MODEL.WEIGHTS", str(weights), "MODEL.RPN.NMS_THRESH", "1.0"]
    image = np.random.default_rng(0).integers(0, 256, (192, 192, 3), dtype=np.uint8)
    survey = load_config(INSTANT, opts + ["DEEPCEE.SURVEY.POST_NMS_TOPK_TEST", "7"])
    assert _proposals_per_image(DetectorFactory(survey).build_predictor(), image) == [7]
    assert survey.MODEL.RPN.POST_NMS_TOPK_TEST == 32  # evaluation's value is left alone
    assert build_inference_model(survey).proposal_generator.post_nms_topk[False] == 32
    unchanged = load_config(INSTANT, opts + ["DEEPCEE.SURVEY.POST_NMS_TOPK_TEST", "0"])
    assert _proposals_per_image(DetectorFactory(unchanged).build_predictor(), image) == [32]
    # The survey never runs the box head on more proposals than evaluation does.
    assert survey_detector_config(load_config(INSTANT, ["DEEPCEE.SURVEY.POST_NMS_TOPK_TEST", "100"])
                                  ).MODEL.RPN.POST_NMS_TOPK_TEST == 32
    with pytest.raises(ValueError, match="DEEPCEE.SURVEY.POST_NMS_TOPK_TEST -1"):
        DetectorFactory(load_config(INSTANT, opts + ["DEEPCEE.SURVEY.POST_NMS_TOPK_TEST", "-1"]))


def test_the_survey_detector_passes_at_most_the_survey_number_of_boxes_to_the_rpn_nms(weights):
    cfg = load_config(INSTANT, ["MODEL.WEIGHTS", str(weights), "DEEPCEE.SURVEY.PRE_NMS_TOPK_TEST", "50"])
    assert DetectorFactory(cfg).build_predictor().model.proposal_generator.pre_nms_topk[False] == 50
    assert build_inference_model(cfg).proposal_generator.pre_nms_topk[False] == 6000  # evaluation's value
    assert survey_detector_config(load_config(INSTANT, ["DEEPCEE.SURVEY.PRE_NMS_TOPK_TEST", "0"])
                                  ).MODEL.RPN.PRE_NMS_TOPK_TEST == 6000
    with pytest.raises(ValueError, match="DEEPCEE.SURVEY.PRE_NMS_TOPK_TEST -1"):
        survey_detector_config(load_config(INSTANT, ["DEEPCEE.SURVEY.PRE_NMS_TOPK_TEST", "-1"]))


def test_the_survey_detector_sees_larger_tiles_at_the_scale_of_evaluation():
    base = REPO / "configs" / "Base-DeepCEE.yaml"
    default = survey_detector_config(load_config(base))
    assert (default.INPUT.MIN_SIZE_TEST, default.INPUT.MAX_SIZE_TEST) == (1000, 1000)
    large = survey_detector_config(load_config(base, ["DEEPCEE.SURVEY.TILE_SIZE", "3984"]))
    assert (large.INPUT.MIN_SIZE_TEST, large.INPUT.MAX_SIZE_TEST) == (1992, 1992)  # 3984 px binned 2x
    # A config that shows its 1000 px training images at 192 px scales a larger tile's image alike.
    instant = survey_detector_config(load_config(INSTANT, ["DEEPCEE.SURVEY.TILE_SIZE", "3984"]))
    assert (instant.INPUT.MIN_SIZE_TEST, instant.INPUT.MAX_SIZE_TEST) == (382, 382)

"""Redshift and richness in the evaluation: accuracy numbers, the stricter criterion, the flux-cutout route."""
import json
import uuid

import astropy.units as u
import numpy as np
import pytest
import torch
from astropy.coordinates import SkyCoord
from astropy.table import Table
from detectron2.data import DatasetCatalog
from detectron2.structures import Boxes, Instances

from deepcee_d2.config import load_config
from deepcee_d2.cosmology import DEFAULT_COSMOLOGY
from deepcee_d2.data.frames import LocalFITSSource
from deepcee_d2.data.register import register_deepcee_dataset
from deepcee_d2.evaluation.evaluator import DeepCEEEvaluator
from deepcee_d2.evaluation.matching import evaluate_detections
from deepcee_d2.evaluation.redshifts import RedshiftEvaluation, estimate_predictions, redshift_accuracy
from deepcee_d2.redsequence import ESTIMATE_COLUMNS, no_estimates
from deepcee_d2.sky import celestial_wcs, sky_to_box_xy

OPTIONS = {"thresholds": (0.0, 0.5), "match_radius": 100 * u.kpc, "histogram_radius": 250 * u.kpc}


def truths_and_predictions(z_true, z_est, richness_true, richness_est, has_peak=None):
    """One image per cluster, each with one prediction 10" from its cluster (within 100 kpc at z >= 0.05)."""
    n = len(z_true)
    ra = 150.0 + np.arange(n)
    truths = Table({"image_id": np.arange(n), "id": [f"C{k}" for k in range(n)], "ra": ra, "dec": np.full(n, 2.0),
                    "z": z_true, "richness": richness_true, "n_members": np.full(n, 25.0)})
    predictions = Table({"image_id": np.arange(n), "ra": ra, "dec": np.full(n, 2.0 + 10 / 3600),
                         "score": np.full(n, 0.9)})
    estimates = no_estimates(n)
    estimates["z_est"], estimates["richness"] = z_est, richness_est
    estimates["z_err"] = 0.01
    estimates["rs_peak"] = np.ones(n, bool) if has_peak is None else has_peak
    for name in ESTIMATE_COLUMNS:
        predictions[name] = estimates[name]
    return truths, predictions


def test_accuracy_numbers_follow_their_definitions():
    z = np.array([0.10, 0.15, 0.20, 0.25, 0.30])
    d = np.array([-0.01, 0.0, 0.01, 0.2, 0.004])  # dz / (1 + z); one outlier
    richness = np.array([20.0, 30.0, 40.0, 50.0, 60.0])
    factor = np.array([1.0, 10**0.1, 10**-0.1, 1.0, 5.0])
    peak = np.array([True, True, True, True, False])  # the last one is left out
    truths, predictions = truths_and_predictions(z, z + d * (1 + z), richness, richness * factor, peak)
    evaluation = evaluate_detections(predictions, truths, **OPTIONS)
    accuracy = redshift_accuracy(evaluation, 0.05)
    kept = d[:4]
    assert accuracy["n_true_positives"] == 5 and accuracy["n_with_peak"] == 4
    assert accuracy["sigma_nmad"] == pytest.approx(1.4826 * np.median(np.abs(kept - np.median(kept))))
    assert accuracy["outlier_fraction"] == pytest.approx(0.25)
    assert accuracy["median_dz"] == pytest.approx(np.median(kept))
    assert accuracy["richness_scatter_dex"] == pytest.approx(np.std([0.0, 0.1, -0.1, 0.0]))
    assert accuracy["n_richness_rich"] == 4  # every cluster has 25 members


def test_stricter_criterion_needs_the_redshift_to_agree():
    z = np.array([0.1, 0.2])
    truths, predictions = truths_and_predictions(z, np.array([0.11, 0.35]), np.array([30.0, 30.0]),
                                                 np.array([30.0, 30.0]))
    plain = evaluate_detections(predictions, truths, **OPTIONS)
    strict = evaluate_detections(predictions, truths, redshift_tolerance=0.05, **OPTIONS)
    assert plain.table["tp"].tolist() == [2, 2]
    assert strict.table["tp"].tolist() == [1, 1] and strict.table["fp"].tolist() == [1, 1]
    assert strict.predictions["status"].tolist() == ["TP", "FP"]
    predictions["z_est"][0] = np.nan  # no estimate matches nothing
    assert evaluate_detections(predictions, truths, redshift_tolerance=0.05, **OPTIONS).table["tp"].tolist() == [0, 0]
    with pytest.raises(ValueError, match="z_est"):
        evaluate_detections(predictions[["image_id", "ra", "dec", "score"]], truths, redshift_tolerance=0.05,
                            **OPTIONS)


class RecordingEstimator:
    """Stands in for the red-sequence estimator: records the flux cutouts it is given and answers the z of the
    nearest of ``clusters`` (rows of ra, dec, z) plus ``dz``, with a red-sequence peak unless that cluster's
    index is in ``no_peak``."""

    def __init__(self, clusters, dz=0.0, no_peak=()):
        self.clusters, self.dz, self.calls = np.asarray(clusters, dtype=float).reshape(-1, 3), dz, []
        self.no_peak = list(no_peak)

    def estimate(self, images, wcs, ra, dec, source="image", covered=None):
        self.calls.append((images, wcs, np.asarray(ra), np.asarray(dec)))
        nearest = np.argmin(np.hypot(np.asarray(ra)[:, None] - self.clusters[None, :, 0],
                                     np.asarray(dec)[:, None] - self.clusters[None, :, 1]), axis=1)
        table = no_estimates(len(ra))
        table["z_est"], table["z_err"], table["richness"], table["rs_peak"] = \
            self.clusters[nearest, 2] + self.dz, 0.01, 40.0, ~np.isin(nearest, self.no_peak)
        return table

    def calibration_warnings(self, source):
        return []


@pytest.fixture
def tiny_test_split(tiny_dataset):
    name = f"deepcee_z_test_{uuid.uuid4().hex}"
    register_deepcee_dataset(name, tiny_dataset.paths["test"], tiny_dataset.folder)
    yield name, DatasetCatalog.get(name)
    DatasetCatalog.remove(name)


def test_predictions_near_clusters_get_estimates_from_the_remade_flux_cutout(tiny_test_split, tiny_survey,
                                                                            tiny_settings):
    name, records = tiny_test_split
    record = records[0]
    truth = record["annotations"][0]
    assert record["flux_cutout"]["imaging"] == f"fits:{tiny_survey}"
    # One prediction on the cluster, one 60" away (beyond 100 kpc at z >= 0.12).
    far = SkyCoord(truth["ra"] * u.deg, truth["dec"] * u.deg).directional_offset_by(0 * u.deg, 60 * u.arcsec)
    predictions = Table({"image_id": [record["image_id"]] * 2, "ra": [truth["ra"], far.ra.deg],
                         "dec": [truth["dec"], far.dec.deg], "score": [0.9, 0.8]})
    truths = Table({"image_id": [record["image_id"]], "ra": [truth["ra"]], "dec": [truth["dec"]], "z": [truth["z"]]})
    estimator = RecordingEstimator([(truth["ra"], truth["dec"], truth["z"])], dz=0.01)
    result, problems = estimate_predictions(predictions, truths, {record["image_id"]: record},
                                            RedshiftEvaluation(estimator, "", 0.05, False), 100 * u.kpc,
                                            DEFAULT_COSMOLOGY, name)
    assert result["z_est"][0] == pytest.approx(truth["z"] + 0.01) and np.isnan(result["z_est"][1])
    assert result["rs_peak"].tolist() == [True, False] and problems == []
    (images, wcs, ra, dec), = estimator.calls
    assert ra.tolist() == [truth["ra"]]
    expected = LocalFITSSource(tiny_survey).cutout(SkyCoord(record["ra"] * u.deg, record["dec"] * u.deg),
                                                   tiny_settings.cutout_size, tiny_settings.pixel_scale)
    for band in "gri":
        np.testing.assert_array_equal(images[band], expected.images[band])


def boxes_on_clusters(records):
    """detectron2 inputs and outputs: one 10 px box on every annotated cluster, score 0.9."""
    outputs, inputs = [], []
    for record in records:
        wcs = celestial_wcs(record["wcs"])
        instances = Instances((record["height"], record["width"]))
        boxes = []
        for annotation in record["annotations"]:
            x, y = sky_to_box_xy(wcs, SkyCoord(annotation["ra"] * u.deg, annotation["dec"] * u.deg))
            boxes.append([x - 5, y - 5, x + 5, y + 5])
        instances.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
        instances.scores = torch.full((len(boxes),), 0.9)
        instances.pred_classes = torch.zeros(len(boxes), dtype=torch.int64)
        inputs.append({"image_id": record["image_id"], "height": record["height"], "width": record["width"]})
        outputs.append({"instances": instances})
    return inputs, outputs


def test_the_evaluator_reports_redshifts_and_applies_the_stricter_criterion(tiny_test_split, tmp_path):
    name, records = tiny_test_split
    cfg = load_config()
    inputs, outputs = boxes_on_clusters(records)
    clusters = [(a["ra"], a["dec"], a["z"]) for record in records for a in record["annotations"]]

    def evaluate(dz, require, folder=None):
        redshifts = RedshiftEvaluation(RecordingEstimator(clusters, dz), "", 0.05, require)
        evaluator = DeepCEEEvaluator(cfg, name, output_dir=folder, distributed=False, redshifts=redshifts)
        evaluator.process(inputs, outputs)
        return evaluator.evaluate()["deepcee"]

    metrics = evaluate(0.0, False, tmp_path)
    assert metrics["tp"] == sum(len(record["annotations"]) for record in records) and metrics["z_sigma_nmad"] == 0
    summary = json.loads((tmp_path / "evaluation.json").read_text())
    assert summary["redshifts"]["n_with_peak"] == metrics["tp"] and (tmp_path / "redshifts.png").stat().st_size
    assert "## Redshift and richness" in (tmp_path / "report.md").read_text()
    wrong = evaluate(0.3, False)
    assert wrong["tp"] == metrics["tp"] and wrong["z_outlier_fraction"] == 1 and wrong["f1"] == metrics["f1"]
    assert evaluate(0.3, True)["tp"] == 0 and evaluate(0.01, True)["tp"] == metrics["tp"]


def test_the_evaluator_reports_the_recall_of_detections_with_a_red_sequence(tiny_test_split, tmp_path):
    """``red_sequence_confirmed``: what DEEPCEE.SURVEY.REQUIRE_RED_SEQUENCE keeps of the clusters found."""
    name, records = tiny_test_split
    inputs, outputs = boxes_on_clusters(records)
    clusters = [(a["ra"], a["dec"], a["z"]) for record in records for a in record["annotations"]]
    redshifts = RedshiftEvaluation(RecordingEstimator(clusters, no_peak=[0]), "", 0.05, False)
    evaluator = DeepCEEEvaluator(load_config(), name, output_dir=tmp_path, distributed=False, redshifts=redshifts)
    evaluator.process(inputs, outputs)
    metrics = evaluator.evaluate()["deepcee"]
    confirmed = json.loads((tmp_path / "evaluation.json").read_text())["red_sequence_confirmed"]["thresholds"]
    at_half = next(row for row in confirmed if row["threshold"] == 0.5)
    without = sum(1 for cluster in clusters if cluster[:2] == clusters[0][:2])  # its images (offsets) in the split
    assert 0 < without < len(clusters) and metrics["tp-50"] == len(clusters)
    assert at_half["tp"] == len(clusters) - without and at_half["fn"] == without
    assert metrics["confirmed_recall-50"] == pytest.approx(1 - without / len(clusters))


def test_images_without_flux_imaging_are_reported(tiny_test_split, caplog):
    name, records = tiny_test_split
    record = records[0]
    truth = record["annotations"][0]
    predictions = Table({"image_id": [record["image_id"]], "ra": [truth["ra"]], "dec": [truth["dec"]],
                         "score": [0.9]})
    truths = Table({"image_id": [record["image_id"]], "ra": [truth["ra"]], "dec": [truth["dec"]], "z": [truth["z"]]})
    estimator = RecordingEstimator([(truth["ra"], truth["dec"], truth["z"])])
    moved = RedshiftEvaluation(estimator, "fits:/nonexistent/frames", 0.05, False)
    result, problems = estimate_predictions(predictions, truths, {record["image_id"]: record}, moved, 100 * u.kpc,
                                            DEFAULT_COSMOLOGY, name)
    assert np.isnan(result["z_est"][0]) and len(problems) == 1 and "/nonexistent/frames" in problems[0]
    assert f"{name}: no redshifts in 1 images whose flux cutout cannot be made" in caplog.text
    bare = dict(record, flux_cutout=None)  # records of a data set that does not record its imaging
    result, problems = estimate_predictions(predictions, truths, {record["image_id"]: bare},
                                            RedshiftEvaluation(estimator, "", 0.05, False), 100 * u.kpc,
                                            DEFAULT_COSMOLOGY, name)
    assert result is None and problems == [] and "records no imaging" in caplog.text
    assert estimator.calls == []


def test_the_stricter_criterion_without_flux_images_is_an_error(tiny_test_split):
    name, records = tiny_test_split
    clusters = [(a["ra"], a["dec"], a["z"]) for record in records for a in record["annotations"]]
    redshifts = RedshiftEvaluation(RecordingEstimator(clusters), "fits:/nonexistent/frames", 0.05, True)
    evaluator = DeepCEEEvaluator(load_config(), name, distributed=False, redshifts=redshifts)
    evaluator.process(*boxes_on_clusters(records))
    with pytest.raises(ValueError, match=f"{name}: DEEPCEE.EVAL.REQUIRE_REDSHIFT_MATCH, but the flux images of "
                                         r"\d+ images, e.g. .*/nonexistent/frames.*cannot be made"):
        evaluator.evaluate()
    with pytest.raises(ValueError, match="REQUIRE_REDSHIFT_MATCH needs the redshift estimates"):
        RedshiftEvaluation.from_cfg(load_config(None, ["DEEPCEE.EVAL.REDSHIFTS", "False",
                                                       "DEEPCEE.EVAL.REQUIRE_REDSHIFT_MATCH", "True"]))

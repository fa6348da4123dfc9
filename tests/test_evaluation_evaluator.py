import json
import math
import uuid

import astropy.units as u
import numpy as np
import pytest
import torch
from astropy.coordinates import SkyCoord
from astropy.table import Table
from astropy.wcs import WCS
from detectron2.data import DatasetCatalog
from detectron2.evaluation import print_csv_format
from detectron2.structures import Boxes, Instances

from deepcee_d2.config import load_config
from deepcee_d2.sky import sky_to_box_xy
from deepcee_d2.evaluation.evaluator import DeepCEEEvaluator

SIZE, SCALE = 200, 0.792  # network image pixels, arcsec per pixel (80 kpc is ~60 px at z = 0.1)
BOX = 40.0


def image_wcs(ra, dec):
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [(SIZE + 1) / 2, (SIZE + 1) / 2]
    wcs.wcs.cdelt = [-SCALE / 3600, SCALE / 3600]
    return wcs


def cluster(cluster_id, coord, z, richness=30.0):
    return {"bbox": [0.0, 0.0, BOX, BOX], "bbox_mode": 1, "category_id": 0, "cluster_id": cluster_id,
            "ra": coord.ra.deg, "dec": coord.dec.deg, "z": z, "richness": richness, "n_members": 20,
            "bcg_rmag": 15.0 + 10 * z}


@pytest.fixture
def sky_dataset(offset_by_kpc):
    """Five 200 px images: "A" one cluster (z 0.1); "B" two (z 0.15, 0.2); "C" none; "D" one that is not
    found; "E" one, never processed. Returns the name, the WCS and truths per image, and the predictions."""
    centres = {name: SkyCoord((150 + i) * u.deg, 2 * u.deg) for i, name in enumerate("ABCDE")}
    truths = {"A": [("A1", centres["A"], 0.1)],
              "B": [("B1", centres["B"].directional_offset_by(90 * u.deg, 30 * u.arcsec), 0.15),
                    ("B2", centres["B"].directional_offset_by(270 * u.deg, 40 * u.arcsec), 0.2)],
              "C": [], "D": [("D1", centres["D"], 0.3)], "E": [("E1", centres["E"], 0.12)]}
    records = []
    for name, centre in centres.items():
        wcs = image_wcs(centre.ra.deg, centre.dec.deg)
        records.append({"file_name": f"{name}.png", "image_id": name, "height": SIZE, "width": SIZE,
                        "wcs": wcs.to_header_string(), "ra": centre.ra.deg, "dec": centre.dec.deg,
                        "pixel_scale": SCALE, "annotations": [cluster(*truth) for truth in truths[name]]})
    # (image, sky position, score): a centred detection of A1 (30 kpc off) and its duplicate (60 kpc off, low
    # score), both clusters of B, and a confident detection of nothing in C.
    predictions = {
        "A": [(offset_by_kpc(truths["A"][0][1], 30, 0.1, 20), 0.9), (offset_by_kpc(truths["A"][0][1], 60, 0.1, 200), 0.4)],
        "B": [(offset_by_kpc(truths["B"][0][1], 45, 0.15, 0), 0.8), (offset_by_kpc(truths["B"][1][1], 15, 0.2, 90), 0.7)],
        "C": [(centres["C"].directional_offset_by(0 * u.deg, 20 * u.arcsec), 0.95)], "D": [],
    }
    name = f"deepcee_eval_test_{uuid.uuid4().hex}"
    DatasetCatalog.register(name, lambda: records)
    yield name, {record["image_id"]: image_wcs(record["ra"], record["dec"]) for record in records}, predictions
    DatasetCatalog.remove(name)


def model_outputs(wcs, detections, image_size=(SIZE, SIZE)):
    """detectron2-style output for one image: boxes of BOX px centred on the detections' sky positions."""
    instances = Instances(image_size)
    boxes = []
    for position, _ in detections:
        x, y = sky_to_box_xy(wcs, position)
        boxes.append([x - BOX / 2, y - BOX / 2, x + BOX / 2, y + BOX / 2])
    instances.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    instances.scores = torch.tensor([score for _, score in detections], dtype=torch.float32)
    instances.pred_classes = torch.zeros(len(detections), dtype=torch.int64)
    return {"instances": instances}


def run(evaluator, wcs_of, predictions, batch=2):
    evaluator.reset()
    items = list(predictions.items())
    for start in range(0, len(items), batch):
        chunk = items[start:start + batch]
        evaluator.process([{"image_id": name, "height": SIZE, "width": SIZE} for name, _ in chunk],
                          [model_outputs(wcs_of[name], detections) for name, detections in chunk])
    return evaluator.evaluate()


def test_evaluator_numbers_and_every_output_file(tmp_path, sky_dataset, offset_by_kpc):
    name, wcs_of, predictions = sky_dataset
    known = offset_by_kpc(predictions["C"][0][0], 50, 0.2, 0)
    whl = Table({"id": ["WHL J1"], "ra": [known.ra.deg], "dec": [known.dec.deg], "z": [0.2]})
    evaluator = DeepCEEEvaluator(load_config(), name, output_dir=tmp_path / "inference",
                                 crossmatch_catalogs={"WHL": whl})
    results = run(evaluator, wcs_of, predictions)
    metrics = results["deepcee"]
    # Truths A1, B1, B2, D1 (E was never processed). Thresholds 0-30 %: TP 3, FP 2 (duplicate, C), FN 1 ->
    # F1 2/3; 40-60 %: the duplicate (0.4, not greater than 40 %) drops, F1 = 6/8; 70 %: B2 (0.7) drops, 4/7;
    # 80 %: B1 (0.8) drops, 1/3; 90 % and 100 %: no true positive left.
    assert metrics["best_threshold"] == pytest.approx(0.4)
    assert (metrics["tp"], metrics["fp"], metrics["fn"]) == (3, 1, 1)
    assert metrics["precision"] == metrics["recall"] == metrics["f1"] == pytest.approx(0.75)
    assert metrics["n_true"] == 4 and metrics["n_predictions"] == 5
    assert metrics["centring_error_kpc"] == pytest.approx(math.sqrt((30**2 + 45**2 + 15**2) / 3), rel=1e-5)
    assert (metrics["fp_known"], metrics["fp_new"]) == (1, 0)
    assert all(isinstance(value, float) for value in metrics.values())
    # The whole table is in the results too, one key per threshold (in %) and column.
    assert [metrics[f"f1-{t}"] for t in range(0, 101, 10)] == pytest.approx(
        [2 / 3] * 4 + [0.75] * 3 + [4 / 7, 1 / 3, 0, 0])
    assert (metrics["tp-70"], metrics["fp-70"], metrics["fn-70"]) == (2, 1, 2)
    print_csv_format(results)  # detectron2's own printer takes the result

    folder = tmp_path / "inference"
    summary = json.loads((folder / "evaluation.json").read_text())
    assert {path.name for path in folder.iterdir()} == set(summary["files"])
    for expected in ("report.md", "precision_recall.png", "centre_distances.png", "recovered_vs_all_z.png",
                     "recovered_vs_all_bcg_rmag.png", "recovered_vs_all_richness.png", "completeness_z.png",
                     "completeness_richness.png", "predictions.ecsv", "true_clusters.ecsv",
                     "false_positives_crossmatch.fits", "false_positives_crossmatch.ecsv"):
        assert (folder / expected).stat().st_size > 0, expected
    assert summary["dataset"] == name and summary["n_images"] == 4
    assert [row["f1"] for row in summary["thresholds"]] == [metrics[f"f1-{t}"] for t in range(0, 101, 10)]
    table = Table.read(folder / "predictions.ecsv")
    assert table["status"].tolist() == ["TP", "below threshold", "TP", "TP", "FP"]
    assert table["matched_id"].filled("").tolist() == ["A1", "", "B1", "B2", ""]  # ECSV reads "" as masked
    np.testing.assert_allclose(table["match_distance"][[0, 2, 3]], [30, 45, 15], rtol=1e-5)
    truths = Table.read(folder / "true_clusters.ecsv")
    assert truths["id"].tolist() == ["A1", "B1", "B2", "D1"] and truths["recovered"].tolist() == [True, True, True, False]
    crossmatch = Table.read(folder / "false_positives_crossmatch.fits")
    assert crossmatch["status"].tolist() == ["known"] and crossmatch["catalog_id"].tolist() == ["WHL J1"]
    assert "| **40** | **3** | **1** | **1** |" in (folder / "report.md").read_text()


def test_options_come_from_the_config_and_explicit_arguments_win(sky_dataset):
    name, wcs_of, predictions = sky_dataset
    cfg = load_config()
    cfg.DEEPCEE.EVAL.MATCH_RADIUS_KPC = 40.0  # only A1 (30 kpc) and B2 (15 kpc) are matched
    cfg.DEEPCEE.EVAL.SCORE_THRESHOLDS = [0.0, 0.75]
    metrics = run(DeepCEEEvaluator(cfg, name), wcs_of, predictions)["deepcee"]
    assert (metrics["tp"], metrics["best_threshold"]) == (2, 0.0)
    assert set(key for key in metrics if key.startswith("f1-")) == {"f1-0", "f1-75"}
    assert "fp_known" not in metrics  # no catalogue configured, no cross-match
    cfg.DEEPCEE.COSMOLOGY.H0 = 71.0 / 2  # every angle is twice the kpc: 30 -> 60, 15 -> 30
    metrics = run(DeepCEEEvaluator(cfg, name, match_radius=50 * u.kpc), wcs_of, predictions)["deepcee"]
    assert metrics["tp"] == 1 and metrics["centring_error_kpc"] == pytest.approx(30, rel=1e-5)
    # Without a config every option is given explicitly: the same evaluation.
    explicit = DeepCEEEvaluator(**DeepCEEEvaluator.from_config(cfg, name))
    assert run(explicit, wcs_of, predictions) == run(DeepCEEEvaluator(cfg, name), wcs_of, predictions)


def test_the_split_is_also_counted_as_the_survey_merges_each_image(tmp_path, sky_dataset):
    name, wcs_of, predictions = sky_dataset
    cfg = load_config()

    def merged(radius_kpc):
        evaluator = DeepCEEEvaluator(cfg, name, output_dir=tmp_path / f"r{radius_kpc}", redshifts=None,
                                     merge_radius=radius_kpc * u.kpc, merge_min_redshift=0.1)
        metrics = run(evaluator, wcs_of, predictions)["deepcee"]
        summary = json.loads((tmp_path / f"r{radius_kpc}" / "evaluation.json").read_text())
        return metrics, summary["survey_merged"]

    # 100 kpc at z = 0.1: A's duplicate (~90 kpc from A's best detection) is absorbed, B1 and B2 (70", 128 kpc
    # apart) stay two: at 0 % TP 3, FP 1 (C), FN 1, the raw table's best row; the headline is unchanged.
    metrics, survey = merged(100)
    assert (metrics["tp"], metrics["fp"], metrics["fn"], metrics["best_threshold"]) == (3, 1, 1, pytest.approx(0.4))
    first = survey["thresholds"][0]
    assert (first["threshold"], first["tp"], first["fp"], first["fn"]) == (0.0, 3, 1, 1)
    assert survey["n_predictions"] == 4 and survey["merge_radius_kpc"] == 100
    assert metrics["survey_merged_f1"] == pytest.approx(0.75) and metrics["survey_merged_threshold"] == 0.0
    # The survey's 500 kpc also merges B2 (0.7) into B1 (0.8): a close pair is one candidate.
    _, survey = merged(500)
    first = survey["thresholds"][0]
    assert (first["tp"], first["fp"], first["fn"]) == (2, 1, 2) and survey["n_predictions"] == 3


def test_empty_outputs_and_images_without_clusters(tmp_path, sky_dataset):
    name, wcs_of, _ = sky_dataset
    results = run(DeepCEEEvaluator(load_config(), name, output_dir=tmp_path), wcs_of, {"C": [], "D": []})
    metrics = results["deepcee"]
    assert (metrics["tp"], metrics["fp"], metrics["fn"], metrics["f1"]) == (0, 0, 1, 0.0)
    assert math.isnan(metrics["centring_error_kpc"])
    assert json.loads((tmp_path / "evaluation.json").read_text())["centring_error_kpc"] is None
    assert DeepCEEEvaluator(load_config(), name).evaluate() == {}  # nothing processed: nothing to say


def test_bad_inputs_are_named(tmp_path, sky_dataset):
    name, wcs_of, predictions = sky_dataset
    evaluator = DeepCEEEvaluator(load_config(), name, distributed=False)
    with pytest.raises(ValueError, match=r"image 'A': predictions are for a \(100, 100\) image"):
        evaluator.process([{"image_id": "A"}], [model_outputs(wcs_of["A"], predictions["A"], (100, 100))])
    with pytest.raises(ValueError, match="processed image_id 'Z' is not in the data set"):
        evaluator.process([{"image_id": "Z"}], [model_outputs(wcs_of["A"], [])])
    diverged = model_outputs(wcs_of["B"], predictions["B"])
    diverged["instances"].scores[1] = float("nan")
    with pytest.raises(ValueError, match=r"image 'B' \(B.png\): 1 of 2 predictions have a NaN or infinite score"):
        evaluator.process([{"image_id": "B"}], [diverged])
    evaluator.process([{"image_id": "C"}], [model_outputs(wcs_of["C"], [])])
    evaluator.process([{"image_id": "C"}], [model_outputs(wcs_of["C"], [])])
    with pytest.raises(ValueError, match="processed more than once"):
        evaluator.evaluate()

    # A bad cross-match catalogue is named when the evaluator is made, before any image is run.
    cfg = load_config()
    cfg.DEEPCEE.EVAL.CROSSMATCH_CATALOGS = [str(tmp_path / "whl_missing.fits")]
    with pytest.raises(FileNotFoundError, match="whl_missing.fits"):
        DeepCEEEvaluator(cfg, name)
    Table({"id": ["X"], "ra": [1.0]}).write(tmp_path / "no_dec.ecsv")
    cfg.DEEPCEE.EVAL.CROSSMATCH_CATALOGS = [str(tmp_path / "no_dec.ecsv")]
    with pytest.raises(ValueError, match=r"no_dec: catalogue lacks column\(s\) \['dec'\]"):
        DeepCEEEvaluator(cfg, name)

    broken = f"deepcee_eval_broken_{uuid.uuid4().hex}"
    DatasetCatalog.register(broken, lambda: [
        {"file_name": "nowcs.png", "image_id": 7, "height": SIZE, "width": SIZE, "annotations": []},
        {"file_name": "noz.png", "image_id": 8, "height": SIZE, "width": SIZE, "wcs": "",
         "annotations": [{"cluster_id": "X", "ra": 1.0, "dec": 2.0}]}])
    try:
        with pytest.raises(ValueError, match=r"image 8 \(noz.png\) lacks \['z'\]"):
            DeepCEEEvaluator(load_config(), broken)
    finally:
        DatasetCatalog.remove(broken)
    DatasetCatalog.register(broken, lambda: [
        {"file_name": "nowcs.png", "image_id": 7, "height": SIZE, "width": SIZE, "annotations": []}])
    try:
        with pytest.raises(ValueError, match=r"image 7 \(nowcs.png\): the record has no 'wcs'"):
            DeepCEEEvaluator(load_config(), broken).process([{"image_id": 7}], [model_outputs(wcs_of["A"], [])])
    finally:
        DatasetCatalog.remove(broken)


def test_images_without_clusters_give_the_false_rate_on_empty_sky(tmp_path):
    """Blank images (a data set's blank targets) count every detection as false, per deg^2 of them; an image
    that just happens to hold no cluster is not blank sky by design and is left out of the rate."""
    centres = {"blank": SkyCoord(150 * u.deg, 2 * u.deg), "other": SkyCoord(151 * u.deg, 2 * u.deg),
               "cluster": SkyCoord(152 * u.deg, 2 * u.deg)}
    records = [{"file_name": f"{name}.png", "image_id": name, "height": SIZE, "width": SIZE,
                "wcs": image_wcs(c.ra.deg, c.dec.deg).to_header_string(), "ra": c.ra.deg, "dec": c.dec.deg,
                "pixel_scale": SCALE, "blank": name == "blank",
                "annotations": [cluster("K1", c, 0.15)] if name == "cluster" else []}
               for name, c in centres.items()]
    name = f"deepcee_blank_test_{uuid.uuid4().hex}"
    DatasetCatalog.register(name, lambda: records)
    try:
        wcs_of = {record["image_id"]: image_wcs(record["ra"], record["dec"]) for record in records}
        near = {key: c.directional_offset_by(0 * u.deg, 20 * u.arcsec) for key, c in centres.items()}
        predictions = {"blank": [(near["blank"], 0.95), (centres["blank"], 0.6)], "other": [(near["other"], 0.9)],
                       "cluster": [(centres["cluster"], 0.99)]}
        metrics = run(DeepCEEEvaluator(load_config(), name, output_dir=tmp_path), wcs_of, predictions)["deepcee"]
    finally:
        DatasetCatalog.remove(name)
    area = (SIZE * SCALE / 3600) ** 2  # deg^2 of the one blank image
    assert metrics["blank_false_per_deg2-50"] == pytest.approx(2 / area)
    assert metrics["blank_false_per_deg2-90"] == pytest.approx(1 / area)
    assert metrics["blank_false_per_deg2-100"] == 0
    summary = json.loads((tmp_path / "evaluation.json").read_text())
    assert summary["blank_images"]["n_images"] == 1 and summary["blank_images"]["area_deg2"] == pytest.approx(area)
    assert "1 images without a cluster (0.002 deg^2)" in (tmp_path / "report.md").read_text()
    assert metrics["fp-50"] == 3  # the precision table counts them too, with the other image's detection

"""The main job (make demo) at toy size: every step runs, every output exists and parses, a rerun resumes."""
import dataclasses
import json
import re
from pathlib import Path

import pytest
from astropy.table import Table

from deepcee_d2.demo import (
    DemoPlan, candidates_beside_truth, demo_config, evaluation_is_current, run_demo, run_survey, summary_text,
    survey_losses,
)

# The demo's pipeline on 100 px network images of a quarter-width model, 10 training iterations.
TOY_OPTS = ("MODEL.INCEPTION_V2.DEPTH_MULTIPLIER", "0.25", "DEEPCEE.COLOUR.CUTOUT_SIZE", "200",
            "DEEPCEE.COLOUR.NETWORK_SIZE", "100", "INPUT.MIN_SIZE_TRAIN", "[100]", "INPUT.MAX_SIZE_TRAIN", "100",
            "INPUT.MIN_SIZE_TEST", "100", "INPUT.MAX_SIZE_TEST", "100", "MODEL.ANCHOR_GENERATOR.SIZES", "[[16, 32]]",
            "MODEL.RPN.POST_NMS_TOPK_TRAIN", "32", "MODEL.RPN.POST_NMS_TOPK_TEST", "16", "SOLVER.MAX_ITER", "10",
            "SOLVER.IMS_PER_BATCH", "1", "SOLVER.WARMUP_ITERS", "0", "SOLVER.STEPS", "()",
            "DATALOADER.NUM_WORKERS", "0", "DEEPCEE.SURVEY.SCORE_THRESHOLD", "0.0", "DEEPCEE.DATA.N_OFFSETS", "2",
            "DEEPCEE.DATA.MAX_OFFSET_ARCSEC", "20.0", "DEEPCEE.DATA.TEST_FRACTION", "0.5",
            "DEEPCEE.DATA.BOX_SIZE_KPC", "40.0", "DEEPCEE.SURVEY.MERGE_RADIUS_KPC", "40.0")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    plan = DemoPlan(work_dir=tmp_path_factory.mktemp("demo"), config_opts=TOY_OPTS, n_train_fields=4,
                    n_empty_fields=1, n_group_fields=1, neighbours_per_field=1, field_size=320, n_survey_fields=1,
                    survey_field_size=500, survey_clusters_per_field=1, workers=1, progress=False)
    return plan, run_demo(plan)


def test_every_output_of_the_demo_exists_and_parses(demo):
    plan, result = demo
    work = Path(plan.work_dir)
    # 4 fields, each with a cluster at its centre (the data set's targets) and a neighbour at least the
    # survey's merging radius (40 kpc: 22" at z = 0.1) from it, annotated in the centre's images that hold it.
    sky = Table.read(work / "sky" / "clusters.fits")
    assert len(sky) == 8 and sorted(Table.read(work / "datasets" / "synthetic" / "clusters.ecsv")["id"]) == sorted(
        f"f{k:03d}-c0" for k in range(4))
    annotated = set()
    # The cluster-free fields: one empty, one with a group below the cut (in the sky, not labelled).
    assert len(Table.read(work / "sky" / "blank" / "clusters.fits")) == 0
    group = Table.read(work / "sky" / "groups" / "clusters.fits")
    assert len(group) == 1 and group["n_members"][0] < plan.min_members
    for split in ("train", "test"):  # 2 clusters and 1 cluster-free field per split, 2 images each
        coco = json.loads((work / "datasets" / "synthetic" / f"{split}.json").read_text())
        assert len(coco["images"]) == 6 and all((work / "datasets" / "synthetic" / image["file_name"]).is_file()
                                                 for image in coco["images"])
        blank = {image["id"] for image in coco["images"] if image["blank"]}
        assert len(blank) == 2 and not any(a["image_id"] in blank for a in coco["annotations"])
        for image in coco["images"]:  # each cluster image holds its target, sometimes its neighbour too
            ids = {a["cluster_id"] for a in coco["annotations"] if a["image_id"] == image["id"]}
            assert image["blank"] or image["target_id"] in ids
            annotated |= ids
        n_annotations = len(coco["annotations"])  # of the test split, after the loop
    assert {identifier for identifier in annotated if identifier.endswith("-c1")}
    assert (work / "train" / "model_final.pth").is_file()
    summary = json.loads((result.report_dir / "evaluation.json").read_text())
    assert summary["n_true"] == n_annotations and len(summary["thresholds"]) == 11
    assert summary["blank_images"]["n_images"] == 2 and len(summary["blank_images"]["rates"]) == 11
    for name in summary["files"]:
        assert (result.report_dir / name).stat().st_size > 0, name
    assert (result.report_dir / "report.md").read_text().startswith("#")
    survey = work / "survey"
    for name in ("candidates.fits", "candidates.ecsv", "candidates.csv"):
        assert len(Table.read(survey / name)) == result.n_candidates
    candidates = Table.read(survey / "candidates.ecsv")
    assert {"known", "status"} <= set(candidates.colnames)
    assert (survey / "candidates.reg").is_file() and (survey / "gallery" / "index.html").is_file()
    assert len(Table.read(survey / "failed_tiles.ecsv")) == 0
    truth = Table.read(work / "survey_sky" / "clusters.fits")
    assert result.n_survey_clusters == len(truth) == 1
    # The clusters found are the truth's clusters that some candidate lies near (the cross-match with the truth).
    near = {str(i) for i in candidates["catalog_id"][candidates["known"]]} if len(candidates) else set()
    assert result.n_survey_clusters_found == len(near & {str(i) for i in truth["id"]})


def test_the_summary_names_the_table_threshold_centring_and_paths(demo):
    _, result = demo
    text = summary_text(result)
    assert "| Threshold (%) | TP | FP | FN | Precision | Recall | F1 |" in text
    assert "best threshold:" in text and "centring error" in text
    confirmed = result.evaluation["red_sequence_confirmed"]["thresholds"][0]  # at the test's survey threshold 0
    assert f"recall at 0 counting only detections with a red-sequence peak: {confirmed['recall']:.3f}" in text
    assert "test images without a cluster: 2 images without a cluster" in text
    assert str(result.report_dir / "report.md") in text and str(result.catalogue_path) in text
    # The held-out region's purity, re-merged from the tile files, agrees with the catalogue at the survey's cut.
    assert "held-out region: false candidates per deg^2" in text and "found exactly once: " in text
    assert list(result.purity["threshold"]) == [0.0, 0.5, 0.8, 0.9] and result.score_threshold == 0.0
    assert result.purity["n_candidates"][0] == result.n_candidates and result.purity["n_true"][0] == 1
    # The candidates' red-sequence z and richness beside the held-out truth: each true cluster is named.
    truth = Table.read(Path(demo[0].work_dir) / "survey_sky" / "clusters.fits")
    assert "survey candidates and the held-out truth" in text and all(str(i) in text for i in truth["id"])
    # Each held-out cluster the catalogue lacks is named with where the survey lost it.
    losses = survey_losses(demo[0], demo_config(demo[0], Path(demo[0].work_dir) / "train" / "model_final.pth"))
    assert set(losses) == {str(i) for i in truth["id"]}
    for identifier, (stage, _) in losses.items():
        assert (stage == "found") == (f"| (not found: {stage}" not in text)


def test_candidates_are_listed_beside_the_truth_they_match():
    truth = Table({"id": ["T1", "T2"], "z": [0.123, 0.187], "richness": [41.0, 25.0]})
    candidates = Table({"name": ["DeepCEE A", "DeepCEE B"], "score": [0.9, 0.6], "z_est": [0.131, float("nan")],
                        "z_err": [0.009, float("nan")], "richness": [37.4, float("nan")], "rs_peak": [True, False],
                        "known": [True, False], "catalog_id": ["T1", ""]})
    lines = candidates_beside_truth(candidates, truth).splitlines()
    assert "| DeepCEE A | 0.90 | 0.131 ± 0.009 | 37 | T1 | 0.123 | 41 |" in lines
    assert "| DeepCEE B | 0.60 | no peak | - | (none) | - | - |" in lines
    assert "| (not found) | - | - | - | T2 | 0.187 | 25 |" in lines
    # With where the survey lost it (`survey_losses`): the stage, and the best score when a detection was kept.
    lost = candidates_beside_truth(candidates, truth, {"T2": ("no red sequence", 0.974)}).splitlines()
    assert "| (not found: no red sequence, best score 0.97) | - | - | - | T2 | 0.187 | 25 |" in lost
    unseen = candidates_beside_truth(candidates, truth, {"T2": ("not detected", float("nan"))}).splitlines()
    assert "| (not found: not detected) | - | - | - | T2 | 0.187 | 25 |" in unseen
    assert candidates_beside_truth(candidates[["name", "score", "known", "catalog_id"]], truth) == ""


def test_the_summary_of_a_run_without_true_positives_says_nan(demo):
    # A toy model may match nothing: evaluation.json then holds null for the centring error.
    _, result = demo
    evaluation = dict(result.evaluation, centring_error_kpc=None)
    text = summary_text(dataclasses.replace(result, evaluation=evaluation))
    assert "centring error (standard error of TP centres): nan kpc" in text


def test_a_rerun_resumes_without_redoing_work(demo):
    plan, result = demo
    weights = Path(plan.work_dir) / "train" / "model_final.pth"
    stamps = {path: path.stat().st_mtime_ns for path in
              [weights, result.report_dir / "evaluation.json", *Path(plan.work_dir, "sky").rglob("frame-r.fits"),
               *Path(plan.work_dir, "survey", "tiles").glob("*")]}
    again = run_demo(plan)
    assert all(path.stat().st_mtime_ns == stamp for path, stamp in stamps.items())  # nothing made again
    assert again.evaluation["best"] == result.evaluation["best"] and again.n_candidates == result.n_candidates
    # The evaluation is kept only for the weights and config it was made with.
    assert evaluation_is_current(demo_config(plan), weights)
    other = dataclasses.replace(plan, config_opts=plan.config_opts + ("DEEPCEE.EVAL.MATCH_RADIUS_KPC", "150.0"))
    assert not evaluation_is_current(demo_config(other), weights)
    # Finished training of other settings is not taken for this run's: refused, naming the key, nothing changed.
    reseeded = dataclasses.replace(plan, config_opts=plan.config_opts + ("SEED", "8"))
    with pytest.raises(ValueError, match=r"train: its checkpoints were trained with other settings \(.*\): SEED 7 there, 8 now"):
        run_demo(reseeded)
    assert all(path.stat().st_mtime_ns == stamp for path, stamp in stamps.items())
    # A held-out survey of other detection settings (e.g. after an update) is refused with the demo's own advice,
    # its tiles untouched.
    renms = dataclasses.replace(plan, config_opts=plan.config_opts + ("MODEL.ROI_HEADS.NMS_THRESH_TEST", "0.45"))
    survey = Path(plan.work_dir) / "survey"
    advice = rf"NMS_THRESH_TEST .* For the demo: delete {re.escape(str(survey))} .* new --work-dir"
    with pytest.raises(ValueError, match=advice):
        run_survey(renms, demo_config(renms, weights), Path(plan.work_dir) / "survey_sky" / "clusters.fits")
    assert all(path.stat().st_mtime_ns == stamp for path, stamp in stamps.items())


def test_auto_precision_is_bfloat16_only_where_the_cpu_computes_it(monkeypatch, tmp_path):
    import torch

    for avx512_bf16, amx, expected in ((False, False, "float32"), (True, False, "bfloat16"), (False, True, "bfloat16")):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
        assert demo_config(DemoPlan(work_dir=tmp_path)).MODEL.INCEPTION_V2.PRECISION == expected
    assert demo_config(DemoPlan(work_dir=tmp_path, precision="float32")).MODEL.INCEPTION_V2.PRECISION == "float32"
    overridden = DemoPlan(work_dir=tmp_path, config_opts=("MODEL.INCEPTION_V2.PRECISION", "float32"))
    assert demo_config(overridden).MODEL.INCEPTION_V2.PRECISION == "float32"  # the plan's own options win

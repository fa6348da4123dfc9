import json
import math

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.table import Table
from PIL import Image
from scipy.stats import ks_2samp

from deepcee_d2.evaluation.matching import evaluate_detections

PAPER = {"thresholds": [i / 10 for i in range(11)], "match_radius": 100 * u.kpc, "histogram_radius": 250 * u.kpc}
from deepcee_d2.evaluation.report import (
    completeness_table, flat_metrics, ks_tests, markdown_table, plot_completeness, write_report,
)


@pytest.fixture
def evaluation(offset_by_kpc):
    """30 clusters, one per image; the 20 nearest ones (z < ~0.2) are found 20-70 kpc off, plus 3 false
    positives; cluster 0 has no BCG magnitude."""
    rng = np.random.default_rng(7)
    z = np.sort(rng.uniform(0.05, 0.35, 30))
    centres = SkyCoord(rng.uniform(120, 240, 30) * u.deg, rng.uniform(-5, 60, 30) * u.deg)
    bcg_rmag = 14 + 10 * z + rng.normal(0, 0.3, 30)
    bcg_rmag[0] = np.nan
    truths = Table({"image_id": np.arange(30), "id": [f"C{i}" for i in range(30)], "ra": centres.ra.deg,
                    "dec": centres.dec.deg, "z": z, "richness": rng.uniform(10, 80, 30), "bcg_rmag": bcg_rmag})
    rows = []
    for i in range(20):
        found = offset_by_kpc(centres[i], rng.uniform(20, 70), z[i], rng.uniform(0, 360))
        rows.append((i, found.ra.deg, found.dec.deg, rng.uniform(0.55, 0.99)))
    for i in (20, 21, 22):  # false positives far from their images' clusters
        far = centres[i].directional_offset_by(0 * u.deg, 20 * u.arcmin)
        rows.append((i, far.ra.deg, far.dec.deg, 0.9))
    predictions = Table(rows=rows, names=("image_id", "ra", "dec", "score"))
    return evaluate_detections(predictions, truths, **PAPER)


def test_ks_tests_detect_a_redshift_bias(evaluation):
    ks = ks_tests(evaluation.truths, alpha=0.05)
    assert ks["property"].tolist() == ["z", "bcg_rmag", "richness"]
    z_row, mag_row, rich_row = ks
    # Only the 20 lowest-redshift clusters were recovered: D is the largest ECDF gap, 10/30 at the 20th
    # redshift (all recovered ECDF = 1, all-cluster ECDF = 20/30).
    assert (z_row["n_all"], z_row["n_recovered"]) == (30, 20)
    assert z_row["statistic"] == pytest.approx(1 / 3)
    z = np.asarray(evaluation.truths["z"])
    assert z_row["pvalue"] == ks_2samp(z, z[:20]).pvalue  # scipy's exact p-value for these sample sizes
    assert 0.05 < z_row["pvalue"] < 0.2 and z_row["verdict"].startswith("consistent: p >= 0.05")
    # The verdict compares that p-value with alpha: at alpha = 0.2 the same samples differ.
    assert ks_tests(evaluation.truths, alpha=0.2)[0]["verdict"].startswith("different: p < 0.2")
    # The magnitude test leaves the cluster without a BCG magnitude out.
    assert (mag_row["n_all"], mag_row["n_recovered"]) == (29, 19)
    truths = evaluation.truths.copy()
    truths["recovered"] = truths["z"] < 0.12  # a stronger bias: only the nearest few
    strong = ks_tests(truths, alpha=0.05)[0]
    assert strong["pvalue"] < 0.05 and strong["verdict"].startswith("different")
    truths["recovered"] = False
    assert np.isnan(ks_tests(truths, alpha=0.05)["statistic"]).all()
    with pytest.raises(ValueError, match="alpha"):
        ks_tests(truths, alpha=1.5)


def test_completeness_table_counts_and_binomial_errors():
    table = completeness_table([0.1, 0.12, 0.2, 0.25, 0.3, np.nan], [True, False, True, True, False, True],
                               bins=[0.05, 0.15, 0.25, 0.35, 0.45])
    assert table["n_true"].tolist() == [2, 1, 2, 0]
    assert table["n_recovered"].tolist() == [1, 1, 1, 0]
    np.testing.assert_allclose(table["completeness"][:3], [0.5, 1.0, 0.5])
    assert np.isnan(table["completeness"][3])
    # Wilson interval at 68.27 %: symmetric about 1/2 for 1 of 2, reaching 1 for 1 of 1.
    low, high = table["completeness_low"][0], table["completeness_high"][0]
    assert low == pytest.approx(1 - high) and 0.15 < low < 0.3
    assert table["completeness_high"][1] == pytest.approx(1.0) and table["completeness_low"][1] < 1


def test_completeness_bounds_contain_the_fraction_and_plot(tmp_path):
    # None of 12 recovered: astropy's Wilson lower bound comes out as 7e-18, above the fraction 0.
    table = completeness_table(np.linspace(0.1, 0.2, 13), [False] * 12 + [True], bins=[0.05, 0.199, 0.25])
    assert table["completeness"][0] == 0 and table["completeness_low"][0] == 0
    assert np.all(table["completeness_low"] <= table["completeness"])
    assert np.all(table["completeness_high"] >= table["completeness"])
    # The plot shows the filled bins' fractions at their centres.
    points = plot_completeness(table, "z").axes[0].lines[0]
    np.testing.assert_allclose(points.get_xdata(), [0.1245, 0.2245])
    np.testing.assert_allclose(points.get_ydata(), [0.0, 1.0])


def test_markdown_table_is_laid_out_like_table_2(evaluation):
    text = markdown_table(evaluation.table, evaluation.best_index)
    lines = text.splitlines()
    assert lines[0] == "| Threshold (%) | TP | FP | FN | Precision | Recall | F1 |"
    assert len([line for line in lines if line.startswith("| ")]) == 1 + 11
    best = evaluation.table[evaluation.best_index]
    bold = [line for line in lines if "**" in line and line.startswith("|")]
    assert bold == [f"| **{100 * best['threshold']:g}** | **{best['tp']}** | **{best['fp']}** | **{best['fn']}** | "
                    f"**{best['precision']:.3f}** | **{best['recall']:.3f}** | **{best['f1']:.3f}** |"]
    assert evaluation.best_index == 0 and lines[3].startswith("| 10 | 20 | 3 | 10 | 0.870 | 0.667 | 0.755 |")


def test_write_report_writes_every_output(tmp_path, evaluation):
    crossmatch = evaluation.predictions[evaluation.predictions["status"] == "FP"]
    crossmatch["known"] = [True, False, False]
    crossmatch["catalog"] = ["WHL", "", ""]
    summary = write_report(evaluation, tmp_path, 0.05, crossmatch=crossmatch,
                           metadata={"dataset": "toy", "n_images": 30})
    expected = {"evaluation.json", "report.md", "precision_recall.png", "centre_distances.png",
                "recovered_vs_all_z.png", "recovered_vs_all_bcg_rmag.png", "recovered_vs_all_richness.png",
                "completeness_z.png", "completeness_richness.png", "predictions.ecsv", "true_clusters.ecsv",
                "false_positives_crossmatch.fits", "false_positives_crossmatch.ecsv"}
    assert {path.name for path in tmp_path.iterdir()} == expected  # and no temporary file left behind
    assert set(summary["files"]) == expected
    for name in expected:
        if name.endswith(".png"):
            with Image.open(tmp_path / name) as image:
                image.verify()  # a whole, readable PNG
    stored = json.loads((tmp_path / "evaluation.json").read_text())
    assert stored == summary
    assert stored["dataset"] == "toy" and stored["n_true"] == 30 and len(stored["thresholds"]) == 11
    assert stored["best"]["tp"] == 20 and stored["crossmatch"] == {
        "n_false_positives": 3, "n_known": 1, "n_new": 2, "n_known_per_catalog": {"WHL": 1}}
    assert stored["centring_error_kpc"] == pytest.approx(evaluation.centring_error.to_value(u.kpc))
    assert 20 <= stored["centring_error_kpc"] <= 70 and len(stored["centre_distances_kpc"]) == 20
    report = (tmp_path / "report.md").read_text()
    for name in expected - {"report.md"}:
        assert f"({name})" in report, name
    assert markdown_table(evaluation.table, evaluation.best_index) in report
    assert Table.read(tmp_path / "true_clusters.ecsv")["recovered"].sum() == 20
    assert len(Table.read(tmp_path / "false_positives_crossmatch.fits")) == 3


def test_json_is_nan_safe_without_any_detection(tmp_path, evaluation):
    empty = evaluate_detections(evaluation.predictions[:0]["image_id", "ra", "dec", "score"], evaluation.truths[
        "image_id", "id", "ra", "dec", "z", "richness", "bcg_rmag"], **PAPER)
    summary = write_report(empty, tmp_path, 0.05)
    stored = json.loads((tmp_path / "evaluation.json").read_text())  # strict JSON: no NaN literal
    assert stored["centring_error_kpc"] is None and stored["ks_tests"][0]["statistic"] is None
    metrics = flat_metrics(summary)
    assert math.isnan(metrics["centring_error_kpc"]) and metrics["f1"] == 0.0 and metrics["fn"] == 30.0
    assert all(isinstance(value, float) for value in metrics.values())
    # The headline keys carry no "-" (print_csv_format shows them); the whole table follows, one key per cell.
    headline = [key for key in metrics if "-" not in key]
    assert {"best_threshold", "precision", "recall", "f1", "tp", "fp", "fn"} <= set(headline)
    assert len(metrics) - len(headline) == 6 * 11 and metrics["fn-0"] == metrics["fn-100"] == 30.0

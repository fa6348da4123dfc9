"""Purity of a survey catalogue: false candidates per deg^2 at each threshold, clusters found exactly once."""
import json
import math
import runpy
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.table import Table

from astropy.table import vstack
from conftest import TINY_FIELD_SIZE, TINY_FIELDS

from deepcee_d2.config import load_config
from deepcee_d2.evaluation.purity import (
    choose_score_threshold, false_rate_table, fields_area, match_truth, paired_recall_difference, rates_markdown,
    survey_false_rates, true_candidates,
)

REPO = Path(__file__).resolve().parents[1]

WINDOW = {"radius": 250 * u.kpc, "z_range": (0.05, 0.4)}


def flagged_candidates():
    """Cluster c1 found twice (0.95 and a piece at 0.85), c2 once (0.9), one false candidate (0.6)."""
    return Table({"ra": [1.0, 1.01, 2.0, 3.0], "dec": [0.0] * 4, "score": [0.95, 0.85, 0.6, 0.9],
                  "known": [True, True, False, True], "catalog_id": ["c1", "c1", "", "c2"]})


def test_false_candidates_per_deg2_count_duplicates_as_false():
    rates = false_rate_table(flagged_candidates(), 0.5, [0.5, 0.88, 0.99])
    assert list(rates["n_candidates"]) == [4, 2, 0]
    assert list(rates["n_false"]) == [2, 0, 0] and list(rates["n_duplicate"]) == [1, 0, 0]
    assert list(rates["false_per_deg2"]) == [4.0, 0.0, 0.0] and rates.meta["AREADEG2"] == 0.5
    # A threshold counts scores >= it, the survey's own cut.
    assert list(false_rate_table(flagged_candidates(), 1.0, [0.6])["n_false"]) == [2]
    # Sky without clusters: no known flag, every candidate is false.
    blank = flagged_candidates()
    blank.remove_columns(["known", "catalog_id"])
    assert list(false_rate_table(blank, 2.0, [0.5, 0.9])["false_per_deg2"]) == [2.0, 1.0]


def test_with_truth_each_cluster_is_counted_found_once_or_more():
    centre = SkyCoord(150 * u.deg, 2 * u.deg)
    other = centre.directional_offset_by(90 * u.deg, 0.3 * u.deg)
    piece = centre.directional_offset_by(0 * u.deg, 60 * u.arcsec)  # 109 kpc at z = 0.1: the same cluster
    far = centre.directional_offset_by(180 * u.deg, 0.2 * u.deg)
    truth = Table({"id": ["A", "B", "C"], "ra": [centre.ra.deg, other.ra.deg, 10.0],
                   "dec": [centre.dec.deg, other.dec.deg, 10.0], "z": [0.1, 0.15, 0.6]})  # C outside the window
    positions = SkyCoord([centre, piece, other, far])
    candidates = Table({"ra": positions.ra.deg, "dec": positions.dec.deg, "score": [0.9, 0.7, 0.6, 0.8]})
    rates = false_rate_table(candidates, 0.25, [0.5, 0.75], truth, **WINDOW)
    assert list(rates["n_true"]) == [2, 2]
    assert list(rates["n_found"]) == [2, 1] and list(rates["n_found_once"]) == [1, 1]
    assert list(rates["n_false"]) == [2, 1] and list(rates["n_duplicate"]) == [1, 0]
    assert list(rates["completeness"]) == [1.0, 0.5]
    assert "| 0.5 | 4 | 2 | 1 | 8.0 | 2 of 2 | 1 of 2 |" in rates_markdown(rates)


def test_candidates_on_known_clusters_are_counted_apart_not_as_false():
    """The false 0.6 candidate of `flagged_candidates` lies 30" from a real cluster the truth lacks, catalogued
    with its redshift or without one (matched at the candidate's z_est): it is neither false nor true."""
    candidates = flagged_candidates()
    candidates["z_est"] = [0.2, 0.2, 0.15, 0.2]
    spot = SkyCoord(2.0 * u.deg, 0.0 * u.deg).directional_offset_by(0 * u.deg, 30 * u.arcsec)  # 79 kpc at z 0.15
    for z in (0.15, np.nan):
        known = Table({"ra": [spot.ra.deg], "dec": [spot.dec.deg], "z": [z]}, meta={"name": "xray"})
        rates = false_rate_table(candidates, 0.5, [0.5, 0.88], known_clusters=known, **WINDOW)
        assert list(rates["n_on_known"]) == [1, 0]
        assert list(rates["n_false"]) == [1, 0] and list(rates["n_duplicate"]) == [1, 0]  # c1's piece is still false
        assert "| 0.5 | 4 | 1 | 1 | 1 | 2.0 |" in rates_markdown(rates)
    elsewhere = Table({"ra": [40.0], "dec": [0.0], "z": [0.15]}, meta={"name": "xray"})
    rates = false_rate_table(candidates, 0.5, [0.5], known_clusters=elsewhere, **WINDOW)
    assert list(rates["n_on_known"]) == [0] and list(rates["n_false"]) == [2]
    with pytest.raises(ValueError, match="needs its radius and redshift window"):
        false_rate_table(candidates, 0.5, [0.5], known_clusters=elsewhere)


def test_true_candidates_are_each_clusters_best_scored_one():
    # Out of score order on purpose: c1's piece (0.85) comes before its best candidate (0.95).
    candidates = flagged_candidates()[[1, 0, 2, 3]]
    assert list(true_candidates(candidates)) == [False, True, False, True]
    # Cross-matched with the truth by match_truth: the same flags, and only the window's clusters returned.
    centre = SkyCoord(150 * u.deg, 2 * u.deg)
    piece = centre.directional_offset_by(0 * u.deg, 60 * u.arcsec)
    truth = Table({"id": ["A", "C"], "ra": [centre.ra.deg, 10.0], "dec": [centre.dec.deg, 10.0], "z": [0.1, 0.6]})
    positions = SkyCoord([piece, centre])
    matched, in_window = match_truth(Table({"ra": positions.ra.deg, "dec": positions.dec.deg, "score": [0.7, 0.9]}),
                                     truth, **WINDOW)
    assert list(in_window["id"]) == ["A"] and list(matched["known"]) == [True, True]
    assert list(true_candidates(matched)) == [False, True]
    # Without cross-match flags (sky without clusters) none is true.
    assert not true_candidates(Table({"ra": [1.0], "dec": [0.0], "score": [0.9]})).any()


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="positive number of deg"):
        false_rate_table(flagged_candidates(), 0.0, [0.5])
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['score'\]"):
        false_rate_table(Table({"ra": [1.0], "dec": [0.0]}), 1.0, [0.5])
    with pytest.raises(ValueError, match="needs its radius and redshift window"):
        false_rate_table(flagged_candidates(), 1.0, [0.5], Table({"ra": [1.0], "dec": [0.0], "z": [0.1]}))


def test_the_threshold_is_the_lowest_meeting_the_target():
    rates = false_rate_table(flagged_candidates(), 0.5, [0.5, 0.6, 0.88, 0.99])
    assert choose_score_threshold(rates, 4.0) == 0.5
    assert choose_score_threshold(rates, 2.0) == 0.88  # at 0.6 the false 0.6 and the duplicate still count
    assert choose_score_threshold(false_rate_table(flagged_candidates(), 0.5, [0.5, 0.6]), 1.0) is None


def fake_survey_run(folder, floor, with_area=None):
    """A survey output folder with a manifest and two tile files: the detections of `flagged_candidates`
    as if from a sky without clusters, plus a second detection of the 0.95 one 10" away (one candidate)."""
    (folder / "tiles").mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"score_threshold": floor}))
    detections = flagged_candidates()
    detections.remove_columns(["known", "catalog_id"])
    detections["tile"] = ["t1", "t1", "t2", "t2"]
    twin = Table({"ra": [1.0 + 10 / 3600], "dec": [0.0], "score": [0.4], "tile": ["t2"]})
    detections[:2].write(folder / "tiles" / "t1.ecsv", format="ascii.ecsv")
    vstack([detections[2:], twin]).write(folder / "tiles" / "t2.ecsv", format="ascii.ecsv")
    if with_area is not None:
        Table({"ra": [1.0]}, meta={"AREADEG2": with_area}).write(folder / "candidates.ecsv", format="ascii.ecsv")
    return folder


def test_survey_rates_re_merge_the_tile_files_down_to_their_floor(tmp_path):
    cfg = load_config()  # merging within 500 kpc at z = 0.1 (274"): 1.0 and 1.01 deg (36") are one candidate
    run = fake_survey_run(tmp_path / "run", 0.3, with_area=0.5)
    rates = survey_false_rates(run, cfg, [0.3, 0.9])
    assert list(rates["n_candidates"]) == [3, 2] and list(rates["false_per_deg2"]) == [6.0, 4.0]
    with pytest.raises(ValueError, match=r"keep detections >= 0.3 only, so thresholds \[0.2\]"):
        survey_false_rates(run, cfg, [0.2, 0.5])
    bare = fake_survey_run(tmp_path / "bare", 0.3)
    with pytest.raises(ValueError, match="records no searched area"):
        survey_false_rates(bare, cfg, [0.5])
    with pytest.raises(FileNotFoundError, match="not the output of a survey run"):
        survey_false_rates(tmp_path, cfg, [0.5])


def test_tiles_from_before_the_crowded_sky_mask_are_refused_when_crowded(tmp_path):
    """Tile files written before the mask record no centres: a crowded one leaves the searched sky unknown."""
    run = fake_survey_run(tmp_path / "run", 0.3, with_area=0.5)
    tile = Table.read(run / "tiles" / "t2.ecsv")
    tile.meta["SOURCE_DENSITY"] = 30.0
    tile.write(run / "tiles" / "t2.ecsv", format="ascii.ecsv", overwrite=True)
    with pytest.raises(ValueError, match="1 tiles are crowded sky, but tile files written before the mask"):
        survey_false_rates(run, load_config(), [0.5])
    cfg = load_config(opts=["DEEPCEE.SURVEY.MAX_SOURCE_DENSITY", "0.0"])  # no mask: as before
    assert list(survey_false_rates(run, cfg, [0.3])["n_candidates"]) == [3]


def test_a_survey_whose_tiles_found_nothing_has_no_false_candidates(tmp_path):
    run = tmp_path / "run"
    (run / "tiles").mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"score_threshold": 0.1}))
    flagged_candidates()[:0].write(run / "tiles" / "t1.ecsv", format="ascii.ecsv")
    truth = Table({"id": ["A"], "ra": [1.0], "dec": [0.0], "z": [0.15]})
    rates = survey_false_rates(run, load_config(), [0.1, 0.5], truth=truth, area=0.5)
    assert list(rates["n_candidates"]) == [0, 0] and list(rates["false_per_deg2"]) == [0.0, 0.0]
    assert list(rates["n_found"]) == [0, 0] and list(rates["n_true"]) == [1, 1]


def test_the_area_of_a_folder_of_fields(tiny_survey):
    full = len(TINY_FIELDS) * (TINY_FIELD_SIZE * 0.396 / 3600) ** 2
    # The bands are shifted by a few pixels against each other: only what all three cover counts.
    assert 0.97 * full < fields_area(tiny_survey) < full


def test_the_command_prints_the_table_and_the_chosen_threshold(tmp_path, capsys):
    run = fake_survey_run(tmp_path / "run", 0.3, with_area=0.5)
    script = runpy.run_path(str(REPO / "tools" / "choose_threshold.py"))
    chosen = script["main"](["--config-file", str(REPO / "configs" / "Base-DeepCEE.yaml"), "--target", "4.0",
                             "--step", "0.05", str(run)])
    out = capsys.readouterr().out
    assert chosen == pytest.approx(0.65)  # above the false 0.6, two candidates remain: 4 per deg^2
    assert "set DEEPCEE.SURVEY.SCORE_THRESHOLD 0.65" in out and "| 0.3 | 3 | 3 | 0 | 6.0 |" in out
    # The 0.6 one lies on a cluster known there: not false, so the run's floor already meets the target.
    known = tmp_path / "known.ecsv"
    Table({"ra": [2.0], "dec": [0.0], "z": [0.1]}).write(known, format="ascii.ecsv")
    chosen = script["main"](["--config-file", str(REPO / "configs" / "Base-DeepCEE.yaml"), "--target", "4.0",
                             "--step", "0.05", "--known", str(known), str(run)])
    assert chosen == pytest.approx(0.3) and "| 0.3 | 3 | 1 | 2 | 0 | 4.0 |" in capsys.readouterr().out


def test_paired_recall_difference_counts_only_the_clusters_one_side_missed():
    # 120 clusters: 94 found on both sides, 6 only on a, 10 only on b, 10 on neither (the injection bench's 40
    # SEED-8 rounds, BENCHMARKS.md).
    found_a = [True] * 94 + [True] * 6 + [False] * 10 + [False] * 10
    found_b = [True] * 94 + [False] * 6 + [True] * 10 + [False] * 10
    result = paired_recall_difference(found_a, found_b)
    assert (result["n"], result["only_a"], result["only_b"]) == (120, 6, 10)
    assert result["difference"] == pytest.approx(-4 / 120)
    # McNemar's exact test: twice the binomial tail P(X <= 6) of 16 fair draws.
    assert result["pvalue"] == pytest.approx(2 * sum(math.comb(16, k) for k in range(7)) / 2**16)
    assert result["half_width"] == pytest.approx(1.959964 * math.sqrt(16 - 16 / 120) / 120, rel=1e-6)
    # Swapping the sides flips the sign only; more clusters found on both sides dilute the difference but
    # leave the test, which reads the discordant ones alone.
    swapped = paired_recall_difference(found_b, found_a)
    assert swapped["difference"] == -result["difference"] and swapped["pvalue"] == result["pvalue"]
    more = paired_recall_difference(found_a + [True] * 30, found_b + [True] * 30)
    assert more["difference"] == pytest.approx(-4 / 150) and more["pvalue"] == result["pvalue"]
    same = paired_recall_difference([True, False], [True, False])
    assert (same["difference"], same["half_width"], same["pvalue"]) == (0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="two flags per cluster"):
        paired_recall_difference([True, False], [True])
    with pytest.raises(ValueError, match="no clusters"):
        paired_recall_difference([], [])

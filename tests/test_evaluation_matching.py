import astropy.units as u
import numpy as np
import pytest
from astropy.constants import c
from astropy.coordinates import SkyCoord
from astropy.cosmology import FlatLambdaCDM
from astropy.table import Table
from scipy.integrate import quad

from deepcee_d2.cosmology import DEFAULT_COSMOLOGY, angular_size, proper_length
from deepcee_d2.evaluation.matching import (
    BELOW_THRESHOLD, FALSE_POSITIVE, TRUE_POSITIVE, best_threshold_index, centring_error, evaluate_detections,
    match_image, passes_threshold, precision_recall_f1, threshold_table,
)
from deepcee_d2.sky import merge_by_sky_distance, sky_pairs

CENTRE = SkyCoord(150.0 * u.deg, 2.0 * u.deg)
# The paper's analysis: thresholds 0, 10, ..., 100 %, a 100 kpc match radius, a 250 kpc histogram radius.
PAPER = {"thresholds": [i / 10 for i in range(11)], "match_radius": 100 * u.kpc, "histogram_radius": 250 * u.kpc}
R = PAPER["match_radius"]


def sky(*coords):
    return SkyCoord([c.ra for c in coords], [c.dec for c in coords]) if coords else SkyCoord([], [], unit="deg")


# ---- distances ----

@pytest.mark.parametrize("z", [0.1, 0.15, 0.2])
def test_kpc_per_arcsec_agrees_with_an_independent_integration_and_with_astropy(z):
    # Flat LCDM, H0 = 71, Om = 0.27 (radiation neglected, as in the default cosmology, Tcmb0 = 0):
    # D_A = c / H0 * integral_0^z dz' / E(z') / (1 + z).
    om, h0 = 0.27, 71 * u.km / u.s / u.Mpc
    integral, _ = quad(lambda x: 1 / np.sqrt(om * (1 + x) ** 3 + 1 - om), 0, z)
    d_a = (c / h0 * integral / (1 + z)).to(u.kpc)
    expected = d_a * (1 * u.arcsec).to_value(u.rad)  # kpc per arcsec, small-angle
    assert proper_length(1 * u.arcsec, z).to_value(u.kpc) == pytest.approx(expected.value, rel=1e-6)
    astropy_d_a = DEFAULT_COSMOLOGY.angular_diameter_distance(z).to(u.kpc)
    assert astropy_d_a.value == pytest.approx(d_a.value, rel=1e-6)
    # sky_pairs measures the same: a true cluster at z, a prediction 30 arcsec north of it.
    pairs = sky_pairs(CENTRE.directional_offset_by(0 * u.deg, 30 * u.arcsec), CENTRE, 200 * u.kpc, redshift=z)
    assert pairs.separation.to_value(u.arcsec) == pytest.approx([30.0], rel=1e-9)
    assert pairs.distance.to_value(u.kpc) == pytest.approx([30 * expected.value], rel=1e-6)
    assert angular_size(30 * expected, z).to_value(u.arcsec) == pytest.approx(30, rel=1e-6)


def test_distance_uses_the_redshift_of_each_true_cluster():
    # 60 arcsec is ~113 kpc at z = 0.1 and ~262 kpc at z = 0.3.
    near = CENTRE.directional_offset_by(90 * u.deg, 60 * u.arcsec)
    low_z = match_image(sky(near), [0.9], sky(CENTRE), [0.1], 0.0, 150 * u.kpc)
    high_z = match_image(sky(near), [0.9], sky(CENTRE), [0.3], 0.0, 150 * u.kpc)
    assert (low_z.tp, low_z.fp) == (1, 0)
    assert (high_z.tp, high_z.fp, high_z.fn) == (0, 1, 1)
    assert low_z.distance[0].to_value(u.kpc) == pytest.approx(proper_length(60 * u.arcsec, 0.1).value)


@pytest.mark.parametrize("z", [0.1, 0.15, 0.2])
def test_prediction_exactly_at_the_match_radius_is_a_true_positive(z, offset_by_kpc):
    on_boundary = offset_by_kpc(CENTRE, 100, z, position_angle=37)
    inside = offset_by_kpc(CENTRE, 100 * (1 - 1e-6), z, position_angle=37)
    outside = offset_by_kpc(CENTRE, 100 * (1 + 1e-6), z, position_angle=37)
    measured = sky_pairs(on_boundary, CENTRE, 1 * u.Mpc, redshift=z).distance.to_value(u.kpc)
    assert measured == pytest.approx([100.0], rel=1e-11)
    for position, expected_tp in ((on_boundary, 1), (inside, 1), (outside, 0)):
        match = match_image(position, [0.5], sky(CENTRE), [z], 0.0, 100 * u.kpc)
        assert (match.tp, match.fp, match.fn) == (expected_tp, 1 - expected_tp, 1 - expected_tp)


def test_angular_radius_boundary_is_inclusive():
    at = CENTRE.directional_offset_by(0 * u.deg, 60 * u.arcsec)
    beyond = CENTRE.directional_offset_by(0 * u.deg, 60.0001 * u.arcsec)
    pairs = sky_pairs(sky(at, beyond), CENTRE, 1 * u.arcmin)
    assert pairs.index_a.tolist() == [0] and pairs.index_b.tolist() == [0]
    assert pairs.distance.unit == u.arcmin


def test_sky_pairs_returns_every_pair_nearest_first():
    a = sky(*(CENTRE.directional_offset_by(0 * u.deg, d * u.arcsec) for d in (0, 10, 50)))
    b = sky(CENTRE, CENTRE.directional_offset_by(0 * u.deg, 15 * u.arcsec))
    pairs = sky_pairs(a, b, 20 * u.arcsec)
    got = list(zip(pairs.index_a.tolist(), pairs.index_b.tolist(), np.round(pairs.distance.value, 6)))
    assert got == [(0, 0, 0.0), (1, 1, 5.0), (1, 0, 10.0), (0, 1, 15.0)]


def test_sky_pairs_rejects_ambiguous_or_impossible_radii():
    with pytest.raises(ValueError, match="redshifts of coords_b are needed"):
        sky_pairs(CENTRE, CENTRE, 100 * u.kpc)
    with pytest.raises(ValueError, match="takes no redshift"):
        sky_pairs(CENTRE, CENTRE, 10 * u.arcsec, redshift=0.1)
    with pytest.raises(ValueError, match="finite and > 0"):
        sky_pairs(CENTRE, sky(CENTRE, CENTRE), 100 * u.kpc, redshift=[0.1, np.nan])
    with pytest.raises(ValueError, match="finite and > 0"):
        sky_pairs(CENTRE, CENTRE, 100 * u.kpc, redshift=0.0)
    with pytest.raises(ValueError, match="3 redshifts for 2 positions of coords_b"):
        sky_pairs(CENTRE, sky(CENTRE, CENTRE), 100 * u.kpc, redshift=[0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="angle or a length"):
        sky_pairs(CENTRE, CENTRE, 3 * u.s)
    with pytest.raises(TypeError, match="SkyCoord"):
        sky_pairs([150.0, 2.0], CENTRE, 1 * u.arcsec)


def test_sky_pairs_with_an_empty_side():
    pairs = sky_pairs(sky(), sky(CENTRE), 100 * u.kpc, redshift=[0.1])
    assert len(pairs.index_a) == 0 and pairs.distance.unit == u.kpc
    assert len(sky_pairs(sky(CENTRE), sky(), 100 * u.kpc, redshift=[]).index_b) == 0


# ---- one-to-one matching in one image ----

def test_duplicates_around_one_cluster_give_one_true_positive_the_closest(offset_by_kpc):
    z = 0.15
    duplicates = sky(offset_by_kpc(CENTRE, 60, z, 0), offset_by_kpc(CENTRE, 10, z, 90),
                     offset_by_kpc(CENTRE, 95, z, 200))
    scores = [0.95, 0.6, 0.8]
    match = match_image(duplicates, scores, sky(CENTRE), [z], 0.0, R)
    assert (match.tp, match.fp, match.fn) == (1, 2, 0)
    # Of the matchings with one pair, the one with the smallest distance: the closest, not the most confident.
    assert match.true_index.tolist() == [-1, 0, -1]
    assert match.distance[1].to_value(u.kpc) == pytest.approx(10, rel=1e-9)
    # Above 0.9 only the confident one is left: a clean detection, 60 kpc off.
    clean = match_image(duplicates, scores, sky(CENTRE), [z], 0.9, R)
    assert (clean.tp, clean.fp, clean.fn) == (1, 0, 0) and clean.true_index.tolist() == [0, -1, -1]


def test_empty_predictions_leave_every_cluster_a_false_negative():
    match = match_image(sky(), [], sky(CENTRE, CENTRE.directional_offset_by(0 * u.deg, 5 * u.arcmin)), [0.1, 0.2],
                        0.0, R)
    assert (match.tp, match.fp, match.fn) == (0, 0, 2)
    assert match.recovered.tolist() == [False, False]


def test_image_without_clusters_makes_every_selected_prediction_a_false_positive():
    predictions = sky(CENTRE, CENTRE.directional_offset_by(0 * u.deg, 1 * u.arcmin))
    match = match_image(predictions, [0.3, 0.7], sky(), [], 0.5, R)
    assert (match.tp, match.fp, match.fn) == (0, 1, 0)
    assert match.selected.tolist() == [False, True]


def test_two_clusters_in_one_image_are_matched_separately(offset_by_kpc):
    other = CENTRE.directional_offset_by(45 * u.deg, 4 * u.arcmin)
    truths, z = sky(CENTRE, other), [0.1, 0.2]
    predictions = sky(offset_by_kpc(other, 40, 0.2, 10), offset_by_kpc(CENTRE, 20, 0.1, 300))
    match = match_image(predictions, [0.7, 0.9], truths, z, 0.0, R)
    assert (match.tp, match.fp, match.fn) == (2, 0, 0)
    assert match.true_index.tolist() == [1, 0]
    assert match.distance.to_value(u.kpc) == pytest.approx([40, 20], rel=1e-9)


def test_two_clusters_150_kpc_apart_with_a_prediction_between_them_both_match(offset_by_kpc):
    z = 0.2
    a = CENTRE
    b = offset_by_kpc(a, 150, z, 90)
    between = offset_by_kpc(a, 70, z, 90)  # 70 kpc from a, 80 kpc from b: within 100 kpc of both
    near_a = offset_by_kpc(a, 30, z, 270)  # less confident, within reach of a only
    match = match_image(sky(between, near_a), [0.9, 0.8], sky(a, b), [z, z], 0.0, R)
    # Greedy by score gave 1 TP / 1 FP / 1 FN (`between` took a, its nearest, and left `near_a` nothing); the
    # maximum matching pairs `between` with b and `near_a` with a.
    assert match.true_index.tolist() == [1, 0]
    assert (match.tp, match.fp, match.fn) == (2, 0, 0)
    assert match.distance.to_value(u.kpc) == pytest.approx([80, 30], rel=1e-6)


def test_of_the_largest_matchings_the_one_with_the_smallest_total_distance_wins(offset_by_kpc):
    z = 0.1
    a = CENTRE
    b = offset_by_kpc(a, 100, z, 90)
    near_a = offset_by_kpc(a, 20, z, 90)  # 20 kpc from a, 80 from b
    near_b = offset_by_kpc(a, 70, z, 90)  # 70 kpc from a, 30 from b
    match = match_image(sky(near_b, near_a), [0.5, 0.9], sky(a, b), [z, z], 0.0, R)
    # Both pairings have two pairs; 20 + 30 kpc beats 70 + 80 kpc.
    assert match.true_index.tolist() == [1, 0]
    assert match.distance.to_value(u.kpc) == pytest.approx([30, 20], rel=1e-6)


def test_a_detection_counts_only_strictly_above_the_threshold():
    scores = np.array([0.0, 0.05, 0.7, 0.99999, 1.0], dtype=np.float32)
    predictions = sky(*(CENTRE.directional_offset_by(0 * u.deg, d * u.arcmin) for d in range(5)))
    at_zero = match_image(predictions, scores, sky(), [], 0.0, R)
    assert at_zero.selected.tolist() == [False, True, True, True, True]  # a score of exactly 0 does not count
    at_one = match_image(predictions, scores, sky(), [], 1.0, R)
    assert not at_one.selected.any()  # nothing is greater than 100 %, a saturated 1.0 neither
    assert not passes_threshold(np.float32(0.7), 0.7)  # the paper's "greater than", in float32
    assert passes_threshold(np.float32(0.70001), 0.7) and not passes_threshold(0.6999, 0.7)
    assert not passes_threshold(np.float64(1.0), 1.0) and passes_threshold(0.9999, 0.99)


def test_nan_scores_are_rejected():
    with pytest.raises(ValueError, match="finite"):
        match_image(sky(CENTRE), [np.nan], sky(), [], 0.0, R)


# ---- the table ----

# Dold & Fahrion 2022, A&A 663, A81, "Evaluating the feasibility of interpretable machine learning for
# globular cluster detection", Table E.2 (trained on Fornax, tested on Virgo; 12385 catalogued GCs; metrics
# "average over all sources"): method, TPs, FPs, published TPR (= recall) and FDR (= 1 - precision).
DOLD_FAHRION_2022_TABLE_E2 = [
    ("Nearest Neighbour", 10613, 1926, 0.86, 0.15),
    ("12 Nearest Neighbours", 10676, 1815, 0.86, 0.15),
    ("Random Forest", 10468, 1823, 0.85, 0.15),
    ("Convolutional Neural Network (CNN)", 11560, 1194, 0.93, 0.09),
    ("CNN + Nearest Neighbour", 10920, 1132, 0.88, 0.09),
    ("CNN + 12 Nearest Neighbours", 11239, 770, 0.91, 0.06),
]


def test_table_arithmetic_reproduces_a_published_table_from_its_counts():
    _, tp, fp, tpr, fdr = map(np.array, zip(*DOLD_FAHRION_2022_TABLE_E2))
    fn = 12385 - tp
    table = threshold_table(np.linspace(0, 0.5, len(tp)), tp, fp, fn)
    np.testing.assert_array_equal(np.round(table["recall"], 2), tpr)
    np.testing.assert_array_equal(np.round(1 - table["precision"], 2), fdr)
    # F1 is the harmonic mean: 2 TP / (2 TP + FP + FN).
    np.testing.assert_allclose(table["f1"], 2 * tp / (2 * tp + fp + fn), rtol=1e-12)
    # The best F1 is CNN + 12 NN's, 22478 / 24394 = 0.9215 (the CNN alone: 23120 / 25139 = 0.9197).
    assert best_threshold_index(table) == 5
    assert table["f1"][5] == pytest.approx(0.9215, abs=5e-5) and table["f1"][3] == pytest.approx(0.9197, abs=5e-5)


def test_precision_recall_f1_are_zero_where_undefined():
    precision, recall, f1 = precision_recall_f1([0, 0, 3], [0, 4, 1], [0, 0, 0])
    assert precision.tolist() == [0.0, 0.0, 0.75]
    assert recall.tolist() == [0.0, 0.0, 1.0]
    assert f1.tolist() == [0.0, 0.0, pytest.approx(6 / 7)]


def test_best_threshold_on_a_tie_is_the_lowest():
    table = threshold_table([0.8, 0.2, 0.5], [5, 5, 5], [1, 1, 1], [0, 0, 0])
    assert best_threshold_index(table) == 1


def test_centring_error_is_the_root_mean_square_distance():
    assert centring_error([30, 40] * u.kpc).to_value(u.kpc) == pytest.approx(np.sqrt((900 + 1600) / 2))
    assert centring_error([0.03, 0.04] * u.Mpc).unit == u.kpc
    assert np.isnan(centring_error([] * u.kpc))


# ---- many images ----

def _toy_set(offset_by_kpc):
    """Four images: 1 has a cluster with a close and a duplicate prediction; 2 has two clusters, one found;
    3 has no cluster and one confident prediction; 4 has a cluster and no prediction."""
    c1, c2a = CENTRE, SkyCoord(160 * u.deg, 5 * u.deg)
    c2b, c4 = c2a.directional_offset_by(0 * u.deg, 5 * u.arcmin), SkyCoord(170 * u.deg, -3 * u.deg)
    truths = Table(rows=[(1, "A", c1.ra.deg, c1.dec.deg, 0.1, 40.0), (2, "B", c2a.ra.deg, c2a.dec.deg, 0.2, 25.0),
                         (2, "C", c2b.ra.deg, c2b.dec.deg, 0.3, 12.0), (4, "D", c4.ra.deg, c4.dec.deg, 0.15, 18.0)],
                   names=("image_id", "id", "ra", "dec", "z", "richness"))
    positions = [(1, offset_by_kpc(c1, 30, 0.1, 0), 0.92), (1, offset_by_kpc(c1, 80, 0.1, 180), 0.45),
                 (1, offset_by_kpc(c1, 200, 0.1, 90), 0.35), (2, offset_by_kpc(c2a, 50, 0.2, 45), 0.66),
                 (3, SkyCoord(180 * u.deg, 0 * u.deg), 0.81)]
    predictions = Table(rows=[(i, p.ra.deg, p.dec.deg, s) for i, p, s in positions],
                        names=("image_id", "ra", "dec", "score"))
    return predictions, truths


def test_evaluate_detections_counts_add_up_at_every_threshold(offset_by_kpc):
    predictions, truths = _toy_set(offset_by_kpc)
    result = evaluate_detections(predictions, truths, **PAPER)
    table = result.table
    assert np.all(table["tp"] + table["fn"] == len(truths))
    assert table["tp"][0] + table["fp"][0] == len(predictions)
    assert [tuple(int(n) for n in row) for row in table[["tp", "fp", "fn"]]] == [
        (2, 3, 2), (2, 3, 2), (2, 3, 2), (2, 3, 2), (2, 2, 2), (2, 1, 2), (2, 1, 2), (1, 1, 3), (1, 1, 3),
        (1, 0, 3), (0, 0, 4)]
    # F1 = 2 TP / (2 TP + FP + FN): 4/7 at 0.5 and 0.6 beats 4/8 at 0.4; the lower of the tie wins.
    assert result.best_threshold == pytest.approx(0.5)
    assert table["f1"][result.best_index] == pytest.approx(4 / 7)


def test_evaluate_detections_per_object_results_at_the_best_threshold(offset_by_kpc):
    predictions, truths = _toy_set(offset_by_kpc)
    result = evaluate_detections(predictions, truths, **PAPER)
    rows = result.predictions
    assert rows["status"].tolist() == [TRUE_POSITIVE, BELOW_THRESHOLD, BELOW_THRESHOLD, TRUE_POSITIVE,
                                       FALSE_POSITIVE]
    assert rows["matched_id"].tolist() == ["A", "", "", "B", ""]
    np.testing.assert_allclose(u.Quantity(rows["match_distance"]).to_value(u.kpc)[[0, 3]], [30, 50], rtol=1e-9)
    # Nearest true cluster within 250 kpc, at any score: the 200 kpc one too; nothing near image 3.
    assert rows["nearest_id"].tolist() == ["A", "A", "A", "B", ""]
    np.testing.assert_allclose(u.Quantity(rows["nearest_distance"]).to_value(u.kpc)[:4], [30, 80, 200, 50], rtol=1e-9)
    # The histogram keeps the predictions above the best threshold that lie within 250 kpc.
    np.testing.assert_allclose(np.sort(result.histogram_distances.to_value(u.kpc)), [30, 50], rtol=1e-9)
    assert result.truths["recovered"].tolist() == [True, True, False, False]
    assert result.truths["matched_score"][0] == pytest.approx(0.92)
    assert result.centring_error.to_value(u.kpc) == pytest.approx(np.sqrt((30**2 + 50**2) / 2), rel=1e-9)
    assert result.truths["richness"].tolist() == [40.0, 25.0, 12.0, 18.0]  # extra columns carried through


def test_evaluate_detections_without_predictions(offset_by_kpc):
    predictions, truths = _toy_set(offset_by_kpc)
    result = evaluate_detections(predictions[:0], truths, **PAPER)
    assert result.table["tp"].tolist() == [0] * 11 and result.table["fn"].tolist() == [4] * 11
    assert np.isnan(result.centring_error) and len(result.histogram_distances) == 0


def test_evaluate_detections_names_missing_columns(offset_by_kpc):
    predictions, truths = _toy_set(offset_by_kpc)
    with pytest.raises(ValueError, match=r"truths table lacks column\(s\) \['z'\]"):
        evaluate_detections(predictions, truths[["image_id", "id", "ra", "dec"]], **PAPER)
    predictions["score"][3] = np.nan
    with pytest.raises(ValueError, match=r"1 prediction score\(s\) are not finite, e\.g\. nan in image 2"):
        evaluate_detections(predictions, truths, **PAPER)
    predictions["score"][3] = 0.66
    truths["z"][1] = np.nan
    with pytest.raises(ValueError, match="image 2: redshifts must be finite"):
        evaluate_detections(predictions, truths, **PAPER)


def test_integer_and_string_image_ids_are_refused_not_left_unmatched(offset_by_kpc):
    predictions, truths = _toy_set(offset_by_kpc)
    predictions["image_id"] = predictions["image_id"].astype(str)
    with pytest.raises(ValueError, match=r"predictions has '1' \(string\), truths has 1 \(number\)"):
        evaluate_detections(predictions, truths, **PAPER)
    # Numbers of any integer dtype are one kind: int32 ids in one table match int64 ids in the other.
    predictions["image_id"] = predictions["image_id"].astype(np.int32)
    assert evaluate_detections(predictions, truths, **PAPER).table["tp"][0] == 2


def test_other_cosmology_changes_the_match(offset_by_kpc):
    predictions, truths = _toy_set(offset_by_kpc)
    # With a third of the Hubble constant the same angles are three times as many kpc: 30 -> 90 kpc (still a
    # match), 50 -> 150 kpc (no longer one).
    result = evaluate_detections(predictions, truths, **{**PAPER, "thresholds": [0.5]},
                                 cosmology=FlatLambdaCDM(H0=71 / 3, Om0=0.27))
    assert result.truths["recovered"].tolist() == [True, False, False, False]
    assert result.truths["match_distance"][0] == pytest.approx(90, rel=1e-9)


# ---- merging detections ----

def test_merge_by_sky_distance_keeps_the_best_score_of_each_group():
    a = CENTRE
    b = a.directional_offset_by(0 * u.deg, 50 * u.arcsec)
    c_ = a.directional_offset_by(0 * u.deg, 100 * u.arcsec)  # within 60" of b, not of a
    d = a.directional_offset_by(90 * u.deg, 10 * u.arcmin)
    merged = merge_by_sky_distance(sky(b, a, c_, d, a), [0.7, 0.9, 0.6, 0.5, 0.9], 60 * u.arcsec)
    # Descending score: a (index 1) absorbs its twin (4) and b (0); c is left alone, as is d.
    assert merged.kept.tolist() == [1, 2, 3]
    assert merged.group.tolist() == [1, 1, 2, 3, 1]
    with pytest.raises(ValueError, match="2 positions but 1 scores"):
        merge_by_sky_distance(sky(a, b), [0.5], 1 * u.arcsec)


def test_merge_by_sky_distance_with_a_radius_per_detection_uses_the_keepers():
    a = CENTRE
    b = a.directional_offset_by(0 * u.deg, 50 * u.arcsec)
    # a (best) reaches 40": b stays; with b's own 60" it does not matter, a decides what it absorbs.
    merged = merge_by_sky_distance(sky(a, b), [0.9, 0.5], [40, 60] * u.arcsec)
    assert merged.kept.tolist() == [0, 1]
    merged = merge_by_sky_distance(sky(a, b), [0.9, 0.5], [60, 40] * u.arcsec)
    assert merged.kept.tolist() == [0] and merged.group.tolist() == [0, 0]
    with pytest.raises(ValueError, match="3 merging radii for 2 detections"):
        merge_by_sky_distance(sky(a, b), [0.9, 0.5], [1, 2, 3] * u.arcsec)
    with pytest.raises(ValueError, match="finite and >= 0"):
        merge_by_sky_distance(sky(a, b), [0.9, 0.5], [1, np.nan] * u.arcsec)


def test_merge_by_sky_distance_equals_greedy_suppression_on_every_pair():
    """Hundreds of crowded detections (tied scores, a radius each) against the rule written out pair by pair."""
    rng = np.random.default_rng(3)
    n = 300
    coords = CENTRE.directional_offset_by(rng.uniform(0, 360, n) * u.deg, rng.uniform(0, 300, n) * u.arcsec)
    scores = rng.choice([0.5, 0.6, 0.7, 0.8, 0.9], n)
    radius = rng.uniform(5, 40, n) * u.arcsec
    separation = coords[:, None].separation(coords[None, :]).to_value(u.arcsec)
    group = np.full(n, -1)
    for index in np.argsort(-scores, kind="stable"):
        if group[index] < 0:
            group[index] = index
            group[(group < 0) & (separation[index] <= radius[index].value)] = index
    merged = merge_by_sky_distance(coords, scores, radius)
    assert merged.group.tolist() == group.tolist()
    assert merged.kept.tolist() == [i for i in np.argsort(-scores, kind="stable") if group[i] == i]
    assert 50 < len(merged.kept) < n - 50  # crowded enough that absorbing matters

"""Matching predicted cluster centres to true ones by their distance on the sky: the 100 kpc analysis.

Deep-CEE judges a detection by where its centre lands in physical units, not by box overlap: a prediction
is a true positive when its centre lies within a proper distance (100 kpc by default) of a true cluster
centre, at the true cluster's redshift. Everything here is a pure function of sky positions, scores and
redshifts (no detectron2), so the same code serves the evaluator, the survey merge and the catalogue
cross-match.

`deepcee_d2.sky.sky_pairs` is the one matching primitive: all pairs within an angular radius, or within a
proper length at the redshifts of one side. On it stand the greedy per-image matching at a score threshold
(``greedy_match``, ``match_image``), the precision / recall / F1 table over thresholds and the centring error.
"""
from dataclasses import dataclass

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table

from ..cosmology import DEFAULT_COSMOLOGY
from ..sky import as_coords_array as _as_array_coords, sky_pairs, within as _within

# The paper's matching radius, the radius of its centring histogram and its confidence thresholds.
DEFAULT_MATCH_RADIUS = 100 * u.kpc
DEFAULT_HISTOGRAM_RADIUS = 250 * u.kpc
DEFAULT_THRESHOLDS = tuple(i / 10 for i in range(11))

# Prediction status at a threshold, in the per-prediction table of ``evaluate_detections``.
TRUE_POSITIVE, FALSE_POSITIVE, BELOW_THRESHOLD = "TP", "FP", "below threshold"


def passes_threshold(scores, threshold):
    """``scores >= threshold``, compared in single precision.

    detectron2's scores are float32: a score of 0.7 is 0.699999988 and would fail ``>= 0.7`` in double
    precision. Comparing both sides as float32 makes a score printed as 0.7 count at the 70 % threshold, and
    a score of exactly 1.0 count at 100 %.
    """
    return np.asarray(scores, dtype=np.float32) >= np.float32(threshold)


@dataclass(frozen=True)
class ImageMatch:
    """The matching of one image's predictions to its true clusters at one score threshold.

    Attributes
    ----------
    true_index : ndarray of int
        For each prediction, the index of the true cluster it matched, or -1.
    distance : `~astropy.units.Quantity`
        For each prediction, its distance to the matched true cluster (NaN when unmatched).
    selected : ndarray of bool
        For each prediction, whether its score is at or above the threshold.
    n_true : int
        Number of true clusters in the image.
    """

    true_index: np.ndarray
    distance: u.Quantity
    selected: np.ndarray
    n_true: int

    @property
    def tp(self):
        """True positives: predictions matched to a true cluster."""
        return int(np.count_nonzero(self.true_index >= 0))

    @property
    def fp(self):
        """False positives: every other prediction at or above the threshold (duplicates too)."""
        return int(np.count_nonzero(self.selected)) - self.tp

    @property
    def fn(self):
        """False negatives: true clusters left unmatched."""
        return self.n_true - self.tp

    @property
    def recovered(self):
        """For each true cluster, whether a prediction matched it."""
        recovered = np.zeros(self.n_true, dtype=bool)
        recovered[self.true_index[self.true_index >= 0]] = True
        return recovered


def greedy_match(pairs, scores, n_true, threshold, radius=DEFAULT_MATCH_RADIUS):
    """Match one image's predictions to its true clusters at a score threshold.

    The predictions with ``score >= threshold`` (see `passes_threshold`) are taken in descending score
    (ties in input order). Each takes the closest true cluster within ``radius`` that no higher-scoring
    prediction has taken, if there is one: so each true cluster is matched at most once, a confident
    prediction is never displaced by a less confident one, and duplicates around one cluster leave one true
    positive and false positives. A pair exactly at ``radius`` matches (``<=``).

    Parameters
    ----------
    pairs : SkyPairs
        From ``sky_pairs(predicted, true, r, redshift=true_z)`` with ``r >= radius`` (a larger search radius
        is fine: pairs beyond ``radius`` are ignored here).
    scores : array_like
        Prediction scores in [0, 1], one per predicted position.
    n_true : int
        Number of true clusters in the image.
    threshold : float
        Score threshold (fraction, 0 to 1).
    radius : `~astropy.units.Quantity` [length or angle]
        Matching radius, in a unit compatible with ``pairs.distance``.

    Returns
    -------
    ImageMatch
    """
    scores = np.asarray(scores, dtype=float).reshape(-1)
    if not np.all(np.isfinite(scores)):
        raise ValueError("prediction scores must be finite")
    selected = passes_threshold(scores, threshold)
    true_index = np.full(len(scores), -1, dtype=int)
    distance = np.full(len(scores), np.nan)
    # Candidates of each prediction, nearest first (pairs come sorted by distance).
    inside = _within(pairs.distance, radius)
    candidates = {}
    for a, b, d in zip(pairs.index_a[inside], pairs.index_b[inside], pairs.distance.value[inside]):
        candidates.setdefault(a, []).append((b, d))
    taken = np.zeros(n_true, dtype=bool)
    for a in np.argsort(-scores, kind="stable"):
        if not selected[a]:
            continue
        for b, d in candidates.get(a, ()):
            if not taken[b]:
                taken[b] = True
                true_index[a] = b
                distance[a] = d
                break
    return ImageMatch(true_index, distance * pairs.distance.unit, selected, int(n_true))


def match_image(pred_coords, pred_scores, true_coords, true_redshift, threshold=0.0,
                radius=DEFAULT_MATCH_RADIUS, cosmology=DEFAULT_COSMOLOGY):
    """Match one image's predicted centres to its true cluster centres at one score threshold.

    ``sky_pairs`` (proper distance at each true cluster's redshift) followed by ``greedy_match``; see
    there for the rule.

    Parameters
    ----------
    pred_coords : `~astropy.coordinates.SkyCoord`
        Predicted cluster centres (may be empty).
    pred_scores : array_like
        Their scores, fractions 0 to 1.
    true_coords : `~astropy.coordinates.SkyCoord`
        True cluster centres (may be empty).
    true_redshift : array_like
        Redshift of each true cluster.
    threshold : float
        Score threshold (fraction).
    radius : `~astropy.units.Quantity` [length]
        Matching radius, a proper length (default 100 kpc).
    cosmology : `~astropy.cosmology.FLRW`

    Returns
    -------
    ImageMatch
    """
    true_coords = _as_array_coords(true_coords, "true_coords")
    pairs = sky_pairs(pred_coords, true_coords, radius, redshift=true_redshift, cosmology=cosmology)
    return greedy_match(pairs, pred_scores, len(true_coords), threshold, radius)


def precision_recall_f1(tp, fp, fn):
    """Precision TP/(TP+FP), recall TP/(TP+FN) and F1, their harmonic mean; 0 where undefined.

    Parameters
    ----------
    tp, fp, fn : int or array_like of int
        Counts of true positives, false positives and false negatives.

    Returns
    -------
    precision, recall, f1 : ndarray of float
    """
    tp, fp, fn = (np.asarray(count, dtype=float) for count in (tp, fp, fn))
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return precision, recall, f1


def threshold_table(thresholds, tp, fp, fn):
    """The precision / recall / F1 table over score thresholds (the paper's Table 2).

    Parameters
    ----------
    thresholds : array_like
        Score thresholds (fractions 0 to 1).
    tp, fp, fn : array_like of int
        Counts at each threshold.

    Returns
    -------
    `~astropy.table.Table`
        Columns ``threshold``, ``tp``, ``fp``, ``fn``, ``precision``, ``recall``, ``f1``, one row per threshold.
    """
    precision, recall, f1 = precision_recall_f1(tp, fp, fn)
    return Table(
        [np.asarray(thresholds, dtype=float), np.asarray(tp, dtype=int), np.asarray(fp, dtype=int),
         np.asarray(fn, dtype=int), precision, recall, f1],
        names=("threshold", "tp", "fp", "fn", "precision", "recall", "f1"),
    )


def best_threshold_index(table):
    """Row of ``table`` with the highest F1; on a tie, the lowest threshold (the first such row)."""
    thresholds = np.asarray(table["threshold"])
    if len(thresholds) == 0:
        raise ValueError("the threshold table is empty")
    order = np.argsort(thresholds, kind="stable")
    return int(order[np.argmax(np.asarray(table["f1"])[order])])


def centring_error(distances):
    """Centring standard error ``sqrt(mean(d**2))`` of matched distances ``d`` (NaN when there are none).

    Parameters
    ----------
    distances : `~astropy.units.Quantity` [length]
        Distances between matched predicted and true centres (e.g. kpc).

    Returns
    -------
    `~astropy.units.Quantity` [kpc]
    """
    distances = u.Quantity(distances, u.kpc).reshape(-1)
    if len(distances) == 0:
        return np.nan * u.kpc
    return np.sqrt(np.mean(distances**2))


@dataclass(frozen=True)
class Evaluation:
    """The whole 100 kpc analysis of a set of images (see `evaluate_detections`).

    Attributes
    ----------
    table : `~astropy.table.Table`
        Precision / recall / F1 per threshold (`threshold_table`).
    best_index : int
        Row of ``table`` with the highest F1 (`best_threshold_index`).
    predictions : `~astropy.table.Table`
        One row per prediction: the input columns plus, at the best threshold, ``status`` ("TP", "FP" or
        "below threshold"), ``matched_id`` (the true cluster it matched, "" if none), ``match_distance``
        (kpc, NaN if none), and, at any score, ``nearest_id`` / ``nearest_distance`` (the closest true
        cluster within the histogram radius, "" / NaN if none).
    truths : `~astropy.table.Table`
        One row per true cluster: the input columns plus, at the best threshold, ``recovered`` (bool),
        ``match_distance`` (kpc) and ``matched_score`` (NaN if not recovered).
    match_radius, histogram_radius : `~astropy.units.Quantity` [kpc]
    cosmology : `~astropy.cosmology.FLRW`
        The cosmology of every proper distance above.
    """

    table: Table
    best_index: int
    predictions: Table
    truths: Table
    match_radius: u.Quantity
    histogram_radius: u.Quantity
    cosmology: object

    @property
    def best_threshold(self):
        """The score threshold (fraction) with the highest F1."""
        return float(self.table["threshold"][self.best_index])

    @property
    def centring_error(self):
        """``sqrt(mean(d**2))`` over the true positives at the best threshold (kpc; NaN without any)."""
        return centring_error(self.truths["match_distance"][self.truths["recovered"]])

    @property
    def histogram_distances(self):
        """Distance to the nearest true centre of every prediction at or above the best threshold that lies
        within the histogram radius of one (kpc)."""
        distance = u.Quantity(self.predictions["nearest_distance"], u.kpc)
        at_best = self.predictions["status"] != BELOW_THRESHOLD
        return distance[at_best & np.isfinite(distance)]


_PREDICTION_COLUMNS = ("image_id", "ra", "dec", "score")
_TRUTH_COLUMNS = ("image_id", "id", "ra", "dec", "z")


def _require_columns(table, columns, what):
    missing = [name for name in columns if name not in table.colnames]
    if missing:
        raise ValueError(f"{what} table lacks column(s) {missing}; it has {table.colnames}")


def _sky(table):
    return SkyCoord(u.Quantity(table["ra"], u.deg), u.Quantity(table["dec"], u.deg), frame="icrs")


def evaluate_detections(predictions, truths, thresholds=DEFAULT_THRESHOLDS, match_radius=DEFAULT_MATCH_RADIUS,
                        histogram_radius=DEFAULT_HISTOGRAM_RADIUS, cosmology=DEFAULT_COSMOLOGY):
    """Match predictions to true clusters image by image at every threshold; tabulate P / R / F1.

    Parameters
    ----------
    predictions : `~astropy.table.Table`
        One row per predicted cluster centre: ``image_id``, ``ra``, ``dec`` (deg, ICRS), ``score``
        (fraction); other columns are carried through.
    truths : `~astropy.table.Table`
        One row per true cluster in the evaluated images: ``image_id``, ``id``, ``ra``, ``dec`` (deg), ``z``;
        other columns (``richness``, ``bcg_rmag``, ...) are carried through. Images with no cluster or no
        prediction simply have no rows in one of the tables.
    thresholds : sequence of float
        Score thresholds (fractions); default 0, 0.1, ..., 1.
    match_radius : `~astropy.units.Quantity` [length]
        Proper distance at the true cluster's redshift within which a prediction matches (default 100 kpc).
    histogram_radius : `~astropy.units.Quantity` [length]
        Radius of the centring histogram (default 250 kpc).
    cosmology : `~astropy.cosmology.FLRW`

    Returns
    -------
    Evaluation

    Raises
    ------
    ValueError
        When a table lacks a required column, a score is not finite, or a true redshift is not finite and
        positive.
    """
    _require_columns(predictions, _PREDICTION_COLUMNS, "predictions")
    _require_columns(truths, _TRUTH_COLUMNS, "truths")
    thresholds = np.asarray(thresholds, dtype=float).reshape(-1)
    if len(thresholds) == 0:
        raise ValueError("no score thresholds given")
    match_radius = u.Quantity(match_radius, u.kpc)
    histogram_radius = u.Quantity(histogram_radius, u.kpc)
    search_radius = max(match_radius, histogram_radius)
    scores = np.asarray(predictions["score"], dtype=float)
    pred_coords, true_coords = _sky(predictions), _sky(truths)
    true_z = np.asarray(truths["z"], dtype=float)

    # Rows of each image in both tables, in one pass over each (ids as Python objects compare alike whatever
    # dtype each table gave them).
    rows_of = {}
    for side, table in enumerate((predictions, truths)):
        for row, image_id in enumerate(np.asarray(table["image_id"]).tolist()):
            rows_of.setdefault(image_id, ([], []))[side].append(row)
    images = []  # (prediction rows, truth rows, pairs) per image that has either
    for image_id, (pred_rows, true_rows) in rows_of.items():
        pred_rows, true_rows = np.asarray(pred_rows, dtype=int), np.asarray(true_rows, dtype=int)
        try:
            pairs = sky_pairs(pred_coords[pred_rows], true_coords[true_rows], search_radius,
                              redshift=true_z[true_rows], cosmology=cosmology)
        except ValueError as error:
            raise ValueError(f"image {image_id}: {error}") from None
        images.append((pred_rows, true_rows, pairs))

    counts = np.zeros((len(thresholds), 3), dtype=int)
    for pred_rows, true_rows, pairs in images:
        for row, threshold in enumerate(thresholds):
            match = greedy_match(pairs, scores[pred_rows], len(true_rows), threshold, match_radius)
            counts[row] += (match.tp, match.fp, match.fn)
    table = threshold_table(thresholds, *counts.T)
    best = best_threshold_index(table)

    status = np.full(len(predictions), BELOW_THRESHOLD, dtype=object)
    matched_id = np.full(len(predictions), "", dtype=object)
    match_distance = np.full(len(predictions), np.nan)
    nearest_id = np.full(len(predictions), "", dtype=object)
    nearest_distance = np.full(len(predictions), np.nan)
    recovered = np.zeros(len(truths), dtype=bool)
    true_distance = np.full(len(truths), np.nan)
    matched_score = np.full(len(truths), np.nan)
    true_ids = np.asarray(truths["id"]).astype(str)
    for pred_rows, true_rows, pairs in images:
        match = greedy_match(pairs, scores[pred_rows], len(true_rows), thresholds[best], match_radius)
        status[pred_rows[match.selected]] = FALSE_POSITIVE
        hits = match.true_index >= 0
        status[pred_rows[hits]] = TRUE_POSITIVE
        matched_id[pred_rows[hits]] = true_ids[true_rows[match.true_index[hits]]]
        match_distance[pred_rows[hits]] = match.distance[hits].to_value(u.kpc)
        recovered[true_rows[match.true_index[hits]]] = True
        true_distance[true_rows[match.true_index[hits]]] = match.distance[hits].to_value(u.kpc)
        matched_score[true_rows[match.true_index[hits]]] = scores[pred_rows[hits]]
        # Pairs come nearest first, so the first pair of each prediction is its nearest true cluster.
        near = _within(pairs.distance, histogram_radius)
        first_a, first = np.unique(pairs.index_a[near], return_index=True)
        nearest_id[pred_rows[first_a]] = true_ids[true_rows[pairs.index_b[near][first]]]
        nearest_distance[pred_rows[first_a]] = pairs.distance[near][first].to_value(u.kpc)

    predictions = Table(predictions, copy=True)
    predictions["status"] = status.astype(str)
    predictions["matched_id"] = matched_id.astype(str)
    predictions["match_distance"] = match_distance * u.kpc
    predictions["nearest_id"] = nearest_id.astype(str)
    predictions["nearest_distance"] = nearest_distance * u.kpc
    truths = Table(truths, copy=True)
    truths["recovered"] = recovered
    truths["match_distance"] = true_distance * u.kpc
    truths["matched_score"] = matched_score
    return Evaluation(table, best, predictions, truths, match_radius, histogram_radius, cosmology)

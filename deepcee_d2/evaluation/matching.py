"""Matching predicted cluster centres to true ones by their distance on the sky: the 100 kpc analysis.

Deep-CEE judges a detection by where its centre lands in physical units, not by box overlap: a prediction
is a true positive when its centre lies within a proper distance (100 kpc by default) of a true cluster
centre, at the true cluster's redshift. Everything here is a pure function of sky positions, scores and
redshifts (no detectron2), so the same code serves the evaluator, the survey merge and the catalogue
cross-match.

`deepcee_d2.sky.sky_pairs` is the one matching primitive: all pairs within an angular radius, or within a
proper length at the redshifts of one side. On it stand the maximum one-to-one matching per image at a score
threshold (``one_to_one_match``, ``match_image``), the precision / recall / F1 table over thresholds and the
centring error. The radii, thresholds and cosmology are arguments; their defaults live in
``deepcee_d2.config`` (``DEEPCEE.EVAL``, ``DEEPCEE.COSMOLOGY``).
"""
from dataclasses import dataclass

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table
from scipy.optimize import linear_sum_assignment

from ..cosmology import DEFAULT_COSMOLOGY
from ..sky import as_coords_array, sky_pairs, within


# Prediction status at a threshold, in the per-prediction table of ``evaluate_detections``.
TRUE_POSITIVE, FALSE_POSITIVE, BELOW_THRESHOLD = "TP", "FP", "below threshold"


def passes_threshold(scores, threshold):
    """``scores > threshold`` (the paper counts a detection "greater than" the threshold), in single precision.

    detectron2's scores are float32: comparing both sides as float32 judges a score by the value the model
    gave, so a score of exactly 1.0 (a saturated float32 sigmoid) does not count at the 100 % threshold, and
    a score printed as 0.7 does not count at 70 %.
    """
    return np.asarray(scores, dtype=np.float32) > np.float32(threshold)


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
        For each prediction, whether its score is above the threshold.
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
        """False positives: every other prediction above the threshold (duplicates too)."""
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


def one_to_one_match(pairs, scores, n_true, threshold, radius):
    """Match one image's predictions to its true clusters at a score threshold, one to one.

    Of the predictions with ``score > threshold`` (see `passes_threshold`) and the true clusters, pairs closer
    than ``radius`` (inclusive) may match; each prediction and each true cluster matches at most once. The
    matching has the most pairs possible (a maximum bipartite matching), so two clusters within twice the
    radius of each other, each with a prediction near it, give two true positives even when one prediction
    lies closer to the other's cluster. Among the matchings with the most pairs it is the one with the
    smallest total distance (`scipy.optimize.linear_sum_assignment`). Why distance, not score: above the
    threshold every prediction is a detection alike in the paper's counts, so scores should not decide which
    of them is the true positive; the distance is what the match measures, and the centring error is then
    that of the closest valid pairing. Every other selected prediction (a duplicate, say) is a false positive.

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

    Raises
    ------
    ValueError
        When a score is not finite.
    """
    scores = np.asarray(scores, dtype=float).reshape(-1)
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"prediction scores must be finite, got {scores[~np.isfinite(scores)][:5]}")
    selected = passes_threshold(scores, threshold)
    true_index = np.full(len(scores), -1, dtype=int)
    distance = np.full(len(scores), np.nan)
    allowed = within(pairs.distance, radius) & selected[pairs.index_a]
    if allowed.any():
        # Assignment over the predictions and clusters that have a candidate pair. An allowed pair costs its
        # distance in units of the radius (at most ~1); a forbidden one costs more than any set of allowed
        # pairs together, so the cheapest assignment first has the most allowed pairs, then the least distance.
        radius = u.Quantity(radius).to_value(pairs.distance.unit)
        pair_distance = pairs.distance.value[allowed]
        rows, row_of_pair = np.unique(pairs.index_a[allowed], return_inverse=True)
        columns, column_of_pair = np.unique(pairs.index_b[allowed], return_inverse=True)
        forbidden = 2.0 * min(len(rows), len(columns)) + 1.0
        cost = np.full((len(rows), len(columns)), forbidden)
        cost[row_of_pair, column_of_pair] = pair_distance / radius if radius > 0 else 0.0
        pair_at = np.full(cost.shape, -1)
        pair_at[row_of_pair, column_of_pair] = np.arange(len(pair_distance))
        matched_rows, matched_columns = linear_sum_assignment(cost)
        matched = pair_at[matched_rows, matched_columns]
        matched = matched[matched >= 0]
        true_index[rows[row_of_pair[matched]]] = columns[column_of_pair[matched]]
        distance[rows[row_of_pair[matched]]] = pair_distance[matched]
    return ImageMatch(true_index, distance * pairs.distance.unit, selected, int(n_true))


def match_image(pred_coords, pred_scores, true_coords, true_redshift, threshold, radius, cosmology=DEFAULT_COSMOLOGY):
    """Match one image's predicted centres to its true cluster centres at one score threshold.

    ``sky_pairs`` (proper distance at each true cluster's redshift) followed by ``one_to_one_match``; see
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
        Matching radius, a proper length (``DEEPCEE.EVAL.MATCH_RADIUS_KPC``: 100 kpc).
    cosmology : `~astropy.cosmology.FLRW`

    Returns
    -------
    ImageMatch
    """
    true_coords = as_coords_array(true_coords, "true_coords")
    pairs = sky_pairs(pred_coords, true_coords, radius, redshift=true_redshift, cosmology=cosmology)
    return one_to_one_match(pairs, pred_scores, len(true_coords), threshold, radius)


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
        """Distance to the nearest true centre of every prediction above the best threshold that lies within
        the histogram radius of one (kpc)."""
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


def _rows_by_image(predictions, truths):
    """``{image_id: (prediction rows, truth rows)}``, refusing tables whose ids are of different kinds.

    Ids compare as Python objects (so int64 and int, or two string dtypes, compare alike); an integer id and a
    string id never name the same image, so a mix (e.g. ``3`` against ``"3"``) is refused rather than left
    to match nothing.
    """
    rows_of, kinds = {}, {}
    for side, (table, what) in enumerate(((predictions, "predictions"), (truths, "truths"))):
        for row, image_id in enumerate(np.asarray(table["image_id"]).tolist()):
            kinds.setdefault("string" if isinstance(image_id, str) else "number", (what, image_id))
            rows_of.setdefault(image_id, ([], []))[side].append(row)
    if len(kinds) > 1:
        examples = ", ".join(f"{what} has {image_id!r} ({kind})" for kind, (what, image_id) in kinds.items())
        raise ValueError(f"image_id must be all numbers or all strings in both tables, but {examples}; give "
                         f"predictions and truths the same kind of image id")
    return rows_of


def evaluate_detections(predictions, truths, *, thresholds, match_radius, histogram_radius,
                        cosmology=DEFAULT_COSMOLOGY, redshift_tolerance=None):
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
        Score thresholds (fractions; ``DEEPCEE.EVAL.SCORE_THRESHOLDS``: 0, 0.1, ..., 1).
    match_radius : `~astropy.units.Quantity` [length]
        Proper distance at the true cluster's redshift within which a prediction matches
        (``DEEPCEE.EVAL.MATCH_RADIUS_KPC``: 100 kpc).
    histogram_radius : `~astropy.units.Quantity` [length]
        Radius of the centring histogram (``DEEPCEE.EVAL.HISTOGRAM_RADIUS_KPC``: 250 kpc).
    cosmology : `~astropy.cosmology.FLRW`
    redshift_tolerance : float, optional
        The stricter criterion (``DEEPCEE.EVAL.REQUIRE_REDSHIFT_MATCH``): a prediction matches a true cluster
        only when also ``|z_est - z| / (1 + z) < redshift_tolerance``, with ``z_est`` a column of
        ``predictions`` (NaN matches nothing). The centring histogram is unchanged.

    Returns
    -------
    Evaluation

    Raises
    ------
    ValueError
        When a table lacks a required column, a score is not finite (naming the image), a true redshift is not
        finite and positive, or one table's image ids are numbers and the other's strings.
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
    if not np.all(np.isfinite(scores)):
        bad = np.flatnonzero(~np.isfinite(scores))
        raise ValueError(f"{len(bad)} prediction score(s) are not finite, e.g. {scores[bad[0]]} in image "
                         f"{np.asarray(predictions['image_id']).tolist()[bad[0]]!r}")
    pred_coords, true_coords = _sky(predictions), _sky(truths)
    true_z = np.asarray(truths["z"], dtype=float)
    if redshift_tolerance is not None:
        _require_columns(predictions, ("z_est",), "predictions (the stricter criterion needs z_est)")
        z_est = np.asarray(predictions["z_est"], dtype=float)

    images = []  # (prediction rows, truth rows, pairs) per image that has either
    for image_id, (pred_rows, true_rows) in _rows_by_image(predictions, truths).items():
        pred_rows, true_rows = np.asarray(pred_rows, dtype=int), np.asarray(true_rows, dtype=int)
        try:
            pairs = sky_pairs(pred_coords[pred_rows], true_coords[true_rows], search_radius,
                              redshift=true_z[true_rows], cosmology=cosmology)
        except ValueError as error:
            raise ValueError(f"image {image_id}: {error}") from None
        images.append((pred_rows, true_rows, pairs))

    def matchable(pred_rows, true_rows, pairs):
        """The pairs that may match: all, or those whose redshifts agree too (the stricter criterion)."""
        if redshift_tolerance is None:
            return pairs
        z = true_z[true_rows][pairs.index_b]
        with np.errstate(invalid="ignore"):
            agree = np.abs(z_est[pred_rows][pairs.index_a] - z) / (1 + z) < redshift_tolerance
        return type(pairs)(*(field[agree] for field in pairs))

    counts = np.zeros((len(thresholds), 3), dtype=int)
    for pred_rows, true_rows, pairs in images:
        for row, threshold in enumerate(thresholds):
            match = one_to_one_match(matchable(pred_rows, true_rows, pairs), scores[pred_rows], len(true_rows),
                                     threshold, match_radius)
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
        match = one_to_one_match(matchable(pred_rows, true_rows, pairs), scores[pred_rows], len(true_rows),
                                 thresholds[best], match_radius)
        status[pred_rows[match.selected]] = FALSE_POSITIVE
        hits = match.true_index >= 0
        status[pred_rows[hits]] = TRUE_POSITIVE
        matched_id[pred_rows[hits]] = true_ids[true_rows[match.true_index[hits]]]
        match_distance[pred_rows[hits]] = match.distance[hits].to_value(u.kpc)
        recovered[true_rows[match.true_index[hits]]] = True
        true_distance[true_rows[match.true_index[hits]]] = match.distance[hits].to_value(u.kpc)
        matched_score[true_rows[match.true_index[hits]]] = scores[pred_rows[hits]]
        # Pairs come nearest first, so the first pair of each prediction is its nearest true cluster.
        near = within(pairs.distance, histogram_radius)
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

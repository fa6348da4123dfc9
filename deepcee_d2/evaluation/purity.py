"""Purity of a survey's candidate catalogue: false candidates per deg^2 at each score threshold.

A survey user reads a catalogue, not a test split: what matters beside recall is how many of its candidates
are not clusters, per unit area. On sky without clusters every candidate is false. With known truth (a
synthetic sky, injected clusters), a candidate is true when it is the best-scored one within the cross-match
radius of a true cluster (`deepcee_d2.evaluation.crossmatch`, the survey's own ``known`` flag); the others
are false, pieces of a found cluster ("duplicates") included, and each true cluster should be found exactly
once. A candidate counts at threshold ``t`` when its score is ``>= t``, the survey's own cut
(``DEEPCEE.SURVEY.SCORE_THRESHOLD``).

`survey_false_rates` re-merges a survey run's tile files (kept down to ``DEEPCEE.SURVEY.KEEP_SCORE_FLOOR``),
so the rate is known below the threshold the run applied; `choose_score_threshold` picks the lowest
threshold meeting a target rate (``DEEPCEE.SURVEY.TARGET_FALSE_PER_DEG2``; ``tools/choose_threshold.py``).
`paired_recall_difference` compares the recall of the same injected clusters on two backgrounds.
"""
import json
import math
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table
from scipy.stats import binomtest, norm

from ..cosmology import DEFAULT_COSMOLOGY, cosmology_from_cfg
from .crossmatch import crossmatch_false_positives, read_reference_catalog

# The survey catalogue's metadata key for the searched area in deg^2, when the survey records it.
AREA_KEY = "AREADEG2"
# Where a true cluster is lost on the way to the catalogue (`loss_stages`): found, or the last step it passed.
LOSS_STAGES = ("found", "not detected", "crowded sky", "no red sequence", "percolated", "merged away")


def truth_in_window(truth, z_range):
    """The true clusters of ``truth`` (read by `~deepcee_d2.evaluation.crossmatch.read_reference_catalog`) with
    ``z_range[0] < z < z_range[1]``."""
    truth = read_reference_catalog(truth, name="truth")
    return truth[(truth["z"] > z_range[0]) & (truth["z"] < z_range[1])]


def match_truth(candidates, truth, radius, z_range, cosmology=DEFAULT_COSMOLOGY):
    """``candidates`` cross-matched with the true clusters of the redshift window
    (`~deepcee_d2.evaluation.crossmatch.crossmatch_false_positives`: ``known``, ``catalog_id``, ...), and those
    true clusters (``truth`` read by `~deepcee_d2.evaluation.crossmatch.read_reference_catalog`; an empty
    Table when every true cluster lies on masked sky)."""
    if isinstance(truth, Table) and not len(truth):
        return candidates, truth
    truth = truth_in_window(truth, z_range)
    return crossmatch_false_positives(candidates, {"truth": truth}, radius=radius, z_range=z_range,
                                      cosmology=cosmology), truth


def match_known(candidates, known, radius, z_range, cosmology=DEFAULT_COSMOLOGY):
    """The candidates' positions (and ``z_est``) cross-matched with catalogues of clusters ``known`` on the sky
    searched (`~deepcee_d2.evaluation.crossmatch.crossmatch_false_positives`: ``known``, ``catalog_id``, ...;
    one without a redshift at the candidate's ``z_est``). A candidate on a real cluster that the truth of an
    injection test, or of sky taken to be without clusters, lacks is not a false one (BENCHMARKS.md, "A known
    X-ray cluster on the shared frames")."""
    columns = [name for name in ("ra", "dec", "z_est") if name in candidates.colnames]
    return crossmatch_false_positives(candidates[columns], known, radius=radius, z_range=z_range,
                                      cosmology=cosmology)


def _cluster_ids(candidates):
    """The cross-matched cluster of each candidate; without ``catalog_id`` every candidate is its own."""
    if "catalog_id" in candidates.colnames:
        return np.asarray(candidates["catalog_id"]).astype(str)
    return np.arange(len(candidates)).astype(str)


def true_candidates(candidates):
    """Which candidates are true: cross-matched with a cluster (``known``, as `match_truth` or the survey's
    cross-match flags them) and the best-scored candidate of that cluster (``catalog_id``; ties to the first
    in the table). Every other candidate is false, the further candidates of a found cluster included. As
    cutting at a score keeps a cluster's best candidate whenever it keeps any, a candidate's flag holds at
    every threshold it passes."""
    true = np.zeros(len(candidates), dtype=bool)
    if "known" not in candidates.colnames or not len(candidates):
        return true
    known = np.flatnonzero(np.asarray(candidates["known"], dtype=bool))
    order = known[np.argsort(-np.asarray(candidates["score"], dtype=float)[known], kind="stable")]
    true[order[np.unique(_cluster_ids(candidates)[order], return_index=True)[1]]] = True
    return true


def false_rate_table(candidates, area, thresholds, truth=None, *, radius=None, z_range=None,
                     cosmology=DEFAULT_COSMOLOGY, known_clusters=None):
    """False candidates per deg^2 at each score threshold, and with ``truth`` how each true cluster is found.

    Parameters
    ----------
    candidates : `~astropy.table.Table`
        A merged candidate catalogue with ``ra``, ``dec`` (deg) and ``score``. Without ``truth`` it needs the
        survey cross-match's ``known`` flag (and ``catalog_id``, to tell duplicates) or it is taken to be sky
        without clusters, where every candidate is false (say so with ``known=False`` or no truth at all).
    area : float
        The searched area in deg^2 (> 0).
    thresholds : sequence of float
        Score thresholds; a candidate counts when ``score >= threshold``.
    truth : path or `~astropy.table.Table`, optional
        The true clusters (``ra``, ``dec``, ``z``, ``id``), read by
        `~deepcee_d2.evaluation.crossmatch.read_reference_catalog`; the candidates are cross-matched with it
        (``radius``, ``z_range`` then required: ``DEEPCEE.EVAL.CROSSMATCH_RADIUS_KPC``, ``CROSSMATCH_Z_RANGE``).
    radius : `~astropy.units.Quantity` [length], optional
    z_range : (float, float), optional
    cosmology : `~astropy.cosmology.FLRW`
    known_clusters : path, Table, or a list or dict of them, optional
        Catalogues of real clusters on the sky searched (`match_known`; ``radius`` and ``z_range`` then
        required): a candidate on one that is not a true one counts in ``n_on_known``, not as false.

    Returns
    -------
    `~astropy.table.Table`
        One row per threshold: ``threshold``, ``n_candidates``, ``n_false`` (not the best-scored candidate of
        a true cluster), ``n_duplicate`` (of which: near a cluster a better candidate already found),
        ``false_per_deg2``; with truth also ``n_true``, ``n_found``, ``n_found_once`` (true clusters with
        exactly one candidate) and ``completeness``; with ``known_clusters`` also ``n_on_known``. ``meta['AREADEG2']``
        holds the area.

    Raises
    ------
    ValueError
        For a non-positive area, a missing column, or truth without radius and redshift window.
    """
    if not (np.isfinite(area) and area > 0):
        raise ValueError(f"the searched area must be a positive number of deg^2, got {area}")
    missing = [name for name in ("ra", "dec", "score") if name not in candidates.colnames]
    if missing:
        raise ValueError(f"candidate catalogue lacks column(s) {missing}; it has {candidates.colnames}")
    n_true = None
    if (truth is not None or known_clusters is not None) and (radius is None or z_range is None):
        raise ValueError("cross-matching with the truth or known clusters needs its radius and redshift window")
    if truth is not None:
        candidates, truth = match_truth(candidates, truth, radius, z_range, cosmology)
        n_true = len(truth)
    scores = np.asarray(candidates["score"], dtype=float)
    true = true_candidates(candidates)
    on_known = None
    if known_clusters is not None:
        matched = match_known(candidates, known_clusters, radius, z_range, cosmology)
        on_known = ~true & np.asarray(matched["known"], dtype=bool)
    known = (np.asarray(candidates["known"], dtype=bool) if "known" in candidates.colnames
             else np.zeros(len(candidates), dtype=bool))
    ids = _cluster_ids(candidates)
    rows = []
    for threshold in thresholds:
        selected = scores >= threshold
        n_found = int(np.count_nonzero(selected & true))
        false = selected & ~true if on_known is None else selected & ~true & ~on_known
        n_false = int(np.count_nonzero(false))
        row = {"threshold": float(threshold), "n_candidates": int(np.count_nonzero(selected)), "n_false": n_false,
               "n_duplicate": int(np.count_nonzero(false & known)), "false_per_deg2": n_false / area}
        if on_known is not None:
            row["n_on_known"] = int(np.count_nonzero(selected & on_known))
        if n_true is not None:
            counts = np.unique(ids[selected & known], return_counts=True)[1]
            row.update(n_true=n_true, n_found=n_found, n_found_once=int(np.count_nonzero(counts == 1)),
                       completeness=n_found / n_true if n_true else math.nan)
        rows.append(row)
    table = Table(rows=rows) if rows else Table(names=("threshold",))
    table.meta[AREA_KEY] = float(area)
    return table


def blank_image_false_rates(predictions, records, thresholds):
    """False detections per deg^2 on the blank images of a test split (images made around a data set's blank
    targets, holding no cluster: every detection on them is false), at each threshold; None without such images.

    Parameters
    ----------
    predictions : `~astropy.table.Table`
        ``image_id``, ``ra``, ``dec``, ``score`` of every detection.
    records : sequence of dict
        The evaluated images' dataset dicts (``blank``, ``annotations``, ``height``, ``width``, ``pixel_scale``).
    thresholds : sequence of float

    Returns
    -------
    dict or None
        ``n_images``, ``area_deg2`` and ``rates``: rows of `false_rate_table` (``threshold``, ``n_false``,
        ``false_per_deg2``). Detections are counted as the network gives them, before any survey merging.
    """
    blank = [record for record in records if record.get("blank") and not record.get("annotations")]
    if not blank:
        return None
    area = sum(record["height"] * record["width"] * (record["pixel_scale"] * u.arcsec) ** 2
               for record in blank).to_value(u.deg**2)
    on_blank = predictions[np.isin(np.asarray(predictions["image_id"]), [record["image_id"] for record in blank])]
    rates = false_rate_table(on_blank, area, thresholds)
    return {"n_images": len(blank), "area_deg2": float(area),
            "rates": [{"threshold": float(row["threshold"]), "n_false": int(row["n_false"]),
                       "false_per_deg2": float(row["false_per_deg2"])} for row in rates]}


def choose_score_threshold(rates, target):
    """The lowest threshold of a `false_rate_table` whose ``false_per_deg2`` is at most ``target``, or None
    when none is. The rate cannot rise with the threshold, so every higher threshold meets it too."""
    meets = np.asarray(rates["false_per_deg2"]) <= target
    return float(np.min(np.asarray(rates["threshold"])[meets])) if meets.any() else None


def fields_area(root, reference_band="r"):
    """Area in deg^2 imaged in every band of the fields of a folder of frames
    (`deepcee_d2.survey.tiling.imaged_area`): the survey's searched area when its tiles cover its fields."""
    from ..data.frames import LocalFITSSource
    from ..survey.tiling import imaged_area

    source = LocalFITSSource(root)
    area = imaged_area(source.scan()[0], source.root, reference_band)
    if area == 0:
        raise ValueError(f"{root}: no {reference_band}-band frames to measure the searched area on")
    return area


def read_tile_detections(survey_dir):
    """The detections and the tiles of every tile file of a survey run (``<survey_dir>/tiles/*.ecsv``,
    `~deepcee_d2.survey.run.read_tile_files`; no detections when no tile found anything) and the lowest score
    the tiles kept (``manifest.json``'s ``score_threshold``)."""
    from ..survey.run import read_tile_files

    survey_dir = Path(survey_dir)
    manifest = survey_dir / "manifest.json"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest}: not found; {survey_dir} is not the output of a survey run")
    floor = float(json.loads(manifest.read_text())["score_threshold"])
    detections, tiles = read_tile_files(sorted((survey_dir / "tiles").glob("*.ecsv")))
    return detections, tiles, floor


def survey_false_rates(survey_dir, cfg, thresholds, truth=None, area=None, frames=None, known_clusters=None):
    """`false_rate_table` of a survey run, re-merged from its tile files as ``cfg``'s survey makes its catalogue
    (`~deepcee_d2.survey.run.merged_candidates`: crowded-sky mask, red-sequence confirmation, merging): the
    detections of crowded tiles are left out, and so are the true clusters that lie in no searched tile
    (completeness over the searched sky, as surveys quote it; ``meta['NMASKTRU']`` counts them).

    Parameters
    ----------
    survey_dir : str or Path
        A `~deepcee_d2.survey.run.find_clusters` output folder.
    cfg : CfgNode
        Deep-CEE config: ``DEEPCEE.SURVEY`` merging, ``DEEPCEE.EVAL`` cross-match radius and window, cosmology.
    thresholds : sequence of float
        Thresholds below the run's tile floor are refused: the tiles do not hold those detections.
    truth : path or Table, optional
        The true clusters; without it the sky is taken to hold none (every candidate false).
    area : float, optional
        Searched area in deg^2; default the candidate catalogue's ``meta['AREADEG2']`` when the run masked
        the same tiles, else the searched area of ``frames`` (the folder of frames the survey ran on).
    known_clusters : path, Table, or a list or dict of them, optional
        Catalogues of real clusters on the sky searched: candidates on them are not false (`false_rate_table`).

    Raises
    ------
    ValueError
        Thresholds below the tiles' floor; no area to be had; tiles masked whose centres the tile files do not
        record (written before the mask), so the searched sky is unknown.
    """
    from ..survey.run import merged_candidates, tiles_of
    from ..survey.tiling import crowded, field_coverage, inside_tiles, tile_geometry

    survey = cfg.DEEPCEE.SURVEY
    detections, tiles, floor = read_tile_detections(survey_dir)
    low = [t for t in thresholds if t < floor]
    if low:
        raise ValueError(f"{survey_dir}: its tiles keep detections >= {floor} only, so thresholds {low} cannot be "
                         "measured; rerun with a lower DEEPCEE.SURVEY.KEEP_SCORE_FLOOR")
    masked = crowded(tiles["source_density"], survey.MAX_SOURCE_DENSITY)
    if masked.any() and not np.isfinite(np.asarray(tiles["ra"], dtype=float)).all():
        raise ValueError(f"{survey_dir}: {int(masked.sum())} tiles are crowded sky, but tile files written before "
                         "the mask do not record their centres; rerun the survey into a new folder, or set "
                         "DEEPCEE.SURVEY.MAX_SOURCE_DENSITY 0.0")
    searched_tiles, side = tiles_of(tiles[~masked]), tile_geometry(cfg)[0]
    if area is None:
        catalogue = Path(survey_dir) / "candidates.ecsv"
        meta = Table.read(catalogue).meta if catalogue.is_file() else {}
        # The catalogue's area is this mask's when it was made with the same limit (or neither masked anything).
        same_mask = (float(meta.get("MAXSRCD", 0.0)) == survey.MAX_SOURCE_DENSITY
                     or (not masked.any() and not int(meta.get("NCROWDED", 0))))
        if AREA_KEY in meta and same_mask:
            area = float(meta[AREA_KEY])
        elif frames is not None and masked.any():
            from ..data.frames import LocalFITSSource

            source = LocalFITSSource(frames)
            area = float(np.sum(field_coverage(source.scan()[0], source.root, searched_tiles, side)["searched_deg2"]))
        elif frames is not None:
            area = fields_area(frames)
        else:
            raise ValueError(f"{survey_dir}: the catalogue records no searched area ({AREA_KEY}) for this mask; "
                             "give the area or the folder of frames the survey ran on")
    merged = merged_candidates(detections, cfg)
    n_masked_truth = 0
    if truth is not None and masked.any():
        truth = read_reference_catalog(truth, name="truth")
        searched = inside_tiles(SkyCoord(truth["ra"], truth["dec"], unit=u.deg), searched_tiles, side)
        truth, n_masked_truth = truth[searched], int(np.count_nonzero(~searched))
    evaluation = cfg.DEEPCEE.EVAL
    rates = false_rate_table(merged, area, thresholds, truth, radius=evaluation.CROSSMATCH_RADIUS_KPC * u.kpc,
                             z_range=tuple(evaluation.CROSSMATCH_Z_RANGE), cosmology=cosmology_from_cfg(cfg),
                             known_clusters=known_clusters)
    rates.meta["NMASKTRU"] = n_masked_truth
    return rates


def loss_stages(detections, truth, cfg, threshold):
    """Where a survey lost each true cluster at ``threshold``: the step of the catalogue's making
    (`~deepcee_d2.survey.run.merged_candidates`) after which no detection of it scoring ``threshold`` or more
    is left, so an injection-recovery test tells the detector's misses from the confirmation's.

    A detection is the cluster's when it lies within ``DEEPCEE.EVAL.CROSSMATCH_RADIUS_KPC`` (proper, at the
    cluster's z) of it. The stages, in the order the survey applies them (`LOSS_STAGES`):

    - ``found``: a candidate scoring ``threshold`` or more is the cluster's best one (`true_candidates`);
    - ``not detected``: no detection of it scores ``threshold`` or more;
    - ``crowded sky``: those detections lie on masked tiles (``DEEPCEE.SURVEY.MAX_SOURCE_DENSITY``);
    - ``no red sequence``: none shows a red-sequence peak (``DEEPCEE.SURVEY.REQUIRE_RED_SEQUENCE``);
    - ``percolated``: their peaks are explained by a richer cluster around (``DEEPCEE.SURVEY.PERCOLATE``);
    - ``merged away``: a detection of it is listable, but the candidate that absorbed it lies further away
      (a better-scored detection within ``DEEPCEE.SURVEY.MERGE_RADIUS_KPC``: a bright member, a neighbour).

    Parameters
    ----------
    detections : `~astropy.table.Table`
        A survey's tile detections (`read_tile_detections`), with the red-sequence scans when it percolates.
    truth : path or `~astropy.table.Table`
        The true clusters (``ra``, ``dec``, ``z``, ``id``), read by
        `~deepcee_d2.evaluation.crossmatch.read_reference_catalog`.
    cfg : CfgNode
    threshold : float

    Returns
    -------
    `~astropy.table.Table`
        The true clusters of ``DEEPCEE.EVAL.CROSSMATCH_Z_RANGE`` with ``stage`` and ``best_score`` (the highest
        score of a detection of it at any stage; NaN when none was kept).
    """
    from ..sky import sky_pairs
    from ..survey.run import listable, merged_percolated, percolated
    from ..survey.tiling import crowded

    evaluation, survey = cfg.DEEPCEE.EVAL, cfg.DEEPCEE.SURVEY
    radius, cosmology = evaluation.CROSSMATCH_RADIUS_KPC * u.kpc, cosmology_from_cfg(cfg)
    truth = truth_in_window(truth, evaluation.CROSSMATCH_Z_RANGE)
    stages = np.full(len(truth), LOSS_STAGES[1], dtype=object)
    best_score = np.full(len(truth), np.nan)
    if len(truth) and len(detections):
        truth_coords = SkyCoord(truth["ra"], truth["dec"], unit=u.deg)
        pairs = sky_pairs(SkyCoord(np.asarray(detections["ra"], float), np.asarray(detections["dec"], float),
                                   unit=u.deg), truth_coords, radius, redshift=np.asarray(truth["z"], float),
                          cosmology=cosmology)
        scores = np.asarray(detections["score"], dtype=float)
        np.fmax.at(best_score, pairs.index_b, scores[pairs.index_a])
        # Each later test keeps the detections that passed the earlier ones, as the survey does.
        percolated_peaks = percolated(detections, cfg)
        passed = [scores >= threshold,
                  ~crowded(detections["source_density"], survey.MAX_SOURCE_DENSITY),
                  listable(detections, cfg), listable(percolated_peaks, cfg)]
        for stage, keep in zip(LOSS_STAGES[2:], np.logical_and.accumulate(passed)):
            has = np.zeros(len(truth), dtype=bool)
            has[pairs.index_b[keep[pairs.index_a]]] = True
            stages[has] = stage
        merged = merged_percolated(percolated_peaks, cfg)
        merged = merged[np.asarray(merged["score"], dtype=float) >= threshold]
        if len(merged):
            matched, _ = match_truth(merged, truth, radius, tuple(evaluation.CROSSMATCH_Z_RANGE), cosmology)
            found = np.asarray(matched["catalog_id"]).astype(str)[true_candidates(matched)]
            stages[np.isin(np.asarray(truth["id"]).astype(str), found)] = LOSS_STAGES[0]
    truth["stage"], truth["best_score"] = stages.astype(str), best_score
    return truth


def paired_recall_difference(found_a, found_b, confidence=0.95):
    """The recall of the same clusters found (or not) on two backgrounds, or by two models, compared cluster by
    cluster: only the clusters found on one side and not the other say anything about the difference.

    Parameters
    ----------
    found_a, found_b : array_like of bool
        Whether each cluster was found on each side (same clusters, same order).
    confidence : float
        Of the interval.

    Returns
    -------
    dict
        ``n``; ``only_a``, ``only_b`` (the discordant clusters); ``difference``, recall a minus recall b;
        ``half_width``, of its two-sided ``confidence`` interval (Wald's for a paired difference of proportions,
        ``z sqrt(only_a + only_b - (only_a - only_b)^2 / n) / n``); ``pvalue``, McNemar's exact test that both
        sides have the same recall (the binomial test of ``only_a`` among the discordant at 1/2; 1 without any).
    """
    found_a, found_b = np.asarray(found_a, dtype=bool), np.asarray(found_b, dtype=bool)
    if found_a.shape != found_b.shape or found_a.ndim != 1:
        raise ValueError(f"need two flags per cluster, got shapes {found_a.shape} and {found_b.shape}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    n, only_a, only_b = len(found_a), int(np.sum(found_a & ~found_b)), int(np.sum(~found_a & found_b))
    if n == 0:
        raise ValueError("no clusters to compare")
    z = norm.ppf(0.5 + confidence / 2)
    discordant = only_a + only_b
    return {"n": n, "only_a": only_a, "only_b": only_b, "difference": (only_a - only_b) / n,
            "half_width": float(z * math.sqrt(discordant - (only_a - only_b) ** 2 / n) / n),
            "pvalue": float(binomtest(only_a, discordant, 0.5).pvalue) if discordant else 1.0}


def rates_markdown(rates):
    """A `false_rate_table` as a Markdown table (with truth: found and found-once clusters too)."""
    truth, known = "n_true" in rates.colnames, "n_on_known" in rates.colnames
    header = ["Score >=", "Candidates"] + (["On known clusters"] if known else [])
    header += ["False", "of them duplicates", "False per deg^2"] + (["Clusters found", "found once"] if truth else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    for row in rates:
        cells = [f"{row['threshold']:g}", str(row["n_candidates"])] + ([str(row["n_on_known"])] if known else [])
        cells += [str(row["n_false"]), str(row["n_duplicate"]), f"{row['false_per_deg2']:.1f}"]
        if truth:
            cells += [f"{row['n_found']} of {row['n_true']}", f"{row['n_found_once']} of {row['n_true']}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\nover {rates.meta[AREA_KEY]:.3f} deg^2\n"

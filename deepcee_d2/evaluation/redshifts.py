"""Redshift and richness of the evaluated predictions, and their accuracy against the annotated clusters.

The network sees colour images; the red-sequence estimator (`deepcee_d2.redsequence`) needs the g, r, i flux
images behind them. A Deep-CEE data set records the imaging it was cut from (its COCO ``info``: the imaging
source, cutout size and pixel scale; `deepcee_d2.data.register` gives every record this ``flux_cutout``
extra), and every image record its centre, so `estimate_predictions` remakes each evaluated image's flux
cutout from there (through the data set's cutout cache when it has one, or from the imaging named by
``DEEPCEE.EVAL.REDSHIFT_IMAGING``) and estimates z and richness at the predictions. Only the predictions
within the match radius of an annotated cluster are estimated: they are the only ones the accuracy (true
positives) and the stricter matching criterion (``DEEPCEE.EVAL.REQUIRE_REDSHIFT_MATCH``) look at, and the
detector returns up to 100 predictions per image.

`redshift_accuracy` and `plot_redshifts` are pure functions of an
`~deepcee_d2.evaluation.matching.Evaluation` whose predictions carry the estimates: sigma_NMAD of
dz / (1 + z) (1.4826 x the median absolute deviation from the median), the outlier fraction
(|dz| / (1 + z) > ``outlier``), the bias, and the richness scatter in dex, over the true positives at the best
threshold that have a red-sequence peak.
"""
import logging
from dataclasses import dataclass
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table

from ..data.cache import get_cutout
from ..data.frames import ImagingError
from ..data.sources import make_source
from ..sky import sky_pairs
from .matching import TRUE_POSITIVE

logger = logging.getLogger(__name__)

# Richness scatter is also given over the clusters with at least this many members (the regime).
RICH_MEMBERS = 20
NMAD_SCALE = 1.4826  # median absolute deviation -> Gaussian sigma


@dataclass(frozen=True)
class RedshiftEvaluation:
    """What the evaluator needs for redshifts (``cfg.DEEPCEE.EVAL`` and ``DEEPCEE.REDSHIFT``; `from_cfg`).

    Attributes
    ----------
    estimator : `~deepcee_d2.redsequence.RedSequenceEstimator`
    imaging : str
        ``"kind:root"`` of the flux imaging (``REDSHIFT_IMAGING``), or "" for the data set's own.
    outlier : float
        ``REDSHIFT_OUTLIER``: the |dz| / (1 + z) of an outlier, and the tolerance of the stricter criterion.
    require_match : bool
        ``REQUIRE_REDSHIFT_MATCH``.
    """

    estimator: object
    imaging: str
    outlier: float
    require_match: bool

    @classmethod
    def from_cfg(cls, cfg):
        """The options of a config, or None when ``DEEPCEE.EVAL.REDSHIFTS`` is off."""
        from ..redsequence import RedSequenceEstimator

        options = cfg.DEEPCEE.EVAL
        if not options.REDSHIFTS:
            if options.REQUIRE_REDSHIFT_MATCH:
                raise ValueError("DEEPCEE.EVAL.REQUIRE_REDSHIFT_MATCH needs the redshift estimates: set "
                                 "DEEPCEE.EVAL.REDSHIFTS True")
            return None
        if not 0 < options.REDSHIFT_OUTLIER < 1:
            raise ValueError(f"DEEPCEE.EVAL.REDSHIFT_OUTLIER must lie in (0, 1), got {options.REDSHIFT_OUTLIER}")
        return cls(RedSequenceEstimator.from_cfg(cfg), str(options.REDSHIFT_IMAGING),
                   float(options.REDSHIFT_OUTLIER), bool(options.REQUIRE_REDSHIFT_MATCH))


def parse_imaging(text, folder=None):
    """An imaging source from ``"kind:root"`` (``fits:/frames``, ``sdss:/frames``, ``skyview``; `make_source`).

    The data sets record ``sdss:DR<n>`` without its folder: the frames are then those of the data set
    ``folder`` (``<folder>/frames``, where ``tools/prepare_dataset.py`` keeps them by default).
    """
    kind, _, root = str(text).partition(":")
    if kind == "skyview":
        return make_source("skyview")
    if kind == "sdss" and (not root or root.startswith("DR")):
        if folder is None:
            raise ValueError(f"imaging {text!r}: SDSS frames need a folder; give DEEPCEE.EVAL.REDSHIFT_IMAGING "
                             "sdss:<folder>")
        release = {"data_release": int(root[2:])} if root[2:].isdigit() else {}
        return make_source("sdss", Path(folder) / "frames", **release)
    return make_source(kind, root or None)


def _flux_cutout(record, imaging, dataset_name, sources):
    """The g, r, i flux cutout behind one evaluated image: its record's centre, the data set's size and scale.

    ``sources`` keeps one imaging source per (imaging, folder) for all images: a new `LocalFITSSource` reads
    the header of every frame under its folder (600 for the demo's sky) before its first cutout.
    """
    spec = record.get("flux_cutout")
    if spec is None:
        raise ValueError(f"{dataset_name} image {record['image_id']!r}: the record has no 'flux_cutout' "
                         f"(the data set's imaging); rebuild the data set with deepcee_d2.data.coco")
    cache = Path(spec["folder"]) / "cutouts"
    key = (imaging or spec["imaging"], spec["folder"])
    if key not in sources:
        sources[key] = parse_imaging(*key)
    source = sources[key]
    centre = SkyCoord(record["ra"] * u.deg, record["dec"] * u.deg)
    return get_cutout(source, centre, int(spec["size"]), spec["pixel_scale_arcsec"] * u.arcsec,
                      cache_dir=cache if cache.is_dir() else None)


def estimate_predictions(predictions, truths, records, redshifts, match_radius, cosmology, dataset_name):
    """``predictions`` with the estimator's columns (`~deepcee_d2.redsequence.ESTIMATE_COLUMNS`).

    Parameters
    ----------
    predictions : `~astropy.table.Table`
        ``image_id``, ``ra``, ``dec`` (deg) per prediction.
    truths : `~astropy.table.Table`
        The annotated clusters of the evaluated images: ``image_id``, ``ra``, ``dec``, ``z``.
    records : dict
        ``image_id -> dataset record`` (with ``ra``, ``dec`` and ``flux_cutout``).
    redshifts : `RedshiftEvaluation`
    match_radius : `~astropy.units.Quantity` [length]
        Predictions within this proper distance of an annotated cluster of their image are estimated; the
        others get NaN and no peak.
    cosmology : `~astropy.cosmology.FLRW`
    dataset_name : str
        For messages.

    Returns
    -------
    predictions : `~astropy.table.Table` or None
        A copy of ``predictions`` with the estimate columns; None (and a warning) when the data set records
        no imaging (hand-made records, data sets of other tools) and ``redshifts.imaging`` names none.
    problems : list of str
        The images whose flux cutout could not be made, and why (also logged as one warning).

    Raises
    ------
    ValueError
        With ``redshifts.require_match`` (the stricter criterion), when any flux cutout cannot be made: the
        criterion would silently turn those images' detections into false positives.
    """
    from ..redsequence import ESTIMATE_COLUMNS, no_estimates

    def refuse_strict(what):
        if redshifts.require_match:
            raise ValueError(f"{dataset_name}: DEEPCEE.EVAL.REQUIRE_REDSHIFT_MATCH, but the flux images of {what} "
                             "cannot be made; set DEEPCEE.EVAL.REDSHIFT_IMAGING")

    if not redshifts.imaging and not any(record.get("flux_cutout") for record in records.values()):
        refuse_strict("all images (the data set records no imaging)")
        logger.warning("%s: the data set records no imaging (no 'flux_cutout' in its records); no redshifts or "
                       "richnesses. Set DEEPCEE.EVAL.REDSHIFT_IMAGING, or DEEPCEE.EVAL.REDSHIFTS False", dataset_name)
        return None, []
    estimator = redshifts.estimator
    result = Table(predictions, copy=True)
    for name, column in no_estimates(len(result)).columns.items():
        result[name] = column
    problems, sources = [], {}
    image_ids = np.asarray(result["image_id"])
    truth_ids = np.asarray(truths["image_id"])
    for image_id in dict.fromkeys(image_ids.tolist()):
        rows = np.flatnonzero(image_ids == image_id)
        near_truth = truths[truth_ids == image_id]
        if not len(near_truth):
            continue
        pairs = sky_pairs(SkyCoord(result["ra"][rows], result["dec"][rows], unit=u.deg),
                          SkyCoord(near_truth["ra"], near_truth["dec"], unit=u.deg), match_radius,
                          redshift=np.asarray(near_truth["z"], dtype=float), cosmology=cosmology)
        rows = rows[np.unique(pairs.index_a)]
        if not len(rows):
            continue
        record = records[image_id]
        where = f"{dataset_name} image {image_id!r} ({record.get('file_name', '?')})"
        try:
            cutout = _flux_cutout(record, redshifts.imaging, dataset_name, sources)
        except (ImagingError, ValueError, OSError) as error:
            problems.append(f"{where}: {error}")
            continue
        estimates = estimator.estimate(cutout.images, cutout.wcs, result["ra"][rows], result["dec"][rows], where,
                                       covered=cutout.covered)
        for name in ESTIMATE_COLUMNS:
            result[name][rows] = estimates[name]
    for source in sources.values():  # once per imaging: real sky measured with the synthetic calibration
        estimator.calibration_warnings(source)
    if problems:
        refuse_strict(f"{len(problems)} images, e.g. {problems[0]}")
        logger.warning("%s: no redshifts in %d images whose flux cutout cannot be made, e.g. %s", dataset_name,
                       len(problems), problems[0])
    return result, problems


def _nmad(values):
    values = np.asarray(values, dtype=float)
    if not len(values):
        return np.nan
    return float(NMAD_SCALE * np.median(np.abs(values - np.median(values))))


def matched_redshifts(evaluation):
    """One row per true positive at the best threshold: the true cluster's ``z``, ``richness``,
    ``n_members`` beside the prediction's ``z_est``, ``z_err``, ``richness_est``, ``rs_peak``, and ``dz``
    = (z_est - z) / (1 + z)."""
    predictions = evaluation.predictions
    hits = predictions[predictions["status"] == TRUE_POSITIVE]
    truths = evaluation.truths
    row_of = {str(identifier): index for index, identifier in enumerate(truths["id"])}
    index = np.array([row_of[str(identifier)] for identifier in hits["matched_id"]], dtype=int)
    z = np.asarray(truths["z"], dtype=float)[index]
    table = Table({
        "id": np.asarray(truths["id"]).astype(str)[index], "z": z,
        "richness": np.asarray(truths["richness"], dtype=float)[index] if "richness" in truths.colnames else np.full(len(z), np.nan),
        "n_members": np.asarray(truths["n_members"], dtype=float)[index] if "n_members" in truths.colnames else np.full(len(z), np.nan),
        "z_est": np.asarray(hits["z_est"], dtype=float), "z_err": np.asarray(hits["z_err"], dtype=float),
        "richness_est": np.asarray(hits["richness"], dtype=float), "rs_peak": np.asarray(hits["rs_peak"], dtype=bool),
    })
    table["dz"] = (table["z_est"] - table["z"]) / (1 + table["z"])
    return table


def redshift_accuracy(evaluation, outlier):
    """The redshift and richness accuracy of the true positives at the best threshold.

    Parameters
    ----------
    evaluation : `~deepcee_d2.evaluation.matching.Evaluation`
        Its predictions carry the estimate columns (`estimate_predictions`).
    outlier : float
        |dz| / (1 + z) above which a redshift is an outlier.

    Returns
    -------
    dict
        ``n_true_positives``; ``n_with_peak`` (those with a red-sequence peak, over which the rest is
        measured); ``sigma_nmad``, ``outlier_fraction``, ``median_dz`` (of dz / (1 + z)),
        ``within_error_fraction`` (|z_est - z| < z_err); ``richness_scatter_dex`` (standard deviation of
        log10(estimated / true)) and ``richness_bias_dex`` (their median) over those with a positive true and
        estimated richness, ``n_richness``, and the same at >= `RICH_MEMBERS` members
        (``richness_scatter_dex_rich``, ``n_richness_rich``); ``outlier`` itself. NaN where there is nothing to
        measure.
    """
    table = matched_redshifts(evaluation)
    peak = table[table["rs_peak"] & np.isfinite(table["z_est"])]
    dz = np.asarray(peak["dz"], dtype=float)
    ratio = np.log10(np.asarray(peak["richness_est"], dtype=float) / np.asarray(peak["richness"], dtype=float)) \
        if len(peak) else np.zeros(0)
    with np.errstate(invalid="ignore"):
        usable = np.isfinite(ratio)
        rich = usable & (np.asarray(peak["n_members"], dtype=float) >= RICH_MEMBERS)
    return {
        "outlier": float(outlier), "n_true_positives": len(table), "n_with_peak": len(peak),
        "sigma_nmad": _nmad(dz),
        "outlier_fraction": float(np.mean(np.abs(dz) > outlier)) if len(dz) else np.nan,
        "median_dz": float(np.median(dz)) if len(dz) else np.nan,
        "within_error_fraction": float(np.mean(np.abs(peak["z_est"] - peak["z"]) < peak["z_err"]))
        if len(peak) else np.nan,
        "richness_scatter_dex": float(np.std(ratio[usable])) if usable.sum() > 1 else np.nan,
        "richness_bias_dex": float(np.median(ratio[usable])) if usable.any() else np.nan,
        "n_richness": int(usable.sum()),
        "richness_scatter_dex_rich": float(np.std(ratio[rich])) if rich.sum() > 1 else np.nan,
        "n_richness_rich": int(rich.sum()),
    }


def plot_redshifts(evaluation, outlier):
    """Three panels over the true positives at the best threshold: estimated against true z (1-sigma errors,
    the outlier bounds dashed), dz / (1 + z) against true z, and estimated against true richness (log-log);
    open circles have no red-sequence peak (their z is the scan's best guess, not reported)."""
    from matplotlib.figure import Figure

    table = matched_redshifts(evaluation)
    peak = np.asarray(table["rs_peak"], dtype=bool) & np.isfinite(table["z_est"])
    figure = Figure(figsize=(15, 4.4))
    versus, residuals, richness = figure.subplots(1, 3)
    z = np.asarray(table["z"], dtype=float)
    shown = np.concatenate([z, np.asarray(table["z_est"], dtype=float)[peak]])  # at least 0.05-0.35 shown
    span = np.array([shown.min(initial=0.05) - 0.02, shown.max(initial=0.35) + 0.02])
    versus.errorbar(z[peak], table["z_est"][peak], yerr=table["z_err"][peak], fmt="o", color="tab:blue",
                    markersize=4, capsize=2, label=f"red-sequence peak ({peak.sum()})")
    versus.plot(span, span, color="k", linewidth=1)
    for sign in (-1, 1):
        versus.plot(span, span + sign * outlier * (1 + span), color="tab:red", linestyle="--", linewidth=1)
    versus.set(xlim=span, ylim=span, xlabel="true z", ylabel="estimated z (red sequence)",
               title=f"Redshift of {len(table)} true positives ({(~peak).sum()} without a peak)")
    versus.legend(loc="upper left")
    residuals.plot(z[peak], table["dz"][peak], "o", color="tab:blue", markersize=4)
    residuals.axhline(0, color="k", linewidth=1)
    for sign in (-1, 1):
        residuals.axhline(sign * outlier, color="tab:red", linestyle="--", linewidth=1)
    accuracy = redshift_accuracy(evaluation, outlier)
    residuals.set(xlabel="true z", ylabel="(z_est - z) / (1 + z)", xlim=span,
                  title=f"sigma_NMAD {accuracy['sigma_nmad']:.4f}, outliers {accuracy['outlier_fraction']:.1%}")
    good = peak & (table["richness"] > 0) & (table["richness_est"] > 0)
    richness.loglog(table["richness"][good], table["richness_est"][good], "o", color="tab:blue", markersize=4)
    if good.any():
        low = min(table["richness"][good].min(), table["richness_est"][good].min()) / 1.5
        high = max(table["richness"][good].max(), table["richness_est"][good].max()) * 1.5
        richness.plot([low, high], [low, high], color="k", linewidth=1)
    richness.set(xlabel="true richness", ylabel="estimated richness",
                 title=f"Richness: scatter {accuracy['richness_scatter_dex']:.3f} dex")
    figure.tight_layout()
    return figure

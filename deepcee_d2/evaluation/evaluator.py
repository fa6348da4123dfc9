"""``DeepCEEEvaluator``: the 100 kpc analysis as a detectron2 ``DatasetEvaluator``.

A thin wrapper: ``process`` turns each image's predicted box centres into sky positions through the image's
WCS; ``evaluate`` gathers them from every process, matches them to the data set's annotated clusters with
`deepcee_d2.evaluation.matching.evaluate_detections`, cross-matches the false positives when catalogues are
configured, estimates the redshift and richness of the predictions near annotated clusters from the images'
flux cutouts when asked (`deepcee_d2.evaluation.redshifts`), writes the report
(`deepcee_d2.evaluation.report.write_report`) and returns the headline numbers
and the whole threshold table. Its options come from ``cfg.DEEPCEE.EVAL`` through detectron2's
``@configurable``: ``DeepCEEEvaluator(cfg, dataset_name, output_dir=...)``, or every option given explicitly.
"""
import itertools
import logging

import astropy.units as u
import numpy as np
from astropy.table import Table
from detectron2.config import configurable
from detectron2.data import DatasetCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from ..cosmology import cosmology_from_cfg
from ..sky import box_centres, box_xy_to_sky, celestial_wcs
from .crossmatch import crossmatch_false_positives, read_reference_catalogs
from .matching import FALSE_POSITIVE, evaluate_detections
from .purity import blank_image_false_rates
from .redshifts import RedshiftEvaluation, estimate_predictions
from .report import flat_metrics, markdown_table, summarise, table_rows, write_report

logger = logging.getLogger(__name__)

# Annotation extras every true cluster needs, and those carried into the KS and completeness analysis
# (NaN when a record lacks them).
_REQUIRED_EXTRAS = ("cluster_id", "ra", "dec", "z")
_OPTIONAL_EXTRAS = ("richness", "n_members", "bcg_rmag")


def _truth_table(dataset_name, records):
    """One row per annotated cluster of ``records``; raises naming the image when an extra is missing."""
    rows = []
    for record in records:
        for annotation in record.get("annotations", ()):
            missing = [key for key in _REQUIRED_EXTRAS if key not in annotation]
            if missing:
                raise ValueError(f"{dataset_name}: an annotation of image {record['image_id']!r} "
                                 f"({record.get('file_name', '?')}) lacks {missing}; the 100 kpc evaluation needs "
                                 f"each cluster's {list(_REQUIRED_EXTRAS)}")
            rows.append((record["image_id"], str(annotation["cluster_id"]), float(annotation["ra"]),
                         float(annotation["dec"]), float(annotation["z"]),
                         *(float(annotation.get(key, np.nan)) for key in _OPTIONAL_EXTRAS)))
    names = ("image_id", "id", "ra", "dec", "z") + _OPTIONAL_EXTRAS
    if not rows:
        id_type = type(records[0]["image_id"]) if records else int
        return Table(names=names, dtype=(id_type, str) + (float,) * (len(names) - 2))
    table = Table(rows=rows, names=names)
    table["ra"].unit = table["dec"].unit = u.deg
    table["bcg_rmag"].unit = u.mag
    return table


def survey_merged_predictions(predictions, radius, min_redshift, cosmology):
    """Each image's predictions merged as the survey merges a tile's detections
    (`deepcee_d2.survey.tiling.merge_detections`: in descending score, each absorbs the others within the
    proper ``radius`` at its z_est, else at ``min_redshift``); images apart, since a cluster's offset images
    overlap on the sky."""
    from astropy.table import vstack

    from ..survey.tiling import merge_detections

    image_ids = np.asarray(predictions["image_id"])
    merged = []
    for image_id in np.unique(image_ids):
        mine = Table(predictions[image_ids == image_id], copy=True)
        mine["tile"] = str(image_id)
        merged.append(merge_detections(mine, radius, min_redshift, cosmology))
    if not merged:
        return predictions[:0]
    return vstack(merged, metadata_conflicts="silent")[predictions.colnames]


class DeepCEEEvaluator(DatasetEvaluator):
    """Evaluate cluster detections by the proper distance of their centres from the true centres.

    Built from a config, ``DeepCEEEvaluator(cfg, dataset_name, output_dir=None, distributed=True)`` (see
    `from_config`; a keyword argument given as well overrides the config's value), or with every option below.

    Parameters
    ----------
    dataset_name : str
        A registered data set whose records carry the image extra ``wcs`` (FITS header of the network image's
        celestial WCS) and the annotation extras ``cluster_id``, ``ra``, ``dec``, ``z`` (and ``richness``,
        ``n_members``, ``bcg_rmag`` for the KS tests and completeness).
    output_dir : str or Path, optional
        Where the report is written (see `deepcee_d2.evaluation.report`); nothing is written when None.
    distributed : bool
        Gather the predictions of every process and evaluate on rank 0 (others return ``{}``).
    match_radius : `~astropy.units.Quantity` [length]
        ``MATCH_RADIUS_KPC``.
    thresholds : sequence of float
        Score thresholds, fractions (``SCORE_THRESHOLDS``).
    histogram_radius : `~astropy.units.Quantity` [length]
        ``HISTOGRAM_RADIUS_KPC``.
    ks_alpha : float
        ``KS_ALPHA``.
    cosmology : `~astropy.cosmology.FLRW`
        ``cfg.DEEPCEE.COSMOLOGY``.
    crossmatch_catalogs : list or dict
        Catalogues for the false positives (see `~deepcee_d2.evaluation.crossmatch.read_reference_catalog`)
        (``CROSSMATCH_CATALOGS``); empty means no cross-match. Read when the evaluator is made, so that a
        missing or malformed one raises before inference, not after it.
    crossmatch_radius : `~astropy.units.Quantity` [length]
        ``CROSSMATCH_RADIUS_KPC``.
    crossmatch_z_range : (float, float)
        ``CROSSMATCH_Z_RANGE``.
    redshifts : `~deepcee_d2.evaluation.redshifts.RedshiftEvaluation`, optional
        Estimate z and richness of the predictions and report their accuracy (``REDSHIFTS`` and the keys
        beside it); None: no estimates.
    merge_radius : `~astropy.units.Quantity` [length], optional
        The survey's merging radius (``DEEPCEE.SURVEY.MERGE_RADIUS_KPC``, at ``merge_min_redshift``,
        ``DEEPCEE.SURVEY.MIN_REDSHIFT``, where a prediction has no z_est). When given, the table is also made
        of each image's predictions merged as the survey merges a tile's (`survey_merged_predictions`), and
        written as ``survey_merged``: the precision of the candidates a survey would list. The headline stays
        the paper's count of every detection. With ``redshifts``, the recall counting only detections with a
        red-sequence peak is written as ``red_sequence_confirmed`` (what ``DEEPCEE.SURVEY.REQUIRE_RED_SEQUENCE``
        keeps; only recall: predictions far from every cluster get no estimate).
    """

    @configurable
    def __init__(self, dataset_name, output_dir=None, distributed=True, *, match_radius, thresholds,
                 histogram_radius, ks_alpha, cosmology, crossmatch_catalogs, crossmatch_radius, crossmatch_z_range,
                 redshifts=None, merge_radius=None, merge_min_redshift=None):
        # Read now, not when the evaluation ends: a bad catalogue is named before inference.
        catalogues = read_reference_catalogs(crossmatch_catalogs) if crossmatch_catalogs else []
        self._settings = {"match_radius": match_radius, "thresholds": tuple(thresholds),
                          "histogram_radius": histogram_radius, "ks_alpha": ks_alpha, "cosmology": cosmology,
                          "crossmatch_catalogs": catalogues, "crossmatch_radius": crossmatch_radius,
                          "crossmatch_z_range": tuple(crossmatch_z_range), "redshifts": redshifts,
                          "merge_radius": merge_radius, "merge_min_redshift": merge_min_redshift}
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._distributed = distributed

        records = DatasetCatalog.get(dataset_name)
        self._records = {record["image_id"]: record for record in records}
        if len(self._records) != len(records):
            raise ValueError(f"{dataset_name}: image_id values are not unique")
        self._truths = _truth_table(dataset_name, records)
        self._wcs = {}
        self.reset()

    @classmethod
    def from_config(cls, cfg, dataset_name, output_dir=None, distributed=True):
        """The options of ``cfg.DEEPCEE.EVAL`` and the cosmology of ``cfg.DEEPCEE.COSMOLOGY`` (and the
        red-sequence estimator of ``DEEPCEE.REDSHIFT`` when ``DEEPCEE.EVAL.REDSHIFTS``)."""
        options = cfg.DEEPCEE.EVAL
        return {"dataset_name": dataset_name, "output_dir": output_dir, "distributed": distributed,
                "match_radius": options.MATCH_RADIUS_KPC * u.kpc, "thresholds": tuple(options.SCORE_THRESHOLDS),
                "histogram_radius": options.HISTOGRAM_RADIUS_KPC * u.kpc, "ks_alpha": options.KS_ALPHA,
                "cosmology": cosmology_from_cfg(cfg), "crossmatch_catalogs": list(options.CROSSMATCH_CATALOGS),
                "crossmatch_radius": options.CROSSMATCH_RADIUS_KPC * u.kpc,
                "crossmatch_z_range": tuple(options.CROSSMATCH_Z_RANGE),
                "redshifts": RedshiftEvaluation.from_cfg(cfg),
                "merge_radius": cfg.DEEPCEE.SURVEY.MERGE_RADIUS_KPC * u.kpc,
                "merge_min_redshift": cfg.DEEPCEE.SURVEY.MIN_REDSHIFT}

    def reset(self):
        self._predictions = []

    def _image_wcs(self, image_id):
        if image_id not in self._wcs:
            record = self._records[image_id]
            source = f"{self._dataset_name} image {image_id!r} ({record.get('file_name', '?')})"
            if "wcs" not in record:
                raise ValueError(f"{source}: the record has no 'wcs' (FITS header of the network image's WCS)")
            self._wcs[image_id] = celestial_wcs(record["wcs"], source=source)
        return self._wcs[image_id]

    def process(self, inputs, outputs):
        """Store each image's predicted centres (sky positions through its WCS) and scores.

        ``outputs[i]["instances"]`` must be in the record's pixel frame: detectron2's models rescale boxes to
        the input's ``height`` and ``width``, which the data set's records give. A NaN or infinite score or box
        (a diverged model) is refused here, naming the image.
        """
        for input_, output in zip(inputs, outputs):
            image_id = input_["image_id"]
            if image_id not in self._records:
                raise ValueError(f"{self._dataset_name}: processed image_id {image_id!r} is not in the data set")
            record = self._records[image_id]
            instances = output["instances"].to("cpu")
            if tuple(instances.image_size) != (record["height"], record["width"]):
                raise ValueError(
                    f"{self._dataset_name} image {image_id!r}: predictions are for a {instances.image_size} image "
                    f"but the record (and its WCS) is {(record['height'], record['width'])}; give the model the "
                    f"record's height and width so it rescales its boxes")
            boxes, scores = instances.pred_boxes.tensor.numpy(), instances.scores.numpy().astype(float)
            bad = ~(np.isfinite(scores) & np.isfinite(boxes).all(axis=1))
            if bad.any():
                raise ValueError(f"{self._dataset_name} image {image_id!r} ({record.get('file_name', '?')}): "
                                 f"{bad.sum()} of {len(scores)} predictions have a NaN or infinite score or box "
                                 f"(e.g. score {scores[bad][0]}); has the model diverged?")
            x, y = box_centres(boxes)
            coords = box_xy_to_sky(self._image_wcs(image_id), x, y)
            self._predictions.append({"image_id": image_id, "x": x, "y": y, "ra": coords.ra.deg,
                                      "dec": coords.dec.deg, "score": scores})

    def evaluate(self):
        """Match, tabulate, cross-match and write the report; return ``{"deepcee": {metric: float}}``: the
        best row, centring error and KS tests, and the whole table as ``"<column>-<threshold %>"`` keys
        (`deepcee_d2.evaluation.report.flat_metrics`)."""
        if self._distributed:
            comm.synchronize()
            per_image = list(itertools.chain(*comm.gather(self._predictions, dst=0)))
            if not comm.is_main_process():
                return {}
        else:
            per_image = self._predictions
        if not per_image:
            logger.warning(f"DeepCEEEvaluator on {self._dataset_name}: no image was processed")
            return {}
        image_ids = [entry["image_id"] for entry in per_image]
        if len(set(image_ids)) != len(image_ids):
            raise ValueError(f"{self._dataset_name}: some images were processed more than once")
        return {"deepcee": flat_metrics(self._analyse(per_image))}

    def _analyse(self, per_image):
        """Match, cross-match, write the report and log the table; return the summary dict."""
        settings = self._settings
        columns = {key: np.concatenate([entry[key] for entry in per_image]) for key in ("x", "y", "ra", "dec", "score")}
        image_ids = [entry["image_id"] for entry in per_image for _ in entry["score"]]
        predictions = Table({"image_id": image_ids, **columns})
        predictions["ra"].unit = predictions["dec"].unit = u.deg
        evaluated = np.isin(np.asarray(self._truths["image_id"]), [entry["image_id"] for entry in per_image])
        redshifts, problems = settings["redshifts"], []
        if redshifts is not None:
            estimated, problems = estimate_predictions(predictions, self._truths[evaluated], self._records, redshifts,
                                                       settings["match_radius"], settings["cosmology"],
                                                       self._dataset_name)
            predictions, redshifts = (predictions, None) if estimated is None else (estimated, redshifts)
        def evaluate(predictions):
            return evaluate_detections(predictions, self._truths[evaluated], thresholds=settings["thresholds"],
                                       match_radius=settings["match_radius"],
                                       histogram_radius=settings["histogram_radius"], cosmology=settings["cosmology"],
                                       redshift_tolerance=redshifts.outlier if redshifts and redshifts.require_match
                                       else None)

        evaluation = evaluate(predictions)
        crossmatch = None
        if settings["crossmatch_catalogs"]:
            false_positives = evaluation.predictions[evaluation.predictions["status"] == FALSE_POSITIVE]
            crossmatch = crossmatch_false_positives(false_positives, settings["crossmatch_catalogs"],
                                                    radius=settings["crossmatch_radius"],
                                                    z_range=settings["crossmatch_z_range"],
                                                    cosmology=settings["cosmology"])
        metadata = {"dataset": self._dataset_name, "n_images": len(per_image)}
        blank = blank_image_false_rates(predictions, [self._records[entry["image_id"]] for entry in per_image],
                                        settings["thresholds"])
        if blank is not None:  # the split's images without a cluster: purity on sky without clusters
            metadata["blank_images"] = blank
        if settings["merge_radius"] is not None:
            merged = evaluate(survey_merged_predictions(predictions, settings["merge_radius"],
                                                        settings["merge_min_redshift"], settings["cosmology"]))
            rows = table_rows(merged.table)
            metadata["survey_merged"] = {"merge_radius_kpc": settings["merge_radius"].to_value(u.kpc),
                                         "n_predictions": len(merged.predictions), "thresholds": rows,
                                         "best": rows[merged.best_index]}
        if redshifts is not None:  # what DEEPCEE.SURVEY.REQUIRE_RED_SEQUENCE keeps of the clusters found
            confirmed = evaluate(predictions[np.asarray(predictions["rs_peak"], dtype=bool)])
            columns = ("threshold", "tp", "fn", "recall")
            metadata["red_sequence_confirmed"] = {"thresholds": [{name: row[name] for name in columns}
                                                                for row in table_rows(confirmed.table)]}
        report = None if redshifts is None else {"outlier": redshifts.outlier, "problems": problems}
        if self._output_dir:
            summary = write_report(evaluation, self._output_dir, settings["ks_alpha"], crossmatch, metadata, report)
        else:
            summary = summarise(evaluation, settings["ks_alpha"], crossmatch, metadata, report)
        logger.info(f"Deep-CEE evaluation of {self._dataset_name} ({len(per_image)} images, "
                    f"{len(evaluation.truths)} clusters, {len(predictions)} predictions):\n"
                    f"{markdown_table(evaluation.table, evaluation.best_index)}"
                    f"Centring error at the best threshold: {evaluation.centring_error:.1f}."
                    + (f" Report: {self._output_dir}" if self._output_dir else ""))
        return summary

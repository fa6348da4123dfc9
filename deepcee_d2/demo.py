"""The main job end to end, on the synthetic sky: what ``make demo`` runs.

1. **Sky**: synthetic SDSS fields, one cluster (0.1 < z < 0.2, >= 20 members: the paper's regime) at the
   centre of each, big enough for the training cutouts and their offsets; on request (`DemoPlan`, off by
   default) more clusters at random in each field, and fields without such a cluster: empty ones, and ones
   with an unlabelled group below the richness cut.
2. **Data set**: each cluster 4 times at random offsets, colour images at the config's sizes, split by
   cluster into train and test; each cluster-free field 4 times as blank images, split on their own;
   registered as ``deepcee_synthetic_train`` / ``_test``.
3. **Training** of the Inception-v2 Faster R-CNN with the config (``configs/deepcee_demo_cpu.yaml``), then
   the 100 kpc evaluation of the test split (precision / recall / F1 table, centring error, plots).
4. **Survey**: a held-out synthetic region (other fields, other sky, several clusters each, anywhere) cut
   into tiles, the candidate catalogue, cross-matched with the region's truth.

Every step resumes: finished fields, images, checkpoints and tiles are kept, so an interrupted demo picks
up where it stopped. `run_demo` returns the paths and headline numbers; ``tools/run_demo.py`` prints them.
"""
import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import astropy.units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table

from .config import load_config

logger = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "configs" / "deepcee_demo_cpu.yaml"
TRAIN_NAME, TEST_NAME = "deepcee_synthetic_train", "deepcee_synthetic_test"


@dataclass(frozen=True)
class DemoPlan:
    """Sizes of the demo's skies and runs. The defaults are the CPU demo; tests shrink them. The data set's
    offsets, boxes and split are ``DEEPCEE.DATA`` of the config (``configs/deepcee_demo_cpu.yaml``).

    ``field_size`` must hold a cutout offset by ``DEEPCEE.DATA.MAX_OFFSET_ARCSEC`` on each side:
    ``CUTOUT_SIZE + 2 MAX_OFFSET_ARCSEC / PIXEL_SCALE``.
    """

    work_dir: Path = Path("demo")
    config_file: Path = DEMO_CONFIG
    config_opts: tuple = ()
    # MODEL.INCEPTION_V2.PRECISION of training, evaluation and survey; "auto": bfloat16 where the CPU computes
    # it natively (`native_bfloat16`), else float32. Trained so (with quarter turns), the demo model found 24
    # of 32 clusters injected into real SDSS frames against 19 in float32, at one false candidate more on them,
    # in 1.4x less time per iteration (BENCHMARKS.md, "Training in bfloat16, channels-last").
    precision: str = "auto"
    n_train_fields: int = 200
    # Fields without a labelled cluster (blank targets of the data set, 4 images each like a cluster): empty
    # sky, and sky with a group of richness R_L* in ``group_richness_range`` (N200 well below ``min_members``)
    # at the centre. Off by default: trained with 20 + 20 of them, the demo model found more clusters on the
    # synthetic sky but fewer on real SDSS frames, with twice the false candidates there (BENCHMARKS.md,
    # "Training with images without a cluster"): the simulator's empty sky is not the real one yet.
    n_empty_fields: int = 0
    n_group_fields: int = 0
    group_richness_range: tuple = (4.0, 10.0)
    # Clusters of the same cut in each training field besides the centred one, placed at random (edges
    # included) no closer to it or to each other than DEEPCEE.SURVEY.MERGE_RADIUS_KPC at the lowest redshift
    # (closer, the survey would merge them): they fall into some of its images, often cut by their edges, and
    # are annotated there (images with several clusters). They get no images of their own.
    neighbours_per_field: int = 0
    field_size: int = 1520
    z_range: tuple = (0.1, 0.2)
    min_members: int = 20
    n_survey_fields: int = 2
    survey_field_size: int = 3000
    survey_clusters_per_field: int = 3
    survey_origin: SkyCoord = field(default_factory=lambda: SkyCoord(200.0 * u.deg, 30.0 * u.deg))
    seed: int = 2026
    workers: int = 2
    progress: bool = True
    # Scores at which the held-out region's false candidates per deg^2 are printed (and the survey's own).
    purity_thresholds: tuple = (0.5, 0.8, 0.9)


@dataclass
class DemoResult:
    evaluation: dict  # headline numbers of the test split (DeepCEEEvaluator)
    report_dir: Path
    table_markdown: str
    catalogue_path: Path
    n_candidates: int
    n_survey_clusters: int
    n_survey_clusters_found: int
    paths: dict
    purity: Table = None  # false candidates per deg^2 of the held-out region (evaluation.purity.false_rate_table)
    score_threshold: float = None  # the survey's DEEPCEE.SURVEY.SCORE_THRESHOLD
    candidates_markdown: str = ""  # the candidates' z and richness beside the truth (`candidates_beside_truth`)


def demo_precision(plan):
    """``plan.precision`` with "auto" resolved for this machine."""
    from .modeling.inception_v2 import native_bfloat16

    if plan.precision != "auto":
        return plan.precision
    return "bfloat16" if native_bfloat16() else "float32"


def demo_config(plan, weights=None):
    opts = (["MODEL.INCEPTION_V2.PRECISION", demo_precision(plan)] + list(plan.config_opts)
            + ["OUTPUT_DIR", str(plan.work_dir / "train")])
    if weights is not None:
        opts += ["MODEL.WEIGHTS", str(weights)]
    return load_config(plan.config_file, opts)


def make_training_sky(plan, cfg):
    """Step 1: fields with one cluster at the centre of each, and ``plan.neighbours_per_field`` more at random
    (`deepcee_d2.synthetic.write_survey`), under ``sky/``, and the cluster-free fields (`make_blank_sky`)
    beside them under ``sky/blank`` and ``sky/groups``; returns all the clusters and the blank targets (the
    cluster-free fields' centres)."""
    from .cosmology import angular_size, cosmology_from_cfg
    from .synthetic import ClusterSpec, write_survey

    colour, max_offset = cfg.DEEPCEE.COLOUR, cfg.DEEPCEE.DATA.MAX_OFFSET_ARCSEC
    needed = colour.CUTOUT_SIZE + 2 * max_offset / colour.PIXEL_SCALE
    if plan.field_size < needed:
        raise ValueError(f"demo plan: field_size {plan.field_size} px cannot hold {colour.CUTOUT_SIZE} px cutouts "
                         f"offset by {max_offset} arcsec; need {needed:.0f} px")
    separation = angular_size(cfg.DEEPCEE.SURVEY.MERGE_RADIUS_KPC * u.kpc, plan.z_range[0], cosmology_from_cfg(cfg))
    spec = ClusterSpec(per_field=1 + plan.neighbours_per_field, z_range=plan.z_range, min_members=plan.min_members,
                       placement="centre", min_separation=separation)
    clusters, _ = write_survey(plan.work_dir / "sky", plan.n_train_fields, plan.field_size, plan.field_size,
                               clusters=spec, seed=plan.seed, source_lists=False, workers=plan.workers,
                               progress=plan.progress)
    return clusters, make_blank_sky(plan)


def centred_clusters(clusters):
    """The clusters at the training fields' centres (ids ``<field>-c0``, `ClusterSpec` "centre"): the targets
    the data set makes images around; the neighbours are only annotated where those images hold them."""
    return clusters[[str(identifier).endswith("-c0") for identifier in clusters["id"]]]


# Where the cluster-free training fields lie: apart from the training grid (from RA 150, Dec 20) and the
# held-out region (DemoPlan.survey_origin).
_BLANK_ORIGINS = {"blank": SkyCoord(170.0 * u.deg, 20.0 * u.deg), "groups": SkyCoord(180.0 * u.deg, 20.0 * u.deg)}


def make_blank_sky(plan):
    """The cluster-free training fields: ``plan.n_empty_fields`` without clusters, ``plan.n_group_fields`` with a
    group below the richness cut at the centre; returns their centres as blank targets (``id``, ``ra``, ``dec``)."""
    from astropy.table import vstack

    from .synthetic import ClusterSpec, write_survey
    from .synthetic.survey import grid_centres

    kinds = {"blank": (plan.n_empty_fields, ClusterSpec(per_field=0)),
             "groups": (plan.n_group_fields, ClusterSpec(per_field=1, z_range=plan.z_range,
                                                         richness_range=plan.group_richness_range,
                                                         placement="centre"))}
    targets = []
    for offset, (kind, (n_fields, spec)) in enumerate(kinds.items(), start=1):
        if not n_fields:
            continue
        centres = grid_centres(n_fields, plan.field_size, plan.field_size, origin=_BLANK_ORIGINS[kind])
        _, fields = write_survey(plan.work_dir / "sky" / kind, n_fields, plan.field_size, plan.field_size,
                                 centres=centres, clusters=spec, seed=plan.seed + 10 + offset, source_lists=False,
                                 workers=plan.workers, progress=plan.progress)
        targets.append(Table({"id": [f"{kind}-{name}" for name in fields["field"]], "ra": fields["ra"],
                              "dec": fields["dec"]}))
    return vstack(targets) if targets else None


def make_dataset(plan, cfg, clusters, blank_targets=None):
    """Step 2: the COCO data set under ``<work_dir>/datasets/synthetic`` (`deepcee_d2.data.coco`)."""
    from .cosmology import cosmology_from_cfg
    from .data.coco import DatasetSettings, build_dataset
    from .data.frames import LocalFITSSource
    from .data.resample import Resampling

    settings = DatasetSettings.from_cfg(cfg, seed=plan.seed)
    return build_dataset(centred_clusters(clusters), LocalFITSSource(plan.work_dir / "sky", Resampling.from_cfg(cfg)),
                         plan.work_dir / "datasets" / "synthetic", settings, annotate_with=clusters,
                         blank_targets=blank_targets, cosmology=cosmology_from_cfg(cfg), progress=plan.progress)


# In the test split's report folder: the weights and config its evaluation.json was made with, so that a rerun
# of a finished demo does not evaluate the same model again (9 minutes on a slow 2-core machine).
EVALUATED_FILE = "evaluated.json"


def test_report_dir(cfg):
    """Where the evaluation of the test split writes its report (`deepcee_d2.evaluation.report`)."""
    return Path(cfg.OUTPUT_DIR) / "inference" / TEST_NAME


def evaluation_key(cfg, weights):
    """What an evaluation depends on: the weights' bytes and the whole config."""
    from .io import file_sha256

    return {"weights": str(weights), "weights_sha256": file_sha256(weights),
            "config_sha256": hashlib.sha256(cfg.dump().encode()).hexdigest()}


def evaluation_is_current(cfg, weights):
    """Whether the test split's report exists and was made from ``weights`` with ``cfg``."""
    report_dir = test_report_dir(cfg)
    record = report_dir / EVALUATED_FILE
    if not (record.is_file() and (report_dir / "evaluation.json").is_file()):
        return False
    return json.loads(record.read_text()) == evaluation_key(cfg, weights)


def train_and_evaluate(cfg):
    """Step 3: train (resuming an interrupted run; skipped when finished), then evaluate the test split
    (skipped when its report is of these weights and this config already). Finished or interrupted training
    of other settings is refused (`deepcee_d2.engine.trainer.check_training_settings`).

    Returns the path of the final weights.
    """
    from detectron2.utils.env import seed_all_rng

    from .engine import Trainer
    from .engine.predictor import load_weights
    from .engine.trainer import check_training_settings
    from .io import atomic_output

    final = Path(cfg.OUTPUT_DIR) / "model_final.pth"
    if not final.is_file():
        # As tools/train_net.py's default_setup: the config's SEED decides the initial weights and the data order.
        seed_all_rng(None if cfg.SEED < 0 else cfg.SEED)
        trainer = Trainer(cfg)
        trainer.resume_or_load(resume=True)
        trainer.train()  # ends with the evaluation of DATASETS.TEST (TEST.EVAL_PERIOD 0)
    else:
        check_training_settings(cfg)  # finished weights are not trained again: all their settings must hold
        if evaluation_is_current(cfg, final):
            logger.info("the evaluation of %s is in %s already", final, test_report_dir(cfg))
            return final
        model = Trainer.build_model(cfg)
        load_weights(model, final)
        Trainer.test(cfg, model)
    with atomic_output(test_report_dir(cfg) / EVALUATED_FILE) as temporary:
        Path(temporary).write_text(json.dumps(evaluation_key(cfg, final), indent=1))
    return final


def make_survey_sky(plan):
    """Step 4a: the held-out region: other fields, several clusters each anywhere, away from the training sky."""
    from .synthetic import ClusterSpec, write_survey
    from .synthetic.survey import grid_centres

    spec = ClusterSpec(per_field=plan.survey_clusters_per_field, z_range=plan.z_range,
                       min_members=plan.min_members, placement="random")
    centres = grid_centres(plan.n_survey_fields, plan.survey_field_size, plan.survey_field_size,
                           origin=plan.survey_origin)
    clusters, _ = write_survey(plan.work_dir / "survey_sky", plan.n_survey_fields, plan.survey_field_size,
                               plan.survey_field_size, centres=centres, clusters=spec, seed=plan.seed + 1,
                               source_lists=False, workers=plan.workers, progress=plan.progress)
    return clusters


def run_survey(plan, cfg, truth_path):
    """Step 4b: the candidate catalogue of the held-out region (`deepcee_d2.survey`)."""
    from .survey.run import SurveyStateError, find_clusters_in_folder

    output = plan.work_dir / "survey"
    try:
        # One worker runs in this process: a worker process would only add its start (~10 s of imports).
        return find_clusters_in_folder(cfg, plan.work_dir / "survey_sky", output, n_workers=plan.workers,
                                       processes=plan.workers > 1, crossmatch={"synthetic truth": str(truth_path)},
                                       progress=plan.progress)
    except SurveyStateError as error:
        # Made by an earlier version or other settings (e.g. after an update): the demo owns that folder, so it
        # can say that deleting it costs only minutes, or name its own option.
        raise SurveyStateError(f"{error}. For the demo: delete {output} (the held-out survey; it is remade in "
                               f"a few minutes) and run the demo again, or run it with a new --work-dir") from None


def run_demo(plan=DemoPlan()):
    """Run every step of the demo (module docstring); returns a `DemoResult`."""
    from detectron2.utils.logger import setup_logger

    setup_logger(name="deepcee_d2")
    setup_logger()  # detectron2's own progress lines
    work = Path(plan.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    # The standard data set names resolve under DEEPCEE_DATASETS, read when a data set is loaded.
    os.environ["DEEPCEE_DATASETS"] = str((work / "datasets").resolve())
    cfg = demo_config(plan)
    logger.info("[1/4] synthetic training sky: %d fields in %s", plan.n_train_fields, work / "sky")
    clusters, blank_targets = make_training_sky(plan, cfg)
    n_targets = len(centred_clusters(clusters))
    logger.info("[2/4] data set: %d clusters (and %d neighbours) and %d cluster-free fields x %d offsets",
                n_targets, len(clusters) - n_targets,
                0 if blank_targets is None else len(blank_targets), cfg.DEEPCEE.DATA.N_OFFSETS)
    make_dataset(plan, cfg, clusters, blank_targets)
    logger.info("[3/4] training and evaluating %s in %s", plan.config_file, cfg.MODEL.INCEPTION_V2.PRECISION)
    cfg.freeze()
    weights = train_and_evaluate(cfg)
    report_dir = test_report_dir(cfg)
    summary = json.loads((report_dir / "evaluation.json").read_text())
    logger.info("[4/4] survey of a held-out region: %d fields", plan.n_survey_fields)
    survey_truth = make_survey_sky(plan)
    survey_cfg = demo_config(plan, weights)
    survey = run_survey(plan, survey_cfg, work / "survey_sky" / "clusters.fits")
    candidates = survey.catalogue
    found = set(str(c) for c in candidates["catalog_id"][candidates["known"]]) if len(candidates) else set()
    return DemoResult(
        evaluation=summary, report_dir=report_dir, table_markdown=_threshold_table(summary),
        catalogue_path=survey.paths["ecsv"], n_candidates=len(candidates), n_survey_clusters=len(survey_truth),
        n_survey_clusters_found=len(found & set(str(i) for i in survey_truth["id"])), paths=dict(survey.paths),
        purity=survey_purity(plan, survey_cfg), score_threshold=survey_cfg.DEEPCEE.SURVEY.SCORE_THRESHOLD,
        candidates_markdown=candidates_beside_truth(candidates, survey_truth, survey_losses(plan, survey_cfg)))


def survey_purity(plan, cfg):
    """False candidates per deg^2 of the held-out region at ``plan.purity_thresholds`` and the survey's threshold,
    and how often each of its clusters is found; the area is the catalogue's, else its fields' (`fields_area`)."""
    from .evaluation.purity import survey_false_rates

    work = Path(plan.work_dir)
    thresholds = sorted(set(plan.purity_thresholds) | {cfg.DEEPCEE.SURVEY.SCORE_THRESHOLD})
    return survey_false_rates(work / "survey", cfg, thresholds, truth=work / "survey_sky" / "clusters.fits",
                              frames=work / "survey_sky")


def survey_losses(plan, cfg):
    """Where the held-out survey lost each of its clusters at its score threshold, by id: (stage, best score)
    (`deepcee_d2.evaluation.purity.loss_stages`, from the survey's tile detections)."""
    from .evaluation.purity import loss_stages, read_tile_detections

    work = Path(plan.work_dir)
    stages = loss_stages(read_tile_detections(work / "survey")[0], work / "survey_sky" / "clusters.fits", cfg,
                         cfg.DEEPCEE.SURVEY.SCORE_THRESHOLD)
    return {str(row["id"]): (str(row["stage"]), float(row["best_score"])) for row in stages}


def summary_text(result):
    """What the demo prints at the end."""
    from .evaluation.report import blank_images_text, flat_metrics

    best = result.evaluation["best"]
    # evaluation.json stores NaN as null (no true positive, no centring error); flat_metrics gives it back as NaN.
    centring_error_kpc = flat_metrics(result.evaluation)["centring_error_kpc"]
    lines = [
        "", "Deep-CEE demo: evaluation of the synthetic test split (100 kpc matching)", "",
        result.table_markdown, "",
        f"best threshold: {100 * best['threshold']:.0f} %  precision {best['precision']:.3f}  recall "
        f"{best['recall']:.3f}  F1 {best['f1']:.3f}  (TP {best['tp']}, FP {best['fp']}, FN {best['fn']})",
        f"centring error (standard error of TP centres): {centring_error_kpc:.1f} kpc",
        *([_survey_merged_line(result.evaluation["survey_merged"])] if "survey_merged" in result.evaluation else []),
        *_confirmed_lines(result),
        *([f"test images without a cluster: {blank_images_text(result.evaluation['blank_images'])}"]
          if "blank_images" in result.evaluation else []),
        f"report (Markdown with the plots): {result.report_dir / 'report.md'}",
        f"survey of the held-out region: {result.n_candidates} candidates, "
        f"{result.n_survey_clusters_found} of its {result.n_survey_clusters} clusters among them",
        f"candidate catalogue: {result.catalogue_path}",
        *_purity_lines(result),
        *([result.candidates_markdown] if result.candidates_markdown else []),
        f"gallery: {result.paths['gallery']}",
    ]
    return "\n".join(lines)


def _survey_merged_line(merged):
    """The test split counted as the survey lists candidates: each image's detections merged first."""
    best = merged["best"]
    return (f"as the survey lists them (each image's detections merged within {merged['merge_radius_kpc']:g} kpc): "
            f"best threshold {100 * best['threshold']:.0f} %  precision {best['precision']:.3f}  recall "
            f"{best['recall']:.3f}  F1 {best['f1']:.3f}  (TP {best['tp']}, FP {best['fp']}, FN {best['fn']})")


def _confirmed_lines(result):
    """Recall at the survey threshold counting only detections with a red-sequence peak
    (DEEPCEE.SURVEY.REQUIRE_RED_SEQUENCE)."""
    rows = [row for row in result.evaluation.get("red_sequence_confirmed", {}).get("thresholds", ())
            if abs(row["threshold"] - result.score_threshold) < 1e-9]
    return [f"recall at {result.score_threshold:g} counting only detections with a red-sequence peak: "
            f"{rows[0]['recall']:.3f} ({rows[0]['tp']} of {rows[0]['tp'] + rows[0]['fn']})"] if rows else []


def _purity_lines(result):
    """The held-out region's false candidates per deg^2 and whether each cluster is found exactly once."""
    from .evaluation.purity import rates_markdown

    if result.purity is None:
        return []
    at_cut = result.purity[result.purity["threshold"] == result.score_threshold][0]
    once = at_cut["n_found_once"] == at_cut["n_true"]
    return ["", "held-out region: false candidates per deg^2 (false: not the best candidate of a true cluster)", "",
            rates_markdown(result.purity),
            f"at the survey threshold {result.score_threshold:g}: {at_cut['false_per_deg2']:.1f} false candidates "
            f"per deg^2; every held-out cluster found exactly once: {'yes' if once else 'no'} "
            f"({at_cut['n_found_once']} of {at_cut['n_true']})"]


def candidates_beside_truth(candidates, truth, losses=None):
    """Markdown table of the survey candidates' red-sequence z and richness beside the true z and richness of
    the cluster each was cross-matched to (``catalog_id``), then the true clusters no candidate found, each with
    where the survey lost it and its best detection score when ``losses`` (`survey_losses`) has it; ""
    when the survey made no estimates (``DEEPCEE.REDSHIFT.IN_SURVEY`` off, or no candidate)."""
    if "z_est" not in candidates.colnames:
        return ""
    true_of = {str(row["id"]): row for row in truth}
    lines = ["| candidate | score | z (red sequence) | richness | true cluster | true z | true richness |",
             "|---|---:|---:|---:|---|---:|---:|"]
    found = set()
    for row in candidates:
        match = true_of.get(str(row["catalog_id"])) if "catalog_id" in candidates.colnames and row["known"] else None
        found.add(str(row["catalog_id"]) if match is not None else None)
        z, richness = (f"{row['z_est']:.3f} ± {row['z_err']:.3f}", f"{row['richness']:.0f}") if row["rs_peak"] \
            else ("no peak", "-")
        lines.append(f"| {row['name']} | {row['score']:.2f} | {z} | {richness} | "
                     + (f"{match['id']} | {match['z']:.3f} | {match['richness']:.0f} |" if match is not None
                        else "(none) | - | - |"))
    for identifier, row in true_of.items():
        if identifier not in found:
            stage, best = (losses or {}).get(identifier, (None, math.nan))
            why = "" if stage is None else f": {stage}" + (f", best score {best:.2f}" if math.isfinite(best) else "")
            lines.append(f"| (not found{why}) | - | - | - | {identifier} | {row['z']:.3f} | {row['richness']:.0f} |")
    return "survey candidates and the held-out truth:\n\n" + "\n".join(lines)


def _threshold_table(summary):
    """The precision / recall / F1 table (the paper's Table 2 layout) of an ``evaluation.json``."""
    from .evaluation.report import markdown_table

    table = Table(rows=summary["thresholds"])
    best = [row["threshold"] for row in summary["thresholds"]].index(summary["best"]["threshold"])
    return markdown_table(table, best)

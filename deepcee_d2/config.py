"""deepcee_d2's additions to detectron2's config: one ``add_deepcee_config(cfg)``.

Call it on ``detectron2.config.get_cfg()`` before ``merge_from_file``: yacs rejects keys it does not know,
so a YAML naming a ``DEEPCEE`` or ``MODEL.INCEPTION_V2`` key only loads after this. Nothing here changes
detectron2's global defaults; the paper's detector settings live in ``configs/Base-DeepCEE.yaml``.
"""
from pathlib import Path

import yaml

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg


def add_deepcee_config(cfg):
    """Add the ``MODEL.INCEPTION_V2`` and ``DEEPCEE`` namespaces, with their defaults, to ``cfg`` in place."""
    _C = cfg

    # ---- The Inception-v2 (BN-Inception) feature network and box head, as in TF-slim's inception_v2 ----
    _C.MODEL.INCEPTION_V2 = CN()
    # Channels of every layer are max(int(d * DEPTH_MULTIPLIER), MIN_DEPTH) for the layer table's d;
    # 1.0 is the published network, smaller values make a CPU-sized model with the same layout.
    _C.MODEL.INCEPTION_V2.DEPTH_MULTIPLIER = 1.0
    _C.MODEL.INCEPTION_V2.MIN_DEPTH = 16
    # Conv2d_1a_7x7 as a separable conv (depthwise x8 then 1x1 to 64), as in the TF object-detection model.
    _C.MODEL.INCEPTION_V2.USE_SEPARABLE_CONV = True
    # "FrozenBN" (fixed statistics and affine, for fine-tuning converted weights), "BN" (trained, the choice
    # when training from scratch) or "SyncBN" (multi-GPU).
    _C.MODEL.INCEPTION_V2.NORM = "BN"
    # TF's batch-norm epsilon. Momentum in PyTorch's convention: TF's decay 0.9997 would be 0.0003, whose
    # running statistics take ~10^4 steps to settle, longer than most CPU training runs.
    _C.MODEL.INCEPTION_V2.BN_EPS = 1e-3
    _C.MODEL.INCEPTION_V2.BN_MOMENTUM = 0.1
    # Feature maps the backbone returns: "Conv2d_2c_3x3" (stride 4), "Mixed_3b"/"Mixed_3c" (8), "Mixed_4a"-"Mixed_4e" (16).
    _C.MODEL.INCEPTION_V2.OUT_FEATURES = ["Mixed_4e"]
    # Box head: ROI crops of ROI_BOX_HEAD.POOLER_RESOLUTION (14) are max-pooled by this kernel and stride
    # (TF's maxpool_kernel_size / maxpool_stride, 2) to 7x7 before Mixed_5a-c.
    _C.MODEL.INCEPTION_V2.CROP_MAX_POOL = 2
    # Floating-point type of the convolutions of the backbone, the RPN's 3x3 conv and the box head: "float32"
    # or "bfloat16" (torch.autocast; on CPUs with AVX512-BF16 or AMX about half the detection time, BENCHMARKS
    # "Detector precision"). Their outputs, the RPN's and box predictor's layers stay float32.
    _C.MODEL.INCEPTION_V2.PRECISION = "float32"
    # MODEL.BACKBONE.FREEZE_AT counts the backbone's stages: 0 trains everything, 1 freezes the stem
    # (Conv2d_1a_7x7 to Conv2d_2c_3x3), 2 also Mixed_3b-3c, 3 the whole network up to Mixed_4e.

    _C.DEEPCEE = CN()
    # Training's initial MODEL.WEIGHTS must fit the model exactly (no missing, unexpected or reshaped
    # parameter), or training stops naming them. False lets fine-tuning start from weights of another head
    # (e.g. TF's COCO detector without its class predictor); inference and evaluation are always strict.
    _C.DEEPCEE.WEIGHTS_STRICT = True

    # ---- Cosmology for every physical length (flat LCDM; WHL12's H0 = 71 km/s/Mpc, Om = 0.27) ----
    _C.DEEPCEE.COSMOLOGY = CN()
    _C.DEEPCEE.COSMOLOGY.H0 = 71.0
    _C.DEEPCEE.COSMOLOGY.OM0 = 0.27

    # ---- Evaluation: matching in proper kpc, not IoU ----
    _C.DEEPCEE.EVAL = CN()
    # A detection is a true positive when its box centre lies within this proper distance of the true
    # cluster centre, at the true cluster's redshift.
    _C.DEEPCEE.EVAL.MATCH_RADIUS_KPC = 100.0
    # Confidence thresholds (fractions) at which precision, recall and F1 are tabulated: 0, 10, ..., 100 %.
    _C.DEEPCEE.EVAL.SCORE_THRESHOLDS = [i / 10 for i in range(11)]
    # Predictions within this distance of a true centre go into the centring histogram.
    _C.DEEPCEE.EVAL.HISTOGRAM_RADIUS_KPC = 250.0
    # Significance of the two-sample KS tests of recovered against all clusters: one parent distribution is
    # rejected when the exact p-value (scipy.stats.ks_2samp) is below it.
    _C.DEEPCEE.EVAL.KS_ALPHA = 0.05
    # False positives at the best threshold are cross-matched against these catalogue files (FITS, ECSV,
    # CSV, VOTable with ra, dec, z columns) within CROSSMATCH_RADIUS_KPC and the redshift window; a cluster
    # without z (X-ray, SZ lists, many Abell clusters) is matched at the prediction's z_est.
    _C.DEEPCEE.EVAL.CROSSMATCH_CATALOGS = []
    _C.DEEPCEE.EVAL.CROSSMATCH_RADIUS_KPC = 250.0
    _C.DEEPCEE.EVAL.CROSSMATCH_Z_RANGE = [0.05, 0.4]
    # Estimate z and richness of the predictions (deepcee_d2.redsequence, settings DEEPCEE.REDSHIFT) from the
    # g, r, i flux cutouts of the evaluated images, and report their accuracy against the annotated z and
    # richness (deepcee_d2.evaluation.redshifts). The flux cutouts are remade from REDSHIFT_IMAGING
    # ("fits:<folder of frames>", "sdss:<frames folder>" or "skyview"); "" is the imaging the data set was
    # built from (its COCO info), through the data set's cutout cache when it has one.
    _C.DEEPCEE.EVAL.REDSHIFTS = True
    _C.DEEPCEE.EVAL.REDSHIFT_IMAGING = ""
    # A redshift is an outlier when |z_est - z| / (1 + z) exceeds this (the report's outlier fraction; the
    # issue's and redMaPPer's 0.05).
    _C.DEEPCEE.EVAL.REDSHIFT_OUTLIER = 0.05
    # The stricter true-positive criterion: a prediction matches a true cluster only when it is also within
    # REDSHIFT_OUTLIER of its redshift (a prediction without a red-sequence peak then matches nothing).
    _C.DEEPCEE.EVAL.REQUIRE_REDSHIFT_MATCH = False

    # ---- The colour image the network sees (shared by training cutouts, evaluation and survey tiles) ----
    _C.DEEPCEE.COLOUR = CN()
    # "sqrt" (the paper), "linear", "log", "asinh" or "lupton" (Lupton et al. 2004, on the band mean)
    # stretch between fixed flux limits, the same for every image; bands in R, G, B order.
    _C.DEEPCEE.COLOUR.STRETCH = "sqrt"
    _C.DEEPCEE.COLOUR.BANDS = ["i", "r", "g"]
    # Limits in nanomaggies per 0.396" pixel of sky-subtracted frames (block averaging to the network size
    # keeps this unit). Measured on the SDSS frames in shared/data (benchmarks/data_colour_limits.py,
    # BENCHMARKS.md "Data sets"): pixel noise 0.026 (g), 0.039 (r), 0.064 (i); the sky level (0) is black so
    # noise stays dark grey (1 sigma at 6-8 % of full scale in r, i); a point source saturates only brighter than
    # r ~ 16.3, so cluster members (r ~ 17-21 at z = 0.1-0.2) are unsaturated and an r = 21 member's peak
    # still reaches ~ 10 % of full scale; extended galaxies saturate only brighter still (BCG cores).
    _C.DEEPCEE.COLOUR.LOWER = 0.0
    _C.DEEPCEE.COLOUR.UPPER = 10.0
    # Lupton's softening Q; used only by the "lupton" stretch.
    _C.DEEPCEE.COLOUR.LUPTON_Q = 8.0
    # Cutouts are CUTOUT_SIZE pixels at PIXEL_SCALE arcsec (SDSS: 2000 px at 0.396"), resampled to
    # NETWORK_SIZE pixels for the network (1000 px, so 0.792" per network pixel).
    _C.DEEPCEE.COLOUR.PIXEL_SCALE = 0.396
    _C.DEEPCEE.COLOUR.CUTOUT_SIZE = 2000
    _C.DEEPCEE.COLOUR.NETWORK_SIZE = 1000

    # ---- Imaging: frames resampled onto cutout and tile grids (deepcee_d2.data.resample) ----
    _C.DEEPCEE.IMAGING = CN()
    # "remap": the exact WCS transform on a checked coarse mesh + opencv's bilinear remap, ~35x fewer
    # core-seconds than "reproject" (reproject_interp on every pixel, kept as the reference), with pixels within
    # 0.23 sigma of the sky noise of it on the shared SDSS frames (BENCHMARKS.md, "Resampling frames onto tiles").
    _C.DEEPCEE.IMAGING.RESAMPLE_METHOD = "remap"
    # Largest error of the interpolated pixel mapping allowed by "remap", in frame pixels (0.01 px = 4 mas on
    # SDSS, far below its astrometric error); checked on every cutout.
    _C.DEEPCEE.IMAGING.RESAMPLE_TOLERANCE_PX = 0.01

    # ---- Data sets: cutouts around catalogued clusters (tools/prepare_dataset.py, deepcee_d2.data.coco) ----
    _C.DEEPCEE.DATA = CN()
    # Images per target cluster, each centred up to MAX_OFFSET_ARCSEC from it along x and along y (the paper:
    # 4 images, offsets up to 270" in 2000 px x 0.396" cutouts), so the network does not learn "centre = cluster".
    _C.DEEPCEE.DATA.N_OFFSETS = 4
    _C.DEEPCEE.DATA.MAX_OFFSET_ARCSEC = 270.0
    # Side of the ground-truth box, a proper length at the cluster's redshift (2 x 250 kpc).
    _C.DEEPCEE.DATA.BOX_SIZE_KPC = 500.0
    # "by-cluster" (no cluster annotated in both sets), "random" (the paper: images drawn at random), "train"
    # or "test" (every image in one set); TEST_FRACTION of the clusters (by-cluster) or images (random).
    _C.DEEPCEE.DATA.SPLIT = "by-cluster"
    _C.DEEPCEE.DATA.TEST_FRACTION = 0.1
    # Seeds the offsets and the split.
    _C.DEEPCEE.DATA.SEED = 0
    # The paper's training clusters (--select paper): WHL12 clusters with ZMIN < z < ZMAX, at least MIN_MEMBERS
    # members within r200 (N200), north of DEC_MIN_DEG, with an Abell centre within ABELL_RADIUS_KPC (proper,
    # at the WHL12 redshift: Abell centres are eyeball centres, often arcminutes from the BCG).
    _C.DEEPCEE.DATA.PAPER_SELECTION = CN()
    _C.DEEPCEE.DATA.PAPER_SELECTION.Z_RANGE = [0.1, 0.2]
    _C.DEEPCEE.DATA.PAPER_SELECTION.MIN_MEMBERS = 20
    _C.DEEPCEE.DATA.PAPER_SELECTION.DEC_MIN_DEG = 0.0
    _C.DEEPCEE.DATA.PAPER_SELECTION.ABELL_RADIUS_KPC = 500.0

    # ---- Training augmentation beyond detectron2's INPUT.RANDOM_FLIP (deepcee_d2.data.augment) ----
    _C.DEEPCEE.AUGMENT = CN()
    # Random quarter turns of each training image: the sky has no up. With INPUT.RANDOM_FLIP "horizontal"
    # they give all 8 orientations (vertical flips included), each equally likely; boxes turn exactly, so
    # labels stay centred on the BCG. Off: measured with the demo, it changed nothing on real SDSS frames (the
    # same false candidates, 19 against 20 of 32 injected clusters) and raised recall and false detections on
    # the synthetic test split alike (BENCHMARKS.md, "Quarter turns in training"). The CPU demo turns it on:
    # its measured configuration (configs/deepcee_demo_cpu.yaml).
    _C.DEEPCEE.AUGMENT.ROTATE_90 = False

    # ---- Survey inference: tiles, merging ----
    _C.DEEPCEE.SURVEY = CN()
    # The lowest redshift the survey looks for clusters at (the paper's training set: 0.1 < z < 0.2): it sets
    # the tile overlap (below), and lengths are turned into angles at it where a detection has no redshift
    # (the widest angle a cluster of the survey can span).
    _C.DEEPCEE.SURVEY.MIN_REDSHIFT = 0.1
    # Side of a survey tile in pixels at COLOUR.PIXEL_SCALE; 0 is COLOUR.CUTOUT_SIZE (the training images').
    # Tiles are binned by the training factor CUTOUT_SIZE / NETWORK_SIZE whatever their size, so clusters keep
    # the scale the network learnt; other sizes must be CUTOUT_SIZE plus a multiple of that factor x 16 (the
    # backbone's stride: data.colour.survey_tile_sizes says why), e.g. 3984 for the paper's 2000. Larger tiles
    # lose a smaller share to the overlap below (BENCHMARKS.md, "Tile size and proposals").
    _C.DEEPCEE.SURVEY.TILE_SIZE = 0
    # Overlap of neighbouring tiles in arcsec, so that a cluster cut by one tile's edge is whole in the next.
    # 0 means the largest cluster box the survey looks for: DATA.BOX_SIZE_KPC at MIN_REDSHIFT (500 kpc at
    # z = 0.1: 272.9"); smaller positive values are refused.
    _C.DEEPCEE.SURVEY.TILE_OVERLAP_ARCSEC = 0.0
    # Detections of one cluster (from overlapping tiles, and its bright members detected on their own) are one
    # candidate: in descending score, each candidate absorbs the detections within this proper radius at its
    # redshift (column z_est when the detections have it, else MIN_REDSHIFT). 500 kpc is half the r200 of the
    # poorest clusters of the paper's cut (R_L* = 20: 1.0 Mpc) and the largest radius that never merges two
    # clusters of the demo's held-out layout (>= 300" apart; 500 kpc is <= 274" at z >= 0.1): at 1000 kpc,
    # 55 % of its clusters have a neighbour within reach (BENCHMARKS.md, "One candidate per cluster").
    _C.DEEPCEE.SURVEY.MERGE_RADIUS_KPC = 500.0
    # The network can score a bright member hundreds of kpc from the BCG as high as the BCG, and the merged
    # candidate then stands on the member. A candidate stands instead on the detection of its group whose BCG
    # (the brightest red-sequence member within REDSHIFT.RICHNESS_BCG_RADIUS_KPC, column bcg_rmag of the tiles)
    # is brightest among those scoring within this margin of the group's best; it keeps the best score. 0: the
    # best-scored detection. Needs REDSHIFT.IN_SURVEY; a change reuses the tiles. Over 40 injection rounds and
    # two held-out regions it lost 1 cluster and gained 5 (BENCHMARKS.md, "Forty rounds of the SEED-8 model").
    _C.DEEPCEE.SURVEY.BCG_SCORE_MARGIN = 0.1
    # Of the detections whose BCGs lie within this many mag of that brightest one, the best-scored: the Kron
    # magnitudes of bright galaxies in cluster cores are off by 0.1-0.7 mag (deblending), so a closer pair is a
    # near-tie, which the score decides.
    _C.DEEPCEE.SURVEY.BCG_MAG_MARGIN = 0.5
    # Candidates below this score are not written to the catalogue. Set from the false-candidate rate:
    # tools/choose_threshold.py gives the lowest score whose rate on sky without clusters (or with known
    # truth) is at most TARGET_FALSE_PER_DEG2. With REQUIRE_RED_SEQUENCE the demo model gives 0 false candidates
    # on 1.09 deg^2 of sky without clusters at every score >= 0.2, so that rule alone would give 0.2; 0.5 keeps
    # fewer pieces of clusters beside them (0.21 against 0.29 false candidates per injected cluster on real
    # sky) and finds the same injected clusters (BENCHMARKS.md, "Red-sequence confirmation").
    _C.DEEPCEE.SURVEY.SCORE_THRESHOLD = 0.5
    # The false candidates per deg^2 a survey may give at its SCORE_THRESHOLD (issue 15 asks <= 2 per deg^2).
    _C.DEEPCEE.SURVEY.TARGET_FALSE_PER_DEG2 = 2.0
    # Crowded sky is masked: a tile whose red-sequence photometry (REDSHIFT.IN_SURVEY) finds more sources per
    # arcmin^2 than this gives no candidates and its area is not searched area (catalogue metadata MASKDEG2).
    # On the shared SDSS frames the high-latitude tiles hold 3.0-7.0 (up to 10.8 with two injected
    # clusters), the demo's synthetic tiles with clusters up to 7.7, the frame of the globular cluster M2
    # 13.8-41.1 (BENCHMARKS.md, "Crowded sky masked"). For SDSS depth; deeper imaging has more sources and
    # needs its own value. 0.0: no mask.
    _C.DEEPCEE.SURVEY.MAX_SOURCE_DENSITY = 12.0
    # Candidates must show a red sequence: detections without a red-sequence peak at their position (column
    # rs_peak of the survey's photometry, REDSHIFT.IN_SURVEY) give no candidates. With the demo model at 0.5:
    # false candidates on 1.09 deg^2 of synthetic sky without clusters 12 -> 0, on the shared SDSS frames
    # without injection 2 -> 0; injected clusters found 23 of 24 on real high-latitude sky and 24 of 24 on
    # its synthetic twins either way; test-split recall 0.975 -> 0.944 (BENCHMARKS.md, "Red-sequence
    # confirmation"). The estimator's red sequence is SDSS g, r, i at 0.04 < z < 0.5 (REDSHIFT.Z_GRID): beyond
    # that, or for other imaging, set False (the network's candidates alone, the paper's method).
    _C.DEEPCEE.SURVEY.REQUIRE_RED_SEQUENCE = True
    # Percolation: a cluster's bright members beyond MERGE_RADIUS_KPC can be detected on their own, and the red
    # sequence under such a piece is the cluster's. When the catalogue is built, every red-sequence peak is
    # tested against the richer clusters around it (redsequence.percolate, from the scans the tiles keep): a
    # piece loses its peak and, with REQUIRE_RED_SEQUENCE, is no candidate. Needs REDSHIFT.IN_SURVEY; a change
    # reuses the tiles.
    _C.DEEPCEE.SURVEY.PERCOLATE = True
    # A peak is lost only when those richer clusters explain at least this many sigma of it: a poor cluster just
    # above REDSHIFT.MIN_SIGNIFICANCE beside a neighbour whose profile's tail takes a sigma or two keeps its peak.
    # With the demo model on 8 rounds of injected clusters: on real SDSS sky 9 -> 8 false candidates, on the
    # synthetic twins 12 -> 7, the demo's held-out region 4 -> 3, no cluster lost; 2.0 took more pieces (real
    # 9 -> 5) and one cluster in 48 there and one of the demo's 6 (BENCHMARKS.md, "Percolation").
    _C.DEEPCEE.SURVEY.PERCOLATE_MIN_DROP = 2.5
    # Tile files keep every detection scoring at least this (or SCORE_THRESHOLD, when lower), so that the
    # false-candidate rate below SCORE_THRESHOLD can be measured from a run and the threshold changed without
    # rerunning the detector; the catalogue is cut at SCORE_THRESHOLD.
    _C.DEEPCEE.SURVEY.KEEP_SCORE_FLOOR = 0.2
    # Region proposals per tile that the survey's detector passes to the box head, at most: it replaces
    # MODEL.RPN.POST_NMS_TOPK_TEST (evaluation's, 300 as in the paper) in the survey when smaller; 0 keeps that
    # value. The box head on 300 proposals is 40-75 % of a tile's detection time (1000 and 500 px network
    # images), and a tile holds a few clusters: on the demo's held-out region 100 and 300 give the same
    # catalogue (scores to 0.001) with 500 and 1000 px network images, and 100 lose no recall on the first 40
    # of its test images (BENCHMARKS.md, "Tile size and proposals", "Test proposals against recall and time").
    _C.DEEPCEE.SURVEY.POST_NMS_TOPK_TEST = 100
    # Boxes per tile that the RPN passes to its NMS, at most: replaces MODEL.RPN.PRE_NMS_TOPK_TEST (6000) in the
    # survey when smaller; 0 keeps that value. The NMS over 6000 boxes was ~10 % of a 500 px image's detection
    # (float32; more in bfloat16); with the 100 proposals above, 2000 and 1000 give detections identical to
    # 6000's on the demo's test images (BENCHMARKS.md, "Pre-NMS boxes"). Since DeepCEERPN runs its NMS on the
    # best-scored boxes first, either costs a few ms.
    _C.DEEPCEE.SURVEY.PRE_NMS_TOPK_TEST = 2000
    # PyTorch and opencv threads of each survey worker (find_clusters --threads-per-worker). 1: one
    # single-threaded worker per core, so that a tile's floating-point work, and so the catalogue, does not
    # depend on the number of workers (benchmarks/bench_workers.py measures other splits of a node's cores).
    _C.DEEPCEE.SURVEY.TORCH_THREADS_PER_WORKER = 1

    # ---- Redshift and richness of a detection from its red sequence (deepcee_d2.redsequence) ----
    _C.DEEPCEE.REDSHIFT = CN()
    # The survey estimates z and richness of every detection from its tile's g, r, i flux images (catalogue
    # columns z_est, z_err, richness, rs_significance, rs_peak): photometry once per tile (with detections or
    # not: it also measures the tile's crowding, SURVEY.MAX_SOURCE_DENSITY), ~4 core-seconds for a 2000 px tile of real SDSS frames imaged whole (9-12 on crowded fields), ~0.01-0.15 s
    # more per detection: the largest part of a survey's time with bfloat16 detection (BENCHMARKS.md).
    _C.DEEPCEE.REDSHIFT.IN_SURVEY = True
    # Red-sequence background: an ECSV table of deepcee_d2.redsequence.measure_background (densities per
    # trial z) measured on blank fields of the imaging searched; "" is the packaged one of the synthetic sky
    # (deepcee_d2/synthetic/red_sequence_background.ecsv). Why a calibration and not the survey's own tiles:
    # deepcee_d2.redsequence, "Where the background comes from". Real SDSS imaging needs its own.
    _C.DEEPCEE.REDSHIFT.BACKGROUND_FILE = ""
    # tools/measure_background.py --known CATALOGUE leaves out the sky within this proper radius of each known
    # cluster (at its redshift; at SURVEY.MIN_REDSHIFT for one without): the background is the field's, and on a
    # few frames one cluster is not a small share of it (BENCHMARKS.md, "A known X-ray cluster on the shared
    # frames"). 500 kpc is the scan's own radius (SCAN_RADIUS_KPC), where a cluster's members are counted.
    _C.DEEPCEE.REDSHIFT.BACKGROUND_EXCLUDE_KPC = 500.0
    # Galactic reddening: a folder holding the Schlegel, Finkbeiner & Davis (1998) dust map's two files
    # (SFD_dust_4096_ngp.fits, _sgp.fits; the dustmaps package downloads them, README "Galactic reddening"). The
    # sources are then dereddened before the red-sequence scan (E(B-V) = 0.1 moves g - r by 0.10 mag, z by
    # ~0.04; BENCHMARKS.md "Galactic reddening"), and each detection gets its E(B-V) (column ebv). "" leaves
    # colours as imaged: right for the synthetic sky, which has no Galactic reddening; real imaging needs the map.
    _C.DEEPCEE.REDSHIFT.DUST_MAP_DIR = ""
    # Source detection on the r image: pixels above DETECT_NSIGMA x the sky noise after smoothing with a
    # Gaussian of SMOOTH_FWHM_PIXELS (about the seeing, 1.4" = 3.5 px), at least DETECT_NPIXELS connected;
    # touching sources are split by Source Extractor's multi-threshold deblending (SEP, deepcee_d2.redsequence).
    _C.DEEPCEE.REDSHIFT.DETECT_NSIGMA = 1.5
    _C.DEEPCEE.REDSHIFT.DETECT_NPIXELS = 5
    _C.DEEPCEE.REDSHIFT.SMOOTH_FWHM_PIXELS = 3.0
    # Colours come from one circular aperture of this radius (arcsec) in g, r and i: ~1.4 x the typical
    # seeing FWHM, so it holds most of a galaxy's core light and little of its neighbours'.
    _C.DEEPCEE.REDSHIFT.APERTURE_RADIUS_ARCSEC = 2.0
    # Correct the aperture colours for the bands' seeing: each band's aperture fluxes are divided by its share
    # of a point source's light in the aperture relative to r's, measured on the cutout's own stars
    # (deepcee_d2.psf.aperture_corrections; a cutout with fewer than 5 such stars keeps its colours as imaged).
    # Real SDSS bands differ in seeing by up to 1.4 x within one field, which reddens its aperture colours by
    # 0.05 mag; corrected, clusters injected into such a field through its own PSFs come out +0.004 (1 + z)
    # instead of +0.019, and on the synthetic sky -0.000 instead of +0.004. But it costs red-sequence
    # confirmations on real sky (at the injected clusters' true centres 40 of 48 against 42: as imaged, that
    # field's reddened colours peak at a higher trial z with a larger excess, and a 1000 px tile's few stars
    # make noisy corrections), so off by default (BENCHMARKS.md, "Aperture-corrected colours"). The
    # background file must be measured with the same setting.
    _C.DEEPCEE.REDSHIFT.APERTURE_CORRECTION = False
    # Leave point sources out of the red-sequence counts (scan, richness, background): told from galaxies by
    # their r concentration m(1") - m(3") against the cutout's own stellar locus (deepcee_d2.psf.
    # separate_point_sources; a cutout without a locus, or a crowded one whose locus is too wide, keeps all).
    # K dwarfs have the red sequence's colours at 0.1 < z < 0.2. The background file must be measured with the
    # same setting.
    _C.DEEPCEE.REDSHIFT.EXCLUDE_POINT_SOURCES = False
    # Trial redshifts (start, stop, step) of the red-sequence scan; the redMaPPer DR8 calibration covers
    # 0.05-0.6.
    _C.DEEPCEE.REDSHIFT.Z_GRID = [0.04, 0.5, 0.005]
    # Galaxies that can be red-sequence members at trial z: m*(z) + BRIGHT_MAG <= r <= m*(z) + FAINT_MAG.
    # FAINT_MAG = 1.75 is 0.2 L* (redMaPPer's limit); BCGs are m* - 1.5 - 0.75 log10(R_L* / 20) +- 0.3.
    _C.DEEPCEE.REDSHIFT.BRIGHT_MAG = -3.0
    _C.DEEPCEE.REDSHIFT.FAINT_MAG = 1.75
    # Proper radius (kpc) of the red-sequence scan around the detection, which finds the redshift.
    _C.DEEPCEE.REDSHIFT.SCAN_RADIUS_KPC = 500.0
    # Colour errors below this floor (mag) are raised to it (aperture colours of neighbours, PSF mismatch).
    _C.DEEPCEE.REDSHIFT.COLOUR_ERROR_FLOOR = 0.03
    # Added in quadrature to the statistical z error: aperture colours are biased by the bands' different
    # seeing (g - r, r - i ~ 0.015 mag too red on the synthetic sky), which moves z by ~ 0.005-0.01.
    _C.DEEPCEE.REDSHIFT.Z_ERROR_FLOOR = 0.008
    # A detection has a red-sequence peak when the background-subtracted weighted count at the best trial
    # z exceeds its noise by this factor; otherwise its z and richness are flagged (has_peak false). Blank
    # synthetic fields reach 0.5-1.5, clusters of >= 20 members a median of ~4 (BENCHMARKS.md).
    _C.DEEPCEE.REDSHIFT.MIN_SIGNIFICANCE = 3.0
    # Richness: WHL12's R_L* (the r luminosity, in L*, of the members brighter than 0.42 L* within r200, BCG
    # included), estimated from the number of red-sequence members brighter than m* + RICHNESS_FAINT_MAG (M_r =
    # -20.5, 0.42 L*: WHL12's and the simulator's cut) within r200 (deepcee_d2.redsequence, step 4). A member's
    # colours lie within chi^2 <= RICHNESS_MEMBER_CHI2 of the red sequence (2 colours: 9.21 holds 99 % of the
    # members; a hard cut, because Gaussian weights multiply each member by a random factor). The BCG is the
    # brightest member within RICHNESS_BCG_RADIUS_KPC (proper; the evaluation's 100 kpc match radius) of the
    # detection and counts once; the other members count within RICHNESS_APERTURE_R200 x r200 (1: the radius
    # the catalogue's R_L* is measured in; r200 of the estimated richness, WHL12), background subtracted,
    # divided by the share of the members that the aperture's part inside the image holds (projected NFW).
    # Changing the detection, the colour aperture, the chi^2 or the magnitudes needs the background measured
    # again (BACKGROUND_FILE; reading one measured otherwise is refused).
    _C.DEEPCEE.REDSHIFT.RICHNESS_FAINT_MAG = 0.94
    _C.DEEPCEE.REDSHIFT.RICHNESS_MEMBER_CHI2 = 9.21
    _C.DEEPCEE.REDSHIFT.RICHNESS_BCG_RADIUS_KPC = 100.0
    _C.DEEPCEE.REDSHIFT.RICHNESS_APERTURE_R200 = 1.0
    # The number of members N is mapped onto R_L* by log10 R = RICHNESS_INTERCEPT + RICHNESS_SLOPE log10 N +
    # RICHNESS_Z_SLOPE (z - 0.2) (deepcee_d2.redsequence.RICHNESS_Z_PIVOT), fitted with equal weight on three
    # sets of synthetic clusters with seeds disjoint from every test set: 20 fields of 1200 px centred on a
    # cluster at 0.1 < z < 0.2 with >= 20 members, 20 at 0.05 < z < 0.35, and 320 cutouts of the demo data
    # set's train split (1000 px, cluster up to 100" off centre: the evaluator's geometry)
    # (benchmarks/bench_redshift.py --calibrate --n-clusters 40 --dataset .../train.json) with SEP's
    # photometry (BENCHMARKS.md, "SEP photometry adopted"; the method: "Redshift and richness"). The z term
    # carries the faint members lost to the depth at higher z and the mean member luminosity's drift; the slope
    # below 1 is regression dilution (N is noisy: most of r200 lies outside a 1000 px image at z < 0.2).
    _C.DEEPCEE.REDSHIFT.RICHNESS_INTERCEPT = 0.566
    _C.DEEPCEE.REDSHIFT.RICHNESS_SLOPE = 0.693
    _C.DEEPCEE.REDSHIFT.RICHNESS_Z_SLOPE = 0.613
    return cfg


def flat_config(node, skip=(), prefix=""):
    """The leaves of a config as one dict keyed by full name ("SOLVER.BASE_LR": 0.0002), leaving out every key
    whose full name starts with one of ``skip`` (a section: end it with "."; a bare name also drops keys that
    merely begin with it)."""
    flat = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flat_config(value, skip, name + "."))
        elif not name.startswith(tuple(skip)):
            flat[name] = value
    return flat


def load_config(config_file=None, opts=()):
    """detectron2's defaults + ``add_deepcee_config`` + a YAML file (``_BASE_`` relative to it) + overrides.

    Parameters
    ----------
    config_file : str or Path, optional
        The experiment YAML.
    opts : sequence of str
        ``KEY VALUE`` pairs, as trailing command-line arguments.

    Raises
    ------
    FileNotFoundError
        When ``config_file`` does not exist.
    ValueError
        When the file or the overrides name a key that does not exist, naming the file and the key; when a
        file (or one of its ``_BASE_``) is not plain YAML: python tags (``!!python/...``) are refused, never run.
    """
    cfg = add_deepcee_config(get_cfg())
    if config_file is not None:
        if not Path(config_file).is_file():
            raise FileNotFoundError(f"{config_file}: config file not found")
        try:
            # detectron2 defaults to allow_unsafe=True, which runs python tags; safe_load for the whole _BASE_ chain.
            cfg.merge_from_file(str(config_file), allow_unsafe=False)
        except KeyError as error:
            raise ValueError(f"{config_file}: {error.args[0]} (in this file or one it names as _BASE_)") from None
        except yaml.constructor.ConstructorError as error:  # its mark names the file of the _BASE_ chain at fault
            raise ValueError(f"{config_file}: a YAML tag that would construct a python object; configs are read "
                             f"with yaml.safe_load and such tags are refused, never run: {error}") from None
        except yaml.YAMLError as error:
            raise ValueError(f"{config_file}: not valid YAML: {error}") from None
    try:
        cfg.merge_from_list(list(opts))
    except (KeyError, AssertionError) as error:  # yacs asserts on unknown keys and odd-length lists
        raise ValueError(f"command-line overrides: {error.args[0]}") from None
    return cfg

"""Survey inference: tiling, merging across tiles, Dask execution, resume, failures, outputs.

Most tests use `BrightestBlobDetector`, a plain image-processing detector (local maxima of the red channel
above a level), so that tiling and merging are checked against known cluster positions; one test runs a
trained Deep-CEE model through the same code. Dask runs in this process (``processes=False``) except in
the test where worker processes are the point.
"""
import dataclasses
import html
import math
import runpy
import shutil
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table, vstack
from scipy import ndimage

from deepcee_d2.config import load_config
from conftest import make_sky_wcs
from deepcee_d2.data.frames import LocalFITSSource, read_frame_header
from deepcee_d2.engine import Trainer
from deepcee_d2.redsequence import ESTIMATE_COLUMNS, SOURCE_DENSITY_KEY
from deepcee_d2.survey.outputs import red_sequence_text
from deepcee_d2.survey.run import ImagingSpec, find_clusters
from deepcee_d2.survey.tiling import (
    crowded, field_coverage, field_name, frame_tiles, inside_tiles, merge_detections, plan_folder_tiles, plan_region_tiles,
    tile_centres_1d, tile_geometry,
)

REPO = Path(__file__).resolve().parents[1]
# Tiles of 200 px (79.2") shown at 100 px; cluster boxes of 30 kpc, 16.5" at the survey's lowest z = 0.1, so
# tiles overlap by >= 16.5" and reach 8.2" past the 600 px (237.6") fields: 4 x 4 tiles per field.
SURVEY_OPTS = ["MODEL.DEVICE", "cpu", "DEEPCEE.COLOUR.CUTOUT_SIZE", "200", "DEEPCEE.COLOUR.NETWORK_SIZE", "100",
               "MODEL.ANCHOR_GENERATOR.SIZES", "[[16, 32]]", "DEEPCEE.SURVEY.SCORE_THRESHOLD", "0.5",
               "DEEPCEE.DATA.BOX_SIZE_KPC", "30.0", "DEEPCEE.SURVEY.MIN_REDSHIFT", "0.1",
               "DEEPCEE.SURVEY.MERGE_RADIUS_KPC", "25.0", "INPUT.MIN_SIZE_TEST", "100", "INPUT.MAX_SIZE_TEST", "100",
               "DEEPCEE.SURVEY.REQUIRE_RED_SEQUENCE", "False", "DEEPCEE.SURVEY.PERCOLATE", "False"]
# 25 kpc at MIN_REDSHIFT 0.1 is 13.7": merging within the tiles' 16.5" overlap. The blobs are no clusters: the
# tests of tiling and merging list every detection (red-sequence confirmation and percolation have tests of
# their own).


def survey_cfg(*opts):
    return load_config(REPO / "configs" / "Base-DeepCEE.yaml", SURVEY_OPTS + list(opts))


class BrightestBlobDetector:
    """Boxes of ``size`` network pixels on local maxima of the red channel brighter than ``level`` (the ``top``
    brightest, or all); with ``fail_after`` it raises on its n-th image, like a worker that dies mid-run."""

    def __init__(self, level=150, size=24, fail_after=None, top=None):
        self.level, self.size, self.fail_after, self.top = level, size, fail_after, top
        # fail_after changes no detection, so a resumed run has the same manifest; the failing detector only
        # runs in worker processes of its own (the resume test), never in this process's worker cache.
        self.cache_key = f"blobs-{level}-{size}" + ("" if top is None else f"-top{top}")

    def __call__(self):
        calls = []

        def detect(rgb):
            calls.append(1)
            if self.fail_after is not None and len(calls) > self.fail_after:
                raise RuntimeError("worker died")
            red = rgb[:, :, 0].astype(float)
            peaks = (red == ndimage.maximum_filter(red, size=9)) & (red >= self.level)
            labels, n = ndimage.label(peaks)
            centres = np.array(ndimage.center_of_mass(peaks, labels, range(1, n + 1))).reshape(-1, 2)
            y, x = centres[:, 0] + 0.5, centres[:, 1] + 0.5  # array index -> box coordinates
            boxes = np.stack([x - self.size / 2, y - self.size / 2, x + self.size / 2, y + self.size / 2], axis=1)
            scores = np.array([red[int(r), int(c)] / 255 for r, c in centres])
            if self.top is not None:
                best = np.argsort(-scores, kind="stable")[:self.top]
                boxes, scores = boxes[best], scores[best]
            return boxes, scores

        return detect


def same_column(a, b):
    """Equal values, NaN equal to NaN (a candidate without a red-sequence peak has NaN z)."""
    return np.array_equal(a, b, equal_nan=np.asarray(a).dtype.kind == "f")


def truth_coords(root):
    truth = Table.read(Path(root) / "clusters.fits")
    return SkyCoord(truth["bcg_ra"], truth["bcg_dec"], unit=u.deg)


def field_tiles(root, cfg):
    side, overlap = tile_geometry(cfg)
    tiles, problems = plan_folder_tiles(LocalFITSSource(root), side, overlap)
    return tiles, problems


def test_tile_centres_cover_with_overlap():
    for length, tile, overlap in [(600, 200, 64), (1000, 200, 64), (201, 200, 50), (150, 200, 50), (2048, 2000, 511)]:
        centres = tile_centres_1d(length, tile, overlap)
        if length <= tile:
            assert centres.tolist() == [length / 2]
            continue
        assert centres[0] - tile / 2 == pytest.approx(0) and centres[-1] + tile / 2 == pytest.approx(length)
        assert np.all(np.diff(centres) <= tile - overlap + 1e-9)  # neighbours share >= overlap


def test_tile_geometry_from_config():
    side, overlap = tile_geometry(load_config(REPO / "configs" / "Base-DeepCEE.yaml"))
    assert side.to_value(u.arcsec) == pytest.approx(792)  # 2000 px x 0.396"
    # The 500 kpc box at z = 0.1 (flat LCDM, H0 = 71, Om = 0.27): 1.822 proper kpc per arcsec.
    assert overlap.to_value(u.arcsec) == pytest.approx(500 / 1.822, rel=2e-3)
    higher = tile_geometry(load_config(REPO / "configs" / "Base-DeepCEE.yaml", ["DEEPCEE.SURVEY.MIN_REDSHIFT", "0.2"]))
    assert higher[1] < 0.6 * overlap  # boxes shrink with redshift
    with pytest.raises(ValueError, match="smaller than the largest cluster box"):
        tile_geometry(load_config(REPO / "configs" / "Base-DeepCEE.yaml",
                                  ["DEEPCEE.SURVEY.TILE_OVERLAP_ARCSEC", "100.0"]))
    with pytest.raises(ValueError, match="must be smaller than the tile side.*MIN_REDSHIFT"):
        tile_geometry(load_config(REPO / "configs" / "Base-DeepCEE.yaml", ["DEEPCEE.SURVEY.MIN_REDSHIFT", "0.03"]))


@pytest.mark.parametrize("rotation_deg", [None, 35.0])
def test_tiles_cover_a_rotated_frame_whole_and_hold_every_cluster_box(shared_data, rotation_deg):
    """The real r frame of 5194-2-0540 (its columns 94.7 degrees from north) and the same frame turned to 35
    degrees, with the paper's tiles: every pixel lies in a tile, and so does every 500 kpc box at z >= 0.1
    centred anywhere on the frame."""
    frame = read_frame_header(shared_data / "sdss" / "frame-r-005194-2-0540.fits.bz2")
    if rotation_deg is not None:
        centre = frame.wcs.pixel_to_world(1023.5, 744.0)
        frame = dataclasses.replace(frame, wcs=make_sky_wcs(centre.ra.deg, centre.dec.deg, frame.shape,
                                                            rotation_deg=rotation_deg))
    side, box = tile_geometry(load_config(REPO / "configs" / "Base-DeepCEE.yaml"))
    tiles = frame_tiles("frame-005194-2-0540", frame, side, box)
    rng = np.random.default_rng(3)
    height, width = frame.shape
    points = frame.wcs.pixel_to_world(rng.uniform(-0.5, width - 0.5, 4000), rng.uniform(-0.5, height - 0.5, 4000))
    assert inside_tiles(points, tiles, side).all()
    half = box / 2 * 0.999
    corners = [points[:400].spherical_offsets_by(dx, dy) for dx, dy in [(-half, -half), (half, -half), (half, half),
                                                                       (-half, half)]]
    whole = np.zeros(400, bool)
    for tile in tiles:
        whole |= np.all([inside_tiles(corner, [tile], side) for corner in corners], axis=0)
    assert whole.all()
    coverage = field_coverage([frame], shared_data / "sdss", tiles, side, bands=("r",))
    assert coverage["searched_fraction"][0] == 1.0
    assert coverage["imaged_deg2"][0] == pytest.approx(width * height * (0.396 / 3600) ** 2, rel=0.01)
    first_row = [tile for tile in tiles if "_r000_" not in tile.tile_id]
    assert field_coverage([frame], shared_data / "sdss", first_row, side, bands=("r",))["searched_fraction"][0] < 0.9


def test_field_names_for_sdss_and_synthetic_layouts(tmp_path):
    assert field_name(tmp_path / "frame-g-002583-2-0136.fits.bz2", tmp_path, "g") == "frame-002583-2-0136"
    assert field_name(tmp_path / "f000" / "frame-r.fits", tmp_path, "r") == "f000"
    assert field_name(tmp_path / "run1" / "frame-i-000001-1-0001.fits", tmp_path, "i") == "run1/frame-000001-1-0001"


def test_region_tiles_cover_the_box_at_every_declination():
    side, overlap = 0.2 * u.deg, 0.05 * u.deg
    tiles = plan_region_tiles((10.0, 11.0), (59.0, 60.0), side, overlap)
    rows = {}
    for tile in tiles:
        rows.setdefault(tile.dec, []).append(tile.ra)
    assert min(rows) - 0.1 == pytest.approx(59.0) and max(rows) + 0.1 == pytest.approx(60.0)
    for dec, ras in rows.items():
        ras = np.sort(ras)
        # On the sky, neighbours are at most side - overlap apart even at the row's widest (lowest) Dec.
        widest = math.cos(math.radians(dec - 0.1))
        assert np.all(np.diff(ras) * widest <= 0.15 + 1e-9)
        assert ras[0] - 0.1 / widest <= 10.0 + 1e-9 and ras[-1] + 0.1 / widest >= 11.0 - 1e-9


def test_merge_keeps_the_best_score_and_ignores_tile_order():
    detections = Table({"ra": [150.0, 150.0 + 5 / 3600, 150.1], "dec": [2.0, 2.0, 2.0], "score": [0.7, 0.9, 0.8],
                        "field": ["f"] * 3, "tile": ["t1", "t2", "t1"], "tile_x": [1.0, 2, 3], "tile_y": [1.0, 2, 3],
                        "field_x": [1.0, 2, 3], "field_y": [1.0, 2, 3], "box_width": [10.0] * 3,
                        "box_height": [10.0] * 3})
    merged = merge_detections(detections, 36 * u.kpc, 0.1)  # 19.8" at z = 0.1
    assert list(merged["score"]) == [0.9, 0.8] and list(merged["n_merged"]) == [2, 1]
    shuffled = merge_detections(detections[::-1], 36 * u.kpc, 0.1)
    assert all(np.array_equal(merged[c], shuffled[c]) for c in merged.colnames)


def merge_pieces_table(z_est=None):
    """A cluster at (150, 2) scored 0.9 and a piece of it 200" east scored 0.7, 200" = 364 kpc at z = 0.1 and
    654 kpc at z = 0.2; a third, unrelated detection 0.5 deg away."""
    ra = [150.0, 150.0 + 200 / 3600 / np.cos(np.radians(2.0)), 150.5]
    table = Table({"ra": ra, "dec": [2.0] * 3, "score": [0.9, 0.7, 0.8], "tile": ["t1", "t1", "t2"]})
    if z_est is not None:
        table["z_est"] = z_est
    return table


def test_merging_is_by_proper_distance_at_each_candidates_redshift():
    # Without z_est every radius is taken at the survey's lowest redshift.
    assert list(merge_detections(merge_pieces_table(), 500 * u.kpc, 0.1)["n_merged"]) == [2, 1]
    assert list(merge_detections(merge_pieces_table(), 500 * u.kpc, 0.2)["n_merged"]) == [1, 1, 1]
    # With z_est the best-scored detection's redshift decides; NaN or masked falls back to MIN_REDSHIFT.
    merged = merge_detections(merge_pieces_table([0.2, 0.1, 0.1]), 500 * u.kpc, 0.1)
    assert list(merged["score"]) == [0.9, 0.8, 0.7]
    merged = merge_detections(merge_pieces_table([np.nan, 0.2, 0.2]), 500 * u.kpc, 0.1)
    assert list(merged["score"]) == [0.9, 0.8] and list(merged["n_merged"]) == [2, 1]
    masked = Table(merge_pieces_table([0.2, 0.2, 0.2]), masked=True)
    masked["z_est"].mask = [True, False, False]
    assert list(merge_detections(masked, 500 * u.kpc, 0.1)["n_merged"]) == [2, 1]
    with pytest.raises(ValueError, match="one positive proper length"):
        merge_detections(merge_pieces_table(), 100 * u.arcsec, 0.1)
    with pytest.raises(ValueError, match="MIN_REDSHIFT must be finite and > 0"):
        merge_detections(merge_pieces_table(), 500 * u.kpc, 0.0)


def test_a_candidate_stands_on_the_detection_of_its_brightest_bcg_within_the_score_margin():
    """The cluster's own detection (0.9) and a piece 364 kpc east (0.93) on a member 1.2 mag fainter than the
    BCG: by score the candidate stands on the piece; within a margin of 0.05 on the BCG, keeping 0.93 and the
    count. A margin that does not reach the BCG's detection, a piece with the brighter BCG, BCGs within the
    magnitude margin of each other (a near-tie) or no BCG magnitudes leave it on the best-scored detection."""
    table = merge_pieces_table([0.1, 0.1, 0.1])
    table["score"] = [0.9, 0.93, 0.8]
    table["bcg_rmag"] = [15.0, 16.2, 17.0]
    by_score = merge_detections(table, 500 * u.kpc, 0.1)
    on_bcg = merge_detections(table, 500 * u.kpc, 0.1, bcg_margin=0.05)
    assert list(by_score["ra"][:1]) == [table["ra"][1]] and list(on_bcg["ra"][:1]) == [table["ra"][0]]
    assert list(on_bcg["score"]) == [0.93, 0.8] and list(on_bcg["n_merged"]) == [2, 1]
    assert on_bcg["bcg_rmag"][0] == 15.0 and on_bcg["ra"][1] == table["ra"][2]
    assert merge_detections(table, 500 * u.kpc, 0.1, bcg_margin=0.02)["ra"][0] == table["ra"][1]
    brighter_piece = table.copy()
    brighter_piece["bcg_rmag"][1] = 14.5
    assert merge_detections(brighter_piece, 500 * u.kpc, 0.1, bcg_margin=0.05)["ra"][0] == table["ra"][1]
    unmeasured = table.copy()
    unmeasured["bcg_rmag"] = np.nan
    assert merge_detections(unmeasured, 500 * u.kpc, 0.1, bcg_margin=0.05)["ra"][0] == table["ra"][1]
    assert merge_detections(table[["ra", "dec", "score", "tile", "z_est"]], 500 * u.kpc, 0.1,
                            bcg_margin=0.05)["ra"][0] == table["ra"][1]
    # BCGs within bcg_mag_margin of the brightest are a near-tie: the best-scored of them is the centre.
    assert merge_detections(table, 500 * u.kpc, 0.1, bcg_margin=0.05, bcg_mag_margin=1.0)["ra"][0] == table["ra"][0]
    assert merge_detections(table, 500 * u.kpc, 0.1, bcg_margin=0.05, bcg_mag_margin=1.5)["ra"][0] == table["ra"][1]
    three = vstack([table, table[:1]])
    three["ra"][3] += 100 / 3600  # a third detection of the group, 182 kpc from the BCG's, scored 0.92
    three["score"][3], three["bcg_rmag"][3] = 0.92, 15.3
    assert merge_detections(three, 500 * u.kpc, 0.1, bcg_margin=0.05)["ra"][0] == three["ra"][0]  # 15.0 brightest
    assert merge_detections(three, 500 * u.kpc, 0.1, bcg_margin=0.05, bcg_mag_margin=0.5)["ra"][0] == three["ra"][3]


def test_cutting_after_merging_equals_merging_after_cutting():
    rng = np.random.default_rng(5)
    n = 60
    detections = Table({"ra": 150 + rng.uniform(0, 0.2, n), "dec": 2 + rng.uniform(0, 0.2, n),
                        "score": rng.uniform(0, 1, n), "tile": rng.choice(["a", "b", "c"], n)})
    merged = merge_detections(detections, 300 * u.kpc, 0.1)
    assert len(merged) < n  # the radius (165") makes groups of this density
    for cut in (0.3, 0.6, 0.9):
        later = merged[merged["score"] >= cut]
        first = merge_detections(detections[detections["score"] >= cut], 300 * u.kpc, 0.1)
        assert np.array_equal(later["ra"], first["ra"]) and np.array_equal(later["score"], first["score"])


@pytest.fixture(scope="module")
def blob_run(tiny_survey, tmp_path_factory):
    """The tiny survey through the blob detector on a 1-worker in-process LocalCluster."""
    output = tmp_path_factory.mktemp("survey_1worker")
    cfg = survey_cfg()
    tiles, problems = field_tiles(tiny_survey, cfg)
    assert problems == []
    result = find_clusters(cfg, tiles, ImagingSpec("fits", str(tiny_survey)), output, n_workers=1,
                           detector=BrightestBlobDetector(), progress=False, processes=False)
    return tiles, output, result


def test_clusters_across_tile_edges_are_found_once_at_their_position(tiny_survey, blob_run):
    tiles, _, result = blob_run
    catalogue = result.catalogue
    assert len(tiles) == 32 and len(result.failures) == 0  # 4 x 4 tiles in each of the 2 fields
    truth = truth_coords(tiny_survey)
    found = SkyCoord(catalogue["ra"], catalogue["dec"], unit=u.deg)
    index, separation, _ = truth.match_to_catalog_sky(found)
    assert len(catalogue) == len(truth) == 3
    assert len(set(index)) == 3
    # Clusters in the overlap of several tiles appear once, merged from their detections in each.
    assert catalogue["n_merged"].max() >= 2
    # The blob detector centres on the BCG to about a network pixel (0.79"); reprojection adds a little.
    assert separation.max() < 1.2 * u.arcsec


def test_larger_tiles_find_the_same_clusters_at_the_training_scale(tiny_survey, blob_run, tmp_path):
    """Tiles of about twice the training size (392 px, binned to 196: 100 px + 6 x the backbone's stride 16):
    fewer tiles, the same three clusters, and each network pixel still 2 sky pixels (the blob detector's
    24 px boxes keep their size on the sky)."""
    tiles, _, default = blob_run
    cfg = survey_cfg("DEEPCEE.SURVEY.TILE_SIZE", "392", "DEEPCEE.REDSHIFT.IN_SURVEY", "False")
    side, _ = tile_geometry(cfg)
    assert side == tile_geometry(survey_cfg())[0] * 392 / 200
    large_tiles, _ = field_tiles(tiny_survey, cfg)
    assert len(large_tiles) < len(tiles)
    large = find_clusters(cfg, large_tiles, ImagingSpec("fits", str(tiny_survey)), tmp_path, n_workers=1,
                          detector=BrightestBlobDetector(), progress=False, processes=False)
    assert len(large.catalogue) == len(default.catalogue) == 3
    found = SkyCoord(large.catalogue["ra"], large.catalogue["dec"], unit=u.deg)
    _, separation, _ = truth_coords(tiny_survey).match_to_catalog_sky(found)
    assert separation.max() < 1.2 * u.arcsec
    assert np.allclose(large.catalogue["box_width"], 24 * 2 * 0.396)
    # Odd sizes cannot be binned; 400 px (200 at the network) would move the backbone's feature grid.
    for size in ("401", "400"):
        with pytest.raises(ValueError, match=f"DEEPCEE.SURVEY.TILE_SIZE = {size}: give COLOUR.CUTOUT_SIZE .200. plus "
                                             "a multiple of 32"):
            tile_geometry(survey_cfg("DEEPCEE.SURVEY.TILE_SIZE", size))


def test_one_and_two_workers_give_the_same_catalogue(tiny_survey, blob_run, tmp_path):
    tiles, _, one = blob_run
    two = find_clusters(survey_cfg(), tiles, ImagingSpec("fits", str(tiny_survey)), tmp_path, n_workers=2,
                        detector=BrightestBlobDetector(), progress=False, processes=False)
    assert one.catalogue.colnames == two.catalogue.colnames
    for column in one.catalogue.colnames:
        assert same_column(one.catalogue[column], two.catalogue[column]), column


def test_an_interrupted_run_resumes_to_the_same_catalogue(tiny_survey, blob_run, tmp_path):
    """Worker processes (the default) here: a worker that dies leaves finished tiles, a new run resumes."""
    tiles, _, uninterrupted = blob_run
    imaging = ImagingSpec("fits", str(tiny_survey))
    with pytest.raises(RuntimeError, match="worker died"):
        find_clusters(survey_cfg(), tiles, imaging, tmp_path, n_workers=1,
                      detector=BrightestBlobDetector(fail_after=10), progress=False)
    done = sorted((tmp_path / "tiles").glob("*.ecsv"))
    assert 0 < len(done) < len(tiles)
    before = {path.name: path.read_bytes() for path in done}
    resumed = find_clusters(survey_cfg(), tiles, imaging, tmp_path, n_workers=1, detector=BrightestBlobDetector(),
                            progress=False, processes=False)  # resuming needs no second process start
    assert all((tmp_path / "tiles" / name).read_bytes() == data for name, data in before.items())  # not redone
    for column in uninterrupted.catalogue.colnames:
        assert same_column(uninterrupted.catalogue[column], resumed.catalogue[column]), column


def test_a_corrupt_field_is_reported_and_the_rest_still_runs(tiny_survey, tmp_path):
    survey = tmp_path / "survey"
    shutil.copytree(tiny_survey, survey)
    frame = survey / "f001" / "frame-g.fits"
    frame.write_bytes(frame.read_bytes()[:2880 * 2])  # header intact, pixels cut off
    shutil.copytree(survey / "f000", survey / "f002")  # a third field, whose r frame has no WCS
    data = fits.getdata(survey / "f002" / "frame-r.fits")
    fits.PrimaryHDU(data, fits.Header({"FILTER": "r", "BUNIT": "nanomaggy"})).writeto(
        survey / "f002" / "frame-r.fits", overwrite=True)
    cfg = survey_cfg()
    tiles, problems = field_tiles(survey, cfg)
    assert [where for where, _ in problems] == [str(survey / "f002" / "frame-r.fits"), "f002"]
    result = find_clusters(cfg, tiles, ImagingSpec("fits", str(survey)), tmp_path / "out", problems=problems,
                           n_workers=1, detector=BrightestBlobDetector(), progress=False, processes=False)
    failed = result.failures
    assert len(failed) == 18
    tile_failures = failed[failed["tile"] != "untiled"]
    assert len(tile_failures) == 16 and set(tile_failures["field"]) == {"f001"}
    assert all("f001/frame-g.fits" in reason for reason in tile_failures["reason"])
    assert "has no celestial WCS" in failed[failed["field"] == str(survey / "f002" / "frame-r.fits")]["reason"][0]
    assert Table.read(tmp_path / "out" / "failed_tiles.ecsv")["tile"].tolist() == failed["tile"].tolist()
    truth = truth_coords(survey)[:2]  # the two clusters of the intact field f000
    found = SkyCoord(result.catalogue["ra"], result.catalogue["dec"], unit=u.deg)
    assert len(result.catalogue) == 2 and truth.match_to_catalog_sky(found)[1].max() < 1.2 * u.arcsec


def test_a_survey_without_trained_weights_is_refused_before_writing(tiny_survey, tmp_path):
    cfg = survey_cfg()
    tiles, problems = field_tiles(tiny_survey, cfg)
    imaging = ImagingSpec("fits", str(tiny_survey))
    with pytest.raises(ValueError, match="MODEL.WEIGHTS is empty"):
        find_clusters(cfg, tiles, imaging, tmp_path / "out", n_workers=1, progress=False, processes=False)
    missing = tmp_path / "no_such_model.pth"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        find_clusters(survey_cfg("MODEL.WEIGHTS", str(missing)), tiles, imaging, tmp_path / "out", n_workers=1,
                      progress=False, processes=False)
    assert not (tmp_path / "out").exists()


def test_outputs_parse(blob_run):
    _, output, result = blob_run
    from regions import Regions

    for name in ("candidates.fits", "candidates.ecsv", "candidates.csv"):
        table = Table.read(output / name)
        assert len(table) == 3 and {"name", "ra", "dec", "score", "field", "tile", "box_width"} <= set(table.colnames)
    assert Table.read(output / "candidates.ecsv").meta["CONFIG"].startswith("CUDNN_BENCHMARK")
    assert Table.read(output / "candidates.fits").meta["NTILES"] == 32
    meta = Table.read(output / "candidates.fits").meta  # the red-sequence calibration the z columns rest on
    assert (meta["RSBKG"], meta["DUSTMAP"]) == ("packaged (synthetic sky)", "none (not dereddened)")
    regions = Regions.read(output / "candidates.reg", format="ds9")
    assert len(regions) == 3
    page = (output / "gallery" / "index.html").read_text()
    assert page.count("<img ") == 3 and "legacysurvey.org/viewer?ra=" in page and "skyserver.sdss.org" in page
    assert len(list((output / "gallery").glob("candidate_*.png"))) == 3
    # Red-sequence z and richness of every candidate (DEEPCEE.REDSHIFT.IN_SURVEY), kept in the tile files.
    for name in ("candidates.fits", "candidates.ecsv", "candidates.csv"):
        assert set(ESTIMATE_COLUMNS) <= set(Table.read(output / name).colnames), name
    tile_files = [Table.read(path) for path in (output / "tiles").glob("*.ecsv")]
    assert all(set(ESTIMATE_COLUMNS) <= set(table.colnames) for table in tile_files if len(table))
    catalogue = result.catalogue
    # Each candidate carries the source density its tile's photometry measured (kept in the tile file's meta).
    for name in ("candidates.fits", "candidates.ecsv", "candidates.csv"):
        assert "source_density" in Table.read(output / name).colnames, name
    for row in catalogue:
        tile = Table.read(output / "tiles" / f"{row['tile']}.ecsv")
        assert row["source_density"] == tile.meta[SOURCE_DENSITY_KEY] > 0
    # tiles.ecsv: every tile, its centre and its source density, measured on tiles without detections too
    # (the crowded-sky mask needs them all); none is crowded on this sparse sky.
    tile_table = Table.read(output / "tiles.ecsv")
    density = np.asarray(tile_table["source_density"])
    assert len(tile_table) == 32 and np.all(density >= 0) and density.max() > 0 and not np.any(tile_table["crowded"])
    assert any(len(Table.read(output / "tiles" / f"{tile}.ecsv")) == 0 for tile in tile_table["tile"])
    tile = next(t for t in blob_run[0] if t.tile_id == tile_table["tile"][0])
    assert (tile_table["ra"][0], tile_table["dec"][0], tile_table["field"][0]) == (tile.ra, tile.dec, tile.field)
    assert np.all(np.isnan(catalogue["z_est"][~catalogue["rs_peak"]]))
    assert np.all(np.isfinite(catalogue["z_err"][catalogue["rs_peak"]]))
    for row in catalogue:
        assert html.escape(red_sequence_text(row)) in page


def test_redshifts_can_be_switched_off(tiny_survey, blob_run, tmp_path, caplog):
    """Without the photometry there is no z, richness, crowding or red-sequence confirmation: the catalogue
    keeps every merged detection and the log says what was not applied."""
    tiles, _, one = blob_run
    cfg = survey_cfg("DEEPCEE.REDSHIFT.IN_SURVEY", "False", "DEEPCEE.SURVEY.REQUIRE_RED_SEQUENCE", "True")
    result = find_clusters(cfg, [t for t in tiles if t.field == "f000"], ImagingSpec("fits", str(tiny_survey)),
                           tmp_path, n_workers=1, detector=BrightestBlobDetector(), progress=False, processes=False)
    assert len(result.catalogue) and not set(ESTIMATE_COLUMNS) & set(result.catalogue.colnames)
    assert len(result.catalogue) == np.count_nonzero(one.catalogue["field"] == "f000")
    assert "z not estimated" in (tmp_path / "gallery" / "index.html").read_text()
    assert "MAX_SOURCE_DENSITY needs each tile's photometry" in caplog.text
    assert "REQUIRE_RED_SEQUENCE: the detections have no red-sequence estimate" in caplog.text


def test_a_trained_model_runs_through_the_command_line_tool(tiny_survey, toy_datasets, tmp_path):
    train_dir = tmp_path / "train"
    opts = ["MODEL.ANCHOR_GENERATOR.SIZES", "[[16, 32]]", "SOLVER.MAX_ITER", "5", "OUTPUT_DIR", str(train_dir)]
    trainer = Trainer(load_config(REPO / "configs" / "deepcee_instant_test.yaml", opts))
    trainer.resume_or_load(resume=False)
    trainer.train()
    script = runpy.run_path(str(REPO / "tools" / "find_clusters.py"))
    output = tmp_path / "survey"
    one_field = tmp_path / "one_field"  # its 16 tiles are enough here
    shutil.copytree(tiny_survey / "f000", one_field / "f000")
    result = script["main"](["--config-file", str(REPO / "configs" / "deepcee_instant_test.yaml"),
                             "--input", str(one_field), "--output", str(output), "--workers", "1", "--threads",
                             *SURVEY_OPTS, "MODEL.INCEPTION_V2.DEPTH_MULTIPLIER", "0.25",
                             "MODEL.WEIGHTS", str(train_dir / "model_final.pth"),
                             "DEEPCEE.SURVEY.SCORE_THRESHOLD", "0.0",
                             "DEEPCEE.REDSHIFT.IN_SURVEY", "False"])  # z of every tile: blob_run's tests
    assert len(result.failures) == 0 and len(list((output / "tiles").glob("*.ecsv"))) == 16
    catalogue = Table.read(output / "candidates.ecsv")
    assert len(catalogue.meta["MODELSHA"]) == 64 and catalogue.meta["MODEL"].endswith("model_final.pth")
    assert len(catalogue) > 0 and np.all(np.diff(catalogue["score"]) <= 0)


def test_a_survey_that_finds_nothing_writes_an_empty_catalogue_with_every_column(tiny_survey, blob_run, tmp_path):
    tiles, _, result = blob_run
    empty = find_clusters(survey_cfg(), [t for t in tiles if t.field == "f000"], ImagingSpec("fits", str(tiny_survey)),
                          tmp_path, n_workers=1, detector=BrightestBlobDetector(level=256), progress=False,
                          processes=False)
    assert len(empty.catalogue) == 0
    for name in ("candidates.fits", "candidates.ecsv", "candidates.csv"):
        table = Table.read(tmp_path / name)
        assert len(table) == 0 and set(table.colnames) == set(result.catalogue.colnames), name
        if name != "candidates.csv":  # CSV keeps no types: an empty column reads back as int
            assert table["name"].dtype.kind in "US", name  # text, as in a catalogue with candidates


def test_a_new_score_threshold_reuses_the_tiles_and_cuts_the_catalogue(tiny_survey, blob_run, tmp_path):
    tiles, output, one = blob_run
    shutil.copytree(output, tmp_path / "run")
    stamps = {path: path.stat().st_mtime_ns for path in (tmp_path / "run" / "tiles").glob("*.ecsv")}
    cut = float(np.median(one.catalogue["score"]))
    again = find_clusters(survey_cfg("DEEPCEE.SURVEY.SCORE_THRESHOLD", str(cut)), tiles,
                          ImagingSpec("fits", str(tiny_survey)), tmp_path / "run", n_workers=1,
                          detector=BrightestBlobDetector(), progress=False, processes=False)
    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps  # no tile was rerun
    assert list(again.catalogue["ra"]) == list(one.catalogue["ra"][one.catalogue["score"] >= cut])
    assert 0 < len(again.catalogue) < len(one.catalogue) and again.catalogue.meta["SCORECUT"] == cut


def test_red_sequence_confirmation_lists_only_detections_with_a_peak(tiny_survey, blob_run, tmp_path):
    """With DEEPCEE.SURVEY.REQUIRE_RED_SEQUENCE, detections without a red-sequence peak give no candidates; the
    tile files are reused, and the false-candidate rates re-merge them the same way."""
    from deepcee_d2.evaluation.purity import survey_false_rates

    tiles, output, one = blob_run
    shutil.copytree(output, tmp_path / "run")
    stamps = {path: path.stat().st_mtime_ns for path in (tmp_path / "run" / "tiles").glob("*.ecsv")}
    with_peak = one.catalogue[np.asarray(one.catalogue["rs_peak"], bool)]
    assert 0 < len(with_peak) < len(one.catalogue)  # the blobs of one cluster sit on its red sequence
    cfg = survey_cfg("DEEPCEE.SURVEY.REQUIRE_RED_SEQUENCE", "True")
    confirmed = find_clusters(cfg, tiles, ImagingSpec("fits", str(tiny_survey)), tmp_path / "run", n_workers=1,
                              detector=BrightestBlobDetector(), progress=False, processes=False, gallery_size=0)
    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps  # no tile was rerun
    # Cut before merging: a detection with a peak that a better one without absorbed becomes a candidate itself.
    assert np.all(confirmed.catalogue["rs_peak"]) and confirmed.catalogue.meta["RSREQ"] is True
    assert set(with_peak["ra"]) <= set(confirmed.catalogue["ra"]) and len(confirmed.catalogue) < len(one.catalogue)
    rates = survey_false_rates(tmp_path / "run", cfg, [0.5], area=1.0)
    assert list(rates["n_candidates"]) == [len(confirmed.catalogue)]
    assert list(survey_false_rates(tmp_path / "run", survey_cfg(), [0.5], area=1.0)["n_candidates"]) == [len(one.catalogue)]


def test_tiles_without_a_source_density_are_named_when_masking(tiny_survey, blob_run, tmp_path, caplog):
    tiles, output, _ = blob_run
    shutil.copytree(output, tmp_path / "run")
    path = next((tmp_path / "run" / "tiles").glob("*.ecsv"))
    old = Table.read(path)
    del old.meta[SOURCE_DENSITY_KEY]  # as a tile file of an older version
    old.write(path, overwrite=True)
    find_clusters(survey_cfg(), tiles, ImagingSpec("fits", str(tiny_survey)), tmp_path / "run", n_workers=1,
                  detector=BrightestBlobDetector(), progress=False, processes=False, gallery_size=0)
    assert "1 of 32 tiles have no source density" in caplog.text


def test_resume_with_other_settings_is_refused_naming_them(tiny_survey, blob_run, tmp_path):
    tiles, output, _ = blob_run
    imaging = ImagingSpec("fits", str(tiny_survey))
    before = {path: path.read_bytes() for path in output.rglob("*") if path.is_file()}
    runs = [
        (survey_cfg("DEEPCEE.SURVEY.KEEP_SCORE_FLOOR", "0.1"), tiles, BrightestBlobDetector(),
         "score_threshold 0.2 there, 0.1 now"),
        (survey_cfg("DEEPCEE.COLOUR.UPPER", "20.0"), tiles, BrightestBlobDetector(),
         "config: 1 keys differ: DEEPCEE.COLOUR.UPPER 10.0 there, 20.0 now"),
        (survey_cfg(), tiles, BrightestBlobDetector(level=100), "detector '.*blobs-150-24' there, '.*blobs-100-24' now"),
        (survey_cfg(), tiles[:16], BrightestBlobDetector(), "tiles 32 there, 16 now"),
    ]
    for cfg, some_tiles, detector, difference in runs:
        # the advice names no command-line option: find_clusters is called from Python as well
        advice = f"Write to another output folder, or delete {output} to start over"
        refusal = f"{output}: holds the tiles of another survey run .*{difference}.*{advice}"
        with pytest.raises(ValueError, match=refusal):
            find_clusters(cfg, some_tiles, imaging, output, n_workers=1, detector=detector, progress=False,
                          processes=False)
    assert {path: path.read_bytes() for path in output.rglob("*") if path.is_file()} == before
    # tile files of unknown origin (no manifest) are refused as well
    (tmp_path / "out" / "tiles").mkdir(parents=True)
    (tmp_path / "out" / "tiles" / "f000_r000_c000.ecsv").write_text("# %ECSV 1.0\n")
    with pytest.raises(ValueError, match="tile results without manifest.json"):
        find_clusters(survey_cfg(), tiles, imaging, tmp_path / "out", n_workers=1, detector=BrightestBlobDetector(),
                      progress=False, processes=False)


def test_an_empty_input_folder_is_an_error_before_writing(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    tiles, problems = field_tiles(empty, survey_cfg())
    assert tiles == [] and problems == []
    with pytest.raises(ValueError, match=f"fits:{empty}: nothing to run the detector on, 0 tiles .*no frames found"):
        find_clusters(survey_cfg(), tiles, ImagingSpec("fits", str(empty)), tmp_path / "out", n_workers=1,
                      detector=BrightestBlobDetector(), progress=False, processes=False)
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def untrained_weights(tmp_path_factory):
    """A valid state dict of the instant model (untrained: the tests below never reach its detections)."""
    import torch

    path = tmp_path_factory.mktemp("untrained") / "model.pth"
    cfg = load_config(REPO / "configs" / "deepcee_instant_test.yaml", ["MODEL.ANCHOR_GENERATOR.SIZES", "[[16, 32]]"])
    torch.save({"model": Trainer.build_model(cfg).state_dict()}, path)
    return path


def find_clusters_tool(*argv):
    script = runpy.run_path(str(REPO / "tools" / "find_clusters.py"))
    return script["main"](["--config-file", str(REPO / "configs" / "deepcee_instant_test.yaml"), "--workers", "1",
                           "--threads", *argv[:-1], *SURVEY_OPTS, *argv[-1]])


def test_the_tool_exits_non_zero_when_every_tile_failed(tiny_survey, untrained_weights, tmp_path):
    survey = tmp_path / "survey"
    shutil.copytree(tiny_survey, survey)
    for frame in survey.glob("f*/frame-g.fits"):
        frame.write_bytes(frame.read_bytes()[:2880 * 2])  # header intact, pixels cut off
    with pytest.raises(SystemExit, match=r"all 32 tiles failed, e.g. .*frame-g.fits.*failed_tiles.ecsv"):
        find_clusters_tool("--input", str(survey), "--output", str(tmp_path / "out"),
                           ["MODEL.WEIGHTS", str(untrained_weights)])
    assert len(Table.read(tmp_path / "out" / "failed_tiles.ecsv")) == 32


def test_bad_weights_and_positions_are_named_before_dask_starts(tiny_survey, untrained_weights, tmp_path):
    from deepcee_d2.engine.predictor import WeightsError

    noise = tmp_path / "noise.pth"
    noise.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(WeightsError, match=f"{noise}: not a PyTorch weights file"):
        find_clusters_tool("--input", str(tiny_survey), "--output", str(tmp_path / "out"), ["MODEL.WEIGHTS", str(noise)])
    assert not (tmp_path / "out").exists()
    positions = tmp_path / "positions.csv"
    Table({"RA_deg": [150.0], "dec": [2.0]}).write(positions)
    with pytest.raises(ValueError, match=f"{positions}: --positions table: no ra column \\(columns: RA_deg, dec\\)"):
        find_clusters_tool("--positions", str(positions), "--output", str(tmp_path / "out"),
                           ["MODEL.WEIGHTS", str(untrained_weights)])
    assert not (tmp_path / "out").exists()
    # A known-cluster catalogue is read before the run, not when its catalogue is built at the end.
    catalogue = tmp_path / "xray.csv"
    Table({"ra": [150.0], "z": [0.2]}).write(catalogue)
    with pytest.raises(ValueError, match=r"xray: catalogue lacks column\(s\) \['dec'\]"):
        find_clusters_tool("--input", str(tiny_survey), "--output", str(tmp_path / "out"), "--crossmatch",
                           str(catalogue), ["MODEL.WEIGHTS", str(untrained_weights)])
    assert not (tmp_path / "out").exists()


def test_no_dask_dashboard_unless_asked():
    from urllib.error import HTTPError
    from urllib.request import urlopen

    from deepcee_d2.survey.run import dask_client

    def status_page(**options):
        with dask_client(n_workers=1, processes=False, **options) as client:
            port = client.scheduler_info()["services"]["dashboard"]  # Dask's HTTP server (health, metrics)
            try:
                return urlopen(f"http://127.0.0.1:{port}/status", timeout=10).status
            except HTTPError as error:
                return error.code

    assert status_page() == 404
    assert status_page(dashboard="127.0.0.1:0") == 200


def test_the_documented_crossmatch_command_keeps_its_config_overrides():
    """docs/injection.md: ``--crossmatch INJECTED/clusters.fits MODEL.WEIGHTS ...``: the catalogue flag takes
    one file, so the overrides after it stay overrides (a list flag swallowed them: 'MODEL.WEIGHTS is empty')."""
    parse_args = runpy.run_path(str(REPO / "tools" / "find_clusters.py"))["parse_args"]
    args = parse_args(["--config-file", "c.yaml", "--input", "frames", "--output", "out", "--crossmatch",
                       "injected/clusters.fits", "--crossmatch", "whl12.fits", "MODEL.WEIGHTS", "model.pth"])
    assert args.crossmatch == ["injected/clusters.fits", "whl12.fits"]
    assert args.opts == ["MODEL.WEIGHTS", "model.pth"]


def test_crowded_tiles_are_those_above_the_density_limit():
    density = [3.0, 12.0, 12.5, np.nan]
    assert list(crowded(density, 12.0)) == [False, False, True, False]  # unknown density: not masked
    assert not crowded(density, 0.0).any()  # 0: no mask


def test_crowded_sky_is_masked_on_real_sdss_frames(shared_data, tmp_path, capsys):
    """The demo's tiles of two real SDSS fields: the frame of the globular cluster M2 (002583-2-0136) is
    crowded sky at the default DEEPCEE.SURVEY.MAX_SOURCE_DENSITY, a high-latitude one (005194-2-0540) is not.
    The crowded tiles give no candidates, their area is masked rather than searched, true clusters on them
    leave the completeness, and switching the mask off rebuilds the catalogue from the same tiles."""
    from deepcee_d2.evaluation.purity import survey_false_rates

    cfg = load_config(REPO / "configs" / "deepcee_demo_cpu.yaml",
                      ["MODEL.DEVICE", "cpu", "DEEPCEE.SURVEY.REQUIRE_RED_SEQUENCE", "False"])  # stars, no clusters
    crowded_field, clear_field = "frame-002583-2-0136", "frame-005194-2-0540"
    tiles, _ = field_tiles(shared_data / "sdss", cfg)
    tiles = [t for t in tiles if t.field == crowded_field][:3] + [t for t in tiles if t.field == clear_field][:3]
    imaging = ImagingSpec.from_cfg(cfg, "fits", shared_data / "sdss")
    detector = BrightestBlobDetector(level=250, top=3)  # saturated stars; M2's tiles hold hundreds
    result = find_clusters(cfg, tiles, imaging, tmp_path, n_workers=1, detector=detector, progress=False,
                           processes=False, gallery_size=0)
    tile_table = Table.read(tmp_path / "tiles.ecsv")
    on_crowded = tile_table["field"] == crowded_field
    assert len(tile_table) == 6 and np.all(np.isfinite(tile_table["source_density"]))
    assert np.all(tile_table["source_density"][on_crowded] > cfg.DEEPCEE.SURVEY.MAX_SOURCE_DENSITY)
    assert np.all(tile_table["source_density"][~on_crowded] < cfg.DEEPCEE.SURVEY.MAX_SOURCE_DENSITY)
    assert list(tile_table["crowded"]) == list(on_crowded)
    crowded_detections = sum(len(Table.read(tmp_path / "tiles" / f"{tile}.ecsv"))
                             for tile in tile_table["tile"][on_crowded])
    assert crowded_detections > 0 and len(result.catalogue) > 0
    assert not np.any(result.catalogue["field"] == crowded_field)
    coverage = Table.read(tmp_path / "coverage.ecsv")
    coverage.add_index("field")
    assert coverage.loc[crowded_field]["searched_deg2"] == 0 and coverage.loc[crowded_field]["masked_deg2"] > 0
    assert coverage.loc[clear_field]["masked_deg2"] == 0 and coverage.loc[clear_field]["searched_deg2"] > 0
    meta = result.catalogue.meta
    assert meta["NCROWDED"] == 3 and meta["MASKDEG2"] > 0
    assert meta["AREADEG2"] == pytest.approx(coverage.loc[clear_field]["searched_deg2"], abs=1e-6)
    # One true cluster at the centre of a crowded tile, one at a clear tile's: only the second is counted.
    centres = [next(t for t in tiles if t.field == field) for field in (crowded_field, clear_field)]
    truth = Table({"id": ["masked", "searched"], "ra": [t.ra for t in centres], "dec": [t.dec for t in centres],
                   "z": [0.15, 0.15]})
    rates = survey_false_rates(tmp_path, cfg, [0.5], truth=truth)
    assert rates.meta["NMASKTRU"] == 1 and list(rates["n_true"]) == [1]
    truth.write(tmp_path / "truth.ecsv", format="ascii.ecsv")
    runpy.run_path(str(REPO / "tools" / "choose_threshold.py"))["main"](
        ["--config-file", str(REPO / "configs" / "deepcee_demo_cpu.yaml"), "--truth", str(tmp_path / "truth.ecsv"),
         str(tmp_path), "DEEPCEE.SURVEY.REQUIRE_RED_SEQUENCE", "False"])
    out = capsys.readouterr().out
    assert "1 true clusters lie on masked (crowded) sky" in out
    # Where the two were lost (the stars' detections are >= 250 kpc from the crowded tile's centre; one lies
    # within it of the clear tile's, absorbed by a brighter star's candidate).
    assert ("the 2 true clusters of the redshift window at score >= 0.5: found 0, not detected 1, crowded sky 0, "
            "no red sequence 0, percolated 0, merged away 1") in out
    assert rates.meta["AREADEG2"] == meta["AREADEG2"]
    only_masked = survey_false_rates(tmp_path, cfg, [0.5], truth=truth[:1])  # every true cluster on masked sky
    assert list(only_masked["n_true"]) == [0] and list(only_masked["n_false"]) == list(rates["n_candidates"])
    # The mask is the catalogue step's: off, the same tile files give the crowded field's candidates back.
    unmasked_cfg = cfg.clone()
    unmasked_cfg.DEEPCEE.SURVEY.MAX_SOURCE_DENSITY = 0.0
    with pytest.raises(ValueError, match="records no searched area .* for this mask"):  # the catalogue's is masked
        survey_false_rates(tmp_path, unmasked_cfg, [0.5])
    unmasked = find_clusters(unmasked_cfg, tiles, imaging, tmp_path, n_workers=1, detector=detector,
                             progress=False, processes=False, gallery_size=0)
    assert np.any(unmasked.catalogue["field"] == crowded_field)
    assert unmasked.catalogue.meta["NCROWDED"] == 0 and unmasked.catalogue.meta["MASKDEG2"] == 0
    rates = survey_false_rates(tmp_path, unmasked_cfg, [0.5], truth=truth)
    assert rates.meta["NMASKTRU"] == 0 and list(rates["n_true"]) == [2]

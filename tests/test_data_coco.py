"""COCO data sets from a cluster table and the tiny survey (conftest): offsets, boxes, splits, resume."""
import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import astropy.units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table
from PIL import Image
from pycocotools.coco import COCO
from scipy import ndimage, stats

from deepcee_d2.config import load_config
from deepcee_d2.cosmology import angular_size
from deepcee_d2.data.cache import get_cutout
from deepcee_d2.data.catalogs import read_catalog
from deepcee_d2.data.coco import MIN_TRAIN_BOX_ASPECT, DatasetSettings, build_dataset, plan_images
from deepcee_d2.data.colour import make_network_image
from deepcee_d2.data.frames import ImagingError, LocalFITSSource
from deepcee_d2.sky import celestial_wcs, cutout_grid, sky_to_box_xy

PAPER = DatasetSettings.from_cfg(load_config())  # 2000 px cutouts, 4 images per cluster offset up to 270"


@pytest.fixture
def truth(tiny_survey):
    return read_catalog(tiny_survey / "clusters.fits")


@pytest.fixture
def built(tiny_dataset):
    return tiny_dataset.folder, tiny_dataset.paths


def many_clusters(n=500):
    rng = np.random.default_rng(0)
    table = Table({"id": [f"C{i}" for i in range(n)], "ra": rng.uniform(0, 360, n),
                   "dec": np.degrees(np.arcsin(rng.uniform(-0.9, 0.9, n))), "z": np.full(n, 0.15)})
    for name in ("richness", "n_members", "bcg_rmag", "bcg_ra", "bcg_dec", "r200"):
        table[name] = np.nan
    return table


def test_offsets_are_uniform_bounded_and_seeded():
    settings = replace(PAPER, seed=11)
    assert (settings.max_offset, settings.n_offsets) == (270 * u.arcsec, 4)
    clusters = many_clusters()
    plan = plan_images(clusters, settings)
    assert len(plan) == 2000 and list(plan["offset_index"][:5]) == [0, 1, 2, 3, 0]
    offsets = np.concatenate([plan["dx"], plan["dy"]])
    assert np.abs(offsets).max() <= 270 and np.abs(offsets).max() > 265
    assert stats.kstest(offsets, stats.uniform(loc=-270, scale=540).cdf).pvalue > 0.01
    # Where each cluster lands in its cutout: moving the centre (dx east, dy north) puts the cluster at
    # (+dx, -dy) from the centre on the east-left, north-up grid, so within 270" along x and along y.
    for row, cluster in zip(plan[:40], np.repeat(clusters[:10], 4)):
        grid = cutout_grid(SkyCoord(row["ra"] * u.deg, row["dec"] * u.deg), 2000)
        x, y = grid.world_to_pixel(SkyCoord(cluster["ra"] * u.deg, cluster["dec"] * u.deg))
        assert abs((x - 999.5) * 0.396 - row["dx"]) < 1 and abs((y - 999.5) * 0.396 + row["dy"]) < 1  # curvature
    again = plan_images(clusters, settings)
    np.testing.assert_array_equal(again["dx"], plan["dx"])
    other = plan_images(clusters, replace(PAPER, seed=12))
    assert not np.allclose(other["dx"], plan["dx"])


def test_settings_are_validated(tiny_settings):
    with pytest.raises(ValueError, match="cannot block-average"):
        replace(PAPER, cutout_size=2000, network_size=600)
    with pytest.raises(ValueError, match="unknown split 'fold'"):
        replace(PAPER, split="fold")
    with pytest.raises(ValueError, match="max_offset 400.0 arcsec must be below half the cutout width"):
        replace(PAPER, max_offset=400 * u.arcsec)
    assert DatasetSettings.from_dict(tiny_settings.to_dict()) == tiny_settings


def test_coco_files_load_with_pycocotools_and_carry_the_extras(built):
    out, paths = built
    assert set(paths) == {"train", "test"}
    n_images = 0
    for path in paths.values():
        coco = COCO(str(path))
        n_images += len(coco.getImgIds())
        for image in coco.loadImgs(coco.getImgIds()):
            assert (out / image["file_name"]).is_file()
            assert {"wcs", "ra", "dec", "pixel_scale", "target_id", "offset_arcsec"} <= set(image)
            assert image["pixel_scale"] == pytest.approx(0.792, rel=1e-6)
            annotations = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
            assert image["target_id"] in {a["cluster_id"] for a in annotations}
            for annotation in annotations:
                assert {"cluster_id", "ra", "dec", "z", "richness", "n_members", "bcg_rmag"} <= set(annotation)
                assert annotation["category_id"] == 1 and annotation["iscrowd"] == 0
        assert coco.loadCats(coco.getCatIds()) == [{"id": 1, "name": "cluster", "supercategory": "cluster"}]
    assert n_images == 3 * 4


def test_every_cluster_inside_an_image_is_annotated(built, truth):
    out, paths = built
    for path in paths.values():
        coco = json.loads(path.read_text())
        for image in coco["images"]:
            wcs = celestial_wcs(image["wcs"])
            x, y = sky_to_box_xy(wcs, SkyCoord(truth["ra"].quantity, truth["dec"].quantity))
            inside = {cid for cid, xi, yi in zip(truth["id"], x, y) if 0 <= xi < 100 and 0 <= yi < 100}
            annotated = {a["cluster_id"] for a in coco["annotations"] if a["image_id"] == image["id"]}
            assert annotated == inside
    # SYN-0 and SYN-1 are 45" apart: each appears in some of the other's images.
    all_annotations = [a for p in paths.values() for a in json.loads(p.read_text())["annotations"]]
    assert sum(a["cluster_id"] == "SYN-1" for a in all_annotations) > 4


def test_box_is_centred_on_the_bcg_light_and_sized_at_the_redshift(built, truth):
    out, paths = built
    checked = narrowed = 0
    for path in paths.values():
        coco = json.loads(path.read_text())
        images = {image["id"]: image for image in coco["images"]}
        for annotation in coco["annotations"]:
            x0, y0, width, height = annotation["bbox"]
            side = angular_size(50 * u.kpc, annotation["z"]).to_value(u.arcsec) / 0.792
            cx, cy = x0 + width / 2, y0 + height / 2  # detectron2 coordinates: pixel i spans [i, i + 1)
            # Every box, cut by the edge or not, lies in the image and is centred on the BCG (its WCS position).
            bcg_x, bcg_y = sky_to_box_xy(celestial_wcs(images[annotation["image_id"]]["wcs"]),
                                         SkyCoord(annotation["ra"] * u.deg, annotation["dec"] * u.deg))
            assert (cx, cy) == (pytest.approx(bcg_x, abs=1e-6), pytest.approx(bcg_y, abs=1e-6))
            assert x0 >= 0 and y0 >= 0 and x0 + width <= 100 and y0 + height <= 100
            if not (x0 > 0 and y0 > 0 and x0 + width < 100 and y0 + height < 100):
                narrowed += 1
                assert width <= side * (1 + 1e-6) and height <= side * (1 + 1e-6)
                assert annotation["box_aspect"] == pytest.approx(min(width, height) / max(width, height), rel=1e-6)
                continue
            assert width == pytest.approx(side, rel=1e-6) and height == pytest.approx(side, rel=1e-6)
            assert annotation["box_aspect"] == pytest.approx(1.0)
            red = np.asarray(Image.open(out / images[annotation["image_id"]]["file_name"]))[..., 0].astype(float)
            yy, xx = np.mgrid[0:100, 0:100] + 0.5
            near = (xx - cx) ** 2 + (yy - cy) ** 2 <= 3.5**2
            light_y, light_x = ndimage.center_of_mass(np.where(near, red, 0.0))
            assert abs(light_x + 0.5 - cx) < 0.5 and abs(light_y + 0.5 - cy) < 0.5
            checked += 1
    assert checked >= 6 and narrowed >= 1


def test_by_cluster_split_keeps_every_cluster_in_one_set(built):
    out, paths = built
    clusters = {split: {a["cluster_id"] for a in json.loads(p.read_text())["annotations"]}
                for split, p in paths.items()}
    assert clusters["train"] and clusters["test"] and not clusters["train"] & clusters["test"]


def test_random_split_draws_the_test_fraction_and_training_leaves_out_boxes_cut_too_narrow(
        tiny_survey, truth, tmp_path, tiny_settings):
    settings = replace(tiny_settings, split="random", test_fraction=0.25)
    out = tmp_path / "random"
    paths = build_dataset(truth, LocalFITSSource(tiny_survey), out, settings, progress=False)
    coco = {split: json.loads(p.read_text()) for split, p in paths.items()}
    # A quarter of the 12 images are drawn for the test split, which keeps them however their boxes are cut.
    assert len(coco["test"]["images"]) == 3
    # Training leaves out the images with a box cut thinner than MIN_TRAIN_BOX_ASPECT: their PNGs were
    # made, but no split lists them (here one of the nine).
    assert min(a["box_aspect"] for a in coco["train"]["annotations"]) >= MIN_TRAIN_BOX_ASPECT
    listed = {image["file_name"] for c in coco.values() for image in c["images"]}
    left_out = [png for png in (out / "images").glob("*.png") if f"images/{png.name}" not in listed]
    assert len(left_out) >= 1 and len(coco["train"]["images"]) + len(left_out) == 9


def test_info_reproduces_the_colour_image_for_inference(built, tiny_survey, tiny_settings):
    out, paths = built
    coco = json.loads(paths["train"].read_text())
    recorded = coco["info"]["deepcee"]
    settings = DatasetSettings.from_dict(recorded["settings"])
    assert settings == tiny_settings and recorded["source"] == f"fits:{tiny_survey}"
    image = coco["images"][0]
    centre = SkyCoord(image["ra"] * u.deg, image["dec"] * u.deg)
    cutout = get_cutout(LocalFITSSource(tiny_survey), centre, settings.cutout_size, settings.pixel_scale)
    rgb, wcs = make_network_image(cutout.images, cutout.wcs, settings.network_size, settings.colour)
    np.testing.assert_array_equal(rgb, np.asarray(Image.open(out / image["file_name"])))
    assert celestial_wcs(image["wcs"]).wcs.compare(wcs.wcs, tolerance=1e-9)


def test_rebuild_resumes_without_new_cutouts_and_refuses_other_settings(tiny_dataset, truth, tiny_survey, monkeypatch,
                                                                       tmp_path):
    out = shutil.copytree(tiny_dataset.folder, tmp_path / "copy")  # the shared data set stays as it is
    before = {split: json.loads(p.read_text()) for split, p in tiny_dataset.paths.items()}
    source = LocalFITSSource(tiny_survey)
    monkeypatch.setattr(source, "cutout", lambda *a, **k: pytest.fail("finished image made again"))
    truth["bcg_rmag"][2] = np.nan  # as the shared data set was built
    again = build_dataset(truth, source, out, tiny_dataset.settings, progress=False)
    for split, path in again.items():
        after = json.loads(path.read_text())
        assert after["images"] == before[split]["images"] and after["annotations"] == before[split]["annotations"]
    with pytest.raises(ValueError, match=r"build.json: this folder was built with other settings or another source: settings.seed \d+ there, 4 now"):
        build_dataset(truth, source, out, replace(tiny_dataset.settings, seed=4), progress=False)


def test_cluster_outside_the_imaging_fails_clearly_or_is_recorded(tiny_survey, truth, tmp_path, tiny_settings):
    lost = truth.copy()
    lost.add_row(["LOST-1", 200.0, 10.0, 0.1, 30.0, 20.0, 16.0, 200.0, 10.0, 1.0, "none"])
    source = LocalFITSSource(tiny_survey)
    with pytest.raises(ImagingError, match="cluster LOST-1 image 0: .* no g-band frame covers the cutout"):
        build_dataset(lost, source, tmp_path / "strict", tiny_settings, progress=False)
    assert not list((tmp_path / "strict" / "images").glob("LOST*"))
    paths = build_dataset(lost, source, tmp_path / "lenient", tiny_settings, skip_failures=True, progress=False)
    failures = Table.read(tmp_path / "lenient" / "failures.ecsv")
    assert list(failures["target_id"]) == ["LOST-1"] * 4 and "no g-band frame" in failures["error"][0]
    targets = {i["target_id"] for p in paths.values() for i in json.loads(p.read_text())["images"]}
    assert targets == {"SYN-0", "SYN-1", "SYN-2"}


def test_empty_catalogue_and_clusters_without_redshift_are_refused(tiny_survey, truth, tmp_path, tiny_settings):
    source = LocalFITSSource(tiny_survey)
    with pytest.raises(ValueError, match="target clusters: the catalogue is empty"):
        build_dataset(truth[:0], source, tmp_path / "empty", tiny_settings, progress=False)
    no_z = truth.copy()
    no_z["z"][1] = np.nan
    with pytest.raises(ValueError, match=r"annotation catalogue: 1 clusters without a redshift, e.g. \['SYN-1'\]"):
        build_dataset(truth, source, tmp_path / "noz", tiny_settings, annotate_with=no_z, progress=False)
    assert not (tmp_path / "noz").exists() and not (tmp_path / "empty").exists()


def run_tool(argv):
    """``tools/prepare_dataset.py``'s main, in this process (so recorded network answers apply)."""
    import runpy
    from pathlib import Path

    tool = runpy.run_path(str(Path(__file__).resolve().parents[1] / "tools" / "prepare_dataset.py"), run_name="tool")
    return tool["main"](argv)


def test_cli_builds_a_synthetic_data_set_with_config_overrides(tiny_survey, tmp_path):
    out = tmp_path / "cli"
    assert run_tool(["--catalog", str(tiny_survey / "clusters.fits"), "--source", "synthetic", "--imaging",
                     str(tiny_survey), "--out", str(out), "--cutout-size", "200", "--network-size", "100",
                     "--max-offset", "30", "--box-size-kpc", "50", "--split", "random", "--no-progress",
                     "DEEPCEE.COLOUR.UPPER", "8.0"]) == 0
    coco = json.loads((out / "train.json").read_text())
    assert coco["info"]["deepcee"]["settings"]["colour"]["upper"] == 8.0
    assert len(coco["images"]) + len(json.loads((out / "test.json").read_text())["images"]) == 12
    assert len(list((out / "images").glob("*.png"))) == 12


def test_cli_takes_blank_targets_from_a_table_file(tiny_survey, tmp_path):
    out, blank = tmp_path / "cli", tmp_path / "blank.csv"
    blank_targets_of_the_tiny_survey()[["ra", "dec"]][:2].write(blank, format="ascii.csv")
    options = ["--catalog", str(tiny_survey / "clusters.fits"), "--source", "synthetic", "--imaging", str(tiny_survey),
               "--out", str(out), "--cutout-size", "200", "--network-size", "100", "--max-offset", "5",
               "--no-progress", "--blank"]
    assert run_tool(options + [str(blank)]) == 0
    images = [i for split in ("train", "test") for i in json.loads((out / f"{split}.json").read_text())["images"]]
    assert sorted(i["target_id"] for i in images if i["blank"]) == ["blank-00000"] * 4 + ["blank-00001"] * 4
    unreadable = tmp_path / "not-a-table.fits"
    unreadable.write_bytes(b"SIMPLE  = nonsense")
    with pytest.raises(ValueError, match=f"{unreadable}: --blank table: not a table astropy can read"):
        run_tool(options + [str(unreadable)])
    Table({"ra": [150.0]}).write(tmp_path / "no_dec.csv", format="ascii.csv")
    with pytest.raises(ValueError, match=f"blank targets {tmp_path / 'no_dec.csv'}: no dec column"):
        run_tool(options + [str(tmp_path / "no_dec.csv")])


def test_cli_paper_selection_from_vizier(vizier_recorded, tiny_survey, tmp_path):
    """WHL12 and Abell from (recorded) VizieR; the tiny survey does not cover them, so every cutout fails
    (recorded, and no COCO file: a data set without images is an error)."""
    out = tmp_path / "paper"
    with pytest.raises(ValueError, match="no image could be made"):
        run_tool(["--catalog", "whl12", "--select", "paper", "--source", "fits", "--imaging", str(tiny_survey),
                  "--out", str(out), "--cutout-size", "200", "--network-size", "100", "--max-offset", "30",
                  "--skip-failures", "--no-progress"])
    assert list(Table.read(out / "clusters.ecsv")["id"]) == [
        "WHL J000735.7+163042", "WHL J002854.3+173605", "WHL J004627.3+202923"]
    assert len(Table.read(out / "failures.ecsv")) == 12


def blank_targets_of_the_tiny_survey():
    """Two positions of empty sky in the tiny survey's fields, and one whose images hold SYN-2."""
    f000, f001 = SkyCoord(150.0 * u.deg, 2.0 * u.deg), SkyCoord(150.5 * u.deg, 2.0 * u.deg)
    empty = [f000.spherical_offsets_by(-60 * u.arcsec, -60 * u.arcsec),
             f001.spherical_offsets_by(60 * u.arcsec, 60 * u.arcsec)]
    near_syn2 = f001.spherical_offsets_by(10 * u.arcsec, -10 * u.arcsec)
    positions = SkyCoord(empty + [near_syn2])
    return Table({"id": ["sky-a", "sky-b", "near-SYN-2"], "ra": positions.ra.deg, "dec": positions.dec.deg})


def test_blank_targets_give_images_without_boxes_and_leave_the_cluster_images_alone(tiny_survey, truth, tmp_path,
                                                                                    tiny_settings):
    # 5" offsets: a 79" image around an empty position 60" from SYN-0 and 80" from SYN-2 never holds them.
    settings = replace(tiny_settings, max_offset=5 * u.arcsec, test_fraction=0.5)
    source = LocalFITSSource(tiny_survey)
    without = {split: json.loads(p.read_text())
               for split, p in build_dataset(truth, source, tmp_path / "without", settings, progress=False).items()}
    paths = build_dataset(truth, source, tmp_path / "with", settings, blank_targets=blank_targets_of_the_tiny_survey(),
                          progress=False)
    coco = {split: json.loads(p.read_text()) for split, p in paths.items()}
    for split in ("train", "test"):  # the clusters' images, boxes and split are those of the build without
        clusters = [image for image in coco[split]["images"] if not image["blank"]]
        assert [(i["file_name"], i["offset_arcsec"]) for i in clusters] == \
            [(i["file_name"], i["offset_arcsec"]) for i in without[split]["images"]]
        assert not any(image["blank"] for image in without[split]["images"])
    images = {image["target_id"]: [] for split in coco for image in coco[split]["images"]}
    split_of = {}
    for split in coco:
        boxes = {}
        for annotation in coco[split]["annotations"]:
            boxes.setdefault(annotation["image_id"], []).append(annotation["cluster_id"])
        for image in coco[split]["images"]:
            images[image["target_id"]].append(boxes.get(image["id"], []))
            split_of.setdefault(image["target_id"], set()).add(split)
            assert (tmp_path / "with" / image["file_name"]).is_file()
    assert images["sky-a"] == images["sky-b"] == [[]] * 4  # 4 images each, no box
    assert images["near-SYN-2"] == [["SYN-2"]] * 4  # a cluster inside a blank target's image is still labelled
    # Each target's images lie in one set; the cluster-free ones are split on their own (half of 2 in test),
    # the one holding SYN-2 goes with SYN-2.
    assert all(len(sets) == 1 for sets in split_of.values())
    assert {split_of["sky-a"].pop(), split_of["sky-b"].pop()} == {"train", "test"}
    assert split_of["near-SYN-2"] == split_of["SYN-2"]
    assert json.loads((tmp_path / "with" / "build.json").read_text())["blank_targets"] == 3
    # detectron2 reads them back as images without instances, flagged blank; older data sets read as not blank.
    from deepcee_d2.data.register import load_deepcee_json
    records = load_deepcee_json(paths["train"], tmp_path / "with", "with_blank")
    assert any(record["blank"] and not record["annotations"] for record in records)
    assert not any(record["blank"] for record in load_deepcee_json(tmp_path / "without" / "train.json",
                                                                    tmp_path / "without", "without_blank"))


def test_blank_targets_that_cannot_be_used_are_refused(tiny_survey, truth, tmp_path, tiny_settings):
    source = LocalFITSSource(tiny_survey)
    blank = blank_targets_of_the_tiny_survey()
    for table, message in ((blank[["id", "ra"]], r"blank targets: no dec column"),
                           (Table(blank, copy=True), r"ids \['SYN-0'\] repeat, or are cluster ids too"),
                           (Table(blank, copy=True), r"1 positions are not on the sky \(rows \[1\]\)")):
        if "repeat" in message:
            table["id"][0] = "SYN-0"
        elif "not on the sky" in message:
            table["dec"][1] = np.nan
        with pytest.raises(ValueError, match=message):
            build_dataset(truth, source, tmp_path / "refused", tiny_settings, blank_targets=table, progress=False)
    assert not (tmp_path / "refused").exists()


def test_training_keeps_the_images_without_clusters():
    """detectron2's train loader (as `Trainer.build_train_loader` configures it) keeps images without
    annotations: detectron2 drops them unless DATALOADER.FILTER_EMPTY_ANNOTATIONS is off."""
    from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog
    from detectron2.data.build import _train_loader_from_config

    records = [{"image_id": 1, "file_name": "blank.png", "height": 10, "width": 10, "annotations": []},
               {"image_id": 2, "file_name": "cluster.png", "height": 10, "width": 10,
                "annotations": [{"bbox": [1, 1, 5, 5], "bbox_mode": 1, "category_id": 0, "iscrowd": 0}]}]
    DatasetCatalog.register("deepcee_blank_loader_test", lambda: records)
    MetadataCatalog.get("deepcee_blank_loader_test").thing_classes = ["cluster"]
    from deepcee_d2.demo import DEMO_CONFIG

    cfg = load_config(DEMO_CONFIG, ["DATASETS.TRAIN", "('deepcee_blank_loader_test',)"])  # on Base-DeepCEE.yaml
    loader = _train_loader_from_config(cfg, mapper=DatasetMapper(cfg, is_train=True))
    assert [record["image_id"] for record in loader["dataset"]] == [1, 2]

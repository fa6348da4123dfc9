"""The dataset mapper keeps the WCS true to the augmented image; at test time it keeps the truth."""
import numpy as np
import pytest
import astropy.units as u
from astropy.coordinates import SkyCoord
from detectron2.config import get_cfg
from detectron2.data import transforms as T
from scipy import ndimage

from deepcee_d2.config import add_deepcee_config
from deepcee_d2.data.catalogs import read_catalog
from deepcee_d2.data.coco import DatasetSettings, build_dataset
from deepcee_d2.data.frames import LocalFITSSource
from deepcee_d2.data.mapper import DeepCEEDatasetMapper, transform_wcs
from deepcee_d2.data.register import load_deepcee_json
from deepcee_d2.sky import box_centres, celestial_wcs, sky_to_box_xy

SMALL = DatasetSettings(cutout_size=200, network_size=100, max_offset=30 * u.arcsec, box_size=50 * u.kpc,
                        split="train", seed=5)


@pytest.fixture(scope="module")
def records(tiny_survey, tmp_path_factory):
    out = tmp_path_factory.mktemp("mapper") / "tiny"
    paths = build_dataset(read_catalog(tiny_survey / "clusters.fits"), LocalFITSSource(tiny_survey), out, SMALL,
                          progress=False)
    return load_deepcee_json(paths["train"], out, "deepcee_mapper_test_records")


def light_centre(image_chw, x, y, radius=3.5):
    """Light-weighted centre (detectron2 coordinates) of the red channel within ``radius`` of ``(x, y)``."""
    red = image_chw[0].numpy().astype(float)
    yy, xx = np.mgrid[0:red.shape[0], 0:red.shape[1]] + 0.5
    near = (xx - x) ** 2 + (yy - y) ** 2 <= radius**2
    row, column = ndimage.center_of_mass(np.where(near, red, 0.0))
    return column + 0.5, row + 0.5


@pytest.mark.parametrize("augmentations", [
    [T.RandomFlip(prob=1.0, horizontal=True)],
    [T.ResizeShortestEdge(150, 150), T.RandomFlip(prob=1.0, horizontal=True)],
], ids=["flip", "resize+flip"])
def test_bcg_pixel_from_the_new_wcs_is_on_the_bcg_and_its_box(records, augmentations):
    mapper = DeepCEEDatasetMapper(True, augmentations=augmentations, image_format="RGB")
    checked = 0
    for record in records:
        out = mapper(record)
        size = out["image"].shape[1]
        wcs = celestial_wcs(out["wcs"])
        for annotation, box in zip(record["annotations"], out["instances"].gt_boxes.tensor.numpy()):
            x, y = sky_to_box_xy(wcs, SkyCoord(annotation["ra"] * u.deg, annotation["dec"] * u.deg))
            bx, by = box_centres(box)
            clipped = box[0] <= 0 or box[1] <= 0 or box[2] >= size or box[3] >= size
            if not clipped:
                assert abs(x - bx[0]) < 0.5 and abs(y - by[0]) < 0.5  # the box moved with the WCS
            radius = 3.5 * size / 100
            if min(x, y) < radius or max(x, y) > size - radius:
                continue  # too near the edge for an unbiased centroid
            lx, ly = light_centre(out["image"], x, y, radius)
            assert abs(lx - x) < 0.5 and abs(ly - y) < 0.5  # and the pixels did too
            checked += 1
    assert checked >= len(records)


def test_flip_mirrors_the_image_and_the_wcs(records):
    record = records[0]
    plain = DeepCEEDatasetMapper(True, augmentations=[], image_format="RGB")(record)
    flipped = DeepCEEDatasetMapper(True, augmentations=[T.RandomFlip(prob=1.0)], image_format="RGB")(record)
    np.testing.assert_array_equal(flipped["image"].numpy(), plain["image"].numpy()[:, :, ::-1])
    before, after = celestial_wcs(plain["wcs"]), celestial_wcs(flipped["wcs"])
    sky = before.pixel_to_world([0.0, 30.0, 99.0], [5.0, 50.0, 99.0])
    x, y = after.world_to_pixel(sky)
    np.testing.assert_allclose(x, [99.0, 69.0, 0.0], atol=1e-4)
    np.testing.assert_allclose(y, [5.0, 50.0, 99.0], atol=1e-4)


def test_transform_wcs_of_no_transform_is_the_same_wcs(records):
    wcs = celestial_wcs(records[0]["wcs"])
    same = transform_wcs(wcs, T.TransformList([T.NoOpTransform()]), (100, 100), (100, 100))
    sky = wcs.pixel_to_world([0.0, 99.0, 40.0], [0.0, 99.0, 70.0])
    assert sky.separation(same.pixel_to_world([0.0, 99.0, 40.0], [0.0, 99.0, 70.0])).max() < 1e-4 * u.arcsec


def test_test_time_keeps_annotations_extras_and_wcs(records):
    record = records[0]
    out = DeepCEEDatasetMapper(False, augmentations=[T.ResizeShortestEdge(150, 150)], image_format="RGB")(record)
    assert out["image"].shape[1:] == (150, 150)
    assert out["wcs"] == record["wcs"] and out["annotations"] == record["annotations"]
    for key in ("ra", "dec", "pixel_scale", "target_id", "height", "width", "image_id"):
        assert out[key] == record[key]
    assert "instances" not in out


def test_built_from_config_flips_horizontally_in_training():
    cfg = add_deepcee_config(get_cfg())
    mapper = DeepCEEDatasetMapper(cfg, is_train=True)
    flips = [a for a in mapper.augmentations.augs if isinstance(a, T.RandomFlip)]
    assert len(flips) == 1 and flips[0].horizontal and not flips[0].vertical
    assert not [a for a in DeepCEEDatasetMapper(cfg, is_train=False).augmentations.augs
                if isinstance(a, T.RandomFlip)]

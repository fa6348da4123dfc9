"""Registered data sets: detectron2's loader with the extras intact, lazy standard names, clear errors."""
import json
import math

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

import deepcee_d2  # noqa: F401  (registers the standard names)
from deepcee_d2.data.register import STANDARD_DATASETS, register_deepcee_dataset


@pytest.fixture
def dataset_root(tiny_dataset):
    """``<root>/synthetic/{train,test}.json``: the shared tiny data set, one cluster without a magnitude."""
    return tiny_dataset.root


@pytest.fixture
def registered(dataset_root):
    name = "deepcee_tiny_registered"
    register_deepcee_dataset(name, dataset_root / "synthetic" / "train.json", dataset_root / "synthetic")
    yield name
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def test_records_carry_the_image_and_annotation_extras(registered, dataset_root):
    records = DatasetCatalog.get(registered)
    coco = json.loads((dataset_root / "synthetic" / "train.json").read_text())
    assert len(records) == len(coco["images"]) > 0
    images = {image["id"]: image for image in coco["images"]}
    for record in records:
        image = images[record["image_id"]]
        assert record["file_name"] == str(dataset_root / "synthetic" / image["file_name"])
        for key in ("wcs", "ra", "dec", "pixel_scale", "target_id", "offset_arcsec"):
            assert record[key] == image[key]
        assert record["annotations"]
        for annotation in record["annotations"]:
            assert annotation["category_id"] == 0 and annotation["bbox_mode"] == BoxMode.XYWH_ABS
            assert {"cluster_id", "ra", "dec", "z", "richness", "n_members", "bcg_rmag"} <= set(annotation)
    magnitudes = {a["cluster_id"]: a["bcg_rmag"] for r in records for a in r["annotations"]}
    assert all(math.isnan(m) for c, m in magnitudes.items() if c == "SYN-2")  # null in json -> NaN
    assert all(m == 16.0 for c, m in magnitudes.items() if c != "SYN-2")
    metadata = MetadataCatalog.get(registered)
    assert metadata.thing_classes == ["cluster"] and metadata.evaluator_type == "deepcee"


def test_standard_names_are_registered_without_files():
    assert set(STANDARD_DATASETS) == {"deepcee_whl12_train", "deepcee_whl12_test", "deepcee_redmapper_test",
                                      "deepcee_synthetic_train", "deepcee_synthetic_test"}
    for name in STANDARD_DATASETS:
        assert name in DatasetCatalog.list()
        assert MetadataCatalog.get(name).evaluator_type == "deepcee"


def test_missing_standard_data_set_names_the_file_and_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPCEE_DATASETS", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError) as error:
        DatasetCatalog.get("deepcee_redmapper_test")
    message = str(error.value)
    assert f"{tmp_path}/nowhere/redmapper/test.json: data set 'deepcee_redmapper_test' not found" in message
    assert "build it with: python tools/prepare_dataset.py --catalog redmapper" in message
    assert f"--out {tmp_path}/nowhere/redmapper" in message


def test_standard_name_loads_from_the_root_in_the_environment(dataset_root, monkeypatch):
    monkeypatch.setenv("DEEPCEE_DATASETS", str(dataset_root))
    train, test = DatasetCatalog.get("deepcee_synthetic_train"), DatasetCatalog.get("deepcee_synthetic_test")
    assert len(train) + len(test) == 12
    assert not {r["target_id"] for r in train} & {r["target_id"] for r in test}

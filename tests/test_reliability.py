"""Bad inputs from issue 14 give clear errors naming the file, before anything is written; nothing a user
passes is ever executed (configs, tables). Weights: tests/test_engine_predictor.py; survey: tests/test_survey.py."""
import ast
import json
import math
from pathlib import Path

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from deepcee_d2.config import load_config
from deepcee_d2.data.catalogs import read_catalog
from deepcee_d2.data.coco import build_dataset
from deepcee_d2.data.frames import LocalFITSSource
from deepcee_d2.data.register import register_deepcee_dataset
from deepcee_d2.synthetic import ClusterSpec, write_survey

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("where", ["file", "base"])
def test_a_config_with_a_python_tag_is_refused_and_never_run(tmp_path, where):
    marker = tmp_path / "marker"
    evil = f"MODEL:\n  WEIGHTS: !!python/object/apply:os.system ['touch {marker}']\n"
    config = tmp_path / "experiment.yaml"
    if where == "file":
        config.write_text(f"_BASE_: {REPO / 'configs' / 'Base-DeepCEE.yaml'}\n{evil}")
        at_fault = config
    else:
        at_fault = tmp_path / "base.yaml"
        at_fault.write_text(f"_BASE_: {REPO / 'configs' / 'Base-DeepCEE.yaml'}\n{evil}")
        config.write_text("_BASE_: base.yaml\nSOLVER:\n  MAX_ITER: 3\n")
    with pytest.raises(ValueError, match=f"(?s){config}: a YAML tag that would construct a python object.*{at_fault}"):
        load_config(config)
    assert not marker.exists()


def test_every_shipped_config_still_loads():
    for path in sorted((REPO / "configs").glob("*.yaml")):
        load_config(path)


def test_no_unsafe_loader_in_the_package():
    """No pickle, no unsafe YAML, no numpy/pandas pickle path; torch.load only with weights_only=True."""
    problems = []
    for path in sorted((REPO / "deepcee_d2").rglob("*.py")) + sorted((REPO / "tools").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import) and any(alias.name in ("pickle", "dill", "cloudpickle", "marshal")
                                                    for alias in node.names):
                problems.append(f"{path}:{node.lineno} imports a pickle module")
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            owner = getattr(node.func.value, "id", "")
            name, keywords = node.func.attr, {k.arg: k.value for k in node.keywords}
            if name in ("read_pickle", "unsafe_load", "full_load") or (owner == "yaml" and name == "load"):
                problems.append(f"{path}:{node.lineno} {owner}.{name}")
            if owner in ("np", "numpy") and name == "load" and getattr(keywords.get("allow_pickle"), "value", False):
                problems.append(f"{path}:{node.lineno} np.load(allow_pickle=True)")
            if owner == "torch" and name == "load" and getattr(keywords.get("weights_only"), "value", None) is not True:
                problems.append(f"{path}:{node.lineno} torch.load without weights_only=True")
            if name == "merge_from_file" and getattr(keywords.get("allow_unsafe"), "value", None) is not False:
                problems.append(f"{path}:{node.lineno} merge_from_file without allow_unsafe=False")
    assert problems == []


def test_zero_or_negative_redshift_is_refused_naming_the_rows(tiny_survey, tiny_settings, tmp_path):
    truth = read_catalog(tiny_survey / "clusters.fits")
    for z in (0.0, -0.1):
        bad = truth.copy()
        bad["z"][2] = z
        bad.meta["source"] = str(tiny_survey / "clusters.fits")  # as catalogues read by catalogs.to_cluster_schema
        with pytest.raises(ValueError, match=r"annotation catalogue: 1 clusters with z <= 0, e.g. \['SYN-2'\] "
                                             r"\(rows \[2\] of .*clusters.fits\)"):
            build_dataset(truth, LocalFITSSource(tiny_survey), tmp_path / "z", tiny_settings, annotate_with=bad,
                          progress=False)
    assert not (tmp_path / "z").exists()


def test_a_data_set_without_any_image_is_an_error_not_an_empty_coco_file(tiny_survey, tiny_settings, tmp_path):
    lost = read_catalog(tiny_survey / "clusters.fits")
    lost["ra"] += 40.0  # every cluster outside the imaging
    lost["bcg_ra"] += 40.0
    with pytest.raises(ValueError, match=f"{tmp_path / 'out'}: no image could be made \\(12 failed, e.g. .*"
                                         "no COCO file written"):
        build_dataset(lost, LocalFITSSource(tiny_survey), tmp_path / "out", tiny_settings, skip_failures=True,
                      progress=False)
    assert sorted(path.name for path in (tmp_path / "out").glob("*.json")) == ["build.json"]  # no train/test.json
    assert (tmp_path / "out" / "failures.ecsv").is_file()


@pytest.fixture
def built_copy(tiny_survey, tiny_settings, tmp_path):
    truth = read_catalog(tiny_survey / "clusters.fits")
    paths = build_dataset(truth, LocalFITSSource(tiny_survey), tmp_path / "data", tiny_settings, progress=False)
    yield paths["train"]
    if "deepcee_reliability" in DatasetCatalog.list():
        DatasetCatalog.remove("deepcee_reliability")
        MetadataCatalog.remove("deepcee_reliability")


def test_a_truncated_json_is_named_when_the_data_set_is_loaded(built_copy):
    built_copy.write_text(built_copy.read_text()[:500])
    register_deepcee_dataset("deepcee_reliability", built_copy, built_copy.parent)
    with pytest.raises(ValueError, match=f"{built_copy}: data set 'deepcee_reliability' is not a readable COCO json"):
        DatasetCatalog.get("deepcee_reliability")


def test_a_missing_image_is_named_when_the_data_set_is_loaded(built_copy):
    image = json.loads(built_copy.read_text())["images"][0]["file_name"]
    (built_copy.parent / image).unlink()
    register_deepcee_dataset("deepcee_reliability", built_copy, built_copy.parent)
    with pytest.raises(FileNotFoundError, match=rf"{built_copy}: 1 of its \d+ images are missing, e.g. \['.*{image}'\]"):
        DatasetCatalog.get("deepcee_reliability")


def test_a_synthetic_sky_rerun_with_other_settings_is_refused_naming_them(tmp_path):
    spec = ClusterSpec(per_field=1, z_range=(0.1, 0.2), richness_range=(20, 30))
    options = dict(clusters=spec, seed=1, field_galaxies=False, stars=False, noise=False, source_lists=False,
                   progress=False)
    write_survey(tmp_path, 1, 200, 200, **options)
    before = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    changes = [({"clusters": ClusterSpec(per_field=1, z_range=(0.2, 0.3), richness_range=(20, 30))},
                r"clusters.z_range \[0.1, 0.2\] there, \[0.2, 0.3\] now"),
               ({"clusters": ClusterSpec(per_field=1, z_range=(0.1, 0.2), richness_range=(30, 60))},
                r"clusters.richness_range \[20.0, 30.0\] there, \[30.0, 60.0\] now"),
               ({"stars": True}, "stars False there, True now")]
    for change, difference in changes:
        with pytest.raises(ValueError, match=f"{tmp_path}: already made with other settings .*{difference}"):
            write_survey(tmp_path, 1, 200, 200, **{**options, **change})
    assert {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()} == before
    write_survey(tmp_path, 1, 200, 200, **options)  # the same settings resume
    assert math.isfinite(float(np.asarray(read_catalog(tmp_path / "clusters.fits")["z"])[0]))


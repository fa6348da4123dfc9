"""Deep-CEE data sets in detectron2's DatasetCatalog and MetadataCatalog.

`register_deepcee_dataset` registers one COCO json written by `deepcee_d2.data.coco`: its loader reads it
with detectron2's ``load_coco_json`` (keeping the annotation extras) and re-attaches the image extras that
``load_coco_json`` drops (``wcs``, ``ra``, ``dec``, ``pixel_scale``, ``target_id``, ``offset_arcsec``), with
null annotation numbers as NaN. Metadata: ``thing_classes = ["cluster"]`` and ``evaluator_type = "deepcee"``.

Importing ``deepcee_d2`` registers the standard names of `STANDARD_DATASETS`, each
``<root>/<folder>/<split>.json`` with the root from the environment variable ``DEEPCEE_DATASETS`` (default
``./datasets``) read when the data set is loaded, not when it is registered: registering needs no files,
loading a missing one raises FileNotFoundError naming the file and the command that builds it. Loading checks
the json and that every image exists, so a broken data set stops before training, naming the file.

Each record also gets ``flux_cutout``, from the json's ``info``: the ``imaging`` the data set was cut from
(``fits:<folder>``, ``sdss:DR<n>``, ``skyview:...``), the cutout ``size`` (pixels) and ``pixel_scale_arcsec``,
and the data set ``folder`` (with its cutout cache ``cutouts/`` and SDSS ``frames/``, when it has them), so
that the g, r, i flux images behind an image can be remade (`deepcee_d2.evaluation.redshifts`); None when the
json records no imaging.
"""
import json
import math
import os
from pathlib import Path

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from .coco import ANNOTATION_EXTRAS, IMAGE_EXTRAS, LATER_IMAGE_EXTRAS, NUMERIC_ANNOTATION_EXTRAS

DATASETS_ENV = "DEEPCEE_DATASETS"
DEFAULT_DATASETS_ROOT = "./datasets"

# name -> (folder under the root, split, command that builds the folder; {out} is the folder).
STANDARD_DATASETS = {
    "deepcee_whl12_train": ("whl12", "train", "python tools/prepare_dataset.py --catalog whl12 --select paper "
                                              "--source skyview --out {out}"),
    "deepcee_whl12_test": ("whl12", "test", "python tools/prepare_dataset.py --catalog whl12 --select paper "
                                            "--source skyview --out {out}"),
    "deepcee_redmapper_test": ("redmapper", "test", "python tools/prepare_dataset.py --catalog redmapper "
                                                    "--source skyview --split test --region RA0 RA1 DEC0 DEC1 "
                                                    "--out {out}"),
    "deepcee_synthetic_train": ("synthetic", "train", "python tools/prepare_dataset.py --catalog SKY/clusters.fits "
                                                      "--source synthetic --imaging SKY --out {out}"),
    "deepcee_synthetic_test": ("synthetic", "test", "python tools/prepare_dataset.py --catalog SKY/clusters.fits "
                                                    "--source synthetic --imaging SKY --out {out}"),
}


def datasets_root():
    """The data set root: ``$DEEPCEE_DATASETS`` or ``./datasets``."""
    return Path(os.environ.get(DATASETS_ENV, DEFAULT_DATASETS_ROOT))


def load_deepcee_json(json_file, image_root, dataset_name, build_command=None):
    """detectron2 dataset dicts of a Deep-CEE COCO json, with the image and annotation extras.

    Parameters
    ----------
    json_file : str or Path
        ``train.json`` / ``test.json`` of a data set folder.
    image_root : str or Path
        The folder the images' ``file_name`` is relative to (the data set folder).
    dataset_name : str
        The registered name (detectron2 maps the COCO category id to 0 through its metadata).
    build_command : str, optional
        Named in the error when the file is missing.

    Raises
    ------
    FileNotFoundError
        ``json_file`` or an image it names does not exist.
    ValueError
        ``json_file`` is not a readable COCO json (e.g. truncated).
    """
    json_file = Path(json_file)
    if not json_file.is_file():
        hint = f"; build it with: {build_command}" if build_command else ""
        raise FileNotFoundError(f"{json_file}: data set {dataset_name!r} not found{hint}")
    try:
        coco = json.loads(json_file.read_text())
        images = {image["id"]: image for image in coco["images"]}
    except (ValueError, KeyError, TypeError) as error:  # truncated or not a COCO file
        raise ValueError(f"{json_file}: data set {dataset_name!r} is not a readable COCO json ({error!r}); "
                         f"rebuild it{' with: ' + build_command if build_command else ''}") from None
    records = load_coco_json(str(json_file), str(image_root), dataset_name,
                             extra_annotation_keys=list(ANNOTATION_EXTRAS))
    built = coco.get("info", {}).get("deepcee", {})
    flux_cutout = {"imaging": built.get("source"), "size": built.get("settings", {}).get("cutout_size"),
                   "pixel_scale_arcsec": built.get("settings", {}).get("pixel_scale_arcsec"),
                   "folder": str(json_file.parent)} if built else None
    missing = [record["file_name"] for record in records if not os.path.isfile(record["file_name"])]
    if missing:  # found now, not at the training iteration that reaches the image
        raise FileNotFoundError(f"{json_file}: {len(missing)} of its {len(records)} images are missing, e.g. "
                                f"{missing[:3]}; rebuild the data set (a rebuild remakes only missing images)")
    for record in records:
        image = images[record["image_id"]]
        missing = [key for key in IMAGE_EXTRAS if key not in image]
        if missing:
            raise ValueError(f"{json_file}: image {record['image_id']} lacks {missing}; rebuild the data set")
        record.update({key: image[key] for key in IMAGE_EXTRAS})
        record.update({key: image.get(key, default) for key, default in LATER_IMAGE_EXTRAS.items()})
        record["flux_cutout"] = flux_cutout
        for annotation in record["annotations"]:
            for key in NUMERIC_ANNOTATION_EXTRAS:  # null in the json -> NaN, as in cluster tables
                if annotation.get(key) is None:
                    annotation[key] = math.nan
    return records


def register_deepcee_dataset(name, json_file, image_root, build_command=None):
    """Register ``name`` as the data set of ``json_file`` (images under ``image_root``); reads nothing now."""
    DatasetCatalog.register(name, lambda: load_deepcee_json(json_file, image_root, name, build_command))
    MetadataCatalog.get(name).set(thing_classes=["cluster"], evaluator_type="deepcee", json_file=str(json_file),
                                  image_root=str(image_root))


def _load_standard(name):
    folder, split, command = STANDARD_DATASETS[name]
    out = datasets_root() / folder
    return load_deepcee_json(out / f"{split}.json", out, name, command.format(out=out))


def register_standard_datasets():
    """Register the names of `STANDARD_DATASETS` (skipping names already registered)."""
    for name in STANDARD_DATASETS:
        if name in DatasetCatalog.list():
            continue
        DatasetCatalog.register(name, lambda name=name: _load_standard(name))
        MetadataCatalog.get(name).set(thing_classes=["cluster"], evaluator_type="deepcee")


register_standard_datasets()

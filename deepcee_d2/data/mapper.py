"""detectron2 dataset mapper that keeps each image's WCS true to the pixels the model sees.

`DeepCEEDatasetMapper` is detectron2's `~detectron2.data.DatasetMapper` (same config: ``INPUT.*`` resize and
``INPUT.RANDOM_FLIP``, horizontal by default, at training time) with two differences:

- in training, the record's ``wcs`` (FITS header string) is replaced by the WCS of the augmented image, so
  that a sky position still maps to the same object after a flip or a resize (`transform_wcs`);
- at test time the annotations and all extras are kept as they are in the record, for the evaluator:
  detectron2 returns predicted boxes in the record's ``height`` x ``width`` frame, which the record's WCS
  describes.
"""
import copy

import numpy as np
import torch
from astropy.wcs.utils import fit_wcs_from_points
from detectron2.data import DatasetMapper
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from ..sky import celestial_wcs

# Grid of points (per axis) through which a transformed WCS is fitted; a TAN WCS under any affine pixel
# transform (flips, resizes, crops) is again a TAN WCS, which the fit recovers to ~1e-7 pixel.
_FIT_POINTS_PER_AXIS = 9


def transform_wcs(wcs, transforms, shape, new_shape):
    """WCS of an image of ``shape`` after detectron2 ``transforms`` made it ``new_shape``.

    Sky positions of a grid of pixels are carried through ``transforms.apply_coords`` (detectron2's
    continuous coordinates: pixel centre at ``i + 0.5``) and a TAN WCS is fitted to them with astropy's
    ``fit_wcs_from_points``.

    Parameters
    ----------
    wcs : `~astropy.wcs.WCS`
        Celestial WCS of the untransformed image.
    transforms : `~detectron2.data.transforms.Transform`
        What the augmentations did (a ``TransformList``).
    shape, new_shape : (int, int)
        ``(height, width)`` before and after.
    """
    height, width = shape
    rows, columns = np.mgrid[0:_FIT_POINTS_PER_AXIS, 0:_FIT_POINTS_PER_AXIS]
    x = columns.ravel() * (width - 1) / (_FIT_POINTS_PER_AXIS - 1)
    y = rows.ravel() * (height - 1) / (_FIT_POINTS_PER_AXIS - 1)
    sky = wcs.pixel_to_world(x, y)
    moved = transforms.apply_coords(np.stack([x + 0.5, y + 0.5], axis=1)) - 0.5
    fitted = fit_wcs_from_points((moved[:, 0], moved[:, 1]), sky, projection="TAN")
    fitted.pixel_shape = (new_shape[1], new_shape[0])
    return fitted


class DeepCEEDatasetMapper(DatasetMapper):
    """DatasetMapper whose training augmentations carry the WCS along and whose test output keeps the truth.

    Built like detectron2's: ``DeepCEEDatasetMapper(cfg, is_train=True)`` (``from_config``) or with explicit
    ``augmentations`` and ``image_format``.
    """

    def __call__(self, dataset_dict):
        """A record -> the model's input dict (``image`` tensor, ``instances`` in training)."""
        dataset_dict = copy.deepcopy(dataset_dict)
        image = utils.read_image(dataset_dict["file_name"], format=self.image_format)
        utils.check_image_size(dataset_dict, image)
        aug_input = T.AugInput(image)
        transforms = self.augmentations(aug_input)
        image = aug_input.image
        image_shape = image.shape[:2]
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if not self.is_train:
            return dataset_dict
        if "wcs" in dataset_dict:
            source = f"{dataset_dict['file_name']} (image {dataset_dict.get('image_id')})"
            wcs = celestial_wcs(dataset_dict["wcs"], source)
            original_shape = (dataset_dict["height"], dataset_dict["width"])
            dataset_dict["wcs"] = transform_wcs(wcs, transforms, original_shape, image_shape).to_header_string()
        if "annotations" in dataset_dict:
            self._transform_annotations(dataset_dict, transforms, image_shape)
        return dataset_dict

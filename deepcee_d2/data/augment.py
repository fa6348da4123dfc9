"""The sky's symmetries as detectron2 transforms: the sky has no up and no left, so a training image turned by
a multiple of 90 degrees (or mirrored) shows a cluster as likely as the original.

detectron2 has flips (``INPUT.RANDOM_FLIP``) but no exact quarter turn: ``RotationTransform`` resamples
through an affine warp about the image centre and blurs. `Rot90Transform` moves whole pixels (`numpy.rot90`)
and maps coordinates exactly, so a BCG-centred box stays centred on the BCG. Quarter turns with the
horizontal flip give all 8 orientations of the image (a vertical flip is a horizontal one turned 180 deg).
"""
import numpy as np

from detectron2.data import transforms as T
from detectron2.data.detection_utils import build_augmentation


class Rot90Transform(T.Transform):
    """Turn an ``height x width`` image by ``k`` quarter turns, as `numpy.rot90` (``k = 1``: the image's
    right edge becomes its top edge when rows are drawn top-down)."""

    def __init__(self, k, height, width):
        super().__init__()
        self._set_attributes({"k": int(k) % 4, "height": int(height), "width": int(width)})

    def apply_image(self, img):
        return np.ascontiguousarray(np.rot90(img, self.k, axes=(0, 1)))

    def apply_coords(self, coords):
        """Continuous ``(x, y)`` (pixel ``i`` spans ``[i, i + 1)``): one quarter turn maps ``(x, y)`` to
        ``(y, width - x)``."""
        coords = np.asarray(coords, dtype=float).copy()
        width, height = self.width, self.height
        for _ in range(self.k):
            coords = np.stack([coords[:, 1], width - coords[:, 0]], axis=1)
            width, height = height, width
        return coords

    def apply_segmentation(self, segmentation):
        return self.apply_image(segmentation)

    def inverse(self):
        turned = (self.width, self.height) if self.k % 2 else (self.height, self.width)
        return Rot90Transform(4 - self.k, *turned)


class RandomRot90(T.Augmentation):
    """0, 1, 2 or 3 quarter turns, each with probability 1/4."""

    def get_transform(self, image):
        k = int(np.random.randint(4))
        return Rot90Transform(k, *image.shape[:2]) if k else T.NoOpTransform()


def build_train_augmentations(cfg):
    """detectron2's training augmentations (resize, ``INPUT.RANDOM_FLIP``) and, with
    ``DEEPCEE.AUGMENT.ROTATE_90``, random quarter turns."""
    augmentations = build_augmentation(cfg, is_train=True)
    if cfg.DEEPCEE.AUGMENT.ROTATE_90:
        augmentations.append(RandomRot90())
    return augmentations

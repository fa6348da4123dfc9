"""The sky's symmetries in training: exact quarter turns keep a BCG-centred box on the BCG."""
import numpy as np
import pytest

from detectron2.data import transforms as T

from deepcee_d2.config import load_config
from deepcee_d2.data.augment import RandomRot90, Rot90Transform, build_train_augmentations


@pytest.mark.parametrize("k", [1, 2, 3])
def test_a_turned_box_stays_centred_on_the_turned_bcg(k):
    height, width, (row, col) = 10, 16, (3, 7)
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[row, col] = 255  # the BCG, in pixel (row 3, column 7): centre (7.5, 3.5) in box coordinates
    box = np.array([[col + 0.5 - 2, row + 0.5 - 2, col + 0.5 + 2, row + 0.5 + 2]])
    transform = Rot90Transform(k, height, width)
    turned = transform.apply_image(image)
    assert turned.shape[:2] == ((width, height) if k % 2 else (height, width))
    new_row, new_col = np.argwhere(turned[:, :, 0] == 255)[0]
    new_box = transform.apply_box(box)[0]
    assert (new_box[0] + new_box[2]) / 2 == new_col + 0.5 and (new_box[1] + new_box[3]) / 2 == new_row + 0.5
    assert new_box[2] - new_box[0] == 4 and new_box[3] - new_box[1] == 4
    back = transform.inverse()
    assert np.array_equal(back.apply_image(turned), image) and np.allclose(back.apply_box(new_box[None]), box)


def test_random_quarter_turns_take_every_orientation_and_are_switched_by_the_config():
    np.random.seed(0)
    image = np.zeros((4, 6, 3), dtype=np.uint8)
    ks = {getattr(RandomRot90().get_transform(image), "k", 0) for _ in range(40)}
    assert ks == {0, 1, 2, 3}
    kinds = [type(a) for a in build_train_augmentations(load_config(opts=["DEEPCEE.AUGMENT.ROTATE_90", "True"]))]
    assert T.ResizeShortestEdge in kinds and RandomRot90 in kinds
    assert RandomRot90 not in [type(a) for a in build_train_augmentations(load_config())]  # off by default

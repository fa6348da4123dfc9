#!/usr/bin/env python
"""Convert a TensorFlow Inception-v2 checkpoint into a detectron2 checkpoint for MODEL.WEIGHTS.

  tools/convert_tf_checkpoint.py faster_rcnn_inception_v2_coco_2018_01_28/model.ckpt \\
      pretrained/faster_rcnn_inception_v2_coco.pth                 # TF model zoo, COCO (the paper's start)
  tools/convert_tf_checkpoint.py inception_v2.ckpt pretrained/inception_v2_imagenet.pth   # TF-slim ImageNet
  ... --keep-coco-classes 1         # our class's head from COCO's class 1 (person) instead of re-initialised
  ... --config-file configs/X.yaml MODEL.ROI_HEADS.NUM_CLASSES 2 --keep-coco-classes 1 3

Reading the checkpoint needs TensorFlow (pip install 'deepcee_d2[convert]'); the written file does not.
See docs/pretrained.md.
"""
import argparse
import sys
from pathlib import Path

from deepcee_d2.config import load_config
from deepcee_d2.convert import TFAnchorGrid, convert_tf_checkpoint, save_detectron2_checkpoint

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "deepcee_inception_v2_sdss_coco_init.yaml"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="TF checkpoint prefix (V2), file (V1) or folder with a 'checkpoint' file")
    parser.add_argument("output", help="the detectron2 checkpoint to write (.pth)")
    parser.add_argument("--config-file", default=str(DEFAULT_CONFIG),
                        help="config of the model the weights are for (default: %(default)s)")
    parser.add_argument("--keep-coco-classes", type=int, nargs="+", metavar="ID",
                        help="TF COCO class ids (1-90, label-map order) that become our classes, one per "
                             "MODEL.ROI_HEADS.NUM_CLASSES; without it the box predictor is re-initialised")
    defaults = TFAnchorGrid()
    parser.add_argument("--tf-anchor-scales", type=float, nargs="+", default=defaults.scales,
                        help="the TF model's first_stage_anchor_generator scales (default: %(default)s)")
    parser.add_argument("--tf-anchor-aspect-ratios", type=float, nargs="+", default=defaults.aspect_ratios,
                        help="its aspect ratios, width / height (default: %(default)s)")
    parser.add_argument("--tf-base-anchor-size", type=float, default=defaults.base_size,
                        help="its base anchor size in pixels (default: %(default)s)")
    parser.add_argument("opts", nargs="*", help="config overrides: KEY VALUE ...")
    args = parser.parse_intermixed_args(argv)

    try:
        cfg = load_config(args.config_file, args.opts)
        tf_anchors = TFAnchorGrid(tuple(args.tf_anchor_scales), tuple(args.tf_anchor_aspect_ratios),
                                  args.tf_base_anchor_size)
        conversion = convert_tf_checkpoint(args.checkpoint, cfg, args.keep_coco_classes, tf_anchors)
        save_detectron2_checkpoint(conversion, args.output)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        sys.exit(f"convert_tf_checkpoint: {error}")
    print(conversion.summary())
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Train or evaluate Deep-CEE (detectron2's tools/train_net.py, with deepcee_d2's config and Trainer).

  tools/train_net.py --config-file configs/deepcee_inception_v2_sdss.yaml
  tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS output/model_final.pth
  tools/train_net.py --config-file ... --resume          # continue from OUTPUT_DIR/last_checkpoint
"""
from detectron2.engine import default_argument_parser, default_setup, launch

from deepcee_d2.config import load_config
from deepcee_d2.engine import Trainer
from deepcee_d2.engine.predictor import SafeCheckpointer, weights_file


def setup(args):
    cfg = load_config(args.config_file or None, args.opts)
    cfg.freeze()
    default_setup(cfg, args)
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        checkpointer = SafeCheckpointer(model, save_dir=cfg.OUTPUT_DIR)  # strict, never unpickles
        if not (args.resume and checkpointer.has_checkpoint()):
            weights_file(cfg)  # an evaluation of a random model would be meaningless
        checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        return Trainer.test(cfg, model)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    print("Command Line Args:", args)
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))

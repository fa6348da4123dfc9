"""Dump every numeric variable of a TensorFlow checkpoint (V1 or V2 format) into an .npz file.

    python tf_reader.py CHECKPOINT OUT.npz

``deepcee_d2.convert.read_tf_checkpoint`` runs this file as a script in a process of its own, so that
TensorFlow never shares a process with PyTorch (their native libraries can clash). It imports nothing from
deepcee_d2. CHECKPOINT is a checkpoint prefix (``model.ckpt`` of ``model.ckpt.index`` + ``.data-*``), a
V1 checkpoint file, or a folder holding TensorFlow's ``checkpoint`` state file.

The .npz holds ``checkpoint`` (the prefix read), ``names`` (variable names, sorted), ``v0``, ``v1``, ...
(their values, in that order) and ``skipped`` (names of non-numeric entries, e.g. object-graph strings).
"""
import os
import sys

import numpy as np


def main(checkpoint, out):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ModuleNotFoundError:
        sys.exit("TensorFlow is needed to read TensorFlow checkpoints: pip install 'deepcee_d2[convert]'")
    if os.path.isdir(checkpoint):
        prefix = tf.train.latest_checkpoint(checkpoint)
        if prefix is None:
            sys.exit(f"{checkpoint}: a folder without a TensorFlow 'checkpoint' state file; "
                     "give the checkpoint prefix instead (e.g. .../model.ckpt)")
        checkpoint = prefix
    try:
        reader = tf.train.load_checkpoint(checkpoint)
    except Exception as error:  # TensorFlow raises several types (NotFoundError, DataLossError, ...)
        sys.exit(f"{checkpoint}: TensorFlow cannot read this checkpoint: {type(error).__name__}: {error}")
    names, skipped, arrays = [], [], {}
    for name in sorted(reader.get_variable_to_shape_map()):
        value = np.asarray(reader.get_tensor(name))
        if value.dtype.kind in "biuf":
            arrays[f"v{len(names)}"] = value
            names.append(name)
        else:
            skipped.append(name)
    np.savez(out, checkpoint=np.array(checkpoint), names=np.array(names, dtype=str),
             skipped=np.array(skipped, dtype=str), **arrays)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])

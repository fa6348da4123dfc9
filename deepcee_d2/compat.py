"""What differs between detectron2 installs: which compiled (C++/CUDA) ops are present.

detectron2 v0.6 from PyPI's source distribution has no compiled ops (the installer adds a stand-in
``detectron2._C`` whose ops raise); detectron2 main makes ``_C`` optional; an official git build has them
all. Faster R-CNN on CPU needs none of them (torchvision supplies ROIAlign and NMS), so a config is checked
for features that do before a model is built, and the error says which op is missing and how to get it.
"""
HOW_TO_GET_COMPILED_OPS = (
    "Install detectron2 from its git repository so that its C++/CUDA ops are compiled: "
    "`pip install --no-build-isolation 'git+https://github.com/facebookresearch/detectron2.git'` "
    "(torch first; needs internet and a C++ compiler, plus nvcc for GPU ops), then rerun "
    "`scripts/setup_env.sh`, which keeps an installed detectron2."
)


def compiled_ops_available():
    """True when detectron2's compiled extension is importable and real (not the installer's stand-in)."""
    try:
        from detectron2 import _C
    except ImportError:
        return False
    return not getattr(_C, "DEEPCEE_STUB", False)


def compiled_ops_required(cfg):
    """The compiled detectron2 ops that ``cfg`` asks for, as ``{op: the config setting that needs it}``."""
    needed = {}
    if cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE == "ROIAlignRotated":
        needed["roi_align_rotated"] = "MODEL.ROI_BOX_HEAD.POOLER_TYPE: ROIAlignRotated"
    if cfg.MODEL.PROPOSAL_GENERATOR.NAME == "RRPN" or cfg.MODEL.ROI_HEADS.NAME == "RROIHeads":
        needed["box_iou_rotated"] = "rotated boxes (MODEL.PROPOSAL_GENERATOR.NAME RRPN / RROIHeads)"
    if any(cfg.MODEL.RESNETS.DEFORM_ON_PER_STAGE):
        needed["deform_conv"] = "MODEL.RESNETS.DEFORM_ON_PER_STAGE"
    return needed


def check_compiled_ops(cfg):
    """Raise ``RuntimeError`` naming each compiled op ``cfg`` needs that this detectron2 lacks."""
    needed = compiled_ops_required(cfg)
    if needed and not compiled_ops_available():
        wanted = "; ".join(f"op '{op}' for {setting}" for op, setting in needed.items())
        raise RuntimeError(f"This config needs compiled detectron2 ops that are not installed: {wanted}. "
                           + HOW_TO_GET_COMPILED_OPS)

"""Stand-in for detectron2's compiled extension ``detectron2._C``.

Written into detectron2 by deepcee_d2's installer (``scripts/install_detectron2.py``) when detectron2 is
installed from the PyPI source distribution ``pb1-detectron2==0.6``, which lacks the C++/CUDA sources.
detectron2 v0.6 imports ``_C`` at module level, so the module must exist; Faster R-CNN on CPU needs none
of its ops (torchvision supplies ROIAlign and NMS).  Any compiled op asked for raises an error that names
the op and how to get a compiled detectron2.
"""

DEEPCEE_STUB = True

HOW_TO_GET_COMPILED_OPS = (
    "install detectron2 from its git repository so that its C++/CUDA ops are compiled: "
    "`pip install --no-build-isolation 'git+https://github.com/facebookresearch/detectron2.git'` "
    "(torch first; needs internet and a C++ compiler, plus nvcc for GPU ops), then rerun "
    "`scripts/setup_env.sh`, which keeps an installed detectron2"
)


class MissingCompiledOp(AttributeError):
    """A compiled detectron2 op was requested but detectron2 was installed without them."""


def get_compiler_version():
    return "none: detectron2 installed without compiled ops (deepcee_d2 sdist route)"


def get_cuda_version():
    return "none"


def has_cuda():
    return False


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    raise MissingCompiledOp(
        f"detectron2 compiled op '{name}' is not available: this detectron2 was installed from the "
        f"PyPI source distribution without its C++/CUDA extension. To use it, {HOW_TO_GET_COMPILED_OPS}."
    )

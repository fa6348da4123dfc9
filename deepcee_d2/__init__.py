"""deepcee_d2: Deep-CEE galaxy-cluster finding as a detectron2 plugin.

Importing this package registers its parts in detectron2's registries: the Inception-v2 backbone
(``build_inception_v2_backbone``), the Mixed_5 box head (``InceptionV2ROIHeads``), the RPN head, the data
sets and the 100 kpc evaluator.
"""
from .config import add_deepcee_config
from . import modeling  # noqa: F401  (registers the backbone and heads)
from .data import register  # noqa: F401  (registers the standard data sets, lazily)
from .evaluation import DeepCEEEvaluator

__all__ = ["DeepCEEEvaluator", "add_deepcee_config"]

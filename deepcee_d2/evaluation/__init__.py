"""The paper's analysis: detections judged by the proper distance of their centres from the true centres.

- `matching`: pure functions (no detectron2) on `deepcee_d2.sky.sky_pairs`: the maximum one-to-one matching
  per image at a score threshold, the precision / recall / F1 table, the centring error,
  ``evaluate_detections`` over a whole set.
- `report`: the Markdown Table 2, KS tests, completeness, plots, ``evaluation.json`` and ``report.md``.
- `crossmatch`: false positives against other catalogues: known clusters or new candidates.
- `evaluator`: ``DeepCEEEvaluator``, the detectron2 ``DatasetEvaluator`` over the above.
"""
from .crossmatch import crossmatch_false_positives
from .evaluator import DeepCEEEvaluator
from .matching import (
    Evaluation, evaluate_detections, match_image, one_to_one_match, precision_recall_f1, threshold_table,
)
from .report import summarise, write_report

__all__ = [
    "DeepCEEEvaluator", "Evaluation", "crossmatch_false_positives", "evaluate_detections", "match_image",
    "one_to_one_match", "precision_recall_f1", "summarise", "threshold_table", "write_report",
]

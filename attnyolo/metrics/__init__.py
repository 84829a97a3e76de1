"""Detection metrics computed in memory: PASCAL VOC (and COCO)."""

from attnyolo.metrics.voc import ClassResult, VOCResult, evaluate_voc

__all__ = ["ClassResult", "VOCResult", "evaluate_voc"]

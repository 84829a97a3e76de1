"""Detection metrics computed in memory: PASCAL VOC (and COCO)."""

from attnyolo.metrics.voc import PROTOCOLS, ClassResult, VOCResult, evaluate_voc

__all__ = ["PROTOCOLS", "ClassResult", "VOCResult", "evaluate_voc"]

"""The YOLO training loss, in keras.ops (any Keras backend)."""

from attnyolo.losses.yolo import YoloLoss, bce_with_logits, box_ciou

__all__ = ["YoloLoss", "bce_with_logits", "box_ciou"]

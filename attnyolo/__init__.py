"""attnyolo: attention-augmented YOLOv4-tiny object detection on Keras 3."""

__version__ = "0.1.0"

"""YOLOv4-tiny: CSPDarknet53-tiny backbone, detector, Darknet weight I/O (the decoder is
`attnyolo.inference.decoder`)."""

from attnyolo.models.backbone import ChannelSplit, csp_darknet53_tiny
from attnyolo.models.darknet import (
    DarknetError,
    LoadReport,
    load_darknet_weights,
    model_from_darknet,
    save_darknet,
)
from attnyolo.models.flops import count_flops, count_macs
from attnyolo.models.saving import ModelFileError, load_detector, save_detector
from attnyolo.models.yolo import (
    ATTENTION_POSITIONS,
    DEFAULT_ANCHOR_MASKS,
    DEFAULT_ANCHORS,
    YOLOv4Tiny,
)

__all__ = [
    "ATTENTION_POSITIONS",
    "DEFAULT_ANCHORS",
    "DEFAULT_ANCHOR_MASKS",
    "ChannelSplit",
    "DarknetError",
    "LoadReport",
    "ModelFileError",
    "YOLOv4Tiny",
    "count_flops",
    "count_macs",
    "csp_darknet53_tiny",
    "load_darknet_weights",
    "load_detector",
    "model_from_darknet",
    "save_darknet",
    "save_detector",
]

"""What a detector needs besides its network to go from an image to boxes, in one record that
every model format carries: the Keras model's config, the ONNX file's metadata, a JSON file
beside a SavedModel or TFLite export."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

# The key under which exports store the config (ONNX metadata_props, a sidecar JSON's name part).
METADATA_KEY = "attnyolo"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class InferenceConfig:
    """Everything between image files and detections that is not the network.

    Attributes:
        classes: class names, index order.
        input_size: the network's `(height, width)`.
        anchors: `(width, height)` anchor pairs in input pixels.
        anchor_masks: anchor indices per head, stride 32 first.
        xy_scale: the decoder's centre scale (1.0 as the original, 2.0 YOLOv5-style).
        letterbox: the geometry the model was trained with (True: keep aspect ratio and pad
            grey; False: stretch; None: unknown, stretch as the original's predict does).
        resize_filter: the bicubic filter it was trained with (`"opencv"`/`"pillow"`), or None
            for the default.
        attention: the attention type in the network, for reports.
        strides: the heads' strides, stride 32 first.
    """

    classes: tuple[str, ...]
    input_size: tuple[int, int]
    anchors: tuple[tuple[float, float], ...]
    anchor_masks: tuple[tuple[int, ...], ...]
    xy_scale: float = 1.0
    letterbox: bool | None = None
    resize_filter: str | None = None
    attention: str | None = None
    strides: tuple[int, ...] = field(default=(32, 16))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @classmethod
    def from_model(cls, model) -> InferenceConfig:
        """The config of a `YOLOv4Tiny` (or anything with the same attributes)."""
        return cls(
            classes=tuple(model.class_names),
            input_size=tuple(int(v) for v in model.input_size),
            anchors=tuple(tuple(float(v) for v in a) for a in model.anchors),
            anchor_masks=tuple(tuple(int(i) for i in m) for m in model.anchor_masks),
            xy_scale=float(model.xy_scale),
            letterbox=getattr(model, "letterbox", None),
            resize_filter=getattr(model, "resize_filter", None),
            attention=getattr(model, "attention", None),
        )

    def to_dict(self) -> dict:
        return {"format_version": FORMAT_VERSION, **asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict, source: str = "model") -> InferenceConfig:
        """Reads `to_dict()`'s output; raises ValueError naming `source` on a bad record."""
        try:
            version = int(data.get("format_version", FORMAT_VERSION))
            if version > FORMAT_VERSION:
                raise ValueError(
                    f"written by a newer attnyolo (format {version}, this one reads "
                    f"{FORMAT_VERSION})"
                )
            return cls(
                classes=tuple(str(c) for c in data["classes"]),
                input_size=_pair(data["input_size"]),
                anchors=tuple(tuple(float(v) for v in a) for a in data["anchors"]),
                anchor_masks=tuple(tuple(int(i) for i in m) for m in data["anchor_masks"]),
                xy_scale=float(data.get("xy_scale", 1.0)),
                letterbox=data.get("letterbox"),
                resize_filter=data.get("resize_filter"),
                attention=data.get("attention"),
                strides=tuple(int(s) for s in data.get("strides", (32, 16))),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{source}: bad attnyolo inference metadata: {e}") from None

    @classmethod
    def from_json(cls, text: str, source: str = "model") -> InferenceConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{source}: attnyolo inference metadata is not JSON: {e}") from None
        return cls.from_dict(data, source)


def _pair(values: Sequence[int]) -> tuple[int, int]:
    height, width = (int(v) for v in values)
    return height, width

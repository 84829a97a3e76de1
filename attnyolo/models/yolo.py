"""The YOLOv4-tiny detector: CSPDarknet53-tiny, the tiny FPN neck, two heads, optional attention."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import layers

from attnyolo.data.images import check_resize_filter
from attnyolo.layers.registry import AttentionSpec, attention_spec_name, get_attention
from attnyolo.models.backbone import BACKBONE_CONVS, csp_darknet53_tiny
from attnyolo.models.blocks import conv_bn_leaky

# yolov4-tiny.cfg: anchors in input pixels; head 0 (stride 32) uses anchors 3,4,5 and head 1
# (stride 16) uses 1,2,3. Anchor 0 belongs to no head, as in the cfg.
DEFAULT_ANCHORS = ((10, 14), (23, 27), (37, 58), (81, 82), (135, 169), (344, 319))
DEFAULT_ANCHOR_MASKS = ((3, 4, 5), (1, 2, 3))
HEAD_STRIDES = (32, 16)
ATTENTION_POSITIONS = ("feat1", "feat2", "p5_upsample")
# All convolution blocks in Darknet's order (cfg layers 0..36), for weight import/export.
DARKNET_CONVS = (
    *BACKBONE_CONVS,
    "p5_conv",
    "head32_conv",
    "head32_out",
    "p5_up_conv",
    "head16_conv",
    "head16_out",
)
HEAD_OUTPUTS = ("head32_out", "head16_out")


def _normalize_classes(classes: int | Sequence[str]) -> list[str]:
    if isinstance(classes, int):
        if classes < 1:
            raise ValueError(f"Number of classes must be >= 1, got {classes}")
        return [f"class{i}" for i in range(classes)]
    names = [str(c) for c in classes]
    if not names:
        raise ValueError("The class list is empty")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"Duplicate class names: {duplicates}")
    return names


def normalize_input_size(input_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(input_size, int):
        size = (input_size, input_size)
    elif isinstance(input_size, list | tuple):
        size = tuple(input_size)
    else:
        size = ()
    if len(size) != 2 or any(not isinstance(s, int) or s <= 0 or s % 32 for s in size):
        raise ValueError(
            f"Input size must be (height, width) with both a positive multiple of 32 "
            f"(the heads are at strides 32 and 16), got {input_size!r}"
        )
    return size  # type: ignore[return-value]


@keras.saving.register_keras_serializable(package="attnyolo")
class YOLOv4Tiny(keras.Model):
    """YOLOv4-tiny with optional plug-and-play attention, as in the yolov4-tiny-keras scripts.

    The architecture is Darknet's `yolov4-tiny.cfg`: a CSPDarknet53-tiny backbone (a nested
    model named `backbone`, so it can be frozen or swapped as a module), a 1x1 conv to P5, a head
    at stride 32, and P5 upsampled and concatenated with the backbone's stride-16 feature for the
    head at stride 16. Attention goes where the original scripts put it, outside the backbone so
    pretrained backbone weights stay usable: after `feat1` (stride 16), after `feat2` (stride 32)
    and after the upsampled P5 branch.

    The model file carries everything prediction needs: class names, anchors and masks, input
    size, attention type and the decoder's xy scale.

    Args:
        classes: class names, or a number of classes (named `class0`, `class1`, ...).
        input_size: `(height, width)` or one int; each a multiple of 32.
        attention: a registered attention name (`"se"`, `"cbam"`, `"eca"`, `"ca"`), a layer
            class, or None.
        attention_positions: a subset of `("feat1", "feat2", "p5_upsample")`.
        attention_kwargs: keyword arguments for each attention layer (e.g. `{"reduction": 16}`).
        anchors: six `(width, height)` pairs in input pixels.
        anchor_masks: anchor indices per head, stride 32 first.
        xy_scale: the decoder's xy scale: centre = (s * sigmoid(t) - (s - 1) / 2 + cell) / grid.
            1.0 in the original scripts, 1.05 in Darknet's cfg (`scale_x_y`), 2.0 with the
            YOLOv5-style assignment.
        letterbox: the geometry the model was trained with: True when its inputs kept their
            aspect ratio, padded with grey (attnyolo's training does), False when stretched,
            None when unknown (imported or untrained). Prediction and the `voc` evaluation
            protocol use it unless told otherwise.
        resize_filter: the bicubic filter its inputs were resized with (`"opencv"` or
            `"pillow"`), None when unknown; prediction and evaluation use it unless told.

    Call arguments:
        inputs: float images `(batch, height, width, 3)`, RGB scaled to [0, 1].

    Returns:
        A list of two raw head tensors, stride 32 first, each
        `(batch, grid_h, grid_w, 3 * (5 + num_classes))` with Darknet's channel layout
        (anchor-major, then x, y, w, h, objectness, classes).

    Example:

    ```python
    model = YOLOv4Tiny(classes=["cat", "dog"], input_size=416, attention="cbam")
    p5, p4 = model(np.zeros((1, 416, 416, 3), "float32"))
    ```

    Reference:
        Bochkovskiy et al., "YOLOv4: Optimal Speed and Accuracy of Object Detection", 2020;
        Darknet `cfg/yolov4-tiny.cfg`.
    """

    def __init__(
        self,
        classes: int | Sequence[str] = 80,
        input_size: int | Sequence[int] = 416,
        attention: AttentionSpec = None,
        attention_positions: Sequence[str] = ATTENTION_POSITIONS,
        attention_kwargs: dict[str, Any] | None = None,
        anchors: Sequence[Sequence[float]] = DEFAULT_ANCHORS,
        anchor_masks: Sequence[Sequence[int]] = DEFAULT_ANCHOR_MASKS,
        xy_scale: float = 1.0,
        letterbox: bool | None = None,
        resize_filter: str | None = None,
        **kwargs,
    ):
        class_names = _normalize_classes(classes)
        height, width = normalize_input_size(input_size)
        attention_name = attention_spec_name(attention)
        positions = tuple(attention_positions)
        unknown = sorted(set(positions) - set(ATTENTION_POSITIONS))
        if unknown:
            raise ValueError(f"Unknown attention positions {unknown}; valid: {ATTENTION_POSITIONS}")
        anchors = tuple(tuple(float(v) for v in a) for a in anchors)
        masks = tuple(tuple(int(i) for i in m) for m in anchor_masks)
        if any(len(a) != 2 or min(a) <= 0 for a in anchors):
            raise ValueError(f"Anchors must be positive (width, height) pairs, got {anchors}")
        if len(masks) != 2 or any(len(m) != len(masks[0]) for m in masks):
            raise ValueError(f"anchor_masks needs two heads with equally many anchors: {masks}")
        if any(not 0 <= i < len(anchors) for m in masks for i in m):
            raise ValueError(f"anchor_masks {masks} index outside the {len(anchors)} anchors")
        attention_kwargs = dict(attention_kwargs or {})
        num_outputs = len(masks[0]) * (5 + len(class_names))

        def attend(x, position):
            if position not in positions:
                return x
            layer = get_attention(
                attention, name=f"{position}_{attention_name}", **attention_kwargs
            )
            return x if layer is None else layer(x)

        inputs = keras.Input((height, width, 3), name="image")
        feat1, feat2 = csp_darknet53_tiny((height, width, 3))(inputs)
        feat1 = attend(feat1, "feat1")
        feat2 = attend(feat2, "feat2")
        p5 = conv_bn_leaky(feat2, 256, 1, name="p5_conv")
        out32 = conv_bn_leaky(p5, 512, 3, name="head32_conv")
        out32 = _head_conv(out32, num_outputs, "head32_out")
        p5_up = conv_bn_leaky(p5, 128, 1, name="p5_up_conv")
        p5_up = layers.UpSampling2D(2, name="p5_upsample")(p5_up)
        p5_up = attend(p5_up, "p5_upsample")
        p4 = layers.Concatenate(name="p4_concat")([p5_up, feat1])
        out16 = conv_bn_leaky(p4, 256, 3, name="head16_conv")
        out16 = _head_conv(out16, num_outputs, "head16_out")
        kwargs.setdefault("name", "yolov4_tiny")
        super().__init__(inputs=inputs, outputs=[out32, out16], **kwargs)

        self.class_names = class_names
        self.input_size = (height, width)
        self.attention = attention_name
        self.attention_positions = positions
        self.attention_kwargs = attention_kwargs
        self.anchors = anchors
        self.anchor_masks = masks
        self.xy_scale = float(xy_scale)
        self.letterbox = None if letterbox is None else bool(letterbox)
        self.resize_filter = None if resize_filter is None else check_resize_filter(resize_filter)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def backbone(self) -> keras.Model:
        return self.get_layer("backbone")

    def find_layer(self, name: str) -> keras.layers.Layer:
        """A layer of the detector or of its nested backbone, by name."""
        for model in (self, self.backbone):
            try:
                return model.get_layer(name)
            except ValueError:
                pass
        raise ValueError(f"No layer named {name!r} in {self.name} or its backbone")

    def set_loss(self, loss) -> None:
        """Makes `fit` train with `loss`, a callable `(boxes, classes, heads) -> (total, parts)`
        such as `attnyolo.losses.YoloLoss`; y is `{"boxes": (B, N, 4), "classes": (B, N)}`.
        The parts (box, obj, cls) are logged next to the total."""
        self.detection_loss = loss
        self.part_trackers = {
            name: keras.metrics.Mean(name=f"{name}_loss") for name in ("box", "obj", "cls")
        }

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = getattr(self, "detection_loss", None)
        if loss is None:
            return super().compute_loss(x, y, y_pred, sample_weight, training)
        total, parts = loss(y["boxes"], y["classes"], y_pred)
        for name, tracker in self.part_trackers.items():
            tracker.update_state(parts[name])
        if self.losses:  # regularization losses, if any layer has them
            total = total + keras.ops.sum(self.losses)
        replicas = _replicas_in_sync()
        if replicas > 1:
            # Under a TensorFlow strategy each replica's gradients are summed: each replica
            # contributes its loss / N, so the update is that of the whole batch's mean loss.
            total = total / replicas
        return total

    @property
    def metrics(self):
        base = super().metrics
        known = {id(m) for m in base}
        return base + [t for t in getattr(self, "part_trackers", {}).values() if id(t) not in known]

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "classes": list(self.class_names),
            "input_size": list(self.input_size),
            "attention": self.attention,
            "attention_positions": list(self.attention_positions),
            "attention_kwargs": dict(self.attention_kwargs),
            "anchors": [list(a) for a in self.anchors],
            "anchor_masks": [list(m) for m in self.anchor_masks],
            "xy_scale": self.xy_scale,
            "letterbox": self.letterbox,
            "resize_filter": self.resize_filter,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> YOLOv4Tiny:
        return cls(**config)


def _replicas_in_sync() -> int:
    if keras.backend.backend() != "tensorflow":
        return 1  # JAX's DataParallel computes the whole batch's loss in one program
    import tensorflow as tf

    return tf.distribute.get_strategy().num_replicas_in_sync


def _head_conv(x, filters: int, name: str):
    # Heads stay float32 under mixed precision: the decoder and the loss need the precision.
    return layers.Conv2D(
        filters,
        1,
        use_bias=True,
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.02),
        dtype="float32",
        name=name,
    )(x)

"""CSPDarknet53-tiny, the backbone of YOLOv4-tiny, exactly as Darknet's `yolov4-tiny.cfg`."""

from __future__ import annotations

import keras
from keras import layers

from attnyolo.models.blocks import conv_bn_leaky

# Block names in Darknet's weight order (the cfg's convolutional layers 0, 1, 2, 4, 5, 7, ...).
BACKBONE_CONVS = (
    "stem_conv1",
    "stem_conv2",
    *(f"csp{i}_conv{j}" for i in (1, 2, 3) for j in (1, 2, 3, 4)),
    "feat2_conv",
)


@keras.saving.register_keras_serializable(package="attnyolo")
class ChannelSplit(layers.Layer):
    """Keeps one of `groups` equal slices of the channel axis (Darknet `route groups=2 group_id=1`).

    Args:
        groups: number of equal slices.
        group_id: which slice to keep (0-based).
    """

    def __init__(self, groups: int = 2, group_id: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.groups = groups
        self.group_id = group_id

    def compute_output_shape(self, input_shape):
        if input_shape[-1] is not None and input_shape[-1] % self.groups:
            raise ValueError(
                f"{self.name}: {input_shape[-1]} channels do not split in {self.groups}"
            )
        channels = None if input_shape[-1] is None else input_shape[-1] // self.groups
        return (*input_shape[:-1], channels)

    def call(self, x):
        width = keras.ops.shape(x)[-1] // self.groups
        return x[..., self.group_id * width : (self.group_id + 1) * width]

    def get_config(self):
        return {**super().get_config(), "groups": self.groups, "group_id": self.group_id}


def _csp_block(x, filters: int, name: str):
    """Darknet's tiny CSP block: returns (pooled output, the 1x1 conv output before the concat)."""
    x = conv_bn_leaky(x, filters, 3, name=f"{name}_conv1")
    route = x
    x = ChannelSplit(2, 1, name=f"{name}_split")(x)
    x = conv_bn_leaky(x, filters // 2, 3, name=f"{name}_conv2")
    route_1 = x
    x = conv_bn_leaky(x, filters // 2, 3, name=f"{name}_conv3")
    x = layers.Concatenate(name=f"{name}_concat1")([x, route_1])
    x = conv_bn_leaky(x, filters, 1, name=f"{name}_conv4")
    feat = x
    x = layers.Concatenate(name=f"{name}_concat2")([route, x])
    x = layers.MaxPooling2D(2, 2, name=f"{name}_pool")(x)
    return x, feat


def csp_darknet53_tiny(input_shape: tuple[int, int, int], name: str = "backbone") -> keras.Model:
    """Builds CSPDarknet53-tiny.

    Args:
        input_shape: `(height, width, 3)`, channels last.
        name: model name.

    Returns:
        A functional model with outputs `[feat1, feat2]`: 256 channels at stride 16 (Darknet layer
        23) and 512 channels at stride 32 (Darknet layer 26).
    """
    inputs = keras.Input(input_shape, name="image")
    x = conv_bn_leaky(inputs, 32, 3, strides=2, name="stem_conv1")
    x = conv_bn_leaky(x, 64, 3, strides=2, name="stem_conv2")
    x, _ = _csp_block(x, 64, "csp1")
    x, _ = _csp_block(x, 128, "csp2")
    x, feat1 = _csp_block(x, 256, "csp3")
    feat2 = conv_bn_leaky(x, 512, 3, name="feat2_conv")
    return keras.Model(inputs, [feat1, feat2], name=name)

"""Large Selective Kernel block (LSKNet's `LSKblock`): a spatial selection between two large
depthwise receptive fields, applied as a full gate."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from attnyolo.layers.registry import prepare_map_inputs, register_attention
from attnyolo.layers.utils import read_channels, standardize_data_format


@register_attention("lsk")
class LargeSelectiveKernel(keras.layers.Layer):
    """Large Selective Kernel block: two stacked depthwise convolutions give a small and a large
    receptive field, a spatial selection mixes them, and the result multiplies the input.

    `u1 = dw5x5(x)`, `u2 = dw7x7_dilation3(u1)` (depthwise, "same" padding, with biases; `u2`
    sees a 23x23 window), `a1 = W1 u1 + b1`, `a2 = W2 u2 + b2` (1x1 convolutions to
    `h = C // 2` channels), `s = sigmoid(conv7x7([mean_c([a1, a2]), max_c([a1, a2])]))` (2 input
    and 2 output maps, with bias), `attn = W3 (a1 * s[0] + a2 * s[1]) + b3` (1x1 back to `C`) and
    `y = x * attn`. The gate `attn` has no activation: any real value.
    `76 * C + 3 * C * h + 2 * h + C + 198` weights, `1.5 * C^2 + 78 * C + 198` for even `C`
    (118470 for 256 channels).

    Matches the authors' `LSKblock` (zcablii/LSKNet, `mmrotate/models/backbones/lsknet.py`;
    checked on fixtures it wrote, see `tools/make_attention_fixtures.py`). That block is the
    gate ("spatial gating unit") of the paper's LSK module, which wraps it as
    `x + proj_2(LSKblock(GELU(proj_1(x))))` (`Attention` in the same file); this layer is the
    block alone, a plug-in gate like the other attention types. Deviations: the 1x1
    convolutions are `Dense` layers over the channel axis (the same weights, reshaped), and all
    convolutions run channels-last, so `"channels_first"` inputs work on every backend; the
    hidden width is at least 1 (the original builds zero-width layers for one channel);
    Keras' default initialisation (Glorot uniform kernels, zero biases) instead of PyTorch's.

    Args:
        data_format: `"channels_last"` or `"channels_first"`; `None` means
            `keras.config.image_data_format()`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: a 4-D tensor in `data_format`.

    Returns:
        A tensor of the same shape as `inputs`.

    Example:

    ```python
    y = LargeSelectiveKernel()(keras.random.normal((2, 13, 13, 256)))  # 118470 weights
    ```

    Reference:
        Li et al., "Large Selective Kernel Network for Remote Sensing Object Detection",
        ICCV 2023.
    """

    def __init__(
        self,
        data_format: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.data_format = standardize_data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        channels = read_channels(self, input_shape)
        hidden = max(1, channels // 2)
        if self.data_format == "channels_last":
            shape = (input_shape[0], input_shape[1], input_shape[2], channels)
        else:
            shape = (input_shape[0], input_shape[2], input_shape[3], channels)
        self.conv0 = keras.layers.DepthwiseConv2D(
            5, padding="same", dtype=self.dtype_policy, name="conv0"
        )
        self.conv_spatial = keras.layers.DepthwiseConv2D(
            7, padding="same", dilation_rate=3, dtype=self.dtype_policy, name="conv_spatial"
        )
        self.conv1 = keras.layers.Dense(hidden, dtype=self.dtype_policy, name="conv1")
        self.conv2 = keras.layers.Dense(hidden, dtype=self.dtype_policy, name="conv2")
        self.conv_squeeze = keras.layers.Conv2D(
            2, 7, padding="same", dtype=self.dtype_policy, name="conv_squeeze"
        )
        self.conv = keras.layers.Dense(channels, dtype=self.dtype_policy, name="conv")
        self.conv0.build(shape)
        self.conv_spatial.build(shape)
        self.conv1.build(shape)
        self.conv2.build(shape)
        self.conv_squeeze.build(shape[:-1] + (2,))
        self.conv.build(shape[:-1] + (hidden,))

    def call(self, inputs):
        attn = self._attention(inputs)
        if self.data_format == "channels_first":
            attn = ops.transpose(attn, (0, 3, 1, 2))
        return inputs * attn

    def attention_maps(self, inputs) -> dict[str, Any]:
        """The gate `call` applies: `{"full": (batch, H, W, C)}` in either data format (any
        real value: the gate has no activation)."""
        inputs = prepare_map_inputs(self, inputs)
        return {"full": self._attention(inputs)}

    def _attention(self, inputs):
        """`attn`, channels-last `(batch, H, W, C)`."""
        x = inputs
        if self.data_format == "channels_first":
            x = ops.transpose(x, (0, 2, 3, 1))
        u1 = self.conv0(x)
        u2 = self.conv_spatial(u1)
        a1 = self.conv1(u1)
        a2 = self.conv2(u2)
        both = ops.concatenate([a1, a2], axis=-1)
        pooled = ops.stack([ops.mean(both, axis=-1), ops.max(both, axis=-1)], axis=-1)
        select = ops.sigmoid(self.conv_squeeze(pooled))  # (batch, H, W, 2)
        return self.conv(a1 * select[..., :1] + a2 * select[..., 1:])

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"data_format": self.data_format})
        return config

"""Efficient Channel Attention."""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from attnyolo.layers.registry import prepare_map_inputs, register_attention
from attnyolo.layers.utils import (
    apply_channel_gate,
    check_positive,
    read_channels,
    standardize_data_format,
)


def eca_kernel_size(channels: int, gamma: float = 2, b: float = 1) -> int:
    """ECA's adaptive kernel size: `int(|(log2(C) + b) / gamma|)`, made odd by adding one."""
    k = int(abs((math.log2(channels) + b) / gamma))
    return k if k % 2 else k + 1


@register_attention("eca")
class ECA(keras.layers.Layer):
    """Efficient Channel Attention: a 1-D convolution across the pooled channel descriptor.

    `y = x * sigmoid(conv1d_k(mean_hw(x)))`, one filter, "same" padding along the channel axis,
    `k = eca_kernel_size(C, gamma, b)` unless `kernel_size` is given (5 for 128, 256 or 512
    channels, so `k` weights in all).

    Matches the yolov4-tiny-keras scripts (bubbliiiing, `nets/attention.py`) and the paper's code:
    no bias, default Keras (Glorot uniform) initialisation of the kernel. Checked on fixtures
    written by the scripts' own `eca_block` (run under tf_keras, `tools/make_original_fixtures.py`)
    and by the authors' `eca_layer` (BangguWu/ECANet, `models/eca_module.py`; see
    `tools/make_attention_fixtures.py`).

    Args:
        gamma: `gamma` of the kernel-size formula.
        b: `b` of the kernel-size formula.
        kernel_size: an odd kernel size that overrides the formula; `None` uses the formula.
        use_bias: whether the convolution has a bias.
        data_format: `"channels_last"` or `"channels_first"`; `None` means
            `keras.config.image_data_format()`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: a 4-D tensor in `data_format`.

    Returns:
        A tensor of the same shape as `inputs`.

    Example:

    ```python
    y = ECA()(keras.random.normal((2, 26, 26, 256)))  # k = 5: 5 weights
    ```

    Reference:
        Wang et al., "ECA-Net: Efficient Channel Attention for Deep Convolutional Neural
        Networks", CVPR 2020.
    """

    def __init__(
        self,
        gamma: float = 2,
        b: float = 1,
        kernel_size: int | None = None,
        use_bias: bool = False,
        data_format: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if gamma <= 0:
            raise ValueError(f"`gamma` must be positive, got {gamma!r}")
        self.gamma = gamma
        self.b = b
        self.kernel_size = (
            None if kernel_size is None else check_positive("kernel_size", kernel_size, odd=True)
        )
        self.use_bias = bool(use_bias)
        self.data_format = standardize_data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        channels = read_channels(self, input_shape)
        k = self.kernel_size or eca_kernel_size(channels, self.gamma, self.b)
        self.conv = keras.layers.Conv1D(
            1, k, padding="same", use_bias=self.use_bias, dtype=self.dtype_policy, name="conv"
        )
        self.conv.build((None, channels, 1))

    def call(self, inputs):
        return apply_channel_gate(inputs, self._channel_weights(inputs), self.data_format)

    def attention_maps(self, inputs) -> dict[str, Any]:
        """The gate `call` applies: `{"channel": (batch, C)}` in either data format."""
        inputs = prepare_map_inputs(self, inputs)
        return {"channel": self._channel_weights(inputs)}

    def _channel_weights(self, inputs):
        spatial_axes = (1, 2) if self.data_format == "channels_last" else (2, 3)
        # The channels become the convolution's length axis: (batch, C, 1).
        pooled = ops.expand_dims(ops.mean(inputs, axis=spatial_axes), -1)
        return ops.sigmoid(ops.squeeze(self.conv(pooled), -1))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "gamma": self.gamma,
                "b": self.b,
                "kernel_size": self.kernel_size,
                "use_bias": self.use_bias,
                "data_format": self.data_format,
            }
        )
        return config

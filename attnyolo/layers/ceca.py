"""Circular Efficient Channel Attention."""

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


def ceca_kernel_size(channels: int, gamma: float = 2, beta: float = 1) -> int:
    """timm's CECA kernel size: `int(|log2(C) + beta| / gamma)`, made odd, at least 3.

    Unlike `eca_kernel_size`, the absolute value is taken before dividing and the size never
    drops below 3 (timm `CecaModule`).
    """
    t = int(abs(math.log2(channels) + beta) / gamma)
    return max(t if t % 2 else t + 1, 3)


def circular_pad(x, pad: int, length: int):
    """Pads `x` of shape (batch, length, 1) by `pad` on both sides of axis 1, wrapping around."""
    # Enough copies for any pad, even one longer than the sequence.
    copies = pad // length + 1
    tiled = ops.tile(x, (1, 2 * copies + 1, 1))
    start = copies * length - pad
    return tiled[:, start : start + length + 2 * pad]


@register_attention("ceca")
class CircularECA(keras.layers.Layer):
    """ECA whose 1-D convolution wraps around the channel axis (circular padding).

    `y = x * sigmoid(conv1d_k(circular_pad(mean_hw(x))))`, one filter, no bias, `k` weights with
    `k = ceca_kernel_size(C, gamma, beta)` unless `kernel_size` is given. Channels have no order,
    so the first and last channels see each other instead of zeros (timm's rationale).

    Matches timm's `CecaModule` with its defaults. Deviations: timm's experimental `act_layer`
    (an activation after the convolution, which also enables its bias) and `gate_layer` are not
    offered; Keras' default initialisation (Glorot uniform) instead of PyTorch's.

    Args:
        gamma: `gamma` of the kernel-size formula.
        beta: `beta` of the kernel-size formula.
        kernel_size: an odd kernel size that overrides the formula; `None` uses the formula.
        data_format: `"channels_last"` or `"channels_first"`; `None` means
            `keras.config.image_data_format()`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: a 4-D tensor in `data_format`.

    Returns:
        A tensor of the same shape as `inputs`.

    Example:

    ```python
    y = CircularECA()(keras.random.normal((2, 26, 26, 256)))  # k = 5: 5 weights
    ```

    Reference:
        timm `timm/layers/eca.py` (`CecaModule`, Chris Ha), after Wang et al., "ECA-Net:
        Efficient Channel Attention for Deep Convolutional Neural Networks", CVPR 2020.
    """

    def __init__(
        self,
        gamma: float = 2,
        beta: float = 1,
        kernel_size: int | None = None,
        data_format: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if gamma <= 0:
            raise ValueError(f"`gamma` must be positive, got {gamma!r}")
        self.gamma = gamma
        self.beta = beta
        self.kernel_size = (
            None if kernel_size is None else check_positive("kernel_size", kernel_size, odd=True)
        )
        self.data_format = standardize_data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        self.channels = read_channels(self, input_shape)
        k = self.kernel_size or ceca_kernel_size(self.channels, self.gamma, self.beta)
        self.pad = (k - 1) // 2
        self.conv = keras.layers.Conv1D(
            1, k, padding="valid", use_bias=False, dtype=self.dtype_policy, name="conv"
        )
        self.conv.build((None, self.channels + 2 * self.pad, 1))

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
        padded = circular_pad(pooled, self.pad, self.channels)
        return ops.sigmoid(ops.squeeze(self.conv(padded), -1))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "gamma": self.gamma,
                "beta": self.beta,
                "kernel_size": self.kernel_size,
                "data_format": self.data_format,
            }
        )
        return config

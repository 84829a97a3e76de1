"""Light CBAM: timm's lightweight CBAM variant that averages the mean and max descriptors."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from attnyolo.layers.registry import prepare_map_inputs, register_attention
from attnyolo.layers.utils import (
    apply_channel_gate,
    check_positive,
    make_divisible,
    read_channels,
    standardize_data_format,
)


@register_attention("lcbam")
class LightCBAM(keras.layers.Layer):
    """Light CBAM: a channel gate, then a spatial gate, each on `0.5 * mean + 0.5 * max`.

    Channel gate: `c = sigmoid(W2 relu(W1 (0.5 * mean_hw(x) + 0.5 * max_hw(x))))`, with `W1`
    reducing the `C` channels to `rd = make_divisible(C * rd_ratio, rd_divisor)`. Spatial gate on
    `x' = x * c`: `s = sigmoid(BN(conv_kxk(0.5 * mean_c(x') + 0.5 * max_c(x'))))`, one input and
    one output map, "same" padding, no bias. `y = x' * s`. Where CBAM runs its MLP twice (on the
    mean and on the max) and convolves a 2-channel map, this pools first: one MLP pass and a
    `k x k` single-channel kernel. `2 * C * rd + k * k + 4` weights (the last 4 are batch norm's
    scale, offset and moving statistics) without MLP biases.

    Matches timm's `LightCbamModule` with its defaults (`rd_ratio=1/16`, `rd_divisor=1`, no MLP
    biases, 7x7 spatial kernel, batch norm with epsilon 1e-5 and PyTorch momentum 0.1, i.e. Keras
    momentum 0.9). Deviations: the activation and gates are fixed to ReLU and sigmoid; Keras'
    default initialisation (Glorot uniform) instead of PyTorch's.

    Args:
        rd_ratio: the hidden width of the channel MLP relative to the channel count.
        rd_divisor: the hidden width is rounded to a multiple of this.
        mlp_bias: whether the channel MLP has biases.
        spatial_kernel_size: odd size of the square spatial convolution kernel.
        data_format: `"channels_last"` or `"channels_first"`; `None` means
            `keras.config.image_data_format()`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: a 4-D tensor in `data_format`.
        training: whether batch normalization uses batch statistics.

    Returns:
        A tensor of the same shape as `inputs`.

    Example:

    ```python
    y = LightCBAM()(keras.random.normal((2, 26, 26, 256)))  # 2 * 256 * 16 + 49 + 4 weights
    ```

    Reference:
        timm `timm/layers/cbam.py` (`LightCbamModule`), after Woo et al., "CBAM: Convolutional
        Block Attention Module", ECCV 2018.
    """

    def __init__(
        self,
        rd_ratio: float = 1.0 / 16,
        rd_divisor: int = 1,
        mlp_bias: bool = False,
        spatial_kernel_size: int = 7,
        data_format: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if rd_ratio <= 0:
            raise ValueError(f"`rd_ratio` must be positive, got {rd_ratio!r}")
        self.rd_ratio = rd_ratio
        self.rd_divisor = check_positive("rd_divisor", rd_divisor)
        self.mlp_bias = bool(mlp_bias)
        self.spatial_kernel_size = check_positive(
            "spatial_kernel_size", spatial_kernel_size, odd=True
        )
        self.data_format = standardize_data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        channels = read_channels(self, input_shape)
        hidden = make_divisible(channels * self.rd_ratio, self.rd_divisor)
        self.fc1 = keras.layers.Dense(
            hidden, use_bias=self.mlp_bias, dtype=self.dtype_policy, name="fc1"
        )
        self.fc2 = keras.layers.Dense(
            channels, use_bias=self.mlp_bias, dtype=self.dtype_policy, name="fc2"
        )
        self.fc1.build((None, channels))
        self.fc2.build((None, hidden))
        if self.data_format == "channels_last":
            map_shape = (input_shape[0], input_shape[1], input_shape[2], 1)
        else:
            map_shape = (input_shape[0], input_shape[2], input_shape[3], 1)
        # The spatial convolution runs channels-last on the one-channel descriptor, so
        # "channels_first" inputs work on every backend.
        self.conv = keras.layers.Conv2D(
            1,
            self.spatial_kernel_size,
            padding="same",
            use_bias=False,
            dtype=self.dtype_policy,
            name="conv",
        )
        self.bn = keras.layers.BatchNormalization(
            epsilon=1e-5, momentum=0.9, dtype=self.dtype_policy, name="bn"
        )
        self.conv.build(map_shape)
        self.bn.build(map_shape)

    def call(self, inputs, training=None):
        refined = apply_channel_gate(inputs, self._channel_weights(inputs), self.data_format)
        spatial = self._spatial_weights(refined, training)  # (batch, H, W)
        insert_at = -1 if self.data_format == "channels_last" else 1
        return refined * ops.expand_dims(spatial, insert_at)

    def attention_maps(self, inputs) -> dict[str, Any]:
        """The gates `call` applies at inference (batch norm on its moving statistics):
        `{"channel": (batch, C), "spatial": (batch, H, W)}` in either data format; the spatial
        gate comes from the channel-refined features, so `y = (x * channel) * spatial`."""
        inputs = prepare_map_inputs(self, inputs)
        channel = self._channel_weights(inputs)
        refined = apply_channel_gate(inputs, channel, self.data_format)
        return {"channel": channel, "spatial": self._spatial_weights(refined, training=False)}

    def _channel_weights(self, inputs):
        spatial_axes = (1, 2) if self.data_format == "channels_last" else (2, 3)
        pooled = 0.5 * ops.mean(inputs, axis=spatial_axes) + 0.5 * ops.max(
            inputs, axis=spatial_axes
        )
        return ops.sigmoid(self.fc2(ops.relu(self.fc1(pooled))))

    def _spatial_weights(self, inputs, training):
        channel_axis = -1 if self.data_format == "channels_last" else 1
        pooled = 0.5 * ops.mean(inputs, axis=channel_axis) + 0.5 * ops.max(
            inputs, axis=channel_axis
        )
        logits = self.bn(self.conv(ops.expand_dims(pooled, -1)), training=training)
        return ops.sigmoid(ops.squeeze(logits, -1))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "rd_ratio": self.rd_ratio,
                "rd_divisor": self.rd_divisor,
                "mlp_bias": self.mlp_bias,
                "spatial_kernel_size": self.spatial_kernel_size,
                "data_format": self.data_format,
            }
        )
        return config

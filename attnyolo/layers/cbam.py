"""CBAM: channel attention followed by spatial attention."""

from __future__ import annotations

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


@register_attention("cbam_channel")
class ChannelAttention(keras.layers.Layer):
    """CBAM's channel attention: a shared MLP over average- and max-pooled channel descriptors.

    `y = x * sigmoid(MLP(mean_hw(x)) + MLP(max_hw(x)))`, where the MLP is
    `Dense(max(1, C // reduction), relu) -> Dense(C)`, shared by both descriptors.

    The defaults follow the yolov4-tiny-keras scripts (bubbliiiing, `nets/attention.py`):
    `reduction=8`, no biases, `he_normal` kernels. The paper uses `reduction=16` and biases
    (`use_bias=True`); with biases the second layer's bias is added once per descriptor, as in the
    paper's code. The hidden width never drops below one channel.

    Args:
        reduction: channel reduction ratio of the shared MLP.
        use_bias: whether the MLP layers have biases.
        data_format: `"channels_last"` or `"channels_first"`; `None` means
            `keras.config.image_data_format()`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: a 4-D tensor in `data_format`.

    Returns:
        A tensor of the same shape as `inputs`.

    Example:

    ```python
    y = ChannelAttention()(keras.random.normal((2, 26, 26, 256)))  # 2 * 256 * 32 weights
    ```

    Reference:
        Woo et al., "CBAM: Convolutional Block Attention Module", ECCV 2018.
    """

    def __init__(
        self,
        reduction: int = 8,
        use_bias: bool = False,
        data_format: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.reduction = check_positive("reduction", reduction)
        self.use_bias = bool(use_bias)
        self.data_format = standardize_data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        channels = read_channels(self, input_shape)
        hidden = max(1, channels // self.reduction)
        self.mlp_hidden = keras.layers.Dense(
            hidden,
            activation="relu",
            use_bias=self.use_bias,
            kernel_initializer="he_normal",
            dtype=self.dtype_policy,
            name="mlp_hidden",
        )
        self.mlp_out = keras.layers.Dense(
            channels,
            use_bias=self.use_bias,
            kernel_initializer="he_normal",
            dtype=self.dtype_policy,
            name="mlp_out",
        )
        self.mlp_hidden.build((None, channels))
        self.mlp_out.build((None, hidden))

    def call(self, inputs):
        return apply_channel_gate(inputs, self._channel_weights(inputs), self.data_format)

    def attention_maps(self, inputs) -> dict[str, Any]:
        """The gate `call` applies: `{"channel": (batch, C)}` in either data format."""
        inputs = prepare_map_inputs(self, inputs)
        return {"channel": self._channel_weights(inputs)}

    def _channel_weights(self, inputs):
        spatial_axes = (1, 2) if self.data_format == "channels_last" else (2, 3)
        avg = self.mlp_out(self.mlp_hidden(ops.mean(inputs, axis=spatial_axes)))
        max_ = self.mlp_out(self.mlp_hidden(ops.max(inputs, axis=spatial_axes)))
        return ops.sigmoid(avg + max_)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "reduction": self.reduction,
                "use_bias": self.use_bias,
                "data_format": self.data_format,
            }
        )
        return config


@register_attention("cbam_spatial")
class SpatialAttention(keras.layers.Layer):
    """CBAM's spatial attention: a convolution over the channel-wise mean and max maps.

    `y = x * sigmoid([BN](conv_kxk([mean_c(x), max_c(x)])))`, one output map, "same" padding.

    The defaults follow the yolov4-tiny-keras scripts: a 7x7 convolution without bias or batch norm
    (`2 * 7 * 7 = 98` weights, `he_normal`). The paper's code adds batch norm after the convolution
    (`use_bn=True`; epsilon 1e-5 and PyTorch momentum 0.01, i.e. Keras momentum 0.99). The
    convolution always runs channels-last on the 2-channel descriptor, so `"channels_first"`
    inputs work on every backend (TensorFlow has no NCHW convolution on CPU).

    Args:
        kernel_size: odd size of the square convolution kernel.
        use_bias: whether the convolution has a bias.
        use_bn: whether batch normalization follows the convolution.
        data_format: `"channels_last"` or `"channels_first"`; `None` means
            `keras.config.image_data_format()`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: a 4-D tensor in `data_format`.
        training: whether batch normalization (if any) uses batch statistics.

    Returns:
        A tensor of the same shape as `inputs`.

    Example:

    ```python
    y = SpatialAttention()(keras.random.normal((2, 26, 26, 256)))  # 98 weights
    ```

    Reference:
        Woo et al., "CBAM: Convolutional Block Attention Module", ECCV 2018.
    """

    def __init__(
        self,
        kernel_size: int = 7,
        use_bias: bool = False,
        use_bn: bool = False,
        data_format: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.kernel_size = check_positive("kernel_size", kernel_size, odd=True)
        self.use_bias = bool(use_bias)
        self.use_bn = bool(use_bn)
        self.data_format = standardize_data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        read_channels(self, input_shape)
        if self.data_format == "channels_last":
            descriptor_shape = (input_shape[0], input_shape[1], input_shape[2], 2)
        else:
            descriptor_shape = (input_shape[0], input_shape[2], input_shape[3], 2)
        self.conv = keras.layers.Conv2D(
            1,
            self.kernel_size,
            padding="same",
            use_bias=self.use_bias,
            kernel_initializer="he_normal",
            dtype=self.dtype_policy,
            name="conv",
        )
        self.conv.build(descriptor_shape)
        self.bn = None
        if self.use_bn:
            self.bn = keras.layers.BatchNormalization(
                epsilon=1e-5, momentum=0.99, dtype=self.dtype_policy, name="bn"
            )
            self.bn.build(descriptor_shape[:-1] + (1,))

    def call(self, inputs, training=None):
        weights = self._spatial_weights(inputs, training)  # (batch, H, W, 1)
        if self.data_format == "channels_first":
            weights = ops.expand_dims(ops.squeeze(weights, -1), 1)
        return inputs * weights

    def attention_maps(self, inputs) -> dict[str, Any]:
        """The gate `call` applies at inference (batch norm, if any, on its moving statistics):
        `{"spatial": (batch, H, W)}` in either data format."""
        inputs = prepare_map_inputs(self, inputs)
        return {"spatial": ops.squeeze(self._spatial_weights(inputs, training=False), -1)}

    def _spatial_weights(self, inputs, training):
        channel_axis = -1 if self.data_format == "channels_last" else 1
        # (batch, H, W, 2) for either data format.
        descriptor = ops.stack(
            [ops.mean(inputs, axis=channel_axis), ops.max(inputs, axis=channel_axis)], axis=-1
        )
        logits = self.conv(descriptor)
        if self.bn is not None:
            logits = self.bn(logits, training=training)
        return ops.sigmoid(logits)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "kernel_size": self.kernel_size,
                "use_bias": self.use_bias,
                "use_bn": self.use_bn,
                "data_format": self.data_format,
            }
        )
        return config


@register_attention("cbam")
class CBAM(keras.layers.Layer):
    """Convolutional Block Attention Module: `ChannelAttention`, then `SpatialAttention`.

    The defaults reproduce the CBAM block of the yolov4-tiny-keras scripts (bubbliiiing,
    `nets/attention.py`): channel reduction 8, no biases, 7x7 spatial convolution without batch
    norm; `2 * C * (C // 8) + 98` weights. The paper's configuration is
    `CBAM(reduction=16, use_bias=True, spatial_bn=True)`. `use_bias` applies to the channel MLP
    only: the spatial convolution never has a bias, as in both the scripts and the paper's code
    (where batch norm follows it). The defaults equal the scripts' own `cbam_block`, run under
    tf_keras (`tools/make_original_fixtures.py`); the paper's configuration equals the authors'
    `CBAM` (Jongchan/attention-module, `MODELS/cbam.py`), and its halves their `ChannelGate` and
    `SpatialGate`, on fixtures that code wrote (`tools/make_attention_fixtures.py`).

    Args:
        reduction: channel reduction ratio of the channel attention MLP.
        use_bias: whether the channel attention MLP has biases.
        kernel_size: odd kernel size of the spatial attention convolution.
        spatial_bn: whether batch normalization follows the spatial convolution.
        data_format: `"channels_last"` or `"channels_first"`; `None` means
            `keras.config.image_data_format()`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: a 4-D tensor in `data_format`.
        training: whether batch normalization (if any) uses batch statistics.

    Returns:
        A tensor of the same shape as `inputs`.

    Example:

    ```python
    y = CBAM()(keras.random.normal((2, 26, 26, 256)))  # 2 * 256 * 32 + 98 = 16482 weights
    paper = CBAM(reduction=16, use_bias=True, spatial_bn=True)
    ```

    Reference:
        Woo et al., "CBAM: Convolutional Block Attention Module", ECCV 2018.
    """

    def __init__(
        self,
        reduction: int = 8,
        use_bias: bool = False,
        kernel_size: int = 7,
        spatial_bn: bool = False,
        data_format: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.reduction = check_positive("reduction", reduction)
        self.use_bias = bool(use_bias)
        self.kernel_size = check_positive("kernel_size", kernel_size, odd=True)
        self.spatial_bn = bool(spatial_bn)
        self.data_format = standardize_data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        read_channels(self, input_shape)
        self.channel_attention = ChannelAttention(
            reduction=self.reduction,
            use_bias=self.use_bias,
            data_format=self.data_format,
            dtype=self.dtype_policy,
            name="channel_attention",
        )
        self.spatial_attention = SpatialAttention(
            kernel_size=self.kernel_size,
            use_bias=False,
            use_bn=self.spatial_bn,
            data_format=self.data_format,
            dtype=self.dtype_policy,
            name="spatial_attention",
        )
        self.channel_attention.build(input_shape)
        self.spatial_attention.build(input_shape)

    def call(self, inputs, training=None):
        return self.spatial_attention(self.channel_attention(inputs), training=training)

    def attention_maps(self, inputs) -> dict[str, Any]:
        """The gates `call` applies at inference: `{"channel": (batch, C), "spatial":
        (batch, H, W)}` in either data format; the spatial gate is computed from the
        channel-refined features, as in `call`, so `y = (x * channel) * spatial`."""
        inputs = prepare_map_inputs(self, inputs)
        channel = self.channel_attention.attention_maps(inputs)["channel"]
        refined = apply_channel_gate(inputs, channel, self.data_format)
        return {"channel": channel, **self.spatial_attention.attention_maps(refined)}

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "reduction": self.reduction,
                "use_bias": self.use_bias,
                "kernel_size": self.kernel_size,
                "spatial_bn": self.spatial_bn,
                "data_format": self.data_format,
            }
        )
        return config

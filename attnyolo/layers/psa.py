"""Polarized Self-Attention: a channel-only and a spatial-only self-attention gate, in parallel
(`psa`) or in sequence (`psa_s`)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from attnyolo.layers.registry import prepare_map_inputs, register_attention
from attnyolo.layers.utils import apply_channel_gate, read_channels, standardize_data_format


def _softmax_hw(logits):
    """Softmax over the positions (axes 1 and 2) of a channels-last tensor, written out because
    not every backend's softmax takes two axes."""
    logits = logits - ops.max(logits, axis=(1, 2), keepdims=True)
    weights = ops.exp(logits)
    return weights / ops.sum(weights, axis=(1, 2), keepdims=True)


class _PolarizedBase(keras.layers.Layer):
    """The weights and branches both PSA layouts share (1x1 convolutions as Dense layers)."""

    def __init__(self, data_format: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.data_format = standardize_data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def _dense(self, units, name, use_bias=False):
        return keras.layers.Dense(units, use_bias=use_bias, dtype=self.dtype_policy, name=name)

    def build(self, input_shape):
        channels = read_channels(self, input_shape)
        self.inter = max(1, channels // 2)
        self.conv_q_right = self._dense(1, "conv_q_right")
        self.conv_v_right = self._dense(self.inter, "conv_v_right")
        self.conv_q_left = self._dense(self.inter, "conv_q_left")
        self.conv_v_left = self._dense(self.inter, "conv_v_left")
        for layer in (self.conv_q_right, self.conv_v_right, self.conv_q_left, self.conv_v_left):
            layer.build((None, None, None, channels))
        self._build_channel_up(channels)

    def _channels_last(self, inputs):
        if self.data_format == "channels_first":
            return ops.transpose(inputs, (0, 2, 3, 1))
        return inputs

    def _channel_weights(self, x):
        """The channel-only branch on channels-last `x`: `(batch, C)`."""
        weights = _softmax_hw(self.conv_q_right(x))  # (batch, H, W, 1)
        context = ops.sum(self.conv_v_right(x) * weights, axis=(1, 2))  # (batch, C / 2)
        return ops.sigmoid(self._channel_up(context))

    def compute_output_shape(self, input_shape):
        return input_shape


@register_attention("psa")
class PolarizedSelfAttention(_PolarizedBase):
    """Polarized Self-Attention, parallel layout: `y = x * c + x * s`, a channel-only and a
    spatial-only self-attention gate side by side, so the gate `c + s` lies in (0, 2).

    With `Wq`, `Wv` (channel branch) and `Wg`, `Wt` (spatial branch) 1x1 convolutions without
    bias, `C / 2` output channels each except `Wq`'s one:
    `c = sigmoid(Wup sum_hw softmax_hw(Wq x) * Wv x)` (`Wup`: `C / 2 -> C`, no bias) and
    `s = sigmoid(softmax_hw(sum_k mean_hw(Wg x)_k * (Wt x)_k))`. `2 * C^2 + C` weights (even
    `C`).

    Matches the authors' `PSA_p` (DeLightCMU/PSA `semantic-segmentation/network/PSA.py`, with
    `inplanes = planes = C`; checked on fixtures it wrote, see
    `tools/make_attention_fixtures.py`), including where that code differs from the paper: the
    channel branch has no LayerNorm, and the spatial branch takes a softmax over the positions
    of its logits before the sigmoid (the paper: a softmax over the channels of the pooled
    query). Deviations: the inner width `C // 2` is at least 1; Keras' default initialisation
    (Glorot uniform) instead of the original's Kaiming-normal (fan-in) convolutions.

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
    y = PolarizedSelfAttention()(keras.random.normal((2, 13, 13, 256)))  # 131328 weights
    ```

    Reference:
        Liu, Xu, Hu & Huang, "Polarized Self-Attention: Towards High-quality Pixel-wise
        Regression", arXiv:2107.00782, 2021.
    """

    def _build_channel_up(self, channels):
        self.conv_up = self._dense(channels, "conv_up")
        self.conv_up.build((None, self.inter))

    def _channel_up(self, context):
        return self.conv_up(context)

    def _spatial_weights(self, x):
        """The spatial-only branch on channels-last `x`: `(batch, H, W)`."""
        query = ops.mean(self.conv_q_left(x), axis=(1, 2), keepdims=True)  # (batch, 1, 1, C/2)
        logits = ops.sum(query * self.conv_v_left(x), axis=-1, keepdims=True)  # (batch, H, W, 1)
        return ops.sigmoid(ops.squeeze(_softmax_hw(logits), -1))

    def call(self, inputs):
        return inputs * self._gate(inputs)

    def attention_maps(self, inputs) -> dict[str, Any]:
        """The gate `call` applies: `{"full": (batch, H, W, C)}`, channel plus spatial gate, in
        either data format (values in (0, 2))."""
        inputs = prepare_map_inputs(self, inputs)
        gate = self._gate(inputs)
        if self.data_format == "channels_first":
            gate = ops.transpose(gate, (0, 2, 3, 1))
        return {"full": gate}

    def _gate(self, inputs):
        x = self._channels_last(inputs)
        channel = self._channel_weights(x)
        gate = channel[:, None, None, :] + ops.expand_dims(self._spatial_weights(x), -1)
        if self.data_format == "channels_first":
            gate = ops.transpose(gate, (0, 3, 1, 2))
        return gate

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"data_format": self.data_format})
        return config


@register_attention("psa_s")
class SequentialPolarizedSelfAttention(_PolarizedBase):
    """Polarized Self-Attention, sequential layout: a channel-only self-attention gate, then a
    spatial-only one on the channel-refined features, `y = (x * c) * s`.

    With `Wq`, `Wv` (channel branch) and `Wg`, `Wt` (spatial branch) 1x1 convolutions without
    bias, `C / 2` output channels each except `Wq`'s one:
    `c = sigmoid(Wup sum_hw softmax_hw(Wq x) * Wv x)`, where `Wup` is a bottleneck: a 1x1
    convolution `C / 2 -> C / 8` with bias, LayerNorm over its channels (epsilon 1e-5), ReLU, and
    a 1x1 convolution `C / 8 -> C` with bias; on `x' = x * c`,
    `s = sigmoid(sum_k mean_hw(Wg x')_k * softmax_hw(Wt x')_k)`.
    `C + 3 * C * (C / 2) + (C / 2 + 3) * (C / 8) + (C / 8 + 1) * C` weights (`C` a multiple of
    8).

    Matches the authors' `PSA_s` (DeLightCMU/PSA `semantic-segmentation/network/PSA.py`, with
    `inplanes = planes = C` and its fixed bottleneck ratio 4; checked on fixtures it wrote, see
    `tools/make_attention_fixtures.py`), including where that code differs from the paper: the
    spatial branch takes its softmax over the positions of each channel of `Wt x'` (the paper:
    over the channels of the pooled query). Deviations: the widths `C // 2` and `C // 8` are at
    least 1; Keras' default initialisation (Glorot uniform kernels, zero biases) instead of the
    original's Kaiming-normal (fan-in) convolutions and PyTorch's defaults.

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
    y = SequentialPolarizedSelfAttention()(keras.random.normal((2, 13, 13, 256)))  # 111200
    ```

    Reference:
        Liu, Xu, Hu & Huang, "Polarized Self-Attention: Towards High-quality Pixel-wise
        Regression", arXiv:2107.00782, 2021.
    """

    def _build_channel_up(self, channels):
        bottleneck = max(1, self.inter // 4)
        self.conv_up1 = self._dense(bottleneck, "conv_up1", use_bias=True)
        self.norm = keras.layers.LayerNormalization(
            epsilon=1e-5, dtype=self.dtype_policy, name="norm"
        )
        self.conv_up2 = self._dense(channels, "conv_up2", use_bias=True)
        self.conv_up1.build((None, self.inter))
        self.norm.build((None, bottleneck))
        self.conv_up2.build((None, bottleneck))

    def _channel_up(self, context):
        return self.conv_up2(ops.relu(self.norm(self.conv_up1(context))))

    def _spatial_weights(self, x):
        """The spatial-only branch on channels-last `x`: `(batch, H, W)`."""
        query = ops.mean(self.conv_q_left(x), axis=(1, 2), keepdims=True)  # (batch, 1, 1, C/2)
        keys = _softmax_hw(self.conv_v_left(x))  # (batch, H, W, C / 2)
        return ops.sigmoid(ops.sum(query * keys, axis=-1))

    def call(self, inputs):
        channel = self._channel_weights(self._channels_last(inputs))
        refined = apply_channel_gate(inputs, channel, self.data_format)
        spatial = self._spatial_weights(self._channels_last(refined))  # (batch, H, W)
        insert_at = -1 if self.data_format == "channels_last" else 1
        return refined * ops.expand_dims(spatial, insert_at)

    def attention_maps(self, inputs) -> dict[str, Any]:
        """The gates `call` applies: `{"channel": (batch, C), "spatial": (batch, H, W)}` in
        either data format; the spatial gate comes from the channel-refined features, so
        `y = (x * channel) * spatial`."""
        inputs = prepare_map_inputs(self, inputs)
        channel = self._channel_weights(self._channels_last(inputs))
        refined = apply_channel_gate(inputs, channel, self.data_format)
        return {"channel": channel, "spatial": self._spatial_weights(self._channels_last(refined))}

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"data_format": self.data_format})
        return config

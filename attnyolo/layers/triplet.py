"""Triplet Attention: three rotated Z-pool spatial gates, averaged."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from attnyolo.layers.registry import prepare_map_inputs, register_attention
from attnyolo.layers.utils import read_channels, standardize_data_format

_KERNEL_SIZE = 7


@register_attention("triplet")
class TripletAttention(keras.layers.Layer):
    """Triplet Attention: a CBAM-style spatial gate on each of the three planes of `(C, H, W)`,
    the three gated tensors averaged.

    Each branch Z-pools one axis (its max and its mean, stacked as 2 maps), convolves the plane of
    the other two axes (7x7, 2 -> 1, "same" padding, no bias), batch-normalises and applies a
    sigmoid: `g_hw` pools `C` (a gate over `(H, W)`), `g_cw` pools `H` (over `(C, W)`) and `g_hc`
    pools `W` (over `(H, C)`). `y = (x * g_hw + x * g_cw + x * g_hc) / 3`; with `no_spatial=True`
    the `(H, W)` branch is dropped and `y = (x * g_cw + x * g_hc) / 2`. Each branch has
    `2 * 7 * 7 + 4` weights (the last 4 are batch norm's scale, offset and moving statistics):
    306, or 204 without the spatial branch, for any `C`.

    Matches the authors' `TripletAttention` (`triplet_attention.py` of
    landskape-ai/triplet-attention, the file its README names; `MODELS/triplet_attention.py`
    computes the same) with its default `no_spatial=False` (checked on fixtures it wrote, see
    `tools/make_attention_fixtures.py`): batch norm with epsilon 1e-5 and PyTorch momentum 0.01,
    i.e. Keras momentum 0.99; Z-pool's order (max, then mean). Deviations: Keras' default
    initialisation (Glorot uniform) instead of PyTorch's. The convolutions run on planes that
    include the channel axis, so their cost grows with `C`, as in the original.

    Args:
        no_spatial: drop the `(H, W)` branch (the paper's ablation without spatial attention).
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
    y = TripletAttention()(keras.random.normal((2, 13, 13, 256)))  # 3 * (98 + 4) weights
    ```

    Reference:
        Misra, Nalamada, Arasanipalai & Hou, "Rotate to Attend: Convolutional Triplet Attention
        Module", WACV 2021.
    """

    def __init__(
        self,
        no_spatial: bool = False,
        data_format: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.no_spatial = bool(no_spatial)
        self.data_format = standardize_data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def _branches(self) -> tuple[str, ...]:
        return ("cw", "hc") if self.no_spatial else ("cw", "hc", "hw")

    def build(self, input_shape):
        read_channels(self, input_shape)
        # Every branch convolves a 2-map Z-pool, channels-last, so "channels_first" inputs work on
        # every backend.
        pooled_shape = (None, None, None, 2)
        for branch in self._branches():
            conv = keras.layers.Conv2D(
                1,
                _KERNEL_SIZE,
                padding="same",
                use_bias=False,
                dtype=self.dtype_policy,
                name=f"{branch}_conv",
            )
            bn = keras.layers.BatchNormalization(
                epsilon=1e-5, momentum=0.99, dtype=self.dtype_policy, name=f"{branch}_bn"
            )
            conv.build(pooled_shape)
            bn.build((None, None, None, 1))
            setattr(self, f"{branch}_conv", conv)
            setattr(self, f"{branch}_bn", bn)

    def call(self, inputs, training=None):
        return inputs * self._gate(inputs, training)

    def attention_maps(self, inputs) -> dict[str, Any]:
        """The gate `call` applies at inference (batch norm on its moving statistics):
        `{"full": (batch, H, W, C)}`, the mean of the three branch gates, in either data
        format."""
        inputs = prepare_map_inputs(self, inputs)
        gate = self._gate(inputs, training=False)
        if self.data_format == "channels_first":
            gate = ops.transpose(gate, (0, 2, 3, 1))
        return {"full": gate}

    def _branch_gate(self, branch, pooled, training):
        """The sigmoid gate of a branch from its Z-pool `(batch, rows, cols, 2)`:
        `(batch, rows, cols)`."""
        conv, bn = getattr(self, f"{branch}_conv"), getattr(self, f"{branch}_bn")
        return ops.sigmoid(ops.squeeze(bn(conv(pooled), training=training), -1))

    def _gate(self, inputs, training):
        x = inputs
        if self.data_format == "channels_first":
            x = ops.transpose(x, (0, 2, 3, 1))

        def z_pool(axis):  # (max, mean) over `axis`, stacked last
            return ops.stack([ops.max(x, axis=axis), ops.mean(x, axis=axis)], axis=-1)

        # The original convolves the (C, W) plane with C as rows: (batch, W, C, 2) transposed.
        g_cw = self._branch_gate("cw", ops.transpose(z_pool(1), (0, 2, 1, 3)), training)
        gate = ops.expand_dims(ops.transpose(g_cw, (0, 2, 1)), 1)  # (batch, 1, W, C)
        g_hc = self._branch_gate("hc", z_pool(2), training)  # (batch, H, C)
        gate = gate + ops.expand_dims(g_hc, 2)
        if self.no_spatial:
            gate = gate / 2.0
        else:
            g_hw = self._branch_gate("hw", z_pool(3), training)  # (batch, H, W)
            gate = (gate + ops.expand_dims(g_hw, -1)) / 3.0
        if self.data_format == "channels_first":
            gate = ops.transpose(gate, (0, 3, 1, 2))
        return gate

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"no_spatial": self.no_spatial, "data_format": self.data_format})
        return config

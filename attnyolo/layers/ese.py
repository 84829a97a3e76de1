"""Effective Squeeze-and-Excitation channel attention."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from attnyolo.layers.registry import prepare_map_inputs, register_attention
from attnyolo.layers.utils import apply_channel_gate, read_channels, standardize_data_format


def hard_sigmoid(x):
    """timm's hard sigmoid, `relu6(x + 3) / 6` (Keras' `hard_sigmoid` is the same function)."""
    return ops.relu6(x + 3.0) / 6.0


@register_attention("ese")
class EffectiveSqueezeExcitation(keras.layers.Layer):
    """Effective Squeeze-and-Excitation: SE with one full-width layer and a hard-sigmoid gate.

    `y = x * hard_sigmoid(W mean_hw(x) + b)`, with `W` a `C x C` matrix (no bottleneck, so no
    channel information is lost) and `hard_sigmoid(z) = relu6(z + 3) / 6`. `C * C + C` weights.

    Matches timm's `EffectiveSEModule` with its defaults (`gate_layer="hard_sigmoid"`), and
    `add_maxpool=True` its experimental variant that pools `0.5 * mean + 0.5 * max`. Deviations:
    Keras' default initialisation (Glorot uniform kernel, zero bias) instead of PyTorch's; the gate
    is fixed to the hard sigmoid.

    Args:
        add_maxpool: whether the descriptor averages the spatial mean and max (timm's option).
        data_format: `"channels_last"` or `"channels_first"`; `None` means
            `keras.config.image_data_format()`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: a 4-D tensor in `data_format`.

    Returns:
        A tensor of the same shape as `inputs`.

    Example:

    ```python
    y = EffectiveSqueezeExcitation()(keras.random.normal((2, 13, 13, 256)))  # 65792 weights
    ```

    Reference:
        Lee & Park, "CenterMask: Real-Time Anchor-Free Instance Segmentation", CVPR 2020.
    """

    def __init__(
        self,
        add_maxpool: bool = False,
        data_format: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.add_maxpool = bool(add_maxpool)
        self.data_format = standardize_data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        channels = read_channels(self, input_shape)
        self.fc = keras.layers.Dense(channels, dtype=self.dtype_policy, name="fc")
        self.fc.build((None, channels))

    def call(self, inputs):
        return apply_channel_gate(inputs, self._channel_weights(inputs), self.data_format)

    def attention_maps(self, inputs) -> dict[str, Any]:
        """The gate `call` applies: `{"channel": (batch, C)}` in either data format."""
        inputs = prepare_map_inputs(self, inputs)
        return {"channel": self._channel_weights(inputs)}

    def _channel_weights(self, inputs):
        spatial_axes = (1, 2) if self.data_format == "channels_last" else (2, 3)
        pooled = ops.mean(inputs, axis=spatial_axes)
        if self.add_maxpool:
            pooled = 0.5 * pooled + 0.5 * ops.max(inputs, axis=spatial_axes)
        return hard_sigmoid(self.fc(pooled))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"add_maxpool": self.add_maxpool, "data_format": self.data_format})
        return config

"""Squeeze-and-Excitation channel attention."""

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


@register_attention("se")
class SqueezeExcitation(keras.layers.Layer):
    """Squeeze-and-Excitation block: reweights channels by a gate computed from their means.

    `y = x * sigmoid(W2 relu(W1 mean_hw(x)))`, with `W1` reducing the `C` channels to
    `max(1, C // reduction)` and `W2` expanding them back.

    The defaults reproduce the SE block of the yolov4-tiny-keras scripts (bubbliiiing,
    `nets/attention.py`): `reduction=16`, no biases, `he_normal` kernels, `2 * C * (C // 16)`
    weights. The paper's block has biases: pass `use_bias=True`. Unlike the scripts, the hidden
    width never drops below one channel. The defaults equal the scripts' own `se_block`, run
    under tf_keras (`tools/make_original_fixtures.py`). With `use_bias=True` it equals timm's
    `SEModule`
    (checked on fixtures timm wrote, at 128 channels, where timm's width rounding gives the same
    `C // 16`; `tools/make_attention_fixtures.py`).

    Args:
        reduction: channel reduction ratio of the bottleneck.
        use_bias: whether the two fully connected layers have biases (the paper's block does).
        data_format: `"channels_last"` or `"channels_first"`; `None` means
            `keras.config.image_data_format()`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: a 4-D tensor, `(batch, height, width, channels)` for `"channels_last"` or
            `(batch, channels, height, width)` for `"channels_first"`.

    Returns:
        A tensor of the same shape as `inputs`.

    Example:

    ```python
    x = keras.random.normal((2, 13, 13, 512))
    y = SqueezeExcitation()(x)  # shape (2, 13, 13, 512), 2 * 512 * 32 weights
    ```

    Reference:
        Hu et al., "Squeeze-and-Excitation Networks", CVPR 2018.
    """

    def __init__(
        self,
        reduction: int = 16,
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
        self.squeeze = keras.layers.Dense(
            hidden,
            activation="relu",
            use_bias=self.use_bias,
            kernel_initializer="he_normal",
            dtype=self.dtype_policy,
            name="squeeze",
        )
        self.excite = keras.layers.Dense(
            channels,
            activation="sigmoid",
            use_bias=self.use_bias,
            kernel_initializer="he_normal",
            dtype=self.dtype_policy,
            name="excite",
        )
        self.squeeze.build((None, channels))
        self.excite.build((None, hidden))

    def call(self, inputs):
        return apply_channel_gate(inputs, self._channel_weights(inputs), self.data_format)

    def attention_maps(self, inputs) -> dict[str, Any]:
        """The gate `call` applies: `{"channel": (batch, C)}` in either data format."""
        inputs = prepare_map_inputs(self, inputs)
        return {"channel": self._channel_weights(inputs)}

    def _channel_weights(self, inputs):
        spatial_axes = (1, 2) if self.data_format == "channels_last" else (2, 3)
        return self.excite(self.squeeze(ops.mean(inputs, axis=spatial_axes)))

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

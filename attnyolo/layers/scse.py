"""Concurrent spatial and channel squeeze-and-excitation (scSE)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from attnyolo.layers.registry import prepare_map_inputs, register_attention
from attnyolo.layers.utils import check_positive, read_channels, standardize_data_format


@register_attention("scse")
class SCSE(keras.layers.Layer):
    """Concurrent spatial and channel SE: a channel gate and a spatial gate applied side by side
    and summed.

    `c = sigmoid(W2 relu(W1 mean_hw(x) + b1) + b2)` (SE, `C -> C // reduction -> C`) and
    `s = sigmoid(w . x + b)` (a 1x1 convolution to one channel); `y = x * c + x * s`, so the gate
    `c + s` lies in (0, 2). `(C + 1) * rd + (rd + 1) * C + (C + 1)` weights, `rd = C // reduction`.

    Matches segmentation_models_pytorch's `SCSEModule` (checked on fixtures it wrote, see
    `tools/make_attention_fixtures.py`). Deviations: the hidden width is at least 1 (smp builds a
    zero-width layer for fewer channels than `reduction`); Keras' default initialisation (Glorot
    uniform kernels, zero biases) instead of PyTorch's.

    Args:
        reduction: the channel reduction ratio of the channel gate's hidden layer.
        data_format: `"channels_last"` or `"channels_first"`; `None` means
            `keras.config.image_data_format()`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: a 4-D tensor in `data_format`.

    Returns:
        A tensor of the same shape as `inputs`.

    Example:

    ```python
    y = SCSE()(keras.random.normal((2, 13, 13, 256)))  # rd = 16: 8721 weights
    ```

    Reference:
        Roy, Navab & Wachinger, "Concurrent Spatial and Channel 'Squeeze & Excitation' in Fully
        Convolutional Networks", MICCAI 2018.
    """

    def __init__(
        self,
        reduction: int = 16,
        data_format: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.reduction = check_positive("reduction", reduction)
        self.data_format = standardize_data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        channels = read_channels(self, input_shape)
        hidden = max(1, channels // self.reduction)
        self.fc1 = keras.layers.Dense(hidden, dtype=self.dtype_policy, name="fc1")
        self.fc2 = keras.layers.Dense(channels, dtype=self.dtype_policy, name="fc2")
        self.spatial = keras.layers.Dense(1, dtype=self.dtype_policy, name="spatial")
        self.fc1.build((None, channels))
        self.fc2.build((None, hidden))
        self.spatial.build((None, channels))

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
        x = inputs
        if self.data_format == "channels_first":
            x = ops.transpose(x, (0, 2, 3, 1))
        channel = ops.sigmoid(self.fc2(ops.relu(self.fc1(ops.mean(x, axis=(1, 2))))))
        spatial = ops.sigmoid(self.spatial(x))  # (batch, H, W, 1)
        gate = channel[:, None, None, :] + spatial
        if self.data_format == "channels_first":
            gate = ops.transpose(gate, (0, 3, 1, 2))
        return gate

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"reduction": self.reduction, "data_format": self.data_format})
        return config

"""SimAM: a parameter-free, energy-based 3-D attention."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from attnyolo.layers.registry import prepare_map_inputs, register_attention
from attnyolo.layers.utils import read_channels, standardize_data_format


@register_attention("simam")
class SimAM(keras.layers.Layer):
    """SimAM: every activation weighted by how much it stands out in its channel; no weights.

    Per channel, with `mu` the spatial mean and `n = H * W - 1`:
    `e = (x - mu)^2 / (4 * (sum_hw (x - mu)^2 / n + lambda)) + 0.5` and `y = x * sigmoid(e)`.
    The gate has one value per position and channel.

    Matches the authors' `simam_module` (ZjjConan/SimAM
    `networks/attentions/simam_module.py`) with its default `e_lambda=1e-4` (checked on fixtures
    it wrote, see `tools/make_attention_fixtures.py`). Deviations: none (a 1x1 grid gives
    `n = 0`, a division by zero, as in the original).

    Args:
        e_lambda: the regulariser `lambda` added to the per-channel variance.
        data_format: `"channels_last"` or `"channels_first"`; `None` means
            `keras.config.image_data_format()`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: a 4-D tensor in `data_format`.

    Returns:
        A tensor of the same shape as `inputs`.

    Example:

    ```python
    y = SimAM()(keras.random.normal((2, 13, 13, 256)))  # no weights
    ```

    Reference:
        Yang et al., "SimAM: A Simple, Parameter-Free Attention Module for Convolutional Neural
        Networks", ICML 2021.
    """

    def __init__(
        self,
        e_lambda: float = 1e-4,
        data_format: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if e_lambda <= 0:
            raise ValueError(f"`e_lambda` must be positive, got {e_lambda!r}")
        self.e_lambda = e_lambda
        self.data_format = standardize_data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        read_channels(self, input_shape)

    def call(self, inputs):
        return inputs * self._gate(inputs)

    def attention_maps(self, inputs) -> dict[str, Any]:
        """The gate `call` applies: `{"full": (batch, H, W, C)}` in either data format."""
        inputs = prepare_map_inputs(self, inputs)
        gate = self._gate(inputs)
        if self.data_format == "channels_first":
            gate = ops.transpose(gate, (0, 2, 3, 1))
        return {"full": gate}

    def _gate(self, inputs):
        axes = (1, 2) if self.data_format == "channels_last" else (2, 3)
        shape = ops.shape(inputs)
        n = ops.cast(shape[axes[0]] * shape[axes[1]] - 1, inputs.dtype)
        squared = ops.square(inputs - ops.mean(inputs, axis=axes, keepdims=True))
        variance = ops.sum(squared, axis=axes, keepdims=True) / n
        return ops.sigmoid(squared / (4.0 * (variance + self.e_lambda)) + 0.5)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"e_lambda": self.e_lambda, "data_format": self.data_format})
        return config

"""Spatial Group-wise Enhance: a spatial gate per channel group."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from attnyolo.layers.registry import prepare_map_inputs, register_attention
from attnyolo.layers.utils import check_positive, read_channels, standardize_data_format


@register_attention("sge")
class SpatialGroupEnhance(keras.layers.Layer):
    """Spatial Group-wise Enhance: each channel group weights its positions by their similarity
    to the group's mean feature.

    The `C` channels are split into `groups` groups of `C / groups`. Per group, `t = sum_c x *
    mean_hw(x)` at each position is standardised over the positions (mean, and the unbiased
    standard deviation plus 1e-5), then `y = x * sigmoid(w_g * t + b_g)` for every channel of the
    group. `2 * groups` weights, initialised to `w = 0`, `b = 1` as in the paper's code.

    Matches the authors' `SpatialGroupEnhance` (implus/PytorchInsight
    `classification/models/imagenet/resnet_sge.py`; checked on fixtures it wrote with 8 groups,
    see `tools/make_attention_fixtures.py`). Deviations: `groups=8` by default (the official
    module's default is 64, used in its ResNets; `groups=64` works on YOLOv4-tiny's 128, 256 and
    512 channels); `C` must be a multiple of `groups`, else the layer refuses the input (the
    original fails in a reshape).

    Args:
        groups: the number of channel groups.
        data_format: `"channels_last"` or `"channels_first"`; `None` means
            `keras.config.image_data_format()`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: a 4-D tensor in `data_format`.

    Returns:
        A tensor of the same shape as `inputs`.

    Example:

    ```python
    y = SpatialGroupEnhance()(keras.random.normal((2, 13, 13, 256)))  # 16 weights
    ```

    Reference:
        Li, Hu & Yang, "Spatial Group-wise Enhance: Improving Semantic Feature Learning in
        Convolutional Networks", arXiv:1905.09646, 2019.
    """

    def __init__(
        self,
        groups: int = 8,
        data_format: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.groups = check_positive("groups", groups)
        self.data_format = standardize_data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        channels = read_channels(self, input_shape)
        if channels % self.groups:
            raise ValueError(
                f"{type(self).__name__}(groups={self.groups}) needs a channel count divisible by "
                f"`groups`; got input shape {tuple(input_shape)} with "
                f"data_format={self.data_format!r}"
            )
        self.weight = self.add_weight(shape=(self.groups,), initializer="zeros", name="weight")
        self.bias = self.add_weight(shape=(self.groups,), initializer="ones", name="bias")

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
        x = inputs
        if self.data_format == "channels_first":
            x = ops.transpose(x, (0, 2, 3, 1))
        shape = ops.shape(x)
        height, width, channels = shape[1], shape[2], x.shape[-1]
        grouped = ops.reshape(x, (-1, height, width, self.groups, channels // self.groups))
        t = ops.sum(grouped * ops.mean(grouped, axis=(1, 2), keepdims=True), axis=-1)
        t = t - ops.mean(t, axis=(1, 2), keepdims=True)
        count = ops.cast(height * width - 1, t.dtype)
        std = ops.sqrt(ops.sum(ops.square(t), axis=(1, 2), keepdims=True) / count) + 1e-5
        t = t / std * ops.cast(self.weight, t.dtype) + ops.cast(self.bias, t.dtype)
        # (batch, H, W, groups) -> (batch, H, W, C), each group's gate for all its channels.
        gate = ops.repeat(ops.sigmoid(t), channels // self.groups, axis=-1)
        if self.data_format == "channels_first":
            gate = ops.transpose(gate, (0, 3, 1, 2))
        return gate

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"groups": self.groups, "data_format": self.data_format})
        return config

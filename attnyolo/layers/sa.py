"""Shuffle Attention (SA-Net): a channel and a spatial gate per channel group, then a shuffle."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from attnyolo.layers.registry import prepare_map_inputs, register_attention
from attnyolo.layers.utils import check_positive, read_channels, standardize_data_format


@register_attention("sa")
class ShuffleAttention(keras.layers.Layer):
    """Shuffle Attention: each channel group gates half its channels by their means and half by
    their normalised values, then the channels are shuffled across the two halves of `C`.

    The `C` channels are split into `groups` groups of `C / groups` channels, and each group into
    two halves of `n = C / (2 * groups)` channels; the `n`-vectors of weights below are shared by
    all groups (channel `j` of a half uses entry `j`). First half (channel gate):
    `g = sigmoid(cweight * mean_hw(x) + cbias)`. Second half (spatial gate):
    `g = sigmoid(sweight * GN(x) + sbias)`, where `GN` is a group norm with one channel per group
    (each channel standardised over its positions, biased variance plus 1e-5, then scaled and
    shifted by `gn_gamma`, `gn_beta`). The output is `y = shuffle(x * g)`, where `shuffle` is
    ShuffleNet's channel shuffle with 2 groups: `shuffle(z)[..., 2 * i + h] =
    z[..., h * C / 2 + i]` (`h` in {0, 1}, `i < C / 2`). `3 * C / groups` weights (six
    `n`-vectors), e.g. 12 for 256 channels.

    Matches the authors' `sa_layer` (wofmanaf/SA-Net, `models/sa_resnet.py`; checked on fixtures
    it wrote with `groups=4`, see `tools/make_attention_fixtures.py`), with its default of 64
    groups and its initialisation (`cweight = sweight = 0`, `cbias = sbias = 1`, group norm scale
    1 and offset 0). Deviations: none in the computation; `C` must be a multiple of
    `2 * groups`, else the layer refuses the input (the default of 64 groups takes multiples of
    128 channels, such as YOLOv4-tiny's 128, 256 and 512).

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
    y = ShuffleAttention()(keras.random.normal((2, 13, 13, 256)))  # 12 weights
    ```

    Reference:
        Zhang & Yang, "SA-Net: Shuffle Attention for Deep Convolutional Neural Networks",
        ICASSP 2021.
    """

    # The output is the gated input with its channels shuffled, not the input times the gate.
    maps_reproduce_output = False

    def __init__(
        self,
        groups: int = 64,
        data_format: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.groups = check_positive("groups", groups)
        self.data_format = standardize_data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        channels = read_channels(self, input_shape)
        if channels % (2 * self.groups):
            raise ValueError(
                f"{type(self).__name__}(groups={self.groups}) needs a channel count divisible by "
                f"2 * groups = {2 * self.groups}; got input shape {tuple(input_shape)} with "
                f"data_format={self.data_format!r}"
            )
        half = channels // (2 * self.groups)
        for name, value in (
            ("cweight", "zeros"),
            ("cbias", "ones"),
            ("sweight", "zeros"),
            ("sbias", "ones"),
            ("gn_gamma", "ones"),
            ("gn_beta", "zeros"),
        ):
            setattr(self, name, self.add_weight(shape=(half,), initializer=value, name=name))

    def call(self, inputs):
        gate = self._gate(inputs)
        if self.data_format == "channels_first":
            gate = ops.transpose(gate, (0, 3, 1, 2))
        return self._shuffle(inputs * gate)

    def attention_maps(self, inputs) -> dict[str, Any]:
        """The gate before the shuffle: `{"full": (batch, H, W, C)}` in x's channel order, in
        either data format. It does not reproduce the output by itself: `y = shuffle(x * full)
        = shuffle(x) * shuffle(full)`, so output channel `c` is input channel
        `(c % 2) * C / 2 + c // 2` times that channel's gate (see the class docstring)."""
        inputs = prepare_map_inputs(self, inputs)
        return {"full": self._gate(inputs)}

    def _gate(self, inputs):
        """The gate, channels-last `(batch, H, W, C)`, in x's channel order."""
        x = inputs
        if self.data_format == "channels_first":
            x = ops.transpose(x, (0, 2, 3, 1))
        shape = ops.shape(x)
        height, width, channels = shape[1], shape[2], x.shape[-1]
        half = channels // (2 * self.groups)
        grouped = ops.reshape(x, (-1, height, width, self.groups, 2 * half))
        x_0, x_1 = grouped[..., :half], grouped[..., half:]

        def weight(variable):
            return ops.cast(variable, x.dtype)

        # Channel half: the mean of each channel, scaled and shifted.
        channel = ops.mean(x_0, axis=(1, 2), keepdims=True)
        channel = ops.sigmoid(weight(self.cweight) * channel + weight(self.cbias))
        channel = ops.broadcast_to(channel, ops.shape(x_0))
        # Spatial half: group norm with one channel per group, then scaled and shifted.
        mean = ops.mean(x_1, axis=(1, 2), keepdims=True)
        variance = ops.mean(ops.square(x_1 - mean), axis=(1, 2), keepdims=True)
        normed = (x_1 - mean) / ops.sqrt(variance + 1e-5)
        normed = normed * weight(self.gn_gamma) + weight(self.gn_beta)
        spatial = ops.sigmoid(weight(self.sweight) * normed + weight(self.sbias))
        gate = ops.concatenate([channel, spatial], axis=-1)
        return ops.reshape(gate, (-1, height, width, channels))

    def _shuffle(self, x):
        """ShuffleNet's channel shuffle with 2 groups, in the layer's data format."""
        shape = ops.shape(x)
        if self.data_format == "channels_last":
            height, width, channels = shape[1], shape[2], x.shape[-1]
            x = ops.reshape(x, (-1, height, width, 2, channels // 2))
            x = ops.transpose(x, (0, 1, 2, 4, 3))
            return ops.reshape(x, (-1, height, width, channels))
        channels, height, width = x.shape[1], shape[2], shape[3]
        x = ops.reshape(x, (-1, 2, channels // 2, height, width))
        x = ops.transpose(x, (0, 2, 1, 3, 4))
        return ops.reshape(x, (-1, channels, height, width))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"groups": self.groups, "data_format": self.data_format})
        return config

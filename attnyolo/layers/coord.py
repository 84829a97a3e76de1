"""Coordinate Attention."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from attnyolo.layers.registry import prepare_map_inputs, register_attention
from attnyolo.layers.utils import (
    check_positive,
    read_channels,
    standardize_data_format,
)


def pool_directions(inputs, data_format: str, pool_rows=ops.mean, pool_columns=ops.mean):
    """`(height, rows, columns)`: the input's height and its `(batch, H, C)` row descriptors
    (`pool_rows` over the width) and `(batch, W, C)` column descriptors (`pool_columns` over the
    height), in either data format."""
    if data_format == "channels_last":
        height = ops.shape(inputs)[1]
        return height, pool_rows(inputs, axis=2), pool_columns(inputs, axis=1)
    height = ops.shape(inputs)[2]
    rows = ops.transpose(pool_rows(inputs, axis=3), (0, 2, 1))
    columns = ops.transpose(pool_columns(inputs, axis=2), (0, 2, 1))
    return height, rows, columns


def apply_direction_gates(inputs, a_h, a_w, data_format: str):
    """`inputs * a_h * a_w` with `(batch, H, C)` row gates broadcast along the width and
    `(batch, W, C)` column gates along the height, in either data format."""
    if data_format == "channels_last":
        return inputs * ops.expand_dims(a_h, 2) * ops.expand_dims(a_w, 1)
    a_h = ops.transpose(a_h, (0, 2, 1))  # (batch, C, H)
    a_w = ops.transpose(a_w, (0, 2, 1))  # (batch, C, W)
    return inputs * ops.expand_dims(a_h, 3) * ops.expand_dims(a_w, 2)


@register_attention("ca")
class CoordinateAttention(keras.layers.Layer):
    """Coordinate Attention: channel gates that vary along the height and along the width.

    Follows the reference code (`coordatt.py`, Andrew-Qibin/CoordAttention) step by step, and
    equals its `CoordAtt` on fixtures that code wrote (`tools/make_attention_fixtures.py`):

    1. `x_h = mean_w(x)` (one value per row) and `x_w = mean_h(x)` (one value per column);
    2. both are concatenated along the spatial axis into `H + W` positions and passed through a
       shared 1x1 convolution with bias to `mip = max(min_mip, C // reduction)` channels, batch
       norm and h-swish (`y * relu6(y + 3) / 6`);
    3. the result is split back into its `H` row part and `W` column part;
       `a_h = sigmoid(conv_h(row part))`, `a_w = sigmoid(conv_w(column part))`, both 1x1 with
       bias back to `C` channels;
    4. `y = x * a_h * a_w`, `a_h` broadcast along the width and `a_w` along the height.

    The widely copied Keras port (the yolov4-tiny-keras scripts' `ca_block`) differs on every
    input: it max-pools over the height, has no biases, ReLU instead of h-swish, `C // 16`
    channels and Keras's batch norm settings, and it puts the column statistics first but gives
    the first `H` positions to the row gates. It is available as `"ca_original"`
    (`CoordinateAttentionOriginal`). The 1x1 convolutions act on `(batch, H + W, C)` descriptors
    and are written as `Dense` layers over the channel axis (the same weights as a 1x1 `Conv2D`,
    reshaped), which also keeps `"channels_first"` inputs off NCHW convolutions. Batch norm uses
    PyTorch's defaults: epsilon 1e-5 and momentum 0.1, which is Keras momentum 0.9. Kernels use
    Keras's default Glorot uniform initialisation, not PyTorch's.
    Weights: `(C + 1) * mip + 4 * mip + 2 * (mip + 1) * C` including the batch norm moving
    statistics, e.g. 6696 for 256 channels.

    Args:
        reduction: channel reduction ratio of the shared 1x1 convolution.
        min_mip: the fewest channels the shared convolution reduces to (8 in the paper).
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
    y = CoordinateAttention()(keras.random.normal((2, 20, 32, 256)))  # mip = 8: 6696 weights
    ```

    Reference:
        Hou et al., "Coordinate Attention for Efficient Mobile Network Design", CVPR 2021.
    """

    def __init__(
        self,
        reduction: int = 32,
        min_mip: int = 8,
        data_format: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.reduction = check_positive("reduction", reduction)
        self.min_mip = check_positive("min_mip", min_mip)
        self.data_format = standardize_data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        channels = read_channels(self, input_shape)
        mip = max(self.min_mip, channels // self.reduction)
        self.conv1 = keras.layers.Dense(mip, dtype=self.dtype_policy, name="conv1")
        self.bn1 = keras.layers.BatchNormalization(
            epsilon=1e-5, momentum=0.9, dtype=self.dtype_policy, name="bn1"
        )
        self.conv_h = keras.layers.Dense(channels, dtype=self.dtype_policy, name="conv_h")
        self.conv_w = keras.layers.Dense(channels, dtype=self.dtype_policy, name="conv_w")
        self.conv1.build((None, None, channels))
        self.bn1.build((None, None, mip))
        self.conv_h.build((None, None, mip))
        self.conv_w.build((None, None, mip))

    def call(self, inputs, training=None):
        a_h, a_w = self._direction_weights(inputs, training)
        return apply_direction_gates(inputs, a_h, a_w, self.data_format)

    def attention_maps(self, inputs) -> dict[str, Any]:
        """The gates `call` applies at inference (batch norm on its moving statistics):
        `{"height": (batch, H, C), "width": (batch, W, C)}` in either data format."""
        inputs = prepare_map_inputs(self, inputs)
        a_h, a_w = self._direction_weights(inputs, training=False)
        return {"height": a_h, "width": a_w}

    def _direction_weights(self, inputs, training):
        height, x_h, x_w = pool_directions(inputs, self.data_format)  # (batch, H|W, C)
        # One sequence of H + W positions, so batch norm sees rows and columns together.
        y = self.conv1(ops.concatenate([x_h, x_w], axis=1))
        y = self.bn1(y, training=training)
        y = y * ops.relu6(y + 3.0) / 6.0
        a_h = ops.sigmoid(self.conv_h(y[:, :height]))  # (batch, H, C)
        a_w = ops.sigmoid(self.conv_w(y[:, height:]))  # (batch, W, C)
        return a_h, a_w

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "reduction": self.reduction,
                "min_mip": self.min_mip,
                "data_format": self.data_format,
            }
        )
        return config

"""Coordinate Attention as the yolov4-tiny-keras scripts build it (their `ca_block`)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from attnyolo.layers.coord import apply_direction_gates, pool_directions
from attnyolo.layers.registry import prepare_map_inputs, register_attention
from attnyolo.layers.utils import (
    check_positive,
    read_channels,
    standardize_data_format,
)


@register_attention("ca_original")
class CoordinateAttentionOriginal(keras.layers.Layer):
    """The `ca_block` of the yolov4-tiny-keras scripts, which is not the paper's block.

    This layer exists to reproduce results trained with the original scripts' `phi = 4`
    (bubbliiiing/yolov4-tiny-keras, `nets/attention.py`); for Coordinate Attention as published,
    use `"ca"` (`CoordinateAttention`). It equals the scripts' own `ca_block`, run under tf_keras
    on fixtures (`tools/make_original_fixtures.py`). With `C` channels, `m = C // reduction`,
    and `x` of height `H` and width `W`, it computes, as the scripts do:

    1. `x_w = max_h(x)` (one value per column, `W` positions) and `x_h = mean_w(x)` (one value
       per row, `H` positions), concatenated in that order, columns first, into `W + H`
       positions;
    2. a 1x1 convolution without bias to `m` channels, batch norm with Keras 2's defaults
       (epsilon 1e-3, momentum 0.99, centre and scale) over all `W + H` positions, then ReLU;
    3. a split into the first `H` positions and the last `W` positions, ignoring that the first
       `W` positions came from the columns: `a_h = sigmoid(conv_h(first H))`, one gate per row,
       and `a_w = sigmoid(conv_w(last W))`, one gate per column, both 1x1 without bias back to
       `C` channels;
    4. `y = x * a_h * a_w`, `a_h` broadcast along the width and `a_w` along the height.

    So on square inputs the row gates come from column maxima and the column gates from row
    means; on non-square inputs the split cuts across the two parts. The paper instead averages
    both directions, keeps rows with rows, uses biases, h-swish, `max(8, C // 32)` channels and
    PyTorch's batch norm settings. Kernels use Keras's default Glorot uniform initialisation, as
    the scripts do. The 1x1 convolutions are `Dense` layers over the channel axis; `conv1`,
    `bn`, `conv_h` and `conv_w` hold the scripts' `ca_block_conv1`, `ca_block_bn`,
    `ca_block_conv2` and `ca_block_conv3` (a `(1, 1, C_in, C_out)` kernel reshaped to
    `(C_in, C_out)`), in that order.
    Weights: `3 * C * m + 4 * m` including the batch norm moving statistics, e.g. 12352 for 256
    channels, as in the scripts.

    With fewer than `reduction` channels `m` would be 0: the scripts would build zero-width
    layers, so there is nothing to reproduce, and `build` raises a `ValueError` quoting the input
    shape instead (use `"ca"` there). The YOLOv4-tiny positions have 128, 256 and 512 channels.

    Args:
        reduction: channel reduction ratio of the shared 1x1 convolution (the scripts' `ratio`).
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
    y = CoordinateAttentionOriginal()(keras.random.normal((2, 26, 26, 256)))  # 12352 weights
    ```

    Reference:
        bubbliiiing, yolov4-tiny-keras, `nets/attention.py` (`ca_block`), after Hou et al.,
        "Coordinate Attention for Efficient Mobile Network Design", CVPR 2021.
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
        mip = channels // self.reduction
        if mip < 1:
            raise ValueError(
                f"{type(self).__name__} needs at least reduction={self.reduction} channels, as "
                f"the original scripts' ca_block would reduce to {channels} // {self.reduction} "
                f"= 0 channels; got input shape {tuple(input_shape)} with "
                f"data_format={self.data_format!r}. Use 'ca' or a smaller reduction."
            )
        self.conv1 = keras.layers.Dense(mip, use_bias=False, dtype=self.dtype_policy, name="conv1")
        self.bn = keras.layers.BatchNormalization(
            epsilon=1e-3, momentum=0.99, dtype=self.dtype_policy, name="bn"
        )
        self.conv_h = keras.layers.Dense(
            channels, use_bias=False, dtype=self.dtype_policy, name="conv_h"
        )
        self.conv_w = keras.layers.Dense(
            channels, use_bias=False, dtype=self.dtype_policy, name="conv_w"
        )
        self.conv1.build((None, None, channels))
        self.bn.build((None, None, mip))
        self.conv_h.build((None, None, mip))
        self.conv_w.build((None, None, mip))

    def call(self, inputs, training=None):
        a_h, a_w = self._direction_weights(inputs, training)
        return apply_direction_gates(inputs, a_h, a_w, self.data_format)

    def attention_maps(self, inputs) -> dict[str, Any]:
        """The gates `call` applies at inference (batch norm on its moving statistics):
        `{"height": (batch, H, C), "width": (batch, W, C)}` in either data format, one gate per
        row and one per column as applied (whatever statistics the scripts' split fed them)."""
        inputs = prepare_map_inputs(self, inputs)
        a_h, a_w = self._direction_weights(inputs, training=False)
        return {"height": a_h, "width": a_w}

    def _direction_weights(self, inputs, training):
        # Row means, column maxima, as the scripts pool.
        height, x_h, x_w = pool_directions(inputs, self.data_format, pool_columns=ops.max)
        # Columns first, as the scripts concatenate them; the split below still takes H first.
        y = self.conv1(ops.concatenate([x_w, x_h], axis=1))
        y = ops.relu(self.bn(y, training=training))
        a_h = ops.sigmoid(self.conv_h(y[:, :height]))  # (batch, H, C)
        a_w = ops.sigmoid(self.conv_w(y[:, height:]))  # (batch, W, C)
        return a_h, a_w

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"reduction": self.reduction, "data_format": self.data_format})
        return config

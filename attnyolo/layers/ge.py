"""Gather-Excite attention (parameter-free gather), as timm's `ge`."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from attnyolo.layers.registry import prepare_map_inputs, register_attention
from attnyolo.layers.utils import (
    apply_channel_gate,
    check_positive,
    make_divisible,
    read_channels,
    standardize_data_format,
)


@register_attention("ge")
class GatherExcite(keras.layers.Layer):
    """Gather-Excite: features gathered (average-pooled) over an extent, excited by an MLP and a
    sigmoid, and redistributed to the positions they came from.

    Gather: `g = mean_hw(x)` with `extent=0` (the global extent), else an average pool with a
    `(2e - 1) x (2e - 1)` window, stride `e` and `e - 1` zero padding on each side that the mean
    leaves out (`e = extent`). With `add_maxpool`, `g = 0.5 * g + 0.5 * max` over the same
    windows. Excite: `y = x * sigmoid(W2 relu(W1 g + b1) + b2)` (1x1 maps, `W1` reducing the `C`
    channels to `rd = make_divisible(C * rd_ratio, rd_divisor)`, nearest multiple, at least
    `rd_divisor`), the pooled gate resized to the input by nearest-neighbour interpolation;
    without `use_mlp`, `y = x * sigmoid(g)`. With `extent=0` and the MLP this is
    squeeze-and-excitation with biases. `(C + 1) * rd + (rd + 1) * C` weights with `use_mlp`,
    none without.

    Matches timm's `GatherExcite` with its defaults (`extent=0`, `extra_params=False`,
    `use_mlp=True`, `rd_ratio=1/16`, `rd_divisor=1`, `add_maxpool=False`; checked on fixtures it
    wrote, see `tools/make_attention_fixtures.py`). timm 1.0.31 cannot build it with `use_mlp`
    (`create_attn("ge", C)` and `GatherExcite(C)` raise a `TypeError` in `ConvMlp`), so the
    fixtures come from `GatherExcite(C, use_mlp=False)` given the `ConvMlp(C, rd)` its
    constructor means to build, and its own `forward`. Deviations: no `extra_params` (the
    paper's GE-theta, a gather by strided depthwise convolutions); Keras' default initialisation
    (Glorot uniform kernels, zero biases) instead of PyTorch's; the activation and gate are
    fixed to ReLU and sigmoid.

    Args:
        extent: `0` for a global gather, else the even gather extent `e` (2, 4, 8, ...).
        use_mlp: whether the gathered features pass through the MLP (GE-theta-plus) before the
            sigmoid; without it the layer has no weights (the paper's GE-theta-minus).
        rd_ratio: the hidden width of the MLP relative to the channel count.
        rd_divisor: the hidden width is rounded to a multiple of this.
        add_maxpool: whether the gather averages the mean and the max (timm's experimental
            option).
        data_format: `"channels_last"` or `"channels_first"`; `None` means
            `keras.config.image_data_format()`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: a 4-D tensor in `data_format`.

    Returns:
        A tensor of the same shape as `inputs`.

    Example:

    ```python
    y = GatherExcite()(keras.random.normal((2, 13, 13, 256)))  # rd = 16: 8464 weights
    ```

    Reference:
        Hu, Shen, Albanie, Sun & Vedaldi, "Gather-Excite: Exploiting Feature Context in
        Convolutional Neural Networks", NeurIPS 2018.
    """

    def __init__(
        self,
        extent: int = 0,
        use_mlp: bool = True,
        rd_ratio: float = 1.0 / 16,
        rd_divisor: int = 1,
        add_maxpool: bool = False,
        data_format: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if int(extent) != extent or extent < 0 or extent % 2:
            raise ValueError(f"`extent` must be 0 or a positive even integer, got {extent!r}")
        if rd_ratio <= 0:
            raise ValueError(f"`rd_ratio` must be positive, got {rd_ratio!r}")
        self.extent = int(extent)
        self.use_mlp = bool(use_mlp)
        self.rd_ratio = rd_ratio
        self.rd_divisor = check_positive("rd_divisor", rd_divisor)
        self.add_maxpool = bool(add_maxpool)
        self.data_format = standardize_data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        channels = read_channels(self, input_shape)
        if not self.use_mlp:
            return
        hidden = make_divisible(channels * self.rd_ratio, self.rd_divisor)
        self.fc1 = keras.layers.Dense(hidden, dtype=self.dtype_policy, name="fc1")
        self.fc2 = keras.layers.Dense(channels, dtype=self.dtype_policy, name="fc2")
        self.fc1.build((None, channels))
        self.fc2.build((None, hidden))

    def call(self, inputs):
        gate = self._gate(inputs)
        if self.extent == 0:
            return apply_channel_gate(inputs, gate, self.data_format)
        if self.data_format == "channels_first":
            gate = ops.transpose(gate, (0, 3, 1, 2))
        return inputs * gate

    def attention_maps(self, inputs) -> dict[str, Any]:
        """The gate `call` applies: `{"channel": (batch, C)}` with `extent=0`, else
        `{"full": (batch, H, W, C)}` (the pooled gate resized to the input), in either data
        format."""
        inputs = prepare_map_inputs(self, inputs)
        gate = self._gate(inputs)
        return {"channel": gate} if self.extent == 0 else {"full": gate}

    def _gate(self, inputs):
        """The sigmoid gate: (batch, C) with `extent=0`, else (batch, H, W, C)."""
        x = inputs
        if self.data_format == "channels_first":
            x = ops.transpose(x, (0, 2, 3, 1))
        if self.extent == 0:
            gathered = ops.mean(x, axis=(1, 2))
            if self.add_maxpool:
                gathered = 0.5 * gathered + 0.5 * ops.max(x, axis=(1, 2))
        else:
            gathered = self._pool(x)
        if self.use_mlp:
            gathered = self.fc2(ops.relu(self.fc1(gathered)))
        gate = ops.sigmoid(gathered)
        if self.extent == 0:
            return gate
        shape = ops.shape(x)
        gate = _nearest(gate, shape[1], axis=1)
        return _nearest(gate, shape[2], axis=2)

    def _pool(self, x):
        """timm's `avg_pool2d(x, 2e - 1, e, padding=e - 1, count_include_pad=False)`,
        channels-last."""
        window, stride, pad = 2 * self.extent - 1, self.extent, self.extent - 1
        padding = ((0, 0), (pad, pad), (pad, pad), (0, 0))

        def pool(values, constant=0.0):
            padded = ops.pad(values, padding, constant_values=constant)
            return ops.average_pool(
                padded, window, stride, padding="valid", data_format="channels_last"
            )

        # The padded zeros are left out of each window's mean: divide the window sums by the
        # number of real positions in each window (both scaled by 1 / window ** 2 here).
        pooled = pool(x) / pool(ops.ones_like(x[..., :1]))
        if self.add_maxpool:
            padded = ops.pad(x, padding, constant_values=float("-inf"))
            maxed = ops.max_pool(
                padded, window, stride, padding="valid", data_format="channels_last"
            )
            pooled = 0.5 * pooled + 0.5 * maxed
        return pooled

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "extent": self.extent,
                "use_mlp": self.use_mlp,
                "rd_ratio": self.rd_ratio,
                "rd_divisor": self.rd_divisor,
                "add_maxpool": self.add_maxpool,
                "data_format": self.data_format,
            }
        )
        return config


def _nearest(values, size, axis):
    """PyTorch's `interpolate(mode="nearest")` along `axis` to `size`: output position `i` takes
    input `min(floor(i * (n / size)), n - 1)`, the ratio in float32 as PyTorch computes it."""
    length = ops.shape(values)[axis]
    ratio = ops.cast(length, "float32") / ops.cast(size, "float32")
    index = ops.floor(ops.cast(ops.arange(size), "float32") * ratio)
    index = ops.minimum(ops.cast(index, "int32"), length - 1)
    return ops.take(values, index, axis=axis)

"""BAM: the Bottleneck Attention Module, a residual channel-and-spatial gate."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from attnyolo.layers.registry import prepare_map_inputs, register_attention
from attnyolo.layers.utils import check_positive, read_channels, standardize_data_format

_FUSIONS = ("product", "sum")


@register_attention("bam")
class BAM(keras.layers.Layer):
    """Bottleneck Attention Module: `y = x * (1 + sigmoid(c * s))`, a channel branch `c` and a
    spatial branch `s` fused into one gate per position and channel, in (1, 2).

    Channel branch: `c = W2 relu(BN(W1 mean_hw(x) + b1)) + b2` (`C -> rd -> C`). Spatial branch:
    a 1x1 convolution `C -> rd`, batch norm and ReLU, then `dilation_conv_num` 3x3 convolutions
    `rd -> rd` with dilation `dilation_val` ("same" padding), each with batch norm and ReLU, and
    a 1x1 convolution `rd -> 1`; all convolutions have biases. `rd = C // reduction`.
    `3 * C * rd + C + 18 * rd^2 + 13 * rd + 1` trainable weights with the defaults (two dilated
    convolutions), plus 2 moving statistics per batch-norm channel (`8 * rd`).

    Matches the authors' `BAM` (Jongchan/attention-module `MODELS/bam.py`; checked on fixtures
    it wrote, see `tools/make_attention_fixtures.py`) and its defaults (`reduction_ratio=16`, two
    dilated convolutions, dilation 4; batch norm with PyTorch's epsilon 1e-5 and momentum 0.1,
    i.e. Keras momentum 0.9). The authors' code fuses the branches by a product,
    `sigmoid(c * s)`, which is the default here; the paper writes a sum, `sigmoid(c + s)`
    (`fusion="sum"`). Deviations: the channel branch takes the mean over all positions, where the
    original average-pools with an `H x H` window (the same on square grids such as YOLO's; on
    a grid narrower than it is tall the original fails, on a wider one it averages only the
    first `H` columns); the hidden width is at least 1 (the original builds zero-width layers
    for fewer channels than `reduction`); Keras' default initialisation instead of PyTorch's. (The
    released `ChannelGate` stores an undefined global, `gate_activation`, a `NameError` as
    published; it is never used, and the fixtures' builder defines it.)

    Args:
        reduction: the channel reduction ratio of both branches' hidden width.
        dilation_conv_num: the number of dilated 3x3 convolutions in the spatial branch.
        dilation_val: their dilation rate.
        fusion: `"product"` (the authors' code) or `"sum"` (the paper) of the two branches.
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
    y = BAM()(keras.random.normal((2, 13, 13, 256)))  # rd = 16: 17361 + 128 weights
    ```

    Reference:
        Park, Woo, Lee & Kweon, "BAM: Bottleneck Attention Module", BMVC 2018.
    """

    def __init__(
        self,
        reduction: int = 16,
        dilation_conv_num: int = 2,
        dilation_val: int = 4,
        fusion: str = "product",
        data_format: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.reduction = check_positive("reduction", reduction)
        if int(dilation_conv_num) != dilation_conv_num or dilation_conv_num < 0:
            raise ValueError(
                f"`dilation_conv_num` must be a non-negative integer, got {dilation_conv_num!r}"
            )
        self.dilation_conv_num = int(dilation_conv_num)
        self.dilation_val = check_positive("dilation_val", dilation_val)
        if fusion not in _FUSIONS:
            raise ValueError(f"`fusion` must be one of {_FUSIONS}, got {fusion!r}")
        self.fusion = fusion
        self.data_format = standardize_data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def _batch_norm(self, name):
        return keras.layers.BatchNormalization(
            epsilon=1e-5, momentum=0.9, dtype=self.dtype_policy, name=name
        )

    def build(self, input_shape):
        channels = read_channels(self, input_shape)
        hidden = max(1, channels // self.reduction)
        # Channel branch.
        self.fc = keras.layers.Dense(hidden, dtype=self.dtype_policy, name="fc")
        self.fc_bn = self._batch_norm("fc_bn")
        self.fc_final = keras.layers.Dense(channels, dtype=self.dtype_policy, name="fc_final")
        self.fc.build((None, channels))
        self.fc_bn.build((None, hidden))
        self.fc_final.build((None, hidden))
        # Spatial branch, channels-last (1x1 convolutions as Dense layers).
        self.conv_reduce = keras.layers.Dense(hidden, dtype=self.dtype_policy, name="conv_reduce")
        self.bn_reduce = self._batch_norm("bn_reduce")
        self.conv_reduce.build((None, None, None, channels))
        self.bn_reduce.build((None, None, None, hidden))
        self.dilated_convs, self.dilated_bns = [], []
        for i in range(self.dilation_conv_num):
            conv = keras.layers.Conv2D(
                hidden,
                3,
                padding="same",
                dilation_rate=self.dilation_val,
                dtype=self.dtype_policy,
                name=f"conv_di_{i}",
            )
            bn = self._batch_norm(f"bn_di_{i}")
            conv.build((None, None, None, hidden))
            bn.build((None, None, None, hidden))
            self.dilated_convs.append(conv)
            self.dilated_bns.append(bn)
        self.conv_final = keras.layers.Dense(1, dtype=self.dtype_policy, name="conv_final")
        self.conv_final.build((None, None, None, hidden))

    def call(self, inputs, training=None):
        return inputs * self._gate(inputs, training)

    def attention_maps(self, inputs) -> dict[str, Any]:
        """The gate `call` applies at inference (batch norm on its moving statistics):
        `{"full": (batch, H, W, C)}`, `1 + sigmoid(c * s)` (values in (1, 2)), in either data
        format."""
        inputs = prepare_map_inputs(self, inputs)
        gate = self._gate(inputs, training=False)
        if self.data_format == "channels_first":
            gate = ops.transpose(gate, (0, 2, 3, 1))
        return {"full": gate}

    def _gate(self, inputs, training):
        x = inputs
        if self.data_format == "channels_first":
            x = ops.transpose(x, (0, 2, 3, 1))
        channel = self.fc(ops.mean(x, axis=(1, 2)))
        channel = self.fc_final(ops.relu(self.fc_bn(channel, training=training)))
        spatial = ops.relu(self.bn_reduce(self.conv_reduce(x), training=training))
        for conv, bn in zip(self.dilated_convs, self.dilated_bns, strict=True):
            spatial = ops.relu(bn(conv(spatial), training=training))
        spatial = self.conv_final(spatial)  # (batch, H, W, 1)
        channel = channel[:, None, None, :]
        fused = channel * spatial if self.fusion == "product" else channel + spatial
        gate = 1.0 + ops.sigmoid(fused)
        if self.data_format == "channels_first":
            gate = ops.transpose(gate, (0, 3, 1, 2))
        return gate

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "reduction": self.reduction,
                "dilation_conv_num": self.dilation_conv_num,
                "dilation_val": self.dilation_val,
                "fusion": self.fusion,
                "data_format": self.data_format,
            }
        )
        return config

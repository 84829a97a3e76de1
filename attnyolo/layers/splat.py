"""Split attention (ResNeSt's split-attention convolution, in timm's form)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from attnyolo.layers.registry import prepare_map_inputs, register_attention
from attnyolo.layers.utils import (
    check_positive,
    from_channels_last,
    make_divisible,
    read_channels,
    standardize_data_format,
    to_channels_last,
)


@register_attention("splat")
class SplitAttention(keras.layers.Layer):
    """Split attention: a convolution into `radix` splits, mixed per channel by a softmax over
    the splits that their pooled sum computes (ResNeSt).

    Split `r` (of `radix`) is `u_r = relu(BN(conv_r(x_r)))`, `x_r` the `r`-th of `radix` equal
    channel slices of `x`, `conv_r` a `k x k` convolution to `C` channels in `groups` groups
    ("same" padding; timm's one convolution to `radix * C` channels in `groups * radix` groups).
    Then `z = relu(BN(W1 mean_hw(sum_r u_r) + b1))` (`C -> attn`, in `groups` groups),
    `a = rsoftmax(W2 z + b2)` (`attn -> radix * C`, in `groups` groups; a softmax over the splits
    within each group, or a sigmoid for `radix=1`) and `y = sum_r a_r * u_r`. `attn =
    make_divisible(C * radix * rd_ratio, rd_divisor)` as timm rounds it, at least 32, or
    `radix * rd_channels`. The output is not `x` times a gate: the layer is a convolution.

    `k * k * C * C / groups + 4 * radix * C + (C / groups + 1) * attn + 4 * attn +
    (attn / groups + 1) * radix * C` weights (the `4 * ...` terms, batch norm's scale, offset and
    moving statistics, drop out with `use_bn=False`; `+ radix * C` with `use_bias`); with the
    defaults `9 * C**2 + 10 * C + 3 * C * attn + 5 * attn`: 691328 for 256 channels
    (`attn = 128`).

    Matches timm's `SplitAttn(C, norm_layer=BatchNorm2d)`, the split-attention convolution as
    timm's ResNeSt builds it, checked on fixtures it wrote (`tools/make_attention_fixtures.py`);
    batch norm uses epsilon 1e-5 and PyTorch momentum 0.1 (Keras momentum 0.9). `use_bn=False`
    gives `SplitAttn(C)` alone (what `create_attn("splat", C)` builds), whose `norm_layer`
    defaults to none. Deviations: stride 1 and `out_channels = C` only, "same" padding (timm pads
    `k // 2` whatever the dilation, which shrinks the map for `dilation > 1`; ResNeSt passes
    `padding=dilation`, as here), odd `k`; the activation is fixed to ReLU, no drop layer; `C`
    must be a multiple of `radix * groups` and `attn` of `groups` (timm's convolutions need it
    too), else the layer refuses the input; in training, batch norm updates its moving variance
    with the biased batch variance (PyTorch: unbiased); Keras' default initialisation (Glorot
    uniform kernels, zero biases) instead of PyTorch's. The convolutions run channels-last inside
    the layer for either data format.

    Args:
        kernel_size: odd size of the square convolution kernel.
        dilation: the convolution's dilation.
        groups: the cardinality: groups of the convolution (per split) and of the attention's
            two 1x1 convolutions.
        radix: the number of splits (1: a sigmoid gate on one convolution).
        rd_ratio: the attention's hidden width relative to `radix * C`.
        rd_channels: that width per split, if given (the hidden width is `radix * rd_channels`).
        rd_divisor: the hidden width is rounded to a multiple of this.
        use_bias: whether the convolution has biases.
        use_bn: whether batch norm follows the convolution and the attention's first layer.
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
    y = SplitAttention()(keras.random.normal((2, 26, 26, 256)))  # attn = 128: 691328 weights
    ```

    Reference:
        Zhang et al., "ResNeSt: Split-Attention Networks", CVPR Workshops 2022
        (arXiv:2004.08955); timm `timm/layers/split_attn.py` (`SplitAttn`).
    """

    maps_reproduce_output = False

    def __init__(
        self,
        kernel_size: int = 3,
        dilation: int = 1,
        groups: int = 1,
        radix: int = 2,
        rd_ratio: float = 0.25,
        rd_channels: int | None = None,
        rd_divisor: int = 8,
        use_bias: bool = False,
        use_bn: bool = True,
        data_format: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if rd_ratio <= 0:
            raise ValueError(f"`rd_ratio` must be positive, got {rd_ratio!r}")
        self.kernel_size = check_positive("kernel_size", kernel_size, odd=True)
        self.dilation = check_positive("dilation", dilation)
        self.groups = check_positive("groups", groups)
        self.radix = check_positive("radix", radix)
        self.rd_ratio = rd_ratio
        self.rd_channels = (
            None if rd_channels is None else check_positive("rd_channels", rd_channels)
        )
        self.rd_divisor = check_positive("rd_divisor", rd_divisor)
        self.use_bias = bool(use_bias)
        self.use_bn = bool(use_bn)
        self.data_format = standardize_data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        channels = read_channels(self, input_shape)
        if self.rd_channels is None:
            hidden = make_divisible(
                channels * self.radix * self.rd_ratio,
                self.rd_divisor,
                min_value=32,
                round_limit=0.9,
            )
        else:
            hidden = self.rd_channels * self.radix
        if channels % (self.radix * self.groups) or hidden % self.groups:
            raise ValueError(
                f"{type(self).__name__}(radix={self.radix}, groups={self.groups}) needs a "
                "channel count divisible by `radix * groups` and a hidden width "
                f"({hidden}) divisible by `groups`; got input shape {tuple(input_shape)} with "
                f"data_format={self.data_format!r}"
            )
        height, width = (
            (input_shape[1], input_shape[2])
            if self.data_format == "channels_last"
            else (input_shape[2], input_shape[3])
        )
        split_shape = (input_shape[0], height, width, channels // self.radix)
        out_shape = (input_shape[0], height, width, channels)
        self.convs, self.bns = [], []
        for r in range(self.radix):
            conv = keras.layers.Conv2D(
                channels,
                self.kernel_size,
                padding="same",
                dilation_rate=self.dilation,
                groups=self.groups,
                use_bias=self.use_bias,
                dtype=self.dtype_policy,
                name=f"split{r}_conv",
            )
            conv.build(split_shape)
            self.convs.append(conv)
            if self.use_bn:
                bn = keras.layers.BatchNormalization(
                    epsilon=1e-5, momentum=0.9, dtype=self.dtype_policy, name=f"split{r}_bn"
                )
                bn.build(out_shape)
                self.bns.append(bn)
        # The attention's 1x1 convolutions on the pooled (batch, 1, 1, C) context, grouped.
        self.fc1 = keras.layers.Conv2D(
            hidden, 1, groups=self.groups, dtype=self.dtype_policy, name="fc1"
        )
        self.fc2 = keras.layers.Conv2D(
            self.radix * channels, 1, groups=self.groups, dtype=self.dtype_policy, name="fc2"
        )
        self.fc1.build((None, 1, 1, channels))
        self.fc2.build((None, 1, 1, hidden))
        if self.use_bn:
            self.bn1 = keras.layers.BatchNormalization(
                epsilon=1e-5, momentum=0.9, dtype=self.dtype_policy, name="bn1"
            )
            self.bn1.build((None, 1, 1, hidden))

    def call(self, inputs, training=None):
        splits = self._splits(to_channels_last(inputs, self.data_format), training)
        weights = self._split_weights(splits, training)  # (batch, radix, C)
        outputs = splits[0] * weights[:, 0, :][:, None, None, :]
        for r in range(1, self.radix):
            outputs = outputs + splits[r] * weights[:, r, :][:, None, None, :]
        return from_channels_last(outputs, self.data_format)

    def attention_maps(self, inputs) -> dict[str, Any]:
        """What the layer weights, at inference (batch norm on its moving statistics):
        `{"channel": (batch, C)}` in either data format, the weight of the first split for each
        channel. The output is no product of the input: `y = sum_r a_r * u_r` over the splits'
        convolved features `u_r`, with `a_0 = channel` and, for `radix=2`, `a_1 = 1 - channel`
        (for `radix=1`, `channel` is the sigmoid gate on the one convolution's output)."""
        inputs = prepare_map_inputs(self, inputs)
        splits = self._splits(to_channels_last(inputs, self.data_format), training=False)
        return {"channel": self._split_weights(splits, training=False)[:, 0, :]}

    def _splits(self, x, training):
        pieces = ops.split(x, self.radix, axis=-1) if self.radix > 1 else [x]
        splits = []
        for r, piece in enumerate(pieces):
            u = self.convs[r](piece)
            if self.use_bn:
                u = self.bns[r](u, training=training)
            splits.append(ops.relu(u))
        return splits

    def _split_weights(self, splits, training):
        total = splits[0]
        for split in splits[1:]:
            total = total + split
        hidden = self.fc1(ops.mean(total, axis=(1, 2), keepdims=True))
        if self.use_bn:
            hidden = self.bn1(hidden, training=training)
        logits = self.fc2(ops.relu(hidden))  # (batch, 1, 1, radix * C)
        channels = logits.shape[-1] // self.radix
        if self.radix == 1:
            return ops.reshape(ops.sigmoid(logits), (-1, 1, channels))
        # timm's RadixSoftmax: each group's outputs are (radix, C / groups), split-major.
        logits = ops.reshape(logits, (-1, self.groups, self.radix, channels // self.groups))
        weights = ops.transpose(ops.softmax(logits, axis=2), (0, 2, 1, 3))
        return ops.reshape(weights, (-1, self.radix, channels))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "kernel_size": self.kernel_size,
                "dilation": self.dilation,
                "groups": self.groups,
                "radix": self.radix,
                "rd_ratio": self.rd_ratio,
                "rd_channels": self.rd_channels,
                "rd_divisor": self.rd_divisor,
                "use_bias": self.use_bias,
                "use_bn": self.use_bn,
                "data_format": self.data_format,
            }
        )
        return config

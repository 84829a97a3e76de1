"""Selective Kernel convolution (SKNet, in timm's form): branches of different receptive fields,
mixed per channel by a softmax over the branches."""

from __future__ import annotations

from collections.abc import Sequence
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


@register_attention("sk")
class SelectiveKernel(keras.layers.Layer):
    """Selective Kernel: convolution branches of different receptive fields, mixed per channel by
    a softmax over the branches that a squeezed summary of all of them computes.

    With `P = len(kernel_size)` paths (default two: 3x3, and 5x5 as a 3x3 with dilation 2), path
    `i` is `u_i = relu(BN(conv_i(x_i)))`, where `x_i` is the `i`-th of `P` equal channel slices of
    `x` (`split_input=True`; all of `x` otherwise) and `conv_i` maps it to `C` channels ("same"
    padding, no bias). Then `z = relu(BN(W_r mean_hw(sum_i u_i)))` (`W_r`: `C -> rd`, no bias,
    `rd = make_divisible(C * rd_ratio, rd_divisor)` as timm rounds, or `rd_channels`),
    `a = softmax_over_paths(W_s z)` (`W_s`: `rd -> P * C`, no bias) and `y = sum_i a_i * u_i`.
    The output is not `x` times a gate: the layer is a convolution (timm lists it with the
    attention-like modules that replace a network's own convolutions).

    `sum_i (k_i * k_i * (C / P) / groups * C + 4 * C) + C * rd + 4 * rd + rd * P * C` weights
    with `split_input` (each `+ 4 * C` and `+ 4 * rd` is batch norm's scale, offset and moving
    statistics); with the defaults `9 * C**2 + 8 * C + 3 * C * rd + 4 * rd`: 604224 for 256
    channels (`rd = 16`), 2.4M for 512: about as many as a full 3x3 `C -> C` convolution.

    Matches timm's `SelectiveKernel(C)` (what `create_attn("sk", C)` builds) with its defaults,
    checked on fixtures it wrote (`tools/make_attention_fixtures.py`). Batch norm uses epsilon
    1e-5 and PyTorch momentum 0.1 (Keras momentum 0.9). Deviations: stride 1 and
    `out_channels = C` only (the layer keeps the input's shape); the activation and normalization
    are fixed to ReLU and batch norm, no anti-aliasing or drop layer; `C` must be a multiple of
    the number of paths with `split_input` (timm asserts it), and the per-path input and output
    channel counts multiples of `groups` (else the layer refuses the input); in training, batch
    norm updates its moving variance with the biased batch variance (PyTorch: unbiased); Keras'
    default initialisation (Glorot uniform kernels) instead of PyTorch's. The convolutions run
    channels-last inside the layer for either data format.

    Args:
        kernel_size: one kernel size per path, each odd and at least 3 (an int means two paths
            of that size).
        dilation: the dilation of the whole layer; each path's is multiplied by it.
        groups: the groups of each path's convolution (at most `C`).
        rd_ratio: the width of the attention's hidden layer relative to `C`.
        rd_channels: that width, if given (overrides `rd_ratio`).
        rd_divisor: the hidden width is rounded to a multiple of this.
        keep_3x3: whether every path uses a 3x3 kernel, a `k x k` path becoming a 3x3 one with
            dilation `(k - 1) / 2` (timm's default), instead of a `k x k` kernel.
        split_input: whether each path sees its own `C / P` channels of the input (timm's
            default, which keeps the weight count down) instead of all of them.
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
    y = SelectiveKernel()(keras.random.normal((2, 26, 26, 256)))  # rd = 16: 604224 weights
    ```

    Reference:
        Li, Wang, Hu & Yang, "Selective Kernel Networks", CVPR 2019; timm
        `timm/layers/selective_kernel.py` (`SelectiveKernel`).
    """

    maps_reproduce_output = False

    def __init__(
        self,
        kernel_size: int | Sequence[int] = (3, 5),
        dilation: int = 1,
        groups: int = 1,
        rd_ratio: float = 1.0 / 16,
        rd_channels: int | None = None,
        rd_divisor: int = 8,
        keep_3x3: bool = True,
        split_input: bool = True,
        data_format: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        sizes = [kernel_size] * 2 if isinstance(kernel_size, int) else list(kernel_size)
        if len(sizes) < 2:
            raise ValueError(f"`kernel_size` needs at least two paths, got {kernel_size!r}")
        for size in sizes:
            if check_positive("kernel_size", size, odd=True) < 3:
                raise ValueError(f"`kernel_size` values must be at least 3, got {kernel_size!r}")
        if rd_ratio <= 0:
            raise ValueError(f"`rd_ratio` must be positive, got {rd_ratio!r}")
        self.kernel_size = [int(size) for size in sizes]
        self.dilation = check_positive("dilation", dilation)
        self.groups = check_positive("groups", groups)
        self.rd_ratio = rd_ratio
        self.rd_channels = (
            None if rd_channels is None else check_positive("rd_channels", rd_channels)
        )
        self.rd_divisor = check_positive("rd_divisor", rd_divisor)
        self.keep_3x3 = bool(keep_3x3)
        self.split_input = bool(split_input)
        self.data_format = standardize_data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    @property
    def num_paths(self) -> int:
        return len(self.kernel_size)

    def _path_geometry(self) -> list[tuple[int, int]]:
        """(kernel size, dilation) per path, as timm derives them."""
        if self.keep_3x3:
            return [(3, self.dilation * (k - 1) // 2) for k in self.kernel_size]
        return [(k, self.dilation) for k in self.kernel_size]

    def build(self, input_shape):
        channels = read_channels(self, input_shape)
        in_channels = channels // self.num_paths if self.split_input else channels
        groups = min(channels, self.groups)
        uneven = self.split_input and channels % self.num_paths
        if uneven or in_channels % groups or channels % groups:
            raise ValueError(
                f"{type(self).__name__}(kernel_size={self.kernel_size}, groups={self.groups}, "
                f"split_input={self.split_input}) needs a channel count that splits evenly "
                f"between its {self.num_paths} paths and their groups; got input shape "
                f"{tuple(input_shape)} with data_format={self.data_format!r}"
            )
        hidden = self.rd_channels or make_divisible(
            channels * self.rd_ratio, self.rd_divisor, round_limit=0.9
        )
        height, width = (
            (input_shape[1], input_shape[2])
            if self.data_format == "channels_last"
            else (input_shape[2], input_shape[3])
        )
        path_shape = (input_shape[0], height, width, in_channels)
        out_shape = (input_shape[0], height, width, channels)
        self.convs, self.bns = [], []
        for i, (size, dilation) in enumerate(self._path_geometry()):
            conv = keras.layers.Conv2D(
                channels,
                size,
                padding="same",
                dilation_rate=dilation,
                groups=groups,
                use_bias=False,
                dtype=self.dtype_policy,
                name=f"path{i}_conv",
            )
            bn = keras.layers.BatchNormalization(
                epsilon=1e-5, momentum=0.9, dtype=self.dtype_policy, name=f"path{i}_bn"
            )
            conv.build(path_shape)
            bn.build(out_shape)
            self.convs.append(conv)
            self.bns.append(bn)
        self.fc_reduce = keras.layers.Dense(
            hidden, use_bias=False, dtype=self.dtype_policy, name="fc_reduce"
        )
        self.attn_bn = keras.layers.BatchNormalization(
            epsilon=1e-5, momentum=0.9, dtype=self.dtype_policy, name="attn_bn"
        )
        self.fc_select = keras.layers.Dense(
            self.num_paths * channels, use_bias=False, dtype=self.dtype_policy, name="fc_select"
        )
        self.fc_reduce.build((None, channels))
        self.attn_bn.build((None, hidden))
        self.fc_select.build((None, hidden))

    def call(self, inputs, training=None):
        paths = self._paths(to_channels_last(inputs, self.data_format), training)
        weights = self._path_weights(paths, training)  # (batch, P, C)
        outputs = paths[0] * weights[:, 0, :][:, None, None, :]
        for i in range(1, self.num_paths):
            outputs = outputs + paths[i] * weights[:, i, :][:, None, None, :]
        return from_channels_last(outputs, self.data_format)

    def attention_maps(self, inputs) -> dict[str, Any]:
        """What the layer weights, at inference (batch norm on its moving statistics):
        `{"channel": (batch, C)}` in either data format, the softmax weight of the first path
        (the 3x3 kernel by default) for each channel. The output is no product of the input:
        `y = sum_i a_i * u_i` over the paths' outputs `u_i`, with `a_0 = channel` and, for two
        paths, `a_1 = 1 - channel` (the weight of the dilated, larger-field path)."""
        inputs = prepare_map_inputs(self, inputs)
        paths = self._paths(to_channels_last(inputs, self.data_format), training=False)
        return {"channel": self._path_weights(paths, training=False)[:, 0, :]}

    def _paths(self, x, training):
        if self.split_input:
            pieces = ops.split(x, self.num_paths, axis=-1)
        else:
            pieces = [x] * self.num_paths
        return [
            ops.relu(bn(conv(piece), training=training))
            for piece, conv, bn in zip(pieces, self.convs, self.bns, strict=True)
        ]

    def _path_weights(self, paths, training):
        total = paths[0]
        for path in paths[1:]:
            total = total + path
        hidden = ops.relu(
            self.attn_bn(self.fc_reduce(ops.mean(total, axis=(1, 2))), training=training)
        )
        logits = self.fc_select(hidden)  # (batch, P * C), path-major as timm's view
        logits = ops.reshape(logits, (-1, self.num_paths, logits.shape[-1] // self.num_paths))
        return ops.softmax(logits, axis=1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "kernel_size": list(self.kernel_size),
                "dilation": self.dilation,
                "groups": self.groups,
                "rd_ratio": self.rd_ratio,
                "rd_channels": self.rd_channels,
                "rd_divisor": self.rd_divisor,
                "keep_3x3": self.keep_3x3,
                "split_input": self.split_input,
                "data_format": self.data_format,
            }
        )
        return config

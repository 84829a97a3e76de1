"""Global Context attention (GCNet): the context as a channel gate (timm's `gc`) or added to
the features (GCNet's fusion, timm's `gca`)."""

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


@register_attention("gc")
class GlobalContext(keras.layers.Layer):
    """Global Context block as a channel gate: attention-pooled context, then an MLP and a sigmoid.

    `a = softmax_hw(w_k . x + b_k)` weights the positions, `c = sum_hw a * x` is the context, and
    `y = x * sigmoid(W2 relu(LayerNorm(W1 c + b1)) + b2)`. `W1` reduces the `C` channels to
    `rd = make_divisible(C * rd_ratio, rd_divisor)` (nearest multiple, at least `rd_divisor`);
    the LayerNorm (epsilon 1e-6, with scale and offset) is over those `rd` channels.
    `(C + 1) + (C + 1) * rd + 2 * rd + (rd + 1) * C` weights with `use_attn=True`.

    Matches timm's `GlobalContext` with its defaults (`fuse_add=False, fuse_scale=True`, what
    `create_attn("gc", C)` builds). Deviations: GCNet's paper fuses the context by addition
    (`y = x + transform(c)`; timm's and our `gca`, `GlobalContextAdd`), which is no gate; this
    is the multiplicative ("scale") fusion the paper also evaluates, with a sigmoid as timm
    adds. Keras' default initialisation (Glorot uniform kernels, zero biases) instead of timm's
    Kaiming-normal context convolution and PyTorch's defaults; the activation and gate are fixed
    to ReLU and sigmoid.

    Args:
        use_attn: whether the context is attention-pooled (GCNet); `False` uses the spatial mean.
        rd_ratio: the hidden width of the MLP relative to the channel count.
        rd_divisor: the hidden width is rounded to a multiple of this.
        data_format: `"channels_last"` or `"channels_first"`; `None` means
            `keras.config.image_data_format()`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: a 4-D tensor in `data_format`.

    Returns:
        A tensor of the same shape as `inputs`.

    Example:

    ```python
    y = GlobalContext()(keras.random.normal((2, 13, 13, 256)))  # rd = 32: 16993 weights
    ```

    Reference:
        Cao et al., "GCNet: Non-local Networks Meet Squeeze-Excitation Networks and Beyond",
        ICCV Workshops 2019.
    """

    _fc2_kernel_initializer = "glorot_uniform"

    def __init__(
        self,
        use_attn: bool = True,
        rd_ratio: float = 1.0 / 8,
        rd_divisor: int = 1,
        data_format: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if rd_ratio <= 0:
            raise ValueError(f"`rd_ratio` must be positive, got {rd_ratio!r}")
        self.use_attn = bool(use_attn)
        self.rd_ratio = rd_ratio
        self.rd_divisor = check_positive("rd_divisor", rd_divisor)
        self.data_format = standardize_data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        channels = read_channels(self, input_shape)
        hidden = make_divisible(channels * self.rd_ratio, self.rd_divisor)
        if self.use_attn:
            self.conv_attn = keras.layers.Dense(1, dtype=self.dtype_policy, name="conv_attn")
            self.conv_attn.build((None, channels))
        self.fc1 = keras.layers.Dense(hidden, dtype=self.dtype_policy, name="fc1")
        self.norm = keras.layers.LayerNormalization(
            epsilon=1e-6, dtype=self.dtype_policy, name="norm"
        )
        self.fc2 = keras.layers.Dense(
            channels,
            kernel_initializer=self._fc2_kernel_initializer,
            dtype=self.dtype_policy,
            name="fc2",
        )
        self.fc1.build((None, channels))
        self.norm.build((None, hidden))
        self.fc2.build((None, hidden))

    def call(self, inputs):
        return apply_channel_gate(inputs, self._channel_weights(inputs), self.data_format)

    def attention_maps(self, inputs) -> dict[str, Any]:
        """The gate `call` applies: `{"channel": (batch, C)}` in either data format."""
        inputs = prepare_map_inputs(self, inputs)
        return {"channel": self._channel_weights(inputs)}

    def _context(self, inputs):
        if self.data_format == "channels_first":
            inputs = ops.transpose(inputs, (0, 2, 3, 1))
        if not self.use_attn:
            return ops.mean(inputs, axis=(1, 2))
        # Softmax over all positions, written out because not every backend's softmax takes
        # two axes.
        logits = self.conv_attn(inputs)  # (batch, H, W, 1)
        logits = logits - ops.max(logits, axis=(1, 2), keepdims=True)
        weights = ops.exp(logits)
        weights = weights / ops.sum(weights, axis=(1, 2), keepdims=True)
        return ops.sum(inputs * weights, axis=(1, 2))

    def _transform(self, inputs):
        """`W2 relu(LayerNorm(W1 c + b1)) + b2`, (batch, C)."""
        hidden = ops.relu(self.norm(self.fc1(self._context(inputs))))
        return self.fc2(hidden)

    def _channel_weights(self, inputs):
        return ops.sigmoid(self._transform(inputs))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "use_attn": self.use_attn,
                "rd_ratio": self.rd_ratio,
                "rd_divisor": self.rd_divisor,
                "data_format": self.data_format,
            }
        )
        return config


@register_attention("gca")
class GlobalContextAdd(GlobalContext):
    """Global Context block (GCNet): attention-pooled context, transformed by an MLP, added to
    every position.

    `a = softmax_hw(w_k . x + b_k)` weights the positions, `c = sum_hw a * x` is the context, and
    `y = x + (W2 relu(LayerNorm(W1 c + b1)) + b2)`, the same vector added at every position. `W1`
    reduces the `C` channels to `rd = make_divisible(C * rd_ratio, rd_divisor)` (nearest
    multiple, at least `rd_divisor`); the LayerNorm (epsilon 1e-6, with scale and offset) is over
    those `rd` channels. `(C + 1) + (C + 1) * rd + 2 * rd + (rd + 1) * C` weights with
    `use_attn=True`, as for `GlobalContext` (`gc`), whose context and MLP this shares.

    Matches timm's `GlobalContext(fuse_add=True, fuse_scale=False)`, what `create_attn("gca", C)`
    builds (checked on fixtures it wrote, see `tools/make_attention_fixtures.py`): GCNet's
    default fusion by addition. `W2`'s kernel starts at zero, as in timm and GCNet's code, so
    that the block starts as the identity. Deviations: Keras' default initialisation otherwise
    (Glorot uniform kernels, zero biases) instead of timm's Kaiming-normal context convolution
    and PyTorch's defaults; the activation is fixed to ReLU.

    Args:
        use_attn: whether the context is attention-pooled (GCNet); `False` uses the spatial mean.
        rd_ratio: the hidden width of the MLP relative to the channel count.
        rd_divisor: the hidden width is rounded to a multiple of this.
        data_format: `"channels_last"` or `"channels_first"`; `None` means
            `keras.config.image_data_format()`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: a 4-D tensor in `data_format`.

    Returns:
        A tensor of the same shape as `inputs`.

    Example:

    ```python
    y = GlobalContextAdd()(keras.random.normal((2, 13, 13, 256)))  # rd = 32: 16993 weights
    ```

    Reference:
        Cao et al., "GCNet: Non-local Networks Meet Squeeze-Excitation Networks and Beyond",
        ICCV Workshops 2019.
    """

    _fc2_kernel_initializer = "zeros"

    def call(self, inputs):
        added = self._transform(inputs)
        if self.data_format == "channels_last":
            return inputs + added[:, None, None, :]
        return inputs + added[:, :, None, None]

    def attention_maps(self, inputs) -> dict[str, Any]:
        """What `call` adds: `{"residual": (batch, H, W, C)}`, the transformed context broadcast
        to every position, channels-last in either data format."""
        inputs = prepare_map_inputs(self, inputs)
        added = self._transform(inputs)
        if self.data_format == "channels_first":
            inputs = ops.transpose(inputs, (0, 2, 3, 1))
        return {"residual": ops.zeros_like(inputs) + added[:, None, None, :]}

"""Non-local attention (embedded Gaussian), as timm's `nl`."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from attnyolo.layers.registry import prepare_map_inputs, register_attention
from attnyolo.layers.utils import (
    check_positive,
    make_divisible,
    read_channels,
    standardize_data_format,
)


@register_attention("nl")
class NonLocalAttention(keras.layers.Layer):
    """Non-local block (embedded Gaussian): every position adds a softmax-weighted sum over all
    positions.

    With `N = H * W` positions and three 1x1 projections `t = W_t x + b_t`, `p = W_p x + b_p`,
    `g = W_g x + b_g` to `rd` channels, `A = softmax_j(s * t_i . p_j)` (an `N x N` matrix, rows
    summing to one), `y = x + BN(W_z (A g) + b_z)`. `s = C ** -0.5` with `use_scale=True` (the
    input's channel count `C`, as timm has it), else 1. `rd = make_divisible(C * rd_ratio,
    rd_divisor)` with timm's rounding (nearest multiple, at least `rd_divisor`, one more
    multiple if that falls below 90% of `C * rd_ratio`). `3 * (C + 1) * rd + (rd + 1) * C + 4 * C`
    weights (the last `4 * C` are batch norm's scale, offset and moving statistics; `2 * C` of
    them trainable). The attention matrix costs `O(N ** 2)` memory: 676 x 676 per image on a
    26 x 26 grid.

    Matches timm's `NonLocalAttn` with its defaults (`use_scale=True`, `rd_ratio=1/8`,
    `rd_divisor=8`, batch norm with epsilon 1e-5 and PyTorch momentum 0.1, i.e. Keras momentum
    0.9), what `create_attn("nl", C)` builds (checked on fixtures it wrote, see
    `tools/make_attention_fixtures.py`). Initialised as timm's `reset_parameters`: Kaiming-normal
    kernels (fan out, ReLU gain), zero biases, and the batch norm's scale and offset at zero, so
    that the block starts as the identity. Deviations from the paper, all timm's: the `C ** -0.5`
    scaling of the logits (the paper's embedded Gaussian has none), biases on the projections,
    and the batch norm after `W_z` (the paper's variant for detection, initialised at zero).

    Args:
        use_scale: whether the attention logits are scaled by `C ** -0.5`.
        rd_ratio: the width of the embeddings relative to the channel count.
        rd_divisor: the embedding width is rounded to a multiple of this.
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
    y = NonLocalAttention()(keras.random.normal((2, 13, 13, 256)))  # rd = 32: 34144 weights
    ```

    Reference:
        Wang, Girshick, Gupta & He, "Non-local Neural Networks", CVPR 2018.
    """

    def __init__(
        self,
        use_scale: bool = True,
        rd_ratio: float = 1.0 / 8,
        rd_divisor: int = 8,
        data_format: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if rd_ratio <= 0:
            raise ValueError(f"`rd_ratio` must be positive, got {rd_ratio!r}")
        self.use_scale = bool(use_scale)
        self.rd_ratio = rd_ratio
        self.rd_divisor = check_positive("rd_divisor", rd_divisor)
        self.data_format = standardize_data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        channels = read_channels(self, input_shape)
        hidden = make_divisible(channels * self.rd_ratio, self.rd_divisor, round_limit=0.9)
        self.scale = channels**-0.5 if self.use_scale else 1.0
        kernel_init = keras.initializers.VarianceScaling(
            2.0, mode="fan_out", distribution="untruncated_normal"
        )
        for name in ("theta", "phi", "g"):
            dense = keras.layers.Dense(
                hidden, kernel_initializer=kernel_init, dtype=self.dtype_policy, name=name
            )
            dense.build((None, channels))
            setattr(self, name, dense)
        self.z = keras.layers.Dense(
            channels, kernel_initializer=kernel_init, dtype=self.dtype_policy, name="z"
        )
        self.z.build((None, hidden))
        self.bn = keras.layers.BatchNormalization(
            epsilon=1e-5,
            momentum=0.9,
            gamma_initializer="zeros",
            dtype=self.dtype_policy,
            name="bn",
        )
        self.bn.build((None, None, None, channels))

    def call(self, inputs, training=None):
        residual = self._residual(inputs, training)
        if self.data_format == "channels_first":
            residual = ops.transpose(residual, (0, 3, 1, 2))
        return inputs + residual

    def attention_maps(self, inputs) -> dict[str, Any]:
        """What `call` adds at inference (batch norm on its moving statistics):
        `{"residual": (batch, H, W, C)}`, `BN(W_z (A g) + b_z)`, channels-last in either data
        format."""
        inputs = prepare_map_inputs(self, inputs)
        return {"residual": self._residual(inputs, training=False)}

    def _residual(self, inputs, training):
        """`BN(W_z (A g) + b_z)`, channels-last."""
        x = inputs
        if self.data_format == "channels_first":
            x = ops.transpose(x, (0, 2, 3, 1))
        shape = ops.shape(x)
        height, width, channels = shape[1], shape[2], x.shape[-1]
        flat = ops.reshape(x, (-1, height * width, channels))  # (batch, N, C)
        theta, phi, g = self.theta(flat), self.phi(flat), self.g(flat)  # (batch, N, rd)
        logits = ops.matmul(theta, ops.transpose(phi, (0, 2, 1))) * self.scale
        weights = ops.softmax(logits, axis=-1)  # (batch, N, N), over the attended positions
        context = ops.matmul(weights, g)  # (batch, N, rd)
        context = ops.reshape(context, (-1, height, width, context.shape[-1]))
        return self.bn(self.z(context), training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "use_scale": self.use_scale,
                "rd_ratio": self.rd_ratio,
                "rd_divisor": self.rd_divisor,
                "data_format": self.data_format,
            }
        )
        return config

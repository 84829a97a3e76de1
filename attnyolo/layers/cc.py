"""Criss-cross attention (CCNet): every position attends to its row and its column."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from attnyolo.layers.registry import prepare_map_inputs, register_attention
from attnyolo.layers.utils import check_positive, read_channels, standardize_data_format


@register_attention("cc")
class CrissCrossAttention(keras.layers.Layer):
    """Criss-cross attention: each position adds a softmax-weighted sum of the values on its row
    and its column, scaled by a learned `gamma`.

    Three 1x1 projections `q = W_q x + b_q`, `k = W_k x + b_k` (to `rd = C // reduction`
    channels) and `v = W_v x + b_v` (to `C` channels). For the position `(h, w)` the logits are
    `q_hw . k_h'w` over its column (`h' != h`) and `q_hw . k_hw'` over its row (every `w'`), so
    that the position itself is counted once; `A = softmax` over those `H - 1 + W` logits
    together (no scaling), and `y_hw = x_hw + gamma * (sum_h' A_hw,h' v_h'w + sum_w' A_hw,w'
    v_hw')`. `2 * (C + 1) * rd + (C + 1) * C + 1` weights. `gamma` starts at zero, as the
    authors have it, so that the block starts as the identity (and its residual map is zero
    until it is trained). Memory and compute are `O(H W (H + W) C)`: 26 x 26 x 52 logits per
    image on a 26 x 26 grid. One criss-cross step (CCNet's recurrent module applies it twice,
    `R = 2`, to reach every position; stack two for that).

    Matches the authors' `CrissCrossAttention(C)` (`cc_attention/functions.py` in
    speedinghzl/CCNet, the pure-PyTorch version) with its reduction of 8 (checked on fixtures
    it wrote, see `tools/make_attention_fixtures.py`). Deviations: `reduction` is an argument
    (the authors fix it at 8); the column's own position is left out by masking its logit
    (the authors add `-inf` on the diagonal); 1x1 convolutions are `Dense` layers with Keras'
    default initialisation (Glorot uniform kernels, zero biases) instead of PyTorch's;
    `gamma` is a one-element weight as the authors' `nn.Parameter(torch.zeros(1))`.

    Args:
        reduction: the query and key width is `C // reduction` (at least one channel: fewer
            than `reduction` channels are refused).
        data_format: `"channels_last"` or `"channels_first"`; `None` means
            `keras.config.image_data_format()`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: a 4-D tensor in `data_format`.

    Returns:
        A tensor of the same shape as `inputs`.

    Example:

    ```python
    y = CrissCrossAttention()(keras.random.normal((2, 13, 13, 256)))  # rd = 32: 82241 weights
    ```

    Reference:
        Huang, Wang, Huang, Huang, Wei & Liu, "CCNet: Criss-Cross Attention for Semantic
        Segmentation", ICCV 2019.
    """

    def __init__(self, reduction: int = 8, data_format: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.reduction = check_positive("reduction", reduction)
        self.data_format = standardize_data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        channels = read_channels(self, input_shape)
        hidden = channels // self.reduction
        if hidden < 1:
            raise ValueError(
                f"{type(self).__name__}(reduction={self.reduction}) needs at least `reduction` "
                f"channels; got input shape {tuple(input_shape)} with "
                f"data_format={self.data_format!r}"
            )
        for name, width in (("query", hidden), ("key", hidden), ("value", channels)):
            dense = keras.layers.Dense(width, dtype=self.dtype_policy, name=name)
            dense.build((None, channels))
            setattr(self, name, dense)
        self.gamma = self.add_weight(shape=(1,), initializer="zeros", name="gamma")

    def call(self, inputs):
        residual = self._residual(inputs)
        if self.data_format == "channels_first":
            residual = ops.transpose(residual, (0, 3, 1, 2))
        return inputs + residual

    def attention_maps(self, inputs) -> dict[str, Any]:
        """What `call` adds: `{"residual": (batch, H, W, C)}`, `gamma * (out_H + out_W)`,
        channels-last in either data format."""
        inputs = prepare_map_inputs(self, inputs)
        return {"residual": self._residual(inputs)}

    def _residual(self, inputs):
        """`gamma * (out_H + out_W)`, channels-last."""
        x = inputs
        if self.data_format == "channels_first":
            x = ops.transpose(x, (0, 2, 3, 1))
        height = ops.shape(x)[1]
        q, k, v = self.query(x), self.key(x), self.value(x)  # (batch, H, W, rd | rd | C)
        # Column logits (batch, H, W, H'), the position itself (h' == h) masked out; row
        # logits (batch, H, W, W').
        energy_h = ops.einsum("bhwc,bgwc->bhwg", q, k)
        rows = ops.arange(height)
        own = ops.reshape(ops.equal(rows[:, None], rows[None, :]), (1, height, 1, height))
        energy_h = ops.where(own, ops.cast(float("-inf"), energy_h.dtype), energy_h)
        energy_w = ops.einsum("bhwc,bhvc->bhwv", q, k)
        weights = ops.softmax(ops.concatenate([energy_h, energy_w], axis=-1), axis=-1)
        weights_h, weights_w = weights[..., :height], weights[..., height:]
        out = ops.einsum("bhwg,bgwc->bhwc", weights_h, v)
        out = out + ops.einsum("bhwv,bhvc->bhwc", weights_w, v)
        return ops.cast(self.gamma, out.dtype) * out

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"reduction": self.reduction, "data_format": self.data_format})
        return config

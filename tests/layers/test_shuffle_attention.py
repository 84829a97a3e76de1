"""Shuffle Attention's map and output: `y = shuffle(x * full)`, the documented relation (its maps do
not reproduce the output by themselves, so `test_attention_maps.py` cannot check it)."""

import keras
import numpy as np
import pytest

from attnyolo.layers import get_attention


def _shuffle(z):
    """ShuffleNet's channel shuffle with 2 groups, channels-last."""
    *lead, channels = z.shape
    return z.reshape(*lead, 2, channels // 2).swapaxes(-1, -2).reshape(*lead, channels)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_output_is_the_shuffled_gated_input(data_format):
    x = np.random.default_rng(0).normal(size=(2, 5, 7, 16)).astype("float32")
    fed = x if data_format == "channels_last" else np.transpose(x, (0, 3, 1, 2))
    layer = get_attention("sa", groups=4, data_format=data_format)
    layer.build(fed.shape)
    rng = np.random.default_rng(1)
    for w in layer.weights:
        w.assign(rng.normal(0, 0.5, w.shape))
    y = keras.ops.convert_to_numpy(layer(fed))
    if data_format == "channels_first":
        y = np.transpose(y, (0, 2, 3, 1))
    gate = keras.ops.convert_to_numpy(layer.attention_maps(fed)["full"])
    np.testing.assert_allclose(y, _shuffle(x * gate), rtol=1e-6, atol=1e-7)
    # Output channel c is input channel (c % 2) * C / 2 + c // 2, gated.
    source = [(c % 2) * 8 + c // 2 for c in range(16)]
    np.testing.assert_allclose(y, x[..., source] * gate[..., source], rtol=1e-6, atol=1e-7)
    assert not np.allclose(y, x * gate)


def test_refuses_channels_that_two_groups_do_not_divide():
    with pytest.raises(ValueError, match=r"2 \* groups = 8"):
        get_attention("sa", groups=4)(np.zeros((1, 3, 3, 12), "float32"))

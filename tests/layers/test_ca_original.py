"""`ca_original` against a NumPy transcription of the yolov4-tiny-keras scripts' `ca_block`."""

import keras
import numpy as np
import pytest

from attnyolo.layers import CoordinateAttentionOriginal, get_attention
from tests.layers.test_reference import randomize

TOL = {"rtol": 1e-5, "atol": 1e-5}


def np_(variable):
    return keras.ops.convert_to_numpy(variable)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def ca_block_reference(x, conv1, bn, conv2, conv3, training):
    """`ca_block(input, ratio)` of bubbliiiing/yolov4-tiny-keras `nets/attention.py`, NHWC.

    conv1, conv2, conv3: the scripts' 1x1 Conv2D kernels, `(1, 1, C_in, C_out)`, no biases.
    bn: (gamma, beta, moving mean, moving variance) of its Keras 2 BatchNormalization
    (epsilon 1e-3); batch statistics (biased variance) over batch and positions when training.
    """
    gamma, beta, moving_mean, moving_var = bn
    _, h, w, _ = x.shape
    x_h = x.mean(axis=2, keepdims=True).transpose(0, 2, 1, 3)  # (N, 1, H, C)
    x_w = x.max(axis=1, keepdims=True)  # (N, 1, W, C)
    y = np.concatenate([x_w, x_h], axis=2) @ conv1[0, 0]  # (N, 1, W + H, m)
    if training:
        mean, var = y.mean(axis=(0, 1, 2)), y.var(axis=(0, 1, 2))
    else:
        mean, var = moving_mean, moving_var
    y = np.maximum((y - mean) / np.sqrt(var + 1e-3) * gamma + beta, 0.0)
    split_h, split_w = y[:, :, :h], y[:, :, h:]  # tf.split(sizes [h, w], axis=2)
    gate_h = sigmoid(split_h.transpose(0, 2, 1, 3) @ conv2[0, 0])  # (N, H, 1, C)
    gate_w = sigmoid(split_w @ conv3[0, 0])  # (N, 1, W, C)
    return x * gate_h * gate_w


def original_weights(layer):
    """The layer's weights in the scripts' shapes: Dense kernels as 1x1 Conv2D kernels."""

    def as_conv(dense):
        return np_(dense.kernel).reshape(1, 1, *dense.kernel.shape)

    bn = tuple(np_(w) for w in layer.bn.weights)
    return as_conv(layer.conv1), bn, as_conv(layer.conv_h), as_conv(layer.conv_w)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("shape", [(2, 6, 6, 32), (2, 5, 7, 32), (2, 7, 5, 48)])
def test_matches_the_original_ca_block(shape, data_format, training):
    x = np.random.default_rng(3).normal(size=shape).astype("float32")
    layer = CoordinateAttentionOriginal(data_format=data_format)
    to_layer = (
        (lambda t: t) if data_format == "channels_last" else (lambda t: t.transpose(0, 3, 1, 2))
    )
    layer.build(to_layer(x).shape)
    randomize(layer)
    weights = original_weights(layer)
    assert weights[0].shape == (1, 1, shape[-1], shape[-1] // 16)
    expected = ca_block_reference(x.astype("float64"), *weights, training=training)
    got = np_(layer(to_layer(x), training=training))
    np.testing.assert_allclose(got, to_layer(expected), **TOL)


def test_training_updates_moving_statistics_with_keras_2_momentum():
    x = np.random.default_rng(4).normal(size=(2, 5, 7, 32)).astype("float32")
    layer = CoordinateAttentionOriginal()
    layer.build(x.shape)
    randomize(layer)
    conv1, (_, _, moving_mean, _), _, _ = original_weights(layer)
    positions = np.concatenate([x.max(axis=1), x.mean(axis=2)], axis=1) @ conv1[0, 0]
    layer(x, training=True)
    expected = 0.99 * moving_mean + 0.01 * positions.mean(axis=(0, 1))
    np.testing.assert_allclose(np_(layer.bn.moving_mean), expected, **TOL)


@pytest.mark.parametrize(("channels", "reduction"), [(128, 16), (256, 16), (512, 16), (48, 16)])
def test_parameter_count_equals_the_original(channels, reduction):
    layer = CoordinateAttentionOriginal(reduction=reduction)
    layer.build((None, 13, 13, channels))
    m = channels // reduction
    # conv1 (C x m), conv2 and conv3 (m x C) without biases; BN gamma, beta, mean, variance.
    assert layer.count_params() == 3 * channels * m + 4 * m
    assert [w.path.split("/", 1)[1] for w in layer.weights] == [
        "conv1/kernel",
        "bn/gamma",
        "bn/beta",
        "bn/moving_mean",
        "bn/moving_variance",
        "conv_h/kernel",
        "conv_w/kernel",
    ]


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_fewer_channels_than_reduction_is_refused(data_format):
    shape = (None, 6, 6, 8) if data_format == "channels_last" else (None, 8, 6, 6)
    layer = CoordinateAttentionOriginal(data_format=data_format)
    with pytest.raises(ValueError, match=rf"input shape \({', '.join(map(str, shape))}\)"):
        layer.build(shape)
    CoordinateAttentionOriginal(reduction=8, data_format=data_format).build(shape)


def test_serialization_round_trip():
    layer = get_attention("ca_original", reduction=8, data_format="channels_first", name="ca")
    x = np.random.default_rng(5).normal(size=(2, 32, 5, 7)).astype("float32")
    layer.build(x.shape)
    randomize(layer)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(clone) is CoordinateAttentionOriginal
    assert clone.get_config() == layer.get_config()
    assert (clone.reduction, clone.data_format) == (8, "channels_first")
    assert clone.built  # from the serialized build config
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(np_(clone(x)), np_(layer(x)))

"""Each layer against a NumPy transcription of its paper's formula (channels-last unless noted)."""

import keras
import numpy as np
import pytest

from attnyolo.layers import (
    CBAM,
    ECA,
    ChannelAttention,
    CoordinateAttention,
    SimAM,
    SpatialAttention,
    SpatialGroupEnhance,
    SqueezeExcitation,
)
from attnyolo.layers.eca import eca_kernel_size

TOL = {"rtol": 1e-5, "atol": 1e-5}


def np_(variable):
    return keras.ops.convert_to_numpy(variable)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def relu(x):
    return np.maximum(x, 0.0)


def dense(x, layer):
    out = x @ np_(layer.kernel)
    return out + np_(layer.bias) if layer.use_bias else out


def batch_norm_inference(x, layer):
    # Normalizes the last axis with the moving statistics.
    gamma, beta, mean, var = (np_(w) for w in layer.weights)
    return (x - mean) / np.sqrt(var + layer.epsilon) * gamma + beta


def conv2d_same(x, kernel):
    """Cross-correlation, stride 1, zero padding (k - 1) / 2.

    x: (N, H, W, Cin); kernel: (k, k, Cin, Cout).
    """
    k = kernel.shape[0]
    p = (k - 1) // 2
    n, h, w, _ = x.shape
    padded = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    out = np.zeros((n, h, w, kernel.shape[-1]))
    for i in range(k):
        for j in range(k):
            out += padded[:, i : i + h, j : j + w, :] @ kernel[i, j]
    return out


def randomize(layer, seed=0):
    """Non-trivial weights everywhere; variances (batch norm) kept positive."""
    rng = np.random.default_rng(seed)
    layer.set_weights(
        [
            rng.uniform(0.2, 1.2, w.shape) * rng.choice([-1, 1], w.shape)
            if "variance" not in w.path
            else rng.uniform(0.5, 2.0, w.shape)
            for w in layer.weights
        ]
    )


def run(layer, x):
    layer.build(x.shape)
    randomize(layer)
    return np_(layer(x))


@pytest.fixture
def x():
    return np.random.default_rng(42).normal(size=(2, 5, 7, 32)).astype("float32")


def se_reference(x, fc1, fc2):
    # Hu et al., Eq. 2-4: s = sigmoid(W2 relu(W1 z)), z = mean over H, W; y = s * x.
    z = x.mean(axis=(1, 2))
    s = sigmoid(dense(relu(dense(z, fc1)), fc2))
    return x * s[:, None, None, :]


@pytest.mark.parametrize("kwargs", [{}, {"reduction": 4, "use_bias": True}])
def test_squeeze_excitation(x, kwargs):
    layer = SqueezeExcitation(**kwargs)
    got = run(layer, x)
    np.testing.assert_allclose(got, se_reference(x, layer.squeeze, layer.excite), **TOL)


def channel_reference(x, fc1, fc2):
    # Woo et al., Eq. 2: Mc = sigmoid(MLP(AvgPool(F)) + MLP(MaxPool(F))); F' = Mc * F.
    def mlp(z):
        return dense(relu(dense(z, fc1)), fc2)

    m = sigmoid(mlp(x.mean(axis=(1, 2))) + mlp(x.max(axis=(1, 2))))
    return x * m[:, None, None, :]


def spatial_reference(x, conv, bn=None):
    # Woo et al., Eq. 3: Ms = sigmoid(f7x7([AvgPool_c(F); MaxPool_c(F)])); F'' = Ms * F.
    descriptor = np.stack([x.mean(axis=-1), x.max(axis=-1)], axis=-1)
    logits = conv2d_same(descriptor, np_(conv.kernel))
    if conv.use_bias:
        logits = logits + np_(conv.bias)
    if bn is not None:
        logits = batch_norm_inference(logits, bn)
    return x * sigmoid(logits)


@pytest.mark.parametrize("kwargs", [{}, {"reduction": 16, "use_bias": True}])
def test_channel_attention(x, kwargs):
    layer = ChannelAttention(**kwargs)
    got = run(layer, x)
    expected = channel_reference(x, layer.mlp_hidden, layer.mlp_out)
    np.testing.assert_allclose(got, expected, **TOL)


@pytest.mark.parametrize("kwargs", [{}, {"kernel_size": 3, "use_bias": True}, {"use_bn": True}])
def test_spatial_attention(x, kwargs):
    layer = SpatialAttention(**kwargs)
    got = run(layer, x)
    np.testing.assert_allclose(got, spatial_reference(x, layer.conv, layer.bn), **TOL)


@pytest.mark.parametrize("kwargs", [{}, {"reduction": 16, "use_bias": True, "spatial_bn": True}])
def test_cbam(x, kwargs):
    layer = CBAM(**kwargs)
    got = run(layer, x)
    channel, spatial = layer.channel_attention, layer.spatial_attention
    expected = spatial_reference(
        channel_reference(x, channel.mlp_hidden, channel.mlp_out), spatial.conv, spatial.bn
    )
    np.testing.assert_allclose(got, expected, **TOL)


@pytest.mark.parametrize(
    ("channels", "k"),
    # int(|(log2(C) + 1) / 2|), +1 when even
    [
        (1, 1),
        (2, 1),
        (4, 1),
        (8, 3),
        (16, 3),
        (32, 3),
        (64, 3),
        (128, 5),
        (256, 5),
        (512, 5),
        (1024, 5),
        (2048, 7),
    ],
)
def test_eca_kernel_size_formula(channels, k):
    assert eca_kernel_size(channels) == k
    layer = ECA()
    layer.build((None, 3, 3, channels))
    assert layer.conv.kernel.shape[0] == k


def test_eca_kernel_size_arguments():
    assert eca_kernel_size(256, gamma=1, b=0) == 9  # 8 -> 9
    assert eca_kernel_size(256, gamma=3, b=2) == 3  # 3.33 -> 3
    layer = ECA(kernel_size=9)
    layer.build((None, 3, 3, 256))
    assert layer.conv.kernel.shape[0] == 9
    with pytest.raises(ValueError, match="odd"):
        ECA(kernel_size=4)


def eca_reference(x, kernel, bias=0.0):
    # Wang et al., Eq. 12: w = sigmoid(C1D_k(y)), y = GAP(x), zero padding (k - 1) / 2.
    k = kernel.size
    y = np.pad(x.mean(axis=(1, 2)), ((0, 0), ((k - 1) // 2, (k - 1) // 2)))
    c = x.shape[-1]
    w = sigmoid(sum(kernel[j] * y[:, j : j + c] for j in range(k)) + bias)
    return x * w[:, None, None, :]


@pytest.mark.parametrize(
    ("channels", "kwargs"),
    [(32, {}), (64, {}), (256, {}), (32, {"kernel_size": 7, "use_bias": True})],
)
def test_eca(channels, kwargs):
    x = np.random.default_rng(1).normal(size=(2, 3, 4, channels)).astype("float32")
    layer = ECA(**kwargs)
    got = run(layer, x)
    bias = np_(layer.conv.bias) if layer.use_bias else 0.0
    expected = eca_reference(x, np_(layer.conv.kernel).ravel(), bias)
    np.testing.assert_allclose(got, expected, **TOL)


def coordatt_reference(x_nchw, layer):
    """Transcribes `CoordAtt.forward` of Andrew-Qibin/CoordAttention (`coordatt.py`), NCHW.

    PyTorch 1x1 conv weights (out, in, 1, 1) are the Keras Dense kernels (in, out) transposed;
    batch norm runs in inference mode.
    """

    def conv1x1(t, dense_layer):  # t: (N, Cin, H, W)
        w = np_(dense_layer.kernel).T
        return np.einsum("nchw,oc->nohw", t, w) + np_(dense_layer.bias)[None, :, None, None]

    def bn(t):
        gamma, beta, mean, var = (np_(v)[None, :, None, None] for v in layer.bn1.weights)
        return (t - mean) / np.sqrt(var + 1e-5) * gamma + beta

    def h_swish(t):
        return t * np.clip(t + 3, 0, 6) / 6

    identity = x_nchw
    n, c, h, w = x_nchw.shape
    x_h = x_nchw.mean(axis=3, keepdims=True)  # pool_h: AdaptiveAvgPool2d((None, 1)) -> N,C,H,1
    x_w = x_nchw.mean(axis=2, keepdims=True).transpose(0, 1, 3, 2)  # pool_w, permuted -> N,C,W,1
    y = np.concatenate([x_h, x_w], axis=2)
    y = h_swish(bn(conv1x1(y, layer.conv1)))
    x_h, x_w = y[:, :, :h], y[:, :, h:]
    x_w = x_w.transpose(0, 1, 3, 2)
    a_h = sigmoid(conv1x1(x_h, layer.conv_h))
    a_w = sigmoid(conv1x1(x_w, layer.conv_w))
    return identity * a_w * a_h


@pytest.mark.parametrize("kwargs", [{}, {"reduction": 4, "min_mip": 2}])
def test_coordinate_attention_non_square(kwargs):
    x = np.random.default_rng(3).normal(size=(2, 5, 7, 32)).astype("float32")  # H=5 != W=7
    x_nchw = x.transpose(0, 3, 1, 2)
    last = CoordinateAttention(data_format="channels_last", **kwargs)
    got_last = run(last, x)
    assert np.all(np_(last.bn1.moving_variance) != 1.0)  # non-trivial statistics in use
    expected = coordatt_reference(x_nchw, last)
    np.testing.assert_allclose(got_last.transpose(0, 3, 1, 2), expected, **TOL)

    first = CoordinateAttention(data_format="channels_first", **kwargs)
    first.build(x_nchw.shape)
    first.set_weights(last.get_weights())
    np.testing.assert_allclose(np_(first(x_nchw)), expected, **TOL)


def test_batch_norm_settings_follow_pytorch():
    ca = CoordinateAttention()
    ca.build((None, 4, 4, 64))
    assert (ca.bn1.epsilon, ca.bn1.momentum) == (1e-5, 0.9)  # torch: eps 1e-5, momentum 0.1
    sa = SpatialAttention(use_bn=True)
    sa.build((None, 4, 4, 64))
    assert (sa.bn.epsilon, sa.bn.momentum) == (1e-5, 0.99)  # CBAM's code: momentum 0.01


def simam_reference(x, e_lambda=1e-4):
    """A transcription of `simam_module.forward` from the paper's released code (NCHW there,
    channels-last here); PyPI has no package of it."""
    n = x.shape[1] * x.shape[2] - 1
    squared = (x - x.mean(axis=(1, 2), keepdims=True)) ** 2
    y = squared / (4 * (squared.sum(axis=(1, 2), keepdims=True) / n + e_lambda)) + 0.5
    return x * sigmoid(y)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("e_lambda", [1e-4, 0.5])
def test_simam(x, e_lambda, data_format):
    layer = SimAM(e_lambda=e_lambda, data_format=data_format)
    fed = x if data_format == "channels_last" else np.transpose(x, (0, 3, 1, 2))
    got = np_(layer(fed))
    if data_format == "channels_first":
        got = np.transpose(got, (0, 2, 3, 1))
    np.testing.assert_allclose(got, simam_reference(x, e_lambda), **TOL)


def sge_reference(x_nchw, weight, bias, groups):
    """A NumPy port of the official `SpatialGroupEnhance.forward` (NCHW, as it is written there);
    PyPI has no package of it. `torch.std` is the unbiased standard deviation."""
    b, c, h, w = x_nchw.shape
    x = x_nchw.reshape(b * groups, c // groups, h, w)
    xn = (x * x.mean(axis=(2, 3), keepdims=True)).sum(axis=1, keepdims=True)
    t = xn.reshape(b * groups, -1)
    t = t - t.mean(axis=1, keepdims=True)
    t = t / (t.std(axis=1, ddof=1, keepdims=True) + 1e-5)
    t = t.reshape(b, groups, h, w) * weight.reshape(1, groups, 1, 1) + bias.reshape(1, groups, 1, 1)
    x = x * sigmoid(t.reshape(b * groups, 1, h, w))
    return x.reshape(b, c, h, w)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("groups", [8, 4, 32])
def test_sge(x, groups, data_format):
    layer = SpatialGroupEnhance(groups=groups, data_format=data_format)
    x_nchw = np.transpose(x, (0, 3, 1, 2))
    got = run(layer, x if data_format == "channels_last" else x_nchw)
    if data_format == "channels_last":
        got = np.transpose(got, (0, 3, 1, 2))
    expected = sge_reference(x_nchw, np_(layer.weight), np_(layer.bias), groups)
    np.testing.assert_allclose(got, expected, **TOL)

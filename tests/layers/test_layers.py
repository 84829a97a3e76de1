"""Basic tests of every registered attention layer: shapes, weights, config, saving, precision."""

import keras
import numpy as np
import pytest

from attnyolo.layers import attention_names, get_attention

NAMES = attention_names()

# Non-default values for every constructor argument of every registered layer.
NON_DEFAULT_ARGS = {
    "se": {"reduction": 4, "use_bias": True},
    "cbam_channel": {"reduction": 4, "use_bias": True},
    "cbam_spatial": {"kernel_size": 3, "use_bias": True, "use_bn": True},
    "cbam": {"reduction": 4, "use_bias": True, "kernel_size": 3, "spatial_bn": True},
    "eca": {"gamma": 3, "b": 2, "kernel_size": 7, "use_bias": True},
    "ca": {"reduction": 4, "min_mip": 2},
    "ca_original": {"reduction": 4},
    "ese": {"add_maxpool": True},
    "ceca": {"gamma": 3, "beta": 2, "kernel_size": 5},
    "gc": {"use_attn": False, "rd_ratio": 0.25, "rd_divisor": 2},
    "gca": {"use_attn": False, "rd_ratio": 0.25, "rd_divisor": 2},
    "ge": {"extent": 2, "use_mlp": False, "rd_ratio": 0.25, "rd_divisor": 2, "add_maxpool": True},
    "nl": {"use_scale": False, "rd_ratio": 0.25, "rd_divisor": 4},
    "cc": {"reduction": 4},
    "lcbam": {"rd_ratio": 0.25, "rd_divisor": 2, "mlp_bias": True, "spatial_kernel_size": 3},
    "scse": {"reduction": 4},
    "simam": {"e_lambda": 1e-3},
    "sge": {"groups": 4},
    "sk": {
        "kernel_size": [3, 7],
        "dilation": 2,
        "groups": 2,
        "rd_ratio": 0.25,
        "rd_channels": 4,
        "rd_divisor": 4,
        "keep_3x3": False,
        "split_input": False,
    },
    "splat": {
        "kernel_size": 5,
        "dilation": 2,
        "groups": 2,
        "radix": 4,
        "rd_ratio": 0.5,
        "rd_channels": 8,
        "rd_divisor": 4,
        "use_bias": True,
        "use_bn": False,
    },
    "triplet": {"no_spatial": True},
    "bam": {"reduction": 4, "dilation_conv_num": 1, "dilation_val": 2, "fusion": "sum"},
    "psa": {},
    "psa_s": {},
    "sa": {"groups": 4},
    "lsk": {},
}

# Layers that reproduce the original scripts exactly and so refuse fewer channels than
# `reduction` (where the scripts would build zero-width layers), and SGE, which refuses channel
# counts that its `groups` (8) do not divide, and Shuffle Attention, which refuses channel counts
# that `2 * groups` (128) do not divide, and criss-cross attention, which refuses fewer channels
# than `reduction` (its query and key width `C // reduction` would be zero).
REFUSES_TINY_CHANNELS = {"ca_original", "sge", "sa", "cc"}
# Layers that split the channels evenly between two paths (Selective Kernel's split input,
# Split attention's radix 2), as timm does, and so refuse odd channel counts.
REFUSES_ODD_CHANNELS = {"sk", "splat"}
# Arguments for layers whose defaults refuse the tests' 16- and 64-channel inputs: Shuffle
# Attention's 64 groups need a multiple of 128 channels. `_attention` adds them where a test
# builds a layer with its defaults (tests of the defaults themselves use `get_attention`).
SMALL_INPUT_ARGS = {"sa": {"groups": 4}}

# The defaults (the yolov4-tiny-keras scripts) and the paper variants, by channel count.
PARAM_COUNTS = {
    # 2 * C * (C // 16)
    ("se", ()): {128: 2048, 256: 8192, 512: 32768},
    # (C + 1) * (C // 16) + (C // 16 + 1) * C
    ("se", (("use_bias", True),)): {128: 2184, 256: 8464, 512: 33312},
    # 2 * C * (C // 8)
    ("cbam_channel", ()): {128: 4096, 256: 16384, 512: 65536},
    ("cbam_channel", (("reduction", 16), ("use_bias", True))): {128: 2184, 256: 8464, 512: 33312},
    # 2 * 7 * 7, + 4 for batch norm (gamma, beta, moving mean and variance)
    ("cbam_spatial", ()): {128: 98, 256: 98, 512: 98},
    ("cbam_spatial", (("use_bn", True),)): {128: 102, 256: 102, 512: 102},
    # channel + spatial
    ("cbam", ()): {128: 4194, 256: 16482, 512: 65634},
    (
        "cbam",
        (("reduction", 16), ("use_bias", True), ("spatial_bn", True)),
    ): {128: 2286, 256: 8566, 512: 33414},
    # k = 5 for all three
    ("eca", ()): {128: 5, 256: 5, 512: 5},
    # mip = max(8, C // 32); (C + 1) * mip + 4 * mip + 2 * (mip + 1) * C
    ("ca", ()): {128: 3368, 256: 6696, 512: 25680},
    # 3 * C * (C // 16) + 4 * (C // 16), as the original scripts' ca_block
    ("ca_original", ()): {128: 3104, 256: 12352, 512: 49280},
    # C * C + C, one full-width 1x1 convolution with bias (timm EffectiveSEModule)
    ("ese", ()): {128: 16512, 256: 65792, 512: 262656},
    # k = ceca_kernel_size(C): 5 for all three, no bias (timm CecaModule)
    ("ceca", ()): {128: 5, 256: 5, 512: 5},
    # rd = C // 8; (C + 1) + (C + 1) * rd + 2 * rd + (rd + 1) * C (timm GlobalContext)
    ("gc", ()): {128: 4401, 256: 16993, 512: 66753},
    # no context convolution: the spatial mean
    ("gc", (("use_attn", False),)): {128: 4272, 256: 16736, 512: 66240},
    # the same context and MLP as gc, added instead of gating (timm GlobalContext fuse_add)
    ("gca", ()): {128: 4401, 256: 16993, 512: 66753},
    # rd = C // 16; (C + 1) * rd + (rd + 1) * C (timm GatherExcite, extent 0: SE with biases)
    ("ge", ()): {128: 2184, 256: 8464, 512: 33312},
    # GE-theta-minus: average pooling and a sigmoid only
    ("ge", (("extent", 4), ("use_mlp", False))): {128: 0, 256: 0, 512: 0},
    # rd = C // 8; 3 * (C + 1) * rd + (rd + 1) * C + 4 * C, the last for batch norm (gamma,
    # beta, moving mean and variance) (timm NonLocalAttn, whose count leaves out the 2 * C
    # running statistics)
    ("nl", ()): {128: 8880, 256: 34144, 512: 133824},
    # rd = C // 8; 2 * (C + 1) * rd + (C + 1) * C + 1 (query, key, value and gamma; CCNet's
    # CrissCrossAttention)
    ("cc", ()): {128: 20641, 256: 82241, 512: 328321},
    # rd = C // 16; 2 * C * rd + 7 * 7 + 4 for batch norm (timm LightCbamModule, whose count
    # leaves out the 2 running statistics)
    ("lcbam", ()): {128: 2101, 256: 8245, 512: 32821},
    # rd = C // 16; (C + 1) * rd + (rd + 1) * C + (C + 1) (smp SCSEModule)
    ("scse", ()): {128: 2313, 256: 8721, 512: 33825},
    # parameter-free
    ("simam", ()): {128: 0, 256: 0, 512: 0},
    # a weight and a bias per group: 2 * groups
    ("sge", ()): {128: 16, 256: 16, 512: 16},
    ("sge", (("groups", 64),)): {128: 128, 256: 128, 512: 128},
    # rd = make_divisible(C / 16, 8) = C / 16; two paths of a 3x3 (C / 2) -> C convolution and
    # batch norm, then the attention: 2 * (9 * C * C / 2 + 4 * C) + C * rd + 4 * rd + rd * 2 * C
    # = 9 * C^2 + 8 * C + 3 * C * rd + 4 * rd (timm SelectiveKernel, whose count leaves out the
    # 4 * C + 2 * rd running statistics)
    ("sk", ()): {128: 151584, 256: 604224, 512: 2412672},
    # attn = max(32, make_divisible(2 * C / 4, 8)) = C / 2; 9 * C^2 (the 3x3 convolution to
    # 2 * C in 2 groups) + 8 * C (its batch norm) + (C + 1) * attn + 4 * attn + (attn + 1) * 2 * C
    # = 9 * C^2 + 10 * C + 3 * C * attn + 5 * attn (timm SplitAttn with batch norm, whose count
    # leaves out the 4 * C + 2 * attn running statistics)
    ("splat", ()): {128: 173632, 256: 691328, 512: 2758912},
    # without batch norm (timm's create_attn("splat", C)): 9 * C^2 + 3 * C * attn + attn + 2 * C
    ("splat", (("use_bn", False),)): {128: 172352, 256: 688768, 512: 2753792},
    # three branches of a 7x7 2 -> 1 convolution (98) and batch norm (4), for any C
    ("triplet", ()): {128: 306, 256: 306, 512: 306},
    ("triplet", (("no_spatial", True),)): {128: 204, 256: 204, 512: 204},
    # rd = C // 16; 3 * C * rd + C + 18 * rd^2 + 13 * rd + 1, + 8 * rd batch-norm moving
    # statistics (the authors' BAM counts 3 * C * rd + C + 18 * rd^2 + 13 * rd + 1)
    ("bam", ()): {128: 4521, 256: 17489, 512: 68769},
    # 2 * C^2 + C: five bias-free 1x1 convolutions (the authors' PSA_p)
    ("psa", ()): {128: 32896, 256: 131328, 512: 524800},
    # C + 3 * C * (C / 2) + (C / 2 + 3) * (C / 8) + (C / 8 + 1) * C (the authors' PSA_s)
    ("psa_s", ()): {128: 27952, 256: 111200, 512: 443584},
    # six vectors of C / (2 * groups): 3 * C / groups (the authors' sa_layer, 64 groups)
    ("sa", ()): {128: 6, 256: 12, 512: 24},
    ("sa", (("groups", 4),)): {128: 96, 256: 192, 512: 384},
    # h = C // 2; 26 * C + 50 * C (two depthwise convolutions with biases) + 2 * (C + 1) * h
    # + (2 * 2 * 49 + 2) + (h + 1) * C = 1.5 * C^2 + 78 * C + 198 (the authors' LSKblock)
    ("lsk", ()): {128: 34758, 256: 118470, 512: 433350},
}


def _attention(attention, **kwargs):
    return get_attention(attention, **{**SMALL_INPUT_ARGS.get(attention, {}), **kwargs})


def _input(shape, data_format="channels_last", seed=0):
    x = np.random.default_rng(seed).normal(size=shape).astype("float32")
    return x if data_format == "channels_last" else np.transpose(x, (0, 3, 1, 2))


def test_every_layer_has_test_arguments():
    assert set(NAMES) == set(NON_DEFAULT_ARGS)
    assert {name for name, _ in PARAM_COUNTS} == set(NAMES)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("name", NAMES)
def test_shape_preserving(name, data_format):
    layer = _attention(name, data_format=data_format)
    x = _input((2, 5, 7, 16), data_format)
    y = layer(x)
    assert tuple(y.shape) == x.shape
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(y)))
    # Symbolic use with unknown spatial size.
    shape = (None, None, 16) if data_format == "channels_last" else (16, None, None)
    out = _attention(name, data_format=data_format)(keras.Input(shape))
    assert tuple(out.shape) == (None, *shape)


@pytest.mark.parametrize("name", NAMES)
def test_data_format_defaults_to_keras_setting(name):
    assert get_attention(name).data_format == keras.config.image_data_format()
    with pytest.raises(ValueError, match="data_format"):
        get_attention(name, data_format="NHWC")


@pytest.mark.parametrize("name", NAMES)
def test_rejects_wrong_channel_count_after_build(name):
    layer = _attention(name)
    layer(_input((2, 5, 7, 16)))
    with pytest.raises(ValueError, match="expected axis"):
        layer(_input((2, 5, 7, 8)))


@pytest.mark.parametrize("channels", [1, 4])
@pytest.mark.parametrize("name", NAMES)
def test_tiny_channel_counts(name, channels):
    kwargs = {"reduction": 16} if "reduction" in NON_DEFAULT_ARGS[name] else {}
    layer = get_attention(name, **kwargs)
    x = _input((1, 3, 4, channels))
    if name in REFUSES_TINY_CHANNELS or (name in REFUSES_ODD_CHANNELS and channels % 2):
        with pytest.raises(ValueError, match=rf"input shape \(1, 3, 4, {channels}\)"):
            layer(x)
        return
    assert tuple(layer(x).shape) == x.shape
    for weight in layer.weights:
        assert min(weight.shape) >= 1, weight.path


def test_reduced_widths_never_below_one():
    # 4 // 16 == 0 in the original scripts, which build a zero-width layer.
    se = get_attention("se", reduction=16)
    se.build((None, 2, 2, 4))
    assert tuple(se.squeeze.kernel.shape) == (4, 1)
    cbam = get_attention("cbam", reduction=16)
    cbam.build((None, 2, 2, 4))
    assert tuple(cbam.channel_attention.mlp_hidden.kernel.shape) == (4, 1)
    ca = get_attention("ca", reduction=32, min_mip=1)
    ca.build((None, 2, 2, 4))
    assert tuple(ca.conv1.kernel.shape) == (4, 1)
    eca = get_attention("eca")
    eca.build((None, 2, 2, 1))
    assert tuple(eca.conv.kernel.shape) == (1, 1, 1)


@pytest.mark.parametrize(("name", "kwargs"), sorted(PARAM_COUNTS))
def test_exact_parameter_counts(name, kwargs):
    for channels, expected in PARAM_COUNTS[(name, kwargs)].items():
        layer = get_attention(name, **dict(kwargs))
        layer.build((None, 13, 13, channels))
        assert layer.count_params() == expected, (channels, layer.weights)


@pytest.mark.parametrize("name", NAMES)
def test_config_holds_constructor_arguments(name):
    kwargs = {**NON_DEFAULT_ARGS[name], "data_format": "channels_first"}
    layer = get_attention(name, name="my_attention", **kwargs)
    config = layer.get_config()
    assert {key: config[key] for key in kwargs} == kwargs
    assert config["name"] == "my_attention"

    clone = type(layer).from_config(config)
    assert clone.get_config() == config

    default_config = get_attention(name).get_config()
    for key, value in kwargs.items():
        assert default_config[key] != value, f"{key} is not a non-default value"


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("name", NAMES)
def test_channels_first_equals_channels_last(name, data_format):
    kwargs = NON_DEFAULT_ARGS[name] if data_format == "channels_first" else {}
    last = _attention(name, data_format="channels_last", **kwargs)
    first = _attention(name, data_format="channels_first", **kwargs)
    x = _input((2, 5, 7, 16), seed=1)
    last.build((None, 5, 7, 16))
    first.build((None, 16, 5, 7))
    _randomize_weights(last)
    expected = keras.ops.convert_to_numpy(last(x))
    first.set_weights(last.get_weights())
    got = keras.ops.convert_to_numpy(first(np.transpose(x, (0, 3, 1, 2))))
    np.testing.assert_allclose(np.transpose(got, (0, 2, 3, 1)), expected, rtol=1e-5, atol=1e-6)


def _randomize_weights(layer, seed=2):
    """Non-trivial weights everywhere, including biases and batch norm statistics."""
    rng = np.random.default_rng(seed)
    layer.set_weights(
        [rng.uniform(0.5, 1.5, size=w.shape).astype("float32") for w in layer.get_weights()]
    )


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("name", NAMES)
def test_save_and_load_in_safe_mode(name, data_format, tmp_path):
    kwargs = NON_DEFAULT_ARGS[name] if data_format == "channels_first" else {}
    shape = (5, 7, 16) if data_format == "channels_last" else (16, 5, 7)
    inputs = keras.Input(shape)
    layer = _attention(name, data_format=data_format, name="attention", **kwargs)
    model = keras.Model(inputs, layer(inputs))
    _randomize_weights(layer)
    x = _input((2, 5, 7, 16), data_format)
    path = tmp_path / "model.keras"
    model.save(path)

    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded.get_layer("attention")) is type(layer)
    assert loaded.get_layer("attention").get_config() == layer.get_config()
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(model(x))
    )


# float16 kernels exist on CPU for every backend (TensorFlow 2.21, JAX 0.10, torch 2.13 checked).
MIXED_POLICY = "mixed_float16"


@pytest.fixture
def restore_dtype_policy():
    policy = keras.config.dtype_policy()
    yield
    keras.config.set_dtype_policy(policy)


@pytest.mark.parametrize("name", NAMES)
def test_mixed_precision_global_policy(name, restore_dtype_policy):
    keras.config.set_dtype_policy(MIXED_POLICY)
    compute_dtype = MIXED_POLICY.removeprefix("mixed_")
    layer = get_attention(name, **NON_DEFAULT_ARGS[name])
    for training in (True, False):
        y = layer(_input((2, 5, 7, 16)), training=training)
        assert keras.backend.standardize_dtype(y.dtype) == compute_dtype
        assert np.all(np.isfinite(keras.ops.convert_to_numpy(keras.ops.cast(y, "float32"))))
    assert all(w.dtype == "float32" for w in layer.weights)


@pytest.mark.parametrize("name", NAMES)
def test_mixed_precision_layer_dtype(name):
    compute_dtype = MIXED_POLICY.removeprefix("mixed_")
    layer = _attention(name, dtype=MIXED_POLICY)
    inputs = keras.Input((5, 7, 16))
    model = keras.Model(inputs, layer(inputs))
    y = model(_input((2, 5, 7, 16)))
    assert keras.backend.standardize_dtype(y.dtype) == compute_dtype
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(keras.ops.cast(y, "float32"))))
    assert all(w.dtype == "float32" for w in layer.weights)
    assert layer.get_config()["dtype"]["config"]["name"] == MIXED_POLICY

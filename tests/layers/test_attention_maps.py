"""Every registered attention layer says what it weights: `attention_maps(inputs)` returns the
gates `call` applies, and applying them to the input reproduces the layer's output."""

import keras
import numpy as np
import pytest

from attnyolo.layers import attention_names, get_attention
from attnyolo.layers.registry import (
    ATTENTION_MAP_LAYOUTS,
    maps_reproduce_output,
    supports_attention_maps,
)
from tests.layers.test_layers import SMALL_INPUT_ARGS

NAMES = attention_names()
BATCH, HEIGHT, WIDTH, CHANNELS = 2, 5, 7, 64

# How each kind of map is applied to a channels-last x, and its shape (ATTENTION_MAP_LAYOUTS).
APPLY = {
    "channel": lambda x, m: x * m[:, None, None, :],
    "spatial": lambda x, m: x * m[:, :, :, None],
    "height": lambda x, m: x * m[:, :, None, :],
    "width": lambda x, m: x * m[:, None, :, :],
    "full": lambda x, m: x * m,
    "residual": lambda x, m: x + m,
}
SHAPES = {
    "channel": (BATCH, CHANNELS),
    "spatial": (BATCH, HEIGHT, WIDTH),
    "height": (BATCH, HEIGHT, CHANNELS),
    "width": (BATCH, WIDTH, CHANNELS),
    "full": (BATCH, HEIGHT, WIDTH, CHANNELS),
    "residual": (BATCH, HEIGHT, WIDTH, CHANNELS),
}
# Kinds that are added, not multiplied: any real value.
ADDITIVE = {"residual"}

# The maps each of the package's layers returns, in the order it applies them.
EXPECTED_KEYS = {
    "se": ["channel"],
    "eca": ["channel"],
    "cbam_channel": ["channel"],
    "cbam_spatial": ["spatial"],
    "cbam": ["channel", "spatial"],
    "ca": ["height", "width"],
    "ca_original": ["height", "width"],
    "ese": ["channel"],
    "ceca": ["channel"],
    "gc": ["channel"],
    "gca": ["residual"],
    "ge": ["channel"],
    "nl": ["residual"],
    "cc": ["residual"],
    "lcbam": ["channel", "spatial"],
    "scse": ["full"],
    "simam": ["full"],
    "sge": ["full"],
    "sk": ["channel"],
    "splat": ["channel"],
    "triplet": ["full"],
    "bam": ["full"],
    "psa": ["full"],
    "psa_s": ["channel", "spatial"],
    "sa": ["full"],
    "lsk": ["full"],
}

# Gates outside [0, 1]: (low, high), None for no bound. scSE's is the sum of a channel and a
# spatial sigmoid gate.
GATE_RANGE = {
    "scse": (0.0, 2.0),
    # BAM: 1 + sigmoid(channel * spatial); PSA (parallel): a channel plus a spatial gate.
    "bam": (1.0, 2.0),
    "psa": (0.0, 2.0),
    # LSK: a 1x1 convolution with no activation after it.
    "lsk": (None, None),
}


def _input(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(BATCH, HEIGHT, WIDTH, CHANNELS)).astype("float32")


def _built_layer(name, data_format):
    layer = get_attention(name, data_format=data_format, **SMALL_INPUT_ARGS.get(name, {}))
    shape = (None, HEIGHT, WIDTH, CHANNELS)
    layer.build(shape if data_format == "channels_last" else (None, CHANNELS, HEIGHT, WIDTH))
    # Non-trivial weights everywhere, batch norm statistics included, small and signed so that
    # the gates spread over (0, 1) instead of saturating (variances stay positive).
    rng = np.random.default_rng(1)
    for w in layer.weights:
        positive = "variance" in w.path
        w.assign(rng.uniform(0.5, 1.5, w.shape) if positive else rng.normal(0, 0.5, w.shape))
    return layer


def _numpy_maps(layer, x):
    maps = layer.attention_maps(x)
    assert isinstance(maps, dict) and maps, f"{layer.name}: attention_maps returned {maps!r}"
    return {key: keras.ops.convert_to_numpy(value) for key, value in maps.items()}


def test_the_layouts_here_are_the_registrys():
    assert set(APPLY) == set(SHAPES) == set(ATTENTION_MAP_LAYOUTS)


@pytest.mark.parametrize("name", NAMES)
def test_every_registered_type_has_attention_maps(name):
    layer = get_attention(name)
    assert supports_attention_maps(layer), (
        f"attention {name!r} ({type(layer).__name__}) has no attention_maps(inputs) method: "
        "every registered attention layer must return the weights it applies, as a dict with "
        f"keys from ATTENTION_MAP_LAYOUTS ({', '.join(ATTENTION_MAP_LAYOUTS)})"
    )


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("name", NAMES)
def test_maps_reproduce_the_output(name, data_format):
    layer = _built_layer(name, data_format)
    if not supports_attention_maps(layer):
        pytest.fail(f"attention {name!r} has no attention_maps(inputs) method")
    x = _input()
    fed = x if data_format == "channels_last" else np.transpose(x, (0, 3, 1, 2))
    output = keras.ops.convert_to_numpy(layer(fed))
    if data_format == "channels_first":
        output = np.transpose(output, (0, 2, 3, 1))
    maps = _numpy_maps(layer, fed)

    unknown = sorted(set(maps) - set(APPLY))
    assert not unknown, (
        f"attention {name!r} returns maps {unknown} of no known kind: add the kind to "
        "ATTENTION_MAP_LAYOUTS, to APPLY and SHAPES here, and to attnyolo.engine.explain"
    )
    reproduced = x
    for key, value in maps.items():
        # The same layout for either data format.
        assert value.shape == SHAPES[key], f"{name} {key}: {value.shape} != {SHAPES[key]}"
        assert np.isfinite(value).all(), f"{name} {key}: not finite"
        low, high = (None, None) if key in ADDITIVE else GATE_RANGE.get(name, (0.0, 1.0))
        assert low is None or value.min() >= low, f"{name} {key}: a gate below {low}"
        assert high is None or value.max() <= high, f"{name} {key}: a gate above {high}"
        assert value.std() > 1e-3, f"{name} {key}: a constant map tests nothing"
        reproduced = APPLY[key](reproduced, value)
    if maps_reproduce_output(layer):
        np.testing.assert_allclose(reproduced, output, rtol=1e-6, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("name", sorted(EXPECTED_KEYS))
def test_package_layers_return_their_documented_maps(name):
    maps = _numpy_maps(_built_layer(name, "channels_last"), _input())
    assert list(maps) == EXPECTED_KEYS[name]


@pytest.mark.parametrize("name", NAMES)
def test_maps_build_an_unbuilt_layer(name):
    layer = get_attention(name, **SMALL_INPUT_ARGS.get(name, {}))
    maps = _numpy_maps(layer, _input())
    assert layer.built
    if maps_reproduce_output(layer):
        np.testing.assert_allclose(
            _reapply(_input(), maps),
            keras.ops.convert_to_numpy(layer(_input())),
            rtol=1e-6,
            atol=1e-7,
        )


def _reapply(x, maps):
    for key, value in maps.items():
        x = APPLY[key](x, value)
    return x


def test_cbam_spatial_map_comes_from_the_channel_refined_features():
    layer = _built_layer("cbam", "channels_last")
    x = _input()
    maps = _numpy_maps(layer, x)
    refined = x * maps["channel"][:, None, None, :]
    direct = _numpy_maps(layer.spatial_attention, refined)["spatial"]
    np.testing.assert_array_equal(maps["spatial"], direct)
    on_raw_input = _numpy_maps(layer.spatial_attention, x)["spatial"]
    assert not np.allclose(maps["spatial"], on_raw_input)


def test_mixed_precision_maps_have_the_compute_dtype():
    layer = get_attention("cbam", dtype="mixed_float16")
    maps = layer.attention_maps(_input())
    for value in maps.values():
        assert keras.backend.standardize_dtype(value.dtype) == "float16"


def test_supports_attention_maps_on_a_plain_layer():
    assert not supports_attention_maps(keras.layers.Dense(3))
    assert supports_attention_maps(type(get_attention("se")))

"""Batch norm folded into convolutions: the folded copy computes what the detector computes in
inference mode, for every attention type, with the batch norms gone and the parameters each of
them held, and it saves and loads in safe mode. Batch-norm statistics are random, so the fold
does real arithmetic (fresh layers would fold to the identity)."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from attnyolo.layers.registry import attention_names
from attnyolo.models import YOLOv4Tiny
from attnyolo.models.batchnorm import batchnorm_layers
from attnyolo.models.fuse import DETECTOR_ATTRIBUTES, conv_batchnorm_pairs, fuse_batchnorm

# 19 Conv-BN pairs in YOLOv4-tiny; each loses gamma, beta, mean and variance (4 C) and gains a
# bias (C): 3 x (32 + 64 + 3 x (64 + 128 + 256) + (64 + 128 + 256) + 512 + 256 + 512 + 128 + 256)
# = 3 x 3104.
YOLO_FOLDED_PARAMS = 9_312
SIZE = (64, 96)


def randomize_batchnorm(model, seed=0):
    """Random statistics and affine weights in every batch norm, attention layers' included."""
    rng = np.random.default_rng(seed)
    for bn in model._flatten_layers(include_self=False):
        if not isinstance(bn, keras.layers.BatchNormalization):
            continue
        channels = bn.moving_mean.shape
        values = {
            "gamma": rng.uniform(0.5, 1.5, channels),
            "beta": rng.normal(0.0, 0.2, channels),
            "moving_mean": rng.normal(0.0, 0.2, channels),
            "moving_variance": rng.uniform(0.2, 2.0, channels),
        }
        for name, value in values.items():
            variable = getattr(bn, name)
            if variable is not None:  # no gamma without `scale`, no beta without `center`
                variable.assign(value.astype("float32"))


def outputs(model, x):
    return [keras.ops.convert_to_numpy(y) for y in model(x, training=False)]


def max_difference(a, b):
    return max(float(np.abs(u - v).max()) for u, v in zip(a, b, strict=True))


@pytest.mark.parametrize("attention", [None, *attention_names()])
def test_folded_detector_matches_the_detector(attention):
    model = YOLOv4Tiny(3, input_size=SIZE, attention=attention)
    randomize_batchnorm(model)
    fused = fuse_batchnorm(model)
    x = np.random.default_rng(1).random((2, *SIZE, 3), dtype=np.float32)
    expected = outputs(model, x)
    scale = max(float(np.abs(e).max()) for e in expected)
    assert max_difference(expected, outputs(fused, x)) < 1e-5 * max(scale, 1.0)

    assert len(conv_batchnorm_pairs(model)) == 19
    assert conv_batchnorm_pairs(fused) == []
    assert list(batchnorm_layers(fused)) == []  # attention layers keep their own, inside
    assert model.count_params() - fused.count_params() == YOLO_FOLDED_PARAMS
    for name in DETECTOR_ATTRIBUTES:
        assert getattr(fused, name) == getattr(model, name)
    assert fused.num_classes == 3


def test_folded_convolutions_keep_names_and_dtype_policies():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = YOLOv4Tiny(2, input_size=64)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    fused = fuse_batchnorm(model)
    backbone = fused.get_layer("backbone")
    for name in ("stem_conv1", "feat2_conv"):
        conv = backbone.get_layer(name)
        assert conv.use_bias and conv.dtype_policy.name == "mixed_bfloat16"
        assert conv.kernel.dtype == "float32"
    assert fused.get_layer("p5_conv").dtype_policy.name == "mixed_bfloat16"
    assert fused.get_layer("head32_out").dtype_policy.name == "float32"


def test_the_original_is_untouched_and_not_shared():
    model = YOLOv4Tiny(2, input_size=64, attention="se")
    randomize_batchnorm(model)
    before = [w.copy() for w in model.get_weights()]
    fused = fuse_batchnorm(model)
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    kept = {id(v) for v in model.weights}
    assert not any(id(v) in kept for v in fused.weights)
    np.testing.assert_array_equal(
        fused.get_layer("feat1_se").get_weights()[0], model.get_layer("feat1_se").get_weights()[0]
    )


def test_fold_arithmetic_and_what_is_left_alone():
    # conv(bias) -> BN(no center) folds; a conv read twice, a conv with an activation, a BN after
    # a non-conv layer and a BN on another axis stay as they are.
    rng = np.random.default_rng(2)
    inputs = keras.Input((6, 6, 3))
    folded = keras.layers.Conv2D(4, 3, padding="same", name="folded")(inputs)
    folded = keras.layers.BatchNormalization(center=False, epsilon=0.1, name="folded_bn")(folded)
    twice = keras.layers.Conv2D(4, 1, use_bias=False, name="twice")(folded)
    twice_bn = keras.layers.BatchNormalization(name="twice_bn")(twice)
    relu = keras.layers.Conv2D(4, 1, activation="relu", name="relu")(twice_bn)
    relu = keras.layers.BatchNormalization(name="relu_bn")(relu)
    pooled = keras.layers.AveragePooling2D(1, name="pool")(relu)
    pooled = keras.layers.BatchNormalization(name="pool_bn")(pooled)
    rows = keras.layers.Conv2D(4, 1, name="rows")(pooled)
    rows = keras.layers.BatchNormalization(axis=1, name="rows_bn")(rows)
    model = keras.Model(inputs, [keras.layers.Add()([rows, twice]), pooled])
    randomize_batchnorm(model)

    assert [(c.name, b.name) for c, b in conv_batchnorm_pairs(model)] == [("folded", "folded_bn")]
    fused = fuse_batchnorm(model)
    names = {layer.name for layer in fused.layers}
    assert "folded_bn" not in names
    assert {"twice_bn", "relu_bn", "pool_bn", "rows_bn"} <= names

    # NumPy reference for the one folded pair.
    conv, bn = model.get_layer("folded"), model.get_layer("folded_bn")
    w, b = conv.get_weights()
    gamma, mean, var = bn.get_weights()
    s = gamma / np.sqrt(var + 0.1)
    new_w, new_b = fused.get_layer("folded").get_weights()
    np.testing.assert_allclose(new_w, w * s, rtol=1e-6)
    np.testing.assert_allclose(new_b, (b - mean) * s, rtol=1e-5, atol=1e-6)

    x = rng.random((2, 6, 6, 3), dtype=np.float32)
    assert max_difference(outputs(model, x), outputs(fused, x)) < 1e-5


def test_folded_detector_saves_and_loads_in_safe_mode(tmp_path):
    model = YOLOv4Tiny(2, input_size=64, attention="cbam")
    randomize_batchnorm(model)
    fused = fuse_batchnorm(model)
    fused.save(tmp_path / "fused.keras")
    loaded = keras.saving.load_model(tmp_path / "fused.keras", safe_mode=True)
    x = np.random.default_rng(3).random((1, 64, 64, 3), dtype=np.float32)
    assert max_difference(outputs(fused, x), outputs(loaded, x)) == 0.0
    assert not hasattr(loaded, "class_names")  # the detector file is the one to keep


CHECK_BACKEND = """
import numpy as np
from attnyolo.models import YOLOv4Tiny
from attnyolo.models.fuse import fuse_batchnorm
from tests.models.test_fuse import max_difference, outputs, randomize_batchnorm
x = np.random.default_rng(1).random((2, 64, 96, 3), dtype=np.float32)
model = YOLOv4Tiny(3, input_size=(64, 96), attention="ca")  # batch norms inside attention too
randomize_batchnorm(model)
print(max_difference(outputs(model, x), outputs(fuse_batchnorm(model), x)))
"""


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_other_backends(backend):
    # The whole file also passes with KERAS_BACKEND=jax or torch; this keeps one check of each
    # in the TensorFlow run.
    pytest.importorskip(backend)
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run(
        [sys.executable, "-c", CHECK_BACKEND],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert float(done.stdout.strip().splitlines()[-1]) < 1e-5, done.stdout

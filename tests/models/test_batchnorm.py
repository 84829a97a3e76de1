"""Precise BN: the moving statistics become the mean of the batch statistics, checked against
NumPy, and a detector's inference-mode output then matches its training-mode output."""

import keras
import numpy as np
import pytest

from attnyolo.models import YOLOv4Tiny
from attnyolo.models.batchnorm import batchnorm_layers, recalibrate_batchnorm


def test_moving_statistics_are_the_mean_of_the_batch_statistics():
    rng = np.random.default_rng(0)
    inputs = keras.Input((5, 6, 3))
    bn = keras.layers.BatchNormalization(momentum=0.99)
    model = keras.Model(inputs, bn(inputs))
    batches = [
        rng.normal(loc=k, scale=1 + k, size=(4, 5, 6, 3)).astype("float32") for k in range(3)
    ]
    used = recalibrate_batchnorm(model, [(b, None) for b in batches])
    assert used == 3
    means = [b.mean(axis=(0, 1, 2)) for b in batches]
    variances = [b.var(axis=(0, 1, 2)) for b in batches]
    np.testing.assert_allclose(bn.moving_mean.numpy(), np.mean(means, 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.numpy(), np.mean(variances, 0), rtol=1e-5)
    assert bn.momentum == 0.99  # restored


def test_frozen_layers_keep_their_statistics():
    inputs = keras.Input((4, 4, 2))
    frozen, free = keras.layers.BatchNormalization(), keras.layers.BatchNormalization()
    model = keras.Model(inputs, free(frozen(inputs)))
    frozen.trainable = False
    recalibrate_batchnorm(model, [np.full((2, 4, 4, 2), 3.0, "float32")])
    np.testing.assert_array_equal(frozen.moving_mean.numpy(), 0.0)
    assert not np.allclose(free.moving_mean.numpy(), 0.0)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_detector_inference_matches_training_mode_on_the_batch():
    model = YOLOv4Tiny(3, input_size=64)
    # 21 convolutions, of which the two head outputs have a bias instead of batch norm.
    assert len(list(batchnorm_layers(model))) == 19
    x = np.random.default_rng(1).uniform(0, 1, (4, 64, 64, 3)).astype("float32")
    trained = [keras.ops.convert_to_numpy(h) for h in model(x, training=True)]
    stale = [keras.ops.convert_to_numpy(h) for h in model(x, training=False)]
    assert max(np.abs(a - b).max() for a, b in zip(trained, stale, strict=True)) > 0.1
    recalibrate_batchnorm(model, [x])
    fresh = [keras.ops.convert_to_numpy(h) for h in model(x, training=False)]
    for a, b in zip(trained, fresh, strict=True):
        # Only epsilon (1e-5, added to a batch variance vs the same moving variance) differs.
        np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-3)

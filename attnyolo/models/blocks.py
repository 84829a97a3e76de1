"""Darknet's Conv-BN-LeakyReLU block, shared by the backbone and the neck."""

from __future__ import annotations

import keras
from keras import layers

# Darknet's batch norm divides by sqrt(var + 1e-5); its rolling statistics use a 0.99 momentum.
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.99
LEAKY_SLOPE = 0.1


def conv_bn_leaky(x, filters: int, kernel_size: int, strides: int = 1, *, name: str):
    """Conv2D (no bias) + BatchNorm + LeakyReLU(0.1), padded as Darknet pads.

    Darknet pads `size // 2` on every side. For stride 1 that is Keras "same"; for stride 2 on an
    even input Keras "same" pads bottom/right only, whereas Darknet's first output pixel is centred
    on input pixel 0, so we pad one row/column at the top/left and convolve "valid".
    """
    if strides == 2:
        x = layers.ZeroPadding2D(((1, 0), (1, 0)), name=f"{name}_pad")(x)
        padding = "valid"
    else:
        padding = "same"
    x = layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        use_bias=False,
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.02),
        kernel_regularizer=None,
        name=name,
    )(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name=f"{name}_act")(x)

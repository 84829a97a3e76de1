"""FLOPs of a Keras model, counted the way Darknet counts them: 2 x multiply-adds of every
convolution and dense layer (element-wise work, pooling and activations are not counted).

Keras layers do not record the shapes that sub-layers of a composite layer (an attention block,
say) are called with, so the count runs one real forward pass on a zero image and records every
kernel-bearing layer's input and output shape as it is called. This works on any backend and for
any layer, including user-defined attention.
"""

from __future__ import annotations

import contextlib
import math

import keras
import numpy as np


@contextlib.contextmanager
def _record_calls(records: list):
    original = keras.layers.Layer.__call__

    def recording_call(layer, *args, **kwargs):
        outputs = original(layer, *args, **kwargs)
        kernel = getattr(layer, "kernel", None)
        if kernel is None:
            kernel = getattr(layer, "depthwise_kernel", None)
        if kernel is not None:
            records.append((layer, tuple(keras.ops.shape(outputs))))
        return outputs

    keras.layers.Layer.__call__ = recording_call
    try:
        yield
    finally:
        keras.layers.Layer.__call__ = original


def count_macs(model: keras.Model) -> dict[str, int]:
    """Multiply-adds per kernel-bearing layer for one image, by name (shared layers summed)."""
    shape = tuple(model.inputs[0].shape[1:])
    if any(s is None for s in shape):
        raise ValueError(f"count_macs needs a fixed input shape, got {shape}")
    records: list = []
    with _record_calls(records):
        model(np.zeros((1, *shape), "float32"), training=False)
    macs: dict[str, int] = {}
    for layer, out_shape in records:
        kernel_shape = tuple(
            (layer.kernel if hasattr(layer, "kernel") else layer.depthwise_kernel).shape
        )
        if isinstance(layer, keras.layers.Dense):
            positions = math.prod(out_shape[1:-1])
            value = positions * math.prod(kernel_shape)
        else:
            # A convolution's kernel is (k..., in / groups, out); each output position costs
            # k... x in / groups multiply-adds per output channel. Channels-first outputs put the
            # channel axis second; either way the positions are the product over spatial axes.
            channel_axis = (
                1 if getattr(layer, "data_format", "channels_last") == "channels_first" else -1
            )
            dims = list(out_shape[1:])
            del dims[channel_axis if channel_axis == -1 else 0]
            positions = math.prod(dims)
            value = positions * math.prod(kernel_shape)
        macs[layer.name] = macs.get(layer.name, 0) + int(value)
    return macs


def count_flops(model: keras.Model) -> int:
    """FLOPs (2 x multiply-adds) of convolutions and dense layers for one image."""
    return 2 * sum(count_macs(model).values())

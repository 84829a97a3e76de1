"""Small helpers shared by the attention layers."""

from __future__ import annotations

import keras
from keras import ops


def standardize_data_format(data_format: str | None) -> str:
    value = data_format or keras.config.image_data_format()
    if value not in ("channels_last", "channels_first"):
        raise ValueError(
            f"`data_format` must be 'channels_last', 'channels_first' or None, got {data_format!r}"
        )
    return value


def read_channels(layer: keras.layers.Layer, input_shape) -> int:
    """The channel count of `input_shape`; also pins it in `layer.input_spec`."""
    axis = -1 if layer.data_format == "channels_last" else 1
    channels = input_shape[axis]
    if channels is None:
        raise ValueError(
            f"{type(layer).__name__} needs a known channel dimension; got input shape "
            f"{tuple(input_shape)} with data_format={layer.data_format!r}"
        )
    layer.input_spec = keras.layers.InputSpec(ndim=4, axes={axis: channels})
    return channels


def check_positive(name: str, value: int, odd: bool = False) -> int:
    if int(value) != value or value < 1 or (odd and value % 2 == 0):
        kind = "a positive odd integer" if odd else "a positive integer"
        raise ValueError(f"`{name}` must be {kind}, got {value!r}")
    return int(value)


def apply_channel_gate(inputs, gate, data_format: str):
    """`inputs * gate` for a per-channel gate of shape (batch, C), in either data format."""
    # (batch, C) -> (batch, 1, 1, C) or (batch, C, 1, 1)
    insert_at = 1 if data_format == "channels_last" else -1
    return inputs * ops.expand_dims(ops.expand_dims(gate, insert_at), insert_at)


def make_divisible(value: float, divisor: int = 1) -> int:
    """`value` rounded to the nearest multiple of `divisor`, at least `divisor`; timm's
    `make_divisible(value, divisor, round_limit=0.)`, which sizes its reduced layers."""
    return max(divisor, int(value + divisor / 2) // divisor * divisor)

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


def make_divisible(
    value: float, divisor: int = 1, min_value: int | None = None, round_limit: float = 0.0
) -> int:
    """timm's `make_divisible`, which sizes its reduced layers: `value` rounded to the nearest
    multiple of `divisor`, at least `min_value` (default `divisor`), and rounded up by one
    `divisor` where rounding down lost more than `1 - round_limit` of it (timm's own default
    is `round_limit=0.9`; its attention modules mostly pass 0)."""
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < round_limit * value:
        rounded += divisor
    return rounded


def to_channels_last(inputs, data_format: str):
    """`inputs` in channels-last layout (a transpose for channels-first)."""
    return inputs if data_format == "channels_last" else ops.transpose(inputs, (0, 2, 3, 1))


def from_channels_last(outputs, data_format: str):
    """Channels-last `outputs` back in `data_format`."""
    return outputs if data_format == "channels_last" else ops.transpose(outputs, (0, 3, 1, 2))

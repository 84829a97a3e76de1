"""One registry of attention layers, and the factory that builds them from a spec."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

_REGISTRY: dict[str, type[keras.layers.Layer]] = {}

AttentionSpec = str | type | Callable[..., keras.layers.Layer] | None

# What an attention layer's `attention_maps(inputs)` may return, by key: the layout (the same for
# channels-last and channels-first layers) and how `call` applies it to `x` (channels-last
# notation). A layer applies its maps in the order it returns them, each to the previous result.
# A new kind of map gets a key here, in `tests/layers/test_attention_maps.py` and in
# `attnyolo.engine.explain`.
ATTENTION_MAP_LAYOUTS = {
    "channel": "(batch, C): x * channel[:, None, None, :]",
    "spatial": "(batch, H, W): x * spatial[:, :, :, None]",
    "height": "(batch, H, C): x * height[:, :, None, :]",
    "width": "(batch, W, C): x * width[:, None, :, :]",
    "full": "(batch, H, W, C): x * full",
    "residual": "(batch, H, W, C): x + residual",
}
# A layer whose output is not its input times (or plus) its maps (Selective Kernel's weights
# over branches, Shuffle Attention's gates before the channel shuffle, ...) sets the class
# attribute `maps_reproduce_output = False`: its maps, of the kinds above, then describe what it
# weights, and its `attention_maps` docstring says how they relate to the output.


def register_attention(name: str) -> Callable[[type], type]:
    """Registers an attention layer under `name` and makes it Keras-serializable.

    Example:

    ```python
    @register_attention("my_attn")
    class MyAttention(keras.layers.Layer):
        ...

    get_attention("my_attn")  # -> MyAttention()
    ```
    """
    key = name.lower()

    def decorator(cls: type) -> type:
        if key in _REGISTRY and _REGISTRY[key] is not cls:
            raise ValueError(f"Attention name {name!r} is already registered to {_REGISTRY[key]}")
        cls = keras.saving.register_keras_serializable(package="attnyolo")(cls)
        _REGISTRY[key] = cls
        cls.attention_name = key
        return cls

    return decorator


def attention_names() -> list[str]:
    """The registered attention names, sorted."""
    return sorted(_REGISTRY)


def supports_attention_maps(layer: keras.layers.Layer | type) -> bool:
    """Whether a layer (or layer class) can say what it weights: it has a callable
    `attention_maps(inputs) -> dict[str, tensor]` (keys in `ATTENTION_MAP_LAYOUTS`)."""
    return callable(getattr(layer, "attention_maps", None))


def maps_reproduce_output(layer: keras.layers.Layer | type) -> bool:
    """Whether applying the layer's maps to its input, in order, gives its output."""
    return bool(getattr(layer, "maps_reproduce_output", True))


def prepare_map_inputs(layer: keras.layers.Layer, inputs):
    """`inputs` as the layer's `call` would see them: a tensor of the layer's compute dtype, the
    layer built for its shape. For `attention_maps`, which runs outside `__call__`."""
    inputs = keras.ops.cast(inputs, layer.compute_dtype)
    if not layer.built:
        layer.build(tuple(inputs.shape))
    return inputs


def get_attention_class(name: str) -> type[keras.layers.Layer]:
    try:
        return _REGISTRY[name.lower()]
    except KeyError:
        raise ValueError(
            f"Unknown attention {name!r}. Valid names: {', '.join(attention_names())} (or None)."
        ) from None


def attention_spec_name(spec: AttentionSpec) -> str | None:
    """A name under which `spec` can be stored in a config and rebuilt by `get_attention`.

    Registry names stay as they are; a registered class gives its registry name; any other
    serializable class gives its Keras registered name (e.g. `"my_pkg>MyAttention"`).
    """
    if spec is None or (isinstance(spec, str) and spec.lower() in ("", "none")):
        return None
    if isinstance(spec, str):
        get_attention_class(spec)  # validates
        return spec.lower()
    if isinstance(spec, type):
        for name, cls in _REGISTRY.items():
            if cls is spec:
                return name
        return keras.saving.get_registered_name(spec)
    raise ValueError(
        f"Attention {spec!r} cannot be stored in a model file: pass a registered name or a "
        "Keras-serializable Layer class (decorate it with @register_attention)."
    )


def get_attention(spec: AttentionSpec, **kwargs: Any) -> keras.layers.Layer | None:
    """Builds an attention layer from a spec.

    Args:
        spec: a registered name (`"se"`, `"cbam"`, `"eca"`, `"ca"`, ...; case-insensitive), a
            `keras.layers.Layer` subclass, a factory returning a layer, or `None`/`"none"` for no
            attention (returns `None`).
        **kwargs: passed to the layer's constructor (e.g. `name=`, `reduction=`).

    Returns:
        A new layer instance, or `None`.
    """
    if spec is None or (isinstance(spec, str) and spec.lower() in ("", "none")):
        return None
    if isinstance(spec, str):
        if ">" in spec:  # a Keras registered name of a custom class stored in a config
            cls = keras.saving.get_registered_object(spec)
            if cls is None:
                raise ValueError(
                    f"Unknown attention {spec!r}: no Keras object registered under it."
                )
            return cls(**kwargs)
        return get_attention_class(spec)(**kwargs)
    if isinstance(spec, type):
        if not issubclass(spec, keras.layers.Layer):
            raise ValueError(f"Attention class {spec!r} is not a keras.layers.Layer subclass.")
        return spec(**kwargs)
    if callable(spec):
        layer = spec(**kwargs)
        if not isinstance(layer, keras.layers.Layer):
            raise ValueError(f"Attention factory {spec!r} returned {type(layer)}, not a Layer.")
        return layer
    raise ValueError(
        f"Attention spec must be a name, a Layer class, a factory or None; got {spec!r}. "
        f"Valid names: {', '.join(attention_names())}."
    )

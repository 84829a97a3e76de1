"""Adding attention layers to an existing functional model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from attnyolo.layers.registry import AttentionSpec, get_attention


def _spec_suffix(spec: AttentionSpec) -> str:
    if isinstance(spec, str):
        return spec.lower()
    # Registered classes carry their registry name; other classes and factories their own name.
    name = getattr(spec, "attention_name", None) or getattr(spec, "__name__", "").lower()
    return name if name.isidentifier() else "attention"  # e.g. "<lambda>"


def insert_attention(
    model: keras.Model, after: Sequence[str], attention: AttentionSpec, **kwargs: Any
) -> keras.Model:
    """A new functional model with an attention layer applied to the output of named layers.

    All original layers and their weights are shared with the new model, not copied; only the
    attention layers are new. Each new layer is named `f"{layer_name}_{attention_name}"` and built
    by `get_attention(attention, name=..., **kwargs)`. A layer called several times in the model
    gets one attention layer, shared by its calls. Only top-level layers can be named: nested
    models are treated as single layers.

    Args:
        model: a functional `keras.Model`.
        after: names of the layers whose outputs get attention; each must output one tensor.
        attention: an attention spec accepted by `get_attention` (name, Layer class, factory);
            `None` adds nothing.
        **kwargs: passed to every attention layer's constructor (not `name`).

    Returns:
        A functional `keras.Model` with the same inputs and output shapes as `model`.

    Raises:
        ValueError: if a name in `after` is not a layer of `model`, or a named layer does not
            output a single tensor.

    Example:

    ```python
    base = keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3))
    model = insert_attention(base, ["conv4_block6_out", "conv5_block3_out"], "se")
    ```
    """
    targets = list(dict.fromkeys(after))
    known = {layer.name for layer in model.layers}
    unknown = [name for name in targets if name not in known]
    if unknown:
        raise ValueError(
            f"Layers {unknown} are not in model {model.name!r}; the model's layers are: "
            f"{', '.join(layer.name for layer in model.layers)}"
        )
    suffix = _spec_suffix(attention)
    attention_layers: dict[str, keras.layers.Layer | None] = {}

    def call_function(layer, *args, **call_kwargs):
        outputs = layer(*args, **call_kwargs)
        if layer.name not in targets:
            return outputs
        if not isinstance(outputs, keras.KerasTensor):
            raise ValueError(
                f"Layer {layer.name!r} returns {type(outputs).__name__}, not a single tensor; "
                "attention can only follow layers with one output."
            )
        if layer.name not in attention_layers:
            attention_layers[layer.name] = get_attention(
                attention, name=f"{layer.name}_{suffix}", **kwargs
            )
        attention_layer = attention_layers[layer.name]
        return outputs if attention_layer is None else attention_layer(outputs)

    return keras.models.clone_model(
        model, clone_function=lambda layer: layer, call_function=call_function
    )

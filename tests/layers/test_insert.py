import keras
import numpy as np
import pytest

from attnyolo.layers import SqueezeExcitation, insert_attention

AFTER = ["conv4_block6_out", "conv5_block3_out"]


@pytest.fixture(scope="module")
def resnet():
    return keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=10)


def test_insert_se_into_resnet50(resnet):
    base_params = resnet.count_params()
    base_layers = list(resnet.layers)
    model = insert_attention(resnet, AFTER, "se")

    # 2 * C * (C // 16) for C = 1024 and 2048.
    assert model.count_params() == base_params + 2 * 1024 * 64 + 2 * 2048 * 128
    assert model.output_shape == resnet.output_shape
    for name, channels in zip(AFTER, (1024, 2048), strict=True):
        attention = model.get_layer(f"{name}_se")
        assert isinstance(attention, SqueezeExcitation)
        assert attention.count_params() == 2 * channels * (channels // 16)

    # Every original layer, and so every original weight, is shared rather than copied.
    new_layers = {id(layer) for layer in model.layers}
    assert all(id(layer) in new_layers for layer in base_layers if layer.weights)
    new_weights = {id(w) for w in model.weights}
    assert all(id(w) in new_weights for w in resnet.weights)
    assert len(model.layers) == len(base_layers) + 2

    # The original model is left as it was.
    assert resnet.count_params() == base_params
    assert list(resnet.layers) == base_layers

    # The attention layers sit on the data path: the next blocks read their outputs.
    inbound = {layer["name"]: str(layer["inbound_nodes"]) for layer in model.get_config()["layers"]}
    assert "conv4_block6_out_se" in inbound["conv5_block1_0_conv"]
    assert "conv4_block6_out_se" in inbound["conv5_block1_1_conv"]
    assert "conv5_block3_out_se" in inbound["avg_pool"]


def test_insert_with_kwargs_and_class():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(32, 3, name="conv_a")(inputs)
    x = keras.layers.Conv2D(32, 3, name="conv_b")(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))

    new = insert_attention(model, ["conv_a", "conv_b"], SqueezeExcitation, reduction=4)
    assert [layer.name for layer in new.layers][1:5] == [
        "conv_a",
        "conv_a_se",
        "conv_b",
        "conv_b_se",
    ]
    assert new.get_layer("conv_a_se").reduction == 4
    assert new.count_params() == model.count_params() + 2 * (2 * 32 * 8)

    x = np.random.default_rng(0).uniform(size=(2, 8, 8, 3)).astype("float32")
    base_out = keras.ops.convert_to_numpy(model(x))
    assert not np.allclose(keras.ops.convert_to_numpy(new(x)), base_out)
    factory = insert_attention(model, ["conv_b"], lambda **kw: SqueezeExcitation(2, **kw))
    assert factory.get_layer("conv_b_attention").reduction == 2
    same = insert_attention(model, ["conv_a"], None)
    assert same.count_params() == model.count_params()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(same(x)), base_out, rtol=1e-6)


def test_unknown_layer_names_are_listed(resnet):
    with pytest.raises(ValueError, match=r"\['nope', 'also_nope'\]"):
        insert_attention(resnet, ["conv4_block6_out", "nope", "also_nope"], "se")

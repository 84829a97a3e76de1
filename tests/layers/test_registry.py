import keras
import pytest

from attnyolo.layers import (
    CBAM,
    ECA,
    ChannelAttention,
    CoordinateAttention,
    CoordinateAttentionOriginal,
    SpatialAttention,
    SqueezeExcitation,
    attention_names,
    attention_spec_name,
    get_attention,
    register_attention,
    registry,
)

BUILT_IN = {
    "se": SqueezeExcitation,
    "cbam": CBAM,
    "cbam_channel": ChannelAttention,
    "cbam_spatial": SpatialAttention,
    "eca": ECA,
    "ca": CoordinateAttention,
    "ca_original": CoordinateAttentionOriginal,
}


def test_built_in_names():
    assert set(BUILT_IN) <= set(attention_names())
    assert attention_names() == sorted(attention_names())


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_get_by_name_case_insensitive(name):
    for spec in (name, name.upper()):
        layer = get_attention(spec, name="attn")
        assert type(layer) is BUILT_IN[name]
        assert layer.name == "attn"
    assert attention_spec_name(name.upper()) == name


def test_get_passes_kwargs():
    layer = get_attention("se", reduction=4, use_bias=True)
    assert (layer.reduction, layer.use_bias) == (4, True)


def test_get_by_class_and_factory():
    assert type(get_attention(ECA, kernel_size=3)) is ECA
    assert get_attention(ECA, kernel_size=3).kernel_size == 3
    layer = get_attention(lambda **kw: SqueezeExcitation(reduction=2, **kw), name="f")
    assert (type(layer), layer.reduction, layer.name) == (SqueezeExcitation, 2, "f")
    assert attention_spec_name(CBAM) == "cbam"


@pytest.mark.parametrize("spec", [None, "none", "None", ""])
def test_none_means_no_attention(spec):
    assert get_attention(spec) is None
    assert attention_spec_name(spec) is None


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="Unknown attention 'nope'") as info:
        get_attention("nope")
    for name in BUILT_IN:
        assert name in str(info.value)


def test_invalid_specs():
    with pytest.raises(ValueError, match="not a keras.layers.Layer"):
        get_attention(dict)
    with pytest.raises(ValueError, match="not a Layer"):
        get_attention(lambda: 3)
    with pytest.raises(ValueError, match="must be a name"):
        get_attention(3)


@pytest.fixture
def custom_attention():
    @register_attention("Test_Identity")
    class IdentityAttention(keras.layers.Layer):
        def call(self, inputs):
            return inputs

    yield IdentityAttention
    # Keep the registry loops of the other tests to the package's own layers.
    registry._REGISTRY.pop("test_identity")


def test_custom_class_registered_by_decorator(custom_attention):
    assert "test_identity" in attention_names()
    assert type(get_attention("TEST_IDENTITY")) is custom_attention
    assert attention_spec_name(custom_attention) == "test_identity"
    assert keras.saving.get_registered_name(custom_attention) == "attnyolo>IdentityAttention"
    with pytest.raises(ValueError, match="already registered"):
        register_attention("test_identity")(SqueezeExcitation)


def test_keras_registered_name_of_unregistered_class():
    @keras.saving.register_keras_serializable(package="attnyolo_tests")
    class Plain(keras.layers.Layer):
        pass

    name = attention_spec_name(Plain)
    assert name == "attnyolo_tests>Plain"
    assert type(get_attention(name)) is Plain

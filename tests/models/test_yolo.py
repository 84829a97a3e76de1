import keras
import numpy as np
import pytest

from attnyolo.models import (
    YOLOv4Tiny,
    count_flops,
    count_macs,
    load_detector,
    save_detector,
)

# Parameters that each default attention layer adds at feat1 (256 ch), feat2 (512) and the
# upsampled P5 branch (128), worked out by hand:
#   SE (r=16, no bias): 2 C^2 / 16            -> 8192 + 32768 + 2048          = 43,008
#   CBAM (r=8, no bias): 2 C^2 / 8 + 7*7*2    -> 16482 + 65634 + 4194         = 86,310
#   ECA: k = 5 for 128, 256 and 512 channels                                  = 15
#   CA (mip = max(8, C/32)): conv1 C*mip+mip, BN 4*mip, two convs mip*C+C each
#       -> 6696 + 25680 + 3368                                                = 35,744
ADDED = {"se": 43_008, "cbam": 86_310, "eca": 15, "ca": 35_744}
DARKNET_PARAMS = 6_062_814


def test_darknet_parameter_count():
    assert YOLOv4Tiny(80).count_params() == DARKNET_PARAMS


@pytest.mark.parametrize("attention", sorted(ADDED))
def test_attention_adds_exact_parameters(attention):
    model = YOLOv4Tiny(80, attention=attention)
    assert model.count_params() - DARKNET_PARAMS == ADDED[attention]
    names = {layer.name for layer in model.layers}
    assert {f"feat1_{attention}", f"feat2_{attention}", f"p5_upsample_{attention}"} <= names


@pytest.mark.parametrize("classes", [1, 3, 20])
def test_any_number_of_classes(classes):
    model = YOLOv4Tiny(classes, input_size=(64, 96))
    p5, p4 = model(np.zeros((2, 64, 96, 3), "float32"))
    assert tuple(p5.shape) == (2, 2, 3, 3 * (5 + classes))
    assert tuple(p4.shape) == (2, 4, 6, 3 * (5 + classes))
    # Only the two 1x1 output convs depend on the class count: (512 + 1) and (256 + 1) per output.
    assert model.count_params() == DARKNET_PARAMS - (513 + 257) * (255 - 3 * (5 + classes))


@pytest.mark.parametrize("size", [100, (416, 300), 0, (32,), -32])
def test_input_size_must_be_multiple_of_32(size):
    with pytest.raises(ValueError, match="multiple of 32"):
        YOLOv4Tiny(2, input_size=size)


def test_attention_positions_are_configurable():
    model = YOLOv4Tiny(2, input_size=64, attention="se", attention_positions=["feat2"])
    assert model.count_params() - YOLOv4Tiny(2, input_size=64).count_params() == 32_768
    with pytest.raises(ValueError, match="Unknown attention positions"):
        YOLOv4Tiny(2, input_size=64, attention="se", attention_positions=["neck"])


def test_unknown_attention_name_lists_valid_names():
    with pytest.raises(ValueError, match="cbam"):
        YOLOv4Tiny(2, attention="transformer")


def test_backbone_is_a_module():
    model = YOLOv4Tiny(2, input_size=64, attention="cbam")
    assert isinstance(model.backbone, keras.Model)
    trainable_before = {id(w) for w in model.trainable_weights}
    model.backbone.trainable = False
    backbone = {id(w) for w in model.backbone.weights}
    trainable_after = {id(w) for w in model.trainable_weights}
    assert backbone & trainable_before and not backbone & trainable_after
    assert trainable_after == trainable_before - backbone  # neck, heads and attention still train


@pytest.mark.parametrize("attention", [None, "cbam", "ca"])
def test_model_file_round_trip_in_safe_mode(tmp_path, attention):
    model = YOLOv4Tiny(
        ["cat", "dog"],
        input_size=(64, 96),
        attention=attention,
        xy_scale=1.05,
        anchors=[(5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)],
    )
    x = np.random.default_rng(0).random((1, 64, 96, 3), dtype=np.float32)
    path = save_detector(model, tmp_path / "m.keras")
    loaded = load_detector(path)
    assert isinstance(loaded, YOLOv4Tiny)
    assert loaded.class_names == ["cat", "dog"]
    assert loaded.input_size == (64, 96)
    assert loaded.attention == attention
    assert loaded.xy_scale == 1.05
    assert loaded.anchors[0] == (5.0, 6.0)
    for a, b in zip(model(x), loaded(x), strict=True):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), atol=1e-6
        )
    assert not list(tmp_path.glob(".*tmp*")), "temporary file left behind"


def test_mixed_precision_heads_are_float32():
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        model = YOLOv4Tiny(3, input_size=64, attention="cbam")
        outputs = model(np.zeros((1, 64, 64, 3), "float32"))
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert all(keras.backend.standardize_dtype(o.dtype) == "float32" for o in outputs)
    assert all(np.isfinite(keras.ops.convert_to_numpy(o)).all() for o in outputs)


def test_flops_match_darknet():
    # Darknet prints 6.910 BFLOPs for yolov4-tiny.cfg at 416x416 (2 x multiply-adds of convs).
    assert round(count_flops(YOLOv4Tiny(80)) / 1e9, 2) == 6.91


def test_flop_counter_by_hand():
    inputs = keras.Input((8, 10, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="c")(inputs)  # out 4x5x4
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(6, name="d")(x)
    macs = count_macs(keras.Model(inputs, x))
    assert macs == {"c": 4 * 5 * (3 * 3 * 3 * 4), "d": 4 * 6}


def test_flops_count_attention_sublayers():
    base = count_flops(YOLOv4Tiny(80, input_size=64))
    # SE at 64x64: two dense layers per position, no spatial extent: 2 C^2/16 MACs each position.
    se = count_flops(YOLOv4Tiny(80, input_size=64, attention="se"))
    assert se - base == 2 * 43_008

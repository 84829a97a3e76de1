"""Training configuration, learning rates and weight transfer (no training here)."""

import math
import re

import numpy as np
import pytest

from attnyolo.models import YOLOv4Tiny


@pytest.fixture(scope="module")
def train_module():
    return pytest.importorskip("attnyolo.engine.train", reason="training modules not complete")


def test_defaults_are_the_original_train_py(train_module):
    config = train_module.default_config()
    assert (
        config["freeze_epoch"],
        config["epochs"],
        config["freeze_batch_size"],
        config["batch_size"],
    ) == (50, 300, 32, 16)
    assert (config["mosaic"], config["mixup"], config["special_aug_ratio"]) == (0.5, 0.5, 0.7)
    assert config["optimizer"] == "sgd" and config["momentum"] == 0.937
    # Freeze_Train = False, and get_random_data's max_boxes=500.
    assert config["freeze_train"] is False and config["max_boxes"] == 500
    assert train_module.weight_decay_for(config) == ("l2", 5e-4)


def test_bad_new_settings_are_refused(train_module):
    with pytest.raises(ValueError, match="weight_decay_type must be one of null, l2, decoupled"):
        train_module.resolve_config(data="x", weight_decay_type="adamw")
    with pytest.raises(ValueError, match="max_boxes must be a positive integer or auto, got 0"):
        train_module.resolve_config(data="x", max_boxes=0)


def test_freezing_a_random_backbone_is_refused_unless_insisted(train_module):
    with pytest.raises(ValueError, match="frozen, random backbone for 50 epochs"):
        train_module.resolve_config(data="x", freeze_train=True)
    with pytest.raises(ValueError, match="w.keras: no such weights file"):
        train_module.resolve_config(data="x", freeze_train=True, weights="w.keras")
    assert train_module.resolve_config(data="x", freeze_train=True, freeze_from_scratch=True)


def test_config_layers_and_errors(train_module, tmp_path):
    (tmp_path / "c.yaml").write_text("data: somewhere\nepochs: 7\n")
    config = train_module.resolve_config(tmp_path / "c.yaml", epochs=9)
    assert config["data"] == "somewhere" and config["epochs"] == 9
    (tmp_path / "bad.yaml").write_text("data: x\nepoch: 3\n")
    with pytest.raises(ValueError, match=r"bad.yaml: unknown settings \['epoch'\]"):
        train_module.resolve_config(tmp_path / "bad.yaml")
    with pytest.raises(ValueError, match="No data set"):
        train_module.resolve_config()
    with pytest.raises(ValueError, match="optimizer must be"):
        train_module.resolve_config(data="x", optimizer="rmsprop")
    assert train_module.parse_override("input_size=[320, 416]") == ("input_size", [320, 416])
    # YAML 1.1 reads 8e-3 (no dot) as a string; it is the number people mean.
    assert train_module.parse_override("init_lr=8e-3") == ("init_lr", 0.008)
    assert train_module.parse_override("name=1e3run") == ("name", "1e3run")
    (tmp_path / "lr.yaml").write_text("data: x\nweight_decay: 5e-4\n")
    assert train_module.resolve_config(tmp_path / "lr.yaml")["weight_decay"] == 5e-4


def test_learning_rates_scale_and_clip_like_the_original(train_module):
    config = train_module.resolve_config(data="x")
    # SGD, init 1e-2, batch 16: 16 / 64 * 1e-2 = 2.5e-3; min 1e-4 * 16 / 64 = 2.5e-5 (limits
    # [5e-4, 5e-2] and [5e-6, 5e-4]).
    assert train_module.learning_rates(config, 16) == pytest.approx((2.5e-3, 2.5e-5))
    # Batch 2: 3.125e-4 is clipped up to 5e-4; min 3.125e-6 up to 5e-6.
    assert train_module.learning_rates(config, 2) == pytest.approx((5e-4, 5e-6))
    adam = dict(config, optimizer="adam")
    # Adam, init 1e-3, batch 64: 1e-3 (limit max 1e-3); min 1e-5 (limits [3e-6, 1e-5]).
    assert train_module.learning_rates(adam, 64) == pytest.approx((1e-3, 1e-5))
    # lr_clip false: as scaled. AdamW at 1.6e-2, batch 8: 2e-3, above the original's 1e-3.
    free = dict(adam, init_lr=1.6e-2, lr_clip=False)
    assert train_module.learning_rates(free, 8) == pytest.approx((2e-3, 2e-5))
    assert train_module.learning_rates(dict(free, lr_clip=True), 8) == pytest.approx((1e-3, 1e-5))
    with pytest.raises(ValueError, match="lr_clip must be one of"):
        train_module.resolve_config(data="x", lr_clip="no")


def test_warm_up_cosine_schedule_by_hand(train_module):
    lr_at = train_module.lr_at
    # total 100: warm-up min(max(5, 1), 3) = 3 epochs from 0.1 lr, quadratic; the last
    # min(max(5, 1), 15) = 5 epochs at min_lr; cosine between.
    assert lr_at(0, 1.0, 0.01, 100) == pytest.approx(0.1)
    assert lr_at(1, 1.0, 0.01, 100) == pytest.approx(0.9 * (1 / 3) ** 2 + 0.1)
    assert lr_at(3, 1.0, 0.01, 100) == pytest.approx(1.0)
    middle = 3 + (100 - 3 - 5) / 2
    assert lr_at(middle, 1.0, 0.01, 100) == pytest.approx(0.01 + 0.99 * 0.5)
    assert lr_at(95, 1.0, 0.01, 100) == 0.01
    # step: 10 steps from 1 to 0.01 -> decay 0.01 ** (1 / 9) per 10 epochs.
    assert lr_at(25, 1.0, 0.01, 100, "step") == pytest.approx(0.01 ** (2 / 9))


def test_transfer_weights_skips_only_mismatched_heads(train_module):
    source = YOLOv4Tiny(3, input_size=64)
    target = YOLOv4Tiny(5, input_size=64, attention="se")
    report = train_module.transfer_weights(target, source, "src")
    assert sorted(name for name, _ in report.skipped) == ["head16_out", "head32_out"]
    assert set(report.untouched) == {"feat1_se", "feat2_se", "p5_upsample_se"}
    np.testing.assert_array_equal(
        target.find_layer("stem_conv1").get_weights()[0],
        source.find_layer("stem_conv1").get_weights()[0],
    )
    assert math.isfinite(float(np.sum(target.get_layer("head16_out").get_weights()[0])))


def test_decoupled_weight_decay_applies_to_conv_kernels_only(train_module):
    model = YOLOv4Tiny(2, input_size=64, attention="cbam")
    excluded = {id(v) for v in train_module._decay_exclusions(model)}
    kernels = [v for v in model.trainable_variables if id(v) not in excluded]
    assert kernels and all(v.path.endswith("kernel") for v in kernels)
    assert not any("cbam" in v.path for v in kernels)
    assert len(kernels) == 21  # the 21 Darknet convolutions


def test_head_priors_set_the_initial_rates(train_module):
    import keras

    model = YOLOv4Tiny(6, input_size=256)
    train_module.init_head_priors(model)
    heads = model(np.zeros((1, 256, 256, 3), "float32"))
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    for head, stride in zip(heads, (32, 16), strict=True):
        raw = keras.ops.convert_to_numpy(head).reshape(-1, 11)
        # 8 objects per 640x640 image: 8 s^2 / 640^2 per cell and anchor.
        np.testing.assert_allclose(np.median(sigmoid(raw[:, 4])), 8 * stride**2 / 640**2, rtol=0.3)
        np.testing.assert_allclose(np.median(sigmoid(raw[:, 5:])), 0.6 / 5.01, rtol=0.3)


def test_new_settings_are_checked(train_module):
    with pytest.raises(ValueError, match="jit_compile must be one of auto, True, False"):
        train_module.resolve_config(data="x", jit_compile="fast")
    with pytest.raises(ValueError, match="bn_recalibration must be an integer >= 0"):
        train_module.resolve_config(data="x", bn_recalibration=-1)
    with pytest.raises(ValueError, match="distribute must be true, false or one of"):
        train_module.resolve_config(data="x", distribute="horovod")
    with pytest.raises(ValueError, match="close_mosaic must be an integer >= 0"):
        train_module.resolve_config(data="x", close_mosaic=2.5)
    assert train_module.resolve_config(data="x")["close_mosaic"] is None
    assert train_module.resolve_config(data="x", close_mosaic=10)["close_mosaic"] == 10


def test_resize_filter_setting(train_module):
    assert train_module.resolve_config(data="x")["resize_filter"] == "opencv"
    assert (
        train_module.resolve_config(data="x", resize_filter="pillow")["resize_filter"] == "pillow"
    )
    with pytest.raises(ValueError, match="unknown resize_filter 'bicubic'; choose from opencv"):
        train_module.resolve_config(data="x", resize_filter="bicubic")


@pytest.mark.parametrize(
    "attention, count",
    # 21 Darknet convolutions, + CBAM's 2 Dense and 1 Conv2D per block, + SE's 2 Dense, + CA's 3
    # Conv2D (Dense here); ECA's Conv1D is no Conv2D, in the original's Keras as here.
    [
        (None, 21),
        ("cbam", 21 + 3 * 3),
        ("se", 21 + 3 * 2),
        ("ca_original", 21 + 3 * 3),
        ("eca", 21),
    ],
)
def test_l2_covers_every_conv2d_and_dense_kernel_as_the_original(train_module, attention, count):
    model = YOLOv4Tiny(2, input_size=64, attention=attention)
    kernels = train_module.l2_kernels(model)
    assert len(kernels) == count and all(v.path.endswith("kernel") for v in kernels)
    assert len({id(v) for v in kernels}) == count


def _nesterov_sgd(w, grad_fn, lr, momentum, steps):
    """Keras 2's SGD(nesterov=True), as the original trains: v = m v - lr g; w += m v - lr g."""
    v = np.zeros_like(w)
    for _ in range(steps):
        g = grad_fn(w)
        v = momentum * v - lr * g
        w = w + momentum * v - lr * g
    return w


@pytest.mark.parametrize("kind", ["l2", "decoupled"])
def test_weight_decay_update_rules(train_module, kind):
    # With a detection loss of 0, only the decay moves the weights. The original's coupled L2
    # adds 5e-4 * sum(k^2) to the loss: gradient 1e-3 k, through Nesterov momentum. Decoupled
    # decay shrinks conv kernels by lr * 5e-4 per step before the (zero) gradient step.
    import keras

    model = YOLOv4Tiny(2, input_size=32, attention="se")
    model.set_loss(lambda boxes, classes, heads: (0.0 * keras.ops.sum(heads[0]), _zero_parts()))
    config = train_module.resolve_config(data="x", weight_decay_type=kind)
    lr, steps = 0.05, 3
    optimizer = train_module.make_optimizer(config, model, lr)
    model.compile(optimizer=optimizer, jit_compile=False)
    se_kernel = model.find_layer("feat1_se").squeeze.kernel
    conv_kernel = model.find_layer("stem_conv1").kernel
    before = [keras.ops.convert_to_numpy(v).astype(np.float64) for v in (conv_kernel, se_kernel)]
    x = np.zeros((1, 32, 32, 3), np.float32)
    y = {"boxes": np.zeros((1, 1, 4), np.float32), "classes": np.full((1, 1), -1, np.int32)}
    for _ in range(steps):
        model.train_on_batch(x, y)
    after = [keras.ops.convert_to_numpy(v).astype(np.float64) for v in (conv_kernel, se_kernel)]
    if kind == "l2":
        expected = [_nesterov_sgd(w, lambda w: 2 * 5e-4 * w, lr, 0.937, steps) for w in before]
    else:  # conv kernels shrink; the SE (Dense) kernel is not decayed
        expected = [before[0] * (1 - lr * 5e-4) ** steps, before[1]]
    for got, want in zip(after, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
    assert not np.allclose(after[0], before[0], rtol=1e-7, atol=0)


def _zero_parts():
    return {"box": 0.0, "obj": 0.0, "cls": 0.0}


@pytest.mark.parametrize(
    "spec, expected",
    [
        (None, (None, {})),
        ("none", (None, {})),
        ("cbam", ("cbam", {})),
        ("CBAM:reduction=16,kernel_size=3", ("cbam", {"reduction": 16, "kernel_size": 3})),
        ({"type": "se", "reduction": 4}, ("se", {"reduction": 4})),
    ],
)
def test_attention_with_options(spec, expected):
    from attnyolo.engine.config import parse_attention

    assert parse_attention(spec) == expected


@pytest.mark.parametrize(
    "spec, message",
    [
        ("cbam:reductio=16", "unknown option(s) reductio; it takes reduction"),
        ("cbam:16", "key=value pairs"),
        ("transformer", "Unknown attention 'transformer'"),
        ({"reduction": 4}, "needs a `type` key"),
    ],
)
def test_bad_attention_specs_are_named(spec, message):
    from attnyolo.engine.config import parse_attention

    with pytest.raises(ValueError, match=re.escape(message)):
        parse_attention(spec)


def test_attention_options_and_positions_reach_the_model(tmp_path):
    from attnyolo.engine.config import resolve_config
    from attnyolo.engine.train import build_model

    config = resolve_config(
        None,
        data=str(tmp_path),
        attention="cbam:reduction=4",
        attention_positions=["feat1"],
    )
    model = build_model(config, ["a", "b"])
    assert model.attention == "cbam" and model.attention_kwargs == {"reduction": 4}
    assert model.attention_positions == ("feat1",)
    assert [layer.name for layer in model.layers if layer.name.endswith("_cbam")] == ["feat1_cbam"]
    with pytest.raises(ValueError, match="attention_positions"):
        resolve_config(None, data=str(tmp_path), attention_positions=["head"])


def test_ota_assignment_and_objectness_losses_reach_the_loss(tmp_path):
    from attnyolo.engine.config import resolve_config
    from attnyolo.engine.train import build_model, loss_for

    config = resolve_config(
        None, data=str(tmp_path), input_size=64, assignment="ota", obj_loss="vfl"
    )
    model = build_model(config, ["a", "b"])
    assert model.xy_scale == 2.0  # SimOTA picks among YOLOv5's candidates: neighbour cells
    loss = loss_for(config, model)
    assert (loss.assignment, loss.obj_loss, loss.xy_scale) == ("ota", "vfl", 2.0)
    with pytest.raises(ValueError, match="obj_loss must be one of"):
        resolve_config(None, data=str(tmp_path), obj_loss="focal")
    with pytest.raises(ValueError, match="assignment must be one of"):
        resolve_config(None, data=str(tmp_path), assignment="tal")

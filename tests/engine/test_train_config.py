"""Training configuration, learning rates and weight transfer (no training here)."""

import math

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


def test_weight_decay_applies_to_conv_kernels_only(train_module):
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
    with pytest.raises(ValueError, match="jit_compile must be auto, true or false"):
        train_module.resolve_config(data="x", jit_compile="fast")
    with pytest.raises(ValueError, match="bn_recalibration is a number of batches"):
        train_module.resolve_config(data="x", bn_recalibration=-1)
    with pytest.raises(ValueError, match="distribute must be true, false or one of"):
        train_module.resolve_config(data="x", distribute="horovod")

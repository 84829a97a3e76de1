"""The plan of a run: recipes, phases, the time budget's clock and the weight average, each by
itself (no training here)."""

import math

import numpy as np
import pytest

from attnyolo.engine.config import default_config, recipe_config, resolve_config
from attnyolo.engine.schedule import (
    Phase,
    TimeBudget,
    WeightAverage,
    lr_at,
    lr_at_progress,
    plan_phases,
)


def test_original_recipe_is_the_defaults():
    # original.yaml only names the original's values, which are train.yaml's defaults.
    defaults = default_config()
    for key, value in recipe_config("original").items():
        assert defaults[key] == value, key


def test_fast_recipe_layers_under_user_settings(tmp_path):
    config = resolve_config(recipe="fast", data="x", batch_size=8)
    assert config["recipe"] == "fast" and config["ema"] is True and config["input_size"] == 320
    assert config["batch_size"] == 8  # an override beats the recipe
    (tmp_path / "mine.yaml").write_text("recipe: fast\ndata: x\nmosaic: 0.25\n")
    from_file = resolve_config(tmp_path / "mine.yaml")
    assert from_file["optimizer"] == "adamw" and from_file["mosaic"] == 0.25
    assert resolve_config(data="x")["recipe"] is None
    with pytest.raises(ValueError, match="unknown recipe 'slow'; choose from original, fast"):
        resolve_config(recipe="slow", data="x")


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"classes": 2}, "classes is a class-names file or a list of names, got 2"),
        ({"time": 0}, "time must be a number >= 0.1"),
        ({"save_minutes": -1}, "save_minutes must be a number >= 0"),
        ({"mosaic": 1.5}, r"mosaic must lie in \[0, 1\]"),
        ({"loss_balance": [1.0]}, "loss_balance is the objectness weight of the two heads"),
        ({"objectness_target": "giou"}, "objectness_target must be one of one, iou"),
        ({"epochs": 0}, "epochs must be an integer >= 1"),
        ({"anchors": "nowhere.txt"}, "nowhere.txt: no such anchors file"),
    ],
)
def test_bad_settings_are_refused_before_anything_runs(overrides, message):
    with pytest.raises(ValueError, match=message):
        resolve_config(data="x", **overrides)


def test_phases_frozen_then_unfrozen_from_any_start():
    config = {**default_config(), "freeze_train": True, "freeze_epoch": 5, "epochs": 12}
    assert plan_phases(config, 0) == [
        Phase("frozen", 0, 5, config["freeze_batch_size"]),
        Phase("unfrozen", 5, 12, config["batch_size"]),
    ]
    assert plan_phases(config, 7) == [Phase("unfrozen", 7, 12, config["batch_size"])]
    assert plan_phases(config, 12) == []
    assert plan_phases({**config, "freeze_train": False}, 2)[0].begin == 2
    assert plan_phases({**config, "init_epoch": 3}, 0)[0] == Phase("frozen", 3, 5, 32)


def test_progress_schedule_has_the_epoch_schedules_shape():
    lr, low = 1e-3, 1e-5
    assert lr_at_progress(0.0, lr, low) == pytest.approx(1e-4)  # warm-up from 0.1 x lr
    assert lr_at_progress(0.05, lr, low) == pytest.approx(lr)
    assert lr_at_progress(0.5, lr, low) == pytest.approx(low + 0.5 * (lr - low))
    assert lr_at_progress(0.96, lr, low) == low == lr_at_progress(1.5, lr, low)
    # Over 60 epochs (3 warm-up, 3 flat: 5 % each), the epoch schedule is the same curve.
    for epoch in (1, 2, 10, 30, 41, 57):
        assert lr_at(epoch, lr, low, 60) == pytest.approx(lr_at_progress(epoch / 60, lr, low))


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_time_budget_counts_training_only_and_keeps_a_reserve():
    clock = FakeClock()
    budget = TimeBudget(10, started=clock.now, clock=clock)  # 600 s
    clock.now += 20  # setup
    budget.resume()
    clock.now += 100
    budget.images = 1000
    budget.pause()
    clock.now += 30  # a checkpoint: not training
    budget.resume()
    assert budget.seconds_trained() == pytest.approx(100)
    assert budget.elapsed() == pytest.approx(150)
    budget.reserve = 10
    # 600 s less 50 s of overhead so far and 10 s kept back for the end.
    assert budget.training_seconds() == pytest.approx(540)
    assert budget.progress() == pytest.approx(100 / 540)
    assert budget.rate() == pytest.approx(10.0)
    # 10 images/s for the 440 s left, 500-image epochs: 8.8 more after 2 done.
    assert budget.estimate_epochs(500, 2) == math.ceil(2 + 8.8)
    clock.now += 440
    assert budget.expired() and budget.progress() == 1.0
    # A resumed run brings what it used before.
    again = TimeBudget(10, started=0.0, used=590.0, trained=570.0, clock=lambda: 1.0)
    assert again.elapsed() == pytest.approx(591.0) and again.expired()


def test_first_epoch_is_left_out_of_the_rate():
    clock = FakeClock()
    budget = TimeBudget(10, clock=clock)
    budget.resume()
    clock.now += 50  # compiling: 100 images in 50 s
    budget.images = 100
    budget.pause()
    budget.mark_epoch()
    budget.resume()
    clock.now += 10
    budget.images = 300  # then 20 images/s
    assert budget.rate() == pytest.approx(20.0)


class TinyModel:
    """Stands in for a Keras model: what `WeightAverage` uses of one."""

    def __init__(self, weights):
        self.weights = [np.array(w, np.float32) for w in weights]

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        self.weights = [np.array(w, np.float32) for w in weights]


def test_weight_average_is_yolov5s_model_ema():
    rng = np.random.default_rng(0)
    model = TinyModel([rng.normal(size=(3, 2)), rng.normal(size=4)])
    ema = WeightAverage(model, momentum=0.9999, tau=2000)
    # YOLOv5 ModelEMA: d = decay * (1 - exp(-updates / tau)); v = d * v + (1 - d) * w.
    reference = [w.astype(np.float64) for w in model.get_weights()]
    for step in range(1, 6):
        model.set_weights([w + rng.normal(size=w.shape) for w in model.get_weights()])
        ema.update(model)
        d = 0.9999 * (1 - math.exp(-step / 2000))
        reference = [d * v + (1 - d) * w for v, w in zip(reference, model.weights, strict=True)]
    for average, expected in zip(ema.average, reference, strict=True):
        np.testing.assert_allclose(average, expected, rtol=1e-5, atol=1e-6)
    # The first updates follow the weights: after 5 of tau 2000, 99.75 % is the new weights.
    assert ema.decay() == pytest.approx(0.9999 * (1 - math.exp(-5 / 2000)))
    own = model.get_weights()
    with ema.swapped(model) as swapped:
        np.testing.assert_array_equal(swapped.weights[0], ema.average[0])
    np.testing.assert_array_equal(model.weights[0], own[0])
    restored = WeightAverage(model)
    assert restored.load_state(ema.state()) and restored.updates == 5
    assert not WeightAverage(TinyModel([np.zeros(2)])).load_state(ema.state())


def test_yolov5_loss_weights_for_two_heads():
    from attnyolo.engine.train import loss_weights
    from attnyolo.models import YOLOv4Tiny

    model = YOLOv4Tiny(6, input_size=320)
    config = resolve_config(recipe="fast", data="x")
    # YOLOv5 train.py: hyp box 0.05, obj 1.0, cls 0.5; x 3 / nl, obj x (imgsz / 640)^2,
    # cls x nc / 80.
    assert loss_weights(config, model) == pytest.approx(
        {"box_weight": 0.075, "obj_weight": 0.375, "cls_weight": 0.05625}
    )
    original = resolve_config(data="x")
    assert loss_weights(original, model) == {
        "box_weight": 0.05,
        "obj_weight": None,
        "cls_weight": None,
    }
    assert loss_weights({**original, "cls_weight": 0.2}, model)["cls_weight"] == 0.2


def test_weight_average_every_k_steps_decays_by_the_product_of_their_decays():
    rng = np.random.default_rng(1)
    model = TinyModel([rng.normal(size=(3, 2))])
    start = model.get_weights()[0].astype(np.float64)
    ema = WeightAverage(model, momentum=0.9999, tau=20)
    ema.update(model, 5)  # weights unchanged: the average stays
    np.testing.assert_allclose(ema.average[0], start, rtol=1e-6)
    model.set_weights([start + 1.0])
    ema.update(model, 3)
    # Steps 6, 7, 8 at once: v = D * v + (1 - D) * w with D the product of their decays.
    product = math.prod(0.9999 * (1 - math.exp(-u / 20)) for u in (6, 7, 8))
    expected = product * start + (1 - product) * (start + 1.0)
    np.testing.assert_allclose(ema.average[0], expected, rtol=1e-5)
    assert ema.updates == 8
    # One step at a time with unchanged weights gives the same as k at once.
    one = WeightAverage(TinyModel([start]), momentum=0.9999, tau=20, updates=5)
    for _ in range(3):
        one.update(model)
    np.testing.assert_allclose(one.average[0], ema.average[0], rtol=1e-5)

"""Training end to end on a tiny synthetic set: run folder, checkpoints, resume after a kill,
and a non-finite loss that stops the run without touching the last good checkpoint."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from attnyolo.data.synthetic import generate_shapes
from attnyolo.engine import train as train_module
from attnyolo.engine.train import RunCallback, TrainingError, resolve_config, train
from attnyolo.models import load_detector

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return generate_shapes(tmp_path_factory.mktemp("data") / "shapes", num_images=40, seed=3)


def config_for(shapes, tmp_path, defaults=(), **overrides):
    """A small run's settings; the keys in `defaults` keep train.yaml's defaults."""
    settings = dict(
        data=str(shapes),
        classes=str(shapes / "classes.txt"),
        input_size=64,
        epochs=3,
        # A frozen first phase, so that resuming crosses phases; no weights here, hence insist.
        freeze_train=True,
        freeze_from_scratch=True,
        freeze_epoch=1,
        freeze_batch_size=8,
        batch_size=8,
        optimizer="adam",
        eval_period=1,
        save_period=2,
        train_split="train",
        val_split="val",
        output=str(tmp_path),
        workers=1,
    )
    settings.update(overrides)
    return resolve_config(**{k: v for k, v in settings.items() if k not in defaults})


def test_run_folder_checkpoints_and_resume_after_a_kill(shapes, tmp_path, monkeypatch):
    original = RunCallback.on_epoch_begin

    def killed_in_third_epoch(self, epoch, logs=None):
        if epoch == 2:
            raise KeyboardInterrupt  # the process dies during epoch 3
        return original(self, epoch, logs)

    monkeypatch.setattr(RunCallback, "on_epoch_begin", killed_in_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(config_for(shapes, tmp_path, name="run"), verbose=0)
    run = tmp_path / "run"
    state = json.loads((run / "state.json").read_text())
    assert state["epoch"] == 2 and state["phase"] == "unfrozen"
    assert {p.name for p in (run / "weights").iterdir()} == {
        "last.keras",
        "best.keras",
        "epoch_002.keras",
    }
    monkeypatch.setattr(RunCallback, "on_epoch_begin", original)
    train(resume=run, verbose=0)
    state = json.loads((run / "state.json").read_text())
    assert [row["epoch"] for row in state["history"]] == [1, 2, 3]
    rows = (run / "log.csv").read_text().splitlines()
    assert rows[0].split(",")[0] == "epoch" and len(rows) == 4
    assert all("val_map50" in row for row in state["history"])
    assert (run / "loss.png").stat().st_size and (run / "map.png").stat().st_size
    model = load_detector(run / "weights" / "last.keras")
    assert model.class_names == (shapes / "classes.txt").read_text().split()
    assert model.input_size == (64, 64)
    assert model.letterbox is True  # the geometry it was trained with, for prediction
    assert not list(run.rglob(".*tmp*")), "a temporary file was left behind"


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(shapes, tmp_path, monkeypatch, capsys):
    run = train(
        config_for(
            shapes,
            tmp_path,
            defaults=("freeze_train", "freeze_from_scratch"),
            name="nan",
            epochs=2,
            save_period=0,
        ),
        verbose=0,
    )
    last = (run / "weights" / "last.keras").read_bytes()
    # No weights and the default freeze_train: nothing frozen, and the run says so.
    assert "no weights: training from scratch, nothing frozen" in capsys.readouterr().out
    make_loss = train_module.loss_for

    def poisoned(config, model):
        loss = make_loss(config, model)

        def call(boxes, classes, heads):
            total, parts = loss(boxes, classes, heads)
            return total * np.nan, parts

        return call

    monkeypatch.setattr(train_module, "loss_for", poisoned)
    state = json.loads((run / "state.json").read_text())
    config = json.loads(json.dumps(state))  # untouched copy for the assertion below
    (run / "config.yaml").write_text(
        (run / "config.yaml").read_text().replace("epochs: 2", "epochs: 3")
    )
    with pytest.raises(TrainingError, match="the loss is nan.*last good checkpoint"):
        train(resume=run, verbose=0)
    assert (run / "weights" / "last.keras").read_bytes() == last
    assert json.loads((run / "state.json").read_text())["epoch"] == config["epoch"] == 2


def test_configuration_mistakes_fail_at_once(shapes, tmp_path):
    with pytest.raises(ValueError, match="Unknown attention"):
        train(config_for(shapes, tmp_path, attention="transformer", name="a"), verbose=0)
    with pytest.raises(ValueError, match="multiple of 32"):
        train(config_for(shapes, tmp_path, input_size=100, name="b"), verbose=0)
    with pytest.raises(ValueError, match="missing.txt"):
        train(
            config_for(shapes, tmp_path, classes=str(tmp_path / "missing.txt"), name="c"), verbose=0
        )


def test_bad_samples_are_reported_and_training_goes_on(shapes, tmp_path):
    """A VOC set with every kind of bad sample trains through; each is named in a warning."""
    import shutil
    import warnings

    from attnyolo.data import DatasetWarning

    root = tmp_path / "VOC2007"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True)
    good = (shapes / "ImageSets" / "Main" / "train.txt").read_text().split()[:12]
    for stem in good:
        shutil.copy(shapes / "JPEGImages" / f"{stem}.jpg", root / "JPEGImages")
        shutil.copy(shapes / "Annotations" / f"{stem}.xml", root / "Annotations")
    xml = (shapes / "Annotations" / f"{good[0]}.xml").read_text()
    first_name = xml.split("<name>")[1].split("</name>")[0]

    def bad(stem, annotation, image=True):
        if image:
            shutil.copy(
                shapes / "JPEGImages" / f"{good[0]}.jpg", root / "JPEGImages" / f"{stem}.jpg"
            )
        if annotation is not None:
            (root / "Annotations" / f"{stem}.xml").write_text(annotation)

    jpeg = (shapes / "JPEGImages" / f"{good[1]}.jpg").read_bytes()
    bad("truncated", xml)
    (root / "JPEGImages" / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    bad("missing_image", xml, image=False)
    bad("malformed", "<annotation><object><name>")
    bad("unknown_class", xml.replace(f"<name>{first_name}</name>", "<name>unicorn</name>", 1))

    def first_box(x1, y1, x2, y2):
        box = (
            f"<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox>"
        )
        return re.sub(r"<bndbox>.*?</bndbox>", box, xml, count=1)

    bad("outside", first_box(-20, 10, 9999, 60))
    bad("zero_area", first_box(40, 40, 39, 90))  # VOC pixels 40..39: no width
    bad("no_boxes", xml.split("<object>")[0] + "</annotation>")
    stems = good + [
        "truncated",
        "missing_image",
        "malformed",
        "unknown_class",
        "outside",
        "zero_area",
        "no_boxes",
    ]
    (root / "ImageSets" / "Main" / "train.txt").write_text("\n".join(stems) + "\n")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = train(
            config_for(
                shapes,
                tmp_path,
                data=str(root),
                name="bad",
                epochs=2,
                freeze_train=False,
                eval_period=0,
                save_period=0,
                val_split=None,
                mosaic=0.5,
                mixup=0.5,
            ),
            verbose=0,
        )
    reports = [w.message for w in caught if issubclass(w.category, DatasetWarning)]
    named = {(r.fault, Path(r.file).stem) for r in reports}
    for fault, stem in [
        ("missing image", "missing_image"),
        ("bad annotation", "malformed"),
        ("unknown class", "unknown_class"),
        ("box clipped", "outside"),
        ("box dropped", "zero_area"),
        ("no boxes", "no_boxes"),
        ("unreadable image", "truncated"),
    ]:
        assert (fault, stem) in named, (fault, stem, sorted(named))
    state = json.loads((run / "state.json").read_text())
    assert state["epoch"] == 2 and all(np.isfinite(row["loss"]) for row in state["history"])


class BatchClock:
    """A timed run's clock that moves only when a batch ends, by `seconds` each: the budget's
    arithmetic is tested without the wall clock (a loaded CI machine would move that)."""

    def __init__(self, monkeypatch, seconds: float):
        self.now, self.batches = 1000.0, 0
        monkeypatch.setattr(train_module.schedule, "monotonic", lambda: self.now)
        original = RunCallback.on_train_batch_end

        def batch_end(callback, batch, logs=None):
            self.now += seconds
            self.batches += 1
            return original(callback, batch, logs)

        monkeypatch.setattr(RunCallback, "on_train_batch_end", batch_end)


def test_a_timed_run_ends_on_time_with_a_complete_run_folder(shapes, tmp_path, capsys, monkeypatch):
    clock = BatchClock(monkeypatch, seconds=1.5)
    minutes = 0.5
    run = train(
        config_for(
            shapes,
            tmp_path,
            name="timed",
            recipe="fast",
            time=minutes,
            input_size=64,
            batch_size=8,
            freeze_train=False,
            save_period=0,
            save_minutes=0.1,
        ),
        verbose=0,
    )
    # Ends on time by its clock, not early: every second of it was a batch (the end's reserve,
    # a few seconds, is what is left).
    state = json.loads((run / "state.json").read_text())
    assert state["trained_seconds"] == pytest.approx(1.5 * clock.batches)
    assert 0.8 * 60 * minutes <= state["seconds"] <= 60 * minutes and state["epoch"] >= 2
    assert state["epochs_planned"] >= state["epoch"]
    names = {p.name for p in (run / "weights").iterdir()}
    assert {"last.keras", "best.keras", "minute_000.10.keras"} <= names
    # A checkpoint for each 0.1 minute (4 batches) of training time, none beyond what was trained.
    minutes_saved = sorted(float(n[7:-6]) for n in names if n.startswith("minute_"))
    assert minutes_saved == pytest.approx([0.1 * k for k in range(1, len(minutes_saved) + 1)])
    assert clock.batches // 4 - 1 <= len(minutes_saved) <= clock.batches // 4
    assert minutes_saved[-1] <= state["trained_seconds"] / 60 + 1e-9
    assert (run / "evaluation" / "report.md").is_file()  # the last validation, written
    assert {"model", "optimizer", "ema", "state"} <= {
        k.split(".")[0] for k in np.load(run / "resume.npz").files
    }
    out = capsys.readouterr().out
    assert f"time budget {minutes:g} min: ended after" in out
    assert "weight average (EMA)" in out


def test_a_timed_run_freezes_for_its_share_of_the_budget(shapes, tmp_path, capsys, monkeypatch):
    # freeze_epoch 1 of 3 epochs: a third of the training time frozen, wherever the epochs fall
    # (before, the frozen phase held freeze_epoch epochs, and a long freeze_epoch the budget).
    BatchClock(monkeypatch, seconds=1.0)  # each batch one second of the budget
    phases = []
    original = RunCallback.on_epoch_end

    def epoch_end(callback, epoch, logs=None):
        phases.append((callback.phase.name, callback.budget.progress()))
        return original(callback, epoch, logs)

    monkeypatch.setattr(RunCallback, "on_epoch_end", epoch_end)
    run = train(
        config_for(shapes, tmp_path, name="frozen", time=0.5, eval_period=0, freeze_epoch=1),
        verbose=0,
    )
    names = [name for name, _ in phases]
    frozen = names.count("frozen")
    assert names == ["frozen"] * frozen + ["unfrozen"] * (len(names) - frozen)
    assert frozen >= 1 and len(names) > frozen
    # The frozen phase ends at the first epoch end past a third of the training time.
    assert phases[frozen - 1][1] >= 1 / 3 and (frozen == 1 or phases[frozen - 2][1] < 1 / 3)
    out = capsys.readouterr().out
    assert "frozen phase: from epoch 1 for 33% of the 0.5-min budget" in out
    assert f"unfrozen phase: from epoch {frozen + 1} until 0.5 min" in out
    assert json.loads((run / "state.json").read_text())["phase"] == "unfrozen"


def test_train_gives_back_the_process_state(shapes, tmp_path):
    import random

    import cv2
    import keras

    keras.utils.set_random_seed(1234)
    cv2.setNumThreads(3)
    expected = (
        random.random(),
        np.random.random(),
        float(keras.ops.convert_to_numpy(keras.random.uniform(()))),
    )
    keras.utils.set_random_seed(1234)
    policy = keras.config.dtype_policy().name
    train(config_for(shapes, tmp_path, name="state", epochs=1, seed=99), verbose=0)
    # The caller's random streams go on as if train() had not run; its OpenCV threads stay.
    assert (
        random.random(),
        np.random.random(),
        float(keras.ops.convert_to_numpy(keras.random.uniform(()))),
    ) == expected
    assert cv2.getNumThreads() == 3 and keras.config.dtype_policy().name == policy


def test_checkpoint_interval_spaces_out_last_keras_but_not_the_resume_file(
    shapes, tmp_path, monkeypatch
):
    written = []
    real_save, real_resume = train_module.save_detector, train_module.write_resume

    def save(model, path):
        written.append(Path(path).name)
        return real_save(model, path)

    def resume(run, model, ema, state):
        written.append(f"resume.npz@{state.epoch}")
        return real_resume(run, model, ema, state)

    monkeypatch.setattr(train_module, "save_detector", save)
    monkeypatch.setattr(train_module, "write_resume", resume)
    config = config_for(
        shapes, tmp_path, name="spaced", checkpoint_interval=3600, eval_period=0, save_period=0
    )
    run = train(config, verbose=0)
    # last.keras when there is none yet (epoch 1) and at the end (epoch 3), not in between;
    # the commit point every epoch.
    assert [w for w in written if w == "last.keras"] == ["last.keras", "last.keras"]
    assert [w for w in written if w.startswith("resume")] == [f"resume.npz@{e}" for e in (1, 2, 3)]
    assert written.index("resume.npz@2") < written.index("last.keras", 1)
    assert json.loads((run / "state.json").read_text())["epoch"] == 3

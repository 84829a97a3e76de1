"""`attnyolo train`: the original yolov4-tiny-keras training workflow, configured from the edge.

The pieces: settings checked once (`engine/config.py`, with the `original` and `fast` recipes),
a plan of phases and the schedule (`engine/schedule.py`), one `RunState` handed to the one
callback that does each epoch's bookkeeping, and the loss built in `loss_for`.

A run folder holds everything: `config.yaml` (resolved), `weights/{last,best,epoch_NNN,
minute_NNN}.keras` (full detector files with their metadata; with `ema`, the weight average),
`resume.npz` (what `--resume` needs, in one file: the model's own weights, the optimizer's
state, the weight average and the run's state), `state.json` (that state, to read), `log.csv`,
`loss.png`, `map.png`, the last validation's `evaluation/` and TensorBoard logs. Every file is
written atomically, and `resume.npz` last of an epoch's files but `state.json` and the logs: it is
the one commit point, so a run killed at any moment resumes from its last completed epoch with
weights, optimizer, average and schedule of the same epoch. (Runs from before `resume.npz`
resume from `training_weights.npz`, `ema.npz`, `optimizer.npz` and `state.json`.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any

import cv2
import keras
import numpy as np
import yaml

from attnyolo.data.datasets import load_dataset
from attnyolo.data.pipeline import DetectionSequence
from attnyolo.engine import schedule
from attnyolo.engine.config import (  # noqa: F401 (the training API in one place)
    RECIPES,
    WEIGHT_DECAY_TYPES,
    TrainConfig,
    check_config,
    default_config,
    parse_attention,
    parse_override,
    recipe_config,
    resolve_config,
)
from attnyolo.engine.distribute import distribution_scope, resolve_strategy
from attnyolo.engine.evaluate import evaluate_model, original_ground_truth, write_report
from attnyolo.engine.precision import compute_precision, dtype_policy, policy_name
from attnyolo.engine.schedule import (  # noqa: F401
    Phase,
    TimeBudget,
    WeightAverage,
    frozen_share,
    lr_at,
    lr_at_progress,
    plan_phases,
)
from attnyolo.losses import YoloLoss
from attnyolo.losses.yolo import NEIGHBOUR_ASSIGNMENTS
from attnyolo.models.batchnorm import recalibrate_batchnorm
from attnyolo.models.darknet import LoadReport, load_darknet_weights
from attnyolo.models.saving import load_detector, save_detector
from attnyolo.models.yolo import DEFAULT_ANCHORS, YOLOv4Tiny
from attnyolo.utils import atomic_path, atomic_write

NOMINAL_BATCH = 64  # the original scales learning rates by batch / 64


class TrainingError(RuntimeError):
    """Training stopped for a reason the user must see (e.g. a non-finite loss)."""


def learning_rates(config: dict[str, Any], batch_size: int) -> tuple[float, float]:
    """The original's learning rates for a batch size: scaled by batch / 64, then clipped to
    the original's limits (`lr_clip`, true by default) or not."""
    adam = config["optimizer"] in ("adam", "adamw")
    init = config["init_lr"] if config["init_lr"] is not None else (1e-3 if adam else 1e-2)
    low = config["min_lr"] if config["min_lr"] is not None else init * 0.01
    if not config.get("lr_clip", True):
        return batch_size / NOMINAL_BATCH * init, batch_size / NOMINAL_BATCH * low
    limit_max, limit_min = (1e-3, 3e-4) if adam else (5e-2, 5e-4)
    init_fit = min(max(batch_size / NOMINAL_BATCH * init, limit_min), limit_max)
    min_fit = min(max(batch_size / NOMINAL_BATCH * low, limit_min * 1e-2), limit_max * 1e-2)
    return init_fit, min_fit


# What each optimizer gets when `weight_decay` / `weight_decay_type` are null: the original's
# coupled L2 of 5e-4 with SGD; none with Adam (the original's advice: L2 misbehaves with Adam);
# AdamW's own decoupled decay.
WEIGHT_DECAY_DEFAULTS = {"sgd": ("l2", 5e-4), "adam": ("l2", 0.0), "adamw": ("decoupled", 1e-2)}


def weight_decay_for(config: dict[str, Any]) -> tuple[str, float]:
    """`(type, amount)` of the weight decay a config asks for, defaults resolved."""
    kind, amount = WEIGHT_DECAY_DEFAULTS[config["optimizer"]]
    if config["weight_decay_type"] is not None:
        kind = config["weight_decay_type"]
    if config["weight_decay"] is not None:
        amount = float(config["weight_decay"])
    return kind, amount


def l2_kernels(model: keras.Model) -> list:
    """The kernels the original's L2 covers: those of every Conv2D and Dense layer, attention
    layers included. ECA's Conv1D is neither, there as here; biases and batch norm are not
    decayed."""
    layers = model._flatten_layers(include_self=False, recursive=True)
    return [
        layer.kernel
        for layer in layers
        if isinstance(layer, keras.layers.Conv2D | keras.layers.Dense)
    ]


def apply_l2(model: keras.Model, amount: float) -> None:
    """The original's coupled L2: `amount * sum(kernel ** 2)` of each `l2_kernels` kernel joins
    the loss, so its gradient `2 * amount * kernel` passes through the optimizer (momentum,
    Nesterov) like the loss' own. 0 removes it. Not stored in model files."""
    regularizer = keras.regularizers.L2(amount) if amount else None
    for kernel in l2_kernels(model):
        kernel.regularizer = regularizer


def _decay_exclusions(model: YOLOv4Tiny) -> list:
    """Every trainable variable except convolution kernels outside attention layers: decoupled
    decay applies to those conv kernels only."""
    keep = set()
    for layer in [*model.backbone.layers, *model.layers]:
        if isinstance(layer, keras.layers.Conv2D):
            keep.add(id(layer.kernel))
    return [v for v in model.trainable_variables if id(v) not in keep]


def make_optimizer(config: dict[str, Any], model: YOLOv4Tiny, lr: float):
    """The optimizer of a phase; also puts the original's L2 on the model (or takes it off)."""
    name = config["optimizer"]
    kind, amount = weight_decay_for(config)
    decoupled = amount if kind == "decoupled" else 0.0
    apply_l2(model, amount if kind == "l2" else 0.0)
    common = {"learning_rate": lr, "weight_decay": decoupled or None}
    if name == "sgd":
        optimizer = keras.optimizers.SGD(momentum=config["momentum"], nesterov=True, **common)
    elif name == "adam":
        optimizer = keras.optimizers.Adam(beta_1=config["momentum"], **common)
    else:
        optimizer = keras.optimizers.AdamW(beta_1=config["momentum"], **common)
    if decoupled:
        optimizer.exclude_from_weight_decay(var_list=_decay_exclusions(model))
    return optimizer


def transfer_weights(target: keras.Model, source: keras.Model, source_name: str) -> LoadReport:
    """Copies weights layer by layer, matched by name and shape; reports what was skipped, so a
    different class count still loads the backbone and neck."""
    report = LoadReport(source=source_name)

    def layers_of(model):
        for layer in model.layers:
            if isinstance(layer, keras.Model):
                yield from layers_of(layer)
            elif layer.weights:
                yield layer

    by_name = {layer.name: layer for layer in layers_of(source)}
    for layer in layers_of(target):
        other = by_name.get(layer.name)
        if other is None:
            report.untouched.append(layer.name)
            continue
        mine, theirs = layer.get_weights(), other.get_weights()
        shapes = [w.shape for w in mine], [w.shape for w in theirs]
        if shapes[0] != shapes[1]:
            report.skipped.append((layer.name, f"shape {shapes[1]} in the file, {shapes[0]} here"))
            continue
        layer.set_weights(theirs)
        report.loaded.append(layer.name)
    return report


def build_model(config: dict[str, Any], class_names: list[str]) -> YOLOv4Tiny:
    from attnyolo.engine.anchors import read_anchors

    anchors = read_anchors(config["anchors"]) if config["anchors"] else DEFAULT_ANCHORS
    attention, attention_options = parse_attention(config["attention"])
    xy_scale = config["xy_scale"]
    if xy_scale is None:
        xy_scale = 2.0 if config["assignment"] in NEIGHBOUR_ASSIGNMENTS else 1.0
    return YOLOv4Tiny(
        classes=class_names,
        input_size=config["input_size"],
        attention=attention,
        attention_kwargs=attention_options,
        attention_positions=config["attention_positions"],
        anchors=anchors,
        xy_scale=xy_scale,
        letterbox=True,  # training and validation keep the aspect ratio (grey padding)
        resize_filter=config["resize_filter"],
    )


def init_head_priors(model: YOLOv4Tiny, objects_per_image: float = 8.0) -> None:
    """Sets the head biases to priors, as YOLOv5 does for a model trained from scratch:
    objectness to `log(k / cells)` (about `objects_per_image` objects spread over a head's cells,
    by 640x640 images' count scaled to this input), classes to `log(0.6 / (C - 0.99))`. The first
    steps then start near the right rates instead of at 0.5, and do not spend the random features
    on pushing every cell's objectness down."""
    from attnyolo.models.yolo import HEAD_OUTPUTS

    height, width = model.input_size
    outputs = 5 + model.num_classes
    for name, stride in zip(HEAD_OUTPUTS, (32, 16), strict=True):
        layer = model.get_layer(name)
        kernel, bias = layer.get_weights()
        bias = bias.reshape(-1, outputs)
        objects = objects_per_image * (height * width) / 640**2
        bias[:, 4] = math.log(max(objects, 1e-3) / ((height / stride) * (width / stride)))
        bias[:, 5:] = math.log(0.6 / max(model.num_classes - 0.99, 0.01))
        layer.set_weights([kernel, bias.reshape(-1)])


def load_initial_weights(model: YOLOv4Tiny, config: dict[str, Any]) -> LoadReport | None:
    weights = config["weights"]
    if not weights:
        return None
    path = Path(weights)
    if path.suffix == ".weights":
        if config["weights_cfg"] is not None:
            return load_darknet_weights(model, config["weights_cfg"], path)
        import tempfile

        from attnyolo.models.darknet import darknet_cfg_text

        # The stock yolov4-tiny.cfg for 80 classes describes the official weights.
        stock = YOLOv4Tiny(80, input_size=model.input_size)
        with tempfile.TemporaryDirectory() as folder:
            cfg = atomic_write(Path(folder) / "yolov4-tiny.cfg", darknet_cfg_text(stock))
            return load_darknet_weights(model, cfg, path)
    return transfer_weights(model, load_detector(path), str(path))


def loss_weights(config: dict[str, Any], model: YOLOv4Tiny) -> dict[str, float | None]:
    """The box, objectness and class weights: `loss_weights`' (None: `YoloLoss`' defaults,
    which are the original's), each overridden by `box_weight` / `obj_weight` / `cls_weight`."""
    weights = {"box_weight": 0.05, "obj_weight": None, "cls_weight": None}
    if config["loss_weights"] == "yolov5":
        # YOLOv5's hyp.scratch (box 0.05, obj 1.0, cls 0.5), scaled as its train.py does: by
        # 3 / heads, by (size / 640)^2 for objectness and by classes / 80 for classes.
        height, width = model.input_size
        heads = len(model.anchor_masks)
        weights = {
            "box_weight": 0.05 * 3 / heads,
            "obj_weight": 1.0 * (height * width) / 640**2 * 3 / heads,
            "cls_weight": 0.5 * model.num_classes / 80 * 3 / heads,
        }
    for key in weights:
        if config[key] is not None:
            weights[key] = float(config[key])
    return weights


def loss_for(config: dict[str, Any], model: YOLOv4Tiny) -> YoloLoss:
    return YoloLoss(
        model.anchors,
        model.anchor_masks,
        model.input_size,
        model.num_classes,
        xy_scale=model.xy_scale,
        assignment=config["assignment"],
        anchor_threshold=config["anchor_threshold"],
        ignore_threshold=config["ignore_threshold"],
        label_smoothing=config["label_smoothing"],
        focal=config["focal_loss"],
        obj_loss=config["obj_loss"],
        ciou_alpha_gradient=config["ciou_alpha_gradient"],
        objectness_target=config["objectness_target"],
        obj_normalization=config["obj_normalization"],
        balance=tuple(config["loss_balance"]),
        **loss_weights(config, model),
    )


def _new_run_dir(config: dict[str, Any]) -> Path:
    base = Path(config["output"])
    if config["name"]:
        return base / config["name"]
    n = 1
    while (base / ("exp" if n == 1 else f"exp{n}")).exists():
        n += 1
    return base / ("exp" if n == 1 else f"exp{n}")


RESUME_FILE = "resume.npz"


def write_resume(run: Path, model, ema, state) -> None:
    """`resume.npz`: everything `--resume` needs, in one atomic file (groups `model.`,
    `optimizer.`, `ema.` and the state as JSON text; NumPy arrays only, no pickles)."""
    values = {f"model.v{i:04d}": np.asarray(w) for i, w in enumerate(model.get_weights())}
    for i, v in enumerate(model.optimizer.variables):
        values[f"optimizer.v{i:04d}"] = keras.ops.convert_to_numpy(v)
    if ema is not None:
        values.update({f"ema.{k}": np.asarray(v) for k, v in ema.state().items()})
    values["state"] = np.array(json.dumps(dataclasses.asdict(state)))
    values["classes"] = np.array(json.dumps(list(model.class_names)))
    with atomic_path(run / RESUME_FILE) as tmp, open(tmp, "wb") as f:
        np.savez(f, **values)


def read_resume(run: Path, group: str):
    """One group of `resume.npz` (`model`, `optimizer`, `ema`: `{name: array}`; `state`: a
    dict; `classes`: the class names), None where the file or the group is missing."""
    path = run / RESUME_FILE
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if group in ("state", "classes"):
                return json.loads(str(data[group])) if group in data.files else None
            prefix = group + "."
            found = {k[len(prefix) :]: data[k] for k in data.files if k.startswith(prefix)}
    except (OSError, ValueError, KeyError, EOFError) as e:
        raise TrainingError(f"{path}: cannot read the resume file ({e})") from None
    return found or None


def _load_optimizer(optimizer, model, path: Path, values: dict | None = None) -> bool:
    if values is None and not path.is_file():
        return False
    optimizer.build(model.trainable_variables)
    if values is None:
        with np.load(path) as data:
            values = {k: data[k] for k in data.files}
    values = [values[k] for k in sorted(values)]
    if len(values) != len(optimizer.variables) or any(
        tuple(v.shape) != tuple(w.shape) for v, w in zip(values, optimizer.variables, strict=True)
    ):
        warnings.warn(
            f"{path}: optimizer state does not fit this phase; starting it afresh", stacklevel=2
        )
        return False
    for variable, value in zip(optimizer.variables, values, strict=True):
        variable.assign(value)
    return True


def letterboxed(dataset, input_size, batch_size: int, config: dict[str, Any]) -> DetectionSequence:
    """The run's validation transform over `dataset`: letterboxed, no augmentation."""
    return DetectionSequence(
        dataset,
        input_size,
        batch_size,
        train=False,
        resize_filter=config["resize_filter"],
        max_boxes=max_boxes_for({**config, "mosaic": 0.0}, dataset),
    )


@dataclasses.dataclass
class RunState:
    """What a run has done, held in memory and handed to its callback; `state.json` is its copy
    on disk for `--resume`, written at each epoch's end and never read back during the run.

    Attributes:
        epoch: epochs completed.
        phase: the phase of the last completed epoch.
        best: `{"epoch", "metric", "value"}` of `weights/best.keras`, None before it exists.
        history: one row of logs per epoch.
        seconds: wall time the run has used (a timed run resumes with what is left).
        trained_seconds: training time of the schedule (checkpoints and validation not counted).
        images: training images seen.
        minute: the last `save_minutes` checkpoint written (its minute count), 0 for none.
        epochs_planned: a timed run's latest estimate of its epoch count.
    """

    epoch: int = 0
    phase: str | None = None
    best: dict | None = None
    history: list = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    trained_seconds: float = 0.0
    images: int = 0
    minute: float = 0.0
    epochs_planned: int | None = None

    @classmethod
    def load(cls, run: Path) -> RunState:
        """The state of the run's last completed epoch: `resume.npz`'s (the commit point; a
        kill may leave `state.json` an epoch behind it), or `state.json`'s for older runs."""
        values = read_resume(run, "state")
        path = run / "state.json"
        if values is None and not path.is_file():
            return cls()
        if values is None:
            values = json.loads(path.read_text())
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def save(self, run: Path) -> None:
        atomic_write(run / "state.json", json.dumps(dataclasses.asdict(self), indent=2))


def minute_name(minutes: float) -> str:
    """The stem of the `save_minutes` checkpoint taken at `minutes` of training time."""
    return f"minute_{minutes:03.0f}" if float(minutes).is_integer() else f"minute_{minutes:06.2f}"


class RunCallback(keras.callbacks.Callback):
    """Runs one phase's schedule and bookkeeping around `fit`:

    - the learning rate: the original's per-epoch schedule, or for a timed run the same shape
      over the fraction of training time used, set before each batch;
    - a timed run's clock: the epoch estimate (for mosaic closing), the stop at the deadline;
    - the weight average (`ema`), updated after each batch;
    - at each epoch's end: refuses a non-finite loss, validates (`evaluate_model` with the run's
      `val_protocol`), writes checkpoints, `state.json`, `log.csv` and plots; with `ema`, the
      average is what is validated and saved; checkpoint time is taken off the clock.
    """

    def __init__(
        self,
        run: Path,
        config: dict,
        state: RunState,
        phase: Phase,
        learning_rates: tuple[float, float],
        sequence: DetectionSequence,
        train_dataset,
        val_dataset=None,
        ema: WeightAverage | None = None,
        budget: TimeBudget | None = None,
    ):
        super().__init__()
        self.run = run
        self.config = config
        self.state = state
        self.phase = phase
        self.learning_rates = learning_rates
        self.sequence = sequence
        if val_dataset is not None and config["val_protocol"] != "voc" and config["eval_period"]:
            # The original's protocols compare the boxes as written: read them once, here.
            val_dataset = original_ground_truth(val_dataset)
        self.val_dataset = val_dataset
        self.train_dataset = train_dataset
        self.ema = ema
        self.budget = budget
        self._timings: dict[str, float] = {}  # measured seconds of the end-of-epoch work
        self._ema_pending = 0  # batches trained since the average was last updated
        self._twin = None  # a float32 copy for validation under a mixed policy
        self.phase_over = False  # a timed run's frozen phase ended by its share of the budget
        self._last_written = time.monotonic()  # when last.keras was last written

    # The schedule --------------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        if self.budget is not None:
            self.budget.resume()

    def on_epoch_begin(self, epoch, logs=None):
        if self.budget is None:
            lr, min_lr = self.learning_rates
            value = lr_at(epoch, lr, min_lr, self.config["epochs"], self.config["lr_schedule"])
            self.model.optimizer.learning_rate.assign(value)

    def on_train_batch_begin(self, batch, logs=None):
        if self.budget is not None:
            lr, min_lr = self.learning_rates
            value = lr_at_progress(self.budget.progress(), lr, min_lr)
            self.model.optimizer.learning_rate.assign(value)

    def on_train_batch_end(self, batch, logs=None):
        model = self.model
        if self.ema is not None:
            self._ema_pending += 1
            if self._ema_pending >= self.config["ema_every"]:
                self._update_average()
        self.state.images += self.sequence.batch_size
        if self.budget is None:
            return
        self.budget.images += self.sequence.batch_size
        period = self.config["save_minutes"]
        if period and self.budget.seconds_trained() >= 60 * (self.state.minute + period):
            self.state.minute += period
            with self._paused():
                self._save_averaged(
                    self.run / "weights" / f"{minute_name(self.state.minute)}.keras"
                )
        if self.budget.expired():
            model.stop_training = True

    # Epoch ends ----------------------------------------------------------------------------

    def on_epoch_end(self, epoch, logs=None):
        start = time.monotonic()
        with self._paused():
            if self.budget is not None:
                self.budget.mark_epoch()
            try:
                self._epoch_end(epoch, logs if logs is not None else {})
            except OSError as e:  # a full disk, say: the last complete epoch's files are whole
                self.model.stop_training = True
                try:
                    saved = f"epoch {RunState.load(self.run).epoch}"
                except (OSError, ValueError, RuntimeError):
                    saved = "its last complete epoch"
                raise TrainingError(
                    f"epoch {epoch + 1}: {e}. The run stopped; it resumes from {saved}: make "
                    f"room and continue with `attnyolo train --resume {self.run}`"
                ) from e
        self._timings["end"] = max(
            self._timings.get("end", 0.0),
            time.monotonic()
            - start
            - self._timings.pop("this_validation", 0.0)
            - self._timings.pop("this_recalibration", 0.0),
        )
        if self.budget is not None:
            self.budget.reserve = self._reserve()

    def _reserve(self) -> float:
        """Seconds to keep back for the run's end: a checkpoint as long as the longest so far,
        plus validation and BN re-estimation as measured (or, before they ran, at twice the
        training rate per image), with a quarter to spare."""
        rate = self.budget.rate() or 1.0
        seconds = self._timings.get("end", 0.0)
        if self.val_dataset is not None and self.config["eval_period"]:
            per_image = self._timings.get("validation_per_image", 1 / (2 * rate))
            seconds += per_image * len(self.val_dataset)
        if self.config["bn_recalibration"]:
            images = self.config["bn_recalibration"] * self.config["batch_size"]
            seconds += self._timings.get("recalibration", images / (2 * rate))
        return 1.25 * seconds + 2.0

    @contextlib.contextmanager
    def _paused(self):
        """Takes what runs inside off a timed run's training clock."""
        if self.budget is None:
            yield
            return
        self.budget.pause()
        try:
            yield
        finally:
            self.budget.resume()

    def _epoch_end(self, epoch: int, logs: dict) -> None:
        loss = logs.get("loss", math.nan)
        if not math.isfinite(loss):
            self.model.stop_training = True
            raise TrainingError(
                f"epoch {epoch + 1}: the loss is {loss}; training stopped. The last good "
                f"checkpoint is {self.run / 'weights' / 'last.keras'} (try a lower init_lr, or "
                "check the data for broken boxes)."
            )
        logs["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        if self.budget is not None:
            done = epoch + 1
            planned = self.budget.estimate_epochs(
                len(self.sequence) * self.sequence.batch_size, done
            )
            self.sequence.epochs = self.state.epochs_planned = planned
            last = self.budget.expired() or self.model.stop_training
            if (
                not last
                and self.phase.frozen
                and self.budget.progress() >= frozen_share(self.config)
            ):
                # The frozen phase's share of the budget is spent: on to the unfrozen phase.
                self.model.stop_training = self.phase_over = True
        else:
            last = epoch + 1 == self.config["epochs"]
        period = self.config["eval_period"]
        validate = self.val_dataset is not None and period and ((epoch + 1) % period == 0 or last)
        save_period = self.config["save_period"]
        keep = bool(save_period) and (epoch + 1) % save_period == 0
        weights = self.run / "weights"
        # last.keras and the plots: every epoch, or with checkpoint_interval at most that often
        # (and at the end, and with every validation); resume.npz below is written every epoch.
        interval = self.config["checkpoint_interval"]
        write_last = (
            last
            or validate
            or keep
            or not interval
            or time.monotonic() - self._last_written >= interval
            or not (weights / "last.keras").is_file()
        )
        with self._averaged() as model:
            if self.config["bn_recalibration"] and (validate or last or keep):
                start = time.monotonic()
                self._recalibrate(model, epoch)
                seconds = time.monotonic() - start
                self._timings["recalibration"] = self._timings["this_recalibration"] = seconds
            if validate:
                start = time.monotonic()
                evaluation = self._validate(self._float32(model))
                seconds = time.monotonic() - start
                self._timings["this_validation"] = seconds
                self._timings["validation_per_image"] = seconds / max(len(self.val_dataset), 1)
                logs["val_map50"] = evaluation.map50
                print(f"\nepoch {epoch + 1}: validation mAP@0.5 = {evaluation.map50 * 100:.2f}%")
                if last:
                    write_report(evaluation, self.val_dataset, self.run / "evaluation", plots=False)
            if write_last:
                save_detector(model, weights / "last.keras")
                self._last_written = time.monotonic()
            monitor, better = self._monitor(logs)
            if monitor is not None and better:
                self.state.best = {"epoch": epoch + 1, "metric": monitor[0], "value": monitor[1]}
                save_detector(model, weights / "best.keras")
            if keep:
                save_detector(model, weights / f"epoch_{epoch + 1:03d}.keras")
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}}
        self.state.history.append(row)
        self.state.epoch, self.state.phase = epoch + 1, self.phase.name
        if self.budget is not None:
            self.state.trained_seconds = self.budget.seconds_trained()
            self.state.seconds = self.budget.elapsed()
        # The commit point: the model's own weights (from which training goes on), the
        # optimizer, the average and the state, of this epoch, in one atomic file.
        write_resume(self.run, self.model, self.ema, self.state)
        self.state.save(self.run)
        _write_csv(self.run / "log.csv", self.state.history)
        if write_last:
            _plot_history(self.run, self.state.history)

    def _update_average(self) -> None:
        if self.ema is not None and self._ema_pending:
            self.ema.update(self.model, self._ema_pending)
            self._ema_pending = 0

    def _averaged(self):
        if self.ema is None:
            return contextlib.nullcontext(self.model)
        self._update_average()  # the batches since the last update (`ema_every`)
        return self.ema.swapped(self.model)

    def _float32(self, model):
        """`model` itself in float32; under a mixed policy, a float32 copy of it (built once, its
        weights refreshed), so that validation scores what the saved file will predict (model
        files load in float32)."""
        if model.dtype_policy.name == "float32":
            return model
        if self._twin is None:
            with dtype_policy("float32"):
                self._twin = type(model).from_config(model.get_config())
        self._twin.set_weights(model.get_weights())
        return self._twin

    def _save_averaged(self, path: Path) -> None:
        """A checkpoint of the model as the run would leave it now (average, BN re-estimated)."""
        with self._averaged() as model:
            if self.config["bn_recalibration"]:
                self._recalibrate(model, self.state.epoch)
            save_detector(model, path)

    def _validate(self, model):
        protocol = self.config["val_protocol"]
        # voc: resized as in training; the original's protocols resize as the original.
        resize = self.config["resize_filter"] if protocol == "voc" else None
        return evaluate_model(
            model,
            self.val_dataset,
            protocol=protocol,
            resize_filter=resize,
            progress=False,
            coco=False,
            fuse=False,  # a folded copy costs a compile per validation and follows no weights
        )

    def _recalibrate(self, model, epoch: int) -> None:
        """Precise BN over letterboxed training images drawn with the run's seed and the epoch."""
        records = self.train_dataset.records
        count = min(self.config["bn_recalibration"] * self.config["batch_size"], len(records))
        rng = np.random.default_rng([self.config["seed"], epoch, 7])
        picked = [records[i] for i in sorted(rng.choice(len(records), count, replace=False))]
        subset = dataclasses.replace(self.train_dataset, records=picked)
        batches = letterboxed(subset, model.input_size, self.config["batch_size"], self.config)
        recalibrate_batchnorm(model, (batches[i] for i in range(len(batches))))

    def _monitor(self, logs) -> tuple[tuple[str, float] | None, bool]:
        best = self.state.best
        if "val_map50" in logs:
            value = float(logs["val_map50"])
            better = best is None or best["metric"] != "val_map50" or value > best["value"]
            return ("val_map50", value), better
        if "val_loss" in logs and (self.config["eval_period"] == 0 or self.val_dataset is None):
            value = float(logs["val_loss"])
            better = best is None or value < best["value"]
            return ("val_loss", value), better
        return None, False


def _load_arrays(path: Path) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def _write_csv(path: Path, history: list[dict]) -> None:
    keys = sorted({k for row in history for k in row} - {"epoch"})
    lines = [",".join(["epoch", *keys])]
    for row in history:
        lines.append(
            ",".join([str(row["epoch"]), *("" if k not in row else f"{row[k]:.6g}" for k in keys)])
        )
    atomic_write(path, "\n".join(lines) + "\n")


def _plot_history(run: Path, history: list[dict]) -> None:
    from attnyolo.engine.plots import save_figure, subplots

    epochs = [row["epoch"] for row in history]
    figure, axes = subplots(figsize=(6, 4))
    for key in ("loss", "val_loss"):
        points = [(e, row[key]) for e, row in zip(epochs, history, strict=True) if key in row]
        if points:
            axes.plot(
                *zip(*points, strict=True), label=key, marker="." if len(points) < 30 else None
            )
    axes.set(xlabel="epoch", ylabel="loss", title="loss")
    axes.legend()
    axes.grid(alpha=0.3)
    save_figure(figure, run / "loss.png")
    points = [(row["epoch"], row["val_map50"]) for row in history if "val_map50" in row]
    if points:
        figure, axes = subplots(figsize=(6, 4))
        axes.plot(*zip(*points, strict=True), marker="o", color="tab:red")
        axes.set(xlabel="epoch", ylabel="mAP@0.5", title="validation mAP@0.5", ylim=(0, 1))
        axes.grid(alpha=0.3)
        save_figure(figure, run / "map.png")


@contextlib.contextmanager
def process_state():
    """Puts back what `train` changes for the whole process once it returns (or fails): the
    random states of Python, NumPy, Keras and the backend (`keras.utils.set_random_seed`) and
    OpenCV's thread count. A notebook or an ablation running several trainings keeps its own.
    (The dtype policy is `dtype_policy`'s to restore.)"""
    import random

    from keras.src.backend.common import global_state
    from keras.src.random.seed_generator import GLOBAL_SEED_GENERATOR
    from keras.src.utils.rng_utils import GLOBAL_RANDOM_SEED

    python_state, numpy_state = random.getstate(), np.random.get_state()
    keras_state = {
        key: global_state.get_global_attribute(key)
        for key in (GLOBAL_RANDOM_SEED, GLOBAL_SEED_GENERATOR)
    }
    threads = cv2.getNumThreads()
    restore_backend = _backend_rng_state()
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        for key, value in keras_state.items():
            global_state.set_global_attribute(key, value)
        cv2.setNumThreads(threads)
        restore_backend()


def _backend_rng_state():
    """A function that puts the backend's global random state back as it is now: TensorFlow's
    global seed (set by `keras.utils.set_random_seed` whatever the backend, when installed) and
    PyTorch's generator on that backend."""
    undo = []
    try:
        from tensorflow.python.eager import context
    except ImportError:
        context = None
    if context is not None:
        seed = context.global_seed()
        undo.append(lambda: context.set_global_seed(seed))
    if keras.backend.backend() == "torch":
        import torch

        generator = torch.get_rng_state()
        undo.append(lambda: torch.set_rng_state(generator))
    return lambda: [step() for step in undo]


def train(
    config: dict[str, Any] | None = None,
    resume: str | os.PathLike | None = None,
    verbose: int | str = "auto",
) -> Path:
    """Trains a detector; returns the run folder.

    Every setting and the data are checked before the run folder is made, so a mistake leaves
    nothing behind.

    Args:
        config: settings from `resolve_config` (a plain dict is checked the same way); ignored
            when resuming.
        resume: a run folder to continue: its saved settings, weights, optimizer state, weight
            average, epoch count, schedule and, for a timed run, the time left.
    """
    started = schedule.monotonic()  # a timed run's budget counts from here
    if resume is not None:
        run = Path(resume)
        config = TrainConfig.from_run(run)
        state = RunState.load(run)
        for stale in run.rglob(".*.tmp*"):
            # A write the kill cut short (`atomic_path`'s temporary files): never renamed, so
            # never read; the files it would have replaced are whole.
            if stale.is_file():
                stale.unlink()
    elif config is None:
        raise ValueError("train() needs a config or a run folder to resume")
    else:
        if not isinstance(config, TrainConfig):
            config = TrainConfig(config)
            check_config(config)
        run, state = _new_run_dir(config), RunState()
    with process_state():
        return _train(config, run, state, resume, started, verbose)


def _train(config, run: Path, state: RunState, resume, started: float, verbose) -> Path:
    keras.utils.set_random_seed(config["seed"])
    # The loader threads do the image work; OpenCV's own thread pool only competes with them.
    cv2.setNumThreads(1)
    train_set = load_dataset(config["data"], config["train_split"], config["classes"])
    val_set = (
        load_dataset(config["data"], config["val_split"], train_set.class_names)
        if config["val_split"]
        else None
    )
    if not train_set.records:
        raise ValueError(f"{config['data']}: no training images in split {config['train_split']}")
    if resume is not None:
        _check_resumed_classes(run, train_set.class_names)
    if resume is None:
        run.mkdir(parents=True, exist_ok=False)
        atomic_write(run / "config.yaml", yaml.safe_dump(dict(config), sort_keys=False))
    precision = compute_precision(config["mixed_precision"])
    strategy = resolve_strategy(config["distribute"])
    batch_sizes = [config["batch_size"]]
    if config["freeze_train"]:
        batch_sizes.append(config["freeze_batch_size"])
    budget = None
    if config["time"] is not None:
        budget = TimeBudget(
            config["time"], started=started, used=state.seconds, trained=state.trained_seconds
        )
    if precision != "float32":
        jit = "on" if jit_compile_for(config, strategy) else "off"
        setting = config["mixed_precision"]
        print(f"computing in mixed {precision} (mixed_precision: {setting}), XLA {jit}")
    # The policy is the run's only: a notebook or an ablation running several trainings gets its
    # own back after each.
    policy = dtype_policy(policy_name(precision))
    with policy, distribution_scope(strategy, batch_sizes) as replicas:
        if strategy is not None:
            print(f"data-parallel training ({strategy}) over {replicas} replicas")
        _train_phases(
            config, run, state, resume is not None, train_set, val_set, strategy, budget, verbose
        )
    if budget is not None:
        minutes = budget.elapsed() / 60
        print(
            f"time budget {config['time']:g} min: ended after {minutes:.2f} min "
            f"({budget.seconds_trained() / 60:.2f} min of training, {state.epoch} epochs)"
        )
    return run


def _check_resumed_classes(run: Path, class_names) -> None:
    """Refuses to resume a run whose data now name other classes than it was trained on (an
    edited classes file, another data set): its weights would be read as the wrong classes."""
    import zipfile

    saved = read_resume(run, "classes")
    last = run / "weights" / "last.keras"
    if saved is None and not last.is_file():
        return
    if saved is None:
        try:
            with zipfile.ZipFile(last) as archive:
                saved = json.loads(archive.read("config.json"))["config"]["classes"]
        except (OSError, KeyError, ValueError, zipfile.BadZipFile):
            return  # not readable this way: the weights' own checks decide
    if list(saved) != list(class_names):
        raise ValueError(
            f"{run}: trained on the classes {list(saved)}, but its data now give "
            f"{list(class_names)}; resume with the classes it was trained on, or start a new run "
            "(nothing was changed)"
        )


def max_boxes_for(config: dict[str, Any], dataset) -> int:
    """`max_boxes`, with auto resolved: the most boxes a training sample can hold (4 images'
    worth with mosaic), at least 1."""
    if config["max_boxes"] != "auto":
        return config["max_boxes"]
    most = max((len(r.boxes) for r in dataset.records), default=1)
    return max(most * (4 if config["mosaic"] > 0 else 1), 1)


def _prepare_model(config, run: Path, resumed: bool, train_set) -> YOLOv4Tiny:
    """The model with its starting weights: a resumed run's own, pretrained ones, or random
    ones (with YOLOv5's head priors where asked)."""
    model = build_model(config, train_set.class_names)
    if resumed:
        own = read_resume(run, "model") or _load_arrays(run / "training_weights.npz")
        if own is not None and len(own) == len(model.weights):
            model.set_weights([own[k] for k in sorted(own)])
            return model
        if (run / "weights" / "last.keras").is_file():
            transfer_weights(model, load_detector(run / "weights" / "last.keras"), "last.keras")
            return model
    report = load_initial_weights(model, config)
    if report is not None:
        print(report)
        return model
    timed = config["time"] is not None
    frozen = config["freeze_train"] and (
        frozen_share(config) > 0 if timed else config["init_epoch"] < config["freeze_epoch"]
    )
    span = (
        f"the first {frozen_share(config):.0%} of the {config['time']:g}-min budget"
        if timed
        else f"epochs {config['init_epoch'] + 1}-{config['freeze_epoch']}"
    )
    print(
        "no weights: training from scratch, "
        + (
            f"with the backbone frozen at its random values for {span} (freeze_from_scratch)"
            if frozen
            else "nothing frozen"
        )
    )
    if config["prior_bias_init"]:
        init_head_priors(model)
    return model


def _train_phases(
    config, run, state: RunState, resumed, train_set, val_set, strategy, budget, verbose
) -> None:
    model = _prepare_model(config, run, resumed, train_set)
    if resumed:
        print(f"resuming {run} after epoch {state.epoch}")
    model.set_loss(loss_for(config, model))
    if budget is None:
        _warn_if_too_few_steps(config, len(train_set))
    ema = None
    if config["ema"]:
        ema = WeightAverage(model, config["ema_momentum"], config["ema_tau"])
        saved = (read_resume(run, "ema") or _load_arrays(run / "ema.npz")) if resumed else None
        if saved is not None and not ema.load_state(saved):
            warnings.warn(
                f"{run / RESUME_FILE}: the weight average does not fit the model; averaging afresh",
                stacklevel=2,
            )
    max_boxes = max_boxes_for(config, train_set)
    # A timed run has no last epoch: it ends at its deadline.
    epochs = config["epochs"] if budget is None else _UNBOUNDED_EPOCHS
    if budget is None:
        phases = plan_phases(config, state.epoch, epochs)
    else:
        # A timed run freezes for a share of its training time, not for freeze_epoch epochs
        # (which could hold the whole budget): the unfrozen phase starts where that ends.
        start = max(state.epoch, config["init_epoch"])
        phases = [Phase("unfrozen", start, epochs, config["batch_size"])]
        if budget.progress() < frozen_share(config):
            phases.insert(0, Phase("frozen", start, epochs, config["freeze_batch_size"]))
    for phase in phases:
        if budget is not None and budget.expired():
            break
        if budget is not None and not phase.frozen:
            phase = dataclasses.replace(phase, begin=max(state.epoch, phase.begin))
        model.backbone.trainable = not phase.frozen
        sequence = DetectionSequence(
            train_set,
            model.input_size,
            phase.batch_size,
            train=True,
            mosaic=config["mosaic"],
            mixup=config["mixup"],
            special_aug_ratio=config["special_aug_ratio"],
            close_mosaic=config["close_mosaic"],
            epochs=config["epochs"] if budget is None else state.epochs_planned,
            seed=config["seed"],
            scale=tuple(config["scale"]),
            hsv=tuple(config["hsv"]),
            resize_filter=config["resize_filter"],
            max_boxes=max_boxes,
            workers=config["workers"],
        )
        if len(sequence) == 0:
            raise ValueError(
                f"{len(train_set)} training images make no full batch of {phase.batch_size}; "
                "lower the batch size"
            )
        sequence.set_epoch(phase.begin)
        lr, min_lr = learning_rates(config, phase.batch_size)
        model.compile(
            optimizer=make_optimizer(config, model, lr),
            jit_compile=jit_compile_for(config, strategy),
        )
        if resumed and state.phase == phase.name:
            saved = read_resume(run, "optimizer")
            if saved is not None:
                _load_optimizer(model.optimizer, model, run / RESUME_FILE, saved)
            else:
                _load_optimizer(model.optimizer, model, run / "optimizer.npz")
        validation = None
        if val_set is not None and not config["eval_period"]:
            validation = letterboxed(val_set, model.input_size, phase.batch_size, config)
        callback = RunCallback(
            run, config, state, phase, (lr, min_lr), sequence, train_set, val_set, ema, budget
        )
        callbacks = [callback, keras.callbacks.TerminateOnNaN()]
        if config["early_stopping"]:
            monitor = "val_map50" if config["eval_period"] and val_set else "val_loss"
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor=monitor,
                    mode="max" if monitor == "val_map50" else "min",
                    patience=config["early_stopping"],
                )
            )
        if _tensorboard_available():
            callbacks.append(keras.callbacks.TensorBoard(str(run / "tensorboard")))
        kind, amount = weight_decay_for(config)
        decay = f"{kind} weight decay {amount:g}" if amount else "no weight decay"
        span = (
            f"epochs {phase.begin + 1}-{phase.end}"
            if budget is None
            else (
                f"from epoch {phase.begin + 1} for {frozen_share(config):.0%} of the "
                f"{config['time']:g}-min budget"
                if phase.frozen
                else f"from epoch {phase.begin + 1} until {config['time']:g} min"
            )
        )
        print(
            f"{phase.name} phase: {span}, batch {phase.batch_size}, {config['optimizer']} "
            f"lr {lr:.2e}, {decay}" + (", weight average (EMA)" if ema is not None else "")
        )
        model.fit(
            sequence,
            epochs=phase.end,
            initial_epoch=phase.begin,
            validation_data=validation,
            callbacks=callbacks,
            verbose=verbose,
            shuffle=False,  # the sequence shuffles itself, seeded
        )
        if callback.phase_over:
            continue
        if model.stop_training and (budget is not None or phase.end < config["epochs"]):
            break


_UNBOUNDED_EPOCHS = 1_000_000


def jit_compile_for(config: dict[str, Any], strategy: str | None) -> bool:
    """Whether to XLA-compile the train step for this config and distribution strategy."""
    if config["jit_compile"] != "auto":
        return bool(config["jit_compile"])
    if compute_precision(config["mixed_precision"]) == "bfloat16":
        return False  # XLA's CPU convolutions are slower in bfloat16 than oneDNN's (precision.py)
    if strategy in ("mirrored", "multi_worker"):
        return False  # as Keras' own auto: XLA inside tf.distribute strategies is not dependable
    return keras.backend.backend() in ("tensorflow", "jax")


def _tensorboard_available() -> bool:
    """Keras' TensorBoard callback writes through TensorFlow and needs the tensorboard package."""
    if keras.backend.backend() != "tensorflow":
        return False
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def _warn_if_too_few_steps(config: dict[str, Any], num_train: int) -> None:
    """The original's advice: SGD wants at least 5e4 steps, Adam 1.5e4."""
    wanted = 5e4 if config["optimizer"] == "sgd" else 1.5e4
    total = num_train // config["batch_size"] * config["epochs"]
    if total <= wanted:
        suggested = math.ceil(wanted / max(num_train // config["batch_size"], 1))
        warnings.warn(
            f"{config['optimizer']} training wants more than {int(wanted):,} steps; this run has "
            f"{total:,} ({num_train} images, batch {config['batch_size']}, {config['epochs']} "
            f"epochs). Consider about {suggested} epochs.",
            stacklevel=2,
        )

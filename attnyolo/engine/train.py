"""`attnyolo train`: the original yolov4-tiny-keras training workflow, configured from the edge.

A run folder holds everything: `config.yaml` (resolved), `weights/{last,best,epoch_NNN}.keras`
(full detector files with their metadata), `state.json` + `optimizer.npz` (what `--resume`
needs), `log.csv`, `loss.png`, `map.png` and TensorBoard logs. Every file is written atomically,
so a run killed at any moment resumes from its last completed epoch.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import warnings
from importlib import resources
from pathlib import Path
from typing import Any

import cv2
import keras
import numpy as np
import yaml

from attnyolo.data.datasets import load_dataset
from attnyolo.data.images import check_resize_filter
from attnyolo.data.pipeline import DetectionSequence
from attnyolo.engine.distribute import distribution_scope, resolve_strategy
from attnyolo.engine.evaluate import (
    EVALUATION_PROTOCOLS,
    evaluate_model,
    original_ground_truth,
)
from attnyolo.layers.registry import attention_spec_name
from attnyolo.losses import YoloLoss
from attnyolo.models.batchnorm import recalibrate_batchnorm
from attnyolo.models.darknet import LoadReport, load_darknet_weights
from attnyolo.models.saving import load_detector, save_detector
from attnyolo.models.yolo import DEFAULT_ANCHORS, YOLOv4Tiny, normalize_input_size
from attnyolo.utils import atomic_path, atomic_write

NOMINAL_BATCH = 64  # the original scales learning rates by batch / 64


class TrainingError(RuntimeError):
    """Training stopped for a reason the user must see (e.g. a non-finite loss)."""


def default_config() -> dict[str, Any]:
    text = resources.files("attnyolo.configs").joinpath("train.yaml").read_text()
    return yaml.safe_load(text)


# YAML 1.1, which PyYAML reads, takes `5e-4` (no dot) for a string; people write it that way.
_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _numbers(value: Any) -> Any:
    """`value` with strings such as "5e-4" read as the numbers they are, inside lists too."""
    if isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
        return float(value)
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    return value


def parse_override(item: str) -> tuple[str, Any]:
    """`key=value` with the value read as YAML (numbers, booleans, lists, null)."""
    if "=" not in item:
        raise ValueError(f"--set takes KEY=VALUE, got {item!r}")
    key, value = item.split("=", 1)
    return key.strip(), _numbers(yaml.safe_load(value))


def resolve_config(config_file: str | os.PathLike | None = None, **overrides) -> dict[str, Any]:
    """Defaults, then a YAML file, then overrides; unknown keys are an error that lists them."""
    config = default_config()
    layers = []
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise ValueError(f"{path}: no such config file")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: a config file is a mapping of settings")
        layers.append((str(path), {k: _numbers(v) for k, v in loaded.items()}))
    layers.append(("overrides", {k: v for k, v in overrides.items()}))
    for source, values in layers:
        unknown = sorted(set(values) - set(config))
        if unknown:
            raise ValueError(f"{source}: unknown settings {unknown}; known: {sorted(config)}")
        config.update(values)
    _check_config(config)
    return config


def _check_config(config: dict[str, Any]) -> None:
    if not config["data"]:
        raise ValueError("No data set: set `data` (a VOC root, COCO JSON, YOLO YAML, ...)")
    if config["optimizer"] not in ("sgd", "adam", "adamw"):
        raise ValueError(f"optimizer must be sgd, adam or adamw, got {config['optimizer']!r}")
    if config["lr_schedule"] not in ("cos", "step"):
        raise ValueError(f"lr_schedule must be cos or step, got {config['lr_schedule']!r}")
    if config["assignment"] not in ("original", "yolov5"):
        raise ValueError(f"assignment must be original or yolov5, got {config['assignment']!r}")
    attention_spec_name(config["attention"])  # an unknown name fails here, listing the valid
    resolve_strategy(config["distribute"])  # an unknown name, or one for another backend
    normalize_input_size(config["input_size"])
    check_resize_filter(config["resize_filter"])
    classes = config["classes"]
    if isinstance(classes, str) and not Path(classes).is_file():
        raise ValueError(f"{classes}: no such class-names file")
    scale = config["scale"]
    if not (isinstance(scale, list | tuple) and len(scale) == 2 and 0 < scale[0] <= scale[1]):
        raise ValueError(f"scale is a range [low, high] with 0 < low <= high, got {scale!r}")
    if config["jit_compile"] not in ("auto", True, False):
        raise ValueError(f"jit_compile must be auto, true or false, got {config['jit_compile']!r}")
    if not isinstance(config["bn_recalibration"], int) or config["bn_recalibration"] < 0:
        raise ValueError(
            f"bn_recalibration is a number of batches >= 0, got {config['bn_recalibration']!r}"
        )
    if config["val_protocol"] not in EVALUATION_PROTOCOLS:
        choices = ", ".join(EVALUATION_PROTOCOLS)
        raise ValueError(f"val_protocol must be one of {choices}, got {config['val_protocol']!r}")
    if config["weight_decay_type"] not in (None, *WEIGHT_DECAY_TYPES):
        raise ValueError(
            f"weight_decay_type must be l2, decoupled or null, got {config['weight_decay_type']!r}"
        )
    if config["freeze_train"] and not config["weights"] and not config["freeze_from_scratch"]:
        raise ValueError(
            "freeze_train with no weights would train the neck on a frozen, random backbone "
            f"for {config['freeze_epoch']} epochs (the original says: never freeze when training "
            "from scratch). Give pretrained --weights, set freeze_train false, or insist with "
            "--freeze-from-scratch (freeze_from_scratch: true)."
        )
    if not isinstance(config["max_boxes"], int) or config["max_boxes"] < 1:
        raise ValueError(f"max_boxes must be a positive integer, got {config['max_boxes']!r}")
    if not 0 <= config["init_epoch"] < config["epochs"]:
        raise ValueError(
            f"need 0 <= init_epoch < epochs, got {config['init_epoch']}, {config['epochs']}"
        )


def learning_rates(config: dict[str, Any], batch_size: int) -> tuple[float, float]:
    """The original's learning rates for a batch size: scaled by batch / 64, then clipped."""
    adam = config["optimizer"] in ("adam", "adamw")
    init = config["init_lr"] if config["init_lr"] is not None else (1e-3 if adam else 1e-2)
    low = config["min_lr"] if config["min_lr"] is not None else init * 0.01
    limit_max, limit_min = (1e-3, 3e-4) if adam else (5e-2, 5e-4)
    init_fit = min(max(batch_size / NOMINAL_BATCH * init, limit_min), limit_max)
    min_fit = min(max(batch_size / NOMINAL_BATCH * low, limit_min * 1e-2), limit_max * 1e-2)
    return init_fit, min_fit


def lr_at(epoch: int, lr: float, min_lr: float, total: int, schedule: str = "cos") -> float:
    """The original's per-epoch schedule: YOLOX warm-up cosine (quadratic warm-up over up to 3
    epochs from 0.1 x lr, cosine down to min_lr, min_lr for the last up-to-15 epochs) or steps
    (10 steps from lr to min_lr)."""
    if schedule == "cos":
        warmup = min(max(0.05 * total, 1), 3)
        warmup_start = max(0.1 * lr, 1e-6)
        flat = min(max(0.05 * total, 1), 15)
        if epoch <= warmup:
            return (lr - warmup_start) * (epoch / warmup) ** 2 + warmup_start
        if epoch >= total - flat:
            return min_lr
        progress = (epoch - warmup) / (total - warmup - flat)
        return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))
    steps = 10
    decay = (min_lr / lr) ** (1 / (steps - 1))
    return lr * decay ** (epoch // (total / steps))


# What each optimizer gets when `weight_decay` / `weight_decay_type` are null: the original's
# coupled L2 of 5e-4 with SGD; none with Adam (the original's advice: L2 misbehaves with Adam);
# AdamW's own decoupled decay.
WEIGHT_DECAY_DEFAULTS = {"sgd": ("l2", 5e-4), "adam": ("l2", 0.0), "adamw": ("decoupled", 1e-2)}
WEIGHT_DECAY_TYPES = ("l2", "decoupled")


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


def make_optimizer(config: dict[str, Any], model: YOLOv4Tiny, lr: float, steps_per_epoch: int):
    """The optimizer of a phase; also puts the original's L2 on the model (or takes it off)."""
    name = config["optimizer"]
    kind, amount = weight_decay_for(config)
    decoupled = amount if kind == "decoupled" else 0.0
    apply_l2(model, amount if kind == "l2" else 0.0)
    ema = {}
    if config["ema"]:
        # The model's weights become the averages once per epoch, so that validation and
        # checkpoints see them.
        ema = {
            "use_ema": True,
            "ema_momentum": config["ema_momentum"],
            "ema_overwrite_frequency": steps_per_epoch,
        }
    common = {"learning_rate": lr, "weight_decay": decoupled or None, **ema}
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
    xy_scale = config["xy_scale"]
    if xy_scale is None:
        xy_scale = 2.0 if config["assignment"] == "yolov5" else 1.0
    return YOLOv4Tiny(
        classes=class_names,
        input_size=config["input_size"],
        attention=config["attention"],
        anchors=anchors,
        xy_scale=xy_scale,
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
        ciou_alpha_gradient=config["ciou_alpha_gradient"],
    )


def _new_run_dir(config: dict[str, Any]) -> Path:
    base = Path(config["output"])
    if config["name"]:
        return base / config["name"]
    n = 1
    while (base / ("exp" if n == 1 else f"exp{n}")).exists():
        n += 1
    return base / ("exp" if n == 1 else f"exp{n}")


def _save_optimizer(optimizer, path: Path) -> None:
    values = {f"v{i:04d}": keras.ops.convert_to_numpy(v) for i, v in enumerate(optimizer.variables)}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **values)


def _load_optimizer(optimizer, model, path: Path) -> bool:
    if not path.is_file():
        return False
    optimizer.build(model.trainable_variables)
    with np.load(path) as data:
        values = [data[k] for k in sorted(data.files)]
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
        max_boxes=config["max_boxes"],
    )


class RunCallback(keras.callbacks.Callback):
    """At each epoch end: refuses a non-finite loss, validates (mAP through the evaluation
    issue's `evaluate_model`, with its defaults), writes checkpoints, state, CSV and plots."""

    def __init__(
        self,
        run: Path,
        config: dict,
        val_dataset,
        phase: str,
        total_epochs: int,
        train_dataset=None,
    ):
        super().__init__()
        self.run = run
        self.config = config
        if val_dataset is not None and config["val_protocol"] != "voc" and config["eval_period"]:
            # The original's protocols compare the boxes as written: read them once, here.
            val_dataset = original_ground_truth(val_dataset)
        self.val_dataset = val_dataset
        self.train_dataset = train_dataset
        self.phase = phase
        self.total_epochs = total_epochs
        self.state = _read_state(run)

    def on_epoch_begin(self, epoch, logs=None):
        lr, min_lr = self.state["lr"]
        value = lr_at(epoch, lr, min_lr, self.total_epochs, self.config["lr_schedule"])
        self.model.optimizer.learning_rate.assign(value)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        loss = logs.get("loss", math.nan)
        if not math.isfinite(loss):
            self.model.stop_training = True
            raise TrainingError(
                f"epoch {epoch + 1}: the loss is {loss}; training stopped. The last good "
                f"checkpoint is {self.run / 'weights' / 'last.keras'} (try a lower init_lr, or "
                "check the data for broken boxes)."
            )
        logs["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        period = self.config["eval_period"]
        last = epoch + 1 == self.total_epochs
        validate = self.val_dataset is not None and period and ((epoch + 1) % period == 0 or last)
        save_period = self.config["save_period"]
        keep = bool(save_period) and (epoch + 1) % save_period == 0
        if self.config["bn_recalibration"] and (validate or last or keep):
            self._recalibrate(epoch)
        if validate:
            protocol = self.config["val_protocol"]
            # voc: resized as in training; the original's protocols resize as the original.
            resize = self.config["resize_filter"] if protocol == "voc" else None
            evaluation = evaluate_model(
                self.model,
                self.val_dataset,
                protocol=protocol,
                resize_filter=resize,
                progress=False,
                coco=False,
            )
            logs["val_map50"] = evaluation.map50
            print(f"\nepoch {epoch + 1}: validation mAP@0.5 = {evaluation.map50 * 100:.2f}%")
        weights = self.run / "weights"
        save_detector(self.model, weights / "last.keras")
        monitor, better = self._monitor(logs)
        if monitor is not None and better:
            self.state["best"] = {"epoch": epoch + 1, "metric": monitor[0], "value": monitor[1]}
            save_detector(self.model, weights / "best.keras")
        if keep:
            save_detector(self.model, weights / f"epoch_{epoch + 1:03d}.keras")
        _save_optimizer(self.model.optimizer, self.run / "optimizer.npz")
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}}
        self.state["history"].append(row)
        self.state.update(epoch=epoch + 1, phase=self.phase)
        atomic_write(self.run / "state.json", json.dumps(self.state, indent=2))
        _write_csv(self.run / "log.csv", self.state["history"])
        _plot_history(self.run, self.state["history"])

    def _recalibrate(self, epoch: int) -> None:
        """Precise BN over letterboxed training images drawn with the run's seed and the epoch."""
        records = self.train_dataset.records
        count = min(self.config["bn_recalibration"] * self.config["batch_size"], len(records))
        rng = np.random.default_rng([self.config["seed"], epoch, 7])
        picked = [records[i] for i in sorted(rng.choice(len(records), count, replace=False))]
        subset = dataclasses.replace(self.train_dataset, records=picked)
        batches = letterboxed(subset, self.model.input_size, self.config["batch_size"], self.config)
        recalibrate_batchnorm(self.model, (batches[i] for i in range(len(batches))))

    def _monitor(self, logs) -> tuple[tuple[str, float] | None, bool]:
        best = self.state.get("best")
        if "val_map50" in logs:
            value = float(logs["val_map50"])
            better = best is None or best["metric"] != "val_map50" or value > best["value"]
            return ("val_map50", value), better
        if "val_loss" in logs and (self.config["eval_period"] == 0 or self.val_dataset is None):
            value = float(logs["val_loss"])
            better = best is None or value < best["value"]
            return ("val_loss", value), better
        return None, False


def _read_state(run: Path) -> dict:
    path = run / "state.json"
    if path.is_file():
        return json.loads(path.read_text())
    return {"epoch": 0, "phase": None, "best": None, "history": [], "lr": [0.0, 0.0]}


def _write_csv(path: Path, history: list[dict]) -> None:
    keys = sorted({k for row in history for k in row} - {"epoch"})
    lines = [",".join(["epoch", *keys])]
    for row in history:
        lines.append(
            ",".join([str(row["epoch"]), *("" if k not in row else f"{row[k]:.6g}" for k in keys)])
        )
    atomic_write(path, "\n".join(lines) + "\n")


def _plot_history(run: Path, history: list[dict]) -> None:
    import matplotlib.pyplot as plt

    from attnyolo.engine.plots import save_figure

    epochs = [row["epoch"] for row in history]
    figure, axes = plt.subplots(figsize=(6, 4))
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
        figure, axes = plt.subplots(figsize=(6, 4))
        axes.plot(*zip(*points, strict=True), marker="o", color="tab:red")
        axes.set(xlabel="epoch", ylabel="mAP@0.5", title="validation mAP@0.5", ylim=(0, 1))
        axes.grid(alpha=0.3)
        save_figure(figure, run / "map.png")


def train(
    config: dict[str, Any] | None = None,
    resume: str | os.PathLike | None = None,
    verbose: int | str = "auto",
) -> Path:
    """Trains a detector; returns the run folder.

    Args:
        config: a resolved configuration (`resolve_config`); ignored when resuming.
        resume: a run folder to continue: its saved configuration, weights, optimizer state,
            epoch count and schedule.
    """
    if resume is not None:
        run = Path(resume)
        if not (run / "config.yaml").is_file():
            raise ValueError(f"{run}: not a run folder (no config.yaml)")
        # Settings added since the run started take their defaults.
        config = {**default_config(), **yaml.safe_load((run / "config.yaml").read_text())}
    elif config is None:
        raise ValueError("train() needs a config or a run folder to resume")
    else:
        run = _new_run_dir(config)
        run.mkdir(parents=True, exist_ok=False)
        atomic_write(run / "config.yaml", yaml.safe_dump(config, sort_keys=False))

    keras.utils.set_random_seed(config["seed"])
    # The loader threads do the image work; OpenCV's own thread pool only competes with them.
    cv2.setNumThreads(1)
    if config["mixed_precision"]:
        keras.mixed_precision.set_dtype_policy("mixed_float16")
    train_set = load_dataset(config["data"], config["train_split"], config["classes"])
    val_set = (
        load_dataset(config["data"], config["val_split"], train_set.class_names)
        if config["val_split"]
        else None
    )
    strategy = resolve_strategy(config["distribute"])
    batch_sizes = [config["batch_size"]]
    if config["freeze_train"]:
        batch_sizes.append(config["freeze_batch_size"])
    with distribution_scope(strategy, batch_sizes) as replicas:
        if strategy is not None:
            print(f"data-parallel training ({strategy}) over {replicas} replicas")
        _train_phases(config, run, resume, train_set, val_set, strategy, verbose)
    return run


def _train_phases(config, run, resume, train_set, val_set, strategy, verbose) -> None:
    state = _read_state(run)
    model = build_model(config, train_set.class_names)
    if resume is not None and (run / "weights" / "last.keras").is_file():
        report = transfer_weights(
            model, load_detector(run / "weights" / "last.keras"), "last.keras"
        )
        print(f"resuming {run} after epoch {state['epoch']}")
    else:
        report = load_initial_weights(model, config)
        if report is not None:
            print(report)
        else:
            frozen = config["freeze_train"] and config["init_epoch"] < config["freeze_epoch"]
            print(
                "no weights: training from scratch, "
                + (
                    f"with the backbone frozen at its random values for epochs "
                    f"{config['init_epoch'] + 1}-{config['freeze_epoch']} (freeze_from_scratch)"
                    if frozen
                    else "nothing frozen"
                )
            )
            if config["prior_bias_init"]:
                init_head_priors(model)
    model.set_loss(loss_for(config, model))
    _warn_if_too_few_steps(config, len(train_set))

    start = max(state["epoch"], config["init_epoch"])
    phases = []
    if config["freeze_train"] and start < config["freeze_epoch"]:
        phases.append(
            (
                "frozen",
                start,
                min(config["freeze_epoch"], config["epochs"]),
                config["freeze_batch_size"],
            )
        )
    unfrozen_start = max(start, config["freeze_epoch"] if config["freeze_train"] else start)
    if unfrozen_start < config["epochs"]:
        phases.append(("unfrozen", unfrozen_start, config["epochs"], config["batch_size"]))
    for phase, begin, end, batch_size in phases:
        model.backbone.trainable = phase != "frozen"
        sequence = DetectionSequence(
            train_set,
            model.input_size,
            batch_size,
            train=True,
            mosaic=config["mosaic"],
            mixup=config["mixup"],
            special_aug_ratio=config["special_aug_ratio"],
            epochs=config["epochs"],
            seed=config["seed"],
            scale=tuple(config["scale"]),
            hsv=tuple(config["hsv"]),
            resize_filter=config["resize_filter"],
            max_boxes=config["max_boxes"],
            workers=config["workers"],
        )
        if len(sequence) == 0:
            raise ValueError(
                f"{len(train_set)} training images make no full batch of {batch_size}; lower the "
                "batch size"
            )
        sequence.set_epoch(begin)
        lr, min_lr = learning_rates(config, batch_size)
        state = _read_state(run)
        state["lr"] = [lr, min_lr]
        atomic_write(run / "state.json", json.dumps(state, indent=2))
        optimizer = make_optimizer(config, model, lr, len(sequence))
        model.compile(optimizer=optimizer, jit_compile=jit_compile_for(config, strategy))
        if resume is not None and state.get("phase") == phase:
            _load_optimizer(optimizer, model, run / "optimizer.npz")
        validation = None
        if val_set is not None and not config["eval_period"]:
            validation = letterboxed(val_set, model.input_size, batch_size, config)
        callbacks = [
            RunCallback(run, config, val_set, phase, config["epochs"], train_set),
            keras.callbacks.TerminateOnNaN(),
        ]
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
        print(
            f"{phase} phase: epochs {begin + 1}-{end}, batch {batch_size}, "
            f"{config['optimizer']} lr {lr:.2e}, {decay}"
        )
        model.fit(
            sequence,
            epochs=end,
            initial_epoch=begin,
            validation_data=validation,
            callbacks=callbacks,
            verbose=verbose,
            shuffle=False,  # the sequence shuffles itself, seeded
        )
        if model.stop_training and end < config["epochs"]:
            break


def jit_compile_for(config: dict[str, Any], strategy: str | None) -> bool:
    """Whether to XLA-compile the train step for this config and distribution strategy."""
    if config["jit_compile"] != "auto":
        return bool(config["jit_compile"])
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

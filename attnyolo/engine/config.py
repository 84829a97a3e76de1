"""Training settings: the defaults (`configs/train.yaml`, the original train.py's), the named
recipes on top of them (`configs/original.yaml`, `configs/fast.yaml`), a user's YAML and
`--set` overrides on top of those; checked once, before anything is written.

A `TrainConfig` is made only by `resolve_config` (a new run) or `TrainConfig.from_run` (a run
to resume): both check every setting, so a run never starts, or resumes, from settings that
would fail later.
"""

from __future__ import annotations

import math
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

RECIPES = ("original", "fast")
WEIGHT_DECAY_TYPES = ("l2", "decoupled")
OBJECTNESS_TARGETS = ("one", "iou")
OBJ_NORMALIZATIONS = ("non_ignored", "all")
LOSS_WEIGHTS = ("original", "yolov5")


class TrainConfig(dict):
    """The resolved, checked settings of a run (a dict of train.yaml's keys)."""

    @classmethod
    def from_run(cls, run: str | os.PathLike) -> TrainConfig:
        """The settings a run folder was started with; settings added since take their
        defaults. Checked like a new run's."""
        path = Path(run) / "config.yaml"
        if not path.is_file():
            raise ValueError(f"{run}: not a run folder (no config.yaml)")
        saved = _read_yaml(path)
        defaults = default_config()
        unknown = sorted(set(saved) - set(defaults))
        if unknown:
            raise ValueError(f"{path}: unknown settings {unknown}")
        config = cls({**defaults, **saved})
        check_config(config)
        return config


def _read_yaml(path: Path) -> dict[str, Any]:
    """A config file's settings; an unreadable file is a ValueError that names it."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:
        # An alias can make a value refer to itself, or expand exponentially when read (a
        # "billion laughs"); a file of settings has no use for one.
        if any(isinstance(token, yaml.AliasToken) for token in yaml.scan(text)):
            raise ValueError(f"{path}: YAML aliases (*name) are not taken in a config file")
        loaded = yaml.safe_load(text) or {}
    except (yaml.YAMLError, RecursionError) as e:
        problem = " ".join(str(e).split()) or "nested too deeply"
        raise ValueError(f"{path}: not valid YAML ({problem})") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: a config file is a mapping of settings")
    keys = [k for k in loaded if not isinstance(k, str)]
    if keys:
        raise ValueError(f"{path}: setting names are text, got {keys[0]!r}")
    return {k: _numbers(v) for k, v in loaded.items()}


def default_config() -> dict[str, Any]:
    text = resources.files("attnyolo.configs").joinpath("train.yaml").read_text()
    return yaml.safe_load(text)


def recipe_config(name: str) -> dict[str, Any]:
    """The settings a named recipe sets (`attnyolo/configs/<name>.yaml`)."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose from {', '.join(RECIPES)}")
    text = resources.files("attnyolo.configs").joinpath(f"{name}.yaml").read_text()
    return {k: _numbers(v) for k, v in (yaml.safe_load(text) or {}).items()}


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
    try:
        # An alias can make a value refer to itself, or expand exponentially (a "billion
        # laughs"), and a one-line setting has no use for one.
        if any(isinstance(token, yaml.AliasToken) for token in yaml.scan(value)):
            raise ValueError(f"--set {item!r}: YAML aliases (*name) are not taken in a setting")
        parsed = yaml.safe_load(value)
    except (yaml.YAMLError, RecursionError) as e:
        problem = " ".join(str(e).split()) or "nested too deeply"
        raise ValueError(f"--set {item!r}: the value is not valid YAML ({problem})") from None
    return key.strip(), _numbers(parsed)


def parse_attention(spec: Any) -> tuple[str | None, dict[str, Any]]:
    """An attention type and its options, from what a user writes: a name (`"cbam"`), a name
    with options (`"cbam:reduction=16,spatial_bn=true"`, values read as YAML), a YAML mapping
    (`{type: cbam, reduction: 16}`), or None / `"none"`. The name and every option are checked
    against the registered layer: a wrong one is an error that lists the valid ones."""
    import inspect

    from attnyolo.layers.registry import attention_spec_name, get_attention_class

    if isinstance(spec, dict):
        options = dict(spec)
        if "type" not in options:
            raise ValueError(f"attention as a mapping needs a `type` key, got {spec!r}")
        name = options.pop("type")
    elif isinstance(spec, str) and ":" in spec:
        name, _, text = spec.partition(":")
        options = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            if "=" not in item:
                raise ValueError(
                    f"attention options are key=value pairs separated by commas, got {item!r} "
                    f"in {spec!r}"
                )
            key, value = item.split("=", 1)
            try:
                # Aliases could make a value refer to itself or expand exponentially.
                if any(isinstance(token, yaml.AliasToken) for token in yaml.scan(value)):
                    raise ValueError(
                        f"attention option {item!r} in {spec!r}: YAML aliases (*name) are not "
                        "taken in an option"
                    )
                parsed = yaml.safe_load(value)
            except (yaml.YAMLError, RecursionError) as e:
                problem = " ".join(str(e).split()) or "nested too deeply"
                raise ValueError(
                    f"attention option {item!r} in {spec!r}: the value is not valid YAML "
                    f"({problem})"
                ) from None
            options[key.strip()] = _numbers(parsed)
    else:
        name, options = spec, {}
    name = attention_spec_name(name)  # an unknown name fails here, listing the valid ones
    if name is None:
        if options:
            raise ValueError(f"attention none takes no options, got {options}")
        return None, {}
    parameters = inspect.signature(get_attention_class(name).__init__).parameters
    accepted = [k for k in parameters if k not in ("self", "kwargs", "name", "dtype")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"attention {name}: unknown option(s) {', '.join(unknown)}; it takes "
            f"{', '.join(accepted) or 'no options'}"
        )
    return name, options


def resolve_config(
    config_file: str | os.PathLike | None = None, recipe: str | None = None, **overrides
) -> TrainConfig:
    """Defaults, then a recipe, then a YAML file, then overrides; unknown keys are an error that
    lists them. A YAML file may name its recipe (`recipe: fast`); the argument wins."""
    config = default_config()
    layers = []
    loaded = {}
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise ValueError(f"{path}: no such config file")
        loaded = _read_yaml(path)
    recipe = recipe or overrides.get("recipe") or loaded.get("recipe")
    if recipe is not None:
        layers.append((f"recipe {recipe}", recipe_config(recipe)))
    if config_file is not None:
        layers.append((str(config_file), loaded))
    layers.append(("overrides", dict(overrides)))
    for source, values in layers:
        unknown = sorted(set(values) - set(config))
        if unknown:
            raise ValueError(f"{source}: unknown settings {unknown}; known: {sorted(config)}")
        config.update(values)
    config["recipe"] = recipe
    config = TrainConfig(config)
    check_config(config)
    return config


def _choice(config: dict, key: str, choices) -> None:
    if config[key] not in choices:
        names = ", ".join("null" if c is None else str(c) for c in choices)
        raise ValueError(f"{key} must be one of {names}, got {config[key]!r}")


def _number(config: dict, key: str, low: float, integer: bool = False, null: bool = False):
    value = config[key]
    if value is None and null:
        return
    kind = int if integer else (int, float)
    if (
        isinstance(value, bool)
        or not isinstance(value, kind)
        or not math.isfinite(value)
        or value < low
    ):
        what = "an integer" if integer else "a number"
        raise ValueError(f"{key} must be {what} >= {low:g}, got {value!r}")


def _finite(value: Any) -> bool:
    """Whether `value` is a finite number (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_config(config: dict[str, Any]) -> None:
    """Refuses settings that would fail, or mislead, later: every message names the setting."""
    from attnyolo.data.images import check_resize_filter
    from attnyolo.engine.distribute import resolve_strategy
    from attnyolo.engine.evaluate import EVALUATION_PROTOCOLS
    from attnyolo.engine.precision import MIXED_PRECISION
    from attnyolo.losses.yolo import ASSIGNMENTS, OBJ_LOSSES
    from attnyolo.models.yolo import ATTENTION_POSITIONS, normalize_input_size

    if not config["data"]:
        raise ValueError("No data set: set `data` (a VOC root, COCO JSON, YOLO YAML, ...)")
    _choice(config, "recipe", (None, *RECIPES))
    _choice(config, "optimizer", ("sgd", "adam", "adamw"))
    _choice(config, "lr_schedule", ("cos", "step"))
    _choice(config, "assignment", ASSIGNMENTS)
    _choice(config, "obj_loss", OBJ_LOSSES)
    _choice(config, "weight_decay_type", (None, *WEIGHT_DECAY_TYPES))
    _choice(config, "objectness_target", OBJECTNESS_TARGETS)
    _choice(config, "obj_normalization", OBJ_NORMALIZATIONS)
    _choice(config, "loss_weights", LOSS_WEIGHTS)
    _choice(config, "val_protocol", EVALUATION_PROTOCOLS)
    _choice(config, "jit_compile", ("auto", True, False))
    _choice(config, "lr_clip", (True, False))
    _choice(config, "mixed_precision", MIXED_PRECISION)
    parse_attention(config["attention"])  # an unknown name or option fails here, listing valid
    positions = config["attention_positions"]
    if not (
        isinstance(positions, list)
        and all(isinstance(p, str) for p in positions)
        and set(positions) <= set(ATTENTION_POSITIONS)
    ):
        raise ValueError(
            f"attention_positions is a list of {', '.join(ATTENTION_POSITIONS)}, got {positions!r}"
        )
    resolve_strategy(config["distribute"])  # an unknown name, or one for another backend
    normalize_input_size(config["input_size"])
    check_resize_filter(config["resize_filter"])
    classes = config["classes"]
    if classes is not None:
        if isinstance(classes, str):
            if not Path(classes).is_file():
                raise ValueError(f"{classes}: no such class-names file")
        elif not (
            isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)
        ):
            raise ValueError(
                f"classes is a class-names file or a list of names, got {classes!r} (a count "
                "names no class: training reads the names from the data, or from this file)"
            )
    for key in (
        "epochs",
        "freeze_epoch",
        "batch_size",
        "freeze_batch_size",
        "workers",
        "ema_every",
    ):
        _number(config, key, 1, integer=True)
    for key in ("init_epoch", "eval_period", "save_period", "early_stopping", "bn_recalibration"):
        _number(config, key, 0, integer=True)
    for key in ("init_lr", "min_lr", "weight_decay"):
        _number(config, key, 0, null=True)
    _number(config, "time", 0.1, null=True)
    _number(config, "close_mosaic", 0, integer=True, null=True)
    _number(config, "checkpoint_interval", 0)
    _number(config, "save_minutes", 0)
    _number(config, "ema_tau", 0)
    for key in ("mosaic", "mixup", "special_aug_ratio", "label_smoothing", "ema_momentum"):
        _number(config, key, 0)
        if config[key] > 1:
            raise ValueError(f"{key} must lie in [0, 1], got {config[key]!r}")
    scale = config["scale"]
    if not (
        isinstance(scale, list | tuple)
        and len(scale) == 2
        and all(_finite(s) for s in scale)
        and 0 < scale[0] <= scale[1]
    ):
        raise ValueError(f"scale is a range [low, high] with 0 < low <= high, got {scale!r}")
    balance = config["loss_balance"]
    if not (
        isinstance(balance, list | tuple)
        and len(balance) == 2
        and all(_finite(b) and b >= 0 for b in balance)
    ):
        raise ValueError(
            f"loss_balance is the objectness weight of the two heads [stride 32, stride 16], "
            f"got {balance!r}"
        )
    for key in ("box_weight", "obj_weight", "cls_weight"):
        _number(config, key, 0, null=True)
    if config["freeze_train"] and not config["weights"] and not config["freeze_from_scratch"]:
        raise ValueError(
            "freeze_train with no weights would train the neck on a frozen, random backbone "
            f"for {config['freeze_epoch']} epochs (the original says: never freeze when training "
            "from scratch). Give pretrained --weights, set freeze_train false, or insist with "
            "--freeze-from-scratch (freeze_from_scratch: true)."
        )
    boxes = config["max_boxes"]
    if boxes != "auto" and (isinstance(boxes, bool) or not isinstance(boxes, int) or boxes < 1):
        raise ValueError(f"max_boxes must be a positive integer or auto, got {boxes!r}")
    if not 0 <= config["init_epoch"] < config["epochs"]:
        raise ValueError(
            f"need 0 <= init_epoch < epochs, got {config['init_epoch']}, {config['epochs']}"
        )
    for key in ("weights", "anchors"):
        value = config[key]
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{key} is a file path, got {value!r}")
        if value and not Path(value).is_file():
            raise ValueError(f"{value}: no such {key} file")

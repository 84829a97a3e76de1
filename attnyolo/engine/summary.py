"""Parameter and FLOP counts of YOLOv4-tiny with each attention type."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from attnyolo.models.flops import count_flops
from attnyolo.models.yolo import YOLOv4Tiny

DEFAULT_ATTENTIONS = (None, "se", "cbam", "eca", "ca")


def _trainable(model: keras.Model) -> int:
    return sum(int(keras.ops.size(w)) for w in model.trainable_weights)


def summarize(model: YOLOv4Tiny) -> dict:
    """Counts for one model: parameters (all, as Darknet counts them, BN statistics included),
    trainable parameters and FLOPs (2 x multiply-adds) for one image."""
    return {
        "attention": model.attention or "none",
        "input_size": list(model.input_size),
        "classes": model.num_classes,
        "params": int(model.count_params()),
        "trainable_params": _trainable(model),
        "flops": count_flops(model),
    }


def attention_table(
    input_size: int | Sequence[int] = 416,
    classes: int | Sequence[str] = 80,
    attentions: Sequence[str | None] = DEFAULT_ATTENTIONS,
) -> list[dict]:
    """`summarize` for YOLOv4-tiny with each attention type, plus what each adds over none."""
    from attnyolo.engine.config import parse_attention

    rows = []
    for spec in attentions:
        attention, options = parse_attention(spec)  # "cbam:reduction=8" too
        model = YOLOv4Tiny(
            classes=classes, input_size=input_size, attention=attention, attention_kwargs=options
        )
        rows.append(summarize(model))
        if options:
            rows[-1]["attention"] = spec
    base = next((r for r in rows if r["attention"] == "none"), None)
    if base is None:
        base = summarize(YOLOv4Tiny(classes=classes, input_size=input_size))
    base_params, base_flops = base["params"], base["flops"]
    for row in rows:
        row["added_params"] = row["params"] - base_params
        row["added_flops"] = row["flops"] - base_flops
    return rows


def format_table(rows: list[dict]) -> str:
    head = rows[0]
    size = "x".join(map(str, head["input_size"]))
    width = max(12, *(len(str(r["attention"])) + 1 for r in rows))
    lines = [
        f"YOLOv4-tiny at {size}, {head['classes']} classes",
        f"{'attention':<{width}}{'params':>12}{'added':>10}{'trainable':>12}"
        f"{'GFLOPs':>9}{'added MFLOPs':>14}",
    ]
    for r in rows:
        lines.append(
            f"{r['attention']:<{width}}{r['params']:>12,}{r['added_params']:>10,}"
            f"{r['trainable_params']:>12,}{r['flops'] / 1e9:>9.2f}{r['added_flops'] / 1e6:>14.2f}"
        )
    lines.append("params count BN moving statistics, as Darknet does; FLOPs = 2 x multiply-adds.")
    return "\n".join(lines)

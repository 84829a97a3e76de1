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


def measure_latency(model: YOLOv4Tiny, repeats: int = 20, warmup: int = 5) -> float:
    """Milliseconds per image of the network alone at batch 1 on this machine (batch norm folded,
    as `attnyolo predict` runs it): the median of `repeats` timed calls after `warmup`."""
    import numpy as np

    from attnyolo.engine.fps import time_calls
    from attnyolo.inference.keras_runtime import KerasRuntime

    runtime = KerasRuntime(model, fuse=True)
    batch = np.random.default_rng(0).random((1, *model.input_size, 3), dtype=np.float32)
    return float(np.median(time_calls(lambda: runtime(batch), repeats, warmup))) * 1000


def attention_table(
    input_size: int | Sequence[int] = 416,
    classes: int | Sequence[str] = 80,
    attentions: Sequence[str | None] = DEFAULT_ATTENTIONS,
    latency: bool = False,
) -> list[dict]:
    """`summarize` for YOLOv4-tiny with each attention type, plus what each adds over none;
    with `latency`, each model's measured milliseconds per image (`measure_latency`)."""
    from attnyolo.engine.config import parse_attention

    rows = []
    for spec in attentions:
        attention, options = parse_attention(spec)  # "cbam:reduction=8" too
        model = YOLOv4Tiny(
            classes=classes, input_size=input_size, attention=attention, attention_kwargs=options
        )
        rows.append(summarize(model))
        if latency:
            rows[-1]["latency_ms"] = measure_latency(model)
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
    timed = "latency_ms" in head
    lines = [
        f"YOLOv4-tiny at {size}, {head['classes']} classes",
        f"{'attention':<{width}}{'params':>12}{'added':>10}{'trainable':>12}"
        f"{'GFLOPs':>9}{'added MFLOPs':>14}" + (f"{'latency ms':>12}" if timed else ""),
    ]
    for r in rows:
        lines.append(
            f"{r['attention']:<{width}}{r['params']:>12,}{r['added_params']:>10,}"
            f"{r['trainable_params']:>12,}{r['flops'] / 1e9:>9.2f}{r['added_flops'] / 1e6:>14.2f}"
            + (f"{r['latency_ms']:>12.1f}" if timed else "")
        )
    lines.append(
        "params count BN moving statistics, as Darknet does; FLOPs = 2 x multiply-adds of "
        "convolutions and dense layers (an attention's other products are not counted)."
    )
    if timed:
        lines.append(
            "latency: the network alone, batch 1, batch norm folded, median of 20 calls on this "
            "machine (compare rows of one run only)."
        )
    return "\n".join(lines)

"""Inference latency at 416x416, batch 1: attnyolo's compiled forward pass against an eager call
and against OpenCV's DNN module running the same weights from Darknet files, plus the compiled
pass for each attention type. Prints a table and writes it to docs/benchmarks.md.

    python bench/bench_inference.py [--repeats 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from attnyolo.models import YOLOv4Tiny, save_darknet  # noqa: E402

try:
    from _report import write_section  # run as `python bench/bench_inference.py`
except ImportError:
    from bench._report import write_section

ROOT = Path(__file__).resolve().parents[1]


def timed(fn, repeats: int, rounds: int = 2) -> float:
    """Milliseconds of `fn()`: the lowest over `rounds` of the median of `repeats` calls, after
    five warm-up calls (the first calls compile and fill caches; rounds damp a noisy neighbour)."""
    for _ in range(5):
        fn()
    medians = []
    for _ in range(rounds):
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - start) * 1e3)
        medians.append(statistics.median(samples))
    return min(medians)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    x = np.random.default_rng(0).random((1, 416, 416, 3), dtype=np.float32)
    rows = []

    model = YOLOv4Tiny(80)
    compiled = timed(lambda: model.predict_on_batch(x), args.repeats)
    rows.append(("none", "attnyolo, compiled (predict_on_batch)", compiled))
    rows.append(("none", "attnyolo, eager call", timed(lambda: model(x), args.repeats)))
    if hasattr(cv2.dnn, "readNetFromDarknet"):
        with tempfile.TemporaryDirectory() as tmp:
            save_darknet(model, Path(tmp) / "m.weights", Path(tmp) / "m.cfg")
            net = cv2.dnn.readNetFromDarknet(str(Path(tmp) / "m.cfg"), str(Path(tmp) / "m.weights"))
        blob = np.ascontiguousarray(x.transpose(0, 3, 1, 2))

        def opencv():
            net.setInput(blob)
            net.forward(["conv_29", "conv_36"])

        rows.append(
            ("none", "OpenCV DNN (Darknet importer), same weights", timed(opencv, args.repeats))
        )
    for attention in ("se", "cbam", "eca", "ca"):
        model = YOLOv4Tiny(80, attention=attention)
        rows.append(
            (
                attention,
                "attnyolo, compiled",
                timed(lambda m=model: m.predict_on_batch(x), args.repeats),
            )
        )

    backend = keras.backend.backend()
    lines = [
        "## Inference latency, 416x416, batch 1",
        "",
        f"`python bench/bench_inference.py` on {os.cpu_count()} CPU cores, Keras backend "
        f"`{backend}`, lowest of two medians of {args.repeats} runs each. Ratios are against "
        "attnyolo's compiled forward pass without attention, measured in the same run.",
        "",
        "| attention | runner | ms | ratio |",
        "|---|---|---:|---:|",
    ]
    for attention, runner, ms in rows:
        lines.append(f"| {attention} | {runner} | {ms:.1f} | {ms / compiled:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    write_section(args.output, lines[0], text)


if __name__ == "__main__":
    main()

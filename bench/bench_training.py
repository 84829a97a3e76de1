"""Training throughput at 416x416, batch 8, for each attention type, next to the loader's
throughput with the original's augmentation (mosaic 0.5, mixup 0.5): the loader must deliver
more images per second than the train step takes, or the model waits for data.

Data: ../shared/data/voc20 trainval when present (real VOC JPEGs), else a synthetic shapes set
generated in a temporary folder. Training steps run on batches loaded beforehand, so the two
figures do not compete for the cores; in `fit` they share them. Writes its section of
docs/benchmarks.md.

    python bench/bench_training.py [--steps 8] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from attnyolo.data.datasets import load_dataset  # noqa: E402
from attnyolo.data.pipeline import DetectionSequence, loader_throughput  # noqa: E402
from attnyolo.data.synthetic import generate_shapes  # noqa: E402
from attnyolo.engine.train import default_config, jit_compile_for  # noqa: E402
from attnyolo.losses import YoloLoss  # noqa: E402
from attnyolo.models import YOLOv4Tiny  # noqa: E402

try:
    from _report import write_section  # run as `python bench/bench_training.py`
except ImportError:
    from bench._report import write_section

ROOT = Path(__file__).resolve().parents[1]
VOC20 = ROOT.parent / "shared" / "data" / "voc20" / "VOC2007"
HEADING = "## Training and loading throughput, 416x416, batch 8"


def train_throughput(model: YOLOv4Tiny, batches: list, steps: int) -> float:
    """Images per second of `train_on_batch` (the compiled train step `fit` runs), after two
    warm-up steps (the first compiles)."""
    model.set_loss(YoloLoss.from_model(model))
    jit = jit_compile_for(default_config(), None)
    model.compile(
        optimizer=keras.optimizers.SGD(1e-3, momentum=0.937, nesterov=True), jit_compile=jit
    )
    for x, y in batches[:2]:
        model.train_on_batch(x, y)
    start = time.perf_counter()
    images = 0
    for i in range(steps):
        x, y = batches[i % len(batches)]
        model.train_on_batch(x, y)
        images += len(x)
    return images / (time.perf_counter() - start)


def padded(batches: list, max_boxes: int) -> list:
    """The same batches with the boxes padded to `max_boxes` rows (what the loss works on)."""
    out = []
    for x, y in batches:
        boxes = np.zeros((len(x), max_boxes, 4), np.float32)
        classes = np.full((len(x), max_boxes), -1, np.int32)
        n = min(max_boxes, y["boxes"].shape[1])
        boxes[:, :n], classes[:, :n] = y["boxes"][:, :n], y["classes"][:, :n]
        out.append((x, {"boxes": boxes, "classes": classes}))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=8, help="timed train steps per model")
    parser.add_argument("--workers", type=int, default=2, help="loader threads")
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        if VOC20.is_dir():
            dataset, source = load_dataset(str(VOC20), "trainval"), "voc20 trainval"
        else:
            root = generate_shapes(Path(tmp) / "shapes", num_images=200)
            dataset, source = load_dataset(str(root), "train"), "synthetic shapes (320x320)"
        sequence = DetectionSequence(
            dataset, 416, 8, mosaic=0.5, mixup=0.5, epochs=None, workers=args.workers
        )
        loader = loader_throughput(sequence, batches=min(30, len(sequence) - 1))
        batches = [sequence[i] for i in range(4)]
    rows = []
    for attention in (None, "se", "cbam", "eca", "ca", "ca_original"):
        model = YOLOv4Tiny(len(dataset.class_names), attention=attention)
        speed = train_throughput(model, padded(batches, 500), args.steps)  # the default
        rows.append((attention or "none", speed))
    baseline = rows[0][1]
    # The loss's box-pair work grows with the padding: the original's max_boxes (500, the
    # default) against 100 and 20, without attention.
    padding = []
    for max_boxes in (500, 100, 20):
        model = YOLOv4Tiny(len(dataset.class_names))
        speed = train_throughput(model, padded(batches, max_boxes), args.steps)
        padding.append((max_boxes, speed))
    lines = [
        HEADING,
        "",
        f"`python bench/bench_training.py` on {os.cpu_count()} CPU cores, Keras backend "
        f"`{keras.backend.backend()}`, data: {source}. Training: images/s of the compiled train "
        f"step (original loss, SGD, max_boxes 500), {args.steps} timed steps after 2 warm-up "
        "steps; ratio "
        "against no attention in the same run. Loader: images/s that `DetectionSequence` "
        f"delivers with mosaic 0.5 and mixup 0.5 on {args.workers} threads, alone; loader / "
        "training above 1 means the loader keeps up (in `fit` both share the cores).",
        "",
        "| attention | training img/s | ratio | loader img/s | loader / training |",
        "|---|---:|---:|---:|---:|",
    ]
    for attention, speed in rows:
        lines.append(
            f"| {attention} | {speed:.2f} | {speed / baseline:.2f} | {loader:.1f} | "
            f"{loader / speed:.1f} |"
        )
    lines += [
        "",
        "The loss works on the boxes padded to `max_boxes` (no attention, the same batches, "
        f"at most {max(int((y['classes'] >= 0).sum(1).max()) for _, y in batches)} real boxes "
        "per image):",
        "",
        "| max_boxes | training img/s | ratio to 500 |",
        "|---:|---:|---:|",
    ]
    for max_boxes, speed in padding:
        lines.append(f"| {max_boxes} | {speed:.2f} | {speed / padding[0][1]:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    write_section(args.output, HEADING, text)


if __name__ == "__main__":
    main()

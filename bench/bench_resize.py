"""OpenCV's bicubic resize against Pillow's (the original scripts'): pixels, time, and mAP.

Pixels: every image of ../shared/data/voc20/VOC2007 (or --images, a folder) is letterboxed and
plainly resized to 416 x 416 with each filter; the table gives the absolute difference of the two
results over all pixels and channels of all images (mean, 99th percentile, max; letterbox: over
the image area only, the grey padding being equal by construction) and each filter's time per
image (the median over images of the fastest of --repeats runs). Writes its section of
docs/benchmarks.md.

    python bench/bench_resize.py [--images DIR] [--size 416] [--repeats 3]

mAP: with --model, detection over a data split once with each filter (the settings of
`attnyolo evaluate`: confidence 0.001, NMS IoU 0.5, 100 per class, plain resize) and the VOC
mAP@0.5 of each; prints both and the difference (writes to --output only when it is given).

    python bench/bench_resize.py --model MODEL.keras --data DATA --split test [--limit N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

from attnyolo.data.images import RESIZE_FILTERS, letterbox, load_image, resize

try:
    from _report import write_section  # run as `python bench/bench_resize.py`
except ImportError:
    from bench._report import write_section

ROOT = Path(__file__).resolve().parents[1]
VOC20 = ROOT.parent / "shared" / "data" / "voc20" / "VOC2007"
SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
FILTERS = list(RESIZE_FILTERS)  # opencv, pillow
SIZERS = {"letterbox": letterbox, "resize": resize}


def fastest(repeats: int, fn, *args, **kwargs) -> tuple[float, object]:
    """The shortest of `repeats` timed calls `fn(*args, **kwargs)`, in ms, and the result."""
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return best * 1e3, out


def image_area(sized: np.ndarray, transform: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The part of a letterboxed canvas the image covers (all of a plain resize)."""
    sx, sy, px, py = transform
    nw, nh = round(sx * shape[1]), round(sy * shape[0])
    return sized[int(py) : int(py) + nh, int(px) : int(px) + nw]


def pixel_table(paths: list[Path], source: str, size: int, repeats: int) -> str:
    histograms = {name: np.zeros(256, np.int64) for name in SIZERS}
    times = {(name, f): [] for name in SIZERS for f in FILTERS}
    shapes = []
    for k, path in enumerate(paths):
        image = load_image(path)
        shapes.append(image.shape[:2])
        for name, sizer in SIZERS.items():
            results = {}
            # Alternate which filter runs first, so that neither always finds a warm cache.
            for f in FILTERS if k % 2 == 0 else FILTERS[::-1]:
                ms, results[f] = fastest(repeats, sizer, image, (size, size), resize_filter=f)
                times[name, f].append(ms)
            (a, transform), (b, _) = results["opencv"], results["pillow"]
            diff = np.abs(
                image_area(a, transform, image.shape).astype(np.int16)
                - image_area(b, transform, image.shape).astype(np.int16)
            )
            histograms[name] += np.bincount(diff.ravel(), minlength=256)
    heights, widths = zip(*shapes, strict=True)
    scales = [min(size / w, size / h) for h, w in shapes]
    lines = [
        f"## Resize filters: OpenCV against Pillow bicubic, {size}x{size}",
        "",
        f"`python bench/bench_resize.py` on {os.cpu_count()} CPU cores: {len(paths)} images of "
        f"{source} (median {statistics.median(widths):.0f} x {statistics.median(heights):.0f}, "
        f"letterbox scale {min(scales):.2f} to {max(scales):.2f}, median "
        f"{statistics.median(scales):.2f}), each sized with both `resize_filter`s. Difference: "
        "|opencv - pillow| in grey levels over every pixel and channel of every image "
        "(letterbox: the image area only). Time: ms per image, the median over images of the "
        f"fastest of {repeats} runs, the whole letterbox or resize included.",
        "",
        "| sizing | mean abs diff | p99 | max | opencv ms | pillow ms | pillow / opencv |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in SIZERS:
        hist = histograms[name]
        levels = np.arange(256)
        mean = (hist * levels).sum() / hist.sum()
        p99 = int(np.searchsorted(np.cumsum(hist), 0.99 * hist.sum()))
        top = int(levels[hist > 0].max())
        cv, pil = (statistics.median(times[name, f]) for f in FILTERS)
        lines.append(
            f"| {name} | {mean:.2f} | {p99} | {top} | {cv:.2f} | {pil:.2f} | {pil / cv:.2f} |"
        )
    return "\n".join(lines) + "\n"


def loader_table(size: int, batches: int) -> str:
    """Images per second of the training `DetectionSequence` (mosaic 0.5, mixup 0.5, batch 8) on
    voc20 trainval with each filter, one batch after the other in one thread: the same batches
    but for the pixels."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from attnyolo.data.datasets import load_dataset
    from attnyolo.data.pipeline import DetectionSequence

    dataset = load_dataset(VOC20, "trainval")
    rates = {}
    for f in FILTERS:
        sequence = DetectionSequence(dataset, size, 8, epochs=10, resize_filter=f)
        sequence[0]  # warm-up: file cache, imports
        start = time.perf_counter()
        images = sum(len(sequence[i][0]) for i in range(1, batches + 1))
        rates[f] = images / (time.perf_counter() - start)
    return "\n".join(
        [
            "",
            f"Training loader, voc20 trainval, batch 8, mosaic 0.5, mixup 0.5, {batches} batches "
            "in one thread (a mosaic resizes four images and mixup a fifth):",
            "",
            "| resize_filter | loader img/s |",
            "|---|---:|",
            *(f"| {f} | {rates[f]:.1f} |" for f in FILTERS),
        ]
    )


def map_comparison(args) -> str:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from attnyolo.data.datasets import load_dataset
    from attnyolo.data.images import ImageError
    from attnyolo.engine.evaluate import DETECTION_DEFAULTS
    from attnyolo.engine.predict import Predictor
    from attnyolo.metrics.voc import evaluate_voc
    from attnyolo.models.saving import load_detector

    model = load_detector(args.model)
    dataset = load_dataset(args.data, split=args.split, class_names=model.class_names)
    records, images = [], []
    for record in dataset.records[: args.limit]:
        try:
            images.append(load_image(record.image))
        except ImageError as e:
            print(f"skipped: {e}")
            continue
        records.append(record)
    settings = dict(DETECTION_DEFAULTS)  # the settings of `attnyolo evaluate`
    if args.letterbox:
        settings["letterbox"] = True
    maps = {}
    for f in FILTERS:
        predictor = Predictor(model, **settings, batch_size=args.batch_size, resize_filter=f)
        start = time.perf_counter()
        detections = predictor(images)
        seconds = time.perf_counter() - start
        maps[f] = evaluate_voc(records, detections, num_classes=len(model.class_names)).map
        print(f"{f}: mAP@0.5 {maps[f] * 100:.2f}% ({seconds:.1f} s)")
    sizing = "letterbox" if settings["letterbox"] else "plain resize"
    lines = [
        "## Resize filters: mAP@0.5",
        "",
        f"`python bench/bench_resize.py --model {args.model} --data {args.data} --split "
        f"{args.split}`: {len(records)} images, confidence {settings['confidence']}, NMS IoU "
        f"{settings['nms_iou']}, {settings['max_per_class']} per class, {sizing}.",
        "",
        "| resize_filter | VOC mAP@0.5 |",
        "|---|---:|",
        *(f"| {f} | {maps[f] * 100:.2f} |" for f in FILTERS),
        f"| pillow - opencv | {(maps['pillow'] - maps['opencv']) * 100:+.2f} |",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", default=str(VOC20 / "JPEGImages"), help="a folder of images")
    parser.add_argument("--size", type=int, default=416)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per image and filter")
    parser.add_argument(
        "--loader-batches", type=int, default=12, help="training loader batches timed (0: none)"
    )
    parser.add_argument("--model", help="a .keras detector: compare mAP@0.5 instead of pixels")
    parser.add_argument("--data", help="with --model: any data set form `attnyolo evaluate` reads")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=None, help="with --model: the first N images")
    parser.add_argument("--letterbox", action="store_true", help="with --model: letterbox")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--output",
        default=None,
        help="Markdown file for the section (default: docs/benchmarks.md for pixels, none for mAP)",
    )
    args = parser.parse_args()
    if args.model:
        if not args.data:
            parser.error("--model needs --data")
        text = map_comparison(args)
        output = args.output
    else:
        folder = Path(args.images)
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES)
        if not paths:
            parser.error(f"{folder}: no images")
        source = "voc20" if folder == VOC20 / "JPEGImages" else f"`{folder}`"
        text = pixel_table(paths, source, args.size, args.repeats)
        if args.loader_batches > 0 and VOC20.is_dir():
            text += loader_table(args.size, args.loader_batches) + "\n"
        output = args.output or ROOT / "docs" / "benchmarks.md"
    print(text)
    if output:
        write_section(output, text.split("\n", 1)[0], text)


if __name__ == "__main__":
    main()

"""Evaluation speed: 5,000 images with 100 detections each, 20 classes.

Times attnyolo's VOC mAP and its COCO figures (through faster-coco-eval, conversion included)
against pycocotools on the same input, in the same run, and appends the table to
docs/benchmarks.md.

    python bench/bench_metrics.py [--images 5000] [--detections 100] [--classes 20]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import time
from pathlib import Path

import numpy as np

from attnyolo.metrics.coco import coco_ground_truth, coco_results, evaluate_coco
from attnyolo.metrics.voc import evaluate_voc

try:
    from _report import write_section  # run as `python bench/bench_metrics.py`
except ImportError:
    from bench._report import write_section

ROOT = Path(__file__).resolve().parents[1]
MARKER = "## Evaluation speed"


def scene(images: int, detections: int, classes: int, seed: int = 0):
    """Ground truth (3 to 12 boxes per 640x480 image) and `detections` boxes per image: jittered
    copies of the ground truth plus random boxes, with random scores."""
    rng = np.random.default_rng(seed)
    ground_truth, found = [], []
    for _ in range(images):
        n = int(rng.integers(3, 13))
        xy = rng.uniform(0, 500, (n, 2))
        wh = rng.uniform(10, 140, (n, 2))
        boxes = np.concatenate([xy, xy + wh], 1)
        cls = rng.integers(0, classes, n)
        ground_truth.append(
            {"boxes": boxes, "classes": cls, "difficult": np.zeros(n, bool), "size": (480, 640)}
        )
        pick = rng.integers(0, n, detections // 2)
        jitter = boxes[pick] + rng.normal(0, 6, (len(pick), 4))
        xy = rng.uniform(0, 500, (detections - len(pick), 2))
        noise = np.concatenate([xy, xy + rng.uniform(10, 140, xy.shape)], 1)
        det_boxes = np.concatenate([jitter, noise])
        det_boxes[:, 2:] = np.maximum(det_boxes[:, 2:], det_boxes[:, :2] + 1)
        det_cls = np.concatenate([cls[pick], rng.integers(0, classes, len(noise))])
        found.append({"boxes": det_boxes, "scores": rng.random(detections), "classes": det_cls})
    return ground_truth, found


def timed(fn):
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        value = fn()
    return time.perf_counter() - start, value


def pycocotools_eval(gt_dict, results, iou_thresholds=None):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO()
    gt.dataset = gt_dict
    gt.createIndex()
    evaluator = COCOeval(gt, gt.loadRes(results), "bbox")
    if iou_thresholds is not None:
        evaluator.params.iouThrs = np.array(iou_thresholds)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return evaluator.stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--detections", type=int, default=100)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    ground_truth, found = scene(args.images, args.detections, args.classes)
    names = [f"c{i}" for i in range(args.classes)]
    gt_dict = coco_ground_truth(ground_truth, names)
    results = coco_results(found, range(len(found)))

    voc_s, voc = timed(lambda: evaluate_voc(ground_truth, found, args.classes))
    ref50_s, ref50 = timed(lambda: pycocotools_eval(gt_dict, results, [0.5]))
    coco_s, coco = timed(
        lambda: evaluate_coco(
            coco_ground_truth(ground_truth, names), coco_results(found, range(len(found)))
        )
    )
    ref_s, ref = timed(lambda: pycocotools_eval(gt_dict, results))
    rows = [
        ("VOC mAP@0.5 (all-point)", "attnyolo `evaluate_voc`", voc_s, ref50_s, voc.map),
        ("AP@0.5 only", "pycocotools (`iouThrs=[0.5]`)", ref50_s, ref50_s, ref50[0]),
        (
            "COCO, 12 figures",
            f"attnyolo `evaluate_coco` ({coco.engine}, with conversion)",
            coco_s,
            ref_s,
            coco.stats["AP"],
        ),
        ("COCO, 12 figures", "pycocotools", ref_s, ref_s, ref[0]),
    ]
    lines = [
        MARKER,
        "",
        f"`python bench/bench_metrics.py`: {args.images:,} images x {args.detections} detections, "
        f"{args.classes} classes, {os.cpu_count()} CPU cores; ratio = time / pycocotools' time "
        "for the same job in the same run (lower is faster). The figures differ between rows by "
        "design: VOC and COCO interpolate precision differently.",
        "",
        "| job | implementation | seconds | ratio | figure |",
        "|---|---|---:|---:|---:|",
    ]
    lines += [
        f"| {j} | {impl} | {s:.2f} | {s / ref:.2f} | {fig:.4f} |" for j, impl, s, ref, fig in rows
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    write_section(args.output, MARKER, text)


if __name__ == "__main__":
    main()

"""COCO detection metrics, computed by faster-coco-eval or pycocotools (not re-implemented).

Both take COCO-format dictionaries in memory: `coco_ground_truth` builds one from records (any
data set form), `coco_results` turns detections into a results list.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

STAT_NAMES = (
    "AP",
    "AP50",
    "AP75",
    "AP_small",
    "AP_medium",
    "AP_large",
    "AR1",
    "AR10",
    "AR100",
    "AR_small",
    "AR_medium",
    "AR_large",
)


@dataclass
class COCOResult:
    """COCO figures: `stats` by name (AP is AP@[.5:.95]), per-class AP@[.5:.95] and AP50 (NaN for
    a class without ground truth), and the evaluator that computed them."""

    stats: dict[str, float]
    per_class_ap: list[float] = field(default_factory=list)
    per_class_ap50: list[float] = field(default_factory=list)
    engine: str = ""


def _get(item, key):
    return item[key] if isinstance(item, dict) else getattr(item, key)


def coco_ground_truth(
    ground_truth: Sequence,
    class_names: Sequence[str],
    image_ids: Sequence[int] | None = None,
    category_ids: Sequence[int] | None = None,
) -> dict:
    """A COCO-format ground-truth dict from records (`boxes`, `classes`, `difficult`, `size`).

    Difficult boxes become `iscrowd=1`: detections on them are neither hits nor misses, as in VOC.
    The area is the box area (records carry no segmentation). Images get ids `0..N-1` unless
    `image_ids` are given; classes get ids `1..C` unless `category_ids` are given.
    """
    image_ids = list(range(len(ground_truth))) if image_ids is None else list(image_ids)
    category_ids = list(range(1, len(class_names) + 1)) if category_ids is None else category_ids
    images, annotations = [], []
    for record, image_id in zip(ground_truth, image_ids, strict=True):
        size = _get(record, "size") if not isinstance(record, dict) else record.get("size")
        height, width = size if size else (0, 0)
        images.append({"id": image_id, "height": int(height), "width": int(width)})
        boxes = np.asarray(_get(record, "boxes"), np.float64).reshape(-1, 4)
        classes = np.asarray(_get(record, "classes")).reshape(-1)
        difficult = np.asarray(_get(record, "difficult"), bool).reshape(-1)
        for box, cls, hard in zip(boxes, classes, difficult, strict=True):
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(category_ids[int(cls)]),
                    "bbox": [float(box[0]), float(box[1]), float(w), float(h)],
                    "area": float(w * h),
                    "iscrowd": int(hard),
                }
            )
    categories = [{"id": int(c), "name": n} for c, n in zip(category_ids, class_names, strict=True)]
    return {"images": images, "annotations": annotations, "categories": categories}


def coco_results(
    detections: Sequence,
    image_ids: Sequence,
    category_ids: Sequence[int] | None = None,
) -> list[dict]:
    """Detections (`boxes` x1y1x2y2, `scores`, `classes`) as a COCO results list."""
    results = []
    for dets, image_id in zip(detections, image_ids, strict=True):
        boxes = np.asarray(_get(dets, "boxes"), np.float64).reshape(-1, 4)
        for box, score, cls in zip(boxes, _get(dets, "scores"), _get(dets, "classes"), strict=True):
            category = int(cls) + 1 if category_ids is None else int(category_ids[int(cls)])
            results.append(
                {
                    "image_id": image_id,
                    "category_id": category,
                    # Unrounded, so that evaluating the written file gives the same figures
                    # (rounded scores create ties that reorder detections).
                    "bbox": [float(v) for v in (*box[:2], *(box[2:] - box[:2]))],
                    "score": float(score),
                }
            )
    return results


def available_engines() -> list[str]:
    engines = []
    for name, module in (("faster-coco-eval", "faster_coco_eval"), ("pycocotools", "pycocotools")):
        with contextlib.suppress(ImportError):
            __import__(module)
            engines.append(name)
    return engines


def evaluate_coco(ground_truth: dict, results: list[dict], engine: str = "auto") -> COCOResult:
    """COCO bbox evaluation of `results` against a COCO-format `ground_truth` dict.

    Args:
        ground_truth: a COCO instances dict (images, annotations, categories), e.g. a data set's
            own JSON (crowd boxes, segmentation areas and all) or `coco_ground_truth(...)`.
        results: a COCO results list (`image_id`, `category_id`, `bbox` [x, y, w, h], `score`).
        engine: "faster-coco-eval", "pycocotools", or "auto" (the first of these installed).

    Returns:
        The 12 standard figures (-1 from the evaluator, for "no ground truth in this area range",
        becomes NaN) and per-class AP in the order of `ground_truth["categories"]` sorted by id.
    """
    engines = available_engines()
    if engine == "auto":
        if not engines:
            raise ImportError("COCO metrics need faster-coco-eval or pycocotools installed")
        engine = engines[0]
    if engine not in ("faster-coco-eval", "pycocotools"):
        raise ValueError(f"Unknown COCO engine {engine!r}: faster-coco-eval or pycocotools")
    category_ids = sorted(c["id"] for c in ground_truth["categories"])
    if not results:
        # Both evaluators refuse an empty results list; with no detections every AP and AR is 0
        # where there is ground truth.
        has_gt = {a["category_id"] for a in ground_truth["annotations"] if not a.get("iscrowd")}
        stats = {name: 0.0 for name in STAT_NAMES}
        per_class = [0.0 if c in has_gt else math.nan for c in category_ids]
        return COCOResult(stats, per_class, list(per_class), engine)
    with contextlib.redirect_stdout(io.StringIO()):
        if engine == "faster-coco-eval":
            from faster_coco_eval import COCO, COCOeval_faster

            gt = COCO(ground_truth)
            evaluator = COCOeval_faster(gt, gt.loadRes(results), iouType="bbox")
        else:
            from pycocotools.coco import COCO
            from pycocotools.cocoeval import COCOeval

            gt = COCO()
            gt.dataset = ground_truth
            gt.createIndex()
            evaluator = COCOeval(gt, gt.loadRes(results), iouType="bbox")
        evaluator.params.catIds = category_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = {
        name: (math.nan if value < 0 else float(value))
        for name, value in zip(STAT_NAMES, evaluator.stats[: len(STAT_NAMES)], strict=True)
    }
    # precision: [IoU thresholds, recall points, classes, area ranges, max detections]; area
    # range 0 is "all", the last max-detections setting is 100. -1 marks "no ground truth".
    precision = np.asarray(evaluator.eval["precision"])
    per_class = [_mean_valid(precision[:, :, k, 0, -1]) for k in range(len(category_ids))]
    per_class50 = [_mean_valid(precision[0, :, k, 0, -1]) for k in range(len(category_ids))]
    return COCOResult(stats, per_class, per_class50, engine)


def _mean_valid(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else math.nan

"""PASCAL VOC detection metrics, computed in memory: AP per class and mAP, precision / recall / F1
at a score threshold, and the log-average miss rate of the original scripts' `get_map`.

Matching follows the VOC devkit (`VOCevaldet.m`) and py-faster-rcnn's `voc_eval.py`: within a
class, detections are visited by descending score; each one takes the ground-truth box of its class
in its image with the highest IoU (the first one on ties); at or above the IoU threshold it is a
true positive if that box is not yet taken, a false positive (duplicate) if it is, and ignored if
that box is `difficult`; below the threshold it is a false positive. A detection never falls back
to its second-best box. Because the chosen box does not depend on what was matched before, the
whole procedure vectorizes: for each ground-truth box, the first detection (in score order) that
chose it is the true positive and every later one a duplicate.

Conventions (each differs somewhere among the reference implementations, so each is a choice):

- A detection counts at `IoU >= iou_threshold`, as `VOCevaldet.m` (`ovmax>=VOCopts.minoverlap`)
  and the original `get_map` do; py-faster-rcnn's `voc_eval.py` uses `>`. They differ only on
  exact ties, e.g. IoU exactly 0.5 in integer pixel coordinates.
- `pixel_offset=0.0` is continuous IoU, areas `(x2 - x1) * (y2 - y1)`. Records store VOC boxes as
  `xmin - 1, ymin - 1, xmax, ymax`, so continuous IoU on records equals the devkit's IoU on the
  raw 1-based annotation. `pixel_offset=1.0` applies the devkit's `+1` to widths, heights and
  intersections, for boxes still in VOC's inclusive integer pixels.
- The 11-point (VOC2007) AP samples recall at exactly `k / 10`; `voc_eval.py` iterates
  `np.arange(0., 1.1, 0.1)`, whose 0.3, 0.6 and 0.7 are a hair above those values, so a recall of
  exactly 0.3 counts at `t = 0.3` here but not there.
- Scores tie-break in input order (image order, then the order within an image): a stable sort.

Two protocols read the figures off the same curve (`evaluate_voc(protocol=...)`, `PROTOCOLS`):

- "voc" (the default): as above, continuous IoU unless `pixel_offset` says otherwise.
- "original": the original yolov4-tiny-keras `get_map` (`utils/utils_map.py`) to the number, for
  comparing with figures it printed. It differs from "voc" in three places and nowhere else:
  IoU on inclusive pixels (`pixel_offset=1.0`, which it applies to the text values as written);
  P/R/F1 at the score threshold are read at the *top* detection when no detection reaches the
  threshold (its `score_threhold_idx` starts at 0), where "voc" says 0; and the miss rate of a
  class with ground truth but no detection at all is 0 (its `log_average_miss_rate` returns 0
  for an empty curve), where "voc" says 1. Everything else already is get_map's arithmetic:
  AP only for classes with a non-difficult box and mAP their mean, detections on difficult boxes
  kept as flat points of the curve (which changes no figure), `>=` at the IoU threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Most (detection, ground truth) pairs whose IoU is held in memory at once; 2**22 pairs keep the
# temporary arrays to a few hundred MB however crowded the images are.
_MAX_PAIRS = 1 << 22

# The 9 false-positives-per-image points of the miss-rate average (Dollar et al., 2012).
_LAMR_REFERENCE_FPPI = np.logspace(-2.0, 0.0, num=9)


@dataclass(frozen=True)
class Protocol:
    """Where two evaluators that agree on matching and AP part ways (module docstring).

    Attributes:
        pixel_offset: the default `pixel_offset` (0 continuous, 1 inclusive pixels).
        top_when_none_reach: read P/R/F1 at the top detection when no detection scores at least
            the threshold (the original's `score_threhold_idx = 0`), instead of reporting 0.
        lamr_without_detections: the miss rate of a class with ground truth and no detection.
    """

    pixel_offset: float
    top_when_none_reach: bool
    lamr_without_detections: float


PROTOCOLS: dict[str, Protocol] = {
    # A class that is never detected misses everything: miss rate 1.
    "voc": Protocol(pixel_offset=0.0, top_when_none_reach=False, lamr_without_detections=1.0),
    "original": Protocol(pixel_offset=1.0, top_when_none_reach=True, lamr_without_detections=0.0),
}


@dataclass
class ClassResult:
    """Figures for one class.

    The curve arrays have one point per detection that counted (true or false positive), in
    descending score order; detections ignored on `difficult` boxes are left out of them.

    Attributes:
        ap: average precision; NaN when the class has no non-difficult ground truth.
        num_gt: non-difficult ground-truth boxes.
        num_detections: detections of this class, ignored ones included.
        num_ignored: detections that matched a `difficult` box and counted neither way.
        precision: cumulative precision at each curve point.
        recall: cumulative recall at each curve point (NaN when `num_gt` is 0).
        scores: the detection score at each curve point.
        tp: true positives among detections with `score >= score_threshold` (under the
            "original" protocol, when none reaches it: 1 or 0, the top detection's outcome).
        fp: false positives counted the same way.
        precision_at: precision at the score threshold (0 when no detection reaches it; the
            "original" protocol reads the top detection then).
        recall_at: recall at the score threshold (0 when the class has no ground truth).
        f1_at: F1 at the score threshold (0 when precision and recall are both 0).
        lamr: log-average miss rate, with false positives per image counted over the images
            that contain the class, as the original get_map does; 1.0 when the class has ground
            truth but no detection (0 under the "original" protocol, as get_map says), NaN when
            it has no ground truth.
    """

    ap: float
    num_gt: int
    num_detections: int
    num_ignored: int
    precision: np.ndarray
    recall: np.ndarray
    scores: np.ndarray
    tp: int
    fp: int
    precision_at: float
    recall_at: float
    f1_at: float
    lamr: float


@dataclass
class VOCResult:
    """VOC figures for a data set.

    Attributes:
        map: mean AP over the classes with non-difficult ground truth (NaN if there are none).
        per_class: one `ClassResult` per class id.
        iou_threshold: the IoU at or above which a detection can hit a box.
        use_07_metric: whether AP is the VOC2007 11-point interpolation.
        score_threshold: the score at or above which `tp`, `fp` and `*_at` are counted.
        protocol: the name of the protocol in `PROTOCOLS` that read the figures.
        pixel_offset: 0.0 continuous IoU, 1.0 the devkit's inclusive pixels.
    """

    map: float
    per_class: list[ClassResult]
    iou_threshold: float
    use_07_metric: bool
    score_threshold: float
    protocol: str = "voc"
    pixel_offset: float = 0.0

    @property
    def per_class_ap(self) -> list[float]:
        """AP by class id, NaN for classes without ground truth."""
        return [c.ap for c in self.per_class]


def evaluate_voc(
    ground_truth: Sequence[Any],
    detections: Sequence[Any],
    num_classes: int,
    iou_threshold: float = 0.5,
    use_07_metric: bool = False,
    score_threshold: float = 0.5,
    pixel_offset: float | None = None,
    protocol: str = "voc",
) -> VOCResult:
    """PASCAL VOC mAP and per-class figures for detections on a set of images.

    Args:
        ground_truth: one entry per image with `boxes` `(K, 4)` as `x1, y1, x2, y2`, `classes`
            `(K,)` integer class ids and `difficult` `(K,)` bool (optional, default all False);
            an object with those attributes (e.g. `attnyolo.data.records.Record`) or a dict.
        detections: one entry per image, aligned with `ground_truth`, with `boxes` `(M, 4)`,
            `scores` `(M,)` and `classes` `(M,)` (e.g. the decoder's `Detections`, or a dict).
        num_classes: number of classes; class ids must lie in `[0, num_classes)`.
        iou_threshold: a detection can hit a box at `IoU >= iou_threshold`, in `(0, 1]`.
        use_07_metric: VOC2007 11-point AP instead of the all-point AP of VOC2010 and later.
        score_threshold: the score at or above which the `tp`, `fp`, `precision_at`,
            `recall_at` and `f1_at` of each class are counted (the original `get_map` uses 0.5).
        pixel_offset: 0.0 for continuous coordinates, 1.0 for the devkit's inclusive pixels;
            None for the protocol's (0.0 for "voc", 1.0 for "original").
        protocol: "voc" (the default) or "original", the original scripts' `get_map` to the
            number (module docstring; the boxes are then the text files' values as written,
            e.g. from `attnyolo.data.map_out.read_map_out`).

    Returns:
        A `VOCResult`; `per_class[c]` describes class `c`.

    Raises:
        ValueError: when the inputs differ in length, an array has the wrong shape, a class id is
            out of range, a box or score is NaN or infinite, a box has `x2 < x1` or `y2 < y1`,
            or the protocol is unknown.
    """
    if len(ground_truth) != len(detections):
        raise ValueError(
            f"ground_truth has {len(ground_truth)} images but detections has {len(detections)}"
        )
    if not 0.0 < iou_threshold <= 1.0:
        # At 0 a detection touching nothing would "hit", which the devkit never does.
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {sorted(PROTOCOLS)}, got {protocol!r}")
    rules = PROTOCOLS[protocol]
    pixel_offset = rules.pixel_offset if pixel_offset is None else pixel_offset
    if pixel_offset not in (0.0, 1.0):
        raise ValueError(f"pixel_offset must be 0.0 or 1.0, got {pixel_offset}")

    gt = _collect(ground_truth, "ground_truth", num_classes, ("classes", "difficult"))
    det = _collect(detections, "detections", num_classes, ("classes", "scores"))
    outcome, order = _match(gt, det, num_classes, iou_threshold, pixel_offset)

    counted = ~gt["difficult"]
    num_gt = np.bincount(gt["classes"][counted], minlength=num_classes)
    # The miss rate's false positives per image are per image *containing the class*, as the
    # original get_map divides by counter_images_per_class (non-difficult boxes only).
    image_class = np.unique(gt["image"][counted] * num_classes + gt["classes"][counted])
    images_with_class = np.bincount(image_class % num_classes, minlength=num_classes)

    sorted_classes = det["classes"][order]
    bounds = np.searchsorted(sorted_classes, np.arange(num_classes + 1))
    per_class = [
        _class_result(
            outcome[order[bounds[c] : bounds[c + 1]]],
            det["scores"][order[bounds[c] : bounds[c + 1]]],
            int(num_gt[c]),
            int(images_with_class[c]),
            use_07_metric,
            score_threshold,
            rules,
        )
        for c in range(num_classes)
    ]
    aps = [c.ap for c in per_class if c.num_gt > 0]
    return VOCResult(
        map=float(np.mean(aps)) if aps else math.nan,
        per_class=per_class,
        iou_threshold=iou_threshold,
        use_07_metric=use_07_metric,
        score_threshold=score_threshold,
        protocol=protocol,
        pixel_offset=float(pixel_offset),
    )


def _field(item: Any, key: str, where: str, default: Any = None) -> np.ndarray:
    value = item.get(key, default) if isinstance(item, dict) else getattr(item, key, default)
    if value is None:
        raise ValueError(f"{where} has no `{key}`")
    return np.asarray(value)


def _collect(
    items: Sequence[Any], name: str, num_classes: int, keys: tuple[str, str]
) -> dict[str, np.ndarray]:
    """Concatenates per-image arrays into flat ones plus an `image` index, checking shapes image
    by image and values all at once (a per-image value check would dominate the run time)."""
    class_key, extra_key = keys
    boxes, classes, extra, counts = [], [], [], []
    for i, item in enumerate(items):
        where = f"{name}[{i}]"
        b = _field(item, "boxes", where).astype(np.float64)
        if b.size == 0:
            b = b.reshape(0, 4)
        if b.ndim != 2 or b.shape[1] != 4:
            raise ValueError(f"{where}: boxes must have shape (N, 4), got {b.shape}")
        c = _field(item, class_key, where).reshape(-1)
        # `difficult` may be left out: then no box is difficult.
        default = np.zeros(len(b), bool) if extra_key == "difficult" else None
        e = _field(item, extra_key, where, default).reshape(-1)
        if not len(b) == len(c) == len(e):
            raise ValueError(
                f"{where}: {len(b)} boxes, {len(c)} {class_key} and {len(e)} {extra_key}"
            )
        boxes.append(b)
        classes.append(c)
        extra.append(e)
        counts.append(len(b))

    image = np.repeat(np.arange(len(counts)), counts)
    boxes = np.concatenate(boxes) if boxes else np.zeros((0, 4))
    classes = np.concatenate(classes) if classes else np.zeros(0, np.int64)
    extra = np.concatenate(extra) if extra else np.zeros(0)

    def fail(mask: np.ndarray, what: str, values: np.ndarray) -> None:
        if mask.any():
            k = int(np.argmax(mask))
            raise ValueError(f"{name}[{image[k]}]: {what}: {values[k].tolist()}")

    fail(~np.isfinite(boxes).all(axis=1), "box coordinates are NaN or infinite", boxes)
    fail(
        (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]),
        "box has x2 < x1 or y2 < y1",
        boxes,
    )
    classes_f = classes.astype(np.float64)
    fail(
        ~np.isfinite(classes_f) | (classes_f != np.round(classes_f)),
        "class id is not an integer",
        classes,
    )
    fail(
        (classes_f < 0) | (classes_f >= num_classes),
        f"class id outside [0, {num_classes})",
        classes,
    )
    out = {"image": image, "boxes": boxes, "classes": classes_f.astype(np.int64)}
    if extra_key == "scores":
        extra = extra.astype(np.float64)
        fail(~np.isfinite(extra), "score is NaN or infinite", extra)
        out["scores"] = extra
    else:
        out["difficult"] = extra.astype(bool)
    return out


def _pair_iou(a: np.ndarray, b: np.ndarray, offset: float) -> np.ndarray:
    """IoU of `a[i]` with `b[i]`; `offset` 1 is the devkit's inclusive-pixel `+1`."""
    iw = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]) + offset
    ih = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]) + offset
    inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
    area_a = (a[:, 2] - a[:, 0] + offset) * (a[:, 3] - a[:, 1] + offset)
    area_b = (b[:, 2] - b[:, 0] + offset) * (b[:, 3] - b[:, 1] + offset)
    union = area_a + area_b - inter
    # Two zero-area boxes have no union; they do not overlap.
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _match(
    gt: dict[str, np.ndarray],
    det: dict[str, np.ndarray],
    num_classes: int,
    iou_threshold: float,
    offset: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Outcome of every detection (1 true positive, 0 false positive, -1 ignored) and the order
    that sorts detections by class, then by descending score, ties in input order."""
    num_det = len(det["scores"])
    # Ground truth grouped by (image, class), input order kept inside a group so that the first
    # maximum below is the devkit's argmax.
    gt_key = gt["image"] * num_classes + gt["classes"]
    gt_order = np.argsort(gt_key, kind="stable")
    gt_key = gt_key[gt_order]
    det_key = det["image"] * num_classes + det["classes"]
    start = np.searchsorted(gt_key, det_key, side="left")
    count = np.searchsorted(gt_key, det_key, side="right") - start

    best_iou = np.full(num_det, -1.0)
    best_gt = np.full(num_det, -1, np.int64)
    cum = np.cumsum(count)
    lo = 0
    while lo < num_det:
        # Detections [lo, hi) hold at most _MAX_PAIRS pairs (or a single detection).
        done = cum[lo - 1] if lo else 0
        hi = max(int(np.searchsorted(cum, done + _MAX_PAIRS, side="right")), lo + 1)
        c = count[lo:hi]
        has = np.flatnonzero(c > 0)
        if len(has):
            total = int(c.sum())
            first_pair = np.cumsum(c) - c
            pair_det = np.repeat(np.arange(lo, hi), c)
            within = np.arange(total) - np.repeat(first_pair, c)
            pair_gt = gt_order[np.repeat(start[lo:hi], c) + within]
            iou = _pair_iou(det["boxes"][pair_det], gt["boxes"][pair_gt], offset)
            seg = first_pair[has]
            top = np.maximum.reduceat(iou, seg)
            # First pair (hence first box in input order) attaining the maximum.
            at_top = iou == np.repeat(top, c[has])
            first = np.minimum.reduceat(np.where(at_top, np.arange(total), total), seg)
            best_iou[lo + has] = top
            best_gt[lo + has] = pair_gt[first]
        lo = hi

    hit = best_iou >= iou_threshold
    ignored = np.zeros(num_det, bool)
    ignored[hit] = gt["difficult"][best_gt[hit]]
    hit &= ~ignored

    order = np.lexsort((-det["scores"], det["classes"]))  # lexsort is stable
    hits_in_order = order[hit[order]]
    # The first detection (in score order) to choose a box takes it; later ones are duplicates.
    _, first = np.unique(best_gt[hits_in_order], return_index=True)
    outcome = np.zeros(num_det, np.int8)
    outcome[hits_in_order[first]] = 1
    outcome[ignored] = -1
    return outcome, order


def _class_result(
    outcome: np.ndarray,
    scores: np.ndarray,
    num_gt: int,
    num_images: int,
    use_07_metric: bool,
    score_threshold: float,
    rules: Protocol,
) -> ClassResult:
    """Curve and figures for one class from its detections' outcomes in descending score order."""
    kept = outcome >= 0
    # Cumulative counts over all detections, ignored ones included (they add to neither).
    tp_all = np.cumsum(outcome == 1)
    fp_all = np.cumsum(outcome == 0)
    tp, fp = tp_all[kept], fp_all[kept]
    precision = tp / np.maximum(tp + fp, 1)
    if num_gt:
        recall = tp / num_gt
        ap = _average_precision(precision, recall, use_07_metric)
        lamr = (
            _log_average_miss_rate(recall, fp, num_images)
            if len(outcome)
            else rules.lamr_without_detections
        )
    else:
        recall = np.full(len(tp), math.nan)
        ap = lamr = math.nan

    # Read at the last detection scoring at least the threshold (scores are sorted, so these
    # are a prefix); an ignored one there leaves the counts of the detections before it.
    n = int(np.count_nonzero(scores >= score_threshold))
    if n == 0 and len(outcome) and rules.top_when_none_reach:
        n = 1
    tp_at = int(tp_all[n - 1]) if n else 0
    fp_at = int(fp_all[n - 1]) if n else 0
    p_at = tp_at / max(tp_at + fp_at, 1)
    r_at = tp_at / max(num_gt, 1)  # no true positive without ground truth
    f1_at = 2 * p_at * r_at / (p_at + r_at) if p_at + r_at > 0 else 0.0
    return ClassResult(
        ap=ap,
        num_gt=num_gt,
        num_detections=len(outcome),
        num_ignored=int(np.count_nonzero(~kept)),
        precision=precision,
        recall=recall,
        scores=scores[kept],
        tp=tp_at,
        fp=fp_at,
        precision_at=p_at,
        recall_at=r_at,
        f1_at=f1_at,
        lamr=lamr,
    )


def _average_precision(precision: np.ndarray, recall: np.ndarray, use_07_metric: bool) -> float:
    """Area under the interpolated PR curve; `recall` is non-decreasing."""
    if use_07_metric:
        if len(recall) == 0:
            return 0.0
        # Mean over t = 0, 0.1, ..., 1 of the best precision at recall >= t (0 if unreached).
        best_after = np.maximum.accumulate(precision[::-1])[::-1]
        first = np.searchsorted(recall, np.arange(11) / 10.0, side="left")
        reached = first < len(recall)
        return float(np.where(reached, best_after[np.minimum(first, len(recall) - 1)], 0.0).mean())
    # VOC2010+: make precision non-increasing from the right, then sum it over each recall step.
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    step = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[step + 1] - mrec[step]) * mpre[step + 1]))


def _log_average_miss_rate(recall: np.ndarray, fp: np.ndarray, num_images: int) -> float:
    """The original get_map's `log_average_miss_rate`: the geometric mean of the miss rate at 9
    FPPI points spaced evenly in log space over [0.01, 1], each point taking the miss rate of
    the last curve point whose FPPI does not exceed it.

    The original returns 0 for a class without detections, which would score a detector that
    finds nothing as perfect; here that case falls through to a miss rate of 1 everywhere.
    """
    fppi = np.concatenate(([-1.0], fp / num_images))
    miss_rate = np.concatenate(([1.0], 1.0 - recall))
    # fppi is non-decreasing, so "last index with fppi <= ref" is a right-sided search.
    last = np.searchsorted(fppi, _LAMR_REFERENCE_FPPI, side="right") - 1
    return float(math.exp(np.mean(np.log(np.maximum(1e-10, miss_rate[last])))))

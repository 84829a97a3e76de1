"""Bootstrap confidence intervals for mAP@0.5 and for differences between detectors.

A detector's mAP on a test set has two sources of chance: the training run (its seed) and the
finite test set. `paired_bootstrap` resamples both: each round draws seeds with replacement (the
same seeds for the two detectors compared, so the difference is paired by seed) and test images
with replacement (the same images for every run), recomputes each drawn run's mAP on the drawn
images, and takes the mean over the drawn seeds. The interval is the percentile interval of those
rounds.

Recomputing mAP on a resampled image set does not need the matching again: whether a detection
hits a box depends only on its own image, so a drawn image counted `k` times contributes its
detections' outcomes and its boxes `k` times. `match_voc` runs the VOC matching once
(`attnyolo.metrics.voc`), and `weighted_map` computes the all-point mAP@0.5 for any image weights;
with every weight 1 it equals `evaluate_voc(...).map` (tested).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from attnyolo.metrics.voc import _average_precision, _collect, _match
from attnyolo.utils import atomic_path


@dataclass
class MatchedDetections:
    """Every detection's VOC outcome on a test set, enough to recompute mAP for image weights.

    Attributes:
        image: the image index of each detection, detections sorted by class, then by
            descending score (the evaluator's order).
        classes: each detection's class id.
        outcome: 1 true positive, 0 false positive, -1 ignored (it hit a `difficult` box).
        gt_counts: `(num_images, num_classes)` non-difficult ground-truth boxes.
        iou_threshold: the IoU the outcomes were decided at.
    """

    image: np.ndarray
    classes: np.ndarray
    outcome: np.ndarray
    gt_counts: np.ndarray
    iou_threshold: float = 0.5

    @property
    def num_images(self) -> int:
        return int(self.gt_counts.shape[0])

    def save(self, path: str | Path) -> Path:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(
                f,
                image=self.image,
                classes=self.classes,
                outcome=self.outcome,
                gt_counts=self.gt_counts,
                iou_threshold=np.float64(self.iou_threshold),
            )
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> MatchedDetections:
        with np.load(path) as data:
            return cls(
                image=data["image"],
                classes=data["classes"],
                outcome=data["outcome"],
                gt_counts=data["gt_counts"],
                iou_threshold=float(data["iou_threshold"]),
            )


def match_voc(
    ground_truth: Sequence[Any],
    detections: Sequence[Any],
    num_classes: int,
    iou_threshold: float = 0.5,
) -> MatchedDetections:
    """The VOC matching of `evaluate_voc` (same arguments, continuous coordinates), kept per
    detection. An image whose detections are None (it could not be read) has none."""
    empty = {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "classes": np.zeros(0, np.int64)}
    detections = [empty if d is None else d for d in detections]
    if len(ground_truth) != len(detections):
        raise ValueError(
            f"ground_truth has {len(ground_truth)} images but detections has {len(detections)}"
        )
    gt = _collect(ground_truth, "ground_truth", num_classes, ("classes", "difficult"))
    det = _collect(detections, "detections", num_classes, ("classes", "scores"))
    outcome, order = _match(gt, det, num_classes, iou_threshold, 0.0)
    counted = ~gt["difficult"]
    gt_counts = np.zeros((len(ground_truth), num_classes), np.int64)
    np.add.at(gt_counts, (gt["image"][counted], gt["classes"][counted]), 1)
    return MatchedDetections(
        image=det["image"][order].astype(np.int64),
        classes=det["classes"][order].astype(np.int64),
        outcome=outcome[order],
        gt_counts=gt_counts,
        iou_threshold=iou_threshold,
    )


def weighted_map(matched: MatchedDetections, weights: np.ndarray | None = None) -> float:
    """mAP (VOC all-point AP, mean over the classes with ground truth) with image `i` counted
    `weights[i]` times (None: once each). NaN when no class has ground truth."""
    num_classes = matched.gt_counts.shape[1]
    if weights is None:
        weights = np.ones(matched.num_images)
    weights = np.asarray(weights, np.float64)
    num_gt = weights @ matched.gt_counts
    w = weights[matched.image]
    kept = (matched.outcome >= 0) & (w > 0)
    bounds = np.searchsorted(matched.classes, np.arange(num_classes + 1))
    aps = []
    for c in np.flatnonzero(num_gt > 0):
        lo, hi = bounds[c], bounds[c + 1]
        keep = kept[lo:hi]
        hits = matched.outcome[lo:hi][keep] == 1
        wc = w[lo:hi][keep]
        tp = np.cumsum(wc * hits)
        fp = np.cumsum(wc * ~hits)
        aps.append(_average_precision(tp / (tp + fp), tp / num_gt[c], use_07_metric=False))
    return float(np.mean(aps)) if aps else math.nan


@dataclass
class Interval:
    """A point estimate and its bootstrap percentile interval."""

    value: float
    low: float
    high: float
    level: float

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict:
        return {"value": self.value, "low": self.low, "high": self.high, "level": self.level}


def _percentiles(rounds: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(rounds, [tail, 100 - tail])
    return float(low), float(high)


def _check_runs(*groups: Sequence[MatchedDetections]) -> int:
    sizes = {run.num_images for group in groups for run in group}
    if len(sizes) != 1:
        raise ValueError(f"the runs were evaluated on different image sets ({sorted(sizes)})")
    counts = [run.gt_counts for group in groups for run in group]
    if any(not np.array_equal(counts[0], c) for c in counts[1:]):
        raise ValueError("the runs were evaluated on different ground truth")
    return sizes.pop()


def paired_bootstrap(
    runs: Sequence[MatchedDetections],
    baseline: Sequence[MatchedDetections] | None = None,
    samples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """The mean mAP@0.5 over `runs` (one per seed), or with `baseline` (one per seed, paired with
    `runs` by position) the mean paired difference `runs - baseline`, with a percentile
    interval from resampling seeds and test images together (module docstring)."""
    if not runs or (baseline is not None and len(baseline) != len(runs)):
        raise ValueError("paired_bootstrap needs runs, and as many baseline runs as runs")
    if not 0 < level < 1 or samples < 1:
        raise ValueError("level must be in (0, 1) and samples >= 1")
    num_images = _check_runs(runs, baseline or [])

    def estimate(weights, picked):
        # Each run's mAP on these images once; the drawn seeds pick from them.
        values = np.array([weighted_map(run, weights) for run in runs])
        if baseline is not None:
            values = values - np.array([weighted_map(run, weights) for run in baseline])
        return float(np.mean(values[picked]))

    every = np.arange(len(runs))
    point = estimate(None, every)
    rng = np.random.default_rng(seed)
    rounds = np.empty(samples)
    for k in range(samples):
        picked = rng.integers(0, len(runs), len(runs))
        weights = np.bincount(rng.integers(0, num_images, num_images), minlength=num_images)
        rounds[k] = estimate(weights, picked)
    return Interval(point, *_percentiles(rounds, level), level)


def seed_bootstrap(
    values: Sequence[float],
    baseline: Sequence[float] | None = None,
    samples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """The mean of per-seed `values` (or of `values - baseline`, paired by position) with a
    percentile interval from resampling the seeds only: for figures known only per run (COCO
    AP), which leaves out the test set's own chance."""
    values = np.asarray(values, np.float64)
    if baseline is not None:
        if len(baseline) != len(values):
            raise ValueError("values and baseline must have one entry per seed each")
        values = values - np.asarray(baseline, np.float64)
    if len(values) == 0:
        raise ValueError("seed_bootstrap needs at least one value")
    rng = np.random.default_rng(seed)
    rounds = values[rng.integers(0, len(values), (samples, len(values)))].mean(axis=1)
    return Interval(float(values.mean()), *_percentiles(rounds, level), level)

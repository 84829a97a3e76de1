"""Turns raw YOLO head outputs into boxes, as the original scripts decode them, plus class-wise NMS.

Decoding is a separate, swappable step: its thresholds are constructor arguments, and it works on
NumPy arrays of the heads so that any backend's (or an exported model's) output can be decoded.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from attnyolo.inference.config import InferenceConfig


@dataclass
class Detections:
    """Detections for one image: `boxes` (K, 4) as x1, y1, x2, y2 in the original image's pixels,
    `scores` (K,) = objectness x class probability, `classes` (K,) class indices."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    def to_records(self, class_names: Sequence[str]) -> list[dict]:
        return [
            {
                "class_id": int(c),
                "class_name": class_names[int(c)],
                "score": round(float(s), 6),
                "box": [round(float(v), 2) for v in b],
            }
            for b, s, c in zip(self.boxes, self.scores, self.classes, strict=True)
        ]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * x) + 1.0)  # overflow-free


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one x1y1x2y2 box against many (continuous coordinates, no +1)."""
    ix1 = np.maximum(box[0], boxes[:, 0])
    iy1 = np.maximum(box[1], boxes[:, 1])
    ix2 = np.minimum(box[2], boxes[:, 2])
    iy2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(
    boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_keep: int | None = None
) -> np.ndarray:
    """Greedy NMS: indices kept, by descending score; a box is dropped when its IoU with a kept
    box is greater than `iou_threshold` (as `tf.image.non_max_suppression`). Stops once
    `max_keep` boxes are kept, which gives the same first `max_keep` boxes as running to the end
    and bounds the work when an untrained model proposes thousands of boxes."""
    order = np.argsort(-scores, kind="stable")
    if len(order) <= _MATRIX_NMS_LIMIT:
        # All IoUs at once, then the greedy pass over boolean rows: the same result, without a
        # NumPy call per kept box (ten times faster for a few hundred boxes).
        ordered = boxes[order]
        suppress = _iou_matrix(ordered) > iou_threshold
        dropped = np.zeros(len(order), bool)
        keep = []
        for i in range(len(order)):
            if dropped[i]:
                continue
            keep.append(order[i])
            if max_keep is not None and len(keep) >= max_keep:
                break
            dropped |= suppress[i]
        return np.asarray(keep, dtype=np.int64)
    keep = []
    while order.size and (max_keep is None or len(keep) < max_keep):
        i = order[0]
        keep.append(i)
        rest = order[1:]
        order = rest[box_iou(boxes[i], boxes[rest]) <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


# Up to this many boxes (of one class) NMS builds the whole IoU matrix (8 MB of float64).
_MATRIX_NMS_LIMIT = 1000


def _iou_matrix(boxes: np.ndarray) -> np.ndarray:
    """Pairwise IoU of x1y1x2y2 boxes, as `box_iou` computes each row."""
    ix1 = np.maximum(boxes[:, None, 0], boxes[None, :, 0])
    iy1 = np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    ix2 = np.minimum(boxes[:, None, 2], boxes[None, :, 2])
    iy2 = np.minimum(boxes[:, None, 3], boxes[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = areas[:, None] + areas[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def batched_nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    iou_threshold: float,
    max_per_class: int | None = None,
) -> np.ndarray:
    """Class-wise NMS: `nms` within each class (at most `max_per_class` kept per class), the
    kept indices returned by descending score."""
    # TensorFlow's kernel where TensorFlow is loaded anyway; NumPy (the same result) elsewhere,
    # so that an exported model runs without it.
    class_nms = _tensorflow_nms if "tensorflow" in sys.modules else nms
    kept = []
    for c in np.unique(classes):
        members = np.flatnonzero(classes == c)
        kept.append(
            members[class_nms(boxes[members], scores[members], iou_threshold, max_per_class)]
        )
    if not kept:
        return np.zeros((0,), np.int64)
    keep = np.concatenate(kept)
    return keep[np.argsort(-scores[keep], kind="stable")]


def _tensorflow_nms(
    boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_keep: int | None = None
) -> np.ndarray:
    """`nms` through TensorFlow's kernel, the op the original scripts use: the same result, about
    ten times faster when an untrained model proposes thousands of boxes per class."""
    import tensorflow as tf

    yxyx = np.ascontiguousarray(boxes[:, [1, 0, 3, 2]], np.float32)
    limit = len(boxes) if max_keep is None else max_keep
    keep = tf.image.non_max_suppression(yxyx, scores.astype(np.float32), limit, iou_threshold)
    return keep.numpy().astype(np.int64)


class YoloDecoder:
    """Decodes YOLO heads and runs class-wise NMS.

    For a cell (i, j) of a head with grid (gh, gw) and an anchor (aw, ah):
    `cx = (s * sigmoid(tx) - (s - 1) / 2 + j) / gw`, `w = exp(tw) * aw / input_width` (y and h
    alike), with the xy scale `s`; score = sigmoid(objectness) x sigmoid(class logit).

    Args:
        anchors: `(width, height)` pairs in input pixels.
        anchor_masks: anchor indices per head, in the order of the heads.
        input_size: the model's `(height, width)`.
        num_classes: number of classes.
        xy_scale: see above; 1.0 in the original scripts.
        confidence: keep scores >= this (the original's `confidence`, 0.5 for prediction).
        nms_iou: class-wise NMS IoU threshold (the original's `nms_iou`, 0.3).
        max_per_class: at most this many boxes per class (the original's `max_boxes`, 100).
        max_detections: at most this many boxes per image overall, by score (None: no cap).
        clip: clip the boxes to the image (the original scripts do not; their evaluation writes
            unclipped boxes).
    """

    def __init__(
        self,
        anchors: Sequence[Sequence[float]],
        anchor_masks: Sequence[Sequence[int]],
        input_size: Sequence[int],
        num_classes: int,
        xy_scale: float = 1.0,
        confidence: float = 0.5,
        nms_iou: float = 0.3,
        max_per_class: int = 100,
        max_detections: int | None = None,
        clip: bool = True,
    ):
        self.anchors = np.asarray(anchors, np.float32)
        self.anchor_masks = [list(m) for m in anchor_masks]
        self.input_size = tuple(int(v) for v in input_size)
        self.num_classes = int(num_classes)
        self.xy_scale = float(xy_scale)
        self.confidence = float(confidence)
        self.nms_iou = float(nms_iou)
        self.max_per_class = int(max_per_class)
        self.max_detections = max_detections
        self.clip = bool(clip)

    @classmethod
    def from_model(cls, model, **kwargs) -> YoloDecoder:
        """A decoder for a `YOLOv4Tiny` (anchors, masks, size, classes and xy scale from it)."""
        return cls.from_config(InferenceConfig.from_model(model), **kwargs)

    @classmethod
    def from_config(cls, config: InferenceConfig, **kwargs) -> YoloDecoder:
        """A decoder for any model format's `InferenceConfig`."""
        return cls(
            anchors=config.anchors,
            anchor_masks=config.anchor_masks,
            input_size=config.input_size,
            num_classes=config.num_classes,
            xy_scale=config.xy_scale,
            **kwargs,
        )

    def decode(self, heads: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw heads -> (boxes (N, A, 4) x1y1x2y2 in input pixels, objectness (N, A),
        class probabilities (N, A, C)), A being all cells x anchors of all heads."""
        n = len(heads[0])
        parts = [self._head_rows(h, m, None) for h, m in zip(heads, self.anchor_masks, strict=True)]
        return (
            np.concatenate([p[1].reshape(n, -1, 4) for p in parts], 1),
            np.concatenate([p[2].reshape(n, -1) for p in parts], 1),
            np.concatenate([p[3].reshape(n, -1, self.num_classes) for p in parts], 1),
        )

    def _head_rows(self, head: np.ndarray, mask: Sequence[int], threshold: float | None):
        """One head's anchors whose objectness reaches `threshold` (None: all), decoded: (image
        index, boxes x1y1x2y2 in input pixels, objectness, class probabilities), in (image, row,
        column, anchor) order. The one place the decode formula lives."""
        height, width = self.input_size
        s = self.xy_scale
        head = np.asarray(head, np.float32)
        n, gh, gw, _ = head.shape
        p = head.reshape(n, gh, gw, len(mask), 5 + self.num_classes)
        objectness = _sigmoid(p[..., 4])
        selected = np.ones(objectness.shape, bool) if threshold is None else objectness >= threshold
        image, row, col, anchor = np.nonzero(selected)
        raw = p[image, row, col, anchor]
        cx = (s * _sigmoid(raw[:, 0]) - (s - 1) / 2 + col) / gw * width
        cy = (s * _sigmoid(raw[:, 1]) - (s - 1) / 2 + row) / gh * height
        anchors = self.anchors[list(mask)][anchor]
        w = np.exp(np.minimum(raw[:, 2], 20.0)) * anchors[:, 0]
        h = np.exp(np.minimum(raw[:, 3], 20.0)) * anchors[:, 1]
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)
        return image, boxes, objectness[image, row, col, anchor], _sigmoid(raw[:, 5:])

    def __call__(
        self,
        heads: Sequence[np.ndarray],
        image_sizes: Sequence[Sequence[int]],
        transforms: np.ndarray | None = None,
    ) -> list[Detections]:
        """Decodes a batch.

        Args:
            heads: the model's raw outputs, stride 32 first.
            image_sizes: `(height, width)` of each original image, to clip boxes to.
            transforms: per image `(scale_x, scale_y, pad_x, pad_y)` that mapped original pixels
                to input pixels (`input = original * scale + pad`), as returned by
                `attnyolo.data.letterbox` / `resize`; None means the images are the input size.
        """
        n = len(heads[0])
        if transforms is None:
            transforms = np.tile([1.0, 1.0, 0.0, 0.0], (n, 1))
        candidates = self._candidates(heads)
        return [self._select(*candidates[i], image_sizes[i], transforms[i]) for i in range(n)]

    def _candidates(self, heads: Sequence[np.ndarray]) -> list[tuple[np.ndarray, ...]]:
        """`decode` of only the anchors whose objectness reaches the confidence (a score is
        objectness x a class probability <= 1, so no other can pass): per image (boxes,
        objectness, class probabilities), in `decode`'s order and with its values."""
        found: list[list[tuple[np.ndarray, ...]]] = [[] for _ in range(len(heads[0]))]
        for head, mask in zip(heads, self.anchor_masks, strict=True):
            image, boxes, obj, probs = self._head_rows(head, mask, self.confidence)
            for i, per_image in enumerate(found):
                at = image == i
                per_image.append((boxes[at], obj[at], probs[at]))
        return [
            tuple(np.concatenate(parts) for parts in zip(*per_head, strict=True))
            for per_head in found
        ]

    def _select(self, boxes, objectness, class_probs, image_size, transform) -> Detections:
        scores = objectness[:, None] * class_probs
        anchor_idx, class_idx = np.nonzero(scores >= self.confidence)
        scores = scores[anchor_idx, class_idx]
        sx, sy, px, py = (float(v) for v in transform)
        boxes = (boxes[anchor_idx] - [px, py, px, py]) / [sx, sy, sx, sy]
        keep = batched_nms(boxes, scores, class_idx, self.nms_iou, self.max_per_class)
        if self.max_detections is not None:
            keep = keep[: self.max_detections]
        ih, iw = image_size
        boxes = boxes[keep]
        if self.clip:
            boxes = np.clip(boxes, 0, [iw, ih, iw, ih])
        boxes = boxes.astype(np.float32)
        return Detections(boxes, scores[keep].astype(np.float32), class_idx[keep].astype(np.int64))

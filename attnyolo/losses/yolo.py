"""The YOLOv4-tiny training loss of the original yolov4-tiny-keras scripts, in `keras.ops` only.

Targets are built inside the loss from the padded ground-truth boxes, with fixed shapes and no
Python control flow on tensor values, so one `YoloLoss` call runs eagerly or inside a compiled
train step on the TensorFlow, JAX and PyTorch backends alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from keras import ops

# Keras' `K.epsilon()`, the guard the original uses in its divisions.
_EPS = 1e-7
# exp(10) ~ 2.2e4 anchor widths: far past any real box, and squares of it stay finite in float32.
_MAX_LOG_WH = 10.0
ASSIGNMENTS = ("original", "yolov5", "ota")
OBJECTNESS_TARGETS = ("one", "iou")
OBJ_NORMALIZATIONS = ("non_ignored", "all")
OBJ_LOSSES = ("bce", "qfl", "vfl")
# The assignments whose candidates include neighbour cells, reached by a centre decoded as
# 2 sigmoid - 0.5 (xy_scale 2).
NEIGHBOUR_ASSIGNMENTS = ("yolov5", "ota")
# SimOTA (YOLOX; YOLOv7's ComputeLossOTA): a box's dynamic k is the sum of its 10 best candidate
# IoUs, and a pair's cost is the class cost plus 3 times -log(IoU).
_OTA_TOP_IOUS = 10
_OTA_IOU_WEIGHT = 3.0
_OTA_OUTSIDE = 1e5


def bce_with_logits(logits, targets):
    """Element-wise binary cross-entropy of `sigmoid(logits)` against (soft) `targets`, in the
    overflow-free form `max(x, 0) - x * t + log(1 + exp(-|x|))` that TensorFlow uses."""
    return ops.maximum(logits, 0.0) - logits * targets + ops.log1p(ops.exp(-ops.abs(logits)))


def _corners(box):
    """(..., 4) centre x, centre y, width, height -> the (..., 2) min and max corners."""
    half = box[..., 2:4] / 2.0
    return box[..., 0:2] - half, box[..., 0:2] + half


def _aspect_angle(box):
    # atan2 with the height kept >= eps, as the original: finite for zero-height boxes.
    return ops.arctan2(box[..., 2], ops.maximum(box[..., 3], _EPS))


def box_ciou(pred, target, alpha_gradient: bool = False):
    """Complete IoU of matching boxes given as (..., 4) centre x, centre y, width, height.

    `CIoU = IoU - rho^2 / c^2 - alpha * v`, rho the distance between the centres, c the diagonal
    of the smallest box enclosing both, `v = 4 / pi^2 (atan(w_t / h_t) - atan(w / h))^2` and
    `alpha = v / (1 - IoU + v)`. `alpha` is a constant for the gradient (`stop_gradient`), as in
    the CIoU authors' code and YOLOv5's, unless `alpha_gradient` (the original scripts let the
    gradient through it); its value is the same either way.

    Returns:
        The CIoU, of shape `(...)`.
    """
    pred_min, pred_max = _corners(pred)
    true_min, true_max = _corners(target)
    inter_wh = ops.maximum(ops.minimum(pred_max, true_max) - ops.maximum(pred_min, true_min), 0.0)
    inter = inter_wh[..., 0] * inter_wh[..., 1]
    union = pred[..., 2] * pred[..., 3] + target[..., 2] * target[..., 3] - inter
    iou = inter / ops.maximum(union, _EPS)
    centre_distance = ops.sum(ops.square(pred[..., 0:2] - target[..., 0:2]), axis=-1)
    enclose_wh = ops.maximum(ops.maximum(pred_max, true_max) - ops.minimum(pred_min, true_min), 0.0)
    diagonal = ops.sum(ops.square(enclose_wh), axis=-1)
    v = 4.0 / math.pi**2 * ops.square(_aspect_angle(pred) - _aspect_angle(target))
    alpha = v / ops.maximum(1.0 - iou + v, _EPS)
    if not alpha_gradient:
        alpha = ops.stop_gradient(alpha)
    return iou - centre_distance / ops.maximum(diagonal, _EPS) - alpha * v


def _pairwise_iou(pred, truth):
    """IoU of every (B, L, 4) predicted box with every (B, N, 4) true box -> (B, L, N)."""
    pred_min, pred_max = _corners(ops.expand_dims(pred, 2))
    true_min, true_max = _corners(ops.expand_dims(truth, 1))
    inter_wh = ops.maximum(ops.minimum(pred_max, true_max) - ops.maximum(pred_min, true_min), 0.0)
    inter = inter_wh[..., 0] * inter_wh[..., 1]
    pred_area = ops.expand_dims(pred[..., 2] * pred[..., 3], 2)
    true_area = ops.expand_dims(truth[..., 2] * truth[..., 3], 1)
    return inter / ops.maximum(pred_area + true_area - inter, _EPS)


def _one_hot(index, size: int):
    """(...) whole-number floats -> (..., size) one-hot; an index outside [0, size) gives zeros,
    which is how out-of-grid neighbour cells drop out (`ops.one_hot` differs there by backend)."""
    return ops.cast(
        ops.equal(ops.expand_dims(index, -1), ops.arange(size, dtype="float32")), "float32"
    )


def _outer_cells(rows, cols):
    """(B, N, gh) and (B, N, gw) one-hots -> (B, N, gh, gw) cell indicator."""
    return ops.expand_dims(rows, 3) * ops.expand_dims(cols, 2)


def _original_cell(centre, size: int, grid: int):
    """The original's cell index `floor(float32(c / size) * grid)` of integer centres `c` given
    as `centre = c / size` (float32), clipped to the grid.

    The original multiplies in float64, so the product is exact and a centre on a cell border
    (`c = k * stride`) lands in cell `k - 1` whenever float32 rounded `k / grid` down. float32
    arithmetic alone would round that product back to `k`; the exact rule is rebuilt in integers
    (`c * grid // size`, a border where `c * grid % size == 0`) and a table of the borders that
    float32 rounds down."""
    c = ops.cast(ops.round(centre * size), "int32")  # the integer centre in pixels, exactly
    scaled = c * grid
    cell = ops.floor_divide(scaled, size)
    border = ops.cast(ops.equal(ops.mod(scaled, size), 0), "float32")
    k = np.arange(grid + 1)
    down = (np.float32(k / grid).astype(np.float64) * grid < k).astype(np.float32)
    index = ops.clip(cell, 0, grid)
    cell = ops.cast(cell, "float32") - border * ops.take(ops.convert_to_tensor(down), index)
    return ops.clip(cell, 0.0, grid - 1.0)


class YoloLoss:
    """The YOLOv4-tiny loss of the original yolov4-tiny-keras scripts (CIoU + BCE), in keras.ops.

    Per head `l` with `P_l` positive cell-anchor slots (`num_pos = max(P_l, 1)`):

    - box: `box_weight * sum over positives of (1 - CIoU(decoded prediction, target)) / num_pos`;
    - obj: BCE with logits of the objectness, target 1 at positives (or YOLOv5's detached CIoU
      clamped to [0, 1] with `objectness_target="iou"`), 0 elsewhere; a negative whose decoded box
      has IoU >= `ignore_threshold` with any ground-truth box of its image is ignored. The sum is
      divided, as in the original, by `num_pos + max(kept negatives, 1)` (or, with
      `obj_normalization="all"`, by all `B * gh * gw * A` slots, as YOLOv5), then multiplied by
      `balance[l] * obj_weight`. `focal=True` multiplies each BCE term by
      `alpha_t * (1 - p_t) ** gamma` (focal loss); `obj_loss="qfl"` by `|t - p| ** gamma`
      (quality focal loss, `t` the target, `p` the sigmoid), `obj_loss="vfl"` by `t` at positives
      and `vfl_alpha * p ** gamma` elsewhere (varifocal loss), `gamma` being `quality_gamma`;
    - cls: `cls_weight * sum over positives and classes of BCE(logits, smoothed one-hot)
      / num_pos / num_classes`, the one-hot smoothed as `y * (1 - ls) + ls / num_classes`.

    The total is the sum of the three over the heads; it is per batch, not scaled by batch size.

    Assignment, `"original"`, exactly the original's `preprocess_true_boxes` (checked against a
    NumPy port of it on real data sets): the box centre is the original's integer
    `floor((x1 + x2) / 2)`, `floor((y1 + y2) / 2)`, for the cell and for the regression target;
    each box goes to the anchor, among those in some head's mask, with the best width/height IoU
    (box and anchor sharing a centre), so a box whose best anchor overall is in no mask (anchor 0
    of the default masks) moves to its best anchor that is; on every head whose mask holds that
    anchor (anchor 3 sits on both default heads), the cell `floor(cx / W * grid_w)` holding the
    centre becomes positive at that anchor's slot. The cell index is the original's float32
    arithmetic: when the centre lies exactly on a cell border, float32 rounding of `cx / W` puts
    it in the cell to the left (or above) for some borders, as there. Negatives are ignored by IoU
    with the boxes that are targets of that head (the original's `y_true` boxes), not with every
    box of the image. `"yolov5"`: on each head, every anchor with
    `max(w / aw, aw / w, h / ah, ah / h) < anchor_threshold` is positive in the centre cell and in
    the two neighbours nearer the centre (left if `frac(cx / stride) < 0.5`, else right; up or down
    alike; inside the grid only); the centre is `(x1 + x2) / 2` and negatives are ignored by IoU
    with every box of the image, as Darknet. YOLOv5 decodes the centre as `2 sigmoid(t) - 0.5`,
    so this assignment requires `xy_scale=2.0`, for the loss and for the model. `"ota"`: SimOTA
    among YOLOv5's candidates, over both heads at once, as YOLOv7's `ComputeLossOTA` (which
    takes YOLOv5's candidates) and YOLOX: each box gets the `k` candidates of lowest cost
    (`cost = class BCE of sqrt(class * objectness probabilities) + 3 * -log(IoU)`, `k` the whole
    part of the sum of its 10 best candidate IoUs, at least 1), the candidates being every slot
    that YOLOv5's rule proposes for some box of the image, and a slot that several boxes choose
    goes to the one of lowest cost; it too needs `xy_scale=2.0`.

    When several boxes claim the same cell-anchor slot, the one later in the box list sets the box
    target, as the original's overwrite. With `"original"` every claimant's class bit stays set
    (the original writes `y_true[..., 5 + c] = 1` without clearing), before label smoothing; with
    `"yolov5"` the later box's class alone is the target (YOLOv5 itself would keep every claim as a
    separate target).

    Predictions are decoded as `attnyolo.inference.decoder.YoloDecoder` does:
    `cx = (s sigmoid(tx) - (s - 1) / 2 + j) / gw`, `w = exp(tw) aw / input_width`, with `tw`
    clipped to at most 10 so that `exp` cannot overflow. Boxes are compared in coordinates
    normalised by the input width and height, as in the original.

    Deviations from the original scripts: a centre on the far edge goes to the last cell rather
    than past the grid (the original's data loader never makes one); by default `alpha` in CIoU
    carries no gradient (its value is the original's; YOLOv5 and the CIoU authors detach it too;
    `ciou_alpha_gradient=True` is the original's); the original's focal option also multiplies
    the objectness loss by 10 (`focal_loss_ratio`), here left to `obj_weight`.

    Args:
        anchors: `(width, height)` pairs in input pixels.
        anchor_masks: anchor indices per head, in the order of the heads (stride 32 first).
        input_size: the model's `(height, width)`, or one int.
        num_classes: number of classes.
        xy_scale: the decoder's xy scale `s` (1.0 in the original; 2.0 for `"yolov5"`).
        assignment: `"original"`, `"yolov5"` or `"ota"`, see above.
        ignore_threshold: negatives with IoU >= this with a ground-truth box get no loss.
        label_smoothing: `ls` above; 0 disables.
        focal: apply the focal factor to the objectness BCE.
        focal_gamma: the focal loss' gamma.
        focal_alpha: the focal loss' alpha, the weight of positives.
        balance: objectness weight per head.
        box_weight: weight of the box loss (the original's `box_ratio`).
        obj_weight: weight of the objectness loss; None gives the original train.py's
            `5 * height * width / 416 ** 2`.
        cls_weight: weight of the class loss; None gives the original's `num_classes / 80`.
        anchor_threshold: the `"yolov5"` width/height ratio limit.
        objectness_target: `"one"` (the original) or `"iou"` (YOLOv5).
        obj_normalization: `"non_ignored"` (the original: positives plus kept negatives) or
            `"all"` (YOLOv5: the mean over every slot of the head).
        ciou_alpha_gradient: let the gradient through CIoU's `alpha`, as the original does.
        obj_loss: `"bce"`, `"qfl"` or `"vfl"`, the objectness loss (see above); not with `focal`.
        quality_gamma: the exponent of `"qfl"` and `"vfl"` (2, as both papers).
        vfl_alpha: the weight of `"vfl"`'s negatives (0.75, as both VarifocalNet and Ultralytics).

    Call arguments:
        boxes: `(batch, max_boxes, 4)` x1, y1, x2, y2 in input pixels (after letterboxing).
        classes: `(batch, max_boxes)` integer class ids in `[0, num_classes)`, -1 for padding.
            Padding rows, and boxes of zero width or height, are not targets.
        heads: the model's raw head tensors, in the order of `anchor_masks`, each
            `(batch, grid_h, grid_w, A * (5 + num_classes))` with static grid sizes. Any float
            dtype; computed in float32.

    Returns:
        `(total, parts)`: the scalar loss and `{"box": ..., "obj": ..., "cls": ...}`, each summed
        over the heads, for logging.

    Example:

    ```python
    loss_fn = YoloLoss.from_model(model)
    with tf.GradientTape() as tape:
        total, parts = loss_fn(boxes, classes, model(images, training=True))
    ```

    Reference:
        Bochkovskiy et al., "YOLOv4: Optimal Speed and Accuracy of Object Detection", 2020;
        Zheng et al., "Distance-IoU Loss: Faster and Better Learning for Bounding Box
        Regression", AAAI 2020 (CIoU); Lin et al., "Focal Loss for Dense Object Detection",
        ICCV 2017; Jocher et al., YOLOv5 (`utils/loss.py`), for the `"yolov5"` assignment and
        the `"iou"` objectness target; Ge et al., "YOLOX: Exceeding YOLO Series in 2021" (SimOTA);
        Wang et al., YOLOv7 (`utils/loss.py`, `ComputeLossOTA`); Li et al., "Generalized Focal
        Loss", NeurIPS 2020 (quality focal loss); Zhang et al., "VarifocalNet", CVPR 2021;
        bubbliiiing, yolov4-tiny-keras `nets/yolo_training.py`.
    """

    def __init__(
        self,
        anchors: Sequence[Sequence[float]],
        anchor_masks: Sequence[Sequence[int]],
        input_size: int | Sequence[int],
        num_classes: int,
        *,
        xy_scale: float = 1.0,
        assignment: str = "original",
        ignore_threshold: float = 0.5,
        label_smoothing: float = 0.0,
        focal: bool = False,
        focal_gamma: float = 2.0,
        focal_alpha: float = 0.25,
        balance: Sequence[float] = (0.4, 1.0),
        box_weight: float = 0.05,
        obj_weight: float | None = None,
        cls_weight: float | None = None,
        anchor_threshold: float = 4.0,
        objectness_target: str = "one",
        obj_normalization: str = "non_ignored",
        ciou_alpha_gradient: bool = False,
        obj_loss: str = "bce",
        quality_gamma: float = 2.0,
        vfl_alpha: float = 0.75,
    ):
        size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
        if len(size) != 2 or min(size) <= 0:
            raise ValueError(f"input_size must be (height, width), got {input_size!r}")
        self.input_size = (int(size[0]), int(size[1]))
        self.anchors = tuple(tuple(float(v) for v in a) for a in anchors)
        self.anchor_masks = tuple(tuple(int(i) for i in m) for m in anchor_masks)
        if any(len(a) != 2 or min(a) <= 0 for a in self.anchors):
            raise ValueError(f"Anchors must be positive (width, height) pairs, got {anchors}")
        if any(not 0 <= i < len(self.anchors) for m in self.anchor_masks for i in m):
            raise ValueError(
                f"anchor_masks {self.anchor_masks} index outside the {len(self.anchors)} anchors"
            )
        self.num_classes = int(num_classes)
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.xy_scale = float(xy_scale)
        for name, value, valid in (
            ("assignment", assignment, ASSIGNMENTS),
            ("objectness_target", objectness_target, OBJECTNESS_TARGETS),
            ("obj_normalization", obj_normalization, OBJ_NORMALIZATIONS),
            ("obj_loss", obj_loss, OBJ_LOSSES),
        ):
            if value not in valid:
                raise ValueError(f"Unknown {name} {value!r}; valid: {valid}")
        if assignment in NEIGHBOUR_ASSIGNMENTS and self.xy_scale != 2.0:
            # Neighbour cells are positives only because 2 sigmoid - 0.5 can reach the centre.
            raise ValueError(
                f"assignment={assignment!r} needs xy_scale=2.0 (and a model built with it), "
                f"got xy_scale={xy_scale}"
            )
        if focal and obj_loss != "bce":
            raise ValueError(f"focal applies to obj_loss='bce', got obj_loss={obj_loss!r}")
        self.obj_loss = obj_loss
        self.quality_gamma = float(quality_gamma)
        self.vfl_alpha = float(vfl_alpha)
        self.assignment = assignment
        self.objectness_target = objectness_target
        self.obj_normalization = obj_normalization
        self.balance = tuple(float(b) for b in balance)
        if len(self.balance) != len(self.anchor_masks):
            raise ValueError(
                f"balance needs one weight per head ({len(self.anchor_masks)}), got {balance}"
            )
        self.ignore_threshold = float(ignore_threshold)
        self.label_smoothing = float(label_smoothing)
        self.focal = bool(focal)
        self.focal_gamma = float(focal_gamma)
        self.focal_alpha = float(focal_alpha)
        self.box_weight = float(box_weight)
        height, width = self.input_size
        # The original train.py scales these with the input area and the class count.
        self.obj_weight = 5.0 * height * width / 416**2 if obj_weight is None else float(obj_weight)
        self.cls_weight = self.num_classes / 80 if cls_weight is None else float(cls_weight)
        self.anchor_threshold = float(anchor_threshold)
        self.ciou_alpha_gradient = bool(ciou_alpha_gradient)
        # OTA picks among YOLOv5's candidates, by the predictions.
        self._match = {
            "original": self._original_matches,
            "yolov5": self._yolov5_matches,
            "ota": self._yolov5_matches,
        }[assignment]

    @classmethod
    def from_model(cls, model, **kwargs) -> YoloLoss:
        """A loss for a `YOLOv4Tiny` (anchors, masks, input size, classes and xy scale from it)."""
        options = dict(
            anchors=model.anchors,
            anchor_masks=model.anchor_masks,
            input_size=model.input_size,
            num_classes=model.num_classes,
            xy_scale=model.xy_scale,
        )
        return cls(**{**options, **kwargs})

    def get_config(self) -> dict[str, Any]:
        """Every constructor argument, resolved (the default weights as numbers)."""
        return {
            "anchors": [list(a) for a in self.anchors],
            "anchor_masks": [list(m) for m in self.anchor_masks],
            "input_size": list(self.input_size),
            "num_classes": self.num_classes,
            "xy_scale": self.xy_scale,
            "assignment": self.assignment,
            "ignore_threshold": self.ignore_threshold,
            "label_smoothing": self.label_smoothing,
            "focal": self.focal,
            "focal_gamma": self.focal_gamma,
            "focal_alpha": self.focal_alpha,
            "balance": list(self.balance),
            "box_weight": self.box_weight,
            "obj_weight": self.obj_weight,
            "cls_weight": self.cls_weight,
            "anchor_threshold": self.anchor_threshold,
            "objectness_target": self.objectness_target,
            "obj_normalization": self.obj_normalization,
            "ciou_alpha_gradient": self.ciou_alpha_gradient,
            "obj_loss": self.obj_loss,
            "quality_gamma": self.quality_gamma,
            "vfl_alpha": self.vfl_alpha,
        }

    def __call__(self, boxes, classes, heads) -> tuple[Any, dict[str, Any]]:
        truth, wh, classes, valid = self._truth(boxes, classes)
        raws, preds, grids = self._decode_heads(heads)
        targets = self._all_targets(raws, preds, grids, truth, wh, classes, valid)
        parts = {"box": 0.0, "obj": 0.0, "cls": 0.0}
        for layer, (raw, pred) in enumerate(zip(raws, preds, strict=True)):
            for name, value in self._head_loss(layer, raw, pred, truth, *targets[layer]).items():
                parts[name] = parts[name] + value
        return parts["box"] + parts["obj"] + parts["cls"], parts

    def targets(self, boxes, classes, heads=None) -> list[dict[str, Any]]:
        """The training targets per head, as the original's `y_true`.

        Args:
            boxes, classes: as for the call.
            heads: the model's raw heads; needed by `assignment="ota"` only, whose choice among
                the candidates depends on the predictions.

        Returns:
            One dict per head: `positive` `(B, gh, gw, A)` 1 at positive slots; `box`
            `(B, gh, gw, A, 4)` normalised centre x, centre y, width, height (meaningful at
            positives); `classes` `(B, gh, gw, A, C)` the class target before label smoothing.
        """
        truth, wh, classes, valid = self._truth(boxes, classes)
        height, width = self.input_size
        if heads is None:
            if self.assignment == "ota":
                raise ValueError('assignment="ota" chooses by the predictions: pass the heads')
            grids = [
                (height // (32 // 2**i), width // (32 // 2**i))  # strides 32, 16, ...
                for i in range(len(self.anchor_masks))
            ]
            raws = preds = [None] * len(grids)
        else:
            raws, preds, grids = self._decode_heads(heads)
        targets = self._all_targets(raws, preds, grids, truth, wh, classes, valid)
        out = []
        for (positive, box, cls, _), mask, (grid_h, grid_w) in zip(
            targets, self.anchor_masks, grids, strict=True
        ):
            shape = (-1, grid_h, grid_w, len(mask))
            out.append(
                {
                    "positive": ops.reshape(positive, shape),
                    "box": ops.reshape(box, (*shape, 4)),
                    "classes": ops.reshape(cls, (*shape, self.num_classes)),
                }
            )
        return out

    def _truth(self, boxes, classes):
        """Padded boxes -> normalised centre x, centre y, width, height (the original's y_true
        coordinates), widths and heights in pixels, class ids and the valid-box mask."""
        height, width = self.input_size
        boxes = ops.cast(boxes, "float32")
        classes = ops.cast(classes, "int32")
        x1, y1, x2, y2 = (boxes[..., i] for i in range(4))
        w, h = x2 - x1, y2 - y1
        valid = ops.cast((classes >= 0) & (w > 0) & (h > 0), "float32")
        cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
        if self.assignment == "original":
            # The original's `(x1 + x2) // 2`: an integer centre, for the cell and the target.
            cx, cy = ops.floor(cx), ops.floor(cy)
        truth = ops.stack([cx / width, cy / height, w / width, h / height], axis=-1)
        return truth, ops.stack([w, h], axis=-1), classes, valid

    def _decode_heads(self, heads):
        """The raw heads -> per head `(B, slots, 5 + C)` float32 outputs and `(B, slots, 4)`
        decoded boxes, slots in (row, column, anchor) order, the head's memory order."""
        if len(heads) != len(self.anchor_masks):
            raise ValueError(f"Expected {len(self.anchor_masks)} heads, got {len(heads)}")
        raws, preds, grids = [], [], []
        for layer, head in enumerate(heads):
            num_anchors, num_outputs = len(self.anchor_masks[layer]), 5 + self.num_classes
            _, grid_h, grid_w, channels = head.shape
            if grid_h is None or grid_w is None or channels != num_anchors * num_outputs:
                raise ValueError(
                    f"Head {layer} must be (batch, grid_h, grid_w, {num_anchors * num_outputs}) "
                    f"with static grid sizes, got {tuple(head.shape)}"
                )
            raw = ops.reshape(
                ops.cast(head, "float32"), (-1, grid_h * grid_w * num_anchors, num_outputs)
            )
            raws.append(raw)
            preds.append(self._decode(raw, layer, grid_h, grid_w))
            grids.append((grid_h, grid_w))
        return raws, preds, grids

    def _all_targets(self, raws, preds, grids, truth, wh, classes, valid):
        """Per head `(positive, box, class target, boxes counting for the ignore rule)`, see
        `_slot_targets`; `grids` the heads' `(gh, gw)`. `raws` and `preds` (see `_decode_heads`)
        are read by `"ota"` alone."""
        num_boxes = ops.shape(truth)[1]  # a tensor when the padding length is dynamic (TF)
        matches = [
            ops.reshape(self._match(layer, truth, wh, gh, gw), (-1, num_boxes, gh * gw * len(m)))
            * valid[..., None]
            for layer, ((gh, gw), m) in enumerate(zip(grids, self.anchor_masks, strict=True))
        ]
        if self.assignment == "ota":
            sizes = [gh * gw * len(m) for (gh, gw), m in zip(grids, self.anchor_masks, strict=True)]
            chosen = self._ota_choice(
                ops.concatenate(matches, axis=2),
                ops.concatenate(raws, axis=1),
                ops.concatenate(preds, axis=1),
                truth,
                classes,
                valid,
            )
            splits = np.cumsum(sizes)[:-1].tolist()
            matches = ops.split(chosen, splits, axis=2) if splits else [chosen]
        return [self._slot_targets(m, truth, classes, valid) for m in matches]

    def _ota_choice(self, candidates, raw, pred, truth, classes, valid):
        """SimOTA over every head at once, as YOLOv7's `ComputeLossOTA`: the candidates of an
        image are the union of its boxes' YOLOv5 candidates, and any box may take any of them.
        For each box, `k = max(floor(sum of its 10 best candidate IoUs), 1)` and its k
        candidates of lowest cost become positive, the cost being the BCE of
        `sqrt(sigmoid(class) * sigmoid(objectness))` against the box's one-hot class, summed
        over classes, plus `3 * -log(IoU + 1e-8)`; a slot chosen by several boxes goes to the
        box of lowest cost. Predictions enter without gradient. YOLOv7 lists a slot once per box
        that proposed it (so one box can count, and take, it twice); here a slot is one entry.

        Args:
            candidates: `(B, N, L)` 1 where a box's YOLOv5 rule proposes a slot (valid boxes).
            raw: `(B, L, 5 + C)` raw outputs; pred: `(B, L, 4)` decoded boxes.
            valid: `(B, N)` the boxes that are targets.

        Returns:
            `(B, N, L)` one-hot matches: each slot has at most one box."""
        raw, pred = ops.stop_gradient(raw), ops.stop_gradient(pred)
        candidates = ops.max(candidates, axis=1, keepdims=True) * valid[..., None]
        iou = ops.transpose(_pairwise_iou(pred, truth), (0, 2, 1)) * candidates  # (B, N, L)
        k = min(_OTA_TOP_IOUS, int(candidates.shape[2]))
        top_iou, _ = ops.top_k(iou, k)
        dynamic_k = ops.maximum(ops.floor(ops.sum(top_iou, axis=-1)), 1.0)  # (B, N)

        score = ops.sqrt(ops.sigmoid(raw[..., 5:]) * ops.sigmoid(raw[..., 4:5]))  # (B, L, C)
        score = ops.clip(score, _EPS, 1.0 - _EPS)
        one_hot = _one_hot(ops.cast(ops.maximum(classes, 0), "float32"), self.num_classes)
        # -sum_c [y log p + (1 - y) log(1 - p)], as matrix products over the classes.
        log_p = ops.transpose(ops.log(score), (0, 2, 1))
        log_q = ops.transpose(ops.log(1.0 - score), (0, 2, 1))
        cls_cost = -(ops.matmul(one_hot, log_p) + ops.matmul(1.0 - one_hot, log_q))
        cost = cls_cost + _OTA_IOU_WEIGHT * -ops.log(iou + 1e-8) + _OTA_OUTSIDE * (1.0 - candidates)
        # The k-th lowest cost of each box, then every candidate at or below it.
        lowest, _ = ops.top_k(-cost, k)
        rank = ops.cast(ops.minimum(dynamic_k, float(k)) - 1.0, "int32")[..., None]
        kth = -ops.take_along_axis(lowest, rank, axis=-1)
        chosen = candidates * ops.cast(cost <= kth, "float32")
        # A slot claimed by several boxes: the cheapest.
        claimed = ops.cast(ops.max(chosen, axis=1) > 0, "float32")  # (B, L)
        best = ops.argmin(ops.where(chosen > 0, cost, 1e10), axis=1)  # (B, L)
        num_boxes = ops.shape(truth)[1]
        owner = ops.cast(
            ops.equal(ops.arange(num_boxes)[None, :, None], ops.cast(best, "int32")[:, None, :]),
            "float32",
        )
        return owner * claimed[:, None, :]

    def _slot_targets(self, matches, truth, classes, valid):
        """Targets of one head from its `(B, N, slots)` box-to-slot matches: positive
        `(B, slots)`, box `(B, slots, 4)`, class target `(B, slots, C)` before smoothing, and
        `(B, N)` which boxes count for the ignore rule."""
        # The later box wins a shared slot: the highest 1-based box number over the matches
        # picks it, 0 meaning no box.
        num_boxes = ops.shape(truth)[1]
        numbers = ops.arange(1, num_boxes + 1, dtype="float32")[None, :, None]
        winner = ops.max(matches * numbers, axis=1)
        positive = ops.cast(winner > 0, "float32")
        # Gathers, not a matmul with the matches: GPUs may run float32 matmuls in TF32.
        index = ops.maximum(ops.cast(winner, "int32") - 1, 0)
        target_box = ops.take_along_axis(
            truth, ops.repeat(ops.expand_dims(index, -1), 4, axis=-1), axis=1
        )
        if self.assignment == "original":
            # Every claimant's class bit stays set, as the original's one-hot writes; counts of
            # 0/1 products are exact even in TF32.
            box_classes = _one_hot(ops.cast(ops.maximum(classes, 0), "float32"), self.num_classes)
            counts = ops.matmul(ops.transpose(matches, (0, 2, 1)), box_classes * valid[..., None])
            class_target = ops.minimum(counts, 1.0)
            # The boxes in the original's y_true of this head: those that won some slot.
            present = ops.max(ops.cast(ops.equal(winner[:, None, :], numbers), "float32"), axis=2)
        else:
            target_class = ops.take_along_axis(ops.maximum(classes, 0), index, axis=1)
            class_target = _one_hot(ops.cast(target_class, "float32"), self.num_classes)
            present = valid
        return positive, target_box, class_target, present

    def _head_loss(
        self, layer: int, raw, pred, truth, positive, target_box, class_target, present
    ) -> dict[str, Any]:
        ls = self.label_smoothing
        class_target = class_target * (1.0 - ls) + ls / self.num_classes

        num_pos = ops.maximum(ops.sum(positive), 1.0)
        ciou = box_ciou(pred, target_box, self.ciou_alpha_gradient)
        box_loss = self.box_weight * ops.sum(positive * (1.0 - ciou)) / num_pos

        # Ignore negatives that already overlap some true box well: not background to learn.
        iou = _pairwise_iou(ops.stop_gradient(pred), truth) * present[:, None, :]
        kept = ops.cast(ops.max(iou, axis=-1) < self.ignore_threshold, "float32")
        obj_target = positive
        if self.objectness_target == "iou":
            obj_target = positive * ops.clip(ops.stop_gradient(ciou), 0.0, 1.0)
        obj_logits = raw[..., 4]
        obj_bce = bce_with_logits(obj_logits, obj_target) * self._obj_factor(
            obj_logits, obj_target, positive
        )
        obj_terms = positive * obj_bce + (1.0 - positive) * obj_bce * kept
        if self.obj_normalization == "all":
            obj_sum = ops.mean(obj_terms)
        else:
            num_neg = ops.maximum(ops.sum((1.0 - positive) * kept), 1.0)
            obj_sum = ops.sum(obj_terms) / (num_pos + num_neg)
        obj_loss = obj_sum * self.balance[layer] * self.obj_weight

        cls_bce = ops.sum(bce_with_logits(raw[..., 5:], class_target), axis=-1)
        cls_loss = self.cls_weight * ops.sum(positive * cls_bce) / num_pos / self.num_classes
        return {"box": box_loss, "obj": obj_loss, "cls": cls_loss}

    def _obj_factor(self, logits, targets, positive):
        """The weight of each objectness BCE term: 1, the focal factor, quality focal
        `|t - p| ** gamma` (Li et al., GFL) or varifocal: `t` at positives,
        `alpha * p ** gamma` elsewhere (Zhang et al., VarifocalNet; Ultralytics' form)."""
        if self.focal:
            return self._focal_factor(logits, targets)
        if self.obj_loss == "bce":
            return 1.0
        p = ops.sigmoid(logits)
        if self.obj_loss == "qfl":
            return ops.power(ops.abs(targets - p), self.quality_gamma)
        return positive * targets + (1.0 - positive) * self.vfl_alpha * ops.power(
            p, self.quality_gamma
        )

    def _decode(self, raw, layer: int, grid_h: int, grid_w: int):
        """(B, slots, 5 + C) raw outputs -> (B, slots, 4) normalised centre x, y, width, height."""
        height, width = self.input_size
        anchors = np.asarray(self.anchors, np.float32)[list(self.anchor_masks[layer])]
        rows, cols, slot_anchor = np.meshgrid(
            np.arange(grid_h), np.arange(grid_w), np.arange(len(anchors)), indexing="ij"
        )
        cols = ops.convert_to_tensor(cols.reshape(-1).astype(np.float32))
        rows = ops.convert_to_tensor(rows.reshape(-1).astype(np.float32))
        anchor_wh = anchors[slot_anchor.reshape(-1)] / np.float32([width, height])
        s = self.xy_scale
        xy = s * ops.sigmoid(raw[..., 0:2]) - (s - 1.0) / 2.0
        cx = (xy[..., 0] + cols) / grid_w
        cy = (xy[..., 1] + rows) / grid_h
        log_wh = ops.minimum(raw[..., 2:4], _MAX_LOG_WH)
        pred_wh = ops.exp(log_wh) * ops.convert_to_tensor(anchor_wh)
        return ops.concatenate([ops.stack([cx, cy], axis=-1), pred_wh], axis=-1)

    def _focal_factor(self, logits, targets):
        p = ops.sigmoid(logits)
        p_t = targets * p + (1.0 - targets) * (1.0 - p)
        alpha_t = targets * self.focal_alpha + (1.0 - targets) * (1.0 - self.focal_alpha)
        return alpha_t * ops.power(1.0 - p_t, self.focal_gamma)

    def _centre_cells(self, truth, grid_h: int, grid_w: int):
        """Centre in grid units -> (column, row) of the cell holding it, clipped to the grid, and
        the centre's offsets inside that cell."""
        gx = truth[..., 0] * grid_w
        gy = truth[..., 1] * grid_h
        col = ops.clip(ops.floor(gx), 0.0, grid_w - 1.0)
        row = ops.clip(ops.floor(gy), 0.0, grid_h - 1.0)
        return col, row, gx - col, gy - row

    def _original_matches(self, layer: int, truth, wh, grid_h: int, grid_w: int):
        """(B, N, gh, gw, A): the centre cell, at the slot of the box's best anchor among those
        in some mask (the original's fallback when its best anchor overall is in none)."""
        anchors = ops.convert_to_tensor(np.asarray(self.anchors, np.float32))
        inter = ops.prod(ops.minimum(wh[:, :, None, :], anchors), axis=-1)
        union = ops.prod(wh, axis=-1)[..., None] + ops.prod(anchors, axis=-1) - inter
        iou = inter / ops.maximum(union, _EPS)
        in_mask = np.zeros(len(self.anchors), np.float32)
        in_mask[sorted({i for m in self.anchor_masks for i in m})] = 1.0
        # IoU is in [0, 1]: -1 rules an anchor out without changing the order of the others.
        iou = ops.where(ops.convert_to_tensor(in_mask) > 0, iou, -1.0)
        best = ops.cast(ops.argmax(iou, axis=-1), "float32")
        slot = _one_hot(best, len(self.anchors))
        slot = ops.take(slot, list(self.anchor_masks[layer]), axis=-1)  # (B, N, A)
        col = _original_cell(truth[..., 0], self.input_size[1], grid_w)
        row = _original_cell(truth[..., 1], self.input_size[0], grid_h)
        cells = _outer_cells(_one_hot(row, grid_h), _one_hot(col, grid_w))
        return cells[..., None] * slot[:, :, None, None, :]

    def _yolov5_matches(self, layer: int, truth, wh, grid_h: int, grid_w: int):
        """(B, N, gh, gw, A): every anchor within the ratio limit, in the centre cell and its two
        neighbours nearer the centre (YOLOv5's three cells: 2 sigmoid - 0.5 reaches them)."""
        anchors = np.asarray(self.anchors, np.float32)[list(self.anchor_masks[layer])]
        ratio = wh[:, :, None, :] / ops.convert_to_tensor(anchors)
        worst = ops.max(ops.maximum(ratio, 1.0 / ops.maximum(ratio, _EPS)), axis=-1)
        slot = ops.cast(worst < self.anchor_threshold, "float32")  # (B, N, A)
        col, row, fx, fy = self._centre_cells(truth, grid_h, grid_w)
        col_next = col + ops.where(fx < 0.5, -1.0, 1.0)
        row_next = row + ops.where(fy < 0.5, -1.0, 1.0)
        rows, cols = _one_hot(row, grid_h), _one_hot(col, grid_w)
        cells = (
            _outer_cells(rows, cols)
            + _outer_cells(rows, _one_hot(col_next, grid_w))
            + _outer_cells(_one_hot(row_next, grid_h), cols)
        )
        return cells[..., None] * slot[:, :, None, None, :]

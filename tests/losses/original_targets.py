"""A NumPy port of the original yolov4-tiny-keras `YoloDatasets.preprocess_true_boxes`, written
from reading `utils/dataloader.py` (bubbliiiing/yolov4-tiny-keras), step for step and with its
dtypes, so that attnyolo's `assignment="original"` can be checked against it. Test-only code.

Facts it carries over: boxes are `(m, max_boxes, 5)` rows `x1, y1, x2, y2, class` padded with
zero rows at the end; the centre is `(x1 + x2) // 2` in float32; coordinates are normalised by
the input width / height (float64 division stored back into float32); a row counts when its width
is > 0; each box takes its best anchor by width/height IoU, or, when that anchor is in no mask,
the best one (by descending IoU) that is; it is written on every head whose mask holds that
anchor, at cell `floor(cx_normalised * grid)` (the product in float64), later boxes overwriting
the box and setting their class bit without clearing earlier ones.
"""

from __future__ import annotations

import numpy as np


def original_targets(true_boxes, input_shape, anchors, num_classes, anchors_mask):
    """`y_true` per head, each `(m, gh, gw, len(mask), 5 + num_classes)` float32."""
    true_boxes = np.array(true_boxes, dtype="float32")
    input_shape = np.array(input_shape, dtype="int32")
    num_layers = len(anchors_mask)
    m = true_boxes.shape[0]
    strides = {0: 32, 1: 16, 2: 8}
    grid_shapes = [input_shape // strides[layer] for layer in range(num_layers)]
    y_true = [
        np.zeros(
            (
                m,
                grid_shapes[layer][0],
                grid_shapes[layer][1],
                len(anchors_mask[layer]),
                5 + num_classes,
            ),
            dtype="float32",
        )
        for layer in range(num_layers)
    ]
    boxes_xy = (true_boxes[..., 0:2] + true_boxes[..., 2:4]) // 2
    boxes_wh = true_boxes[..., 2:4] - true_boxes[..., 0:2]
    true_boxes[..., 0:2] = boxes_xy / input_shape[::-1]
    true_boxes[..., 2:4] = boxes_wh / input_shape[::-1]

    anchors = np.expand_dims(np.asarray(anchors, dtype="float64"), 0)
    anchor_maxes = anchors / 2.0
    anchor_mins = -anchor_maxes
    valid_mask = boxes_wh[..., 0] > 0

    def in_some_mask(index):
        return any(index in mask for mask in anchors_mask)

    for b in range(m):
        wh = boxes_wh[b, valid_mask[b]]
        if len(wh) == 0:
            continue
        wh = np.expand_dims(wh, -2)
        box_maxes = wh / 2.0
        box_mins = -box_maxes
        intersect_mins = np.maximum(box_mins, anchor_mins)
        intersect_maxes = np.minimum(box_maxes, anchor_maxes)
        intersect_wh = np.maximum(intersect_maxes - intersect_mins, 0.0)
        intersect_area = intersect_wh[..., 0] * intersect_wh[..., 1]
        box_area = wh[..., 0] * wh[..., 1]
        anchor_area = anchors[..., 0] * anchors[..., 1]
        iou = intersect_area / (box_area + anchor_area - intersect_area)
        best_anchor = np.argmax(iou, axis=-1)
        sort_anchor = np.argsort(iou, axis=-1)
        for t, n in enumerate(best_anchor):
            if not in_some_mask(n):
                for index in sort_anchor[t][::-1]:
                    if in_some_mask(index):
                        n = index
                        break
            for layer in range(num_layers):
                if n not in anchors_mask[layer]:
                    continue
                i = np.floor(true_boxes[b, t, 0] * grid_shapes[layer][1]).astype("int32")
                j = np.floor(true_boxes[b, t, 1] * grid_shapes[layer][0]).astype("int32")
                k = list(anchors_mask[layer]).index(n)
                c = true_boxes[b, t, 4].astype("int32")
                y_true[layer][b, j, i, k, 0:4] = true_boxes[b, t, 0:4]
                y_true[layer][b, j, i, k, 4] = 1
                y_true[layer][b, j, i, k, 5 + c] = 1
    return y_true


def original_letterbox_boxes(boxes, image_size, input_shape, max_boxes=500):
    """The boxes of `get_random_data(random=False)`: integer annotation boxes `(K, 5)` scaled
    into the letterboxed input (assigned into the integer array, so truncated), clipped, boxes of
    width or height <= 1 dropped, padded to `(max_boxes, 5)`. No shuffle: callers pick the
    order."""
    iw, ih = image_size
    h, w = input_shape
    scale = min(w / iw, h / ih)
    nw, nh = int(iw * scale), int(ih * scale)
    dx, dy = (w - nw) // 2, (h - nh) // 2
    box = np.array(boxes, dtype=np.int64).reshape(-1, 5)
    box_data = np.zeros((max_boxes, 5))
    if len(box):
        box[:, [0, 2]] = box[:, [0, 2]] * nw / iw + dx
        box[:, [1, 3]] = box[:, [1, 3]] * nh / ih + dy
        box[:, 0:2][box[:, 0:2] < 0] = 0
        box[:, 2][box[:, 2] > w] = w
        box[:, 3][box[:, 3] > h] = h
        box_w = box[:, 2] - box[:, 0]
        box_h = box[:, 3] - box[:, 1]
        box = box[np.logical_and(box_w > 1, box_h > 1)][:max_boxes]
        box_data[: len(box)] = box
    return box_data

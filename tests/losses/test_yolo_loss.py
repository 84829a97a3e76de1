import functools
import math
from types import SimpleNamespace

import keras
import numpy as np
import pytest

from attnyolo.losses import YoloLoss

BACKEND = keras.backend.backend()
# A 64x96 (height x width) input: head 0 has a 2x3 grid (stride 32), head 1 a 4x6 grid.
INPUT_SIZE = (64, 96)
ANCHORS = ((4, 6), (8, 10), (14, 20), (24, 18), (40, 36), (70, 56))
MASKS = ((3, 4, 5), (1, 2, 3))
NUM_CLASSES = 3
PAD = [0.0, 0.0, 0.0, 0.0]
# Image 0: best anchors 3 (in both masks), 5 and 1, then padding. Image 1: best anchor 4, best
# anchor 0 (in no mask), two boxes sharing cell (1, 2) of head 1 and anchor 2 (the later one,
# class 2, wins), padding. No centre lies on a cell border or a cell's middle (YOLOv5's
# neighbour choice).
BOXES = np.array(
    [
        [[20, 10, 42, 30], [10, 5, 72, 55], [60, 40, 69, 49], PAD, PAD],
        [[50, 20, 88, 50], [5, 50, 9, 55], [34, 18, 48, 38], [35, 20, 48, 37], PAD],
    ],
    np.float32,
)
CLASSES = np.array([[0, 1, 2, -1, -1], [1, 0, 1, 2, -1]], np.int32)


def _heads(seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    channels = 3 * (5 + NUM_CLASSES)
    return [
        (scale * rng.normal(size=(2, 2, 3, channels))).astype(np.float32),
        (scale * rng.normal(size=(2, 4, 6, channels))).astype(np.float32),
    ]


def _loss(**kwargs):
    return YoloLoss(ANCHORS, MASKS, INPUT_SIZE, NUM_CLASSES, **kwargs)


@functools.cache
def _jitted(loss):
    import jax

    return jax.jit(loss.__call__)


def _run(loss, boxes, classes, heads):
    """The loss as Python floats. On JAX through `jax.jit`: eager JAX compiles op by op, which
    takes minutes over this file on two CPU cores; a compiled train step is the real use anyway."""
    if BACKEND == "jax":
        total, parts = _jitted(loss)(boxes, classes, heads)
    else:
        total, parts = loss(boxes, classes, heads)
    return float(keras.ops.convert_to_numpy(total)), {
        k: float(keras.ops.convert_to_numpy(v)) for k, v in parts.items()
    }


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _bce(x, t):
    return max(x, 0.0) - x * t + math.log1p(math.exp(-abs(x)))


def _iou(a, b):
    """IoU of two centre x, centre y, width, height boxes."""
    ix = max(min(a[0] + a[2] / 2, b[0] + b[2] / 2) - max(a[0] - a[2] / 2, b[0] - b[2] / 2), 0)
    iy = max(min(a[1] + a[3] / 2, b[1] + b[3] / 2) - max(a[1] - a[3] / 2, b[1] - b[3] / 2), 0)
    inter = ix * iy
    return inter / max(a[2] * a[3] + b[2] * b[3] - inter, 1e-7)


def _ciou(p, t):
    iou = _iou(p, t)
    rho2 = (p[0] - t[0]) ** 2 + (p[1] - t[1]) ** 2
    cw = max(p[0] + p[2] / 2, t[0] + t[2] / 2) - min(p[0] - p[2] / 2, t[0] - t[2] / 2)
    ch = max(p[1] + p[3] / 2, t[1] + t[3] / 2) - min(p[1] - p[3] / 2, t[1] - t[3] / 2)
    v = 4 / math.pi**2 * (math.atan(p[2] / p[3]) - math.atan(t[2] / t[3])) ** 2
    alpha = v / (1 - iou + v)
    return iou - rho2 / (cw**2 + ch**2) - alpha * v


def _yolov5_slots(box, layer, grid_h, grid_w, threshold):
    """YOLOv5's (row, column, anchor slot) candidates of one x1, y1, x2, y2 box on one head."""
    height, width = INPUT_SIZE
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = x2 - x1, y2 - y1
    gx, gy = (x1 + x2) / 2 / width * grid_w, (y1 + y2) / 2 / height * grid_h
    col, row = min(max(math.floor(gx), 0), grid_w - 1), min(max(math.floor(gy), 0), grid_h - 1)
    cells = [
        (row, col),
        (row, col - 1 if gx - col < 0.5 else col + 1),
        (row - 1 if gy - row < 0.5 else row + 1, col),
    ]
    anchors = [
        k
        for k, i in enumerate(MASKS[layer])
        if max(w / ANCHORS[i][0], ANCHORS[i][0] / w, h / ANCHORS[i][1], ANCHORS[i][1] / h)
        < threshold
    ]
    return [(r, c, k) for r, c in cells if 0 <= r < grid_h and 0 <= c < grid_w for k in anchors]


def _targets(boxes, classes, layer, grid_h, grid_w, cfg):
    """{(image, row, column, anchor slot): (normalised cxcywh, class bits)}; a later box
    overwrites the box (and, with "yolov5", the class; "original" keeps every claimant's bit)."""
    height, width = INPUT_SIZE
    mask = MASKS[layer]
    in_some_mask = {i for m in MASKS for i in m}
    original = cfg["assignment"] == "original"
    targets = {}
    for b in range(boxes.shape[0]):
        for n in range(boxes.shape[1]):
            if classes[b, n] < 0:
                continue
            x1, y1, x2, y2 = (float(v) for v in boxes[b, n])
            w, h = x2 - x1, y2 - y1
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            if original:  # the original's integer centre, (x1 + x2) // 2
                cx, cy = math.floor(cx), math.floor(cy)
            box = (cx / width, cy / height, w / width, h / height)
            gx, gy = box[0] * grid_w, box[1] * grid_h
            if original:  # float32 normalised centre, product in float64, as the original
                gx = float(np.float32(box[0])) * grid_w
                gy = float(np.float32(box[1])) * grid_h
            col, row = (
                min(max(math.floor(gx), 0), grid_w - 1),
                min(max(math.floor(gy), 0), grid_h - 1),
            )
            if cfg["assignment"] == "original":
                ious = [
                    min(w, aw) * min(h, ah) / (w * h + aw * ah - min(w, aw) * min(h, ah))
                    for aw, ah in ANCHORS
                ]
                # The best anchor among those in some mask (anchor 0 is in none).
                best = max(in_some_mask, key=lambda i: (ious[i], -i))
                slots = [(row, col, mask.index(best))] if best in mask else []
            else:
                slots = _yolov5_slots(boxes[b, n], layer, grid_h, grid_w, cfg["anchor_threshold"])
            bits = np.eye(NUM_CLASSES)[int(classes[b, n])]
            for slot in slots:
                if original and (b, *slot) in targets:
                    bits = np.maximum(bits, targets[(b, *slot)][1])
                targets[(b, *slot)] = (box, bits)
    return targets


def _decoded(p, layer, i, j, k, s):
    """One slot's raw outputs -> its normalised centre x, centre y, width, height."""
    height, width = INPUT_SIZE
    grid_h, grid_w = p.shape[:2]
    tx, ty, tw, th = p[i, j, k, :4]
    aw, ah = ANCHORS[MASKS[layer][k]]
    return (
        (s * _sigmoid(tx) - (s - 1) / 2 + j) / grid_w,
        (s * _sigmoid(ty) - (s - 1) / 2 + i) / grid_h,
        math.exp(min(tw, 10.0)) * aw / width,
        math.exp(min(th, 10.0)) * ah / height,
    )


def ota_targets(boxes, classes, heads, threshold=4.0):
    """SimOTA written out per image from YOLOv7's `ComputeLossOTA.build_targets`, one slot per
    entry: per head {(image, row, column, anchor slot): (normalised cxcywh, class bits)}."""
    height, width = INPUT_SIZE
    out = [{} for _ in heads]
    for b in range(boxes.shape[0]):
        raws = [h[b].astype(np.float64).reshape(*h.shape[1:3], 3, 5 + NUM_CLASSES) for h in heads]
        gts = [n for n in range(boxes.shape[1]) if classes[b, n] >= 0]
        slots = sorted(
            {
                (layer, *slot)
                for n in gts
                for layer, raw in enumerate(raws)
                for slot in _yolov5_slots(boxes[b, n], layer, *raw.shape[:2], threshold)
            }
        )
        if not slots:
            continue
        preds = [_decoded(raws[layer], layer, i, j, k, 2.0) for layer, i, j, k in slots]
        owner = {}  # slot -> (cost, box number)
        for n in gts:
            x1, y1, x2, y2 = (float(v) for v in boxes[b, n])
            truth = (
                (x1 + x2) / 2 / width,
                (y1 + y2) / 2 / height,
                (x2 - x1) / width,
                (y2 - y1) / height,
            )
            ious = [_iou(pred, truth) for pred in preds]
            k = max(int(sum(sorted(ious, reverse=True)[:10])), 1)
            costs = []
            for (layer, i, j, a), iou in zip(slots, ious, strict=True):
                out_row = raws[layer][i, j, a]
                obj = _sigmoid(out_row[4])
                y = [math.sqrt(_sigmoid(x) * obj) for x in out_row[5:]]
                cls = -sum(
                    math.log(q) if c == classes[b, n] else math.log(1 - q) for c, q in enumerate(y)
                )
                costs.append(cls + 3.0 * -math.log(iou + 1e-8))
            for index in np.argsort(costs, kind="stable")[:k]:
                slot = slots[index]
                if slot not in owner or costs[index] < owner[slot][0]:
                    owner[slot] = (costs[index], n, truth)
        for (layer, i, j, a), (_, n, truth) in owner.items():
            out[layer][(b, i, j, a)] = (truth, np.eye(NUM_CLASSES)[int(classes[b, n])])
    return out


def reference_loss(boxes, classes, heads, **options):
    """The loss written out from the formulas, one slot at a time, in float64."""
    cfg = dict(
        xy_scale=1.0,
        assignment="original",
        ignore_threshold=0.5,
        label_smoothing=0.0,
        focal=False,
        obj_loss="bce",
        quality_gamma=2.0,
        vfl_alpha=0.75,
        focal_gamma=2.0,
        focal_alpha=0.25,
        balance=(0.4, 1.0),
        box_weight=0.05,
        obj_weight=5 * 64 * 96 / 416**2,
        cls_weight=NUM_CLASSES / 80,
        anchor_threshold=4.0,
        objectness_target="one",
        obj_normalization="non_ignored",
    )
    cfg.update(options)
    height, width = INPUT_SIZE
    s, ls = cfg["xy_scale"], cfg["label_smoothing"]
    parts = {"box": 0.0, "obj": 0.0, "cls": 0.0}
    stats = {"positives": 0, "ignored": 0}
    for layer, head in enumerate(heads):
        batch, grid_h, grid_w, _ = head.shape
        p = head.astype(np.float64).reshape(batch, grid_h, grid_w, 3, 5 + NUM_CLASSES)
        if cfg["assignment"] == "ota":
            targets = ota_targets(boxes, classes, heads, cfg["anchor_threshold"])[layer]
        else:
            targets = _targets(boxes, classes, layer, grid_h, grid_w, cfg)
        box_sum = obj_sum = cls_sum = 0.0
        num_neg = 0
        for b in range(batch):
            if cfg["assignment"] == "original":
                # The original ignores by IoU with the boxes in this head's y_true only.
                truths = list({t[0] for key, t in targets.items() if key[0] == b})
            else:
                truths = [
                    (
                        (x1 + x2) / 2 / width,
                        (y1 + y2) / 2 / height,
                        (x2 - x1) / width,
                        (y2 - y1) / height,
                    )
                    for (x1, y1, x2, y2), c in zip(
                        boxes[b].astype(np.float64), classes[b], strict=True
                    )
                    if c >= 0
                ]
            for i in range(grid_h):
                for j in range(grid_w):
                    for k in range(len(MASKS[layer])):
                        to = p[b, i, j, k, 4]
                        pred = _decoded(p[b], layer, i, j, k, s)
                        target = targets.get((b, i, j, k))
                        if target is None:
                            t_obj = 0.0
                            if (
                                max([_iou(pred, t) for t in truths], default=0.0)
                                >= cfg["ignore_threshold"]
                            ):
                                stats["ignored"] += 1
                                continue
                            num_neg += 1
                        else:
                            box, bits = target
                            ciou = _ciou(pred, box)
                            box_sum += 1 - ciou
                            t_obj = (
                                1.0 if cfg["objectness_target"] == "one" else min(max(ciou, 0), 1)
                            )
                            one_hot = bits * (1 - ls) + ls / NUM_CLASSES
                            cls_sum += sum(
                                _bce(x, t) for x, t in zip(p[b, i, j, k, 5:], one_hot, strict=True)
                            )
                        term = _bce(to, t_obj)
                        if cfg["focal"]:
                            prob = _sigmoid(to)
                            p_t = t_obj * prob + (1 - t_obj) * (1 - prob)
                            a_t = t_obj * cfg["focal_alpha"] + (1 - t_obj) * (
                                1 - cfg["focal_alpha"]
                            )
                            term *= a_t * (1 - p_t) ** cfg["focal_gamma"]
                        elif cfg["obj_loss"] == "qfl":  # GFL: |t - p| ** beta
                            term *= abs(t_obj - _sigmoid(to)) ** cfg["quality_gamma"]
                        elif cfg["obj_loss"] == "vfl":  # VarifocalNet: t, or alpha p ** gamma
                            term *= (
                                t_obj
                                if target is not None
                                else cfg["vfl_alpha"] * _sigmoid(to) ** cfg["quality_gamma"]
                            )
                        obj_sum += term
        num_pos = max(len(targets), 1)
        stats["positives"] += len(targets)
        if cfg["obj_normalization"] == "all":
            obj_norm = batch * grid_h * grid_w * 3
        else:
            obj_norm = num_pos + max(num_neg, 1)
        parts["box"] += cfg["box_weight"] * box_sum / num_pos
        parts["obj"] += obj_sum / obj_norm * cfg["balance"][layer] * cfg["obj_weight"]
        parts["cls"] += cfg["cls_weight"] * cls_sum / num_pos / NUM_CLASSES
    return sum(parts.values()), parts, stats


CASES = {
    "original": {},
    "label_smoothing": {"label_smoothing": 0.1},
    "focal": {"focal": True, "focal_gamma": 1.5, "focal_alpha": 0.3},
    # YOLOv5 makes most slots of this small batch positive; a lower threshold still ignores some.
    "yolov5": {"assignment": "yolov5", "xy_scale": 2.0, "ignore_threshold": 0.3},
    "iou_objectness": {"objectness_target": "iou"},
    "ota": {"assignment": "ota", "xy_scale": 2.0, "ignore_threshold": 0.3},
    "ota_qfl": {
        "assignment": "ota",
        "xy_scale": 2.0,
        "objectness_target": "iou",
        "obj_loss": "qfl",
        "quality_gamma": 1.5,
        "obj_normalization": "all",
        "ignore_threshold": 0.3,
    },
    "vfl": {"objectness_target": "iou", "obj_loss": "vfl", "vfl_alpha": 0.6},
    "obj_over_all_slots": {"obj_normalization": "all"},
    "xy_scale_and_weights": {
        "xy_scale": 1.05,
        "balance": (0.7, 2.0),
        "box_weight": 1.5,
        "obj_weight": 2.0,
        "cls_weight": 0.5,
        "ignore_threshold": 0.3,
    },
    "yolov5_everything": {
        "assignment": "yolov5",
        "xy_scale": 2.0,
        "anchor_threshold": 3.0,
        "objectness_target": "iou",
        "focal": True,
        "label_smoothing": 0.2,
        "obj_normalization": "all",
        "ignore_threshold": 0.3,
    },
}


@pytest.mark.parametrize("name", list(CASES))
def test_matches_numpy_reference(name):
    options = CASES[name]
    heads = _heads(seed=0)
    total, parts = _run(_loss(**options), BOXES, CLASSES, heads)
    expected_total, expected, stats = reference_loss(BOXES, CLASSES, heads, **options)
    assert stats["positives"] > 0 and stats["ignored"] > 0  # the case exercises both
    np.testing.assert_allclose(total, expected_total, rtol=1e-5)
    for key in ("box", "obj", "cls"):
        np.testing.assert_allclose(parts[key], expected[key], rtol=1e-5, err_msg=key)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ota_targets_equal_the_reference_simota(seed):
    heads = _heads(seed=seed, scale=2.0)
    loss = _loss(assignment="ota", xy_scale=2.0)
    got = [
        {k: keras.ops.convert_to_numpy(v) for k, v in t.items()}
        for t in loss.targets(BOXES, CLASSES, heads)
    ]
    expected = ota_targets(BOXES, CLASSES, heads)
    candidates = 0
    for layer, (head, want) in enumerate(zip(got, expected, strict=True)):
        positives = {tuple(int(v) for v in key) for key in np.argwhere(head["positive"] > 0)}
        assert positives == set(want), f"head {layer}"
        for key, (box, bits) in want.items():
            np.testing.assert_allclose(head["box"][key], box, rtol=1e-6)
            np.testing.assert_array_equal(head["classes"][key], bits)
        yolov5 = _loss(assignment="yolov5", xy_scale=2.0).targets(BOXES, CLASSES)[layer]
        candidates += int(np.sum(keras.ops.convert_to_numpy(yolov5["positive"])))
    # SimOTA keeps a few of YOLOv5's candidates per box, at least one for each box.
    chosen = sum(len(w) for w in expected)
    assert int(np.sum(CLASSES >= 0)) <= chosen < candidates


def test_ota_targets_need_the_heads():
    with pytest.raises(ValueError, match="pass the heads"):
        _loss(assignment="ota", xy_scale=2.0).targets(BOXES, CLASSES)


def test_reference_targets_follow_the_rules():
    # Keeps the reference honest about the hand-made batch it is compared on.
    cfg = {"assignment": "original"}
    head0 = _targets(BOXES, CLASSES, 0, 2, 3, cfg)
    head1 = _targets(BOXES, CLASSES, 1, 4, 6, cfg)
    # Box 0 of image 0 (22x20, anchor 3) is on both heads; box 1 (62x50, anchor 5) on head 0;
    # image 1's 38x30 box (anchor 4) on head 0.
    assert sorted(head0) == [(0, 0, 0, 0), (0, 0, 1, 2), (1, 1, 2, 1)]
    # Box 2 (9x9, anchor 1; integer centre 64, 44: on a column border, float32 keeps it in
    # column 4); image 1's 4x5 box, best anchor 0 (in no mask), moves to anchor 1 (IoU 0.25)
    # at (3, 0); the pair of image 1 share (1, 2, anchor 2): the later box's target, and the
    # class bits of both (1 and 2), as the original's one-hot writes them.
    assert sorted(head1) == [(0, 1, 1, 2), (0, 2, 4, 0), (1, 1, 2, 1), (1, 3, 0, 0)]
    assert head1[(1, 1, 2, 1)][1].tolist() == [0, 1, 1]
    assert head1[(1, 1, 2, 1)][0][0] == 41 / 96  # (35 + 48) // 2, the later box
    yolov5 = _targets(BOXES, CLASSES, 1, 4, 6, {"assignment": "yolov5", "anchor_threshold": 4})
    assert len(yolov5) > len(head1)


def _zero_heads(batch=2):
    channels = 3 * (5 + NUM_CLASSES)
    return [
        np.zeros((batch, 2, 3, channels), np.float32),
        np.zeros((batch, 4, 6, channels), np.float32),
    ]


def _negatives_only_obj(loss):
    # Zero logits: each kept negative costs log 2; num_pos = 1, so per head the mean is
    # log 2 * n / (1 + n) with n = 2 images x slots (no prediction overlaps a box enough).
    return sum(
        math.log(2) * n / (1 + n) * balance * loss.obj_weight
        for n, balance in zip((2 * 2 * 3 * 3, 2 * 4 * 6 * 3), loss.balance, strict=True)
    )


def test_box_whose_best_anchor_is_in_no_mask_moves_to_its_best_anchor_in_a_mask():
    # A 4x5 box's best anchor is 0 (4x6), in neither mask. The original's preprocess_true_boxes
    # then takes the best anchor that is in a mask: anchor 1 (8x10, IoU 20 / 80 = 0.25), slot 0
    # of head 1 (stride 16), cell (row 22 // 16 = 1, column 42 // 16 = 2).
    boxes = np.array([[[40, 20, 44, 25]], [PAD]], np.float32)
    classes = np.array([[1], [-1]], np.int32)
    head0, head1 = (
        {k: keras.ops.convert_to_numpy(v) for k, v in t.items()}
        for t in _loss().targets(boxes, classes)
    )
    assert head0["positive"].sum() == 0
    assert head1["positive"].sum() == 1 and head1["positive"][0, 1, 2, 0] == 1
    np.testing.assert_allclose(head1["box"][0, 1, 2, 0], [42 / 96, 22 / 64, 4 / 96, 5 / 64])
    assert head1["classes"][0, 1, 2, 0].tolist() == [0, 1, 0]
    total, parts = _run(_loss(), boxes, classes, _zero_heads())
    assert parts["box"] > 0 and parts["cls"] > 0


def test_yolov5_centre_is_not_rounded():
    boxes = np.array([[[40, 20, 45, 25]], [PAD]], np.float32)
    classes = np.array([[1], [-1]], np.int32)
    loss = _loss(assignment="yolov5", xy_scale=2.0)
    head1 = keras.ops.convert_to_numpy(loss.targets(boxes, classes)[1]["box"])
    positive = keras.ops.convert_to_numpy(loss.targets(boxes, classes)[1]["positive"]) > 0
    np.testing.assert_allclose(head1[positive][:, 0], 42.5 / 96)


def test_all_padding_gives_only_negative_objectness():
    boxes = np.zeros((2, 4, 4), np.float32)
    classes = np.full((2, 4), -1, np.int32)
    loss = _loss()
    total, parts = _run(loss, boxes, classes, _zero_heads())
    assert parts["box"] == 0.0 and parts["cls"] == 0.0 and math.isfinite(total)
    np.testing.assert_allclose(parts["obj"], _negatives_only_obj(loss), rtol=1e-6)


def _logit(p):
    return math.log(p / (1 - p))


def _exact_head1(box, slot, class_logits):
    """Zero heads except head 1's slot (row, column, anchor slot), whose prediction decodes to
    `box` exactly (xy_scale 1: sigmoid(tx) = the centre's offset in its cell)."""
    heads = _zero_heads(batch=1)
    row, col, k = slot
    x1, y1, x2, y2 = box
    aw, ah = ANCHORS[MASKS[1][k]]
    values = [
        _logit((x1 + x2) / 2 / 16 - col),
        _logit((y1 + y2) / 2 / 16 - row),
        math.log((x2 - x1) / aw),
        math.log((y2 - y1) / ah),
        0.0,
        *class_logits,
    ]
    heads[1][0, row, col, k * 8 : (k + 1) * 8] = values
    return heads


def test_box_matching_its_prediction_has_zero_ciou_loss():
    # 12x22 box centred at (41, 29): best anchor 2 (14x20), head 1 cell (row 1, column 2).
    box = [35, 18, 47, 40]
    loss = _loss()
    heads = _exact_head1(box, (1, 2, 1), [0.0, 0.0, 0.0])
    _, parts = _run(loss, np.array([[box]], np.float32), np.array([[0]]), heads)
    assert abs(parts["box"]) < 1e-6
    # Moving the prediction one pixel right costs rho^2 / c^2 = (1/96)^2 / ((13/96)^2 +
    # (22/64)^2) > 0 (IoU 11/13, v = 0): the zero above is no accident.
    shifted = _exact_head1([36, 18, 48, 40], (1, 2, 1), [0.0, 0.0, 0.0])
    _, parts = _run(loss, np.array([[box]], np.float32), np.array([[0]]), shifted)
    iou = 11 * 22 / (2 * 12 * 22 - 11 * 22)
    rho2_c2 = (1 / 96) ** 2 / ((13 / 96) ** 2 + (22 / 64) ** 2)
    np.testing.assert_allclose(parts["box"], 0.05 * (1 - iou + rho2_c2), rtol=1e-5)


def test_later_box_wins_a_shared_slot():
    # Both boxes fall in head 1 cell (1, 2) at anchor 2 (the later one, 12x16, is nearest
    # anchor 0 and moves to anchor 2, 14x20); both have integer centres (41, 28). The
    # prediction matches the later box exactly: its box is the target.
    first, later = [34, 18, 48, 38], [35, 20, 47, 36]
    boxes = np.array([[first, later]], np.float32)
    class_logits = [-4.0, -4.0, 4.0]
    heads = _exact_head1(later, (1, 2, 1), class_logits)
    loss = _loss()
    _, parts = _run(loss, boxes, np.array([[1, 2]]), heads)
    assert abs(parts["box"]) < 1e-6
    # One positive whose class target keeps both boxes' bits, as the original's one-hot:
    # cls = cls_weight * sum_c BCE(x_c, [0, 1, 1]_c) / 1 / C.
    expected = loss.cls_weight * sum(map(_bce, class_logits, [0, 1, 1])) / NUM_CLASSES
    np.testing.assert_allclose(parts["cls"], expected, rtol=1e-6)
    # Swapped order: the box matching the prediction now loses the box target; the class bits
    # are those of both boxes still.
    _, parts = _run(loss, boxes[:, ::-1].copy(), np.array([[2, 1]]), heads)
    assert parts["box"] > 1e-3
    np.testing.assert_allclose(parts["cls"], expected, rtol=1e-6)


def test_mixed_precision_heads_are_computed_in_float32():
    heads = _heads(seed=2)
    half = [h.astype(np.float16) for h in heads]
    total, parts = _run(_loss(), BOXES, CLASSES, [keras.ops.convert_to_tensor(h) for h in half])
    expected, expected_parts = _run(_loss(), BOXES, CLASSES, [h.astype(np.float32) for h in half])
    assert total == expected and parts == expected_parts


@functools.cache
def _jitted_gradient(loss):
    import jax

    return jax.jit(jax.grad(lambda heads, boxes, classes: loss(boxes, classes, heads)[0]))


def _gradients(loss, boxes, classes, heads):
    """Gradients of the total loss with respect to the heads, with the backend's autodiff."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        variables = [tf.Variable(h) for h in heads]
        with tf.GradientTape() as tape:
            total, _ = loss(boxes, classes, variables)
        return [g.numpy() for g in tape.gradient(total, variables)]
    if BACKEND == "jax":
        grads = _jitted_gradient(loss)(list(heads), boxes, classes)
        return [np.asarray(g) for g in grads]
    if BACKEND == "torch":
        import torch

        tensors = [torch.tensor(h, requires_grad=True) for h in heads]
        total, _ = loss(boxes, classes, tensors)
        total.backward()
        return [t.grad.numpy() for t in tensors]
    pytest.skip(f"no gradient helper for the {BACKEND} backend")


@pytest.mark.parametrize("name", ["original", "yolov5_everything"])
def test_gradients_are_finite(name):
    heads = _heads(seed=3, scale=3.0)
    heads[0][0, 0, 0, :8] = [50.0, -50.0, 100.0, -100.0, 60.0, -60.0, 80.0, -80.0]  # saturated
    loss = _loss(**CASES[name])
    grads = _gradients(loss, BOXES, CLASSES, heads)
    assert all(np.isfinite(g).all() for g in grads)
    assert any(np.abs(g).max() > 0 for g in grads)
    padding = _gradients(loss, np.zeros_like(BOXES), np.full_like(CLASSES, -1), heads)
    assert all(np.isfinite(g).all() for g in padding)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_inside_a_tf_function(jit_compile):
    if BACKEND != "tensorflow":
        pytest.skip("tf.function is TensorFlow's compiled step (JAX's jax.jit runs in _run)")
    import tensorflow as tf

    loss = _loss(label_smoothing=0.1)
    heads = _heads(seed=4)
    # Unknown batch and box counts: the padding length may vary from batch to batch.
    spec = [
        tf.TensorSpec((None, None, 4), tf.float32),
        tf.TensorSpec((None, None), tf.int32),
        [tf.TensorSpec((None, *h.shape[1:]), tf.float32) for h in heads],
    ]
    compiled = tf.function(
        lambda b, c, h: loss(b, c, h)[0], input_signature=spec, jit_compile=jit_compile
    )
    expected, _, _ = reference_loss(BOXES, CLASSES, heads, label_smoothing=0.1)
    np.testing.assert_allclose(float(compiled(BOXES, CLASSES, heads)), expected, rtol=1e-5)
    # The same trace takes another padding length.
    expected, _, _ = reference_loss(BOXES[:, :3], CLASSES[:, :3], heads, label_smoothing=0.1)
    np.testing.assert_allclose(
        float(compiled(BOXES[:, :3], CLASSES[:, :3], heads)), expected, rtol=1e-5
    )


def test_default_weights_config_and_from_model():
    loss = _loss()
    assert loss.obj_weight == pytest.approx(5 * 64 * 96 / 416**2)
    assert loss.cls_weight == pytest.approx(3 / 80)
    config = loss.get_config()
    assert YoloLoss(**config).get_config() == config
    model = SimpleNamespace(
        anchors=ANCHORS, anchor_masks=MASKS, input_size=INPUT_SIZE, num_classes=3, xy_scale=2.0
    )
    loss = YoloLoss.from_model(model, assignment="yolov5", balance=(1.0, 1.0))
    assert loss.xy_scale == 2.0 and loss.assignment == "yolov5" and loss.input_size == INPUT_SIZE


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"assignment": "simota"}, "Unknown assignment"),
        ({"objectness_target": "giou"}, "Unknown objectness_target"),
        ({"obj_normalization": "sum"}, "Unknown obj_normalization"),
        ({"assignment": "yolov5"}, "xy_scale=2.0"),
        ({"assignment": "ota"}, "xy_scale=2.0"),
        ({"obj_loss": "focal"}, "Unknown obj_loss"),
        ({"obj_loss": "qfl", "focal": True}, "focal applies to obj_loss='bce'"),
        ({"balance": (0.4, 1.0, 4.0)}, "one weight per head"),
    ],
)
def test_invalid_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _loss(**kwargs)


def test_invalid_heads():
    heads = _heads()
    with pytest.raises(ValueError, match="Expected 2 heads"):
        _loss()(BOXES, CLASSES, heads[:1])
    with pytest.raises(ValueError, match=r"Head 1 must be"):
        _run(_loss(), BOXES, CLASSES, [heads[0], heads[1][..., :-1]])


def test_ciou_alpha_gradient_is_the_original_derivative():
    # The original lets the gradient through CIoU's alpha: its derivative is that of the CIoU
    # formula itself, which central differences of the float64 reference give. With alpha held
    # constant (the default) the width/height derivatives of a positive slot differ from it.
    heads = _heads(seed=0)
    positive = keras.ops.convert_to_numpy(_loss().targets(BOXES, CLASSES)[1]["positive"])
    b, row, col, k = (int(i) for i in np.argwhere(positive > 0)[0])
    found = {}
    for alpha_gradient in (True, False):
        grads = _gradients(_loss(ciou_alpha_gradient=alpha_gradient), BOXES, CLASSES, heads)
        found[alpha_gradient] = [grads[1][b, row, col, k * 8 + c] for c in (2, 3)]
    numeric = []
    for c in (2, 3):
        values = []
        for step in (1e-5, -1e-5):
            moved = [h.astype(np.float64) for h in heads]
            moved[1][b, row, col, k * 8 + c] += step
            values.append(reference_loss(BOXES, CLASSES, moved)[0])
        numeric.append((values[0] - values[1]) / 2e-5)
    np.testing.assert_allclose(found[True], numeric, rtol=2e-3)
    assert not np.allclose(found[False], numeric, rtol=2e-2)

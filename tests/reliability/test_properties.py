"""Property-based tests (Hypothesis) of the geometry every box passes through.

Each property checks the project's code against an independent statement of what it computes:
IoU against exact rational arithmetic, NMS against a brute-force greedy pass, decoding a head of
zeros against the formula worked out by hand, the letterbox's inverse against the boxes it
started from, conversions between formats against the records they started from, and the
augmentations against the bounds a training box must keep. Degenerate inputs (zero-area,
identical and touching boxes, empty inputs) are drawn by the strategies and pinned by
`@example`s. How many examples each property draws is the profile's (`conftest.py`).
"""

import itertools
import json
import tempfile
import warnings
from fractions import Fraction
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st
from keras import ops
from PIL import Image

from attnyolo.data import load_dataset
from attnyolo.data.augment import (
    clip_and_filter,
    hflip,
    hsv_jitter,
    letterbox_sample,
    mixup,
    mosaic,
    random_resize,
)
from attnyolo.data.convert import convert_dataset
from attnyolo.engine.anchors import wh_iou
from attnyolo.inference import decoder as decoder_module
from attnyolo.inference.decoder import YoloDecoder, _iou_matrix, batched_nms, box_iou, nms
from attnyolo.inference.preprocess import Preprocessor
from attnyolo.losses.yolo import _pairwise_iou, box_ciou
from attnyolo.metrics.voc import _pair_iou
from attnyolo.models.yolo import DEFAULT_ANCHOR_MASKS, HEAD_STRIDES, YOLOv4Tiny


def exact_iou(a, b, offset=0) -> Fraction:
    """IoU of two integer x1y1x2y2 boxes in exact arithmetic; `offset` 1 is VOC's inclusive
    pixels. No union (two empty boxes): 0."""
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]) + offset)
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]) + offset)
    inter = iw * ih
    union = (a[2] - a[0] + offset) * (a[3] - a[1] + offset)
    union += (b[2] - b[0] + offset) * (b[3] - b[1] + offset) - inter
    return Fraction(inter, union) if union > 0 else Fraction(0)


@st.composite
def int_box(draw, limit: int = 16) -> tuple[int, int, int, int]:
    """x1 <= x2, y1 <= y2 on a small grid, so that identical, touching, nested and zero-area
    boxes come up often."""
    x1, x2 = sorted(draw(st.integers(0, limit)) for _ in range(2))
    y1, y2 = sorted(draw(st.integers(0, limit)) for _ in range(2))
    return x1, y1, x2, y2


TOUCHING = [(0, 0, 4, 4), (4, 0, 8, 4), (0, 4, 4, 8), (4, 4, 8, 8)]
IDENTICAL = [(1, 2, 5, 7)] * 3
ZERO_AREA = [(3, 3, 3, 9), (3, 3, 3, 9), (0, 0, 6, 6), (2, 2, 2, 2), (2, 2, 2, 2)]
NESTED = [(0, 0, 10, 10), (2, 2, 8, 8), (4, 4, 6, 6)]


# --- IoU -------------------------------------------------------------------------------------


@given(st.lists(int_box(), min_size=1, max_size=10))
@example(TOUCHING)
@example(IDENTICAL)
@example(ZERO_AREA)
@example(NESTED)
def test_iou_is_exact_bounded_and_symmetric(boxes):
    b = np.array(boxes, np.float64)
    # Integer inputs make intersection and union exact in float64, so each IoU is the correctly
    # rounded quotient: equal to the exact fraction's float, bit for bit.
    want = np.array([[float(exact_iou(p, q)) for q in boxes] for p in boxes])
    want_devkit = np.array([[float(exact_iou(p, q, 1)) for q in boxes] for p in boxes])
    matrix = _iou_matrix(b)
    np.testing.assert_array_equal(matrix, want)
    assert ((matrix >= 0) & (matrix <= 1)).all()
    np.testing.assert_array_equal(matrix, matrix.T)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    np.testing.assert_array_equal(np.diag(matrix), (area > 0).astype(float))
    for i in range(len(b)):
        np.testing.assert_array_equal(box_iou(b[i], b), want[i])
        same = np.repeat(b[i : i + 1], len(b), axis=0)
        np.testing.assert_array_equal(_pair_iou(same, b, 0.0), want[i])
        np.testing.assert_array_equal(_pair_iou(b, same, 0.0), want[i])
        np.testing.assert_array_equal(_pair_iou(same, b, 1.0), want_devkit[i])
    assert ((want_devkit >= 0) & (want_devkit <= 1)).all()


@given(st.lists(st.tuples(st.integers(1, 40), st.integers(1, 40)), min_size=1, max_size=8))
@example([(3, 5), (3, 5), (5, 3), (1, 40)])
def test_anchor_iou_is_the_iou_of_corner_aligned_boxes(sizes):
    wh = np.array(sizes, np.float64)
    want = [[float(exact_iou((0, 0, *p), (0, 0, *q))) for q in sizes] for p in sizes]
    got = wh_iou(wh, wh)
    np.testing.assert_allclose(got, want, rtol=1e-15, atol=0)
    np.testing.assert_array_equal(got, got.T)


def cxcywh(corners) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = corners
    return (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1


# The loss works in units of the input size: boxes drawn on a 1/64 grid of the unit square are
# exact in float32, so the loss's float32 IoU can only round its last steps.
loss_boxes = st.lists(int_box(limit=64).map(lambda b: cxcywh(np.array(b) / 64)), max_size=6)


@given(loss_boxes.filter(len), loss_boxes.filter(len))
@example([cxcywh((0, 0, 0.25, 0.25))], [cxcywh((0.25, 0, 0.5, 0.25))])  # touching
@example([cxcywh((0.1, 0.1, 0.1, 0.5))], [cxcywh((0.1, 0.1, 0.1, 0.5))])  # zero-area, identical
def test_loss_iou_matches_reference(pred, truth):
    p, t = np.array(pred, np.float32), np.array(truth, np.float32)
    got = ops.convert_to_numpy(_pairwise_iou(p[None], t[None]))[0]
    back = ops.convert_to_numpy(_pairwise_iou(t[None], p[None]))[0]

    def corners(box):
        cx, cy, w, h = (Fraction(float(v)) for v in box)
        return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2

    want = np.array([[float(exact_iou(corners(a), corners(b))) for b in t] for a in p])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(got, back.T)
    assert ((got >= 0) & (got <= 1 + 1e-6)).all()
    # CIoU = IoU - (centre distance / enclosing diagonal)^2 - alpha v: never above the IoU,
    # and exactly the IoU (1) for a box against itself.
    pairs = list(itertools.product(range(len(p)), range(len(t))))
    rows, cols = np.array(pairs).T
    ciou = ops.convert_to_numpy(box_ciou(p[rows], t[cols]))
    assert (ciou <= want[rows, cols] + 1e-6).all() and (ciou >= -2).all()
    positive = p[(p[:, 2] > 0) & (p[:, 3] > 0)]
    if len(positive):
        np.testing.assert_allclose(ops.convert_to_numpy(box_ciou(positive, positive)), 1, atol=1e-6)


# --- NMS -------------------------------------------------------------------------------------


def greedy_nms(boxes, scores, threshold) -> list[int]:
    """Brute force: visit by descending score (ties: lower index first), keep a box unless its
    IoU with a box already kept is above the threshold."""
    keep = []
    for i in sorted(range(len(scores)), key=lambda i: (-scores[i], i)):
        if all(float(exact_iou(boxes[i], boxes[j])) <= threshold for j in keep):
            keep.append(i)
    return keep


# Few distinct scores make ties; float32 values so TensorFlow's kernel orders them alike.
scores_st = st.sampled_from([0.25, 0.5, 0.75]) | st.floats(0, 1, width=32)
thresholds = st.sampled_from([0.0, 0.3, 0.5, 1.0]) | st.floats(0, 1)


@st.composite
def detections(draw, max_size: int = 24):
    n = draw(st.integers(0, max_size))
    boxes = [draw(int_box(limit=12)) for _ in range(n)]
    scores = [draw(scores_st) for _ in range(n)]
    classes = [draw(st.integers(0, 2)) for _ in range(n)]
    return boxes, scores, classes


def arrays(boxes, scores, classes=()):
    return (
        np.array(boxes, np.float64).reshape(-1, 4),
        np.array(scores, np.float64),
        np.array(classes, np.int64),
    )


@given(detections(), thresholds, st.integers(1, 4))
@example(([], [], []), 0.5, 1)
@example((IDENTICAL, [0.5, 0.5, 0.5], [0, 0, 0]), 0.5, 2)
@example((ZERO_AREA, [0.9, 0.8, 0.7, 0.6, 0.5], [0] * 5), 0.0, 3)
@example((TOUCHING, [0.5] * 4, [0] * 4), 0.0, 4)
@example((NESTED, [0.1, 0.9, 0.5], [0, 0, 0]), 0.36, 1)  # IoU exactly 0.36: kept at 0.36
def test_nms_is_the_greedy_reference(dets, threshold, max_keep):
    boxes, scores, _ = dets
    b, s, _ = arrays(*dets)
    want = greedy_nms(boxes, scores, threshold)
    got = nms(b, s, threshold)
    assert got.dtype == np.int64 and got.tolist() == want
    assert nms(b, s, threshold, max_keep).tolist() == want[:max_keep]
    # Above _MATRIX_NMS_LIMIT boxes NMS takes a loop instead of the IoU matrix: the same result.
    with mock.patch.object(decoder_module, "_MATRIX_NMS_LIMIT", 0):
        assert nms(b, s, threshold).tolist() == want
        assert nms(b, s, threshold, max_keep).tolist() == want[:max_keep]


@given(detections(max_size=30), thresholds)
@example(([], [], []), 0.5)
@example((IDENTICAL * 2, [0.5] * 6, [0, 1, 2, 0, 1, 2]), 0.5)
@example((NESTED + NESTED, [0.1, 0.9, 0.5, 0.2, 0.8, 0.4], [0, 0, 0, 1, 1, 1]), 0.36)
def test_batched_nms_keeps_a_sorted_subset_without_overlaps(dets, threshold):
    boxes, scores, classes = dets
    b, s, c = arrays(*dets)
    keep = batched_nms(b, s, c, threshold)
    kept = keep.tolist()
    assert len(set(kept)) == len(kept) and set(kept) <= set(range(len(boxes)))
    assert (np.diff(s[keep]) <= 0).all()  # by descending score
    # TensorFlow's kernel (used where TensorFlow is loaded, as here) computes IoU in float32:
    # only an IoU within float32 rounding of the threshold may come out either way.
    slack = 1e-6
    iou = {(i, j): float(exact_iou(boxes[i], boxes[j])) for i in range(len(boxes)) for j in kept}
    for i, j in itertools.combinations(kept, 2):
        assert classes[i] != classes[j] or iou[i, j] <= threshold + slack, (i, j)
    for d in set(range(len(boxes))) - set(kept):
        # Every box dropped was suppressed by a kept box of its class scoring at least as high.
        assert any(
            classes[k] == classes[d] and scores[k] >= scores[d] and iou[d, k] > threshold - slack
            for k in kept
        ), d
    near_tie = any(
        abs(float(exact_iou(p, q)) - threshold) <= slack
        for p, q in itertools.combinations(boxes, 2)
    )
    if not near_tie:
        want = [
            i
            for cls in sorted(set(classes))
            for i in (
                [k for k in range(len(boxes)) if classes[k] == cls][m]
                for m in greedy_nms(
                    [x for x, y in zip(boxes, classes, strict=True) if y == cls],
                    [x for x, y in zip(scores, classes, strict=True) if y == cls],
                    threshold,
                )
            )
        ]
        want.sort(key=lambda i: -scores[i])  # stable: class, then the greedy order
        assert kept == want


# --- decoding --------------------------------------------------------------------------------


def zero_head_boxes(input_size, anchors, masks, strides) -> np.ndarray:
    """What a head of zeros must decode to, by hand: sigmoid(0) = 1/2 puts the centre mid-cell
    for any xy scale s (s / 2 - (s - 1) / 2 = 1/2), exp(0) = 1 leaves the anchor's size; in
    (head, row, column, anchor) order."""
    height, width = input_size
    boxes = []
    for stride, mask in zip(strides, masks, strict=True):
        for row in range(height // stride):
            for col in range(width // stride):
                for a in mask:
                    cx, cy = (col + 0.5) * stride, (row + 0.5) * stride
                    aw, ah = anchors[a]
                    boxes.append((cx - aw / 2, cy - ah / 2, cx + aw / 2, cy + ah / 2))
    return np.array(boxes, np.float64)


def zero_heads(batch, input_size, masks, strides, num_classes) -> list[np.ndarray]:
    height, width = input_size
    return [
        np.zeros((batch, height // s, width // s, len(m) * (5 + num_classes)), np.float32)
        for s, m in zip(strides, masks, strict=True)
    ]


anchor_side = st.floats(0.5, 400, allow_nan=False)


@given(
    grid=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    num_classes=st.integers(1, 4),
    xy_scale=st.sampled_from([1.0, 1.05, 2.0]) | st.floats(1.0, 2.0),
    anchors=st.lists(st.tuples(anchor_side, anchor_side), min_size=6, max_size=6),
    batch=st.integers(1, 2),
)
def test_zero_head_decodes_to_anchor_boxes_at_cell_centres(
    grid, num_classes, xy_scale, anchors, batch
):
    input_size = (32 * grid[0], 32 * grid[1])
    decoder = YoloDecoder(anchors, DEFAULT_ANCHOR_MASKS, input_size, num_classes, xy_scale)
    heads = zero_heads(batch, input_size, DEFAULT_ANCHOR_MASKS, HEAD_STRIDES, num_classes)
    boxes, objectness, probs = decoder.decode(heads)
    want = zero_head_boxes(input_size, anchors, DEFAULT_ANCHOR_MASKS, HEAD_STRIDES)
    assert boxes.shape == (batch, *want.shape)
    np.testing.assert_allclose(boxes, np.broadcast_to(want, boxes.shape), rtol=1e-6, atol=1e-4)
    np.testing.assert_array_equal(objectness, 0.5)
    np.testing.assert_array_equal(probs, 0.5)
    # Every score is 0.5 x 0.5: a confidence above it leaves nothing.
    strict = YoloDecoder(
        anchors, DEFAULT_ANCHOR_MASKS, input_size, num_classes, xy_scale, confidence=0.26
    )
    assert all(len(d) == 0 for d in strict(heads, [input_size] * batch))


@pytest.fixture(scope="module")
def tiny_model():
    return YOLOv4Tiny(classes=["a", "b"], input_size=(64, 96))


@given(batch=st.integers(1, 3))
def test_zero_heads_of_the_model_decode_to_its_anchors(tiny_model, batch):
    decoder = YoloDecoder.from_model(tiny_model)
    shapes = [tuple(o.shape[1:]) for o in tiny_model.outputs]
    heads = [np.zeros((batch, *shape), np.float32) for shape in shapes]
    boxes, _, _ = decoder.decode(heads)
    want = zero_head_boxes((64, 96), tiny_model.anchors, tiny_model.anchor_masks, HEAD_STRIDES)
    np.testing.assert_allclose(boxes, np.broadcast_to(want, boxes.shape), rtol=1e-6, atol=1e-4)


# --- letterbox and its inverse ---------------------------------------------------------------


def logit(p):
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


@st.composite
def letterbox_cases(draw):
    """An image size of 1-300 pixels a side and 1-4 positive-area float boxes inside it."""
    height, width = draw(st.integers(1, 300)), draw(st.integers(1, 300))
    boxes = []
    for _ in range(draw(st.integers(1, 4))):
        x1, x2 = sorted(draw(st.floats(0, width)) for _ in range(2))
        y1, y2 = sorted(draw(st.floats(0, height)) for _ in range(2))
        assume(x2 - x1 > 1e-3 and y2 - y1 > 1e-3)
        boxes.append((x1, y1, x2, y2))
    return (height, width), boxes


@given(letterbox_cases(), st.tuples(st.integers(1, 4), st.integers(1, 4)), st.booleans())
# Found here: an image that letterboxes to under half a pixel high (wide) had a zero scale in
# the original's transform, which made the boxes NaN and infinite.
@example(((1, 300), [(0.0, 0.0, 300.0, 1.0), (10.0, 0.25, 20.0, 0.75)]), (1, 1), True)
@example(((300, 2), [(0.0, 0.0, 2.0, 300.0)]), (2, 1), True)
@example(((1, 1), [(0.0, 0.0, 1.0, 1.0)]), (1, 1), False)
def test_letterbox_then_its_inverse_returns_the_boxes(case, grid, original):
    image_size, boxes = case
    boxes = np.array(boxes, np.float32)
    input_size = (32 * grid[0], 32 * grid[1])
    image = np.zeros((*image_size, 3), np.uint8)
    canvas, moved = letterbox_sample(image, boxes, input_size)  # the validation transform
    sized, transform = Preprocessor(input_size, letterbox=True, original_transform=original)(image)
    assert canvas.shape == sized.shape == (*input_size, 3)
    # Each box, in input pixels, written into its own image's head (one anchor of 1 x 1 pixel,
    # stride 32) so that the decoder places it exactly there, then decoded back.
    n, (gh, gw) = len(boxes), grid
    head = np.full((n, gh, gw, 6), -20.0, np.float32)
    for k, (x1, y1, x2, y2) in enumerate(moved.astype(np.float64)):
        cx, cy = (x1 + x2) / 2 / 32, (y1 + y2) / 2 / 32
        col, row = min(int(cx), gw - 1), min(int(cy), gh - 1)
        head[k, row, col] = [
            logit(cx - col),
            logit(cy - row),
            np.log(x2 - x1),
            np.log(y2 - y1),
            20.0,
            20.0,
        ]
    decoder = YoloDecoder([(1.0, 1.0)], [[0]], input_size, num_classes=1)
    dets = decoder([head], [image_size] * n, np.tile(transform, (n, 1)))
    assert [len(d) for d in dets] == [1] * n
    back = np.concatenate([d.boxes for d in dets]).astype(np.float64)
    if not original:
        # The exact inverse: float32 rounding only.
        np.testing.assert_allclose(back, boxes, rtol=0, atol=1e-3)
    else:
        # The original's inverse assumes round() for the resized size and an unfloored offset:
        # off by at most one pixel of the input, i.e. 1 / scale pixels of the image.
        scale = transform[[0, 1, 0, 1]]
        assert (np.abs(back - boxes) * scale <= 1 + 1e-3).all()


# --- conversions between formats -------------------------------------------------------------


NAMES = ["cat", "dog", "bird"]


@st.composite
def coco_images(draw):
    """1-3 images of 1-48 pixels a side, each with 0-4 boxes inside it (integer corners or
    not), with classes and crowd flags."""
    images = []
    for _ in range(draw(st.integers(1, 3))):
        height, width = draw(st.integers(1, 48)), draw(st.integers(1, 48))
        whole = draw(st.booleans()) or min(height, width) < 2
        anns = []
        for _ in range(draw(st.integers(0, 4))):
            if whole:
                x1, y1, x2, y2 = draw(int_box(limit=48))
                x1, x2 = min(x1, width - 1), min(max(x2, x1 + 1), width)
                y1, y2 = min(y1, height - 1), min(max(y2, y1 + 1), height)
            else:
                # At least 1.5 pixels a side, so that VOC's rounding never has to widen one.
                # (float32, as records store them).
                x1, y1 = (draw(st.floats(0, side - 1.5, width=32)) for side in (width, height))
                x2, y2 = (
                    float(np.float32(min(side, low + draw(st.floats(1.5, side)))))
                    for low, side in ((x1, width), (y1, height))
                )
            anns.append(((x1, y1, x2, y2), draw(st.integers(0, 2)), draw(st.booleans())))
        images.append(((height, width), whole, anns))
    return images


def write_coco(root: Path, images) -> None:
    """The source, written by hand: COCO `bbox` is `[x, y, width, height]`, categories 1..3."""
    (root / "train").mkdir(parents=True)
    (root / "annotations").mkdir()
    entries, annotations = [], []
    for number, ((height, width), _, anns) in enumerate(images, 1):
        name = f"im{number}.png"
        Image.new("RGB", (width, height), (90, 120, 150)).save(root / "train" / name)
        entries.append({"id": number, "file_name": name, "width": width, "height": height})
        for (x1, y1, x2, y2), cls, crowd in anns:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": number,
                    "category_id": cls + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": int(crowd),
                }
            )
    categories = [{"id": k + 1, "name": n} for k, n in enumerate(NAMES)]
    data = {"images": entries, "annotations": annotations, "categories": categories}
    (root / "annotations" / "instances_train.json").write_text(json.dumps(data))


def objects(spec) -> dict[str, tuple[list[str], np.ndarray, list[bool]]]:
    """Per image stem: class names, boxes (float64) and difficult flags, in the file's order."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = load_dataset(spec, "train", NAMES)
    # A conversion's output reads back without a fault (an image without boxes is none).
    harmless = ("summary", "no boxes")
    faults = [str(w.message) for w in caught if getattr(w.message, "fault", None) not in harmless]
    assert not faults
    return {
        r.image.stem: (
            [dataset.class_names[c] for c in r.classes],
            r.boxes.astype(np.float64),
            r.difficult.tolist(),
        )
        for r in dataset.records
    }


@given(coco_images())
@example([((1, 1), True, [((0, 0, 1, 1), 2, True)])])  # one pixel, one box over it
@example([((5, 7), True, []), ((9, 4), False, [])])  # images without boxes
def test_conversions_round_trip_the_records(images):
    want = {
        f"im{k}": (
            [NAMES[c] for _, c, _ in anns],
            np.array([box for box, _, _ in anns], np.float64).reshape(-1, 4),
            [crowd for _, _, crowd in anns],
        )
        for k, (_, _, anns) in enumerate(images, 1)
    }
    limit = max(max(size) for size, _, _ in images)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_coco(tmp / "coco", images)
        assert_objects(objects(tmp / "coco"), want, atol=1e-4)

        # COCO -> YOLO (class cx cy w h, normalised, 6 decimals) -> COCO: within the 6th decimal
        # of the image's size; YOLO has no difficult flag, so the crowd boxes come back plain.
        yolo = convert_dataset(tmp / "coco", "yolo", tmp / "yolo").data_file
        plain = {k: (n, b, [False] * len(d)) for k, (n, b, d) in want.items()}
        assert_objects(objects(yolo), plain, atol=1e-6 * limit + 1e-4)
        convert_dataset(yolo, "coco", tmp / "coco2")
        assert_objects(objects(tmp / "coco2"), plain, atol=1e-6 * limit + 2e-4)

        # COCO -> VOC (1-based inclusive integer pixels): integer boxes exactly, others to the
        # nearest pixel corners; VOC -> COCO -> VOC changes nothing.
        voc = convert_dataset(tmp / "coco", "voc", tmp / "voc").data_file
        got = objects(voc)
        rounded = {k: (n, np.floor(b + 0.5), d) for k, (n, b, d) in want.items()}
        assert_objects(got, rounded, atol=0)
        assert_objects(got, want, atol=0.5)
        convert_dataset(voc, "coco", tmp / "coco3")
        convert_dataset(tmp / "coco3", "voc", tmp / "voc2")
        assert_objects(objects(tmp / "voc2" / "VOC2007"), got, atol=0)


def assert_objects(got, want, atol) -> None:
    assert sorted(got) == sorted(want)
    for stem, (names, boxes, difficult) in want.items():
        assert got[stem][0] == names, stem
        np.testing.assert_allclose(got[stem][1], boxes, rtol=0, atol=atol, err_msg=stem)
        assert got[stem][2] == difficult, stem


# --- augmentations ---------------------------------------------------------------------------


def assert_valid_boxes(boxes, classes, size, min_size=1.0) -> None:
    """Inside the canvas of `size` = (height, width), at least `min_size` wide and high (so
    never of zero area), finite, one class each."""
    height, width = size
    assert boxes.dtype == np.float32 and boxes.shape == (len(classes), 4)
    assert np.isfinite(boxes).all()
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
    assert (boxes[:, 2] - boxes[:, 0] >= min_size).all()
    assert (boxes[:, 3] - boxes[:, 1] >= min_size).all()


def is_subsequence(part, whole) -> bool:
    it = iter(list(whole))
    return all(any(x == y for y in it) for x in part)


# Any box, on a quarter-pixel grid (exact in float32): inside, outside, straddling, inverted,
# zero-area.
quarter = st.integers(-80, 400).map(lambda v: v / 4)
any_box = st.tuples(quarter, quarter, quarter, quarter)
canvas = st.tuples(st.integers(1, 96), st.integers(1, 96))


@given(st.lists(any_box, max_size=12), canvas, st.sampled_from([1.0, 0.5, 2.0, 0.25]))
@example([], (8, 8), 1.0)
@example([(0, 0, 0, 5), (2, 2, 1, 5), (-3, -3, 0, 0), (8, 0, 12, 8), (0, 0, 8, 8)], (8, 8), 1.0)
def test_clip_and_filter_is_the_reference(boxes, size, min_size):
    height, width = size
    classes = np.arange(len(boxes)) * 10
    got, kept = clip_and_filter(np.array(boxes, np.float32), classes, size, min_size)
    want = []
    for (x1, y1, x2, y2), cls in zip(boxes, classes, strict=True):
        x1, x2 = (min(max(v, 0), width) for v in (x1, x2))
        y1, y2 = (min(max(v, 0), height) for v in (y1, y2))
        if x2 - x1 >= min_size and y2 - y1 >= min_size:
            want.append((x1, y1, x2, y2, cls))
    np.testing.assert_array_equal(got, np.array([w[:4] for w in want]).reshape(-1, 4))
    assert kept.tolist() == [w[4] for w in want]
    assert_valid_boxes(got, kept, size, min_size)


@st.composite
def item(draw, max_side=64):
    """An image of 1-64 pixels a side and 0-4 boxes anywhere near it (some outside or empty)."""
    height, width = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    coords = st.integers(-8, max_side + 8).map(float)
    boxes = draw(st.lists(st.tuples(coords, coords, coords, coords), max_size=4))
    seed = draw(st.integers(0, 2**16))
    image = np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    return image, boxes, np.arange(len(boxes), dtype=np.int64) + 100 * seed


def single(it, size, rng):
    """The training pipeline's single sample: resize and place, flip, HSV jitter, clip."""
    image, boxes, classes = it
    image, boxes = random_resize(image, boxes, size, rng)
    image, boxes = hflip(image, boxes, rng)
    image = hsv_jitter(image, rng)
    boxes, classes = clip_and_filter(boxes, classes, size)
    return image, boxes, classes


input_sizes = st.tuples(st.integers(1, 3), st.integers(1, 3)).map(lambda g: (32 * g[0], 32 * g[1]))


@given(item(), input_sizes, st.integers(0, 2**32 - 1))
def test_a_single_augmented_sample_keeps_its_boxes_in_the_image(it, size, seed):
    image, boxes, classes = single(it, size, np.random.default_rng(seed))
    assert image.shape == (*size, 3) and image.dtype == np.uint8
    assert_valid_boxes(boxes, classes, size)
    assert is_subsequence(classes, it[2])
    # The validation transform too.
    canvas_image, moved = letterbox_sample(it[0], it[1], size)
    moved, kept = clip_and_filter(moved, it[2], size)
    assert canvas_image.shape == (*size, 3)
    assert_valid_boxes(moved, kept, size)


@given(
    st.lists(item(), min_size=4, max_size=4),
    item(),
    input_sizes,
    st.integers(0, 2**32 - 1),
    st.sampled_from([1.0, 0.5, 3.0]),
)
def test_mosaic_and_mixup_keep_their_boxes_in_the_image(items, other, size, seed, min_size):
    rng = np.random.default_rng(seed)
    image, boxes, classes = mosaic(items, size, rng, min_size=min_size)
    # mosaic cuts each box at its quadrant's borders and drops the slivers itself.
    assert image.shape == (*size, 3) and image.dtype == np.uint8
    assert_valid_boxes(boxes, classes, size, min_size)
    assert is_subsequence(classes, np.concatenate([it[2] for it in items]))
    image = hsv_jitter(image, rng)
    blended, both, both_classes = mixup((image, boxes, classes), single(other, size, rng))
    assert blended.shape == (*size, 3)
    assert (blended >= 0).all() and (blended <= 255).all()
    boxes, classes = clip_and_filter(both, both_classes, size)
    assert_valid_boxes(boxes, classes, size)


@given(item(), st.integers(0, 2**32 - 1))
def test_hflip_twice_is_the_identity(it, seed):
    image, boxes, _ = it
    once, flipped = hflip(image, boxes, np.random.default_rng(seed), p=1.0)
    twice, back = hflip(once, flipped, np.random.default_rng(seed), p=1.0)
    np.testing.assert_array_equal(once, image[:, ::-1])
    np.testing.assert_array_equal(twice, image)
    np.testing.assert_array_equal(back, boxes)
    # Widths and heights survive the flip, and a box inside the image stays inside.
    np.testing.assert_array_equal(flipped[:, 2] - flipped[:, 0], boxes[:, 2] - boxes[:, 0])


@given(st.integers(0, 255), st.tuples(st.integers(1, 8), st.integers(1, 8)), st.integers(0, 2**32))
def test_hsv_jitter_keeps_grey_grey_and_scales_its_value(value, size, seed):
    image = np.full((*size, 3), value, np.uint8)
    got = hsv_jitter(image, np.random.default_rng(seed))
    # Grey has saturation 0, which any factor keeps at 0; the value is multiplied by the third
    # factor `rand(-1, 1) * 0.4 + 1` and cut to 0..255 (in OpenCV's uint8 HSV).
    r = np.random.default_rng(seed).uniform(-1, 1, 3) * [0.1, 0.7, 0.4] + 1
    assert got.shape == image.shape and got.dtype == np.uint8
    np.testing.assert_array_equal(got, int(np.clip(value * r[2], 0, 255)))

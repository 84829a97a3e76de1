import keras
import numpy as np
import pytest

from attnyolo.inference.decoder import YoloDecoder, batched_nms, nms


def _logit(p):
    return np.log(p / (1 - p))


def _decoder(**kwargs):
    # One head with a 2x2 grid over a 64x64 input and one anchor of 16x8 pixels.
    options = dict(anchors=[(16, 8)], anchor_masks=[[0]], input_size=(64, 64), num_classes=2)
    return YoloDecoder(**{**options, **kwargs})


def _head(cells):
    head = np.full((1, 2, 2, 7), -20.0, np.float32)  # objectness ~0 everywhere
    for (i, j), values in cells.items():
        head[0, i, j] = values
    return head


@pytest.mark.parametrize(
    "xy_scale, expected_cx",
    [
        # cell (0, 1), sigmoid(tx) = 0.75: cx = (s * 0.75 - (s - 1) / 2 + 1) / 2 * 64
        (1.0, (0.75 + 1) / 2 * 64),  # 56
        (1.05, (1.05 * 0.75 - 0.025 + 1) / 2 * 64),
        (2.0, (1.5 - 0.5 + 1) / 2 * 64),  # 64: YOLOv5's 2 sigmoid - 0.5 reaches the next cell
    ],
)
def test_decode_formula(xy_scale, expected_cx):
    values = [_logit(0.75), _logit(0.5), np.log(2.0), np.log(0.5), 5.0, 0.0, -5.0]
    boxes, obj, cls = _decoder(xy_scale=xy_scale).decode([_head({(0, 1): values})])
    x1, y1, x2, y2 = boxes[0, 1]  # row 0, column 1, anchor 0
    cy = (xy_scale * 0.5 - (xy_scale - 1) / 2 + 0) / 2 * 64
    np.testing.assert_allclose([(x1 + x2) / 2, (y1 + y2) / 2], [expected_cx, cy], rtol=1e-6)
    np.testing.assert_allclose([x2 - x1, y2 - y1], [16 * 2.0, 8 * 0.5], rtol=1e-6)
    np.testing.assert_allclose(obj[0, 1], 1 / (1 + np.exp(-5.0)), rtol=1e-6)
    np.testing.assert_allclose(cls[0, 1], [0.5, 1 / (1 + np.exp(5.0))], rtol=1e-6)


def test_confidence_threshold_and_letterbox_inverse():
    # Score = sigmoid(obj) x sigmoid(cls) = 0.9 x 0.5 = 0.45 for class 0.
    values = [0.0, 0.0, 0.0, 0.0, _logit(0.9), 0.0, -20.0]
    heads = [_head({(1, 1): values})]
    assert len(_decoder(confidence=0.46)(heads, [(64, 64)])[0]) == 0
    # Original 128x96 (w x h) letterboxed into 64x64: scale 0.5, pad y = (64 - 48) / 2 = 8.
    dets = _decoder(confidence=0.45)(heads, [(96, 128)], np.array([[0.5, 0.5, 0.0, 8.0]]))[0]
    assert len(dets) == 1 and dets.classes[0] == 0
    np.testing.assert_allclose(dets.scores, [0.45], rtol=1e-6)
    # Input box: centre (48, 48), 16x8 -> (40, 44, 56, 52); back: x / 0.5, (y - 8) / 0.5.
    np.testing.assert_allclose(dets.boxes[0], [80, 72, 112, 88], rtol=1e-6)


def test_boxes_are_clipped_to_the_image():
    values = [0.0, 0.0, np.log(8.0), np.log(8.0), 10.0, 10.0, -20.0]
    dets = _decoder()([_head({(0, 0): values})], [(64, 64)])[0]
    np.testing.assert_allclose(dets.boxes[0], [0, 0, 64, 48])


def test_nms_by_hand():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30]], np.float32)
    scores = np.array([0.8, 0.9, 0.7], np.float32)
    # IoU(box0, box1) = 90 / 110 = 0.818: box0 goes at threshold 0.5, stays at 0.85.
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert nms(boxes, scores, 0.85).tolist() == [1, 0, 2]
    # Equal to the threshold is kept (suppression needs IoU > threshold).
    assert nms(boxes, scores, 90 / 110).tolist() == [1, 0, 2]


def test_nms_is_class_wise():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10]], np.float32)
    scores = np.array([0.8, 0.9], np.float32)
    assert sorted(batched_nms(boxes, scores, np.array([0, 1]), 0.5).tolist()) == [0, 1]
    assert batched_nms(boxes, scores, np.array([1, 1]), 0.5).tolist() == [1]
    assert batched_nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int), 0.5).size == 0


def test_caps_per_class_and_overall():
    # Four far-apart confident boxes of class 0 and one of class 1.
    head = np.full((1, 2, 2, 7), -20.0, np.float32)
    head[0, :, :, 4] = 10.0
    head[0, :, :, 2:4] = np.log(0.25)
    head[0, :, :, 5] = [[3.0, 2.0], [1.0, 0.5]]
    head[0, 1, 1, 5:] = [-20.0, 4.0]
    full = _decoder(confidence=0.1, nms_iou=0.5)([head], [(64, 64)])[0]
    assert sorted(full.classes.tolist()) == [0, 0, 0, 1]
    assert np.all(np.diff(full.scores) <= 0), "detections come sorted by score"
    capped = _decoder(confidence=0.1, max_per_class=2)([head], [(64, 64)])[0]
    assert sorted(capped.classes.tolist()) == [0, 0, 1]
    top = _decoder(confidence=0.1, max_detections=1)([head], [(64, 64)])[0]
    assert len(top) == 1 and top.scores[0] == full.scores[0]


def test_nms_max_keep_gives_the_same_first_boxes():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, (300, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 30, (300, 2))], 1).astype(np.float32)
    scores = rng.random(300).astype(np.float32)
    full = nms(boxes, scores, 0.4)
    assert len(full) > 20
    assert nms(boxes, scores, 0.4, max_keep=20).tolist() == full[:20].tolist()


@pytest.mark.parametrize("max_keep", [None, 15])
def test_matrix_nms_equals_the_box_by_box_loop(monkeypatch, max_keep):
    import attnyolo.inference.decoder as decoder

    rng = np.random.default_rng(2)
    xy = rng.uniform(0, 200, (400, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 60, (400, 2))], 1).astype(np.float32)
    scores = rng.random(400).astype(np.float32)
    scores[::7] = scores[0]  # ties: the order among equal scores must agree too
    matrix = nms(boxes, scores, 0.45, max_keep)
    monkeypatch.setattr(decoder, "_MATRIX_NMS_LIMIT", 0)
    loop = nms(boxes, scores, 0.45, max_keep)
    assert len(matrix) > 10 and matrix.tolist() == loop.tolist()


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow's NMS kernel")
def test_tensorflow_nms_equals_numpy_nms():
    from attnyolo.inference.decoder import _tensorflow_nms

    rng = np.random.default_rng(1)
    for n, max_keep in ((500, None), (2000, 100)):
        xy = rng.uniform(0, 300, (n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(5, 80, (n, 2))], 1).astype(np.float32)
        scores = rng.random(n).astype(np.float32)
        expected = nms(boxes, scores, 0.5, max_keep)
        assert _tensorflow_nms(boxes, scores, 0.5, max_keep).tolist() == expected.tolist()


@pytest.mark.parametrize("xy_scale", [1.0, 1.05, 2.0])
def test_the_numpy_decoder_and_the_loss_decode_the_same_boxes(xy_scale):
    # The decode formula lives twice: NumPy for prediction (any runtime's output) and keras.ops
    # in the loss. Random raw heads of a model with two heads and a non-square input must give
    # the same boxes through both.
    from attnyolo.losses import YoloLoss
    from attnyolo.models import YOLOv4Tiny

    model = YOLOv4Tiny(classes=3, input_size=(96, 160), xy_scale=xy_scale)
    decoder = YoloDecoder.from_model(model)
    loss = YoloLoss.from_model(model)
    rng = np.random.default_rng(int(xy_scale * 100))
    heads = [rng.normal(0, 2, (2, 96 // s, 160 // s, 3 * 8)).astype(np.float32) for s in (32, 16)]
    boxes, _, _ = decoder.decode(heads)
    offset = 0
    for layer, head in enumerate(heads):
        n, gh, gw, _ = head.shape
        raw = head.reshape(n, gh * gw * 3, 8)
        cxcywh = keras.ops.convert_to_numpy(
            loss._decode(keras.ops.convert_to_tensor(raw), layer, gh, gw)
        )
        corners = np.concatenate(
            [cxcywh[..., :2] - cxcywh[..., 2:] / 2, cxcywh[..., :2] + cxcywh[..., 2:] / 2], -1
        ) * np.float32([160, 96, 160, 96])
        np.testing.assert_allclose(
            boxes[:, offset : offset + gh * gw * 3], corners, rtol=1e-5, atol=1e-3
        )
        offset += gh * gw * 3
    assert offset == boxes.shape[1]


@pytest.mark.parametrize("confidence", [0.001, 0.3, 0.6])
def test_decoding_only_confident_anchors_changes_nothing(confidence):
    # The decoder decodes only anchors whose objectness reaches the confidence; the detections
    # must equal those selected from the full decode.
    rng = np.random.default_rng(1)
    decoder = YoloDecoder(
        anchors=[(10, 14), (23, 27), (37, 58), (81, 82), (135, 169), (344, 319)],
        anchor_masks=[[3, 4, 5], [1, 2, 3]],
        input_size=(64, 96),
        num_classes=4,
        xy_scale=1.05,
        confidence=confidence,
        nms_iou=0.45,
    )
    heads = [rng.normal(0, 2, (3, 64 // s, 96 // s, 27)).astype(np.float32) for s in (32, 16)]
    sizes = [(64, 96), (120, 80), (30, 200)]
    transforms = np.array([[1, 1, 0, 0], [0.8, 0.53, 0, 0], [0.48, 2.1, 0, 3.0]])
    found = decoder(heads, sizes, transforms)
    boxes, objectness, probs = decoder.decode(heads)
    for i in range(3):
        expected = decoder._select(boxes[i], objectness[i], probs[i], sizes[i], transforms[i])
        np.testing.assert_array_equal(found[i].boxes, expected.boxes)
        np.testing.assert_array_equal(found[i].scores, expected.scores)
        np.testing.assert_array_equal(found[i].classes, expected.classes)
    assert sum(len(f) for f in found) > 0

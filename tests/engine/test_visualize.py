import itertools

import numpy as np
import pytest
from PIL import Image

from attnyolo.inference.decoder import Detections
from attnyolo.inference.visualize import (
    MIN_FONT_SIZE,
    class_colors,
    draw_detections,
    draw_on_array,
    font_size,
    label_boxes,
    line_width,
    text_color,
)

NAMES = ["person", "car", "traffic light"]


def detections(boxes, scores=None, classes=None) -> Detections:
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    n = len(boxes)
    scores = np.linspace(0.9, 0.5, n) if scores is None else scores
    classes = np.zeros(n, np.int64) if classes is None else classes
    return Detections(boxes, np.asarray(scores, np.float32), np.asarray(classes, np.int64))


def overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def inside(rect, width, height) -> bool:
    return 0 <= rect[0] < rect[2] <= width and 0 <= rect[1] < rect[3] <= height


def test_class_colors_distinct_and_text_contrasts():
    colors = class_colors(20)
    assert len(set(colors)) == 20
    assert text_color((255, 255, 0)) == (0, 0, 0)  # yellow: black text
    assert text_color((0, 0, 255)) == (255, 255, 255)  # blue: white text
    assert text_color((255, 0, 0)) == (0, 0, 0)
    assert text_color((0, 0, 0)) == (255, 255, 255)


def test_font_and_lines_scale_with_the_image():
    assert font_size(64, 64) == MIN_FONT_SIZE
    assert font_size(640, 480) == round(0.03 * 480)
    assert font_size(4000, 3000) == 90
    assert font_size(480, 640) == font_size(640, 480)  # the shorter side, either way round
    assert line_width(64, 64) == 1
    assert line_width(4000, 3000) == 10
    # The drawn labels follow: taller on the larger image.
    dets = detections([[10, 10, 40, 40]])
    small = label_boxes((64, 64), dets, NAMES)[0]
    large = label_boxes((4000, 3000), detections([[500, 500, 2000, 2000]]), NAMES)[0]
    assert small[3] - small[1] >= MIN_FONT_SIZE
    assert large[3] - large[1] > 6 * (small[3] - small[1])


def test_label_above_the_box_when_there_is_room():
    (rect,) = label_boxes((640, 480), detections([[100, 200, 300, 400]]), NAMES)
    assert rect[0] == 100 and rect[3] == 200  # on the box's top-left corner, outside


def test_label_inside_the_box_at_the_top_edge():
    (rect,) = label_boxes((640, 480), detections([[100, 0, 300, 400]]), NAMES)
    assert rect[:2] == (100, 0)


def test_label_at_the_right_edge_stays_inside():
    (rect,) = label_boxes((640, 480), detections([[630, 100, 640, 200]]), NAMES)
    assert inside(rect, 640, 480)


def test_crowded_labels_never_overlap():
    rng = np.random.default_rng(0)
    n = 30
    x1 = rng.uniform(100, 130, n)
    y1 = rng.uniform(100, 130, n)
    boxes = np.stack([x1, y1, x1 + rng.uniform(20, 500, n), y1 + rng.uniform(20, 400, n)], axis=1)
    dets = detections(boxes, rng.uniform(0.3, 1.0, n), rng.integers(0, 3, n))
    rects = label_boxes((800, 600), dets, NAMES)
    assert len(rects) == n
    assert all(inside(r, 800, 600) for r in rects)
    for a, b in itertools.combinations(rects, 2):
        assert not overlap(a, b), (a, b)
    # The best-scored label keeps the first spot: above its box's top-left corner.
    best = int(np.argmax(dets.scores))
    assert rects[best][0] == int(np.floor(boxes[best, 0]))
    assert rects[best][3] == int(np.floor(boxes[best, 1]))


def test_identical_boxes_get_separate_labels():
    dets = detections(np.tile([[50, 50, 300, 300]], (12, 1)))
    rects = label_boxes((640, 480), dets, NAMES)
    for a, b in itertools.combinations(rects, 2):
        assert not overlap(a, b)


def test_no_room_left_still_places_every_label_inside():
    # More labels than a 64-px image holds: the rest go to their first spot, clamped.
    dets = detections(np.tile([[5, 5, 60, 60]], (20, 1)))
    rects = label_boxes((64, 64), dets, NAMES)
    assert len(rects) == 20
    assert all(r[0] >= 0 and r[1] >= 0 for r in rects)


@pytest.mark.parametrize("size", [(64, 48), (1000, 750)])
def test_draw_detections(size):
    width, height = size
    image = np.full((height, width, 3), 128, np.uint8)
    dets = detections([[0.1 * width, 0.3 * height, 0.6 * width, 0.9 * height]], [0.8], [1])
    drawn = draw_detections(image, dets, NAMES)
    assert isinstance(drawn, Image.Image) and drawn.size == size
    pixels = np.asarray(drawn)
    (rect,) = label_boxes(size, dets, NAMES)
    # The label's corner pixel has the class colour; the box's left edge too.
    assert tuple(pixels[rect[1], rect[0]]) == class_colors(len(NAMES))[1]
    assert tuple(pixels[int(0.6 * height), int(0.1 * width)]) == class_colors(len(NAMES))[1]
    array = draw_on_array(image, dets, NAMES)
    assert array.shape == image.shape and array.dtype == np.uint8
    np.testing.assert_array_equal(array, pixels)
    assert (image == 128).all()  # the input is not drawn on


def test_draw_nothing_and_degenerate_boxes():
    image = np.zeros((40, 50, 3), np.uint8)
    assert (np.asarray(draw_detections(image, detections(np.zeros((0, 4))), NAMES)) == 0).all()
    drawn = draw_detections(image, detections([[10, 10, 10, 30]]), NAMES)  # zero width
    assert drawn.size == (50, 40)

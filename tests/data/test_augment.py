"""Augmentations: box arithmetic by hand, and boxes that still frame their object afterwards.

The consistency tests paint a solid red rectangle exactly at the ground-truth box on a textured
background without red, transform both, and check that the transformed box is red inside and that
no red is left outside it.
"""

import numpy as np
import pytest

from attnyolo.data.augment import (
    clip_and_filter,
    hflip,
    hsv_jitter,
    letterbox_sample,
    mixup,
    mosaic,
    random_resize,
)
from attnyolo.data.images import PAD_VALUE


def scene(h=120, w=160, box=(40, 30, 100, 80), seed=0):
    """A noisy image without red and a red rectangle covering exactly `box` (x1, y1, x2, y2)."""
    rng = np.random.default_rng(seed)
    image = np.empty((h, w, 3), np.uint8)
    image[..., 0] = rng.integers(0, 60, (h, w))
    image[..., 1:] = rng.integers(60, 200, (h, w, 2))
    x1, y1, x2, y2 = box
    image[y1:y2, x1:x2] = (255, 0, 0)
    return image, np.array([box], np.float32), np.array([3], np.int64)


def red(image):
    """Pixels that are clearly red; interpolated edges and jittered colours still count."""
    image = np.asarray(image, np.float32)
    return (image[..., 0] > image[..., 1] + 40) & (image[..., 0] > image[..., 2] + 40)


def redness(image):
    """How red each pixel is, 0 (the background) to about 1 (the object); a blurred edge pixel
    counts by the share of red in it, which makes the centroid below accurate to a fraction of a
    pixel."""
    image = np.asarray(image, np.float32)
    return np.clip((image[..., 0] - image[..., 1:].max(axis=-1)) / 255.0, 0.0, None)


def assert_boxes_frame_red(image, boxes, margin=1, atol=0.3):
    """Every box is red inside (a pixel in from its edges) with the red's centroid at the box's
    centre, and there is hardly any red outside the boxes grown by `margin` pixels (bicubic
    edges blur by about one pixel)."""
    mask = red(image)
    weight = redness(image)
    covered = np.zeros_like(mask)
    h, w = mask.shape
    for x1, y1, x2, y2 in boxes:
        inner = mask[int(np.ceil(y1)) + 1 : int(y2) - 1, int(np.ceil(x1)) + 1 : int(x2) - 1]
        if inner.size:
            assert inner.mean() > 0.98, (x1, y1, x2, y2, inner.mean())
        top, left = max(0, int(y1) - 2), max(0, int(x1) - 2)
        near = weight[top : min(h, int(np.ceil(y2)) + 2), left : min(w, int(np.ceil(x2)) + 2)]
        if near.sum() > 0:
            # Pixel centres are at i + 0.5 in continuous coordinates.
            ys, xs = np.indices(near.shape)
            cx = (near * (xs + left + 0.5)).sum() / near.sum()
            cy = (near * (ys + top + 0.5)).sum() / near.sum()
            np.testing.assert_allclose([cx, cy], [(x1 + x2) / 2, (y1 + y2) / 2], atol=atol)
        covered[
            max(0, int(y1) - margin) : min(h, int(np.ceil(y2)) + margin),
            max(0, int(x1) - margin) : min(w, int(np.ceil(x2)) + margin),
        ] = True
    stray = (mask & ~covered).sum()
    assert stray <= max(4, 0.01 * mask.sum()), f"{stray} red pixels outside the boxes"


def test_hflip_box_arithmetic():
    image = np.zeros((8, 10, 3), np.uint8)
    image[:, 0] = 255  # the left column
    boxes = np.array([[1, 2, 4, 6], [0, 0, 10, 8]], np.float32)
    flipped, out = hflip(image, boxes, np.random.default_rng(0), p=1.0)
    # x1' = w - x2 = 10 - 4 = 6, x2' = w - x1 = 10 - 1 = 9; the full-image box stays itself.
    np.testing.assert_array_equal(out, [[6, 2, 9, 6], [0, 0, 10, 8]])
    np.testing.assert_array_equal(flipped, image[:, ::-1])
    assert flipped[0, 9, 0] == 255 and flipped.flags.c_contiguous
    same, out = hflip(image, boxes, np.random.default_rng(0), p=0.0)
    assert same is image
    np.testing.assert_array_equal(out, boxes)


def test_hflip_flips_about_half_the_time():
    rng = np.random.default_rng(1)
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    flips = sum(
        hflip(image, np.zeros((0, 4)), rng)[0][0, 0, 0] != image[0, 0, 0] for _ in range(400)
    )
    assert 150 < flips < 250


def test_clip_and_filter():
    boxes = np.array(
        [
            [-5, -5, 10, 10],  # sticks out top-left: clipped to 0, 0, 10, 10
            [90, 10, 120, 20],  # sticks out right: clipped to x2 = 100
            [50, 50, 50.5, 60],  # half a pixel wide: dropped
            [200, 0, 300, 10],  # entirely outside: zero width after clipping, dropped
            [10, 10, 5, 20],  # inverted: dropped
            [20, 60, 21, 61],  # exactly one pixel: kept (min_size is inclusive)
        ],
        np.float32,
    )
    classes = np.arange(6)
    out, kept = clip_and_filter(boxes, classes, (80, 100))
    np.testing.assert_array_equal(out, [[0, 0, 10, 10], [90, 10, 100, 20], [20, 60, 21, 61]])
    np.testing.assert_array_equal(kept, [0, 1, 5])
    assert out.dtype == np.float32
    out, kept = clip_and_filter(boxes, classes, (80, 100), min_size=2)
    np.testing.assert_array_equal(kept, [0, 1])
    out, kept = clip_and_filter(np.zeros((0, 4)), np.zeros(0, np.int64), (80, 100))
    assert out.shape == (0, 4) and kept.shape == (0,)


@pytest.mark.parametrize("seed", range(8))
def test_random_resize_keeps_boxes_on_the_object(seed):
    image, boxes, classes = scene(seed=seed)
    canvas, moved = random_resize(image, boxes, (96, 128), np.random.default_rng(seed))
    assert canvas.shape == (96, 128, 3) and canvas.dtype == np.uint8
    moved, _ = clip_and_filter(moved, classes, (96, 128))
    assert_boxes_frame_red(canvas, moved)


def test_random_resize_scales_and_pads_as_the_original():
    image, boxes, _ = scene()
    scales, ratios, grey_corners = [], [], 0
    for seed in range(300):
        canvas, moved = random_resize(image, boxes, (96, 128), np.random.default_rng(seed))
        # The box is 60 x 50 of the 160 x 120 image: its new size tells the image's new size.
        nw = (moved[0, 2] - moved[0, 0]) / 60 * 160
        nh = (moved[0, 3] - moved[0, 1]) / 50 * 120
        ratios.append(nw / nh)
        # The side that is the longer by the new aspect ratio is rand(0.25, 2) of the canvas's.
        scales.append(nh / 96 if nw < nh else nw / 128)
        grey_corners += (canvas[0, 0] == PAD_VALUE).all() or (canvas[-1, -1] == PAD_VALUE).all()
    assert 0.24 < min(scales) < 0.35 and 1.8 < max(scales) < 2.01
    # 4/3 x rand(0.7, 1.3) / rand(0.7, 1.3): between 4/3 x 0.7/1.3 = 0.72 and 4/3 x 1.3/0.7 = 2.48.
    assert 0.7 < min(ratios) < 0.95 and 2.0 < max(ratios) < 2.5
    assert grey_corners > 50  # small images leave grey canvas around them


def test_random_resize_is_reproducible():
    image, boxes, _ = scene()
    a = random_resize(image, boxes, (96, 128), np.random.default_rng(5))
    b = random_resize(image, boxes, (96, 128), np.random.default_rng(5))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("seed", range(4))
def test_hflip_keeps_boxes_on_the_object(seed):
    image, boxes, _ = scene(box=(10, 20, 50, 90), seed=seed)
    flipped, moved = hflip(image, boxes, np.random.default_rng(seed), p=1.0)
    np.testing.assert_array_equal(moved, [[110, 20, 150, 90]])
    assert_boxes_frame_red(flipped, moved)


@pytest.mark.parametrize("seed", range(8))
def test_mosaic_keeps_boxes_on_their_objects(seed):
    items = [
        scene(box=(40, 30, 100, 80), seed=seed),
        scene(h=200, w=100, box=(0, 0, 30, 40), seed=seed + 1),  # in the corner: may be cut
        scene(h=90, w=240, box=(180, 50, 240, 90), seed=seed + 2),
        scene(box=(5, 60, 155, 115), seed=seed + 3),
    ]
    image, boxes, classes = mosaic(items, (128, 128), np.random.default_rng(seed))
    assert image.shape == (128, 128, 3) and image.dtype == np.uint8
    assert boxes.dtype == np.float32 and len(boxes) == len(classes) <= 4
    assert ((boxes[:, 2:] - boxes[:, :2]) >= 1).all()
    assert (boxes >= 0).all() and (boxes <= 128).all()
    assert_boxes_frame_red(image, boxes)


def test_mosaic_cuts_at_a_centre_between_three_and_seven_tenths():
    # Four images filled with one colour each show where the quadrants meet.
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    items = [
        (np.full((100, 100, 3), c, np.uint8), np.array([[0, 0, 100, 100]], np.float32), [k])
        for k, c in enumerate(colours)
    ]
    for seed in range(20):
        image, boxes, classes = mosaic(items, (100, 100), np.random.default_rng(seed))
        # Each image's box ends at the centre (images are anchored there), so the box corners
        # that face the centre meet in one point.
        corner = {0: (2, 3), 1: (2, 1), 2: (0, 1), 3: (0, 3)}
        centres = {
            (round(float(boxes[i, corner[c][0]]), 3), round(float(boxes[i, corner[c][1]]), 3))
            for i, c in enumerate(classes)
        }
        assert len(centres) == 1
        (cx, cy) = centres.pop()
        assert 30 <= cx <= 70 and 30 <= cy <= 70
        # The top-left quadrant shows the first image, or grey where it does not reach.
        pixel = image[int(cy) - 1, int(cx) - 1]
        assert tuple(pixel) in (colours[0], (PAD_VALUE,) * 3)


def test_mosaic_needs_four_images():
    with pytest.raises(ValueError, match="4 images"):
        mosaic([scene()] * 3, (64, 64), np.random.default_rng(0))


def test_mixup_averages_and_concatenates():
    a = (np.full((4, 4, 3), 10, np.uint8), np.array([[0, 0, 2, 2]], np.float32), np.array([1]))
    b = (np.full((4, 4, 3), 21, np.uint8), np.array([[1, 1, 3, 3], [0, 0, 4, 4]]), np.array([5, 6]))
    image, boxes, classes = mixup(a, b)
    assert image.dtype == np.float32
    np.testing.assert_array_equal(image, np.full((4, 4, 3), 15.5))  # half values kept
    np.testing.assert_array_equal(boxes, [[0, 0, 2, 2], [1, 1, 3, 3], [0, 0, 4, 4]])
    np.testing.assert_array_equal(classes, [1, 5, 6])
    with pytest.raises(ValueError, match="one shape"):
        mixup(a, (np.zeros((5, 4, 3), np.uint8), np.zeros((0, 4)), np.zeros(0)))


def test_hsv_jitter():
    image, _, _ = scene()
    image[:10, :10] = 128  # grey has no saturation: it stays grey whatever the jitter
    out = hsv_jitter(image, np.random.default_rng(3))
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, hsv_jitter(image, np.random.default_rng(3)))
    assert not np.array_equal(out, hsv_jitter(image, np.random.default_rng(4)))
    grey = out[:10, :10].reshape(-1, 3)
    assert (grey == grey[:1]).all() and grey[0, 0] == grey[0, 1] == grey[0, 2]
    # No jitter at all leaves the image as the HSV round trip does (a few levels at most).
    still = hsv_jitter(image, np.random.default_rng(3), hue=0, sat=0, val=0)
    assert np.abs(still.astype(int) - image).max() <= 8


def test_letterbox_sample_box_arithmetic():
    image, boxes, _ = scene(h=100, w=200, box=(20, 10, 60, 50))
    canvas, moved = letterbox_sample(image, boxes, (100, 100))
    # scale = min(100/200, 100/100) = 0.5: the image becomes 100 x 50, centred at pad_y = 25;
    # x: 20 * 0.5 = 10, 60 * 0.5 = 30; y: 10 * 0.5 + 25 = 30, 50 * 0.5 + 25 = 50.
    np.testing.assert_allclose(moved, [[10, 30, 30, 50]])
    assert (canvas[:25] == PAD_VALUE).all() and (canvas[75:] == PAD_VALUE).all()
    assert_boxes_frame_red(canvas, moved)


def test_letterbox_sample_frames_objects_when_enlarging():
    image, boxes, _ = scene(h=60, w=40, box=(5, 7, 31, 50))
    canvas, moved = letterbox_sample(image, boxes, (416, 416))
    assert canvas.shape == (416, 416, 3)
    assert_boxes_frame_red(canvas, moved)


@pytest.mark.parametrize("seed", range(6))
def test_random_resize_with_pillow_is_the_originals_resize_and_paste(seed):
    from PIL import Image

    image, _, _ = scene(seed=seed)
    whole = np.array([[0, 0, 160, 120]], np.float32)
    canvas, moved = random_resize(
        image, whole, (96, 128), np.random.default_rng(seed), resize_filter="pillow"
    )
    # The geometry does not depend on the filter.
    _, same = random_resize(image, whole, (96, 128), np.random.default_rng(seed))
    np.testing.assert_array_equal(moved, same)
    # The whole image's box is where the resized image went: (dx, dy, dx + nw, dy + nh).
    dx, dy, x2, y2 = (int(v) for v in moved[0])
    expected = Image.new("RGB", (128, 96), (128, 128, 128))
    expected.paste(Image.fromarray(image).resize((x2 - dx, y2 - dy), Image.BICUBIC), (dx, dy))
    np.testing.assert_array_equal(canvas, np.asarray(expected))


def test_mosaic_resizes_with_the_filter_it_is_given(monkeypatch):
    import attnyolo.data.augment as augment

    used, resample = [], augment.resample

    def recording(image, size, resize_filter):
        used.append(resize_filter)
        return resample(image, size, resize_filter)

    monkeypatch.setattr(augment, "resample", recording)
    items = [scene(seed=k) for k in range(4)]
    a = mosaic(items, (128, 128), np.random.default_rng(3), resize_filter="pillow")
    assert used == ["pillow"] * 4
    b = mosaic(items, (128, 128), np.random.default_rng(3))
    assert used[4:] == ["opencv"] * 4
    # Same geometry, other pixels.
    np.testing.assert_array_equal(a[1], b[1])
    assert (a[0] != b[0]).any()
    assert_boxes_frame_red(a[0], a[1])


def test_augmentations_refuse_an_unknown_resize_filter():
    image, boxes, _ = scene()
    rng = np.random.default_rng(0)
    match = "unknown resize_filter 'pil'; choose from opencv, pillow"
    with pytest.raises(ValueError, match=match):
        random_resize(image, boxes, (64, 64), rng, resize_filter="pil")
    with pytest.raises(ValueError, match=match):
        mosaic([scene()] * 4, (64, 64), rng, resize_filter="pil")
    with pytest.raises(ValueError, match=match):
        letterbox_sample(image, boxes, (64, 64), resize_filter="pil")

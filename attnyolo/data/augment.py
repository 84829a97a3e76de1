"""Training augmentations of the original yolov4-tiny-keras scripts, as pure NumPy/OpenCV functions.

The original `utils/dataloader.py` (bubbliiiing) builds a training sample one of two ways:

- `get_random_data`: a random aspect-ratio jitter and scale, a random placement on a grey canvas,
  a horizontal flip and an HSV jitter, here `random_resize` -> `hflip` -> `hsv_jitter`;
- `get_random_data_with_Mosaic`: four images, each flipped, jittered and scaled, placed around a
  random centre and cut at it, then one HSV jitter of the whole, here `mosaic` -> `hsv_jitter`,
  optionally blended half-and-half with a `get_random_data` sample (`mixup`).

Validation samples are letterboxed (`letterbox_sample`). Every function takes its randomness from
the `numpy.random.Generator` it is given, so a sample is reproducible from the generator's seed.
The functions that resize take `resize_filter`: OpenCV's bicubic (`"opencv"`, the default) or
Pillow's (`"pillow"`, the original's); see `attnyolo.data.images`.

Boxes are `(K, 4)` float32 `x1, y1, x2, y2` in continuous pixels (see `records.Record`). The
geometric transforms return boxes that may stick out of the canvas or have lost their area;
`clip_and_filter` cuts them to the canvas and drops the degenerate ones, keeping classes aligned.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from attnyolo.data.images import DEFAULT_RESIZE_FILTER, PAD_VALUE, letterbox, resample

# An image with its boxes and their classes, the unit `mosaic` and `mixup` combine.
Item = tuple[np.ndarray, np.ndarray, np.ndarray]

__all__ = [
    "Item",
    "clip_and_filter",
    "hflip",
    "hsv_jitter",
    "letterbox_sample",
    "mixup",
    "mosaic",
    "random_resize",
]


def _rand(rng: np.random.Generator, low: float = 0.0, high: float = 1.0) -> float:
    """The original's `rand(a, b)`: uniform in [low, high), also when high < low (a placement
    range is negative when the resized image is larger than the canvas)."""
    return low + float(rng.random()) * (high - low)


def _jittered_size(
    image_size: tuple[int, int],
    size: tuple[int, int],
    rng: np.random.Generator,
    jitter: float,
    scale: tuple[float, float],
) -> tuple[int, int]:
    """The original's new size: the aspect ratio times rand(1-j, 1+j) / rand(1-j, 1+j), and the
    longer side (by the new aspect ratio) a random fraction `scale` of the target's."""
    ih, iw = image_size
    h, w = size
    new_ar = iw / ih * _rand(rng, 1 - jitter, 1 + jitter) / _rand(rng, 1 - jitter, 1 + jitter)
    s = _rand(rng, *scale)
    if new_ar < 1:
        nh = int(s * h)
        nw = int(nh * new_ar)
    else:
        nw = int(s * w)
        nh = int(nw / new_ar)
    # A very thin image could round to zero pixels, which neither resize filter accepts.
    return max(1, nh), max(1, nw)


def _scale_boxes(boxes: np.ndarray, fx: float, fy: float, dx: float, dy: float) -> np.ndarray:
    # In float64, so that a box edge that lands on a whole pixel is not off by a float32 ulp.
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4) * [fx, fy, fx, fy] + [dx, dy, dx, dy]
    return boxes.astype(np.float32)


def _paste(
    canvas: np.ndarray, image: np.ndarray, dx: int, dy: int, region: tuple[int, int, int, int]
) -> None:
    """Writes `image` with its top-left corner at (dx, dy) into `canvas`, keeping only the part
    inside `region` = (x0, y0, x1, y1); offsets may be negative (the image is cropped), as PIL's
    `paste` does in the original."""
    x0, y0, x1, y1 = region
    ih, iw = image.shape[:2]
    left, top = max(x0, dx), max(y0, dy)
    right, bottom = min(x1, dx + iw), min(y1, dy + ih)
    if right > left and bottom > top:
        canvas[top:bottom, left:right] = image[top - dy : bottom - dy, left - dx : right - dx]


def _clip(boxes: np.ndarray, region: tuple[float, float, float, float]) -> np.ndarray:
    x0, y0, x1, y1 = region
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], x0, x1)
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], y0, y1)
    return boxes


def _keep(boxes: np.ndarray, min_size: float) -> np.ndarray:
    """Boxes at least `min_size` wide and high (inverted boxes have negative width: dropped)."""
    return ((boxes[:, 2] - boxes[:, 0]) >= min_size) & ((boxes[:, 3] - boxes[:, 1]) >= min_size)


def clip_and_filter(
    boxes: np.ndarray, classes: np.ndarray, size: tuple[int, int], min_size: float = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Clips boxes to a canvas of `size` = (height, width) and drops the degenerate ones.

    A box whose width or height is below `min_size` pixels after clipping (outside the canvas,
    cut to a sliver, or inverted) is dropped together with its class.

    Returns:
        `(boxes (K', 4) float32, classes (K',))`, classes in their input dtype.
    """
    h, w = size
    boxes = _clip(boxes, (0, 0, w, h))
    keep = _keep(boxes, min_size)
    return boxes[keep], np.asarray(classes).reshape(-1)[keep]


def random_resize(
    image: np.ndarray,
    boxes: np.ndarray,
    size: tuple[int, int],
    rng: np.random.Generator,
    jitter: float = 0.3,
    scale: tuple[float, float] = (0.25, 2.0),
    resize_filter: str = DEFAULT_RESIZE_FILTER,
) -> tuple[np.ndarray, np.ndarray]:
    """Resizes with a random aspect-ratio jitter and scale and places the result at a random
    offset on a grey canvas of `size` = (height, width), as the original `get_random_data`.

    The new aspect ratio is `w / h * rand(1 - jitter, 1 + jitter) / rand(1 - jitter, 1 + jitter)`
    and the side that is longer by it becomes `rand(*scale)` times the canvas's; an image larger
    than the canvas is cropped by the placement.

    Returns:
        The uint8 canvas `(height, width, 3)` and the boxes moved with the image, not clipped
        (see `clip_and_filter`).
    """
    h, w = size
    ih, iw = image.shape[:2]
    nh, nw = _jittered_size((ih, iw), size, rng, jitter, scale)
    resized = resample(image, (nh, nw), resize_filter)
    # int() truncates toward zero as in the original, also for the negative offsets of an image
    # larger than the canvas.
    dx = int(_rand(rng, 0, w - nw))
    dy = int(_rand(rng, 0, h - nh))
    canvas = np.full((h, w, 3), PAD_VALUE, np.uint8)
    _paste(canvas, resized, dx, dy, (0, 0, w, h))
    return canvas, _scale_boxes(boxes, nw / iw, nh / ih, dx, dy)


def hflip(
    image: np.ndarray, boxes: np.ndarray, rng: np.random.Generator, p: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Mirrors the image left-right with probability `p`; a box `x1, x2` becomes `w - x2, w - x1`.

    One random number is drawn whether or not the image is flipped, so that what follows in the
    same generator does not depend on the outcome.
    """
    if _rand(rng) >= p:
        return image, np.asarray(boxes, np.float32).reshape(-1, 4)
    w = image.shape[1]
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    flipped = np.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], axis=1)
    # cv2.flip rather than a reversed view: OpenCV's later steps need contiguous arrays.
    return cv2.flip(np.ascontiguousarray(image), 1), flipped.astype(np.float32)


def hsv_jitter(
    image: np.ndarray,
    rng: np.random.Generator,
    hue: float = 0.1,
    sat: float = 0.7,
    val: float = 0.4,
) -> np.ndarray:
    """Multiplies hue, saturation and value by `r = rand(-1, 1, 3) * [hue, sat, val] + 1`.

    As the original, in OpenCV's uint8 HSV (hue 0..179, wrapping) through lookup tables;
    saturation and value are clipped to 0..255.
    """
    r = rng.uniform(-1, 1, 3) * [hue, sat, val] + 1
    h, s, v = cv2.split(cv2.cvtColor(np.ascontiguousarray(image, np.uint8), cv2.COLOR_RGB2HSV))
    x = np.arange(0, 256, dtype=r.dtype)
    lut_hue = ((x * r[0]) % 180).astype(np.uint8)
    lut_sat = np.clip(x * r[1], 0, 255).astype(np.uint8)
    lut_val = np.clip(x * r[2], 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(h, lut_hue), cv2.LUT(s, lut_sat), cv2.LUT(v, lut_val)))
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def mosaic(
    items: Sequence[Item],
    size: tuple[int, int],
    rng: np.random.Generator,
    jitter: float = 0.3,
    scale: tuple[float, float] = (0.4, 1.0),
    cut: tuple[float, float] = (0.3, 0.7),
    flip: float = 0.5,
    min_size: float = 1,
    resize_filter: str = DEFAULT_RESIZE_FILTER,
) -> Item:
    """Combines four images around a random centre, as the original `get_random_data_with_Mosaic`.

    The centre (cut point) is `rand(*cut)` of the width and of the height. Each image is flipped
    with probability `flip`, resized with the aspect-ratio `jitter` and a `scale` of the canvas
    (the original's 0.4..1, smaller than single images' 0.25..2 since four share the canvas), and
    anchored at the centre with its corner: the first top-left, then bottom-left, bottom-right,
    top-right. Each image shows only in its quadrant; its boxes are cut at the quadrant's borders
    and those left under `min_size` pixels wide or high are dropped. The HSV jitter is left to the
    caller (`hsv_jitter`), which the original applies once to the whole mosaic.

    Args:
        items: four `(image uint8 (h, w, 3), boxes (K, 4), classes (K,))`.
        size: `(height, width)` of the canvas.
        rng: the randomness.
        resize_filter: `"opencv"` or `"pillow"` (the original's); see `attnyolo.data.images`.

    Returns:
        `(image uint8 (height, width, 3), boxes (K', 4) float32, classes (K',))`.
    """
    if len(items) != 4:
        raise ValueError(f"mosaic takes 4 images, got {len(items)}")
    h, w = size
    cutx, cuty = int(w * _rand(rng, *cut)), int(h * _rand(rng, *cut))
    # Each image's quadrant (x0, y0, x1, y1) and whether it lies left of / above the centre, in
    # the original's order.
    quadrants = [
        ((0, 0, cutx, cuty), True, True),
        ((0, cuty, cutx, h), True, False),
        ((cutx, cuty, w, h), False, False),
        ((cutx, 0, w, cuty), False, True),
    ]
    canvas = np.full((h, w, 3), PAD_VALUE, np.uint8)
    all_boxes, all_classes = [], []
    for (image, boxes, classes), (quadrant, left, top) in zip(items, quadrants, strict=True):
        image, boxes = hflip(image, boxes, rng, flip)
        ih, iw = image.shape[:2]
        nh, nw = _jittered_size((ih, iw), size, rng, jitter, scale)
        resized = resample(image, (nh, nw), resize_filter)
        # Anchor the image's corner that faces the centre on the centre.
        dx = cutx - nw if left else cutx
        dy = cuty - nh if top else cuty
        _paste(canvas, resized, dx, dy, quadrant)
        # Cutting at the quadrant's borders is the original's `merge_bboxes`.
        boxes = _clip(_scale_boxes(boxes, nw / iw, nh / ih, dx, dy), quadrant)
        keep = _keep(boxes, min_size)
        all_boxes.append(boxes[keep])
        all_classes.append(np.asarray(classes).reshape(-1)[keep])
    return canvas, np.concatenate(all_boxes), np.concatenate(all_classes)


def mixup(a: Item, b: Item) -> Item:
    """Blends two samples of the same size half-and-half and keeps the boxes of both, as the
    original `get_random_data_with_MixUp`.

    Returns:
        `(image float32 (h, w, 3) in 0..255, boxes, classes)`; the image stays float so that the
        half pixel values are not rounded away.
    """
    image_a, boxes_a, classes_a = a
    image_b, boxes_b, classes_b = b
    if image_a.shape != image_b.shape:
        raise ValueError(
            f"mixup needs images of one shape, got {image_a.shape} and {image_b.shape}"
        )
    image = np.asarray(image_a, np.float32) * 0.5 + np.asarray(image_b, np.float32) * 0.5
    boxes = np.concatenate(
        [
            np.asarray(boxes_a, np.float32).reshape(-1, 4),
            np.asarray(boxes_b, np.float32).reshape(-1, 4),
        ]
    )
    classes = np.concatenate([np.asarray(classes_a).reshape(-1), np.asarray(classes_b).reshape(-1)])
    return image, boxes, classes


def letterbox_sample(
    image: np.ndarray,
    boxes: np.ndarray,
    size: tuple[int, int],
    resize_filter: str = DEFAULT_RESIZE_FILTER,
) -> tuple[np.ndarray, np.ndarray]:
    """The validation transform: `letterbox` (resize keeping the aspect ratio, centred on grey)
    with the boxes scaled and shifted alike.

    Returns:
        The uint8 canvas `(height, width, 3)` and the boxes in its pixels (not clipped).
    """
    canvas, (sx, sy, px, py) = letterbox(image, size, resize_filter=resize_filter)
    return canvas, _scale_boxes(boxes, sx, sy, px, py)

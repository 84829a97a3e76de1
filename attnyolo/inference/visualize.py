"""Drawing labelled boxes on images.

Sizes follow the image: the font is 3% of the shorter side (the original scripts take 3% of the
height), never under 10 px, and boxes are one pixel thick per 300 px of the shorter side, so a
64-px thumbnail and a 4000-px photo both read. Each class has its own hue; the label's text is
black or white, whichever contrasts more with that hue.

A label never hides another label. They are placed one by one, highest score first, at the first
of these spots that lies inside the image and overlaps no label placed before: above the box's
top-left corner, inside the box under its top edge, under the box, then the same three on the
box's right side, then the inside bottom corners. Where all are taken, the nearest free spot to
the first is searched for (a label there may sit away from its box); only where the image has
no room left does a label go to the first spot, clamped into the image, overlapping.
"""

from __future__ import annotations

import colorsys
import functools
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from attnyolo.inference.decoder import Detections

MIN_FONT_SIZE = 10

# A label rectangle, half-open: x1 <= x < x2, y1 <= y < y2, in whole pixels.
Rect = tuple[int, int, int, int]


def class_colors(num_classes: int) -> list[tuple[int, int, int]]:
    """Evenly spaced hues, one per class (as the original scripts colour classes)."""
    return [
        tuple(int(255 * c) for c in colorsys.hsv_to_rgb(i / max(num_classes, 1), 1.0, 1.0))
        for i in range(num_classes)
    ]


def text_color(fill: Sequence[int]) -> tuple[int, int, int]:
    """Black or white, whichever contrasts more with `fill` (WCAG relative luminance: black
    above 0.179, where both contrast ratios are equal)."""
    linear = [
        c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
        for c in (v / 255.0 for v in fill)
    ]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return (0, 0, 0) if luminance > 0.179 else (255, 255, 255)


def font_size(width: int, height: int) -> int:
    """The label font's size in pixels for an image of this size."""
    return max(MIN_FONT_SIZE, round(0.03 * min(width, height)))


def line_width(width: int, height: int) -> int:
    """The boxes' line width in pixels for an image of this size."""
    return max(1, round(min(width, height) / 300))


@functools.lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _first_free(
    spots: Sequence[tuple[int, int]], w: int, h: int, placed: np.ndarray, width: int, height: int
) -> tuple[int, int] | None:
    """The first spot whose w x h label lies inside the image and overlaps no placed label (all
    spots tested at once)."""
    xy = np.asarray(spots, np.int64)
    x, y = xy[:, :1], xy[:, 1:]
    ok = (x[:, 0] >= 0) & (y[:, 0] >= 0) & (x[:, 0] + w <= width) & (y[:, 0] + h <= height)
    if len(placed):
        hit = (
            (placed[None, :, 0] < x + w)
            & (x < placed[None, :, 2])
            & (placed[None, :, 1] < y + h)
            & (y < placed[None, :, 3])
        )
        ok &= ~hit.any(axis=1)
    free = np.flatnonzero(ok)
    return (int(xy[free[0], 0]), int(xy[free[0], 1])) if len(free) else None


def _candidates(box: Sequence[int], w: int, h: int) -> list[tuple[int, int]]:
    x1, y1, x2, y2 = box
    return [
        (x1, y1 - h),  # above, left
        (x1, y1),  # inside, under the top edge, left
        (x1, y2),  # below, left
        (x2 - w, y1 - h),  # the same on the right
        (x2 - w, y1),
        (x2 - w, y2),
        (x1, y2 - h),  # inside, over the bottom edge
        (x2 - w, y2 - h),
    ]


class _Occupancy:
    """Which parts of the image hold a label, on a grid of `cell`-pixel squares; a placed label
    marks every cell it touches, so a window of free cells never overlaps a placed label."""

    def __init__(self, width: int, height: int, cell: int):
        self.cell = max(1, int(cell))
        self.width, self.height = width, height
        self.grid = np.zeros(
            (math.ceil(height / self.cell), math.ceil(width / self.cell)), np.int32
        )

    def mark(self, rect: Rect) -> None:
        c = self.cell
        x1, y1 = max(0, rect[0] // c), max(0, rect[1] // c)
        x2, y2 = math.ceil(rect[2] / c), math.ceil(rect[3] / c)
        self.grid[y1:y2, x1:x2] = 1

    def nearest_free(self, anchor: tuple[int, int], w: int, h: int) -> tuple[int, int] | None:
        """The free spot for a w x h label nearest `anchor`, on the grid; None when the image
        has no room left. One summed-area table per call: linear in the grid's cells."""
        c = self.cell
        cw, ch = math.ceil(w / c), math.ceil(h / c)
        rows, cols = self.grid.shape
        if cw > cols or ch > rows:
            return None
        sat = np.zeros((rows + 1, cols + 1), np.int32)
        sat[1:, 1:] = self.grid.cumsum(0).cumsum(1)
        sums = sat[ch:, cw:] - sat[:-ch, cw:] - sat[ch:, :-cw] + sat[:-ch, :-cw]
        ys, xs = np.nonzero(sums == 0)
        xs, ys = xs * c, ys * c
        inside = (xs + w <= self.width) & (ys + h <= self.height)
        xs, ys = xs[inside], ys[inside]
        if not len(xs):
            return None
        best = int(np.argmin((xs - anchor[0]) ** 2 + (ys - anchor[1]) ** 2))
        return int(xs[best]), int(ys[best])


def place_labels(
    boxes: np.ndarray,
    sizes: Sequence[tuple[int, int]],
    scores: np.ndarray,
    image_size: tuple[int, int],
) -> list[Rect]:
    """Label rectangles for `boxes`, placed as the module docstring says.

    Args:
        boxes: (K, 4) x1, y1, x2, y2.
        sizes: each label's (width, height) in pixels.
        scores: (K,); higher scores choose first.
        image_size: (width, height).

    Returns:
        A half-open rectangle per box, in the boxes' order.
    """
    width, height = image_size
    placed = np.zeros((0, 4), np.int64)
    rects: list[Rect | None] = [None] * len(boxes)
    heights = [h for _, h in sizes]
    occupancy = _Occupancy(width, height, (min(heights) if heights else 1) // 4)
    for i in np.argsort(-np.asarray(scores, np.float64), kind="stable"):
        w, h = sizes[i]
        x1, y1, x2, y2 = (float(v) for v in boxes[i])
        box = (
            min(max(math.floor(x1), 0), width),
            min(max(math.floor(y1), 0), height),
            min(max(math.ceil(x2), 0), width),
            min(max(math.ceil(y2), 0), height),
        )
        spots = _candidates(box, w, h)
        spot = _first_free(spots, w, h, placed, width, height)
        # The first spot clamped into the image (it may still stick out where the label is
        # larger than the image).
        first = (
            max(0, min(spots[0][0], width - w)),
            max(0, min(spots[0][1], height - h)),
        )
        if spot is None:
            spot = occupancy.nearest_free(first, w, h) or first
        rect = (spot[0], spot[1], spot[0] + w, spot[1] + h)
        rects[i] = rect
        occupancy.mark(rect)
        placed = np.vstack([placed, np.asarray(rect, np.int64)[None]])
    return rects  # type: ignore[return-value]


@functools.lru_cache(maxsize=4096)
def _text_mask(text: str, size: int) -> Image.Image:
    """`text` rendered once in the default font at `size`: an "L" mask, as wide as its advance
    and as high as the font's ascent + descent. Labels are drawn from a class name's mask and a
    score's (101 of them), so a video or a folder renders each once, not once per box
    (rendering was 90 % of the drawing time)."""
    font = _font(size)
    ascent, descent = font.getmetrics()
    mask = Image.new("L", (max(1, math.ceil(font.getlength(text))), ascent + descent), 0)
    ImageDraw.Draw(mask).text((0, 0), text, fill=255, font=font, anchor="la")
    return mask


def _label_masks(detections: Detections, class_names: Sequence[str], size: int):
    """Per detection the masks of `name ` and `0.87`, drawn side by side."""
    return [
        (_text_mask(f"{class_names[int(c)]} ", size), _text_mask(f"{float(s):.2f}", size))
        for s, c in zip(detections.scores, detections.classes, strict=True)
    ]


def _layout(image_size: tuple[int, int], detections: Detections, class_names: Sequence[str]):
    width, height = image_size
    size = font_size(width, height)
    pad = max(1, size // 8)
    masks = _label_masks(detections, class_names, size)
    # One height for all labels (ascent + descent), so that "car" and "person" line up.
    sizes = [(name.width + score.width + 2 * pad, name.height + 2 * pad) for name, score in masks]
    rects = place_labels(detections.boxes, sizes, detections.scores, image_size)
    return pad, masks, rects


def label_boxes(
    image_size: tuple[int, int], detections: Detections, class_names: Sequence[str]
) -> list[Rect]:
    """The label rectangles `draw_detections` draws on an image of `image_size` = (width,
    height): half-open `(x1, y1, x2, y2)`, one per detection, in the detections' order."""
    return _layout(image_size, detections, class_names)[2]


def draw_detections(
    image: np.ndarray, detections: Detections, class_names: Sequence[str]
) -> Image.Image:
    """Returns a PIL image (RGB) with a box and a `name score` label per detection."""
    canvas = Image.fromarray(np.ascontiguousarray(image)).convert("RGB")
    width, height = canvas.size
    if not len(detections):
        return canvas
    draw = ImageDraw.Draw(canvas)
    colors = class_colors(len(class_names))
    thickness = line_width(width, height)
    pad, masks, rects = _layout((width, height), detections, class_names)
    for box, cls in zip(detections.boxes, detections.classes, strict=True):
        x1, y1, x2, y2 = (float(v) for v in box)
        if x2 > x1 and y2 > y1:
            draw.rectangle([x1, y1, x2, y2], outline=colors[int(cls)], width=thickness)
    # Labels over all boxes; the highest score last, on top, should two ever overlap.
    for i in np.argsort(np.asarray(detections.scores, np.float64), kind="stable"):
        color = colors[int(detections.classes[i])]
        x1, y1, x2, y2 = rects[i]
        draw.rectangle([x1, y1, x2 - 1, y2 - 1], fill=color)  # PIL's corners are inclusive
        ink = text_color(color)
        left = x1 + pad
        for mask in masks[i]:
            canvas.paste(ink, (left, y1 + pad, left + mask.width, y1 + pad + mask.height), mask)
            left += mask.width
    return canvas


def draw_on_array(
    image: np.ndarray, detections: Detections, class_names: Sequence[str]
) -> np.ndarray:
    """`draw_detections` as an RGB uint8 array (for video frames)."""
    return np.asarray(draw_detections(image, detections, class_names))

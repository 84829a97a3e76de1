"""Drawing labelled boxes on images."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from attnyolo.models.decoder import Detections


def class_colors(num_classes: int) -> list[tuple[int, int, int]]:
    """Evenly spaced hues, one per class (as the original scripts colour classes)."""
    return [
        tuple(int(255 * c) for c in colorsys.hsv_to_rgb(i / max(num_classes, 1), 1.0, 1.0))
        for i in range(num_classes)
    ]


def draw_detections(
    image: np.ndarray, detections: Detections, class_names: Sequence[str]
) -> Image.Image:
    """Returns a PIL image with a box and a `name score` label per detection."""
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    height, width = image.shape[:2]
    font = ImageFont.load_default(size=max(12, int(3e-2 * height + 0.5)))
    thickness = max(1, (width + height) // 600)
    colors = class_colors(len(class_names))
    for box, score, cls in zip(
        detections.boxes, detections.scores, detections.classes, strict=True
    ):
        x1, y1, x2, y2 = (float(v) for v in box)
        color = colors[int(cls)]
        draw.rectangle([x1, y1, x2, y2], outline=color, width=thickness)
        label = f"{class_names[int(cls)]} {score:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        tw, th = right - left, bottom - top
        # Above the box when there is room, below its top edge otherwise; kept inside the image.
        ty = y1 - th - 4 if y1 - th - 4 >= 0 else y1 + 1
        tx = max(0.0, min(x1, width - tw - 4))
        draw.rectangle([tx, ty, tx + tw + 4, ty + th + 4], fill=color)
        draw.text((tx + 2, ty + 2 - top), label, fill=(0, 0, 0), font=font)
    return canvas

"""The one way an image becomes the network's input: size it (letterbox or stretch, a named
bicubic filter) and scale it to [0, 1]; its transform maps the boxes back. Training's loader,
prediction, evaluation, video, heatmaps and every runtime use it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from attnyolo.data.images import (
    DEFAULT_RESIZE_FILTER,
    PIXEL_DIVISOR,
    check_resize_filter,
    letterbox,
    resize,
)
from attnyolo.inference.config import InferenceConfig


class Preprocessor:
    """RGB uint8 image of any size -> float32 network input and its transform.

    Args:
        input_size: the network's `(height, width)`.
        letterbox: keep the aspect ratio and pad with grey (True) or stretch (False).
        resize_filter: `"opencv"` or `"pillow"` (see `attnyolo.data.images`).
        original_transform: undo the letterbox as the original scripts' decoder does (its
            rounded size and unfloored offset, off by up to a pixel), for the `original` and
            `eval_callback` evaluation protocols.

    Calling it returns `(input, transform)`: `input` (height, width, 3) float32 in [0, 1],
    `transform` `(scale_x, scale_y, pad_x, pad_y)` with input pixel = image pixel x scale + pad.
    """

    def __init__(
        self,
        input_size: Sequence[int],
        letterbox: bool = False,
        resize_filter: str = DEFAULT_RESIZE_FILTER,
        original_transform: bool = False,
    ):
        self.input_size = tuple(int(v) for v in input_size)
        self.letterbox = bool(letterbox)
        self.resize_filter = check_resize_filter(resize_filter)
        self.original_transform = bool(original_transform)

    @classmethod
    def from_config(
        cls,
        config: InferenceConfig,
        letterbox: bool | None = None,
        resize_filter: str | None = None,
        original_transform: bool = False,
    ) -> Preprocessor:
        """As the model was trained unless told: its letterbox (stretch where unknown, the
        original's prediction default) and its resize filter (else the default)."""
        return cls(
            config.input_size,
            letterbox=bool(config.letterbox) if letterbox is None else letterbox,
            resize_filter=resize_filter or config.resize_filter or DEFAULT_RESIZE_FILTER,
            original_transform=original_transform,
        )

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sizer = letterbox if self.letterbox else resize
        sized, transform = sizer(image, self.input_size, resize_filter=self.resize_filter)
        if self.original_transform and self.letterbox:
            transform = original_letterbox_transform(image.shape[:2], self.input_size)
        scaled = sized.astype(np.float32)
        scaled /= np.float32(PIXEL_DIVISOR)  # in place: the same values, one array fewer
        return scaled, transform

    def settings(self) -> dict:
        """The settings, for reports."""
        return {
            "input_size": list(self.input_size),
            "letterbox": self.letterbox,
            "resize_filter": self.resize_filter,
        }


def original_letterbox_transform(image_size, input_size) -> np.ndarray:
    """How the original's decoder undoes a letterbox (`yolo_correct_boxes`): the resized image
    is taken as `round(size * scale)` (half to even, as `tf.round`) and centred at half the
    padding, unfloored; the image itself was pasted at `int()` sizes and floored offsets, so the
    original's boxes are off by up to about a pixel of the input. A side that rounds to no pixel
    is taken as one, as `letterbox` pastes it (a zero scale would make the boxes NaN)."""
    (ih, iw), (h, w) = image_size, input_size
    scale = min(h / ih, w / iw)
    nh, nw = max(1.0, np.round(ih * scale)), max(1.0, np.round(iw * scale))
    return np.array([nw / iw, nh / ih, (w - nw) / 2, (h - nh) / 2], np.float64)

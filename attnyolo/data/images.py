"""Reading images as RGB uint8 arrays, and the two ways the original scripts size them."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# The original scripts pad letterboxed images with grey.
PAD_VALUE = 128


class ImageError(ValueError):
    """An image that cannot be read, with the file named."""


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Reads an image file as an RGB uint8 array `(height, width, 3)`.

    EXIF orientation is applied (phone photos); grayscale, palette, CMYK and alpha images are
    converted to RGB (alpha is dropped, as the original scripts do); 16-bit images are scaled to
    8 bits rather than clipped.

    Raises:
        ImageError: missing, unreadable, truncated or not an image, naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                image = ImageOps.exif_transpose(image)
                return _to_rgb(image)
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file (or a format Pillow cannot read)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{path}: cannot read image: {e}") from None


def _to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16-bit / 32-bit grayscale: Pillow's convert("RGB") would clip everything above 255.
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        if image.mode == "F" and values.max() <= 1.0:
            top = 1.0
        gray = np.clip(np.round(values / top * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


def letterbox(
    image: np.ndarray, size: tuple[int, int], pad_value: int = PAD_VALUE
) -> tuple[np.ndarray, np.ndarray]:
    """Resizes keeping the aspect ratio and pads to `size` = (height, width) with grey, centred.

    Returns:
        The resized uint8 image and its transform `(scale_x, scale_y, pad_x, pad_y)`, so that
        input pixel = original pixel x scale + pad.
    """
    height, width = size
    ih, iw = image.shape[:2]
    scale = min(width / iw, height / ih)
    nw, nh = max(1, int(iw * scale)), max(1, int(ih * scale))
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_CUBIC)
    canvas = np.full((height, width, 3), pad_value, np.uint8)
    px, py = (width - nw) // 2, (height - nh) // 2
    canvas[py : py + nh, px : px + nw] = resized
    return canvas, np.array([nw / iw, nh / ih, px, py], np.float64)


def resize(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Resizes to `size` = (height, width), stretching; returns the image and its transform."""
    height, width = size
    ih, iw = image.shape[:2]
    resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC)
    return resized, np.array([width / iw, height / ih, 0.0, 0.0], np.float64)

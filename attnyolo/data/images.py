"""Reading images as RGB uint8 arrays, and the two ways the original scripts size them.

Both sizings resample with a bicubic filter chosen by name (`resize_filter`):

- `"opencv"` (the default): `cv2.resize(..., INTER_CUBIC)`, cubic convolution with a = -0.75 over
  a fixed 4 x 4 pixel neighbourhood at any scale, so shrinking a large photo aliases;
- `"pillow"`: `PIL.Image.resize(..., Image.BICUBIC)`, the original scripts' filter for training,
  validation, prediction and `get_map.py` alike: a = -0.5, and when shrinking the kernel is
  widened by the scale factor, which smooths (antialiases) the result.

Enlarging, the two differ by less than one grey level on average (more at sharp edges, from the
different a); shrinking, by more the more the image shrinks. `bench/bench_resize.py` measures both
on voc20 and times them.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# The original scripts pad letterboxed images with grey.
PAD_VALUE = 128
# Images are fed as RGB float32 in [0, 1]: pixel / 255 (divided, as the original scripts do:
# multiplying by 1/255 differs in the last bit). Training's loader and inference's preprocessor
# both use it.
PIXEL_DIVISOR = 255.0

# OpenCV's filter is the default for speed: 0.4 against 4.5 ms to letterbox a 640 x 480 photo to
# 416 (bench/bench_resize.py; on voc20 the training loader delivers about 80 against 45 images/s).
DEFAULT_RESIZE_FILTER = "opencv"


class ImageError(ValueError):
    """An image that cannot be read, with the file named."""


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Reads an image file as an RGB uint8 array `(height, width, 3)`.

    EXIF orientation is applied (phone photos); grayscale, palette, CMYK and alpha images are
    converted to RGB (alpha is dropped, as the original scripts do); 16-bit images are scaled to
    8 bits rather than clipped. An animated image gives its first frame.

    Images of more than Pillow's `Image.MAX_IMAGE_PIXELS` (about 89 megapixels) are refused before
    their pixels are decoded, so a small file that declares a huge size (a decompression bomb)
    costs no memory; an image under the limit costs about 10 bytes per pixel at the peak (under
    1 GB at the limit).

    Raises:
        ImageError: missing, unreadable, truncated, too large or not an image, naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                _check_pixels(image)
                image.load()
                ImageOps.exif_transpose(image, in_place=True)  # a copy would cost 4 bytes/pixel
                return _to_rgb(image)
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file (or a format Pillow cannot read)") from None
    # DecompressionBombError is neither an OSError nor a ValueError: over twice the limit,
    # Pillow raises it from `open`.
    except (
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombWarning,
        Image.DecompressionBombError,
    ) as e:
        raise ImageError(f"{path}: cannot read image: {e}") from None


def _check_pixels(image: Image.Image) -> None:
    # Pillow only warns between the limit and twice it; the warnings filter above makes that an
    # error, but warnings filters are process-wide and not thread-safe (reader threads load
    # images concurrently), so the limit is checked here as well.
    limit = Image.MAX_IMAGE_PIXELS
    width, height = image.size
    if limit and width * height > limit:
        raise ValueError(
            f"{width} x {height} = {width * height:,} pixels is over the limit of {limit:,} "
            "(PIL.Image.MAX_IMAGE_PIXELS): a decompression bomb, or an image too large to read"
        )


def _to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode.startswith("I;16"):
        # 16-bit grayscale: Pillow's convert("RGB") would clip everything above 255. In integers,
        # round(v / 65535 * 255) = (v + 128) // 257 (v / 257 is never a half), at 4 bytes per
        # pixel where float64 took 8 per temporary.
        gray = np.asarray(image).astype(np.uint32)
        gray += 128
        gray //= 257
        return np.repeat(gray.astype(np.uint8)[..., None], 3, axis=-1)
    if image.mode in ("I", "F"):
        # 32-bit grayscale: scaled as 16-bit when it goes over 255.
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if values.max() > 255 else 255.0
        if image.mode == "F" and values.max() <= 1.0:
            top = 1.0
        gray = np.clip(np.round(values / top * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


def _resize_opencv(image: np.ndarray, width: int, height: int) -> np.ndarray:
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC)


def _resize_pillow(image: np.ndarray, width: int, height: int) -> np.ndarray:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"the pillow filter takes RGB uint8 (h, w, 3), got {image.dtype} {image.shape}"
        )
    resized = Image.fromarray(np.ascontiguousarray(image)).resize((width, height), Image.BICUBIC)
    return np.array(resized)  # a writable copy (np.asarray of a PIL image is read-only)


RESIZE_FILTERS = {"opencv": _resize_opencv, "pillow": _resize_pillow}


def check_resize_filter(resize_filter: str) -> str:
    """Returns `resize_filter` if it names a filter of `RESIZE_FILTERS`, else raises ValueError
    listing the valid names."""
    if not isinstance(resize_filter, str) or resize_filter not in RESIZE_FILTERS:
        raise ValueError(
            f"unknown resize_filter {resize_filter!r}; choose from {', '.join(RESIZE_FILTERS)}"
        )
    return resize_filter


def resample(
    image: np.ndarray, size: tuple[int, int], resize_filter: str = DEFAULT_RESIZE_FILTER
) -> np.ndarray:
    """Resizes an RGB uint8 image to `size` = (height, width), bicubic, with OpenCV's filter
    (`"opencv"`) or Pillow's (`"pillow"`, the original scripts'); see the module docstring."""
    height, width = size
    return RESIZE_FILTERS[check_resize_filter(resize_filter)](image, int(width), int(height))


def letterbox(
    image: np.ndarray,
    size: tuple[int, int],
    pad_value: int = PAD_VALUE,
    resize_filter: str = DEFAULT_RESIZE_FILTER,
) -> tuple[np.ndarray, np.ndarray]:
    """Resizes keeping the aspect ratio and pads to `size` = (height, width) with grey, centred.

    The geometry is the original's `resize_image`: scale = min(w / iw, h / ih), the image resized
    to int(iw * scale) x int(ih * scale) and pasted at ((w - nw) // 2, (h - nh) // 2).

    Returns:
        The resized uint8 image and its transform `(scale_x, scale_y, pad_x, pad_y)`, so that
        input pixel = original pixel x scale + pad.
    """
    height, width = size
    ih, iw = image.shape[:2]
    scale = min(width / iw, height / ih)
    nw, nh = max(1, int(iw * scale)), max(1, int(ih * scale))
    resized = resample(image, (nh, nw), resize_filter)
    canvas = np.full((height, width, 3), pad_value, np.uint8)
    px, py = (width - nw) // 2, (height - nh) // 2
    canvas[py : py + nh, px : px + nw] = resized
    return canvas, np.array([nw / iw, nh / ih, px, py], np.float64)


def resize(
    image: np.ndarray, size: tuple[int, int], resize_filter: str = DEFAULT_RESIZE_FILTER
) -> tuple[np.ndarray, np.ndarray]:
    """Resizes to `size` = (height, width), stretching; returns the image and its transform."""
    height, width = size
    ih, iw = image.shape[:2]
    resized = resample(image, (height, width), resize_filter)
    return resized, np.array([width / iw, height / ih, 0.0, 0.0], np.float64)

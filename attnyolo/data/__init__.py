"""Images and data sets: reading, transforms, batches."""

from attnyolo.data.images import ImageError, letterbox, load_image, resize

__all__ = ["ImageError", "letterbox", "load_image", "resize"]

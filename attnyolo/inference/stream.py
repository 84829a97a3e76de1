"""The one detection loop: images are read and preprocessed in threads while the network runs,
in batches, decoded, and handed back one by one, in order. Prediction, evaluation, video,
heatmaps and the benchmarks all go through it; no more than a few batches are held in memory,
however long the source.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from attnyolo.inference.decoder import Detections, YoloDecoder
from attnyolo.inference.preprocess import Preprocessor

# What a bad image may raise while read: ImageError (a ValueError), OpenCV's and OS errors.
READ_ERRORS = (ValueError, OSError)


@dataclass
class Item:
    """One image to detect on.

    Attributes:
        name: what reports call it: a file path, or `video.mp4#frame=12`.
        load: returns the image, RGB uint8 `(height, width, 3)`; raises an error naming the
            file (`attnyolo.data.images.ImageError`) when it cannot.
        info: anything the caller wants back with the result (source, frame index, ...).
    """

    name: str
    load: Callable[[], np.ndarray]
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Result:
    """An item's outcome: its image and detections, or the error that stopped its reading."""

    item: Item
    image: np.ndarray | None = None
    detections: Detections | None = None
    error: str | None = None
    transform: np.ndarray | None = None
    image_size: tuple[int, int] | None = None  # (height, width), kept when the image is not

    @property
    def ok(self) -> bool:
        return self.error is None


def array_items(images: Sequence[np.ndarray], prefix: str = "image") -> list[Item]:
    """Items for images already in memory."""
    return [Item(f"{prefix}{i}", (lambda image=image: image)) for i, image in enumerate(images)]


def file_items(paths: Iterable[str | os.PathLike]) -> Iterator[Item]:
    """Items for image files (read with `attnyolo.data.images.load_image`)."""
    from attnyolo.data.images import load_image

    for path in paths:
        yield Item(str(path), (lambda path=path: load_image(path)), {"path": str(path)})


class _End:
    def __init__(self, error: BaseException | None = None):
        self.error = error


def _prepare(item: Item, preprocessor: Preprocessor):
    try:
        image = item.load()
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
            shape = getattr(image, "shape", type(image).__name__)
            raise ValueError(f"{item.name}: not an RGB image (got {shape})")
        x, transform = preprocessor(image)
        return item, image, x, transform, None
    except READ_ERRORS as e:
        message = str(e) if item.name in str(e) else f"{item.name}: {e}"
        return item, None, None, None, message


def detect_stream(
    runtime: Callable[[np.ndarray], Sequence[np.ndarray]],
    items: Iterable[Item],
    preprocessor: Preprocessor,
    decoder: YoloDecoder,
    batch_size: int = 8,
    workers: int | None = None,
    keep_images: bool = True,
) -> Iterator[Result]:
    """Detections for every item, in the items' order.

    Args:
        runtime: batch `(N, H, W, 3)` float32 -> raw heads, stride 32 first (a `KerasRuntime`,
            `OnnxRuntime`, ...).
        items: `Item`s; consumed lazily (a video or a folder is never held whole).
        preprocessor, decoder: the model's.
        batch_size: images per forward pass (a live source wants 1).
        workers: reader threads (default: min(4, CPUs)).
        keep_images: hand back each image with its result (drawing needs it; scoring not).

    Yields:
        A `Result` per item. An image that cannot be read gets its error message and no
        detections; the loop goes on.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    workers = workers or min(4, os.cpu_count() or 1)
    pending: queue.Queue = queue.Queue(maxsize=2 * batch_size + workers)
    stop = threading.Event()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="attnyolo-read")

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                pending.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        # Iterating the items (a video's decoder, a folder walk) happens here, off the loop.
        try:
            for item in items:
                if not put(pool.submit(_prepare, item, preprocessor)):
                    return
        except BaseException as e:  # handed to the consumer, raised there
            put(_End(e))
            return
        put(_End())

    producer = threading.Thread(target=produce, name="attnyolo-items", daemon=True)
    producer.start()
    try:
        done = False
        while not done:
            chunk = []
            while len(chunk) < batch_size:
                entry = pending.get()
                if isinstance(entry, _End):
                    if entry.error is not None:
                        raise entry.error
                    done = True
                    break
                chunk.append(entry.result())
            if chunk:
                yield from _run_chunk(runtime, decoder, chunk, keep_images)
    finally:
        stop.set()
        while True:  # unblock and drop what was read ahead
            try:
                entry = pending.get_nowait()
            except queue.Empty:
                break
            if isinstance(entry, Future):
                entry.cancel()
        producer.join(timeout=5)
        pool.shutdown(wait=True, cancel_futures=True)


def _run_chunk(runtime, decoder, chunk, keep_images) -> Iterator[Result]:
    readable = [entry for entry in chunk if entry[4] is None]
    found: Iterator[Detections] = iter(())
    if readable:
        inputs = [entry[2] for entry in readable]
        # One image: a view, not a copy (a fresh 2 MB array per frame costs more than it seems).
        heads = runtime(inputs[0][None] if len(inputs) == 1 else np.stack(inputs))
        sizes = [entry[1].shape[:2] for entry in readable]
        found = iter(decoder(heads, sizes, np.stack([entry[3] for entry in readable])))
    for item, image, _, transform, error in chunk:
        if error is not None:
            yield Result(item, error=error)
        else:
            yield Result(
                item,
                image if keep_images else None,
                next(found),
                transform=transform,
                image_size=(int(image.shape[0]), int(image.shape[1])),
            )

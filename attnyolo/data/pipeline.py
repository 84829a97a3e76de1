"""Batches for training and validation: records -> augmented, padded arrays, loaded in parallel.

`DetectionSequence` is a `keras.utils.PyDataset`, so `fit()` loads batches with its own thread (or
process) pool while the model trains. Each sample is drawn from a generator seeded with
`(seed, epoch, index)` and from nothing else, so a batch is the same whichever worker builds it,
in whatever order, and a resumed run (`set_epoch`) sees the batches an uninterrupted one would.
"""

from __future__ import annotations

import math
import threading
import time
import warnings
from dataclasses import dataclass

import keras
import numpy as np

from attnyolo.data._common import DatasetWarning
from attnyolo.data.augment import (
    clip_and_filter,
    hflip,
    hsv_jitter,
    letterbox_sample,
    mixup,
    mosaic,
    random_resize,
)
from attnyolo.data.images import (
    DEFAULT_RESIZE_FILTER,
    PIXEL_DIVISOR,
    ImageError,
    check_resize_filter,
    load_image,
)
from attnyolo.data.records import Dataset

__all__ = ["DetectionSequence", "Sample", "loader_throughput"]


@dataclass
class Sample:
    """One augmented sample before batching, with how it was made (for tests and debugging).

    Attributes:
        image: `(height, width, 3)` uint8, or float32 in 0..255 after mixup.
        boxes: `(K, 4)` float32 `x1, y1, x2, y2` in input pixels, clipped, none degenerate.
        classes: `(K,)` int64.
        mosaic: whether the sample is a mosaic.
        mixup: whether a second image was blended in.
        sources: indices of the records the sample was made from, after any unreadable image
            was replaced.
    """

    image: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray
    mosaic: bool = False
    mixup: bool = False
    sources: tuple[int, ...] = ()


class DetectionSequence(keras.utils.PyDataset):
    """Training or validation batches of a detection data set, as the original scripts make them.

    Training samples are, for the first `special_aug_ratio * epochs` epochs, a mosaic with
    probability `mosaic` (then blended with a further randomly resized image with probability
    `mixup`), and otherwise a single image randomly resized, placed, flipped and HSV-jittered; see
    `attnyolo.data.augment`. Validation samples (`train=False`) are letterboxed, in data set order,
    without randomness. Difficult boxes are dropped from the targets: they are not learned from.

    Each sample is drawn from `np.random.default_rng([seed, epoch, index])` alone, so batches are
    identical with any number of workers and in any order. An unreadable image is reported once
    with a `DatasetWarning` naming it and replaced by the next readable record.

    With `workers > 1` Keras builds batches in a thread pool; Pillow and OpenCV release the GIL
    while decoding and resizing, so threads scale without the cost of processes. Measured with
    `loader_throughput` on voc20 trainval (VOC JPEGs of about 500 x 375), 416 x 416, batch 8,
    mosaic 0.5, mixup 0.5, on two otherwise idle CPU cores: about 75 images/s with one worker and
    115 with two. A sample costs about 13 ms of CPU, mostly JPEG decoding (a mosaic reads four
    images and mixup a fifth), so plan on about 60-75 images/s per free core. With many workers,
    `cv2.setNumThreads(1)` keeps OpenCV's own threads from competing with them.

    Args:
        dataset: the records and class names.
        input_size: the model's input `(height, width)`, or one int for a square.
        batch_size: samples per batch.
        train: augment and shuffle (True) or letterbox in order (False).
        mosaic: probability of a mosaic sample while special augmentations are on.
        mixup: probability of blending a mosaic sample with another image.
        special_aug_ratio: mosaic and mixup are used while `epoch < special_aug_ratio * epochs`.
        close_mosaic: and, when set, only while `epoch < epochs - close_mosaic`: the last
            `close_mosaic` epochs train on single images (Ultralytics' rule, 10 there), so a
            short run (10 epochs or fewer at 10) trains on single images but for its first epoch
            in a timed run, whose epoch count is unknown until one has ended.
        epochs: the run's number of epochs; None keeps mosaic and mixup on throughout.
        seed: non-negative seed of the order and of every augmentation.
        scale: the range of a single (non-mosaic) sample's random scale, as a fraction of the
            input size: the original's (0.25, 2.0).
        hsv: the hue, saturation and value jitter: the original's (0.1, 0.7, 0.4).
        resize_filter: the bicubic resize of every sample, training and validation: `"opencv"`
            or `"pillow"` (the original's, about half the loader's throughput on voc20); see
            `attnyolo.data.images` and `bench/bench_resize.py`.
        max_boxes: boxes per image in a batch; further boxes are dropped with a warning.
        workers, use_multiprocessing, max_queue_size: `keras.utils.PyDataset`'s parallel loading.
        shuffle: reshuffle the training order every epoch (ignored when `train=False`).

    Batches:
        `(images, {"boxes": boxes, "classes": classes})`: images `(B, H, W, 3)` float32 in
        [0, 1]; boxes `(B, max_boxes, 4)` float32 `x1, y1, x2, y2` in input pixels, padded with
        zeros; classes `(B, max_boxes)` int32, padded with -1. Training drops the last partial
        batch, as the original; validation keeps it.

    The sequence shuffles its samples itself, per epoch and seeded; `fit(shuffle=False)` keeps
    Keras from reordering the batches again with Python's unseeded `random`.

    Example:

    ```python
    train = DetectionSequence(read_voc(root, "trainval", names), 416, 16, epochs=100, workers=4)
    model.fit(train, epochs=100, shuffle=False)
    ```
    """

    def __init__(
        self,
        dataset: Dataset,
        input_size: int | tuple[int, int],
        batch_size: int,
        *,
        train: bool = True,
        mosaic: float = 0.5,
        mixup: float = 0.5,
        special_aug_ratio: float = 0.7,
        close_mosaic: int | None = None,
        epochs: int | None = None,
        seed: int = 0,
        scale: tuple[float, float] = (0.25, 2.0),
        hsv: tuple[float, float, float] = (0.1, 0.7, 0.4),
        resize_filter: str = DEFAULT_RESIZE_FILTER,
        max_boxes: int = 100,
        workers: int = 1,
        use_multiprocessing: bool = False,
        max_queue_size: int = 10,
        shuffle: bool = True,
    ):
        super().__init__(
            workers=workers, use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size
        )
        if isinstance(input_size, int):
            input_size = (input_size, input_size)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        if min(self.input_size) < 1:
            raise ValueError(f"input_size must be positive, got {input_size}")
        if len(dataset) == 0:
            raise ValueError(f"the data set {dataset.source!r} has no records")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if train and len(dataset) < batch_size:
            # Training drops the last partial batch, which would leave nothing at all.
            raise ValueError(f"{len(dataset)} training records make no full batch of {batch_size}")
        for name, p in (("mosaic", mosaic), ("mixup", mixup)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} is a probability, got {p}")
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        if close_mosaic is not None and close_mosaic < 0:
            raise ValueError(f"close_mosaic must be non-negative, got {close_mosaic}")
        if len(scale) != 2 or not 0 < scale[0] <= scale[1]:
            raise ValueError(f"scale is a range (low, high) with 0 < low <= high, got {scale}")
        if max_boxes < 1:
            raise ValueError(f"max_boxes must be positive, got {max_boxes}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.train = train
        self.mosaic = float(mosaic)
        self.mixup = float(mixup)
        self.special_aug_ratio = float(special_aug_ratio)
        self.close_mosaic = None if close_mosaic is None else int(close_mosaic)
        self.epochs = epochs
        self.seed = int(seed)
        self.scale = (float(scale[0]), float(scale[1]))
        if len(hsv) != 3 or min(hsv) < 0:
            raise ValueError(f"hsv is (hue, saturation, value) jitter >= 0, got {hsv}")
        self.hsv = tuple(float(v) for v in hsv)
        self.resize_filter = check_resize_filter(resize_filter)
        self.max_boxes = int(max_boxes)
        self.shuffle = shuffle
        self.epoch = 0
        self._order: tuple[int, np.ndarray] | None = None
        self._unreadable: set[int] = set()
        self._warned_max_boxes = False
        self._lock = threading.Lock()

    # Pickling, for `use_multiprocessing=True` under a spawn start method: a lock cannot travel.
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        n, b = len(self.dataset), self.batch_size
        return n // b if self.train else math.ceil(n / b)

    def on_epoch_end(self) -> None:
        """Advances to the next epoch (Keras calls this once all of an epoch's batches are out)."""
        self.epoch += 1

    def set_epoch(self, epoch: int) -> None:
        """Continues from `epoch` (0-based), e.g. when resuming a run at `initial_epoch`."""
        if epoch < 0:
            raise ValueError(f"epoch must be non-negative, got {epoch}")
        self.epoch = int(epoch)

    def special_augmentation(self, epoch: int | None = None) -> bool:
        """Whether mosaic and mixup may be used in `epoch` (default: the current one)."""
        epoch = self.epoch if epoch is None else epoch
        if self.epochs is None:
            return True
        if self.close_mosaic is not None and epoch >= self.epochs - self.close_mosaic:
            return False
        return epoch < self.special_aug_ratio * self.epochs

    def order(self, epoch: int | None = None) -> np.ndarray:
        """The record index at each position of `epoch` (default: the current one)."""
        epoch = self.epoch if epoch is None else epoch
        cached = self._order
        if cached is not None and cached[0] == epoch:
            return cached[1]
        n = len(self.dataset)
        if self.train and self.shuffle:
            # The fourth word keeps this stream apart from the per-sample ones [seed, epoch,
            # index]: NumPy pads keys with zeros, so [seed, epoch] would equal sample 0's key.
            order = np.random.default_rng([self.seed, epoch, 0, 1]).permutation(n)
        else:
            order = np.arange(n)
        # One tuple assignment, so that a worker thread never sees one epoch's key with another's
        # order.
        self._order = (epoch, order)
        return order

    def __getitem__(self, index: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        # Read the epoch once, so that a batch never mixes two epochs.
        epoch = self.epoch
        start = index * self.batch_size
        stop = min(start + self.batch_size, len(self.dataset))
        count = stop - start
        h, w = self.input_size
        images = np.empty((count, h, w, 3), np.float32)
        boxes = np.zeros((count, self.max_boxes, 4), np.float32)
        classes = np.full((count, self.max_boxes), -1, np.int32)
        for row, position in enumerate(range(start, stop)):
            sample = self.load_sample(position, epoch)
            images[row] = sample.image
            k = len(sample.boxes)
            if k > self.max_boxes:
                self._warn_max_boxes(k, sample.sources)
                k = self.max_boxes
            boxes[row, :k] = sample.boxes[:k]
            classes[row, :k] = sample.classes[:k]
        images /= PIXEL_DIVISOR  # as every other input: attnyolo.inference.preprocess
        return images, {"boxes": boxes, "classes": classes}

    def load_sample(self, position: int, epoch: int | None = None) -> Sample:
        """The sample at `position` of `epoch` (default: the current one), before batching."""
        epoch = self.epoch if epoch is None else epoch
        record = int(self.order(epoch)[position])
        if not self.train:
            source, image, boxes, classes = self._read(record)
            image, boxes = letterbox_sample(image, boxes, self.input_size, self.resize_filter)
            boxes, classes = clip_and_filter(boxes, classes, self.input_size)
            return Sample(image, boxes, classes, sources=(source,))

        rng = np.random.default_rng([self.seed, epoch, position])
        # Both draws are made every time, so that the rest of the stream does not depend on
        # whether mosaic is switched on.
        u_mosaic, u_mixup = rng.random(2)
        use_mosaic = self.special_augmentation(epoch) and u_mosaic < self.mosaic
        if not use_mosaic:
            source, image, boxes, classes = self._random_single(record, rng)
            return Sample(image, boxes, classes, sources=(source,))

        # The original draws three further records at random (possibly this one again) and
        # shuffles the four into the quadrants.
        n = len(self.dataset)
        picks = np.append(rng.choice(n, 3, replace=n < 3), record)[rng.permutation(4)]
        reads = [self._read(int(k)) for k in picks]
        image, boxes, classes = mosaic(
            [r[1:] for r in reads], self.input_size, rng, resize_filter=self.resize_filter
        )
        image = hsv_jitter(image, rng, *self.hsv)
        sources = tuple(r[0] for r in reads)
        use_mixup = u_mixup < self.mixup
        if use_mixup:
            other = self._random_single(int(rng.integers(n)), rng)
            image, boxes, classes = mixup((image, boxes, classes), other[1:])
            sources += (other[0],)
        boxes, classes = clip_and_filter(boxes, classes, self.input_size)
        return Sample(image, boxes, classes, mosaic=True, mixup=use_mixup, sources=sources)

    def _random_single(
        self, record: int, rng: np.random.Generator
    ) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        """The original `get_random_data`: resize and place, flip, HSV jitter, clip."""
        source, image, boxes, classes = self._read(record)
        image, boxes = random_resize(
            image, boxes, self.input_size, rng, scale=self.scale, resize_filter=self.resize_filter
        )
        image, boxes = hflip(image, boxes, rng)
        image = hsv_jitter(image, rng, *self.hsv)
        boxes, classes = clip_and_filter(boxes, classes, self.input_size)
        return source, image, boxes, classes

    def _read(self, record: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        """Loads a record's image and its non-difficult boxes; an unreadable image is reported
        once and replaced by the next readable record, so that one bad file never stops a run."""
        records = self.dataset.records
        n = len(records)
        for step in range(n):
            k = (record + step) % n
            if k in self._unreadable:
                continue
            r = records[k]
            try:
                image = load_image(r.image)
            except ImageError as e:
                self._report_unreadable(k, e)
                continue
            keep = ~r.difficult
            return k, image, r.boxes[keep], r.classes[keep]
        raise ImageError(
            f"none of the {n} images of the data set {self.dataset.source!r} is readable"
        )

    def _report_unreadable(self, record: int, error: ImageError) -> None:
        with self._lock:
            if record in self._unreadable:
                return
            self._unreadable.add(record)
        path = self.dataset.records[record].image
        warnings.warn(
            DatasetWarning(
                f"{error}; the sample is replaced by the next readable image",
                file=path,
                fault="unreadable image",
            ),
            stacklevel=2,
        )

    def _warn_max_boxes(self, count: int, sources: tuple[int, ...]) -> None:
        with self._lock:
            if self._warned_max_boxes:
                return
            self._warned_max_boxes = True
        files = ", ".join(str(self.dataset.records[k].image) for k in sources)
        warnings.warn(
            f"a sample has {count} boxes, more than max_boxes={self.max_boxes}; the first "
            f"{self.max_boxes} are kept (reported once; from {files})",
            stacklevel=2,
        )


def loader_throughput(sequence: keras.utils.PyDataset, batches: int = 20, warmup: int = 1) -> float:
    """Images per second that `sequence` delivers with its own workers, as `fit()` would load it.

    The first `warmup` batches (pool start-up, file cache) are not timed. Iterates through Keras's
    `PyDataset` adapter, which runs the same thread or process pool as `fit()`; where that private
    module is missing, batches are loaded one after the other.
    """
    total = min(len(sequence), batches + warmup)
    if total <= warmup:
        raise ValueError(f"{len(sequence)} batches leave none to time after {warmup} of warm-up")
    try:
        from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter
    except ImportError:  # pragma: no cover - a Keras without the private module
        PyDatasetAdapter = None

    adapter = None
    if PyDatasetAdapter is not None:
        adapter = PyDatasetAdapter(sequence, shuffle=False)
        iterator = adapter.get_numpy_iterator()
    else:  # pragma: no cover
        iterator = (sequence[i] for i in range(total))
    images = 0
    start = time.perf_counter()
    try:
        for i, batch in enumerate(iterator):
            if i >= warmup:
                images += len(batch[0])
            elif i == warmup - 1:
                # The clock runs from the last warm-up batch to the last timed one.
                start = time.perf_counter()
            if i + 1 >= total:
                break
        elapsed = time.perf_counter() - start
    finally:
        # Stopping early leaves the pool running; stop it without advancing the epoch.
        if adapter is not None and adapter.enqueuer is not None:
            adapter.enqueuer.stop()
    return images / elapsed

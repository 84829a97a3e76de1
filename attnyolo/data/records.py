"""The record: one image and its boxes, the unit that readers produce and everything else uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Record:
    """One annotated image.

    Boxes are `x1, y1, x2, y2` in continuous pixel coordinates of the image as stored on disk
    (EXIF orientation aside): the top-left corner of the top-left pixel is (0, 0) and a box covering
    exactly pixels 0..9 spans 0.0 to 10.0. Readers convert their format's convention into this one
    where they apply it (VOC's 1-based inclusive pixels become `xmin - 1, ymin - 1, xmax, ymax`).

    Attributes:
        image: path of the image file.
        boxes: `(K, 4)` float32.
        classes: `(K,)` int64 contiguous class indices into the data set's class names.
        difficult: `(K,)` bool; boxes that count neither as hits nor as misses in evaluation and
            are not learned from (VOC `difficult`, COCO `iscrowd`).
        image_id: a stable id, unique in the data set (VOC: the file stem; COCO: the image id).
        size: `(height, width)` of the image; readers take it from the image file's header where
            they read it (an annotation's stated size can be wrong), else from the annotation;
            None when neither is known.
    """

    image: Path
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    classes: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    difficult: np.ndarray = field(default_factory=lambda: np.zeros((0,), bool))
    image_id: str | int | None = None
    size: tuple[int, int] | None = None

    def __post_init__(self):
        self.image = Path(self.image)
        self.boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        self.classes = np.asarray(self.classes, np.int64).reshape(-1)
        self.difficult = np.asarray(self.difficult, bool).reshape(-1)
        if not (len(self.boxes) == len(self.classes) == len(self.difficult)):
            raise ValueError(
                f"{self.image}: {len(self.boxes)} boxes, {len(self.classes)} classes and "
                f"{len(self.difficult)} difficult flags"
            )
        if self.image_id is None:
            self.image_id = self.image.stem


@dataclass
class TextRecord(Record):
    """A `Record` whose boxes stay float64 as written in a text file (a plain `Record` stores
    float32) and in the file's own convention, so that evaluation under the original scripts'
    protocol sees the very values their `get_map` compares."""

    def __post_init__(self) -> None:
        exact = np.asarray(self.boxes, np.float64).reshape(-1, 4)
        with np.errstate(over="ignore"):  # the float32 copy is replaced by the exact values
            super().__post_init__()
        self.boxes = exact


@dataclass
class Dataset:
    """Records of one split plus the class names their class indices refer to; `split` names
    the split where the reader knows it."""

    records: list[Record]
    class_names: list[str]
    source: str = ""
    split: str | None = None

    def __len__(self) -> int:
        return len(self.records)

"""What the data set readers share: the warning that reports bad samples, class-names files,
image sizes from file headers, and the clean-up every box goes through."""

from __future__ import annotations

import os
import sys
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from attnyolo.data.records import Record

# A names argument: a list of names, or the path of a file with one name per line.
ClassNames = Sequence[str] | str | os.PathLike | None

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".mpo", ".dng", ".pfm"}
)

# EXIF orientations 5..8 are transposes and quarter turns: the displayed image has width and
# height swapped, and `load_image` (which applies the orientation) returns it that way.
_TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})

# Pixels a box may stick out of its image without a warning (it is clipped all the same).
_CLIP_TOLERANCE = 0.01
_FLOAT32_MAX = float(np.finfo(np.float32).max)


class DatasetWarning(UserWarning):
    """A bad sample that a reader skipped or repaired, reported once per file and fault.

    Attributes:
        file: the file at fault (an annotation, an image, a label file), or the data set's source
            for the closing summary.
        fault: what went wrong, one of "missing image", "unreadable image", "bad annotation",
            "unknown class", "box clipped", "box dropped", "size mismatch", "no boxes",
            "duplicate", "class names" and "summary".
    """

    def __init__(self, message: str, file: str | os.PathLike = "", fault: str = ""):
        super().__init__(message)
        self.file = str(file)
        self.fault = fault


def _outside_caller_level() -> int:
    """The `stacklevel` of the first frame outside `attnyolo.data`, so that a warning points at
    the code that asked for the data set rather than at the reader's internals."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("attnyolo.data"):
        frame, level = frame.f_back, level + 1
    return level


class Report:
    """The bad samples of one read: a `DatasetWarning` per file and fault as they are found, a
    count per fault, and a closing summary (or an error when nothing usable is left)."""

    def __init__(self, source: str, split: str | None = None):
        self.source = source
        self.name = f"{source} ({split})" if split else source
        self.counts: Counter[str] = Counter()

    def warn(self, file: str | os.PathLike, fault: str, detail: str, count: int = 1) -> None:
        self.counts[fault] += count
        warnings.warn(
            DatasetWarning(f"{file}: {detail}", file, fault), stacklevel=_outside_caller_level()
        )

    def count(self, fault: str, count: int = 1) -> None:
        """Counts a fault for the summary only (for faults that are normal in a format)."""
        self.counts[fault] += count

    def summary(self) -> str:
        return ", ".join(f"{fault}: {n}" for fault, n in sorted(self.counts.items()))

    def finish(self, records: list[Record]) -> None:
        """Raises when no record is left; otherwise warns with the counts if anything was wrong."""
        if not records:
            detail = f" ({self.summary()})" if self.counts else ""
            raise ValueError(f"{self.name}: empty data set, no usable image{detail}")
        if self.counts:
            warnings.warn(
                DatasetWarning(
                    f"{self.name}: {len(records)} images read; {self.summary()}",
                    self.source,
                    "summary",
                ),
                stacklevel=_outside_caller_level(),
            )


def read_text(path: Path) -> str:
    """A UTF-8 text file, without the byte-order mark some editors write first; a file in
    another encoding is a `ValueError` naming it (not a bare `UnicodeDecodeError`)."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None


def read_class_names(names: ClassNames) -> list[str] | None:
    """Class names from a list, or from a file with one name per line (blank lines skipped).

    Returns None for None. Raises `FileNotFoundError` for a missing file and `ValueError` for an
    empty list or repeated names, naming the file.
    """
    if names is None:
        return None
    where = "class names"
    if isinstance(names, str | os.PathLike):
        path = Path(names)
        if not path.is_file():
            raise FileNotFoundError(f"class-names file not found: {path}")
        where = str(path)
        names = [line.strip() for line in read_text(path).splitlines()]
        names = [name for name in names if name]
    names = [str(name) for name in names]
    if not names:
        raise ValueError(f"{where}: no class names")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"{where}: repeated class names {repeated}")
    return names


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """`(height, width)` of an image as `load_image` returns it, from the file header only.

    Pillow's `open` reads the header without decoding pixels; EXIF orientations 5..8 swap the two.
    PNG files are asked for EXIF only when it came before the pixel data, because Pillow decodes a
    whole PNG to look for a later EXIF chunk.

    Raises:
        OSError: a missing, unreadable or oversized file (`FileNotFoundError` when missing).
    """
    try:
        with Image.open(path) as image:
            width, height = image.size
            if image.format == "PNG" and "exif" not in image.info:
                orientation = 1
            else:
                orientation = image.getexif().get(0x0112, 1)
    except (SyntaxError, ValueError, Image.DecompressionBombError) as e:
        # Pillow reports some broken headers and oversized images outside OSError.
        raise OSError(str(e)) from None
    if orientation in _TRANSPOSING_ORIENTATIONS:
        width, height = height, width
    return height, width


def image_files(folder: Path) -> dict[str, Path]:
    """Image files directly in `folder` by stem (`.jpg` wins when a stem has several), from one
    directory listing rather than a `stat` per sample."""
    found: dict[str, Path] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            path = Path(entry.path)
            if path.suffix.lower() in IMAGE_SUFFIXES and entry.is_file():
                if path.stem not in found or path.suffix.lower() == ".jpg":
                    found[path.stem] = path
    return found


def counted(n: int, singular: str) -> str:
    """`1 box`, `2 boxes`: warnings read better with the right number."""
    return f"{n} {singular if n == 1 else singular + ('es' if singular.endswith('x') else 's')}"


def _describe(boxes: np.ndarray) -> str:
    shown = ", ".join("[" + ", ".join(f"{v:g}" for v in box) + "]" for box in boxes[:3])
    return shown + (", ..." if len(boxes) > 3 else "")


def clean_boxes(
    boxes: np.ndarray,
    classes: np.ndarray,
    difficult: np.ndarray,
    size: tuple[int, int] | None,
    file: str | os.PathLike,
    report: Report,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drops non-finite (in float32), zero-area and inverted boxes, and clips boxes to the image
    when its `(height, width)` is known (dropping those left without area), one warning per fault.

    Boxes are continuous `x1, y1, x2, y2`, so a box must have `x2 > x1` and `y2 > y1`.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    with np.errstate(invalid="ignore"):
        # Beyond float32's range counts as non-finite: records store float32, where it is inf.
        bad = ~(np.abs(boxes) <= _FLOAT32_MAX).all(axis=1) | (boxes[:, 2] <= boxes[:, 0])
        bad |= boxes[:, 3] <= boxes[:, 1]
    if bad.any():
        report.warn(
            file,
            "box dropped",
            f"{counted(bad.sum(), 'box')} with no area, inverted corners or non-numeric or "
            f"huge values dropped: {_describe(boxes[bad])}",
            int(bad.sum()),
        )
        boxes, classes, difficult = boxes[~bad], classes[~bad], difficult[~bad]
    if size is not None and len(boxes):
        height, width = size
        limits = np.array([width, height, width, height], np.float64)
        clipped = np.clip(boxes, 0.0, limits)
        # Normalised labels rounded to 6 digits overshoot by a few thousandths of a pixel:
        # clipped silently, only a real overshoot is worth a warning.
        moved = (np.abs(clipped - boxes) > _CLIP_TOLERANCE).any(axis=1)
        empty = (clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1])
        if moved.any():
            dropped = f" ({empty.sum()} wholly outside, dropped)" if empty.any() else ""
            report.warn(
                file,
                "box clipped",
                f"{counted(moved.sum(), 'box')} outside the {width}x{height} image clipped to "
                f"it{dropped}: {_describe(boxes[moved])}",
                int(moved.sum()),
            )
        boxes, classes, difficult = clipped[~empty], classes[~empty], difficult[~empty]
    return boxes.astype(np.float32), classes, difficult


def ensure_unique_ids(records: list[Record]) -> None:
    """Image ids must be unique; when file stems collide (images from several folders), every
    record's id becomes its image path without the suffix."""
    ids = [record.image_id for record in records]
    if len(set(ids)) < len(ids):
        for record in records:
            record.image_id = record.image.with_suffix("").as_posix()


def load_yaml(path: Path) -> dict:
    """A YAML file that must hold a mapping, with errors that name it."""
    if not path.is_file():
        raise FileNotFoundError(f"data YAML not found: {path}")
    try:
        config = yaml.safe_load(read_text(path))
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a mapping of keys (path, names, train, val, ...)")
    return config


def yaml_base(path: Path, config: dict) -> Path:
    """The base of a data YAML's relative paths: its `path:` entry (relative to the YAML's folder
    when relative), by default the YAML's folder."""
    return resolve_path(path.parent, config.get("path") or ".")


def resolve_path(base: Path, item: object) -> Path:
    """`item` (`~` expanded) if absolute, else relative to `base`."""
    path = Path(os.path.expanduser(str(item)))
    return path if path.is_absolute() else base / path

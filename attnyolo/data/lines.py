"""Annotation lines, the format of the original yolov4-tiny-keras scripts (`2007_train.txt`).

One image per line: its path, then a space-separated field `x1,y1,x2,y2,class` per box, with
class ids into a names file (the scripts' `model_data/voc_classes.txt`):

    /data/VOCdevkit/VOC2007/JPEGImages/000005.jpg 263,211,324,339,8 165,264,253,372,8

The scripts copied VOC's integer `xmin, ymin, xmax, ymax` into these lines and used them as pixel
coordinates, so a line is read as given, as continuous coordinates: a file the scripts wrote is
one pixel off `read_voc` at the top-left corner, exactly as the original training saw it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from attnyolo.data._common import (
    ClassNames,
    Report,
    clean_boxes,
    counted,
    ensure_unique_ids,
    read_class_names,
    read_text,
)
from attnyolo.data.records import Dataset, Record
from attnyolo.utils import atomic_write

# A line's text before its last white space, and its last field.
_LAST_FIELD = re.compile(r"(.*\S)\s+(\S+)")


def read_annotation_lines(path: str | os.PathLike, class_names: ClassNames) -> Dataset:
    """Reads an annotation-lines file (see the module docstring).

    A line is split at its last fields that parse as boxes, so image paths with spaces still read.
    Relative image paths are relative to the file's folder. Image sizes are not known (the format
    has none and the original scripts read none), so boxes are not clipped. A line without boxes
    is kept as an image without objects (and reported).

    Args:
        path: the lines file.
        class_names: the names the class ids index (a list or a names file).

    Returns:
        A `Dataset` whose `source` is `path`; image ids are file stems.

    Raises:
        FileNotFoundError: a missing lines or names file.
        ValueError: no usable image.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation-lines file not found: {path}")
    names = read_class_names(class_names)
    if names is None:
        raise ValueError(f"{path}: annotation lines hold class ids; class names are needed")
    report = Report(str(path))
    listings: dict[Path, set[str]] = {}
    records, seen = [], set()
    for number, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        image, boxes = _split_line(line.rstrip())
        image = Path(os.path.expanduser(image))
        image = image if image.is_absolute() else path.parent / image
        where = f"{path}:{number} ({image.name})"
        if image in seen:
            report.warn(where, "duplicate", "image listed again; line skipped")
            continue
        seen.add(image)
        if image.name not in _listing(image.parent, listings):
            report.warn(where, "missing image", f"image file not found: {image}; skipped")
            continue
        values = np.array(boxes, np.float64).reshape(-1, 5)
        known = (values[:, 4] >= 0) & (values[:, 4] < len(names))
        if not known.all():
            unknown = sorted({int(c) for c in values[~known, 4]})
            report.warn(
                where,
                "unknown class",
                f"{counted((~known).sum(), 'box')} of class ids {unknown} skipped "
                f"({len(names)} classes)",
                int((~known).sum()),
            )
            values = values[known]
        boxes, classes, difficult = clean_boxes(
            values[:, :4],
            values[:, 4].astype(np.int64),
            np.zeros(len(values), bool),
            None,
            where,
            report,
        )
        if not len(boxes):
            report.warn(where, "no boxes", "no boxes; kept as an image without objects")
        records.append(Record(image, boxes, classes, difficult))
    ensure_unique_ids(records)
    report.finish(records)
    return Dataset(records, names, str(path))


def write_annotation_lines(
    dataset: Dataset, path: str | os.PathLike, names_path: str | os.PathLike | None = None
) -> Path:
    """Writes a data set as annotation lines the original scripts read unchanged, atomically.

    Image paths are written absolute. Boxes are written as they are (continuous coordinates,
    shortest exact form: `238` or `12.5`). Difficult boxes are left out, as the original
    `voc_annotation.py` did: the format cannot mark them.

    Args:
        dataset: the records and class names.
        path: the lines file to write.
        names_path: where to also write the class names, one per line (optional).

    Returns:
        `path`.

    Raises:
        ValueError: an image path with white space, which the format cannot represent (the
            scripts split lines at spaces); nothing is written then.
    """
    lines = []
    for record in dataset.records:
        image = os.path.abspath(record.image)
        if any(ch.isspace() for ch in image):
            raise ValueError(
                f"{image}: annotation lines cannot hold an image path with white space; "
                "rename the file or folder"
            )
        keep = ~record.difficult
        fields = [
            ",".join([*(_number(v) for v in box), str(int(cls))])
            for box, cls in zip(record.boxes[keep], record.classes[keep], strict=True)
        ]
        lines.append(" ".join([image, *fields]))
    written = atomic_write(path, "".join(line + "\n" for line in lines))
    if names_path is not None:
        atomic_write(names_path, "".join(name + "\n" for name in dataset.class_names))
    return written


def _split_line(line: str) -> tuple[str, list[tuple[float, float, float, float, int]]]:
    """The image path and boxes of a line: box fields are taken from the end while they parse,
    so that the rest, spaces and all, is the path."""
    rest, boxes = line.strip(), []
    while (match := _LAST_FIELD.fullmatch(rest)) and (box := _parse_box(match[2])) is not None:
        boxes.append(box)
        rest = match[1]
    return rest, boxes[::-1]


def _parse_box(token: str) -> tuple[float, float, float, float, int] | None:
    parts = token.split(",")
    if len(parts) != 5:
        return None
    try:
        return (*(float(v) for v in parts[:4]), int(parts[4]))
    except ValueError:
        return None


def _number(value: float) -> str:
    """The shortest text that reads back as the same float32 (`238`, `12.5`)."""
    return np.format_float_positional(np.float32(value), trim="-")


def _listing(folder: Path, cache: dict[Path, set[str]]) -> set[str]:
    """The names of the files in a folder, listed once: one listing per folder instead of a
    `stat` per image keeps big files quick."""
    if folder not in cache:
        try:
            # Files only: a line naming a folder is no image.
            with os.scandir(folder) as entries:
                cache[folder] = {entry.name for entry in entries if entry.is_file()}
        except (OSError, ValueError):  # ValueError: a path with a NUL character
            cache[folder] = set()
    return cache[folder]

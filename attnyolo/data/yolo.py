"""YOLO txt labels (Ultralytics and Darknet layout): per image a `.txt` with one
`class cx cy w h` line per box, normalised to the image's width and height."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from attnyolo.data._common import (
    IMAGE_SUFFIXES,
    ClassNames,
    Report,
    clean_boxes,
    counted,
    ensure_unique_ids,
    image_size,
    load_yaml,
    read_class_names,
    read_text,
    resolve_path,
    yaml_base,
)
from attnyolo.data.records import Dataset, Record

# Where a YOLO root without a data YAML keeps its class names (labelImg writes classes.txt
# beside the labels, Darknet calls the file obj.names).
_NAMES_FILES = ("classes.txt", "obj.names", "labels/classes.txt")
_DATA_YAMLS = ("data.yaml", "dataset.yaml")


def read_yolo(
    root_or_yaml: str | os.PathLike,
    split: str = "train",
    class_names: ClassNames = None,
) -> Dataset:
    """Reads a YOLO txt split.

    A data YAML (Ultralytics form) names the split's images: `path:` is the base of relative
    entries (default: the YAML's folder; a relative `path:` is relative to that folder), and
    `train:`, `val:`, `test:` each give a folder of images, a `.txt` list of image paths (relative
    ones relative to the list) or a list of those; `names:` is a list, a `{id: name}` dict or
    (our addition) a names file. A root folder holds `images/<split>/` and `labels/<split>/`, or
    flat `images/` and `labels/` (one set, read whatever the split), with the names in a
    `data.yaml`, `classes.txt` or `obj.names`.

    An image's label file is its path with the last `images` folder replaced by `labels` and the
    suffix by `.txt`. A missing or empty label file is a background image (kept, counted in the
    summary: a normal part of YOLO sets). Lines with more than five values are polygons
    (Ultralytics segments) and become their bounding box. The normalised boxes are scaled by the
    image size read from the file header with the EXIF orientation applied, as `load_image`
    returns the image.

    Args:
        root_or_yaml: a data YAML or a root folder.
        split: "train", "val" or "test" (a key of the YAML, a folder under `images/`).
        class_names: the class names (list or names file), overriding the YAML's.

    Returns:
        A `Dataset` whose `source` is the YAML or root; image ids are file stems.

    Raises:
        FileNotFoundError: a missing YAML, root, split folder or list, or names file.
        ValueError: a YAML without the split or names, or no usable image.
    """
    location = Path(root_or_yaml)
    if not location.exists():
        raise FileNotFoundError(f"YOLO data YAML or root not found: {location}")
    if location.is_dir():
        config = next((location / n for n in _DATA_YAMLS if (location / n).is_file()), None)
        if config is not None:
            return read_yolo(config, split, class_names)
        images, names = _root_split(location, split), class_names
    else:
        images, names = _yaml_split(location, split)
        names = names if class_names is None else class_names
    names = read_class_names(names if names is not None else _names_file(location, split))
    report = Report(str(location), split)
    unique = list(dict.fromkeys(images))
    if len(unique) < len(images):
        repeated = len(images) - len(unique)
        detail = f"{counted(repeated, 'image')} listed again in the split; read once"
        report.warn(location, "duplicate", detail, repeated)
        images = unique
    records = [r for r in (_record(image, names, report) for image in images) if r is not None]
    ensure_unique_ids(records)
    report.finish(records)
    return Dataset(records, names, str(location))


def is_yolo_yaml(config: object) -> bool:
    """Whether a loaded YAML looks like a YOLO data YAML: names and at least one split entry."""
    return (
        isinstance(config, dict)
        and "names" in config
        and any(key in config for key in ("train", "val", "test"))
    )


def is_yolo_root(path: Path) -> bool:
    return path.is_dir() and (
        any((path / name).is_file() for name in _DATA_YAMLS)
        or ((path / "images").is_dir() and (path / "labels").is_dir())
    )


def label_path(image: Path) -> Path:
    """The label file of an image: the last `images` folder becomes `labels`, the suffix `.txt`
    (Ultralytics' rule, so both tools read the same files)."""
    parts = image.parts
    if "images" in parts[:-1]:
        k = len(parts) - 2 - parts[:-1][::-1].index("images")
        return Path(*parts[:k], "labels", *parts[k + 1 :]).with_suffix(".txt")
    return image.with_suffix(".txt")


def _record(image: Path, names: list[str], report: Report) -> Record | None:
    try:
        size = image_size(image)
    except FileNotFoundError:
        report.warn(image, "missing image", "image file not found; skipped")
        return None
    except OSError as e:
        report.warn(image, "unreadable image", f"cannot read the image header ({e}); skipped")
        return None
    label = label_path(image)
    try:
        text = read_text(label)
    except FileNotFoundError:
        text = ""
    except (OSError, ValueError) as e:  # ValueError: not UTF-8
        report.warn(label, "bad annotation", f"unreadable label file ({e}); image skipped")
        return None
    rows, broken = [], 0
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        row = _parse_row(fields)
        if row is None:
            broken += 1
        else:
            rows.append(row)
    if broken:
        report.warn(label, "bad annotation", f"{counted(broken, 'malformed line')} skipped", broken)
    unknown = sorted({c for c, *_ in rows if not 0 <= c < len(names)})
    if unknown:
        skipped = sum(1 for c, *_ in rows if c in unknown)
        report.warn(
            label,
            "unknown class",
            f"{counted(skipped, 'box')} of class ids {unknown} skipped ({len(names)} classes)",
            skipped,
        )
        rows = [row for row in rows if row[0] not in unknown]
    height, width = size
    values = np.array([row[1:] for row in rows], np.float64).reshape(-1, 4)
    cx, cy, w, h = values.T
    # Huge or infinite values give infinite or NaN corners, which clean_boxes drops and reports.
    with np.errstate(over="ignore", invalid="ignore"):
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        boxes *= np.array([width, height, width, height], np.float64)
    classes = np.array([row[0] for row in rows], np.int64)
    boxes, classes, difficult = clean_boxes(
        boxes, classes, np.zeros(len(rows), bool), size, label, report
    )
    if not len(boxes):
        report.count("no boxes")
    return Record(image, boxes, classes, difficult, size=size)


def _parse_row(fields: list[str]) -> tuple[int, float, float, float, float] | None:
    """`class cx cy w h`, or `class x1 y1 x2 y2 ...` (a polygon) as its box; None if malformed."""
    try:
        values = [float(v) for v in fields]
    except ValueError:
        return None
    cls = values[0]
    if not math.isfinite(cls) or cls != int(cls):
        return None
    if len(values) == 5:
        return int(cls), *values[1:]
    if len(values) >= 7 and len(values) % 2 == 1:
        xs, ys = values[1::2], values[2::2]
        x1, x2, y1, y2 = min(xs), max(xs), min(ys), max(ys)
        return int(cls), (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
    return None


def _yaml_split(path: Path, split: str) -> tuple[list[Path], ClassNames]:
    """The images of a split and the names a data YAML gives."""
    config = load_yaml(path)
    base = yaml_base(path, config)
    entry = config.get(split)
    if not entry:
        available = [key for key in ("train", "val", "test") if config.get(key)]
        raise ValueError(f"{path}: no {split!r} entry; available splits: {available or 'none'}")
    images = []
    for item in entry if isinstance(entry, list) else [entry]:
        images += _images_of(resolve_path(base, item))
    return images, _yaml_names(config, path, base)


def _yaml_names(config: dict, path: Path, base: Path) -> ClassNames:
    names = config.get("names")
    if names is None:
        return None
    if isinstance(names, str):
        return resolve_path(base, names)
    if isinstance(names, dict):
        if set(names) != set(range(len(names))):
            raise ValueError(f"{path}: names ids must be 0..{len(names) - 1}, got {list(names)}")
        return [str(names[k]) for k in range(len(names))]
    if isinstance(names, list):
        return [str(name) for name in names]
    raise ValueError(f"{path}: names must be a list, an {{id: name}} mapping or a names file")


def _images_of(location: Path) -> list[Path]:
    """The images a split entry names: a folder (searched recursively), a list file or an image."""
    if location.is_dir():
        found = [
            Path(folder, name)
            for folder, _, files in os.walk(location)
            for name in files
            if Path(name).suffix.lower() in IMAGE_SUFFIXES
        ]
        return sorted(found)
    if location.is_file() and location.suffix.lower() in IMAGE_SUFFIXES:
        return [location]
    if location.is_file():
        lines = read_text(location).splitlines()
        return [resolve_path(location.parent, line.strip()) for line in lines if line.strip()]
    raise FileNotFoundError(f"YOLO split images not found: {location}")


def _root_split(root: Path, split: str) -> list[Path]:
    folder = root / "images"
    if not folder.is_dir():
        raise FileNotFoundError(f"{root}: no images/ folder")
    if (folder / split).is_dir():
        return _images_of(folder / split)
    splits = sorted(p.name for p in folder.iterdir() if p.is_dir())
    flat = any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir() if p.is_file())
    if splits or not flat:
        raise FileNotFoundError(
            f"{root}: no images/{split}/ folder; available splits: {splits or 'none'}"
        )
    return _images_of(folder)


def _names_file(location: Path, split: str) -> Path:
    root = location if location.is_dir() else location.parent
    candidates = [root / name for name in _NAMES_FILES] + [root / "labels" / split / "classes.txt"]
    found = next((path for path in candidates if path.is_file()), None)
    if found is None:
        raise FileNotFoundError(
            f"{location}: no class names; pass class_names, or add names: to the data YAML or "
            f"one of {[str(p.relative_to(root)) for p in candidates]}"
        )
    return found

"""Converting a data set between formats: anything `load_dataset` reads into YOLO, VOC or COCO.

`convert_dataset(src, to, output)` reads every split of the source (or those asked for) with
`load_dataset` and writes them in the layout each tool reads natively, and that `load_dataset`
reads back:

- `yolo`: `images/<split>/<image>`, `labels/<split>/<stem>.txt` (`class cx cy w h`, normalised to
  the image's size, 6 decimals) and `data.yaml` (absolute `path:`, one key per split,
  `names:`), the Ultralytics layout: its trainer takes the `data.yaml` as it is and finds each
  label by replacing the last `/images/` of the image's path by `/labels/`;
- `voc`: `VOC2007/{JPEGImages, Annotations, ImageSets/Main/<split>.txt}` and `VOC2007/classes.txt`,
  boxes in VOC's 1-based inclusive integer pixels (the inverse of `read_voc`'s reading), with
  `<difficult>` kept;
- `coco`: `annotations/instances_<split>.json` and the images in `<split>/` beside `annotations/`
  (where `read_coco` looks by default), `bbox` as `[x, y, width, height]`, `area`, `iscrowd` from
  the difficult flags, category ids 1..C in class order.

Images are copied as they are (no re-encoding, so a PNG stays a PNG; `read_voc` takes any image
suffix in `JPEGImages/`), or hard-linked with `link=True` where the file system allows it. Every
file is written atomically, and a `attnyolo_convert.json` manifest marks the folder as a
conversion's, which is the only kind of non-empty folder a conversion replaces (with
`overwrite=True`).

What a format cannot hold, or what had to change on the way, is reported in the returned
`ConversionReport`'s `notes` (and counted in its `counts`): difficult boxes written to YOLO as
ordinary boxes (or dropped with `drop_difficult=True`), fractional boxes rounded to VOC's whole
pixels, boxes clipped to their image, image sizes read from the file header, images without
boxes, images renamed because their names collide, and the bad samples the reader reported
(its `DatasetWarning`s: images skipped and why).
"""

from __future__ import annotations

import filecmp
import hashlib
import json
import os
import re
import shutil
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import yaml

from attnyolo.data._common import (
    ClassNames,
    DatasetWarning,
    counted,
    image_size,
    load_yaml,
    read_class_names,
    resolve_path,
    yaml_base,
)
from attnyolo.data.datasets import DataSpec, load_dataset
from attnyolo.data.map_out import is_map_out
from attnyolo.data.records import Dataset, Record
from attnyolo.data.voc import is_voc_root, voc_roots
from attnyolo.data.yolo import is_yolo_root, is_yolo_yaml
from attnyolo.utils import atomic_path, atomic_write

FORMATS = ("yolo", "voc", "coco")
MANIFEST = "attnyolo_convert.json"

# Splits in this order first, then any others alphabetically.
_SPLIT_ORDER = ("train", "val", "trainval", "test")
# Keys of our data YAML that are not splits (as in attnyolo.data.datasets).
_NOT_SPLITS = ("format", "path", "names", "nc", "download")
# A split name becomes a folder and file name in every format: keep it plain. No "_", which
# read_coco's default image folder (`instances_<split>.json` -> `<split>/`) splits at.
_SPLIT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*")
# Pixels a box may move before clipping or rounding counts (as the readers' clip tolerance):
# normalised YOLO labels read back a few ten-thousandths of a pixel off.
_TOLERANCE = 0.01
# How many of the reader's messages of each fault the notes repeat (`reader_warnings` has all).
_READER_LINES = 3


@dataclass
class SplitSummary:
    """One converted split: `name` in the output, `source` its name in the source, the images and
    boxes written, and `empty` images written without boxes."""

    name: str
    source: str
    images: int = 0
    boxes: int = 0
    empty: int = 0


@dataclass
class ConversionReport:
    """What `convert_dataset` wrote and what it could not carry over.

    Attributes:
        source: the source as given.
        format: "yolo", "voc" or "coco".
        output: the output folder.
        data_file: what a tool is pointed at: `data.yaml` (yolo), the `VOC2007` root (voc) or the
            `annotations/` folder (coco).
        class_names: the classes, in the order of the written ids.
        splits: one `SplitSummary` per split, in order.
        notes: what changed or could not be carried over, one line each (see `lines`).
        counts: the same as numbers, per unique source image (an image in two splits counts
            once): `difficult` (difficult boxes kept), `difficult_dropped`, `clipped` (boxes
            moved into their image by more than 0.01 px), `clipped_dropped` (left without area),
            `rounded` (boxes moved by VOC's integer rounding by more than 0.01 px), `widened`
            (boxes under a pixel made one pixel wide for VOC), `size_from_header`, `unreadable`
            (images skipped), `empty`, `renamed`, `repeated` (an image listed twice in a split),
            `link_fallback` (copied where a hard link failed), `reader_warnings`.
        reader_warnings: every `DatasetWarning` the reader gave, as `(split, fault, message)`.
        renamed: `(source image, output name)` of every image renamed.
        skipped: `(source image, why)` of the images the conversion itself skipped (those the
            reader skipped are in `reader_warnings`).
        largest_rounding: the largest shift of a box side by VOC's rounding, in pixels.
    """

    source: str
    format: str
    output: Path
    data_file: Path
    class_names: list[str]
    splits: list[SplitSummary] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    reader_warnings: list[tuple[str, str, str]] = field(default_factory=list)
    renamed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    largest_rounding: float = 0.0

    def lines(self) -> list[str]:
        """One line per split (images, boxes), then the notes."""
        out = []
        for split in self.splits:
            renamed = f" (from {split.source})" if split.source != split.name else ""
            empty = f", {split.empty} without boxes" if split.empty else ""
            out.append(
                f"{split.name}{renamed}: {counted(split.images, 'image')}, "
                f"{counted(split.boxes, 'box')}{empty}"
            )
        return out + [f"note: {note}" for note in self.notes]


@dataclass
class _Image:
    """A source image made ready to write: its boxes clipped, rounded where the format needs it."""

    source: Path
    key: tuple[Path, str]  # the source and a digest of its boxes: what is written once
    size: tuple[int, int]  # (height, width)
    boxes: np.ndarray  # (K, 4) float64 continuous pixels (VOC: the integer VOC box, as float)
    classes: np.ndarray
    difficult: np.ndarray
    image_id: object


def convert_dataset(
    src: DataSpec,
    to: str,
    output: str | os.PathLike,
    splits: Sequence[str] | None = None,
    classes: ClassNames = None,
    link: bool = False,
    *,
    drop_difficult: bool = False,
    overwrite: bool = False,
) -> ConversionReport:
    """Converts a data set that `load_dataset` reads into YOLO, VOC or COCO (module docstring).

    Args:
        src: the source, in any form `load_dataset` takes (a VOC root or comma-joined roots, a
            COCO root or instances JSON, a YOLO data YAML or root, an annotation-lines file, our
            data YAML).
        to: "yolo", "voc" or "coco".
        output: the folder to write; it must be new, empty, or (with `overwrite`) an earlier
            conversion's.
        splits: the splits to carry, each a source split name or `SOURCE=OUTPUT` to rename it
            (`trainval=train`); None for every split the source has (VOC: the files of
            `ImageSets/Main/`; COCO root: its `instances_<split>*.json`; YOLO: the YAML's train,
            val and test, or the folders of `images/`; our data YAML: its split keys). A source
            of one split (a COCO JSON, a lines file, a flat YOLO root) takes at most one name,
            the output split's (default: from the file name, `instances_val2017.json` -> val,
            `2007_train.txt` -> train, else train).
        classes: class names (a list or a names file) for every split; None for the names the
            source gives: a VOC root's `classes.txt` (as `generate_shapes` and this function
            write), a lines file's `classes.txt` or `<year>_classes.txt` beside it, else the
            reader's names (the sorted union when the splits' names differ).
        link: hard-link the images instead of copying them (copied where linking fails, e.g.
            across file systems).
        drop_difficult: leave difficult boxes out (by default they are kept: VOC's difficult
            flag, COCO's iscrowd; YOLO has no flag and gets them as ordinary boxes).
        overwrite: replace an earlier conversion in `output`.

    Returns:
        A `ConversionReport`.

    Raises:
        FileNotFoundError: a missing source, split or names file (named).
        FileExistsError: `output` is not empty and not an earlier conversion, or is one and
            `overwrite` is False.
        ValueError: an unknown format, a bad split name, a source of no known form, or one that
            is not convertible (a map_out folder has no images).
    """
    if to not in FORMATS:
        raise ValueError(f"unknown output format {to!r}; choose from {', '.join(FORMATS)}")
    output = Path(os.path.expanduser(os.fspath(output))).absolute()
    _check_not_inside(src, output)
    previous = _check_output(output, overwrite)
    plan, names, names_note = _plan(src, splits, classes)

    report = ConversionReport(
        source=_describe_source(src),
        format=to,
        output=output,
        data_file=output,
        class_names=[],
    )
    datasets = {}
    for source_split, split in plan:
        datasets[split] = _read(src, source_split, split, names, report)
    names = _common_names(datasets, names)
    report.class_names = names
    if names_note:
        report.notes.append(names_note)

    # An image in several splits (VOC's train and trainval) is prepared and counted once, unless
    # its boxes differ between them (two COCO files may annotate one image differently).
    prepared: dict[tuple[Path, str], _Image | None] = {}
    members: dict[str, list[_Image]] = {}
    for (source_split, split), dataset in zip(plan, datasets.values(), strict=True):
        summary = SplitSummary(split, source_split)
        images, seen = [], set()
        for record in _remap(dataset, names):
            path = Path(os.path.abspath(record.image))
            if path in seen:
                report.counts["repeated"] += 1
                continue
            seen.add(path)
            key = (path, _digest(record))
            if key not in prepared:
                prepared[key] = _prepare(record, key, to, drop_difficult, report)
            image = prepared[key]
            if image is None:
                continue
            images.append(image)
            summary.images += 1
            summary.boxes += len(image.boxes)
            summary.empty += not len(image.boxes)
        report.splits.append(summary)
        members[split] = images

    if previous:
        _remove_previous(output, previous)
    output.mkdir(parents=True, exist_ok=True)
    # What this conversion writes, listed before anything is: an interrupted conversion is
    # still removed whole by the next one's overwrite.
    entries = {"yolo": ["images", "labels", "data.yaml"], "voc": ["VOC2007"]}.get(
        to, ["annotations", *members]
    )
    _write_manifest(output, report, entries, complete=False)
    writer = {"yolo": _write_yolo, "voc": _write_voc, "coco": _write_coco}[to]
    writer(output, members, names, link, report)
    _write_manifest(output, report, entries, complete=True)
    report.notes += _notes(report, to, link)
    return report


def source_splits(src: DataSpec) -> list[str] | None:
    """The splits a source has (see `convert_dataset`), or None for a source of one split."""
    return _source_splits(src)


def format_conversion(report: ConversionReport) -> str:
    """The report's lines and where the output's data file is, as `attnyolo data convert`
    prints them."""
    return "\n".join([*report.lines(), f"data: {report.data_file}"])


# --- the source ------------------------------------------------------------------------------


def _describe_source(src: DataSpec) -> str:
    if isinstance(src, str | os.PathLike):
        return os.fspath(src)
    return ",".join(os.fspath(item) for item in src)


def _source_path(src: DataSpec) -> Path | None:
    """The source as one existing path, or None (several VOC roots)."""
    if not isinstance(src, str | os.PathLike):
        return None
    path = Path(os.path.expanduser(os.fspath(src)))
    return path if path.exists() else None


def _source_splits(src: DataSpec) -> list[str] | None:
    path = _source_path(src)
    if path is None or is_voc_root(path):
        if path is None and isinstance(src, str | os.PathLike) and "," not in os.fspath(src):
            raise FileNotFoundError(f"data set not found: {src}")
        return _voc_splits(src)
    if _coco_files(path):
        return _ordered(dict.fromkeys(_coco_split_name(p) for p in _coco_files(path)))
    if is_yolo_root(path):
        found = [path / n for n in ("data.yaml", "dataset.yaml") if (path / n).is_file()]
        if found:
            return _yaml_splits(found[0])
        folders = sorted(p.name for p in (path / "images").iterdir() if p.is_dir())
        return _ordered(folders) if folders else None
    if is_map_out(path):
        raise ValueError(
            f"{path}: a map_out folder holds ground truth but no images; nothing to convert"
        )
    if path.is_file() and path.suffix.lower() in (".yaml", ".yml"):
        return _yaml_splits(path)
    if path.is_file() and path.suffix.lower() in (".json", ".txt"):
        return None
    raise ValueError(f"{path}: not a data set form that load_dataset knows")


def _voc_splits(src: DataSpec) -> list[str]:
    common = None
    for voc in voc_roots(src):
        folder = voc / "ImageSets" / "Main"
        # Class-specific files (aeroplane_train.txt) are not splits.
        found = {p.stem for p in folder.glob("*.txt") if "_" not in p.stem}
        common = found if common is None else common & found
    if not common:
        raise FileNotFoundError(f"{_describe_source(src)}: no split file in ImageSets/Main/")
    return _ordered(common)


def _coco_files(path: Path) -> list[Path]:
    return sorted((path / "annotations").glob("instances_*.json")) if path.is_dir() else []


def _coco_split_name(path: Path) -> str:
    """`instances_train2017.json` -> train (as `coco_split_file` finds it)."""
    return re.sub(r"\d{4}$", "", path.stem[len("instances_") :]) or path.stem


def _yaml_splits(path: Path) -> list[str]:
    config = load_yaml(path)
    if "format" in config:
        keys = [key for key, value in config.items() if key not in _NOT_SPLITS and value]
    elif is_yolo_yaml(config):
        # Ultralytics' train, val and test, and any other key naming images that exist (the
        # trainval of a VOC conversion); not metadata such as download: or kpt_shape:.
        base = yaml_base(path, config)
        ultralytics = [key for key in ("train", "val", "test") if config.get(key)]
        others = [
            key
            for key, value in config.items()
            if key not in (*_NOT_SPLITS, "train", "val", "test") and _names_images(base, value)
        ]
        keys = ultralytics + others
    else:
        raise ValueError(
            f"{path}: a YAML with neither a format: key (attnyolo data YAML) nor names: and "
            "train:/val: keys (YOLO data YAML)"
        )
    if not keys:
        raise ValueError(f"{path}: no split entry")
    return _ordered(keys)


def _names_images(base: Path, value: object) -> bool:
    """Whether a YOLO YAML value is a split entry: a path or paths of images that exist."""
    items = value if isinstance(value, list) else [value]
    return bool(items) and all(
        isinstance(item, str) and resolve_path(base, item).exists() for item in items
    )


def _ordered(splits) -> list[str]:
    splits = list(splits)
    known = [s for s in _SPLIT_ORDER if s in splits]
    return known + sorted(s for s in splits if s not in _SPLIT_ORDER)


def _single_split_name(src: DataSpec) -> str:
    """A one-split source's split, from its file name (`instances_val2017` -> val)."""
    stem = Path(os.fspath(src)).stem.lower()
    stem = re.sub(r"^instances_", "", stem)
    stem = re.sub(r"^\d{4}_", "", stem)
    stem = re.sub(r"\d{4}$", "", stem)
    return stem if stem in _SPLIT_ORDER else "train"


def _plan(
    src: DataSpec, splits: Sequence[str] | None, classes: ClassNames
) -> tuple[list[tuple[str, str]], list[str] | None, str]:
    """`[(source split, output split)]`, the class names to read with, and a note on where the
    names came from."""
    available = _source_splits(src)
    if isinstance(splits, str):
        splits = [splits]
    pairs = []
    for item in splits or []:
        source, _, out = str(item).partition("=")
        pairs.append((source.strip(), (out or source).strip()))
    if available is None:  # one split
        if len(pairs) > 1:
            raise ValueError(
                f"{_describe_source(src)} holds one split; name at most one output split, "
                f"got {[out for _, out in pairs]}"
            )
        name = pairs[0][1] if pairs else _single_split_name(src)
        pairs = [(name, name)]
    elif not pairs:
        pairs = [(split, split) for split in available]
    else:
        missing = [source for source, _ in pairs if source not in available]
        if missing:
            raise FileNotFoundError(
                f"{_describe_source(src)}: no split {', '.join(map(repr, missing))}; "
                f"available splits: {available}"
            )
    outs = [out for _, out in pairs]
    for out in outs:
        if not _SPLIT_NAME.fullmatch(out) or out == "annotations":
            raise ValueError(
                f"split name {out!r} cannot be a folder and file name in every format (letters, "
                "digits, '-' and '.'; not 'annotations'): rename it with --split SOURCE=NAME"
            )
    repeated = sorted({out for out in outs if outs.count(out) > 1})
    if repeated:
        raise ValueError(f"output split names given twice: {repeated}")

    names = read_class_names(classes)
    note = ""
    if names is None:
        found = _names_file(src)
        if found is not None:
            names = read_class_names(found)
            note = f"class names from {found}"
    return pairs, names, note


def _names_file(src: DataSpec) -> Path | None:
    """`classes.txt` in a VOC root, or beside a lines file (also `<year>_classes.txt`)."""
    path = _source_path(src)
    if path is None:
        return None
    if is_voc_root(path):
        roots = voc_roots(path)
        candidates = [roots[0] / "classes.txt"] if len(roots) == 1 else []
    elif path.is_file() and path.suffix.lower() == ".txt":
        year = re.match(r"(\d{4})_", path.name)
        candidates = [path.parent / f"{year[1]}_classes.txt"] if year else []
        candidates.append(path.parent / "classes.txt")
    else:
        return None
    return next((p for p in candidates if p.is_file() and p != path), None)


def _read(
    src: DataSpec, source_split: str, split: str, names: list[str] | None, report: ConversionReport
) -> Dataset:
    """One split by `load_dataset`, its `DatasetWarning`s kept in the report instead of shown."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DatasetWarning)
        dataset = load_dataset(src, source_split, names)
    for warning in caught:
        if issubclass(warning.category, DatasetWarning):
            message = warning.message
            report.reader_warnings.append((split, message.fault, str(message)))
        else:  # not ours to swallow
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    return dataset


def _common_names(datasets: dict[str, Dataset], names: list[str] | None) -> list[str]:
    if names is not None:
        return names
    lists = [dataset.class_names for dataset in datasets.values()]
    if all(found == lists[0] for found in lists):
        return list(lists[0])
    # VOC names each split's classes from its own XMLs: take them all.
    return sorted({name for found in lists for name in found})


def _remap(dataset: Dataset, names: list[str]) -> list[Record]:
    if dataset.class_names == names:
        return dataset.records
    index = np.array([names.index(name) for name in dataset.class_names], np.int64)
    return [replace(r, classes=index[r.classes]) for r in dataset.records]


def _check_not_inside(src: DataSpec, output: Path) -> None:
    """The output must not hold the source (replacing it would delete the source's files)."""
    path = _source_path(src)
    if path is not None and path.resolve().is_relative_to(output.resolve()):
        raise ValueError(f"the output folder {output} holds the source {path}; choose another")


# --- the boxes -------------------------------------------------------------------------------


def _digest(record: Record) -> str:
    data = b"".join(
        np.ascontiguousarray(a).tobytes() for a in (record.boxes, record.classes, record.difficult)
    )
    return hashlib.sha1(data).hexdigest()


def _prepare(
    record: Record, key: tuple[Path, str], to: str, drop_difficult: bool, report
) -> _Image | None:
    """The record's boxes as the output format will hold them, counting what changed; None for
    an image whose size is unknown and whose header cannot be read (skipped)."""
    counts, size = report.counts, record.size
    if size is None:
        try:
            size = image_size(record.image)
        except OSError as e:
            counts["unreadable"] += 1
            report.skipped.append((str(record.image), f"cannot read the image header ({e})"))
            return None
        counts["size_from_header"] += 1
    height, width = size
    boxes = record.boxes.astype(np.float64)
    classes, difficult = record.classes, record.difficult
    if len(boxes):
        clipped = np.clip(boxes, 0.0, [width, height, width, height])
        moved = (np.abs(clipped - boxes) > _TOLERANCE).any(axis=1)
        empty = (clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1])
        counts["clipped"] += int(moved.sum())
        counts["clipped_dropped"] += int(empty.sum())
        boxes, classes, difficult = clipped[~empty], classes[~empty], difficult[~empty]
    if drop_difficult:
        counts["difficult_dropped"] += int(difficult.sum())
        boxes, classes, difficult = boxes[~difficult], classes[~difficult], difficult[~difficult]
    else:
        counts["difficult"] += int(difficult.sum())
    if to == "voc" and len(boxes):
        boxes = _voc_pixels(boxes, width, height, report)
    counts["empty"] += not len(boxes)
    return _Image(key[0], key, (height, width), boxes, classes, difficult, record.image_id)


def _voc_pixels(boxes: np.ndarray, width: int, height: int, report) -> np.ndarray:
    """Continuous boxes rounded to the nearest pixel corners (each side moves by at most half a
    pixel), at least one pixel wide and high, still as continuous `x1, y1, x2, y2`: the VOC box
    is `x1 + 1, y1 + 1, x2, y2`."""
    rounded = np.floor(boxes + 0.5)
    shift = np.abs(rounded - boxes).max(axis=1)
    report.counts["rounded"] += int((shift > _TOLERANCE).sum())
    report.largest_rounding = max(report.largest_rounding, float(shift.max()))
    thin = (rounded[:, 2] <= rounded[:, 0]) | (rounded[:, 3] <= rounded[:, 1])
    for low, high, limit in ((0, 2, width), (1, 3, height)):
        narrow = rounded[:, high] <= rounded[:, low]
        rounded[narrow, high] = rounded[narrow, low] + 1
        over = rounded[:, high] > limit
        rounded[over, high] = limit
        rounded[over, low] = limit - 1
    report.counts["widened"] += int(thin.sum())
    return rounded


def _notes(report: ConversionReport, to: str, link: bool) -> list[str]:
    counts, notes = report.counts, []
    if counts["difficult_dropped"]:
        notes.append(
            f"{counted(counts['difficult_dropped'], 'difficult box')} left out (--drop-difficult)"
        )
    elif counts["difficult"] and to == "yolo":
        notes.append(
            f"YOLO labels have no difficult flag: {counted(counts['difficult'], 'difficult box')} "
            "written as ordinary boxes (--drop-difficult leaves them out)"
        )
    elif counts["difficult"] and to == "coco":
        notes.append(
            f"{counted(counts['difficult'], 'difficult box')} written with iscrowd=1, COCO's "
            "ignore regions (COCO evaluation lets one match many detections)"
        )
    if counts["rounded"]:
        notes.append(
            f"VOC boxes are whole pixels: {counted(counts['rounded'], 'box')} with fractional "
            "coordinates rounded to the nearest pixel (largest shift "
            f"{report.largest_rounding:.2f} px; rounding never moves a side by more than 0.5 px)"
        )
    if counts["widened"]:
        notes.append(
            f"{counted(counts['widened'], 'box')} under a pixel wide or high made one pixel "
            "(VOC's smallest box)"
        )
    if counts["clipped"]:
        dropped = counts["clipped_dropped"]
        extra = f"; {dropped} wholly outside, dropped" if dropped else ""
        notes.append(
            f"{counted(counts['clipped'], 'box')} sticking out of their image clipped to it{extra}"
        )
    elif counts["clipped_dropped"]:
        notes.append(f"{counted(counts['clipped_dropped'], 'box')} outside their image dropped")
    if counts["unreadable"]:
        examples = "; ".join(f"{image}: {why}" for image, why in report.skipped[:3])
        notes.append(
            f"{counted(counts['unreadable'], 'image')} of unknown size with an unreadable file "
            f"header skipped: {examples}{', ...' if len(report.skipped) > 3 else ''}"
        )
    if counts["size_from_header"]:
        notes.append(
            f"{counted(counts['size_from_header'], 'image')} without a known size in the source: "
            "size read from the image file's header"
        )
    if counts["empty"]:
        how = {
            "yolo": "empty label files",
            "voc": "XMLs without objects",
            "coco": "image entries without annotations",
        }[to]
        notes.append(f"{counted(counts['empty'], 'image')} without boxes written as {how}")
    if counts["repeated"]:
        notes.append(
            f"{counted(counts['repeated'], 'image')} listed twice in a split written once "
            "(the first listing's boxes)"
        )
    if counts["link_fallback"]:
        notes.append(
            f"{counted(counts['link_fallback'], 'image')} copied: a hard link was refused "
            "(another file system?)"
        )
    elif link:
        notes.append("images hard-linked: writing into them changes the source's files")
    if report.renamed:
        examples = "; ".join(f"{a} -> {b}" for a, b in report.renamed[:3])
        more = ", ..." if len(report.renamed) > 3 else ""
        notes.append(
            f"{counted(len(report.renamed), 'image')} renamed, their file names taken by other "
            f"images (or holding white space, for VOC): {examples}{more}"
        )
    notes += _reader_notes(report)
    if to == "yolo":
        present = {split.name for split in report.splits}
        if not {"train", "val"} <= present:
            notes.append(
                "data.yaml has no "
                + " or ".join(repr(s) for s in ("train", "val") if s not in present)
                + " split, which Ultralytics needs to train: rename splits with --split "
                "SOURCE=NAME (e.g. --split trainval=train --split test=val)"
            )
    return notes


def _reader_notes(report: ConversionReport) -> list[str]:
    """The reader's messages, each once (an image in two splits is reported by both reads): a
    few examples of each fault, then each split's summary. The per-image "no boxes" messages are
    left to the empty-image note."""
    examples: dict[str, list[str]] = {}
    summaries, shown = [], set()
    for split, fault, message in report.reader_warnings:
        if fault == "no boxes" or message in shown:
            continue
        shown.add(message)
        report.counts["reader_warnings"] += 1
        if fault == "summary":
            summaries.append(f"reader ({split}): {message}")
        else:
            examples.setdefault(fault, []).append(f"reader ({split}): {message}")
    notes = []
    for fault, lines in examples.items():
        notes += lines[:_READER_LINES]
        if len(lines) > _READER_LINES:
            notes.append(
                f"reader: {len(lines) - _READER_LINES} more {fault!r} messages (the report's "
                "reader_warnings holds them all)"
            )
    return notes + summaries


# --- the output ------------------------------------------------------------------------------


def _check_output(output: Path, overwrite: bool) -> list[str]:
    """Refuses a non-empty folder that is not an earlier conversion, or is one without
    `overwrite`; returns the earlier conversion's entries to remove (none for a new folder)."""
    if output.exists() and not output.is_dir():
        raise FileExistsError(f"{output}: exists and is not a folder")
    if not output.is_dir() or not any(output.iterdir()):
        return []
    manifest = output / MANIFEST
    try:
        previous = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        previous = None
    if not isinstance(previous, dict) or previous.get("tool") != "attnyolo data convert":
        raise FileExistsError(
            f"{output} is not empty and was not written by attnyolo data convert (no {MANIFEST}); "
            "choose an empty or new folder"
        )
    if not overwrite:
        raise FileExistsError(
            f"{output} holds an earlier conversion; pass --overwrite (overwrite=True) to replace it"
        )
    entries = [str(e) for e in previous.get("entries", []) if _plain_entry(str(e))]
    return [*entries, MANIFEST]


def _plain_entry(name: str) -> bool:
    return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..")


def _remove_previous(output: Path, entries: list[str]) -> None:
    for name in entries:
        path = output / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _write_manifest(output: Path, report, entries: list[str], complete: bool) -> None:
    data = {
        "tool": "attnyolo data convert",
        "source": report.source,
        "format": report.format,
        "splits": {s.name: s.source for s in report.splits},
        "entries": entries,
        "complete": complete,
    }
    atomic_write(output / MANIFEST, json.dumps(data, indent=2) + "\n")


def _place(source: Path, target: Path, link: bool, counts: Counter) -> None:
    """Copies (or hard-links) an image atomically: a temporary name in the target's folder, then
    a rename."""
    if link:
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.link")
        temporary.unlink(missing_ok=True)
        try:
            os.link(source, temporary)
            os.replace(temporary, target)
            return
        except OSError:
            temporary.unlink(missing_ok=True)
            counts["link_fallback"] += 1
    try:
        with atomic_path(target) as temporary:
            shutil.copyfile(source, temporary)
    except FileNotFoundError:
        raise FileNotFoundError(f"image not found: {source}") from None


class _Names:
    """Output file names in one folder: an image keeps its file name unless its stem is taken
    by another image (stems, not names: a label or annotation file is named after the stem);
    it then becomes `<stem>__<parent folder>`, else `<stem>__<hash of its path and boxes>`.

    An image that is the same as the one holding its stem (the same bytes and boxes: the copies
    of one image in two split folders, as `train/` and `trainval/` of a converted VOC set) shares
    its name instead: written once.
    """

    def __init__(self, report: ConversionReport, plain: bool = False):
        self.report = report
        self.plain = plain  # no white space (VOC's ImageSets files split lines at it)
        self.taken: dict[str, list[_Image]] = {}
        self.given: dict[tuple[Path, str], str] = {}

    def __call__(self, image: _Image) -> str:
        if image.key in self.given:
            return self.given[image.key]
        source = image.source
        stem = re.sub(r"\s", "_", source.stem) if self.plain else source.stem
        for other in self.taken.get(stem.casefold(), []):
            if other.source.suffix == source.suffix and _same_image(other, image):
                self.given[image.key] = self.given[other.key]
                return self.given[image.key]
        digest = hashlib.sha1(repr(image.key).encode()).hexdigest()[:8]
        for candidate in (stem, f"{stem}__{source.parent.name}", f"{stem}__{digest}"):
            if candidate.casefold() not in self.taken:
                break
        self.taken[candidate.casefold()] = [image]
        self.taken.setdefault(stem.casefold(), []).append(image)
        name = candidate + source.suffix
        self.given[image.key] = name
        if name != source.name:
            self.report.renamed.append((str(source), name))
            self.report.counts["renamed"] += 1
        return name


def _same_image(a: _Image, b: _Image) -> bool:
    """The same boxes and the same file contents."""
    same_boxes = (
        a.size == b.size
        and np.array_equal(a.boxes, b.boxes)
        and np.array_equal(a.classes, b.classes)
        and np.array_equal(a.difficult, b.difficult)
    )
    try:
        return same_boxes and filecmp.cmp(a.source, b.source, shallow=False)
    except OSError:
        return False


def _write_yolo(
    output: Path, members: dict[str, list[_Image]], names: list[str], link: bool, report
) -> None:
    for split, images in members.items():
        namer = _Names(report)
        for image in images:
            name = namer(image)
            _place(image.source, output / "images" / split / name, link, report.counts)
            height, width = image.size
            scale = np.array([width, height, width, height], np.float64)
            rows = []
            for box, cls in zip(image.boxes / scale, image.classes, strict=True):
                x1, y1, x2, y2 = box
                values = ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)
                rows.append(" ".join([str(int(cls)), *(f"{v:.6f}" for v in values)]) + "\n")
            label = output / "labels" / split / (Path(name).stem + ".txt")
            atomic_write(label, "".join(rows))
    # Ultralytics resolves a relative path: against its own datasets folder, so it is absolute.
    config = {"path": str(output)}
    config.update({split: f"images/{split}" for split in members})
    config["nc"] = len(names)
    config["names"] = list(names)
    header = f"# written by attnyolo data convert from {report.source}\n"
    atomic_write(output / "data.yaml", header + yaml.safe_dump(config, sort_keys=False))
    report.data_file = output / "data.yaml"


def _write_voc(
    output: Path, members: dict[str, list[_Image]], names: list[str], link: bool, report
) -> None:
    voc = output / "VOC2007"
    namer = _Names(report, plain=True)  # one JPEGImages/ for every split
    written: dict[str, _Image] = {}
    for split, images in members.items():
        ids = []
        for image in images:
            name = namer(image)
            stem = Path(name).stem
            ids.append(stem)
            if stem in written:
                continue
            written[stem] = image
            _place(image.source, voc / "JPEGImages" / name, link, report.counts)
            atomic_write(voc / "Annotations" / f"{stem}.xml", _voc_xml(name, image, names))
        atomic_write(voc / "ImageSets" / "Main" / f"{split}.txt", "".join(f"{i}\n" for i in ids))
    (voc / "Annotations").mkdir(parents=True, exist_ok=True)
    (voc / "JPEGImages").mkdir(parents=True, exist_ok=True)
    atomic_write(voc / "classes.txt", "".join(f"{name}\n" for name in names))
    report.data_file = voc


def _voc_xml(name: str, image: _Image, names: list[str]) -> str:
    height, width = image.size
    parts = [
        "<annotation>\n",
        "\t<folder>VOC2007</folder>\n",
        f"\t<filename>{escape(name)}</filename>\n",
        "\t<source><database>converted by attnyolo</database></source>\n",
        f"\t<size><width>{width}</width><height>{height}</height><depth>3</depth></size>\n",
        "\t<segmented>0</segmented>\n",
    ]
    for box, cls, difficult in zip(image.boxes, image.classes, image.difficult, strict=True):
        # read_voc reads xmin - 1, ymin - 1, xmax, ymax: the inverse.
        xmin, ymin, xmax, ymax = int(box[0]) + 1, int(box[1]) + 1, int(box[2]), int(box[3])
        parts.append(
            "\t<object>\n"
            f"\t\t<name>{escape(names[cls])}</name>\n"
            "\t\t<pose>Unspecified</pose>\n"
            "\t\t<truncated>0</truncated>\n"
            f"\t\t<difficult>{int(difficult)}</difficult>\n"
            f"\t\t<bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin>"
            f"<xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox>\n"
            "\t</object>\n"
        )
    parts.append("</annotation>\n")
    return "".join(parts)


def _write_coco(
    output: Path, members: dict[str, list[_Image]], names: list[str], link: bool, report
) -> None:
    categories = [{"id": k + 1, "name": name, "supercategory": ""} for k, name in enumerate(names)]
    for split, images in members.items():
        namer = _Names(report)
        ids = [image.image_id for image in images]
        keep_ids = all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
        keep_ids = keep_ids and len(set(ids)) == len(ids)
        entries, annotations = [], []
        for number, image in enumerate(images, 1):
            name = namer(image)
            # Beside annotations/, where read_coco looks for instances_<split>.json's images.
            _place(image.source, output / split / name, link, report.counts)
            image_id = image.image_id if keep_ids else number
            height, width = image.size
            entries.append({"id": image_id, "file_name": name, "width": width, "height": height})
            for box, cls, difficult in zip(
                image.boxes, image.classes, image.difficult, strict=True
            ):
                x1, y1, x2, y2 = (float(v) for v in box)
                w, h = round(x2 - x1, 4), round(y2 - y1, 4)
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_id,
                        "category_id": int(cls) + 1,
                        "bbox": [round(x1, 4), round(y1, 4), w, h],
                        "area": round(w * h, 4),
                        "iscrowd": int(difficult),
                    }
                )
        data = {
            "info": {"description": f"converted by attnyolo data convert from {report.source}"},
            "images": entries,
            "annotations": annotations,
            "categories": categories,
        }
        atomic_write(output / "annotations" / f"instances_{split}.json", json.dumps(data) + "\n")
    report.data_file = output / "annotations"

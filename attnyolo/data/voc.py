"""PASCAL VOC: `VOCdevkit/VOC2007`-style folders of one XML annotation per image."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from defusedxml import DefusedXmlException, ElementTree

from attnyolo.data._common import (
    ClassNames,
    Report,
    clean_boxes,
    counted,
    ensure_unique_ids,
    image_files,
    image_size,
    read_class_names,
    read_text,
)
from attnyolo.data.records import Dataset, Record, TextRecord

_BOX_TAGS = ("xmin", "ymin", "xmax", "ymax")


@dataclass
class _Object:
    name: str
    difficult: bool
    box: tuple[float, float, float, float]  # as written: VOC's 1-based inclusive pixels


@dataclass
class _Annotation:
    size: tuple[int, int] | None  # (height, width) from <size>, if it states one
    objects: list[_Object] = field(default_factory=list)


def read_voc(
    root: str | os.PathLike | Sequence[str | os.PathLike],
    split: str = "trainval",
    class_names: ClassNames = None,
    *,
    as_written: bool = False,
) -> Dataset:
    """Reads a PASCAL VOC split: `JPEGImages/`, `Annotations/*.xml`, `ImageSets/Main/<split>.txt`.

    Boxes become continuous pixel coordinates (VOC's 1-based inclusive `xmin, ymin, xmax, ymax`
    become `xmin - 1, ymin - 1, xmax, ymax`); `<difficult>1</difficult>` marks a box that evaluation
    ignores (absent means 0). Each image's size is read from its file header, which is trusted over
    the XML's `<size>` (a disagreement is reported). Bad samples are reported with a
    `DatasetWarning` and skipped or repaired; see `attnyolo.data.datasets`.

    Args:
        root: a `VOC2007`-style folder, a `VOCdevkit` folder holding one such folder, or several
            roots as a list or joined by commas (`VOCdevkit/VOC2007,VOCdevkit/VOC2012` for 07+12).
        split: the name of a file in `ImageSets/Main/` ("train", "val", "trainval", "test").
        class_names: the class names (a list or a names file) that class ids index. None means the
            sorted names found in this split's XMLs, which can differ between splits: pass the
            names to get the same ids in training and evaluation. Boxes of other classes are
            skipped.
        as_written: keep the boxes as the XML writes them (1-based inclusive pixels, float64,
            not clipped to the image; only non-finite or inverted boxes are dropped), in
            `TextRecord`s: the ground truth the original `get_map.py` compares, for
            `protocol="original"` evaluation. Not for training.

    Returns:
        A `Dataset` whose `source` is the root (comma-joined roots); image ids are file stems.

    Raises:
        FileNotFoundError: a missing root, split file, image folder or names file.
        ValueError: a folder that is not a VOC root, or no usable image in the split.
    """
    roots = voc_roots(root)
    names = read_class_names(class_names)
    source = ",".join(str(path) for path in roots)
    report = Report(source, split)
    found = []
    for voc in roots:
        images = _image_folder(voc)
        for stem in _split_ids(voc, split, report):
            xml = voc / "Annotations" / f"{stem}.xml"
            annotation = _read_xml(xml, report)
            if annotation is None:
                continue
            image = images.get(stem)
            if image is None:
                report.warn(xml, "missing image", f"no image {stem}.* in {voc / 'JPEGImages'}")
                continue
            try:
                size = image_size(image)
            except OSError as e:
                report.warn(image, "unreadable image", f"cannot read the image header ({e})")
                continue
            if annotation.size is not None and annotation.size != size:
                # The pixels are what the model sees; a wrong <size> is the usual fault of
                # converted sets (the boxes are still in the image's pixels).
                report.warn(
                    xml,
                    "size mismatch",
                    f"<size> says {annotation.size[1]}x{annotation.size[0]} but {image.name} is "
                    f"{size[1]}x{size[0]}; the image's size is used",
                )
            found.append((xml, image, size, annotation))

    if names is None:
        names = sorted({obj.name for *_, annotation in found for obj in annotation.objects})
        if not names and found:
            raise ValueError(f"{report.name}: no object in any annotation, so no class names")
    index = {name: i for i, name in enumerate(names)}
    records = []
    for xml, image, size, annotation in found:
        objects = [obj for obj in annotation.objects if obj.name in index]
        unknown = sorted({obj.name for obj in annotation.objects} - set(index))
        if unknown:
            skipped = len(annotation.objects) - len(objects)
            detail = f"{counted(skipped, 'box')} of unknown classes {unknown} skipped"
            report.warn(xml, "unknown class", detail, skipped)
        boxes = np.array([obj.box for obj in objects], np.float64).reshape(-1, 4)
        classes = np.array([index[obj.name] for obj in objects], np.int64)
        difficult = np.array([obj.difficult for obj in objects], bool)
        if as_written:
            with np.errstate(invalid="ignore"):
                keep = np.isfinite(boxes).all(axis=1) & (boxes[:, 2:] >= boxes[:, :2]).all(axis=1)
            if not keep.all():
                report.warn(xml, "box dropped", "non-finite or inverted boxes dropped")
            records.append(
                TextRecord(
                    image,
                    boxes[keep],
                    classes[keep],
                    difficult[keep],
                    image_id=xml.stem,
                    size=size,
                )
            )
            continue
        # VOC pixels are 1-based and inclusive: xmin=1, xmax=10 covers the first ten pixels,
        # which span 0.0..10.0 in continuous coordinates, so only the minima move.
        boxes[:, :2] -= 1.0
        boxes, classes, difficult = clean_boxes(boxes, classes, difficult, size, xml, report)
        if not len(boxes):
            report.warn(xml, "no boxes", "no boxes; kept as an image without objects")
        records.append(Record(image, boxes, classes, difficult, image_id=xml.stem, size=size))
    ensure_unique_ids(records)
    report.finish(records)
    return Dataset(records, list(names), source, split)


def voc_roots(root: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """The VOC roots a `root` argument names (see `read_voc`)."""
    if isinstance(root, str | os.PathLike):
        text = os.fspath(root)
        if "," in text and not Path(text).exists():
            parts = [part.strip() for part in text.split(",") if part.strip()]
        else:
            parts = [text]
    else:
        parts = list(root)
    if not parts:
        raise ValueError("no VOC root given")
    # The same root named twice would list every image twice.
    return list(dict.fromkeys(_voc_root(Path(part)) for part in parts))


def is_voc_root(path: Path) -> bool:
    """Whether `path` is a VOC root or a VOCdevkit folder holding VOC roots."""
    if not path.is_dir():
        return False
    if (path / "Annotations").is_dir() and (path / "ImageSets").is_dir():
        return True
    return any((sub / "Annotations").is_dir() for sub in path.glob("VOC*"))


def _voc_root(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"VOC root not found: {path}")
    if (path / "Annotations").is_dir():
        return path
    years = sorted(sub for sub in path.glob("VOC*") if (sub / "Annotations").is_dir())
    if len(years) == 1:
        return years[0]
    if years:
        listed = ",".join(str(sub) for sub in years)
        raise ValueError(
            f"{path} holds {len(years)} VOC roots ({', '.join(sub.name for sub in years)}): name "
            f"one, or join several with commas ({listed})"
        )
    raise ValueError(
        f"{path}: not a VOC root (expected Annotations/, ImageSets/Main/ and JPEGImages/, or a "
        "VOCdevkit folder with one VOC*/ folder of them)"
    )


def _image_folder(voc: Path) -> dict[str, Path]:
    folder = voc / "JPEGImages"
    if not folder.is_dir():
        raise FileNotFoundError(f"{voc}: no JPEGImages/ folder")
    return image_files(folder)


def _split_ids(voc: Path, split: str, report: Report) -> list[str]:
    folder = voc / "ImageSets" / "Main"
    path = folder / f"{split}.txt"
    if not path.is_file():
        # Class-specific files (aeroplane_train.txt) are not splits.
        splits = sorted(p.stem for p in folder.glob("*.txt") if "_" not in p.stem)
        raise FileNotFoundError(
            f"{voc}: no split file {path.relative_to(voc)}; available splits: {splits or 'none'}"
        )
    lines = read_text(path).splitlines()
    ids = [line.split()[0] for line in lines if line.strip()]
    # An id is a file stem in Annotations/ and JPEGImages/: one with a path in it
    # ("../../etc/passwd") would be looked up outside the data root.
    paths = [i for i in ids if "/" in i or "\\" in i or i in (".", "..")]
    if paths:
        detail = (
            f"{counted(len(paths), 'image id')} skipped: an id is a file name in "
            f"Annotations/, not a path (e.g. {paths[0]!r})"
        )
        report.warn(path, "bad annotation", detail, len(paths))
        ids = [i for i in ids if i not in set(paths)]
    unique = list(dict.fromkeys(ids))
    if len(unique) < len(ids):
        repeated = len(ids) - len(unique)
        detail = f"{counted(repeated, 'repeated image id')} skipped"
        report.warn(path, "duplicate", detail, repeated)
    return unique


def _read_xml(path: Path, report: Report) -> _Annotation | None:
    try:
        root = ElementTree.parse(path).getroot()
    except FileNotFoundError:
        report.warn(path, "bad annotation", "annotation file missing; image skipped")
        return None
    except (ElementTree.ParseError, DefusedXmlException, OSError, ValueError, LookupError) as e:
        # ValueError: a split file's id with a NUL character makes no file name; LookupError:
        # an encoding="..." that Python does not know.
        report.warn(path, "bad annotation", f"unreadable XML ({e}); image skipped")
        return None
    annotation = _Annotation(_size(root))
    broken = 0
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        try:
            box = tuple(float(obj.find("bndbox").findtext(tag)) for tag in _BOX_TAGS)
        except (AttributeError, TypeError, ValueError):  # no <bndbox>, a missing or bad value
            box = None
        if not name or box is None:
            broken += 1
            continue
        annotation.objects.append(_Object(name, _flag(obj.findtext("difficult")), box))
    if broken:
        detail = f"{counted(broken, 'object')} without a name or <bndbox> skipped"
        report.warn(path, "bad annotation", detail, broken)
    return annotation


def _size(root) -> tuple[int, int] | None:
    try:
        width = int(float(root.findtext("size/width")))
        height = int(float(root.findtext("size/height")))
    except (TypeError, ValueError, OverflowError):  # OverflowError: an infinite size
        return None
    return (height, width) if width > 0 and height > 0 else None


def _flag(text: str | None) -> bool:
    """A VOC 0/1 tag; some tools write "true"/"false", and absent means 0."""
    text = (text or "0").strip().lower()
    return text in ("1", "true", "yes")

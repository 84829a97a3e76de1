"""Splitting a VOC folder into train, val and test, as the original `voc_annotation.py` does."""

from __future__ import annotations

import os
import random
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from attnyolo.data._common import ClassNames, read_class_names
from attnyolo.data.lines import write_annotation_lines
from attnyolo.data.records import Dataset, Record
from attnyolo.data.voc import read_voc, voc_roots
from attnyolo.utils import atomic_write

SPLITS = ("train", "val", "test")


class SmallDatasetWarning(UserWarning):
    """A split too small to train a detector well (few images, or a class with few objects)."""


def split_voc(
    root: str | os.PathLike,
    trainval_percent: float = 0.9,
    train_percent: float = 0.9,
    seed: int = 0,
    class_names: ClassNames = None,
    lines_dir: str | os.PathLike | None = None,
    min_train_images: int = 100,
    min_train_objects: int = 10,
) -> dict:
    """Writes `ImageSets/Main/{trainval,train,val,test}.txt` from the XMLs in `Annotations/`.

    The semantics are the original `voc_annotation.py`'s: of the `num` annotations,
    `int(num * trainval_percent)` drawn at random form trainval and the rest test, and
    `int(trainval * train_percent)` of trainval drawn at random form train and the rest val; the
    draws are Python's `random.sample`, seeded. One difference: the annotations are taken in
    sorted order (the original took `os.listdir` order, which differs between file systems), so
    the split depends on the seed and the file names only; on a listing that happens to be
    sorted the split is the original's. Files list ids in sorted order.

    Objects are then counted per class and split (boxes of other classes and `difficult` boxes
    left out, as the original counted them), by reading each split with `read_voc`, whose
    `DatasetWarning`s report any bad sample.

    Args:
        root: a VOC root (`Annotations/`, `JPEGImages/`) or a VOCdevkit folder holding one.
        trainval_percent: the fraction of images in trainval (the rest is test).
        train_percent: the fraction of trainval in train (the rest is val).
        seed: the seed of the random draws (the original's is 0).
        class_names: a list of names or a names file; None for the sorted names in the XMLs.
        lines_dir: where to also write the original's annotation lines, `<year>_train.txt` and
            `<year>_val.txt` (`year` from the folder name, `VOC2007` -> `2007`), with the class
            names in `<year>_classes.txt`; None writes none. Boxes are `read_voc`'s continuous
            coordinates, one pixel left of and above the original's at the top-left corner
            (see `attnyolo.data.lines`).
        min_train_images: fewer training images than this gives a `SmallDatasetWarning`.
        min_train_objects: a class with fewer training objects than this gives one too.

    Returns:
        A dict: `root`; `images` (annotations found); `counts`, images per split (`trainval`,
        `train`, `val`, `test`); `class_names`; `objects`, `{class name: {split: count}}` for
        train, val and test; `difficult`, difficult boxes per split; `warnings`, the small-set
        warnings as text; `files`, the paths written (split files, and lines files if asked).

    Raises:
        ValueError: percentages outside [0, 1], or no annotation in `Annotations/`.
    """
    for name, value in (("trainval_percent", trainval_percent), ("train_percent", train_percent)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    roots = voc_roots(root)
    if len(roots) != 1:
        raise ValueError(f"split one VOC root at a time, got {len(roots)}: {roots}")
    voc = roots[0]
    annotations = voc / "Annotations"
    stems = sorted(path.stem for path in annotations.glob("*.xml"))
    if not stems:
        raise ValueError(f"{voc}: no .xml annotation in {annotations}")

    # The original's draws exactly: indices, then a sample of that sample in its drawn order.
    num = len(stems)
    rng = random.Random(seed)
    drawn = rng.sample(range(num), int(num * trainval_percent))
    trainval, train = set(drawn), set(rng.sample(drawn, int(len(drawn) * train_percent)))
    members = {
        "trainval": [s for i, s in enumerate(stems) if i in trainval],
        "train": [s for i, s in enumerate(stems) if i in train],
        "val": [s for i, s in enumerate(stems) if i in trainval and i not in train],
        "test": [s for i, s in enumerate(stems) if i not in trainval],
    }
    files = {}
    for split, ids in members.items():
        path = voc / "ImageSets" / "Main" / f"{split}.txt"
        files[split] = str(atomic_write(path, "".join(f"{i}\n" for i in ids)))

    datasets = _read_splits(voc, {split: members[split] for split in SPLITS}, class_names)
    names = _union_names(datasets, class_names)
    objects = {name: dict.fromkeys(SPLITS, 0) for name in names}
    difficult = dict.fromkeys(SPLITS, 0)
    for split, dataset in datasets.items():
        index = np.array([names.index(name) for name in dataset.class_names], np.int64)
        for record in dataset.records:
            difficult[split] += int(record.difficult.sum())
            for cls in index[record.classes[~record.difficult]]:
                objects[names[cls]][split] += 1

    if lines_dir is not None:
        year = voc.name[3:] if voc.name.upper().startswith("VOC") and voc.name[3:] else voc.name
        for split in ("train", "val"):
            if split not in datasets:
                continue  # the original would write an empty file; an empty set reads as an error
            # Lines hold class ids, so every split file uses the same names.
            dataset = Dataset(_remap(datasets[split], names), names, datasets[split].source)
            lines = Path(lines_dir) / f"{year}_{split}.txt"
            names_path = Path(lines_dir) / f"{year}_classes.txt"
            files[f"lines_{split}"] = str(write_annotation_lines(dataset, lines, names_path))
        files["lines_classes"] = str(Path(lines_dir) / f"{year}_classes.txt")

    counts = {split: len(ids) for split, ids in members.items()}
    messages = _small_set_messages(counts["train"], objects, min_train_images, min_train_objects)
    for message in messages:
        warnings.warn(SmallDatasetWarning(f"{voc}: {message}"), stacklevel=2)
    return {
        "root": str(voc),
        "images": num,
        "counts": counts,
        "class_names": names,
        "objects": objects,
        "difficult": difficult,
        "warnings": messages,
        "files": files,
    }


def format_split_table(result: dict) -> str:
    """The images and objects per class and split of a `split_voc` result, as a text table."""
    splits = [*SPLITS, "total"]
    rows = [["images", *(result["counts"][s] for s in SPLITS), result["images"]]]
    for name, counts in result["objects"].items():
        rows.append([name, *(counts[s] for s in SPLITS), sum(counts.values())])
    totals = [sum(counts[s] for counts in result["objects"].values()) for s in SPLITS]
    rows.append(["objects", *totals, sum(totals)])
    width = max(len(str(row[0])) for row in rows + [["class"]])
    columns = [max(len(s), *(len(str(row[i + 1])) for row in rows)) for i, s in enumerate(splits)]

    def line(cells: Sequence) -> str:
        numbers = (f"{c:>{w}}" for c, w in zip(cells[1:], columns, strict=True))
        return "  ".join([f"{cells[0]:<{width}}", *numbers])

    rule = "-" * len(line(["class", *splits]))
    out = [line(["class", *splits]), rule, line(rows[0]), rule, *map(line, rows[1:-1]), rule]
    out.append(line(rows[-1]))
    return "\n".join(out)


def _read_splits(
    voc: Path, members: dict[str, list[str]], class_names: ClassNames
) -> dict[str, Dataset]:
    """Each non-empty split read with `read_voc` (an empty one would be an error there)."""
    names = read_class_names(class_names)
    return {split: read_voc(voc, split, names) for split, ids in members.items() if ids}


def _union_names(datasets: dict[str, Dataset], class_names: ClassNames) -> list[str]:
    """The given names, or the sorted union of the splits' names (each split alone may lack a
    class, so the names are not taken from any one of them)."""
    names = read_class_names(class_names)
    if names is not None:
        return names
    return sorted({name for dataset in datasets.values() for name in dataset.class_names})


def _remap(dataset: Dataset, names: list[str]) -> list[Record]:
    """The data set's records with class ids into `names` instead of its own names."""
    index = np.array([names.index(name) for name in dataset.class_names], np.int64)
    return [replace(record, classes=index[record.classes]) for record in dataset.records]


def _small_set_messages(
    train_images: int, objects: dict[str, dict[str, int]], min_images: int, min_objects: int
) -> list[str]:
    messages = []
    if not any(sum(counts.values()) for counts in objects.values()):
        messages.append(
            "no object of the given classes in any annotation: check the class names against "
            "the XMLs' <name> tags, or training learns nothing"
        )
        return messages
    if train_images < min_images:
        messages.append(
            f"only {train_images} training images (fewer than {min_images}): expect a weak "
            "detector, and train for more epochs so that it sees enough steps"
        )
    few = {name: counts["train"] for name, counts in objects.items()}
    few = {name: n for name, n in few.items() if n < min_objects}
    if few:
        listed = ", ".join(f"{name} ({n})" for name, n in sorted(few.items(), key=lambda x: x[1]))
        messages.append(
            f"classes with fewer than {min_objects} training objects: {listed}; they will be "
            "detected poorly"
        )
    return messages

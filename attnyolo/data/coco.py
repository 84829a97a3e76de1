"""COCO: an instances JSON (`images`, `annotations`, `categories`) and a folder of images."""

from __future__ import annotations

import json
import os
import re
import warnings
from collections import Counter, defaultdict
from pathlib import Path, PurePosixPath

import numpy as np

from attnyolo.data._common import (
    ClassNames,
    DatasetWarning,
    Report,
    clean_boxes,
    counted,
    image_size,
    read_class_names,
)
from attnyolo.data.records import Dataset, Record


def read_coco(
    annotation_json: str | os.PathLike,
    image_dir: str | os.PathLike | None = None,
    class_names: ClassNames = None,
    *,
    require_images: bool = True,
) -> Dataset:
    """Reads a COCO instances file.

    Categories become contiguous class ids in ascending category-id order (COCO's ids 1..90 with
    gaps become 0..79; `coco_category_ids` maps them back for writing results). `bbox` is
    `[x, y, width, height]` in continuous pixels and becomes `x, y, x + width, y + height`.
    `iscrowd=1` boxes are ignore regions, flagged `difficult`: training drops them and evaluation
    neither rewards nor penalises detections on them. Images without annotations are kept as
    images without objects (counted in the summary, not warned per image: COCO has many).

    Args:
        annotation_json: the instances JSON.
        image_dir: the images' folder. None means the folder named after the JSON's split next to
            the JSON's folder (`annotations/instances_val2017.json` -> `val2017/`), else a folder
            of that name beside the JSON, else the JSON's own folder.
        class_names: None for the categories' names. Given names (a list or a names file) are
            matched to categories by name; annotations of other categories are skipped. When the
            names do not all match but are as many as the categories, they are taken in
            category-id order instead (Darknet's `coco.names` says "motorbike" for "motorcycle").
        require_images: False to keep the images that are not on disk (and to need no image
            folder), for evaluating given detections: the metric needs only the annotations,
            and the image sizes the JSON states (an image without a stated size then has none,
            and its boxes are not clipped).

    Returns:
        A `Dataset` whose `source` is the JSON's path; image ids are the COCO image ids (int).

    Raises:
        FileNotFoundError: a missing JSON, image folder or names file.
        ValueError: a file that is not a COCO instances JSON, or no usable image.
    """
    path = Path(annotation_json)
    data = load_coco_json(path)
    folder = Path(image_dir) if image_dir is not None else default_image_dir(path)
    if require_images and not folder.is_dir():
        raise FileNotFoundError(f"{path}: image folder not found: {folder}")
    report = Report(str(path))
    names, category_index = _category_mapping(data["categories"], class_names, path, report)
    on_disk = set(os.listdir(folder)) if folder.is_dir() else set()

    by_image = defaultdict(list)
    annotations = [a for a in data["annotations"] if isinstance(a, dict)]
    if len(annotations) < len(data["annotations"]):
        skipped = len(data["annotations"]) - len(annotations)
        report.warn(path, "bad annotation", f"{counted(skipped, 'annotation')} not an object")
    for annotation in annotations:
        by_image[_image_id(annotation.get("image_id"))].append(annotation)
    entries = [entry for entry in data["images"] if isinstance(entry, dict)]
    image_ids = {_image_id(entry.get("id")) for entry in entries}
    orphans = sum(len(anns) for key, anns in by_image.items() if key not in image_ids)
    if orphans:
        detail = f"{counted(orphans, 'annotation')} of unlisted images skipped"
        report.warn(path, "bad annotation", detail, orphans)

    unknown: Counter[object] = Counter()
    records, seen = [], set()
    for entry in data["images"]:
        if not isinstance(entry, dict):
            report.warn(path, "bad annotation", f"image entry that is not an object: {entry!r}")
            continue
        image_id, file_name = _image_id(entry.get("id")), entry.get("file_name")
        if image_id is None or not file_name or not isinstance(file_name, str):
            report.warn(path, "bad annotation", f"image entry without id or file_name: {entry}")
            continue
        if PurePosixPath(file_name).is_absolute() or ".." in PurePosixPath(file_name).parts:
            # A file name is relative to the image folder; one that leaves it is refused.
            report.warn(
                path,
                "bad annotation",
                f"image {image_id}: file_name {file_name!r} leaves the image folder; skipped",
            )
            continue
        if image_id in seen:
            report.warn(path, "duplicate", f"image id {image_id} listed again; skipped")
            continue
        seen.add(image_id)
        image = folder / file_name
        # One listing of the folder answers for plain file names; nested ones need a stat.
        exists = file_name in on_disk if "/" not in file_name else image.is_file()
        if not exists and require_images:
            report.warn(image, "missing image", f"image {image_id} not found in {folder}; skipped")
            continue
        size = _entry_size(entry)
        if size is None and exists:
            try:
                size = image_size(image)
            except OSError as e:
                report.warn(image, "unreadable image", f"cannot read the image header ({e})")
                continue
        boxes, classes, crowd, broken = [], [], [], 0
        for annotation in by_image.get(image_id, []):
            category = annotation.get("category_id")
            if not _is_id(category) or category not in category_index:
                unknown[category if _is_id(category) else repr(category)] += 1
                continue
            try:
                if not isinstance(annotation["bbox"], list):
                    raise TypeError("bbox is not a list")
                x, y, w, h = (float(v) for v in annotation["bbox"])
            except (KeyError, TypeError, ValueError, OverflowError):
                broken += 1
                continue
            boxes.append((x, y, x + w, y + h))
            classes.append(category_index[category])
            crowd.append(bool(annotation.get("iscrowd", 0)))
        if broken:
            detail = f"{counted(broken, 'annotation')} without a valid bbox skipped"
            report.warn(image, "bad annotation", detail, broken)
        boxes, classes, crowd = clean_boxes(
            np.array(boxes, np.float64).reshape(-1, 4),
            np.array(classes, np.int64),
            np.array(crowd, bool),
            size,
            image,
            report,
        )
        if not len(boxes):
            report.count("no boxes")
        records.append(Record(image, boxes, classes, crowd, image_id=image_id, size=size))
    if unknown:
        report.warn(
            path,
            "unknown class",
            f"{counted(sum(unknown.values()), 'annotation')} of categories outside the class "
            f"names skipped (category id: count {dict(sorted(unknown.items(), key=str))})",
            sum(unknown.values()),
        )
    report.finish(records)
    return Dataset(records, names, str(path))


def coco_category_ids(
    annotation_json: str | os.PathLike | dict, class_names: ClassNames = None
) -> list[int]:
    """The COCO category id of each contiguous class id, as `read_coco` with the same arguments
    assigns them, for writing results with the original ids.

    A class name that matches no category gets an id above all the file's ids, so that results of
    such a class stay valid JSON and are ignored by COCO evaluation.
    """
    data = annotation_json if isinstance(annotation_json, dict) else None
    path = Path("<dict>") if data is not None else Path(annotation_json)
    data = data if data is not None else load_coco_json(path)
    with warnings.catch_warnings():
        # `read_coco` reports the name mismatch; saying it again here would be noise.
        warnings.simplefilter("ignore", DatasetWarning)
        names, index = _category_mapping(data["categories"], class_names, path, Report(str(path)))
    ids = [-1] * len(names)
    for category, contiguous in index.items():
        ids[contiguous] = category
    spare = max((c["id"] for c in data["categories"]), default=0) + 1
    for k, category in enumerate(ids):
        if category == -1:
            ids[k], spare = spare, spare + 1
    return ids


def load_coco_json(path: Path) -> dict:
    """A COCO instances JSON, checked for its three lists."""
    if not path.is_file():
        raise FileNotFoundError(f"COCO annotation file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    except RecursionError:
        raise ValueError(f"{path}: not a COCO instances file (JSON nested too deeply)") from None
    if not isinstance(data, dict) or not all(
        isinstance(data.get(key), list) for key in ("images", "annotations", "categories")
    ):
        raise ValueError(
            f"{path}: not a COCO instances file (needs 'images', 'annotations' and 'categories')"
        )
    return data


def default_image_dir(path: Path) -> Path:
    """`annotations/instances_val2017.json` -> `val2017/` beside `annotations/`, else beside the
    JSON, else the JSON's folder."""
    split = path.stem.rsplit("_", 1)[-1]
    for candidate in (path.parent.parent / split, path.parent / split):
        if candidate.is_dir():
            return candidate
    return path.parent


def coco_split_file(root: Path, split: str) -> Path:
    """`annotations/instances_<split><year>.json` in a COCO root, the latest year if several.

    "test" falls back to val: COCO's test-dev labels are not public, so a test split is evaluated
    on val, as is usual.
    """
    folder = root / "annotations"
    available = sorted(folder.glob("instances_*.json"))
    for wanted in (split, "val") if split == "test" else (split,):
        pattern = re.compile(rf"instances_{re.escape(wanted)}(\d{{4}})?\.json")
        matches = [p for p in available if pattern.fullmatch(p.name)]
        if matches:
            return max(matches, key=lambda p: p.name)
    raise FileNotFoundError(
        f"{root}: no annotation file for split {split!r}; available: "
        f"{[p.name for p in available] or 'none'}"
    )


def _is_id(value: object) -> bool:
    """COCO ids are integers (not booleans, which JSON keeps apart)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _image_id(value: object) -> int | str | None:
    """An image id: an integer, or a string as some converters write; else None."""
    return value if _is_id(value) or isinstance(value, str) else None


def _entry_size(entry: dict) -> tuple[int, int] | None:
    try:
        height, width = int(entry["height"]), int(entry["width"])
    except (KeyError, TypeError, ValueError, OverflowError):  # OverflowError: an infinite size
        return None
    return (height, width) if height > 0 and width > 0 else None


def _category_mapping(
    categories: list[dict], class_names: ClassNames, path: Path, report: Report
) -> tuple[list[str], dict[int, int]]:
    """Class names and `category id -> contiguous id` (see `read_coco`)."""
    for category in categories:
        if not (
            isinstance(category, dict)
            and _is_id(category.get("id"))
            and isinstance(category.get("name"), str | int | float)
        ):
            raise ValueError(f"{path}: a category needs an integer id and a name, got {category!r}")
    categories = sorted(categories, key=lambda c: c["id"])
    coco_names = [str(c["name"]) for c in categories]
    ids = [c["id"] for c in categories]
    if len(set(ids)) < len(ids):
        raise ValueError(f"{path}: category ids listed more than once in {ids}")
    names = read_class_names(class_names)
    if names is None:
        if len(set(coco_names)) < len(coco_names):
            raise ValueError(f"{path}: category names repeated in {coco_names}; pass class_names")
        return coco_names, {c["id"]: k for k, c in enumerate(categories)}
    index = {name: k for k, name in enumerate(names)}
    if all(name in index for name in coco_names) or len(names) != len(categories):
        return names, {c["id"]: index[c["name"]] for c in categories if c["name"] in index}
    renamed = [(a, b) for a, b in zip(coco_names, names, strict=True) if a != b]
    report.warn(
        path,
        "class names",
        f"the class names differ from the categories' names in {len(renamed)} places "
        f"(e.g. {renamed[:3]}); they are as many, so they are matched in category-id order",
    )
    return names, {c["id"]: k for k, c in enumerate(categories)}

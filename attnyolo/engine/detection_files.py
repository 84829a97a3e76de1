"""Detections on disk: COCO results JSON and the original scripts' per-image text files.

Reading is strict: a detection for an unknown image or class, a malformed line or entry, a box with
x2 < x1 or a non-finite value is an error that names the file and the line (or JSON entry),
because evaluating silently without it would give a wrong figure. Values are kept in float64 as
parsed: the original `get_map` compares the text's values, and a float32 round trip would move
tied scores and IoUs that sit at the threshold.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from attnyolo.data.map_out import check_box, parse_detection_line, text_files, text_lines
from attnyolo.data.records import Dataset
from attnyolo.inference.decoder import Detections
from attnyolo.utils import atomic_write


class DetectionFileError(ValueError):
    """A detections file that cannot be evaluated, with the file and line or entry named."""


def _empty() -> dict[str, list]:
    return {"boxes": [], "scores": [], "classes": []}


def _finish(collected: list[dict[str, list]]) -> list[Detections]:
    return [
        Detections(
            np.asarray(c["boxes"], np.float64).reshape(-1, 4),
            np.asarray(c["scores"], np.float64),
            np.asarray(c["classes"], np.int64),
        )
        for c in collected
    ]


def _image_index(dataset: Dataset) -> dict[str, int]:
    """Image keys that a detection may use: the record's id, and its file name with and without
    the extension (the original scripts named text files after the image id)."""
    index: dict[str, int] = {}
    for i, record in enumerate(dataset.records):
        for key in (str(record.image_id), record.image.stem, record.image.name):
            index.setdefault(key, i)
    return index


def read_coco_results(
    path: str | os.PathLike, dataset: Dataset, category_ids: Sequence[int] | None = None
) -> list[Detections]:
    """A COCO results JSON (`[{image_id, category_id, bbox: [x, y, w, h], score}]`), aligned
    with `dataset.records`. `category_ids[k]` is the id of class k (default `k + 1`)."""
    path = Path(path)
    try:
        entries = json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as e:
        raise DetectionFileError(f"{path}: cannot read: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise DetectionFileError(f"{path}:{e.lineno}:{e.colno}: malformed JSON: {e.msg}") from None
    except UnicodeDecodeError as e:
        raise DetectionFileError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    except RecursionError:
        raise DetectionFileError(f"{path}: JSON nested too deeply to be detections") from None
    if not isinstance(entries, list):
        raise DetectionFileError(f"{path}: a COCO results file is a JSON list of detections")
    category_ids = (
        list(range(1, len(dataset.class_names) + 1)) if category_ids is None else category_ids
    )
    to_class = {int(c): k for k, c in enumerate(category_ids)}
    images = _image_index(dataset)
    collected = [_empty() for _ in dataset.records]
    for n, entry in enumerate(entries):
        where = f"{path}: entry {n}"
        try:
            image_key, category = str(entry["image_id"]), entry["category_id"]
            if not isinstance(entry["bbox"], list):
                raise TypeError("bbox is not a list")
            x, y, w, h = (float(v) for v in entry["bbox"])
            score = float(entry["score"])
            if isinstance(category, list | dict):
                raise TypeError("category_id is not a number")
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise DetectionFileError(
                f"{where}: expected image_id, category_id, bbox [x, y, w, h] and score ({e!r})"
            ) from None
        if image_key not in images:
            raise DetectionFileError(f"{where}: image_id {entry['image_id']!r} is not in the data")
        if category not in to_class:
            raise DetectionFileError(
                f"{where}: category_id {category!r} is not one of the data set's {category_ids}"
            )
        box = (x, y, x + w, y + h)
        try:
            check_box(box, score, where)
        except ValueError as e:
            raise DetectionFileError(str(e)) from None
        target = collected[images[image_key]]
        target["boxes"].append(box)
        target["scores"].append(score)
        target["classes"].append(to_class[category])
    return _finish(collected)


def read_text_detections(folder: str | os.PathLike, dataset: Dataset) -> list[Detections]:
    """The original scripts' `detection-results/<image id>.txt`: one line per detection,
    `class_name score x1 y1 x2 y2` (a class name may contain spaces). An image without a file
    has no detections (`images_without_text_detections` lists them). Within an image, the lines
    keep their order, which breaks score ties as the original's stable sort does."""
    folder = Path(folder)
    files = text_files(folder)
    if not files:
        raise DetectionFileError(f"{folder}: no .txt detection files")
    images = _image_index(dataset)
    classes = {name: k for k, name in enumerate(dataset.class_names)}
    collected = [_empty() for _ in dataset.records]
    for file in files:
        if file.stem not in images:
            raise DetectionFileError(f"{file}: no image {file.stem!r} in the data")
        target = collected[images[file.stem]]
        for lineno, line in text_lines(file):
            where = f"{file}:{lineno}"
            try:
                name, score, box = parse_detection_line(line, where)
            except ValueError as e:
                raise DetectionFileError(str(e)) from None
            if name not in classes:
                raise DetectionFileError(f"{where}: unknown class {name!r}")
            target["boxes"].append(box)
            target["scores"].append(score)
            target["classes"].append(classes[name])
    return _finish(collected)


def images_without_text_detections(folder: str | os.PathLike, dataset: Dataset) -> list[str]:
    """Image ids of the records that have no `<id>.txt` in a detection-results folder."""
    stems = {file.stem for file in text_files(Path(folder))}
    return [
        str(record.image_id)
        for record in dataset.records
        if not stems & {str(record.image_id), record.image.stem, record.image.name}
    ]


def read_detections(
    path: str | os.PathLike, dataset: Dataset, category_ids: Sequence[int] | None = None
) -> list[Detections]:
    """Detections from a COCO results JSON or a folder of the original's text files."""
    path = Path(path)
    if path.is_dir():
        return read_text_detections(path, dataset)
    if not path.is_file():
        raise DetectionFileError(f"{path}: no such detections file or folder")
    return read_coco_results(path, dataset, category_ids)


def write_map_out(folder: str | os.PathLike, dataset: Dataset, detections: Sequence) -> Path:
    """The original `get_map.py`'s `map_out`: `ground-truth/<id>.txt` (`class x1 y1 x2 y2`, plus
    `difficult`) and `detection-results/<id>.txt` (`class score x1 y1 x2 y2`), for people who
    compare with it."""
    folder = Path(folder)
    names = dataset.class_names
    for record, dets in zip(dataset.records, detections, strict=True):
        if dets is None:
            continue
        stem = str(record.image_id)
        gt_lines = [
            f"{names[c]} {b[0]:.2f} {b[1]:.2f} {b[2]:.2f} {b[3]:.2f}" + (" difficult" if d else "")
            for b, c, d in zip(record.boxes, record.classes, record.difficult, strict=True)
        ]
        det_lines = [
            f"{names[c]} {s:.6f} {b[0]:.2f} {b[1]:.2f} {b[2]:.2f} {b[3]:.2f}"
            for b, s, c in zip(dets.boxes, dets.scores, dets.classes, strict=True)
        ]
        atomic_write(folder / "ground-truth" / f"{stem}.txt", "".join(f"{x}\n" for x in gt_lines))
        atomic_write(
            folder / "detection-results" / f"{stem}.txt", "".join(f"{x}\n" for x in det_lines)
        )
    return folder

"""Data sets from files: one reader per format, and `load_dataset` to name any of them at once.

Every reader is a pure function from a location (plus split and class names) to a `Dataset` of
`Record`s with boxes in continuous pixel coordinates `x1, y1, x2, y2`:

    read_voc(root, split, class_names)            PASCAL VOC folders (voc.py)
    read_coco(annotation_json, image_dir, names)  COCO instances JSON (coco.py)
    read_yolo(root_or_yaml, split, class_names)   YOLO txt labels (yolo.py)
    read_annotation_lines(path, class_names)      the original scripts' 2007_train.txt (lines.py)
    read_data_yaml(path, split, class_names)      our data YAML (below)
    read_map_out(folder, split, class_names)      the original get_map's map_out (map_out.py)

Bad samples never stop a read: a missing or unreadable image, an unreadable annotation, a box
of an unknown class, a box outside its image (clipped), a box with no area or inverted corners
(dropped), an image without boxes (kept), a stated image size that disagrees with the file (the
file wins) are each reported once per file with a `DatasetWarning` naming it (its `file` and
`fault` attributes say which and what), and a closing `DatasetWarning` counts them. Images
without boxes are only counted for COCO and YOLO, where unlabelled background images are normal.

Configuration mistakes fail at once, naming the file: a missing root, split file, names file or
image folder, or a data set left empty.

`load_dataset(spec, split, class_names)` takes any of these forms, told apart by their contents:

- a VOC root (`Annotations/` and `ImageSets/`), a VOCdevkit folder holding one, or several roots
  joined by commas (`VOCdevkit/VOC2007,VOCdevkit/VOC2012`); the split names
  `ImageSets/Main/<split>.txt`;
- a COCO instances JSON (the split is ignored), or a COCO root whose `annotations/` holds
  `instances_<split><year>.json` ("test" falls back to val, since COCO's test labels are not
  public);
- a YOLO data YAML (`names` and split keys) or a YOLO root (`images/` and `labels/`);
- an annotation-lines `.txt` (class names needed);
- the original scripts' `map_out` folder (`ground-truth/` + `detection-results/`) or its
  `ground-truth/` folder: ground truth only, with no images, so only with `require_images=False`
  (evaluating given detections);
- our data YAML, which says its format:

      format: voc                  # voc | coco | yolo | lines
      path: /data/VOCdevkit        # base of relative paths (default: this file's folder;
                                   # a relative path is relative to this file's folder)
      names: voc_classes.txt       # a list of names or a names file (needed for lines)
      train: {root: [VOC2007, VOC2012], split: trainval}
      val: VOC2007                 # read with the split named by the key: ImageSets/Main/val.txt
      test: VOC2007

  A split entry is, per format: voc, a root or a list of roots read with the key's split, or
  `{root: ..., split: ...}` for another split; coco, an instances JSON or
  `{annotations: ..., images: ...}`; lines, a lines file or a list of them, read in turn; yolo,
  the Ultralytics entry (a folder, an image-list file or a list of those; see `read_yolo`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from attnyolo.data._common import (
    ClassNames,
    DatasetWarning,
    load_yaml,
    read_class_names,
    resolve_path,
    yaml_base,
)
from attnyolo.data.coco import coco_category_ids, coco_split_file, read_coco
from attnyolo.data.lines import read_annotation_lines, write_annotation_lines
from attnyolo.data.map_out import is_map_out, read_map_out
from attnyolo.data.records import Dataset, Record
from attnyolo.data.voc import is_voc_root, read_voc
from attnyolo.data.yolo import is_yolo_root, is_yolo_yaml, read_yolo

__all__ = [
    "Dataset",
    "DatasetWarning",
    "Record",
    "coco_category_ids",
    "load_dataset",
    "read_annotation_lines",
    "read_class_names",
    "read_coco",
    "read_data_yaml",
    "read_map_out",
    "read_voc",
    "read_yolo",
    "write_annotation_lines",
]

DataSpec = str | os.PathLike | Sequence[str | os.PathLike]

_ACCEPTED = (
    "a VOC root (Annotations/ + ImageSets/Main/) or a VOCdevkit folder, comma-joined VOC roots, "
    "a COCO instances .json or a COCO root (annotations/instances_<split>2017.json), a YOLO data "
    "YAML (names + train/val) or a YOLO root (images/ + labels/), an annotation-lines .txt, an "
    "attnyolo data YAML (with a format: key), or the original's map_out folder (ground-truth/)"
)


def load_dataset(
    spec: DataSpec,
    split: str = "train",
    class_names: ClassNames = None,
    *,
    require_images: bool = True,
) -> Dataset:
    """Reads a data set named in any of the forms in this module's docstring.

    Args:
        spec: the location: a folder, a file, comma-joined VOC roots or a list of VOC roots.
        split: "train", "val", "trainval" or "test" (ignored for a COCO JSON and lines file).
        class_names: a list of names or a names file; None for the names the data gives.
        require_images: False for evaluating given detections, which needs only what the metric
            needs: a COCO JSON then keeps the images that are not on disk (sizes from the JSON,
            as pycocotools needs no image either), and a map_out folder is accepted. The other
            forms read their images' sizes and still need them.

    Raises:
        FileNotFoundError: the location, or a file it names, does not exist.
        ValueError: a location of no known form (the message lists the forms), or a reader's
            configuration error.
    """
    if not isinstance(spec, str | os.PathLike):
        return read_voc(spec, split, class_names)
    path = Path(os.path.expanduser(os.fspath(spec)))
    if not path.exists():
        if "," in os.fspath(spec):
            return read_voc(spec, split, class_names)
        raise FileNotFoundError(f"data set not found: {path}")
    for accepts, read in _FORMS:
        if accepts(path):
            return read(path, split, class_names, require_images)
    raise ValueError(f"{path}: not a data set form that load_dataset knows; accepted: {_ACCEPTED}")


def read_data_yaml(
    path: str | os.PathLike,
    split: str = "train",
    class_names: ClassNames = None,
    *,
    require_images: bool = True,
) -> Dataset:
    """Reads one split of our data YAML (format in this module's docstring; `require_images`
    as in `load_dataset`)."""
    path = Path(path)
    config = load_yaml(path)
    read = _YAML_FORMATS.get(config.get("format"))
    if read is None:
        raise ValueError(
            f"{path}: format must be one of {sorted(_YAML_FORMATS)}, got {config.get('format')!r}"
        )
    return read(path, config, split, class_names, require_images)


def _split_entry(path: Path, config: dict, split: str) -> object:
    entry = config.get(split)
    if not entry:
        available = [key for key, value in config.items() if key not in _NOT_SPLITS and value]
        raise ValueError(f"{path}: no {split!r} entry; available splits: {available or 'none'}")
    return entry


def _names(config: dict, base: Path, class_names: ClassNames) -> ClassNames:
    """Names given to the reader win over the YAML's; a names file is relative to the base."""
    names = class_names if class_names is not None else config.get("names")
    return resolve_path(base, names) if isinstance(names, str) else names


def _voc_yaml(
    path: Path, config: dict, split: str, class_names: ClassNames, require_images: bool
) -> Dataset:
    entry, base = _split_entry(path, config, split), yaml_base(path, config)
    if isinstance(entry, dict):
        entry, split = entry.get("root"), str(entry.get("split", split))
    roots = entry if isinstance(entry, list) else str(entry).split(",")
    roots = [resolve_path(base, str(root).strip()) for root in roots]
    return read_voc(roots, split, _names(config, base, class_names))


def _coco_yaml(
    path: Path, config: dict, split: str, class_names: ClassNames, require_images: bool
) -> Dataset:
    entry, base = _split_entry(path, config, split), yaml_base(path, config)
    images = None
    if isinstance(entry, dict):
        entry, images = entry.get("annotations"), entry.get("images")
    images = resolve_path(base, images) if images else None
    return read_coco(
        resolve_path(base, entry),
        images,
        _names(config, base, class_names),
        require_images=require_images,
    )


def _lines_yaml(
    path: Path, config: dict, split: str, class_names: ClassNames, require_images: bool
) -> Dataset:
    entry, base = _split_entry(path, config, split), yaml_base(path, config)
    names = _names(config, base, class_names)
    files = entry if isinstance(entry, list) else [entry]
    parts = [read_annotation_lines(resolve_path(base, item), names) for item in files]
    records = [record for part in parts for record in part.records]
    return Dataset(records, parts[0].class_names, ",".join(part.source for part in parts))


def _yolo_yaml(
    path: Path, config: dict, split: str, class_names: ClassNames, require_images: bool
) -> Dataset:
    # With format: yolo the file is an Ultralytics data YAML, which read_yolo reads whole.
    return read_yolo(path, split, class_names)


_YAML_FORMATS: dict[str, Callable[[Path, dict, str, ClassNames, bool], Dataset]] = {
    "voc": _voc_yaml,
    "coco": _coco_yaml,
    "yolo": _yolo_yaml,
    "lines": _lines_yaml,
}
_NOT_SPLITS = ("format", "path", "names", "nc", "download")


def _read_yaml_file(
    path: Path, split: str, class_names: ClassNames, require_images: bool
) -> Dataset:
    config = load_yaml(path)
    if "format" in config:
        return read_data_yaml(path, split, class_names, require_images=require_images)
    if is_yolo_yaml(config):
        return read_yolo(path, split, class_names)
    raise ValueError(
        f"{path}: a YAML with neither a format: key (attnyolo data YAML) nor names: and "
        "train:/val: keys (YOLO data YAML)"
    )


def _is_coco_root(path: Path) -> bool:
    return path.is_dir() and any((path / "annotations").glob("instances_*.json"))


def _has_suffix(*suffixes: str) -> Callable[[Path], bool]:
    return lambda path: path.is_file() and path.suffix.lower() in suffixes


def _read_coco_root(
    path: Path, split: str, class_names: ClassNames, require_images: bool
) -> Dataset:
    return read_coco(
        coco_split_file(path, split), class_names=class_names, require_images=require_images
    )


def _read_coco_json(
    path: Path, split: str, class_names: ClassNames, require_images: bool
) -> Dataset:
    # One JSON is one split.
    return read_coco(path, class_names=class_names, require_images=require_images)


def _read_lines(path: Path, split: str, class_names: ClassNames, require_images: bool) -> Dataset:
    return read_annotation_lines(path, class_names)  # one file is one split


def _read_voc(path: Path, split: str, class_names: ClassNames, require_images: bool) -> Dataset:
    return read_voc(path, split, class_names)


def _read_yolo(path: Path, split: str, class_names: ClassNames, require_images: bool) -> Dataset:
    return read_yolo(path, split, class_names)


def _read_map_out(path: Path, split: str, class_names: ClassNames, require_images: bool) -> Dataset:
    if require_images:
        raise ValueError(
            f"{path}: a map_out folder holds ground truth but no images; evaluate the detections "
            "beside it (attnyolo evaluate --data MAP_OUT), or give a model the original data set"
        )
    return read_map_out(path, split, class_names)


# How load_dataset tells the forms apart, tried in order:
# (accepts(path), read(path, split, names, require_images)).
_FORMS: list[tuple[Callable[[Path], bool], Callable[[Path, str, ClassNames, bool], Dataset]]] = [
    (is_voc_root, _read_voc),
    (_is_coco_root, _read_coco_root),
    (is_yolo_root, _read_yolo),
    (is_map_out, _read_map_out),
    (_has_suffix(".json"), _read_coco_json),
    (_has_suffix(".yaml", ".yml"), _read_yaml_file),
    (_has_suffix(".txt"), _read_lines),
]

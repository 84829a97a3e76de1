"""YOLO txt sets, annotation lines and our data YAML, on small sets written into tmp_path."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attnyolo.data import (
    Dataset,
    DatasetWarning,
    Record,
    load_dataset,
    load_image,
    read_annotation_lines,
    read_data_yaml,
    read_yolo,
    write_annotation_lines,
)
from attnyolo.data.yolo import label_path

pytestmark = pytest.mark.filterwarnings("ignore::attnyolo.data.DatasetWarning")


def collect(read, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = read(*args, **kwargs)
    return dataset, [w.message for w in caught if issubclass(w.category, DatasetWarning)]


def image(path: Path, width: int, height: int, orientation: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = Image.new("RGB", (width, height), (200, 30, 30))
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    picture.save(path, exif=exif)
    return path


def label(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def yolo_set(tmp_path) -> Path:
    """images/{train,val}/ + labels/{train,val}/ + data.yaml; sizes picked so that the boxes are
    whole pixels."""
    root = tmp_path / "yolo"
    image(root / "images" / "train" / "wide.jpg", 200, 100)
    label(root / "labels" / "train" / "wide.txt", "1 0.5 0.5 0.2 0.4\n0 0.25 0.75 0.5 0.5\n")
    image(root / "images" / "train" / "tall.png", 40, 80)
    label(root / "labels" / "train" / "tall.txt", "0 0.5 0.25 1.0 0.5\n")
    image(root / "images" / "val" / "one.jpg", 100, 100)
    label(root / "labels" / "val" / "one.txt", "1 0.1 0.2 0.2 0.2\n")
    (root / "data.yaml").write_text(
        "path: .\ntrain: images/train\nval: images/val\nnames: [a, b]\n"
    )
    return root


def test_yolo_boxes_are_denormalised(yolo_set):
    dataset, caught = collect(read_yolo, yolo_set / "data.yaml", "train")
    assert caught == []
    assert dataset.class_names == ["a", "b"]
    assert dataset.source == str(yolo_set / "data.yaml")
    tall, wide = dataset.records  # sorted by path
    # wide is 200x100: cx 0.5 w 0.2 -> 100 -/+ 20; cy 0.5 h 0.4 -> 50 -/+ 20.
    np.testing.assert_array_equal(wide.boxes, [[80, 30, 120, 70], [0, 50, 100, 100]])
    assert wide.classes.tolist() == [1, 0] and wide.size == (100, 200)
    np.testing.assert_array_equal(tall.boxes, [[0, 0, 40, 40]])
    assert tall.image_id == "tall" and not tall.difficult.any()
    val = read_yolo(yolo_set / "data.yaml", "val")
    np.testing.assert_allclose(val.records[0].boxes, [[0, 10, 20, 30]], atol=1e-5)


def test_yolo_yaml_forms(yolo_set, tmp_path):
    config = tmp_path / "elsewhere" / "set.yaml"
    config.parent.mkdir()
    listing = yolo_set / "train.txt"
    listing.write_text("./images/train/wide.jpg\nimages/train/tall.png\n")
    config.write_text(
        f"path: {yolo_set}\ntrain: [train.txt, images/val]\nnames: {{0: a, 1: b}}\nnc: 2\n"
    )
    dataset = read_yolo(config, "train")
    assert [r.image_id for r in dataset.records] == ["wide", "tall", "one"]
    assert dataset.class_names == ["a", "b"]
    with pytest.raises(ValueError, match=r"no 'test' entry; available splits: \['train'\]"):
        read_yolo(config, "test")
    config.write_text(f"path: {yolo_set}\ntrain: images/train\nnames: {{0: a, 2: b}}\n")
    with pytest.raises(ValueError, match="names ids must be 0..1"):
        read_yolo(config, "train")


def test_yolo_root_layouts(yolo_set, tmp_path):
    (yolo_set / "data.yaml").unlink()
    with pytest.raises(FileNotFoundError, match="no class names"):
        read_yolo(yolo_set, "train")
    (yolo_set / "classes.txt").write_text("a\nb\n")
    assert len(read_yolo(yolo_set, "train")) == 2
    with pytest.raises(FileNotFoundError, match=r"available splits: \['train', 'val'\]"):
        read_yolo(yolo_set, "test")

    flat = tmp_path / "flat"
    image(flat / "images" / "x.jpg", 50, 50)
    label(flat / "labels" / "x.txt", "0 0.5 0.5 0.2 0.2\n")
    (flat / "obj.names").write_text("thing\n")
    dataset = read_yolo(flat, "val")  # one set: read whatever the split
    np.testing.assert_allclose(dataset.records[0].boxes, [[20, 20, 30, 30]], atol=1e-5)
    assert label_path(flat / "images" / "x.jpg") == flat / "labels" / "x.txt"
    assert label_path(Path("/d/images/a/images/b.png")) == Path("/d/images/a/labels/b.txt")


def test_yolo_polygon_rows_become_boxes(tmp_path):
    image(tmp_path / "images" / "p.jpg", 100, 100)
    label(tmp_path / "labels" / "p.txt", "0 0.1 0.2 0.5 0.2 0.3 0.6\n")
    (tmp_path / "classes.txt").write_text("thing\n")
    record = read_yolo(tmp_path).records[0]
    np.testing.assert_allclose(record.boxes, [[10, 20, 50, 60]], atol=1e-4)


@pytest.mark.parametrize("orientation", [1, 3, 5, 6, 7, 8])
def test_yolo_sizes_follow_exif_orientation(tmp_path, orientation):
    """The normalised labels refer to the image as displayed, which is what load_image returns."""
    path = image(tmp_path / "images" / "phone.jpg", 60, 30, orientation)
    label(tmp_path / "labels" / "phone.txt", "0 0.5 0.5 1 1\n")
    (tmp_path / "classes.txt").write_text("thing\n")
    record = read_yolo(tmp_path).records[0]
    assert record.size == load_image(path).shape[:2]
    swapped = orientation >= 5
    assert record.size == ((60, 30) if swapped else (30, 60))
    assert record.boxes[0].tolist() == [0, 0, record.size[1], record.size[0]]


def test_lines_read_the_scripts_format_as_given(tmp_path):
    folder = tmp_path / "my photos"
    first = image(folder / "a b.jpg", 64, 48)
    second = image(tmp_path / "c.jpg", 64, 48)
    path = tmp_path / "2007_train.txt"
    # Written as the original voc_annotation.py did: path, then xmin,ymin,xmax,ymax,class.
    path.write_text(f"{first} 263,211,324,339,8 1,2,3,4,0\nc.jpg  5,6,7,8,1\t9,9,12.5,20,1\n")
    dataset = read_annotation_lines(path, [str(k) for k in range(10)])
    a, c = dataset.records
    assert a.image == first and a.image_id == "a b"
    np.testing.assert_array_equal(a.boxes, [[263, 211, 324, 339], [1, 2, 3, 4]])
    assert a.classes.tolist() == [8, 0] and a.size is None
    assert c.image == second  # relative to the file's folder
    np.testing.assert_array_equal(c.boxes, [[5, 6, 7, 8], [9, 9, 12.5, 20]])


def test_lines_write(tmp_path):
    picture = image(tmp_path / "a.jpg", 64, 48)
    record = Record(
        picture, [[0.5, 1, 10.25, 20], [2, 2, 8, 8]], [1, 0], [False, True], size=(48, 64)
    )
    path = write_annotation_lines(Dataset([record], ["cat", "dog"]), tmp_path / "out.txt")
    # Shortest exact numbers; the difficult box is left out, as the original scripts did.
    assert path.read_text() == f"{picture} 0.5,1,10.25,20,1\n"
    back = read_annotation_lines(path, ["cat", "dog"])
    np.testing.assert_array_equal(back.records[0].boxes, record.boxes[:1])

    spaced = Record(image(tmp_path / "x y.jpg", 8, 8), [[1, 1, 2, 2]], [0], [False])
    with pytest.raises(ValueError, match=r"x y\.jpg: annotation lines cannot hold"):
        write_annotation_lines(Dataset([record, spaced], ["cat", "dog"]), tmp_path / "new.txt")
    assert not (tmp_path / "new.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".jpg") == ["out.txt"]


def test_data_yaml_forms(yolo_set, tmp_path):
    lines = tmp_path / "lines"
    lines.mkdir()
    first = image(lines / "a.jpg", 64, 48)
    (lines / "one.txt").write_text(f"{first} 1,2,3,4,0\n")
    (lines / "two.txt").write_text("a.jpg 5,6,7,8,1\n")
    (lines / "names.txt").write_text("cat\ndog\n")
    config = tmp_path / "lines.yaml"
    config.write_text("format: lines\npath: lines\nnames: names.txt\ntrain: [one.txt, two.txt]\n")
    dataset = load_dataset(config, "train")
    assert dataset.class_names == ["cat", "dog"] and len(dataset) == 2
    assert dataset.source == f"{lines / 'one.txt'},{lines / 'two.txt'}"
    with pytest.raises(ValueError, match=r"no 'val' entry; available splits: \['train'\]"):
        read_data_yaml(config, "val")

    coco = tmp_path / "coco"
    image(coco / "pics" / "p.jpg", 64, 48)
    (coco / "ann.json").write_text(
        json.dumps(
            {
                "images": [{"id": 7, "file_name": "p.jpg", "width": 64, "height": 48}],
                "annotations": [{"image_id": 7, "category_id": 5, "bbox": [1, 2, 3, 4]}],
                "categories": [{"id": 5, "name": "kite"}],
            }
        )
    )
    config = tmp_path / "coco.yaml"
    config.write_text("format: coco\npath: coco\nval: {annotations: ann.json, images: pics}\n")
    record = load_dataset(config, "val").records[0]
    assert record.image_id == 7 and record.boxes.tolist() == [[1, 2, 4, 6]]

    config = yolo_set / "ours.yaml"
    config.write_text("format: yolo\ntrain: images/train\nnames: [a, b]\n")
    assert len(load_dataset(config, "train")) == 2


def test_load_dataset_yolo_forms(yolo_set):
    assert len(load_dataset(yolo_set / "data.yaml", "val")) == 1
    assert load_dataset(yolo_set, "train").source == str(yolo_set / "data.yaml")
    (yolo_set / "data.yaml").unlink()
    assert len(load_dataset(yolo_set, "train", class_names=["a", "b"])) == 2

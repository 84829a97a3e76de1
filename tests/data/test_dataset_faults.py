"""Bad samples are reported once, naming the file, and skipped or repaired; configuration
mistakes fail at once. Every data set here is written into a temporary folder."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attnyolo.data import (
    DatasetWarning,
    read_annotation_lines,
    read_coco,
    read_voc,
    read_yolo,
)

pytestmark = pytest.mark.filterwarnings("ignore::attnyolo.data.DatasetWarning")


def collect(read, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = read(*args, **kwargs)
    return dataset, [w.message for w in caught if issubclass(w.category, DatasetWarning)]


def faults(caught) -> dict[str, list[str]]:
    """fault -> names of the files it was reported for."""
    found: dict[str, list[str]] = {}
    for w in caught:
        found.setdefault(w.fault, []).append(Path(w.file).name)
    return found


def image(path: Path, width: int = 64, height: int = 48) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (90, 120, 150)).save(path)
    return path


BOX_TAGS = ("xmin", "ymin", "xmax", "ymax")


def voc_xml(objects, size=(48, 64)) -> str:
    """objects: (name, xmin, ymin, xmax, ymax[, difficult]); difficult None leaves the tag out."""
    parts = ["<annotation><filename>x.jpg</filename>"]
    if size is not None:
        parts.append(f"<size><width>{size[1]}</width><height>{size[0]}</height></size>")
    for name, *box in objects:
        difficult = box[4] if len(box) > 4 else 0
        tag = "" if difficult is None else f"<difficult>{difficult}</difficult>"
        corners = "".join(f"<{k}>{v}</{k}>" for k, v in zip(BOX_TAGS, box[:4], strict=False))
        parts.append(f"<object><name>{name}</name>{tag}<bndbox>{corners}</bndbox></object>")
    return "".join(parts) + "</annotation>"


def make_voc(root: Path, samples: dict, split: str = "train") -> Path:
    """samples: stem -> XML text (None: no XML file); every stem gets a 64x48 image."""
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for stem, xml in samples.items():
        image(root / "JPEGImages" / f"{stem}.jpg")
        if xml is not None:
            (root / "Annotations" / f"{stem}.xml").write_text(xml)
    (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(samples) + "\n")
    return root


GOOD = voc_xml([("cat", 11, 21, 30, 40)])


def test_voc_conventions(tmp_path):
    root = make_voc(
        tmp_path / "VOC",
        {
            "a": voc_xml([("cat", 1, 1, 10, 10), ("dog", 5.5, 6, 20.25, 30, 1)]),
            "b": voc_xml([("dog", 2, 3, 4, 5, None)], size=None),
        },
    )
    dataset, caught = collect(read_voc, root, "train")
    assert caught == []
    assert dataset.class_names == ["cat", "dog"]
    a, b = dataset.records
    # 1-based inclusive pixels 1..10 are the continuous span 0..10; fractions are kept.
    np.testing.assert_array_equal(a.boxes, [[0, 0, 10, 10], [4.5, 5, 20.25, 30]])
    assert a.classes.tolist() == [0, 1] and a.difficult.tolist() == [False, True]
    assert b.difficult.tolist() == [False]  # no <difficult> tag means 0
    assert a.size == b.size == (48, 64)  # from the image header, with or without <size>
    assert a.image_id == "a" and a.image == root / "JPEGImages" / "a.jpg"


def test_voc_bad_samples_each_named_once(tmp_path):
    samples = {
        "good": GOOD,
        "no_image": GOOD,
        "no_xml": None,
        "malformed": "<annotation><object><name>cat</name>",
        "unknown": voc_xml(
            [("cat", 11, 21, 30, 40), ("unicorn", 1, 1, 5, 5), ("yeti", 1, 1, 5, 5)]
        ),
        "outside": voc_xml([("cat", 0, -5, 70, 30), ("cat", 100, 100, 120, 120)]),
        "degenerate": voc_xml([("cat", 11, 21, 10, 40), ("cat", 5, 5, 5, 4), ("cat", 1, 1, 9, 9)]),
        "empty": voc_xml([]),
        "wrong_size": voc_xml([("cat", 11, 21, 30, 40)], size=(480, 640)),
        "no_box": voc_xml([("cat",)]),
    }
    root = make_voc(tmp_path / "VOC", samples)
    (root / "JPEGImages" / "no_image.jpg").unlink()
    dataset, caught = collect(read_voc, root, "train", ["cat", "dog"])
    found = faults(caught)

    assert found["missing image"] == ["no_image.xml"]
    assert sorted(found["bad annotation"]) == ["malformed.xml", "no_box.xml", "no_xml.xml"]
    assert found["unknown class"] == ["unknown.xml"]  # once for two boxes
    assert "2 boxes" in str(next(w for w in caught if w.fault == "unknown class"))
    assert found["box clipped"] == ["outside.xml"]
    assert found["box dropped"] == ["degenerate.xml"]
    assert sorted(found["no boxes"]) == ["empty.xml", "no_box.xml"]
    assert found["size mismatch"] == ["wrong_size.xml"]
    assert found["summary"] == [root.name]
    summary = str(caught[-1])
    assert "7 images read" in summary and "size mismatch: 1" in summary

    records = {r.image_id: r for r in dataset.records}
    assert sorted(records) == sorted(
        ["good", "unknown", "outside", "degenerate", "empty", "wrong_size", "no_box"]
    )
    assert records["unknown"].classes.tolist() == [0]
    # (0 - 1, -5 - 1, 70, 30) clipped to the 64x48 image; the second box is wholly outside.
    np.testing.assert_array_equal(records["outside"].boxes, [[0, 0, 64, 30]])
    np.testing.assert_array_equal(records["degenerate"].boxes, [[0, 0, 9, 9]])
    assert len(records["empty"].boxes) == 0
    assert records["wrong_size"].size == (48, 64)


def test_warnings_point_at_the_caller(tmp_path):
    root = make_voc(tmp_path / "VOC", {"a": voc_xml([("cat", 0, 0, 99, 9)])})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read_voc(root, "train")
    assert {w.filename for w in caught} == {__file__}


def test_voc_configuration_mistakes(tmp_path):
    with pytest.raises(FileNotFoundError, match="VOC root not found: .*nowhere"):
        read_voc(tmp_path / "nowhere")
    root = make_voc(tmp_path / "VOCdevkit" / "VOC2007", {"a": GOOD})
    with pytest.raises(FileNotFoundError, match=r"test\.txt; available splits: \['train'\]"):
        read_voc(root, "test")
    with pytest.raises(FileNotFoundError, match="class-names file not found: .*names.txt"):
        read_voc(root, "train", tmp_path / "names.txt")
    (tmp_path / "dup.txt").write_text("cat\ndog\ncat\n")
    with pytest.raises(ValueError, match=r"repeated class names \['cat'\]"):
        read_voc(root, "train", tmp_path / "dup.txt")
    (root / "ImageSets" / "Main" / "val.txt").write_text("\n")
    with pytest.raises(ValueError, match="empty data set"):
        read_voc(root, "val")
    (root / "ImageSets" / "Main" / "gone.txt").write_text("x\ny\n")
    with pytest.raises(ValueError, match="empty data set.*bad annotation: 2"):
        read_voc(root, "gone")
    make_voc(tmp_path / "VOCdevkit" / "VOC2012", {"b": GOOD})
    with pytest.raises(ValueError, match="holds 2 VOC roots"):
        read_voc(tmp_path / "VOCdevkit")
    with pytest.raises(ValueError, match="not a VOC root"):
        read_voc(tmp_path / "VOCdevkit" / "VOC2007" / "JPEGImages")
    assert len(read_voc(root, "train")) == 1  # VOCdevkit/VOC2007 itself is fine


def test_voc_repeated_ids_across_roots_and_in_a_split(tmp_path):
    first = make_voc(tmp_path / "one", {"a": GOOD, "b": GOOD})
    second = make_voc(tmp_path / "two", {"a": GOOD})
    (first / "ImageSets" / "Main" / "train.txt").write_text("a\nb\na\n")
    dataset, caught = collect(read_voc, f"{first},{second}", "train")
    assert faults(caught)["duplicate"] == ["train.txt"]
    ids = [r.image_id for r in dataset.records]
    assert len(ids) == 3 and len(set(ids)) == 3  # stems collide, so ids are paths


def test_voc_refuses_ids_that_leave_the_root(tmp_path):
    # A split list that names a file outside the data root: an XML placed there, with a box and
    # a class, would be read if the id were taken as a path.
    voc = make_voc(tmp_path / "data" / "VOC", {"a": GOOD})
    (tmp_path / "secret.xml").write_text(GOOD)
    image(voc / "JPEGImages" / "secret.jpg")
    ids = ["../../../secret", "a", "..", "Annotations/a", "..\\..\\secret"]
    (voc / "ImageSets" / "Main" / "train.txt").write_text("\n".join(ids) + "\n")
    dataset, caught = collect(read_voc, voc, "train")
    assert [r.image_id for r in dataset.records] == ["a"]
    bad = [w for w in caught if w.fault == "bad annotation"]
    assert len(bad) == 1 and "4 image ids skipped: an id is a file name" in str(bad[0])
    assert Path(bad[0].file).name == "train.txt"


def coco_json(tmp_path: Path, images, annotations, categories=None) -> Path:
    data = {
        "images": images,
        "annotations": [{"id": k, "iscrowd": 0, **a} for k, a in enumerate(annotations)],
        "categories": categories or [{"id": 1, "name": "cat"}, {"id": 3, "name": "dog"}],
    }
    path = tmp_path / "annotations" / "instances_val2017.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def test_coco_bad_samples(tmp_path):
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        image(tmp_path / "val2017" / name)
    images = [
        {"id": 1, "file_name": "a.jpg", "width": 64, "height": 48},
        {"id": 2, "file_name": "b.jpg", "width": 64, "height": 48},
        {"id": 3, "file_name": "missing.jpg", "width": 64, "height": 48},
        {"id": 4, "file_name": "c.jpg"},  # no size: read from the header
        {"id": 2, "file_name": "b.jpg", "width": 64, "height": 48},
    ]
    annotations = [
        {"image_id": 1, "category_id": 3, "bbox": [10.5, 20, 5, 6]},
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 64, 48], "iscrowd": 1},
        {"image_id": 1, "category_id": 1, "bbox": [50, 40, 30, 30]},  # outside: clipped
        {"image_id": 1, "category_id": 1, "bbox": [5, 5, 0, 4]},  # no width: dropped
        {"image_id": 1, "category_id": 7, "bbox": [5, 5, 4, 4]},  # no such category
        {"image_id": 3, "category_id": 1, "bbox": [5, 5, 4, 4]},
        {"image_id": 4, "category_id": 1, "bbox": [5, 5]},  # malformed
        {"image_id": 9, "category_id": 1, "bbox": [5, 5, 4, 4]},  # no such image
    ]
    path = coco_json(tmp_path, images, annotations)
    dataset, caught = collect(read_coco, path)
    found = faults(caught)
    assert found["missing image"] == ["missing.jpg"]
    assert found["box clipped"] == ["a.jpg"]
    assert found["box dropped"] == ["a.jpg"]
    assert found["unknown class"] == [path.name]
    assert found["duplicate"] == [path.name]
    assert sorted(found["bad annotation"]) == ["c.jpg", path.name]
    assert "no boxes" not in found  # unannotated images are normal in COCO: counted only
    assert "no boxes: 2" in str(caught[-1])

    assert dataset.class_names == ["cat", "dog"]
    a, b, c = dataset.records
    assert [r.image_id for r in dataset.records] == [1, 2, 4]
    np.testing.assert_array_equal(a.boxes, [[10.5, 20, 15.5, 26], [0, 0, 64, 48], [50, 40, 64, 48]])
    assert a.classes.tolist() == [1, 0, 0]
    assert a.difficult.tolist() == [False, True, False]  # iscrowd is an ignore region
    assert len(b.boxes) == 0 and c.size == (48, 64)


def test_coco_configuration_mistakes(tmp_path):
    with pytest.raises(FileNotFoundError, match="COCO annotation file not found"):
        read_coco(tmp_path / "instances_val2017.json")
    path = coco_json(tmp_path, [{"id": 1, "file_name": "a.jpg"}], [])
    with pytest.raises(ValueError, match="empty data set"):
        read_coco(path, image_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        read_coco(path, image_dir=tmp_path / "elsewhere")
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_coco(path, image_dir=tmp_path)


def test_yolo_bad_samples(tmp_path):
    root = tmp_path / "set"
    for name in ("good", "bad_lines", "unknown", "outside", "background", "no_label"):
        image(root / "images" / "train" / f"{name}.jpg", 100, 50)
    (root / "images" / "train" / "broken.jpg").write_bytes(b"not a jpeg")
    labels = root / "labels" / "train"
    labels.mkdir(parents=True)
    (labels / "good.txt").write_text("0 0.5 0.5 0.2 0.4\n")
    (labels / "bad_lines.txt").write_text(
        "0 0.5 0.5 0.2\ncat 0.5 0.5 0.2 0.2\nnan 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2 0.4\n"
    )
    (labels / "unknown.txt").write_text("5 0.5 0.5 0.2 0.4\n1 0.5 0.5 0.2 0.4\n")
    (labels / "outside.txt").write_text("0 0.95 0.5 0.2 0.4\n0 0.5 0.5 0 0.4\n")
    (labels / "background.txt").write_text("")
    (root / "classes.txt").write_text("cat\ndog\n")
    dataset, caught = collect(read_yolo, root, "train")
    found = faults(caught)
    assert found["unreadable image"] == ["broken.jpg"]
    assert found["bad annotation"] == ["bad_lines.txt"]
    assert found["unknown class"] == ["unknown.txt"]
    assert found["box clipped"] == ["outside.txt"]
    assert found["box dropped"] == ["outside.txt"]
    assert "no boxes: 2" in str(caught[-1])  # background images: counted, not warned
    records = {r.image_id: r for r in dataset.records}
    assert len(records) == 6
    np.testing.assert_allclose(records["outside"].boxes, [[85, 15, 100, 35]])
    assert records["unknown"].classes.tolist() == [1]
    assert records["bad_lines"].classes.tolist() == [1]


def test_lines_bad_samples(tmp_path):
    image(tmp_path / "a.jpg")
    image(tmp_path / "b.jpg")
    image(tmp_path / "c.jpg")
    (tmp_path / "train.txt").write_text(
        "a.jpg 1,2,30,40,0 5,5,3,9,1 1,1,4,4,7\n"
        "missing.jpg 1,2,3,4,0\n"
        "\n"
        "b.jpg\n"
        "a.jpg 1,2,3,4,0\n"
        "c.jpg 1,2,300,400,1\n"
    )
    dataset, caught = collect(read_annotation_lines, tmp_path / "train.txt", ["cat", "dog"])
    found = faults(caught)
    assert found["missing image"] == ["train.txt:2 (missing.jpg)"]
    assert found["unknown class"] == ["train.txt:1 (a.jpg)"]
    assert found["box dropped"] == ["train.txt:1 (a.jpg)"]
    assert found["no boxes"] == ["train.txt:4 (b.jpg)"]
    assert found["duplicate"] == ["train.txt:5 (a.jpg)"]
    assert "box clipped" not in found  # sizes are unknown in this format: nothing to clip to
    a, b, c = dataset.records
    np.testing.assert_array_equal(a.boxes, [[1, 2, 30, 40]])
    assert len(b.boxes) == 0
    np.testing.assert_array_equal(c.boxes, [[1, 2, 300, 400]])
    assert c.size is None

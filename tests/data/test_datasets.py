"""Readers on the shared real data sets, and how `load_dataset` tells the forms apart."""

import json
import shutil
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attnyolo.data import (
    DatasetWarning,
    coco_category_ids,
    load_dataset,
    read_annotation_lines,
    read_coco,
    read_voc,
    write_annotation_lines,
)

VOC_NAMES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
]  # fmt: skip


BOX_TAGS = ("xmin", "ymin", "xmax", "ymax")

# Tests that do not collect the warnings need not print them.
pytestmark = pytest.mark.filterwarnings("ignore::attnyolo.data.DatasetWarning")


def collect(read, *args, **kwargs):
    """Runs a reader and returns its data set and every `DatasetWarning` it emitted."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = read(*args, **kwargs)
    return dataset, [w.message for w in caught if issubclass(w.category, DatasetWarning)]


@pytest.fixture(scope="module")
def voc20(shared_data) -> Path:
    return shared_data / "voc20" / "VOC2007"


@pytest.fixture(scope="module")
def coco_val(shared_data) -> Path:
    return shared_data / "coco_tiny" / "annotations" / "instances_val2017.json"


@pytest.fixture(scope="module")
def mask_voc(shared_data) -> Path:
    return shared_data / "mask_voc" / "VOC2007"


def test_voc20_test_split(voc20):
    dataset, caught = collect(read_voc, voc20, "test", VOC_NAMES)
    assert len(dataset) == 228
    assert dataset.class_names == VOC_NAMES
    assert dataset.source == str(voc20)
    assert caught == []  # a clean set reads without a word
    assert all(record.image.is_file() for record in dataset.records)

    # One file by hand: the XML's 1-based inclusive pixels, minus 1 at the top-left corner.
    record = next(r for r in dataset.records if r.image_id == "000000000139")
    root = ET.parse(voc20 / "Annotations" / "000000000139.xml").getroot()
    expected = [[float(o.findtext(f"bndbox/{k}")) for k in BOX_TAGS] for o in root.iter("object")]
    expected = np.array(expected) - [1, 1, 0, 0]
    np.testing.assert_array_equal(record.boxes, expected.astype(np.float32))
    assert record.boxes[0].tolist() == [237, 143, 262, 212]  # xmin=238 ymin=144 xmax=262 ymax=212
    names = [VOC_NAMES[c] for c in record.classes]
    assert names == [o.findtext("name") for o in root.iter("object")]
    assert not record.difficult.any()
    assert record.size == (426, 640)
    assert record.image == voc20 / "JPEGImages" / "000000000139.jpg"


def test_voc_names_default_to_the_split_and_accept_a_file(voc20, tmp_path):
    found = set()
    for stem in (voc20 / "ImageSets" / "Main" / "test.txt").read_text().split():
        root = ET.parse(voc20 / "Annotations" / f"{stem}.xml").getroot()
        found |= {o.findtext("name") for o in root.iter("object")}
    assert read_voc(voc20, "test").class_names == sorted(found)

    names_file = tmp_path / "voc_classes.txt"
    names_file.write_text("\n".join(VOC_NAMES) + "\n")
    from_file = read_voc(voc20, "test", names_file)
    assert from_file.class_names == VOC_NAMES
    assert len(from_file) == 228


def test_voc_roots_devkit_list_and_commas(voc20, mask_voc):
    devkit = read_voc(voc20.parent, "trainval")
    assert devkit.source == str(voc20) and len(devkit) == 225

    both = read_voc([voc20, mask_voc], "trainval")  # VOC07+12-style: several roots, one split
    assert len(both) == 225 + 104
    assert set(both.class_names) == set(devkit.class_names) | {"mask", "no-mask"}
    joined = load_dataset(f"{voc20},{mask_voc}", "trainval")
    assert [r.image for r in joined.records] == [r.image for r in both.records]
    assert len({r.image_id for r in both.records}) == len(both)


def test_coco_tiny_val(coco_val):
    dataset, caught = collect(read_coco, coco_val)
    data = json.loads(coco_val.read_text())
    assert caught == []
    assert len(dataset) == 80
    assert dataset.source == str(coco_val)
    assert all(isinstance(r.image_id, int) for r in dataset.records)

    categories = sorted(data["categories"], key=lambda c: c["id"])
    assert dataset.class_names == [c["name"] for c in categories]
    ids = coco_category_ids(coco_val)
    assert ids == [c["id"] for c in categories]
    assert dataset.class_names[79] == "toothbrush" and ids[79] == 90
    assert dataset.class_names[11] == "stop sign" and ids[11] == 13  # COCO id 12 is unused

    annotation = next(a for a in data["annotations"] if not a["iscrowd"])
    record = next(r for r in dataset.records if r.image_id == annotation["image_id"])
    x, y, w, h = annotation["bbox"]
    row = [tuple(box) for box in record.boxes].index(
        tuple(np.float32([x, y, x + w, y + h]))
    )  # COCO boxes are continuous already: only the corner form changes
    assert ids[record.classes[row]] == annotation["category_id"]
    entry = next(i for i in data["images"] if i["id"] == record.image_id)
    assert record.size == (entry["height"], entry["width"])
    assert record.image == coco_val.parent.parent / "val2017" / entry["file_name"]

    crowd = sum(a["iscrowd"] for a in data["annotations"])
    assert crowd > 0
    assert sum(int(r.difficult.sum()) for r in dataset.records) == crowd
    assert sum(len(r.boxes) for r in dataset.records) == len(data["annotations"])


def test_coco_with_darknet_names_matches_by_position(coco_val, shared_data):
    # Darknet's coco.names says motorbike, aeroplane, sofa, ... for six COCO categories.
    names = shared_data / "darknet" / "coco.names"
    dataset, caught = collect(read_coco, coco_val, class_names=names)
    assert [w.fault for w in caught] == ["class names", "summary"]
    assert dataset.class_names[3] == "motorbike"
    default = read_coco(coco_val)
    for ours, theirs in zip(dataset.records, default.records, strict=True):
        np.testing.assert_array_equal(ours.classes, theirs.classes)
    assert coco_category_ids(coco_val, names) == coco_category_ids(coco_val)


def test_coco_subset_of_names(coco_val):
    dataset, caught = collect(read_coco, coco_val, class_names=["dog", "person"])
    assert dataset.class_names == ["dog", "person"]
    assert {w.fault for w in caught} == {"unknown class", "summary"}
    assert str(coco_val) in str(caught[0])
    data = json.loads(coco_val.read_text())
    wanted = sum(a["category_id"] in (1, 18) for a in data["annotations"])  # person 1, dog 18
    assert sum(len(r.boxes) for r in dataset.records) == wanted
    assert coco_category_ids(coco_val, ["dog", "person", "unicorn"]) == [18, 1, 91]


def test_mask_voc_faults(mask_voc):
    """76 XMLs state a wrong <size>; 11 boxes say 0 for xmin or ymin, one pixel outside VOC's
    1-based frame. Both counts are checked against the files read independently."""
    records, caught = [], []
    for split in ("trainval", "test"):
        dataset, found = collect(read_voc, mask_voc, split)
        records += dataset.records
        caught += found
    assert len(records) == 149
    mismatched, outside = set(), {}
    for record in records:
        xml = mask_voc / "Annotations" / f"{record.image_id}.xml"
        root = ET.parse(xml).getroot()
        stated = (int(root.findtext("size/height")), int(root.findtext("size/width")))
        width, height = Image.open(record.image).size
        assert record.size == (height, width)  # the image wins
        if stated != (height, width):
            mismatched.add(str(xml))
        for o in root.iter("object"):
            x1, y1, x2, y2 = (float(o.findtext(f"bndbox/{k}")) for k in BOX_TAGS)
            if x1 - 1 < 0 or y1 - 1 < 0 or x2 > width or y2 > height:
                outside[str(xml)] = outside.get(str(xml), 0) + 1
    assert len(mismatched) == 76
    assert sum(outside.values()) == 11

    size_warnings = [w for w in caught if w.fault == "size mismatch"]
    assert sorted(w.file for w in size_warnings) == sorted(mismatched)
    clipped = [w for w in caught if w.fault == "box clipped"]
    assert {w.file: 1 for w in clipped} == outside  # one warning per file

    # 000067.xml: <ymin>0</ymin> is -1 in continuous pixels, clipped to the image's top edge.
    record = next(r for r in records if r.image_id == "000067")
    assert [88, 0, 312, 312] in record.boxes.tolist()
    assert all((r.boxes >= 0).all() for r in records)
    summaries = [str(w) for w in caught if w.fault == "summary"]
    assert len(summaries) == 2 and "size mismatch" in summaries[0]


def test_annotation_lines_round_trip(voc20, tmp_path):
    dataset = read_voc(voc20, "test", VOC_NAMES)
    path = write_annotation_lines(dataset, tmp_path / "2007_test.txt", tmp_path / "classes.txt")
    back, caught = collect(read_annotation_lines, path, tmp_path / "classes.txt")
    assert [w.fault for w in caught if w.fault != "summary"] == []
    assert back.class_names == VOC_NAMES
    assert len(back) == len(dataset)
    for ours, theirs in zip(dataset.records, back.records, strict=True):
        assert ours.image == theirs.image and ours.image_id == theirs.image_id
        np.testing.assert_array_equal(ours.boxes, theirs.boxes)
        np.testing.assert_array_equal(ours.classes, theirs.classes)
        np.testing.assert_array_equal(ours.difficult, theirs.difficult)
    first = path.read_text().splitlines()[0].split(" ")
    assert first[0] == str(dataset.records[0].image) and first[1].count(",") == 4


def test_load_dataset_forms(voc20, coco_val, shared_data, tmp_path):
    assert load_dataset(voc20, "test").source == str(voc20)
    assert load_dataset(voc20.parent, "test").source == str(voc20)  # a VOCdevkit
    assert load_dataset(coco_val).source == str(coco_val)
    coco_root = shared_data / "coco_tiny"
    assert load_dataset(coco_root, "train").source.endswith("instances_train2017.json")
    assert load_dataset(coco_root, "val").source.endswith("instances_val2017.json")
    assert load_dataset(coco_root, "test").source.endswith("instances_val2017.json")

    lines = write_annotation_lines(read_voc(voc20, "test", VOC_NAMES), tmp_path / "test.txt")
    assert len(load_dataset(lines, class_names=VOC_NAMES)) == 228

    ours = tmp_path / "data.yaml"
    ours.write_text(
        f"format: voc\npath: {voc20.parent}\nnames: {json.dumps(VOC_NAMES)}\n"
        "train: {root: VOC2007, split: trainval}\nval: VOC2007\ntest: VOC2007\n"
    )
    assert len(load_dataset(ours, "train")) == 225
    assert len(load_dataset(ours, "test")) == 228
    with pytest.raises(FileNotFoundError, match="available splits"):
        load_dataset(ours, "val")  # val: VOC2007 reads ImageSets/Main/val.txt, absent in voc20

    coco_yaml = tmp_path / "coco.yaml"
    coco_yaml.write_text(
        f"format: coco\npath: {coco_root}\n"
        "val: {annotations: annotations/instances_val2017.json, images: val2017}\n"
    )
    assert load_dataset(coco_yaml, "val").class_names[79] == "toothbrush"


def test_load_dataset_unknown_forms(tmp_path, voc20):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_dataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="VOC root .* COCO .* YOLO .* annotation-lines"):
        load_dataset(tmp_path / "empty")
    (tmp_path / "notes.md").write_text("hello")
    with pytest.raises(ValueError, match="accepted"):
        load_dataset(tmp_path / "notes.md")
    (tmp_path / "other.yaml").write_text("lr: 0.01\n")
    with pytest.raises(ValueError, match="format: key"):
        load_dataset(tmp_path / "other.yaml")
    (tmp_path / "bad.yaml").write_text("format: pascal\ntrain: x\n")
    with pytest.raises(ValueError, match="format must be one of"):
        load_dataset(tmp_path / "bad.yaml")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a COCO instances file"):
        load_dataset(tmp_path / "list.json")
    (tmp_path / "lines.txt").write_text(f"{voc20}/JPEGImages/000000000139.jpg 1,2,3,4,0\n")
    with pytest.raises(ValueError, match="class names are needed"):
        load_dataset(tmp_path / "lines.txt")


def test_voc_copy_with_faults_loads_the_rest(voc20, tmp_path):
    """A copy of five voc20 images, broken in five ways: each fault is named, the rest loads."""
    root = tmp_path / "VOC2007"
    stems = (voc20 / "ImageSets" / "Main" / "test.txt").read_text().split()[:6]
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True)
    for stem in stems:
        shutil.copy(voc20 / "Annotations" / f"{stem}.xml", root / "Annotations")
        shutil.copy(voc20 / "JPEGImages" / f"{stem}.jpg", root / "JPEGImages")
    (root / "ImageSets/Main/test.txt").write_text("\n".join(stems) + "\n")

    (root / "JPEGImages" / f"{stems[0]}.jpg").unlink()  # missing image
    (root / "Annotations" / f"{stems[1]}.xml").write_text("<annotation><object>")  # malformed
    xml = root / "Annotations" / f"{stems[2]}.xml"
    xml.write_text(xml.read_text().replace("<name>", "<name>x", 1))  # an unknown class
    xml = root / "Annotations" / f"{stems[3]}.xml"
    xml.write_text(xml.read_text().replace("<xmax>", "<xmax>9999", 1))  # outside the image
    xml = root / "Annotations" / f"{stems[4]}.xml"
    text = xml.read_text()
    start, end = text.index("<xmax>") + 6, text.index("</xmax>")
    xml.write_text(text[:start] + "1" + text[end:])  # inverted: xmax=1

    dataset, caught = collect(read_voc, root, "test", VOC_NAMES)
    faults = {(w.fault, Path(w.file).stem) for w in caught}
    assert ("missing image", stems[0]) in faults
    assert ("bad annotation", stems[1]) in faults
    assert ("unknown class", stems[2]) in faults
    assert ("box clipped", stems[3]) in faults
    assert ("box dropped", stems[4]) in faults
    assert [r.image_id for r in dataset.records] == stems[2:]
    clipped = dataset.records[1]
    assert clipped.boxes[:, 2].max() == clipped.size[1]

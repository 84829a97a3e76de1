"""Converting data sets between formats (attnyolo.data.convert, `attnyolo data convert`)."""

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from attnyolo.cli import main
from attnyolo.data import generate_shapes, load_dataset, read_voc, write_annotation_lines
from attnyolo.data.convert import MANIFEST, convert_dataset, source_splits
from attnyolo.data.records import Dataset

SPLITS = ["train", "val", "trainval", "test"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    """The synthetic shapes set, 20 images: train 16, val 2, test 2, integer VOC boxes."""
    return generate_shapes(tmp_path_factory.mktemp("shapes"), num_images=20)


def count(spec, split) -> tuple[int, int]:
    """Images and boxes of a split."""
    dataset = read(spec, split)
    return len(dataset), sum(len(record.boxes) for record in dataset.records)


def read(spec, split, names=None) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_dataset(spec, split, names)


def objects(dataset: Dataset) -> dict[str, tuple[list[str], np.ndarray, np.ndarray]]:
    """Per image stem: class names, boxes and difficult flags, in the file's order."""
    return {
        record.image.stem: (
            [dataset.class_names[c] for c in record.classes],
            record.boxes.astype(np.float64),
            record.difficult,
        )
        for record in dataset.records
    }


def assert_same(converted: Dataset, original: Dataset, atol: float) -> None:
    got, want = objects(converted), objects(original)
    assert sorted(got) == sorted(want)
    for stem, (names, boxes, difficult) in want.items():
        assert got[stem][0] == names, stem
        np.testing.assert_allclose(got[stem][1], boxes, atol=atol, rtol=0, err_msg=stem)
        assert (got[stem][2] == difficult).all(), stem


def test_round_trip_voc_yolo_coco_voc(shapes, tmp_path):
    names = (shapes / "classes.txt").read_text().split()
    originals = {split: read(shapes, split, names) for split in SPLITS}
    assert source_splits(shapes) == SPLITS

    yolo = convert_dataset(shapes, "yolo", tmp_path / "yolo")
    assert yolo.class_names == names  # from the VOC root's classes.txt, in its order
    assert yolo.data_file == tmp_path / "yolo" / "data.yaml"
    coco = convert_dataset(yolo.data_file, "coco", tmp_path / "coco")
    assert coco.data_file == tmp_path / "coco" / "annotations"
    voc = convert_dataset(tmp_path / "coco", "voc", tmp_path / "voc")
    assert voc.data_file == tmp_path / "voc" / "VOC2007"

    for report in (yolo, coco, voc):
        assert [s.name for s in report.splits] == SPLITS
        for summary in report.splits:
            original = originals[summary.name]
            assert summary.images == len(original)
            assert summary.boxes == sum(len(r.boxes) for r in original.records)
        # Integer VOC boxes survive 6-decimal YOLO labels: nothing to round, clip or report.
        assert report.counts["rounded"] == report.counts["clipped"] == 0
        assert not report.renamed
    assert voc.notes == []  # no class names file beside a COCO root; nothing lost

    for split, original in originals.items():
        # YOLO's 6 decimals of a 320 px side: within 1e-6 x 320 px.
        assert_same(read(yolo.data_file, split), original, atol=1e-3)
        assert_same(read(tmp_path / "yolo", split), original, atol=1e-3)  # the root too
        assert_same(read(tmp_path / "coco", split), original, atol=1e-3)
        # Back to VOC's integers: exactly the original boxes.
        back = read(tmp_path / "voc", split, voc.data_file / "classes.txt")
        assert voc.class_names == back.class_names == names
        assert_same(back, original, atol=0)
    written = (tmp_path / "voc" / "VOC2007" / "ImageSets" / "Main").glob("*.txt")
    assert sorted(p.stem for p in written) == sorted(SPLITS)
    assert (tmp_path / "voc" / "VOC2007" / "classes.txt").read_text().split() == names


def test_yolo_layout_follows_ultralytics(shapes, tmp_path):
    report = convert_dataset(shapes, "yolo", tmp_path / "out")
    out = tmp_path / "out"
    config = yaml.safe_load((out / "data.yaml").read_text())
    # Ultralytics resolves a relative path: against its own datasets folder, so it is absolute.
    assert Path(config["path"]) == out and Path(config["path"]).is_absolute()
    assert {k: config[k] for k in SPLITS} == {s: f"images/{s}" for s in SPLITS}
    assert config["names"] == report.class_names and config["nc"] == len(report.class_names)
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    for split in SPLITS:
        images = sorted((out / config[split]).iterdir())
        assert len(images) == next(s.images for s in report.splits if s.name == split)
        for image in images:
            # Ultralytics' img2label_paths, verbatim.
            label = Path(sb.join(str(image).rsplit(sa, 1)).rsplit(".", 1)[0] + ".txt")
            assert label.is_file(), label
            for line in label.read_text().splitlines():
                fields = line.split()
                assert len(fields) == 5 and 0 <= int(fields[0]) < len(config["names"])
                assert all(len(v.split(".")[1]) >= 6 for v in fields[1:])
                assert all(0.0 <= float(v) <= 1.0 for v in fields[1:])
    # Converting the same images again: same bytes (copies, not re-encoded).
    source = shapes / "JPEGImages" / "000003.jpg"
    assert (out / "images" / "train" / "000003.jpg").read_bytes() == source.read_bytes()
    assert not any("Ultralytics" in note for note in report.notes)  # it has train and val


def test_ultralytics_reads_the_yolo_output(shapes, tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "ultralytics"))
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    utils = pytest.importorskip("ultralytics.data.utils")
    report = convert_dataset(shapes, "yolo", tmp_path / "out")
    data = utils.check_det_dataset(str(report.data_file))
    assert data["names"] == dict(enumerate(report.class_names))
    for split in ("train", "val"):
        assert Path(data[split]) == report.output / "images" / split
        images = sorted(Path(data[split]).iterdir())
        labels = utils.img2label_paths([str(p) for p in images])
        assert labels == [str(report.output / "labels" / split / f"{p.stem}.txt") for p in images]
        assert all(Path(label).is_file() for label in labels)


def test_split_renaming_and_the_ultralytics_note(shapes, tmp_path):
    # A VOC2007-like source has trainval and test only: Ultralytics needs train and val.
    voc = tmp_path / "src" / "VOC2007"
    shutil.copytree(shapes, voc)
    for split in ("train", "val"):
        (voc / "ImageSets" / "Main" / f"{split}.txt").unlink()
    report = convert_dataset(voc, "yolo", tmp_path / "plain")
    assert [s.name for s in report.splits] == ["trainval", "test"]
    assert any(
        "Ultralytics needs" in note and "--split trainval=train" in note for note in report.notes
    )

    report = convert_dataset(voc, "yolo", tmp_path / "renamed", ["trainval=train", "test=val"])
    assert [(s.name, s.source) for s in report.splits] == [("train", "trainval"), ("val", "test")]
    images, boxes = count(voc, "trainval")
    assert report.lines()[0] == f"train (from trainval): {images} images, {boxes} boxes"
    config = yaml.safe_load(report.data_file.read_text())
    assert config["train"] == "images/train" and config["val"] == "images/val"
    assert "trainval" not in config and "test" not in config
    assert not any("Ultralytics" in note for note in report.notes)


def coco_source(tmp_path: Path, shapes: Path) -> Path:
    """A COCO root, three 320x320 images: fractional boxes, a crowd box, a box sticking out of
    its image, a box under a pixel, and an image without annotations."""
    root = tmp_path / "coco"
    (root / "train").mkdir(parents=True)
    for stem in ("000000", "000001", "000002"):
        shutil.copy(shapes / "JPEGImages" / f"{stem}.jpg", root / "train" / f"{stem}.jpg")
    boxes = [
        (1, 1, [10.3, 20.6, 50.2, 40.4], 0),  # fractional
        (2, 1, [5, 5, 20, 20], 1),  # crowd: difficult
        (3, 2, [300, 300, 40, 40], 0),  # sticks out: the reader clips it
        (4, 2, [100.2, 100.2, 0.2, 0.2], 0),  # under a pixel
    ]
    data = {
        "images": [
            {"id": k + 1, "file_name": f"00000{k}.jpg", "width": 320, "height": 320}
            for k in range(3)
        ],
        "annotations": [
            {"id": i, "image_id": image, "category_id": 7, "bbox": box, "iscrowd": crowd}
            for i, image, box, crowd in boxes
        ],
        "categories": [{"id": 7, "name": "thing"}],
    }
    (root / "annotations").mkdir()
    (root / "annotations" / "instances_train.json").write_text(json.dumps(data))
    return root


def test_fractional_boxes_difficult_and_empty_images_to_voc(shapes, tmp_path):
    source = coco_source(tmp_path, shapes)
    original = read(source, "train")
    report = convert_dataset(source, "voc", tmp_path / "voc")
    assert report.counts["rounded"] == 2  # the fractional box and the one under a pixel
    assert report.counts["widened"] == 1
    assert 0.3 < report.largest_rounding <= 0.5
    assert report.counts["difficult"] == 1 and report.counts["empty"] == 1
    notes = "\n".join(report.notes)
    assert "2 boxes with fractional coordinates rounded to the nearest pixel" in notes
    assert "1 box under a pixel wide or high made one pixel" in notes
    assert "1 image without boxes written as XMLs without objects" in notes
    # The COCO reader clipped the box sticking out (and says so); nothing left to clip here.
    assert "sticking out" not in notes and "box clipped: 1" in notes
    assert report.reader_warnings and any(f == "box clipped" for _, f, _ in report.reader_warnings)

    xml = (tmp_path / "voc" / "VOC2007" / "Annotations" / "000000.xml").read_text()
    # 10.3..60.5 x 20.6..61.0 rounds (half up) to 10..61 x 21..61, written 1-based on the left.
    assert "<xmin>11</xmin><ymin>22</ymin><xmax>61</xmax><ymax>61</ymax>" in xml
    assert "<difficult>1</difficult>" in xml
    empty = (tmp_path / "voc" / "VOC2007" / "Annotations" / "000002.xml").read_text()
    assert "<object>" not in empty and "<width>320</width>" in empty

    back = objects(read(tmp_path / "voc", "train"))
    want = objects(original)
    assert back["000002"][1].shape == (0, 4)
    np.testing.assert_allclose(back["000000"][1], want["000000"][1], atol=0.5)
    np.testing.assert_array_equal(back["000000"][2], [False, True])
    np.testing.assert_array_equal(back["000001"][1][0], [300, 300, 320, 320])  # clipped
    np.testing.assert_array_equal(back["000001"][1][1], [100, 100, 101, 101])  # one pixel


def test_difficult_boxes_in_yolo_and_coco(shapes, tmp_path):
    source = coco_source(tmp_path, shapes)
    kept = convert_dataset(source, "yolo", tmp_path / "kept")
    assert kept.counts["difficult"] == 1
    assert any(
        "no difficult flag: 1 difficult box written as ordinary boxes" in n for n in kept.notes
    )
    kept_label = (tmp_path / "kept" / "labels" / "train" / "000000.txt").read_text().splitlines()
    assert len(kept_label) == 2
    assert (tmp_path / "kept" / "labels" / "train" / "000002.txt").read_text() == ""

    dropped = convert_dataset(source, "yolo", tmp_path / "dropped", drop_difficult=True)
    assert dropped.counts["difficult_dropped"] == 1 and dropped.counts["difficult"] == 0
    assert any("1 difficult box left out" in n for n in dropped.notes)
    label = (tmp_path / "dropped" / "labels" / "train" / "000000.txt").read_text().splitlines()
    assert label == kept_label[:1]  # the crowd box, second, is gone

    coco = convert_dataset(source, "coco", tmp_path / "coco_out")
    data = json.loads((tmp_path / "coco_out" / "annotations" / "instances_train.json").read_text())
    assert [a["iscrowd"] for a in data["annotations"]] == [0, 1, 0, 0]
    assert data["categories"] == [{"id": 1, "name": "thing", "supercategory": ""}]
    assert [i["id"] for i in data["images"]] == [1, 2, 3]  # COCO's own ids kept
    assert data["annotations"][0]["bbox"] == [10.3, 20.6, 50.2, 40.4]
    assert any("iscrowd=1" in n for n in coco.notes)


def test_lines_source_sizes_from_headers_and_clipping(shapes, tmp_path):
    dataset = read(shapes, "val", (shapes / "classes.txt").read_text().split())
    # Push one box 30 px out of its 320x320 image: lines carry no size, so nobody clipped it.
    dataset.records[0].boxes[0] = [290, 10, 350, 60]
    lines = write_annotation_lines(
        dataset, tmp_path / "2007_val.txt", tmp_path / "2007_classes.txt"
    )
    broken = tmp_path / "broken.jpg"
    broken.write_text("not an image")
    with open(lines, "a") as f:
        f.write(f"{broken} 1,2,3,4,0\n")
    report = convert_dataset(lines, "coco", tmp_path / "out")
    assert report.counts["unreadable"] == 1 and report.skipped[0][0] == str(broken)
    assert any(n.startswith("1 image of unknown size with an unreadable") for n in report.notes)
    assert [s.name for s in report.splits] == ["val"]  # named after the file
    assert report.class_names == dataset.class_names  # 2007_classes.txt beside it
    assert report.counts["size_from_header"] == 2 and report.counts["clipped"] == 1
    notes = "\n".join(report.notes)
    assert (
        "2 images without a known size in the source: size read from the image file's header"
        in notes
    )
    assert "1 box sticking out of their image clipped to it" in notes
    data = json.loads((tmp_path / "out" / "annotations" / "instances_val.json").read_text())
    assert {(i["width"], i["height"]) for i in data["images"]} == {(320, 320)}
    assert data["annotations"][0]["bbox"] == [290.0, 10.0, 30.0, 50.0]
    # A one-split source takes one name for its split.
    renamed = convert_dataset(lines, "yolo", tmp_path / "named", ["train"])
    assert [s.name for s in renamed.splits] == ["train"]


def nested_yolo(tmp_path: Path) -> Path:
    """A YOLO root whose train split holds a/x.jpg (40x30) and b/x.png (20x10): one stem."""
    root = tmp_path / "nested"
    for folder, suffix, size in (("a", ".jpg", (40, 30)), ("b", ".png", (20, 10))):
        (root / "images" / "train" / folder).mkdir(parents=True)
        (root / "labels" / "train" / folder).mkdir(parents=True)
        Image.new("RGB", size, "white").save(root / "images" / "train" / folder / f"x{suffix}")
        (root / "labels" / "train" / folder / "x.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (root / "classes.txt").write_text("dot\n")
    return root


def test_same_stems_are_renamed_and_png_stays_png(tmp_path):
    root = nested_yolo(tmp_path)
    for to in ("voc", "yolo", "coco"):
        report = convert_dataset(root, to, tmp_path / to)
        assert report.renamed == [(str(root / "images" / "train" / "b" / "x.png"), "x__b.png")]
        assert any("1 image renamed" in note for note in report.notes)
        back = objects(read(tmp_path / to, "train"))
        assert sorted(back) == ["x", "x__b"]
        atol = 0.5 if to == "voc" else 1e-3  # VOC rounds 7.5 to 8
        np.testing.assert_allclose(back["x"][1], [[10, 7.5, 30, 22.5]], atol=atol)
        np.testing.assert_allclose(back["x__b"][1], [[5, 2.5, 15, 7.5]], atol=atol)
    # read_voc takes any image suffix in JPEGImages/: the PNG stays a PNG.
    png = tmp_path / "voc" / "VOC2007" / "JPEGImages" / "x__b.png"
    assert Image.open(png).format == "PNG"
    voc = read_voc(tmp_path / "voc", "train")
    assert sorted(r.image.name for r in voc.records) == ["x.jpg", "x__b.png"]


def test_link_hard_links_the_images(shapes, tmp_path):
    report = convert_dataset(shapes, "coco", tmp_path / "out", ["val"], link=True)
    written = sorted((tmp_path / "out" / "val").iterdir())
    assert len(written) == report.splits[0].images > 0
    for image in written:
        assert image.stat().st_ino == (shapes / "JPEGImages" / image.name).stat().st_ino
    assert report.counts["link_fallback"] == 0
    assert any("hard-linked" in note for note in report.notes)


def test_output_folder_safety(shapes, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not written by attnyolo data convert"):
        convert_dataset(shapes, "yolo", foreign, overwrite=True)
    assert (foreign / "keep.txt").read_text() == "mine" and len(list(foreign.iterdir())) == 1

    out = tmp_path / "out"
    convert_dataset(shapes, "yolo", out)
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["complete"] and manifest["entries"] == ["images", "labels", "data.yaml"]
    with pytest.raises(FileExistsError, match="earlier conversion.*--overwrite"):
        convert_dataset(shapes, "yolo", out)
    # Replacing it removes what the earlier conversion wrote: no stale split is left behind.
    convert_dataset(shapes, "yolo", out, ["test"], overwrite=True)
    assert sorted(p.name for p in (out / "images").iterdir()) == ["test"]
    assert list(yaml.safe_load((out / "data.yaml").read_text())) == [
        "path",
        "test",
        "nc",
        "names",
    ]
    convert_dataset(shapes, "voc", out, ["val"], overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST, "VOC2007"])

    with pytest.raises(ValueError, match="holds the source"):
        convert_dataset(shapes, "voc", shapes.parent, overwrite=True)


def test_bad_input_is_a_clear_error(shapes, tmp_path):
    with pytest.raises(FileNotFoundError, match="data set not found: .*missing"):
        convert_dataset(tmp_path / "missing", "yolo", tmp_path / "a")
    with pytest.raises(ValueError, match="unknown output format 'darknet'"):
        convert_dataset(shapes, "darknet", tmp_path / "a")
    with pytest.raises(FileNotFoundError, match=r"no split 'minival'.*available splits"):
        convert_dataset(shapes, "yolo", tmp_path / "a", ["minival"])
    with pytest.raises(ValueError, match="split name 'my_train'"):
        convert_dataset(shapes, "yolo", tmp_path / "a", ["train=my_train"])
    with pytest.raises(ValueError, match="given twice"):
        convert_dataset(shapes, "yolo", tmp_path / "a", ["train", "val=train"])
    broken = tmp_path / "broken.yaml"
    broken.write_text("names: [a\ntrain: x\n")
    with pytest.raises(ValueError, match=f"{broken}: not valid YAML"):
        convert_dataset(broken, "voc", tmp_path / "a")
    bad_json = tmp_path / "instances_val.json"
    bad_json.write_text("{}")
    with pytest.raises(ValueError, match=f"{bad_json}: not a COCO instances file"):
        convert_dataset(bad_json, "voc", tmp_path / "a")
    lines = tmp_path / "lines.txt"
    lines.write_text(f"{shapes / 'JPEGImages' / '000000.jpg'} 1,2,3,4,0\n")
    with pytest.raises(ValueError, match="one split"):
        convert_dataset(lines, "voc", tmp_path / "a", ["train", "val"], classes=["a"])
    with pytest.raises(ValueError, match="class names are needed"):
        convert_dataset(lines, "voc", tmp_path / "a")
    (tmp_path / "map_out" / "ground-truth").mkdir(parents=True)
    with pytest.raises(ValueError, match="no images"):
        convert_dataset(tmp_path / "map_out", "voc", tmp_path / "a")
    assert not (tmp_path / "a").exists()  # nothing written by a failed conversion


def test_cli_convert(shapes, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["data", "convert", str(shapes), "--to", "yolo", "-o", str(out)]
    main([*argv, "--split", "trainval=train", "--split", "test=val", "--link"])
    lines = capsys.readouterr().out.splitlines()
    images, boxes = count(shapes, "trainval")
    assert lines[0] == f"train (from trainval): {images} images, {boxes} boxes"
    images, boxes = count(shapes, "test")
    assert lines[1] == f"val (from test): {images} images, {boxes} boxes"
    assert f"note: class names from {shapes / 'classes.txt'}" in lines
    assert lines[-1] == f"data: {out / 'data.yaml'}"
    assert len(read(out / "data.yaml", "train")) == count(shapes, "trainval")[0]

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "holds an earlier conversion" in capsys.readouterr().err
    main([*argv, "--overwrite", "--split", "val", "--drop-difficult"])
    images, boxes = count(shapes, "val")
    assert capsys.readouterr().out.splitlines()[0] == f"val: {images} images, {boxes} boxes"


def test_voc20_subset(shared_data, tmp_path):
    """A few real VOC images: 6 trainval and 6 test, through YOLO and COCO back to VOC."""
    voc20 = shared_data / "voc20" / "VOC2007"
    if not voc20.is_dir():
        pytest.skip(f"voc20 is absent ({voc20})")
    subset = tmp_path / "voc20" / "VOC2007"
    (subset / "ImageSets" / "Main").mkdir(parents=True)
    for folder in ("JPEGImages", "Annotations"):
        (subset / folder).symlink_to(voc20 / folder)  # read-only: nothing is written there
    for split in ("trainval", "test"):
        ids = (voc20 / "ImageSets" / "Main" / f"{split}.txt").read_text().split()[:6]
        (subset / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    names = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair"]
    names += ["cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant"]
    names += ["sheep", "sofa", "train", "tvmonitor"]
    originals = {split: read(subset, split, names) for split in ("trainval", "test")}

    yolo = convert_dataset(subset, "yolo", tmp_path / "yolo", ["trainval=train", "test=val"], names)
    assert [s.images for s in yolo.splits] == [6, 6]
    coco = convert_dataset(yolo.data_file, "coco", tmp_path / "coco")
    assert [s.name for s in coco.splits] == ["train", "val"]
    voc = convert_dataset(tmp_path / "coco", "voc", tmp_path / "voc")
    assert voc.counts["rounded"] == 0 and voc.class_names == names
    for source, split in (("trainval", "train"), ("test", "val")):
        assert_same(read(yolo.data_file, split), originals[source], atol=1e-3)
        assert_same(read(tmp_path / "coco", split), originals[source], atol=1e-3)
        assert_same(read(tmp_path / "voc", split, names), originals[source], atol=0)
    assert not any((voc20 / "JPEGImages").glob(".*"))  # no temporary file left in the source

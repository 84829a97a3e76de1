"""The synthetic shapes data set: deterministic, readable as VOC, and a real detection task."""

import json
import os
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from attnyolo.data import DatasetWarning, read_voc
from attnyolo.data.synthetic import CLASS_NAMES, MANIFEST, generate_shapes

NUM_IMAGES = 40


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return generate_shapes(tmp_path_factory.mktemp("shapes"), NUM_IMAGES, seed=0)


def tree_bytes(voc: Path) -> dict[str, bytes]:
    return {str(p.relative_to(voc)): p.read_bytes() for p in sorted(voc.rglob("*")) if p.is_file()}


def read_clean(voc: Path, split: str):
    """Reads a split and fails on any `DatasetWarning`: generated data has no faults to repair."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = read_voc(voc, split, voc / "classes.txt")
    faults = [str(w.message) for w in caught if issubclass(w.category, DatasetWarning)]
    assert not faults
    return dataset


def test_same_seed_same_bytes_other_seed_differs(shapes, tmp_path):
    again = generate_shapes(tmp_path / "again", NUM_IMAGES, seed=0)
    other = generate_shapes(tmp_path / "other", NUM_IMAGES, seed=1)
    first = tree_bytes(shapes)
    assert tree_bytes(again) == first
    other_files = tree_bytes(other)
    assert other_files.keys() == first.keys()
    differing = [
        name for name in first if name.endswith(".jpg") and other_files[name] != first[name]
    ]
    assert len(differing) == NUM_IMAGES


def test_image_depends_on_seed_and_index_only(shapes, tmp_path):
    # A smaller set is the start of a larger one: image i is drawn from its own stream (seed, i).
    small = generate_shapes(tmp_path, 5, seed=0)
    for folder in ("JPEGImages", "Annotations"):
        for path in sorted((small / folder).iterdir()):
            assert path.read_bytes() == (shapes / folder / path.name).read_bytes()


def test_layout_and_splits(shapes):
    assert (shapes / "classes.txt").read_text().split() == list(CLASS_NAMES)
    main = shapes / "ImageSets" / "Main"
    ids = {s: (main / f"{s}.txt").read_text().split() for s in ("train", "val", "trainval", "test")}
    assert [len(ids[s]) for s in ("train", "val", "test")] == [32, 4, 4]
    assert ids["trainval"] == ids["train"] + ids["val"]
    assert sorted(ids["trainval"] + ids["test"]) == [f"{i:06d}" for i in range(NUM_IMAGES)]
    manifest = json.loads((shapes / MANIFEST).read_text())
    assert manifest["complete"] and manifest["seed"] == 0 and manifest["num_images"] == NUM_IMAGES
    for split in ("train", "val", "test"):
        assert len(read_clean(shapes, split)) == len(ids[split])


def test_two_splits_leave_test_empty(tmp_path):
    voc = generate_shapes(tmp_path, 10, size=96, splits=(0.7, 0.3))
    main = voc / "ImageSets" / "Main"
    sizes = [len((main / f"{s}.txt").read_text().split()) for s in ("train", "val", "test")]
    assert sizes == [7, 3, 0]


def test_boxes_are_a_real_detection_task(shapes):
    dataset = read_clean(shapes, "trainval")
    test = read_clean(shapes, "test")
    assert dataset.class_names == list(CLASS_NAMES)
    records = dataset.records + test.records
    counts = np.array([len(r.boxes) for r in records])
    assert counts.min() >= 1 and counts.max() <= 6 and counts.mean() > 2.0
    classes = np.concatenate([r.classes for r in records])
    assert set(classes) == set(range(len(CLASS_NAMES)))  # every class, none dominant
    assert np.bincount(classes).max() < 0.35 * len(classes)
    sides = []
    for record in records:
        assert record.size == (320, 320)
        boxes = record.boxes
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 320).all()
        assert (boxes[:, 2:] > boxes[:, :2]).all()
        sides.append((boxes[:, 2:] - boxes[:, :2]).max(1))
    sides = np.concatenate(sides)
    assert 30 <= sides.min() < 45 and sides.max() > 120  # small to large objects
    centres = np.concatenate([(r.boxes[:, :2] + r.boxes[:, 2:]) / 2 for r in records])
    assert centres.std(0).min() > 50  # anywhere in the image, not at fixed places


def _centre_against_ring(image: np.ndarray, box: np.ndarray) -> float:
    """The colour distance between a box's centre patch and a ring just outside the box."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    cx, cy, r = (x1 + x2) // 2, (y1 + y2) // 2, max(1, min(w, h) // 8)
    centre = image[cy - r : cy + r + 1, cx - r : cx + r + 1].reshape(-1, 3).mean(0)
    m = max(2, min(w, h) // 4)
    X1, Y1 = max(0, x1 - m), max(0, y1 - m)
    X2, Y2 = min(image.shape[1], x2 + m), min(image.shape[0], y2 + m)
    ring = np.ones((Y2 - Y1, X2 - X1), bool)
    ring[y1 - Y1 : y2 - Y1, x1 - X1 : x2 - X1] = False
    return float(np.linalg.norm(centre - image[Y1:Y2, X1:X2][ring].mean(0)))


def test_objects_stand_out_from_the_background(shapes):
    # Every shape covers its box centre and is coloured apart from what lies behind it, so the
    # centre differs from the surroundings far more than in boxes of background of the same size.
    rng = np.random.default_rng(0)
    on_objects, on_background = [], []
    for record in read_clean(shapes, "trainval").records:
        image = cv2.imread(str(record.image)).astype(np.float32)
        boxes = record.boxes.astype(int)
        for box in boxes:
            on_objects.append(_centre_against_ring(image, box))
            w, h = box[2:] - box[:2]
            for _ in range(20):
                x, y = rng.integers(0, 320 - w), rng.integers(0, 320 - h)
                free = (
                    (np.minimum(x + w, boxes[:, 2]) <= np.maximum(x, boxes[:, 0]))
                    | (np.minimum(y + h, boxes[:, 3]) <= np.maximum(y, boxes[:, 1]))
                ).all()
                if free:
                    on_background.append(
                        _centre_against_ring(image, np.array([x, y, x + w, y + h]))
                    )
                    break
    assert np.median(on_objects) > 60
    assert np.median(on_background) < 30


def test_skips_when_complete_and_redoes_otherwise(tmp_path):
    voc = generate_shapes(tmp_path, 6, seed=3)
    image = voc / "JPEGImages" / "000002.jpg"
    stamp = image.stat().st_mtime_ns
    os.utime(image, ns=(1, 1))
    assert generate_shapes(tmp_path, 6, seed=3) == voc
    assert image.stat().st_mtime_ns == 1  # not rewritten

    image.unlink()  # a missing file: redone
    generate_shapes(tmp_path, 6, seed=3)
    assert image.is_file() and image.stat().st_mtime_ns >= stamp

    manifest = json.loads((voc / MANIFEST).read_text())
    (voc / MANIFEST).write_text(json.dumps({**manifest, "complete": False}))  # interrupted: redone
    os.utime(image, ns=(1, 1))
    generate_shapes(tmp_path, 6, seed=3)
    assert image.stat().st_mtime_ns > 1

    generate_shapes(tmp_path, 4, seed=3)  # fewer images: the extra ones go
    assert sorted(p.name for p in (voc / "Annotations").iterdir()) == [
        f"{i:06d}.xml" for i in range(4)
    ]
    assert not list(voc.rglob(".*.tmp*"))  # no temporary file left behind


def test_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "VOC2007").mkdir()
    (tmp_path / "VOC2007" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not written by generate_shapes"):
        generate_shapes(tmp_path, 2)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_images": 0}, "num_images"),
        ({"size": 32}, "size"),
        ({"splits": (0.5, 0.2)}, "summing to 1"),
        ({"splits": (1.2, -0.2)}, "non-negative"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate_shapes(tmp_path, **kwargs)


def _hue_near_class(voc: Path) -> float:
    """The fraction of objects whose centre hue lies within 15 (of OpenCV's 180) of their class's
    own hue in the `class` colour mode."""
    class_hues = np.array([0.0, 30.0, 60.0, 90.0, 120.0, 150.0])  # synthetic.py's _CLASS_HUES
    near = []
    for record in read_clean(voc, "trainval").records:
        hsv = cv2.cvtColor(cv2.imread(str(record.image)), cv2.COLOR_BGR2HSV).astype(np.float32)
        for box, cls in zip(record.boxes.astype(int), record.classes, strict=True):
            cx, cy = (box[:2] + box[2:]) // 2
            hue = np.median(hsv[cy - 1 : cy + 2, cx - 1 : cx + 2, 0])
            distance = abs(hue - class_hues[cls])
            near.append(min(distance, 180 - distance) <= 15)
    return float(np.mean(near))


def test_colour_modes_tie_hue_to_class_or_not(shapes, tmp_path):
    # `class`: the centre's hue names the class; `random`: it says nothing about it (15 of 90
    # hue units on either side: 1/6 of objects by chance).
    assert _hue_near_class(shapes) > 0.7
    random_colours = generate_shapes(tmp_path, NUM_IMAGES, seed=0, colour="random")
    assert _hue_near_class(random_colours) < 0.3
    manifest = json.loads((random_colours / MANIFEST).read_text())
    assert manifest["colour"] == "random"


def test_unknown_colour_mode(tmp_path):
    with pytest.raises(ValueError, match="colour must be one of class, random"):
        generate_shapes(tmp_path, 2, colour="grey")

"""Splitting a VOC folder as the original voc_annotation.py does."""

import random
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attnyolo.data import read_annotation_lines
from attnyolo.data.split import SmallDatasetWarning, format_split_table, split_voc

NAMES = ["cat", "dog", "fish"]

# read_voc reports the boxes of classes left out; these tests look at the split only.
pytestmark = pytest.mark.filterwarnings("ignore::attnyolo.data.DatasetWarning")


def make_voc(root: Path, num: int, rare_every: int = 1) -> Path:
    """A VOC root of `num` 16x16 images; image i has `i % 3 + 1` objects of classes cycling
    through cat and dog, a fish in every `rare_every`-th image, and a difficult dog in every
    fifth image."""
    voc = root / "VOC2007"
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (voc / folder).mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (16, 16))
    for i in range(num):
        stem = f"img{i:04d}"
        image.save(voc / "JPEGImages" / f"{stem}.jpg")
        objects = [(NAMES[(i + j) % 2], 0) for j in range(i % 3 + 1)]
        if i % rare_every == 0:
            objects.append(("fish", 0))
        if i % 5 == 0:
            objects.append(("dog", 1))
        xml = "".join(
            f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>2</xmin>"
            "<ymin>3</ymin><xmax>10</xmax><ymax>12</ymax></bndbox></object>"
            for name, difficult in objects
        )
        (voc / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><size><width>16</width><height>16</height></size>{xml}</annotation>"
        )
    return voc


def object_counts(voc: Path) -> dict[str, int]:
    """Non-difficult objects per class, counted from the XML text."""
    counts = dict.fromkeys(NAMES, 0)
    for path in (voc / "Annotations").glob("*.xml"):
        for part in path.read_text().split("<object>")[1:]:
            if "<difficult>0" in part:
                counts[part.split("<name>")[1].split("<")[0]] += 1
    return counts


def split_ids(voc: Path) -> dict[str, list[str]]:
    main = voc / "ImageSets" / "Main"
    return {
        s: (main / f"{s}.txt").read_text().split() for s in ("trainval", "train", "val", "test")
    }


@pytest.fixture
def voc(tmp_path) -> Path:
    return make_voc(tmp_path, 200)


def split_quietly(*args, **kwargs) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallDatasetWarning)
        return split_voc(*args, **kwargs)


def test_fractions_as_the_original(voc):
    result = split_quietly(voc)
    # int(200 * 0.9) = 180 trainval, int(180 * 0.9) = 162 train, 18 val, 20 test.
    assert result["counts"] == {"trainval": 180, "train": 162, "val": 18, "test": 20}
    ids = split_ids(voc)
    assert sorted(ids["train"] + ids["val"]) == ids["trainval"]
    assert sorted(ids["trainval"] + ids["test"]) == sorted(p.stem for p in voc.glob("*/*.xml"))
    assert not set(ids["train"]) & set(ids["val"])

    # The original's code on a sorted listing draws the same sets.
    random.seed(0)
    total = sorted(p.name for p in (voc / "Annotations").iterdir())
    trainval = random.sample(range(len(total)), int(len(total) * 0.9))
    train = random.sample(trainval, int(len(trainval) * 0.9))
    assert ids["train"] == [total[i][:-4] for i in range(len(total)) if i in train]
    assert ids["test"] == [total[i][:-4] for i in range(len(total)) if i not in trainval]


def test_seed_determinism(voc):
    split_quietly(voc, seed=5)
    first = split_ids(voc)
    split_quietly(voc, seed=5)
    assert split_ids(voc) == first
    split_quietly(voc, seed=6)
    assert split_ids(voc)["train"] != first["train"]


def test_per_class_counts_add_up(voc):
    result = split_quietly(voc, trainval_percent=0.8, train_percent=0.75)
    assert result["class_names"] == NAMES  # sorted names from the XMLs
    expected = object_counts(voc)
    for name in NAMES:
        assert sum(result["objects"][name].values()) == expected[name]
    assert sum(result["difficult"].values()) == 40  # a difficult dog in every fifth image
    ids = split_ids(voc)
    # Image i has i % 3 + 1 cats and dogs plus one fish: count the train objects from the ids.
    train = sum(int(stem[3:]) % 3 + 2 for stem in ids["train"])
    assert sum(counts["train"] for counts in result["objects"].values()) == train
    table = format_split_table(result)
    assert all(name in table for name in NAMES)
    assert str(result["images"]) in table.splitlines()[2]  # the images row, total column
    assert table.splitlines()[-1].split()[-1] == str(sum(expected.values()))


def test_given_names_and_empty_test(voc):
    result = split_quietly(voc, trainval_percent=1.0, class_names=["fish", "cat"])
    assert result["counts"]["test"] == 0 and split_ids(voc)["test"] == []
    assert list(result["objects"]) == ["fish", "cat"]  # dogs are not counted
    assert result["objects"]["fish"]["test"] == 0


def test_small_set_warnings(tmp_path):
    voc = make_voc(tmp_path, 40, rare_every=20)
    with pytest.warns(SmallDatasetWarning) as caught:
        result = split_voc(voc)
    messages = " ".join(str(w.message) for w in caught)
    assert "only 32 training images" in messages  # int(int(40 * 0.9) * 0.9) = int(32.4)
    assert "fish" in messages
    assert result["warnings"] and "fish" in result["warnings"][-1]


def test_no_warning_for_a_big_enough_set(voc):
    with warnings.catch_warnings():
        warnings.simplefilter("error", SmallDatasetWarning)
        assert split_voc(voc)["warnings"] == []


def test_no_objects_of_the_classes_warns(voc):
    with pytest.warns(SmallDatasetWarning, match="no object of the given classes"):
        split_voc(voc, class_names=["bird"])


def test_writes_annotation_lines(voc, tmp_path):
    result = split_quietly(voc, lines_dir=tmp_path / "lines")
    names = tmp_path / "lines" / "2007_classes.txt"
    assert names.read_text().split() == NAMES
    for split in ("train", "val"):
        lines = tmp_path / "lines" / f"2007_{split}.txt"
        assert result["files"][f"lines_{split}"] == str(lines)
        dataset = read_annotation_lines(lines, names)
        assert len(dataset) == result["counts"][split]
        boxes = np.concatenate([r.boxes for r in dataset.records])
        assert (boxes == [1, 2, 10, 12]).all()  # read_voc's continuous coordinates
        objects = sum(len(r.boxes) for r in dataset.records)
        assert objects == sum(counts[split] for counts in result["objects"].values())


def test_bad_arguments(tmp_path, voc):
    with pytest.raises(ValueError, match="trainval_percent"):
        split_voc(voc, trainval_percent=1.5)
    empty = tmp_path / "empty" / "VOC2007"
    (empty / "Annotations").mkdir(parents=True)
    (empty / "ImageSets").mkdir()
    with pytest.raises(ValueError, match="no .xml annotation"):
        split_voc(empty)

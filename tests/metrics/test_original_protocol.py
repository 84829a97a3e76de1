"""`protocol="original"`: the original scripts' `get_map` to the number. Hand-worked cases where it
parts from the VOC devkit, the map_out reader, a differential test against a loop-by-loop port of
get_map (`get_map_port.py`) on random map_out folders, and the command end to end.

`bench/check_get_map.py` runs the same comparison against the original's own code."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from attnyolo.cli import main
from attnyolo.data import load_dataset
from attnyolo.data.map_out import TextRecord, read_map_out
from attnyolo.engine.detection_files import read_detections
from attnyolo.metrics import evaluate_voc
from tests.metrics.get_map_port import get_map_port, write_random_map_out

A = [0, 0, 10, 10]
B = [20, 20, 30, 30]
FAR = [50, 50, 60, 60]


def gt(boxes, classes, difficult=None) -> dict:
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    difficult = np.zeros(len(boxes), bool) if difficult is None else np.asarray(difficult)
    return {"boxes": boxes, "classes": np.asarray(classes, np.int64), "difficult": difficult}


def det(boxes, scores, classes=None) -> dict:
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    classes = np.zeros(len(boxes), np.int64) if classes is None else np.asarray(classes)
    return {"boxes": boxes, "scores": np.asarray(scores, np.float64), "classes": classes}


def both(ground_truth, detections, num_classes=1):
    return [
        evaluate_voc(ground_truth, detections, num_classes, protocol=p) for p in ("voc", "original")
    ]


# Hand-worked cases.


def test_top_detection_when_none_reaches_the_threshold():
    # GT A and B; detections 0.4 on A (TP) and 0.3 on FAR (FP); threshold 0.5.
    # No detection reaches 0.5, and get_map's index starts at 0: it reads the top detection,
    #   tp = 1, fp = 0: P = 1/1 = 1, R = 1/2 = 0.5, F1 = 2 * 1 * 0.5 / 1.5 = 2/3.
    # The devkit reading counts no detection: P = R = F1 = 0.
    voc, original = both([gt([A, B], [0, 0])], [det([A, FAR], [0.4, 0.3])])
    c = voc.per_class[0]
    assert (c.precision_at, c.recall_at, c.f1_at, c.tp, c.fp) == (0.0, 0.0, 0.0, 0, 0)
    c = original.per_class[0]
    assert (c.precision_at, c.recall_at, c.tp, c.fp) == (1.0, 0.5, 1, 0)
    assert c.f1_at == pytest.approx(2 / 3, abs=1e-15)
    assert voc.map == original.map == 0.5  # AP: the curve is the same: (R 0.5, P 1), (0.5, 0.5)


def test_top_detection_on_a_difficult_box_reads_zero():
    # A is difficult, B not. Detections 0.4 on A (ignored) and 0.3 on B (TP); threshold 0.5.
    # Index 0 is the ignored detection: cumulative tp = fp = 0 there, so P = 0 / max(0, 1) = 0,
    # R = 0 / 1 = 0, F1 = 0; AP is 1 (the one counted detection is a hit).
    _, original = both([gt([A, B], [0, 0], [True, False])], [det([A, B], [0.4, 0.3])])
    c = original.per_class[0]
    assert (c.precision_at, c.recall_at, c.f1_at, c.ap) == (0.0, 0.0, 0.0, 1.0)
    assert c.num_ignored == 1


def test_threshold_read_at_an_ignored_detection():
    # GT A, B (class 0) and C=FAR difficult. Detections 0.9 on A (TP), 0.8 on A (duplicate, FP),
    # 0.6 on C (ignored), 0.4 on B (TP). The last index with score >= 0.5 is the ignored one:
    # the counts there are those after 0.8, tp = 1, fp = 1: P = 1/2, R = 1/2, in both readings.
    ground_truth = [gt([A, B, FAR], [0, 0, 0], [False, False, True])]
    detections = [det([A, A, FAR, B], [0.9, 0.8, 0.6, 0.4])]
    for result in both(ground_truth, detections):
        c = result.per_class[0]
        assert (c.precision_at, c.recall_at, c.f1_at) == (0.5, 0.5, 0.5)


def test_lamr_is_zero_for_a_class_never_detected():
    # Class 0 has ground truth and no detection at all: get_map's log_average_miss_rate gets an
    # empty curve and returns 0; the devkit reading says 1 (everything missed). Class 1's only
    # detection is ignored (a difficult box): a curve of one flat point, R = 0, FPPI = 0, so the
    # miss rate is 1 at all 9 FPPI points and LAMR = exp(mean(log 1)) = 1 in both readings.
    ground_truth = [gt([A, B, FAR], [0, 1, 1], [False, False, True])]
    voc, original = both(ground_truth, [det([FAR], [0.9], [1])], num_classes=2)
    assert voc.per_class[0].lamr == 1.0 and original.per_class[0].lamr == 0.0
    assert voc.per_class[1].lamr == original.per_class[1].lamr == 1.0
    assert voc.per_class[0].ap == original.per_class[0].ap == 0.0


def test_inclusive_pixels_make_a_049_overlap_a_hit():
    # GT [0, 0, 10, 10], detection [0, 0, 10, 4.9].
    # Continuous: 10 * 4.9 / (10 * 10) = 0.49 < 0.5: a false positive, AP 0.
    # get_map adds 1 to widths, heights and the intersection: 11 * 5.9 = 64.9 over
    # 11 * 5.9 + 11 * 11 - 64.9 = 121, so IoU = 0.536 >= 0.5: a hit, AP 1.
    voc, original = both([gt([A], [0])], [det([[0, 0, 10, 4.9]], [0.9])])
    assert voc.map == 0.0 and original.map == 1.0
    assert original.pixel_offset == 1.0 and original.protocol == "original"
    # An explicit offset still wins over the protocol's.
    explicit = evaluate_voc(
        [gt([A], [0])], [det([[0, 0, 10, 4.9]], [0.9])], 1, pixel_offset=0.0, protocol="original"
    )
    assert explicit.map == 0.0


def test_unknown_protocol():
    with pytest.raises(ValueError, match=r"protocol must be one of \['original', 'voc'\]"):
        evaluate_voc([gt([A], [0])], [det([A], [0.5])], 1, protocol="devkit")


# The map_out reader.


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_map_out_reader(tmp_path):
    root = tmp_path / "map_out"
    write(root / "ground-truth/a.txt", "traffic light 1 2 3.3 4\ncat 0.1 0.2 5 6 difficult\n\n")
    write(root / "ground-truth/a-1.txt", "cat 1 1 9 9\n")
    write(root / "ground-truth/.hidden.txt", "nonsense\n")
    write(root / "detection-results/a.txt", "potted plant 0.5 1 1 2 2\n")
    write(root / "detection-results/a-1.txt", "")
    dataset = load_dataset(root, require_images=False)
    # Files sorted by name with ".txt": "a-1.txt" < "a.txt" ('-' < '.'), unlike "a" < "a-1".
    assert [r.image_id for r in dataset.records] == ["a-1", "a"]
    # Sorted union of ground-truth and detection classes.
    assert dataset.class_names == ["cat", "potted plant", "traffic light"]
    a = dataset.records[1]
    assert isinstance(a, TextRecord) and a.boxes.dtype == np.float64
    assert a.boxes.tolist() == [[1, 2, 3.3, 4], [0.1, 0.2, 5, 6]]  # as written, no VOC shift
    assert a.classes.tolist() == [2, 0] and a.difficult.tolist() == [False, True]
    assert a.image == root / "ground-truth/a.txt" and a.size is None
    assert load_dataset(root / "ground-truth", require_images=False).class_names == (
        dataset.class_names
    )
    found = read_detections(root / "detection-results", dataset)
    assert found[1].scores.dtype == np.float64 and found[1].classes.tolist() == [1]
    with pytest.raises(ValueError, match="map_out folder holds ground truth but no images"):
        load_dataset(root)  # a model would need images


@pytest.mark.parametrize(
    "line, message",
    [
        ("cat 1 2 3", r"a.txt:2: expected 'class x1 y1 x2 y2' or"),
        ("cat 1 2 3 four", r"a.txt:2: expected"),
        ("cat 5 2 3 4", r"a.txt:2: box .* has x2 < x1"),
        ("cat 1 2 inf 4 difficult", r"a.txt:2: non-finite value"),
    ],
)
def test_map_out_reader_errors_name_file_and_line(tmp_path, line, message):
    write(tmp_path / "ground-truth/a.txt", f"cat 1 2 3 4\n{line}\n")
    with pytest.raises(ValueError, match=message):
        read_map_out(tmp_path)


# Differential: random map_out folders against the port of get_map.


def evaluate_folder(folder, **options):
    dataset = read_map_out(folder)
    found = read_detections(folder / "detection-results", dataset)
    result = evaluate_voc(dataset.records, found, len(dataset.class_names), **options)
    return dataset, result


@pytest.mark.parametrize("seed", range(10))
def test_equals_a_port_of_get_map(tmp_path, seed):
    folder = write_random_map_out(tmp_path, seed, images=60)
    expected = get_map_port(folder)
    dataset, result = evaluate_folder(folder, protocol="original")
    by_name = dict(zip(dataset.class_names, result.per_class, strict=True))
    assert sorted(name for name, c in by_name.items() if c.num_gt) == sorted(expected["classes"])
    assert result.map == pytest.approx(expected["map"], abs=1e-6)
    for name, figures in expected["classes"].items():
        c = by_name[name]
        ours = {
            "ap": c.ap,
            "precision": c.precision_at,
            "recall": c.recall_at,
            "f1": c.f1_at,
            "lamr": c.lamr,
        }
        assert ours == pytest.approx(figures, abs=1e-6), name
    assert all(math.isnan(c.ap) for c in by_name.values() if not c.num_gt)


def test_random_folders_hold_the_cases_that_matter(tmp_path):
    """The generator's folders, all seeds together, do reach every case the protocols treat
    differently or that a port could get wrong."""
    seen = set()
    for seed in range(10):
        folder = write_random_map_out(tmp_path / str(seed), seed, images=60)
        dataset, result = evaluate_folder(folder, protocol="original")
        if any(" " in name for name in dataset.class_names):
            seen.add("class name with a space")
        if any(not len(record.classes) for record in dataset.records):
            seen.add("image without ground truth")
        boxes = np.concatenate([record.boxes for record in dataset.records])
        seen.add("float coordinates" if (boxes != np.round(boxes)).any() else "whole pixels")
        for k, c in enumerate(result.per_class):
            has_boxes = any(k in record.classes for record in dataset.records)
            if c.num_ignored:
                seen.add("detection on a difficult box")
            if has_boxes and not c.num_gt:
                seen.add("class with only difficult boxes")
            if not has_boxes and c.num_detections:
                seen.add("detections of a class without ground truth")
            if c.num_gt and not c.num_detections:
                seen.add("class never detected")
            if c.num_gt and c.num_detections and not (c.scores >= 0.5).any():
                seen.add("no detection reaches the threshold")
            if len(c.scores) != len(np.unique(c.scores)):
                seen.add("tied scores")
            if c.num_gt and c.fp < c.num_detections - c.num_ignored - c.tp:
                seen.add("detections below the threshold")
    assert seen == {
        "class name with a space",
        "image without ground truth",
        "float coordinates",
        "whole pixels",
        "detection on a difficult box",
        "class with only difficult boxes",
        "detections of a class without ground truth",
        "class never detected",
        "no detection reaches the threshold",
        "tied scores",
        "detections below the threshold",
    }


def test_cli_end_to_end(tmp_path, capsys):
    folder = write_random_map_out(tmp_path / "map_out", seed=3, images=30)
    expected = get_map_port(folder)
    # A missing detections file is an image without detections (get_map would stop): the same
    # figures as its empty file, and a note says so.
    empty = next(p for p in sorted((folder / "detection-results").iterdir()) if not p.read_text())
    empty.unlink()
    out = tmp_path / "report"
    main(
        ["evaluate", "--protocol", "original", "--data", str(folder), "-o", str(out), "--no-plots"]
    )
    printed = capsys.readouterr().out
    assert "protocol original" in printed and "note: 1 of 30 images" in printed
    assert empty.stem in printed
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["protocol"] == "original"
    assert report["settings"]["pixel_offset"] == 1.0
    assert report["voc"]["map"] == pytest.approx(expected["map"], abs=1e-6)
    ours = {c["class"]: c for c in report["classes"] if c["num_gt"]}
    assert sorted(ours) == sorted(expected["classes"])
    for name, figures in expected["classes"].items():
        assert ours[name]["ap"] == pytest.approx(figures["ap"], abs=1e-6)
        assert ours[name]["lamr"] == pytest.approx(figures["lamr"], abs=1e-6)
    assert "(protocol original)" in (out / "report.md").read_text()
    assert "- protocol: `original`" in (out / "report.md").read_text()

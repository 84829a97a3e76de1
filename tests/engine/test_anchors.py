"""Anchors: k-means under 1 - IoU, box sizes in input pixels, and the original's anchors file."""

import json

import numpy as np
import pytest

from attnyolo.data import Dataset, Record
from attnyolo.engine.anchors import (
    anchors_for_dataset,
    kmeans_anchors,
    mean_iou,
    plot_anchors,
    read_anchors,
    run_anchors,
    wh_iou,
    write_anchors,
)

pytestmark = pytest.mark.filterwarnings("ignore::attnyolo.data.DatasetWarning")


def three_clusters() -> tuple[np.ndarray, np.ndarray]:
    """Boxes around 10x12, 40x80 and 150x100 (within 10%), and each cluster's median."""
    rng = np.random.default_rng(42)
    centres = np.array([[10, 12], [40, 80], [150, 100]], np.float64)
    clusters = [c * rng.uniform(0.9, 1.1, (31, 2)) for c in centres]
    return np.concatenate(clusters), np.array([np.median(c, axis=0) for c in clusters])


@pytest.mark.parametrize("seed", range(5))
def test_recovers_well_separated_clusters_exactly(seed):
    wh, medians = three_clusters()
    anchors, iou = kmeans_anchors(wh, k=3, seed=seed)
    # Each anchor is its cluster's median (the update rule), and they come sorted by area.
    np.testing.assert_array_equal(anchors, medians)
    assert np.all(np.diff(anchors.prod(1)) > 0)
    assert iou == pytest.approx(mean_iou(wh, medians))
    assert 0.8 < iou < 1


def test_mean_iou_by_hand():
    # Centred boxes overlap in min(w) x min(h): 2x2 against 2x2 is 1; 4x2 against 2x2 is
    # 4 / (8 + 4 - 4) = 0.5; the mean is 0.75.
    assert mean_iou(np.array([[2, 2], [4, 2]]), np.array([[2, 2]])) == pytest.approx(0.75)
    np.testing.assert_allclose(wh_iou(np.array([[4, 2]]), np.array([[2, 2], [4, 4]])), [[0.5, 0.5]])
    # Two clusters: three 2x2 boxes, and 10x10 with 10x20 whose median is 10x15.
    # IoUs: 1, 1, 1, 100 / 150 and 150 / 200; the mean is (3 + 2/3 + 3/4) / 5 = 0.883333...
    wh = np.array([[2, 2], [2, 2], [2, 2], [10, 10], [10, 20]], np.float64)
    anchors, iou = kmeans_anchors(wh, k=2, seed=0)
    np.testing.assert_array_equal(anchors, [[2, 2], [10, 15]])
    assert iou == pytest.approx((3 + 2 / 3 + 3 / 4) / 5)


def test_deterministic_with_the_seed():
    wh = np.random.default_rng(0).lognormal(3.5, 0.8, (2000, 2))
    first, iou = kmeans_anchors(wh, k=6, seed=7)
    again, iou_again = kmeans_anchors(wh, k=6, seed=7)
    np.testing.assert_array_equal(first, again)
    assert iou == iou_again
    assert first.shape == (6, 2) and np.all(np.diff(first.prod(1)) >= 0)


def test_bad_box_sizes():
    with pytest.raises(ValueError, match="distinct"):
        kmeans_anchors(np.array([[5, 5]] * 10 + [[6, 6]]), k=3)
    with pytest.raises(ValueError, match=r"\(M, 2\)"):
        kmeans_anchors(np.ones((4, 3)))
    with pytest.raises(ValueError, match="positive"):
        kmeans_anchors(np.array([[1, 1], [0, 2], [3, 3]]), k=2)


def test_box_sizes_in_input_pixels(tmp_path):
    record = Record(
        tmp_path / "a.jpg",
        boxes=[[0, 0, 100, 50], [10, 10, 30, 30]],
        classes=[0, 0],
        difficult=[False, True],
        size=(200, 400),
    )
    dataset = Dataset([record], ["thing"])
    # Stretched to 416x416 as the original: 100 * 416/400 = 104 wide, 50 * 416/200 = 104 high.
    np.testing.assert_allclose(anchors_for_dataset(dataset, 416), [[104, 104]])
    # Letterboxed: both sides scaled by min(416/400, 416/200) = 1.04. The difficult box is out.
    np.testing.assert_allclose(anchors_for_dataset(dataset, 416, letterbox=True), [[104, 52]])
    np.testing.assert_allclose(anchors_for_dataset(dataset, (208, 416)), [[104, 52]])
    with pytest.raises(ValueError, match="no box"):
        anchors_for_dataset(Dataset([Record(tmp_path / "b.jpg", size=(5, 5))], ["thing"]), 416)


def test_anchors_file_round_trip(tmp_path):
    path = tmp_path / "yolo_anchors.txt"
    write_anchors(
        path, np.array([[10.4, 14], [23, 27.6], [37, 58], [81, 82], [135, 169], [344, 319]])
    )
    assert path.read_text() == "10,14, 23,28, 37,58, 81,82, 135,169, 344,319\n"
    np.testing.assert_array_equal(
        read_anchors(path), [[10, 14], [23, 28], [37, 58], [81, 82], [135, 169], [344, 319]]
    )
    # The original's file (no newline) and Darknet's spacing read the same.
    path.write_text("10,14, 23,27, 37,58, 81,82, 135,169, 344,319")
    assert read_anchors(path).tolist()[0] == [10, 14]
    path.write_text("10,14,  23,27,  37,58\n81,82\n135,169,  344,319\n")
    assert read_anchors(path).shape == (6, 2)
    assert read_anchors(path, count=None).shape == (6, 2)


@pytest.mark.parametrize(
    "text, count, message",
    [
        ("", 6, "empty anchors file"),
        ("10,14, 23", None, "odd number"),
        ("10,14, 23,27", 6, "2 anchors, expected 6"),
        ("10,14, 23,abc", None, "'abc' is not a number"),
        ("10,14, 0,27", None, "positive"),
    ],
)
def test_bad_anchors_files(tmp_path, text, count, message):
    path = tmp_path / "bad_anchors.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as error:
        read_anchors(path, count)
    assert "bad_anchors.txt" in str(error.value)


def test_missing_anchors_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_anchors(tmp_path / "nope.txt")


def test_plot(tmp_path):
    wh, _ = three_clusters()
    anchors, _ = kmeans_anchors(wh, k=3)
    path = plot_anchors(wh, wh_iou(wh, anchors).argmax(1), anchors, tmp_path / "anchors.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["anchors.png"]  # no temporary file left


def test_run_anchors_on_voc20(shared_data, tmp_path):
    voc = shared_data / "voc20" / "VOC2007"
    result = run_anchors(voc, "trainval", input_size=416, k=6, seed=0, output=tmp_path)
    assert len(result["anchors"]) == 6 and result["images"] == 225
    assert 0.4 < result["mean_iou"] < 1
    assert 0 < result["default_mean_iou"] < 1
    assert read_anchors(result["files"]["anchors"]).tolist() == result["anchors"]
    assert json.loads((tmp_path / "anchors.json").read_text())["anchors"] == result["anchors"]
    assert (tmp_path / "anchors.png").is_file()
    assert "6 anchors for a 416x416 input" in result["summary"]

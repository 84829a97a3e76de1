"""COCO figures: attnyolo's plumbing around faster-coco-eval / pycocotools, checked against
pycocotools called directly on the same files."""

import contextlib
import io
import json
import math

import numpy as np
import pytest

from attnyolo.metrics.coco import (
    STAT_NAMES,
    available_engines,
    coco_ground_truth,
    coco_results,
    evaluate_coco,
)

pycocotools = pytest.importorskip("pycocotools", reason="the reference needs pycocotools")


def noisy_results(ground_truth, seed=0, keep=0.8, false_positives=300):
    """Detections from the ground truth: jittered boxes for most objects, plus random ones."""
    rng = np.random.default_rng(seed)
    results = []
    for a in ground_truth["annotations"]:
        if rng.random() < keep:
            x, y, w, h = a["bbox"]
            j = rng.normal(0, 0.1, 4) * [w, h, w, h]
            box = [x + j[0], y + j[1], max(1.0, w + j[2]), max(1.0, h + j[3])]
            results.append(
                {
                    "image_id": a["image_id"],
                    "category_id": a["category_id"],
                    "bbox": box,
                    "score": float(rng.random()),
                }
            )
    image_ids = [im["id"] for im in ground_truth["images"]]
    category_ids = [c["id"] for c in ground_truth["categories"]]
    for _ in range(false_positives):
        results.append(
            {
                "image_id": int(rng.choice(image_ids)),
                "category_id": int(rng.choice(category_ids)),
                "bbox": [float(v) for v in rng.uniform(0, 300, 4)],
                "score": float(rng.random()),
            }
        )
    return results


def pycocotools_reference(gt_path, results):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        evaluator = COCOeval(gt, gt.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    precision = evaluator.eval["precision"]
    per_class = []
    for k in range(len(gt.getCatIds())):
        values = precision[:, :, k, 0, -1]
        per_class.append(values[values > -1].mean() if (values > -1).any() else math.nan)
    return evaluator.stats, per_class


@pytest.mark.parametrize("engine", available_engines())
def test_equal_to_pycocotools_on_coco_tiny(shared_data, engine):
    path = shared_data / "coco_tiny/annotations/instances_val2017.json"
    ground_truth = json.loads(path.read_text())
    results = noisy_results(ground_truth)
    ours = evaluate_coco(ground_truth, results, engine)
    stats, per_class = pycocotools_reference(path, results)
    assert ours.engine == engine
    for name, value in zip(STAT_NAMES, stats, strict=True):
        expected = math.nan if value < 0 else value
        np.testing.assert_allclose(ours.stats[name], expected, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(ours.per_class_ap, per_class, atol=1e-12)


def _one_image(boxes, classes=(0,), difficult=(False,)):
    return [
        {
            "boxes": np.array(boxes, float),
            "classes": np.array(classes),
            "difficult": np.array(difficult),
            "size": (100, 100),
        }
    ]


@pytest.mark.parametrize("engine", available_engines())
def test_hand_worked_iou_thresholds(engine):
    # GT 0..10 x 0..10; detection 0..6 x 0..10: IoU = 60 / 100 = 0.6. It is a hit at IoU
    # thresholds 0.50, 0.55 and 0.60 and a miss at 0.65 .. 0.95: AP@[.5:.95] = 3 / 10 = 0.3,
    # AP50 = 1, AP75 = 0. The box area (100) is "small" (< 32^2).
    gt = coco_ground_truth(_one_image([[0, 0, 10, 10]]), ["thing"])
    dets = [
        {"boxes": np.array([[0, 0, 6, 10]]), "scores": np.array([0.9]), "classes": np.array([0])}
    ]
    result = evaluate_coco(gt, coco_results(dets, [0]), engine)
    np.testing.assert_allclose(
        [result.stats["AP"], result.stats["AP50"], result.stats["AP75"], result.stats["AP_small"]],
        [0.3, 1.0, 0.0, 0.3],
        atol=1e-9,
    )
    assert math.isnan(result.stats["AP_medium"]) and math.isnan(result.stats["AP_large"])
    np.testing.assert_allclose(result.per_class_ap50, [1.0])


@pytest.mark.parametrize("engine", available_engines())
def test_difficult_boxes_are_ignored_regions(engine):
    # Two GT boxes, the second difficult (iscrowd): a detection on it is neither hit nor miss, and
    # the difficult box is not a miss either, so one detection on the first box gives AP 1.
    records = _one_image([[0, 0, 40, 40], [50, 50, 90, 90]], (0, 0), (False, True))
    gt = coco_ground_truth(records, ["thing"])
    assert [a["iscrowd"] for a in gt["annotations"]] == [0, 1]
    dets = [
        {
            "boxes": np.array([[0, 0, 40, 40], [50, 50, 90, 90]]),
            "scores": np.array([0.5, 0.9]),
            "classes": np.array([0, 0]),
        }
    ]
    result = evaluate_coco(gt, coco_results(dets, [0]), engine)
    assert result.stats["AP"] == pytest.approx(1.0)


def test_no_detections_gives_zero_where_there_is_ground_truth():
    gt = coco_ground_truth(_one_image([[0, 0, 10, 10]]), ["a", "b"])
    result = evaluate_coco(gt, [])
    assert result.stats["AP"] == 0.0
    assert result.per_class_ap[0] == 0.0 and math.isnan(result.per_class_ap[1])


def test_results_use_category_ids_and_xywh():
    dets = [
        {
            "boxes": np.array([[1.0, 2.0, 11.0, 22.0]]),
            "scores": np.array([0.25]),
            "classes": np.array([1]),
        }
    ]
    assert coco_results(dets, ["img7"], [5, 9]) == [
        {"image_id": "img7", "category_id": 9, "bbox": [1.0, 2.0, 10.0, 20.0], "score": 0.25}
    ]


def test_unknown_engine():
    with pytest.raises(ValueError, match="Unknown COCO engine"):
        evaluate_coco({"images": [], "annotations": [], "categories": []}, [{}], "detectron")

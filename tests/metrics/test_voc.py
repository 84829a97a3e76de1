"""VOC metrics: hand-worked cases, named edge cases, and differential tests against two reference
implementations (mean-average-precision, object-detection-metrics / podm)."""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest

from attnyolo.data.records import Record
from attnyolo.metrics import ClassResult, VOCResult, evaluate_voc


@dataclass
class Dets:
    """Stands in for the decoder's `Detections` without importing the model package (keras)."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray


def gt(boxes=(), classes=(), difficult=None) -> dict:
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    difficult = np.zeros(len(boxes), bool) if difficult is None else np.asarray(difficult, bool)
    return {"boxes": boxes, "classes": np.asarray(classes, np.int64), "difficult": difficult}


def det(boxes=(), scores=(), classes=None) -> dict:
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    classes = np.zeros(len(boxes), np.int64) if classes is None else np.asarray(classes)
    return {"boxes": boxes, "scores": np.asarray(scores, np.float64), "classes": classes}


A = [0, 0, 10, 10]
FAR = [50, 50, 60, 60]  # overlaps none of the boxes used below


# Hand-worked cases.


def three_boxes_five_detections():
    # Image 0: GT A=[0,0,10,10], B=[20,20,30,30]; image 1: GT C=[0,0,10,10] (all class 0).
    # Detections, listed out of score order on purpose:
    #   d5 0.3 img0 [20,20,30,27]  IoU with B = 70/100 = 0.7           -> TP (B)
    #   d1 0.9 img0 [0,0,10,10]    IoU with A = 1                      -> TP (A)
    #   d2 0.8 img0 [1,0,10,10]    IoU with A = 90/100 = 0.9, A taken  -> FP (duplicate)
    #   d3 0.7 img1 FAR            no overlap                          -> FP
    #   d4 0.6 img1 [0,0,10,8]     IoU with C = 80/100 = 0.8           -> TP (C)
    ground_truth = [gt([A, [20, 20, 30, 30]], [0, 0]), gt([A], [0])]
    detections = [
        det([[20, 20, 30, 27], A, [1, 0, 10, 10]], [0.3, 0.9, 0.8]),
        det([FAR, [0, 0, 10, 8]], [0.7, 0.6]),
    ]
    return ground_truth, detections


def test_hand_worked_pr_curve_and_all_point_ap():
    # By score: TP FP FP TP TP; cumulative tp 1 1 1 2 3, fp 0 1 2 2 2.
    # precision = 1/1, 1/2, 1/3, 2/4, 3/5;  recall = 1/3, 1/3, 1/3, 2/3, 3/3.
    # Precision made non-increasing from the right: 1, .6, .6, .6, .6.
    # AP = (1/3 - 0) * 1 + (2/3 - 1/3) * .6 + (1 - 2/3) * .6 = 1/3 + .2 + .2 = 11/15.
    result = evaluate_voc(*three_boxes_five_detections(), num_classes=1)
    c = result.per_class[0]
    np.testing.assert_allclose(c.precision, [1, 1 / 2, 1 / 3, 2 / 4, 3 / 5])
    np.testing.assert_allclose(c.recall, [1 / 3, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(c.scores, [0.9, 0.8, 0.7, 0.6, 0.3])
    assert c.ap == pytest.approx(11 / 15)
    assert result.map == pytest.approx(11 / 15)
    assert (c.num_gt, c.num_detections, c.num_ignored) == (3, 5, 0)


def test_hand_worked_11_point_ap():
    # Best precision at recall >= t: t = 0, .1, .2, .3 -> 1 (first point, recall 1/3);
    # t = .4, .5, .6 -> max(2/4, 3/5) = .6; t = .7, .8, .9, 1 -> 3/5 = .6.
    # AP = (4 * 1 + 7 * .6) / 11 = 8.2 / 11.
    result = evaluate_voc(*three_boxes_five_detections(), num_classes=1, use_07_metric=True)
    assert result.per_class[0].ap == pytest.approx(8.2 / 11)
    assert result.use_07_metric


def test_hand_worked_precision_recall_f1_at_threshold():
    # score >= 0.5 keeps d1 d2 d3 d4: tp 2, fp 2 -> P = 2/4, R = 2/3,
    # F1 = 2 * .5 * 2/3 / (.5 + 2/3) = (2/3) / (7/6) = 4/7.
    c = evaluate_voc(*three_boxes_five_detections(), num_classes=1).per_class[0]
    assert (c.tp, c.fp) == (2, 2)
    assert c.precision_at == pytest.approx(0.5)
    assert c.recall_at == pytest.approx(2 / 3)
    assert c.f1_at == pytest.approx(4 / 7)
    # At 0.75 only d1 (TP) and d2 (FP) remain: P = 1/2, R = 1/3, F1 = (1/3) / (5/6) = 2/5.
    c = evaluate_voc(*three_boxes_five_detections(), 1, score_threshold=0.75).per_class[0]
    assert (c.tp, c.fp, c.precision_at, c.recall_at) == (1, 1, 0.5, pytest.approx(1 / 3))
    assert c.f1_at == pytest.approx(2 / 5)
    # Above every score nothing is counted: all three are 0, not NaN.
    c = evaluate_voc(*three_boxes_five_detections(), 1, score_threshold=0.95).per_class[0]
    assert (c.tp, c.fp, c.precision_at, c.recall_at, c.f1_at) == (0, 0, 0.0, 0.0, 0.0)


def test_hand_worked_log_average_miss_rate():
    # Same scene; 2 images contain class 0. fp 0 1 2 2 2 -> fppi 0, .5, 1, 1, 1;
    # miss rate = 1 - recall = 2/3, 2/3, 2/3, 1/3, 0. With (-1, 1) prepended, each reference
    # point 10**(-2, -1.75, ..., 0) takes the miss rate of the last fppi <= it:
    #   .01 .. .316 (7 points) -> fppi 0 -> 2/3;  .562 -> fppi .5 -> 2/3;
    #   1.0 -> the last fppi 1 -> miss rate 0, floored at 1e-10 as the original does.
    # LAMR = exp((8 ln(2/3) + ln(1e-10)) / 9).
    c = evaluate_voc(*three_boxes_five_detections(), num_classes=1).per_class[0]
    assert c.lamr == pytest.approx(math.exp((8 * math.log(2 / 3) + math.log(1e-10)) / 9))


def test_log_average_miss_rate_counts_images_that_contain_the_class():
    # Images 0, 1, 2 hold one class-0 box each (the one in image 2 is never found); images
    # 3..7 hold nothing. TP on img0 (0.9), FP on img5 (0.8), TP on img1 (0.7):
    # recall 1/3 1/3 2/3, miss rate 2/3 2/3 1/3, fp 0 1 1.
    # The original get_map divides fp by the 3 images containing the class: fppi 0, 1/3, 1/3.
    #   .01 .. .316 (7 points, all < 1/3) -> 2/3;  .562, 1.0 -> 1/3.
    # LAMR = (2/3)**(7/9) * (1/3)**(2/9). (Dividing by all 8 images would give fppi 0, .125,
    # .125, moving .178 and .316 to 1/3 as well: (2/3)**(5/9) * (1/3)**(4/9).)
    ground_truth = [gt([A], [0]) for _ in range(3)] + [gt() for _ in range(5)]
    detections = [det([A], [0.9]), det([A], [0.7])] + [det() for _ in range(6)]
    detections[5] = det([FAR], [0.8])
    c = evaluate_voc(ground_truth, detections, num_classes=1).per_class[0]
    np.testing.assert_allclose(c.recall, [1 / 3, 1 / 3, 2 / 3])
    assert c.lamr == pytest.approx((2 / 3) ** (7 / 9) * (1 / 3) ** (2 / 9))


def test_pixel_offset_uses_inclusive_pixels():
    # Boxes [0,0,9,9] and [0,0,9,4]. Inclusive pixels (+1): 10x10 and 10x5, overlap 10x5,
    # IoU = 50 / 100 = 0.5 exactly -> a hit at threshold 0.5 (>=). Continuous: 9x9 and 9x4,
    # IoU = 36 / 81 = 0.444 -> a miss.
    ground_truth = [gt([[0, 0, 9, 9]], [0])]
    detections = [det([[0, 0, 9, 4]], [0.9])]
    assert evaluate_voc(ground_truth, detections, 1, pixel_offset=1.0).map == 1.0
    assert evaluate_voc(ground_truth, detections, 1, pixel_offset=0.0).map == 0.0


def test_iou_exactly_at_threshold_is_a_hit():
    # [0,0,10,5] covers half of A: IoU = 50 / 100 = 0.5, counted with >= (VOCevaldet.m, get_map).
    result = evaluate_voc([gt([A], [0])], [det([[0, 0, 10, 5]], [0.9])], 1)
    assert result.per_class[0].ap == 1.0
    result = evaluate_voc([gt([A], [0])], [det([[0, 0, 10, 5]], [0.9])], 1, iou_threshold=0.51)
    assert result.per_class[0].ap == 0.0


def test_11_point_samples_recall_at_exact_tenths():
    # 10 boxes, 3 found at precision 1: recall .1 .2 .3. Points t = 0, .1, .2, .3 reach
    # precision 1, so AP = 4/11. (voc_eval.py's np.arange(0., 1.1, 0.1) has t = 0.30000000000000004
    # > 0.3 and would give 3/11.) All-point AP is the plain area: 0.3.
    ground_truth = [gt([A], [0]) for _ in range(10)]
    detections = [det([A], [0.9 - 0.1 * i]) if i < 3 else det() for i in range(10)]
    assert evaluate_voc(ground_truth, detections, 1, use_07_metric=True).map == pytest.approx(
        4 / 11
    )
    assert evaluate_voc(ground_truth, detections, 1).map == pytest.approx(0.3)


# Named edge cases.


def test_no_detections_at_all():
    ground_truth = [gt([A], [0]), gt([A, A], [1, 1])]
    result = evaluate_voc(ground_truth, [det(), det()], num_classes=3)
    assert [c.ap for c in result.per_class[:2]] == [0.0, 0.0]
    assert math.isnan(result.per_class[2].ap)  # no ground truth either
    assert result.map == 0.0
    c = result.per_class[1]
    assert (c.num_gt, c.num_detections, c.tp, c.fp, c.f1_at) == (2, 0, 0, 0, 0.0)
    assert c.precision.shape == c.recall.shape == c.scores.shape == (0,)
    # The original returns LAMR 0 here (scoring a silent detector as perfect); we report 1.
    assert c.lamr == 1.0


def test_class_without_ground_truth_is_nan_and_excluded_from_map():
    result = evaluate_voc([gt([A], [0])], [det([A], [0.9])], num_classes=2)
    assert result.per_class[0].ap == 1.0
    assert math.isnan(result.per_class[1].ap)
    assert result.per_class[1].num_gt == 0
    assert result.map == 1.0


def test_detection_of_class_without_ground_truth_is_excluded_from_map():
    detections = [det([A, FAR], [0.9, 0.8], classes=[0, 1])]
    result = evaluate_voc([gt([A], [0])], detections, num_classes=2)
    c = result.per_class[1]
    assert math.isnan(c.ap) and math.isnan(c.lamr)
    assert (c.num_gt, c.num_detections, c.tp, c.fp) == (0, 1, 0, 1)
    assert np.isnan(c.recall).all() and c.recall_at == 0.0
    assert result.map == 1.0  # class 1 neither helps nor hurts


def test_only_difficult_boxes_in_a_class():
    # Class 1 has only a difficult box; the detection on it is ignored, not a false positive.
    ground_truth = [gt([A, A], [0, 1], difficult=[False, True])]
    detections = [det([A, A], [0.9, 0.8], classes=[0, 1])]
    result = evaluate_voc(ground_truth, detections, num_classes=2)
    c = result.per_class[1]
    assert math.isnan(c.ap)
    assert (c.num_gt, c.num_detections, c.num_ignored, c.tp, c.fp) == (0, 1, 1, 0, 0)
    assert c.precision.shape == (0,)
    assert result.map == 1.0


def test_detection_on_difficult_box_is_ignored():
    # GT: A (normal) and D=[20,20,30,30] (difficult). By score:
    #   0.95 on D (IoU 1)          -> ignored, left off the curve
    #   0.9  on A                  -> TP
    #   0.85 [20,20,30,23] on D    -> IoU 30/100 = .3, below threshold -> FP even though D is
    #                                 difficult (the devkit checks difficulty only for hits)
    # Curve: precision 1, 1/2; recall 1, 1 -> AP 1. Counting the first as FP would give 1/2.
    ground_truth = [gt([A, [20, 20, 30, 30]], [0, 0], difficult=[False, True])]
    detections = [det([[20, 20, 30, 30], A, [20, 20, 30, 23]], [0.95, 0.9, 0.85])]
    c = evaluate_voc(ground_truth, detections, num_classes=1).per_class[0]
    assert (c.num_gt, c.num_detections, c.num_ignored) == (1, 3, 1)
    np.testing.assert_allclose(c.precision, [1, 0.5])
    np.testing.assert_allclose(c.scores, [0.9, 0.85])
    assert c.ap == 1.0
    assert (c.tp, c.fp) == (1, 1)


def test_duplicate_detections_of_one_box():
    # Three detections of A: the best-scored is the TP, the other two are FPs.
    # precision 1, 1/2, 1/3; recall 1, 1, 1 -> AP 1; P at 0.5 = 1/3.
    detections = [det([A, [0, 0, 10, 9], [1, 1, 10, 10]], [0.6, 0.9, 0.7])]
    c = evaluate_voc([gt([A], [0])], detections, num_classes=1).per_class[0]
    np.testing.assert_allclose(c.precision, [1, 1 / 2, 1 / 3])
    np.testing.assert_allclose(c.scores, [0.9, 0.7, 0.6])
    assert (c.ap, c.tp, c.fp) == (1.0, 1, 2)
    assert c.precision_at == pytest.approx(1 / 3)


def test_detection_does_not_fall_back_to_second_best_box():
    # GT A=[0,0,10,10], B=[0,0,10,9]. d1 = A (0.9) takes A. d2=[0,0,10,9.5] (0.8): IoU with A
    # .95, with B 90/95 = .947; it picks A, already taken -> FP although B is free (devkit).
    ground_truth = [gt([A, [0, 0, 10, 9]], [0, 0])]
    detections = [det([A, [0, 0, 10, 9.5]], [0.9, 0.8])]
    c = evaluate_voc(ground_truth, detections, num_classes=1).per_class[0]
    np.testing.assert_allclose(c.recall, [0.5, 0.5])
    assert c.ap == pytest.approx(0.5)


def test_equal_iou_takes_the_first_box():
    # B1=[0,0,10,10], B2=[5,0,15,10]. d1=[2.5,0,12.5,10] (0.9) overlaps each by 7.5x10 = 75:
    # IoU = 75 / (100 + 100 - 75) = .6 with both; it takes the first listed (devkit argmax).
    # d2 = B2 exactly (0.8). B1 listed first: d1 takes B1, d2 takes B2 -> AP 1.
    # B2 listed first: d1 takes B2, d2's best is B2, taken -> FP; recall 1/2, AP 1/2.
    b1, b2 = [0, 0, 10, 10], [5, 0, 15, 10]
    detections = [det([[2.5, 0, 12.5, 10], b2], [0.9, 0.8])]
    assert evaluate_voc([gt([b1, b2], [0, 0])], detections, 1).map == 1.0
    assert evaluate_voc([gt([b2, b1], [0, 0])], detections, 1).map == 0.5


def test_equal_scores_keep_input_order():
    # Two detections at 0.9 on one image: a FP and a TP. Listed FP first: precision 0, 1/2 ->
    # AP = 1 * 1/2 (interpolated); TP first: precision 1, 1/2 -> AP 1.
    fp_first = [det([FAR, A], [0.9, 0.9])]
    tp_first = [det([A, FAR], [0.9, 0.9])]
    assert evaluate_voc([gt([A], [0])], fp_first, 1).map == 0.5
    assert evaluate_voc([gt([A], [0])], tp_first, 1).map == 1.0


def test_image_without_ground_truth_and_detections():
    base = evaluate_voc(*three_boxes_five_detections(), num_classes=1)
    ground_truth, detections = three_boxes_five_detections()
    result = evaluate_voc(ground_truth + [gt()], detections + [det()], num_classes=1)
    c, b = result.per_class[0], base.per_class[0]
    assert (c.ap, c.lamr, c.tp, c.fp) == (b.ap, b.lamr, b.tp, b.fp)


def test_image_without_ground_truth_but_detections():
    # Both detections on the empty image are FPs: by score TP(.9) FP(.8) FP(.7) -> precision
    # 1, 1/2, 1/3; recall 1 throughout -> AP 1, but P at 0.5 = 1/3.
    ground_truth = [gt([A], [0]), gt()]
    detections = [det([A], [0.9]), det([A, FAR], [0.8, 0.7])]
    c = evaluate_voc(ground_truth, detections, num_classes=1).per_class[0]
    assert (c.tp, c.fp, c.ap) == (1, 2, 1.0)
    np.testing.assert_allclose(c.precision, [1, 1 / 2, 1 / 3])


def test_no_ground_truth_anywhere():
    result = evaluate_voc([gt()], [det([A], [0.9])], num_classes=2)
    assert math.isnan(result.map)
    assert all(math.isnan(ap) for ap in result.per_class_ap)


def test_empty_data_set():
    result = evaluate_voc([], [], num_classes=2)
    assert math.isnan(result.map) and len(result.per_class) == 2


def test_accepts_records_and_detection_objects():
    ground_truth, detections = three_boxes_five_detections()
    records = [
        Record(f"{i}.jpg", g["boxes"], g["classes"], g["difficult"])
        for i, g in enumerate(ground_truth)
    ]
    objects = [Dets(d["boxes"], d["scores"], d["classes"]) for d in detections]
    result = evaluate_voc(records, objects, num_classes=1)
    assert isinstance(result, VOCResult) and isinstance(result.per_class[0], ClassResult)
    assert result.map == pytest.approx(11 / 15)
    # A dict without `difficult` means none are.
    plain = [{"boxes": g["boxes"], "classes": g["classes"]} for g in ground_truth]
    assert evaluate_voc(plain, detections, num_classes=1).map == pytest.approx(11 / 15)


def test_result_records_its_settings():
    result = evaluate_voc([gt()], [det()], 1, iou_threshold=0.7, score_threshold=0.25)
    assert (result.iou_threshold, result.use_07_metric, result.score_threshold) == (
        0.7,
        False,
        0.25,
    )


@pytest.mark.parametrize(
    ("ground_truth", "detections", "match"),
    [
        ([gt()], [], "1 images but detections has 0"),
        ([gt(), gt([A], [3])], [det(), det()], r"ground_truth\[1\]: class id outside \[0, 2\): 3"),
        ([gt()], [det([A], [0.9], classes=[-1])], r"detections\[0\]: class id outside.*: -1"),
        ([gt()], [det([A], [0.9], classes=[0.5])], r"detections\[0\]: class id is not an integer"),
        ([gt(), gt()], [det(), det([A], [np.nan])], r"detections\[1\]: score is NaN"),
        ([gt()], [det([A], [np.inf])], r"detections\[0\]: score is NaN or infinite"),
        ([gt(), gt([[0, 0, np.inf, 1]], [0])], [det(), det()], r"ground_truth\[1\]: box .*NaN"),
        ([gt()], [det([[0, 0, np.nan, 1]], [0.5])], r"detections\[0\]: box coordinates are NaN"),
        ([gt([[5, 0, 4, 1]], [0])], [det()], r"ground_truth\[0\]: box has x2 < x1"),
        ([gt()], [det([[0, 5, 1, 4]], [0.5])], r"detections\[0\]: box has x2 < x1 or y2 < y1"),
        ([gt()], [{"boxes": np.zeros((1, 5)), "scores": [1], "classes": [0]}], r"shape \(N, 4\)"),
        (
            [gt()],
            [{"boxes": [A], "scores": [0.1, 0.2], "classes": [0]}],
            "1 boxes, 1 classes and 2",
        ),
        ([{"boxes": [A], "classes": [0], "difficult": [0, 0]}], [det()], "and 2 difficult"),
        ([gt()], [{"boxes": [A], "classes": [0]}], r"detections\[0\] has no `scores`"),
        ([{"boxes": [A]}], [det()], r"ground_truth\[0\] has no `classes`"),
    ],
)
def test_invalid_input_raises(ground_truth, detections, match):
    with pytest.raises(ValueError, match=match):
        evaluate_voc(ground_truth, detections, num_classes=2)


@pytest.mark.parametrize("kwargs", [{"iou_threshold": 0.0}, {"pixel_offset": 0.5}])
def test_invalid_settings_raise(kwargs):
    with pytest.raises(ValueError):
        evaluate_voc([gt()], [det()], num_classes=1, **kwargs)


def test_metrics_import_neither_keras_nor_models():
    code = (
        "import sys, attnyolo.metrics; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow', 'torch', "
        "'jax') or m.startswith(('attnyolo.models', 'attnyolo.engine', 'attnyolo.layers', "
        "'attnyolo.cli'))]; "
        "print(bad); sys.exit(bool(bad))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


# Differential tests against reference implementations.


def random_scene(seed, integer, difficult_rate, num_images=50, num_classes=4):
    """Jittered detections of most boxes (some twice, some with the wrong class), some boxes
    missed, and random false positives; scores are continuous, hence distinct."""
    rng = np.random.default_rng(seed)
    ground_truth, detections = [], []
    for _ in range(num_images):
        k = int(rng.integers(0, 7))
        xy = rng.uniform(0, 500, (k, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(16, 160, (k, 2))], axis=1)
        classes = rng.integers(0, num_classes, k)
        # One flag per class per image: see test_matches_mean_average_precision for why.
        difficult = (rng.random(num_classes) < difficult_rate)[classes]
        found, found_classes = [], []
        for box, cls in zip(boxes, classes, strict=True):
            for _ in range(rng.choice([0, 1, 1, 1, 2])):
                size = np.tile(box[2:] - box[:2], 2)
                b = box + rng.normal(0.0, 0.12, 4) * size
                found.append(np.concatenate([np.minimum(b[:2], b[2:]), np.maximum(b[:2], b[2:])]))
                found_classes.append(cls if rng.random() > 0.1 else rng.integers(num_classes))
        for _ in range(int(rng.integers(0, 4))):
            xy = rng.uniform(0, 500, 2)
            found.append(np.concatenate([xy, xy + rng.uniform(16, 160, 2)]))
            found_classes.append(rng.integers(num_classes))
        found = np.array(found).reshape(-1, 4)
        if integer:
            boxes, found = np.round(boxes), np.round(found)
        ground_truth.append(gt(boxes, classes, difficult))
        scores = rng.uniform(0.01, 1.0, len(found))
        detections.append(det(found, scores, np.array(found_classes, np.int64)))
    return ground_truth, detections


def brute_iou(a, b, offset):
    iw = min(a[2], b[2]) - max(a[0], b[0]) + offset
    ih = min(a[3], b[3]) - max(a[1], b[1]) + offset
    if iw <= 0 or ih <= 0:
        return 0.0
    area = (a[2] - a[0] + offset) * (a[3] - a[1] + offset) + (b[2] - b[0] + offset) * (
        b[3] - b[1] + offset
    )
    return iw * ih / (area - iw * ih)


def assert_scene_free_of_ties(ground_truth, detections, iou_threshold, offset):
    """The references differ from the devkit (and from each other) only on ties, so the scenes
    must have none: mean_average_precision counts IoU > threshold (devkit and we: >=), takes the
    last of equal maxima (np.argsort(iou)[::-1]; devkit: the first) and sorts scores with pandas'
    unstable quicksort."""
    scores = np.concatenate([d["scores"] for d in detections])
    assert len(np.unique(scores)) == len(scores)
    for g, d in zip(ground_truth, detections, strict=True):
        for box, cls in zip(d["boxes"], d["classes"], strict=True):
            ious = [brute_iou(box, b, offset) for b in g["boxes"][g["classes"] == cls]]
            assert all(abs(v - iou_threshold) > 1e-9 for v in ious)
            if ious and max(ious) >= iou_threshold:
                assert sum(v >= max(ious) - 1e-12 for v in ious) == 1


SCENES = [(seed, integer) for seed in (0, 1, 2) for integer in (True, False)]


@pytest.mark.parametrize("iou_threshold", [0.5, 0.7])
@pytest.mark.parametrize(("seed", "integer"), SCENES)
def test_matches_mean_average_precision(seed, integer, iou_threshold):
    """Against mean-average-precision (bes-dev), VOC's inclusive pixels, with difficult boxes.

    Two of its conventions differ from the devkit and are aligned here, not tolerated:
    - it counts difficult boxes as positives (`class_counter` holds every gt row), so recall's
      denominator would include them; after adding the images we set `class_counter` to the
      non-difficult counts, which is the only place it is used;
    - its mAP averages over every class, AP 0 for classes without ground truth; the scenes give
      every class non-difficult ground truth, so both means run over the same classes;
    - `compute_match_table` spreads the gt `difficult` flags over the prediction rows with
      `np.repeat(...).reshape(nreps, -1)` where `np.tile` is meant, so with two or more
      predictions the flags land on the wrong boxes unless all boxes of that class in that image
      share one flag; the scenes draw one flag per class per image (the hand-worked
      `test_detection_on_difficult_box_is_ignored` covers mixed flags).
    11-point AP uses its `recall_thresholds` with exact tenths (`np.arange(11) / 10`), the ones we
    sample at.
    """
    from_ref = pytest.importorskip("mean_average_precision")
    num_classes = 4
    ground_truth, detections = random_scene(seed, integer, difficult_rate=0.15)
    assert_scene_free_of_ties(ground_truth, detections, iou_threshold, offset=1.0)

    metric = from_ref.MeanAveragePrecision2d(num_classes)
    for g, d in zip(ground_truth, detections, strict=True):
        crowd = np.zeros(len(g["boxes"]))
        metric.add(
            np.column_stack([d["boxes"], d["classes"], d["scores"]]),
            np.column_stack([g["boxes"], g["classes"], g["difficult"], crowd]),
        )
    num_gt = np.zeros((1, num_classes), np.int64)
    for g in ground_truth:
        np.add.at(num_gt[0], g["classes"][~g["difficult"]], 1)
    assert (num_gt > 0).all()
    metric.class_counter = num_gt

    for use_07_metric, recall_thresholds in [(False, None), (True, np.arange(11) / 10.0)]:
        ref = metric.value(iou_thresholds=iou_threshold, recall_thresholds=recall_thresholds)
        ours = evaluate_voc(
            ground_truth,
            detections,
            num_classes,
            iou_threshold=iou_threshold,
            use_07_metric=use_07_metric,
            pixel_offset=1.0,
        )
        ref_aps = [ref[iou_threshold][c]["ap"] for c in range(num_classes)]
        np.testing.assert_allclose(ours.per_class_ap, ref_aps, atol=1e-4, rtol=0)
        assert ours.map == pytest.approx(ref["mAP"], abs=1e-4)
        assert sum(c.num_ignored for c in ours.per_class) > 0  # difficult boxes were exercised


@pytest.mark.parametrize("iou_threshold", [0.5, 0.7])
@pytest.mark.parametrize(("seed", "integer"), SCENES)
def test_matches_podm(seed, integer, iou_threshold):
    """Against object-detection-metrics / podm (rafaelpadilla's), continuous IoU, no difficult.

    Its 11-point AP samples recall at `np.linspace(0, 1, 11)`, whose 0.3, 0.6 and 0.7 lie a hair
    above those tenths; the scenes keep every class's box count off multiples of 5, so that no
    recall `tp / num_gt` can equal .3, .6 or .7 exactly and the two samplings agree.
    """
    ref = pytest.importorskip("podm.metrics")
    num_classes = 4
    ground_truth, detections = random_scene(seed + 10, integer, difficult_rate=0.0)
    for cls in range(num_classes):
        if sum(np.count_nonzero(g["classes"] == cls) for g in ground_truth) % 5 == 0:
            # Drop this class's first box (its detections stay, as false positives or misses).
            g = next(g for g in ground_truth if (g["classes"] == cls).any())
            keep = np.arange(len(g["classes"])) != np.argmax(g["classes"] == cls)
            g.update({key: value[keep] for key, value in g.items()})
    assert_scene_free_of_ties(ground_truth, detections, iou_threshold, offset=0.0)

    gold, preds = [], []
    for i, (g, d) in enumerate(zip(ground_truth, detections, strict=True)):
        for box, cls in zip(g["boxes"], g["classes"], strict=True):
            gold.append(ref.BoundingBox.of_bbox(i, int(cls), *map(float, box)))
        for box, cls, score in zip(d["boxes"], d["classes"], d["scores"], strict=True):
            preds.append(ref.BoundingBox.of_bbox(i, int(cls), *map(float, box), float(score)))

    methods = [
        (False, ref.MethodAveragePrecision.AllPointsInterpolation),
        (True, ref.MethodAveragePrecision.ElevenPointsInterpolation),
    ]
    for use_07_metric, method in methods:
        expected = ref.get_pascal_voc_metrics(gold, preds, iou_threshold, method)
        ours = evaluate_voc(
            ground_truth,
            detections,
            num_classes,
            iou_threshold=iou_threshold,
            use_07_metric=use_07_metric,
            score_threshold=0.0,  # count every detection, as podm's tp / fp do
        )
        assert all(c.num_gt % 5 for c in ours.per_class) and all(c.num_gt for c in ours.per_class)
        for cls, c in enumerate(ours.per_class):
            assert c.num_gt == expected[cls].num_groundtruth
            assert c.ap == pytest.approx(expected[cls].ap, abs=1e-4)
            assert (c.tp, c.fp) == (expected[cls].tp, expected[cls].fp)
        assert ours.map == pytest.approx(ref.MetricPerClass.mAP(expected), abs=1e-4)

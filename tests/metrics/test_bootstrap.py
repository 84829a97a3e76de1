"""The bootstrap's mAP on weighted images is the evaluator's mAP on the images repeated, and its
intervals behave as intervals."""

import numpy as np
import pytest

from attnyolo.metrics.bootstrap import (
    MatchedDetections,
    match_voc,
    paired_bootstrap,
    seed_bootstrap,
    weighted_map,
)
from attnyolo.metrics.voc import evaluate_voc

NUM_CLASSES = 3


def _scene(rng, num_images=12, quality=0.5):
    """Random boxes and detections near them (some off, some duplicated, some difficult)."""
    gts, dets = [], []
    for _ in range(num_images):
        k = int(rng.integers(0, 5))
        xy = rng.uniform(0, 80, (k, 2))
        wh = rng.uniform(10, 40, (k, 2))
        boxes = np.concatenate([xy, xy + wh], axis=1)
        classes = rng.integers(0, NUM_CLASSES, k)
        gts.append({"boxes": boxes, "classes": classes, "difficult": rng.random(k) < 0.1})
        # Detections: jittered copies of the boxes (hits or near misses) plus random ones.
        jitter = rng.normal(0, 12 * (1 - quality), boxes.shape)
        extra = int(rng.integers(0, 3))
        exy = rng.uniform(0, 80, (extra, 2))
        det_boxes = np.concatenate([boxes + jitter, np.concatenate([exy, exy + 20], axis=1)])
        det_boxes = np.concatenate(
            [
                np.minimum(det_boxes[:, :2], det_boxes[:, 2:]),
                np.maximum(det_boxes[:, :2], det_boxes[:, 2:]),
            ],
            axis=1,
        )
        det_classes = np.concatenate([classes, rng.integers(0, NUM_CLASSES, extra)])
        flip = rng.random(len(det_classes)) < 0.15
        det_classes = np.where(flip, rng.integers(0, NUM_CLASSES, len(det_classes)), det_classes)
        dets.append(
            {"boxes": det_boxes, "scores": rng.random(len(det_boxes)), "classes": det_classes}
        )
    return gts, dets


@pytest.mark.parametrize("seed", range(5))
def test_unit_weights_give_the_evaluators_map(seed):
    gts, dets = _scene(np.random.default_rng(seed))
    matched = match_voc(gts, dets, NUM_CLASSES)
    expected = evaluate_voc(gts, dets, NUM_CLASSES).map
    assert weighted_map(matched) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_integer_weights_equal_repeating_the_images(seed):
    rng = np.random.default_rng(100 + seed)
    gts, dets = _scene(rng)
    # Distinct scores across copies are not needed: a copy's detections tie with the original's,
    # and tied equal outcomes give the same curve whatever their order.
    weights = rng.integers(0, 4, len(gts))
    weights[0] = max(weights[0], 1)
    picked = np.repeat(np.arange(len(gts)), weights)
    expected = evaluate_voc([gts[i] for i in picked], [dets[i] for i in picked], NUM_CLASSES).map
    got = weighted_map(match_voc(gts, dets, NUM_CLASSES), weights)
    assert got == pytest.approx(expected, abs=1e-12)


def test_unreadable_images_have_no_detections():
    gts, dets = _scene(np.random.default_rng(7))
    dets[3] = None
    empty = dict(boxes=np.zeros((0, 4)), scores=np.zeros(0), classes=np.zeros(0, int))
    expected = evaluate_voc(gts, [empty if d is None else d for d in dets], NUM_CLASSES).map
    assert weighted_map(match_voc(gts, dets, NUM_CLASSES)) == pytest.approx(expected)


def test_save_and_load(tmp_path):
    gts, dets = _scene(np.random.default_rng(8))
    matched = match_voc(gts, dets, NUM_CLASSES)
    loaded = MatchedDetections.load(matched.save(tmp_path / "m.npz"))
    assert weighted_map(loaded) == weighted_map(matched)
    assert not list(tmp_path.glob(".*tmp*"))


def _runs(num_images, qualities, seed):
    """Runs (one per quality) on one shared ground truth."""
    rng = np.random.default_rng(seed)
    gts, _ = _scene(rng, num_images)
    return [match_voc(gts, _scene_dets(gts, rng, q), NUM_CLASSES) for q in qualities]


def test_interval_holds_the_estimate_and_narrows_with_more_images():
    a = paired_bootstrap(_runs(10, [0.6, 0.6, 0.6], 9), samples=300)
    b = paired_bootstrap(_runs(300, [0.6, 0.6, 0.6], 9), samples=300)
    assert a.low <= a.value <= a.high and b.low <= b.value <= b.high
    assert b.high - b.low < a.high - a.low


def test_paired_difference_sees_a_better_detector():
    runs = _runs(60, [0.95] * 3 + [0.1] * 3, 10)
    good, bad = runs[:3], runs[3:]
    diff = paired_bootstrap(good, bad, samples=300)
    assert diff.value > 0 and diff.excludes_zero()
    same = paired_bootstrap(good, good, samples=50)
    assert same.value == same.low == same.high == 0.0


def _scene_dets(gts, rng, quality):
    dets = []
    for gt in gts:
        boxes = gt["boxes"] + rng.normal(0, 12 * (1 - quality), gt["boxes"].shape)
        boxes = np.concatenate(
            [np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])], axis=1
        )
        dets.append({"boxes": boxes, "scores": rng.random(len(boxes)), "classes": gt["classes"]})
    return dets


def test_runs_on_other_images_are_refused():
    a = match_voc(*_scene(np.random.default_rng(1), 10), NUM_CLASSES)
    b = match_voc(*_scene(np.random.default_rng(2), 12), NUM_CLASSES)
    with pytest.raises(ValueError, match="different image sets"):
        paired_bootstrap([a], [b], samples=10)


def test_seed_bootstrap():
    one = seed_bootstrap([0.4])
    assert one.value == one.low == one.high == 0.4
    # Three seeds: the percentile interval of resampled means spans at most the values' range.
    three = seed_bootstrap([0.30, 0.35, 0.40], [0.31, 0.30, 0.33], samples=4000)
    diffs = np.array([-0.01, 0.05, 0.07])
    assert three.value == pytest.approx(diffs.mean())
    assert diffs.min() - 1e-12 <= three.low <= three.value <= three.high <= diffs.max() + 1e-12
    with pytest.raises(ValueError):
        seed_bootstrap([0.1, 0.2], [0.1])

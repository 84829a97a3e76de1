"""`assignment="original"` builds exactly the original's `y_true`, checked against a NumPy port of
its `preprocess_true_boxes` on the real boxes of `../shared/data/voc20` and `mask_voc`."""

import xml.etree.ElementTree as ET

import keras
import numpy as np
import pytest
from PIL import Image

from attnyolo.data import load_dataset
from attnyolo.data.pipeline import DetectionSequence
from attnyolo.losses import YoloLoss
from attnyolo.models.yolo import DEFAULT_ANCHOR_MASKS, DEFAULT_ANCHORS
from tests.losses.original_targets import original_letterbox_boxes, original_targets

# mask_voc's known faults (wrong <size>, a box outside its image) are reported while reading.
pytestmark = pytest.mark.filterwarnings("ignore::attnyolo.data.DatasetWarning")


def _annotation_boxes(root, split, class_names):
    """Per image: its size (Pillow's, as the original reads it) and the integer boxes that the
    original's voc_annotation.py writes (`int(float(text))`, non-difficult, known classes)."""
    ids = (root / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
    out = []
    for image_id in ids:
        tree = ET.parse(root / "Annotations" / f"{image_id}.xml").getroot()
        boxes = []
        for obj in tree.iter("object"):
            difficult = obj.find("difficult")
            name = obj.find("name").text
            if (difficult is not None and int(difficult.text) == 1) or name not in class_names:
                continue
            b = obj.find("bndbox")
            coords = [int(float(b.find(k).text)) for k in ("xmin", "ymin", "xmax", "ymax")]
            boxes.append([*coords, class_names.index(name)])
        with Image.open(root / "JPEGImages" / f"{image_id}.jpg") as image:
            size = image.size
        out.append((size, boxes))
    return out


def _ours(loss, box_data):
    """attnyolo's targets for `(m, N, 5)` rows padded with zero rows."""
    boxes = box_data[..., :4].astype(np.float32)
    classes = np.where(box_data[..., 2] > box_data[..., 0], box_data[..., 4], -1).astype(np.int32)
    return [
        {k: keras.ops.convert_to_numpy(v) for k, v in head.items()}
        for head in loss.targets(boxes, classes)
    ]


def _compare(loss, box_data, num_classes):
    expected = original_targets(
        box_data, loss.input_size, DEFAULT_ANCHORS, num_classes, DEFAULT_ANCHOR_MASKS
    )
    ours = _ours(loss, box_data)
    positives = 0
    for layer, (mine, theirs) in enumerate(zip(ours, expected, strict=True)):
        np.testing.assert_array_equal(mine["positive"], theirs[..., 4], err_msg=f"head {layer}")
        at = theirs[..., 4] > 0
        np.testing.assert_array_equal(mine["classes"][at], theirs[..., 5:][at])
        np.testing.assert_allclose(mine["box"][at], theirs[..., :4][at], rtol=0, atol=1e-7)
        positives += int(at.sum())
    return positives


def _stats(box_data, input_size):
    """How many boxes take the original's fallback anchor, and how many centres lie on a cell
    border (where the float32 rule decides the cell)."""
    wh = box_data[..., 2:4] - box_data[..., 0:2]
    valid = wh[..., 0] > 0
    anchors = np.asarray(DEFAULT_ANCHORS, np.float64)
    inter = np.minimum(wh[..., None, 0], anchors[:, 0]) * np.minimum(
        wh[..., None, 1], anchors[:, 1]
    )
    iou = inter / (wh[..., None, 0] * wh[..., None, 1] + anchors.prod(-1) - inter + 1e-12)
    in_mask = {i for m in DEFAULT_ANCHOR_MASKS for i in m}
    fallback = int(np.sum(valid & ~np.isin(iou.argmax(-1), list(in_mask))))
    centre = (box_data[..., 0:2] + box_data[..., 2:4]) // 2
    border = int(np.sum(valid[..., None] & (centre % 16 == 0)))
    return fallback, border


@pytest.mark.parametrize(
    "name, split, input_size",
    [("voc20", "trainval", 416), ("voc20", "test", 320), ("mask_voc", "trainval", 416)],
)
def test_letterboxed_annotation_boxes(shared_data, name, split, input_size):
    root = shared_data / name / "VOC2007"
    class_names = load_dataset(root, split=split).class_names
    images = _annotation_boxes(root, split, class_names)
    rng = np.random.default_rng(0)
    loss = YoloLoss(DEFAULT_ANCHORS, DEFAULT_ANCHOR_MASKS, input_size, len(class_names))
    rows = []
    for size, boxes in images:
        boxes = np.array(boxes, np.int64).reshape(-1, 5)
        rng.shuffle(boxes)  # the original shuffles the boxes of each image
        rows.append(original_letterbox_boxes(boxes, size, (input_size, input_size)))
    # One padded shape for every batch (eager JAX compiles each new shape).
    width = max(int(np.sum(r[:, 2] > r[:, 0])) for r in rows)
    rows += [np.zeros_like(rows[0])] * (-len(rows) % 16)
    positives = fallback = border = 0
    for start in range(0, len(rows), 16):
        box_data = np.stack(rows[start : start + 16])[:, :width]
        positives += _compare(loss, box_data, len(class_names))
        f, b = _stats(box_data, input_size)
        fallback, border = fallback + f, border + b
    # The data exercise the rules that differ from a plain best-anchor assignment.
    assert positives > 0 and fallback > 0 and border > 0, (positives, fallback, border)


def test_augmented_float_boxes_and_shared_slots(shared_data):
    # attnyolo's own pipeline gives float boxes (mosaic, mixup): the integer centre and the
    # overwrite rules must still agree, and crowded mosaics share slots between boxes.
    root = shared_data / "voc20" / "VOC2007"
    dataset = load_dataset(root, split="trainval")
    sequence = DetectionSequence(
        dataset, (320, 320), 8, train=True, mosaic=1.0, mixup=0.5, seed=3, max_boxes=200, workers=0
    )
    loss = YoloLoss(DEFAULT_ANCHORS, DEFAULT_ANCHOR_MASKS, 320, len(dataset.class_names))
    shared = 0
    for index in range(3):
        _, y = sequence[index]
        classes = y["classes"].astype(np.float64)
        box_data = np.concatenate([y["boxes"].astype(np.float64), classes[..., None]], axis=-1)
        box_data[classes < 0] = 0.0
        _compare(loss, box_data, len(dataset.class_names))
        expected = original_targets(
            box_data, (320, 320), DEFAULT_ANCHORS, len(dataset.class_names), DEFAULT_ANCHOR_MASKS
        )
        shared += sum(int(np.sum(t[..., 5:].sum(-1) > 1)) for t in expected)
    assert shared > 0  # some slot carries two class bits, as the original writes it

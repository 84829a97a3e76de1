"""Training and validation batches: shapes, reproducibility, augmentation schedule, bad files."""

import pickle
import random
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from attnyolo.data import DatasetWarning, Record, load_image, read_voc
from attnyolo.data.augment import letterbox_sample
from attnyolo.data.pipeline import DetectionSequence, loader_throughput
from attnyolo.data.records import Dataset
from tests.data.test_augment import assert_boxes_frame_red, scene

SIZE = (64, 96)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Dataset:
    """Ten PNG images (lossless, so colours are exact) of various shapes, each with one red
    object of class 0; every other image also has a difficult box of class 1."""
    folder = tmp_path_factory.mktemp("synthetic")
    records = []
    shapes = [(120, 160), (200, 100), (90, 240), (150, 150), (60, 80)]
    for k in range(10):
        h, w = shapes[k % len(shapes)]
        box = (w // 4 + k, h // 5, w // 4 + k + w // 3, h // 5 + h // 3)
        image, boxes, _ = scene(h, w, box, seed=k)
        path = folder / f"{k:02d}.png"
        Image.fromarray(image).save(path)
        if k % 2:
            # Difficult boxes are not learned from: they must never reach the targets.
            boxes = np.concatenate([boxes, [[0, 0, w // 5, h // 5]]])
            records.append(Record(path, boxes, [0, 1], [False, True]))
        else:
            records.append(Record(path, boxes, [0], [False]))
    return Dataset(records, ["object", "difficult"], source=str(folder))


def sequence(dataset, **kwargs):
    options = {"batch_size": 4, "epochs": 10, "seed": 7} | kwargs
    return DetectionSequence(dataset, SIZE, **options)


def assert_batches_equal(a, b):
    np.testing.assert_array_equal(a[0], b[0])
    for key in ("boxes", "classes"):
        np.testing.assert_array_equal(a[1][key], b[1][key])


def test_batch_shapes_dtypes_and_padding(synthetic):
    train = sequence(synthetic, max_boxes=5, mosaic=0.5, mixup=0.5)
    assert len(train) == 2  # 10 // 4: the partial batch is dropped in training
    for index in range(len(train)):
        images, targets = train[index]
        boxes, classes = targets["boxes"], targets["classes"]
        assert images.shape == (4, *SIZE, 3) and images.dtype == np.float32
        assert 0.0 <= images.min() and images.max() <= 1.0
        assert boxes.shape == (4, 5, 4) and boxes.dtype == np.float32
        assert classes.shape == (4, 5) and classes.dtype == np.int32
        padding = classes == -1
        assert (boxes[padding] == 0).all()
        real = boxes[~padding]
        assert ((real[:, 2:] - real[:, :2]) >= 1).all()
        assert (real[:, [0, 2]] <= SIZE[1]).all() and (real[:, [1, 3]] <= SIZE[0]).all()
        # Padding only ever follows the real boxes.
        assert (np.diff(padding.astype(int), axis=1) >= 0).all()
        assert set(np.unique(classes)) <= {-1, 0}  # class 1 is only ever difficult
    with pytest.raises(IndexError):
        train[len(train)]

    val = sequence(synthetic, train=False)
    assert len(val) == 3  # ceil(10 / 4): validation keeps the partial batch
    images, targets = val[2]
    assert images.shape == (2, *SIZE, 3) and targets["boxes"].shape == (2, 100, 4)


def test_validation_is_the_letterbox_in_order(synthetic):
    val = sequence(synthetic, train=False, batch_size=3)
    images, targets = val[1]
    for row, record in enumerate(synthetic.records[3:6]):
        canvas, boxes = letterbox_sample(load_image(record.image), record.boxes[:1], SIZE)
        np.testing.assert_allclose(images[row], canvas / 255.0, atol=1e-6)
        np.testing.assert_allclose(targets["boxes"][row, :1], boxes, atol=1e-4)
        assert targets["classes"][row, 0] == 0 and targets["classes"][row, 1] == -1
        assert_boxes_frame_red(canvas, boxes)
    # No randomness: other epochs and seeds give the same batch.
    val.on_epoch_end()
    other = sequence(synthetic, train=False, batch_size=3, seed=99)
    assert_batches_equal(val[1], (images, targets))
    assert_batches_equal(other[1], (images, targets))


def test_training_samples_are_reproducible_in_any_order(synthetic):
    a = sequence(synthetic, batch_size=2, mosaic=0.5, mixup=0.5)
    b = sequence(synthetic, batch_size=2, mosaic=0.5, mixup=0.5)
    forward = [a[i] for i in range(len(a))]
    # Another instance, batches built by four threads in a shuffled order.
    indices = list(range(len(b)))
    random.Random(0).shuffle(indices)
    with ThreadPoolExecutor(4) as pool:
        shuffled = dict(zip(indices, pool.map(b.__getitem__, indices), strict=True))
    for i, batch in enumerate(forward):
        assert_batches_equal(batch, shuffled[i])

    a.on_epoch_end()
    assert a.epoch == 1
    assert not np.array_equal(a[0][0], forward[0][0])
    b.set_epoch(1)
    assert_batches_equal(a[0], b[0])
    b.set_epoch(0)  # resuming at epoch 0 again reproduces the first epoch
    assert_batches_equal(b[0], forward[0])
    assert not np.array_equal(sequence(synthetic, batch_size=2, seed=8)[0][0], forward[0][0])


def test_order_is_reshuffled_each_epoch(synthetic):
    train = sequence(synthetic)
    first, second = train.order(0), train.order(1)
    assert sorted(first) == list(range(10)) and sorted(second) == list(range(10))
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(sequence(synthetic, shuffle=False).order(3), np.arange(10))


def test_special_augmentation_stops_after_the_ratio_of_epochs(synthetic):
    train = sequence(synthetic, mosaic=1.0, mixup=1.0, epochs=10, special_aug_ratio=0.7)
    for epoch in range(10):
        samples = [train.load_sample(p, epoch) for p in range(10)]
        # 0.7 x 10 epochs: mosaic and mixup in epochs 0..6, never from epoch 7 on.
        assert all(s.mosaic and s.mixup for s in samples) == (epoch < 7)
        assert any(s.mosaic or s.mixup for s in samples) == (epoch < 7)
        if epoch < 7:
            assert all(len(s.sources) == 5 for s in samples)  # four in the mosaic, one mixed in
    # Probabilities: about half are mosaics, and mixup only ever on top of a mosaic.
    half = sequence(synthetic, mosaic=0.5, mixup=0.5, epochs=None)
    samples = [half.load_sample(p, epoch) for epoch in range(10) for p in range(10)]
    mosaics = sum(s.mosaic for s in samples)
    assert 30 < mosaics < 70
    assert 0 < sum(s.mixup for s in samples) < mosaics
    assert all(s.mosaic for s in samples if s.mixup)
    never = sequence(synthetic, mosaic=0.0, mixup=1.0)
    assert not any(never.load_sample(p).mixup for p in range(10))


@pytest.mark.parametrize(
    ("epochs", "close", "ratio", "mosaic_epochs"),
    [
        (30, 10, 1.0, 20),  # Ultralytics' rule: the last 10 of 30 epochs on single images
        (30, 10, 0.5, 15),  # both rules: the earlier end wins
        (10, 10, 1.0, 0),  # a run of 10 epochs or fewer never sees a mosaic
        (None, 10, 1.0, 12),  # epoch count unknown (a timed run's first epoch): mosaic on
    ],
)
def test_close_mosaic_keeps_the_last_epochs_single(synthetic, epochs, close, ratio, mosaic_epochs):
    train = sequence(
        synthetic, mosaic=1.0, mixup=0.0, epochs=epochs, special_aug_ratio=ratio, close_mosaic=close
    )
    on = [train.special_augmentation(epoch) for epoch in range(epochs or 12)]
    assert on == [epoch < mosaic_epochs for epoch in range(epochs or 12)]
    assert [train.load_sample(0, e).mosaic for e in range(epochs or 12)] == on
    with pytest.raises(ValueError, match="close_mosaic"):
        sequence(synthetic, close_mosaic=-1)


@pytest.mark.parametrize("kind", ["single", "mosaic"])
def test_training_boxes_frame_their_objects(synthetic, kind):
    train = sequence(synthetic, mosaic=1.0 if kind == "mosaic" else 0.0, mixup=0.0)
    for epoch in range(3):
        for position in range(10):
            sample = train.load_sample(position, epoch)
            assert sample.mosaic == (kind == "mosaic")
            assert (sample.classes == 0).all()
            # HSV jitter and strong down-scaling (cubic, no anti-aliasing) blur the edges more.
            assert_boxes_frame_red(sample.image, sample.boxes, atol=0.5)


def test_an_unreadable_image_is_reported_once_and_replaced(synthetic, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    records = list(synthetic.records)
    records[4] = Record(broken, [[0, 0, 10, 10]], [0], [False])
    dataset = Dataset(records, synthetic.class_names)
    train = sequence(dataset, mosaic=0.5, mixup=0.5, batch_size=5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            for index in range(len(train)):
                train[index]
            train.on_epoch_end()
        val = sequence(dataset, train=False, batch_size=5)
        images, _ = val[0]
    reports = [w.message for w in caught if issubclass(w.category, DatasetWarning)]
    assert len(reports) == 2  # once per sequence
    assert all(r.file == str(broken) and r.fault == "unreadable image" for r in reports)
    assert "broken.png" in str(reports[0])
    # The validation sample at its place is the next record's.
    np.testing.assert_array_equal(val.load_sample(4).image, val.load_sample(5).image)
    assert val.load_sample(4).sources == (5,)


def test_too_many_boxes_keeps_the_first_and_warns_once(synthetic):
    boxes = [[i, i, i + 20, i + 20] for i in range(6)]
    records = [Record(synthetic.records[0].image, boxes, range(6), [False] * 6)] * 3
    val = sequence(Dataset(records, [str(i) for i in range(6)]), train=False, max_boxes=4)
    with pytest.warns(UserWarning, match="6 boxes, more than max_boxes=4") as caught:
        _, targets = val[0]
    assert len([w for w in caught if "max_boxes" in str(w.message)]) == 1
    np.testing.assert_array_equal(targets["classes"], [[0, 1, 2, 3]] * 3)


def test_bad_arguments(synthetic):
    with pytest.raises(ValueError, match="no full batch"):
        sequence(synthetic, batch_size=11)
    assert len(sequence(synthetic, batch_size=11, train=False)) == 1
    with pytest.raises(ValueError, match="mosaic is a probability"):
        sequence(synthetic, mosaic=1.5)
    with pytest.raises(ValueError, match="no records"):
        sequence(Dataset([], ["a"]))
    with pytest.raises(ValueError, match="epoch must be non-negative"):
        sequence(synthetic).set_epoch(-1)


def test_keras_workers_give_the_same_batches(synthetic):
    import keras

    one = sequence(synthetic, batch_size=2, mosaic=0.5, mixup=0.5)
    many = sequence(synthetic, batch_size=2, mosaic=0.5, mixup=0.5, workers=3)
    assert isinstance(many, keras.utils.PyDataset) and many.workers == 3
    assert loader_throughput(many, batches=3) > 0
    assert loader_throughput(one, batches=3) > 0
    # Measuring does not advance the epoch.
    assert many.epoch == 0
    assert_batches_equal(one[4], many[4])
    # Worker processes under a spawn start method get a pickled copy.
    assert_batches_equal(pickle.loads(pickle.dumps(many))[4], one[4])


def test_voc20_batches(shared_data):
    names = [
        "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
        "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
        "train", "tvmonitor",
    ]  # fmt: skip
    dataset = read_voc(shared_data / "voc20" / "VOC2007", "trainval", names)
    train = DetectionSequence(dataset, 416, 4, epochs=10, seed=1)
    for index in (0, 1):
        images, targets = train[index]
        assert images.shape == (4, 416, 416, 3)
        real = targets["classes"] >= 0
        assert real.any(axis=1).sum() >= 2  # most samples keep some objects
        assert (targets["classes"] < 20).all()
        boxes = targets["boxes"][real]
        assert ((boxes[:, 2:] - boxes[:, :2]) >= 1).all() and (boxes <= 416).all()


def originals_validation_sample(path, boxes, size):
    """What the original's `get_random_data(random=False)` makes of an image, rebuilt here in
    Pillow from its facts: scale = min(w / iw, h / ih), nw = int(iw * scale), nh likewise, a
    bicubic resize pasted at ((w - nw) // 2, (h - nh) // 2) on grey 128, boxes * nw / iw + dx.
    (The original also truncates the moved boxes to integers; attnyolo keeps them exact.)"""
    h, w = size
    with Image.open(path) as image:
        image = image.convert("RGB")
        iw, ih = image.size
        scale = min(w / iw, h / ih)
        nw, nh = int(iw * scale), int(ih * scale)
        dx, dy = (w - nw) // 2, (h - nh) // 2
        canvas = Image.new("RGB", (w, h), (128, 128, 128))
        canvas.paste(image.resize((nw, nh), Image.BICUBIC), (dx, dy))
    sx, sy = nw / iw, nh / ih
    boxes = np.asarray(boxes, np.float64) * [sx, sy, sx, sy] + [dx, dy, dx, dy]
    return np.asarray(canvas), boxes


def test_validation_with_pillow_is_the_originals_letterbox(synthetic):
    val = sequence(synthetic, train=False, batch_size=5, resize_filter="pillow")
    opencv = sequence(synthetic, train=False, batch_size=5)
    for index in range(len(val)):
        images, targets = val[index]
        assert (images != opencv[index][0]).any()
        for row in range(len(images)):
            record = synthetic.records[index * 5 + row]
            expected, boxes = originals_validation_sample(record.image, record.boxes[:1], SIZE)
            # k / 255 * 255 in float32 rounds back to k exactly.
            np.testing.assert_array_equal(np.round(images[row] * 255).astype(np.uint8), expected)
            np.testing.assert_allclose(targets["boxes"][row, :1], boxes, atol=1e-4)


def test_voc20_validation_with_pillow_is_the_originals_letterbox(shared_data):
    dataset = read_voc(shared_data / "voc20" / "VOC2007", "test", None)
    dataset = Dataset(dataset.records[:3], dataset.class_names, source=dataset.source)
    val = DetectionSequence(dataset, 416, 3, train=False, resize_filter="pillow")
    images, targets = val[0]
    for row, record in enumerate(dataset.records):
        expected, boxes = originals_validation_sample(record.image, record.boxes, (416, 416))
        np.testing.assert_array_equal(np.round(images[row] * 255).astype(np.uint8), expected)
        np.testing.assert_allclose(targets["boxes"][row, : len(boxes)], boxes, atol=1e-3)


def test_training_resizes_with_the_sequences_filter(synthetic):
    # Same seed, same geometry and choices; only the resampled pixels differ.
    pillow = sequence(synthetic, batch_size=2, mosaic=0.5, mixup=0.5, resize_filter="pillow")
    opencv = sequence(synthetic, batch_size=2, mosaic=0.5, mixup=0.5)
    assert pillow.resize_filter == "pillow" and opencv.resize_filter == "opencv"
    kinds = set()
    for position in range(10):
        a, b = pillow.load_sample(position), opencv.load_sample(position)
        kinds.add((a.mosaic, a.mixup))
        assert (a.mosaic, a.mixup, a.sources) == (b.mosaic, b.mixup, b.sources)
        np.testing.assert_array_equal(a.boxes, b.boxes)
        assert (a.image != b.image).any()
    assert len(kinds) >= 2  # single images and mosaics both came up


def test_an_unknown_resize_filter_is_refused(synthetic):
    with pytest.raises(ValueError, match="unknown resize_filter 'PIL'; choose from opencv, pillow"):
        sequence(synthetic, resize_filter="PIL")

"""Darknet import/export, checked against OpenCV's Darknet importer as DATA.md describes."""

import shutil

import cv2
import keras
import numpy as np
import pytest

from attnyolo.data import load_image, resize
from attnyolo.inference.decoder import YoloDecoder
from attnyolo.models import (
    DarknetError,
    YOLOv4Tiny,
    load_darknet_weights,
    model_from_darknet,
    save_darknet,
)
from attnyolo.models.darknet import parse_cfg, read_cfg

WEIGHTS_BYTES = 24_251_276  # DATA.md: 20-byte header + 6,062,814 float32 values

needs_darknet_importer = pytest.mark.skipif(
    not hasattr(cv2.dnn, "readNetFromDarknet"),
    reason="OpenCV >= 5 dropped the Darknet importer; install opencv-python-headless<5",
)


def write_random_weights(cfg, path, seed=0):
    """A .weights file of random values for `cfg`, written here independently of attnyolo's writer:
    header int32 major=0, minor=2, revision=5, int64 seen; then per conv [beta, gamma, mean, var]
    (or bias) and the kernel, float32. Variances stay in [0.5, 1.5] so batch norm is well-posed."""
    rng = np.random.default_rng(seed)
    values = []
    for conv in read_cfg(cfg).convs:
        n = conv.filters
        if conv.batch_normalize:
            values += [
                rng.normal(0, 0.1, n),
                rng.uniform(0.5, 1.5, n),
                rng.normal(0, 0.1, n),
                rng.uniform(0.5, 1.5, n),
            ]
        else:
            values.append(rng.normal(0, 0.1, n))
        fan_in = conv.in_channels * conv.size * conv.size
        values.append(rng.normal(0, np.sqrt(2 / fan_in), conv.kernel_count))
    with open(path, "wb") as f:
        f.write(np.array([0, 2, 5], "<i4").tobytes() + np.array([0], "<i8").tobytes())
        f.write(np.concatenate(values).astype("<f4").tobytes())
    return path


@pytest.fixture(scope="module")
def darknet(shared_data, tmp_path_factory):
    cfg = shared_data / "darknet" / "yolov4-tiny.cfg"
    weights = write_random_weights(cfg, tmp_path_factory.mktemp("dn") / "random.weights")
    image = load_image(next(iter(sorted((shared_data / "voc20/VOC2007/JPEGImages").glob("*.jpg")))))
    return cfg, weights, image


def opencv_forward(cfg, weights, batch_nhwc, layers):
    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    net.setInput(np.ascontiguousarray(batch_nhwc.transpose(0, 3, 1, 2)))
    return net.forward(layers)


def relative_error(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_weight_count_matches_data_md(darknet):
    cfg, weights, _ = darknet
    assert read_cfg(cfg).weight_count == 6_062_814
    assert weights.stat().st_size == WEIGHTS_BYTES


@needs_darknet_importer
def test_heads_match_opencv(darknet):
    cfg, weights, image = darknet
    model, report = model_from_darknet(cfg, weights)
    assert len(report.loaded) == 21 and not report.skipped and not report.untouched
    batch = (resize(image, (416, 416))[0].astype(np.float32) / 255.0)[None]
    ours = model.predict_on_batch(batch)
    theirs = opencv_forward(cfg, weights, batch, ["conv_29", "conv_36"])
    for a, b in zip(ours, theirs, strict=True):
        assert relative_error(keras.ops.convert_to_numpy(a), b.transpose(0, 2, 3, 1)) < 1e-4


@needs_darknet_importer
def test_decoder_matches_opencv_yolo_layer(darknet):
    """OpenCV's [yolo] layer decodes with the cfg's scale_x_y = 1.05; feed our decoder OpenCV's
    own raw heads so that only the decoding is compared."""
    cfg, weights, image = darknet
    batch = (resize(image, (416, 416))[0].astype(np.float32) / 255.0)[None]
    raw32, raw16, yolo30, yolo37 = opencv_forward(
        cfg, weights, batch, ["conv_29", "conv_36", "yolo_30", "yolo_37"]
    )
    net = read_cfg(cfg)
    decoder = YoloDecoder(net.anchors, net.anchor_masks, (416, 416), 80, xy_scale=net.xy_scale)
    boxes, obj, cls = decoder.decode([raw32.transpose(0, 2, 3, 1), raw16.transpose(0, 2, 3, 1)])
    reference = np.concatenate([yolo30, yolo37])  # rows: cell-major, then anchor; cx cy w h rel.
    centre = (boxes[0, :, :2] + boxes[0, :, 2:]) / 2 / 416
    size = (boxes[0, :, 2:] - boxes[0, :, :2]) / 416
    np.testing.assert_allclose(centre, reference[:, :2], atol=1e-5)
    np.testing.assert_allclose(size, reference[:, 2:4], rtol=1e-4)
    np.testing.assert_allclose(obj[0], reference[:, 4], atol=1e-5)
    # OpenCV zeroes class scores below its 0.2 threshold; compare the rest.
    scores = obj[0][:, None] * cls[0]
    kept = reference[:, 5:] > 0
    np.testing.assert_allclose(scores[kept], reference[:, 5:][kept], atol=1e-5)
    assert scores[~kept].max() <= 0.2 + 1e-5


def test_round_trip_is_byte_identical(darknet, tmp_path):
    cfg, weights, _ = darknet
    model, _ = model_from_darknet(cfg, weights)
    save_darknet(model, tmp_path / "out.weights", tmp_path / "out.cfg")
    assert (tmp_path / "out.weights").read_bytes() == weights.read_bytes()
    again, _ = model_from_darknet(tmp_path / "out.cfg", tmp_path / "out.weights")
    for a, b in zip(model.get_weights(), again.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # The generated cfg is Darknet's, up to the training-only [net] options.
    ours, reference = parse_cfg(tmp_path / "out.cfg"), parse_cfg(cfg)
    assert ours[1:] == reference[1:]
    assert set(ours[0][1].items()) <= set(reference[0][1].items())


@needs_darknet_importer
def test_exported_model_with_other_classes_runs_in_opencv(tmp_path):
    model = YOLOv4Tiny(["a", "b", "c"], input_size=(128, 192), xy_scale=1.05)
    save_darknet(model, tmp_path / "m.weights", tmp_path / "m.cfg")
    batch = np.random.default_rng(1).random((1, 128, 192, 3), dtype=np.float32)
    theirs = opencv_forward(
        tmp_path / "m.cfg", tmp_path / "m.weights", batch, ["conv_29", "conv_36"]
    )
    for a, b in zip(model.predict_on_batch(batch), theirs, strict=True):
        assert relative_error(keras.ops.convert_to_numpy(a), b.transpose(0, 2, 3, 1)) < 1e-4


def test_attention_model_loads_everything_else(darknet):
    cfg, weights, _ = darknet
    plain, _ = model_from_darknet(cfg, weights)
    model = YOLOv4Tiny(80, attention="cbam")
    initial = {
        w.path: keras.ops.convert_to_numpy(w).copy() for w in model.weights if "cbam" in w.path
    }
    report = load_darknet_weights(model, cfg, weights)
    assert len(report.loaded) == 21 and not report.skipped
    assert set(report.untouched) == {"feat1_cbam", "feat2_cbam", "p5_upsample_cbam"}
    assert "kept initial values" in str(report)
    for w in model.weights:
        if "cbam" in w.path:
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(w), initial[w.path])
    for name in ("stem_conv1", "feat2_conv_bn", "head16_out"):
        for a, b in zip(
            plain.find_layer(name).get_weights(), model.find_layer(name).get_weights(), strict=True
        ):
            np.testing.assert_array_equal(a, b)


def test_other_class_count_skips_only_the_heads(darknet):
    cfg, weights, _ = darknet
    model = YOLOv4Tiny(20)
    report = load_darknet_weights(model, cfg, weights)
    assert [name for name, _ in report.skipped] == ["head32_out", "head16_out"]
    assert "80 classes" in report.skipped[0][1] and "20 classes" in report.skipped[0][1]
    assert len(report.loaded) == 19


def test_truncated_and_oversized_files(darknet, tmp_path):
    cfg, weights, _ = darknet
    data = weights.read_bytes()
    short = tmp_path / "short.weights"
    short.write_bytes(data[:-1000])
    with pytest.raises(DarknetError, match=r"truncated.*6,062,814 weights.*24,251,276"):
        model_from_darknet(cfg, short)
    long = tmp_path / "long.weights"
    long.write_bytes(data + b"\0" * 8)
    with pytest.raises(DarknetError, match=r"too long.*6,062,814.*6,062,816"):
        model_from_darknet(cfg, long)
    with pytest.raises(DarknetError, match="too short"):
        (tmp_path / "tiny.weights").write_bytes(b"\0" * 8)
        model_from_darknet(cfg, tmp_path / "tiny.weights")
    with pytest.raises(DarknetError, match="no such|cannot read"):
        model_from_darknet(cfg, tmp_path / "missing.weights")


def test_cfg_that_does_not_match(darknet, shared_data, tmp_path):
    _, weights, _ = darknet
    with pytest.raises(DarknetError, match="yolov3-tiny.cfg.*13 convolutional.*YOLOv4-tiny has 21"):
        load_darknet_weights(YOLOv4Tiny(80), shared_data / "darknet/yolov3-tiny.cfg", weights)
    edited = tmp_path / "edited.cfg"
    text = (shared_data / "darknet/yolov4-tiny.cfg").read_text()
    edited.write_text(text.replace("filters=512", "filters=384", 1))
    with pytest.raises(
        DarknetError,
        match="at layer 26: 3x3 conv 512->384, expected 3x3 conv 512->512",
    ):
        load_darknet_weights(YOLOv4Tiny(80), edited, weights)
    garbage = tmp_path / "garbage.cfg"
    garbage.write_text("hello\n")
    with pytest.raises(DarknetError, match="garbage.cfg:1"):
        read_cfg(garbage)


def test_writing_an_attention_model_is_refused(tmp_path):
    with pytest.raises(DarknetError, match="no layer for attention 'eca'"):
        save_darknet(YOLOv4Tiny(2, input_size=64, attention="eca"), tmp_path / "x.weights")


def test_shared_cfg_is_untouched(darknet, shared_data, tmp_path):
    # Tests copy rather than write into ../shared/data.
    copy = shutil.copy(shared_data / "darknet/yolov4-tiny.cfg", tmp_path)
    assert parse_cfg(copy) == parse_cfg(shared_data / "darknet/yolov4-tiny.cfg")

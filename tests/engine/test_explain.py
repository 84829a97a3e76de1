"""The objectness heatmap and the attention report: numbers, geometry, files and commands."""

import json

import cv2
import keras
import numpy as np
import pytest
from PIL import Image

from attnyolo.data.images import letterbox, load_image, resize
from attnyolo.engine.explain import (
    attention_report,
    grid_to_image,
    objectness_heatmap,
    save_attention_figures,
    save_heatmap,
)
from attnyolo.models import YOLOv4Tiny, save_detector
from tests.layers.test_attention_maps import ADDITIVE, EXPECTED_KEYS, GATE_RANGE

INPUT_SIZE = (96, 128)  # (height, width): non-square, so rows and columns cannot be mixed up
# Each position's grid (input / stride) and channels in a YOLOv4Tiny.
POSITIONS = {"feat1": (16, 256), "feat2": (32, 512), "p5_upsample": (16, 128)}
# The maps of each attention type, keyed as `attention_maps` returns them.
ATTENTION_KEYS = EXPECTED_KEYS


def spread_heads(model, seed=0):
    """Head weights that make objectness vary over the grid: an untrained backbone's features
    are ~1e-4, so the kernels are scaled to give logits of about unit spread on an image."""
    rng = np.random.default_rng(seed)
    names = ("head32_out", "head16_out")
    probe = keras.Model(model.inputs, [model.get_layer(n).input for n in names])
    features = probe.predict_on_batch(random_image((*INPUT_SIZE, 3))[None] / np.float32(255))
    for name, feature in zip(names, features, strict=True):
        layer = model.get_layer(name)
        kernel, bias = layer.get_weights()
        scale = 2 / (feature.std() * np.sqrt(kernel.shape[-2]))
        layer.set_weights([rng.normal(0, scale, kernel.shape), np.zeros_like(bias)])
    return model


@pytest.fixture(scope="module")
def detector():
    return spread_heads(YOLOv4Tiny(["cat", "dog"], input_size=INPUT_SIZE))


@pytest.fixture(scope="module")
def photo(shared_data):
    folder = shared_data / "voc20" / "VOC2007" / "JPEGImages"
    files = sorted(folder.glob("*.jpg"))
    if not files:
        pytest.skip(f"no voc20 images in {folder}")
    return files[0]


def random_image(shape=(70, 150, 3), seed=1):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_heatmap_equals_the_originals_computation_at_stretch_geometry(detector):
    image = random_image()
    result = objectness_heatmap(detector, image, letterbox=False)

    # The original's detect_heatmap: per head sigmoid(objectness), max over the anchors,
    # cv2.resize (bilinear) to the image, max over the heads (kept in float here).
    sized, _ = resize(image, INPUT_SIZE)
    heads = detector.predict_on_batch(sized[None].astype(np.float32) / 255.0)
    expected_grids, expected_maps = [], []
    for head in heads:
        _, h, w, _ = head.shape
        logits = np.asarray(head[0], np.float64).reshape(h, w, 3, -1)[..., 4]
        score = (1 / (1 + np.exp(-logits))).max(axis=-1).astype(np.float32)
        expected_grids.append(score)
        expected_maps.append(cv2.resize(score, (image.shape[1], image.shape[0])))
    expected = np.max(expected_maps, axis=0)

    assert result.heatmap.dtype == np.float32 and result.heatmap.shape == image.shape[:2]
    assert 0 <= result.heatmap.min() and result.heatmap.max() <= 1
    assert expected.max() - expected.min() > 0.1, "the heads should vary over the grid"
    for got, want in zip(result.grids, expected_grids, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)
    for got, want in zip(result.heads, expected_maps, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(result.heatmap, expected, atol=1e-5)
    assert not result.letterbox and [g.shape for g in result.grids] == [(3, 4), (6, 8)]


def test_letterbox_maps_an_input_peak_to_its_image_pixels():
    image_size, input_size = (100, 200), (128, 128)
    _, transform = letterbox(np.zeros((*image_size, 3), np.uint8), input_size)
    # scale 0.64 both ways: the image is 128 x 64 in the input, pasted 32 rows down.
    np.testing.assert_allclose(transform, [0.64, 0.64, 0, 32])
    grid = np.zeros((8, 8), np.float32)  # stride 16
    grid[4, 2] = 1.0  # the cell over input pixels x 32-48, y 64-80, centred at (40, 72)
    mapped = grid_to_image(grid, input_size, transform, image_size)

    assert mapped.shape == image_size and mapped.dtype == np.float32
    # Image pixel = (input pixel - pad) / scale: x 40 / 0.64 = 62.5, y (72 - 32) / 0.64 = 62.5,
    # the centre of pixel 62 both ways; the cell spans 25 image pixels.
    row, col = np.unravel_index(np.argmax(mapped), image_size)
    assert (row, col) == (62, 62) and mapped[62, 62] > 0.999
    assert mapped[61:64, 61:64].min() > 0.9
    assert mapped[:, 100:].max() == 0 and mapped[:25].max() == 0
    # The original resizes the whole input-sized map to the image: its peak row would be
    # 72 / 128 * 100 = 56, shifted by the padding it did not crop.
    original = cv2.resize(grid, image_size[::-1])
    assert abs(np.unravel_index(np.argmax(original), image_size)[0] - 62.5) > 5


def brightness_detector(input_size=(128, 128), classes=("a", "b")):
    """A stand-in detector whose objectness is high where the input is bright: each head
    averages the input over its cells, objectness logit = 20 * mean(RGB) - 12."""
    inputs = keras.Input((*input_size, 3))
    outputs = []
    width = 3 * (5 + len(classes))
    for stride in (32, 16):
        pooled = keras.layers.AveragePooling2D(stride)(inputs)
        dense = keras.layers.Dense(width)
        outputs.append(dense(pooled))
        kernel = np.zeros((3, width), np.float32)
        bias = np.zeros(width, np.float32)
        kernel[:, 4 :: 5 + len(classes)] = 20 / 3
        bias[4 :: 5 + len(classes)] = -12
        dense.set_weights([kernel, bias])
    model = keras.Model(inputs, outputs)
    model.class_names = list(classes)
    model.input_size = input_size
    model.anchors = ((10, 14), (23, 27), (37, 58), (81, 82), (135, 169), (344, 319))
    model.anchor_masks = ((3, 4, 5), (1, 2, 3))
    model.xy_scale = 1.0
    model.letterbox = True
    return model


def test_letterboxed_heatmap_peaks_on_the_bright_object():
    image = np.zeros((100, 200, 3), np.uint8)
    image[30:80, 110:170] = 255  # a white block; letterboxed, it covers input cells fully
    result = objectness_heatmap(brightness_detector(), image)
    assert result.letterbox  # the model's geometry
    row, col = np.unravel_index(np.argmax(result.heatmap), image.shape[:2])
    assert 30 <= row < 80 and 110 <= col < 170
    assert result.heatmap[30:80, 110:170].mean() > 0.5 > result.heatmap[:, :80].max()


def test_overlay_is_a_png_of_the_image_size(detector, tmp_path):
    image = random_image()
    result = objectness_heatmap(detector, image)
    path = result.overlay(tmp_path / "out" / "heat.png")
    assert path == tmp_path / "out" / "heat.png"
    with Image.open(path) as png:
        assert png.format == "PNG" and png.size == (image.shape[1], image.shape[0])
        pixels = np.asarray(png.convert("RGB"))
    assert not (pixels == image).all()
    assert [p.name for p in path.parent.iterdir()] == ["heat.png"]  # no temporary files left
    with pytest.raises(ValueError, match=r"does not fit an image of shape \(70, 150, 3\)"):
        save_heatmap(image, result.heatmap[:10], tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def attention_model(kind, seed=0):
    model = YOLOv4Tiny(["cat", "dog"], input_size=INPUT_SIZE, attention=kind)
    keras.utils.set_random_seed(seed)
    return model


@pytest.mark.parametrize("kind", sorted(ATTENTION_KEYS))
def test_attention_report_for_every_type(kind, photo, tmp_path):
    image = load_image(photo)
    reports = attention_report(attention_model(kind), image, letterbox=True)
    assert [r.position for r in reports] == list(POSITIONS)
    height, width = INPUT_SIZE
    for report in reports:
        stride, channels = POSITIONS[report.position]
        h, w = height // stride, width // stride
        assert report.name == f"{report.position}_{kind}" and report.type == kind
        assert report.features == (h, w, channels)
        expected = {"channel": (channels,), "spatial": (h, w), "height": (h, channels)}
        expected["width"] = (w, channels)
        expected["full"] = expected["residual"] = (h, w, channels)
        assert report.shapes == {key: expected[key] for key in ATTENTION_KEYS[kind]}
        for key, value in report.maps.items():
            assert isinstance(value, np.ndarray) and value.dtype == np.float32
            low, high = (None, None) if key in ADDITIVE else GATE_RANGE.get(kind, (0.0, 1.0))
            assert low is None or value.min() >= low
            assert high is None or value.max() <= high

    # One of each kind of figure: a few seconds each.
    if kind in ("cbam", "ca", "se", "simam", "nl"):
        paths = save_attention_figures(image, reports, tmp_path / "figures", top=4)
        names = [f"{p}_{kind}.png" for p in POSITIONS] + ["attention.json"]
        assert [p.name for p in paths] == names
        assert all(p.is_file() and p.stat().st_size > 0 for p in paths)
        document = json.loads(paths[-1].read_text())
        assert [layer["name"] for layer in document["layers"]] == [r.name for r in reports]
        layer = document["layers"][0]
        assert set(layer["maps"]) == set(ATTENTION_KEYS[kind])
        for stats in layer["maps"].values():
            assert stats["min"] <= stats["mean"] <= stats["max"]
            assert len(stats.get("top_channels", [None] * 4)) == 4


def test_attention_maps_are_the_layers_on_its_own_input(photo):
    model = attention_model("cbam")
    image = load_image(photo)
    (report, *_) = attention_report(model, image, letterbox=False)
    sized, _ = resize(image, INPUT_SIZE)
    features = model.backbone(sized[None].astype(np.float32) / 255.0)[0]  # feat1
    maps = model.get_layer("feat1_cbam").attention_maps(features)
    for key, value in maps.items():
        np.testing.assert_allclose(report.maps[key], keras.ops.convert_to_numpy(value)[0])


def test_a_model_without_attention_is_refused():
    model = YOLOv4Tiny(["cat"], input_size=INPUT_SIZE)
    with pytest.raises(
        ValueError, match=r"model.keras has no attention layers \(attention: none\)"
    ):
        attention_report(model, random_image(), source="model.keras")


@pytest.fixture(scope="module")
def cli():
    from attnyolo.cli import build_parser

    return build_parser()


def test_heatmap_command(cli, detector, photo, tmp_path, capsys, monkeypatch):
    model = save_detector(detector, tmp_path / "model.keras")
    out = tmp_path / "heat.png"
    args = cli.parse_args(["heatmap", str(model), str(photo), "-o", str(out), "--no-letterbox"])
    assert args.letterbox is False and args.resize_filter is None
    args.func(args)
    assert capsys.readouterr().out.splitlines() == [f"wrote {out}"] and out.is_file()

    monkeypatch.chdir(tmp_path)  # default name: beside the working folder, after the image
    args = cli.parse_args(["heatmap", str(model), str(photo)])
    args.func(args)
    assert capsys.readouterr().out.strip() == f"wrote {photo.stem}_heatmap.png"
    assert (tmp_path / f"{photo.stem}_heatmap.png").is_file()

    missing = tmp_path / "nope.jpg"
    args = cli.parse_args(["heatmap", str(model), str(missing)])
    with pytest.raises(ValueError, match=rf"^{missing}: no such image file$"):
        args.func(args)
    args = cli.parse_args(["heatmap", str(tmp_path / "none.keras"), str(photo)])
    with pytest.raises(ValueError, match="^.*none.keras: no such model file$"):
        args.func(args)


def test_attention_command(cli, photo, tmp_path, capsys):
    model = save_detector(attention_model("cbam"), tmp_path / "cbam.keras")
    out = tmp_path / "att"
    argv = ["attention", str(model), str(photo), "-o", str(out), "--letterbox", "--top", "3"]
    args = cli.parse_args(argv)
    args.func(args)
    lines = capsys.readouterr().out.splitlines()
    names = [f"{p}_cbam.png" for p in POSITIONS] + ["attention.json"]
    assert lines == [f"wrote {out / name}" for name in names]
    assert all((out / name).is_file() for name in names)
    document = json.loads((out / "attention.json").read_text())
    assert len(document["layers"][0]["maps"]["channel"]["top_channels"]) == 3

    plain = save_detector(YOLOv4Tiny(["cat"], input_size=INPUT_SIZE), tmp_path / "model.keras")
    args = cli.parse_args(["attention", str(plain), str(photo)])
    with pytest.raises(
        ValueError, match=r"^model.keras has no attention layers \(attention: none\)$"
    ):
        args.func(args)

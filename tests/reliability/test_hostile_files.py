"""Hostile files: images, videos and model files that are broken, huge, exotic or foreign.

Every file is made here (Pillow, NumPy, OpenCV, zlib, zipfile, onnx.helper). What each must give:

- an image: its RGB uint8 array, pixel for pixel where the format is lossless, or an `ImageError`
  naming the file, in bounded memory; in `attnyolo predict` a bad image is one plain line and is
  skipped, in training it is reported once (`DatasetWarning`) and replaced;
- a video cut short: the frames that can be decoded, then one plain warning, never a hang;
- a model file that is not an attnyolo detector: one plain line naming the file, exit status 2.

`attnyolo predict` runs here in subprocesses on a hand-made ONNX detector (`_onnx_detector`),
which needs no TensorFlow and starts in half a second; the `.keras` cases run the CLI in this
process (TensorFlow imported once), with `capfd` taking the C-level output too, and one of them
again in a subprocess of its own.
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
import warnings
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from PIL import Image

from attnyolo.data import DatasetWarning, ImageError, load_image
from attnyolo.data._common import image_size
from attnyolo.data.records import Dataset, Record
from attnyolo.inference.config import METADATA_KEY, InferenceConfig
from attnyolo.inference.sources import SourceError, SourceWarning, open_sources
from tests.data.test_augment import assert_boxes_frame_red, scene

REPO = Path(__file__).resolve().parents[2]
CLASSES = ("ball", "box")
INPUT = (64, 64)
ANCHORS = ((10, 14), (23, 27), (37, 58), (81, 82), (135, 169), (344, 319))

# Python's own rendering of a warning (`file.py:12: UserWarning: ...` and the source line under
# it), which the CLI replaces with plain `warning: ...` lines.
PYTHON_WARNING = re.compile(r"\.py:\d+: \w*Warning\b|^\s*warnings\.warn\(", re.MULTILINE)
# TensorFlow 2.21 prints these on import whatever TF_CPP_MIN_LOG_LEVEL says: Abseil logs before
# `absl::InitializeLog()` ignore the threshold (tensorflow/tensorflow#102212). They are not
# attnyolo's and are left out of the one-line check.
TF_IMPORT_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to "
    r"STDERR|I0000 .*\] oneDNN custom operations are on\..*|To enable the following "
    r"instructions: .*|I0000 .*cpu_feature_guard.*)$"
)


def _gradient(h: int = 24, w: int = 32) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 7, y * 10, (x + y) * 4], axis=-1).astype(np.uint8)


def _noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3)).astype(np.uint8)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(path: Path, width: int, height: int, depth: int = 8, colour: int = 2, rows: int = -1):
    """A PNG of zeros written by hand (a decompression bomb compresses 1,000 to 1): all `height`
    rows, or only `rows` of them (a file that declares its size and stops)."""
    channels = {0: 1, 2: 3}[colour]
    row = b"\0" * (1 + (width * channels * depth + 7) // 8)  # filter byte + packed pixels
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(height if rows < 0 else rows))
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", data + packer.flush())
        + _png_chunk(b"IEND", b"")
    )
    return path


# Image kinds: each `make(folder)` writes its file and returns it with the pixels `load_image`
# must give (None: it must raise `ImageError` matching `error`).


@dataclass(frozen=True)
class ImageKind:
    name: str
    make: Callable[[Path], tuple[Path, np.ndarray | None]]
    error: str | None = None
    atol: int = 0  # lossy formats


def _save(path: Path, array: np.ndarray, **options) -> tuple[Path, np.ndarray]:
    Image.fromarray(array).save(path, **options)
    return path, array


def _cut(path: Path, source: Path, keep: Callable[[int], int]) -> tuple[Path, None]:
    data = source.read_bytes()
    path.write_bytes(data[: keep(len(data))])
    source.unlink()
    return path, None


def _truncated_jpeg(folder):
    _save(folder / "whole.jpg", _noise(200, 200))
    return _cut(folder / "truncated.jpg", folder / "whole.jpg", lambda n: n // 2)


def _truncated_png(folder):
    _save(folder / "whole.png", _noise(60, 80))
    return _cut(folder / "truncated.png", folder / "whole.png", lambda n: n // 2)


def _jpeg_without_end_marker(folder):
    path, _ = _save(folder / "no_eoi.jpg", _gradient(), quality=100)
    # Only the EOI marker is gone; Pillow (as the original scripts' Image.open) refuses it.
    path.write_bytes(path.read_bytes()[:-2])
    return path, None


def _png_bad_checksum(folder):
    path, _ = _save(folder / "bad_crc.png", _noise(30, 40))
    data = bytearray(path.read_bytes())
    at = data.index(b"IDAT") + 20
    data[at] ^= 0xFF  # the pixel data no longer matches the chunk's CRC
    path.write_bytes(bytes(data))
    return path, None


def _zero_bytes(folder):
    path = folder / "zero.jpg"
    path.write_bytes(b"")
    return path, None


def _text_as_jpeg(folder):
    path = folder / "notes.jpg"
    path.write_text("these are not pixels\n")
    return path, None


def _png_named_jpeg(folder):
    path, rgb = _save(folder / "really_a_png.jpg", _gradient(), format="PNG")
    return path, rgb


def _bomb_twice_the_limit(folder):
    # 10^10 pixels declared (30 GB decoded) in a file of a few hundred bytes.
    return _png(folder / "bomb_1e10.png", 100_000, 100_000, rows=4), None


def _bomb_over_the_limit(folder):
    # A complete 1-bit image of 10^8 pixels, over Pillow's MAX_IMAGE_PIXELS but under twice it:
    # the band where Pillow only warns.
    return _png(folder / "bomb_1e8.png", 10_000, 10_000, depth=1, colour=0), None


def _cmyk_jpeg(folder):
    rgb = _gradient()
    path = folder / "cmyk.jpg"
    Image.fromarray(rgb).convert("CMYK").save(path, quality=95)
    return path, rgb


def _palette(folder, transparency: bool):
    path = folder / ("palette_alpha.png" if transparency else "palette.png")
    image = Image.fromarray(_noise(20, 30)).convert("P", palette=Image.ADAPTIVE, colors=16)
    image.save(path, **({"transparency": 0} if transparency else {}))
    # Alpha is dropped: a transparent pixel keeps its palette colour.
    expected = np.asarray(Image.open(path).convert("RGBA"))[..., :3]
    return path, expected


def _gray16(values: np.ndarray) -> np.ndarray:
    # round(v / 65535 * 255), replicated to three channels
    scaled = np.round(values.astype(np.float64) / 65535 * 255).astype(np.uint8)
    return np.repeat(scaled[..., None], 3, axis=-1)


def _gray16_pillow(folder):
    values = np.array([[0, 128, 129, 257 * 100], [257 * 200, 65407, 65408, 65535]], np.uint16)
    path = folder / "gray16.png"
    Image.fromarray(values).save(path)  # mode I;16
    return path, _gray16(values)


def _gray16_opencv(folder):
    values = np.random.default_rng(1).integers(0, 65536, (12, 10)).astype(np.uint16)
    path = folder / "gray16_cv.png"
    cv2.imwrite(str(path), values)
    return path, _gray16(values)


def _gray16_big_endian_tiff(folder):
    values = np.random.default_rng(2).integers(0, 65536, (9, 11)).astype(np.uint16)
    path = folder / "gray16_be.tif"
    Image.frombytes("I;16B", (11, 9), values.astype(">u2").tobytes()).save(path)
    return path, _gray16(values)


def _rgb16_opencv(folder):
    deep = np.random.default_rng(3).integers(0, 65536, (10, 12, 3)).astype(np.uint16)
    path = folder / "rgb16.png"
    cv2.imwrite(str(path), deep[..., ::-1])  # OpenCV writes BGR
    return path, (deep >> 8).astype(np.uint8)  # Pillow reads 16-bit RGB by its high bytes


def _gray(folder):
    gray = _gradient()[..., 0]
    Image.fromarray(gray).save(folder / "gray.png")
    return folder / "gray.png", np.repeat(gray[..., None], 3, axis=-1)


def _gray_alpha(folder):
    gray = _gradient()[..., 1]
    Image.fromarray(np.stack([gray, 255 - gray], -1), "LA").save(folder / "gray_alpha.png")
    return folder / "gray_alpha.png", np.repeat(gray[..., None], 3, axis=-1)


def _rgba(folder):
    rgb = _gradient()
    alpha = np.zeros(rgb.shape[:2], np.uint8)  # fully transparent: the colours still count
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(folder / "rgba.png")
    return folder / "rgba.png", rgb


def _bilevel(folder):
    bits = _gradient()[..., 0] > 100
    Image.fromarray(bits).save(folder / "bilevel.png")
    return folder / "bilevel.png", np.repeat(np.where(bits, 255, 0)[..., None], 3, -1)


def _animated_gif(folder):
    frames = [Image.fromarray(np.full((20, 30, 3), v, np.uint8)) for v in (10, 200, 90)]
    path = folder / "animated.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert Image.open(path).n_frames == 3
    return path, np.full((20, 30, 3), 10, np.uint8)  # the first frame


# EXIF orientation -> how the stored pixels are turned to be displayed (what load_image returns).
DISPLAYED = {3: lambda a: np.rot90(a, 2), 6: lambda a: np.rot90(a, -1), 8: lambda a: np.rot90(a, 1)}


def _exif(orientation: int, suffix: str):
    def make(folder):
        stored = _gradient(20, 30)
        image = Image.fromarray(stored)
        exif = image.getexif()
        exif[0x0112] = orientation
        path = folder / f"exif{orientation}.{suffix}"
        image.save(path, exif=exif, **({"quality": 100} if suffix == "jpg" else {}))
        return path, np.ascontiguousarray(DISPLAYED[orientation](stored))

    return make


def _corrupt_exif(folder):
    rgb = _gradient()
    path = folder / "corrupt_exif.jpg"
    # A TIFF header whose first directory claims 65535 entries that are not there.
    Image.fromarray(rgb).save(path, exif=b"Exif\0\0II*\0\x08\0\0\0\xff\xff", quality=100)
    return path, rgb


def _sliver(folder):
    line = _noise(1, 20_000)
    return _save(folder / "sliver.png", line)


def _folder_named_jpeg(folder):
    path = folder / "album.jpg"
    path.mkdir()
    return path, None


IMAGE_KINDS = [
    ImageKind("rgb png", lambda f: _save(f / "plain.png", _gradient())),
    ImageKind("truncated jpeg", _truncated_jpeg, r"cannot read image: image file is truncated"),
    ImageKind("truncated png", _truncated_png, r"cannot read image: .*truncated"),
    ImageKind("jpeg without its end marker", _jpeg_without_end_marker, r"truncated"),
    ImageKind("png with a bad checksum", _png_bad_checksum, r"cannot read image: broken data"),
    ImageKind("zero bytes", _zero_bytes, r"not an image file"),
    ImageKind("text named .jpg", _text_as_jpeg, r"not an image file"),
    ImageKind("png named .jpg", _png_named_jpeg),
    ImageKind("bomb over twice the pixel limit", _bomb_twice_the_limit, r"exceeds limit"),
    ImageKind("bomb over the pixel limit", _bomb_over_the_limit, r"exceeds limit|over the limit"),
    ImageKind("cmyk jpeg", _cmyk_jpeg, atol=12),
    ImageKind("palette png", lambda f: _palette(f, transparency=False)),
    ImageKind("palette png with transparency", lambda f: _palette(f, transparency=True)),
    ImageKind("16-bit grey png (Pillow)", _gray16_pillow),
    ImageKind("16-bit grey png (OpenCV)", _gray16_opencv),
    ImageKind("16-bit big-endian grey tiff", _gray16_big_endian_tiff),
    ImageKind("16-bit rgb png (OpenCV)", _rgb16_opencv),
    ImageKind("grey png", _gray),
    ImageKind("grey + alpha png", _gray_alpha),
    ImageKind("rgba png", _rgba),
    ImageKind("1-bit png", _bilevel),
    ImageKind("animated gif", _animated_gif),
    ImageKind("exif 6 png", _exif(6, "png")),
    ImageKind("exif 8 png", _exif(8, "png")),
    ImageKind("exif 3 jpeg", _exif(3, "jpg"), atol=8),
    ImageKind("exif 6 jpeg", _exif(6, "jpg"), atol=8),
    ImageKind("corrupt exif jpeg", _corrupt_exif, atol=8),
    ImageKind("1 x 20000 sliver", _sliver),
    ImageKind("folder named .jpg", _folder_named_jpeg, r"no such image file"),
]
BAD_IMAGES = [k.name for k in IMAGE_KINDS if k.error]


def _make_all(folder: Path) -> dict[str, tuple[Path, np.ndarray | None]]:
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for i, kind in enumerate(IMAGE_KINDS):
        sub = folder / f"k{i:02d}"  # one folder each: makers may reuse file names
        sub.mkdir()
        made[kind.name] = kind.make(sub)
    return made


@pytest.mark.parametrize("kind", IMAGE_KINDS, ids=[k.name for k in IMAGE_KINDS])
def test_every_hostile_image_gives_rgb_or_an_error_naming_it(kind, tmp_path):
    path, expected = kind.make(tmp_path)
    if kind.error:
        with pytest.raises(ImageError) as error:
            load_image(path)
        message = str(error.value)
        assert message.startswith(f"{path}: "), message
        assert re.search(kind.error, message) and "\n" not in message, message
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Corrupt EXIF data", UserWarning)  # Pillow's own
        image = load_image(path)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.flags.c_contiguous
    assert image.shape == expected.shape, (image.shape, expected.shape)
    assert np.abs(image.astype(int) - expected.astype(int)).max() <= kind.atol
    # The header's size, which the data set readers check boxes against, is the size loaded.
    assert image_size(path) == image.shape[:2]


# Memory: each bomb is read in a fresh process (no TensorFlow: attnyolo.data.images needs none)
# so that its peak resident memory is its own.
_PEAK_PROBE = r"""
import json, resource, sys
from attnyolo.data.images import ImageError, load_image
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    result = list(load_image(sys.argv[1]).shape)
except ImageError as e:
    result = str(e)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"result": result, "peak_bytes": peak * 1024}))
"""


def _peak(path: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_PROBE, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=True,
    )
    return json.loads(done.stdout)


def test_decompression_bombs_cost_bounded_memory(tmp_path):
    # Refused before decoding: the file declares more pixels than Pillow's limit.
    for path in (_bomb_twice_the_limit(tmp_path)[0], _bomb_over_the_limit(tmp_path)[0]):
        probe = _peak(path)
        assert isinstance(probe["result"], str) and str(path) in probe["result"], probe
        assert probe["peak_bytes"] < 16 * 2**20, probe
    # Under the limit they are decoded, at a bounded cost per pixel: 16 megapixels from files of
    # 30 to 50 kB. (Measured: about 9.5 bytes per pixel; 13 and 27 before the in-place EXIF
    # transpose and the integer 16-bit scaling.)
    pixels = 4000 * 4000
    for depth, colour in ((16, 0), (8, 2)):
        path = _png(tmp_path / f"bomb_{depth}_{colour}.png", 4000, 4000, depth, colour)
        assert path.stat().st_size < pixels // 100
        probe = _peak(path)
        assert probe["result"] == [4000, 4000, 3], probe
        assert probe["peak_bytes"] <= 12 * pixels, (depth, probe["peak_bytes"] / pixels)


def test_the_pixel_limit_holds_without_the_warnings_filter(tmp_path, monkeypatch):
    """Warnings filters are process-wide and not thread-safe: with reader threads, one thread's
    `catch_warnings` can restore the filters while another is loading. The limit must hold
    without them."""
    from attnyolo.data import images

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    path, _ = _save(tmp_path / "big.png", _noise(120, 120))  # 14,400 pixels: Pillow only warns
    no_filter = SimpleNamespace(
        catch_warnings=warnings.catch_warnings, simplefilter=lambda *args, **kwargs: None
    )
    monkeypatch.setattr(images, "warnings", no_filter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with pytest.raises(ImageError, match=r"big.png: .*14,400 pixels is over the limit"):
            load_image(path)


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_rotation_keeps_boxes_on_their_objects(tmp_path, orientation):
    """Boxes are drawn on the image as displayed (as annotation tools show it); the loader turns
    the stored pixels the same way, so the letterboxed sample's boxes frame their objects."""
    from attnyolo.data.pipeline import DetectionSequence

    displayed, boxes, _ = scene(90, 60, (10, 20, 40, 70), seed=orientation)
    stored = np.ascontiguousarray(np.rot90(displayed, 1 if orientation == 6 else -1))
    assert stored.shape == (60, 90, 3)
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = orientation
    path = tmp_path / "phone.png"
    image.save(path, exif=exif)
    np.testing.assert_array_equal(load_image(path), displayed)
    dataset = Dataset([Record(path, boxes, [0], [False])], ["object"])
    sample = DetectionSequence(dataset, (64, 96), 1, train=False).load_sample(0)
    assert len(sample.boxes) == 1
    assert_boxes_frame_red(sample.image, sample.boxes, atol=0.5)


def test_training_reports_each_bad_image_once_and_replaces_it(tmp_path):
    from attnyolo.data.pipeline import DetectionSequence

    made = _make_all(tmp_path / "images")
    names = list(made)
    records = [Record(made[n][0], [[0, 0, 1, 1]], [0], [False]) for n in names]
    dataset = Dataset(records, ["object"], source=str(tmp_path))
    bad = sorted(str(made[n][0]) for n in BAD_IMAGES)

    def reports(caught) -> list[DatasetWarning]:
        found = [w.message for w in caught if issubclass(w.category, DatasetWarning)]
        # Each names its file, in one line.
        assert all(r.fault == "unreadable image" and r.file in str(r) for r in found)
        assert all("\n" not in str(r) for r in found)
        return found

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        val = DetectionSequence(dataset, (64, 96), len(records), train=False)
        images, _ = val[0]
    # Validation reads every record: each bad file is reported once, and nothing else.
    assert sorted(r.file for r in reports(caught)) == bad
    assert images.shape == (len(records), 64, 96, 3) and np.isfinite(images).all()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train = DetectionSequence(dataset, (64, 96), 4, epochs=2, seed=3, mosaic=0.5, mixup=0.5)
        for _epoch in range(2):
            for index in range(len(train)):
                batch, _ = train[index]
                assert batch.shape == (4, 64, 96, 3) and np.isfinite(batch).all()
            train.on_epoch_end()
    # Training draws at random (mosaic, mixup, the last partial batch dropped): the bad files it
    # met, at most once each, over two epochs.
    found = [r.file for r in reports(caught)]
    assert len(found) == len(set(found)) and set(found) <= set(bad) and len(found) >= len(bad) // 2
    # A bad image's place is taken by the next readable record (after the last: the first).
    n = len(names)
    for position, name in enumerate(names):
        cycle = ((position + step) % n for step in range(n))
        following = next(k for k in cycle if names[k] not in BAD_IMAGES)
        assert val.load_sample(position).sources == (following,), name


# attnyolo predict in a subprocess, on an ONNX detector built by hand (no TensorFlow).


def _onnx_detector(path: Path, shape=("N", 64, 64, 3), dtype=None, inputs: int = 1, config=True):
    """An ONNX model that takes `(N, 64, 64, 3)` float32 and gives heads of the right shapes
    (stride 32 and 16, 3 anchors x (5 + 2 classes)) whose objectness finds nothing; or, with
    another input `shape`, `dtype` or number of `inputs`, a valid model with other inputs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    dtype = TensorProto.FLOAT if dtype is None else dtype
    channels = 3 * (5 + len(CLASSES))
    initial = [numpy_helper.from_array(np.array(10.0, np.float32), "ten")]
    if shape == ("N", 64, 64, 3) and dtype == TensorProto.FLOAT and inputs == 1:
        nodes = [helper.make_node("Transpose", ["images"], ["nchw"], perm=[0, 3, 1, 2])]
        for s in (32, 16):
            nodes += [
                helper.make_node(
                    "AveragePool", ["nchw"], [f"p{s}"], kernel_shape=[s, s], strides=[s, s]
                ),
                helper.make_node("Transpose", [f"p{s}"], [f"t{s}"], perm=[0, 2, 3, 1]),
                helper.make_node("Tile", [f"t{s}", "repeats"], [f"r{s}"]),
                helper.make_node("Sub", [f"r{s}", "ten"], [f"head{s}"]),
            ]
        repeats = np.array([1, 1, 1, channels // 3], np.int64)
        initial.append(numpy_helper.from_array(repeats, "repeats"))
    else:  # any input: its mean, broadcast to fixed head shapes
        nodes = [
            helper.make_node("Cast", ["images"], ["x"], to=TensorProto.FLOAT),
            helper.make_node("ReduceMean", ["x"], ["mean"], keepdims=0),
        ]
        for s in (32, 16):
            grid = 64 // s
            zeros = np.zeros((1, grid, grid, channels), np.float32)
            initial.append(numpy_helper.from_array(zeros, f"zeros{s}"))
            nodes += [
                helper.make_node("Add", [f"zeros{s}", "mean"], [f"a{s}"]),
                helper.make_node("Sub", [f"a{s}", "ten"], [f"head{s}"]),
            ]
    graph_inputs = [helper.make_tensor_value_info("images", dtype, list(shape))]
    graph_inputs += [
        helper.make_tensor_value_info(f"extra{i}", TensorProto.FLOAT, [1]) for i in range(1, inputs)
    ]
    outputs = [helper.make_tensor_value_info(f"head{s}", TensorProto.FLOAT, None) for s in (32, 16)]
    graph = helper.make_graph(nodes, "detector", graph_inputs, outputs, initial)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if config:
        metadata = InferenceConfig(
            classes=CLASSES, input_size=INPUT, anchors=ANCHORS, anchor_masks=((3, 4, 5), (1, 2, 3))
        ).to_json()
        helper.set_model_props(model, {METADATA_KEY: metadata if config is True else config})
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def detector(tmp_path_factory) -> Path:
    return _onnx_detector(tmp_path_factory.mktemp("onnx") / "detector.onnx")


def _cli(*argv, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m attnyolo.cli ...` in a fresh process, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "attnyolo.cli", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=timeout,  # a hang fails the test instead of stalling the suite
        cwd=REPO,
        env={**os.environ, "ATTNYOLO_DEBUG": ""},
    )


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not TF_IMPORT_NOISE.match(line)]


def _assert_plain(err: str) -> list[str]:
    """stderr holds only attnyolo's plain `error: ...` / `warning: ...` lines."""
    assert "Traceback" not in err and not PYTHON_WARNING.search(err), err
    lines = _lines(err)
    assert all(line.startswith(("error: ", "warning: ")) for line in lines), lines
    return lines


def test_predict_reports_each_bad_image_in_a_line_and_goes_on(detector, tmp_path):
    made = _make_all(tmp_path / "images")
    # A folder named .jpg is a folder: walked, not read.
    unreadable = [n for n in BAD_IMAGES if n != "folder named .jpg"]
    readable = [n for n in made if n not in BAD_IMAGES]
    done = _cli("predict", detector, tmp_path / "images", "-o", tmp_path / "out", "--no-progress")
    assert done.returncode == 0, done.stderr
    lines = _assert_plain(done.stderr)
    for name in unreadable:
        path = made[name][0]
        assert sum(line.startswith(f"error: {path}: ") for line in lines) == 1, (name, lines)
    # Every line names its file but one, Pillow's own about the corrupt EXIF (a plain line, from
    # a reader thread: naming the file would take a thread-safe capture of warnings).
    unnamed = [line for line in lines[:-1] if str(tmp_path) not in line]
    assert [line.split(".")[0] for line in unnamed] == ["warning: Corrupt EXIF data"], unnamed
    total = len(unreadable) + len(readable)
    assert lines[-1] == (
        f"warning: {len(unreadable)} of {total} image(s) could not be read and were skipped "
        "(listed above and in detections.json)"
    )
    printed = [line.split(": ")[0] for line in done.stdout.splitlines() if ": " in line]
    assert sorted(printed) == sorted(str(made[n][0]) for n in readable)
    document = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert sorted(f["image"] for f in document["failed"]) == sorted(
        str(made[n][0]) for n in unreadable
    )
    sizes = {entry["image"]: (entry["height"], entry["width"]) for entry in document["images"]}
    for name in readable:
        assert sizes[str(made[name][0])] == made[name][1].shape[:2], name


def test_predict_with_no_readable_image_exits_1(detector, tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    _zero_bytes(folder)
    _text_as_jpeg(folder)
    _bomb_twice_the_limit(folder)
    done = _cli("predict", detector, folder, "-o", tmp_path / "out", "--no-progress")
    assert done.returncode == 1
    lines = _assert_plain(done.stderr)
    assert lines[-1] == "error: no image could be read" and len(lines) == 5, lines


# Videos.


def _video(path: Path, frames: int = 20) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.full((48, 64, 3), (0, 0, 10 * i), np.uint8))  # BGR: red grows
    writer.release()
    return path


def _cut_video(folder: Path, fraction: float, name: str) -> Path:
    data = _video(folder / f"whole_{name}.avi").read_bytes()
    path = folder / f"{name}.avi"
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def test_a_video_cut_short_gives_its_frames_and_says_so(tmp_path):
    whole = _video(tmp_path / "whole.avi")
    with warnings.catch_warnings():
        warnings.simplefilter("error", SourceWarning)
        (source,) = open_sources([str(whole)])
        assert len(list(source.items())) == 20 == source.count
    cut = _cut_video(tmp_path, 0.9, "cut")
    (source,) = open_sources([str(cut)])
    assert source.count == 20  # what the header says
    with pytest.warns(SourceWarning) as caught:
        items = list(source.items())
    frames = [item.load() for item in items]
    assert 0 < len(frames) < 20
    assert all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for f in frames)
    # Red (first in RGB) steps up by 10 a frame: the frames read are the first ones, in order.
    np.testing.assert_allclose(
        [f[..., 0].mean() for f in frames], np.arange(len(frames)) * 10, atol=4
    )
    (warning,) = caught
    assert str(warning.message) == (
        f"{cut}: the video ends after {len(frames)} of the 20 frames its header gives (cut "
        "short or damaged); the frames read were used"
    )


@pytest.mark.parametrize("fraction", [0.0, 0.02, 0.3])
def test_a_video_cut_before_its_first_frame_is_refused_when_opened(tmp_path, fraction):
    path = _cut_video(tmp_path, fraction, "stub")
    with pytest.raises(SourceError, match=re.escape(str(path)) + r": cannot (open|read)"):
        open_sources([str(path)])


def test_predict_on_a_video_cut_short(detector, tmp_path):
    cut = _cut_video(tmp_path, 0.9, "cut")
    done = _cli("predict", detector, cut, "-o", tmp_path / "out", "--no-progress", timeout=60)
    assert done.returncode == 0, done.stderr
    document = json.loads((tmp_path / "out" / "detections.json").read_text())
    read = len(document["images"])
    assert 0 < read < 20 and (tmp_path / "out" / "cut.mp4").is_file()
    # One line, attnyolo's: FFmpeg's own (`[mjpeg @ 0x...] ...`) are silenced.
    assert _assert_plain(done.stderr) == [
        f"warning: {cut}: the video ends after {read} of the 20 frames its header gives (cut "
        "short or damaged); the frames read were used"
    ], done.stderr


# Model files.


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _edited(good: Path, path: Path, edit: Callable[[dict], None]) -> Path:
    with zipfile.ZipFile(good) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    edit(config)
    members["config.json"] = json.dumps(config).encode()
    return _zip(path, members)


@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> SimpleNamespace:
    """A real detector file and the hostile ones made from it, by name."""
    import h5py
    import keras

    from attnyolo.models import YOLOv4Tiny, save_detector

    folder = tmp_path_factory.mktemp("models")
    good = save_detector(YOLOv4Tiny(list(CLASSES), input_size=64), folder / "good.keras")
    data = good.read_bytes()
    with zipfile.ZipFile(good) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    marker = folder / "lambda_ran"
    # A Lambda that leaves a mark when it runs: loading must never run it.
    function = eval(f"lambda x: (open({str(marker)!r}, 'w').close(), x)[1]")
    inputs = keras.Input((4,))
    keras.Model(inputs, keras.layers.Lambda(function)(inputs)).save(folder / "lambda.keras")
    marker.unlink()
    files = {
        "lambda.keras": folder / "lambda.keras",
        "lambda dressed as a detector": _edited(
            folder / "lambda.keras",
            folder / "lambda_dressed.keras",
            lambda c: c.update(class_name="YOLOv4Tiny", registered_name="attnyolo>YOLOv4Tiny"),
        ),
        "unknown model class": _edited(
            good, folder / "fancy.keras", lambda c: c.update(class_name="FancyDetector")
        ),
        "unknown registered class": _edited(
            good, folder / "yolov9.keras", lambda c: c.update(registered_name="attnyolo>YOLOv9")
        ),
        "unknown module": _edited(
            good, folder / "module.keras", lambda c: c.update(registered_name=None, module="evil")
        ),
        "unknown attention": _edited(
            good, folder / "attention.keras", lambda c: c["config"].update(attention="magic")
        ),
        "weights of another model": _edited(
            good, folder / "classes.keras", lambda c: c["config"].update(classes=["a", "b", "c"])
        ),
        "truncated": folder / "truncated.keras",
        "truncated at the end": folder / "truncated_end.keras",
        "truncated weights": _zip(
            folder / "weights.keras",
            {**members, "model.weights.h5": members["model.weights.h5"][:1000]},
        ),
        "no weights": _zip(
            folder / "no_weights.keras",
            {k: v for k, v in members.items() if k != "model.weights.h5"},
        ),
        "random bytes": folder / "random.keras",
        "text": folder / "text.keras",
        "zip without config": _zip(folder / "no_config.keras", {"notes.txt": b"hello"}),
        "config not json": _zip(folder / "not_json.keras", {"config.json": b"{not json"}),
        "config a json list": _zip(folder / "list.keras", {"config.json": b"[1, 2]"}),
        "legacy hdf5": folder / "legacy.keras",
        "folder": folder / "folder.keras",
    }
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["truncated at the end"].write_bytes(data[:-100])  # the zip's central directory
    files["random bytes"].write_bytes(np.random.default_rng(0).bytes(4096))
    files["text"].write_text("model = YOLOv4Tiny()\n")
    with h5py.File(files["legacy hdf5"], "w") as legacy:
        legacy.attrs["keras_version"] = "2.4.0"
        legacy.create_dataset("model_weights", data=np.zeros(4))
    files["folder"].mkdir()
    image = folder / "photo.png"
    Image.fromarray(_gradient(40, 50)).save(image)
    return SimpleNamespace(good=good, files=files, image=image, marker=marker, folder=folder)


# What each hostile .keras file must be told, after `error: <file>: `.
KERAS_MESSAGES = {
    "lambda.keras": r"holds a Keras model of class 'Functional', not an attnyolo detector",
    # Its Functional config read as a detector's arguments, its weights then match no layer.
    "lambda dressed as a detector": r"cannot load the model: A total of \d+ objects could not be "
    r"loaded\. .*expected 1 variables, but received 0",
    "unknown model class": r"holds a Keras model of class 'FancyDetector', not an attnyolo",
    "unknown registered class": r"cannot load the model: Could not locate class 'YOLOv4Tiny'",
    "unknown module": r"cannot load the model: Could not locate class 'YOLOv4Tiny'",
    "unknown attention": r"cannot load the model: Unknown attention 'magic'",
    "weights of another model": r"cannot load the model: .*variable\.shape=\(1, 1, 512, 24\), "
    r"Received: value\.shape=\(1, 1, 512, 21\)\.?$",
    "truncated": r"not a Keras 3 model file \(\.keras zip archive\)",
    "truncated at the end": r"not a Keras 3 model file",
    "truncated weights": r"cannot load the model: .*truncated file",
    "no weights": r"cannot load the model: Expected a model\.weights\.h5",
    "random bytes": r"not a Keras 3 model file",
    "text": r"not a Keras 3 model file",
    "zip without config": r"not a valid \.keras model file \(.*config\.json",
    "config not json": r"not a valid \.keras model file \(Expecting property name",
    "config a json list": r"not a valid \.keras model file \(its config\.json holds a list",
    "legacy hdf5": r"not a Keras 3 model file .*legacy \.h5 files",
    "folder": r"a folder, not a \.keras model file",
}


def _in_process(capfd, argv) -> tuple[int, str]:
    from attnyolo.cli import main

    capfd.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in argv])
    return exit_info.value.code, capfd.readouterr().err


def _assert_one_line(code, err, path: Path, message: str) -> None:
    assert code == 2, (code, err)
    assert "Traceback" not in err and not PYTHON_WARNING.search(err), err
    lines = _lines(err)
    assert len(lines) == 1, lines  # no warnings from a load that failed either
    assert lines[0].startswith(f"error: {path}: "), lines[0]
    assert re.search(message, lines[0]), (message, lines[0])
    assert len(lines[0]) < 400, lines[0]  # a line to read, not a dump


@pytest.mark.parametrize("kind", list(KERAS_MESSAGES))
def test_a_hostile_keras_file_is_one_line_and_exit_2(kind, model_files, capfd, tmp_path):
    path = model_files.files[kind]
    for argv in (
        ["summary", path],
        ["predict", path, model_files.image, "-o", tmp_path / "out"],
    ):
        code, err = _in_process(capfd, argv)
        _assert_one_line(code, err, path, KERAS_MESSAGES[kind])
    assert not (tmp_path / "out").exists()  # nothing written
    assert not model_files.marker.exists()  # the Lambda never ran


MODEL_COMMANDS = [
    pytest.param(["summary", "{model}"], id="summary"),
    pytest.param(["predict", "{model}", "{image}"], id="predict"),
    pytest.param(["fps", "{model}", "{image}"], id="fps"),
    pytest.param(["evaluate", "{model}", "--data", "nowhere"], id="evaluate"),
    pytest.param(["heatmap", "{model}", "{image}"], id="heatmap"),
    pytest.param(["attention", "{model}", "{image}"], id="attention"),
    pytest.param(["export", "{model}", "--format", "onnx"], id="export"),
    pytest.param(["darknet", "export", "{model}", "-o", "out"], id="darknet export"),
]


@pytest.mark.parametrize("argv", MODEL_COMMANDS)
def test_every_command_that_takes_a_model_says_so_in_one_line(
    argv, model_files, capfd, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    path = model_files.files["config a json list"]
    argv = [a.format(model=path, image=model_files.image) for a in argv]
    code, err = _in_process(capfd, argv)
    _assert_one_line(code, err, path, KERAS_MESSAGES["config a json list"])
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_the_lambda_would_run_outside_safe_mode(model_files):
    """The marker works: what keeps the Lambda from running is the loader, not the test."""
    import keras

    try:
        keras.saving.load_model(model_files.files["lambda.keras"], safe_mode=False)
        assert model_files.marker.exists()
    finally:
        model_files.marker.unlink(missing_ok=True)


def test_a_hostile_keras_file_in_a_real_process(model_files):
    """The weights-of-another-model case, in a process of its own: Keras warns there before it
    fails (`Skipping nested container ...`); the user sees one line."""
    path = model_files.files["weights of another model"]
    done = _cli("summary", path)
    _assert_one_line(done.returncode, done.stderr, path, KERAS_MESSAGES["weights of another model"])


def _foreign_onnx(folder: Path) -> dict[str, tuple[Path, str]]:
    """Hostile .onnx files, each with what it must be told after `error: <file>: `."""
    from onnx import TensorProto

    random_bytes = folder / "random.onnx"
    random_bytes.write_bytes(np.random.default_rng(0).bytes(4096))
    text = folder / "text.onnx"
    text.write_text("ir_version: 8\n")
    keras_zip = _zip(folder / "zip.onnx", {"config.json": b"{}"})
    return {
        "random bytes": (random_bytes, r"not a readable ONNX model: .*INVALID_PROTOBUF"),
        "text": (text, r"not a readable ONNX model"),
        "a zip": (keras_zip, r"not a readable ONNX model"),
        "no attnyolo metadata": (
            _onnx_detector(folder / "plain.onnx", config=False),
            r"an ONNX model without attnyolo's metadata",
        ),
        "metadata not json": (
            _onnx_detector(folder / "meta.onnx", config="{classes"),
            r"attnyolo inference metadata is not JSON",
        ),
        "channels first": (
            _onnx_detector(folder / "nchw.onnx", shape=("N", 3, 64, 64)),
            r"its inputs are 'images' tensor\(float\) \['N', 3, 64, 64\]; an attnyolo detector "
            r"takes one tensor\(float\) \(batch, 64, 64, 3\)",
        ),
        "another input size": (
            _onnx_detector(folder / "size.onnx", shape=("N", 96, 96, 3)),
            r"its inputs are 'images' tensor\(float\) \['N', 96, 96, 3\]",
        ),
        "no batch dimension": (
            _onnx_detector(folder / "rank3.onnx", shape=(64, 64, 3)),
            r"its inputs are 'images' tensor\(float\) \[64, 64, 3\]",
        ),
        "uint8 input": (
            _onnx_detector(folder / "uint8.onnx", dtype=TensorProto.UINT8),
            r"its inputs are 'images' tensor\(uint8\)",
        ),
        "two inputs": (
            _onnx_detector(folder / "two.onnx", inputs=2),
            r"its inputs are 'images' tensor\(float\) \['N', 64, 64, 3\]; 'extra1'",
        ),
    }


def test_a_hostile_onnx_file_is_one_line_and_exit_2(tmp_path):
    image = tmp_path / "photo.png"
    Image.fromarray(_gradient(40, 50)).save(image)
    for kind, (path, message) in _foreign_onnx(tmp_path).items():
        done = _cli("predict", path, image, "-o", tmp_path / "out", "--no-progress")
        _assert_one_line(done.returncode, done.stderr, path, message)
        assert not (tmp_path / "out").exists(), kind


def test_the_onnx_input_check_passes_real_detectors(detector, tmp_path):
    from attnyolo.inference.runtimes import OnnxRuntime

    runtime = OnnxRuntime(detector, threads=1)
    heads = runtime(np.zeros((2, 64, 64, 3), np.float32))
    assert [h.shape for h in heads] == [(2, 2, 2, 21), (2, 4, 4, 21)]


def test_foreign_weights_files(model_files, capfd, shared_data, tmp_path):
    path = tmp_path / "random.weights"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    code, err = _in_process(capfd, ["predict", path, model_files.image])
    _assert_one_line(code, err, path, r"not a model format attnyolo runs")
    cfg = shared_data / "darknet" / "yolov4-tiny.cfg"
    text = tmp_path / "text.weights"
    text.write_text("weights\n")
    zipped = tmp_path / "zip.weights"
    zipped.write_bytes(model_files.good.read_bytes())
    for weights in (path, text, zipped):
        code, err = _in_process(
            capfd, ["darknet", "import", cfg, weights, "-o", tmp_path / "m.keras"]
        )
        _assert_one_line(code, err, weights, r"too short|truncated|header|weights")
    assert not (tmp_path / "m.keras").exists()

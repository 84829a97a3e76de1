"""Exporting a detector to ONNX, a TensorFlow SavedModel, TFLite or Darknet, checked on an image.

Every export carries the model's `InferenceConfig` (ONNX: in `metadata_props`; SavedModel:
`attnyolo.json` inside it; TFLite and Darknet: a JSON beside the file, named after it), so that
`attnyolo predict` runs it as it runs the `.keras` file.

Each export is written into a staging folder beside the output, run there with its own runtime
on a real (or a deterministic synthetic) image and compared with the Keras model's raw heads;
only then are the files renamed into place. A failed export or a failed check leaves nothing at
the output.

The float32 formats must match Keras within `TOLERANCE` (absolute, on the raw heads). Measured on
the trained 320 x 320 voc20 model of the time-to-accuracy benchmark, on a voc20 photograph and its
mirror image (raw heads up to 12 in magnitude), the largest differences per head (stride 32, 16):

    onnx (onnxruntime 1.32)             6.7e-06  3.8e-06
    savedmodel (TensorFlow 2.21)        0        0
    tflite float32                      1.9e-05  1.3e-05
    tflite float16                      2.2e-03  3.6e-03   reported only
    tflite int8 (dynamic range)         2.6e-02  4.3e-02   reported only
    darknet (OpenCV 4.14)               8.6e-02  6.1e-02   8.6e-06 5.7e-06 with OpenCV's epsilon

Darknet's files store no batch-norm epsilon and OpenCV uses another one than Keras; the check
holds a Darknet export to Keras run with OpenCV's epsilon and reports both (`_opencv_reference`).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from attnyolo.data.images import load_image
from attnyolo.inference.config import METADATA_KEY, InferenceConfig
from attnyolo.inference.preprocess import Preprocessor
from attnyolo.inference.runtimes import SAVEDMODEL_CONFIG, open_runtime, sidecar_path

QUANTIZATIONS = ("float32", "float16", "int8")
# Largest absolute difference of the raw heads from Keras that a float32 export may show; ~100x
# the differences measured (see the module docstring), far below what moves a box by a pixel.
TOLERANCE = 1e-3
# OpenCV's Darknet importer normalizes by sqrt(var + 1e-6); see `_opencv_reference`.
OPENCV_BN_EPSILON = 1e-6


class ExportError(ValueError):
    """An export that cannot be written, or whose file does not compute what the model does."""


@dataclass
class ExportResult:
    """What an export wrote and how closely the written model matched Keras.

    Attributes:
        paths: everything written, the model file (or SavedModel directory) first.
        format: `"onnx"`, `"savedmodel"`, `"tflite"` or `"darknet"`.
        quantization: the TFLite weights' precision; `"float32"` for the other formats.
        runtime: what ran the exported model for the check (e.g. `"onnxruntime"`), or None
            when nothing could run it (`note` says why).
        max_abs_diff: per head, stride 32 first: the largest |exported - Keras| raw value; None
            when the export could not be run.
        tolerance: the bound the check held the export to; None for float16 / int8 (reported
            only) and when it could not be run.
        image: the image the check ran on (a path, or `"synthetic"`).
        seconds: time to write the export; `check_seconds`: time to run and compare it.
        note: what else the check found (Darknet: the difference from Keras run with OpenCV's
            batch-norm epsilon, the one held to `tolerance`), or why it did not run.
        config: the `InferenceConfig` written with the export.
    """

    paths: list[Path]
    format: str
    quantization: str
    runtime: str | None
    max_abs_diff: tuple[float, ...] | None
    tolerance: float | None
    image: str
    seconds: float
    check_seconds: float
    note: str | None = None
    config: InferenceConfig | None = field(default=None, repr=False)

    @property
    def path(self) -> Path:
        return self.paths[0]


def export_model(
    model,
    output: str | os.PathLike | None,
    format: str,
    *,
    tflite_quantization: str = "float32",
    image: str | os.PathLike | None = None,
    opset: int | None = None,
) -> ExportResult:
    """Exports a detector and checks the written model against it on one image.

    Args:
        model: a `YOLOv4Tiny`, or the path of its `.keras` file.
        output: the file to write (`.onnx`, `.tflite`; for Darknet the `.weights` file or a
            path prefix; for SavedModel a directory); None: beside the model file, named after
            it (`default_output`).
        format: one of `FORMATS`.
        tflite_quantization: the TFLite weights: `"float32"`, `"float16"` or `"int8"` (dynamic
            range: int8 weights, float32 activations and input/output).
        image: the image the check runs on; None: a deterministic synthetic image.
        opset: the ONNX opset; None: tf2onnx's default.

    Raises:
        ExportError: a format the model cannot be written in (Darknet and attention), or a
            float32 export that differs from Keras by more than `TOLERANCE`. Nothing is written.
    """
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; choose from {', '.join(FORMATS)}")
    if tflite_quantization not in QUANTIZATIONS:
        raise ExportError(
            f"unknown quantization {tflite_quantization!r}; choose from {', '.join(QUANTIZATIONS)}"
        )
    if format != "tflite" and tflite_quantization != "float32":
        raise ExportError(f"quantization applies to tflite only, not to {format}")
    model_path = None
    if isinstance(model, (str, os.PathLike)):
        from attnyolo.models.saving import load_detector

        model_path = Path(model)
        model = load_detector(model_path)
    if output is None:
        if model_path is None:
            raise ExportError("give an output path when exporting a model object")
        output = default_output(model_path, format, tflite_quantization)
    output = Path(output)
    spec = FORMATS[format]
    if spec.refuse is not None:
        reason = spec.refuse(model)
        if reason:
            raise ExportError(f"{model_path or model.name}: {reason}")

    target = spec.target(output)
    _refuse_to_replace(target, format)
    config = InferenceConfig.from_model(model)
    batch, image_name = check_input(config, image)
    expected = [np.asarray(h, np.float32) for h in model.predict_on_batch(batch)]
    staging = Path(tempfile.mkdtemp(dir=_mkdir(target.parent), prefix=f".{target.name}.export-"))
    try:
        start = time.perf_counter()
        written = spec.write(model, config, staging / target.name, opset, tflite_quantization)
        seconds = time.perf_counter() - start
        start = time.perf_counter()
        runtime, actual, note = spec.run(written, batch)
        diffs = tolerance = None
        if actual is not None:
            diffs = _max_abs_diffs(actual, expected)
            held = diffs
            if spec.reference is not None:
                # The runtime computes differently by design: hold it to what Keras computes
                # the same way, and report both.
                held = _max_abs_diffs(actual, spec.reference(model, batch))
                note = spec.reference_note.format(diffs=_format_diffs(config, held))
            tolerance = TOLERANCE if tflite_quantization == "float32" else None
            if tolerance is not None and max(held) > tolerance:
                raise ExportError(
                    f"{target}: the exported {format} model differs from the Keras model by "
                    f"{max(held):.3g} on {image_name} (tolerance {tolerance:g}); "
                    "nothing was written"
                )
        check_seconds = time.perf_counter() - start
        paths = [_move_into_place(p, target.parent) for p in written]
    except OSError as e:  # a full disk, say: nothing was moved into place
        before = "the file there before is unchanged" if target.exists() else "nothing written"
        raise ExportError(f"{target}: export failed ({e.strerror or e}); {before}") from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportResult(
        paths=paths,
        format=format,
        quantization=tflite_quantization,
        runtime=runtime,
        max_abs_diff=diffs,
        tolerance=tolerance,
        image=image_name,
        seconds=seconds,
        check_seconds=check_seconds,
        note=note,
        config=config,
    )


def default_output(
    model_path: str | os.PathLike, format: str, quantization: str = "float32"
) -> Path:
    """Beside the model, named after it: `m.onnx`, `m_savedmodel/`, `m.tflite` (`m_float16`,
    `m_int8` quantized), `m.weights` (+ `m.cfg`, `m.names`)."""
    model_path = Path(model_path)
    stem = model_path.with_suffix("")
    if format == "tflite" and quantization != "float32":
        stem = stem.with_name(f"{stem.name}_{quantization}")
    return stem.with_name(stem.name + FORMATS[format].default_suffix)


def synthetic_image(height: int = 480, width: int = 640) -> np.ndarray:
    """A deterministic RGB uint8 test picture: colour ramps, a rectangle, a disc and stripes."""
    import cv2

    y, x = np.mgrid[0:height, 0:width]
    image = np.stack(
        [x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)], axis=-1
    ).astype(np.uint8)
    cv2.rectangle(image, (width // 8, height // 8), (width // 2, height // 2), (220, 40, 40), -1)
    cv2.circle(image, (3 * width // 4, 2 * height // 3), height // 4, (30, 200, 90), -1)
    image[height * 3 // 4 :, : width // 3][:, ::8] = 255
    return image


def check_input(config: InferenceConfig, image: str | os.PathLike | None) -> tuple[np.ndarray, str]:
    """The check's input: the image (or the synthetic one) sized as the model expects, and its
    mirror image (a batch of two, which also proves the batch dimension is free); with the
    image's name for reports."""
    rgb = synthetic_image() if image is None else load_image(image)
    sized, _ = Preprocessor.from_config(config)(rgb)
    batch = np.stack([sized, sized[:, ::-1]])
    return np.ascontiguousarray(batch, np.float32), "synthetic" if image is None else str(image)


def _write_onnx(model, config, path: Path, opset, quantization) -> list[Path]:
    import onnx

    # tf2onnx logs every rewrite at INFO; Keras' patch for it trips NumPy's np.object warning.
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model.export(path, format="onnx", verbose=False, opset_version=opset)
    proto = onnx.load(path)
    del proto.metadata_props[:]
    proto.metadata_props.add(key=METADATA_KEY, value=config.to_json())
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, path)
    return [path]


def _write_savedmodel(model, config, path: Path, opset, quantization) -> list[Path]:
    model.export(path, format="tf_saved_model", verbose=False)
    (path / SAVEDMODEL_CONFIG).write_text(config.to_json(), encoding="utf-8")
    return [path]


def _write_tflite(model, config, path: Path, opset, quantization) -> list[Path]:
    import tensorflow as tf

    savedmodel = path.with_name(path.name + ".savedmodel")  # staged, never moved into place
    model.export(savedmodel, format="tf_saved_model", verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(savedmodel))
    if quantization != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    # int8 without a representative data set is dynamic-range quantization: int8 weights,
    # float activations, float32 input and output.
    path.write_bytes(converter.convert())
    sidecar = sidecar_path(path)
    sidecar.write_text(config.to_json(), encoding="utf-8")
    return [path, sidecar]


def _write_darknet(model, config, path: Path, opset, quantization) -> list[Path]:
    from attnyolo.models.darknet import save_darknet

    cfg, names = path.with_suffix(".cfg"), path.with_suffix(".names")
    save_darknet(model, path, cfg)
    names.write_text("\n".join(config.classes) + "\n", encoding="utf-8")
    sidecar = sidecar_path(path)
    sidecar.write_text(config.to_json(), encoding="utf-8")
    return [path, cfg, names, sidecar]


def _refuse_darknet(model) -> str | None:
    if model.attention is not None:
        return (
            f"Darknet has no attention layers, so a model with {model.attention!r} attention "
            "cannot be written as .cfg/.weights; export it as onnx, savedmodel or tflite"
        )
    return None


def _run_exported(written: list[Path], batch: np.ndarray):
    runtime = open_runtime(written[0])
    return runtime.name, runtime(batch), None


def _opencv_reference(model, batch: np.ndarray) -> list[np.ndarray]:
    """The Keras heads with OpenCV's batch-norm epsilon: what a correct Darknet file gives there.

    Darknet's files store no epsilon. Keras (and Darknet, see `attnyolo.models.blocks`) normalize
    by sqrt(var + 1e-5); OpenCV's importer by sqrt(var + 1e-6) (`darknet_io.cpp`,
    `setBatchNorm`).
    On a trained model, whose smallest variances are ~2e-4, that alone moved raw head values by
    up to 0.09; with the epsilon matched the difference fell to 8e-6.
    """
    from attnyolo.models.batchnorm import batchnorm_layers

    layers = list(batchnorm_layers(model))
    saved = [layer.epsilon for layer in layers]
    try:
        for layer in layers:
            layer.epsilon = OPENCV_BN_EPSILON
        # An eager call: Keras' compiled predict function would keep the epsilon it traced.
        return [np.asarray(h, np.float32) for h in model(batch, training=False)]
    finally:
        for layer, epsilon in zip(layers, saved, strict=True):
            layer.epsilon = epsilon


def _run_darknet(written: list[Path], batch: np.ndarray):
    import cv2

    from attnyolo.models.darknet import read_cfg
    from attnyolo.models.yolo import DARKNET_CONVS, HEAD_OUTPUTS

    weights, cfg = written[:2]
    if not hasattr(cv2, "dnn") or not hasattr(cv2.dnn, "readNetFromDarknet"):
        return None, None, f"OpenCV {cv2.__version__} has no Darknet importer (it needs < 5)"
    convs = read_cfg(cfg).convs
    layers = [f"conv_{convs[DARKNET_CONVS.index(name)].index}" for name in HEAD_OUTPUTS]
    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    net.setInput(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))
    heads = [h.transpose(0, 2, 3, 1) for h in net.forward(layers)]
    return f"opencv-{cv2.__version__}", heads, None


def _suffixed(suffix: str) -> Callable[[Path], Path]:
    # The runtimes tell formats apart by suffix: a file without it could not be run back.
    def target(output: Path) -> Path:
        if output.suffix.lower() != suffix:
            raise ExportError(f"{output}: the file's name must end in {suffix}")
        return output

    return target


def _darknet_target(output: Path) -> Path:
    # Darknet's files share a prefix: accept the prefix itself or any of its files.
    if output.suffix in (".weights", ".cfg", ".names"):
        output = output.with_suffix("")
    return output.with_name(output.name + ".weights")


@dataclass(frozen=True)
class ExportFormat:
    """How one format is written, checked, and named."""

    write: Callable[..., list[Path]]
    run: Callable[[list[Path], np.ndarray], tuple]
    default_suffix: str
    target: Callable[[Path], Path] = Path
    refuse: Callable[..., str | None] | None = None  # a reason not to write the model, or None
    # When the runtime computes differently from Keras by design: the Keras heads computed its
    # way, which the check holds the export to, and the note that reports that difference.
    reference: Callable[..., list[np.ndarray]] | None = None
    reference_note: str = ""


FORMATS: dict[str, ExportFormat] = {
    "onnx": ExportFormat(_write_onnx, _run_exported, ".onnx", target=_suffixed(".onnx")),
    "savedmodel": ExportFormat(_write_savedmodel, _run_exported, "_savedmodel"),
    "tflite": ExportFormat(_write_tflite, _run_exported, ".tflite", target=_suffixed(".tflite")),
    "darknet": ExportFormat(
        _write_darknet,
        _run_darknet,
        ".weights",
        target=_darknet_target,
        refuse=_refuse_darknet,
        reference=_opencv_reference,
        reference_note=(
            "OpenCV normalizes with batch-norm epsilon 1e-6 where Keras and Darknet use 1e-5; "
            "with OpenCV's epsilon in Keras too, the difference is {diffs}"
        ),
    ),
}


def _mkdir(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _refuse_to_replace(target: Path, format: str) -> None:
    # A SavedModel is a directory: replace only a directory that is itself a SavedModel, never
    # a folder that happens to have the name the user typed.
    if target.is_dir() and not (format == "savedmodel" and (target / "saved_model.pb").is_file()):
        raise ExportError(f"{target}: is a directory (not an earlier SavedModel); not replacing it")


def _move_into_place(staged: Path, folder: Path) -> Path:
    final = folder / staged.name
    if staged.is_dir() and final.is_dir():
        # os.replace cannot replace a non-empty directory: move the old one aside first.
        old = Path(tempfile.mkdtemp(dir=folder, prefix=f".{final.name}.old-"))
        os.replace(final, old / final.name)
        os.replace(staged, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staged, final)
    return final


def _max_abs_diffs(actual: list[np.ndarray], expected: list[np.ndarray]) -> tuple[float, ...]:
    return tuple(float(np.abs(a - e).max()) for a, e in zip(actual, expected, strict=True))


def _format_diffs(config: InferenceConfig, diffs: tuple[float, ...]) -> str:
    return ", ".join(f"stride {s} {d:.2g}" for s, d in zip(config.strides, diffs, strict=True))


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _human_size(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"


def format_result(result: ExportResult) -> str:
    """Plain lines: what was written, its size, and how closely it matched Keras."""
    lines = [f"wrote {p} ({_human_size(_size(p))})" for p in result.paths]
    image = "the synthetic image" if result.image == "synthetic" else result.image
    what = result.format if result.format != "tflite" else f"tflite {result.quantization}"
    if result.max_abs_diff is None:
        lines.append(f"{what} not checked: {result.note}")
    else:
        bound = (
            f"within {result.tolerance:g}"
            if result.tolerance is not None
            else "reported, not held to a tolerance"
        )
        lines.append(
            f"{what} run with {result.runtime} against Keras on {image} and its mirror "
            f"image: max |difference| of the raw heads "
            f"{_format_diffs(result.config, result.max_abs_diff)}"
            + ("" if result.note else f" ({bound})")
        )
        if result.note:
            lines.append(f"  {result.note} ({bound})")
    lines.append(f"export {result.seconds:.1f} s, check {result.check_seconds:.1f} s")
    return "\n".join(lines)


def cmd_export(args: argparse.Namespace) -> None:
    result = export_model(
        args.model,
        args.output,
        args.format,
        tflite_quantization=args.quantize,
        image=args.image,
        opset=args.opset,
    )
    print(format_result(result))


def add_export_parser(subparsers) -> argparse.ArgumentParser:
    """Adds `attnyolo export MODEL --format ...` to a CLI's subparsers."""
    p = subparsers.add_parser(
        "export",
        help="a .keras detector to ONNX, a TF SavedModel, TFLite or Darknet, checked on an image",
    )
    p.add_argument("model", help="the .keras detector")
    p.add_argument("--format", required=True, choices=list(FORMATS))
    p.add_argument(
        "-o",
        "--output",
        help="the file (SavedModel: directory; Darknet: .weights or prefix) to write; "
        "default: beside MODEL, named after it",
    )
    p.add_argument(
        "--quantize",
        choices=QUANTIZATIONS,
        default="float32",
        help="tflite weights; int8 is dynamic range (float input and output)",
    )
    p.add_argument("--image", help="the image the export is checked on; default: a synthetic one")
    p.add_argument("--opset", type=int, help="ONNX opset (default: tf2onnx's)")
    p.set_defaults(func=cmd_export)
    return p

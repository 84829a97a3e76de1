"""Exported detectors behind the runtimes' one call: a float32 batch in, raw heads out.

Each runtime opens one exported file (`attnyolo export` writes them), reads the
`InferenceConfig` stored with it and runs the network:

- `OnnxRuntime`: a `.onnx` file; the config is the JSON under `METADATA_KEY` in the model's
  `metadata_props`. Needs only NumPy and onnxruntime: no Keras, TensorFlow, JAX or PyTorch.
- `TFLiteRuntime`: a `.tflite` file; the config is the sidecar JSON beside it, named after it
  (`model.tflite.json`), because the TFLite interpreters give no access to a flatbuffer's
  metadata. Runs on `ai_edge_litert` when installed, else on TensorFlow's `tf.lite`.
- `SavedModelRuntime`: a TensorFlow SavedModel directory; the config is `attnyolo.json` in it.

Every runtime has `name` (what runs it), `path`, `config`, and `__call__(batch)`: `batch`
float32 `(N, height, width, 3)`, RGB in [0, 1]; returns the raw heads, stride 32 first, each
`(N, grid_h, grid_w, anchors * (5 + classes))`. Heads are told apart by their grid shape, never
by the order a converter happened to give the outputs.

Nothing here imports a deep-learning framework at import time; TensorFlow is imported only when a
TFLite (without ai_edge_litert) or SavedModel runtime is made.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from attnyolo.inference.config import METADATA_KEY, InferenceConfig

SAVEDMODEL_CONFIG = f"{METADATA_KEY}.json"  # the config's file inside a SavedModel directory


class ExportedModelError(ValueError):
    """An exported model that cannot be opened or run, with the file named."""


def sidecar_path(path: str | os.PathLike) -> Path:
    """The JSON config beside an exported file: `model.tflite` -> `model.tflite.json`."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def read_config_file(path: Path, model: Path) -> InferenceConfig:
    """Reads an `InferenceConfig` JSON written beside or inside the exported `model`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ExportedModelError(
            f"{model}: its attnyolo config {path} is missing (export writes it with the model; "
            "copy the two together)"
        ) from None
    except OSError as e:
        raise ExportedModelError(f"{model}: cannot read {path}: {e.strerror or e}") from None
    return InferenceConfig.from_json(text, source=str(path))


class OnnxRuntime:
    """Runs an exported `.onnx` detector with ONNX Runtime, any batch size.

    Args:
        path: the `.onnx` file, with attnyolo's config in its metadata.
        threads: intra-op threads; None lets ONNX Runtime choose (all cores).
        providers: ONNX Runtime execution providers in order of preference; None: CUDA where
            the installed onnxruntime has it, then CPU.

    Raises:
        ExportedModelError: missing, not an ONNX model, or without attnyolo's metadata.
    """

    name = "onnxruntime"

    def __init__(
        self,
        path: str | os.PathLike,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
    ):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise ExportedModelError(f"{self.path}: no such ONNX model file")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only; it warns about every unused initializer
        if threads:
            options.intra_op_num_threads = int(threads)
        if providers is None:
            available = ort.get_available_providers()
            providers = [
                p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available
            ]
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=list(providers))
        except Exception as e:  # onnxruntime raises its own pybind exception types
            raise ExportedModelError(
                f"{self.path}: not a readable ONNX model: {_one_line(e)}"
            ) from None
        metadata = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in metadata:
            raise ExportedModelError(
                f"{self.path}: an ONNX model without attnyolo's metadata (key {METADATA_KEY!r} "
                "in metadata_props); export detectors with `attnyolo export`"
            )
        self.config = InferenceConfig.from_json(metadata[METADATA_KEY], source=str(self.path))
        self._input = _check_onnx_inputs(self.session.get_inputs(), self.config, self.path)

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        batch = check_batch(batch, self.config, self.path)
        try:
            outputs = self.session.run(None, {self._input: batch})
        except Exception as e:  # onnxruntime's pybind types, some not even RuntimeErrors
            raise ExportedModelError(
                f"{self.path}: ONNX Runtime failed on a batch of shape {batch.shape}: "
                f"{_one_line(e)}"
            ) from None
        return heads_by_stride(outputs, self.config, self.path)


def _check_onnx_inputs(inputs, config: InferenceConfig, path: Path) -> str:
    """The name of the one input of an attnyolo detector, float32 `(batch, height, width, 3)`;
    anything else is refused when the file is opened rather than on the first batch."""
    height, width = config.input_size
    expected = (height, width, 3)
    if len(inputs) == 1:
        shape, kind = list(inputs[0].shape), inputs[0].type
        # A dimension may be symbolic (a str) or unknown (None): any size fits it.
        fits = len(shape) == 4 and all(
            not isinstance(d, int) or d == e for d, e in zip(shape[1:], expected, strict=True)
        )
        if fits and kind == "tensor(float)":
            return inputs[0].name
    found = "; ".join(f"{i.name!r} {i.type} {list(i.shape)}" for i in inputs) or "none"
    raise ExportedModelError(
        f"{path}: its inputs are {found}; an attnyolo detector takes one tensor(float) "
        f"(batch, {height}, {width}, 3), as `attnyolo export` writes it"
    )


def _one_line(error: BaseException) -> str:
    """ONNX Runtime's messages, some over several lines, as one."""
    return " ".join(str(error).split())


class TFLiteRuntime:
    """Runs an exported `.tflite` detector (float32, float16 or dynamic-range int8 weights).

    A file with a dynamic batch dimension (what `attnyolo export` writes) is resized to each
    batch's size; one with a fixed batch runs the batch in chunks of that size.

    Args:
        path: the `.tflite` file; its config is `sidecar_path(path)`.
        threads: interpreter threads; None lets the interpreter choose.

    Raises:
        ExportedModelError: missing, not a TFLite model, or without its config beside it.
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise ExportedModelError(f"{self.path}: no such TFLite model file")
        self.config = read_config_file(sidecar_path(self.path), self.path)
        interpreter_class, self.name = _tflite_interpreter()
        try:
            self.interpreter = interpreter_class(model_path=str(self.path), num_threads=threads)
        except (ValueError, RuntimeError) as e:
            raise ExportedModelError(f"{self.path}: not a readable TFLite model: {e}") from None
        (self._input,) = self.interpreter.get_input_details()
        if self._input["dtype"] != np.float32:
            raise ExportedModelError(
                f"{self.path}: takes {np.dtype(self._input['dtype']).name} input; attnyolo runs "
                "float32-input models only (float32, float16 or dynamic-range int8 weights)"
            )
        signature = self._input.get("shape_signature", self._input["shape"])
        self._fixed_batch = None if signature[0] == -1 else int(signature[0])
        self._batch = None  # the batch size the tensors are allocated for

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        batch = check_batch(batch, self.config, self.path)
        if self._fixed_batch is None:
            return self._invoke(batch)
        step = self._fixed_batch
        chunks = []
        for start in range(0, len(batch), step):
            chunk = batch[start : start + step]
            padded = np.concatenate(
                [chunk, np.zeros((step - len(chunk), *chunk.shape[1:]), chunk.dtype)]
            )
            chunks.append([h[: len(chunk)] for h in self._invoke(padded)])
        return [np.concatenate(parts) for parts in zip(*chunks, strict=True)]

    def _invoke(self, batch: np.ndarray) -> list[np.ndarray]:
        if self._batch != len(batch):
            if self._fixed_batch is None:
                self.interpreter.resize_tensor_input(
                    self._input["index"], [len(batch), *self._input["shape"][1:]]
                )
            self.interpreter.allocate_tensors()
            self._batch = len(batch)
        self.interpreter.set_tensor(self._input["index"], batch)
        self.interpreter.invoke()
        outputs = [
            self.interpreter.get_tensor(o["index"]) for o in self.interpreter.get_output_details()
        ]
        return heads_by_stride(outputs, self.config, self.path)


class SavedModelRuntime:
    """Runs an exported TensorFlow SavedModel directory through its `serving_default` signature.

    Args:
        path: the directory (with `saved_model.pb` and `attnyolo.json`).
        threads: TensorFlow's intra-op threads; applied only when TensorFlow has not run
            anything yet in this process (it fixes its thread pools once).

    Raises:
        ExportedModelError: not a SavedModel directory, or without its config.
    """

    name = "tensorflow"

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        self.path = Path(path)
        if not (self.path / "saved_model.pb").is_file():
            raise ExportedModelError(f"{self.path}: not a SavedModel directory (no saved_model.pb)")
        self.config = read_config_file(self.path / SAVEDMODEL_CONFIG, self.path)
        import tensorflow as tf

        if threads:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(int(threads))
            except RuntimeError:
                pass  # TensorFlow already started: its thread pools stay as they are
        try:
            self._loaded = tf.saved_model.load(str(self.path))
            self._serve = self._loaded.signatures["serving_default"]
        except Exception as e:  # TensorFlow raises its own error types (tf.errors.*)
            raise ExportedModelError(f"{self.path}: cannot load the SavedModel: {e}") from None
        _, inputs = self._serve.structured_input_signature
        (self._input,) = inputs
        self._tf = tf

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        batch = check_batch(batch, self.config, self.path)
        outputs = self._serve(**{self._input: self._tf.constant(batch)})
        return heads_by_stride([o.numpy() for o in outputs.values()], self.config, self.path)


def check_batch(batch: np.ndarray, config: InferenceConfig, source: Path) -> np.ndarray:
    """`batch` as contiguous float32, after checking it has the model's input shape."""
    batch = np.asarray(batch)
    height, width = config.input_size
    if batch.ndim != 4 or batch.shape[1:] != (height, width, 3):
        raise ValueError(
            f"{source}: takes images as (batch, {height}, {width}, 3) float32 in [0, 1], "
            f"got shape {batch.shape}"
        )
    return np.ascontiguousarray(batch, np.float32)


def heads_by_stride(
    outputs: Sequence[np.ndarray], config: InferenceConfig, source: Path
) -> list[np.ndarray]:
    """The outputs in the config's stride order (32 first), each found by its grid shape."""
    height, width = config.input_size
    slots = {(height // s, width // s): i for i, s in enumerate(config.strides)}
    heads: list[np.ndarray | None] = [None] * len(slots)
    for output in outputs:
        slot = slots.get(tuple(output.shape[1:3]))
        if output.ndim != 4 or slot is None or heads[slot] is not None:
            shapes = [tuple(o.shape) for o in outputs]
            raise ExportedModelError(
                f"{source}: outputs {shapes} are not one head per grid {list(slots)} "
                f"(strides {list(config.strides)} of a {height}x{width} input)"
            )
        heads[slot] = np.asarray(output, np.float32)
    if any(h is None for h in heads):
        raise ExportedModelError(
            f"{source}: {len(outputs)} outputs for {len(slots)} heads (grids {list(slots)})"
        )
    return heads  # type: ignore[return-value]


def _tflite_interpreter() -> tuple[Callable, str]:
    """The TFLite interpreter class and its runtime's name: LiteRT's where installed, else
    TensorFlow's (deprecated there in favour of LiteRT, and silenced for that)."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "litert"
    except ImportError:
        pass
    import tensorflow as tf

    def interpreter(**kwargs):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
            return tf.lite.Interpreter(**kwargs)

    return interpreter, "tflite"


RUNTIMES: dict[str, type] = {".onnx": OnnxRuntime, ".tflite": TFLiteRuntime}
ACCEPTED = ".keras, .onnx, .tflite, or a TensorFlow SavedModel directory"


def open_runtime(path: str | os.PathLike, **kwargs):
    """The runtime for an exported model file, chosen by its suffix (a directory: SavedModel).

    Returns None for a `.keras` file: Keras models run through `KerasRuntime`, which the caller
    builds (so that this module never imports Keras).

    Raises:
        ValueError: a file of no format attnyolo runs, naming it and the formats accepted.
        ExportedModelError: a file of a known format that cannot be opened.
    """
    path = Path(path)
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return SavedModelRuntime(path, **kwargs)
        raise ValueError(f"{path}: a directory without saved_model.pb; attnyolo runs {ACCEPTED}")
    suffix = path.suffix.lower()
    if suffix == ".keras":
        return None
    if suffix not in RUNTIMES:
        raise ValueError(f"{path}: not a model format attnyolo runs; it runs {ACCEPTED}")
    return RUNTIMES[suffix](path, **kwargs)

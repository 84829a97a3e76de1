import argparse
import dataclasses
import json
import re
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import onnx
import pytest

from attnyolo.engine import export as export_module
from attnyolo.engine.export import (
    QUANTIZATIONS,
    TOLERANCE,
    ExportError,
    add_export_parser,
    export_model,
)
from attnyolo.inference.config import METADATA_KEY, InferenceConfig
from attnyolo.inference.runtimes import (
    ExportedModelError,
    OnnxRuntime,
    SavedModelRuntime,
    TFLiteRuntime,
    heads_by_stride,
    open_runtime,
    sidecar_path,
)
from attnyolo.models import YOLOv4Tiny, save_detector
from attnyolo.models.batchnorm import recalibrate_batchnorm
from tests.conftest import SHARED_DATA

SIZE = 128
VOC_IMAGE = SHARED_DATA / "voc20/VOC2007/JPEGImages/000000000036.jpg"

needs_darknet_importer = pytest.mark.skipif(
    not hasattr(cv2.dnn, "readNetFromDarknet"), reason="OpenCV >= 5 has no Darknet importer"
)


def trained_like(attention, seed=0):
    """A model whose batch-norm variances go down to ~2e-4 as a trained one's do and whose raw
    heads reach a few units (a fresh model's are ~1e-5), so that precision differences between
    runtimes show: batch norm re-estimated on random images, head kernels x3. (Random kernels
    cancel more than trained ones: heads x10, ~15 as trained heads, differed from Keras by 1e-4
    in ONNX where the trained voc20 model differs by 7e-6.)"""
    model = YOLOv4Tiny(["cat", "dog"], input_size=SIZE, attention=attention, letterbox=True)
    rng = np.random.default_rng(seed)
    recalibrate_batchnorm(model, [rng.random((4, SIZE, SIZE, 3), dtype=np.float32)])
    for name in ("head32_out", "head16_out"):
        layer = model.get_layer(name)
        kernel, bias = layer.get_weights()
        layer.set_weights([kernel * 3, bias])
    return model


def keras_heads(model, batch):
    return [np.asarray(h) for h in model.predict_on_batch(batch)]


def random_batch(n, seed=1):
    return np.random.default_rng(seed).random((n, SIZE, SIZE, 3), dtype=np.float32)


def max_diffs(actual, expected):
    assert [a.shape for a in actual] == [e.shape for e in expected]
    return [float(np.abs(a - e).max()) for a, e in zip(actual, expected, strict=True)]


@pytest.fixture(scope="module")
def model():
    return trained_like("cbam")


@pytest.fixture(scope="module")
def plain_model():
    return trained_like(None, seed=1)


@pytest.fixture(scope="module")
def image():
    """A voc20 photograph where the shared data is present, else the synthetic picture."""
    return VOC_IMAGE if VOC_IMAGE.is_file() else None


@pytest.fixture(scope="module")
def onnx_export(model, image, tmp_path_factory):
    return export_model(model, tmp_path_factory.mktemp("onnx") / "m.onnx", "onnx", image=image)


@pytest.fixture(scope="module", params=QUANTIZATIONS)
def tflite_export(request, model, image, tmp_path_factory):
    output = tmp_path_factory.mktemp("tflite") / f"m_{request.param}.tflite"
    return export_model(model, output, "tflite", tflite_quantization=request.param, image=image)


def test_onnx_export_checked_at_export_time(onnx_export):
    assert onnx_export.paths == [onnx_export.path] and onnx_export.path.is_file()
    assert onnx_export.runtime == "onnxruntime" and onnx_export.tolerance == TOLERANCE
    assert len(onnx_export.max_abs_diff) == 2 and max(onnx_export.max_abs_diff) < 1e-4
    onnx.checker.check_model(str(onnx_export.path))


def test_export_checks_on_a_real_image(onnx_export, shared_data):
    assert onnx_export.image == str(VOC_IMAGE)


@pytest.mark.parametrize("n", [1, 3])
def test_onnx_equals_keras_at_any_batch(onnx_export, model, n):
    runtime = OnnxRuntime(onnx_export.path, threads=1)
    batch = random_batch(n)
    assert max(max_diffs(runtime(batch), keras_heads(model, batch))) < 1e-4


def test_onnx_metadata_round_trip(onnx_export, model):
    runtime = open_runtime(onnx_export.path)
    assert isinstance(runtime, OnnxRuntime)
    assert runtime.config == InferenceConfig.from_model(model)
    assert runtime.config.letterbox is True and runtime.config.classes == ("cat", "dog")
    props = {p.key: p.value for p in onnx.load(onnx_export.path).metadata_props}
    assert json.loads(props[METADATA_KEY])["attention"] == "cbam"


def test_onnx_runtime_needs_no_deep_learning_framework(onnx_export):
    code = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        import attnyolo.inference.runtimes as r
        frameworks = ("tensorflow", "keras", "jax", "torch")
        assert not [m for m in frameworks if m in sys.modules], "at import"
        runtime = r.open_runtime({str(onnx_export.path)!r})
        heads = runtime(np.zeros((2, {SIZE}, {SIZE}, 3), "float32"))
        assert [h.shape[1] for h in heads] == [{SIZE // 32}, {SIZE // 16}]
        assert not [m for m in frameworks if m in sys.modules], "after running"
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_tflite_export(tflite_export, model):
    path = tflite_export.path
    assert tflite_export.paths == [path, sidecar_path(path)] and path.is_file()
    assert json.loads(sidecar_path(path).read_text())["classes"] == ["cat", "dog"]
    runtime = open_runtime(path)
    assert isinstance(runtime, TFLiteRuntime) and runtime.config.attention == "cbam"
    batch = random_batch(3)
    diffs = max_diffs(runtime(batch), keras_heads(model, batch))
    if tflite_export.quantization == "float32":
        assert tflite_export.tolerance == TOLERANCE and max(tflite_export.max_abs_diff) < 1e-4
        assert max(diffs) < 1e-4
    else:
        # Reported, not held to a tolerance; but still the same network, not garbage.
        assert tflite_export.tolerance is None
        assert 0 < max(diffs) < 1.0


def test_tflite_with_a_fixed_batch_runs_in_chunks(tflite_export):
    runtime = TFLiteRuntime(tflite_export.path)
    batch = random_batch(3)
    expected = runtime(batch)
    # As a file converted with batch 1 fixed: the interpreter's tensors are allocated for 1.
    fixed = TFLiteRuntime(tflite_export.path)
    fixed._fixed_batch = 1
    assert max(max_diffs(fixed(batch), expected)) < 1e-6


def test_tflite_quantized_files_are_smaller(tflite_export):
    size = tflite_export.path.stat().st_size
    float32_bytes = 4 * 5.9e6  # ~5.9 M parameters
    factor = {"float32": 1.0, "float16": 0.5, "int8": 0.25}[tflite_export.quantization]
    assert size == pytest.approx(float32_bytes * factor, rel=0.1)


def test_savedmodel_export(model, image, tmp_path):
    result = export_model(model, tmp_path / "sm", "savedmodel", image=image)
    assert result.path.is_dir() and (result.path / "attnyolo.json").is_file()
    assert result.max_abs_diff == (0.0, 0.0) and result.runtime == "tensorflow"
    runtime = open_runtime(result.path)
    assert isinstance(runtime, SavedModelRuntime) and runtime.config.input_size == (SIZE, SIZE)
    batch = random_batch(3)
    assert max(max_diffs(runtime(batch), keras_heads(model, batch))) < 1e-5
    # Exporting again replaces the earlier SavedModel, and leaves nothing else behind.
    export_model(model, tmp_path / "sm", "savedmodel")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sm"]


def test_darknet_export_refuses_attention(model, tmp_path):
    with pytest.raises(ExportError, match="no attention layers.*'cbam'") as error:
        export_model(model, tmp_path / "m.weights", "darknet")
    assert "\n" not in str(error.value)
    assert list(tmp_path.iterdir()) == []


@needs_darknet_importer
def test_darknet_export(plain_model, image, tmp_path):
    result = export_model(plain_model, tmp_path / "plain", "darknet", image=image)
    names = ["plain.weights", "plain.cfg", "plain.names", "plain.weights.json"]
    assert [p.name for p in result.paths] == names
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    assert (tmp_path / "plain.names").read_text().split() == ["cat", "dog"]
    assert result.runtime.startswith("opencv") and result.tolerance == TOLERANCE
    # The difference from Keras as it is comes from OpenCV's batch-norm epsilon; the check held
    # the file to Keras with that epsilon (the note's figures).
    assert "epsilon" in result.note and max(result.max_abs_diff) < 1.0


def test_failed_check_leaves_nothing(plain_model, tmp_path, monkeypatch):
    monkeypatch.setattr(export_module, "TOLERANCE", -1.0)
    with pytest.raises(ExportError, match="differs from the Keras model.*nothing was written"):
        export_model(plain_model, tmp_path / "m.weights", "darknet")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_nothing(plain_model, tmp_path, monkeypatch):
    def fail(model, config, path, opset, quantization):
        path.write_bytes(b"half a model")
        raise OSError("disk full")

    spec = dataclasses.replace(export_module.FORMATS["darknet"], write=fail)
    monkeypatch.setitem(export_module.FORMATS, "darknet", spec)
    (tmp_path / "m.weights").write_bytes(b"the earlier export")
    with pytest.raises(ExportError, match=r"m.weights: export failed \(disk full\); the file"):
        export_model(plain_model, tmp_path / "m.weights", "darknet")
    assert [p.name for p in tmp_path.iterdir()] == ["m.weights"]
    assert (tmp_path / "m.weights").read_bytes() == b"the earlier export"


def test_export_refuses_to_replace_a_folder(model, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="not an earlier SavedModel"):
        export_model(model, tmp_path / "out", "savedmodel")
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"format": "coreml"}, "unknown export format 'coreml'"),
        ({"format": "onnx", "tflite_quantization": "int8"}, "tflite only"),
        ({"format": "tflite", "tflite_quantization": "int4"}, "unknown quantization"),
        ({"format": "onnx"}, "m: the file's name must end in .onnx"),
    ],
)
def test_bad_export_arguments(model, tmp_path, kwargs, message):
    with pytest.raises(ExportError, match=message):
        export_model(model, tmp_path / "m", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_cli_export(plain_model, tmp_path, capsys):
    save_detector(plain_model, tmp_path / "plain.keras")
    parser = argparse.ArgumentParser(prog="attnyolo")
    add_export_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["export", str(tmp_path / "plain.keras"), "--format", "darknet"])
    args.func(args)
    out = capsys.readouterr().out
    assert (tmp_path / "plain.weights").is_file() and (tmp_path / "plain.cfg").is_file()
    assert re.search(rf"wrote {re.escape(str(tmp_path / 'plain.weights'))} \(2\d\.\d MB\)", out)
    assert "max |difference| of the raw heads stride 32" in out and "on the synthetic image" in out


def test_bad_files_are_named(onnx_export, tmp_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    with pytest.raises(ExportedModelError, match="garbage.onnx: not a readable ONNX model"):
        OnnxRuntime(garbage)
    proto = onnx.load(onnx_export.path)
    del proto.metadata_props[:]
    onnx.save(proto, tmp_path / "foreign.onnx")
    with pytest.raises(ExportedModelError, match="foreign.onnx: an ONNX model without attnyolo"):
        OnnxRuntime(tmp_path / "foreign.onnx")
    with pytest.raises(ExportedModelError, match="missing.onnx: no such ONNX model file"):
        open_runtime(tmp_path / "missing.onnx")
    tflite = tmp_path / "lonely.tflite"
    tflite.write_bytes(b"no flatbuffer")
    with pytest.raises(ExportedModelError, match="lonely.tflite.json is missing"):
        TFLiteRuntime(tflite)
    sidecar_path(tflite).write_text(onnx_export.config.to_json())
    with pytest.raises(ExportedModelError, match="lonely.tflite: not a readable TFLite model"):
        TFLiteRuntime(tflite)
    with pytest.raises(ValueError, match=r"model.pt: not a model format.*\.onnx, \.tflite"):
        open_runtime(tmp_path / "model.pt")
    with pytest.raises(ValueError, match="without saved_model.pb"):
        open_runtime(tmp_path)
    assert open_runtime(tmp_path / "model.keras") is None


def test_runtime_checks_the_input_shape(onnx_export):
    runtime = OnnxRuntime(onnx_export.path)
    with pytest.raises(ValueError, match=r"m.onnx: takes images as \(batch, 128, 128, 3\)"):
        runtime(np.zeros((1, 96, 128, 3), np.float32))


def test_heads_found_by_grid_not_by_order(onnx_export):
    config = onnx_export.config
    small, large = np.zeros((1, 4, 4, 21)), np.ones((1, 8, 8, 21))
    heads = heads_by_stride([large, small], config, "m")
    assert [h.shape[1] for h in heads] == [4, 8] and heads[1].max() == 1
    with pytest.raises(ExportedModelError, match="not one head per grid"):
        heads_by_stride([large, large], config, "m")

"""`attnyolo fps`: the figures are measured, consistent with each other, and named truly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from attnyolo.cli import main
from attnyolo.engine.fps import STAGES, format_fps, measure_fps, time_calls
from attnyolo.engine.predict import Predictor
from attnyolo.models import YOLOv4Tiny, save_detector


def test_time_calls_warms_up_then_times_each_call():
    calls = []
    samples = time_calls(lambda: calls.append(1), repeats=4, warmup=2)
    assert len(calls) == 6 and len(samples) == 4 and min(samples) >= 0


@pytest.mark.parametrize("batch_size", [1, 3])
def test_measure_fps_reports_every_stage(batch_size, tmp_path):
    predictor = Predictor(YOLOv4Tiny(3, input_size=64), batch_size=batch_size)
    report = measure_fps(predictor, batch_size=batch_size, repeats=3, warmup=1)
    assert report["batch_size"] == batch_size and report["runtime"].startswith("keras-")
    assert report["images"] == ["synthetic 640x480 JPEG"]
    for timing in (report["network"], report["end_to_end"], *report["stages"].values()):
        assert 0 < timing["p10_ms"] <= timing["median_ms"] <= timing["p90_ms"]
        assert timing["ms_per_image"] == pytest.approx(timing["median_ms"] / batch_size, abs=1e-3)
        assert timing["images_per_second"] == pytest.approx(
            1e3 * batch_size / timing["median_ms"], rel=1e-3, abs=0.01
        )
    assert list(report["stages"]) == list(STAGES)
    assert report["end_to_end_over_network"] == pytest.approx(
        report["end_to_end"]["median_ms"] / report["network"]["median_ms"], rel=1e-2
    )
    text = format_fps(report)
    assert "network" in text and "end to end" in text and "decode_nms" in text


def test_fps_command_on_an_exported_model_and_a_real_image(tmp_path, shared_data, capsys):
    from attnyolo.engine.export import export_model

    model = save_detector(YOLOv4Tiny(2, input_size=64), tmp_path / "m.keras")
    onnx = export_model(model, tmp_path / "m.onnx", "onnx").path
    photo = sorted((shared_data / "voc20/VOC2007/JPEGImages").glob("*.jpg"))[0]
    capsys.readouterr()
    main(["fps", str(onnx), str(photo), "--repeats", "3", "--warmup", "1", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["runtime"] == "onnxruntime" and report["images"] == [str(photo)]
    assert np.isfinite(report["end_to_end"]["median_ms"])


def test_a_bad_image_is_named(tmp_path, capsys):
    model = save_detector(YOLOv4Tiny(2, input_size=64), tmp_path / "m.keras")
    (tmp_path / "bad.jpg").write_text("no")
    with pytest.raises(SystemExit):
        main(["fps", str(model), str(tmp_path / "bad.jpg"), "--repeats", "1"])
    assert "bad.jpg" in capsys.readouterr().err

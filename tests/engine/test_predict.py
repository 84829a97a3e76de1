import json

import keras
import numpy as np
import pytest
from PIL import Image

from attnyolo.data import letterbox, resize
from attnyolo.engine.predict import Predictor, predict_images
from attnyolo.inference.decoder import YoloDecoder
from attnyolo.models import YOLOv4Tiny, save_detector


def confident_model(classes=("ball", "box")):
    """A model whose every anchor predicts class 0 with objectness ~1, so detections exist."""
    model = YOLOv4Tiny(list(classes), input_size=(64, 96))
    for name in ("head32_out", "head16_out"):
        layer = model.get_layer(name)
        kernel, bias = layer.get_weights()
        bias = bias.reshape(3, -1)
        bias[:, 4] = 8.0
        bias[:, 5] = 8.0
        bias[:, 6:] = -8.0
        layer.set_weights([kernel * 0.01, bias.reshape(-1)])
    return model


def images():
    rng = np.random.default_rng(0)
    return [
        rng.integers(0, 255, (120, 90, 3), dtype=np.uint8),
        rng.integers(0, 255, (50, 160, 3), dtype=np.uint8),
    ]


@pytest.mark.parametrize("use_letterbox", [False, True])
def test_predictor_equals_the_manual_pipeline(use_letterbox):
    model = confident_model()
    predictor = Predictor(model, confidence=0.3, nms_iou=0.45, letterbox=use_letterbox)
    results = predictor(images())
    sizer = letterbox if use_letterbox else resize
    for image, dets in zip(images(), results, strict=True):
        sized, transform = sizer(image, model.input_size)
        heads = [
            keras.ops.convert_to_numpy(h) for h in model(sized[None].astype(np.float32) / 255.0)
        ]
        decoder = YoloDecoder.from_model(model, confidence=0.3, nms_iou=0.45)
        expected = decoder(heads, [image.shape[:2]], transform[None])[0]
        assert len(dets) > 0
        np.testing.assert_allclose(dets.boxes, expected.boxes, atol=1e-3)
        np.testing.assert_allclose(dets.scores, expected.scores, atol=1e-5)
        h, w = image.shape[:2]
        assert (dets.boxes >= 0).all() and (dets.boxes[:, [0, 2]] <= w).all()
        assert (dets.boxes[:, [1, 3]] <= h).all() and (dets.classes == 0).all()


def test_predict_images_writes_drawings_and_json(tmp_path):
    model_path = save_detector(confident_model(), tmp_path / "m.keras")
    paths = []
    for i, image in enumerate(images()):
        paths.append(tmp_path / f"img{i}.png")
        Image.fromarray(image).save(paths[-1])
    (tmp_path / "bad.jpg").write_text("not an image")
    out = tmp_path / "out"
    document = predict_images(model_path, [*paths, tmp_path / "bad.jpg"], out, confidence=0.3)
    written = json.loads((out / "detections.json").read_text())
    assert written == json.loads(json.dumps(document))
    assert [e["image"] for e in written["images"]] == [str(p) for p in paths]
    assert written["failed"][0]["image"].endswith("bad.jpg")
    assert "not an image file" in written["failed"][0]["error"]
    assert written["classes"] == ["ball", "box"]
    for entry, image in zip(written["images"], images(), strict=True):
        assert (entry["height"], entry["width"]) == image.shape[:2]
        assert entry["detections"] and entry["detections"][0]["class_name"] == "ball"
        drawn = np.asarray(Image.open(entry["output"]))
        assert drawn.shape == image.shape
        assert np.abs(drawn.astype(int) - image.astype(int)).max() > 100  # boxes were drawn


@pytest.mark.parametrize("use_letterbox", [False, True])
def test_predictor_resizes_with_pillow_when_asked(use_letterbox):
    model = confident_model()
    h, w = model.input_size
    predictor = Predictor(model, confidence=0.3, letterbox=use_letterbox, resize_filter="pillow")
    default = Predictor(model, confidence=0.3, letterbox=use_letterbox)
    assert (predictor.resize_filter, default.resize_filter) == ("pillow", "opencv")
    sizer = letterbox if use_letterbox else resize
    for image in images():
        sized, transform = predictor.preprocessor(image)
        expected, same = sizer(image, (h, w), resize_filter="pillow")
        np.testing.assert_array_equal(sized, expected.astype(np.float32) / 255.0)
        np.testing.assert_array_equal(transform, same)
        if not use_letterbox:  # the original's plain resize_image, in Pillow
            pil = np.asarray(Image.fromarray(image).resize((w, h), Image.BICUBIC))
            np.testing.assert_array_equal(np.round(sized * 255).astype(np.uint8), pil)
        assert (sized != default.preprocessor(image)[0]).any()


def test_predictor_refuses_an_unknown_resize_filter():
    with pytest.raises(ValueError, match="unknown resize_filter 'cv2'; choose from opencv, pillow"):
        Predictor(confident_model(), resize_filter="cv2")


def test_predict_images_records_the_resize_filter(tmp_path):
    model_path = save_detector(confident_model(), tmp_path / "m.keras")
    Image.fromarray(images()[0]).save(tmp_path / "a.png")
    document = predict_images(
        model_path, [tmp_path / "a.png"], tmp_path / "out", draw=False, resize_filter="pillow"
    )
    assert document["settings"]["resize_filter"] == "pillow"
    assert document["images"][0]["detections"]


def test_the_model_file_carries_its_training_geometry(tmp_path):
    # attnyolo's training letterboxes; its models say so, and prediction and the voc protocol
    # follow unless told otherwise. A model that does not know stretches, as the original.
    from attnyolo.data.records import Dataset, Record
    from attnyolo.engine.evaluate import evaluate_model
    from attnyolo.models import load_detector

    model = confident_model()
    assert model.letterbox is None and Predictor(model).letterbox is False
    model.letterbox = True
    loaded = load_detector(save_detector(model, tmp_path / "m.keras"))
    assert loaded.letterbox is True
    assert Predictor(loaded).letterbox is True
    assert Predictor(loaded, letterbox=False).letterbox is False
    path = tmp_path / "a.jpg"
    Image.fromarray(images()[0]).save(path)
    record = Record(path, [[10, 10, 40, 60]], [0], [False], size=(120, 90))
    data = Dataset([record], ["ball", "box"])
    settings = {
        protocol: evaluate_model(
            loaded, data, protocol=protocol, progress=False, coco=False
        ).report["settings"]["letterbox"]
        for protocol in ("voc", "original", "eval_callback")
    }
    assert settings == {"voc": True, "original": False, "eval_callback": True}
    stretched = evaluate_model(loaded, data, letterbox=False, progress=False, coco=False)
    assert stretched.report["settings"]["letterbox"] is False


def test_predictor_runs_keras_models_with_batch_norm_folded():
    model = confident_model()
    folded, plain = Predictor(model, confidence=0.3), Predictor(model, confidence=0.3, fuse=False)
    assert folded.runtime.fused and not plain.runtime.fused
    assert folded.runtime.model is not model and plain.runtime.model is model
    for a, b in zip(folded(images()), plain(images()), strict=True):
        assert len(a) == len(b) > 0
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)

"""`attnyolo predict` from the command line on real photographs (voc20) and on a short video made
from them: every source kind, every output, bad input."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from attnyolo.cli import main
from attnyolo.models import YOLOv4Tiny, save_detector

VOC_NAMES = (
    "aeroplane bicycle bird boat bottle bus car cat chair cow diningtable dog horse motorbike "
    "person pottedplant sheep sofa train tvmonitor"
).split()


def lively_model(input_size=128, seed=0) -> YOLOv4Tiny:
    """An untrained model whose heads give varied scores (some above 0.3), so that every output
    has detections of several classes to write."""
    import keras

    keras.utils.set_random_seed(seed)
    model = YOLOv4Tiny(VOC_NAMES, input_size=input_size)
    rng = np.random.default_rng(seed)
    for name in ("head32_out", "head16_out"):
        layer = model.get_layer(name)
        kernel, bias = layer.get_weights()
        bias = bias.reshape(3, -1)
        bias[:, 4] = 1.0
        bias[:, 5:] = rng.normal(-3.0, 1.5, bias[:, 5:].shape)
        layer.set_weights([kernel * 4.0, bias.reshape(-1)])
    return model


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return save_detector(lively_model(), tmp_path_factory.mktemp("model") / "voc.keras")


@pytest.fixture(scope="module")
def photos(shared_data, tmp_path_factory):
    """Six voc20 photographs in a folder with a subfolder, and one broken file."""
    source = sorted((shared_data / "voc20/VOC2007/JPEGImages").glob("*.jpg"))[:6]
    folder = tmp_path_factory.mktemp("photos")
    (folder / "more").mkdir()
    for i, path in enumerate(source):
        shutil.copy(path, folder / ("more" if i >= 4 else "") / path.name)
    (folder / "more" / "broken.jpg").write_bytes(b"not a jpeg at all")
    (folder / "notes.txt").write_text("not an image, not looked at")
    return folder


@pytest.fixture(scope="module")
def video(shared_data, tmp_path_factory):
    """A 12-frame 320x240 video at 5 frames/s made from voc20 photographs."""
    source = sorted((shared_data / "voc20/VOC2007/JPEGImages").glob("*.jpg"))[:6]
    path = tmp_path_factory.mktemp("video") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (320, 240))
    assert writer.isOpened()
    for file in source * 2:
        writer.write(cv2.resize(cv2.imread(str(file)), (320, 240)))
    writer.release()
    return path


def run_cli(capsys, *argv):
    main([str(a) for a in argv])
    return capsys.readouterr()


def video_facts(path):
    capture = cv2.VideoCapture(str(path))
    frames = 0
    while capture.read()[0]:
        frames += 1
    facts = (
        frames,
        capture.get(cv2.CAP_PROP_FPS),
        (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))),
    )
    capture.release()
    return facts


def test_a_folder_with_every_output(model_file, photos, tmp_path, capsys):
    out = tmp_path / "out"
    result = run_cli(
        capsys,
        "predict",
        model_file,
        photos,
        "-o",
        out,
        "--confidence",
        "0.3",
        "--save-txt",
        "--save-json",
        "--crop",
        "--count",
        "--no-progress",
    )
    doc = json.loads((out / "detections.json").read_text())
    # The broken file is reported, named, and skipped; the six photographs are all done.
    assert len(doc["images"]) == 6 and [f["image"] for f in doc["failed"]] == [
        str(photos / "more" / "broken.jpg")
    ]
    assert "broken.jpg" in result.err and "Traceback" not in result.err
    found = sum(len(entry["detections"]) for entry in doc["images"])
    assert found > 0
    for entry in doc["images"]:
        drawn = cv2.imread(entry["output"])
        assert drawn.shape[:2] == (entry["height"], entry["width"])
        assert entry["image"].split("/")[-1] in result.out  # one line per image
        labels = (out / "labels" / (entry["output"].rsplit("/", 1)[1][:-4] + ".txt")).read_text()
        rows = [line.split() for line in labels.splitlines()]
        assert len(rows) == len(entry["detections"])
        for row, det in zip(
            sorted(rows),
            sorted(entry["detections"], key=lambda d: str(d["class_id"])),
            strict=False,
        ):
            assert 0 <= float(row[1]) <= 1 and int(row[0]) < len(VOC_NAMES)
            del det
    coco = json.loads((out / "detections_coco.json").read_text())
    assert len(coco) == found and {"image_id", "category_id", "bbox", "score"} <= set(coco[0])
    crops = list((out / "crops").rglob("*.jpg"))
    assert len(crops) == found
    counts = json.loads((out / "counts.json").read_text())
    totals = counts["totals"]
    assert sum(totals.values() if isinstance(totals, dict) else totals) == found
    assert f"{found} objects in 6 images" in result.out
    assert not list(out.rglob("*.tmp")) and not list(out.rglob(".*"))


def test_classes_filter_and_a_glob(model_file, photos, tmp_path, capsys):
    out = tmp_path / "all"
    run_cli(capsys, "predict", model_file, photos, "-o", out, "--confidence", "0.3")
    everything = json.loads((out / "detections.json").read_text())["images"]
    classes = sorted({d["class_name"] for e in everything for d in e["detections"]})
    assert len(classes) >= 2
    kept = classes[0]
    out = tmp_path / "one"
    run_cli(
        capsys,
        "predict",
        model_file,
        f"{photos}/**/*.jpg",
        "-o",
        out,
        "--confidence",
        "0.3",
        "--classes",
        kept,
        "--no-draw",
    )
    doc = json.loads((out / "detections.json").read_text())
    assert len(doc["images"]) == 6 and len(doc["failed"]) == 1
    for before, after in zip(everything, doc["images"], strict=True):
        expected = [d for d in before["detections"] if d["class_name"] == kept]
        assert after["detections"] == expected
    assert not list(out.glob("*.jpg"))  # --no-draw


def test_a_video_gives_a_drawn_video_of_the_same_rate_and_size(model_file, video, tmp_path, capsys):
    out = tmp_path / "out"
    run_cli(
        capsys,
        "predict",
        model_file,
        video,
        "-o",
        out,
        "--confidence",
        "0.3",
        "--save-txt",
        "--no-progress",
    )
    frames, fps, size = video_facts(out / "clip.mp4")
    assert (frames, size) == (12, (320, 240)) and fps == pytest.approx(5.0)
    doc = json.loads((out / "detections.json").read_text())
    assert [e["image"] for e in doc["images"]] == [f"{video}#frame={i}" for i in range(12)]
    assert all(entry["detections"] for entry in doc["images"])
    assert len(list((out / "labels").glob("clip_*.txt"))) == 12


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: (d / "fake.mp4").write_text("no video here") and d / "fake.mp4", "fake.mp4"),
        (lambda d: (d / "empty").mkdir() or d / "empty", "no images"),
        (lambda d: d / "missing.jpg", "missing.jpg: no such file"),
        (lambda d: f"{d}/*.png", "matches no files"),
    ],
)
def test_bad_sources_are_one_line_and_write_nothing(model_file, tmp_path, capsys, make, message):
    source = make(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(model_file), str(source), "-o", str(out)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
    assert not out.exists()


def test_a_webcam_that_cannot_be_opened_is_one_line(model_file, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["predict", str(model_file), "7", "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert "error:" in err and "7" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_dataset_warnings_are_plain_lines(tmp_path):
    # A data set fault reaches the user as `file: problem`, not with Python's warning prefix
    # and source line.
    import subprocess
    import sys

    voc = tmp_path / "VOC2007"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True)
    box = "<object><name>cat</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>{}</xmax>"
    box += "<ymax>30</ymax></bndbox></object>"
    for name, right in (("a", 10), ("c", 28)):
        cv2.imwrite(str(voc / "JPEGImages" / f"{name}.jpg"), np.zeros((32, 32, 3), np.uint8))
        (voc / "Annotations" / f"{name}.xml").write_text(
            "<annotation><size><width>32</width><height>32</height></size>"
            + box.format(right)
            + "</annotation>"
        )
    cv2.imwrite(str(voc / "JPEGImages" / "b.jpg"), np.zeros((32, 32, 3), np.uint8))
    (voc / "Annotations" / "b.xml").write_text("<annotation><object>")  # broken XML
    (voc / "ImageSets/Main/test.txt").write_text("a\nb\nc\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "attnyolo.cli",
            "anchors",
            "--data",
            str(voc),
            "--split",
            "test",
            "-k",
            "2",
            "-o",
            str(tmp_path / "anchors"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "b.xml" in line]
    assert lines, done.stderr
    assert all(line.startswith(("warning: ", "error: ")) for line in lines), lines
    assert "Warning:" not in done.stderr and "warnings.warn" not in done.stderr


# Exported models give the Keras model's detections.


@pytest.fixture(scope="module")
def exported(model_file, tmp_path_factory):
    from attnyolo.engine.export import export_model

    folder = tmp_path_factory.mktemp("exported")
    onnx = export_model(model_file, folder / "voc.onnx", "onnx").path
    tflite = export_model(model_file, folder / "voc.tflite", "tflite").path
    return {"onnx": onnx, "tflite": tflite}


def box_iou(a, b):
    ix = np.clip(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]), 0, None)
    iy = np.clip(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]), 0, None)
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return inter / np.maximum(union, 1e-9)


def assert_same_detections(ours, theirs, confidence):
    """Each detection of one has one in the other: same class, IoU > 0.99, scores within 1e-3.
    Only a detection whose score is within 1e-4 of the confidence threshold may be missing
    (numerical noise at the threshold decides it)."""
    for a, b in ((ours, theirs), (theirs, ours)):
        for box, score, cls in zip(a.boxes, a.scores, a.classes, strict=True):
            same = np.flatnonzero(b.classes == cls)
            if not len(same):
                assert abs(score - confidence) < 1e-4, (box, score, cls)
                continue
            ious = box_iou(box, b.boxes[same])
            best = same[np.argmax(ious)]
            if ious.max() <= 0.99:
                assert abs(score - confidence) < 1e-4, (box, score, cls, ious.max())
                continue
            assert abs(b.scores[best] - score) < 1e-3


@pytest.mark.parametrize("kind", ["onnx", "tflite"])
def test_exports_detect_as_keras_on_the_voc20_test_images(model_file, exported, shared_data, kind):
    from attnyolo.engine.predict import Predictor
    from attnyolo.inference.stream import file_items

    voc = shared_data / "voc20/VOC2007"
    names = (voc / "ImageSets/Main/test.txt").read_text().split()
    files = [voc / "JPEGImages" / f"{name}.jpg" for name in names]
    keras_run = Predictor(model_file, confidence=0.3)
    other_run = Predictor(exported[kind], confidence=0.3)
    assert other_run.runtime.name != keras_run.runtime.name
    compared = 0
    for ours, theirs in zip(
        keras_run.stream(file_items(files), keep_images=False),
        other_run.stream(file_items(files), keep_images=False),
        strict=True,
    ):
        assert ours.item.name == theirs.item.name and ours.ok and theirs.ok
        assert len(ours.detections) > 0
        assert_same_detections(ours.detections, theirs.detections, 0.3)
        compared += 1
    assert compared == len(names) == 228


def test_predict_with_onnx_loads_no_framework(model_file, exported, photos, tmp_path):
    # `attnyolo predict model.onnx` in a fresh interpreter: onnxruntime only, and the same
    # detections as the Keras model file.
    import subprocess
    import sys

    out_onnx, out_keras = tmp_path / "onnx", tmp_path / "keras"
    script = (
        "import sys\n"
        "from attnyolo.cli import main\n"
        f"main(['predict', {str(exported['onnx'])!r}, {str(photos)!r}, '-o', "
        f"{str(out_onnx)!r}, '--confidence', '0.3', '--no-progress'])\n"
        "loaded = [m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
        "print('frameworks loaded: none')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "frameworks loaded: none" in done.stdout
    main(
        [
            "predict",
            str(model_file),
            str(photos),
            "-o",
            str(out_keras),
            "--confidence",
            "0.3",
            "--no-progress",
        ]
    )
    from attnyolo.inference.decoder import Detections

    def detections(folder):
        doc = json.loads((folder / "detections.json").read_text())
        return {
            e["image"]: Detections(
                np.array([d["box"] for d in e["detections"]], np.float64).reshape(-1, 4),
                np.array([d["score"] for d in e["detections"]]),
                np.array([d["class_id"] for d in e["detections"]]),
            )
            for e in doc["images"]
        }

    ours, theirs = detections(out_keras), detections(out_onnx)
    assert sorted(ours) == sorted(theirs) and len(ours) == 6
    for name in ours:
        assert_same_detections(ours[name], theirs[name], 0.3)

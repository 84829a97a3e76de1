import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from attnyolo.cli import main
from attnyolo.models import load_detector


def run(capsys, *argv):
    main([str(a) for a in argv])
    return capsys.readouterr().out


def test_help_runs_as_a_console_script():
    out = subprocess.run(
        [sys.executable, "-m", "attnyolo.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("summary", "predict", "create", "darknet"):
        assert command in out


def test_summary_table(capsys):
    out = run(capsys, "summary", "--attention", "none", "1", "cbam", "--input-size", "416")
    lines = {line.split()[0]: line.split() for line in out.splitlines()[2:5]}
    assert lines["none"][1:3] == ["6,062,814", "0"] and lines["none"][4] == "6.91"
    assert lines["se"][2] == "43,008"  # phi 1 is SE, as in the original scripts
    assert lines["cbam"][2] == "86,310"


def test_create_predict_and_describe(tmp_path, capsys):
    names = tmp_path / "names.txt"
    names.write_text("ball\nbox\n")
    model = tmp_path / "m.keras"
    run(capsys, "create", "-o", model, "--classes", names, "--attention", "3", "--input-size", 64)
    loaded = load_detector(model)
    assert loaded.attention == "eca" and loaded.class_names == ["ball", "box"]
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(folder / "a.png")
    Image.fromarray(np.zeros((40, 50), np.uint8)).save(folder / "b.jpg")  # grayscale
    out = run(capsys, "predict", model, folder, "-o", tmp_path / "out", "--confidence", "0.9")
    assert "a.png" in out and "b.jpg" in out
    doc = json.loads((tmp_path / "out/detections.json").read_text())
    assert len(doc["images"]) == 2 and doc["settings"]["confidence"] == 0.9
    info = json.loads(run(capsys, "summary", model, "--json"))
    assert info["attention"] == "eca" and info["classes"] == ["ball", "box"]
    text = run(capsys, "summary", model)
    assert "attention eca at feat1, feat2, p5_upsample, input 64x64" in text
    assert "classes (2): ball, box" in text


@pytest.mark.parametrize(
    "argv, message",
    [
        (["predict", "missing.keras", "x.jpg"], "missing.keras: no such model file"),
        (["create", "-o", "m.keras", "--input-size", "100"], "multiple of 32"),
        (["summary", "notes.txt"], "notes.txt: not a Keras 3 model file"),
    ],
)
def test_errors_are_one_clear_line(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_unknown_attention_is_a_usage_error(capsys):
    with pytest.raises(SystemExit):
        main(["create", "-o", "m.keras", "--attention", "transformer"])
    err = capsys.readouterr().err
    assert "unknown attention 'transformer'; choose from none, " in err
    assert all(f" {name}," in err for name in ("bam", "ca", "cbam", "se", "sk"))


def test_keras_file_of_another_kind(tmp_path, capsys):
    import keras

    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    other.save(tmp_path / "other.keras")
    with pytest.raises(SystemExit):
        main(["summary", str(tmp_path / "other.keras")])
    assert "not an attnyolo detector" in capsys.readouterr().err


def test_phi_original_gives_the_original_coordinate_attention(capsys):
    argv = ["summary", "--input-size", "64", "--classes", "2", "--attention", "4", "ca_original"]
    lines = {line.split()[0]: line.split() for line in run(capsys, *argv).splitlines()[2:4]}
    assert set(lines) == {"ca", "ca_original"}  # phi 4 is the paper's block by default
    # 3 * C * (C // 16) + 4 * (C // 16) at C = 256, 512 and 128, as the original scripts
    assert lines["ca_original"][2] == f"{12352 + 49280 + 3104:,}"
    out = run(capsys, *argv[:-1], "--phi-original")
    assert out.splitlines()[2].split()[0] == "ca_original"


def test_predict_passes_the_resize_filter(tmp_path, monkeypatch, capsys):
    import attnyolo.engine.predict as predict

    seen = {}

    def fake(model, sources, **options):
        seen.update(options)
        return {"images": [{}], "failed": [], "written": []}

    monkeypatch.setattr(predict, "run_predict", fake)
    run(capsys, "predict", "m.keras", tmp_path / "a.jpg", "--resize-filter", "pillow")
    assert seen["resize_filter"] == "pillow"
    run(capsys, "predict", "m.keras", tmp_path / "a.jpg")
    assert seen["resize_filter"] is None  # the model's own, else opencv
    with pytest.raises(SystemExit):
        main(["predict", "m.keras", "a.jpg", "--resize-filter", "pil"])
    assert "choose from 'opencv', 'pillow'" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore::UserWarning")  # a 12-image set is small, and says so
def test_data_split_lines_writes_the_original_annotation_lines(tmp_path, capsys):
    from attnyolo.data import generate_shapes, read_annotation_lines, read_voc

    voc = generate_shapes(tmp_path / "shapes", num_images=12, size=64)
    out = run(capsys, "data", "split", voc, "--classes", voc / "classes.txt", "--lines", tmp_path)
    names = (voc / "classes.txt").read_text().split()
    assert (tmp_path / "2007_classes.txt").read_text().split() == names
    for split in ("train", "val"):
        path = tmp_path / f"2007_{split}.txt"
        assert f"wrote {path}" in out.splitlines()
        ids = (voc / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
        lines = read_annotation_lines(path, tmp_path / "2007_classes.txt")
        assert [r.image.stem for r in lines.records] == ids
        expected = read_voc(voc, split, names)
        for got, want in zip(lines.records, expected.records, strict=True):
            assert got.image == want.image.absolute()
            np.testing.assert_array_equal(got.boxes, want.boxes)
            np.testing.assert_array_equal(got.classes, want.classes)
    for path in tmp_path.glob("2007_*.txt"):
        path.unlink()
    run(capsys, "data", "split", voc)  # without --lines, none
    assert not list(tmp_path.glob("2007_*.txt"))

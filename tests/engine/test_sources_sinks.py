import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from attnyolo.data.images import ImageError
from attnyolo.data.map_out import parse_detection_line
from attnyolo.inference import sources
from attnyolo.inference.decoder import Detections
from attnyolo.inference.sinks import (
    CocoJson,
    Counts,
    Crops,
    DrawnImages,
    DrawnVideo,
    TxtLabels,
    item_stem,
)
from attnyolo.inference.sources import SourceError, open_sources
from attnyolo.inference.stream import Item, Result

NAMES = ["dog", "traffic light", "cat"]


def save_image(path: Path, size=(40, 30), color=(200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def write_video(path: Path, frames: int = 12, fps: float = 10.0, size=(64, 48)) -> Path:
    codec = "MJPG" if path.suffix == ".avi" else "mp4v"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, size)
    assert writer.isOpened()
    for _ in range(frames):
        bgr = np.zeros((size[1], size[0], 3), np.uint8)
        bgr[..., 2] = 255  # red, in OpenCV's BGR order
        writer.write(bgr)
    writer.release()
    return path


def leftovers(folder: Path) -> list[Path]:
    """Temporary files of atomic writes (`.<stem>.<random>.tmp<suffix>`)."""
    return [p for p in folder.rglob(".*") if ".tmp" in p.name]


# Sources


def test_folder_recursion_extensions_and_hidden_files(tmp_path):
    root = tmp_path / "photos"
    expected = [
        save_image(root / "a.jpg"),
        save_image(root / "sub" / "B.PNG"),
        save_image(root / "sub" / "deeper" / "c.webp"),
        save_image(root / "z.TIFF"),
    ]
    (root / "notes.txt").write_text("not an image")
    save_image(root / ".hidden.jpg")
    save_image(root / ".cache" / "d.jpg")
    write_video(root / "clip.avi", frames=2)
    (source,) = open_sources([str(root)])
    assert source.kind == "images" and source.name == str(root)
    assert source.count == 4 and source.fps is None and source.frame_size is None
    items = list(source.items())
    assert [item.name for item in items] == [str(p) for p in sorted(expected)]
    assert items[0].info == {"path": items[0].name}
    image = items[0].load()
    assert image.shape == (30, 40, 3) and image.dtype == np.uint8


def test_glob_is_recursive_and_sorted(tmp_path):
    for name in ["b.jpg", "a.jpg", "x/c.jpg", "x/y/d.jpg", "x/e.png"]:
        save_image(tmp_path / name)
    (source,) = open_sources([str(tmp_path / "**" / "*.jpg")])
    names = [Path(item.name).relative_to(tmp_path).as_posix() for item in source.items()]
    assert names == ["a.jpg", "b.jpg", "x/c.jpg", "x/y/d.jpg"]
    # A pattern may name videos: each its own source, after the images.
    write_video(tmp_path / "v.avi", frames=3)
    kinds = [s.kind for s in open_sources([str(tmp_path / "*")])]
    assert kinds == ["images", "video"]


def test_single_file_and_several_specs(tmp_path):
    image = save_image(tmp_path / "one.bmp")
    video = write_video(tmp_path / "clip.avi", frames=3)
    found = open_sources([str(image), str(video)])
    assert [(s.kind, s.count) for s in found] == [("images", 1), ("video", 3)]


def test_open_errors_name_the_spec(tmp_path):
    missing = str(tmp_path / "nope.jpg")
    with pytest.raises(SourceError, match="nope.jpg: no such file or folder"):
        open_sources([missing])
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    with pytest.raises(SourceError, match=r"empty: no images .*looked for .*\.jpg.*\.png"):
        open_sources([str(empty)])
    write_video(empty / "clip.avi", frames=2)
    with pytest.raises(SourceError, match="1 video file"):
        open_sources([str(empty)])
    with pytest.raises(SourceError, match=r"\*\.gif: no such file .*matches no files"):
        open_sources([str(tmp_path / "*.gif")])
    with pytest.raises(SourceError, match="none an image or a video"):
        open_sources([str(empty / "*.txt")])
    with pytest.raises(SourceError, match="no source"):
        open_sources([])


def test_video_frames_count_rate_size_and_rgb(tmp_path):
    path = write_video(tmp_path / "clip.avi", frames=12, fps=10.0, size=(64, 48))
    (source,) = open_sources([str(path)])
    assert source.kind == "video" and source.name == str(path)
    assert source.count == 12 and source.fps == pytest.approx(10.0)
    assert source.frame_size == (64, 48)
    items = list(source.items())
    assert len(items) == 12
    assert items[3].name == f"{path}#frame=3"
    assert items[3].info == {"source": str(path), "frame": 3}
    frame = items[3].load()
    assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8
    assert frame[..., 0].mean() > 200 and frame[..., 2].mean() < 50  # red first: RGB
    assert len(list(source.items())) == 12  # items() starts again


def test_not_a_video(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video" * 100)
    with pytest.raises(SourceError, match="bad.mp4: cannot"):
        open_sources([str(bad)])


def test_unreadable_image_in_a_folder_fails_when_loaded(tmp_path):
    save_image(tmp_path / "good.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    (source,) = open_sources([str(tmp_path)])
    broken, good = source.items()
    assert good.load().shape == (30, 40, 3)
    with pytest.raises(ImageError, match="broken.jpg"):
        broken.load()


class FakeCapture:
    """A camera for tests: `frames` BGR frames, or none where it cannot be opened."""

    opened: list = []
    released = 0
    frames = 3

    def __init__(self, target):
        FakeCapture.opened.append(target)
        self.left = self.frames
        self.ok = target != 7

    def isOpened(self):
        return self.ok

    def read(self):
        if self.left <= 0:
            return False, None
        self.left -= 1
        frame = np.zeros((6, 8, 3), np.uint8)
        frame[..., 0] = 255  # blue in BGR
        return True, frame

    def get(self, prop):
        return 0.0  # a camera that knows neither its rate nor its length

    def release(self):
        FakeCapture.released += 1


@pytest.fixture
def fake_camera(monkeypatch):
    FakeCapture.opened, FakeCapture.released = [], 0
    monkeypatch.setattr(sources.cv2, "VideoCapture", FakeCapture)
    return FakeCapture


def test_webcam_spec(fake_camera):
    (source,) = open_sources(["0"])
    assert fake_camera.opened == [0]  # an int: OpenCV's camera index, not a file named "0"
    assert source.kind == "webcam" and source.name == "webcam0"
    assert source.count is None and source.fps == sources.DEFAULT_FPS
    assert source.frame_size == (8, 6)
    assert fake_camera.released == 1  # the check at opening let the camera go
    items = source.items()
    first = next(items)
    assert first.name == "webcam0#frame=0" and first.load()[0, 0].tolist() == [0, 0, 255]
    items.close()  # stopped early: the camera is released
    assert fake_camera.released == 2
    assert len(list(source.items())) == 3
    assert fake_camera.released == 3


def test_webcam_that_cannot_be_opened(fake_camera):
    with pytest.raises(SourceError, match="webcam7: cannot open webcam 7"):
        open_sources(["7"])


def test_url_is_a_stream(fake_camera):
    (source,) = open_sources(["rtsp://camera.local/live"])
    assert source.kind == "video" and fake_camera.opened == ["rtsp://camera.local/live"]


def test_real_webcam_that_does_not_exist():
    with pytest.raises(SourceError, match="cannot open webcam 97"):
        open_sources(["97"])


# Sinks


def make_result(name, image, boxes, scores, classes, info=None) -> Result:
    item = Item(name, lambda: image, {"path": name} if info is None else info)
    dets = Detections(
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(scores, np.float32),
        np.asarray(classes, np.int64),
    )
    return Result(item, image, dets)


@pytest.fixture
def results():
    image = np.zeros((100, 200, 3), np.uint8)
    image[:, :, 1] = np.arange(200, dtype=np.uint8)[None, :]  # a gradient, to check crops
    return [
        make_result("a/x.jpg", image, [[10, 20, 50, 80], [100, 0, 200, 100]], [0.9, 0.6], [0, 1]),
        make_result("b/x.png", image, [[0, 0, 20, 10]], [0.75], [2]),
        Result(Item("c/broken.jpg", lambda: None), error="c/broken.jpg: not an image"),
        make_result("c/empty.jpg", image, np.zeros((0, 4)), [], []),
    ]


def test_item_stem():
    assert item_stem(Item("d/img.01.jpg", lambda: None, {"path": "d/img.01.jpg"})) == "img.01"
    frame = Item("v/clip.mp4#frame=12", lambda: None, {"source": "v/clip.mp4", "frame": 12})
    assert item_stem(frame) == "clip_000012"
    assert item_stem(Item("image3", lambda: None)) == "image3"


def test_drawn_images(tmp_path, results):
    with DrawnImages(tmp_path / "out", NAMES) as sink:
        for result in results:
            sink.add(result)
    written = sink.close()
    assert [p.name for p in written] == ["x.jpg", "x_1.jpg", "empty.jpg"]
    for path in written:
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.size == (200, 100)
    drawn = np.asarray(Image.open(written[0]))
    assert np.abs(drawn.astype(int) - results[0].image).max() > 100  # boxes are drawn
    assert not leftovers(tmp_path)


def test_txt_labels_yolo_round_trip(tmp_path, results):
    sink = TxtLabels(tmp_path, NAMES, style="yolo")
    for result in results:
        sink.add(result)
    written = sink.close()
    assert [p.name for p in written] == ["x.txt", "x_1.txt", "empty.txt"]
    rows = np.loadtxt(written[0], ndmin=2)
    classes, (cx, cy, w, h), scores = rows[:, 0], rows[:, 1:5].T, rows[:, 5]
    boxes = np.stack(
        [(cx - w / 2) * 200, (cy - h / 2) * 100, (cx + w / 2) * 200, (cy + h / 2) * 100], 1
    )
    np.testing.assert_allclose(boxes, [[10, 20, 50, 80], [100, 0, 200, 100]], atol=1e-3)
    np.testing.assert_array_equal(classes, [0, 1])
    np.testing.assert_allclose(scores, [0.9, 0.6], atol=1e-6)
    assert written[0].read_text().splitlines()[0] == "0 0.15 0.5 0.2 0.6 0.9"
    assert written[2].read_text() == ""
    assert not leftovers(tmp_path)


def test_txt_labels_yolo_needs_the_image(tmp_path, results):
    sink = TxtLabels(tmp_path, NAMES)
    assert sink.needs_images
    result = results[0]
    with pytest.raises(ValueError, match="keep_images=True"):
        sink.add(Result(result.item, None, result.detections))


def test_txt_labels_voc(tmp_path, results):
    sink = TxtLabels(tmp_path, NAMES, style="voc")
    assert not sink.needs_images
    sink.add(Result(results[0].item, None, results[0].detections))  # no image needed
    frame = make_result(
        "clip.mp4#frame=7",
        results[0].image,
        [[1.25, 2.5, 30.75, 40.125]],
        [0.5],
        [1],
        {"source": "v/clip.mp4", "frame": 7},
    )
    sink.add(frame)
    first, second = sink.close()
    assert first.read_text() == (
        "dog 0.900000 10.00 20.00 50.00 80.00\ntraffic light 0.600000 100.00 0.00 200.00 100.00\n"
    )
    assert second.name == "clip_000007.txt"
    name, score, box = parse_detection_line(second.read_text().strip(), "test")
    assert (name, score) == ("traffic light", 0.5)
    np.testing.assert_allclose(box, [1.25, 2.5, 30.75, 40.12], atol=0.01)
    with pytest.raises(ValueError, match="unknown style"):
        TxtLabels(tmp_path, NAMES, style="pascal")


def test_coco_json_loads_with_pycocotools(tmp_path, results):
    from pycocotools.coco import COCO

    path = tmp_path / "results.json"
    sink = CocoJson(path, NAMES, category_ids=[18, 10, 17])
    for result in results:
        sink.add(result)
    written = sink.close()
    assert written == [path, tmp_path / "results_images.json"]
    entries = json.loads(path.read_text())
    assert isinstance(entries, list) and len(entries) == 3
    assert entries[0] == {"image_id": 1, "category_id": 18, "bbox": [10, 20, 40, 60], "score": 0.9}
    images = json.loads(written[1].read_text())["images"]
    assert [(i["id"], i["file_name"], i["width"], i["height"]) for i in images] == [
        (1, "a/x.jpg", 200, 100),
        (2, "b/x.png", 200, 100),
        (3, "c/empty.jpg", 200, 100),
    ]
    detections = COCO(str(written[1])).loadRes(str(path))
    assert len(detections.getAnnIds(imgIds=[1])) == 2
    assert detections.loadAnns(detections.getAnnIds(imgIds=[2]))[0]["category_id"] == 17
    assert not leftovers(tmp_path)


def test_coco_json_integer_stems_are_the_ids(tmp_path, results):
    image = results[0].image
    sink = CocoJson(tmp_path / "r.json", NAMES)
    sink.add(make_result("val/000000000042.jpg", image, [[0, 0, 5, 5]], [0.5], [2]))
    sink.add(make_result("val/7.jpg", image, np.zeros((0, 4)), [], []))
    sink.close()
    assert json.loads((tmp_path / "r.json").read_text())[0]["image_id"] == 42
    assert json.loads((tmp_path / "r.json").read_text())[0]["category_id"] == 3
    ids = [i["id"] for i in json.loads((tmp_path / "r_images.json").read_text())["images"]]
    assert ids == [42, 7]


def test_crops(tmp_path, results):
    sink = Crops(tmp_path / "crops", NAMES)
    image = results[0].image
    sink.add(results[0])
    # Half outside the image, and wholly outside: clipped, and skipped.
    sink.add(
        make_result(
            "d/y.jpg", image, [[180.5, 90.2, 260, 130], [300, 0, 400, 50]], [0.9, 0.8], [1, 1]
        )
    )
    written = sink.close()
    rel = [p.relative_to(tmp_path / "crops").as_posix() for p in written]
    assert rel == ["dog/x_0.jpg", "traffic light/x_1.jpg", "traffic light/y_0.jpg"]
    sizes = [Image.open(p).size for p in written]
    assert sizes == [(40, 60), (100, 100), (20, 10)]
    # Cut from the undrawn image: the green gradient starts at the box's left edge.
    crop = np.asarray(Image.open(written[0]))
    assert abs(int(crop[30, 0, 1]) - 10) <= 3 and abs(int(crop[30, 39, 1]) - 49) <= 3
    assert not leftovers(tmp_path)


def test_counts(tmp_path, results):
    sink = Counts(NAMES, tmp_path / "counts.json")
    for result in results:
        sink.add(result)
    assert sink.summary_lines() == [
        "3 objects in 3 images",
        "  dog            1",
        "  traffic light  1",
        "  cat            1",
    ]
    (path,) = sink.close()
    document = json.loads(path.read_text())
    assert document["totals"] == {"dog": 1, "traffic light": 1, "cat": 1}
    assert document["total"] == 3
    assert document["images"][0] == {
        "image": "a/x.jpg",
        "counts": {"dog": 1, "traffic light": 1},
        "total": 2,
    }
    assert document["images"][2] == {"image": "c/empty.jpg", "counts": {}, "total": 0}
    assert Counts(NAMES).close() == []  # no path: nothing written


def video_results(frames: int, size=(64, 48)):
    width, height = size
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 0] = 255
    return [
        make_result(
            f"clip.avi#frame={i}",
            image,
            [[5, 5, 30, 30]],
            [0.8],
            [0],
            {"source": "clip.avi", "frame": i},
        )
        for i in range(frames)
    ]


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_drawn_video(tmp_path, suffix):
    path = tmp_path / f"out{suffix}"
    sink = DrawnVideo(path, 12.0, (64, 48), NAMES)
    assert not path.exists()  # written under a temporary name until closed
    for result in video_results(5):
        sink.add(result)
    sink.add(video_results(1, size=(32, 24))[0])  # another size: resized
    assert not path.exists()
    assert sink.close() == [path]
    assert not leftovers(tmp_path)
    capture = cv2.VideoCapture(str(path))
    try:
        assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(12.0)
        assert capture.get(cv2.CAP_PROP_FRAME_WIDTH) == 64
        assert capture.get(cv2.CAP_PROP_FRAME_HEIGHT) == 48
        frames = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames += 1
            assert frame[40, 60, 2] > 200 and frame[40, 60, 0] < 60  # red stays red (BGR)
    finally:
        capture.release()
    assert frames == 6


def test_drawn_video_not_closed_leaves_no_file(tmp_path):
    path = tmp_path / "out.avi"
    sink = DrawnVideo(path, 10.0, (64, 48), NAMES)
    sink.add(video_results(1)[0])
    assert not path.exists()
    sink.abort()
    assert not path.exists() and not leftovers(tmp_path)
    with pytest.raises(RuntimeError):
        with DrawnVideo(path, 10.0, (64, 48), NAMES) as sink:
            sink.add(video_results(1)[0])
            raise RuntimeError("the model failed")
    assert not path.exists() and not leftovers(tmp_path)
    empty = DrawnVideo(path, 10.0, (64, 48), NAMES)
    assert empty.close() == []  # no frame: no video
    assert not path.exists() and not leftovers(tmp_path)


def test_drawn_video_rejects_unknown_suffix(tmp_path):
    with pytest.raises(ValueError, match=r"\.mp4"):
        DrawnVideo(tmp_path / "out.gif", 10.0, (64, 48), NAMES)


def test_video_source_to_sinks(tmp_path):
    """A video read by its source and written back keeps its rate, size and frame count."""
    path = write_video(tmp_path / "clip.avi", frames=8, fps=15.0, size=(64, 48))
    (source,) = open_sources([str(path)])
    empty = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, int))
    out = tmp_path / "drawn.mp4"
    with (
        DrawnVideo(out, source.fps, source.frame_size, NAMES) as video,
        TxtLabels(tmp_path / "labels", NAMES) as labels,
    ):
        for item in source.items():
            result = Result(item, item.load(), empty)
            video.add(result)
            labels.add(result)
    (again,) = open_sources([str(out)])
    assert (again.count, again.fps, again.frame_size) == (8, pytest.approx(15.0), (64, 48))
    assert sorted(p.name for p in (tmp_path / "labels").iterdir())[0] == "clip_000000.txt"


def test_drawn_video_writer_that_cannot_open(tmp_path, monkeypatch):
    from attnyolo.inference import sinks

    class Closed:
        def __init__(self, *args):
            pass

        def isOpened(self):
            return False

        def release(self):
            pass

    monkeypatch.setattr(sinks.cv2, "VideoWriter", Closed)
    with pytest.raises(sinks.SinkError, match="out.mp4: OpenCV cannot write a mp4v video"):
        DrawnVideo(tmp_path / "out.mp4", 10.0, (64, 48), NAMES)
    assert not list(tmp_path.iterdir())  # its temporary file is gone too

"""What `attnyolo predict` writes: drawn images or video, label text files, COCO results JSON,
crops and counts. Each writer takes `Result`s one at a time (`add`) and finishes with `close`,
which returns the files it wrote; results that carry an error are skipped.

Every file is written to a temporary name beside its target and renamed when complete
(`attnyolo.utils.atomic_path`), so a killed run never leaves a half-written file under a real
name; the video is renamed only by `close`. Used as a context manager, a writer is closed when
the block ends normally or by Ctrl-C (what was written so far is kept, as the original scripts
keep a webcam recording stopped that way) and aborted on any other error.

Output names come from the item: an image's file stem, a video frame's `<video stem>_<frame:06d>`;
a stem seen before in the same writer gets `_1`, `_2`, ... (the same image names in different
folders), compared without case for case-insensitive file systems. Every writer sees the same
results, so `x_1.jpg` and `x_1.txt` are the same image.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from attnyolo.inference.stream import Item, Result
from attnyolo.inference.visualize import draw_detections, draw_on_array
from attnyolo.utils import atomic_path, atomic_write

JPEG_OPTIONS = {"quality": 95, "subsampling": 0}  # 4:4:4 keeps the label text crisp

# Codecs every OpenCV build with FFmpeg writes: MPEG-4 part 2 in MP4/MOV, Motion JPEG in AVI/MKV.
VIDEO_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


class SinkError(OSError):
    """An output that cannot be written, with the file named."""


class _Discarded(Exception):
    """Thrown into an unfinished `atomic_path` block so that it deletes its file."""


def item_stem(item: Item) -> str:
    """The stem of an item's output files: its image file's stem, or `<video stem>_<frame:06d>`
    for a video frame, or its name's stem for anything else."""
    info = item.info
    if "frame" in info:
        return f"{Path(str(info.get('source', item.name))).stem}_{int(info['frame']):06d}"
    return Path(str(info.get("path", item.name))).stem or "image"


class _UniqueStems:
    def __init__(self):
        self.used: set[str] = set()

    def __call__(self, stem: str) -> str:
        name, k = stem, 0
        while name.casefold() in self.used:
            k += 1
            name = f"{stem}_{k}"
        self.used.add(name.casefold())
        return name


def _save_image(image: Image.Image, path: Path) -> None:
    options = JPEG_OPTIONS if path.suffix.lower() in (".jpg", ".jpeg") else {}
    with atomic_path(path) as tmp:
        image.save(tmp, **options)


class Sink:
    """An output writer. `add` takes results, `close` finishes and returns the files written,
    `abort` gives up, leaving no unfinished file under its real name.

    Attributes:
        needs_images: whether `add` needs each result's image (`detect_stream(keep_images=True)`).
    """

    needs_images = False

    def __init__(self):
        self.written: list[Path] = []
        self.closed = False

    def add(self, result: Result) -> None:
        """Writes (or collects) one result; a result with an error is skipped."""
        if self.closed:
            raise ValueError(f"{type(self).__name__} is closed")
        if not result.ok or result.detections is None:
            return
        if self.needs_images and result.image is None:
            raise ValueError(
                f"{type(self).__name__} needs each result's image: run the stream with "
                f"keep_images=True ({result.item.name} has none)"
            )
        self.write(result)

    def write(self, result: Result) -> None:
        raise NotImplementedError

    def close(self) -> list[Path]:
        """Finishes; returns the files written (a second call returns them again)."""
        self.closed = True
        return list(self.written)

    def abort(self) -> None:
        """Stops without finishing: files still to be completed are not written."""
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None or issubclass(exc_type, KeyboardInterrupt):
            self.close()
        else:
            self.abort()
        return False


class DrawnImages(Sink):
    """`<out_dir>/<stem>.jpg` per image, boxes and labels drawn (`draw_detections`).

    Args:
        out_dir: the folder, created if needed.
        class_names: the model's.
        suffix: `.jpg` (JPEG, quality 95, no chroma subsampling) or `.png` (lossless, larger).
    """

    needs_images = True

    def __init__(
        self, out_dir: str | os.PathLike, class_names: Sequence[str], suffix: str = ".jpg"
    ):
        super().__init__()
        if suffix.lower() not in (".jpg", ".jpeg", ".png"):
            raise ValueError(f"suffix must be .jpg or .png, got {suffix!r}")
        self.out_dir = Path(out_dir)
        self.class_names = list(class_names)
        self.suffix = suffix
        self._stems = _UniqueStems()

    def write(self, result: Result) -> None:
        path = self.out_dir / f"{self._stems(item_stem(result.item))}{self.suffix}"
        _save_image(draw_detections(result.image, result.detections, self.class_names), path)
        self.written.append(path)


class DrawnVideo(Sink):
    """A video of the drawn frames, at the source's frame rate and size.

    The frames go to a temporary file beside `path` that `close` renames; a run that never
    closes leaves no file named `path`. A frame of another size is resized to `frame_size` (a
    video's frames must all have one size).

    Args:
        path: `.mp4`, `.m4v` or `.mov` (MPEG-4, `mp4v`), `.avi` or `.mkv` (Motion JPEG).
        fps: frames per second (the source's `fps`).
        frame_size: `(width, height)` (the source's `frame_size`).
        class_names: the model's.

    Raises:
        ValueError: an unknown suffix, or a size or rate that is not positive.
        SinkError: OpenCV cannot write this file.
    """

    needs_images = True

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float,
        frame_size: tuple[int, int],
        class_names: Sequence[str],
    ):
        super().__init__()
        self.path = Path(path)
        codec = VIDEO_CODECS.get(self.path.suffix.lower())
        if codec is None:
            raise ValueError(f"{self.path}: a video must end in one of {', '.join(VIDEO_CODECS)}")
        width, height = (int(v) for v in frame_size)
        if width < 1 or height < 1 or not fps > 0:
            raise ValueError(f"{self.path}: bad frame size {frame_size} or rate {fps}")
        self.fps = float(fps)
        self.frame_size = (width, height)
        self.class_names = list(class_names)
        self.frames = 0
        self._target = atomic_path(self.path)
        self._tmp = self._target.__enter__()
        self._writer = cv2.VideoWriter(
            str(self._tmp), cv2.VideoWriter_fourcc(*codec), self.fps, self.frame_size
        )
        if not self._writer.isOpened():
            self._discard()
            raise SinkError(f"{self.path}: OpenCV cannot write a {codec} video here")

    def write(self, result: Result) -> None:
        frame = draw_on_array(result.image, result.detections, self.class_names)
        if (frame.shape[1], frame.shape[0]) != self.frame_size:
            frame = cv2.resize(frame, self.frame_size, interpolation=cv2.INTER_AREA)
        self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def _discard(self) -> None:
        self._writer.release()
        # atomic_path deletes its temporary file when its block fails.
        self._target.__exit__(_Discarded, _Discarded(), None)

    def close(self) -> list[Path]:
        """Finishes the video and renames it to `path`; a video with no frame is not kept."""
        if not self.closed:
            self.closed = True
            if self.frames == 0:
                self._discard()
            else:
                self._writer.release()
                self._target.__exit__(None, None, None)
                self.written.append(self.path)
        return list(self.written)

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            self._discard()


def _yolo_lines(result: Result, class_names: Sequence[str]) -> list[str]:
    # Ultralytics' save_txt with save_conf: `class cx cy w h score`, normalised, "%g".
    height, width = result.image.shape[:2]
    dets = result.detections
    size = np.array([width, height, width, height], np.float64)
    boxes = np.clip(np.asarray(dets.boxes, np.float64), 0, size) / size
    lines = []
    for (x1, y1, x2, y2), score, cls in zip(boxes, dets.scores, dets.classes, strict=True):
        values = (int(cls), (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1, float(score))
        lines.append(("%g " * len(values)).rstrip() % values)
    return lines


def _voc_lines(result: Result, class_names: Sequence[str]) -> list[str]:
    # The original's detection-results line, `name score x1 y1 x2 y2` in pixels, with the
    # numbers as write_map_out writes them (the original truncates: str(score)[:6], int(x)).
    dets = result.detections
    return [
        f"{class_names[int(c)]} {float(s):.6f} {b[0]:.2f} {b[1]:.2f} {b[2]:.2f} {b[3]:.2f}"
        for b, s, c in zip(
            np.asarray(dets.boxes, np.float64), dets.scores, dets.classes, strict=True
        )
    ]


TXT_STYLES = {"yolo": _yolo_lines, "voc": _voc_lines}


class TxtLabels(Sink):
    """`<out_dir>/<stem>.txt` per image, a line per detection (an empty file where none).

    Args:
        out_dir: the folder, created if needed.
        class_names: the model's.
        style: `"yolo"`: `class cx cy w h score`, normalised to the image (Ultralytics'
            `save_txt` + `save_conf`; boxes clipped to the image); `"voc"`: `name score x1 y1
            x2 y2` in pixels (the original scripts' `detection-results` lines, readable by
            `attnyolo evaluate`).
    """

    def __init__(self, out_dir: str | os.PathLike, class_names: Sequence[str], style: str = "yolo"):
        super().__init__()
        if style not in TXT_STYLES:
            raise ValueError(f"unknown style {style!r}; choose from {', '.join(TXT_STYLES)}")
        self.out_dir = Path(out_dir)
        self.class_names = list(class_names)
        self.style = style
        self.needs_images = style == "yolo"  # normalising needs the image's size
        self._stems = _UniqueStems()

    def write(self, result: Result) -> None:
        lines = TXT_STYLES[self.style](result, self.class_names)
        path = self.out_dir / f"{self._stems(item_stem(result.item))}.txt"
        atomic_write(path, "".join(f"{line}\n" for line in lines))
        self.written.append(path)


class CocoJson(Sink):
    """COCO results: `path` is the plain list `[{image_id, category_id, bbox: [x, y, w, h],
    score}]`, and `<path stem>_images.json` says which file each image id is, as a COCO image
    info file (`{"images": [{id, file_name, width, height}], "categories": [...]}`; pycocotools'
    `COCO(images).loadRes(results)` loads the pair).

    Image ids are the file stems where all are distinct integers (`000000397133.jpg` is
    397133, as in COCO), else 1, 2, ... in the order of the results. Both files are written by
    `close`.

    Args:
        path: the results file (`.json`).
        class_names: the model's.
        category_ids: `category_ids[k]` is class k's id (default `k + 1`).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        class_names: Sequence[str],
        category_ids: Sequence[int] | None = None,
    ):
        super().__init__()
        self.path = Path(path)
        self.images_path = self.path.with_name(f"{self.path.stem}_images.json")
        self.class_names = list(class_names)
        ids = range(1, len(class_names) + 1) if category_ids is None else category_ids
        self.category_ids = [int(c) for c in ids]
        if len(self.category_ids) != len(self.class_names):
            raise ValueError(
                f"{len(self.category_ids)} category ids for {len(self.class_names)} classes"
            )
        self._entries: list[tuple[str, dict, np.ndarray, np.ndarray, np.ndarray]] = []

    def write(self, result: Result) -> None:
        image = {"file_name": result.item.name}
        if result.image is not None:
            image["height"], image["width"] = (int(v) for v in result.image.shape[:2])
        dets = result.detections
        self._entries.append(
            (
                item_stem(result.item),
                image,
                np.asarray(dets.boxes, np.float64).reshape(-1, 4),
                np.asarray(dets.scores, np.float64),
                np.asarray(dets.classes, np.int64),
            )
        )

    def _image_ids(self) -> list[int]:
        stems = [entry[0] for entry in self._entries]
        if all(stem.isdigit() for stem in stems) and len({int(s) for s in stems}) == len(stems):
            return [int(stem) for stem in stems]
        return list(range(1, len(stems) + 1))

    def close(self) -> list[Path]:
        if self.closed:
            return list(self.written)
        self.closed = True
        results, images = [], []
        for image_id, (_, image, boxes, scores, classes) in zip(
            self._image_ids(), self._entries, strict=True
        ):
            images.append({"id": image_id, **image})
            for (x1, y1, x2, y2), score, cls in zip(boxes, scores, classes, strict=True):
                results.append(
                    {
                        "image_id": image_id,
                        "category_id": self.category_ids[int(cls)],
                        "bbox": [round(float(v), 2) for v in (x1, y1, x2 - x1, y2 - y1)],
                        "score": round(float(score), 6),
                    }
                )
        categories = [
            {"id": c, "name": name}
            for c, name in zip(self.category_ids, self.class_names, strict=True)
        ]
        atomic_write(self.path, json.dumps(results))
        atomic_write(
            self.images_path, json.dumps({"images": images, "categories": categories}, indent=1)
        )
        self.written += [self.path, self.images_path]
        return list(self.written)


def _folder_name(name: str) -> str:
    """A class name as a folder name on any system."""
    safe = re.sub(r'[\\/:*?"<>|\x00-\x1f]', "_", name).strip().rstrip(".")
    return safe or "_"


class Crops(Sink):
    """Every detection cut from the undrawn image to `<out_dir>/<class>/<stem>_<k>.jpg`, k its
    index among the image's detections (the original's `crop` option).

    A crop holds every pixel the box touches (corners floored and ceiled), clipped to the
    image; a box with nothing inside the image is skipped.
    """

    needs_images = True

    def __init__(self, out_dir: str | os.PathLike, class_names: Sequence[str]):
        super().__init__()
        self.out_dir = Path(out_dir)
        self.class_names = list(class_names)
        self._folders = [_folder_name(name) for name in self.class_names]
        self._stems = _UniqueStems()

    def write(self, result: Result) -> None:
        image = result.image
        height, width = image.shape[:2]
        dets = result.detections
        stem = self._stems(item_stem(result.item))
        for k, (box, cls) in enumerate(zip(dets.boxes, dets.classes, strict=True)):
            x1, y1 = (max(0, math.floor(float(v))) for v in box[:2])
            x2, y2 = min(width, math.ceil(float(box[2]))), min(height, math.ceil(float(box[3])))
            if x2 <= x1 or y2 <= y1:
                continue
            path = self.out_dir / self._folders[int(cls)] / f"{stem}_{k}.jpg"
            _save_image(Image.fromarray(np.ascontiguousarray(image[y1:y2, x1:x2])), path)
            self.written.append(path)


class Counts(Sink):
    """Objects per class, per image and in total (the original's `count` option).

    `close` writes `path` (if given) as JSON: `classes`, `images` (per image its name, the
    counts of the classes it has, and its total), `totals` (every class, in class order) and
    `total`. `summary_lines` gives the totals as text.
    """

    def __init__(self, class_names: Sequence[str], path: str | os.PathLike | None = None):
        super().__init__()
        self.class_names = list(class_names)
        self.path = None if path is None else Path(path)
        self.totals = np.zeros(len(self.class_names), np.int64)
        self.images: list[dict] = []

    def write(self, result: Result) -> None:
        counts = np.bincount(
            np.asarray(result.detections.classes, np.int64), minlength=len(self.class_names)
        )
        self.totals += counts
        self.images.append(
            {
                "image": result.item.name,
                "counts": {self.class_names[c]: int(counts[c]) for c in np.flatnonzero(counts)},
                "total": int(counts.sum()),
            }
        )

    def summary_lines(self) -> list[str]:
        """`N objects in M images`, then a `  class  n` line per class found."""
        lines = [f"{int(self.totals.sum())} objects in {len(self.images)} images"]
        width = max((len(name) for name in self.class_names), default=0)
        lines += [
            f"  {self.class_names[c]:<{width}}  {int(self.totals[c])}"
            for c in np.flatnonzero(self.totals)
        ]
        return lines

    def close(self) -> list[Path]:
        if not self.closed and self.path is not None:
            document = {
                "classes": self.class_names,
                "images": self.images,
                "totals": {n: int(v) for n, v in zip(self.class_names, self.totals, strict=True)},
                "total": int(self.totals.sum()),
            }
            atomic_write(self.path, json.dumps(document, indent=1))
            self.written.append(self.path)
        self.closed = True
        return list(self.written)

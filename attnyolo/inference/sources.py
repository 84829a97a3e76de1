"""What `attnyolo predict` reads: image files, folders, glob patterns, videos and webcams, each
turned into a `Source` that yields `Item`s for `detect_stream` one at a time.

A spec is, in this order of precedence:

- all digits (`0`, `1`): a webcam index (write `./0` for a file named `0`);
- a URL (`rtsp://...`, `http://...`): a video stream, opened by OpenCV;
- an existing folder: its images, subfolders included, sorted by path; hidden files and folders
  (`.name`) are skipped, as `glob` skips them; videos in it are not read (name them);
- an existing file: a video if its extension is a video's (`VIDEO_EXTENSIONS`), else an image;
- a pattern with `*`, `?` or `[`: the files it matches (`**` crosses folders), sorted; images
  and videos by extension, other files ignored.

Errors a user can fix before anything runs (a missing path, an empty folder, a video OpenCV
cannot open) raise `SourceError` when the sources are opened. An image that cannot be read is
not one of them: its item's `load` raises `ImageError` naming it, and the stream reports it and
goes on. A video file that ends before the frame count its header gives (cut short, damaged)
yields the frames OpenCV can decode and then warns (`SourceWarning`).
"""

from __future__ import annotations

import glob
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from attnyolo.data.images import load_image
from attnyolo.inference.stream import Item

IMAGE_EXTENSIONS = frozenset(
    ".avif .bmp .dib .gif .jfif .jpe .jpeg .jpg .pbm .pgm .png .pnm .ppm .tif .tiff .webp".split()
)
VIDEO_EXTENSIONS = frozenset(
    ".avi .flv .m2ts .m4v .mkv .mov .mp4 .mpeg .mpg .mts .webm .wmv".split()
)

# Where neither the file nor the camera says: the original scripts' `video_fps`.
DEFAULT_FPS = 25.0

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_PATTERN = re.compile(r"[*?[]")


class SourceError(ValueError):
    """A source that cannot be opened, with the spec named."""


class SourceWarning(UserWarning):
    """A source that ended early (a video cut short or damaged); what was read is used."""


class Source:
    """Where items come from.

    Attributes:
        kind: `"images"`, `"video"` or `"webcam"`.
        name: the spec as given (a camera: `webcam0`).
        count: the number of items, where known (a video's as its container says; a webcam's
            never).
        fps: frames per second of a video or webcam (`DEFAULT_FPS` where it does not say);
            None for images.
        frame_size: `(width, height)` of a video's or webcam's frames; None for images.
    """

    kind: str = ""

    def __init__(
        self,
        name: str,
        count: int | None = None,
        fps: float | None = None,
        frame_size: tuple[int, int] | None = None,
    ):
        self.name = name
        self.count = count
        self.fps = fps
        self.frame_size = frame_size

    def items(self) -> Iterator[Item]:
        """The items, lazily, in order; each call starts from the beginning."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, count={self.count})"


class ImageSource(Source):
    """Image files; each is read only when its item is loaded."""

    kind = "images"

    def __init__(self, name: str, paths: Sequence[str | os.PathLike]):
        super().__init__(name, count=len(paths))
        self.paths = [Path(p) for p in paths]

    def items(self) -> Iterator[Item]:
        for path in self.paths:
            yield Item(str(path), (lambda path=path: load_image(path)), {"path": str(path)})


class VideoSource(Source):
    """A video file, stream or webcam, decoded one frame at a time (RGB).

    The capture is opened by `items()` and released when its iterator ends or is closed; opening
    the source only checks that a first frame can be read.
    """

    def __init__(self, name: str, target: str | int):
        self.target = target
        self.kind = "webcam" if isinstance(target, int) else "video"
        capture = _open_capture(name, target)
        try:
            ok, frame = capture.read()
            if not ok or frame is None:
                raise SourceError(f"{name}: cannot read a first frame from this {self._what}")
            fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
            frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        finally:
            capture.release()
        super().__init__(
            name,
            count=frames if frames > 0 and self.kind == "video" else None,
            fps=fps if np.isfinite(fps) and fps > 0 else DEFAULT_FPS,
            frame_size=(int(frame.shape[1]), int(frame.shape[0])),
        )

    @property
    def _what(self) -> str:
        return "camera" if self.kind == "webcam" else "video"

    def items(self) -> Iterator[Item]:
        capture = _open_capture(self.name, self.target)
        try:
            index = 0
            while True:
                ok, frame = capture.read()
                if not ok or frame is None:
                    if self.count is not None and index < self.count:
                        warnings.warn(
                            SourceWarning(
                                f"{self.name}: the video ends after {index} of the "
                                f"{self.count} frames its header gives (cut short or damaged); "
                                "the frames read were used"
                            ),
                            stacklevel=2,
                        )
                    return
                if frame.ndim == 2:
                    rgb = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
                else:
                    rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                yield Item(
                    f"{self.name}#frame={index}",
                    (lambda rgb=rgb: rgb),
                    {"source": self.name, "frame": index},
                )
                index += 1
        finally:
            capture.release()


def _open_capture(name: str, target: str | int) -> cv2.VideoCapture:
    capture = cv2.VideoCapture(target)
    if not capture.isOpened():
        capture.release()
        if isinstance(target, int):
            raise SourceError(f"{name}: cannot open webcam {target} (no such camera, or in use)")
        raise SourceError(f"{name}: cannot open as a video (OpenCV cannot read this file)")
    return capture


def _extensions(extensions: frozenset[str]) -> str:
    return " ".join(sorted(extensions))


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _folder_images(folder: Path) -> tuple[list[Path], int]:
    """The folder's image files, subfolders included, sorted; and how many videos it holds."""
    images, videos = [], 0
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not _is_hidden(d)]
        for file in files:
            suffix = os.path.splitext(file)[1].lower()
            if _is_hidden(file):
                continue
            if suffix in IMAGE_EXTENSIONS:
                images.append(Path(root, file))
            elif suffix in VIDEO_EXTENSIONS:
                videos += 1
    return sorted(images), videos


def _open_folder(spec: str, folder: Path) -> list[Source]:
    images, videos = _folder_images(folder)
    if not images:
        hint = f"; it holds {videos} video file(s): name them to read them" if videos else ""
        raise SourceError(
            f"{spec}: no images in this folder or its subfolders "
            f"(looked for {_extensions(IMAGE_EXTENSIONS)}){hint}"
        )
    return [ImageSource(spec, images)]


def _open_pattern(spec: str) -> list[Source]:
    found = glob.glob(os.path.expanduser(spec), recursive=True)
    matches = sorted(Path(p) for p in found if os.path.isfile(p))
    if not matches:
        raise SourceError(f"{spec}: no such file or folder, and as a pattern it matches no files")
    images = [p for p in matches if p.suffix.lower() in IMAGE_EXTENSIONS]
    videos = [p for p in matches if p.suffix.lower() in VIDEO_EXTENSIONS]
    if not images and not videos:
        raise SourceError(
            f"{spec}: the pattern matches {len(matches)} file(s), none an image or a video "
            f"(looked for {_extensions(IMAGE_EXTENSIONS | VIDEO_EXTENSIONS)})"
        )
    sources: list[Source] = [ImageSource(spec, images)] if images else []
    return sources + [VideoSource(str(p), str(p)) for p in videos]


def open_source(spec: str) -> list[Source]:
    """The sources one spec names (a glob pattern may name several videos); see the module
    docstring for what a spec may be.

    Raises:
        SourceError: the spec names nothing readable; the message names the spec.
    """
    spec = str(spec)
    if spec.isdigit():
        return [VideoSource(f"webcam{int(spec)}", int(spec))]
    if _URL.match(spec):
        return [VideoSource(spec, spec)]
    path = Path(os.path.expanduser(spec))
    if path.is_dir():
        return _open_folder(spec, path)
    if path.is_file():
        if path.suffix.lower() in VIDEO_EXTENSIONS:
            return [VideoSource(spec, str(path))]
        return [ImageSource(spec, [path])]
    if _PATTERN.search(spec):
        return _open_pattern(spec)
    raise SourceError(f"{spec}: no such file or folder")


def open_sources(specs: Sequence[str]) -> list[Source]:
    """The sources of all specs, in order; every spec is checked before any is read.

    Raises:
        SourceError: for the first spec that names nothing readable.
    """
    if isinstance(specs, (str, os.PathLike)):
        specs = [specs]
    if not specs:
        raise SourceError("no source given: name image files, folders, patterns or videos")
    return [source for spec in specs for source in open_source(spec)]

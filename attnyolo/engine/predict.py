"""Detection on images with any model format: the one preprocessor, runtime and decoder, through
the one streaming loop (`attnyolo.inference.stream`)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from attnyolo.inference.config import InferenceConfig
from attnyolo.inference.decoder import Detections, YoloDecoder
from attnyolo.inference.preprocess import Preprocessor
from attnyolo.inference.stream import Item, Result, array_items, detect_stream
from attnyolo.utils import atomic_write


def open_model(model, fuse: bool = True):
    """A runtime for `model`: a `YOLOv4Tiny`, a model file (`.keras`, `.onnx`, `.tflite`, a
    SavedModel folder), or a runtime already (anything with `config` and a batch call). Only
    a Keras model imports Keras; with `fuse` it runs with its batch norms folded (see
    `KerasRuntime`)."""
    if hasattr(model, "config") and isinstance(model.config, InferenceConfig):
        return model
    if isinstance(model, (str, os.PathLike)) and Path(model).suffix.lower() != ".keras":
        from attnyolo.inference.runtimes import open_runtime

        runtime = open_runtime(model)
        if runtime is not None:
            return runtime
    if isinstance(model, (str, os.PathLike)):
        from attnyolo.models.saving import load_detector

        model = load_detector(model)
    from attnyolo.inference.keras_runtime import KerasRuntime

    return KerasRuntime(model, fuse=fuse)


class Predictor:
    """Detects objects in RGB uint8 images of any size, with any model format.

    Args:
        model: a `YOLOv4Tiny`, a model file (`.keras`, `.onnx`, `.tflite`, SavedModel folder)
            or a runtime (see `open_model`).
        confidence, nms_iou, max_per_class, max_detections: see `YoloDecoder`; the defaults are
            the original scripts' prediction settings.
        letterbox: keep the aspect ratio and pad with grey (True) or stretch (False, the
            original's default); None: as the model was trained (its file says), else
            stretch.
        resize_filter: the bicubic resize, `"opencv"` or `"pillow"` (the original's); None: the
            one the model was trained with, else `"opencv"`. See `attnyolo.data.images`.
        batch_size: images per forward pass.
        original_output: boxes and scores as the original scripts' evaluation writes them to
            its map_out text files (`yolo.py`, `get_map_txt`): the letterbox undone with the
            original's rounded size and unfloored offset, boxes not clipped to the image, each
            coordinate cut to an integer by `int()`, each score cut to the first 6 characters of
            its float32 text. For `attnyolo evaluate --protocol original`.
        fuse: a Keras model runs with its batch norms folded into the convolutions (the same
            detections, faster); False for a model that is still training.
    """

    def __init__(
        self,
        model,
        confidence: float = 0.5,
        nms_iou: float = 0.3,
        letterbox: bool | None = None,
        max_per_class: int = 100,
        max_detections: int | None = None,
        batch_size: int = 8,
        resize_filter: str | None = None,
        original_output: bool = False,
        fuse: bool = True,
    ):
        self.runtime = open_model(model, fuse=fuse)
        self.config: InferenceConfig = self.runtime.config
        self.original_output = bool(original_output)
        self.preprocessor = Preprocessor.from_config(
            self.config, letterbox, resize_filter, original_transform=self.original_output
        )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.decoder = YoloDecoder.from_config(
            self.config,
            confidence=confidence,
            nms_iou=nms_iou,
            max_per_class=max_per_class,
            max_detections=max_detections,
            clip=not self.original_output,
        )

    @property
    def model(self):
        """The Keras model, where the runtime is Keras."""
        return getattr(self.runtime, "model", None)

    @property
    def letterbox(self) -> bool:
        return self.preprocessor.letterbox

    @property
    def resize_filter(self) -> str:
        return self.preprocessor.resize_filter

    @property
    def class_names(self) -> list[str]:
        return list(self.config.classes)

    def settings(self) -> dict:
        """The detection settings, for reports."""
        return {
            "confidence": self.decoder.confidence,
            "nms_iou": self.decoder.nms_iou,
            "max_per_class": self.decoder.max_per_class,
            "max_detections": self.decoder.max_detections,
            **self.preprocessor.settings(),
            "runtime": self.runtime.name,
        }

    def stream(
        self,
        items: Iterable[Item],
        keep_images: bool = True,
        batch_size: int | None = None,
        workers: int | None = None,
    ) -> Iterator[Result]:
        """`Result`s for `items` (see `attnyolo.inference.stream.detect_stream`), read in threads,
        in batches, in order; an unreadable image gets its error and the loop goes on."""
        results = detect_stream(
            self.runtime,
            items,
            self.preprocessor,
            self.decoder,
            batch_size=batch_size or self.batch_size,
            workers=workers,
            keep_images=keep_images,
        )
        for result in results:
            if self.original_output and result.detections is not None:
                result.detections = as_written_by_original(result.detections)
            yield result

    def __call__(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Detections for images in memory (RGB uint8), in order."""
        found = []
        for result in self.stream(array_items(images), keep_images=False, workers=1):
            if result.error is not None:
                raise ValueError(result.error)
            found.append(result.detections)
        return found


def as_written_by_original(detections: Detections) -> Detections:
    """Detections as the original's `get_map_txt` writes them: `int()` of each coordinate (toward
    zero) and `str(score)[:6]` of the float32 score."""
    scores = [float(str(np.float32(s))[:6]) for s in detections.scores]
    return Detections(
        np.trunc(detections.boxes).astype(np.float64),
        np.asarray(scores, np.float64),
        detections.classes,
    )


def _class_filter(classes, class_names: Sequence[str]) -> np.ndarray | None:
    """Indices of the classes to keep, from names or indices; None keeps all."""
    if not classes:
        return None
    keep = []
    for c in classes:
        text = str(c)
        if text in class_names:
            keep.append(list(class_names).index(text))
        elif text.isdigit() and int(text) < len(class_names):
            keep.append(int(text))
        else:
            raise ValueError(
                f"--classes: {text!r} is not a class of this model ({', '.join(class_names)})"
            )
    return np.asarray(sorted(set(keep)), np.int64)


def _keep_classes(detections: Detections, keep: np.ndarray | None) -> Detections:
    if keep is None:
        return detections
    mask = np.isin(detections.classes, keep)
    return Detections(detections.boxes[mask], detections.scores[mask], detections.classes[mask])


def run_predict(
    model,
    sources: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike = "predictions",
    *,
    draw: bool = True,
    save_txt: str | None = None,
    save_json: bool = False,
    crop: bool = False,
    count: bool = False,
    classes: Sequence[str | int] | None = None,
    progress: bool = True,
    on_result: Callable[[Result, list[str]], None] | None = None,
    **predictor_options,
) -> dict:
    """Detects objects in images, folders, globs, videos and webcams (`attnyolo predict`).

    Every source is opened (and checked) before anything is written. Images and video frames
    stream through the one detection loop; a folder or a video is never held in memory.

    Args:
        model: a model file of any format (`.keras`, `.onnx`, `.tflite`, SavedModel) or a model.
        sources: image files, folders (recursive), globs, video files, webcam indices ("0").
        output_dir: where everything goes.
        draw: labelled images (`<stem>.jpg`), and for a video or webcam a labelled video with
            its frame rate and size (`<stem>.mp4`).
        save_txt: `"yolo"` (class cx cy w h score, normalised) or `"voc"` (the original's
            detection-results lines) text files in `labels/`.
        save_json: COCO results in `detections_coco.json`.
        crop: each detection cut out to `crops/<class>/`.
        count: per-class counts, printed and written to `counts.json`.
        classes: keep only these classes (names or indices).
        on_result: called with each `Result` and the class names (the CLI prints from it).
        predictor_options: `Predictor`'s (confidence, nms_iou, letterbox, ...).

    Returns:
        The document written to `detections.json`: model, settings, per image or frame its size
        and detections, the files that failed, and the files written.
    """
    from tqdm import tqdm

    from attnyolo.inference import sinks
    from attnyolo.inference.sources import open_sources

    predictor = Predictor(model, **predictor_options)
    opened = open_sources([str(s) for s in sources])  # every source checked before writing
    names = predictor.class_names
    keep = _class_filter(classes, names)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    shared: list = []
    if draw:
        shared.append(sinks.DrawnImages(output_dir, names))
    if save_txt:
        shared.append(sinks.TxtLabels(output_dir / "labels", names, style=save_txt))
    if save_json:
        shared.append(sinks.CocoJson(output_dir / "detections_coco.json", names))
    if crop:
        shared.append(sinks.Crops(output_dir / "crops", names))
    if count:
        shared.append(sinks.Counts(names, output_dir / "counts.json"))
    document = {
        "model": str(model) if isinstance(model, (str, os.PathLike)) else None,
        "classes": names,
        "settings": {**predictor.settings(), "classes": None if keep is None else keep.tolist()},
        "images": [],
        "failed": [],
        "written": [],
    }
    written: list[Path] = []
    open_sinks = list(shared)
    drawn = shared[0] if draw else None
    try:
        for source in opened:
            video = source.kind in ("video", "webcam")
            outputs = [s for s in shared if not (video and isinstance(s, sinks.DrawnImages))]
            video_sink = None
            if video and draw:
                video_sink = sinks.DrawnVideo(
                    output_dir / f"{_video_stem(source.name)}.mp4",
                    source.fps,
                    source.frame_size,
                    names,
                )
                outputs.append(video_sink)
                open_sinks.append(video_sink)
            keep_images = any(s.needs_images for s in outputs)
            batch = 1 if source.kind == "webcam" else predictor.batch_size
            with tqdm(
                total=source.count,
                desc=Path(source.name).name or source.name,
                unit="img",
                disable=not progress,
                leave=False,
            ) as bar:
                items = source.items()
                for result in predictor.stream(items, keep_images=keep_images, batch_size=batch):
                    bar.update()
                    if result.error is not None:
                        print(f"error: {result.error}", file=sys.stderr)
                        document["failed"].append(
                            {"image": result.item.name, "error": result.error}
                        )
                        continue
                    result.detections = _keep_classes(result.detections, keep)
                    for sink in outputs:
                        sink.add(result)
                    height, width = result.image_size
                    entry = {
                        "image": result.item.name,
                        "height": height,
                        "width": width,
                        "detections": result.detections.to_records(names),
                    }
                    if drawn is not None and not video:
                        entry["output"] = str(drawn.written[-1])
                    document["images"].append(entry)
                    if on_result is not None:
                        on_result(result, names)
                    result.image = None  # nothing holds a frame once it is written
            if video_sink is not None:
                written += video_sink.close()
        for sink in shared:
            written += sink.close()
    except KeyboardInterrupt:
        # Stopped by hand (a webcam is stopped so): keep what was done, complete files only.
        for sink in open_sinks:
            written += sink.close()
        document["interrupted"] = True
    except BaseException:
        for sink in open_sinks:
            sink.abort()
        raise
    counts = next((s for s in shared if isinstance(s, sinks.Counts)), None)
    if counts is not None:
        document["counts"] = {n: int(c) for n, c in zip(names, counts.totals, strict=True)}
        document["count_lines"] = counts.summary_lines()
    written.append(output_dir / "detections.json")
    document["written"] = [str(p) for p in dict.fromkeys(written)]
    atomic_write(output_dir / "detections.json", json.dumps(document, indent=2))
    return document


def _video_stem(name: str) -> str:
    return f"webcam{name}" if name.isdigit() else Path(name).stem


def predict_images(
    model_path: str | os.PathLike,
    images: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike = "predictions",
    draw: bool = True,
    **predictor_options,
) -> dict:
    """Detects objects in image files; writes labelled images and `detections.json` (see
    `run_predict`, which also takes folders, globs, videos and webcams)."""
    return run_predict(
        model_path, images, output_dir, draw=draw, progress=False, **predictor_options
    )

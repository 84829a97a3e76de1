"""Detection on images: a batched, compiled forward pass followed by the decoder."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from attnyolo.data.images import (
    DEFAULT_RESIZE_FILTER,
    ImageError,
    check_resize_filter,
    letterbox,
    load_image,
    resize,
)
from attnyolo.engine.visualize import draw_detections
from attnyolo.models.decoder import Detections, YoloDecoder
from attnyolo.models.saving import load_detector
from attnyolo.models.yolo import YOLOv4Tiny
from attnyolo.utils import atomic_path, atomic_write


def trained_geometry(model) -> bool:
    """Whether to letterbox for `model`: as it was trained, where its file says; else stretch
    (the original scripts' prediction default)."""
    return bool(getattr(model, "letterbox", None))


class Predictor:
    """Runs a detector on RGB uint8 images of any size.

    Args:
        model: a `YOLOv4Tiny`.
        confidence, nms_iou, max_per_class, max_detections: see `YoloDecoder`; the defaults are
            the original scripts' prediction settings.
        letterbox: keep the aspect ratio and pad with grey (True) or stretch (False, the
            original's default); None: as the model was trained (`model.letterbox`), else
            stretch.
        resize_filter: the bicubic resize, `"opencv"` or `"pillow"` (the original's); best the
            one the model was trained with. See `attnyolo.data.images`.
        batch_size: images per forward pass.
        original_output: boxes and scores as the original scripts' evaluation writes them to
            its map_out text files (`yolo.py`, `get_map_txt`): the letterbox undone with the
            original's rounded size and unfloored offset, boxes not clipped to the image, each
            coordinate cut to an integer by `int()`, each score cut to the first 6 characters of
            its float32 text. For `attnyolo evaluate --protocol original`.
    """

    def __init__(
        self,
        model: YOLOv4Tiny,
        confidence: float = 0.5,
        nms_iou: float = 0.3,
        letterbox: bool | None = None,
        max_per_class: int = 100,
        max_detections: int | None = None,
        batch_size: int = 8,
        resize_filter: str = DEFAULT_RESIZE_FILTER,
        original_output: bool = False,
    ):
        self.model = model
        self.original_output = bool(original_output)
        self.letterbox = trained_geometry(model) if letterbox is None else bool(letterbox)
        self.resize_filter = check_resize_filter(resize_filter)
        self.batch_size = batch_size
        self.decoder = YoloDecoder.from_model(
            model,
            confidence=confidence,
            nms_iou=nms_iou,
            max_per_class=max_per_class,
            max_detections=max_detections,
            clip=not self.original_output,
        )

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sizer = letterbox if self.letterbox else resize
        sized, transform = sizer(image, self.model.input_size, resize_filter=self.resize_filter)
        if self.original_output and self.letterbox:
            transform = _original_letterbox_transform(image.shape[:2], self.model.input_size)
        return sized.astype(np.float32) / 255.0, transform

    def forward(self, batch: np.ndarray) -> list[np.ndarray]:
        # predict_on_batch runs Keras' compiled predict function (tf.function / jax.jit): on TF
        # an eager call was measured at 118 ms against 42 ms compiled (416x416, 2 cores).
        if _replicas(self.model) > 1:
            # Under a tf.distribute strategy predict_on_batch runs the whole batch on every
            # replica and returns the copies concatenated; predict splits it properly.
            heads = self.model.predict(batch, batch_size=len(batch), verbose=0)
        else:
            heads = self.model.predict_on_batch(batch)
        return [np.asarray(h, np.float32) for h in heads]

    def __call__(self, images: Sequence[np.ndarray]) -> list[Detections]:
        results: list[Detections] = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            prepared = [self.preprocess(image) for image in chunk]
            batch = np.stack([p[0] for p in prepared])
            heads = self.forward(batch)
            sizes = [image.shape[:2] for image in chunk]
            found = self.decoder(heads, sizes, np.stack([p[1] for p in prepared]))
            results += [as_written_by_original(d) for d in found] if self.original_output else found
        return results


def _original_letterbox_transform(image_size, input_size) -> np.ndarray:
    """How the original's decoder undoes a letterbox (`yolo_correct_boxes`): the resized image
    is taken as `round(size * scale)` (half to even, as `tf.round`) and centred at half the
    padding, unfloored; the image itself was pasted at `int()` sizes and floored offsets, so the
    original's boxes are off by up to about a pixel of the input."""
    (ih, iw), (h, w) = image_size, input_size
    scale = min(h / ih, w / iw)
    nh, nw = np.round(ih * scale), np.round(iw * scale)
    return np.array([nw / iw, nh / ih, (w - nw) / 2, (h - nh) / 2], np.float64)


def as_written_by_original(detections: Detections) -> Detections:
    """Detections as the original's `get_map_txt` writes them: `int()` of each coordinate (toward
    zero) and `str(score)[:6]` of the float32 score."""
    scores = [float(str(np.float32(s))[:6]) for s in detections.scores]
    return Detections(
        np.trunc(detections.boxes).astype(np.float64),
        np.asarray(scores, np.float64),
        detections.classes,
    )


def _replicas(model) -> int:
    strategy = getattr(model, "distribute_strategy", None)  # TensorFlow trainers only
    return int(getattr(strategy, "num_replicas_in_sync", 1))


def predict_images(
    model_path: str | os.PathLike,
    images: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike = "predictions",
    draw: bool = True,
    **predictor_options,
) -> dict:
    """Detects objects in image files; writes labelled images and `detections.json`.

    A file that cannot be read is reported on stderr and skipped; the others are processed.

    Returns:
        The JSON document written: model, settings, and per image its size and detections (boxes
        as x1, y1, x2, y2 in the image's pixels), plus the list of files that failed.
    """
    model = load_detector(model_path)
    predictor = Predictor(model, **predictor_options)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    document = {
        "model": str(model_path),
        "classes": model.class_names,
        "settings": {
            "confidence": predictor.decoder.confidence,
            "nms_iou": predictor.decoder.nms_iou,
            "letterbox": predictor.letterbox,
            "resize_filter": predictor.resize_filter,
            "input_size": list(model.input_size),
        },
        "images": [],
        "failed": [],
    }
    loaded: list[tuple[Path, np.ndarray]] = []
    for path in map(Path, images):
        try:
            loaded.append((path, load_image(path)))
        except ImageError as e:
            print(f"error: {e}", file=sys.stderr)
            document["failed"].append({"image": str(path), "error": str(e)})
    used_names: set[str] = set()
    for start in range(0, len(loaded), predictor.batch_size):
        chunk = loaded[start : start + predictor.batch_size]
        for (path, image), dets in zip(chunk, predictor([im for _, im in chunk]), strict=True):
            entry = {
                "image": str(path),
                "height": int(image.shape[0]),
                "width": int(image.shape[1]),
                "detections": dets.to_records(model.class_names),
            }
            if draw:
                name = path.stem
                while name in used_names:  # same stem in different folders
                    name += "_"
                used_names.add(name)
                out = output_dir / f"{name}.jpg"
                with atomic_path(out) as tmp:
                    draw_detections(image, dets, model.class_names).save(tmp)
                entry["output"] = str(out)
            document["images"].append(entry)
    atomic_write(output_dir / "detections.json", json.dumps(document, indent=2))
    return document

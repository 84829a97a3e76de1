"""Saving and loading detector files (`.keras`), atomically and with clear errors."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import keras

import attnyolo.layers  # noqa: F401  (registers the attention layers for deserialization)
from attnyolo.models.yolo import YOLOv4Tiny
from attnyolo.utils import atomic_path


class ModelFileError(ValueError):
    """A model file that is missing or is not an attnyolo detector, with the file named."""


def save_detector(model: YOLOv4Tiny, path: str | os.PathLike) -> Path:
    """Saves to a `.keras` file through a temporary file and a rename, so a killed process never
    leaves a half-written model behind."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ModelFileError(f"{path}: model files must end in .keras")
    with atomic_path(path) as tmp:
        model.save(tmp)
    return path


def load_detector(path: str | os.PathLike, compile: bool = False) -> YOLOv4Tiny:
    """Loads a detector saved by attnyolo, in Keras safe mode (no Lambda layers, no pickles).

    Raises:
        ModelFileError: the file is missing, not a `.keras` archive, or holds another kind of model.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(
            f"{path}: not a Keras 3 model file (.keras zip archive); legacy .h5 files and Darknet "
            ".weights are imported with `attnyolo darknet import`"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (KeyError, zipfile.BadZipFile, json.JSONDecodeError) as e:
        raise ModelFileError(f"{path}: not a valid .keras model file ({e})") from None
    kind = config.get("class_name")
    if kind != "YOLOv4Tiny":
        raise ModelFileError(
            f"{path}: holds a Keras model of class {kind!r}, not an attnyolo detector (YOLOv4Tiny)"
        )
    try:
        model = keras.saving.load_model(path, compile=compile, safe_mode=True)
    except Exception as e:  # Keras raises many types for corrupt archives
        raise ModelFileError(f"{path}: cannot load the model: {e}") from None
    return model

"""Saving and loading detector files (`.keras`), atomically and with clear errors."""

from __future__ import annotations

import json
import os
import re
import warnings
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
    if path.is_dir():
        raise ModelFileError(f"{path}: a folder, not a .keras model file")
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
    if not isinstance(config, dict):
        raise ModelFileError(
            f"{path}: not a valid .keras model file (its config.json holds a "
            f"{type(config).__name__}, not a Keras object)"
        )
    kind = config.get("class_name")
    if kind != "YOLOv4Tiny":
        raise ModelFileError(
            f"{path}: holds a Keras model of class {kind!r}, not an attnyolo detector (YOLOv4Tiny)"
        )
    # Keras warns about weights it skips before it fails on them; a file that does not load
    # gets one error line, and its warnings are passed on only when it loads.
    with warnings.catch_warnings(record=True) as caught:
        try:
            model = keras.saving.load_model(path, compile=compile, safe_mode=True)
        except Exception as e:  # Keras raises many types for corrupt archives
            raise ModelFileError(f"{path}: cannot load the model: {_one_line(e)}") from None
    for warning in caught:
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return model


# What follows these in Keras' messages runs to pages: a tensor's values, the whole config, every
# layer's name.
_KERAS_DUMPS = re.compile(
    r"\s*(Target variable:|Full object config:|List of objects that could not be loaded:).*",
    re.DOTALL,
)


def _one_line(error: Exception) -> str:
    """A Keras loading error as one line, without the dumps some of them carry."""
    return " ".join(_KERAS_DUMPS.sub("", str(error)).split())

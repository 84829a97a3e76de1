"""Anchor boxes fitted to a data set: k-means on box sizes with `1 - IoU` as the distance, what the
original `kmeans_for_anchors.py` does, and the anchors file it writes (`10,14, 23,27, ...`)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from attnyolo.data import Dataset, load_dataset
from attnyolo.data._common import ClassNames, image_size
from attnyolo.utils import atomic_write

# Points drawn in the scatter plot at most: more only slows matplotlib down.
_MAX_PLOTTED = 20000


def wh_iou(wh: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """IoU `(M, K)` of boxes and anchors given as `(width, height)`, all centred on one point:
    the overlap of two such boxes is `min(w) * min(h)`, so only shapes and sizes count."""
    wh = np.asarray(wh, np.float64)[:, None, :]
    anchors = np.asarray(anchors, np.float64)[None, :, :]
    inter = np.minimum(wh[..., 0], anchors[..., 0]) * np.minimum(wh[..., 1], anchors[..., 1])
    union = wh[..., 0] * wh[..., 1] + anchors[..., 0] * anchors[..., 1] - inter
    return inter / union


def kmeans_anchors(
    wh: np.ndarray, k: int = 6, seed: int = 0, iterations: int = 300
) -> tuple[np.ndarray, float]:
    """Clusters box sizes into `k` anchors with k-means under the distance `1 - IoU`.

    As in the original `kmeans_for_anchors.py`, each anchor moves to the per-axis median of the
    boxes nearest to it (the median, unlike the mean, is not dragged by the few very large boxes
    every data set has), and the loop stops when no box changes anchor. The original started
    from `k` boxes drawn at random; here the start is k-means++ under the same distance (each
    next start drawn with probability proportional to its squared distance to the nearest start
    so far), which rarely puts two starts in one cluster, and the draws come from `seed` alone.
    An anchor left without boxes restarts at the box farthest from every anchor.

    Args:
        wh: `(M, 2)` box widths and heights, positive (any unit; the anchors come in the same).
        k: the number of anchors (6 for YOLOv4-tiny).
        seed: the seed of the starting draws.
        iterations: the most update rounds (convergence usually takes a few dozen).

    Returns:
        The anchors `(k, 2)` sorted by area, smallest first, and the mean over the boxes of the
        IoU with the best anchor (the original's "avg_ratio"; 1 would be a perfect fit).

    Raises:
        ValueError: `wh` not `(M, 2)`, not positive and finite, or with fewer than `k` distinct
            sizes.
    """
    wh = np.asarray(wh, np.float64)
    if wh.ndim != 2 or wh.shape[1] != 2:
        raise ValueError(f"box sizes must have shape (M, 2), got {wh.shape}")
    if not np.isfinite(wh).all() or (wh <= 0).any():
        raise ValueError("box sizes must be positive and finite")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    distinct = len(np.unique(wh, axis=0))
    if distinct < k:
        raise ValueError(f"{k} anchors need at least {k} distinct box sizes, got {distinct}")

    rng = np.random.default_rng(seed)
    anchors = _kmeans_plus_plus(wh, k, rng)
    nearest = None
    for _ in range(iterations):
        iou = wh_iou(wh, anchors)
        assigned = iou.argmax(1)
        if nearest is not None and np.array_equal(assigned, nearest):
            break
        nearest = assigned
        for j in range(k):
            members = wh[assigned == j]
            if len(members):
                anchors[j] = np.median(members, axis=0)
            else:
                # The box worst served by every anchor gets one; deterministic, unlike a redraw.
                anchors[j] = wh[iou.max(1).argmin()]
                iou[:, j] = wh_iou(wh, anchors[j : j + 1])[:, 0]
    anchors = _by_area(anchors)
    return anchors, mean_iou(wh, anchors)


def _by_area(anchors: np.ndarray) -> np.ndarray:
    """Anchors sorted by area, then width: the order masks index, smallest first."""
    return anchors[np.lexsort((anchors[:, 0], anchors.prod(1)))]


def mean_iou(wh: np.ndarray, anchors: np.ndarray) -> float:
    """The mean over boxes of the IoU with the best-fitting anchor."""
    return float(wh_iou(wh, anchors).max(1).mean())


def _kmeans_plus_plus(wh: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    chosen = [int(rng.integers(len(wh)))]
    distance = 1.0 - wh_iou(wh, wh[chosen])[:, 0]
    for _ in range(1, k):
        weights = distance**2
        # Distinct sizes >= k guarantees a box at a positive distance from every start so far.
        index = int(rng.choice(len(wh), p=weights / weights.sum()))
        chosen.append(index)
        distance = np.minimum(distance, 1.0 - wh_iou(wh, wh[index : index + 1])[:, 0])
    return wh[chosen].copy()


def anchors_for_dataset(
    dataset: Dataset, input_size: int | Sequence[int], letterbox: bool = False
) -> np.ndarray:
    """The data set's box sizes `(M, 2)` in pixels of the model input.

    Each box is divided by its image's size and multiplied by the input size, as the original
    did: the input is the image stretched to the input size, which is how this package's
    evaluation and prediction size images by default. With `letterbox=True` both sides are
    scaled by `min(input_w / w, input_h / h)` instead, the aspect ratio kept, for models that
    are fed letterboxed images. Difficult boxes are left out: they are not learned from.

    Args:
        dataset: records with boxes; an image whose size the record lacks (annotation lines)
            is measured from its file header.
        input_size: the model input, `(height, width)` or one int.
        letterbox: scale as a letterbox does rather than stretching.

    Raises:
        ValueError: no box to fit anchors to.
    """
    height, width = _size(input_size)
    sizes = []
    for record in dataset.records:
        boxes = record.boxes[~record.difficult]
        if not len(boxes):
            continue
        ih, iw = record.size if record.size is not None else image_size(record.image)
        scale = np.array([width / iw, height / ih])
        if letterbox:
            scale[:] = scale.min()
        sizes.append((boxes[:, 2:] - boxes[:, :2]) * scale)
    if not sizes:
        raise ValueError(f"{dataset.source or 'data set'}: no box to fit anchors to")
    wh = np.concatenate(sizes).astype(np.float64)
    return wh[(wh > 0).all(1)]


def write_anchors(path: str | os.PathLike, anchors: np.ndarray) -> Path:
    """Writes anchors in the original's format, atomically: one line of `w,h` pairs joined by
    `", "` (`10,14, 23,27, 37,58, ...`), rounded to whole pixels (the original truncated them)."""
    anchors = np.asarray(anchors, np.float64).reshape(-1, 2)
    pairs = [f"{w},{h}" for w, h in np.maximum(np.round(anchors), 1).astype(int)]
    return atomic_write(path, ", ".join(pairs) + "\n")


def read_anchors(path: str | os.PathLike, count: int | None = 6) -> np.ndarray:
    """Reads an anchors file: `w,h` pairs separated by commas and/or white space, on one line as
    the original writes them or on several (Darknet cfg style `10,14,  23,27` reads too).

    Args:
        path: the anchors file.
        count: the number of anchors expected (YOLOv4-tiny takes 6); None accepts any number.

    Returns:
        `(K, 2)` float64 widths and heights in input pixels.

    Raises:
        FileNotFoundError: a missing file.
        ValueError: a value that is not a positive number, an odd number of values, or not
            `count` anchors; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"anchors file not found: {path}")
    tokens = [t for t in re.split(r"[\s,]+", path.read_text(encoding="utf-8")) if t]
    if not tokens:
        raise ValueError(f"{path}: empty anchors file; expected `w,h` pairs like `10,14, 23,27`")
    try:
        values = np.array([float(t) for t in tokens], np.float64)
    except ValueError:
        bad = next(t for t in tokens if not _is_number(t))
        raise ValueError(f"{path}: {bad!r} is not a number; expected `w,h` pairs") from None
    if not np.isfinite(values).all() or (values <= 0).any():
        raise ValueError(f"{path}: anchor sizes must be positive numbers, got {tokens}")
    if len(values) % 2:
        raise ValueError(f"{path}: {len(values)} values, an odd number; anchors are `w,h` pairs")
    anchors = values.reshape(-1, 2)
    if count is not None and len(anchors) != count:
        raise ValueError(f"{path}: {len(anchors)} anchors, expected {count}")
    return anchors


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def plot_anchors(
    wh: np.ndarray, labels: np.ndarray, anchors: np.ndarray, path: str | os.PathLike
) -> Path:
    """A scatter plot of box sizes coloured by their anchor, the anchors marked with crosses,
    written atomically (as the original's `kmeans_for_anchors.jpg`)."""
    # Imported here so that reading an anchors file does not load matplotlib.
    from attnyolo.engine.plots import save_figure, subplots

    wh, labels = np.asarray(wh), np.asarray(labels)
    if len(wh) > _MAX_PLOTTED:  # a fixed subset, so the same data gives the same picture
        keep = np.random.default_rng(0).choice(len(wh), _MAX_PLOTTED, replace=False)
        wh, labels = wh[keep], labels[keep]
    figure, axes = subplots(figsize=(6, 5))
    for j, (w, h) in enumerate(np.asarray(anchors)):
        points = wh[labels == j]
        axes.scatter(points[:, 0], points[:, 1], s=4, alpha=0.5, label=f"{w:.0f}x{h:.0f}")
    axes.scatter(anchors[:, 0], anchors[:, 1], marker="x", s=80, c="black", label="anchors")
    axes.set(xlabel="width (input pixels)", ylabel="height (input pixels)", title="anchors")
    axes.legend(fontsize=7)
    axes.grid(alpha=0.3)
    return save_figure(figure, Path(path))


def run_anchors(
    data: str | os.PathLike,
    split: str = "train",
    input_size: int | Sequence[int] = 416,
    k: int = 6,
    seed: int = 0,
    output: str | os.PathLike = "anchors",
    class_names: ClassNames = None,
    letterbox: bool = False,
) -> dict:
    """Fits anchors to a data set and writes `yolo_anchors.txt`, `anchors.png` and
    `anchors.json` (the arguments and results) into the folder `output`.

    Args:
        data: any data set `load_dataset` reads.
        split: the split whose boxes are clustered (the training split: anchors should fit
            what the model learns).
        input_size: the model input, `(height, width)` or one int.
        k: the number of anchors.
        seed: the k-means seed.
        output: the folder the files go to.
        class_names: class names, needed for annotation lines only.
        letterbox: box sizes scaled as a letterbox does (see `anchors_for_dataset`).

    Returns:
        A dict: `anchors` (`[[w, h], ...]` rounded, as written), `mean_iou` of the written
        anchors, `default_mean_iou` of YOLOv4-tiny's default anchors on the same boxes (to
        judge whether new anchors are worth it), `boxes`, `images`, the arguments, `files`
        (`anchors`, `plot`, `json`), and `summary`, the findings as text for the terminal.
    """
    # Imported here: the models module loads Keras, seconds that reading anchors need not cost.
    from attnyolo.models.yolo import DEFAULT_ANCHORS

    dataset = load_dataset(data, split, class_names)
    height, width = _size(input_size)
    wh = anchors_for_dataset(dataset, (height, width), letterbox)
    anchors, _ = kmeans_anchors(wh, k, seed)
    # Report the fit of the anchors as written, whole pixels, not of the unrounded ones.
    written = _by_area(np.maximum(np.round(anchors), 1))
    output = Path(output)
    files = {
        "anchors": str(write_anchors(output / "yolo_anchors.txt", written)),
        "plot": str(
            plot_anchors(wh, wh_iou(wh, written).argmax(1), written, output / "anchors.png")
        ),
    }
    result = {
        "data": str(data),
        "split": split,
        "input_size": [height, width],
        "k": k,
        "seed": seed,
        "letterbox": letterbox,
        "images": len(dataset),
        "boxes": len(wh),
        "anchors": written.astype(int).tolist(),
        "mean_iou": mean_iou(wh, written),
        "default_mean_iou": mean_iou(wh, np.array(DEFAULT_ANCHORS, np.float64)),
        "files": files,
    }
    files["json"] = str(output / "anchors.json")
    result["summary"] = _summary(result)
    atomic_write(output / "anchors.json", json.dumps(result, indent=2) + "\n")
    return result


def _summary(result: dict) -> str:
    """What `run_anchors` found, for the terminal."""
    height, width = result["input_size"]
    anchors = ", ".join(f"{w},{h}" for w, h in result["anchors"])
    return (
        f"{result['k']} anchors for a {width}x{height} input from {result['boxes']} boxes in "
        f"{result['images']} images ({result['data']}, {result['split']}):\n  {anchors}\n"
        f"mean IoU of each box with its best anchor: {result['mean_iou']:.3f} "
        f"(YOLOv4-tiny's default anchors: {result['default_mean_iou']:.3f})\n"
        f"wrote {result['files']['anchors']}, {result['files']['plot']}, {result['files']['json']}"
    )


def _size(input_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(input_size, int | np.integer):
        return int(input_size), int(input_size)
    values = [int(v) for v in input_size]
    if len(values) != 2:
        raise ValueError(f"input size must be one int or (height, width), got {input_size}")
    return values[0], values[1]

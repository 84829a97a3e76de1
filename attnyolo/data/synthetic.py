"""A synthetic PASCAL VOC data set of shapes, the built-in data of `attnyolo quickstart`.

`generate_shapes` writes, from a seed and nothing else, a detection task that a small detector
has to learn from the pixels rather than from where boxes usually are:

- six classes told apart only by outline: `ellipse` (circles included), `rectangle` (squares
  included), `triangle`, `star` (five points), `cross` (a plus sign, an X when rotated) and
  `hexagon`;
- 1 to 6 objects per image (uniform; rarely fewer, when large ones leave no room), anywhere in
  the image, classes equally likely; object sizes log-uniform from 32 to 160 pixels (the longer
  box side at 320x320, in proportion at other sizes): below about 20 pixels a star, a hexagon and
  an ellipse are a few blurred pixels apart, which no detector learns in the quickstart's minutes;
- aspect ratios where the class allows them (ellipses and rectangles from 1:2.5 to 2.5:1, mildly
  stretched triangles, crosses and hexagons) and random rotations (always for ellipses, triangles,
  stars and hexagons; for half the rectangles and a third of the crosses);
- object colours in one of two modes (`colour`):
  - `class` (the quickstart's default): a colour family per class, the hue within 8 (of
    OpenCV's 180) of the class's own hue (ellipse red, rectangle yellow, triangle green, star
    cyan, cross blue, hexagon magenta). A detector can then read the class off the colour of
    one pixel: this mode measures finding objects and reading colours, not telling shapes
    apart. Shape alone was measured too slow to learn for the old quickstart's minutes
    (class-agnostic AP50 0.78 but mAP50 0.26 after 10 epochs).
  - `random`: any hue for any class, drawn independently of it, so that only the outline tells
    the classes apart: the benchmark's mode (`bench/bench_time_to_accuracy.py`).
  In both, any saturation from 110 and brightness from 90, kept apart from the colours behind
  the object; filled plain (60%), with a linear gradient to a shade (25%) or with stripes (15%),
  a third of them outlined in a darker or lighter shade. The distractors and backgrounds use
  every hue;
- textured backgrounds: a two-colour gradient, low-frequency cloudy noise, soft blobs, and sharp
  distractors that are not objects: straight lines and arcs;
- occlusion: a later object may cover part of an earlier one, but never more than 35% of an
  earlier box by one object or 50% by all of them together, and no two boxes overlap with an
  IoU above 0.3, so that every box keeps a meaningful visible part; a third of the images get
  thin lines drawn across the objects as well;
- camera-like degradation: a slight blur in a quarter of the images, Gaussian pixel noise
  (sigma 2 to 12) in all, and JPEG compression at quality 90.

Boxes are the tight boxes of the drawn outlines (a shape's outline stroke included), written in
VOC's 1-based inclusive integer pixels, so that `read_voc` returns boxes that enclose the shape to
within a pixel. No object touches the image border and none is `difficult`.

The layout is `VOCdevkit/VOC2007`'s: `<root>/VOC2007/{JPEGImages/*.jpg, Annotations/*.xml,
ImageSets/Main/{train,val,trainval,test}.txt}`, plus `classes.txt` (one name per line) and the
manifest `attnyolo_synthetic.json` (the parameters) in `VOC2007/`. Image `i` is drawn from its own
random stream seeded by `(seed, i)`, so a set of 2,000 images starts with the 1,000 of a set of
1,000, and the same seed gives byte-identical files on the same NumPy and OpenCV.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from statistics import NormalDist

import cv2
import numpy as np

from attnyolo.utils import atomic_write

CLASS_NAMES = ("ellipse", "rectangle", "triangle", "star", "cross", "hexagon")
COLOUR_MODES = ("class", "random")  # object hue: the class's own family, or independent of it
MANIFEST = "attnyolo_synthetic.json"

# Bump when the drawing changes, so that folders drawn by an older version are redrawn.
_VERSION = 3
_JPEG_QUALITY = 90
# Object sizes (longer box side) as fractions of the image side: 32 and 160 px at 320.
_MIN_SIDE, _MAX_SIDE = 32 / 320, 0.5
_MAX_OBJECTS = 6
# Occlusion limits: pairwise IoU, the part of an earlier box one later object may cover, and the
# part all later objects together may cover (box areas, a bound on the shapes' areas).
_MAX_IOU, _MAX_COVER, _MAX_TOTAL_COVER = 0.3, 0.35, 0.5
_MIN_CONTRAST = 90.0  # RGB distance between an object's colour and what lies behind it
# cv2 draws with sub-pixel precision given fixed-point vertices with this many fraction bits.
_SHIFT = 4
_NORMAL_QUANTILES = np.array(
    [NormalDist().inv_cdf((k + 0.5) / 256) for k in range(256)], np.float32
)
_IMAGE_NAME = re.compile(r"\d{6,}\.(jpg|xml)")


def generate_shapes(
    root: str | os.PathLike,
    num_images: int = 1000,
    size: int = 320,
    seed: int = 0,
    splits: Sequence[float] = (0.8, 0.1, 0.1),
    colour: str = "class",
) -> Path:
    """Writes the synthetic shapes data set (see the module docstring) and returns its VOC root.

    Nothing is drawn when `<root>/VOC2007` already holds a complete set of the same parameters
    (its manifest says so and every image and annotation is there), so calling this on every
    `quickstart` costs nothing after the first. Every file is written atomically and the manifest
    is marked complete last, so an interrupted generation is redone on the next call.

    Args:
        root: the `VOCdevkit`-like folder that receives `VOC2007/`.
        num_images: how many images; ids are `000000`, `000001`, ...
        size: the side of the square images, in pixels (at least 64).
        seed: the random seed; the set is a pure function of it and the other arguments.
        splits: the fractions of images in train, val and (optionally) test, summing to 1; they
            take consecutive ids in that order (images are independent draws, so consecutive ids
            are as random a split as any). `trainval.txt` is train plus val.
        colour: "class" (each class its own hue family) or "random" (hue independent of the
            class: only shape decides); see the module docstring.

    Returns:
        The VOC root, `<root>/VOC2007`; `classes.txt` in it holds the class names.

    Raises:
        ValueError: bad arguments.
        FileExistsError: `<root>/VOC2007` exists, is not empty and was not written by this
            function (so nothing in it is overwritten).
    """
    if num_images < 1:
        raise ValueError(f"num_images must be at least 1, got {num_images}")
    if size < 64:
        raise ValueError(f"size must be at least 64 pixels, got {size}")
    fractions = [float(f) for f in splits]
    if len(fractions) not in (2, 3) or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(
            f"splits must be 2 or 3 non-negative fractions (train, val[, test]) summing to 1, "
            f"got {tuple(splits)}"
        )
    if colour not in COLOUR_MODES:
        raise ValueError(f"colour must be one of {', '.join(COLOUR_MODES)}, got {colour!r}")
    voc = Path(root) / "VOC2007"
    params = {
        "generator": "attnyolo.data.synthetic.generate_shapes",
        "version": _VERSION,
        "num_images": int(num_images),
        "size": int(size),
        "seed": int(seed),
        "splits": fractions,
        "class_names": list(CLASS_NAMES),
        "colour": colour,
    }
    manifest = voc / MANIFEST
    previous = _read_manifest(manifest)
    if previous == {**params, "complete": True} and _complete(voc, num_images):
        return voc
    ours = isinstance(previous, dict) and previous.get("generator") == params["generator"]
    if not ours and voc.is_dir() and any(voc.iterdir()):
        raise FileExistsError(
            f"{voc} exists and was not written by generate_shapes (no {MANIFEST}); choose an "
            "empty or new folder"
        )
    # Marked incomplete before anything else is written: a folder with this manifest is ours to
    # overwrite, and an interrupted run is never taken for a finished one.
    atomic_write(manifest, _json({**params, "complete": False}))
    images, annotations = voc / "JPEGImages", voc / "Annotations"
    images.mkdir(parents=True, exist_ok=True)
    annotations.mkdir(parents=True, exist_ok=True)
    _remove_stale(images, annotations, num_images)

    grid = _unit_grid(size)
    for index in range(num_images):
        image_id = f"{index:06d}"
        rng = np.random.default_rng([int(seed), index])
        image, objects = _draw_image(rng, size, grid, colour == "class")
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
        if not ok:  # cv2 reports a failed encoding by a flag, not an exception
            raise RuntimeError(f"OpenCV could not encode image {image_id} as JPEG")
        atomic_write(images / f"{image_id}.jpg", jpeg.tobytes())
        atomic_write(annotations / f"{image_id}.xml", _xml(image_id, size, objects))

    # Boundaries from the cumulative fractions, so that the parts always add up to num_images.
    ids = [f"{index:06d}" for index in range(num_images)]
    n_train = round(num_images * fractions[0])
    n_trainval = max(n_train, round(num_images * (fractions[0] + fractions[1])))
    parts = {
        "train": ids[:n_train],
        "val": ids[n_train:n_trainval],
        "trainval": ids[:n_trainval],
        "test": ids[n_trainval:],
    }
    for split, members in parts.items():
        text = "".join(f"{i}\n" for i in members)
        atomic_write(voc / "ImageSets" / "Main" / f"{split}.txt", text)
    atomic_write(voc / "classes.txt", "".join(f"{name}\n" for name in CLASS_NAMES))
    atomic_write(manifest, _json({**params, "complete": True}))
    return voc


def _json(data: dict) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def _read_manifest(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _complete(voc: Path, num_images: int) -> bool:
    """Whether every image and annotation is there (someone may have deleted some)."""
    for folder, suffix in (("JPEGImages", ".jpg"), ("Annotations", ".xml")):
        try:
            names = set(os.listdir(voc / folder))
        except OSError:
            return False
        if any(f"{index:06d}{suffix}" not in names for index in range(num_images)):
            return False
    return True


def _remove_stale(images: Path, annotations: Path, num_images: int) -> None:
    """Deletes our images and annotations beyond `num_images` (from a larger earlier set), which
    a reader listing `Annotations/` would otherwise pick up; other files are left alone."""
    for folder in (images, annotations):
        for path in folder.iterdir():
            if _IMAGE_NAME.fullmatch(path.name) and int(path.stem) >= num_images:
                path.unlink()


def _xml(image_id: str, size: int, objects: list[tuple[int, tuple[int, int, int, int]]]) -> str:
    parts = [
        "<annotation>\n",
        "\t<folder>VOC2007</folder>\n",
        f"\t<filename>{image_id}.jpg</filename>\n",
        "\t<source><database>attnyolo synthetic shapes</database></source>\n",
        f"\t<size><width>{size}</width><height>{size}</height><depth>3</depth></size>\n",
        "\t<segmented>0</segmented>\n",
    ]
    for cls, (xmin, ymin, xmax, ymax) in objects:
        parts.append(
            "\t<object>\n"
            f"\t\t<name>{CLASS_NAMES[cls]}</name>\n"
            "\t\t<pose>Unspecified</pose>\n"
            "\t\t<truncated>0</truncated>\n"
            "\t\t<difficult>0</difficult>\n"
            f"\t\t<bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin>"
            f"<xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox>\n"
            "\t</object>\n"
        )
    parts.append("</annotation>\n")
    return "".join(parts)


def _unit_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates scaled to [0, 1] on the coarse background grid, shared by every
    image's gradient."""
    coords = (np.arange(_coarse(size), dtype=np.float32) + 0.5) / _coarse(size)
    return coords[None, :], coords[:, None]


def _coarse(size: int) -> int:
    """The side of the coarse grid the smooth background is drawn on (then upsampled: smooth
    things need no full-resolution drawing, and blurring a small image costs little)."""
    return max(16, size // 4)


def _transform(points: np.ndarray, aspect: float = 1.0, angle: float = 0.0) -> np.ndarray:
    """Stretches x by sqrt(aspect) and y by 1/sqrt(aspect), which keeps the area, then rotates."""
    stretched = points * np.array([math.sqrt(aspect), 1 / math.sqrt(aspect)])
    c, s = math.cos(angle), math.sin(angle)
    return stretched @ np.array([[c, s], [-s, c]])


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


def _angle(rng: np.random.Generator, p: float = 1.0) -> float:
    return rng.uniform(0, 2 * math.pi) if rng.random() < p else 0.0


def _ellipse(rng: np.random.Generator) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, 72, endpoint=False)
    aspect = _log_uniform(rng, 0.4, 2.5) if rng.random() < 0.5 else 1.0
    return _transform(np.stack([np.cos(t), np.sin(t)], 1), aspect, _angle(rng))


def _rectangle(rng: np.random.Generator) -> np.ndarray:
    square = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64)
    aspect = _log_uniform(rng, 0.4, 2.5) if rng.random() < 0.5 else 1.0
    return _transform(square, aspect, _angle(rng, 0.5))


def _regular(corners: int, start: float) -> np.ndarray:
    t = start + np.arange(corners) * 2 * math.pi / corners
    return np.stack([np.cos(t), np.sin(t)], 1)


def _triangle(rng: np.random.Generator) -> np.ndarray:
    return _transform(_regular(3, -math.pi / 2), _log_uniform(rng, 0.7, 1.4), _angle(rng))


def _star(rng: np.random.Generator) -> np.ndarray:
    radius = np.tile([1.0, rng.uniform(0.38, 0.5)], 5)
    return _transform(_regular(10, -math.pi / 2) * radius[:, None], 1.0, _angle(rng))


def _cross(rng: np.random.Generator) -> np.ndarray:
    t = rng.uniform(0.2, 0.34)  # half the width of an arm
    plus = np.array(
        [[t, 1], [t, t], [1, t], [1, -t], [t, -t], [t, -1]]
        + [[-t, -1], [-t, -t], [-1, -t], [-1, t], [-t, t], [-t, 1]]
    )
    return _transform(plus, _log_uniform(rng, 0.75, 1.33), _angle(rng, 1 / 3))


def _hexagon(rng: np.random.Generator) -> np.ndarray:
    return _transform(_regular(6, 0.0), _log_uniform(rng, 0.8, 1.25), _angle(rng))


# Unit outlines of each class (in CLASS_NAMES order), with the class's own variations drawn.
_OUTLINES: tuple[Callable[[np.random.Generator], np.ndarray], ...] = (
    _ellipse,
    _rectangle,
    _triangle,
    _star,
    _cross,
    _hexagon,
)


def _fixed(points: np.ndarray) -> np.ndarray:
    """Continuous coordinates (pixel corners at integers) as cv2's fixed-point vertices (pixel
    centres at integers, hence the half-pixel shift)."""
    return np.round((points - 0.5) * (1 << _SHIFT)).astype(np.int32)


# Each class's hue in OpenCV's 0..179 scale, and how far an object's hue may stray from it.
_CLASS_HUES = (0.0, 30.0, 60.0, 90.0, 120.0, 150.0)
_HUE_SPREAD = 8.0


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(0, 255), rng.uniform(40, 255)]]])
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def _class_colour(rng: np.random.Generator, cls: int | None) -> np.ndarray:
    """A colour of class `cls`'s hue family; of any hue when `cls` is None."""
    if cls is None:
        hue = rng.uniform(0, 180)
    else:
        hue = (_CLASS_HUES[cls] + rng.uniform(-_HUE_SPREAD, _HUE_SPREAD)) % 180
    hsv = np.array([[[hue, rng.uniform(110, 255), rng.uniform(90, 255)]]])
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def _contrasting_colour(
    rng: np.random.Generator, behind: np.ndarray, cls: int | None
) -> np.ndarray:
    """A colour of the class's family (any hue for None) far enough from `behind` to be seen;
    the farthest of ten tries otherwise."""
    best, best_distance = None, -1.0
    for _ in range(10):
        colour = _class_colour(rng, cls)
        distance = float(np.linalg.norm(colour - behind))
        if distance >= _MIN_CONTRAST:
            return colour
        if distance > best_distance:
            best, best_distance = colour, distance
    return best


def _shade(rng: np.random.Generator, colour: np.ndarray) -> np.ndarray:
    """The colour moved towards black or white, for stripes and outlines."""
    target = 0.0 if colour.mean() > 127 else 255.0
    return colour + (target - colour) * rng.uniform(0.35, 0.65)


def _background(rng: np.random.Generator, size: int, grid) -> np.ndarray:
    gx, gy = grid
    coarse = _coarse(size)
    angle = rng.uniform(0, 2 * math.pi)
    ramp = gx * math.cos(angle) + gy * math.sin(angle)
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
    low, high = _random_colour(rng), _random_colour(rng)
    image = low + ramp[..., None] * (high - low)
    if rng.random() < 0.6:  # cloudy texture: a random field of a few cells, smoothly upsampled
        cells = int(rng.integers(3, 11))
        field = rng.standard_normal((cells, cells, 3), dtype=np.float32)
        field = cv2.resize(field, (coarse, coarse), interpolation=cv2.INTER_CUBIC)
        image += field * rng.uniform(10, 40)
    image = np.clip(image, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(0, 5))):  # blobs, made soft by the blur and upsampling
        corners = int(rng.integers(9, 17))
        t = np.sort(rng.uniform(0, 2 * math.pi, corners))
        radius = coarse * rng.uniform(0.05, 0.3) * rng.uniform(0.5, 1.0, corners)
        centre = rng.uniform(0, coarse, 2)
        blob = centre + np.stack([np.cos(t), np.sin(t)], 1) * radius[:, None]
        colour = _random_colour(rng).tolist()
        cv2.fillPoly(image, [_fixed(blob)], colour, cv2.LINE_AA, _SHIFT)
    image = cv2.GaussianBlur(image, (0, 0), rng.uniform(1.0, 2.5))
    image = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
    _distractors(rng, image, size)
    return image


def _line(rng: np.random.Generator, image: np.ndarray, size: int, thickness: int) -> None:
    start, end = rng.uniform(-0.1 * size, 1.1 * size, (2, 2))
    colour = _random_colour(rng).tolist()
    cv2.line(
        image, _fixed(start).tolist(), _fixed(end).tolist(), colour, thickness, cv2.LINE_AA, _SHIFT
    )


def _distractors(rng: np.random.Generator, image: np.ndarray, size: int) -> None:
    """Sharp things that are not objects, lines and arcs, so that edges alone are no evidence of
    an object."""
    for _ in range(int(rng.integers(0, 7))):
        _line(rng, image, size, int(rng.integers(1, 4)))
    for _ in range(int(rng.integers(0, 4))):
        centre = _fixed(rng.uniform(0, size, 2)).tolist()
        axes = tuple(int(a) for a in rng.uniform(0.03, 0.3, 2) * size * (1 << _SHIFT))
        start = rng.uniform(0, 360)
        cv2.ellipse(
            image,
            centre,
            axes,
            rng.uniform(0, 180),
            start,
            start + rng.uniform(60, 240),
            _random_colour(rng).tolist(),
            int(rng.integers(1, 4)),
            cv2.LINE_AA,
            _SHIFT,
        )


def _fill(rng: np.random.Generator, colour: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """An object's paint over its crop: plain, a linear gradient, or stripes."""
    kind = rng.random()
    if kind < 0.6:
        return np.broadcast_to(colour, (*shape, 3))
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    along = xx * math.cos(angle) + yy * math.sin(angle)
    other = _shade(rng, colour)
    if kind < 0.85:
        t = (along - along.min()) / max(float(along.max() - along.min()), 1.0)
    else:
        period = rng.uniform(4, 12)
        t = ((along % period) < period / 2).astype(np.float32)
    return colour + t[..., None] * (other - colour)


def _paint(image: np.ndarray, corner: tuple[int, int], mask: np.ndarray, paint) -> None:
    """Composites `paint` over the crop at `corner` through an anti-aliased 0..255 `mask`."""
    x0, y0 = corner
    h, w = mask.shape
    crop = image[y0 : y0 + h, x0 : x0 + w].astype(np.float32)
    alpha = mask[..., None].astype(np.float32) / 255.0
    blended = crop + alpha * (paint - crop)
    image[y0 : y0 + h, x0 : x0 + w] = np.clip(np.round(blended), 0, 255).astype(np.uint8)


def _overlap_ok(box: np.ndarray, placed: list[np.ndarray], covered: list[float]) -> bool:
    """Whether `box`, drawn over the boxes already placed, keeps each of them visible enough."""
    area = (box[2] - box[0]) * (box[3] - box[1])
    for i, other in enumerate(placed):
        iw = min(box[2], other[2]) - max(box[0], other[0])
        ih = min(box[3], other[3]) - max(box[1], other[1])
        if iw <= 0 or ih <= 0:
            continue
        inter = iw * ih
        other_area = (other[2] - other[0]) * (other[3] - other[1])
        if inter / (area + other_area - inter) > _MAX_IOU or inter > _MAX_COVER * other_area:
            return False
        if covered[i] + inter > _MAX_TOTAL_COVER * other_area:
            return False
    return True


def _draw_image(
    rng: np.random.Generator, size: int, grid, class_colours: bool = True
) -> tuple[np.ndarray, list[tuple[int, tuple[int, int, int, int]]]]:
    """One BGR image and its objects as (class, VOC box); objects take their class's hue family
    when `class_colours`, any hue otherwise."""
    image = _background(rng, size, grid)
    wanted = int(rng.integers(1, _MAX_OBJECTS + 1))
    placed: list[np.ndarray] = []
    covered: list[float] = []
    objects = []
    # Large objects can leave no room for more; give up after a bounded number of tries.
    for _ in range(wanted * 15):
        if len(objects) == wanted:
            break
        cls = int(rng.integers(len(CLASS_NAMES)))
        outline = _OUTLINES[cls](rng)
        side = _log_uniform(rng, _MIN_SIDE * size, _MAX_SIDE * size)
        outline = outline * (side / float((outline.max(0) - outline.min(0)).max()))
        outline -= (outline.max(0) + outline.min(0)) / 2
        stroke = int(rng.integers(1, max(2, round(side / 25)) + 1)) if rng.random() < 1 / 3 else 0
        half = np.abs(outline).max(0) + stroke / 2  # half the box, the outline stroke included
        if (2 * half + 2 >= size).any():
            continue
        centre = rng.uniform(half + 1, size - half - 1)
        box = np.concatenate([centre - half, centre + half])
        if not _overlap_ok(box, placed, covered):
            continue
        for i, other in enumerate(placed):
            iw = min(box[2], other[2]) - max(box[0], other[0])
            ih = min(box[3], other[3]) - max(box[1], other[1])
            covered[i] += max(iw, 0.0) * max(ih, 0.0)
        _draw_object(rng, image, outline + centre, box, stroke, cls if class_colours else None)
        placed.append(box)
        covered.append(0.0)
        # VOC pixels are 1-based and inclusive: the box from continuous x0..x1 covers the pixels
        # floor(x0)..ceil(x1)-1 (0-based), written as floor(x0)+1 and ceil(x1).
        xmin, ymin = (np.floor(box[:2]) + 1).astype(int)
        xmax, ymax = np.ceil(box[2:]).astype(int)
        objects.append((cls, (int(xmin), int(ymin), int(xmax), int(ymax))))
    if rng.random() < 1 / 3:  # thin lines across objects: partial occlusion by clutter
        for _ in range(int(rng.integers(1, 3))):
            _line(rng, image, size, 1)
    if rng.random() < 0.25:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 1.0))
    # Gaussian noise through a table of normal quantiles indexed by random bytes: four times
    # quicker than drawing normal floats, and 256 levels are plenty for pixel noise.
    noise = np.round(_NORMAL_QUANTILES * rng.uniform(2, 12)).astype(np.int16)
    picks = rng.integers(0, 256, image.shape, dtype=np.uint8)
    image = np.clip(image.astype(np.int16) + noise[picks], 0, 255).astype(np.uint8)
    return image, objects


def _draw_object(
    rng: np.random.Generator,
    image: np.ndarray,
    outline: np.ndarray,
    box: np.ndarray,
    stroke: int,
    hue_class: int | None,
) -> None:
    """Paints one object; its colour is of `hue_class`'s family (any hue when None)."""
    x0, y0 = (np.floor(box[:2]).astype(int) - 1).clip(0)
    x1, y1 = (np.ceil(box[2:]).astype(int) + 1).clip(max=image.shape[1])
    local = outline - [x0, y0]
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(mask, [_fixed(local)], 255, cv2.LINE_AA, _SHIFT)
    crop = image[y0:y1, x0:x1]
    # The colour behind the shape itself; the whole crop's where the shape is under a pixel.
    behind = (crop[mask > 127] if (mask > 127).any() else crop.reshape(-1, 3)).mean(0)
    colour = _contrasting_colour(rng, behind, hue_class)
    _paint(image, (int(x0), int(y0)), mask, _fill(rng, colour, mask.shape))
    if stroke:
        mask[:] = 0
        cv2.polylines(mask, [_fixed(local)], True, 255, stroke, cv2.LINE_AA, _SHIFT)
        _paint(image, (int(x0), int(y0)), mask, _shade(rng, colour))
